//! The workload is valid, pinned for a seed, and shaped as documented.

use std::collections::HashMap;

use tidemark_crdt::PatientDoc;
use tidemark_schemas::Catalog;

use super::*;

const PINNED: [(usize, u64, u64); 3] =
    [(500, 1, 0xd12e_cb0b_5d00_24f2), (2_000, 7, 0x0480_adb1_9fef_7e42), (100, 42, 0xb1e4_b522_93af_15a2)];

#[test]
fn every_event_is_valid_and_the_workload_is_deterministic() {
    let a = generate(500, 1);
    for e in &a {
        if let Err(err) = Catalog::builtin().validate(e, u64::MAX) {
            panic!("generated an invalid event {}: {err}", serde_json::to_string(e).unwrap_or_default());
        }
    }
    assert_eq!(a, generate(500, 1));
    assert_ne!(a, generate(500, 2));
}

/// FNV-1a of the workload's JSON: the benchmark figures in docs/benchmarks.md
/// were measured on these exact events, so a change of generator or RNG
/// that alters them must be deliberate (and re-measured).
fn fingerprint(events: &[EditEvent]) -> u64 {
    let bytes = serde_json::to_vec(events).expect("events serialise");
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

#[test]
fn the_workload_for_a_seed_is_pinned() {
    let got: Vec<(usize, u64, u64)> =
        [(500, 1), (2_000, 7), (100, 42)].iter().map(|&(n, s)| (n, s, fingerprint(&generate(n, s)))).collect();
    assert_eq!(got, PINNED);
}

#[test]
fn the_workload_has_the_documented_shape() {
    let events = generate(2_000, 7);
    let m = Mix::of(&events);
    assert_eq!(m.patients, 2_000);
    let per_patient = m.events as f64 / m.patients as f64;
    assert!((4.5..=6.0).contains(&per_patient), "{per_patient} events per patient");
    assert!(events.iter().all(|e| (1..=5).contains(&e.ops.len())));
    let share = |n: usize| n as f64 / m.ops as f64;
    assert!((0.35..0.55).contains(&share(m.sets)), "{m}");
    assert!((0.35..0.55).contains(&share(m.registers)), "{m}");
    assert!((0.05..0.15).contains(&share(m.notes)), "{m}");
    assert!(m.removes > m.sets / 10, "{m}");
    let observed = m.observed as f64 / m.events as f64;
    assert!((0.15..0.45).contains(&observed), "{m}");
    for e in &events {
        assert_eq!(e.event_id.get_version_num(), 7, "{}", e.event_id);
        assert_eq!(e.event_id.get_variant(), uuid::Variant::RFC4122);
        let older = e.observed.iter().flatten().all(|(_, seen)| *seen < e.hlc);
        assert!(older, "observed is strictly older than the event's HLC");
    }
    let sources: std::collections::BTreeSet<&str> = events.iter().map(|e| e.source.as_str()).collect();
    assert_eq!(sources.len(), SOURCES.len());
}

#[test]
fn removes_name_present_codes_and_some_edits_conflict() {
    let events = generate(2_000, 3);
    let mut docs: HashMap<&str, PatientDoc> = HashMap::new();
    for e in &events {
        let doc = docs.entry(&e.patient_id).or_insert_with(|| PatientDoc::new(&e.patient_id));
        doc.apply(e).expect("generated events apply");
    }
    let conflicted = docs.values().filter(|d| d.open_conflicts() > 0).count();
    assert!(conflicted > 0 && conflicted < docs.len() / 4, "{conflicted} of {} patients in conflict", docs.len());
    let with_meds = docs.values().filter(|d| d.field("medications").is_some()).count();
    assert!(with_meds > docs.len() / 2, "{with_meds} patients have medications");
}

#[test]
fn the_uniform_shape_has_exact_counts_one_source_and_distinct_ids_per_seed() {
    let a = generate_shaped(Shape::uniform(40, 6), 1);
    assert_eq!(a.len(), 240);
    let mut per_patient: HashMap<&str, usize> = HashMap::new();
    for e in &a {
        *per_patient.entry(&e.patient_id).or_default() += 1;
        assert_eq!(e.source, "site-a-ehr");
        Catalog::builtin().validate(e, u64::MAX).expect("valid event");
    }
    assert!(per_patient.len() == 40 && per_patient.values().all(|&n| n == 6), "{per_patient:?}");
    let b = generate_shaped(Shape::uniform(40, 6), 2);
    let ids: std::collections::HashSet<_> = a.iter().chain(&b).map(|e| e.event_id).collect();
    assert_eq!(ids.len(), 480, "two seeds share no event id");
    let later = generate_shaped(Shape { start_ms: BASE_MS + 86_400_000, ..Shape::uniform(40, 6) }, 1);
    assert!(later.iter().zip(&a).all(|(l, e)| l.hlc.wall_ms == e.hlc.wall_ms + 86_400_000));
}
