//! Tidemark's keys and the cryptography around them: key files, the hybrid
//! KEM, snapshot keys and their Parquet key material, state record MACs. No
//! I/O beyond `std::io` streams and key files, and no rdkafka, tokio or
//! Parquet, so the archiver, the CLI's readers and the fuzz targets all link
//! this one copy.
//!
//! Key decision: a snapshot's parts are standard encrypted Parquet (Parquet
//! Modular Encryption) under one data key; the data key is wrapped under a
//! per-snapshot master key in the format every Parquet reader's key tools
//! understand, and the master key is wrapped for each recipient with a
//! hybrid X25519 + ML-KEM-768 KEM in the signed manifest, so an archive stays
//! confidential unless both X25519 and ML-KEM fall. The format is specified
//! byte by byte in docs/encryption.md.

pub mod dataset;
pub mod error;
pub mod kem;
pub mod key_material;
pub mod keyfile;
pub mod keys;
pub mod keytext;
pub mod pme_tail;
pub mod record_mac;
pub mod secret;
pub mod snapshot_keys;
pub mod stream;

pub use dataset::DatasetKey;
pub use error::StreamError;
pub use key_material::FooterKeyMaterial;
pub use keyfile::{
    KeyFileError, load_archiver_public, load_archiver_secret, load_dataset_key, load_recipient_public,
    load_recipient_secret, load_state_keys, save_archiver_public, save_archiver_secret, save_dataset_key,
    save_recipient_public, save_recipient_secret, save_state_key,
};
pub use keys::{ArchiverSigningKey, ArchiverVerifyingKey, BadSignature, RecipientPublicKey, RecipientSecretKey};
pub use keytext::{KeyError, KeyKind};
pub use pme_tail::{CryptoTail, TailError, read_crypto_tail};
pub use record_mac::{MacFailure, RecordKind, RecordMac, Sealed, StateKey, StateKeys};
pub use secret::{SymmetricKey, SymmetricKind};
pub use snapshot_keys::{MasterKeyWrap, SnapshotKey, SnapshotKeyError};
pub use stream::DEFAULT_CHUNK_SIZE;
