//! One benchmark run, phase by phase: keys and pre-signed events, Tansu, the
//! broker's bound, the pipeline at full speed, the pipeline at a fixed rate,
//! then a snapshot. Every figure comes from this run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;
use tidemark_schemas::dsse::Envelope;
use tidemark_testkit::{TansuBroker, TansuStorage};

use super::bound::{self, Record, Throughput};
use super::procs;
use super::sampler::{Sampler, Tick};
use tidemark_testkit::process::Service;

use super::services::{Keys, arg, args, listening, run, start};
use super::snapshot::{Snapshot, StateTopic, scale_snapshot, snapshot};

/// What to run.
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    /// The release `tidemark` binary.
    #[serde(skip)]
    pub tidemark: PathBuf,
    /// Scratch directory (keys, events, logs, archive); emptied first.
    #[serde(skip)]
    pub work: PathBuf,
    /// Signed events sent as fast as ingest takes them.
    pub events: usize,
    /// Patients they edit.
    pub patients: usize,
    /// Events sent at `latency_rate` afterwards.
    pub latency_events: usize,
    /// Target events/s of the latency phase.
    pub latency_rate: f64,
    /// Partitions of every topic.
    pub partitions: i32,
    /// Merger processes (one consumer group).
    pub mergers: usize,
    /// Requests loadgen keeps in flight.
    pub concurrency: usize,
    /// Events per request at full speed.
    pub batch: usize,
    /// Events per request in the fixed-rate phase.
    pub latency_batch: usize,
    /// Tansu's storage engine: `memory` or `sqlite`.
    pub storage: String,
    /// `fetch.wait.max.ms` of the mergers and the bound consumer.
    pub fetch_wait_ms: u32,
    /// Patients of the snapshot at scale (0: none): the run's views copied
    /// under new patient ids into a state topic of their own.
    pub snapshot_patients: usize,
    /// Partitions of that state topic.
    pub snapshot_partitions: i32,
}

/// One load phase as loadgen and the counters saw it.
#[derive(Clone, Debug, Serialize)]
pub struct Phase {
    /// Seconds since the run's start when loadgen started and ended.
    pub from_s: f64,
    /// End of sending.
    pub to_s: f64,
    /// Events acknowledged.
    pub accepted: u64,
    /// Events refused or unanswered.
    pub failed: u64,
    /// Accepted over the sending time.
    pub accepted_per_s: f64,
    /// Request latency (sent to acknowledged), ms.
    pub ack_p50_ms: f64,
    /// p99 of the same.
    pub ack_p99_ms: f64,
    /// Latency from each batch's scheduled send (open loop), ms.
    pub from_due_p99_ms: f64,
    /// Seconds from the phase's start until the mergers had folded every accepted event.
    pub folded_after_s: f64,
    /// Per second of sending: (seconds since run start, p50 ms, p99 ms).
    #[serde(skip)]
    pub latency_timeline: Vec<(f64, f64, f64)>,
}

/// Everything measured.
#[derive(Clone, Debug, Serialize)]
pub struct Results {
    /// What ran.
    pub config: Config,
    /// Raw producer of the same records.
    pub bound_produce: Throughput,
    /// Raw consumer of them.
    pub bound_consume: Throughput,
    /// CPU of the raw consumer per record, microseconds.
    pub bound_consume_cpu_us: f64,
    /// Raw producer's acknowledgement latency at the fixed-rate phase's rate and batch.
    pub bound_latency: bound::Latency,
    /// Full speed.
    pub throughput: Phase,
    /// At `latency_rate`, the mergers paused: ingest and the broker alone on
    /// the machine, as when the mergers run on other nodes.
    pub latency_alone: Phase,
    /// At `latency_rate`, the mergers folding beside ingest on the same cores.
    pub latency: Phase,
    /// Merger CPU per folded event over the full-speed phase, microseconds (all mergers).
    pub merger_cpu_us: f64,
    /// Ingest CPU per accepted event over the full-speed phase, microseconds.
    pub ingest_cpu_us: f64,
    /// Tansu CPU per event over the full-speed phase, microseconds.
    pub broker_cpu_us: f64,
    /// Peak resident set per process, bytes.
    pub peak_rss: BTreeMap<String, u64>,
    /// The snapshot of the run's patients.
    pub snapshot: Snapshot,
    /// The snapshot of `config.snapshot_patients` patients, if asked for.
    pub scale_snapshot: Option<Snapshot>,
    /// The counters over the run, for the plot.
    #[serde(skip)]
    pub ticks: Vec<Tick>,
}

const EDITS: &str = tidemark_schemas::EDITS_TOPIC;
pub(super) const STATE: &str = tidemark_schemas::STATE_TOPIC;
const BOUND: &str = "bench.bound.v1";
/// How long the mergers get to catch up after a phase.
const FOLD_LIMIT: Duration = Duration::from_secs(1800);

