//! The archiver's reader of a Parquet file's plaintext crypto tail
//! (`read_crypto_tail`), which it runs on untrusted parts before it holds any
//! key. Beyond "no panic": whatever reads must lie within the input, and
//! reading only the last `footer_len + 8` bytes (as a caller that learned
//! the length from `tail_len` does) must give the same answer. The key
//! material found there goes through the strict PKMT1 parser and the data
//! key unwrap, as a reader with a master key does.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tidemark_seal::key_material::FooterKeyMaterial;
use tidemark_seal::pme_tail::{MIN_FOOTER_MODULE_LEN, TRAILER_LEN, read_crypto_tail, tail_len};
use tidemark_seal::snapshot_keys::unwrap_data_key;
use tidemark_seal::SnapshotKey;

fuzz_target!(|data: &[u8]| {
    let Ok(tail) = read_crypto_tail(data) else { return };
    let footer_len = tail.footer_len as usize;
    assert!(footer_len + TRAILER_LEN <= data.len(), "the footer lies outside the input");
    assert!(tail.crypto_metadata_len + MIN_FOOTER_MODULE_LEN <= footer_len, "no room for the footer module");
    let copied: usize = [&tail.aad_prefix, &tail.aad_file_unique, &tail.key_metadata]
        .iter()
        .filter_map(|b| b.as_ref())
        .map(Vec::len)
        .sum();
    assert!(copied <= tail.crypto_metadata_len, "more bytes read out than the crypto metadata holds");
    let last8 = data[data.len() - TRAILER_LEN..].try_into().expect("8 bytes");
    assert_eq!(tail_len(last8), Ok(tail.footer_len));
    let suffix = &data[data.len() - footer_len - TRAILER_LEN..];
    assert_eq!(read_crypto_tail(suffix).as_ref(), Ok(&tail), "the tail alone reads differently");
    if let Some(Ok(material)) = tail.key_metadata.as_deref().map(FooterKeyMaterial::parse) {
        let written = material.to_bytes().expect("parsed material writes back");
        assert_eq!(FooterKeyMaterial::parse(&written).as_ref().ok(), Some(&material), "material round-trips");
        // A fixed master key: an unwrap may fail, never panic.
        let _ = unwrap_data_key(&SnapshotKey::from_bytes(&[7; 32]), &material.master_key_id, &material.wrapped_dek);
    }
});
