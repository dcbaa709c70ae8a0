//! `tidemark demo`: the whole pipeline in one process on an embedded Kafka,
//! with synthetic clinicians from three sites editing concurrently over HTTP,
//! progress while it runs and a summary that checks itself at the end:
//! accepted events = events folded into the state topic, conflicts surfaced,
//! and a snapshot that verifies.

mod pipeline;
mod setup;
mod summary;
mod views;

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use prometheus_client::registry::Registry;
use tidemark_archiver::storage::Archive;
use tidemark_archiver::{ArchiverMetrics, reader};

pub use self::summary::Summary;
use crate::load::{EventsClient, Load, OnAccepted, Recorder, Shape, Source, Worker};
use crate::service::metrics_server;
use crate::synth::{Clinic, ClinicConfig, Planned};

/// The librdkafka mock cluster drops the oldest records of a partition past
/// 5 MiB. With about 0.8 KB per edit and up to 2 KB per state and changelog
/// record, this many events per partition stays well inside it.
const MOCK_EVENTS_PER_PARTITION: f64 = 1500.0;

/// What the demo runs.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Where keys, envelopes, views and the archive go.
    pub dir: PathBuf,
    /// How long clinicians send edits.
    pub duration: Duration,
    /// Patients edited.
    pub patients: usize,
    /// Target events per second.
    pub rate: f64,
    /// Clinicians per site (each one a concurrent HTTP sender).
    pub clinicians_per_site: usize,
    /// Events per request.
    pub batch: usize,
    /// Partitions of every topic.
    pub partitions: i32,
    /// Merger workers in the consumer group.
    pub mergers: usize,
    /// A real Kafka instead of the embedded one.
    pub brokers: Option<String>,
    /// librdkafka options (for a real Kafka).
    pub kafka_options: Vec<(String, String)>,
    /// Seed of the edit mix.
    pub seed: u64,
}

