//! A consumer group's lag as Kafka's own tools compute it: for every
//! partition of a topic, the high watermark minus the group's committed
//! offset, whoever holds the partition, or nobody.
//!
//! Key decision: this is read from the group's committed offsets (an
//! OffsetFetch to the group coordinator) with a client of its own that never
//! joins the group, not from a member's fetch statistics. A member only
//! knows the partitions it holds: when a dead member still holds them (a
//! broker that keeps it past its session, or a rebalance that cannot
//! finish), every live member reports no lag while the backlog grows. The
//! observer's requests also never queue behind a member's long-polling
//! fetch, on a connection of their own.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{Offset, TopicPartitionList};

use crate::{Connection, KafkaFailure, scan};

/// One partition's position of the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionLag {
    /// The partition.
    pub partition: i32,
    /// The group's committed offset (the next record to fold); `None`
    /// before its first commit.
    pub committed: Option<i64>,
    /// The partition's oldest retained offset.
    pub low: i64,
    /// The partition's high watermark (one past the last record).
    pub end: i64,
}

impl PartitionLag {
    /// Records the group has yet to fold: from its committed offset, or
    /// from the oldest record before its first commit (the group starts at
    /// the earliest offset), to the end.
    pub fn lag(&self) -> i64 {
        (self.end - self.committed.unwrap_or(self.low).max(self.low)).max(0)
    }
}

impl Connection {
    /// A client that reads `group`'s committed offsets without joining it:
    /// it never subscribes and never commits.
    ///
    /// # Errors
    /// [`KafkaFailure::Kafka`] if the client cannot be created.
    pub fn group_observer(&self, group: &str) -> Result<BaseConsumer, KafkaFailure> {
        let mut c = self.client_config();
        c.set("group.id", group).set("enable.auto.commit", "false").set("enable.auto.offset.store", "false");
        c.create().map_err(KafkaFailure::kafka("creating the consumer group observer"))
    }
}

/// The lag of the observer's group on every partition of `topic`, in
/// partition order. `observer` must come from [`Connection::group_observer`].
///
/// # Errors
/// [`KafkaFailure`] if the topic is missing or the broker (or the group
/// coordinator) does not answer within `timeout`.
pub fn group_lag(observer: &BaseConsumer, topic: &str, timeout: Duration) -> Result<Vec<PartitionLag>, KafkaFailure> {
    let partitions = scan::partitions(observer, topic, timeout)?;
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition(topic, *p);
    }
    let committed = observer
        .committed_offsets(tpl, timeout)
        .map_err(KafkaFailure::kafka(format!("reading the group's committed offsets on {topic}")))?;
    partitions
        .into_iter()
        .map(|p| {
            let cut = scan::partition_cut(observer, topic, p, timeout)?;
            let committed = committed.find_partition(topic, p).and_then(|e| match e.offset() {
                Offset::Offset(o) if o >= 0 => Some(o),
                _ => None,
            });
            Ok(PartitionLag { partition: p, committed, low: cut.low, end: cut.end })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_counts_from_the_commit_or_the_oldest_record() {
        let at = |committed, low, end| PartitionLag { partition: 0, committed, low, end }.lag();
        assert_eq!(at(Some(7), 0, 10), 3);
        assert_eq!(at(None, 2, 10), 8, "before the first commit, everything retained");
        assert_eq!(at(Some(1), 4, 10), 6, "a commit below the retention counts from the oldest record");
        assert_eq!(at(Some(10), 0, 10), 0);
        assert_eq!(at(Some(12), 0, 10), 0, "a watermark seen behind the commit is not negative lag");
    }
}
