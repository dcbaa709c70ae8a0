//! Tidemark query: reads patients back. Consumes the state topic into an
//! embedded store ([`store`], kept current by [`catchup`]) and answers
//! signed ([`tidemark_schemas::httpsig`]), audited ([`audit`]) reads of it:
//! one patient's view (optionally once it includes a given write), the
//! patients with open conflicts, and a feed of changes.
//!
//! Key decisions: every request is signed by a registered key holding the
//! `read` scope and bounded by its `patient_prefixes`; an out-of-scope
//! patient is answered 403 whether or not it exists, so a key learns
//! nothing of patients outside its scope. Every request, refused or not,
//! is written to the access-audit topic and acknowledged by Kafka before it
//! is answered: a read that cannot be audited is not served.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tidemark_front::TlsFiles;
use tidemark_schemas::Catalog;
use tokio_util::sync::CancellationToken;

pub mod audit;
mod auth;
pub mod catchup;
pub mod cursor;
mod feed;
pub mod metrics;
pub mod replay;
mod routes;
mod server;
mod state;
pub mod store;

pub use metrics::QueryMetrics;
pub use routes::ROUTES;

/// The access-audit topic's name (behind any `--topic-prefix`).
pub const AUDIT_TOPIC: &str = "tidemark.access-audit.v1";

/// Everything the service needs.
#[derive(Clone)]
pub struct QueryConfig {
    /// How to reach Kafka.
    pub kafka: tidemark_kafka::Connection,
    /// Topic name prefix.
    pub topic_prefix: String,
    /// The key registry file (reloaded on SIGHUP and on change).
    pub keys: PathBuf,
    /// The state keys the mergers seal views with.
    pub state_keys: PathBuf,
    /// More state key files (older keys, during a rotation).
    pub more_state_keys: Vec<PathBuf>,
    /// The record catalog (its identifier rules bound patient ids).
    pub catalog: Catalog,
    /// Where the store lives.
    pub data_dir: PathBuf,
    /// The HTTP listen address.
    pub listen: SocketAddr,
    /// TLS for the API; `None` serves plaintext HTTP.
    pub tls: Option<TlsFiles>,
    /// Allows plaintext on a non-loopback address (TLS terminated in front).
    pub insecure_plaintext: bool,
    /// Deadline of a TLS handshake and of each request head.
    pub header_read_timeout: Duration,
    /// Connections one peer address may hold open.
    pub max_connections_per_peer: usize,
    /// Connections held open at once, from all peers.
    pub max_connections: usize,
    /// How old a request's signature may be, and how far ahead of this
    /// clock.
    pub freshness: tidemark_schemas::httpsig::Freshness,
    /// Nonces remembered at once (one per request within the freshness window).
    pub max_nonces: usize,
    /// The longest a read-your-writes request (`?after=`) waits.
    pub max_wait: Duration,
    /// The longest one change-feed connection stays open.
    pub max_feed: Duration,
    /// How long Kafka may take to acknowledge an audit record.
    pub audit_timeout: Duration,
    /// Partitions of the audit topic when it is created.
    pub audit_partitions: i32,
    /// How long to wait for the broker at start.
    pub startup_timeout: Duration,
    /// How long draining may take at shutdown.
    pub shutdown_grace: Duration,
    /// Metrics (registered by the caller).
    pub metrics: QueryMetrics,
    /// Called with the bound address once listening.
    pub on_listening: Option<Arc<dyn Fn(SocketAddr) + Send + Sync>>,
}

/// Why the service stopped.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Configuration is wrong: fix it, do not retry.
    #[error("configuration error (fix and restart): {0}")]
    Config(String),
    /// The broker failed or could not be reached: retry later.
    #[error("kafka error (retry later): {0}")]
    Kafka(#[from] tidemark_kafka::KafkaFailure),
    /// Catching up from the state topic failed.
    #[error("catching up from the state topic: {0}")]
    Catchup(#[from] catchup::CatchupError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// A task panicked: a bug; restart.
    #[error("a task stopped while {what}: {cause}")]
    Task {
        /// What the task was doing.
        what: String,
        /// The panic.
        cause: String,
    },
    /// I/O (listener) error.
    #[error("i/o error while {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl QueryError {
    /// Whether the operator must change something before a restart can
    /// help: the configuration, or the state keys the service was given.
    pub fn is_config_error(&self) -> bool {
        matches!(self, QueryError::Config(_) | QueryError::Catchup(catchup::CatchupError::UnknownStateKey { .. }))
    }
}

/// Runs the service until `shutdown` is cancelled, then drains and returns.
///
/// # Errors
/// See [`QueryError`].
pub async fn run(config: QueryConfig, shutdown: CancellationToken) -> Result<(), QueryError> {
    server::run(config, shutdown).await
}
