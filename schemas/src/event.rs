//! The edit event: the signed payload of a DSSE envelope.
//!
//! Field names and shapes are the wire contract (see `schemas/event.v1.schema.json`).
//! Unknown fields are rejected rather than ignored: a signed event whose
//! meaning depends on a field this version cannot see must not be half-applied.

use serde::{Deserialize, Serialize};
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
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::event_de::observed")]
    pub observed: Option<VersionVector>,
    /// The field operations, applied in order.
    pub ops: Vec<Op>,
    /// The deployment the event is meant for (e.g. `prod-eu`), signed with
    /// it: an ingest run with `--audience` refuses events for another one or
    /// for none, so events signed for staging cannot be replayed into
    /// production where both share keys. `None`: any ingest without
    /// `--audience` takes it. The fold ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
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
    /// A number in an op's value must be exactly what a 64-bit float holds
    /// (an integer of 64 bits, or a number whose float prints back with the
    /// same decimal value): rounding it would store another value than the
    /// one signed (src/number.rs). Op values decode only this way: they
    /// borrow their text from `bytes`.
    ///
    /// # Errors
    /// The JSON error; `duplicate field ...` for a repeated field of the
    /// event, its clocks or an op, `duplicate key ...` for a repeated key
    /// inside a value or `observed` (the hand-written `Deserialize` in
    /// event_de.rs), `inexact number ...` for a number a float cannot hold
    /// exactly. [`VerifyError::from_event_json`](crate::verify::VerifyError::from_event_json)
    /// tells them apart for the reason code.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// A field operation. The `op` tag selects the variant on the wire.
