//! `tidemark-bench-query`: the query service measured beside a running
//! pipeline (Tansu, ingest, a merger, release binaries on this machine), with
//! its bounds in the same run:
//!
//! - catch-up: a fresh query service reading the state topic into its store,
//!   against a raw librdkafka consume of the same topic;
//! - the store's disk bytes per patient;
//! - signed reads (`tidemark loadgen --read`) at a fixed rate while edits
//!   keep arriving: throughput, p50 and p99 from the due time;
//! - the same lookups through `tidemark state` (a process that scans the
//!   patient's partition), the only way to read a patient before.
//!
//! Prints the figures and writes them as JSON (`--out`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use tidemark_benches::pipeline::bound;
use tidemark_benches::pipeline::scrape;
use tidemark_benches::pipeline::services::{arg, args, fresh_work, listening, run, start};
use tidemark_testkit::{TansuBroker, TansuStorage};

tidemark_benches::service_allocator!();

const STATE: &str = "tidemark.patient-state.v1";
/// The query service's audit topic (`tidemark_query::AUDIT_TOPIC`).
const AUDIT: &str = "tidemark.access-audit.v1";

/// Measures the query service.
#[derive(Debug, Parser)]
#[command(name = "tidemark-bench-query")]
struct Args {
    /// The release `tidemark` binary.
    #[arg(long, default_value = "target/release/tidemark")]
    tidemark: PathBuf,
    /// Scratch directory (emptied first).
    #[arg(long, default_value = "target/bench-query")]
    work: PathBuf,
    /// Where the figures go (JSON).
    #[arg(long, default_value = "docs/benchmarks/query.json")]
    out: PathBuf,
    /// Signed events written before measuring.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Patients they edit.
    #[arg(long, default_value_t = 20_000)]
    patients: usize,
    /// Partitions of every topic.
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// Signed reads per second.
    #[arg(long, default_value_t = 5_000.0)]
    read_rate: f64,
    /// Seconds of reads.
    #[arg(long, default_value_t = 20.0)]
    read_seconds: f64,
    /// Readers in flight.
    #[arg(long, default_value_t = 64)]
    read_concurrency: usize,
    /// Edits per second sent while reading (the pipeline keeps running).
    #[arg(long, default_value_t = 500.0)]
    write_rate: f64,
    /// Lookups through `tidemark state`.
    #[arg(long, default_value_t = 20)]
    state_lookups: usize,
    /// librdkafka's `fetch.wait.max.ms` for every consumer (Tansu holds a
    /// fetch this long even when records are ready).
    #[arg(long, default_value_t = 20)]
    fetch_wait_ms: u32,
}

