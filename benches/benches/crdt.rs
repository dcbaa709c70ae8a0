//! The patient CRDT: fold throughput and the cost of a conflicting apply, with
//! Automerge applying the same edits as remote changes, measured in the same
//! run and printed side by side with the ratio.
//!
//! `cargo bench -p tidemark-benches --bench crdt`; `TIDEMARK_BENCH_PATIENTS`
//! (default 10000) scales the workload (5 events per patient).

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use automerge::transaction::Transactable as _;
use automerge::{ActorId, Automerge, Change, ObjId, ObjType, ROOT, ReadDoc as _};
use criterion::{BatchSize, Criterion, Throughput};
use serde_json::json;
use tidemark_benches::workload::{self, op_count};
use tidemark_merger::crdt::PatientDoc;
use tidemark_schemas::{EditEvent, Hlc, Op};
use uuid::Uuid;

const EVENTS_PER_PATIENT: usize = 5;

fn patients() -> usize {
    std::env::var("TIDEMARK_BENCH_PATIENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000)
}

fn fold(events: &[EditEvent]) -> HashMap<&str, PatientDoc> {
    let mut docs: HashMap<&str, PatientDoc> = HashMap::new();
    for e in events {
        docs.entry(e.patient_id.as_str())
            .or_insert_with(|| PatientDoc::new(&e.patient_id))
            .apply(e)
            .expect("generated events apply");
    }
    docs
}

/// A document holding a base write and one concurrent edit, plus the second
/// concurrent edit (opens a conflict) and a write that observed both (resolves it).
fn conflict_fixture() -> (PatientDoc, EditEvent, EditEvent) {
    let event = |n: u64, source: &str, wall: u64, observed: Option<&[(&str, u64)]>| EditEvent {
        event_id: Uuid::from_u64_pair((wall << 16) | 0x7000, 0x8000_0000_0000_0000 | n),
        patient_id: "pt-1".into(),
        source: source.into(),
        author: format!("clin-{n}"),
        hlc: Hlc::new(wall, 0),
        observed: observed.map(|o| o.iter().map(|(s, w)| ((*s).to_owned(), Hlc::new(*w, 0))).collect()),
        ops: vec![Op::Set { path: "vitals.heart_rate_bpm".into(), value: json!(60 + n) }],
    };
    let mut doc = PatientDoc::new("pt-1");
    doc.apply(&event(1, "site-a", 1_000, None)).expect("applies");
    doc.apply(&event(2, "site-a", 2_000, Some(&[("site-a", 1_000)]))).expect("applies");
    let second = event(3, "site-b", 2_500, Some(&[("site-a", 1_000)]));
    let resolve = event(4, "site-c", 3_000, Some(&[("site-a", 2_000), ("site-b", 2_500)]));
    (doc, second, resolve)
}

fn criterion_benches(c: &mut Criterion, events: &[EditEvent]) {
    let mut g = c.benchmark_group("crdt");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Elements(op_count(events) as u64));
    // The merger keeps its documents; freeing them is not part of folding.
    g.bench_function("fold_workload_ops", |b| b.iter_with_large_drop(|| fold(black_box(events))));
    g.finish();

    let (doc, second, resolve) = conflict_fixture();
    let mut opened = doc.clone();
    opened.apply(&second).expect("applies");
    assert_eq!(opened.open_conflicts(), 1, "the fixture opens a conflict");
    c.bench_function("apply_conflicting_write", |b| {
        b.iter_batched_ref(|| doc.clone(), |d| d.apply(black_box(&second)), BatchSize::SmallInput)
    });
    c.bench_function("apply_resolving_write", |b| {
        b.iter_batched_ref(|| opened.clone(), |d| d.apply(black_box(&resolve)), BatchSize::SmallInput)
    });
}

