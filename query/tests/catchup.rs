//! Catching up from the state topic on librdkafka's mock cluster: sealed
//! records land in the store with their edit offsets, forged ones are passed
//! over, and a restarted reader resumes from the stored offsets instead of
//! reading the topic again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tidemark_kafka::Connection;
use tidemark_query::catchup::{self, Progress};
use tidemark_query::metrics::{QueryMetrics, WhyLabels};
use tidemark_query::store::Store;
use tidemark_schemas::EDITS_THROUGH_HEADER;
use tidemark_seal::{RecordKind, StateKey, StateKeys};
use tidemark_testkit::MockBroker;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const TOPIC: &str = "tidemark.patient-state.v1";

fn view(patient: &str, hr: u32) -> String {
    format!(
        r#"{{"patient_id":"{patient}","fields":{{"vitals.heart_rate_bpm":{{"value":{hr},"author":"a","source":"site-a","hlc":{{"wall_ms":5,"logical":0}},"conflicts":[]}}}},"version":{{"site-a":{{"wall_ms":{hr},"logical":0}}}},"event_count":1,"updated_at":"2026-01-01T00:00:00.000Z","open_conflicts":0}}"#
    )
}

async fn produce(producer: &FutureProducer, keys: &StateKeys, partition: i32, patient: &str, hr: u32, through: i64) {
    produce_sealed_as(producer, keys, partition, patient, hr, hr, through).await;
}

/// Produces the view with heart rate `hr` under the MAC of the view with `sealed_hr`.
async fn produce_sealed_as(
    producer: &FutureProducer,
    keys: &StateKeys,
    partition: i32,
    patient: &str,
    hr: u32,
    sealed_hr: u32,
    through: i64,
) {
    let value = view(patient, hr);
    let mac = keys.seal(RecordKind::State, patient.as_bytes(), Some(view(patient, sealed_hr).as_bytes()));
    let through = through.to_string();
    let headers = mac
        .headers()
        .into_iter()
        .fold(OwnedHeaders::new(), |h, (key, value)| h.insert(Header { key, value: Some(value) }))
        .insert(Header { key: EDITS_THROUGH_HEADER, value: Some(&through) });
    let record = FutureRecord::to(TOPIC).key(patient).payload(&value).partition(partition).headers(headers);
    producer.send(record, Duration::from_secs(5)).await.expect("produced");
}

