//! Reading the state topic into the store: every partition, by assignment
//! (no consumer group), from the offsets the store holds, in batches that
//! commit with their offsets.
//!
//! Key decision: every replica reads every partition and can answer for
//! every patient. Views are small (a few KB), so a replica holds the whole
//! population on its disk; in exchange no request is ever routed, any
//! replica behind a plain Service answers, a replica's loss costs nothing
//! but its share of the load, and read-your-writes needs no coordination:
//! each replica waits on its own store. Records whose MAC does not check
//! under the state keys are passed over (counted, never applied), so a
//! forged record can neither show a false view nor hide the real one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Headers as _, Message as _};
use rdkafka::{Offset, TopicPartitionList};
use tidemark_kafka::scan::{partition_cut, partitions};
use tidemark_kafka::{Connection, KafkaFailure};
use tidemark_schemas::EDITS_THROUGH_HEADER;
use tidemark_seal::{MacFailure, RecordKind, StateKeys};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::metrics::QueryMetrics;
use crate::store::{StateRecord, Store, StoreError};

/// Records applied in one transaction at most.
const BATCH: usize = 10_000;
/// How long a batch waits to fill once it has a record.
const LINGER: Duration = Duration::from_millis(20);
/// How long polls may fail without a record between them before catching
/// up stops (and the service with it).
const STALL_LIMIT: Duration = Duration::from_secs(120);
/// How often the store's commits are made durable.
const SYNC_EVERY: Duration = Duration::from_secs(1);
/// How often the topic's partitions are looked up again (partitions added).
const REFRESH: Duration = Duration::from_secs(30);

/// Why catching up stopped: the service stops too.
#[derive(Debug, thiserror::Error)]
pub enum CatchupError {
    /// The broker failed.
    #[error(transparent)]
    Kafka(#[from] KafkaFailure),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A record is sealed under a state key this service was not given: the
    /// mergers rotated keys first. Passing it over would lose a real view.
    #[error(
        "a state record (partition {partition}, offset {offset}) is sealed under state key {key_id}, which this \
         service does not have: give it every --state-key the mergers use"
    )]
    UnknownStateKey {
        /// The partition.
        partition: i32,
        /// The offset.
        offset: i64,
        /// The key id the record names (a key id, never key material).
        key_id: String,
    },
}

/// What the catch-up loop tells the handlers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Batches applied since the service started: a change wakes whoever
    /// waits for the store to move (read-your-writes, the feed).
    pub batches: u64,
    /// Whether the store has reached the end every partition had when
    /// the service started (readiness).
    pub caught_up: bool,
}

