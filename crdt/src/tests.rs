//! Semantics table tests and convergence properties of the patient CRDT.

use proptest::prelude::*;
use serde_json::{Value, json};
use tidemark_schemas::view::FieldView;
use tidemark_schemas::{EditEvent, Hlc, Op, VersionVector};
use uuid::Uuid;

use super::*;

const PATIENT: &str = "pt-1";

fn ev(n: u8, source: &str, wall: u64, observed: Option<&[(&str, u64)]>, ops: Vec<Op>) -> EditEvent {
    EditEvent {
        event_id: Uuid::from_u64_pair(0x0190_0000_0000_7000 | u64::from(n), 0x8000_0000_0000_0000 | u64::from(n)),
        patient_id: PATIENT.into(),
        source: source.into(),
        author: format!("clin-{source}"),
        hlc: Hlc::new(wall, 0),
        observed: observed.map(|o| o.iter().map(|(s, w)| ((*s).to_owned(), Hlc::new(*w, 0))).collect()),
        ops,
        audience: None,
    }
}

fn set_hr(v: i64) -> Op {
    Op::Set { path: "vitals.heart_rate_bpm".into(), value: json!(v) }
}

fn add(e: &str) -> Op {
    Op::Add { path: "allergies".into(), value: json!(e) }
}

fn remove(e: &str) -> Op {
    Op::Remove { path: "allergies".into(), value: json!(e) }
}

fn fold(events: &[EditEvent]) -> PatientDoc {
    let mut d = PatientDoc::new(PATIENT);
    for e in events {
        d.apply(e).expect("test events apply");
    }
    d
}

fn register(d: &PatientDoc) -> (Value, Vec<Value>) {
    match d.view().fields.get("vitals.heart_rate_bpm") {
        Some(FieldView::Register { value, conflicts, .. }) => {
            (value.clone(), conflicts.iter().map(|c| c.value.clone()).collect())
        }
        other => panic!("heart rate view is {other:?}"),
    }
}

fn allergies(d: &PatientDoc) -> Vec<String> {
    match d.view().fields.get("allergies") {
        Some(FieldView::Set { values }) => values.clone(),
        None => vec![],
        other => panic!("allergies view is {other:?}"),
    }
}

#[test]
fn a_blind_write_wins_over_older_ones_without_a_conflict() {
    let d = fold(&[ev(1, "a", 10, None, vec![set_hr(60)]), ev(2, "b", 20, None, vec![set_hr(70)])]);
    assert_eq!(register(&d), (json!(70), vec![]));
    let d = fold(&[ev(2, "b", 20, None, vec![set_hr(70)]), ev(1, "a", 10, None, vec![set_hr(60)])]);
    assert_eq!(register(&d), (json!(70), vec![]), "a late older blind write stays covered");
}

/// Two clinicians who both saw version a@10 edit the same field.
fn concurrent_pair() -> (EditEvent, EditEvent, EditEvent) {
    let base = ev(1, "a", 10, None, vec![set_hr(60)]);
    let x = ev(2, "a", 20, Some(&[("a", 10)]), vec![set_hr(72)]);
    let y = ev(3, "b", 25, Some(&[("a", 10)]), vec![set_hr(75)]);
    (base, x, y)
}

#[test]
fn two_clinicians_set_the_same_field_concurrently_and_the_conflict_shows_both() {
    let (base, x, y) = concurrent_pair();
    for order in [[&base, &x, &y], [&y, &base, &x], [&x, &y, &base]] {
        let d = fold(&order.map(Clone::clone));
        assert_eq!(register(&d), (json!(75), vec![json!(72)]), "greatest shown, the other listed");
        assert_eq!(d.view().open_conflicts, 1);
        let Some(FieldView::Register { author, conflicts, .. }) = d.view().fields.get("vitals.heart_rate_bpm").cloned()
        else {
            panic!("no register view")
        };
        assert_eq!(author, "clin-b");
        assert_eq!((conflicts[0].author.as_str(), conflicts[0].hlc), ("clin-a", Hlc::new(20, 0)));
    }
}

