//! `tidemark-bench-pipeline`: the end-to-end benchmark (see
//! `tidemark_benches::pipeline`). `scripts/bench-pipeline` builds and runs it.

use std::path::PathBuf;

use clap::Parser;
use tidemark_benches::pipeline::{doc, run};

tidemark_benches::service_allocator!();

/// Runs the pipeline on Tansu under a fixed workload and writes the figures.
#[derive(Debug, Parser)]
#[command(name = "tidemark-bench-pipeline")]
struct Args {
    /// The release `tidemark` binary.
    #[arg(long, default_value = "target/release/tidemark")]
    tidemark: PathBuf,
    /// Scratch directory (emptied first).
    #[arg(long, default_value = "target/bench-pipeline")]
    work: PathBuf,
    /// Where pipeline.json and pipeline.png go.
    #[arg(long, default_value = "docs/benchmarks")]
    out: PathBuf,
    /// The markdown file whose generated section is replaced.
    #[arg(long, default_value = "docs/benchmarks.md")]
    doc: PathBuf,
    /// Signed events sent at full speed.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Patients they edit.
    #[arg(long, default_value_t = 100_000)]
    patients: usize,
    /// Events sent at --latency-rate afterwards.
    #[arg(long, default_value_t = 200_000)]
    latency_events: usize,
    /// Events/s of that phase.
    #[arg(long, default_value_t = 10_000.0)]
    latency_rate: f64,
    /// Partitions of every topic.
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// Merger processes.
    #[arg(long, default_value_t = 1)]
    mergers: usize,
    /// Requests in flight.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Events per request at full speed.
    #[arg(long, default_value_t = 200)]
    batch: usize,
    /// Events per request in the fixed-rate phase.
    #[arg(long, default_value_t = 20)]
    latency_batch: usize,
    /// Tansu's storage: `memory` (no database transaction per request, as
    /// Kafka appends to the page cache) or `sqlite` (measured to collapse and
    /// panic under this load; see docs/benchmarks.md).
    #[arg(long, default_value = "memory")]
    storage: String,
    /// librdkafka's `fetch.wait.max.ms` for the mergers and the bound
    /// consumer. Tansu holds a fetch for this long even when records are
    /// ready (measured: 23.7k records/s at librdkafka's default 500 ms, 98k at
    /// 20 ms); Kafka answers as soon as `fetch.min.bytes` is there.
    #[arg(long, default_value_t = 20)]
    fetch_wait_ms: u32,
    /// Patients of the snapshot at scale (the target in docs/design.md#targets
    /// is for 1M): the run's latest views copied under new patient ids into a
    /// state topic of their own, one record per patient, as a compacted topic
    /// holds them (Tansu does not compact). 0 skips it.
    #[arg(long, default_value_t = 1_000_000)]
    snapshot_patients: usize,
    /// Partitions of that topic. Tansu's sqlite engine reads a partition in
    /// time that grows faster than its length (measured, 2.7 KB records: 8
    /// partitions of 1M records read in 272 s, 32 in 83 s), so at 8 the
    /// test broker, not the archiver, sets the figure.
    #[arg(long, default_value_t = 32)]
    snapshot_partitions: i32,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    anyhow::ensure!(a.events > 0 && a.latency_events > 0 && a.patients > 0, "events and patients must be positive");
    anyhow::ensure!(a.latency_rate > 0.0, "--latency-rate must be positive");
    anyhow::ensure!(a.tidemark.exists(), "{} not found: build it with `cargo build --release`", a.tidemark.display());
    let cfg = run::Config {
        tidemark: a.tidemark,
        work: a.work,
        events: a.events,
        patients: a.patients,
        latency_events: a.latency_events,
        latency_rate: a.latency_rate,
        partitions: a.partitions,
        mergers: a.mergers,
        concurrency: a.concurrency,
        batch: a.batch,
        latency_batch: a.latency_batch,
        storage: a.storage,
        fetch_wait_ms: a.fetch_wait_ms,
        snapshot_patients: a.snapshot_patients,
        snapshot_partitions: a.snapshot_partitions,
    };
    let results = run::run_all(cfg)?;
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or_else(|| "unknown date".to_owned(), |s| s.trim().to_owned());
    doc::write(&results, &a.out, &a.doc, &date)?;
    println!("{}", doc::section(&results, &date, &a.out.join("pipeline.png").display().to_string()));
    Ok(())
}
