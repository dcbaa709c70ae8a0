//! Validation of an edit event against the record catalog.
//!
//! Key decision: validation reports every violation it finds (up to a cap),
//! each naming the op index, the path and the reason, because an integration
//! team fixing a rejected event wants the whole list in one round trip, and a
//! stable reason code for dashboards.

use std::fmt;

use serde_json::Value;
use uuid::Uuid;

use crate::catalog::{Catalog, FieldKind, ValueType};
use crate::event::{EditEvent, Op};
use crate::hlc::Hlc;
use crate::reason::Reason;

/// At most this many violations are reported for one event; the rest are
/// summarised by the count.
const MAX_REPORTED: usize = 32;

/// What was wrong with one part of an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ViolationReason {
    /// `event_id` is not a UUID version 7.
    EventIdNotV7 {
        /// The version it has.
        version: usize,
    },
    /// `patient_id`, `source`, `author` or an `observed` source is malformed.
    BadIdentifier {
        /// Which identifier.
        what: &'static str,
        /// Why.
        why: &'static str,
    },
    /// The event has no ops.
    NoOps,
    /// More ops than the catalog allows.
    TooManyOps {
        /// How many the event has.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// `observed` names more sources than allowed.
    TooManyObserved {
        /// How many.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// An `observed` entry is not strictly older than the event's own HLC: an
    /// author cannot have seen the future.
    ObservedNotOlder {
        /// The observed source.
        source: String,
        /// Its observed HLC.
        observed: Hlc,
        /// The event's HLC.
        hlc: Hlc,
    },
    /// The event's HLC is further ahead of the receiver's clock than allowed.
    HlcInFuture {
        /// By how much it is ahead.
        ahead_ms: u64,
        /// The limit.
        max_ms: u64,
    },
    /// The path is not in the catalog.
    UnknownPath,
    /// The op does not apply to the field's kind.
    OpNotAllowed {
        /// The op.
        op: &'static str,
        /// The field's kind.
        kind: FieldKind,
    },
    /// The value does not fit the field's type.
    WrongType {
        /// The field's type.
        expected: ValueType,
        /// What was wrong with the value.
        why: String,
    },
    /// A string or text value is too long.
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The same register written twice, or the same element added and removed,
    /// in one event: their order would be ambiguous.
    Ambiguous {
        /// The earlier op that touches the same thing.
        first_op: usize,
    },
}

impl ViolationReason {
    /// The stable code of this rule.
    pub fn reason(&self) -> Reason {
        match self {
            ViolationReason::EventIdNotV7 { .. } => Reason::EventIdNotV7,
            ViolationReason::BadIdentifier { .. } => Reason::BadIdentifier,
            ViolationReason::NoOps => Reason::NoOps,
            ViolationReason::TooManyOps { .. } => Reason::TooManyOps,
            ViolationReason::TooManyObserved { .. } => Reason::TooManyObserved,
            ViolationReason::ObservedNotOlder { .. } => Reason::ObservedNotOlder,
            ViolationReason::HlcInFuture { .. } => Reason::HlcInFuture,
            ViolationReason::UnknownPath => Reason::UnknownPath,
            ViolationReason::OpNotAllowed { .. } => Reason::OpNotAllowed,
            ViolationReason::WrongType { .. } => Reason::WrongType,
            ViolationReason::TooLong { .. } => Reason::TooLong,
            ViolationReason::Ambiguous { .. } => Reason::AmbiguousOps,
        }
    }
}

impl fmt::Display for ViolationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ViolationReason::EventIdNotV7 { version } => write!(f, "event_id must be a UUIDv7, this one is v{version}"),
            ViolationReason::BadIdentifier { what, why } => write!(f, "{what} {why}"),
            ViolationReason::NoOps => write!(f, "the event has no ops"),
            ViolationReason::TooManyOps { count, max } => write!(f, "{count} ops, at most {max} allowed"),
            ViolationReason::TooManyObserved { count, max } => {
                write!(f, "observed lists {count} sources, at most {max} allowed")
            }
            ViolationReason::ObservedNotOlder { source, observed, hlc } => write!(
                f,
                "observed[{source}] = {observed} is not older than the event's hlc {hlc}; an author cannot observe the future"
            ),
            ViolationReason::HlcInFuture { ahead_ms, max_ms } => {
                write!(f, "hlc is {ahead_ms} ms ahead of the receiver's clock, at most {max_ms} ms allowed")
            }
            ViolationReason::UnknownPath => write!(f, "unknown field path"),
            ViolationReason::OpNotAllowed { op, kind } => write!(
                f,
                "op `{op}` does not apply to a {} field (allowed: {})",
                kind.name(),
                kind.allowed_ops().join(", ")
            ),
            ViolationReason::WrongType { expected, why } => write!(f, "wrong value type: expected {expected}, {why}"),
            ViolationReason::TooLong { len, max } => write!(f, "value is {len} bytes, at most {max} allowed"),
            ViolationReason::Ambiguous { first_op } => {
                write!(f, "touches the same field value as op {first_op} in the same event; split it into two events")
            }
        }
    }
}

