//! Backward: `∂L/∂x` for `L = Σ_rows (g_lse·lse + g_lp·logp + g_H·entropy)`, elementwise,
//! in `core`'s operation order:
//!
//! ```text
//! d  = clamp((x·inv_temp − max) − log_sum)     H = the saved entropy,  c = g_lse − g_lp
//! dx = exp(d)·fma(−g_H, d + H, c)·inv_temp,   at the target: (exp(d)·fma(..) + g_lp)·inv_temp
//! ```
//!
//! A `−inf` logit takes `d = EXP_CLAMP` (so `exp(d) = 0` and `dx = ±0`, as in `core`); a
//! NaN/`+inf` logit gives NaN. Masked rows get 0, rows whose saved statistics are not finite
//! get NaN. One cube per (row, chunk of `CHUNK` columns); each thread loads the row's
//! constants once. 16-bit outputs are written a word (two columns) at a time, so they need
//! even strides; a row of odd length keeps the other half of its last word.
//!
//! `witness[0]` is set to 1 by the first thread: a kernel that failed to compile (wgpu only
//! logs it) leaves it 0, and the host reports an error instead of a stale buffer.

use cubecl::prelude::*;
use tokenmath_core::logits::canonical::EXP_CLAMP;

use super::exp::{clamp_arg, exp_clamped};
use super::{
    bf16_from_bits, f16_from_bits, load_bits, opaque, temper, widen16, DT_BF16, DT_F32, FINITE, MASKED, NAN_BITS,
    POS_INF_BITS,
};

/// Columns per cube.
pub(crate) const CHUNK: usize = 2048;

#[derive(CubeType, Clone, Copy)]
pub(crate) struct RowGrad {
    kept: bool,
    finite: bool,
    max: f32,
    log_sum: f32,
    entropy: f32,
    c: f32,
    neg_gh: f32,
    g_lp: f32,
    inv_temp: f32,
    limit: f32,
    target: u32,
}

/// The per-row inputs: `params` holds 6 words per row, `keep, g_lp, g_H, g_lse, inv_temp,
/// limit` (floats as bits); `max`, `log_sum`, `entropy` (bits) come from the forward;
/// `target` is the target column or `NO_TARGET`.
#[cube]
fn row_grad(
    params: &Array<u32>,
    max: &Array<u32>,
    log_sum: &Array<u32>,
    entropy: &Array<u32>,
    target: &Array<u32>,
    r: usize,
) -> RowGrad {
    let p = r * 6;
    let max_bits = max[r];
    let log_sum_bits = log_sum[r];
    let h_bits = entropy[r];
    let finite = (max_bits & 0x7fff_ffffu32) < POS_INF_BITS
        && (log_sum_bits & 0x7fff_ffffu32) < POS_INF_BITS
        && (h_bits & 0x7fff_ffffu32) < POS_INF_BITS;
    let g_lp = f32::reinterpret(params[p + 1]);
    RowGrad {
        kept: params[p] != 0,
        finite,
        max: f32::reinterpret(select(finite, max_bits, 0u32)),
        log_sum: f32::reinterpret(select(finite, log_sum_bits, 0u32)),
        entropy: f32::reinterpret(select(finite, h_bits, 0u32)),
        c: f32::reinterpret(params[p + 3]) - g_lp,
        neg_gh: -f32::reinterpret(params[p + 2]),
        g_lp,
        inv_temp: f32::reinterpret(params[p + 4]),
        limit: f32::reinterpret(params[p + 5]),
        target: target[r],
    }
}

/// The gradient's `f32` bits at column `col` whose logit has the `f32` bits `bits`.
/// Products that `core` rounds before an addition go through [`opaque`] (`zero` = 0).
#[cube]
fn grad_bits(bits: u32, col: usize, p: RowGrad, zero: u32) -> u32 {
    let mut out = 0u32;
    if p.kept {
        out = NAN_BITS;
        let (z, class) = temper(bits, p.inv_temp, p.limit);
        if p.finite && class <= MASKED {
            let d = select(class == FINITE, clamp_arg((opaque(z, zero) - p.max) - p.log_sum), f32::new(EXP_CLAMP));
            let mut dz = opaque(exp_clamped(d) * fma(p.neg_gh, d + p.entropy, p.c), zero);
            if col == p.target as usize {
                dz += p.g_lp;
            }
            out = u32::reinterpret(dz * p.inv_temp);
        }
    }
    out
}

