//! Tidemark's snapshot-part encryption and its key files: no I/O beyond
//! `std::io` streams and key files, and no rdkafka, tokio or Parquet, so the
//! archiver, the CLI's readers and the fuzz targets all link this one copy.
//!
//! Key decision: a part is sealed as a STREAM of fixed-size AES-256-GCM chunks
//! under a fresh per-part key, and that key is wrapped for each recipient with a
//! hybrid X25519 + ML-KEM-768 KEM. Parts decrypt with one chunk of memory;
//! truncation, reordering, splicing and bit flips are each detected and named;
//! and an archive stays confidential unless both X25519 and ML-KEM fall.
//! The format is specified byte by byte in docs/encryption.md.

pub mod dataset;
pub mod error;
pub mod header;
pub mod kem;
pub mod keyfile;
pub mod keys;
pub mod keytext;
pub mod part;
pub mod record_mac;
pub mod secret;
pub mod stream;

pub use dataset::DatasetKey;
pub use error::PartError;
pub use header::{PartHeader, read_header};
pub use keyfile::{
    KeyFileError, load_archiver_public, load_archiver_secret, load_dataset_key, load_recipient_public,
    load_recipient_secret, load_state_keys, save_archiver_public, save_archiver_secret, save_dataset_key,
    save_recipient_public, save_recipient_secret, save_state_key,
};
pub use keys::{ArchiverSigningKey, ArchiverVerifyingKey, BadSignature, RecipientPublicKey, RecipientSecretKey};
pub use keytext::{KeyError, KeyKind};
pub use part::{OpenStats, SealStats, open_part, seal_part};
pub use record_mac::{MacFailure, RecordKind, RecordMac, Sealed, StateKey, StateKeys};
pub use secret::{SymmetricKey, SymmetricKind};
pub use stream::DEFAULT_CHUNK_SIZE;
