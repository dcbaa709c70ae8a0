//! Setting bad state records aside: one record that is not a valid patient
//! view must not stop every snapshot.
//!
//! Key decision: the state topic is compacted, so a poison record stays
//! until a newer view of its patient replaces it, and failing the snapshot
//! on it would fail every run until someone deletes it by hand. Instead the
//! record is left out, counted (per reason, in a metric and in the signed
//! manifest, so a reader knows the snapshot is short) and logged with its
//! partition and reason only: never its key (a patient id) or its content.
//!
//! A record without the mergers' MAC, or whose MAC fails, is passed over
//! while the partition is read ([`Authenticity`]): it neither replaces nor
//! removes the patient's earlier, authentic view, so a forged record can
//! keep its patient out of a snapshot only once compaction has dropped
//! every authentic view before it.

use std::collections::HashMap;

use tidemark_kafka::scan::Record;
use tidemark_schemas::PatientView;
use tidemark_seal::{MacFailure, RecordKind, StateKeys};

use crate::table::{PartWriter, TableError};

/// Why a state record was left out of a snapshot. The metric's `reason`
/// label, from this fixed set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SetAsideReason {
    /// Not a patient view (not JSON, or not the view's shape).
    Undecodable,
    /// A view whose `patient_id` is not the record's key: it would shadow or
    /// duplicate another patient's view.
    KeyMismatch,
    /// A view that does not fit the catalog (an unknown field, a value of
    /// the wrong type): the merger runs another catalog than the archiver.
    Unfit,
    /// Not sealed by a merger: no MAC, a key not given, or a MAC that fails.
    Unauthenticated,
}

impl SetAsideReason {
    /// Every reason, for pre-creating the metric's series.
    pub const ALL: [SetAsideReason; 4] = [Self::Undecodable, Self::KeyMismatch, Self::Unfit, Self::Unauthenticated];

    /// The metric label and log field.
    pub fn label(self) -> &'static str {
        match self {
            Self::Undecodable => "undecodable",
            Self::KeyMismatch => "key_mismatch",
            Self::Unfit => "unfit",
            Self::Unauthenticated => "unauthenticated",
        }
    }
}

/// Records set aside, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetAside {
    /// Records that are not patient views.
    pub undecodable: u64,
    /// Views under another patient's key.
    pub key_mismatch: u64,
    /// Views that do not fit the catalog.
    pub unfit: u64,
    /// Records the mergers did not seal.
    pub unauthenticated: u64,
}

impl SetAside {
    /// All of them.
    pub fn total(&self) -> u64 {
        self.undecodable + self.key_mismatch + self.unfit + self.unauthenticated
    }

    /// The count for one reason.
    pub fn get(&self, reason: SetAsideReason) -> u64 {
        match reason {
            SetAsideReason::Undecodable => self.undecodable,
            SetAsideReason::KeyMismatch => self.key_mismatch,
            SetAsideReason::Unfit => self.unfit,
            SetAsideReason::Unauthenticated => self.unauthenticated,
        }
    }

    /// Adds `other`'s counts.
    pub fn add(&mut self, other: &SetAside) {
        self.undecodable += other.undecodable;
        self.key_mismatch += other.key_mismatch;
        self.unfit += other.unfit;
        self.unauthenticated += other.unauthenticated;
    }
}

/// Passes over the state records of one partition that the mergers did
/// not seal. What counts as set aside is a patient whose *latest* record
/// was passed over (what compaction will keep): a stale record from before
/// the upgrade or under a rotated-out key, which a later sealed record
/// supersedes, is not counted. One WARN per partition, with partition,
/// counts and the first reason: never a key or content.
pub struct Authenticity<'a> {
    keys: &'a StateKeys,
    partition: i32,
    /// Keys whose latest record so far was passed over, and why.
    refused: HashMap<Vec<u8>, MacFailure>,
    passed_over: u64,
}

impl<'a> Authenticity<'a> {
    /// A check of `partition`'s records against `keys`.
    pub fn new(keys: &'a StateKeys, partition: i32) -> Self {
        Self { keys, partition, refused: HashMap::new(), passed_over: 0 }
    }

