//! The archiver's hot stages on views the CRDT produced for the seeded
//! workload, each beside a bound or peer measured in the same run:
//!
//! * views -> Arrow (`table::to_batch`), and views -> Parquet through the
//!   archiver's `PartWriter`, beside arrow-rs's `ArrowWriter` writing the same
//!   record batches with the same properties and no encryption;
//! * sealing and opening a part (`crypto::seal_part` / `open_part`) over
//!   the same Parquet bytes, repeated to a large part so the per-part KEM
//!   cost is amortised, beside raw ring AES-256-GCM in the same chunk size,
//!   raw ring SHA-256 (`seal_part` hashes every byte it writes for the
//!   manifest), and the `age` CLI encrypting and decrypting the same bytes;
//!   then the fixed cost of a part (KEM, key schedule, header);
//! * the whole snapshot path (state records -> views -> sort -> Arrow ->
//!   Parquet -> sealed part), extrapolated to the 1M patients of the snapshot target
//!   (docs/design.md#targets).
//!
//! `cargo bench -p tidemark-benches --bench archive`;
//! `TIDEMARK_BENCH_ARCHIVE_PATIENTS` (default 100000) and
//! `TIDEMARK_BENCH_SEAL_MIB` (default 128) scale it. Under
//! `cargo test --benches` every path runs once on 300 patients and 1 MiB.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use criterion::{Criterion, SamplingMode, Throughput};
use tidemark_archiver::table::{PartOptions, PartWriter, Profile, TableLayout, sort_views, to_batch};
use tidemark_benches::age_peer::{Age, AgeError};
use tidemark_benches::crypto_bounds::{aes_gcm_chunks, aes_gcm_then_sha256_chunks, sha256};
use tidemark_benches::report::{Mode, best, fixed, gbps, grouped, met, of_rate, row};
use tidemark_benches::{LAYOUT_NOW_MS, folded, parquet_bound};
use tidemark_schemas::{Catalog, PatientView};
use tidemark_seal::header::header_len;
use tidemark_seal::stream::{DEFAULT_CHUNK_SIZE, sealed_len};
use tidemark_seal::{RecipientPublicKey, RecipientSecretKey, kem, open_part, seal_part};
use tidemark_testkit::workload::{self, Mix};

tidemark_benches::service_allocator!();

const SEED: u64 = 42;
/// docs/design.md#targets: sealed parts >= 6 GB/s per core.
const SEAL_TARGET_GBPS: f64 = 6.0;
/// docs/design.md#targets: a snapshot of 1M patients in < 30 s.
const SNAPSHOT_PATIENTS: f64 = 1e6;
const SNAPSHOT_SECONDS: f64 = 30.0;
/// The Parquet zstd write rate measured on other, narrower rows when the
/// targets were set (docs/design.md#targets).
const PARQUET_ROWS_PER_S: f64 = 4.2e6;
/// The part header's stand-in for the raw AES bound's associated data.
const AAD: &[u8] = b"tidemark part header stand-in";

/// Everything the stages consume, built once.
struct Input {
    layout: Arc<TableLayout>,
    options: PartOptions,
    /// Sorted views, as `PartWriter` takes them.
    views: Vec<PatientView>,
    /// The views as the state topic carries them (JSON), unsorted like a scan.
    records: Vec<Vec<u8>>,
    batches: Vec<RecordBatch>,
    /// The Parquet part of all views.
    part: Vec<u8>,
    /// `part` repeated to the sealing size.
    plain: Vec<u8>,
    key: RecipientSecretKey,
    recipients: Vec<RecipientPublicKey>,
    /// `plain` sealed once, for opening.
    sealed: Vec<u8>,
}

impl Input {
    fn new(patients: usize, seal_bytes: usize) -> Self {
        let events = workload::generate(patients, SEED);
        println!("workload: {}", Mix::of(&events));
        let views = folded::views(&folded::docs(&events));
        let mut records = folded::state_records(&views);
        // A scan returns records in hash-map order: shuffle deterministically.
        records.sort_by_key(|r| shuffle_key(r));
        let layout = Arc::new(
            TableLayout::new(Catalog::builtin(), &Profile::Identified, LAYOUT_NOW_MS).expect("the built-in layout"),
        );
        let options = PartOptions::default();
        let batches: Vec<RecordBatch> =
            views.chunks(options.batch_rows).map(|c| to_batch(&layout, c).expect("views fit the catalog")).collect();
        let part = write_part(&layout, &options, &views, Vec::new());
        let plain: Vec<u8> = part.iter().copied().cycle().take(seal_bytes.max(part.len())).collect();
        let key = RecipientSecretKey::generate().expect("the OS random source works");
        let recipients = vec![key.public_key().clone()];
        let mut sealed = Vec::with_capacity(sealed_capacity(plain.len()));
        seal_part(&plain[..], &mut sealed, &recipients, DEFAULT_CHUNK_SIZE).expect("sealing into memory");
        Self { layout, options, views, records, batches, part, plain, key, recipients, sealed }
    }

