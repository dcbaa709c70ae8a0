//! Restoring a partition's documents from its changelog partition.
//!
//! Every record for a patient is merged into its document, not just the last:
//! until compaction runs, the partition may hold a record written by a worker
//! that lost the partition without knowing it, and the CRDT merge makes the
//! order of such records irrelevant. The read ends at the first record at or
//! past the cut ([`tidemark_kafka::scan`]'s stop rule, which a compacted
//! changelog cannot break and a lagging new leader cannot cut short).
//!
//! Every record must carry the mergers' MAC ([`tidemark_seal::record_mac`]).
//! One that does not is never merged, and it stops the restore, as an
//! undecodable one does, unless a later authentic record of the same
//! patient supersedes it (what compaction will keep, and what an operator
//! produces to recover from a forged record). Skipping the patient's latest
//! record instead would be worse: a record the mergers wrote but cannot
//! check (a state key left out of `--state-key`) would be dropped, the
//! patient's next write would then carry less than it held, and compaction
//! would make the loss permanent. Patients whose latest record is sealed under an
//! older key, or unsealed under `--trust-unsealed-changelog`, are returned
//! for re-sealing (their older records go with compaction).

use std::collections::{BTreeSet, HashMap};

use tidemark_crdt::PatientDoc;
use tidemark_kafka::scan::{self, Record};
use tidemark_seal::{MacFailure, RecordKind, Sealed};

use super::config::MergerConfig;
use super::error::WorkerError;

/// The documents of one partition, by patient. foldhash, randomly seeded per
/// map: SipHash and its key compares were a tenth of the fold's time, and
/// the seed keeps patient ids from being chosen to collide.
pub type Docs = HashMap<String, PatientDoc, foldhash::quality::RandomState>;

/// Whether an unsealed record is trusted: only under
/// `--trust-unsealed-changelog`, only a record with a value (an unsealed
/// tombstone would drop the patient), and only before the first sealed
/// record of the partition. Records written before the upgrade all come
/// before the first record a sealing merger wrote, so an unsealed record
/// after one is not from before the upgrade: it is refused, flag or not.
fn trusts_unsealed(cfg: &MergerConfig, sealed_seen: bool, r: &Record<'_>) -> bool {
    cfg.trust_unsealed_changelog && !sealed_seen && r.value.is_some()
}

/// A restored partition: its documents, and the patients whose records are
/// to be sealed again under the current key.
pub struct Restored {
    /// The documents, by patient.
    pub docs: Docs,
    /// Patients whose latest record is not sealed under the current key.
    pub reseal: BTreeSet<String>,
}

/// Reads changelog partition `partition` from its start to its end as it is
/// now. Blocking: call it from a blocking context.
///
/// # Errors
/// [`WorkerError::Plumbing`] on broker errors and when no record arrives for
/// `restore_stall_timeout`, [`WorkerError::UnauthenticatedChangelog`] for a
/// patient whose latest record's MAC does not check, and [`WorkerError::CorruptChangelog`]
/// for an undecodable record.
pub fn restore_partition(cfg: &MergerConfig, partition: i32) -> Result<Restored, WorkerError> {
    let topic = &cfg.topics.changelog;
    let reader = cfg.kafka.reader(&format!("{}-restore", cfg.group))?;
    let cut = scan::partition_cut(&reader, topic, partition, cfg.startup_timeout)?;
    let mut docs = Docs::default();
    let mut reseal = BTreeSet::new();
    // Records that did not check, by key, until a later authentic record of
    // the same patient supersedes them.
    let mut refused: HashMap<Vec<u8>, (i64, MacFailure)> = HashMap::new();
    // Under --trust-unsealed-changelog: whether a sealed record was seen yet,
    // and how many unsealed ones were trusted.
    let (mut sealed_seen, mut trusted) = (false, 0u64);
    scan::scan_partition(&reader, topic, cut, cfg.restore_stall_timeout, |r: Record<'_>| {
        let sealed = cfg.state_keys.check(RecordKind::Changelog, r.key, r.value, |h| r.header(h));
        let current = match sealed {
            Ok(sealed) => {
                sealed_seen = true;
                sealed == Sealed::Current
            }
            Err(MacFailure::Missing) if trusts_unsealed(cfg, sealed_seen, &r) => {
                trusted += 1;
                false
            }
            Err(failure) => {
                refused.insert(r.key.to_vec(), (r.offset, failure));
                return Ok(());
            }
        };
        if sealed.is_ok() && refused.remove(r.key).is_some() {
            tracing::warn!(
                topic = %topic,
                partition,
                offset = r.offset,
                "a changelog record that is not authentic was superseded by this authentic one; it is passed over"
            );
        }
        let Ok(key) = std::str::from_utf8(r.key) else { return Ok(()) };
        let Some(bytes) = r.value else {
            docs.remove(key);
            reseal.remove(key);
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
        // What compaction keeps is the latest record: it decides.
        if current {
            reseal.remove(key);
        } else {
            reseal.insert(key.to_owned());
        }
        Ok(())
    })?;
    if trusted > 0 {
        tracing::warn!(
            topic = %topic,
            partition,
            records = trusted,
            "changelog records without a MAC were trusted (--trust-unsealed-changelog) and will be sealed again; \
             turn the flag off once every merger has restarted with it"
        );
    }
    if let Some((offset, failure)) = refused.into_values().min_by_key(|(offset, _)| *offset) {
        return Err(WorkerError::UnauthenticatedChangelog { topic: topic.clone(), partition, offset, failure });
    }
    Ok(Restored { docs, reseal })
}