pub(super) fn say(msg: &str) {
    eprintln!("bench: {msg}");
}

/// Runs everything in `cfg`.
///
/// # Errors
/// If a step fails; the message names it and where its log is.
pub fn run_all(cfg: Config) -> anyhow::Result<Results> {
    let t = &cfg.tidemark;
    if cfg.work.exists() {
        std::fs::remove_dir_all(&cfg.work).with_context(|| format!("emptying {}", cfg.work.display()))?;
    }
    let logs = cfg.work.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let keys = Keys::generate(t, &cfg.work.join("keys"))?;

    say(&format!("signing {} + 2 x {} events for {} patients", cfg.events, cfg.latency_events, cfg.patients));
    let (full, paced) = (cfg.work.join("events.ndjson"), cfg.work.join("events-paced.ndjson"));
    let alone = cfg.work.join("events-alone.ndjson");
    for (file, n, seed) in
        [(&full, cfg.events, "1"), (&paced, cfg.latency_events, "2"), (&alone, cfg.latency_events, "3")]
    {
        let mut a = args(["loadgen", "--write-events", &arg(file), "--events", &n.to_string()]);
        a.extend(args(["--patients", &cfg.patients.to_string(), "--seed", seed]));
        a.extend(keys.site_args());
        run(t, &a)?;
    }

    let storage = match cfg.storage.as_str() {
        "memory" => TansuStorage::Memory,
        "sqlite" => TansuStorage::Sqlite,
        other => anyhow::bail!("--storage must be memory or sqlite, not `{other}`"),
    };
    let broker = TansuBroker::start_with(storage).context("starting Tansu (scripts/tansu install builds it)")?;
    let _keep = KeepLog { from: broker.log_path().to_owned(), to: logs.join("tansu.log") };
    let brokers = broker.bootstrap().to_owned();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting a runtime")?;
    for topic in [EDITS, "tidemark.patient-changelog.v1", STATE, "tidemark.edits.dlq.v1", BOUND] {
        rt.block_on(broker.create_topic(topic, cfg.partitions)).with_context(|| format!("creating {topic}"))?;
    }

    say("the broker's bound: raw produce and consume of the same records");
    let full_records = records(&full)?;
    let bound_produce = bound::produce(&brokers, BOUND, &full_records)?;
    drop(full_records);
    let ticks = procs::ticks_per_second();
    let before = procs::sample(std::process::id(), ticks).context("reading own CPU")?;
    let bound_consume =
        bound::consume(&brokers, BOUND, cfg.partitions, cfg.fetch_wait_ms, Some(bound_produce.records))?;
    let after = procs::sample(std::process::id(), ticks).context("reading own CPU")?;
    let bound_consume_cpu_us = (after.cpu_s - before.cpu_s) / bound_consume.records as f64 * 1e6;
    say(&format!("bound: produce {:.0}/s, consume {:.0}/s", bound_produce.per_s(), bound_consume.per_s()));

    let kafka = args(["--brokers", &brokers, "--partitions", &cfg.partitions.to_string()]);
    let registry = arg(&keys.registry());
    let mut a = args(["ingest", "--keys", &registry, "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"]);
    // Every loadgen connection comes from 127.0.0.1, up to 8 × --concurrency
    // of them in the paced phase: above the default per-peer cap.
    a.extend(args(["--max-connections-per-peer", "4096"]));
    a.extend(kafka.clone());
    let mut ingest = start(t, "ingest", &a, &logs);
    let mut mergers = (1..=cfg.mergers)
        .map(|i| {
            let mut a =
                args(["merger", "--keys", &registry, "--group", "tidemark-bench", "--metrics-listen", "127.0.0.1:0"]);
            a.extend(args(["--state-key", &arg(&keys.file("state.key"))]));
            a.extend(kafka.clone());
            a.extend(args(["--kafka-option", &format!("fetch.wait.max.ms={}", cfg.fetch_wait_ms)]));
            start(t, &format!("merger-{i}"), &a, &logs)
        })
        .collect::<Vec<_>>();
    let t0 = Instant::now();
    let merger_metrics = mergers.iter_mut().map(|m| listening(m, "metrics")).collect();
    let ingest_metrics = listening(&mut ingest, "metrics");
    let sampler = Sampler::start(t0, ingest_metrics.clone(), merger_metrics);
    if let Some(pid) = broker.pid() {
        sampler.watch("tansu", pid);
    }
    sampler.watch("ingest", pid(&ingest)?);
    for m in &mergers {
        sampler.watch(&m.name, pid(m)?);
    }
    let target = format!("http://{}", listening(&mut ingest, "http"));

    say(&format!("full speed: {} events, {} requests in flight of {} events", cfg.events, cfg.concurrency, cfg.batch));
    let start_tick = sampler
        .wait_for(Duration::from_secs(10), |t| t.procs.contains_key("ingest"))
        .context("the sampler read nothing in 10 s")?;
    let throughput = load(&cfg, &sampler, &target, &full, None, "loadgen-full", t0, &logs)?;
    let mut throughput = throughput;
    let done = folded(&sampler, &ingest_metrics, &mut throughput)?;
    let cpu = |name: &str| {
        done.procs.get(name).map_or(0.0, |p| p.cpu_s) - start_tick.procs.get(name).map_or(0.0, |p| p.cpu_s)
    };
    let events = throughput.accepted as f64;
    let merger_cpu: f64 = mergers.iter().map(|m| cpu(&m.name)).sum();
    let (merger_cpu_us, ingest_cpu_us, broker_cpu_us) =
        (merger_cpu / events * 1e6, cpu("ingest") / events * 1e6, cpu("tansu") / events * 1e6);

    say(&format!(
        "the broker's latency bound: raw produce at {} records/s, {} at a time",
        cfg.latency_rate, cfg.latency_batch
    ));
    let bound_latency = bound::paced_latency(&brokers, BOUND, &records(&paced)?, cfg.latency_rate, cfg.latency_batch)?;
    say(&format!("bound: ack p50 {:.1} ms, p99 {:.1} ms", bound_latency.p50_ms, bound_latency.p99_ms));

    // Ingest's latency with the machine to itself and the broker, then with
    // the mergers folding on the same two cores: the difference is what
    // co-location costs, which a deployment with the mergers on other nodes
    // does not pay. A stopped merger uses no CPU; its backlog folds after.
    let rate = Some(cfg.latency_rate);
    say(&format!("fixed rate, mergers paused: {} events at {} events/s", cfg.latency_events, cfg.latency_rate));
    let paused = Paused::stop(&mergers, &sampler)?;
    let mut latency_alone = load(&cfg, &sampler, &target, &alone, rate, "loadgen-alone", t0, &logs)?;
    drop(paused);
    folded(&sampler, &ingest_metrics, &mut latency_alone)?;
    say(&format!("fixed rate, mergers folding: {} events at {} events/s", cfg.latency_events, cfg.latency_rate));
    let mut latency = load(&cfg, &sampler, &target, &paced, rate, "loadgen-paced", t0, &logs)?;
    folded(&sampler, &ingest_metrics, &mut latency)?;

    say("snapshot");
    // The latest view of every patient, read to the topic's real end: how
    // many patients a snapshot should hold, and the scale snapshot's rows.
    let views = bound::latest_per_key(&brokers, STATE, cfg.partitions, cfg.fetch_wait_ms)?;
    let state =
        StateTopic { brokers: &brokers, partitions: cfg.partitions, patients: views.len() as u64, expected: None };
    let snapshot = snapshot(&cfg, &keys, &sampler, &logs, "archiver", &state)?;
    let scale_snapshot = scale_snapshot(&cfg, &keys, &sampler, &logs, &rt, views)?;
    let ticks = sampler.ticks();
    let mut peak_rss = BTreeMap::new();
    for tick in &ticks {
        for (name, p) in &tick.procs {
            let peak = peak_rss.entry(name.clone()).or_insert(0);
            *peak = p.peak_rss_bytes.max(*peak);
        }
    }
    drop(sampler);
    drop(mergers);
    drop(ingest);
    Ok(Results {
        config: cfg,
        bound_produce,
        bound_consume,
        bound_consume_cpu_us,
        bound_latency,
        throughput,
        latency_alone,
        latency,
        merger_cpu_us,
        ingest_cpu_us,
        broker_cpu_us,
        peak_rss,
        snapshot,
        scale_snapshot,
        ticks,
    })
}

