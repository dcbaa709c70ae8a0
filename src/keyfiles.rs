//! Key files the CLI and the demo create and load: created whole, with their
//! final permissions from the start, never overwriting; secrets read only
//! through the one permission-checking reader (`tidemark_seal::keyfile`).
//! Below both the CLI and the demo, so neither reaches into the other.

use std::path::Path;

use anyhow::{Context as _, bail};
use ed25519_dalek::SigningKey;
use rand::TryRng as _;
use tidemark_schemas::keys::{KeyRegistry, SigningKeyFile};
use tidemark_seal::{ArchiverSigningKey, KeyError, RecipientSecretKey, keyfile};
use zeroize::Zeroizing;

/// Writes `contents` to a new file `path` with permission `mode` (before the
/// umask), atomically and never replacing an existing file (see
/// [`keyfile::write_new`], which every key file goes through).
///
/// # Errors
/// If `path` exists or any step fails.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    match keyfile::write_new(path, contents, mode) {
        Ok(()) => Ok(()),
        Err(KeyError::AlreadyExists) => {
            bail!("refusing to overwrite {}: remove it first or choose another name", path.display())
        }
        Err(e) => Err(e).with_context(|| format!("writing {}", path.display())),
    }
}

/// Reads and checks a key registry file, as the services do
/// ([`tidemark_reload::load_registry`]).
///
/// # Errors
/// If the file cannot be read or an entry is refused.
pub fn load_registry(path: &Path) -> anyhow::Result<KeyRegistry> {
    Ok(tidemark_reload::load_registry(path)?)
}

/// A new Ed25519 signing key with id `name` for `source`, from the
/// operating system's randomness.
///
/// # Errors
/// If there is no randomness, or the id or source is refused.
pub fn new_signing_key(name: &str, source: &str) -> anyhow::Result<SigningKeyFile> {
    let mut seed = Zeroizing::new([0u8; 32]);
    rand::rngs::SysRng.try_fill_bytes(seed.as_mut()).context("reading randomness from the operating system")?;
    SigningKeyFile::new(name, source, SigningKey::from_bytes(&seed)).context("checking the key's id and source")
}

/// Writes a signing key (mode 0600) and its public key, neither over an existing file.
///
/// # Errors
/// If a file exists or cannot be written.
pub fn write_signing_key(key: &SigningKeyFile, key_path: &Path, pub_path: &Path) -> anyhow::Result<()> {
    write_new(key_path, key.to_toml().as_bytes(), 0o600)?;
    write_new(pub_path, format!("{}\n", key.registry_entry(None).public_key).as_bytes(), 0o644)
}

/// Generates a recipient key pair and writes it (secret 0600, then public).
///
/// # Errors
/// If there is no randomness or a file cannot be written.
pub fn create_recipient_key(key_path: &Path, pub_path: &Path) -> anyhow::Result<RecipientSecretKey> {
    let key = RecipientSecretKey::generate().context("generating a recipient key")?;
    tidemark_seal::save_recipient_secret(key_path, &key)?;
    tidemark_seal::save_recipient_public(pub_path, key.public_key())?;
    Ok(key)
}

/// Generates an archiver key pair and writes it (secret 0600, then public).
///
/// # Errors
/// If there is no randomness or a file cannot be written.
pub fn create_archiver_key(key_path: &Path, pub_path: &Path) -> anyhow::Result<ArchiverSigningKey> {
    let key = ArchiverSigningKey::generate().context("generating an archiver key")?;
    tidemark_seal::save_archiver_secret(key_path, &key)?;
    tidemark_seal::save_archiver_public(pub_path, &key.verifying_key())?;
    Ok(key)
}

/// Reads a signing key file, refusing it when group or others may read it
/// (the one secret-file check every key kind goes through).
///
/// # Errors
/// If the file cannot be read, is readable by others, or is not a valid key file.
pub fn load_signing_key(path: &Path) -> anyhow::Result<SigningKeyFile> {
    let text = tidemark_seal::keyfile::read_text(path, true)?;
    SigningKeyFile::from_toml_str(&text).with_context(|| format!("loading key file {}", path.display()))
}
