//! The edit event: the signed payload of a DSSE envelope.
//!
//! Field names and shapes are the wire contract (see `schemas/event.v1.schema.json`).
//! Unknown fields are rejected rather than ignored: a signed event whose
//! meaning depends on a field this version cannot see must not be half-applied.

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use crate::hlc::{Hlc, VersionVector};

/// The DSSE `payloadType` of a v1 edit event.
pub const EDIT_EVENT_PAYLOAD_TYPE: &str = "application/vnd.tidemark.edit.v1+json";

/// One clinician's edit of one patient record: a batch of field operations
/// sharing an identity, an author and a timestamp.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditEvent {
    /// Globally unique UUIDv7; with the op index it identifies every write, so
    /// applying an event twice changes nothing.
    pub event_id: Uuid,
    /// The patient whose record is edited; the Kafka partitioning key.
    pub patient_id: String,
    /// The EHR system that emitted the event; must equal the signing key's source.
    pub source: String,
    /// The clinician (or system user) who made the edit, as the source names them.
    pub author: String,
    /// The writer's hybrid logical clock at the edit.
    pub hlc: Hlc,
    /// The version vector the author saw (the view's `version`). `None` makes
    /// every write in this event *blind*: it covers all older writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<VersionVector>,
    /// The field operations, applied in order.
    pub ops: Vec<Op>,
}

impl EditEvent {
    /// Decodes an event from its exact (signed) JSON bytes. Every decoder of
    /// signed payloads goes through here.
    ///
    /// Besides the shape, a key repeated in any JSON object is refused, even
    /// inside a value or `observed` where serde would keep the last one: the
    /// bytes are stored and replayed as signed, and a reader that keeps the
    /// first key (many do) would see another note, another observed clock,
    /// than Tidemark folded.
    ///
    /// # Errors
    /// The JSON error, `duplicate key ...` for a repeated key.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice::<UniqueKeys>(bytes)?;
        serde_json::from_slice(bytes)
    }
}

/// Any JSON value in which no object names a key twice.
struct UniqueKeys;

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueKeys)
    }
}

impl<'de> Visitor<'de> for UniqueKeys {
    type Value = UniqueKeys;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<UniqueKeys>()?.is_some() {}
        Ok(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        let mut seen = BTreeSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                let key = crate::dsse::shorten(&key);
                return Err(de::Error::custom(format_args!("duplicate key `{key}` in an object")));
            }
            map.next_value::<UniqueKeys>()?;
            seen.insert(key);
        }
        Ok(self)
    }
}

/// A field operation. The `op` tag selects the variant on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum Op {
    /// Write a register's value.
    Set {
        /// Catalog field path, e.g. `vitals.heart_rate_bpm`.
        path: String,
        /// The new value; its JSON type must fit the field's value type.
        value: serde_json::Value,
    },
    /// Write null to a register (a write like any other, not a deletion of history).
    Clear {
        /// Catalog field path.
        path: String,
    },
    /// Add an element to a set.
    Add {
        /// Catalog field path.
        path: String,
        /// The element.
        value: serde_json::Value,
    },
    /// Remove the element's adds that this event observed (blind: all older adds).
    Remove {
        /// Catalog field path.
        path: String,
        /// The element.
        value: serde_json::Value,
    },
    /// Append an entry to a log.
    Append {
        /// Catalog field path.
        path: String,
        /// The entry: `{"text": ..., "amends": {"event_id": ..., "op": n}}` for text logs.
        value: serde_json::Value,
    },
}

impl Op {
    /// The field path the operation targets.
    pub fn path(&self) -> &str {
        match self {
            Op::Set { path, .. }
            | Op::Clear { path }
            | Op::Add { path, .. }
            | Op::Remove { path, .. }
            | Op::Append { path, .. } => path,
        }
    }

