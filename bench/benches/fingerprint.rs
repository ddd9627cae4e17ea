//! Benchmarks of the token fingerprint commitment: leaves per second for 384-float
//! fingerprints (the all-MiniLM-L6-v2 width), single thread, against the `blake3` crate
//! hashing the same bytes in one call.
//!
//! Measured, per leaf:
//! * `commit/exact` — `F32Canonical` encoding (1536 bytes) + leaf record hash + streaming tree;
//! * `commit/int8` — `I8Unit` quantisation (384 bytes) + leaf record hash + streaming tree;
//! * `tree/exact`, `tree/int8` — the same from pre-encoded fingerprints (hashing and tree
//!   only);
//! * `blake3/…` — the baseline: `blake3::hash` of the fingerprint bytes, and of the whole
//!   prefixed leaf record, one call per leaf.
//!
//! After the Criterion groups, a short interleaved timing prints the ratios
//! (pipeline leaves/s ÷ baseline hashes/s; the target is ≥ 0.8). Run with
//! `cargo bench -p tokenmath-bench --bench fingerprint` (add `-- --quick` for a fast pass).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use tokenmath_core::fingerprint::builder::StreamingTree;
use tokenmath_core::fingerprint::encoding::{encode_f32_canonical, encode_i8_unit, FpKind, LeafRecord};
use tokenmath_core::fingerprint::hash::{Blake3, Digest, LEAF_PREFIX};
use tokenmath_core::fingerprint::simhash::{planes_into, Planes};

const LEAVES: usize = 4096;
const DIM: usize = 384;

struct Data {
    x: Vec<f32>,
    exact: Vec<u8>,
    int8: Vec<u8>,
}

fn data() -> Data {
    let mut v = vec![0.0f64; LEAVES * DIM];
    planes_into(&[42u8; 32], Planes::Gaussian, DIM, &mut v).unwrap();
    let x: Vec<f32> = v.iter().map(|&a| a as f32).collect();
    let mut exact = vec![0u8; LEAVES * DIM * 4];
    let mut int8 = vec![0u8; LEAVES * DIM];
    for i in 0..LEAVES {
        let row = &x[i * DIM..(i + 1) * DIM];
        encode_f32_canonical(row, &mut exact[i * DIM * 4..(i + 1) * DIM * 4]).unwrap();
        encode_i8_unit(row, &mut int8[i * DIM..(i + 1) * DIM]).unwrap();
    }
    Data { x, exact, int8 }
}

fn rec(i: usize, kind: FpKind, fp: &[u8]) -> LeafRecord<'_> {
    LeafRecord { index: i as u64, salt: [7; 16], token_id: i as u32, kind, fp }
}

/// Encode + leaf hash + streaming tree over all rows; the root.
fn commit(x: &[f32], kind: FpKind) -> Digest {
    let per = kind.bytes_per_dim().unwrap();
    let mut fp = vec![0u8; DIM * per];
    let mut tree = StreamingTree::new(Blake3);
    for (i, row) in x.chunks_exact(DIM).enumerate() {
        match kind {
            FpKind::F32Canonical => encode_f32_canonical(row, &mut fp).unwrap(),
            _ => encode_i8_unit(row, &mut fp).unwrap(),
        }
        tree.append(rec(i, kind, &fp).leaf_hash(&Blake3).unwrap()).unwrap();
    }
    tree.root()
}

/// Leaf hash + streaming tree over pre-encoded fingerprints.
fn tree_only(fps: &[u8], fp_len: usize, kind: FpKind) -> Digest {
    let mut tree = StreamingTree::new(Blake3);
    for (i, fp) in fps.chunks_exact(fp_len).enumerate() {
        tree.append(rec(i, kind, fp).leaf_hash(&Blake3).unwrap()).unwrap();
    }
    tree.root()
}

/// The baseline: one `blake3::hash` call per leaf over `fp_len`-byte chunks.
fn baseline(bytes: &[u8], fp_len: usize) -> u8 {
    let mut acc = 0u8;
    for fp in bytes.chunks_exact(fp_len) {
        acc ^= blake3::hash(fp).as_bytes()[0];
    }
    acc
}

/// The prefixed leaf records (`0x00 ‖ record`) of all rows, concatenated.
fn records(fps: &[u8], fp_len: usize, kind: FpKind) -> (Vec<u8>, usize) {
    let rlen = 1 + 34 + fp_len;
    let mut out = vec![0u8; LEAVES * rlen];
    for (i, fp) in fps.chunks_exact(fp_len).enumerate() {
        out[i * rlen] = LEAF_PREFIX;
        rec(i, kind, fp).encode(&mut out[i * rlen + 1..(i + 1) * rlen]).unwrap();
    }
    (out, rlen)
}

