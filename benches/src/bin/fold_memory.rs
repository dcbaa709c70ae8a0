//! `tidemark-bench-fold-memory`: memory per patient document after folding
//! the crdt bench's workload, ours beside Automerge's, each side in a fresh
//! process.
//!
//! `cargo run --release -p tidemark-benches --bin tidemark-bench-fold-memory
//! -- --patients 100000`
//!
//! Key decision: two figures per side, both taken across the fold alone (the
//! workload and the peer's changes are built before). Live heap bytes (this
//! binary's allocator is mimalloc wrapped by `cap`, which counts them) are
//! what the documents hold, whatever the process freed before. Resident-set
//! growth is what a merger pays in RAM, size classes and page granularity
//! included, but reads low where the fold reuses pages a setup step freed:
//! so Automerge's author documents stay alive through the measurement, each
//! change it consumes is a copy (the originals are not freed into its
//! documents' pages), and each side runs in a fresh process. The encoded
//! state (the crdt bench's "state bytes") shows neither.

use std::collections::HashMap;
use std::process::Command;

use anyhow::{Context as _, bail};
use automerge::Automerge;
use cap::Cap;
use clap::{Parser, ValueEnum};
use tidemark_benches::automerge_peer;
use tidemark_benches::report::{grouped, row};
use tidemark_crdt::PatientDoc;
use tidemark_testkit::workload::{self, Mix};

/// mimalloc, as the merger allocates, counting the bytes live (no limit).
#[global_allocator]
static ALLOCATOR: Cap<mimalloc::MiMalloc> = Cap::new(mimalloc::MiMalloc, usize::MAX);

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
    /// Measure this side only and print its live heap and resident bytes per
    /// document.
    #[arg(long)]
    side: Option<Side>,
}

/// This process's resident set, bytes (`/proc/self/smaps_rollup` counts in
/// kB, whatever the page size).
fn rss() -> anyhow::Result<usize> {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").context("reading /proc/self/smaps_rollup")?;
    let kb: usize = rollup
        .lines()
        .find_map(|l| l.strip_prefix("Rss:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .context("/proc/self/smaps_rollup has no `Rss: N kB` line")?;
    Ok(kb * 1024)
}

/// What the fold added, per document.
#[derive(Clone, Copy, Debug, PartialEq)]
struct PerDoc {
    /// Bytes allocated by the fold and still live.
    heap: f64,
    /// Growth of the resident set.
    resident: f64,
}

/// Folds one side's workload and returns what the documents took.
fn measure(side: Side, patients: usize) -> anyhow::Result<PerDoc> {
    let events = workload::generate(patients, SEED);
    match side {
        Side::Tidemark => across_fold(|| {
            let mut docs: Docs<'_, PatientDoc> = HashMap::default();
            for e in &events {
                docs.entry(&e.patient_id).or_insert_with(|| PatientDoc::new(&e.patient_id)).apply(e)?;
            }
            Ok(docs)
        }),
        Side::Automerge => {
            let (stream, _authors) = automerge_peer::author_changes_keeping_authors(&events);
            across_fold(|| {
                let mut docs: Docs<'_, Automerge> = HashMap::default();
                for (patient, change) in &stream {
                    docs.entry(patient).or_default().apply_changes([change.clone()])?;
                }
                Ok(docs)
            })
        }
    }
}

/// Documents by patient, in the map the merger keeps its own in.
type Docs<'a, D> = HashMap<&'a str, D, foldhash::quality::RandomState>;

/// Runs `fold` and returns the live heap and resident growth per document it
/// built, read while the documents are still alive.
fn across_fold<'a, D>(fold: impl FnOnce() -> anyhow::Result<Docs<'a, D>>) -> anyhow::Result<PerDoc> {
    let before = rss()?;
    let from = ALLOCATOR.allocated();
    let docs = fold()?;
    let live = ALLOCATOR.allocated().saturating_sub(from);
    let grown = rss()?.saturating_sub(before);
    let n = docs.len().max(1) as f64;
    Ok(PerDoc { heap: live as f64 / n, resident: grown as f64 / n })
}

fn child(side: Side, patients: usize) -> anyhow::Result<PerDoc> {
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
    let figures: Vec<f64> = text.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    match figures[..] {
        [heap, resident] => Ok(PerDoc { heap, resident }),
        _ => bail!("the {name} side printed `{}`, not two numbers", text.trim()),
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(side) = args.side {
        let m = measure(side, args.patients)?;
        println!("{} {}", m.heap, m.resident);
        return Ok(());
    }
    let (ours, theirs) = (child(Side::Tidemark, args.patients)?, child(Side::Automerge, args.patients)?);
    println!("workload (seed {SEED}): {}", Mix::of(&workload::generate(args.patients, SEED)));
    println!("memory the fold added, per patient document, each side in a fresh process");
    println!();
    row("", "tidemark".into(), "automerge".into(), "tidemark is".into(), "");
    for (what, a, b) in [
        ("live heap bytes per document", ours.heap, theirs.heap),
        ("resident bytes per document", ours.resident, theirs.resident),
    ] {
        row(what, grouped(a), grouped(b), format!("{:.2}x the size", a / b), "");
    }
    println!("(live heap: bytes requested and not freed, counted by the allocator; resident: growth of the");
    println!(" resident set, size classes and pages included, low where the fold reuses pages freed before)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_fold_a_small_workload_and_count_their_documents() {
        assert!(rss().expect("smaps_rollup reads") > 0);
        for side in [Side::Tidemark, Side::Automerge] {
            let per_doc = measure(side, 50).expect("the side measures");
            // A document holds at least its own struct and the patient's
            // fields; a count that missed the fold's allocations reads ~0.
            assert!(per_doc.heap > std::mem::size_of::<PatientDoc>() as f64, "{side:?}: {per_doc:?}");
            assert!(per_doc.resident.is_finite() && per_doc.resident >= 0.0, "{side:?}: {per_doc:?}");
        }
    }
}
