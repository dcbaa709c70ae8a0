//! Chunked AES-256-GCM payload (the STREAM construction), sealed and opened in
//! place in one reusable buffer.
//!
//! The payload is cut into chunks of `chunk_size` plaintext bytes; each chunk is
//! sealed on its own with nonce = 11-byte big-endian chunk index || 1-byte last
//! flag, and the caller's associated data. A counter nonce is safe because the
//! caller's key is fresh for every stream: no (key, nonce) pair repeats. The
//! index in the nonce defeats reordering and duplication, the last flag defeats
//! dropping final chunks, the associated data defeats splicing onto another
//! stream. The archiver's encrypted scratch space (de-identified snapshots) is
//! written with it.
//!
//! Every chunk is framed by one flag byte, and the final chunk also states its
//! length. That costs 1 byte per MiB, and in exchange a
//! reader knows where the payload must end without trusting end-of-file: a cut
//! anywhere is [`StreamError::Truncated`] and an appended byte is
//! [`StreamError::TrailingData`], instead of both looking like a forged tag.
//!
//! `ring` does the AEAD: it is the measured bound on this machine. Chunks are
//! encrypted where they were read, so each byte is touched once by the cipher
//! and copied only by the reader and the writer.

use std::io::{self, Read, Write};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

use super::error::StreamError;

/// Length of the AES-256-GCM tag that ends every chunk.
pub const TAG_LEN: usize = 16;
/// Length of the payload key in bytes.
pub const KEY_LEN: usize = 32;
/// Default plaintext bytes per chunk (1 MiB).
pub const DEFAULT_CHUNK_SIZE: usize = 1 << 20;
/// Largest chunk size accepted, written or read: bounds the one buffer a reader
/// allocates.
pub const MAX_CHUNK_SIZE: usize = 16 << 20;

/// Frame flag of a chunk that is followed by more chunks.
const MORE: u8 = 0x00;
/// Frame flag of the final chunk, which is followed by its u32 length.
const FINAL: u8 = 0x01;
/// Bytes before a final chunk's ciphertext: flag and big-endian u32 length.
const FINAL_HEAD: usize = 5;

/// Sealed size of a payload of `plaintext_len` bytes: every chunk adds its flag
/// byte and tag, the final chunk also its 4-byte length; an empty payload is one
/// empty final chunk.
pub fn sealed_len(plaintext_len: u64, chunk_size: usize) -> u64 {
    let chunks = plaintext_len.div_ceil(chunk_size.max(1) as u64).max(1);
    plaintext_len + chunks * (1 + TAG_LEN as u64) + 4
}

fn nonce(index: u64, last: bool) -> Nonce {
    let mut n = [0u8; 12];
    n[3..11].copy_from_slice(&index.to_be_bytes());
    n[11] = u8::from(last);
    Nonce::assume_unique_for_key(n)
}

/// Reads until `buf` is full or EOF; returns the number of bytes read.
pub(crate) fn fill(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// What sealing and opening share: the key, the associated data, the chunk size
/// and the one buffer every chunk passes through.
struct Chunks<'a> {
    key: LessSafeKey,
    aad: &'a [u8],
    chunk_size: usize,
    buf: Vec<u8>,
}

impl<'a> Chunks<'a> {
    /// Checks the chunk size and allocates the buffer: room for a frame head,
    /// one chunk, its tag and a few bytes of look-ahead.
    fn new(payload_key: &[u8; KEY_LEN], aad: &'a [u8], chunk_size: usize) -> Result<Self, StreamError> {
        if !(1..=MAX_CHUNK_SIZE).contains(&chunk_size) {
            return Err(StreamError::BadChunkSize { chunk_size, max: MAX_CHUNK_SIZE });
        }
        let key = UnboundKey::new(&AES_256_GCM, payload_key).expect("a 32-byte key is valid for AES-256-GCM");
        let buf = vec![0u8; FINAL_HEAD + chunk_size + TAG_LEN];
        Ok(Self { key: LessSafeKey::new(key), aad, chunk_size, buf })
    }
}

