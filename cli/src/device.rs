//! `--device wgpu|cuda`: the default batch's statistics and gradient on a GPU
//! ([`tokenmath_gpu`]), compared with `core`'s.
//!
//! The batch goes to the device in chunks of at most [`CHUNK_BYTES`] of logits (lavapipe
//! binds at most 128 MiB per buffer). Per chunk: the forward (`lse`, `logp`, `entropy`,
//! `log_sum`) and the `f32` gradient of the main job's objective (`mean NLL − 0.01·mean
//! entropy`), each compared with `core` on the same chunk: the largest absolute
//! difference, how many values are bitwise equal, and whether every value is within twice
//! the reference's tolerance formula (each backend is within one tolerance of the exact
//! value). Passing needs every value within that bound.
//!
//! `--gpu-mode fast` runs the GPU's fast mode instead ([`GpuMode::Fast`]: the hardware
//! `exp`, not bitwise equal to `core`), and compares every value with the `f64` reference
//! under the fast mode's error bound (`tokenmath_reference::gpu_fast`).

use std::time::{Duration, Instant};

use tokenmath_core::logits::{stats_bwd, RowInputs, Temperature, Upstream};
use tokenmath_core::{Exec, GradElem, LogitElem, Mat, MatMut};
use tokenmath_gpu::Gpu;
pub use tokenmath_gpu::{DeviceKind, GpuMode};
use tokenmath_reference::gpu_fast::{fast_grad_tolerance, fast_stats_tolerance};
use tokenmath_reference::{grad_tolerance, row_grad, row_stats, stats_tolerance, tempered};

use crate::error::CliError;
use crate::run::{RowStatistics, ENTROPY_BONUS};

/// Logits per chunk sent to the device, in bytes.
pub const CHUNK_BYTES: usize = 64 << 20;

/// Largest difference from `core` and bitwise agreement of one quantity.
#[derive(Clone, Copy, Debug, Default)]
struct Agreement {
    max_diff: f64,
    equal: usize,
    total: usize,
    outside: usize,
}

impl Agreement {
    /// `got` against `core`'s `want`: equal bits, or within twice `tol`.
    fn add(&mut self, got: f32, want: f32, tol: f64) {
        self.add_within(got, want as f64, 2.0 * tol, got.to_bits() == want.to_bits());
    }

    /// `got` against the exact `want`, within `bound` (the fast mode).
    fn add_exact(&mut self, got: f32, want: f64, bound: f64) {
        self.add_within(got, want, bound, false);
    }

    fn add_within(&mut self, got: f32, want: f64, bound: f64, same_bits: bool) {
        self.total += 1;
        if same_bits || (got.is_nan() && want.is_nan()) {
            self.equal += 1;
            return;
        }
        // One NaN and one number: an infinite difference.
        let diff = (got as f64 - want).abs();
        let diff = if diff.is_nan() { f64::INFINITY } else { diff };
        self.max_diff = self.max_diff.max(diff);
        if diff > bound {
            self.outside += 1;
        }
    }

    fn line(&self, name: &str) -> String {
        format!(
            "  {name:<9} max |gpu - core| {:.3e}   bitwise equal {}/{} ({:.2}%){}",
            self.max_diff,
            self.equal,
            self.total,
            100.0 * self.equal as f64 / self.total.max(1) as f64,
            if self.outside > 0 { format!("   {} OUTSIDE 2x tolerance", self.outside) } else { String::new() }
        )
    }
}

