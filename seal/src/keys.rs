//! Recipient keys (who can decrypt parts) and the archiver's signing key (who
//! vouches for manifests), each named by an id derived from its public key.
//!
//! Ids are derived, never chosen: `tmr1-` (recipient) or `tma1-` (archiver) +
//! hex of the first 16 bytes of SHA-256 of the public key bytes. So an id in a
//! part header or manifest always names exactly one key, anyone can recompute
//! it from a `.pub` file, and a key file whose id line was edited is refused.

use std::fmt;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use ring::rand::{SecureRandom as _, SystemRandom};
use zeroize::Zeroizing;

use super::kem;
use super::keytext::{self, FINGERPRINT_LEN, KeyError, KeyKind};

/// Prefix of recipient key ids.
pub const RECIPIENT_ID_PREFIX: &str = "tmr1-";
/// Prefix of archiver key ids.
pub const ARCHIVER_ID_PREFIX: &str = "tma1-";
/// Length of an archiver signature.
pub const SIGNATURE_LEN: usize = 64;

/// The id of the recipient whose public key has this fingerprint.
pub fn recipient_key_id(fingerprint: &[u8; FINGERPRINT_LEN]) -> String {
    keytext::key_id(RECIPIENT_ID_PREFIX, fingerprint)
}

/// The fingerprint a recipient key id names: `tmr1-` and 32 lowercase hex
/// digits, or `None`.
pub fn recipient_fingerprint(key_id: &str) -> Option<[u8; FINGERPRINT_LEN]> {
    let hex_digits = key_id.strip_prefix(RECIPIENT_ID_PREFIX)?;
    if hex_digits.len() != 2 * FINGERPRINT_LEN || !hex_digits.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    hex::decode(hex_digits).ok()?.try_into().ok()
}

/// A recipient's public key: parts are encrypted to it.
#[derive(Clone, PartialEq, Eq)]
pub struct RecipientPublicKey {
    kem: kem::PublicKey,
    fingerprint: [u8; FINGERPRINT_LEN],
}

impl RecipientPublicKey {
    /// Parses and checks the hybrid public key bytes (ML-KEM-768 || X25519).
    ///
    /// # Errors
    /// [`KeyError::InvalidKey`] for a wrong length, an ML-KEM key failing the
    /// modulus check, or a low-order X25519 key.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let bytes: &[u8; kem::PK_LEN] =
            bytes.try_into().map_err(|_| KeyError::InvalidKey("a recipient public key is 1216 bytes"))?;
        let kem = kem::PublicKey::from_bytes(bytes)
            .map_err(|_| KeyError::InvalidKey("not a valid ML-KEM-768 + X25519 public key"))?;
        Ok(Self::from_kem(kem))
    }

    fn from_kem(kem: kem::PublicKey) -> Self {
        let fingerprint = keytext::fingerprint(&kem.to_bytes());
        Self { kem, fingerprint }
    }

    /// The hybrid public key bytes: ML-KEM-768 encapsulation key || X25519.
    pub fn to_bytes(&self) -> [u8; kem::PK_LEN] {
        self.kem.to_bytes()
    }

    /// The key id, `tmr1-` + 32 hex digits.
    pub fn key_id(&self) -> String {
        recipient_key_id(&self.fingerprint)
    }

    /// The fingerprint stored in part headers.
    pub fn fingerprint(&self) -> &[u8; FINGERPRINT_LEN] {
        &self.fingerprint
    }

    pub(crate) fn kem(&self) -> &kem::PublicKey {
        &self.kem
    }

    /// The `.pub` file text.
    pub fn to_text(&self) -> String {
        keytext::encode(KeyKind::RecipientPublic, &self.key_id(), &self.to_bytes()).to_string()
    }

    /// Parses a `.pub` file, checking its id against the key.
    ///
    /// # Errors
    /// [`KeyError`] for a malformed file, a wrong kind, an invalid key or an id mismatch.
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let (stated, bytes) = keytext::decode(text, KeyKind::RecipientPublic)?;
        let key = Self::from_bytes(&bytes)?;
        check_id(stated, key.key_id())?;
        Ok(key)
    }
}

impl fmt::Debug for RecipientPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecipientPublicKey({})", self.key_id())
    }
}

/// A recipient's secret key: decrypts the parts encrypted to its public key.
/// Zeroized on drop; `Debug` shows only the id.
#[derive(Clone)]
pub struct RecipientSecretKey {
    kem: kem::SecretKey,
    public: RecipientPublicKey,
}

