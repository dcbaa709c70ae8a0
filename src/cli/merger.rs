//! `tidemark merger`: one worker of the merger consumer group, with its
//! metrics endpoint (prints `tidemark-merger listening metrics=ADDR` once
//! bound). Runs until SIGTERM/SIGINT (drain, commit, exit 0) or a fatal error (logged, exit 3: the supervisor restarts it from the committed
//! offsets). The key registry is re-read on SIGHUP and when the file changes,
//! as ingest does, with ingest's code (`tidemark_reload`): a key added or
//! revoked applies from the next batch, without a restart.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tidemark_merger::worker::{self, MergerConfig, MergerMetrics, Topics};
use tidemark_reload::{POLL_INTERVAL, Slot, watch_registry};
use tidemark_schemas::verify::Verifier;

use super::Outcome;
use super::config::{CatalogChoice, KafkaArgs};
use crate::service::{metrics_server, runner, telemetry};

#[derive(Debug, Args)]
pub struct MergerArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Key registry file (TOML) the events' signatures are checked against;
    /// re-read on SIGHUP and when it changes.
    #[arg(long, env = "TIDEMARK_KEYS", value_name = "REGISTRY")]
    keys: PathBuf,
    /// State key file(s) (`tidemark keys generate --kind state`): the first
    /// seals the changelog and state records, every one is accepted on
    /// restore (give the previous key second while rotating).
    #[arg(long = "state-key", env = "TIDEMARK_STATE_KEY", value_name = "FILE", required = true, value_delimiter = ',')]
    state_keys: Vec<PathBuf>,
    /// Restore accepts changelog records without a MAC, and seals them
    /// again: for the first start after upgrading to authenticated state
    /// records. Records whose MAC fails are refused either way.
    #[arg(long, env = "TIDEMARK_TRUST_UNSEALED_CHANGELOG")]
    trust_unsealed_changelog: bool,
    /// Record catalog file (TOML) [default: the built-in v1 catalog].
    #[arg(long, env = "TIDEMARK_CATALOG", value_name = "FILE")]
    catalog: Option<PathBuf>,
    /// An edit topic to fold (repeatable, full names: `--topic-prefix` is
    /// not applied). The first is the region's own, the one its ingest
    /// writes and read-your-writes tokens name; the others are mirrored in
    /// from other regions (MirrorMaker 2 names them `REGION.tidemark.edits.v1`)
    /// and must have as many partitions. Every replica of the group needs
    /// the same list (docs/regions.md) [default: PREFIX + tidemark.edits.v1].
    #[arg(long = "edits-topic", env = "TIDEMARK_EDITS_TOPICS", value_name = "TOPIC", value_delimiter = ',')]
    edits_topics: Vec<String>,
    /// The consumer group every merger replica joins.
    #[arg(long, env = "TIDEMARK_GROUP", default_value = "tidemark-merger")]
    group: String,
    /// Partitions of topics created at start when missing.
    #[arg(long, env = "TIDEMARK_PARTITIONS", default_value_t = 12)]
    partitions: i32,
    /// Where `/metrics` is served.
    #[arg(long, env = "TIDEMARK_METRICS_LISTEN", default_value = "127.0.0.1:9102")]
    metrics_listen: SocketAddr,
    /// A batch closes at this many events...
    #[arg(long, env = "TIDEMARK_MAX_BATCH_EVENTS", default_value_t = 2000)]
    max_batch_events: usize,
    /// ...or this many milliseconds after its first event.
    #[arg(long, env = "TIDEMARK_MAX_BATCH_WAIT_MS", default_value_t = 50)]
    max_batch_wait_ms: u64,
    /// Fault injection for tests: abort after N batches' outputs were
    /// acknowledged, before committing the last one's offsets. Only in
    /// builds with the `fault-injection` feature.
    #[cfg(feature = "fault-injection")]
    #[arg(long, hide = true, value_name = "N")]
    fault_abort_before_commit_after_batches: Option<u64>,
    /// Log format.
    #[arg(long, env = "TIDEMARK_LOG_FORMAT", value_enum, default_value_t = telemetry::LogFormat::Text)]
    log_format: telemetry::LogFormat,
}

/// How long the worker's loop may go without coming round before
/// `/healthz` says it is stalled: longer than librdkafka's default delivery
/// timeout (5 minutes), which a batch waiting on a slow broker may use.
const STALL_AFTER: Duration = Duration::from_secs(360);