/// One violation: where in the event, and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The op's index, when the violation is in an op.
    pub op_index: Option<usize>,
    /// The op's path, when the violation is in an op.
    pub path: Option<String>,
    /// What was wrong.
    pub reason: ViolationReason,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.op_index, &self.path) {
            (Some(i), Some(p)) => write!(f, "op {i} (`{p}`): {}", self.reason),
            (Some(i), None) => write!(f, "op {i}: {}", self.reason),
            _ => write!(f, "{}", self.reason),
        }
    }
}

/// An event that broke the catalog's rules: set it aside (reject or
/// dead-letter); retrying the same bytes cannot succeed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    /// The offending event.
    pub event_id: Uuid,
    /// The violations found, at most 32, in the order they were found.
    pub violations: Vec<Violation>,
    /// How many more were found but not listed.
    pub omitted: usize,
    /// The first violation's reason, kept apart so it stays fixed whatever
    /// happens to `violations`.
    first: Reason,
}

impl ValidationError {
    /// The first violation's reason: the one code an ingest answer, a DLQ
    /// header and a metric label carry (the message lists them all).
    pub fn reason(&self) -> Reason {
        self.first
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "event {} is invalid: ", self.event_id)?;
        for (i, v) in self.violations.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{v}")?;
        }
        if self.omitted > 0 {
            write!(f, "; and {} more", self.omitted)?;
        }
        Ok(())
    }
}

struct Collector {
    violations: Vec<Violation>,
    omitted: usize,
}

impl Collector {
    fn push(&mut self, op_index: Option<usize>, path: Option<&str>, reason: ViolationReason) {
        if self.violations.len() < MAX_REPORTED {
            self.violations.push(Violation { op_index, path: path.map(str::to_owned), reason });
        } else {
            self.omitted += 1;
        }
    }
}

impl Catalog {
    /// Checks an identifier (a patient id, source or author) as
    /// [`Self::validate`] checks an event's.
    ///
    /// # Errors
    /// Why it is refused, quoting nothing of it.
    pub fn check_identifier(&self, id: &str) -> Result<(), &'static str> {
        check_identifier(id, self.limits().max_id_bytes)
    }

    /// Checks an event against this catalog and its limits. `now_ms` is the
    /// receiver's clock, for the future-skew bound.
    ///
    /// # Errors
    /// A [`ValidationError`] listing what is wrong, each with op index, path
    /// and reason.
    pub fn validate(&self, event: &EditEvent, now_ms: u64) -> Result<(), ValidationError> {
        let mut out = Collector { violations: Vec::new(), omitted: 0 };
        let limits = self.limits();
        let version = event.event_id.get_version_num();
        if version != 7 {
            out.push(None, None, ViolationReason::EventIdNotV7 { version });
        }
        for (what, id) in [("patient_id", &event.patient_id), ("source", &event.source), ("author", &event.author)] {
            if let Err(why) = check_identifier(id, limits.max_id_bytes) {
                out.push(None, None, ViolationReason::BadIdentifier { what, why });
            }
        }
        if let Some(audience) = &event.audience
            && let Err(why) = check_identifier(audience, limits.max_id_bytes)
        {
            out.push(None, None, ViolationReason::BadIdentifier { what: "audience", why });
        }
        let ahead_ms = event.hlc.wall_ms.saturating_sub(now_ms);
        if ahead_ms > limits.max_future_skew_ms {
            out.push(None, None, ViolationReason::HlcInFuture { ahead_ms, max_ms: limits.max_future_skew_ms });
        }
        if let Some(observed) = &event.observed {
            if observed.len() > limits.max_observed_entries {
                let (count, max) = (observed.len(), limits.max_observed_entries);
                out.push(None, None, ViolationReason::TooManyObserved { count, max });
            }
            for (source, &seen) in observed {
                if check_identifier(source, limits.max_id_bytes).is_err() {
                    let why = "in observed is not a valid source name";
                    out.push(None, None, ViolationReason::BadIdentifier { what: "a source", why });
                } else if seen >= event.hlc {
                    let reason =
                        ViolationReason::ObservedNotOlder { source: source.clone(), observed: seen, hlc: event.hlc };
                    out.push(None, None, reason);
                }
            }
        }
        if event.ops.is_empty() {
            out.push(None, None, ViolationReason::NoOps);
        } else if event.ops.len() > limits.max_ops {
            out.push(None, None, ViolationReason::TooManyOps { count: event.ops.len(), max: limits.max_ops });
        } else {
            self.validate_ops(&event.ops, &mut out);
        }
        match out.violations.first() {
            None => Ok(()),
            Some(v) => {
                let first = v.reason.reason();
                Err(ValidationError {
                    event_id: event.event_id,
                    violations: out.violations,
                    omitted: out.omitted,
                    first,
                })
            }
        }
    }

    fn validate_ops(&self, ops: &[Op], out: &mut Collector) {
        // (path, element) -> first op index; ops per event are few (max_ops), so
        // a linear scan beats hashing.
        let mut touched: Vec<(&str, Option<&Value>, usize)> = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let path = op.path();
            let Some(spec) = self.field(path) else {
                out.push(Some(i), Some(path), ViolationReason::UnknownPath);
                continue;
            };
            if !spec.kind.allowed_ops().contains(&op.name()) {
                out.push(Some(i), Some(path), ViolationReason::OpNotAllowed { op: op.name(), kind: spec.kind });
                continue;
            }
            if let Some(value) = op.value() {
                let checked = if spec.kind == FieldKind::Log {
                    check_log_entry(value, self.limits().max_text_bytes)
                } else {
                    check_value(value, spec.value_type, self.limits().max_string_bytes)
                };
                if let Err(reason) = checked {
                    out.push(Some(i), Some(path), reason);
                    continue;
                }
            }
            let key = match spec.kind {
                FieldKind::Register => Some(None),
                FieldKind::Set => Some(op.value()),
                FieldKind::Log => None,
            };
            if let Some(element) = key {
                match touched.iter().find(|(p, e, _)| *p == path && *e == element) {
                    Some(&(_, _, first_op)) => out.push(Some(i), Some(path), ViolationReason::Ambiguous { first_op }),
                    None => touched.push((path, element, i)),
                }
            }
        }
    }
}

