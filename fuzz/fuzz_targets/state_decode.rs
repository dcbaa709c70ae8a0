//! The merger's state decoder (`PatientDoc::decode`), which reads the
//! changelog topic on every partition assignment. The format is canonical
//! (crdt/src/codec.rs): whatever decodes must re-encode to the same
//! bytes, and merging a state with itself must change nothing.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tidemark_crdt::PatientDoc;

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = PatientDoc::decode(data) else { return };
    assert_eq!(doc.encode(), data, "a decoded state does not re-encode to its bytes");
    serde_json::to_vec(&doc.view()).expect("a view serializes");
    let mut merged = doc.clone();
    merged.merge(&doc).expect("a state merges with itself");
    assert_eq!(merged.encode(), data, "merging a state with itself changed it");
});
