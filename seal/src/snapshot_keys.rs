//! The keys of one snapshot: a master key, wrapped for each recipient with
//! the hybrid KEM inside the signed manifest, and a data key, wrapped under
//! the master key in the Parquet key tools' "local wrap" format inside every
//! part's footer key metadata.
//!
//! Key decision: the part files carry only what every Parquet reader's key
//! tools understand (PKMT1 key material, single wrapping), so pyarrow, Spark
//! and DuckDB decrypt them in place with a small key-list KMS client; the
//! post-quantum KEM and the recipients live in the manifest, where adding a
//! recipient re-wraps 32 bytes instead of rewriting every file. The layout is
//! specified byte by byte in docs/encryption.md.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom as _, SystemRandom};
use ring::{hkdf, hmac};
use zeroize::Zeroizing;

use super::kem::CT_LEN;
use super::keys::{RecipientPublicKey, RecipientSecretKey};
use super::keytext::FINGERPRINT_LEN;

/// Bytes of a master or data key (AES-256).
pub const KEY_LEN: usize = 32;
/// GCM tag bytes.
const TAG_LEN: usize = 16;
/// Bytes of a KEM-wrapped master key: ciphertext || tag.
pub const WRAPPED_MASTER_LEN: usize = KEY_LEN + TAG_LEN;
/// Bytes of a locally wrapped data key before base64: nonce || ciphertext || tag.
pub const WRAPPED_DATA_LEN: usize = NONCE_LEN + KEY_LEN + TAG_LEN;
/// Prefix of every master key id.
pub const MASTER_KEY_ID_PREFIX: &str = "tidemark.snap-";
/// Longest master key id accepted (the prefix and a UUID need 50).
const MAX_MASTER_KEY_ID: usize = 128;

const INFO_KEK: &[u8] = b"tidemark snapshot master key v1 kek";
const WRAP_DOMAIN: &[u8] = b"tidemark snapshot master key v1";
const COMMITMENT_DOMAIN: &[u8] = b"tidemark snapshot master key commitment v1";

/// Why a snapshot key could not be made or recovered.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotKeyError {
    /// The OS random source failed; retry.
    #[error("system random source failed")]
    Random,
    /// A master key id Parquet's key tools cannot carry.
    #[error(
        "master key id `{0}` is not `tidemark.snap-` followed by letters, digits, `-` or `.` (128 characters at most)"
    )]
    BadMasterKeyId(String),
    /// The manifest wraps the master key for other recipients only.
    #[error("this snapshot is not encrypted for key {key_id} (its recipients: {recipients})")]
    NotARecipient {
        /// The key tried.
        key_id: String,
        /// The manifest's recipients.
        recipients: String,
    },
    /// The recipient's wrap does not open: altered, or not made for this key.
    #[error("the master key wrapped for {key_id} does not unwrap: the wrap was altered or made for another key")]
    UnwrapFailed {
        /// The key tried.
        key_id: String,
    },
    /// The unwrapped master key is not the one the manifest commits to.
    #[error("the master key unwrapped for {key_id} is not the key the manifest commits to")]
    CommitmentMismatch {
        /// The key tried.
        key_id: String,
    },
    /// A wrapped data key that is not base64 of 60 bytes, or whose tag fails.
    #[error("the wrapped data key of master key `{master_key_id}` does not unwrap: {why}")]
    DataKeyUnwrap {
        /// The master key id it was wrapped under.
        master_key_id: String,
        /// What failed.
        why: &'static str,
    },
    /// The Parquet library refused a key's encryption properties (a bug:
    /// every key here is 32 bytes).
    #[error("the Parquet library refused the snapshot key: {0}")]
    Parquet(String),
    /// Footer key metadata that is not the PKMT1 material a part must carry.
    #[error("the footer key metadata is not valid PKMT1 key material: {0}")]
    KeyMaterial(String),
}

/// A 256-bit snapshot key (master or data key). Zeroized on drop; `Debug`
/// never shows it.
#[derive(Clone)]
pub struct SnapshotKey(Zeroizing<[u8; KEY_LEN]>);

impl SnapshotKey {
    /// A fresh key from the OS random source.
    ///
    /// # Errors
    /// [`SnapshotKeyError::Random`].
    pub fn generate() -> Result<Self, SnapshotKeyError> {
        let mut k = Zeroizing::new([0u8; KEY_LEN]);
        SystemRandom::new().fill(k.as_mut()).map_err(|_| SnapshotKeyError::Random)?;
        Ok(Self(k))
    }

    /// The key from its bytes.
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Self {
        Self(Zeroizing::new(*bytes))
    }

    /// The key bytes. Secret.
    pub fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Standard base64 of the key (44 characters), as the readers' key lists
    /// take it. Secret.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(B64.encode(self.0.as_ref()))
    }
}

impl std::fmt::Debug for SnapshotKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SnapshotKey(<redacted>)")
    }
}

