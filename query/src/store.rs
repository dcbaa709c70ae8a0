//! The query service's store: the latest view of every patient read from the
//! state topic, the offsets read so far, an index of patients with open
//! conflicts, and the change sequence the feed serves, in one redb file.
//!
//! Key decisions:
//! - **Offsets live with the data.** A batch of state records and the
//!   offsets after it commit in one transaction, so the store is always a
//!   prefix of the topic: nothing is skipped, whatever moment the process
//!   died. Commits reach the disk within a second; a crash loses the last
//!   ones whole, and catching up reads them again (reads may briefly show
//!   the older views meanwhile).
//! - **The store is a cache of the topic.** Losing the file costs a
//!   catch-up, never data: the state topic is the source of truth.
//! - **The feed is keyed by the state topic's positions.** A change is
//!   filed under the (partition, offset) of the record that made it, and
//!   the patient's previous entry is dropped, so a reader who resumes from a
//!   cursor (the last offset delivered per partition) gets every patient
//!   changed since, once, at its latest version; deletions (tombstones) are
//!   changes too. Offsets are the topic's, not this replica's, so a cursor
//!   means the same on every replica and after a rebuild. The feed holds one
//!   entry per patient ever seen (deleted ones included).
//! - redb (pure Rust, copy-on-write B-trees, ACID, one file): no C or C++
//!   build for CI to pay, and readers never block the writer.

use std::path::Path;

use redb::{Database, Durability, ReadableDatabase as _, ReadableTable as _, TableDefinition};
use sha2::{Digest as _, Sha256};
use tidemark_schemas::{FieldView, PatientView, VersionVector};

const VIEWS: TableDefinition<&str, &[u8]> = TableDefinition::new("views");
const OFFSETS: TableDefinition<i32, i64> = TableDefinition::new("offsets");
const CONFLICTS: TableDefinition<&str, &str> = TableDefinition::new("conflicts");
const CHANGES: TableDefinition<(i32, i64), &str> = TableDefinition::new("changes");
/// Where each patient's feed entry is: (partition, offset).
const FILED: TableDefinition<&str, (i32, i64)> = TableDefinition::new("filed");
/// Entries one listing call looks at, at most: a key whose scope hides most
/// patients must not make one request walk the whole store.
pub const SCAN_BUDGET: usize = 10_000;
/// Bytes before the view's JSON in a `VIEWS` value: through, partition, offset.
const HEADER: usize = 8 + 4 + 8;

/// Why the store failed: the disk or the file; the service stops (a
/// restart rebuilds from the topic if the file is lost).
#[derive(Debug, thiserror::Error)]
#[error("the query store {what}: {cause}")]
pub struct StoreError {
    what: &'static str,
    cause: String,
}

impl StoreError {
    /// A read task that did not finish (it panicked).
    pub fn task(join: &dyn std::fmt::Display) -> Self {
        Self { what: "read task stopped", cause: join.to_string() }
    }
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
    /// The sources in the view's open conflicts, one per line, sorted;
    /// `None` when it has none (see [`StateRecord::read_view`]).
    pub conflicts: Option<String>,
}

impl StateRecord {
    /// A record of `patient`'s `view` (JSON; `None`: a tombstone), checked:
    /// `None` when the JSON is not a view of that patient. The view is
    /// parsed once, here, for its open conflicts.
    pub fn read_view(partition: i32, offset: i64, patient: &str, view: Option<Vec<u8>>, through: u64) -> Option<Self> {
        let conflicts = match &view {
            None => None,
            Some(json) => {
                let parsed: PatientView = serde_json::from_slice(json).ok()?;
                if parsed.patient_id != patient {
                    return None;
                }
                conflict_sources(&parsed)
            }
        };
        Some(Self { partition, offset, patient: patient.to_owned(), view, through, conflicts })
    }
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
    /// The state record's offset (its place in the change feed).
    pub offset: i64,
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
    /// The state record's partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// The patient.
    pub patient: String,
    /// The patient's version now; `None` when the patient was deleted.
    pub version: Option<VersionVector>,
}

/// A page of patients with open conflicts (each with the sources involved),
/// and where the next page starts (`None`: nothing left).
pub type ConflictPage = (Vec<(String, Vec<String>)>, Option<String>);

