//! Issue 21: `tidemark snapshot grant` adds or removes a snapshot's
//! recipients with a new signed manifest revision and rewrites no data file;
//! readers take the newest revision that verifies and follows, and refuse a
//! revision that was edited, signed by another key, or changes more than the
//! recipients. No broker (tests/common/snapshots.rs).

mod common;

use std::fs;
use std::path::Path;

use common::s;
use common::snapshots::World;
use tidemark_archiver::manifest::{MANIFEST_NAME, Manifest, envelope_sha256, revision_name};
use tidemark_seal::{ArchiverSigningKey, RecipientSecretKey};

/// Saves a new recipient key pair as `NAME.key` and `NAME.pub`.
fn recipient(w: &World, name: &str) -> RecipientSecretKey {
    let key = RecipientSecretKey::generate().expect("random");
    tidemark_seal::save_recipient_secret(&w.path(&format!("{name}.key")), &key).expect("save");
    tidemark_seal::save_recipient_public(&w.path(&format!("{name}.pub")), key.public_key()).expect("save");
    key
}

fn grant(w: &World, id: &str, key: &str, change: &[&str]) -> common::Run {
    let (archive, signer, key) = (w.archive(), w.path("archiver.key"), w.path(key));
    let mut args = vec!["snapshot", "grant", "--archive", s(&archive), "--profile", "identified", id];
    args.extend(["--archiver-key", s(&signer), "--key", s(&key)]);
    args.extend(change);
    common::tidemark(&args, b"", &[])
}

fn hashes(dir: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = fs::read_dir(dir)
        .expect("ls")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .map(|p| (s(&p).to_owned(), envelope_sha256(&fs::read(&p).expect("read"))))
        .collect();
    out.sort();
    out
}

#[test]
fn grant_adds_and_removes_recipients_without_touching_a_data_file() {
    let w = World::new();
    tidemark_seal::save_archiver_secret(&w.path("archiver.key"), &w.archiver).expect("save");
    let mut w = w;
    let id = w.commit(&[50, 30]);
    let before = hashes(&w.snapshot_dir(&id));
    let bob = recipient(&w, "bob");
    let bob_pub = w.path("bob.pub");
    let keys_of = |key: &str| w.snapshot("keys", &id, &["--key", s(&w.path(key)), "--format", "json"]);
    keys_of("bob.key").code(1).stderr_has("is not encrypted for key");

    // Bob cannot grant himself access; the reader can add him.
    grant(&w, &id, "bob.key", &["--add", s(&bob_pub)]).code(1).stderr_has("is not encrypted for key");
    grant(&w, &id, "reader.key", &["--add", s(&bob_pub)]).code(0).stdout_has("revision 2");
    keys_of("bob.key").code(0).stdout_has(&format!("tidemark.snap-{id}"));
    w.snapshot("verify", &id, &["--key", s(&w.path("bob.key"))]).code(0).stdout_has("every page verified");
    grant(&w, &id, "reader.key", &["--add", s(&bob_pub)]).code(2).stderr_has("already a recipient");

    // Bob removes the first reader: a revision 3 without it.
    let reader_id = w.recipient.key_id();
    grant(&w, &id, "bob.key", &["--remove", &reader_id]).code(0).stdout_has("revision 3");
    keys_of("reader.key").code(1).stderr_has("is not encrypted for key");
    grant(&w, &id, "bob.key", &["--remove", &bob.key_id()]).code(2).stderr_has("without a recipient");
    assert_eq!(hashes(&w.snapshot_dir(&id)), before, "no data file was rewritten");

    // Deleting the newest revision rolls the recipients back one revision.
    fs::remove_file(w.snapshot_dir(&id).join(revision_name(3))).expect("delete revision 3");
    keys_of("reader.key").code(0);
}

