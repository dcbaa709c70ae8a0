//! The store: offsets travel with the data, the feed holds each patient
//! once at its latest version, the conflict index follows the views, and any
//! split of a record stream into batches gives the same store.

use proptest::prelude::*;

use super::*;

/// A view as the merger writes it (checked to parse as one).
fn view(patient: &str, conflict: bool, hr: u32) -> Vec<u8> {
    let conflicts = if conflict {
        r#"[{"value":71,"author":"b","source":"site-b","hlc":{"wall_ms":5,"logical":0},"event_id":"019a9f3e-8b1c-7cc2-9d4e-2f6a1b3c4d5e"}]"#
    } else {
        "[]"
    };
    let text = format!(
        r#"{{"patient_id":"{patient}","fields":{{"vitals.heart_rate_bpm":{{"value":{hr},"author":"a","source":"site-a","hlc":{{"wall_ms":5,"logical":0}},"conflicts":{conflicts}}}}},"version":{{"site-a":{{"wall_ms":{hr},"logical":0}}}},"event_count":1,"updated_at":"2026-01-01T00:00:00.000Z","open_conflicts":{}}}"#,
        u32::from(conflict)
    );
    serde_json::from_str::<PatientView>(&text).expect("a view");
    text.into_bytes()
}

fn record(partition: i32, offset: i64, patient: &str, conflict: bool, hr: u32) -> StateRecord {
    let through = u64::try_from(offset).expect("non-negative") + 1;
    StateRecord::read_view(partition, offset, patient, Some(view(patient, conflict, hr)), through).expect("a view")
}

fn everyone() -> [String; 1] {
    [String::new()]
}

fn all(_: &str) -> bool {
    true
}

#[test]
fn views_offsets_conflicts_and_the_feed_follow_the_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("opens");
    assert_eq!(store.offsets().expect("offsets"), vec![]);
    store
        .apply(
            &[record(0, 0, "pt-1", false, 70), record(1, 0, "pt-2", true, 80), record(0, 1, "pt-3", true, 90)],
            &[],
            true,
        )
        .expect("applies");
    assert_eq!(store.offsets().expect("offsets"), vec![(0, 2), (1, 1)]);
    let got = store.get("pt-2").expect("get").expect("stored");
    assert_eq!((got.partition, got.through, got.offset, got.json), (1, 1, 0, view("pt-2", true, 80)));
    assert!(store.get("pt-9").expect("get").is_none());
    let conflicted = store.conflicts(None, &everyone(), None, 10).expect("conflicts").0;
    assert_eq!(
        conflicted,
        vec![
            ("pt-2".into(), vec!["site-a".into(), "site-b".into()]),
            ("pt-3".into(), vec!["site-a".into(), "site-b".into()])
        ]
    );
    assert_eq!(store.conflicts(Some("pt-2"), &everyone(), None, 10).expect("page 2").0.len(), 1);
    assert!(store.conflicts(None, &everyone(), Some("site-c"), 10).expect("by source").0.is_empty());
    assert_eq!(store.conflicts(None, &["pt-3".to_owned(), "pt-1".to_owned()], None, 10).expect("scoped").0.len(), 1);
    let overlapping = ["pt-3".to_owned(), "pt-".to_owned(), "pt-3".to_owned()];
    assert_eq!(store.conflicts(None, &overlapping, None, 10).expect("overlapping prefixes").0.len(), 2, "each once");
    assert!(store.conflicts(None, &["zz".to_owned()], None, 10).expect("no such prefix").0.is_empty());
    let (first, more) = store.conflicts(None, &everyone(), None, 1).expect("a page of one");
    assert_eq!((first.len(), more.as_deref()), (1, Some("pt-2")), "a full page says where to go on");
    // pt-2's conflict resolves: it leaves the index and moves to the feed's end.
    store.apply(&[record(1, 1, "pt-2", false, 81)], &[], true).expect("applies");
    assert_eq!(store.conflicts(None, &everyone(), None, 10).expect("conflicts").0.len(), 1);
    let (feed, next) = store.changes(&Cursor::new(), 10, all).expect("feed");
    let order: Vec<(i32, i64, &str)> = feed.iter().map(|c| (c.partition, c.offset, c.patient.as_str())).collect();
    assert_eq!(order, vec![(0, 0, "pt-1"), (0, 1, "pt-3"), (1, 1, "pt-2")], "pt-2 filed at its newest record");
    assert_eq!(next, Cursor::from([(0, 1), (1, 1)]));
    assert_eq!(feed[2].version.as_ref().and_then(|v| v.get("site-a")).map(|h| h.wall_ms), Some(81));
    let (page, at) = store.changes(&Cursor::new(), 2, all).expect("a page of 2");
    assert_eq!((page.len(), &at), (2, &Cursor::from([(0, 1)])));
    let (rest, _) = store.changes(&at, 10, all).expect("the next page");
    assert_eq!(rest.iter().map(|c| c.patient.as_str()).collect::<Vec<_>>(), ["pt-2"]);
    let (hidden, moved) = store.changes(&Cursor::from([(0, 1)]), 10, |p| p != "pt-2").expect("scoped feed");
    assert!(hidden.is_empty() && moved == Cursor::from([(0, 1), (1, 1)]), "a hidden change still advances");
    // The same view again (a reseal) is not a change; a tombstone is one.
    // A reseal writes the same view at a new offset, without an edit offset.
    store.apply(&[StateRecord { through: 0, ..record(1, 2, "pt-2", false, 81) }], &[], true).expect("applies");
    assert!(store.changes(&next, 10, all).expect("feed").0.is_empty(), "a reseal is no change");
    store.apply(&[StateRecord { view: None, ..record(0, 2, "pt-3", false, 0) }], &[], true).expect("tombstone");
    assert!(store.get("pt-3").expect("get").is_none());
    assert!(store.conflicts(None, &everyone(), None, 10).expect("conflicts").0.is_empty());
    let (deleted, _) = store.changes(&next, 10, all).expect("feed");
    assert_eq!(deleted, vec![Change { partition: 0, offset: 2, patient: "pt-3".into(), version: None }]);
    assert_eq!(store.offsets().expect("offsets"), vec![(0, 3), (1, 3)]);
}

