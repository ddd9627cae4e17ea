//! `gpu-timing`: checks the GPU kernels against `core` on random data, then times the
//! forward, the backward (out of place and in place) and a device-to-device copy on the
//! GPU. `bench/gpu/run.sh` runs it next to PyTorch and prints the comparison.
//!
//! Output: human-readable lines, plus one `RESULT key=value …` line per measurement for the
//! script. Timings are medians over `--reps` runs after `--warmup` runs; each run is the
//! call plus a device synchronisation (the per-row input arrays are uploaded inside the
//! call, as every caller pays them).

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use half::{bf16, f16};
use tokenmath_bench::SplitMix64;
use tokenmath_core::logits::{stats_bwd, stats_fwd, FwdOut, RowInputs, Saved, Temperature, Upstream};
use tokenmath_core::{DType, Exec, GradElem, LogitElem, Mat, MatMut};
use tokenmath_gpu::{DeviceKind, Gpu, GpuError};
use tokenmath_reference::{row_stats, stats_tolerance};

#[derive(Parser)]
#[command(name = "gpu-timing")]
struct Args {
    /// `cuda` or `wgpu`.
    #[arg(long, default_value = "cuda")]
    device: String,
    /// Shapes to time, as `dtype:rows:cols` (comma-separated).
    #[arg(long, default_value = "bf16:8192:151936,f32:4096:32768")]
    shapes: String,
    /// Rows of the correctness check (same vocabulary as each timed shape).
    #[arg(long, default_value_t = 64)]
    check_rows: usize,
    /// Untimed runs before the timed ones.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Timed runs (the median is reported).
    #[arg(long, default_value_t = 10)]
    reps: usize,
    /// Threads per cube of the forward's block kernel to time (comma-separated; the first is
    /// the one used for the check). A tuning knob: every value gives the same bits.
    #[arg(long, default_value = "256")]
    block_threads: String,
}

/// Random logits `N(0, 2²)`-ish around per-row offsets, generated on every core.
fn logits<T: LogitElem + GradElem>(rows: usize, cols: usize, seed: u64) -> Vec<T> {
    let mut v = vec![T::from_f32(0.0); rows * cols];
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = rows.div_ceil(threads).max(1);
    std::thread::scope(|s| {
        for (k, chunk) in v.chunks_mut(per * cols).enumerate() {
            s.spawn(move || {
                let mut rng = SplitMix64::new(seed ^ (k as u64).wrapping_mul(0x9E37_79B9));
                for (i, x) in chunk.iter_mut().enumerate() {
                    let row = k * per + i / cols;
                    let u = rng.next_f32() + rng.next_f32() + rng.next_f32() - 1.5;
                    *x = T::from_f32(4.0 * u + (row % 7) as f32);
                }
            });
        }
    });
    v
}

