//! The event decoder and the catalog validator, then the CRDT they feed.
//!
//! Input: NDJSON of edit events (payloads, not envelopes: the fuzzer cannot
//! forge signatures, so it mutates what a key holder could sign). For each
//! line: decode as `EditEvent`, `Catalog::validate`, and, signed by the test
//! key, `Verifier::verify_and_validate`, which must agree with decoding,
//! validating and the key's source and patient scope. The valid events are
//! then folded per patient forwards, backwards and twice over: the encoded
//! states must be identical (the CRDT's order independence and idempotence,
//! docs/design.md#crdt) and survive the state codec's round trip.

#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use tidemark_crdt::PatientDoc;
use tidemark_fuzz::{NOW_MS, TEST_PREFIX, TEST_SOURCE, fixtures};
use tidemark_schemas::EditEvent;

/// Lines signed and verified per input: signing and strict verification cost
/// far more than parsing, and one line already covers the agreement check.
const SIGNED_LINES: usize = 4;

fuzz_target!(|data: &[u8]| {
    let f = fixtures();
    let mut valid: Vec<EditEvent> = Vec::new();
    for (i, line) in data.split(|b| *b == b'\n').enumerate() {
        let decoded = EditEvent::from_json(line);
        let checked = decoded.as_ref().ok().map(|ev| f.catalog.validate(ev, NOW_MS));
        if i < SIGNED_LINES && !line.is_empty() {
            let envelope = f.sign(line);
            let verified = f.fast.verify_and_validate(envelope.as_bytes(), f.catalog, NOW_MS);
            let expected = match &decoded {
                Ok(ev) => {
                    line.len() <= f.catalog.limits().max_event_bytes
                        && ev.source == TEST_SOURCE
                        && ev.patient_id.starts_with(TEST_PREFIX)
                        && matches!(checked, Some(Ok(())))
                }
                Err(_) => false,
            };
            assert_eq!(verified.is_ok(), expected, "verifier disagrees: {:?}", verified.as_ref().err());
            if let (Ok(v), Ok(ev)) = (&verified, &decoded) {
                assert_eq!(v.event(), ev);
                assert_eq!(v.payload(), line, "the verified payload is not the signed bytes");
            }
        }
        if let (Ok(ev), Some(Ok(()))) = (decoded, checked) {
            valid.push(ev);
        }
    }
    if valid.is_empty() {
        return;
    }
    let forwards = fold(valid.iter());
    let backwards = fold(valid.iter().rev());
    let twice = fold(valid.iter().chain(valid.iter()));
    assert_eq!(forwards, backwards, "the fold depends on the order of events");
    assert_eq!(forwards, twice, "folding an event twice changed the state");
    for encoded in forwards.values() {
        let doc = PatientDoc::decode(encoded).expect("a state's own encoding decodes");
        assert_eq!(&doc.encode(), encoded, "the codec round trip changed the state");
        serde_json::to_vec(&doc.view()).expect("a view serializes");
    }
});

/// Folds events into one document per patient; returns the encoded states.
fn fold<'a>(events: impl Iterator<Item = &'a EditEvent>) -> BTreeMap<String, Vec<u8>> {
    let mut docs: BTreeMap<String, PatientDoc> = BTreeMap::new();
    for ev in events {
        let doc = docs.entry(ev.patient_id.clone()).or_insert_with(|| PatientDoc::new(ev.patient_id.clone()));
        doc.apply(ev).expect("a validated event applies");
    }
    docs.into_iter().map(|(p, d)| (p, d.encode())).collect()
}
