//! Taking one snapshot: cut, read, convert, encrypt, store, commit.
//!
//! Key decision: identified parts follow the state topic's partitions (a
//! patient's views all live in one partition), so each partition is read,
//! sorted and written on its own and memory holds a few partitions' views,
//! never the whole topic. Partitions are read one after the other, and each
//! is built (decoded, sorted, written as Parquet, sealed) on a blocking
//! thread while the next is read, up to `builders()` at once; parts are
//! stored in partition order whatever order the builds finish in.
//! De-identified parts must not follow partitions (a partition is a function
//! of the patient id): each partition's views are spilled to encrypted
//! scratch runs instead, and once the topic is read the parts are cut by
//! pseudonym order and row count, built in parallel the same way
//! ([`crate::deid_cut`]).
//! Every profile is written from the same read, each with its own snapshot id,
//! recipients and manifest. The manifest is put last; a failure anywhere
//! before it leaves parts without a manifest, which are not a snapshot and are
//! removed by the next run.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tidemark_kafka::KafkaFailure;
use tidemark_kafka::rdkafka::consumer::BaseConsumer;
use tidemark_kafka::scan::{self, PartitionCut};
use tidemark_schemas::{Catalog, format_utc_ms};

use crate::deid_cut::{self, PartPlan, Spill, SpilledRun};
use crate::manifest::{CutOffset, MANIFEST_FORMAT, MANIFEST_NAME, Manifest, PartEntry};
use crate::pme::{self, TailProblem, WriteKeys};
use crate::scratch::ScratchError;
use crate::storage::{Archive, StorageError};
use crate::succession;
use crate::table::{PartOptions, PartWriter, Profile, TableError, TableLayout, sort_views};
use crate::views::{self, SetAside};
use tidemark_seal::{ArchiverSigningKey, DatasetKey, RecipientPublicKey, SnapshotKeyError, StateKeys};