/// Copies the broker's log next to the services' when the run ends, before
/// the broker's temporary directory goes.
pub(super) struct KeepLog {
    pub(super) from: PathBuf,
    pub(super) to: PathBuf,
}

impl Drop for KeepLog {
    fn drop(&mut self) {
        let _ = std::fs::copy(&self.from, &self.to);
    }
}

/// The envelopes of `file` with their patient ids, decoded before any timing.
pub fn records(file: &Path) -> anyhow::Result<Vec<Record>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    text.lines()
        .map(|line| {
            let env = Envelope::decode(line.as_bytes()).context("a written envelope decodes")?;
            let event: serde_json::Value = serde_json::from_slice(env.payload()).context("its payload is JSON")?;
            let patient = event["patient_id"].as_str().context("the event has a patient id")?.to_owned();
            Ok((patient, line.as_bytes().to_vec()))
        })
        .collect()
}

/// `tidemark loadgen --replay FILE` against `target`; its report as a [`Phase`].
#[allow(clippy::too_many_arguments)]
fn load(
    cfg: &Config,
    sampler: &Sampler,
    target: &str,
    file: &Path,
    rate: Option<f64>,
    name: &str,
    t0: Instant,
    logs: &Path,
) -> anyhow::Result<Phase> {
    let log = logs.join(format!("{name}.log"));
    let mut a = args(["loadgen", "--replay", &arg(file), "--target", target, "--json", "--max-error-rate", "0"]);
    let batch = if rate.is_some() { cfg.latency_batch } else { cfg.batch };
    // Open loop: enough senders that a slow answer never holds back a due batch.
    let concurrency = if rate.is_some() { cfg.concurrency * 8 } else { cfg.concurrency };
    a.extend(args(["--concurrency", &concurrency.to_string(), "--batch", &batch.to_string()]));
    a.extend(args(["--rate", &rate.unwrap_or(0.0).to_string()]));
    let from_s = t0.elapsed().as_secs_f64();
    let child = Command::new(&cfg.tidemark)
        .args(&a)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?)
        .spawn()
        .context("starting loadgen")?;
    sampler.watch(name, child.id());
    let out = child.wait_with_output().context("waiting for loadgen")?;
    let to_s = t0.elapsed().as_secs_f64();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("loadgen printed no report ({}); see {}", out.status, log.display()))?;
    if !out.status.success() {
        anyhow::bail!("loadgen had errors ({}): {}; see {}", out.status, report["totals"], log.display());
    }
    let num = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    let timeline = report["timeline"]
        .as_array()
        .map(|secs| {
            secs.iter()
                .filter(|s| s["accepted"].as_u64().unwrap_or(0) > 0)
                .map(|s| (from_s + num(&s["t_s"]) - 0.5, num(&s["latency"]["p50_ms"]), num(&s["latency"]["p99_ms"])))
                .collect()
        })
        .unwrap_or_default();
    let accepted = report["totals"]["accepted"].as_u64().unwrap_or(0);
    Ok(Phase {
        from_s,
        to_s,
        accepted,
        failed: report["totals"]["sent"].as_u64().unwrap_or(0).saturating_sub(accepted),
        accepted_per_s: num(&report["accepted_per_s"]),
        ack_p50_ms: num(&report["latency"]["p50_ms"]),
        ack_p99_ms: num(&report["latency"]["p99_ms"]),
        from_due_p99_ms: num(&report["latency_from_schedule"]["p99_ms"]),
        folded_after_s: f64::NAN,
        latency_timeline: timeline,
    })
}

