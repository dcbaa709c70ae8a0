//! The chain of manifests against a hostile archive (issue 20, "The edges"):
//! `latest` is the highest sequence that verifies, not the last directory
//! listed; junk directories neither break `latest` nor push real snapshots out
//! through retention; a deleted or replaced snapshot breaks the chain; a pin
//! refuses a rolled-back `latest`; v1 manifests written before the chain
//! still read. No broker: the snapshots are manifests without parts.

use std::path::Path;

use bytes::Bytes;
use tidemark_archiver::chain::{self, ChainBreak};
use tidemark_archiver::manifest::{self, MANIFEST_FORMAT, MANIFEST_NAME, Manifest};
use tidemark_archiver::pin::{self, PinError, PinOutcome};
use tidemark_archiver::pme::WriteKeys;
use tidemark_archiver::reader;
use tidemark_archiver::storage::Archive;
use tidemark_archiver::succession::apply_retention;
use tidemark_seal::{ArchiverSigningKey, RecipientSecretKey};

const PROFILE: &str = "identified";

fn key() -> ArchiverSigningKey {
    ArchiverSigningKey::generate().expect("random source")
}

/// A signed manifest without parts, chained after `previous` (its bytes).
fn manifest(key: &ArchiverSigningKey, id: &str, sequence: u64, previous: Option<&[u8]>) -> Vec<u8> {
    unsigned(key, id, sequence, previous).sign(key)
}

fn unsigned(key: &ArchiverSigningKey, id: &str, sequence: u64, previous: Option<&[u8]>) -> Manifest {
    let recipient = RecipientSecretKey::generate().expect("random source");
    let keys = WriteKeys::new(id, &[recipient.public_key().clone()]).expect("snapshot keys");
    Manifest {
        format: MANIFEST_FORMAT.into(),
        snapshot_id: id.into(),
        profile: PROFILE.into(),
        created_at: "2026-12-05T00:00:00.000Z".into(),
        catalog_version: 1,
        topic: "tidemark.patient-state.v1".into(),
        cut: vec![],
        rows: 0,
        schema_sha256: "0".repeat(64),
        parts: vec![],
        encryption: keys.encryption,
        recipients: keys.recipients,
        archiver_key_id: key.key_id(),
        sequence,
        previous_manifest_sha256: previous.map(manifest::envelope_sha256),
        dataset_key_id: None,
        records_set_aside: 0,
        revision: 1,
        previous_revision_sha256: None,
    }
}

/// Snapshot ids that sort in creation order, like UUIDv7 ones.
fn id(n: u64) -> String {
    format!("0193a1b2-{n:04x}-7000-8000-000000000000")
}

/// A local archive holding a chain of `n` snapshots (sequences 1..=n).
async fn chained(dir: &Path, key: &ArchiverSigningKey, n: u64) -> Archive {
    let archive = Archive::open(dir.to_str().expect("utf-8 temp dir")).expect("local archive");
    let mut previous: Option<Vec<u8>> = None;
    for s in 1..=n {
        let bytes = manifest(key, &id(s), s, previous.as_deref());
        archive.put(PROFILE, &id(s), MANIFEST_NAME, Bytes::from(bytes.clone())).await.expect("put");
        previous = Some(bytes);
    }
    archive
}

async fn plant_junk(archive: &Archive, name: &str, bytes: Vec<u8>) {
    archive.put(PROFILE, name, MANIFEST_NAME, Bytes::from(bytes)).await.expect("put junk");
}

#[tokio::test]
async fn latest_skips_junk_directories_that_sort_last() {
    let dir = tempfile::tempdir().expect("temp dir");
    let k = key();
    let archive = chained(dir.path(), &k, 3).await;
    plant_junk(&archive, "ffffffff-0000-7000-8000-000000000000", b"{\"junk\": true}".to_vec()).await;
    // Validly signed, by someone else.
    plant_junk(&archive, "fffffffe-0000-7000-8000-000000000000", manifest(&key(), "x", 99, None)).await;
    // A real manifest of another snapshot, copied here.
    let real = archive.get(PROFILE, &id(2), MANIFEST_NAME).await.expect("get");
    plant_junk(&archive, "fffffffd-0000-7000-8000-000000000000", real.to_vec()).await;
    let (latest, chain) = reader::resolve(&archive, PROFILE, "latest", &k.verifying_key()).await.expect("resolves");
    assert_eq!(latest, id(3), "latest must be the real newest; unverified: {:?}", chain.unverified);
    assert_eq!(chain.unverified.len(), 3, "each junk directory is reported: {:?}", chain.unverified);
    assert!(chain.unverified.iter().any(|u| u.reason.contains("it was moved")), "{:?}", chain.unverified);
    assert!(chain.breaks().is_empty(), "{:?}", chain.breaks());
}

