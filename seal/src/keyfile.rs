//! Loading and saving key files, shared by the CLI and the archiver service.
//!
//! A secret key file is created with mode 0600 from the first byte (a temporary
//! file, synced, then hard-linked into place, so it never replaces an existing
//! key and a reader never sees half of it), and loading refuses one that group
//! or others may read: a key that was exposed should be noticed, not used.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
#[cfg(unix)]
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use ring::rand::{SecureRandom as _, SystemRandom};
use zeroize::Zeroizing;

use super::dataset::DatasetKey;
use super::keys::{ArchiverSigningKey, ArchiverVerifyingKey, RecipientPublicKey, RecipientSecretKey};
use super::keytext::{KeyError, MAX_KEY_FILE_LEN};
use super::record_mac::{StateKey, StateKeys};

/// A key file could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
#[error("key file {}", path.display())]
pub struct KeyFileError {
    /// The file.
    pub path: PathBuf,
    /// What was wrong with it.
    #[source]
    pub error: KeyError,
}

fn at(path: &Path) -> impl Fn(KeyError) -> KeyFileError + '_ {
    move |error| KeyFileError { path: path.to_owned(), error }
}

/// Reads a key file of any kind (the archiver's, a recipient's, a dataset
/// key, a signing key), bounded to 16 KiB; for a `secret` file, first refuses
/// it if group or others may read it (checked on the open file, not the
/// path). Every key the CLI and the services load goes through here, so the
/// permission check has one home.
///
/// # Errors
/// [`KeyFileError`]: unreadable, readable by group or others
/// ([`KeyError::TooOpen`]), not UTF-8, or too large.
pub fn read_text(path: &Path, secret: bool) -> Result<Zeroizing<String>, KeyFileError> {
    read(path, secret).map_err(at(path))
}

fn read(path: &Path, secret: bool) -> Result<Zeroizing<String>, KeyError> {
    let file = File::open(path).map_err(KeyError::Io)?;
    #[cfg(unix)]
    if secret {
        let mode = file.metadata().map_err(KeyError::Io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::TooOpen { mode });
        }
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut text = Zeroizing::new(String::new());
    file.take(MAX_KEY_FILE_LEN + 1).read_to_string(&mut text).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidData => KeyError::Malformed("the file is not UTF-8 text"),
        _ => KeyError::Io(e),
    })?;
    if text.len() as u64 > MAX_KEY_FILE_LEN {
        return Err(KeyError::Malformed("the file is larger than 16 KiB"));
    }
    Ok(text)
}

/// Writes `contents` to the new file `path` with `mode` (before the umask): to a
/// temporary file in the same directory created with `mode`, synced, then
/// hard-linked to `path`, which fails rather than replace an existing file. A
/// reader never sees a partial file. Every key file the CLI writes goes
/// through here, signing keys included.
///
/// # Errors
/// [`KeyError::AlreadyExists`] if `path` exists; [`KeyError::Io`].
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), KeyError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or(KeyError::Malformed("the path has no file name"))?;
    let mut nonce = [0u8; 8];
    SystemRandom::new().fill(&mut nonce).map_err(|_| KeyError::Random)?;
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), hex::encode(nonce)));
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&tmp).map_err(KeyError::Io)?;
    let written = file.write_all(contents).and_then(|()| file.sync_all()).and_then(|()| fs::hard_link(&tmp, path));
    drop(file);
    // The temporary name goes whether or not the link was made.
    let _ = fs::remove_file(&tmp);
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(KeyError::AlreadyExists),
        Err(e) => return Err(KeyError::Io(e)),
    }
    // Make the new directory entry durable too; a failure here loses nothing yet.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Loads a recipient secret key file (`NAME.key`).
///
/// # Errors
/// [`KeyFileError`]: unreadable, readable by group or others
/// ([`KeyError::TooOpen`]), malformed, or an id that does not match the key.
pub fn load_recipient_secret(path: &Path) -> Result<RecipientSecretKey, KeyFileError> {
    read(path, true).and_then(|t| RecipientSecretKey::from_text(&t)).map_err(at(path))
}

/// Loads a recipient public key file (`NAME.pub`).
///
/// # Errors
/// [`KeyFileError`]: unreadable, malformed, invalid key or id mismatch.
pub fn load_recipient_public(path: &Path) -> Result<RecipientPublicKey, KeyFileError> {
    read(path, false).and_then(|t| RecipientPublicKey::from_text(&t)).map_err(at(path))
}

/// Loads the archiver's signing key file (`NAME.key`).
///
/// # Errors
/// As [`load_recipient_secret`].
pub fn load_archiver_secret(path: &Path) -> Result<ArchiverSigningKey, KeyFileError> {
    read(path, true).and_then(|t| ArchiverSigningKey::from_text(&t)).map_err(at(path))
}

/// Loads an archiver public key file (`NAME.pub`).
///
/// # Errors
/// As [`load_recipient_public`].
pub fn load_archiver_public(path: &Path) -> Result<ArchiverVerifyingKey, KeyFileError> {
    read(path, false).and_then(|t| ArchiverVerifyingKey::from_text(&t)).map_err(at(path))
}

