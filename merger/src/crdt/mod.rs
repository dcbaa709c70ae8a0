//! The patient CRDT: pure, no I/O.
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
