//! Issue 20 finding 7: the mergers seal every changelog and state record
//! with the state key's MAC, re-seal what they restored unsealed (the first
//! start after the upgrade, under `--trust-unsealed-changelog`) or under an
//! older key (rotation), and refuse to restore from a changelog record that
//! is not theirs: the real `tidemark merger` on Tansu.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::pipeline::{Read, produce, read_all, workload};
use common::service::{Service, tidemark_service};
use common::{data, eventually, s};
use tidemark_crdt::fold::{apply_event, check_envelopes};
use tidemark_schemas::EDITS_THROUGH_HEADER;
use tidemark_seal::{RecordKind, Sealed, StateKey, StateKeys};
use tidemark_testkit::{TansuBroker, unique_group, unique_topic};

const PATIENTS: usize = 12;
const RESEALED: &str = "tidemark_merger_patients_resealed_total";

struct World {
    broker: TansuBroker,
    dir: tempfile::TempDir,
    prefix: String,
    group: String,
}

impl World {
    fn topic(&self, name: &str) -> String {
        format!("{}tidemark.{name}.v1", self.prefix)
    }

    /// `tidemark merger` of the one group, with `extra` arguments.
    fn merger(&self, name: &str, extra: &[&str]) -> Service {
        let registry = data("test-registry.toml");
        let args = ["merger", "--brokers", self.broker.bootstrap(), "--keys", s(&registry)]
            .iter()
            .chain(&["--topic-prefix", &self.prefix, "--group", &self.group, "--partitions", "4"])
            .chain(&["--metrics-listen", "127.0.0.1:0", "--max-batch-wait-ms", "20"])
            .chain(&["--kafka-option", "session.timeout.ms=6000", "--kafka-option", "heartbeat.interval.ms=500"])
            .chain(extra)
            .map(|a| (*a).to_owned())
            .collect();
        let mut m = tidemark_service(name, args, self.dir.path());
        m.set_env("RUST_LOG", "info");
        m.started()
    }

    /// The last record of each patient in `topic`.
    fn latest(&self, topic: &str) -> BTreeMap<String, Read> {
        read_all(self.broker.bootstrap(), &self.topic(topic), 4).into_iter().map(|r| (r.key.clone(), r)).collect()
    }
}

fn check(keys: &StateKeys, kind: RecordKind, r: &Read) -> Result<Sealed, tidemark_seal::MacFailure> {
    keys.check(kind, r.key.as_bytes(), Some(&r.payload), |h| r.headers.get(h).map(String::as_bytes))
}

fn stop(m: &mut Service) {
    let status = m.terminate(Duration::from_secs(20));
    assert!(status.is_some_and(|s| s.success()), "{} drains and exits 0: {status:?}\n{}", m.name, m.log_text());
}

