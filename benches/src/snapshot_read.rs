//! Reading a snapshot: the same views written as parts plain, plain with one
//! data page per column chunk, and as archived (one page, encrypted), read
//! back by arrow-rs (what `tidemark snapshot verify` and restore use),
//! pyarrow and DuckDB, encrypted beside plain and one page beside the
//! default pages.
//!
//! Key decision: parts are cut as the archiver cuts them, by the patient's
//! partition (a hash of its id), each sorted by patient id, so every part
//! spans the whole key range: a point lookup cannot skip a part by its
//! min/max statistics and depends on the pages inside it, as on a real
//! snapshot. pyarrow and DuckDB run in one `python3` subprocess
//! (`snapshot_read.py`) over files in a temporary directory, in the page
//! cache; a reader that is missing is skipped with the reason and the
//! others still run, so neither Python nor its packages are needed to run
//! the bench.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use serde_json::{Value, json};
use tempfile::TempDir;
use tidemark_archiver::pme::ReadKeys;
use tidemark_archiver::table::{TableLayout, sort_views};
use tidemark_schemas::PatientView;

use crate::report::{best, fixed, grouped, met, of_rate, row};
use crate::snapshot_parts::{SnapshotKeys, Variant, write_part};

/// The pyarrow and DuckDB side.
const SCRIPT: &str = include_str!("snapshot_read.py");
/// The variants a reader is given.
const READ: [Variant; 3] = [Variant::Plain, Variant::OnePage, Variant::Archived];
/// The numeric column DuckDB sums (flat: DuckDB cannot decrypt nested ones).
const SUM_COLUMN: &str = "vitals_heart_rate_bpm";
/// docs/benchmarks.md's goals: encrypted reads at >= 0.8 of plain ones.
const READ_GOAL: f64 = 0.8;

/// The same snapshot written in each variant a reader is given (plain, one
/// page per chunk, as archived), in a temporary directory.
pub struct PartSet {
    dir: TempDir,
    files: BTreeMap<Variant, Vec<PathBuf>>,
    bytes: BTreeMap<Variant, u64>,
    rows: usize,
    /// A patient in the middle of the key range, for point lookups.
    patient_id: String,
    flat_columns: Vec<String>,
    keys: ReadKeys,
    master_key_id: String,
}

impl PartSet {
    /// Cuts `views` into `parts` parts by a hash of the patient id, sorts
    /// each, and writes each in every read variant under `keys`.
    ///
    /// # Panics
    /// If the temporary directory cannot be written, or `views` is empty.
    pub fn write(layout: &Arc<TableLayout>, views: Vec<PatientView>, parts: usize, keys: &SnapshotKeys) -> Self {
        let rows = views.len();
        let mut ids: Vec<&str> = views.iter().map(|v| v.patient_id.as_str()).collect();
        ids.sort_unstable();
        let patient_id = ids[ids.len() / 2].to_owned();
        let mut cut: Vec<Vec<PatientView>> = (0..parts.max(1)).map(|_| Vec::new()).collect();
        let n = cut.len() as u64;
        for v in views {
            cut[(fnv1a(v.patient_id.as_bytes()) % n) as usize].push(v);
        }
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (mut files, mut bytes) = (BTreeMap::new(), BTreeMap::new());
        for variant in READ {
            let options = keys.options(variant);
            for (i, part) in cut.iter_mut().enumerate().filter(|(_, p)| !p.is_empty()) {
                sort_views(layout, part);
                let file = write_part(layout, &options, part);
                let path = dir.path().join(format!("{}-{i:03}.parquet", variant.slug()));
                fs::write(&path, &file).expect("writing a part to the temporary directory");
                *bytes.entry(variant).or_insert(0) += file.len() as u64;
                files.entry(variant).or_insert_with(Vec::new).push(path);
            }
        }
        let schema = layout.schema();
        let flat_columns = schema.fields().iter().filter(|f| !f.data_type().is_nested()).map(|f| f.name().clone());
        Self {
            dir,
            files,
            bytes,
            rows,
            patient_id,
            flat_columns: flat_columns.collect(),
            keys: keys.read(),
            master_key_id: keys.write.encryption.master_key_id.clone(),
        }
    }

    fn paths(&self, variant: Variant) -> Vec<String> {
        self.files[&variant].iter().map(|p| p.display().to_string()).collect()
    }

