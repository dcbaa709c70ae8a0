//! `tidemark converge`: whether two regions' state topics hold the same
//! views. Each region folds its own edits and those mirrored in from the
//! others; once the mirrors have caught up, every patient's view must be
//! identical everywhere (the CRDT merge does not depend on the order events
//! arrive in). This reads both state topics to their current end, keeps each
//! patient's latest record whose MAC checks under one of `--state-key`
//! (records that do not check are passed over and counted, as the query
//! service and `tidemark state` do), and compares the views' hashes.
//!
//! Output: one line per region, the counts, then the first differences by
//! partition and offset in each region (patient ids only with `--show-ids`:
//! this may run where its output is kept). Exit 0 when the regions hold the
//! same views, 1 when they differ, 2 when a region cannot be read or none
//! of its records checks under the keys given (a wrong key).

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use sha2::{Digest as _, Sha256};
use tidemark_kafka::{Connection, scan};
use tidemark_schemas::PatientView;
use tidemark_seal::{RecordKind, StateKeys};

use super::Outcome;
use super::config::{KafkaArgs, Secret, parse_kafka_option, with_sasl};

#[derive(Debug, Args)]
pub struct ConvergeArgs {
    /// This region (`--brokers`, `--kafka-option`, `--topic-prefix`).
    #[command(flatten)]
    kafka: KafkaArgs,
    /// The other region's Kafka bootstrap servers.
    #[arg(long, value_name = "HOST:PORT,...")]
    other_brokers: String,
    /// A librdkafka option for the other region's cluster (repeatable).
    #[arg(long = "other-kafka-option", value_name = "KEY=VALUE", value_parser = parse_kafka_option)]
    other_kafka_options: Vec<(String, String)>,
    /// The other region's topic prefix.
    #[arg(long, default_value = "")]
    other_topic_prefix: String,
    /// SASL user name for the other region's cluster; from the environment,
    /// so credentials never appear in a command line `ps` shows.
    #[arg(long, env = "TIDEMARK_OTHER_KAFKA_SASL_USERNAME", hide_env_values = true, value_name = "USER")]
    other_kafka_sasl_username: Option<String>,
    /// SASL password for the other region's cluster; set it through the environment.
    #[arg(long, env = "TIDEMARK_OTHER_KAFKA_SASL_PASSWORD", hide_env_values = true, value_name = "PASSWORD")]
    other_kafka_sasl_password: Option<Secret>,
    /// State key file(s) as the mergers of either region have them (each
    /// region may seal under its own key: give both).
    #[arg(long = "state-key", env = "TIDEMARK_STATE_KEY", value_name = "FILE", required = true, value_delimiter = ',')]
    state_keys: Vec<PathBuf>,
    /// How many differences to print.
    #[arg(long, default_value_t = 10)]
    show: usize,
    /// Print the patient id of each difference printed.
    #[arg(long)]
    show_ids: bool,
    /// How long reading a partition may stall before giving up.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
}

/// A patient's latest authentic record in one region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Latest {
    partition: i32,
    offset: i64,
    /// SHA-256 of the view, re-encoded canonically; `None`: deleted.
    hash: Option<[u8; 32]>,
}

/// One region's state topic, read to its end.
#[derive(Debug, Default)]
struct Region {
    patients: HashMap<String, Latest>,
    records: u64,
    passed_over: u64,
    /// The first record passed over: (partition, offset).
    first_passed_over: Option<(i32, i64)>,
}

impl Region {
    fn live(&self) -> usize {
        self.patients.values().filter(|l| l.hash.is_some()).count()
    }
}

