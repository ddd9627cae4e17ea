//! Backward: `∂L/∂x` for `L = Σ_rows (g_lse·lse + g_lp·logp + g_H·entropy)`, elementwise,
//! in `core`'s operation order:
//!
//! ```text
//! d  = clamp(x·inv_temp − lse)          H = lse − ez,  c = g_lse − g_lp
//! dx = exp(d)·fma(−g_H, d + H, c)·inv_temp,   at the target: (exp(d)·fma(..) + g_lp)·inv_temp
//! ```
//!
//! Masked rows get 0, rows whose saved statistics are not finite get NaN. One cube per
//! (row, chunk of `CHUNK` columns); each thread loads the row's constants once.
//! `bf16` outputs are written a word (two columns) at a time, so they need even strides;
//! a row of odd length keeps the other half of its last word.
//!
//! `witness[0]` is set to 1 by the first thread: a kernel that failed to compile (wgpu only
//! logs it) leaves it 0, and the host reports an error instead of a stale buffer.

use cubecl::prelude::*;

use super::exp::{clamp_arg, exp_clamped};
use super::{bf16_bits, load_elem, DT_BF16, NAN_BITS};

/// Columns per cube.
pub(crate) const CHUNK: usize = 2048;

#[derive(CubeType, Clone, Copy)]
pub(crate) struct RowGrad {
    kept: bool,
    finite: bool,
    lse: f32,
    entropy: f32,
    c: f32,
    neg_gh: f32,
    g_lp: f32,
    inv_temp: f32,
    target: u32,
}

#[cube]
fn finite(x: f32) -> bool {
    (u32::reinterpret(x) & 0x7fff_ffffu32) < 0x7f80_0000u32
}

#[cube]
#[allow(clippy::too_many_arguments)]
fn row_grad(
    keep: &Array<u32>,
    lse: &Array<f32>,
    ez: &Array<f32>,
    g_lp: &Array<f32>,
    g_h: &Array<f32>,
    g_lse: &Array<f32>,
    inv_temp: &Array<f32>,
    target: &Array<u32>,
    r: usize,
) -> RowGrad {
    let l = lse[r];
    let e = ez[r];
    let gl = g_lp[r];
    RowGrad {
        kept: keep[r] != 0,
        finite: finite(l) && finite(e),
        lse: l,
        entropy: l - e,
        c: g_lse[r] - gl,
        neg_gh: -g_h[r],
        g_lp: gl,
        inv_temp: inv_temp[r],
        target: target[r],
    }
}

/// The gradient at column `col` with raw logit `x`.
#[cube]
fn grad_value(x: f32, col: usize, p: RowGrad) -> f32 {
    let mut out = f32::new(0.0);
    if p.kept {
        if p.finite {
            let d = clamp_arg(x * p.inv_temp - p.lse);
            let mut dz = exp_clamped(d) * fma(p.neg_gh, d + p.entropy, p.c);
            if col == p.target as usize {
                dz += p.g_lp;
            }
            out = dz * p.inv_temp;
        } else {
            out = f32::reinterpret(NAN_BITS);
        }
    }
    out
}

/// Out-of-place gradient: `input` (`[rows, cols]` at `in_offset + r·in_stride`) into `out`
/// (`[rows, cols]` at `r·out_stride`).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn grad<E: Scalar, O: Scalar>(
    input: &Array<E>,
    out: &mut Array<O>,
    keep: &Array<u32>,
    lse: &Array<f32>,
    ez: &Array<f32>,
    g_lp: &Array<f32>,
    g_h: &Array<f32>,
    g_lse: &Array<f32>,
    inv_temp: &Array<f32>,
    target: &Array<u32>,
    witness: &mut Array<u32>,
    rows: usize,
    cols: usize,
    nchunks: usize,
    in_stride: usize,
    in_offset: usize,
    out_stride: usize,
    #[comptime] in_dtype: u32,
    #[comptime] out_dtype: u32,
) {
    let cube = CUBE_POS as usize;
    if ABSOLUTE_POS == 0 {
        witness[0] = 1u32;
    }
    let r = cube / nchunks;
    if r < rows {
        let p = row_grad(keep, lse, ez, g_lp, g_h, g_lse, inv_temp, target, r);
        let start = (cube % nchunks) * CHUNK;
        let end = min(start + CHUNK, cols);
        let src = in_offset + r * in_stride;
        let dst = r * out_stride;
        if out_dtype == DT_BF16 {
            let mut col = start + 2 * UNIT_POS as usize;
            while col < end {
                let lo = grad_value(load_elem::<E>(input, src + col, in_dtype), col, p);
                let mut word = bf16_bits(lo);
                if col + 1 < cols {
                    let hi = grad_value(load_elem::<E>(input, src + col + 1, in_dtype), col + 1, p);
                    word |= bf16_bits(hi) << 16u32;
                } else {
                    word |= u32::cast_from(out[(dst + col) / 2]) & 0xffff_0000u32;
                }
                out[(dst + col) / 2] = O::cast_from(word);
                col += 2 * CUBE_DIM as usize;
            }
        } else {
            let mut col = start + UNIT_POS as usize;
            while col < end {
                let v = grad_value(load_elem::<E>(input, src + col, in_dtype), col, p);
                out[dst + col] = O::cast_from(v);
                col += CUBE_DIM as usize;
            }
        }
    }
}

/// In-place gradient over the logits buffer itself (one binding: WebGPU forbids aliasing a
/// read and a write binding).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn grad_inplace<E: Scalar>(
    buf: &mut Array<E>,
    keep: &Array<u32>,
    lse: &Array<f32>,
    ez: &Array<f32>,
    g_lp: &Array<f32>,
    g_h: &Array<f32>,
    g_lse: &Array<f32>,
    inv_temp: &Array<f32>,
    target: &Array<u32>,
    witness: &mut Array<u32>,
    rows: usize,
    cols: usize,
    nchunks: usize,
    stride: usize,
    offset: usize,
    #[comptime] dtype: u32,
) {
    let cube = CUBE_POS as usize;
    if ABSOLUTE_POS == 0 {
        witness[0] = 1u32;
    }
    let r = cube / nchunks;
    if r < rows {
        let p = row_grad(keep, lse, ez, g_lp, g_h, g_lse, inv_temp, target, r);
        let start = (cube % nchunks) * CHUNK;
        let end = min(start + CHUNK, cols);
        let base = offset + r * stride;
        if dtype == DT_BF16 {
            let mut col = start + 2 * UNIT_POS as usize;
            while col < end {
                let w = u32::cast_from(buf[(base + col) / 2]);
                let lo = grad_value(f32::reinterpret(w << 16u32), col, p);
                let mut word = bf16_bits(lo);
                if col + 1 < cols {
                    let hi = grad_value(f32::reinterpret(w & 0xffff_0000u32), col + 1, p);
                    word |= bf16_bits(hi) << 16u32;
                } else {
                    word |= w & 0xffff_0000u32;
                }
                buf[(base + col) / 2] = E::cast_from(word);
                col += 2 * CUBE_DIM as usize;
            }
        } else {
            let mut col = start + UNIT_POS as usize;
            while col < end {
                let v = grad_value(f32::cast_from(buf[base + col]), col, p);
                buf[base + col] = E::cast_from(v);
                col += CUBE_DIM as usize;
            }
        }
    }
}
