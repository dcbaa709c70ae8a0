//! `POST /v1/events`: bounds, body, verification, producing, the response.
//!
//! A request takes its request permit before its body is read, a byte
//! permit for each body byte as it arrives (see [`crate::body`]), then
//! permits for its per-line bookkeeping and, line by line, for what each
//! checked line keeps until the answer (see [`crate::budget`]), so the
//! memory held by requests stays within `max_in_flight_bytes` however many
//! clients connect at once, and a client that declares a large body and
//! sends nothing holds no byte permits at all. A body must arrive within
//! `body_read_timeout`; one that does not is answered 408 and its connection
//! closed.

use std::collections::HashMap;
use std::mem::size_of;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureRecord};
use serde::Serialize;
use tidemark_schemas::Reason;
use tidemark_schemas::consistency::ConsistencyToken;

use crate::body::BodyError;
use crate::budget::{Budget, Refused};
use crate::metrics::{ReasonLabels, RequestLabels};
use crate::outcome::{Checked, HEADER_KEY_ID, HEADER_RECEIVED_MS, HEADER_SCHEMA, HEADER_SOURCE};
use crate::refusal::Refusal;
use crate::replay::{Claim, Claims};
use crate::routes::{RETRY_AFTER_S, ROUTE_EVENTS};
use crate::state::{AppState, now_ms};
use tidemark_schemas::lines::{MAX_BATCH_LINES, split_lines};

/// One line's outcome.
#[derive(Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
enum LineResult {
    Accepted { line: usize, partition: i32, offset: i64, consistency: String },
    Duplicate { line: usize },
    Rejected { line: usize, status: u16, reason: Refusal, message: String },
}

/// A record handed to the producer: (index, line, fingerprint, delivery).
type Pending = (usize, usize, u128, Option<DeliveryFuture>);

/// What a request's bookkeeping holds per line besides strings, charged
/// when the body is split: the line's slot in each per-line vector (its
/// framing, twice: here and in the verification task; its outcome; its
/// result, twice: while collected and once compacted; its pending write)
/// and two map entries (its replay claim and its first-copy index).
pub(crate) const PER_LINE_BYTES: usize = 2 * size_of::<(usize, &[u8])>()
    + size_of::<Checked>()
    + size_of::<Option<LineResult>>()
    + size_of::<LineResult>()
    + size_of::<Pending>()
    + 2 * size_of::<(u128, usize)>();

#[derive(Serialize)]
struct ResponseBody {
    accepted: usize,
    rejected: usize,
    duplicates: usize,
    results: Vec<LineResult>,
}

/// A whole-request error as JSON; 503s carry `Retry-After`.
pub(crate) fn error_json(reason: impl Into<Refusal>, message: String) -> Response {
    let reason = reason.into();
    let status = reason.status();
    let body = serde_json::json!({ "error": { "status": status.as_u16(), "reason": reason, "message": message } });
    with_retry_after((status, axum::Json(body)).into_response())
}

fn with_retry_after(mut r: Response) -> Response {
    if r.status() == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static(RETRY_AFTER_S));
    }
    r
}

