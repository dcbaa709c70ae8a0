//! The archiver's hot stages on views the CRDT produced for the seeded
//! workload, each beside a bound or peer measured in the same run:
//!
//! * views -> Arrow (`table::to_batch`), and views -> Parquet through the
//!   archiver's `PartWriter`, beside arrow-rs's `ArrowWriter` writing the same
//!   record batches with the same properties;
//! * a part as the archiver writes it (one data page per column chunk,
//!   Parquet Modular Encryption) beside the same `PartWriter` writing plain
//!   Parquet, and each of the two choices alone;
//! * a snapshot's keys: drawing and wrapping them for a recipient, and the
//!   recipient recovering them;
//! * the whole snapshot path (state records -> views -> sort -> Arrow ->
//!   encrypted Parquet -> manifest entry), extrapolated to the 1M patients of
//!   the snapshot target (docs/design.md#targets);
//! * reading a snapshot of `TIDEMARK_BENCH_READ_PATIENTS` (default 200000) in
//!   `TIDEMARK_BENCH_READ_PARTS` (default 8) parts, plain and encrypted, with
//!   arrow-rs, pyarrow and DuckDB (`tidemark_benches::snapshot_read`).
//!
//! `cargo bench -p tidemark-benches --bench archive`;
//! `TIDEMARK_BENCH_ARCHIVE_PATIENTS` (default 100000) scales the writing
//! side. Under `cargo test --benches` every path runs once on 300 patients;
//! the Python readers run too when python3, pyarrow and DuckDB are there.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use criterion::{Criterion, SamplingMode, Throughput};
use tidemark_archiver::manifest::PartEntry;
use tidemark_archiver::pme;
use tidemark_archiver::table::{PartOptions, Profile, TableLayout, sort_views, to_batch};
use tidemark_benches::crypto_bounds::{aes_gcm_chunks, sha256};
use tidemark_benches::report::{Mode, best, fixed, gbps, grouped, met, of_rate, row};
use tidemark_benches::snapshot_parts::{SnapshotKeys, Variant, new_write_keys, recover, write_part};
use tidemark_benches::snapshot_read::PartSet;
use tidemark_benches::{LAYOUT_NOW_MS, folded, parquet_bound};
use tidemark_schemas::{Catalog, PatientView};
use tidemark_testkit::workload::{self, Mix};

tidemark_benches::service_allocator!();

const SEED: u64 = 42;
/// docs/design.md#targets: a snapshot of 1M patients in < 30 s.
const SNAPSHOT_PATIENTS: f64 = 1e6;
const SNAPSHOT_SECONDS: f64 = 30.0;
/// The Parquet zstd write rate measured on other, narrower rows when the
/// targets were set (docs/design.md#targets).
const PARQUET_ROWS_PER_S: f64 = 4.2e6;
/// The goal of the switch to Parquet Modular Encryption: a part as archived
/// at >= 0.9 of the rate of the same part written plain.
const PME_WRITE_GOAL: f64 = 0.9;
/// Parquet's encrypted modules are AES-GCM; the bound's chunk, for scale.
const AES_CHUNK: usize = 1 << 20;

/// Everything the writing stages consume, built once.
struct Input {
    layout: Arc<TableLayout>,
    keys: SnapshotKeys,
    /// Sorted views, as `PartWriter` takes them.
    views: Vec<PatientView>,
    /// The views as the state topic carries them (JSON), unsorted like a scan.
    records: Vec<Vec<u8>>,
    batches: Vec<RecordBatch>,
}

impl Input {
    fn new(patients: usize) -> Self {
        let (layout, views) = views(patients);
        let mut records = folded::state_records(&views);
        // A scan returns records in hash-map order: shuffle deterministically.
        records.sort_by_key(|r| tidemark_benches::snapshot_read::fnv1a(r));
        let batch_rows = PartOptions::default().batch_rows;
        let batches: Vec<RecordBatch> =
            views.chunks(batch_rows).map(|c| to_batch(&layout, c).expect("views fit the catalog")).collect();
        Self { layout, keys: SnapshotKeys::generate(), views, records, batches }
    }

