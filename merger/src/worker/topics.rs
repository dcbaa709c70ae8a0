//! Topics at start: create what is missing, then check co-partitioning.
//!
//! Every edit topic, the changelog and the state topic must have exactly the
//! region's own edit topic's partition count: a patient's state is written to
//! the partition number its events came from, restoring partition p reads
//! changelog partition p, and partition p of every edit topic (the region's
//! own and those mirrored in from other regions, written with the same
//! partitioner) holds the same patients.

use tidemark_kafka::topics::{self, TopicSpec};

use super::config::MergerConfig;
use super::error::WorkerError;

/// Creates missing topics (edit topics, compacted changelog and state, the
/// DLQ) and checks that every edit topic, the changelog and the state topic
/// have as many partitions as the region's own edit topic. Returns that
/// partition count. Topics are created with the own edit topic's count when
/// it exists, `--partitions` otherwise.
///
/// # Errors
/// [`WorkerError::Kafka`] when the broker cannot be reached or refuses;
/// [`WorkerError::CoPartitioning`] when partition counts differ.
pub async fn ensure_topics(cfg: &MergerConfig) -> Result<usize, WorkerError> {
    let existing = topics::partition_counts(&cfg.kafka, cfg.startup_timeout).await?;
    let local = cfg.topics.local_edits();
    let want = topics::count_of(&existing, local).map_or(cfg.partitions, |n| i32::try_from(n).unwrap_or(i32::MAX));
    let compact: &[(&str, &str)] = &[("cleanup.policy", "compact")];
    let mut specs: Vec<TopicSpec<'_>> = cfg.topics.edits.iter().map(|t| TopicSpec { name: t, configs: &[] }).collect();
    specs.push(TopicSpec { name: &cfg.topics.changelog, configs: compact });
    specs.push(TopicSpec { name: &cfg.topics.state, configs: compact });
    // The DLQ, last, is keyed by patient too but read by no merger: any count.
    specs.push(TopicSpec { name: &cfg.topics.dlq, configs: &[] });
    let counts = topics::ensure(&cfg.kafka, &specs, want, cfg.startup_timeout).await?;
    let edits = counts[0];
    let checked = specs.len() - 1;
    for (spec, &n) in specs[1..checked].iter().zip(&counts[1..checked]) {
        if n != edits {
            return Err(WorkerError::CoPartitioning {
                edits: local.to_owned(),
                edits_partitions: edits,
                other: spec.name.to_owned(),
                other_partitions: n,
            });
        }
    }
    Ok(edits)
}