pub fn run(args: MergerArgs) -> anyhow::Result<Outcome> {
    if args.partitions < 1 {
        anyhow::bail!("--partitions must be at least 1, got {}", args.partitions);
    }
    if args.max_batch_events == 0 {
        anyhow::bail!("--max-batch-events must be at least 1");
    }
    let mut topics = Topics::with_prefix(&args.kafka.topic_prefix);
    if !args.edits_topics.is_empty() {
        let own = topics.local_edits().to_owned();
        topics.edits = edit_topics(&args.edits_topics)?;
        if topics.local_edits() != own {
            // Allowed (an ingest on another prefix), but read-your-writes
            // tokens name the offsets of the topic ingest writes.
            eprintln!(
                "warning: the first --edits-topic, {}, is not {own}: read-your-writes tokens name offsets of the \
                 first edit topic, which must be the one this region's ingest writes",
                topics.local_edits()
            );
        }
    }
    let catalog = CatalogChoice::load(args.catalog.as_deref())?.get().clone();
    let verifier = Arc::new(Slot::new(Verifier::new(crate::keyfiles::load_registry(&args.keys)?)));
    let state_keys = tidemark_seal::load_state_keys(&args.state_keys).context("loading --state-key")?;
    let status = Arc::new(worker::WorkerStatus::default());
    let health = {
        let status = Arc::clone(&status);
        let check: metrics_server::HealthCheck = Arc::new(move || {
            let h = status.health(STALL_AFTER);
            (h.is_alive(), serde_json::to_string(&h).unwrap_or_default())
        });
        check
    };
    runner::run(
        "merger",
        args.log_format,
        args.metrics_listen,
        MergerMetrics::register,
        Some(health),
        move |metrics, addr, shutdown| {
            println!("tidemark-merger listening metrics={addr}");
            let stop_watch = shutdown.child_token();
            let watch = watch_registry(
                args.keys,
                POLL_INTERVAL,
                Arc::clone(&verifier),
                metrics.registry_reloads.clone(),
                stop_watch.clone(),
            );
            let cfg = MergerConfig {
                metrics,
                status,
                kafka: args.kafka.connection(),
                group: args.group,
                topics,
                partitions: args.partitions,
                max_batch_events: args.max_batch_events,
                max_batch_wait: Duration::from_millis(args.max_batch_wait_ms),
                lag_interval: Duration::from_secs(5),
                restore_stall_timeout: Duration::from_secs(60),
                startup_timeout: Duration::from_secs(15),
                catalog: Arc::new(catalog),
                verifier,
                state_keys: Arc::new(state_keys),
                trust_unsealed_changelog: args.trust_unsealed_changelog,
                faults: worker::Faults {
                    #[cfg(feature = "fault-injection")]
                    abort_before_commit_after_batches: args.fault_abort_before_commit_after_batches,
                },
            };
            async move {
                let watcher = tokio::spawn(watch);
                let result = worker::run(cfg, shutdown).await;
                stop_watch.cancel();
                if let Err(e) = watcher.await {
                    tracing::warn!(error = %e, "the key registry watcher ended abnormally");
                }
                result
            }
        },
    )
}

/// The `--edits-topic` list, checked: names Kafka takes, each once.
fn edit_topics(given: &[String]) -> anyhow::Result<Vec<String>> {
    let mut out: Vec<String> = Vec::with_capacity(given.len());
    for (n, topic) in given.iter().enumerate() {
        let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if topic.is_empty() || topic.len() > 249 || !topic.chars().all(legal) || topic == "." || topic == ".." {
            anyhow::bail!(
                "--edits-topic number {}, {topic:?}, is not a Kafka topic name (1-249 of a-z A-Z 0-9 . _ -)",
                n + 1
            );
        }
        if out.contains(topic) {
            anyhow::bail!("--edits-topic {topic} is given twice");
        }
        out.push(topic.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::edit_topics;

    #[test]
    fn edit_topics_keep_their_order_and_refuse_duplicates_and_bad_names() {
        let list = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let ok = edit_topics(&list(&["tidemark.edits.v1", "west.tidemark.edits.v1"])).expect("two topics");
        assert_eq!(ok, list(&["tidemark.edits.v1", "west.tidemark.edits.v1"]));
        let twice = edit_topics(&list(&["a", "b", "a"])).expect_err("a duplicate");
        assert!(twice.to_string().contains("given twice"), "{twice}");
        for bad in ["", "has space", "slash/name", ".", ".."] {
            let e = edit_topics(&list(&["ok", bad])).expect_err(bad);
            assert!(e.to_string().contains("number 2"), "{e}");
        }
    }
}
