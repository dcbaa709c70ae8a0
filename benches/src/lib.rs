//! Tidemark benchmarks: criterion benches that print each peer's or bound's
//! figure beside ours, measured in the same run, with the ratio.
//!
//! Key decision: workloads are generated, deterministic and validated against
//! the real catalog, so a benchmark measures edits the pipeline would accept,
//! two runs measure the same thing, and the peer is fed the very same edits.

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

/// Every bench binary links this crate, so every bench allocates with
/// mimalloc, as the `tidemark` binary does: a stage's figure is what the
/// service spends on it, and peers in the same process (Automerge, arrow-rs,
/// dalek) get the same allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
