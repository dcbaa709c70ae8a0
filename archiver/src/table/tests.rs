//! Schema derivation, round trips through Parquet, error reporting and part
//! writing. De-identification has its own file, `tests_deid.rs`.

use std::sync::Arc;

use arrow_schema::DataType;
use parquet::basic::Compression;
use parquet::file::reader::{FileReader, SerializedFileReader};
use proptest::prelude::*;
use serde_json::json;
use tidemark_schemas::{Catalog, FieldKind, FieldView, PatientView, PhiClass};

use super::test_support::{NOW_MS, decode, expected_identified, random_view, read_part, write_part};
use super::{PartOptions, PartWriter, Profile, TableError, TableLayout, ViewProblem, sort_views, to_batch};

fn identified() -> Arc<TableLayout> {
    Arc::new(TableLayout::new(Catalog::builtin(), &Profile::Identified, NOW_MS).expect("builtin catalog lays out"))
}

fn deidentified(key: u8) -> Arc<TableLayout> {
    let profile = Profile::Deidentified { dataset_key: [key; 32] };
    Arc::new(TableLayout::new(Catalog::builtin(), &profile, NOW_MS).expect("builtin catalog lays out"))
}

fn views(n: usize, seed: u64) -> Vec<PatientView> {
    (0..n).map(|i| random_view(Catalog::builtin(), seed, i)).collect()
}

#[test]
fn every_catalog_field_has_a_column_with_its_path() {
    let schema = identified().schema();
    for spec in Catalog::builtin().fields() {
        let name = spec.path.replace('.', "_");
        let field = schema.field_with_name(&name).unwrap_or_else(|_| panic!("no column {name}"));
        assert_eq!(field.metadata().get("tidemark.path"), Some(&spec.path));
        let ok = match spec.kind {
            FieldKind::Set => matches!(field.data_type(), DataType::List(i) if i.data_type() == &DataType::Utf8),
            FieldKind::Log => {
                matches!(field.data_type(), DataType::List(i) if matches!(i.data_type(), DataType::Struct(_)))
            }
            FieldKind::Register => !matches!(field.data_type(), DataType::List(_)),
        };
        assert!(ok, "{name}: {}", field.data_type());
    }
    let types: Vec<(&str, DataType)> = vec![
        ("vitals_heart_rate_bpm", DataType::Int64),
        ("vitals_temperature_c", DataType::Float64),
        ("demographics_deceased", DataType::Boolean),
        ("demographics_birth_date", DataType::Date32),
        ("demographics_sex", DataType::Utf8),
        ("encounter_last_visit_at", super::schema::timestamp_type()),
        ("event_count", DataType::UInt64),
        ("open_conflicts", DataType::UInt32),
        ("updated_at", super::schema::timestamp_type()),
    ];
    for (name, ty) in types {
        assert_eq!(schema.field_with_name(name).map(|f| f.data_type().clone()).ok(), Some(ty), "{name}");
    }
    assert_eq!(schema.field(0).name(), "patient_id");
    assert!(!schema.field(0).is_nullable());
    let meta = schema.metadata();
    assert_eq!(meta.get("tidemark.catalog.version").map(String::as_str), Some("1"));
    assert_eq!(meta.get("tidemark.profile").map(String::as_str), Some("identified"));
    assert_eq!(schema.fields().len(), 1 + Catalog::builtin().fields().len() + 5);
}

#[test]
fn deidentified_schema_drops_direct_and_free_text_and_dates() {
    let schema = deidentified(7).schema();
    for spec in Catalog::builtin().fields() {
        let kept = schema.fields().iter().any(|f| f.metadata().get("tidemark.path") == Some(&spec.path));
        assert_eq!(kept, !matches!(spec.phi, PhiClass::Direct | PhiClass::FreeText), "{}", spec.path);
    }
    for gone in ["demographics_given_name", "demographics_family_name", "demographics_phone", "notes", "updated_at"] {
        assert!(schema.field_with_name(gone).is_err(), "{gone} must be dropped");
    }
    let year = schema.field_with_name("demographics_birth_date_year").expect("birth year column");
    assert_eq!(year.data_type(), &DataType::Int32);
    assert_eq!(year.metadata().get("tidemark.transform").map(String::as_str), Some("year"));
    assert!(schema.field_with_name("encounter_last_visit_at_year").is_ok());
    assert!(schema.field_with_name("updated_year").is_ok());
    assert_eq!(schema.metadata().get("tidemark.profile").map(String::as_str), Some("deidentified"));
    assert!(!format!("{:?}", Profile::Deidentified { dataset_key: [0xAB; 32] }).contains("171"));
}

