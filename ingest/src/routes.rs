//! The HTTP routes and what they may answer: the one table the OpenAPI spec
//! and the metrics are checked against.

/// Every route with the statuses it can answer; the OpenAPI spec is checked
/// against this table.
pub const ROUTES: &[(&str, &str, &[u16])] = &[
    ("post", "/v1/events", &[202, 207, 400, 401, 408, 413, 415, 422, 503]),
    ("get", "/healthz", &[200]),
    ("get", "/readyz", &[200, 503]),
];

pub(crate) const ROUTE_EVENTS: &str = "/v1/events";
/// Seconds a client should wait after a 503.
pub(crate) const RETRY_AFTER_S: &str = "1";
