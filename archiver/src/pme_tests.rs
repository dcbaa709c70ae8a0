#![allow(clippy::unwrap_used)]
//! The encrypted part format against tampering: every byte a reader relies
//! on is authenticated, a part moved between files or snapshots is refused,
//! and so are the wrong key and altered key material.

use std::sync::{Arc, LazyLock};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use bytes::Bytes;
use proptest::prelude::*;
use tidemark_schemas::Catalog;
use tidemark_seal::{RecipientSecretKey, SnapshotKey};

use super::*;
use crate::manifest::{CutOffset, MANIFEST_FORMAT};
use crate::reader::ReadError;
use crate::reader::part::{BatchSink, Discard, read_part};
use crate::table::test_support::{decode, expected_identified, random_view, write_part};
use crate::table::{Profile, TableLayout, sort_views};

/// One snapshot: its manifest, its parts' bytes, its recipient, the
/// reader's keys.
struct Snapshot {
    manifest: Manifest,
    parts: Vec<Vec<u8>>,
    recipient: RecipientSecretKey,
    keys: ReadKeys,
}

const ROWS: usize = 40;

fn snapshot(id: &str, seed: u64) -> Snapshot {
    let catalog = Catalog::builtin();
    let layout = Arc::new(TableLayout::new(catalog, &Profile::Identified, 0).unwrap());
    let recipient = RecipientSecretKey::generate().unwrap();
    let keys = WriteKeys::new(id, &[recipient.public_key().clone()]).unwrap();
    let options = part_options(&PartOptions { max_row_group_rows: 16, ..PartOptions::default() }, &keys);
    let (mut parts, mut entries) = (Vec::new(), Vec::new());
    for p in 0..2 {
        let mut views: Vec<_> = (p * ROWS..(p + 1) * ROWS).map(|i| random_view(catalog, seed, i)).collect();
        sort_views(&layout, &mut views);
        let (file, summary) = write_part(&layout, &views, options.clone());
        entries.push(part_entry(format!("part-{p:05}-000.parquet"), &file, summary.rows, summary.row_groups).unwrap());
        parts.push(file);
    }
    let manifest = Manifest {
        format: MANIFEST_FORMAT.into(),
        snapshot_id: id.into(),
        profile: "identified".into(),
        created_at: "2026-12-05T00:00:00.000Z".into(),
        catalog_version: 1,
        topic: "t".into(),
        cut: vec![CutOffset { partition: 0, end_offset: 1 }],
        rows: 2 * ROWS as u64,
        schema_sha256: arrow_schema_fingerprint(&layout.schema()).unwrap(),
        parts: entries,
        encryption: keys.encryption,
        recipients: keys.recipients,
        archiver_key_id: String::new(),
        sequence: 1,
        previous_manifest_sha256: None,
        dataset_key_id: None,
        records_set_aside: 0,
        revision: 1,
        previous_revision_sha256: None,
    };
    let keys = read_keys(&manifest, &recipient).unwrap();
    Snapshot { manifest, parts, recipient, keys }
}

static A: LazyLock<Snapshot> = LazyLock::new(|| snapshot("0193a1b2-0001-7000-8000-000000000000", 1));
static B: LazyLock<Snapshot> = LazyLock::new(|| snapshot("0193a1b2-0002-7000-8000-000000000000", 2));

/// Keeps the batches read.
struct Collect(Vec<RecordBatch>);

impl BatchSink for Collect {
    fn start(&mut self, _: &SchemaRef) -> Result<(), ReadError> {
        Ok(())
    }
    fn batch(&mut self, batch: &RecordBatch) -> Result<(), ReadError> {
        self.0.push(batch.clone());
        Ok(())
    }
}

/// What the reader does once a part's hash matched: its tail, then every
/// page. The hash is left out on purpose: these tests show what the
/// encryption itself catches.
fn open(s: &Snapshot, part: usize, bytes: &[u8], keys: &ReadKeys) -> Result<Vec<RecordBatch>, String> {
    let entry = &s.manifest.parts[part];
    check_part_tail(bytes, entry, &s.manifest.encryption).map_err(|e| e.to_string())?;
    let mut sink = Collect(Vec::new());
    read_part(&s.manifest, entry, Bytes::copy_from_slice(bytes), keys, &mut sink).map_err(|e| e.to_string())?;
    Ok(sink.0)
}

