//! The partition reader's stop rule against librdkafka's mock cluster: it
//! stops at the cut; a partition end below the cut (what a new leader still
//! catching up reports) does not end the read, the records up to the cut do;
//! and a cut that never becomes reachable fails as a stall, with no record
//! missing silently.

use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, FutureRecord};
use tidemark_kafka::scan::{self, PartitionCut, Record};
use tidemark_kafka::{Connection, KafkaFailure};
use tidemark_testkit::MockBroker;

const TOPIC: &str = "scan-stop-rule";
const STALL: Duration = Duration::from_secs(20);

async fn broker_with_records(n: usize) -> (MockBroker, Connection) {
    let broker = MockBroker::start().expect("mock broker");
    broker.create_topic(TOPIC, 1).await.expect("topic");
    let conn = Connection::new(broker.bootstrap(), Vec::new());
    let producer: FutureProducer = conn.durable_producer(&[], None).create().expect("producer");
    for i in 0..n {
        let key = format!("k{}", i % 3);
        let value = format!("v{i}");
        producer
            .send(FutureRecord::to(TOPIC).partition(0).key(&key).payload(&value), Duration::from_secs(5))
            .await
            .expect("delivered");
    }
    (broker, conn)
}

fn read(conn: &Connection, cut: PartitionCut) -> Result<Vec<(i64, String)>, KafkaFailure> {
    let reader = conn.reader("scan-test").expect("reader");
    let mut seen = Vec::new();
    scan::scan_partition(&reader, TOPIC, cut, STALL, |r: Record<'_>| {
        seen.push((r.offset, String::from_utf8_lossy(r.value.unwrap_or_default()).into_owned()));
        Ok::<_, KafkaFailure>(())
    })?;
    Ok(seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_stops_at_the_cut_and_skips_what_came_after() {
    let (_broker, conn) = broker_with_records(6).await;
    let reader = conn.reader("scan-test").expect("reader");
    let cut = scan::capture_cut(&reader, TOPIC, Duration::from_secs(5)).expect("cut");
    assert_eq!(cut, vec![PartitionCut { partition: 0, low: 0, end: 6 }]);
    let seen = tokio::task::block_in_place(|| read(&conn, PartitionCut { end: 4, ..cut[0] })).expect("read");
    assert_eq!(seen.iter().map(|(o, _)| *o).collect::<Vec<_>>(), vec![0, 1, 2, 3], "records at or past the cut wait");
    let latest =
        tokio::task::block_in_place(|| scan::read_latest(&reader, TOPIC, cut[0], STALL, |_| true)).expect("latest");
    assert_eq!(latest.len(), 3, "one value per key");
    assert_eq!(latest[b"k0".as_slice()], b"v3", "the latest value of a key wins");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partition_end_below_the_cut_does_not_end_the_read() {
    let (broker, conn) = broker_with_records(5).await;
    // The cut says 8 while the partition ends at 5: the records the cut
    // holds arrive a moment later, as from a new leader catching up.
    let reader = tokio::task::spawn_blocking({
        let conn = conn.clone();
        move || read(&conn, PartitionCut { partition: 0, low: 0, end: 8 })
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!reader.is_finished(), "the reader stopped at the partition end, below the cut");
    let producer: FutureProducer = conn.durable_producer(&[], None).create().expect("producer");
    for i in 5..9 {
        let value = format!("v{i}");
        producer
            .send(FutureRecord::to(TOPIC).partition(0).key("late").payload(&value), Duration::from_secs(5))
            .await
            .expect("delivered");
    }
    let seen = reader.await.expect("the reader thread").expect("read");
    assert_eq!(seen.iter().map(|(o, _)| *o).collect::<Vec<_>>(), (0..8).collect::<Vec<_>>(), "up to the cut, no more");
    drop(broker);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_that_never_becomes_reachable_fails_as_a_stall() {
    let (_broker, conn) = broker_with_records(5).await;
    let reader = conn.reader("scan-test").expect("reader");
    let started = Instant::now();
    let cut = PartitionCut { partition: 0, low: 0, end: 8 };
    let result = tokio::task::block_in_place(|| {
        scan::scan_partition(&reader, TOPIC, cut, Duration::from_secs(2), |_: Record<'_>| Ok::<_, KafkaFailure>(()))
    });
    match result {
        Err(KafkaFailure::Stalled { partition: 0, at: 5, end: 8, .. }) => {}
        other => panic!("expected a stall at offset 5 before the cut at 8, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10), "the stall timeout bounds the read");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_topic_is_named() {
    let (_broker, conn) = broker_with_records(0).await;
    let reader = conn.reader("scan-test").expect("reader");
    match scan::capture_cut(&reader, "no-such-topic", Duration::from_secs(5)) {
        Err(KafkaFailure::NoTopic(t)) => assert_eq!(t, "no-such-topic"),
        other => panic!("expected NoTopic, got {other:?}"),
    }
}
