//! `gpu-timing`: checks the GPU kernels against `core` (canonical mode, bitwise where the
//! device fuses `fma`) and against the `f64` reference under the fast mode's error bound,
//! then times, per mode, the forward, the backward (out of place and in place), the fused
//! forward + backward in place, and a device-to-device copy. `bench/gpu/run.sh` runs it next
//! to PyTorch, `torch.compile` and Liger-Kernel and prints the comparison.
//!
//! Output: human-readable lines, plus one `RESULT key=value …` line per measurement for the
//! script. A timed sample is `--batch` calls followed by one device synchronisation, divided
//! by `--batch` (calls queue back to back, as in a training step); the median over `--reps`
//! samples after `--warmup` is reported. Each call uploads its per-row input arrays, as every
//! caller pays them.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use half::{bf16, f16};
use tokenmath_bench::SplitMix64;
use tokenmath_core::logits::{stats_bwd, stats_fwd, FwdOut, RowInputs, Saved, Temperature, Upstream};
use tokenmath_core::{DType, Exec, GradElem, LogitElem, Mat, MatMut};
use tokenmath_gpu::{DeviceKind, Gpu, GpuError, GpuMode};
use tokenmath_reference::gpu_fast::{fast_grad_tolerance, fast_stats_tolerance};
use tokenmath_reference::{row_grad, row_stats, stats_tolerance, tempered};

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
    /// Threads per cube of the fast mode's row kernel to time (comma-separated; the first is
    /// used elsewhere). Same bits for every value.
    #[arg(long, default_value = "256")]
    fast_threads: String,
    /// Modes to check and time: `canonical`, `fast` (comma-separated).
    #[arg(long, default_value = "canonical,fast")]
    modes: String,
    /// Calls per timed sample (one synchronisation per sample).
    #[arg(long, default_value_t = 5)]
    batch: usize,
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