#[test]
fn catalogs_that_cannot_be_laid_out_are_refused() {
    let head = tidemark_schemas::catalog::CATALOG_V1_TOML.split("[[field]]").next().expect("header");
    let clash = format!(
        "{head}[[field]]\npath = \"a.b_c\"\nkind = \"set\"\ntype = \"code\"\nphi = \"none\"\n\
         [[field]]\npath = \"a_b.c\"\nkind = \"set\"\ntype = \"code\"\nphi = \"none\"\n"
    );
    let catalog = Catalog::from_toml(&clash).expect("valid catalog");
    let err = TableLayout::new(&catalog, &Profile::Identified, NOW_MS).expect_err("clash");
    assert!(matches!(&err, TableError::ColumnClash { column, .. } if column == "a_b_c"), "{err}");
    let fixed = format!("{head}[[field]]\npath = \"version\"\nkind = \"set\"\ntype = \"code\"\nphi = \"none\"\n");
    let catalog = Catalog::from_toml(&fixed).expect("valid catalog");
    assert!(matches!(TableLayout::new(&catalog, &Profile::Identified, NOW_MS), Err(TableError::ColumnClash { .. })));
    let odd = format!("{head}[[field]]\npath = \"weight\"\nkind = \"register\"\ntype = \"int\"\nphi = \"date\"\n");
    let catalog = Catalog::from_toml(&odd).expect("valid catalog");
    assert!(TableLayout::new(&catalog, &Profile::Identified, NOW_MS).is_ok(), "identified keeps it as is");
    let err =
        TableLayout::new(&catalog, &Profile::Deidentified { dataset_key: [1; 32] }, NOW_MS).expect_err("unsupported");
    assert!(matches!(err, TableError::UnsupportedPhi { .. }), "{err}");
}

#[test]
fn identified_round_trip_of_generated_views() {
    let layout = identified();
    let mut vs = views(500, 42);
    sort_views(&layout, &mut vs);
    let options = PartOptions { max_row_group_rows: 64, batch_rows: 100, ..PartOptions::default() };
    let (bytes, summary) = write_part(&layout, &vs, options);
    assert_eq!(summary.rows, 500);
    assert_eq!(summary.bytes_written, bytes.len() as u64);
    assert_eq!(summary.row_groups, 8, "500 rows in groups of 64");
    let rows = decode(&read_part(bytes));
    assert_eq!(rows.len(), vs.len());
    for (got, view) in rows.iter().zip(&vs) {
        assert_eq!(got, &expected_identified(Catalog::builtin(), view), "patient {}", view.patient_id);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn round_trip_holds_for_any_views(seed in any::<u64>(), n in 0_usize..40, batch in 1_usize..17) {
        let layout = identified();
        let mut vs = views(n, seed);
        sort_views(&layout, &mut vs);
        let (bytes, summary) = write_part(&layout, &vs, PartOptions { batch_rows: batch, ..PartOptions::default() });
        prop_assert_eq!(summary.rows, n as u64);
        let rows = decode(&read_part(bytes));
        let expected: Vec<_> = vs.iter().map(|v| expected_identified(Catalog::builtin(), v)).collect();
        prop_assert_eq!(rows, expected);
    }
}

#[test]
fn batches_keep_the_given_order_and_parts_declare_their_sort() {
    let layout = identified();
    let vs = views(5, 3).into_iter().rev().collect::<Vec<_>>();
    let batch = to_batch(&layout, &vs).expect("batch");
    let ids: Vec<_> = decode(&[batch]).iter().map(|r| r["patient_id"].clone()).collect();
    assert_eq!(
        ids,
        vec![json!("pt-000004"), json!("pt-000003"), json!("pt-000002"), json!("pt-000001"), json!("pt-000000")]
    );

    let mut sorted = vs.clone();
    sort_views(&layout, &mut sorted);
    let (bytes, _) = write_part(&layout, &sorted, PartOptions::default());
    let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).expect("parquet");
    let rg = reader.metadata().row_group(0);
    assert_eq!(rg.sorting_columns().map(|s| s[0].column_idx), Some(0));
    assert!(rg.columns().iter().all(|c| matches!(c.compression(), Compression::ZSTD(_))));
    assert!(rg.column(0).statistics().is_some(), "statistics on");
    let kv = reader.metadata().file_metadata().key_value_metadata().expect("kv metadata");
    assert!(kv.iter().any(|k| k.key == "tidemark.catalog.version" && k.value.as_deref() == Some("1")));
}

