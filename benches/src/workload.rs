//! A realistic, seeded edit workload: many patients, events of 1-5 ops, mostly
//! set and register edits, some notes, several sources, some events that
//! observed a version (and so can conflict), the rest blind.

use serde_json::{Value, json};
use tidemark_schemas::{EditEvent, Hlc, Op, VersionVector};
use uuid::Uuid;

/// The sources (EHR systems) events come from.
pub const SOURCES: [&str; 4] = ["site-a-ehr", "site-b-ehr", "site-c-lab", "site-d-pharmacy"];

/// A register path and how to make a value for it from random bits.
type RegisterGen = (&'static str, fn(u64) -> Value);

const REGISTERS: [RegisterGen; 5] = [
    ("vitals.heart_rate_bpm", |r| json!(40 + r % 140)),
    ("vitals.systolic_bp_mmhg", |r| json!(90 + r % 90)),
    ("vitals.temperature_c", |r| json!(35.0 + (r % 50) as f64 / 10.0)),
    ("demographics.postal_code", |r| json!(format!("{:05}", r % 100_000))),
    ("demographics.birth_date", |r| json!(format!("19{:02}-{:02}-{:02}", 30 + r % 70, 1 + r % 12, 1 + r % 28))),
];
const SETS: [&str; 3] = ["allergies", "medications", "problems"];

/// xorshift64*: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// `events_per_patient` events for each of `patients` patients, interleaved
/// across patients as a stream would be. Every event passes the built-in
/// catalog's validation.
pub fn generate(patients: usize, events_per_patient: usize, seed: u64) -> Vec<EditEvent> {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let base_ms = 1_763_794_800_000u64;
    let mut out = Vec::with_capacity(patients * events_per_patient);
    for round in 0..events_per_patient {
        for p in 0..patients {
            let r = rng.next();
            let source = SOURCES[(r % SOURCES.len() as u64) as usize];
            let wall = base_ms + (round as u64) * 60_000 + r % 30_000;
            let observed = (r >> 8).is_multiple_of(4) && round > 0;
            let n_ops = 1 + (rng.next() % 5) as usize;
            let mut ops: Vec<Op> = Vec::with_capacity(n_ops);
            let mut used: Vec<String> = Vec::new();
            for _ in 0..n_ops {
                let r = rng.next();
                let op = match r % 20 {
                    0..=7 => {
                        let (path, value) = REGISTERS[(r >> 5) as usize % REGISTERS.len()];
                        Op::Set { path: path.into(), value: value(r >> 9) }
                    }
                    8..=16 => {
                        let path = SETS[(r >> 5) as usize % SETS.len()];
                        let value = json!(format!("rxnorm:{}", (r >> 9) % 24));
                        if (r >> 7).is_multiple_of(3) {
                            Op::Remove { path: path.into(), value }
                        } else {
                            Op::Add { path: path.into(), value }
                        }
                    }
                    _ => Op::Append { path: "notes".into(), value: json!({"text": "Follow-up in two weeks."}) },
                };
                // One write per register and element per event, as validation demands.
                let key = match &op {
                    Op::Append { .. } => None,
                    Op::Add { value, .. } | Op::Remove { value, .. } => Some(format!("{}={value}", op.path())),
                    _ => Some(op.path().to_owned()),
                };
                if let Some(k) = key {
                    if used.contains(&k) {
                        continue;
                    }
                    used.push(k);
                }
                ops.push(op);
            }
            let high = (wall << 16) | 0x7000 | (rng.next() & 0xfff);
            let low = 0x8000_0000_0000_0000 | (rng.next() >> 2);
            out.push(EditEvent {
                event_id: Uuid::from_u64_pair(high, low),
                patient_id: format!("pt-{p:07}"),
                source: source.into(),
                author: format!("clin-{}", r % 500),
                hlc: Hlc::new(wall, 0),
                observed: observed.then(|| {
                    // What the editor saw: the round before, from two sources.
                    let seen = Hlc::new(wall - 60_000 + r % 1000, 0);
                    let mut vv = VersionVector::new();
                    vv.insert(SOURCES[0].into(), seen);
                    vv.insert(source.into(), seen);
                    vv
                }),
                ops,
            });
        }
    }
    out
}

/// Total ops in a workload.
pub fn op_count(events: &[EditEvent]) -> usize {
    events.iter().map(|e| e.ops.len()).sum()
}

#[cfg(test)]
mod tests {
    use tidemark_schemas::Catalog;

    use super::*;

    #[test]
    fn every_event_is_valid_and_the_workload_is_deterministic() {
        let a = generate(200, 6, 1);
        for e in &a {
            if let Err(err) = Catalog::builtin().validate(e, u64::MAX) {
                panic!("generated an invalid event: {err}");
            }
        }
        assert_eq!(a, generate(200, 6, 1));
        assert_ne!(a, generate(200, 6, 2));
        let ops = op_count(&a) as f64 / a.len() as f64;
        assert!((2.0..=3.5).contains(&ops), "{ops} ops per event");
        assert!(a.iter().any(|e| e.observed.is_some()) && a.iter().any(|e| e.observed.is_none()));
    }
}
