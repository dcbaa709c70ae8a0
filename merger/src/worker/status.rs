//! What the merger's `/healthz` says of its worker: the partitions it holds,
//! whether it is restoring, and whether its loop still moves.
//!
//! Key decision: "alive" means the worker's loop came round recently, not
//! that the process answers HTTP. The loop passes its checkpoint at least
//! every 200 ms when idle and after every batch; a loop stuck in a produce,
//! a commit or a broker call that never returns stops passing it, and after
//! the stall bound `/healthz` answers 503 so that the kubelet restarts the
//! pod (its partitions then go to a member that folds them). A restore is
//! allowed to take long (it has its own stall timeout, and fails the worker
//! when it makes no progress), so it does not count as a stall.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// The worker's state, updated by its loop and read by `/healthz`.
#[derive(Debug, Default)]
pub struct WorkerStatus {
    assigned: AtomicUsize,
    restoring: AtomicBool,
    /// Milliseconds since the epoch when the loop last passed its checkpoint
    /// (0: not yet started).
    progress_ms: AtomicU64,
}

/// What `/healthz` answers, as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Health {
    /// `starting`, `ok`, `restoring` or `stalled`.
    pub state: &'static str,
    /// Partitions of the edit topic this member holds.
    pub assigned_partitions: usize,
    /// Seconds since the loop last came round (`None` before it started).
    pub since_progress_s: Option<u64>,
}

impl Health {
    /// Whether a liveness probe should pass.
    pub fn is_alive(&self) -> bool {
        self.state != "stalled"
    }
}

fn now_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(u64::MAX)
}

impl WorkerStatus {
    /// The loop came round.
    pub(crate) fn progressed(&self) {
        self.progress_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// The number of partitions held changed.
    pub(crate) fn set_assigned(&self, partitions: usize) {
        self.assigned.store(partitions, Ordering::Relaxed);
    }

    /// A restore started (`true`) or ended.
    pub(crate) fn set_restoring(&self, restoring: bool) {
        self.restoring.store(restoring, Ordering::Relaxed);
        self.progressed();
    }

    /// The health now, with the loop stalled after `stall_after` without
    /// progress.
    pub fn health(&self, stall_after: Duration) -> Health {
        self.health_at(now_ms(), stall_after)
    }

    fn health_at(&self, now_ms: u64, stall_after: Duration) -> Health {
        let progress = self.progress_ms.load(Ordering::Relaxed);
        let since_ms = (progress > 0).then(|| now_ms.saturating_sub(progress));
        let state = match since_ms {
            None => "starting",
            Some(_) if self.restoring.load(Ordering::Relaxed) => "restoring",
            Some(ms) if u128::from(ms) > stall_after.as_millis() => "stalled",
            Some(_) => "ok",
        };
        Health {
            state,
            assigned_partitions: self.assigned.load(Ordering::Relaxed),
            since_progress_s: since_ms.map(|ms| ms / 1000),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_that_stops_coming_round_is_stalled_but_a_restore_is_not() {
        let s = WorkerStatus::default();
        let bound = Duration::from_secs(60);
        assert_eq!(s.health_at(1_000, bound).state, "starting");
        s.progress_ms.store(1_000, Ordering::Relaxed);
        s.set_assigned(3);
        let h = s.health_at(31_000, bound);
        assert_eq!((h.state, h.assigned_partitions, h.since_progress_s), ("ok", 3, Some(30)));
        assert!(h.is_alive());
        let h = s.health_at(62_000, bound);
        assert_eq!(h.state, "stalled");
        assert!(!h.is_alive());
        s.restoring.store(true, Ordering::Relaxed);
        assert_eq!(s.health_at(62_000, bound).state, "restoring");
    }
}
