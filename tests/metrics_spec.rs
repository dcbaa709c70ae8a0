//! docs/metrics.md is the specification of every metric the services export;
//! these tests hold it equal to the code, and every other file that names a
//! series to the specification.
//!
//! Each service's metrics are registered in a fresh registry, as the binary
//! does (`src/service/runner.rs` with the service's `register`), and encoded
//! with prometheus_client's text encoder. The families found there (name,
//! type, unit, help, label names, the label values that exist from the start
//! and the histogram buckets) must equal the service's tables in
//! docs/metrics.md, and every exported name must keep the naming rules that
//! page states. A metric whose series only appear when first set ("at start"
//! `no`) is set once here, so that its label names can be seen too.
//!
//! The docs, the alert rules, their unit tests and the dashboard may name only
//! specified series, with labels those series have.

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use prometheus_client::registry::Registry;
use tidemark_archiver::ArchiverMetrics;
use tidemark_ingest::IngestMetrics;
use tidemark_merger::worker::MergerMetrics;
use tidemark_query::QueryMetrics;

const SERVICES: [&str; 4] = ["ingest", "merger", "archiver", "query"];

/// Labels every scraped series gets from its target, not from the service.
const TARGET_LABELS: [&str; 4] = ["namespace", "job", "instance", "pod"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

/// The exposition of `service`'s metrics in a fresh registry: as the service
/// starts (`fresh`) and with one series of each metric that has none at start
/// (`touched`), so that those metrics' label names show.
struct Exposition {
    fresh: String,
    touched: String,
}

fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("the registry encodes");
    text
}

fn exposition(service: &str) -> Exposition {
    let mut registry = Registry::default();
    match service {
        "ingest" => {
            let _metrics = IngestMetrics::register(&mut registry);
            let fresh = encode(&registry);
            Exposition { touched: fresh.clone(), fresh }
        }
        "merger" => {
            let metrics = MergerMetrics::register(&mut registry);
            let fresh = encode(&registry);
            let label = tidemark_merger::worker::metrics::PartitionLabel { partition: 0 };
            let topic = tidemark_merger::worker::metrics::TopicPartitionLabel { topic: "t".into(), partition: 0 };
            metrics.consumer_lag.get_or_create(&topic).set(0);
            metrics.group_lag.get_or_create(&topic).set(0);
            metrics.partition_assigned.get_or_create(&label).set(1);
            Exposition { fresh, touched: encode(&registry) }
        }
        "archiver" => {
            let metrics = ArchiverMetrics::register(&mut registry);
            let fresh = encode(&registry);
            let label = tidemark_archiver::metrics::ProfileLabels { profile: "identified" };
            metrics.last_success_timestamp.get_or_create(&label).set(0.0);
            Exposition { fresh, touched: encode(&registry) }
        }
        "query" => {
            let metrics = QueryMetrics::register(&mut registry);
            let fresh = encode(&registry);
            metrics.reads.get_or_create(&tidemark_query::metrics::KeyLabels { key_id: "k".into() }).inc();
            let route = tidemark_query::metrics::RequestLabels { route: "/v1/conflicts", status_class: "2xx" };
            metrics.requests.get_or_create(&route).inc();
            Exposition { fresh, touched: encode(&registry) }
        }
        other => panic!("no service {other}"),
    }
}

/// One metric, as exported or as specified.
#[derive(Debug, Default)]
struct Metric {
    kind: String,
    /// Empty for none.
    unit: String,
    help: String,
    /// Label name to the values that exist (exported) or that the label can
    /// take (specified; empty for an open set).
    labels: BTreeMap<String, BTreeSet<String>>,
    /// Specified only: `Some(true)` when every combination exists at start.
    at_start: Option<bool>,
    /// Upper bounds, without `+Inf`.
    buckets: Vec<f64>,
    /// Exported only: series at start.
    series: usize,
}

/// Splits `{a="x",b="y"}` (after the name) into pairs, unescaping values.
fn label_pairs(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let name: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        let name = name.trim_start_matches([',', ' ']).to_owned();
        if name.is_empty() || chars.next() != Some('=') || chars.next() != Some('"') {
            return pairs;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => break,
                },
                '"' => break,
                c => value.push(c),
            }
        }
        pairs.push((name, value));
    }
}