#[test]
fn a_view_of_another_patient_or_not_a_view_is_refused() {
    assert!(StateRecord::read_view(0, 0, "pt-2", Some(view("pt-1", false, 70)), 1).is_none());
    assert!(StateRecord::read_view(0, 0, "pt-1", Some(b"{}".to_vec()), 1).is_none());
    assert!(StateRecord::read_view(0, 0, "pt-1", None, 1).is_some(), "a tombstone");
}

#[test]
fn a_reopened_store_resumes_where_it_stood() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(dir.path()).expect("opens");
        store.apply(&[record(2, 41, "pt-1", false, 70)], &[], true).expect("applies");
        // Not yet durable, but visible at once.
        store.apply(&[record(2, 42, "pt-2", false, 70)], &[], false).expect("applies");
        assert!(store.get("pt-2").expect("get").is_some());
    }
    let store = Store::open(dir.path()).expect("reopens");
    let offsets = store.offsets().expect("offsets");
    assert!(offsets == vec![(2, 42)] || offsets == vec![(2, 43)], "a whole commit or none: {offsets:?}");
    assert_eq!(store.get("pt-2").expect("get").is_some(), offsets == vec![(2, 43)], "views and offsets together");
    assert_eq!(store.get("pt-1").expect("get").map(|s| s.offset), Some(41));
    assert!(!store.changes(&Cursor::new(), 10, all).expect("feed").0.is_empty());
}

#[test]
fn through_never_goes_back_and_the_etag_follows_the_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("opens");
    store.apply(&[StateRecord { through: 9, ..record(0, 5, "pt-1", false, 70) }], &[], true).expect("applies");
    let first = store.get("pt-1").expect("get").expect("stored");
    // A record without the header (through 0), e.g. from an older merger.
    store.apply(&[StateRecord { through: 0, ..record(0, 6, "pt-1", false, 71) }], &[], true).expect("applies");
    let second = store.get("pt-1").expect("get").expect("stored");
    assert_eq!(second.through, 9);
    assert_ne!(first.etag(), second.etag());
    assert_eq!(first.etag().len(), 34);
}

proptest! {
    /// Applying a stream of records in any split into batches leaves the
    /// same views, offsets, conflict index and feed order.
    #[test]
    fn any_batching_gives_the_same_store(
        stream in proptest::collection::vec(
            (0i32..3, 0usize..6, any::<bool>(), 60u32..64, prop::bool::weighted(0.15), 0u8..3),
            1..40,
        ),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut next = [0i64; 3];
        // Tombstones, and reseals (the same view without an edit offset).
        let records: Vec<StateRecord> = stream.iter().map(|&(p, who, conflict, hr, tombstone, kind)| {
            let offset = next[usize::try_from(p).expect("small")];
            next[usize::try_from(p).expect("small")] += 1;
            let r = record(p, offset, &format!("pt-{p}-{who}"), conflict, hr);
            match (tombstone, kind) {
                (true, _) => StateRecord { view: None, ..r },
                (false, 0) => StateRecord { through: 0, ..r },
                _ => r,
            }
        }).collect();
        let whole = tempfile::tempdir().expect("tempdir");
        let split = tempfile::tempdir().expect("tempdir");
        let (a, b) = (Store::open(whole.path()).expect("opens"), Store::open(split.path()).expect("opens"));
        a.apply(&records, &[], true).expect("applies");
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(records.len() + 1)).collect();
        cuts.sort_unstable();
        let mut start = 0;
        for cut in cuts.into_iter().chain([records.len()]) {
            b.apply(&records[start..cut], &[], true).expect("applies");
            start = cut;
        }
        prop_assert_eq!(a.offsets().expect("o"), b.offsets().expect("o"));
        prop_assert_eq!(a.conflicts(None, &everyone(), None, 100).expect("c"), b.conflicts(None, &everyone(), None, 100).expect("c"));
        let feed = |s: &Store| s.changes(&Cursor::new(), 1000, all).expect("f").0;
        prop_assert_eq!(feed(&a), feed(&b));
        for r in &records {
            prop_assert_eq!(a.get(&r.patient).expect("g").map(|s| s.json), b.get(&r.patient).expect("g").map(|s| s.json));
        }
    }
}

#[test]
fn a_listing_that_spends_its_budget_drops_no_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("opens");
    let n = i64::try_from(SCAN_BUDGET).expect("small");
    let records: Vec<StateRecord> = (0..=n).map(|o| record(0, o, &format!("pt-{o:06}"), o == n, 70)).collect();
    store.apply(&records, &[], true).expect("applies");
    let last = format!("pt-{n:06}");
    let only_last = |p: &str| p == last;
    let (first, at) = store.changes(&Cursor::new(), 10, only_last).expect("first call");
    assert!(first.is_empty(), "the budget ends the first call before the visible change");
    assert_eq!(at, Cursor::from([(0, n - 1)]), "the cursor stops at the last entry looked at");
    let (second, _) = store.changes(&at, 10, only_last).expect("second call");
    assert_eq!(second.iter().map(|c| c.patient.as_str()).collect::<Vec<_>>(), [last.as_str()]);
    let (page, more) = store.conflicts(None, &everyone(), None, 10).expect("conflicts");
    assert_eq!((page.len(), more), (1, None));
}
