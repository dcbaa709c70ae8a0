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

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use tidemark_seal::snapshot_keys::{self, MasterKeyWrap};
use tidemark_seal::{ArchiverSigningKey, ArchiverVerifyingKey};

/// DSSE payload type of a manifest (format v3: parts in Parquet Modular
/// Encryption). Earlier formats are not read: none was ever deployed.
pub const MANIFEST_PAYLOAD_TYPE: &str = "application/vnd.tidemark.snapshot-manifest.v3+json";
/// The format tag of a manifest.
pub const MANIFEST_FORMAT: &str = "tidemark.snapshot.v3";
/// The manifest's object name inside a snapshot: revision 1, the one the
/// chain links. A revision `r` > 1 (recipients changed by `snapshot grant`)
/// is stored beside it as [`revision_name`]`(r)`.
pub const MANIFEST_NAME: &str = "manifest.dsse.json";

/// The object name of manifest revision `revision` (2 and above).
pub fn revision_name(revision: u32) -> String {
    format!("manifest.r{revision:05}.dsse.json")
}

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
    /// SHA-256 (lowercase hex) of the parts' Parquet schema as
    /// [`crate::pme::schema_fingerprint`] prints it. The footers are
    /// encrypted, so the schema is vouched for here; every part has it.
    pub schema_sha256: String,
    /// The parts, in name order.
    pub parts: Vec<PartEntry>,
    /// How the parts are encrypted, and the data key wrapped under the
    /// master key.
    pub encryption: Encryption,
    /// The master key wrapped for each recipient, in recipient order.
    pub recipients: Vec<RecipientEntry>,
    /// Key id of the archiver key that signed this manifest.
    pub archiver_key_id: String,
    /// The manifest's place in its profile's chain, from 1, one more than its
    /// predecessor's. It is what lets a reader tell a newer snapshot from an
    /// older one without trusting the listing, which anyone who can delete
    /// objects can roll back.
    pub sequence: u64,
    /// SHA-256 (lowercase hex) of the predecessor's `manifest.dsse.json`
    /// (revision 1) exactly as stored; absent only on the first manifest of a
    /// chain. It links each snapshot to the one before, so a deleted or
    /// swapped snapshot in the middle of the chain shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_manifest_sha256: Option<String>,
    /// The `tmd1-` id of the dataset key behind the de-identified profile's
    /// pseudonyms (absent in the identified profile), so a reader sees when
    /// the pseudonym space changed between snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_key_id: Option<String>,
    /// State records left out of this snapshot because they were not valid
    /// views of their key's patient or did not fit the catalog. Signed, so a
    /// reader knows the snapshot is short by that many patients.
    pub records_set_aside: u64,
    /// 1 as the archiver writes it; each `snapshot grant` writes the next,
    /// with the same content but the recipients.
    pub revision: u32,
    /// For a revision above 1: SHA-256 (lowercase hex) of the previous
    /// revision's stored envelope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_revision_sha256: Option<String>,
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
    /// Object name inside the snapshot: `part-00003-000.parquet`
    /// (identified: partition 3, split 0) or `part-00003.parquet`
    /// (de-identified: the fourth range of the pseudonym order).
    pub name: String,
    /// Rows in the part.
    pub rows: u64,
    /// Row groups in the part.
    pub row_groups: u64,
    /// Size of the file.
    pub bytes: u64,
    /// SHA-256 of the file, lowercase hex.
    pub sha256: String,
    /// The file's `aad_file_unique` (16 lowercase hex digits): it enters the
    /// associated data of every encrypted module of the file, so a page moved
    /// from another file fails, and the manifest names each file's own.
    pub aad_file_unique: String,
}

/// How every part is encrypted (Parquet Modular Encryption, docs/encryption.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Encryption {
    /// Always `AES_GCM_V1`, 256-bit keys, uniform (one key for footer and
    /// every column), encrypted footer, no AAD prefix.
    pub algorithm: String,
    /// The snapshot master key's id, `tidemark.snap-` + the snapshot id: the
    /// `masterKeyID` of every part's key material.
    pub master_key_id: String,
    /// HMAC-SHA256 commitment to the master key (lowercase hex): every
    /// recipient recovers the one key this signature vouches for.
    pub master_key_commitment: String,
    /// The data key wrapped under the master key, as in every part's key
    /// material (`wrappedDEK`).
    pub wrapped_dek: String,
}