/// Families of an OpenMetrics exposition, keyed by the series name a query
/// uses (a counter's with `_total`).
fn parse_exposition(text: &str) -> BTreeMap<String, Metric> {
    let mut families: BTreeMap<String, Metric> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (Some(what), Some(name)) = (parts.next(), parts.next()) else { continue };
            let value = parts.next().unwrap_or_default().to_owned();
            let family = families.entry(name.to_owned()).or_default();
            match what {
                // The encoder ends every help text with a full stop.
                "HELP" => family.help = value.strip_suffix('.').unwrap_or(&value).to_owned(),
                "TYPE" => family.kind = value,
                "UNIT" => family.unit = value,
                _ => {}
            }
            continue;
        }
        let series = line.split([' ', '{']).next().unwrap_or_default();
        let family = families
            .keys()
            .filter(|f| {
                series
                    .strip_prefix(f.as_str())
                    .is_some_and(|s| ["", "_total", "_bucket", "_sum", "_count"].contains(&s))
            })
            .max_by_key(|f| f.len())
            .cloned()
            .unwrap_or_else(|| panic!("sample without a family: {line}"));
        let metric = families.get_mut(&family).expect("found above");
        let pairs = line.find('{').map(|at| label_pairs(&line[at + 1..])).unwrap_or_default();
        for (name, value) in pairs {
            if name == "le" {
                if value != "+Inf" {
                    let bound: f64 = value.parse().unwrap_or_else(|e| panic!("le {value}: {e}"));
                    if !metric.buckets.contains(&bound) {
                        metric.buckets.push(bound);
                    }
                }
            } else {
                metric.labels.entry(name).or_default().insert(value);
            }
        }
        if !series.ends_with("_bucket") && !series.ends_with("_sum") {
            metric.series += 1;
        }
    }
    families
        .into_iter()
        .map(|(name, m)| (if m.kind == "counter" { format!("{name}_total") } else { name }, m))
        .collect()
}

/// The cells of the markdown table rows under the header whose first cell
/// is `first`, in `section`.
fn table<'a>(section: &'a str, first: &str) -> Vec<Vec<&'a str>> {
    let mut rows = Vec::new();
    let mut inside = false;
    for line in section.lines() {
        let line = line.trim();
        if !line.starts_with('|') {
            inside = false;
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if cells.first() == Some(&first) {
            inside = true;
        } else if inside && !cells.iter().all(|c| c.chars().all(|ch| ch == '-')) {
            rows.push(cells);
        }
    }
    rows
}

/// Every `` `code` `` span of a cell.
fn code_spans(cell: &str) -> Vec<String> {
    cell.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

fn dash_or(cell: &str) -> &str {
    if cell == "—" { "" } else { cell }
}

/// `exponential(start, factor, count)` as upper bounds.
fn buckets(cell: &str) -> Vec<f64> {
    let args = cell
        .strip_prefix("exponential(")
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or_else(|| panic!("buckets `{cell}` are not exponential(start, factor, count)"));
    let n: Vec<&str> = args.split(',').map(str::trim).collect();
    let [start, factor, count] = n.as_slice() else { panic!("buckets `{cell}` need three numbers") };
    let (start, factor): (f64, f64) = (start.parse().unwrap(), factor.parse().unwrap());
    (0..count.parse::<i32>().unwrap()).map(|k| start * factor.powi(k)).collect()
}

/// The tables of `## <Service>` in docs/metrics.md.
fn specified(doc: &str, service: &str) -> BTreeMap<String, Metric> {
    let heading = format!("## {}{}", service[..1].to_uppercase(), &service[1..]);
    let section = doc
        .split("\n## ")
        .find(|s| format!("## {s}").starts_with(&format!("{heading}\n")))
        .unwrap_or_else(|| panic!("docs/metrics.md has no `{heading}` section"));
    let values: BTreeMap<String, BTreeSet<String>> = table(section, "label")
        .into_iter()
        .map(|row| (code_spans(row[0]).concat(), code_spans(row[1]).into_iter().collect()))
        .collect();
    let mut metrics = BTreeMap::new();
    let mut used = BTreeSet::new();
    for row in table(section, "series") {
        let [name, kind, unit, labels, at_start, help] = row.as_slice() else {
            panic!("docs/metrics.md, {heading}: a row needs 6 cells: {row:?}")
        };
        let labels: BTreeMap<String, BTreeSet<String>> = code_spans(labels)
            .into_iter()
            .map(|l| {
                let set =
                    values.get(&l).unwrap_or_else(|| panic!("{heading}: label `{l}` has no row in the label table"));
                used.insert(l.clone());
                (l, set.clone())
            })
            .collect();
        let at_start = match *at_start {
            "yes" => Some(true),
            "no" => Some(false),
            "—" => None,
            other => panic!("{heading}: `at start` of {name} is `{other}`, not yes, no or —"),
        };
        let metric = Metric {
            kind: (*kind).to_owned(),
            unit: dash_or(unit).to_owned(),
            help: (*help).to_owned(),
            labels,
            at_start,
            ..Metric::default()
        };
        assert!(metrics.insert(code_spans(name).concat(), metric).is_none(), "{heading}: {name} twice");
    }
    let unused: Vec<&String> = values.keys().filter(|l| !used.contains(*l)).collect();
    assert!(unused.is_empty(), "{heading}: labels in the label table that no metric has: {unused:?}");
    for row in table(section, "histogram") {
        let name = code_spans(row[0]).concat();
        let metric = metrics.get_mut(&name).unwrap_or_else(|| panic!("{heading}: buckets for unknown {name}"));
        metric.buckets = buckets(row[1]);
    }
    metrics
}

fn same_buckets(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-9 * x.abs().max(1.0))
}

