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
//! topic up to a cut is `tidemark_kafka::scan`'s, shared with the other
//! readers of Kafka.
//!
//! The `service` feature (on by default) is everything that writes
//! snapshots: reading the state topic, the de-identified cut, the service
//! loop and its metrics. Without it the crate is the readers alone
//! (`manifest`, `chain`, `revision`, `pme`, `reader`, `storage`, `table`),
//! with no Kafka client, which is what the Python package links.

pub mod chain;
#[cfg(feature = "service")]
pub mod deid_cut;
pub mod manifest;
#[cfg(feature = "service")]
pub mod metrics;
pub mod output;
pub mod pin;
pub mod pme;
pub mod reader;
pub mod revision;
#[cfg(feature = "service")]
pub mod scratch;
#[cfg(feature = "service")]
pub mod service;
#[cfg(feature = "service")]
pub mod snapshot;
#[cfg(feature = "service")]
pub mod status;
pub mod storage;
#[cfg(feature = "service")]
pub mod succession;
pub mod table;
#[cfg(feature = "service")]
pub mod views;

#[cfg(feature = "service")]
pub use metrics::ArchiverMetrics;
#[cfg(feature = "service")]
pub use service::{ArchiverConfig, run};
#[cfg(feature = "service")]
pub use status::ArchiverStatus;
