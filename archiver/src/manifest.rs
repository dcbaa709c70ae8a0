//! The snapshot manifest: what a snapshot holds, signed by the archiver.
//!
//! Key decision: the manifest travels as a DSSE envelope (the same signing
//! format as edit events) whose payload is the manifest JSON exactly as
//! written, so the signature covers bytes, not a canonicalisation, and a
//! reader can check it with any DSSE library. It is written after every part,
//! in one atomic put: a snapshot without a manifest that verifies does not
//! exist.

use serde::{Deserialize, Serialize};
use tidemark_schemas::dsse::{self, DsseError, Envelope};

use tidemark_seal::{ArchiverSigningKey, ArchiverVerifyingKey};

/// DSSE payload type of a manifest written today (format v2).
pub const MANIFEST_PAYLOAD_TYPE: &str = "application/vnd.tidemark.snapshot-manifest.v2+json";
/// The format tag of a manifest written today.
pub const MANIFEST_FORMAT: &str = "tidemark.snapshot.v2";
/// DSSE payload type of a v1 manifest: still read, never written.
pub const MANIFEST_PAYLOAD_TYPE_V1: &str = "application/vnd.tidemark.snapshot-manifest.v1+json";
/// The format tag of a v1 manifest (no chain fields).
pub const MANIFEST_FORMAT_V1: &str = "tidemark.snapshot.v1";
/// The manifest's object name inside a snapshot.
pub const MANIFEST_NAME: &str = "manifest.dsse.json";

/// Everything a reader needs to check and read a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// The snapshot's id (UUIDv7: sorts by creation time).
    pub snapshot_id: String,
    /// `identified` or `deidentified`.
    pub profile: String,
    /// When the snapshot was committed, RFC 3339 UTC.
    pub created_at: String,
    /// The record catalog's version the columns derive from.
    pub catalog_version: u32,
    /// The state topic read.
    pub topic: String,
    /// The consistent cut: for each partition, the end offset read up to (exclusive).
    pub cut: Vec<CutOffset>,
    /// Rows over all parts (one per patient).
    pub rows: u64,
    /// The parts, in name order.
    pub parts: Vec<PartEntry>,
    /// Key ids of the recipients every part is encrypted to.
    pub recipients: Vec<String>,
    /// Key id of the archiver key that signed this manifest.
    pub archiver_key_id: String,
    /// v2: the manifest's place in its profile's chain, from 1, one more than
    /// its predecessor's (a v1 predecessor counts as 0). It is what lets a
    /// reader tell a newer snapshot from an older one without trusting the
    /// listing, which anyone who can delete objects can roll back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    /// v2: SHA-256 (lowercase hex) of the predecessor's `manifest.dsse.json`
    /// exactly as stored; absent only on the first manifest of a chain. It
    /// links each snapshot to the one before, so a deleted or swapped
    /// snapshot in the middle of the chain shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_manifest_sha256: Option<String>,
    /// v2: the `tmd1-` id of the dataset key behind the de-identified
    /// profile's pseudonyms (absent in the identified profile), so a reader
    /// sees when the pseudonym space changed between snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_key_id: Option<String>,
    /// v2: state records left out of this snapshot because they were not
    /// valid views of their key's patient or did not fit the catalog. Signed,
    /// so a reader knows the snapshot is short by that many patients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_set_aside: Option<u64>,
}

/// One partition's end offset in the cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CutOffset {
    /// The partition.
    pub partition: i32,
    /// The end offset captured at the snapshot's start (exclusive).
    pub end_offset: i64,
}

/// One encrypted Parquet part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartEntry {
    /// Object name inside the snapshot: `part-00003-000.parquet.tmenc`
    /// (identified: partition 3, split 0) or `part-00003.parquet.tmenc`
    /// (de-identified: the fourth range of the pseudonym order).
    pub name: String,
    /// Rows in the part.
    pub rows: u64,
    /// Size of the Parquet plaintext.
    pub plaintext_bytes: u64,
    /// Size of the encrypted object.
    pub ciphertext_bytes: u64,
    /// SHA-256 of the encrypted object, lowercase hex.
    pub sha256: String,
}

/// Why a manifest could not be read or trusted.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not a DSSE envelope, or not a manifest's.
    #[error("the manifest is not a valid DSSE envelope: {0}")]
    Envelope(#[source] DsseError),
    /// No signature by the expected archiver key.
    #[error("the manifest is not signed by archiver key `{expected}` (signed by: {found})")]
    WrongSigner {
        /// The trusted key's id.
        expected: String,
        /// The key ids on the envelope.
        found: String,
    },
    /// The signature does not verify: the manifest was altered.
    #[error("the manifest's signature by `{key_id}` does not verify: the manifest was altered or forged")]
    BadSignature {
        /// The key id.
        key_id: String,
    },
    /// Signed, but its content is not a consistent manifest.
    #[error("the manifest's content is not a valid snapshot manifest: {0}")]
    Content(String),
}