/// Every difference between what `service` exports and its tables.
fn differences(service: &str, doc: &str) -> Vec<String> {
    let spec = specified(doc, service);
    let exp = exposition(service);
    let fresh = parse_exposition(&exp.fresh);
    let touched = parse_exposition(&exp.touched);
    let mut out = Vec::new();
    for name in touched.keys().filter(|n| !spec.contains_key(*n)) {
        out.push(format!("{name}: exported but not documented"));
    }
    for name in spec.keys().filter(|n| !touched.contains_key(*n)) {
        out.push(format!("{name}: documented but not exported"));
    }
    let nothing = Metric::default();
    for (name, want) in &spec {
        // A family without series is not in the exposition at all.
        let Some(seen) = touched.get(name) else { continue };
        let got = fresh.get(name).unwrap_or(&nothing);
        let mut differ = |what: &str, doc: String, code: String| {
            if doc != code {
                out.push(format!("{name}: {what} is {doc:?} in docs/metrics.md but {code:?} in the exposition"));
            }
        };
        differ("the type", want.kind.clone(), seen.kind.clone());
        differ("the unit", want.unit.clone(), seen.unit.clone());
        differ("the help", want.help.clone(), seen.help.clone());
        let names = |m: &Metric| m.labels.keys().cloned().collect::<Vec<_>>().join(", ");
        differ("the label set", names(want), names(seen));
        match want.at_start {
            None if !want.labels.is_empty() => out.push(format!("{name}: has labels, so `at start` is yes or no")),
            Some(_) if want.labels.is_empty() => out.push(format!("{name}: has no labels, so `at start` is —")),
            Some(true) => {
                for (label, values) in &want.labels {
                    if values.is_empty() {
                        out.push(format!("{name}: `{label}` is an open set, so its series cannot all exist at start"));
                    }
                    let exported = got.labels.get(label).cloned().unwrap_or_default();
                    for v in values.difference(&exported) {
                        out.push(format!("{name}: {label}=\"{v}\" is documented but has no series at start"));
                    }
                    for v in exported.difference(values) {
                        out.push(format!("{name}: {label}=\"{v}\" exists at start but is not documented"));
                    }
                }
                let combinations: usize = got.labels.values().map(BTreeSet::len).product();
                if got.series != combinations {
                    out.push(format!("{name}: {} series at start, not every one of {combinations}", got.series));
                }
            }
            Some(false) if !got.labels.is_empty() => {
                out.push(format!("{name}: `at start` is no, but series exist at start: {:?}", got.labels));
            }
            _ => {}
        }
        // Values seen once set (the series at start are compared above).
        for (label, values) in seen.labels.iter().filter(|_| want.at_start != Some(true)) {
            let documented = want.labels.get(label).filter(|d| !d.is_empty());
            for v in values.iter().filter(|v| documented.is_some_and(|d| !d.contains(*v))) {
                out.push(format!("{name}: {label}=\"{v}\" is exported but not documented"));
            }
        }
        if want.kind == "histogram" || seen.kind == "histogram" {
            let render = |b: &[f64]| b.iter().map(f64::to_string).collect::<Vec<_>>().join(", ");
            if !same_buckets(&want.buckets, &seen.buckets) {
                out.push(format!(
                    "{name}: buckets are [{}] in docs/metrics.md but [{}] in the exposition",
                    render(&want.buckets),
                    render(&seen.buckets)
                ));
            }
        } else if !want.buckets.is_empty() {
            out.push(format!("{name}: buckets documented for a {}", seen.kind));
        }
    }
    out
}

