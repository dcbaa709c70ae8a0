//! `tidemark loadgen`: signed synthetic edits at a target rate against a
//! running ingest. Progress every second on stderr; at the end, throughput,
//! latency percentiles and errors by status on stdout (text, or `--json` for
//! harnesses). Exit 1 when the error rate passes `--max-error-rate`.
//!
//! With `--read`, it reads instead: signed `GET /v1/patients/{id}` against a
//! query service, at `--rate` reads per second over the `--patients` the
//! write side names, each signed afresh with a `--key` holding the `read`
//! scope.
//!
//! For benchmarks, `--write-events FILE --events N` signs the events
//! beforehand (no ingest needed) and `--replay FILE` sends them: on a small
//! machine the sender then spends no CPU on Ed25519 signing beside the
//! pipeline it measures.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;

use super::Outcome;
use crate::keyfiles::load_signing_key;
use crate::load::{
    EventsClient, Load, OnAccepted, Percentiles, ReadClient, ReadLoad, Recorder, SecondSummary, Shape, Source, Totals,
    Worker,
};
use crate::service::shutdown;
use crate::synth::{Clinic, ClinicConfig, SeededRng};

#[derive(Debug, Args)]
pub struct LoadgenArgs {
    /// The ingest to load: its base URL (`http://HOST:PORT`, `https://HOST:PORT`) or its events endpoint.
    #[arg(long, value_name = "URL", required_unless_present = "write_events")]
    target: Option<String>,
    /// CA certificates (PEM) an `https://` target's certificate must chain
    /// to [default: the system's roots].
    #[arg(long, value_name = "FILE")]
    cacert: Option<PathBuf>,
    /// A signing key file (`tidemark keys generate --kind signing`), one per site (repeatable); the
    /// ingest's key registry must list them.
    #[arg(long = "key", value_name = "FILE", required_unless_present = "replay")]
    keys: Vec<PathBuf>,
    /// Sign `--events` events into this file (NDJSON envelopes, as the
    /// clinicians would send them) and exit, sending nothing.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["target", "replay", "record"])]
    write_events: Option<PathBuf>,
    /// How many events `--write-events` signs.
    #[arg(long, default_value_t = 100_000, requires = "write_events")]
    events: usize,
    /// Send the envelopes of this file (e.g. from `--write-events`) in order
    /// instead of signing new ones; ends when they are all sent (or at `--duration`).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["keys", "record"])]
    replay: Option<PathBuf>,
    /// Target events per second over all senders; 0 sends as fast as the ingest answers.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Seconds to send for [default: 10, or until a `--replay` file is sent].
    #[arg(long)]
    duration: Option<f64>,
    /// Requests in flight at once (senders; sender i signs with key i mod the number of keys).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Events per request (an NDJSON batch).
    #[arg(long, default_value_t = 50)]
    batch: usize,
    /// Patients edited.
    #[arg(long, default_value_t = 10_000)]
    patients: usize,
    /// Prefix of the patient ids (a key may be restricted to prefixes).
    #[arg(long, default_value = "pt-")]
    patient_prefix: String,
    /// Seed of the event mix.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Send a line again, up to this many times, when it failed with no
    /// response, 429 or a 5xx (as an integration retries; events are idempotent).
    #[arg(long, default_value_t = 0)]
    retries: u32,
    /// Exit 1 when failed events / sent events passes this.
    #[arg(long, default_value_t = 0.01)]
    max_error_rate: f64,
    /// Append every acknowledged envelope to this file (NDJSON), e.g. for `tidemark fold`.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// How long one request may take.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
    /// Print the final report as one JSON object.
    #[arg(long)]
    json: bool,
    /// Read instead of write: signed reads of the `--patients` patients from a
    /// query service (`--target` its base URL, one `--key` with the read scope).
    #[arg(long, conflicts_with_all = ["write_events", "replay", "record"])]
    read: bool,
}

/// The final report.
#[derive(Serialize)]
struct Report {
    /// `events` (the write side) or `reads`.
    unit: &'static str,
    target: String,
    target_rate: Option<f64>,
    concurrency: usize,
    batch: usize,
    elapsed_s: f64,
    totals: Totals,
    accepted_per_s: f64,
    error_rate: f64,
    latency: Percentiles,
    latency_from_schedule: Percentiles,
    timeline: Vec<SecondSummary>,
}

impl Report {
    /// The report of a run of `elapsed` that `recorder` measured.
    fn of(
        unit: &'static str,
        target: &str,
        target_rate: Option<f64>,
        concurrency: usize,
        batch: usize,
        elapsed: Duration,
        recorder: &Recorder,
    ) -> Self {
        let totals = recorder.totals();
        let elapsed_s = elapsed.as_secs_f64();
        Self {
            unit,
            target: target.to_owned(),
            target_rate,
            concurrency,
            batch,
            elapsed_s,
            accepted_per_s: totals.accepted as f64 / elapsed_s,
            error_rate: totals.error_rate(),
            totals,
            latency: recorder.service_latency(),
            latency_from_schedule: recorder.scheduled_latency(),
            timeline: recorder.timeline(),
        }
    }
}

