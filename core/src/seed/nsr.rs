//! PSR, NSR and W-REINFORCE: positive- and negative-sample reinforcement \[code\]
//! (`TianHongZXY/RLVR-Decomposed`, `verl/trainer/ppo/core_algos.py::compute_psr_nsr_outcome_advantage`
//! and `ray_trainer.py`; \[paper\] Zhu et al., *The Surprising Effectiveness of Negative
//! Reinforcement in LLM Reasoning*, arXiv 2506.01347; spec `policy.md` §7.5).
//!
//! ```text
//! G          = returns-to-go of the token rewards (verl's recurrence, discount γ, f64 carry)
//! s_b        = Σ_t mask[b,t]·score[b,t]          correct_b = (s_b == 1), incorrect_b = (s_b == 0)
//! PSR:         A = G,            keep only the correct rows
//! NSR:         A = G − 1,        keep only the incorrect rows   (= −1 with binary rewards)
//! W-REINFORCE: A = λ·G on correct rows, G − 1 on incorrect rows, G elsewhere; keep every row
//! A ← A·mask
//! ```
//!
//! `λ` is `positive_advantage_weight`, 0.1 recommended \[paper\]. The loss is the standard
//! clipped PPO loss ([`crate::policy_loss::ppo_clip_loss`]) on the kept rows: PSR and NSR
//! remove the other rows from the batch, and so from every loss normaliser — the caller
//! subsets by `keep_rows` (the reference then drops rows to make the batch divisible by the
//! world size; that is the trainer's business).
//!
//! \[library choice\] details: `s_b` sums the valid positions only (verl sums the whole row,
//! whose padding scores are 0; padding is never read here); the advantage of a dropped row is
//! written as 0; `A` is computed in `f64` from the `f64` return and rounded once.
//! Errors: non-finite rewards or scores at valid positions are [`TmError::NonFinite`].

use crate::error::{check_len, TmError};
use crate::platform::Exec;
use crate::policy_loss::BatchShape;

/// Which samples are reinforced.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NsrMode {
    /// Positive-sample reinforcement: correct rows only, `A = G`.
    Psr,
    /// Negative-sample reinforcement: incorrect rows only, `A = G − 1`.
    Nsr,
    /// W-REINFORCE: every row; correct rows are weighted by `lambda` (finite;
    /// `positive_advantage_weight`, 0.1 recommended).
    Weighted {
        /// `λ`.
        lambda: f32,
    },
}

/// Options of [`nsr_advantage`]. `Default`: W-REINFORCE with `λ = 0.1` \[paper\], `γ = 1`
/// (verl's REINFORCE++ default).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NsrCfg {
    /// The mode.
    pub mode: NsrMode,
    /// The discount `γ` of the returns, finite and `≥ 0`.
    pub gamma: f32,
}

impl Default for NsrCfg {
    fn default() -> Self {
        NsrCfg { mode: NsrMode::Weighted { lambda: 0.1 }, gamma: 1.0 }
    }
}

/// The outputs of [`nsr_advantage`].
#[derive(Debug)]
pub struct NsrOut<'a> {
    /// `[B]`: 1 = the row stays in the batch.
    pub keep_rows: &'a mut [u8],
    /// `[B,T]` advantages (0 at padding and on dropped rows).
    pub adv: &'a mut [f32],
}

/// PSR/NSR/W-REINFORCE advantages (module docs): `adv[b,t]` (0 at padding and on dropped
/// rows) and `keep_rows[b]` (1 = the row stays in the batch).
///
/// Errors: lengths; [`TmError::InvalidArgument`] for `γ` or `λ` not finite (or `γ < 0`);
/// [`TmError::NonFinite`] for a non-finite reward or score at a valid position. Nothing is
/// written on error.
pub fn nsr_advantage(
    exec: Exec,
    shape: BatchShape,
    mask: &[u8],
    token_rewards: &[f32],
    scores: &[f32],
    cfg: &NsrCfg,
    out: NsrOut<'_>,
) -> Result<(), TmError> {
    let NsrOut { keep_rows, adv } = out;
    if !exec.backend().is_supported() {
        return Err(TmError::BackendUnavailable);
    }
    let n = shape.numel()?;
    check_len("mask", n, mask.len())?;
    check_len("token_rewards", n, token_rewards.len())?;
    check_len("scores", n, scores.len())?;
    check_len("keep_rows", shape.rows, keep_rows.len())?;
    check_len("adv", n, adv.len())?;
    if !(cfg.gamma.is_finite() && cfg.gamma >= 0.0) {
        return Err(TmError::InvalidArgument("gamma must be finite and >= 0"));
    }
    if let NsrMode::Weighted { lambda } = cfg.mode {
        if !lambda.is_finite() {
            return Err(TmError::InvalidArgument("W-REINFORCE lambda must be finite"));
        }
    }
    for (what, x) in [("token_rewards", token_rewards), ("scores", scores)] {
        if let Some(index) = x.iter().zip(mask).position(|(v, &m)| m != 0 && !v.is_finite()) {
            return Err(TmError::NonFinite { what, index });
        }
    }
    let (t, gamma) = (shape.cols, cfg.gamma as f64);
    for (b, keep) in keep_rows.iter_mut().enumerate() {
        let row = b * t..(b + 1) * t;
        let (m, r, s, a) = (&mask[row.clone()], &token_rewards[row.clone()], &scores[row.clone()], &mut adv[row]);
        let score: f64 = s.iter().zip(m).map(|(&v, &m)| if m != 0 { v as f64 } else { 0.0 }).sum();
        let (correct, incorrect) = (score == 1.0, score == 0.0);
        // A = scale·G + shift on this row.
        let (kept, scale, shift) = match cfg.mode {
            NsrMode::Psr => (correct, 1.0, 0.0),
            NsrMode::Nsr => (incorrect, 1.0, -1.0),
            NsrMode::Weighted { lambda } if correct => (true, lambda as f64, 0.0),
            NsrMode::Weighted { .. } if incorrect => (true, 1.0, -1.0),
            NsrMode::Weighted { .. } => (true, 1.0, 0.0),
        };
        *keep = kept as u8;
        let mut carry = 0.0f64;
        for k in (0..t).rev() {
            let valid = m[k] != 0;
            // verl: G_t = r_t + γ·carry, carry reset at masked positions; padding rewards
            // are not read (they would only reach the padding's own, zeroed, output).
            let g = if valid { r[k] as f64 + gamma * carry } else { 0.0 };
            carry = g;
            a[k] = if valid && kept { (scale * g + shift) as f32 } else { 0.0 };
        }
    }
    Ok(())
}
