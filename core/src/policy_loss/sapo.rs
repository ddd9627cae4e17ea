//! SAPO: a soft, sigmoid-gated trust region \[code\] (verl `compute_policy_loss_sapo`; TRL
//! `loss_type="sapo"`; spec `policy.md` §4.6).
//!
//! ```text
//! r    = exp(clamp(Δ, −C, C))               C = log_ratio_clamp (verl 20; TRL none)
//! τ    = A > 0 ? τ_pos : τ_neg
//! gate = σ(τ·(r − 1))·4/τ
//! ℓ    = −gate·A · w_is
//! ∂ℓ/∂logp = −4·A·r·σ(τ(r−1))·(1 − σ(τ(r−1))) · w_is          (0 when |Δ| > C)
//! ```
//!
//! At `r = 1` the gradient is exactly `−A` (vanilla policy gradient); it decays smoothly as `r`
//! moves away. `1 − σ(x)` is computed as `σ(−x)` (no cancellation); when it underflows to 0
//! the gradient is 0 (also for `r = +inf` without a clamp, where `r·0` would be NaN).
//! There is no hard clip: the clip counts of the returned metrics are 0; `ppo_kl` sums `−Δ̃`.
//! verl forces [`SAPO_AGG_MODE`] (`seq-mean-token-mean`) for SAPO \[code\].

use super::aggregation::AggMode;
use super::metrics::{PolicyStats, RowAcc};
use super::ratio::{clamp, clamp_bounds};
use super::{check_backend, check_log_ratio_clamp, LossOut, PolicyInputs};
use crate::error::TmError;
use crate::exp::exp_full;
use crate::platform::Exec;

/// The aggregation verl forces for SAPO (`seq-mean-token-mean`) \[code\].
pub const SAPO_AGG_MODE: AggMode = AggMode::SeqMeanTokenMean;

/// Hyper-parameters of [`sapo_loss`].
///
/// `Default` is verl's \[code\] (`b178a3cd`): `τ_pos = 1.0`, `τ_neg = 1.05`, `±20` log-ratio
/// clamp. [`SapoCfg::trl`] drops the clamp (TRL).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SapoCfg {
    /// Temperature for `A > 0` (finite, `> 0`).
    pub tau_pos: f32,
    /// Temperature for `A ≤ 0` (finite, `> 0`).
    pub tau_neg: f32,
    /// Clamp `|Δ| ≤ C` before `exp` (finite, `> 0`); `None` = no clamp.
    pub log_ratio_clamp: Option<f32>,
}

impl Default for SapoCfg {
    fn default() -> Self {
        SapoCfg { tau_pos: 1.0, tau_neg: 1.05, log_ratio_clamp: Some(20.0) }
    }
}

impl SapoCfg {
    /// TRL \[code\]: the same temperatures, no log-ratio clamp.
    pub fn trl() -> Self {
        SapoCfg { log_ratio_clamp: None, ..SapoCfg::default() }
    }
}

/// SAPO loss, forward and gradient w.r.t. `logp` (module docs). Edge cases as in
/// [`crate::policy_loss`].
///
/// Errors: [`TmError::LengthMismatch`]; [`TmError::InvalidArgument`] for a temperature that
/// is not finite and `> 0`, or a clamp `≤ 0`.
pub fn sapo_loss(exec: Exec, inp: &PolicyInputs<'_>, cfg: &SapoCfg, out: LossOut<'_>) -> Result<PolicyStats, TmError> {
    check_backend(exec)?;
    let n = inp.validate()?;
    out.validate(n)?;
    let ok = |t: f32| t.is_finite() && t > 0.0;
    if !ok(cfg.tau_pos) || !ok(cfg.tau_neg) {
        return Err(TmError::InvalidArgument("SAPO temperatures must be finite and > 0"));
    }
    check_log_ratio_clamp(cfg.log_ratio_clamp)?;
    let (lo, hi) = clamp_bounds(cfg.log_ratio_clamp);
    let mut acc = RowAcc::default();
    for j in 0..n {
        let a = inp.adv[j];
        let d = inp.logp[j] - inp.old_logp[j];
        let dt = clamp(d, lo, hi);
        let in_range = d >= lo && d <= hi;
        let r = exp_full(dt);
        let tau = if a > 0.0 { cfg.tau_pos } else { cfg.tau_neg };
        let x = tau * (r - 1.0);
        let sig = 1.0 / (1.0 + exp_full(-x));
        let sig_neg = 1.0 / (1.0 + exp_full(x));
        let gate = sig * (4.0 / tau);
        let mut l = -gate * a;
        let mut g = if in_range && sig_neg > 0.0 { -4.0 * a * r * sig * sig_neg } else { 0.0 };
        l = if a == 0.0 { 0.0 } else { l };
        g = if a == 0.0 { 0.0 } else { g };
        let nan = dt.is_nan() || a.is_nan();
        l = if nan { f32::NAN } else { l };
        g = if nan { f32::NAN } else { g };
        let wis = inp.is_weights.map_or(1.0, |w| w[j]);
        let valid = inp.mask[j] != 0;
        out.loss[j] = if valid { l * wis } else { 0.0 };
        out.dloss_dlogp[j] = if valid { g * wis } else { 0.0 };
        if valid {
            acc.valid += 1;
            acc.neg_dt -= dt as f64;
        }
    }
    Ok(acc.into_stats())
}
