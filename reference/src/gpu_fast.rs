//! Error bounds of the GPU's fast mode (`tokenmath_gpu::GpuMode::Fast`) against the `f64`
//! reference: formulas of the reference's own quantities, derived in
//! `tokenmath-gpu`'s `kernels::fast` docs.
//!
//! The fast mode evaluates `exp` in hardware (`ex2.approx(d·log2 e)`): a term `e = exp(d)`
//! has a relative error of at most `2^-21 + 2|d|·ε` (`ε = 2^-24`: the rounding of the
//! argument `d·log2 e` grows with `|d|`; WGSL's `exp`, `3 + 2|d|` ulp, is inside the same
//! bound). Summed with weights `p_j`, the `|d|` part is `2ε·E_p[m − z]`, and
//! `E_p[m − z] = entropy − log_s` is a reference quantity. Each sum also goes through at most
//! [`fast_depth`] roundings.

use crate::{RowRef, EPS32, F32_MIN_NORMAL};

/// `ε = 2^-24` (half an ulp of 1 in `f32`).
const EPS: f64 = EPS32 / 2.0;
/// The hardware `exp`'s relative error at `d = 0` (`ex2.approx`: 2 ulp of 2^-22).
const EXP_REL: f64 = 1.0 / (1u64 << 21) as f64;
/// Arguments below `−FLOOR` are floored (their terms are below `2^-126`).
const FLOOR: f64 = 88.0;
/// Columns per segment of the fast reduction tree.
const SEG: usize = 2048;

/// Roundings a term of the fast mode's sums goes through: a lane's sequential fold (a
/// segment over the plane's lanes: at most `SEG/4` terms on any device, planes have 4 lanes
/// or more), the plane's butterfly and the segment tree (each level one rescale and one
/// addition), and the final division and logarithm.
pub fn fast_depth(vocab: usize) -> f64 {
    let lane = vocab.min(SEG / 4) as f64;
    let tree = (vocab.div_ceil(SEG) as f64).log2().ceil().max(0.0);
    lane + 2.0 * (5.0 + tree) + 8.0
}

/// `E_p[m − z] = entropy − log_s` (≥ 0): the mean distance below the maximum.
fn mean_gap(r: &RowRef) -> f64 {
    (r.entropy - r.log_s).max(0.0)
}

/// Relative error bound of the fast mode's `s = Σ exp(z − m)`.
pub fn fast_sum_rel(r: &RowRef, vocab: usize) -> f64 {
    EXP_REL + 2.0 * EPS * mean_gap(r) + fast_depth(vocab) * EPS
}

/// Absolute error bounds of the fast forward's `(lse, logp, entropy, log_sum)` for one row
/// of `vocab` columns (`tempered`: a temperature other than 1, whose product `x·inv_temp`
/// rounds each logit once more). `z_t`: the target's tempered logit (0 without one).
pub fn fast_stats_tolerance(r: &RowRef, vocab: usize, z_t: f64, tempered: bool) -> [f64; 4] {
    let rel = fast_sum_rel(r, vocab);
    let z_round = if tempered { EPS * (r.max_abs_z + z_t.abs()) } else { 0.0 };
    // `log_sum = ln s` (the maximum is exact); `lse = max + log_sum` rounds once more.
    let log_sum = 1.5 * rel + 2.0 * EPS * r.log_s + z_round + F32_MIN_NORMAL;
    let lse = log_sum + 2.0 * EPS * r.lse.abs();
    let logp = 1.5 * rel + 2.0 * EPS * ((z_t - r.m).abs() + r.logp.abs() + r.log_s) + 2.0 * z_round + F32_MIN_NORMAL;
    // `u/s = E_p[m − z]` carries the terms' errors weighted by `|d|` (at most FLOOR).
    let gap = mean_gap(r);
    let mean = (EXP_REL + (fast_depth(vocab) + 2.0 * FLOOR) * EPS) * gap + rel * gap;
    let entropy = rel + mean + 2.0 * EPS * (r.log_s + gap + r.entropy) + z_round + F32_MIN_NORMAL;
    [lse, logp, entropy, log_sum]
}

/// Absolute error bound of one element of the fast gradient (before rounding to the output
/// type): `z_j` the tempered logit (`−inf` allowed), `g_*` the upstream gradients.
#[allow(clippy::too_many_arguments)]
pub fn fast_grad_tolerance(
    r: &RowRef,
    vocab: usize,
    z_j: f64,
    inv_temp: f64,
    g_lp: f64,
    g_h: f64,
    g_lse: f64,
    tempered: bool,
) -> f64 {
    if z_j == f64::NEG_INFINITY {
        return F32_MIN_NORMAL;
    }
    let [_, _, d_entropy, _] = fast_stats_tolerance(r, vocab, 0.0, tempered);
    let d = r.log_prob(z_j);
    let p = d.exp();
    let z_round = if tempered { EPS * (z_j.abs() + r.m.abs()) } else { 0.0 };
    // `d = (z − m) − log_s`: two roundings, and `log_s` carries the sum's error.
    let d_err = 2.0 * EPS * ((z_j - r.m).abs() + d.abs()) + fast_sum_rel(r, vocab) + z_round;
    let p_rel = EXP_REL + 2.0 * EPS * d.abs() + d_err;
    let bracket = (g_lse - g_lp - g_h * (d + r.entropy)).abs();
    let bracket_err = g_h.abs() * (d_err + d_entropy + 2.0 * EPS * (d.abs() + r.entropy));
    let core = p * (bracket * (p_rel + 4.0 * EPS) + bracket_err);
    inv_temp * (core + 2.0 * EPS * (g_lp.abs() + p * bracket)) + F32_MIN_NORMAL
}
