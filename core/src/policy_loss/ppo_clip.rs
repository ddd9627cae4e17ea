//! PPO clipped surrogate with asymmetric clip widths (DAPO clip-higher), dual clip and an
//! optional log-ratio clamp \[code\] (verl `compute_policy_loss_vanilla`; spec `policy.md` §4.2).
//!
//! ```text
//! Δ̃  = clamp(Δ, −C, C)                    C = log_ratio_clamp (None: no clamp, as TRL/HAPO)
//! r  = exp(Δ̃)
//! l1 = −A·r
//! l2 = −A·clamp(r, 1 − ε_low, 1 + ε_high)
//! lc = max(l1, l2)
//! ℓ  = (A < 0) ? min(lc, −A·c) : lc         c = dual_clip_c (None: no dual clip)
//! ℓ ← ℓ·w_is                                optional rollout importance weight
//! ```
//!
//! Gradient \[derived\]: `∂ℓ/∂logp = −A·r·κ·w_is` with
//!
//! ```text
//! A > 0:  κ = 1[r ≤ 1 + ε_high]
//! A < 0:  κ = 1[r ≥ 1 − ε_low]·1[r ≤ c]
//! A = 0:  ℓ = 0, gradient 0
//! κ = 0 when |Δ| > C (the clamp's gradient is 0 outside the closed interval)
//! ```
//!
//! At `r = 1 ± ε` both branches of the `max` have the same derivative, so the gradient is
//! full whatever the tie rule. At `r = c` exactly PyTorch's `min` halves the gradient; the
//! library uses the full gradient (inclusive `r ≤ c`) \[library choice\]. `κ` is evaluated on
//! the `f32` ratio `r` directly (the spec's formula), not on the rounded products `l1`, `l2`.
//!
//! Metrics (verl): `clipfrac` counts `1[l2 > l1]` (split by the sign of `A` into upper and
//! lower), `clipfrac_lower` counts `1[lc > −A·c ∧ A < 0]`, `ppo_kl` sums `−Δ̃`.
//!
//! # Performance
//!
//! [`ppo_clip_kl_step`] is the fast path of a PPO + KL trainer step: one pass over the tokens
//! (after a count of the mask for the aggregation's denominator) that writes `ℓ` and
//! `g_logp = w ⊙ ∂ℓ/∂logp` and sums `L`, instead of the kernel's pass followed by
//! [`super::agg_loss`] and [`super::agg_chain_inplace`] (42 instead of 26 bytes streamed per
//! token). With the default `K3` estimator, on x86-64 with AVX2 or AVX-512, both it and
//! [`ppo_clip_kl_loss`] run a hand-vectorised loop (`x86_avx2.rs`, `x86_avx512.rs`); the
//! other estimators, and [`ppo_clip_kl_step`] when `T` is not a multiple of 8, run the
//! portable loops (the step then literally as the three calls). The backend is the
//! [`Exec`]'s, chosen in one place (the dispatch in `policy_loss/mod.rs`). Results are the portable loop's bits; only the sign and
//! payload of a NaN result may differ, which Rust leaves unspecified anyway (LLVM is free to
//! commute `a + b`, and x86 propagates the first operand's NaN).

use super::kl::{k3, kl_token, KlCfg};
use super::metrics::{flags_of, ChunkScratch, KlStats, LaneAcc, PolicyStats, CHUNK};
use super::ratio::{clamp, clamp_bounds};
use super::{check_backend, check_eps, check_log_ratio_clamp, AggMode, AggNorm, LossOut, PolicyInputs};
use crate::error::{check_len, TmError};
use crate::exp::exp_full;
use crate::platform::Exec;

