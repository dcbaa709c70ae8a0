//! Tidemark benchmarks: criterion benches that print each peer's or bound's
//! figure beside ours, measured in the same run.
