//! The bound of writing a part: arrow-rs's `ArrowWriter` encoding record
//! batches that are already built, with the writer properties the
//! archiver's `PartWriter` uses and no encryption.
//!
//! Key decision: the properties are restated here from
//! `archiver/src/table/write.rs` (zstd level, row-group limits, page
//! statistics, the sorting column, key-value metadata) rather than read
//! from the archiver, which does not expose them; the bench compares the
//! file sizes of both writers, so a drift between the two shows up as a
//! size difference in the table.

use std::io::Write;

use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use tidemark_archiver::table::PartOptions;

/// `PartWriter`'s properties for `batches`' schema and `options`.
///
/// # Panics
/// If `options.zstd_level` is not a valid zstd level or `batches` is empty.
pub fn properties(batches: &[RecordBatch], options: &PartOptions) -> WriterProperties {
    let schema = batches.first().expect("at least one batch").schema();
    let mut kv: Vec<KeyValue> = schema.metadata().iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())).collect();
    kv.sort_by(|a, b| a.key.cmp(&b.key));
    let zstd = ZstdLevel::try_new(options.zstd_level).expect("PartOptions holds a valid zstd level");
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(zstd))
        .set_max_row_group_row_count(Some(options.max_row_group_rows))
        .set_max_row_group_bytes(Some(options.max_row_group_bytes))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_sorting_columns(Some(vec![SortingColumn { column_idx: 0, descending: false, nulls_first: false }]))
        .set_key_value_metadata(Some(kv))
        .set_created_by("tidemark-benches parquet bound".into())
        .build()
}

/// Writes `batches` as one Parquet file to `sink` with `props`; returns the
/// sink.
///
/// # Panics
/// If `batches` is empty or the writer fails (an in-memory sink does not).
pub fn write<W: Write + Send>(batches: &[RecordBatch], props: WriterProperties, sink: W) -> W {
    let schema = batches.first().expect("at least one batch").schema();
    let mut w = ArrowWriter::try_new(sink, schema, Some(props)).expect("the writer accepts the schema");
    for b in batches {
        w.write(b).expect("writing to memory succeeds");
    }
    w.into_inner().expect("closing a file in memory succeeds")
}
