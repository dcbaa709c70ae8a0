//! Ed25519 batch verification that merges the terms of signatures made by
//! the same key.
//!
//! Batch verification checks one random linear combination of the
//! signatures' equations instead of each equation:
//!
//! ```text
//! [-Σ z_i·s_i]B + Σ [z_i]R_i + Σ [z_i·k_i]A_i = 0,   k_i = SHA-512(R_i || A_i || M_i)
//! ```
//!
//! Key decision: the `A` terms are grouped by key. In a batch, the
//! signatures come from a handful of integrations (an ingest request is one
//! integration's, a merger batch mixes a few sites), so `Σ [z_i·k_i]A_i`
//! becomes one term per distinct key with the coefficients summed. The
//! multiscalar multiplication then has `n + keys + 1` points instead of
//! `2n + 1`, and the dropped terms are the ones with full 253-bit scalars
//! (`z_i` are 128-bit). This is ed25519-zebra's batch verifier's technique;
//! `ed25519_dalek::verify_batch` does not group. Everything else is what
//! dalek's batch does, so for torsion-free keys (the only ones the registry
//! takes; see [`verify`]) the accepted set is the same:
//!
//! * cofactorless equation, 128-bit weights `z_i`;
//! * `s` must be canonical (`s < ℓ`) and `R` must decompress, or the batch fails;
//! * the weights come from hashing every input (every `k_i` digest, which
//!   covers `R`, `A` and the message, and every `s`), so they are fixed only
//!   once the batch is, and an attacker cannot choose inputs against them
//!   (dalek derives them the same way, through a merlin transcript).
//!
//! A failed batch says only that *some* signature is bad; the caller then
//! checks each one with `verify_strict` (see [`crate::verify`]).

use std::collections::HashMap;

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha512};

/// Domain separation of the weight derivation from every other SHA-512 use.
const WEIGHTS_DOMAIN: &[u8] = b"tidemark ed25519 batch weights v1";

/// One signature to check: the key, the signed message, the signature.
#[derive(Clone, Copy, Debug)]
pub struct Item<'a> {
    /// The registered public key.
    pub key: &'a VerifyingKey,
    /// The signed bytes (for DSSE, the PAE).
    pub message: &'a [u8],
    /// The signature.
    pub signature: &'a Signature,
}