/// The master key wrapped for one recipient (docs/encryption.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipientEntry {
    /// The recipient's `tmr1-` key id.
    pub key_id: String,
    /// Standard base64 of the hybrid KEM ciphertext (1120 bytes).
    pub kem_ciphertext: String,
    /// Standard base64 of the wrapped master key (48 bytes).
    pub wrapped_master_key: String,
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

fn decode_envelope(bytes: &[u8]) -> Result<Envelope, ManifestError> {
    Envelope::decode_as(bytes, MANIFEST_PAYLOAD_TYPE).map_err(ManifestError::Envelope)
}

/// SHA-256 of a stored manifest envelope, as the next manifest's
/// `previous_manifest_sha256` (or the next revision's
/// `previous_revision_sha256`) names it: lowercase hex of the hash of the
/// envelope's bytes exactly as stored (not of the payload, not re-encoded).
pub fn envelope_sha256(bytes: &[u8]) -> String {
    use sha2::{Digest as _, Sha256};
    hex::encode(Sha256::digest(bytes))
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl RecipientEntry {
    /// The entry of a wrap.
    pub fn from_wrap(wrap: &MasterKeyWrap) -> Self {
        Self {
            key_id: wrap.recipient(),
            kem_ciphertext: B64.encode(wrap.kem_ciphertext),
            wrapped_master_key: B64.encode(wrap.wrapped_key),
        }
    }

    /// The wrap of an entry.
    ///
    /// # Errors
    /// [`ManifestError::Content`] for a malformed key id or field.
    pub fn to_wrap(&self) -> Result<MasterKeyWrap, ManifestError> {
        let bad = |what: &str| ManifestError::Content(format!("recipient `{}`: {what}", self.key_id));
        let fingerprint = tidemark_seal::keys::recipient_fingerprint(&self.key_id)
            .ok_or_else(|| bad("key_id is not `tmr1-` and 32 lowercase hex digits"))?;
        let decode = |s: &str, what: &str| B64.decode(s).map_err(|_| bad(&format!("{what} is not base64")));
        let kem_ciphertext = decode(&self.kem_ciphertext, "kem_ciphertext")?
            .try_into()
            .map_err(|_| bad("kem_ciphertext is not 1120 bytes"))?;
        let wrapped_key = decode(&self.wrapped_master_key, "wrapped_master_key")?
            .try_into()
            .map_err(|_| bad("wrapped_master_key is not 48 bytes"))?;
        Ok(MasterKeyWrap { fingerprint, kem_ciphertext, wrapped_key })
    }
}

impl Manifest {
    /// Encodes and signs the manifest: the bytes to store as [`MANIFEST_NAME`]
    /// (or its revision's name).
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

    /// The manifest's place in its chain.
    pub fn chain_sequence(&self) -> u64 {
        self.sequence
    }

    /// The master key wrapped for every recipient.
    ///
    /// # Errors
    /// [`ManifestError::Content`] for a malformed entry.
    pub fn wraps(&self) -> Result<Vec<MasterKeyWrap>, ManifestError> {
        self.recipients.iter().map(RecipientEntry::to_wrap).collect()
    }

    /// The master key commitment's 32 bytes.
    ///
    /// # Errors
    /// [`ManifestError::Content`] when it is not 64 lowercase hex digits.
    pub fn commitment(&self) -> Result<[u8; 32], ManifestError> {
        let c = &self.encryption.master_key_commitment;
        hex::decode(c)
            .ok()
            .filter(|_| is_lower_hex(c, 64))
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| ManifestError::Content("master_key_commitment is not 64 lowercase hex digits".into()))
    }

    /// [`Manifest::open`] for a snapshot's `manifest.dsse.json`, which must be
    /// revision 1: the chain links it and it never changes, so a later
    /// revision copied over it is refused.
    ///
    /// # Errors
    /// As [`Manifest::open`], and [`ManifestError::Content`] for a revision
    /// above 1.
    pub fn open_first(bytes: &[u8], key: &ArchiverVerifyingKey) -> Result<Self, ManifestError> {
        let m = Self::open(bytes, key)?;
        if m.revision != 1 {
            return Err(ManifestError::Content(format!(
                "{MANIFEST_NAME} is revision {}, not 1: a later revision was copied over the first",
                m.revision
            )));
        }
        Ok(m)
    }

    /// Checks the signature by the trusted archiver key and decodes the manifest.
    ///
    /// # Errors
    /// [`ManifestError`]: not an envelope, not signed by this key, a signature
    /// that fails, or content that is not a consistent manifest.
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
        m.check()?;
        if m.archiver_key_id != key_id {
            return Err(ManifestError::Content(format!(
                "archiver_key_id is `{}` but the manifest is signed by `{key_id}`",
                m.archiver_key_id
            )));
        }
        Ok(m)
    }

    /// Internal consistency: the format tag, the chain and revision fields,
    /// the row total, part names that stay inside the snapshot, digests in
    /// lowercase hex, the encryption scheme and well-formed recipients.
    fn check(&self) -> Result<(), ManifestError> {
        let bad = |why: String| Err(ManifestError::Content(why));
        if self.format != MANIFEST_FORMAT {
            return bad(format!("format is `{}` but the payload type says `{MANIFEST_FORMAT}`", self.format));
        }
        self.check_chain_fields()?;
        let sum = self.parts.iter().try_fold(0u64, |sum, p| sum.checked_add(p.rows));
        if sum != Some(self.rows) {
            let sum = sum.map_or_else(|| "more than 2^64".to_owned(), |s| s.to_string());
            return bad(format!("rows is {} but the parts hold {sum}", self.rows));
        }
        if !is_lower_hex(&self.schema_sha256, 64) {
            return bad("schema_sha256 is not 64 lowercase hex digits".into());
        }
        for (i, p) in self.parts.iter().enumerate() {
            // Names become output files, and each file's own AAD is what keeps
            // pages from moving between files: both must be unique.
            if self.parts[..i].iter().any(|q| q.name == p.name || q.aad_file_unique == p.aad_file_unique) {
                return bad(format!("part `{}` repeats another part's name or aad_file_unique", p.name));
            }
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
            if !is_lower_hex(&p.aad_file_unique, 16) {
                return bad(format!("part `{}` has no valid aad_file_unique (16 lowercase hex digits)", p.name));
            }
        }
        let e = &self.encryption;
        if e.algorithm != ALGORITHM {
            return bad(format!("encryption algorithm is `{}`, not `{ALGORITHM}`", e.algorithm));
        }
        let expected_id = snapshot_keys::master_key_id(&self.snapshot_id)
            .map_err(|_| ManifestError::Content("snapshot_id cannot name a master key".into()))?;
        if e.master_key_id != expected_id {
            return bad(format!("master_key_id is not `{expected_id}`"));
        }
        self.commitment()?;
        if self.recipients.is_empty() {
            return bad("no recipients".into());
        }
        let wraps = self.wraps()?;
        for (i, w) in wraps.iter().enumerate() {
            if wraps[..i].iter().any(|o| o.fingerprint == w.fingerprint) {
                return bad(format!("recipient `{}` is listed twice", w.recipient()));
            }
        }
        Ok(())
    }

    /// The chain and revision fields: a sequence from 1; a predecessor hash
    /// (64 lowercase hex digits) on every manifest after the first of its
    /// chain; a dataset key id exactly in the de-identified profile; a
    /// revision from 1, with the previous revision's hash above 1.
    fn check_chain_fields(&self) -> Result<(), ManifestError> {
        let bad = |why: String| Err(ManifestError::Content(why));
        if self.sequence == 0 {
            return bad("sequence is 0 (a manifest's sequence starts at 1)".into());
        }
        match &self.previous_manifest_sha256 {
            None if self.sequence > 1 => {
                return bad(format!("sequence is {} but previous_manifest_sha256 is missing", self.sequence));
            }
            Some(h) if !is_lower_hex(h, 64) => {
                return bad("previous_manifest_sha256 is not 64 lowercase hex digits".into());
            }
            _ => {}
        }
        match (self.revision, &self.previous_revision_sha256) {
            (0, _) => return bad("revision is 0 (revisions start at 1)".into()),
            (1, Some(_)) => {
                return bad("revision 1 has no previous revision, yet previous_revision_sha256 is set".into());
            }
            (2.., None) => return bad(format!("revision {} lacks previous_revision_sha256", self.revision)),
            (2.., Some(h)) if !is_lower_hex(h, 64) => {
                return bad("previous_revision_sha256 is not 64 lowercase hex digits".into());
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

/// The one algorithm a manifest names: AES-GCM for every module.
pub const ALGORITHM: &str = "AES_GCM_V1";

#[cfg(test)]
#[path = "manifest_tests.rs"]
mod tests;
