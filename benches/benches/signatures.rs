//! Signed-event checks as ingest and the merger run them: DSSE decode and
//! Ed25519 verification through `tidemark_schemas::verify::Verifier`, one
//! envelope at a time (ingest: strict per line) and in batches (the merger), with and without catalog validation.
//! Beside each, the bound measured in the same run on the same messages (the
//! PAE bytes), signatures and keys: ed25519-dalek's raw `verify_strict` and
//! raw `verify_batch` in the same batch sizes, and our batch equation alone
//! (`tidemark_schemas::batch_ed25519`) beside the latter. Then validation alone: the
//! catalog's checks beside the `jsonschema` crate validating the same
//! payloads against `schemas/event.v1.schema.json`.
//!
//! `cargo bench -p tidemark-benches --bench signatures`;
//! `TIDEMARK_BENCH_EVENTS` (default 6400) sets how many signed events. Under
//! `cargo test --benches` every path runs once, on 128 events.

use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, Throughput};
use ed25519_dalek::Signature;
use serde_json::Value;
use tidemark_benches::report::{Mode, best, fixed, grouped, met, of_rate, row};
use tidemark_benches::signed::Signed;
use tidemark_schemas::batch_ed25519;
use tidemark_schemas::dsse::Envelope;
use tidemark_schemas::verify::{BatchMode, Verifier};
use tidemark_schemas::{Catalog, EDIT_EVENT_PAYLOAD_TYPE, EditEvent};
use tidemark_testkit::workload::{self, Mix};

tidemark_benches::service_allocator!();

const SEED: u64 = 42;
/// Envelopes per request in `tidemark loadgen`'s default NDJSON batch. Ingest
/// checks such a request line by line (strict, the one-at-a-time figure);
/// the batch figure at this size is kept comparable with earlier runs.
const INGEST_BATCH: usize = 50;
/// The batch size of the dalek batch figure the signature target was set
/// against (docs/design.md#targets).
const DALEK_BATCH: usize = 64;
const BATCH_SIZES: [usize; 2] = [INGEST_BATCH, DALEK_BATCH];
/// docs/design.md#targets: signature checks within 90% of dalek's batch rate.
const TARGET_OF_BATCH: f64 = 0.9;

/// Everything the paths under test need, built once.
struct Input {
    signed: Signed,
    events: Vec<EditEvent>,
    verifier: Verifier,
    exact: Verifier,
    catalog: &'static Catalog,
    now_ms: u64,
    schema: jsonschema::Validator,
    /// The payloads parsed as JSON values, for the jsonschema peer.
    values: Vec<Value>,
}

impl Input {
    fn new(events: Vec<EditEvent>) -> Self {
        let signed = Signed::of(&events);
        signed.assert_pae_round_trips();
        let schema: Value = serde_json::from_str(include_str!("../../schemas/event.v1.schema.json"))
            .expect("the event schema file is JSON");
        let schema = jsonschema::validator_for(&schema).expect("the event schema compiles");
        let values = signed.payloads.iter().map(|p| serde_json::from_slice(p).expect("payloads are JSON")).collect();
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).expect("the clock is after 1970").as_millis();
        let input = Self {
            verifier: Verifier::new(signed.registry.clone()),
            exact: Verifier::new(signed.registry.clone()).with_batch_mode(BatchMode::Exact),
            signed,
            events,
            catalog: Catalog::builtin(),
            now_ms: u64::try_from(now_ms).expect("milliseconds since 1970 fit u64"),
            schema,
            values,
        };
        input.assert_all_pass();
        input
    }

    /// Every path accepts every input: a bench that measured rejections
    /// would measure the wrong thing.
    fn assert_all_pass(&self) {
        let n = self.signed.len();
        assert_eq!(verify_each(&self.verifier, &self.signed.envelopes), n, "verify rejected a bench envelope");
        for size in BATCH_SIZES {
            assert_eq!(self.verify_batches(&self.verifier, size), n, "verify_batch({size}) rejected an envelope");
            assert_eq!(self.validate_batches(size), n, "verify_batch_and_validate({size}) rejected an envelope");
            assert!(dalek_batches(&self.signed, size), "dalek's batch rejected a bench signature");
            assert!(our_batches(&self.signed, size), "our batch equation rejected a bench signature");
        }
        assert!(dalek_strict(&self.signed), "dalek's verify_strict rejected a bench signature");
        assert_eq!(validate_all(self.catalog, &self.events, self.now_ms), n, "the catalog rejected a bench event");
        assert!(self.values.iter().all(|v| self.schema.is_valid(v)), "the JSON Schema rejected a bench event");
    }

    fn verify_batches(&self, verifier: &Verifier, size: usize) -> usize {
        let slices = self.signed.envelope_slices();
        slices.chunks(size).map(|c| verifier.verify_batch(c).into_iter().filter(Result::is_ok).count()).sum()
    }

    fn validate_batches(&self, size: usize) -> usize {
        let slices = self.signed.envelope_slices();
        slices
            .chunks(size)
            .map(|c| {
                let results = self.verifier.verify_batch_and_validate(c, self.catalog, self.now_ms);
                results.into_iter().filter(Result::is_ok).count()
            })
            .sum()
    }
}

