//! `tidemark snapshot list|verify|decrypt` against a hostile archive, no
//! broker: snapshots are written here directly (parts sealed with the real
//! format, manifests signed with the real archiver key), then the real binary
//! reads them. Issue 20 ("The edges"): a rolled-back `latest`, junk
//! directories, a broken chain, and decrypted files others could read.

mod common;

use std::fs;
use std::path::PathBuf;

use common::{Run, s, tidemark};
use tidemark_archiver::manifest::{self, MANIFEST_FORMAT, MANIFEST_NAME, Manifest, PartEntry};
use tidemark_seal::{ArchiverSigningKey, RecipientSecretKey};

const PROFILE: &str = "identified";

/// An archive directory with its archiver and recipient keys saved as files.
struct World {
    dir: tempfile::TempDir,
    archiver: ArchiverSigningKey,
    recipient: RecipientSecretKey,
    previous: Option<Vec<u8>>,
    sequence: u64,
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let archiver = ArchiverSigningKey::generate().expect("random");
        let recipient = RecipientSecretKey::generate().expect("random");
        tidemark_seal::save_archiver_public(&dir.path().join("archiver.pub"), &archiver.verifying_key()).expect("save");
        tidemark_seal::save_recipient_secret(&dir.path().join("reader.key"), &recipient).expect("save");
        Self { dir, archiver, recipient, previous: None, sequence: 0 }
    }

    fn archive(&self) -> PathBuf {
        self.dir.path().join("archive")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Commits the next snapshot of the chain, with `parts` (plaintexts);
    /// returns its id.
    fn commit(&mut self, parts: &[&[u8]]) -> String {
        self.sequence += 1;
        let id = format!("0193a1b2-{:04x}-7000-8000-000000000000", self.sequence);
        let dir = self.archive().join(PROFILE).join(&id);
        fs::create_dir_all(&dir).expect("mkdir");
        let mut entries = Vec::new();
        for (i, plain) in parts.iter().enumerate() {
            let name = format!("part-{i:05}-000.parquet.tmenc");
            let mut sealed = Vec::new();
            let stats = tidemark_seal::seal_part(*plain, &mut sealed, &[self.recipient.public_key().clone()], 1024)
                .expect("seal");
            fs::write(dir.join(&name), &sealed).expect("write part");
            entries.push(PartEntry {
                name,
                rows: 1,
                plaintext_bytes: stats.plaintext_bytes,
                ciphertext_bytes: stats.ciphertext_bytes,
                sha256: stats.ciphertext_sha256.iter().map(|b| format!("{b:02x}")).collect(),
            });
        }
        let m = Manifest {
            format: MANIFEST_FORMAT.into(),
            snapshot_id: id.clone(),
            profile: PROFILE.into(),
            created_at: "2026-12-05T00:00:00.000Z".into(),
            catalog_version: 1,
            topic: "tidemark.patient-state.v1".into(),
            cut: vec![],
            rows: entries.len() as u64,
            parts: entries,
            recipients: vec![self.recipient.public_key().key_id()],
            archiver_key_id: self.archiver.key_id(),
            sequence: Some(self.sequence),
            previous_manifest_sha256: self.previous.as_deref().map(manifest::envelope_sha256),
            dataset_key_id: None,
        };
        let bytes = m.sign(&self.archiver);
        fs::write(dir.join(MANIFEST_NAME), &bytes).expect("write manifest");
        self.previous = Some(bytes);
        id
    }

    /// `tidemark snapshot SUB --archive A --profile identified SNAPSHOT --archiver-pub K EXTRA...`
    fn snapshot(&self, sub: &str, snapshot: &str, extra: &[&str]) -> Run {
        let (archive, key) = (self.archive(), self.path("archiver.pub"));
        let mut args = vec!["snapshot", sub, "--archive", s(&archive), "--profile", PROFILE, snapshot];
        args.extend(["--archiver-pub", s(&key)]);
        args.extend(extra);
        tidemark(&args, b"", &[])
    }
}

#[test]
fn verify_with_a_pin_refuses_latest_after_the_newest_snapshot_was_deleted() {
    let mut w = World::new();
    let ids: Vec<String> = (0..3).map(|_| w.commit(&[b"rows"])).collect();
    let pin = w.path("archive.pin");
    let run = w.snapshot("verify", "latest", &["--pin", s(&pin)]);
    run.code(0).stdout_has(&format!("ok: snapshot {}", ids[2])).stderr_has("pin: first use");
    fs::remove_dir_all(w.archive().join(PROFILE).join(&ids[2])).expect("delete the newest");
    let run = w.snapshot("verify", "latest", &["--pin", s(&pin)]);
    run.code(1).stderr_has("rollback: latest of profile identified is sequence 2");
    // Without the pin, the shorter chain is all a reader can see.
    w.snapshot("verify", "latest", &[]).code(0).stdout_has(&format!("ok: snapshot {}", ids[1]));
    // A pin is about `latest`: an id asked for by name is not a rollback.
    w.snapshot("verify", &ids[0], &["--pin", s(&pin)]).code(2).stderr_has("--pin applies only to `latest`");
}

#[test]
fn a_junk_directory_sorting_last_is_ignored_with_a_warning_and_listed_as_unverified() {
    let mut w = World::new();
    let newest = (0..2).map(|_| w.commit(&[b"rows"])).last().expect("two snapshots");
    let junk = w.archive().join(PROFILE).join("ffffffff-0000-7000-8000-000000000000");
    fs::create_dir_all(&junk).expect("mkdir");
    fs::write(junk.join(MANIFEST_NAME), b"{\"payloadType\":\"x\x1b[2J\"}").expect("junk");
    let run = w.snapshot("verify", "latest", &[]);
    run.code(0)
        .stdout_has(&format!("ok: snapshot {newest} (identified): sequence 2"))
        .stderr_has("warning: ignoring identified/ffffffff-0000-7000-8000-000000000000");
    assert!(!run.stderr.contains('\u{1b}'), "no terminal escapes from the archive reach the terminal\n{run:?}");
    let (archive, key) = (w.archive(), w.path("archiver.pub"));
    let listed = tidemark(&["snapshot", "list", "--archive", s(&archive), "--archiver-pub", s(&key)], b"", &[]);
    listed
        .code(0)
        .stdout_has(&format!("{newest} verified sequence=2"))
        .stdout_has("ffffffff-0000-7000-8000-000000000000 UNVERIFIED");
    let listed = tidemark(&["snapshot", "list", "--archive", s(&archive)], b"", &[]);
    listed.code(0).stdout_has(&format!("{newest} unverified (no --archiver-pub) sequence=2"));
}

#[test]
fn verify_reports_a_snapshot_missing_from_the_middle_of_the_chain() {
    let mut w = World::new();
    let ids: Vec<String> = (0..3).map(|_| w.commit(&[b"rows"])).collect();
    fs::remove_dir_all(w.archive().join(PROFILE).join(&ids[1])).expect("delete the middle one");
    let run = w.snapshot("verify", "latest", &[]);
    run.code(1).stderr_has("the chain of identified is broken: sequence 2 to 2 missing");
}
