//! Per-token policy losses (PPO clip, dual-clip, GSPO, CISPO, SAPO), KL estimators, rollout
//! importance weights and loss aggregation, forward and gradient w.r.t. the log-probs.
//!
//! # How the pieces chain
//!
//! A trainer step is `L = agg(ℓ, mask)` with a per-token loss `ℓ[b,t]` (spec `policy.md`
//! §4–5). Every loss kernel here writes `ℓ[b,t]` and `∂ℓ[b,t]/∂logp[b,t]`; the aggregation
//! gives the scalar `L` ([`agg_loss`]) and the weights `w[b,t] = ∂L/∂ℓ[b,t]`
//! ([`agg_weights`]); [`logp_upstream`] fuses `g_logp = w ⊙ Σ_k c_k·∂ℓ_k/∂logp`, the
//! per-token upstream that [`crate::logits::stats_bwd`] takes as `Upstream::g_logp`, and
//! [`entropy_upstream`] gives `g_entropy = −c·w` for an entropy bonus (§4.9). So
//!
//! ```text
//! L      = agg(ℓ_pg + β·kl, mask) − c_H·agg(H, mask)       (verl dp_actor: kl_loss_coef β, entropy_coeff c_H)
//! g_logp = w ⊙ (∂ℓ_pg/∂logp + β·∂kl/∂logp),   g_H = −c_H·w
//! ```
//!
//! The aggregation is linear and uses the same mask for every term, so `agg(ℓ_pg) + β·agg(kl)
//! = agg(ℓ_pg + β·kl)`: one call to [`agg_loss`] per term, or one on the sum. The fast path
//! for PPO with a KL loss is three passes over the tokens:
//!
//! ```text
//! ppo_clip_kl_loss(exec, inp, &ClipCfg::default(), &KlTerm { ref_logp, cfg: KlCfg::default(), coef: β }, out)
//! L      = agg_loss(exec, shape, mask, out.loss, AggMode::TokenMean, &norm)
//! g_logp = agg_chain_inplace(exec, shape, mask, AggMode::TokenMean, &norm, out.dloss_dlogp)   // in place
//! ```
//!
//! [`ppo_clip_kl_step`] does the same three steps in one pass over the tokens (after a count of
//! the mask), with bitwise the same `ℓ`, `g_logp`, `L` and metrics (a NaN's sign and payload
//! aside, which Rust leaves unspecified).
//!
//! # The per-token losses (`Δ = logp − old_logp`, `A` the advantage)
//!
//! | kernel | loss | `∂ℓ/∂logp` |
//! |---|---|---|
//! | [`ppo_clip_loss`], [`ppo_clip_kl_loss`] (verl `compute_policy_loss_vanilla`) | `r = exp(clamp(Δ, ±20))`, `l1 = −A r`, `l2 = −A clamp(r, 1−ε_low, 1+ε_high)`, `lc = max(l1, l2)`, `ℓ = A < 0 ? min(lc, −A c) : lc` | `−A r κ`, `κ` the "active" indicator |
//! | [`gspo_loss`] (verl `compute_policy_loss_gspo`) | `s_b = exp(min(Σ_t mask·Δ / max(L_b,1), 10))`, `ℓ = max(−A s_b, −A clamp(s_b, …))` | `−A s_b κ` (stop-gradient structure: no cross-token terms) |
//! | [`cispo_loss`] | `ℓ = −sg(w)·A·logp`, `w = clamp(r, w_min, w_max)` | `−w A` |
//! | [`sapo_loss`] | `ℓ = −A·σ(τ(r−1))·4/τ` | `−4 A r σ (1−σ)` |
//! | [`kl_loss`] | k1 / abs / k2 / k3 (+ straight-through k1+, k3+) of `logp − ref_logp` | per kind |
//!
//! An optional rollout importance weight `w_is` (constant, §4.8; [`tis_weights`] computes
//! truncated ones) multiplies `ℓ` and its gradient.
//!
//! # Shared conventions and edge-case policies
//!
//! * Arrays are `[B,T]` row-major, length `B·T` ([`BatchShape`]); `mask` is `u8`, any non-zero
//!   byte is a valid token.
//! * A masked position never influences anything: its `ℓ` and gradient are written as `0`
//!   by a select (never `x·mask`), whatever its inputs (NaN, ±inf). Its inputs are not
//!   validated.
//! * A NaN in a valid position's `logp`, `old_logp`, `ref_logp`, `A` or `w_is` gives NaN `ℓ`
//!   and NaN gradient at that position (it is not silently zeroed), and is counted in the
//!   metrics' `valid_tokens`; the `ppo_kl` sum becomes NaN when `Δ` is NaN.
//! * `A = 0` gives `ℓ = 0` and gradient 0 exactly, even if the ratio overflowed to `+inf`
//!   without a log-ratio clamp (where PyTorch would give `0·inf = NaN`) \[library choice\].
//! * Lengths that do not match [`BatchShape`] give [`TmError::LengthMismatch`]; invalid
//!   hyper-parameters give [`TmError::InvalidArgument`]; both are checked before any output
//!   is written. Empty inputs (`B·T = 0`) are valid and do nothing.
//! * Metrics ([`PolicyStats`], [`KlStats`]) are sums and counts accumulated in `f64`/`u64` in
//!   an order fixed by the shape alone (see [`PolicyStats`]): deterministic, independent of
//!   the CPU path, and mergeable across micro-batches.
//!
//! # The shape of a kernel, and its backends
//!
//! Every kernel takes an [`Exec`] first, then its inputs (a [`PolicyInputs`], or the shape,
//! the mask and the per-token arrays in that order), then its configuration, then its outputs
//! (a [`LossOut`] or a named slice). [`Exec::backend`] picks the instruction set; every
//! backend gives the **same bits** (a NaN's sign and payload aside, which Rust leaves
//! unspecified), so the choice only changes speed; a backend this CPU lacks is
//! [`TmError::BackendUnavailable`]. The kernels are single-threaded: [`Exec::threads`] is not
//! used (they stream memory; split a batch across calls instead).
//!
//! The backend is mapped to a compiled loop in one place, the dispatch section of this file.
//! The clip and KL kernels run in chunks of 256 tokens, each a reduction-free elementwise map
//! over contiguous `f32` slices (selects, no per-token dispatch; the estimator kind is matched
//! once per call) followed by the metric lanes; on x86-64 the same Rust code is also compiled
//! with AVX2 (`x86_avx2.rs`) and with AVX-512 (`x86_avx512.rs`) enabled — identical bits, since
//! Rust never contracts `a·b + c` into an FMA. `exp` is a branch-free Cephes-style polynomial
//! (within 2 ulp; `crate::exp`). The PPO + k3 loop (the default KL) is hand-vectorised in
//! both files, and [`ppo_clip_kl_step`] fuses it with the aggregation.
//!
//! # Not here
//! TRL/HAPO aggregation modes, TRL's `δ` two-sided cap, per-token clip
//!   widths (HAPO), DAPO's group filter and overlong shaping (spec §4.3). The top-entropy mask
//!   and the other seed methods are in [`crate::seed`].
//!
//! Provenance follows the spec: defaults reproduce verl at commit `b178a3cd` (`\[code\]`) unless
//! stated; choices where the sources are silent are marked `\[library choice\]`.

