//! Encrypted parts through the public API: round trips for any size and every
//! recipient, and every kind of tampering rejected with the error that names it.
#![allow(missing_docs)]

use std::mem::discriminant;
use std::sync::LazyLock;

use proptest::prelude::*;
use tidemark_seal::header::{FIXED_LEN, MAC_LEN, STANZA_LEN, header_len};
use tidemark_seal::keytext::FINGERPRINT_LEN;
use tidemark_seal::stream::TAG_LEN;
use tidemark_seal::{PartError, RecipientPublicKey, RecipientSecretKey, open_part, read_header, seal_part};

/// Three recipients, generated once: key generation is not what is tested.
static KEYS: LazyLock<Vec<RecipientSecretKey>> =
    LazyLock::new(|| (0..3).map(|_| RecipientSecretKey::generate().expect("OS random source")).collect());

fn publics(n: usize) -> Vec<RecipientPublicKey> {
    KEYS[..n].iter().map(|k| k.public_key().clone()).collect()
}

fn seal(data: &[u8], recipients: usize, cs: usize) -> Vec<u8> {
    let mut out = Vec::new();
    seal_part(data, &mut out, &publics(recipients), cs).expect("sealing into a Vec cannot fail");
    out
}

/// Opens with key `k`; on error also returns what was written before it.
fn open(sealed: &[u8], k: usize) -> Result<Vec<u8>, (PartError, Vec<u8>)> {
    let mut out = Vec::new();
    match open_part(sealed, &mut out, &KEYS[k]) {
        Ok(_) => Ok(out),
        Err(e) => Err((e, out)),
    }
}

fn err(r: Result<Vec<u8>, (PartError, Vec<u8>)>) -> PartError {
    match r {
        Ok(_) => panic!("a tampered part opened"),
        Err((e, _)) => e,
    }
}

/// Byte offset of the frame of chunk `i` (all chunks before it full) in a part
/// with `recipients` recipients.
fn frame_at(recipients: usize, cs: usize, i: usize) -> usize {
    header_len(recipients) + i * (1 + cs + TAG_LEN)
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 256) as u8).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_recipient_opens_any_size(len in 0usize..3000, cs in 1usize..300, n in 1usize..=3) {
        let plain = data(len);
        let sealed = seal(&plain, n, cs);
        for k in 0..n {
            prop_assert_eq!(open(&sealed, k).map_err(|(e, _)| e).expect("recipient opens"), plain.clone());
        }
    }

    #[test]
    fn exact_multiples_of_the_chunk_size(chunks in 1usize..6, cs in 1usize..200) {
        let plain = data(chunks * cs);
        prop_assert_eq!(open(&seal(&plain, 1, cs), 0).map_err(|(e, _)| e).expect("opens"), plain);
    }

    /// Any bit flip anywhere is rejected, and the error names the region hit.
    #[test]
    fn any_bit_flip_is_rejected_by_region(len in 0usize..600, pos in any::<usize>(), bit in 0u8..8) {
        let mut sealed = seal(&data(len), 2, 64);
        let pos = pos % sealed.len();
        sealed[pos] ^= 1 << bit;
        let e = err(open(&sealed, 0));
        let ours = FIXED_LEN..FIXED_LEN + STANZA_LEN;
        let ok = match pos {
            0..5 => matches!(e, PartError::BadMagic),
            5 => matches!(e, PartError::UnsupportedVersion(_)),
            6..10 => matches!(e, PartError::HeaderMalformed(_) | PartError::HeaderAuthFailed),
            10..12 => matches!(e, PartError::HeaderMalformed(_) | PartError::HeaderAuthFailed | PartError::Truncated),
            12..FIXED_LEN => matches!(e, PartError::KeyUnwrapFailed { .. }),
            p if p < ours.start + FINGERPRINT_LEN => matches!(e, PartError::NotARecipient { .. }),
            p if ours.contains(&p) => matches!(e, PartError::KeyUnwrapFailed { .. }),
            p if p < header_len(2) => matches!(e, PartError::HeaderAuthFailed),
            _ => matches!(e, PartError::ChunkAuthFailed { .. } | PartError::Truncated),
        };
        prop_assert!(ok, "flip at {} of {}: {:?}", pos, sealed.len(), e);
    }

    #[test]
    fn any_truncation_is_truncated(len in 0usize..600, cut in any::<usize>()) {
        let sealed = seal(&data(len), 1, 64);
        let cut = cut % sealed.len();
        let e = err(open(&sealed[..cut], 0));
        prop_assert!(matches!(e, PartError::Truncated), "cut at {} of {}: {:?}", cut, sealed.len(), e);
    }

    #[test]
    fn any_appended_bytes_are_trailing_data(len in 0usize..600, extra in proptest::collection::vec(any::<u8>(), 1..100)) {
        let mut sealed = seal(&data(len), 1, 64);
        sealed.extend_from_slice(&extra);
        let e = err(open(&sealed, 0));
        prop_assert!(matches!(e, PartError::TrailingData), "{:?}", e);
    }

    /// Swapping two chunks fails at the first of them, and only the chunks
    /// before it, all authentic, were written.
    #[test]
    fn swapped_chunks_fail_at_the_first(i in 0usize..4, d in 1usize..4) {
        let cs = 32;
        let plain = data(cs * 8 + 5);
        let mut sealed = seal(&plain, 1, cs);
        let j = i + d;
        let (a, b, f) = (frame_at(1, cs, i), frame_at(1, cs, j), 1 + cs + TAG_LEN);
        let chunk_i = sealed[a..a + f].to_vec();
        sealed.copy_within(b..b + f, a);
        sealed[b..b + f].copy_from_slice(&chunk_i);
        match open(&sealed, 0) {
            Err((PartError::ChunkAuthFailed { index }, written)) => {
                prop_assert_eq!(index, i as u64);
                prop_assert_eq!(&written[..], &plain[..i * cs]);
            }
            other => prop_assert!(false, "expected ChunkAuthFailed {{ index: {} }}, got {:?}", i, other.map(|_| ())),
        }
    }
}