#[test]
fn a_later_write_that_observed_both_resolves_the_conflict() {
    let (base, x, y) = concurrent_pair();
    let z = ev(4, "c", 30, Some(&[("a", 20), ("b", 25)]), vec![set_hr(73)]);
    let d = fold(&[y, z, base, x]);
    assert_eq!(register(&d), (json!(73), vec![]));
    assert_eq!(d.view().open_conflicts, 0);
}

#[test]
fn a_write_that_observed_only_one_side_leaves_the_other_in_conflict() {
    let (base, x, y) = concurrent_pair();
    let z = ev(4, "c", 30, Some(&[("a", 20)]), vec![set_hr(73)]);
    let d = fold(&[base, x, y, z]);
    assert_eq!(register(&d), (json!(73), vec![json!(75)]));
}

#[test]
fn an_empty_observed_covers_nothing() {
    let d = fold(&[ev(1, "a", 10, None, vec![set_hr(60)]), ev(2, "b", 20, Some(&[]), vec![set_hr(70)])]);
    assert_eq!(register(&d), (json!(70), vec![json!(60)]));
}

#[test]
fn clear_is_a_write_of_null() {
    let clear = Op::Clear { path: "vitals.heart_rate_bpm".into() };
    let d = fold(&[ev(1, "a", 10, None, vec![set_hr(60)]), ev(2, "a", 20, None, vec![clear])]);
    assert_eq!(register(&d), (Value::Null, vec![]));
}

#[test]
fn concurrent_add_and_remove_of_an_allergy_leaves_it_present() {
    let a = ev(1, "a", 10, None, vec![add("rxnorm:1")]);
    // b removes having observed nothing of a: a's add survives (add wins).
    let r = ev(2, "b", 20, Some(&[]), vec![remove("rxnorm:1")]);
    assert_eq!(allergies(&fold(&[a.clone(), r.clone()])), vec!["rxnorm:1"]);
    assert_eq!(allergies(&fold(&[r, a])), vec!["rxnorm:1"]);
}

#[test]
fn a_remove_that_observed_the_add_leaves_it_absent() {
    let a = ev(1, "a", 10, None, vec![add("rxnorm:1")]);
    let r = ev(3, "b", 30, Some(&[("a", 10)]), vec![remove("rxnorm:1")]);
    assert!(allergies(&fold(&[a.clone(), r.clone()])).is_empty());
    assert!(allergies(&fold(&[r, a])).is_empty());
}

#[test]
fn a_blind_remove_takes_older_adds_and_a_later_add_comes_back() {
    let a = ev(1, "a", 10, None, vec![add("rxnorm:1")]);
    let blind = ev(4, "c", 40, None, vec![remove("rxnorm:1")]);
    let readd = ev(5, "a", 50, None, vec![add("rxnorm:1")]);
    assert!(allergies(&fold(&[blind.clone(), a.clone()])).is_empty(), "a late old add stays removed");
    assert_eq!(allergies(&fold(&[readd, blind, a])), vec!["rxnorm:1"]);
}

#[test]
fn a_note_amendment_keeps_both_entries_in_order() {
    let first = ev(1, "a", 10, None, vec![Op::Append { path: "notes".into(), value: json!({"text": "BP hihg"}) }]);
    let amends = json!({"event_id": first.event_id, "op": 0});
    let fix = ev(
        2,
        "a",
        20,
        None,
        vec![Op::Append { path: "notes".into(), value: json!({"text": "BP high", "amends": amends}) }],
    );
    let d = fold(&[fix.clone(), first.clone(), fix]);
    let Some(FieldView::Log { entries }) = d.view().fields.get("notes").cloned() else { panic!("no log") };
    assert_eq!(entries.iter().map(|e| e.text.as_str()).collect::<Vec<_>>(), ["BP hihg", "BP high"]);
    assert_eq!(entries[1].amends.map(|a| a.event_id), Some(first.event_id));
}

#[test]
fn duplicates_do_not_count_twice() {
    let e = ev(1, "a", 10, None, vec![set_hr(60)]);
    let d = fold(&[e.clone(), e.clone(), e]);
    assert_eq!(d.view().event_count, 1);
}

