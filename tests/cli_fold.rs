//! `tidemark fold`, the offline reference: golden views, order and duplicate
//! independence through the real binary, and skipped lines reported by number.

mod common;

use std::fs;

use common::{data, s, tidemark};

fn golden_envelopes() -> Vec<String> {
    fs::read_to_string(data("envelopes.golden.ndjson"))
        .expect("golden envelopes")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

fn registry() -> String {
    s(&data("test-registry.toml")).to_owned()
}

#[test]
fn fold_of_the_golden_envelopes_gives_the_golden_views() {
    let want = fs::read_to_string(data("fold.golden.ndjson")).expect("golden views");
    let run = tidemark(&["fold", "--keys", &registry(), s(&data("envelopes.golden.ndjson"))], b"", &[]);
    run.code(0);
    assert_eq!(run.stdout, want, "views changed; if on purpose, regenerate tests/data/fold.golden.ndjson\n{run:?}");
    let patients: Vec<String> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("view is JSON")["patient_id"].to_string())
        .collect();
    let mut sorted = patients.clone();
    sorted.sort();
    assert_eq!(patients, sorted, "views are sorted by patient id");
}

#[test]
fn reversed_and_duplicated_input_folds_to_the_same_views() {
    let want = fs::read_to_string(data("fold.golden.ndjson")).expect("golden views");
    let mut lines = golden_envelopes();
    lines.reverse();
    lines.extend(golden_envelopes());
    lines.push(lines[0].clone());
    let input = lines.join("\n");
    let run = tidemark(&["fold", "--keys", &registry()], input.as_bytes(), &[]);
    run.code(0);
    assert_eq!(run.stdout, want, "{run:?}");
}

#[test]
fn bad_lines_are_reported_by_number_and_skipped() {
    let mut lines = golden_envelopes();
    let tampered = lines[4].replacen("\"sig\":\"", "\"sig\":\"AAAA", 1);
    lines[4] = tampered;
    lines.insert(1, "{not json".to_owned());
    let input = lines.join("\n");
    let run = tidemark(&["fold", "--keys", &registry()], input.as_bytes(), &[]);
    run.code(1).stderr_has("line 2: malformed:");
    assert!(run.stderr.contains("line 6: "), "the tampered last envelope is reported\n{run:?}");
    assert_eq!(run.stdout.lines().count(), 2, "pt-000789's only event was skipped\n{run:?}");
    assert!(!run.stdout.contains("pt-000789"), "{run:?}");

    // Without --keys the tampered signature is not checked, and its patient folds.
    let unverified = tidemark(&["fold"], input.as_bytes(), &[]);
    unverified.code(1).stderr_has("line 2: malformed:");
    assert!(!unverified.stderr.contains("line 6"), "{unverified:?}");
    assert!(unverified.stdout.contains("pt-000789"), "{unverified:?}");
}

/// A decimal folds into a view that prints the value signed. serde_json's
/// default float parser reads some exact texts one unit off (this one as
/// `1.0715660391465825e-75`), so without its `float_roundtrip` the view
/// showed another value than the event carried, and the exactness check
/// ingest and the merger make (docs/events.md, "Numbers") would have
/// passed a number that was then stored differently.
#[test]
fn a_decimal_folds_to_the_value_signed() {
    let event = serde_json::json!({
        "event_id": "019a9f3e-8b1c-7cc2-9d4e-2f6a1b3c4d5e", "patient_id": "pt-1", "source": "site-a-ehr",
        "author": "clin-1", "hlc": {"wall_ms": 1, "logical": 0},
        "ops": [{"op": "set", "path": "vitals.temperature_c", "value": 1.0715660391465826e-75}]
    });
    let envelope = common::pipeline::sign_event(&event);
    let payload =
        tidemark_schemas::dsse::Envelope::decode(envelope.as_bytes()).expect("an envelope").payload().to_vec();
    assert!(String::from_utf8(payload).expect("UTF-8").contains("\"value\":1.0715660391465826e-75}"));
    let run = tidemark(&["fold", "--keys", &registry()], envelope.as_bytes(), &[]);
    run.code(0);
    assert!(run.stdout.contains("\"vitals.temperature_c\":{\"value\":1.0715660391465826e-75,"), "{run:?}");
}
