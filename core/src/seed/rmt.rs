//! RMT, reinforcement mid-training (arXiv 2509.24375; spec `policy.md` §7.6): a dynamic token
//! budget, a triangular length reward, entropy-curriculum sampling of the positions to
//! reason about, and the RL + next-token-prediction dual objective. The equations are the
//! paper's \[paper\]; no official code was available. Token difficulty is the token's entropy
//! under the model.
//!
//! ```text
//! budget        B_t = max(B_min, ⌊B_0·γ^{t/T_total}⌋)            B_0 = 800, B_min = 1, γ = 0.2
//! length reward r_len(ℓ; B) = r_max·ℓ/B (ℓ ≤ B),  r_max·(2B − ℓ)/B (B < ℓ ≤ 2B),  0 (ℓ > 2B)
//! curriculum    p_t = p_{t1} (t < t1),  (1 − τ)p_{t1} + τ p_{t2} (t1 ≤ t < t2, τ = (t − t1)/(t2 − t1)),  p_{t2} (t ≥ t2)
//!               t1 = 0.3·T_total, t2 = 0.7·T_total; tier d ~ Categorical(p_t), then a token uniformly within d
//! reward        r^i = (1 − w)·1[predicted == true token] + w·r^i_len
//! objective     L = L_RL + λ·L_NTP,  L_NTP = −mean_{pos ∉ C, valid} log p(τ_pos | τ_<pos),  λ = 0.1
//! ```
//!
//! \[library choice\] where the paper is silent or ambiguous (each the spec's):
//! * the budget's exponent is `t/T_total` (one rendering reads `t/T^k`); computed in `f64`;
//! * `r_max = 1`; the reward weight `w = 0.1`;
//! * tiers are entropy terciles — linear quantiles (`torch.quantile`) at 1/3 and 2/3 of the
//!   candidate tokens' entropies ([`super::linear_quantile`]); `easy` is below the first,
//!   `hard` at or above the second; `p_{t1} = (0.6, 0.3, 0.1)`, `p_{t2} = (0.1, 0.3, 0.6)`;
//!   an empty tier's probability goes to the non-empty tiers in proportion to theirs;
//! * `L_NTP` is a token mean over the valid positions outside `C` (written as a sum in the
//!   paper), 0 when there are none.
//!
//! The GRPO advantages of the `G = 8` responses per position come from
//! `crate::advantages::grpo_advantage` on [`rmt_combined_reward`]; the RL loss is the clipped
//! GRPO loss of `crate::policy_loss`.

use super::entropy_mask::linear_quantile;
use crate::error::{check_len, TmError};
use crate::platform::{isa_dispatch, Exec};
use crate::policy_loss::metrics::LANES;
use crate::policy_loss::BatchShape;

/// `B_t = max(B_min, ⌊B_0·γ^{step/total}⌋)` (module docs).
///
/// Errors: [`TmError::InvalidArgument`] for `total = 0` or `γ` not finite and `> 0`.
pub fn rmt_token_budget(step: u64, total: u64, b0: u32, b_min: u32, gamma: f32) -> Result<u32, TmError> {
    if total == 0 {
        return Err(TmError::InvalidArgument("RMT total steps must be > 0"));
    }
    if !(gamma.is_finite() && gamma > 0.0) {
        return Err(TmError::InvalidArgument("RMT budget decay gamma must be finite and > 0"));
    }
    let b = libm::floor(b0 as f64 * libm::pow(gamma as f64, step as f64 / total as f64));
    // `as` saturates: a γ > 1 growing past u32::MAX stays at u32::MAX.
    Ok((b as u32).max(b_min))
}

/// The triangular length reward `r_len(len; budget)` (module docs), computed in `f64`.
///
/// Errors: [`TmError::InvalidArgument`] for `budget = 0` or `r_max` not finite.
pub fn rmt_length_reward(len: u32, budget: u32, r_max: f32) -> Result<f32, TmError> {
    if budget == 0 {
        return Err(TmError::InvalidArgument("RMT token budget must be >= 1"));
    }
    if !r_max.is_finite() {
        return Err(TmError::InvalidArgument("RMT r_max must be finite"));
    }
    let (l, b, r) = (len as f64, budget as f64, r_max as f64);
    let v = if l <= b {
        r * l / b
    } else if l <= 2.0 * b {
        r * (2.0 * b - l) / b
    } else {
        0.0
    };
    Ok(v as f32)
}

