//! # tokenmath-reference: the f64 oracle
//!
//! Plain, obviously-right `f64` implementations of tokenmath's kernels, written from the
//! definitions in the spec with no attention to speed. Tests compare the fast kernels
//! against these; the `tokenmath` command checks a sample of rows against them.
//!
//! Inputs are the *same* `f32` values the kernels see (bf16/f16 upcast exactly), so any
//! difference is the kernels' rounding, not the data's.

pub mod advantages;
pub mod dop;
pub mod exploration;
pub mod gpu_fast;
pub mod hapo;
pub mod policy_loss;
pub mod preference;
pub mod quota;
pub mod rng;
pub mod seed;
pub mod tokenizer_metrics;
pub mod tw_grpo;
pub mod unictokens;
pub mod xar;

/// Reference statistics of one row.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RowRef {
    /// `log Σ exp(z)`.
    pub lse: f64,
    /// `z_t − lse` (0 without a target).
    pub logp: f64,
    /// `−Σ p log p`.
    pub entropy: f64,
    /// `max |z|` over the finite tempered logits (for tolerance formulas).
    pub max_abs_z: f64,
    /// `max z` over the finite tempered logits.
    pub m: f64,
    /// `ln Σ exp(z − m)`, so that `log p_j = (z_j − m) − log_s` stays exact at any offset.
    pub log_s: f64,
}

impl RowRef {
    /// `log p` of a tempered logit `z`, computed centred.
    pub fn log_prob(&self, z: f64) -> f64 {
        (z - self.m) - self.log_s
    }
}

/// The tempered logits exactly as the library defines them: `z = x · inv_temp`, with
/// `inv_temp = 1/temp` rounded once to `f32`, evaluated in `f64`.
pub fn tempered(row: &[f32], temp: f32) -> Vec<f64> {
    let inv_temp = (1.0f32 / temp) as f64;
    row.iter().map(|&x| x as f64 * inv_temp).collect()
}

/// Two-pass textbook statistics of one row of `f32` logits. `None` if the row has a NaN or
/// `+inf` logit, or no finite logit.
pub fn row_stats(row: &[f32], temp: f32, target: Option<usize>) -> Option<RowRef> {
    let z = tempered(row, temp);
    if z.iter().any(|v| v.is_nan() || *v == f64::INFINITY) {
        return None;
    }
    let finite: Vec<f64> = z.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        return None;
    }
    let m = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    // Stable two-pass log-softmax: log p = (z − m) − ln s. (`z − lse` would lose ln s
    // entirely once |m| exceeds ~1e17 in f64.)
    let log_s = finite.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
    let lse = m + log_s;
    let mut entropy = 0.0;
    for &v in &finite {
        let lp = (v - m) - log_s;
        entropy -= lp.exp() * lp;
    }
    let logp = target.map_or(0.0, |t| (z[t] - m) - log_s);
    let max_abs_z = finite.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    Some(RowRef { lse, logp, entropy, max_abs_z, m, log_s })
}

/// Reference gradient of `g_lse·lse + g_lp·logp + g_h·entropy` w.r.t. the raw logits of one
/// row (textbook form `∂L/∂z_j = p_j (g_lse − g_lp − g_h (log p_j + H)) + g_lp·1[j=t]`).
/// `None` under the same conditions as [`row_stats`].
pub fn row_grad(row: &[f32], temp: f32, target: Option<usize>, g_lp: f64, g_h: f64, g_lse: f64) -> Option<Vec<f64>> {
    let r = row_stats(row, temp, target)?;
    let inv_temp = (1.0f32 / temp) as f64;
    let z = tempered(row, temp);
    let g_lp = if target.is_some() { g_lp } else { 0.0 };
    let mut dx: Vec<f64> = z
        .iter()
        .map(|&v| {
            if v == f64::NEG_INFINITY {
                return 0.0;
            }
            let lp = r.log_prob(v);
            let p = lp.exp();
            p * (g_lse - g_lp - g_h * (lp + r.entropy)) * inv_temp
        })
        .collect();
    if let Some(t) = target {
        dx[t] += g_lp * inv_temp;
    }
    Some(dx)
}

/// `f64` relative machine epsilon of `f32` (`2^-23`).
pub const EPS32: f64 = f32::EPSILON as f64;

