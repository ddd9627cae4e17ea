//! Forward, first stage: the [`RowStats`](tokenmath_core::logits::RowStats) tuple of every
//! canonical block of `BLOCK` columns, in `core`'s operation order.
//!
//! One cube per (row, block), of 256 threads by default (`Gpu::set_block_threads`):
//!
//! 1. **load**: the block's tempered logits `z = x·inv_temp` go to shared memory as bits
//!    (vector loads when the rows are aligned); `−inf` columns are stored as the `−inf`
//!    pattern and skipped from then on, NaN/`+inf` set the block's flag; each thread keeps
//!    the maximum of its finite `z` (`if z > m`);
//! 2. **maximum**: plane (warp) maxima, then across planes through shared memory (the
//!    maximum is exact, so any grouping gives `core`'s value), then `−0 → +0`;
//! 3. **terms**: `d = clamp(z − m)`, `e = exp(d)` elementwise, back into shared memory
//!    (a masked column gets `e = d = 0`: in `core` it adds exactly nothing either);
//! 4. **lanes**: threads 0..8 accumulate lane `l` = columns `l, l+8, …` in increasing order
//!    (`s += e`, `u = fma(e, d, u)`), thread 0 folds the lanes in halves (4, 2, 1).
//!
//! Stages 3 and 4 are separated by a barrier and shared memory, so no compiler can contract
//! `s + y·scale` or `z·inv_temp − m` into an FMA that `core` does not perform. Every barrier
//! is reached by every thread (masked rows and spare cubes just have no columns), as WGSL's
//! uniformity rules require. A flagged (non-finite) block's `m, s, u` are unspecified.

use cubecl::prelude::*;

use super::exp::{clamp_arg, exp_clamped};
use super::{load_bits_v1, temper, widen16, DT_F32, FINITE, NEG_INF_BITS, NO_TARGET, POISON};
use tokenmath_core::logits::{canonical::LANES, BLOCK};

const HAS_TARGET: u32 = 1;
const NONFINITE: u32 = 2;

/// Stores one loaded element: its bits in `zs` (`−inf` for masked and poisoned columns),
/// and returns the updated `(max, any finite, poisoned)` of the thread.
#[cube]
fn take(
    zs: &mut SharedMemory<u32>,
    j: usize,
    bits: u32,
    inv_temp: f32,
    limit: f32,
    m: f32,
    any: u32,
    bad: u32,
) -> (f32, u32, u32) {
    let (z, class) = temper(bits, inv_temp, limit);
    let mut m2 = m;
    let mut any2 = any;
    if class == FINITE {
        zs[j] = u32::reinterpret(z);
        any2 = 1u32;
        if z > m {
            m2 = z;
        }
    } else {
        zs[j] = NEG_INF_BITS;
    }
    (m2, any2, bad | u32::cast_from(class == POISON))
}

