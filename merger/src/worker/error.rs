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
         every edit topic, the changelog and the state topic must have exactly as many partitions as the region's \
         own edit topic"
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
    /// The group handed this worker partition p of some edit topics but not
    /// of others: folding it would split a patient's edits between two
    /// workers, each writing a view without the other's. A configuration
    /// error (replicas of one group with different `--edits-topic` lists),
    /// unless the group's leader briefly lacked a topic's metadata: the
    /// worker exits 3 and its restart rejoins the group.
    #[error(
        "partition {partition} of edit topic(s) {held} was assigned without partition {partition} of {missing}: \
         every merger of the group must read the same --edits-topic list, with the range assignment strategy"
    )]
    SplitAssignment {
        /// The partition.
        partition: i32,
        /// The edit topics whose partition this worker holds.
        held: String,
        /// Those whose partition it was not given.
        missing: String,
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
