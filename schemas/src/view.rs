//! The public view of a patient document: what the state topic carries, what
//! `tidemark fold` prints, what snapshots are built from.
//!
//! Key decision: the view has no CRDT internals (no coverage vectors, no
//! tombstones), only what a reader needs: each field's displayed value, the
//! concurrent values still in conflict with who wrote them, and the `version`
//! token an editor sends back as `observed`. It lives in the contract crate so
//! the archiver and integrators read it without knowing how merging works.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::OpId;
use crate::hlc::{Hlc, VersionVector};

/// One patient's record as of the events folded so far.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatientView {
    /// The patient.
    pub patient_id: String,
    /// Fields that have been written, by catalog path. Never-written fields
    /// are absent; a cleared register is present with a null value.
    pub fields: BTreeMap<String, FieldView>,
    /// The document's version vector: for each source, the greatest HLC folded.
    /// Send it back as an event's `observed` to supersede what you saw.
    pub version: VersionVector,
    /// Distinct events folded: exact up to 1,024, then a HyperLogLog estimate
    /// (standard error about 6.5%) so that state stays bounded.
    pub event_count: u64,
    /// The wall-clock time of the newest event folded, RFC 3339 UTC.
    pub updated_at: String,
    /// How many register fields hold a conflict right now.
    pub open_conflicts: u32,
}

/// A field's view; the shape follows the field's kind. Written as the
/// variant's fields alone; `Deserialize` tells the shapes apart by their keys
/// (see `view_de.rs`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum FieldView {
    /// A register: the greatest live write, and the other live writes.
    Register {
        /// The displayed value (null after a `clear`).
        value: serde_json::Value,
        /// Who wrote the displayed value.
        author: String,
        /// From which source.
        source: String,
        /// When.
        hlc: Hlc,
        /// Concurrent writes that did not see each other, other than the
        /// displayed one, greatest first. Empty when there is no conflict.
        conflicts: Vec<ConflictView>,
    },
    /// A set: its present elements, sorted.
    Set {
        /// The elements.
        values: Vec<String>,
    },
    /// A log: its entries in (hlc, source, event id, op) order.
    Log {
        /// The entries.
        entries: Vec<LogEntryView>,
    },
}

/// A live register write shown beside the displayed value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConflictView {
    /// The value written.
    pub value: serde_json::Value,
    /// Its author.
    pub author: String,
    /// Its source.
    pub source: String,
    /// Its HLC.
    pub hlc: Hlc,
    /// The event that wrote it.
    pub event_id: Uuid,
}

/// One log entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogEntryView {
    /// The entry's identity (event and op index); amendments point at it.
    pub id: OpId,
    /// Its author.
    pub author: String,
    /// Its source.
    pub source: String,
    /// Its HLC.
    pub hlc: Hlc,
    /// The text.
    pub text: String,
    /// The entry this one amends, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amends: Option<OpId>,
}

