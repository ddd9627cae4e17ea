//! The portable backend: the canonical operation order written one lane at a time.
//!
//! This file *is* the definition of the order that the SIMD backends reproduce:
//!
//! * **Block maximum** (pass 1): `m = max z` over the block (NaN never wins a comparison;
//!   NaN and `+inf` set the non-finite flag), then `m + 0.0` so `−0.0` and `+0.0` agree.
//! * **Block sums** (pass 2): column `i` of the block goes to lane `i mod 32`; each lane
//!   accumulates its columns in increasing order (`s += e`, `u = fma(e, d, u)` with
//!   `d = z − m`, `e = exp(d)`, flushed to `e = 0, d = EXP_CUTOFF` below the cutoff); the
//!   32 lanes are then folded in halves: `lane[i] += lane[i + w]` for `w = 16, 8, 4, 2, 1`.
//! * **Gradient** (elementwise): `dz = exp(z − lse)·fma(−g_H, z − ez, g_lse − g_lp)`
//!   (0 below the cutoff), `dx = dz·inv_temp`, and at the target column
//!   `dx_t = (dz_t + g_lp)·inv_temp`.

use super::exp::{exp_nonpos, fma, EXP_CUTOFF};
use super::row_stats::RowStats;
use crate::elem::{GradElem, LogitElem};

/// Lanes of the canonical in-block accumulation order.
pub(crate) const LANES: usize = 32;

/// Statistics `(m, s, u)` of one block (`1 ≤ len ≤ BLOCK` columns).
pub(crate) fn block_stats<T: LogitElem>(block: &[T], inv_temp: f32) -> RowStats {
    let mut m = f32::NEG_INFINITY;
    let mut nonfinite = false;
    for &x in block {
        let z = x.to_f32() * inv_temp;
        nonfinite |= z.is_nan() || z == f32::INFINITY;
        if z > m {
            m = z;
        }
    }
    m += 0.0;
    if nonfinite || m == f32::NEG_INFINITY {
        return RowStats::from_block(m, 0.0, 0.0, nonfinite);
    }
    let mut s = [0.0f32; LANES];
    let mut u = [0.0f32; LANES];
    for (i, &x) in block.iter().enumerate() {
        let lane = i % LANES;
        let d = x.to_f32() * inv_temp - m;
        let (e, d) = if d >= EXP_CUTOFF { (exp_nonpos(d), d) } else { (0.0, EXP_CUTOFF) };
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
    RowStats::from_block(m, s[0], u[0], false)
}

/// Per-row constants of the gradient.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GradRow {
    pub inv_temp: f32,
    pub lse: f32,
    pub ez: f32,
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
    pub(crate) fn dz(&self, x: f32) -> f32 {
        let z = x * self.inv_temp;
        let d = z - self.lse;
        if d >= EXP_CUTOFF {
            exp_nonpos(d) * fma(self.neg_gh, z - self.ez, self.c)
        } else {
            0.0
        }
    }

    /// `∂L/∂x` at a non-target column.
    #[inline(always)]
    pub(crate) fn dx(&self, x: f32) -> f32 {
        self.dz(x) * self.inv_temp
    }

    /// `∂L/∂x` at the target column.
    #[inline(always)]
    pub(crate) fn dx_target(&self, x: f32) -> f32 {
        (self.dz(x) + self.g_lp) * self.inv_temp
    }
}

/// Gradient of one row into a separate buffer (target column handled by the caller).
pub(crate) fn grad_row<T: LogitElem, O: GradElem>(src: &[T], dst: &mut [O], g: &GradRow) {
    for (o, &x) in dst.iter_mut().zip(src) {
        *o = O::from_f32(g.dx(x.to_f32()));
    }
}

/// Gradient of one row written over its logits (target column handled by the caller).
pub(crate) fn grad_row_inplace<T: LogitElem + GradElem>(buf: &mut [T], g: &GradRow) {
    for v in buf.iter_mut() {
        *v = <T as GradElem>::from_f32(g.dx(v.to_f32()));
    }
}
