//! The run written down: `pipeline.json` (every figure), `pipeline.png` (the
//! plot) and the section of docs/benchmarks.md between its markers.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;

use super::plot::{self, Figure, Series, Span};
use super::run::Results;
use crate::report::grouped;

/// Markers around the generated section of docs/benchmarks.md.
pub const BEGIN: &str = "<!-- pipeline:begin: written by scripts/bench-pipeline, do not edit by hand -->";
/// End marker.
pub const END: &str = "<!-- pipeline:end -->";

/// The CPU model, cores and memory of this machine, from `/proc`.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, v)| v.trim().to_owned()))
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find_map(|l| l.strip_prefix("MemTotal:")?.split_whitespace().next()?.parse().ok()))
        .unwrap_or(0);
    format!("{model}, {cores} cores, {:.0} GiB", mem_kib as f64 / 1024.0 / 1024.0)
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "**not met**" }
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / 1024.0 / 1024.0)
}

/// The markdown section (without markers).
pub fn section(r: &Results, date: &str, plot_path: &str) -> String {
    let c = &r.config;
    let (full, alone, paced, snap) = (&r.throughput, &r.latency_alone, &r.latency, &r.snapshot);
    let e2e = full.accepted as f64 / full.folded_after_s;
    let rows_per_s = snap.rows as f64 / snap.seconds;
    let mut s = String::new();
    let _ = writeln!(s, "Run of {date} on {}.\n", machine());
    let _ = writeln!(
        s,
        "Workload: {} signed events for {} patients (signed beforehand by `tidemark loadgen --write-events`, \
         replayed by `tidemark loadgen --replay` with {} requests of {} events in flight), then {} more at {} events/s \
         (open loop, requests of {} events), once with the mergers paused and once with them folding. Tansu 0.6.0 ({} storage) on the same machine, {} partitions, {} merger process(es) and the bound \
         consumer with `fetch.wait.max.ms={}`, all release builds; the load generator and the harness share the \
         same two cores.\n",
        grouped(c.events as f64),
        grouped(c.patients as f64),
        c.concurrency,
        c.batch,
        grouped(2.0 * c.latency_events as f64),
        grouped(c.latency_rate),
        c.latency_batch,
        c.storage,
        c.partitions,
        c.mergers,
        c.fetch_wait_ms
    );
    s += "| Figure | Tidemark | Bound, same run | Ratio | Target ([design](design.md#targets)) |\n|---|---|---|---|---|\n";
    let mut row = |a: &str, b: String, c: String, d: String, e: String| {
        let _ = writeln!(s, "| {a} | {b} | {c} | {d} | {e} |");
    };
    row(
        "Accepted events/s, full speed",
        grouped(full.accepted_per_s),
        format!("{} records/s raw produce", grouped(r.bound_produce.per_s())),
        format!("{:.2}", full.accepted_per_s / r.bound_produce.per_s()),
        format!(">= 25,000: {}", met(full.accepted_per_s >= 25_000.0)),
    );
    let lb = &r.bound_latency;
    for (phase, beside) in [(alone, "mergers paused (on other nodes)"), (paced, "mergers folding on the same cores")] {
        row(
            &format!("Ingest ack p50 / p99 at {} events/s, {beside}", grouped(c.latency_rate)),
            format!("{:.1} / {:.1} ms", phase.ack_p50_ms, phase.ack_p99_ms),
            format!("{:.1} / {:.1} ms raw produce, same rate and batch", lb.p50_ms, lb.p99_ms),
            format!("{:.2} (p99)", lb.p99_ms / phase.ack_p99_ms),
            format!("p99 < 20 ms: {}", met(phase.ack_p99_ms < 20.0)),
        );
        row(
            "Achieved rate of that phase; p99 from each batch's due time",
            format!("{} events/s; {:.1} ms", grouped(phase.accepted_per_s), phase.from_due_p99_ms),
            "-".into(),
            "-".into(),
            "-".into(),
        );
    }
    row(
        "Ingest ack p50 / p99 at full speed",
        format!("{:.1} / {:.1} ms", full.ack_p50_ms, full.ack_p99_ms),
        "-".into(),
        "-".into(),
        "(saturated: queueing)".into(),
    );
    row(
        "Folded end to end, events/s (load start to last event folded)",
        grouped(e2e),
        format!("{} records/s raw consume", grouped(r.bound_consume.per_s())),
        format!("{:.2}", e2e / r.bound_consume.per_s()),
        format!(">= 25,000: {}", met(e2e >= 25_000.0)),
    );
    row(
        "Merger CPU per event",
        format!("{:.1} us", r.merger_cpu_us),
        format!("{:.1} us per record, raw consumer", r.bound_consume_cpu_us),
        format!("{:.1}", r.merger_cpu_us / r.bound_consume_cpu_us),
        "-".into(),
    );
    row("Ingest CPU per event", format!("{:.1} us", r.ingest_cpu_us), "-".into(), "-".into(), "-".into());
    row(
        "Tansu CPU per event (whole pipeline)",
        format!("{:.1} us", r.broker_cpu_us),
        "-".into(),
        "-".into(),
        "-".into(),
    );
    for (name, peak) in &r.peak_rss {
        row(&format!("Peak RSS, {name}"), mib(*peak), "-".into(), "-".into(), "-".into());
    }
    let snapshot_row = |snap: &super::snapshot::Snapshot, what: &str, target: String| {
        let rows_per_s = snap.rows as f64 / snap.seconds;
        [
            format!("Snapshot of {} patients{what}", grouped(snap.rows as f64)),
            format!(
                "{:.1} s ({} rows/s), {} parts, {}",
                snap.seconds,
                grouped(rows_per_s),
                snap.parts,
                mib(snap.bytes)
            ),
            format!(
                "{:.1} s to read the state topic raw ({} records)",
                snap.state_read_bound.seconds,
                grouped(snap.state_read_bound.records as f64)
            ),
            format!("{:.2}", snap.state_read_bound.seconds / snap.seconds),
            target,
        ]
    };
    let main_target = if r.scale_snapshot.is_some() {
        "see the next row".to_owned()
    } else {
        format!(
            "1M patients < 30 s: {:.0} s at this rate (extrapolated): {}",
            1e6 / rows_per_s,
            met(1e6 / rows_per_s < 30.0)
        )
    };
    let short = if snap.rows < snap.patients_in_topic {
        format!(
            " (of {} the topic holds: the archiver's cut ends at the end offsets Tansu's memory engine reports, \
             which are stale)",
            grouped(snap.patients_in_topic as f64)
        )
    } else {
        String::new()
    };
    let [a, b, c, d, e] = snapshot_row(snap, &short, main_target);
    row(&a, b, c, d, e);
    row(
        "Snapshot verify: signature, hashes, every page decrypted",
        format!("{:.2} s", snap.verify_seconds),
        "-".into(),
        "-".into(),
        "-".into(),
    );
    if let Some(scale) = &r.scale_snapshot {
        let target = if scale.rows >= 1_000_000 {
            format!("1M patients < 30 s: {}", met(scale.seconds < 30.0))
        } else {
            "1M patients < 30 s: fewer patients than the target".to_owned()
        };
        let what = format!(
            ", one record each in {} partitions (the run's views under new ids, on a second Tansu with sqlite storage)",
            scale.partitions
        );
        let [a, b, c, d, e] = snapshot_row(scale, &what, target);
        row(&a, b, c, d, e);
        row("Snapshot verify of those", format!("{:.2} s", scale.verify_seconds), "-".into(), "-".into(), "-".into());
    }
    let _ = writeln!(
        s,
        "\nRatios are Tidemark over the bound (higher is better), except latency and snapshot: bound time over ours. \
         Raw produce and consume are librdkafka moving the same keys and bytes through the same broker with no \
         processing (producer settings as ingest's, never waiting for acknowledgements). The latency bound is \
         that producer sending the fixed-rate phase's records on the same schedule, a request's worth at a time, \
         timed from each batch's send to its last acknowledgement, just before those phases (mergers idle). \
         With the mergers paused (SIGSTOP, their backlog folded after), ingest and the broker have the two cores \
         to themselves, as when the mergers run on other nodes; the second fixed-rate phase shares them with \
         the mergers folding the same rate.\n"
    );
    let _ = writeln!(s, "![Throughput and latency over the run]({plot_path})");
    s
}