    fn mib(&self, variant: Variant) -> String {
        fixed(self.bytes[&variant] as f64 / f64::from(1 << 20), 1)
    }

    /// Reads every part of `variant` with arrow-rs, every column, decrypting
    /// with the snapshot's data key when encrypted; returns the rows.
    ///
    /// # Panics
    /// If a part does not read back: the bench wrote it.
    pub fn read_arrow_rs(&self, variant: Variant) -> usize {
        let decryption = self.keys.decryption();
        let mut rows = 0;
        for path in &self.files[&variant] {
            let file = File::open(path).expect("the part the bench wrote");
            let mut options = ArrowReaderOptions::new();
            if matches!(variant, Variant::Archived | Variant::Encrypted) {
                options = options.with_file_decryption_properties(Arc::clone(&decryption));
            }
            let reader = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options)
                .and_then(|b| b.build())
                .expect("arrow-rs opens the part");
            rows += reader.map(|b| b.expect("a part's batches decode").num_rows()).sum::<usize>();
        }
        rows
    }

    /// Prints the reading tables: arrow-rs always, pyarrow and DuckDB when
    /// `python3` and they are installed (otherwise why not).
    pub fn print(&self, runs: usize) {
        let (plain, one_page, archived) = (Variant::Plain, Variant::OnePage, Variant::Archived);
        let timed = |v: Variant| {
            let mut rows = 0;
            let t = best(runs, || rows = self.read_arrow_rs(v));
            assert_eq!(rows, self.rows, "every variant holds every row");
            t
        };
        let (rs_plain, rs_one, rs_archived) = (timed(plain), timed(one_page), timed(archived));
        println!();
        println!(
            "Reading a snapshot: {} patients in {} parts (cut by a hash of the patient id, each sorted), {} MiB \
             plain, {} MiB as archived; files in {}, page cache; best of {runs}",
            grouped(self.rows as f64),
            self.files[&plain].len(),
            self.mib(plain),
            self.mib(archived),
            self.dir.path().display(),
        );
        println!();
        row("encrypted (as archived) vs plain, ms", "encrypted".into(), "plain".into(), "encrypted is".into(), "goal");
        let goal = |plain: f64, enc: f64| format!(">= {READ_GOAL} of plain: {}", met(plain / enc >= READ_GOAL));
        let ms = |s: f64| fixed(s * 1e3, 1);
        row("arrow-rs, every column", ms(rs_archived), ms(rs_plain), of_rate(rs_plain, rs_archived), "");
        let python = self.run_python(runs);
        let (pa, duck) = match &python {
            Ok(v) => (section(v, "pyarrow"), section(v, "duckdb")),
            Err(why) => (Err(why.clone()), Err(why.clone())),
        };
        if let Ok(pa) = &pa {
            let t = |k: &str| pa[k].as_f64().unwrap_or(f64::NAN);
            match pa.get("kms_skip").and_then(Value::as_str) {
                None => row(
                    "pyarrow read_table, CryptoFactory + KmsClient",
                    ms(t("kms")),
                    ms(t("plain")),
                    of_rate(t("plain"), t("kms")),
                    &goal(t("plain"), t("kms")),
                ),
                Some(why) => println!("pyarrow KmsClient row SKIPPED: {why}"),
            }
            row(
                "pyarrow read_table, explicit data key",
                ms(t("data_key")),
                ms(t("plain")),
                of_rate(t("plain"), t("data_key")),
                &goal(t("plain"), t("data_key")),
            );
        }
        if let Ok(d) = &duck {
            let t = |k: &str| d[k].as_f64().unwrap_or(f64::NAN);
            row(
                &format!("DuckDB count(*), sum({SUM_COLUMN})"),
                ms(t("scan_encrypted")),
                ms(t("scan_plain")),
                of_rate(t("scan_plain"), t("scan_encrypted")),
                "",
            );
            row(
                "DuckDB point lookup, flat columns",
                ms(t("lookup_encrypted")),
                ms(t("lookup_plain")),
                of_rate(t("lookup_plain"), t("lookup_encrypted")),
                "",
            );
            row(
                "  same, plain one page, pushdown off too",
                ms(t("lookup_encrypted")),
                ms(t("lookup_plain_no_pushdown")),
                of_rate(t("lookup_plain_no_pushdown"), t("lookup_encrypted")),
                "(decrypting alone)",
            );
        }
        report_versions(&python, &pa, &duck);
        println!(
            "(pyarrow and DuckDB with their own thread pools on this machine's cores; DuckDB in the connection \
             `tidemark snapshot keys --format duckdb` prints, filter pushdown off, except the plain point lookup, \
             which has DuckDB's defaults; encrypted DuckDB reads name only flat columns: it cannot decrypt nested \
             ones)"
        );

        println!();
        println!("One data page per column chunk (as archived) vs arrow-rs's default pages, both plain");
        println!();
        row("", "one page".into(), "default".into(), "one page is".into(), "");
        let per_row = |v: Variant| fixed(self.bytes[&v] as f64 / self.rows as f64, 1);
        row(
            "bytes per row",
            per_row(one_page),
            per_row(plain),
            format!("{:.3}x the size", self.bytes[&one_page] as f64 / self.bytes[&plain] as f64),
            "",
        );
        row("arrow-rs read, every column, ms", ms(rs_one), ms(rs_plain), of_rate(rs_plain, rs_one), "");
        if let Ok(pa) = &pa {
            let t = |k: &str| pa[k].as_f64().unwrap_or(f64::NAN);
            row("pyarrow read_table, ms", ms(t("one_page")), ms(t("plain")), of_rate(t("plain"), t("one_page")), "");
            row(
                "pyarrow point lookup (filters=), ms",
                ms(t("lookup_one_page")),
                ms(t("lookup_plain")),
                of_rate(t("lookup_plain"), t("lookup_one_page")),
                "",
            );
        }
        if let Ok(d) = &duck {
            let t = |k: &str| d[k].as_f64().unwrap_or(f64::NAN);
            row(
                "DuckDB point lookup, flat columns, ms",
                ms(t("lookup_one_page")),
                ms(t("lookup_plain")),
                of_rate(t("lookup_plain"), t("lookup_one_page")),
                "",
            );
        }
        println!("(point lookup: WHERE patient_id = '{}', one row)", self.patient_id);
    }

    /// Runs `snapshot_read.py` over the parts; its JSON, or why it could not run.
    fn run_python(&self, runs: usize) -> Result<Value, String> {
        let config = json!({
            "runs": runs,
            "files": {
                "plain": self.paths(Variant::Plain),
                "one_page": self.paths(Variant::OnePage),
                "archived": self.paths(Variant::Archived),
            },
            "master_key_id": self.master_key_id,
            "master_key": self.keys.master.to_base64().as_str(),
            "data_key": self.keys.data.to_base64().as_str(),
            "patient_id": self.patient_id,
            "flat_columns": self.flat_columns,
            "sum_column": SUM_COLUMN,
        });
        let spawned = Command::new("python3")
            .arg("-c")
            .arg(SCRIPT)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err("python3 is not installed".into()),
            Err(e) => return Err(format!("python3 did not start: {e}")),
        };
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(config.to_string().as_bytes()).map_err(|e| format!("writing python3's input: {e}"))?;
        }
        let out = child.wait_with_output().map_err(|e| format!("waiting for python3: {e}"))?;
        if !out.status.success() {
            return Err(format!("python3 failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("python3's output is not JSON ({e})"))
    }
}

/// A reader's figures from the script's output, or why it has none.
fn section(v: &Value, name: &str) -> Result<Value, String> {
    let s = &v[name];
    if let Some(why) = s.get("skip").and_then(Value::as_str) {
        return Err(format!("SKIPPED: {why}"));
    }
    if let Some(why) = s.get("error").and_then(Value::as_str) {
        return Err(format!("FAILED: {why}"));
    }
    Ok(s.clone())
}

fn report_versions(python: &Result<Value, String>, pa: &Result<Value, String>, duck: &Result<Value, String>) {
    if let Err(why) = python {
        println!("pyarrow and DuckDB rows SKIPPED: {why}");
        return;
    }
    let version = |r: &Result<Value, String>, name: &str| match r {
        Ok(v) => format!("{name} {}", v["version"].as_str().unwrap_or("?")),
        Err(why) => format!("{name} rows {why}"),
    };
    let py = python.as_ref().map(|v| v["python"].as_str().unwrap_or("?").to_owned()).unwrap_or_default();
    println!("(Python {py}; {}; {})", version(pa, "pyarrow"), version(duck, "DuckDB"));
}

/// FNV-1a: a fixed, cheap stand-in for the producer's partitioner.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}
