#![allow(clippy::unwrap_used)]
use super::*;
use tidemark_schemas::dsse;
use tidemark_seal::{RecipientSecretKey, SnapshotKey};

const SNAPSHOT: &str = "0193a1b2-0000-7000-8000-000000000000";

fn key() -> ArchiverSigningKey {
    ArchiverSigningKey::generate().unwrap()
}

pub(crate) fn sample(signer: &ArchiverSigningKey) -> Manifest {
    let master = SnapshotKey::generate().unwrap();
    let id = snapshot_keys::master_key_id(SNAPSHOT).unwrap();
    let recipient = RecipientSecretKey::generate().unwrap();
    let wrap = snapshot_keys::wrap_master_key(&master, &id, recipient.public_key()).unwrap();
    Manifest {
        format: MANIFEST_FORMAT.into(),
        snapshot_id: SNAPSHOT.into(),
        profile: "identified".into(),
        created_at: "2026-11-22T10:00:00Z".into(),
        catalog_version: 1,
        topic: "tidemark.patient-state.v1".into(),
        cut: vec![CutOffset { partition: 0, end_offset: 10 }],
        rows: 7,
        schema_sha256: "cd".repeat(32),
        parts: vec![PartEntry {
            name: "part-00000-000.parquet".into(),
            rows: 7,
            row_groups: 1,
            bytes: 1400,
            sha256: "ab".repeat(32),
            aad_file_unique: "0011223344556677".into(),
        }],
        encryption: Encryption {
            algorithm: ALGORITHM.into(),
            master_key_commitment: hex::encode(snapshot_keys::commitment(&master, &id)),
            wrapped_dek: snapshot_keys::wrap_data_key(&master, &id, &SnapshotKey::generate().unwrap()).unwrap(),
            master_key_id: id,
        },
        recipients: vec![RecipientEntry::from_wrap(&wrap)],
        archiver_key_id: signer.key_id(),
        sequence: 1,
        previous_manifest_sha256: None,
        dataset_key_id: None,
        records_set_aside: 0,
        revision: 1,
        previous_revision_sha256: None,
    }
}

fn open(m: &Manifest, k: &ArchiverSigningKey) -> Result<Manifest, String> {
    Manifest::open(&m.sign(k), &k.verifying_key()).map_err(|e| e.to_string())
}

#[test]
fn signed_manifest_opens_with_the_right_key_only() {
    let k = key();
    let m = sample(&k);
    let bytes = m.sign(&k);
    assert_eq!(Manifest::open(&bytes, &k.verifying_key()).unwrap(), m);
    let err = Manifest::open(&bytes, &key().verifying_key()).unwrap_err();
    assert!(matches!(err, ManifestError::WrongSigner { .. }), "{err}");
}

#[test]
fn any_edit_of_the_payload_is_detected() {
    let k = key();
    let m = sample(&k);
    let env = Envelope::decode(&m.sign(&k)).unwrap();
    let text = String::from_utf8(env.payload().to_vec()).unwrap().replace("\"rows\": 7", "\"rows\": 8");
    let mut forged = dsse::sign(MANIFEST_PAYLOAD_TYPE, text.as_bytes(), key().ed25519(), &k.key_id());
    forged.signatures_mut()[0].sig = env.signatures()[0].sig.clone();
    let err = Manifest::open(forged.to_json().as_bytes(), &k.verifying_key()).unwrap_err();
    assert!(matches!(err, ManifestError::BadSignature { .. }), "{err}");
}

/// An edit of a manifest.
type Edit = fn(&mut Manifest);