/// Per patient, the workload's events as Automerge changes (one change per
/// event, made by one author document per patient).
fn automerge_changes(events: &[EditEvent]) -> HashMap<&str, Vec<Change>> {
    struct Author {
        doc: Automerge,
        objects: HashMap<&'static str, ObjId>,
    }
    let mut authors: HashMap<&str, Author> = HashMap::new();
    let mut changes: HashMap<&str, Vec<Change>> = HashMap::new();
    for e in events {
        let author = authors.entry(e.patient_id.as_str()).or_insert_with(|| Author {
            doc: Automerge::new().with_actor(ActorId::from(e.patient_id.as_bytes())),
            objects: HashMap::new(),
        });
        let mut tx = author.doc.transaction();
        for op in &e.ops {
            let path: &'static str = match op.path() {
                "allergies" => "allergies",
                "medications" => "medications",
                "problems" => "problems",
                "notes" => "notes",
                _ => "",
            };
            let object = |tx: &mut automerge::transaction::Transaction<'_>,
                          objects: &mut HashMap<&'static str, ObjId>| {
                objects
                    .entry(path)
                    .or_insert_with(|| {
                        let kind = if path == "notes" { ObjType::List } else { ObjType::Map };
                        tx.put_object(ROOT, path, kind).expect("object")
                    })
                    .clone()
            };
            match op {
                Op::Set { path, value } => {
                    let v = value.as_i64().map_or_else(|| value.to_string().into(), automerge::ScalarValue::Int);
                    tx.put(ROOT, path.as_str(), v).expect("put");
                }
                Op::Clear { path } => tx.put(ROOT, path.as_str(), automerge::ScalarValue::Null).expect("put"),
                Op::Add { value, .. } => {
                    let o = object(&mut tx, &mut author.objects);
                    tx.put(&o, value.as_str().unwrap_or_default(), true).expect("put");
                }
                Op::Remove { value, .. } => {
                    let o = object(&mut tx, &mut author.objects);
                    let key = value.as_str().unwrap_or_default();
                    if tx.get(&o, key).ok().flatten().is_some() {
                        tx.delete(&o, key).expect("delete");
                    }
                }
                Op::Append { value, .. } => {
                    let o = object(&mut tx, &mut author.objects);
                    let len = tx.length(&o);
                    tx.insert(&o, len, value["text"].as_str().unwrap_or_default()).expect("insert");
                }
            }
        }
        tx.commit();
        let change = author.doc.get_last_local_change().expect("the transaction made a change");
        changes.entry(e.patient_id.as_str()).or_default().push(change);
    }
    changes
}

fn percentile(sorted: &[usize], p: f64) -> usize {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn side_by_side(events: &[EditEvent]) {
    let ops = op_count(events);
    let ours = (0..3)
        .map(|_| {
            let t = Instant::now();
            let docs = black_box(fold(events));
            let elapsed = t.elapsed();
            drop(docs);
            elapsed
        })
        .min()
        .expect("three runs");
    let changes = automerge_changes(events);
    let t = Instant::now();
    let mut replicas: HashMap<&str, Automerge> = HashMap::with_capacity(changes.len());
    for (patient, list) in &changes {
        let doc = replicas.entry(patient).or_default();
        for change in list {
            doc.apply_changes([change.clone()]).expect("remote change applies");
        }
    }
    let theirs = t.elapsed();

    let docs = fold(events);
    let mut our_sizes: Vec<usize> = docs.values().map(|d| d.encode().len()).collect();
    let mut their_sizes: Vec<usize> = replicas.values().map(|d| d.save().len()).collect();
    our_sizes.sort_unstable();
    their_sizes.sort_unstable();
    let mean = |v: &[usize]| v.iter().sum::<usize>() as f64 / v.len() as f64;

    let (n_events, ours_s, theirs_s) = (events.len() as f64, ours.as_secs_f64(), theirs.as_secs_f64());
    println!();
    println!("crdt fold, {} patients, {} events, {ops} ops, one core", docs.len(), events.len());
    println!("{:<34} {:>14} {:>14} {:>12}", "", "ops/s", "events/s", "elapsed");
    println!(
        "{:<34} {:>14.0} {:>14.0} {:>10.1}ms",
        "tidemark PatientDoc::apply",
        ops as f64 / ours_s,
        n_events / ours_s,
        ours_s * 1e3
    );
    println!(
        "{:<34} {:>14.0} {:>14.0} {:>10.1}ms",
        "automerge 0.12 apply_changes (1 by 1)",
        ops as f64 / theirs_s,
        n_events / theirs_s,
        theirs_s * 1e3
    );
    println!("ratio tidemark / automerge: {:.1}x", theirs_s / ours_s);
    println!(
        "state bytes per patient: tidemark mean {:.0} p99 {} | automerge save() mean {:.0} p99 {}",
        mean(&our_sizes),
        percentile(&our_sizes, 0.99),
        mean(&their_sizes),
        percentile(&their_sizes, 0.99)
    );
}

fn main() {
    let events = workload::generate(patients(), EVENTS_PER_PATIENT, 42);
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c, &events);
    c.final_summary();
    side_by_side(&events);
}
