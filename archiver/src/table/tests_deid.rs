//! The de-identified profile: views full of distinctive markers go in, every
//! value of every column is decoded back out, and none of the markers (nor
//! a full date, a full postal code, an event id or a patient id) survives.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tidemark_schemas::{Catalog, ConflictView, FieldView, Hlc, LogEntryView, OpId, PatientView};
use uuid::Uuid;

use super::test_support::{NOW_MS, decode, read_part, write_part};
use super::{PartOptions, Profile, TableLayout, sort_views};

const KEY: [u8; 32] = [0x5c; 32];
const WALL: u64 = 1_763_794_825_000; // 2025-11-22T07:00:25Z

fn layout(key: [u8; 32]) -> Arc<TableLayout> {
    Arc::new(TableLayout::new(Catalog::builtin(), &Profile::Deidentified { dataset_key: key }, NOW_MS).expect("layout"))
}

fn conflict(value: Value, author: &str, n: u128) -> ConflictView {
    ConflictView {
        value,
        author: author.into(),
        source: "site-b-ehr".into(),
        hlc: Hlc::new(WALL - 5000, 1),
        event_id: Uuid::from_u128(0x019a_0000_0000_7000_8000_0000_0000_0000 + n),
    }
}

fn register(value: Value, conflicts: Vec<ConflictView>) -> FieldView {
    FieldView::Register {
        value,
        author: "clin-7".into(),
        source: "site-a-ehr".into(),
        hlc: Hlc::new(WALL, 0),
        conflicts,
    }
}

/// A patient whose every identifying value carries a marker.
fn marked_view(i: u128) -> PatientView {
    let note = |n: u32, text: &str, amends: Option<OpId>| LogEntryView {
        id: OpId { event_id: Uuid::from_u128(0x019a_1111_0000_7000_8000_0000_0000_0000 + i), op: n },
        author: "clin-42".into(),
        source: "site-a-ehr".into(),
        hlc: Hlc::new(WALL + u64::from(n), 0),
        text: text.into(),
        amends,
    };
    let first = note(0, "NOTEMARK lives at 12 Elm Street with daughter", None);
    let amend = note(1, "NOTEMARK correction: 14 Elm Street", Some(first.id));
    let fields = BTreeMap::from([
        (
            "demographics.given_name".into(),
            register(json!("GIVENMARK"), vec![conflict(json!("ALTNAMEMARK"), "clin-9", i)]),
        ),
        ("demographics.family_name".into(), register(json!("FAMILYMARK"), vec![])),
        ("demographics.phone".into(), register(json!("+1-555-PHONEMARK"), vec![])),
        (
            "demographics.birth_date".into(),
            register(json!("1961-07-23"), vec![conflict(json!("1962-01-05"), "clin-9", i)]),
        ),
        ("demographics.postal_code".into(), register(json!("94110"), vec![conflict(json!("10001"), "clin-9", i)])),
        ("encounter.last_visit_at".into(), register(json!("2025-11-22T09:15:00Z"), vec![])),
        ("vitals.heart_rate_bpm".into(), register(json!(70 + i as i64), vec![conflict(json!(99), "clin-9", i)])),
        ("allergies".into(), FieldView::Set { values: vec!["rxnorm:7980".into()] }),
        ("notes".into(), FieldView::Log { entries: vec![first, amend] }),
    ]);
    PatientView {
        patient_id: format!("pt-IDMARK-{i:03}"),
        fields,
        version: BTreeMap::from([
            ("site-a-ehr".into(), Hlc::new(WALL + 1, 0)),
            ("site-b-ehr".into(), Hlc::new(WALL - 5000, 1)),
        ]),
        event_count: 5,
        updated_at: "2025-11-22T07:00:25.001Z".into(),
        open_conflicts: 4,
    }
}

