//! The scratch space's encryption on one core: `tidemark_seal::stream`
//! sealing and opening segments as the de-identified cut spills them
//! (`archiver::scratch::SEGMENT_BYTES` of records, a fresh key per segment,
//! 64 KiB chunks), beside raw ring AES-256-GCM over the same bytes in the
//! same chunks (the cipher work alone) and a memcpy, measured in the same run.
//!
//! Snapshot parts no longer go through this layer (they are Parquet Modular
//! Encryption, measured by `--bench archive`); the de-identified profile's
//! spilled views do, so this is the encryption cost a de-identified snapshot
//! adds to its scratch writes and reads.
//!
//! `cargo bench -p tidemark-benches --bench seal`; `TIDEMARK_BENCH_SCRATCH_MIB`
//! (default 64) sizes it, 1 MiB under `cargo test --benches`.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, Throughput};
use tidemark_archiver::scratch::SEGMENT_BYTES;
use tidemark_benches::crypto_bounds::aes_gcm_chunks;
use tidemark_benches::report::{Mode, best, gbps, of_rate, row};
use tidemark_seal::stream::{self, KEY_LEN, sealed_len};

tidemark_benches::service_allocator!();

/// archiver/src/scratch.rs's chunk size and associated data.
const CHUNK: usize = 64 * 1024;
const AAD: &[u8] = b"tidemark scratch run segment v1";

/// The bytes in scratch-sized segments, each sealed under its own key.
struct Segments {
    plain: Vec<u8>,
    keys: Vec<[u8; KEY_LEN]>,
    sealed: Vec<Vec<u8>>,
}

impl Segments {
    fn new(bytes: usize) -> Self {
        let plain: Vec<u8> = (0..bytes).map(|i| (i * 31 % 251) as u8).collect();
        let keys: Vec<[u8; KEY_LEN]> = (0..plain.len().div_ceil(SEGMENT_BYTES)).map(|i| [i as u8; KEY_LEN]).collect();
        let sealed = plain
            .chunks(SEGMENT_BYTES)
            .zip(&keys)
            .map(|(seg, key)| {
                let mut out = Vec::with_capacity(sealed_len(seg.len() as u64, CHUNK) as usize);
                stream::seal(key, AAD, CHUNK, seg, &mut out).expect("sealing into a Vec");
                out
            })
            .collect();
        Self { plain, keys, sealed }
    }

    /// Seals every segment, one after the other, into `out` (as a run goes
    /// to its file).
    fn seal(&self, out: &mut Vec<u8>) {
        out.clear();
        for (seg, key) in self.plain.chunks(SEGMENT_BYTES).zip(&self.keys) {
            stream::seal(key, AAD, CHUNK, seg, &mut *out).expect("sealing into a Vec");
        }
    }

    fn open(&self, out: &mut Vec<u8>) {
        out.clear();
        for (seg, key) in self.sealed.iter().zip(&self.keys) {
            stream::open(key, AAD, CHUNK, &seg[..], &mut *out).expect("opening our own segment");
        }
    }
}

fn main() {
    let mode = Mode::from_args();
    let mib = mode.size("TIDEMARK_BENCH_SCRATCH_MIB", 64, 1);
    let s = Segments::new(mib << 20);
    let n = s.plain.len() as f64;
    let mut scratch = s.plain.clone();
    let sealed_bytes: usize = s.sealed.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(sealed_bytes);

    let mut c = Criterion::default().configure_from_args().sample_size(10);
    let mut g = c.benchmark_group("scratch_stream");
    g.throughput(Throughput::Bytes(s.plain.len() as u64));
    g.bench_function("ring_aes_256_gcm_chunks", |b| b.iter(|| aes_gcm_chunks(&mut scratch, CHUNK, AAD)));
    g.bench_function("stream_seal_segments", |b| b.iter(|| s.seal(&mut out)));
    g.bench_function("stream_open_segments", |b| b.iter(|| s.open(&mut out)));
    g.finish();
    c.final_summary();
    if mode.list {
        return;
    }

    let runs = mode.pick(7, 1);
    let aes = best(runs, || aes_gcm_chunks(&mut scratch, CHUNK, AAD));
    let seal = best(runs, || s.seal(&mut out));
    let open = best(runs, || s.open(&mut out));
    let mut copy = Vec::with_capacity(s.plain.len());
    let memcpy = best(runs, || {
        copy.clear();
        copy.extend_from_slice(&s.plain);
        black_box(&copy);
    });
    println!();
    println!(
        "Scratch encryption: {} MiB in {} KiB segments, a key each, {} KiB chunks, one core, best of {runs}",
        mib,
        SEGMENT_BYTES >> 10,
        CHUNK >> 10
    );
    println!();
    row("GB/s", "tidemark".into(), "bound".into(), "tidemark is".into(), "");
    row("stream::seal vs raw AES-256-GCM chunks", gbps(n, seal), gbps(n, aes), of_rate(aes, seal), "");
    row("stream::open vs raw AES-256-GCM chunks", gbps(n, open), gbps(n, aes), of_rate(aes, open), "");
    row("memcpy of the same bytes (for scale)", "-".into(), gbps(n, memcpy), String::new(), "");
    let sealed = sealed_bytes;
    println!(
        "(raw: ring, in place, one key, counter nonces, no Read/Write; ours streams each segment through its Read and \
         Write into one reused Vec, keying a cipher per segment; size overhead {} B, {:.3}%)",
        sealed - s.plain.len(),
        (sealed - s.plain.len()) as f64 * 100.0 / n
    );
    mode.footer();
}