    fn parquet_bound(&self, sink: Vec<u8>) -> Vec<u8> {
        parquet_bound::write(&self.batches, parquet_bound::properties(&self.batches, &self.options), sink)
    }

    fn seal(&self, out: &mut Vec<u8>) {
        out.clear();
        seal_part(&self.plain[..], &mut *out, &self.recipients, DEFAULT_CHUNK_SIZE).expect("sealing into memory");
    }

    fn open(&self, out: &mut Vec<u8>) {
        out.clear();
        open_part(&self.sealed[..], &mut *out, &self.key).expect("opening our own part");
    }

    /// The snapshot path of one part: what `archiver::snapshot` does between
    /// reading the state topic and storing the sealed bytes.
    fn snapshot(&self) -> Vec<u8> {
        let mut views: Vec<PatientView> =
            self.records.iter().map(|r| serde_json::from_slice(r).expect("own records decode")).collect();
        sort_views(&self.layout, &mut views);
        let plain = write_part(&self.layout, &self.options, &views, Vec::new());
        let mut sealed = Vec::with_capacity(sealed_capacity(plain.len()));
        seal_part(&plain[..], &mut sealed, &self.recipients, DEFAULT_CHUNK_SIZE).expect("sealing into memory");
        sealed
    }
}

/// FNV-1a of a record: a fixed, cheap shuffle order.
fn shuffle_key(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn sealed_capacity(plain: usize) -> usize {
    header_len(1) + sealed_len(plain as u64, DEFAULT_CHUNK_SIZE) as usize
}

fn write_part(layout: &Arc<TableLayout>, options: &PartOptions, views: &[PatientView], sink: Vec<u8>) -> Vec<u8> {
    let mut w = PartWriter::new(Arc::clone(layout), sink, options.clone()).expect("valid part options");
    w.push(views).expect("sorted views that fit the catalog");
    w.finish().expect("writing to memory succeeds").0
}

fn criterion_benches(c: &mut Criterion, input: &Input) {
    let rows = input.views.len() as u64;
    let mut g = c.benchmark_group("table");
    g.sample_size(10).sampling_mode(SamplingMode::Flat).measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(rows));
    g.bench_function("to_batch", |b| {
        b.iter(|| input.views.chunks(input.options.batch_rows).filter(|c| to_batch(&input.layout, c).is_ok()).count())
    });
    g.bench_function("part_writer", |b| b.iter(|| write_part(&input.layout, &input.options, &input.views, Vec::new())));
    g.bench_function("arrow_writer_bound", |b| b.iter(|| input.parquet_bound(Vec::new())));
    g.finish();

    let mut g = c.benchmark_group("seal");
    g.sample_size(10).sampling_mode(SamplingMode::Flat).measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Bytes(input.plain.len() as u64));
    let mut out = Vec::with_capacity(sealed_capacity(input.plain.len()));
    g.bench_function("seal_part", |b| b.iter(|| input.seal(&mut out)));
    g.bench_function("open_part", |b| b.iter(|| input.open(&mut out)));
    let mut scratch = input.plain.clone();
    g.bench_function("ring_aes_256_gcm_chunks", |b| b.iter(|| aes_gcm_chunks(&mut scratch, DEFAULT_CHUNK_SIZE, AAD)));
    g.bench_function("ring_sha256", |b| b.iter(|| sha256(&input.plain)));
    g.finish();

    let mut g = c.benchmark_group("part_fixed_cost");
    g.sample_size(20).measurement_time(Duration::from_secs(2));
    let kem_key = kem::SecretKey::generate().expect("the OS random source works");
    let kem_public = kem_key.public_key();
    let (ct, _) = kem_public.encapsulate().expect("encapsulating to a valid key");
    g.bench_function("seal_part_empty", |b| {
        b.iter(|| seal_part(&b""[..], io::sink(), &input.recipients, DEFAULT_CHUNK_SIZE).expect("seal"))
    });
    g.bench_function("hybrid_kem_encapsulate", |b| b.iter(|| kem_public.encapsulate().expect("encapsulate")));
    g.bench_function("hybrid_kem_decapsulate", |b| b.iter(|| kem_key.decapsulate(&ct).expect("decapsulate")));
    g.finish();

    let mut g = c.benchmark_group("snapshot_path");
    g.sample_size(10).sampling_mode(SamplingMode::Flat).measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(rows));
    g.bench_function("records_to_sealed_part", |b| b.iter(|| input.snapshot()));
    g.finish();
}