impl RecipientSecretKey {
    /// A fresh key from the OS random source.
    ///
    /// # Errors
    /// [`KeyError::Random`] if the random source fails.
    pub fn generate() -> Result<Self, KeyError> {
        kem::SecretKey::generate().map(Self::from_kem).map_err(|_| KeyError::Random)
    }

    fn from_kem(kem: kem::SecretKey) -> Self {
        let public = RecipientPublicKey::from_kem(kem.public_key());
        Self { kem, public }
    }

    /// The matching public key.
    pub fn public_key(&self) -> &RecipientPublicKey {
        &self.public
    }

    /// The key id (that of the public key).
    pub fn key_id(&self) -> String {
        self.public.key_id()
    }

    pub(crate) fn kem(&self) -> &kem::SecretKey {
        &self.kem
    }

    /// The `.key` file text. Secret: write it only to a file created 0600.
    pub fn to_text(&self) -> Zeroizing<String> {
        keytext::encode(KeyKind::RecipientSecret, &self.key_id(), self.kem.to_bytes().as_slice())
    }

    /// Parses a `.key` file, checking its id against the key.
    ///
    /// # Errors
    /// [`KeyError`], never quoting the secret.
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let (stated, bytes) = keytext::decode(text, KeyKind::RecipientSecret)?;
        let bytes: &[u8; kem::SK_LEN] =
            bytes.as_slice().try_into().map_err(|_| KeyError::InvalidKey("a recipient secret key is 96 bytes"))?;
        let key = Self::from_kem(kem::SecretKey::from_bytes(bytes));
        check_id(stated, key.key_id())?;
        Ok(key)
    }
}

impl fmt::Debug for RecipientSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecipientSecretKey({}, <redacted>)", self.key_id())
    }
}

/// A manifest signature that does not verify: set the snapshot aside.
#[derive(Debug, thiserror::Error)]
#[error("signature does not verify under archiver key {key_id}: the signed data was altered or signed by another key")]
pub struct BadSignature {
    /// The id of the key the signature was checked against.
    pub key_id: String,
}

/// The archiver's public key: verifies manifest signatures.
#[derive(Clone, PartialEq, Eq)]
pub struct ArchiverVerifyingKey {
    key: VerifyingKey,
}

impl ArchiverVerifyingKey {
    /// Parses a 32-byte Ed25519 public key, refusing weak (small-order) keys.
    ///
    /// # Errors
    /// [`KeyError::InvalidKey`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let bytes: &[u8; 32] =
            bytes.try_into().map_err(|_| KeyError::InvalidKey("an Ed25519 public key is 32 bytes"))?;
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::InvalidKey("not an Ed25519 point"))?;
        if key.is_weak() {
            return Err(KeyError::InvalidKey("weak (small-order) Ed25519 public key"));
        }
        Ok(Self { key })
    }

    /// The 32 public key bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The Ed25519 key, for signature schemes built on it (e.g. DSSE envelopes).
    pub fn ed25519(&self) -> &VerifyingKey {
        &self.key
    }

    /// The key id, `tma1-` + 32 hex digits.
    pub fn key_id(&self) -> String {
        keytext::key_id(ARCHIVER_ID_PREFIX, &keytext::fingerprint(self.key.as_bytes()))
    }

    /// Checks `signature` over `message` with strict Ed25519 verification (no
    /// malleable or small-order signatures).
    ///
    /// # Errors
    /// [`BadSignature`] if it does not verify or is not 64 bytes.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), BadSignature> {
        let bad = || BadSignature { key_id: self.key_id() };
        let sig: &[u8; SIGNATURE_LEN] = signature.try_into().map_err(|_| bad())?;
        self.key.verify_strict(message, &Signature::from_bytes(sig)).map_err(|_| bad())
    }

    /// The `.pub` file text.
    pub fn to_text(&self) -> String {
        keytext::encode(KeyKind::ArchiverPublic, &self.key_id(), &self.to_bytes()).to_string()
    }

    /// Parses a `.pub` file, checking its id against the key.
    ///
    /// # Errors
    /// [`KeyError`].
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let (stated, bytes) = keytext::decode(text, KeyKind::ArchiverPublic)?;
        let key = Self::from_bytes(&bytes)?;
        check_id(stated, key.key_id())?;
        Ok(key)
    }
}

impl fmt::Debug for ArchiverVerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ArchiverVerifyingKey({})", self.key_id())
    }
}

/// The archiver's Ed25519 signing key. Zeroized on drop; `Debug` shows only the id.
#[derive(Clone)]
pub struct ArchiverSigningKey {
    key: SigningKey,
}