/// Whether every item's signature verifies, as one batch equation. `true`
/// for an empty batch. This is not `verify_strict`: see the module docs, and
/// docs/security.md ("Batch verification") for what the batch accepts beyond
/// it and the pre-checks and fallback of [`crate::verify`] that close the gaps.
///
/// Precondition: every key is torsion-free (the key registry refuses
/// small-order and mixed-order keys). Merging reduces `Σ z_i·k_i` mod ℓ
/// before multiplying by `A`, and for an `A` with a torsion component
/// `[c mod ℓ]A ≠ [c]A`, so with such a key this equation and dalek's
/// per-signature one can disagree.
pub fn verify(items: &[Item<'_>]) -> bool {
    if items.is_empty() {
        return true;
    }
    let mut s = Vec::with_capacity(items.len());
    let mut r = Vec::with_capacity(items.len());
    let mut digests = Vec::with_capacity(items.len());
    for item in items {
        let Some(s_i) = Option::<Scalar>::from(Scalar::from_canonical_bytes(*item.signature.s_bytes())) else {
            return false;
        };
        let Some(r_i) = CompressedEdwardsY(*item.signature.r_bytes()).decompress() else {
            return false;
        };
        let digest: [u8; 64] = Sha512::new()
            .chain_update(item.signature.r_bytes())
            .chain_update(item.key.as_bytes())
            .chain_update(item.message)
            .finalize()
            .into();
        s.push(s_i);
        r.push(r_i);
        digests.push(digest);
    }
    let weights = weights(&digests, items);

    // One (point, coefficient) per distinct key, in first-seen order.
    let mut key_index: HashMap<&[u8; 32], usize> = HashMap::with_capacity(4);
    let mut key_points: Vec<EdwardsPoint> = Vec::with_capacity(4);
    let mut key_coefficients: Vec<Scalar> = Vec::with_capacity(4);
    let mut b_coefficient = Scalar::ZERO;
    for (i, item) in items.iter().enumerate() {
        let z = weights[i];
        b_coefficient -= z * s[i];
        let k = Scalar::from_bytes_mod_order_wide(&digests[i]);
        let slot = *key_index.entry(item.key.as_bytes()).or_insert_with(|| {
            key_points.push(item.key.to_edwards());
            key_coefficients.push(Scalar::ZERO);
            key_points.len() - 1
        });
        key_coefficients[slot] += z * k;
    }

    let scalars = std::iter::once(b_coefficient).chain(weights.iter().copied()).chain(key_coefficients);
    let points = std::iter::once(ED25519_BASEPOINT_POINT).chain(r).chain(key_points);
    EdwardsPoint::vartime_multiscalar_mul(scalars, points).is_identity()
}

/// The 128-bit weights `z_i`: SHA-512 in counter mode keyed by a hash of
/// every digest and every `s`, four weights per block.
fn weights(digests: &[[u8; 64]], items: &[Item<'_>]) -> Vec<Scalar> {
    let mut seed = Sha512::new();
    seed.update(WEIGHTS_DOMAIN);
    seed.update((items.len() as u64).to_le_bytes());
    for d in digests {
        seed.update(d);
    }
    for item in items {
        seed.update(item.signature.s_bytes());
    }
    let seed = seed.finalize();
    let mut out = Vec::with_capacity(items.len());
    let mut block = 0u64;
    while out.len() < items.len() {
        let bytes: [u8; 64] = Sha512::new().chain_update(seed).chain_update(block.to_le_bytes()).finalize().into();
        for chunk in bytes.chunks_exact(16) {
            if out.len() == items.len() {
                break;
            }
            let mut z = [0u8; 16];
            z.copy_from_slice(chunk);
            out.push(Scalar::from(u128::from_le_bytes(z)));
        }
        block += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::EIGHT_TORSION;
    use ed25519_dalek::{Signer as _, SigningKey};
    use proptest::prelude::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    struct Batch {
        keys: Vec<VerifyingKey>,
        messages: Vec<Vec<u8>>,
        signatures: Vec<Signature>,
    }

    impl Batch {
        /// `n` messages signed round-robin by `distinct` keys.
        fn signed(n: usize, distinct: u8) -> Self {
            let signers: Vec<SigningKey> = (0..distinct).map(|i| key(i + 1)).collect();
            let mut b = Batch { keys: vec![], messages: vec![], signatures: vec![] };
            for i in 0..n {
                let k = &signers[i % signers.len()];
                let m = format!("message {i}").into_bytes();
                b.signatures.push(k.sign(&m));
                b.keys.push(k.verifying_key());
                b.messages.push(m);
            }
            b
        }

        fn items(&self) -> Vec<Item<'_>> {
            (0..self.keys.len())
                .map(|i| Item { key: &self.keys[i], message: &self.messages[i], signature: &self.signatures[i] })
                .collect()
        }

        fn ok(&self) -> bool {
            verify(&self.items())
        }

        fn dalek_ok(&self) -> bool {
            let m: Vec<&[u8]> = self.messages.iter().map(Vec::as_slice).collect();
            ed25519_dalek::verify_batch(&m, &self.signatures, &self.keys).is_ok()
        }
    }

    #[test]
    fn valid_batches_verify_whatever_the_key_mix() {
        assert!(verify(&[]));
        // 300 and 1000 signatures take the multiscalar multiplication past
        // 190 points, where curve25519-dalek switches from Straus to Pippenger.
        for (n, distinct) in [(1, 1), (2, 1), (64, 1), (64, 3), (50, 50), (7, 2), (300, 1), (1000, 4), (400, 200)] {
            let b = Batch::signed(n, distinct);
            assert!(b.ok(), "{n} signatures by {distinct} keys");
            assert!(b.dalek_ok());
        }
    }

    #[test]
    fn a_signature_under_the_wrong_key_fails_the_batch() {
        let mut b = Batch::signed(10, 2);
        // Item 3 claims key 1's key, but key 2 signed it: same keys in the
        // batch, so grouping must not hide the swap.
        b.keys.swap(3, 4);
        assert!(!b.ok());
        assert!(!b.dalek_ok());
    }

    /// ℓ, the group order, little-endian.
    const ELL: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];

    #[test]
    fn s_plus_ell_fails_the_batch() {
        // The same residue mod ℓ: a verifier that reduced `s` would accept it.
        let mut b = Batch::signed(4, 1);
        let mut bytes = b.signatures[2].to_bytes();
        let mut carry = 0u16;
        for (i, l) in ELL.iter().enumerate() {
            let sum = u16::from(bytes[32 + i]) + u16::from(*l) + carry;
            bytes[32 + i] = sum as u8;
            carry = sum >> 8;
        }
        assert_eq!(carry, 0, "s + ℓ fits in 32 bytes");
        b.signatures[2] = Signature::from_bytes(&bytes);
        assert!(!b.ok());
        assert!(!b.dalek_ok());
    }

    #[test]
    fn an_r_that_is_not_a_point_fails_the_batch() {
        let mut b = Batch::signed(4, 1);
        let mut bytes = b.signatures[1].to_bytes();
        // y = 2 is not the y-coordinate of a curve point.
        bytes[..32].fill(0);
        bytes[0] = 2;
        assert!(CompressedEdwardsY(bytes[..32].try_into().expect("32 bytes")).decompress().is_none());
        b.signatures[1] = Signature::from_bytes(&bytes);
        assert!(!b.ok());
        assert!(!b.dalek_ok());
    }

    /// The gap docs/security.md documents: a signature whose `R` carries a
    /// component `T` of order 8 (`R = [r]B + T`, `s = r + k·a`, so only the
    /// key's holder can make it). `verify_strict` refuses it; the
    /// cofactorless batch equation holds exactly when the item's weight is a
    /// multiple of 8, so such a batch passes about one time in eight, as
    /// dalek's does. The weights are derived from the inputs, so this count
    /// is the same on every run.
    #[test]
    fn an_order_8_component_in_r_passes_about_one_batch_in_eight() {
        let signer = key(9);
        let r = Scalar::from(987_654_321u64);
        let r_bytes = (EdwardsPoint::mul_base(&r) + EIGHT_TORSION[1]).compress().to_bytes();
        let mut passes = 0;
        for round in 0..64 {
            let mut b = Batch::signed(3, 1);
            let m = format!("round {round}").into_bytes();
            let k = Scalar::from_bytes_mod_order_wide(
                &Sha512::new()
                    .chain_update(r_bytes)
                    .chain_update(signer.verifying_key().as_bytes())
                    .chain_update(&m)
                    .finalize()
                    .into(),
            );
            let sig = Signature::from_components(r_bytes, (r + k * signer.to_scalar()).to_bytes());
            assert!(signer.verifying_key().verify_strict(&m, &sig).is_err());
            b.keys.push(signer.verifying_key());
            b.messages.push(m);
            b.signatures.push(sig);
            passes += usize::from(b.ok());
        }
        assert!((1..=24).contains(&passes), "{passes} of 64 batches with a mixed-order R passed");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Agrees with ed25519-dalek's batch on valid batches and on batches
        /// with one altered message, signature byte or key.
        #[test]
        fn agrees_with_dalek(n in 1usize..24, distinct in 1u8..5, victim in 0usize..24, what in 0u8..4, bit in 0usize..512) {
            let mut b = Batch::signed(n, distinct);
            let victim = victim % n;
            match what {
                0 => {}
                1 => b.messages[victim].push(b'!'),
                2 => {
                    let mut bytes = b.signatures[victim].to_bytes();
                    bytes[bit / 8] ^= 1 << (bit % 8);
                    b.signatures[victim] = Signature::from_bytes(&bytes);
                }
                _ => b.keys[victim] = key(200).verifying_key(),
            }
            prop_assert_eq!(b.ok(), b.dalek_ok());
            prop_assert_eq!(b.ok(), what == 0);
        }
    }
}
