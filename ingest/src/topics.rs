//! The edit topic at start (create it when missing, check its partitions),
//! and the broker probe the watcher runs on the producer's own connection.

use std::time::Duration;

use rdkafka::producer::{FutureProducer, Producer as _};
use tidemark_kafka::topics::{self, TopicSpec};

use crate::{IngestConfig, IngestError};

/// Partition count of `topic`, `None` if missing; `Err` when unreachable.
/// Asked on the producer's client, so an answer proves the connection the
/// events go through works.
pub(crate) async fn partitions(
    producer: &FutureProducer,
    topic: &str,
    timeout: Duration,
) -> Result<Option<usize>, rdkafka::error::KafkaError> {
    let p = producer.clone();
    let t = topic.to_owned();
    let md = tokio::task::spawn_blocking(move || {
        p.client()
            .fetch_metadata(Some(&t), timeout)
            .map(|md| md.topics().iter().find(|x| x.name() == t && x.error().is_none()).map(|x| x.partitions().len()))
    })
    .await
    .map_err(|_| rdkafka::error::KafkaError::Canceled)?;
    md.map(|n| n.filter(|n| *n > 0))
}

/// Creates the edit topic if missing; checks its partition count otherwise.
///
/// # Errors
/// [`IngestError::Config`] when the topic's partition count is not
/// `--partitions`; [`IngestError::Unreachable`] or [`IngestError::Kafka`]
/// when the broker cannot be reached or refuses.
pub(crate) async fn ensure(cfg: &IngestConfig) -> Result<(), IngestError> {
    let topic = cfg.edits_topic();
    let unreachable =
        || IngestError::Unreachable { brokers: cfg.kafka.brokers.clone(), timeout_ms: cfg.startup_timeout.as_millis() };
    let existing = topics::partition_counts(&cfg.kafka, cfg.startup_timeout).await.map_err(|_| unreachable())?;
    if let Some(n) = topics::count_of(&existing, &topic)
        && n != usize::try_from(cfg.partitions).unwrap_or(0)
    {
        return Err(IngestError::Config(format!(
            "topic {topic} has {n} partitions but --partitions is {}: use the topic's count (partitions decide \
             which patients share a partition, so they cannot change)",
            cfg.partitions
        )));
    }
    topics::ensure(&cfg.kafka, &[TopicSpec { name: &topic, configs: &[] }], cfg.partitions, cfg.startup_timeout)
        .await
        .map_err(|e| match e {
            tidemark_kafka::KafkaFailure::Kafka { what, source } => IngestError::Kafka { what, source },
            _ => unreachable(),
        })?;
    Ok(())
}
