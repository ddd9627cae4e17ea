//! RLOO (leave-one-out baseline) advantages (`policy.md` §3.3).

use super::grpo::scorable_moments;
use super::{check_rewards, Groups, Moments, NanPolicy, StdKind};
use crate::error::{check_len, TmError};

/// Which implementation's RLOO conventions to follow. All compute
/// `A_b = R_b − mean_{j∈I_g, j≠b} R_j`, which equals `n/(n − 1)·(R_b − μ_g)` \[derived\]; they
/// differ in the arithmetic form and in what a singleton group gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RlooFlavor {
    /// `n/(n − 1)·(R_b − μ_g)` with Welford `μ_g` (a group of equal rewards gives exactly
    /// 0); a singleton gets 0. The library default \[library choice\].
    #[default]
    Standard,
    /// verl `compute_rloo_outcome_advantage` \[code\]: `R·n/(n−1) − μ·n/(n−1)`; a singleton
    /// keeps `A = R` (the score is left unchanged).
    VerlLoop,
    /// verl `compute_rloo_vectorized_outcome_advantage` \[code\]:
    /// `((c·R − Σ_g R)/max(c − 1, 1))·1[c > 1]`, `c = n_g`: a singleton gets 0.
    VerlVectorized,
    /// TRL `rloo_trainer.py` \[code\]: contiguous groups of `G ≥ 2`,
    /// baseline `(Σ_g R − R_b)/(G − 1)`, `A = R − baseline`; with `normalize`, the batch's
    /// advantages (as `f32`, like TRL's tensor) are then mapped to
    /// `(A − mean)/(std_unbiased + 1e-4)`. TRL's optional KL-in-reward term is not applied
    /// here: subtract it from the rewards first.
    Trl {
        /// TRL `normalize_advantages` (TRL default `false`).
        normalize: bool,
    },
}

/// RLOO advantages, one per response.
///
/// Rewards must be finite ([`TmError::NonFinite`]; RLOO has no unscorable-row
/// convention in the sources we follow). [`RlooFlavor::Trl`] needs [`Groups::Contiguous`]
/// with `size ≥ 2` ([`TmError::InvalidArgument`] otherwise, as TRL refuses
/// `num_generations < 2`).
pub fn rloo_advantage(rewards: &[f32], groups: Groups<'_>, flavor: RlooFlavor, out: &mut [f32]) -> Result<(), TmError> {
    let rows = rewards.len();
    check_len("out", rows, out.len())?;
    groups.validate(rows)?;
    if let RlooFlavor::Trl { .. } = flavor {
        if !matches!(groups, Groups::Contiguous { size } if size >= 2) {
            return Err(TmError::InvalidArgument("RlooFlavor::Trl needs Groups::Contiguous with size >= 2"));
        }
    }
    check_rewards("rewards", rewards, NanPolicy::Error)?;

    for members in groups.iter(rows) {
        let m = scorable_moments(rewards, members.clone());
        let sum: f64 = members.clone().map(|b| rewards[b] as f64).sum();
        let (n, c) = (m.n, m.n / (m.n - 1.0));
        for b in members {
            let r = rewards[b] as f64;
            let a = match flavor {
                // A singleton: verl's loop leaves the score unchanged; every other form gives 0.
                RlooFlavor::VerlLoop if n < 2.0 => r,
                _ if n < 2.0 => 0.0,
                // Welford μ equals R exactly in a group of equal rewards, so this is exactly 0.
                RlooFlavor::Standard => (r - m.mean) * c,
                RlooFlavor::VerlLoop => r * c - m.mean * c,
                RlooFlavor::VerlVectorized => (n * r - sum) / (n - 1.0),
                RlooFlavor::Trl { .. } => r - (sum - r) / (n - 1.0),
            };
            out[b] = a as f32;
        }
    }

    if let RlooFlavor::Trl { normalize: true } = flavor {
        let mut m = Moments::EMPTY;
        for &a in out.iter() {
            m.push(a as f64, 1.0);
        }
        let denom = m.std(StdKind::Unbiased) + 1e-4;
        for a in out.iter_mut() {
            *a = ((*a as f64 - m.mean) / denom) as f32;
        }
    }
    Ok(())
}