#[test]
fn an_edited_foreign_or_overreaching_revision_is_refused() {
    let w = World::new();
    tidemark_seal::save_archiver_secret(&w.path("archiver.key"), &w.archiver).expect("save");
    let mut w = w;
    let id = w.commit(&[20]);
    let other = w.commit(&[5]);
    recipient(&w, "bob");
    grant(&w, &id, "reader.key", &["--add", s(&w.path("bob.pub"))]).code(0);
    let dir = w.snapshot_dir(&id);
    let (rev1, rev2) = (fs::read(dir.join(MANIFEST_NAME)).expect("r1"), dir.join(revision_name(2)));
    let pristine = fs::read(&rev2).expect("r2");
    let verify = || w.snapshot("verify", &id, &[]);

    // Edited: the signature fails.
    let base = Manifest::decode_unverified(&pristine).expect("decodes");
    let mut envelope: serde_json::Value = serde_json::from_slice(&pristine).expect("JSON");
    let forged = Manifest { records_set_aside: 0, created_at: "2026-12-06T00:00:00.000Z".into(), ..base.clone() };
    let payload = serde_json::to_vec_pretty(&forged).expect("serialises");
    use base64::Engine as _;
    envelope["payload"] = base64::engine::general_purpose::STANDARD.encode(payload).into();
    fs::write(&rev2, envelope.to_string()).expect("write");
    verify().code(1).stderr_has(&revision_name(2)).stderr_has("does not verify");

    // Signed by another archiver key.
    let stranger = ArchiverSigningKey::generate().expect("random");
    let foreign = Manifest { archiver_key_id: stranger.key_id(), ..base.clone() };
    fs::write(&rev2, foreign.sign(&stranger)).expect("write");
    verify().code(1).stderr_has("not signed by archiver key");

    // Signed by the archiver, yet changing more than the recipients.
    let more = Manifest { records_set_aside: 7, ..base.clone() };
    fs::write(&rev2, more.sign(&w.archiver)).expect("write");
    verify().code(1).stderr_has("changes more than the recipients");

    // Not following revision 1.
    let detached = Manifest { previous_revision_sha256: Some("0".repeat(64)), ..base.clone() };
    fs::write(&rev2, detached.sign(&w.archiver)).expect("write");
    verify().code(1).stderr_has("is not revision 2 following");

    // Revision 2 of another snapshot, validly signed, put in place.
    grant(&w, &other, "reader.key", &["--add", s(&w.path("bob.pub"))]).code(0);
    fs::copy(w.snapshot_dir(&other).join(revision_name(2)), &rev2).expect("copy");
    verify().code(1).stderr_has("is not revision 2 following");

    // A later revision copied over revision 1 (which the chain links).
    fs::write(&rev2, &pristine).expect("restore");
    verify().code(0);
    fs::write(dir.join(MANIFEST_NAME), &pristine).expect("overwrite revision 1");
    verify().code(1).stderr_has("is revision 2, not 1");
    fs::write(dir.join(MANIFEST_NAME), &rev1).expect("restore revision 1");
    verify().code(0);
}

#[test]
fn a_deleted_middle_revision_is_refused_not_skipped() {
    let w = World::new();
    tidemark_seal::save_archiver_secret(&w.path("archiver.key"), &w.archiver).expect("save");
    let mut w = w;
    let id = w.commit(&[10]);
    for name in ["bob", "carol"] {
        recipient(&w, name);
        grant(&w, &id, "reader.key", &["--add", s(&w.path(&format!("{name}.pub")))]).code(0);
    }
    w.snapshot("verify", &id, &[]).code(0);
    fs::remove_file(w.snapshot_dir(&id).join(revision_name(2))).expect("delete revision 2");
    w.snapshot("verify", &id, &[]).code(1).stderr_has(&revision_name(2)).stderr_has("it was deleted");
    let (archive, key) = (w.archive(), w.path("archiver.pub"));
    let listed = common::tidemark(&["snapshot", "list", "--archive", s(&archive), "--archiver-pub", s(&key)], b"", &[]);
    listed.code(0).stdout_has("revisions INVALID");
}
