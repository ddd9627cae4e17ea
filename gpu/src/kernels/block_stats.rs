//! Forward, first stage: the [`RowStats`](tokenmath_core::logits::RowStats) tuple of every
//! canonical block of `BLOCK` columns, in `core`'s operation order.
//!
//! One cube of 256 threads per (row, block):
//!
//! 1. **load**: the block's tempered logits `z = x·inv_temp` go to shared memory (vector
//!    loads when the rows are aligned), with each thread's maximum (`if z > m`, so NaN
//!    never wins) and a NaN/`+inf` flag;
//! 2. **maximum**: a shared-memory tree (the maximum is exact, so any tree gives `core`'s
//!    value), then `−0 → +0`;
//! 3. **terms**: `d = clamp(z − m)`, `e = exp(d)` elementwise, back into shared memory;
//! 4. **lanes**: threads 0..8 accumulate lane `l` = columns `l, l+8, …` in increasing order
//!    (`s += e`, `u = fma(e, d, u)`), thread 0 folds the lanes in halves (4, 2, 1).
//!
//! Stages 3 and 4 are separated by a barrier and shared memory, so no compiler can contract
//! `s + y·scale` or `z·inv_temp − m` into an FMA that `core` does not perform. Every barrier
//! is reached by every thread (masked rows and spare cubes just have no columns), as WGSL's
//! uniformity rules require.

use cubecl::prelude::*;

use super::exp::{clamp_arg, exp_clamped};
use super::{is_nan_or_pos_inf, load_elem_v1, DT_BF16, NEG_INF_BITS, NO_TARGET};
use tokenmath_core::logits::{canonical::LANES, BLOCK};

const HAS_TARGET: u32 = 1;
const NONFINITE: u32 = 2;

