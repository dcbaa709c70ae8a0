//! What one edit looks like: the sources and their roles, the fields they
//! write, the codes and notes they draw from, and the ops of one event.
//!
//! Every driver draws its ops here: the offline [`generate`](super::generate)
//! of tests and benchmarks, and the live clinic of `tidemark demo` and
//! `tidemark loadgen`. The order of random draws is part of the contract:
//! the benchmark figures were measured on the events it gives for a seed
//! (`the_workload_for_a_seed_is_pinned`).

use serde_json::{Value, json};
use tidemark_schemas::Op;

use crate::SeededRng;

/// What kind of system signs a source's events, which decides what it edits:
/// an EHR edits everything, a lab only registers results (vitals), a
/// pharmacy mostly medications.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// An electronic health record system.
    Ehr,
    /// A laboratory.
    Lab,
    /// A pharmacy.
    Pharmacy,
}

impl Role {
    /// The role a source name implies: `…-lab` and `…-pharmacy` by their
    /// suffix, anything else an EHR.
    pub fn of_source(source: &str) -> Self {
        if source.ends_with("-lab") {
            Self::Lab
        } else if source.ends_with("-pharmacy") {
            Self::Pharmacy
        } else {
            Self::Ehr
        }
    }
}

/// An EHR system that sends events, its share of the events (percent), and
/// how its authors are named.
pub(crate) struct Source {
    pub(crate) name: &'static str,
    pub(crate) share: u64,
    pub(crate) author: &'static str,
}

/// The four sources of the generated workload; the first is the one the
/// repository's test key signs for.
pub(crate) const SOURCES: [Source; 4] = [
    Source { name: "site-a-ehr", share: 45, author: "clin" },
    Source { name: "site-b-ehr", share: 25, author: "dr" },
    Source { name: "site-c-lab", share: 15, author: "lab" },
    Source { name: "site-d-pharmacy", share: 15, author: "pharm" },
];

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

/// What a driver remembers of one patient's record so that its edits make
/// sense: removes name codes the patient has, and rewritten demographics
/// mostly repeat the patient's own values.
#[derive(Clone, Debug)]
pub struct Record {
    /// The patient's own random bits (demographics, care team).
    pub seed: u64,
    /// Codes (vocabulary indices) present in each set.
    present: [Vec<u64>; 3],
}

impl Record {
    /// A record with no set elements yet.
    pub fn new(seed: u64) -> Self {
        Self { seed, present: [Vec::new(), Vec::new(), Vec::new()] }
    }

    /// The ops of one edit: 1-5 of them, one write per register and per set
    /// element (as validation demands), applied to this record.
    pub fn edit_ops(&mut self, rng: &mut SeededRng, role: Role) -> Vec<Op> {
        let n_ops = 1 + (rng.next_u64() % 5) as usize;
        let mut ops: Vec<Op> = Vec::with_capacity(n_ops);
        let mut used: Vec<(&'static str, u64)> = Vec::new();
        for _ in 0..n_ops {
            let (op, key) = self.make_op(rng, role);
            if !key.is_some_and(|k| used.contains(&k)) {
                used.extend(key);
                self.apply(&op, key);
                ops.push(op);
            }
        }
        if ops.is_empty() {
            ops.push(Op::Append { path: "notes".into(), value: json!({"text": NOTES[0]}) });
        }
        ops
    }

    /// A new patient's registration: every demographic field, from the
    /// patient's own seed.
    pub fn registration_ops(&self) -> Vec<Op> {
        DEMOGRAPHICS.iter().map(|(path, value)| Op::Set { path: (*path).into(), value: value(self.seed) }).collect()
    }

    /// One op and the key that must not repeat within the event: the path,
    /// and for a set the element's vocabulary index (`None` for notes).
    fn make_op(&self, rng: &mut SeededRng, role: Role) -> (Op, Option<(&'static str, u64)>) {
        let kind = rng.next_u64() % 100;
        let r = rng.next_u64();
        if kind < 45 && role != Role::Lab || role == Role::Pharmacy && kind < 90 {
            let field = if role == Role::Pharmacy { MEDICATIONS } else { (r % 3) as usize };
            let set = &SETS[field];
            let present = &self.present[field];
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
            let demographics = role != Role::Lab && (r % 100) < 25;
            let (path, value) = if demographics {
                let (path, value) = DEMOGRAPHICS[((r >> 8) % 5) as usize];
                // A correction now and then; otherwise the patient's own value.
                (path, value(if (r >> 16) % 100 < 20 { rng.next_u64() } else { self.seed }))
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

    fn apply(&mut self, op: &Op, key: Option<(&str, u64)>) {
        let (Op::Add { path, .. } | Op::Remove { path, .. }, Some((_, i))) = (op, key) else { return };
        let Some(field) = SETS.iter().position(|s| s.path == path) else { return };
        let present = &mut self.present[field];
        match op {
            Op::Add { .. } if !present.contains(&i) => present.push(i),
            Op::Remove { .. } => present.retain(|&x| x != i),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_follow_the_source_suffix() {
        assert_eq!(Role::of_source("site-c-lab"), Role::Lab);
        assert_eq!(Role::of_source("site-d-pharmacy"), Role::Pharmacy);
        assert_eq!(Role::of_source("site-a-ehr"), Role::Ehr);
        assert_eq!(Role::of_source("anything"), Role::Ehr);
        for s in &SOURCES {
            assert!(s.name.starts_with("site-"), "{}", s.name);
        }
    }

    #[test]
    fn labs_write_vitals_and_notes_only_and_removes_name_present_codes() {
        let mut rng = SeededRng::new(3);
        let mut lab = Record::new(1);
        for _ in 0..500 {
            for op in lab.edit_ops(&mut rng, Role::Lab) {
                let path = op.path();
                assert!(path.starts_with("vitals.") || path == "notes", "a lab wrote {path}");
            }
        }
        let mut ehr = Record::new(2);
        let mut removes = 0;
        for _ in 0..500 {
            let before = ehr.present.clone();
            for op in ehr.edit_ops(&mut rng, Role::Ehr) {
                if let Op::Remove { path, value } = &op {
                    removes += 1;
                    let field = SETS.iter().position(|s| s.path == path).expect("a set path");
                    let codes: Vec<String> = before[field].iter().map(|&i| code(SETS[field].system, i)).collect();
                    assert!(codes.iter().any(|c| value == c), "removed {value} that was never added");
                }
            }
        }
        assert!(removes > 20, "{removes} removes");
    }

    #[test]
    fn registration_sets_every_demographic_field_from_the_patient_seed() {
        let ops = Record::new(99).registration_ops();
        assert_eq!(ops.len(), DEMOGRAPHICS.len());
        assert_eq!(ops, Record::new(99).registration_ops());
        assert_ne!(ops, Record::new(100).registration_ops());
    }
}
