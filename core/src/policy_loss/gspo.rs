//! GSPO and GSPO-token \[code\] (verl `compute_policy_loss_gspo`; spec `policy.md` §4.4).
//!
//! ```text
//! L_b         = max(Σ_t mask[b,t], 1)
//! ŝ_b         = Σ_t mask·(logp − old_logp) / L_b                (no clamp)
//! log s_{b,t} = min(logp_{b,t} − sg(logp_{b,t}) + sg(ŝ_b), C)    C = seq_log_ratio_cap (10 in verl)
//! s_b         = exp(min(ŝ_b, C))                                 (the value at every t)
//! ℓ_{b,t}     = max(−A_{b,t}·s_b, −A_{b,t}·clamp(s_b, 1 − ε_low, 1 + ε_high)) · w_is
//! ```
//!
//! Gradient \[derived\], following verl's stop-gradient structure exactly: the sequence ratio
//! enters every token only through `logp_{b,t} − sg(logp_{b,t})`, so
//! `∂ℓ_{b,t}/∂logp_{b,t} = −A_{b,t}·s_b·κ·w_is` and there is **no** gradient to the other
//! tokens of the row. `κ` is the PPO active indicator evaluated at `s_b` (no dual clip):
//! `A > 0: 1[s_b ≤ 1 + ε_high]`, `A < 0: 1[s_b ≥ 1 − ε_low]`, `A = 0: 0`, and `κ = 0` when
//! `ŝ_b > C` (the `min`'s gradient flows only to its first operand when it is `≤ C`).
//!
//! With a per-response `A` and [`GSPO_AGG_MODE`] (`seq-mean-token-mean`, which verl forces for
//! GSPO whatever mode is configured), each token receives `−A·s_b·κ/(L_b·N_seq)`: the
//! gradient of the pure sequence objective `max(−A s_b, −A clip(s_b))` with
//! `∂s_b/∂logp_t = s_b/L_b`. GSPO-token is the same kernel with `A` varying per token.
//!
//! `ŝ_b` is accumulated in `f64` along the row (each `Δ` formed in `f64`, masked positions
//! skipped by a select) and
//! rounded once to `f32` \[library choice; verl sums in `f32`\]. A NaN (or `inf − inf`) in any
//! valid token's `Δ` makes `ŝ_b` NaN, hence every valid `ℓ` and gradient of that row NaN (the
//! tokens are coupled, as in verl).
//!
//! Metrics (verl): `clipfrac` counts `1[l2 > l1]`, `ppo_kl` sums the unclamped `−Δ` of the
//! valid tokens; there is no dual clip.

use super::aggregation::AggMode;
use super::metrics::{PolicyStats, RowAcc};
use super::ratio::clamp;
use super::{check_backend, check_eps, LossOut, PolicyInputs};
use crate::error::TmError;
use crate::exp::exp_full;
use crate::platform::Exec;

/// The aggregation verl forces for GSPO (`seq-mean-token-mean`) \[code\].
pub const GSPO_AGG_MODE: AggMode = AggMode::SeqMeanTokenMean;

/// Hyper-parameters of [`gspo_loss`].
///
/// `Default` is verl's actor config (`actor.yaml`, `b178a3cd`): `clip_ratio_low =
/// clip_ratio_high = 0.2` — what `compute_policy_loss_gspo` uses when the clip ratios are
/// not overridden — and the cap `log s ≤ 10` of `compute_policy_loss_gspo` \[code\].
/// [`GspoCfg::verl_example`] is the setting of verl's `examples/gspo_trainer/*.sh`
/// (`3e-4`, `4e-4`) \[code\].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GspoCfg {
    /// `ε_low` (finite, `≥ 0`).
    pub eps_low: f32,
    /// `ε_high` (finite, `≥ 0`).
    pub eps_high: f32,
    /// Upper cap `C` on the sequence log-ratio (finite); `None` = no cap.
    pub seq_log_ratio_cap: Option<f32>,
}

impl Default for GspoCfg {
    fn default() -> Self {
        GspoCfg { eps_low: 0.2, eps_high: 0.2, seq_log_ratio_cap: Some(10.0) }
    }
}

