//! The round trip both smoke tests run: keyed, idempotent produce, then a
//! consumer group reads everything back in per-key order.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// What a round trip sends.
pub struct Plan {
    pub bootstrap: String,
    pub topic: String,
    pub group: String,
    pub partitions: i32,
    pub keys: u32,
    pub per_key: u32,
    /// Bound on produce + consume together.
    pub timeout: Duration,
}

/// Everything the consumer saw, enough to explain a failure.
#[derive(Default)]
struct Seen {
    /// Messages the broker acknowledged.
    delivered: usize,
    received: usize,
    /// key -> sequence numbers in arrival order.
    sequences: BTreeMap<String, Vec<u32>>,
    /// key -> partitions it arrived on.
    partitions: BTreeMap<String, BTreeSet<i32>>,
    /// key -> partitions the producer was told it went to.
    produced_to: BTreeMap<String, BTreeSet<i32>>,
    problems: Vec<String>,
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ran: {} keys x {} messages (idempotent, acks=all) to topic {} \
             ({} partitions) on {}, read back by group {} from the beginning, bound {:?}",
            self.keys, self.per_key, self.topic, self.partitions, self.bootstrap, self.group, self.timeout
        )
    }
}

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "saw: {} messages acknowledged, {} received", self.delivered, self.received)?;
        for (key, seqs) in &self.sequences {
            writeln!(
                f,
                "  {key}: {} received, last seq {:?}, partitions {:?}, produced to {:?}",
                seqs.len(),
                seqs.last(),
                self.partitions.get(key),
                self.produced_to.get(key)
            )?;
        }
        for problem in self.problems.iter().take(20) {
            writeln!(f, "  problem: {problem}")?;
        }
        if self.problems.len() > 20 {
            writeln!(f, "  ... and {} more problems", self.problems.len() - 20)?;
        }
        Ok(())
    }
}

fn key(k: u32) -> String {
    format!("key-{k:03}")
}

/// Produces `keys * per_key` messages, value `"{seq}"` per key, and reads them
/// back; panics with the plan and what was seen unless every message arrives
/// exactly once, in per-key order, each key on a single partition. Returns how
/// long producing (until every acknowledgement) and consuming took.
pub async fn round_trip(plan: &Plan) -> (Duration, Duration) {
    let deadline = tokio::time::Instant::now() + plan.timeout;
    let mut seen = Seen::default();
    let started = Instant::now();
    produce_into(plan, deadline, &mut seen).await;
    let produced = started.elapsed();
    consume_into(plan, deadline, &mut seen).await;
    (produced, started.elapsed() - produced)
}

/// The produce half of [`round_trip`]: returns once every message is acknowledged.
#[allow(dead_code)] // each test binary uses its own subset of this module
pub async fn produce(plan: &Plan) {
    let deadline = tokio::time::Instant::now() + plan.timeout;
    produce_into(plan, deadline, &mut Seen::default()).await;
}

/// The consume half of [`round_trip`], checking what it reads as that does
/// (except the produce-side partitions, which this half did not see).
#[allow(dead_code)] // each test binary uses its own subset of this module
pub async fn consume(plan: &Plan) {
    let deadline = tokio::time::Instant::now() + plan.timeout;
    consume_into(plan, deadline, &mut Seen::default()).await;
}

fn fail(plan: &Plan, seen: &Seen, why: &str) -> ! {
    panic!("{why}\n{plan}\n{seen}");
}

async fn produce_into(plan: &Plan, deadline: tokio::time::Instant, seen: &mut Seen) {
    let total = (plan.keys * plan.per_key) as usize;
    let fail = |seen: &Seen, why: &str| -> ! { fail(plan, seen, why) };

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &plan.bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap_or_else(|e| fail(seen, &format!("building the producer failed: {e}")));
    // Enqueue everything first (the order per key is the enqueue order), then
    // wait for the acknowledgements.
    let mut deliveries = Vec::with_capacity(total);
    for seq in 0..plan.per_key {
        for k in 0..plan.keys {
            let (key, value) = (key(k), seq.to_string());
            let record = FutureRecord::to(&plan.topic).key(&key).payload(&value);
            match producer.send_result(record) {
                Ok(delivery) => deliveries.push((key, delivery)),
                Err((e, _)) => fail(seen, &format!("enqueueing {key}/{seq} failed: {e}")),
            }
        }
    }
    for (key, delivery) in deliveries {
        match tokio::time::timeout_at(deadline, delivery).await {
            Ok(Ok(Ok(delivered))) => {
                seen.delivered += 1;
                seen.produced_to.entry(key).or_default().insert(delivered.partition);
            }
            Ok(Ok(Err((e, _)))) => fail(seen, &format!("delivery of a {key} message failed: {e}")),
            Ok(Err(_)) => fail(seen, "the producer dropped a delivery"),
            Err(_) => fail(seen, "timed out waiting for delivery reports"),
        }
    }
}

async fn consume_into(plan: &Plan, deadline: tokio::time::Instant, seen: &mut Seen) {
    let total = (plan.keys * plan.per_key) as usize;
    let fail = |seen: &Seen, why: &str| -> ! { fail(plan, seen, why) };
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &plan.bootstrap)
        .set("group.id", &plan.group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap_or_else(|e| fail(seen, &format!("building the consumer failed: {e}")));
    consumer.subscribe(&[&plan.topic]).unwrap_or_else(|e| fail(seen, &format!("subscribing failed: {e}")));
    while seen.received < total {
        let message = match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(message)) => message,
            Ok(Err(e)) => fail(seen, &format!("consuming failed: {e}")),
            Err(_) => fail(seen, "timed out before every message arrived"),
        };
        seen.received += 1;
        let key = message.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default();
        let seq: Option<u32> = message.payload().and_then(|p| std::str::from_utf8(p).ok()).and_then(|p| p.parse().ok());
        let Some(seq) = seq else {
            seen.problems.push(format!("{key}: unreadable payload at {}/{}", message.partition(), message.offset()));
            continue;
        };
        let sequences = seen.sequences.entry(key.clone()).or_default();
        if let Some(&last) = sequences.last()
            && seq <= last
        {
            seen.problems.push(format!(
                "{key}: seq {seq} after {last} (partition {}, offset {})",
                message.partition(),
                message.offset()
            ));
        }
        sequences.push(seq);
        seen.partitions.entry(key).or_default().insert(message.partition());
    }

    for k in 0..plan.keys {
        let key = key(k);
        let got = seen.sequences.get(&key).map_or(0, Vec::len);
        if got != plan.per_key as usize {
            seen.problems.push(format!("{key}: {got} messages, expected {}", plan.per_key));
        }
        let partitions = seen.partitions.get(&key).map_or(0, BTreeSet::len);
        let produced_elsewhere = seen.delivered > 0 && seen.partitions.get(&key) != seen.produced_to.get(&key);
        if partitions != 1 || produced_elsewhere {
            seen.problems.push(format!(
                "{key}: consumed from {:?}, produced to {:?}",
                seen.partitions.get(&key),
                seen.produced_to.get(&key)
            ));
        }
    }
    let used: BTreeSet<i32> = seen.partitions.values().flatten().copied().collect();
    if used.len() < 2 {
        seen.problems.push(format!("all keys landed on partitions {used:?}: keys were not spread"));
    }
    if !seen.problems.is_empty() {
        fail(seen, "the round trip broke an invariant");
    }
}
