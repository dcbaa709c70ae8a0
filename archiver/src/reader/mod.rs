//! Reading snapshots back: verify (signature, every hash, every page) and
//! decrypt to plain Parquet.
//!
//! Key decision: trust flows from the archiver's public key alone. The
//! manifest must verify under it and name the snapshot and profile it was
//! found under (so a manifest cannot be moved onto another snapshot); each
//! part must have exactly the size and SHA-256 the signed manifest gives
//! before any Parquet code parses it (so a hostile file never reaches the
//! Parquet reader); its plaintext tail must carry the manifest's
//! `aad_file_unique` and key material; and, with a recipient key, every page
//! must decrypt and the schema and row count be the manifest's. Decrypt
//! checks every part's hash before writing anything, writes each part to a
//! hidden temporary file and links it to its final name only once it was
//! read to the end, so nothing from a failing part is ever left in the
//! output directory. Parts are streamed through temporary files, never held
//! in memory: someone who can write to the archive must not be able to run a
//! reader out of memory.

use std::path::{Path, PathBuf};

use arrow_schema::SchemaRef;

use crate::chain::{self, Chain};
use crate::manifest::{Manifest, ManifestError};
use crate::output::{self, OutputError};
use crate::pme::{self, KeyProblem, ReadKeys, TailProblem};
use crate::revision::{self, RevisionError};
use crate::storage::{Archive, StorageError};
use tidemark_seal::{ArchiverVerifyingKey, RecipientSecretKey};

pub mod part;

use part::{Discard, fetch_part, read_part, spool_error, write_plain};

