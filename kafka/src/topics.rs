//! Topics at start: find what exists, create what is missing, wait until the
//! metadata shows it.
//!
//! Key decision: topics are created with the cluster's default replication
//! (`-1`), so production settings come from the cluster, not from Tidemark;
//! partition counts are the caller's to check, because only the caller knows
//! which topics must be co-partitioned.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::{Connection, KafkaFailure};

/// A topic a service needs.
#[derive(Clone, Copy, Debug)]
pub struct TopicSpec<'a> {
    /// Its full name.
    pub name: &'a str,
    /// Topic configs set when Tidemark creates it (e.g. `cleanup.policy=compact`).
    pub configs: &'a [(&'a str, &'a str)],
}

/// Every topic the cluster lists without error, with its partition count.
///
/// # Errors
/// [`KafkaFailure::Kafka`] when the brokers do not answer within `timeout`.
pub async fn partition_counts(conn: &Connection, timeout: Duration) -> Result<Vec<(String, usize)>, KafkaFailure> {
    let config = conn.client_config();
    let brokers = conn.brokers.clone();
    tokio::task::spawn_blocking(move || {
        let probe: BaseConsumer = config.create().map_err(KafkaFailure::kafka("creating a metadata client"))?;
        let md = probe
            .fetch_metadata(None, timeout)
            .map_err(KafkaFailure::kafka(format!("reaching the brokers at {brokers}")))?;
        Ok(md
            .topics()
            .iter()
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .map(|t| (t.name().to_owned(), t.partitions().len()))
            .collect())
    })
    .await
    .map_err(|_| KafkaFailure::Kafka { what: "reading the metadata".into(), source: KafkaError::Canceled })?
}

/// The partition count of `name` in `counts`, `None` when it is missing.
pub fn count_of(counts: &[(String, usize)], name: &str) -> Option<usize> {
    counts.iter().find(|(t, _)| t == name).map(|(_, n)| *n)
}

/// Creates those of `specs` that are missing, with `partitions` partitions,
/// then waits until the metadata shows every one of them. Returns each
/// spec's partition count, in `specs`' order (an existing topic keeps its
/// own count: compare them, creation never changes one).
///
/// # Errors
/// [`KafkaFailure::Kafka`] when the brokers cannot be reached or refuse a
/// topic; [`KafkaFailure::TopicsNotVisible`] when a topic does not show up
/// within `timeout`.
pub async fn ensure(
    conn: &Connection,
    specs: &[TopicSpec<'_>],
    partitions: i32,
    timeout: Duration,
) -> Result<Vec<usize>, KafkaFailure> {
    let existing = partition_counts(conn, timeout).await?;
    let missing: Vec<NewTopic<'_>> = specs
        .iter()
        .filter(|spec| count_of(&existing, spec.name).is_none())
        .map(|spec| {
            spec.configs
                .iter()
                .fold(NewTopic::new(spec.name, partitions, TopicReplication::Fixed(-1)), |t, (k, v)| t.set(k, v))
        })
        .collect();
    if !missing.is_empty() {
        let admin: AdminClient<DefaultClientContext> =
            conn.client_config().create().map_err(KafkaFailure::kafka("creating the admin client"))?;
        let opts = AdminOptions::new().operation_timeout(Some(timeout));
        let results = admin.create_topics(&missing, &opts).await.map_err(KafkaFailure::kafka("creating topics"))?;
        for r in results {
            match r {
                Ok(name) => tracing::info!(topic = %name, partitions, "Created the topic."),
                // Another replica of the service created it first.
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(KafkaFailure::Kafka {
                        what: format!("creating topic {name}"),
                        source: KafkaError::AdminOp(code),
                    });
                }
            }
        }
    }
    wait_visible(conn, specs, timeout).await
}

/// Polls the metadata until every spec's topic shows partitions.
async fn wait_visible(
    conn: &Connection,
    specs: &[TopicSpec<'_>],
    timeout: Duration,
) -> Result<Vec<usize>, KafkaFailure> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_error = None;
    loop {
        // A metadata request that fails is retried like one that finds no
        // topic yet; its error is kept for the report.
        match partition_counts(conn, Duration::from_secs(5).min(timeout)).await {
            Ok(counts) => {
                let found: Option<Vec<usize>> = specs.iter().map(|s| count_of(&counts, s.name)).collect();
                if let Some(found) = found {
                    return Ok(found);
                }
            }
            Err(e) => last_error = Some(e.to_string()),
        }
        if tokio::time::Instant::now() > deadline {
            let topics = specs.iter().map(|s| s.name).collect::<Vec<_>>().join(", ");
            return Err(KafkaFailure::TopicsNotVisible { topics, timeout_ms: timeout.as_millis(), last_error });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
