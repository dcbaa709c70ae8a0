//! Every query-service metric, in one place. Labels come from small fixed
//! sets; never a patient id, a peer address or a payload.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

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

/// The query service's metrics.
#[derive(Clone, Default)]
pub struct QueryMetrics {
    /// State records applied to the store.
    pub records_applied: Counter,
    /// State records passed over, by why.
    pub records_passed_over: Family<WhyLabels, Counter>,
}

impl QueryMetrics {
    /// Creates the metrics and registers them under `tidemark_query_`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        for why in WhyLabels::ALL {
            let _created = m.records_passed_over.get_or_create(&why);
        }
        let r = registry.sub_registry_with_prefix("tidemark_query");
        r.register("records_applied", "State records applied to the store", m.records_applied.clone());
        r.register(
            "records_passed_over",
            "State records not applied: no valid MAC, a bad key, or not a view of its patient",
            m.records_passed_over.clone(),
        );
        m
    }
}