    fn write(&self, variant: Variant) -> Vec<u8> {
        write_part(&self.layout, &self.keys.options(variant), &self.views)
    }

    fn parquet_bound(&self) -> Vec<u8> {
        let props = parquet_bound::properties(&self.batches, &PartOptions::default());
        parquet_bound::write(&self.batches, props, Vec::new())
    }

    /// The snapshot path of one part: what `archiver::snapshot` does between
    /// reading the state topic and storing the part (its manifest entry
    /// checks the encrypted tail and hashes the file).
    fn snapshot(&self) -> PartEntry {
        let mut views: Vec<PatientView> =
            self.records.iter().map(|r| serde_json::from_slice(r).expect("own records decode")).collect();
        sort_views(&self.layout, &mut views);
        let file = write_part(&self.layout, &self.keys.options(Variant::Archived), &views);
        pme::part_entry("part-00000-000.parquet".into(), &file, views.len() as u64, 1).expect("an encrypted part")
    }
}

/// The seeded workload's views for `patients` (sorted by patient id) and the
/// identified layout.
fn views(patients: usize) -> (Arc<TableLayout>, Vec<PatientView>) {
    let events = workload::generate(patients, SEED);
    println!("workload: {}", Mix::of(&events));
    let views = folded::views(&folded::docs(&events));
    let layout =
        TableLayout::new(Catalog::builtin(), &Profile::Identified, LAYOUT_NOW_MS).expect("the built-in layout");
    (Arc::new(layout), views)
}

fn criterion_benches(c: &mut Criterion, input: &Input) {
    let rows = input.views.len() as u64;
    let batch_rows = PartOptions::default().batch_rows;
    let mut g = c.benchmark_group("table");
    g.sample_size(10).sampling_mode(SamplingMode::Flat).measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(rows));
    g.bench_function("to_batch", |b| {
        b.iter(|| input.views.chunks(batch_rows).filter(|c| to_batch(&input.layout, c).is_ok()).count())
    });
    for (name, v) in [
        ("part_writer", Variant::Plain),
        ("part_writer_one_page", Variant::OnePage),
        ("part_writer_encrypted", Variant::Encrypted),
        ("part_writer_archived", Variant::Archived),
    ] {
        g.bench_function(name, |b| b.iter(|| input.write(v)));
    }
    g.bench_function("arrow_writer_bound", |b| b.iter(|| input.parquet_bound()));
    g.finish();

    let mut g = c.benchmark_group("snapshot_keys");
    g.sample_size(20).measurement_time(Duration::from_secs(2));
    g.bench_function("write_keys_one_recipient", |b| b.iter(|| new_write_keys(&input.keys.secret)));
    g.bench_function("recover_keys", |b| b.iter(|| recover(&input.keys.write, &input.keys.secret)));
    g.finish();

    let mut g = c.benchmark_group("snapshot_path");
    g.sample_size(10).sampling_mode(SamplingMode::Flat).measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(rows));
    g.bench_function("records_to_encrypted_part", |b| b.iter(|| input.snapshot()));
    g.finish();
}

