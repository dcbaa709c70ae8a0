//! What a load measured: counts, errors by status, latency percentiles, and a
//! per-second timeline (for progress lines and plots).

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;

/// Latency percentiles in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples` (microseconds); zeros when empty.
    pub fn of(samples: &[u32]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let at = |q: f64| {
            let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            f64::from(sorted[rank - 1]) / 1000.0
        };
        Self { p50_ms: at(0.50), p90_ms: at(0.90), p99_ms: at(0.99), max_ms: at(1.0) }
    }
}

/// One second of the run.
#[derive(Clone, Debug, Default)]
struct Second {
    accepted: u64,
    failed: u64,
    service_us: Vec<u32>,
}

/// One second of the run, summarised.
#[derive(Clone, Debug, Serialize)]
pub struct SecondSummary {
    /// Seconds since the start (this second ends then).
    pub t_s: u64,
    /// Events accepted in that second.
    pub accepted: u64,
    /// Events failed in that second.
    pub failed: u64,
    /// Request latency in that second.
    pub latency: Percentiles,
}

#[derive(Debug, Default)]
struct Tally {
    sent: u64,
    accepted: u64,
    requests: u64,
    failed_by_status: BTreeMap<u16, u64>,
    retried_by_status: BTreeMap<u16, u64>,
    service_us: Vec<u32>,
    scheduled_us: Vec<u32>,
    seconds: Vec<Second>,
}

/// Collects what every worker saw; cheap to share.
#[derive(Debug, Default)]
pub struct Recorder {
    tally: Mutex<Tally>,
}

/// Totals so far.
#[derive(Clone, Debug, Serialize)]
pub struct Totals {
    /// Events sent.
    pub sent: u64,
    /// Events Kafka acknowledged.
    pub accepted: u64,
    /// Events that failed (after any retries), by HTTP status (0: no response).
    pub failed_by_status: BTreeMap<u16, u64>,
    /// Events sent again after a retryable failure, by the status that failed them.
    pub retried_by_status: BTreeMap<u16, u64>,
    /// Requests made, retries included.
    pub requests: u64,
}

impl Totals {
    /// Events that failed.
    pub fn failed(&self) -> u64 {
        self.failed_by_status.values().sum()
    }

    /// Failed over sent (0 when nothing was sent).
    pub fn error_rate(&self) -> f64 {
        if self.sent == 0 { 0.0 } else { self.failed() as f64 / self.sent as f64 }
    }
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

impl Recorder {
    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records one request and settles its lines: `at` since the start when it
    /// finished, how long it took from sending (`service`) and from when it was
    /// scheduled (`scheduled`, which adds any wait for a free worker and any
    /// earlier attempts), and how each line of the batch ended.
    pub fn request(&self, at: Duration, service: Duration, scheduled: Duration, lines: &[super::LineOutcome]) {
        let mut t = self.tally();
        let second = usize::try_from(at.as_secs()).unwrap_or(usize::MAX);
        if t.seconds.len() <= second {
            t.seconds.resize_with(second + 1, Second::default);
        }
        t.requests += 1;
        t.sent += lines.len() as u64;
        t.service_us.push(micros(service));
        t.scheduled_us.push(micros(scheduled));
        let mut accepted = 0;
        for line in lines {
            match line {
                super::LineOutcome::Accepted => accepted += 1,
                super::LineOutcome::Failed(status) => *t.failed_by_status.entry(*status).or_default() += 1,
            }
        }
        t.accepted += accepted;
        let s = &mut t.seconds[second];
        s.accepted += accepted;
        s.failed += lines.len() as u64 - accepted;
        s.service_us.push(micros(service));
    }

    /// Records a request whose failed lines (`statuses`) will be sent again:
    /// it counts as a request with its latency, and its lines are not settled yet.
    pub fn retrying(&self, service: Duration, statuses: &[u16]) {
        let mut t = self.tally();
        t.requests += 1;
        t.service_us.push(micros(service));
        for status in statuses {
            *t.retried_by_status.entry(*status).or_default() += 1;
        }
    }

    /// Totals so far.
    pub fn totals(&self) -> Totals {
        let t = self.tally();
        Totals {
            sent: t.sent,
            accepted: t.accepted,
            failed_by_status: t.failed_by_status.clone(),
            retried_by_status: t.retried_by_status.clone(),
            requests: t.requests,
        }
    }

    /// Request latency from sending to the response.
    pub fn service_latency(&self) -> Percentiles {
        Percentiles::of(&self.tally().service_us)
    }

    /// Request latency from the scheduled send: with a target rate, the
    /// figure that does not hide the time a request waited because earlier
    /// ones were slow (coordinated omission).
    pub fn scheduled_latency(&self) -> Percentiles {
        Percentiles::of(&self.tally().scheduled_us)
    }

    /// Every second so far.
    pub fn timeline(&self) -> Vec<SecondSummary> {
        self.tally()
            .seconds
            .iter()
            .enumerate()
            .map(|(i, s)| SecondSummary {
                t_s: i as u64 + 1,
                accepted: s.accepted,
                failed: s.failed,
                latency: Percentiles::of(&s.service_us),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::LineOutcome;
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        let p = Percentiles::of(&samples);
        assert_eq!((p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms), (50.0, 90.0, 99.0, 100.0));
        assert_eq!(Percentiles::of(&[]), Percentiles::default());
        assert_eq!(Percentiles::of(&[7000]).p50_ms, 7.0);
    }

    #[test]
    fn requests_add_up_by_status_and_second() {
        let r = Recorder::default();
        let ms = Duration::from_millis;
        r.request(ms(100), ms(5), ms(6), &[LineOutcome::Accepted, LineOutcome::Failed(422)]);
        r.request(ms(2500), ms(7), ms(9), &[LineOutcome::Failed(0), LineOutcome::Accepted]);
        let t = r.totals();
        assert_eq!((t.sent, t.accepted, t.requests, t.failed()), (4, 2, 2, 2));
        assert_eq!(t.failed_by_status, BTreeMap::from([(0, 1), (422, 1)]));
        assert!((t.error_rate() - 0.5).abs() < 1e-9);
        let line = r.timeline();
        assert_eq!(line.len(), 3);
        assert_eq!((line[0].accepted, line[1].accepted, line[2].accepted), (1, 0, 1));
        assert_eq!(r.scheduled_latency().max_ms, 9.0);
    }
}
