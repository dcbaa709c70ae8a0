//! Synthetic clinicians from several sites editing one patient population.
//!
//! Key decision: concurrency is modelled the way the CRDT defines it, through
//! `observed`, not left to network timing. Each patient has a *book*: the
//! version vector of the events Kafka acknowledged (what a clinician reads
//! from the state view) and the one before the last acknowledgement. Most
//! edits observe the current version; a share observe the previous one, as a
//! clinician working from a screen that is one edit stale would. Such an edit
//! is concurrent with the latest one, so when both wrote the same register
//! the merger surfaces a conflict, and an allergy removed from a stale view
//! stays present when another site had just added it (add wins). Later edits
//! that observed everything resolve the conflicts. Edits sent at the same
//! time by different workers add real in-flight concurrency on top.
//!
//! Nothing here decides what the pipeline must output: the reference is
//! `tidemark fold` of the accepted envelopes.

use std::sync::{Mutex, PoisonError};

use serde_json::{Value, json};
use tidemark_schemas::keys::SigningKeyFile;
use tidemark_schemas::{EDIT_EVENT_PAYLOAD_TYPE, EditEvent, Hlc, Op, VersionVector, dsse};
use uuid::Uuid;

use super::clock::SiteClock;
use tidemark_testkit::SeededRng;

/// How the population and the edits are shaped.
#[derive(Clone, Debug)]
pub struct ClinicConfig {
    /// Patients edited, `PREFIX000000` onwards.
    pub patients: usize,
    /// Patient id prefix (a key registry may restrict keys to prefixes).
    pub patient_prefix: String,
    /// Share of edits made from a view one acknowledged edit stale.
    pub stale_read: f64,
    /// Share of patients that are "inpatients", edited by every site at once.
    pub hot_patients: f64,
    /// Share of edits that go to those inpatients.
    pub hot_share: f64,
}

impl ClinicConfig {
    /// The demo's and loadgen's default shape for `patients` patients.
    pub fn new(patients: usize) -> Self {
        Self { patients, patient_prefix: "pt-".to_owned(), stale_read: 0.2, hot_patients: 0.05, hot_share: 0.4 }
    }
}

/// One edit event, signed, waiting to be sent.
#[derive(Clone, Debug)]
pub struct Planned {
    /// Index of the patient in the population.
    pub patient: usize,
    /// Index of the signing site.
    pub site: usize,
    /// The event's clock.
    pub hlc: Hlc,
    /// The DSSE envelope, one JSON line.
    pub envelope: String,
}

/// What is known of one patient: what clinicians read before editing.
#[derive(Debug, Default)]
struct Book {
    registered: bool,
    /// Version of the acknowledged events.
    acked: VersionVector,
    /// `acked` as it was before the last acknowledgement.
    earlier: VersionVector,
}

struct Site {
    key: SigningKeyFile,
    clock: SiteClock,
}

/// The sites, their clocks and the patients' books; shared by every worker.
pub struct Clinic {
    cfg: ClinicConfig,
    sites: Vec<Site>,
    books: Vec<Mutex<Book>>,
}