/// The longest `--duration`, and how long a replay may run.
const YEAR_S: f64 = 31_536_000.0;

fn check(args: &LoadgenArgs) -> anyhow::Result<()> {
    if !(args.rate == 0.0 || (0.001..=10_000_000.0).contains(&args.rate)) {
        anyhow::bail!("--rate must be 0 (unlimited) or 0.001 to 10,000,000 events per second, got {}", args.rate);
    }
    if let Some(d) = args.duration.filter(|d| !(0.001..=YEAR_S).contains(d)) {
        anyhow::bail!("--duration must be 0.001 to 31,536,000 seconds (a year), got {d}");
    }
    if args.concurrency == 0 || args.batch == 0 || args.patients == 0 {
        anyhow::bail!("--concurrency, --batch and --patients must be at least 1");
    }
    if !(0.0..=1.0).contains(&args.max_error_rate) {
        anyhow::bail!("--max-error-rate is a fraction between 0 and 1, got {}", args.max_error_rate);
    }
    Ok(())
}

/// The synthetic population of `args`.
fn clinic(args: &LoadgenArgs) -> anyhow::Result<Clinic> {
    let keys = args.keys.iter().map(|p| load_signing_key(p)).collect::<anyhow::Result<Vec<_>>>()?;
    let mut cfg = ClinicConfig::new(args.patients);
    cfg.patient_prefix.clone_from(&args.patient_prefix);
    Ok(Clinic::new(keys, cfg))
}

/// `--write-events`: `--events` signed events, planned as if each was
/// acknowledged at once (so stale and blind reads happen as in a live run).
fn write_events(args: &LoadgenArgs, path: &Path) -> anyhow::Result<Outcome> {
    if args.events == 0 {
        anyhow::bail!("--events must be at least 1");
    }
    let clinic = clinic(args)?;
    let authors: Vec<(usize, String)> =
        (0..args.concurrency).map(|i| (i % clinic.site_count(), format!("loadgen-{i}"))).collect();
    let mut rng = SeededRng::new(args.seed);
    let mut out = BufWriter::new(File::create(path).with_context(|| format!("creating {}", path.display()))?);
    for i in 0..args.events {
        let (site, author) = &authors[i % authors.len()];
        let planned = clinic.plan(*site, author, &mut rng);
        clinic.acknowledged(&planned);
        writeln!(out, "{}", planned.envelope).with_context(|| format!("writing {}", path.display()))?;
    }
    out.flush().with_context(|| format!("writing {}", path.display()))?;
    eprintln!("loadgen: wrote {} signed events for {} patients to {}", args.events, args.patients, path.display());
    Ok(Outcome::Ok)
}

/// `--replay`: the file's non-empty lines.
fn read_envelopes(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading --replay file {}", path.display()))?;
    let lines: Vec<String> = text.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect();
    if lines.is_empty() {
        anyhow::bail!("--replay file {} holds no envelope", path.display());
    }
    Ok(lines)
}