pub fn run(args: ConvergeArgs) -> anyhow::Result<Outcome> {
    let keys = tidemark_seal::load_state_keys(&args.state_keys).context("loading --state-key")?;
    let timeout = Duration::from_millis(args.timeout_ms);
    let state = tidemark_schemas::STATE_TOPIC;
    let here = (args.kafka.connection(), format!("{}{state}", args.kafka.topic_prefix), &args.kafka.brokers);
    let other_options = with_sasl(
        &args.other_kafka_options,
        args.other_kafka_sasl_username.as_ref(),
        args.other_kafka_sasl_password.as_ref(),
    );
    let other = Connection::new(args.other_brokers.clone(), other_options);
    let there = (other, format!("{}{state}", args.other_topic_prefix), &args.other_brokers);
    // Both regions at once: each read waits mostly on its own cluster.
    let read_both: Vec<anyhow::Result<Region>> = std::thread::scope(|scope| {
        let keys = &keys;
        let reads: Vec<_> = [&here, &there]
            .map(|(conn, topic, _)| scope.spawn(move || read(conn, topic, keys, timeout)))
            .into_iter()
            .collect();
        reads.into_iter().map(|r| r.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a reader panicked")))).collect()
    });
    let mut regions = Vec::new();
    for ((name, (_, topic, brokers)), region) in [("A", here), ("B", there)].into_iter().zip(read_both) {
        let region = region.with_context(|| format!("reading region {name} ({brokers})"))?;
        if region.records > 0 && region.passed_over == region.records {
            // Nothing checked: the wrong key, not a region without patients.
            anyhow::bail!(
                "none of the {} records of region {name}'s {topic} is sealed under the --state-key given: give the \
                 state key that region's mergers use",
                region.records
            );
        }
        println!(
            "region {name}: {} patients ({} records read, {} passed over) in {topic} at {brokers}",
            region.live(),
            region.records,
            region.passed_over
        );
        regions.push(region);
    }
    let (a, b) = (&regions[0], &regions[1]);
    let diff = compare(a, b);
    println!(
        "identical {}, different {}, only in A {}, only in B {}",
        diff.identical,
        diff.different.len(),
        diff.only_a.len(),
        diff.only_b.len()
    );
    let mut lines: Vec<(Option<Latest>, Option<Latest>, &str, &str)> = Vec::new();
    lines.extend(
        diff.different.iter().map(|id| (a.patients.get(*id).copied(), b.patients.get(*id).copied(), "different", *id)),
    );
    lines.extend(diff.only_a.iter().map(|id| (a.patients.get(*id).copied(), None, "only in A", *id)));
    lines.extend(diff.only_b.iter().map(|id| (None, b.patients.get(*id).copied(), "only in B", *id)));
    lines.sort_by_key(|(x, y, ..)| x.or(*y).map(|l| (l.partition, l.offset)));
    for (x, y, what, id) in lines.iter().take(args.show) {
        let id = if args.show_ids { format!(" patient {id}") } else { String::new() };
        println!("  {what}{id}: A {} | B {}", describe(*x), describe(*y));
    }
    if diff.converged() {
        println!("converged");
        Ok(Outcome::Ok)
    } else {
        println!("diverged");
        Ok(Outcome::SomeInputFailed)
    }
}

fn describe(l: Option<Latest>) -> String {
    match l {
        None => "no record".to_owned(),
        Some(Latest { partition, offset, hash: None }) => format!("partition {partition} offset {offset} (deleted)"),
        Some(Latest { partition, offset, hash: Some(h) }) => {
            format!("partition {partition} offset {offset} (view {})", hex::encode(&h[..6]))
        }
    }
}

/// Reads `topic` to its end as it is now.
fn read(conn: &Connection, topic: &str, keys: &StateKeys, timeout: Duration) -> anyhow::Result<Region> {
    let consumer = conn.reader("tidemark-converge")?;
    let mut region = Region::default();
    for cut in scan::capture_cut(&consumer, topic, timeout)? {
        let partition = cut.partition;
        scan::scan_partition(&consumer, topic, cut, timeout, |r: scan::Record<'_>| {
            region.records += 1;
            let checked = keys.check(RecordKind::State, r.key, r.value, |h| r.header(h));
            let patient = std::str::from_utf8(r.key).ok().filter(|_| checked.is_ok());
            let Some(patient) = patient else {
                region.passed_over += 1;
                region.first_passed_over.get_or_insert((partition, r.offset));
                return Ok(());
            };
            let hash = r.value.map(view_hash).transpose().map_err(|e| {
                // serde's message may quote the value: say where, not what.
                anyhow::anyhow!(
                    "the record at {topic}/{partition} offset {} is not a patient view ({:?} error at line {}, \
                     column {})",
                    r.offset,
                    e.classify(),
                    e.line(),
                    e.column()
                )
            })?;
            region.patients.insert(patient.to_owned(), Latest { partition, offset: r.offset, hash });
            Ok::<_, anyhow::Error>(())
        })?;
    }
    if let Some((partition, offset)) = region.first_passed_over {
        eprintln!(
            "warning: {} records of {topic} are not sealed under the --state-key given and were passed over, the \
             first at partition {partition} offset {offset}",
            region.passed_over
        );
    }
    Ok(region)
}