#[test]
fn unsorted_or_repeated_patients_are_refused() {
    let layout = identified();
    let vs = views(4, 9);
    let mut w = PartWriter::new(Arc::clone(&layout), Vec::new(), PartOptions::default()).expect("writer");
    w.push(&vs[..2]).expect("first two in order");
    let err = w.push(&vs[1..3]).expect_err("pt-000001 again");
    assert!(matches!(err, TableError::Unsorted { row: 0, key: "patient_id" }), "{err}");
    let reversed: Vec<_> = vs.iter().rev().cloned().collect();
    let mut w = PartWriter::new(layout, Vec::new(), PartOptions::default()).expect("writer");
    assert!(matches!(w.push(&reversed), Err(TableError::Unsorted { row: 1, .. })));
}

fn with_field(mut view: PatientView, path: &str, field: FieldView) -> PatientView {
    view.fields.insert(path.to_owned(), field);
    view
}

fn register(value: serde_json::Value) -> FieldView {
    FieldView::Register {
        value,
        author: "clin-1".into(),
        source: "site-a".into(),
        hlc: tidemark_schemas::Hlc::new(1, 0),
        conflicts: vec![],
    }
}

#[test]
fn a_bad_view_is_named_by_row_and_path_never_by_id_or_value() {
    let layout = identified();
    let vs = views(6, 5);
    let secret = "SECRET-VALUE-1234";
    let bad = with_field(vs[3].clone(), "vitals.heart_rate_bpm", register(json!(secret)));
    let batch: Vec<_> = vs[..3].iter().cloned().chain([bad]).chain(vs[4..].iter().cloned()).collect();
    let err = to_batch(&layout, &batch).expect_err("string in an int column");
    let text = err.to_string();
    assert!(text.contains("row 3") && text.contains("vitals.heart_rate_bpm") && text.contains("int"), "{text}");
    assert!(!text.contains(secret) && !text.contains("pt-000003"), "{text}");
    assert_eq!(err.bad_view_row(), Some(3));

    // push writes everything before the bad view, then the caller resumes after it.
    let mut w = PartWriter::new(Arc::clone(&layout), Vec::new(), PartOptions { batch_rows: 2, ..Default::default() })
        .expect("writer");
    let err = w.push(&batch).expect_err("bad view");
    let row = err.bad_view_row().expect("a view error");
    assert_eq!((row, w.rows()), (3, 3));
    w.push(&batch[row + 1..]).expect("the rest");
    let (bytes, summary) = w.finish().expect("finish");
    assert_eq!(summary.rows, 5);
    let ids: Vec<_> = decode(&read_part(bytes)).iter().map(|r| r["patient_id"].clone()).collect();
    assert!(!ids.contains(&json!("pt-000003")) && ids.len() == 5);
}

/// A register whose displayed value fits but whose conflicting one does not.
fn mistyped_conflict() -> FieldView {
    let mut field = register(json!(120));
    if let FieldView::Register { conflicts, .. } = &mut field {
        conflicts.push(tidemark_schemas::ConflictView {
            value: json!("high"),
            author: "clin-2".into(),
            source: "site-b".into(),
            hlc: tidemark_schemas::Hlc::new(2, 0),
            event_id: uuid::Uuid::nil(),
        });
    }
    field
}