/// Tuples of `[rows, nblocks]` blocks into `out` (5 words per tuple: `m, s, u, x_t` as `f32`
/// bits, then `flags`, the `#[repr(C)]` layout of `RowStats`).
///
/// Per row `r`: `keep[r]`, `inv_temp[r]`, and `target[r]` = the target's column within
/// this shard (or `NO_TARGET`). Row `r` starts at element `offset + r·stride` of `input`.
/// `vec_aligned`: the host checked that every block starts on a vector boundary (in words),
/// so the load can use `Vector<E, N>`; otherwise `N = 1` and elements are loaded one by one.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn block_partials<E: Scalar, N: Size>(
    input: &Array<Vector<E, N>>,
    keep: &Array<u32>,
    inv_temp: &Array<f32>,
    target: &Array<u32>,
    out: &mut Array<u32>,
    rows: usize,
    cols: usize,
    nblocks: usize,
    stride: usize,
    offset: usize,
    #[comptime] dtype: u32,
    #[comptime] vec_aligned: bool,
) {
    let tid = UNIT_POS as usize;
    let threads = CUBE_DIM as usize;
    let cube = CUBE_POS as usize;
    let row = cube / nblocks;
    let block = cube % nblocks;
    let live = row < rows;
    let r = select(live, row, 0usize);
    let kept = live && keep[r] != 0;
    let start = block * BLOCK;
    let len = select(kept, min(cols - start, BLOCK), 0usize);
    let scale = inv_temp[r];
    let base = offset + r * stride + start;

    let mut zs = SharedMemory::<f32>::new(BLOCK);
    let mut es = SharedMemory::<f32>::new(BLOCK);
    let mut red_m = SharedMemory::<f32>::new(256usize);
    let mut red_f = SharedMemory::<u32>::new(256usize);
    let mut lane_s = SharedMemory::<f32>::new(LANES);
    let mut lane_u = SharedMemory::<f32>::new(LANES);

    // 1. Load.
    let neg_inf = f32::reinterpret(NEG_INF_BITS);
    let mut m = neg_inf;
    let mut bad = 0u32;
    if vec_aligned {
        // Elements per vector: N words of f32/f16, or 2N bf16 halves.
        let per_vec = select(dtype == DT_BF16, 2usize, 1usize) * N::value();
        let first_vec = base / per_vec;
        let nvec = (len + per_vec - 1) / per_vec;
        let mut v = tid;
        while v < nvec {
            let vector = input[first_vec + v];
            #[unroll]
            for k in 0..N::value() {
                if dtype == DT_BF16 {
                    let w = u32::cast_from(vector[k]);
                    let j = (v * N::value() + k) * 2;
                    if j < len {
                        let z = f32::reinterpret(w << 16u32) * scale;
                        zs[j] = z;
                        bad |= u32::cast_from(is_nan_or_pos_inf(z));
                        if z > m {
                            m = z;
                        }
                    }
                    if j + 1 < len {
                        let z = f32::reinterpret(w & 0xffff_0000u32) * scale;
                        zs[j + 1] = z;
                        bad |= u32::cast_from(is_nan_or_pos_inf(z));
                        if z > m {
                            m = z;
                        }
                    }
                } else {
                    let j = v * N::value() + k;
                    if j < len {
                        let z = f32::cast_from(vector[k]) * scale;
                        zs[j] = z;
                        bad |= u32::cast_from(is_nan_or_pos_inf(z));
                        if z > m {
                            m = z;
                        }
                    }
                }
            }
            v += threads;
        }
    } else {
        let mut j = tid;
        while j < len {
            let z = load_elem_v1::<E, N>(input, base + j, dtype) * scale;
            zs[j] = z;
            bad |= u32::cast_from(is_nan_or_pos_inf(z));
            if z > m {
                m = z;
            }
            j += threads;
        }
    }
    red_m[tid] = m;
    red_f[tid] = bad;
    sync_cube();

    // The target logit, read before stage 3 overwrites `zs`.
    let t = target[r];
    let has_t = len > 0 && t != NO_TARGET && t as usize >= start && (t as usize) < start + len;
    let mut x_t = f32::new(0.0);
    if tid == 0 && has_t {
        x_t = zs[t as usize - start];
    }

    // 2. Block maximum and flags.
    let mut w = threads / 2;
    while w > 0 {
        if tid < w {
            let other = red_m[tid + w];
            if other > red_m[tid] {
                red_m[tid] = other;
            }
            red_f[tid] = red_f[tid] | red_f[tid + w];
        }
        sync_cube();
        w /= 2;
    }
    let mut bm = red_m[0];
    bm = select(bm == 0.0, f32::new(0.0), bm);
    let nonfinite = red_f[0];
    let summed = bm != neg_inf;

    // 3. Terms.
    if summed {
        let mut j = tid;
        while j < len {
            let d = clamp_arg(zs[j] - bm);
            es[j] = exp_clamped(d);
            zs[j] = d;
            j += threads;
        }
    }
    sync_cube();

    // 4. Lanes, then the fold.
    if tid < LANES {
        let mut s = f32::new(0.0);
        let mut u = f32::new(0.0);
        if summed {
            let mut j = tid;
            while j < len {
                let e = es[j];
                s += e;
                u = fma(e, zs[j], u);
                j += LANES;
            }
        }
        lane_s[tid] = s;
        lane_u[tid] = u;
    }
    sync_cube();
    if tid == 0 && live {
        let s = ((lane_s[0] + lane_s[4]) + (lane_s[2] + lane_s[6])) + ((lane_s[1] + lane_s[5]) + (lane_s[3] + lane_s[7]));
        let u = ((lane_u[0] + lane_u[4]) + (lane_u[2] + lane_u[6])) + ((lane_u[1] + lane_u[5]) + (lane_u[3] + lane_u[7]));
        let mut flags = select(nonfinite != 0, NONFINITE, 0u32);
        if has_t {
            flags |= HAS_TARGET;
        }
        let slot = (row * nblocks + block) * 5;
        out[slot] = u32::reinterpret(bm);
        out[slot + 1] = u32::reinterpret(s);
        out[slot + 2] = u32::reinterpret(u);
        out[slot + 3] = u32::reinterpret(x_t);
        out[slot + 4] = flags;
        if !kept {
            // A masked row: the empty tuple.
            out[slot + 1] = 0u32;
            out[slot + 2] = 0u32;
            out[slot + 3] = 0u32;
            out[slot + 4] = 0u32;
        }
    }
}
