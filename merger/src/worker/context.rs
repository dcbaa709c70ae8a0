//! The consumer context: records rebalances for the worker loop, and the
//! consumer lag librdkafka reports in its statistics.
//!
//! librdkafka calls these from inside `recv()`, on the worker's own task, so
//! no batch is ever being processed when they run. They only record what
//! changed; the loop acts on it before it takes the next message, so a message
//! is always judged against the assignment it was fetched under.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::statistics::Statistics;

/// An assignment change, in the order librdkafka reported it: (edit
/// topic, partition) pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebalanceEvent {
    /// These partitions are now ours.
    Assigned(Vec<(String, i32)>),
    /// These partitions are no longer ours.
    Revoked(Vec<(String, i32)>),
}

/// Collects rebalance events for the loop to drain, and the lag of each
/// partition of the edit topics from librdkafka's statistics.
///
/// Key decision: lag comes from the statistics librdkafka already keeps (the
/// high watermark of every fetch response minus the committed offset), not
/// from ListOffsets requests. Such a request queues behind the consumer's
/// long-polling Fetch on the same connection; with a short timeout it timed
/// out there, and librdkafka then tore the connection down.
#[derive(Default)]
pub struct MergerContext {
    events: Mutex<Vec<RebalanceEvent>>,
    topics: Vec<String>,
    lag: Mutex<HashMap<(String, i32), i64>>,
}

impl MergerContext {
    /// A context that reports the lag of the partitions of `topics`.
    pub fn new(topics: &[String]) -> Self {
        Self { topics: topics.to_vec(), ..Self::default() }
    }

    /// The latest known lag (records) of each (topic, partition) librdkafka fetches.
    pub fn lag(&self) -> HashMap<(String, i32), i64> {
        self.lag.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Takes the events recorded since the last call.
    pub fn drain(&self) -> Vec<RebalanceEvent> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    fn push(&self, e: RebalanceEvent) {
        self.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(e);
    }
}

impl ClientContext for MergerContext {
    fn stats(&self, statistics: Statistics) {
        let mut lag = self.lag.lock().unwrap_or_else(PoisonError::into_inner);
        lag.clear();
        for name in &self.topics {
            let Some(topic) = statistics.topics.get(name) else { continue };
            // Partition -1 is librdkafka's internal unassigned queue. Before the
            // group's first commit librdkafka reports a lag of -1; the lag is then
            // measured from the consumer's position (or the log start), so a group
            // stuck on its first batch still shows its backlog.
            for p in topic.partitions.values().filter(|p| p.partition >= 0 && p.hi_offset >= 0) {
                let records = if p.consumer_lag >= 0 {
                    p.consumer_lag
                } else {
                    (p.hi_offset - p.app_offset.max(p.lo_offset).max(0)).max(0)
                };
                lag.insert((name.clone(), p.partition), records);
            }
        }
    }
}

impl ConsumerContext for MergerContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            self.push(RebalanceEvent::Revoked(pairs(tpl)));
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                self.push(RebalanceEvent::Assigned(pairs(tpl)));
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "consumer group rebalance failed"),
        }
    }
}

/// The (topic, partition) pairs of a rebalance.
fn pairs(tpl: &rdkafka::TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect()
}
