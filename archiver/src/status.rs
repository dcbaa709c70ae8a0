//! What the archiver's `/healthz` says of its worker: whether a snapshot is
//! being taken and for how long, when one last succeeded, and how many
//! attempts in a row failed.
//!
//! Key decision: the probe fails only for a snapshot that has run far past
//! any normal one (the stall bound the caller gives, well above the
//! interval), because that is what a restart cures: a hung upload or
//! broker call. Failing snapshots are not a probe failure: the archiver
//! retries them at the next interval, a restart would not help, and the
//! TidemarkSnapshotFailing alert, not the kubelet, should tell someone.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// The worker's state, updated by the service loop and read by `/healthz`.
#[derive(Debug, Default)]
pub struct ArchiverStatus {
    /// Milliseconds since the epoch when the running snapshot began (0: none runs).
    running_since_ms: AtomicU64,
    /// Milliseconds since the epoch of the last committed snapshot (0: none yet).
    last_success_ms: AtomicU64,
    consecutive_failures: AtomicU32,
}

/// What `/healthz` answers, as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Health {
    /// `idle`, `snapshotting` or `stalled`.
    pub state: &'static str,
    /// Seconds the running snapshot has taken so far.
    pub running_s: Option<u64>,
    /// Seconds since the last committed snapshot (`None`: none since start).
    pub since_success_s: Option<u64>,
    /// Snapshot attempts in a row that failed.
    pub consecutive_failures: u32,
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

impl ArchiverStatus {
    /// A snapshot starts.
    pub(crate) fn began(&self) {
        self.running_since_ms.store(now_ms().max(1), Ordering::Relaxed);
    }

    /// The running snapshot ended, committed or not.
    pub(crate) fn ended(&self, committed: bool) {
        self.running_since_ms.store(0, Ordering::Relaxed);
        if committed {
            self.last_success_ms.store(now_ms(), Ordering::Relaxed);
            self.consecutive_failures.store(0, Ordering::Relaxed);
        } else {
            self.consecutive_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The health now: stalled once a snapshot has run longer than `stall_after`.
    pub fn health(&self, stall_after: Duration) -> Health {
        self.health_at(now_ms(), stall_after)
    }

    fn health_at(&self, now_ms: u64, stall_after: Duration) -> Health {
        let since = |ms: u64| (ms > 0).then(|| now_ms.saturating_sub(ms));
        let running_ms = since(self.running_since_ms.load(Ordering::Relaxed));
        let state = match running_ms {
            None => "idle",
            Some(ms) if u128::from(ms) > stall_after.as_millis() => "stalled",
            Some(_) => "snapshotting",
        };
        Health {
            state,
            running_s: running_ms.map(|ms| ms / 1000),
            since_success_s: since(self.last_success_ms.load(Ordering::Relaxed)).map(|ms| ms / 1000),
            consecutive_failures: self.consecutive_failures.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_that_runs_past_the_bound_is_stalled_and_failures_are_counted() {
        let s = ArchiverStatus::default();
        let bound = Duration::from_secs(600);
        let h = s.health_at(5_000, bound);
        assert_eq!((h.state, h.since_success_s, h.consecutive_failures), ("idle", None, 0));
        s.running_since_ms.store(10_000, Ordering::Relaxed);
        assert_eq!(s.health_at(70_000, bound).state, "snapshotting");
        assert_eq!(s.health_at(70_000, bound).running_s, Some(60));
        let stalled = s.health_at(10_000 + 601_000, bound);
        assert_eq!(stalled.state, "stalled");
        assert!(!stalled.is_alive());
        s.ended(false);
        s.ended(false);
        let h = s.health(bound);
        assert_eq!((h.state, h.consecutive_failures), ("idle", 2), "failing is not stalled: a restart would not help");
        assert!(h.is_alive());
        s.ended(true);
        let h = s.health(bound);
        assert_eq!((h.consecutive_failures, h.since_success_s), (0, Some(0)));
    }
}