/// The mergers stopped with SIGSTOP until dropped (SIGCONT). A stopped
/// process is also what a merger on another node looks like to this
/// machine's CPU; its consumer-group session outlives a phase of seconds.
struct Paused<'a> {
    pids: Vec<u32>,
    sampler: &'a Sampler,
}

impl<'a> Paused<'a> {
    fn stop(mergers: &[Service], sampler: &'a Sampler) -> anyhow::Result<Self> {
        sampler.mergers_paused(true);
        let mut paused = Self { pids: Vec::new(), sampler };
        for m in mergers {
            let pid = pid(m)?;
            signal("-STOP", pid)?;
            paused.pids.push(pid);
        }
        Ok(paused)
    }
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        for &pid in &self.pids {
            if let Err(e) = signal("-CONT", pid) {
                say(&format!("resuming merger {pid} failed: {e:#}"));
            }
        }
        self.sampler.mergers_paused(false);
    }
}

/// The process id of a service that should be running.
fn pid(service: &Service) -> anyhow::Result<u32> {
    service.id().with_context(|| format!("{} is not running", service.name))
}

fn signal(sig: &str, pid: u32) -> anyhow::Result<()> {
    let status = Command::new("kill").args([sig, &pid.to_string()]).status().context("running kill")?;
    anyhow::ensure!(status.success(), "kill {sig} {pid} failed: {status}");
    Ok(())
}

/// Waits until the mergers folded every event ingest accepted; sets
/// `phase.folded_after_s` and returns that reading.
fn folded(sampler: &Sampler, ingest_metrics: &str, phase: &mut Phase) -> anyhow::Result<Tick> {
    let text = super::scrape::metrics(ingest_metrics)?;
    let accepted = super::scrape::sum(&text, "tidemark_ingest_events_accepted_total");
    let tick = sampler
        .wait_for(FOLD_LIMIT, |t| t.folded >= accepted)
        .with_context(|| format!("the mergers did not fold {accepted} events in {FOLD_LIMIT:?}"))?;
    phase.folded_after_s = tick.t_s - phase.from_s;
    say(&format!("folded {} events {:.1} s after the phase began", tick.folded, phase.folded_after_s));
    Ok(tick)
}