fn median_ms(mut f: impl FnMut() -> Result<(), GpuError>, warmup: usize, reps: usize) -> Result<f64, GpuError> {
    for _ in 0..warmup {
        f()?;
    }
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// The forward and gradient of `check_rows` random rows on the GPU against `core`: largest
/// differences, bitwise agreement, and whether every statistic is within twice the
/// reference tolerance. Returns whether it passed.
fn check<T: LogitElem + GradElem>(gpu: &Gpu, rows: usize, cols: usize) -> Result<bool, GpuError> {
    let data: Vec<T> = logits(rows, cols, 7);
    let x = Mat::dense(&data, rows, cols).map_err(GpuError::Core)?;
    let mut rng = SplitMix64::new(11);
    let targets: Vec<i32> = (0..rows).map(|_| rng.below(cols) as i32).collect();
    let inputs = RowInputs { targets: Some(&targets), row_mask: None, temperature: Temperature::Scalar(1.0) };
    let g: Vec<f32> = vec![-1.0 / rows as f32; rows];
    let up = Upstream { g_logp: Some(&g), g_entropy: Some(&g), g_lse: None };

    let [mut lse, mut h, mut lp, mut mx, mut ls] = std::array::from_fn(|_| vec![0.0; rows]);
    let out =
        FwdOut { lse: &mut lse, entropy: &mut h, logp: Some(&mut lp), max: Some(&mut mx), log_sum: Some(&mut ls) };
    stats_fwd(Exec::default(), x, &inputs, out).map_err(GpuError::Core)?;
    let mut dx_core = vec![T::from_f32(0.0); rows * cols];
    let saved = Saved { max: &mx, log_sum: &ls, entropy: &h };
    stats_bwd(Exec::default(), x, &inputs, saved, up, MatMut::dense(&mut dx_core, rows, cols).expect("sized"))
        .map_err(GpuError::Core)?;

    let gx = gpu.upload(x)?;
    let st = gpu.stats_fwd(&gx, &inputs)?;
    let [mut glse, mut gh, mut glp, mut gls] = std::array::from_fn(|_| vec![0.0; rows]);
    let out = FwdOut { lse: &mut glse, entropy: &mut gh, logp: Some(&mut glp), max: None, log_sum: Some(&mut gls) };
    gpu.read_stats(&st, out)?;
    let grad = gpu.stats_bwd::<T>(&gx, &inputs, &st, up)?;
    let mut dx_gpu = vec![T::from_f32(f32::NAN); rows * cols];
    gpu.download(&grad, MatMut::dense(&mut dx_gpu, rows, cols).expect("sized"))?;

    let (mut equal, mut worst_ratio, mut max_diff) = (0usize, 0.0f64, [0.0f64; 4]);
    for r in 0..rows {
        let row: Vec<f32> = x.row(r).iter().map(|v| v.to_f32()).collect();
        let rr = row_stats(&row, 1.0, Some(targets[r] as usize)).expect("finite row");
        let t = stats_tolerance(&rr, cols, false);
        let pairs =
            [(glse[r], lse[r], t.lse), (glp[r], lp[r], t.logp), (gh[r], h[r], t.entropy), (gls[r], ls[r], t.log_sum)];
        for (k, (a, b, tol)) in pairs.into_iter().enumerate() {
            equal += (a.to_bits() == b.to_bits()) as usize;
            let d = (a as f64 - b as f64).abs();
            max_diff[k] = max_diff[k].max(d);
            worst_ratio = worst_ratio.max(d / (2.0 * tol));
        }
    }
    let grad_equal = dx_gpu.iter().zip(&dx_core).filter(|(a, b)| bytemuck_eq(**a, **b)).count();
    let grad_diff =
        dx_gpu.iter().zip(&dx_core).map(|(a, b)| (a.to_f32() as f64 - b.to_f32() as f64).abs()).fold(0.0, f64::max);
    let passed = worst_ratio <= 1.0 && dx_gpu.iter().all(|v| !v.to_f32().is_nan());
    println!(
        "check {:?} [{rows}, {cols}]: max |gpu - core| lse {:.2e} logp {:.2e} entropy {:.2e} log_sum {:.2e} gradient {:.2e}; \
         bitwise equal: statistics {equal}/{} gradient {grad_equal}/{}; worst |diff|/(2 tol) {worst_ratio:.3} -> {}",
        <T as LogitElem>::DTYPE,
        max_diff[0],
        max_diff[1],
        max_diff[2],
        max_diff[3],
        grad_diff,
        4 * rows,
        rows * cols,
        if passed { "PASS" } else { "FAIL" }
    );
    println!(
        "RESULT kind=check dtype={} cols={cols} stats_bitwise={:.6} grad_bitwise={:.6} worst_ratio={worst_ratio:.4} passed={passed}",
        <T as LogitElem>::DTYPE.name(),
        equal as f64 / (4 * rows) as f64,
        grad_equal as f64 / (rows * cols) as f64
    );
    Ok(passed)
}

fn bytemuck_eq<T: GradElem>(a: T, b: T) -> bool {
    bytemuck::bytes_of(&a) == bytemuck::bytes_of(&b)
}

fn block_threads(args: &Args) -> Result<Vec<u32>, GpuError> {
    args.block_threads
        .split(',')
        .map(|t| t.trim().parse::<u32>().map_err(|_| GpuError::Unsupported("--block-threads: a list of integers")))
        .collect()
}

fn time_shape<T: LogitElem + GradElem>(gpu: &mut Gpu, rows: usize, cols: usize, args: &Args) -> Result<(), GpuError> {
    let data: Vec<T> = logits(rows, cols, 1);
    let x = Mat::dense(&data, rows, cols).map_err(GpuError::Core)?;
    let mut rng = SplitMix64::new(3);
    let targets: Vec<i32> = (0..rows).map(|_| rng.below(cols) as i32).collect();
    let inputs = RowInputs { targets: Some(&targets), row_mask: None, temperature: Temperature::Scalar(1.0) };
    let g: Vec<f32> = vec![-1.0 / rows as f32; rows];
    let up = Upstream { g_logp: Some(&g), g_entropy: Some(&g), g_lse: None };
    let mut gx = gpu.upload(x)?;
    drop(data);
    let bytes = (rows * cols * <T as LogitElem>::DTYPE.size()) as f64;
    let name = <T as LogitElem>::DTYPE.name();
    let report = |op: &str, ms: f64, moved: f64| {
        println!("{op:<14} {name:>4} [{rows}, {cols}]: {ms:9.3} ms  {:8.1} GB/s", moved / ms / 1e6);
        println!("RESULT kind=time op={op} dtype={name} rows={rows} cols={cols} ms={ms:.4} bytes={moved:.0}");
    };

    let copy = median_ms(|| gpu.copy(&gx).and_then(|_| gpu.sync()), args.warmup, args.reps)?;
    report("copy", copy, 2.0 * bytes);
    let st = gpu.stats_fwd(&gx, &inputs)?;
    for (i, &threads) in block_threads(args)?.iter().enumerate() {
        if let Err(e) = gpu.set_block_threads(threads) {
            println!("forward-{threads}t: n/a ({e})");
            continue;
        }
        let fwd = median_ms(|| gpu.stats_fwd(&gx, &inputs).and_then(|_| gpu.sync()), args.warmup, args.reps)?;
        report(&if i == 0 { "forward".to_string() } else { format!("forward-{threads}t") }, fwd, bytes);
    }
    gpu.set_block_threads(block_threads(args)?[0])?;
    let bwd = median_ms(|| gpu.stats_bwd::<T>(&gx, &inputs, &st, up).and_then(|_| gpu.sync()), args.warmup, args.reps)?;
    report("backward", bwd, 2.0 * bytes);
    // In place overwrites the logits: timed last. 16-bit rows of odd length share words
    // between rows, which the in-place kernel refuses.
    if <T as LogitElem>::DTYPE != DType::F32 && cols % 2 == 1 {
        println!("backward-inpl  {name:>4} [{rows}, {cols}]: n/a (16-bit rows of odd length)");
        return Ok(());
    }
    let saved = st;
    let inplace = median_ms(
        || gpu.stats_bwd_inplace(&mut gx, &inputs, &saved, up).and_then(|_| gpu.sync()),
        args.warmup,
        args.reps,
    )?;
    report("backward-inpl", inplace, 2.0 * bytes);
    Ok(())
}

fn run(args: &Args) -> Result<bool, GpuError> {
    let kind = DeviceKind::from_name(&args.device)
        .ok_or_else(|| GpuError::NoDevice(format!("unknown device {:?} (cuda, wgpu)", args.device)))?;
    let mut gpu = Gpu::open(kind)?;
    gpu.set_block_threads(block_threads(args)?[0])?;
    println!("device {} (fused fma: {})", gpu.name(), gpu.fused_fma());
    let mut passed = true;
    for shape in args.shapes.split(',') {
        let parts: Vec<&str> = shape.split(':').collect();
        let (dtype, rows, cols) = match parts.as_slice() {
            [d, r, c] => (*d, r.parse::<usize>().ok(), c.parse::<usize>().ok()),
            _ => ("", None, None),
        };
        let (Some(rows), Some(cols)) = (rows, cols) else {
            return Err(GpuError::NoDevice(format!("bad shape {shape:?}: want dtype:rows:cols")));
        };
        let check_rows = args.check_rows.min(rows);
        let dtype_of = |name: &str| [DType::F32, DType::BF16, DType::F16].into_iter().find(|d| d.name() == name);
        match dtype_of(dtype) {
            Some(DType::F32) => {
                passed &= check::<f32>(&gpu, check_rows, cols)?;
                time_shape::<f32>(&mut gpu, rows, cols, args)?;
            }
            Some(DType::BF16) => {
                passed &= check::<bf16>(&gpu, check_rows, cols)?;
                time_shape::<bf16>(&mut gpu, rows, cols, args)?;
            }
            Some(DType::F16) => {
                passed &= check::<f16>(&gpu, check_rows, cols)?;
                time_shape::<f16>(&mut gpu, rows, cols, args)?;
            }
            None => return Err(GpuError::NoDevice(format!("bad dtype {dtype:?} (f32, bf16, f16)"))),
        }
    }
    Ok(passed)
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("gpu-timing: error: {e}");
            ExitCode::from(2)
        }
    }
}