/// Reads `topic` into `store` until `stop`, publishing progress on `tx`.
/// Runs on a blocking thread (librdkafka's poll blocks).
///
/// # Errors
/// [`CatchupError`] when the broker or the store fails.
pub fn run(
    conn: &Connection,
    topic: &str,
    store: &Arc<Store>,
    keys: &StateKeys,
    metrics: &QueryMetrics,
    tx: &watch::Sender<Progress>,
    stop: &CancellationToken,
) -> Result<(), CatchupError> {
    let consumer = conn.reader("tidemark-query")?;
    // The state topic may not exist yet (the service started before the
    // mergers, on a new cluster): wait for it, not ready meanwhile.
    let (mut assigned, mut start_ends) = loop {
        let found = assign(&consumer, topic, store, &[]).and_then(|p| Ok((ends(&consumer, topic, &p)?, p)));
        match found {
            Ok((ends, parts)) => break (parts, ends),
            Err(CatchupError::Kafka(e)) => {
                tracing::warn!(error = %e, "The state topic cannot be read yet; trying again shortly.");
                if stop.is_cancelled() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => return Err(e),
        }
    };
    let mut refreshed = Instant::now();
    let mut progress = Progress::default();
    let (mut synced, mut unsynced) = (Instant::now(), false);
    // Since when every poll has failed (`None`: the last one did not).
    let mut failing: Option<Instant> = None;
    while !stop.is_cancelled() {
        if refreshed.elapsed() >= REFRESH {
            refreshed = Instant::now();
            // A broker that does not answer now is asked again at the next
            // refresh: reading goes on with the partitions assigned.
            match assign(&consumer, topic, store, &assigned) {
                Ok(added) if added.len() > assigned.len() => {
                    if let Ok(more) = ends(&consumer, topic, &added[assigned.len()..]) {
                        start_ends.extend(more);
                    }
                    assigned = added;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "Looking up the state topic's partitions failed; retrying later."),
            }
        }
        let batch = poll_batch(&consumer, keys, metrics, &mut failing)?;
        let read = !batch.records.is_empty() || !batch.passed_over.is_empty();
        // On disk within a second of being read; between, commits are
        // visible at once and a crash costs only their reading again. With
        // nothing new, an empty durable commit puts the last ones on disk.
        let durable = synced.elapsed() >= SYNC_EVERY;
        if read || (unsynced && durable) {
            store.apply(&batch.records, &batch.passed_over, durable)?;
            unsynced = !durable;
            if durable {
                synced = Instant::now();
            }
        }
        if read {
            progress.batches += 1;
            metrics.records_applied.inc_by(batch.records.len() as u64);
            metrics.records_read.inc_by((batch.records.len() + batch.passed_over.len()) as u64);
        }
        if !progress.caught_up {
            let offsets = store.offsets()?;
            // A partition with nothing left to read (empty, or emptied by
            // retention) counts as read.
            progress.caught_up = start_ends
                .iter()
                .all(|&(p, low, end)| end <= low || offsets.iter().any(|&(q, next)| q == p && next >= end));
        }
        tx.send_if_modified(|old| std::mem::replace(old, progress) != progress);
    }
    Ok(())
}

/// Assigns every partition of `topic` (`known` plus any new ones) at the
/// store's offsets (the oldest record for partitions never read); returns
/// the partitions assigned, sorted, `known` first.
fn assign(consumer: &BaseConsumer, topic: &str, store: &Store, known: &[i32]) -> Result<Vec<i32>, CatchupError> {
    let all = partitions(consumer, topic, Duration::from_secs(10))?;
    // Partitions are only ever added: metadata that lists fewer, or other
    // ones, is a broker's momentary view and changes nothing.
    if all.len() <= known.len() || !known.iter().all(|p| all.contains(p)) {
        return Ok(known.to_vec());
    }
    let stored = store.offsets()?;
    let mut list = TopicPartitionList::new();
    for &p in &all {
        let offset = stored.iter().find(|(q, _)| *q == p).map_or(Offset::Beginning, |&(_, o)| Offset::Offset(o));
        list.add_partition_offset(topic, p, offset).map_err(KafkaFailure::kafka("listing a partition"))?;
    }
    consumer.assign(&list).map_err(KafkaFailure::kafka(format!("assigning the partitions of {topic}")))?;
    Ok(all)
}

/// Each partition's (id, low, end) offsets now.
fn ends(consumer: &BaseConsumer, topic: &str, parts: &[i32]) -> Result<Vec<(i32, i64, i64)>, CatchupError> {
    parts
        .iter()
        .map(|&p| {
            let cut = partition_cut(consumer, topic, p, Duration::from_secs(10))?;
            Ok((p, cut.low, cut.end))
        })
        .collect()
}

/// Records read in one poll round.
#[derive(Default)]
struct Batch {
    /// Records to apply.
    records: Vec<StateRecord>,
    /// Where records were passed over: their offsets still count as read.
    passed_over: Vec<(i32, i64)>,
}

/// Up to [`BATCH`] records: waits up to 100 ms for the first, and returns
/// once [`LINGER`] has passed since the call began (or the batch is full).
fn poll_batch(
    consumer: &BaseConsumer,
    keys: &StateKeys,
    metrics: &QueryMetrics,
    failing: &mut Option<Instant>,
) -> Result<Batch, CatchupError> {
    let mut batch = Batch::default();
    let mut sealed = Vec::new();
    let first_wait = Duration::from_millis(100);
    let started = Instant::now();
    while sealed.len() + batch.passed_over.len() < BATCH {
        let empty = sealed.is_empty() && batch.passed_over.is_empty();
        let wait = if empty { first_wait } else { LINGER.saturating_sub(started.elapsed()) };
        let Some(polled) = consumer.poll(wait) else {
            if empty || started.elapsed() >= LINGER {
                break;
            }
            continue;
        };
        let msg = match polled {
            Ok(msg) => msg,
            // librdkafka reports a lost connection or a broker restart here
            // and recovers by itself: the next poll goes on from the
            // position. Errors without a record between them for
            // STALL_LIMIT (a deleted topic, a revoked ACL) stop the service,
            // which must not serve views that no longer move.
            Err(e) => {
                let since = *failing.get_or_insert_with(Instant::now);
                if since.elapsed() >= STALL_LIMIT {
                    return Err(KafkaFailure::kafka("reading the state topic")(e).into());
                }
                tracing::warn!(error = %e, "Reading the state topic failed; librdkafka retries.");
                std::thread::sleep(Duration::from_millis(100));
                break;
            }
        };
        *failing = None;
        let key = msg.key().unwrap_or_default();
        let header = |name: &str| msg.headers().and_then(|h| h.iter().find(|x| x.key == name)).and_then(|h| h.value);
        match check(keys, msg.partition(), msg.offset(), key, msg.payload(), header, metrics)? {
            Some(record) => sealed.push(record),
            None => batch.passed_over.push((msg.partition(), msg.offset())),
        }
    }
    newest(sealed, &mut batch, metrics);
    Ok(batch)
}

/// A record whose MAC and key checked, its view not read yet.
struct Sealed {
    partition: i32,
    offset: i64,
    patient: String,
    view: Option<Vec<u8>>,
    through: u64,
}

/// A record that may be applied once its view reads, or `None` (counted)
/// when its MAC or key does not check. A passed-over record still advances
/// the stored offset, so the store does not read it again.
fn check<'h>(
    keys: &StateKeys,
    partition: i32,
    offset: i64,
    key: &[u8],
    value: Option<&[u8]>,
    header: impl Fn(&str) -> Option<&'h [u8]>,
    metrics: &QueryMetrics,
) -> Result<Option<Sealed>, CatchupError> {
    let passed_over = |why: &'static str| passed_over(metrics, partition, offset, why);
    match keys.check(RecordKind::State, key, value, &header) {
        Ok(_) => {}
        Err(MacFailure::UnknownKey(key_id)) => return Err(CatchupError::UnknownStateKey { partition, offset, key_id }),
        Err(_) => {
            passed_over("mac");
            return Ok(None);
        }
    }
    let Ok(patient) = std::str::from_utf8(key) else {
        passed_over("key");
        return Ok(None);
    };
    let through = header(EDITS_THROUGH_HEADER)
        .and_then(|h| std::str::from_utf8(h).ok())
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(0);
    Ok(Some(Sealed { partition, offset, patient: patient.to_owned(), view: value.map(<[u8]>::to_vec), through }))
}

