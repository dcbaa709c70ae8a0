//! The archiver's side of a profile's chain: where the next snapshot goes
//! (its sequence and predecessor), what an interrupted run left behind, and
//! which old snapshots retention deletes. Readers' side: [`crate::chain`].

use tidemark_seal::ArchiverVerifyingKey;

use crate::chain;
use crate::storage::{Archive, StorageError};

/// Where a profile's next manifest goes in its chain.
pub(crate) struct ChainHead {
    /// The next manifest's sequence.
    pub(crate) sequence: u64,
    /// SHA-256 of the predecessor's manifest, if there is one.
    pub(crate) previous: Option<String>,
}

/// Before a snapshot: removes the directories without a manifest (what an
/// interrupted run left; only one archiver writes a profile, so none of them
/// is in progress), warns about manifests that do not verify (left alone:
/// they are not snapshots, and deleting what we cannot verify is not ours to
/// do), and finds the predecessor: the highest sequence that verifies under
/// our own key.
pub(crate) async fn prepare(
    archive: &Archive,
    profile: &str,
    key: &ArchiverVerifyingKey,
) -> Result<ChainHead, StorageError> {
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
/// [`StorageError`]; retry later.
/// Only manifests that verify under the archiver's own key count, so
/// directories planted in the archive can never push a real snapshot out.
pub async fn apply_retention(
    archive: &Archive,
    profile: &str,
    retain: usize,
    key: &ArchiverVerifyingKey,
) -> Result<(), StorageError> {
    let chain = chain::scan(archive, profile, key).await?;
    let excess = chain.links.len().saturating_sub(retain);
    for link in &chain.links[..excess] {
        tracing::info!(profile, snapshot = %link.id, "retention: deleting an old snapshot");
        archive.remove_snapshot(profile, &link.id).await?;
    }
    Ok(())
}
