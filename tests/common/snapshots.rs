//! Snapshots written without a broker, in the archiver's real format (parts
//! encrypted by the archiver's own writer, manifests signed by a real
//! archiver key), for the tests of the readers: `tidemark snapshot` and the
//! engines that read parts in place.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use super::{Run, s, tidemark};
use serde_json::Value;
use tidemark_archiver::manifest::{self, MANIFEST_FORMAT, MANIFEST_NAME, Manifest};
use tidemark_archiver::pme::{self, WriteKeys};
use tidemark_archiver::table::{PartOptions, PartWriter, Profile, TableLayout};
use tidemark_schemas::{Catalog, FieldView, Hlc, PatientView};
use tidemark_seal::{ArchiverSigningKey, RecipientSecretKey};

/// Patient `i`: a name, a heart rate of `60 + i % 50` and an allergy (a
/// nested column).
pub fn view(i: usize) -> PatientView {
    let register = |value: serde_json::Value| FieldView::Register {
        value,
        author: "clin-7".into(),
        source: "site-a-ehr".into(),
        hlc: Hlc::new(1_763_794_825_000, 0),
        conflicts: vec![],
    };
    PatientView {
        patient_id: format!("pt-{i:06}"),
        fields: BTreeMap::from([
            ("demographics.given_name".to_owned(), register(format!("Given{i}").into())),
            ("vitals.heart_rate_bpm".to_owned(), register((60 + i % 50).into())),
            ("allergies".to_owned(), FieldView::Set { values: vec![format!("rxnorm:{}", 1000 + i % 7)] }),
        ]),
        version: BTreeMap::from([("site-a-ehr".to_owned(), Hlc::new(1_763_794_825_000, 0))]),
        event_count: 1,
        updated_at: "2025-11-22T07:00:25.000Z".into(),
        open_conflicts: 0,
    }
}

pub const PROFILE: &str = "identified";

/// An archive directory with its archiver and recipient keys saved as files.
pub struct World {
    pub dir: tempfile::TempDir,
    pub archiver: ArchiverSigningKey,
    pub recipient: RecipientSecretKey,
    previous: Option<Vec<u8>>,
    sequence: u64,
}

impl World {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let archiver = ArchiverSigningKey::generate().expect("random");
        let recipient = RecipientSecretKey::generate().expect("random");
        tidemark_seal::save_archiver_public(&dir.path().join("archiver.pub"), &archiver.verifying_key()).expect("save");
        tidemark_seal::save_recipient_secret(&dir.path().join("reader.key"), &recipient).expect("save");
        Self { dir, archiver, recipient, previous: None, sequence: 0 }
    }

    pub fn archive(&self) -> PathBuf {
        self.dir.path().join("archive")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Commits the next snapshot of the chain with one real encrypted part
    /// per entry of `parts` (its number of patients, numbered on from 0
    /// across the parts), as the archiver writes them; returns its id.
    pub fn commit(&mut self, parts: &[usize]) -> String {
        self.sequence += 1;
        let id = format!("0193a1b2-{:04x}-7000-8000-000000000000", self.sequence);
        let dir = self.archive().join(PROFILE).join(&id);
        fs::create_dir_all(&dir).expect("mkdir");
        let layout = Arc::new(TableLayout::new(Catalog::builtin(), &Profile::Identified, 0).expect("layout"));
        let keys = WriteKeys::new(&id, &[self.recipient.public_key().clone()]).expect("snapshot keys");
        let options = pme::part_options(&PartOptions { max_row_group_rows: 64, ..PartOptions::default() }, &keys);
        let mut entries = Vec::new();
        let mut next = 0;
        for (i, &n) in parts.iter().enumerate() {
            let patients = next..next + n;
            next += n;
            let name = format!("part-{i:05}-000.parquet");
            let mut w = PartWriter::new(layout.clone(), Vec::new(), options.clone()).expect("writer");
            w.push(&patients.map(view).collect::<Vec<_>>()).expect("views fit");
            let (file, summary) = w.finish().expect("part");
            fs::write(dir.join(&name), &file).expect("write part");
            entries.push(pme::part_entry(name, &file, summary.rows, summary.row_groups).expect("entry"));
        }
        let m = Manifest {
            format: MANIFEST_FORMAT.into(),
            snapshot_id: id.clone(),
            profile: PROFILE.into(),
            created_at: "2026-12-05T00:00:00.000Z".into(),
            catalog_version: 1,
            topic: "tidemark.patient-state.v1".into(),
            cut: vec![],
            rows: entries.iter().map(|e| e.rows).sum(),
            schema_sha256: pme::arrow_schema_fingerprint(&layout.schema()).expect("schema"),
            parts: entries,
            encryption: keys.encryption,
            recipients: keys.recipients,
            archiver_key_id: self.archiver.key_id(),
            sequence: self.sequence,
            previous_manifest_sha256: self.previous.as_deref().map(manifest::envelope_sha256),
            dataset_key_id: None,
            records_set_aside: 0,
            revision: 1,
            previous_revision_sha256: None,
        };
        let bytes = m.sign(&self.archiver);
        fs::write(dir.join(MANIFEST_NAME), &bytes).expect("write manifest");
        self.previous = Some(bytes);
        id
    }

    /// The sum of the heart rates of `patients`: what a reader must find.
    pub fn heart_rate_sum(patients: std::ops::Range<usize>) -> u64 {
        patients.map(|i| (60 + i % 50) as u64).sum()
    }

    /// The directory of snapshot `id`.
    pub fn snapshot_dir(&self, id: &str) -> PathBuf {
        self.archive().join(PROFILE).join(id)
    }

    /// `tidemark snapshot SUB --archive A --profile identified SNAPSHOT --archiver-pub K EXTRA...`
    pub fn snapshot(&self, sub: &str, snapshot: &str, extra: &[&str]) -> Run {
        let (archive, key) = (self.archive(), self.path("archiver.pub"));
        let mut args = vec!["snapshot", sub, "--archive", s(&archive), "--profile", PROFILE, snapshot];
        args.extend(["--archiver-pub", s(&key)]);
        args.extend(extra);
        tidemark(&args, b"", &[])
    }
}

