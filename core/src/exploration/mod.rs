//! Global and episodic exploration bonuses: count bonuses, E3B's elliptical bonus, RND/NovelD
//! assembly, the combination modes and running reward normalisation.
//!
//! Spec: `token-rewards.md` §5. Sources: E3B (Henaff et al., arXiv 2210.05805) and the study
//! of global and episodic bonuses (Henaff et al., ICML 2023, arXiv 2306.03236), official code
//! `facebookresearch/e3b` (MiniHack torchbeast). Tags: **\[code\]** = reproduces that code,
//! **\[derived\]** = follows from the math, **\[library choice\]** = the library's decision
//! where the sources are silent.
//!
//! # The math
//!
//! ```text
//! counts.rs     global    b_g(s) = 1/sqrt(N_g(s))          (count after the increment, never reset)
//!               episodic  b_e(s) = 1[N_e(s) = 1]            (learner; the actor's 1/sqrt(N_e) is an option)
//!               both      b(s)   = b_e(s)·b_g(s)
//! e3b.rs        u = C⁻¹φ,  b = φᵀu,  C⁻¹ ← C⁻¹ − u·uᵀ/(1 + b)     (Sherman–Morrison, O(d²))
//!               C⁻¹ = (1/λ)·I at episode start; the first step of an episode reports 0
//! noveld.rs     e(s) = ‖f̂(s) − f(s)‖₂;   b_g = max(e(s_{t+1}) − α·e(s_t), 0)
//! combine.rs    Mult: b = b_e·b_g;   Add: b = b_e + κ·b_g
//! normalize.rs  running (count, sum, M2);  r_int ← r_int/std;  r = r_ext + η·r_int;  clamp(r, −1, 1)
//! ```
//!
//! State keys and feature encoders are the caller's: the library takes `u64` keys
//! ([`CountTable`]) and `f32` feature vectors ([`E3b`], [`rnd_error`]).
//!
//! # Shared edge-case policies
//!
//! | input | result |
//! |---|---|
//! | buffer lengths that do not match | [`TmError::LengthMismatch`], nothing written |
//! | NaN or ±inf feature, error or reward | [`TmError::NonFinite`], nothing written \[library choice\] |
//! | a hyper-parameter out of its domain (λ ≤ 0, α < 0, …) | [`TmError::InvalidArgument`] |
//! | empty batch | valid, nothing to write (E3B needs `d ≥ 1`) |
//!
//! Every output is written only when the call succeeds, and so is every piece of state
//! (the E3B inverse, the count table, the running moments).

mod combine;
mod counts;
mod e3b;
mod normalize;
mod noveld;

pub use combine::{combine_bonuses, Combine};
pub use counts::{count_bonus_episodic_indicator, count_bonus_global, count_bonuses, CountTable, EpisodicForm};
pub use e3b::{e3b_reset, e3b_step, e3b_step_batch, E3b, E3bCfg};
pub use normalize::{
    assemble_rewards, assemble_rewards_with, norm_batch_moments, AssembleCfg, MomentsCompat, RewardNorm, RunningMoments,
};
pub use noveld::{noveld_bonus, rnd_error};

use crate::TmError;

/// The first non-finite element of `x`, as [`TmError::NonFinite`].
pub(crate) fn check_finite(what: &'static str, x: &[f32]) -> Result<(), TmError> {
    match x.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(TmError::NonFinite { what, index }),
        None => Ok(()),
    }
}
