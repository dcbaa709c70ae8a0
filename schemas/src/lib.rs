//! The Tidemark contract: what an edit event is, how it is signed, which
//! fields a patient record has, and which events are valid.
//!
//! Key decision: this crate does no I/O. Every service and every integrator's
//! test links the same definitions, and the pure logic here (validation,
//! DSSE, key checks) is tested without a broker or a network.

pub mod batch_ed25519;
pub mod catalog;
pub mod consistency;
pub mod dsse;
mod ed25519;
pub mod event;
mod event_de;
pub mod hlc;
pub mod httpsig;
pub mod keys;
pub mod lines;
mod number;
pub mod reason;
pub mod temporal;
mod text;
pub mod validate;
pub mod verify;
pub mod view;
mod view_de;

/// The edit topic's name (behind any `--topic-prefix`): signed envelopes keyed by patient.
pub const EDITS_TOPIC: &str = "tidemark.edits.v1";
/// The state topic's name (behind any `--topic-prefix`): the latest
/// [`PatientView`] per patient as JSON, compacted; the public contract that
/// snapshots and `tidemark state` read.
pub const STATE_TOPIC: &str = "tidemark.patient-state.v1";
/// The state record header a merger sets to the edit-topic offset its view
/// folds up to (exclusive), in decimal: every event of the patient's edit
/// partition before it is in the view. Read-your-writes compares it with the
/// offset ingest answered for an event. Advisory: the record's MAC covers
/// the view, not this header.
pub const EDITS_THROUGH_HEADER: &str = "tidemark-edits-through";

pub use catalog::{Catalog, CatalogError, FieldKind, FieldSpec, Limits, PhiClass, ValueType};
pub use event::{EDIT_EVENT_PAYLOAD_TYPE, EditEvent, Op, OpId};
pub use hlc::{Hlc, VersionVector};
pub use reason::Reason;
pub use validate::{ValidationError, Violation, ViolationReason};
pub use view::{ConflictView, FieldView, LogEntryView, PatientView, format_utc_ms};
