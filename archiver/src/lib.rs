//! Tidemark archiver: consistent snapshots of the patient-state topic as
//! encrypted Parquet parts plus a signed manifest, and the readers that verify
//! and decrypt them.
//!
//! Key decision: the manifest is written last and is the commit point; a
//! snapshot without a valid manifest does not exist. Everything a reader
//! trusts hangs off the manifest's signature: each part's size and SHA-256,
//! the recipients, the cut it was taken at.
//!
//! Pure logic (`table`, `manifest`, and the part encryption in the
//! [`tidemark_seal`] crate) knows nothing of Kafka or tokio; `storage`, `snapshot`, `reader`, `output` and `service` do the I/O; reading the state
//! topic up to a cut is [`tidemark_kafka::scan`]'s, shared with the other
//! readers of Kafka.

pub mod chain;
pub mod deid_cut;
pub mod manifest;
pub mod metrics;
pub mod output;
pub mod pin;
pub mod pme;
pub mod reader;
pub mod revision;
pub mod scratch;
pub mod service;
pub mod snapshot;
pub mod status;
pub mod storage;
pub mod succession;
pub mod table;
pub mod views;

pub use metrics::ArchiverMetrics;
pub use service::{ArchiverConfig, run};
pub use status::ArchiverStatus;
