//! `tidemark demo`: the pipeline in one process on an embedded Kafka, driven
//! by synthetic clinicians, ending with a summary that checks itself (exit 3
//! when a check fails). See [`crate::demo`].

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use super::Outcome;
use super::config::parse_kafka_option;
use crate::demo::{self, DemoOptions};
use crate::service::telemetry;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory for keys, the accepted envelopes, the final views and the snapshot archive (kept for the next run's keys).
    #[arg(long, default_value = "tidemark-demo")]
    dir: PathBuf,
    /// Seconds the clinicians send edits.
    #[arg(long, default_value_t = 40.0)]
    duration: f64,
    /// Patients edited.
    #[arg(long, default_value_t = 3000)]
    patients: usize,
    /// Target edit events per second over all clinicians.
    #[arg(long, default_value_t = 600.0)]
    rate: f64,
    /// Clinicians per site (three sites); each is one concurrent HTTP sender.
    #[arg(long, default_value_t = 4)]
    clinicians_per_site: usize,
    /// Events per request.
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// Partitions of every topic.
    #[arg(long, default_value_t = 32)]
    partitions: i32,
    /// Merger workers in the consumer group.
    #[arg(long, default_value_t = 2)]
    mergers: usize,
    /// Use this Kafka (bootstrap servers) instead of the embedded one; the run gets topics of its own.
    #[arg(long, value_name = "HOST:PORT,...")]
    brokers: Option<String>,
    /// A librdkafka option for every client, e.g. `security.protocol=SASL_SSL` (repeatable).
    #[arg(long = "kafka-option", value_name = "KEY=VALUE", value_parser = parse_kafka_option)]
    kafka_options: Vec<(String, String)>,
    /// Seed of the edit mix.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

pub fn run(args: DemoArgs) -> anyhow::Result<Outcome> {
    telemetry::init_with_default(telemetry::LogFormat::Text, "warn");
    if !(0.001..=31_536_000.0).contains(&args.duration) {
        anyhow::bail!("--duration must be 0.001 to 31,536,000 seconds (a year), got {}", args.duration);
    }
    let opts = DemoOptions {
        dir: args.dir,
        duration: Duration::from_secs_f64(args.duration),
        patients: args.patients,
        rate: args.rate,
        clinicians_per_site: args.clinicians_per_site,
        batch: args.batch,
        partitions: args.partitions,
        mergers: args.mergers,
        brokers: args.brokers,
        kafka_options: args.kafka_options,
        seed: args.seed,
    };
    opts.check()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    let summary = runtime.block_on(demo::run(opts))?;
    println!("{}", summary.render(&exe_name()));
    let problems = summary.problems();
    for p in &problems {
        eprintln!("demo: {p}");
    }
    Ok(if problems.is_empty() { Outcome::Ok } else { Outcome::ServiceFailed })
}

/// How to call this binary again from the current directory: a relative path
/// when it is below it (`target/release/tidemark`), else the absolute path.
fn exe_name() -> String {
    let Ok(exe) = std::env::current_exe() else { return "tidemark".to_owned() };
    let relative = std::env::current_dir().ok().and_then(|cwd| exe.strip_prefix(cwd).ok().map(PathBuf::from));
    relative.unwrap_or(exe).display().to_string()
}
