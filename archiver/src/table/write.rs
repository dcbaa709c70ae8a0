//! One Parquet part: views in, zstd-compressed row groups out, memory bounded
//! by one row group.
//!
//! Key decision: the writer checks that rows arrive strictly ascending by the
//! `patient_id` column (the id, or the pseudonym when de-identified) instead
//! of trusting the caller. Parts are declared sorted in their footer and
//! readers prune row groups by min/max statistics; an unsorted part, or one
//! with a patient twice, would silently give wrong answers to point lookups.

use std::io::{self, Write};
use std::sync::Arc;

use arrow_array::{Array, RecordBatch, StringArray};
use arrow_schema::Schema;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::encryption::encrypt::FileEncryptionProperties;
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use tidemark_schemas::{FieldView, PatientView};

use super::build::to_batch;
use super::error::TableError;
use super::schema::TableLayout;

/// Tuning of a part. The defaults suit analytics: row groups of up to 128 Ki
/// rows or 128 MiB, so a reader gets large sequential column chunks and a
/// writer holds at most one row group in memory.
#[derive(Clone, Debug)]
pub struct PartOptions {
    /// Rows per row group, at most.
    pub max_row_group_rows: usize,
    /// Encoded bytes per row group, at most (estimated while writing).
    pub max_row_group_bytes: usize,
    /// Views converted to one Arrow batch at a time.
    pub batch_rows: usize,
    /// Estimated bytes of one Arrow batch, at most; keeps a run of patients
    /// with long notes from building a huge batch (and its i32 offsets far
    /// from overflow).
    pub max_batch_bytes: usize,
    /// zstd level, 1-22; 3 is zstd's own default speed/ratio balance.
    pub zstd_level: i32,
    /// Write each column chunk as one data page (after its dictionary page),
    /// never falling back from the dictionary mid-chunk. DuckDB (2.0) cannot
    /// read an encrypted column chunk of more than one data page, so the
    /// snapshot's parts are written this way; the cost is page-level pruning
    /// inside a row group (docs/benchmarks.md measures it).
    pub one_page_per_chunk: bool,
    /// Parquet Modular Encryption of the whole file (footer and every
    /// column), or `None` for plain Parquet. `Debug` never shows its key.
    pub encryption: Option<Arc<FileEncryptionProperties>>,
}

impl Default for PartOptions {
    fn default() -> Self {
        Self {
            max_row_group_rows: 128 * 1024,
            max_row_group_bytes: 128 << 20,
            batch_rows: 8 * 1024,
            max_batch_bytes: 64 << 20,
            zstd_level: 3,
            one_page_per_chunk: false,
            encryption: None,
        }
    }
}

/// What a finished part holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartSummary {
    /// Rows (patients) written.
    pub rows: u64,
    /// Bytes of the Parquet file, footer included.
    pub bytes_written: u64,
    /// Row groups in the file.
    pub row_groups: usize,
}

/// Writes one Parquet part of a [`TableLayout`] to `W`.
pub struct PartWriter<W: Write + Send> {
    layout: Arc<TableLayout>,
    writer: ArrowWriter<CountingWriter<W>>,
    options: PartOptions,
    rows: u64,
    last_key: Option<String>,
}

/// The Parquet writer properties of a part of `schema`: zstd at
/// `options.zstd_level`, the row-group limits, page statistics, the patient
/// key as the sorting column, the schema's metadata as key-value metadata,
/// and the options' page layout and encryption.
/// Public so the benchmarks' bound writes with exactly these.
///
/// # Errors
/// [`TableError::BadOptions`] for an invalid zstd level.
pub fn writer_properties(schema: &Schema, options: &PartOptions) -> Result<WriterProperties, TableError> {
    let zstd = ZstdLevel::try_new(options.zstd_level).map_err(|_| TableError::BadOptions("zstd_level"))?;
    let mut kv: Vec<KeyValue> = schema.metadata().iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())).collect();
    kv.sort_by(|a, b| a.key.cmp(&b.key));
    let mut builder = WriterProperties::builder();
    if options.one_page_per_chunk {
        // The row group's limits bound the chunk; no page or dictionary limit
        // below them may cut it.
        builder = builder
            .set_data_page_size_limit(usize::MAX)
            .set_data_page_row_count_limit(usize::MAX)
            .set_dictionary_page_size_limit(usize::MAX);
    }
    if let Some(encryption) = &options.encryption {
        builder = builder.with_file_encryption_properties(Arc::clone(encryption));
    }
    // No bloom filters (the default): arrow-rs writes them unencrypted, and a
    // filter on a patient column would leak membership from an encrypted file.
    Ok(builder
        .set_compression(Compression::ZSTD(zstd))
        .set_max_row_group_row_count(Some(options.max_row_group_rows))
        .set_max_row_group_bytes(Some(options.max_row_group_bytes))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_sorting_columns(Some(vec![SortingColumn { column_idx: 0, descending: false, nulls_first: false }]))
        .set_key_value_metadata(Some(kv))
        .set_created_by(format!("tidemark-archiver {}", env!("CARGO_PKG_VERSION")))
        .build())
}

