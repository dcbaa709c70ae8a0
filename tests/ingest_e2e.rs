//! End-to-end tests of `tidemark ingest` against Tansu: the real binary as a
//! child process, requests over plain HTTP/1.1, records read back from Kafka.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::ingest::{Ingest, PARTITIONS};
use common::pipeline::{read_all, sign_event, signed_by_site_b, site_b_entry, workload};
use common::{data, eventually, s};
use tidemark_testkit::{TansuBroker, unique_topic};

async fn setup(name: &str) -> (TansuBroker, String) {
    let broker = TansuBroker::start().expect("tansu starts");
    let prefix = format!("{}.", unique_topic(name));
    (broker, prefix)
}

#[tokio::test(flavor = "multi_thread")]
async fn ingest_batch_lands_byte_identical_in_order_with_headers() {
    let (broker, prefix) = setup("ingest-ok").await;
    let ingest = Ingest::spawn(broker.bootstrap(), &prefix, &[]);
    let items = workload(5, 6, 7);
    let body: String = items.iter().map(|i| format!("{}\n", i.envelope)).collect();
    let (status, _, resp) = ingest.post("application/x-ndjson", body.as_bytes());
    assert_eq!(status, 202, "{resp}");
    let resp: serde_json::Value = serde_json::from_str(&resp).unwrap();
    assert_eq!(resp["accepted"], items.len());
    for line in resp["results"].as_array().expect("results") {
        let token = format!("tm1.{}.{}", line["partition"], line["offset"]);
        assert_eq!(line["consistency"], token.as_str(), "each accepted line names its position: {line}");
    }
    let one = &workload(1, 1, 8)[0];
    let (status, _, resp) = ingest.post("application/json", one.envelope.as_bytes());
    assert_eq!(status, 202, "{resp}");

    let topic = format!("{prefix}tidemark.edits.v1");
    let records = read_all(broker.bootstrap(), &topic, PARTITIONS);
    assert_eq!(records.len(), items.len() + 1);
    let all: Vec<_> = items.iter().chain(std::iter::once(one)).collect();
    for item in &all {
        let got: Vec<&[u8]> = records.iter().filter(|r| r.key == item.patient).map(|r| r.payload.as_slice()).collect();
        let want: Vec<&[u8]> =
            all.iter().filter(|i| i.patient == item.patient).map(|i| i.envelope.as_bytes()).collect();
        assert!(got == want, "per-patient order and bytes differ for one patient");
    }
    for r in &records {
        assert!(records.iter().filter(|x| x.key == r.key).all(|x| x.partition == r.partition));
        assert_eq!(r.headers["tidemark-schema"], tidemark_schemas::EDIT_EVENT_PAYLOAD_TYPE);
        assert_eq!(r.headers["tidemark-source"], "site-a-ehr");
        assert!(r.headers["tidemark-received-ms"].parse::<u64>().is_ok());
        assert_eq!(r.headers["tidemark-key-id"], "test-site-a-ehr", "the key that signed it");
    }
    let text = common::http_get(&ingest.metrics, "/metrics");
    assert_eq!(common::metric(&text, "tidemark_ingest_events_accepted_total"), Some((items.len() + 1) as f64));
    assert!(text.contains("tidemark_ingest_request_duration_seconds_bucket"), "{text}");
    common::promtool_check(&text);
    assert_eq!(common::http_get(&ingest.http, "/readyz"), "ready");
}