/// Seals `reader` into `writer` as framed chunks of `chunk_size` plaintext bytes,
/// binding `aad` into every chunk. Memory use is one chunk.
/// Returns the plaintext length.
///
/// # Errors
/// [`StreamError::Io`] if a stream fails, [`StreamError::BadChunkSize`] for a size
/// outside `1..=MAX_CHUNK_SIZE`.
pub fn seal(
    payload_key: &[u8; KEY_LEN],
    aad: &[u8],
    chunk_size: usize,
    mut reader: impl Read,
    mut writer: impl Write,
) -> Result<u64, StreamError> {
    let Chunks { key, aad, chunk_size: cs, mut buf } = Chunks::new(payload_key, aad, chunk_size)?;
    // Plaintext lands at `P`, after room for the final frame's head, so every
    // frame goes out in one write from the buffer it was encrypted in.
    const P: usize = FINAL_HEAD;
    let mut carried = 0usize;
    let mut total = 0u64;
    for index in 0u64.. {
        // One byte of look-ahead (it lands where the tag goes) tells whether
        // this chunk is the last one.
        let n = carried + fill(&mut reader, &mut buf[P + carried..=P + cs]).map_err(StreamError::Io)?;
        let last = n <= cs;
        let len = n.min(cs);
        let spare = buf[P + cs];
        let start = if last {
            buf[0] = FINAL;
            buf[1..P].copy_from_slice(&u32::try_from(len).expect("len <= MAX_CHUNK_SIZE fits u32").to_be_bytes());
            0
        } else {
            buf[P - 1] = MORE;
            P - 1
        };
        let tag = key
            .seal_in_place_separate_tag(nonce(index, last), Aad::from(aad), &mut buf[P..P + len])
            .expect("ring seals any chunk shorter than 64 GiB");
        buf[P + len..P + len + TAG_LEN].copy_from_slice(tag.as_ref());
        writer.write_all(&buf[start..P + len + TAG_LEN]).map_err(StreamError::Io)?;
        total += len as u64;
        if last {
            return Ok(total);
        }
        buf[P] = spare;
        carried = 1;
    }
    unreachable!("a u64 chunk counter cannot be exhausted by a finite stream")
}

