//! Why a worker stopped. Every variant says whether a restart can help.

use rdkafka::error::KafkaError;

/// A worker failure. Poison events are not errors (they are dead-lettered);
/// these stop the worker, and the process exits non-zero so its supervisor
/// restarts it from the committed offsets.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The broker could not be reached or refused an operation; retry later.
    #[error("{what}: {source}")]
    Kafka {
        /// What we were doing.
        what: String,
        /// The client's error.
        #[source]
        source: KafkaError,
    },
    /// The topics are not co-partitioned; fix the topics, a restart will not help.
    #[error(
        "topics are not co-partitioned: {edits} has {edits_partitions} partitions but {other} has {other_partitions}; \
         the changelog and state topics must have exactly as many partitions as the edit topic"
    )]
    CoPartitioning {
        /// The edit topic.
        edits: String,
        /// Its partitions.
        edits_partitions: usize,
        /// The mismatched topic.
        other: String,
        /// Its partitions.
        other_partitions: usize,
    },
    /// A changelog record does not decode: a broken invariant; stop and investigate.
    #[error("changelog {topic}/{partition} offset {offset} does not hold a patient document: {cause}")]
    CorruptChangelog {
        /// The changelog topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The record's offset.
        offset: i64,
        /// What was wrong.
        cause: String,
    },
    /// A changelog record is not the mergers': restoring from it would trust
    /// whatever its producer wrote. Stop and investigate: a forged record, a
    /// state key missing from `--state-key`, or (first start after an
    /// upgrade) records written before authentication.
    #[error(
        "changelog {topic}/{partition} offset {offset} is not authentic: {failure}; if this is the first start \
         after upgrading to authenticated state records, start once with --trust-unsealed-changelog; after a key \
         rotation, give the previous key too (--state-key NEW --state-key OLD)"
    )]
    UnauthenticatedChangelog {
        /// The changelog topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The record's offset.
        offset: i64,
        /// What the MAC check found.
        failure: tidemark_seal::MacFailure,
    },
    /// A Kafka operation of the shared plumbing failed (reaching the
    /// brokers, creating topics, reading the changelog, which includes a
    /// restore that stalled); retry later.
    #[error(transparent)]
    Plumbing(#[from] tidemark_kafka::KafkaFailure),
    /// A produce was not acknowledged; the batch's offsets were not committed.
    #[error("producing to {topic} failed: {source}; offsets of the batch were not committed")]
    Produce {
        /// The topic.
        topic: String,
        /// The client's error.
        #[source]
        source: KafkaError,
    },
}

impl WorkerError {
    pub(crate) fn kafka(what: impl Into<String>) -> impl FnOnce(KafkaError) -> Self {
        let what = what.into();
        move |source| WorkerError::Kafka { what, source }
    }
}
