//! Diversity or Precision (spec `policy.md` §7.7) in `f64`, straight from the definition:
//! the full softmax, a full sort for the top-k, the weights `w_a`, the loss
//! `L = −Σ_a w_a log π_a` summed over the whole vocabulary and the gradient
//! `∂L/∂z_j = π_j·W − w_j` with `W = Σ_a w_a` (no `E_K`/entropy shortcut, no selection).
//!
//! The ranking uses the library's tempered logit, `x·inv_temp` rounded to `f32` (`−0 = +0`),
//! so that ties are the kernel's ties; everything else is computed from the exact `f64`
//! tempered logits ([`crate::tempered`]).

use crate::{row_stats, stats_tolerance, RowRef, EPS32, F32_MIN_NORMAL};

/// The settings (as `tokenmath_core::seed::dop::DopCfg`).
#[derive(Clone, Copy, Debug)]
pub struct DopParams {
    /// `β > −1`.
    pub beta: f64,
    /// `λ̃` (top-k, non-target).
    pub lam_top: f64,
    /// `λ̂` (outside the top-k, non-target).
    pub lam_tail: f64,
    /// `k`.
    pub top_k: usize,
    /// The gradient is that of `grad_scale·L`.
    pub grad_scale: f64,
}

/// The reference result of one row, with error bounds for the `f32` kernel.
#[derive(Clone, Debug)]
pub struct DopRef {
    /// `L = −Σ w_a log π_a`.
    pub loss: f64,
    /// `grad_scale·∂L/∂x_j` (raw logits).
    pub grad: Vec<f64>,
    /// Membership in `K`.
    pub in_k: Vec<bool>,
    /// The weights `w_a` (treated as constants by the gradient: `sg`).
    pub w: Vec<f64>,
    /// `w_x`.
    pub w_x: f64,
    /// `W = Σ w_a`.
    pub big_w: f64,
    /// Absolute error bound of the kernel's loss.
    pub loss_tol: f64,
    /// Elementwise absolute error bounds of the kernel's gradient.
    pub grad_tol: Vec<f64>,
}

/// `K`: the `k` best columns by (tempered `f32` logit descending, column ascending).
pub fn top_k_set(row: &[f32], temp: f32, k: usize) -> Vec<bool> {
    let inv_temp = 1.0f32 / temp;
    let z: Vec<f32> = row.iter().map(|&x| if inv_temp == 1.0 { x } else { x * inv_temp } + 0.0).collect();
    let mut order: Vec<usize> = (0..row.len()).collect();
    order.sort_by(|&a, &b| z[b].partial_cmp(&z[a]).expect("no NaN in a ranked row").then(a.cmp(&b)));
    let mut in_k = vec![false; row.len()];
    for &j in order.iter().take(k) {
        in_k[j] = true;
    }
    in_k
}

/// `w_x = π_x^{1 − (1 − π_x)^β}`, with `w_x = 1` for `β = 0`, `π_x = 0` and `π_x = 1`.
pub fn target_weight(beta: f64, pi: f64) -> f64 {
    if beta == 0.0 || pi == 0.0 || pi >= 1.0 {
        return 1.0;
    }
    pi.powf(1.0 - (1.0 - pi).powf(beta))
}

/// `|d log w_x / d log π_x| = |1 − (1−π)^β − β·(1−π)^{β−1}·π·log π|` (0 where `w_x ≡ 1`).
fn target_weight_slope(beta: f64, pi: f64) -> f64 {
    if beta == 0.0 || pi == 0.0 || pi >= 1.0 {
        return 0.0;
    }
    let q = 1.0 - pi;
    (1.0 - q.powf(beta) - beta * q.powf(beta - 1.0) * pi * pi.ln()).abs()
}