impl DemoOptions {
    /// Refuses options that cannot work, with what to change.
    ///
    /// # Errors
    /// Which option is wrong and why.
    pub fn check(&self) -> anyhow::Result<()> {
        if !(self.rate.is_finite() && self.rate > 0.0) || self.duration.is_zero() {
            anyhow::bail!("--rate and --duration must be positive");
        }
        if self.patients == 0 || self.clinicians_per_site == 0 || self.batch == 0 || self.mergers == 0 {
            anyhow::bail!("--patients, --clinicians-per-site, --batch and --mergers must be at least 1");
        }
        if self.partitions < 1 {
            anyhow::bail!("--partitions must be at least 1");
        }
        let events = self.rate * self.duration.as_secs_f64();
        let capacity = MOCK_EVENTS_PER_PARTITION * f64::from(self.partitions);
        if self.brokers.is_none() && events > capacity {
            anyhow::bail!(
                "{events:.0} events (--rate x --duration) are more than the embedded Kafka keeps: librdkafka's mock \
                 cluster drops a partition's oldest records past 5 MiB, about {capacity:.0} demo events over {} \
                 partitions. Lower --rate or --duration, raise --partitions, or use --brokers",
                self.partitions
            );
        }
        Ok(())
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Runs the demo and returns its summary (printed by the caller).
///
/// # Errors
/// If a service cannot start or fails, or the snapshot cannot be taken.
pub async fn run(opts: DemoOptions) -> anyhow::Result<Summary> {
    opts.check()?;
    let (dir, keys) = setup::prepare(&opts.dir)?;
    say(&format!(
        "tidemark demo: {} patients, {} sites x {} clinicians, {:.0} events/s for {:.0} s",
        opts.patients,
        setup::SITES.len(),
        opts.clinicians_per_site,
        opts.rate,
        opts.duration.as_secs_f64()
    ));
    say(&format!("  keys and registry in {}", dir.root.display()));

    // A run on a real Kafka gets topics of its own, so runs never mix.
    let topic_prefix = match opts.brokers {
        Some(_) => format!("demo-{}.", &uuid::Uuid::now_v7().simple().to_string()[20..]),
        None => String::new(),
    };
    let mut registry = Registry::default();
    let pipeline = pipeline::Pipeline::start(
        pipeline::Options {
            brokers: opts.brokers.clone(),
            kafka_options: opts.kafka_options.clone(),
            topic_prefix: topic_prefix.clone(),
            partitions: opts.partitions,
            mergers: opts.mergers,
            registry: dir.registry(),
            state_keys: Arc::new(keys.state),
        },
        &mut registry,
    )
    .await?;
    let archiver_metrics = ArchiverMetrics::register(&mut registry);
    let (metrics_addr, metrics_task) =
        metrics_server::serve(([127, 0, 0, 1], 0).into(), registry, None, pipeline.shutdown.clone()).await?;
    match &opts.brokers {
        None => say(&format!(
            "  kafka: embedded (librdkafka mock cluster at {}), {} partitions",
            pipeline.bootstrap, opts.partitions
        )),
        Some(b) => say(&format!("  kafka: {b}, topics prefixed {topic_prefix}")),
    }
    say(&format!(
        "  ingest http://{}/v1/events, {} merger workers, metrics http://{metrics_addr}/metrics",
        pipeline.ingest, opts.mergers
    ));

    let envelopes = Arc::new(Mutex::new(BufWriter::new(
        File::create(dir.envelopes()).with_context(|| format!("creating {}", dir.envelopes().display()))?,
    )));
    let sink = Arc::clone(&envelopes);
    let on_accepted: OnAccepted = Arc::new(move |p: &Planned| {
        // A write error surfaces at the flush after the load.
        let _ = writeln!(sink.lock().unwrap_or_else(PoisonError::into_inner), "{}", p.envelope);
    });
    let clinic = Arc::new(Clinic::new(keys.sites, ClinicConfig::new(opts.patients)));
    let workers = (0..setup::SITES.len())
        .flat_map(|site| {
            (0..opts.clinicians_per_site).map(move |c| Worker { site, author: format!("clin-{}", site * 100 + c) })
        })
        .collect();
    let recorder = Arc::new(Recorder::default());
    let load = Load {
        source: Source::Synthetic(clinic),
        client: EventsClient::new(&format!("http://{}", pipeline.ingest), Duration::from_secs(30), None)?,
        shape: Shape { rate: Some(opts.rate), duration: opts.duration, batch: opts.batch, retries: 0 },
        workers,
        seed: opts.seed,
        recorder: Arc::clone(&recorder),
        on_accepted: Some(on_accepted),
    };

    let started = Instant::now();
    let stop = pipeline.shutdown.child_token();
    let mut load_task = tokio::spawn(load.run(stop.clone()));
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = &mut load_task => break,
            _ = tick.tick() => {
                progress(&pipeline, &recorder, started);
                if let Some(name) = pipeline.failed_service() {
                    stop.cancel();
                    let _ = (&mut load_task).await;
                    pipeline.stop().await?;
                    anyhow::bail!("{name} stopped during the demo");
                }
            }
        }
    }
    let load_time = started.elapsed();
    envelopes.lock().unwrap_or_else(PoisonError::into_inner).flush().context("writing the accepted envelopes")?;
    let totals = recorder.totals();
    say(&format!(
        "  clinicians done: {} events accepted in {:.1} s; waiting for the mergers",
        totals.accepted,
        load_time.as_secs_f64()
    ));

    let views = drain(&pipeline, totals.accepted).await?;
    summary::write_views(&dir.state(), &views.views)?;
    let matches_reference = reference_matches(&dir, &views)?;
    let dlq = tokio::task::block_in_place(|| count_dlq(&pipeline))?;