pub(crate) async fn post_events(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let started = Instant::now();
    state.metrics.in_flight_requests.inc();
    let (parts, body) = request.into_parts();
    let resp = handle(&state, &parts.headers, body).await;
    state.metrics.in_flight_requests.dec();
    let class = match resp.status().as_u16() {
        200..=299 => "2xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    state.metrics.requests.get_or_create(&RequestLabels { route: ROUTE_EVENTS, status_class: class }).inc();
    state.metrics.request_duration.observe(started.elapsed().as_secs_f64());
    resp
}

/// Whether the body is NDJSON (a batch) or one JSON envelope; `None` for any
/// other content type.
fn is_ndjson(headers: &HeaderMap) -> Option<bool> {
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    match ctype.split(';').next().unwrap_or("").trim().to_ascii_lowercase().as_str() {
        "application/json" => Some(false),
        "application/x-ndjson" => Some(true),
        _ => None,
    }
}

fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

fn too_large(limit: usize) -> Response {
    error_json(Reason::TooLarge, format!("the body is larger than {limit} bytes; split the batch"))
}

/// The answer to a request whose permits the in-flight bound refused.
fn over_bound(refused: Refused) -> Response {
    match refused {
        Refused::Full => error_json(Refusal::Overloaded, "too many bytes in flight".into()),
        Refused::OverBound { needed, bound } => error_json(
            Reason::TooLarge,
            format!(
                "the request needs {needed} bytes in flight once checked, more than --max-in-flight-bytes \
                 ({bound}); split the batch"
            ),
        ),
    }
}

async fn handle(state: &Arc<AppState>, headers: &HeaderMap, body: Body) -> Response {
    let Some(ndjson) = is_ndjson(headers) else {
        return error_json(
            Refusal::UnsupportedMediaType,
            "Content-Type must be application/json (one envelope) or application/x-ndjson (one per line)".into(),
        );
    };
    let limit = state.cfg.max_body_bytes;
    let declared = declared_length(headers);
    if declared.is_some_and(|n| n > limit) {
        return too_large(limit);
    }
    let Ok(_req_permit) = state.requests.try_acquire() else {
        return error_json(Refusal::Overloaded, "too many requests in flight".into());
    };
    if !state.broker_ok.load(Ordering::Relaxed) {
        return error_json(Refusal::Unavailable, "the broker cannot take writes".into());
    }
    let deadline = state.cfg.body_read_timeout;
    // Dropped with the answer: every permit the request took goes back.
    let mut budget = Budget::new(state.bytes.clone(), state.bytes_bound);
    let body = match crate::body::read(body, limit, &mut budget, deadline).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => return too_large(limit),
        Err(BodyError::Overloaded(refused)) => return over_bound(refused),
        Err(BodyError::TimedOut) => {
            let message =
                format!("the body did not arrive within {} ms; the connection is closed", deadline.as_millis());
            let mut r = error_json(Refusal::Timeout, message);
            // The rest of the body may still be on its way: the connection
            // cannot carry another request.
            r.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
            return r;
        }
        Err(BodyError::Read(cause)) => {
            return error_json(Reason::Malformed, format!("reading the request body failed: {cause}"));
        }
    };
    let lines = split_lines(&body, ndjson);
    if lines.len() > MAX_BATCH_LINES {
        return error_json(Reason::TooLarge, format!("the batch has more than {MAX_BATCH_LINES} lines; split it"));
    }
    if lines.is_empty() {
        return error_json(Reason::Malformed, "the body holds no envelope".into());
    }
    if let Err(refused) = budget.charge(lines.len() * PER_LINE_BYTES) {
        return over_bound(refused);
    }
    let received_ms = now_ms();
    let verified = match crate::verify::verify_lines(state, body.clone(), ndjson, received_ms, budget).await {
        Ok(v) => v,
        Err(cause) => {
            tracing::error!(error = %cause, "Verifying a request failed unexpectedly; it is answered 503.");
            return error_json(Refusal::Unavailable, "the request could not be verified; retry".into());
        }
    };
    let _budget = verified.budget;
    match verified.lines {
        Ok(checked) => with_retry_after(produce(state, &lines, checked, received_ms).await),
        Err(refused) => over_bound(refused),
    }
}