/// Decodes an envelope of either manifest payload type (v2, or v1 as older
/// archivers wrote it).
fn decode_envelope(bytes: &[u8]) -> Result<Envelope, ManifestError> {
    let env = Envelope::decode(bytes).map_err(ManifestError::Envelope)?;
    if env.payload_type() == MANIFEST_PAYLOAD_TYPE {
        return Ok(env);
    }
    Envelope::decode_as(bytes, MANIFEST_PAYLOAD_TYPE_V1).map_err(ManifestError::Envelope)
}

/// SHA-256 of a stored `manifest.dsse.json`, as the next manifest's
/// `previous_manifest_sha256` names it: lowercase hex of the hash of the
/// envelope's bytes exactly as stored (not of the payload, not re-encoded).
pub fn envelope_sha256(bytes: &[u8]) -> String {
    use sha2::{Digest as _, Sha256};
    hex::encode(Sha256::digest(bytes))
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Manifest {
    /// Encodes and signs the manifest: the bytes to store as [`MANIFEST_NAME`].
    pub fn sign(&self, key: &ArchiverSigningKey) -> Vec<u8> {
        let payload = serde_json::to_vec_pretty(self).expect("a manifest always serialises");
        dsse::sign(MANIFEST_PAYLOAD_TYPE, &payload, key.ed25519(), &key.key_id()).to_json().into_bytes()
    }

    /// Decodes the manifest without checking its signature: for listing only,
    /// never for deciding what to trust.
    ///
    /// # Errors
    /// [`ManifestError::Envelope`] or [`ManifestError::Content`].
    pub fn decode_unverified(bytes: &[u8]) -> Result<Self, ManifestError> {
        let env = decode_envelope(bytes)?;
        serde_json::from_slice(env.payload()).map_err(|e| ManifestError::Content(e.to_string()))
    }

    /// The manifest's place in its chain: its `sequence`, or 0 for a v1
    /// manifest (which predates the chain and so comes before any v2 one).
    pub fn chain_sequence(&self) -> u64 {
        self.sequence.unwrap_or(0)
    }

    /// Checks the signature by the trusted archiver key and decodes the manifest.
    ///
    /// # Errors
    /// [`ManifestError`]: not an envelope, not signed by this key, a signature
    /// that fails, or content that is not a consistent v1 manifest.
    pub fn open(bytes: &[u8], key: &ArchiverVerifyingKey) -> Result<Self, ManifestError> {
        let key_id = key.key_id();
        let key_id = key_id.as_str();
        let env = decode_envelope(bytes)?;
        let index =
            env.signatures().iter().position(|s| s.keyid == key_id).ok_or_else(|| ManifestError::WrongSigner {
                expected: key_id.to_owned(),
                found: env.signatures().iter().map(|s| s.keyid.as_str()).collect::<Vec<_>>().join(", "),
            })?;
        key.verify(env.pae(), &env.signatures()[index].sig)
            .map_err(|_| ManifestError::BadSignature { key_id: key_id.to_owned() })?;
        let m: Manifest = serde_json::from_slice(env.payload()).map_err(|e| ManifestError::Content(e.to_string()))?;
        m.check(env.payload_type())?;
        if m.archiver_key_id != key_id {
            return Err(ManifestError::Content(format!(
                "archiver_key_id is `{}` but the manifest is signed by `{key_id}`",
                m.archiver_key_id
            )));
        }
        Ok(m)
    }

    /// Internal consistency: the format tag matching the payload type, the
    /// chain fields present exactly in v2, the row total, part names that
    /// stay inside the snapshot.
    fn check(&self, payload_type: &str) -> Result<(), ManifestError> {
        let bad = |why: String| Err(ManifestError::Content(why));
        let v2 = payload_type == MANIFEST_PAYLOAD_TYPE;
        let format = if v2 { MANIFEST_FORMAT } else { MANIFEST_FORMAT_V1 };
        if self.format != format {
            return bad(format!("format is `{}` but the payload type says `{format}`", self.format));
        }
        if v2 {
            self.check_chain_fields()?;
        } else if self.sequence.is_some()
            || self.previous_manifest_sha256.is_some()
            || self.dataset_key_id.is_some()
            || self.records_set_aside.is_some()
        {
            return bad(format!(
                "a {MANIFEST_FORMAT_V1} manifest has no sequence, previous_manifest_sha256, dataset_key_id or \
                 records_set_aside"
            ));
        }
        let sum: u64 = self.parts.iter().map(|p| p.rows).sum();
        if sum != self.rows {
            return bad(format!("rows is {} but the parts hold {sum}", self.rows));
        }
        for p in &self.parts {
            let safe = !p.name.is_empty()
                && !p.name.starts_with('.')
                && p.name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !safe {
                return bad(format!("part name `{}` is not a plain file name", p.name));
            }
            // Lowercase only, as the format says: the reader compares the
            // digest as text, so an uppercase one would pass here and then
            // fail as a damaged part.
            if !is_lower_hex(&p.sha256, 64) {
                return bad(format!("part `{}` has no valid sha256 (64 lowercase hex digits)", p.name));
            }
        }
        Ok(())
    }

    /// The v2 fields: a sequence from 1; a predecessor hash (64 lowercase
    /// hex digits) on every manifest after the first of its chain; a dataset
    /// key id exactly in the de-identified profile.
    fn check_chain_fields(&self) -> Result<(), ManifestError> {
        let bad = |why: String| Err(ManifestError::Content(why));
        if self.records_set_aside.is_none() {
            return bad("records_set_aside is missing".into());
        }
        let Some(sequence) = self.sequence.filter(|&s| s >= 1) else {
            return bad("sequence is missing or 0 (a v2 manifest's sequence starts at 1)".into());
        };
        match &self.previous_manifest_sha256 {
            None if sequence > 1 => {
                return bad(format!("sequence is {sequence} but previous_manifest_sha256 is missing"));
            }
            Some(h) if !is_lower_hex(h, 64) => {
                return bad("previous_manifest_sha256 is not 64 lowercase hex digits".into());
            }
            _ => {}
        }
        let key_id_ok = |id: &str| id.strip_prefix("tmd1-").is_some_and(|h| is_lower_hex(h, 32));
        match (self.profile.as_str(), &self.dataset_key_id) {
            ("deidentified", Some(id)) if key_id_ok(id) => Ok(()),
            ("deidentified", _) => {
                bad("a de-identified manifest needs dataset_key_id (`tmd1-` and 32 hex digits)".into())
            }
            (_, Some(_)) => bad(format!("profile `{}` has no dataset key, yet dataset_key_id is set", self.profile)),
            (_, None) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT.into(),
            snapshot_id: "0193a1b2-0000-7000-8000-000000000000".into(),
            profile: "identified".into(),
            created_at: "2026-11-22T10:00:00Z".into(),
            catalog_version: 1,
            topic: "tidemark.patient-state.v1".into(),
            cut: vec![CutOffset { partition: 0, end_offset: 10 }],
            rows: 7,
            parts: vec![PartEntry {
                name: "part-00000-000.parquet.tmenc".into(),
                rows: 7,
                plaintext_bytes: 100,
                ciphertext_bytes: 1400,
                sha256: "ab".repeat(32),
            }],
            recipients: vec!["tmr1-0011".into()],
            archiver_key_id: String::new(),
            sequence: Some(1),
            previous_manifest_sha256: None,
            dataset_key_id: None,
            records_set_aside: Some(0),
        }
    }

    fn key() -> ArchiverSigningKey {
        ArchiverSigningKey::generate().unwrap()
    }

    #[test]
    fn signed_manifest_opens_with_the_right_key_only() {
        let k = key();
        let mut m = sample();
        m.archiver_key_id = k.key_id();
        let bytes = m.sign(&k);
        assert_eq!(Manifest::open(&bytes, &k.verifying_key()).unwrap(), m);
        let err = Manifest::open(&bytes, &key().verifying_key()).unwrap_err();
        assert!(matches!(err, ManifestError::WrongSigner { .. }), "{err}");
    }

    #[test]
    fn any_edit_of_the_payload_is_detected() {
        let k = key();
        let mut m = sample();
        m.archiver_key_id = k.key_id();
        let env = Envelope::decode(&m.sign(&k)).unwrap();
        let text = String::from_utf8(env.payload().to_vec()).unwrap().replace("\"rows\": 7", "\"rows\": 8");
        let mut forged = dsse::sign(MANIFEST_PAYLOAD_TYPE, text.as_bytes(), key().ed25519(), &k.key_id());
        forged.signatures_mut()[0].sig = env.signatures()[0].sig.clone();
        let err = Manifest::open(forged.to_json().as_bytes(), &k.verifying_key()).unwrap_err();
        assert!(matches!(err, ManifestError::BadSignature { .. }), "{err}");
    }

    #[test]
    fn inconsistent_content_is_refused_even_when_signed() {
        let k = key();
        let mut m = sample();
        m.archiver_key_id = k.key_id();
        m.rows = 8;
        let err = Manifest::open(&m.sign(&k), &k.verifying_key()).unwrap_err();
        assert!(err.to_string().contains("rows is 8 but the parts hold 7"), "{err}");
        let mut m = sample();
        m.archiver_key_id = k.key_id();
        m.parts[0].name = "../escape".into();
        let err = Manifest::open(&m.sign(&k), &k.verifying_key()).unwrap_err();
        assert!(err.to_string().contains("not a plain file name"), "{err}");
    }

    #[test]
    fn a_digest_in_uppercase_hex_is_refused_when_opened_not_later_as_damage() {
        let k = key();
        let mut m = sample();
        m.archiver_key_id = k.key_id();
        m.parts[0].sha256 = "AB".repeat(32);
        let err = Manifest::open(&m.sign(&k), &k.verifying_key()).unwrap_err();
        assert!(err.to_string().contains("64 lowercase hex digits"), "{err}");
    }

    #[test]
    fn v2_chain_fields_are_checked() {
        let k = key();
        let open = |m: &Manifest| Manifest::open(&m.sign(&k), &k.verifying_key()).map_err(|e| e.to_string());
        let mut m = sample();
        m.archiver_key_id = k.key_id();
        m.sequence = Some(2);
        assert!(open(&m).unwrap_err().contains("previous_manifest_sha256 is missing"));
        m.previous_manifest_sha256 = Some("AB".repeat(32));
        assert!(open(&m).unwrap_err().contains("64 lowercase hex"));
        m.previous_manifest_sha256 = Some("ab".repeat(32));
        assert_eq!(open(&m).unwrap(), m);
        m.sequence = Some(0);
        assert!(open(&m).unwrap_err().contains("sequence is missing or 0"));
        m.sequence = Some(2);
        m.dataset_key_id = Some(format!("tmd1-{}", "0".repeat(32)));
        assert!(open(&m).unwrap_err().contains("has no dataset key"));
        m.profile = "deidentified".into();
        assert_eq!(open(&m).unwrap(), m);
        m.dataset_key_id = None;
        assert!(open(&m).unwrap_err().contains("needs dataset_key_id"));
        m.records_set_aside = None;
        assert!(open(&m).unwrap_err().contains("records_set_aside is missing"));
    }

    #[test]
    fn a_v1_payload_type_with_chain_fields_or_a_v2_format_is_refused() {
        let k = key();
        let mut m = sample();
        m.archiver_key_id = k.key_id();
        let payload = serde_json::to_vec_pretty(&m).unwrap();
        let env = dsse::sign(MANIFEST_PAYLOAD_TYPE_V1, &payload, k.ed25519(), &k.key_id()).to_json();
        let err = Manifest::open(env.as_bytes(), &k.verifying_key()).unwrap_err();
        assert!(err.to_string().contains("but the payload type says `tidemark.snapshot.v1`"), "{err}");
        m.format = MANIFEST_FORMAT_V1.into();
        let payload = serde_json::to_vec_pretty(&m).unwrap();
        let env = dsse::sign(MANIFEST_PAYLOAD_TYPE_V1, &payload, k.ed25519(), &k.key_id()).to_json();
        let err = Manifest::open(env.as_bytes(), &k.verifying_key()).unwrap_err();
        assert!(err.to_string().contains("has no sequence"), "{err}");
        // records_set_aside alone is a v2 field too (docs/encryption.md).
        let mut m = sample();
        m.archiver_key_id = k.key_id();
        m.format = MANIFEST_FORMAT_V1.into();
        (m.sequence, m.previous_manifest_sha256, m.dataset_key_id) = (None, None, None);
        m.records_set_aside = Some(0);
        let payload = serde_json::to_vec_pretty(&m).unwrap();
        let env = dsse::sign(MANIFEST_PAYLOAD_TYPE_V1, &payload, k.ed25519(), &k.key_id()).to_json();
        let err = Manifest::open(env.as_bytes(), &k.verifying_key()).unwrap_err();
        assert!(err.to_string().contains("records_set_aside"), "{err}");
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
            let mut m = sample();
            m.archiver_key_id = k.key_id();
            m.sequence = Some(sequence);
            m.previous_manifest_sha256 = Some(hex::encode(previous));
            m.records_set_aside = Some(set_aside);
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
}
