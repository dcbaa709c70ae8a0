//! The broker's own bound: the same records produced and consumed through
//! librdkafka with no processing at all.
//!
//! Key decision: the producer uses ingest's settings (`acks=all`,
//! idempotence, `linger.ms=2`, the `consistent_random` partitioner, no
//! compression) and the same keys and bytes, but never waits for an
//! acknowledgement before sending more: what the broker and client can move,
//! which no service built on them can beat. The consumer reads them back from
//! the beginning of every partition, as a merger restarting from scratch would.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

/// One record: the patient key and the envelope bytes.
pub type Record = (String, Vec<u8>);

/// What one direction moved.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Throughput {
    /// Records moved.
    pub records: u64,
    /// Key and value bytes moved.
    pub bytes: u64,
    /// Seconds from the first send (or poll) to the last acknowledgement (or record).
    pub seconds: f64,
}

impl Throughput {
    /// Records per second.
    pub fn per_s(&self) -> f64 {
        self.records as f64 / self.seconds
    }
}

#[derive(Default)]
struct Deliveries {
    ok: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, (): ()) {
        let counter = if result.is_ok() { &self.ok } else { &self.failed };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Produces `records` to `topic` as fast as the broker acknowledges them.
///
/// # Errors
/// If the producer cannot be made, a record is refused, or any delivery fails.
pub fn produce(brokers: &str, topic: &str, records: &[Record]) -> anyhow::Result<Throughput> {
    let producer: BaseProducer<Deliveries> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("partitioner", "consistent_random")
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("max.in.flight.requests.per.connection", "5")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "120000")
        .create_with_context(Deliveries::default())
        .context("creating the bound producer")?;
    let start = Instant::now();
    for (key, value) in records {
        loop {
            match producer.send(BaseRecord::to(topic).key(key.as_bytes()).payload(value.as_slice())) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    producer.poll(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(e).context("producing a bound record"),
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(300)).context("flushing the bound producer")?;
    let seconds = start.elapsed().as_secs_f64();
    let ctx = producer.context();
    let (ok, failed) = (ctx.ok.load(Ordering::Relaxed), ctx.failed.load(Ordering::Relaxed));
    if failed > 0 || ok != records.len() as u64 {
        anyhow::bail!("the bound producer delivered {ok} of {} records ({failed} failed)", records.len());
    }
    Ok(Throughput { records: ok, bytes: bytes(records), seconds })
}

/// Reads every record of `topic`'s `partitions` from the start to the end
/// they have now, with `fetch.wait.max.ms` at `fetch_wait_ms` (as the mergers
/// in the same run).
///
/// # Errors
/// If the consumer fails, or the records do not all arrive within five minutes.
pub fn consume(brokers: &str, topic: &str, partitions: i32, fetch_wait_ms: u32) -> anyhow::Result<Throughput> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "tidemark-bench-bound")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", fetch_wait_ms.to_string())
        .create()
        .context("creating the bound consumer")?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).context("assigning a partition")?;
    }
    consumer.assign(&tpl).context("assigning the bound topic")?;
    let mut expected = 0;
    for p in 0..partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .with_context(|| format!("reading the end of {topic} partition {p}"))?;
        expected += u64::try_from(high - low).unwrap_or(0);
    }
    let (mut records, mut bytes) = (0u64, 0u64);
    let start = Instant::now();
    while records < expected {
        if start.elapsed() > Duration::from_secs(300) {
            anyhow::bail!("the bound consumer read {records} of {expected} records in five minutes");
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                records += 1;
                bytes += (m.key_len() + m.payload_len()) as u64;
            }
            Some(Err(e)) => return Err(e).context("consuming the bound topic"),
            None => {}
        }
    }
    Ok(Throughput { records, bytes, seconds: start.elapsed().as_secs_f64() })
}

fn bytes(records: &[Record]) -> u64 {
    records.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum()
}