fn median_ms(
    mut f: impl FnMut() -> Result<(), GpuError>,
    sync: impl Fn() -> Result<(), GpuError>,
    args: &Args,
) -> Result<f64, GpuError> {
    for _ in 0..args.warmup {
        f()?;
    }
    sync()?;
    let batch = args.batch.max(1);
    let mut times = Vec::with_capacity(args.reps);
    for _ in 0..args.reps.max(1) {
        let t = Instant::now();
        for _ in 0..batch {
            f()?;
        }
        sync()?;
        times.push(t.elapsed().as_secs_f64() * 1e3 / batch as f64);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Half the spacing of `T` at `|v|` (rounding the `f32` gradient to `T`), with the type's
/// subnormal step as floor.
fn rounding_to<T: GradElem>(v: f64) -> f64 {
    match T::DTYPE {
        DType::F32 => v.abs() * f64::powi(2.0, -24),
        DType::BF16 => v.abs() * f64::powi(2.0, -8) + f64::powi(2.0, -133),
        DType::F16 => v.abs() * f64::powi(2.0, -11) + f64::powi(2.0, -25),
    }
}

fn list<T: std::str::FromStr>(s: &str, what: &'static str) -> Result<Vec<T>, GpuError> {
    s.split(',').map(|t| t.trim().parse::<T>().map_err(|_| GpuError::Unsupported(what))).collect()
}

fn modes(args: &Args) -> Result<Vec<GpuMode>, GpuError> {
    args.modes
        .split(',')
        .map(|m| GpuMode::from_name(m.trim()).ok_or(GpuError::Unsupported("--modes: canonical, fast")))
        .collect()
}

/// The fast mode on `rows` random rows (with `−inf` masked columns and, in the last two rows,
/// a NaN and a `+inf`) against the `f64` reference: the statistics and the gradient of the
/// fused forward + backward, each within the fast mode's error bound. Returns whether it
/// passed.
fn check_fast<T: LogitElem + GradElem>(gpu: &Gpu, rows: usize, cols: usize) -> Result<bool, GpuError> {
    let mut data: Vec<T> = logits(rows, cols, 9);
    for r in 0..rows {
        data[r * cols + (r * 131) % cols] = T::from_f32(f32::NEG_INFINITY);
    }
    if rows >= 4 && cols >= 2 {
        data[(rows - 2) * cols + 1] = T::from_f32(f32::NAN);
        data[(rows - 1) * cols] = T::from_f32(f32::INFINITY);
    }
    let x = Mat::dense(&data, rows, cols).map_err(GpuError::Core)?;
    let mut rng = SplitMix64::new(13);
    let targets: Vec<i32> =
        (0..rows).map(|r| ((r * 131) % cols + 1 + rng.below_mod(cols - 1)) as i32 % cols as i32).collect();
    let inputs = RowInputs { targets: Some(&targets), row_mask: None, temperature: Temperature::Scalar(1.0) };
    let (g_lp, g_h) = (-1.0 / rows as f32, 0.01 / rows as f32);
    let (glp, gh) = (vec![g_lp; rows], vec![g_h; rows]);
    let up = Upstream { g_logp: Some(&glp), g_entropy: Some(&gh), g_lse: None };
    let mut gx = gpu.upload(x)?;
    let st = gpu.stats_fwd_bwd_inplace(&mut gx, &inputs, up, GpuMode::Fast)?;
    let [mut lse, mut h, mut lp] = std::array::from_fn(|_| vec![0.0; rows]);
    let status =
        gpu.read_stats(&st, FwdOut { lse: &mut lse, entropy: &mut h, logp: Some(&mut lp), max: None, log_sum: None })?;
    let mut dx = vec![T::from_f32(0.0); rows * cols];
    gpu.download(&gx, MatMut::dense(&mut dx, rows, cols).expect("sized"))?;
    let (mut worst, mut nonfinite) = (0.0f64, 0usize);
    for r in 0..rows {
        let row: Vec<f32> = x.row(r).iter().map(|v| v.to_f32()).collect();
        let t = targets[r] as usize;
        let Some(rr) = row_stats(&row, 1.0, Some(t)) else {
            nonfinite += 1;
            worst = worst.max(if lse[r].is_nan() && dx[r * cols..(r + 1) * cols].iter().all(|v| v.to_f32().is_nan()) {
                0.0
            } else {
                f64::INFINITY
            });
            continue;
        };
        let z = tempered(&row, 1.0);
        let tol = fast_stats_tolerance(&rr, cols, z[t], false);
        for (got, want, tol) in [(lse[r], rr.lse, tol[0]), (lp[r], rr.logp, tol[1]), (h[r], rr.entropy, tol[2])] {
            worst = worst.max((got as f64 - want).abs() / tol);
        }
        let want = row_grad(&row, 1.0, Some(t), g_lp as f64, g_h as f64, 0.0).expect("finite row");
        for j in 0..cols {
            let tol = fast_grad_tolerance(&rr, cols, z[j], 1.0, g_lp as f64, g_h as f64, 0.0, false)
                + rounding_to::<T>(want[j]);
            worst = worst.max((dx[r * cols + j].to_f32() as f64 - want[j]).abs() / tol);
        }
    }
    // The same bits with another cube size, and in a batch of the reversed rows.
    let mut other = Gpu::open(gpu.kind())?;
    other.set_fast_threads(1024)?;
    let reversed: Vec<T> = (0..rows).rev().flat_map(|r| data[r * cols..(r + 1) * cols].to_vec()).collect();
    let rev_targets: Vec<i32> = targets.iter().rev().copied().collect();
    let rev_inputs = RowInputs { targets: Some(&rev_targets), ..inputs };
    // The upstream gradients are the same for every row: `up` serves the reversed batch too.
    let mut gr = other.upload(Mat::dense(&reversed, rows, cols).map_err(GpuError::Core)?)?;
    let st_r = other.stats_fwd_bwd_inplace(&mut gr, &rev_inputs, up, GpuMode::Fast)?;
    let [mut lse_r, mut h_r, mut lp_r] = std::array::from_fn(|_| vec![0.0f32; rows]);
    other.read_stats(
        &st_r,
        FwdOut { lse: &mut lse_r, entropy: &mut h_r, logp: Some(&mut lp_r), max: None, log_sum: None },
    )?;
    let mut dx_r = vec![T::from_f32(0.0); rows * cols];
    other.download(&gr, MatMut::dense(&mut dx_r, rows, cols).expect("sized"))?;
    let same_bits = (0..rows).all(|r| {
        let q = rows - 1 - r;
        [(lse[r], lse_r[q]), (h[r], h_r[q]), (lp[r], lp_r[q])].iter().all(|(a, b)| a.to_bits() == b.to_bits())
            && dx[r * cols..(r + 1) * cols]
                .iter()
                .zip(&dx_r[q * cols..(q + 1) * cols])
                .all(|(a, b)| bytemuck_eq(*a, *b))
    });
    println!("check fast determinism: 256 vs 1024 threads per cube, rows reversed: identical bits {same_bits}");
    let passed = worst <= 1.0 && status.nonfinite_rows == nonfinite && same_bits;
    println!(
        "check fast {:?} [{rows}, {cols}]: worst |error| / bound {worst:.3} (statistics and fused gradient vs f64), non-finite rows {}/{nonfinite} -> {}",
        <T as LogitElem>::DTYPE,
        status.nonfinite_rows,
        if passed { "PASS" } else { "FAIL" }
    );
    println!(
        "RESULT kind=check_fast dtype={} cols={cols} worst_ratio={worst:.4} same_bits={same_bits} passed={passed}",
        <T as LogitElem>::DTYPE.name()
    );
    Ok(passed)
}

/// The forward and gradient of `check_rows` random rows on the GPU against `core`: largest
/// differences, bitwise agreement, and whether every statistic is within twice the
/// reference tolerance. Returns whether it passed.
fn check<T: LogitElem + GradElem>(gpu: &Gpu, rows: usize, cols: usize) -> Result<bool, GpuError> {
    let data: Vec<T> = logits(rows, cols, 7);
    let x = Mat::dense(&data, rows, cols).map_err(GpuError::Core)?;
    let mut rng = SplitMix64::new(11);
    let targets: Vec<i32> = (0..rows).map(|_| rng.below_mod(cols) as i32).collect();
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

fn time_shape<T: LogitElem + GradElem>(gpu: &mut Gpu, rows: usize, cols: usize, args: &Args) -> Result<(), GpuError> {
    let data: Vec<T> = logits(rows, cols, 1);
    let x = Mat::dense(&data, rows, cols).map_err(GpuError::Core)?;
    let mut rng = SplitMix64::new(3);
    let targets: Vec<i32> = (0..rows).map(|_| rng.below_mod(cols) as i32).collect();
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

    let copy = median_ms(|| gpu.copy(&gx).map(drop), || gpu.sync(), args)?;
    report("copy", copy, 2.0 * bytes);
    let block_threads: Vec<u32> = list(&args.block_threads, "--block-threads: a list of integers")?;
    let fast_threads: Vec<u32> = list(&args.fast_threads, "--fast-threads: a list of integers")?;
    for mode in modes(args)? {
        let tag = match mode {
            GpuMode::Canonical => "",
            GpuMode::Fast => "fast-",
        };
        let sizes = if mode == GpuMode::Canonical { &block_threads } else { &fast_threads };
        for (i, &threads) in sizes.iter().enumerate() {
            let set =
                if mode == GpuMode::Canonical { gpu.set_block_threads(threads) } else { gpu.set_fast_threads(threads) };
            if let Err(e) = set {
                println!("{tag}forward-{threads}t: n/a ({e})");
                continue;
            }
            let fwd = median_ms(|| gpu.stats_fwd_mode(&gx, &inputs, mode).map(drop), || gpu.sync(), args)?;
            let op = if i == 0 { format!("{tag}forward") } else { format!("{tag}forward-{threads}t") };
            report(&op, fwd, bytes);
        }
        gpu.set_block_threads(block_threads[0])?;
        gpu.set_fast_threads(fast_threads[0])?;
        let st = gpu.stats_fwd_mode(&gx, &inputs, mode)?;
        let bwd = median_ms(|| gpu.stats_bwd_mode::<T>(&gx, &inputs, &st, up, mode).map(drop), || gpu.sync(), args)?;
        report(&format!("{tag}backward"), bwd, 2.0 * bytes);
        // In place overwrites the logits (gradients of gradients from the second call on:
        // the same work). 16-bit rows of odd length share words between rows, which the
        // in-place kernels refuse.
        if <T as LogitElem>::DTYPE != DType::F32 && cols % 2 == 1 {
            println!("{tag}backward-inpl {name:>4} [{rows}, {cols}]: n/a (16-bit rows of odd length)");
            continue;
        }
        let inplace = median_ms(|| gpu.stats_bwd_inplace_mode(&mut gx, &inputs, &st, up, mode), || gpu.sync(), args)?;
        report(&format!("{tag}backward-inpl"), inplace, 2.0 * bytes);
        let fused = median_ms(|| gpu.stats_fwd_bwd_inplace(&mut gx, &inputs, up, mode).map(drop), || gpu.sync(), args)?;
        report(&format!("{tag}fwd+bwd-inpl"), fused, 3.0 * bytes);
    }
    Ok(())
}

/// The fast forward and the canonical backward launched by cubecl and by the C ABI's launch
/// path (NVRTC + `cuLaunchKernel` on cubecl's buffers, `tokenmath_gpu::cuda_launch`): every
/// output bit must agree. A temperature other than 1 and a NaN row exercise the tempered
/// variants and the non-finite path.
#[cfg(feature = "cuda")]
fn check_launch_path<T: LogitElem + GradElem>(gpu: &Gpu, rows: usize, cols: usize) -> Result<bool, GpuError> {
    let mut data: Vec<T> = logits(rows, cols, 17);
    if rows >= 2 {
        data[cols + 3] = T::from_f32(f32::NAN);
    }
    let x = Mat::dense(&data, rows, cols).map_err(GpuError::Core)?;
    let targets: Vec<i32> = (0..rows).map(|r| ((r * 7919) % cols) as i32).collect();
    let dtype = <T as LogitElem>::DTYPE;
    let mut passed = true;
    for t in [1.0f32, 0.7] {
        let inputs = RowInputs { targets: Some(&targets), row_mask: None, temperature: Temperature::Scalar(t) };
        let gx = gpu.upload(x)?;
        for (variant, same, total) in gpu.launch_path_check(&gx, &inputs)? {
            let ok = same == total;
            println!(
                "check launch path {dtype:?} [{rows}, {cols}] temperature {t} {variant}: {same}/{total} bitwise equal to cubecl's launch"
            );
            println!(
                "RESULT kind=launch_path dtype={} cols={cols} temperature={t} variant={variant} same={same} total={total} passed={ok}",
                dtype.name()
            );
            passed &= ok;
        }
    }
    Ok(passed)
}

fn run(args: &Args) -> Result<bool, GpuError> {
    let kind = DeviceKind::from_name(&args.device)
        .ok_or_else(|| GpuError::NoDevice(format!("unknown device {:?} (cuda, wgpu)", args.device)))?;
    let mut gpu = Gpu::open(kind)?;
    gpu.set_block_threads(list::<u32>(&args.block_threads, "--block-threads: a list of integers")?[0])?;
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
                if modes(args)?.contains(&GpuMode::Fast) {
                    passed &= check_fast::<f32>(&gpu, check_rows, cols)?;
                    #[cfg(feature = "cuda")]
                    if kind == DeviceKind::Cuda {
                        passed &= check_launch_path::<f32>(&gpu, check_rows, cols)?;
                    }
                }
                time_shape::<f32>(&mut gpu, rows, cols, args)?;
            }
            Some(DType::BF16) => {
                passed &= check::<bf16>(&gpu, check_rows, cols)?;
                if modes(args)?.contains(&GpuMode::Fast) {
                    passed &= check_fast::<bf16>(&gpu, check_rows, cols)?;
                    #[cfg(feature = "cuda")]
                    if kind == DeviceKind::Cuda {
                        passed &= check_launch_path::<bf16>(&gpu, check_rows, cols)?;
                    }
                }
                time_shape::<bf16>(&mut gpu, rows, cols, args)?;
            }
            Some(DType::F16) => {
                passed &= check::<f16>(&gpu, check_rows, cols)?;
                if modes(args)?.contains(&GpuMode::Fast) {
                    passed &= check_fast::<f16>(&gpu, check_rows, cols)?;
                    #[cfg(feature = "cuda")]
                    if kind == DeviceKind::Cuda {
                        passed &= check_launch_path::<f16>(&gpu, check_rows, cols)?;
                    }
                }
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
