//! Why a Kafka operation failed, and whether trying again can help.

use rdkafka::error::KafkaError;

/// A failed Kafka operation of this crate.
#[derive(Debug, thiserror::Error)]
pub enum KafkaFailure {
    /// The broker could not be reached or refused: retry later.
    #[error("kafka error while {what}: {source}")]
    Kafka {
        /// What was being done.
        what: String,
        /// The client's error.
        #[source]
        source: KafkaError,
    },
    /// A topic that must exist does not.
    #[error("topic {0} does not exist")]
    NoTopic(String),
    /// Topics asked for did not show up in the metadata in time: retry later.
    #[error("topics {topics} did not appear in the metadata within {timeout_ms} ms{}", last(last_error))]
    TopicsNotVisible {
        /// The topics waited for, comma-separated.
        topics: String,
        /// How long was waited.
        timeout_ms: u128,
        /// The last metadata request's error, if one failed.
        last_error: Option<String>,
    },
    /// Reading a partition up to a cut made no progress for too long: retry later.
    #[error("reading {topic}/{partition} stalled at offset {at} before the cut at {end}{}", last(last_error))]
    Stalled {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The next offset expected.
        at: i64,
        /// The cut.
        end: i64,
        /// The client's last error during the read, if any (authorization,
        /// a deleted topic, an unreachable broker).
        last_error: Option<String>,
    },
}

/// ` (last client error: ...)` when there was one.
fn last(error: &Option<String>) -> String {
    error.as_deref().map(|e| format!(" (last client error: {e})")).unwrap_or_default()
}

impl KafkaFailure {
    /// A mapper from a client error to [`KafkaFailure::Kafka`] saying `what`
    /// was being done.
    pub fn kafka(what: impl Into<String>) -> impl FnOnce(KafkaError) -> Self {
        let what = what.into();
        move |source| KafkaFailure::Kafka { what, source }
    }
}
