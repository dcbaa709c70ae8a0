//! Worker configuration: what the binary's flags become.

use std::sync::Arc;
use std::time::Duration;

use tidemark_schemas::Catalog;
use tidemark_schemas::verify::Verifier;

/// The four topics the merger touches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topics {
    /// Signed edit events, keyed by patient (input).
    pub edits: String,
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
            edits: format!("{prefix}{}", tidemark_schemas::EDITS_TOPIC),
            changelog: format!("{prefix}tidemark.patient-changelog.v1"),
            state: format!("{prefix}{}", tidemark_schemas::STATE_TOPIC),
            dlq: format!("{prefix}tidemark.edits.dlq.v1"),
        }
    }
}

/// Everything a merger worker needs.
#[derive(Clone)]
pub struct MergerConfig {
    /// Bootstrap servers.
    pub brokers: String,
    /// librdkafka options passed through (`security.protocol`, `sasl.*`, ...).
    pub kafka_options: Vec<(String, String)>,
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
    /// Signature verification against the key registry.
    pub verifier: Arc<Verifier>,
    /// Fault injection for tests: abort the process after this many batches
    /// had their outputs acknowledged, before committing the last one's
    /// offsets — the worst moment to crash. `None` in production.
    pub abort_before_commit_after_batches: Option<u64>,
}

impl MergerConfig {
    /// A librdkafka config with the brokers and the pass-through options.
    pub(crate) fn client_config(&self) -> rdkafka::ClientConfig {
        self.client_config_with(&[])
    }

    /// As [`Self::client_config`], with `tunables` set before the
    /// pass-through options so that an operator's `--kafka-option` wins over
    /// them. Settings correctness depends on (acks, idempotence, manual
    /// commits) are set by the caller afterwards, so no option can weaken them.
    pub(crate) fn client_config_with(&self, tunables: &[(&str, &str)]) -> rdkafka::ClientConfig {
        let mut c = rdkafka::ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in tunables {
            c.set(*k, *v);
        }
        for (k, v) in &self.kafka_options {
            c.set(k, v);
        }
        c
    }
}
