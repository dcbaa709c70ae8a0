//! Test helpers: generated views, writing and reading parts, and decoding
//! every cell of a batch to JSON so tests compare values, not bytes.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Float64Type, Int32Type, Int64Type, TimestampMillisecondType, UInt32Type, UInt64Type,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value, json};
use tidemark_schemas::{
    Catalog, ConflictView, FieldKind, FieldView, Hlc, LogEntryView, OpId, PatientView, ValueType, format_utc_ms,
};
use uuid::Uuid;

/// The clock every table test lays out at: 2026-06-01T00:00:00Z, so the
/// over-89 birth-year floor is 1936 whatever year the tests run in.
pub const NOW_MS: u64 = 1_780_272_000_000;

use super::{PartOptions, PartSummary, PartWriter, TableLayout};

/// A small deterministic generator (SplitMix64): views from a seed, so a
/// proptest case is one `u64` and a failure reproduces exactly.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn hlc(&mut self) -> Hlc {
        // Up to 2100, the range `format_utc_ms` (the expected side) covers.
        Hlc::new(self.below(4_107_542_400_000), self.below(4) as u32)
    }

    fn word(&mut self, prefix: &str) -> String {
        format!("{prefix}-{}", self.below(1000))
    }
}

/// A value of the catalog type, or null (a `clear`) now and then.
fn random_value(rng: &mut Rng, ty: ValueType) -> Value {
    if rng.chance(10) {
        return Value::Null;
    }
    match ty {
        ValueType::Int => json!(rng.below(300) as i64 - 20),
        ValueType::Decimal => json!((rng.below(10_000) as f64) / 100.0),
        ValueType::Bool => json!(rng.chance(50)),
        ValueType::Date => {
            json!(format!("{:04}-{:02}-{:02}", 1900 + rng.below(126), 1 + rng.below(12), 1 + rng.below(28)))
        }
        ValueType::Datetime => json!(format_utc_ms(rng.below(4_107_542_400_000))),
        ValueType::Code => json!(format!("snomed:{}", rng.below(100_000))),
        ValueType::String | ValueType::Text => json!(rng.word("s\u{e9}")),
    }
}

fn random_field(rng: &mut Rng, kind: FieldKind, ty: ValueType) -> FieldView {
    match kind {
        FieldKind::Register => {
            let conflicts = (0..rng.below(3))
                .map(|_| ConflictView {
                    value: random_value(rng, ty),
                    author: rng.word("clin"),
                    source: rng.word("site"),
                    hlc: rng.hlc(),
                    event_id: Uuid::from_u128(u128::from(rng.next_u64())),
                })
                .collect();
            let value = random_value(rng, ty);
            FieldView::Register { value, author: rng.word("clin"), source: rng.word("site"), hlc: rng.hlc(), conflicts }
        }
        FieldKind::Set => {
            let mut values: Vec<String> = (0..rng.below(4)).map(|_| format!("rxnorm:{}", rng.below(50))).collect();
            values.sort();
            values.dedup();
            FieldView::Set { values }
        }
        FieldKind::Log => {
            let mut entries: Vec<LogEntryView> = Vec::new();
            for i in 0..rng.below(4) {
                let amends = (i > 0 && rng.chance(40)).then(|| entries[rng.below(i) as usize].id);
                let id = OpId { event_id: Uuid::from_u128(u128::from(rng.next_u64()) << 64), op: i as u32 };
                let text = format!("note {} \u{1F489}", rng.below(1000));
                entries.push(LogEntryView {
                    id,
                    author: rng.word("clin"),
                    source: rng.word("site"),
                    hlc: rng.hlc(),
                    text,
                    amends,
                });
            }
            FieldView::Log { entries }
        }
    }
}

/// A view with a random subset of the catalog's fields, patient `pt-{id:06}`.
pub(crate) fn random_view(catalog: &Catalog, seed: u64, id: usize) -> PatientView {
    let mut rng = Rng::new(seed ^ (id as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut fields = BTreeMap::new();
    for spec in catalog.fields() {
        if rng.chance(70) {
            fields.insert(spec.path.clone(), random_field(&mut rng, spec.kind, spec.value_type));
        }
    }
    let version = (0..1 + rng.below(3)).map(|_| (rng.word("site"), rng.hlc())).collect();
    PatientView {
        patient_id: format!("pt-{id:06}"),
        fields,
        version,
        event_count: rng.below(1000),
        updated_at: format_utc_ms(rng.below(4_107_542_400_000)),
        open_conflicts: rng.below(5) as u32,
    }
}

/// Writes `views` (already in order) as one part.
pub(crate) fn write_part(
    layout: &Arc<TableLayout>,
    views: &[PatientView],
    options: PartOptions,
) -> (Vec<u8>, PartSummary) {
    let mut w = PartWriter::new(Arc::clone(layout), Vec::new(), options).expect("writer starts");
    w.push(views).expect("views fit the catalog");
    w.finish().expect("part finishes")
}

/// Reads a part back with the parquet crate's Arrow reader.
pub(crate) fn read_part(bytes: Vec<u8>) -> Vec<RecordBatch> {
    let reader =
        ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes)).expect("valid parquet").build().expect("reader");
    reader.collect::<Result<Vec<_>, _>>().expect("batches decode")
}

