//! ML-KEM-768 interop between RustCrypto `ml-kem` (what the archiver uses) and
//! `pqcrypto-mlkem` (PQClean's reference code; unmaintained, RUSTSEC-2026-0161,
//! so a dev-dependency only): keys, ciphertexts and shared secrets must agree
//! byte for byte in both directions, so parts stay decryptable by any FIPS 203
//! implementation. A failure names the direction and the field that differed.
#![allow(missing_docs)]

use ml_kem::ml_kem_768::{DecapsulationKey, EncapsulationKey};
#[allow(deprecated)] // The expanded form is what PQClean stores; only tests use it.
use ml_kem::{Decapsulate as _, Encapsulate as _, ExpandedKeyEncoding as _, KeyExport as _};
use pqcrypto_mlkem::mlkem768 as pq;
use pqcrypto_traits::kem::{Ciphertext as _, PublicKey as _, SecretKey as _, SharedSecret as _};
use ring::rand::{SecureRandom as _, SystemRandom};
use sha3::{Digest as _, Sha3_256};
use tidemark_seal::kem::{self, MLKEM_CT_LEN, MLKEM_PK_LEN};

/// FIPS 203 expanded decapsulation key: dk_PKE (1152) || ek (1184) || H(ek) (32) || z (32).
const DK_PKE_LEN: usize = 1152;
const EXPANDED_DK_LEN: usize = DK_PKE_LEN + MLKEM_PK_LEN + 32 + 32;

fn rustcrypto_key() -> DecapsulationKey {
    let mut seed = [0u8; 64];
    SystemRandom::new().fill(&mut seed).expect("OS random source");
    DecapsulationKey::from_seed(seed.into())
}

#[allow(deprecated)]
fn expanded(dk: &DecapsulationKey) -> Vec<u8> {
    dk.to_expanded_bytes().to_vec()
}

#[test]
fn sizes_agree() {
    assert_eq!(pq::public_key_bytes(), MLKEM_PK_LEN, "encapsulation key length");
    assert_eq!(pq::ciphertext_bytes(), MLKEM_CT_LEN, "ciphertext length");
    assert_eq!(pq::secret_key_bytes(), EXPANDED_DK_LEN, "expanded decapsulation key length");
    assert_eq!(pq::shared_secret_bytes(), 32, "shared secret length");
}

#[test]
fn pqcrypto_encapsulates_to_a_rustcrypto_key() {
    let dk = rustcrypto_key();
    let ek_bytes = dk.encapsulation_key().to_bytes();
    let pk = pq::PublicKey::from_bytes(&ek_bytes).expect("PQClean accepts a RustCrypto encapsulation key");
    let (ss_pq, ct_pq) = pq::encapsulate(&pk);
    let ct: ml_kem::Ciphertext<ml_kem::MlKem768> =
        ct_pq.as_bytes().try_into().expect("PQClean ciphertext has the RustCrypto length");
    let ss_rc = dk.decapsulate(&ct);
    assert_eq!(ss_rc.as_slice(), ss_pq.as_bytes(), "PQClean -> RustCrypto shared secret");
}

#[test]
fn rustcrypto_encapsulates_to_a_pqcrypto_key() {
    let (pk, sk) = pq::keypair();
    let ek_bytes = pk.as_bytes().try_into().expect("PQClean public key has the RustCrypto length");
    let ek = EncapsulationKey::new(ek_bytes).expect("RustCrypto accepts a PQClean encapsulation key");
    let (ct, ss_rc) = ek.encapsulate();
    let ct_pq = pq::Ciphertext::from_bytes(&ct).expect("RustCrypto ciphertext has the PQClean length");
    let ss_pq = pq::decapsulate(&ct_pq, &sk);
    assert_eq!(ss_pq.as_bytes(), ss_rc.as_slice(), "RustCrypto -> PQClean shared secret");
}