/// Hyper-parameters of [`ppo_clip_loss`].
///
/// `Default` is verl's actor config (`verl/trainer/config/actor/actor.yaml` at `b178a3cd`):
/// `clip_ratio_low = clip_ratio_high = 0.2`, `clip_ratio_c = 3.0`, and the `±20` log-ratio
/// clamp of `compute_policy_loss_vanilla` \[code\]. [`ClipCfg::dapo`] is DAPO's clip-higher
/// setting, [`ClipCfg::trl`] TRL's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClipCfg {
    /// `ε_low`: the ratio's lower clip is `1 − ε_low` (finite, `≥ 0`).
    pub eps_low: f32,
    /// `ε_high`: the ratio's upper clip is `1 + ε_high` (finite, `≥ 0`).
    pub eps_high: f32,
    /// Dual-clip bound `c` for negative advantages (finite, `> 1`); `None` disables it.
    pub dual_clip_c: Option<f32>,
    /// Clamp `|Δ| ≤ C` before `exp` (finite, `> 0`); `None` = no clamp.
    pub log_ratio_clamp: Option<f32>,
}

impl Default for ClipCfg {
    fn default() -> Self {
        ClipCfg { eps_low: 0.2, eps_high: 0.2, dual_clip_c: Some(3.0), log_ratio_clamp: Some(20.0) }
    }
}

impl ClipCfg {
    /// DAPO clip-higher \[paper\]\[code\] (verl `docs/algo/dapo.md`): `ε_low = 0.2`,
    /// `ε_high = 0.28`, otherwise verl's defaults (dual clip `c = 3`, `±20` clamp).
    pub fn dapo() -> Self {
        ClipCfg { eps_high: 0.28, ..ClipCfg::default() }
    }

    /// TRL `GRPOConfig` defaults \[code\] (`f2cd5771`): `ε = 0.2` both sides, no dual clip
    /// (TRL's `delta` is unset by default), no log-ratio clamp.
    ///
    /// TRL's two-sided clipping `delta = δ` (`coef_1 = min(r, δ)` after `coef_2` is formed)
    /// gives `ℓ = max(−A·min(r, δ), −A·clamp(r, …))`, which equals this kernel's loss and
    /// gradient with `dual_clip_c = Some(δ)` whenever `δ ≥ 1 + ε_high` \[derived\]: for `A < 0`
    /// both are `|A|·min(max(r, 1 − ε_low), δ)`, for `A > 0` the cap never binds before the
    /// `1 + ε_high` clip. (TRL's clip metrics differ: see [`PolicyStats`].)
    pub fn trl() -> Self {
        ClipCfg { eps_low: 0.2, eps_high: 0.2, dual_clip_c: None, log_ratio_clamp: None }
    }

    fn validate(&self) -> Result<(), TmError> {
        check_eps(self.eps_low, "eps_low must be finite and >= 0")?;
        check_eps(self.eps_high, "eps_high must be finite and >= 0")?;
        if let Some(c) = self.dual_clip_c {
            if !(c.is_finite() && c > 1.0) {
                return Err(TmError::InvalidArgument("dual_clip_c must be finite and > 1"));
            }
        }
        check_log_ratio_clamp(self.log_ratio_clamp)
    }
}

/// The hyper-parameters as the loops use them: log-ratio bounds, ratio bounds, dual clip.
#[derive(Clone, Copy)]
pub(super) struct Params {
    pub(super) lo: f32,
    pub(super) hi: f32,
    pub(super) r_lo: f32,
    pub(super) r_hi: f32,
    pub(super) c: f32,
}

pub(super) fn params(cfg: &ClipCfg) -> Params {
    let (lo, hi) = clamp_bounds(cfg.log_ratio_clamp);
    Params { lo, hi, r_lo: 1.0 - cfg.eps_low, r_hi: 1.0 + cfg.eps_high, c: cfg.dual_clip_c.unwrap_or(f32::INFINITY) }
}

