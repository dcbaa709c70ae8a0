//! The routes: one patient's view (with read-your-writes), the patients
//! with open conflicts, and health. Every answer to an API route is audited
//! first (see [`finish`]); the change feed lives in [`crate::feed`].

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tidemark_schemas::consistency::ConsistencyToken;

use crate::audit::{self, AuditRecord};
use crate::auth::{Denied, Reader, authorize};
use crate::metrics::{KeyLabels, RequestLabels};
use crate::state::{AppState, now_ms};

/// Every route with the statuses it can answer; the OpenAPI spec
/// (`schemas/openapi.query.v1.yaml`) is checked against this table.
pub const ROUTES: &[(&str, &str, &[u16])] = &[
    ("get", ROUTE_PATIENT, &[200, 304, 400, 401, 403, 404, 414, 503]),
    ("get", ROUTE_CONFLICTS, &[200, 400, 401, 414, 503]),
    ("get", ROUTE_CHANGES, &[200, 400, 401, 414, 503]),
    ("get", "/healthz", &[200]),
    ("get", "/readyz", &[200, 503]),
];

pub(crate) const ROUTE_PATIENT: &str = "/v1/patients/{id}";
pub(crate) const ROUTE_CONFLICTS: &str = "/v1/conflicts";
pub(crate) const ROUTE_CHANGES: &str = "/v1/changes";
/// The longest query string taken.
pub(crate) const MAX_QUERY: usize = 2048;
/// The most patients one conflicts page holds.
const MAX_PAGE: usize = 500;

/// An error answer: `{"error": {"status", "reason", "message"}}`. The
/// message never quotes the request.
pub(crate) fn error(status: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({"error": {"status": status.as_u16(), "reason": reason, "message": message}});
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Signature"));
    }
    response
}

/// The answer when the store could not be read (logged without a patient id).
pub(crate) fn store_unavailable(e: &crate::store::StoreError) -> Response {
    tracing::error!(error = %e, "Reading the store failed.");
    error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", "the store could not be read")
}

/// The answer to a request that was not let in.
pub(crate) fn denied(d: &Denied) -> Response {
    match d {
        Denied::Signature(e) => error(StatusCode::UNAUTHORIZED, e.code(), &e.to_string()),
        Denied::Replayed => error(
            StatusCode::UNAUTHORIZED,
            "replayed",
            "this signature's nonce was used already: sign every request anew",
        ),
        Denied::Busy => error(StatusCode::SERVICE_UNAVAILABLE, "busy", "too many requests in the signature window"),
    }
}

