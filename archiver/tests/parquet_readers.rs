//! Parts must be plain Parquet that other engines read (docs/design.md#snapshots): write a
//! part of each profile to a temp file and read it with pyarrow and DuckDB in
//! a `python3` subprocess, checking row counts, column names and spot values.
//!
//! Requires python3 with pyarrow and duckdb (`scripts/deps` installs them);
//! without them the test fails and says so, it does not skip.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use serde_json::{Value, json};
use tidemark_archiver::table::{PartOptions, PartWriter, Profile, TableLayout, sort_views};
use tidemark_schemas::{Catalog, ConflictView, FieldView, Hlc, PatientView};
use uuid::Uuid;

/// The snapshot time layouts are built at (2026-06-01T00:00:00Z): fixed, so
/// the de-identified birth-year floor does not move with the wall clock.
const NOW_MS: u64 = 1_780_272_000_000;

const PATIENTS: usize = 300;

/// The reader script: prints one JSON object per reader.
const SCRIPT: &str = r#"
import json, sys
import pyarrow.parquet as pq
import duckdb

path, patient = sys.argv[1], sys.argv[2]
t = pq.read_table(path)
ids = t.column("patient_id").to_pylist()
i = ids.index(patient)
meta = {k.decode(): v.decode() for k, v in (t.schema.metadata or {}).items() if k.startswith(b"tidemark.")}
pa = {
    "rows": t.num_rows,
    "columns": t.column_names,
    "heart_rate": t.column("vitals_heart_rate_bpm")[i].as_py(),
    "allergies": t.column("allergies")[i].as_py(),
    "conflict_paths": [c["path"] for c in t.column("conflicts")[i].as_py()],
    "metadata": meta,
}
con = duckdb.connect()
rel = f"read_parquet('{path}')"
rows = con.execute(f"select count(*) from {rel}").fetchone()[0]
columns = [r[0] for r in con.execute(f"describe select * from {rel}").fetchall()]
hr, allergies, n_conflicts = con.execute(
    f"select vitals_heart_rate_bpm, allergies, len(conflicts) from {rel} where patient_id = ?", [patient]
).fetchone()
numbered = f"read_parquet('{path}', file_row_number = true)"
sorted_ok = con.execute(
    "select bool_and(patient_id > prev) from (select patient_id, "
    f"lag(patient_id) over (order by file_row_number) as prev from {numbered}) where prev is not null"
).fetchone()[0]
dd = {"rows": rows, "columns": columns, "heart_rate": hr, "allergies": allergies, "conflicts": n_conflicts, "sorted": sorted_ok}
print(json.dumps({"pyarrow": pa, "duckdb": dd}))
"#;

fn register(value: Value, conflicts: Vec<ConflictView>) -> FieldView {
    FieldView::Register {
        value,
        author: "clin-7".into(),
        source: "site-a-ehr".into(),
        hlc: Hlc::new(1_763_794_825_000, 0),
        conflicts,
    }
}

/// Patient `i`: heart rate `60 + i % 50`, allergies by parity, a heart-rate
/// conflict on every tenth patient, a name and birth date on all.
fn view(i: usize) -> PatientView {
    let allergies = if i.is_multiple_of(2) {
        vec!["rxnorm:7980".to_owned()]
    } else {
        vec!["rxnorm:1191".into(), "snomed:300916003".into()]
    };
    let conflicts = if i.is_multiple_of(10) {
        vec![ConflictView {
            value: json!(120),
            author: "clin-9".into(),
            source: "site-b-ehr".into(),
            hlc: Hlc::new(1_763_794_820_000, 0),
            event_id: Uuid::from_u128(0x019a_0000_0000_7000_8000_0000_0000_0000 + i as u128),
        }]
    } else {
        vec![]
    };
    let fields = BTreeMap::from([
        ("demographics.given_name".to_owned(), register(json!(format!("Given{i}")), vec![])),
        ("demographics.birth_date".to_owned(), register(json!("1961-07-23"), vec![])),
        ("demographics.postal_code".to_owned(), register(json!("94110"), vec![])),
        ("vitals.heart_rate_bpm".to_owned(), register(json!(60 + i % 50), conflicts)),
        ("allergies".to_owned(), FieldView::Set { values: allergies }),
    ]);
    PatientView {
        patient_id: format!("pt-{i:06}"),
        fields,
        version: BTreeMap::from([("site-a-ehr".to_owned(), Hlc::new(1_763_794_825_000, 0))]),
        event_count: 3,
        updated_at: "2025-11-22T07:00:25.000Z".into(),
        open_conflicts: u32::from(i.is_multiple_of(10)),
    }
}

