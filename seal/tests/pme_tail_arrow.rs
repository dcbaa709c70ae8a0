//! `read_crypto_tail` against files arrow-rs writes with Parquet Modular
//! Encryption (encrypted-footer mode), the writer snapshot parts come from:
//! the algorithm, prefix, file-unique AAD and key metadata it reports must be
//! what the writer was told. The fuzz seeds in `fuzz/seeds/pme_tail` are
//! tails of such files; regenerate them with
//! `cargo test -p tidemark-seal --test pme_tail_arrow -- --ignored write_fuzz_seeds`.

#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::encryption::encrypt::FileEncryptionProperties;
use parquet::file::properties::WriterProperties;
use tidemark_seal::pme_tail::{Algorithm, TRAILER_LEN, TailError, tail_len};
use tidemark_seal::read_crypto_tail;

const KEY_METADATA: &[u8] = br#"{"kid":"tmsk1-0123456789abcdef","wrap":"v1"}"#;

/// A small two-column file, encrypted as `props` says.
fn write(props: Arc<FileEncryptionProperties>) -> Vec<u8> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("patient", DataType::Utf8, false),
        Field::new("seq", DataType::Int64, false),
    ]));
    let columns: Vec<ArrayRef> =
        vec![Arc::new(StringArray::from(vec!["pt-1", "pt-2", "pt-3"])), Arc::new(Int64Array::from(vec![1, 2, 3]))];
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let props = WriterProperties::builder().with_file_encryption_properties(props).build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema, Some(props)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    out
}

fn key() -> Vec<u8> {
    vec![7u8; 32]
}

/// The last `footer_len + 8` bytes, found as a caller reading only the tail would.
fn tail_of(file: &[u8]) -> &[u8] {
    let last8: &[u8; TRAILER_LEN] = file[file.len() - TRAILER_LEN..].try_into().unwrap();
    let footer_len = tail_len(last8).unwrap() as usize;
    &file[file.len() - footer_len - TRAILER_LEN..]
}

#[test]
fn arrow_rs_tail_reads_without_a_key() {
    let props =
        FileEncryptionProperties::builder(key()).with_footer_key_metadata(KEY_METADATA.to_vec()).build().unwrap();
    let file = write(props);
    assert_eq!(&file[..4], b"PARE");
    let t = read_crypto_tail(&file).unwrap();
    assert_eq!(t.algorithm, Algorithm::AesGcmV1);
    assert_eq!(t.aad_prefix, None);
    assert_eq!(t.supply_aad_prefix, None, "arrow-rs writes no supply_aad_prefix without a prefix");
    assert_eq!(t.aad_file_unique.as_ref().map(Vec::len), Some(8));
    assert_eq!(t.key_metadata.as_deref(), Some(KEY_METADATA));
    assert!(!t.uses_aad_prefix());
    assert!(t.footer_len as usize + TRAILER_LEN + 4 <= file.len());
    // The tail alone reads the same.
    assert_eq!(read_crypto_tail(tail_of(&file)).unwrap(), t);
    // Every file gets a fresh file-unique AAD.
    let again =
        FileEncryptionProperties::builder(key()).with_footer_key_metadata(KEY_METADATA.to_vec()).build().unwrap();
    assert_ne!(read_crypto_tail(&write(again)).unwrap().aad_file_unique, t.aad_file_unique);
}

#[test]
fn arrow_rs_aad_prefix_is_reported() {
    let stored = FileEncryptionProperties::builder(key())
        .with_footer_key_metadata(KEY_METADATA.to_vec())
        .with_aad_prefix(b"x".to_vec())
        .with_aad_prefix_storage(true)
        .build()
        .unwrap();
    let t = read_crypto_tail(&write(stored)).unwrap();
    assert_eq!(t.aad_prefix.as_deref(), Some(&b"x"[..]));
    assert_eq!(t.supply_aad_prefix, Some(false), "arrow-rs writes supply_aad_prefix=false with a stored prefix");
    assert!(t.uses_aad_prefix());

    let supplied = FileEncryptionProperties::builder(key()).with_aad_prefix(b"x".to_vec()).build().unwrap();
    let t = read_crypto_tail(&write(supplied)).unwrap();
    assert_eq!((t.aad_prefix, t.supply_aad_prefix, t.key_metadata), (None, Some(true), None));
    assert_eq!(t.aad_file_unique.as_ref().map(Vec::len), Some(8));
}

#[test]
fn a_plaintext_footer_is_not_an_encrypted_footer() {
    let props = FileEncryptionProperties::builder(key()).with_plaintext_footer(true).build().unwrap();
    assert_eq!(read_crypto_tail(&write(props)), Err(TailError::NotEncryptedFooter));
}

#[test]
#[ignore = "writes the fuzz seeds; run by hand"]
fn write_fuzz_seeds() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/pme_tail");
    std::fs::create_dir_all(&dir).unwrap();
    let with_metadata = write(
        FileEncryptionProperties::builder(key()).with_footer_key_metadata(KEY_METADATA.to_vec()).build().unwrap(),
    );
    let with_prefix = write(
        FileEncryptionProperties::builder(key())
            .with_footer_key_metadata(KEY_METADATA.to_vec())
            .with_aad_prefix(b"tidemark".to_vec())
            .with_aad_prefix_storage(true)
            .build()
            .unwrap(),
    );
    let supplied = write(FileEncryptionProperties::builder(key()).with_aad_prefix(b"x".to_vec()).build().unwrap());
    let tail = tail_of(&with_metadata);
    std::fs::write(dir.join("arrow-key-metadata.tail"), tail).unwrap();
    std::fs::write(dir.join("arrow-stored-prefix.tail"), tail_of(&with_prefix)).unwrap();
    std::fs::write(dir.join("arrow-supplied-prefix.parquet"), &supplied).unwrap();
    std::fs::write(dir.join("arrow-truncated.tail"), &tail[1..]).unwrap();
}