/// One token: `(ℓ, ∂ℓ/∂logp)` before the mask, and the metric flags.
#[inline(always)]
pub(super) fn token(lp: f32, olp: f32, a: f32, w: f32, p: Params) -> (f32, f32, f32, bool, bool) {
    let d = lp - olp;
    let dt = clamp(d, p.lo, p.hi);
    let in_range = d >= p.lo && d <= p.hi;
    let r = exp_full(dt);
    let l1 = -a * r;
    let l2 = -a * clamp(r, p.r_lo, p.r_hi);
    // max/min in the NaN-propagating form (the first operand wins when the compare fails).
    let lc = if l2 > l1 { l2 } else { l1 };
    let l3 = -a * p.c;
    let neg = a < 0.0;
    let dual = neg && lc > l3;
    let mut l = if dual { l3 } else { lc };
    let kappa = in_range && ((a > 0.0 && r <= p.r_hi) || (neg && r >= p.r_lo && r <= p.c));
    let mut g = if kappa { -a * r } else { 0.0 };
    l = if a == 0.0 { 0.0 } else { l };
    let nan = dt.is_nan() || a.is_nan();
    g = if nan { f32::NAN } else { g };
    l = if nan { f32::NAN } else { l };
    (l * w, g * w, -dt, l2 > l1, dual)
}

/// The per-token map over one chunk: outputs, and the metric contributions into `x`/`flags`
/// (no reduction here, so the loop vectorises).
#[inline(always)]
fn map_chunk(
    ins: (&[f32], &[f32], &[f32], &[u8]),
    w: impl Iterator<Item = f32>,
    p: Params,
    loss: &mut [f32],
    grad: &mut [f32],
    x: &mut [f32],
    flags: &mut [u8],
) {
    let (lp, olp, adv, mask) = ins;
    let it = lp
        .iter()
        .zip(olp)
        .zip(adv)
        .zip(mask)
        .zip(w)
        .zip(loss.iter_mut().zip(grad.iter_mut()))
        .zip(x.iter_mut().zip(flags.iter_mut()));
    for ((((((&lp, &olp), &a), &m), w), (l_out, g_out)), (x_out, f_out)) in it {
        let (l, g, ndt, clipped, dual) = token(lp, olp, a, w, p);
        let valid = m != 0;
        *l_out = if valid { l } else { 0.0 };
        *g_out = if valid { g } else { 0.0 };
        *x_out = if valid { ndt } else { 0.0 };
        *f_out = flags_of(valid, clipped && a > 0.0, clipped && a < 0.0, dual);
    }
}

/// PPO clipped surrogate (with DAPO clip-higher, dual clip and log-ratio clamp per `cfg`),
/// forward and gradient w.r.t. `logp`, per token. See the module docs of
/// [`crate::policy_loss`] for the edge-case policies (masked positions 0, NaN propagation at
/// valid positions, `A = 0` gives exactly 0).
///
/// Returns the verl metrics (clip fractions, `ppo_kl`) as mergeable sums.
///
/// Errors: [`TmError::LengthMismatch`] for a buffer of the wrong length,
/// [`TmError::InvalidArgument`] for `ε < 0` or non-finite, `c ≤ 1`, a clamp `≤ 0`.
/// [`TmError::BackendUnavailable`] for a backend this CPU lacks.
pub fn ppo_clip_loss(
    exec: Exec,
    inp: &PolicyInputs<'_>,
    cfg: &ClipCfg,
    out: LossOut<'_>,
) -> Result<PolicyStats, TmError> {
    check_backend(exec)?;
    let n = inp.validate()?;
    out.validate(n)?;
    cfg.validate()?;
    Ok(super::ppo_loop(exec.backend(), inp, params(cfg), out).into_stats())
}

/// The chunk loop. Compiled once per backend (`x86_avx2.rs`, `x86_avx512.rs`), so the map
/// vectorises 8 or 16 wide; the same IEEE operations in the same order (Rust never contracts
/// `a·b + c` into an FMA), so every build gives identical bits.
#[inline(always)]
pub(super) fn drive(inp: &PolicyInputs<'_>, p: Params, out: LossOut<'_>) -> LaneAcc {
    let n = inp.logp.len();
    let mut acc = LaneAcc::default();
    let mut scratch = ChunkScratch::new();
    for o in (0..n).step_by(CHUNK) {
        let e = (o + CHUNK).min(n);
        let (x, flags) = scratch.parts(e - o);
        let (loss, grad) = (&mut out.loss[o..e], &mut out.dloss_dlogp[o..e]);
        let ins = (&inp.logp[o..e], &inp.old_logp[o..e], &inp.adv[o..e], &inp.mask[o..e]);
        match inp.is_weights {
            Some(w) => map_chunk(ins, w[o..e].iter().copied(), p, loss, grad, x, flags),
            None => map_chunk(ins, core::iter::repeat(1.0), p, loss, grad, x, flags),
        }
        acc.add_chunk(x, flags);
    }
    acc
}

