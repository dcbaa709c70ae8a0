//! The partition reader's stop rule against librdkafka's mock cluster: it
//! stops at the cut, and at the partition's end when the records just before
//! the cut are gone (as compaction leaves a topic), instead of waiting for
//! them until its stall timeout.

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
    let latest = tokio::task::block_in_place(|| scan::read_latest(&reader, TOPIC, cut[0], STALL)).expect("latest");
    assert_eq!(latest.len(), 3, "one value per key");
    assert_eq!(latest[b"k0".as_slice()], b"v3", "the latest value of a key wins");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_whose_last_records_are_gone_stops_at_the_partition_end() {
    let (_broker, conn) = broker_with_records(5).await;
    // The cut says 8, but the partition ends at 5: to the reader this is a
    // compacted tail, offsets 5..8 will never come.
    let started = Instant::now();
    let seen =
        tokio::task::block_in_place(|| read(&conn, PartitionCut { partition: 0, low: 0, end: 8 })).expect("read");
    assert_eq!(seen.len(), 5, "every record that exists is read");
    assert!(started.elapsed() < STALL / 2, "the reader stopped at the partition end, not at its stall timeout");
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
