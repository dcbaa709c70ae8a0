//! A background thread that reads, twice a second, every watched process's
//! CPU and memory and the pipeline's counters: the timeline of a run.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::procs::{self, ProcSample};
use super::scrape;

/// One reading.
#[derive(Clone, Debug)]
pub struct Tick {
    /// Seconds since the run's start.
    pub t_s: f64,
    /// Events ingest has had acknowledged by Kafka (its counter).
    pub accepted: f64,
    /// Events the mergers folded or dead-lettered (their counters, summed).
    pub folded: f64,
    /// Each watched process that was alive.
    pub procs: BTreeMap<String, ProcSample>,
}

#[derive(Default)]
struct Shared {
    ticks: Vec<Tick>,
    watched: Vec<(String, u32)>,
    /// The mergers are stopped (SIGSTOP): a scrape would wait out its
    /// timeout on each and stretch the period, so they are not scraped.
    mergers_paused: bool,
}

/// The running sampler.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    shared: Arc<Mutex<Shared>>,
    thread: Option<JoinHandle<()>>,
}

/// Sampling period.
const PERIOD: Duration = Duration::from_millis(500);

impl Sampler {
    /// Starts sampling; `ingest` and `mergers` are metrics addresses.
    pub fn start(t0: Instant, ingest: String, mergers: Vec<String>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (s, sh) = (Arc::clone(&stop), Arc::clone(&shared));
        let thread = std::thread::spawn(move || {
            let ticks_per_s = procs::ticks_per_second();
            let (mut accepted, mut folded) = (0.0, 0.0);
            while !s.load(Ordering::Relaxed) {
                let (watched, mergers_paused) = {
                    let shared = sh.lock().unwrap_or_else(PoisonError::into_inner);
                    (shared.watched.clone(), shared.mergers_paused)
                };
                let procs = watched
                    .iter()
                    .filter_map(|(name, pid)| Some((name.clone(), procs::sample(*pid, ticks_per_s)?)))
                    .collect();
                // A failed scrape keeps the last value: counters only grow.
                if let Ok(text) = scrape::metrics(&ingest) {
                    accepted = scrape::sum(&text, "tidemark_ingest_events_accepted_total");
                }
                if !mergers_paused && let Some(total) = folded_total(&mergers) {
                    folded = total;
                }
                let tick = Tick { t_s: t0.elapsed().as_secs_f64(), accepted, folded, procs };
                sh.lock().unwrap_or_else(PoisonError::into_inner).ticks.push(tick);
                std::thread::sleep(PERIOD);
            }
        });
        Self { stop, shared, thread: Some(thread) }
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Samples process `pid` as `name` from now on.
    pub fn watch(&self, name: &str, pid: u32) {
        self.shared().watched.push((name.to_owned(), pid));
    }

    /// Whether the mergers are stopped; while they are, their counters keep
    /// their last values.
    pub fn mergers_paused(&self, paused: bool) {
        self.shared().mergers_paused = paused;
    }

    /// Every reading so far.
    pub fn ticks(&self) -> Vec<Tick> {
        self.shared().ticks.clone()
    }

    /// Waits until a reading satisfies `done`, at most `limit`; the first
    /// such reading.
    pub fn wait_for(&self, limit: Duration, done: impl Fn(&Tick) -> bool) -> Option<Tick> {
        let start = Instant::now();
        let mut seen = 0;
        while start.elapsed() < limit {
            let ticks = self.ticks();
            if let Some(t) = ticks[seen.min(ticks.len())..].iter().find(|t| done(t)) {
                return Some(t.clone());
            }
            seen = ticks.len();
            std::thread::sleep(PERIOD / 2);
        }
        None
    }
}

/// The mergers' folded and dead-lettered counters, summed; `None` when one
/// did not answer (a partial sum would look like a drop in the rate).
fn folded_total(mergers: &[String]) -> Option<f64> {
    mergers
        .iter()
        .map(|m| {
            let text = scrape::metrics(m).ok()?;
            Some(
                scrape::sum(&text, "tidemark_merger_events_folded_total")
                    + scrape::sum(&text, "tidemark_merger_events_dead_lettered_total"),
            )
        })
        .sum()
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