/// A KL penalty folded into a policy loss per token: `ℓ ← ℓ_pg + coef·kl(logp, ref_logp)`.
///
/// Because the aggregation is linear and verl aggregates its KL loss with the same mode and
/// mask as the policy term (`dp_actor.py`: `pg_loss + kl_loss_coef·agg(kl)`), folding the KL
/// into `ℓ` gives the same `L` and the same gradient with one pass over the tokens.
#[derive(Clone, Copy, Debug)]
pub struct KlTerm<'a> {
    /// `log π_ref` of the sampled tokens (`B·T`, constant).
    pub ref_logp: &'a [f32],
    /// The estimator.
    pub cfg: KlCfg,
    /// `β` (verl `kl_loss_coef`, default `0.001` \[code\]; TRL `beta`). Finite.
    pub coef: f32,
}

/// The inputs of one chunk of the fused kernel: `logp, old_logp, adv, mask, ref_logp`.
type KlChunkIn<'a> = (&'a [f32], &'a [f32], &'a [f32], &'a [u8], &'a [f32]);

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn map_chunk_kl<W: Iterator<Item = f32>, F: Fn(f32) -> (f32, f32)>(
    ins: KlChunkIn<'_>,
    w: W,
    p: Params,
    f: &F,
    coef: f32,
    outs: (&mut [f32], &mut [f32]),
    x: &mut [f32],
    xk: &mut [f32],
    flags: &mut [u8],
) {
    let (lp, olp, adv, mask, rf) = ins;
    let (loss, grad) = outs;
    let it = lp
        .iter()
        .zip(olp)
        .zip(adv)
        .zip(mask)
        .zip(rf)
        .zip(w)
        .zip(loss.iter_mut().zip(grad.iter_mut()))
        .zip(x.iter_mut().zip(xk.iter_mut()).zip(flags.iter_mut()));
    for (((((((&lp, &olp), &a), &m), &rf), w), (l_out, g_out)), ((x_out, xk_out), f_out)) in it {
        let (l, g, ndt, clipped, dual) = token(lp, olp, a, w, p);
        let (kv, kg) = kl_token(f, lp, rf);
        let valid = m != 0;
        *l_out = if valid { l + coef * kv } else { 0.0 };
        *g_out = if valid { g + coef * kg } else { 0.0 };
        *x_out = if valid { ndt } else { 0.0 };
        *xk_out = if valid { kv } else { 0.0 };
        *f_out = flags_of(valid, clipped && a > 0.0, clipped && a < 0.0, dual);
    }
}

/// The chunk loop of [`ppo_clip_kl_loss`] (compiled once per backend, as [`drive`]).
#[inline(always)]
pub(super) fn drive_kl<F: Fn(f32) -> (f32, f32)>(
    inp: &PolicyInputs<'_>,
    p: Params,
    kl: &KlTerm<'_>,
    f: &F,
    out: LossOut<'_>,
) -> (LaneAcc, LaneAcc) {
    let n = inp.logp.len();
    let (mut acc, mut acc_kl) = (LaneAcc::default(), LaneAcc::default());
    let (mut scratch, mut scratch_kl) = (ChunkScratch::new(), ChunkScratch::new());
    for o in (0..n).step_by(CHUNK) {
        let e = (o + CHUNK).min(n);
        let (x, flags) = scratch.parts(e - o);
        let (xk, _) = scratch_kl.parts(e - o);
        let outs = (&mut out.loss[o..e], &mut out.dloss_dlogp[o..e]);
        let ins = (&inp.logp[o..e], &inp.old_logp[o..e], &inp.adv[o..e], &inp.mask[o..e], &kl.ref_logp[o..e]);
        match inp.is_weights {
            Some(w) => map_chunk_kl(ins, w[o..e].iter().copied(), p, f, kl.coef, outs, x, xk, flags),
            None => map_chunk_kl(ins, core::iter::repeat(1.0), p, f, kl.coef, outs, x, xk, flags),
        }
        acc.add_chunk(x, flags);
        acc_kl.add_chunk(xk, flags);
    }
    (acc, acc_kl)
}