/// The smallest normal `f32` (`2^-126`): the absolute floor of every tolerance. Below it
/// `f32` has fewer than 24 significant bits, so a relative bound means nothing (at
/// temperature `1e38` the gradient elements are subnormals of a few ulps).
pub const F32_MIN_NORMAL: f64 = f32::MIN_POSITIVE as f64;

/// Absolute error bounds for the `f32` kernel's row statistics against [`row_stats`].
#[derive(Clone, Copy, Debug)]
pub struct StatsTol {
    /// Bound for `lse`.
    pub lse: f64,
    /// Bound for `logp`.
    pub logp: f64,
    /// Bound for `entropy`.
    pub entropy: f64,
    /// Bound for `max` (the row maximum `m`).
    pub max: f64,
    /// Bound for `log_sum` (`ln Σ exp(z − m)`).
    pub log_sum: f64,
}

/// Canonical block size of the kernels (columns), used by the error model.
pub const KERNEL_BLOCK: usize = 2048;

/// Number of rounding steps a term of `s = Σ exp(z − m)` goes through in the kernel:
/// up to `BLOCK/8` sequential lane additions, 3 lane folds, 2 ulp of `exp`, and a few
/// roundings per level of the block merge tree.
pub fn rounding_depth(vocab: usize) -> f64 {
    let in_block = vocab.min(KERNEL_BLOCK).div_ceil(8) as f64;
    let blocks = vocab.div_ceil(KERNEL_BLOCK).max(1) as f64;
    in_block + 8.0 + 4.0 * blocks.log2().ceil()
}

/// The error model, as formulas of the vocabulary size and the reference values
/// (`ε = 2^-23`, `k = rounding_depth(V) + 2·ln(V+1)`, `ζ = max|z|` if the temperature is
/// not 1, else 0, since then `z = x` is exact):
///
/// ```text
/// lse:     ε·(k + 2|lse| + 2ζ)
/// logp:    ε·(k + 2|logp| + 2|lse| + 4ζ)
/// entropy: ε·(k·(1 + H + ln V) + 4ζ·(1 + ln V))
/// max:     ε·ζ
/// log_sum: ε·(k + 2|log_sum| + 3ζ)
/// ```
///
/// `k` bounds the relative error of `s` and `u` (sums of non-negative, resp. non-positive,
/// terms); `|u/s| ≤ H + ln V` turns it into the entropy bound; the `|lse|` term is the
/// final rounding of `m + log s`; `ζ` terms are the rounding of `z = x·inv_temp`, to which
/// `lse` is 1-Lipschitz (`max` is exact when `z = x`: rounding is monotone). Each bound
/// also gets the absolute floor [`F32_MIN_NORMAL`].
pub fn stats_tolerance(r: &RowRef, vocab: usize, tempered: bool) -> StatsTol {
    let v = vocab as f64;
    let k = rounding_depth(vocab) + 2.0 * (v + 1.0).ln();
    let zeta = if tempered { r.max_abs_z } else { 0.0 };
    let e = EPS32;
    let floor = F32_MIN_NORMAL;
    StatsTol {
        lse: e * (k + 2.0 * r.lse.abs() + 2.0 * zeta) + floor,
        logp: e * (k + 2.0 * r.logp.abs() + 2.0 * r.lse.abs() + 4.0 * zeta) + floor,
        entropy: e * (k * (1.0 + r.entropy + v.ln()) + 4.0 * zeta * (1.0 + v.ln())) + floor,
        max: e * zeta + floor,
        log_sum: e * (k + 2.0 * r.log_s.abs() + 3.0 * zeta) + floor,
    }
}

/// [`stats_tolerance`] for statistics merged from `shards` per-shard partials (one tuple per
/// shard, `merge_shards`) cut at arbitrary, unaligned columns: every cut can add one level
/// to the merge tree of `s` and `u`, so each of the `shards` merge levels adds `4ε` to the
/// relative error of the sums, which reaches `lse`, `logp` and `entropy` (the latter through
/// `|u/s| ≤ H + ln V`):
///
/// ```text
/// extra = 4·shards·ε·(1 + H + ln V)      added to lse, logp and entropy
/// ```
///
/// `max` is exact under any sharding (a maximum does not round), and `log_sum` gets the
/// same extra term as `lse` (`lse = m + log_sum` with `m` exact). Aligned shards merged per
/// block are bitwise equal to the unsharded forward and need no tolerance at all.
pub fn sharded_stats_tolerance(r: &RowRef, vocab: usize, tempered: bool, shards: usize) -> StatsTol {
    let mut tol = stats_tolerance(r, vocab, tempered);
    let extra = 4.0 * shards as f64 * EPS32 * (1.0 + r.entropy + (vocab as f64).ln());
    tol.lse += extra;
    tol.logp += extra;
    tol.entropy += extra;
    tol.log_sum += extra;
    tol
}

