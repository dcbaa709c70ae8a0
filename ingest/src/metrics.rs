//! Every ingest metric, in one place: name, help text, unit, buckets and
//! labels. Labels come from small fixed sets: route, status class, rejection
//! reason, reload result, refusal cause; never a patient id, a peer address
//! or a payload. Each field is named
//! as the metric it registers. docs/metrics.md specifies these metrics and
//! tests/metrics_spec.rs holds it equal to this file.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::refusal::Refusal;

/// Labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route (`/v1/events`, ...).
    pub route: &'static str,
    /// `2xx`, `4xx`, `5xx`.
    pub status_class: &'static str,
}

/// Labels of the rejected-events counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// The code of one of [`Refusal::line_refusals`].
    pub reason: &'static str,
}

impl ReasonLabels {
    /// The labels of a line refused for `reason`.
    pub fn of(reason: Refusal) -> Self {
        Self { reason: reason.as_str() }
    }
}

/// Labels of the registry and TLS reload counters, shared with the merger.
pub use tidemark_reload::ReloadLabels;

/// Labels of the refused-connections counter, shared with the query service.
pub use tidemark_front::CauseLabels;

/// The ingest service's metrics.
#[derive(Clone)]
pub struct IngestMetrics {
    /// Requests by route and status class.
    pub requests: Family<RequestLabels, Counter>,
    /// Events produced and acknowledged.
    pub events_accepted: Counter,
    /// Events refused, by reason.
    pub events_rejected: Family<ReasonLabels, Counter>,
    /// Events answered `duplicate`: accepted recently, not written again.
    pub events_duplicate: Counter,
    /// Request latency.
    pub request_duration: Histogram,
    /// Produce-to-acknowledgement latency of one request's records.
    pub produce_duration: Histogram,
    /// Requests being handled.
    pub in_flight_requests: Gauge,
    /// Producers replaced after a fatal error or an outage.
    pub producer_replaced: Counter,
    /// Key-registry reloads (on a file change or SIGHUP), by result.
    pub registry_reloads: Family<ReloadLabels, Counter>,
    /// TLS certificate reloads (on a file change or SIGHUP), by result.
    pub tls_reloads: Family<ReloadLabels, Counter>,
    /// Connections closed before any request was read, by cause.
    pub connections_refused: Family<CauseLabels, Counter>,
}

impl IngestMetrics {
    /// Creates the metrics and registers them under `tidemark_ingest_`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = IngestMetrics {
            requests: Family::default(),
            events_accepted: Counter::default(),
            events_rejected: Family::default(),
            events_duplicate: Counter::default(),
            request_duration: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            produce_duration: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            in_flight_requests: Gauge::default(),
            producer_replaced: Counter::default(),
            registry_reloads: Family::default(),
            tls_reloads: Family::default(),
            connections_refused: Family::default(),
        };
        // Every series exists from the start at 0, so the first 5xx or
        // rejection after a restart is an increase that rate() and alerts
        // see, and dashboards show zeros rather than gaps.
        for class in ["2xx", "4xx", "5xx"] {
            let _created =
                m.requests.get_or_create(&RequestLabels { route: crate::routes::ROUTE_EVENTS, status_class: class });
        }
        for reason in Refusal::line_refusals() {
            let _created = m.events_rejected.get_or_create(&ReasonLabels::of(reason));
        }
        for result in ReloadLabels::ALL {
            let _created = m.registry_reloads.get_or_create(&result);
            let _created = m.tls_reloads.get_or_create(&result);
        }
        for cause in CauseLabels::ALL {
            let _created = m.connections_refused.get_or_create(&cause);
        }
        let r = registry.sub_registry_with_prefix("tidemark_ingest");
        r.register("requests", "HTTP requests by route and status class", m.requests.clone());
        r.register("events_accepted", "Events produced and acknowledged by Kafka", m.events_accepted.clone());
        r.register("events_rejected", "Events refused, by reason", m.events_rejected.clone());
        r.register(
            "events_duplicate",
            "Events this ingest accepted recently and received again, answered duplicate and not written again",
            m.events_duplicate.clone(),
        );
        r.register_with_unit(
            "request_duration",
            "HTTP request latency",
            prometheus_client::registry::Unit::Seconds,
            m.request_duration.clone(),
        );
        r.register_with_unit(
            "produce_duration",
            "Latency from producing a request's records to Kafka's acknowledgement",
            prometheus_client::registry::Unit::Seconds,
            m.produce_duration.clone(),
        );
        r.register("in_flight_requests", "Requests being handled", m.in_flight_requests.clone());
        r.register(
            "producer_replaced",
            "Kafka producers replaced after a fatal error or three failed broker checks",
            m.producer_replaced.clone(),
        );
        r.register(
            "registry_reloads",
            "Key-registry reloads after a file change or SIGHUP, by result (failed keeps the previous registry)",
            m.registry_reloads.clone(),
        );
        r.register(
            "tls_reloads",
            "TLS certificate reloads after a file change or SIGHUP, by result (failed keeps the previous certificate)",
            m.tls_reloads.clone(),
        );
        r.register(
            "connections_refused",
            "Connections closed before a request was read, by cause",
            m.connections_refused.clone(),
        );
        m
    }
}