/// Why a snapshot failed. Nothing is committed; the next run starts afresh.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Reading the state topic failed: retry later.
    #[error(transparent)]
    Scan(#[from] KafkaFailure),
    /// The archive could not be written: retry later.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Building a part failed (not because of one view: those are set aside).
    #[error("building part {part}: {source}")]
    Table {
        /// The part's object name.
        part: String,
        /// The cause.
        #[source]
        source: TableError,
    },
    /// Drawing or wrapping the snapshot's keys failed.
    #[error("the snapshot's keys: {0}")]
    Keys(#[from] SnapshotKeyError),
    /// A part just written is not what the manifest can vouch for (an
    /// arrow-rs change, never the data).
    #[error("part {part} as written: {source}")]
    Written {
        /// The part's object name.
        part: String,
        /// The cause.
        #[source]
        source: TailProblem,
    },
    /// The local scratch space the de-identified profile spills to failed.
    #[error("de-identified profile: {0}")]
    Scratch(#[from] ScratchError),
    /// Configuration: fix and restart.
    #[error("configuration error: {0}")]
    Config(String),
    /// A worker task panicked or was cancelled.
    #[error("a snapshot task stopped: {0}")]
    Task(String),
}

/// One profile to write: its table rules and who can read it.
pub struct ProfileSpec {
    /// Identified or de-identified (with its dataset key).
    pub profile: Profile,
    /// Recipients every part is encrypted to; at least one.
    pub recipients: Vec<RecipientPublicKey>,
}

/// What a snapshot needs.
pub struct SnapshotSpec {
    /// The state topic (with prefix).
    pub topic: String,
    /// The record catalog the columns derive from.
    pub catalog: Catalog,
    /// The profiles written from one read.
    pub profiles: Vec<ProfileSpec>,
    /// Signs the manifests.
    pub signer: Arc<ArchiverSigningKey>,
    /// The state keys the mergers seal state records with: a record whose
    /// MAC does not check under one of them is set aside.
    pub state_keys: Arc<StateKeys>,
    /// Rows per part, at most (a partition with more is split).
    pub rows_per_part: usize,
    /// Parquet tuning (the snapshot adds its encryption and one page per
    /// column chunk).
    pub part_options: PartOptions,
    /// How long a partition read may make no progress.
    pub stall_timeout: Duration,
    /// Committed snapshots kept per profile (older ones are deleted).
    pub retain: usize,
    /// Fault injection for the crash tests (empty in production builds).
    pub faults: Faults,
}

/// Fault injection for the crash tests. Its hook exists only in builds with
/// the `fault-injection` feature (the test suite's); in any other build this
/// is an empty type and the hook compiles to nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// Abort the process after this many parts were stored, as a crash
    /// mid-snapshot would (before the manifest, so nothing is committed).
    #[cfg(feature = "fault-injection")]
    pub abort_after_parts: Option<usize>,
}

impl Faults {
    /// The hook after each stored part; `stored` counts the parts so far.
    fn after_part_stored(&self, stored: usize) {
        #[cfg(feature = "fault-injection")]
        if self.abort_after_parts.is_some_and(|n| stored >= n) {
            tracing::error!(stored, "fault injection: aborting mid-snapshot, before the manifest");
            std::process::abort();
        }
        #[cfg(not(feature = "fault-injection"))]
        let _ = stored;
    }
}

/// A committed snapshot.
#[derive(Clone, Debug)]
pub struct Committed {
    /// Its manifest.
    pub manifest: Manifest,
    /// Encrypted bytes written (parts and manifest).
    pub bytes: u64,
    /// State records left out of this snapshot, by reason.
    pub set_aside: SetAside,
}

/// One partition built (or one de-identified part): its parts, per profile
/// what was set aside, and the runs spilled for de-identified profiles.
struct BuiltPartition {
    parts: Vec<BuiltPart>,
    set_aside: Vec<SetAside>,
    spilled: Vec<(usize, SpilledRun)>,
}

/// A part ready to store, for one profile.
struct BuiltPart {
    profile: usize,
    entry: PartEntry,
    sealed: Bytes,
}

/// Takes one snapshot of every profile in `spec`.
///
/// # Errors
/// [`SnapshotError`]; nothing is committed for any profile that failed.
#[tracing::instrument(name = "snapshot", skip_all, fields(topic = %spec.topic))]
pub async fn take(
    archive: &Archive,
    consumer: Arc<BaseConsumer>,
    spec: Arc<SnapshotSpec>,
) -> Result<Vec<Committed>, SnapshotError> {
    if spec.profiles.iter().any(|p| p.recipients.is_empty()) || spec.profiles.is_empty() || spec.retain == 0 {
        return Err(SnapshotError::Config("every profile needs a recipient, and retain must be at least 1".into()));
    }
    let verifier = spec.signer.verifying_key();
    let mut heads = Vec::with_capacity(spec.profiles.len());
    for p in &spec.profiles {
        heads.push(succession::prepare(archive, p.profile.name(), &verifier).await?);
    }
    // The snapshot's one clock reading: its manifest's time and the
    // de-identified profile's "now" for the over-89 birth-year floor.
    let created_ms = now_ms();
    let layouts = spec
        .profiles
        .iter()
        .map(|p| TableLayout::new(&spec.catalog, &p.profile, created_ms).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SnapshotError::Config(format!("the catalog cannot be laid out as a snapshot table: {e}")))?;
    let ids: Vec<String> = spec.profiles.iter().map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let writes = Arc::new(
        spec.profiles
            .iter()
            .zip(&ids)
            .zip(&layouts)
            .map(|((p, id), layout)| ProfileWrite::new(p, id, layout, &spec.part_options))
            .collect::<Result<Vec<_>, _>>()?,
    );
    let cut = blocking({
        let (c, t) = (consumer.clone(), spec.topic.clone());
        move || scan::capture_cut(&c, &t, Duration::from_secs(30))
    })
    .await??;
    let n = spec.profiles.len();
    let mut stored = Stored {
        parts: vec![Vec::new(); n],
        bytes: vec![0; n],
        set_aside: vec![SetAside::default(); n],
        spills: (0..n).map(|_| Spill::default()).collect(),
    };
    let (mut building, builders) = (VecDeque::new(), builders());
    for &part in &cut {
        let PartitionCut { partition, .. } = part;
        let started = Instant::now();
        let (latest, unauthenticated) = blocking({
            let (c, topic, stall, keys) = (consumer.clone(), spec.topic.clone(), spec.stall_timeout, spec.clone());
            move || {
                let mut authenticity = views::Authenticity::new(&keys.state_keys, partition);
                let latest = scan::read_latest(&c, &topic, part, stall, |r| authenticity.keep(r))?;
                Ok::<_, KafkaFailure>((latest, authenticity.finish()))
            }
        })
        .await??;
        for total in &mut stored.set_aside {
            total.unauthenticated += unauthenticated;
        }
        tracing::debug!(partition, records = latest.len(), read_ms = started.elapsed().as_millis(), "partition read");
        while building.len() >= builders {
            let built = building.pop_front().expect("not empty");
            stored.put(archive, &spec, &ids, joined(built).await??).await?;
        }
        let (spec, layouts, writes) = (spec.clone(), layouts.clone(), writes.clone());
        building.push_back(tokio::task::spawn_blocking(move || {
            build_partition(latest, &spec, &layouts, &writes, partition)
        }));
    }
    while let Some(built) = building.pop_front() {
        stored.put(archive, &spec, &ids, joined(built).await??).await?;
    }
    for (i, layout) in layouts.iter().enumerate().filter(|(_, l)| l.is_deidentified()) {
        stored.cut_deidentified(archive, &spec, &ids, i, layout, &writes).await?;
    }
    let Stored { mut parts, mut bytes, set_aside, .. } = stored;
    let mut committed = Vec::with_capacity(spec.profiles.len());
    for (i, (p, write)) in spec.profiles.iter().zip(writes.iter()).enumerate() {
        let manifest = Manifest {
            format: MANIFEST_FORMAT.into(),
            snapshot_id: ids[i].clone(),
            profile: p.profile.name().into(),
            created_at: format_utc_ms(created_ms),
            catalog_version: spec.catalog.version(),
            topic: spec.topic.clone(),
            cut: cut.iter().map(|c| CutOffset { partition: c.partition, end_offset: c.end }).collect(),
            rows: parts[i].iter().map(|e| e.rows).sum(),
            schema_sha256: write.schema_sha256.clone(),
            parts: std::mem::take(&mut parts[i]),
            encryption: write.keys.encryption.clone(),
            recipients: write.keys.recipients.clone(),
            archiver_key_id: spec.signer.key_id(),
            sequence: heads[i].sequence,
            previous_manifest_sha256: heads[i].previous.clone(),
            records_set_aside: set_aside[i].total(),
            revision: 1,
            previous_revision_sha256: None,
            dataset_key_id: match &p.profile {
                Profile::Identified => None,
                Profile::Deidentified { dataset_key } => Some(DatasetKey::from_bytes(dataset_key).key_id()),
            },
        };
        let signed = manifest.sign(&spec.signer);
        bytes[i] += signed.len() as u64;
        archive.put(p.profile.name(), &ids[i], MANIFEST_NAME, Bytes::from(signed)).await?;
        committed.push(Committed { manifest, bytes: bytes[i], set_aside: set_aside[i] });
        succession::apply_retention(archive, p.profile.name(), spec.retain, &verifier).await?;
    }
    Ok(committed)
}

/// Partitions built at once. A build (decode, sort, Arrow, Parquet, seal) is
/// CPU work on one core; a partition's read mostly waits for the broker. So
/// one build per core runs while the next partition is read, and memory holds
/// at most this many partitions' records plus the one being read.
fn builders() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4)
}