/// A feed position: the last offset delivered for each partition (absent:
/// nothing delivered yet).
pub type Cursor = std::collections::BTreeMap<i32, i64>;

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
        txn.open_table(FILED).map_err(fail("filed table"))?;
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
    /// but not applied, in one transaction.
    ///
    /// With `durable`, the commit is on disk when this returns; without, it
    /// is visible to readers at once and reaches the disk with the next
    /// durable one. A crash in between loses those commits whole, offsets
    /// and views together, so the store stays consistent and catching up
    /// reads them again.
    ///
    /// # Errors
    /// [`StoreError`]; nothing of the batch is applied then.
    pub fn apply(&self, records: &[StateRecord], passed_over: &[(i32, i64)], durable: bool) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(fail("write"))?;
        if !durable {
            txn.set_durability(Durability::None).map_err(fail("durability"))?;
        }
        {
            let mut views = txn.open_table(VIEWS).map_err(fail("views table"))?;
            let mut offsets = txn.open_table(OFFSETS).map_err(fail("offsets table"))?;
            let mut conflicts = txn.open_table(CONFLICTS).map_err(fail("conflicts table"))?;
            let mut changes = txn.open_table(CHANGES).map_err(fail("changes table"))?;
            let mut filed = txn.open_table(FILED).map_err(fail("filed table"))?;
            let read = records.iter().map(|r| (r.partition, r.offset));
            for (partition, offset) in passed_over.iter().copied().chain(read) {
                let read = offsets.get(partition).map_err(fail("offsets"))?.map_or(0, |o| o.value());
                offsets.insert(partition, read.max(offset + 1)).map_err(fail("offsets"))?;
            }
            for r in records {
                let patient = r.patient.as_str();
                let old = views.get(patient).map_err(fail("views"))?.map(|v| decode(v.value()));
                let through = old.as_ref().map_or(r.through, |o| o.through.max(r.through));
                if let (Some(old), Some(json)) = (&old, &r.view)
                    && old.json == *json
                    && old.through == through
                {
                    continue; // the same view again (a merger re-sealing it)
                }
                let was_filed = filed.get(patient).map_err(fail("filed"))?.map(|v| v.value());
                if let Some(at) = was_filed {
                    changes.remove(at).map_err(fail("changes"))?;
                }
                match &r.view {
                    // A deletion is always filed, even of a patient this store
                    // never saw (its view may have been superseded in the same
                    // batch): every replica then lists the same deletions.
                    None => {
                        views.remove(patient).map_err(fail("views"))?;
                    }
                    Some(json) => {
                        let value = encode(json, through, r.partition, r.offset);
                        views.insert(patient, value.as_slice()).map_err(fail("views"))?;
                    }
                }
                changes.insert((r.partition, r.offset), patient).map_err(fail("changes"))?;
                filed.insert(patient, (r.partition, r.offset)).map_err(fail("filed"))?;
                match r.view.as_ref().and(r.conflicts.as_deref()) {
                    Some(sources) => conflicts.insert(patient, sources).map(drop),
                    None => conflicts.remove(patient).map(drop),
                }
                .map_err(fail("conflicts"))?;
            }
        }
        txn.commit().map_err(fail("commit"))
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

    /// Patients with open conflicts whose id starts with one of
    /// `prefixes` (`[""]`: any), in id order, after `after`, whose
    /// conflicts involve `source` when given; at most `limit`, each with the
    /// sources involved. Only entries under the prefixes are looked at, so
    /// with a key's own prefixes every id looked at is one the key may read
    /// (the cursor returned is such an id). Looks at no more than
    /// [`SCAN_BUDGET`] entries, so no call holds the store long; the cursor
    /// (the last id looked at) goes on from there, and is `None` once
    /// nothing is left.
    ///
    /// # Errors
    /// [`StoreError`] on a read failure.
    pub fn conflicts(
        &self,
        after: Option<&str>,
        prefixes: &[String],
        source: Option<&str>,
        limit: usize,
    ) -> Result<ConflictPage, StoreError> {
        if limit == 0 {
            return Ok((Vec::new(), after.map(str::to_owned)));
        }
        let txn = self.db.begin_read().map_err(fail("read"))?;
        let table = txn.open_table(CONFLICTS).map_err(fail("conflicts table"))?;
        let mut prefixes: Vec<&str> = prefixes.iter().map(String::as_str).collect();
        prefixes.sort_unstable();
        // A prefix another one extends adds nothing: its ids are under both.
        prefixes.dedup_by(|longer, shorter| longer.starts_with(*shorter));
        let mut out = Vec::new();
        let mut scanned = 0;
        for prefix in prefixes {
            let start = after.filter(|a| *a > prefix).unwrap_or(prefix);
            for row in table.range(start..).map_err(fail("conflicts"))? {
                let (patient, sources) = row.map_err(fail("conflicts"))?;
                let id = patient.value();
                if !id.starts_with(prefix) {
                    break; // ids are sorted: no later one has this prefix
                }
                if after == Some(id) {
                    continue; // the cursor names the last patient already looked at
                }
                scanned += 1;
                let sources: Vec<String> = sources.value().split('\n').map(str::to_owned).collect();
                if source.is_none_or(|s| sources.iter().any(|x| x == s)) {
                    out.push((id.to_owned(), sources));
                }
                if out.len() == limit || scanned == SCAN_BUDGET {
                    return Ok((out, Some(id.to_owned())));
                }
            }
        }
        Ok((out, None))
    }

    /// Feed entries after `cursor`, partition by partition, whose patient
    /// passes `keep`; at most `limit`, looking at no more than
    /// [`SCAN_BUDGET`] entries. Also returns the cursor after them: it moves
    /// past entries `keep` hid too, so a reader whose scope hides a run of
    /// changes still advances.
    ///
    /// # Errors
    /// [`StoreError`] on a read failure.
    pub fn changes(
        &self,
        cursor: &Cursor,
        limit: usize,
        keep: impl Fn(&str) -> bool,
    ) -> Result<(Vec<Change>, Cursor), StoreError> {
        let mut next = cursor.clone();
        let mut out = Vec::new();
        if limit == 0 {
            return Ok((out, next));
        }
        let txn = self.db.begin_read().map_err(fail("read"))?;
        let table = txn.open_table(CHANGES).map_err(fail("changes table"))?;
        let views = txn.open_table(VIEWS).map_err(fail("views table"))?;
        let partitions: Vec<i32> = self.offsets()?.into_iter().map(|(p, _)| p).collect();
        let mut scanned = 0;
        'partitions: for p in partitions {
            let from = cursor.get(&p).map_or(0, |o| o.saturating_add(1));
            for row in table.range((p, from)..=(p, i64::MAX)).map_err(fail("changes"))? {
                // The budget is checked before the entry moves the cursor, so
                // an entry the cursor passes has always been handled.
                if scanned == SCAN_BUDGET {
                    break 'partitions;
                }
                scanned += 1;
                let (at, patient) = row.map_err(fail("changes"))?;
                let (partition, offset) = at.value();
                next.insert(partition, offset);
                if !keep(patient.value()) {
                    continue;
                }
                let stored = views.get(patient.value()).map_err(fail("views"))?.map(|v| decode(v.value()));
                let version = stored
                    .map(|s| serde_json::from_slice::<PatientView>(&s.json).map(|v| v.version).unwrap_or_default());
                out.push(Change { partition, offset, patient: patient.value().to_owned(), version });
                if out.len() == limit {
                    break 'partitions;
                }
            }
        }
        Ok((out, next))
    }
}

fn encode(json: &[u8], through: u64, partition: i32, offset: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + json.len());
    out.extend_from_slice(&through.to_be_bytes());
    out.extend_from_slice(&partition.to_be_bytes());
    out.extend_from_slice(&offset.to_be_bytes());
    out.extend_from_slice(json);
    out
}

fn decode(bytes: &[u8]) -> Stored {
    let (head, json) = bytes.split_at(HEADER.min(bytes.len()));
    let take = |r: std::ops::Range<usize>| head.get(r).unwrap_or_default();
    Stored {
        through: u64::from_be_bytes(take(0..8).try_into().unwrap_or_default()),
        partition: i32::from_be_bytes(take(8..12).try_into().unwrap_or_default()),
        offset: i64::from_be_bytes(take(12..20).try_into().unwrap_or_default()),
        json: json.to_vec(),
    }
}

/// The sources involved in the view's open conflicts (sorted, one per
/// line), or `None` when it has none.
fn conflict_sources(view: &PatientView) -> Option<String> {
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