#[test]
fn wrong_patient_and_kind_mismatch_are_refused_whole() {
    let mut d = fold(&[ev(1, "a", 10, None, vec![set_hr(60)])]);
    let before = d.clone();
    let mut other = ev(2, "a", 20, None, vec![set_hr(61)]);
    other.patient_id = "pt-2".into();
    assert!(matches!(d.apply(&other), Err(ApplyError::WrongPatient { .. })));
    let bad =
        ev(3, "a", 30, None, vec![set_hr(62), Op::Add { path: "vitals.heart_rate_bpm".into(), value: json!("x") }]);
    assert!(matches!(d.apply(&bad), Err(ApplyError::KindMismatch { op: 1, .. })));
    assert_eq!(d, before, "nothing of a refused event is applied");
}

#[test]
fn overwriting_one_field_keeps_state_bounded() {
    let mut d = PatientDoc::new(PATIENT);
    let mut sizes = vec![];
    for i in 0..5_000u32 {
        let wall = 1_000 + u64::from(i);
        let observed: Option<&[(&str, u64)]> = if i % 2 == 0 { None } else { Some(&[("a", 0), ("b", 0)]) };
        let mut e = ev(0, if i % 3 == 0 { "a" } else { "b" }, wall, observed, vec![set_hr(i64::from(i))]);
        e.event_id = Uuid::from_u64_pair(0x0190_0000_0000_7000, u64::from(i));
        if let Some(o) = e.observed.as_mut() {
            o.values_mut().for_each(|h| *h = Hlc::new(wall - 1, 0));
        }
        d.apply(&e).expect("applies");
        if i % 1000 == 999 {
            sizes.push(d.encode().len());
        }
    }
    assert!(sizes.windows(2).all(|w| w[1] <= w[0] + 8), "state grew with overwrites: {sizes:?}");
    assert!(sizes[sizes.len() - 1] < 1024, "state of one overwritten field is {} bytes", sizes[sizes.len() - 1]);
}

// ---- properties -------------------------------------------------------------

// One source and one element longer than a `Key` holds inline (24 bytes), so
// the properties also compare, order and encode names kept on the heap.
const SOURCES: [&str; 3] = ["a", "b", "urn:oid:2.16.840.1.113883.19.5"];
const ELEMENTS: [&str; 3] = ["rxnorm:1", "rxnorm:2", "snomed:300916003:qualifier-9"];

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0i64..5).prop_map(set_hr),
        (0i64..3).prop_map(|v| Op::Set { path: "demographics.given_name".into(), value: json!(format!("n{v}")) }),
        Just(Op::Clear { path: "vitals.heart_rate_bpm".into() }),
        (0usize..3).prop_map(|i| add(ELEMENTS[i])),
        (0usize..3).prop_map(|i| remove(ELEMENTS[i])),
        (0u8..4).prop_map(|t| Op::Append { path: "notes".into(), value: json!({"text": format!("t{t}")}) }),
    ]
}

prop_compose! {
    fn arb_event(n: u8)(
        source in 0usize..3,
        wall in 1u64..30,
        logical in 0u32..2,
        observed in proptest::option::of(proptest::collection::vec((0usize..3, 0u64..30), 0..3)),
        ops in proptest::collection::vec(arb_op(), 1..4),
    ) -> EditEvent {
        let mut e = ev(n, SOURCES[source], wall, None, vec![]);
        e.hlc = Hlc::new(wall, logical);
        // Observed entries strictly older than the event, as validation demands.
        e.observed = observed.map(|o| {
            o.into_iter()
                .map(|(s, w)| (SOURCES[s].to_owned(), Hlc::new(w.min(wall - 1), 0)))
                .collect::<VersionVector>()
        });
        // One write per register and element per event, as validation demands.
        let mut seen = std::collections::BTreeSet::new();
        e.ops = ops
            .into_iter()
            .filter(|op| match op {
                Op::Append { .. } => true,
                Op::Add { value, .. } | Op::Remove { value, .. } => seen.insert(value.to_string()),
                _ => seen.insert(op.path().to_owned()),
            })
            .collect();
        e
    }
}