/// The parts stored so far, per profile, their bytes, the records set aside
/// and the de-identified profiles' spilled runs.
struct Stored {
    parts: Vec<Vec<PartEntry>>,
    bytes: Vec<u64>,
    set_aside: Vec<SetAside>,
    spills: Vec<Spill>,
}

impl Stored {
    /// Stores one partition's built parts, in order.
    async fn put(
        &mut self,
        archive: &Archive,
        spec: &SnapshotSpec,
        ids: &[String],
        built: BuiltPartition,
    ) -> Result<(), SnapshotError> {
        for (total, more) in self.set_aside.iter_mut().zip(&built.set_aside) {
            total.add(more);
        }
        for (profile, run) in built.spilled {
            self.spills[profile].add(run);
        }
        for part in built.parts {
            let (profile, name) = (spec.profiles[part.profile].profile.name(), part.entry.name.clone());
            archive.put(profile, &ids[part.profile], &name, part.sealed).await?;
            self.bytes[part.profile] += part.entry.bytes;
            self.parts[part.profile].push(part.entry);
            spec.faults.after_part_stored(self.parts.iter().map(Vec::len).sum());
        }
        Ok(())
    }

    /// Cuts de-identified profile `i`'s spilled runs into parts by pseudonym
    /// order and row count, building up to `builders()` parts at once and
    /// storing them in index order.
    async fn cut_deidentified(
        &mut self,
        archive: &Archive,
        spec: &Arc<SnapshotSpec>,
        ids: &[String],
        i: usize,
        layout: &Arc<TableLayout>,
        writes: &Arc<Vec<ProfileWrite>>,
    ) -> Result<(), SnapshotError> {
        let spill = Arc::new(std::mem::take(&mut self.spills[i]));
        let plans = spill.plan(spec.rows_per_part);
        tracing::debug!(
            rows = spill.rows(),
            scratch_bytes = spill.disk_bytes(),
            parts = plans.len(),
            "de-identified cut"
        );
        let (mut building, builders) = (VecDeque::new(), builders());
        for plan in plans {
            while building.len() >= builders {
                let built = building.pop_front().expect("not empty");
                self.put(archive, spec, ids, joined(built).await??).await?;
            }
            let (spill, spec, layout, writes) = (spill.clone(), spec.clone(), layout.clone(), writes.clone());
            building.push_back(tokio::task::spawn_blocking(move || {
                build_deid_part(&spill, &plan, &spec, &layout, &writes[i], i)
            }));
        }
        while let Some(built) = building.pop_front() {
            self.put(archive, spec, ids, joined(built).await??).await?;
        }
        Ok(())
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, SnapshotError> {
    joined(tokio::task::spawn_blocking(f)).await
}

async fn joined<T>(task: tokio::task::JoinHandle<T>) -> Result<T, SnapshotError> {
    task.await.map_err(|e| SnapshotError::Task(e.to_string()))
}

fn now_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(u64::MAX)
}

/// Builds every profile's parts of one partition from its latest records,
/// setting aside records that are not valid views of their key's patient
/// (every profile) and views that do not fit the catalog (per profile).
fn build_partition(
    latest: HashMap<Vec<u8>, Vec<u8>>,
    spec: &SnapshotSpec,
    layouts: &[Arc<TableLayout>],
    writes: &[ProfileWrite],
    partition: i32,
) -> Result<BuiltPartition, SnapshotError> {
    let started = Instant::now();
    let (mut views, undecoded) = views::decode(latest, partition);
    let decoded = started.elapsed();
    let mut out = BuiltPartition { parts: Vec::new(), set_aside: vec![undecoded; layouts.len()], spilled: Vec::new() };
    for (i, layout) in layouts.iter().enumerate() {
        if layout.is_deidentified() {
            out.spilled.push((i, deid_cut::spill(layout, &views, partition)?));
            continue;
        }
        sort_views(layout, &mut views);
        for (k, chunk) in views.chunks(spec.rows_per_part.max(1)).enumerate() {
            let name = format!("part-{partition:05}-{k:03}.parquet");
            let table = |source| SnapshotError::Table { part: name.clone(), source };
            let mut writer = PartWriter::new(layout.clone(), Vec::new(), writes[i].options.clone()).map_err(table)?;
            out.set_aside[i].unfit += views::push_fitting(&mut writer, chunk, |_| partition).map_err(table)?;
            let (file, summary) = writer.finish().map_err(table)?;
            let (entry, sealed) = part_entry(name, file, summary.rows, summary.row_groups)?;
            out.parts.push(BuiltPart { profile: i, entry, sealed });
        }
    }
    tracing::debug!(
        partition,
        rows = views.len(),
        decode_ms = decoded.as_millis(),
        build_ms = started.elapsed().as_millis(),
        "partition built"
    );
    Ok(out)
}

/// Builds de-identified part `plan` of profile `i` from the spilled runs.
fn build_deid_part(
    spill: &Spill,
    plan: &PartPlan,
    spec: &SnapshotSpec,
    layout: &Arc<TableLayout>,
    write: &ProfileWrite,
    i: usize,
) -> Result<BuiltPartition, SnapshotError> {
    let started = Instant::now();
    let name = plan.name();
    let written = deid_cut::write_part(spill, plan, layout.clone(), &write.options).map_err(|e| match e {
        deid_cut::WriteError::Scratch(e) => SnapshotError::Scratch(e),
        deid_cut::WriteError::Table(source) => SnapshotError::Table { part: name.clone(), source },
    })?;
    let (entry, sealed) = part_entry(name, written.file, written.rows, written.row_groups)?;
    let mut set_aside = vec![SetAside::default(); spec.profiles.len()];
    set_aside[i] = SetAside { key_mismatch: written.duplicates, unfit: written.unfit, ..SetAside::default() };
    tracing::debug!(
        part = plan.index,
        rows = entry.rows,
        build_ms = started.elapsed().as_millis(),
        "de-identified part built"
    );
    Ok(BuiltPartition { parts: vec![BuiltPart { profile: i, entry, sealed }], set_aside, spilled: Vec::new() })
}

/// How one profile's parts are written in this snapshot: its keys, the
/// Parquet options with its encryption, and its schema's fingerprint.
struct ProfileWrite {
    keys: WriteKeys,
    options: PartOptions,
    schema_sha256: String,
}

impl ProfileWrite {
    fn new(
        profile: &ProfileSpec,
        snapshot_id: &str,
        layout: &TableLayout,
        options: &PartOptions,
    ) -> Result<Self, SnapshotError> {
        let keys = WriteKeys::new(snapshot_id, &profile.recipients)?;
        let options = pme::part_options(options, &keys);
        let schema_sha256 = pme::arrow_schema_fingerprint(&layout.schema())
            .map_err(|e| SnapshotError::Config(format!("the table's schema has no Parquet form: {e}")))?;
        Ok(Self { keys, options, schema_sha256 })
    }
}

/// The manifest entry of an encrypted part just written.
fn part_entry(name: String, file: Vec<u8>, rows: u64, row_groups: usize) -> Result<(PartEntry, Bytes), SnapshotError> {
    let entry = pme::part_entry(name.clone(), &file, rows, row_groups)
        .map_err(|source| SnapshotError::Written { part: name, source })?;
    Ok((entry, Bytes::from(file)))
}
