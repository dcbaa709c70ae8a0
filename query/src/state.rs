//! What the handlers share.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rdkafka::producer::FutureProducer;
use tidemark_reload::Slot;
use tidemark_schemas::verify::Verifier;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::QueryConfig;
use crate::catchup::Progress;
use crate::replay::Nonces;
use crate::store::{Store, StoreError};

/// The state every handler holds an `Arc` of.
pub(crate) struct AppState {
    /// The configuration.
    pub(crate) cfg: QueryConfig,
    /// The store.
    pub(crate) store: Arc<Store>,
    /// The key registry (replaced when it reloads).
    pub(crate) verifier: Arc<Slot<Verifier>>,
    /// Nonces of fresh signatures.
    pub(crate) nonces: Nonces,
    /// The audit producer.
    pub(crate) audit: FutureProducer,
    /// The audit topic's full name.
    pub(crate) audit_topic: String,
    /// The catch-up loop's progress: wakes read-your-writes and the feed.
    pub(crate) progress: watch::Receiver<Progress>,
    /// The service's shutdown: open feeds end with it.
    pub(crate) stop: CancellationToken,
}

impl AppState {
    /// Runs a store read on the blocking pool: redb reads are file reads,
    /// and a scan must not hold a runtime worker.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || f(&store)).await.unwrap_or_else(|join| Err(StoreError::task(&join)))
    }
}

/// Now, in milliseconds since the epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
