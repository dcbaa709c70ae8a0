//! `tidemark-bench-regions`: the cost of reading edits from several regions.
//!
//! - **fold rate, two topics against one**: the same signed events, once all
//!   in one edit topic and once split between the region's own topic and a
//!   mirrored one (`west.` prefix, same partitions), each folded by a fresh
//!   merger on the same Tansu, in the same run; events per second from the
//!   first event folded to the last.
//! - **time to converge after a partition heals**: two Tansu brokers as two
//!   regions, a merger in each reading its own and the other's mirrored edit
//!   topic, joined east to west by testkit's mirror (standing in for
//!   MirrorMaker 2). For each backlog, events are written to east while the
//!   mirror is paused, east folds them, then the mirror resumes: the time
//!   until west has folded all of them (and the mirror's share: until it
//!   has copied them), then both regions' state topics must hold the same
//!   views, byte for byte.
//!
//! Prints the figures and writes them as JSON (`--out`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use tidemark_benches::pipeline::services::{Keys, arg, args, fresh_work, listening, run, start};
use tidemark_benches::pipeline::{bound, run as pipeline_run, scrape};
use tidemark_testkit::process::Service;
use tidemark_testkit::{Mirror, TansuBroker, TansuStorage};

tidemark_benches::service_allocator!();

const FOLDED: &str = "tidemark_merger_events_folded_total";

/// Measures mergers reading several regions' edit topics.
#[derive(Debug, Parser)]
#[command(name = "tidemark-bench-regions")]
struct Args {
    /// The release `tidemark` binary.
    #[arg(long, default_value = "target/release/tidemark")]
    tidemark: PathBuf,
    /// Scratch directory (emptied first).
    #[arg(long, default_value = "target/bench-regions")]
    work: PathBuf,
    /// Where the figures go (JSON).
    #[arg(long, default_value = "docs/benchmarks/regions.json")]
    out: PathBuf,
    /// Signed events folded in the fold-rate comparison.
    #[arg(long, default_value_t = 100_000)]
    events: usize,
    /// Patients they edit.
    #[arg(long, default_value_t = 10_000)]
    patients: usize,
    /// Partitions of every topic.
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// Backlogs (events written to one region while apart), comma separated.
    #[arg(long, default_value = "10000,30000,60000", value_delimiter = ',')]
    backlogs: Vec<usize>,
    /// librdkafka's `fetch.wait.max.ms` for the mergers (Tansu holds a
    /// fetch this long even when records are ready).
    #[arg(long, default_value_t = 20)]
    fetch_wait_ms: u32,
}

fn say(what: &str) {
    eprintln!("bench-regions: {what}");
}

/// What a merger needs to run against one broker.
struct Ctx<'a> {
    tidemark: &'a std::path::Path,
    keys: &'a Keys,
    logs: PathBuf,
    partitions: i32,
    fetch_wait: String,
}

impl Ctx<'_> {
    /// Starts a merger on `brokers` under `prefix`, reading `edits` (the
    /// own topic first); returns it and its metrics address.
    fn merger(&self, name: &str, brokers: &str, prefix: &str, edits: &[String]) -> (Service, String) {
        let mut m = args(["merger", "--brokers", brokers, "--keys", &arg(&self.keys.registry())]);
        m.extend(args(["--state-key", &arg(&self.keys.file("state.key")), "--topic-prefix", prefix]));
        m.extend(args(["--group", &format!("bench-{name}"), "--metrics-listen", "127.0.0.1:0"]));
        m.extend(args(["--partitions", &self.partitions.to_string(), "--kafka-option", &self.fetch_wait]));
        for topic in edits {
            m.extend(args(["--edits-topic", topic]));
        }
        let mut merger = start(self.tidemark, name, &m, &self.logs);
        let metrics = listening(&mut merger, "metrics");
        (merger, metrics)
    }
}

