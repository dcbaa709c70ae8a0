use serde_json::json;

use super::*;

const NOW: u64 = 1_763_794_800_000;

fn event(ops: Value) -> EditEvent {
    let json = json!({
        "event_id": "019a9f3e-8b1c-7cc2-9d4e-2f6a1b3c4d5e",
        "patient_id": "pt-000123", "source": "site-a-ehr", "author": "clin-42",
        "hlc": {"wall_ms": NOW, "logical": 4},
        "ops": ops,
    });
    EditEvent::from_json(json.to_string().as_bytes()).expect("test event parses")
}

fn codes(ev: &EditEvent) -> Vec<&'static str> {
    match Catalog::builtin().validate(ev, NOW) {
        Ok(()) => vec![],
        Err(e) => e.violations.iter().map(|v| v.reason.reason().as_str()).collect(),
    }
}

fn op_codes(ops: Value) -> Vec<&'static str> {
    codes(&event(ops))
}

#[test]
fn accepts_a_valid_event_of_every_type() {
    let ops = json!([
        {"op": "set", "path": "demographics.given_name", "value": "Ada"},
        {"op": "set", "path": "demographics.birth_date", "value": "2000-02-29"},
        {"op": "set", "path": "demographics.sex", "value": "snomed:248152002"},
        {"op": "set", "path": "demographics.deceased", "value": false},
        {"op": "set", "path": "encounter.last_visit_at", "value": "2026-11-22T09:15:00.123Z"},
        {"op": "set", "path": "vitals.heart_rate_bpm", "value": 72},
        {"op": "set", "path": "vitals.temperature_c", "value": 36.6},
        {"op": "clear", "path": "demographics.postal_code"},
        {"op": "add", "path": "allergies", "value": "rxnorm:7980"},
        {"op": "remove", "path": "allergies", "value": "snomed:300916003"},
        {"op": "add", "path": "care_team", "value": "clin-42"},
        {"op": "append", "path": "notes", "value": {"text": "seen today"}},
        {"op": "append", "path": "notes", "value": {"text": "typo fixed",
            "amends": {"event_id": "019a9f3e-8b1c-7cc2-9d4e-2f6a1b3c4d5e", "op": 11}}},
    ]);
    assert_eq!(op_codes(ops), Vec::<&str>::new());
}

#[test]
fn each_op_violation_has_its_own_reason() {
    let cases: Vec<(Value, &str)> = vec![
        (json!({"op": "set", "path": "vitals.shoe_size", "value": 9}), "unknown_path"),
        (json!({"op": "add", "path": "vitals.heart_rate_bpm", "value": 9}), "op_not_allowed"),
        (json!({"op": "set", "path": "allergies", "value": "rxnorm:1"}), "op_not_allowed"),
        (json!({"op": "append", "path": "allergies", "value": {"text": "x"}}), "op_not_allowed"),
        (json!({"op": "clear", "path": "notes"}), "op_not_allowed"),
        (json!({"op": "set", "path": "vitals.heart_rate_bpm", "value": "72"}), "wrong_type"),
        (json!({"op": "set", "path": "vitals.heart_rate_bpm", "value": 72.5}), "wrong_type"),
        (json!({"op": "set", "path": "vitals.temperature_c", "value": true}), "wrong_type"),
        (json!({"op": "set", "path": "demographics.deceased", "value": "no"}), "wrong_type"),
        (json!({"op": "set", "path": "demographics.birth_date", "value": "2001-02-29"}), "wrong_type"),
        (json!({"op": "set", "path": "demographics.birth_date", "value": "22/11/2026"}), "wrong_type"),
        (json!({"op": "set", "path": "encounter.last_visit_at", "value": "2026-11-22T09:15:00+01:00"}), "wrong_type"),
        (json!({"op": "set", "path": "encounter.last_visit_at", "value": "2026-11-22T24:00:00Z"}), "wrong_type"),
        (json!({"op": "add", "path": "allergies", "value": "penicillin"}), "wrong_type"),
        (json!({"op": "add", "path": "allergies", "value": "RxNorm:7980"}), "wrong_type"),
        (json!({"op": "set", "path": "demographics.given_name", "value": "a\u{0}b"}), "wrong_type"),
        (json!({"op": "set", "path": "demographics.given_name", "value": "x".repeat(257)}), "too_long"),
        (json!({"op": "append", "path": "notes", "value": "bare text"}), "wrong_type"),
        (json!({"op": "append", "path": "notes", "value": {"text": "x", "by": "me"}}), "wrong_type"),
        (json!({"op": "append", "path": "notes", "value": {"text": "x", "amends": "nope"}}), "wrong_type"),
        (json!({"op": "append", "path": "notes", "value": {"text": "x".repeat(16385)}}), "too_long"),
    ];
    for (op, want) in cases {
        let got = op_codes(json!([op]));
        assert_eq!(got, vec![want], "op {op} gave {got:?}, wanted [{want}]");
    }
}

