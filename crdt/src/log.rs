//! Grow-only log, ordered by (hlc, source, event id, op).
//!
//! Entries are never removed or edited: a correction is a new entry whose
//! `amends` points at the one it corrects, so the clinical record keeps what
//! was written, by whom and when.

use tidemark_schemas::OpId;
use tidemark_schemas::view::{FieldView, LogEntryView};

use super::coverage::WriteId;
use super::vecmap::{Key, VecMap};

/// One log entry's content.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogEntry {
    /// Who wrote it.
    pub author: Key,
    /// The text.
    pub text: String,
    /// The entry it amends.
    pub amends: Option<OpId>,
}

/// A log field's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Log {
    /// Ascending by id: entries mostly arrive in order, so an append is a push.
    pub(crate) entries: VecMap<WriteId, LogEntry>,
}

impl Log {
    /// Appends an entry; idempotent. Of two entries reusing one id, the
    /// greater by content is kept, whatever the arrival order.
    pub fn append(&mut self, id: WriteId, entry: LogEntry) {
        match self.entries.get_mut(&id) {
            Some(held) => {
                if entry > *held {
                    *held = entry;
                }
            }
            None => self.entries.insert(id, entry),
        }
    }

    /// Joins another replica's log into this one.
    pub fn merge(&mut self, other: &Log) {
        for (id, e) in &other.entries {
            self.append(id.clone(), e.clone());
        }
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The view: entries in order.
    pub fn view(&self) -> FieldView {
        let entries = self
            .entries
            .iter()
            .map(|(id, e)| LogEntryView {
                id: OpId { event_id: id.event_id, op: id.op },
                author: e.author.to_string(),
                source: id.source.to_string(),
                hlc: id.hlc,
                text: e.text.clone(),
                amends: e.amends,
            })
            .collect();
        FieldView::Log { entries }
    }
}
