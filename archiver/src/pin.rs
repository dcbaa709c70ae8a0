//! The reader's pin: the highest manifest sequence seen per profile, so a
//! reader refuses an archive rolled back to an older `latest`.
//!
//! Key decision: the chain of manifests shows a snapshot deleted or replaced
//! in the middle, but not the newest ones deleted: what remains is a valid,
//! shorter chain. Only the reader can know it saw more before, so it keeps
//! that in a small local file and refuses to go backwards. On first use the
//! file is created with what `latest` is then (trust on first use); every
//! later newer `latest` moves it forward. The file is not secret but its
//! integrity matters (lowering it re-opens rollback), so it is created 0600,
//! never through a symlink, replaced atomically, and refused when group or
//! others may write it.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::chain::Link;

/// The pin file's format tag.
pub const PIN_FORMAT: &str = "tidemark.snapshot-pin.v1";
/// Pin files are small; anything larger is not one.
const MAX_PIN_BYTES: u64 = 64 * 1024;

/// The pin file: one per archive.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinFile {
    /// Always [`PIN_FORMAT`].
    pub format: String,
    /// The archive location as given to the reader.
    pub archive: String,
    /// Per profile, the highest sequence seen.
    pub profiles: BTreeMap<String, Pinned>,
}

/// The highest manifest seen in one profile.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pinned {
    /// Its sequence.
    pub sequence: u64,
    /// The snapshot id.
    pub snapshot_id: String,
    /// SHA-256 of its `manifest.dsse.json`, lowercase hex.
    pub manifest_sha256: String,
}

/// What checking `latest` against the pin found (all of these accept it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinOutcome {
    /// No pin for this profile yet: `latest` is now pinned.
    FirstUse,
    /// `latest` is the pinned manifest.
    Unchanged,
    /// `latest` is newer: the pin moved forward from this sequence.
    Advanced {
        /// The sequence pinned before.
        from: u64,
    },
}

/// Why the pin refuses `latest`, or cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// `latest` is older than a snapshot seen before: a rollback.
    #[error(
        "rollback: latest of profile {profile} is sequence {latest} (snapshot {latest_id}), but sequence {pinned} (snapshot {pinned_id}) was seen before; newer snapshots were removed from the archive"
    )]
    Rollback {
        /// The profile.
        profile: String,
        /// `latest`'s sequence.
        latest: u64,
        /// `latest`'s id.
        latest_id: String,
        /// The pinned sequence.
        pinned: u64,
        /// The pinned id.
        pinned_id: String,
    },
    /// Same sequence, different manifest: the archive was rewritten.
    #[error(
        "latest of profile {profile} is sequence {sequence} but not the manifest pinned for it (snapshot {pinned_id}): the archive was rewritten"
    )]
    Replaced {
        /// The profile.
        profile: String,
        /// The sequence.
        sequence: u64,
        /// The pinned id.
        pinned_id: String,
    },
    /// The pin file names another archive.
    #[error("pin file {path} is for archive `{pinned}`, not `{given}`: use one pin file per archive")]
    OtherArchive {
        /// The pin file.
        path: String,
        /// The archive it records.
        pinned: String,
        /// The archive given.
        given: String,
    },
    /// The file is not a pin file, or is unsafe to trust.
    #[error("pin file {path}: {why}")]
    Unusable {
        /// The pin file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// Reading or writing the file failed.
    #[error("pin file {path}: {source}")]
    Io {
        /// The pin file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Checks `latest` of `profile` against the pin file at `path` and records
/// it when it is new or newer. A missing file is created (first use).
///
/// # Errors
/// [`PinError::Rollback`] or [`PinError::Replaced`] when `latest` must not be
/// trusted; the other variants when the file cannot be used.
pub fn check(path: &Path, archive: &str, profile: &str, latest: &Link) -> Result<PinOutcome, PinError> {
    let mut pins = read(path)?.unwrap_or_else(|| PinFile {
        format: PIN_FORMAT.into(),
        archive: archive.into(),
        profiles: BTreeMap::new(),
    });
    if pins.archive != archive {
        return Err(PinError::OtherArchive {
            path: path.display().to_string(),
            pinned: pins.archive,
            given: archive.into(),
        });
    }
    let seen = Pinned {
        sequence: latest.manifest.chain_sequence(),
        snapshot_id: latest.id.clone(),
        manifest_sha256: latest.manifest_sha256.clone(),
    };
    let outcome = match pins.profiles.get(profile) {
        None => PinOutcome::FirstUse,
        Some(p) if p.sequence > seen.sequence => {
            return Err(PinError::Rollback {
                profile: profile.into(),
                latest: seen.sequence,
                latest_id: seen.snapshot_id,
                pinned: p.sequence,
                pinned_id: p.snapshot_id.clone(),
            });
        }
        Some(p) if p.sequence == seen.sequence && p.manifest_sha256 == seen.manifest_sha256 => {
            return Ok(PinOutcome::Unchanged);
        }
        // Same sequence, another manifest.
        Some(p) if p.sequence == seen.sequence => {
            return Err(PinError::Replaced {
                profile: profile.into(),
                sequence: seen.sequence,
                pinned_id: p.snapshot_id.clone(),
            });
        }
        Some(p) => PinOutcome::Advanced { from: p.sequence },
    };
    pins.profiles.insert(profile.into(), seen);
    write(path, &pins)?;
    Ok(outcome)
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> PinError + '_ {
    move |source| PinError::Io { path: path.display().to_string(), source }
}

/// Reads the pin file; `None` when it does not exist yet.
fn read(path: &Path) -> Result<Option<PinFile>, PinError> {
    let unusable = |why: String| PinError::Unusable { path: path.display().to_string(), why };
    let file = match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(unusable("it is a symlink; refusing it".into())),
        Err(e) => return Err(io(path)(e)),
    };
    let meta = file.metadata().map_err(io(path))?;
    if !meta.is_file() || meta.len() > MAX_PIN_BYTES {
        return Err(unusable("not a regular file of at most 64 KiB".into()));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(unusable(format!(
            "group or others may write it (mode {:o}), so anyone could lower it: chmod 600 it",
            meta.mode() & 0o777
        )));
    }
    if meta.uid() != rustix::process::geteuid().as_raw() && meta.uid() != 0 {
        return Err(unusable("it belongs to another user, who could lower it: keep your own pin file".into()));
    }
    let pins: PinFile =
        serde_json::from_reader(std::io::BufReader::new(file)).map_err(|e| unusable(format!("not a pin file: {e}")))?;
    if pins.format != PIN_FORMAT {
        return Err(unusable(format!("format is `{}`, expected `{PIN_FORMAT}`", printable(&pins.format))));
    }
    Ok(Some(pins))
}

fn printable(s: &str) -> String {
    crate::chain::printable(s)
}

/// Writes the pin file atomically: a new 0600 temporary file beside it
/// (`create_new`: never through an existing file or symlink), synced, then
/// renamed over the old one.
fn write(path: &Path, pins: &PinFile) -> Result<(), PinError> {
    let mut text = serde_json::to_vec_pretty(pins).expect("a pin file always serialises");
    text.push(b'\n');
    let tmp = temp_path(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(io(&tmp))?;
    let written = file.write_all(&text).and_then(|()| file.sync_all());
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(path)(e));
    }
    Ok(())
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

#[cfg(test)]
#[path = "pin_tests.rs"]
mod tests;
