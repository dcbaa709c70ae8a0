//! What the request handlers and the background watchers share: the
//! configuration, the current verifier and producer (each replaced at run
//! time), the in-flight bounds and the broker's reachability.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use rdkafka::producer::FutureProducer;
use tidemark_reload::Slot;
use tidemark_schemas::keys::KeyRegistry;
use tidemark_schemas::verify::Verifier;
use tokio::sync::Semaphore;

use crate::replay::RecentIds;
use crate::{IngestConfig, IngestError, IngestMetrics};

/// The state every handler and watcher holds an `Arc` of.
pub(crate) struct AppState {
    /// The service's configuration.
    pub(crate) cfg: IngestConfig,
    /// The edit topic's full name.
    pub(crate) topic: String,
    /// Checks envelopes; replaced when the key registry reloads.
    pub(crate) verifier: Arc<Slot<Verifier>>,
    /// Produces accepted events; replaced by the broker watcher after an outage.
    pub(crate) producer: RwLock<FutureProducer>,
    /// One permit per request in flight (`--max-in-flight-requests`).
    pub(crate) requests: Semaphore,
    /// One permit per byte that requests hold until they are answered:
    /// their bodies and what checking them keeps (`--max-in-flight-bytes`;
    /// see [`crate::budget`]).
    pub(crate) bytes: Arc<Semaphore>,
    /// The permits `bytes` was made with: what one request may hold at most.
    pub(crate) bytes_bound: usize,
    /// One slot per core for signature checks on the blocking pool, so that
    /// verification never takes more than the machine's cores.
    pub(crate) verify_slots: Arc<Semaphore>,
    /// The broker watcher's last verdict, for `/readyz` and fast 503s.
    pub(crate) broker_ok: AtomicBool,
    /// When Kafka last acknowledged a record (ms since the epoch; 0: never):
    /// proof that the broker is reachable that no probe can beat.
    pub(crate) last_ack_ms: AtomicU64,
    /// Event ids accepted recently, so that a replayed envelope is not
    /// written again.
    pub(crate) recent_ids: RecentIds,
    /// The service's metrics.
    pub(crate) metrics: IngestMetrics,
}

impl AppState {
    /// The current producer (replaced by the broker watcher after an outage).
    pub(crate) fn producer(&self) -> FutureProducer {
        match self.producer.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The current verifier (replaced when the key registry reloads).
    pub(crate) fn verifier(&self) -> Arc<Verifier> {
        self.verifier.get()
    }
}

/// The producer's settings. The partitioner (pinned so that a patient's
/// partition can be computed from its id by `tidemark state`, whatever
/// librdkafka's default becomes), batching and in-flight requests are
/// defaults an operator's `--kafka-option` overrides; acks, idempotence and
/// the produce timeout (`--produce-timeout`) are not: an acknowledgement to a
/// client must mean the event is durable, written once.
pub(crate) fn producer_config(cfg: &IngestConfig) -> rdkafka::ClientConfig {
    cfg.kafka.durable_producer(
        &[("partitioner", "consistent_random"), ("max.in.flight.requests.per.connection", "5"), ("linger.ms", "2")],
        Some(cfg.produce_timeout),
    )
}

/// Reads and parses the key registry at `path`.
pub(crate) fn load_registry(path: &std::path::Path) -> Result<KeyRegistry, IngestError> {
    tidemark_reload::load_registry(path).map_err(|e| IngestError::Config(e.to_string()))
}

/// The wall clock in milliseconds since the Unix epoch (0 before it, the
/// maximum past `u64`'s range): the receive time of events and acknowledgements.
pub(crate) fn now_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tidemark_schemas::Catalog;

    use super::producer_config;
    use crate::{IngestConfig, IngestMetrics};

    fn config(options: &[(&str, &str)]) -> IngestConfig {
        IngestConfig {
            kafka: tidemark_kafka::Connection::new(
                "127.0.0.1:9",
                options.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            ),
            keys: "keys.toml".into(),
            catalog: Catalog::builtin().clone(),
            listen: "127.0.0.1:0".parse().expect("an address"),
            tls: None,
            insecure_plaintext: false,
            header_read_timeout: Duration::from_secs(1),
            body_read_timeout: Duration::from_secs(1),
            max_connections_per_peer: 1,
            max_connections: 1,
            topic_prefix: String::new(),
            partitions: 1,
            max_body_bytes: 1,
            max_in_flight_requests: 1,
            max_in_flight_bytes: 1,
            shutdown_grace: Duration::from_secs(1),
            produce_timeout: Duration::from_secs(7),
            startup_timeout: Duration::from_secs(1),
            replay: crate::ReplayPolicy::default(),
            metrics: IngestMetrics::register(&mut prometheus_client::registry::Registry::default()),
            on_listening: None,
        }
    }

    #[test]
    fn producer_defaults_hold_without_options() {
        let c = producer_config(&config(&[]));
        assert_eq!(c.get("partitioner"), Some("consistent_random"));
        assert_eq!(c.get("linger.ms"), Some("2"));
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("message.timeout.ms"), Some("7000"));
    }

    #[test]
    fn an_operator_option_overrides_a_tunable_but_not_durability() {
        let opts = [("linger.ms", "0"), ("partitioner", "murmur2_random"), ("acks", "1"), ("message.timeout.ms", "1")];
        let c = producer_config(&config(&opts));
        assert_eq!(c.get("linger.ms"), Some("0"));
        assert_eq!(c.get("partitioner"), Some("murmur2_random"));
        assert_eq!(c.get("acks"), Some("all"), "an acknowledgement to a client means durable");
        assert_eq!(c.get("message.timeout.ms"), Some("7000"), "--produce-timeout is the flag for it");
    }
}
