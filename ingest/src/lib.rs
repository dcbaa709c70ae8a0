//! Tidemark ingest: verifies DSSE-signed edit events received over HTTP and
//! produces them to Kafka keyed by patient.
//!
//! Key decision: a request is acknowledged only after Kafka acknowledged every
//! accepted record (acks=all, idempotent producer), so a 202 means durable.
//! Records of one request are enqueued in line order on one idempotent
//! producer (max 5 in flight), which keeps per-patient order.
//!
//! The front door is built for clients that do not play fair: every
//! connection has deadlines for its request head and its body, a request
//! holds memory only for the bytes that have arrived, one peer can hold only
//! so many connections, and the API speaks TLS (optionally mutual) unless an
//! operator says, for a non-loopback address, that something in front
//! terminates it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tidemark_schemas::Catalog;
use tokio_util::sync::CancellationToken;

mod body;
mod budget;
mod events;
pub mod metrics;
mod outcome;
mod refusal;
mod replay;
mod routes;
mod server;
mod state;
mod topics;
mod verify;
mod watch;

pub use metrics::IngestMetrics;
pub use refusal::Refusal;
pub use replay::{Claim, RecentIds, ReplayPolicy, fingerprint};
pub use routes::ROUTES;
pub use tidemark_schemas::lines::{MAX_BATCH_LINES, split_lines};

pub use tidemark_front::TlsFiles;
pub use tidemark_schemas::EDITS_TOPIC;

/// Everything the service needs.
#[derive(Clone)]
pub struct IngestConfig {
    /// How to reach Kafka (brokers, TLS/SASL and tuning options).
    pub kafka: tidemark_kafka::Connection,
    /// The key registry file (reloaded on SIGHUP and on change).
    pub keys: PathBuf,
    /// The record catalog.
    pub catalog: Catalog,
    /// The HTTP listen address.
    pub listen: SocketAddr,
    /// TLS for the API; `None` serves plaintext HTTP.
    pub tls: Option<TlsFiles>,
    /// Allows plaintext on a non-loopback address (TLS terminated in front).
    pub insecure_plaintext: bool,
    /// How long a client may take to send a request head (and to finish
    /// the TLS handshake) before its connection is closed.
    pub header_read_timeout: Duration,
    /// How long a client may take to send a request body before the request
    /// is refused with 408 and its connection closed.
    pub body_read_timeout: Duration,
    /// Connections one peer address may hold open; more are closed at once.
    pub max_connections_per_peer: usize,
    /// Connections held open at once, from all peers; more are closed at once
    /// (many addresses, e.g. one IPv6 network, cannot exhaust the process).
    pub max_connections: usize,
    /// Topic name prefix.
    pub topic_prefix: String,
    /// Partitions of the edit topic when it is created.
    pub partitions: i32,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Requests handled at once; more get 503.
    pub max_in_flight_requests: usize,
    /// Request bytes held at once; more get 503.
    pub max_in_flight_bytes: usize,
    /// How long shutdown may take.
    pub shutdown_grace: Duration,
    /// librdkafka's delivery timeout.
    pub produce_timeout: Duration,
    /// How long to wait for the broker at start.
    pub startup_timeout: Duration,
    /// Duplicate memory, age bound and audience.
    pub replay: ReplayPolicy,
    /// Metrics (registered by the caller).
    pub metrics: IngestMetrics,
    /// Called with the bound address once listening.
    pub on_listening: Option<Arc<dyn Fn(SocketAddr) + Send + Sync>>,
}

impl IngestConfig {
    /// The edit topic's full name.
    pub fn edits_topic(&self) -> String {
        format!("{}{EDITS_TOPIC}", self.topic_prefix)
    }
}

/// Why the service stopped.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Configuration is wrong: fix it, do not retry.
    #[error("configuration error (fix and restart): {0}")]
    Config(String),
    /// The broker could not be reached or refused: retry later.
    #[error("kafka error while {what} (retry later): {source}")]
    Kafka {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The broker was unreachable within the startup timeout: retry later.
    #[error("broker unreachable at {brokers} within {timeout_ms} ms (retry later)")]
    Unreachable {
        /// The bootstrap servers.
        brokers: String,
        /// The timeout.
        timeout_ms: u128,
    },
    /// A task of the service panicked or was cancelled: a bug; restart.
    #[error("a task stopped while {what}: {cause}")]
    Task {
        /// What the task was doing.
        what: String,
        /// The panic or cancellation.
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

impl IngestError {
    /// Whether a restart may help.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, IngestError::Config(_))
    }
}

/// Runs the service until `shutdown` is cancelled, then drains and returns.
///
/// # Errors
/// See [`IngestError`].
pub async fn run(config: IngestConfig, shutdown: CancellationToken) -> Result<(), IngestError> {
    config.replay.check().map_err(IngestError::Config)?;
    server::run(config, shutdown).await
}