fn bench(c: &mut Criterion) {
    let d = data();
    let (rec_exact, rl_exact) = records(&d.exact, DIM * 4, FpKind::F32Canonical);
    let (rec_int8, rl_int8) = records(&d.int8, DIM, FpKind::I8Unit);
    let mut g = c.benchmark_group(format!("fingerprint/{LEAVES}x{DIM}"));
    g.sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    g.throughput(Throughput::Elements(LEAVES as u64));
    g.bench_function("commit/exact", |b| b.iter(|| commit(black_box(&d.x), FpKind::F32Canonical)));
    g.bench_function("commit/int8", |b| b.iter(|| commit(black_box(&d.x), FpKind::I8Unit)));
    g.bench_function("tree/exact", |b| b.iter(|| tree_only(black_box(&d.exact), DIM * 4, FpKind::F32Canonical)));
    g.bench_function("tree/int8", |b| b.iter(|| tree_only(black_box(&d.int8), DIM, FpKind::I8Unit)));
    g.bench_function("blake3/exact-fp", |b| b.iter(|| baseline(black_box(&d.exact), DIM * 4)));
    g.bench_function("blake3/int8-fp", |b| b.iter(|| baseline(black_box(&d.int8), DIM)));
    g.bench_function("blake3/exact-record", |b| b.iter(|| baseline(black_box(&rec_exact), rl_exact)));
    g.bench_function("blake3/int8-record", |b| b.iter(|| baseline(black_box(&rec_int8), rl_int8)));
    g.finish();
}

criterion_group!(benches, bench);

/// Best-of-rounds seconds per call of `f`, interleaved with the others by the caller.
fn time_once<R>(f: &mut dyn FnMut() -> R) -> f64 {
    let t = Instant::now();
    black_box(f());
    t.elapsed().as_secs_f64()
}

/// Interleaved best-of-N timing of pipeline vs baseline, printed as leaves/s and ratios.
fn ratio_summary(quick: bool) {
    let d = data();
    let (rec_exact, rl_exact) = records(&d.exact, DIM * 4, FpKind::F32Canonical);
    let (rec_int8, rl_int8) = records(&d.int8, DIM, FpKind::I8Unit);
    let rounds = if quick { 5 } else { 15 };
    type Job<'a> = (&'static str, Box<dyn FnMut() -> u8 + 'a>);
    let mut jobs: Vec<Job<'_>> = vec![
        ("commit/exact", Box::new(|| commit(&d.x, FpKind::F32Canonical)[0])),
        ("commit/int8", Box::new(|| commit(&d.x, FpKind::I8Unit)[0])),
        ("tree/exact", Box::new(|| tree_only(&d.exact, DIM * 4, FpKind::F32Canonical)[0])),
        ("tree/int8", Box::new(|| tree_only(&d.int8, DIM, FpKind::I8Unit)[0])),
        ("blake3/exact-fp", Box::new(|| baseline(&d.exact, DIM * 4))),
        ("blake3/int8-fp", Box::new(|| baseline(&d.int8, DIM))),
        ("blake3/exact-record", Box::new(|| baseline(&rec_exact, rl_exact))),
        ("blake3/int8-record", Box::new(|| baseline(&rec_int8, rl_int8))),
    ];
    let mut best = vec![f64::INFINITY; jobs.len()];
    for _ in 0..rounds {
        for (k, (_, f)) in jobs.iter_mut().enumerate() {
            best[k] = best[k].min(time_once(f));
        }
    }
    let rate = |name: &str| {
        let k = jobs.iter().position(|(n, _)| *n == name).unwrap();
        LEAVES as f64 / best[k]
    };
    println!("\nfingerprint summary ({LEAVES} leaves × {DIM} floats, single thread, best of {rounds}):");
    for (name, _) in &jobs {
        println!("  {name:<22} {:>12.0} leaves/s", rate(name));
    }
    for enc in ["exact", "int8"] {
        let (c, t) = (rate(&format!("commit/{enc}")), rate(&format!("tree/{enc}")));
        let (bf, br) = (rate(&format!("blake3/{enc}-fp")), rate(&format!("blake3/{enc}-record")));
        println!(
            "  {enc}: commit/blake3(fp) = {:.2}, tree/blake3(fp) = {:.2}, tree/blake3(record) = {:.2}",
            c / bf,
            t / bf,
            t / br
        );
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    benches();
    Criterion::default().configure_from_args().final_summary();
    ratio_summary(quick);
}