fn verify_each(verifier: &Verifier, envelopes: &[Vec<u8>]) -> usize {
    envelopes.iter().filter(|e| verifier.verify(e).is_ok()).count()
}

/// The single-signature bound: dalek's strict check of each message.
fn dalek_strict(s: &Signed) -> bool {
    s.pae.iter().zip(&s.signatures).zip(&s.keys).all(|((m, sig), k)| k.verify_strict(m, sig).is_ok())
}

/// The batch bound: dalek's batch equation over `size` signatures at a time.
fn dalek_batches(s: &Signed, size: usize) -> bool {
    let messages: Vec<&[u8]> = s.pae.iter().map(Vec::as_slice).collect();
    messages
        .chunks(size)
        .zip(s.signatures.chunks(size))
        .zip(s.keys.chunks(size))
        .all(|((m, sig), k): ((&[&[u8]], &[Signature]), _)| ed25519_dalek::verify_batch(m, sig, k).is_ok())
}

/// Our batch equation alone (`batch_ed25519::verify`, each key's terms
/// merged) over the same inputs as [`dalek_batches`].
fn our_batches(s: &Signed, size: usize) -> bool {
    let items: Vec<batch_ed25519::Item<'_>> = (0..s.len())
        .map(|i| batch_ed25519::Item { key: &s.keys[i], message: &s.pae[i], signature: &s.signatures[i] })
        .collect();
    items.chunks(size).all(batch_ed25519::verify)
}

fn validate_all(catalog: &Catalog, events: &[EditEvent], now_ms: u64) -> usize {
    events.iter().filter(|e| catalog.validate(e, now_ms).is_ok()).count()
}

fn criterion_benches(c: &mut Criterion, input: &Input) {
    let n = input.signed.len() as u64;
    let mut g = c.benchmark_group("verify_one");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(n));
    g.bench_function("tidemark_verify", |b| b.iter(|| verify_each(&input.verifier, &input.signed.envelopes)));
    g.bench_function("dalek_verify_strict", |b| b.iter(|| dalek_strict(&input.signed)));
    g.finish();
    for size in BATCH_SIZES {
        let mut g = c.benchmark_group(format!("verify_batch_{size}"));
        g.sample_size(10).measurement_time(Duration::from_secs(3));
        g.throughput(Throughput::Elements(n));
        g.bench_function("tidemark_verify_batch", |b| b.iter(|| input.verify_batches(&input.verifier, size)));
        g.bench_function("tidemark_verify_batch_and_validate", |b| b.iter(|| input.validate_batches(size)));
        g.bench_function("dalek_verify_batch", |b| b.iter(|| dalek_batches(&input.signed, size)));
        g.bench_function("tidemark_batch_equation", |b| b.iter(|| our_batches(&input.signed, size)));
        g.finish();
    }
    let mut g = c.benchmark_group("validate");
    g.sample_size(20).measurement_time(Duration::from_secs(2));
    g.throughput(Throughput::Elements(n));
    g.bench_function("tidemark_catalog_validate", |b| {
        b.iter(|| validate_all(input.catalog, black_box(&input.events), input.now_ms))
    });
    g.bench_function("jsonschema_is_valid", |b| {
        b.iter(|| input.values.iter().filter(|v| input.schema.is_valid(black_box(v))).count())
    });
    g.bench_function("serde_json_parse_payload", |b| {
        b.iter(|| input.signed.payloads.iter().filter(|p| serde_json::from_slice::<Value>(p).is_ok()).count())
    });
    g.finish();
}

/// Seconds per item of each step `verify_batch_and_validate` takes, run on
/// its own over the same inputs: where the gap to dalek's batch goes.
fn breakdown(input: &Input, runs: usize) {
    let s = &input.signed;
    let n = s.len() as f64;
    let us = |secs: f64| fixed(secs / n * 1e6, 2);
    let decode =
        best(runs, || s.envelopes.iter().filter(|e| Envelope::decode_as(e, EDIT_EVENT_PAYLOAD_TYPE).is_ok()).count());
    let from_json = best(runs, || s.payloads.iter().filter(|p| EditEvent::from_json(p).is_ok()).count());
    let validate = best(runs, || validate_all(input.catalog, &input.events, input.now_ms));
    let batch = best(runs, || our_batches(s, DALEK_BATCH));
    let dalek = best(runs, || dalek_batches(s, DALEK_BATCH));
    let whole = best(runs, || input.validate_batches(DALEK_BATCH));
    let sum = decode + from_json + validate + batch;
    println!();
    println!("where verify_batch_and_validate({DALEK_BATCH}) spends its time, us per event, each step run alone:");
    let step = |what: &str, secs: f64| println!("  {what:<52} {:>7}", us(secs));
    step("Envelope::decode_as (JSON, base64, PAE)", decode);
    step("EditEvent::from_json (one typed parse, repeated keys refused)", from_json);
    step("Catalog::validate", validate);
    step("batch_ed25519::verify (keys merged), per signature", batch);
    step("  beside ed25519_dalek::verify_batch, per signature", dalek);
    step("sum of the steps", sum);
    step("measured whole", whole);
}

