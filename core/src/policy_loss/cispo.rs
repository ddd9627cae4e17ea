//! CISPO: a clipped, stop-gradient importance weight on a REINFORCE-style term \[code\]
//! (verl `compute_policy_loss_cispo`, TRL `loss_type="cispo"`; spec `policy.md` §4.5).
//!
//! ```text
//! r = exp(clamp(Δ, −C, C))                   C = log_ratio_clamp (verl 20; TRL none)
//! w = clamp(r, w_min, w_max)                 absent bounds do not clip
//! ℓ = −sg(w)·A·logp · w_is,      ∂ℓ/∂logp = −w·A·w_is
//! ```
//!
//! The two references give `ε_high` different meanings (verl: a width, `w ≤ 1 + ε_high`; TRL:
//! an absolute cap, `w ≤ ε_high`), so the library takes absolute bounds with the presets
//! [`CispoCfg::verl`] and [`CispoCfg::trl`] \[library choice\]. The per-token value of `ℓ`
//! depends on `logp` itself and is only meaningful as a gradient carrier.
//!
//! Metrics: `clipfrac` counts `1[r ≠ w]` (verl), split into `clipped_high` (`r > w_max`) and
//! `clipped_low` (`r < w_min`); `ppo_kl` sums `−Δ̃`. The gradient does not depend on `κ`: every
//! token keeps its gradient (that is CISPO's point).

use super::metrics::{PolicyStats, RowAcc};
use super::ratio::{clamp, clamp_bounds};
use super::{check_backend, check_log_ratio_clamp, LossOut, PolicyInputs};
use crate::error::TmError;
use crate::exp::exp_full;
use crate::platform::Exec;

/// Hyper-parameters of [`cispo_loss`].
///
/// `Default` is `CispoCfg::verl(0.2, 0.2)`: verl's formula \[code\] with the actor config's
/// default clip ratios (`actor.yaml`, `b178a3cd`). MiniMax-M1 tunes only the upper bound
/// (a large `ε_low`); pass it explicitly.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CispoCfg {
    /// Lower bound of the weight (finite); `None` = no lower bound.
    pub w_min: Option<f32>,
    /// Upper bound of the weight (finite, `≥ w_min`); `None` = no upper bound.
    pub w_max: Option<f32>,
    /// Clamp `|Δ| ≤ C` before `exp` (finite, `> 0`); `None` = no clamp.
    pub log_ratio_clamp: Option<f32>,
}

impl Default for CispoCfg {
    fn default() -> Self {
        CispoCfg::verl(0.2, 0.2)
    }
}

impl CispoCfg {
    /// verl: `w = clamp(exp(clamp(Δ, ±20)), 1 − ε_low, 1 + ε_high)` \[code\].
    pub fn verl(eps_low: f32, eps_high: f32) -> Self {
        CispoCfg { w_min: Some(1.0 - eps_low), w_max: Some(1.0 + eps_high), log_ratio_clamp: Some(20.0) }
    }

    /// TRL: `w = min(exp(Δ), cap)`, no log-ratio clamp \[code\]; TRL's docs suggest `cap = 5.0`.
    pub fn trl(cap: f32) -> Self {
        CispoCfg { w_min: None, w_max: Some(cap), log_ratio_clamp: None }
    }

    fn validate(&self) -> Result<(), TmError> {
        if self.w_min.is_some_and(|v| !v.is_finite()) || self.w_max.is_some_and(|v| !v.is_finite()) {
            return Err(TmError::InvalidArgument("CISPO weight bounds must be finite"));
        }
        if let (Some(lo), Some(hi)) = (self.w_min, self.w_max) {
            if lo > hi {
                return Err(TmError::InvalidArgument("CISPO w_min must be <= w_max"));
            }
        }
        check_log_ratio_clamp(self.log_ratio_clamp)
    }
}

/// CISPO loss, forward and gradient w.r.t. `logp` (module docs). Edge cases as in
/// [`crate::policy_loss`]; a valid `logp = −inf` gives `ℓ = ±inf` (with a finite gradient).
///
/// Errors: [`TmError::LengthMismatch`]; [`TmError::InvalidArgument`] for non-finite bounds,
/// `w_min > w_max`, or a clamp `≤ 0`.
pub fn cispo_loss(
    exec: Exec,
    inp: &PolicyInputs<'_>,
    cfg: &CispoCfg,
    out: LossOut<'_>,
) -> Result<PolicyStats, TmError> {
    check_backend(exec)?;
    let n = inp.validate()?;
    out.validate(n)?;
    cfg.validate()?;
    let (lo, hi) = clamp_bounds(cfg.log_ratio_clamp);
    let w_lo = cfg.w_min.unwrap_or(f32::NEG_INFINITY);
    let w_hi = cfg.w_max.unwrap_or(f32::INFINITY);
    let mut acc = RowAcc::default();
    for j in 0..n {
        let (lp, a) = (inp.logp[j], inp.adv[j]);
        let dt = clamp(lp - inp.old_logp[j], lo, hi);
        let r = exp_full(dt);
        let w = clamp(r, w_lo, w_hi);
        let mut l = -w * a * lp;
        let mut g = -w * a;
        l = if a == 0.0 { 0.0 } else { l };
        g = if a == 0.0 { 0.0 } else { g };
        let nan = dt.is_nan() || a.is_nan() || lp.is_nan();
        l = if nan { f32::NAN } else { l };
        g = if nan { f32::NAN } else { g };
        let wis = inp.is_weights.map_or(1.0, |w| w[j]);
        let valid = inp.mask[j] != 0;
        out.loss[j] = if valid { l * wis } else { 0.0 };
        out.dloss_dlogp[j] = if valid { g * wis } else { 0.0 };
        if valid {
            acc.valid += 1;
            acc.high += (r > w_hi) as u64;
            acc.low += (r < w_lo) as u64;
            acc.neg_dt -= dt as f64;
        }
    }
    Ok(acc.into_stats())
}
