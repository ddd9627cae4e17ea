//! The kernels transcribe `core`'s operation order exactly: on a device whose `fma` is not
//! fused (lavapipe), the GPU's statistics equal, bit for bit, `core`'s order evaluated here
//! with every `fma(a, b, c)` computed as `a·b + c` (two roundings). So the only difference
//! between lavapipe and `core` is the fusion of `fma`, and a device that fuses it gets
//! `core`'s bits (asserted by the other tests when `Gpu::fused_fma()` is true).

use tokenmath_core::logits::canonical as c;
use tokenmath_core::logits::{Temperature, Upstream, BLOCK};
use tokenmath_core::{Mat, MatMut};

use crate::common::*;

/// `core`'s `fma`, as lavapipe evaluates it.
fn fma(a: f32, b: f32, c: f32) -> f32 {
    a * b + c
}

fn exp_clamped(d: f32) -> f32 {
    let t = fma(d, c::LOG2E, c::ROUND_MAGIC);
    let n = t - c::ROUND_MAGIC;
    let r = fma(n, -c::LN2, d);
    let mut y = fma(c::Q4, r, c::Q3);
    for q in [c::Q2, c::Q1, c::Q0, 1.0, 1.0] {
        y = fma(y, r, q);
    }
    let biased = (t.to_bits().wrapping_add(c::EXP_BIAS_FIX) as i32).max(0);
    y * f32::from_bits((biased as u32) << 23)
}

fn clamp(d: f32) -> f32 {
    if c::EXP_CLAMP > d {
        c::EXP_CLAMP
    } else {
        d
    }
}

/// `(m, s, u)` of one block of tempered logits (all finite here).
fn block(z: &[f32]) -> (f32, f32, f32) {
    let m = z.iter().fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m }) + 0.0;
    let (mut s, mut u) = ([0.0f32; 8], [0.0f32; 8]);
    for (i, &v) in z.iter().enumerate() {
        let d = clamp(v - m);
        let e = exp_clamped(d);
        s[i % 8] += e;
        u[i % 8] = fma(e, d, u[i % 8]);
    }
    for w in [4, 2, 1] {
        for i in 0..w {
            s[i] += s[i + w];
            u[i] += u[i + w];
        }
    }
    (m, s[0], u[0])
}

fn merge(a: (f32, f32, f32), b: (f32, f32, f32)) -> (f32, f32, f32) {
    let (hi, lo) = if a.0 >= b.0 { (a, b) } else { (b, a) };
    let delta = lo.0 - hi.0;
    let e = exp_clamped(clamp(delta));
    (hi.0, fma(e, lo.1, hi.1), fma(e, fma(lo.1, delta, lo.2), hi.2))
}

/// The split tree: `tree(b[0..n]) = tree(b[0..k]) ⊕ tree(b[k..n])`.
fn tree(t: &[(f32, f32, f32)]) -> (f32, f32, f32) {
    if t.len() == 1 {
        return t[0];
    }
    let mut k = 1;
    while 2 * k < t.len() {
        k *= 2;
    }
    merge(tree(&t[..k]), tree(&t[k..]))
}

/// `[lse, logp, entropy, max, log_sum]` of one finite row in `core`'s order with unfused
/// `fma`.
fn row(x: &[f32], inv_temp: f32, target: usize) -> [f32; 5] {
    let z: Vec<f32> = x.iter().map(|&v| v * inv_temp).collect();
    let blocks: Vec<_> = z.chunks(BLOCK).map(block).collect();
    let (m, s, u) = tree(&blocks);
    let log_s = libm::logf(s);
    let mean_dev = u / s;
    let lp = (z[target] - m) - log_s;
    [m + log_s, if lp > 0.0 { 0.0 } else { lp }, log_s - mean_dev, m, log_s]
}

/// The gradient of one row in `core`'s order with unfused `fma`.
fn grad_row(x: &[f32], inv_temp: f32, target: usize, saved: [f32; 3], g: [f32; 3]) -> Vec<f32> {
    let [g_lp, g_h, g_lse] = g;
    let [max, log_sum, entropy] = saved;
    let (c, neg_gh) = (g_lse - g_lp, -g_h);
    x.iter()
        .enumerate()
        .map(|(j, &v)| {
            let d = clamp((v * inv_temp - max) - log_sum);
            let mut dz = exp_clamped(d) * fma(neg_gh, d + entropy, c);
            if j == target {
                dz += g_lp;
            }
            dz * inv_temp
        })
        .collect()
}

#[test]
fn lavapipe_matches_cores_order_with_an_unfused_fma() {
    if bitwise_expected() {
        return; // a fused fma: the other tests already require core's bits
    }
    let (rows, cols) = (24, 3 * BLOCK + 517);
    let data = logits_f32(21, rows, cols, cols);
    let tg: Vec<i32> = targets(21, rows, cols).iter().map(|&t| t.max(0)).collect();
    for temp in [1.0f32, 0.7, 1.9] {
        let inp = inputs(Some(&tg), None, Temperature::Scalar(temp));
        let got = gpu_fwd(Mat::dense(&data, rows, cols).unwrap(), &inp).unwrap();
        let core = cpu_fwd(Mat::dense(&data, rows, cols).unwrap(), &inp).unwrap();
        let mut differs_from_core = 0;
        for r in 0..rows {
            let want = row(&data[r * cols..(r + 1) * cols], inp.inv_temp(r), tg[r] as usize);
            let have = got.row(r);
            assert_eq!(
                have.map(f32::to_bits),
                want.map(f32::to_bits),
                "row {r}, temperature {temp}: {have:?} vs {want:?}"
            );
            let fused = core.row(r);
            differs_from_core += (fused.map(f32::to_bits) != want.map(f32::to_bits)) as usize;
        }
        // The comparison can tell the two orders apart: the fused one (core) differs.
        assert!(differs_from_core > 0, "temperature {temp}: no row tells fused from unfused fma");

        // The gradient, from these statistics.
        let saved = got.saved();
        let g: Vec<[f32; 3]> = (0..rows).map(|r| [-1.0 / (r + 1) as f32, 0.05 * r as f32 - 0.3, 1e-3]).collect();
        let (g_lp, g_h, g_lse): (Vec<f32>, Vec<f32>, Vec<f32>) =
            (g.iter().map(|g| g[0]).collect(), g.iter().map(|g| g[1]).collect(), g.iter().map(|g| g[2]).collect());
        let up = Upstream { g_logp: Some(&g_lp), g_entropy: Some(&g_h), g_lse: Some(&g_lse) };
        let gpu = gpu();
        let x = gpu.upload(Mat::dense(&data, rows, cols).unwrap()).unwrap();
        let grad = gpu.stats_bwd::<f32>(&x, &inp, &gpu.upload_saved(saved).unwrap(), up).unwrap();
        let mut dx = vec![f32::NAN; rows * cols];
        gpu.download(&grad, MatMut::dense(&mut dx, rows, cols).unwrap()).unwrap();
        for r in 0..rows {
            let saved_r = [got.max[r], got.log_sum[r], got.entropy[r]];
            let want = grad_row(&data[r * cols..(r + 1) * cols], inp.inv_temp(r), tg[r] as usize, saved_r, g[r]);
            for (j, (a, b)) in dx[r * cols..(r + 1) * cols].iter().zip(&want).enumerate() {
                assert_eq!(a.to_bits(), b.to_bits(), "gradient [{r}, {j}], temperature {temp}: {a:e} vs {b:e}");
            }
        }
    }
}