/// The reference of one row (`None` for a row with a NaN or `+inf` logit, or no finite one).
///
/// The error model of the kernel (`ε = 2^-23`; `tol` = [`stats_tolerance`] of the row;
/// `δd_j = ε·(|z_j − m| + |d_j|) + tol.log_sum + ζ_j` the error of `d_j = log π_j`, as in
/// [`crate::grad_tolerance`]):
///
/// ```text
/// δlp = tol.logp (0 for a −inf target logit)       (log π_x)
/// δw  = w_x·(slope·δlp + 4ε)                       (slope = |d log w_x/d log π_x|)
/// δS  = Σ_{K∖x} π_a·(δd_a + 2ε) + 2ε·S_K,   δE = Σ_{K∖x} π_a·(1 + |d_a|)·(δd_a + 2ε)
/// δW  = δw + (|λ̃| + |λ̂|)·(δS + π_x·δlp + 2ε) + 4ε·(w_x + |λ̃| + |λ̂|)
/// loss: w_x·δlp + |lp|·δw + |λ̃|·δE + |λ̂|·(tol.entropy + π_x(1 + |lp|)·δlp + δE) + 8ε·Σ|terms|
/// grad: s·inv_temp·(π_j·|W − λ_j|·(δd_j + 4ε) + π_j·δW + [j = x]·(δw + 2ε·w_x)) + 2ε·|g_j| + 1e-37·(1 + |W|) + floor
/// ```
pub fn dop_row(row: &[f32], temp: f32, target: usize, p: &DopParams) -> Option<DopRef> {
    let r: RowRef = row_stats(row, temp, Some(target))?;
    let v = row.len();
    let tempered = temp != 1.0;
    let tol = stats_tolerance(&r, v, tempered);
    let inv_temp = (1.0f32 / temp) as f64;
    let z = crate::tempered(row, temp);
    let in_k = top_k_set(row, temp, p.top_k.min(v));
    let lp: Vec<f64> =
        z.iter().map(|&zj| if zj == f64::NEG_INFINITY { f64::NEG_INFINITY } else { r.log_prob(zj) }).collect();
    let pi: Vec<f64> = lp.iter().map(|l| l.exp()).collect();
    let w_x = target_weight(p.beta, pi[target]);
    let w: Vec<f64> = (0..v)
        .map(|j| {
            if j == target {
                w_x
            } else if in_k[j] {
                p.lam_top * pi[j]
            } else {
                p.lam_tail * pi[j]
            }
        })
        .collect();
    let big_w: f64 = w.iter().sum();
    let loss: f64 = -(0..v).map(|j| if w[j] == 0.0 { 0.0 } else { w[j] * lp[j] }).sum::<f64>();
    let grad: Vec<f64> = (0..v).map(|j| p.grad_scale * (pi[j] * big_w - w[j]) * inv_temp).collect();

    // Error bounds.
    let e = EPS32;
    let dd = |j: usize| {
        let zeta = if tempered { e * (z[j].abs() + r.m.abs()) } else { 0.0 };
        e * ((z[j] - r.m).abs() + lp[j].abs()) + tol.log_sum + zeta
    };
    let (pi_x, lp_x) = (pi[target], lp[target]);
    // A `−inf` target logit: `π_x = 0` and `w_x = 1` exactly.
    let dlp = if lp_x.is_finite() { tol.logp } else { 0.0 };
    let dw = w_x * (target_weight_slope(p.beta, pi_x) * dlp + 4.0 * e);
    let (mut ds, mut de, mut s_k) = (0.0, 0.0, 0.0);
    for j in (0..v).filter(|&j| in_k[j] && j != target && pi[j] > 0.0) {
        ds += pi[j] * (dd(j) + 2.0 * e);
        de += pi[j] * (1.0 + lp[j].abs()) * (dd(j) + 2.0 * e);
        s_k += pi[j];
    }
    ds += 2.0 * e * s_k;
    let lams = p.lam_top.abs() + p.lam_tail.abs();
    let dbig_w = dw + lams * (ds + pi_x * dlp + 2.0 * e) + 4.0 * e * (w_x + lams);
    let lp_x_abs = if lp_x.is_finite() { lp_x.abs() } else { 0.0 };
    let loss_tol = w_x * dlp
        + lp_x_abs * dw
        + p.lam_top.abs() * de
        + p.lam_tail.abs() * (tol.entropy + pi_x * (1.0 + lp_x_abs) * dlp + de)
        + 8.0 * e * (w_x * lp_x_abs + lams * (r.entropy + 1.0))
        + F32_MIN_NORMAL;
    let s = p.grad_scale.abs();
    let grad_tol = (0..v)
        .map(|j| {
            let lam = if j == target {
                0.0
            } else if in_k[j] {
                p.lam_top
            } else {
                p.lam_tail
            };
            let c = if j == target { big_w } else { big_w - lam };
            let mut t = if pi[j] > 0.0 { pi[j] * (c.abs() * (dd(j) + 4.0 * e) + dbig_w) } else { 0.0 };
            if j == target {
                t += dw + 2.0 * e * w_x;
            }
            s * inv_temp * (t + 1e-37 * (1.0 + big_w.abs())) + 2.0 * e * grad[j].abs() + F32_MIN_NORMAL
        })
        .collect();
    Some(DopRef { loss, grad, in_k, w, w_x, big_w, loss_tol, grad_tol })
}
