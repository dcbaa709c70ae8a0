//! The published JSON Schema (`schemas/event.v1.schema.json`) and the Rust
//! types must agree: whatever the service serialises validates, and what the
//! schema refuses the service refuses too. Checked with an independent
//! validator (the `jsonschema` crate).

use proptest::prelude::*;
use serde_json::{Value, json};
use tidemark_schemas::{EditEvent, Hlc, Op};

fn validator() -> jsonschema::Validator {
    let schema: Value =
        serde_json::from_str(include_str!("../event.v1.schema.json")).expect("schema file is valid JSON");
    jsonschema::validator_for(&schema).expect("schema compiles")
}

fn ident() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._:@-]{1,64}"
}

fn op() -> impl Strategy<Value = Op> {
    let path = "[a-z][a-z0-9_]{0,8}(\\.[a-z][a-z0-9_]{0,8}){0,2}";
    let scalar = prop_oneof![
        any::<i64>().prop_map(Value::from),
        "[ -~]{0,20}".prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        (-1.0e9f64..1.0e9).prop_map(Value::from),
    ];
    prop_oneof![
        (path, scalar).prop_map(|(path, value)| Op::Set { path, value }),
        path.prop_map(|path| Op::Clear { path }),
        (path, "[a-z]{1,6}:[0-9]{1,8}").prop_map(|(path, v)| Op::Add { path, value: v.into() }),
        (path, "[a-z]{1,6}:[0-9]{1,8}").prop_map(|(path, v)| Op::Remove { path, value: v.into() }),
        (path, "[ -~]{0,40}").prop_map(|(path, text)| Op::Append { path, value: json!({"text": text}) }),
    ]
}

fn event() -> impl Strategy<Value = EditEvent> {
    (
        any::<u128>(),
        ident(),
        ident(),
        ident(),
        (any::<u64>(), any::<u32>()),
        proptest::option::of(proptest::collection::btree_map(ident(), (any::<u64>(), any::<u32>()), 0..4)),
        proptest::collection::vec(op(), 1..8),
        proptest::option::of(ident()),
    )
        .prop_map(|(bits, patient_id, source, author, (w, l), observed, ops, audience)| EditEvent {
            event_id: uuid::Builder::from_unix_timestamp_millis(
                (bits >> 64) as u64 & 0xFFFF_FFFF_FFFF,
                &bits.to_le_bytes()[..10].try_into().expect("10 bytes"),
            )
            .into_uuid(),
            patient_id,
            source,
            author,
            hlc: Hlc::new(w, l),
            observed: observed.map(|o| o.into_iter().map(|(k, (w, l))| (k, Hlc::new(w, l))).collect()),
            ops,
            audience,
        })
}

proptest! {
    #[test]
    fn every_serialised_event_matches_the_schema(ev in event()) {
        let v = serde_json::to_value(&ev).expect("serialises");
        let validator = validator();
        let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
        prop_assert!(errors.is_empty(), "schema refused {v}: {errors:?}");
    }
}

#[test]
fn schema_and_types_refuse_the_same_malformed_events() {
    let good = json!({
        "event_id": "019a9f3e-8b1c-7cc2-9d4e-2f6a1b3c4d5e", "patient_id": "pt-1", "source": "s", "author": "a",
        "hlc": {"wall_ms": 1, "logical": 0}, "ops": [{"op": "clear", "path": "vitals.heart_rate_bpm"}]
    });
    let validator = validator();
    assert!(validator.is_valid(&good));
    assert!(EditEvent::from_json(good.to_string().as_bytes()).is_ok());

    type Mutation = (&'static str, Box<dyn Fn(&mut Value)>);
    let mutations: Vec<Mutation> = vec![
        ("unknown top-level field", Box::new(|v| v["extra"] = json!(1))),
        ("missing author", Box::new(|v| drop(v.as_object_mut().map(|o| o.remove("author"))))),
        ("unknown op", Box::new(|v| v["ops"][0]["op"] = json!("delete"))),
        ("extra op field", Box::new(|v| v["ops"][0]["value"] = json!(1))),
        ("hlc as number", Box::new(|v| v["hlc"] = json!(5))),
        ("hlc extra key", Box::new(|v| v["hlc"]["skew"] = json!(5))),
        ("negative wall clock", Box::new(|v| v["hlc"]["wall_ms"] = json!(-1))),
        ("patient id not a string", Box::new(|v| v["patient_id"] = json!(7))),
    ];
    for (what, mutate) in mutations {
        let mut bad = good.clone();
        mutate(&mut bad);
        assert!(!validator.is_valid(&bad), "schema accepted {what}: {bad}");
        assert!(EditEvent::from_json(bad.to_string().as_bytes()).is_err(), "types accepted {what}: {bad}");
    }
}
