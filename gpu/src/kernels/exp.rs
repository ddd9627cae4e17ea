//! The canonical `exp` and `log` of `tokenmath-core`, transcribed operation for operation,
//! so that the GPU and CPU produce the same bits wherever the shader compiler keeps the
//! operations as written (explicit `fma`s are always fused).
//!
//! `exp_clamped` is `core`'s shared `exp` (constants from [`tokenmath_core::logits::canonical`]);
//! `log_pos` is libm 0.2's `logf` (what `core`'s finalize calls) restricted to the normal
//! positive arguments the finalize can see (`1 ≤ s ≤ V`).

use cubecl::prelude::*;
use tokenmath_core::logits::canonical as c;

use super::opaque;

/// `bits(ROUND_MAGIC)`: `bits(t) − ROUND_MAGIC_BITS = n` for `t = n + ROUND_MAGIC`.
const ROUND_MAGIC_BITS: i32 = c::ROUND_MAGIC.to_bits() as i32;
const LN2_HI: f32 = f32::from_bits(0x3f31_7180);
const LN2_LO: f32 = f32::from_bits(0x3717_f7d1);
const LG1: f32 = f32::from_bits(0x3f2a_aaaa);
const LG2: f32 = f32::from_bits(0x3ecc_ce13);
const LG3: f32 = f32::from_bits(0x3e91_e9ee);
const LG4: f32 = f32::from_bits(0x3e78_9e26);

/// `max(d, EXP_CLAMP)` with `core`'s operand order: a NaN `d` passes through.
#[cube]
pub(crate) fn clamp_arg(d: f32) -> f32 {
    select(f32::new(c::EXP_CLAMP) > d, f32::new(c::EXP_CLAMP), d)
}

/// `exp(d)` for a clamped `d ≤ 0`: one-FMA reduction, degree-6 polynomial, `2^n` built in
/// the exponent field and flushed to exactly 0 below `2^-126`.
#[cube]
pub(crate) fn exp_clamped(d: f32) -> f32 {
    let t = fma(d, f32::new(c::LOG2E), f32::new(c::ROUND_MAGIC));
    // `n = t − ROUND_MAGIC` (exact), taken from the bits of `t`: written as a float
    // subtraction, a shader compiler that reassociates (lavapipe's does) folds it with the
    // addition inside the `fma` and loses the rounding to an integer.
    let n = f32::cast_from(i32::cast_from(u32::reinterpret(t)) - ROUND_MAGIC_BITS);
    let r = fma(n, f32::new(-c::LN2), d);
    let mut y = fma(f32::new(c::Q4), r, f32::new(c::Q3));
    y = fma(y, r, f32::new(c::Q2));
    y = fma(y, r, f32::new(c::Q1));
    y = fma(y, r, f32::new(c::Q0));
    y = fma(y, r, f32::new(1.0));
    y = fma(y, r, f32::new(1.0));
    // The biased exponent n + 127 (wrapping), 0 when it is negative as an i32.
    let biased = u32::reinterpret(t) + c::EXP_BIAS_FIX;
    let biased = select(biased >= 0x8000_0000u32, 0u32, biased);
    y * f32::reinterpret(biased << 23u32)
}

/// `exp` with the clamp: `exp(−inf) = 0`, NaN propagates.
#[cube]
pub(crate) fn exp_flushed(d: f32) -> f32 {
    exp_clamped(clamp_arg(d))
}

/// libm 0.2's `logf(x)` for a positive normal finite `x`, every product kept apart from the
/// sum it feeds ([`opaque`], `zero` = 0), as libm rounds it.
#[cube]
pub(crate) fn log_pos(x: f32, zero: u32) -> f32 {
    let mut out = f32::new(0.0);
    let bits = u32::reinterpret(x);
    if bits != 0x3f80_0000u32 {
        // Reduce x into [sqrt(2)/2, sqrt(2)].
        let ix = bits + (0x3f80_0000u32 - 0x3f35_04f3u32);
        let k = i32::cast_from(ix >> 23u32) - 0x7f;
        let xr = f32::reinterpret((ix & 0x007f_ffffu32) + 0x3f35_04f3u32);
        let f = xr - f32::new(1.0);
        let s = f / (f32::new(2.0) + f);
        let z = s * s;
        let w = z * z;
        let t1 = opaque(w * (f32::new(LG2) + opaque(w * f32::new(LG4), zero)), zero);
        let t2 = opaque(z * (f32::new(LG1) + opaque(w * f32::new(LG3), zero)), zero);
        let r = t2 + t1;
        let hfsq = opaque(f32::new(0.5) * f * f, zero);
        let dk = f32::cast_from(k);
        let lo = opaque(dk * f32::new(LN2_LO), zero);
        let hi = opaque(dk * f32::new(LN2_HI), zero);
        out = opaque(s * (hfsq + r), zero) + lo - hfsq + f + hi;
    }
    out
}
