//! Every merger metric, in one place: name, help text, unit, buckets and
//! labels. Labels come from small fixed sets: reason code, output topic role,
//! partition number, reload result; never a patient id or payload. Each field is named as
//! the metric it registers. docs/metrics.md specifies these metrics and
//! tests/metrics_spec.rs holds it equal to this file.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use tidemark_reload::ReloadLabels;
use tidemark_schemas::Reason;

/// Label: a dead-letter reason code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// The code of a [`Reason`] the merger dead-letters for ([`Reason::dead_lettered`]).
    pub reason: &'static str,
}

impl ReasonLabel {
    /// The label of an event dead-lettered for `reason`.
    pub fn of(reason: Reason) -> Self {
        Self { reason: reason.as_str() }
    }
}

/// Label: an output topic's role.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutputLabel {
    /// `changelog`, `state` or `dlq`.
    pub output: &'static str,
}

impl OutputLabel {
    /// A document's encoded state, on the changelog topic.
    pub const CHANGELOG: Self = Self { output: "changelog" };
    /// A patient's view, on the state topic.
    pub const STATE: Self = Self { output: "state" };
    /// A refused event, on the dead-letter topic.
    pub const DLQ: Self = Self { output: "dlq" };
    /// Every output, for pre-registering the series.
    pub const ALL: [Self; 3] = [Self::CHANGELOG, Self::STATE, Self::DLQ];
}

/// Label: a partition of the edit topic.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabel {
    /// The partition number.
    pub partition: i32,
}

/// Labels: a partition of one edit topic (topic names are the operator's,
/// never a patient's).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicPartitionLabel {
    /// The edit topic.
    pub topic: String,
    /// The partition number.
    pub partition: i32,
}

/// Every metric the merger exports.
#[derive(Clone, Debug)]
pub struct MergerMetrics {
    /// Events folded into documents.
    pub events_folded: Counter,
    /// Events sent to the DLQ, by reason.
    pub events_dead_lettered: Family<ReasonLabel, Counter>,
    /// Register conflicts opened by folded events.
    pub conflicts_created: Counter,
    /// Records produced, by output topic.
    pub records_produced: Family<OutputLabel, Counter>,
    /// Events per batch.
    pub batch_size: Histogram,
    /// Wall time per batch, from fold to committed offsets.
    pub batch_duration: Histogram,
    /// Messages behind the partition's end, per assigned partition of each edit topic.
    pub consumer_lag: Family<TopicPartitionLabel, Gauge>,
    /// The group's lag on every partition of each edit topic, held or not.
    pub group_lag: Family<TopicPartitionLabel, Gauge>,
    /// Reads of the group's lag that failed (retried at the next interval).
    pub group_lag_failures: Counter,
    /// 1 for each partition this member holds (absent otherwise).
    pub partition_assigned: Family<PartitionLabel, Gauge>,
    /// Patient documents held in memory.
    pub documents: Gauge,
    /// Time to restore one partition's documents from the changelog.
    pub restore_duration: Histogram,
    /// Offset commits that failed (the batch will be replayed, harmlessly).
    pub commit_failures: Counter,
    /// Patients whose records were sealed again after a restore.
    pub patients_resealed: Counter,
    /// Key-registry reloads (on a file change or SIGHUP), by result.
    pub registry_reloads: Family<ReloadLabels, Counter>,
}

impl MergerMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            events_folded: Counter::default(),
            events_dead_lettered: Family::default(),
            conflicts_created: Counter::default(),
            records_produced: Family::default(),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 15)),
            batch_duration: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            consumer_lag: Family::default(),
            group_lag: Family::default(),
            group_lag_failures: Counter::default(),
            partition_assigned: Family::default(),
            documents: Gauge::default(),
            restore_duration: Histogram::new(exponential_buckets(0.001, 2.0, 18)),
            commit_failures: Counter::default(),
            patients_resealed: Counter::default(),
            registry_reloads: Family::default(),
        };
        // Pre-create every reason and output so that dashboards see zeros,
        // not gaps, and the first increase after a start is one rate() sees.
        for reason in Reason::ALL.iter().filter(|r| r.dead_lettered()) {
            let _ = m.events_dead_lettered.get_or_create(&ReasonLabel::of(*reason));
        }
        for output in OutputLabel::ALL {
            let _ = m.records_produced.get_or_create(&output);
        }
        for result in ReloadLabels::ALL {
            let _ = m.registry_reloads.get_or_create(&result);
        }
        let r = registry.sub_registry_with_prefix("tidemark_merger");
        r.register("events_folded", "Edit events folded into patient documents", m.events_folded.clone());
        r.register(
            "events_dead_lettered",
            "Edit events sent to the dead-letter topic, by reason",
            m.events_dead_lettered.clone(),
        );
        r.register("conflicts_created", "Register conflicts opened by folded events", m.conflicts_created.clone());
        r.register("records_produced", "Records produced and acknowledged, by output", m.records_produced.clone());
        r.register_with_unit("batch_size", "Edit events per batch", Unit::Other("events".into()), m.batch_size.clone());
        r.register_with_unit(
            "batch_duration",
            "Time from a batch's fold to its committed offsets",
            Unit::Seconds,
            m.batch_duration.clone(),
        );
        r.register_with_unit(
            "consumer_lag",
            "Messages between the last committed position and the partition's end",
            Unit::Other("messages".into()),
            m.consumer_lag.clone(),
        );
        r.register_with_unit(
            "group_lag",
            "The consumer group's lag on each partition of each edit topic, whoever holds it: high watermark minus \
             the group's committed offset (every member reports the same; take the max, never the sum)",
            Unit::Other("messages".into()),
            m.group_lag.clone(),
        );
        r.register(
            "group_lag_failures",
            "Reads of the consumer group's committed offsets that failed; retried at the next interval",
            m.group_lag_failures.clone(),
        );
        r.register(
            "partition_assigned",
            "1 for each partition this member holds (of every edit topic)",
            m.partition_assigned.clone(),
        );
        r.register("documents", "Patient documents held in memory", m.documents.clone());
        r.register_with_unit(
            "restore_duration",
            "Time to restore one partition's documents from the changelog",
            Unit::Seconds,
            m.restore_duration.clone(),
        );
        r.register(
            "commit_failures",
            "Offset commits that failed; the batch replays harmlessly",
            m.commit_failures.clone(),
        );
        r.register(
            "patients_resealed",
            "Patients whose changelog and state records were written again at restore, sealed under the current \
             state key (they were sealed under an older key, or written before records were authenticated)",
            m.patients_resealed.clone(),
        );
        r.register(
            "registry_reloads",
            "Key-registry reloads after a file change or SIGHUP, by result (failed keeps the previous registry)",
            m.registry_reloads.clone(),
        );
        m
    }
}
