//! Forward, first stage: the [`RowStats`](tokenmath_core::logits::RowStats) tuple of every
//! canonical block of `BLOCK` columns, in `core`'s operation order.
//!
//! **One thread per (block, lane).** `core` accumulates a block in 8 interleaved lanes (lane
//! `l` = columns `l, l+8, l+16, …`, in increasing order), so each lane is a sequential chain
//! and a block has exactly 8 of them. Here each thread owns one (row, block, lane): 8
//! consecutive threads are one block, a 32-thread warp is 4 blocks, and every issued
//! instruction of the accumulation does useful work on every thread. Each thread makes two
//! passes over its lane's columns straight from global memory (the second hits the caches):
//!
//! 1. **maximum**: the lane's maximum of its finite tempered logits `z = x·inv_temp` (`if
//!    z > m`), with the column classes tracked as integer minima/maxima of the logits' bits
//!    (see below); the 8 lanes of a block combine by XOR shuffles inside the plane (the
//!    maximum is exact, so any grouping gives `core`'s value), then `−0 → +0`;
//! 2. **sums**: `d = clamp(z − m)`, `e = exp(d)`, `s += e`, `u = fma(e, d, u)` column after
//!    column, exactly `core`'s chain; a masked column gets `d = EXP_CLAMP`, hence `e = 0`, as
//!    `core`'s `−inf` does. Then the lanes fold in halves (`l + 4`, `l + 2`, `l + 1`, XOR
//!    shuffles: `((l0+l4)+(l2+l6))+((l1+l5)+(l3+l7))`, `core`'s order) and lane 0 writes the
//!    tuple, reading the target's logit itself.
//!
//! **Classes on the bits.** `a = bits & 0x7fff_ffff`: the column is finite iff `a ≤ bits(limit)`
//! (`limit`, finite, from the host: beyond it the tempered value overflows); the block has a
//! finite column iff `min a ≤ bits(limit)`, a NaN or `+inf`-like column (positive beyond the
//! limit, or any NaN) iff `max(0, bits)` (signed) `> bits(limit)` or `max bits` (unsigned)
//! `> bits(−inf)`. Non-finite values never reach a float operation (WGSL).
//!
//! When every row's `inv_temp` is 1 (comptime `scaled = false`), `z = x`: `core` skips the
//! multiply too.
//!
//! **No contraction.** `z` and `e` pass through [`opaque`] before they are added to, so
//! that NVRTC (which contracts by default) cannot fuse `x·inv_temp − m` or `s + y·2^n` into
//! an FMA that `core` does not perform. The shuffles are executed by every thread, outside
//! any branch (WGSL's uniformity rules); spare threads have no columns. A flagged
//! (non-finite) block's `m, s, u` are unspecified.

use cubecl::prelude::*;

use super::exp::{clamp_arg, exp_clamped};
use super::{opaque, widen16, DT_F16, DT_F32, NEG_INF_BITS, NO_TARGET, POS_INF_BITS};
use tokenmath_core::logits::canonical::{EXP_CLAMP, LANES};
use tokenmath_core::logits::BLOCK;

const HAS_TARGET: u32 = 1;
const NONFINITE: u32 = 2;
const ABS_MASK: u32 = 0x7fff_ffff;

/// The `f32` bits of the lane's element in `word` (`shift` selects the 16-bit half).
#[cube]
fn lane_bits(word: u32, shift: u32, #[comptime] dtype: u32) -> u32 {
    if dtype == DT_F32 {
        word
    } else if dtype == DT_F16 {
        f16_bits(word >> shift)
    } else {
        widen16(word >> shift, false, dtype)
    }
}

/// [`widen16`] of the low half of `w` for `f16`, without branches: every case is computed
/// (all on finite values) and the exponent field selects one.
#[cube]
fn f16_bits(w: u32) -> u32 {
    let h = w & 0xffffu32;
    let sign = (h & 0x8000u32) << 16u32;
    let exp = (h >> 10u32) & 0x1fu32;
    let mant = h & 0x3ffu32;
    // Normal: the exponent rebiased by 112; inf/NaN: by 143 − 255 more (all-ones exponent).
    let normal = ((h & 0x7fffu32) << 13u32) + (112u32 << 23u32);
    let special = normal + (POS_INF_BITS - (143u32 << 23u32));
    // Zero or subnormal: mant·2^-24, a normal f32 (or 0), computed exactly.
    let sub = u32::reinterpret(f32::cast_from(mant) * f32::new(5.960_464_5e-8));
    sign | select(exp == 31u32, special, select(exp == 0u32, sub, normal))
}

/// `max` of two floats with `core`'s `if z > m` (the operands are finite).
#[cube]
fn lane_max(m: f32, z: f32) -> f32 {
    select(z > m, z, m)
}