#[test]
fn wrong_recipient_is_not_a_recipient() {
    let sealed = seal(b"for 0 and 1", 2, 64);
    match err(open(&sealed, 2)) {
        PartError::NotARecipient { key_id, recipients } => {
            assert_eq!(key_id, KEYS[2].key_id());
            assert_eq!(recipients, vec![KEYS[0].key_id(), KEYS[1].key_id()]);
        }
        other => panic!("expected NotARecipient, got {other:?}"),
    }
}

/// A stanza copied from another part (same recipient) is bound to that part's
/// id: our stanza fails to unwrap, another recipient's fails the header MAC.
#[test]
fn transplanted_stanzas_are_rejected() {
    let (a, b) = (seal(b"part a", 2, 64), seal(b"part b", 2, 64));
    for (k, want_unwrap) in [(0, true), (1, false)] {
        let mut spliced = b.clone();
        let s = FIXED_LEN..FIXED_LEN + STANZA_LEN; // key 0's stanza
        spliced[s.clone()].copy_from_slice(&a[s]);
        let e = err(open(&spliced, k));
        if want_unwrap {
            assert!(matches!(e, PartError::KeyUnwrapFailed { .. }), "key {k}: {e:?}");
        } else {
            assert!(matches!(e, PartError::HeaderAuthFailed), "key {k}: {e:?}");
        }
    }
}

/// A whole header from another part opens its own key, then the payload fails.
#[test]
fn transplanted_header_fails_the_first_chunk() {
    let (a, b) = (seal(b"part a", 1, 64), seal(b"part b", 1, 64));
    let h = header_len(1);
    let spliced = [&a[..h], &b[h..]].concat();
    assert!(matches!(err(open(&spliced, 0)), PartError::ChunkAuthFailed { index: 0 }));
}

/// The six ways a part goes wrong each have their own error variant.
#[test]
fn each_failure_has_a_distinct_variant() {
    let cs = 16;
    let sealed = seal(&data(100), 2, cs);
    let other = seal(&data(100), 2, cs);
    let mut header_flip = sealed.clone();
    header_flip[header_len(2) - MAC_LEN] ^= 1;
    let mut stanza_swap = sealed.clone();
    stanza_swap[FIXED_LEN..FIXED_LEN + STANZA_LEN].copy_from_slice(&other[FIXED_LEN..FIXED_LEN + STANZA_LEN]);
    let mut chunk_swap = sealed.clone();
    let (c0, c1, f) = (frame_at(2, cs, 0), frame_at(2, cs, 1), 1 + cs + TAG_LEN);
    chunk_swap[c0..c0 + f].copy_from_slice(&sealed[c1..c1 + f]);
    chunk_swap[c1..c1 + f].copy_from_slice(&sealed[c0..c0 + f]);
    let mut trailing = sealed.clone();
    trailing.push(0);
    let errors = [
        err(open(&header_flip, 0)),
        err(open(&stanza_swap, 0)),
        err(open(&sealed, 2)),
        err(open(&sealed[..sealed.len() - 1], 0)),
        err(open(&chunk_swap, 0)),
        err(open(&trailing, 0)),
    ];
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    for i in 0..errors.len() {
        for j in 0..i {
            assert_ne!(discriminant(&errors[i]), discriminant(&errors[j]), "{shown:#?}");
        }
    }
    assert!(matches!(errors[0], PartError::HeaderAuthFailed), "{shown:#?}");
    assert!(matches!(errors[1], PartError::KeyUnwrapFailed { .. }), "{shown:#?}");
    assert!(matches!(errors[2], PartError::NotARecipient { .. }), "{shown:#?}");
    assert!(matches!(errors[3], PartError::Truncated), "{shown:#?}");
    assert!(matches!(errors[4], PartError::ChunkAuthFailed { index: 0 }), "{shown:#?}");
    assert!(matches!(errors[5], PartError::TrailingData), "{shown:#?}");
}

#[test]
fn header_is_readable_without_a_key() {
    let sealed = seal(b"x", 3, 4096);
    let h = read_header(&sealed[..]).expect("header parses");
    assert_eq!(h.chunk_size(), 4096);
    assert_eq!(h.recipient_key_ids(), KEYS.iter().map(RecipientSecretKey::key_id).collect::<Vec<_>>());
    assert_eq!(h.as_bytes(), &sealed[..header_len(3)]);
}
