//! PHI hygiene: the pipeline runs on records carrying marker names, phone
//! numbers, note text and patient ids, at debug log level, through every path
//! that handles them (accepted, refused by ingest for each reason, dead-
//! lettered by the merger, archived in both profiles), and no marker may
//! appear in anything an operator collects: every service's log and its
//! `/metrics`. Also: key files are written 0600 and refused when group or
//! others can read them.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, Instant};

use common::ingest::post;
use common::pipeline::{Signed, latest_views, produce, read_all, sign_event};
use common::service::tidemark_service;
use common::{data, eventually, http_get, s, tidemark};
use serde_json::json;
use tidemark_testkit::{TansuBroker, unique_group, unique_topic};

/// Strings that appear only in the records' PHI, never in code or config.
const MARKERS: [&str; 6] = ["pt-phimark", "Quixmarker", "Zorbmarker", "PHONEMARK", "NOTEMARKER", "clin-authmark"];

const PATIENT: &str = "pt-phimark-0042";

fn event(n: u64, ops: serde_json::Value) -> serde_json::Value {
    let wall = common::pipeline::recent_start_ms() + n * 1000;
    json!({
        "event_id": uuid::Uuid::from_u64_pair((wall << 16) | 0x7000, 0x8000_0000_0000_0000 | n),
        "patient_id": PATIENT, "source": "site-a-ehr", "author": "clin-authmark-1",
        "hlc": {"wall_ms": wall, "logical": 0}, "ops": ops,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn no_marker_reaches_a_log_or_a_metric() {
    let broker = TansuBroker::start().expect("tansu starts");
    let prefix = format!("{}.", unique_topic("phi"));
    let edits = format!("{prefix}tidemark.edits.v1");
    broker.create_topic(&edits, 4).await.expect("edit topic");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    for (kind, name) in [("archiver", "archiver"), ("recipient", "reader"), ("dataset", "dataset")] {
        tidemark(&["keys", "generate", "--kind", kind, "--out", s(dir), "--name", name], b"", &[]).code(0);
    }
    let registry = data("test-registry.toml");
    let base = |sub: &str| -> Vec<String> {
        [sub, "--brokers", broker.bootstrap(), "--topic-prefix", &prefix, "--metrics-listen", "127.0.0.1:0"]
            .iter()
            .map(|x| (*x).to_owned())
            .collect()
    };
    let with = |mut v: Vec<String>, extra: &[&str]| {
        v.extend(extra.iter().map(|x| (*x).to_owned()));
        v
    };
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let (archive, reader_pub) = (dir.join("archive"), dir.join("reader.pub"));
    let (archiver_key, dataset_key) = (dir.join("archiver.key"), dir.join("dataset.key"));
    let archiver = |profile: &str| {
        let mut extra = vec!["--out", s(&archive), "--recipient", s(&reader_pub), "--archiver-key", s(&archiver_key)];
        extra.extend(["--profile", profile, "--interval-s", "1"]);
        if profile == "deidentified" {
            extra.extend(["--dataset-key", s(&dataset_key)]);
        }
        with(base("archiver"), &extra)
    };
    let group = unique_group("phi");
    let mut services = vec![
        tidemark_service(
            "ingest",
            with(base("ingest"), &["--keys", s(&registry), "--partitions", "4", "--listen", &listen]),
            dir,
        ),
        tidemark_service(
            "merger",
            with(base("merger"), &["--keys", s(&registry), "--group", &group, "--partitions", "4"]),
            dir,
        ),
        tidemark_service("archiver-identified", archiver("identified"), dir),
        tidemark_service("archiver-deidentified", archiver("deidentified"), dir),
    ];
    for svc in &mut services {
        svc.set_env("RUST_LOG", "debug");
        svc.start();
    }
    let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["ingest", "merger", "archiver-identified", "archiver-deidentified"]);
    services[0].wait_for("tidemark-ingest listening", "http=", Duration::from_secs(30));

    // Accepted: demographics, a phone, a note, all carrying markers.
    let good = [
        event(
            1,
            json!([
                {"op": "set", "path": "demographics.given_name", "value": "Quixmarker"},
                {"op": "set", "path": "demographics.family_name", "value": "Zorbmarker"},
                {"op": "set", "path": "demographics.phone", "value": "+1-PHONEMARK-77"},
                {"op": "set", "path": "demographics.birth_date", "value": "1931-02-03"},
            ]),
        ),
        event(2, json!([{"op": "append", "path": "notes", "value": {"text": "NOTEMARKER: pain controlled"}}])),
    ];
    let body: String = good.iter().map(|e| sign_event(e) + "\n").collect();
    let (status, _, answer) = post(&listen, "application/x-ndjson", body.as_bytes());
    assert_eq!(status, 202, "{answer}");

    // Refused by ingest, for every kind of reason, each line carrying markers.
    let too_long = "Quixmarker".repeat(40);
    let mut tampered =
        sign_event(&event(3, json!([{"op": "set", "path": "demographics.given_name", "value": "Quixmarker"}])));
    tampered = tampered.replacen("\"sig\":\"", "\"sig\":\"AA", 1);
    let refused = [
        sign_event(&event(4, json!([{"op": "set", "path": "demographics.given_name", "value": too_long}]))),
        sign_event(&event(5, json!([{"op": "set", "path": "demographics.phone", "value": 555}]))),
        sign_event(&event(6, json!([{"op": "set", "path": "demographics.Quixmarker", "value": "Zorbmarker"}]))),
        tampered,
        r#"{"payload": "Quixmarker PHONEMARK pt-phimark-0042", "payloadType": "x"}"#.to_owned(),
        "not json at all: Zorbmarker NOTEMARKER pt-phimark-0043".to_owned(),
    ];
    for line in &refused {
        let (status, _, answer) = post(&listen, "application/x-ndjson", format!("{line}\n").as_bytes());
        assert!((400..500).contains(&status), "refused with a 4xx: {status} {answer}");
    }

    // Dead-lettered by the merger: written to the topic without ingest.
    let poison = Signed {
        patient: PATIENT.to_owned(),
        envelope:
            r#"{"payloadType":"application/vnd.tidemark.edit.v1+json","payload":"UXVpeG1hcmtlcg==","signatures":[]}"#
                .to_owned(),
    };
    produce(broker.bootstrap(), &edits, &[poison]).await;

    // Wait until the view is folded and both profiles have a snapshot.
    let state = format!("{prefix}tidemark.patient-state.v1");
    // One minute for both.
    let deadline = Instant::now() + Duration::from_secs(60);
    let left = || deadline.saturating_duration_since(Instant::now());
    eventually("the merger folds the patient", left(), || {
        let folded = latest_views(&read_all(broker.bootstrap(), &state, 4)).contains_key(PATIENT);
        if folded { Ok(()) } else { Err(services[1].log_tail()) }
    });
    let dlq = format!("{prefix}tidemark.edits.dlq.v1");
    eventually("the poison event reaches the DLQ", left(), || {
        if read_all(broker.bootstrap(), &dlq, 4).is_empty() { Err(services[1].log_tail()) } else { Ok(()) }
    });
    let mut collected = Vec::new();
    // Both archivers committed a snapshot holding the patient (the only row),
    // so the marker data went through both profiles' code.
    for svc in &services[2..] {
        eventually(&format!("{} archives the patient", svc.name), Duration::from_secs(30), || {
            let archived =
                svc.log_text().lines().any(|l| l.starts_with("snapshot committed") && !l.contains(" rows=0 "));
            if archived { Ok(()) } else { Err(svc.log_tail()) }
        });
    }
    for svc in &mut services {
        let addr = svc.wait_for("tidemark-", "metrics=", Duration::from_secs(5));
        let metrics = http_get(&addr, "/metrics");
        common::promtool_check(&metrics);
        collected.push((format!("{} /metrics", svc.name), metrics));
    }
    // The merger's and the archivers' /healthz (beside /metrics) say how
    // their worker is, and hold no PHI either.
    for svc in &mut services[1..] {
        let addr = svc.wait_for("tidemark-", "metrics=", Duration::from_secs(5));
        let health = http_get(&addr, "/healthz");
        let parsed: serde_json::Value = serde_json::from_str(&health).expect("health JSON");
        if svc.name.starts_with("archiver") {
            assert_eq!(parsed["consecutive_failures"], 0, "{}: {health}", svc.name);
            assert!(parsed["since_success_s"].is_u64(), "{} committed a snapshot: {health}", svc.name);
        } else {
            assert_eq!(parsed["state"], "ok", "{}: {health}", svc.name);
        }
        collected.push((format!("{} /healthz", svc.name), health));
    }
    for svc in &mut services {
        assert_eq!(
            svc.terminate(Duration::from_secs(30)).and_then(|status| status.code()),
            Some(0),
            "{} drains and exits 0:\n{}",
            svc.name,
            svc.log_tail()
        );
    }
    for svc in &services {
        let log = svc.log_text();
        assert!(log.lines().count() >= 2, "{}'s log was captured:\n{log}", svc.name);
        collected.push((format!("{} log", svc.name), log));
    }
    let leaks: Vec<String> = collected
        .iter()
        .flat_map(|(what, text)| {
            text.lines().filter(|l| MARKERS.iter().any(|m| l.contains(m))).map(move |l| format!("{what}: {l}"))
        })
        .collect();
    assert!(leaks.is_empty(), "PHI markers leaked:\n{}", leaks.join("\n"));
}

/// Every kind of secret key file is written 0600, and every command that
/// reads one refuses it once group or others may read it.
#[test]
fn key_files_are_private_and_refused_when_readable_by_others() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    for (kind, name) in [("signing", "site"), ("archiver", "archiver"), ("recipient", "reader"), ("dataset", "dataset")]
    {
        tidemark(&["keys", "generate", "--kind", kind, "--out", s(dir), "--name", name], b"", &[]).code(0);
        let mode = fs::metadata(dir.join(format!("{name}.key"))).expect("key").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{kind} key written {mode:o}");
    }
    let events = data("events.ndjson");
    let archive = dir.join("archive");
    fs::create_dir_all(&archive).expect("archive dir");
    let readers: [(&str, Vec<&str>); 3] = [
        ("site", vec!["sign", "--key", "KEY", s(&events)]),
        (
            "reader",
            vec![
                "snapshot",
                "verify",
                "--archive",
                s(&archive),
                "--profile",
                "identified",
                "latest",
                "--archiver-pub",
                "PUB",
                "--key",
                "KEY",
            ],
        ),
        (
            "archiver",
            vec![
                "archiver",
                "--brokers",
                "127.0.0.1:1",
                "--out",
                s(&archive),
                "--recipient",
                "RPUB",
                "--archiver-key",
                "KEY",
                "--once",
            ],
        ),
    ];
    for (name, args) in readers {
        let key = dir.join(format!("{name}.key"));
        fs::set_permissions(&key, fs::Permissions::from_mode(0o640)).expect("chmod");
        let (apub, rpub) = (dir.join("archiver.pub"), dir.join("reader.pub"));
        let args: Vec<&str> = args
            .iter()
            .map(|a| match *a {
                "KEY" => s(&key),
                "PUB" => s(&apub),
                "RPUB" => s(&rpub),
                other => other,
            })
            .collect();
        let run = tidemark(&args, b"", &[]);
        run.code(2).stderr_has("chmod 600");
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).expect("chmod back");
    }
}
