//! A realistic, seeded edit workload.
//!
//! Shape: each patient has 1-9 events (mean 5), and one in fifty is a chronic
//! patient with four times as many. Events carry 1-5 ops: about 45% set edits
//! (allergies, problems, medications: adds, and removes of codes the patient
//! has), 45% register writes (vitals as ints and decimals, demographics as
//! strings and dates) and 10% notes. Four sources with unequal shares, each
//! with its own small care team of authors. About a third of the events after
//! a patient's first carry `observed`: most saw the whole record, some missed
//! the latest event (a concurrent edit, which can open a conflict); the rest
//! are blind. Events of all patients interleave round by round, as a stream.
//!
//! The generator keeps a shadow of each patient's record so that removes name
//! codes the patient has and `observed` is a version the author could have
//! read, strictly older than the event.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Value, json};
use tidemark_schemas::{EditEvent, Hlc, Op, VersionVector};
use tidemark_testkit::SeededRng as Rng;
use uuid::Uuid;

/// An EHR system that sends events, its share of the events (percent), and
/// how its authors are named.
struct Source {
    name: &'static str,
    share: u64,
    author: &'static str,
}

const SOURCES: [Source; 4] = [
    Source { name: "site-a-ehr", share: 45, author: "clin" },
    Source { name: "site-b-ehr", share: 25, author: "dr" },
    Source { name: "site-c-lab", share: 15, author: "lab" },
    Source { name: "site-d-pharmacy", share: 15, author: "pharm" },
];
const LAB: usize = 2;
const PHARMACY: usize = 3;

