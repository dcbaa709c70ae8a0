//! Reading a partition up to a cut: the archiver's snapshot, the merger's
//! restore from its changelog, `tidemark state` and the demo all read this way.
//!
//! Key decision: one stop rule for every reader. A cut is a partition's end
//! offset captured once, before reading; the reader stops at the first record
//! at or past the cut. Compaction cannot make the cut unreachable: a record
//! is only removed once a later record of its key supersedes it, so when the
//! records just before the cut are gone, a record at or past the cut exists
//! and ends the read. A partition-end event below the cut does not end it:
//! after a leader failover the new leader's end offset can briefly lag the
//! one the cut saw, and stopping there would restore or snapshot a state
//! that silently misses records. A read that makes no progress for its stall
//! timeout fails (with the client's last error, if any), and the caller
//! retries later. Transient client errors are logged and ridden out
//! (librdkafka reconnects by itself) until that timeout.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedHeaders, Headers as _, Message as _};
use rdkafka::{Offset, TopicPartitionList};

use crate::KafkaFailure;

/// One partition's offsets when the cut was captured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PartitionCut {
    /// The partition.
    pub partition: i32,
    /// Its first offset still held.
    pub low: i64,
    /// Its end (the next offset to be written): records before it are in the cut.
    pub end: i64,
}

/// One record as a reader sees it.
#[derive(Clone, Copy)]
pub struct Record<'a> {
    /// Its offset.
    pub offset: i64,
    /// Its key (empty when it has none).
    pub key: &'a [u8],
    /// Its value; `None` is a tombstone.
    pub value: Option<&'a [u8]>,
    /// Its headers, if it has any.
    pub headers: Option<&'a BorrowedHeaders>,
}

impl std::fmt::Debug for Record<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Offsets and sizes only: keys are patient ids, values are PHI.
        f.debug_struct("Record")
            .field("offset", &self.offset)
            .field("key_len", &self.key.len())
            .field("value_len", &self.value.map(<[u8]>::len))
            .field("headers", &self.headers.map_or(0, |h| h.count()))
            .finish()
    }
}

impl<'a> Record<'a> {
    /// The value of the first header named `name`; `None` when there is no
    /// such header or it has no value.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers?.iter().find(|h| h.key == name).and_then(|h| h.value)
    }
}

/// Partition ids of `topic`, sorted; [`KafkaFailure::NoTopic`] when the topic
/// is missing or has none.
///
/// # Errors
/// [`KafkaFailure`] if the broker does not answer or the topic is missing.
pub fn partitions(consumer: &BaseConsumer, topic: &str, timeout: Duration) -> Result<Vec<i32>, KafkaFailure> {
    let md = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(KafkaFailure::kafka(format!("reading the metadata of {topic}")))?;
    let mut ids: Vec<i32> = md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    if ids.is_empty() {
        return Err(KafkaFailure::NoTopic(topic.to_owned()));
    }
    ids.sort_unstable();
    Ok(ids)
}

/// One partition's cut: its (low, end) offsets now.
///
/// # Errors
/// [`KafkaFailure::Kafka`] if the broker does not answer.
pub fn partition_cut(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<PartitionCut, KafkaFailure> {
    let (low, end) = consumer
        .fetch_watermarks(topic, partition, timeout)
        .map_err(KafkaFailure::kafka(format!("reading the offsets of {topic}/{partition}")))?;
    Ok(PartitionCut { partition, low, end })
}

/// Captures the cut of every partition of `topic`, in partition order.
///
/// # Errors
/// [`KafkaFailure`] if the topic is missing or the broker does not answer.
pub fn capture_cut(consumer: &BaseConsumer, topic: &str, timeout: Duration) -> Result<Vec<PartitionCut>, KafkaFailure> {
    partitions(consumer, topic, timeout)?.into_iter().map(|p| partition_cut(consumer, topic, p, timeout)).collect()
}

/// Reads `cut.partition` of `topic` from `cut.low` up to `cut.end`
/// (exclusive), calling `visit` with each record in offset order, under the
/// module's stop rule. `consumer` must come from
/// [`Connection::reader`](crate::Connection::reader); it is assigned to
/// this partition for the read and released after.
/// `visit` may stop the read with its own error.
///
/// # Errors
/// [`KafkaFailure::Stalled`] (as `E`) when no record arrives for
/// `stall_timeout`, [`KafkaFailure::Kafka`] when the partition cannot be
/// assigned or released, or `visit`'s error.
pub fn scan_partition<E: From<KafkaFailure>>(
    consumer: &BaseConsumer,
    topic: &str,
    cut: PartitionCut,
    stall_timeout: Duration,
    mut visit: impl FnMut(Record<'_>) -> Result<(), E>,
) -> Result<(), E> {
    let PartitionCut { partition, low, end } = cut;
    if end <= low {
        return Ok(());
    }
    let assigning = || format!("assigning {topic}/{partition}");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(low)).map_err(KafkaFailure::kafka(assigning()))?;
    consumer.assign(&tpl).map_err(KafkaFailure::kafka(assigning()))?;
    let mut next = low;
    let mut progress = Instant::now();
    let mut last_error = None;
    while next < end {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) if m.partition() == partition => {
                progress = Instant::now();
                if m.offset() >= end {
                    break;
                }
                next = m.offset() + 1;
                visit(Record {
                    offset: m.offset(),
                    key: m.key().unwrap_or_default(),
                    value: m.payload(),
                    headers: m.headers(),
                })?;
            }
            // Another partition's record (a reader reused across partitions
            // after an incomplete release) is not this read's.
            Some(Ok(_)) => {}
            // The partition's end as one fetch saw it, below the cut (else
            // the loop would have ended): not the end of what the cut holds.
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => {
                tracing::warn!(error = %e, topic, partition, "A partition read failed; the client retries until the stall timeout.");
                last_error = Some(e.to_string());
            }
            None => {}
        }
        if progress.elapsed() > stall_timeout {
            return Err(KafkaFailure::Stalled { topic: topic.to_owned(), partition, at: next, end, last_error }.into());
        }
    }
    consumer.unassign().map_err(KafkaFailure::kafka(format!("releasing {topic}/{partition}")))?;
    Ok(())
}

/// As [`scan_partition`], keeping the latest value per key (a tombstone
/// removes its key): what a compacted topic holds at the cut. Compaction is
/// lazy, so several records per key are normal. A record for which `keep`
/// returns false is passed over as if it were not there: an unauthenticated
/// record neither replaces nor removes what its key held.
///
/// # Errors
/// As [`scan_partition`].
pub fn read_latest(
    consumer: &BaseConsumer,
    topic: &str,
    cut: PartitionCut,
    stall_timeout: Duration,
    mut keep: impl FnMut(&Record<'_>) -> bool,
) -> Result<std::collections::HashMap<Vec<u8>, Vec<u8>>, KafkaFailure> {
    let mut latest = std::collections::HashMap::new();
    scan_partition(consumer, topic, cut, stall_timeout, |r: Record<'_>| {
        if !keep(&r) {
            return Ok(());
        }
        match r.value {
            Some(v) => latest.insert(r.key.to_vec(), v.to_vec()),
            None => latest.remove(r.key),
        };
        Ok::<_, KafkaFailure>(())
    })?;
    Ok(latest)
}
