//! Criterion benchmarks of the logits kernels: `stats_fwd`, `stats_bwd` (an `f32` gradient)
//! and `stats_bwd_inplace`, on 1 and 2 threads, for `f32` and `bf16` logits of two
//! training-sized shapes (`[2048, 32768]` and `[512, 151936]`, the vocabularies of Llama-2
//! and Qwen-2).
//!
//! The shapes are large (up to 300 MB of logits), so each benchmark takes few samples over
//! a short window. CI never runs these; run them with `cargo bench -p tokenmath-bench`.
//! Throughput is reported in logits (`rows·cols`) per second. The data is
//! [`Problem::generate`] with [`SEED`], the same as the `logits-timing` driver.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput};
use tokenmath_bench::{FwdStats, Problem, SEED};
use tokenmath_core::logits::{stats_bwd, stats_bwd_inplace, stats_fwd};
use tokenmath_core::{Exec, GradElem, LogitElem, Mat, MatMut};

const SHAPES: [(usize, usize); 2] = [(2048, 32768), (512, 151936)];
const THREADS: [usize; 2] = [1, 2];

/// Benchmarks the three kernels on the logits `x` (the problem's logits stored as `T`).
fn bench_kernels<T: LogitElem + GradElem>(c: &mut Criterion, p: &Problem, x: &[T]) {
    let (rows, cols) = (p.rows, p.cols);
    let (inputs, upstream) = (p.inputs(), p.upstream());
    let logits = Mat::dense(x, rows, cols).unwrap();
    let mut saved = FwdStats::zeros(rows);
    stats_fwd(Exec::new(), logits, &inputs, saved.out()).unwrap();
    let mut out = FwdStats::zeros(rows);
    let mut dx = vec![0.0f32; rows * cols];

    let mut group = c.benchmark_group(format!("logits/{}/{rows}x{cols}", <T as LogitElem>::DTYPE.name()));
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements((rows * cols) as u64));
    for threads in THREADS {
        let exec = Exec::new().with_threads(threads);
        group.bench_function(BenchmarkId::new("stats_fwd", format!("t{threads}")), |b| {
            b.iter(|| stats_fwd(exec, logits, &inputs, out.out()).unwrap())
        });
        group.bench_function(BenchmarkId::new("stats_bwd", format!("t{threads}")), |b| {
            b.iter(|| {
                let dx = MatMut::dense(&mut dx, rows, cols).unwrap();
                stats_bwd(exec, logits, &inputs, saved.saved(), upstream, dx).unwrap()
            })
        });
        // Each iteration overwrites its logits, so it gets a fresh copy (copied untimed).
        group.bench_function(BenchmarkId::new("stats_bwd_inplace", format!("t{threads}")), |b| {
            b.iter_batched_ref(
                || x.to_vec(),
                |buf| {
                    let buf = MatMut::dense(buf, rows, cols).unwrap();
                    stats_bwd_inplace(exec, buf, &inputs, saved.saved(), upstream).unwrap()
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

fn logits(c: &mut Criterion) {
    for (rows, cols) in SHAPES {
        let p = Problem::generate(rows, cols, SEED);
        bench_kernels(c, &p, &p.logits);
        bench_kernels(c, &p, &p.logits_bf16());
    }
}

criterion_group!(benches, logits);
criterion_main!(benches);
