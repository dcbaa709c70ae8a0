//! The HTTP service: routes, limits, verification, producing, draining.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use serde::Serialize;
use tidemark_schemas::keys::KeyRegistry;
use tidemark_schemas::verify::{Verifier, VerifyError};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::metrics::{ReasonLabels, RequestLabels};
use crate::{IngestConfig, IngestError, IngestMetrics, topics};

/// Every route with the statuses it can answer; the OpenAPI spec is checked
/// against this table.
pub const ROUTES: &[(&str, &str, &[u16])] = &[
    ("post", "/v1/events", &[202, 207, 400, 401, 413, 415, 422, 503]),
    ("get", "/healthz", &[200]),
    ("get", "/readyz", &[200, 503]),
];

const ROUTE_EVENTS: &str = "/v1/events";
/// Seconds a client should wait after a 503.
const RETRY_AFTER_S: &str = "1";

struct AppState {
    cfg: IngestConfig,
    topic: String,
    verifier: RwLock<Arc<Verifier>>,
    producer: RwLock<FutureProducer>,
    requests: Semaphore,
    bytes: Semaphore,
    broker_ok: AtomicBool,
    metrics: IngestMetrics,
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
        metrics: cfg.metrics.clone(),
        cfg: cfg.clone(),
    });
    let bg = CancellationToken::new();
    tokio::spawn(watch_broker(state.clone(), bg.clone()));
    tokio::spawn(watch_registry(state.clone(), bg.clone()));
    let app = Router::new()
        .route(ROUTE_EVENTS, post(post_events))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .layer(DefaultBodyLimit::max(cfg.max_body_bytes))
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
    fn producer(&self) -> FutureProducer {
        match self.producer.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

fn producer_config(cfg: &IngestConfig) -> rdkafka::ClientConfig {
    let mut pc = cfg.client_config();
    pc.set("acks", "all")
        .set("enable.idempotence", "true")
        .set("max.in.flight.requests.per.connection", "5")
        .set("linger.ms", "2")
        .set("message.timeout.ms", cfg.produce_timeout.as_millis().to_string());
    pc
}

fn load_registry(path: &std::path::Path) -> Result<KeyRegistry, IngestError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| IngestError::Config(format!("reading key registry {}: {e}", path.display())))?;
    KeyRegistry::from_toml_str(&text)
        .map_err(|e| IngestError::Config(format!("loading key registry {}: {e}", path.display())))
}

/// A cached broker check every 2 s, for `/readyz` and fast 503s. After three
/// failed checks in a row the producer is replaced by a fresh one: a producer
/// whose idempotence state the broker lost (a restarted test broker resets its
/// connections) would otherwise never recover. Records of the old producer
/// still in flight finish or time out with it.
async fn watch_broker(state: Arc<AppState>, stop: CancellationToken) {
    let mut failures = 0u32;
    loop {
        let ok = topics::partitions(&state.producer(), &state.topic, Duration::from_secs(2)).await.is_ok();
        if ok != state.broker_ok.swap(ok, Ordering::Relaxed) {
            tracing::warn!(reachable = ok, "broker reachability changed");
        }
        failures = if ok { 0 } else { failures + 1 };
        if failures >= 3 {
            failures = 0;
            match producer_config(&state.cfg).create::<FutureProducer>() {
                Ok(fresh) => {
                    if let Ok(mut slot) = state.producer.write() {
                        *slot = fresh;
                    }
                    tracing::warn!("broker unreachable for three checks; replaced the producer");
                }
                Err(e) => tracing::error!(error = %e, "cannot create a new producer"),
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// Reloads the key registry on SIGHUP and when the file's mtime or length
/// changes (polled every 2 s). A bad registry is logged; the old one stays.
async fn watch_registry(state: Arc<AppState>, stop: CancellationToken) {
    let stamp = |p: &std::path::Path| std::fs::metadata(p).ok().map(|m| (m.modified().ok(), m.len()));
    let mut last = stamp(&state.cfg.keys);
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        let by_signal = tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(2)) => false,
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
        };
        let now = stamp(&state.cfg.keys);
        if !by_signal && now == last {
            continue;
        }
        last = now;
        match load_registry(&state.cfg.keys) {
            Ok(reg) => {
                let v = Arc::new(Verifier::new(reg));
                if let Ok(mut slot) = state.verifier.write() {
                    *slot = v;
                }
                tracing::info!(by_signal, "key registry reloaded");
            }
            Err(e) => tracing::error!(error = %e, "key registry reload failed; keeping the previous one"),
        }
    }
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.broker_ok.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, RETRY_AFTER_S)], "broker unreachable").into_response()
    }
}

/// One line's outcome.
#[derive(Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
enum LineResult {
    Accepted { line: usize, partition: i32, offset: i64 },
    Rejected { line: usize, status: u16, reason: &'static str, message: String },
}

#[derive(Serialize)]
struct Body {
    accepted: usize,
    rejected: usize,
    results: Vec<LineResult>,
}

fn error_json(status: StatusCode, reason: &'static str, message: String) -> Response {
    let body = serde_json::json!({ "error": { "status": status.as_u16(), "reason": reason, "message": message } });
    let mut r = (status, axum::Json(body)).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static(RETRY_AFTER_S));
    }
    r
}

