//! The group's lag on every partition of each edit topic, whoever holds it,
//! and the partitions this member holds, for the alerts that must see a
//! group whose partitions are held by nobody alive (docs/metrics.md).
//!
//! Every member exports the same group lag, read from the group's committed
//! offsets by an observer that never joins the group
//! ([`tidemark_kafka::group`]): any member alive can then report a backlog
//! that no member folds. The alerts and dashboards take the maximum per
//! partition across members, never the sum, so the group counts once.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::metrics::{MergerMetrics, TopicPartitionLabel};
use super::{MergerConfig, WorkerError};

/// Failed reads in a row after which the last values read are withdrawn.
const STALE_AFTER_FAILURES: u32 = 3;

/// Reads the group's lag every `cfg.lag_interval` until `shutdown`, on a
/// blocking thread (the observer's calls block), and sets
/// `group_lag_messages{topic, partition}` for every partition of every edit
/// topic.
///
/// # Errors
/// [`WorkerError`] only if the observer cannot be created; a failed read is
/// counted and retried at the next interval.
pub(super) fn spawn(
    cfg: &MergerConfig,
    shutdown: &CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, WorkerError> {
    let observer = cfg.kafka.group_observer(&cfg.group)?;
    let (topics, interval, metrics, shutdown) =
        (cfg.topics.edits.clone(), cfg.lag_interval, cfg.metrics.clone(), shutdown.clone());
    Ok(tokio::task::spawn_blocking(move || {
        let timeout = interval.max(Duration::from_secs(5));
        // Each topic on its own: one that cannot be read (a mirrored topic
        // gone) blinds the alerts to it alone.
        let mut failures_in_a_row = vec![0u32; topics.len()];
        // The partitions each topic's series were set for.
        let mut set: Vec<Vec<i32>> = vec![Vec::new(); topics.len()];
        while !shutdown.is_cancelled() {
            for ((topic, failures), set) in topics.iter().zip(&mut failures_in_a_row).zip(&mut set) {
                match tidemark_kafka::group::group_lag(&observer, topic, timeout) {
                    Ok(lags) => {
                        *failures = 0;
                        record(&metrics, topic, &lags);
                        set.extend(lags.iter().map(|l| l.partition).filter(|p| !set.contains(p)).collect::<Vec<_>>());
                    }
                    Err(e) => {
                        metrics.group_lag_failures.inc();
                        *failures += 1;
                        tracing::warn!(error = %e, topic = %topic, "reading the consumer group's lag failed; retrying");
                        // A lag that cannot be read is not the last one read:
                        // drop the series rather than let alerts judge stale data.
                        if *failures == STALE_AFTER_FAILURES {
                            for partition in set.drain(..) {
                                metrics.group_lag.remove(&TopicPartitionLabel { topic: topic.clone(), partition });
                            }
                        }
                    }
                }
            }
            // Sleep in short steps so that shutdown is not held up.
            let mut left = interval;
            while !left.is_zero() && !shutdown.is_cancelled() {
                let step = left.min(Duration::from_millis(100));
                std::thread::sleep(step);
                left -= step;
            }
        }
    }))
}

fn record(metrics: &MergerMetrics, topic: &str, lags: &[tidemark_kafka::group::PartitionLag]) {
    for l in lags {
        let label = TopicPartitionLabel { topic: topic.to_owned(), partition: l.partition };
        metrics.group_lag.get_or_create(&label).set(l.lag());
    }
}
