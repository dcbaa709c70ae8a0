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

/// DSSE payload type of a manifest.
pub const MANIFEST_PAYLOAD_TYPE: &str = "application/vnd.tidemark.snapshot-manifest.v1+json";
/// The manifest's format tag.
pub const MANIFEST_FORMAT: &str = "tidemark.snapshot.v1";
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
    /// Object name inside the snapshot, e.g. `part-00003-000.parquet.tmenc`.
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
    /// Signed, but its content is not a v1 manifest.
    #[error("the manifest's content is not a valid {MANIFEST_FORMAT} manifest: {0}")]
    Content(String),
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
        let env = Envelope::decode_as(bytes, MANIFEST_PAYLOAD_TYPE).map_err(ManifestError::Envelope)?;
        serde_json::from_slice(env.payload()).map_err(|e| ManifestError::Content(e.to_string()))
    }

    /// Checks the signature by the trusted archiver key and decodes the manifest.
    ///
    /// # Errors
    /// [`ManifestError`]: not an envelope, not signed by this key, a signature
    /// that fails, or content that is not a consistent v1 manifest.
    pub fn open(bytes: &[u8], key: &ArchiverVerifyingKey) -> Result<Self, ManifestError> {
        let key_id = key.key_id();
        let key_id = key_id.as_str();
        let env = Envelope::decode_as(bytes, MANIFEST_PAYLOAD_TYPE).map_err(ManifestError::Envelope)?;
        let index =
            env.signatures().iter().position(|s| s.keyid == key_id).ok_or_else(|| ManifestError::WrongSigner {
                expected: key_id.to_owned(),
                found: env.signatures().iter().map(|s| s.keyid.as_str()).collect::<Vec<_>>().join(", "),
            })?;
        key.verify(env.pae(), &env.signatures()[index].sig)
            .map_err(|_| ManifestError::BadSignature { key_id: key_id.to_owned() })?;
        let m: Manifest = serde_json::from_slice(env.payload()).map_err(|e| ManifestError::Content(e.to_string()))?;
        m.check()?;
        if m.archiver_key_id != key_id {
            return Err(ManifestError::Content(format!(
                "archiver_key_id is `{}` but the manifest is signed by `{key_id}`",
                m.archiver_key_id
            )));
        }
        Ok(m)
    }

    /// Internal consistency: the format tag, the row total, part names that
    /// stay inside the snapshot.
    fn check(&self) -> Result<(), ManifestError> {
        let bad = |why: String| Err(ManifestError::Content(why));
        if self.format != MANIFEST_FORMAT {
            return bad(format!("format is `{}`", self.format));
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
            if p.sha256.len() != 64 || !p.sha256.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                return bad(format!("part `{}` has no valid sha256 (64 lowercase hex digits)", p.name));
            }
        }
        Ok(())
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
}
