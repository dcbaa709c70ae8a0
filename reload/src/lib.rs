//! What a Tidemark service re-reads while it runs, in one home for ingest and
//! the merger: the file watcher ([`watch_files`]: on SIGHUP and when a file
//! changes), the slot a reloaded value is swapped into ([`Slot`]), the
//! `result` label of every reload counter ([`ReloadLabels`]), and the key
//! registry's loader and watcher ([`registry`]).
//!
//! Key decision: a reload never interrupts work. Readers take the value in
//! the slot when they start a unit of work (an ingest request, a merger
//! batch) and keep that `Arc` to its end; a reload only changes what the
//! next unit gets. A file that does not load is logged and counted, and the
//! previous value stays: a half-written file never leaves a service without
//! keys.

pub mod registry;
mod slot;
mod watch;

use prometheus_client::encoding::EncodeLabelSet;

pub use registry::{RegistryLoadError, load_registry, watch_registry};
pub use slot::Slot;
pub use watch::{POLL_INTERVAL, watch_files};

/// Labels of a reload counter (`*_reloads_total`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `ok` (the new value is in use) or `failed` (the old one stays).
    pub result: &'static str,
}

impl ReloadLabels {
    /// A reload that put the new value in use.
    pub const OK: Self = Self { result: "ok" };
    /// A reload that failed, keeping the previous value.
    pub const FAILED: Self = Self { result: "failed" };
    /// Both, for pre-registering the series.
    pub const ALL: [Self; 2] = [Self::OK, Self::FAILED];
}
