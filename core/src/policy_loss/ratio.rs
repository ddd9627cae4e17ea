//! The log-ratio clamp and the one `exp` every policy-loss kernel uses.
//!
//! `exp` is written out (Cephes `expf`: Cody–Waite reduction with a two-part `ln 2`, degree-6
//! polynomial, scaling by `2^n` in two exact steps) instead of calling `libm::expf`, so that
//! the per-token loops stay plain arithmetic and selects the compiler can vectorise.
//! Accuracy: within 2 ulp of the correctly rounded `exp` on the normal range (tested against
//! `f64`); results below `2^-126` may round twice (subnormal results only). `exp(NaN) = NaN`,
//! `exp(x) = +inf` for `x ≥ 88.73`, `exp(x) = 0` for `x ≤ −104`.

// The constants are quoted as Cephes publishes them.
#![allow(clippy::excessive_precision)]

const LOG2E: f32 = core::f32::consts::LOG2_E;
/// `1.5·2^23`: adding it rounds a float of magnitude `< 2^22` to an integer (ties to even).
const ROUND_MAGIC: f32 = 12_582_912.0;
/// `ln 2 = C1 + C2`, `C1` with 9 significant bits so `n·C1` is exact for `|n| < 2^15`.
const C1: f32 = 0.693_359_375;
const C2: f32 = -2.121_944_400_546_905_827_68e-4;
const P0: f32 = 1.987_569_15e-4;
const P1: f32 = 1.398_199_950_7e-3;
const P2: f32 = 8.333_451_907_3e-3;
const P3: f32 = 4.166_579_589_4e-2;
const P4: f32 = 1.666_666_545_9e-1;
const P5: f32 = 5.000_000_120_1e-1;

/// `exp(x)` in `f32` (see the module docs for accuracy and the domain rules).
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    // Comparisons are false for NaN, so NaN passes through to the result.
    let xc = x.clamp(-104.0, 89.0);
    let t = xc * LOG2E + ROUND_MAGIC;
    let n = t - ROUND_MAGIC;
    let r = (xc - n * C1) - n * C2;
    let r2 = r * r;
    let p = ((((P0 * r + P1) * r + P2) * r + P3) * r + P4) * r + P5;
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

/// `clamp(d, lo, hi)` as `torch.clamp` computes its value: NaN passes through.
#[inline(always)]
pub(crate) fn clamp(d: f32, lo: f32, hi: f32) -> f32 {
    if d < lo {
        lo
    } else if d > hi {
        hi
    } else {
        d
    }
}

/// Symmetric log-ratio clamp bounds: `(−c, c)` for `Some(c)`, `(−inf, inf)` for `None`.
#[inline]
pub(crate) fn clamp_bounds(c: Option<f32>) -> (f32, f32) {
    match c {
        Some(c) => (-c, c),
        None => (f32::NEG_INFINITY, f32::INFINITY),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> u32 {
        if a == b {
            return 0;
        }
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn exp_within_two_ulp_on_normal_range() {
        let mut worst = 0;
        let mut x = -87.0f32;
        while x < 88.7 {
            let want = (x as f64).exp() as f32;
            let got = exp_f32(x);
            worst = worst.max(ulps(got, want));
            x += 0.000_731;
        }
        assert!(worst <= 2, "worst error {worst} ulp");
        for x in [0.0f32, -0.0, 1.0, -1.0, 20.0, -20.0, 10.0, 1e-8, -1e-8, 0.5, 1e-30] {
            assert!(ulps(exp_f32(x), (x as f64).exp() as f32) <= 1, "exp({x})");
        }
        assert_eq!(exp_f32(0.0), 1.0);
    }

    #[test]
    fn exp_domain_edges() {
        assert!(exp_f32(f32::NAN).is_nan());
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_f32(88.8), f32::INFINITY);
        assert_eq!(exp_f32(1e30), f32::INFINITY);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(-1e30), 0.0);
        assert_eq!(exp_f32(-104.0), 0.0);
        let sub = exp_f32(-95.0);
        assert!(sub > 0.0 && (sub as f64 / (-95.0f64).exp() - 1.0).abs() < 1e-3);
        assert!(exp_f32(88.7) < f32::INFINITY);
    }

    #[test]
    fn clamp_passes_nan() {
        assert!(clamp(f32::NAN, -1.0, 1.0).is_nan());
        assert_eq!(clamp(5.0, -1.0, 1.0), 1.0);
        assert_eq!(clamp(-5.0, -1.0, 1.0), -1.0);
        assert_eq!(clamp(f32::NEG_INFINITY, f32::NEG_INFINITY, f32::INFINITY), f32::NEG_INFINITY);
    }
}
