//! The edit topic at start: create it when missing, check its partitions.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, Producer as _};
use rdkafka::types::RDKafkaErrorCode;

use crate::{IngestConfig, IngestError};

/// Partition count of `topic`, `None` if missing; `Err` when unreachable.
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
pub(crate) async fn ensure(cfg: &IngestConfig, producer: &FutureProducer) -> Result<(), IngestError> {
    let topic = cfg.edits_topic();
    let unreachable =
        || IngestError::Unreachable { brokers: cfg.brokers.clone(), timeout_ms: cfg.startup_timeout.as_millis() };
    let existing = partitions(producer, &topic, cfg.startup_timeout).await.map_err(|_| unreachable())?;
    match existing {
        Some(n) if n != usize::try_from(cfg.partitions).unwrap_or(0) => Err(IngestError::Config(format!(
            "topic {topic} has {n} partitions but --partitions is {}: use the topic's count (partitions decide \
             which patients share a partition, so they cannot change)",
            cfg.partitions
        ))),
        Some(_) => Ok(()),
        None => {
            let admin: AdminClient<DefaultClientContext> = cfg
                .client_config()
                .create()
                .map_err(|source| IngestError::Kafka { what: "creating the admin client".into(), source })?;
            let opts = AdminOptions::new().operation_timeout(Some(cfg.startup_timeout));
            let new = NewTopic::new(&topic, cfg.partitions, TopicReplication::Fixed(-1));
            let results = admin
                .create_topics([&new], &opts)
                .await
                .map_err(|source| IngestError::Kafka { what: format!("creating topic {topic}"), source })?;
            for r in results {
                match r {
                    Ok(_) => tracing::info!(topic = %topic, partitions = cfg.partitions, "created topic"),
                    Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((_, code)) => {
                        return Err(IngestError::Kafka {
                            what: format!("creating topic {topic}"),
                            source: rdkafka::error::KafkaError::AdminOp(code),
                        });
                    }
                }
            }
            let deadline = tokio::time::Instant::now() + cfg.startup_timeout;
            loop {
                if let Ok(Some(_)) = partitions(producer, &topic, Duration::from_secs(5)).await {
                    return Ok(());
                }
                if tokio::time::Instant::now() > deadline {
                    return Err(unreachable());
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
