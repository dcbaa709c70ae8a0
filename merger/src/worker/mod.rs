//! The merger worker: one member of the consumer group on the edit topics
//! (the region's own, and any mirrored in from other regions).
//!
//! Loop: gather a batch (bounded by count and time), fold it, produce one
//! changelog and one state record per touched patient plus DLQ records, wait
//! for every ack, then commit the batch's offsets. Auto-commit and auto offset
//! store are off, so an offset is committed only once its effects are durable:
//! a crash at any point replays from the last commit, and the idempotent fold
//! makes the replay produce identical records (harmless under compaction).
//!
//! Assignment: a partition's documents are restored from its changelog
//! partition before any of its events is folded; on revoke they are dropped
//! together with the partition's unprocessed messages, which the next owner
//! re-reads from the committed offset.
//!
//! Several edit topics: partition p of every edit topic holds the same
//! patients (one partitioner, equal partition counts, checked at start), so
//! all of them fold into partition p's documents and one worker must hold
//! them together. The range assignor gives exactly that when every member
//! subscribes to the same topics, so it is forced; an assignment that
//! splits a partition's topics anyway stops the worker
//! ([`WorkerError::SplitAssignment`]) rather than fold half a patient.
//!
//! Authentication: every changelog and state record is sealed with the
//! state key's MAC, and restore refuses a changelog record whose MAC does
//! not check. Patients restored from records sealed under an older key (or
//! unsealed, under `--trust-unsealed-changelog`) are written again, sealed,
//! before the next batch.

mod batch;
mod config;
mod context;
mod error;
mod group_watch;
mod held;
pub mod metrics;
mod restore;
mod status;
mod topics;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::message::{Message as _, OwnedMessage};
use rdkafka::producer::{FutureProducer, Producer as _};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

pub use batch::dlq_headers;
pub use config::{Faults, MergerConfig, Topics};
pub use context::{MergerContext, RebalanceEvent};
pub use error::WorkerError;
pub use metrics::MergerMetrics;

pub use restore::Docs;
use restore::{Restored, restore_partition};
pub use status::{Health, WorkerStatus};

type Consumer = StreamConsumer<MergerContext>;

/// Partitions restored at once after an assignment.
const RESTORE_PARALLELISM: usize = 4;

/// The output producer's settings: batching and compression are defaults an
/// operator's `--kafka-option` overrides; acks and idempotence are not (the
/// commit protocol needs every output durable and written once).
fn producer_config(cfg: &MergerConfig) -> rdkafka::ClientConfig {
    cfg.kafka.durable_producer(&[("linger.ms", "5"), ("compression.type", "zstd")], None)
}

/// Runs a worker until `shutdown` is cancelled (then finishes the batch in
/// hand, commits, and flushes) or a fatal error.
///
/// # Errors
/// [`WorkerError`]: broker unreachable at start, topics not co-partitioned, a
/// corrupt changelog, or an output that Kafka did not acknowledge.
pub async fn run(cfg: MergerConfig, shutdown: CancellationToken) -> Result<(), WorkerError> {
    let metrics = cfg.metrics.clone();
    let partitions = topics::ensure_topics(&cfg).await?;
    tracing::info!(topics = ?cfg.topics.edits, partitions, group = %cfg.group, "merger starting");
    let producer: FutureProducer =
        producer_config(&cfg).create().map_err(WorkerError::kafka("creating the producer"))?;
    let consumer: Consumer = cfg
        .kafka
        .client_config()
        .set("group.id", &cfg.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("statistics.interval.ms", cfg.lag_interval.as_millis().max(100).to_string())
        // Partition p of every edit topic to the same member (module docs).
        .set("partition.assignment.strategy", "range")
        .create_with_context(MergerContext::new(&cfg.topics.edits))
        .map_err(WorkerError::kafka("creating the consumer"))?;
    let topics: Vec<&str> = cfg.topics.edits.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).map_err(WorkerError::kafka("subscribing to the edit topics"))?;
    let watch_stop = shutdown.child_token();
    let group_watch = group_watch::spawn(&cfg, &watch_stop)?;
    let mut worker = Worker {
        cfg: &cfg,
        metrics: &metrics,
        consumer: &consumer,
        parts: HashMap::new(),
        held: held::Held::default(),
        reseal: BTreeSet::new(),
        batches: 0,
    };
    let result = worker.run_loop(&producer, &shutdown).await;
    watch_stop.cancel();
    if let Err(e) = group_watch.await {
        tracing::warn!(error = %e, "the consumer group lag reader ended abnormally");
    }
    consumer.unsubscribe();
    if let Err(e) = producer.flush(Duration::from_secs(10)) {
        tracing::warn!(error = %e, "producer flush at shutdown did not finish");
    }
    result
}