#[tokio::test(flavor = "multi_thread")]
async fn ingest_errors_have_exact_statuses() {
    let (broker, prefix) = setup("ingest-err").await;
    let ingest = Ingest::spawn(broker.bootstrap(), &prefix, &["--max-body-bytes", "100000"]);
    let good = workload(1, 1, 9)[0].envelope.clone();

    let (status, _, body) = ingest.post("text/plain", good.as_bytes());
    assert_eq!(status, 415, "{body}");
    assert!(body.contains("unsupported_media_type"), "{body}");

    let (status, _, body) = ingest.post("application/json", b"{not json");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"reason\":\"malformed\"") && body.contains("\"line\":1"), "{body}");

    let mut tampered: serde_json::Value = serde_json::from_str(&good).unwrap();
    tampered["signatures"][0]["keyid"] = "nobody".into();
    let (status, _, body) = ingest.post("application/json", tampered.to_string().as_bytes());
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("unknown_key"), "{body}");

    // Validly signed, but the catalog has no such field: 422 naming the op,
    // the path and the reason.
    let mut invalid: serde_json::Value =
        serde_json::from_slice(tidemark_schemas::dsse::Envelope::decode(good.as_bytes()).unwrap().payload()).unwrap();
    invalid["ops"] = serde_json::json!([{"op": "set", "path": "vitals.shoe_size", "value": 44}]);
    let (status, _, body) = ingest.post("application/json", sign_event(&invalid).as_bytes());
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("\"reason\":\"unknown_path\""), "{body}");
    assert!(body.contains("op 0 (`vitals.shoe_size`): unknown field path"), "{body}");

    let big = vec![b' '; 200_000];
    let (status, _, _) = ingest.post("application/json", &big);
    assert_eq!(status, 413);

    // Some good, some bad: 207, the good one produced.
    let batch = format!("{good}\n{{oops\n");
    let (status, _, body) = ingest.post("application/x-ndjson", batch.as_bytes());
    assert_eq!(status, 207, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["accepted"], 1);
    assert_eq!(v["results"][1]["line"], 2);
    assert_eq!(v["results"][1]["status"], 400);

    // The counters moved, by reason and by status class.
    let text = common::http_get(&ingest.metrics, "/metrics");
    let rejected =
        |reason: &str| common::metric(&text, &format!("tidemark_ingest_events_rejected_total{{reason=\"{reason}\"}}"));
    assert_eq!(rejected("unknown_path"), Some(1.0), "{text}");
    assert_eq!(rejected("unknown_key"), Some(1.0), "{text}");
    assert_eq!(rejected("malformed"), Some(2.0), "{text}");
    let requests = |class: &str| {
        common::metric(
            &text,
            &format!("tidemark_ingest_requests_total{{route=\"/v1/events\",status_class=\"{class}\"}}"),
        )
    };
    assert_eq!(requests("4xx"), Some(5.0), "{text}");
    assert_eq!(requests("2xx"), Some(1.0), "{text}");
    // Series that never moved exist at 0, so their first increase is seen.
    assert_eq!(requests("5xx"), Some(0.0), "{text}");
    assert_eq!(rejected("bad_signature"), Some(0.0), "{text}");
    assert_eq!(rejected("unavailable"), Some(0.0), "{text}");
    common::promtool_check(&text);
}

#[tokio::test(flavor = "multi_thread")]
async fn ingest_registry_reloads_on_change_and_keeps_the_old_one_when_bad() {
    let (broker, prefix) = setup("ingest-reload").await;
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("registry.toml");
    let original = std::fs::read_to_string(data("test-registry.toml")).unwrap();
    std::fs::write(&keys, &original).unwrap();
    let ingest = Ingest::spawn(broker.bootstrap(), &prefix, &["--keys", s(&keys)]);
    let mut seed = 500;
    let mut send = || {
        seed += 1;
        ingest.post("application/json", workload(1, 1, seed)[0].envelope.as_bytes()).0
    };
    let reloads = |result: &str| {
        let series = format!("tidemark_ingest_registry_reloads_total{{result=\"{result}\"}}");
        ingest.series(&series).unwrap_or_else(|| panic!("no {series} in\n{}", ingest.scrape()))
    };
    assert_eq!(send(), 202);
    assert_eq!((reloads("ok"), reloads("failed")), (0.0, 0.0), "nothing reloaded yet");
    std::fs::write(&keys, "this is not a registry").unwrap();
    // The poll sees the change and fails to load it; only then does the old
    // registry still verifying mean the bad one did not replace it.
    eventually("ingest tries the bad registry and fails", Duration::from_secs(15), || {
        let failed = reloads("failed");
        if failed >= 1.0 { Ok(()) } else { Err(format!("failed reloads {failed}\n{}", ingest.log_tail())) }
    });
    assert_eq!(reloads("ok"), 0.0, "the bad registry did not load");
    assert_eq!(send(), 202, "a bad registry must not replace the loaded one");
    std::fs::write(&keys, original.replace("id = \"test-site-a-ehr\"", "id = \"another-key\"")).unwrap();
    eventually("the new registry is loaded", Duration::from_secs(15), || send() == 401);
    assert_eq!(reloads("ok"), 1.0, "the good registry counts as reloaded");
}