fn status_of(e: &VerifyError) -> StatusCode {
    match e.reason() {
        "malformed" => StatusCode::BAD_REQUEST,
        "unknown_key" | "bad_signature" => StatusCode::UNAUTHORIZED,
        "too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

async fn post_events(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let started = Instant::now();
    state.metrics.in_flight.inc();
    let resp = handle(&state, &headers, body).await;
    state.metrics.in_flight.dec();
    let class = match resp.status().as_u16() {
        200..=299 => "2xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    state.metrics.requests.get_or_create(&RequestLabels { route: ROUTE_EVENTS, status_class: class }).inc();
    state.metrics.request_duration.observe(started.elapsed().as_secs_f64());
    resp
}

async fn handle(state: &AppState, headers: &HeaderMap, body: Bytes) -> Response {
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = ctype.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let ndjson = match mime.as_str() {
        "application/json" => false,
        "application/x-ndjson" => true,
        _ => {
            return error_json(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Content-Type must be application/json (one envelope) or application/x-ndjson (one per line)".into(),
            );
        }
    };
    let Ok(_req_permit) = state.requests.try_acquire() else {
        return error_json(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "too many requests in flight".into());
    };
    let n = u32::try_from(body.len().max(1)).unwrap_or(u32::MAX);
    let Ok(_byte_permit) = state.bytes.try_acquire_many(n) else {
        return error_json(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "too many bytes in flight".into());
    };
    if !state.broker_ok.load(Ordering::Relaxed) {
        return error_json(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the broker cannot take writes".into());
    }
    // Lines (1-based numbers), skipping blank ones.
    let lines: Vec<(usize, &[u8])> = if ndjson {
        body.split(|b| *b == b'\n')
            .enumerate()
            .map(|(i, l)| (i + 1, l.strip_suffix(b"\r").unwrap_or(l)))
            .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
            .collect()
    } else {
        vec![(1, &body[..])]
    };
    if lines.is_empty() {
        return error_json(StatusCode::BAD_REQUEST, "malformed", "the body holds no envelope".into());
    }
    let now_ms =
        u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(u64::MAX);
    let verifier = state.verifier.read().map(|v| v.clone()).ok();
    let Some(verifier) = verifier else {
        return error_json(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "key registry unavailable".into());
    };
    let raw: Vec<&[u8]> = lines.iter().map(|(_, l)| *l).collect();
    let verified = verifier.verify_batch_and_validate(&raw, &state.cfg.catalog, now_ms);
    let received = now_ms.to_string();
    let producer = state.producer();
    let produce_started = Instant::now();
    let mut pending = Vec::with_capacity(lines.len());
    let mut results: Vec<Option<LineResult>> = Vec::with_capacity(lines.len());
    let mut first_error: Option<StatusCode> = None;
    let mut unavailable = false;
    for (i, outcome) in verified.into_iter().enumerate() {
        let (line, bytes) = lines[i];
        match outcome {
            Ok(ev) => {
                let ev = ev.event();
                let hdrs = OwnedHeaders::new()
                    .insert(Header { key: "tidemark-schema", value: Some(tidemark_schemas::EDIT_EVENT_PAYLOAD_TYPE) })
                    .insert(Header { key: "tidemark-source", value: Some(ev.source.as_str()) })
                    .insert(Header { key: "tidemark-received-ms", value: Some(received.as_str()) });
                let rec = FutureRecord::to(&state.topic).key(ev.patient_id.as_bytes()).payload(bytes).headers(hdrs);
                match producer.send_result(rec) {
                    Ok(fut) => pending.push((i, line, Some(fut))),
                    Err(_) => {
                        unavailable = true;
                        pending.push((i, line, None));
                    }
                }
                results.push(None);
            }
            Err(e) => {
                let status = status_of(&e);
                first_error.get_or_insert(status);
                state.metrics.events_rejected.get_or_create(&ReasonLabels { reason: e.reason() }).inc();
                results.push(Some(LineResult::Rejected {
                    line,
                    status: status.as_u16(),
                    reason: e.reason(),
                    message: e.to_string(),
                }));
            }
        }
    }
    let mut accepted = 0;
    for (i, line, fut) in pending {
        let outcome = match fut {
            Some(f) => match f.await {
                Ok(Ok(d)) => Some((d.partition, d.offset)),
                _ => None,
            },
            None => None,
        };
        results[i] = Some(match outcome {
            Some((partition, offset)) => {
                accepted += 1;
                LineResult::Accepted { line, partition, offset }
            }
            None => {
                unavailable = true;
                state.metrics.events_rejected.get_or_create(&ReasonLabels { reason: "unavailable" }).inc();
                LineResult::Rejected {
                    line,
                    status: 503,
                    reason: "unavailable",
                    message: "Kafka did not acknowledge the record; retry".into(),
                }
            }
        });
    }
    state.metrics.produce_duration.observe(produce_started.elapsed().as_secs_f64());
    state.metrics.events_accepted.inc_by(accepted as u64);
    let results: Vec<LineResult> = results.into_iter().flatten().collect();
    let rejected = results.len() - accepted;
    let status = if unavailable {
        StatusCode::SERVICE_UNAVAILABLE
    } else if rejected == 0 {
        StatusCode::ACCEPTED
    } else if accepted > 0 {
        StatusCode::MULTI_STATUS
    } else {
        first_error.unwrap_or(StatusCode::BAD_REQUEST)
    };
    let mut r = (status, axum::Json(Body { accepted, rejected, results })).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static(RETRY_AFTER_S));
    }
    r
}
