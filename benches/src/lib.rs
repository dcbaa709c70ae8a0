//! Tidemark benchmarks: criterion benches that print each peer's or bound's
//! figure beside ours, measured in the same run, with the ratio.
//!
//! Key decision: workloads are generated, deterministic and validated against
//! the real catalog, so a benchmark measures edits the pipeline would accept,
//! two runs measure the same thing, and the peer is fed the very same edits.
//!
//! Each bench target declares mimalloc, the `tidemark` binary's allocator, as
//! its own global allocator (a library cannot give one target a different
//! one): `tidemark-bench-fold-memory` wraps it to count live bytes, and the
//! timing benches pay nothing for that count.

pub mod age_peer;
pub mod automerge_peer;
pub mod conflict;
pub mod crypto_bounds;
pub mod folded;
pub mod parquet_bound;
pub mod pipeline;
pub mod report;
pub mod signed;
pub mod workload;
