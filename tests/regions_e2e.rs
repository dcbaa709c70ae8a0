//! Two regions, each a Tansu broker with its own ingest and merger, joined
//! by a mirror standing in for MirrorMaker 2 (testkit's [`Mirror`]: each
//! region's edit topic copied into the other's `REGION.`-prefixed topic,
//! partitions kept). Edits to the same patients in both regions while the
//! mirrors are paused (a network partition), some sent to both regions (an
//! EHR that retried against the other region), then the mirrors resumed:
//! both regions' views must equal each other and `tidemark fold` of every
//! accepted envelope, and `tidemark converge` must say so (and must have
//! said they differed before the heal). Then apart again, and a heal
//! during which one region's merger and broker are killed: the same.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::broker::{restart_broker, tansu_panics};
use common::ingest::{Ingest, PARTITIONS};
use common::pipeline::{Signed, fold_reference, latest_views, produce_raw, read_all, workload};
use common::service::Service;
use common::{eventually, s, state_key, tidemark};
use tidemark_testkit::{Mirror, TansuBroker, unique_group, unique_topic};

/// One region: its broker, ingest and merger.
struct Region {
    name: &'static str,
    broker: TansuBroker,
    ingest: Ingest,
    merger: Service,
}

/// Starts `tidemark merger` reading the region's own edit topic and the
/// one mirrored in from `other`.
fn merger(broker: &TansuBroker, prefix: &str, name: &'static str, other: &str, dir: &Path) -> Service {
    let own = format!("{prefix}tidemark.edits.v1");
    let mirrored = format!("{other}.{own}");
    let edits = ["--edits-topic", own.as_str(), "--edits-topic", mirrored.as_str()];
    common::service::merger(broker.bootstrap(), prefix, &unique_group(name), dir, name, &edits)
}

fn region(name: &'static str, other: &str, prefix: &str, dir: &Path) -> Region {
    let broker = TansuBroker::start().expect("tansu starts");
    // The merger creates every topic it reads, the mirrored one included.
    let merger = merger(&broker, prefix, name, other, dir);
    let ingest = Ingest::spawn(broker.bootstrap(), prefix, &[]);
    Region { name, broker, ingest, merger }
}

fn send(region: &Region, items: &[Signed]) {
    let body: String = items.iter().map(|i| format!("{}\n", i.envelope)).collect();
    let (status, _, answer) = region.ingest.post("application/x-ndjson", body.as_bytes());
    assert_eq!(status, 202, "{}: {answer}", region.name);
    let answer: serde_json::Value = serde_json::from_str(&answer).expect("ingest answers JSON");
    assert_eq!(answer["accepted"], items.len(), "{}: {answer}", region.name);
}

fn views(region: &Region, prefix: &str) -> BTreeMap<String, serde_json::Value> {
    latest_views(&read_all(region.broker.bootstrap(), &format!("{prefix}tidemark.patient-state.v1"), PARTITIONS))
}

fn converge(a: &Region, b: &Region, prefix: &str) -> common::Run {
    let args = ["converge", "--brokers", a.broker.bootstrap(), "--topic-prefix", prefix];
    let other = ["--other-brokers", b.broker.bootstrap(), "--other-topic-prefix", prefix];
    let key = ["--state-key", s(state_key())];
    let all: Vec<&str> = args.iter().chain(&other).chain(&key).copied().collect();
    tidemark(&all, b"", &[])
}