#[test]
fn parts_read_back_exactly_what_was_written() {
    let catalog = Catalog::builtin();
    for (p, bytes) in A.parts.iter().enumerate() {
        let rows = decode(&open(&A, p, bytes, &A.keys).unwrap());
        let layout = TableLayout::new(catalog, &Profile::Identified, 0).unwrap();
        let mut views: Vec<_> = (p * ROWS..(p + 1) * ROWS).map(|i| random_view(catalog, 1, i)).collect();
        sort_views(&layout, &mut views);
        let want: Vec<_> = views.iter().map(|v| expected_identified(catalog, v)).collect();
        assert_eq!(rows, want, "part {p}");
        assert_eq!(&bytes[..4], b"PARE", "an encrypted footer");
    }
}

#[test]
fn a_part_swapped_within_or_across_snapshots_is_refused() {
    let err = open(&A, 0, &A.parts[1], &A.keys).unwrap_err();
    assert!(err.contains("it is another file"), "{err}");
    let err = open(&A, 0, &B.parts[0], &A.keys).unwrap_err();
    assert!(err.contains("it is another file"), "{err}");
    // Even with the tail checks passed (a reader without the manifest), the
    // other snapshot's data key does not open its pages.
    let entry = &A.manifest.parts[0];
    let err = read_part(&A.manifest, entry, Bytes::from(B.parts[0].clone()), &A.keys, &mut Discard { schema: None });
    assert!(err.unwrap_err().to_string().contains("does not decrypt"));
}

#[test]
fn the_wrong_key_is_refused() {
    let wrong = ReadKeys::new(SnapshotKey::generate().unwrap(), SnapshotKey::generate().unwrap()).unwrap();
    let err = open(&A, 0, &A.parts[0], &wrong).unwrap_err();
    assert!(err.contains("does not decrypt with the snapshot's data key"), "{err}");
    let stranger = RecipientSecretKey::generate().unwrap();
    let err = read_keys(&A.manifest, &stranger).err().unwrap().to_string();
    assert!(err.contains("is not encrypted for key"), "{err}");
}

#[test]
fn altered_key_material_in_the_manifest_is_refused() {
    let mut m = A.manifest.clone();
    let mut raw = m.encryption.wrapped_dek.into_bytes();
    raw[10] = if raw[10] == b'A' { b'B' } else { b'A' };
    m.encryption.wrapped_dek = String::from_utf8(raw).unwrap();
    let err = read_keys(&m, &A.recipient).unwrap_err().to_string();
    assert!(err.contains("wrapped data key") && err.contains("does not unwrap"), "{err}");
    let err = check_part_tail(&A.parts[0], &m.parts[0], &m.encryption).unwrap_err().to_string();
    assert!(err.contains("wraps another data key"), "{err}");
}

/// Where the part's footer key metadata lies in its bytes.
fn key_metadata_range(bytes: &[u8]) -> std::ops::Range<usize> {
    let needle = b"{\"keyMaterialType\"";
    let start = bytes.windows(needle.len()).position(|w| w == needle).unwrap();
    let end = start + bytes[start..].iter().position(|&b| b == b'}').unwrap() + 1;
    start..end
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// A flipped bit anywhere never yields other rows: it fails the tail
    /// checks or a GCM tag, or lands in a byte no reader authenticates and
    /// the rows read are the written ones (the leading magic, which arrow-rs
    /// does not check, and the 4-byte length before each page module, which
    /// it does not use: the authenticated page header gives the size). The
    /// manifest's hash covers those too.
    #[test]
    fn no_flipped_bit_changes_what_is_read(part in 0usize..2, at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut bytes = A.parts[part].clone();
        let i = at.index(bytes.len());
        bytes[i] ^= 1 << bit;
        if let Ok(read) = open(&A, part, &bytes, &A.keys) {
            let original = decode(&open(&A, part, &A.parts[part], &A.keys).unwrap());
            prop_assert_eq!(decode(&read), original, "a flip at {} of {} changed the rows", i, bytes.len());
        }
    }

    /// A file cut anywhere is refused, never read short.
    #[test]
    fn any_truncation_is_refused(part in 0usize..2, at in any::<prop::sample::Index>()) {
        let bytes = &A.parts[part][..at.index(A.parts[part].len())];
        prop_assert!(open(&A, part, bytes, &A.keys).is_err());
    }

    /// Altered key metadata in the file is named as such.
    #[test]
    fn altered_key_material_in_a_part_is_refused(at in any::<prop::sample::Index>(), to in any::<u8>()) {
        let mut bytes = A.parts[0].clone();
        let range = key_metadata_range(&bytes);
        let i = range.start + at.index(range.len());
        prop_assume!(bytes[i] != to);
        bytes[i] = to;
        let err = open(&A, 0, &bytes, &A.keys).unwrap_err();
        prop_assert!(err.contains("key material") || err.contains("encryption metadata"), "{}", err);
    }
}
