//! TRL's combination of several reward functions into one reward per response
//! (`policy.md` §3.1, TRL `grpo_trainer.py::_generate_and_score_completions`).
//!
//! Scores come as a `[B, K]` row-major matrix `r[b,k]` (response `b`, reward function `k`)
//! with one weight per function. A NaN score means "this function cannot score this
//! response"; a response that no function can score is *unscorable* and its reward is NaN,
//! which [`super::grpo_advantage`] under [`super::NanPolicy::IgnoreAndZero`] maps to `A = 0`.

use super::{check_bt, Groups, Moments, StdKind};
use crate::error::TmError;

/// TRL's default aggregation (`sum_then_normalize`'s first half) \[code\]:
/// `R_b = Σ_k w_k·r[b,k]` over the functions with a non-NaN score (`nansum`), NaN when every
/// `r[b,k]` is NaN. Accumulated in `f64` in ascending `k`, rounded once. Feed the result to
/// [`super::grpo_advantage`] with [`super::GrpoCfg::trl`].
///
/// Errors: `weights` empty or not finite ([`TmError::InvalidArgument`] /
/// [`TmError::NonFinite`]), a `±inf` score ([`TmError::NonFinite`]), lengths
/// (`per_func.len() = out.len()·K`).
pub fn trl_sum_rewards(per_func: &[f32], weights: &[f32], out: &mut [f32]) -> Result<(), TmError> {
    check_scores(per_func, weights, out.len())?;
    let k = weights.len();
    for (row, r) in per_func.chunks_exact(k).zip(out.iter_mut()) {
        *r = weighted_nansum(row.iter().zip(weights).map(|(&x, &w)| (x as f64, w as f64)));
    }
    Ok(())
}

/// TRL's `multi_objective_aggregation="normalize_then_sum"` \[code\], contiguous groups of
/// `group_size` responses:
///
/// ```text
/// z[b,k] = (r[b,k] − nanmean_g r[·,k]) / (nanstd_g r[·,k] + 1e-4)     (std := 0 if G = 1)
/// R_b    = nansum_k w_k·z[b,k]                  (NaN if every r[b,k] is NaN: unscorable)
/// A_b    = (R_b − nanmean_batch R) / (nanstd_batch R + 1e-4);   NaN → 0
/// ```
///
/// `nanstd` is unbiased and NaN with fewer than 2 non-NaN values (so a function that scores
/// fewer than 2 members of a group contributes nothing to that group); the batch std of a
/// single response is 0. `R_b` is rounded to `f32` (TRL's tensor) before the batch
/// statistics, which are accumulated in `f64`. Cost `O(B·K·G)`, no scratch. TRL's
/// `scale_rewards` does not apply in this mode.
///
/// Errors: as [`trl_sum_rewards`], plus `group_size` 0 or not dividing `B`
/// ([`TmError::InvalidArgument`]).
pub fn trl_normalize_then_sum_advantage(
    per_func: &[f32],
    weights: &[f32],
    group_size: usize,
    out: &mut [f32],
) -> Result<(), TmError> {
    check_scores(per_func, weights, out.len())?;
    let groups = Groups::Contiguous { size: group_size };
    groups.validate(out.len())?;
    let k = weights.len();
    let score = |b: usize, f: usize| per_func[b * k + f];
    for members in groups.iter(out.len()) {
        for b in members.clone() {
            let z = (0..k).map(|f| {
                let column = members.clone().map(|j| score(j, f));
                let std = if group_size == 1 { 0.0 } else { nanstd(column.clone()) };
                ((score(b, f) as f64 - nanmean(column)) / (std + 1e-4), weights[f] as f64)
            });
            // Unscorable is decided on the raw scores; a NaN z (a function with too few
            // scores in the group) is merely skipped by the sum.
            out[b] = if (0..k).all(|f| score(b, f).is_nan()) {
                f32::NAN
            } else {
                let r = weighted_nansum(z);
                if r.is_nan() {
                    0.0
                } else {
                    r
                }
            };
        }
    }
    let rows = out.len();
    let std = if rows == 1 { 0.0 } else { nanstd(out.iter().copied()) };
    let mean = nanmean(out.iter().copied());
    for a in out.iter_mut() {
        let v = (*a as f64 - mean) / (std + 1e-4);
        *a = if v.is_nan() { 0.0 } else { v as f32 };
    }
    Ok(())
}

fn check_scores(per_func: &[f32], weights: &[f32], rows: usize) -> Result<(), TmError> {
    if weights.is_empty() {
        return Err(TmError::InvalidArgument("at least one reward function (weight) is needed"));
    }
    if let Some(index) = weights.iter().position(|w| !w.is_finite()) {
        return Err(TmError::NonFinite { what: "weights", index });
    }
    check_bt("per_func", rows, weights.len(), per_func.len())?;
    if let Some(index) = per_func.iter().position(|x| x.is_infinite()) {
        return Err(TmError::NonFinite { what: "per_func", index });
    }
    Ok(())
}

/// `Σ w·x` over the non-NaN `x`, NaN if there are none; `f64`, rounded once.
fn weighted_nansum(terms: impl Iterator<Item = (f64, f64)>) -> f32 {
    let mut sum: Option<f64> = None;
    for (x, w) in terms.filter(|(x, _)| !x.is_nan()) {
        *sum.get_or_insert(0.0) += w * x;
    }
    sum.map_or(f32::NAN, |s| s as f32)
}

fn nan_moments(x: impl Iterator<Item = f32>) -> Moments {
    let mut m = Moments::EMPTY;
    x.filter(|v| !v.is_nan()).for_each(|v| m.push(v as f64, 1.0));
    m
}

/// `nanmean`: NaN without a non-NaN value.
fn nanmean(x: impl Iterator<Item = f32>) -> f64 {
    let m = nan_moments(x);
    if m.n == 0.0 {
        f64::NAN
    } else {
        m.mean
    }
}

/// TRL `nanstd`: unbiased, NaN with fewer than 2 non-NaN values.
fn nanstd(x: impl Iterator<Item = f32>) -> f64 {
    let m = nan_moments(x);
    if m.n < 2.0 {
        f64::NAN
    } else {
        m.std(StdKind::Unbiased)
    }
}
