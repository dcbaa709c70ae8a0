//! The merger's two records per touched patient and their decoders: the
//! changelog record (`PatientDoc::encode`, the canonical binary CRDT state,
//! decoded by `PatientDoc::decode` on restore) and the state-topic record
//! (`serde_json` of `PatientDoc::view()`, decoded by the archiver). Each is
//! printed beside the bound measured in the same run on the same bytes: a
//! memcpy of them into one fresh vector per record, the least any codec
//! that hands back a `Vec<u8>` per record can cost. The binary codec is also
//! put beside serde_json of the view, the peer a reader would reach for.
//!
//! `cargo bench -p tidemark-benches --bench state`; `TIDEMARK_BENCH_PATIENTS`
//! (default 10000, about 5 events each) scales the workload. Under
//! `cargo test --benches` every path runs once, on 200 patients.

use std::time::Duration;

use criterion::{Criterion, Throughput};
use tidemark_benches::folded::{self, copy_each, state_records, total_bytes};
use tidemark_benches::report::{Mode, best, fixed, grouped, of_rate, row};
use tidemark_crdt::PatientDoc;
use tidemark_schemas::PatientView;
use tidemark_testkit::workload::{self, Mix};

tidemark_benches::service_allocator!();

const SEED: u64 = 42;

/// SHA-256 of every record with its length, in patient order, as hex.
fn digest(records: &[Vec<u8>]) -> String {
    let mut h = ring::digest::Context::new(&ring::digest::SHA256);
    for r in records {
        h.update(&(r.len() as u64).to_le_bytes());
        h.update(r);
    }
    h.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn encode_all(docs: &[PatientDoc]) -> Vec<Vec<u8>> {
    docs.iter().map(PatientDoc::encode).collect()
}

fn decode_all(records: &[Vec<u8>]) -> Vec<PatientDoc> {
    records.iter().map(|r| PatientDoc::decode(r).expect("own encodings decode")).collect()
}

/// What the merger produces to the state topic per touched patient.
fn view_json_all(docs: &[PatientDoc]) -> Vec<Vec<u8>> {
    docs.iter().map(|d| serde_json::to_vec(&d.view()).expect("a view always serialises")).collect()
}

/// What the archiver does with each state record it scans.
fn view_decode_all(records: &[Vec<u8>]) -> Vec<PatientView> {
    records.iter().map(|r| serde_json::from_slice(r).expect("own views decode")).collect()
}

/// The merger's whole per-patient output: both records.
fn both_records(docs: &[PatientDoc]) -> Vec<(Vec<u8>, Vec<u8>)> {
    docs.iter().map(|d| (d.encode(), serde_json::to_vec(&d.view()).expect("a view always serialises"))).collect()
}

fn criterion_benches(c: &mut Criterion, docs: &[PatientDoc], changelog: &[Vec<u8>], state: &[Vec<u8>]) {
    let mut g = c.benchmark_group("changelog_record");
    g.sample_size(20).measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Bytes(total_bytes(changelog) as u64));
    g.bench_function("tidemark_encode", |b| b.iter_with_large_drop(|| encode_all(docs)));
    g.bench_function("tidemark_decode", |b| b.iter_with_large_drop(|| decode_all(changelog)));
    g.bench_function("memcpy_bound", |b| b.iter_with_large_drop(|| copy_each(changelog)));
    g.finish();
    let mut g = c.benchmark_group("state_record");
    g.sample_size(20).measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Bytes(total_bytes(state) as u64));
    g.bench_function("view_and_serde_json_encode", |b| b.iter_with_large_drop(|| view_json_all(docs)));
    g.bench_function("serde_json_decode_view", |b| b.iter_with_large_drop(|| view_decode_all(state)));
    g.bench_function("memcpy_bound", |b| b.iter_with_large_drop(|| copy_each(state)));
    g.finish();
}