/// Formats milliseconds since the Unix epoch as RFC 3339 UTC with millisecond
/// precision, e.g. `2025-11-22T07:00:00.123Z`.
pub fn format_utc_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, ms % 1000)
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day); Howard
/// Hinnant's `civil_from_days`, restricted to dates on or after the epoch.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The decoder `FieldView` had: serde's untagged derive, kept to check
    /// that the keyed decoder reads every shape as it did.
    #[derive(Debug, Deserialize)]
    #[serde(untagged)]
    enum Untagged {
        Register { value: serde_json::Value, author: String, source: String, hlc: Hlc, conflicts: Vec<ConflictView> },
        Set { values: Vec<String> },
        Log { entries: Vec<LogEntryView> },
    }

    impl From<Untagged> for FieldView {
        fn from(u: Untagged) -> Self {
            match u {
                Untagged::Register { value, author, source, hlc, conflicts } => {
                    FieldView::Register { value, author, source, hlc, conflicts }
                }
                Untagged::Set { values } => FieldView::Set { values },
                Untagged::Log { entries } => FieldView::Log { entries },
            }
        }
    }

    fn arb_hlc() -> impl Strategy<Value = Hlc> {
        (0u64..1 << 45, 0u32..4).prop_map(|(w, l)| Hlc::new(w, l))
    }

    fn arb_field() -> impl Strategy<Value = FieldView> {
        let scalar = prop_oneof![
            Just(serde_json::Value::Null),
            any::<i32>().prop_map(serde_json::Value::from),
            "[a-z ]{0,8}".prop_map(serde_json::Value::from),
        ];
        let conflict = (scalar.clone(), "[a-z]{1,4}", "[a-z]{1,4}", arb_hlc(), any::<u128>()).prop_map(
            |(value, author, source, hlc, id)| ConflictView {
                value,
                author,
                source,
                hlc,
                event_id: Uuid::from_u128(id),
            },
        );
        let entry = (any::<u128>(), 0u32..64, "[a-z]{1,4}", arb_hlc(), "[a-z \"\\\\]{0,12}", any::<bool>()).prop_map(
            |(id, op, author, hlc, text, amends)| {
                let id = OpId { event_id: Uuid::from_u128(id), op };
                LogEntryView { id, author: author.clone(), source: author, hlc, text, amends: amends.then_some(id) }
            },
        );
        prop_oneof![
            (scalar, "[a-z]{1,4}", "[a-z]{1,4}", arb_hlc(), prop::collection::vec(conflict, 0..3)).prop_map(
                |(value, author, source, hlc, conflicts)| FieldView::Register { value, author, source, hlc, conflicts }
            ),
            prop::collection::vec("[a-z:0-9]{1,8}", 0..4).prop_map(|values| FieldView::Set { values }),
            prop::collection::vec(entry, 0..3).prop_map(|entries| FieldView::Log { entries }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Every view round-trips, and the keyed decoder reads it (also with
        /// a key dropped or an unknown key added) as the untagged derive did.
        #[test]
        fn keyed_decoder_reads_what_untagged_read(field in arb_field(), drop in any::<prop::sample::Index>(), extra in any::<bool>()) {
            let json = serde_json::to_value(&field).expect("serialises");
            let back: FieldView = serde_json::from_value(json.clone()).expect("round trip");
            prop_assert_eq!(&back, &field);
            let mut changed = json.as_object().expect("an object").clone();
            let keys: Vec<String> = changed.keys().cloned().collect();
            changed.remove(&keys[drop.index(keys.len())]);
            if extra {
                changed.insert("unknown".into(), serde_json::json!({"a": [1]}));
            }
            let text = serde_json::to_string(&changed).expect("serialises");
            let ours = serde_json::from_str::<FieldView>(&text).map_err(|e| e.to_string());
            let reference = serde_json::from_str::<Untagged>(&text).map(FieldView::from).map_err(|e| e.to_string());
            prop_assert_eq!(ours.is_ok(), reference.is_ok(), "{} -> {:?} vs {:?}", text, ours, reference);
            if let (Ok(a), Ok(b)) = (ours, reference) {
                prop_assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn a_shapeless_field_view_says_what_it_needs() {
        let err = serde_json::from_str::<FieldView>(r#"{"author":"c"}"#).expect_err("no shape").to_string();
        assert!(err.contains("`values` (a set)"), "{err}");
        let err = serde_json::from_str::<FieldView>(r#"{"values":[],"values":[]}"#).expect_err("twice").to_string();
        assert!(err.contains("duplicate field `values`"), "{err}");
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_utc_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_utc_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_utc_ms(1_763_794_800_123), "2025-11-22T07:00:00.123Z");
        assert_eq!(format_utc_ms(4_107_542_399_999), "2100-02-28T23:59:59.999Z");
    }

    #[test]
    fn field_views_round_trip_by_shape() {
        let json = r#"{"patient_id":"pt-1","fields":{
            "a":{"value":1,"author":"c","source":"s","hlc":{"wall_ms":1,"logical":0},"conflicts":[]},
            "b":{"values":["x:1"]},
            "c":{"entries":[{"id":{"event_id":"019a9f3e-8b1c-7cc2-9d4e-2f6a1b3c4d5e","op":0},
                 "author":"c","source":"s","hlc":{"wall_ms":1,"logical":0},"text":"t"}]}},
            "version":{"s":{"wall_ms":1,"logical":0}},"event_count":1,
            "updated_at":"1970-01-01T00:00:00.001Z","open_conflicts":0}"#;
        let v: PatientView = serde_json::from_str(json).expect("parses");
        assert!(matches!(v.fields["a"], FieldView::Register { .. }));
        assert!(matches!(v.fields["b"], FieldView::Set { .. }));
        assert!(matches!(v.fields["c"], FieldView::Log { .. }));
        let back: PatientView = serde_json::from_str(&serde_json::to_string(&v).expect("ser")).expect("re-parses");
        assert_eq!(v, back);
    }
}