fn arb_events() -> impl Strategy<Value = Vec<EditEvent>> {
    (1usize..24).prop_flat_map(|n| (0..n).map(|i| arb_event(i as u8)).collect::<Vec<_>>())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_order_with_duplicates_gives_identical_state(
        events in arb_events(),
        perm_seed in any::<u64>(),
        dups in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let reference = fold(&events);
        let mut shuffled = events.clone();
        shuffled.extend(dups.iter().map(|i| events[i.index(events.len())].clone()));
        let mut rng = perm_seed;
        for i in (1..shuffled.len()).rev() {
            rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            shuffled.swap(i, (rng >> 33) as usize % (i + 1));
        }
        let other = fold(&shuffled);
        prop_assert_eq!(reference.encode(), other.encode());
        prop_assert_eq!(reference.state_hash(), other.state_hash());
        prop_assert_eq!(
            serde_json::to_string(&reference.view()).expect("ser"),
            serde_json::to_string(&other.view()).expect("ser")
        );
    }

    #[test]
    fn fold_of_a_union_is_the_merge_of_folds(events in arb_events(), mask in any::<u32>(), overlap in any::<u32>()) {
        let (mut a, mut b) = (vec![], vec![]);
        for (i, e) in events.iter().enumerate() {
            if mask >> (i % 32) & 1 == 1 { a.push(e.clone()) } else { b.push(e.clone()) }
            if overlap >> (i % 32) & 1 == 1 { a.push(e.clone()); b.push(e.clone()) }
        }
        let whole = fold(&events);
        let (fa, fb) = (fold(&a), fold(&b));
        let mut ab = fa.clone();
        ab.merge(&fb).expect("merges");
        let mut ba = fb.clone();
        ba.merge(&fa).expect("merges");
        prop_assert_eq!(ab.encode(), whole.encode());
        prop_assert_eq!(ba.encode(), whole.encode());
        // The encoding writes absent and empty remove coverage alike; the
        // structures must agree too, or a later fold would diverge.
        prop_assert_eq!(&ab, &whole);
        prop_assert_eq!(&ba, &whole);
        let mut twice = ab.clone();
        twice.merge(&ab).expect("merges");
        prop_assert_eq!(twice.encode(), whole.encode(), "merge is idempotent");
    }

    #[test]
    fn merge_is_associative(x in arb_events(), y in arb_events(), z in arb_events()) {
        // Distinct ids per group so the three replicas hold different events.
        let tag = |mut v: Vec<EditEvent>, g: u64| {
            v.iter_mut().for_each(|e| e.event_id = Uuid::from_u64_pair(e.event_id.as_u64_pair().0, g << 8 | e.event_id.as_u64_pair().1));
            v
        };
        let (x, y, z) = (fold(&tag(x, 1)), fold(&tag(y, 2)), fold(&tag(z, 3)));
        let mut left = x.clone();
        left.merge(&y).expect("merges");
        left.merge(&z).expect("merges");
        let mut yz = y.clone();
        yz.merge(&z).expect("merges");
        let mut right = x.clone();
        right.merge(&yz).expect("merges");
        prop_assert_eq!(left.encode(), right.encode());
    }

    #[test]
    fn apply_counting_returns_the_change_of_open_conflicts(
        events in arb_events(),
        dups in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        repeat_op in any::<bool>(),
    ) {
        let mut stream = events.clone();
        stream.extend(dups.iter().map(|i| events[i.index(events.len())].clone()));
        if repeat_op {
            // Validation refuses two writes of one register in an event; the
            // count must still add up if one got through.
            stream.push(ev(200, "b", 31, Some(&[][..]), vec![set_hr(1), set_hr(2)]));
        }
        let mut d = PatientDoc::new(PATIENT);
        for e in &stream {
            let before = i64::from(d.open_conflicts());
            let opened = d.apply_counting(e).expect("applies");
            prop_assert_eq!(opened, i64::from(d.open_conflicts()) - before);
        }
    }

    #[test]
    fn encode_decode_round_trips(events in arb_events()) {
        let d = fold(&events);
        let bytes = d.encode();
        let back = PatientDoc::decode(&bytes).expect("decodes");
        prop_assert_eq!(&back, &d);
        prop_assert_eq!(back.encode(), bytes);
    }

    /// The merger's restore path: a document decoded from its changelog
    /// record folds on and merges exactly like the one that was never
    /// encoded.
    #[test]
    fn a_restored_document_folds_on_as_the_original(events in arb_events(), cut in any::<prop::sample::Index>(), dups in proptest::collection::vec(any::<prop::sample::Index>(), 0..4)) {
        let n = cut.index(events.len() + 1);
        let whole = fold(&events);
        let prefix = fold(&events[..n]).encode();
        let mut restored = PatientDoc::decode(&prefix).expect("decodes");
        for e in events[n..].iter().chain(dups.iter().map(|i| &events[i.index(events.len())])) {
            restored.apply(e).expect("applies");
        }
        prop_assert_eq!(&restored, &whole);
        let mut merged = PatientDoc::decode(&prefix).expect("decodes");
        merged.merge(&PatientDoc::decode(&fold(&events[n..]).encode()).expect("decodes")).expect("merges");
        prop_assert_eq!(&merged, &whole);
        prop_assert_eq!(merged.encode(), whole.encode());
    }

    #[test]
    fn decode_rejects_truncation_and_survives_garbage(events in arb_events(), cut in any::<prop::sample::Index>(), garbage in proptest::collection::vec(any::<u8>(), 0..256)) {
        let bytes = fold(&events).encode();
        let n = cut.index(bytes.len());
        prop_assert!(PatientDoc::decode(&bytes[..n]).is_err(), "a {n}-byte prefix decoded");
        let _ = PatientDoc::decode(&garbage);
        let mut framed = MAGIC.to_vec();
        framed.push(FORMAT_VERSION);
        framed.extend_from_slice(&garbage);
        let _ = PatientDoc::decode(&framed);
    }
}