fn say(what: &str) {
    eprintln!("bench-query: {what}");
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let t = a.tidemark.as_path();
    let (keys, logs) = fresh_work(t, &a.work)?;
    let keys_dir = keys.dir.clone();
    run(
        t,
        &args(["keys", "generate", "--kind", "signing", "--scope", "read", "--name", "reader", "--out"])
            .into_iter()
            .chain([arg(&keys_dir)])
            .collect::<Vec<_>>(),
    )?;
    let query_registry = keys_dir.join("query-registry.toml");
    let registry_text =
        std::fs::read_to_string(keys.registry())? + "\n" + &std::fs::read_to_string(keys.file("reader.registry.toml"))?;
    std::fs::write(&query_registry, registry_text).context("writing the query registry")?;
    let (events, trickle) = (a.work.join("events.ndjson"), a.work.join("trickle.ndjson"));
    let trickle_events = (a.write_rate * (a.read_seconds + 5.0)) as usize;
    for (file, n, seed) in [(&events, a.events, "1"), (&trickle, trickle_events.max(1), "2")] {
        let mut w = args(["loadgen", "--write-events", &arg(file), "--events", &n.to_string()]);
        w.extend(args(["--patients", &a.patients.to_string(), "--seed", seed]));
        w.extend(keys.site_args());
        run(t, &w)?;
    }

    let broker = TansuBroker::start_with(TansuStorage::Memory).context("starting Tansu")?;
    let brokers = broker.bootstrap().to_owned();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    for topic in ["tidemark.edits.v1", "tidemark.patient-changelog.v1", STATE, "tidemark.edits.dlq.v1"] {
        rt.block_on(broker.create_topic(topic, a.partitions)).with_context(|| format!("creating {topic}"))?;
    }
    let kafka = args(["--brokers", &brokers]);
    let fetch_wait = format!("fetch.wait.max.ms={}", a.fetch_wait_ms);
    let state_key = arg(&keys.file("state.key"));
    let mut i = args([
        "ingest",
        "--keys",
        &arg(&keys.registry()),
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    i.extend(args(["--partitions", &a.partitions.to_string(), "--max-connections-per-peer", "4096"]));
    i.extend(kafka.clone());
    let mut ingest = start(t, "ingest", &i, &logs);
    let mut m =
        args(["merger", "--keys", &arg(&keys.registry()), "--group", "bench-query", "--metrics-listen", "127.0.0.1:0"]);
    m.extend(args([
        "--state-key",
        &state_key,
        "--partitions",
        &a.partitions.to_string(),
        "--kafka-option",
        &fetch_wait,
    ]));
    m.extend(kafka.clone());
    let mut merger = start(t, "merger", &m, &logs);
    let ingest_url = format!("http://{}", listening(&mut ingest, "http"));
    let merger_metrics = listening(&mut merger, "metrics");

    say(&format!("writing {} events for {} patients", a.events, a.patients));
    run(
        t,
        &args([
            "loadgen",
            "--target",
            &ingest_url,
            "--replay",
            &arg(&events),
            "--rate",
            "0",
            "--concurrency",
            "8",
            "--batch",
            "200",
        ]),
    )?;
    wait("the merger folds every event", Duration::from_secs(600), || {
        Ok(scrape::sum(&scrape::metrics(&merger_metrics)?, "tidemark_merger_events_folded_total") >= a.events as f64)
    })?;

    say("the bound: a raw consume of the state topic");
    let raw = bound::consume(&brokers, STATE, a.partitions, a.fetch_wait_ms, None)?;

    say("catch-up: a fresh query service reads the same topic");
    let store = a.work.join("query-store");
    let mut q = args(["query", "--keys", &arg(&query_registry), "--state-key", &state_key, "--data-dir", &arg(&store)]);
    q.extend(args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--kafka-option", &fetch_wait]));
    q.extend(args(["--max-connections-per-peer", "4096"]));
    q.extend(kafka.clone());
    let started = Instant::now();
    let mut query = start(t, "query", &q, &logs);
    let query_metrics = listening(&mut query, "metrics");
    let query_url = format!("http://{}", listening(&mut query, "http"));
    wait("the query service applies every state record", Duration::from_secs(600), || {
        let text = scrape::metrics(&query_metrics)?;
        Ok(scrape::sum(&text, "tidemark_query_records_read_total") >= raw.records as f64)
    })?;
    let catchup_s = started.elapsed().as_secs_f64();
    let catchup_per_s = raw.records as f64 / catchup_s;
    let store_bytes = dir_bytes(&store)?;

    say(&format!("signed reads at {} /s for {} s, with edits at {} /s", a.read_rate, a.read_seconds, a.write_rate));
    let mut writes = std::process::Command::new(t)
        .args(args([
            "loadgen",
            "--target",
            &ingest_url,
            "--replay",
            &arg(&trickle),
            "--rate",
            &a.write_rate.to_string(),
        ]))
        .args(args(["--batch", "10", "--concurrency", "2"]))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting the edit trickle")?;
    let mut r = args(["loadgen", "--read", "--target", &query_url, "--key", &arg(&keys.file("reader.key"))]);
    r.extend(args(["--rate", &a.read_rate.to_string(), "--duration", &a.read_seconds.to_string()]));
    r.extend(args(["--concurrency", &a.read_concurrency.to_string(), "--patients", &a.patients.to_string(), "--json"]));
    // A patient the workload never edited answers 404: the report counts it.
    r.extend(args(["--max-error-rate", "1"]));
    let scraped_before = scrape::metrics(&query_metrics)?;
    let reads: serde_json::Value = serde_json::from_str(run(t, &r)?.trim()).context("loadgen's report")?;
    // The service's own view of the same requests: where the tail is spent.
    let scraped_after = scrape::metrics(&query_metrics)?;
    let duration = "tidemark_query_request_duration_seconds";
    let service_ms = |q: f64| scrape::quantile_bound(&scraped_before, &scraped_after, duration, q).map(|s| s * 1e3);
    let failed = reads["totals"]["failed_by_status"].as_object().cloned().unwrap_or_default();
    if let Some(status) = failed.keys().find(|s| *s != "404") {
        anyhow::bail!("reads failed with status {status} (only 404s, patients never edited, are expected): {failed:?}");
    }
    // The bound on those reads: the broker's own acknowledgement latency
    // for audit-sized records at the same rate, sent one at a time as the
    // reads' audit records are, with the edits still arriving.
    say("the bound: acks=all records of an audit record's size at the read rate, alone");
    let audit_like: Vec<bound::Record> = (0..(a.read_rate * a.read_seconds / 2.0) as usize)
        .map(|n| {
            let value = format!(
                r#"{{"time":"2026-12-05T00:00:00.000Z","key_id":"bench-reader","source":"bench-ehr","route":"/v1/patients/{{id}}","patient_id":"pt-{n:06}","status":200}}"#
            );
            ("bench-reader".to_owned(), value.into_bytes())
        })
        .collect();
    let audit_bound = bound::paced_latency(&brokers, AUDIT, &audit_like, a.read_rate, 1)?;
    let _ = writes.kill();
    let _ = writes.wait();

    say(&format!("{} lookups through `tidemark state`", a.state_lookups));
    let mut state_ms = Vec::new();
    for n in 0..a.state_lookups {
        let patient = format!("pt-{:06}", n * a.patients / a.state_lookups.max(1));
        let mut s = args(["state", "--state-key", &state_key, &patient, "--kafka-option", &fetch_wait]);
        s.extend(kafka.clone());
        let t0 = Instant::now();
        run(t, &s)?;
        state_ms.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    state_ms.sort_by(f64::total_cmp);
    let pct = |p: f64| state_ms[((state_ms.len() - 1) as f64 * p).round() as usize];

    let figures = serde_json::json!({
        "events": a.events,
        "patients": a.patients,
        "partitions": a.partitions,
        "state_records": raw.records,
        "raw_consume_per_s": raw.per_s(),
        "catchup_per_s": catchup_per_s,
        "catchup_ratio": catchup_per_s / raw.per_s(),
        "catchup_s_including_start": catchup_s,
        "store_bytes": store_bytes,
        "store_bytes_per_patient": store_bytes as f64 / a.patients as f64,
        "reads": reads,
        "service_request_ms_bound": {"p50": service_ms(0.5), "p99": service_ms(0.99)},
        "audit_produce_bound": audit_bound,
        "state_lookup_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": state_ms[state_ms.len() - 1]},
    });
    if let Some(dir) = a.out.parent() {
        std::fs::create_dir_all(dir).context("creating the output directory")?;
    }
    std::fs::write(&a.out, serde_json::to_string_pretty(&figures)? + "\n").context("writing the figures")?;
    let latency = &reads["latency_from_schedule"];
    println!("query service, {} patients, {} state records, {} partitions", a.patients, raw.records, a.partitions);
    println!(
        "  catch-up        {:>9.0} records/s   raw consume {:>9.0} records/s   ratio {:.2} (goal >= 0.5)",
        catchup_per_s,
        raw.per_s(),
        catchup_per_s / raw.per_s()
    );
    println!("  store           {:>9.0} bytes/patient ({store_bytes} bytes)", store_bytes as f64 / a.patients as f64);
    println!(
        "  signed reads    {:>9.0} reads/s at {} /s   p50 {:.2} ms   p99 {:.2} ms from due (goal p99 < 10 ms)   errors {:.3}%",
        reads["accepted_per_s"].as_f64().unwrap_or(0.0),
        a.read_rate,
        latency["p50_ms"].as_f64().unwrap_or(f64::NAN),
        latency["p99_ms"].as_f64().unwrap_or(f64::NAN),
        reads["error_rate"].as_f64().unwrap_or(f64::NAN) * 100.0
    );
    println!(
        "  in the service  p50 <= {:?} ms   p99 <= {:?} ms (request_duration buckets, audit included)",
        service_ms(0.5),
        service_ms(0.99)
    );
    println!(
        "  bound           p50 {:.2} ms   p99 {:.2} ms: acks=all records of an audit record's size, {:.0}/s, one at a time, alone",
        audit_bound.p50_ms, audit_bound.p99_ms, audit_bound.achieved_per_s
    );
    println!(
        "  tidemark state  p50 {:.0} ms   p99 {:.0} ms per lookup (a process, one partition scanned)",
        pct(0.5),
        pct(0.99)
    );
    drop((query, merger, ingest, broker));
    Ok(())
}

/// Polls `done` every 200 ms until it holds or `limit` passes.
fn wait(what: &str, limit: Duration, mut done: impl FnMut() -> anyhow::Result<bool>) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !done()? {
        if Instant::now() > deadline {
            anyhow::bail!("timed out waiting until {what}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// Bytes of the files under `dir`.
fn dir_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() { dir_bytes(&entry.path())? } else { meta.len() };
    }
    Ok(total)
}