#[tokio::test(flavor = "multi_thread")]
async fn regions_cut_off_from_each_other_converge_once_the_mirrors_resume() {
    let dir = tempfile::tempdir().expect("temp dir");
    let prefix = format!("{}.", unique_topic("regions"));
    let east = region("east", "west", &prefix, dir.path());
    let mut west = region("west", "east", &prefix, dir.path());
    let own = format!("{prefix}tidemark.edits.v1");
    let (to_west, to_east) = (format!("east.{own}"), format!("west.{own}"));
    let mirror_ew =
        Mirror::start((east.broker.bootstrap(), &own), (west.broker.bootstrap(), &to_west), PARTITIONS, true)
            .expect("east to west mirror");
    let mirror_we =
        Mirror::start((west.broker.bootstrap(), &own), (east.broker.bootstrap(), &to_east), PARTITIONS, true)
            .expect("west to east mirror");

    // The partition: the same 12 patients edited in both regions (concurrent
    // register writes, so conflicts), and 6 events an EHR sent to both.
    let east_edits = workload(12, 4, 101);
    let west_edits = workload(12, 4, 202);
    let retried = workload(6, 1, 303);
    send(&east, &east_edits);
    send(&east, &retried);
    send(&west, &west_edits);
    send(&west, &retried);
    let each_alone = |own: &[Signed]| {
        let mine: Vec<&Signed> = own.iter().chain(&retried).collect();
        fold_reference(mine, dir.path())
    };
    let (east_alone, west_alone) = (each_alone(&east_edits), each_alone(&west_edits));
    eventually("each region folds its own edits", Duration::from_secs(60), || {
        (views(&east, &prefix) == east_alone && views(&west, &prefix) == west_alone).then_some(()).ok_or("not yet")
    });
    let apart = converge(&east, &west, &prefix);
    apart.code(1).stdout_has("diverged");

    mirror_ew.resume();
    mirror_we.resume();
    let all: Vec<&Signed> = east_edits.iter().chain(&west_edits).chain(&retried).collect();
    let want = fold_reference(all.iter().copied(), dir.path());
    assert!(
        want.values().any(|v| v["open_conflicts"].as_u64() > Some(0)),
        "the workload makes concurrent edits across regions"
    );
    eventually("both regions hold the fold of every accepted envelope", Duration::from_secs(90), || {
        let (e, w) = (views(&east, &prefix), views(&west, &prefix));
        if e == want && w == want {
            return Ok(());
        }
        Err(format!(
            "east {} of {} right, west {} of {} right\n--- east merger\n{}\n--- west merger\n{}",
            want.iter().filter(|(k, v)| e.get(*k) == Some(v)).count(),
            want.len(),
            want.iter().filter(|(k, v)| w.get(*k) == Some(v)).count(),
            want.len(),
            east.merger.log_text(),
            west.merger.log_text()
        ))
    });
    // An event sent to both regions arrives twice in each (its own ingest
    // and the mirror) and counts once: distinct events per patient.
    for (patient, view) in &want {
        let distinct = all.iter().filter(|i| &i.patient == patient).count() as u64;
        assert_eq!(view["event_count"].as_u64(), Some(distinct), "{patient}: a retried event counts once");
    }
    let together = converge(&east, &west, &prefix);
    together.code(0).stdout_has("converged").stdout_has(&format!("identical {}", want.len()));
    assert!(mirror_ew.copied() >= (east_edits.len() + retried.len()) as u64);

    // Per input topic: west's group commits its offsets on the mirrored
    // topic too (its lag there reaches 0), and a poison record that arrives
    // through the mirror is dead-lettered in each region naming the topic
    // it was read from.
    produce_raw(east.broker.bootstrap(), &own, "pt-poison", Some(b"not an envelope"), None).await;
    for (region, topic) in [(&east, own.clone()), (&west, to_west.clone())] {
        let dlq = format!("{prefix}tidemark.edits.dlq.v1");
        eventually(
            &format!("{} dead-letters the poison record from {topic}", region.name),
            Duration::from_secs(60),
            || {
                let records = read_all(region.broker.bootstrap(), &dlq, PARTITIONS);
                let from = |r: &&common::pipeline::Read| r.headers.get("tidemark-original-topic") == Some(&topic);
                records.iter().any(|r| from(&r) && r.key == "pt-poison").then_some(()).ok_or("not yet")
            },
        );
    }
    let lag_series = format!("tidemark_merger_group_lag_messages{{topic=\"{to_west}\",partition=");
    eventually("west's group lag on the mirrored topic reaches 0", Duration::from_secs(60), || {
        let text = west.merger.scrape();
        let lags: Vec<&str> = text.lines().filter(|l| l.starts_with(&lag_series)).collect();
        let caught_up = lags.len() == PARTITIONS as usize && lags.iter().all(|l| l.ends_with(" 0"));
        caught_up.then_some(()).ok_or(format!("{lags:?}"))
    });

    // Apart again, then a heal during which west's merger and broker die.
    // East's clinician resolves one conflict the first partition left,
    // having read the merged view: once healed, it is resolved in both.
    mirror_ew.pause();
    mirror_we.pause();
    let (patient, path) = want
        .iter()
        .find_map(|(patient, view)| {
            let fields = view["fields"].as_object()?;
            let (path, _) = fields.iter().find(|(_, f)| f["conflicts"].as_array().is_some_and(|c| !c.is_empty()))?;
            Some((patient.clone(), path.clone()))
        })
        .expect("a field in conflict");
    let seen = &want[&patient];
    let now = common::now_ms();
    let resolution = serde_json::json!({
        "event_id": uuid::Uuid::now_v7(),
        "patient_id": patient,
        "source": "site-a-ehr",
        "author": "clin-resolver",
        "hlc": {"wall_ms": now, "logical": 0},
        "observed": seen["version"],
        "ops": [{"op": "set", "path": path, "value": seen["fields"][&path]["value"]}],
    });
    let resolution = Signed { patient: patient.clone(), envelope: common::pipeline::sign_event(&resolution) };
    let (mut east_more, west_more) = (workload(12, 3, 404), workload(12, 3, 505));
    east_more.push(resolution);
    send(&east, &east_more);
    send(&west, &west_more);
    let apart_again = |own: &[Signed]| {
        let mine: Vec<&Signed> = all.iter().copied().chain(own).collect();
        fold_reference(mine, dir.path())
    };
    let (east_alone, west_alone) = (apart_again(&east_more), apart_again(&west_more));
    eventually("each region folds its own new edits, apart", Duration::from_secs(60), || {
        (views(&east, &prefix) == east_alone && views(&west, &prefix) == west_alone).then_some(()).ok_or("not yet")
    });
    mirror_ew.resume();
    mirror_we.resume();
    west.merger.kill();
    west.broker.kill().expect("west's broker dies");
    std::thread::sleep(Duration::from_millis(800));
    restart_broker(&mut west.broker);
    west.merger.start();
    let all: Vec<&Signed> = all.into_iter().chain(&east_more).chain(&west_more).collect();
    let want = fold_reference(all.iter().copied(), dir.path());
    let field = &want[&patient]["fields"][&path];
    assert_eq!(field["conflicts"], serde_json::json!([]), "the resolution supersedes what it observed: {field}");
    assert_eq!(field["author"], "clin-resolver", "{field}");
    let mut panics = 0;
    eventually("both regions converge again after the kills", Duration::from_secs(120), || {
        // Tansu 0.6.0's storage task can panic after a producer's epoch
        // bump (tests/chaos.rs); a restart is its cure, as there.
        if tansu_panics(&west.broker) > panics {
            restart_broker(&mut west.broker);
            panics = tansu_panics(&west.broker);
        }
        // A merger exits 3 when its broker vanishes: restart it, as its supervisor would.
        west.merger.supervise();
        if let Some(failure) = mirror_ew.failure().or_else(|| mirror_we.failure()) {
            panic!("a mirror stopped: {failure}");
        }
        let (e, w) = (views(&east, &prefix), views(&west, &prefix));
        (e == want && w == want).then_some(()).ok_or_else(|| west.merger.log_tail())
    });
    converge(&east, &west, &prefix).code(0).stdout_has(&format!("identical {}", want.len()));
    mirror_ew.stop().expect("the east to west mirror lost nothing");
    mirror_we.stop().expect("the west to east mirror lost nothing");
}
