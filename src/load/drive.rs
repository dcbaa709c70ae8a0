//! Drives synthetic clinicians against an ingest at a target rate.
//!
//! Key decision: the schedule is open-loop. Batch k is due at
//! `start + k * batch / rate` whoever sends it, so a slow response delays only
//! its own worker, and the latency measured from the due time shows the wait
//! that a closed loop would hide (coordinated omission). Without a rate, every
//! worker sends its next batch as soon as the previous one is answered.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{EventsClient, LineOutcome, Recorder};
use crate::synth::{Clinic, Planned, SeededRng};

/// How much load, for how long.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Target events per second over all workers; `None`: as fast as answered.
    pub rate: Option<f64>,
    /// How long batches are started for.
    pub duration: Duration,
    /// Events per request.
    pub batch: usize,
    /// Times a line that failed with a retryable status (no response, 429,
    /// 5xx) is sent again, as an EHR integration would; 0 never retries.
    pub retries: u32,
}

/// One concurrent sender: a clinician at a site.
#[derive(Clone, Debug)]
pub struct Worker {
    /// Index of the site whose key signs.
    pub site: usize,
    /// The author written into the events.
    pub author: String,
}

/// Called for every event the ingest acknowledged.
pub type OnAccepted = Arc<dyn Fn(&Planned) + Send + Sync>;

/// Where the events come from.
#[derive(Clone)]
pub enum Source {
    /// Planned and signed while sending, by this population's clinicians.
    Synthetic(Arc<Clinic>),
    /// Envelopes signed beforehand (`tidemark loadgen --write-events`), sent
    /// in order, a batch after the other, until they run out: the sender
    /// spends no CPU on signing, which a benchmark on a small machine needs.
    Replay(Arc<Vec<String>>),
}

/// Everything one run needs.
pub struct Load {
    /// The events sent.
    pub source: Source,
    /// Where events go.
    pub client: EventsClient,
    /// Rate, duration and batch size.
    pub shape: Shape,
    /// The senders (their number is the concurrency).
    pub workers: Vec<Worker>,
    /// Seed of the event mix.
    pub seed: u64,
    /// What was measured.
    pub recorder: Arc<Recorder>,
    /// Hook for acknowledged synthetic events (e.g. to keep them for a reference fold).
    pub on_accepted: Option<OnAccepted>,
}

impl Load {
    /// Runs until the duration is over (or `stop`) and every request started
    /// was answered.
    pub async fn run(self, stop: CancellationToken) {
        let start = Instant::now();
        let end = start + self.shape.duration;
        let next = Arc::new(AtomicU64::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        // Each worker's seed is a draw of one generator rather than seed +
        // worker: neighbouring seeds of a small generator can give correlated
        // streams (two clinicians typing the same vitals).
        let mut seeds = SeededRng::new(self.seed);
        for worker in self.workers {
            let ctx = WorkerCtx {
                source: self.source.clone(),
                client: self.client.clone(),
                shape: self.shape,
                recorder: Arc::clone(&self.recorder),
                on_accepted: self.on_accepted.clone(),
                next: Arc::clone(&next),
                rng: SeededRng::new(seeds.next_u64()),
                worker,
                start,
                end,
            };
            tasks.spawn(ctx.run(stop.clone()));
        }
        while tasks.join_next().await.is_some() {}
    }
}

struct WorkerCtx {
    source: Source,
    client: EventsClient,
    shape: Shape,
    recorder: Arc<Recorder>,
    on_accepted: Option<OnAccepted>,
    next: Arc<AtomicU64>,
    rng: SeededRng,
    worker: Worker,
    start: Instant,
    end: Instant,
}

/// Whether a line that failed with `status` may succeed when sent again.
fn retryable(status: u16) -> bool {
    status == 0 || status == 429 || status >= 500
}

impl WorkerCtx {
    /// Sends a batch, and again its lines that failed with a retryable
    /// status, up to `retries` times with a doubling pause (50 ms to 1 s).
    /// Sending an event twice is harmless: the pipeline applies it once.
    async fn send(&self, batch: &[&str], due: Instant, stop: &CancellationToken) -> Vec<LineOutcome> {
        let mut outcomes = vec![LineOutcome::Failed(0); batch.len()];
        let mut pending: Vec<usize> = (0..batch.len()).collect();
        let mut pause = Duration::from_millis(50);
        for attempt in 0..=self.shape.retries {
            let lines: Vec<&str> = pending.iter().map(|&i| batch[i]).collect();
            let sent = Instant::now();
            let answers = self.client.post(&lines).await;
            let done = Instant::now();
            for (&i, answer) in pending.iter().zip(answers) {
                outcomes[i] = answer;
            }
            let again: Vec<usize> = pending
                .iter()
                .copied()
                .filter(|&i| matches!(outcomes[i], LineOutcome::Failed(s) if retryable(s)))
                .collect();
            if again.is_empty() || attempt == self.shape.retries || stop.is_cancelled() {
                self.recorder.request(done - self.start, done - sent, done - due.min(sent), &outcomes);
                break;
            }
            let statuses: Vec<u16> =
                again.iter().map(|&i| if let LineOutcome::Failed(s) = outcomes[i] { s } else { 0 }).collect();
            self.recorder.retrying(done - sent, &statuses);
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = stop.cancelled() => {}
            }
            pause = (pause * 2).min(Duration::from_secs(1));
            pending = again;
        }
        outcomes
    }

    async fn run(mut self, stop: CancellationToken) {
        loop {
            let k = self.next.fetch_add(1, Ordering::Relaxed);
            let due = match self.shape.rate {
                Some(rate) => self.start + Duration::from_secs_f64(k as f64 * self.shape.batch as f64 / rate),
                None => Instant::now(),
            };
            if due >= self.end || stop.is_cancelled() {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep_until(due) => {}
                () = stop.cancelled() => return,
            }
            match self.source.clone() {
                Source::Synthetic(clinic) => {
                    let batch: Vec<Planned> = (0..self.shape.batch)
                        .map(|_| clinic.plan(self.worker.site, &self.worker.author, &mut self.rng))
                        .collect();
                    let lines: Vec<&str> = batch.iter().map(|p| p.envelope.as_str()).collect();
                    let outcomes = self.send(&lines, due, &stop).await;
                    for (planned, outcome) in batch.iter().zip(&outcomes) {
                        if *outcome == LineOutcome::Accepted {
                            clinic.acknowledged(planned);
                            if let Some(hook) = &self.on_accepted {
                                hook(planned);
                            }
                        }
                    }
                }
                Source::Replay(envelopes) => {
                    let from = usize::try_from(k).unwrap_or(usize::MAX).saturating_mul(self.shape.batch);
                    let Some(rest) = envelopes.get(from..).filter(|r| !r.is_empty()) else { return };
                    let lines: Vec<&str> = rest.iter().take(self.shape.batch).map(String::as_str).collect();
                    self.send(&lines, due, &stop).await;
                }
            }
        }
    }
}