/// [`ppo_clip_loss`] with a KL penalty folded in, in one pass:
/// `ℓ = ℓ_pg·w_is + coef·kl`, `∂ℓ/∂logp = ∂ℓ_pg/∂logp·w_is + coef·∂kl/∂logp` (the rollout
/// importance weight multiplies the policy term only, as in verl). Bitwise equal to
/// `l_pg + coef·kl` formed from [`ppo_clip_loss`] and [`super::kl_loss`] outputs.
///
/// Returns the policy metrics and the KL metrics (`kl` sum over valid tokens, unscaled).
///
/// Errors: those of [`ppo_clip_loss`] and [`super::kl_loss`]; [`TmError::InvalidArgument`] for a
/// non-finite `coef`.
pub fn ppo_clip_kl_loss(
    exec: Exec,
    inp: &PolicyInputs<'_>,
    cfg: &ClipCfg,
    kl: &KlTerm<'_>,
    out: LossOut<'_>,
) -> Result<(PolicyStats, KlStats), TmError> {
    check_backend(exec)?;
    let n = inp.validate()?;
    check_len("ref_logp", n, kl.ref_logp.len())?;
    out.validate(n)?;
    cfg.validate()?;
    if !kl.coef.is_finite() {
        return Err(TmError::InvalidArgument("KL coefficient must be finite"));
    }
    Ok(super::ppo_kl_loop(exec.backend(), inp, params(cfg), kl, out))
}

/// What [`ppo_clip_kl_step`] returns: the scalar loss and the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepStats {
    /// `L = agg(ℓ, mask)` (as [`super::agg_loss`]).
    pub loss: f32,
    /// The policy metrics (as [`ppo_clip_kl_loss`]).
    pub policy: PolicyStats,
    /// The KL metrics (as [`ppo_clip_kl_loss`]).
    pub kl: KlStats,
}

/// One PPO + KL "forward and gradient" step: [`ppo_clip_kl_loss`], [`super::agg_loss`] and
/// [`super::agg_chain_inplace`] fused. On return `out.loss` holds `ℓ` and
/// `out.dloss_dlogp` holds `g_logp = w ⊙ ∂ℓ/∂logp` (the aggregation weight applied), bitwise
/// what
///
/// ```text
/// let (policy, kl) = ppo_clip_kl_loss(exec, inp, cfg, kl, out)?;
/// let loss = agg_loss(exec, inp.shape, inp.mask, out.loss, mode, norm)?;
/// agg_chain_inplace(exec, inp.shape, inp.mask, mode, norm, out.dloss_dlogp)?;
/// ```
///
/// leaves there, and returns the same `loss`, `policy` and `kl` (every bit of every non-NaN
/// value; a NaN is NaN in both, its sign and payload unspecified as everywhere in Rust).
/// Faster: one pass over the tokens after a count of the mask (see the module docs).
///
/// Errors: those of the three calls, in that order; all are checked before any output is
/// written.
pub fn ppo_clip_kl_step(
    exec: Exec,
    inp: &PolicyInputs<'_>,
    cfg: &ClipCfg,
    kl: &KlTerm<'_>,
    mode: AggMode,
    norm: &AggNorm,
    out: LossOut<'_>,
) -> Result<StepStats, TmError> {
    check_backend(exec)?;
    let n = inp.validate()?;
    check_len("ref_logp", n, kl.ref_logp.len())?;
    out.validate(n)?;
    cfg.validate()?;
    if !kl.coef.is_finite() {
        return Err(TmError::InvalidArgument("KL coefficient must be finite"));
    }
    let plan = super::aggregation::plan(exec.backend(), inp.mask, inp.shape, mode, norm)?;
    let out = match super::fused_step(exec.backend(), inp, params(cfg), kl, &plan, out) {
        Ok(stats) => return Ok(stats),
        Err(out) => out,
    };
    // Elsewhere (other estimators, `T` not a multiple of 8, the portable backend): the three
    // calls.
    let (policy, klst) =
        ppo_clip_kl_loss(exec, inp, cfg, kl, LossOut { loss: out.loss, dloss_dlogp: out.dloss_dlogp })?;
    let loss = super::agg_loss(exec, inp.shape, inp.mask, out.loss, mode, norm)?;
    super::agg_chain_inplace(exec, inp.shape, inp.mask, mode, norm, out.dloss_dlogp)?;
    Ok(StepStats { loss, policy, kl: klst })
}