/// Produces the verified lines in line order, waits for every
/// acknowledgement, and answers with one result per line. One span per
/// request's batch (its size only: never a patient id or a payload).
#[tracing::instrument(name = "ingest_batch", level = "debug", skip_all, fields(lines = lines.len()))]
async fn produce(state: &AppState, lines: &[(usize, &[u8])], checked: Vec<Checked>, received_ms: u64) -> Response {
    let received = received_ms.to_string();
    let producer = state.producer();
    let produce_started = Instant::now();
    let mut pending: Vec<Pending> = Vec::with_capacity(lines.len());
    let mut results: Vec<Option<LineResult>> = Vec::with_capacity(lines.len());
    // Released as not written if this future is dropped before it settles them.
    let mut claims = Claims::new(&state.recent_ids);
    // Copies of an event within this request: index of the first copy.
    let mut first_copy: HashMap<u128, usize> = HashMap::new();
    let mut copies: Vec<(usize, usize)> = Vec::new();
    let mut first_error: Option<StatusCode> = None;
    let mut reject = |results: &mut Vec<Option<LineResult>>, line, reason: Refusal, message: String| {
        let status = reason.status();
        first_error.get_or_insert(status);
        state.metrics.events_rejected.get_or_create(&ReasonLabels::of(reason)).inc();
        results.push(Some(LineResult::Rejected { line, status: status.as_u16(), reason, message }));
    };
    for (i, outcome) in checked.into_iter().enumerate() {
        let (line, bytes) = lines[i];
        let ev = match outcome {
            Checked::Accepted(ev) => ev,
            Checked::Refused { reason, message } => {
                reject(&mut results, line, Refusal::Event(reason), message);
                continue;
            }
            Checked::Repeat(first) => {
                copies.push((i, first));
                results.push(None);
                continue;
            }
        };
        if let Some(&first) = first_copy.get(&ev.print) {
            copies.push((i, first));
            results.push(None);
            continue;
        }
        match claims.claim(ev.print) {
            Claim::Duplicate => {
                state.metrics.events_duplicate.inc();
                results.push(Some(LineResult::Duplicate { line }));
            }
            Claim::InFlight => {
                let message = format!("event {} is being written by another request; retry", ev.event_id);
                reject(&mut results, line, Refusal::DuplicateInFlight, message);
            }
            Claim::New => {
                first_copy.insert(ev.print, i);
                let hdrs = OwnedHeaders::new()
                    .insert(Header { key: HEADER_SCHEMA, value: Some(tidemark_schemas::EDIT_EVENT_PAYLOAD_TYPE) })
                    .insert(Header { key: HEADER_SOURCE, value: Some(ev.source.as_str()) })
                    .insert(Header { key: HEADER_RECEIVED_MS, value: Some(received.as_str()) })
                    .insert(Header { key: HEADER_KEY_ID, value: Some(ev.key_id.as_str()) });
                let rec = FutureRecord::to(&state.topic).key(ev.patient_id.as_bytes()).payload(bytes).headers(hdrs);
                pending.push((i, line, ev.print, producer.send_result(rec).ok()));
                results.push(None);
            }
        }
    }
    let mut accepted = 0;
    let mut unavailable = false;
    for (i, line, id, fut) in pending {
        let delivered = match fut {
            Some(f) => f.await.ok().and_then(Result::ok),
            None => None,
        };
        claims.settle(id, delivered.is_some());
        results[i] = Some(if let Some(d) = delivered {
            accepted += 1;
            let consistency = ConsistencyToken { partition: d.partition, offset: d.offset }.to_string();
            LineResult::Accepted { line, partition: d.partition, offset: d.offset, consistency }
        } else {
            unavailable = true;
            let reason = Refusal::Unavailable;
            state.metrics.events_rejected.get_or_create(&ReasonLabels::of(reason)).inc();
            let message = "Kafka did not acknowledge the record; retry".into();
            LineResult::Rejected { line, status: reason.status().as_u16(), reason, message }
        });
    }
    // A later copy in the same request shares the first copy's outcome.
    for (i, first) in copies {
        let line = lines[i].0;
        results[i] = Some(match &results[first] {
            Some(LineResult::Accepted { .. } | LineResult::Duplicate { .. }) => {
                state.metrics.events_duplicate.inc();
                LineResult::Duplicate { line }
            }
            Some(LineResult::Rejected { status, reason, message, .. }) => {
                state.metrics.events_rejected.get_or_create(&ReasonLabels::of(*reason)).inc();
                LineResult::Rejected { line, status: *status, reason: *reason, message: message.clone() }
            }
            // Every first copy has an outcome by now; were it missing, the
            // client must retry rather than hear the event is in Kafka.
            None => {
                unavailable = true;
                let reason = Refusal::Unavailable;
                let message = "the first copy of this event has no outcome; retry".into();
                LineResult::Rejected { line, status: reason.status().as_u16(), reason, message }
            }
        });
    }
    state.metrics.produce_duration.observe(produce_started.elapsed().as_secs_f64());
    state.metrics.events_accepted.inc_by(accepted as u64);
    if accepted > 0 {
        state.last_ack_ms.fetch_max(now_ms(), Ordering::Relaxed);
    }
    let results: Vec<LineResult> = results.into_iter().flatten().collect();
    let duplicates = results.iter().filter(|r| matches!(r, LineResult::Duplicate { .. })).count();
    let rejected = results.len() - accepted - duplicates;
    let status = if unavailable {
        StatusCode::SERVICE_UNAVAILABLE
    } else if rejected == 0 {
        StatusCode::ACCEPTED
    } else if accepted + duplicates > 0 {
        StatusCode::MULTI_STATUS
    } else {
        first_error.unwrap_or(StatusCode::BAD_REQUEST)
    };
    (status, axum::Json(ResponseBody { accepted, rejected, duplicates, results })).into_response()
}

