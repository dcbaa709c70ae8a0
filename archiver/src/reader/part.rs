//! One part of a snapshot: downloaded and checked against its manifest
//! entry, then read page by page with the snapshot's data key.
//!
//! Key decision: no Parquet code parses a part before its size and SHA-256
//! are the signed manifest's, so a hostile file never reaches the Parquet
//! reader; what a mismatching file is, is said from its plaintext tail alone
//! (a bounded parser of our own, `tidemark_seal::pme_tail`).

use std::fs::File;
use std::io::{BufWriter, Read as _, Seek as _, SeekFrom, Write};
use std::path::Path;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::file::metadata::PageIndexPolicy;
use parquet::file::reader::ChunkReader;
use sha2::{Digest as _, Sha256};

use super::{PartProblem, ReadError, output_error};
use crate::manifest::{Manifest, PartEntry};
use crate::pme::{self, ReadKeys};
use crate::storage::Archive;
use crate::table::{PartOptions, writer_properties};

/// How far past the manifest's size a part is still downloaded to say what
/// it is (a valid part of another snapshot is rarely the same size).
/// Anything longer is not downloaded further.
const DIAGNOSIS_SLACK_BYTES: u64 = 16 * 1024 * 1024;

/// The most of a part's end read to diagnose it: its crypto metadata and a
/// footer of a few thousand columns.
const MAX_TAIL_BYTES: u64 = 1 << 20;

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

pub(super) fn spool_error(source: std::io::Error) -> ReadError {
    ReadError::Output { path: "the temporary spool file".into(), source }
}

fn part_error(entry: &PartEntry) -> impl Fn(PartProblem) -> ReadError + '_ {
    move |problem| ReadError::Part { part: entry.name.clone(), problem }
}

/// The last bytes of `file` (at most [`MAX_TAIL_BYTES`]): where its crypto
/// metadata is.
fn read_tail(mut file: &File) -> Result<Vec<u8>, ReadError> {
    let len = file.seek(SeekFrom::End(0)).map_err(spool_error)?;
    let take = len.min(MAX_TAIL_BYTES);
    file.seek(SeekFrom::Start(len - take)).map_err(spool_error)?;
    let mut tail = Vec::with_capacity(usize::try_from(take).unwrap_or(0));
    file.take(take).read_to_end(&mut tail).map_err(spool_error)?;
    Ok(tail)
}

/// Downloads one part into `spool` (an empty private temporary file),
/// hashing as it goes, and checks its size and SHA-256 against the manifest,
/// then its plaintext tail. Memory holds one network chunk, never the part.
pub(super) async fn fetch_part(
    archive: &Archive,
    at: (&str, &str),
    manifest: &Manifest,
    entry: &PartEntry,
    spool: &File,
) -> Result<(), ReadError> {
    let fail = part_error(entry);
    let limit = entry.bytes.saturating_add(DIAGNOSIS_SLACK_BYTES);
    let mut sink = Hashing { inner: BufWriter::new(spool), hash: Sha256::new() };
    let (copied, longer) = archive.copy_to(at.0, at.1, &entry.name, limit, &mut sink).await?;
    sink.flush().map_err(spool_error)?;
    let digest = hex::encode(sink.hash.finalize());
    if !longer && copied == entry.bytes && digest == entry.sha256 {
        let tail = read_tail(spool)?;
        return pme::check_part_tail(&tail, entry, &manifest.encryption).map_err(|e| fail(PartProblem::Tail(e)));
    }
    Err(fail(PartProblem::HashMismatch { diagnosis: diagnose(manifest, entry, spool, copied, longer, limit)? }))
}

/// What a part whose hash does not match is, from its unauthenticated tail
/// alone: its size, and whose `aad_file_unique` it carries.
fn diagnose(
    manifest: &Manifest,
    entry: &PartEntry,
    spool: &File,
    copied: u64,
    longer: bool,
    limit: u64,
) -> Result<String, ReadError> {
    if longer {
        return Ok(format!(
            "it holds more than {limit} bytes where the manifest says {} (not downloaded further)",
            entry.bytes
        ));
    }
    let size = format!("{copied} bytes where the manifest says {}", entry.bytes);
    Ok(match pme::check_tail(&read_tail(spool)?) {
        Err(e) => format!("{size}; {e}"),
        Ok((_, unique)) if unique == entry.aad_file_unique => format!("{size}; it is this part's file, altered"),
        Ok((_, unique)) => match manifest.parts.iter().find(|p| p.aad_file_unique == unique) {
            Some(other) => format!("{size}; it is part {}, swapped in", other.name),
            None => format!("{size}; it is an encrypted Parquet file of another snapshot, swapped in"),
        },
    })
}

