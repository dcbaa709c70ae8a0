//! Topic creation through the Kafka admin API (Tansu, or any real broker).

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;

use crate::Error;

/// How long [`TansuBroker::create_topic`](crate::TansuBroker::create_topic)
/// waits for the topic to be created and visible in metadata.
pub const DEFAULT_TOPIC_TIMEOUT: Duration = Duration::from_secs(15);

/// Creates `topic` with `partitions` partitions (replication factor 1) on the
/// broker at `bootstrap` through the admin API, then waits until metadata shows
/// every partition with a leader, so a producer started next finds it.
///
/// Not for [`MockBroker`](crate::MockBroker): librdkafka's mock cluster has no
/// admin API; use [`MockBroker::create_topic`](crate::MockBroker::create_topic).
///
/// # Errors
///
/// [`Error::Kafka`] if the client cannot be built or the broker refuses the
/// topic (it already exists, bad name), [`Error::Timeout`] if the broker does
/// not answer within `timeout`, [`Error::TopicNotVisible`] if metadata does not
/// show the partitions within `timeout`.
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32, timeout: Duration) -> Result<(), Error> {
    let started = Instant::now();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|source| Error::Kafka { what: format!("building an admin client for {bootstrap}"), source })?;
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().request_timeout(Some(timeout)).operation_timeout(Some(timeout));
    let what = || format!("creating topic {topic} ({partitions} partitions) on {bootstrap}");

    // librdkafka enforces request_timeout itself; the outer bound only guards
    // against a request that never resolves.
    let results = tokio::time::timeout(timeout + Duration::from_secs(1), admin.create_topics([&new_topic], &options))
        .await
        .map_err(|_| Error::Timeout { what: what(), after: timeout })?
        .map_err(|source| Error::Kafka { what: what(), source })?;
    for result in results {
        if let Err((_, code)) = result {
            return Err(Error::Kafka { what: what(), source: KafkaError::AdminOp(code) });
        }
    }

    let remaining = timeout.saturating_sub(started.elapsed());
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || wait_for_topic(&bootstrap, &topic, partitions, remaining)).await.map_err(
        |join| Error::Io {
            what: "waiting for topic metadata on a blocking thread".to_owned(),
            source: std::io::Error::other(join),
        },
    )?
}

/// Polls metadata until `topic` shows `partitions` partitions, each with a leader.
fn wait_for_topic(bootstrap: &str, topic: &str, partitions: i32, timeout: Duration) -> Result<(), Error> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|source| Error::Kafka { what: format!("building a metadata client for {bootstrap}"), source })?;
    let deadline = Instant::now() + timeout;
    let mut seen: String;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match consumer.fetch_metadata(Some(topic), left.min(Duration::from_secs(2))) {
            Ok(metadata) => {
                if let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) {
                    let with_leader = t.partitions().iter().filter(|p| p.leader() >= 0).count();
                    if t.error().is_none()
                        && t.partitions().len() == partitions as usize
                        && with_leader == t.partitions().len()
                    {
                        return Ok(());
                    }
                    seen = format!(
                        "{} partitions, {with_leader} with a leader, error {:?}",
                        t.partitions().len(),
                        t.error()
                    );
                } else {
                    seen = "topic missing from metadata".to_owned();
                }
            }
            Err(e) => seen = format!("metadata request failed: {e}"),
        }
        if Instant::now() >= deadline {
            return Err(Error::TopicNotVisible {
                bootstrap: bootstrap.to_owned(),
                topic: topic.to_owned(),
                expected: partitions,
                waited: timeout,
                seen,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
