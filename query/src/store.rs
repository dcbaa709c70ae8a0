//! The query service's store: the latest view of every patient read from the
//! state topic, the offsets read so far, an index of patients with open
//! conflicts, and the change sequence the feed serves, in one redb file.
//!
//! Key decisions:
//! - **Offsets live with the data.** A batch of state records and the
//!   offsets after it commit in one transaction, so a restart resumes
//!   exactly where the store stands: nothing is applied twice or skipped,
//!   whatever moment the process died.
//! - **The store is a cache of the topic.** Losing the file costs a
//!   catch-up, never data: the state topic is the source of truth.
//! - **The feed keeps one entry per patient.** Each applied change takes the
//!   next sequence number and drops the patient's previous entry, so a
//!   reader who resumes from a cursor gets every patient changed since, once,
//!   at its latest version, and the feed's size is bounded by the population.
//! - redb (pure Rust, copy-on-write B-trees, ACID, one file): no C or C++
//!   build for CI to pay, and readers never block the writer.

use std::path::Path;

use redb::{Database, ReadableDatabase as _, ReadableTable as _, TableDefinition};
use sha2::{Digest as _, Sha256};
use tidemark_schemas::{FieldView, PatientView, VersionVector};

const VIEWS: TableDefinition<&str, &[u8]> = TableDefinition::new("views");
const OFFSETS: TableDefinition<i32, i64> = TableDefinition::new("offsets");
const CONFLICTS: TableDefinition<&str, &str> = TableDefinition::new("conflicts");
const CHANGES: TableDefinition<u64, &str> = TableDefinition::new("changes");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const NEXT_SEQ: &str = "next_seq";
/// Bytes before the view's JSON in a `VIEWS` value: through, partition, seq.
const HEADER: usize = 8 + 4 + 8;

/// Why the store failed: the disk or the file; the service stops (a
/// restart rebuilds from the topic if the file is lost).
#[derive(Debug, thiserror::Error)]
#[error("the query store {what}: {cause}")]
pub struct StoreError {
    what: &'static str,
    cause: String,
}

fn fail<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> StoreError {
    move |e| StoreError { what, cause: e.to_string() }
}

/// One state record, checked (MAC and JSON), ready to apply.
#[derive(Clone, Debug)]
pub struct StateRecord {
    /// The state topic partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// The patient (the record key).
    pub patient: String,
    /// The view's JSON as the merger wrote it; `None` for a tombstone.
    pub view: Option<Vec<u8>>,
    /// The edit-topic offset the view folds up to (exclusive), from the
    /// merger's header; 0 when absent.
    pub through: u64,
}

/// A patient's stored view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The view's JSON, as the merger wrote it.
    pub json: Vec<u8>,
    /// The edit-topic offset it folds up to (exclusive; 0: unknown).
    pub through: u64,
    /// The partition of the patient's state (and edits).
    pub partition: i32,
    /// Its place in the change feed.
    pub seq: u64,
}

impl Stored {
    /// The view's ETag: a hash of the view's bytes, quoted.
    pub fn etag(&self) -> String {
        format!("\"{}\"", hex::encode(&Sha256::digest(&self.json)[..16]))
    }
}

/// One entry of the change feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The cursor of this entry.
    pub seq: u64,
    /// The patient.
    pub patient: String,
    /// The patient's version now.
    pub version: VersionVector,
}