// ---------------------------------------------------------------------------------------
// Shared by the hand-vectorised PPO + k3 loops (`x86_avx2.rs`, `x86_avx512.rs`).
// ---------------------------------------------------------------------------------------

/// The inputs of the fused PPO + k3 loops (`n` elements each; `w` empty without importance
/// weights).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(super) struct FusedIns<'a> {
    pub(super) lp: &'a [f32],
    pub(super) olp: &'a [f32],
    pub(super) adv: &'a [f32],
    pub(super) rf: &'a [f32],
    pub(super) mask: &'a [u8],
    pub(super) w: &'a [f32],
}

impl<'a> FusedIns<'a> {
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(super) fn new(inp: &PolicyInputs<'a>, kl: &KlTerm<'a>) -> Self {
        FusedIns {
            lp: inp.logp,
            olp: inp.old_logp,
            adv: inp.adv,
            rf: kl.ref_logp,
            mask: inp.mask,
            w: inp.is_weights.unwrap_or(&[]),
        }
    }
}

/// Whether the log-ratio clamp keeps `exp`'s argument in `[−87, 87]`, where the vector `exp`s
/// may take their shorter, bitwise-equal route (see `x86_avx2::exp8`). (k3 with verl's clamps
/// keeps its argument in `[−20, 20]`.)
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(super) fn bounded(p: Params) -> bool {
    p.lo >= -87.0 && p.hi <= 87.0
}

/// One scalar token (the tails): `(ℓ, ∂ℓ/∂logp, −Δ̃, kl, flags)`, exactly `map_chunk_kl`.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[inline(always)]
pub(super) fn tok1(
    ins: &FusedIns<'_>,
    i: usize,
    p: Params,
    coef: f32,
    clamps: bool,
) -> (f32, f32, f32, f32, [bool; 4]) {
    let w = if ins.w.is_empty() { 1.0 } else { ins.w[i] };
    let (lp, a) = (ins.lp[i], ins.adv[i]);
    let (l, g, ndt, clipped, dual) = token(lp, ins.olp[i], a, w, p);
    let (kv, kg) = kl_token(&|d| k3(d, clamps), lp, ins.rf[i]);
    if ins.mask[i] == 0 {
        return (0.0, 0.0, 0.0, 0.0, [false; 4]);
    }
    (l + coef * kv, g + coef * kg, ndt, kv, [true, clipped && a > 0.0, clipped && a < 0.0, dual])
}

/// Calls `$f::<W, BR, BK>($args…)` with the three switches as compile-time constants:
/// importance weights present, `exp`'s argument bounded ([`bounded`]), verl's KL clamps.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_macros))]
macro_rules! specialize {
    ($f:ident ($($arg:expr),*) for $ins:expr, $p:expr, $clamps:expr) => {
        match (!$ins.w.is_empty(), bounded($p), $clamps) {
            (false, false, false) => $f::<false, false, false>($($arg),*),
            (false, false, true) => $f::<false, false, true>($($arg),*),
            (false, true, false) => $f::<false, true, false>($($arg),*),
            (false, true, true) => $f::<false, true, true>($($arg),*),
            (true, false, false) => $f::<true, false, false>($($arg),*),
            (true, false, true) => $f::<true, false, true>($($arg),*),
            (true, true, false) => $f::<true, true, false>($($arg),*),
            (true, true, true) => $f::<true, true, true>($($arg),*),
        }
    };
}
#[cfg(target_arch = "x86_64")]
pub(super) use specialize;
