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

use crate::chain;
use crate::deid_cut::{self, PartPlan, Spill, SpilledRun};
use crate::manifest::{CutOffset, MANIFEST_FORMAT, MANIFEST_NAME, Manifest, PartEntry};
use crate::scratch::ScratchError;
use crate::storage::{Archive, StorageError};
use crate::table::{PartOptions, PartWriter, Profile, TableError, TableLayout, sort_views};
use crate::views::{self, SetAside};
use tidemark_seal::{
    ArchiverSigningKey, ArchiverVerifyingKey, DatasetKey, PartError, RecipientPublicKey, StateKeys, seal_part,
};

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
    /// Encrypting a part failed.
    #[error("encrypting part {part}: {source}")]
    Encrypt {
        /// The part's object name.
        part: String,
        /// The cause.
        #[source]
        source: PartError,
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
    /// Encryption chunk size.
    pub chunk_size: usize,
    /// Parquet tuning.
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
        heads.push(prepare(archive, p.profile.name(), &verifier).await?);
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
        let (spec, layouts) = (spec.clone(), layouts.clone());
        building.push_back(tokio::task::spawn_blocking(move || build_partition(latest, &spec, &layouts, partition)));
    }
    while let Some(built) = building.pop_front() {
        stored.put(archive, &spec, &ids, joined(built).await??).await?;
    }
    for (i, layout) in layouts.iter().enumerate().filter(|(_, l)| l.is_deidentified()) {
        stored.cut_deidentified(archive, &spec, &ids, i, layout).await?;
    }
    let Stored { mut parts, mut bytes, set_aside, .. } = stored;
    let mut committed = Vec::with_capacity(spec.profiles.len());
    for (i, p) in spec.profiles.iter().enumerate() {
        let manifest = Manifest {
            format: MANIFEST_FORMAT.into(),
            snapshot_id: ids[i].clone(),
            profile: p.profile.name().into(),
            created_at: format_utc_ms(created_ms),
            catalog_version: spec.catalog.version(),
            topic: spec.topic.clone(),
            cut: cut.iter().map(|c| CutOffset { partition: c.partition, end_offset: c.end }).collect(),
            rows: parts[i].iter().map(|e| e.rows).sum(),
            parts: std::mem::take(&mut parts[i]),
            recipients: p.recipients.iter().map(RecipientPublicKey::key_id).collect(),
            archiver_key_id: spec.signer.key_id(),
            sequence: Some(heads[i].sequence),
            previous_manifest_sha256: heads[i].previous.clone(),
            records_set_aside: Some(set_aside[i].total()),
            dataset_key_id: match &p.profile {
                Profile::Identified => None,
                Profile::Deidentified { dataset_key } => Some(DatasetKey::from_bytes(dataset_key).key_id()),
            },
        };
        let signed = manifest.sign(&spec.signer);
        bytes[i] += signed.len() as u64;
        archive.put(p.profile.name(), &ids[i], MANIFEST_NAME, Bytes::from(signed)).await?;
        committed.push(Committed { manifest, bytes: bytes[i], set_aside: set_aside[i] });
        apply_retention(archive, p.profile.name(), spec.retain, &verifier).await?;
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
            self.bytes[part.profile] += part.entry.ciphertext_bytes;
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
            let (spill, spec, layout) = (spill.clone(), spec.clone(), layout.clone());
            building.push_back(tokio::task::spawn_blocking(move || build_deid_part(&spill, &plan, &spec, &layout, i)));
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
            let name = format!("part-{partition:05}-{k:03}.parquet.tmenc");
            let table = |source| SnapshotError::Table { part: name.clone(), source };
            let mut writer = PartWriter::new(layout.clone(), Vec::new(), spec.part_options.clone()).map_err(table)?;
            out.set_aside[i].unfit += views::push_fitting(&mut writer, chunk, |_| partition).map_err(table)?;
            let (plain, summary) = writer.finish().map_err(table)?;
            let (entry, sealed) = seal(&spec.profiles[i], spec, name, &plain, summary.rows)?;
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
    i: usize,
) -> Result<BuiltPartition, SnapshotError> {
    let started = Instant::now();
    let name = plan.name();
    let written = deid_cut::write_part(spill, plan, layout.clone(), &spec.part_options).map_err(|e| match e {
        deid_cut::WriteError::Scratch(e) => SnapshotError::Scratch(e),
        deid_cut::WriteError::Table(source) => SnapshotError::Table { part: name.clone(), source },
    })?;
    let (entry, sealed) = seal(&spec.profiles[i], spec, name, &written.plain, written.rows)?;
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

/// Seals a written Parquet part to the profile's recipients.
fn seal(
    profile: &ProfileSpec,
    spec: &SnapshotSpec,
    name: String,
    plain: &[u8],
    rows: u64,
) -> Result<(PartEntry, Bytes), SnapshotError> {
    let mut sealed = Vec::with_capacity(plain.len() + plain.len() / 1024 + 4096);
    let stats = seal_part(plain, &mut sealed, &profile.recipients, spec.chunk_size)
        .map_err(|source| SnapshotError::Encrypt { part: name.clone(), source })?;
    let entry = PartEntry {
        name,
        rows,
        plaintext_bytes: stats.plaintext_bytes,
        ciphertext_bytes: stats.ciphertext_bytes,
        sha256: hex::encode(stats.ciphertext_sha256),
    };
    Ok((entry, Bytes::from(sealed)))
}

/// Where a profile's next manifest goes in its chain.
struct ChainHead {
    /// The next manifest's sequence.
    sequence: u64,
    /// SHA-256 of the predecessor's manifest, if there is one.
    previous: Option<String>,
}

/// Before a snapshot: removes the directories without a manifest (what an
/// interrupted run left; only one archiver writes a profile, so none of them
/// is in progress), warns about manifests that do not verify (left alone:
/// they are not snapshots, and deleting what we cannot verify is not ours to
/// do), and finds the predecessor: the highest sequence that verifies under
/// our own key.
async fn prepare(archive: &Archive, profile: &str, key: &ArchiverVerifyingKey) -> Result<ChainHead, SnapshotError> {
    let chain = chain::scan(archive, profile, key).await?;
    for dir in &chain.incomplete {
        tracing::info!(profile, snapshot = %chain::printable(dir), "removing an interrupted snapshot");
        archive.remove_snapshot(profile, dir).await?;
    }
    for u in &chain.unverified {
        tracing::warn!(profile, snapshot = %u.id, reason = %u.reason, "ignoring a directory whose manifest does not verify under the archiver key");
    }
    Ok(match chain.latest() {
        None => ChainHead { sequence: 1, previous: None },
        Some(link) => {
            ChainHead { sequence: link.manifest.chain_sequence() + 1, previous: Some(link.manifest_sha256.clone()) }
        }
    })
}

/// Keeps the newest `retain` verified snapshots of `profile`, by sequence.
///
/// # Errors
/// [`SnapshotError::Storage`]; retry later.
/// Only manifests that verify under the archiver's own key count, so
/// directories planted in the archive can never push a real snapshot out.
pub async fn apply_retention(
    archive: &Archive,
    profile: &str,
    retain: usize,
    key: &ArchiverVerifyingKey,
) -> Result<(), SnapshotError> {
    let chain = chain::scan(archive, profile, key).await?;
    let excess = chain.links.len().saturating_sub(retain);
    for link in &chain.links[..excess] {
        tracing::info!(profile, snapshot = %link.id, "retention: deleting an old snapshot");
        archive.remove_snapshot(profile, &link.id).await?;
    }
    Ok(())
}
