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
use rdkafka::message::{Header, Message as _, OwnedHeaders};
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

/// Ingest's producer settings (`acks=all`, idempotence, `linger.ms=2`, the
/// `consistent_random` partitioner, no compression), for both bounds.
fn producer_config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("partitioner", "consistent_random")
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("max.in.flight.requests.per.connection", "5")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "120000");
    c
}

/// Produces `records` to `topic` as fast as the broker acknowledges them.
///
/// # Errors
/// If the producer cannot be made, a record is refused, or any delivery fails.
pub fn produce(brokers: &str, topic: &str, records: &[Record]) -> anyhow::Result<Throughput> {
    produce_sealed(brokers, topic, records, None)
}

/// As [`produce`]; with `keys`, each record carries the MAC headers a merger
/// writes on a state record (for a state topic the archiver will read).
///
/// # Errors
/// As [`produce`].
pub fn produce_sealed(
    brokers: &str,
    topic: &str,
    records: &[Record],
    keys: Option<&tidemark_seal::StateKeys>,
) -> anyhow::Result<Throughput> {
    let producer: BaseProducer<Deliveries> =
        producer_config(brokers).create_with_context(Deliveries::default()).context("creating the bound producer")?;
    let start = Instant::now();
    for (key, value) in records {
        loop {
            let mut record = BaseRecord::to(topic).key(key.as_bytes()).payload(value.as_slice());
            if let Some(keys) = keys {
                let mac = keys.seal(tidemark_seal::RecordKind::State, key.as_bytes(), Some(value));
                record = record.headers(
                    mac.headers().into_iter().fold(OwnedHeaders::new_with_capacity(2), |h, (key, v)| {
                        h.insert(Header { key, value: Some(v) })
                    }),
                );
            }
            match producer.send(record) {
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

/// Reads every record of `topic`'s `partitions` from the start, with
/// `fetch.wait.max.ms` at `fetch_wait_ms` (as the mergers in the same run):
/// `expected` records when the caller knows how many it produced, else until
/// no record came for [`IDLE_END`].
///
/// Key decision: the end is not taken from the watermarks. Tansu's memory
/// engine reports stale high watermarks that never catch up (measured: 20,000
/// acknowledged records, each of 8 partitions reporting 1,395 two minutes
/// later, all 20,000 readable; docs/benchmarks.md), so a reader that
/// stops at them stops short.
///
/// # Errors
/// If the consumer fails, or the records do not all arrive within five minutes.
pub fn consume(
    brokers: &str,
    topic: &str,
    partitions: i32,
    fetch_wait_ms: u32,
    expected: Option<u64>,
) -> anyhow::Result<Throughput> {
    let (mut records, mut bytes) = (0u64, 0u64);
    let seconds = read_all(brokers, topic, partitions, fetch_wait_ms, expected, |key, value| {
        records += 1;
        bytes += (key.len() + value.len()) as u64;
    })?;
    Ok(Throughput { records, bytes, seconds })
}

/// How long no record must arrive before a read with no known count ends.
pub const IDLE_END: Duration = Duration::from_secs(3);

/// Calls `each(key, value)` for every record read as [`consume`] says;
/// returns the seconds from the first poll to the last record.
fn read_all(
    brokers: &str,
    topic: &str,
    partitions: i32,
    fetch_wait_ms: u32,
    expected: Option<u64>,
    mut each: impl FnMut(&[u8], &[u8]),
) -> anyhow::Result<f64> {
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
    let mut records = 0u64;
    let start = Instant::now();
    let mut last = start;
    loop {
        match expected {
            Some(n) if records >= n => break,
            None if last.elapsed() >= IDLE_END => break,
            _ => {}
        }
        if start.elapsed() > Duration::from_secs(300) {
            anyhow::bail!(
                "the bound consumer read {records} records of {topic} ({expected:?} expected) in five minutes"
            );
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                records += 1;
                last = Instant::now();
                each(m.key().unwrap_or_default(), m.payload().unwrap_or_default());
            }
            Some(Err(e)) => return Err(e).with_context(|| format!("consuming {topic}")),
            None => {}
        }
    }
    Ok((last - start).as_secs_f64())
}

fn bytes(records: &[Record]) -> u64 {
    records.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum()
}

/// Acknowledgement latency of the raw producer at a fixed rate.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Latency {
    /// Records sent.
    pub records: u64,
    /// Target records per second.
    pub rate: f64,
    /// Records sent together (one request's worth).
    pub batch: usize,
    /// Send of a batch to the last acknowledgement of its records, ms.
    pub p50_ms: f64,
    /// p99 of the same.
    pub p99_ms: f64,
    /// Achieved records per second.
    pub achieved_per_s: f64,
}

/// One paced batch on its way.
#[derive(Clone, Copy)]
struct InFlight {
    /// Records not yet acknowledged.
    left: usize,
    /// When it was sent.
    sent: Option<Instant>,
    /// When its last acknowledgement arrived.
    done: Option<Instant>,
    /// Whether any record failed.
    failed: bool,
}

#[derive(Default)]
struct Paced {
    batches: std::sync::Mutex<Vec<InFlight>>,
    /// The first delivery error, for the report.
    error: std::sync::Mutex<Option<String>>,
}

impl ClientContext for Paced {}

impl ProducerContext for Paced {
    type DeliveryOpaque = Box<usize>;

    fn delivery(&self, result: &DeliveryResult<'_>, batch: Box<usize>) {
        let mut batches = self.batches.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = &mut batches[*batch];
        slot.left -= 1;
        if let Err((e, _)) = result {
            slot.failed = true;
            self.error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_or_insert_with(|| e.to_string());
        }
        if slot.left == 0 {
            slot.done = Some(Instant::now());
        }
    }
}

/// Sends `records` to `topic` open loop at `rate` records/s, `batch` at a
/// time (batch k is due at start + k·batch/rate, as loadgen's paced phase
/// sends requests), with ingest's producer settings, and measures each
/// batch from its send to its last acknowledgement: the broker's and
/// client's own latency at that rate, which ingest's acknowledgement cannot
/// beat.
///
/// # Errors
/// If the producer cannot be made, a record is refused, or any delivery fails.
pub fn paced_latency(
    brokers: &str,
    topic: &str,
    records: &[Record],
    rate: f64,
    batch: usize,
) -> anyhow::Result<Latency> {
    anyhow::ensure!(rate > 0.0 && batch > 0, "a paced run needs a positive rate and batch");
    let producer: BaseProducer<Paced> =
        producer_config(brokers).create_with_context(Paced::default()).context("creating the paced bound producer")?;
    // Slots 0..n are the timed batches; slot n is a warm-up record, sent and
    // acknowledged before the clock starts, as ingest's long-lived producer
    // has its metadata, producer id and connection already.
    let chunks: Vec<&[Record]> = records.chunks(batch).collect();
    {
        let mut slots = producer.context().batches.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        slots.extend(chunks.iter().map(|c| InFlight { left: c.len(), sent: None, done: None, failed: false }));
        slots.push(InFlight { left: 1, sent: None, done: None, failed: false });
    }
    producer.client().fetch_metadata(Some(topic), Duration::from_secs(10)).context("warming up: metadata")?;
    if let Some((key, value)) = records.first() {
        let record = BaseRecord::with_opaque_to(topic, Box::new(chunks.len())).key(key.as_bytes());
        producer.send(record.payload(value.as_slice())).map_err(|(e, _)| e).context("warming up: a first record")?;
        producer.flush(Duration::from_secs(30)).context("warming up: its acknowledgement")?;
    }
    let start = Instant::now();
    let interval = Duration::from_secs_f64(batch as f64 / rate);
    for (k, chunk) in chunks.iter().enumerate() {
        let due = start + interval * u32::try_from(k).context("too many batches")?;
        while let Some(wait) = due.checked_duration_since(Instant::now()) {
            producer.poll(wait);
        }
        let sent = Instant::now();
        producer.context().batches.lock().unwrap_or_else(std::sync::PoisonError::into_inner)[k].sent = Some(sent);
        for (key, value) in *chunk {
            let mut opaque = Box::new(k);
            loop {
                let record = BaseRecord::with_opaque_to(topic, opaque).key(key.as_bytes()).payload(value.as_slice());
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        opaque = back.delivery_opaque;
                        producer.poll(Duration::from_millis(1));
                    }
                    Err((e, _)) => return Err(e).context("producing a paced bound record"),
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(300)).context("flushing the paced bound producer")?;
    let seconds = start.elapsed().as_secs_f64();
    let batches =
        std::mem::take(&mut *producer.context().batches.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    // The warm-up record's slot is last; it is not a timed batch.
    let batches = &batches[..batches.len() - 1];
    let mut ms = Vec::with_capacity(batches.len());
    let (mut unacknowledged, mut failed) = (0, 0);
    for b in batches {
        match *b {
            InFlight { left: 0, sent: Some(sent), done: Some(done), failed: false } => {
                ms.push((done - sent).as_secs_f64() * 1e3);
            }
            InFlight { failed: true, .. } => failed += 1,
            _ => unacknowledged += 1,
        }
    }
    if failed + unacknowledged > 0 {
        let error = producer.context().error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        anyhow::bail!(
            "paced bound: {failed} of {} batches had a failed delivery ({}), {unacknowledged} were not acknowledged",
            batches.len(),
            error.unwrap_or_default()
        );
    }
    ms.sort_by(f64::total_cmp);
    // Nearest rank, rank = ceil(q·n): loadgen's definition (src/load/stats.rs),
    // so this p99 and ingest's are the same statistic. `report::percentile`
    // rounds (n-1)·q instead.
    let at = |q: f64| ms[((ms.len() as f64 * q).ceil() as usize).clamp(1, ms.len()) - 1];
    Ok(Latency {
        records: records.len() as u64,
        rate,
        batch,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        achieved_per_s: records.len() as f64 / seconds,
    })
}

/// The last record of each key in `topic` (what compaction would keep), read
/// from the start of every partition until no record came for [`IDLE_END`].
///
/// # Errors
/// As [`consume`].
pub fn latest_per_key(brokers: &str, topic: &str, partitions: i32, fetch_wait_ms: u32) -> anyhow::Result<Vec<Record>> {
    let mut latest: std::collections::HashMap<String, Vec<u8>> = std::collections::HashMap::new();
    read_all(brokers, topic, partitions, fetch_wait_ms, None, |key, value| {
        latest.insert(String::from_utf8_lossy(key).into_owned(), value.to_vec());
    })?;
    let mut records: Vec<Record> = latest.into_iter().collect();
    records.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(records)
}
