//! Reading the state topic up to a consistent cut.
//!
//! Key decision: the cut is the end offset of every partition captured once,
//! before anything is read; each partition is then read from its start up to
//! that offset, keeping the latest record per patient (compaction is lazy, so
//! duplicates per key are normal). Views written after the cut wait for the
//! next snapshot, so every snapshot is the state of one moment per partition.
//! Partitions are read one at a time, so memory is bounded by the largest
//! partition's latest views, not by the whole topic.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::manifest::CutOffset;

/// Why reading the state topic failed.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The broker could not be reached or refused: retry later.
    #[error("kafka error while {what}: {source}")]
    Kafka {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: KafkaError,
    },
    /// The topic does not exist: the merger creates it; check `--topic-prefix`.
    #[error("topic {0} does not exist (the merger creates it; check --topic-prefix)")]
    NoTopic(String),
    /// Reading a partition up to the cut took too long: retry later.
    #[error("reading partition {partition} of {topic} stalled at offset {at} before the cut {end}")]
    Stalled {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The next offset expected.
        at: i64,
        /// The cut.
        end: i64,
    },
}

/// Opens a consumer that reads by assignment only: it never joins a group
/// and never commits, so snapshots leave no trace on the cluster.
///
/// # Errors
/// [`ScanError::Kafka`] if the client cannot be created.
pub fn consumer(brokers: &str, options: &[(String, String)]) -> Result<BaseConsumer, ScanError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("group.id", "tidemark-archiver")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        // A snapshot reads what is already there: a fetch that waits for more
        // data only delays the end of each partition.
        .set("fetch.wait.max.ms", "20")
        .set("fetch.max.bytes", "67108864")
        .set("max.partition.fetch.bytes", "16777216");
    for (k, v) in options {
        c.set(k, v);
    }
    c.create().map_err(|source| ScanError::Kafka { what: "creating the consumer".into(), source })
}

/// Captures the cut: for every partition of `topic`, its (low, end) offsets now.
///
/// # Errors
/// [`ScanError`] if the topic is missing or the broker does not answer.
pub fn capture_cut(consumer: &BaseConsumer, topic: &str, timeout: Duration) -> Result<Vec<(i32, i64, i64)>, ScanError> {
    let kafka = |what: String| move |source| ScanError::Kafka { what, source };
    let md =
        consumer.fetch_metadata(Some(topic), timeout).map_err(kafka(format!("reading the metadata of {topic}")))?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    if partitions.is_empty() {
        return Err(ScanError::NoTopic(topic.to_owned()));
    }
    let mut cut = Vec::with_capacity(partitions.len());
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, timeout)
            .map_err(kafka(format!("reading the offsets of {topic}/{p}")))?;
        cut.push((p, low, high));
    }
    cut.sort_unstable();
    Ok(cut)
}

/// The cut as the manifest records it.
pub fn cut_offsets(cut: &[(i32, i64, i64)]) -> Vec<CutOffset> {
    cut.iter().map(|&(partition, _, end_offset)| CutOffset { partition, end_offset }).collect()
}

/// Reads `partition` from `low` up to `end` (exclusive) and returns the latest
/// value per key; a tombstone (null value) removes its key. Gives up with
/// [`ScanError::Stalled`] when no progress is made for `stall_timeout`.
///
/// # Errors
/// [`ScanError`]; the caller retries the snapshot later.
pub fn read_partition(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    low: i64,
    end: i64,
    stall_timeout: Duration,
) -> Result<HashMap<Vec<u8>, Vec<u8>>, ScanError> {
    let mut latest = HashMap::new();
    scan_partition(consumer, topic, partition, low, end, stall_timeout, |key, value| {
        match value {
            Some(v) => latest.insert(key.to_vec(), v.to_vec()),
            None => latest.remove(key),
        };
    })?;
    Ok(latest)
}

/// Reads `partition` from `low` up to `end` (exclusive), calling `visit` with
/// each record's key and value (`None`: a tombstone) in offset order; stalls
/// as [`read_partition`]. For readers that keep less than every key (one
/// patient's view, a count).
///
/// # Errors
/// As [`read_partition`].
pub fn scan_partition(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    low: i64,
    end: i64,
    stall_timeout: Duration,
    mut visit: impl FnMut(&[u8], Option<&[u8]>),
) -> Result<(), ScanError> {
    if end <= low {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(low))
        .map_err(|source| ScanError::Kafka { what: format!("assigning {topic}/{partition}"), source })?;
    consumer
        .assign(&tpl)
        .map_err(|source| ScanError::Kafka { what: format!("assigning {topic}/{partition}"), source })?;
    let mut next = low;
    let mut progress = Instant::now();
    while next < end {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                progress = Instant::now();
                if m.offset() >= end {
                    break;
                }
                next = m.offset() + 1;
                visit(m.key().unwrap_or_default(), m.payload());
            }
            // Caught up with the partition's end as it was when asked; with
            // compaction the last offsets before the cut may be gone.
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(source)) => {
                return Err(ScanError::Kafka { what: format!("reading {topic}/{partition}"), source });
            }
            None if progress.elapsed() > stall_timeout => {
                return Err(ScanError::Stalled { topic: topic.to_owned(), partition, at: next, end });
            }
            None => {}
        }
    }
    consumer
        .unassign()
        .map_err(|source| ScanError::Kafka { what: format!("releasing {topic}/{partition}"), source })?;
    Ok(())
}