fn write(profile: &Profile, path: &Path) -> Arc<TableLayout> {
    let layout = Arc::new(TableLayout::new(Catalog::builtin(), profile, NOW_MS).expect("builtin catalog lays out"));
    let mut views: Vec<_> = (0..PATIENTS).map(view).collect();
    sort_views(&layout, &mut views);
    let file = std::fs::File::create(path).expect("create temp part");
    // Small row groups so the readers cross row-group boundaries.
    let options = PartOptions { max_row_group_rows: 64, ..PartOptions::default() };
    let mut w = PartWriter::new(Arc::clone(&layout), file, options).expect("writer");
    w.push(&views).expect("views fit");
    let (_, summary) = w.finish().expect("finish");
    assert_eq!(summary.rows, PATIENTS as u64);
    layout
}

/// Runs the reader script; fails loudly when python3, pyarrow or duckdb is missing.
fn read_with_python(path: &Path, patient: &str) -> Value {
    let out = Command::new("python3").arg("-c").arg(SCRIPT).arg(path).arg(patient).output().unwrap_or_else(|e| {
        panic!("could not run python3 ({e}); install python3, then `scripts/deps` for pyarrow and duckdb")
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python3 reader failed on {} ({}); if pyarrow or duckdb is missing, run `scripts/deps`. stderr:\n{stderr}",
        path.display(),
        out.status
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("reader printed no JSON ({e}): {stderr}"))
}

fn column_names(layout: &TableLayout) -> Value {
    json!(layout.schema().fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>())
}

#[test]
fn pyarrow_and_duckdb_read_identified_parts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("part-00000.parquet");
    let layout = write(&Profile::Identified, &path);
    let got = read_with_python(&path, "pt-000040");
    let names = column_names(&layout);
    for reader in ["pyarrow", "duckdb"] {
        let r = &got[reader];
        assert_eq!(r["rows"], json!(PATIENTS), "{reader}: {r}");
        assert_eq!(r["columns"], names, "{reader}: column names");
        assert_eq!(r["heart_rate"], json!(100), "{reader}: pt-000040's heart rate");
        assert_eq!(r["allergies"], json!(["rxnorm:7980"]), "{reader}: pt-000040's allergies");
    }
    assert_eq!(got["pyarrow"]["conflict_paths"], json!(["vitals.heart_rate_bpm"]));
    assert_eq!(got["duckdb"]["conflicts"], json!(1));
    assert_eq!(got["duckdb"]["sorted"], json!(true));
    let meta = &got["pyarrow"]["metadata"];
    assert_eq!(meta["tidemark.profile"], json!("identified"));
    assert_eq!(meta["tidemark.catalog.version"], json!("1"));
}

#[test]
fn pyarrow_and_duckdb_read_deidentified_parts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("part-00000.parquet");
    let layout = write(&Profile::Deidentified { dataset_key: [3; 32] }, &path);
    let pseudonym = layout.patient_key("pt-000041").into_owned();
    let got = read_with_python(&path, &pseudonym);
    let names = column_names(&layout);
    assert!(!names.as_array().expect("names").contains(&json!("demographics_given_name")));
    for reader in ["pyarrow", "duckdb"] {
        let r = &got[reader];
        assert_eq!(r["rows"], json!(PATIENTS), "{reader}: {r}");
        assert_eq!(r["columns"], names, "{reader}: column names");
        assert_eq!(r["heart_rate"], json!(101), "{reader}: pt-000041's heart rate, found by pseudonym");
        assert_eq!(r["allergies"], json!(["rxnorm:1191", "snomed:300916003"]), "{reader}: allergies");
    }
    assert_eq!(got["duckdb"]["sorted"], json!(true), "de-identified parts are sorted by pseudonym");
    assert_eq!(got["pyarrow"]["metadata"]["tidemark.profile"], json!("deidentified"));
}
