//! The bounds of part sealing, built from the same primitives the part format
//! uses (ring's AES-256-GCM and SHA-256) with nothing around them.
//!
//! Key decision: the AES bound runs in the part format's chunk size, one
//! `seal_in_place_separate_tag` per chunk with a counter nonce, in place and
//! with no reader or writer: exactly the cipher work of a part, so the gap
//! between it and `seal_part` is our format's overhead (framing, copies
//! through `Read`/`Write`, the header). SHA-256 is a separate bound because
//! `seal_part` also hashes every byte it writes: the manifest records each
//! part's SHA-256, and computing it while sealing saves reading the part
//! again.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::digest;

/// A fixed AES-256-GCM key: the bound measures speed, not secrecy.
fn key() -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[9; 32]).expect("a 32-byte key is valid for AES-256-GCM"))
}

fn nonce(index: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[3..11].copy_from_slice(&index.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

/// Encrypts `buf` in place, `chunk` bytes at a time, each chunk with its own
/// counter nonce and `aad`; returns the XOR of the tags' first bytes so the
/// work cannot be optimised away.
///
/// # Panics
/// If `chunk` is 0.
pub fn aes_gcm_chunks(buf: &mut [u8], chunk: usize, aad: &[u8]) -> u8 {
    let key = key();
    let mut acc = 0u8;
    for (i, c) in buf.chunks_mut(chunk).enumerate() {
        let tag = key.seal_in_place_separate_tag(nonce(i as u64), Aad::from(aad), c).expect("ring seals a chunk");
        acc ^= tag.as_ref()[0];
    }
    acc
}

/// SHA-256 of `bytes` in one call.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}

/// [`aes_gcm_chunks`] with each chunk hashed right after it is encrypted,
/// while it is still in cache: the least `seal_part` can do on one core.
///
/// # Panics
/// If `chunk` is 0.
pub fn aes_gcm_then_sha256_chunks(buf: &mut [u8], chunk: usize, aad: &[u8]) -> [u8; 32] {
    let key = key();
    let mut hash = digest::Context::new(&digest::SHA256);
    for (i, c) in buf.chunks_mut(chunk).enumerate() {
        let tag = key.seal_in_place_separate_tag(nonce(i as u64), Aad::from(aad), c).expect("ring seals a chunk");
        hash.update(c);
        hash.update(tag.as_ref());
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(hash.finish().as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_aes_changes_the_bytes_and_sha_matches_ring() {
        let mut buf = vec![7u8; 1000];
        aes_gcm_chunks(&mut buf, 300, b"aad");
        assert_ne!(buf, vec![7u8; 1000]);
        assert_eq!(sha256(b"abc")[..4], [0xba, 0x78, 0x16, 0xbf]);
        let mut again = vec![7u8; 1000];
        let h = aes_gcm_then_sha256_chunks(&mut again, 300, b"aad");
        assert_eq!(again, buf, "same key, nonces and chunks give the same ciphertext");
        assert_ne!(h, [0; 32]);
    }
}
