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

/// `out[j] = combine(a, b, xp[j], xn[j])` for every `j`.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C; the three slices have the same length.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn fill<T: LogitElem>(a: f32, b: f32, xp: &[T], xn: &[T], out: &mut [f32]) {
    let n = out.len();
    let (va, vb) = (_mm256_set1_ps(a), _mm256_set1_ps(b));
    let ninf = _mm256_set1_ps(f32::NEG_INFINITY);
    let mut j = 0;
    while j + 8 <= n {
        let p = load8(xp.as_ptr().add(j));
        let q = load8(xn.as_ptr().add(j));
        let z = _mm256_fmadd_ps(va, p, _mm256_mul_ps(vb, q));
        let masked = _mm256_or_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(p, ninf), _mm256_cmp_ps::<_CMP_EQ_OQ>(q, ninf));
        _mm256_storeu_ps(out.as_mut_ptr().add(j), _mm256_blendv_ps(z, ninf, masked));
        j += 8;
    }
    while j < n {
        out[j] = super::cdpo::combine(a, b, xp[j].to_f32(), xn[j].to_f32());
        j += 1;
    }
}

// `bf16`/`f16` are named so that a change of `half`'s layout fails to compile here too.
const _: () = assert!(core::mem::size_of::<bf16>() == 2 && core::mem::size_of::<f16>() == 2);
