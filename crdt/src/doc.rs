//! The patient document: one CRDT per written field, the document's version
//! vector, a distinct-event counter and the newest wall-clock time.

use serde::Deserialize as _;
use serde_json::Value;
use tidemark_schemas::view::{FieldView, PatientView, format_utc_ms};
use tidemark_schemas::{EditEvent, Op, OpId, VersionVector};

use super::counter::{EventCounter, event_hash};
use super::coverage::{self, Clock, WriteId};
use super::log::{Log, LogEntry};
use super::orset::OrSet;
use super::register::{RegWrite, Register};
use super::vecmap::{Key, VecMap};

/// One field's CRDT; the kind is fixed by the first op that touches the path
/// (and the catalog makes every op on a path agree).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldState {
    /// `set` / `clear`. Boxed: a register (its live write and coverage) is
    /// ten times the size of a set's or a log's handle, and unboxed it made
    /// every field that size, so a document's field array was mostly
    /// padding and a lookup's probes fell on separate cache lines.
    Register(Box<Register>),
    /// `add` / `remove`.
    Set(OrSet),
    /// `append`.
    Log(Log),
}

impl FieldState {
    fn kind(&self) -> &'static str {
        match self {
            FieldState::Register(_) => "register",
            FieldState::Set(_) => "set",
            FieldState::Log(_) => "log",
        }
    }
}

/// Why an event or a replica could not be applied. These are broken
/// invariants (the caller should have validated against the catalog): stop,
/// do not dead-letter silently.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApplyError {
    /// The event belongs to another patient.
    #[error("event {event_id} is for another patient than this document")]
    WrongPatient {
        /// The event.
        event_id: uuid::Uuid,
    },
    /// An op's kind disagrees with the field's existing kind.
    #[error("op {op} of event {event_id} is `{op_name}` on `{path}`, which holds a {kind}")]
    KindMismatch {
        /// The event.
        event_id: uuid::Uuid,
        /// The op index.
        op: usize,
        /// The op name.
        op_name: &'static str,
        /// The path.
        path: String,
        /// The field's kind.
        kind: &'static str,
    },
    /// A set element or log entry is not of the shape validation guarantees.
    #[error("op {op} of event {event_id} on `{path}` has a value of the wrong shape")]
    BadValue {
        /// The event.
        event_id: uuid::Uuid,
        /// The op index.
        op: usize,
        /// The path.
        path: String,
    },
}

/// A patient's record as a CRDT. `apply` and `merge` are idempotent,
/// commutative and associative: any order, duplication or split of the same
/// events gives an identical document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatientDoc {
    pub(crate) patient_id: String,
    /// By path, ascending.
    pub(crate) fields: VecMap<Key, FieldState>,
    pub(crate) version: Clock,
    pub(crate) counter: EventCounter,
    pub(crate) updated_ms: u64,
}

/// Room for this many fields in a new document (the catalog has 19), so the
/// first eight do not grow the vector twice, from 4 to 8, copying each field.
const FIELDS_HINT: usize = 8;

impl PatientDoc {
    /// An empty document for a patient.
    pub fn new(patient_id: impl Into<String>) -> Self {
        Self {
            patient_id: patient_id.into(),
            fields: VecMap::with_capacity(FIELDS_HINT),
            version: Clock::default(),
            counter: EventCounter::default(),
            updated_ms: 0,
        }
    }

    /// The patient.
    pub fn patient_id(&self) -> &str {
        &self.patient_id
    }

    /// The document's version vector.
    pub fn version(&self) -> VersionVector {
        coverage::to_version_vector(&self.version)
    }

    /// A field's state.
    pub fn field(&self, path: &str) -> Option<&FieldState> {
        self.fields.get(path)
    }

    /// Folds one event in. The event must have passed catalog validation;
    /// nothing is applied when it fails.
    ///
    /// # Errors
    /// [`ApplyError`] when the event is for another patient or an op
    /// contradicts a field's kind or shape.
    pub fn apply(&mut self, ev: &EditEvent) -> Result<(), ApplyError> {
        self.apply_counting(ev).map(|_| ())
    }

    /// As [`Self::apply`], and returns how many conflicts the event opened
    /// (negative when it resolved more than it opened): the change of
    /// [`Self::open_conflicts`], counted over the registers the event wrote
    /// instead of over every field twice.
    ///
    /// # Errors
    /// As [`Self::apply`].
    pub fn apply_counting(&mut self, ev: &EditEvent) -> Result<i64, ApplyError> {
        if ev.patient_id != self.patient_id {
            return Err(ApplyError::WrongPatient { event_id: ev.event_id });
        }
        self.check_ops(ev)?;
        let source = Key::from(ev.source.as_str());
        let author = Key::from(ev.author.as_str());
        let observed = ev.observed.as_ref();
        let mut opened = 0i64;
        for (i, op) in ev.ops.iter().enumerate() {
            let id = WriteId {
                hlc: ev.hlc,
                source: source.clone(),
                event_id: ev.event_id,
                op: u32::try_from(i).unwrap_or(u32::MAX),
            };
            match (field_mut(&mut self.fields, op), op) {
                (FieldState::Register(r), Op::Set { .. } | Op::Clear { .. }) => {
                    let value = if let Op::Set { value, .. } = op { value.clone() } else { Value::Null };
                    // Per op, so two ops of one event on one register add up right.
                    let was = i64::from(r.in_conflict());
                    r.apply(RegWrite { id, author: author.clone(), value }, observed);
                    opened += i64::from(r.in_conflict()) - was;
                }
                (FieldState::Set(s), Op::Add { value, .. }) => s.add(value.as_str().unwrap_or_default(), id),
                (FieldState::Set(s), Op::Remove { value, .. }) => {
                    s.remove(value.as_str().unwrap_or_default(), &id, observed);
                }
                (FieldState::Log(l), Op::Append { value, .. }) => {
                    // check_ops parsed every append's value already.
                    let (text, amends) = parse_log_value(value).unwrap_or_default();
                    l.append(id, LogEntry { author: author.clone(), text: text.to_owned(), amends });
                }
                _ => unreachable!("check_ops verified every op against its field's kind"),
            }
        }
        coverage::observe(&mut self.version, &ev.source, ev.hlc);
        self.counter.insert(event_hash(&ev.event_id));
        self.updated_ms = self.updated_ms.max(ev.hlc.wall_ms);
        Ok(opened)
    }

