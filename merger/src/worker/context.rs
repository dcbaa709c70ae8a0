//! The consumer context: records rebalances for the worker loop.
//!
//! librdkafka calls these from inside `recv()`, on the worker's own task, so
//! no batch is ever being processed when they run. They only record what
//! changed; the loop acts on it before it takes the next message, so a message
//! is always judged against the assignment it was fetched under.

use std::sync::Mutex;

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};

/// An assignment change, in the order librdkafka reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebalanceEvent {
    /// These partitions of the edit topic are now ours.
    Assigned(Vec<i32>),
    /// These partitions are no longer ours.
    Revoked(Vec<i32>),
}

/// Collects rebalance events for the loop to drain.
#[derive(Default)]
pub struct MergerContext {
    events: Mutex<Vec<RebalanceEvent>>,
}

impl MergerContext {
    /// Takes the events recorded since the last call.
    pub fn drain(&self) -> Vec<RebalanceEvent> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    fn push(&self, e: RebalanceEvent) {
        self.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(e);
    }
}

impl ClientContext for MergerContext {}

impl ConsumerContext for MergerContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            self.push(RebalanceEvent::Revoked(tpl.elements().iter().map(|e| e.partition()).collect()));
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                self.push(RebalanceEvent::Assigned(tpl.elements().iter().map(|e| e.partition()).collect()));
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "consumer group rebalance failed"),
        }
    }
}
