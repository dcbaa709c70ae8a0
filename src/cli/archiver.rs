//! `tidemark archiver`: consistent, encrypted Parquet snapshots of the state
//! topic, on an interval or once (`--once`, for CronJobs and on demand).
//! Prints `tidemark-archiver listening metrics=ADDR` once its metrics
//! endpoint is bound, then `snapshot committed profile=P id=ID rows=N parts=N
//! bytes=N path=LOCATION` for every snapshot it commits. Exit codes: 0, 2 configuration, 3 a failed
//! `--once` snapshot or a runtime failure (logged).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use tidemark_archiver::snapshot::{Faults, ProfileSpec, SnapshotSpec};
use tidemark_archiver::storage::Archive;
use tidemark_archiver::table::{PartOptions, Profile};
use tidemark_archiver::{ArchiverConfig, ArchiverMetrics};

use super::Outcome;
use super::config::{CatalogChoice, KafkaArgs};
use crate::service::{metrics_server, runner, telemetry};

/// The snapshot profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProfileArg {
    /// Every column, real patient ids.
    Identified,
    /// Direct identifiers and free text dropped, dates to year, postal codes
    /// to 3 characters, patient ids as keyed pseudonyms.
    Deidentified,
}

#[derive(Debug, Args)]
pub struct ArchiverArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Where snapshots go: a directory, or s3://, gs://, az:// URL.
    #[arg(long, env = "TIDEMARK_OUT", value_name = "DIR|URL")]
    out: String,
    /// The profile written.
    #[arg(long, env = "TIDEMARK_PROFILE", value_enum, default_value_t = ProfileArg::Identified)]
    profile: ProfileArg,
    /// A recipient public key (`tidemark keys generate --kind recipient`) every part is encrypted to (repeatable).
    #[arg(long = "recipient", value_name = "FILE", required = true)]
    recipients: Vec<PathBuf>,
    /// The archiver's secret key that signs manifests (`tidemark keys generate --kind archiver`).
    #[arg(long, env = "TIDEMARK_ARCHIVER_KEY", value_name = "FILE")]
    archiver_key: PathBuf,
    /// State key file(s) (`tidemark keys generate --kind state`), as the
    /// mergers have them: a state record whose MAC does not check under one
    /// of them is set aside.
    #[arg(long = "state-key", env = "TIDEMARK_STATE_KEY", value_name = "FILE", required = true, value_delimiter = ',')]
    state_keys: Vec<PathBuf>,
    /// The dataset key that keys pseudonyms (`tidemark keys generate --kind dataset`); de-identified only.
    #[arg(long, env = "TIDEMARK_DATASET_KEY", value_name = "FILE")]
    dataset_key: Option<PathBuf>,
    /// Record catalog file (TOML) [default: the built-in v1 catalog].
    #[arg(long, env = "TIDEMARK_CATALOG", value_name = "FILE")]
    catalog: Option<PathBuf>,
    /// Seconds between the starts of two snapshots.
    #[arg(long, env = "TIDEMARK_INTERVAL_S", default_value_t = 3600)]
    interval_s: u64,
    /// Take one snapshot and exit.
    #[arg(long)]
    once: bool,
    /// Committed snapshots kept per profile.
    #[arg(long, env = "TIDEMARK_RETAIN", default_value_t = 7)]
    retain: usize,
    /// Rows per Parquet part, at most.
    #[arg(long, env = "TIDEMARK_ROWS_PER_PART", default_value_t = 250_000)]
    rows_per_part: usize,
    /// Fault injection for tests: abort after N parts were stored, before the
    /// manifest. Only in builds with the `fault-injection` feature.
    #[cfg(feature = "fault-injection")]
    #[arg(long, hide = true, value_name = "N")]
    fault_abort_after_parts: Option<usize>,
    /// Where `/metrics` is served.
    #[arg(long, env = "TIDEMARK_METRICS_LISTEN", default_value = "127.0.0.1:9103")]
    metrics_listen: SocketAddr,
    /// Log format.
    #[arg(long, env = "TIDEMARK_LOG_FORMAT", value_enum, default_value_t = telemetry::LogFormat::Text)]
    log_format: telemetry::LogFormat,
}