struct Worker<'a> {
    cfg: &'a MergerConfig,
    metrics: &'a MergerMetrics,
    consumer: &'a Consumer,
    parts: HashMap<i32, Docs>,
    /// The (edit topic, partition) pairs this worker holds.
    held: held::Held,
    /// Restored patients whose records are to be sealed again.
    reseal: BTreeSet<(i32, String)>,
    batches: u64,
}

impl Worker<'_> {
    async fn run_loop(&mut self, producer: &FutureProducer, shutdown: &CancellationToken) -> Result<(), WorkerError> {
        let mut last_lag = Instant::now();
        loop {
            let (batch, stop) = self.gather(shutdown).await?;
            if !self.reseal.is_empty() {
                // A batch's worth at a time, between batches, so that a
                // large re-seal neither starves the consumer nor stalls it.
                let take = self.cfg.max_batch_events.min(self.reseal.len());
                let patients: BTreeSet<(i32, String)> = (0..take).filter_map(|_| self.reseal.pop_first()).collect();
                batch::reseal(self.cfg, self.metrics, producer, &self.parts, &patients).await?;
                self.cfg.status.progressed();
                tracing::info!(
                    patients = patients.len(),
                    left = self.reseal.len(),
                    "restored records sealed again under the current state key"
                );
            }
            if !batch.is_empty() {
                self.process(producer, &batch).await?;
            }
            if last_lag.elapsed() >= self.cfg.lag_interval {
                self.record_lag();
                last_lag = Instant::now();
            }
            if stop {
                tracing::info!("merger stopping: the batch in hand is committed");
                return Ok(());
            }
        }
    }

    /// Gathers up to `max_batch_events` messages, waiting at most
    /// `max_batch_wait` after the first; applies rebalances as they happen.
    async fn gather(&mut self, shutdown: &CancellationToken) -> Result<(Vec<OwnedMessage>, bool), WorkerError> {
        let mut batch: Vec<OwnedMessage> = Vec::new();
        let tick = Duration::from_millis(200);
        let mut deadline = tokio::time::Instant::now() + tick;
        while batch.len() < self.cfg.max_batch_events {
            let received = tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok((batch, true)),
                () = tokio::time::sleep_until(deadline) => None,
                m = self.consumer.recv() => Some(m),
            };
            self.cfg.status.progressed();
            // Rebalances recorded inside recv() apply before its message.
            self.apply_rebalances(&mut batch)?;
            match received {
                // Idle with restored records to seal again: do that now.
                None if batch.is_empty() && !self.reseal.is_empty() => break,
                None if batch.is_empty() => {
                    // Idle: the gauges still follow librdkafka's latest
                    // statistics, so a caught-up partition reads 0 and a
                    // stuck one keeps growing.
                    self.record_lag();
                    deadline = tokio::time::Instant::now() + tick;
                }
                None => break,
                Some(Ok(m)) => {
                    if batch.is_empty() {
                        deadline = tokio::time::Instant::now() + self.cfg.max_batch_wait;
                    }
                    batch.push(m.detach());
                }
                Some(Err(e)) => tracing::warn!(error = %e, "consumer error; librdkafka retries"),
            }
        }
        Ok((batch, false))
    }

    fn apply_rebalances(&mut self, batch: &mut Vec<OwnedMessage>) -> Result<(), WorkerError> {
        for event in self.consumer.context().drain() {
            match event {
                RebalanceEvent::Revoked(pairs) => {
                    batch.retain(|m| !pairs.iter().any(|(t, p)| t == m.topic() && *p == m.partition()));
                    let dropped = self.held.revoke(&pairs);
                    self.reseal.retain(|(p, _)| !dropped.contains(p));
                    for p in &dropped {
                        self.parts.remove(p);
                        self.metrics.partition_assigned.remove(&metrics::PartitionLabel { partition: *p });
                    }
                    for (topic, partition) in pairs {
                        self.metrics.consumer_lag.remove(&metrics::TopicPartitionLabel { topic, partition });
                    }
                    tracing::info!(partitions = ?dropped, "partitions revoked; their documents dropped");
                }
                RebalanceEvent::Assigned(pairs) => {
                    let added = self.held.assign(pairs);
                    // Refused before a restore that would be wasted.
                    self.check_assignment()?;
                    tracing::info!(partitions = ?added, "partitions assigned; restoring their documents");
                    // Held from now on, restore included: a long restore is
                    // not a partition nobody holds.
                    for p in &added {
                        self.metrics
                            .partition_assigned
                            .get_or_create(&metrics::PartitionLabel { partition: *p })
                            .set(1);
                    }
                    self.restore_all(&added)?;
                }
            }
        }
        self.check_assignment()?;
        self.metrics
            .documents
            .set(i64::try_from(self.parts.values().map(HashMap::len).sum::<usize>()).unwrap_or(i64::MAX));
        self.cfg.status.set_assigned(self.parts.len());
        Ok(())
    }

    /// Every partition held is held for every edit topic (module docs).
    fn check_assignment(&self) -> Result<(), WorkerError> {
        match self.held.split(&self.cfg.topics.edits) {
            None => Ok(()),
            Some(split) => Err(WorkerError::SplitAssignment {
                partition: split.partition,
                held: split.held.join(", "),
                missing: split.missing.join(", "),
            }),
        }
    }

    /// Restores several partitions, up to [`RESTORE_PARALLELISM`] at a time:
    /// each waits mostly on the broker, so overlapping them shortens a
    /// rebalance's pause.
    fn restore_all(&mut self, partitions: &[i32]) -> Result<(), WorkerError> {
        let cfg = self.cfg;
        cfg.status.set_restoring(true);
        let restored = self.restore_chunks(partitions);
        cfg.status.set_restoring(false);
        restored
    }

    fn restore_chunks(&mut self, partitions: &[i32]) -> Result<(), WorkerError> {
        let cfg = self.cfg;
        for chunk in partitions.chunks(RESTORE_PARALLELISM) {
            let results: Vec<(i32, Duration, Result<Restored, WorkerError>)> = tokio::task::block_in_place(|| {
                std::thread::scope(|scope| {
                    let handles: Vec<_> = chunk
                        .iter()
                        .map(|&p| {
                            scope.spawn(move || {
                                let started = Instant::now();
                                let docs = restore_partition(cfg, p);
                                (p, started.elapsed(), docs)
                            })
                        })
                        .collect();
                    handles.into_iter().map(|h| h.join().expect("a restore thread does not panic")).collect()
                })
            });
            for (partition, elapsed, docs) in results {
                self.restored(partition, elapsed, docs?);
            }
        }
        Ok(())
    }

    fn restore(&mut self, partition: i32) -> Result<(), WorkerError> {
        let started = Instant::now();
        self.cfg.status.set_restoring(true);
        let docs = tokio::task::block_in_place(|| restore_partition(self.cfg, partition));
        self.cfg.status.set_restoring(false);
        let docs = docs?;
        self.restored(partition, started.elapsed(), docs);
        Ok(())
    }

    fn restored(&mut self, partition: i32, elapsed: Duration, restored: Restored) {
        let Restored { docs, reseal } = restored;
        self.reseal.extend(reseal.into_iter().map(|patient| (partition, patient)));
        self.metrics.restore_duration.observe(elapsed.as_secs_f64());
        tracing::info!(
            partition,
            documents = docs.len(),
            elapsed_ms = elapsed.as_millis() as u64,
            "partition restored"
        );
        self.metrics.partition_assigned.get_or_create(&metrics::PartitionLabel { partition }).set(1);
        self.parts.insert(partition, docs);
        self.cfg.status.set_assigned(self.parts.len());
    }

    async fn process(&mut self, producer: &FutureProducer, batch: &[OwnedMessage]) -> Result<(), WorkerError> {
        let started = Instant::now();
        let mut stray = false;
        for m in batch {
            if !self.held.holds(m.topic(), m.partition()) {
                // A message before its assignment was seen (first poll):
                // take the consumer's own assignment as what is held.
                let assigned = self.consumer.assignment().map_err(WorkerError::kafka("reading the assignment"))?;
                self.held.reset(assigned.elements().iter().map(|e| (e.topic().to_owned(), e.partition())));
                // Documents of a partition no longer assigned must not be
                // found again if it comes back: it is restored afresh then.
                let held = &self.held;
                self.parts.retain(|p, _| held.has(*p));
                self.reseal.retain(|(p, _)| held.has(*p));
                self.check_assignment()?;
            }
            if !self.held.holds(m.topic(), m.partition()) {
                // Not ours (any more): its owner reads it from the commit.
                stray = true;
                continue;
            }
            if !self.parts.contains_key(&m.partition()) {
                // Assigned before this worker saw the callback (first poll).
                self.restore(m.partition())?;
            }
        }
        let kept: Vec<OwnedMessage>;
        let batch = if stray {
            tracing::warn!("messages of partitions this worker does not hold were left to their owner");
            kept = batch.iter().filter(|m| self.held.holds(m.topic(), m.partition())).cloned().collect();
            &kept[..]
        } else {
            batch
        };
        if batch.is_empty() {
            return Ok(());
        }
        let outcome = batch::process(self.cfg, self.metrics, producer, &mut self.parts, batch).await?;
        self.batches += 1;
        self.cfg.faults.before_commit(self.batches);
        let mut tpl = TopicPartitionList::new();
        for (&(topic, p), next) in &outcome.offsets {
            tpl.add_partition_offset(&self.cfg.topics.edits[topic], p, Offset::Offset(*next))
                .map_err(WorkerError::kafka("building the offset commit"))?;
        }
        if let Err(e) = tokio::task::block_in_place(|| self.consumer.commit(&tpl, CommitMode::Sync)) {
            // Lost the partitions to a rebalance: the next owner replays the
            // batch from the last commit and produces identical records.
            self.metrics.commit_failures.inc();
            tracing::warn!(error = %e, "offset commit failed; the batch will be replayed by the partition's owner");
        }
        self.metrics.batch_size.observe(batch.len() as f64);
        self.metrics.batch_duration.observe(started.elapsed().as_secs_f64());
        self.metrics
            .documents
            .set(i64::try_from(self.parts.values().map(HashMap::len).sum::<usize>()).unwrap_or(i64::MAX));
        tracing::debug!(
            events = batch.len(),
            folded = outcome.folded,
            dead_lettered = outcome.dead_lettered,
            check_ms = outcome.check_time.as_millis() as u64,
            fold_ms = outcome.fold_time.as_millis() as u64,
            ack_ms = outcome.ack_time.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "batch committed"
        );
        Ok(())
    }

    /// Lag = the partition's high watermark - our committed offset, for each
    /// assigned partition of each edit topic, from librdkafka's statistics
    /// (see [`MergerContext`]).
    fn record_lag(&self) {
        for ((topic, partition), records) in self.consumer.context().lag() {
            if self.held.holds(&topic, partition) {
                let label = metrics::TopicPartitionLabel { topic, partition };
                self.metrics.consumer_lag.get_or_create(&label).set(records);
            }
        }
    }
}
