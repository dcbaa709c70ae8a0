//! Part seal/open throughput on one core, printed beside the bounds measured in
//! the same run over the same bytes: raw `ring` AES-256-GCM in one in-place
//! call, raw `ring` SHA-256 (the manifest hash every sealed byte also goes
//! through), and the two together. Also prints the format's size overhead.
#![allow(missing_docs)]

use std::hint::black_box;
use std::io;

use criterion::{Criterion, Throughput};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::digest;
use tidemark_benches::report::best;
use tidemark_seal::header::header_len;
use tidemark_seal::stream::{self, DEFAULT_CHUNK_SIZE};
use tidemark_seal::{RecipientSecretKey, open_part, seal_part};

const LEN: usize = 64 << 20;
const KEY: [u8; 32] = [9; 32];
const HDR: &[u8] = b"TMENC\x01 bench header";

fn raw_aes(buf: &mut [u8]) {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &KEY).expect("32-byte key"));
    let tag = key
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key([0; 12]), Aad::from(HDR), buf)
        .expect("ring seal of an in-memory buffer");
    let _ = black_box(tag);
}

fn raw_sha256(buf: &[u8]) {
    black_box(digest::digest(&digest::SHA256, buf));
}

fn gbps(secs: f64) -> f64 {
    LEN as f64 / secs / 1e9
}

fn main() {
    let plain: Vec<u8> = (0..LEN).map(|i| (i * 31 % 251) as u8).collect();
    let key = RecipientSecretKey::generate().expect("OS random source");
    let recipients = [key.public_key().clone()];
    let capacity = header_len(1) + stream::sealed_len(LEN as u64, DEFAULT_CHUNK_SIZE) as usize;
    let mut sealed = Vec::with_capacity(capacity);
    seal_part(&plain[..], &mut sealed, &recipients, DEFAULT_CHUNK_SIZE).expect("seal into Vec");
    let mut out = Vec::with_capacity(LEN);
    let mut scratch = plain.clone();
    let mut payload = Vec::with_capacity(capacity);
    stream::seal(&KEY, HDR, DEFAULT_CHUNK_SIZE, &plain[..], &mut payload).expect("seal into Vec");

    let runs = 7;
    let aes = best(runs, || raw_aes(&mut scratch));
    let sha = best(runs, || raw_sha256(&plain));
    let both = aes + sha;
    let stream_seal = best(runs, || {
        payload.clear();
        stream::seal(&KEY, HDR, DEFAULT_CHUNK_SIZE, &plain[..], &mut payload).expect("seal into Vec");
    });
    let stream_open = best(runs, || {
        stream::open(&KEY, HDR, DEFAULT_CHUNK_SIZE, &payload[..], io::sink()).expect("open own output");
    });
    let seal = best(runs, || {
        sealed.clear();
        seal_part(&plain[..], &mut sealed, &recipients, DEFAULT_CHUNK_SIZE).expect("seal into Vec");
    });
    let open = best(runs, || {
        out.clear();
        open_part(&sealed[..], &mut out, &key).expect("open own output");
    });

    println!("64 MiB, 1 MiB chunks, one core, best of {runs}:");
    println!("  bound: raw ring AES-256-GCM, in place   {:6.2} GB/s", gbps(aes));
    println!("  bound: raw ring SHA-256                 {:6.2} GB/s", gbps(sha));
    println!("  bound: AES-256-GCM + SHA-256, serial    {:6.2} GB/s", gbps(both));
    let row = |name: &str, t: f64, bound: f64, of: &str| {
        println!("  {name:<39} {:6.2} GB/s  = {:.2} x {of}", gbps(t), bound / t);
    };
    row("stream::seal (no hash) into Vec", stream_seal, aes, "AES bound");
    row("stream::open (no hash) into sink", stream_open, aes, "AES bound");
    row("seal_part (+ SHA-256) into Vec", seal, both, "AES+SHA bound");
    row("open_part (+ SHA-256) into Vec", open, both, "AES+SHA bound");
    // Where the streaming path's time goes: copying in and out through
    // Read/Write, and whether a chunk still fits in L2.
    let mut copy = Vec::with_capacity(LEN);
    let memcpy = best(runs, || {
        copy.clear();
        copy.extend_from_slice(&plain);
        black_box(&copy);
    });
    row("memcpy 64 MiB (for scale)", memcpy, aes, "AES bound");
    for cs in [64 << 10, 256 << 10, 1 << 20] {
        let t = best(runs, || {
            stream::seal(&KEY, HDR, cs, &plain[..], io::sink()).expect("seal into sink");
        });
        row(&format!("stream::seal into sink, {} KiB chunks", cs >> 10), t, aes, "AES bound");
    }
    println!(
        "  size overhead: header {} B for 1 recipient, +{} B per extra; 17 B per chunk + 4 B; this part: {} B ({:.5}%)",
        header_len(1),
        header_len(2) - header_len(1),
        sealed.len() - LEN,
        (sealed.len() - LEN) as f64 * 100.0 / LEN as f64
    );

    let mut c = Criterion::default().configure_from_args().sample_size(10);
    let mut g = c.benchmark_group("part_64MiB");
    g.throughput(Throughput::Bytes(LEN as u64));
    g.bench_function("ring_aes_256_gcm_raw", |b| b.iter(|| raw_aes(&mut scratch)));
    g.bench_function("ring_sha256_raw", |b| b.iter(|| raw_sha256(&plain)));
    g.bench_function("seal_part", |b| {
        b.iter(|| {
            sealed.clear();
            seal_part(&plain[..], &mut sealed, &recipients, DEFAULT_CHUNK_SIZE).expect("seal into Vec")
        })
    });
    g.bench_function("open_part", |b| {
        b.iter(|| {
            out.clear();
            open_part(&sealed[..], &mut out, &key).expect("open own output")
        })
    });
    g.finish();
    c.final_summary();
}