fn table_rows(input: &Input, runs: usize) {
    let rows = input.views.len() as f64;
    let options = PartOptions::default();
    let to_batch_s =
        best(runs, || input.views.chunks(options.batch_rows).filter(|c| to_batch(&input.layout, c).is_ok()).count());
    let mut ours_bytes = 0;
    let ours = best(runs, || ours_bytes = input.write(Variant::Plain).len());
    let mut bound_bytes = 0;
    let bound = best(runs, || bound_bytes = input.parquet_bound().len());
    println!();
    println!(
        "Views -> Arrow -> Parquet, plain (zstd {}, {} rows per batch, row groups <= {} rows), {} rows, one core, \
         best of {runs}",
        options.zstd_level,
        options.batch_rows,
        options.max_row_group_rows,
        grouped(rows)
    );
    println!();
    row("", "tidemark".into(), "ArrowWriter".into(), "tidemark is".into(), "bound");
    let parquet_target = format!("design.md#targets figure {} rows/s (other rows)", grouped(PARQUET_ROWS_PER_S));
    row("to_batch (views -> Arrow), rows/s", grouped(rows / to_batch_s), "-".into(), String::new(), "");
    row(
        "PartWriter (views -> Parquet), rows/s",
        grouped(rows / ours),
        grouped(rows / bound),
        of_rate(bound, ours),
        &parquet_target,
    );
    let write_only = (ours - to_batch_s).max(f64::MIN_POSITIVE);
    row(
        "PartWriter less to_batch, rows/s",
        grouped(rows / write_only),
        grouped(rows / bound),
        of_rate(bound, write_only),
        "",
    );
    row(
        "bytes per row in the file",
        fixed(ours_bytes as f64 / rows, 1),
        fixed(bound_bytes as f64 / rows, 1),
        String::new(),
        "(same properties: sizes should match)",
    );
    println!("(ArrowWriter: arrow-rs writing the record batches to_batch built, PartWriter's properties, into a Vec)");
}

/// PME and one page per chunk against plain, each alone and together.
fn encryption_rows(input: &Input, runs: usize) {
    let rows = input.views.len() as f64;
    let variants = [Variant::Plain, Variant::OnePage, Variant::Encrypted, Variant::Archived];
    // Interleaved, so that a drift in the machine's speed hits every variant.
    let mut t = [f64::INFINITY; 4];
    let mut bytes = [0usize; 4];
    for _ in 0..runs {
        for (i, v) in variants.iter().enumerate() {
            t[i] = t[i].min(best(1, || bytes[i] = input.write(*v).len()));
        }
    }
    let [plain, one_page, encrypted, archived] = t;
    let archived_bytes = bytes[3] as f64;
    println!();
    println!(
        "A part as archived (one data page per column chunk, Parquet Modular Encryption AES_GCM_V1) vs the same \
         PartWriter writing plain Parquet, {} rows, one core, best of {runs}, interleaved",
        grouped(rows)
    );
    println!();
    row("rows/s", "ours".into(), "plain".into(), "ours is".into(), "goal");
    let goal = format!(">= {PME_WRITE_GOAL} of plain: {}", met(plain / archived >= PME_WRITE_GOAL));
    let rate = |s: f64| grouped(rows / s);
    row("as archived (one page, encrypted)", rate(archived), rate(plain), of_rate(plain, archived), &goal);
    row("encryption alone (default pages)", rate(encrypted), rate(plain), of_rate(plain, encrypted), "");
    row("encryption alone (both one page)", rate(archived), rate(one_page), of_rate(one_page, archived), "");
    row("one page per chunk alone (both plain)", rate(one_page), rate(plain), of_rate(plain, one_page), "");
    println!();
    row("file", "bytes/row".into(), "MiB".into(), "vs plain".into(), "write, ms");
    for (i, v) in variants.iter().enumerate() {
        let size = bytes[i] as f64;
        let vs = format!("{:.3}x the size", size / bytes[0] as f64);
        row(v.label(), fixed(size / rows, 1), fixed(size / f64::from(1 << 20), 2), vs, &fixed(t[i] * 1e3, 1));
    }
    let mut buf: Vec<u8> = (0..bytes[3]).map(|i| (i * 31 % 251) as u8).collect();
    let aes = best(runs, || aes_gcm_chunks(&mut buf, AES_CHUNK, b"bound"));
    let hash = best(runs, || sha256(&buf));
    println!(
        "(bounds on the archived file's {:.2} MiB: ring AES-256-GCM {} GB/s = {} ms, SHA-256 for the manifest {} \
         GB/s = {} ms; the archived part spends {} ms more than plain)",
        archived_bytes / f64::from(1 << 20),
        gbps(archived_bytes, aes),
        fixed(aes * 1e3, 2),
        gbps(archived_bytes, hash),
        fixed(hash * 1e3, 2),
        fixed((archived - plain) * 1e3, 1),
    );
}

