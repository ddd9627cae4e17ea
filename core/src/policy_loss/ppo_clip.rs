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
//! [`super::agg_loss`] and [`super::agg_chain_in_place`] (42 instead of 26 bytes streamed per
//! token). With the default `K3` estimator, on x86-64 with AVX2, both it and
//! [`ppo_clip_kl_loss`] run a hand-vectorised loop (module `avx2` below); the other estimators,
//! and [`ppo_clip_kl_step`] when `T` is not a multiple of 8, run the portable loops (the step
//! then literally as the three calls). Results are the portable loop's bits; only the sign and
//! payload of a NaN result may differ, which Rust leaves unspecified anyway (LLVM is free to
//! commute `a + b`, and x86 propagates the first operand's NaN).

use super::kl::{kl_token, with_kl_fn, KlCfg, KlKind};
use super::metrics::{flags_of, ChunkScratch, KlStats, LaneAcc, PolicyStats, CHUNK};
use super::ratio::{clamp, clamp_bounds, exp_f32};
use super::{check_eps, check_log_ratio_clamp, AggMode, AggNorm, LossOut, PolicyInputs};
use crate::error::{check_len, TmError};
#[cfg(target_arch = "x86_64")]
use crate::platform::Backend;

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

#[derive(Clone, Copy)]
struct Params {
    lo: f32,
    hi: f32,
    r_lo: f32,
    r_hi: f32,
    c: f32,
}

fn params(cfg: &ClipCfg) -> Params {
    let (lo, hi) = clamp_bounds(cfg.log_ratio_clamp);
    Params { lo, hi, r_lo: 1.0 - cfg.eps_low, r_hi: 1.0 + cfg.eps_high, c: cfg.dual_clip_c.unwrap_or(f32::INFINITY) }
}

