//! Hybrid KEM X25519 + ML-KEM-768 with the X-Wing combiner
//! (draft-connolly-cfrg-xwing-kem): secure if either component holds.
//!
//! Ciphertext = ML-KEM ciphertext (1088 bytes) || X25519 ephemeral public key (32).
//! Shared secret = SHA3-256(ss_M || ss_X || ct_X || pk_X || XWING_LABEL).

use ml_kem::{Decapsulate, Encapsulate, KeyExport, MlKem768};
use ring::rand::{SecureRandom, SystemRandom};
use sha3::{Digest, Sha3_256};
use x25519_dalek::{X25519_BASEPOINT_BYTES, x25519};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// X-Wing's 6-byte label `\.//^\`.
pub const XWING_LABEL: &[u8; 6] = b"\\.//^\\";
/// ML-KEM-768 ciphertext length.
pub const MLKEM_CT_LEN: usize = 1088;
/// ML-KEM-768 encapsulation key length.
pub const MLKEM_PK_LEN: usize = 1184;
/// Hybrid ciphertext length.
pub const CT_LEN: usize = MLKEM_CT_LEN + 32;
/// Hybrid public key length: ML-KEM encapsulation key || X25519 public key.
pub const PK_LEN: usize = MLKEM_PK_LEN + 32;
/// Secret key length: X25519 scalar || ML-KEM-768 seed (d || z).
pub const SK_LEN: usize = 32 + 64;

/// Why a KEM operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KemError {
    /// The OS random source failed; retry.
    #[error("system random source failed")]
    Random,
    /// Public key bytes are not a valid ML-KEM-768 key; fix the key file.
    #[error("invalid recipient public key")]
    InvalidPublicKey,
    /// X25519 produced an all-zero secret (low-order point); reject the input.
    #[error("X25519 shared secret is all zero (low-order point); key or ciphertext rejected")]
    LowOrderPoint,
}

/// Recipient secret key: X25519 scalar and ML-KEM-768 64-byte seed. Zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey {
    x25519: [u8; 32],
    mlkem_seed: [u8; 64],
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// Recipient public key: ML-KEM-768 encapsulation key and X25519 public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    mlkem: Vec<u8>,
    x25519: [u8; 32],
}

fn random<const N: usize>() -> Result<[u8; N], KemError> {
    let mut b = [0u8; N];
    SystemRandom::new().fill(&mut b).map_err(|_| KemError::Random)?;
    Ok(b)
}

fn dh(k: &[u8; 32], u: &[u8; 32]) -> Result<[u8; 32], KemError> {
    let ss = x25519(*k, *u);
    if ss == [0u8; 32] {
        return Err(KemError::LowOrderPoint);
    }
    Ok(ss)
}

fn combine(ss_m: &[u8], ss_x: &[u8; 32], ct_x: &[u8; 32], pk_x: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha3_256::new();
    h.update(ss_m);
    h.update(ss_x);
    h.update(ct_x);
    h.update(pk_x);
    h.update(XWING_LABEL);
    h.finalize().into()
}

impl SecretKey {
    /// Generates a fresh key pair from the OS random source.
    ///
    /// # Errors
    /// [`KemError::Random`] if the OS random source fails.
    pub fn generate() -> Result<Self, KemError> {
        Ok(Self { x25519: random()?, mlkem_seed: random()? })
    }

    /// The key's bytes: X25519 scalar || ML-KEM-768 seed. Secret.
    pub fn to_bytes(&self) -> Zeroizing<[u8; SK_LEN]> {
        let mut b = Zeroizing::new([0u8; SK_LEN]);
        b[..32].copy_from_slice(&self.x25519);
        b[32..].copy_from_slice(&self.mlkem_seed);
        b
    }

    /// The key from the bytes of [`SecretKey::to_bytes`]. Every 96-byte string is
    /// a valid key: both halves are seeds.
    pub fn from_bytes(bytes: &[u8; SK_LEN]) -> Self {
        let mut key = Self { x25519: [0; 32], mlkem_seed: [0; 64] };
        key.x25519.copy_from_slice(&bytes[..32]);
        key.mlkem_seed.copy_from_slice(&bytes[32..]);
        key
    }

    fn mlkem(&self) -> ml_kem::ml_kem_768::DecapsulationKey {
        ml_kem::ml_kem_768::DecapsulationKey::from_seed(self.mlkem_seed.into())
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            mlkem: self.mlkem().encapsulation_key().to_bytes().to_vec(),
            x25519: x25519(self.x25519, X25519_BASEPOINT_BYTES),
        }
    }

    /// Recovers the combined secret from a hybrid ciphertext.
    ///
    /// # Errors
    /// [`KemError::LowOrderPoint`] for a low-order X25519 ephemeral key.
    pub fn decapsulate(&self, ct: &[u8; CT_LEN]) -> Result<[u8; 32], KemError> {
        let (ct_m, ct_x) = ct.split_at(MLKEM_CT_LEN);
        let ct_x: [u8; 32] = ct_x.try_into().expect("CT_LEN - MLKEM_CT_LEN is 32");
        let ct_m: ml_kem::Ciphertext<MlKem768> = ct_m.try_into().expect("slice has ML-KEM ciphertext length");
        let mut ss_m = self.mlkem().decapsulate(&ct_m);
        let mut ss_x = dh(&self.x25519, &ct_x)?;
        let pk_x = x25519(self.x25519, X25519_BASEPOINT_BYTES);
        let ss = combine(&ss_m, &ss_x, &ct_x, &pk_x);
        ss_m.zeroize();
        ss_x.zeroize();
        Ok(ss)
    }
}

