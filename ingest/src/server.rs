//! Start-up and draining: checks the configuration, reaches Kafka, binds
//! the listener, serves until shutdown, then lets requests in flight finish
//! within the grace period and flushes the producer.
//! The front door (TLS, connection caps, deadlines, the loopback rule for
//! plaintext) is [`tidemark_front`]'s, shared with the query service.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rdkafka::producer::{FutureProducer, Producer as _};
use tidemark_front::{Front, Peers, Tls};
use tidemark_reload::Slot;
use tidemark_schemas::verify::Verifier;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::budget::BOUND_PER_BODY;
use crate::replay::RecentIds;
use crate::routes::{RETRY_AFTER_S, ROUTE_EVENTS};
use crate::state::{AppState, load_registry, producer_config};
use crate::{IngestConfig, IngestError, events, topics, watch};

pub(crate) async fn run(cfg: IngestConfig, shutdown: CancellationToken) -> Result<(), IngestError> {
    check(&cfg)?;
    let tls = match &cfg.tls {
        Some(files) => Some(Arc::new(Tls::load(files.clone()).map_err(|e| IngestError::Config(format!("TLS: {e}")))?)),
        None => None,
    };
    let registry = load_registry(&cfg.keys)?;
    let producer: FutureProducer = producer_config(&cfg)
        .create()
        .map_err(|source| IngestError::Kafka { what: "creating the producer".into(), source })?;
    topics::ensure(&cfg).await?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| IngestError::Io { what: format!("binding {}", cfg.listen), source })?;
    let addr =
        listener.local_addr().map_err(|source| IngestError::Io { what: "reading the address".into(), source })?;
    let bytes_permits = cfg.max_in_flight_bytes.min(Semaphore::MAX_PERMITS);
    let state = Arc::new(AppState {
        topic: cfg.edits_topic(),
        verifier: Arc::new(Slot::new(Verifier::new(registry))),
        producer: RwLock::new(producer.clone()),
        requests: Semaphore::new(cfg.max_in_flight_requests),
        bytes: Arc::new(Semaphore::new(bytes_permits)),
        bytes_bound: bytes_permits,
        verify_slots: Arc::new(Semaphore::new(std::thread::available_parallelism().map_or(1, std::num::NonZero::get))),
        broker_ok: AtomicBool::new(true),
        last_ack_ms: AtomicU64::new(0),
        recent_ids: RecentIds::new(cfg.replay.dedup_window, cfg.replay.dedup_capacity),
        metrics: cfg.metrics.clone(),
        cfg: cfg.clone(),
    });
    let bg = CancellationToken::new();
    let watchers = supervise_watchers(&state, tls.as_ref(), &bg, &shutdown);
    let app = Router::new()
        .route(ROUTE_EVENTS, post(events::post_events))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        // The events route enforces --max-body-bytes itself, as the bytes arrive.
        .layer(DefaultBodyLimit::disable())
        .with_state(state.clone());
    tracing::info!(%addr, topic = %state.topic, tls = tls.is_some(), "ingest listening");
    if let Some(f) = &cfg.on_listening {
        f(addr);
    }
    let grace = cfg.shutdown_grace;
    let front = Front {
        app,
        tls,
        peers: Peers::new(cfg.max_connections_per_peer),
        max_connections: cfg.max_connections,
        header_read_timeout: cfg.header_read_timeout,
        refused: cfg.metrics.connections_refused.clone(),
    };
    let served = tokio::spawn(tidemark_front::serve(listener, front, shutdown.clone()));
    // Drain: after the token, in-flight requests finish within the grace period.
    let result = tokio::select! {
        r = served => r,
        () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!("grace period over with requests still in flight");
            Ok(())
        }
    };
    bg.cancel();
    let p = state.producer();
    let _ = tokio::task::spawn_blocking(move || p.flush(grace)).await;
    if let Ok(Some(cause)) = watchers.await {
        return Err(IngestError::Task { what: "watching the broker and the key registry".into(), cause });
    }
    match result {
        Ok(()) => Ok(()),
        // A panic in the server task is a bug: the process must not exit 0
        // as if it had drained, so the supervisor sees a failure.
        Err(join) => Err(IngestError::Task { what: "serving HTTP".into(), cause: join.to_string() }),
    }
}

/// Refuses a configuration that cannot work or would be unsafe, naming the
/// flag to change.
fn check(cfg: &IngestConfig) -> Result<(), IngestError> {
    if cfg.partitions < 1 || cfg.max_in_flight_requests == 0 || cfg.max_body_bytes == 0 {
        return Err(IngestError::Config(
            "--partitions, --max-in-flight-requests and --max-body-bytes must be at least 1".into(),
        ));
    }
    if cfg.max_in_flight_bytes / BOUND_PER_BODY < cfg.max_body_bytes {
        return Err(IngestError::Config(format!(
            "--max-in-flight-bytes must be at least {BOUND_PER_BODY} times --max-body-bytes: a request holds its \
             body and what checking it keeps, and a request that can never fit would be refused whatever the load"
        )));
    }
    if cfg.max_connections_per_peer == 0 || cfg.max_connections == 0 {
        return Err(IngestError::Config("--max-connections-per-peer and --max-connections must be at least 1".into()));
    }
    if cfg.header_read_timeout.is_zero() || cfg.body_read_timeout.is_zero() {
        return Err(IngestError::Config(
            "--header-read-timeout-ms and --body-read-timeout-ms must be at least 1".into(),
        ));
    }
    tidemark_front::check_plaintext("ingest", cfg.listen, cfg.tls.is_some(), cfg.insecure_plaintext)
        .map_err(IngestError::Config)?;
    Ok(())
}

/// Starts the broker, key-registry and TLS watchers, and a supervisor that
/// resolves to the first watcher's panic, if any. A watcher only returns
/// once `bg` is cancelled, so one that ends before is a bug: the service
/// must not go on with a stale readiness flag or an unreloadable registry,
/// so the supervisor stops it through `shutdown`.
fn supervise_watchers(
    state: &Arc<AppState>,
    tls: Option<&Arc<Tls>>,
    bg: &CancellationToken,
    shutdown: &CancellationToken,
) -> tokio::task::JoinHandle<Option<String>> {
    let mut watchers = tokio::task::JoinSet::new();
    watchers.spawn(watch::watch_broker(state.clone(), bg.clone()));
    watchers.spawn(watch::watch_registry(state.clone(), bg.clone()));
    if let Some(tls) = tls {
        watchers.spawn(watch::watch_tls(state.clone(), tls.clone(), bg.clone()));
    }
    let (shutdown, bg) = (shutdown.clone(), bg.clone());
    tokio::spawn(async move {
        while let Some(ended) = watchers.join_next().await {
            let cause = match ended {
                Err(join) => join.to_string(),
                Ok(()) if !bg.is_cancelled() => "a watcher returned before shutdown".to_owned(),
                Ok(()) => continue,
            };
            tracing::error!(error = %cause, "A background watcher stopped; the service stops too.");
            shutdown.cancel();
            return Some(cause);
        }
        None
    })
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.broker_ok.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, RETRY_AFTER_S)], "broker unreachable").into_response()
    }
}