/// One token: `(ℓ, ∂ℓ/∂logp)` before the mask, and the metric flags.
#[inline(always)]
fn token(lp: f32, olp: f32, a: f32, w: f32, p: Params) -> (f32, f32, f32, bool, bool) {
    let d = lp - olp;
    let dt = clamp(d, p.lo, p.hi);
    let in_range = d >= p.lo && d <= p.hi;
    let r = exp_f32(dt);
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
pub fn ppo_clip_loss(inp: &PolicyInputs<'_>, cfg: &ClipCfg, out: LossOut<'_>) -> Result<PolicyStats, TmError> {
    let n = inp.validate()?;
    out.validate(n)?;
    cfg.validate()?;
    let p = params(cfg);
    #[cfg(target_arch = "x86_64")]
    if Backend::detect() == Backend::Avx2Fma {
        // Safe because `detect` verified AVX2+FMA on this CPU.
        return Ok(unsafe { drive_avx2(inp, p, out) }.into_stats());
    }
    Ok(drive(inp, p, out).into_stats())
}

/// The chunk loop. Compiled twice: portable, and with AVX2 enabled ([`drive_avx2`]) so the
/// map vectorises 8 wide; the same IEEE operations in the same order (Rust never contracts
/// `a·b + c` into an FMA), so both give identical bits.
#[inline(always)]
fn drive(inp: &PolicyInputs<'_>, p: Params, out: LossOut<'_>) -> LaneAcc {
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

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn drive_avx2(inp: &PolicyInputs<'_>, p: Params, out: LossOut<'_>) -> LaneAcc {
    drive(inp, p, out)
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

#[inline(always)]
fn drive_kl<F: Fn(f32) -> (f32, f32)>(
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

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn drive_kl_avx2<F: Fn(f32) -> (f32, f32)>(
    inp: &PolicyInputs<'_>,
    p: Params,
    kl: &KlTerm<'_>,
    f: &F,
    out: LossOut<'_>,
) -> (LaneAcc, LaneAcc) {
    drive_kl(inp, p, kl, f, out)
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
    inp: &PolicyInputs<'_>,
    cfg: &ClipCfg,
    kl: &KlTerm<'_>,
    out: LossOut<'_>,
) -> Result<(PolicyStats, KlStats), TmError> {
    let n = inp.validate()?;
    check_len("ref_logp", n, kl.ref_logp.len())?;
    out.validate(n)?;
    cfg.validate()?;
    if !kl.coef.is_finite() {
        return Err(TmError::InvalidArgument("KL coefficient must be finite"));
    }
    let p = params(cfg);
    #[cfg(target_arch = "x86_64")]
    if kl.cfg.kind == KlKind::K3 && Backend::detect() == Backend::Avx2Fma {
        // Safe because `detect` verified AVX2+FMA on this CPU (lengths checked above).
        return Ok(unsafe {
            avx2::flat_avx2(&avx2_ins(inp, kl), p, kl.coef, kl.cfg.verl_clamps, out.loss, out.dloss_dlogp)
        });
    }
    let (a, b) = with_kl_fn!(kl.cfg, |f| {
        #[cfg(target_arch = "x86_64")]
        if Backend::detect() == Backend::Avx2Fma {
            // Safe because `detect` verified AVX2+FMA on this CPU.
            unsafe { drive_kl_avx2(inp, p, kl, &f, out) }
        } else {
            drive_kl(inp, p, kl, &f, out)
        }
        #[cfg(not(target_arch = "x86_64"))]
        drive_kl(inp, p, kl, &f, out)
    });
    Ok((a.into_stats(), b.into_kl()))
}

/// The inputs of the AVX2 kernel.
#[cfg(target_arch = "x86_64")]
fn avx2_ins<'a>(inp: &PolicyInputs<'a>, kl: &KlTerm<'a>) -> avx2::Ins<'a> {
    avx2::Ins {
        lp: inp.logp,
        olp: inp.old_logp,
        adv: inp.adv,
        rf: kl.ref_logp,
        mask: inp.mask,
        w: inp.is_weights.unwrap_or(&[]),
    }
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
/// [`super::agg_chain_in_place`] fused. On return `out.loss` holds `ℓ` and
/// `out.dloss_dlogp` holds `g_logp = w ⊙ ∂ℓ/∂logp` (the aggregation weight applied), bitwise
/// what
///
/// ```text
/// let (policy, kl) = ppo_clip_kl_loss(inp, cfg, kl, out)?;
/// let loss = agg_loss(out.loss, inp.mask, inp.shape, mode, norm)?;
/// agg_chain_in_place(inp.mask, inp.shape, mode, norm, out.dloss_dlogp)?;
/// ```
///
/// leaves there, and returns the same `loss`, `policy` and `kl` (every bit of every non-NaN
/// value; a NaN is NaN in both, its sign and payload unspecified as everywhere in Rust).
/// Faster: one pass over the tokens after a count of the mask (see the module docs).
///
/// Errors: those of the three calls, in that order; all are checked before any output is
/// written.
pub fn ppo_clip_kl_step(
    inp: &PolicyInputs<'_>,
    cfg: &ClipCfg,
    kl: &KlTerm<'_>,
    mode: AggMode,
    norm: &AggNorm,
    out: LossOut<'_>,
) -> Result<StepStats, TmError> {
    let n = inp.validate()?;
    check_len("ref_logp", n, kl.ref_logp.len())?;
    out.validate(n)?;
    cfg.validate()?;
    if !kl.coef.is_finite() {
        return Err(TmError::InvalidArgument("KL coefficient must be finite"));
    }
    let plan = super::aggregation::plan(inp.mask, inp.shape, mode, norm)?;
    let cols = inp.shape.cols;
    #[cfg(target_arch = "x86_64")]
    if kl.cfg.kind == KlKind::K3 && cols % 8 == 0 && cols > 0 && Backend::detect() == Backend::Avx2Fma {
        let (p, ins) = (params(cfg), avx2_ins(inp, kl));
        // Safe because `detect` verified AVX2+FMA on this CPU (lengths checked above).
        let (loss, policy, kl) =
            unsafe { avx2::step_avx2(&ins, cols, p, kl.coef, kl.cfg.verl_clamps, &plan, out.loss, out.dloss_dlogp) };
        return Ok(StepStats { loss, policy, kl });
    }
    // Elsewhere (other estimators, `T` not a multiple of 8, no AVX2): the three calls.
    let _ = (plan, cols);
    let (policy, klst) = ppo_clip_kl_loss(inp, cfg, kl, LossOut { loss: out.loss, dloss_dlogp: out.dloss_dlogp })?;
    let loss = super::agg_loss(out.loss, inp.mask, inp.shape, mode, norm)?;
    super::agg_chain_in_place(inp.mask, inp.shape, mode, norm, out.dloss_dlogp)?;
    Ok(StepStats { loss, policy, kl: klst })
}

/// Hand-vectorised AVX2 kernel of the PPO + k3 loop ([`ppo_clip_kl_loss`] with a `K3` KL, and
/// [`ppo_clip_kl_step`]), 8 tokens per vector, 4 independent vectors per iteration (so that
/// the long `exp` dependency chains overlap).
///
/// It performs the IEEE operations of [`token`], [`kl_token`] with [`k3`](super::kl::k3), the
/// selects of `map_chunk_kl`, the lane sums of `LaneAcc`, `agg_loss` and `agg_chain_in_place`,
/// in the same order and without FMA, so its results are those of the portable loops (NaN
/// sign and payload aside; tested in this file and in `tests/policy_loss.rs`). Where it
/// takes a shorter route to the same bits, the reason is written next to it:
///
/// * `clamp(d, lo, hi)` is `min(hi, max(lo, d))` (`maxps` returns its second operand when
///   unordered, so NaN passes as in the scalar select), and "`lo ≤ d ≤ hi`" is "the clamp left
///   `d` unchanged" (one compare instead of two);
/// * with a log-ratio clamp `C ≤ 87` (verl's is 20) and with k3's ±20 clamp, `exp`'s own
///   argument clamp is the identity and its two-step scaling by `2^n` equals a one-step one;
/// * with k3's clamps the value `e^δ − δ − 1 > −1`, so its lower clamp at `−10` is the identity;
/// * fully masked blocks of 32 tokens (the padding after each response) are written as zeros
///   without the arithmetic: their contributions to every sum are `+0.0`, to every count `0`,
///   and an `f64` lane that starts at `+0.0` never holds `−0.0`, for which alone adding `+0.0`
///   would not be the identity.
///
/// The metric and loss sums stay in `f64` lanes (`cvtps2pd`; lane = flat index mod 8, the
/// portable order), the counts in `i32` lanes flushed to `u64` per row or block.
///
/// An AVX-512 build of the same loop (16 tokens per vector, mask registers) measured about
/// 20% faster on an AVX-512 machine, but the AVX-512 intrinsics are stable only since Rust
/// 1.89, above this crate's `rust-version`.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    #![allow(clippy::excessive_precision)]
    use core::arch::x86_64::*;

    use super::super::aggregation::{count_valid, Plan};
    use super::super::kl::{k3, kl_token};
    use super::super::metrics::{KlStats, LaneAcc, PolicyStats, LANES};
    use super::{token, Params};

    // `ratio::exp_f32`'s constants (Cephes `expf`), repeated here; `exp8_matches_exp_f32`
    // checks that both give the same bits.
    const LOG2E: f32 = core::f32::consts::LOG2_E;
    const ROUND_MAGIC: f32 = 12_582_912.0;
    const C1: f32 = 0.693_359_375;
    const C2: f32 = -2.121_944_400_546_905_827_68e-4;
    const P: [f32; 6] = [
        1.987_569_15e-4,
        1.398_199_950_7e-3,
        8.333_451_907_3e-3,
        4.166_579_589_4e-2,
        1.666_666_545_9e-1,
        5.000_000_120_1e-1,
    ];

    #[inline(always)]
    unsafe fn splat(x: f32) -> __m256 {
        _mm256_set1_ps(x)
    }

    /// `torch.clamp` / [`super::clamp`]: `d < lo ? lo : d > hi ? hi : d` (NaN passes), for
    /// `lo < hi`. `maxps(a, b)` is `a > b ? a : b` (so `b` when unordered), `minps(a, b)` is
    /// `a < b ? a : b`: `min(hi, max(lo, d))` is that select, NaN `d` included. (Equal values
    /// are returned as `d`, the operand the scalar `clamp` returns.)
    #[inline(always)]
    unsafe fn clamp8(d: __m256, lo: __m256, hi: __m256) -> __m256 {
        _mm256_min_ps(hi, _mm256_max_ps(lo, d))
    }

    /// [`super::exp_f32`] on 8 lanes, operation for operation. `BOUNDED`: the caller
    /// guarantees every non-NaN `x` is in `[−87, 87]`; then the argument clamp of `exp_f32`
    /// is the identity and its two-step scaling `(y·2^n1)·2^n2` (both steps exact, one rounding
    /// at most) equals the one-step `y·2^n` with `2^n` a normal float: the same bits, fewer
    /// operations.
    #[inline(always)]
    pub(super) unsafe fn exp8<const BOUNDED: bool>(x: __m256) -> __m256 {
        // `f32::clamp(-104, 89)`: `x < min → min`, then `> max → max`.
        let xc = if BOUNDED { x } else { clamp8(x, splat(-104.0), splat(89.0)) };
        let magic = splat(ROUND_MAGIC);
        let t = _mm256_add_ps(_mm256_mul_ps(xc, splat(LOG2E)), magic);
        let n = _mm256_sub_ps(t, magic);
        let r = _mm256_sub_ps(_mm256_sub_ps(xc, _mm256_mul_ps(n, splat(C1))), _mm256_mul_ps(n, splat(C2)));
        let r2 = _mm256_mul_ps(r, r);
        let mut p = splat(P[0]);
        for &c in &P[1..] {
            p = _mm256_add_ps(_mm256_mul_ps(p, r), splat(c));
        }
        let y = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(p, r2), r), splat(1.0));
        if BOUNDED {
            // bits(t) = bits(magic) + n: `2^n` is `(bits(t) − bits(magic) + 127) << 23`.
            let bias = _mm256_set1_epi32(127i32.wrapping_sub(ROUND_MAGIC.to_bits() as i32));
            let s = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_castps_si256(t), bias)));
            return _mm256_mul_ps(y, s);
        }
        let ni = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(ROUND_MAGIC.to_bits() as i32));
        let n1 = _mm256_srai_epi32::<1>(ni);
        let n2 = _mm256_sub_epi32(ni, n1);
        let bias = _mm256_set1_epi32(127);
        let s1 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(n1, bias)));
        let s2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(n2, bias)));
        _mm256_mul_ps(_mm256_mul_ps(y, s1), s2)
    }

    /// The broadcast hyper-parameters.
    #[derive(Clone, Copy)]
    pub(super) struct Cfg8 {
        lo: __m256,
        hi: __m256,
        r_lo: __m256,
        r_hi: __m256,
        c: __m256,
        coef: __m256,
        dlo: __m256,
        dhi: __m256,
        klo: __m256,
        khi: __m256,
    }

    impl Cfg8 {
        #[inline(always)]
        pub(super) unsafe fn new(p: Params, coef: f32, clamps: bool) -> Cfg8 {
            let (dlo, dhi, klo, khi) = if clamps {
                (-20.0, 20.0, -10.0, 10.0)
            } else {
                (f32::NEG_INFINITY, f32::INFINITY, f32::NEG_INFINITY, f32::INFINITY)
            };
            Cfg8 {
                lo: splat(p.lo),
                hi: splat(p.hi),
                r_lo: splat(p.r_lo),
                r_hi: splat(p.r_hi),
                c: splat(p.c),
                coef: splat(coef),
                dlo: splat(dlo),
                dhi: splat(dhi),
                klo: splat(klo),
                khi: splat(khi),
            }
        }
    }

    /// One step's results: `ℓ`, `∂ℓ/∂logp` (0 where masked), the metric values (`−Δ̃`, `kl`;
    /// 0 where masked) and the count masks (valid, upper, lower, dual clip).
    struct Tok8 {
        l: __m256,
        g: __m256,
        ndt: __m256,
        kv: __m256,
        valid: __m256,
        high: __m256,
        low: __m256,
        dual: __m256,
    }

    /// [`token`] + [`kl_token`] with `k3` + the mask select of `map_chunk_kl`, on 8 tokens at
    /// `i`.
    #[inline(always)]
    unsafe fn tok8<const W: bool, const BR: bool, const BK: bool>(ins: &Ins<'_>, i: usize, q: &Cfg8) -> Tok8 {
        let lp = _mm256_loadu_ps(ins.lp.as_ptr().add(i));
        let olp = _mm256_loadu_ps(ins.olp.as_ptr().add(i));
        let a = _mm256_loadu_ps(ins.adv.as_ptr().add(i));
        let rf = _mm256_loadu_ps(ins.rf.as_ptr().add(i));
        let m8 = _mm_loadl_epi64(ins.mask.as_ptr().add(i) as *const __m128i);
        let m32 = _mm256_cvtepu8_epi32(m8);
        let invalid = _mm256_castsi256_ps(_mm256_cmpeq_epi32(m32, _mm256_setzero_si256()));
        let sign = splat(-0.0);
        let zero = _mm256_setzero_ps();
        let nan = splat(f32::NAN);

        // PPO (`token`).
        let d = _mm256_sub_ps(lp, olp);
        let dt = clamp8(d, q.lo, q.hi);
        // `lo ≤ d ≤ hi` ⟺ the clamp left `d` unchanged (false for NaN).
        let in_range = _mm256_cmp_ps::<_CMP_EQ_OQ>(dt, d);
        let r = exp8::<BR>(dt);
        let na = _mm256_xor_ps(a, sign);
        let l1 = _mm256_mul_ps(na, r);
        let l2 = _mm256_mul_ps(na, clamp8(r, q.r_lo, q.r_hi));
        let clipped = _mm256_cmp_ps::<_CMP_GT_OQ>(l2, l1);
        let lc = _mm256_blendv_ps(l1, l2, clipped);
        let l3 = _mm256_mul_ps(na, q.c);
        let neg = _mm256_cmp_ps::<_CMP_LT_OQ>(a, zero);
        let pos = _mm256_cmp_ps::<_CMP_GT_OQ>(a, zero);
        let dual = _mm256_and_ps(neg, _mm256_cmp_ps::<_CMP_GT_OQ>(lc, l3));
        let mut l = _mm256_blendv_ps(lc, l3, dual);
        let k_pos = _mm256_and_ps(pos, _mm256_cmp_ps::<_CMP_LE_OQ>(r, q.r_hi));
        let k_neg = _mm256_and_ps(
            _mm256_and_ps(neg, _mm256_cmp_ps::<_CMP_GE_OQ>(r, q.r_lo)),
            _mm256_cmp_ps::<_CMP_LE_OQ>(r, q.c),
        );
        let kappa = _mm256_and_ps(in_range, _mm256_or_ps(k_pos, k_neg));
        let mut g = _mm256_and_ps(kappa, l1);
        // `a = 0 → 0`: `a ≠ 0` is `a > 0 ∨ a < 0` but for a NaN `a`, whose `ℓ` is NaN below.
        l = _mm256_and_ps(_mm256_or_ps(pos, neg), l);
        // `dt` or `a` NaN, in one unordered compare.
        let is_nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(dt, a);
        g = _mm256_blendv_ps(g, nan, is_nan);
        l = _mm256_blendv_ps(l, nan, is_nan);
        if W {
            let w = _mm256_loadu_ps(ins.w.as_ptr().add(i));
            l = _mm256_mul_ps(l, w);
            g = _mm256_mul_ps(g, w);
        }
        let ndt = _mm256_xor_ps(dt, sign);

        // k3 (`kl_token`, `kl::k3`).
        let dk = _mm256_sub_ps(lp, rf);
        let nd = _mm256_xor_ps(dk, sign);
        let delta = clamp8(nd, q.dlo, q.dhi);
        let e = exp8::<BK>(delta);
        let k = _mm256_sub_ps(_mm256_sub_ps(e, delta), splat(1.0));
        // With verl's clamps `k > −1 > −10` whenever it is not NaN (`e ≥ 0`, `δ ≤ 20`), so the
        // lower clamp is the identity and only `min(10, k)` remains.
        let kc = if BK { _mm256_min_ps(q.khi, k) } else { clamp8(k, q.klo, q.khi) };
        // Both clamps left their argument unchanged (false for NaN, as the comparisons).
        let pass = _mm256_and_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(delta, nd), _mm256_cmp_ps::<_CMP_EQ_OQ>(kc, k));
        let kg = _mm256_and_ps(pass, _mm256_sub_ps(splat(1.0), e));
        let nan_k = _mm256_cmp_ps::<_CMP_UNORD_Q>(dk, dk);
        let kv = _mm256_blendv_ps(kc, nan, nan_k);
        let kg = _mm256_blendv_ps(kg, nan, nan_k);

        // `map_chunk_kl`'s selects.
        let lt = _mm256_add_ps(l, _mm256_mul_ps(q.coef, kv));
        let gt = _mm256_add_ps(g, _mm256_mul_ps(q.coef, kg));
        Tok8 {
            l: _mm256_andnot_ps(invalid, lt),
            g: _mm256_andnot_ps(invalid, gt),
            ndt: _mm256_andnot_ps(invalid, ndt),
            kv: _mm256_andnot_ps(invalid, kv),
            valid: _mm256_andnot_ps(invalid, _mm256_castsi256_ps(_mm256_set1_epi32(-1))),
            high: _mm256_andnot_ps(invalid, _mm256_and_ps(clipped, pos)),
            low: _mm256_andnot_ps(invalid, _mm256_and_ps(clipped, neg)),
            dual: _mm256_andnot_ps(invalid, dual),
        }
    }

    /// The inputs (`n` elements each; `w` empty without importance weights).
    pub(super) struct Ins<'a> {
        pub lp: &'a [f32],
        pub olp: &'a [f32],
        pub adv: &'a [f32],
        pub rf: &'a [f32],
        pub mask: &'a [u8],
        pub w: &'a [f32],
    }

    /// `f64` lanes (lane `k` = indices `≡ k mod 8`) of a sum.
    #[derive(Clone, Copy)]
    struct Sum8([__m256d; 2]);

    impl Sum8 {
        #[inline(always)]
        unsafe fn zero() -> Sum8 {
            Sum8([_mm256_setzero_pd(); 2])
        }

        #[inline(always)]
        unsafe fn add(&mut self, x: __m256) {
            self.0[0] = _mm256_add_pd(self.0[0], _mm256_cvtps_pd(_mm256_castps256_ps128(x)));
            self.0[1] = _mm256_add_pd(self.0[1], _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(x)));
        }

        #[inline(always)]
        unsafe fn lanes(self) -> [f64; LANES] {
            let mut out = [0.0; LANES];
            _mm256_storeu_pd(out.as_mut_ptr(), self.0[0]);
            _mm256_storeu_pd(out.as_mut_ptr().add(4), self.0[1]);
            out
        }
    }

    /// Counts in `i32` lanes (flushed into `u64` totals before they can overflow).
    #[derive(Clone, Copy)]
    struct Counts8 {
        lanes: [__m256i; 4],
        total: [u64; 4],
    }

    impl Counts8 {
        #[inline(always)]
        unsafe fn zero() -> Counts8 {
            Counts8 { lanes: [_mm256_setzero_si256(); 4], total: [0; 4] }
        }

        #[inline(always)]
        unsafe fn add(&mut self, t: &Tok8) {
            for (c, m) in self.lanes.iter_mut().zip([t.valid, t.high, t.low, t.dual]) {
                *c = _mm256_sub_epi32(*c, _mm256_castps_si256(m));
            }
        }

        #[inline(always)]
        unsafe fn flush(&mut self) {
            for (c, tot) in self.lanes.iter_mut().zip(self.total.iter_mut()) {
                let mut v = [0u32; 8];
                _mm256_storeu_si256(v.as_mut_ptr() as *mut __m256i, *c);
                *tot += v.iter().map(|&x| x as u64).sum::<u64>();
                *c = _mm256_setzero_si256();
            }
        }
    }

    /// The metric accumulators of a whole call.
    pub(super) struct Acc {
        ndt: Sum8,
        kl: Sum8,
        counts: Counts8,
    }

    impl Acc {
        #[inline(always)]
        unsafe fn new() -> Acc {
            Acc { ndt: Sum8::zero(), kl: Sum8::zero(), counts: Counts8::zero() }
        }

        #[inline(always)]
        unsafe fn add(&mut self, t: &Tok8) {
            self.ndt.add(t.ndt);
            self.kl.add(t.kv);
            self.counts.add(t);
        }

        /// The lane accumulators of the portable loop (the counts all in lane 0: only their
        /// totals matter), with the scalar tail `tail` (`(lane, −Δ̃, kl)` of valid tokens).
        unsafe fn finish(mut self, tail: &[(usize, f32, f32)], tail_counts: [u64; 4]) -> (PolicyStats, KlStats) {
            self.counts.flush();
            let (mut ndt, mut kl) = (self.ndt.lanes(), self.kl.lanes());
            for &(k, x, v) in tail {
                ndt[k] += x as f64;
                kl[k] += v as f64;
            }
            let mut c = self.counts.total;
            for (ci, t) in c.iter_mut().zip(tail_counts) {
                *ci += t;
            }
            let lane0 = |x: u64| {
                let mut a = [0u64; LANES];
                a[0] = x;
                a
            };
            let acc = LaneAcc { valid: lane0(c[0]), high: lane0(c[1]), low: lane0(c[2]), dual: lane0(c[3]), sum: ndt };
            let acc_kl = LaneAcc { sum: kl, ..acc };
            (acc.into_stats(), acc_kl.into_kl())
        }
    }

    /// Whether the 16 tokens at `i` are all masked: their outputs are then `0`, and their
    /// contributions to every sum `+0.0` and to every count `0`, which change nothing (an `f64`
    /// lane starts at `+0.0` and so never holds `−0.0`, for which adding `+0.0` is the
    /// identity); the loops write the zeros and skip the arithmetic — the padding after each
    /// response.
    #[inline(always)]
    unsafe fn all_masked16(mask: &[u8], i: usize) -> bool {
        let m = _mm_loadu_si128(mask.as_ptr().add(i) as *const __m128i);
        _mm_testz_si128(m, m) == 1
    }

    /// Zeros 16 outputs of both arrays at `i`.
    #[inline(always)]
    unsafe fn zero16(a: &mut [f32], b: &mut [f32], i: usize) {
        let z = _mm256_setzero_ps();
        for o in [a, b] {
            _mm256_storeu_ps(o.as_mut_ptr().add(i), z);
            _mm256_storeu_ps(o.as_mut_ptr().add(i + 8), z);
        }
    }

    /// Whether the log-ratio clamp keeps `exp`'s argument in `[−87, 87]` (see [`exp8`]).
    /// (k3 with verl's clamps keeps its argument in `[−20, 20]`.)
    pub(super) fn bounded(p: Params) -> bool {
        p.lo >= -87.0 && p.hi <= 87.0
    }

    /// One scalar token (the tails): `(ℓ, ∂ℓ/∂logp, −Δ̃, kl, flags)`, exactly `map_chunk_kl`.
    #[inline(always)]
    pub(super) fn tok1(ins: &Ins<'_>, i: usize, p: Params, coef: f32, clamps: bool) -> (f32, f32, f32, f32, [bool; 4]) {
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

    /// Runs `$finish!(i, tok8(i))` over the groups of 8 tokens in `[$lo, $hi)` (a multiple of
    /// 8 long), four groups per iteration so that their `exp` chains overlap; a run of 32
    /// padding tokens gets its zeros in `$a` and `$b` written directly ([`all_masked16`]).
    /// Expands inside a function generic over `W, BR, BK`. (A macro, not a closure: a closure
    /// would not inherit the target features.)
    macro_rules! groups_of_8 {
        ($ins:expr, $q:expr, $lo:expr, $hi:expr, $a:expr, $b:expr, $finish:ident) => {{
            let (lo, hi) = ($lo, $hi);
            let quads = hi - (hi - lo) % 32;
            for i in (lo..quads).step_by(32) {
                if all_masked16($ins.mask, i) && all_masked16($ins.mask, i + 16) {
                    zero16($a, $b, i);
                    zero16($a, $b, i + 16);
                    continue;
                }
                let t0 = tok8::<W, BR, BK>($ins, i, $q);
                let t1 = tok8::<W, BR, BK>($ins, i + 8, $q);
                let t2 = tok8::<W, BR, BK>($ins, i + 16, $q);
                let t3 = tok8::<W, BR, BK>($ins, i + 24, $q);
                $finish!(i, t0);
                $finish!(i + 8, t1);
                $finish!(i + 16, t2);
                $finish!(i + 24, t3);
            }
            for i in (quads..hi).step_by(8) {
                $finish!(i, tok8::<W, BR, BK>($ins, i, $q));
            }
        }};
    }

    /// [`super::ppo_clip_kl_loss`] with a `K3` KL, over the flat index.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn flat_avx2(
        ins: &Ins<'_>,
        p: Params,
        coef: f32,
        clamps: bool,
        loss: &mut [f32],
        grad: &mut [f32],
    ) -> (PolicyStats, KlStats) {
        flat_any(ins, p, coef, clamps, loss, grad)
    }

    #[inline(always)]
    unsafe fn flat_any(
        ins: &Ins<'_>,
        p: Params,
        coef: f32,
        clamps: bool,
        loss: &mut [f32],
        grad: &mut [f32],
    ) -> (PolicyStats, KlStats) {
        specialize!(flat_w(ins, p, coef, clamps, loss, grad) for ins, p, clamps)
    }

    #[inline(always)]
    unsafe fn flat_w<const W: bool, const BR: bool, const BK: bool>(
        ins: &Ins<'_>,
        p: Params,
        coef: f32,
        clamps: bool,
        loss: &mut [f32],
        grad: &mut [f32],
    ) -> (PolicyStats, KlStats) {
        let n = ins.lp.len();
        let q = Cfg8::new(p, coef, clamps);
        let mut acc = Acc::new();
        let full = n - n % 8;
        macro_rules! one {
            ($i:expr, $t:expr) => {{
                let (i, t): (usize, Tok8) = ($i, $t);
                _mm256_storeu_ps(loss.as_mut_ptr().add(i), t.l);
                _mm256_storeu_ps(grad.as_mut_ptr().add(i), t.g);
                acc.add(&t);
            }};
        }
        // Blocks of 2^20 tokens keep the `i32` counts far from overflow.
        for o in (0..full).step_by(1 << 20) {
            let e = (o + (1 << 20)).min(full);
            groups_of_8!(ins, &q, o, e, loss, grad, one);
            acc.counts.flush();
        }
        let mut tail = [(0usize, 0.0f32, 0.0f32); 8];
        let mut tc = [0u64; 4];
        for (j, i) in (full..n).enumerate() {
            let (l, g, ndt, kv, f) = tok1(ins, i, p, coef, clamps);
            loss[i] = l;
            grad[i] = g;
            tail[j] = (i % LANES, ndt, kv);
            for (c, b) in tc.iter_mut().zip(f) {
                *c += b as u64;
            }
        }
        acc.finish(&tail[..n - full], tc)
    }

    /// [`super::ppo_clip_kl_step`] with a `K3` KL, row by row (`cols` a multiple of 8, so that
    /// lane = column mod 8 = flat index mod 8): writes `ℓ` and `g_logp`, returns `L`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn step_avx2(
        ins: &Ins<'_>,
        cols: usize,
        p: Params,
        coef: f32,
        clamps: bool,
        plan: &Plan,
        loss: &mut [f32],
        g_logp: &mut [f32],
    ) -> (f32, PolicyStats, KlStats) {
        step_any(ins, cols, p, coef, clamps, plan, loss, g_logp)
    }

    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn step_any(
        ins: &Ins<'_>,
        cols: usize,
        p: Params,
        coef: f32,
        clamps: bool,
        plan: &Plan,
        loss: &mut [f32],
        g_logp: &mut [f32],
    ) -> (f32, PolicyStats, KlStats) {
        specialize!(step_w(ins, cols, p, coef, clamps, plan, loss, g_logp) for ins, p, clamps)
    }

    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn step_w<const W: bool, const BR: bool, const BK: bool>(
        ins: &Ins<'_>,
        cols: usize,
        p: Params,
        coef: f32,
        clamps: bool,
        plan: &Plan,
        loss: &mut [f32],
        g_logp: &mut [f32],
    ) -> (f32, PolicyStats, KlStats) {
        debug_assert!(cols % 8 == 0 && cols > 0);
        let n = ins.lp.len();
        let q = Cfg8::new(p, coef, clamps);
        let mut acc = Acc::new();
        let mut total = 0.0f64;
        for o in (0..n).step_by(cols) {
            // The row weight exactly as `agg_chain_in_place`, the row sum as `agg_loss`.
            let len = if plan.per_row_mean { count_valid(&ins.mask[o..o + cols]) } else { 0 };
            let k = if plan.per_row_mean && len > 0 { plan.k / len as f64 } else { plan.k } as f32;
            let kv8 = splat(k);
            let k_on = if k != 0.0 { _mm256_castsi256_ps(_mm256_set1_epi32(-1)) } else { _mm256_setzero_ps() };
            let mut row = Sum8::zero();
            // (A macro, not a closure: a closure would not inherit the target features.)
            macro_rules! finish {
                ($i:expr, $t:expr) => {{
                    let (i, t): (usize, Tok8) = ($i, $t);
                    _mm256_storeu_ps(loss.as_mut_ptr().add(i), t.l);
                    row.add(t.l);
                    // `agg_chain_in_place`: `m ≠ 0 ∧ k ≠ 0 ? k·(0 + 1·d) : 0` (`1·d` is `d`).
                    let x = _mm256_add_ps(_mm256_setzero_ps(), t.g);
                    let on = _mm256_and_ps(t.valid, k_on);
                    _mm256_storeu_ps(g_logp.as_mut_ptr().add(i), _mm256_and_ps(on, _mm256_mul_ps(kv8, x)));
                    acc.add(&t);
                }};
            }
            groups_of_8!(ins, &q, o, o + cols, loss, g_logp, finish);
            acc.counts.flush();
            let mut sum = 0.0f64;
            for s in row.lanes() {
                sum += s;
            }
            if plan.per_row_mean {
                total += if len > 0 { sum / len as f64 } else { 0.0 };
            } else {
                total += sum;
            }
        }
        let l = if plan.k == 0.0 { 0.0 } else { (total * plan.k) as f32 };
        let (ps, ks) = acc.finish(&[], [0; 4]);
        (l, ps, ks)
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::policy_loss::BatchShape;

    /// The AVX2 build of the loop gives the same bits as the portable one.
    #[test]
    fn avx2_matches_portable_bitwise() {
        if Backend::detect() != Backend::Avx2Fma {
            return;
        }
        let n = 3 * CHUNK + 13;
        let f = |i: usize, k: u32| {
            (((i as u32) ^ k.wrapping_mul(0x9E37_79B9))
                .wrapping_mul(2_654_435_761)
                .rotate_left(13)
                .wrapping_mul(0x85EB_CA6B)
                >> 8) as f32
                / (1u32 << 24) as f32
        };
        let lp: Vec<f32> = (0..n).map(|i| -6.0 * f(i, 1)).collect();
        let old: Vec<f32> = (0..n).map(|i| lp[i] + 6.0 * (f(i, 2) - 0.5)).collect();
        let adv: Vec<f32> = (0..n).map(|i| 4.0 * (f(i, 3) - 0.5)).collect();
        let mask: Vec<u8> = (0..n).map(|i| (f(i, 4) > 0.2) as u8).collect();
        let w: Vec<f32> = (0..n).map(|i| 2.0 * f(i, 5)).collect();
        let inp = PolicyInputs {
            shape: BatchShape::new(1, n),
            logp: &lp,
            old_logp: &old,
            adv: &adv,
            mask: &mask,
            is_weights: Some(&w),
        };
        let p = Params { lo: -20.0, hi: 20.0, r_lo: 0.8, r_hi: 1.28, c: 3.0 };
        let (mut l1, mut g1, mut l2, mut g2) = (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        let a1 = drive(&inp, p, LossOut { loss: &mut l1, dloss_dlogp: &mut g1 }).into_stats();
        let a2 = unsafe { drive_avx2(&inp, p, LossOut { loss: &mut l2, dloss_dlogp: &mut g2 }) }.into_stats();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&l1), bits(&l2));
        assert_eq!(bits(&g1), bits(&g2));
        assert_eq!(a1, a2);
        assert!(a1.clipped_high > 0 && a1.clipped_low > 0 && a1.clipped_dual > 0, "{a1:?}");
        // The fused PPO + k3 loop, both builds.
        let refl: Vec<f32> = (0..n).map(|i| lp[i] + 50.0 * (f(i, 6) - 0.5)).collect();
        let kl = KlTerm { ref_logp: &refl, cfg: KlCfg::default(), coef: 0.3 };
        let k3 = |d: f32| crate::policy_loss::kl::k3(d, true);
        let (b1, k1) = drive_kl(&inp, p, &kl, &k3, LossOut { loss: &mut l1, dloss_dlogp: &mut g1 });
        let (b2, k2) = unsafe { drive_kl_avx2(&inp, p, &kl, &k3, LossOut { loss: &mut l2, dloss_dlogp: &mut g2 }) };
        assert_eq!(bits(&l1), bits(&l2));
        assert_eq!(bits(&g1), bits(&g2));
        assert_eq!((b1.into_stats(), k1.into_kl()), (b2.into_stats(), k2.into_kl()));
    }

    /// A deterministic pseudo-random `f32` in `[0, 1)`.
    fn u(i: usize, k: u32) -> f32 {
        (((i as u32) ^ k.wrapping_mul(0x9E37_79B9))
            .wrapping_mul(2_654_435_761)
            .rotate_left(13)
            .wrapping_mul(0x85EB_CA6B)
            >> 8) as f32
            / (1u32 << 24) as f32
    }

    /// Inputs with every edge case the kernels select on: clip boundaries, huge log-ratios,
    /// NaN and ±inf (also at masked positions), `A = ±0`, `−0.0` log-probs.
    /// `logp, old_logp, adv, mask, w_is, ref_logp`.
    type Inputs = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<u8>, Vec<f32>, Vec<f32>);

    fn edge_inputs(n: usize) -> Inputs {
        let specials = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -0.0,
            0.0,
            30.0,
            -30.0,
            100.0,
            -100.0,
            1.2f32.ln(),
            0.8f32.ln(),
        ];
        let mut lp: Vec<f32> = (0..n).map(|i| -6.0 * u(i, 1)).collect();
        let mut old: Vec<f32> = (0..n).map(|i| lp[i] + 1.5 * (u(i, 2) - 0.5)).collect();
        let mut adv: Vec<f32> = (0..n).map(|i| 4.0 * (u(i, 3) - 0.5)).collect();
        let mut mask: Vec<u8> = (0..n).map(|i| if u(i, 4) > 0.15 { 1 + (i % 3) as u8 } else { 0 }).collect();
        if n >= 200 {
            mask[64..170].fill(0); // whole masked blocks of 16 and 32 tokens (skipped by the loops)
        }
        let w: Vec<f32> = (0..n).map(|i| 2.0 * u(i, 5)).collect();
        let mut rf: Vec<f32> = (0..n).map(|i| lp[i] + 50.0 * (u(i, 6) - 0.5)).collect();
        for i in 0..n {
            match i % 29 {
                3 => lp[i] = specials[(i / 29) % specials.len()],
                7 => old[i] = lp[i] - specials[(i / 29 + 3) % specials.len()],
                11 => adv[i] = [0.0, -0.0, f32::NAN, 1e30, -1e30][(i / 29) % 5],
                13 => rf[i] = specials[(i / 29 + 5) % specials.len()],
                17 => old[i] = lp[i] - [1.2f32.ln(), 0.8f32.ln(), 3.0f32.ln(), 20.0, -20.0][(i / 29) % 5],
                _ => {}
            }
        }
        (lp, old, adv, mask, w, rf)
    }

    /// The bits, every NaN as one pattern: Rust leaves the sign and payload of a NaN result
    /// unspecified (LLVM may commute `a + b`, and `x86` returns the first operand's NaN), so
    /// "identical bits" means identical bits for every non-NaN value and NaN where NaN.
    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| if x.is_nan() { f32::NAN.to_bits() } else { x.to_bits() }).collect()
    }

    fn bits64(x: f64) -> u64 {
        if x.is_nan() {
            f64::NAN.to_bits()
        } else {
            x.to_bits()
        }
    }

    /// Stats compared bit for bit (`PartialEq` would fail on two NaN sums).
    fn stat_bits(p: PolicyStats, k: KlStats) -> [u64; 7] {
        [
            p.valid_tokens,
            p.clipped_high,
            p.clipped_low,
            p.clipped_dual,
            bits64(p.neg_log_ratio_sum),
            k.valid_tokens,
            bits64(k.kl_sum),
        ]
    }

    fn cfgs() -> [ClipCfg; 4] {
        [
            ClipCfg::default(),
            ClipCfg::trl(),
            ClipCfg { log_ratio_clamp: Some(100.0), ..ClipCfg::dapo() },
            ClipCfg { eps_low: 1.0, eps_high: 3.0, dual_clip_c: Some(2.0), log_ratio_clamp: Some(87.0) },
        ]
    }

    /// `exp8`/`exp16` give `exp_f32`'s bits: everywhere unbounded, on `[−87, 87]` bounded.
    #[test]
    fn vector_exp_matches_exp_f32_bitwise() {
        use core::arch::x86_64::*;
        if Backend::detect() != Backend::Avx2Fma {
            return;
        }
        let mut xs: Vec<f32> = (0..200_000).map(|i| -110.0 + 205.0 * u(i, 9)).collect();
        xs.extend([f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0, 87.0, -87.0, 88.72, 89.5, -103.9, -104.5]);
        xs.extend((0..100_000).map(|i| 174.0 * u(i, 10) - 87.0));
        while xs.len() % 16 != 0 {
            xs.push(1.0);
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn run8<const B: bool>(x: &[f32], out: &mut [f32]) {
            for (c, o) in x.chunks_exact(8).zip(out.chunks_exact_mut(8)) {
                _mm256_storeu_ps(o.as_mut_ptr(), avx2::exp8::<B>(_mm256_loadu_ps(c.as_ptr())));
            }
        }
        let want: Vec<u32> = xs.iter().map(|&x| exp_f32(x).to_bits()).collect();
        let mut got = vec![0.0f32; xs.len()];
        unsafe { run8::<false>(&xs, &mut got) };
        assert_eq!(bits(&got), want);
        let inside: Vec<usize> = (0..xs.len()).filter(|&i| xs[i].is_nan() || xs[i].abs() <= 87.0).collect();
        unsafe { run8::<true>(&xs, &mut got) };
        assert!(inside.iter().all(|&i| got[i].to_bits() == want[i]));
    }

    /// The AVX2 PPO + k3 loop of `ppo_clip_kl_loss` gives the portable loop's bits,
    /// for every clip / clamp variant, with and without importance weights, at every tail
    /// length.
    #[test]
    fn vector_kl_loops_match_portable_bitwise() {
        if Backend::detect() != Backend::Avx2Fma {
            return;
        }
        for n in [0, 1, 7, 8, 15, 16, 17, 33, 3 * CHUNK + 13, 4000] {
            let (lp, old, adv, mask, w, rf) = edge_inputs(n);
            for with_w in [false, true] {
                let inp = PolicyInputs {
                    shape: BatchShape::new(1, n),
                    logp: &lp,
                    old_logp: &old,
                    adv: &adv,
                    mask: &mask,
                    is_weights: with_w.then_some(&w[..]),
                };
                for cfg in cfgs() {
                    for clamps in [true, false] {
                        let kl =
                            KlTerm { ref_logp: &rf, cfg: KlCfg { kind: KlKind::K3, verl_clamps: clamps }, coef: 0.3 };
                        let p = params(&cfg);
                        let k3f = |d: f32| crate::policy_loss::kl::k3(d, clamps);
                        let (mut l0, mut g0) = (vec![0.0; n], vec![0.0; n]);
                        let (a, b) = drive_kl(&inp, p, &kl, &k3f, LossOut { loss: &mut l0, dloss_dlogp: &mut g0 });
                        let want = stat_bits(a.into_stats(), b.into_kl());
                        let ins = avx2_ins(&inp, &kl);
                        let (mut l1, mut g1) = (vec![0.0; n], vec![0.0; n]);
                        let (a, b) = unsafe { avx2::flat_avx2(&ins, p, 0.3, clamps, &mut l1, &mut g1) };
                        let what = format!("n={n} w={with_w} {cfg:?} clamps={clamps}");
                        assert_eq!((bits(&l1), bits(&g1)), (bits(&l0), bits(&g0)), "avx2 {what}");
                        assert_eq!(stat_bits(a, b), want, "avx2 {what}");
                    }
                }
            }
        }
    }

    /// The fused AVX2 step gives the bits of the portable loop followed by
    /// `agg_loss` and `agg_chain_in_place`, for every aggregation mode.
    #[test]
    fn vector_steps_match_portable_composition_bitwise() {
        use crate::policy_loss::{agg_chain_in_place, agg_loss};
        if Backend::detect() != Backend::Avx2Fma {
            return;
        }
        let modes =
            [AggMode::TokenMean, AggMode::SeqMeanTokenSum, AggMode::SeqMeanTokenMean, AggMode::SeqMeanTokenSumNorm];
        let norms = [
            AggNorm::default(),
            AggNorm { global_tokens: Some(100_000), global_seqs: Some(1000), dp_size: 4, scale_factor: Some(3.5) },
        ];
        for (rows, cols) in [(5, 16), (3, 8), (4, 48), (2, 256), (7, 96)] {
            let n = rows * cols;
            let (lp, old, adv, mut mask, w, rf) = edge_inputs(n);
            mask[..cols].fill(0); // an empty row
            let shape = BatchShape::new(rows, cols);
            for with_w in [false, true] {
                let inp = PolicyInputs {
                    shape,
                    logp: &lp,
                    old_logp: &old,
                    adv: &adv,
                    mask: &mask,
                    is_weights: with_w.then_some(&w[..]),
                };
                for cfg in cfgs() {
                    for clamps in [true, false] {
                        let kl =
                            KlTerm { ref_logp: &rf, cfg: KlCfg { kind: KlKind::K3, verl_clamps: clamps }, coef: -0.7 };
                        let p = params(&cfg);
                        let k3f = |d: f32| crate::policy_loss::kl::k3(d, clamps);
                        let (mut l0, mut g0) = (vec![0.0; n], vec![0.0; n]);
                        let (a, b) = drive_kl(&inp, p, &kl, &k3f, LossOut { loss: &mut l0, dloss_dlogp: &mut g0 });
                        let st = stat_bits(a.into_stats(), b.into_kl());
                        for mode in modes {
                            for norm in &norms {
                                let want_l = agg_loss(&l0, &mask, shape, mode, norm).unwrap();
                                let mut want_g = g0.clone();
                                agg_chain_in_place(&mask, shape, mode, norm, &mut want_g).unwrap();
                                let plan = crate::policy_loss::aggregation::plan(&mask, shape, mode, norm).unwrap();
                                let ins = avx2_ins(&inp, &kl);
                                let what =
                                    format!("{rows}x{cols} w={with_w} {cfg:?} clamps={clamps} {mode:?} {norm:?}");
                                let (mut l1, mut g1) = (vec![0.0; n], vec![0.0; n]);
                                let (sl, a, b) =
                                    unsafe { avx2::step_avx2(&ins, cols, p, -0.7, clamps, &plan, &mut l1, &mut g1) };
                                assert_eq!((bits(&l1), bits(&g1)), (bits(&l0), bits(&want_g)), "avx2 {what}");
                                assert_eq!((bits(&[sl]), stat_bits(a, b)), (bits(&[want_l]), st), "avx2 {what}");
                            }
                        }
                    }
                }
            }
        }
    }
}
