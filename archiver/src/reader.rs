//! Reading snapshots back: verify (signature, every hash, every chunk) and
//! decrypt to plain Parquet.
//!
//! Key decision: trust flows from the archiver's public key alone. The
//! manifest must verify under it and name the snapshot and profile it was
//! found under (so a manifest cannot be moved onto another snapshot); each
//! part must have exactly the size and SHA-256 the signed manifest gives; and
//! each part must decrypt chunk by chunk. Decrypt checks every part's hash
//! before writing anything, writes each part to a hidden temporary file and
//! renames it only once its last chunk authenticated, so nothing from a
//! failing part is ever left in the output directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::chain::{self, Chain};
use crate::manifest::{MANIFEST_NAME, Manifest, ManifestError, PartEntry};
use crate::storage::{Archive, StorageError};
use tidemark_seal::{ArchiverVerifyingKey, PartError, RecipientSecretKey, open_part, read_header};

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
    /// Size or hash differ from the manifest, and decrypting says why.
    #[error("its SHA-256 does not match the signed manifest (it was altered or replaced); {diagnosis}")]
    HashMismatch {
        /// What decrypting (or parsing the header of) the part found.
        diagnosis: String,
    },
    /// The hash matches but decryption failed (wrong key, for instance).
    #[error("{0}")]
    Decrypt(#[source] PartError),
    /// Decrypted size differs from the manifest's.
    #[error("decrypted to {got} bytes but the manifest says {want}")]
    PlaintextSize {
        /// Decrypted bytes.
        got: u64,
        /// The manifest's figure.
        want: u64,
    },
}

/// The outcome of a successful verification.
#[derive(Clone, Debug)]
pub struct Verified {
    /// The verified manifest.
    pub manifest: Manifest,
    /// Whether every chunk was also decrypted and authenticated.
    pub chunks_checked: bool,
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

/// Reads and verifies the manifest of `profile/snapshot`.
///
/// # Errors
/// [`ReadError::Manifest`], [`ReadError::MisplacedManifest`], [`ReadError::Storage`].
pub async fn manifest(
    archive: &Archive,
    profile: &str,
    snapshot: &str,
    archiver: &ArchiverVerifyingKey,
) -> Result<Manifest, ReadError> {
    let bytes = archive.get(profile, snapshot, MANIFEST_NAME).await?;
    let m = Manifest::open(&bytes, archiver)
        .map_err(|source| ReadError::Manifest { snapshot: snapshot.to_owned(), source })?;
    if m.profile != profile || m.snapshot_id != snapshot {
        return Err(ReadError::MisplacedManifest {
            profile: profile.into(),
            snapshot: snapshot.into(),
            found_profile: m.profile,
            found_snapshot: m.snapshot_id,
        });
    }
    Ok(m)
}

/// Checks one part's bytes against its manifest entry; with a key, also
/// decrypts it into `sink` (every chunk authenticated).
fn check_part(
    entry: &PartEntry,
    bytes: &[u8],
    key: Option<&RecipientSecretKey>,
    sink: impl Write,
) -> Result<(), ReadError> {
    let fail = |problem| ReadError::Part { part: entry.name.clone(), problem };
    let hash_ok = bytes.len() as u64 == entry.ciphertext_bytes && hex::encode(Sha256::digest(bytes)) == entry.sha256;
    if !hash_ok {
        // Say what kind of damage it is: the format's own checks are precise.
        let diagnosis = match key {
            Some(k) => match open_part(bytes, std::io::sink(), k) {
                Err(e) => format!("decrypting it fails: {e}"),
                Ok(_) => "yet it decrypts: it is a valid part of another snapshot, swapped in".into(),
            },
            None => match read_header(bytes) {
                Err(e) => format!("its header fails: {e}"),
                Ok(_) => format!(
                    "{} bytes where the manifest says {} (verify with --key to check every chunk)",
                    bytes.len(),
                    entry.ciphertext_bytes
                ),
            },
        };
        return Err(fail(PartProblem::HashMismatch { diagnosis }));
    }
    if let Some(k) = key {
        let stats = open_part(bytes, sink, k).map_err(|e| fail(PartProblem::Decrypt(e)))?;
        if stats.plaintext_bytes != entry.plaintext_bytes {
            return Err(fail(PartProblem::PlaintextSize { got: stats.plaintext_bytes, want: entry.plaintext_bytes }));
        }
    }
    Ok(())
}

/// Verifies a snapshot: the manifest's signature and placement, every part's
/// size and hash and, with `key`, every chunk of every part.
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
    for entry in &manifest.parts {
        let bytes = archive.get(profile, snapshot, &entry.name).await?;
        check_part(entry, &bytes, key, std::io::sink())?;
    }
    Ok(Verified { manifest, chunks_checked: key.is_some() })
}

fn output_error(path: &Path) -> impl Fn(std::io::Error) -> ReadError + '_ {
    move |source| ReadError::Output { path: path.display().to_string(), source }
}

/// Decrypts every part of a verified snapshot into `out` as plain Parquet
/// (`part-*.parquet`). Returns the files written.
///
/// # Errors
/// Any verification failure (then nothing of the failing part is written, and
/// no part at all when a hash is wrong), or an output error.
pub async fn decrypt(
    archive: &Archive,
    profile: &str,
    snapshot: &str,
    archiver: &ArchiverVerifyingKey,
    key: &RecipientSecretKey,
    out: &Path,
) -> Result<Vec<PathBuf>, ReadError> {
    let manifest = manifest(archive, profile, snapshot, archiver).await?;
    // Every hash first, so a tampered snapshot writes nothing at all.
    let mut parts = Vec::with_capacity(manifest.parts.len());
    for entry in &manifest.parts {
        let bytes = archive.get(profile, snapshot, &entry.name).await?;
        check_part(entry, &bytes, None, std::io::sink())?;
        parts.push((entry, bytes));
    }
    std::fs::create_dir_all(out).map_err(output_error(out))?;
    let mut written = Vec::with_capacity(parts.len());
    for (entry, bytes) in parts {
        let name = entry.name.strip_suffix(".tmenc").unwrap_or(&entry.name);
        let (tmp, done) = (out.join(format!(".{name}.partial")), out.join(name));
        let file = std::fs::File::create(&tmp).map_err(output_error(&tmp))?;
        let mut sink = std::io::BufWriter::new(file);
        let result = check_part(entry, &bytes, Some(key), &mut sink).and_then(|()| {
            let file = sink.into_inner().map_err(|e| output_error(&tmp)(e.into_error()))?;
            file.sync_all().map_err(output_error(&tmp))
        });
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, &done).map_err(output_error(&done))?;
        written.push(done);
    }
    Ok(written)
}
