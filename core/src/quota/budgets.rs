//! Frame weights and per-frame token budgets (`quota_pipeline.py`,
//! `core/llava_arch.py::token_compress` and `scale_weights`).
//!
//! ```text
//! w_i   = (scale·p_i)^power            weight_scale = [100, 2]
//! ŵ_i   = w_i / Σ_j w_j                 (all-zero scores: uniform 1/F [library choice]; the source divides 0/0)
//! T_tot = 196 · 64 = 12 544
//! ŵ     = scale_weights(ŵ, tokens_per_frame / T_tot)       (versions other than v1)
//! n_i   = trunc(T_tot·ŵ_i)  [code]   or the largest-remainder apportionment [library choice]
//! ```

use crate::TmError;

/// `out[i] = ŵ_i = (scale·p_i)^power / Σ_j (scale·p_j)^power` (source: `scale = 100`,
/// `power = 2`), in `f64`, rounded once.
///
/// `p_yes[i]` must lie in `[0, 1]` (NaN/inf: [`TmError::NonFinite`], else
/// [`TmError::InvalidArgument`]); `scale` finite `> 0`, `power` finite `> 0`. When every
/// weight is 0 the weights are uniform `1/F` \[library choice\] (the source gets NaN).
pub fn quota_frame_weights(p_yes: &[f32], scale: f32, power: f32, out: &mut [f32]) -> Result<(), TmError> {
    if !(scale.is_finite() && scale > 0.0 && power.is_finite() && power > 0.0) {
        return Err(TmError::InvalidArgument("QuoTA weight scale and power must be finite and > 0"));
    }
    crate::error::check_len("out", p_yes.len(), out.len())?;
    if let Some(index) = p_yes.iter().position(|p| !p.is_finite()) {
        return Err(TmError::NonFinite { what: "p_yes", index });
    }
    if p_yes.iter().any(|&p| !(0.0..=1.0).contains(&p)) {
        return Err(TmError::InvalidArgument("QuoTA relevance scores must lie in [0, 1]"));
    }
    let w = |p: f32| libm::pow(scale as f64 * p as f64, power as f64);
    let total: f64 = p_yes.iter().map(|&p| w(p)).sum();
    let n = p_yes.len() as f64;
    for (o, &p) in out.iter_mut().zip(p_yes) {
        *o = if total > 0.0 { (w(p) / total) as f32 } else { (1.0 / n) as f32 };
    }
    Ok(())
}

/// The source's `scale_weights(w, max_value)`, in place, reproduced exactly: the running
/// excess is never decreased, the redistribution denominator `S` includes the capped
/// weights, and nothing is renormalised afterwards.
///
/// ```text
/// excess = 0
/// for i: if w_i > max: excess += w_i − max; w_i = max
/// if excess > 0:
///     S = Σ w_i                                  (after capping)
///     for i: if w_i < max:
///         w_i += (w_i/S)·excess
///         if w_i > max: excess += w_i − max; w_i = max
/// ```
///
/// `max_value` is `tokens_per_frame / T_tot` (729/12544 by default). Arithmetic in `f64`
/// (`excess`, `S`, each update), each weight stored back as `f32`. Weights must be finite
/// and `≥ 0`, `max_value` finite and `> 0`.
pub fn quota_scale_weights(w: &mut [f32], max_value: f32) -> Result<(), TmError> {
    if !(max_value.is_finite() && max_value > 0.0) {
        return Err(TmError::InvalidArgument("scale_weights max_value must be finite and > 0"));
    }
    if let Some(index) = w.iter().position(|v| !v.is_finite()) {
        return Err(TmError::NonFinite { what: "w", index });
    }
    if w.iter().any(|&v| v < 0.0) {
        return Err(TmError::InvalidArgument("QuoTA weights must be >= 0"));
    }
    let max = max_value as f64;
    let mut excess = 0.0f64;
    for v in w.iter_mut() {
        if *v as f64 > max {
            excess += *v as f64 - max;
            *v = max_value;
        }
    }
    if excess > 0.0 {
        let s: f64 = w.iter().map(|&v| v as f64).sum();
        for v in w.iter_mut() {
            if (*v as f64) < max {
                let nv = *v as f64 + (*v as f64 / s) * excess;
                if nv > max {
                    excess += nv - max;
                    *v = max_value;
                } else {
                    *v = nv as f32;
                }
            }
        }
    }
    Ok(())
}

