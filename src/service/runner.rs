//! The one way a service subcommand runs: logs, a runtime, the root shutdown
//! token, the metrics endpoint, the service itself, and one mapping of how it
//! stopped to an exit code.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context as _;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use super::{metrics_server, shutdown, telemetry};
use crate::outcome::Outcome;

/// How a service's error is classified, once for every service: a
/// configuration error (wrong flags, topics that cannot work) needs an
/// operator and exits with the usage code (2) and the error printed; any
/// other error is a runtime failure that a restart may cure (the broker
/// came back), logged, exit code 3.
pub trait ServiceError: std::error::Error + Send + Sync + 'static {
    /// Whether the operator must change something before a restart can help.
    fn is_config_error(&self) -> bool;
}

impl ServiceError for tidemark_ingest::IngestError {
    fn is_config_error(&self) -> bool {
        matches!(self, tidemark_ingest::IngestError::Config(_))
    }
}

impl ServiceError for tidemark_merger::worker::WorkerError {
    fn is_config_error(&self) -> bool {
        matches!(self, tidemark_merger::worker::WorkerError::CoPartitioning { .. })
    }
}

impl ServiceError for tidemark_query::QueryError {
    fn is_config_error(&self) -> bool {
        self.is_config_error()
    }
}

impl ServiceError for tidemark_archiver::snapshot::SnapshotError {
    fn is_config_error(&self) -> bool {
        matches!(self, tidemark_archiver::snapshot::SnapshotError::Config(_))
    }
}

/// Runs a service to its end: starts logs in `log_format`, a multi-threaded
/// runtime, the root shutdown token (SIGTERM, SIGINT), and the metrics
/// endpoint on `metrics_listen` with the metrics `register` makes; then
/// `service(metrics, metrics_address, shutdown)`, with `health` (if any)
/// served at `/healthz` beside the metrics. When the service returns,
/// everything else is stopped and its result becomes the [`Outcome`].
///
/// # Errors
/// The runtime or the metrics listener cannot start, or the service stopped
/// on a configuration error.
pub fn run<M, E, Fut>(
    name: &'static str,
    log_format: telemetry::LogFormat,
    metrics_listen: SocketAddr,
    register: impl FnOnce(&mut Registry) -> M,
    health: Option<metrics_server::HealthCheck>,
    service: impl FnOnce(M, SocketAddr, CancellationToken) -> Fut,
) -> anyhow::Result<Outcome>
where
    E: ServiceError,
    Fut: Future<Output = Result<(), E>>,
{
    telemetry::init(log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async move {
        let shutdown = shutdown::on_signals();
        let mut registry = Registry::default();
        let metrics = register(&mut registry);
        let (addr, server) = metrics_server::serve(metrics_listen, registry, health, shutdown.clone()).await?;
        tracing::info!(service = name, metrics = %addr, "The metrics endpoint is listening.");
        let result = service(metrics, addr, shutdown.clone()).await;
        shutdown.cancel();
        if let Err(join) = server.await {
            tracing::warn!(error = %join, "The metrics endpoint stopped abnormally.");
        }
        match result {
            Ok(()) => Ok(Outcome::Ok),
            Err(e) if e.is_config_error() => Err(e.into()),
            Err(e) => {
                tracing::error!(service = name, error = %e, "The service stopped on a runtime failure; a restart may help.");
                Ok(Outcome::ServiceFailed)
            }
        }
    })
}
