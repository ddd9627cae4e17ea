//! The cubecl kernels. Everything here is crate-private: no cubecl type leaves the crate.
//!
//! **Bits, not floats, for special values.** WGSL lets a shader compiler assume that no
//! NaN or infinity occurs (Mesa's lavapipe does: it folds `x != -inf` to true), so every
//! test for `−inf` masks, NaN and `+inf` is made on the integer bits of a value loaded from
//! memory, and no float operation ever sees a non-finite operand. All logits arrive as
//! `u32` words (one `f32`, or two `bf16`/`f16` halves) and are widened with integer
//! operations; outputs leave as words the same way.
//!
//! `DT_*` dtype codes are comptime parameters: each (input, output) pair compiles to its
//! own straight-line kernel.

pub(crate) mod block_stats;
pub(crate) mod copy;
pub(crate) mod exp;
pub(crate) mod fast;
pub(crate) mod grad;
pub(crate) mod merge;

use cubecl::prelude::*;

/// Comptime dtype codes.
pub(crate) const DT_F32: u32 = 0;
pub(crate) const DT_F16: u32 = 1;
pub(crate) const DT_BF16: u32 = 2;

/// Threads per cube of the block and gradient kernels.
pub(crate) const CUBE_THREADS: u32 = 256;

/// `−inf` as bits.
pub(crate) const NEG_INF_BITS: u32 = 0xff80_0000;
/// `+inf` as bits.
pub(crate) const POS_INF_BITS: u32 = 0x7f80_0000;
/// A quiet NaN as bits.
pub(crate) const NAN_BITS: u32 = 0x7fc0_0000;
/// "No target in this shard" in the per-row target arrays.
pub(crate) const NO_TARGET: u32 = u32::MAX;

/// Element classes.
pub(crate) const FINITE: u32 = 0;
/// `−inf` (or a logit whose tempered value overflows to `−inf`): a masked column.
pub(crate) const MASKED: u32 = 1;
/// NaN or `+inf` (or overflow to `+inf`): the row's results are NaN.
pub(crate) const POISON: u32 = 2;

/// The `f32` bits of the 16-bit half of `word` selected by `hi`, for `bf16` or `f16`.
#[cube]
pub(crate) fn widen16(word: u32, hi: bool, #[comptime] dtype: u32) -> u32 {
    let h = select(hi, word >> 16u32, word & 0xffffu32);
    let mut out = h << 16u32;
    if dtype == DT_F16 {
        let sign = (h & 0x8000u32) << 16u32;
        let exp = (h >> 10u32) & 0x1fu32;
        let mant = h & 0x3ffu32;
        // Normal: rebias the exponent. Inf/NaN: all-ones exponent.
        out = sign | ((exp + 112u32) << 23u32) | (mant << 13u32);
        if exp == 31u32 {
            out = sign | POS_INF_BITS | (mant << 13u32);
        } else if exp == 0u32 {
            // Zero or subnormal: mant·2^-24 is a normal f32 (or 0), computed exactly.
            out = sign | u32::reinterpret(f32::cast_from(mant) * f32::new(5.960_464_5e-8));
        }
    }
    out
}

/// The `f32` bits of element `idx` (counted in elements) of a word array.
#[cube]
pub(crate) fn load_bits(input: &Array<u32>, idx: usize, #[comptime] dtype: u32) -> u32 {
    if dtype == DT_F32 {
        input[idx]
    } else {
        widen16(input[idx / 2], idx % 2 == 1, dtype)
    }
}

/// [`load_bits`] from an array of one-word vectors.
#[cube]
pub(crate) fn load_bits_v1<N: Size>(input: &Array<Vector<u32, N>>, idx: usize, #[comptime] dtype: u32) -> u32 {
    if dtype == DT_F32 {
        let v = input[idx];
        v[0]
    } else {
        let v = input[idx / 2];
        widen16(v[0], idx % 2 == 1, dtype)
    }
}

