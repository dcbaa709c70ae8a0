//! A profile's snapshots as a chain of verified manifests: which one is
//! `latest`, which one the archiver continues from, which ones retention may
//! count, and where the chain is broken.
//!
//! Key decision: nothing is decided from the listing alone. Anyone who can
//! write or delete objects controls the listing: a directory whose name sorts
//! last, or a deleted newest snapshot, must neither become `latest` nor make
//! retention delete real snapshots. So every manifest is verified under the
//! archiver key first; only those that verify and sit where they say they
//! belong are snapshots, ordered by their signed `sequence`, and each names
//! its predecessor's hash so a gap or a swap shows. What the chain cannot
//! show (the newest snapshots deleted) a reader catches with a pin of the
//! highest sequence it has seen (`crate::pin`).

use crate::manifest::{MANIFEST_NAME, Manifest, envelope_sha256};
use crate::storage::{Archive, StorageError};
use tidemark_seal::ArchiverVerifyingKey;

/// A snapshot whose manifest verified under the archiver key.
#[derive(Clone, Debug)]
pub struct Link {
    /// The snapshot id (its directory name, equal to the manifest's).
    pub id: String,
    /// The verified manifest.
    pub manifest: Manifest,
    /// SHA-256 of its `manifest.dsse.json` as stored, lowercase hex.
    pub manifest_sha256: String,
}

/// A directory with a manifest that does not verify: not a snapshot.
#[derive(Clone, Debug)]
pub struct Unverified {
    /// The directory name, control characters removed.
    pub id: String,
    /// Why it does not verify.
    pub reason: String,
}

/// Where the chain of verified manifests is broken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    /// Sequences between two verified manifests are missing.
    #[error("sequence {from} to {to} missing: snapshots between {before} and {after} were deleted")]
    Missing {
        /// First missing sequence.
        from: u64,
        /// Last missing sequence.
        to: u64,
        /// The snapshot before the gap.
        before: String,
        /// The snapshot after the gap.
        after: String,
    },
    /// A manifest's `previous_manifest_sha256` is not its predecessor's hash.
    #[error("snapshot {snapshot} (sequence {sequence}) does not name {previous} as its predecessor: it was replaced")]
    Mismatch {
        /// The snapshot whose link fails.
        snapshot: String,
        /// Its sequence.
        sequence: u64,
        /// The snapshot found at the sequence before.
        previous: String,
    },
    /// Two verified manifests carry the same sequence.
    #[error("snapshots {first} and {second} both carry sequence {sequence}")]
    Fork {
        /// The sequence.
        sequence: u64,
        /// One snapshot.
        first: String,
        /// The other.
        second: String,
    },
}

/// The profile's snapshots, sorted out.
#[derive(Clone, Debug, Default)]
pub struct Chain {
    /// Verified snapshots, lowest sequence first (then by id: UUIDv7 ids
    /// sort by time).
    pub links: Vec<Link>,
    /// Directories whose manifest does not verify.
    pub unverified: Vec<Unverified>,
    /// Directories without a manifest (interrupted snapshots).
    pub incomplete: Vec<String>,
}

/// A name from the listing, safe to print: anyone who can write to the
/// archive chooses it, so control characters (terminal escapes) are removed
/// and it is cut to a sane length.
pub fn printable(name: &str) -> String {
    name.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// The largest manifest read: about 80 000 parts. Anyone who can write to
/// the archive can put a manifest there; it must not cost a reader more.
pub const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;

/// Reads a snapshot's manifest, at most [`MAX_MANIFEST_BYTES`]: `None` when
/// it is larger.
///
/// # Errors
/// [`StorageError`], including a missing manifest.
pub async fn read_manifest(archive: &Archive, profile: &str, snapshot: &str) -> Result<Option<Vec<u8>>, StorageError> {
    read_manifest_named(archive, profile, snapshot, MANIFEST_NAME).await
}

/// Reads the manifest object `name` (revision 1 or a later revision), at
/// most [`MAX_MANIFEST_BYTES`]: `None` when it is larger.
///
/// # Errors
/// [`StorageError`], including a missing object.
pub async fn read_manifest_named(
    archive: &Archive,
    profile: &str,
    snapshot: &str,
    name: &str,
) -> Result<Option<Vec<u8>>, StorageError> {
    let mut bytes = Vec::new();
    let (_, longer) = archive.copy_to(profile, snapshot, name, MAX_MANIFEST_BYTES, &mut bytes).await?;
    Ok((!longer).then_some(bytes))
}

/// Lists `profile` and verifies every manifest under `key`.
///
/// # Errors
/// [`StorageError`] when listing or reading fails (retry later); a manifest
/// that does not verify is not an error but an [`Unverified`] entry.
pub async fn scan(archive: &Archive, profile: &str, key: &ArchiverVerifyingKey) -> Result<Chain, StorageError> {
    let mut chain = Chain::default();
    for dir in archive.list_snapshots(profile).await? {
        if !dir.has_manifest {
            chain.incomplete.push(dir.id);
            continue;
        }
        let Some(bytes) = read_manifest(archive, profile, &dir.id).await? else {
            let reason = format!("its manifest is larger than {MAX_MANIFEST_BYTES} bytes");
            chain.unverified.push(Unverified { id: printable(&dir.id), reason });
            continue;
        };
        match Manifest::open_first(&bytes, key) {
            Ok(m) if m.profile == profile && m.snapshot_id == dir.id => {
                chain.links.push(Link { id: dir.id, manifest: m, manifest_sha256: envelope_sha256(&bytes) });
            }
            Ok(m) => chain.unverified.push(Unverified {
                id: printable(&dir.id),
                reason: format!(
                    "its manifest belongs to {}/{}: it was moved",
                    printable(&m.profile),
                    printable(&m.snapshot_id)
                ),
            }),
            Err(e) => chain.unverified.push(Unverified { id: printable(&dir.id), reason: printable(&e.to_string()) }),
        }
    }
    chain.links.sort_by(|a, b| (a.manifest.chain_sequence(), &a.id).cmp(&(b.manifest.chain_sequence(), &b.id)));
    Ok(chain)
}

impl Chain {
    /// The newest verified snapshot: the highest sequence.
    pub fn latest(&self) -> Option<&Link> {
        self.links.last()
    }

    /// Where the chain is broken. The lowest manifest's predecessor may be
    /// gone (retention deletes the oldest snapshots); every other link must
    /// be there and match.
    pub fn breaks(&self) -> Vec<ChainBreak> {
        let mut out = Vec::new();
        for pair in self.links.windows(2) {
            let (prev, next) = (&pair[0], &pair[1]);
            let (p, n) = (prev.manifest.chain_sequence(), next.manifest.chain_sequence());
            if p == n {
                out.push(ChainBreak::Fork { sequence: n, first: prev.id.clone(), second: next.id.clone() });
            } else if n > p + 1 {
                let (before, after) = (prev.id.clone(), next.id.clone());
                out.push(ChainBreak::Missing { from: p + 1, to: n - 1, before, after });
            } else if next.manifest.previous_manifest_sha256.as_deref() != Some(prev.manifest_sha256.as_str()) {
                out.push(ChainBreak::Mismatch { snapshot: next.id.clone(), sequence: n, previous: prev.id.clone() });
            }
        }
        out
    }
}

#[cfg(test)]
#[path = "chain_tests.rs"]
pub(crate) mod tests;
