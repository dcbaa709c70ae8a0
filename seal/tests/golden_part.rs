//! A part sealed by format version 1, kept in `tests/data`: every later build
//! must still open it to the same plaintext, and its header must still read
//! the same. Regenerate only with a new format version:
//! `cargo test -p tidemark-seal --test golden_part -- --ignored write_golden`.

#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;

use tidemark_seal::{RecipientSecretKey, open_part, read_header, seal_part};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

/// 3 chunks of 64 bytes and a short final one.
fn plaintext() -> Vec<u8> {
    (0u32..200).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn a_v1_part_still_opens_to_the_same_plaintext() {
    let key =
        RecipientSecretKey::from_text(&std::fs::read_to_string(data("golden-recipient.key.txt")).unwrap()).unwrap();
    let sealed = std::fs::read(data("golden-part-v1.tmenc")).unwrap();
    let header = read_header(&sealed[..]).unwrap();
    assert_eq!(header.version(), 1);
    assert_eq!(header.chunk_size(), 64);
    assert_eq!(header.recipient_key_ids(), vec![key.key_id()]);
    let mut out = Vec::new();
    let stats = open_part(&sealed[..], &mut out, &key).unwrap();
    assert_eq!(out, plaintext());
    assert_eq!(stats.ciphertext_bytes, sealed.len() as u64);
}

#[test]
#[ignore = "writes the golden fixture; run only for a new format version"]
fn write_golden() {
    let key = RecipientSecretKey::generate().unwrap();
    let mut sealed = Vec::new();
    seal_part(&plaintext()[..], &mut sealed, &[key.public_key().clone()], 64).unwrap();
    std::fs::create_dir_all(data("")).unwrap();
    std::fs::write(data("golden-part-v1.tmenc"), sealed).unwrap();
    std::fs::write(data("golden-recipient.key.txt"), key.to_text().as_bytes()).unwrap();
}
