//! `tidemark query`: the read service with its metrics endpoint. Runs until
//! SIGTERM/SIGINT (drain, exit 0) or a fatal error (exit 3 when a restart
//! may help, 2 for configuration errors). Prints
//! `tidemark-query listening http=ADDR metrics=ADDR` on stdout once bound.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tidemark_query::{QueryConfig, QueryMetrics};
use tidemark_schemas::httpsig::Freshness;

use super::Outcome;
use super::config::{CatalogChoice, KafkaArgs};
use super::front::FrontArgs;
use crate::service::{runner, telemetry};

#[derive(Debug, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Key registry file (TOML): keys with the `read` scope sign requests;
    /// reloaded on SIGHUP and when it changes.
    #[arg(long, env = "TIDEMARK_KEYS", value_name = "REGISTRY")]
    keys: PathBuf,
    /// State key file(s), as the mergers have them (the first, then older ones).
    #[arg(long = "state-key", env = "TIDEMARK_STATE_KEY", value_name = "FILE", required = true, value_delimiter = ',')]
    state_keys: Vec<PathBuf>,
    /// Record catalog file (TOML) [default: the built-in v1 catalog]; its identifier rules bound patient ids.
    #[arg(long, env = "TIDEMARK_CATALOG", value_name = "FILE")]
    catalog: Option<PathBuf>,
    /// Where the store lives (a cache of the state topic: losing it costs a catch-up).
    #[arg(long, env = "TIDEMARK_DATA_DIR", value_name = "DIR")]
    data_dir: PathBuf,
    /// Where the HTTP API listens. A non-loopback address needs `--tls-cert`
    /// and `--tls-key`, or `--insecure-plaintext`.
    #[arg(long, env = "TIDEMARK_LISTEN", default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    #[command(flatten)]
    front: FrontArgs,
    /// Where `/metrics` is served.
    #[arg(long, env = "TIDEMARK_METRICS_LISTEN", default_value = "127.0.0.1:9104")]
    metrics_listen: SocketAddr,
    /// How old a request's signature (`created`) may be.
    #[arg(long, env = "TIDEMARK_MAX_SIGNATURE_AGE_S", default_value_t = 60)]
    max_signature_age_s: u64,
    /// How far ahead of this clock a signature's `created` may be.
    #[arg(long, env = "TIDEMARK_MAX_CLOCK_SKEW_S", default_value_t = 5)]
    max_clock_skew_s: u64,
    /// Nonces remembered at once (a request each, for --max-signature-age-s; about 100 bytes each).
    #[arg(long, env = "TIDEMARK_MAX_NONCES", default_value_t = 1_000_000)]
    max_nonces: usize,
    /// The longest a read-your-writes request (`?after=`) waits before 503 `not_yet_visible`.
    #[arg(long, env = "TIDEMARK_MAX_WAIT_MS", default_value_t = 5_000)]
    max_wait_ms: u64,
    /// The longest one change-feed connection stays open (the client resumes from its last id).
    #[arg(long, env = "TIDEMARK_MAX_FEED_MS", default_value_t = 300_000)]
    max_feed_ms: u64,
    /// How long Kafka may take to acknowledge an audit record before the request gets 503.
    #[arg(long, env = "TIDEMARK_AUDIT_TIMEOUT_MS", default_value_t = 5_000)]
    audit_timeout_ms: u64,
    /// Partitions of the access-audit topic when it is created.
    #[arg(long, env = "TIDEMARK_AUDIT_PARTITIONS", default_value_t = 6)]
    audit_partitions: i32,
    /// How long to wait for the broker at start.
    #[arg(long, env = "TIDEMARK_STARTUP_TIMEOUT_MS", default_value_t = 15_000)]
    startup_timeout_ms: u64,
    /// How long draining may take at shutdown.
    #[arg(long, env = "TIDEMARK_SHUTDOWN_GRACE_MS", default_value_t = 20_000)]
    shutdown_grace_ms: u64,
    /// Log format.
    #[arg(long, env = "TIDEMARK_LOG_FORMAT", value_enum, default_value_t = telemetry::LogFormat::Text)]
    log_format: telemetry::LogFormat,
}

pub fn run(args: QueryArgs) -> anyhow::Result<Outcome> {
    let catalog = CatalogChoice::load(args.catalog.as_deref())?.get().clone();
    runner::run(
        "query",
        args.log_format,
        args.metrics_listen,
        QueryMetrics::register,
        None,
        move |metrics, maddr, shutdown| {
            let mut state_keys = args.state_keys.into_iter();
            let first = state_keys.next().expect("clap requires one --state-key");
            let cfg = QueryConfig {
                kafka: args.kafka.connection(),
                topic_prefix: args.kafka.topic_prefix,
                keys: args.keys,
                state_keys: first,
                more_state_keys: state_keys.collect(),
                catalog,
                data_dir: args.data_dir,
                listen: args.listen,
                tls: args.front.tls(),
                insecure_plaintext: args.front.insecure_plaintext,
                header_read_timeout: args.front.header_read_timeout(),
                max_connections_per_peer: args.front.max_connections_per_peer,
                max_connections: args.front.max_connections,
                freshness: Freshness { max_age_s: args.max_signature_age_s, max_skew_s: args.max_clock_skew_s },
                max_nonces: args.max_nonces,
                max_wait: Duration::from_millis(args.max_wait_ms),
                max_feed: Duration::from_millis(args.max_feed_ms),
                audit_timeout: Duration::from_millis(args.audit_timeout_ms),
                audit_partitions: args.audit_partitions,
                startup_timeout: Duration::from_millis(args.startup_timeout_ms),
                shutdown_grace: Duration::from_millis(args.shutdown_grace_ms),
                metrics,
                on_listening: Some(Arc::new(move |addr| {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "tidemark-query listening http={addr} metrics={maddr}");
                    let _ = out.flush();
                })),
            };
            tidemark_query::run(cfg, shutdown)
        },
    )
}
