//! The patient CRDT: fold throughput, the cost of an apply that opens a
//! conflict and of one that resolves it, and state bytes per patient, with
//! Automerge applying the same edits as remote changes. Criterion measures
//! each part; then a timed side-by-side over the whole workload prints both
//! figures, the ratio and the target of docs/design.md#targets in one table.
//!
//! `cargo bench -p tidemark-benches --bench crdt`; `TIDEMARK_BENCH_PATIENTS`
//! (default 10000, about 5 events each) scales the workload. Under
//! `cargo test --benches` every part runs once, on 200 patients.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use automerge::{Automerge, Change};
use criterion::{BatchSize, Criterion, SamplingMode, Throughput};
use tidemark_benches::report::{Mode, grouped, mean, median, met, percentile, row, timings};
use tidemark_benches::{automerge_peer, conflict};
use tidemark_crdt::PatientDoc;
use tidemark_crdt::fold::apply_event;
use tidemark_schemas::EditEvent;
use tidemark_testkit::workload::{self, Mix};

tidemark_benches::service_allocator!();

const SEED: u64 = 42;

/// Documents by patient, in the map the merger keeps its own in (and the
/// Automerge peer its replicas).
type Docs<'a> = HashMap<&'a str, PatientDoc, foldhash::quality::RandomState>;

/// The CRDT alone: every event applied to its patient's document.
fn fold(events: &[EditEvent]) -> Docs<'_> {
    let mut docs = Docs::default();
    for e in events {
        docs.entry(&e.patient_id)
            .or_insert_with(|| PatientDoc::new(&e.patient_id))
            .apply(e)
            .expect("generated events apply");
    }
    docs
}

/// What the merger runs per event: `fold::apply_event` on its document map,
/// which also counts the conflicts each event opens or resolves.
fn fold_merger(events: &[EditEvent]) -> tidemark_merger::worker::Docs {
    let mut docs = tidemark_merger::worker::Docs::default();
    for e in events {
        apply_event(&mut docs, e).expect("generated events apply");
    }
    docs
}

fn criterion_benches(c: &mut Criterion, events: &[EditEvent], stream: &[(&str, Change)]) {
    let mut g = c.benchmark_group("fold");
    // Flat sampling: an iteration folds the whole workload, so few fit in a sample.
    g.sample_size(10).sampling_mode(SamplingMode::Flat).measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Elements(workload::op_count(events) as u64));
    // The merger keeps its documents; freeing them is not part of folding.
    g.bench_function("tidemark_apply", |b| b.iter_with_large_drop(|| fold(black_box(events))));
    g.bench_function("tidemark_merger_apply_event", |b| b.iter_with_large_drop(|| fold_merger(black_box(events))));
    // Seconds per iteration: ten samples take a while.
    g.measurement_time(Duration::from_secs(30));
    g.bench_function("automerge_apply_changes", |b| {
        b.iter_batched(|| stream.to_vec(), automerge_peer::apply_remote, BatchSize::PerIteration)
    });
    g.finish();

    let mut g = c.benchmark_group("conflict");
    let t = conflict::tidemark();
    g.bench_function("tidemark_open", |b| {
        let routine = |mut d: PatientDoc| {
            d.apply(black_box(&t.conflicting)).expect("applies");
            d
        };
        b.iter_batched(|| t.base.clone(), routine, BatchSize::SmallInput)
    });
    g.bench_function("tidemark_resolve", |b| {
        let routine = |mut d: PatientDoc| {
            d.apply(black_box(&t.resolving)).expect("applies");
            d
        };
        b.iter_batched(|| t.opened.clone(), routine, BatchSize::SmallInput)
    });
    let a = conflict::automerge();
    g.bench_function("automerge_open", |b| {
        let routine = |(mut d, ch): (Automerge, Change)| {
            d.apply_changes([ch]).expect("applies");
            d
        };
        b.iter_batched(|| (a.base.clone(), a.conflicting.clone()), routine, BatchSize::SmallInput)
    });
    g.bench_function("automerge_resolve", |b| {
        let routine = |(mut d, ch): (Automerge, Change)| {
            d.apply_changes([ch]).expect("applies");
            d
        };
        b.iter_batched(|| (a.opened.clone(), a.resolving.clone()), routine, BatchSize::SmallInput)
    });
    g.finish();
}

/// Seconds per apply: `n` copies of `doc`, each given a copy of `edit`
/// (which `apply` may take). Copies are made and freed outside the timing.
fn per_apply<D: Clone, E: Clone>(
    runs: usize,
    n: usize,
    doc: &D,
    edit: &E,
    apply: impl Fn(&mut D, &mut Option<E>),
) -> f64 {
    let t = timings(
        runs,
        || (vec![doc.clone(); n], vec![Some(edit.clone()); n]),
        |(mut docs, mut edits)| {
            for (d, e) in docs.iter_mut().zip(&mut edits) {
                apply(d, e);
            }
            (docs, edits)
        },
    );
    t[0] / n as f64
}

