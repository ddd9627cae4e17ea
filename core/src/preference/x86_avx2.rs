//! AVX2 + FMA + F16C forming of cDPO's contrastive rows: the portable
//! [`super::cdpo::combine`] eight columns at a time (same fused multiply-add, same `−inf`
//! rule, so the same bits).

use core::arch::x86_64::*;

use half::{bf16, f16};

use crate::elem::{DType, LogitElem};

#[inline(always)]
unsafe fn load8<T: LogitElem>(p: *const T) -> __m256 {
    match T::DTYPE {
        DType::F32 => _mm256_loadu_ps(p as *const f32),
        DType::BF16 => {
            let h = _mm_loadu_si128(p as *const __m128i);
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
        }
        DType::F16 => _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)),
    }
}

/// `out[j] = combine(a, b, xp[j], xn[j])` for every `j`, returning the maximum of `out`
/// (NaN never winning) and a lower bound of its non-NaN values for
/// `block_stats_from_extrema` (the minimum, or `−inf` when `out.len()` is not a multiple of 8),
/// found on the way.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C; the three slices have the same length.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn fill<T: LogitElem>(a: f32, b: f32, xp: &[T], xn: &[T], out: &mut [f32]) -> (f32, f32) {
    let n = out.len();
    let (va, vb) = (_mm256_set1_ps(a), _mm256_set1_ps(b));
    let ninf = _mm256_set1_ps(f32::NEG_INFINITY);
    let (mut mx, mut mn) = (ninf, _mm256_set1_ps(f32::INFINITY));
    // The block kernel's second pass that follows is compute-bound: pull the next block of
    // both rows (the next row when dense) towards L2 meanwhile, one line per 64 bytes. A
    // prefetch never faults; `wrapping_add` keeps the address arithmetic defined.
    let size = core::mem::size_of::<T>();
    let ahead = n * size;
    let (pp, pn) = (xp.as_ptr() as *const u8, xn.as_ptr() as *const u8);
    let mut j = 0;
    while j + 8 <= n {
        if (j * size).is_multiple_of(64) {
            _mm_prefetch::<_MM_HINT_T1>(pp.wrapping_add(ahead + j * size) as *const i8);
            _mm_prefetch::<_MM_HINT_T1>(pn.wrapping_add(ahead + j * size) as *const i8);
        }
        let p = load8(xp.as_ptr().add(j));
        let q = load8(xn.as_ptr().add(j));
        let z = _mm256_fmadd_ps(va, p, _mm256_mul_ps(vb, q));
        let masked = _mm256_or_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(p, ninf), _mm256_cmp_ps::<_CMP_EQ_OQ>(q, ninf));
        let z = _mm256_blendv_ps(z, ninf, masked);
        _mm256_storeu_ps(out.as_mut_ptr().add(j), z);
        // max_ps(z, m) = z > m ? z : m: NaN never wins (min_ps likewise).
        mx = _mm256_max_ps(z, mx);
        mn = _mm256_min_ps(z, mn);
        j += 8;
    }
    let mut lanes = [0.0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), mx);
    let mut m = lanes.iter().fold(f32::NEG_INFINITY, |m, &z| if z > m { z } else { m });
    _mm256_storeu_ps(lanes.as_mut_ptr(), mn);
    let mut lo = lanes.iter().fold(f32::INFINITY, |m, &z| if z < m { z } else { m });
    while j < n {
        let z = super::cdpo::combine(a, b, xp[j].to_f32(), xn[j].to_f32());
        out[j] = z;
        if z > m {
            m = z;
        }
        if z < lo {
            lo = z;
        }
        j += 1;
    }
    // The block kernel pads a partial last chunk of 8 with `−inf`, which only its flushing
    // path handles: a block with a tail reports `−inf` as its lower bound.
    if !n.is_multiple_of(8) {
        lo = f32::NEG_INFINITY;
    }
    (m, lo)
}

// `bf16`/`f16` are named so that a change of `half`'s layout fails to compile here too.
const _: () = assert!(core::mem::size_of::<bf16>() == 2 && core::mem::size_of::<f16>() == 2);
