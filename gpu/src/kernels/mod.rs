//! The cubecl kernels. Everything here is crate-private: no cubecl type leaves the crate.
//!
//! Element access is uniform across dtypes: `f32` and `f16` logits are arrays of their own
//! type, `bf16` logits are arrays of `u32` words holding two elements each (WGSL has no
//! `bf16` type, and a native one fails silently there), widened with a shift. `DType`
//! codes below are comptime parameters, so each (input, output) pair compiles to its own
//! straight-line kernel.

pub(crate) mod block_stats;
pub(crate) mod copy;
pub(crate) mod exp;
pub(crate) mod grad;
pub(crate) mod merge;

use cubecl::prelude::*;

/// Comptime dtype codes.
pub(crate) const DT_F32: u32 = 0;
pub(crate) const DT_F16: u32 = 1;
pub(crate) const DT_BF16: u32 = 2;

/// Threads per cube of the block and gradient kernels.
pub(crate) const CUBE_THREADS: u32 = 256;

/// `−inf` as bits (WGSL has no infinity literal).
pub(crate) const NEG_INF_BITS: u32 = 0xff80_0000;
/// A quiet NaN as bits.
pub(crate) const NAN_BITS: u32 = 0x7fc0_0000;
/// "No target in this shard" in the per-row target arrays.
pub(crate) const NO_TARGET: u32 = u32::MAX;

/// Element `idx` (counted in elements of the logits buffer) widened to `f32`.
#[cube]
pub(crate) fn load_elem<E: Scalar>(input: &Array<E>, idx: usize, #[comptime] dtype: u32) -> f32 {
    if dtype == DT_BF16 {
        bf16_half(u32::cast_from(input[idx / 2]), idx)
    } else {
        f32::cast_from(input[idx])
    }
}

/// [`load_elem`] from an array of one-element vectors.
#[cube]
pub(crate) fn load_elem_v1<E: Scalar, N: Size>(input: &Array<Vector<E, N>>, idx: usize, #[comptime] dtype: u32) -> f32 {
    if dtype == DT_BF16 {
        let w = input[idx / 2];
        bf16_half(u32::cast_from(w[0]), idx)
    } else {
        let x = input[idx];
        f32::cast_from(x[0])
    }
}

/// The `bf16` element of word `w` that element index `idx` selects (even: low half).
#[cube]
fn bf16_half(w: u32, idx: usize) -> f32 {
    let bits = select(idx % 2 == 1, w >> 16u32, w & 0xffffu32);
    f32::reinterpret(bits << 16u32)
}

/// `bf16::from_f32` of the `half` crate, bit for bit: NaN keeps its high half with the
/// quiet bit set; otherwise round to nearest, ties to even.
#[cube]
pub(crate) fn bf16_bits(x: f32) -> u32 {
    let b = u32::reinterpret(x);
    let mut out = b >> 16u32;
    if (b & 0x7fff_ffffu32) > 0x7f80_0000u32 {
        out = (b >> 16u32) | 0x0040u32;
    } else if (b & 0x8000u32) != 0 && (b & 0x17fffu32) != 0 {
        out = (b >> 16u32) + 1;
    }
    out
}

/// `NaN` / `+inf` test on the bits (immune to any no-NaN assumption of a shader compiler).
#[cube]
pub(crate) fn is_nan_or_pos_inf(z: f32) -> bool {
    let b = u32::reinterpret(z);
    (b & 0x7fff_ffffu32) > 0x7f80_0000u32 || b == 0x7f80_0000u32
}

/// A 1-D launch of `total` cubes laid out as a 2-D grid (WebGPU allows 65 535 per axis); the
/// kernels recover the linear id from `CUBE_POS` and skip ids `≥ total`.
pub(crate) fn grid(total: usize) -> CubeCount {
    let x = total.clamp(1, 65_535);
    CubeCount::Static(x as u32, total.div_ceil(x).max(1) as u32, 1)
}
