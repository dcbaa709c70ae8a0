//! Tidemark merger: folds each patient's edit events into a CRDT document.
//!
//! Key decision: folds are idempotent and order-independent (see [`crdt`]), so
//! at-least-once delivery from Kafka yields exactly the state exactly-once
//! would, and the offline [`fold`] of the same events is the reference the live
//! pipeline must equal. The Kafka worker lands with its own issue.

pub mod crdt;
pub mod fold;
pub mod worker;
