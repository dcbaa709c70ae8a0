//! Manifest revisions: who may read a snapshot changes without rewriting any
//! data file (`tidemark snapshot grant`).
//!
//! Key decision: revision 1 (`manifest.dsse.json`) is what the chain links
//! and never changes; a revision `r` > 1 is a whole signed manifest stored
//! beside it as `manifest.rNNNNN.dsse.json`, equal to revision 1 except for
//! its recipients, its number and the hash of the revision before it. So a
//! reader takes the highest revision whose chain of hashes reaches revision
//! 1, and a revision can only ever change who holds the master key, never
//! what the snapshot holds. Removing a recipient is not revocation: one who
//! unwrapped the master key before keeps it; only a new snapshot (new keys)
//! shuts them out. Deleting the newest revision file rolls the recipients
//! back one revision, which is no worse than before that grant.

use tidemark_seal::snapshot_keys::{self, SnapshotKeyError};
use tidemark_seal::{ArchiverSigningKey, ArchiverVerifyingKey, RecipientPublicKey, SnapshotKey};

use crate::chain;
use crate::manifest::{Manifest, RecipientEntry, envelope_sha256, revision_name};
use crate::storage::{Archive, StorageError};

/// Revisions read at most: a bound on what a planted run of files costs.
pub const MAX_REVISIONS: u32 = 1000;

/// Why a revision cannot be read, or made.
#[derive(Debug, thiserror::Error)]
pub enum RevisionError {
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A revision file does not verify, or is not a revision of this manifest.
    #[error("{name}: {why}")]
    Invalid {
        /// The revision's object name.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// A grant that cannot be made: what to change.
    #[error("{0}")]
    Refused(String),
    /// The master key could not be wrapped.
    #[error(transparent)]
    Key(#[from] SnapshotKeyError),
}

/// The manifest with everything a revision may change set to revision 1's
/// values: two manifests are revisions of one snapshot when these are equal.
fn fixed_part(m: &Manifest) -> Manifest {
    Manifest { recipients: Vec::new(), revision: 1, previous_revision_sha256: None, ..m.clone() }
}

/// The newest revision of a snapshot whose revision 1 (`base`, stored with
/// SHA-256 `base_sha256`) verified: the snapshot's revision files must be
/// numbered 2, 3, … without a gap (a deleted middle revision would hide
/// every later one), and each revision `r` must verify under the archiver
/// key, carry number `r`, name the previous revision's hash and differ from
/// revision 1 only in its recipients. Returns it and the SHA-256 of its
/// stored envelope.
///
/// # Errors
/// [`RevisionError::Invalid`] for a revision that fails any of that (someone
/// wrote, edited or deleted it who holds no archiver key); storage errors.
pub async fn latest(
    archive: &Archive,
    base: Manifest,
    base_sha256: String,
    archiver: &ArchiverVerifyingKey,
) -> Result<(Manifest, String), RevisionError> {
    let fixed = fixed_part(&base);
    let mut numbers: Vec<u32> = archive
        .list_names(&fixed.profile, &fixed.snapshot_id)
        .await?
        .iter()
        .filter_map(|n| revision_number(n))
        .collect();
    numbers.sort_unstable();
    if let Some((i, _)) = numbers.iter().enumerate().find(|&(i, &n)| n as usize != i + 2) {
        let missing = revision_name(i as u32 + 2);
        return Err(invalid(&missing, "it is missing while later revisions exist: it was deleted".into()));
    }
    if numbers.len() as u32 >= MAX_REVISIONS {
        return Err(RevisionError::Refused(format!("more than {MAX_REVISIONS} revisions")));
    }
    let (mut current, mut sha) = (base, base_sha256);
    for r in numbers {
        let name = revision_name(r);
        let bytes = match chain::read_manifest_named(archive, &fixed.profile, &fixed.snapshot_id, &name).await? {
            None => return Err(invalid(&name, format!("larger than {} bytes", chain::MAX_MANIFEST_BYTES))),
            Some(bytes) => bytes,
        };
        let next = Manifest::open(&bytes, archiver).map_err(|e| invalid(&name, e.to_string()))?;
        if next.revision != r || next.previous_revision_sha256.as_deref() != Some(sha.as_str()) {
            return Err(invalid(&name, format!("it is not revision {r} following the revision before it")));
        }
        if fixed_part(&next) != fixed {
            return Err(invalid(&name, "it changes more than the recipients of the snapshot".into()));
        }
        (current, sha) = (next, envelope_sha256(&bytes));
    }
    Ok((current, sha))
}

/// The revision number an object name carries: `manifest.rNNNNN.dsse.json`
/// with five digits, 2 or more.
fn revision_number(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("manifest.r")?.strip_suffix(".dsse.json")?;
    let n = digits.parse().ok().filter(|n| *n >= 2)?;
    (digits.len() == 5 && digits.bytes().all(|b| b.is_ascii_digit())).then_some(n)
}

fn invalid(name: &str, why: String) -> RevisionError {
    RevisionError::Invalid { name: name.to_owned(), why }
}

/// The next revision of `current` (stored with SHA-256 `current_sha256`):
/// the recipients in `remove` (key ids) taken out, the master key wrapped
/// for those in `add`. Nothing else changes.
///
/// # Errors
/// [`RevisionError::Refused`] for a recipient added twice, removing one that
/// is not there, or leaving none; [`RevisionError::Key`].
pub fn revise(
    current: &Manifest,
    current_sha256: &str,
    master: &SnapshotKey,
    add: &[RecipientPublicKey],
    remove: &[String],
) -> Result<Manifest, RevisionError> {
    let refused = |why: String| Err(RevisionError::Refused(why));
    if add.is_empty() && remove.is_empty() {
        return refused("nothing to change: give --add or --remove".into());
    }
    for id in remove {
        if !current.recipients.iter().any(|r| &r.key_id == id) {
            return refused(format!("{id} is not a recipient of this snapshot"));
        }
    }
    let mut recipients: Vec<RecipientEntry> =
        current.recipients.iter().filter(|r| !remove.contains(&r.key_id)).cloned().collect();
    for pk in add {
        let id = pk.key_id();
        if recipients.iter().any(|r| r.key_id == id) {
            return refused(format!("{id} is already a recipient"));
        }
        let wrap = snapshot_keys::wrap_master_key(master, &current.encryption.master_key_id, pk)?;
        recipients.push(RecipientEntry::from_wrap(&wrap));
    }
    if recipients.is_empty() {
        return refused("that would leave the snapshot without a recipient".into());
    }
    let revision = current.revision.checked_add(1).filter(|r| *r <= MAX_REVISIONS);
    let Some(revision) = revision else {
        return refused(format!("the snapshot already has {MAX_REVISIONS} revisions"));
    };
    Ok(Manifest { recipients, revision, previous_revision_sha256: Some(current_sha256.to_owned()), ..current.clone() })
}

/// Signs `next` and stores it as its revision's object, refusing to replace
/// one already there (two grants at once: one wins, the other retries).
///
/// # Errors
/// [`RevisionError::Storage`], including an existing revision.
pub async fn store(archive: &Archive, next: &Manifest, signer: &ArchiverSigningKey) -> Result<(), RevisionError> {
    if next.archiver_key_id != signer.key_id() {
        return Err(RevisionError::Refused(format!(
            "the snapshot is signed by {}, not by this archiver key ({})",
            next.archiver_key_id,
            signer.key_id()
        )));
    }
    let bytes = next.sign(signer);
    let name = revision_name(next.revision);
    archive.put_new(&next.profile, &next.snapshot_id, &name, bytes.into()).await?;
    Ok(())
}