    fn check_ops(&self, ev: &EditEvent) -> Result<(), ApplyError> {
        for (i, op) in ev.ops.iter().enumerate() {
            let path = op.path();
            let want = op_kind(op);
            if let Some(existing) = self.fields.get(path)
                && existing.kind() != want
            {
                let (event_id, op_name, kind) = (ev.event_id, op.name(), existing.kind());
                return Err(ApplyError::KindMismatch { event_id, op: i, op_name, path: path.to_owned(), kind });
            }
            let shape_ok = match op {
                Op::Add { value, .. } | Op::Remove { value, .. } => value.is_string(),
                Op::Append { value, .. } => parse_log_value(value).is_some(),
                Op::Set { .. } | Op::Clear { .. } => true,
            };
            if !shape_ok {
                return Err(ApplyError::BadValue { event_id: ev.event_id, op: i, path: path.to_owned() });
            }
        }
        Ok(())
    }

    /// Joins another replica of the same patient's document into this one.
    ///
    /// # Errors
    /// [`ApplyError::WrongPatient`] for another patient's document,
    /// [`ApplyError::KindMismatch`] when a path has different kinds in the two.
    pub fn merge(&mut self, other: &PatientDoc) -> Result<(), ApplyError> {
        if other.patient_id != self.patient_id {
            return Err(ApplyError::WrongPatient { event_id: uuid::Uuid::nil() });
        }
        for (path, theirs) in &other.fields {
            if let Some(mine) = self.fields.get(&**path)
                && mine.kind() != theirs.kind()
            {
                let (op_name, kind) = (theirs.kind(), mine.kind());
                let event_id = uuid::Uuid::nil();
                return Err(ApplyError::KindMismatch { event_id, op: 0, op_name, path: path.to_string(), kind });
            }
        }
        for (path, theirs) in &other.fields {
            match (self.fields.get_mut(&**path), theirs) {
                (None, _) => {
                    self.fields.insert(path.clone(), theirs.clone());
                }
                (Some(FieldState::Register(m)), FieldState::Register(t)) => m.merge(t),
                (Some(FieldState::Set(m)), FieldState::Set(t)) => m.merge(t),
                (Some(FieldState::Log(m)), FieldState::Log(t)) => m.merge(t),
                _ => unreachable!("kinds were checked to agree above"),
            }
        }
        coverage::join(&mut self.version, &other.version);
        self.counter.merge(&other.counter);
        self.updated_ms = self.updated_ms.max(other.updated_ms);
        Ok(())
    }

    /// How many registers hold a conflict.
    pub fn open_conflicts(&self) -> u32 {
        let n = self.fields.values().filter(|f| matches!(f, FieldState::Register(r) if r.in_conflict())).count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// The public view.
    pub fn view(&self) -> PatientView {
        let fields = self
            .fields
            .iter()
            .filter_map(|(path, f)| {
                let v: Option<FieldView> = match f {
                    FieldState::Register(r) => r.view(),
                    FieldState::Set(s) => Some(s.view()),
                    FieldState::Log(l) => Some(l.view()),
                };
                v.map(|v| (path.to_string(), v))
            })
            .collect();
        PatientView {
            patient_id: self.patient_id.clone(),
            fields,
            version: self.version(),
            event_count: self.counter.count(),
            updated_at: format_utc_ms(self.updated_ms),
            open_conflicts: self.open_conflicts(),
        }
    }
}

fn op_kind(op: &Op) -> &'static str {
    match op {
        Op::Set { .. } | Op::Clear { .. } => "register",
        Op::Add { .. } | Op::Remove { .. } => "set",
        Op::Append { .. } => "log",
    }
}

/// The state of `op`'s field, created empty, of the kind `op` writes, when
/// the path has none yet.
fn field_mut<'a>(fields: &'a mut VecMap<Key, FieldState>, op: &Op) -> &'a mut FieldState {
    let path = op.path();
    let fresh = || match op {
        Op::Set { .. } | Op::Clear { .. } => FieldState::Register(Box::default()),
        Op::Add { .. } | Op::Remove { .. } => FieldState::Set(OrSet::default()),
        Op::Append { .. } => FieldState::Log(Log::default()),
    };
    fields.get_or_insert_with(path, || Key::from(path), fresh)
}

/// An append's text and what it amends, borrowed: `check_ops` and `apply`
/// both read it, and only the entry kept copies the text.
fn parse_log_value(value: &Value) -> Option<(&str, Option<OpId>)> {
    let obj = value.as_object()?;
    let text = obj.get("text")?.as_str()?;
    let amends = match obj.get("amends") {
        None => None,
        Some(a) => Some(OpId::deserialize(a).ok()?),
    };
    Some((text, amends))
}