#[test]
fn inconsistent_content_is_refused_even_when_signed() {
    let k = key();
    let edits: Vec<(Edit, &str)> = vec![
        (|m| m.rows = 8, "rows is 8 but the parts hold 7"),
        (|m| m.parts[0].name = "../escape".into(), "not a plain file name"),
        (|m| m.parts[0].sha256 = "AB".repeat(32), "64 lowercase hex digits"),
        (|m| m.parts[0].aad_file_unique = "00".into(), "aad_file_unique"),
        (|m| m.schema_sha256 = String::new(), "schema_sha256"),
        (|m| m.encryption.algorithm = "AES_GCM_CTR_V1".into(), "not `AES_GCM_V1`"),
        (|m| m.encryption.master_key_id = "tidemark.snap-other".into(), "master_key_id is not"),
        (|m| m.encryption.master_key_commitment = "00".into(), "master_key_commitment"),
        (|m| m.recipients.clear(), "no recipients"),
        (|m| m.recipients.push(m.recipients[0].clone()), "listed twice"),
        (|m| m.recipients[0].kem_ciphertext = "AAAA".into(), "not 1120 bytes"),
        (|m| m.recipients[0].key_id = "tmr1-XY".into(), "key_id is not"),
        (|m| m.format = "tidemark.snapshot.v2".into(), "payload type says"),
    ];
    for (edit, says) in edits {
        let mut m = sample(&k);
        edit(&mut m);
        let err = open(&m, &k).unwrap_err();
        assert!(err.contains(says), "expected `{says}` in: {err}");
    }
}

#[test]
fn chain_and_revision_fields_are_checked() {
    let k = key();
    let mut m = sample(&k);
    m.sequence = 2;
    assert!(open(&m, &k).unwrap_err().contains("previous_manifest_sha256 is missing"));
    m.previous_manifest_sha256 = Some("AB".repeat(32));
    assert!(open(&m, &k).unwrap_err().contains("64 lowercase hex"));
    m.previous_manifest_sha256 = Some("ab".repeat(32));
    assert_eq!(open(&m, &k).unwrap(), m);
    m.sequence = 0;
    assert!(open(&m, &k).unwrap_err().contains("sequence is 0"));
    m.sequence = 2;
    m.dataset_key_id = Some(format!("tmd1-{}", "0".repeat(32)));
    assert!(open(&m, &k).unwrap_err().contains("has no dataset key"));
    m.profile = "deidentified".into();
    assert_eq!(open(&m, &k).unwrap(), m);
    m.dataset_key_id = None;
    assert!(open(&m, &k).unwrap_err().contains("needs dataset_key_id"));
    let mut m = sample(&k);
    m.revision = 2;
    assert!(open(&m, &k).unwrap_err().contains("lacks previous_revision_sha256"));
    m.previous_revision_sha256 = Some("ab".repeat(32));
    assert_eq!(open(&m, &k).unwrap(), m);
    m.revision = 1;
    assert!(open(&m, &k).unwrap_err().contains("revision 1 has no previous revision"));
    m.revision = 0;
    assert!(open(&m, &k).unwrap_err().contains("revision is 0"));
}

#[test]
fn an_earlier_payload_type_is_refused() {
    let k = key();
    let m = sample(&k);
    let payload = serde_json::to_vec_pretty(&m).unwrap();
    let env = dsse::sign("application/vnd.tidemark.snapshot-manifest.v2+json", &payload, k.ed25519(), &k.key_id());
    let err = Manifest::open(env.to_json().as_bytes(), &k.verifying_key()).unwrap_err();
    assert!(matches!(err, ManifestError::Envelope(_)), "{err}");
}

proptest::proptest! {
    /// Any chain position round-trips through signing, and the payload
    /// carries the fields exactly as documented.
    #[test]
    fn chain_fields_round_trip(
        sequence in 2u64..u64::MAX,
        previous in proptest::array::uniform32(0u8..),
        set_aside in 0u64..u64::MAX,
    ) {
        let k = key();
        let mut m = sample(&k);
        m.sequence = sequence;
        m.previous_manifest_sha256 = Some(hex::encode(previous));
        m.records_set_aside = set_aside;
        let bytes = m.sign(&k);
        proptest::prop_assert_eq!(Manifest::open(&bytes, &k.verifying_key()).unwrap(), m.clone());
        let env = Envelope::decode(&bytes).unwrap();
        let json: serde_json::Value = serde_json::from_slice(env.payload()).unwrap();
        proptest::prop_assert_eq!(&json["sequence"], &serde_json::json!(sequence));
        proptest::prop_assert_eq!(&json["previous_manifest_sha256"], &serde_json::json!(hex::encode(previous)));
        proptest::prop_assert_eq!(&json["records_set_aside"], &serde_json::json!(set_aside));
        proptest::prop_assert!(json.get("dataset_key_id").is_none());
        proptest::prop_assert_eq!(envelope_sha256(&bytes).len(), 64);
    }
}
