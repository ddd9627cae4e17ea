//! The one `exp` every backend shares.
//!
//! Bitwise agreement between the portable and SIMD paths needs the *same* sequence of
//! IEEE operations, so `exp` is written out here instead of calling `libm::expf` (whose
//! operation sequence no SIMD path reproduces). The SIMD version in `x86_avx2.rs` is a
//! line-by-line transcription of [`exp_clamped`].
//!
//! Method (after Cephes `expf`): `n = round(d·log2 e)` by the `1.5·2^23` trick, the
//! reduction `r = d − n·ln2` in one fused multiply-add (`|r| ≤ ln2/2`), a degree-6 minimax
//! polynomial `1 + r + r²·Q(r)` in Horner form, then scaling by `2^n` built in the exponent
//! field. Every multiply-add is fused (`libm::fmaf` here, `vfmadd` in SIMD: both correctly
//! rounded, hence identical). Accuracy (tested against an `f64` exp): within 1 ulp on
//! `[−16, 0]`, where every term that can change an `f32` row sum lies, and within 4 ulp down
//! to `−87.3`.
//!
//! Domain and flush rule: the argument is first clamped to `dc = max(d, EXP_CLAMP)`
//! (`maxps` order: a NaN `d` passes through, so NaN propagates), and when `2^n` would be
//! subnormal (`n < −126`, i.e. `d ≲ −87.7`) the scale is set to exactly 0 in the integer
//! domain. So `exp(−inf) = 0` exactly, and every flushed term is below `2^-126 ≈ 1.2e-38`
//! of the row's largest term: below any `f32` rounding of a sum that contains that term.

/// Arguments are clamped to at least this (finite, and far enough below `−87.7` that the
/// clamped value is flushed to 0).
pub const EXP_CLAMP: f32 = -100.0;

/// `log2 e` rounded to `f32`.
pub const LOG2E: f32 = core::f32::consts::LOG2_E;
/// `1.5·2^23`: adding it rounds a float of magnitude `< 2^22` to an integer (ties to even).
pub const ROUND_MAGIC: f32 = 12_582_912.0;
/// `127 − bits(ROUND_MAGIC)`: turns the bits of `d·log2e + ROUND_MAGIC` into a biased
/// exponent (wrapping arithmetic).
pub const EXP_BIAS_FIX: u32 = 127u32.wrapping_sub(0x4B40_0000);
/// `ln 2` rounded to `f32`. The fused multiply-add forms `n·LN2` exactly, so the reduction's
/// only error is `|n|·|LN2 − ln 2| ≤ |n|·1.9e-9`: under 0.4 ulp of the result for `d ≥ −16`
/// (every term large enough to change an `f32` row sum), at most 2 ulp at `d = −87`.
pub const LN2: f32 = core::f32::consts::LN_2;
/// `exp(r) ≈ 1 + r + r²·(Q0 + Q1·r + Q2·r² + Q3·r³ + Q4·r⁴)` on `|r| ≤ ln2/2`: a
/// minimax fit of the relative error (Lawson iterations in `f64`, then rounded to `f32`),
/// max relative error 3.1e-9 = 0.03 ulp before the `f32` evaluation. One degree lower than
/// Cephes' polynomial (whose own error, 1e-10, is far below what `f32` can show), so one
/// fused multiply-add cheaper per element.
pub const Q4: f32 = 1.381_461_3e-3;
/// Polynomial coefficient (see [`Q4`]).
pub const Q3: f32 = 8.368_71e-3;
/// Polynomial coefficient (see [`Q4`]).
pub const Q2: f32 = 4.166_839e-2;
/// Polynomial coefficient (see [`Q4`]).
pub const Q1: f32 = 1.666_652_1e-1;
/// Polynomial coefficient (see [`Q4`]).
pub const Q0: f32 = 4.999_999_4e-1;

/// Fused multiply-add `a·b + c`, rounded once.
#[inline(always)]
pub(crate) fn fma(a: f32, b: f32, c: f32) -> f32 {
    libm::fmaf(a, b, c)
}

/// `max(d, EXP_CLAMP)` in the operand order of `_mm256_max_ps(EXP_CLAMP, d)`
/// (`a > b ? a : b`): a NaN `d` compares false and passes through, so NaN propagates.
#[inline(always)]
pub(crate) fn clamp_arg(d: f32) -> f32 {
    if EXP_CLAMP > d {
        EXP_CLAMP
    } else {
        d
    }
}

/// `exp(d)` for `d ≤ 0` with the flush rule of the module docs; `d` must already be
/// clamped by [`clamp_arg`] (so it is finite or NaN).
#[inline(always)]
pub(crate) fn exp_clamped(d: f32) -> f32 {
    let t = fma(d, LOG2E, ROUND_MAGIC);
    let n = t - ROUND_MAGIC;
    let r = fma(n, -LN2, d);
    let mut y = fma(Q4, r, Q3);
    y = fma(y, r, Q2);
    y = fma(y, r, Q1);
    y = fma(y, r, Q0);
    y = fma(y, r, 1.0);
    y = fma(y, r, 1.0);
    // Biased exponent n + 127, flushed to 0 (scale = +0.0) when 2^n would be subnormal.
    let biased = (t.to_bits().wrapping_add(EXP_BIAS_FIX) as i32).max(0);
    let scale = f32::from_bits((biased as u32) << 23);
    y * scale
}

/// `exp(d)` for `d ≤ 0` (or NaN) with the clamp and flush rule of the module docs.
#[inline(always)]
pub(crate) fn exp_flushed(d: f32) -> f32 {
    exp_clamped(clamp_arg(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    fn worst_ulps(lo: f32) -> u32 {
        let steps = 2_000_000u32;
        (0..=steps)
            .map(|i| {
                let d = lo * (i as f32 / steps as f32);
                ulps(exp_flushed(d), libm::exp(d as f64) as f32)
            })
            .max()
            .unwrap()
    }

    #[test]
    fn exp_accuracy() {
        let (near, far) = (worst_ulps(-16.0), worst_ulps(-87.3));
        std::println!("exp: worst {near} ulp on [-16, 0], {far} ulp on [-87.3, 0]");
        assert!(near <= 2, "worst error {near} ulp on [-16, 0]");
        assert!(far <= 4, "worst error {far} ulp on [-87.3, 0]");
    }

    #[test]
    fn exp_endpoints_and_flush() {
        assert_eq!(exp_flushed(0.0), 1.0);
        assert_eq!(exp_flushed(-0.0), 1.0);
        assert!(exp_flushed(-87.3).is_normal());
        // Below the last normal scale: exactly +0, never garbage, and monotone.
        let mut d = -87.3f32;
        let mut prev = exp_flushed(d);
        while d > -200.0 {
            let e = exp_flushed(d);
            assert!(e.to_bits() == 0 || e >= 0.5 * f32::MIN_POSITIVE, "exp({d}) = {e:e}");
            assert!(e <= prev, "exp is not monotone at {d}");
            prev = e;
            d -= 0.001;
        }
        assert_eq!(exp_flushed(-88.0).to_bits(), 0);
        assert_eq!(exp_flushed(f32::NEG_INFINITY).to_bits(), 0);
        assert!(exp_flushed(f32::NAN).is_nan());
    }
}