/// Why a snapshot failed verification or could not be decrypted.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Storage failed (including a missing manifest or part).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The profile holds no snapshot whose manifest verifies.
    #[error("no snapshot in profile `{0}` has a manifest that verifies under the archiver key")]
    NoSnapshot(String),
    /// The manifest does not verify.
    #[error("manifest of snapshot {snapshot}: {source}")]
    Manifest {
        /// The snapshot.
        snapshot: String,
        /// The cause.
        #[source]
        source: ManifestError,
    },
    /// A validly signed manifest of another snapshot or profile was put here.
    #[error("manifest found under {profile}/{snapshot} belongs to {found_profile}/{found_snapshot}: it was moved")]
    MisplacedManifest {
        /// Where it was found.
        profile: String,
        /// Where it was found.
        snapshot: String,
        /// What it says.
        found_profile: String,
        /// What it says.
        found_snapshot: String,
    },
    /// A part's bytes are not the ones the manifest signed.
    #[error("part {part}: {problem}")]
    Part {
        /// The part's name.
        part: String,
        /// What is wrong with it.
        problem: PartProblem,
    },
    /// A manifest revision does not verify or does not follow.
    #[error("manifest revisions of snapshot {snapshot}: {source}")]
    Revision {
        /// The snapshot.
        snapshot: String,
        /// The cause (boxed: it may hold a storage error).
        #[source]
        source: Box<RevisionError>,
    },
    /// The recipient key cannot recover the snapshot's keys.
    #[error("snapshot {snapshot}: {source}")]
    Keys {
        /// The snapshot.
        snapshot: String,
        /// The cause.
        #[source]
        source: KeyProblem,
    },
    /// The output directory or a file in it is unsafe to write: nothing was written there.
    #[error(transparent)]
    UnsafeOutput(#[from] OutputError),
    /// Writing the decrypted output failed.
    #[error("writing {path}: {source}")]
    Output {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// What is wrong with one part.
#[derive(Debug, thiserror::Error)]
pub enum PartProblem {
    /// Size or hash differ from the manifest; its tail says what it is.
    #[error("its SHA-256 does not match the signed manifest (it was altered or replaced); {diagnosis}")]
    HashMismatch {
        /// What its plaintext encryption metadata shows.
        diagnosis: String,
    },
    /// The hash matches, yet its tail is not what the manifest says.
    #[error("{0}")]
    Tail(#[source] TailProblem),
    /// A page, the footer or the metadata does not decrypt or decode.
    #[error("it does not decrypt with the snapshot's data key: {0}")]
    Decrypt(String),
    /// Its schema or shape is not the manifest's.
    #[error("{0}")]
    Shape(String),
}

/// The outcome of a successful verification.
#[derive(Clone, Debug)]
pub struct Verified {
    /// The verified manifest.
    pub manifest: Manifest,
    /// Whether every page was also decrypted and authenticated.
    pub pages_checked: bool,
    /// The parts' Arrow schema, when their pages were read (with a key).
    pub schema: Option<SchemaRef>,
    /// The snapshot's keys, when a recipient key was given.
    pub keys: Option<ReadKeys>,
}

/// Resolves `snapshot` in `profile`: `latest` is the verified manifest with
/// the highest sequence (never merely the last directory listed: one that
/// does not verify is skipped, and reported in the returned chain's
/// `unverified`); any other name is returned as given. The chain is returned
/// too, for its breaks and, with `latest`, its newest link.
///
/// # Errors
/// [`ReadError::Storage`] or [`ReadError::NoSnapshot`].
pub async fn resolve(
    archive: &Archive,
    profile: &str,
    snapshot: &str,
    archiver: &ArchiverVerifyingKey,
) -> Result<(String, Chain), ReadError> {
    let chain = chain::scan(archive, profile, archiver).await?;
    if snapshot != "latest" {
        return Ok((snapshot.to_owned(), chain));
    }
    match chain.latest() {
        Some(link) => Ok((link.id.clone(), chain)),
        None => Err(ReadError::NoSnapshot(profile.into())),
    }
}

/// Reads and verifies the manifest of `profile/snapshot`, at its newest
/// revision ([`crate::revision`]).
///
/// # Errors
/// [`ReadError::Manifest`], [`ReadError::MisplacedManifest`],
/// [`ReadError::Revision`], [`ReadError::Storage`].
pub async fn manifest(
    archive: &Archive,
    profile: &str,
    snapshot: &str,
    archiver: &ArchiverVerifyingKey,
) -> Result<Manifest, ReadError> {
    Ok(manifest_revision(archive, profile, snapshot, archiver).await?.0)
}

/// [`manifest`], and the SHA-256 of the newest revision's stored envelope
/// (what the next revision names).
///
/// # Errors
/// As [`manifest`].
pub async fn manifest_revision(
    archive: &Archive,
    profile: &str,
    snapshot: &str,
    archiver: &ArchiverVerifyingKey,
) -> Result<(Manifest, String), ReadError> {
    let too_large = || ReadError::Manifest {
        snapshot: snapshot.to_owned(),
        source: ManifestError::Content(format!("it is larger than {} bytes", chain::MAX_MANIFEST_BYTES)),
    };
    let bytes = chain::read_manifest(archive, profile, snapshot).await?.ok_or_else(too_large)?;
    let m = Manifest::open_first(&bytes, archiver)
        .map_err(|source| ReadError::Manifest { snapshot: snapshot.to_owned(), source })?;
    if m.profile != profile || m.snapshot_id != snapshot {
        return Err(ReadError::MisplacedManifest {
            profile: profile.into(),
            snapshot: snapshot.into(),
            found_profile: m.profile,
            found_snapshot: m.snapshot_id,
        });
    }
    revision::latest(archive, m, crate::manifest::envelope_sha256(&bytes), archiver)
        .await
        .map_err(|source| ReadError::Revision { snapshot: snapshot.to_owned(), source: Box::new(source) })
}

fn keys_for(manifest: &Manifest, key: &RecipientSecretKey) -> Result<ReadKeys, ReadError> {
    pme::read_keys(manifest, key).map_err(|source| ReadError::Keys { snapshot: manifest.snapshot_id.clone(), source })
}

/// Verifies a snapshot: the manifest's signature and placement, every part's
/// size, hash and encryption metadata and, with `key`, every page of every
/// part. Each part is streamed to an unnamed temporary file (in `$TMPDIR`;
/// ciphertext only) and checked from there, one part at a time.
///
/// # Errors
/// The first problem found, as a [`ReadError`].
pub async fn verify(
    archive: &Archive,
    profile: &str,
    snapshot: &str,
    archiver: &ArchiverVerifyingKey,
    key: Option<&RecipientSecretKey>,
) -> Result<Verified, ReadError> {
    let manifest = manifest(archive, profile, snapshot, archiver).await?;
    let keys = key.map(|k| keys_for(&manifest, k)).transpose()?;
    let mut discard = Discard { schema: None };
    for entry in &manifest.parts {
        let spool = tempfile::tempfile().map_err(spool_error)?;
        fetch_part(archive, (profile, snapshot), &manifest, entry, &spool).await?;
        if let Some(keys) = &keys {
            read_part(&manifest, entry, spool, keys, &mut discard)?;
        }
    }
    Ok(Verified { manifest, pages_checked: keys.is_some(), schema: discard.schema, keys })
}

/// Decrypts every part of a verified snapshot into `out` as plain Parquet
/// (`part-*.parquet`, the same names). Returns the files written.
///
/// Every part is downloaded first, into unnamed temporary files inside `out`
/// (so the disk the output needs is the one that holds it, and a crash
/// leaves nothing behind), and every hash is checked before any plaintext is
/// written. Then each part is read page by page into a hidden file created
/// 0600 and linked to its final name once read to the end. `out` is created
/// 0700; see [`crate::output`].
///
/// # Errors
/// Any verification failure (then nothing of the failing part is written, and
/// no part at all when a hash is wrong), an unsafe output directory or an
/// existing output file, or an output error.
pub async fn decrypt(
    archive: &Archive,
    profile: &str,
    snapshot: &str,
    archiver: &ArchiverVerifyingKey,
    key: &RecipientSecretKey,
    out: &Path,
) -> Result<Vec<PathBuf>, ReadError> {
    let manifest = manifest(archive, profile, snapshot, archiver).await?;
    let keys = keys_for(&manifest, key)?;
    output::prepare_dir(out)?;
    let names: Vec<(PathBuf, PathBuf)> =
        manifest.parts.iter().map(|e| (out.join(format!(".{}.partial", e.name)), out.join(&e.name))).collect();
    for (_, done) in &names {
        output::check_free(done)?;
    }
    // Every hash first, so a tampered snapshot writes nothing at all.
    let mut spools = Vec::with_capacity(manifest.parts.len());
    for entry in &manifest.parts {
        let spool = tempfile::tempfile_in(out).map_err(spool_error)?;
        fetch_part(archive, (profile, snapshot), &manifest, entry, &spool).await?;
        spools.push(spool);
    }
    let mut written = Vec::with_capacity(names.len());
    for ((entry, spool), (tmp, done)) in manifest.parts.iter().zip(spools).zip(names) {
        let file = output::create_private(&tmp)?;
        let result = write_plain(&manifest, entry, spool, &keys, file, &tmp);
        // We created `tmp` (create_new), so removing it removes only ours.
        if let Err(e) = result.and_then(|()| output::publish(&tmp, &done).map_err(ReadError::from)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        written.push(done);
    }
    Ok(written)
}

fn output_error(path: &Path) -> impl Fn(std::io::Error) -> ReadError + '_ {
    move |source| ReadError::Output { path: path.display().to_string(), source }
}