#[test]
fn views_that_do_not_fit_the_catalog() {
    let layout = identified();
    let base = views(1, 11).remove(0);
    let cases = [
        (with_field(base.clone(), "vitals.pulse_ox", register(json!(97))), "not in the catalog"),
        (with_field(base.clone(), "aaa", register(json!(1))), "`aaa` is not in the catalog"),
        (with_field(base.clone(), "zzz", register(json!(1))), "`zzz` is not in the catalog"),
        (with_field(base.clone(), "allergies", register(json!("x"))), "is a register in the view but a set"),
        (with_field(base.clone(), "vitals.weight_kg", FieldView::Set { values: vec![] }), "is a set in the view"),
        (with_field(base.clone(), "demographics.birth_date", register(json!("1984-02-30"))), "type is date"),
        (with_field(base.clone(), "vitals.heart_rate_bpm", register(json!(72.5))), "type is int"),
        (PatientView { updated_at: "yesterday".into(), ..base.clone() }, "updated_at"),
        (with_field(base.clone(), "vitals.systolic_bp_mmhg", mistyped_conflict()), "type is int"),
    ];
    for (view, expect) in cases {
        let err = to_batch(&layout, &[view]).expect_err(expect);
        assert!(matches!(err, TableError::BadView { row: 0, .. }), "{err}");
        assert!(err.to_string().contains(expect), "{err} lacks {expect}");
    }
    let mut clock = base.clone();
    clock.version.insert("site-z".into(), tidemark_schemas::Hlc::new(u64::MAX, 0));
    let err = to_batch(&layout, &[clock]).expect_err("clock");
    assert!(matches!(err, TableError::BadView { problem: ViewProblem::ClockOutOfRange { .. }, .. }));
}

#[test]
fn datetimes_accept_every_validated_form() {
    let layout = identified();
    let base = views(1, 13).remove(0);
    for (input, shown) in [
        ("2026-11-22T09:15:00Z", "2026-11-22T09:15:00.000Z"),
        ("2026-11-22T09:15:00.5Z", "2026-11-22T09:15:00.500Z"),
        ("1960-01-01T00:00:00.123456789Z", "1960-01-01T00:00:00.123Z"),
    ] {
        let v = with_field(base.clone(), "encounter.last_visit_at", register(json!(input)));
        let row = decode(&[to_batch(&layout, &[v]).expect("batch")]).remove(0);
        assert_eq!(row["encounter_last_visit_at"], json!(shown), "{input}");
    }
}

#[test]
fn cleared_and_absent_fields_are_null_and_empty_batches_work() {
    let layout = identified();
    let mut v = views(1, 17).remove(0);
    v.fields.clear();
    v.fields.insert("vitals.heart_rate_bpm".into(), register(serde_json::Value::Null));
    let row = decode(&[to_batch(&layout, &[v]).expect("batch")]).remove(0);
    assert_eq!(row["vitals_heart_rate_bpm"], serde_json::Value::Null);
    assert_eq!(row["allergies"], serde_json::Value::Null);
    assert_eq!(row["conflicts"], json!([]));
    assert_eq!(to_batch(&layout, &[]).expect("empty").num_rows(), 0);
    let (bytes, summary) = write_part(&layout, &[], PartOptions::default());
    assert_eq!((summary.rows, summary.row_groups), (0, 0));
    assert!(read_part(bytes).iter().all(|b| b.num_rows() == 0));
}

#[test]
fn bad_options_are_refused() {
    let bad = PartOptions { batch_rows: 0, ..PartOptions::default() };
    assert!(matches!(PartWriter::new(identified(), Vec::new(), bad), Err(TableError::BadOptions("batch_rows"))));
    let bad = PartOptions { zstd_level: 99, ..PartOptions::default() };
    assert!(matches!(PartWriter::new(identified(), Vec::new(), bad), Err(TableError::BadOptions("zstd_level"))));
}
