//! What the handlers share.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rdkafka::producer::FutureProducer;
use tidemark_reload::Slot;
use tidemark_schemas::verify::Verifier;
use tokio::sync::watch;

use crate::QueryConfig;
use crate::catchup::Progress;
use crate::replay::Nonces;
use crate::store::Store;

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
}

/// Now, in milliseconds since the epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