#[cfg(test)]
mod tests {
    use tidemark_schemas::keys::{KeyEntry, KeyRegistry, SigningKeyFile};
    use tidemark_schemas::verify::Verifier;
    use tidemark_schemas::{Catalog, EDIT_EVENT_PAYLOAD_TYPE, dsse};

    use super::*;
    use crate::ReplayPolicy;
    use crate::budget::BOUND_PER_BODY;

    /// The smallest events ingest accepts cost the most per byte once
    /// checked; a request of them at the body limit must still fit the
    /// bound that start-up insists on, or it could never be taken.
    #[test]
    fn a_full_request_of_the_smallest_valid_events_fits_the_bound_start_up_asks_for() {
        // One-character ids, the shortest register path, one op.
        let key = SigningKeyFile::from_toml_str(
            "id = \"a\"\nsource = \"s\"\nalgorithm = \"ed25519\"\n\
             secret_key = \"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\"\n",
        )
        .expect("a key file");
        let entry = KeyEntry::ed25519("a", "s", &key.signing_key().verifying_key(), None);
        let verifier = Verifier::new(KeyRegistry::from_toml_str(&entry.to_toml()).expect("a registry"));
        let payload = br#"{"event_id":"01900000-0000-7000-8000-000000000000","patient_id":"p","source":"s","author":"a","hlc":{"wall_ms":1,"logical":0},"ops":[{"op":"clear","path":"demographics.sex"}]}"#;
        let line = dsse::sign(EDIT_EVENT_PAYLOAD_TYPE, payload, key.signing_key(), key.id()).to_json();
        let verified = verifier.verify_and_validate(line.as_bytes(), Catalog::builtin(), 1).expect("a valid event");
        let checked = Checked::of(Ok(verified), &ReplayPolicy::default(), 1);
        assert!(matches!(checked, Checked::Accepted(_)));
        // The line and its newline in the body, its bookkeeping, what its outcome keeps.
        let body = line.len() + 1;
        let held = body + PER_LINE_BYTES + checked.held_bytes(line.len(), &[]);
        let per_body_byte = held as f64 / body as f64;
        eprintln!("a {body}-byte line holds {held} bytes in flight: {per_body_byte:.2} per body byte");
        assert!(per_body_byte < BOUND_PER_BODY as f64, "{per_body_byte:.2}");
    }
}