fn key_rows(input: &Input, runs: usize) {
    let reps = if runs > 1 { 200 } else { 2 };
    let per = |secs: f64| secs / f64::from(reps);
    let write = per(best(runs, || {
        for _ in 0..reps {
            black_box(new_write_keys(&input.keys.secret));
        }
    }));
    let read = per(best(runs, || (0..reps).filter(|_| recover(&input.keys.write, &input.keys.secret).is_ok()).count()));
    let us = |s: f64| fixed(s * 1e6, 1);
    println!();
    row("fixed cost per snapshot and profile, us", "tidemark".into(), String::new(), String::new(), "");
    row("draw and wrap the keys, 1 recipient", us(write), String::new(), String::new(), "X25519 + ML-KEM-768");
    row("recover them (unwrap master, data key)", us(read), String::new(), String::new(), "");
    println!("(once per snapshot and profile, not per part: every part of a snapshot shares one data key)");
}

fn snapshot_rows(input: &Input, runs: usize) {
    let rows = input.views.len() as f64;
    let whole = best(runs, || input.snapshot());
    let decode =
        best(runs, || input.records.iter().filter(|r| serde_json::from_slice::<PatientView>(r).is_ok()).count());
    let mut sorted = input.views.clone();
    let sort = best(runs, || sort_views(&input.layout, &mut sorted));
    let file = input.write(Variant::Archived);
    let entry = best(runs, || pme::part_entry("p".into(), &file, 0, 1).is_ok());
    let rate = rows / whole;
    let target_rate = (SNAPSHOT_PATIENTS / SNAPSHOT_SECONDS).ceil();
    println!();
    println!(
        "Snapshot path, one part of {} rows: state records (JSON) -> views -> sort -> Arrow -> encrypted Parquet -> \
         manifest entry, one core, best of {runs}",
        grouped(rows)
    );
    println!();
    row("", "tidemark".into(), "target".into(), "tidemark is".into(), "target (design.md#targets)");
    row(
        "rows/s",
        grouped(rate),
        grouped(target_rate),
        format!("{:.1}x the target", rate / target_rate),
        &format!("1M patients < 30 s: {}", met(rate >= target_rate)),
    );
    row(
        "1M patients, s (EXTRAPOLATED)",
        fixed(SNAPSHOT_PATIENTS / rate, 1),
        fixed(SNAPSHOT_SECONDS, 0),
        String::new(),
        "linear from this run; one core, no broker read",
    );
    let us = |s: f64| fixed(s / rows * 1e6, 2);
    println!(
        "(per row: {} us in all; JSON decode {} us, sort {} us, manifest entry (tail check, SHA-256) {} us, the rest \
         Arrow + encrypted Parquet)",
        us(whole),
        us(decode),
        us(sort),
        us(entry)
    );
}

fn main() {
    let mode = Mode::from_args();
    let patients = mode.size("TIDEMARK_BENCH_ARCHIVE_PATIENTS", 100_000, 300);
    let input = Input::new(patients);

    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c, &input);
    c.final_summary();
    if mode.list {
        return;
    }
    let runs = mode.pick(5, 1);
    table_rows(&input, runs);
    encryption_rows(&input, runs);
    key_rows(&input, runs);
    snapshot_rows(&input, mode.pick(3, 1));
    // Only the keys are needed from here on: free the writing side's views.
    let Input { keys, .. } = input;

    let read_patients = mode.size("TIDEMARK_BENCH_READ_PATIENTS", 200_000, 300);
    let parts = mode.size("TIDEMARK_BENCH_READ_PARTS", 8, 2);
    let (layout, views) = views(read_patients);
    PartSet::write(&layout, views, parts, &keys).print(runs);
    mode.footer();
}