/// Runs the catch-up loop on a thread until it has caught up with what the
/// topic held when it started, then stops it; returns the records it read
/// and those it passed over as forged.
async fn catch_up(conn: &Connection, store: &Arc<Store>, keys: &Arc<StateKeys>) -> (u64, u64) {
    let metrics = QueryMetrics::default();
    let (tx, mut rx) = watch::channel(Progress::default());
    let stop = CancellationToken::new();
    let (conn2, store2, keys2, metrics2, stop2) =
        (conn.clone(), store.clone(), keys.clone(), metrics.clone(), stop.clone());
    let reader = std::thread::spawn(move || catchup::run(&conn2, TOPIC, &store2, &keys2, &metrics2, &tx, &stop2));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !rx.borrow().caught_up {
        assert!(Instant::now() < deadline, "did not catch up: {:?}", *rx.borrow());
        let _ = tokio::time::timeout(Duration::from_millis(200), rx.changed()).await;
    }
    stop.cancel();
    reader.join().expect("no panic").expect("caught up without error");
    let forged = metrics.records_passed_over.get_or_create(&WhyLabels { why: "mac" }).get();
    (metrics.records_read.get(), forged)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_up_passes_over_forgeries_and_resumes_after_a_restart() {
    let broker = MockBroker::start().expect("mock broker");
    broker.create_topic(TOPIC, 2).await.expect("topic");
    let conn = Connection::new(broker.bootstrap(), vec![]);
    let producer: FutureProducer = conn.durable_producer(&[], None).create().expect("producer");
    let keys = Arc::new(StateKeys::new(&[StateKey::generate().expect("key")]).expect("keys"));
    produce(&producer, &keys, 0, "pt-1", 70, 3).await;
    produce(&producer, &keys, 1, "pt-2", 80, 7).await;
    produce_sealed_as(&producer, &keys, 1, "pt-2", 99, 80, 9).await; // altered: must not show
    produce(&producer, &keys, 0, "pt-1", 71, 5).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(dir.path()).expect("store"));
    let (read, forged) = catch_up(&conn, &store, &keys).await;
    assert_eq!((read, forged), (4, 1));
    let pt1 = store.get("pt-1").expect("get").expect("pt-1");
    assert_eq!((pt1.json.as_slice(), pt1.through, pt1.partition), (view("pt-1", 71).as_bytes(), 5, 0));
    let pt2 = store.get("pt-2").expect("get").expect("pt-2");
    assert_eq!((pt2.json.as_slice(), pt2.through), (view("pt-2", 80).as_bytes(), 7), "the forgery is not shown");
    assert_eq!(store.offsets().expect("offsets"), vec![(0, 2), (1, 2)], "the forgery's offset counts as read");
    drop(store);

    // A restart reads only what came after the stored offsets.
    produce(&producer, &keys, 1, "pt-3", 90, 8).await;
    let store = Arc::new(Store::open(dir.path()).expect("store reopens"));
    let (read, forged) = catch_up(&conn, &store, &keys).await;
    assert_eq!((read, forged), (1, 0), "resumed at the stored offsets");
    assert!(store.get("pt-3").expect("get").is_some());
    assert_eq!(store.offsets().expect("offsets"), vec![(0, 2), (1, 3)]);

    // A record sealed under a key this service lacks (the mergers rotated
    // first) stops catch-up rather than dropping a real view.
    let rotated = StateKeys::new(&[StateKey::generate().expect("key")]).expect("keys");
    produce(&producer, &rotated, 0, "pt-1", 72, 9).await;
    let (tx, _rx) = watch::channel(Progress::default());
    let err = catchup::run(&conn, TOPIC, &store, &keys, &QueryMetrics::default(), &tx, &CancellationToken::new())
        .expect_err("an unknown state key stops catch-up");
    assert!(err.to_string().contains("give it every --state-key"), "{err}");
    assert!(!err.to_string().contains("pt-1"), "no patient id in the error: {err}");
    assert_eq!(store.offsets().expect("offsets"), vec![(0, 2), (1, 3)], "nothing passed over");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_a_state_topic_that_does_not_exist_yet() {
    let broker = MockBroker::start().expect("mock broker");
    let conn = Connection::new(broker.bootstrap(), vec![]);
    let keys = Arc::new(StateKeys::new(&[StateKey::generate().expect("key")]).expect("keys"));
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(dir.path()).expect("store"));
    let (tx, mut rx) = watch::channel(Progress::default());
    let stop = CancellationToken::new();
    let (conn2, store2, keys2, stop2) = (conn.clone(), store.clone(), keys.clone(), stop.clone());
    let reader =
        std::thread::spawn(move || catchup::run(&conn2, TOPIC, &store2, &keys2, &QueryMetrics::default(), &tx, &stop2));
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(!reader.is_finished(), "a missing topic is waited for, not an error");
    broker.create_topic(TOPIC, 1).await.expect("topic");
    let producer: FutureProducer = conn.durable_producer(&[], None).create().expect("producer");
    produce(&producer, &keys, 0, "pt-1", 70, 1).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.get("pt-1").expect("get").is_none() {
        assert!(Instant::now() < deadline, "the view never arrived: {:?}", *rx.borrow());
        let _ = tokio::time::timeout(Duration::from_millis(200), rx.changed()).await;
    }
    stop.cancel();
    reader.join().expect("no panic").expect("stopped cleanly");
}