#[test]
fn secret_key_formats_agree_both_ways() {
    // RustCrypto's key, expanded, decapsulates in PQClean ...
    let dk = rustcrypto_key();
    let dk_bytes = expanded(&dk);
    let ek_bytes = dk.encapsulation_key().to_bytes();
    assert_eq!(&dk_bytes[DK_PKE_LEN..DK_PKE_LEN + MLKEM_PK_LEN], &ek_bytes[..], "ek inside the expanded dk");
    assert_eq!(&dk_bytes[DK_PKE_LEN + MLKEM_PK_LEN..][..32], &Sha3_256::digest(ek_bytes)[..], "H(ek) in the dk");
    let sk = pq::SecretKey::from_bytes(&dk_bytes).expect("PQClean accepts the expanded key");
    let (ct, ss) = dk.encapsulation_key().encapsulate();
    let ct_pq = pq::Ciphertext::from_bytes(&ct).expect("ciphertext length");
    assert_eq!(pq::decapsulate(&ct_pq, &sk).as_bytes(), ss.as_slice(), "RustCrypto dk used by PQClean");

    // ... and PQClean's key decapsulates in RustCrypto.
    let (pk, sk) = pq::keypair();
    assert_eq!(&sk.as_bytes()[DK_PKE_LEN..DK_PKE_LEN + MLKEM_PK_LEN], pk.as_bytes(), "pk inside PQClean's sk");
    #[allow(deprecated)]
    let dk = DecapsulationKey::from_expanded_bytes(sk.as_bytes().try_into().expect("expanded length"))
        .expect("RustCrypto accepts PQClean's expanded key (checks H(ek))");
    assert_eq!(&dk.encapsulation_key().to_bytes()[..], pk.as_bytes(), "same encapsulation key");
    let (ss, ct) = pq::encapsulate(&pk);
    let ct: ml_kem::Ciphertext<ml_kem::MlKem768> = ct.as_bytes().try_into().expect("ciphertext length");
    assert_eq!(dk.decapsulate(&ct).as_slice(), ss.as_bytes(), "PQClean sk used by RustCrypto");
}

/// Implicit rejection (FIPS 203: K = J(z || c) for an invalid ciphertext) is
/// deterministic, so both implementations must return the same rejection
/// secret for the same altered ciphertext; a decapsulation that silently
/// "succeeded" on a bad ciphertext, or rejected differently, shows here.
#[test]
fn implicit_rejection_agrees() {
    let dk = rustcrypto_key();
    let sk = pq::SecretKey::from_bytes(&expanded(&dk)).expect("PQClean accepts the expanded key");
    let (ct, ss) = dk.encapsulation_key().encapsulate();
    for at in [0, 500, MLKEM_CT_LEN - 1] {
        let mut bad = ct;
        bad[at] ^= 0x01;
        let rc = dk.decapsulate(&bad);
        let pq_ss = pq::decapsulate(&pq::Ciphertext::from_bytes(&bad).expect("length"), &sk);
        assert_ne!(rc, ss, "altered ciphertext (byte {at}) must not yield the real secret");
        assert_eq!(rc.as_slice(), pq_ss.as_bytes(), "rejection secret for byte {at}");
    }
}

/// The archiver's hybrid key stores the FIPS 203 seed and the standard
/// encapsulation key, so its ML-KEM half is usable by any implementation.
#[test]
fn archiver_hybrid_key_embeds_standard_mlkem() {
    let sk = kem::SecretKey::generate().expect("OS random source");
    let seed: [u8; 64] = sk.to_bytes()[32..].try_into().expect("X25519 (32) || ML-KEM seed (64)");
    let dk = DecapsulationKey::from_seed(seed.into());
    let public = sk.public_key().to_bytes();
    assert_eq!(&public[..MLKEM_PK_LEN], &dk.encapsulation_key().to_bytes()[..], "ML-KEM half of the public key");
    let pk = pq::PublicKey::from_bytes(&public[..MLKEM_PK_LEN]).expect("PQClean accepts the ML-KEM half");
    let (ss, ct) = pq::encapsulate(&pk);
    let ct: ml_kem::Ciphertext<ml_kem::MlKem768> = ct.as_bytes().try_into().expect("ciphertext length");
    assert_eq!(dk.decapsulate(&ct).as_slice(), ss.as_bytes());
}
