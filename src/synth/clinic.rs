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
//! What an edit writes comes from the shared workload's vocabulary
//! ([`Record`]): the same fields, codes and notes as the tests' and the
//! benchmarks' events, with a patient's first event registering their
//! demographics and each site editing by its role (an EHR, a lab, a
//! pharmacy, from the source name).
//!
//! Nothing here decides what the pipeline must output: the reference is
//! `tidemark fold` of the accepted envelopes.

use std::sync::{Mutex, PoisonError};

use tidemark_schemas::keys::SigningKeyFile;
use tidemark_schemas::{EditEvent, Hlc, VersionVector};
use tidemark_testkit::SeededRng;
use tidemark_testkit::workload::{self, Record, Role};
use uuid::Uuid;

use super::clock::SiteClock;

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

    /// The id of patient `patient` (the prefix, then six digits): one
    /// naming for the write side and the read side of a load.
    pub fn patient_id(&self, patient: usize) -> String {
        format!("{}{patient:06}", self.patient_prefix)
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
    /// The record as edits left it; `None` until the patient is registered.
    record: Option<Record>,
    /// Version of the acknowledged events.
    acked: VersionVector,
    /// `acked` as it was before the last acknowledgement.
    earlier: VersionVector,
}

struct Site {
    key: SigningKeyFile,
    /// What the site edits, from its source name.
    role: Role,
    clock: SiteClock,
}

/// The sites, their clocks and the patients' books; shared by every worker.
pub struct Clinic {
    cfg: ClinicConfig,
    sites: Vec<Site>,
    books: Vec<Mutex<Book>>,
}

impl Clinic {
    /// A population of `cfg.patients` patients edited by one site per key.
    ///
    /// # Panics
    /// If `sites` is empty or there are no patients (callers check their flags).
    pub fn new(sites: Vec<SigningKeyFile>, cfg: ClinicConfig) -> Self {
        assert!(!sites.is_empty() && cfg.patients > 0, "a clinic needs a site and a patient");
        let books = (0..cfg.patients).map(|_| Mutex::new(Book::default())).collect();
        let sites = sites
            .into_iter()
            .map(|key| Site { role: Role::of_source(key.source()), key, clock: SiteClock::default() })
            .collect();
        Self { cfg, sites, books }
    }

    /// Number of sites (signing keys).
    pub fn site_count(&self) -> usize {
        self.sites.len()
    }

    /// The id of patient `patient`.
    pub fn patient_id(&self, patient: usize) -> String {
        self.cfg.patient_id(patient)
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
            let observed = if book.record.is_none() {
                Some(book.acked.clone())
            } else if rng.chance(0.03) {
                None // a legacy feed writing blind: covers everything older
            } else if rng.chance(self.cfg.stale_read) {
                Some(book.earlier.clone())
            } else {
                Some(book.acked.clone())
            };
            let ops = match &mut book.record {
                Some(record) => record.edit_ops(rng, self.sites[site].role),
                None => book.record.insert(Record::new(rng.next_u64())).registration_ops(),
            };
            (observed, ops)
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
            audience: None,
        };
        Planned { patient, site, hlc: event.hlc, envelope: workload::sign(&event, &s.key) }
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

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use tidemark_schemas::dsse;
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
            let verified = verifier.verify_and_validate(p.envelope.as_bytes(), catalog, u64::MAX);
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
