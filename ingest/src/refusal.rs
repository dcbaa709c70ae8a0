//! What ingest says when it does not take an event or a request: a
//! [`Reason`] from the contract (the event is wrong, do not retry it as is),
//! or a condition of ingest itself (retry, or fix the request).
//!
//! Key decision: the HTTP status is derived from the value, never from its
//! code string, so a renamed code cannot silently change a status.

use axum::http::StatusCode;
use serde::{Serialize, Serializer};
use tidemark_schemas::Reason;

/// Why ingest refused a request or one line of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The event itself: never worth retrying with the same bytes.
    Event(Reason),
    /// Kafka cannot take writes, or did not acknowledge a line's record in
    /// time: retry after `Retry-After` (a resent event is folded once).
    Unavailable,
    /// The in-flight bounds are full: retry after `Retry-After`.
    Overloaded,
    /// Another request is writing the same event (signed payload) right now:
    /// retry after `Retry-After`, when it is `duplicate` or may be written.
    DuplicateInFlight,
    /// The request's `Content-Type` is neither JSON nor NDJSON.
    UnsupportedMediaType,
    /// The body did not arrive within `--body-read-timeout-ms`: the client
    /// may resend it whole (a resent event is folded once).
    Timeout,
}

impl Refusal {
    /// Every refusal a response line (and so the rejected-events counter) can
    /// carry: each [`Reason`] ingest answers with, and [`Refusal::Unavailable`].
    pub fn line_refusals() -> impl Iterator<Item = Refusal> {
        Reason::ALL
            .iter()
            .filter(|r| r.http_status().is_some())
            .map(|r| Refusal::Event(*r))
            .chain([Refusal::Unavailable, Refusal::DuplicateInFlight])
    }

    /// The stable code (the spec's `Reason` or `IngestCondition`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Refusal::Event(r) => r.as_str(),
            Refusal::Unavailable => "unavailable",
            Refusal::Overloaded => "overloaded",
            Refusal::DuplicateInFlight => "duplicate_in_flight",
            Refusal::UnsupportedMediaType => "unsupported_media_type",
            Refusal::Timeout => "request_timeout",
        }
    }

    /// The HTTP status of this refusal.
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::Event(r) => r
                .http_status()
                .and_then(|s| StatusCode::from_u16(s).ok())
                // Only the merger finds the reasons without a status; should
                // ingest ever refuse for one, it is still the event's fault.
                .unwrap_or(StatusCode::UNPROCESSABLE_ENTITY),
            Refusal::Unavailable | Refusal::Overloaded | Refusal::DuplicateInFlight => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Refusal::Timeout => StatusCode::REQUEST_TIMEOUT,
        }
    }
}

impl From<Reason> for Refusal {
    fn from(r: Reason) -> Self {
        Refusal::Event(r)
    }
}

/// Serialises as its code.
impl Serialize for Refusal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spec's `IngestCondition` enum lists exactly ingest's own refusals.
    #[test]
    fn openapi_lists_ingest_conditions() {
        let spec = include_str!("../../schemas/openapi.v1.yaml");
        let line = spec
            .split("\n    IngestCondition:\n")
            .nth(1)
            .and_then(|s| s.lines().find_map(|l| l.trim().strip_prefix("enum: [")))
            .expect("the spec defines IngestCondition with a flow enum");
        let listed: Vec<&str> = line.trim_end_matches(']').split(',').map(str::trim).collect();
        let ours = [
            Refusal::Unavailable,
            Refusal::Overloaded,
            Refusal::DuplicateInFlight,
            Refusal::UnsupportedMediaType,
            Refusal::Timeout,
        ]
        .map(Refusal::as_str);
        assert_eq!(listed, ours);
    }

    #[test]
    fn statuses_follow_the_reason() {
        assert_eq!(Refusal::Event(Reason::Malformed).status(), StatusCode::BAD_REQUEST);
        assert_eq!(Refusal::Event(Reason::BadSignature).status(), StatusCode::UNAUTHORIZED);
        assert_eq!(Refusal::Event(Reason::TooLarge).status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(Refusal::Event(Reason::WrongType).status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(Refusal::Unavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
        let codes: Vec<&str> = Refusal::line_refusals().map(Refusal::as_str).collect();
        assert!(codes.contains(&"hlc_in_future") && codes.contains(&"unavailable") && !codes.contains(&"apply"));
    }
}
