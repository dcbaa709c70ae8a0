//! `tidemark loadgen` against a running ingest, and `tidemark state` against
//! the state topic a running merger writes, on the Tansu broker: loadgen
//! reports throughput with zero errors, what it recorded as accepted folds
//! (`tidemark fold`) to exactly what `tidemark state` reads live, and a
//! loadgen whose events are all refused exits non-zero with the statuses.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::ingest::{Ingest, PARTITIONS};
use common::service::{Service, tidemark_service};
use common::{data, eventually, s, tidemark};
use tidemark_testkit::{TansuBroker, unique_group, unique_topic};

/// A merger of a fresh group on `prefix`'s topics, logging to `dir`.
fn merger(bootstrap: &str, prefix: &str, dir: &Path) -> Service {
    let partitions = PARTITIONS.to_string();
    let registry = data("test-registry.toml");
    let args = ["merger", "--brokers", bootstrap, "--keys", s(&registry), "--topic-prefix", prefix]
        .into_iter()
        .chain(["--group", &unique_group("loadgen"), "--partitions", &partitions])
        .chain(["--metrics-listen", "127.0.0.1:0", "--max-batch-wait-ms", "20"])
        .map(str::to_owned)
        .collect();
    let mut merger = tidemark_service("merger", args, dir);
    merger.start();
    merger
}

#[tokio::test(flavor = "multi_thread")]
async fn loadgen_reports_clean_throughput_and_state_reads_back_the_fold() {
    let broker = TansuBroker::start().expect("tansu starts");
    let prefix = format!("{}.", unique_topic("loadgen"));
    broker.create_topic(&format!("{prefix}tidemark.edits.v1"), PARTITIONS).await.expect("edit topic");
    let ingest = Ingest::spawn(broker.bootstrap(), &prefix, &[]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let merger = merger(broker.bootstrap(), &prefix, tmp.path());
    let record = tmp.path().join("accepted.ndjson");
    let key = common::private_test_key(tmp.path());
    let target = format!("http://{}", ingest.http);

    let run = tidemark(
        &[
            "loadgen",
            "--target",
            &target,
            "--key",
            s(&key),
            "--rate",
            "300",
            "--duration",
            "3",
            "--concurrency",
            "4",
            "--batch",
            "20",
            "--patients",
            "60",
            "--record",
            s(&record),
            "--json",
        ],
        b"",
        &[],
    );
    run.code(0);
    let report: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("--json prints one JSON object");
    let accepted = report["totals"]["accepted"].as_u64().expect("accepted");
    assert!(accepted > 0 && report["accepted_per_s"].as_f64().expect("rate") > 0.0, "{run:?}");
    assert_eq!(report["totals"]["sent"].as_u64(), Some(accepted), "zero errors: {run:?}");
    assert_eq!(report["totals"]["failed_by_status"], serde_json::json!({}), "{run:?}");
    assert!(report["latency"]["p99_ms"].as_f64().expect("p99") > 0.0, "{run:?}");
    assert!(!report["timeline"].as_array().expect("timeline").is_empty(), "{run:?}");
    assert!(run.stderr.contains("loadgen [   1s] sent"), "a progress line every second: {run:?}");

    // The recorded envelopes are exactly the accepted ones; their fold is the reference.
    let fold = tidemark(&["fold", "--keys", s(&data("test-registry.toml")), s(&record)], b"", &[]);
    fold.code(0);
    let want: BTreeMap<String, String> = fold
        .stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a view");
            (v["patient_id"].as_str().expect("id").to_owned(), l.to_owned())
        })
        .collect();
    let events: u64 = fold
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("view")["event_count"].as_u64().expect("count"))
        .sum();
    assert_eq!(events, accepted, "the record file holds every accepted event once");

    // `tidemark state` reads each patient's live view; once the merger has
    // caught up it equals the fold's line, byte for byte.
    // One minute for all of them.
    let deadline = Instant::now() + Duration::from_secs(60);
    for (patient, line) in want.iter().take(8) {
        let left = deadline.saturating_duration_since(Instant::now());
        eventually(&format!("the state of {patient} equals the fold"), left, || {
            let got =
                tidemark(&["state", "--brokers", broker.bootstrap(), "--topic-prefix", &prefix, patient], b"", &[]);
            if got.code == Some(0) && got.stdout.trim_end() == line {
                return Ok(());
            }
            Err(format!("want {line}\n{got:?}\nmerger:\n{}", merger.log_tail()))
        });
    }
    let all = tidemark(
        &[
            "state",
            "--brokers",
            broker.bootstrap(),
            "--topic-prefix",
            &prefix,
            "--all-partitions",
            want.keys().next().expect("a patient"),
        ],
        b"",
        &[],
    );
    all.code(0).stdout_has(want.values().next().expect("a view"));
    let missing =
        tidemark(&["state", "--brokers", broker.bootstrap(), "--topic-prefix", &prefix, "pt-nobody"], b"", &[]);
    missing.code(1).stderr_has("no state view for patient pt-nobody");

    // A site whose key the registry does not list: every event is refused (401), loadgen exits 1.
    let rogue =
        tidemark(&["keys", "generate", "--kind", "signing", "--out", s(tmp.path()), "--name", "rogue"], b"", &[]);
    rogue.code(0);
    let refused = tidemark(
        &[
            "loadgen",
            "--target",
            &target,
            "--key",
            s(&tmp.path().join("rogue.key")),
            "--rate",
            "100",
            "--duration",
            "1",
            "--batch",
            "10",
        ],
        b"",
        &[],
    );
    refused.code(1).stdout_has("errors:      401: ").stderr_has("is above --max-error-rate");
}

