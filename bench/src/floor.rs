//! Machine floors for the logits forward: how fast it can reasonably go on one core.
//!
//! The forward must compute at least one `exp` per logit and read every logit once from
//! memory, so on one core its time is at least
//!
//! ```text
//! floor = max(N·V / exp throughput, bytes / read bandwidth)
//! ```
//!
//! * [`exp_sum`] measures the first term: a tight loop that computes `exp(x − row max)` of
//!   every element and sums the results (8 lanes, 4 independent accumulators) and does
//!   nothing else. Its `exp` is the cheapest one tokenmath knows that is accurate to an ulp:
//!   the very operation sequence of the kernels' own `exp` (one-constant reduction, degree-6
//!   minimax polynomial, exponent-field scaling), without even their clamp of `−inf`
//!   arguments. A forward that evaluates one such `exp` per element, with the same
//!   instruction set, cannot beat it.
//! * [`sum`] measures the second: a streaming sum with 8 independent accumulators, limited
//!   only by how fast one core can pull bytes from DRAM.
//!
//! The `exp` uses AVX-512 (16 lanes) or AVX2 + FMA (8 lanes) when the CPU has them — the
//! instruction sets of tokenmath's fastest backends — the sum AVX, and plain scalar loops
//! otherwise.

/// The smallest argument of the floor's `exp` (the scalar fallback clamps there).
const LOWEST: f32 = -87.0;

/// `Σ_r Σ_c exp(x[r, c] − row_max[r])` over a row-major `[row_max.len(), cols]` array.
///
/// `row_max[r]` must be at least every element of row `r`, and no element more than 87 below
/// it (true of the benchmark's data): the arguments are then in `[−87, 0]`, the domain of the
/// floor's clamp-free `exp`. The sum itself is beside the point (it is returned so the work
/// cannot be optimised away); the time is.
///
/// Panics if `x.len() != row_max.len() · cols`.
pub fn exp_sum(x: &[f32], cols: usize, row_max: &[f32]) -> f32 {
    assert_eq!(Some(x.len()), row_max.len().checked_mul(cols), "x must be [row_max.len(), cols]");
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        // Safe: the CPU feature was just checked, and the shape was checked above.
        return unsafe { avx512::exp_sum(x, cols, row_max) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // Safe: the CPU features were just checked, and the shape was checked above.
        return unsafe { avx2::exp_sum(x, cols, row_max) };
    }
    x.chunks_exact(cols.max(1)).zip(row_max).map(|(row, &m)| scalar_exp_sum(row, m)).sum()
}

/// `Σ exp(v − m)` over a row, one element at a time (the fallback, and the AVX2 tail).
fn scalar_exp_sum(row: &[f32], m: f32) -> f32 {
    row.iter().map(|&v| (v - m).max(LOWEST).exp()).sum()
}