/// Elementwise error bound for the `f32` gradient at column `j` against [`row_grad`].
/// The kernel computes `d = (z_j − m) − log_sum` from the saved `max` and `log_sum`,
/// `q = (g_lse − g_lp) − g_H·(d + H)` with the saved entropy `H`, and
/// `dx = exp(d)·q·inv_temp`; with `ζ_j = ε·(|z_j| + |m|)` if tempered, else 0:
///
/// ```text
/// δd  = ε·(|z_j − m| + |d|) + tol.log_sum + ζ_j                 (absolute error of d)
/// δq  = ε·(|c| + |q|) + |g_H|·(δd + tol.entropy + ε·|d + H|)
/// tol = inv_temp·(p_j·(|q|·(δd + 2ε) + δq) + 1e-37·(1 + |q|)) + 2ε·|dx_j| + 2ε·|g_lp|·inv_temp·1[j = t]
/// ```
///
/// Every term is a function of what the exact gradient depends on (`z_j − m`, `log_sum`,
/// `H`, `p_j`, the upstream gradients), never of `|z|` or `|lse|` themselves: at temperature
/// 1 the bound of a row shifted by `1e4` or `−3.4e38` is the bound of the unshifted row. Only
/// the rounding of `z = x·inv_temp` to `f32` (`ζ`, tempered rows) is an input error that
/// grows with `|z|`. The `1e-37` term covers the flush of `p_j < 2^-126` to 0, and the
/// absolute floor [`F32_MIN_NORMAL`] the subnormal outputs of extreme temperatures.
#[allow(clippy::too_many_arguments)]
pub fn grad_tolerance(
    r: &RowRef,
    tol: &StatsTol,
    z_j: f64,
    inv_temp: f64,
    tempered: bool,
    is_target: bool,
    g_lp: f64,
    g_h: f64,
    g_lse: f64,
    dx_ref: f64,
) -> f64 {
    if z_j == f64::NEG_INFINITY {
        return 2.0 * EPS32 * dx_ref.abs() + F32_MIN_NORMAL;
    }
    let e = EPS32;
    let zeta_j = if tempered { e * (z_j.abs() + r.m.abs()) } else { 0.0 };
    let d = r.log_prob(z_j);
    let p = d.exp();
    let h = r.entropy;
    let c = g_lse - g_lp;
    let q = c - g_h * (d + h);
    let dd = e * ((z_j - r.m).abs() + d.abs()) + tol.log_sum + zeta_j;
    let dq = e * (c.abs() + q.abs()) + g_h.abs() * (dd + tol.entropy + e * (d + h).abs());
    let mut t = inv_temp * (p * (q.abs() * (dd + 2.0 * e) + dq) + 1e-37 * (1.0 + q.abs())) + 2.0 * e * dx_ref.abs();
    if is_target {
        t += 2.0 * e * g_lp.abs() * inv_temp;
    }
    t + F32_MIN_NORMAL
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_worked_examples() {
        // logits.md §10
        let r = row_stats(&[1.0, 2.0, 3.0, 4.0], 1.0, Some(2)).unwrap();
        assert!((r.lse - 4.440189698561196).abs() < 1e-14);
        assert!((r.logp - -1.440189698561196).abs() < 1e-14);
        assert!((r.entropy - 0.947536963975426).abs() < 1e-14);
        assert_eq!(r.m, 4.0);
        assert!((r.log_s - 0.440189698561196).abs() < 1e-14);
        let g = row_grad(&[1.0, 2.0, 3.0, 4.0], 1.0, Some(2), 1.0, 0.5, 0.0).unwrap();
        let want = [0.007896879286467, -0.022106215905078, 0.821467665964279, -0.807258329345667];
        for (a, b) in g.iter().zip(want) {
            assert!((a - b).abs() < 1e-13, "{a} vs {b}");
        }
        let r = row_stats(&[1.0, 2.0, f32::NEG_INFINITY, 4.0], 2.0, Some(1)).unwrap();
        assert!((r.lse - 2.464368784107945).abs() < 1e-14);
        assert!((r.logp - -1.464368784107945).abs() < 1e-14);
        assert!((r.entropy - 0.905959256479227).abs() < 1e-14);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let row = [0.3f32, -1.2, 2.5, 0.0, 1.1];
        let (g_lp, g_h, g_lse) = (0.7, -0.4, 0.2);
        let loss = |row: &[f64]| {
            // evaluate in f64 directly (no f32 rounding of the perturbed logits)
            let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            let h: f64 = row.iter().map(|v| -(v - lse).exp() * (v - lse)).sum();
            g_lse * lse + g_lp * (row[2] - lse) + g_h * h
        };
        let g = row_grad(&row, 1.0, Some(2), g_lp, g_h, g_lse).unwrap();
        for j in 0..row.len() {
            let h = 1e-6;
            let mut a: Vec<f64> = row.iter().map(|&v| v as f64).collect();
            let mut b = a.clone();
            a[j] += h;
            b[j] -= h;
            let fd = (loss(&a) - loss(&b)) / (2.0 * h);
            assert!((fd - g[j]).abs() < 1e-8, "col {j}: fd {fd} vs {}", g[j]);
        }
    }

    /// The gradient bound of every column of `row` at temperature 1, for `−logp`.
    fn bounds(row: &[f32], target: usize) -> Vec<f64> {
        let r = row_stats(row, 1.0, Some(target)).unwrap();
        let tol = stats_tolerance(&r, row.len(), false);
        let exact = row_grad(row, 1.0, Some(target), -1.0, 0.0, 0.0).unwrap();
        let z = tempered(row, 1.0);
        (0..row.len())
            .map(|j| grad_tolerance(&r, &tol, z[j], 1.0, false, j == target, -1.0, 0.0, 0.0, exact[j]))
            .collect()
    }

    /// The bound depends on `z − m`, `log_sum`, `H` and `p`, not on `|z|`: shifting a row
    /// by an exactly representable offset leaves it unchanged (the bound from `|lse|` grew
    /// to 8e31 at `−3.4e38` and passed a gradient off by 0.875).
    #[test]
    fn gradient_bound_does_not_grow_with_the_offset() {
        let base: Vec<f32> = (0..64).map(|i| ((i * 37) % 23) as f32 * 0.125 - 2.0).collect();
        let want = bounds(&base, 5);
        for offset in [1e4f32, -1e4, 2e5] {
            let shifted: Vec<f32> = base.iter().map(|x| x + offset).collect();
            assert!(shifted.iter().zip(&base).all(|(s, x)| s - offset == *x));
            let got = bounds(&shifted, 5);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-12 * w, "offset {offset}: bound {g:e} vs {w:e}");
            }
        }
        assert_eq!(bounds(&[-3.4e38; 8], 7), bounds(&[0.0; 8], 7));
    }

    /// The old `lse`-based backward, replayed in `f32`, fails the bound at both offsets the
    /// issue reported: `d = z − lse` with the saved `f32` lse.
    #[test]
    fn gradient_bound_catches_the_lse_based_backward() {
        let old = |row: &[f32], target: usize| -> Vec<f64> {
            let r = row_stats(row, 1.0, Some(target)).unwrap();
            let lse = r.lse as f32;
            row.iter()
                .enumerate()
                .map(|(j, &z)| {
                    let p = ((z - lse) as f64).exp();
                    p - if j == target { 1.0 } else { 0.0 }
                })
                .collect()
        };
        for row in [vec![-3.4e38f32; 8], (0..64).map(|i| 1e4 + ((i * 37) % 23) as f32 * 0.125).collect()] {
            let target = row.len() - 1;
            let exact = row_grad(&row, 1.0, Some(target), -1.0, 0.0, 0.0).unwrap();
            let worst = old(&row, target)
                .iter()
                .zip(&exact)
                .zip(bounds(&row, target))
                .map(|((g, w), t)| (g - w).abs() / t)
                .fold(0.0f64, f64::max);
            assert!(worst > 1.0, "the old backward passes at offset {}: worst error/bound {worst}", row[0]);
        }
    }
}
