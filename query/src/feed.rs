//! `GET /v1/changes`: a Server-Sent Events feed of the patients that
//! changed, each with its version (or `deleted`), resumable from a cursor.
//!
//! Each event's `id` is the cursor after it, so a client that reconnects
//! with `Last-Event-ID` (what EventSource does) or `?since=` misses nothing
//! and gets each patient at its latest version. Only patients the key may
//! read are sent. The connection is audited when it opens, and closed after
//! `--max-feed-ms`; the client reconnects from its last id.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Reader;
use crate::cursor;
use crate::routes::{ROUTE_CHANGES, admit, error, finish, parse_query};
use crate::state::{AppState, now_ms};
use crate::store::Cursor;

/// Changes read from the store at once.
const PAGE: usize = 256;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangesQuery {
    since: Option<String>,
}

/// `GET /v1/changes`.
pub(crate) async fn changes(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let started = Instant::now();
    let (parts, _) = req.into_parts();
    let reader = match admit(&state, &parts) {
        Ok(r) => r,
        Err(response) => return finish(&state, ROUTE_CHANGES, None, None, *response, started).await,
    };
    let since = match parse_query::<ChangesQuery>(&parts) {
        Ok(q) => {
            q.since.or_else(|| parts.headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_owned))
        }
        Err(response) => return finish(&state, ROUTE_CHANGES, Some(&reader), None, *response, started).await,
    };
    let from = match since.as_deref().map(cursor::decode) {
        None => Cursor::new(),
        Some(Some(c)) => c,
        Some(None) => {
            let response = error(StatusCode::BAD_REQUEST, "bad_cursor", "the cursor is not one this service wrote");
            return finish(&state, ROUTE_CHANGES, Some(&reader), None, response, started).await;
        }
    };
    let stream = feed(state.clone(), reader.clone(), from);
    let response = Sse::new(stream).keep_alive(KeepAlive::default()).into_response();
    finish(&state, ROUTE_CHANGES, Some(&reader), None, response, started).await
}

struct Feed {
    state: Arc<AppState>,
    reader: Reader,
    cursor: Cursor,
    ready: VecDeque<Event>,
    progress: tokio::sync::watch::Receiver<crate::catchup::Progress>,
    deadline: tokio::time::Instant,
}

fn feed(state: Arc<AppState>, reader: Reader, cursor: Cursor) -> impl Stream<Item = Result<Event, Infallible>> {
    let deadline = tokio::time::Instant::now() + state.cfg.max_feed;
    let progress = state.progress.clone();
    let f = Feed { state, reader, cursor, ready: VecDeque::new(), progress, deadline };
    stream::unfold(f, |mut f| async move {
        loop {
            if let Some(event) = f.ready.pop_front() {
                return Some((Ok(event), f));
            }
            if tokio::time::Instant::now() >= f.deadline || f.state.stop.is_cancelled() {
                return None;
            }
            // The key as the registry says now: a revoked key's feed ends.
            f.reader = f.reader.current(&f.state, now_ms() / 1000)?;
            f.progress.mark_unchanged();
            let (reader, from) = (f.reader.clone(), f.cursor.clone());
            let page = f.state.read(move |store| store.changes(&from, PAGE, |p| reader.may_read(p))).await;
            let Ok((changes, next)) = page else {
                tracing::error!("Reading the store for the change feed failed; the feed closes.");
                return None;
            };
            let mut at = f.cursor.clone();
            for c in &changes {
                at.insert(c.partition, c.offset);
                let data = match &c.version {
                    Some(version) => json!({"patient_id": c.patient, "version": version}),
                    None => json!({"patient_id": c.patient, "deleted": true}),
                };
                f.ready.push_back(Event::default().event("change").id(cursor::encode(&at)).data(data.to_string()));
            }
            if changes.is_empty() && next != f.cursor {
                // Only hidden changes: say where the feed stands, so the
                // client's cursor moves past them.
                f.ready.push_back(Event::default().event("cursor").id(cursor::encode(&next)).data("{}"));
            }
            f.cursor = next;
            // Waits for the store to move; ends at the deadline, at shutdown,
            // or when the catch-up loop has stopped.
            if f.ready.is_empty() {
                let stop = f.state.stop.clone();
                tokio::select! {
                    moved = tokio::time::timeout_at(f.deadline, f.progress.changed()) => {
                        if !matches!(moved, Ok(Ok(()))) {
                            return None;
                        }
                    }
                    () = stop.cancelled() => return None,
                }
            }
        }
    })
}
