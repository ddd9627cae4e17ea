//! Masked reductions and whitening (`policy.md` §1).
//!
//! | function | definition | empty mask | one valid element |
//! |---|---|---|---|
//! | [`masked_sum`] | `Σ_m x` | 0 | `x` |
//! | [`masked_mean`] | `Σ_m x / N` | 0 \[library choice\] | `x` |
//! | [`masked_var`] | `M2/(N−1)` or `M2/N` | 0 \[library choice\] | Unbiased: 0 \[library choice\]; Population: 0 |
//! | [`masked_whiten`] | `(x − μ)·rsqrt(var_unbiased + eps)` at valid positions, 0 at padding | all 0 | 0 |
//!
//! [`Compat::Verl`] reproduces verl `torch_functional.py` \[code\]: mean denominators
//! `Σm + 1e-8` (rounded in `f32`, as torch does), [`TmError::InvalidArgument`] for an
//! unbiased variance over fewer than 2 valid elements, and whitened values written at every
//! position, padding included. Either way a NaN at a masked position never reaches a
//! statistic (`where(m, x, 0)`, not `x·m`). Sums are accumulated in `f64` in index order;
//! the library form's moments are Welford ([`Moments`]), so a constant input whitens to
//! exactly 0.

use super::{Compat, Moments, StdKind};
use crate::error::{check_len, TmError};

/// `Σ_{m≠0} x` in `f64`, rounded to `f32`.
pub fn masked_sum(x: &[f32], mask: &[u8]) -> Result<f32, TmError> {
    check_len("mask", x.len(), mask.len())?;
    Ok(valid(x, mask).sum::<f64>() as f32)
}

/// The mean over valid positions (see the module table).
pub fn masked_mean(x: &[f32], mask: &[u8], compat: Compat) -> Result<f32, TmError> {
    check_len("mask", x.len(), mask.len())?;
    Ok(moments(x, mask, compat).mean as f32)
}

/// The variance over valid positions (see the module table).
pub fn masked_var(x: &[f32], mask: &[u8], kind: StdKind, compat: Compat) -> Result<f32, TmError> {
    check_len("mask", x.len(), mask.len())?;
    Ok(variance(&moments(x, mask, compat), kind, compat)? as f32)
}

/// `out = (x − μ)·rsqrt(var_unbiased + eps)` with `μ`, `var` over the valid positions;
/// padding gets 0 ([`Compat::Library`]) or the same formula ([`Compat::Verl`]).
/// `eps` (verl: `1e-8`) must be finite and `≥ 0`.
pub fn masked_whiten(x: &[f32], mask: &[u8], eps: f32, compat: Compat, out: &mut [f32]) -> Result<(), TmError> {
    check_len("mask", x.len(), mask.len())?;
    check_len("out", x.len(), out.len())?;
    out.copy_from_slice(x);
    whiten_inplace(out, mask, eps, compat)
}

/// Fails, as [`whiten_inplace`] would, when verl's whitening has fewer than 2 valid
/// elements to work with, so that callers can refuse before writing anything.
pub(crate) fn check_whiten_support(mask: &[u8], compat: Compat) -> Result<(), TmError> {
    let n = mask.iter().filter(|&&m| m != 0).take(2).count();
    variance(&Moments { n: n as f64, mean: 0.0, m2: 0.0 }, StdKind::Unbiased, compat).map(|_| ())
}

/// [`masked_whiten`] of `buf` into itself.
pub(crate) fn whiten_inplace(buf: &mut [f32], mask: &[u8], eps: f32, compat: Compat) -> Result<(), TmError> {
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(TmError::InvalidArgument("whitening eps must be finite and >= 0"));
    }
    let m = moments(buf, mask, compat);
    let var = variance(&m, StdKind::Unbiased, compat)?;
    let inv_std = 1.0 / super::sqrt(var + eps as f64);
    for (v, &keep) in buf.iter_mut().zip(mask) {
        *v = match compat {
            // A constant input (var = 0, also when eps = 0) is exactly 0, never 0·inf.
            Compat::Library if keep == 0 || var == 0.0 => 0.0,
            _ => ((*v as f64 - m.mean) * inv_std) as f32,
        };
    }
    Ok(())
}

fn valid<'a>(x: &'a [f32], mask: &'a [u8]) -> impl Iterator<Item = f64> + Clone + 'a {
    x.iter().zip(mask).filter(|(_, &m)| m != 0).map(|(&v, _)| v as f64)
}

/// verl's `mask.sum() + 1e-8`, evaluated in `f32` like torch (so for `N ≥ 1` it is `N`).
fn verl_denominator(n: f64) -> f64 {
    (n as f32 + 1e-8f32) as f64
}

/// `(N, mean, M2)` over the valid positions: Welford for the library, verl's two passes
/// (`Σx/(N + 1e-8)`, then `Σ(x − μ)²`) for [`Compat::Verl`].
fn moments(x: &[f32], mask: &[u8], compat: Compat) -> Moments {
    match compat {
        Compat::Library => {
            let mut m = Moments::EMPTY;
            valid(x, mask).for_each(|v| m.push(v, 1.0));
            m
        }
        Compat::Verl => {
            let n = valid(x, mask).count() as f64;
            let mean = valid(x, mask).sum::<f64>() / verl_denominator(n);
            Moments { n, mean, m2: valid(x, mask).map(|v| (v - mean) * (v - mean)).sum() }
        }
    }
}

fn variance(m: &Moments, kind: StdKind, compat: Compat) -> Result<f64, TmError> {
    match compat {
        Compat::Library => Ok(m.variance(kind)),
        Compat::Verl => {
            // masked_mean((x − μ)², m), then Bessel's N/(N − 1), which verl refuses for N < 2.
            let population = m.m2 / verl_denominator(m.n);
            match kind {
                StdKind::Population => Ok(population),
                StdKind::Unbiased if m.n < 2.0 => {
                    Err(TmError::InvalidArgument("verl masked_var: the mask selects fewer than 2 elements"))
                }
                StdKind::Unbiased => Ok(population * (m.n / (m.n - 1.0))),
            }
        }
    }
}
