//! The one `exp` every backend shares.
//!
//! Bitwise agreement between the portable and SIMD paths needs the *same* sequence of
//! IEEE operations, so `exp` is written out here instead of calling `libm::expf` (whose
//! operation sequence no SIMD path reproduces). The SIMD version in `x86_avx2.rs` is a
//! line-by-line transcription of [`exp_nonpos`].
//!
//! Method (Cephes `expf`): `n = round(d·log2 e)` by the `1.5·2^23` trick, Cody–Waite
//! reduction `r = d − n·C1 − n·C2` with `|r| ≤ ln2/2`, a degree-7 polynomial
//! `1 + r + r²·P(r)`, then scaling by `2^n` built in the exponent field. Every multiply-add
//! is a fused multiply-add (`libm::fmaf` here, `vfmadd` in SIMD: both correctly rounded,
//! hence identical). Accuracy on `[EXP_CUTOFF, 0]`: within 2 ulp of the true value
//! (tested against `libm::expf` and an f64 `exp`).
//!
//! Domain: `d ∈ [EXP_CUTOFF, 0]`. Callers flush `d < EXP_CUTOFF` (including `−inf`) to a
//! contribution of exactly 0: `exp(−87) ≈ 1.6e-38`, so a flushed term is below `2^-125`
//! of the row's largest term and below any `f32` rounding of a sum that contains it.

// The constants are quoted as Cephes publishes them (the compiler rounds each to f32).
#![allow(clippy::excessive_precision)]

/// Below this, `exp(d)` is treated as exactly 0. Chosen so that `2^n` stays a normal
/// number for every `d` in the domain (`n ≥ −126`).
pub(crate) const EXP_CUTOFF: f32 = -87.0;

pub(crate) const LOG2E: f32 = core::f32::consts::LOG2_E;
/// `1.5·2^23`: adding it rounds a float of magnitude `< 2^22` to an integer (ties to even).
pub(crate) const ROUND_MAGIC: f32 = 12_582_912.0;
/// `127 − bits(ROUND_MAGIC)`: turns the bits of `d·log2e + ROUND_MAGIC` into a biased
/// exponent (wrapping arithmetic).
pub(crate) const EXP_BIAS_FIX: u32 = 127u32.wrapping_sub(0x4B40_0000);
/// Cody–Waite split of ln 2 (Cephes): `C1` has few enough bits that `n·C1` is exact.
pub(crate) const LN2_C1: f32 = 0.693_359_375;
pub(crate) const LN2_C2: f32 = -2.121_944_4e-4;
/// Cephes `expf` polynomial, highest degree first.
pub(crate) const P5: f32 = 1.987_569_15e-4;
pub(crate) const P4: f32 = 1.398_199_950_7e-3;
pub(crate) const P3: f32 = 8.333_451_907_3e-3;
pub(crate) const P2: f32 = 4.166_579_589_4e-2;
pub(crate) const P1: f32 = 1.666_666_545_9e-1;
pub(crate) const P0: f32 = 5.000_000_120_1e-1;

/// Fused multiply-add `a·b + c`, rounded once.
#[inline(always)]
pub(crate) fn fma(a: f32, b: f32, c: f32) -> f32 {
    libm::fmaf(a, b, c)
}

/// `exp(d)` for `d ∈ [EXP_CUTOFF, 0]` (see the module docs for the method).
#[inline(always)]
pub(crate) fn exp_nonpos(d: f32) -> f32 {
    let t = fma(d, LOG2E, ROUND_MAGIC);
    let n = t - ROUND_MAGIC;
    let r = fma(n, -LN2_C1, d);
    let r = fma(n, -LN2_C2, r);
    let mut y = P5;
    y = fma(y, r, P4);
    y = fma(y, r, P3);
    y = fma(y, r, P2);
    y = fma(y, r, P1);
    y = fma(y, r, P0);
    let r2 = r * r;
    y = fma(y, r2, r);
    y += 1.0;
    let scale = f32::from_bits(t.to_bits().wrapping_add(EXP_BIAS_FIX) << 23);
    y * scale
}

/// `exp(d)` for `d ≤ 0` with the flush rule: 0 for `d < EXP_CUTOFF`, `−inf` and NaN.
#[inline(always)]
pub(crate) fn exp_flushed(d: f32) -> f32 {
    if d >= EXP_CUTOFF {
        exp_nonpos(d)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn exp_is_within_two_ulp_on_its_domain() {
        let mut worst = 0;
        let steps = 2_000_000u32;
        for i in 0..=steps {
            let d = EXP_CUTOFF * (i as f32 / steps as f32);
            let got = exp_nonpos(d);
            let want = libm::exp(d as f64) as f32;
            worst = worst.max(ulps(got, want));
        }
        assert!(worst <= 2, "worst error {worst} ulp");
    }

    #[test]
    fn exp_endpoints_and_flush() {
        assert_eq!(exp_nonpos(0.0), 1.0);
        assert_eq!(exp_nonpos(-0.0), 1.0);
        assert!(exp_nonpos(EXP_CUTOFF) > 0.0 && exp_nonpos(EXP_CUTOFF).is_normal());
        assert_eq!(exp_flushed(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_flushed(f32::NAN), 0.0);
        assert_eq!(exp_flushed(-88.0), 0.0);
    }
}