impl ArchiverSigningKey {
    /// A fresh key from the OS random source.
    ///
    /// # Errors
    /// [`KeyError::Random`] if the random source fails.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        SystemRandom::new().fill(seed.as_mut()).map_err(|_| KeyError::Random)?;
        Ok(Self { key: SigningKey::from_bytes(&seed) })
    }

    /// The public half.
    pub fn verifying_key(&self) -> ArchiverVerifyingKey {
        ArchiverVerifyingKey { key: self.key.verifying_key() }
    }

    /// The key id (that of the verifying key).
    pub fn key_id(&self) -> String {
        self.verifying_key().key_id()
    }

    /// The Ed25519 key, for signature schemes built on it (e.g. DSSE envelopes).
    pub fn ed25519(&self) -> &SigningKey {
        &self.key
    }

    /// Signs `message` (deterministic Ed25519). Callers sign a canonical
    /// encoding that names what it is (e.g. starts with a format tag), so a
    /// signature over one kind of document is never valid as another.
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.key.sign(message).to_bytes()
    }

    /// The `.key` file text. Secret: write it only to a file created 0600.
    pub fn to_text(&self) -> Zeroizing<String> {
        keytext::encode(KeyKind::ArchiverSecret, &self.key_id(), self.key.as_bytes())
    }

    /// Parses a `.key` file, checking its id against the key.
    ///
    /// # Errors
    /// [`KeyError`], never quoting the secret.
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let (stated, seed) = keytext::decode(text, KeyKind::ArchiverSecret)?;
        let seed: &[u8; 32] =
            seed.as_slice().try_into().map_err(|_| KeyError::InvalidKey("an Ed25519 secret key is a 32-byte seed"))?;
        let key = Self { key: SigningKey::from_bytes(seed) };
        check_id(stated, key.key_id())?;
        Ok(key)
    }
}

impl fmt::Debug for ArchiverSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ArchiverSigningKey({}, <redacted>)", self.key_id())
    }
}

fn check_id(stated: String, derived: String) -> Result<(), KeyError> {
    if stated == derived { Ok(()) } else { Err(KeyError::IdMismatch { stated, derived }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipient_keys_round_trip_through_text() {
        let sk = RecipientSecretKey::generate().expect("rng");
        let again = RecipientSecretKey::from_text(&sk.to_text()).expect("own secret text parses");
        assert_eq!(again.public_key(), sk.public_key());
        let pk = RecipientPublicKey::from_text(&sk.public_key().to_text()).expect("own public text parses");
        assert_eq!(&pk, sk.public_key());
        assert!(sk.key_id().starts_with(RECIPIENT_ID_PREFIX) && sk.key_id().len() == 5 + 32, "{}", sk.key_id());
        assert_eq!(format!("{sk:?}"), format!("RecipientSecretKey({}, <redacted>)", sk.key_id()));
        // A public key file is not a secret key file.
        assert!(matches!(RecipientSecretKey::from_text(&pk.to_text()), Err(KeyError::WrongKind { .. })));
    }

    #[test]
    fn edited_id_is_refused() {
        let sk = RecipientSecretKey::generate().expect("rng");
        let text = sk.public_key().to_text().replace(&sk.key_id(), "tmr1-00000000000000000000000000000000");
        assert!(matches!(RecipientPublicKey::from_text(&text), Err(KeyError::IdMismatch { .. })));
    }

    #[test]
    fn archiver_key_signs_and_verifies() {
        let sk = ArchiverSigningKey::generate().expect("rng");
        let vk = ArchiverVerifyingKey::from_text(&sk.verifying_key().to_text()).expect("own public text parses");
        let again = ArchiverSigningKey::from_text(&sk.to_text()).expect("own secret text parses");
        assert_eq!(again.key_id(), sk.key_id());
        assert!(sk.key_id().starts_with(ARCHIVER_ID_PREFIX));
        let sig = sk.sign(b"manifest");
        vk.verify(b"manifest", &sig).expect("own signature verifies");
        assert!(vk.verify(b"manifesT", &sig).is_err());
        assert!(vk.verify(b"manifest", &sig[..63]).is_err());
        let other = ArchiverSigningKey::generate().expect("rng").verifying_key();
        assert_eq!(other.verify(b"manifest", &sig).expect_err("other key").key_id, other.key_id());
        assert!(!format!("{sk:?}").contains(&hex::encode(sk.key.as_bytes())));
    }

    #[test]
    fn weak_archiver_key_refused() {
        // The identity point (y = 1) has order 1.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(matches!(ArchiverVerifyingKey::from_bytes(&identity), Err(KeyError::InvalidKey(_))));
    }
}
