//! The portable backend: the canonical operation order written one lane at a time.
//!
//! This file *is* the definition of the order that the SIMD backends reproduce:
//!
//! * **Tempered logits**: `z = x·inv_temp`, except that the multiply is skipped when
//!   `inv_temp == 1` (identical values; it saves two multiplies per element).
//! * **Block maximum** (pass 1): `m = max z` over the block, with `if z > m { z }`, so NaN
//!   never wins; then `m + 0.0`, so `−0.0` and `+0.0` agree.
//! * **Block sums** (pass 2): column `i` of the block goes to lane `i mod 8`; each lane
//!   accumulates its columns in increasing order: `d = clamp(z − m)`, `e = exp(d)`,
//!   `s += e`, `u = fma(e, d, u)`; the 8 lanes are then folded in halves:
//!   `lane[i] += lane[i + w]` for `w = 4, 2, 1`. A NaN or `+inf` logit makes some `d`
//!   NaN, which reaches `s`: the block is non-finite iff `m = +inf` or `s` is NaN (a block
//!   without a finite logit is scanned for NaN separately).
//! * **Gradient** (elementwise): `d = clamp((z − max) − log_sum)` (two roundings, in that
//!   order: `z − max` is exact near the maximum, and the saved `lse = max + log_sum` is
//!   never used, since its rounding at `|max|` would swamp `log_sum`),
//!   `dz = exp(d)·fma(−g_H, d + H, g_lse − g_lp)` with `H` the saved entropy (a `−inf`
//!   logit, clamped, gives exactly 0 instead of `0·inf`), `dx = dz·inv_temp`, and at the
//!   target column `dx_t = (dz_t + g_lp)·inv_temp`.

use super::exp::{clamp_arg, exp_clamped, fma};
use super::row_stats::RowStats;
use crate::elem::{GradElem, LogitElem};

/// Lanes of the canonical in-block accumulation order: column `i` of a block goes to lane
/// `i mod LANES`.
pub const LANES: usize = 8;

/// `x·inv_temp`, or `x` when the caller knows `inv_temp == 1`.
#[inline(always)]
pub(crate) fn temper<const SCALE: bool>(x: f32, inv_temp: f32) -> f32 {
    if SCALE {
        x * inv_temp
    } else {
        x
    }
}

/// Statistics `(m, s, u)` of one block (`1 ≤ len ≤ BLOCK` columns).
pub(crate) fn block_stats<T: LogitElem, const SCALE: bool>(block: &[T], inv_temp: f32) -> RowStats {
    let mut m = f32::NEG_INFINITY;
    for &x in block {
        let z = temper::<SCALE>(x.to_f32(), inv_temp);
        if z > m {
            m = z;
        }
    }
    block_stats_from_max::<T, SCALE>(block, inv_temp, m)
}

/// Pass 2 of [`block_stats`] for a block whose maximum `m` (NaN never winning) the caller
/// found (the cDPO rows find it while they form the block).
pub(crate) fn block_stats_from_max<T: LogitElem, const SCALE: bool>(block: &[T], inv_temp: f32, m: f32) -> RowStats {
    let m = m + 0.0;
    if m == f32::NEG_INFINITY {
        let has_nan = block.iter().any(|x| x.to_f32().is_nan());
        return RowStats::from_block(m, 0.0, 0.0, has_nan);
    }
    let mut s = [0.0f32; LANES];
    let mut u = [0.0f32; LANES];
    for (i, &x) in block.iter().enumerate() {
        let lane = i % LANES;
        let d = clamp_arg(temper::<SCALE>(x.to_f32(), inv_temp) - m);
        let e = exp_clamped(d);
        s[lane] += e;
        u[lane] = fma(e, d, u[lane]);
    }
    let mut w = LANES / 2;
    while w > 0 {
        for i in 0..w {
            s[i] += s[i + w];
            u[i] += u[i + w];
        }
        w /= 2;
    }
    RowStats::from_block(m, s[0], u[0], m == f32::INFINITY || s[0].is_nan())
}

/// Per-row constants of the gradient.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GradRow {
    pub inv_temp: f32,
    /// The row maximum `m` of the tempered logits, saved by the forward.
    pub max: f32,
    /// `log Σ exp(z − m)`, saved by the forward.
    pub log_sum: f32,
    /// The entropy, saved by the forward.
    pub entropy: f32,
    /// `g_lse − g_lp`
    pub c: f32,
    /// `−g_H`
    pub neg_gh: f32,
    /// `g_lp` (0 for rows without a target)
    pub g_lp: f32,
}

impl GradRow {
    /// `∂L/∂z` at a column with raw logit value `x` (before the `inv_temp` factor).
    #[inline(always)]
    pub(crate) fn dz<const SCALE: bool>(&self, x: f32) -> f32 {
        let d = clamp_arg((temper::<SCALE>(x, self.inv_temp) - self.max) - self.log_sum);
        exp_clamped(d) * fma(self.neg_gh, d + self.entropy, self.c)
    }

    /// `∂L/∂x` at a non-target column.
    #[inline(always)]
    pub(crate) fn dx<const SCALE: bool>(&self, x: f32) -> f32 {
        temper::<SCALE>(self.dz::<SCALE>(x), self.inv_temp)
    }

    /// `∂L/∂x` at the target column.
    #[inline(always)]
    pub(crate) fn dx_target<const SCALE: bool>(&self, x: f32) -> f32 {
        temper::<SCALE>(self.dz::<SCALE>(x) + self.g_lp, self.inv_temp)
    }
}

/// Gradient of one row (target column handled by the caller). `src` and `dst` may be the
/// same address (in place, `T == O`): each element is read before it is written.
///
/// # Safety
/// `src` and `dst` must be valid for `len` elements and must not overlap unless equal.
pub(crate) unsafe fn grad_row<T: LogitElem, O: GradElem, const SCALE: bool>(
    src: *const T,
    dst: *mut O,
    len: usize,
    g: &GradRow,
) {
    for i in 0..len {
        *dst.add(i) = O::from_f32(g.dx::<SCALE>((*src.add(i)).to_f32()));
    }
}