/// The 16 bits of an `f32` (given as bits) rounded to the output dtype.
#[cube]
fn narrow(bits: u32, #[comptime] dtype: u32) -> u32 {
    if dtype == DT_BF16 {
        bf16_from_bits(bits)
    } else {
        f16_from_bits(bits)
    }
}

/// Out-of-place gradient: `input` (`[rows, cols]` at `in_offset + r·in_stride`, words of
/// `in_dtype`) into `out` (`[rows, cols]` at `r·out_stride`, words of `out_dtype`).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn grad(
    input: &Array<u32>,
    out: &mut Array<u32>,
    params: &Array<u32>,
    max: &Array<u32>,
    log_sum: &Array<u32>,
    entropy: &Array<u32>,
    target: &Array<u32>,
    witness: &mut Array<u32>,
    rows: usize,
    cols: usize,
    nchunks: usize,
    in_stride: usize,
    in_offset: usize,
    out_stride: usize,
    zero: u32,
    #[comptime] in_dtype: u32,
    #[comptime] out_dtype: u32,
) {
    if ABSOLUTE_POS == 0 {
        witness[0] = 1u32;
    }
    let cube = CUBE_POS;
    let r = cube / nchunks;
    if r < rows {
        let p = row_grad(params, max, log_sum, entropy, target, r);
        let start = (cube % nchunks) * CHUNK;
        let end = min(start + CHUNK, cols);
        let src = in_offset + r * in_stride;
        let dst = r * out_stride;
        if out_dtype == DT_F32 {
            let mut col = start + UNIT_POS as usize;
            while col < end {
                out[dst + col] = grad_bits(load_bits(input, src + col, in_dtype), col, p, zero);
                col += CUBE_DIM as usize;
            }
        } else {
            let mut col = start + 2 * UNIT_POS as usize;
            while col < end {
                let mut word = narrow(grad_bits(load_bits(input, src + col, in_dtype), col, p, zero), out_dtype);
                if col + 1 < cols {
                    let hi = grad_bits(load_bits(input, src + col + 1, in_dtype), col + 1, p, zero);
                    word |= narrow(hi, out_dtype) << 16u32;
                } else {
                    word |= out[(dst + col) / 2] & 0xffff_0000u32;
                }
                out[(dst + col) / 2] = word;
                col += 2 * CUBE_DIM as usize;
            }
        }
    }
}

/// In-place gradient over the logits buffer itself (one binding: WebGPU forbids aliasing a
/// read and a write binding). 16-bit rows must start on a word boundary.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn grad_inplace(
    buf: &mut Array<u32>,
    params: &Array<u32>,
    max: &Array<u32>,
    log_sum: &Array<u32>,
    entropy: &Array<u32>,
    target: &Array<u32>,
    witness: &mut Array<u32>,
    rows: usize,
    cols: usize,
    nchunks: usize,
    stride: usize,
    offset: usize,
    zero: u32,
    #[comptime] dtype: u32,
) {
    if ABSOLUTE_POS == 0 {
        witness[0] = 1u32;
    }
    let cube = CUBE_POS;
    let r = cube / nchunks;
    if r < rows {
        let p = row_grad(params, max, log_sum, entropy, target, r);
        let start = (cube % nchunks) * CHUNK;
        let end = min(start + CHUNK, cols);
        let base = offset + r * stride;
        if dtype == DT_F32 {
            let mut col = start + UNIT_POS as usize;
            while col < end {
                buf[base + col] = grad_bits(buf[base + col], col, p, zero);
                col += CUBE_DIM as usize;
            }
        } else {
            let mut col = start + 2 * UNIT_POS as usize;
            while col < end {
                let w = buf[(base + col) / 2];
                let mut word = narrow(grad_bits(widen16(w, false, dtype), col, p, zero), dtype);
                if col + 1 < cols {
                    word |= narrow(grad_bits(widen16(w, true, dtype), col + 1, p, zero), dtype) << 16u32;
                } else {
                    word |= w & 0xffff_0000u32;
                }
                buf[(base + col) / 2] = word;
                col += 2 * CUBE_DIM as usize;
            }
        }
    }
}
