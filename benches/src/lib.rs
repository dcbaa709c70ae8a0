//! Tidemark benchmarks: criterion benches that print each peer's or bound's
//! figure beside ours, measured in the same run, with the ratio.
//!
//! Key decision: workloads are generated, deterministic and validated against
//! the real catalog, so a benchmark measures edits the pipeline would accept,
//! two runs measure the same thing, and the peer is fed the very same edits.
//!
//! Each bench target declares its own global allocator (a library that did
//! would give every target the same one): [`service_allocator!`] for the
//! timing benches, while `tidemark-bench-fold-memory` wraps mimalloc to
//! count live bytes, so the timing benches pay nothing for that count.

pub mod automerge_peer;
pub mod conflict;
pub mod crypto_bounds;
pub mod folded;
pub mod parquet_bound;
pub mod pipeline;
pub mod report;
pub mod signed;
pub mod snapshot_parts;
pub mod snapshot_read;

/// Declares mimalloc, the `tidemark` binary's allocator, as this target's
/// global allocator: a stage costs here what it costs in the service, and the
/// peers in the same process (Automerge, arrow-rs, dalek) get the same one.
#[macro_export]
macro_rules! service_allocator {
    () => {
        #[global_allocator]
        static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
    };
}

/// The snapshot time the archive and table benches lay their tables out at
/// (2026-06-01T00:00:00Z): fixed, so the de-identified birth-year floor, and
/// with it what the benches measure, does not move with the wall clock.
pub const LAYOUT_NOW_MS: u64 = 1_780_272_000_000;