/// The curriculum of [`rmt_curriculum_probs`]. `Default`: the library's choice
/// (`t1 = 0.3`, `t2 = 0.7` of training, `p_{t1} = (0.6, 0.3, 0.1)`, `p_{t2} = (0.1, 0.3, 0.6)`
/// over easy, medium, hard).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RmtCurriculum {
    /// `t1` as a fraction of the training steps.
    pub t1_frac: f32,
    /// `t2` as a fraction of the training steps (`≥ t1_frac`).
    pub t2_frac: f32,
    /// Tier probabilities (easy, medium, hard) before `t1`.
    pub p1: [f32; 3],
    /// Tier probabilities after `t2`.
    pub p2: [f32; 3],
}

impl Default for RmtCurriculum {
    fn default() -> Self {
        RmtCurriculum { t1_frac: 0.3, t2_frac: 0.7, p1: [0.6, 0.3, 0.1], p2: [0.1, 0.3, 0.6] }
    }
}

fn check_probs(p: &[f32; 3]) -> Result<(), TmError> {
    if p.iter().all(|v| v.is_finite() && *v >= 0.0) && p.iter().any(|&v| v > 0.0) {
        Ok(())
    } else {
        Err(TmError::InvalidArgument("tier probabilities must be finite, >= 0, not all 0"))
    }
}

/// The tier distribution `p_t` at `step` of `total` (module docs), interpolated in `f64`.
///
/// Errors: [`TmError::InvalidArgument`] for `total = 0`, fractions outside
/// `0 ≤ t1 ≤ t2 ≤ 1`, or probabilities that are negative, not finite or all 0.
pub fn rmt_curriculum_probs(step: u64, total: u64, c: &RmtCurriculum) -> Result<[f32; 3], TmError> {
    if total == 0 {
        return Err(TmError::InvalidArgument("RMT total steps must be > 0"));
    }
    if !(0.0 <= c.t1_frac && c.t1_frac <= c.t2_frac && c.t2_frac <= 1.0) {
        return Err(TmError::InvalidArgument("RMT curriculum needs 0 <= t1 <= t2 <= 1"));
    }
    check_probs(&c.p1)?;
    check_probs(&c.p2)?;
    let (t, t1, t2) = (step as f64, c.t1_frac as f64 * total as f64, c.t2_frac as f64 * total as f64);
    if t < t1 {
        return Ok(c.p1);
    }
    if t >= t2 {
        return Ok(c.p2);
    }
    let tau = (t - t1) / (t2 - t1);
    let mut p = [0.0f32; 3];
    for (k, o) in p.iter_mut().enumerate() {
        *o = ((1.0 - tau) * c.p1[k] as f64 + tau * c.p2[k] as f64) as f32;
    }
    Ok(p)
}

/// Tier of a token in [`entropy_tiers`]: not a candidate (padding).
pub const TIER_NONE: u8 = 0;
/// Tier: easy (entropy below the first tercile).
pub const TIER_EASY: u8 = 1;
/// Tier: medium.
pub const TIER_MEDIUM: u8 = 2;
/// Tier: hard (entropy at or above the second tercile).
pub const TIER_HARD: u8 = 3;

/// Buckets the candidate tokens (`mask ≠ 0`) by entropy: `out[j]` is [`TIER_EASY`] for
/// `H < θ1`, [`TIER_MEDIUM`] for `θ1 ≤ H < θ2`, [`TIER_HARD`] for `H ≥ θ2`, [`TIER_NONE`] at
/// padding, with `θ1, θ2` the linear quantiles at `q1`, `q2` of the candidates' entropies
/// (the library's terciles: `q1 = 1/3`, `q2 = 2/3`). Returns `(θ1, θ2)` (`None` without
/// candidates).
///
/// Errors: lengths; [`TmError::InvalidArgument`] unless `0 ≤ q1 ≤ q2 ≤ 1`;
/// [`TmError::NonFinite`] for a NaN/`±inf` candidate entropy. `out` is written only on
/// success.
pub fn entropy_tiers(
    exec: Exec,
    shape: BatchShape,
    mask: &[u8],
    entropy: &[f32],
    q: (f64, f64),
    out: &mut [u8],
) -> Result<Option<(f32, f32)>, TmError> {
    check_len("out", shape.numel()?, out.len())?;
    if !(0.0 <= q.0 && q.0 <= q.1 && q.1 <= 1.0) {
        return Err(TmError::InvalidArgument("entropy tiers need 0 <= q1 <= q2 <= 1"));
    }
    let t1 = linear_quantile(exec, shape, mask, entropy, q.0)?;
    let t2 = linear_quantile(exec, shape, mask, entropy, q.1)?;
    let (Some(t1), Some(t2)) = (t1, t2) else {
        out.fill(TIER_NONE);
        return Ok(None);
    };
    for ((o, &m), &h) in out.iter_mut().zip(mask).zip(entropy) {
        *o = if m == 0 {
            TIER_NONE
        } else if h >= t2 {
            TIER_HARD
        } else if h >= t1 {
            TIER_MEDIUM
        } else {
            TIER_EASY
        };
    }
    Ok(Some((t1, t2)))
}