/// Finding 11: a key revoked in the registry (picked up by the live reload)
/// refuses the events stamped at or after its `revoked_at` with the stable
/// reason `key_revoked`, and keeps accepting those stamped before it: the
/// verdict follows the event's signed time, not ingest's clock.
#[tokio::test(flavor = "multi_thread")]
async fn ingest_refuses_events_stamped_after_their_keys_revocation_as_key_revoked() {
    let (broker, prefix) = setup("ingest-revoked").await;
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("registry.toml");
    let base = std::fs::read_to_string(data("test-registry.toml")).unwrap();
    std::fs::write(&keys, format!("{base}\n{}", site_b_entry(""))).unwrap();
    let ingest = Ingest::spawn(broker.bootstrap(), &prefix, &["--keys", s(&keys)]);
    let now =
        u64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()).unwrap();
    let revoked_at = now - 3_600_000;
    let before = signed_by_site_b("pt-before", revoked_at - 60_000);
    let after = signed_by_site_b("pt-after", revoked_at);
    let (status, _, body) = ingest.post("application/json", after.envelope.as_bytes());
    assert_eq!(status, 202, "not revoked yet: {body}");

    let revocation = format!("revoked_at = \"{}\"\n", tidemark_schemas::format_utc_ms(revoked_at));
    std::fs::write(&keys, format!("{base}\n{}", site_b_entry(&revocation))).unwrap();
    let reloaded = "tidemark_ingest_registry_reloads_total{result=\"ok\"}";
    eventually("ingest reloads the registry", Duration::from_secs(15), || {
        if ingest.series(reloaded) == Some(1.0) { Ok(()) } else { Err(ingest.log_tail()) }
    });
    let again = signed_by_site_b("pt-after", revoked_at + 1);
    let (status, _, body) = ingest.post("application/json", again.envelope.as_bytes());
    assert_eq!(status, 401, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    let line = &answer["results"][0];
    assert_eq!(line["reason"], "key_revoked", "{body}");
    let message = line["message"].as_str().unwrap();
    assert!(message.contains("key `site-b-2026` was revoked at"), "{message}");
    assert!(!message.contains(&(revoked_at + 1).to_string()), "the event's time is not echoed: {message}");
    let (status, _, body) = ingest.post("application/json", before.envelope.as_bytes());
    assert_eq!(status, 202, "stamped before the revocation: {body}");
    let refused = "tidemark_ingest_events_rejected_total{reason=\"key_revoked\"}";
    assert_eq!(ingest.series(refused), Some(1.0), "{}", ingest.scrape());
}

/// Throughput measurement, not a check: 1,000-event NDJSON batches sent one
/// after another. Run with
/// `cargo test --release --test ingest_e2e ingest_measure -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement; run by hand"]
async fn ingest_measure_batches_of_1000() {
    let (broker, prefix) = setup("ingest-measure").await;
    let ingest = Ingest::spawn(broker.bootstrap(), &prefix, &[]);
    let bodies: Vec<String> = (0..30)
        .map(|seed| workload(100, 10, 10_000 + seed).iter().map(|i| format!("{}\n", i.envelope)).collect())
        .collect();
    let mut latencies = Vec::new();
    let started = std::time::Instant::now();
    for body in &bodies {
        let t = std::time::Instant::now();
        let (status, _, resp) = ingest.post("application/x-ndjson", body.as_bytes());
        assert_eq!(status, 202, "{resp}");
        latencies.push(t.elapsed());
    }
    let total = started.elapsed();
    latencies.sort();
    let pct = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
    println!(
        "ingest: {} events in {:.2?} = {:.0} events/s; request p50 {:.1?} p99 {:.1?}",
        bodies.len() * 1000,
        total,
        (bodies.len() * 1000) as f64 / total.as_secs_f64(),
        pct(50),
        pct(99)
    );
}
