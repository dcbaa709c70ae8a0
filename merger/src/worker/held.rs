//! Which (edit topic, partition) pairs a worker holds, kept apart from the
//! worker so that its rules are tested alone.
//!
//! Documents are per partition number: partition p of every edit topic
//! folds into the same documents. So a partition's documents are restored
//! when the first of its topics is assigned, dropped when the last is
//! revoked, and a partition held for some edit topics but not all is a
//! split assignment the worker refuses (`WorkerError::SplitAssignment`).

use std::collections::{BTreeMap, BTreeSet};

/// The pairs held, by partition.
#[derive(Debug, Default)]
pub(crate) struct Held(BTreeMap<i32, BTreeSet<String>>);

/// A partition held for some edit topics and not others.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Split {
    pub(crate) partition: i32,
    pub(crate) held: Vec<String>,
    pub(crate) missing: Vec<String>,
}

impl Held {
    /// Takes `pairs`; returns the partitions newly held (none of their
    /// topics was), sorted: those to restore.
    pub(crate) fn assign(&mut self, pairs: impl IntoIterator<Item = (String, i32)>) -> Vec<i32> {
        let mut added = BTreeSet::new();
        for (topic, p) in pairs {
            let topics = self.0.entry(p).or_default();
            if topics.is_empty() {
                added.insert(p);
            }
            topics.insert(topic);
        }
        added.into_iter().collect()
    }

    /// Gives up `pairs`; returns the partitions no longer held for any
    /// topic (sorted): those whose documents go. A partition this does not
    /// know of is among them, so that nothing of it can stay behind.
    pub(crate) fn revoke(&mut self, pairs: &[(String, i32)]) -> Vec<i32> {
        let mut dropped = BTreeSet::new();
        for (topic, p) in pairs {
            let emptied = self.0.get_mut(p).is_none_or(|topics| {
                topics.remove(topic);
                topics.is_empty()
            });
            if emptied {
                self.0.remove(p);
                dropped.insert(*p);
            }
        }
        dropped.into_iter().collect()
    }

    /// Whether partition p is held for any topic.
    pub(crate) fn has(&self, partition: i32) -> bool {
        self.0.contains_key(&partition)
    }

    /// Whether (topic, partition) is held.
    pub(crate) fn holds(&self, topic: &str, partition: i32) -> bool {
        self.0.get(&partition).is_some_and(|topics| topics.contains(topic))
    }

    /// Forgets everything and holds exactly `pairs` (the consumer's own
    /// assignment, when a message arrived for a pair not recorded).
    pub(crate) fn reset(&mut self, pairs: impl IntoIterator<Item = (String, i32)>) {
        self.0.clear();
        self.assign(pairs);
    }

    /// The first partition not held for every topic of `all`.
    pub(crate) fn split(&self, all: &[String]) -> Option<Split> {
        self.0.iter().find(|(_, topics)| all.iter().any(|t| !topics.contains(t))).map(|(&partition, topics)| Split {
            partition,
            held: topics.iter().cloned().collect(),
            missing: all.iter().filter(|t| !topics.contains(*t)).cloned().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, i32)]) -> Vec<(String, i32)> {
        v.iter().map(|(t, p)| ((*t).to_owned(), *p)).collect()
    }

    #[test]
    fn a_partition_is_restored_with_its_first_topic_and_dropped_with_its_last() {
        let all = pairs(&[("own", 0), ("west.own", 0)]).into_iter().map(|(t, _)| t).collect::<Vec<_>>();
        let mut held = Held::default();
        assert_eq!(held.assign(pairs(&[("own", 0), ("west.own", 0), ("own", 1), ("west.own", 1)])), vec![0, 1]);
        assert_eq!(held.split(&all), None);
        assert_eq!(held.assign(pairs(&[("own", 1)])), Vec::<i32>::new(), "already held: nothing to restore");
        assert_eq!(held.revoke(&pairs(&[("own", 0)])), Vec::<i32>::new(), "still held through west.own");
        assert_eq!(
            held.split(&all),
            Some(Split { partition: 0, held: vec!["west.own".into()], missing: vec!["own".into()] })
        );
        assert_eq!(held.revoke(&pairs(&[("west.own", 0), ("own", 1), ("west.own", 1)])), vec![0, 1]);
        assert_eq!(held.split(&all), None);
        assert!(!held.holds("own", 1));
    }

    #[test]
    fn an_unknown_partition_revoked_is_dropped_and_a_reset_holds_exactly_the_assignment() {
        let mut held = Held::default();
        assert_eq!(held.revoke(&pairs(&[("own", 7)])), vec![7], "whatever was kept of it goes");
        held.assign(pairs(&[("own", 1)]));
        held.reset(pairs(&[("own", 2), ("west.own", 2)]));
        assert!(!held.holds("own", 1) && held.holds("own", 2) && held.holds("west.own", 2));
        assert!(!held.has(1) && held.has(2));
    }
}