/// Two rows for one codec path: records/s and MB/s, against the memcpy
/// bound over the same bytes.
fn codec_rows(what: &str, records: usize, bytes: usize, ours: f64, memcpy: f64) {
    let (n, mb) = (records as f64, bytes as f64 / 1e6);
    let ratio = format!("{:.1}x the time", ours / memcpy);
    row(&format!("{what}, records/s"), grouped(n / ours), grouped(n / memcpy), ratio, "");
    row(&format!("{what}, MB/s"), grouped(mb / ours), grouped(mb / memcpy), String::new(), "");
}

fn side_by_side(docs: &[PatientDoc], changelog: &[Vec<u8>], state: &[Vec<u8>], runs: usize) {
    let n = docs.len();
    let (cl_bytes, st_bytes) = (total_bytes(changelog), total_bytes(state));
    let encode = best(runs, || encode_all(docs));
    let decode = best(runs, || decode_all(changelog));
    let cl_copy = best(runs, || copy_each(changelog));
    let view_json = best(runs, || view_json_all(docs));
    let view_only = best(runs, || folded::views(docs));
    let view_decode = best(runs, || view_decode_all(state));
    let st_copy = best(runs, || copy_each(state));
    let both = best(runs, || both_records(docs));

    println!();
    println!(
        "Merger state records, {n} patients: changelog {:.0} B/record (PatientDoc::encode), state {:.0} B/record \
         (JSON view); one core, best of {runs}",
        cl_bytes as f64 / n as f64,
        st_bytes as f64 / n as f64
    );
    println!();
    row("bound: memcpy of the same bytes", "tidemark".into(), "memcpy".into(), "tidemark takes".into(), "");
    codec_rows("changelog encode", n, cl_bytes, encode, cl_copy);
    codec_rows("changelog decode (restore)", n, cl_bytes, decode, cl_copy);
    codec_rows("state record: view() + serde_json", n, st_bytes, view_json, st_copy);
    codec_rows("state record decode (archiver)", n, st_bytes, view_decode, st_copy);
    println!("(memcpy: each record copied into a fresh Vec, i.e. one allocation and one copy per record)");

    println!();
    row("peer: serde_json of the view", "binary codec".into(), "serde_json".into(), "binary is".into(), "");
    let rate = |secs: f64| n as f64 / secs;
    row(
        "encode, records/s",
        grouped(rate(encode)),
        grouped(rate(view_json)),
        of_rate(rate(encode), rate(view_json)),
        "",
    );
    row(
        "decode, records/s",
        grouped(rate(decode)),
        grouped(rate(view_decode)),
        of_rate(rate(decode), rate(view_decode)),
        "",
    );
    row(
        "bytes per record",
        grouped(cl_bytes as f64 / n as f64),
        grouped(st_bytes as f64 / n as f64),
        String::new(),
        "",
    );
    println!("(serde_json side: view() + to_vec to encode, from_slice::<PatientView> to decode)");
    println!();
    println!(
        "per touched patient the merger makes both records: {} us ({} of it view() alone), at most {} patients/s \
         per core from encoding alone; no target of its own in design.md#targets",
        fixed(both / n as f64 * 1e6, 2),
        fixed(view_only / n as f64 * 1e6, 2),
        grouped(n as f64 / both)
    );
}

fn main() {
    let mode = Mode::from_args();
    let patients = mode.size("TIDEMARK_BENCH_PATIENTS", 10_000, 200);
    let events = workload::generate(patients, SEED);
    println!("workload: {}", Mix::of(&events));
    let docs = folded::docs(&events);
    let changelog = encode_all(&docs);
    let state = state_records(&folded::views(&docs));
    assert_eq!(decode_all(&changelog).iter().map(PatientDoc::encode).collect::<Vec<_>>(), changelog);
    println!(
        "changelog records: SHA-256 {} over all {} (equal across a codec change = byte-identical encodings)",
        digest(&changelog),
        changelog.len()
    );

    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c, &docs, &changelog, &state);
    c.final_summary();
    if !mode.list {
        side_by_side(&docs, &changelog, &state, mode.pick(7, 1));
        mode.footer();
    }
}
