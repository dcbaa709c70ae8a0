//! Tidemark merger: the Kafka worker that folds each patient's edit events
//! into a CRDT document and publishes it.
//!
//! Key decision: folds are idempotent and order-independent (the pure
//! [`tidemark_crdt`] crate), so at-least-once delivery from Kafka yields
//! exactly the state exactly-once would, and the offline
//! [`tidemark_crdt::fold`] of the same events is the reference this live
//! worker must equal. This crate is the I/O around that core: consuming,
//! restoring from the changelog, producing state, committing, metrics.

pub mod worker;

pub use worker::{MergerConfig, MergerMetrics, WorkerError, run};
