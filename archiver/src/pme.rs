//! Parquet Modular Encryption of a snapshot's parts: the keys a snapshot is
//! written under, and the checks a part must pass before and while it is
//! read.
//!
//! Key decision: a part is a standard encrypted Parquet file (AES_GCM_V1,
//! 256-bit keys, one data key for footer and every column, encrypted footer,
//! no AAD prefix), so pyarrow, DuckDB and Spark decrypt it in place; what the
//! format cannot say for itself the signed manifest says: each file's size,
//! SHA-256 and `aad_file_unique` (which enters every module's associated
//! data, so a page moved between files fails), its schema, and the master key
//! wrapped for each recipient. One data key serves every part of a snapshot
//! so DuckDB can read them all in one glob (it takes one footer key per
//! scan); each snapshot and profile has its own.

use std::sync::Arc;

use arrow_schema::Schema;
use parquet::arrow::ArrowSchemaConverter;
use parquet::encryption::decrypt::FileDecryptionProperties;
use parquet::encryption::encrypt::FileEncryptionProperties;
use parquet::schema::types::SchemaDescriptor;
use sha2::{Digest as _, Sha256};
use tidemark_seal::key_material::FooterKeyMaterial;
use tidemark_seal::pme_tail::Algorithm;
use tidemark_seal::snapshot_keys::{self, SnapshotKeyError};
use tidemark_seal::{CryptoTail, RecipientPublicKey, RecipientSecretKey, SnapshotKey, read_crypto_tail};

use crate::manifest::{ALGORITHM, Encryption, Manifest, ManifestError, PartEntry, RecipientEntry};
use crate::table::PartOptions;

/// The keys one snapshot's parts are written under.
pub struct WriteKeys {
    /// What the manifest records: master key id, commitment, wrapped data key.
    pub encryption: Encryption,
    /// The master key wrapped for each recipient.
    pub recipients: Vec<RecipientEntry>,
    /// The file encryption every part is written with.
    pub properties: Arc<FileEncryptionProperties>,
}

impl WriteKeys {
    /// Draws a master key and a data key for `snapshot_id` and wraps them:
    /// the data key under the master key (key tools' local wrap, in every
    /// part's footer key metadata), the master key for each recipient.
    ///
    /// # Errors
    /// [`SnapshotKeyError`]: the random source failed, or a snapshot id a
    /// master key id cannot carry.
    pub fn new(snapshot_id: &str, recipients: &[RecipientPublicKey]) -> Result<Self, SnapshotKeyError> {
        let master_key_id = snapshot_keys::master_key_id(snapshot_id)?;
        let (master, data) = (SnapshotKey::generate()?, SnapshotKey::generate()?);
        let wrapped_dek = snapshot_keys::wrap_data_key(&master, &master_key_id, &data)?;
        let metadata = FooterKeyMaterial { master_key_id: master_key_id.clone(), wrapped_dek: wrapped_dek.clone() };
        let recipients = recipients
            .iter()
            .map(|r| snapshot_keys::wrap_master_key(&master, &master_key_id, r).map(|w| RecipientEntry::from_wrap(&w)))
            .collect::<Result<_, _>>()?;
        // arrow-rs keeps its own copy of the key (a Vec it does not zeroize)
        // for as long as the properties live: one snapshot.
        let properties = FileEncryptionProperties::builder(data.bytes().to_vec())
            .with_footer_key_metadata(metadata.to_bytes()?)
            .build()
            .map_err(|e| SnapshotKeyError::Parquet(e.to_string()))?;
        let encryption = Encryption {
            algorithm: ALGORITHM.into(),
            master_key_commitment: hex::encode(snapshot_keys::commitment(&master, &master_key_id)),
            master_key_id,
            wrapped_dek,
        };
        Ok(Self { encryption, recipients, properties })
    }
}

/// The Parquet options of a snapshot part: `base` with the snapshot's
/// encryption and one data page per column chunk (DuckDB reads nothing else
/// encrypted).
pub fn part_options(base: &PartOptions, keys: &WriteKeys) -> PartOptions {
    PartOptions { one_page_per_chunk: true, encryption: Some(keys.properties.clone()), ..base.clone() }
}

/// The manifest entry of an encrypted part just written: its size, SHA-256
/// and the `aad_file_unique` arrow-rs drew for it (read back from the tail,
/// which also checks the file is encrypted as the manifest will say).
///
/// # Errors
/// [`TailProblem`] when the file is not encrypted as a snapshot part is.
pub fn part_entry(name: String, file: &[u8], rows: u64, row_groups: usize) -> Result<PartEntry, TailProblem> {
    let (_, aad_file_unique) = check_tail(file)?;
    Ok(PartEntry {
        name,
        rows,
        row_groups: row_groups as u64,
        bytes: file.len() as u64,
        sha256: hex::encode(Sha256::digest(file)),
        aad_file_unique,
    })
}

/// The keys a reader recovered from a verified manifest. `Debug` shows no
/// key.
#[derive(Clone)]
pub struct ReadKeys {
    /// The snapshot master key.
    pub master: SnapshotKey,
    /// The data key every part is encrypted with.
    pub data: SnapshotKey,
    /// The data key as arrow-rs reads with it: built once per snapshot, since
    /// arrow-rs keeps its own copy of the key (which it does not zeroize).
    decryption: Arc<FileDecryptionProperties>,
}