/// Writes `pipeline.json` and `pipeline.png` into `dir`, and the section into
/// `doc` (between the markers, which are added at the end if missing).
///
/// # Errors
/// If a file cannot be written.
pub fn write(r: &Results, dir: &Path, doc: &Path, date: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = serde_json::to_string_pretty(r).context("encoding the results")?;
    std::fs::write(dir.join("pipeline.json"), json + "\n").context("writing pipeline.json")?;
    let png = dir.join("pipeline.png");
    draw(r, &png)?;
    let rel = match (png.strip_prefix(doc.parent().unwrap_or(Path::new("."))), png.to_str()) {
        (Ok(p), _) => p.display().to_string(),
        (Err(_), Some(p)) => p.to_owned(),
        (Err(_), None) => "pipeline.png".to_owned(),
    };
    let body = section(r, date, &rel);
    let old = std::fs::read_to_string(doc).unwrap_or_default();
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(b), Some(e)) if b < e => format!("{}{BEGIN}\n{body}{}", &old[..b], &old[e..]),
        _ => format!("{old}\n{BEGIN}\n{body}{END}\n"),
    };
    std::fs::write(doc, new).with_context(|| format!("writing {}", doc.display()))
}

fn draw(r: &Results, png: &Path) -> anyhow::Result<()> {
    // The load phases and their folding; the snapshots after them move no
    // counter and would only stretch the time axis.
    let cutoff = r.latency.from_s + r.latency.folded_after_s + 10.0;
    let rate = |f: fn(&super::sampler::Tick) -> f64| -> Vec<(f64, f64)> {
        r.ticks
            .windows(2)
            .filter(|w| w[1].t_s > w[0].t_s && w[1].t_s <= cutoff)
            .map(|w| ((w[0].t_s + w[1].t_s) / 2.0, (f(&w[1]) - f(&w[0])) / (w[1].t_s - w[0].t_s)))
            .collect()
    };
    let throughput = [
        Series { name: "accepted by ingest (acknowledged by Kafka)".into(), color: 0, points: rate(|t| t.accepted) },
        Series { name: "folded by the merger(s)".into(), color: 1, points: rate(|t| t.folded) },
    ];
    // One line per phase, so the idle gap between them is not drawn as data.
    let mut latency = Vec::new();
    for (i, phase) in [&r.throughput, &r.latency_alone, &r.latency].into_iter().enumerate() {
        let t = &phase.latency_timeline;
        let name = |n: &str| if i == 0 { n.to_owned() } else { String::new() };
        latency.push(Series {
            name: name("ack p50, per second"),
            color: 0,
            points: t.iter().map(|p| (p.0, p.1)).collect(),
        });
        latency.push(Series {
            name: name("ack p99, per second"),
            color: 1,
            points: t.iter().map(|p| (p.0, p.2)).collect(),
        });
    }
    let spans = [
        Span { label: "full speed".into(), from_s: r.throughput.from_s, to_s: r.throughput.to_s },
        Span {
            label: format!("{}/s, mergers paused", grouped(r.config.latency_rate)),
            from_s: r.latency_alone.from_s,
            to_s: r.latency_alone.to_s,
        },
        Span {
            label: format!("{}/s, folding", grouped(r.config.latency_rate)),
            from_s: r.latency.from_s,
            to_s: r.latency.to_s,
        },
    ];
    let title = format!(
        "Tidemark on Tansu: {} signed events, {} patients ({})",
        grouped(r.config.events as f64),
        grouped(r.config.patients as f64),
        machine()
    );
    let bound_label = format!("raw produce bound {} records/s", grouped(r.bound_produce.per_s()));
    plot::draw(
        &Figure {
            title: &title,
            throughput: &throughput,
            bound: Some((&bound_label, r.bound_produce.per_s())),
            latency: &latency,
            spans: &spans,
        },
        png,
    )
}
