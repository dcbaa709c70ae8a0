//! Errors of the chunked AES-256-GCM stream ([`crate::stream`]): what the
//! archiver's encrypted scratch space is written with.

use std::io;

/// Why a stream could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Reading or writing a stream failed. Retry if the storage is transient.
    #[error("I/O error: {0}")]
    Io(#[source] io::Error),
    /// The stream ends early: inside a chunk, or after a chunk that is
    /// authentically not the last one.
    #[error("the encrypted stream is truncated")]
    Truncated,
    /// A chunk (or its frame) failed authentication: altered, reordered, or
    /// from another stream. Chunks before it were already written.
    #[error("chunk {index} failed authentication (altered, reordered or from another stream)")]
    ChunkAuthFailed {
        /// Index (from 0) of the first chunk that failed.
        index: u64,
    },
    /// Bytes follow the authenticated final chunk.
    #[error("bytes follow the final chunk")]
    TrailingData,
    /// A chunk size outside `1..=MAX_CHUNK_SIZE`; a caller bug.
    #[error("chunk size {chunk_size} is outside 1..={max}")]
    BadChunkSize {
        /// The chunk size requested.
        chunk_size: usize,
        /// The largest chunk size allowed.
        max: usize,
    },
}

impl From<io::Error> for StreamError {
    /// An unexpected end of file is a truncated stream, whatever was being read.
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof { StreamError::Truncated } else { StreamError::Io(e) }
    }
}
