//! Every archiver metric, in one place: name, help text, unit, buckets and
//! labels. Labels come from small fixed sets: profile (`identified`,
//! `deidentified`), result (`ok`, `failed`) and set-aside reason; never a
//! patient id or payload. Each field is named as the metric it registers. docs/metrics.md
//! specifies these metrics and tests/metrics_spec.rs holds it equal to this
//! file.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

/// A profile label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProfileLabels {
    /// `identified` or `deidentified`.
    pub profile: &'static str,
}

/// A profile and result label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `identified` or `deidentified`.
    pub profile: &'static str,
    /// `ok` or `failed`.
    pub result: &'static str,
}

/// A profile and set-aside reason label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SetAsideLabels {
    /// `identified` or `deidentified`.
    pub profile: &'static str,
    /// `undecodable`, `key_mismatch` or `unfit` ([`crate::views::SetAsideReason`]).
    pub reason: &'static str,
}

/// The archiver's metrics.
#[derive(Clone)]
pub struct ArchiverMetrics {
    /// Snapshots attempted, by profile and result.
    pub snapshots: Family<ResultLabels, Counter>,
    /// Rows written in committed snapshots.
    pub rows: Family<ProfileLabels, Counter>,
    /// Encrypted bytes written in committed snapshots.
    pub written: Family<ProfileLabels, Counter>,
    /// Snapshots that failed while writing their parts (a table, encryption
    /// or storage error), by profile.
    pub parts_failed: Family<ProfileLabels, Counter>,
    /// State records left out of committed snapshots, by profile and reason:
    /// a poison record is set aside rather than failing every snapshot, and
    /// this is where an operator sees it.
    pub records_set_aside: Family<SetAsideLabels, Counter>,
    /// Snapshot duration, from the cut to the manifest.
    pub snapshot_duration: Histogram,
    /// Unix time of the last committed snapshot; its age is
    /// `time() - tidemark_archiver_last_success_timestamp_seconds`.
    pub last_success_timestamp: Family<ProfileLabels, Gauge<f64, AtomicU64>>,
}

impl ArchiverMetrics {
    /// Creates the metrics and registers them under `tidemark_archiver_`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = ArchiverMetrics {
            snapshots: Family::default(),
            rows: Family::default(),
            written: Family::default(),
            parts_failed: Family::default(),
            records_set_aside: Family::default(),
            snapshot_duration: Histogram::new(exponential_buckets(0.1, 2.0, 14)),
            last_success_timestamp: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("tidemark_archiver");
        r.register("snapshots", "Snapshots attempted, by profile and result", m.snapshots.clone());
        r.register("rows", "Rows written in committed snapshots", m.rows.clone());
        r.register_with_unit(
            "written",
            "Encrypted bytes written in committed snapshots",
            Unit::Bytes,
            m.written.clone(),
        );
        r.register(
            "parts_failed",
            "Snapshots that failed while writing their parts, by profile",
            m.parts_failed.clone(),
        );
        r.register(
            "records_set_aside",
            "State records left out of committed snapshots, by profile and reason",
            m.records_set_aside.clone(),
        );
        r.register_with_unit(
            "snapshot_duration",
            "Time from capturing the cut to committing the manifest",
            Unit::Seconds,
            m.snapshot_duration.clone(),
        );
        r.register_with_unit(
            "last_success_timestamp",
            "Unix time of the last committed snapshot",
            Unit::Seconds,
            m.last_success_timestamp.clone(),
        );
        for profile in ["identified", "deidentified"] {
            for result in ["ok", "failed"] {
                let _ = m.snapshots.get_or_create(&ResultLabels { profile, result });
            }
            let labels = ProfileLabels { profile };
            let _ = m.rows.get_or_create(&labels);
            let _ = m.written.get_or_create(&labels);
            let _ = m.parts_failed.get_or_create(&labels);
            for reason in crate::views::SetAsideReason::ALL {
                let _ = m.records_set_aside.get_or_create(&SetAsideLabels { profile, reason: reason.label() });
            }
        }
        m
    }
}