pub fn run(args: LoadgenArgs) -> anyhow::Result<Outcome> {
    check(&args)?;
    if let Some(path) = &args.write_events {
        return write_events(&args, path);
    }
    if args.read {
        return read(&args);
    }
    let target = args.target.as_deref().context("--target is required")?;
    let client = EventsClient::new(target, Duration::from_millis(args.timeout_ms), args.cacert.as_deref())?;
    let (source, default_duration) = match &args.replay {
        Some(path) => (Source::Replay(Arc::new(read_envelopes(path)?)), YEAR_S),
        None => (Source::Synthetic(Arc::new(clinic(&args)?)), 10.0),
    };
    let site_count = match &source {
        Source::Synthetic(clinic) => clinic.site_count(),
        Source::Replay(_) => 1,
    };
    let record = match &args.record {
        Some(path) => Some(Arc::new(Mutex::new(BufWriter::new(
            File::create(path).with_context(|| format!("creating --record file {}", path.display()))?,
        )))),
        None => None,
    };
    let on_accepted: Option<OnAccepted> = record.clone().map(|file| {
        Arc::new(move |p: &crate::synth::Planned| {
            let mut f = file.lock().unwrap_or_else(PoisonError::into_inner);
            // A write error surfaces at the flush below.
            let _ = writeln!(f, "{}", p.envelope);
        }) as OnAccepted
    });
    let workers =
        (0..args.concurrency).map(|i| Worker { site: i % site_count, author: format!("loadgen-{i}") }).collect();
    let shape = Shape {
        rate: (args.rate > 0.0).then_some(args.rate),
        duration: Duration::from_secs_f64(args.duration.unwrap_or(default_duration)),
        batch: args.batch,
        retries: args.retries,
    };
    let recorder = Arc::new(Recorder::default());
    let load = Load {
        source,
        client: client.clone(),
        shape,
        workers,
        seed: args.seed,
        recorder: Arc::clone(&recorder),
        on_accepted,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    let elapsed = runtime.block_on(async {
        let stop = shutdown::on_signals();
        let started = tokio::time::Instant::now();
        let progress = tokio::spawn(progress(Arc::clone(&recorder), started));
        load.run(stop).await;
        progress.abort();
        started.elapsed()
    });
    if let Some(file) = record {
        let mut f = file.lock().unwrap_or_else(PoisonError::into_inner);
        f.flush().context("writing the --record file")?;
    }
    let report = Report::of("events", client.url(), shape.rate, args.concurrency, args.batch, elapsed, &recorder);
    finish(&report, args.json, args.max_error_rate)
}

/// Prints the report; the outcome by its error rate.
fn finish(report: &Report, json: bool, max_error_rate: f64) -> anyhow::Result<Outcome> {
    if json {
        println!("{}", serde_json::to_string(report).context("encoding the report")?);
    } else {
        print_report(report);
    }
    if report.totals.sent == 0 {
        eprintln!("loadgen: nothing was sent");
        return Ok(Outcome::SomeInputFailed);
    }
    if report.error_rate > max_error_rate {
        eprintln!(
            "loadgen: error rate {:.2}% is above --max-error-rate {:.2}%",
            report.error_rate * 100.0,
            max_error_rate * 100.0
        );
        return Ok(Outcome::SomeInputFailed);
    }
    Ok(Outcome::Ok)
}

/// `--read`: signed reads at the rate, then the report.
fn read(args: &LoadgenArgs) -> anyhow::Result<Outcome> {
    let target = args.target.as_deref().context("--target is required")?;
    let [key_path] = args.keys.as_slice() else {
        anyhow::bail!("--read signs with one --key (a key with the read scope)");
    };
    let key = load_signing_key(key_path)?;
    let client =
        Arc::new(ReadClient::new(target, key, Duration::from_millis(args.timeout_ms), args.cacert.as_deref())?);
    let mut cfg = ClinicConfig::new(args.patients);
    cfg.patient_prefix.clone_from(&args.patient_prefix);
    let patients = Arc::new((0..args.patients).map(|p| cfg.patient_id(p)).collect::<Vec<_>>());
    let recorder = Arc::new(Recorder::default());
    let load = ReadLoad {
        client,
        rate: (args.rate > 0.0).then_some(args.rate),
        duration: Duration::from_secs_f64(args.duration.unwrap_or(10.0)),
        concurrency: args.concurrency,
        patients,
        seed: args.seed,
        recorder: Arc::clone(&recorder),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    let elapsed = runtime.block_on(async {
        let stop = shutdown::on_signals();
        let started = tokio::time::Instant::now();
        load.run(stop).await;
        started.elapsed()
    });
    let rate = (args.rate > 0.0).then_some(args.rate);
    let report = Report::of("reads", target, rate, args.concurrency, 1, elapsed, &recorder);
    finish(&report, args.json, args.max_error_rate)
}

async fn progress(recorder: Arc<Recorder>, started: tokio::time::Instant) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last = 0;
    loop {
        tick.tick().await;
        let t = recorder.totals();
        eprintln!(
            "loadgen [{:>4.0}s] sent {:>9}  accepted {:>9}  failed {:>6}  {:>7} ev/s",
            started.elapsed().as_secs_f64(),
            t.sent,
            t.accepted,
            t.failed(),
            t.accepted - last
        );
        last = t.accepted;
    }
}

fn print_report(r: &Report) {
    let t = &r.totals;
    let unit = r.unit;
    let rate = r.target_rate.map_or_else(|| "unlimited".to_owned(), |x| format!("{x:.0} {unit}/s"));
    println!("loadgen: {:.1} s against {}", r.elapsed_s, r.target);
    println!("  load:        target {rate}, concurrency {}, batch {}", r.concurrency, r.batch);
    println!(
        "  {:<13}sent {}  accepted {}  failed {} ({:.2}%)",
        format!("{unit}:"),
        t.sent,
        t.accepted,
        t.failed(),
        r.error_rate * 100.0
    );
    println!(
        "  throughput:  {:.0} {unit}/s accepted ({} requests, {:.1} requests/s)",
        r.accepted_per_s,
        t.requests,
        t.requests as f64 / r.elapsed_s
    );
    let p = |x: &Percentiles| {
        format!("p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms", x.p50_ms, x.p90_ms, x.p99_ms, x.max_ms)
    };
    println!("  latency:     {}  (request sent to answered)", p(&r.latency));
    println!("  from due:    {}  (scheduled send to answered)", p(&r.latency_from_schedule));
    let by_status = |m: &std::collections::BTreeMap<u16, u64>| {
        let list: Vec<String> =
            m.iter().map(|(s, n)| if *s == 0 { format!("no response: {n}") } else { format!("{s}: {n}") }).collect();
        if list.is_empty() { "none".to_owned() } else { list.join(", ") }
    };
    println!("  errors:      {}", by_status(&t.failed_by_status));
    if !t.retried_by_status.is_empty() {
        println!("  retried:     {}", by_status(&t.retried_by_status));
    }
}