fn passed_over(metrics: &QueryMetrics, partition: i32, offset: i64, why: &'static str) {
    metrics.records_passed_over.get_or_create(&crate::metrics::WhyLabels { why }).inc();
    tracing::warn!(partition, offset, why, "A state record was passed over.");
}

/// The batch's records to apply: for each patient only the last one (a
/// patient's records are in one partition, in order, so the last is its
/// newest view; the edit offset kept is the greatest of them), its view
/// read once. The records it supersedes count as read, not applied:
/// catching up a topic that holds many versions of each patient writes
/// each patient once per batch.
fn newest(sealed: Vec<Sealed>, batch: &mut Batch, metrics: &QueryMetrics) {
    let mut last: std::collections::HashMap<&str, (usize, u64)> = std::collections::HashMap::new();
    for (i, r) in sealed.iter().enumerate() {
        let through = last.get(r.patient.as_str()).map_or(r.through, |&(_, t)| t.max(r.through));
        last.insert(&r.patient, (i, through));
    }
    let keep: std::collections::HashMap<usize, u64> = last.into_values().collect();
    for (i, r) in sealed.into_iter().enumerate() {
        let Some(&through) = keep.get(&i) else {
            batch.passed_over.push((r.partition, r.offset));
            continue;
        };
        match StateRecord::read_view(r.partition, r.offset, &r.patient, r.view, through) {
            Some(record) => batch.records.push(record),
            None => {
                passed_over(metrics, r.partition, r.offset, "view");
                batch.passed_over.push((r.partition, r.offset));
            }
        }
    }
}