const GIVEN: &[&str] = &["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "John", "Radia", "Ken"];
const FAMILY: &[&str] = &["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Backus", "Perlman"];
const ALLERGIES: &[&str] =
    &["rxnorm:7980", "rxnorm:723", "rxnorm:2670", "rxnorm:1191", "snomed:91935009", "snomed:300913006"];
const PROBLEMS: &[&str] = &["icd10:I10", "icd10:E11.9", "icd10:J45.909", "icd10:N18.3", "icd10:F41.1", "icd10:M54.5"];
const MEDICATIONS: &[&str] = &["rxnorm:860975", "rxnorm:197361", "rxnorm:314076", "rxnorm:617314", "rxnorm:308136"];
const NOTES: &[&str] = &[
    "Seen in clinic; reports improved sleep. Continue current plan, review in two weeks.",
    "Night shift: patient comfortable, observations stable, pain controlled with oral analgesia.",
    "Discussed medication side effects; patient prefers to continue. Bloods requested.",
    "Transferred from emergency department for observation; family informed.",
    "Dietitian review: advised on salt intake, weight to be rechecked at next visit.",
];

impl Clinic {
    /// A population of `cfg.patients` patients edited by one site per key.
    ///
    /// # Panics
    /// If `sites` is empty or there are no patients (callers check their flags).
    pub fn new(sites: Vec<SigningKeyFile>, cfg: ClinicConfig) -> Self {
        assert!(!sites.is_empty() && cfg.patients > 0, "a clinic needs a site and a patient");
        let books = (0..cfg.patients).map(|_| Mutex::new(Book::default())).collect();
        let sites = sites.into_iter().map(|key| Site { key, clock: SiteClock::default() }).collect();
        Self { cfg, sites, books }
    }

    /// Number of sites (signing keys).
    pub fn site_count(&self) -> usize {
        self.sites.len()
    }

    /// The id of patient `patient`.
    pub fn patient_id(&self, patient: usize) -> String {
        format!("{}{patient:06}", self.cfg.patient_prefix)
    }

    fn book(&self, patient: usize) -> std::sync::MutexGuard<'_, Book> {
        self.books[patient].lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn pick_patient(&self, rng: &mut SeededRng) -> usize {
        let hot = ((self.cfg.patients as f64 * self.cfg.hot_patients) as usize).max(1);
        if rng.chance(self.cfg.hot_share) { rng.below(hot) } else { rng.below(self.cfg.patients) }
    }

    /// Plans and signs the next edit of a clinician `author` at `site`.
    pub fn plan(&self, site: usize, author: &str, rng: &mut SeededRng) -> Planned {
        let patient = self.pick_patient(rng);
        let (observed, ops) = {
            let mut book = self.book(patient);
            if book.registered {
                let observed = if rng.chance(0.03) {
                    None // a legacy feed writing blind: covers everything older
                } else if rng.chance(self.cfg.stale_read) {
                    Some(book.earlier.clone())
                } else {
                    Some(book.acked.clone())
                };
                (observed, edit_ops(rng))
            } else {
                book.registered = true;
                (Some(book.acked.clone()), registration_ops(rng))
            }
        };
        let seen = observed.as_ref().and_then(|o| o.values().max().copied());
        let s = &self.sites[site];
        let event = EditEvent {
            event_id: Uuid::now_v7(),
            patient_id: self.patient_id(patient),
            source: s.key.source().to_owned(),
            author: author.to_owned(),
            hlc: s.clock.tick(seen),
            observed,
            ops,
        };
        let hlc = event.hlc;
        let payload = serde_json::to_vec(&event).expect("an EditEvent always serialises");
        let envelope = dsse::sign(EDIT_EVENT_PAYLOAD_TYPE, &payload, s.key.signing_key(), s.key.id()).to_json();
        Planned { patient, site, hlc, envelope }
    }

    /// Records that Kafka acknowledged `planned`: later edits may observe it.
    pub fn acknowledged(&self, planned: &Planned) {
        let mut book = self.book(planned.patient);
        let source = self.sites[planned.site].key.source();
        if book.acked.get(source).is_some_and(|h| *h >= planned.hlc) {
            return;
        }
        book.earlier = book.acked.clone();
        book.acked.insert(source.to_owned(), planned.hlc);
    }
}

fn set(path: &str, value: Value) -> Op {
    Op::Set { path: path.to_owned(), value }
}

/// A new patient's demographics, as the first event of the record.
fn registration_ops(rng: &mut SeededRng) -> Vec<Op> {
    let year = 1931 + rng.below(90);
    let birth = format!("{year}-{:02}-{:02}", 1 + rng.below(12), 1 + rng.below(28));
    vec![
        set("demographics.given_name", json!(rng.pick(GIVEN))),
        set("demographics.family_name", json!(rng.pick(FAMILY))),
        set("demographics.birth_date", json!(birth)),
        set("demographics.sex", json!(rng.pick(&["administrative-gender:female", "administrative-gender:male"]))),
        set("demographics.postal_code", json!(format!("{:05}", rng.below(100_000)))),
        set("demographics.phone", json!(format!("+1-555-{:04}", rng.below(10_000)))),
    ]
}

/// One clinical edit: a vitals round, an allergy or problem list change, a
/// medication, a note or a visit.
fn edit_ops(rng: &mut SeededRng) -> Vec<Op> {
    let roll = rng.below(100);
    match roll {
        0..40 => {
            let mut ops = vec![
                set("vitals.heart_rate_bpm", json!(55 + rng.below(50))),
                set("vitals.systolic_bp_mmhg", json!(100 + rng.below(60))),
                set("vitals.diastolic_bp_mmhg", json!(60 + rng.below(35))),
            ];
            if rng.chance(0.5) {
                ops.push(set("vitals.temperature_c", json!(36.0 + rng.below(30) as f64 / 10.0)));
            }
            ops
        }
        40..55 => vec![Op::Add { path: "allergies".into(), value: json!(rng.pick(ALLERGIES)) }],
        55..63 => vec![Op::Remove { path: "allergies".into(), value: json!(rng.pick(ALLERGIES)) }],
        63..73 => {
            let path = if rng.chance(0.5) { "problems" } else { "medications" };
            let value = json!(if path == "problems" { rng.pick(PROBLEMS) } else { rng.pick(MEDICATIONS) });
            if rng.chance(0.7) {
                vec![Op::Add { path: path.into(), value }]
            } else {
                vec![Op::Remove { path: path.into(), value }]
            }
        }
        73..83 => vec![Op::Append { path: "notes".into(), value: json!({"text": rng.pick(NOTES)}) }],
        83..90 => vec![set("vitals.weight_kg", json!(45.0 + rng.below(900) as f64 / 10.0))],
        90..95 => vec![set("encounter.last_visit_at", json!(tidemark_schemas::format_utc_ms(now_ms())))],
        _ => vec![set("demographics.phone", json!(format!("+1-555-{:04}", rng.below(10_000))))],
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use tidemark_schemas::keys::KeyRegistry;
    use tidemark_schemas::verify::Verifier;

    use super::*;

    fn sites(n: u8) -> Vec<SigningKeyFile> {
        (0..n)
            .map(|i| {
                let name = format!("site-{i}");
                SigningKeyFile::new(&name, &format!("{name}-ehr"), SigningKey::from_bytes(&[i + 1; 32]))
                    .expect("valid key file")
            })
            .collect()
    }

    /// Every planned envelope passes the pipeline's own verification and
    /// validation (signature, key, source, catalog), across the whole mix.
    #[test]
    fn every_planned_event_verifies_and_validates() {
        let keys = sites(3);
        let registry =
            KeyRegistry::from_entries(keys.iter().map(|k| k.registry_entry(None)).collect()).expect("registry");
        let verifier = Verifier::new(registry);
        let clinic = Clinic::new(keys, ClinicConfig::new(50));
        let mut rng = SeededRng::new(42);
        let catalog = tidemark_schemas::Catalog::builtin();
        for i in 0..3000 {
            let p = clinic.plan(i % 3, "clin-1", &mut rng);
            let verified = verifier.verify_and_validate(p.envelope.as_bytes(), catalog, now_ms());
            assert!(verified.is_ok(), "event {i}: {:?}\n{}", verified.err(), p.envelope);
            clinic.acknowledged(&p);
        }
    }

    /// Stale reads make concurrent writes: some event's `observed` misses an
    /// acknowledged event of the same patient from another site.
    #[test]
    fn stale_reads_leave_acknowledged_edits_unobserved() {
        let clinic = Clinic::new(sites(2), ClinicConfig::new(5));
        let mut rng = SeededRng::new(1);
        let mut stale = 0;
        for i in 0..500 {
            let before: Vec<VersionVector> = (0..5).map(|p| clinic.book(p).acked.clone()).collect();
            let p = clinic.plan(i % 2, "clin-1", &mut rng);
            let envelope = dsse::Envelope::decode(p.envelope.as_bytes()).expect("envelope");
            let event: EditEvent = serde_json::from_slice(envelope.payload()).expect("event");
            if let Some(observed) = &event.observed
                && observed != &before[p.patient]
            {
                stale += 1;
            }
            clinic.acknowledged(&p);
        }
        assert!(stale > 40, "only {stale} of 500 edits were made from a stale view");
    }
}