/// Loads a dataset key file (`NAME.key`).
///
/// # Errors
/// As [`load_recipient_secret`].
pub fn load_dataset_key(path: &Path) -> Result<DatasetKey, KeyFileError> {
    read(path, true).and_then(|t| DatasetKey::from_text(&t)).map_err(at(path))
}

/// Saves a dataset key as a new file with mode 0600.
///
/// # Errors
/// As [`save_recipient_secret`].
pub fn save_dataset_key(path: &Path, key: &DatasetKey) -> Result<(), KeyFileError> {
    write_new(path, key.to_text().as_bytes(), 0o600).map_err(at(path))
}

/// Loads state key files (`NAME.key`), the first the one that seals.
///
/// # Errors
/// As [`load_recipient_secret`], naming the file; [`KeyError::InvalidKey`]
/// (without a path) for none or a key given twice.
pub fn load_state_keys(paths: &[PathBuf]) -> Result<StateKeys, KeyFileError> {
    let keys = paths
        .iter()
        .map(|p| read(p, true).and_then(|t| StateKey::from_text(&t)).map_err(at(p)))
        .collect::<Result<Vec<_>, _>>()?;
    let first = paths.first().map(|p| p.as_path()).unwrap_or(Path::new("--state-key"));
    StateKeys::new(&keys).map_err(at(first))
}

/// Saves a state key as a new file with mode 0600.
///
/// # Errors
/// As [`save_recipient_secret`].
pub fn save_state_key(path: &Path, key: &StateKey) -> Result<(), KeyFileError> {
    write_new(path, key.to_text().as_bytes(), 0o600).map_err(at(path))
}

/// Saves a recipient secret key as a new file with mode 0600.
///
/// # Errors
/// [`KeyError::AlreadyExists`] if `path` exists; [`KeyError::Io`].
pub fn save_recipient_secret(path: &Path, key: &RecipientSecretKey) -> Result<(), KeyFileError> {
    write_new(path, key.to_text().as_bytes(), 0o600).map_err(at(path))
}

/// Saves a recipient public key as a new file with mode 0644.
///
/// # Errors
/// As [`save_recipient_secret`].
pub fn save_recipient_public(path: &Path, key: &RecipientPublicKey) -> Result<(), KeyFileError> {
    write_new(path, key.to_text().as_bytes(), 0o644).map_err(at(path))
}

/// Saves the archiver's signing key as a new file with mode 0600.
///
/// # Errors
/// As [`save_recipient_secret`].
pub fn save_archiver_secret(path: &Path, key: &ArchiverSigningKey) -> Result<(), KeyFileError> {
    write_new(path, key.to_text().as_bytes(), 0o600).map_err(at(path))
}

/// Saves an archiver public key as a new file with mode 0644.
///
/// # Errors
/// As [`save_recipient_secret`].
pub fn save_archiver_public(path: &Path, key: &ArchiverVerifyingKey) -> Result<(), KeyFileError> {
    write_new(path, key.to_text().as_bytes(), 0o644).map_err(at(path))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("stat").permissions().mode() & 0o777
    }

    #[test]
    fn secret_files_are_0600_never_overwritten_and_refused_when_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.key");
        let key = RecipientSecretKey::generate().expect("rng");
        save_recipient_secret(&path, &key).expect("save");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(load_recipient_secret(&path).expect("load").key_id(), key.key_id());

        let again = save_recipient_secret(&path, &RecipientSecretKey::generate().expect("rng"));
        assert!(matches!(again, Err(KeyFileError { error: KeyError::AlreadyExists, .. })), "{again:?}");
        assert_eq!(load_recipient_secret(&path).expect("unchanged").key_id(), key.key_id());
        let leftovers: Vec<_> = fs::read_dir(dir.path()).expect("ls").collect();
        assert_eq!(leftovers.len(), 1, "no temporary files left: {leftovers:?}");

        for loose in [0o640, 0o604, 0o644] {
            fs::set_permissions(&path, fs::Permissions::from_mode(loose)).expect("chmod");
            let err = load_recipient_secret(&path).expect_err("group/other readable");
            assert!(matches!(err.error, KeyError::TooOpen { mode } if mode == loose), "{err:?}");
            assert!(err.error.to_string().contains("chmod 600"), "{}", err.error);
        }
    }

    #[test]
    fn archiver_files_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (sk_path, pk_path) = (dir.path().join("a.key"), dir.path().join("a.pub"));
        let key = ArchiverSigningKey::generate().expect("rng");
        save_archiver_secret(&sk_path, &key).expect("save secret");
        save_archiver_public(&pk_path, &key.verifying_key()).expect("save public");
        assert_eq!((mode(&sk_path), mode(&pk_path)), (0o600, 0o644));
        let sig = load_archiver_secret(&sk_path).expect("load secret").sign(b"m");
        load_archiver_public(&pk_path).expect("load public").verify(b"m", &sig).expect("verifies");
        // A public file is readable by all and loads; a secret key is never read from it.
        assert!(load_archiver_secret(&pk_path).is_err());
    }

    #[test]
    fn oversized_file_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big.pub");
        fs::write(&path, vec![b'#'; MAX_KEY_FILE_LEN as usize + 1]).expect("write");
        let err = load_recipient_public(&path).expect_err("too big");
        assert!(matches!(err.error, KeyError::Malformed(_)), "{err:?}");
    }
}