fn side_by_side(input: &Input, runs: usize) {
    let s = &input.signed;
    let n = s.len() as f64;
    let rate = |secs: f64| n / secs;
    println!();
    println!(
        "Signed-event checks beside ed25519-dalek 3 on the same {} envelopes (mean {:.0} bytes), same run, one core, \
         best of {runs}",
        s.len(),
        s.mean_envelope_bytes()
    );
    println!();
    row("", "tidemark/s".into(), "dalek/s".into(), "tidemark is".into(), "target (design.md#targets)");
    let one = rate(best(runs, || verify_each(&input.verifier, &s.envelopes)));
    let strict = rate(best(runs, || dalek_strict(s)));
    row(
        "verify, one envelope at a time",
        grouped(one),
        grouped(strict),
        of_rate(one, strict),
        "(bound: verify_strict)",
    );
    for size in BATCH_SIZES {
        let dalek = rate(best(runs, || dalek_batches(s, size)));
        let who = if size == INGEST_BATCH { "loadgen's request" } else { "dalek figure's" };
        let ours = rate(best(runs, || input.verify_batches(&input.verifier, size)));
        let target = |r: f64| format!(">= 90% of dalek batch: {}", met(r >= TARGET_OF_BATCH * dalek));
        row(
            &format!("verify_batch of {size} ({who})"),
            grouped(ours),
            grouped(dalek),
            of_rate(ours, dalek),
            &target(ours),
        );
        let checked = rate(best(runs, || input.validate_batches(size)));
        row(
            &format!("verify_batch_and_validate of {size}"),
            grouped(checked),
            grouped(dalek),
            of_rate(checked, dalek),
            &target(checked),
        );
        let equation = rate(best(runs, || our_batches(s, size)));
        row(
            &format!("batch equation alone of {size} (keys merged)"),
            grouped(equation),
            grouped(dalek),
            of_rate(equation, dalek),
            "",
        );
        if size == DALEK_BATCH {
            let exact = rate(best(runs, || input.verify_batches(&input.exact, size)));
            row(
                &format!("verify_batch of {size}, BatchMode::Exact"),
                grouped(exact),
                grouped(dalek),
                of_rate(exact, dalek),
                "",
            );
        }
    }
    println!(
        "(dalek: raw verify_strict / verify_batch over the same PAE bytes, signatures and keys; the workload's {} \
         sources sign with one key each, so a batch holds that many distinct keys at most)",
        s.registry.len()
    );

    println!();
    row("validation alone, events/s", "tidemark".into(), "peer".into(), "tidemark is".into(), "");
    let catalog = rate(best(runs, || validate_all(input.catalog, &input.events, input.now_ms)));
    let schema = rate(best(runs, || input.values.iter().filter(|v| input.schema.is_valid(v)).count()));
    row("Catalog::validate vs jsonschema is_valid", grouped(catalog), grouped(schema), of_rate(catalog, schema), "");
    let from_json = rate(best(runs, || s.payloads.iter().filter(|p| EditEvent::from_json(p).is_ok()).count()));
    let parse = rate(best(runs, || s.payloads.iter().filter(|p| serde_json::from_slice::<Value>(p).is_ok()).count()));
    row("EditEvent::from_json vs serde_json Value", grouped(from_json), grouped(parse), of_rate(from_json, parse), "");
    println!(
        "(both validators take parsed input: the catalog an EditEvent, jsonschema a serde_json::Value of \
         schemas/event.v1.schema.json; the schema checks structure only, the catalog also paths, kinds and types)"
    );
    breakdown(input, runs);
}

fn main() {
    let mode = Mode::from_args();
    let wanted = mode.size("TIDEMARK_BENCH_EVENTS", 6400, 128).max(1);
    // About five events per patient: generate enough, keep the first `wanted`.
    let mut events = workload::generate(wanted / 4 + 1, SEED);
    events.truncate(wanted);
    println!("workload: {}", Mix::of(&events));
    let input = Input::new(events);

    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c, &input);
    c.final_summary();
    if !mode.list {
        side_by_side(&input, mode.pick(7, 1));
        mode.footer();
    }
}