    say("  taking a snapshot (identified profile, encrypted to the analytics key)");
    let archive = Archive::open(&dir.archive().to_string_lossy())?;
    let archiver_pub = keys.archiver.verifying_key();
    let committed = pipeline
        .snapshot(archive.clone(), keys.archiver, keys.recipient.public_key().clone(), archiver_metrics)
        .await?;
    let verified =
        reader::verify(&archive, "identified", &committed.manifest.snapshot_id, &archiver_pub, Some(&keys.recipient))
            .await
            .context("verifying the snapshot just written")?;
    let bootstrap = pipeline.bootstrap.clone();
    let conflicts_surfaced = pipeline.conflicts_created();
    pipeline.stop().await?;
    let _ = metrics_task.await;

    Ok(Summary {
        dir,
        embedded: opts.brokers.is_none(),
        bootstrap,
        topic_prefix,
        totals,
        load_time,
        latency: recorder.service_latency(),
        views,
        matches_reference,
        conflicts_surfaced,
        dlq,
        committed,
        pages_checked: verified.pages_checked,
    })
}

/// One progress line: what clinicians sent, what ingest accepted, what the
/// mergers folded, the lag between them, and conflicts surfaced.
fn progress(pipeline: &pipeline::Pipeline, recorder: &Recorder, started: Instant) {
    let t = recorder.totals();
    let folded = pipeline.folded();
    say(&format!(
        "  [{:>3.0}s] sent {:>7}  accepted {:>7}  folded {:>7}  lag {:>5}  conflicts {:>5}",
        started.elapsed().as_secs_f64(),
        t.sent,
        t.accepted,
        folded,
        t.accepted.saturating_sub(folded),
        pipeline.conflicts_created()
    ));
}

/// Waits until the mergers folded every accepted event and the state topic
/// accounts for all of them (or 60 s pass: the summary then shows the gap).
async fn drain(pipeline: &pipeline::Pipeline, accepted: u64) -> anyhow::Result<views::Views> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while pipeline.folded() < accepted && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    loop {
        let (kafka, topic, keys) =
            (pipeline.connection(), pipeline.topics.state.clone(), Arc::clone(&pipeline.state_keys));
        let read = tokio::task::spawn_blocking(move || views::read(&kafka, &topic, &keys))
            .await
            .context("the state reader panicked")??;
        if read.events() >= accepted || Instant::now() >= deadline {
            return Ok(read);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Whether the live views equal the reference fold (`tidemark fold`) of
/// exactly the envelopes ingest accepted: the pipeline's correctness check.
fn reference_matches(dir: &setup::DemoDir, live: &views::Views) -> anyhow::Result<bool> {
    let registry = crate::keyfiles::load_registry(&dir.registry())?;
    let verifier = tidemark_schemas::verify::Verifier::new(registry);
    let catalog = tidemark_schemas::Catalog::builtin();
    let mut fold = tidemark_crdt::fold::Fold::new(catalog, Some(&verifier));
    let text = std::fs::read(dir.envelopes()).with_context(|| format!("reading {}", dir.envelopes().display()))?;
    let lines: Vec<(usize, &[u8])> =
        text.split(|b| *b == b'\n').filter(|l| !l.is_empty()).enumerate().map(|(i, l)| (i + 1, l)).collect();
    if !fold.fold_lines(&lines).is_empty() {
        return Ok(false);
    }
    let encode = |v: &tidemark_schemas::PatientView| serde_json::to_string(v).unwrap_or_default();
    let reference: Vec<String> = fold.views().map(|v| encode(&v)).collect();
    let seen: Vec<String> = live.views.values().map(encode).collect();
    Ok(reference == seen)
}

/// Records in the dead-letter topic.
fn count_dlq(pipeline: &pipeline::Pipeline) -> anyhow::Result<u64> {
    let consumer = pipeline.connection().reader("tidemark-demo")?;
    let cut = tidemark_kafka::scan::capture_cut(&consumer, &pipeline.topics.dlq, Duration::from_secs(10))
        .context("reading the dead-letter topic's offsets")?;
    Ok(cut.iter().map(|c| u64::try_from(c.end - c.low).unwrap_or(0)).sum())
}
