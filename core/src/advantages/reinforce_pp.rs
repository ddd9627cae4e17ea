//! REINFORCE++ and REINFORCE++-baseline (`policy.md` §3.5–3.6).

use super::grpo::scorable_moments;
use super::masked::{check_whiten_support, whiten_inplace};
use super::returns::{check_returns_args, returns_to_go};
use super::{check_bt, check_rewards, Compat, Groups, NanPolicy, SingletonPolicy};
use crate::error::{check_len, TmError};

/// verl's whitening epsilon (`masked_whiten(..., shift_mean=True)`, `rsqrt(var + 1e-8)`).
const WHITEN_EPS: f32 = 1e-8;

/// REINFORCE++ \[code\] (verl `compute_reinforce_plus_plus_outcome_advantage`):
/// `ret = G` from [`returns_to_go`] (unmasked, as verl returns it), and
/// `adv = masked_whiten(G, mask)` over **all valid tokens of the batch** (unbiased variance,
/// `rsqrt(var + 1e-8)`), 0 at padding.
///
/// `compat` picks the whitening semantics: [`Compat::Library`] (default; fewer than 2 valid
/// tokens give all-zero advantages) or [`Compat::Verl`] (an error for fewer than 2 valid
/// tokens, as verl raises; checked before anything is written). Other errors as
/// [`returns_to_go`].
pub fn reinforce_pp_advantage(
    r: &[f32],
    mask: &[u8],
    t: usize,
    gamma: f32,
    compat: Compat,
    adv: &mut [f32],
    ret: &mut [f32],
) -> Result<(), TmError> {
    check_returns_args(r, mask, t, gamma, ret)?;
    check_len("adv", ret.len(), adv.len())?;
    check_whiten_support(mask, compat)?;
    returns_to_go(r, mask, t, gamma, ret)?;
    // A padding return may be NaN (NaN padding reward); it never reaches the statistics.
    adv.copy_from_slice(ret);
    whiten_inplace(adv, mask, WHITEN_EPS, compat)?;
    zero_padding(adv, mask);
    Ok(())
}

/// REINFORCE++-baseline \[code\] (verl
/// `compute_reinforce_plus_plus_baseline_outcome_advantage`): `A_b = R_b − μ_g`, tiled over
/// the valid tokens of row `b`, then whitened over all valid tokens of the batch and zeroed
/// at padding. The whitening is token-weighted: longer responses weigh more in the batch
/// mean and variance.
///
/// `rewards` are per-response (`[B]`; see [`super::sequence_rewards`] for token rewards),
/// `mask`/`out` are `[B, t]`. `singleton` is what a group of one gets before whitening:
/// verl uses `μ_g = 0` ([`SingletonPolicy::MeanZeroStdOne`], `A = R`); the library default
/// [`SingletonPolicy::Zero`] gives `A = 0`. `compat` as in [`reinforce_pp_advantage`].
/// Rewards must be finite ([`TmError::NonFinite`]).
pub fn reinforce_pp_baseline_advantage(
    rewards: &[f32],
    groups: Groups<'_>,
    mask: &[u8],
    t: usize,
    singleton: SingletonPolicy,
    compat: Compat,
    out: &mut [f32],
) -> Result<(), TmError> {
    let rows = rewards.len();
    groups.validate(rows)?;
    check_bt("mask", rows, t, mask.len())?;
    check_bt("out", rows, t, out.len())?;
    check_rewards("rewards", rewards, NanPolicy::Error)?;
    check_whiten_support(mask, compat)?;
    if t == 0 {
        return Ok(());
    }
    for members in groups.iter(rows) {
        let m = scorable_moments(rewards, members.clone());
        for b in members {
            let a = match (m.n < 2.0, singleton) {
                (true, SingletonPolicy::Zero) => 0.0,
                (true, SingletonPolicy::MeanZeroStdOne) => rewards[b],
                (false, _) => (rewards[b] as f64 - m.mean) as f32,
            };
            let row = b * t..(b + 1) * t;
            for (o, &keep) in out[row.clone()].iter_mut().zip(&mask[row]) {
                *o = if keep != 0 { a } else { 0.0 };
            }
        }
    }
    whiten_inplace(out, mask, WHITEN_EPS, compat)?;
    zero_padding(out, mask);
    Ok(())
}

fn zero_padding(x: &mut [f32], mask: &[u8]) {
    for (v, &m) in x.iter_mut().zip(mask) {
        if m == 0 {
            *v = 0.0;
        }
    }
}