/// Opens a payload sealed by [`seal`] with the same key, associated data and
/// chunk size, writing plaintext to `writer` chunk by chunk. Memory use is one
/// chunk. The reader is not read past the end of the payload, except for one
/// byte to detect trailing data.
///
/// A chunk is written only after it authenticates, but earlier chunks have
/// already been written when a later one fails: callers that must not expose a
/// partial stream write to a temporary location and discard it on error.
///
/// # Errors
/// [`StreamError::ChunkAuthFailed`] naming the first bad chunk,
/// [`StreamError::Truncated`], [`StreamError::TrailingData`], [`StreamError::Io`].
pub fn open(
    payload_key: &[u8; KEY_LEN],
    aad: &[u8],
    chunk_size: usize,
    mut reader: impl Read,
    mut writer: impl Write,
) -> Result<u64, StreamError> {
    let Chunks { key, aad, chunk_size: cs, mut buf } = Chunks::new(payload_key, aad, chunk_size)?;
    let full = cs + TAG_LEN;
    let mut flag = [0u8; 1];
    reader.read_exact(&mut flag)?;
    let mut total = 0u64;
    for index in 0u64.. {
        let failed = |_| StreamError::ChunkAuthFailed { index };
        match flag[0] {
            MORE => {
                // The chunk and the next frame's flag in one read.
                let n = fill(&mut reader, &mut buf[..=full]).map_err(StreamError::Io)?;
                if n < full {
                    return Err(StreamError::Truncated);
                }
                let next = buf[full];
                let plain = key.open_in_place(nonce(index, false), Aad::from(aad), &mut buf[..full]).map_err(failed)?;
                writer.write_all(plain).map_err(StreamError::Io)?;
                total += plain.len() as u64;
                if n == full {
                    // Authentically not the last chunk, and nothing follows.
                    return Err(StreamError::Truncated);
                }
                flag[0] = next;
            }
            FINAL => {
                let mut len = [0u8; 4];
                reader.read_exact(&mut len)?;
                let len = u32::from_be_bytes(len) as usize;
                if len > cs {
                    return Err(StreamError::ChunkAuthFailed { index });
                }
                // One byte more than the chunk, to see whether anything follows.
                let n = fill(&mut reader, &mut buf[..=len + TAG_LEN]).map_err(StreamError::Io)?;
                if n < len + TAG_LEN {
                    return Err(StreamError::Truncated);
                }
                let plain =
                    key.open_in_place(nonce(index, true), Aad::from(aad), &mut buf[..len + TAG_LEN]).map_err(failed)?;
                if n > len + TAG_LEN {
                    return Err(StreamError::TrailingData);
                }
                writer.write_all(plain).map_err(StreamError::Io)?;
                return Ok(total + plain.len() as u64);
            }
            _ => return Err(StreamError::ChunkAuthFailed { index }),
        }
    }
    unreachable!("a u64 chunk counter cannot be exhausted by a finite stream")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: [u8; KEY_LEN] = [7; KEY_LEN];
    const HDR: &[u8] = b"scratch segment";

    fn sealed(data: &[u8], cs: usize) -> Vec<u8> {
        let mut out = Vec::new();
        seal(&KEY, HDR, cs, data, &mut out).expect("sealing into a Vec cannot fail");
        out
    }

    fn opened(ct: &[u8], cs: usize) -> Result<Vec<u8>, StreamError> {
        let mut out = Vec::new();
        open(&KEY, HDR, cs, ct, &mut out).map(|_| out)
    }

    proptest! {
        #[test]
        fn round_trip(data in proptest::collection::vec(any::<u8>(), 0..300), cs in 1usize..70) {
            let ct = sealed(&data, cs);
            prop_assert_eq!(ct.len() as u64, sealed_len(data.len() as u64, cs));
            prop_assert_eq!(opened(&ct, cs).expect("round trip"), data);
        }

        #[test]
        fn any_bit_flip_detected(data in proptest::collection::vec(any::<u8>(), 0..200), pos in any::<usize>(), bit in 0u8..8) {
            let mut ct = sealed(&data, 32);
            let pos = pos % ct.len();
            ct[pos] ^= 1 << bit;
            let r = opened(&ct, 32);
            prop_assert!(r.is_err(), "flip at {} not detected", pos);
        }

        #[test]
        fn any_cut_is_truncation(data in proptest::collection::vec(any::<u8>(), 0..200), cut in any::<usize>()) {
            let ct = sealed(&data, 32);
            let cut = cut % ct.len();
            let r = opened(&ct[..cut], 32);
            prop_assert!(matches!(r, Err(StreamError::Truncated)), "cut at {} of {}: {:?}", cut, ct.len(), r);
        }

        #[test]
        fn any_appended_bytes_are_trailing_data(data in proptest::collection::vec(any::<u8>(), 0..200), extra in proptest::collection::vec(any::<u8>(), 1..40)) {
            let mut ct = sealed(&data, 32);
            ct.extend_from_slice(&extra);
            let r = opened(&ct, 32);
            prop_assert!(matches!(r, Err(StreamError::TrailingData)), "{:?}", r);
        }
    }

    #[test]
    fn boundaries_round_trip() {
        for len in [0usize, 1, 15, 16, 17, 31, 32, 33, 64, 65] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            assert_eq!(opened(&sealed(&data, 16), 16).expect("round trip"), data, "len {len}");
        }
    }

    #[test]
    fn empty_payload_is_one_empty_final_chunk() {
        let ct = sealed(b"", 16);
        assert_eq!(ct.len(), FINAL_HEAD + TAG_LEN);
        assert_eq!(&ct[..FINAL_HEAD], &[FINAL, 0, 0, 0, 0]);
        assert_eq!(opened(&ct, 16).expect("empty round trip"), b"");
        assert!(matches!(opened(b"", 16), Err(StreamError::Truncated)));
    }

    #[test]
    fn dropping_final_chunks_is_truncation() {
        let ct = sealed(&[1u8; 40], 16); // chunks: 16, 16, 8
        let c = 1 + 16 + TAG_LEN;
        for end in [c, 2 * c] {
            assert!(matches!(opened(&ct[..end], 16), Err(StreamError::Truncated)), "cut at {end}");
        }
    }

    #[test]
    fn reordering_and_duplication_detected() {
        let ct = sealed(&[3u8; 40], 16);
        let c = 1 + 16 + TAG_LEN;
        let mut swapped = ct.clone();
        swapped[..c].copy_from_slice(&ct[c..2 * c]);
        swapped[c..2 * c].copy_from_slice(&ct[..c]);
        assert!(matches!(opened(&swapped, 16), Err(StreamError::ChunkAuthFailed { index: 0 })));
        let mut dup = ct[..c].to_vec();
        dup.extend_from_slice(&ct);
        assert!(matches!(opened(&dup, 16), Err(StreamError::ChunkAuthFailed { index: 1 })));
    }

    #[test]
    fn wrong_header_or_key_detected() {
        let ct = sealed(b"hello", 16);
        let mut out = Vec::new();
        let r = open(&KEY, b"other header", 16, &ct[..], &mut out);
        assert!(matches!(r, Err(StreamError::ChunkAuthFailed { index: 0 })), "{r:?}");
        let r = open(&[8; KEY_LEN], HDR, 16, &ct[..], &mut out);
        assert!(matches!(r, Err(StreamError::ChunkAuthFailed { index: 0 })), "{r:?}");
        assert!(out.is_empty(), "nothing is written before a chunk authenticates");
    }

    #[test]
    fn chunk_size_bounds_enforced() {
        for cs in [0, MAX_CHUNK_SIZE + 1] {
            let r = seal(&KEY, HDR, cs, &b""[..], Vec::new());
            assert!(matches!(r, Err(StreamError::BadChunkSize { .. })), "{cs}: {r:?}");
        }
    }
}