/// Every row of every batch as column name -> JSON value.
pub(crate) fn decode(batches: &[RecordBatch]) -> Vec<BTreeMap<String, Value>> {
    let mut rows = Vec::new();
    for batch in batches {
        for i in 0..batch.num_rows() {
            let row = batch
                .schema()
                .fields()
                .iter()
                .zip(batch.columns())
                .map(|(f, col)| (f.name().clone(), cell(col.as_ref(), i)))
                .collect();
            rows.push(row);
        }
    }
    rows
}

/// One cell as JSON: dates and timestamps rendered by arrow's own
/// conversions (not ours), so the round trip checks our arithmetic too.
pub(crate) fn cell(array: &dyn Array, i: usize) -> Value {
    if array.is_null(i) {
        return Value::Null;
    }
    match array.data_type() {
        DataType::Utf8 => json!(array.as_string::<i32>().value(i)),
        DataType::Boolean => json!(array.as_boolean().value(i)),
        DataType::Int32 => json!(array.as_primitive::<Int32Type>().value(i)),
        DataType::Int64 => json!(array.as_primitive::<Int64Type>().value(i)),
        DataType::UInt32 => json!(array.as_primitive::<UInt32Type>().value(i)),
        DataType::UInt64 => json!(array.as_primitive::<UInt64Type>().value(i)),
        DataType::Float64 => json!(array.as_primitive::<Float64Type>().value(i)),
        DataType::Date32 => json!(array.as_primitive::<Date32Type>().value_as_date(i).expect("in range").to_string()),
        DataType::Timestamp(_, _) => {
            let t = array.as_primitive::<TimestampMillisecondType>().value_as_datetime(i).expect("in range");
            json!(t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        }
        DataType::List(_) => {
            let items = array.as_list::<i32>().value(i);
            Value::Array((0..items.len()).map(|j| cell(items.as_ref(), j)).collect())
        }
        DataType::Struct(fields) => {
            let s = array.as_struct();
            Value::Object(
                fields.iter().zip(s.columns()).map(|(f, c)| (f.name().clone(), cell(c.as_ref(), i))).collect(),
            )
        }
        other => panic!("test decoder lacks type {other}"),
    }
}

fn clock(hlc: Hlc) -> [(String, Value); 2] {
    [("wall_time".into(), json!(format_utc_ms(hlc.wall_ms))), ("logical".into(), json!(hlc.logical))]
}

/// What the identified profile must hold for `view`, written from
/// `docs/snapshot-schema.md`, independently of the builder.
pub(crate) fn expected_identified(catalog: &Catalog, view: &PatientView) -> BTreeMap<String, Value> {
    let mut row = BTreeMap::from([("patient_id".to_owned(), json!(view.patient_id))]);
    let mut conflicts = Vec::new();
    for spec in catalog.fields() {
        let cell = match view.fields.get(&spec.path) {
            None => Value::Null,
            Some(FieldView::Register { value, conflicts: cs, .. }) => {
                for c in cs {
                    let mut o = serde_json::Map::from_iter([
                        ("path".to_owned(), json!(spec.path)),
                        ("value".to_owned(), json!(c.value.to_string())),
                        ("author".to_owned(), json!(c.author)),
                        ("source".to_owned(), json!(c.source)),
                        ("event_id".to_owned(), json!(c.event_id.to_string())),
                    ]);
                    o.extend(clock(c.hlc));
                    conflicts.push(Value::Object(o));
                }
                match (spec.value_type, value) {
                    (_, Value::Null) => Value::Null,
                    (ValueType::Decimal, v) => json!(v.as_f64().expect("number")),
                    (_, v) => v.clone(),
                }
            }
            Some(FieldView::Set { values }) => json!(values),
            Some(FieldView::Log { entries }) => entries
                .iter()
                .map(|e| {
                    let mut o = serde_json::Map::from_iter([
                        ("event_id".to_owned(), json!(e.id.event_id.to_string())),
                        ("op".to_owned(), json!(e.id.op)),
                        ("author".to_owned(), json!(e.author)),
                        ("source".to_owned(), json!(e.source)),
                        ("text".to_owned(), json!(e.text)),
                        ("amends_event_id".to_owned(), json!(e.amends.map(|a| a.event_id.to_string()))),
                        ("amends_op".to_owned(), json!(e.amends.map(|a| a.op))),
                    ]);
                    o.extend(clock(e.hlc));
                    Value::Object(o)
                })
                .collect(),
        };
        row.insert(spec.path.replace('.', "_"), cell);
    }
    let version: Vec<Value> = view
        .version
        .iter()
        .map(|(s, h)| {
            let mut o = serde_json::Map::from_iter([("source".to_owned(), json!(s))]);
            o.extend(clock(*h));
            Value::Object(o)
        })
        .collect();
    row.extend([
        ("conflicts".to_owned(), Value::Array(conflicts)),
        ("version".to_owned(), Value::Array(version)),
        ("event_count".to_owned(), json!(view.event_count)),
        ("updated_at".to_owned(), json!(view.updated_at)),
        ("open_conflicts".to_owned(), json!(view.open_conflicts)),
    ]);
    row
}
