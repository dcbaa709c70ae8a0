//! `tidemark-bench-fold-memory`: resident memory per patient document after
//! folding the crdt bench's workload, ours beside Automerge's, each side in a
//! fresh process.
//!
//! `cargo run --release -p tidemark-benches --bin tidemark-bench-fold-memory
//! -- --patients 100000`
//!
//! Key decision: a process per side, and the figure is the growth of the
//! resident set across the fold alone (the workload and the peer's changes
//! are built before the first reading). In one process the second side would
//! reuse pages the first freed and read smaller than it is. Automerge is
//! given a copy of each change, so that the changes it consumes are not freed
//! into the pages its documents then take. This is what a merger pays in RAM
//! per patient it holds, which the encoded state (the crdt bench's "state
//! bytes") does not show.

use std::collections::HashMap;
use std::process::Command;

use anyhow::{Context as _, bail};
use automerge::Automerge;
use clap::{Parser, ValueEnum};
use tidemark_benches::automerge_peer;
use tidemark_benches::report::{grouped, row};
use tidemark_benches::workload::{self, Mix};
use tidemark_merger::crdt::PatientDoc;

const SEED: u64 = 42;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Side {
    Tidemark,
    Automerge,
}

/// Measures one side when `--side` is given, otherwise runs both and prints
/// the table.
#[derive(Debug, Parser)]
#[command(name = "tidemark-bench-fold-memory")]
struct Args {
    /// Patients in the workload (about 5 events each).
    #[arg(long, default_value_t = 100_000)]
    patients: usize,
    /// Measure this side only and print its bytes per document.
    #[arg(long)]
    side: Option<Side>,
}

/// This process's resident set, bytes.
fn rss() -> anyhow::Result<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").context("reading /proc/self/statm")?;
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .context("/proc/self/statm has no resident page count")?;
    Ok(pages * 4096)
}

/// Bytes of resident set the fold added, per document.
fn measure(side: Side, patients: usize) -> anyhow::Result<f64> {
    let events = workload::generate(patients, SEED);
    let (grown, docs) = match side {
        Side::Tidemark => {
            let before = rss()?;
            let mut docs: HashMap<&str, PatientDoc, foldhash::quality::RandomState> = HashMap::default();
            for e in &events {
                docs.entry(&e.patient_id).or_insert_with(|| PatientDoc::new(&e.patient_id)).apply(e)?;
            }
            (rss()?.saturating_sub(before), docs.len())
        }
        Side::Automerge => {
            let stream = automerge_peer::author_changes(&events);
            let before = rss()?;
            let mut docs: HashMap<&str, Automerge, foldhash::quality::RandomState> = HashMap::default();
            for (patient, change) in &stream {
                docs.entry(patient).or_default().apply_changes([change.clone()])?;
            }
            (rss()?.saturating_sub(before), docs.len())
        }
    };
    Ok(grown as f64 / docs.max(1) as f64)
}

fn child(side: Side, patients: usize) -> anyhow::Result<f64> {
    let me = std::env::current_exe().context("finding this binary")?;
    let name = format!("{side:?}").to_lowercase();
    let out = Command::new(me)
        .args(["--patients", &patients.to_string(), "--side", &name])
        .output()
        .with_context(|| format!("running the {name} side"))?;
    if !out.status.success() {
        bail!("the {name} side failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse().with_context(|| format!("the {name} side printed `{}`, not a number", text.trim()))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(side) = args.side {
        println!("{}", measure(side, args.patients)?);
        return Ok(());
    }
    let (ours, theirs) = (child(Side::Tidemark, args.patients)?, child(Side::Automerge, args.patients)?);
    println!("workload (seed {SEED}): {}", Mix::of(&workload::generate(args.patients, SEED)));
    println!("resident memory the fold added, per patient document, each side in a fresh process");
    println!();
    row("", "tidemark".into(), "automerge".into(), "tidemark is".into(), "");
    row("bytes per document in memory", grouped(ours), grouped(theirs), format!("{:.2}x the size", ours / theirs), "");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_fold_a_small_workload_and_read_the_resident_set() {
        assert!(rss().expect("statm reads") > 0);
        for side in [Side::Tidemark, Side::Automerge] {
            let per_doc = measure(side, 50).expect("the side measures");
            assert!(per_doc.is_finite() && per_doc >= 0.0, "{side:?}: {per_doc}");
        }
    }
}