#[tokio::test]
async fn an_oversized_manifest_is_not_read_whole_and_not_a_snapshot() {
    let dir = tempfile::tempdir().expect("temp dir");
    let k = key();
    let archive = chained(dir.path(), &k, 1).await;
    let huge = vec![b' '; usize::try_from(chain::MAX_MANIFEST_BYTES).expect("fits") + 1];
    plant_junk(&archive, "ffffffff-0000-7000-8000-000000000000", huge).await;
    let chain = chain::scan(&archive, PROFILE, &k.verifying_key()).await.expect("scan");
    assert_eq!(chain.latest().map(|l| l.id.clone()), Some(id(1)));
    assert!(chain.unverified[0].reason.contains("larger than"), "{:?}", chain.unverified);
    let err = reader::manifest(&archive, PROFILE, "ffffffff-0000-7000-8000-000000000000", &k.verifying_key())
        .await
        .expect_err("too large");
    assert!(err.to_string().contains("larger than"), "{err}");
}

#[tokio::test]
async fn junk_directories_do_not_make_retention_delete_real_snapshots() {
    let dir = tempfile::tempdir().expect("temp dir");
    let k = key();
    let archive = chained(dir.path(), &k, 3).await;
    for n in 0..5 {
        plant_junk(&archive, &format!("ffffffff-{n:04}-7000-8000-000000000000"), b"junk".to_vec()).await;
    }
    apply_retention(&archive, PROFILE, 2, &k.verifying_key()).await.expect("retention");
    let left: Vec<String> = archive.list_snapshots(PROFILE).await.expect("list").into_iter().map(|d| d.id).collect();
    assert!(left.contains(&id(2)) && left.contains(&id(3)), "the two newest real snapshots stay: {left:?}");
    assert!(!left.contains(&id(1)), "the oldest real one goes: {left:?}");
    assert_eq!(left.len(), 7, "junk is not ours to delete, and does not count: {left:?}");
}

#[tokio::test]
async fn a_deleted_newest_snapshot_is_refused_by_the_pin() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pin_file = dir.path().join("archive.pin");
    let k = key();
    let archive = chained(&dir.path().join("archive"), &k, 3).await;
    let location = archive.location().to_owned();
    let verifier = k.verifying_key();
    let latest = |archive: Archive| {
        let verifier = verifier.clone();
        async move {
            let chain = chain::scan(&archive, PROFILE, &verifier).await.expect("scan");
            chain.latest().cloned().expect("a snapshot")
        }
    };
    let newest = latest(archive.clone()).await;
    assert_eq!(pin::check(&pin_file, &location, PROFILE, &newest).expect("first use"), PinOutcome::FirstUse);
    assert_eq!(pin::check(&pin_file, &location, PROFILE, &newest).expect("again"), PinOutcome::Unchanged);
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&pin_file).expect("pin").permissions());
    assert_eq!(mode & 0o777, 0o600, "the pin file is created 0600");

    archive.remove_snapshot(PROFILE, &id(3)).await.expect("delete the newest");
    let older = latest(archive.clone()).await;
    assert_eq!(older.id, id(2), "the listing alone now rolls back to sequence 2");
    let err = pin::check(&pin_file, &location, PROFILE, &older).expect_err("a rollback must be refused");
    assert!(matches!(err, PinError::Rollback { latest: 2, pinned: 3, .. }), "{err}");
    assert!(err.to_string().contains("rollback"), "{err}");
}

#[tokio::test]
async fn a_deleted_or_replaced_snapshot_breaks_the_chain() {
    let dir = tempfile::tempdir().expect("temp dir");
    let k = key();
    let archive = chained(dir.path(), &k, 4).await;
    archive.remove_snapshot(PROFILE, &id(2)).await.expect("delete");
    let chain = chain::scan(&archive, PROFILE, &k.verifying_key()).await.expect("scan");
    assert_eq!(
        chain.breaks(),
        vec![ChainBreak::Missing { from: 2, to: 2, before: id(1), after: id(3) }],
        "a missing predecessor is reported"
    );
    // Put a different, validly signed sequence 2 back: the link from 3 fails.
    let first = archive.get(PROFILE, &id(1), MANIFEST_NAME).await.expect("get");
    let mut other = unsigned(&k, &id(2), 2, Some(&first));
    other.created_at = "2026-12-05T00:00:01.000Z".into();
    archive.put(PROFILE, &id(2), MANIFEST_NAME, Bytes::from(other.sign(&k))).await.expect("put");
    let chain = chain::scan(&archive, PROFILE, &k.verifying_key()).await.expect("scan");
    assert_eq!(
        chain.breaks(),
        vec![ChainBreak::Mismatch { snapshot: id(3), sequence: 3, previous: id(2) }],
        "a replaced predecessor is reported"
    );
}
