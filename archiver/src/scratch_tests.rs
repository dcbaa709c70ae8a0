#![allow(clippy::unwrap_used)]
use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

/// Writes `records` (sorted by key) as one run with `segment_bytes` segments.
fn run(records: &BTreeMap<Vec<u8>, Vec<u8>>, segment_bytes: usize) -> Run {
    let mut w = RunWriter::with_segment_bytes(segment_bytes).unwrap();
    for (k, v) in records {
        w.push(k, v).unwrap();
    }
    w.finish().unwrap()
}

/// Everything a merge from `from` yields: (key, run, value).
fn merged(runs: &[Run], from: &[u8]) -> Vec<(Vec<u8>, usize, Vec<u8>)> {
    let mut m = Merge::new(runs, from).unwrap();
    let mut out = Vec::new();
    while let Some(r) = m.next(|k, run, v| (k.to_vec(), run, v.to_vec())).unwrap() {
        out.push(r);
    }
    out
}

proptest! {
    /// Encoding, sealing, seeking and merging together: a merge of runs
    /// from any key yields exactly the records at or after it, in key
    /// order, each with its value and run, whatever the segment size.
    #[test]
    fn a_merge_from_any_key_yields_every_later_record_in_order(
        runs in proptest::collection::vec(
            proptest::collection::btree_map(
                proptest::collection::vec(any::<u8>(), 0..6),
                proptest::collection::vec(any::<u8>(), 0..40),
                0..40,
            ),
            0..5,
        ),
        segment_bytes in 1usize..200,
        from in proptest::collection::vec(any::<u8>(), 0..4),
    ) {
        let written: Vec<Run> = runs.iter().map(|r| run(r, segment_bytes)).collect();
        for (r, w) in runs.iter().zip(&written) {
            prop_assert_eq!(w.rows(), r.len() as u64);
        }
        let mut expected: Vec<(Vec<u8>, usize, Vec<u8>)> = runs
            .iter()
            .enumerate()
            .flat_map(|(i, r)| r.iter().filter(|(k, _)| k.as_slice() >= from.as_slice()).map(move |(k, v)| (k.clone(), i, v.clone())))
            .collect();
        expected.sort();
        prop_assert_eq!(merged(&written, &from), expected);
    }
}

#[test]
fn records_must_ascend() {
    let mut w = RunWriter::new().unwrap();
    w.push(b"b", b"1").unwrap();
    assert!(matches!(w.push(b"b", b"2"), Err(ScratchError::Unsorted { record: 1 })));
    assert!(matches!(w.push(b"a", b"2"), Err(ScratchError::Unsorted { record: 1 })));
}

/// What reaches the disk is ciphertext: a marker in every value appears
/// nowhere in the file, and a flipped byte is caught when read back.
#[test]
fn the_file_holds_no_plaintext_and_tampering_is_caught() {
    let marker = b"PATIENTMARKER";
    let records: BTreeMap<Vec<u8>, Vec<u8>> =
        (0..200u32).map(|i| (format!("{i:08}").into_bytes(), [&marker[..], &i.to_le_bytes()].concat())).collect();
    let r = run(&records, 512);
    assert!(r.segments.len() > 10, "several segments: {}", r.segments.len());
    let mut disk = vec![0u8; usize::try_from(r.disk_bytes()).unwrap()];
    r.file.read_exact_at(&mut disk, 0).unwrap();
    assert_eq!(r.file.metadata().unwrap().len(), r.disk_bytes(), "the segments are the whole file");
    assert!(!disk.windows(marker.len()).any(|w| w == marker), "plaintext on disk");
    assert!(!disk.windows(8).any(|w| w == b"00000042"), "keys on disk");
    let at = r.segments[3].offset + 20;
    let mut byte = [0u8];
    r.file.read_exact_at(&mut byte, at).unwrap();
    r.file.write_all_at(&[byte[0] ^ 1], at).unwrap();
    let mut m = Merge::new([&r], b"").unwrap();
    let err = loop {
        match m.next(|_, _, _| ()) {
            Ok(Some(())) => {}
            Ok(None) => panic!("a flipped byte went unnoticed"),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, ScratchError::Seal { segment: 3, .. }), "{err}");
}
