//! KL estimators between the current and the reference policy, per token, forward and
//! gradient w.r.t. `logp` \[code\] (verl `kl_penalty_forward`, `kl_penalty`; spec `policy.md`
//! §4.7; Schulman, *Approximating KL Divergence*).
//!
//! With `d = logp − ref_logp`:
//!
//! | kind | value | `∂/∂logp` |
//! |---|---|---|
//! | `K1` ("kl", "k1") | `d` | `1` |
//! | `Abs` ("abs") | `\|d\|` | `sign(d)` (0 at 0) |
//! | `K2` ("mse", "k2") | `½·d²` | `d` |
//! | `K3` ("low_var_kl", "k3") | `e^{−d} + d − 1` | `1 − e^{−d}` |
//! | `K3`, verl clamps | `δ = clamp(−d, ±20)`, `k = clamp(e^δ − δ − 1, ±10)` | `(1 − e^δ)·1[\|d\| ≤ 20]·1[\|k\| ≤ 10]` |
//! | `K1Plus`, `K3Plus` | the value of `K1` / `K3` | the gradient of `K2`: `d` |
//!
//! The "+" kinds are the straight-through construction `k2 − sg(k2) + sg(k_x)` documented in
//! verl's `kl_penalty`. At the verl commit cited (`b178a3cd`) `kl_penalty_forward` does not
//! accept the `+` suffix (it raises), so the library implements the documented intent
//! \[library choice\]. `k3 ≥ 0` mathematically (the `−10` clamp never acts).
//!
//! In the actor loss (verl `dp_actor.py`) the KL term is `kl_loss_coef·agg(kl)` with the same
//! aggregation mode as the policy term; pass `(kl_loss_coef, grad)` to
//! [`super::logp_upstream`]. TRL adds `β·k3` (no clamps: [`KlCfg::trl`]) to each token's loss.

use super::metrics::{flags_of, ChunkScratch, KlStats, LaneAcc, CHUNK};
use super::ratio::clamp;
use super::{check_backend, BatchShape, LossOut};
use crate::error::{check_len, TmError};
use crate::exp::exp_full;
use crate::platform::Exec;

/// Which KL estimator (verl's `kl_loss_type` names in parentheses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KlKind {
    /// `d` ("kl", "k1").
    K1,
    /// `|d|` ("abs").
    Abs,
    /// `½d²` ("mse", "k2").
    K2,
    /// `e^{−d} + d − 1` ("low_var_kl", "k3").
    K3,
    /// Value of `K1`, gradient of `K2` ("k1+").
    K1Plus,
    /// Value of `K3`, gradient of `K2` ("k3+").
    K3Plus,
}

/// Configuration of [`kl_loss`].
///
/// `Default` is verl's actor KL loss \[code\] (`actor.yaml`, `b178a3cd`): `kl_loss_type =
/// low_var_kl` (`K3`) with verl's clamps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KlCfg {
    /// The estimator.
    pub kind: KlKind,
    /// Apply verl's `low_var_kl` clamps (`−d` to `±20`, the value to `±10`); affects `K3` and
    /// `K3Plus` only.
    pub verl_clamps: bool,
}

impl Default for KlCfg {
    fn default() -> Self {
        KlCfg { kind: KlKind::K3, verl_clamps: true }
    }
}

impl KlCfg {
    /// TRL's per-token KL \[code\]: `k3` without clamps.
    pub fn trl() -> Self {
        KlCfg { kind: KlKind::K3, verl_clamps: false }
    }
}

/// Binds `$f` to the estimator `d ↦ (value, ∂/∂logp)` of the [`KlCfg`] `$cfg` and evaluates
/// `$body` in each arm of a `match` on the kind: every arm is monomorphic (no per-token
/// dispatch).
macro_rules! with_kl_fn {
    ($cfg:expr, |$f:ident| $body:expr) => {{
        let clamps: bool = $cfg.verl_clamps;
        match $cfg.kind {
            KlKind::K1 => {
                let $f = |d: f32| (d, 1.0f32);
                $body
            }
            KlKind::Abs => {
                let $f = |d: f32| {
                    (
                        d.abs(),
                        if d > 0.0 {
                            1.0f32
                        } else if d < 0.0 {
                            -1.0
                        } else {
                            0.0
                        },
                    )
                };
                $body
            }
            KlKind::K2 => {
                let $f = |d: f32| (0.5 * d * d, d);
                $body
            }
            KlKind::K3 => {
                let $f = |d: f32| $crate::policy_loss::kl::k3(d, clamps);
                $body
            }
            KlKind::K1Plus => {
                let $f = |d: f32| (d, d);
                $body
            }
            KlKind::K3Plus => {
                let $f = |d: f32| ($crate::policy_loss::kl::k3(d, clamps).0, d);
                $body
            }
        }
    }};
}
pub(crate) use with_kl_fn;

