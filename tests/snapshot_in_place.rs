//! Issue 21: snapshots read in place, still encrypted, by the engines data
//! teams use: `tidemark snapshot keys` prints what pyarrow, DuckDB and Spark
//! need, and each engine reads the parts with it (pyarrow as a table and as a
//! dataset DuckDB queries, DuckDB natively over a glob of the parts, Spark in
//! local mode with the key-list KMS client of integrations/spark). Each
//! refuses the wrong key, a tampered page and a part swapped in from another
//! snapshot, and so does `tidemark snapshot verify`. No broker: snapshots
//! are written in the archiver's real format (tests/common/snapshots.rs);
//! archiver_e2e reads a pipeline snapshot the same way.
//!
//! Requires python3 with pyarrow, duckdb, cryptography and pyspark, and a
//! JDK (`scripts/deps` installs them); without them these tests fail and say
//! so, they do not skip.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use common::s;
use common::snapshots::{DUCKDB, PYARROW, World, python, spark};
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use serde_json::Value;
use tidemark_archiver::manifest::{MANIFEST_NAME, Manifest};
use tidemark_archiver::pme;

/// `snapshot keys ID --format FORMAT --out DIR/NAME` with `key`: the file.
fn keys(w: &World, id: &str, format: &str, key: &Path, name: &str) -> PathBuf {
    let out = w.path(name);
    w.snapshot("keys", id, &["--key", s(key), "--format", format, "--out", s(&out)]).code(0).stderr_has("mode 0600");
    assert_eq!(fs::metadata(&out).expect("written").permissions().mode() & 0o777, 0o600);
    out
}

fn parts_of(w: &World, id: &str) -> Vec<PathBuf> {
    let mut parts: Vec<PathBuf> = fs::read_dir(w.snapshot_dir(id))
        .expect("ls")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect();
    parts.sort();
    parts
}

#[test]
fn keys_print_what_pyarrow_duckdb_and_spark_need_and_each_reads_the_parts_in_place() {
    let mut w = World::new();
    let id = w.commit(&[300, 150]);
    let (reader, sum) = (w.path("reader.key"), World::heart_rate_sum(0..450));

    let json = w.snapshot("keys", &id, &["--key", s(&reader), "--format", "json"]);
    json.code(0);
    let json: Value = serde_json::from_str(&json.stdout).expect("JSON");
    assert_eq!(json["snapshot"], id.as_str());
    assert_eq!(json["master_key_id"], format!("tidemark.snap-{id}"));
    assert_eq!(json["master_key"].as_str().map(str::len), Some(44), "base64 of 32 bytes");
    let footer = json["footer_keys"].as_object().expect("an object");
    let parts = parts_of(&w, &id);
    assert_eq!(footer.len(), 2);
    for p in &parts {
        let abs = std::path::absolute(p).expect("absolute");
        assert_eq!(footer[s(&abs)].as_str().map(str::len), Some(44), "{footer:?}");
    }

    let py = keys(&w, &id, "pyarrow", &reader, "read.py");
    let got = python(PYARROW, &[s(&py)]).expect("pyarrow reads the parts in place");
    assert_eq!(
        (&got["rows"], &got["sum"], &got["dataset_rows"], &got["dataset_sum"], &got["allergies"]),
        (&450.into(), &sum.into(), &450.into(), &sum.into(), &450.into()),
        "{got}"
    );

    let sql = keys(&w, &id, "duckdb", &reader, "read.sql");
    let glob = w.snapshot_dir(&id).join("part-*.parquet");
    let got = python(DUCKDB, &[s(&sql), s(&glob), "pt-000042"]).expect("DuckDB reads the parts natively");
    assert_eq!((&got["rows"], &got["sum"], &got["one"]), (&450.into(), &sum.into(), &102.into()), "{got}");
    assert_eq!((&got["glob_rows"], &got["glob_sum"]), (&450.into(), &sum.into()), "{got}");
    assert_eq!((&got["top"], &got["joined"]), (&3.into(), &450.into()), "a top-N and a join: {got}");

    let props = keys(&w, &id, "spark", &reader, "spark.properties");
    let got = spark(&props, &parts).expect("Spark reads the parts in place");
    assert_eq!((&got["rows"], &got["sum"]), (&450.into(), &sum.into()), "{got}");

    // The output is a secret: never written over an existing file.
    w.snapshot("keys", &id, &["--key", s(&reader), "--format", "json", "--out", s(&py)])
        .code(2)
        .stderr_has("refusing to overwrite");
}

/// Flips a byte in the middle of the heart-rate column chunk of the part's
/// first row group: a page every reader here decrypts (Spark only reads the
/// columns a query needs).
fn tamper_a_page(w: &World, id: &str, part: &Path) {
    let bytes = fs::read(w.snapshot_dir(id).join(MANIFEST_NAME)).expect("manifest");
    let manifest = Manifest::open(&bytes, &w.archiver.verifying_key()).expect("verifies");
    let keys = pme::read_keys(&manifest, &w.recipient).expect("a recipient");
    let options = ArrowReaderOptions::new().with_file_decryption_properties(keys.decryption());
    let file = bytes::Bytes::from(fs::read(part).expect("part"));
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(file.clone(), options).expect("reads");
    let group = builder.metadata().row_group(0);
    let column = group.columns().iter().find(|c| c.column_path().string() == "vitals_heart_rate_bpm").expect("column");
    let (start, len) = column.byte_range();
    let mut tampered = file.to_vec();
    tampered[usize::try_from(start + len / 2).expect("small")] ^= 0x01;
    fs::write(part, tampered).expect("write");
}

