//! Start-up and draining: checks the configuration, opens the store, starts
//! catching up, reaches Kafka for the audit topic, binds the listener,
//! serves until shutdown, then lets requests in flight finish.

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use rdkafka::producer::{FutureProducer, Producer as _};
use tidemark_front::{Front, Peers, Tls};
use tidemark_kafka::topics::{self, TopicSpec};
use tidemark_reload::{POLL_INTERVAL, Slot};
use tidemark_schemas::verify::Verifier;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::catchup::{self, Progress};
use crate::replay::Nonces;
use crate::routes::{self, ROUTE_CHANGES, ROUTE_CONFLICTS, ROUTE_PATIENT};
use crate::state::AppState;
use crate::store::Store;
use crate::{AUDIT_TOPIC, QueryConfig, QueryError, feed};

pub(crate) async fn run(cfg: QueryConfig, shutdown: CancellationToken) -> Result<(), QueryError> {
    check(&cfg)?;
    let tls = match &cfg.tls {
        Some(files) => Some(Arc::new(Tls::load(files.clone()).map_err(|e| QueryError::Config(format!("TLS: {e}")))?)),
        None => None,
    };
    let registry = tidemark_reload::load_registry(&cfg.keys).map_err(|e| QueryError::Config(e.to_string()))?;
    let key_files: Vec<_> =
        std::iter::once(cfg.state_keys.clone()).chain(cfg.more_state_keys.iter().cloned()).collect();
    let state_keys =
        tidemark_seal::load_state_keys(&key_files).map_err(|e| QueryError::Config(format!("--state-key: {e}")))?;
    let store = Arc::new(Store::open(&cfg.data_dir)?);
    // Bound before anything runs beside it, so a port in use fails fast.
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| QueryError::Io { what: format!("binding {}", cfg.listen), source })?;
    let addr = listener.local_addr().map_err(|source| QueryError::Io { what: "reading the address".into(), source })?;
    let audit_topic = format!("{}{AUDIT_TOPIC}", cfg.topic_prefix);
    let spec = TopicSpec { name: &audit_topic, configs: &[] };
    topics::ensure(&cfg.kafka, &[spec], cfg.audit_partitions, cfg.startup_timeout).await?;
    let audit: FutureProducer = cfg
        .kafka
        // A millisecond of linger gathers the records of concurrent reads
        // into one produce request: at thousands of reads a second, a request
        // each would be the broker's load, for no latency worth having.
        .durable_producer(&[("linger.ms", "1")], Some(cfg.audit_timeout))
        .create()
        .map_err(tidemark_kafka::KafkaFailure::kafka("creating the audit producer"))?;
    // The producer learns the audit topic's leaders now, not on the first
    // read (measured: the first reads after a start waited ~0.5 s for it).
    let warm = audit.clone();
    let (topic, timeout) = (audit_topic.clone(), cfg.startup_timeout);
    tokio::task::spawn_blocking(move || warm.client().fetch_metadata(Some(&topic), timeout))
        .await
        .map_err(|join| QueryError::Task {
            what: "reading the audit topic's metadata".into(),
            cause: join.to_string(),
        })?
        .map_err(tidemark_kafka::KafkaFailure::kafka("reading the audit topic's metadata"))?;

    // Catching up runs on its own thread (librdkafka's poll blocks).
    let (tx, progress) = watch::channel(Progress::default());
    let bg = CancellationToken::new();
    // Whatever way this function returns, the background work stops.
    let _stop_background = bg.clone().drop_guard();
    let state_topic = format!("{}{}", cfg.topic_prefix, tidemark_schemas::STATE_TOPIC);
    let catchup = {
        let (conn, store, metrics, stop) = (cfg.kafka.clone(), store.clone(), cfg.metrics.clone(), bg.clone());
        let reading = tokio::task::spawn_blocking(move || {
            catchup::run(&conn, &state_topic, &store, &state_keys, &metrics, &tx, &stop)
        });
        // Catching up ending any way but at shutdown (an error, a panic)
        // stops the service: it must not serve views that no longer move.
        let (shutdown, bg) = (shutdown.clone(), bg.clone());
        tokio::spawn(async move {
            let ended = reading.await;
            if !bg.is_cancelled() {
                tracing::error!("Catching up from the state topic stopped; the service stops.");
                shutdown.cancel();
            }
            ended
        })
    };
    let verifier = Arc::new(Slot::new(Verifier::new(registry)));
    let state = Arc::new(AppState {
        stop: shutdown.clone(),
        store,
        verifier: verifier.clone(),
        nonces: Nonces::new(cfg.max_nonces),
        audit: audit.clone(),
        audit_topic,
        progress: progress.clone(),
        cfg: cfg.clone(),
    });
    let mut watchers = tokio::task::JoinSet::new();
    let (path, reloads) = (cfg.keys.clone(), cfg.metrics.registry_reloads.clone());
    watchers.spawn(tidemark_reload::watch_registry(path, POLL_INTERVAL, verifier, reloads, bg.clone()));
    if let Some(tls) = &tls {
        watchers.spawn(tidemark_front::watch_tls(tls.clone(), cfg.metrics.tls_reloads.clone(), bg.clone()));
    }
    let caught_up = cfg.metrics.caught_up.clone();
    let mut ready = progress.clone();
    watchers.spawn(async move {
        while ready.changed().await.is_ok() {
            caught_up.set(i64::from(ready.borrow().caught_up));
        }
    });

    let app = Router::new()
        .route(ROUTE_PATIENT, get(routes::patient))
        .route(ROUTE_CONFLICTS, get(routes::conflicts))
        .route(ROUTE_CHANGES, get(feed::changes))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(routes::readyz))
        .with_state(state);
    tracing::info!(%addr, tls = tls.is_some(), "query listening");
    if let Some(f) = &cfg.on_listening {
        f(addr);
    }
    let front = Front {
        app,
        tls,
        peers: Peers::new(cfg.max_connections_per_peer),
        max_connections: cfg.max_connections,
        header_read_timeout: cfg.header_read_timeout,
        refused: cfg.metrics.connections_refused.clone(),
    };
    let served = tokio::spawn(tidemark_front::serve(listener, front, shutdown.clone()));
    let grace = cfg.shutdown_grace;
    let result = tokio::select! {
        r = served => r,
        () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!("grace period over with requests still in flight");
            Ok(())
        }
    };
    bg.cancel();
    watchers.shutdown().await;
    let _ = tokio::task::spawn_blocking(move || audit.flush(grace)).await;
    match catchup.await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => return Err(e.into()),
        Ok(Err(join)) | Err(join) => {
            return Err(QueryError::Task { what: "catching up".into(), cause: join.to_string() });
        }
    }
    result.map_err(|join| QueryError::Task { what: "serving HTTP".into(), cause: join.to_string() })
}

/// Refuses a configuration that cannot work or would be unsafe, naming the
/// flag to change.
fn check(cfg: &QueryConfig) -> Result<(), QueryError> {
    if cfg.max_connections_per_peer == 0 || cfg.max_connections == 0 || cfg.max_nonces == 0 {
        return Err(QueryError::Config(
            "--max-connections-per-peer, --max-connections and --max-nonces must be at least 1".into(),
        ));
    }
    if cfg.header_read_timeout.is_zero() || cfg.freshness.max_age_s == 0 {
        return Err(QueryError::Config("--header-read-timeout-ms and --max-signature-age-s must be at least 1".into()));
    }
    if cfg.max_wait.is_zero() || cfg.max_feed.is_zero() || cfg.audit_timeout.is_zero() || cfg.audit_partitions < 1 {
        return Err(QueryError::Config(
            "--max-wait-ms, --max-feed-ms, --audit-timeout-ms and --audit-partitions must be at least 1".into(),
        ));
    }
    tidemark_front::check_plaintext("query", cfg.listen, cfg.tls.is_some(), cfg.insecure_plaintext)
        .map_err(QueryError::Config)
}