/// Identifiers travel as Kafka keys, label-free log context and file names of
/// test fixtures: printable ASCII without spaces keeps them safe everywhere.
fn check_identifier(id: &str, max: usize) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("is empty");
    }
    if id.len() > max {
        return Err("is longer than the catalog's max_id_bytes");
    }
    if !id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-')) {
        return Err("may hold only ASCII letters, digits and . _ : @ -");
    }
    Ok(())
}

fn wrong(expected: ValueType, why: impl Into<String>) -> ViolationReason {
    ViolationReason::WrongType { expected, why: why.into() }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn check_value(v: &Value, ty: ValueType, max_string: usize) -> Result<(), ViolationReason> {
    let found = || format!("found {}", json_kind(v));
    match ty {
        ValueType::Int => match v {
            Value::Number(n) if n.is_i64() => Ok(()),
            Value::Number(_) => Err(wrong(ty, "found a number that is not a 64-bit integer")),
            _ => Err(wrong(ty, found())),
        },
        ValueType::Decimal => v.as_number().map(|_| ()).ok_or_else(|| wrong(ty, found())),
        ValueType::Bool => v.as_bool().map(|_| ()).ok_or_else(|| wrong(ty, found())),
        ValueType::String | ValueType::Code | ValueType::Date | ValueType::Datetime | ValueType::Text => {
            let s = v.as_str().ok_or_else(|| wrong(ty, found()))?;
            if s.len() > max_string {
                return Err(ViolationReason::TooLong { len: s.len(), max: max_string });
            }
            match ty {
                ValueType::Code if !is_code(s) => Err(wrong(ty, "found a string that is not `system:code`")),
                ValueType::Date if crate::temporal::parse_date(s).is_none() => {
                    Err(wrong(ty, "found a string that is not a YYYY-MM-DD date"))
                }
                ValueType::Datetime if crate::temporal::parse_datetime(s).is_none() => {
                    Err(wrong(ty, "found a string that is not an RFC 3339 UTC instant like 2026-11-22T09:15:00Z"))
                }
                _ if s.chars().any(char::is_control) => Err(wrong(ty, "found a string with control characters")),
                _ => Ok(()),
            }
        }
    }
}

/// A log entry: `{"text": "...", "amends": {"event_id": "...", "op": n}}`.
fn check_log_entry(v: &Value, max_text: usize) -> Result<(), ViolationReason> {
    let ty = ValueType::Text;
    let Value::Object(entry) = v else {
        return Err(wrong(ty, format!("found {}; a log entry is an object with `text`", json_kind(v))));
    };
    if let Some(k) = entry.keys().find(|k| *k != "text" && *k != "amends") {
        return Err(wrong(ty, format!("log entry has unknown key `{k}` (allowed: text, amends)")));
    }
    let text = entry.get("text").and_then(Value::as_str).ok_or_else(|| wrong(ty, "log entry needs a string `text`"))?;
    if text.len() > max_text {
        return Err(ViolationReason::TooLong { len: text.len(), max: max_text });
    }
    if let Some(amends) = entry.get("amends") {
        let ok = amends.as_object().is_some_and(|a| {
            a.len() == 2
                && a.get("event_id").and_then(Value::as_str).is_some_and(|s| Uuid::parse_str(s).is_ok())
                && a.get("op").and_then(Value::as_u64).is_some_and(|n| n < u64::from(u32::MAX))
        });
        if !ok {
            return Err(wrong(ty, "`amends` must be {\"event_id\": <uuid>, \"op\": <index>}"));
        }
    }
    Ok(())
}

fn is_code(s: &str) -> bool {
    let Some((system, code)) = s.split_once(':') else { return false };
    !system.is_empty()
        && system.len() <= 32
        && system.as_bytes()[0].is_ascii_lowercase()
        && system.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !code.is_empty()
        && code.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