/// The specified series of every service, by name.
fn all_specified() -> BTreeMap<String, Metric> {
    let doc = read("docs/metrics.md");
    SERVICES.iter().flat_map(|s| specified(&doc, s)).collect()
}

#[test]
fn the_spec_lists_exactly_what_each_service_exports() {
    let doc = read("docs/metrics.md");
    let mut report = String::new();
    for service in SERVICES {
        for d in differences(service, &doc) {
            writeln!(report, "{service}: {d}").unwrap();
        }
    }
    assert!(report.is_empty(), "docs/metrics.md and the services disagree:\n{report}");
}

/// The mechanical part of the naming rules in docs/metrics.md, checked on
/// what the services export (so a new metric cannot break them unnoticed).
#[test]
fn every_exported_name_keeps_the_naming_rules() {
    let mut broken = Vec::new();
    for service in SERVICES {
        for (name, m) in parse_exposition(&exposition(service).touched) {
            let prefix = format!("tidemark_{service}_");
            let family = name.strip_suffix("_total").filter(|_| m.kind == "counter").unwrap_or(&name);
            let mut rule = |ok: bool, what: &str| {
                if !ok {
                    broken.push(format!("{name}: {what}"));
                }
            };
            rule(name.starts_with(&prefix), &format!("does not start with {prefix}"));
            rule(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "not snake case");
            rule(m.kind != "counter" || name.ends_with("_total"), "a counter without _total");
            rule(m.kind == "counter" || !name.ends_with("_total"), "_total on a non-counter");
            rule(m.unit.is_empty() || family.ends_with(&format!("_{}", m.unit)), "does not end in its unit");
            rule(!family.contains("duration") || m.unit == "seconds", "a duration not in seconds");
            rule(!family.contains("duration") || m.kind == "histogram", "a duration that is not a histogram");
            rule(
                !family.contains("timestamp") || (m.unit == "seconds" && m.kind == "gauge"),
                "a timestamp not a gauge of seconds",
            );
            rule(
                !["milliseconds", "ms", "kb", "mb"].iter().any(|u| family.ends_with(&format!("_{u}"))),
                "not a base unit",
            );
            rule(!m.help.is_empty() && !m.help.ends_with('.'), "help empty, or a full stop the encoder doubles");
            let banned = ["patient", "name", "author", "event_id", "key_id", "keyid", "payload", "error", "message"];
            for label in m.labels.keys() {
                // The one exception the rules name: reads per registered key.
                let per_key_reads = name == "tidemark_query_reads_total" && label == "key_id";
                rule(
                    per_key_reads || !banned.iter().any(|b| label.contains(b)),
                    &format!("label `{label}` looks like data"),
                );
            }
        }
    }
    assert!(broken.is_empty(), "naming rules broken:\n{}", broken.join("\n"));
}

/// The files that name series: for readers, Prometheus or Grafana, and the
/// tests and benchmarks that scrape a service (as strings no compiler checks).
const REFERRING: [&str; 19] = [
    "README.md",
    "docs/regions.md",
    "docs/design.md",
    "docs/ingest.md",
    "docs/merger.md",
    "docs/archiver.md",
    "docs/operations.md",
    "docs/runbook.md",
    "helm/tidemark/files/alerts.yaml",
    "helm/tidemark/files/dashboard.json",
    "tests/data/alerts.test.yaml",
    "tests/ingest_e2e.rs",
    "tests/ingest_faults.rs",
    "tests/merger_e2e.rs",
    "tests/archiver_e2e.rs",
    "tests/prometheus_e2e.rs",
    "tests/common/ingest.rs",
    "benches/src/pipeline/sampler.rs",
    "benches/src/pipeline/run.rs",
];

