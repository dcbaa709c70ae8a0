//! Tidemark benchmarks: criterion benches that print each peer's or bound's
//! figure beside ours, measured in the same run.
//!
//! Key decision: workloads are generated, deterministic and validated against
//! the real catalog, so a benchmark measures edits the pipeline would accept,
//! and two runs measure the same thing.

pub mod workload;