/// One token of an estimator: `d = logp − ref_logp`, NaN value and gradient for a NaN `d`.
#[inline(always)]
pub(crate) fn kl_token(f: &impl Fn(f32) -> (f32, f32), lp: f32, rf: f32) -> (f32, f32) {
    let d = lp - rf;
    let (v, g) = f(d);
    let nan = d.is_nan();
    (if nan { f32::NAN } else { v }, if nan { f32::NAN } else { g })
}

/// k3's clamps `(lo, hi)` of `−d` and `(klo, khi)` of the value: verl's `±20`, `±10`, or none.
#[inline(always)]
pub(crate) fn k3_bounds(clamps: bool) -> (f32, f32, f32, f32) {
    if clamps {
        (-20.0, 20.0, -10.0, 10.0)
    } else {
        (f32::NEG_INFINITY, f32::INFINITY, f32::NEG_INFINITY, f32::INFINITY)
    }
}

/// One token of `K3`: `(value, ∂/∂logp)` of `d = logp − ref_logp`, with or without verl's
/// clamps ([`k3_bounds`]).
#[inline(always)]
pub(crate) fn k3(d: f32, clamps: bool) -> (f32, f32) {
    let (lo, hi, klo, khi) = k3_bounds(clamps);
    let nd = -d;
    let delta = clamp(nd, lo, hi);
    let e = exp_full(delta);
    let k = e - delta - 1.0;
    let kc = clamp(k, klo, khi);
    let pass = (nd >= lo) & (nd <= hi) & (k >= klo) & (k <= khi);
    (kc, if pass { 1.0 - e } else { 0.0 })
}

/// The reduction-free per-token map over one chunk (vectorises; the slices are distinct
/// function arguments, so the compiler knows they do not alias).
#[inline(always)]
fn map_chunk(
    ins: (&[f32], &[f32], &[u8]),
    val: &mut [f32],
    grad: &mut [f32],
    x: &mut [f32],
    flags: &mut [u8],
    f: &impl Fn(f32) -> (f32, f32),
) {
    let (logp, ref_logp, mask) = ins;
    let outs = val.iter_mut().zip(grad.iter_mut()).zip(x.iter_mut().zip(flags.iter_mut()));
    for (((&lp, &rf), &m), ((v_out, g_out), (x_out, f_out))) in logp.iter().zip(ref_logp).zip(mask).zip(outs) {
        let (v, g) = kl_token(f, lp, rf);
        let valid = m != 0;
        *v_out = if valid { v } else { 0.0 };
        *g_out = if valid { g } else { 0.0 };
        *x_out = if valid { v } else { 0.0 };
        *f_out = flags_of(valid, false, false, false);
    }
}

/// The chunk loop (compiled once per backend: see the dispatch in `policy_loss/mod.rs`).
#[inline(always)]
pub(super) fn run_body(io: (&[f32], &[f32], &[u8], LossOut<'_>), f: impl Fn(f32) -> (f32, f32)) -> KlStats {
    let (logp, ref_logp, mask, out) = io;
    let n = logp.len();
    let mut acc = LaneAcc::default();
    let mut scratch = ChunkScratch::new();
    // Two phases per chunk: a reduction-free map (vectorises), then the metric lanes.
    for o in (0..n).step_by(CHUNK) {
        let e = (o + CHUNK).min(n);
        let (x, flags) = scratch.parts(e - o);
        let ins = (&logp[o..e], &ref_logp[o..e], &mask[o..e]);
        map_chunk(ins, &mut out.loss[o..e], &mut out.dloss_dlogp[o..e], x, flags, &f);
        acc.add_chunk(x, flags);
    }
    acc.into_kl()
}

/// Per-token KL estimator `kl[b,t]` and `∂kl/∂logp`, written into `out` (0 at masked
/// positions). A NaN `logp` or `ref_logp` at a valid position gives NaN value and gradient.
/// Returns the sum and count for the `kl` metric.
///
/// Errors: [`TmError::LengthMismatch`] for a buffer that is not `B·T` long;
/// [`TmError::BackendUnavailable`] for a backend this CPU lacks.
pub fn kl_loss(
    exec: Exec,
    shape: BatchShape,
    mask: &[u8],
    logp: &[f32],
    ref_logp: &[f32],
    cfg: &KlCfg,
    out: LossOut<'_>,
) -> Result<KlStats, TmError> {
    check_backend(exec)?;
    let n = shape.numel()?;
    check_len("logp", n, logp.len())?;
    check_len("ref_logp", n, ref_logp.len())?;
    check_len("mask", n, mask.len())?;
    out.validate(n)?;
    let io = (logp, ref_logp, mask, out);
    // The kind is matched once, outside the loop: each arm is its own monomorphic loop.
    let st = with_kl_fn!(cfg, |f| super::kl_loop(exec.backend(), io, f));
    Ok(st)
}