#[test]
fn ambiguous_ops_in_one_event_are_rejected() {
    let twice = json!([
        {"op": "set", "path": "vitals.heart_rate_bpm", "value": 70},
        {"op": "clear", "path": "vitals.heart_rate_bpm"},
    ]);
    assert_eq!(op_codes(twice), vec!["ambiguous_ops"]);
    let add_remove = json!([
        {"op": "add", "path": "allergies", "value": "rxnorm:1"},
        {"op": "remove", "path": "allergies", "value": "rxnorm:1"},
    ]);
    assert_eq!(op_codes(add_remove), vec!["ambiguous_ops"]);
    let distinct = json!([
        {"op": "add", "path": "allergies", "value": "rxnorm:1"},
        {"op": "remove", "path": "allergies", "value": "rxnorm:2"},
        {"op": "append", "path": "notes", "value": {"text": "a"}},
        {"op": "append", "path": "notes", "value": {"text": "b"}},
    ]);
    assert_eq!(op_codes(distinct), Vec::<&str>::new());
}

#[test]
fn event_level_violations() {
    let ok_op = json!([{"op": "set", "path": "vitals.heart_rate_bpm", "value": 70}]);

    let mut ev = event(ok_op.clone());
    ev.event_id = Uuid::parse_str("6ba7b810-9dad-41d1-80b4-00c04fd430c8").expect("v4 uuid");
    assert_eq!(codes(&ev), vec!["event_id_not_v7"]);

    let mut ev = event(ok_op.clone());
    ev.patient_id = String::new();
    assert_eq!(codes(&ev), vec!["bad_identifier"]);
    ev.patient_id = "pt 1".into();
    assert_eq!(codes(&ev), vec!["bad_identifier"]);
    ev.patient_id = "p".repeat(65);
    assert_eq!(codes(&ev), vec!["bad_identifier"]);

    assert_eq!(op_codes(json!([])), vec!["no_ops"]);
    let many: Vec<Value> =
        (0..65).map(|i| json!({"op": "append", "path": "notes", "value": {"text": format!("{i}")}})).collect();
    assert_eq!(op_codes(Value::Array(many)), vec!["too_many_ops"]);

    let mut ev = event(ok_op.clone());
    ev.hlc = Hlc::new(NOW + 300_001, 0);
    assert_eq!(codes(&ev), vec!["hlc_in_future"]);
    ev.hlc = Hlc::new(NOW + 300_000, 0);
    assert_eq!(codes(&ev), Vec::<&str>::new(), "exactly the bound is allowed");

    let mut ev = event(ok_op.clone());
    let mut observed = crate::VersionVector::new();
    observed.insert("site-b".into(), Hlc::new(NOW - 10, 0));
    observed.insert("site-a-ehr".into(), ev.hlc);
    ev.observed = Some(observed.clone());
    assert_eq!(codes(&ev), vec!["observed_not_older"]);
    observed.insert("site-a-ehr".into(), Hlc::new(NOW, 3));
    ev.observed = Some(observed.clone());
    assert_eq!(codes(&ev), Vec::<&str>::new());
    observed.insert("bad source".into(), Hlc::new(1, 0));
    ev.observed = Some(observed);
    assert_eq!(codes(&ev), vec!["bad_identifier"]);

    let mut ev = event(ok_op);
    ev.observed = Some((0..257).map(|i| (format!("s{i}"), Hlc::new(1, 0))).collect());
    assert_eq!(codes(&ev), vec!["too_many_observed"]);
}

#[test]
fn errors_name_event_op_path_and_reason() {
    let ev = event(json!([
        {"op": "set", "path": "vitals.heart_rate_bpm", "value": 70},
        {"op": "set", "path": "vitals.heart_rate_bpm_x", "value": 70},
        {"op": "add", "path": "allergies", "value": 5},
    ]));
    let err = Catalog::builtin().validate(&ev, NOW).expect_err("invalid");
    let msg = err.to_string();
    assert!(msg.contains("019a9f3e-8b1c-7cc2-9d4e-2f6a1b3c4d5e"), "{msg}");
    assert!(msg.contains("op 1 (`vitals.heart_rate_bpm_x`): unknown field path"), "{msg}");
    assert!(msg.contains("op 2 (`allergies`): wrong value type: expected code, found a number"), "{msg}");
    assert_eq!(err.reason(), Reason::UnknownPath);
}

#[test]
fn violations_are_capped() {
    let many: Vec<Value> = (0..64).map(|i| json!({"op": "set", "path": format!("nope.f{i}"), "value": 1})).collect();
    let err = Catalog::builtin().validate(&event(Value::Array(many)), NOW).expect_err("invalid");
    assert_eq!(err.violations.len(), MAX_REPORTED);
    assert_eq!(err.omitted, 64 - MAX_REPORTED);
    assert!(err.to_string().ends_with("and 32 more"));
}