/// A label matcher of a selector: label, operator, value.
type Matcher = (String, String, String);

/// Every `tidemark_<service>_...` token of `text` with the label matchers
/// that follow it (`{a="x", b=~"y"}`), as (series, [(label, op, value)]).
/// Doubled braces (Rust format strings) are read as single ones, and a value
/// holding a `{placeholder}` is skipped.
fn references(text: &str) -> Vec<(String, Vec<Matcher>)> {
    let text = text.replace("\\\"", "\"").replace("{{", "{").replace("}}", "}");
    let mut found = Vec::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("tidemark_") {
        let word_start = at == 0 || !rest[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
        rest = &rest[at..];
        let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
        let name = &rest[..end];
        rest = &rest[end..];
        if !word_start || !SERVICES.iter().any(|s| name.starts_with(&format!("tidemark_{s}_"))) {
            continue;
        }
        let mut matchers = Vec::new();
        if let Some(inner) = rest.strip_prefix('{').and_then(|r| r.split_once('}')).map(|(m, _)| m) {
            for m in inner.split(',').map(str::trim).filter(|m| !m.is_empty()) {
                let op_at = m.find(['=', '!']).unwrap_or(m.len());
                let (label, op_value) = m.split_at(op_at);
                let op: String = op_value.chars().take_while(|c| ['=', '!', '~'].contains(c)).collect();
                let value = op_value[op.len()..].trim().trim_matches('"').to_owned();
                if !value.contains('{') {
                    matchers.push((label.trim().to_owned(), op, value));
                }
            }
        }
        found.push((name.to_owned(), matchers));
    }
    found
}

#[test]
fn docs_alerts_and_dashboard_name_only_specified_series_and_labels() {
    let spec = all_specified();
    let mut wrong = BTreeSet::new();
    let mut seen = 0;
    for file in REFERRING {
        for (name, matchers) in references(&read(file)) {
            seen += 1;
            let resolved = spec.get(&name).map(|m| (m, "")).or_else(|| {
                ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
                    let m = spec.get(name.strip_suffix(suffix)?).filter(|m| m.kind == "histogram")?;
                    Some((m, *suffix))
                })
            });
            let Some((metric, suffix)) = resolved else {
                wrong.insert(format!("{file}: {name} is not in docs/metrics.md"));
                continue;
            };
            for (label, op, value) in matchers {
                let own = metric.labels.get(&label);
                let known =
                    own.is_some() || TARGET_LABELS.contains(&label.as_str()) || (suffix == "_bucket" && label == "le");
                if !known {
                    wrong.insert(format!("{file}: {name} has no label `{label}`"));
                } else if let Some(values) = own.filter(|v| !v.is_empty() && op == "=")
                    && !values.contains(&value)
                {
                    wrong.insert(format!("{file}: {name}{{{label}=\"{value}\"}}: `{label}` never has that value"));
                }
            }
        }
    }
    assert!(seen > 50, "only {seen} references found: is the scan broken?");
    assert!(
        wrong.is_empty(),
        "references to series docs/metrics.md does not specify:\n{}",
        wrong.into_iter().collect::<Vec<_>>().join("\n")
    );
}

/// The scanner above sees what it must, and no more.
#[test]
fn references_find_series_and_their_matchers() {
    let text = r#"rate(tidemark_ingest_requests_total{status_class="5xx", namespace=~"$ns"}[5m]) tidemark_schemas::X"#;
    let refs = references(text);
    assert_eq!(refs.len(), 1, "{refs:?}");
    assert_eq!(refs[0].0, "tidemark_ingest_requests_total");
    assert_eq!(
        refs[0].1,
        [("status_class".into(), "=".into(), "5xx".into()), ("namespace".into(), "=~".into(), "$ns".into())]
    );
    let json = r#""expr": "sum(tidemark_merger_documents{namespace=~\"$namespace\"})""#;
    assert_eq!(references(json)[0].1[0], ("namespace".into(), "=~".into(), "$namespace".into()));
    assert_eq!(label_pairs(r#"a="x\"y",le="0.5"}"#), [("a".into(), "x\"y".into()), ("le".into(), "0.5".into())]);
}