/// `p` with the probability of every empty tier (`counts[d] = 0`) moved to the non-empty
/// tiers in proportion to theirs (`f64`, rounded once). If every non-empty tier has
/// probability 0, they share it equally; `None` when every tier is empty.
///
/// Errors: [`TmError::InvalidArgument`] for probabilities that are negative, not finite or
/// all 0.
pub fn rmt_tier_probs(p: &[f32; 3], counts: &[u64; 3]) -> Result<Option<[f32; 3]>, TmError> {
    check_probs(p)?;
    let live: [bool; 3] = core::array::from_fn(|d| counts[d] > 0);
    let n_live = live.iter().filter(|&&l| l).count();
    if n_live == 0 {
        return Ok(None);
    }
    let total: f64 = p.iter().map(|&v| v as f64).sum();
    let kept: f64 = (0..3).filter(|&d| live[d]).map(|d| p[d] as f64).sum();
    Ok(Some(core::array::from_fn(|d| {
        if !live[d] {
            0.0
        } else if kept > 0.0 {
            (p[d] as f64 * total / kept) as f32
        } else {
            (total / n_live as f64) as f32
        }
    })))
}

/// Samples one position: a tier `d ~ Categorical(p)` (after [`rmt_tier_probs`]) with the
/// uniform `u_tier ∈ [0, 1)`, then the `⌊u_token·n_d⌋`-th token of tier `d` in flat order.
/// The randomness is the caller's (two uniforms), so the choice is reproducible. `None`
/// when no token has a tier.
///
/// Errors: [`TmError::InvalidArgument`] for uniforms outside `[0, 1)` or bad `p`; a tier
/// code above [`TIER_HARD`].
pub fn rmt_pick_position(tiers: &[u8], p: &[f32; 3], u_tier: f64, u_token: f64) -> Result<Option<usize>, TmError> {
    if !((0.0..1.0).contains(&u_tier) && (0.0..1.0).contains(&u_token)) {
        return Err(TmError::InvalidArgument("uniforms must be in [0, 1)"));
    }
    let mut counts = [0u64; 3];
    for &t in tiers {
        match t {
            TIER_NONE => {}
            TIER_EASY..=TIER_HARD => counts[(t - 1) as usize] += 1,
            _ => return Err(TmError::InvalidArgument("tier codes are 0..=3")),
        }
    }
    let Some(q) = rmt_tier_probs(p, &counts)? else {
        return Ok(None);
    };
    let total: f64 = q.iter().map(|&v| v as f64).sum();
    let (mut acc, mut d) = (0.0f64, 0usize);
    // The last non-empty tier takes whatever rounding leaves over.
    let last = (0..3).rev().find(|&k| counts[k] > 0).unwrap_or(0);
    while d < last {
        acc += q[d] as f64 / total;
        if counts[d] > 0 && u_tier < acc {
            break;
        }
        d += 1;
    }
    let k = ((u_token * counts[d] as f64) as u64).min(counts[d] - 1);
    let want = d as u8 + 1;
    Ok(tiers.iter().enumerate().filter(|(_, &t)| t == want).nth(k as usize).map(|(j, _)| j))
}

/// `out[i] = (1 − w)·match01[i] + w·len_r[i]` (`f64`, rounded once): the combined reward of
/// RMT's responses (`w = 0.1` by the library's choice).
///
/// Errors: lengths; [`TmError::InvalidArgument`] for `w` not finite; [`TmError::NonFinite`]
/// for a non-finite input.
pub fn rmt_combined_reward(match01: &[f32], len_r: &[f32], w: f32, out: &mut [f32]) -> Result<(), TmError> {
    check_len("len_r", match01.len(), len_r.len())?;
    check_len("out", match01.len(), out.len())?;
    if !w.is_finite() {
        return Err(TmError::InvalidArgument("RMT reward weight w must be finite"));
    }
    for (what, x) in [("match01", match01), ("len_r", len_r)] {
        if let Some(index) = x.iter().position(|v| !v.is_finite()) {
            return Err(TmError::NonFinite { what, index });
        }
    }
    let w = w as f64;
    for ((o, &m), &l) in out.iter_mut().zip(match01).zip(len_r) {
        *o = ((1.0 - w) * m as f64 + w * l as f64) as f32;
    }
    Ok(())
}

