//! Encrypted scratch runs: sorted (key, value) records spilled to a local
//! file, read back merged in key order from any key on.
//!
//! Key decision: the de-identified profile's parts are cut across all
//! partitions in pseudonym order (see [`crate::deid_cut`]), so its views must
//! outlive the read of their partition, and memory cannot hold the topic.
//! Each partition's views therefore go to disk as one sorted run. They are
//! patient records, so every segment of a run (about
//! [`SEGMENT_BYTES`] of records) is sealed with the STREAM layer of
//! [`tidemark_seal`] (AES-256-GCM) under a fresh random key that lives only
//! in this process's memory, and the file is unnamed (unlinked when created):
//! what reaches the disk cannot be read back once the process is gone, and a
//! crash leaves nothing to clean up. A key per segment keeps every
//! (key, nonce) pair unique without coordinating counters, and lets a reader
//! start at any segment: [`Run::cursor`] seeks by each segment's first key,
//! so independent readers can each merge one range of the key space.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::BufWriter;
use std::os::unix::fs::FileExt as _;

use ring::rand::{SecureRandom as _, SystemRandom};
use tidemark_seal::StreamError;
use tidemark_seal::stream::{self, KEY_LEN};
use zeroize::Zeroizing;

/// Records per sealed segment, in bytes, about (a segment ends after the
/// record that reaches it). Small enough that a reader holding one segment
/// per run stays small with hundreds of runs; large enough that the per
/// segment cost (a key, a seek, a GCM setup) is noise.
pub const SEGMENT_BYTES: usize = 256 * 1024;

/// STREAM chunk size inside a segment: each seal allocates one chunk, so it
/// is kept well below the 1 MiB of snapshot parts.
const CHUNK_BYTES: usize = 64 * 1024;

/// Associated data of every scratch segment: nothing else is sealed under
/// these keys, it only labels what they are for.
const AAD: &[u8] = b"tidemark scratch run segment v1";

/// Why a scratch run could not be written or read back.
#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    /// The local disk failed (full, most likely): free space under `$TMPDIR`.
    #[error("scratch file ({what}) under $TMPDIR: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Sealing or opening a segment failed; opening fails only if the file
    /// was altered on disk while the snapshot ran.
    #[error("scratch segment {segment}: {source}")]
    Seal {
        /// The segment's index in its run.
        segment: usize,
        /// The cause.
        #[source]
        source: StreamError,
    },
    /// The OS random source failed.
    #[error("the OS random source failed while keying a scratch segment")]
    Random,
    /// Records were pushed out of order: a caller bug.
    #[error("scratch records must be pushed in strictly ascending key order (record {record} was not)")]
    Unsorted {
        /// The record's position in its run.
        record: u64,
    },
    /// A segment authenticated but its records do not parse: a bug.
    #[error("scratch segment {segment} holds a malformed record")]
    Malformed {
        /// The segment's index in its run.
        segment: usize,
    },
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> ScratchError {
    move |source| ScratchError::Io { what, source }
}

/// Where a sealed segment is and how to open it.
struct Segment {
    offset: u64,
    len: usize,
    first_key: Vec<u8>,
    key: Zeroizing<[u8; KEY_LEN]>,
}

/// Writes one run: records in strictly ascending key order.
pub struct RunWriter {
    file: BufWriter<File>,
    segments: Vec<Segment>,
    plain: Zeroizing<Vec<u8>>,
    first_key: Vec<u8>,
    last_key: Vec<u8>,
    written: u64,
    rows: u64,
    segment_bytes: usize,
    rng: SystemRandom,
}

impl RunWriter {
    /// Starts a run in an unnamed file under `$TMPDIR`.
    ///
    /// # Errors
    /// [`ScratchError::Io`] if the file cannot be created.
    pub fn new() -> Result<Self, ScratchError> {
        Self::with_segment_bytes(SEGMENT_BYTES)
    }

