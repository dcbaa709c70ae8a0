//! Seal/open throughput of the chunked AES-256-GCM stream, printed beside the bound
//! measured in the same run: raw `ring` AES-256-GCM over the same bytes in one call.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use tidemark_archiver::crypto::stream::{DEFAULT_CHUNK_SIZE, open, seal};

const LEN: usize = 256 << 20;
const KEY: [u8; 32] = [9; 32];
const HDR: &[u8] = b"TMENC\x01 bench header";

fn raw_ring(buf: &mut [u8]) {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &KEY).expect("32-byte key"));
    let tag = key
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key([0; 12]), Aad::from(HDR), buf)
        .expect("ring seal of an in-memory buffer");
    let _ = black_box(tag);
}

fn gbps(secs: f64) -> f64 {
    LEN as f64 / secs / 1e9
}

/// Best of `n` runs, in seconds: the bound and ours measured the same way.
fn best(n: usize, mut f: impl FnMut()) -> f64 {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let plain = vec![0x5au8; LEN];
    let mut sealed = Vec::with_capacity(LEN + LEN / DEFAULT_CHUNK_SIZE as usize * 16 + 16);
    seal(&KEY, HDR, DEFAULT_CHUNK_SIZE, &plain[..], &mut sealed).expect("seal into Vec");
    let mut out = Vec::with_capacity(LEN);

    let mut scratch = plain.clone();
    let bound = best(5, || raw_ring(&mut scratch));
    let s = best(5, || {
        sealed.clear();
        seal(&KEY, HDR, DEFAULT_CHUNK_SIZE, &plain[..], &mut sealed).expect("seal into Vec");
    });
    let o = best(5, || {
        out.clear();
        open(&KEY, HDR, DEFAULT_CHUNK_SIZE, &sealed[..], &mut out).expect("open own output");
    });
    println!("raw ring AES-256-GCM (bound): {:.2} GB/s", gbps(bound));
    println!("seal (1 MiB chunks):          {:.2} GB/s  ratio {:.2}", gbps(s), bound / s);
    println!("open (1 MiB chunks):          {:.2} GB/s  ratio {:.2}", gbps(o), bound / o);

    let mut c = Criterion::default().configure_from_args().sample_size(10);
    let mut g = c.benchmark_group("stream_256MiB");
    g.throughput(Throughput::Bytes(LEN as u64));
    g.bench_function("ring_raw", |b| b.iter(|| raw_ring(&mut scratch)));
    g.bench_function("seal", |b| {
        b.iter(|| {
            sealed.clear();
            seal(&KEY, HDR, DEFAULT_CHUNK_SIZE, &plain[..], &mut sealed).expect("seal into Vec")
        })
    });
    g.bench_function("open", |b| {
        b.iter(|| {
            out.clear();
            open(&KEY, HDR, DEFAULT_CHUNK_SIZE, &sealed[..], &mut out).expect("open own output")
        })
    });
    g.finish();
    c.final_summary();
}