impl PublicKey {
    /// The key's bytes: ML-KEM-768 encapsulation key || X25519 public key.
    pub fn to_bytes(&self) -> [u8; PK_LEN] {
        let mut b = [0u8; PK_LEN];
        b[..MLKEM_PK_LEN].copy_from_slice(&self.mlkem);
        b[MLKEM_PK_LEN..].copy_from_slice(&self.x25519);
        b
    }

    /// Parses and checks [`PublicKey::to_bytes`] output.
    ///
    /// # Errors
    /// [`KemError::InvalidPublicKey`] if the ML-KEM key fails FIPS 203's
    /// modulus check, [`KemError::LowOrderPoint`] if the X25519 key has low
    /// order (it would contribute nothing to the combined secret).
    pub fn from_bytes(bytes: &[u8; PK_LEN]) -> Result<Self, KemError> {
        let (mlkem, x) = bytes.split_at(MLKEM_PK_LEN);
        let key: &ml_kem::Key<ml_kem::ml_kem_768::EncapsulationKey> =
            mlkem.try_into().map_err(|_| KemError::InvalidPublicKey)?;
        ml_kem::ml_kem_768::EncapsulationKey::new(key).map_err(|_| KemError::InvalidPublicKey)?;
        let x25519: [u8; 32] = x.try_into().expect("PK_LEN - MLKEM_PK_LEN is 32");
        // A clamped scalar clears the cofactor, so any scalar maps a low-order
        // point (on the curve or its twist) to zero.
        dh(&[0x42; 32], &x25519)?;
        Ok(Self { mlkem: mlkem.to_vec(), x25519 })
    }

    /// Encapsulates a fresh combined secret to this key: (ciphertext, secret).
    ///
    /// # Errors
    /// [`KemError::InvalidPublicKey`], [`KemError::LowOrderPoint`], [`KemError::Random`].
    pub fn encapsulate(&self) -> Result<([u8; CT_LEN], [u8; 32]), KemError> {
        let key: &ml_kem::Key<ml_kem::ml_kem_768::EncapsulationKey> =
            self.mlkem.as_slice().try_into().map_err(|_| KemError::InvalidPublicKey)?;
        let ek = ml_kem::ml_kem_768::EncapsulationKey::new(key).map_err(|_| KemError::InvalidPublicKey)?;
        let (ct_m, mut ss_m) = ek.encapsulate();
        let mut eph: [u8; 32] = random()?;
        let ct_x = x25519(eph, X25519_BASEPOINT_BYTES);
        let mut ss_x = dh(&eph, &self.x25519)?;
        eph.zeroize();
        let ss = combine(&ss_m, &ss_x, &ct_x, &self.x25519);
        ss_m.zeroize();
        ss_x.zeroize();
        let mut ct = [0u8; CT_LEN];
        ct[..MLKEM_CT_LEN].copy_from_slice(&ct_m);
        ct[MLKEM_CT_LEN..].copy_from_slice(&ct_x);
        Ok((ct, ss))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_wrong_key() {
        let sk = SecretKey::generate().expect("rng");
        let (ct, ss) = sk.public_key().encapsulate().expect("encapsulate");
        assert_eq!(sk.decapsulate(&ct).expect("decapsulate"), ss);
        let other = SecretKey::generate().expect("rng");
        assert_ne!(other.decapsulate(&ct).expect("decapsulate"), ss);
        assert_eq!(format!("{sk:?}"), "SecretKey(<redacted>)");
    }

    #[test]
    fn low_order_ephemeral_rejected() {
        let sk = SecretKey::generate().expect("rng");
        let (mut ct, _) = sk.public_key().encapsulate().expect("encapsulate");
        ct[MLKEM_CT_LEN..].fill(0);
        assert!(matches!(sk.decapsulate(&ct), Err(KemError::LowOrderPoint)));
    }

    #[test]
    fn bytes_round_trip_and_bad_public_keys_refused() {
        let sk = SecretKey::generate().expect("rng");
        let again = SecretKey::from_bytes(&sk.to_bytes());
        assert_eq!(again.public_key(), sk.public_key());
        let pk = sk.public_key().to_bytes();
        assert_eq!(PublicKey::from_bytes(&pk).expect("valid key"), sk.public_key());
        let mut low = pk;
        low[MLKEM_PK_LEN..].fill(0);
        assert!(matches!(PublicKey::from_bytes(&low), Err(KemError::LowOrderPoint)));
        // Coefficient 0xfff > q = 3329 fails the FIPS 203 modulus check.
        let mut big = pk;
        big[..2].copy_from_slice(&[0xff, 0x0f]);
        assert!(matches!(PublicKey::from_bytes(&big), Err(KemError::InvalidPublicKey)));
    }
}
