//! Tidemark's patient CRDT, its canonical state encoding and the offline
//! fold: pure, no I/O.
//!
//! Key decision: this crate depends on neither rdkafka nor tokio, so "pure"
//! is enforced by Cargo, not by a comment. The merger's worker, the CLI's
//! `fold`, the benches and the fuzz targets all link this one copy, which is
//! what makes the offline [`fold`] a faithful reference for the live
//! pipeline.
//!
//! A document holds one CRDT per written field — a multi-value register with
//! coverage, an add-wins observed-remove set, or a grow-only log — plus the
//! document's version vector, a distinct-event counter and the newest
//! timestamp. Every write is identified by (event id, op index) and ordered by
//! (hlc, source, event id, op), so `apply` is idempotent and the state is a
//! function of the *set* of events seen: any order, any duplication, any split
//! folded and merged gives byte-identical state.

mod codec;
mod counter;
mod coverage;
mod doc;
pub mod fold;
mod log;
mod orset;
mod register;
mod vecmap;

pub use codec::{DecodeError, FORMAT_VERSION, MAGIC};
pub use counter::{EXACT_LIMIT, EventCounter};
pub use coverage::{Clock, Coverage, WriteId};
pub use doc::{ApplyError, FieldState, PatientDoc};
pub use log::{Log, LogEntry};
pub use orset::OrSet;
pub use register::{RegWrite, Register};
pub use vecmap::{Key, VecMap};

#[cfg(test)]
mod tests;
