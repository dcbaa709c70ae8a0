//! Ingest's NDJSON batch parser: `tidemark_schemas::lines::split_lines` (the exact
//! code `POST /v1/events` runs), then the batch verification ingest does, and
//! the merger's fold of the same lines, verified and unverified.
//!
//! Checks: line numbers strictly increase and are 1-based, no line holds a
//! newline or is blank, and the split stops one line past the batch bound;
//! one result per line; the fast batch verifier gives
//! every line the same outcome as strict one-by-one verification.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tidemark_crdt::fold::Fold;
use tidemark_fuzz::{NOW_MS, fixtures};

fuzz_target!(|data: &[u8]| {
    let f = fixtures();
    let lines = tidemark_schemas::lines::split_lines(data, true);
    assert!(lines.len() <= tidemark_schemas::lines::MAX_BATCH_LINES + 1, "the split must stop past the bound");
    let mut previous = 0;
    for (number, line) in &lines {
        assert!(*number > previous, "line numbers must increase");
        previous = *number;
        assert!(!line.contains(&b'\n'), "a line holds a newline");
        assert!(!line.iter().all(u8::is_ascii_whitespace), "a blank line was kept");
    }
    assert_eq!(tidemark_schemas::lines::split_lines(data, false), vec![(1, data)]);

    let raw: Vec<&[u8]> = lines.iter().map(|(_, l)| *l).collect();
    let fast = f.fast.verify_batch_and_validate(&raw, f.catalog, NOW_MS);
    let exact = f.exact.verify_batch_and_validate(&raw, f.catalog, NOW_MS);
    assert_eq!(fast.len(), raw.len());
    for (a, b) in fast.iter().zip(&exact) {
        let reason = |r: &Result<_, tidemark_schemas::verify::VerifyError>| r.as_ref().err().map(|e| e.reason());
        assert_eq!(reason(a), reason(b), "fast and exact batch verification disagree");
    }

    let skipped = Fold::new(f.catalog, Some(&f.fast)).fold_lines(&lines);
    assert!(skipped.len() <= lines.len());
    let mut unverified = Fold::new(f.catalog, None);
    unverified.fold_lines(&lines);
    for doc in unverified.docs().values() {
        serde_json::to_vec(&doc.view()).expect("a view serializes");
    }
});
