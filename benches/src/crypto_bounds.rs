//! Cipher and hash bounds built from ring's AES-256-GCM and SHA-256 with
//! nothing around them: the least encrypting or hashing some bytes can cost
//! on this core, for the benches to print beside what our code spends.
//!
//! Key decision: the AES bound runs in a caller's chunk size, one
//! `seal_in_place_separate_tag` per chunk with a counter nonce, in place and
//! with no reader or writer: the cipher work of the scratch space's STREAM
//! layer (`--bench seal`), so the gap to `stream::seal` is that layer's
//! framing and copies; and, for scale, of a part's Parquet Modular
//! Encryption (`--bench archive`), whose modules are AES-GCM too. SHA-256 is
//! the hash the manifest records of each part, computed over the finished
//! file.

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
        aes_gcm_chunks(&mut again, 300, b"aad");
        assert_eq!(again, buf, "same key, nonces and chunks give the same ciphertext");
    }
}
