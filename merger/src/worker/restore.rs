//! Restoring a partition's documents from its changelog partition.
//!
//! Every record for a patient is merged into its document, not just the last:
//! until compaction runs, the partition may hold a record written by a worker
//! that lost the partition without knowing it, and the CRDT merge makes the
//! order of such records irrelevant.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};

use super::config::MergerConfig;
use super::error::WorkerError;
use crate::crdt::PatientDoc;

/// The documents of one partition, by patient. foldhash, randomly seeded per
/// map: SipHash and its key compares were a tenth of the fold's time, and
/// the seed keeps patient ids from being chosen to collide.
pub type Docs = HashMap<String, PatientDoc, foldhash::quality::RandomState>;

/// Reads changelog partition `partition` from its start to its current end.
/// Blocking: call it from a blocking context.
///
/// # Errors
/// [`WorkerError::Kafka`] on broker errors, [`WorkerError::RestoreStalled`]
/// when no record arrives for `restore_stall_timeout`, and
/// [`WorkerError::CorruptChangelog`] for an undecodable record.
pub fn restore_partition(cfg: &MergerConfig, partition: i32) -> Result<Docs, WorkerError> {
    let topic = &cfg.topics.changelog;
    let mut client = cfg.client_config();
    // A plain reader: assigned by hand, never commits, never joins the group.
    client
        .set("group.id", format!("{}-restore", cfg.group))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    let reader: BaseConsumer = client.create().map_err(WorkerError::kafka("creating the changelog reader"))?;
    let (low, high) = reader
        .fetch_watermarks(topic, partition, cfg.startup_timeout)
        .map_err(WorkerError::kafka(format!("reading the end of {topic}/{partition}")))?;
    let mut docs = Docs::default();
    if high <= low {
        return Ok(docs);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning)
        .map_err(WorkerError::kafka("assigning the changelog partition"))?;
    reader.assign(&tpl).map_err(WorkerError::kafka("assigning the changelog partition"))?;
    let mut at = low;
    let mut last_progress = Instant::now();
    while at < high {
        match reader.poll(Duration::from_millis(500)) {
            Some(Ok(msg)) => {
                at = msg.offset() + 1;
                last_progress = Instant::now();
                let Some(key) = msg.key().and_then(|k| std::str::from_utf8(k).ok()) else { continue };
                match msg.payload() {
                    None => {
                        docs.remove(key);
                    }
                    Some(bytes) => {
                        let corrupt = |cause: String| WorkerError::CorruptChangelog {
                            topic: topic.clone(),
                            partition,
                            offset: msg.offset(),
                            cause,
                        };
                        let doc = PatientDoc::decode(bytes).map_err(|e| corrupt(e.to_string()))?;
                        if doc.patient_id() != key {
                            return Err(corrupt("the document's patient is not the record's key".into()));
                        }
                        match docs.get_mut(key) {
                            Some(existing) => existing.merge(&doc).map_err(|e| corrupt(e.to_string()))?,
                            None => {
                                docs.insert(key.to_owned(), doc);
                            }
                        }
                    }
                }
            }
            Some(Err(e)) => tracing::warn!(error = %e, partition, "changelog read error; retrying"),
            None => {}
        }
        if last_progress.elapsed() > cfg.restore_stall_timeout {
            return Err(WorkerError::RestoreStalled { topic: topic.clone(), partition, at, end: high });
        }
    }
    Ok(docs)
}
