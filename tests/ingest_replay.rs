//! Replay defences of `tidemark ingest`, end to end against Tansu: a
//! captured envelope sent again is answered `duplicate` and never becomes a
//! second Kafka record; an event older than the age bound is refused; an
//! ingest that names its audience takes only events signed for it.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::ingest::{Ingest, PARTITIONS};
use common::pipeline::{read_all, recent_start_ms, sign_event};
use serde_json::{Value, json};
use tidemark_testkit::{TansuBroker, unique_topic};

async fn setup(name: &str) -> (TansuBroker, String) {
    let broker = TansuBroker::start().expect("tansu starts");
    let prefix = format!("{}.", unique_topic(name));
    (broker, prefix)
}

/// A valid event of the test key's source, `wall_ms` old, with `extra`
/// fields merged in.
fn event(id_low: u64, wall_ms: u64, extra: Value) -> String {
    let id = uuid::Uuid::from_u64_pair((wall_ms << 16) | 0x7000, 0x8000_0000_0000_0000 | id_low);
    let mut e = json!({"event_id": id, "patient_id": "pt-replay", "source": "site-a-ehr", "author": "clin-1",
        "hlc": {"wall_ms": wall_ms, "logical": 0}, "ops": [{"op": "set", "path": "vitals.heart_rate_bpm", "value": 61}]});
    e.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    sign_event(&e)
}

fn body(resp: &str) -> Value {
    serde_json::from_str(resp).unwrap_or_else(|e| panic!("{e}: {resp}"))
}

/// The security review's finding: one captured envelope was accepted 2,000
/// times as 2,000 Kafka records. Now: one record, and every copy is told
/// `duplicate` (a success), in the same batch or in later requests.
#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_envelope_is_written_once_and_answered_duplicate() {
    let (broker, prefix) = setup("replay-dup").await;
    let ingest = Ingest::spawn(broker.bootstrap(), &prefix, &[]);
    let envelope = event(1, recent_start_ms(), json!({}));
    let batch = format!("{envelope}\n").repeat(1_000);
    let (status, _, resp) = ingest.post("application/x-ndjson", batch.as_bytes());
    assert_eq!(status, 202, "{resp}");
    let resp = body(&resp);
    assert_eq!((resp["accepted"].as_u64(), resp["duplicates"].as_u64()), (Some(1), Some(999)), "{resp}");
    assert_eq!(resp["results"][0]["result"], "accepted");
    assert!(resp["results"].as_array().unwrap()[1..].iter().all(|r| r["result"] == "duplicate"));
    for _ in 0..1_000 {
        let (status, _, resp) = ingest.post("application/json", envelope.as_bytes());
        assert_eq!(status, 202, "{resp}");
        assert_eq!(body(&resp)["results"][0]["result"], "duplicate", "{resp}");
    }
    let records = read_all(broker.bootstrap(), &format!("{prefix}tidemark.edits.v1"), PARTITIONS);
    assert_eq!(records.len(), 1, "2,000 copies of one envelope make one record");
    assert_eq!(ingest.series("tidemark_ingest_events_duplicate_total"), Some(1_999.0));
    assert_eq!(ingest.series("tidemark_ingest_events_accepted_total"), Some(1.0));
}

/// An event older than `--max-event-age-s` (7 days by default) is refused
/// `event_too_old`, again when resent (a refused event is not remembered as
/// accepted), and a longer bound takes it.
#[tokio::test(flavor = "multi_thread")]
async fn old_events_are_refused_with_a_stable_reason_and_the_bound_is_a_flag() {
    let (broker, prefix) = setup("replay-age").await;
    let ingest = Ingest::spawn(broker.bootstrap(), &prefix, &[]);
    let eight_days_ago = recent_start_ms() - 7 * 86_400_000;
    let old = event(2, eight_days_ago, json!({}));
    for _ in 0..2 {
        let (status, _, resp) = ingest.post("application/json", old.as_bytes());
        assert_eq!(status, 422, "{resp}");
        let resp = body(&resp);
        assert_eq!(resp["results"][0]["reason"], "event_too_old", "{resp}");
        let message = resp["results"][0]["message"].as_str().unwrap();
        assert!(message.contains("old, over the bound of 604800 s"), "{message}");
    }
    drop(ingest);
    let lenient = Ingest::spawn(broker.bootstrap(), &prefix, &["--max-event-age-s", "1000000"]);
    let (status, _, resp) = lenient.post("application/json", old.as_bytes());
    assert_eq!(status, 202, "a downtime queue drained late is taken with a longer bound: {resp}");
}

/// Events signed for staging do not land in production when keys are
/// shared: an ingest with `--audience` takes only its own.
#[tokio::test(flavor = "multi_thread")]
async fn an_ingest_with_an_audience_takes_only_events_signed_for_it() {
    let (broker, prefix) = setup("replay-aud").await;
    let ingest = Ingest::spawn(broker.bootstrap(), &prefix, &["--audience", "prod-eu"]);
    let wall = recent_start_ms();
    for (n, extra, want) in [
        (10, json!({}), Some("wrong_audience")),
        (11, json!({"audience": "staging"}), Some("wrong_audience")),
        (12, json!({"audience": "prod-eu"}), None),
    ] {
        let (status, _, resp) = ingest.post("application/json", event(n, wall, extra.clone()).as_bytes());
        let resp = body(&resp);
        match want {
            Some(reason) => {
                assert_eq!(status, 422, "{extra}: {resp}");
                assert_eq!(resp["results"][0]["reason"], reason, "{extra}: {resp}");
            }
            None => assert_eq!(status, 202, "{extra}: {resp}"),
        }
    }
    drop(ingest);
    // Without --audience, an event that names one is taken (the operator
    // chose not to check); a malformed audience is still refused.
    let open = Ingest::spawn(broker.bootstrap(), &prefix, &[]);
    let (status, _, resp) = open.post("application/json", event(13, wall, json!({"audience": "staging"})).as_bytes());
    assert_eq!(status, 202, "{resp}");
    let (status, _, resp) = open.post("application/json", event(14, wall, json!({"audience": "no spaces"})).as_bytes());
    assert_eq!((status, body(&resp)["results"][0]["reason"].as_str()), (422, Some("bad_identifier")), "{resp}");
}
