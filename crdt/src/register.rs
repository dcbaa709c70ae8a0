//! Multi-value register with coverage.
//!
//! Keeps the live writes (those no write covers) and the union of all
//! coverage. Coverage only grows and a covered write can never become live
//! again, so dropping covered writes at once keeps state small without making
//! the result depend on arrival order: the state is a function of the set of
//! writes seen.

use std::cmp::Ordering;

use serde_json::Value;
use smallvec::SmallVec;
use tidemark_schemas::VersionVector;
use tidemark_schemas::view::{ConflictView, FieldView};

use super::coverage::{Coverage, WriteId};
use super::vecmap::Key;

/// One write to a register (`clear` writes `Value::Null`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegWrite {
    /// Identity and order.
    pub id: WriteId,
    /// Who wrote it.
    pub author: Key,
    /// What was written.
    pub value: Value,
}

impl RegWrite {
    /// Two different events that reuse one id (a misbehaving source) must not
    /// make replicas diverge: of two writes with one id, keep the greater by
    /// content, a deterministic choice whatever the arrival order.
    fn content_cmp(&self, other: &RegWrite) -> Ordering {
        self.author.cmp(&other.author).then_with(|| self.value.to_string().cmp(&other.value.to_string()))
    }
}

/// A register field's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Register {
    /// Live writes, ascending by id, ids unique. Inline: a register is in
    /// conflict (more than one) rarely, so one write needs no allocation.
    pub(crate) live: SmallVec<[RegWrite; 1]>,
    /// Union of the coverage of every write seen.
    pub(crate) cov: Coverage,
}

impl Register {
    /// Applies one write; idempotent.
    pub fn apply(&mut self, w: RegWrite, observed: Option<&VersionVector>) {
        let grew = self.cov.absorb(&w.id, observed);
        if !self.cov.covers(&w.id) {
            self.insert_live(w);
        }
        if grew {
            self.prune();
        }
    }

    /// Joins another replica's register into this one.
    pub fn merge(&mut self, other: &Register) {
        self.cov.join(&other.cov);
        for w in &other.live {
            self.insert_live(w.clone());
        }
        self.prune();
    }

    fn insert_live(&mut self, w: RegWrite) {
        match self.live.binary_search_by(|x| x.id.cmp(&w.id)) {
            Ok(i) => {
                if w.content_cmp(&self.live[i]) == Ordering::Greater {
                    self.live[i] = w;
                }
            }
            Err(i) => self.live.insert(i, w),
        }
    }

    fn prune(&mut self) {
        let cov = &self.cov;
        self.live.retain(|x| !cov.covers(&x.id));
    }

    /// Whether more than one write is live: writers who did not see each other.
    pub fn in_conflict(&self) -> bool {
        self.live.len() > 1
    }

    /// The live writes, ascending.
    pub fn live(&self) -> &[RegWrite] {
        &self.live
    }

    /// The view: the greatest live write displayed, the others as conflicts
    /// (greatest first). `None` when nothing is live (never written).
    pub fn view(&self) -> Option<FieldView> {
        let (shown, others) = self.live.split_last()?;
        let conflicts = others
            .iter()
            .rev()
            .map(|w| ConflictView {
                value: w.value.clone(),
                author: w.author.to_string(),
                source: w.id.source.to_string(),
                hlc: w.id.hlc,
                event_id: w.id.event_id,
            })
            .collect();
        Some(FieldView::Register {
            value: shown.value.clone(),
            author: shown.author.to_string(),
            source: shown.id.source.to_string(),
            hlc: shown.id.hlc,
            conflicts,
        })
    }
}