#[test]
fn decode_names_what_is_wrong() {
    let bytes = fold(&[ev(1, "a", 10, None, vec![set_hr(60)])]).encode();
    let err = PatientDoc::decode(b"nope").expect_err("garbage");
    assert!(err.to_string().contains("magic"), "{err}");
    let mut v2 = bytes.clone();
    v2[4] = 2;
    assert!(PatientDoc::decode(&v2).expect_err("version").what.contains("format version 2"));
    let mut trailing = bytes;
    trailing.push(0);
    assert!(PatientDoc::decode(&trailing).expect_err("trailing").what.contains("trailing"));
}

/// A document with every kind of state: a register in conflict, a set with an
/// observed remove and a blind one, a log with an amendment, two sources.
fn every_kind() -> PatientDoc {
    let note = |n: u8, wall, value: Value| ev(n, "b", wall, None, vec![Op::Append { path: "notes".into(), value }]);
    let first = note(6, 60, json!({"text": "BP hihg"}));
    let amends = json!({"event_id": first.event_id, "op": 0});
    fold(&[
        ev(1, "a", 10, None, vec![set_hr(60), add("rxnorm:1"), add("snomed:3")]),
        ev(2, "b", 20, Some(&[("a", 10)]), vec![remove("rxnorm:1"), set_hr(61)]),
        ev(3, "a", 30, Some(&[]), vec![set_hr(62), add("rxnorm:2")]),
        ev(4, "c", 40, None, vec![remove("snomed:3"), Op::Clear { path: "demographics.phone".into() }]),
        ev(5, "a", 35, Some(&[("b", 20)]), vec![set_hr(63)]),
        first,
        note(7, 70, json!({"text": "BP high", "amends": amends})),
    ])
}

/// The changelog is the merger's durable state: a record written by an earlier
/// build must decode, and re-encode to the same bytes, in this one. The hash is
/// of the bytes the format's first version wrote for `every_kind()`; a change
/// here is a format change and needs a new `FORMAT_VERSION` and a reader for
/// the old one.
#[test]
fn the_encoding_of_a_known_document_is_unchanged() {
    let d = every_kind();
    assert_eq!(d.open_conflicts(), 1, "the fixture keeps a register in conflict");
    assert_eq!(allergies(&d), ["rxnorm:2"]);
    assert_eq!(d.state_hash(), "5eda036d4eade23815c4a006e6cf9bf3df00ccc384b52c48f529defca90b95c8");
    assert_eq!(PatientDoc::decode(&d.encode()).expect("decodes"), d);
}
