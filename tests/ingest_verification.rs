//! Issue 20, the front door: what ingest's signature checks cost and accept,
//! and what its answers may quote. The real binary against Tansu on 127.0.0.1.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use curve25519_dalek::constants::EIGHT_TORSION;
use curve25519_dalek::{EdwardsPoint, Scalar};
use ed25519_dalek::Signature;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha512};
use tidemark_schemas::dsse::{Envelope, pae};
use tidemark_schemas::keys::KeyRegistry;
use tidemark_schemas::verify::{BatchMode, Verifier};
use tidemark_schemas::{Catalog, EDIT_EVENT_PAYLOAD_TYPE};
use tidemark_testkit::{TansuBroker, unique_topic};

use common::data;
use common::ingest::Ingest;
use common::pipeline::{sign_event, test_key, workload};

const KEYID: &str = "test-site-a-ehr";

fn start(name: &str) -> (TansuBroker, Ingest) {
    let broker = TansuBroker::start().expect("tansu starts");
    let prefix = format!("{}.", unique_topic(name));
    let ingest = Ingest::spawn(broker.bootstrap(), &prefix, &[]);
    (broker, ingest)
}

fn envelope(payload: &[u8], sig: &[u8]) -> String {
    json!({
        "payloadType": EDIT_EVENT_PAYLOAD_TYPE,
        "payload": B64.encode(payload),
        "signatures": [{"keyid": KEYID, "sig": B64.encode(sig)}],
    })
    .to_string()
}

/// What only the key holder can make: a signature whose `R` is `[r]B` plus
/// a point of order 8. Strict Ed25519 refuses it; a batch equation accepts
/// it when the item's weight is a multiple of 8.
fn mixed_order_signature(payload: &[u8]) -> Signature {
    let key = test_key();
    let key = key.signing_key();
    let r = Scalar::from(987_654_321u64);
    let r_bytes = (EdwardsPoint::mul_base(&r) + EIGHT_TORSION[1]).compress().to_bytes();
    let mut h = Sha512::new();
    h.update(r_bytes);
    h.update(key.verifying_key().as_bytes());
    h.update(pae(EDIT_EVENT_PAYLOAD_TYPE, payload));
    let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
    Signature::from_components(r_bytes, (r + k * key.to_scalar()).to_bytes())
}

fn results(body: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["results"].as_array().unwrap_or_else(|| panic!("no results: {body}")).clone()
}

/// L1: an event that the sender's own batch makes pass the batch equation,
/// but whose signature strict Ed25519 (the merger's final word) refuses.
/// Ingest must refuse it rather than answer 202 for an event the merger
/// would dead-letter.
#[test]
fn issue_20_a_mixed_order_r_is_refused_at_ingest_as_the_merger_refuses_it() {
    let registry = KeyRegistry::from_toml_str(&std::fs::read_to_string(data("test-registry.toml")).unwrap()).unwrap();
    let fast = Verifier::new(registry).with_batch_mode(BatchMode::Fast);
    let found = (0..400u64).find_map(|seed| {
        let signed = &workload(1, 1, 5_000 + seed)[0].envelope;
        let payload = Envelope::decode(signed.as_bytes()).unwrap().payload().to_vec();
        let json = envelope(&payload, &mixed_order_signature(&payload).to_bytes());
        let now = u64::MAX / 2;
        let fast_accepts = fast.verify_batch_and_validate(&[json.as_bytes()], Catalog::builtin(), now)[0].is_ok();
        fast_accepts.then_some(json)
    });
    let json = found.expect("one event in 400 whose batch weight makes the batch equation accept (about 1 in 8)");
    assert!(fast_accepts_but_strict_refuses(&json), "the crafted event is not the gap this test is about");

    let (_broker, ingest) = start("mixed-r");
    let (status, _, body) = ingest.post("application/json", json.as_bytes());
    assert_eq!(status, 401, "ingest took an event the merger refuses: {body}");
    assert_eq!(results(&body)[0]["reason"], "bad_signature", "{body}");
}

fn fast_accepts_but_strict_refuses(json: &str) -> bool {
    let registry = KeyRegistry::from_toml_str(&std::fs::read_to_string(data("test-registry.toml")).unwrap()).unwrap();
    Verifier::new(registry).verify(json.as_bytes()).is_err()
}

