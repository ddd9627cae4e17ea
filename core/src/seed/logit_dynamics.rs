//! The expected logit update of one policy-gradient step on a softmax policy \[derived\]
//! (spec `policy.md` §7.5; the analysis of arXiv 2506.01347).
//!
//! For logits `z`, `π = softmax(z)`, a sampled action `a ~ π` and an advantage `A_a`,
//! `∂log π_a/∂z_b = 1[a = b] − π_b`, so a step of size `η` on `A_a·log π_a` moves `z` by, in
//! expectation over `a`,
//!
//! ```text
//! E[Δz_b] = η·Σ_a π_a A_a (1[a = b] − π_b) = η·π_b·(A_b − Σ_a π_a A_a)
//! ```
//!
//! Tokens with small `π_b` barely move: they are rarely sampled. Positive-only training
//! (PSR) sharpens the distribution around already-likely correct tokens; negative-only
//! (NSR) pushes probability off the sampled wrong tokens and spreads it over the rest in
//! proportion to `π`. Exposed for unit tests and analysis (the test checks it against a
//! finite difference of `J(z) = Σ_a sg(π_a) A_a log softmax(z)_a`).

use crate::error::{check_len, TmError};

/// `out[b] = lr·π_b·(A_b − Σ_a π_a A_a)` (module docs); `Σ_a π_a A_a` accumulates in `f64`
/// in index order, each output is rounded to `f32` once. `probs` need not sum to 1 exactly
/// (the formula is applied as given).
///
/// Errors: lengths; [`TmError::NonFinite`] for a non-finite probability, advantage or `lr`;
/// [`TmError::InvalidArgument`] for a negative probability. Nothing is written on error.
pub fn expected_logit_update(probs: &[f32], adv_per_action: &[f32], lr: f32, out: &mut [f32]) -> Result<(), TmError> {
    let v = probs.len();
    check_len("adv_per_action", v, adv_per_action.len())?;
    check_len("out", v, out.len())?;
    if !lr.is_finite() {
        return Err(TmError::NonFinite { what: "lr", index: 0 });
    }
    for (what, x) in [("probs", probs), ("adv_per_action", adv_per_action)] {
        if let Some(index) = x.iter().position(|p| !p.is_finite()) {
            return Err(TmError::NonFinite { what, index });
        }
    }
    if probs.iter().any(|&p| p < 0.0) {
        return Err(TmError::InvalidArgument("probabilities must be >= 0"));
    }
    let base: f64 = probs.iter().zip(adv_per_action).map(|(&p, &a)| p as f64 * a as f64).sum();
    for ((o, &p), &a) in out.iter_mut().zip(probs).zip(adv_per_action) {
        *o = (lr as f64 * p as f64 * (a as f64 - base)) as f32;
    }
    Ok(())
}