#[test]
fn the_wrong_key_a_tampered_page_and_a_swapped_part_are_refused_by_every_reader() {
    let mut w = World::new();
    let (a, b) = (w.commit(&[200, 100]), w.commit(&[100]));
    let reader = w.path("reader.key");
    let (py, sql, props) = (
        keys(&w, &a, "pyarrow", &reader, "a.py"),
        keys(&w, &a, "duckdb", &reader, "a.sql"),
        keys(&w, &a, "spark", &reader, "a.properties"),
    );
    let glob = w.snapshot_dir(&a).join("part-*.parquet");
    let parts = parts_of(&w, &a);
    // Each engine's own words for the damage: (pyarrow, Spark).
    let check = |what: &str, want: (&str, &str)| {
        let err = python(PYARROW, &[s(&py)]).expect_err(&format!("pyarrow read {what}"));
        assert!(err.contains(want.0), "pyarrow on {what}: wanted `{}`: {err}", want.0);
        let err = python(DUCKDB, &[s(&sql), s(&glob), "pt-000001"]).expect_err(&format!("DuckDB read {what}"));
        assert!(err.contains("Computed AES tag differs"), "DuckDB on {what}: {err}");
        let err = spark(&props, &parts).expect_err(&format!("Spark read {what}"));
        assert!(err.contains(want.1), "Spark on {what}: wanted `{}`: {err}", want.1);
    };

    // Another recipient's key: refused by `snapshot keys`, naming the recipients.
    let stranger = w.path("stranger.key");
    tidemark_seal::save_recipient_secret(&stranger, &tidemark_seal::RecipientSecretKey::generate().expect("random"))
        .expect("save");
    let run = w.snapshot("keys", &a, &["--key", s(&stranger), "--format", "json"]);
    run.code(1).stderr_has("is not encrypted for key").stderr_has(&w.recipient.key_id());
    // Snapshot b's keys on snapshot a's parts: every engine refuses them.
    let (py_b, sql_b, props_b) = (
        keys(&w, &b, "pyarrow", &reader, "b.py"),
        keys(&w, &b, "duckdb", &reader, "b.sql"),
        keys(&w, &b, "spark", &reader, "b.properties"),
    );
    let other =
        |f: &Path, to: &Path| fs::write(to, fs::read_to_string(f).expect("read").replace(&b, &a)).expect("write");
    let (py_w, sql_w, props_w) = (w.path("wrong.py"), w.path("wrong.sql"), w.path("wrong.properties"));
    // Point b's snippets at a's parts and a's master key id, keeping b's keys.
    for (f, to) in [(&py_b, &py_w), (&sql_b, &sql_w), (&props_b, &props_w)] {
        other(f, to);
    }
    let err = python(PYARROW, &[s(&py_w)]).expect_err("pyarrow with another snapshot's master key");
    assert!(err.contains("the data key does not unwrap under"), "the KMS client's AES-GCM unwrap fails: {err}");
    let err = python(DUCKDB, &[s(&sql_w), s(&glob), "pt-000001"]).expect_err("DuckDB with another snapshot's data key");
    assert!(err.contains("Computed AES tag differs"), "{err}");
    let err = spark(&props_w, &parts).expect_err("Spark with another snapshot's master key");
    assert!(err.contains("does not authenticate"), "{err}");

    // A tampered page.
    let pristine = fs::read(&parts[0]).expect("part");
    tamper_a_page(&w, &a, &parts[0]);
    let run = w.snapshot("verify", &a, &["--key", s(&reader)]);
    run.code(1).stderr_has("does not match the signed manifest").stderr_has("it is this part's file, altered");
    check("a tampered page", ("Failed decryption finalization", "GCM tag check failed"));

    // A part of snapshot b swapped in.
    fs::copy(&parts_of(&w, &b)[0], &parts[0]).expect("swap");
    let run = w.snapshot("verify", &a, &[]);
    run.code(1).stderr_has("an encrypted Parquet file of another snapshot, swapped in");
    check(
        "a part swapped in from another snapshot",
        ("is not this snapshot's master key", "is not in parquet.encryption.key.list"),
    );

    // Restored, it reads again: the failures were the damage's.
    fs::write(&parts[0], pristine).expect("restore");
    w.snapshot("verify", &a, &["--key", s(&reader)]).code(0).stdout_has("every hash and every page verified");
}

/// The Spark KMS client's own checks (integrations/spark/test_fixture.py):
/// files pyarrow writes in the same layout read, and a malformed key list
/// (an unknown id, a truncated key), a wrong master key and a flipped page
/// byte each fail with a message that quotes no key byte.
#[test]
fn the_spark_kms_client_passes_its_self_test() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("python3")
        .arg(root.join("integrations/spark/test_fixture.py"))
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the Spark KMS client's self-test failed (needs pyspark and a JDK: `scripts/deps`):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