    /// As [`RunWriter::new`] with another segment size (tests use tiny ones).
    ///
    /// # Errors
    /// [`ScratchError::Io`] if the file cannot be created.
    pub fn with_segment_bytes(segment_bytes: usize) -> Result<Self, ScratchError> {
        let file = tempfile::tempfile().map_err(io("creating"))?;
        Ok(Self {
            file: BufWriter::new(file),
            segments: Vec::new(),
            plain: Zeroizing::new(Vec::with_capacity(segment_bytes.min(SEGMENT_BYTES) + 4096)),
            first_key: Vec::new(),
            last_key: Vec::new(),
            written: 0,
            rows: 0,
            segment_bytes: segment_bytes.max(1),
            rng: SystemRandom::new(),
        })
    }

    /// Appends one record; `key` must sort strictly after the previous one.
    ///
    /// # Errors
    /// [`ScratchError::Unsorted`], or what sealing a full segment returns.
    pub fn push(&mut self, key: &[u8], value: &[u8]) -> Result<(), ScratchError> {
        if self.rows > 0 && key <= self.last_key.as_slice() {
            return Err(ScratchError::Unsorted { record: self.rows });
        }
        if self.plain.is_empty() {
            self.first_key.clear();
            self.first_key.extend_from_slice(key);
        }
        for part in [key, value] {
            let len = u32::try_from(part.len()).expect("a scratch record is far below 4 GiB");
            self.plain.extend_from_slice(&len.to_le_bytes());
            self.plain.extend_from_slice(part);
        }
        self.last_key.clear();
        self.last_key.extend_from_slice(key);
        self.rows += 1;
        if self.plain.len() >= self.segment_bytes { self.seal_segment() } else { Ok(()) }
    }

    fn seal_segment(&mut self) -> Result<(), ScratchError> {
        let segment = self.segments.len();
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        self.rng.fill(key.as_mut()).map_err(|_| ScratchError::Random)?;
        let before = self.written;
        let mut counted = Counted { inner: &mut self.file, bytes: 0 };
        stream::seal(&key, AAD, CHUNK_BYTES, self.plain.as_slice(), &mut counted)
            .map_err(|source| ScratchError::Seal { segment, source })?;
        let len = usize::try_from(counted.bytes).expect("a segment is far below usize::MAX");
        self.written += counted.bytes;
        self.segments.push(Segment { offset: before, len, first_key: std::mem::take(&mut self.first_key), key });
        self.plain.clear();
        Ok(())
    }

    /// Seals the last segment and returns the run, ready to read.
    ///
    /// # Errors
    /// What sealing or flushing returns.
    pub fn finish(mut self) -> Result<Run, ScratchError> {
        if !self.plain.is_empty() {
            self.seal_segment()?;
        }
        let file = self.file.into_inner().map_err(|e| io("flushing")(e.into_error()))?;
        Ok(Run { file, segments: self.segments, rows: self.rows })
    }
}

/// Counts the bytes written through it: the segment's length on disk.
struct Counted<'w, W> {
    inner: &'w mut W,
    bytes: u64,
}

impl<W: std::io::Write> std::io::Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A finished run: read it with [`Run::cursor`] or [`Merge`]. Shared
/// read-only between threads (reads are positioned, never seek the file).
pub struct Run {
    file: File,
    segments: Vec<Segment>,
    rows: u64,
}

impl Run {
    /// Records in the run.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Bytes the run takes on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len as u64).sum()
    }

    /// A cursor on the first record whose key is `from` or after.
    ///
    /// # Errors
    /// [`ScratchError::Io`], [`ScratchError::Seal`] or
    /// [`ScratchError::Malformed`] from reading the segment it starts in.
    pub fn cursor(&self, from: &[u8]) -> Result<Cursor<'_>, ScratchError> {
        // The last segment starting below `from` may still hold it; any
        // earlier one ends below the next one's first key.
        let start = self.segments.partition_point(|s| s.first_key.as_slice() < from).saturating_sub(1);
        let mut cursor =
            Cursor { run: self, next: start, sealed: Vec::new(), plain: Zeroizing::new(Vec::new()), at: 0 };
        cursor.load()?;
        while cursor.key().is_some_and(|k| k < from) {
            cursor.advance()?;
        }
        Ok(cursor)
    }
}