/// Audits the request and counts it, then gives the answer; a request whose
/// audit record Kafka did not acknowledge is answered 503 instead.
pub(crate) async fn finish(
    state: &AppState,
    route: &'static str,
    reader: Option<&Reader>,
    patient: Option<&str>,
    response: Response,
    started: Instant,
) -> Response {
    let record = AuditRecord {
        time: tidemark_schemas::format_utc_ms(now_ms()),
        key_id: reader.map(|r| r.key_id.as_str()),
        source: reader.map(|r| r.source.as_str()),
        route,
        patient_id: patient,
        status: response.status().as_u16(),
    };
    let response = match audit::write(&state.audit, &state.audit_topic, &record, state.cfg.audit_timeout).await {
        Ok(()) => response,
        Err(e) => {
            state.cfg.metrics.audit_failures.inc();
            tracing::error!(error = %e, route, "An audit record was not acknowledged; the request is refused.");
            error(StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable", "the read could not be audited; retry")
        }
    };
    let m = &state.cfg.metrics;
    let status_class = match response.status().as_u16() {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    m.requests.get_or_create(&RequestLabels { route, status_class }).inc();
    if let Some(r) = reader {
        m.reads.get_or_create(&KeyLabels { key_id: r.key_id.clone() }).inc();
    }
    m.request_duration.observe(started.elapsed().as_secs_f64());
    response
}

/// An answer refusing a request, boxed: it travels in `Err`s.
pub(crate) type Refusal = Box<Response>;

/// Lets the request in, or the answer refusing it.
pub(crate) fn admit(state: &AppState, parts: &Parts) -> Result<Reader, Refusal> {
    if parts.uri.query().is_some_and(|q| q.len() > MAX_QUERY) {
        return Err(Box::new(error(StatusCode::URI_TOO_LONG, "query_too_long", "the query string is too long")));
    }
    authorize(state, parts, now_ms() / 1000).map_err(|d| Box::new(denied(&d)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatientQuery {
    after: Option<String>,
}

/// `GET /v1/patients/{id}`. The id is taken from the raw path, not an
/// extractor, so that a path that is not an identifier (even one that is not
/// UTF-8 once decoded) is answered, and audited, here.
pub(crate) async fn patient(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let started = Instant::now();
    let (parts, _) = req.into_parts();
    let id = parts.uri.path().strip_prefix("/v1/patients/").unwrap_or_default().to_owned();
    let reader = match admit(&state, &parts) {
        Ok(r) => r,
        Err(response) => return finish(&state, ROUTE_PATIENT, None, None, *response, started).await,
    };
    // Only a well-formed id is audited (and it is never echoed).
    let Ok(()) = state.cfg.catalog.check_identifier(&id) else {
        let response = error(StatusCode::BAD_REQUEST, "malformed_patient_id", "the patient id is not an identifier");
        return finish(&state, ROUTE_PATIENT, Some(&reader), None, response, started).await;
    };
    let response = read_patient(&state, &reader, &id, &parts).await;
    finish(&state, ROUTE_PATIENT, Some(&reader), Some(&id), response, started).await
}

async fn read_patient(state: &AppState, reader: &Reader, id: &str, parts: &Parts) -> Response {
    if !reader.may_read(id) {
        // The same answer whether or not the patient exists.
        return error(StatusCode::FORBIDDEN, "out_of_scope", "the key may not read this patient");
    }
    let query = match parse_query::<PatientQuery>(parts) {
        Ok(q) => q,
        Err(response) => return *response,
    };
    let after = match query.after.as_deref().map(str::parse::<ConsistencyToken>) {
        None => None,
        Some(Ok(token)) => Some(token),
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, "bad_token", &e.to_string()),
    };
    let stored = match after {
        None => {
            let id = id.to_owned();
            state.read(move |store| store.get(&id)).await
        }
        Some(token) => match wait_for(state, id, token).await {
            Ok(Some(stored)) => Ok(Some(stored)),
            Ok(None) => {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not_yet_visible",
                    "the write is not in the view yet; retry with the same token",
                );
            }
            Err(response) => return *response,
        },
    };
    let stored = match stored {
        Ok(Some(stored)) => stored,
        Ok(None) => return error(StatusCode::NOT_FOUND, "unknown_patient", "no view of this patient"),
        Err(e) => return store_unavailable(&e),
    };
    let etag = stored.etag();
    let mut headers = HeaderMap::new();
    headers.insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex in quotes"));
    // Patient data: no cache in between may keep it.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if parts.headers.get(header::IF_NONE_MATCH).is_some_and(|v| v.as_bytes() == etag.as_bytes()) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    (StatusCode::OK, headers, stored.json).into_response()
}

/// Waits (bounded by `--max-wait-ms`) until the patient's view folded past
/// `token`; `Ok(None)` when the bound passed first.
async fn wait_for(
    state: &AppState,
    id: &str,
    token: ConsistencyToken,
) -> Result<Option<crate::store::Stored>, Refusal> {
    let deadline = tokio::time::Instant::now() + state.cfg.max_wait;
    let mut progress = state.progress.clone();
    loop {
        progress.mark_unchanged();
        let owned = id.to_owned();
        match state.read(move |store| store.get(&owned)).await {
            Ok(Some(s)) if s.partition != token.partition => {
                let why = "the token is not of this patient's partition";
                return Err(Box::new(error(StatusCode::BAD_REQUEST, "bad_token", why)));
            }
            Ok(Some(s)) if i64::try_from(s.through).unwrap_or(i64::MAX) > token.offset => return Ok(Some(s)),
            Ok(_) => {}
            Err(e) => return Err(Box::new(store_unavailable(&e))),
        }
        if !matches!(tokio::time::timeout_at(deadline, progress.changed()).await, Ok(Ok(()))) {
            return Ok(None);
        }
    }
}

/// The query string as `T`; 400 naming the problem (never the text).
pub(crate) fn parse_query<T: for<'de> Deserialize<'de>>(parts: &Parts) -> Result<T, Refusal> {
    let text = parts.uri.query().unwrap_or_default();
    serde_urlencoded::from_str(text).map_err(|_| {
        let why = "the query string has an unknown, repeated or malformed parameter";
        Box::new(error(StatusCode::BAD_REQUEST, "bad_query", why))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConflictsQuery {
    prefix: Option<String>,
    source: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/conflicts`.
pub(crate) async fn conflicts(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let started = Instant::now();
    let (parts, _) = req.into_parts();
    let reader = match admit(&state, &parts) {
        Ok(r) => r,
        Err(response) => return finish(&state, ROUTE_CONFLICTS, None, None, *response, started).await,
    };
    let response = list_conflicts(&state, &reader, &parts).await;
    finish(&state, ROUTE_CONFLICTS, Some(&reader), None, response, started).await
}

async fn list_conflicts(state: &AppState, reader: &Reader, parts: &Parts) -> Response {
    let q = match parse_query::<ConflictsQuery>(parts) {
        Ok(q) => q,
        Err(response) => return *response,
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return error(StatusCode::BAD_REQUEST, "bad_query", "limit must be 1 to 500");
    }
    let (prefix, reader) = (q.prefix.unwrap_or_default(), reader.clone());
    let page = state
        .read(move |store| {
            store.conflicts(q.cursor.as_deref(), &reader.prefixes_within(&prefix), q.source.as_deref(), limit)
        })
        .await;
    match page {
        Ok((page, next)) => {
            let patients: Vec<_> =
                page.into_iter().map(|(patient, sources)| json!({"patient_id": patient, "sources": sources})).collect();
            let mut response = axum::Json(json!({"patients": patients, "next_cursor": next})).into_response();
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => store_unavailable(&e),
    }
}

/// `GET /readyz`: ready once the store has caught up with the state topic.
pub(crate) async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.progress.borrow().caught_up {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "1")], "catching up").into_response()
    }
}