/// `Deserialize` is written out by hand (event_de.rs): one pass, no repeated keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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
    use proptest::prelude::*;

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

    /// Replaces the first `from` in `base` by `to` (which must change it) and
    /// checks that the decoder refuses the result with an error naming `message`.
    fn assert_refused_after(base: &str, from: &str, to: &str, message: &str) {
        let changed = base.replacen(from, to, 1);
        assert_ne!(changed, base, "{from}");
        let err = EditEvent::from_json(changed.as_bytes()).expect_err(message).to_string();
        assert!(err.contains(message), "{message}: {err}");
    }

    /// Regression: a repeated key inside a value or `observed` was kept
    /// last-wins, so readers keeping the first saw another event.
    #[test]
    fn repeated_keys_are_refused_at_any_depth() {
        assert!(EditEvent::from_json(SAMPLE.as_bytes()).is_ok());
        let cases = [
            ("\"author\"", "\"author\": \"x\", \"author\"", "duplicate field `author`"),
            ("{\"text\": \"seen today\"}", "{\"text\": \"a\", \"text\": \"seen today\"}", "duplicate key `text`"),
            (
                "{\"text\": \"seen today\"}",
                "{\"text\": \"seen today\", \"x\": [{\"k\": 1, \"k\": 2}]}",
                "duplicate key `k`",
            ),
            (
                "\"observed\": {",
                "\"observed\": {\"site-a-ehr\": {\"wall_ms\": 1, \"logical\": 0}, ",
                "duplicate key `site-a-ehr`",
            ),
            ("\"logical\": 4}", "\"logical\": 4, \"logical\": 5}", "duplicate field `logical`"),
            ("\"op\": \"set\"", "\"op\": \"add\", \"op\": \"set\"", "duplicate field `op`"),
            ("\"value\": 72", "\"value\": 71, \"value\": 72", "duplicate field `value`"),
            ("\"path\": \"notes\"", "\"path\": \"notes\", \"path\": \"notes\"", "duplicate field `path`"),
        ];
        for (from, to, message) in cases {
            assert_refused_after(SAMPLE, from, to, message);
        }
    }

    /// The hand-written op decoder keeps the derive's errors.
    #[test]
    fn op_errors_name_what_is_wrong() {
        let cases = [
            ("\"op\": \"set\"", "\"op\": \"delete\"", "unknown variant `delete`"),
            ("\"op\": \"set\", ", "", "missing field `op`"),
            ("\"op\": \"set\", \"path\": \"vitals.heart_rate_bpm\", ", "\"op\": \"set\", ", "missing field `path`"),
            (", \"value\": 72", "", "missing field `value`"),
            (
                "\"path\": \"demographics.postal_code\"",
                "\"path\": \"demographics.postal_code\", \"value\": 1",
                "unknown field `value`",
            ),
            ("\"value\": 72", "\"value\": 72, \"why\": 1", "unknown field `why`"),
            ("\"op\": \"set\"", "\"op\": 3", "invalid type"),
        ];
        for (from, to, message) in cases {
            assert_refused_after(SAMPLE, from, to, message);
        }
        let reordered = SAMPLE.replacen(
            "{\"op\": \"set\", \"path\": \"vitals.heart_rate_bpm\", \"value\": 72}",
            "{\"value\": 72, \"path\": \"vitals.heart_rate_bpm\", \"op\": \"set\"}",
            1,
        );
        assert_ne!(reordered, SAMPLE);
        assert_eq!(
            EditEvent::from_json(reordered.as_bytes()).expect("key order is free"),
            EditEvent::from_json(SAMPLE.as_bytes()).expect("sample")
        );
        let null_observed = SAMPLE.replacen(
            "\"observed\": {\"site-a-ehr\": {\"wall_ms\": 1763794700000, \"logical\": 0}}",
            "\"observed\": null",
            1,
        );
        assert!(EditEvent::from_json(null_observed.as_bytes()).expect("null observed").observed.is_none());
    }

    /// Regression (review): serde's internally tagged derive also read an op
    /// as an array, tag first; events signed that way were accepted, so the
    /// one-pass decoder reads them too, with the same length rules.
    #[test]
    fn ops_in_array_form_still_decode() {
        let object = EditEvent::from_json(SAMPLE.as_bytes()).expect("sample");
        let arrays = SAMPLE
            .replacen(
                "{\"op\": \"set\", \"path\": \"vitals.heart_rate_bpm\", \"value\": 72}",
                "[\"set\", \"vitals.heart_rate_bpm\", 72]",
                1,
            )
            .replacen(
                "{\"op\": \"clear\", \"path\": \"demographics.postal_code\"}",
                "[\"clear\", \"demographics.postal_code\"]",
                1,
            )
            .replacen(
                "{\"op\": \"append\", \"path\": \"notes\", \"value\": {\"text\": \"seen today\"}}",
                "[\"append\", \"notes\", {\"text\": \"seen today\"}]",
                1,
            );
        assert_eq!(arrays.matches('[').count(), SAMPLE.matches('[').count() + 3, "{arrays}");
        assert_eq!(EditEvent::from_json(arrays.as_bytes()).expect("array-form ops"), object);
        for (from, to, message) in [
            (
                "[\"clear\", \"demographics.postal_code\"]",
                "[\"clear\", \"demographics.postal_code\", 1]",
                "invalid length 3",
            ),
            ("[\"set\", \"vitals.heart_rate_bpm\", 72]", "[\"set\", \"vitals.heart_rate_bpm\"]", "invalid length 2"),
            ("[\"set\", \"vitals.heart_rate_bpm\", 72]", "[\"set\"]", "invalid length 1"),
            ("[\"set\", \"vitals.heart_rate_bpm\", 72]", "[]", "missing field `op`"),
            (
                "[\"append\", \"notes\", {\"text\": \"seen today\"}]",
                "[\"append\", \"notes\", {\"text\": \"a\", \"text\": \"b\"}]",
                "duplicate key `text`",
            ),
        ] {
            assert_refused_after(&arrays, from, to, message);
        }
    }

    fn arb_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            (-1e9f64..1e9).prop_map(serde_json::Value::from),
            "[a-z\\u{e9}\"\\\\]{0,6}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map("[a-z]{1,3}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Any value round-trips through the one-pass decoder as serde_json
        /// reads it, and naming any of its object keys twice is refused.
        #[test]
        fn values_round_trip_and_repeats_are_refused(value in arb_value(), pick in any::<prop::sample::Index>()) {
            let mut event: EditEvent = serde_json::from_str(SAMPLE).expect("sample");
            event.ops[4] = Op::Append { path: "notes".into(), value: value.clone() };
            let bytes = serde_json::to_vec(&event).expect("serialises");
            prop_assert_eq!(&EditEvent::from_json(&bytes).expect("round trip"), &event);
            prop_assert_eq!(&serde_json::from_slice::<serde_json::Value>(&bytes).expect("json")["ops"][4]["value"], &value);

            // Repeat one key of one object inside the value.
            let text = String::from_utf8(bytes).expect("utf-8");
            let value_at = text.find("\"op\":\"append\"").expect("the append op");
            let keys: Vec<usize> = text[value_at..].match_indices("\":").map(|(i, _)| value_at + i).collect();
            let inner: Vec<usize> = keys.into_iter().filter(|&end| {
                let start = text[..end].rfind('"').expect("key start");
                let key = &text[start + 1..end];
                !matches!(key, "op" | "path" | "value") && text[..start].ends_with(['{', ','])
            }).collect();
            if !inner.is_empty() {
                let end = inner[pick.index(inner.len())];
                let start = text[..end].rfind('"').expect("key start");
                let key = &text[start..end + 2];
                let twice = format!("{}{key}null,{}", &text[..start], &text[start..]);
                let err = EditEvent::from_json(twice.as_bytes()).expect_err("a repeated key").to_string();
                prop_assert!(err.contains("duplicate key"), "{}", err);
            }
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