/// A merger that must refuse to restore: it exits non-zero saying why.
fn refused(m: &mut Service, why: &str, patient: &str) {
    let status = m.wait_exit(Duration::from_secs(90)).expect("the merger stops");
    let log = m.log_text();
    assert!(!status.success(), "{log}");
    assert!(log.contains("is not authentic") && log.contains(why), "{log}");
    assert!(!log.contains(patient), "the log never names the patient\n{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn records_are_sealed_migrated_rotated_and_checked_on_restore() {
    let broker = TansuBroker::start().expect("tansu starts");
    let prefix = format!("{}.", unique_topic("state-mac"));
    let w = World { broker, dir: tempfile::tempdir().expect("tempdir"), prefix, group: unique_group("state-mac") };
    for topic in ["edits", "patient-changelog"] {
        w.broker.create_topic(&w.topic(topic), 4).await.expect("topic");
    }
    let items = workload(PATIENTS, 3, 47);
    // 1. Before the upgrade: the changelog as an older merger left it, the
    // fold of the first third of the events, without MACs.
    let envelopes: Vec<&[u8]> = items.iter().take(PATIENTS).map(|i| i.envelope.as_bytes()).collect();
    let mut docs = BTreeMap::new();
    for event in check_envelopes(tidemark_schemas::Catalog::builtin(), None, &envelopes) {
        apply_event(&mut docs, &event.expect("a valid event")).expect("folds");
    }
    for (patient, doc) in &docs {
        produce_raw(&w, patient, &doc.encode(), None).await;
    }
    produce(w.broker.bootstrap(), &w.topic("edits"), &items).await;
    let keys = common::state_keys();
    let (patient, unsealed) = docs.iter().next().map(|(p, d)| (p.clone(), d.encode())).expect("a patient");
    refused(&mut w.merger("unsealed", &[]), "no MAC", &patient);

    // 2. The upgrade: trusting unsealed records once re-seals every patient,
    // and everything written from then on is sealed, under the one key.
    let mut m = w.merger("migrating", &["--trust-unsealed-changelog"]);
    eventually("every patient is re-sealed and has a view", Duration::from_secs(60), || {
        common::metric(&m.scrape(), RESEALED) == Some(PATIENTS as f64) && w.latest("patient-state").len() == PATIENTS
    });
    stop(&mut m);
    for (topic, kind) in [("patient-changelog", RecordKind::Changelog), ("patient-state", RecordKind::State)] {
        for (patient, r) in w.latest(topic) {
            assert_eq!(check(&keys, kind, &r), Ok(Sealed::Current), "{topic}: {patient}");
            let other = if kind == RecordKind::State { RecordKind::Changelog } else { RecordKind::State };
            assert_eq!(check(&keys, other, &r), Err(tidemark_seal::MacFailure::Mismatch), "the kind is bound");
        }
    }
    // Every view folded from edits says how far into its edit partition it
    // folded (read-your-writes waits on it); the last of each partition
    // folded up to the partition's end.
    let mut ends: BTreeMap<i32, u64> = BTreeMap::new();
    for r in read_all(w.broker.bootstrap(), &w.topic("edits"), 4) {
        *ends.entry(r.partition).or_default() += 1;
    }
    let mut through: BTreeMap<i32, u64> = BTreeMap::new();
    for r in w.latest("patient-state").values() {
        let header = r.headers.get(EDITS_THROUGH_HEADER).expect("a folded view names its edit offset");
        let t: u64 = header.parse().expect("a decimal offset");
        assert!(t <= ends[&r.partition], "through {t} is past partition {}'s end", r.partition);
        let last = through.entry(r.partition).or_default();
        *last = (*last).max(t);
    }
    assert_eq!(through, ends, "the last view of each partition folded up to its end");

    // 3. An unsealed record written after the first sealed one is not from
    // before the upgrade: refused even with the flag still on. Produced
    // again with its MAC, the patient's last good record supersedes it.
    let good = w.latest("patient-changelog").remove(&patient).expect("the patient's record");
    produce_raw(&w, &patient, &unsealed, None).await;
    refused(&mut w.merger("late-unsealed", &["--trust-unsealed-changelog"]), "no MAC", &patient);
    let mac = keys.seal(RecordKind::Changelog, patient.as_bytes(), Some(&good.payload));
    produce_raw(&w, &patient, &good.payload, Some(&mac)).await;
    let mut m = w.merger("recovered", &[]);
    eventually("the recovered merger holds its partitions", Duration::from_secs(60), || {
        m.log_text().matches("partition restored").count() == 4
    });
    assert!(m.log_text().contains("superseded by this authentic one"), "{}", m.log_text());
    stop(&mut m);

    // 4. Rotation: a new key first, the old one second. Restore re-seals
    // every patient under the new key, with no edit to fold.
    let new_path = w.dir.path().join("new-state.key");
    tidemark_seal::save_state_key(&new_path, &StateKey::generate().expect("key")).expect("save");
    let old_path = s(common::state_key()).to_owned();
    let rotated_args = ["--state-key", s(&new_path), "--state-key", &old_path];
    let rotated = tidemark_seal::load_state_keys(&[new_path.clone(), common::state_key().to_owned()]).expect("keys");
    let mut m = w.merger("rotated", &rotated_args);
    eventually("every patient is re-sealed", Duration::from_secs(60), || {
        common::metric(&m.scrape(), RESEALED) == Some(PATIENTS as f64)
    });
    stop(&mut m);
    for (topic, kind) in [("patient-changelog", RecordKind::Changelog), ("patient-state", RecordKind::State)] {
        for (patient, r) in w.latest(topic) {
            assert_eq!(check(&rotated, kind, &r), Ok(Sealed::Current), "{topic}: {patient} under the new key");
        }
    }

    // 5. A MAC that does not match is refused.
    let forged = rotated.seal(RecordKind::Changelog, patient.as_bytes(), Some(b"other bytes"));
    produce_raw(&w, &patient, &good.payload, Some(&forged)).await;
    refused(&mut w.merger("forged", &rotated_args), "does not match", &patient);
}

/// Produces one changelog record for `patient`, with `mac`'s headers if given.
async fn produce_raw(w: &World, patient: &str, value: &[u8], mac: Option<&tidemark_seal::RecordMac>) {
    common::pipeline::produce_raw(w.broker.bootstrap(), &w.topic("patient-changelog"), patient, Some(value), mac).await;
}
