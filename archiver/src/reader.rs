//! Reading snapshots back: verify (signature, every hash, every chunk) and
//! decrypt to plain Parquet.
//!
//! Key decision: trust flows from the archiver's public key alone. The
//! manifest must verify under it and name the snapshot and profile it was
//! found under (so a manifest cannot be moved onto another snapshot); each
//! part must have exactly the size and SHA-256 the signed manifest gives; and
//! each part must decrypt chunk by chunk. Decrypt checks every part's hash
//! before writing anything, writes each part to a hidden temporary file and
//! links it to its final name only once its last chunk authenticated, so
//! nothing from a failing part is ever left in the output directory. Parts
//! are streamed through temporary files, never held in memory: someone who
//! can write to the archive must not be able to run a reader out of memory.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek as _, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::chain::{self, Chain};
use crate::manifest::{Manifest, ManifestError, PartEntry};
use crate::output::{self, OutputError};
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
    let too_large = || ReadError::Manifest {
        snapshot: snapshot.to_owned(),
        source: ManifestError::Content(format!("it is larger than {} bytes", chain::MAX_MANIFEST_BYTES)),
    };
    let bytes = chain::read_manifest(archive, profile, snapshot).await?.ok_or_else(too_large)?;
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

/// How far past the manifest's size a part is still downloaded to say what
/// it is (a valid part of another snapshot is rarely the same size): one
/// largest chunk frame more. Anything longer is not downloaded further.
const DIAGNOSIS_SLACK_BYTES: u64 = 16 * 1024 * 1024 + 64 * 1024;

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn spool_error(source: std::io::Error) -> ReadError {
    ReadError::Output { path: "the temporary spool file".into(), source }
}

/// Downloads one part to the end of `spool` (a private temporary file),
/// hashing as it goes, and checks its size and SHA-256 against the manifest.
/// Memory holds one network chunk and one chunk frame, never the part.
/// Returns where the part starts in `spool`.
async fn fetch_part(
    archive: &Archive,
    at: (&str, &str),
    entry: &PartEntry,
    key: Option<&RecipientSecretKey>,
    mut spool: &File,
) -> Result<u64, ReadError> {
    let start = spool.seek(SeekFrom::End(0)).map_err(spool_error)?;
    let limit = entry.ciphertext_bytes.saturating_add(DIAGNOSIS_SLACK_BYTES);
    let mut sink = Hashing { inner: BufWriter::new(spool), hash: Sha256::new() };
    let (copied, longer) = archive.copy_to(at.0, at.1, &entry.name, limit, &mut sink).await?;
    sink.flush().map_err(spool_error)?;
    let digest = hex::encode(sink.hash.finalize());
    if !longer && copied == entry.ciphertext_bytes && digest == entry.sha256 {
        return Ok(start);
    }
    // Say what kind of damage it is: the format's own checks are precise.
    let fail =
        |diagnosis| ReadError::Part { part: entry.name.clone(), problem: PartProblem::HashMismatch { diagnosis } };
    if longer {
        return Err(fail(format!(
            "it holds more than {limit} bytes where the manifest says {} (not downloaded further)",
            entry.ciphertext_bytes
        )));
    }
    spool.seek(SeekFrom::Start(start)).map_err(spool_error)?;
    let bytes = BufReader::new(Read::by_ref(&mut spool).take(copied));
    let diagnosis = match key {
        Some(k) => match open_part(bytes, std::io::sink(), k) {
            Err(e) => format!("decrypting it fails: {e}"),
            Ok(_) => "yet it decrypts: it is a valid part of another snapshot, swapped in".into(),
        },
        None => match read_header(bytes) {
            Err(e) => format!("its header fails: {e}"),
            Ok(_) => format!(
                "{copied} bytes where the manifest says {} (verify with --key to check every chunk)",
                entry.ciphertext_bytes
            ),
        },
    };
    Err(fail(diagnosis))
}

/// Decrypts a part fetched into `spool` at `start` into `sink`: every chunk
/// authenticated, and the plaintext size the manifest's.
fn decrypt_part(
    entry: &PartEntry,
    mut spool: &File,
    start: u64,
    key: &RecipientSecretKey,
    sink: impl Write,
) -> Result<(), ReadError> {
    let fail = |problem| ReadError::Part { part: entry.name.clone(), problem };
    spool.seek(SeekFrom::Start(start)).map_err(spool_error)?;
    let sealed = BufReader::new(Read::by_ref(&mut spool).take(entry.ciphertext_bytes));
    let stats = open_part(sealed, sink, key).map_err(|e| fail(PartProblem::Decrypt(e)))?;
    if stats.plaintext_bytes != entry.plaintext_bytes {
        return Err(fail(PartProblem::PlaintextSize { got: stats.plaintext_bytes, want: entry.plaintext_bytes }));
    }
    Ok(())
}

/// Verifies a snapshot: the manifest's signature and placement, every part's
/// size and hash and, with `key`, every chunk of every part. Each part is
/// streamed to an unnamed temporary file (in `$TMPDIR`; ciphertext only) and
/// checked from there, one part at a time.
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
    let spool = tempfile::tempfile().map_err(spool_error)?;
    for entry in &manifest.parts {
        spool.set_len(0).map_err(spool_error)?;
        let start = fetch_part(archive, (profile, snapshot), entry, key, &spool).await?;
        if let Some(k) = key {
            decrypt_part(entry, &spool, start, k, std::io::sink())?;
        }
    }
    Ok(Verified { manifest, chunks_checked: key.is_some() })
}

/// Decrypts every part of a verified snapshot into `out` as plain Parquet
/// (`part-*.parquet`). Returns the files written.
///
/// Every part is downloaded first, into one unnamed temporary file inside
/// `out` (so the disk the output needs is the one that holds it, and a crash
/// leaves nothing behind), and every hash is checked before any plaintext is
/// written. Then each part is decrypted chunk by chunk to a hidden file
/// created 0600, and linked to its final name once its last chunk
/// authenticated. `out` is created 0700; see [`crate::output`].
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
    output::prepare_dir(out)?;
    let names: Vec<(PathBuf, PathBuf)> = manifest
        .parts
        .iter()
        .map(|e| {
            let name = e.name.strip_suffix(".tmenc").unwrap_or(&e.name);
            (out.join(format!(".{name}.partial")), out.join(name))
        })
        .collect();
    for (_, done) in &names {
        output::check_free(done)?;
    }
    // Every hash first, so a tampered snapshot writes nothing at all.
    let spool = tempfile::tempfile_in(out).map_err(spool_error)?;
    let mut starts = Vec::with_capacity(manifest.parts.len());
    for entry in &manifest.parts {
        starts.push(fetch_part(archive, (profile, snapshot), entry, Some(key), &spool).await?);
    }
    let mut written = Vec::with_capacity(names.len());
    for ((entry, start), (tmp, done)) in manifest.parts.iter().zip(starts).zip(names) {
        let file = output::create_private(&tmp)?;
        let mut sink = BufWriter::new(file);
        let result = decrypt_part(entry, &spool, start, key, &mut sink).and_then(|()| {
            let file = sink.into_inner().map_err(|e| output_error(&tmp)(e.into_error()))?;
            file.sync_all().map_err(output_error(&tmp))
        });
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
