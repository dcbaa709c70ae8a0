//! `tidemark ingest`: the HTTP ingest service with its metrics endpoint. Runs
//! until SIGTERM/SIGINT (drain, flush, exit 0) or a fatal error (exit 3 when a
//! restart may help, 2 for configuration errors, among them a non-loopback
//! `--listen` without TLS or `--insecure-plaintext`). Prints
//! `tidemark-ingest listening http=ADDR metrics=ADDR` on stdout once bound.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tidemark_ingest::{IngestConfig, IngestMetrics, ReplayPolicy};

use super::Outcome;
use super::config::{CatalogChoice, KafkaArgs};
use super::front::FrontArgs;
use crate::service::{runner, telemetry};

#[derive(Debug, Args)]
pub struct IngestArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Key registry file (TOML); reloaded on SIGHUP and when it changes.
    #[arg(long, env = "TIDEMARK_KEYS", value_name = "REGISTRY")]
    keys: PathBuf,
    /// Record catalog file (TOML) [default: the built-in v1 catalog].
    #[arg(long, env = "TIDEMARK_CATALOG", value_name = "FILE")]
    catalog: Option<PathBuf>,
    /// Where the HTTP API listens. A non-loopback address needs `--tls-cert`
    /// and `--tls-key`, or `--insecure-plaintext`.
    #[arg(long, env = "TIDEMARK_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    front: FrontArgs,
    /// How long a client may take to send a request body; then 408 and the connection closes.
    #[arg(long, env = "TIDEMARK_BODY_READ_TIMEOUT_MS", default_value_t = 30_000)]
    body_read_timeout_ms: u64,
    /// Where `/metrics` is served.
    #[arg(long, env = "TIDEMARK_METRICS_LISTEN", default_value = "127.0.0.1:9101")]
    metrics_listen: SocketAddr,
    /// Partitions of the edit topic when created; must match when it exists.
    #[arg(long, env = "TIDEMARK_PARTITIONS", default_value_t = 12)]
    partitions: i32,
    /// Largest request body.
    #[arg(long, env = "TIDEMARK_MAX_BODY_BYTES", default_value_t = 8 * 1024 * 1024)]
    max_body_bytes: usize,
    /// Requests handled at once; more get 503.
    #[arg(long, env = "TIDEMARK_MAX_IN_FLIGHT_REQUESTS", default_value_t = 256)]
    max_in_flight_requests: usize,
    /// Bytes requests hold at once: bodies and what checking them keeps
    /// until the answer; more get 503. At least 4 x --max-body-bytes.
    #[arg(long, env = "TIDEMARK_MAX_IN_FLIGHT_BYTES", default_value_t = 256 * 1024 * 1024)]
    max_in_flight_bytes: usize,
    /// How long draining may take at shutdown.
    #[arg(long, env = "TIDEMARK_SHUTDOWN_GRACE_MS", default_value_t = 20_000)]
    shutdown_grace_ms: u64,
    /// How long Kafka may take to acknowledge a record before the request fails with 503.
    #[arg(long, env = "TIDEMARK_PRODUCE_TIMEOUT_MS", default_value_t = 10_000)]
    produce_timeout_ms: u64,
    /// How long to wait for the broker at start.
    #[arg(long, env = "TIDEMARK_STARTUP_TIMEOUT_MS", default_value_t = 15_000)]
    startup_timeout_ms: u64,
    /// Log format.
    #[arg(long, env = "TIDEMARK_LOG_FORMAT", value_enum, default_value_t = telemetry::LogFormat::Text)]
    log_format: telemetry::LogFormat,
    #[command(flatten)]
    replay: ReplayArgs,
}

/// Replay defences (docs/ingest.md, "Replays").
#[derive(Args, Debug)]
struct ReplayArgs {
    /// Refuse events whose `hlc` is older than this (event_too_old). The
    /// default of 7 days lets an EHR's downtime queue drain late.
    #[arg(long, env = "TIDEMARK_MAX_EVENT_AGE_S", default_value_t = 7 * 24 * 3600)]
    max_event_age_s: u64,
    /// Take only events whose signed `audience` is this (wrong_audience
    /// otherwise), so events signed for another deployment that shares keys
    /// are refused.
    #[arg(long, env = "TIDEMARK_AUDIENCE", value_name = "ID")]
    audience: Option<String>,
    /// Remember accepted event ids for at most this long: a copy sent again
    /// within it is answered `duplicate` and not written again.
    #[arg(long, env = "TIDEMARK_DEDUP_WINDOW_S", default_value_t = 3600)]
    dedup_window_s: u64,
    /// Remember at most this many ids (about 36 bytes each, allocated at
    /// start); 0 turns the memory off.
    #[arg(long, env = "TIDEMARK_DEDUP_CAPACITY", default_value_t = 1_000_000)]
    dedup_capacity: usize,
}

pub fn run(args: IngestArgs) -> anyhow::Result<Outcome> {
    let catalog = CatalogChoice::load(args.catalog.as_deref())?.get().clone();
    runner::run(
        "ingest",
        args.log_format,
        args.metrics_listen,
        IngestMetrics::register,
        None,
        move |metrics, maddr, shutdown| {
            let cfg = IngestConfig {
                kafka: args.kafka.connection(),
                keys: args.keys,
                catalog,
                listen: args.listen,
                tls: args.front.tls(),
                insecure_plaintext: args.front.insecure_plaintext,
                header_read_timeout: args.front.header_read_timeout(),
                body_read_timeout: Duration::from_millis(args.body_read_timeout_ms),
                max_connections_per_peer: args.front.max_connections_per_peer,
                max_connections: args.front.max_connections,
                topic_prefix: args.kafka.topic_prefix,
                partitions: args.partitions,
                max_body_bytes: args.max_body_bytes,
                max_in_flight_requests: args.max_in_flight_requests,
                max_in_flight_bytes: args.max_in_flight_bytes,
                shutdown_grace: Duration::from_millis(args.shutdown_grace_ms),
                produce_timeout: Duration::from_millis(args.produce_timeout_ms),
                startup_timeout: Duration::from_millis(args.startup_timeout_ms),
                replay: ReplayPolicy {
                    max_event_age: Duration::from_secs(args.replay.max_event_age_s),
                    audience: args.replay.audience,
                    dedup_window: Duration::from_secs(args.replay.dedup_window_s),
                    dedup_capacity: args.replay.dedup_capacity,
                },
                metrics,
                on_listening: Some(Arc::new(move |addr| {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "tidemark-ingest listening http={addr} metrics={maddr}");
                    let _ = out.flush();
                })),
            };
            tidemark_ingest::run(cfg, shutdown)
        },
    )
}