/// The tempered logit `z = x·inv_temp` and its class, from the bits of `x`. `limit` is the
/// largest `|x|` whose product with `inv_temp` is finite (the host computes it), so the
/// multiply never overflows: beyond it `x` counts as `±inf`, as `core`'s overflowed `z` does.
#[cube]
pub(crate) fn temper(bits: u32, inv_temp: f32, limit: f32) -> (f32, u32) {
    let special = (bits & 0x7fff_ffffu32) >= POS_INF_BITS;
    let x = f32::reinterpret(select(special, 0u32, bits));
    let class = select(
        special,
        select(bits == NEG_INF_BITS, MASKED, POISON),
        select(x > limit, POISON, select(x < -limit, MASKED, FINITE)),
    );
    (select(class == FINITE, x, f32::new(0.0)) * inv_temp, class)
}

/// `bf16::from_f32` of the `half` crate, bit for bit, on the bits of an `f32`: NaN keeps
/// its high half with the quiet bit set; otherwise round to nearest, ties to even.
#[cube]
pub(crate) fn bf16_from_bits(b: u32) -> u32 {
    let mut out = b >> 16u32;
    if (b & 0x7fff_ffffu32) > POS_INF_BITS {
        out = (b >> 16u32) | 0x0040u32;
    } else if (b & 0x8000u32) != 0 && (b & 0x17fffu32) != 0 {
        out = (b >> 16u32) + 1;
    }
    out
}

/// `f16::from_f32` of the `half` crate (round to nearest, ties to even; overflow to
/// infinity; NaN quieted), on the bits of an `f32`, in integer operations only.
#[cube]
pub(crate) fn f16_from_bits(x: u32) -> u32 {
    let sign = (x & 0x8000_0000u32) >> 16u32;
    let exp = x & 0x7f80_0000u32;
    let man = x & 0x007f_ffffu32;
    let mut out = sign;
    if exp == POS_INF_BITS {
        out = sign | 0x7c00u32 | select(man == 0, 0u32, 0x0200u32) | (man >> 13u32);
    } else {
        // `e = half_exp + 127`, where `half_exp` is the exponent rebiased for f16.
        let e = (exp >> 23u32) + 15u32;
        if e >= 127u32 + 31u32 {
            out = sign | 0x7c00u32;
        } else if e <= 127u32 {
            // Subnormal half (or zero): shift = 14 − half_exp = 14 + 127 − e.
            let shift = 141u32 - e;
            if shift <= 24u32 {
                let m = man | 0x0080_0000u32;
                let mut half_man = m >> shift;
                let round_bit = 1u32 << (shift - 1u32);
                if (m & round_bit) != 0 && (m & (3u32 * round_bit - 1u32)) != 0 {
                    half_man += 1u32;
                }
                out = sign | half_man;
            }
        } else {
            let half = sign | ((e - 127u32) << 10u32) | (man >> 13u32);
            out = half;
            if (man & 0x1000u32) != 0 && (man & 0x2fffu32) != 0 {
                out = half + 1u32;
            }
        }
    }
    out
}

/// `x` through an integer operation no compiler can see through (`zero` is a kernel
/// argument, always 0). `core` rounds a product before adding it; a shader compiler may
/// contract the two into one FMA (NVRTC does by default, and cubecl offers no way to opt
/// out), which changes the last bit. A product passed through `opaque` is no longer a
/// product to the compiler.
#[cube]
pub(crate) fn opaque(x: f32, zero: u32) -> f32 {
    f32::reinterpret(u32::reinterpret(x) | zero)
}

/// A 1-D launch of `total` cubes laid out as a 2-D grid (WebGPU allows 65 535 per axis); the
/// kernels recover the linear id from `CUBE_POS` and skip ids `≥ total`.
pub(crate) fn grid(total: usize) -> CubeCount {
    let x = total.clamp(1, 65_535);
    CubeCount::Static(x as u32, total.div_ceil(x).max(1) as u32, 1)
}

/// `fma(a, a, c)`, to find out whether the runtime fuses it (WGSL allows an unfused `fma`,
/// and Mesa's lavapipe does not fuse): with `a = 1 + 2^-12`, `c = −(1 + 2^-11)` the fused
/// result is `2^-24`, the unfused one 0.
#[cube(launch_unchecked)]
pub(crate) fn fma_probe(out: &mut Array<f32>, a: f32, c: f32) {
    if ABSOLUTE_POS == 0 {
        out[0] = fma(a, a, c);
    }
}
