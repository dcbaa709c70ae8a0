//! Topics at start: create what is missing, then check co-partitioning.
//!
//! The changelog and state topics must have exactly the edit topic's partition
//! count: a patient's state is written to the partition number its events came
//! from, and restoring partition p reads changelog partition p.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::types::RDKafkaErrorCode;

use super::config::MergerConfig;
use super::error::WorkerError;

/// Creates missing topics (compacted changelog and state) and checks that the
/// changelog and state topics have as many partitions as the edit topic.
/// Returns that partition count.
///
/// # Errors
/// [`WorkerError::Kafka`] when the broker cannot be reached or refuses;
/// [`WorkerError::CoPartitioning`] when partition counts differ.
pub async fn ensure_topics(cfg: &MergerConfig) -> Result<usize, WorkerError> {
    let admin: AdminClient<DefaultClientContext> =
        cfg.client_config().create().map_err(WorkerError::kafka("creating the admin client"))?;
    let existing = partition_counts(cfg, cfg.startup_timeout)?;
    let edits_partitions = existing.iter().find(|(t, _)| *t == cfg.topics.edits).map(|(_, n)| *n);
    let want = edits_partitions.map_or(cfg.partitions, |n| i32::try_from(n).unwrap_or(i32::MAX));
    let compact = [("cleanup.policy", "compact")];
    let specs: [(&str, &[(&str, &str)]); 4] = [
        (&cfg.topics.edits, &[]),
        (&cfg.topics.changelog, &compact),
        (&cfg.topics.state, &compact),
        (&cfg.topics.dlq, &[]),
    ];
    let missing: Vec<NewTopic<'_>> = specs
        .iter()
        .filter(|(name, _)| !existing.iter().any(|(t, n)| t == name && *n > 0))
        .map(|(name, configs)| {
            configs.iter().fold(NewTopic::new(name, want, TopicReplication::Fixed(-1)), |t, (k, v)| t.set(k, v))
        })
        .collect();
    if !missing.is_empty() {
        let opts = AdminOptions::new().operation_timeout(Some(cfg.startup_timeout));
        let results = admin.create_topics(&missing, &opts).await.map_err(WorkerError::kafka("creating topics"))?;
        for r in results {
            match r {
                Ok(name) => tracing::info!(topic = %name, partitions = want, "created topic"),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(WorkerError::Kafka {
                        what: format!("creating topic {name}"),
                        source: rdkafka::error::KafkaError::AdminOp(code),
                    });
                }
            }
        }
    }
    wait_for_partitions(cfg).await
}

/// Polls metadata until every topic is visible with partitions, then checks
/// co-partitioning.
async fn wait_for_partitions(cfg: &MergerConfig) -> Result<usize, WorkerError> {
    let deadline = tokio::time::Instant::now() + cfg.startup_timeout;
    loop {
        let counts = partition_counts(cfg, Duration::from_secs(5))?;
        let get = |t: &str| counts.iter().find(|(n, _)| n == t).map_or(0, |(_, c)| *c);
        let edits = get(&cfg.topics.edits);
        let ready = [&cfg.topics.edits, &cfg.topics.changelog, &cfg.topics.state].iter().all(|t| get(t) > 0);
        if ready {
            for other in [&cfg.topics.changelog, &cfg.topics.state] {
                if get(other) != edits {
                    return Err(WorkerError::CoPartitioning {
                        edits: cfg.topics.edits.clone(),
                        edits_partitions: edits,
                        other: other.clone(),
                        other_partitions: get(other),
                    });
                }
            }
            return Ok(edits);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(WorkerError::Kafka {
                what: format!("waiting for topics {} to appear", cfg.topics.edits),
                source: rdkafka::error::KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn partition_counts(cfg: &MergerConfig, timeout: Duration) -> Result<Vec<(String, usize)>, WorkerError> {
    let probe: BaseConsumer = cfg.client_config().create().map_err(WorkerError::kafka("creating a metadata client"))?;
    let md = tokio::task::block_in_place(|| probe.fetch_metadata(None, timeout))
        .map_err(WorkerError::kafka(format!("reaching the brokers at {}", cfg.brokers)))?;
    Ok(md
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| (t.name().to_owned(), t.partitions().len()))
        .collect())
}