mod aggregation;
mod cispo;
mod gspo;
mod importance;
mod kl;
pub(crate) mod metrics;
mod ppo_clip;
mod ratio;
mod sapo;
#[cfg(target_arch = "x86_64")]
mod x86_avx2;
#[cfg(target_arch = "x86_64")]
mod x86_avx512;

pub use aggregation::{agg_chain_inplace, agg_loss, agg_weights, entropy_upstream, logp_upstream, AggMode, AggNorm};
pub use cispo::{cispo_loss, CispoCfg};
pub use gspo::{gspo_loss, GspoCfg, GSPO_AGG_MODE};
pub use importance::{tis_weights, TisCfg, TisLevel};
pub use kl::{kl_loss, KlCfg, KlKind};
pub use metrics::{KlStats, PolicyStats};
pub use ppo_clip::{ppo_clip_kl_loss, ppo_clip_kl_step, ppo_clip_loss, ClipCfg, KlTerm, StepStats};
pub use sapo::{sapo_loss, SapoCfg, SAPO_AGG_MODE};

use crate::error::{check_len, TmError};
use crate::platform::{Backend, Exec};
use kl::with_kl_fn;
use metrics::LaneAcc;
#[cfg(target_arch = "x86_64")]
use ppo_clip::FusedIns;
use ppo_clip::Params;

