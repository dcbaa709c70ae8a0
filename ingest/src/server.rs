//! The HTTP service: start-up, shared state, routes, draining.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rdkafka::producer::{FutureProducer, Producer as _};
use tidemark_schemas::keys::KeyRegistry;
use tidemark_schemas::verify::Verifier;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::{IngestConfig, IngestError, IngestMetrics, events, topics, watch};

/// Every route with the statuses it can answer; the OpenAPI spec is checked
/// against this table.
pub const ROUTES: &[(&str, &str, &[u16])] = &[
    ("post", "/v1/events", &[202, 207, 400, 401, 413, 415, 422, 503]),
    ("get", "/healthz", &[200]),
    ("get", "/readyz", &[200, 503]),
];

pub(crate) const ROUTE_EVENTS: &str = "/v1/events";
/// Seconds a client should wait after a 503.
pub(crate) const RETRY_AFTER_S: &str = "1";

pub(crate) struct AppState {
    pub(crate) cfg: IngestConfig,
    pub(crate) topic: String,
    pub(crate) verifier: RwLock<Arc<Verifier>>,
    pub(crate) producer: RwLock<FutureProducer>,
    pub(crate) requests: Semaphore,
    pub(crate) bytes: Semaphore,
    pub(crate) broker_ok: AtomicBool,
    /// When Kafka last acknowledged a record (ms since the epoch; 0: never):
    /// proof that the broker is reachable that no probe can beat.
    pub(crate) last_ack_ms: AtomicU64,
    pub(crate) metrics: IngestMetrics,
}

pub(crate) async fn run(cfg: IngestConfig, shutdown: CancellationToken) -> Result<(), IngestError> {
    if cfg.partitions < 1 || cfg.max_in_flight_requests == 0 || cfg.max_body_bytes == 0 {
        return Err(IngestError::Config(
            "--partitions, --max-in-flight-requests and --max-body-bytes must be at least 1".into(),
        ));
    }
    if cfg.max_in_flight_bytes < cfg.max_body_bytes {
        return Err(IngestError::Config("--max-in-flight-bytes must be at least --max-body-bytes".into()));
    }
    let registry = load_registry(&cfg.keys)?;
    let producer: FutureProducer = producer_config(&cfg)
        .create()
        .map_err(|source| IngestError::Kafka { what: "creating the producer".into(), source })?;
    topics::ensure(&cfg, &producer).await?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| IngestError::Io { what: format!("binding {}", cfg.listen), source })?;
    let addr =
        listener.local_addr().map_err(|source| IngestError::Io { what: "reading the address".into(), source })?;
    let bytes_permits = cfg.max_in_flight_bytes.min(Semaphore::MAX_PERMITS);
    let state = Arc::new(AppState {
        topic: cfg.edits_topic(),
        verifier: RwLock::new(Arc::new(Verifier::new(registry))),
        producer: RwLock::new(producer.clone()),
        requests: Semaphore::new(cfg.max_in_flight_requests),
        bytes: Semaphore::new(bytes_permits),
        broker_ok: AtomicBool::new(true),
        last_ack_ms: AtomicU64::new(0),
        metrics: cfg.metrics.clone(),
        cfg: cfg.clone(),
    });
    let bg = CancellationToken::new();
    tokio::spawn(watch::watch_broker(state.clone(), bg.clone()));
    tokio::spawn(watch::watch_registry(state.clone(), bg.clone()));
    let app = Router::new()
        .route(ROUTE_EVENTS, post(events::post_events))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        // The events route enforces --max-body-bytes itself, after taking its permits.
        .layer(DefaultBodyLimit::disable())
        .with_state(state.clone());
    tracing::info!(%addr, topic = %state.topic, "ingest listening");
    if let Some(f) = &cfg.on_listening {
        f(addr);
    }
    let grace = cfg.shutdown_grace;
    let stop = shutdown.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await });
    let served = tokio::spawn(async move { server.await });
    // Drain: after the token, in-flight requests finish within the grace period.
    let result = tokio::select! {
        r = served => r,
        () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!("grace period over with requests still in flight");
            Ok(Ok(()))
        }
    };
    bg.cancel();
    let p = state.producer();
    let _ = tokio::task::spawn_blocking(move || p.flush(grace)).await;
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(IngestError::Io { what: "serving HTTP".into(), source }),
        Err(_) => Ok(()),
    }
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
        match self.verifier.read() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// The producer's settings. The partitioner (pinned so that a patient's
/// partition can be computed from its id by `tidemark state`, whatever
/// librdkafka's default becomes), batching and in-flight requests are
/// defaults an operator's `--kafka-option` overrides; acks, idempotence and
/// the produce timeout (`--produce-timeout`) are not: an acknowledgement to a
/// client must mean the event is durable, written once.
pub(crate) fn producer_config(cfg: &IngestConfig) -> rdkafka::ClientConfig {
    let mut pc = cfg.client_config_with(&[
        ("partitioner", "consistent_random"),
        ("max.in.flight.requests.per.connection", "5"),
        ("linger.ms", "2"),
    ]);
    pc.set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", cfg.produce_timeout.as_millis().to_string());
    pc
}

pub(crate) fn load_registry(path: &std::path::Path) -> Result<KeyRegistry, IngestError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| IngestError::Config(format!("reading key registry {}: {e}", path.display())))?;
    KeyRegistry::from_toml_str(&text)
        .map_err(|e| IngestError::Config(format!("loading key registry {}: {e}", path.display())))
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.broker_ok.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, RETRY_AFTER_S)], "broker unreachable").into_response()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tidemark_schemas::Catalog;

    use super::producer_config;
    use crate::{IngestConfig, IngestMetrics};

    fn config(options: &[(&str, &str)]) -> IngestConfig {
        IngestConfig {
            brokers: "127.0.0.1:9".into(),
            kafka_options: options.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            keys: "keys.toml".into(),
            catalog: Catalog::builtin().clone(),
            listen: "127.0.0.1:0".parse().expect("an address"),
            topic_prefix: String::new(),
            partitions: 1,
            max_body_bytes: 1,
            max_in_flight_requests: 1,
            max_in_flight_bytes: 1,
            shutdown_grace: Duration::from_secs(1),
            produce_timeout: Duration::from_secs(7),
            startup_timeout: Duration::from_secs(1),
            metrics: IngestMetrics::new(&mut prometheus_client::registry::Registry::default()),
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