    /// Whether to keep `record`: its MAC checks under one of the keys.
    pub fn keep(&mut self, record: &Record<'_>) -> bool {
        match self.keys.check(RecordKind::State, record.key, record.value, |h| record.header(h)) {
            Ok(_) => {
                self.refused.remove(record.key);
                true
            }
            Err(failure) => {
                self.passed_over += 1;
                self.refused.insert(record.key.to_vec(), failure);
                false
            }
        }
    }

    /// Patients whose latest record was passed over; logs the partition's
    /// count once.
    pub fn finish(self) -> u64 {
        if self.passed_over > 0 {
            let reason = self.refused.values().next().map(ToString::to_string).unwrap_or_default();
            tracing::warn!(
                partition = self.partition,
                reason = "unauthenticated",
                records = self.passed_over,
                patients = self.refused.len(),
                error = %reason,
                "state records not sealed by a merger were passed over; the patients' latest are set aside"
            );
        }
        self.refused.len() as u64
    }
}

/// Decodes a partition's latest records (key -> value) into views, setting
/// aside records that are not views or whose view belongs to another key.
/// Keeping only views whose `patient_id` is their key also keeps one view per
/// patient, which the sorted part writer requires.
pub fn decode(latest: HashMap<Vec<u8>, Vec<u8>>, partition: i32) -> (Vec<PatientView>, SetAside) {
    let mut views = Vec::with_capacity(latest.len());
    let mut aside = SetAside::default();
    for (key, value) in latest {
        match serde_json::from_slice::<PatientView>(&value) {
            Ok(view) if view.patient_id.as_bytes() == key.as_slice() => views.push(view),
            Ok(_) => {
                aside.key_mismatch += 1;
                tracing::warn!(
                    partition,
                    reason = "key_mismatch",
                    "a state record's view is not of its key's patient; set aside"
                );
            }
            Err(e) => {
                aside.undecodable += 1;
                // serde's message may quote values (PHI): only the category and position.
                tracing::warn!(
                    partition,
                    reason = "undecodable",
                    error = %format!("{:?} error at line {} column {}", e.classify(), e.line(), e.column()),
                    "a state record is not a patient view; set aside"
                );
            }
        }
    }
    (views, aside)
}

/// Pushes `views` into `writer`, setting aside each view that does not fit
/// the catalog (the writer has written every view before it) and going on
/// with the next. Returns how many were set aside. `partition_of(i)` is the
/// partition `views[i]` was read from, for the log.
///
/// # Errors
/// Any other [`TableError`]: those are not about one view.
pub fn push_fitting<W: std::io::Write + Send>(
    writer: &mut PartWriter<W>,
    views: &[PatientView],
    partition_of: impl Fn(usize) -> i32,
) -> Result<u64, TableError> {
    let (mut start, mut unfit) = (0, 0);
    while start < views.len() {
        match writer.push(&views[start..]) {
            Ok(()) => break,
            Err(TableError::BadView { row, problem }) => {
                unfit += 1;
                let partition = partition_of(start + row);
                tracing::warn!(partition, reason = "unfit", problem = %problem, "a patient view does not fit the catalog; set aside");
                start += row + 1;
            }
            Err(other) => return Err(other),
        }
    }
    Ok(unfit)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn view(patient: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"patient_id": patient, "fields": {}, "version": {}, "event_count": 1,
            "updated_at": "2026-12-05T00:00:00.000Z", "open_conflicts": 0}))
        .unwrap()
    }

    #[test]
    fn undecodable_and_misfiled_records_are_set_aside_and_the_rest_kept() {
        let latest: HashMap<Vec<u8>, Vec<u8>> = [
            (b"pt-1".to_vec(), view("pt-1")),
            (b"pt-2".to_vec(), b"{not json".to_vec()),
            (b"pt-3".to_vec(), view("pt-1")),
            (b"pt-4".to_vec(), view("pt-4")),
        ]
        .into();
        let (mut views, aside) = decode(latest, 0);
        views.sort_by(|a, b| a.patient_id.cmp(&b.patient_id));
        let ids: Vec<&str> = views.iter().map(|v| v.patient_id.as_str()).collect();
        assert_eq!(ids, ["pt-1", "pt-4"]);
        assert_eq!(aside, SetAside { undecodable: 1, key_mismatch: 1, ..SetAside::default() });
        assert_eq!(aside.total(), 2);
    }
}