/// Loads keys and builds what one snapshot needs; every error names the file.
fn spec(args: &ArchiverArgs) -> anyhow::Result<SnapshotSpec> {
    if args.retain == 0 || args.rows_per_part == 0 || args.interval_s == 0 {
        anyhow::bail!("--retain, --rows-per-part and --interval-s must be at least 1");
    }
    let catalog = CatalogChoice::load(args.catalog.as_deref())?.get().clone();
    let signer = tidemark_seal::load_archiver_secret(&args.archiver_key).context("loading --archiver-key")?;
    let recipients = args
        .recipients
        .iter()
        .map(|p| tidemark_seal::load_recipient_public(p).context("loading --recipient"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let profile = match (args.profile, &args.dataset_key) {
        (ProfileArg::Identified, None) => Profile::Identified,
        (ProfileArg::Identified, Some(_)) => anyhow::bail!("--dataset-key applies only to --profile deidentified"),
        (ProfileArg::Deidentified, None) => {
            anyhow::bail!("--profile deidentified needs --dataset-key (the key of the patient pseudonyms)")
        }
        (ProfileArg::Deidentified, Some(p)) => Profile::Deidentified {
            dataset_key: *tidemark_seal::load_dataset_key(p).context("loading --dataset-key")?.bytes(),
        },
    };
    Ok(SnapshotSpec {
        topic: format!("{}{}", args.kafka.topic_prefix, tidemark_schemas::STATE_TOPIC),
        catalog,
        profiles: vec![ProfileSpec { profile, recipients }],
        signer: Arc::new(signer),
        state_keys: Arc::new(tidemark_seal::load_state_keys(&args.state_keys).context("loading --state-key")?),
        rows_per_part: args.rows_per_part,
        part_options: PartOptions::default(),
        stall_timeout: Duration::from_secs(60),
        retain: args.retain,
        faults: Faults {
            #[cfg(feature = "fault-injection")]
            abort_after_parts: args.fault_abort_after_parts,
        },
    })
}

/// When `/healthz` calls a running snapshot stalled: twice the interval,
/// and never under an hour (a large topic on a slow broker takes minutes;
/// the reader's own stall timeout fails a read that stops moving).
fn stall_after(interval: Duration) -> Duration {
    interval.saturating_mul(2).max(Duration::from_secs(3600))
}

pub fn run(args: ArchiverArgs) -> anyhow::Result<Outcome> {
    let spec = Arc::new(spec(&args)?);
    let archive = Archive::open(&args.out)?;
    let status = Arc::new(tidemark_archiver::ArchiverStatus::default());
    let health = {
        let (status, bound) = (Arc::clone(&status), stall_after(Duration::from_secs(args.interval_s)));
        let check: metrics_server::HealthCheck = Arc::new(move || {
            let h = status.health(bound);
            (h.is_alive(), serde_json::to_string(&h).unwrap_or_default())
        });
        check
    };
    runner::run(
        "archiver",
        args.log_format,
        args.metrics_listen,
        ArchiverMetrics::register,
        Some(health),
        move |metrics, addr, shutdown| {
            println!("tidemark-archiver listening metrics={addr}");
            let cfg = ArchiverConfig {
                kafka: args.kafka.connection(),
                archive,
                spec,
                interval: Duration::from_secs(args.interval_s),
                once: args.once,
                metrics,
                status,
                on_commit: Some(Arc::new(|c, archive| {
                    let m = &c.manifest;
                    println!(
                        "snapshot committed profile={} id={} rows={} parts={} bytes={} path={}/{}/{}",
                        m.profile,
                        m.snapshot_id,
                        m.rows,
                        m.parts.len(),
                        c.bytes,
                        archive.location().trim_end_matches('/'),
                        m.profile,
                        m.snapshot_id
                    );
                })),
            };
            tidemark_archiver::run(cfg, shutdown)
        },
    )
}
