//! Tidemark archiver: consistent snapshots of the patient-state topic as
//! encrypted Parquet parts plus a signed manifest.
//!
//! Key decision: the manifest is written last and is the commit point; a
//! snapshot without a valid manifest does not exist. Lands with its own issue.

pub mod crypto;
