//! The Parquet parts the archive bench writes and reads: the same views in
//! each page layout and encryption a part can have, and a snapshot's keys as
//! the archiver draws them and a recipient recovers them.
//!
//! Key decision: the archived variant's options are the archiver's own
//! (`pme::part_options` over default options: one data page per column chunk
//! and the snapshot's encryption), and each other variant differs from it or
//! from plain Parquet in exactly one of those two choices, so every ratio the
//! bench prints isolates one cost. The keys go through the real wraps (hybrid KEM to a recipient,
//! the data key under the master key), so a reader is handed what `tidemark
//! snapshot keys` would hand it.

use std::sync::Arc;

use tidemark_archiver::manifest::RecipientEntry;
use tidemark_archiver::pme::{self, ReadKeys, WriteKeys};
use tidemark_archiver::table::{PartOptions, PartWriter, TableLayout};
use tidemark_schemas::PatientView;
use tidemark_seal::RecipientSecretKey;
use tidemark_seal::snapshot_keys::{self, SnapshotKeyError};

/// A part's page layout and encryption.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Variant {
    /// `PartOptions::default()`: plain Parquet, arrow-rs's default pages.
    Plain,
    /// Plain Parquet, one data page per column chunk.
    OnePage,
    /// Encrypted, arrow-rs's default pages (encryption alone; DuckDB cannot
    /// read it).
    Encrypted,
    /// Encrypted, one data page per column chunk: what the archiver writes.
    Archived,
}

impl Variant {
    /// How the tables name it.
    pub fn label(self) -> &'static str {
        match self {
            Variant::Plain => "plain",
            Variant::OnePage => "plain, one page per chunk",
            Variant::Encrypted => "encrypted, default pages",
            Variant::Archived => "as archived (one page, encrypted)",
        }
    }

    /// A short name for file names.
    pub fn slug(self) -> &'static str {
        match self {
            Variant::Plain => "plain",
            Variant::OnePage => "one-page",
            Variant::Encrypted => "encrypted",
            Variant::Archived => "archived",
        }
    }
}

/// A recipient's key pair and one snapshot's keys, wrapped for it.
pub struct SnapshotKeys {
    /// The recipient's secret key.
    pub secret: RecipientSecretKey,
    /// What the archiver draws for the snapshot.
    pub write: WriteKeys,
}

impl SnapshotKeys {
    /// A fresh recipient and a snapshot's keys wrapped for it.
    ///
    /// # Panics
    /// If the OS random source fails.
    pub fn generate() -> Self {
        let secret = RecipientSecretKey::generate().expect("the OS random source works");
        let write = new_write_keys(&secret);
        Self { secret, write }
    }

    /// The part options of `variant` under these keys.
    pub fn options(&self, variant: Variant) -> PartOptions {
        let encryption = Some(Arc::clone(&self.write.properties));
        match variant {
            Variant::Plain => PartOptions::default(),
            Variant::OnePage => PartOptions { one_page_per_chunk: true, ..PartOptions::default() },
            Variant::Encrypted => PartOptions { encryption, ..PartOptions::default() },
            Variant::Archived => pme::part_options(&PartOptions::default(), &self.write),
        }
    }

    /// What the recipient recovers: the master key (for a KMS client) and
    /// the data key (for explicit decryption properties).
    ///
    /// # Panics
    /// If the recipient cannot unwrap its own keys: a bug.
    pub fn read(&self) -> ReadKeys {
        recover(&self.write, &self.secret).expect("the recipient unwraps the keys wrapped for it")
    }
}

/// The archiver's per-snapshot key work for one recipient: a master and a
/// data key drawn, the data key wrapped under the master key, the master key
/// wrapped to the recipient (hybrid KEM).
///
/// # Panics
/// If the OS random source fails.
pub fn new_write_keys(secret: &RecipientSecretKey) -> WriteKeys {
    let snapshot_id = uuid::Uuid::now_v7().to_string();
    WriteKeys::new(&snapshot_id, std::slice::from_ref(secret.public_key())).expect("the OS random source works")
}

/// A recipient's key work before reading a snapshot, as
/// `tidemark_archiver::pme::read_keys` does it from a manifest: the master
/// key unwrapped (hybrid KEM) and checked against its commitment, then the
/// data key unwrapped.
///
/// # Errors
/// [`SnapshotKeyError`] when `secret` is not a recipient or a wrap fails.
pub fn recover(write: &WriteKeys, secret: &RecipientSecretKey) -> Result<ReadKeys, SnapshotKeyError> {
    let e = &write.encryption;
    let bad = |what: String| SnapshotKeyError::KeyMaterial(what);
    let wraps = write
        .recipients
        .iter()
        .map(RecipientEntry::to_wrap)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| bad(err.to_string()))?;
    let commitment =
        unhex32(&e.master_key_commitment).ok_or_else(|| bad("the commitment is not 64 hex digits".into()))?;
    let master = snapshot_keys::unwrap_master_key(&wraps, &e.master_key_id, &commitment, secret)?;
    let data = snapshot_keys::unwrap_data_key(&master, &e.master_key_id, &e.wrapped_dek)?;
    ReadKeys::new(master, data)
}

/// 64 hex digits as 32 bytes.
fn unhex32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// One part of `views` (sorted by the layout's key) written with `options`
/// into memory.
///
/// # Panics
/// If the views are unsorted or do not fit the catalog, or the options are
/// invalid: the bench's input is built to fit.
pub fn write_part(layout: &Arc<TableLayout>, options: &PartOptions, views: &[PatientView]) -> Vec<u8> {
    let mut w = PartWriter::new(Arc::clone(layout), Vec::new(), options.clone()).expect("valid part options");
    w.push(views).expect("sorted views that fit the catalog");
    w.finish().expect("writing to memory succeeds").0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unhex32_reads_64_digits_only() {
        let hex = "00ff".repeat(16);
        assert_eq!(unhex32(&hex).map(|b| (b[0], b[1])), Some((0, 255)));
        assert_eq!(unhex32("00ff"), None);
        assert_eq!(unhex32(&"zz".repeat(32)), None);
    }

    #[test]
    fn the_recipient_recovers_the_keys_wrapped_for_it() {
        let keys = SnapshotKeys::generate();
        let read = keys.read();
        let other = RecipientSecretKey::generate().expect("random");
        assert!(recover(&keys.write, &other).is_err(), "another key is not a recipient");
        assert_ne!(read.master.bytes(), read.data.bytes());
    }
}