fn table_rows(input: &Input, runs: usize) {
    let rows = input.views.len() as f64;
    let to_batch_s = best(runs, || {
        input.views.chunks(input.options.batch_rows).filter(|c| to_batch(&input.layout, c).is_ok()).count()
    });
    let mut ours_bytes = 0;
    let ours = best(runs, || ours_bytes = write_part(&input.layout, &input.options, &input.views, Vec::new()).len());
    let mut bound_bytes = 0;
    let bound = best(runs, || bound_bytes = input.parquet_bound(Vec::new()).len());
    println!();
    println!(
        "Views -> Arrow -> Parquet (zstd {}, {} rows per batch, row groups <= {} rows), {} rows, one core, best of {runs}",
        input.options.zstd_level,
        input.options.batch_rows,
        input.options.max_row_group_rows,
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

fn seal_rows(input: &Input, runs: usize) {
    let n = input.plain.len() as f64;
    let mut out = Vec::with_capacity(sealed_capacity(input.plain.len()));
    let seal = best(runs, || input.seal(&mut out));
    let open = best(runs, || input.open(&mut out));
    let mut scratch = input.plain.clone();
    let aes = best(runs, || aes_gcm_chunks(&mut scratch, DEFAULT_CHUNK_SIZE, AAD));
    let sha = best(runs, || sha256(&input.sealed));
    let fused = best(runs, || aes_gcm_then_sha256_chunks(&mut scratch, DEFAULT_CHUNK_SIZE, AAD));
    let mut copy = Vec::with_capacity(input.plain.len());
    let memcpy = best(runs, || {
        copy.clear();
        copy.extend_from_slice(&input.plain);
    });
    println!();
    println!(
        "Sealing a part: {:.0} MiB of real Parquet (a {:.2} MiB part repeated), {} KiB chunks, 1 recipient, one core, \
         best of {runs}",
        n / (1 << 20) as f64,
        input.part.len() as f64 / (1 << 20) as f64,
        DEFAULT_CHUNK_SIZE >> 10
    );
    println!();
    row("GB/s", "tidemark".into(), "bound/peer".into(), "tidemark is".into(), "target (design.md#targets)");
    let target = format!(">= {SEAL_TARGET_GBPS} GB/s per core: {}", met(n / seal / 1e9 >= SEAL_TARGET_GBPS));
    row("seal_part vs raw AES-256-GCM chunks", gbps(n, seal), gbps(n, aes), of_rate(aes, seal), &target);
    row("seal_part vs raw SHA-256", gbps(n, seal), gbps(n, sha), of_rate(sha, seal), "");
    row("seal_part vs AES + SHA-256, serial", gbps(n, seal), gbps(n, aes + sha), of_rate(aes + sha, seal), "");
    row("seal_part vs AES then SHA per chunk", gbps(n, seal), gbps(n, fused), of_rate(fused, seal), "");
    row("open_part vs raw AES-256-GCM chunks", gbps(n, open), gbps(n, aes), of_rate(aes, open), "");
    row("open_part vs AES + SHA-256, serial", gbps(n, open), gbps(n, aes + sha), of_rate(aes + sha, open), "");
    row("memcpy of the same bytes (for scale)", "-".into(), gbps(n, memcpy), String::new(), "");
    println!(
        "(raw: ring, in place, {} KiB chunks, counter nonces, no Read/Write; SHA-256 is in seal_part because the \
         manifest records each part's hash, computed while sealing instead of re-reading the part)",
        DEFAULT_CHUNK_SIZE >> 10
    );
    match Age::prepare(&input.plain) {
        Ok(age) => age_rows(&age, n, seal, open, runs),
        // Not installed, or it failed: say so and why, and carry on without it.
        Err(e) => println!("age peer SKIPPED: {e}"),
    }
}

fn age_rows(age: &Age, n: f64, seal: f64, open: f64, runs: usize) {
    let timed = |f: &dyn Fn() -> Result<f64, AgeError>| -> Result<f64, AgeError> {
        let mut t = Vec::with_capacity(runs);
        for _ in 0..runs.clamp(1, 3) {
            t.push(f()?);
        }
        Ok(t.into_iter().fold(f64::INFINITY, f64::min))
    };
    let (enc, dec) = match (timed(&|| age.encrypt()), timed(&|| age.decrypt())) {
        (Ok(e), Ok(d)) => (e, d),
        (Err(e), _) | (_, Err(e)) => {
            println!("age peer SKIPPED: {e}");
            return;
        }
    };
    row("seal_part vs age -r (X25519, ChaCha20)", gbps(n, seal), gbps(n, enc), of_rate(enc, seal), "");
    row("open_part vs age -d", gbps(n, open), gbps(n, dec), of_rate(dec, open), "");
    println!(
        "(age 1.x CLI as a subprocess on a file in {}, in page cache, output to /dev/null: its figure includes \
         process start and reading the file; best of {})",
        age.dir().display(),
        runs.clamp(1, 3)
    );
}

fn fixed_cost_rows(input: &Input, runs: usize) {
    let reps = if runs > 1 { 200 } else { 2 };
    let per = |secs: f64| secs / f64::from(reps);
    let seal0 = per(best(runs, || {
        for _ in 0..reps {
            seal_part(&b""[..], io::sink(), &input.recipients, DEFAULT_CHUNK_SIZE).expect("seal");
        }
    }));
    let mut empty = Vec::new();
    seal_part(&b""[..], &mut empty, &input.recipients, DEFAULT_CHUNK_SIZE).expect("seal");
    let open0 = per(best(runs, || {
        for _ in 0..reps {
            open_part(&empty[..], io::sink(), &input.key).expect("open");
        }
    }));
    let kem_key = kem::SecretKey::generate().expect("the OS random source works");
    let kem_public = kem_key.public_key();
    let (ct, _) = kem_public.encapsulate().expect("encapsulate");
    let encaps = per(best(runs, || {
        for _ in 0..reps {
            kem_public.encapsulate().expect("encapsulate");
        }
    }));
    let decaps = per(best(runs, || {
        for _ in 0..reps {
            kem_key.decapsulate(&ct).expect("decapsulate");
        }
    }));
    let us = |s: f64| fixed(s * 1e6, 1);
    println!();
    row("fixed cost per part, us", "tidemark".into(), "peer".into(), String::new(), "");
    row("seal_part of 0 bytes (1 recipient)", us(seal0), String::new(), String::new(), "");
    row("  of which hybrid KEM encapsulate", us(encaps), String::new(), String::new(), "X25519 + ML-KEM-768");
    row("open_part of 0 bytes", us(open0), String::new(), String::new(), "");
    row("  of which hybrid KEM decapsulate", us(decaps), String::new(), String::new(), "");
    if let Ok(age) = Age::prepare(b"") {
        let t = (0..runs.clamp(1, 3)).filter_map(|_| age.encrypt_empty().ok()).fold(f64::INFINITY, f64::min);
        row("peer: age -r of an empty file", String::new(), us(t), String::new(), "process start included");
    }
    let share = seal0 / best(runs.min(3), || input.seal(&mut Vec::with_capacity(input.sealed.len())));
    println!(
        "(a {:.0} MiB part spends {:.3}% of its seal time on the fixed cost; +1 stanza per extra recipient: {} B)",
        input.plain.len() as f64 / (1 << 20) as f64,
        share * 100.0,
        header_len(2) - header_len(1)
    );
}

fn snapshot_rows(input: &Input, runs: usize) {
    let rows = input.views.len() as f64;
    let whole = best(runs, || input.snapshot());
    let decode =
        best(runs, || input.records.iter().filter(|r| serde_json::from_slice::<PatientView>(r).is_ok()).count());
    let mut sorted = input.views.clone();
    let sort = best(runs, || sort_views(&input.layout, &mut sorted));
    let rate = rows / whole;
    let target_rate = (SNAPSHOT_PATIENTS / SNAPSHOT_SECONDS).ceil();
    println!();
    println!(
        "Snapshot path, one part of {} rows: state records (JSON) -> views -> sort -> Arrow -> Parquet -> sealed, \
         one core, best of {runs}",
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
        "(per row: {} us in all; JSON decode {} us, sort {} us, the rest Arrow + Parquet + sealing)",
        us(whole),
        us(decode),
        us(sort)
    );
}

fn main() {
    let mode = Mode::from_args();
    let patients = mode.size("TIDEMARK_BENCH_ARCHIVE_PATIENTS", 100_000, 300);
    let seal_mib = mode.size("TIDEMARK_BENCH_SEAL_MIB", 128, 1);
    let input = Input::new(patients, seal_mib << 20);

    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c, &input);
    c.final_summary();
    if !mode.list {
        let runs = mode.pick(5, 1);
        table_rows(&input, runs);
        seal_rows(&input, runs);
        fixed_cost_rows(&input, runs);
        snapshot_rows(&input, mode.pick(3, 1));
        mode.footer();
    }
}
