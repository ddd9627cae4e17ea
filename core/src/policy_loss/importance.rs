//! Truncated rollout importance weights (spec `policy.md` §4.8; Yao et al., *Your Efficient RL
//! Framework Secretly Brings You Off-Policy RL Training*).
//!
//! Training and inference engines give different probabilities for the same weights, so an
//! "on-policy" batch is slightly off-policy. The correction multiplies each token's loss by a
//! constant weight (`sg`) before aggregation — pass it as [`super::PolicyInputs::is_weights`]:
//!
//! ```text
//! Token:     w[b,t] = min(exp(old_logp[b,t] − rollout_logp[b,t]), C)
//! Sequence:  w[b,t] = min(exp(Σ_t' mask·(old_logp − rollout_logp)), C)   at every valid t of row b
//! ```
//!
//! The sequence sum is formed and accumulated in `f64` along the row and rounded once to `f32`; an
//! overflowing `exp` is `+inf` and truncated to `C`. Masked positions get weight 0 and never
//! enter the sum. A NaN in a valid position's log-probs gives NaN (the token, or every valid
//! token of the row for `Sequence`).

use super::{check_backend, BatchShape};
use crate::error::{check_len, TmError};
use crate::exp::exp_full;
use crate::platform::Exec;

/// Token- or sequence-level importance weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TisLevel {
    /// One weight per token.
    Token,
    /// One weight per response, from the summed log-ratio.
    Sequence,
}

/// Configuration of [`tis_weights`].
///
/// `Default`: token level, `C = 2` — the example cap of the truncated-IS write-up, chosen as
/// the default \[library choice\].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TisCfg {
    /// Level of the weight.
    pub level: TisLevel,
    /// Truncation cap `C` (`> 0`; `+inf` = no truncation).
    pub cap: f32,
}

impl Default for TisCfg {
    fn default() -> Self {
        TisCfg { level: TisLevel::Token, cap: 2.0 }
    }
}

/// Truncated importance weights into `out` (`B·T`, 0 at masked positions).
///
/// Errors: [`TmError::LengthMismatch`]; [`TmError::InvalidArgument`] for a cap that is NaN or
/// `≤ 0`.
pub fn tis_weights(
    exec: Exec,
    shape: BatchShape,
    mask: &[u8],
    old_logp: &[f32],
    rollout_logp: &[f32],
    cfg: &TisCfg,
    out: &mut [f32],
) -> Result<(), TmError> {
    check_backend(exec)?;
    let n = shape.numel()?;
    check_len("old_logp", n, old_logp.len())?;
    check_len("rollout_logp", n, rollout_logp.len())?;
    check_len("mask", n, mask.len())?;
    check_len("out", n, out.len())?;
    if cfg.cap.is_nan() || cfg.cap <= 0.0 {
        return Err(TmError::InvalidArgument("TIS cap must be > 0"));
    }
    let cap = cfg.cap;
    let trunc = |e: f32| if e > cap { cap } else { e };
    match cfg.level {
        TisLevel::Token => {
            for j in 0..n {
                let w = trunc(exp_full(old_logp[j] - rollout_logp[j]));
                out[j] = if mask[j] != 0 { w } else { 0.0 };
            }
        }
        TisLevel::Sequence => {
            let t = shape.cols;
            for b in 0..shape.rows {
                let s = b * t..(b + 1) * t;
                let mut sum = 0.0f64;
                for j in s.clone() {
                    let d = old_logp[j] as f64 - rollout_logp[j] as f64;
                    sum += if mask[j] != 0 { d } else { 0.0 };
                }
                let w = trunc(exp_full(sum as f32));
                for j in s {
                    out[j] = if mask[j] != 0 { w } else { 0.0 };
                }
            }
        }
    }
    Ok(())
}
