//! The one seeded edit workload of tests, benchmarks and the demo.
//!
//! Shape ([`Shape::realistic`]): each patient has 1-9 events (mean 5), and
//! one in fifty is a chronic patient with four times as many. Events carry
//! 1-5 ops: about 45% set edits (allergies, problems, medications: adds, and
//! removes of codes the patient has), 45% register writes (vitals as ints and
//! decimals, demographics as strings and dates) and 10% notes. Four sources
//! with unequal shares, each with its own small care team of authors. About a
//! third of the events after a patient's first carry `observed`: most saw the
//! whole record, some missed the latest event (a concurrent edit, which can
//! open a conflict); the rest are blind. Events of all patients interleave
//! round by round, as a stream. Tests narrow it ([`Shape::uniform`]): exactly
//! N events per patient, all from the source the repository's test key signs
//! for.
//!
//! Key decision: one vocabulary of edits ([`Record::edit_ops`]) for every
//! driver. This offline generator keeps a shadow of each record so that
//! removes name codes the patient has and `observed` is a version the author
//! could have read, strictly older than the event; the live clinic of
//! `tidemark demo` draws the same ops but takes `observed` from what Kafka
//! acknowledged. The same shape and seed give the same events, byte for
//! byte, on every platform: the benchmark figures depend on it.

mod mix;
mod vocabulary;

use tidemark_schemas::keys::SigningKeyFile;
use tidemark_schemas::{EDIT_EVENT_PAYLOAD_TYPE, EditEvent, Hlc, VersionVector, dsse};
use uuid::Uuid;

pub use mix::{Mix, op_count};
use vocabulary::SOURCES;
pub use vocabulary::{Record, Role};

use crate::SeededRng;

/// Wall-clock time of the first round by default (2025-11-22T07:00:00Z):
/// fixed, so a seed gives the same bytes on every run, and in the past, so
/// ingest (which refuses events from the future) accepts them.
pub const BASE_MS: u64 = 1_763_794_800_000;
/// Rounds are an hour apart and each event falls in the first half of its
/// round, so every event of a patient is strictly newer than its earlier ones.
const ROUND_MS: u64 = 3_600_000;

/// How many events, from which sources, starting when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Patients, `pt-0000000` onwards.
    pub patients: usize,
    /// `None`: 1-9 per patient, chronic patients four times as many;
    /// `Some(n)`: exactly `n` each.
    pub events_per_patient: Option<usize>,
    /// Only `site-a-ehr` signs (the test key's source), instead of all four.
    pub one_source: bool,
    /// Wall-clock milliseconds of the first round.
    pub start_ms: u64,
}

impl Shape {
    /// The benchmark workload: realistic counts and every source.
    pub fn realistic(patients: usize) -> Self {
        Self { patients, events_per_patient: None, one_source: false, start_ms: BASE_MS }
    }

    /// The test workload: exactly `events_per_patient` events per patient,
    /// all signed for `site-a-ehr`.
    pub fn uniform(patients: usize, events_per_patient: usize) -> Self {
        Self { patients, events_per_patient: Some(events_per_patient), one_source: true, start_ms: BASE_MS }
    }
}

/// What the generator remembers of one patient.
struct Shadow {
    record: Record,
    events: usize,
    /// Version after all the patient's events so far, and before the last one.
    version: VersionVector,
    before_last: VersionVector,
}

/// The id of the `p`th patient of a workload.
pub fn patient_id(p: usize) -> String {
    format!("pt-{p:07}")
}

/// The realistic workload for `patients` patients ([`Shape::realistic`]).
pub fn generate(patients: usize, seed: u64) -> Vec<EditEvent> {
    generate_shaped(Shape::realistic(patients), seed)
}

/// A seeded workload of `shape`; every event passes the built-in catalog's
/// validation, and the same arguments give the same events.
pub fn generate_shaped(shape: Shape, seed: u64) -> Vec<EditEvent> {
    let mut rng = SeededRng::new(seed);
    let mut shadows: Vec<Shadow> = (0..shape.patients)
        .map(|_| {
            let s = rng.next_u64();
            let mut events = 1 + (s % 5) as usize + ((s >> 8) % 5) as usize;
            if (s >> 16).is_multiple_of(50) {
                events *= 4;
            }
            let events = shape.events_per_patient.unwrap_or(events);
            let record = Record::new(rng.next_u64());
            Shadow { record, events, version: VersionVector::new(), before_last: VersionVector::new() }
        })
        .collect();
    let rounds = shadows.iter().map(|s| s.events).max().unwrap_or(0);
    let mut out = Vec::with_capacity(shadows.iter().map(|s| s.events).sum());
    for round in 0..rounds {
        for (p, shadow) in shadows.iter_mut().enumerate() {
            if round < shadow.events {
                out.push(event(&mut rng, &shape, p, round as u64, shadow));
            }
        }
    }
    out
}

/// Signs `event` with `key` as a DSSE envelope: one JSON line.
pub fn sign(event: &EditEvent, key: &SigningKeyFile) -> String {
    let payload = serde_json::to_vec(event).expect("an EditEvent always serialises");
    dsse::sign(EDIT_EVENT_PAYLOAD_TYPE, &payload, key.signing_key(), key.id()).to_json()
}

fn pick_source(rng: &mut SeededRng, shape: &Shape) -> usize {
    let mut r = rng.next_u64() % 100;
    if shape.one_source {
        return 0;
    }
    for (i, s) in SOURCES.iter().enumerate() {
        if r < s.share {
            return i;
        }
        r -= s.share;
    }
    0
}

fn event(rng: &mut SeededRng, shape: &Shape, patient: usize, round: u64, shadow: &mut Shadow) -> EditEvent {
    let source = pick_source(rng, shape);
    let wall = shape.start_ms + round * ROUND_MS + rng.next_u64() % (ROUND_MS / 2);
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
    let src = &SOURCES[source];
    let ops = shadow.record.edit_ops(rng, Role::of_source(src.name));
    shadow.before_last = shadow.version.clone();
    if shadow.version.get(src.name).is_none_or(|seen| *seen < hlc) {
        shadow.version.insert(src.name.to_owned(), hlc);
    }
    let (high, low) = (rng.next_u64(), rng.next_u64());
    EditEvent {
        // UUIDv7: 48-bit ms timestamp, version 7, 12 random bits; variant 0b10, 62 random bits.
        event_id: Uuid::from_u64_pair((wall << 16) | 0x7000 | (high & 0xfff), 0x8000_0000_0000_0000 | (low >> 2)),
        patient_id: patient_id(patient),
        source: src.name.into(),
        author: format!("{}-{}", src.author, (shadow.record.seed >> (source * 8)) % 97 + rng.next_u64() % 3),
        hlc,
        observed,
        ops,
        audience: None,
    }
}

#[cfg(test)]
mod tests;
