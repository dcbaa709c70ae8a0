//! Restoring a partition's documents from its changelog partition.
//!
//! Every record for a patient is merged into its document, not just the last:
//! until compaction runs, the partition may hold a record written by a worker
//! that lost the partition without knowing it, and the CRDT merge makes the
//! order of such records irrelevant. The read ends at the first record at or
//! past the cut ([`tidemark_kafka::scan`]'s stop rule, which a compacted
//! changelog cannot break and a lagging new leader cannot cut short).

use std::collections::HashMap;

use tidemark_crdt::PatientDoc;
use tidemark_kafka::scan::{self, Record};

use super::config::MergerConfig;
use super::error::WorkerError;

/// The documents of one partition, by patient. foldhash, randomly seeded per
/// map: SipHash and its key compares were a tenth of the fold's time, and
/// the seed keeps patient ids from being chosen to collide.
pub type Docs = HashMap<String, PatientDoc, foldhash::quality::RandomState>;

/// Reads changelog partition `partition` from its start to its end as it is
/// now. Blocking: call it from a blocking context.
///
/// # Errors
/// [`WorkerError::Plumbing`] on broker errors and when no record arrives for
/// `restore_stall_timeout`, and
/// [`WorkerError::CorruptChangelog`] for an undecodable record.
pub fn restore_partition(cfg: &MergerConfig, partition: i32) -> Result<Docs, WorkerError> {
    let topic = &cfg.topics.changelog;
    let reader = cfg.kafka.reader(&format!("{}-restore", cfg.group))?;
    let cut = scan::partition_cut(&reader, topic, partition, cfg.startup_timeout)?;
    let mut docs = Docs::default();
    scan::scan_partition(&reader, topic, cut, cfg.restore_stall_timeout, |r: Record<'_>| {
        let Ok(key) = std::str::from_utf8(r.key) else { return Ok(()) };
        let Some(bytes) = r.value else {
            docs.remove(key);
            return Ok(());
        };
        let corrupt =
            |cause: String| WorkerError::CorruptChangelog { topic: topic.clone(), partition, offset: r.offset, cause };
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
        Ok(())
    })?;
    Ok(docs)
}