/// The master key id of a snapshot: `tidemark.snap-` + its id. Parquet's key
/// tools serialise ids into `id:columns;…` lists, so `:`, `,` and `;` are
/// refused, as is anything but letters, digits, `-` and `.`.
///
/// # Errors
/// [`SnapshotKeyError::BadMasterKeyId`].
pub fn master_key_id(snapshot_id: &str) -> Result<String, SnapshotKeyError> {
    let id = format!("{MASTER_KEY_ID_PREFIX}{snapshot_id}");
    check_master_key_id(&id)?;
    Ok(id)
}

/// Checks a master key id's form (see [`master_key_id`]).
///
/// # Errors
/// [`SnapshotKeyError::BadMasterKeyId`].
pub fn check_master_key_id(id: &str) -> Result<(), SnapshotKeyError> {
    let ok = id.len() <= MAX_MASTER_KEY_ID
        && id.strip_prefix(MASTER_KEY_ID_PREFIX).is_some_and(|rest| {
            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'))
        });
    if ok { Ok(()) } else { Err(SnapshotKeyError::BadMasterKeyId(id.chars().take(MAX_MASTER_KEY_ID).collect())) }
}

/// The master key's commitment, signed in the manifest: HMAC-SHA256 keyed by
/// the master key over the domain, a zero byte and the master key id. AES-GCM
/// does not commit to its key, so without this an archiver could wrap
/// different master keys for different recipients; with it, every recipient
/// recovers the one key the signature vouches for. It reveals nothing of the
/// key (HMAC is a PRF).
pub fn commitment(master: &SnapshotKey, master_key_id: &str) -> [u8; 32] {
    let tag = hmac::sign(&commitment_key(master), &commitment_message(master_key_id));
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

fn commitment_key(master: &SnapshotKey) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, master.bytes())
}

fn commitment_message(master_key_id: &str) -> Vec<u8> {
    [COMMITMENT_DOMAIN, &[0], master_key_id.as_bytes()].concat()
}

/// The master key wrapped for one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MasterKeyWrap {
    /// The recipient's fingerprint (its `tmr1-` id without the prefix).
    pub fingerprint: [u8; FINGERPRINT_LEN],
    /// The hybrid KEM ciphertext: ML-KEM-768 (1088) || X25519 ephemeral (32).
    pub kem_ciphertext: [u8; CT_LEN],
    /// AES-256-GCM of the master key under the KEM's key: ciphertext || tag.
    pub wrapped_key: [u8; WRAPPED_MASTER_LEN],
}

impl MasterKeyWrap {
    /// The recipient's key id, `tmr1-…`.
    pub fn recipient(&self) -> String {
        super::keys::recipient_key_id(&self.fingerprint)
    }

    /// The associated data of the wrap: domain, 0, master key id, 0,
    /// fingerprint, KEM ciphertext. It binds the wrap to its snapshot and its
    /// recipient.
    fn aad(&self, master_key_id: &str) -> Vec<u8> {
        let mut aad = Vec::with_capacity(WRAP_DOMAIN.len() + master_key_id.len() + 2 + FINGERPRINT_LEN + CT_LEN);
        aad.extend_from_slice(WRAP_DOMAIN);
        aad.push(0);
        aad.extend_from_slice(master_key_id.as_bytes());
        aad.push(0);
        aad.extend_from_slice(&self.fingerprint);
        aad.extend_from_slice(&self.kem_ciphertext);
        aad
    }
}

struct Len32;

impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        KEY_LEN
    }
}

fn kek(shared_secret: &[u8; 32]) -> LessSafeKey {
    let mut k = Zeroizing::new([0u8; KEY_LEN]);
    hkdf::Salt::new(hkdf::HKDF_SHA256, &[])
        .extract(shared_secret)
        .expand(&[INFO_KEK], Len32)
        .and_then(|okm| okm.fill(k.as_mut()))
        .expect("HKDF-SHA256 can expand 32 bytes");
    aead(&k)
}

fn aead(key: &[u8; KEY_LEN]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte key is valid for AES-256-GCM"))
}

/// Wraps `master` for `recipient`: a fresh KEM secret, HKDF to a one-time
/// key, AES-256-GCM with a zero nonce (the key seals this one message).
///
/// # Errors
/// [`SnapshotKeyError::Random`] if encapsulation cannot draw randomness;
/// [`SnapshotKeyError::BadMasterKeyId`].
pub fn wrap_master_key(
    master: &SnapshotKey,
    master_key_id: &str,
    recipient: &RecipientPublicKey,
) -> Result<MasterKeyWrap, SnapshotKeyError> {
    check_master_key_id(master_key_id)?;
    let (kem_ciphertext, ss) = recipient.kem().encapsulate().map_err(|_| SnapshotKeyError::Random)?;
    let ss = Zeroizing::new(ss);
    let mut wrap =
        MasterKeyWrap { fingerprint: *recipient.fingerprint(), kem_ciphertext, wrapped_key: [0; WRAPPED_MASTER_LEN] };
    let mut sealed = Zeroizing::new(*master.bytes());
    let aad = wrap.aad(master_key_id);
    let tag = kek(&ss)
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key([0; NONCE_LEN]), Aad::from(&aad), sealed.as_mut())
        .expect("ring seals 32 bytes");
    wrap.wrapped_key[..KEY_LEN].copy_from_slice(sealed.as_ref());
    wrap.wrapped_key[KEY_LEN..].copy_from_slice(tag.as_ref());
    Ok(wrap)
}