/// The sum of every element, read once, front to back (a streaming-read kernel).
pub fn sum(x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx") {
        // Safe: the CPU feature was just checked.
        return unsafe { avx2::sum(x) };
    }
    // Eight independent partial sums, so the scalar loop is not one long dependency chain.
    let mut acc = [0.0f32; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use core::arch::x86_64::*;

    // The kernels' `exp` (tokenmath-core `logits/exp.rs`): `n = round(d·log2 e)` by the
    // `1.5·2^23` trick, `r = d − n·ln2` in one fused multiply-add, a degree-6 minimax
    // polynomial `1 + r + r²·Q(r)` in Horner form, then `2^n` built in the exponent field.
    pub(super) const LOG2E: f32 = core::f32::consts::LOG2_E;
    pub(super) const LN2: f32 = core::f32::consts::LN_2;
    pub(super) const ROUND_MAGIC: f32 = 12_582_912.0;
    /// `Q4 … Q0`, highest degree first.
    pub(super) const Q: [f32; 5] = [1.381_461_3e-3, 8.368_71e-3, 4.166_839e-2, 1.666_652_1e-1, 4.999_999_4e-1];

    /// `exp(d)` on 8 lanes for `d ∈ [−87, 0]` (the benchmark's data stays in that range; the
    /// floor does not pay for a clamp).
    #[inline(always)]
    unsafe fn exp8(d: __m256) -> __m256 {
        let magic = _mm256_set1_ps(ROUND_MAGIC);
        let t = _mm256_fmadd_ps(d, _mm256_set1_ps(LOG2E), magic);
        let n = _mm256_sub_ps(t, magic);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2), d);
        let mut y = _mm256_fmadd_ps(_mm256_set1_ps(Q[0]), r, _mm256_set1_ps(Q[1]));
        for &c in &Q[2..] {
            y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(c));
        }
        let one = _mm256_set1_ps(1.0);
        y = _mm256_fmadd_ps(y, r, one);
        y = _mm256_fmadd_ps(y, r, one);
        // The low bits of `t` hold `n` (biased by the magic constant's mantissa): adding
        // `127 − bits(magic)` and shifting into the exponent field gives `2^n`.
        let bias = 127i32.wrapping_sub(ROUND_MAGIC.to_bits() as i32);
        let bits = _mm256_add_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(bias));
        _mm256_mul_ps(y, _mm256_castsi256_ps(_mm256_slli_epi32::<23>(bits)))
    }

    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        _mm_cvtss_f32(_mm_add_ss(h, _mm_shuffle_ps::<0b01>(h, h)))
    }

    /// AVX2 [`super::exp_sum`]: 32 elements per step in four independent accumulators
    /// (named locals, not an array: that keeps them in registers).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn exp_sum(x: &[f32], cols: usize, row_max: &[f32]) -> f32 {
        let mut total = 0.0;
        for (r, &m) in row_max.iter().enumerate() {
            let row = x.as_ptr().add(r * cols);
            let vm = _mm256_set1_ps(m);
            let (mut a0, mut a1, mut a2, mut a3) =
                (_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps());
            let mut c = 0;
            while c + 32 <= cols {
                a0 = _mm256_add_ps(a0, exp8(_mm256_sub_ps(_mm256_loadu_ps(row.add(c)), vm)));
                a1 = _mm256_add_ps(a1, exp8(_mm256_sub_ps(_mm256_loadu_ps(row.add(c + 8)), vm)));
                a2 = _mm256_add_ps(a2, exp8(_mm256_sub_ps(_mm256_loadu_ps(row.add(c + 16)), vm)));
                a3 = _mm256_add_ps(a3, exp8(_mm256_sub_ps(_mm256_loadu_ps(row.add(c + 24)), vm)));
                c += 32;
            }
            let tail = super::scalar_exp_sum(core::slice::from_raw_parts(row.add(c), cols - c), m);
            total += hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3))) + tail;
        }
        total
    }

    /// AVX [`super::sum`]: 64 elements per step in eight independent accumulators.
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn sum(x: &[f32]) -> f32 {
        let p = x.as_ptr();
        let mut acc = [_mm256_setzero_ps(); 8];
        let mut i = 0;
        while i + 64 <= x.len() {
            for (k, a) in acc.iter_mut().enumerate() {
                *a = _mm256_add_ps(*a, _mm256_loadu_ps(p.add(i + 8 * k)));
            }
            i += 64;
        }
        let mut v = acc[0];
        for a in &acc[1..] {
            v = _mm256_add_ps(v, *a);
        }
        hsum(v) + x[i..].iter().sum::<f32>()
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use core::arch::x86_64::*;

    use super::avx2::{LN2, LOG2E, Q, ROUND_MAGIC};

    /// `avx2::exp8` on 16 lanes.
    #[inline(always)]
    unsafe fn exp16(d: __m512) -> __m512 {
        let magic = _mm512_set1_ps(ROUND_MAGIC);
        let t = _mm512_fmadd_ps(d, _mm512_set1_ps(LOG2E), magic);
        let n = _mm512_sub_ps(t, magic);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2), d);
        let mut y = _mm512_fmadd_ps(_mm512_set1_ps(Q[0]), r, _mm512_set1_ps(Q[1]));
        for &c in &Q[2..] {
            y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(c));
        }
        let one = _mm512_set1_ps(1.0);
        y = _mm512_fmadd_ps(y, r, one);
        y = _mm512_fmadd_ps(y, r, one);
        let bias = 127i32.wrapping_sub(ROUND_MAGIC.to_bits() as i32);
        let bits = _mm512_add_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(bias));
        _mm512_mul_ps(y, _mm512_castsi512_ps(_mm512_slli_epi32::<23>(bits)))
    }

    /// AVX-512 [`super::exp_sum`]: 64 elements per step in four independent accumulators.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn exp_sum(x: &[f32], cols: usize, row_max: &[f32]) -> f32 {
        let mut total = 0.0;
        for (r, &m) in row_max.iter().enumerate() {
            let row = x.as_ptr().add(r * cols);
            let vm = _mm512_set1_ps(m);
            let (mut a0, mut a1, mut a2, mut a3) =
                (_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps());
            let mut c = 0;
            while c + 64 <= cols {
                a0 = _mm512_add_ps(a0, exp16(_mm512_sub_ps(_mm512_loadu_ps(row.add(c)), vm)));
                a1 = _mm512_add_ps(a1, exp16(_mm512_sub_ps(_mm512_loadu_ps(row.add(c + 16)), vm)));
                a2 = _mm512_add_ps(a2, exp16(_mm512_sub_ps(_mm512_loadu_ps(row.add(c + 32)), vm)));
                a3 = _mm512_add_ps(a3, exp16(_mm512_sub_ps(_mm512_loadu_ps(row.add(c + 48)), vm)));
                c += 64;
            }
            let tail = super::scalar_exp_sum(core::slice::from_raw_parts(row.add(c), cols - c), m);
            total += _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3))) + tail;
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_sum_matches_a_scalar_sum() {
        // Two rows, a length that is not a multiple of 32 (exercises the tail).
        let cols = 1000;
        let x: Vec<f32> = (0..2 * cols).map(|i| -((i % cols) as f32) * 0.05).collect();
        let max = [0.0, 0.0];
        let want: f64 = x.iter().map(|&v| (v as f64).exp()).sum();
        let got = exp_sum(&x, cols, &max) as f64;
        assert!((got - want).abs() <= 1e-5 * want, "got {got}, want {want}");
    }

    #[test]
    fn sum_matches_a_scalar_sum() {
        let x: Vec<f32> = (0..1001).map(|i| (i % 7) as f32).collect();
        let want: f32 = x.iter().sum();
        assert_eq!(sum(&x), want);
    }
}