fn hmac_hex(key: &[u8; 32], id: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(id.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn write_deid(key: [u8; 32], n: u128) -> (Vec<Value>, Vec<Arc<Field>>) {
    let layout = layout(key);
    let mut views: Vec<_> = (0..n).map(marked_view).collect();
    sort_views(&layout, &mut views);
    let (bytes, _) = write_part(&layout, &views, PartOptions::default());
    let batches = read_part(bytes);
    let fields = batches.first().map(|b| b.schema().fields().iter().cloned().collect()).unwrap_or_default();
    let rows = decode(&batches).into_iter().map(|r| Value::Object(r.into_iter().collect())).collect();
    (rows, fields)
}

fn has_date_type(t: &DataType) -> bool {
    match t {
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(..) => true,
        DataType::List(f) => has_date_type(f.data_type()),
        DataType::Struct(fs) => fs.iter().any(|f| has_date_type(f.data_type())),
        _ => false,
    }
}

#[test]
fn no_identifier_survives_deidentification() {
    let (rows, fields) = write_deid(KEY, 20);
    assert_eq!(rows.len(), 20);
    assert!(fields.iter().all(|f| !has_date_type(f.data_type())), "no date or timestamp type anywhere");
    let everything = serde_json::to_string(&rows).expect("json");
    let forbidden = [
        "MARK",            // names, phone, note text, alternative name, patient ids
        "Elm",             // note text
        "1961-07-23",      // full birth date
        "1962-01-05",      // full birth date in conflict
        "07-23",           // month-day of birth
        "94110",           // full postal code
        "10001",           // full postal code in conflict
        "2025-11-22",      // visit date, HLC dates
        "09:15",           // visit time
        &WALL.to_string(), // raw HLC wall clock
        "019a0000-",       // conflict event ids (UUIDv7 embeds a timestamp)
        "019a1111-",       // log entry ids
        "pt-",             // patient ids
    ];
    for marker in forbidden {
        assert!(!everything.contains(marker), "`{marker}` leaked into the de-identified part: {everything}");
    }
}

#[test]
fn dates_become_years_and_postal_codes_three_characters() {
    let (rows, _) = write_deid(KEY, 3);
    for row in &rows {
        assert_eq!(row["demographics_birth_date_year"], json!(1961));
        assert_eq!(row["encounter_last_visit_at_year"], json!(2025));
        assert_eq!(row["demographics_postal_code"], json!("941"));
        assert_eq!(row["updated_year"], json!(2025));
        assert_eq!(row["allergies"], json!(["rxnorm:7980"]));
        assert_eq!(
            row["version"],
            json!([{"source": "site-a-ehr", "year": 2025}, {"source": "site-b-ehr", "year": 2025}])
        );
        let conflicts = row["conflicts"].as_array().expect("list");
        let by_path: BTreeMap<&str, &Value> =
            conflicts.iter().map(|c| (c["path"].as_str().expect("path"), &c["value"])).collect();
        assert_eq!(by_path.len(), 3, "given_name's conflict is dropped with its column: {conflicts:?}");
        assert_eq!(by_path["demographics.birth_date"], &json!("1962"));
        assert_eq!(by_path["demographics.postal_code"], &json!("\"100\""));
        assert_eq!(by_path["vitals.heart_rate_bpm"], &json!("99"));
        assert!(conflicts.iter().all(|c| c["year"] == json!(2025) && c.get("event_id").is_none()));
    }
}

#[test]
fn pseudonyms_are_keyed_hmacs_stable_per_key_and_sorted() {
    let (a, _) = write_deid(KEY, 10);
    let (again, _) = write_deid(KEY, 10);
    let (other, _) = write_deid([0x17; 32], 10);
    let ids =
        |rows: &[Value]| rows.iter().map(|r| r["patient_id"].as_str().expect("id").to_owned()).collect::<Vec<_>>();
    let (ia, iagain, iother) = (ids(&a), ids(&again), ids(&other));
    assert_eq!(ia, iagain, "same key, same pseudonyms");
    assert!(ia.windows(2).all(|w| w[0] < w[1]), "parts are sorted by pseudonym");
    let mut expected: Vec<_> = (0..10).map(|i| hmac_hex(&KEY, &format!("pt-IDMARK-{i:03}"))).collect();
    expected.sort();
    assert_eq!(ia, expected, "HMAC-SHA256(dataset_key, patient_id), lowercase hex");
    assert!(iother.iter().all(|p| !ia.contains(p)), "another key gives unlinkable pseudonyms");
    assert_eq!(layout(KEY).patient_key("pt-IDMARK-000"), hmac_hex(&KEY, "pt-IDMARK-000"));
}

#[test]
fn kept_logs_lose_event_ids_but_keep_amendments_by_position() {
    // The builtin catalog drops its only log; a catalog with a non-PHI log
    // shows how kept logs are de-identified.
    let toml = tidemark_schemas::catalog::CATALOG_V1_TOML.replace(
        "path = \"notes\"\nkind = \"log\"\ntype = \"text\"\nphi = \"free_text\"",
        "path = \"notes\"\nkind = \"log\"\ntype = \"text\"\nphi = \"none\"",
    );
    let catalog = Catalog::from_toml(&toml).expect("catalog");
    let layout =
        Arc::new(TableLayout::new(&catalog, &Profile::Deidentified { dataset_key: KEY }, NOW_MS).expect("layout"));
    let (bytes, _) = write_part(&layout, &[marked_view(1)], PartOptions::default());
    let row = decode(&read_part(bytes)).remove(0);
    let notes = row["notes"].as_array().expect("notes kept");
    assert_eq!(notes[0]["amends_index"], Value::Null);
    assert_eq!(notes[1]["amends_index"], json!(0));
    assert_eq!(notes[1]["year"], json!(2025));
    assert!(notes.iter().all(|n| n.get("event_id").is_none() && n.get("wall_time").is_none()));
}

#[test]
fn birth_years_of_patients_over_89_are_aggregated() {
    let floor = 2026 - 90;
    assert_eq!(super::time::year_of_ms(i64::try_from(NOW_MS).expect("ms")), 2026, "the tests' clock");
    let layout = layout(KEY);
    let mut view = marked_view(0);
    let old = format!("{}-05-05", floor - 15);
    view.fields.insert(
        "demographics.birth_date".into(),
        register(json!(old), vec![conflict(json!(format!("{}-01-01", floor - 3)), "clin-9", 1)]),
    );
    let (bytes, _) = write_part(&layout, &[view], PartOptions::default());
    let row = decode(&read_part(bytes)).remove(0);
    assert_eq!(row["demographics_birth_date_year"], json!(floor), "{old} reads as {floor} (90 or older)");
    let conflicts = row["conflicts"].as_array().expect("list");
    let birth = conflicts.iter().find(|c| c["path"] == "demographics.birth_date").expect("birth conflict");
    assert_eq!(birth["value"], json!(floor.to_string()));
    // A younger patient's year is untouched (1961 in the marked views).
    assert_eq!(write_deid(KEY, 1).0[0]["demographics_birth_date_year"], json!(1961));
}