/// The comparison, printed as a section of the report; `Ok(passed)`.
#[allow(clippy::too_many_arguments)]
pub fn run<T: LogitElem + GradElem>(
    kind: DeviceKind,
    logits: &[T],
    rows: usize,
    vocab: usize,
    targets: Option<&[i32]>,
    temperature: f32,
    exec: Exec,
    core_stats: &RowStatistics,
    mode: GpuMode,
) -> Result<bool, CliError> {
    let device_error = |e: tokenmath_gpu::GpuError| CliError::Device(e.to_string());
    let gpu = Gpu::open(kind).map_err(device_error)?;
    let chunk_rows = (CHUNK_BYTES / (vocab * std::mem::size_of::<T>()).max(1)).clamp(1, rows.max(1));
    // Without labels every row is target-less (its logp is 0 on both sides).
    let no_targets = vec![-1i32; rows];
    let has_targets = targets.is_some();
    let targets = targets.unwrap_or(&no_targets);
    let target_rows = targets.iter().filter(|&&t| t >= 0).count();
    let g_lp = if target_rows > 0 { (-1.0 / target_rows as f64) as f32 } else { 0.0 };
    let g_h = (-ENTROPY_BONUS / rows.max(1) as f64) as f32;

    let mut agree = [Agreement::default(); 5];
    let (mut fwd_time, mut bwd_time) = (Duration::ZERO, Duration::ZERO);
    for start in (0..rows).step_by(chunk_rows) {
        let end = (start + chunk_rows).min(rows);
        let n = end - start;
        let x =
            Mat::dense(&logits[start * vocab..end * vocab], n, vocab).map_err(|e| CliError::Device(e.to_string()))?;
        let inputs = RowInputs {
            targets: Some(&targets[start..end]),
            row_mask: None,
            temperature: Temperature::Scalar(temperature),
        };
        let g_logp = vec![g_lp; n];
        let g_entropy = vec![g_h; n];
        let up = Upstream { g_logp: Some(&g_logp), g_entropy: Some(&g_entropy), g_lse: None };

        // GPU: forward (read back) and gradient (downloaded); timed with the transfers.
        let gx = gpu.upload(x).map_err(device_error)?;
        let timer = Instant::now();
        let st = gpu.stats_fwd_mode(&gx, &inputs, mode).map_err(device_error)?;
        let [mut lse, mut entropy, mut logp, mut log_sum] = std::array::from_fn(|_| vec![0.0; n]);
        let out = tokenmath_core::logits::FwdOut {
            lse: &mut lse,
            entropy: &mut entropy,
            logp: Some(&mut logp),
            max: None,
            log_sum: Some(&mut log_sum),
        };
        gpu.read_stats(&st, out).map_err(device_error)?;
        fwd_time += timer.elapsed();
        let timer = Instant::now();
        let grad = gpu.stats_bwd_mode::<f32>(&gx, &inputs, &st, up, mode).map_err(device_error)?;
        let mut dx = vec![f32::NAN; n * vocab];
        gpu.download(&grad, MatMut::dense(&mut dx, n, vocab).expect("sized")).map_err(device_error)?;
        bwd_time += timer.elapsed();

        // core's gradient of the same chunk, from core's saved statistics.
        let saved = core_stats.saved(start..end);
        let mut want = vec![f32::NAN; n * vocab];
        stats_bwd(exec, x, &inputs, saved, up, MatMut::dense(&mut want, n, vocab).expect("sized"))
            .map_err(|e| CliError::Device(e.to_string()))?;

        for r in 0..n {
            let row = start + r;
            let values: Vec<f32> = x.row(r).iter().map(|v| v.to_f32()).collect();
            let target = usize::try_from(targets[row]).ok();
            let reference = row_stats(&values, temperature, target);
            if mode == GpuMode::Fast {
                fast_row(
                    &mut agree,
                    &values,
                    temperature,
                    target,
                    reference.as_ref(),
                    g_lp,
                    g_h,
                    [lse[r], logp[r], entropy[r], log_sum[r]],
                    &dx[r * vocab..(r + 1) * vocab],
                );
                continue;
            }
            let tol = reference.as_ref().map(|rr| stats_tolerance(rr, vocab, temperature != 1.0));
            let t = |f: fn(&tokenmath_reference::StatsTol) -> f64| tol.as_ref().map_or(0.0, f);
            agree[0].add(lse[r], core_stats.lse[row], t(|t| t.lse));
            let core_logp = if has_targets { core_stats.logp[row] } else { 0.0 };
            agree[1].add(logp[r], core_logp, t(|t| t.logp));
            agree[2].add(entropy[r], core_stats.entropy[row], t(|t| t.entropy));
            agree[3].add(log_sum[r], core_stats.log_sum[row], t(|t| t.log_sum));
            let (Some(rr), Some(stol)) = (reference.as_ref(), tol.as_ref()) else {
                for j in 0..vocab {
                    agree[4].add(dx[r * vocab + j], want[r * vocab + j], 0.0);
                }
                continue;
            };
            let dx_ref = row_grad(&values, temperature, target, g_lp as f64, g_h as f64, 0.0).expect("finite row");
            let z = tempered(&values, temperature);
            let inv_temp = (1.0f32 / temperature) as f64;
            let g_lp_row = if target.is_some() { g_lp as f64 } else { 0.0 };
            for j in 0..vocab {
                let tol = grad_tolerance(
                    rr,
                    stol,
                    z[j],
                    inv_temp,
                    temperature != 1.0,
                    target == Some(j),
                    g_lp_row,
                    g_h as f64,
                    0.0,
                    dx_ref[j],
                );
                agree[4].add(dx[r * vocab + j], want[r * vocab + j], tol);
            }
        }
    }

    let passed = agree.iter().all(|a| a.outside == 0);
    println!();
    println!(
        "device      {} (fused fma: {}; bitwise agreement with core needs one)",
        gpu.name(),
        if gpu.fused_fma() { "yes" } else { "no" }
    );
    println!(
        "gpu time    forward {:.2} ms, gradient {:.2} ms (kernels, transfers and the first launch's shader compilation; {} chunk(s))",
        fwd_time.as_secs_f64() * 1e3,
        bwd_time.as_secs_f64() * 1e3,
        rows.div_ceil(chunk_rows)
    );
    match mode {
        GpuMode::Canonical => {
            println!("gpu vs core (every value; pass = within 2x the reference tolerance of each):")
        }
        GpuMode::Fast => {
            println!("gpu (fast mode) vs the f64 reference (every value; pass = within the fast mode's error bound):")
        }
    }
    for (a, name) in agree.iter().zip(["lse", "logp", "entropy", "log_sum", "gradient"]) {
        println!("{}", a.line(name));
    }
    println!("gpu check   {}", if passed { "PASSED" } else { "FAILED" });
    Ok(passed)
}