impl<W: Write + Send> PartWriter<W> {
    /// Starts a part on `sink`: zstd, page statistics, `patient_id` declared
    /// as the sort column, the schema metadata also as Parquet key-value
    /// metadata (for readers that ignore the embedded Arrow schema).
    ///
    /// # Errors
    /// [`TableError::BadOptions`] for a zero limit or an invalid zstd level;
    /// [`TableError::Parquet`] if the header cannot be written to `sink`.
    pub fn new(layout: Arc<TableLayout>, sink: W, options: PartOptions) -> Result<Self, TableError> {
        let positive = [
            ("max_row_group_rows", options.max_row_group_rows),
            ("max_row_group_bytes", options.max_row_group_bytes),
            ("batch_rows", options.batch_rows),
            ("max_batch_bytes", options.max_batch_bytes),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(TableError::BadOptions(name));
        }
        let schema = layout.schema();
        let props = writer_properties(&schema, &options)?;
        let writer = ArrowWriter::try_new(CountingWriter { inner: sink, bytes: 0 }, schema, Some(props))?;
        Ok(Self { layout, writer, options, rows: 0, last_key: None })
    }

    /// Converts and writes `views`, which must continue the part's strictly
    /// ascending key order (see [`sort_views`]).
    ///
    /// # Errors
    /// [`TableError::BadView`]: every view before `row` has been written and
    /// none after; set `views[row]` aside and push `views[row + 1..]`.
    /// [`TableError::Unsorted`]: abandon the part. [`TableError::Parquet`]:
    /// the sink failed; abandon the part and retry it from the start.
    pub fn push(&mut self, views: &[PatientView]) -> Result<(), TableError> {
        let mut start = 0;
        while start < views.len() {
            let end = chunk_end(views, start, &self.options);
            match to_batch(&self.layout, &views[start..end]) {
                Ok(batch) => self.write_sorted(&batch, start)?,
                Err(TableError::BadView { row, problem }) => {
                    // Keep the promise that everything before the bad view is written.
                    let good = to_batch(&self.layout, &views[start..start + row])?;
                    self.write_sorted(&good, start)?;
                    return Err(TableError::BadView { row: start + row, problem });
                }
                Err(other) => return Err(other),
            }
            start = end;
        }
        Ok(())
    }

    /// Flushes the last row group and writes the footer.
    ///
    /// # Errors
    /// [`TableError::Parquet`] when the sink fails.
    pub fn finish(mut self) -> Result<(W, PartSummary), TableError> {
        self.writer.flush()?;
        let row_groups = self.writer.flushed_row_groups().len();
        let counting = self.writer.into_inner()?;
        let summary = PartSummary { rows: self.rows, bytes_written: counting.bytes, row_groups };
        Ok((counting.inner, summary))
    }

    /// Rows pushed so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    fn write_sorted(&mut self, batch: &RecordBatch, first_row: usize) -> Result<(), TableError> {
        let keys = batch.column(0).as_any().downcast_ref::<StringArray>().ok_or_else(|| {
            TableError::Arrow(arrow_schema::ArrowError::SchemaError("patient_id is not a Utf8 column".into()))
        })?;
        let key_name = if self.layout.is_deidentified() { "pseudonym" } else { "patient_id" };
        let mut prev = self.last_key.as_deref();
        for (i, key) in keys.iter().enumerate() {
            let key = key.unwrap_or_default();
            if prev.is_some_and(|p| p >= key) {
                return Err(TableError::Unsorted { row: first_row + i, key: key_name });
            }
            prev = Some(key);
        }
        if let Some(last) = prev {
            self.last_key = Some(last.to_owned());
        }
        self.writer.write(batch)?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }
}

/// Sorts views into the order of their part's `patient_id` column: by id
/// when identified; by pseudonym when de-identified (so the order leaks
/// nothing about the ids), computing each pseudonym once.
pub fn sort_views(layout: &TableLayout, views: &mut [PatientView]) {
    if layout.is_deidentified() {
        views.sort_by_cached_key(|v| layout.patient_key(&v.patient_id).into_owned());
    } else {
        views.sort_by(|a, b| a.patient_id.cmp(&b.patient_id));
    }
}

/// End of the next batch: at most `batch_rows` views and about
/// `max_batch_bytes`, and at least one view.
fn chunk_end(views: &[PatientView], start: usize, options: &PartOptions) -> usize {
    let mut bytes = 0;
    let limit = views.len().min(start.saturating_add(options.batch_rows));
    for (i, view) in views.iter().enumerate().take(limit).skip(start) {
        bytes += estimated_bytes(view);
        if bytes > options.max_batch_bytes && i > start {
            return i;
        }
    }
    limit
}

/// A rough upper estimate of a view's bytes in Arrow: its variable-length
/// content (log texts, set elements) plus a fixed allowance per value;
/// register values are bounded by the catalog's `max_string_bytes`.
fn estimated_bytes(view: &PatientView) -> usize {
    let fields: usize = view
        .fields
        .values()
        .map(|f| match f {
            FieldView::Register { conflicts, .. } => 320 * (1 + conflicts.len()),
            FieldView::Set { values } => values.iter().map(|s| s.len() + 8).sum(),
            FieldView::Log { entries } => entries.iter().map(|e| e.text.len() + 160).sum(),
        })
        .sum();
    fields + 64 * view.version.len() + 256
}

/// Counts the bytes that reach the sink: the part's size for the manifest.
struct CountingWriter<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