/// M5: without a registered key a sender can only make bad signatures; a
/// request checks at most 16 of them before one verifies, and refuses the
/// rest unchecked. Each distinct verified payload buys 16 more checks.
#[test]
fn issue_20_an_unauthenticated_request_costs_at_most_16_signature_checks() {
    let (_broker, ingest) = start("verify-cap");
    // Valid events under the registered key id, signed by a key nobody registered.
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let forged: Vec<String> = workload(40, 1, 6_000)
        .iter()
        .map(|item| {
            let payload = Envelope::decode(item.envelope.as_bytes()).unwrap().payload().to_vec();
            tidemark_schemas::dsse::sign(EDIT_EVENT_PAYLOAD_TYPE, &payload, &stranger, KEYID).to_json()
        })
        .collect();
    let body: String = forged.iter().map(|e| format!("{e}\n")).collect();
    let (status, _, answer) = ingest.post("application/x-ndjson", body.as_bytes());
    assert_eq!(status, 401, "{answer}");
    let lines = results(&answer);
    assert_eq!(lines.len(), 40, "{answer}");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["reason"], "bad_signature", "line {}: {line}", i + 1);
        let unchecked = line["message"].as_str().unwrap().starts_with("not verified");
        assert_eq!(unchecked, i >= 16, "line {}: {line}", i + 1);
    }

    // A good line first proves the key: 16 more bad ones are checked (all 20
    // within the two allowances of 16).
    let good = workload(1, 1, 6_100)[0].envelope.clone();
    let body: String = std::iter::once(&good).chain(forged.iter().take(20)).map(|e| format!("{e}\n")).collect();
    let (status, _, answer) = ingest.post("application/x-ndjson", body.as_bytes());
    assert_eq!(status, 207, "{answer}");
    let lines = results(&answer);
    assert_eq!(lines[0]["result"], "accepted", "{answer}");
    assert!(lines[1..].iter().all(|l| !l["message"].as_str().unwrap().starts_with("not verified")), "{answer}");
}

/// L4: an answer says what was wrong and where, never a value of the payload.
#[test]
fn issue_20_answers_never_quote_a_payload_value() {
    let (_broker, ingest) = start("no-values");
    const MARKER: &str = "Jane Doe 1962-03-01";
    let mut event: Value =
        serde_json::from_slice(Envelope::decode(workload(1, 1, 7_000)[0].envelope.as_bytes()).unwrap().payload())
            .unwrap();
    event["hlc"] = MARKER.into();
    let (status, _, answer) = ingest.post("application/json", sign_event(&event).as_bytes());
    assert_eq!(status, 422, "{answer}");
    assert!(answer.contains("malformed_event") && answer.contains("line 1 column"), "{answer}");
    assert!(!answer.contains("Jane"), "the answer quotes the payload: {answer}");

    let broken = json!({"payloadType": EDIT_EVENT_PAYLOAD_TYPE, "payload": "", "signatures": MARKER}).to_string();
    let (status, _, answer) = ingest.post("application/json", broken.as_bytes());
    assert_eq!(status, 400, "{answer}");
    assert!(!answer.contains("Jane"), "the answer quotes the envelope: {answer}");
}

/// Finding 6: a number that a 64-bit float cannot hold exactly is refused
/// `inexact_number` (before, it was stored rounded: 202 for another value
/// than the one signed), the answer naming which number of which value and
/// never the number; the same number written exactly is taken.
#[test]
fn issue_20_a_number_a_float_cannot_hold_is_refused_and_not_quoted() {
    let (_broker, ingest) = start("inexact");
    let key = test_key();
    let mut event: Value =
        serde_json::from_slice(Envelope::decode(workload(1, 1, 7_100)[0].envelope.as_bytes()).unwrap().payload())
            .unwrap();
    event["ops"] = json!([{"op": "set", "path": "vitals.temperature_c", "value": 36.5}]);
    let text = event.to_string();
    let sign = |value: &str| {
        let payload = text.replacen("\"value\":36.5", &format!("\"value\":{value}"), 1);
        assert_ne!(payload, text, "{text}");
        tidemark_schemas::dsse::sign(EDIT_EVENT_PAYLOAD_TYPE, payload.as_bytes(), key.signing_key(), key.id()).to_json()
    };
    for (value, digits) in
        [("36.5000000000000000000001", "5000000000"), ("3.65e-400", "400"), ("36500000000000000000001", "365000")]
    {
        let (status, _, answer) = ingest.post("application/json", sign(value).as_bytes());
        assert_eq!(status, 422, "{value}: {answer}");
        let line = &results(&answer)[0];
        assert_eq!(line["reason"], "inexact_number", "{value}: {answer}");
        let message = line["message"].as_str().unwrap();
        assert!(message.contains("number 1 of this op's value") && message.contains("line 1 column"), "{message}");
        assert!(!message.contains(digits), "the answer quotes the number: {message}");
    }
    let (status, _, answer) = ingest.post("application/json", sign("3.650e1").as_bytes());
    assert_eq!(status, 202, "36.5 written another way is exact: {answer}");
}