/// Polls `metrics` every 20 ms until `FOLDED` reaches `want`; returns the
/// seconds from the first poll that saw it above `from` to the one that saw
/// `want`.
fn fold_seconds(metrics: &str, from: f64, want: f64, limit: Duration) -> anyhow::Result<f64> {
    let deadline = Instant::now() + limit;
    let mut first: Option<Instant> = None;
    loop {
        let folded = scrape::sum(&scrape::metrics(metrics)?, FOLDED);
        if folded > from && first.is_none() {
            first = Some(Instant::now());
        }
        if folded >= want {
            return Ok(first.map_or(0.0, |t| t.elapsed().as_secs_f64()));
        }
        anyhow::ensure!(Instant::now() < deadline, "timed out: {folded} of {want} events folded");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let t = a.tidemark.as_path();
    let (keys, logs) = fresh_work(t, &a.work)?;
    let write = |file: &PathBuf, n: usize, seed: usize| -> anyhow::Result<Vec<bound::Record>> {
        let mut w = args(["loadgen", "--write-events", &arg(file), "--events", &n.to_string()]);
        w.extend(args(["--patients", &a.patients.to_string(), "--seed", &seed.to_string()]));
        w.extend(keys.site_args());
        run(t, &w)?;
        pipeline_run::records(file)
    };
    let ctx = Ctx {
        tidemark: t,
        keys: &keys,
        logs,
        partitions: a.partitions,
        fetch_wait: format!("fetch.wait.max.ms={}", a.fetch_wait_ms),
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;

    say(&format!("fold rate: {} events for {} patients, one topic, then two", a.events, a.patients));
    let events = write(&a.work.join("events.ndjson"), a.events, 1)?;
    let broker = TansuBroker::start_with(TansuStorage::Memory).context("starting Tansu")?;
    let mut rates = Vec::new();
    for (name, split) in [("one", false), ("two", true)] {
        let own = format!("{name}.tidemark.edits.v1");
        let mirrored = format!("west.{own}");
        let edits = if split { vec![own.clone(), mirrored.clone()] } else { vec![own.clone()] };
        for topic in &edits {
            rt.block_on(broker.create_topic(topic, a.partitions)).with_context(|| format!("creating {topic}"))?;
        }
        // Split: every other event through the mirrored topic, so each
        // patient's events are spread over both (the producer partitions as
        // ingest does, so both topics hold a patient in the same partition).
        let (here, there): (Vec<_>, Vec<_>) =
            events.iter().cloned().enumerate().partition(|(n, _)| !split || n % 2 == 0);
        let strip = |v: Vec<(usize, bound::Record)>| v.into_iter().map(|(_, r)| r).collect::<Vec<_>>();
        bound::produce(broker.bootstrap(), &own, &strip(here))?;
        if split {
            bound::produce(broker.bootstrap(), &mirrored, &strip(there))?;
        }
        let (mut merger, metrics) = ctx.merger(name, broker.bootstrap(), &format!("{name}."), &edits);
        let seconds = fold_seconds(&metrics, 0.0, a.events as f64, Duration::from_secs(900))?;
        merger.kill();
        say(&format!("  {name} topic(s): {:.0} events/s", a.events as f64 / seconds));
        rates.push(a.events as f64 / seconds);
    }
    drop(broker);

    say("time to converge after a partition heals, by backlog");
    // Memory storage: sqlite-backed Tansu took 20 s to take 30,000 mirrored
    // records and timed out on 60,000. Its high watermarks lag what it
    // holds (bound.rs), so the check below reads to the end by idleness,
    // not by watermark as `tidemark converge` does (tests/regions_e2e.rs
    // runs that on sqlite-backed Tansu).
    let east = TansuBroker::start_with(TansuStorage::Memory).context("starting east's Tansu")?;
    let west = TansuBroker::start_with(TansuStorage::Memory).context("starting west's Tansu")?;
    let own = "tidemark.edits.v1".to_owned();
    let (east_edits, west_edits) = (vec![own.clone(), format!("west.{own}")], vec![own.clone(), format!("east.{own}")]);
    let (_east_merger, east_metrics) = ctx.merger("east", east.bootstrap(), "", &east_edits);
    let (_west_merger, west_metrics) = ctx.merger("west", west.bootstrap(), "", &west_edits);
    let mirror = Mirror::start((east.bootstrap(), &own), (west.bootstrap(), &west_edits[1]), a.partitions, true)?;
    let (mut total, mut heals) = (0usize, Vec::new());
    for (round, &backlog) in a.backlogs.iter().enumerate() {
        let batch = write(&a.work.join(format!("backlog-{round}.ndjson")), backlog, 10 + round)?;
        bound::produce(east.bootstrap(), &own, &batch)?;
        let before = total as f64;
        total += backlog;
        fold_seconds(&east_metrics, before, total as f64, Duration::from_secs(900))?;
        let copied_before = mirror.copied();
        let healed = Instant::now();
        mirror.resume();
        let mut copy_s = None;
        let deadline = healed + Duration::from_secs(900);
        loop {
            if copy_s.is_none() && mirror.copied() >= copied_before + backlog as u64 {
                copy_s = Some(healed.elapsed().as_secs_f64());
            }
            if scrape::sum(&scrape::metrics(&west_metrics)?, FOLDED) >= total as f64 {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "west never folded the backlog of {backlog}");
            std::thread::sleep(Duration::from_millis(20));
        }
        let converge_s = healed.elapsed().as_secs_f64();
        mirror.pause();
        // A merger counts events folded once their state records are
        // acknowledged: both regions' views are in place by now, byte for
        // byte the same (one merger build in both).
        let state = "tidemark.patient-state.v1";
        let here = bound::latest_per_key(east.bootstrap(), state, a.partitions, a.fetch_wait_ms)?;
        let there = bound::latest_per_key(west.bootstrap(), state, a.partitions, a.fetch_wait_ms)?;
        let differ = here.iter().zip(&there).filter(|(x, y)| x != y).count() + here.len().abs_diff(there.len());
        anyhow::ensure!(differ == 0, "the regions differ on {differ} of {} patients", here.len().max(there.len()));
        say(&format!(
            "  backlog {backlog}: converged {converge_s:.2} s after the heal (mirror copy {:.2} s); {} patients alike",
            copy_s.unwrap_or(f64::NAN),
            here.len()
        ));
        heals.push(serde_json::json!({
            "backlog_events": backlog,
            "heal_to_folded_s": converge_s,
            "mirror_copy_s": copy_s,
            "events_per_s_after_heal": backlog as f64 / converge_s,
            "patients_compared": here.len(),
        }));
    }
    mirror.stop().map_err(anyhow::Error::msg)?;

    let figures = serde_json::json!({
        "events": a.events,
        "patients": a.patients,
        "partitions": a.partitions,
        "fold_one_topic_per_s": rates[0],
        "fold_two_topics_per_s": rates[1],
        "ratio_two_to_one": rates[1] / rates[0],
        "heals": heals,
    });
    if let Some(dir) = a.out.parent() {
        std::fs::create_dir_all(dir).context("creating the output directory")?;
    }
    std::fs::write(&a.out, serde_json::to_string_pretty(&figures)? + "\n").context("writing the figures")?;
    println!("regions, {} events for {} patients, {} partitions", a.events, a.patients, a.partitions);
    println!(
        "  fold rate      one topic {:>9.0} events/s   two topics {:>9.0} events/s   ratio {:.2}",
        rates[0],
        rates[1],
        rates[1] / rates[0]
    );
    for h in &heals {
        println!(
            "  heal           backlog {:>7}   folded in the other region {:>6.2} s after   mirror copy {:>6.2} s   {:>6.0} events/s",
            h["backlog_events"],
            h["heal_to_folded_s"].as_f64().unwrap_or(f64::NAN),
            h["mirror_copy_s"].as_f64().unwrap_or(f64::NAN),
            h["events_per_s_after_heal"].as_f64().unwrap_or(f64::NAN)
        );
    }
    Ok(())
}