/// The `[B,T]` shape of the per-token arrays (`rows = B` responses, `cols = T` padded length).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchShape {
    /// `B`, the number of responses.
    pub rows: usize,
    /// `T`, the padded response length.
    pub cols: usize,
}

impl BatchShape {
    /// A `[rows, cols]` shape.
    pub fn new(rows: usize, cols: usize) -> Self {
        BatchShape { rows, cols }
    }

    /// `rows·cols`, or [`TmError::SizeOverflow`].
    pub fn numel(&self) -> Result<usize, TmError> {
        self.rows.checked_mul(self.cols).ok_or(TmError::SizeOverflow { what: "shape" })
    }
}

/// The per-token inputs of a policy loss (every slice has `B·T` elements).
#[derive(Clone, Copy, Debug)]
pub struct PolicyInputs<'a> {
    /// `[B,T]` shape.
    pub shape: BatchShape,
    /// `log π_θ` of the sampled tokens (the variable of the gradient).
    pub logp: &'a [f32],
    /// `log π_old` of the same tokens (constant).
    pub old_logp: &'a [f32],
    /// Advantages `A[b,t]` (constant).
    pub adv: &'a [f32],
    /// Response mask (`0` = padding; any other byte = valid).
    pub mask: &'a [u8],
    /// Optional rollout importance weights (constant, §4.8), multiplied into `ℓ` and its
    /// gradient at valid positions (verl `rollout_is_weights`).
    pub is_weights: Option<&'a [f32]>,
}

impl PolicyInputs<'_> {
    fn validate(&self) -> Result<usize, TmError> {
        let n = self.shape.numel()?;
        check_len("logp", n, self.logp.len())?;
        check_len("old_logp", n, self.old_logp.len())?;
        check_len("adv", n, self.adv.len())?;
        check_len("mask", n, self.mask.len())?;
        if let Some(w) = self.is_weights {
            check_len("is_weights", n, w.len())?;
        }
        Ok(n)
    }
}

/// Output buffers of a per-token loss kernel (each `B·T` elements).
#[derive(Debug)]
pub struct LossOut<'a> {
    /// The per-token loss `ℓ[b,t]` (0 at masked positions).
    pub loss: &'a mut [f32],
    /// `∂ℓ[b,t]/∂logp[b,t]` (0 at masked positions).
    pub dloss_dlogp: &'a mut [f32],
}

impl LossOut<'_> {
    fn validate(&self, n: usize) -> Result<(), TmError> {
        check_len("loss", n, self.loss.len())?;
        check_len("dloss_dlogp", n, self.dloss_dlogp.len())
    }
}

/// Checks a clip width: finite and `≥ 0`.
fn check_eps(eps: f32, msg: &'static str) -> Result<(), TmError> {
    if eps.is_finite() && eps >= 0.0 {
        Ok(())
    } else {
        Err(TmError::InvalidArgument(msg))
    }
}