fn side_by_side(events: &[EditEvent], stream: &[(&str, Change)], runs: usize) {
    let mix = Mix::of(events);
    let (ops, n_events) = (mix.ops as f64, mix.events as f64);
    let ours_runs = timings(runs, || (), |()| fold(events));
    let merger = timings(runs, || (), |()| fold_merger(events))[0];
    let am_runs = runs.min(3);
    let theirs_runs = timings(am_runs, || stream.to_vec(), automerge_peer::apply_remote);
    let (ours, theirs) = (ours_runs[0], theirs_runs[0]);

    let (t, a) = (conflict::tidemark(), conflict::automerge());
    let n = if runs > 1 { 20_000 } else { 100 };
    let apply_ours =
        |d: &mut PatientDoc, e: &mut Option<EditEvent>| d.apply(e.as_ref().expect("one each")).expect("applies");
    let apply_theirs = |d: &mut Automerge, c: &mut Option<Change>| {
        d.apply_changes([c.take().expect("one each")]).expect("applies");
    };
    let t_open = per_apply(runs, n, &t.base, &t.conflicting, apply_ours);
    let t_resolve = per_apply(runs, n, &t.opened, &t.resolving, apply_ours);
    let a_open = per_apply(runs, n / 10, &a.base, &a.conflicting, apply_theirs);
    let a_resolve = per_apply(runs, n / 10, &a.opened, &a.resolving, apply_theirs);

    let docs = fold(events);
    let replicas = automerge_peer::apply_remote(stream.to_vec());
    let mut our_sizes: Vec<usize> = docs.values().map(|d| d.encode().len()).collect();
    let mut their_sizes: Vec<usize> = replicas.values().map(|d| d.save().len()).collect();
    our_sizes.sort_unstable();
    their_sizes.sort_unstable();
    let conflicted = docs.values().filter(|d| d.open_conflicts() > 0).count();

    println!();
    println!("Tidemark CRDT beside Automerge 0.12 on the same edits, same run, one core");
    println!("workload (seed {SEED}): {mix}; {conflicted} patients end in conflict");
    println!(
        "fold: whole workload, best of {runs} runs (Automerge: of {am_runs}); applies: best of {runs} runs over {n} \
         documents (Automerge: {})",
        n / 10
    );
    println!();
    row("", "tidemark".into(), "automerge".into(), "tidemark is".into(), "target (design.md#targets)");
    let speedup = theirs / ours;
    row(
        "fold, ops/s (PatientDoc::apply)",
        grouped(ops / ours),
        grouped(ops / theirs),
        format!("{speedup:.1}x faster"),
        &format!(">= 1,000,000 ops/s: {}; >= 30x: {}", met(ops / ours >= 1e6), met(speedup >= 30.0)),
    );
    row(
        "fold, ops/s, median run",
        grouped(ops / median(&ours_runs)),
        grouped(ops / median(&theirs_runs)),
        format!("{:.1}x faster", median(&theirs_runs) / median(&ours_runs)),
        "",
    );
    row(
        "fold, events/s (Automerge: changes/s)",
        grouped(n_events / ours),
        grouped(n_events / theirs),
        String::new(),
        "",
    );
    row(
        "fold, ops/s (merger's apply_event)",
        grouped(ops / merger),
        grouped(ops / theirs),
        format!("{:.1}x faster", theirs / merger),
        &format!(">= 1,000,000 ops/s: {}", met(ops / merger >= 1e6)),
    );
    row(
        "apply opening a conflict, us",
        format!("{:.3}", t_open * 1e6),
        format!("{:.3}", a_open * 1e6),
        format!("{:.1}x faster", a_open / t_open),
        &format!("<= 2 us: {}", met(t_open <= 2e-6)),
    );
    row(
        "apply resolving it, us",
        format!("{:.3}", t_resolve * 1e6),
        format!("{:.3}", a_resolve * 1e6),
        format!("{:.1}x faster", a_resolve / t_resolve),
        &format!("<= 2 us: {}", met(t_resolve <= 2e-6)),
    );
    let (our_mean, their_mean) = (mean(&our_sizes), mean(&their_sizes));
    row(
        "state bytes per patient, mean",
        grouped(our_mean),
        grouped(their_mean),
        format!("{:.2}x the size", our_mean / their_mean),
        &format!("<= 1024: {}", met(our_mean <= 1024.0)),
    );
    let (our_p99, their_p99) = (percentile(&our_sizes, 0.99), percentile(&their_sizes, 0.99));
    row(
        "state bytes per patient, p99",
        grouped(our_p99 as f64),
        grouped(their_p99 as f64),
        format!("{:.2}x the size", our_p99 as f64 / their_p99 as f64),
        "",
    );
    println!("(state: PatientDoc::encode() beside Automerge::save(); ratios are tidemark over automerge)");
}

fn main() {
    let mode = Mode::from_args();
    let patients = mode.size("TIDEMARK_BENCH_PATIENTS", 10_000, 200);
    let events = workload::generate(patients, SEED);
    println!("workload: {}", Mix::of(&events));
    let stream = automerge_peer::author_changes(&events);

    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c, &events, &stream);
    c.final_summary();
    if !mode.list {
        side_by_side(&events, &stream, mode.pick(7, 1));
        mode.footer();
    }
}