/// `--write-events` signs a workload without any ingest; `--replay` sends
/// exactly those envelopes: every one is acknowledged once, and the merger
/// folds them to what `tidemark fold` of the file gives.
#[tokio::test(flavor = "multi_thread")]
async fn written_events_replay_to_the_same_fold() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let key = common::private_test_key(tmp.path());
    let file = tmp.path().join("signed.ndjson");
    let write = tidemark(
        &["loadgen", "--write-events", s(&file), "--events", "300", "--patients", "40", "--key", s(&key)],
        b"",
        &[],
    );
    write.code(0);
    let text = std::fs::read_to_string(&file).expect("the events file");
    assert_eq!(text.lines().count(), 300, "{write:?}");
    let fold = tidemark(&["fold", "--keys", s(&data("test-registry.toml")), s(&file)], b"", &[]);
    fold.code(0);

    let broker = TansuBroker::start().expect("tansu starts");
    let prefix = format!("{}.", unique_topic("replay"));
    broker.create_topic(&format!("{prefix}tidemark.edits.v1"), PARTITIONS).await.expect("edit topic");
    let ingest = Ingest::spawn(broker.bootstrap(), &prefix, &[]);
    let _merger = merger(broker.bootstrap(), &prefix, tmp.path());
    let target = format!("http://{}", ingest.http);
    let run = tidemark(
        &["loadgen", "--replay", s(&file), "--target", &target, "--rate", "0", "--batch", "25", "--json"],
        b"",
        &[],
    );
    run.code(0);
    let report: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("--json prints one JSON object");
    assert_eq!(report["totals"]["sent"].as_u64(), Some(300), "each envelope sent once: {run:?}");
    assert_eq!(report["totals"]["accepted"].as_u64(), Some(300), "{run:?}");
    assert_eq!(report["target_rate"], serde_json::Value::Null, "--rate 0 is unlimited: {run:?}");

    // Patients' live views equal the fold of the file.
    // One minute for all of them.
    let deadline = Instant::now() + Duration::from_secs(60);
    for line in fold.stdout.lines().take(10) {
        let view: serde_json::Value = serde_json::from_str(line).expect("a view");
        let patient = view["patient_id"].as_str().expect("id");
        let left = deadline.saturating_duration_since(Instant::now());
        eventually(&format!("{patient} reaches the fold's view"), left, || {
            let state =
                tidemark(&["state", "--brokers", broker.bootstrap(), "--topic-prefix", &prefix, patient], b"", &[]);
            if state.stdout.trim() == line { Ok(()) } else { Err(format!("{state:?}")) }
        });
    }

    // Bad combinations and files fail with the reason.
    let empty = tmp.path().join("empty.ndjson");
    std::fs::write(&empty, "\n").expect("write");
    let run = tidemark(&["loadgen", "--replay", s(&empty), "--target", &target], b"", &[]);
    assert_ne!(run.code, Some(0), "{run:?}");
    assert!(run.stderr.contains("holds no envelope"), "{run:?}");
    let run = tidemark(&["loadgen", "--write-events", s(&empty), "--target", &target, "--key", s(&key)], b"", &[]);
    assert_ne!(run.code, Some(0), "{run:?}");
    assert!(run.stderr.contains("cannot be used with"), "{run:?}");
}