/// Checks an optional log-ratio clamp: finite and `> 0`.
fn check_log_ratio_clamp(c: Option<f32>) -> Result<(), TmError> {
    match c {
        Some(c) if !(c.is_finite() && c > 0.0) => {
            Err(TmError::InvalidArgument("log_ratio_clamp must be finite and > 0"))
        }
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------
// Dispatch: the one place that maps a backend to a compiled loop.
// ---------------------------------------------------------------------------------------

fn check_backend(exec: Exec) -> Result<(), TmError> {
    if exec.backend().is_supported() {
        Ok(())
    } else {
        Err(TmError::BackendUnavailable)
    }
}

/// The loop of [`ppo_clip_loss`].
fn ppo_loop(backend: Backend, inp: &PolicyInputs<'_>, p: Params, out: LossOut<'_>) -> LaneAcc {
    match backend {
        Backend::Portable => ppo_clip::drive(inp, p, out),
        // Safe (both arms) because `check_backend` verified the CPU features before any
        // kernel runs.
        #[cfg(target_arch = "x86_64")]
        Backend::Avx2Fma => unsafe { x86_avx2::ppo_drive(inp, p, out) },
        #[cfg(target_arch = "x86_64")]
        Backend::Avx512 => unsafe { x86_avx512::ppo_drive(inp, p, out) },
    }
}

/// The loop of [`ppo_clip_kl_loss`]: hand-vectorised for `K3` on x86-64, else the chunk loop
/// compiled for the backend.
fn ppo_kl_loop(
    backend: Backend,
    inp: &PolicyInputs<'_>,
    p: Params,
    kl: &KlTerm<'_>,
    out: LossOut<'_>,
) -> (PolicyStats, KlStats) {
    #[cfg(target_arch = "x86_64")]
    if kl.cfg.kind == KlKind::K3 {
        let (ins, coef, clamps) = (FusedIns::new(inp, kl), kl.coef, kl.cfg.verl_clamps);
        // Safe (both arms) because `check_backend` verified the CPU features; the lengths
        // were checked by the caller.
        match backend {
            Backend::Portable => {}
            Backend::Avx2Fma => {
                return unsafe { x86_avx2::fused_flat(&ins, p, coef, clamps, out.loss, out.dloss_dlogp) }
            }
            Backend::Avx512 => {
                return unsafe { x86_avx512::fused_flat(&ins, p, coef, clamps, out.loss, out.dloss_dlogp) }
            }
        }
    }
    let (a, b) = with_kl_fn!(kl.cfg, |f| match backend {
        Backend::Portable => ppo_clip::drive_kl(inp, p, kl, &f, out),
        // Safe (both arms) because `check_backend` verified the CPU features.
        #[cfg(target_arch = "x86_64")]
        Backend::Avx2Fma => unsafe { x86_avx2::ppo_kl_drive(inp, p, kl, &f, out) },
        #[cfg(target_arch = "x86_64")]
        Backend::Avx512 => unsafe { x86_avx512::ppo_kl_drive(inp, p, kl, &f, out) },
    });
    (a.into_stats(), b.into_kl())
}

/// The fused loop of [`ppo_clip_kl_step`] where one exists for this backend and input (x86-64
/// SIMD, `K3`, `T` a multiple of 8); `Err(out)` hands the outputs back otherwise.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
fn fused_step<'o>(
    backend: Backend,
    inp: &PolicyInputs<'_>,
    p: Params,
    kl: &KlTerm<'_>,
    plan: &aggregation::Plan,
    out: LossOut<'o>,
) -> Result<StepStats, LossOut<'o>> {
    let cols = inp.shape.cols;
    #[cfg(target_arch = "x86_64")]
    if kl.cfg.kind == KlKind::K3 && cols.is_multiple_of(8) && cols > 0 {
        let (ins, coef, clamps) = (FusedIns::new(inp, kl), kl.coef, kl.cfg.verl_clamps);
        // Safe (both arms) because `check_backend` verified the CPU features; the lengths
        // were checked by the caller.
        let fused = match backend {
            Backend::Portable => None,
            Backend::Avx2Fma => {
                Some(unsafe { x86_avx2::fused_step(&ins, cols, p, coef, clamps, plan, out.loss, out.dloss_dlogp) })
            }
            Backend::Avx512 => {
                Some(unsafe { x86_avx512::fused_step(&ins, cols, p, coef, clamps, plan, out.loss, out.dloss_dlogp) })
            }
        };
        if let Some((loss, policy, kl)) = fused {
            return Ok(StepStats { loss, policy, kl });
        }
    }
    Err(out)
}

/// The loop of [`kl_loss`] for one estimator `f`.
fn kl_loop(backend: Backend, io: (&[f32], &[f32], &[u8], LossOut<'_>), f: impl Fn(f32) -> (f32, f32)) -> KlStats {
    match backend {
        Backend::Portable => kl::run_body(io, f),
        // Safe (both arms) because `check_backend` verified the CPU features.
        #[cfg(target_arch = "x86_64")]
        Backend::Avx2Fma => unsafe { x86_avx2::kl_run(io, f) },
        #[cfg(target_arch = "x86_64")]
        Backend::Avx512 => unsafe { x86_avx512::kl_run(io, f) },
    }
}

/// `(Σ m, #rows with Σ_t m > 0)` of the aggregation's mask.
fn local_counts(backend: Backend, mask: &[u8], shape: BatchShape) -> (u64, u64) {
    match backend {
        Backend::Portable => aggregation::local_counts_body(mask, shape),
        // Safe (both arms) because `check_backend` verified the CPU features.
        #[cfg(target_arch = "x86_64")]
        Backend::Avx2Fma => unsafe { x86_avx2::local_counts(mask, shape) },
        #[cfg(target_arch = "x86_64")]
        Backend::Avx512 => unsafe { x86_avx512::local_counts(mask, shape) },
    }
}