/// How [`quota_token_budgets`] turns weights into integers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BudgetRule {
    /// Largest remainder (Hamilton) on `T·w_i/Σw` (default) \[library choice\]: the budgets
    /// sum to exactly `T`; the leftover tokens go one each to the largest fractional parts,
    /// ties to the lower frame index.
    #[default]
    LargestRemainder,
    /// The source: `n_i = trunc(T·w_i)` on the weights as given (not renormalised), so
    /// `Σ n_i ≤ T` \[code\].
    Truncate,
}

/// Integer token budgets `out[i]` of `total` tokens for weights `w` (the `ŵ` of
/// [`quota_frame_weights`], possibly capped by [`quota_scale_weights`]). Frames whose budget
/// is 0 are dropped by the caller, as in the source.
///
/// Weights must be finite and `≥ 0`; under [`BudgetRule::LargestRemainder`] their sum must be
/// `> 0` for a non-empty input ([`TmError::InvalidArgument`]). Under
/// [`BudgetRule::Truncate`] a weight above 1 may give a budget above `total` (the source's
/// arithmetic); a budget past `u32::MAX` is an error.
pub fn quota_token_budgets(w: &[f32], total: u32, rule: BudgetRule, out: &mut [u32]) -> Result<(), TmError> {
    crate::error::check_len("out", w.len(), out.len())?;
    if let Some(index) = w.iter().position(|v| !v.is_finite()) {
        return Err(TmError::NonFinite { what: "w", index });
    }
    if w.iter().any(|&v| v < 0.0) {
        return Err(TmError::InvalidArgument("QuoTA weights must be >= 0"));
    }
    if w.is_empty() {
        return Ok(());
    }
    let t = total as f64;
    match rule {
        BudgetRule::Truncate => {
            if w.iter().any(|&v| libm::trunc(t * v as f64) > u32::MAX as f64) {
                return Err(TmError::InvalidArgument("a token budget overflows u32"));
            }
            for (o, &v) in out.iter_mut().zip(w) {
                *o = libm::trunc(t * v as f64) as u32;
            }
        }
        BudgetRule::LargestRemainder => {
            let s: f64 = w.iter().map(|&v| v as f64).sum();
            if s <= 0.0 {
                return Err(TmError::InvalidArgument("largest-remainder budgets need weights with a positive sum"));
            }
            let quota = |i: usize| t * (w[i] as f64 / s);
            let frac = |i: usize| quota(i) - libm::floor(quota(i));
            let mut assigned: i64 = 0;
            for (i, o) in out.iter_mut().enumerate() {
                *o = (libm::floor(quota(i)) as u32).min(total);
                assigned += *o as i64;
            }
            // Σ quota = T, so 0 ≤ T − Σ floor < F up to rounding; rounding is repaired the
            // same way (take from the smallest remainders).
            let mut left = total as i64 - assigned;
            // Each pass gives one token to the largest remainder not yet served (a frame
            // is served at most once: its remainder is < 1).
            let mut served_below = f64::INFINITY;
            let mut served_idx = usize::MAX;
            while left > 0 {
                let mut best: Option<usize> = None;
                for i in 0..w.len() {
                    let f = frac(i);
                    // Strictly after (served_below, served_idx) in (frac desc, index asc) order.
                    let after = f < served_below || (f == served_below && i > served_idx);
                    if after && best.is_none_or(|b| f > frac(b)) {
                        best = Some(i);
                    }
                }
                let Some(b) = best else { break };
                out[b] += 1;
                left -= 1;
                served_below = frac(b);
                served_idx = b;
            }
            while left < 0 {
                let pick = (0..w.len()).filter(|&i| out[i] > 0).min_by(|&a, &b| frac(a).total_cmp(&frac(b)));
                let Some(p) = pick else { break };
                out[p] -= 1;
                left += 1;
            }
        }
    }
    Ok(())
}

/// The grid `(h, w)` for a budget of `n` tokens: `h = w = isqrt(n)`, then if `h·w < n`, one
/// more row if `(h+1)·w ≤ n`, else one more column if `h·(w+1) ≤ n`. Always `h·w ≤ n`
/// (`n = 10` gives `3×3`); `n = 12` gives `4×3`, `n = 729` gives `27×27`, `n = 0` gives `0×0`.
pub fn quota_grid_for_budget(n: u32) -> (u32, u32) {
    let r = n.isqrt();
    let (mut h, mut w) = (r, r);
    if (h as u64) * (w as u64) < n as u64 {
        if (h as u64 + 1) * (w as u64) <= n as u64 {
            h += 1;
        } else if (h as u64) * (w as u64 + 1) <= n as u64 {
            w += 1;
        }
    }
    (h, w)
}
