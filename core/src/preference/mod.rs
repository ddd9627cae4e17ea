//! Preference losses with token rewards and token value labels: DPO and SimPO ([`dpo`]),
//! T-REG's token-level reward regularisation ([`t_reg`]), cDPO's critical tokens ([`cdpo`]:
//! contrastive-estimation scores streamed over the vocabulary, the token-weighted DPO loss,
//! `pass@k`) and TVM's prefix-trie value labels, value losses and beam-step selection
//! ([`tvm`]).
//!
//! The math, sources and every choice made where a paper is silent are on each method's
//! module. The conventions shared by all of them:
//!
//! * Per-token arrays are `[rows, t]` row-major `f32` with a `u8` mask (`0` = not a label
//!   position: never read, its outputs are `0`). Per-pair arrays have one entry per
//!   preference pair.
//! * [`crate::Exec`] comes first. Only [`cdpo::cdpo_ce_scores`] (a pass over `[L, V]`
//!   logits) has SIMD paths and threads; the per-token and per-pair kernels are short
//!   loops that run on the calling thread in the portable order whatever the backend (an
//!   unsupported backend is still [`TmError::BackendUnavailable`]), so every `Exec` gives
//!   the same bits. TVM's label builder and beam selection are integer/sorting work with
//!   no floating-point reduction order to pin, and take no `Exec`.
//! * Scalar math (`softplus`, `σ`, sums over a sequence) is carried out in `f64` and rounded
//!   once to `f32` \[library choice\]: these kernels touch `O(B·T)` numbers, so the cost is
//!   nil, and the results are then within a few ulps of the `f64` reference whatever the
//!   sequence length or the magnitude of the log-ratios.
//! * NaN and `±inf` inputs at label positions propagate (a NaN loss is the caller's signal,
//!   as in PyTorch); they are never an error. Hyper-parameters that make no sense are
//!   [`TmError::InvalidArgument`] with a message, checked before anything is written.
//!
//! `softplus(x) = max(x, 0) + log1p(exp(−|x|))` and the two-branch `σ` are used throughout;
//! `log σ(x)` is never formed.

pub mod cdpo;
pub mod dpo;
pub mod t_reg;
pub mod tvm;
#[cfg(target_arch = "x86_64")]
mod x86_avx2;
#[cfg(target_arch = "x86_64")]
mod x86_avx512;

use crate::error::TmError;

/// `log(1 + eˣ)`, stable for every `x` (`softplus(+inf) = +inf`, `softplus(−inf) = 0`).
#[inline]
pub(crate) fn softplus(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    x.max(0.0) + libm::log1p(libm::exp(-x.abs()))
}

/// `σ(x) = 1/(1 + e⁻ˣ)`, two branches so that neither overflows.
#[inline]
pub(crate) fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + libm::exp(-x))
    } else {
        let e = libm::exp(x);
        e / (1.0 + e)
    }
}

/// The label-smoothed logistic loss of a margin `h` and its derivative:
/// `ℓ = (1 − ε)·softplus(−h) + ε·softplus(h)`, `∂ℓ/∂h = −(1 − ε)·σ(−h) + ε·σ(h)`.
/// A term whose weight is 0 is skipped, so `ε = 0` at `h = −inf` gives `ℓ = +inf`, not NaN.
#[inline]
pub(crate) fn smoothed_logistic(h: f64, eps: f64) -> (f64, f64) {
    let mut loss = 0.0;
    let mut grad = 0.0;
    if eps != 1.0 {
        loss += (1.0 - eps) * softplus(-h);
        grad -= (1.0 - eps) * sigmoid(-h);
    }
    if eps != 0.0 {
        loss += eps * softplus(h);
        grad += eps * sigmoid(h);
    }
    (loss, grad)
}

/// `β`: finite and `> 0`.
pub(crate) fn check_beta(beta: f32) -> Result<(), TmError> {
    if beta.is_finite() && beta > 0.0 {
        Ok(())
    } else {
        Err(TmError::InvalidArgument("beta must be finite and > 0"))
    }
}

/// Label smoothing `ε ∈ [0, 1]`.
pub(crate) fn check_smoothing(eps: f32) -> Result<(), TmError> {
    if (0.0..=1.0).contains(&eps) {
        Ok(())
    } else {
        Err(TmError::InvalidArgument("label_smoothing must be in [0, 1]"))
    }
}

/// Checks `[rows, t]` per-token buffers: returns `rows` from `rows_of.len()` and checks
/// that every listed buffer has `rows·t` elements.
pub(crate) fn check_tokens(rows: usize, t: usize, bufs: &[(&'static str, usize)]) -> Result<usize, TmError> {
    let n = rows.checked_mul(t).ok_or(TmError::SizeOverflow { what: "rows * t" })?;
    for &(what, got) in bufs {
        crate::error::check_len(what, n, got)?;
    }
    Ok(n)
}
