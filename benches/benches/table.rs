//! Views -> Arrow -> Parquet throughput for 200k synthetic patients, in both
//! profiles, printed beside the bound measured in the same run: the parquet
//! crate encoding the already-built batches (our conversion can only add to
//! that), and serde_json writing the same views as NDJSON (what the state
//! topic carries) as a familiar peer figure.
#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::io;
use std::sync::Arc;

use arrow_array::RecordBatch;
use criterion::{Criterion, Throughput};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde_json::json;
use tidemark_archiver::table::{PartOptions, PartWriter, Profile, TableLayout, sort_views, to_batch};
use tidemark_benches::LAYOUT_NOW_MS;
use tidemark_benches::report::best;
use tidemark_schemas::{Catalog, ConflictView, FieldView, Hlc, LogEntryView, OpId, PatientView};
use uuid::Uuid;

const PATIENTS: usize = 200_000;

fn register(value: serde_json::Value, wall: u64, conflicts: Vec<ConflictView>) -> FieldView {
    FieldView::Register {
        value,
        author: "clin-42".into(),
        source: "site-a-ehr".into(),
        hlc: Hlc::new(wall, 0),
        conflicts,
    }
}

/// A realistic record: demographics, vitals, three sets, two notes, a
/// conflict on every twentieth patient.
fn view(i: usize) -> PatientView {
    let wall = 1_763_794_800_000 + i as u64 * 1000;
    let conflicts = if i.is_multiple_of(20) {
        let event_id = Uuid::from_u128(i as u128);
        vec![ConflictView {
            value: json!(71),
            author: "clin-7".into(),
            source: "site-b-ehr".into(),
            hlc: Hlc::new(wall - 1, 0),
            event_id,
        }]
    } else {
        vec![]
    };
    let note = |op: u32| LogEntryView {
        id: OpId { event_id: Uuid::from_u128(i as u128 + (1 << 64)), op },
        author: "clin-42".into(),
        source: "site-a-ehr".into(),
        hlc: Hlc::new(wall + u64::from(op), 0),
        text: format!("Seen in clinic, follow-up in {} weeks; BP controlled on current dose.", 2 + op),
        amends: None,
    };
    let fields = BTreeMap::from([
        ("demographics.given_name".into(), register(json!(format!("Given{}", i % 977)), wall, vec![])),
        ("demographics.family_name".into(), register(json!(format!("Family{}", i % 1613)), wall, vec![])),
        (
            "demographics.birth_date".into(),
            register(json!(format!("19{:02}-0{}-1{}", i % 100, 1 + i % 9, i % 10)), wall, vec![]),
        ),
        (
            "demographics.sex".into(),
            register(json!(if i.is_multiple_of(2) { "snomed:248152002" } else { "snomed:248153007" }), wall, vec![]),
        ),
        ("demographics.postal_code".into(), register(json!(format!("{:05}", i % 99_999)), wall, vec![])),
        ("encounter.last_visit_at".into(), register(json!("2025-11-22T09:15:00Z"), wall, vec![])),
        ("vitals.heart_rate_bpm".into(), register(json!(55 + i % 60), wall, conflicts)),
        ("vitals.systolic_bp_mmhg".into(), register(json!(100 + i % 60), wall, vec![])),
        ("vitals.temperature_c".into(), register(json!(36.6), wall, vec![])),
        ("allergies".into(), FieldView::Set { values: vec![format!("rxnorm:{}", 7000 + i % 50)] }),
        (
            "problems".into(),
            FieldView::Set { values: vec!["snomed:38341003".into(), format!("snomed:{}", 44_054_006 + i % 7)] },
        ),
        ("medications".into(), FieldView::Set { values: vec![format!("rxnorm:{}", 29_046 + i % 30)] }),
        ("notes".into(), FieldView::Log { entries: vec![note(0), note(1)] }),
    ]);
    PatientView {
        patient_id: format!("pt-{i:07}"),
        fields,
        version: BTreeMap::from([("site-a-ehr".into(), Hlc::new(wall + 1, 0))]),
        event_count: 14,
        updated_at: tidemark_schemas::format_utc_ms(wall + 1),
        open_conflicts: u32::from(i.is_multiple_of(20)),
    }
}

fn write_part(layout: &Arc<TableLayout>, views: &[PatientView]) -> u64 {
    let mut w = PartWriter::new(Arc::clone(layout), io::sink(), PartOptions::default()).expect("writer");
    w.push(views).expect("views fit");
    w.finish().expect("finish").1.bytes_written
}

/// The bound: the parquet crate alone encoding batches already built, with
/// the same compression and row-group size.
fn encode_only(batches: &[RecordBatch]) {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("level")))
        .set_max_row_group_row_count(Some(128 * 1024))
        .build();
    let mut w = ArrowWriter::try_new(io::sink(), batches[0].schema(), Some(props)).expect("writer");
    for b in batches {
        w.write(b).expect("write");
    }
    w.close().expect("close");
}

fn report(name: &str, views: &[PatientView], layout: &Arc<TableLayout>) {
    let rate = |secs: f64| PATIENTS as f64 / secs / 1e3;
    let batches: Vec<RecordBatch> = views.chunks(8192).map(|c| to_batch(layout, c).expect("batch")).collect();
    let convert = best(3, || {
        for c in views.chunks(8192) {
            black_box(to_batch(layout, c).expect("batch"));
        }
    });
    let bound = best(3, || encode_only(&batches));
    let mut bytes = 0;
    let total = best(3, || bytes = write_part(layout, views));
    println!(
        "{name:<13} convert {:>6.0} k rows/s | parquet encode only (bound) {:>6.0} k rows/s | convert+write {:>6.0} k rows/s, ratio to bound {:.2} | {:.1} B/row",
        rate(convert),
        rate(bound),
        rate(total),
        total / bound,
        bytes as f64 / PATIENTS as f64
    );
}

fn main() {
    let catalog = Catalog::builtin();
    let identified = Arc::new(TableLayout::new(catalog, &Profile::Identified, LAYOUT_NOW_MS).expect("layout"));
    let deidentified = Arc::new(
        TableLayout::new(catalog, &Profile::Deidentified { dataset_key: [7; 32] }, LAYOUT_NOW_MS).expect("layout"),
    );
    let mut views: Vec<PatientView> = (0..PATIENTS).map(view).collect();
    let ndjson = best(3, || {
        let mut out = io::sink();
        for v in &views {
            serde_json::to_writer(&mut out, v).expect("json");
        }
    });
    println!("peer: serde_json NDJSON of the same views {:>6.0} k rows/s", PATIENTS as f64 / ndjson / 1e3);
    report("identified", &views, &identified);
    let sort = best(1, || sort_views(&deidentified, &mut views));
    println!("sort_views (de-identified, {PATIENTS} pseudonyms) {:.0} ms", sort * 1e3);
    report("deidentified", &views, &deidentified);

    let mut c = Criterion::default().configure_from_args().sample_size(10);
    let mut g = c.benchmark_group("table_8192_views");
    g.throughput(Throughput::Elements(8192));
    g.bench_function("to_batch_identified", |b| b.iter(|| to_batch(&identified, &views[..8192]).expect("batch")));
    g.bench_function("to_batch_deidentified", |b| b.iter(|| to_batch(&deidentified, &views[..8192]).expect("batch")));
    g.finish();
    c.final_summary();
}