/// The view's hash, over its canonical encoding: two regions whose mergers
/// encode alike (field order, spacing) or not compare by content.
fn view_hash(json: &[u8]) -> Result<[u8; 32], serde_json::Error> {
    let view: PatientView = serde_json::from_slice(json)?;
    Ok(Sha256::digest(serde_json::to_vec(&view)?).into())
}

/// How two regions compare, by patient id.
#[derive(Debug, Default, PartialEq, Eq)]
struct Diff<'a> {
    identical: usize,
    different: Vec<&'a str>,
    only_a: Vec<&'a str>,
    only_b: Vec<&'a str>,
}

impl Diff<'_> {
    fn converged(&self) -> bool {
        self.different.is_empty() && self.only_a.is_empty() && self.only_b.is_empty()
    }
}

/// Compares live views: a patient deleted in one region and never seen (or
/// deleted too) in the other is the same in both.
fn compare<'a>(a: &'a Region, b: &'a Region) -> Diff<'a> {
    let ids: BTreeSet<&str> = a.patients.keys().chain(b.patients.keys()).map(String::as_str).collect();
    let mut diff = Diff::default();
    for id in ids {
        let view = |r: &Region| r.patients.get(id).and_then(|l| l.hash);
        match (view(a), view(b)) {
            (Some(x), Some(y)) if x == y => diff.identical += 1,
            (Some(_), Some(_)) => diff.different.push(id),
            (Some(_), None) => diff.only_a.push(id),
            (None, Some(_)) => diff.only_b.push(id),
            (None, None) => {}
        }
    }
    diff
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(entries: &[(&str, Option<u8>)]) -> Region {
        let patients = entries
            .iter()
            .enumerate()
            .map(|(n, (id, h))| ((*id).to_owned(), Latest { partition: 0, offset: n as i64, hash: h.map(|b| [b; 32]) }))
            .collect();
        Region { patients, records: entries.len() as u64, ..Region::default() }
    }

    #[test]
    fn regions_compare_by_live_view_and_deletions_match_absence() {
        let a = region(&[("p1", Some(1)), ("p2", Some(2)), ("p3", Some(3)), ("p5", None), ("p6", None)]);
        let b = region(&[("p1", Some(1)), ("p2", Some(9)), ("p4", Some(4)), ("p6", None)]);
        let diff = compare(&a, &b);
        assert_eq!(diff, Diff { identical: 1, different: vec!["p2"], only_a: vec!["p3"], only_b: vec!["p4"] });
        assert!(!diff.converged());
        assert!(compare(&a, &a).converged());
    }

    #[test]
    fn the_hash_is_over_the_view_not_its_spacing() {
        let view = r#"{"patient_id":"p","fields":{},"version":{},"event_count":0,"updated_at":"2026-01-01T00:00:00.000Z","open_conflicts":0}"#;
        // Pretty-printed, keys in another order: the same view.
        let value: serde_json::Value = serde_json::from_str(view).expect("JSON");
        let spaced = serde_json::to_string_pretty(&value).expect("JSON");
        assert_ne!(spaced, view);
        assert_eq!(view_hash(view.as_bytes()).expect("a view"), view_hash(spaced.as_bytes()).expect("a view"));
        assert!(view_hash(b"{\"not\":\"a view\"}").is_err());
    }
}
