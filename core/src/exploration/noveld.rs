//! The global bonus with function approximation: RND's prediction error and NovelD's
//! difference of novelties (`src/algos/e3b_noveld.py::learn` of `facebookresearch/e3b`).
//!
//! ```text
//! e(s)  = ‖f̂(s) − f(s)‖₂                         L2 norm, not squared; f = fixed random target net, f̂ = predictor
//! b_g   = max(e(s_{t+1}) − α·e(s_t), 0)           α = scale_fac: 0 → E3B×RND, 0.1 → E3B×NovelD (default 0.1)
//! ```
//! The networks and the predictor's training (the RND regression loss on `e(s_{t+1})`) are
//! the caller's; these kernels take their outputs.

use crate::exploration::check_finite;
use crate::{Exec, TmError};

/// `out[r] = ‖pred[r] − target[r]‖₂` for `rows = out.len()` rows of `dim` features
/// (row-major, contiguous) \[code\]. A norm that overflows `f32` is
/// [`TmError::NonFinite`] (`what` starts with `"out"`), nothing written.
///
/// Sums of squares are accumulated in `f64` in index order and rounded once after the
/// square root \[library choice\], so the norm neither overflows nor underflows for any
/// finite `f32` inputs. Rows are split over `exec`'s threads. `dim = 0` gives 0.
pub fn rnd_error(exec: &Exec, dim: usize, pred: &[f32], target: &[f32], out: &mut [f32]) -> Result<(), TmError> {
    exec.check_backend()?;
    let n = out.len().checked_mul(dim).ok_or(TmError::SizeOverflow { what: "pred" })?;
    crate::error::check_len("pred", n, pred.len())?;
    crate::error::check_len("target", n, target.len())?;
    check_finite("pred", pred)?;
    check_finite("target", target)?;
    let row = |r: usize| -> f32 {
        let (p, t) = (&pred[r * dim..(r + 1) * dim], &target[r * dim..(r + 1) * dim]);
        let ss: f64 = p.iter().zip(t).map(|(&a, &b)| (a as f64 - b as f64) * (a as f64 - b as f64)).sum();
        libm::sqrt(ss) as f32
    };
    let rows = out.len();
    // A norm above f32::MAX is an error; it needs max|p| + max|t| ≥ f32::MAX/sqrt(dim), so
    // only then are the rows checked in a pass of their own (outputs are written on success).
    let amax = |x: &[f32]| x.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64));
    if (amax(pred) + amax(target)) * libm::sqrt(dim as f64) >= f32::MAX as f64 {
        if let Some(r) = (0..rows).find(|&r| !row(r).is_finite()) {
            return Err(TmError::NonFinite { what: "out (the norm overflows f32)", index: r });
        }
    }
    // Rows over the threads with the logits family's driver (`logits::run_rows`).
    crate::logits::run_rows(exec.threads(), rows, out, &|start, _end, out: &mut [f32]| {
        for (j, o) in out.iter_mut().enumerate() {
            *o = row(start + j);
        }
        Ok(crate::logits::Status::default())
    })?;
    Ok(())
}

/// NovelD's global bonus `out[i] = max(err_next[i] − α·err_curr[i], 0)` \[code\]; `α = 0` is
/// RND's bonus `max(e(s_{t+1}), 0)`.
///
/// `α` must be finite and `≥ 0` (the source's `scale_fac`); the errors must be finite
/// ([`TmError::NonFinite`]) and `≥ 0`, as norms are ([`TmError::InvalidArgument`]
/// otherwise) \[library choice\]. Computed in `f64` and rounded once, so
/// `0 ≤ out[i] ≤ err_next[i]` and no overflow is possible.
pub fn noveld_bonus(err_next: &[f32], err_curr: &[f32], alpha: f32, out: &mut [f32]) -> Result<(), TmError> {
    if !(alpha.is_finite() && alpha >= 0.0) {
        return Err(TmError::InvalidArgument("NovelD alpha (scale_fac) must be finite and >= 0"));
    }
    crate::error::check_len("err_next", out.len(), err_next.len())?;
    crate::error::check_len("err_curr", out.len(), err_curr.len())?;
    check_finite("err_next", err_next)?;
    check_finite("err_curr", err_curr)?;
    if err_next.iter().chain(err_curr).any(|&e| e < 0.0) {
        return Err(TmError::InvalidArgument("RND/NovelD errors are norms and must be >= 0"));
    }
    for ((o, &n), &c) in out.iter_mut().zip(err_next).zip(err_curr) {
        *o = (n as f64 - alpha as f64 * c as f64).max(0.0) as f32;
    }
    Ok(())
}
