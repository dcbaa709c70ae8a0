//! The key registry (which keys may sign events or read patients back, for
//! which source and patients) and the secret signing-key file written by `tidemark keys generate`.
//!
//! Key decision: a key's algorithm, source and patient scope come from the
//! registry, never from a message. The registry refuses, at load time, every
//! key that would make verification ambiguous: small-order ("weak") Ed25519
//! keys, keys with a torsion component, and non-canonical encodings. With
//! those gone, strict and batch verification agree on every signature that
//! only a key's holder could not have crafted (see [`crate::verify`]).
//!
//! Registry file (TOML), one `[[key]]` per key:
//!
//! ```toml
//! [[key]]
//! id = "site-a-ehr-2026"          # keyid in DSSE signatures
//! source = "site-a-ehr"           # events signed by this key must have this source
//! algorithm = "ed25519"
//! public_key = "<base64 32 bytes>"
//! patient_prefixes = ["pt-"]      # optional; absent = any patient (bounds reads too)
//! scopes = ["write", "read"]      # optional; absent = ["write"]: sign events only
//! not_before = "2026-01-01T00:00:00Z"  # optional: first instant events may be stamped with
//! not_after = "2027-01-01T00:00:00Z"   # optional: last instant
//! revoked_at = "2026-06-01T12:00:00Z"  # optional: events stamped at or after it are refused
//! ```
//!
//! The times are compared with each event's signed HLC wall time, never
//! with the clock of whoever checks it (see [`validity`]).
//!
//! No file I/O here: callers read the file and pass its text.

mod registry;
mod signing_file;
pub mod validity;

use std::fmt;

pub use registry::{KeyEntry, KeyRegistry, RegisteredKey, RegistryError, Scope};
pub use signing_file::{SecretKeyError, SignRefused, SigningKeyFile};
pub use validity::{NotValidAt, Validity};

/// The algorithm name of Ed25519 keys in registry and key files.
pub const ED25519: &str = "ed25519";

/// A signature algorithm a registered key uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Ed25519 (RFC 8032), verified strictly (see [`crate::verify`]).
    Ed25519,
}

impl Algorithm {
    /// The name used in key files.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => ED25519,
        }
    }

    pub(crate) fn parse(name: &str) -> Option<Self> {
        (name == ED25519).then_some(Algorithm::Ed25519)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether `id` can name a key: 1-128 bytes of `A-Z a-z 0-9 . _ : -`.
pub(crate) fn is_valid_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}
