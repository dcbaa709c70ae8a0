//! Errors from starting, driving and stopping the test brokers.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use rdkafka::error::KafkaError;

/// Why a test broker could not be started, driven or stopped.
///
/// A test that gets one of these should fail and print it: every variant says
/// what was being done, and the broker variants carry the tail of the broker's
/// log. Only [`Error::Exited`] during the first start is worth retrying, and
/// [`TansuBroker::start`](crate::TansuBroker::start) already does that itself.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Tansu binary is not where we looked. Stop: build it once with
    /// `scripts/tansu install`, or point `TIDEMARK_TANSU` at a binary.
    #[error(
        "no Tansu binary at {}: run `scripts/tansu install` (or set TIDEMARK_TANSU to a tansu binary)",
        path.display()
    )]
    TansuNotInstalled {
        /// Where the binary was expected.
        path: PathBuf,
    },

    /// A local file operation failed (temporary directory, log file, port probe).
    #[error("{what}")]
    Io {
        /// What we were doing, naming the path.
        what: String,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },

    /// The broker process could not be spawned.
    #[error("could not spawn {}", binary.display())]
    Spawn {
        /// The binary we tried to run.
        binary: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },

    /// The broker process exited while we waited for it to answer.
    #[error("the broker on {bootstrap} exited during startup ({status}); log tail:\n{log_tail}")]
    Exited {
        /// The address it was meant to listen on.
        bootstrap: String,
        /// How it exited.
        status: ExitStatus,
        /// The last lines of its log.
        log_tail: String,
    },

    /// The broker did not answer a metadata request in time.
    #[error(
        "the broker on {bootstrap} did not answer a metadata request within {waited:?} \
         (last attempt: {last_attempt}); log tail:\n{log_tail}"
    )]
    NotReady {
        /// The address it was meant to listen on.
        bootstrap: String,
        /// How long we waited.
        waited: Duration,
        /// What the last readiness probe saw.
        last_attempt: String,
        /// The last lines of its log.
        log_tail: String,
    },

    /// An rdkafka client could not be built or a Kafka request failed.
    #[error("{what}")]
    Kafka {
        /// What we were doing, naming the broker and topic.
        what: String,
        /// librdkafka's reason.
        #[source]
        source: KafkaError,
    },

    /// A topic was created but metadata did not show it with the expected
    /// partitions in time.
    #[error(
        "topic {topic} on {bootstrap} was created but metadata did not show {expected} \
         partitions with leaders within {waited:?} (last seen: {seen})"
    )]
    TopicNotVisible {
        /// The broker's bootstrap address.
        bootstrap: String,
        /// The topic.
        topic: String,
        /// The partition count asked for.
        expected: i32,
        /// How long we waited.
        waited: Duration,
        /// What the last metadata response said.
        seen: String,
    },

    /// A request did not complete in time.
    #[error("{what} did not complete within {after:?}")]
    Timeout {
        /// What we were doing.
        what: String,
        /// How long we waited.
        after: Duration,
    },

    /// The thread owning a mock cluster is gone (it panicked). Stop: this is a
    /// bug in the test or in librdkafka's mock.
    #[error("the mock cluster's thread is gone")]
    MockThreadGone,
}