/// Reads a part whose hash matched (or, in tests, any bytes) with the
/// snapshot's data key: every page and page index decrypted and
/// authenticated, the schema,
/// row groups and row count checked against the manifest, each batch handed
/// to `sink`.
///
/// # Errors
/// [`ReadError::Part`] naming what failed.
pub fn read_part<R: ChunkReader + 'static>(
    manifest: &Manifest,
    entry: &PartEntry,
    file: R,
    keys: &ReadKeys,
    sink: &mut impl BatchSink,
) -> Result<(), ReadError> {
    let fail = part_error(entry);
    let decrypt = |e: parquet::errors::ParquetError| fail(PartProblem::Decrypt(e.to_string()));
    // The page indexes too: they are encrypted modules other readers use for
    // pruning, so verification decrypts them like every page.
    let options = ArrowReaderOptions::new()
        .with_file_decryption_properties(keys.decryption())
        .with_page_index_policy(PageIndexPolicy::Required);
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options).map_err(decrypt)?;
    let meta = builder.metadata().clone();
    if pme::schema_fingerprint(meta.file_metadata().schema_descr()) != manifest.schema_sha256 {
        return Err(fail(PartProblem::Shape("its schema is not the one the manifest records".into())));
    }
    let (rows, groups) = (meta.file_metadata().num_rows(), meta.num_row_groups());
    if u64::try_from(rows).ok() != Some(entry.rows) || groups as u64 != entry.row_groups {
        return Err(fail(PartProblem::Shape(format!(
            "it holds {rows} rows in {groups} row groups where the manifest says {} in {}",
            entry.rows, entry.row_groups
        ))));
    }
    sink.start(builder.schema())?;
    let mut read = 0u64;
    for batch in builder.build().map_err(decrypt)? {
        let batch = batch.map_err(|e| fail(PartProblem::Decrypt(e.to_string())))?;
        read += batch.num_rows() as u64;
        sink.batch(&batch)?;
    }
    if read != entry.rows {
        return Err(fail(PartProblem::Shape(format!("{read} rows read where the manifest says {}", entry.rows))));
    }
    Ok(())
}

/// Where [`read_part`] puts what it reads.
pub trait BatchSink {
    /// The part's schema, before any batch.
    ///
    /// # Errors
    /// The sink's own, as a [`ReadError`].
    fn start(&mut self, schema: &SchemaRef) -> Result<(), ReadError>;
    /// One decrypted batch.
    ///
    /// # Errors
    /// The sink's own, as a [`ReadError`].
    fn batch(&mut self, batch: &RecordBatch) -> Result<(), ReadError>;
}

/// Reads and drops the rows, keeping the schema: verification.
pub struct Discard {
    /// The schema of the last part read.
    pub schema: Option<SchemaRef>,
}

impl BatchSink for Discard {
    fn start(&mut self, schema: &SchemaRef) -> Result<(), ReadError> {
        self.schema = Some(schema.clone());
        Ok(())
    }
    fn batch(&mut self, _: &RecordBatch) -> Result<(), ReadError> {
        Ok(())
    }
}

/// Writes plain Parquet with the archiver's own writer properties (zstd,
/// statistics, sort order, metadata), without encryption.
struct PlainWriter<'a> {
    path: &'a Path,
    file: Option<File>,
    writer: Option<ArrowWriter<BufWriter<File>>>,
}

impl PlainWriter<'_> {
    fn error(&self, e: impl std::error::Error + Send + Sync + 'static) -> ReadError {
        ReadError::Output { path: self.path.display().to_string(), source: std::io::Error::other(e) }
    }

    /// Finishes the file and syncs it to disk.
    fn finish(mut self) -> Result<(), ReadError> {
        let writer = self.writer.take().expect("started before finishing");
        let sink = writer.into_inner().map_err(|e| self.error(e))?;
        let file = sink.into_inner().map_err(|e| output_error(self.path)(e.into_error()))?;
        file.sync_all().map_err(output_error(self.path))
    }
}

impl BatchSink for PlainWriter<'_> {
    fn start(&mut self, schema: &SchemaRef) -> Result<(), ReadError> {
        let props = writer_properties(schema, &PartOptions::default()).map_err(|e| self.error(e))?;
        let sink = BufWriter::new(self.file.take().expect("started once"));
        self.writer = Some(ArrowWriter::try_new(sink, schema.clone(), Some(props)).map_err(|e| self.error(e))?);
        Ok(())
    }
    fn batch(&mut self, batch: &RecordBatch) -> Result<(), ReadError> {
        let result = self.writer.as_mut().expect("started before any batch").write(batch);
        result.map_err(|e| self.error(e))
    }
}

/// Reads one verified part from `spool` and writes it to `file` as plain
/// Parquet.
pub(super) fn write_plain(
    manifest: &Manifest,
    entry: &PartEntry,
    spool: File,
    keys: &ReadKeys,
    file: File,
    path: &Path,
) -> Result<(), ReadError> {
    let mut plain = PlainWriter { path, file: Some(file), writer: None };
    read_part(manifest, entry, spool, keys, &mut plain)?;
    plain.finish()
}
