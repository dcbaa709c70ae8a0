//! The archiver service: a snapshot now, then one every interval, until
//! shutdown (or once, for `--once` and CronJobs).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

use crate::metrics::{ArchiverMetrics, ProfileLabels, ResultLabels, SetAsideLabels};
use crate::snapshot::{self, Committed, SnapshotError, SnapshotSpec};
use crate::storage::Archive;
use crate::views::SetAsideReason;

/// Called with each committed snapshot and the archive it is in.
pub type OnCommit = Arc<dyn Fn(&Committed, &Archive) + Send + Sync>;

/// Everything the service needs.
pub struct ArchiverConfig {
    /// How to reach Kafka.
    pub kafka: tidemark_kafka::Connection,
    /// Where snapshots go.
    pub archive: Archive,
    /// What a snapshot writes.
    pub spec: Arc<SnapshotSpec>,
    /// Time between the starts of two snapshots.
    pub interval: Duration,
    /// Take one snapshot and return.
    pub once: bool,
    /// Metrics (registered by the caller).
    pub metrics: ArchiverMetrics,
    /// Called with each committed snapshot (the CLI prints a line).
    pub on_commit: Option<OnCommit>,
    /// What `/healthz` reports of the worker (the caller serves it).
    pub status: Arc<crate::ArchiverStatus>,
}

/// Runs until `shutdown`, or after one snapshot when `once`.
///
/// # Errors
/// With `once`, the snapshot's error. In the loop, failures are logged,
/// counted and retried at the next interval; only a configuration error
/// stops the loop.
pub async fn run(cfg: ArchiverConfig, shutdown: CancellationToken) -> Result<(), SnapshotError> {
    let consumer = Arc::new(cfg.kafka.reader("tidemark-archiver")?);
    loop {
        let started = Instant::now();
        cfg.status.began();
        let outcome = tokio::select! {
            r = snapshot::take(&cfg.archive, consumer.clone(), cfg.spec.clone()) => r,
            () = shutdown.cancelled() => {
                tracing::info!("shutdown during a snapshot; it is abandoned (no manifest) and cleaned up next run");
                return Ok(());
            }
        };
        let elapsed = started.elapsed();
        cfg.status.ended(outcome.is_ok());
        record(&cfg, &outcome, elapsed);
        match outcome {
            Ok(committed) => {
                for c in &committed {
                    let m = &c.manifest;
                    tracing::info!(
                        profile = %m.profile, snapshot = %m.snapshot_id, rows = m.rows, parts = m.parts.len(),
                        bytes = c.bytes, set_aside = c.set_aside.total(), seconds = elapsed.as_secs_f64(), "snapshot committed"
                    );
                    if let Some(f) = &cfg.on_commit {
                        f(c, &cfg.archive);
                    }
                }
                if cfg.once {
                    return Ok(());
                }
            }
            Err(e) if cfg.once || matches!(e, SnapshotError::Config(_)) => return Err(e),
            Err(e) => tracing::error!(error = %e, "snapshot failed; retrying at the next interval"),
        }
        let wait = cfg.interval.saturating_sub(elapsed);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return Ok(()),
        }
    }
}

fn record(cfg: &ArchiverConfig, outcome: &Result<Vec<Committed>, SnapshotError>, elapsed: Duration) {
    let m = &cfg.metrics;
    let profiles: Vec<&'static str> = cfg.spec.profiles.iter().map(|p| p.profile.name()).collect();
    match outcome {
        Ok(committed) => {
            m.snapshot_duration.observe(elapsed.as_secs_f64());
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
            for (profile, c) in profiles.iter().zip(committed) {
                let labels = ProfileLabels { profile };
                m.snapshots.get_or_create(&ResultLabels { profile, result: "ok" }).inc();
                m.rows.get_or_create(&labels).inc_by(c.manifest.rows);
                m.written.get_or_create(&labels).inc_by(c.bytes);
                m.last_success_timestamp.get_or_create(&labels).set(now);
                for reason in SetAsideReason::ALL {
                    let labels = SetAsideLabels { profile, reason: reason.label() };
                    m.records_set_aside.get_or_create(&labels).inc_by(c.set_aside.get(reason));
                }
            }
        }
        Err(e) => {
            for profile in profiles {
                m.snapshots.get_or_create(&ResultLabels { profile, result: "failed" }).inc();
                if matches!(
                    e,
                    SnapshotError::Storage(_)
                        | SnapshotError::Written { .. }
                        | SnapshotError::Keys(_)
                        | SnapshotError::Table { .. }
                        | SnapshotError::Scratch(_)
                ) {
                    m.parts_failed.get_or_create(&ProfileLabels { profile }).inc();
                }
            }
        }
    }
}
