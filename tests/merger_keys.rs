//! Finding 11, the merger's side: the real `tidemark merger` on Tansu re-reads
//! its key registry while it runs, as ingest does, and judges key validity
//! with ingest's verifier. Events are produced straight to the edit topic, as
//! a replay or a writer behind ingest would bring them.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::pipeline::{Read, Signed, latest_views, produce, read_all, signed_by_site_b, site_b_entry};
use common::service::{Service, tidemark_service};
use common::{data, eventually, s};
use tidemark_testkit::{TansuBroker, unique_group, unique_topic};

const PARTITIONS: i32 = 4;

fn merger(bootstrap: &str, prefix: &str, keys: &Path, dir: &Path) -> Service {
    let partitions = PARTITIONS.to_string();
    let args = ["merger", "--brokers", bootstrap, "--keys", s(keys), "--topic-prefix", prefix]
        .iter()
        .chain(&["--group", &unique_group("keys"), "--partitions", &partitions])
        .chain(&["--metrics-listen", "127.0.0.1:0", "--max-batch-wait-ms", "20"])
        .map(|a| (*a).to_owned())
        .collect();
    let mut m = tidemark_service("merger", args, dir);
    m.set_env("RUST_LOG", "info");
    m.started()
}

/// Replaces the registry as a ConfigMap update does: whole, by a rename, so
/// the watcher never reads a half-written file.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The DLQ records: (patient, reason, detail).
fn dead_letters(bootstrap: &str, prefix: &str) -> Vec<(String, String, String)> {
    let dlq: Vec<Read> = read_all(bootstrap, &format!("{prefix}tidemark.edits.dlq.v1"), PARTITIONS);
    dlq.into_iter()
        .map(|r| (r.key, r.headers["tidemark-dlq-reason"].clone(), r.headers["tidemark-dlq-detail"].clone()))
        .collect()
}

fn reloads(m: &mut Service, result: &str) -> Option<f64> {
    common::metric(&m.scrape(), &format!("tidemark_merger_registry_reloads_total{{result=\"{result}\"}}"))
}

/// Waits for the merger to count `ok` good and `failed` bad reloads.
fn wait_reloads(m: &mut Service, ok: f64, failed: f64) {
    eventually("the merger reloads its registry", Duration::from_secs(20), || {
        let seen = (reloads(m, "ok"), reloads(m, "failed"));
        if seen == (Some(ok), Some(failed)) { Ok(()) } else { Err(format!("{seen:?}\n{}", m.log_tail())) }
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_merger_picks_up_added_and_revoked_keys_without_a_restart() {
    let broker = TansuBroker::start().expect("tansu starts");
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("{}.", unique_topic("merger-keys"));
    let edits = format!("{prefix}tidemark.edits.v1");
    let state = format!("{prefix}tidemark.patient-state.v1");
    broker.create_topic(&edits, PARTITIONS).await.expect("edit topic");
    let keys = dir.path().join("registry.toml");
    let base = std::fs::read_to_string(data("test-registry.toml")).unwrap();
    std::fs::write(&keys, &base).unwrap();
    let mut m = merger(broker.bootstrap(), &prefix, &keys, dir.path());
    let pid = m.id();
    let t = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    let send = |item: Signed| {
        let bootstrap = broker.bootstrap().to_owned();
        let edits = edits.clone();
        async move { produce(&bootstrap, &edits, &[item]).await }
    };

    // Before: site-b's key is unknown.
    send(signed_by_site_b("pt-b1", t)).await;
    eventually("pt-b1 is dead-lettered", Duration::from_secs(60), || {
        let d = dead_letters(broker.bootstrap(), &prefix);
        if d.iter().any(|(k, reason, _)| k == "pt-b1" && reason == "unknown_key") {
            Ok(())
        } else {
            Err(format!("{d:?}"))
        }
    });
    assert_eq!((reloads(&mut m, "ok"), reloads(&mut m, "failed")), (Some(0.0), Some(0.0)));

    // The key added to the file: the next batch folds its events.
    replace(&keys, &format!("{base}\n{}", site_b_entry("")));
    wait_reloads(&mut m, 1.0, 0.0);
    send(signed_by_site_b("pt-b2", t)).await;
    eventually("pt-b2 is folded", Duration::from_secs(60), || {
        let views = latest_views(&read_all(broker.bootstrap(), &state, PARTITIONS));
        if views.contains_key("pt-b2") { Ok(()) } else { Err(format!("{:?}", views.keys())) }
    });

    // A file that does not load changes nothing.
    replace(&keys, "[[key]]\nid = \"half-written");
    wait_reloads(&mut m, 1.0, 1.0);
    assert!(m.log_text().contains("key registry reload failed; keeping the previous one"), "{}", m.log_tail());

    // Revoked at t + 1 s: events stamped from then on are refused with the
    // reason ingest gives; one stamped before it is still folded.
    let revocation = "revoked_at = \"2026-01-01T00:00:01Z\"\n";
    replace(&keys, &format!("{base}\n{}", site_b_entry(revocation)));
    wait_reloads(&mut m, 2.0, 1.0);
    send(signed_by_site_b("pt-b3", t + 1_000)).await;
    send(signed_by_site_b("pt-b4", t + 999)).await;
    let (reason, detail) = eventually("pt-b3 is dead-lettered and pt-b4 folded", Duration::from_secs(60), || {
        let d = dead_letters(broker.bootstrap(), &prefix);
        let views = latest_views(&read_all(broker.bootstrap(), &state, PARTITIONS));
        match d.iter().find(|(k, _, _)| k == "pt-b3") {
            Some((_, reason, detail)) if views.contains_key("pt-b4") => Ok((reason.clone(), detail.clone())),
            _ => Err(format!("{d:?} {:?}", views.keys())),
        }
    });
    assert_eq!(reason, "key_revoked", "{detail}");
    assert!(detail.contains("key `site-b-2026` was revoked at 2026-01-01T00:00:01.000Z"), "{detail}");
    let d = dead_letters(broker.bootstrap(), &prefix);
    assert_eq!(d.len(), 2, "pt-b1 (unknown key) and pt-b3 (revoked) only: {d:?}");
    assert_eq!(m.id(), pid, "the same process throughout: no restart");
    let status = m.terminate(Duration::from_secs(15));
    assert!(status.is_some_and(|s| s.success()), "SIGTERM drains and exits 0: {status:?}\n{}", m.log_text());
}