/// Tuples of `[rows, nblocks]` blocks into `out` (5 words per tuple: `m, s, u, x_t` as `f32`
/// bits, then `flags`, the `#[repr(C)]` layout of `RowStats`).
///
/// Per row `r`: `keep[r]`, `inv_temp[r]`, `limit[r]` (see [`temper`]) and `target[r]` = the
/// target's column within this shard (or `NO_TARGET`). Row `r` starts at element
/// `offset + r·stride` of `input`. `vec_aligned`: every block starts on a vector boundary
/// (checked by the host), so the load uses `Vector<u32, N>`; otherwise `N = 1` and elements
/// are loaded one by one. `witness[0]` is set to 1 (see `kernels::grad`).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn block_partials<N: Size>(
    input: &Array<Vector<u32, N>>,
    keep: &Array<u32>,
    inv_temp: &Array<f32>,
    limit: &Array<f32>,
    target: &Array<u32>,
    out: &mut Array<u32>,
    witness: &mut Array<u32>,
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
    let cube = CUBE_POS;
    if cube == 0 && tid == 0 {
        witness[0] = 1u32;
    }
    let row = cube / nblocks;
    let block = cube % nblocks;
    let live = row < rows;
    let r = select(live, row, 0usize);
    let kept = live && keep[r] != 0;
    let start = block * BLOCK;
    let len = select(kept, min(cols - start, BLOCK), 0usize);
    let scale = inv_temp[r];
    let lim = limit[r];
    let base = offset + r * stride + start;

    let mut zs = SharedMemory::<u32>::new(BLOCK);
    let mut es = SharedMemory::<f32>::new(BLOCK);
    // One slot per plane (at least 8 threads per plane on every runtime).
    let mut red_m = SharedMemory::<f32>::new(32usize);
    let mut red_any = SharedMemory::<u32>::new(32usize);
    let mut red_bad = SharedMemory::<u32>::new(32usize);
    let mut lane_s = SharedMemory::<f32>::new(LANES);
    let mut lane_u = SharedMemory::<f32>::new(LANES);

    // The target's column within the block (or `BLOCK`, never loaded): the thread that loads
    // it copies its tempered bits to `target_z` (a NaN target has already flagged the block).
    let t = target[r];
    let has_t = len > 0 && t != NO_TARGET && t as usize >= start && (t as usize) < start + len;
    let t_local = select(has_t, t as usize - start, BLOCK);
    let mut target_z = SharedMemory::<u32>::new(1usize);

    // 1. Load.
    let mut m = f32::new(-f32::MAX);
    let mut any = 0u32;
    let mut bad = 0u32;
    if vec_aligned {
        // Elements per vector: N words of f32, or 2N halves of bf16/f16.
        let per_vec = select(dtype == DT_F32, 1usize, 2usize) * N::value();
        let first_vec = base / per_vec;
        // Not `div_ceil`: kernels can only call what cubecl expands.
        #[allow(clippy::manual_div_ceil)]
        let nvec = (len + per_vec - 1) / per_vec;
        let mut v = tid;
        while v < nvec {
            let vector = input[first_vec + v];
            #[unroll]
            for k in 0..N::value() {
                let w = vector[k];
                if dtype == DT_F32 {
                    let j = v * N::value() + k;
                    if j < len {
                        let (m2, a2, b2) = take(&mut zs, j, w, scale, lim, m, any, bad);
                        m = m2;
                        any = a2;
                        bad = b2;
                        if j == t_local {
                            target_z[0] = zs[j];
                        }
                    }
                } else {
                    let j = (v * N::value() + k) * 2;
                    if j < len {
                        let (m2, a2, b2) = take(&mut zs, j, widen16(w, false, dtype), scale, lim, m, any, bad);
                        m = m2;
                        any = a2;
                        bad = b2;
                        if j == t_local {
                            target_z[0] = zs[j];
                        }
                    }
                    if j + 1 < len {
                        let (m2, a2, b2) = take(&mut zs, j + 1, widen16(w, true, dtype), scale, lim, m, any, bad);
                        m = m2;
                        any = a2;
                        bad = b2;
                        if j + 1 == t_local {
                            target_z[0] = zs[j + 1];
                        }
                    }
                }
            }
            v += threads;
        }
    } else {
        let mut j = tid;
        while j < len {
            let (m2, a2, b2) = take(&mut zs, j, load_bits_v1::<N>(input, base + j, dtype), scale, lim, m, any, bad);
            m = m2;
            any = a2;
            bad = b2;
            if j == t_local {
                target_z[0] = zs[j];
            }
            j += threads;
        }
    }
    // 2. Block maximum and flags: within each plane (warp) by plane operations, then across
    // the planes through shared memory, folded by every thread. The maximum is exact, so the
    // grouping cannot change it.
    let plane_m = plane_max(m);
    let plane_any = plane_max(any);
    let plane_bad = plane_max(bad);
    if UNIT_POS_PLANE == 0 {
        let p = (UNIT_POS / PLANE_DIM) as usize;
        red_m[p] = plane_m;
        red_any[p] = plane_any;
        red_bad[p] = plane_bad;
    }
    sync_cube();

    let planes = (CUBE_DIM / PLANE_DIM) as usize;
    let mut bm = red_m[0];
    let mut summed = red_any[0];
    let mut nonfinite = red_bad[0];
    for p in 1..planes {
        let other = red_m[p];
        if other > bm {
            bm = other;
        }
        summed |= red_any[p];
        nonfinite |= red_bad[p];
    }
    bm = select(bm == 0.0, f32::new(0.0), bm);
    let summed = summed != 0;

    // 3. Terms.
    if summed {
        let mut j = tid;
        while j < len {
            let bits = zs[j];
            let mut e = f32::new(0.0);
            let mut d = f32::new(0.0);
            if bits != NEG_INF_BITS {
                d = clamp_arg(f32::reinterpret(bits) - bm);
                e = exp_clamped(d);
            }
            es[j] = e;
            zs[j] = u32::reinterpret(d);
            j += threads;
        }
    }
    sync_cube();

    // 4. Lanes, then the fold.
    if tid < LANES {
        let mut s = f32::new(0.0);
        let mut u = f32::new(0.0);
        if summed {
            // Four steps of the lane per iteration (loads issued together), then the rest:
            // the same sequential order.
            let mut j = tid;
            while j + 3 * LANES < len {
                let e0 = es[j];
                let e1 = es[j + LANES];
                let e2 = es[j + 2 * LANES];
                let e3 = es[j + 3 * LANES];
                let d0 = f32::reinterpret(zs[j]);
                let d1 = f32::reinterpret(zs[j + LANES]);
                let d2 = f32::reinterpret(zs[j + 2 * LANES]);
                let d3 = f32::reinterpret(zs[j + 3 * LANES]);
                s += e0;
                u = fma(e0, d0, u);
                s += e1;
                u = fma(e1, d1, u);
                s += e2;
                u = fma(e2, d2, u);
                s += e3;
                u = fma(e3, d3, u);
                j += 4 * LANES;
            }
            while j < len {
                let e = es[j];
                s += e;
                u = fma(e, f32::reinterpret(zs[j]), u);
                j += LANES;
            }
        }
        lane_s[tid] = s;
        lane_u[tid] = u;
    }
    sync_cube();
    if tid == 0 && live {
        let s =
            ((lane_s[0] + lane_s[4]) + (lane_s[2] + lane_s[6])) + ((lane_s[1] + lane_s[5]) + (lane_s[3] + lane_s[7]));
        let u =
            ((lane_u[0] + lane_u[4]) + (lane_u[2] + lane_u[6])) + ((lane_u[1] + lane_u[5]) + (lane_u[3] + lane_u[7]));
        let mut flags = select(nonfinite != 0, NONFINITE, 0u32);
        if has_t {
            flags |= HAS_TARGET;
        }
        let slot = (row * nblocks + block) * 5;
        // No finite logit: `m = −inf`, `s = u = 0`, as `core`.
        out[slot] = select(summed, u32::reinterpret(bm), NEG_INF_BITS);
        out[slot + 1] = select(summed, u32::reinterpret(s), 0u32);
        out[slot + 2] = select(summed, u32::reinterpret(u), 0u32);
        out[slot + 3] = select(has_t, target_z[0], 0u32);
        out[slot + 4] = flags;
    }
}
