//! Pure encryption layer of snapshot parts: no I/O beyond `std::io` streams.
//!
//! Key decision: the payload is sealed as a STREAM of fixed-size AES-256-GCM
//! chunks under a fresh per-part data key, so parts decrypt with one chunk of
//! memory and truncation, reordering and bit flips are all detected.
//! The hybrid KEM (X25519 + ML-KEM-768) that wraps the data key lands separately.

pub mod kem;
pub mod stream;