impl GspoCfg {
    /// verl's GSPO example scripts: `clip_ratio_low = 3e-4`, `clip_ratio_high = 4e-4`, cap 10.
    pub fn verl_example() -> Self {
        GspoCfg { eps_low: 3e-4, eps_high: 4e-4, seq_log_ratio_cap: Some(10.0) }
    }
}

/// GSPO / GSPO-token loss, forward and gradient w.r.t. `logp` (stop-gradient structure of the
/// module docs). Aggregate the result with [`GSPO_AGG_MODE`] to reproduce verl.
///
/// Edge cases: a row without valid tokens writes zeros (its `ŝ_b = 0/1`); masked positions are
/// 0 and never enter `ŝ_b`; otherwise as in [`crate::policy_loss`].
///
/// Errors: [`TmError::LengthMismatch`]; [`TmError::InvalidArgument`] for `ε` negative or
/// non-finite, or a non-finite cap.
pub fn gspo_loss(exec: Exec, inp: &PolicyInputs<'_>, cfg: &GspoCfg, out: LossOut<'_>) -> Result<PolicyStats, TmError> {
    check_backend(exec)?;
    let n = inp.validate()?;
    out.validate(n)?;
    check_eps(cfg.eps_low, "eps_low must be finite and >= 0")?;
    check_eps(cfg.eps_high, "eps_high must be finite and >= 0")?;
    if cfg.seq_log_ratio_cap.is_some_and(|c| !c.is_finite()) {
        return Err(TmError::InvalidArgument("seq_log_ratio_cap must be finite"));
    }
    let cap = cfg.seq_log_ratio_cap.unwrap_or(f32::INFINITY);
    let (r_lo, r_hi) = (1.0 - cfg.eps_low, 1.0 + cfg.eps_high);
    let t = inp.shape.cols;
    let mut acc = RowAcc::default();
    if n == 0 {
        return Ok(acc.into_stats());
    }
    for b in 0..inp.shape.rows {
        let s = b * t..(b + 1) * t;
        let (lp, olp, adv, mask) =
            (&inp.logp[s.clone()], &inp.old_logp[s.clone()], &inp.adv[s.clone()], &inp.mask[s.clone()]);
        let w = inp.is_weights.map(|w| &w[s.clone()]);
        let (loss, grad) = (&mut out.loss[s.clone()], &mut out.dloss_dlogp[s]);
        let mut sum = 0.0f64;
        let mut len = 0u64;
        for j in 0..t {
            let valid = mask[j] != 0;
            let d = lp[j] as f64 - olp[j] as f64;
            sum += if valid { d } else { 0.0 };
            len += valid as u64;
        }
        let s_hat = (sum / len.max(1) as f64) as f32;
        let capped = if s_hat > cap { cap } else { s_hat };
        let cap_ok = s_hat <= cap;
        let sr = exp_full(capped);
        let s_clip = clamp(sr, r_lo, r_hi);
        let row_nan = s_hat.is_nan();
        for j in 0..t {
            let a = adv[j];
            let l1 = -a * sr;
            let l2 = -a * s_clip;
            let mut l = if l2 > l1 { l2 } else { l1 };
            let kappa = cap_ok && ((a > 0.0 && sr <= r_hi) || (a < 0.0 && sr >= r_lo));
            let mut g = if kappa { -a * sr } else { 0.0 };
            l = if a == 0.0 { 0.0 } else { l };
            let nan = row_nan || a.is_nan();
            l = if nan { f32::NAN } else { l };
            g = if nan { f32::NAN } else { g };
            let wj = w.map_or(1.0, |w| w[j]);
            let valid = mask[j] != 0;
            loss[j] = if valid { l * wj } else { 0.0 };
            grad[j] = if valid { g * wj } else { 0.0 };
            if valid {
                acc.valid += 1;
                let clipped = l2 > l1;
                acc.high += (clipped && a > 0.0) as u64;
                acc.low += (clipped && a < 0.0) as u64;
                acc.neg_dt -= (lp[j] - olp[j]) as f64;
            }
        }
    }
    Ok(acc.into_stats())
}
