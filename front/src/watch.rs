//! Reloading the TLS files while the service runs.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tidemark_reload::{POLL_INTERVAL, ReloadLabels, watch_files};
use tokio_util::sync::CancellationToken;

use crate::tls::Tls;

/// Reloads the TLS certificate, key and client CA the way the key registry
/// reloads: a renewed certificate is served to every new connection without
/// a restart. Files that do not load (a key that does not match the new
/// certificate, a half-written file) are logged and counted in `reloads`
/// (`result="failed"`); the previous certificate stays, and the next change
/// (the rest of the renewal) is tried again. Returns once `stop` is
/// cancelled.
pub async fn watch_tls(tls: Arc<Tls>, reloads: Family<ReloadLabels, Counter>, stop: CancellationToken) {
    let files = &tls.files;
    let paths = [Some(&files.cert), Some(&files.key), files.client_ca.as_ref()].into_iter().flatten().cloned();
    watch_files(paths.collect(), POLL_INTERVAL, stop, |by_signal| match tls.reload() {
        Ok(()) => {
            reloads.get_or_create(&ReloadLabels::OK).inc();
            tracing::info!(by_signal, "TLS certificate reloaded");
        }
        Err(e) => {
            reloads.get_or_create(&ReloadLabels::FAILED).inc();
            tracing::error!(error = %e, "TLS certificate reload failed; keeping the previous one");
        }
    })
    .await;
}
