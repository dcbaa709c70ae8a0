//! Every query-service metric, in one place. Labels come from small fixed
//! sets (route, status class, reload result, refusal cause) and the key id
//! of a verified request (bounded by the registry, and not a secret); never
//! a patient id, a peer address or a payload. docs/metrics.md specifies
//! them.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tidemark_front::CauseLabels;
use tidemark_reload::ReloadLabels;

/// Labels of the passed-over counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WhyLabels {
    /// `mac` (no valid MAC under the state keys), `key` (not a UTF-8
    /// patient id) or `view` (not a view of the record's patient).
    pub why: &'static str,
}

impl WhyLabels {
    /// Every reason, for pre-registering the series.
    pub const ALL: [Self; 3] = [Self { why: "mac" }, Self { why: "key" }, Self { why: "view" }];
}

/// Labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route template.
    pub route: &'static str,
    /// `2xx`, `3xx`, `4xx`, `5xx`.
    pub status_class: &'static str,
}

/// Labels of the per-key read counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyLabels {
    /// A registered key's id (only verified requests are counted).
    pub key_id: String,
}

/// The query service's metrics.
#[derive(Clone)]
pub struct QueryMetrics {
    /// State records read from the topic (applied, superseded in their
    /// batch, or passed over).
    pub records_read: Counter,
    /// State records applied to the store.
    pub records_applied: Counter,
    /// State records passed over, by why.
    pub records_passed_over: Family<WhyLabels, Counter>,
    /// 1 once the store has read what the state topic held at start.
    pub caught_up: Gauge,
    /// Requests by route and status class.
    pub requests: Family<RequestLabels, Counter>,
    /// Verified requests answered, by key: the baseline the read-rate alert
    /// compares each key with.
    pub reads: Family<KeyLabels, Counter>,
    /// Request latency, including the audit write.
    pub request_duration: Histogram,
    /// Audit records Kafka did not acknowledge (their requests got 503).
    pub audit_failures: Counter,
    /// Key registry reloads.
    pub registry_reloads: Family<ReloadLabels, Counter>,
    /// TLS certificate reloads.
    pub tls_reloads: Family<ReloadLabels, Counter>,
    /// Connections closed before a request, by cause.
    pub connections_refused: Family<CauseLabels, Counter>,
}

impl Default for QueryMetrics {
    fn default() -> Self {
        Self {
            records_read: Counter::default(),
            records_applied: Counter::default(),
            records_passed_over: Family::default(),
            caught_up: Gauge::default(),
            requests: Family::default(),
            reads: Family::default(),
            request_duration: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            audit_failures: Counter::default(),
            registry_reloads: Family::default(),
            tls_reloads: Family::default(),
            connections_refused: Family::default(),
        }
    }
}

impl QueryMetrics {
    /// Creates the metrics and registers them under `tidemark_query_`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        for why in WhyLabels::ALL {
            let _created = m.records_passed_over.get_or_create(&why);
        }
        for result in ReloadLabels::ALL {
            let _created = m.registry_reloads.get_or_create(&result);
            let _created = m.tls_reloads.get_or_create(&result);
        }
        for cause in CauseLabels::ALL {
            let _created = m.connections_refused.get_or_create(&cause);
        }
        let r = registry.sub_registry_with_prefix("tidemark_query");
        r.register("records_read", "State records read from the topic", m.records_read.clone());
        r.register(
            "records_applied",
            "State records applied to the store (a patient's newest of a batch)",
            m.records_applied.clone(),
        );
        r.register(
            "records_passed_over",
            "State records not applied: no valid MAC, a bad key, or not a view of its patient",
            m.records_passed_over.clone(),
        );
        r.register("caught_up", "1 once the store has read what the state topic held at start", m.caught_up.clone());
        r.register("requests", "HTTP requests by route and status class", m.requests.clone());
        r.register("reads", "Verified requests answered, by signing key", m.reads.clone());
        r.register_with_unit(
            "request_duration",
            "Time to answer a request, its audit record included",
            prometheus_client::registry::Unit::Seconds,
            m.request_duration.clone(),
        );
        r.register(
            "audit_failures",
            "Audit records not acknowledged; their requests got 503",
            m.audit_failures.clone(),
        );
        r.register("registry_reloads", "Key registry reloads by result", m.registry_reloads.clone());
        r.register("tls_reloads", "TLS certificate reloads by result", m.tls_reloads.clone());
        r.register(
            "connections_refused",
            "Connections closed before any request, by cause",
            m.connections_refused.clone(),
        );
        m
    }
}