/// The store.
pub struct Store {
    db: Database,
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    ///
    /// # Errors
    /// [`StoreError`] when the file cannot be created, opened or repaired.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(fail("directory could not be created"))?;
        let db = Database::create(dir.join("query.redb")).map_err(fail("file could not be opened"))?;
        let txn = db.begin_write().map_err(fail("could not start a transaction"))?;
        // Every table exists from the start, so readers never meet a missing one.
        txn.open_table(VIEWS).map_err(fail("views table"))?;
        txn.open_table(CONFLICTS).map_err(fail("conflicts table"))?;
        txn.open_table(OFFSETS).map_err(fail("offsets table"))?;
        txn.open_table(CHANGES).map_err(fail("changes table"))?;
        txn.open_table(META).map_err(fail("meta table"))?;
        txn.commit().map_err(fail("could not commit"))?;
        Ok(Self { db })
    }

    /// The next offset to read for each partition read so far.
    ///
    /// # Errors
    /// [`StoreError`] on a read failure.
    pub fn offsets(&self) -> Result<Vec<(i32, i64)>, StoreError> {
        let txn = self.db.begin_read().map_err(fail("read"))?;
        let table = txn.open_table(OFFSETS).map_err(fail("offsets table"))?;
        let rows = table.iter().map_err(fail("offsets"))?;
        rows.map(|r| r.map(|(p, o)| (p.value(), o.value())).map_err(fail("offsets"))).collect()
    }

    /// Applies `records` (in topic order) and the offsets after them, and
    /// after the `passed_over` records (partition, offset) that were read
    /// but not applied, in one transaction; returns the feed's last sequence
    /// number after it.
    ///
    /// # Errors
    /// [`StoreError`]; nothing of the batch is applied then.
    pub fn apply(&self, records: &[StateRecord], passed_over: &[(i32, i64)]) -> Result<u64, StoreError> {
        let txn = self.db.begin_write().map_err(fail("write"))?;
        let last = {
            let mut views = txn.open_table(VIEWS).map_err(fail("views table"))?;
            let mut offsets = txn.open_table(OFFSETS).map_err(fail("offsets table"))?;
            let mut conflicts = txn.open_table(CONFLICTS).map_err(fail("conflicts table"))?;
            let mut changes = txn.open_table(CHANGES).map_err(fail("changes table"))?;
            let mut meta = txn.open_table(META).map_err(fail("meta table"))?;
            let mut next = meta.get(NEXT_SEQ).map_err(fail("meta"))?.map_or(1, |v| v.value());
            let read = records.iter().map(|r| (r.partition, r.offset));
            for (partition, offset) in passed_over.iter().copied().chain(read) {
                let read = offsets.get(partition).map_err(fail("offsets"))?.map_or(0, |o| o.value());
                offsets.insert(partition, read.max(offset + 1)).map_err(fail("offsets"))?;
            }
            for r in records {
                let old = views.get(r.patient.as_str()).map_err(fail("views"))?.map(|v| decode(v.value()));
                let Some(json) = &r.view else {
                    if let Some(old) = old {
                        changes.remove(old.seq).map_err(fail("changes"))?;
                    }
                    views.remove(r.patient.as_str()).map_err(fail("views"))?;
                    conflicts.remove(r.patient.as_str()).map_err(fail("conflicts"))?;
                    continue;
                };
                let through = old.as_ref().map_or(r.through, |o| o.through.max(r.through));
                if let Some(old) = &old {
                    if old.json == *json && old.through == through {
                        continue; // the same view again (a merger re-sealing it)
                    }
                    changes.remove(old.seq).map_err(fail("changes"))?;
                }
                let seq = next;
                next += 1;
                views
                    .insert(r.patient.as_str(), encode(json, through, r.partition, seq).as_slice())
                    .map_err(fail("views"))?;
                changes.insert(seq, r.patient.as_str()).map_err(fail("changes"))?;
                match conflict_sources(json) {
                    Some(sources) => conflicts.insert(r.patient.as_str(), sources.as_str()).map(drop),
                    None => conflicts.remove(r.patient.as_str()).map(drop),
                }
                .map_err(fail("conflicts"))?;
            }
            meta.insert(NEXT_SEQ, next).map_err(fail("meta"))?;
            next - 1
        };
        txn.commit().map_err(fail("commit"))?;
        Ok(last)
    }

    /// The patient's stored view.
    ///
    /// # Errors
    /// [`StoreError`] on a read failure.
    pub fn get(&self, patient: &str) -> Result<Option<Stored>, StoreError> {
        let txn = self.db.begin_read().map_err(fail("read"))?;
        let views = txn.open_table(VIEWS).map_err(fail("views table"))?;
        Ok(views.get(patient).map_err(fail("views"))?.map(|v| decode(v.value())))
    }

    /// Patients with open conflicts, in id order, after `after`, whose id
    /// passes `keep` and (when given) whose conflicts involve `source`; at
    /// most `limit`, each with the sources involved.
    ///
    /// # Errors
    /// [`StoreError`] on a read failure.
    pub fn conflicts(
        &self,
        after: Option<&str>,
        source: Option<&str>,
        limit: usize,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<(String, Vec<String>)>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let txn = self.db.begin_read().map_err(fail("read"))?;
        let table = txn.open_table(CONFLICTS).map_err(fail("conflicts table"))?;
        let rows = table.range(after.unwrap_or_default()..).map_err(fail("conflicts"))?;
        let mut out = Vec::new();
        for row in rows {
            let (patient, sources) = row.map_err(fail("conflicts"))?;
            if after == Some(patient.value()) {
                continue; // the cursor names the last patient already returned
            }
            let sources: Vec<String> = sources.value().split('\n').map(str::to_owned).collect();
            if keep(patient.value()) && source.is_none_or(|s| sources.iter().any(|x| x == s)) {
                out.push((patient.value().to_owned(), sources));
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Feed entries after `after`, in sequence order, whose patient passes
    /// `keep`; at most `limit`. Also returns the last sequence number looked
    /// at, so a reader whose scope hides a run of changes still advances.
    ///
    /// # Errors
    /// [`StoreError`] on a read failure.
    pub fn changes(
        &self,
        after: u64,
        limit: usize,
        keep: impl Fn(&str) -> bool,
    ) -> Result<(Vec<Change>, u64), StoreError> {
        if limit == 0 {
            return Ok((Vec::new(), after));
        }
        let txn = self.db.begin_read().map_err(fail("read"))?;
        let table = txn.open_table(CHANGES).map_err(fail("changes table"))?;
        let views = txn.open_table(VIEWS).map_err(fail("views table"))?;
        let mut out = Vec::new();
        let mut seen = after;
        for row in table.range(after.saturating_add(1)..).map_err(fail("changes"))? {
            let (seq, patient) = row.map_err(fail("changes"))?;
            seen = seq.value();
            if !keep(patient.value()) {
                continue;
            }
            let Some(stored) = views.get(patient.value()).map_err(fail("views"))?.map(|v| decode(v.value())) else {
                continue;
            };
            let version = serde_json::from_slice::<PatientView>(&stored.json).map(|v| v.version).unwrap_or_default();
            out.push(Change { seq: seq.value(), patient: patient.value().to_owned(), version });
            if out.len() == limit {
                break;
            }
        }
        Ok((out, seen))
    }

    /// The feed's last sequence number (0 when empty).
    ///
    /// # Errors
    /// [`StoreError`] on a read failure.
    pub fn last_seq(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(fail("read"))?;
        let meta = txn.open_table(META).map_err(fail("meta table"))?;
        Ok(meta.get(NEXT_SEQ).map_err(fail("meta"))?.map_or(0, |v| v.value() - 1))
    }
}

fn encode(json: &[u8], through: u64, partition: i32, seq: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + json.len());
    out.extend_from_slice(&through.to_be_bytes());
    out.extend_from_slice(&partition.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(json);
    out
}

fn decode(bytes: &[u8]) -> Stored {
    let (head, json) = bytes.split_at(HEADER.min(bytes.len()));
    let take = |r: std::ops::Range<usize>| head.get(r).unwrap_or_default();
    Stored {
        through: u64::from_be_bytes(take(0..8).try_into().unwrap_or_default()),
        partition: i32::from_be_bytes(take(8..12).try_into().unwrap_or_default()),
        seq: u64::from_be_bytes(take(12..20).try_into().unwrap_or_default()),
        json: json.to_vec(),
    }
}

/// The sources involved in the view's open conflicts (sorted, one per
/// line), or `None` when it has none.
fn conflict_sources(json: &[u8]) -> Option<String> {
    let view: PatientView = serde_json::from_slice(json).ok()?;
    let mut sources: Vec<&str> = Vec::new();
    for field in view.fields.values() {
        if let FieldView::Register { source, conflicts, .. } = field
            && !conflicts.is_empty()
        {
            sources.push(source);
            sources.extend(conflicts.iter().map(|c| c.source.as_str()));
        }
    }
    sources.sort_unstable();
    sources.dedup();
    (!sources.is_empty()).then(|| sources.join("\n"))
}

#[cfg(test)]
mod tests;