/// A register path and how to make a value for it from random bits.
type RegisterGen = (&'static str, fn(u64) -> Value);

const VITALS: [RegisterGen; 5] = [
    ("vitals.heart_rate_bpm", |r| json!(50 + r % 80)),
    ("vitals.systolic_bp_mmhg", |r| json!(95 + r % 70)),
    ("vitals.diastolic_bp_mmhg", |r| json!(55 + r % 45)),
    ("vitals.temperature_c", |r| json!((355 + r % 45) as f64 / 10.0)),
    ("vitals.weight_kg", |r| json!((25 + r % 1250) as f64 / 10.0)),
];

const GIVEN: [&str; 8] = ["Amara", "Bjorn", "Chen", "Dolores", "Emeka", "Farah", "Gustavo", "Hannelore"];
const FAMILY: [&str; 8] = ["Okafor", "Lindqvist", "Nakamura", "Fitzgerald", "Haddad", "Kowalczyk", "Mbeki", "Ortega"];

/// Demographics are drawn from the patient's own seed, so most rewrites
/// repeat the value and a few correct it.
const DEMOGRAPHICS: [RegisterGen; 5] = [
    ("demographics.given_name", |r| json!(GIVEN[(r % 8) as usize])),
    ("demographics.family_name", |r| json!(FAMILY[(r >> 3) as usize % 8])),
    ("demographics.birth_date", |r| {
        json!(format!("{:04}-{:02}-{:02}", 1930 + (r >> 6) % 90, 1 + (r >> 13) % 12, 1 + (r >> 17) % 28))
    }),
    ("demographics.postal_code", |r| json!(format!("{:05}", (r >> 22) % 100_000))),
    ("demographics.phone", |r| json!(format!("+1-555-{:03}-{:04}", (r >> 39) % 1000, (r >> 49) % 10_000))),
];

/// A set field, the code system of its elements, how many codes it draws
/// from, and the percentage of its edits that are removes.
struct SetField {
    path: &'static str,
    system: &'static str,
    vocabulary: u64,
    remove_pct: u64,
}

const SETS: [SetField; 3] = [
    SetField { path: "allergies", system: "rxnorm", vocabulary: 40, remove_pct: 15 },
    SetField { path: "problems", system: "snomed", vocabulary: 120, remove_pct: 25 },
    SetField { path: "medications", system: "rxnorm", vocabulary: 200, remove_pct: 35 },
];
const MEDICATIONS: usize = 2;

/// The `i`th code of a system: RxNorm-like 4-6 digit and SNOMED-like 8-9
/// digit identifiers.
fn code(system: &str, i: u64) -> String {
    match system {
        "snomed" => format!("snomed:{}", 10_000_000 + (i * 7_654_321 + 12_345) % 890_000_000),
        _ => format!("{system}:{}", 1_000 + (i * 104_729 + 7) % 900_000),
    }
}

const NOTES: [&str; 6] = [
    "Follow-up in two weeks.",
    "Patient reports improved sleep; continue current dose and review at next visit.",
    "Discussed diet and exercise. Labs ordered: HbA1c, lipid panel.",
    "Mild rash after first dose, resolved without treatment. Monitor.",
    "Medication reconciliation done with patient and pharmacy; list updated.",
    "BP elevated on two readings today. Home monitoring advised, recheck in 1 month.",
];

/// Wall-clock time of the first round; rounds are an hour apart and each
/// event falls in the first half of its round, so every event of a patient is
/// strictly newer than all its earlier ones.
const BASE_MS: u64 = 1_763_794_800_000;
const ROUND_MS: u64 = 3_600_000;

/// What the generator remembers of one patient.
struct Shadow {
    seed: u64,
    events: usize,
    /// Codes (vocabulary indices) present in each set.
    present: [Vec<u64>; 3],
    /// Version after all the patient's events so far, and before the last one.
    version: VersionVector,
    before_last: VersionVector,
}

/// A seeded workload for `patients` patients; every event passes the built-in
/// catalog's validation, and the same arguments give the same events.
pub fn generate(patients: usize, seed: u64) -> Vec<EditEvent> {
    let mut rng = Rng::new(seed);
    let mut shadows: Vec<Shadow> = (0..patients)
        .map(|_| {
            let s = rng.next_u64();
            let mut events = 1 + (s % 5) as usize + ((s >> 8) % 5) as usize;
            if (s >> 16).is_multiple_of(50) {
                events *= 4;
            }
            let present = [Vec::new(), Vec::new(), Vec::new()];
            Shadow {
                seed: rng.next_u64(),
                events,
                present,
                version: VersionVector::new(),
                before_last: VersionVector::new(),
            }
        })
        .collect();
    let rounds = shadows.iter().map(|s| s.events).max().unwrap_or(0);
    let mut out = Vec::with_capacity(shadows.iter().map(|s| s.events).sum());
    for round in 0..rounds {
        for (p, shadow) in shadows.iter_mut().enumerate() {
            if round < shadow.events {
                out.push(event(&mut rng, p, round as u64, shadow));
            }
        }
    }
    out
}

fn pick_source(rng: &mut Rng) -> usize {
    let mut r = rng.next_u64() % 100;
    for (i, s) in SOURCES.iter().enumerate() {
        if r < s.share {
            return i;
        }
        r -= s.share;
    }
    0
}

fn event(rng: &mut Rng, patient: usize, round: u64, shadow: &mut Shadow) -> EditEvent {
    let source = pick_source(rng);
    let wall = BASE_MS + round * ROUND_MS + rng.next_u64() % (ROUND_MS / 2);
    let logical = if rng.percent(5) { 1 + (rng.next_u64() % 3) as u32 } else { 0 };
    let hlc = Hlc::new(wall, logical);
    let observed = (round > 0 && rng.percent(35)).then(|| {
        // Most authors saw the whole record; some missed the latest edit.
        if rng.percent(70) || shadow.before_last.is_empty() {
            shadow.version.clone()
        } else {
            shadow.before_last.clone()
        }
    });
    let n_ops = 1 + (rng.next_u64() % 5) as usize;
    let mut ops: Vec<Op> = Vec::with_capacity(n_ops);
    // One write per register and per set element in an event, as validation demands.
    let mut used: Vec<(&'static str, u64)> = Vec::new();
    for _ in 0..n_ops {
        let (op, key) = make_op(rng, source, shadow);
        if !key.is_some_and(|k| used.contains(&k)) {
            used.extend(key);
            apply_to_shadow(&op, key, shadow);
            ops.push(op);
        }
    }
    if ops.is_empty() {
        ops.push(Op::Append { path: "notes".into(), value: json!({"text": NOTES[0]}) });
    }
    shadow.before_last = shadow.version.clone();
    let src = SOURCES[source].name;
    if shadow.version.get(src).is_none_or(|seen| *seen < hlc) {
        shadow.version.insert(src.to_owned(), hlc);
    }
    let (high, low) = (rng.next_u64(), rng.next_u64());
    EditEvent {
        // UUIDv7: 48-bit ms timestamp, version 7, 12 random bits; variant 0b10, 62 random bits.
        event_id: Uuid::from_u64_pair((wall << 16) | 0x7000 | (high & 0xfff), 0x8000_0000_0000_0000 | (low >> 2)),
        patient_id: format!("pt-{patient:07}"),
        source: src.into(),
        author: format!("{}-{}", SOURCES[source].author, (shadow.seed >> (source * 8)) % 97 + rng.next_u64() % 3),
        hlc,
        observed,
        ops,
    }
}

/// One op and the key that must not repeat within the event: the path, and
/// for a set the element's vocabulary index (`None` for notes).
fn make_op(rng: &mut Rng, source: usize, shadow: &Shadow) -> (Op, Option<(&'static str, u64)>) {
    let kind = rng.next_u64() % 100;
    let r = rng.next_u64();
    if kind < 45 && source != LAB || source == PHARMACY && kind < 90 {
        let field = if source == PHARMACY { MEDICATIONS } else { (r % 3) as usize };
        let set = &SETS[field];
        let present = &shadow.present[field];
        let (remove, i) = if !present.is_empty() && (r >> 8) % 100 < set.remove_pct {
            (true, present[((r >> 16) % present.len() as u64) as usize])
        } else {
            // Common codes are common: the smaller of two draws.
            (false, ((r >> 16) % set.vocabulary).min((r >> 40) % set.vocabulary))
        };
        let (path, value) = (set.path.to_owned(), json!(code(set.system, i)));
        let op = if remove { Op::Remove { path, value } } else { Op::Add { path, value } };
        (op, Some((set.path, i)))
    } else if kind < 90 {
        let demographics = source != LAB && (r % 100) < 25;
        let (path, value) = if demographics {
            let (path, value) = DEMOGRAPHICS[((r >> 8) % 5) as usize];
            // A correction now and then; otherwise the patient's own value.
            (path, value(if (r >> 16) % 100 < 20 { rng.next_u64() } else { shadow.seed }))
        } else {
            let (path, value) = VITALS[((r >> 8) % 5) as usize];
            (path, value(rng.next_u64()))
        };
        (Op::Set { path: path.into(), value }, Some((path, 0)))
    } else {
        let text = NOTES[(r % NOTES.len() as u64) as usize];
        (Op::Append { path: "notes".into(), value: json!({ "text": text }) }, None)
    }
}

fn apply_to_shadow(op: &Op, key: Option<(&str, u64)>, shadow: &mut Shadow) {
    let (Op::Add { path, .. } | Op::Remove { path, .. }, Some((_, i))) = (op, key) else { return };
    let Some(field) = SETS.iter().position(|s| s.path == path) else { return };
    let present = &mut shadow.present[field];
    match op {
        Op::Add { .. } if !present.contains(&i) => present.push(i),
        Op::Remove { .. } => present.retain(|&x| x != i),
        _ => {}
    }
}

/// Total ops in a workload.
pub fn op_count(events: &[EditEvent]) -> usize {
    events.iter().map(|e| e.ops.len()).sum()
}

/// What a workload is made of, for printing beside the figures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mix {
    /// Distinct patients.
    pub patients: usize,
    /// Events.
    pub events: usize,
    /// Ops.
    pub ops: usize,
    /// `set`/`clear` ops.
    pub registers: usize,
    /// `add`/`remove` ops.
    pub sets: usize,
    /// Of which `remove`.
    pub removes: usize,
    /// `append` ops.
    pub notes: usize,
    /// Events that carry `observed`.
    pub observed: usize,
}

impl Mix {
    /// Counts a workload.
    pub fn of(events: &[EditEvent]) -> Self {
        let mut patients: BTreeMap<&str, ()> = BTreeMap::new();
        let mut m = Mix { events: events.len(), ..Mix::default() };
        for e in events {
            patients.insert(&e.patient_id, ());
            m.observed += usize::from(e.observed.is_some());
            for op in &e.ops {
                m.ops += 1;
                match op {
                    Op::Set { .. } | Op::Clear { .. } => m.registers += 1,
                    Op::Add { .. } => m.sets += 1,
                    Op::Remove { .. } => {
                        m.sets += 1;
                        m.removes += 1;
                    }
                    Op::Append { .. } => m.notes += 1,
                }
            }
        }
        m.patients = patients.len();
        m
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |n: usize, of: usize| 100.0 * n as f64 / of.max(1) as f64;
        write!(
            f,
            "{} patients, {} events, {} ops ({:.2} per event): {:.0}% set ({:.0}% of them removes), \
             {:.0}% register, {:.0}% notes; {:.0}% of events observed, the rest blind",
            self.patients,
            self.events,
            self.ops,
            self.ops as f64 / self.events.max(1) as f64,
            pct(self.sets, self.ops),
            pct(self.removes, self.sets),
            pct(self.registers, self.ops),
            pct(self.notes, self.ops),
            pct(self.observed, self.events),
        )
    }
}

#[cfg(test)]
mod tests {
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
}
