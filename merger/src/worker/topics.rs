//! Topics at start: create what is missing, then check co-partitioning.
//!
//! The changelog and state topics must have exactly the edit topic's partition
//! count: a patient's state is written to the partition number its events came
//! from, and restoring partition p reads changelog partition p.

use tidemark_kafka::topics::{self, TopicSpec};

use super::config::MergerConfig;
use super::error::WorkerError;

/// Creates missing topics (compacted changelog and state) and checks that the
/// changelog and state topics have as many partitions as the edit topic.
/// Returns that partition count. Topics are created with the edit topic's
/// count when it exists, `--partitions` otherwise.
///
/// # Errors
/// [`WorkerError::Kafka`] when the broker cannot be reached or refuses;
/// [`WorkerError::CoPartitioning`] when partition counts differ.
pub async fn ensure_topics(cfg: &MergerConfig) -> Result<usize, WorkerError> {
    let existing = topics::partition_counts(&cfg.kafka, cfg.startup_timeout).await?;
    let want =
        topics::count_of(&existing, &cfg.topics.edits).map_or(cfg.partitions, |n| i32::try_from(n).unwrap_or(i32::MAX));
    let compact: &[(&str, &str)] = &[("cleanup.policy", "compact")];
    let specs = [
        TopicSpec { name: &cfg.topics.edits, configs: &[] },
        TopicSpec { name: &cfg.topics.changelog, configs: compact },
        TopicSpec { name: &cfg.topics.state, configs: compact },
        TopicSpec { name: &cfg.topics.dlq, configs: &[] },
    ];
    let counts = topics::ensure(&cfg.kafka, &specs, want, cfg.startup_timeout).await?;
    let edits = counts[0];
    for (spec, &n) in specs[1..3].iter().zip(&counts[1..3]) {
        if n != edits {
            return Err(WorkerError::CoPartitioning {
                edits: cfg.topics.edits.clone(),
                edits_partitions: edits,
                other: spec.name.to_owned(),
                other_partitions: n,
            });
        }
    }
    Ok(edits)
}
