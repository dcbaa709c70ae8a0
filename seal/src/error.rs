//! Why sealing, opening or parsing a part failed.
//!
//! One variant per cause, so `snapshot verify` can tell an operator exactly what
//! went wrong with a part: a storage hiccup (retry), a part that is not for this
//! key (use another key), or a part that was altered (set it aside and restore it
//! from another copy; never trust its contents).

use std::io;

use super::kem::KemError;

/// Why a part could not be sealed, opened or its header read.
#[derive(Debug, thiserror::Error)]
pub enum PartError {
    /// Reading or writing a stream failed. Retry if the storage is transient.
    #[error("I/O error while reading or writing an encrypted part")]
    Io(#[source] io::Error),
    /// The file does not start with `TMENC`: not an encrypted Tidemark part.
    #[error("not an encrypted Tidemark part (the file does not start with `TMENC`)")]
    BadMagic,
    /// A format version this build cannot read. Upgrade tidemark.
    #[error("encrypted part format version {0} is not supported (this build reads version 1); upgrade tidemark")]
    UnsupportedVersion(u8),
    /// A header field is out of its documented range (checked before any
    /// allocation, so hostile headers cannot exhaust memory). Set the part aside.
    #[error("encrypted part header is malformed: {0}; the part is corrupt, set it aside")]
    HeaderMalformed(&'static str),
    /// The part ends early: inside the header, inside a chunk, or after a chunk
    /// that is authentically not the last one. Set it aside; re-fetch it from storage.
    #[error("encrypted part is truncated (it ends before its final chunk); re-fetch it or set it aside")]
    Truncated,
    /// None of the header's stanzas is for this key. Use one of the listed keys.
    #[error("this part is not encrypted for key {key_id}; it is encrypted for: {}", recipients.join(", "))]
    NotARecipient {
        /// The id of the key that was tried.
        key_id: String,
        /// The ids of the part's recipients.
        recipients: Vec<String>,
    },
    /// The stanza for this key does not decrypt: it was altered, or copied in
    /// from another part (stanzas are bound to their part's id). Set the part aside.
    #[error(
        "the data key for {key_id} does not decrypt: its stanza was altered or copied from another part; set the part aside"
    )]
    KeyUnwrapFailed {
        /// The id of the recipient whose stanza failed.
        key_id: String,
    },
    /// The header MAC does not match: a header field or another recipient's
    /// stanza was altered after sealing. Set the part aside.
    #[error("encrypted part header failed authentication: it was altered after sealing; set the part aside")]
    HeaderAuthFailed,
    /// A chunk (or its frame) failed authentication: altered, reordered, or from
    /// another part. Chunks before it were already written. Set the part aside.
    #[error("chunk {index} failed authentication: altered, reordered or taken from another part; set the part aside")]
    ChunkAuthFailed {
        /// Index (from 0) of the first chunk that failed.
        index: u64,
    },
    /// Bytes follow the authenticated final chunk. Set the part aside.
    #[error("data follows the final chunk of the encrypted part; set the part aside")]
    TrailingData,
    /// `seal_part` was given a chunk size outside `1..=MAX_CHUNK_SIZE`; a caller bug.
    #[error("chunk size {chunk_size} is outside 1..={max}")]
    BadChunkSize {
        /// The chunk size requested.
        chunk_size: usize,
        /// The largest chunk size allowed.
        max: usize,
    },
    /// `seal_part` was given no recipients, too many, or one twice; fix the configuration.
    #[error("bad recipient list: {0}")]
    BadRecipients(String),
    /// The KEM failed: the OS random source failed (retry), or a recipient public
    /// key is invalid (fix the key file).
    #[error("key encapsulation failed")]
    Kem(#[from] KemError),
    /// The OS random source failed while drawing a data key or part id; retry.
    #[error("system random source failed")]
    Random,
}

impl From<io::Error> for PartError {
    /// An unexpected end of file is a truncated part, whatever was being read.
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof { PartError::Truncated } else { PartError::Io(e) }
    }
}