/// `L_NTP = −(1/N)·Σ logp_target` over the `N` positions with `mask ≠ 0` and
/// `rl_positions = 0` (0 when `N = 0`), accumulated in `f64` in the policy step's lane order
/// (position `j` into lane `j mod 8`, the lanes then in order), and its gradient
/// `∂L/∂logp_target = −1/N` there, 0 elsewhere, written to `grad`. Returns `L`.
///
/// Errors: lengths; [`TmError::NonFinite`] for a NaN/`+inf` log-probability at a counted
/// position (`−inf` is allowed and gives `L = +inf`). `grad` is written only on success.
pub fn ntp_masked_loss(
    exec: Exec,
    shape: BatchShape,
    mask: &[u8],
    rl_positions: &[u8],
    logp_target: &[f32],
    grad: &mut [f32],
) -> Result<f32, TmError> {
    exec.check_backend()?;
    let n = shape.numel()?;
    check_len("mask", n, mask.len())?;
    check_len("rl_positions", n, rl_positions.len())?;
    check_len("logp_target", n, logp_target.len())?;
    check_len("grad", n, grad.len())?;
    let (bad, count, sum) = ntp_scan(exec.backend(), mask, rl_positions, logp_target);
    if bad {
        let counted = |j: usize| mask[j] != 0 && rl_positions[j] == 0;
        let index = (0..n).find(|&j| counted(j) && (logp_target[j].is_nan() || logp_target[j] == f32::INFINITY));
        return Err(TmError::NonFinite { what: "logp_target", index: index.unwrap_or(0) });
    }
    if count == 0 {
        grad.fill(0.0);
        return Ok(0.0);
    }
    ntp_grad(exec.backend(), mask, rl_positions, (-1.0 / count as f64) as f32, grad);
    Ok((-sum / count as f64) as f32)
}

isa_dispatch! {
    /// One branch-free pass of [`ntp_masked_loss`] over the NTP positions (valid, not RL):
    /// whether one has a NaN or `+∞` log-probability, their number, and the `f64` sum of their
    /// log-probabilities in the policy step's lane order (`policy_loss::metrics::lane_sum`'s:
    /// position `j` into lane `j mod 8`, the lanes then in order).
    fn ntp_scan(mask: &[u8], rl_positions: &[u8], logp: &[f32]) -> (bool, u64, f64) {
        let (mut bad, mut count, mut lanes) = ([false; LANES], [0u64; LANES], [0.0f64; LANES]);
        let mut add = |k: usize, m: u8, c: u8, lp: f32| {
            let on = (m != 0) & (c == 0);
            bad[k] |= on & (lp.is_nan() | (lp == f32::INFINITY));
            count[k] += u64::from(on);
            lanes[k] += if on { lp as f64 } else { 0.0 };
        };
        let (mc, cc, lc) = (mask.chunks_exact(LANES), rl_positions.chunks_exact(LANES), logp.chunks_exact(LANES));
        let rest = (mc.remainder(), cc.remainder(), lc.remainder());
        for ((m, c), lp) in mc.zip(cc).zip(lc) {
            for k in 0..LANES {
                add(k, m[k], c[k], lp[k]);
            }
        }
        for (k, ((&m, &c), &lp)) in rest.0.iter().zip(rest.1).zip(rest.2).enumerate() {
            add(k, m, c, lp);
        }
        (bad.iter().any(|&b| b), count.iter().sum(), lanes.iter().fold(0.0, |s, &x| s + x))
    }
}

isa_dispatch! {
    /// The gradient of [`ntp_masked_loss`]: `g` at the NTP positions, 0 elsewhere.
    fn ntp_grad(mask: &[u8], rl_positions: &[u8], g: f32, grad: &mut [f32]) -> () {
        for ((o, &m), &c) in grad.iter_mut().zip(mask).zip(rl_positions) {
            *o = if (m != 0) & (c == 0) { g } else { 0.0 };
        }
    }
}
