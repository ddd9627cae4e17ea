//! The crate's `exp`, in one place: two evaluations with different contracts.
//!
//! Bitwise agreement between the portable and SIMD paths needs the *same* sequence of
//! IEEE operations, so `exp` is written out here instead of calling `libm::expf` (whose
//! operation sequence no SIMD path reproduces). Every SIMD `exp` in the crate is a
//! line-by-line transcription of one of the two functions below, and a test says so bitwise.
//!
//! * [`exp_flushed`] / [`exp_clamped`], the softmax `exp` of [`crate::logits`]: arguments
//!   `d ≤ 0` only, fused multiply-adds, a degree-5 polynomial and the flush rule below.
//! * [`exp_full`], the ratio `exp` of [`crate::policy_loss`]: the whole `f32` range
//!   (ratios `e^Δ` above 1, `+inf` on overflow), no fused operation (so the compiler can
//!   vectorise the plain-Rust loops, which never contract `a·b + c`), Cephes' degree-6
//!   polynomial.
//!
//! They share the rounding trick ([`LOG2E`], [`ROUND_MAGIC`]); their other constants differ
//! and so do their bits. Merging them into one would change every result of one of the two
//! families (the library's outputs are bitwise stable), so both stay, side by side.
//!
//! # The softmax `exp`
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
//!
//! # The ratio `exp`
//!
//! Cephes `expf`: Cody–Waite reduction with a two-part `ln 2` ([`CEPHES_C1`] + [`CEPHES_C2`]),
//! the degree-6 polynomial [`CEPHES_P`], scaling by `2^n` in two exact steps. Accuracy: within
//! 2 ulp of the correctly rounded `exp` on the normal range (tested against `f64`); results
//! below `2^-126` may round twice (subnormal results only). `exp(NaN) = NaN`, `exp(x) = +inf`
//! for `x ≥ 88.73`, `exp(x) = 0` for `x ≤ −104`.

// The Cephes constants are quoted as Cephes publishes them.
#![allow(clippy::excessive_precision)]

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

/// `ln 2 = CEPHES_C1 + CEPHES_C2` for [`exp_full`]: `CEPHES_C1` has 9 significant bits, so
/// `n·CEPHES_C1` is exact for `|n| < 2^15`.
pub(crate) const CEPHES_C1: f32 = 0.693_359_375;
/// The low part of `ln 2` (see [`CEPHES_C1`]).
pub(crate) const CEPHES_C2: f32 = -2.121_944_400_546_905_827_68e-4;
/// [`exp_full`]'s polynomial, highest degree first: `exp(r) ≈ 1 + r + r²·P(r)`.
pub(crate) const CEPHES_P: [f32; 6] = [
    1.987_569_15e-4,
    1.398_199_950_7e-3,
    8.333_451_907_3e-3,
    4.166_579_589_4e-2,
    1.666_666_545_9e-1,
    5.000_000_120_1e-1,
];
/// [`exp_full`]'s argument range: `x` is clamped to `[EXP_FULL_MIN, EXP_FULL_MAX]` first.
pub(crate) const EXP_FULL_MIN: f32 = -104.0;
/// See [`EXP_FULL_MIN`].
pub(crate) const EXP_FULL_MAX: f32 = 89.0;

/// `exp(x)` in `f32` on the whole range, without fused operations (see the module docs for
/// accuracy and the domain rules).
#[inline(always)]
pub(crate) fn exp_full(x: f32) -> f32 {
    // Comparisons are false for NaN, so NaN passes through to the result.
    let xc = x.clamp(EXP_FULL_MIN, EXP_FULL_MAX);
    let t = xc * LOG2E + ROUND_MAGIC;
    let n = t - ROUND_MAGIC;
    let r = (xc - n * CEPHES_C1) - n * CEPHES_C2;
    let r2 = r * r;
    let [p0, p1, p2, p3, p4, p5] = CEPHES_P;
    let p = ((((p0 * r + p1) * r + p2) * r + p3) * r + p4) * r + p5;
    let y = p * r2 + r + 1.0;
    // n ∈ [−150, 129] sits in the low mantissa bits of t (integer ops only, vectorisable);
    // split so both factors 2^n1, 2^n2 are normal floats. (For NaN, y is NaN anyway.)
    let ni = (t.to_bits() as i32).wrapping_sub(ROUND_MAGIC.to_bits() as i32);
    let n1 = ni >> 1;
    let n2 = ni - n1;
    let s1 = f32::from_bits(((n1 + 127) as u32) << 23);
    let s2 = f32::from_bits(((n2 + 127) as u32) << 23);
    y * s1 * s2
}

/// Arguments that probe [`exp_full`] everywhere (for the tests of its vector
/// transcriptions): 300 000 values over `[−110, 95]` and `[−87, 87]`, the domain edges, NaN and
/// `±inf`; a multiple of 16 long.
#[cfg(test)]
pub(crate) fn full_range_probe() -> std::vec::Vec<f32> {
    use tokenmath_testutil::unit_hash as u;
    let mut xs: std::vec::Vec<f32> = (0..200_000).map(|i| -110.0 + 205.0 * u(i, 9)).collect();
    xs.extend([f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0, 87.0, -87.0, 88.72, 89.5, -103.9, -104.5]);
    xs.extend((0..100_000).map(|i| 174.0 * u(i, 10) - 87.0));
    while !xs.len().is_multiple_of(16) {
        xs.push(1.0);
    }
    xs
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokenmath_testutil::ulps;

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

    #[test]
    fn exp_full_within_two_ulp_on_normal_range() {
        let mut worst = 0;
        let mut x = -87.0f32;
        while x < 88.7 {
            let want = (x as f64).exp() as f32;
            worst = worst.max(ulps(exp_full(x), want));
            x += 0.000_731;
        }
        assert!(worst <= 2, "worst error {worst} ulp");
        for x in [0.0f32, -0.0, 1.0, -1.0, 20.0, -20.0, 10.0, 1e-8, -1e-8, 0.5, 1e-30] {
            assert!(ulps(exp_full(x), (x as f64).exp() as f32) <= 1, "exp({x})");
        }
        assert_eq!(exp_full(0.0), 1.0);
    }

    #[test]
    fn exp_full_domain_edges() {
        assert!(exp_full(f32::NAN).is_nan());
        assert_eq!(exp_full(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_full(88.8), f32::INFINITY);
        assert_eq!(exp_full(1e30), f32::INFINITY);
        assert_eq!(exp_full(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_full(-1e30), 0.0);
        assert_eq!(exp_full(-104.0), 0.0);
        let sub = exp_full(-95.0);
        assert!(sub > 0.0 && (sub as f64 / (-95.0f64).exp() - 1.0).abs() < 1e-3);
        assert!(exp_full(88.7) < f32::INFINITY);
    }
}