/// Reads the parts with the pyarrow snippet (`table`, and `dataset` queried
/// by DuckDB); prints rows, the heart-rate sum and the allergies' count.
pub const PYARROW: &str = r#"
import json, sys
import duckdb
exec(open(sys.argv[1]).read())
hr = [h for h in table.column("vitals_heart_rate_bpm").to_pylist() if h is not None]
n, s = duckdb.sql("SELECT count(*), sum(vitals_heart_rate_bpm) FROM dataset").fetchall()[0]
allergies = duckdb.sql("SELECT count(*) FROM dataset, unnest(allergies)").fetchall()[0][0]
print(json.dumps({"rows": table.num_rows, "sum": sum(hr), "dataset_rows": n, "dataset_sum": int(s or 0), "allergies": allergies}))
"#;

/// Runs the DuckDB snippet (argv 1), then queries its view (the heart rate
/// of patient argv 3, found by a filter) and a glob (argv 2) of the parts
/// with the same key.
pub const DUCKDB: &str = r#"
import json, re, sys
import duckdb
sql = open(sys.argv[1]).read()
c = duckdb.connect()
c.execute(sql)
n, s = c.sql("SELECT count(*), sum(vitals_heart_rate_bpm) FROM tidemark_identified").fetchall()[0]
one = c.sql("SELECT vitals_heart_rate_bpm FROM tidemark_identified WHERE patient_id = ?", params=[sys.argv[3]]).fetchall()[0][0]
# Shapes that push filters into the scan: a top-N and a join.
top = c.sql("SELECT patient_id FROM tidemark_identified ORDER BY vitals_heart_rate_bpm DESC LIMIT 3").fetchall()
joined = c.sql("SELECT count(*) FROM tidemark_identified a JOIN tidemark_identified b USING (patient_id) "
               "WHERE a.vitals_heart_rate_bpm > 0").fetchall()[0][0]
name = re.search(r"add_parquet_key\('([^']+)'", sql).group(1)
glob = sys.argv[2]
g = c.sql(f"SELECT count(*), sum(vitals_heart_rate_bpm) FROM read_parquet('{glob}', encryption_config = {{footer_key: '{name}'}})").fetchall()[0]
print(json.dumps({"rows": n, "sum": int(s or 0), "one": one, "top": len(top), "joined": joined, "glob_rows": g[0], "glob_sum": int(g[1] or 0)}))
"#;

/// `python3 -c SCRIPT ARGS`: its stdout as JSON, or its stderr as the error.
pub fn python(script: &str, args: &[&str]) -> Result<Value, String> {
    let out = Command::new("python3").arg("-c").arg(script).args(args).output().unwrap_or_else(|e| {
        panic!("could not run python3 ({e}); run `scripts/deps` for pyarrow, duckdb and cryptography")
    });
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        assert!(!stderr.contains("ModuleNotFoundError"), "a Python module is missing; run `scripts/deps`:\n{stderr}");
        return Err(stderr);
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("no JSON from python ({e}): {stderr}")))
}

/// Spark in local mode over `parts`, with the settings file `snapshot keys
/// --format spark` wrote: `{"rows", "sum"}` or the error.
pub fn spark(properties: &Path, parts: &[PathBuf]) -> Result<Value, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let build = Command::new(root.join("integrations/spark/build")).output().expect("integrations/spark/build runs");
    assert!(
        build.status.success(),
        "building the Spark KMS client failed (needs pyspark and a JDK: `scripts/deps`): {}",
        String::from_utf8_lossy(&build.stderr)
    );
    let jar = String::from_utf8(build.stdout).expect("a path").trim().to_owned();
    let mut cmd = Command::new("python3");
    cmd.arg(root.join("integrations/spark/read_snapshot.py"));
    cmd.args(["--properties", s(properties), "--jar", &jar, "--sum-column", "vitals_heart_rate_bpm"]);
    let out = cmd.args(parts).output().expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        assert!(!stderr.contains("ModuleNotFoundError"), "pyspark is missing; run `scripts/deps`:\n{stderr}");
        return Err(stderr);
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("no JSON from Spark ({e}): {stderr}")))
}