/// Tuples of `[rows, nblocks]` blocks into `out` (5 words per tuple: `m, s, u, x_t` as `f32`
/// bits, then `flags`, the `#[repr(C)]` layout of `RowStats`).
///
/// Launched with `rows·nblocks·LANES` threads (or more: spare threads do nothing), in cubes
/// of a multiple of 8 threads, on planes of a multiple of 8. Per row `r`: `keep[r]`,
/// `inv_temp[r]`, `limit[r]` (the largest finite `|x|` whose tempered value is finite) and
/// `target[r]` = the target's column within this shard (or `NO_TARGET`). Row `r` starts at
/// element `offset + r·stride` of `input` (`u32` words: one `f32` or two halves). `zero` is
/// 0 (see [`opaque`]). `scaled`: some row's `inv_temp ≠ 1` (otherwise `z = x`, as `core`
/// skips the multiply). `witness[0]` is set to 1 (see `kernels::grad`).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn block_partials(
    input: &Array<u32>,
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
    zero: u32,
    #[comptime] dtype: u32,
    #[comptime] scaled: bool,
) {
    let tid = UNIT_POS as usize;
    if CUBE_POS == 0 && tid == 0 {
        witness[0] = 1u32;
    }
    let g = CUBE_POS * (CUBE_DIM as usize) + tid;
    let lane = tid % LANES;
    let blk = g / LANES;
    let row = blk / nblocks;
    let block = blk % nblocks;
    let live = row < rows;
    let r = select(live, row, 0usize);
    let kept = live && keep[r] != 0;
    let start = block * BLOCK;
    let len = select(kept, min(cols - start, BLOCK), 0usize);
    let scale = inv_temp[r];
    let lim = u32::reinterpret(limit[r]);
    let base = offset + r * stride + start;

    // The lane's first element, as a word index and (16-bit dtypes) the half's shift; the
    // lane advances by 8 elements: 8 words of f32, 4 words of halves.
    let e0 = base + lane;
    let first = select(dtype == DT_F32, e0, e0 / 2);
    let shift = select(dtype == DT_F32, 0u32, (e0 % 2) as u32 * 16u32);
    let wstep = select(dtype == DT_F32, LANES, LANES / 2);

    // 1. The lane's maximum and classes.
    let mut m = f32::new(-f32::MAX);
    let mut min_abs = 0xffff_ffffu32;
    let mut max_signed = 0i32;
    let mut max_bits = 0u32;
    let mut j = lane;
    let mut w = first;
    while j < len {
        let bits = lane_bits(input[w], shift, dtype);
        let a = bits & ABS_MASK;
        let fin = a <= lim;
        let mut z = f32::reinterpret(select(fin, bits, 0u32));
        if scaled {
            z *= scale;
        }
        m = select(fin && z > m, z, m);
        min_abs = min(min_abs, a);
        // From 0, not `i32::MIN` (NVRTC rejects cubecl's reinterpretation of a constant):
        // `bits(limit) ≥ 0`, so the comparison below is the same.
        max_signed = max(max_signed, i32::reinterpret(bits));
        max_bits = max(max_bits, bits);
        j += LANES;
        w += wstep;
    }
    // The block's, over its 8 lanes (consecutive threads of one plane).
    #[unroll]
    for k in 0..3u32 {
        let mask = 1u32 << k;
        m = lane_max(m, plane_shuffle_xor(m, mask));
        min_abs = min(min_abs, plane_shuffle_xor(min_abs, mask));
        max_signed = max(max_signed, plane_shuffle_xor(max_signed, mask));
        max_bits = max(max_bits, plane_shuffle_xor(max_bits, mask));
    }
    let bm = select(m == 0.0, f32::new(0.0), m);
    let summed = min_abs <= lim;
    let nonfinite = max_signed > i32::reinterpret(lim) || max_bits > NEG_INF_BITS;

    // 2. The lane's chain.
    let mut s = f32::new(0.0);
    let mut u = f32::new(0.0);
    if summed {
        let mut j = lane;
        let mut w = first;
        while j < len {
            let bits = lane_bits(input[w], shift, dtype);
            let fin = (bits & ABS_MASK) <= lim;
            let mut z = f32::reinterpret(select(fin, bits, 0u32));
            if scaled {
                z = opaque(z * scale, zero);
            }
            let d = select(fin, clamp_arg(z - bm), f32::new(EXP_CLAMP));
            let e = opaque(exp_clamped(d), zero);
            s += e;
            u = fma(e, d, u);
            j += LANES;
            w += wstep;
        }
    }
    // The fold in halves: lane l < w adds lane l + w (w = 4, 2, 1).
    #[unroll]
    for k in 0..3u32 {
        let mask = 4u32 >> k;
        s += plane_shuffle_xor(s, mask);
        u += plane_shuffle_xor(u, mask);
    }

    if lane == 0 && live {
        let t = target[r];
        let has_t = len > 0 && t != NO_TARGET && t as usize >= start && (t as usize) < start + len;
        let mut x_t = 0u32;
        if has_t {
            // The target's tempered logit (`−inf` bits when masked or poisoned: a NaN target
            // has flagged the block).
            let et = base + (t as usize - start);
            let bits = if dtype == DT_F32 { input[et] } else { widen16(input[et / 2], et % 2 == 1, dtype) };
            let a = bits & ABS_MASK;
            let mut z = f32::reinterpret(select(a <= lim, bits, 0u32));
            if scaled {
                z *= scale;
            }
            x_t = select(a <= lim, u32::reinterpret(z), NEG_INF_BITS);
        }
        let mut flags = select(nonfinite, NONFINITE, 0u32);
        if has_t {
            flags |= HAS_TARGET;
        }
        let slot = (row * nblocks + block) * 5;
        // No finite logit: `m = −inf`, `s = u = 0`, as `core`.
        out[slot] = select(summed, u32::reinterpret(bm), NEG_INF_BITS);
        out[slot + 1] = select(summed, u32::reinterpret(s), 0u32);
        out[slot + 2] = select(summed, u32::reinterpret(u), 0u32);
        out[slot + 3] = x_t;
        out[slot + 4] = flags;
    }
}