/// One row of the fast mode against the `f64` reference: `stats` = `lse, logp, entropy,
/// log_sum` from the GPU, `dx` its gradient row.
#[allow(clippy::too_many_arguments)]
fn fast_row(
    agree: &mut [Agreement; 5],
    values: &[f32],
    temperature: f32,
    target: Option<usize>,
    reference: Option<&tokenmath_reference::RowRef>,
    g_lp: f32,
    g_h: f32,
    stats: [f32; 4],
    dx: &[f32],
) {
    let Some(rr) = reference else {
        // A non-finite row: NaN everywhere.
        for (a, v) in agree.iter_mut().zip(stats) {
            a.add_exact(v, f64::NAN, 0.0);
        }
        dx.iter().for_each(|&v| agree[4].add_exact(v, f64::NAN, 0.0));
        return;
    };
    let z = tempered(values, temperature);
    let z_t = target.map_or(0.0, |t| z[t]);
    let [t_lse, t_logp, t_h, t_log_sum] = fast_stats_tolerance(rr, values.len(), z_t, temperature != 1.0);
    let logp = if target.is_some() { rr.logp } else { 0.0 };
    for (k, (want, tol)) in
        [(rr.lse, t_lse), (logp, t_logp), (rr.entropy, t_h), (rr.log_s, t_log_sum)].into_iter().enumerate()
    {
        agree[k].add_exact(stats[k], want, tol);
    }
    let g_lp = if target.is_some() { g_lp as f64 } else { 0.0 };
    let want = row_grad(values, temperature, target, g_lp, g_h as f64, 0.0).expect("finite row");
    let inv_temp = (1.0f32 / temperature) as f64;
    for (j, &v) in dx.iter().enumerate() {
        let tol = fast_grad_tolerance(rr, values.len(), z[j], inv_temp, g_lp, g_h as f64, 0.0, temperature != 1.0)
            + want[j].abs() * f64::powi(2.0, -24);
        agree[4].add_exact(v, want[j], tol);
    }
}