/// Recovers the master key from `key`'s wrap among `wraps`, and checks it
/// against the manifest's `commitment`.
///
/// # Errors
/// [`SnapshotKeyError::NotARecipient`], [`SnapshotKeyError::UnwrapFailed`],
/// [`SnapshotKeyError::CommitmentMismatch`].
pub fn unwrap_master_key(
    wraps: &[MasterKeyWrap],
    master_key_id: &str,
    expected_commitment: &[u8; 32],
    key: &RecipientSecretKey,
) -> Result<SnapshotKey, SnapshotKeyError> {
    let key_id = key.key_id();
    let wrap = wraps.iter().find(|w| w.fingerprint == *key.public_key().fingerprint()).ok_or_else(|| {
        SnapshotKeyError::NotARecipient {
            key_id: key_id.clone(),
            recipients: wraps.iter().map(MasterKeyWrap::recipient).collect::<Vec<_>>().join(", "),
        }
    })?;
    let failed = || SnapshotKeyError::UnwrapFailed { key_id: key_id.clone() };
    // A low-order X25519 ephemeral can only come from an altered wrap.
    let ss = Zeroizing::new(key.kem().decapsulate(&wrap.kem_ciphertext).map_err(|_| failed())?);
    let mut wrapped = Zeroizing::new(wrap.wrapped_key);
    let aad = wrap.aad(master_key_id);
    let plain = kek(&ss)
        .open_in_place(Nonce::assume_unique_for_key([0; NONCE_LEN]), Aad::from(&aad), wrapped.as_mut())
        .map_err(|_| failed())?;
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    bytes.copy_from_slice(plain);
    let master = SnapshotKey(bytes);
    // Constant time: the commitment is public, but the comparison need not say more.
    hmac::verify(&commitment_key(&master), &commitment_message(master_key_id), expected_commitment)
        .map_err(|_| SnapshotKeyError::CommitmentMismatch { key_id })?;
    Ok(master)
}

/// Wraps the data key under the master key as parquet-java's key tools do
/// locally (`KeyToolkit.encryptKeyLocally`, the format its key-list KMS
/// clients unwrap): standard base64 of a random 12-byte nonce, the
/// AES-256-GCM ciphertext and the 16-byte tag, with the master key id's UTF-8
/// bytes as associated data.
///
/// # Errors
/// [`SnapshotKeyError::Random`].
pub fn wrap_data_key(
    master: &SnapshotKey,
    master_key_id: &str,
    data: &SnapshotKey,
) -> Result<String, SnapshotKeyError> {
    let mut out = Zeroizing::new([0u8; WRAPPED_DATA_LEN]);
    SystemRandom::new().fill(&mut out[..NONCE_LEN]).map_err(|_| SnapshotKeyError::Random)?;
    let nonce = Nonce::try_assume_unique_for_key(&out[..NONCE_LEN]).expect("12 bytes");
    out[NONCE_LEN..NONCE_LEN + KEY_LEN].copy_from_slice(data.bytes());
    let tag = aead(master.bytes())
        .seal_in_place_separate_tag(
            nonce,
            Aad::from(master_key_id.as_bytes()),
            &mut out[NONCE_LEN..NONCE_LEN + KEY_LEN],
        )
        .expect("ring seals 32 bytes");
    out[NONCE_LEN + KEY_LEN..].copy_from_slice(tag.as_ref());
    Ok(B64.encode(out.as_ref()))
}

/// Unwraps a data key wrapped by [`wrap_data_key`] (or by any key-tools
/// writer's local wrap with a 256-bit data key).
///
/// # Errors
/// [`SnapshotKeyError::DataKeyUnwrap`]: not base64 of 60 bytes, or the tag
/// fails (another master key, another master key id, or an altered wrap).
pub fn unwrap_data_key(
    master: &SnapshotKey,
    master_key_id: &str,
    wrapped: &str,
) -> Result<SnapshotKey, SnapshotKeyError> {
    let fail = |why| SnapshotKeyError::DataKeyUnwrap { master_key_id: master_key_id.to_owned(), why };
    if wrapped.len() > 4 * WRAPPED_DATA_LEN.div_ceil(3) {
        return Err(fail("it is longer than base64 of a 256-bit wrapped key"));
    }
    let mut bytes = Zeroizing::new(B64.decode(wrapped).map_err(|_| fail("it is not standard base64"))?);
    if bytes.len() != WRAPPED_DATA_LEN {
        return Err(fail("it is not 60 bytes (nonce, 256-bit key, tag)"));
    }
    let (nonce, sealed) = bytes.split_at_mut(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).expect("12 bytes");
    let plain = aead(master.bytes())
        .open_in_place(nonce, Aad::from(master_key_id.as_bytes()), sealed)
        .map_err(|_| fail("its tag does not verify (another master key, or an altered wrap)"))?;
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    key.copy_from_slice(plain);
    Ok(SnapshotKey(key))
}

#[cfg(test)]
#[path = "snapshot_keys_tests.rs"]
mod tests;
