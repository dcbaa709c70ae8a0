//! The bound of writing a part: arrow-rs's `ArrowWriter` encoding record
//! batches that are already built, with the writer properties the
//! archiver's `PartWriter` uses and no encryption.
//!
//! Key decision: the properties come from the archiver's own
//! `writer_properties`, so the bound differs from `PartWriter` only in what
//! `PartWriter` adds (building the batches, the sort-order check); the bench
//! also prints both file sizes, which match.

use std::io::Write;

use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use tidemark_archiver::table::{PartOptions, writer_properties};

/// `PartWriter`'s properties for `batches`' schema and `options`.
///
/// # Panics
/// If `options.zstd_level` is not a valid zstd level or `batches` is empty.
pub fn properties(batches: &[RecordBatch], options: &PartOptions) -> WriterProperties {
    let schema = batches.first().expect("at least one batch").schema();
    writer_properties(&schema, options).expect("PartOptions holds a valid zstd level")
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