/// Reads a run in order, one segment in memory at a time.
pub struct Cursor<'r> {
    run: &'r Run,
    /// The segment to load next.
    next: usize,
    sealed: Vec<u8>,
    plain: Zeroizing<Vec<u8>>,
    /// Where the current record starts in `plain`.
    at: usize,
}

impl Cursor<'_> {
    /// The current record's key, or `None` at the end of the run.
    pub fn key(&self) -> Option<&[u8]> {
        self.record().map(|(k, _)| k)
    }

    /// The current record, or `None` at the end of the run.
    pub fn record(&self) -> Option<(&[u8], &[u8])> {
        let (key, rest) = field(&self.plain[self.at..])?;
        let (value, _) = field(rest)?;
        Some((key, value))
    }

    /// Moves to the next record.
    ///
    /// # Errors
    /// As [`Run::cursor`], when the next segment is loaded.
    pub fn advance(&mut self) -> Result<(), ScratchError> {
        let Some((key, value)) = self.record() else { return Ok(()) };
        self.at += 8 + key.len() + value.len();
        if self.at >= self.plain.len() { self.load() } else { Ok(()) }
    }

    /// Loads the next segment (or empties the cursor after the last one).
    fn load(&mut self) -> Result<(), ScratchError> {
        self.plain.clear();
        self.at = 0;
        let Some(seg) = self.run.segments.get(self.next) else { return Ok(()) };
        let index = self.next;
        self.next += 1;
        self.sealed.resize(seg.len, 0);
        self.run.file.read_exact_at(&mut self.sealed, seg.offset).map_err(io("reading"))?;
        stream::open(&seg.key, AAD, CHUNK_BYTES, self.sealed.as_slice(), &mut *self.plain)
            .map_err(|source| ScratchError::Seal { segment: index, source })?;
        if self.plain.is_empty() || !well_formed(&self.plain) {
            return Err(ScratchError::Malformed { segment: index });
        }
        Ok(())
    }
}

/// One length-prefixed field and what follows it.
fn field(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let rest = &bytes[4..];
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// Whether a segment's plaintext is whole records and nothing else.
fn well_formed(mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        match field(bytes).and_then(|(_, rest)| field(rest)) {
            Some((_, rest)) => bytes = rest,
            None => return false,
        }
    }
    true
}

/// Several runs merged into one key order, from a key on.
pub struct Merge<'r> {
    cursors: Vec<Cursor<'r>>,
    heap: BinaryHeap<Reverse<(Vec<u8>, usize)>>,
}

impl<'r> Merge<'r> {
    /// Every record of `runs` whose key is `from` or after, in key order
    /// (equal keys in run order).
    ///
    /// # Errors
    /// As [`Run::cursor`].
    pub fn new(runs: impl IntoIterator<Item = &'r Run>, from: &[u8]) -> Result<Self, ScratchError> {
        let cursors = runs.into_iter().map(|r| r.cursor(from)).collect::<Result<Vec<_>, _>>()?;
        let heap = cursors.iter().enumerate().filter_map(|(i, c)| c.key().map(|k| Reverse((k.to_vec(), i)))).collect();
        Ok(Self { cursors, heap })
    }

    /// Hands the next record (key, index of its run, value) to `f` and
    /// returns what `f` returns; `None` once every run is exhausted.
    ///
    /// # Errors
    /// As [`Run::cursor`].
    pub fn next<T>(&mut self, f: impl FnOnce(&[u8], usize, &[u8]) -> T) -> Result<Option<T>, ScratchError> {
        let Some(Reverse((mut key, run))) = self.heap.pop() else { return Ok(None) };
        let cursor = &mut self.cursors[run];
        let (k, value) = cursor.record().expect("a run in the heap has a record");
        let out = f(k, run, value);
        cursor.advance()?;
        if let Some(next) = cursor.key() {
            key.clear();
            key.extend_from_slice(next);
            self.heap.push(Reverse((key, run)));
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
#[path = "scratch_tests.rs"]
mod tests;