    /// The operation's wire name (`set`, `clear`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Set { .. } => "set",
            Op::Clear { .. } => "clear",
            Op::Add { .. } => "add",
            Op::Remove { .. } => "remove",
            Op::Append { .. } => "append",
        }
    }

    /// The operation's value, if it carries one (`clear` does not).
    pub fn value(&self) -> Option<&serde_json::Value> {
        match self {
            Op::Set { value, .. } | Op::Add { value, .. } | Op::Remove { value, .. } | Op::Append { value, .. } => {
                Some(value)
            }
            Op::Clear { .. } => None,
        }
    }
}

/// The identity of one write: the event that made it and the op's index in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpId {
    /// The event's id.
    pub event_id: Uuid,
    /// The op's zero-based index within the event.
    pub op: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"event_id": "019a9f3e-8b1c-7cc2-9d4e-2f6a1b3c4d5e", "patient_id": "pt-000123",
        "source": "site-a-ehr", "author": "clin-42", "hlc": {"wall_ms": 1763794800123, "logical": 4},
        "observed": {"site-a-ehr": {"wall_ms": 1763794700000, "logical": 0}},
        "ops": [{"op": "set", "path": "vitals.heart_rate_bpm", "value": 72},
                {"op": "add", "path": "allergies", "value": "rxnorm:7980"},
                {"op": "remove", "path": "allergies", "value": "snomed:300916003"},
                {"op": "clear", "path": "demographics.postal_code"},
                {"op": "append", "path": "notes", "value": {"text": "seen today"}}]}"#;

    #[test]
    fn parses_the_design_example() {
        let ev: EditEvent = serde_json::from_str(SAMPLE).expect("sample parses");
        assert_eq!(ev.ops.len(), 5);
        assert_eq!(ev.ops[0].name(), "set");
        assert_eq!(ev.ops[3].path(), "demographics.postal_code");
        assert!(ev.ops[3].value().is_none());
        let back = serde_json::to_string(&ev).expect("serializes");
        let again: EditEvent = serde_json::from_str(&back).expect("round trip parses");
        assert_eq!(ev, again);
    }

    #[test]
    fn rejects_unknown_fields_and_ops() {
        let extra = SAMPLE.replacen("\"author\"", "\"surprise\": 1, \"author\"", 1);
        assert!(serde_json::from_str::<EditEvent>(&extra).is_err());
        let bad_op = SAMPLE.replacen("\"op\": \"set\"", "\"op\": \"delete\"", 1);
        assert!(serde_json::from_str::<EditEvent>(&bad_op).is_err());
    }

    /// Regression: a repeated key inside a value or `observed` was kept
    /// last-wins, so readers keeping the first saw another event.
    #[test]
    fn repeated_keys_are_refused_at_any_depth() {
        assert!(EditEvent::from_json(SAMPLE.as_bytes()).is_ok());
        let cases = [
            ("\"author\"", "\"author\": \"x\", \"author\"", "`author`"),
            ("{\"text\": \"seen today\"}", "{\"text\": \"a\", \"text\": \"seen today\"}", "`text`"),
            ("\"observed\": {", "\"observed\": {\"site-a-ehr\": {\"wall_ms\": 1, \"logical\": 0}, ", "`site-a-ehr`"),
            ("\"logical\": 4}", "\"logical\": 4, \"logical\": 5}", "`logical`"),
        ];
        for (from, to, key) in cases {
            let twice = SAMPLE.replacen(from, to, 1);
            assert_ne!(twice, SAMPLE, "{from}");
            let err = EditEvent::from_json(twice.as_bytes()).expect_err(key).to_string();
            assert!(err.contains(&format!("duplicate key {key}")), "{err}");
        }
    }

    #[test]
    fn missing_observed_is_blind() {
        let blind = SAMPLE.replacen(r#""observed": {"site-a-ehr": {"wall_ms": 1763794700000, "logical": 0}},"#, "", 1);
        let ev: EditEvent = serde_json::from_str(&blind).expect("parses");
        assert!(ev.observed.is_none());
        assert!(!serde_json::to_string(&ev).expect("ser").contains("observed"));
    }
}