impl ReadKeys {
    /// The keys, and the decryption properties of the data key.
    ///
    /// # Errors
    /// [`SnapshotKeyError::Parquet`] if arrow-rs refuses the key (it cannot: it
    /// is 32 bytes).
    pub fn new(master: SnapshotKey, data: SnapshotKey) -> Result<Self, SnapshotKeyError> {
        let decryption = FileDecryptionProperties::builder(data.bytes().to_vec())
            .build()
            .map_err(|e| SnapshotKeyError::Parquet(e.to_string()))?;
        Ok(Self { master, data, decryption })
    }

    /// The decryption properties of the snapshot's parts.
    pub fn decryption(&self) -> Arc<FileDecryptionProperties> {
        self.decryption.clone()
    }
}

impl std::fmt::Debug for ReadKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadKeys(<redacted>)")
    }
}

/// Recovers the master key with `key` and the data key with the master key.
///
/// # Errors
/// [`KeyProblem`]: malformed recipients in the manifest, `key` not a
/// recipient, or a wrap that does not open.
pub fn read_keys(manifest: &Manifest, key: &RecipientSecretKey) -> Result<ReadKeys, KeyProblem> {
    let e = &manifest.encryption;
    let wraps = manifest.wraps()?;
    let master = snapshot_keys::unwrap_master_key(&wraps, &e.master_key_id, &manifest.commitment()?, key)?;
    let data = snapshot_keys::unwrap_data_key(&master, &e.master_key_id, &e.wrapped_dek)?;
    Ok(ReadKeys::new(master, data)?)
}

/// Why a recipient could not recover a snapshot's keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyProblem {
    /// The manifest's key fields are malformed.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Not a recipient, or a wrap does not open.
    #[error(transparent)]
    Key(#[from] SnapshotKeyError),
}

/// SHA-256 (lowercase hex) of a Parquet schema as arrow-rs prints it in the
/// Parquet message-type syntax (`message arrow_schema { required binary
/// patient_id (STRING); … }`): the manifest's `schema_sha256`.
pub fn schema_fingerprint(schema: &SchemaDescriptor) -> String {
    let mut text = Vec::new();
    parquet::schema::printer::print_schema(&mut text, schema.root_schema());
    hex::encode(Sha256::digest(&text))
}

/// The fingerprint of the Parquet schema a part of `schema` is written with.
///
/// # Errors
/// A message when arrow-rs cannot convert the schema (a layout bug).
pub fn arrow_schema_fingerprint(schema: &Schema) -> Result<String, String> {
    ArrowSchemaConverter::new().convert(schema).map(|d| schema_fingerprint(&d)).map_err(|e| e.to_string())
}

/// What is wrong with a part's plaintext tail (read without any key).
#[derive(Debug, thiserror::Error)]
pub enum TailProblem {
    /// Not an encrypted-footer Parquet file, or a malformed tail.
    #[error("its encryption metadata cannot be read: {0}")]
    Unreadable(String),
    /// Another algorithm, or an AAD prefix (which no snapshot part has).
    #[error("it is not encrypted as a snapshot part is ({0})")]
    Scheme(&'static str),
    /// Its `aad_file_unique` is not the one the manifest names.
    #[error("its aad_file_unique is {found}, not the manifest's {expected}: it is another file")]
    OtherFile {
        /// The manifest's.
        expected: String,
        /// The file's.
        found: String,
    },
    /// Its footer key material is not the snapshot's.
    #[error("its footer key material {0}")]
    KeyMaterial(String),
}

/// The tail's `aad_file_unique`, lowercase hex, or why the tail is not a
/// snapshot part's: checked right after writing (the manifest records it) and
/// before reading.
///
/// # Errors
/// [`TailProblem`].
pub fn check_tail(tail: &[u8]) -> Result<(CryptoTail, String), TailProblem> {
    let t = read_crypto_tail(tail).map_err(|e| TailProblem::Unreadable(e.to_string()))?;
    if t.algorithm != Algorithm::AesGcmV1 {
        return Err(TailProblem::Scheme("the algorithm is not AES_GCM_V1"));
    }
    if t.uses_aad_prefix() {
        return Err(TailProblem::Scheme("it has an AAD prefix"));
    }
    let unique = match &t.aad_file_unique {
        Some(u) if u.len() == 8 => hex::encode(u),
        _ => return Err(TailProblem::Scheme("its aad_file_unique is not 8 bytes")),
    };
    Ok((t, unique))
}

/// Checks a part's tail against its manifest entry and the snapshot's
/// encryption: our scheme, the entry's `aad_file_unique`, and exactly the
/// snapshot's key material.
///
/// # Errors
/// [`TailProblem`].
pub fn check_part_tail(tail: &[u8], entry: &PartEntry, encryption: &Encryption) -> Result<(), TailProblem> {
    let (t, unique) = check_tail(tail)?;
    if unique != entry.aad_file_unique {
        return Err(TailProblem::OtherFile { expected: entry.aad_file_unique.clone(), found: unique });
    }
    let material = t.key_metadata.as_deref().ok_or_else(|| TailProblem::KeyMaterial("is missing".into()))?;
    let m = FooterKeyMaterial::parse(material).map_err(|e| TailProblem::KeyMaterial(format!("is invalid: {e}")))?;
    if m.master_key_id != encryption.master_key_id {
        return Err(TailProblem::KeyMaterial("names another snapshot's master key".into()));
    }
    if m.wrapped_dek != encryption.wrapped_dek {
        return Err(TailProblem::KeyMaterial("wraps another data key than the manifest's".into()));
    }
    Ok(())
}

#[cfg(test)]
#[path = "pme_tests.rs"]
mod tests;
