//! Worker configuration: what the binary's flags become.

use std::sync::Arc;
use std::time::Duration;

use tidemark_reload::Slot;
use tidemark_schemas::Catalog;
use tidemark_schemas::verify::Verifier;
use tidemark_seal::StateKeys;

/// The topics the merger touches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topics {
    /// Signed edit events, keyed by patient (input), never empty: the
    /// region's own topic first (its ingest writes there, and the
    /// read-your-writes tokens name its offsets), then any mirrored in from
    /// other regions. Partition p of every one folds into the same documents.
    pub edits: Vec<String>,
    /// Binary CRDT state per patient, compacted, co-partitioned with `edits` (restore).
    pub changelog: String,
    /// JSON view per patient, compacted, co-partitioned with `edits` (public contract).
    pub state: String,
    /// Poison events with reason headers.
    pub dlq: String,
}

impl Topics {
    /// The default names behind `prefix` (empty for none).
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            edits: vec![format!("{prefix}{}", tidemark_schemas::EDITS_TOPIC)],
            changelog: format!("{prefix}tidemark.patient-changelog.v1"),
            state: format!("{prefix}{}", tidemark_schemas::STATE_TOPIC),
            dlq: format!("{prefix}tidemark.edits.dlq.v1"),
        }
    }

    /// The region's own edit topic: the first.
    pub fn local_edits(&self) -> &str {
        self.edits.first().map_or("", String::as_str)
    }

    /// The index of edit topic `topic` in [`Self::edits`]; `None` for a
    /// topic the merger does not read.
    pub fn edits_index(&self, topic: &str) -> Option<usize> {
        self.edits.iter().position(|t| t == topic)
    }
}

/// Everything a merger worker needs.
#[derive(Clone)]
pub struct MergerConfig {
    /// How to reach Kafka (brokers, TLS/SASL and tuning options).
    pub kafka: tidemark_kafka::Connection,
    /// The consumer group.
    pub group: String,
    /// Topic names.
    pub topics: Topics,
    /// Partitions for topics created at start (when missing).
    pub partitions: i32,
    /// A batch closes at this many events...
    pub max_batch_events: usize,
    /// ...or this long after its first event.
    pub max_batch_wait: Duration,
    /// How often consumer lag is measured.
    pub lag_interval: Duration,
    /// Restoring a partition fails when no progress is made for this long.
    pub restore_stall_timeout: Duration,
    /// Bound on broker round trips at start (metadata, topic creation).
    pub startup_timeout: Duration,
    /// The record catalog events are validated against.
    pub catalog: Arc<Catalog>,
    /// Signature verification against the key registry; each batch takes the
    /// verifier current when it starts, so a registry reload (the binary
    /// watches the file) applies from the next batch on.
    pub verifier: Arc<Slot<Verifier>>,
    /// The keys changelog and state records are sealed with (the first) and
    /// checked against (all).
    pub state_keys: Arc<StateKeys>,
    /// Restore accepts changelog records that carry no MAC (written before
    /// records were authenticated) and seals them again; records whose MAC
    /// fails are refused either way.
    pub trust_unsealed_changelog: bool,
    /// Metrics (registered by the caller).
    pub metrics: super::MergerMetrics,
    /// What `/healthz` reports of the worker (the caller serves it).
    pub status: Arc<super::WorkerStatus>,
    /// Fault injection for the crash tests (empty in production builds).
    pub faults: Faults,
}

/// Fault injection for the crash tests. Its hooks exist only in builds with
/// the `fault-injection` feature (the test suite's); in any other build this
/// is an empty type and the hook in the worker's loop compiles to nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// Abort the process after this many batches had their outputs
    /// acknowledged, before committing the last one's offsets: the worst
    /// moment to crash.
    #[cfg(feature = "fault-injection")]
    pub abort_before_commit_after_batches: Option<u64>,
}

impl Faults {
    /// The hook between a batch's acknowledged outputs and its commit;
    /// `batches` counts the batches processed so far.
    pub(crate) fn before_commit(&self, batches: u64) {
        #[cfg(feature = "fault-injection")]
        if self.abort_before_commit_after_batches.is_some_and(|n| batches >= n) {
            tracing::error!(batches, "fault injection: aborting after the outputs, before the commit");
            std::process::abort();
        }
        #[cfg(not(feature = "fault-injection"))]
        let _ = batches;
    }
}
