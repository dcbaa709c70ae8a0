//! Drives signed reads against a query service at a target rate: the read
//! side of `tidemark loadgen` (`--read`).
//!
//! Key decision: the same open-loop schedule as the write side. Read k is
//! due at `start + k / rate` whichever worker takes it, so a slow answer
//! delays only its own worker and the latency from the due time shows any
//! queueing a closed loop would hide. Each read signs afresh (a new nonce and
//! `created`), as a client must: signing is part of what a read costs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{LineOutcome, ReadClient, Recorder};
use crate::synth::SeededRng;

/// A read load.
pub struct ReadLoad {
    /// The signing client.
    pub client: Arc<ReadClient>,
    /// Reads per second over all workers; `None`: as fast as answered.
    pub rate: Option<f64>,
    /// How long reads are started for.
    pub duration: Duration,
    /// Concurrent readers.
    pub concurrency: usize,
    /// The patients read, chosen uniformly.
    pub patients: Arc<Vec<String>>,
    /// Seed of the choice.
    pub seed: u64,
    /// Where each read's outcome goes (a 200 counts as accepted).
    pub recorder: Arc<Recorder>,
}

impl ReadLoad {
    /// Runs the load until its duration ends or `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        let start = Instant::now();
        let end = start + self.duration;
        let next = Arc::new(AtomicU64::new(0));
        let this = Arc::new(self);
        let mut readers = tokio::task::JoinSet::new();
        // Each reader's seed is a draw of one generator, as the write side's.
        let mut seeds = SeededRng::new(this.seed);
        for _ in 0..this.concurrency {
            let (this, next, stop) = (Arc::clone(&this), Arc::clone(&next), stop.clone());
            let mut rng = SeededRng::new(seeds.next_u64());
            readers.spawn(async move {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let due = match this.rate {
                        Some(rate) => start + Duration::from_secs_f64(k as f64 / rate),
                        None => Instant::now(),
                    };
                    if due >= end || stop.is_cancelled() {
                        return;
                    }
                    tokio::select! {
                        () = tokio::time::sleep_until(due) => {}
                        () = stop.cancelled() => return,
                    }
                    let patient = &this.patients[rng.below(this.patients.len())];
                    let sent = Instant::now();
                    let status = match this.client.get(&format!("/v1/patients/{patient}")).await {
                        Ok(reply) => reply.status,
                        Err(_) => 0,
                    };
                    let done = Instant::now();
                    let outcome = if status == 200 { LineOutcome::Accepted } else { LineOutcome::Failed(status) };
                    this.recorder.request(done - start, done - sent, done - due.min(sent), &[outcome]);
                }
            });
        }
        while readers.join_next().await.is_some() {}
    }
}
