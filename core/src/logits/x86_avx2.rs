//! The AVX2 + FMA + F16C backend: the canonical order of `portable.rs` with the 32 lanes
//! held in four 256-bit registers (register `k` holds lanes `8k .. 8k+8`).
//!
//! Every function here is `unsafe` with `#[target_feature]`; callers must have checked
//! `Backend::Avx2Fma.is_supported()` (the dispatch in `logits/mod.rs` does).

use core::arch::x86_64::*;

use half::{bf16, f16};

use super::exp::{EXP_BIAS_FIX, EXP_CUTOFF, LN2_C1, LN2_C2, LOG2E, P0, P1, P2, P3, P4, P5, ROUND_MAGIC};
use super::portable::{GradRow, LANES};
use super::row_stats::RowStats;

/// Element types the AVX2 path loads 8 at a time (exact conversion to `f32`).
pub(crate) trait Load8: Copy {
    unsafe fn load8(p: *const Self) -> __m256;
    fn to_f32(self) -> f32;
}

impl Load8 for f32 {
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> __m256 {
        _mm256_loadu_ps(p)
    }
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
}

impl Load8 for bf16 {
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> __m256 {
        let h = _mm_loadu_si128(p as *const __m128i);
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
    }
    #[inline(always)]
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
}

impl Load8 for f16 {
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    }
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
}

/// Element types the AVX2 path stores 8 at a time, rounding exactly like `half`.
pub(crate) trait Store8: Copy {
    unsafe fn store8(p: *mut Self, v: __m256);
    fn from_f32(v: f32) -> Self;
}

impl Store8 for f32 {
    #[inline(always)]
    unsafe fn store8(p: *mut Self, v: __m256) {
        _mm256_storeu_ps(p, v)
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        v
    }
}

impl Store8 for bf16 {
    /// Round to nearest even as `half::bf16::from_f32`: `(x + 0x7FFF + lsb) >> 16`, and
    /// NaN → `(x >> 16) | 0x40` (quiet, sign and top payload kept).
    #[inline(always)]
    unsafe fn store8(p: *mut Self, v: __m256) {
        let x = _mm256_castps_si256(v);
        let abs = _mm256_and_si256(x, _mm256_set1_epi32(0x7FFF_FFFF));
        let is_nan = _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(0x7F80_0000));
        let hi = _mm256_srli_epi32::<16>(x);
        let lsb = _mm256_and_si256(hi, _mm256_set1_epi32(1));
        let rounded = _mm256_srli_epi32::<16>(_mm256_add_epi32(_mm256_add_epi32(x, _mm256_set1_epi32(0x7FFF)), lsb));
        let quiet = _mm256_or_si256(hi, _mm256_set1_epi32(0x40));
        let r = _mm256_blendv_epi8(rounded, quiet, is_nan);
        // Pack 8 × u32 (each < 2^16) into 8 × u16: packus works per 128-bit half, so the
        // results land in 64-bit words 0 and 2; gather them into the low half.
        let packed = _mm256_permute4x64_epi64::<0b1000>(_mm256_packus_epi32(r, r));
        _mm_storeu_si128(p as *mut __m128i, _mm256_castsi256_si128(packed));
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        bf16::from_f32(v)
    }
}

impl Store8 for f16 {
    #[inline(always)]
    unsafe fn store8(p: *mut Self, v: __m256) {
        let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
        _mm_storeu_si128(p as *mut __m128i, h)
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        f16::from_f32(v)
    }
}

/// `exp(d)` on 8 lanes: a line-by-line transcription of `exp::exp_nonpos`.
#[inline(always)]
unsafe fn exp8(d: __m256) -> __m256 {
    let magic = _mm256_set1_ps(ROUND_MAGIC);
    let t = _mm256_fmadd_ps(d, _mm256_set1_ps(LOG2E), magic);
    let n = _mm256_sub_ps(t, magic);
    let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_C1), d);
    let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_C2), r);
    let mut y = _mm256_set1_ps(P5);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(P4));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(P3));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(P2));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(P1));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(P0));
    let r2 = _mm256_mul_ps(r, r);
    y = _mm256_fmadd_ps(y, r2, r);
    y = _mm256_add_ps(y, _mm256_set1_ps(1.0));
    let bits = _mm256_add_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(EXP_BIAS_FIX as i32));
    let scale = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(bits));
    _mm256_mul_ps(y, scale)
}

/// A 32-column chunk as four registers of tempered logits; a short tail is padded with
/// `−inf`, which contributes exactly nothing (see `portable.rs`).
#[inline(always)]
unsafe fn load_chunk<T: Load8>(block: &[T], at: usize, inv_temp: __m256) -> [__m256; 4] {
    let rest = block.len() - at;
    if rest >= LANES {
        let p = block.as_ptr().add(at);
        [
            _mm256_mul_ps(T::load8(p), inv_temp),
            _mm256_mul_ps(T::load8(p.add(8)), inv_temp),
            _mm256_mul_ps(T::load8(p.add(16)), inv_temp),
            _mm256_mul_ps(T::load8(p.add(24)), inv_temp),
        ]
    } else {
        let mut buf = [f32::NEG_INFINITY; LANES];
        for (b, x) in buf.iter_mut().zip(&block[at..]) {
            *b = x.to_f32();
        }
        let p = buf.as_ptr();
        [
            _mm256_mul_ps(_mm256_loadu_ps(p), inv_temp),
            _mm256_mul_ps(_mm256_loadu_ps(p.add(8)), inv_temp),
            _mm256_mul_ps(_mm256_loadu_ps(p.add(16)), inv_temp),
            _mm256_mul_ps(_mm256_loadu_ps(p.add(24)), inv_temp),
        ]
    }
}

#[inline(always)]
unsafe fn hmax(v: __m256) -> f32 {
    let h = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    let h = _mm_max_ss(h, _mm_shuffle_ps::<0b01>(h, h));
    _mm_cvtss_f32(h)
}

/// Folds 32 lanes in halves (w = 16, 8, 4, 2, 1), as `portable.rs` does.
#[inline(always)]
unsafe fn fold_lanes(a: [__m256; 4]) -> f32 {
    let v = _mm256_add_ps(_mm256_add_ps(a[0], a[2]), _mm256_add_ps(a[1], a[3]));
    let h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    let h = _mm_add_ss(h, _mm_shuffle_ps::<0b01>(h, h));
    _mm_cvtss_f32(h)
}

/// AVX2 version of `portable::block_stats` (identical bits).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn block_stats<T: Load8>(block: &[T], inv_temp: f32) -> RowStats {
    let vt = _mm256_set1_ps(inv_temp);
    let inf = _mm256_set1_ps(f32::INFINITY);
    let mut mx = [_mm256_set1_ps(f32::NEG_INFINITY); 4];
    let mut bad = _mm256_setzero_ps();
    let mut at = 0;
    while at < block.len() {
        let z = load_chunk(block, at, vt);
        for k in 0..4 {
            bad = _mm256_or_ps(bad, _mm256_cmp_ps::<_CMP_NLT_UQ>(z[k], inf));
            // max_ps(a, b) = a > b ? a : b, exactly `if z > m { z } else { m }`.
            mx[k] = _mm256_max_ps(z[k], mx[k]);
        }
        at += LANES;
    }
    let m = hmax(_mm256_max_ps(_mm256_max_ps(mx[0], mx[1]), _mm256_max_ps(mx[2], mx[3]))) + 0.0;
    let nonfinite = _mm256_movemask_ps(bad) != 0;
    if nonfinite || m == f32::NEG_INFINITY {
        return RowStats::from_block(m, 0.0, 0.0, nonfinite);
    }
    let vm = _mm256_set1_ps(m);
    let cutoff = _mm256_set1_ps(EXP_CUTOFF);
    let mut s = [_mm256_setzero_ps(); 4];
    let mut u = [_mm256_setzero_ps(); 4];
    let mut at = 0;
    while at < block.len() {
        let z = load_chunk(block, at, vt);
        for k in 0..4 {
            let d = _mm256_sub_ps(z[k], vm);
            let keep = _mm256_cmp_ps::<_CMP_GE_OQ>(d, cutoff);
            // max_ps returns its second operand for NaN: NaN and −inf become the cutoff.
            let d = _mm256_max_ps(d, cutoff);
            let e = _mm256_and_ps(exp8(d), keep);
            s[k] = _mm256_add_ps(s[k], e);
            u[k] = _mm256_fmadd_ps(e, d, u[k]);
        }
        at += LANES;
    }
    RowStats::from_block(m, fold_lanes(s), fold_lanes(u), false)
}

/// AVX2 version of `portable::grad_row` / `grad_row_inplace` (identical bits). `src` and
/// `dst` may be the same address (in place, `T == O`): each group of 8 is loaded before it
/// is stored.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn grad_row<T: Load8, O: Store8>(src: *const T, dst: *mut O, len: usize, g: &GradRow) {
    let vt = _mm256_set1_ps(g.inv_temp);
    let lse = _mm256_set1_ps(g.lse);
    let ez = _mm256_set1_ps(g.ez);
    let c = _mm256_set1_ps(g.c);
    let neg_gh = _mm256_set1_ps(g.neg_gh);
    let cutoff = _mm256_set1_ps(EXP_CUTOFF);
    let mut i = 0;
    while i + 8 <= len {
        let z = _mm256_mul_ps(T::load8(src.add(i)), vt);
        let d = _mm256_sub_ps(z, lse);
        let keep = _mm256_cmp_ps::<_CMP_GE_OQ>(d, cutoff);
        let q = _mm256_fmadd_ps(neg_gh, _mm256_sub_ps(z, ez), c);
        let dz = _mm256_and_ps(_mm256_mul_ps(exp8(d), q), keep);
        O::store8(dst.add(i), _mm256_mul_ps(dz, vt));
        i += 8;
    }
    while i < len {
        let x = (*src.add(i)).to_f32();
        *dst.add(i) = O::from_f32(g.dx(x));
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 8-wide stores round exactly like `half` on every class of input: normals,
    /// subnormals, ties, overflow, ±inf and NaN payloads.
    #[test]
    fn stores_round_like_half() {
        if !crate::Backend::Avx2Fma.is_supported() {
            return;
        }
        let mut bits: std::vec::Vec<u32> =
            (0..(1u32 << 20)).map(|i| i.wrapping_mul(4099).wrapping_add(i << 12)).collect();
        bits.extend([
            0,
            0x8000_0000,
            0x7F80_0000,
            0xFF80_0000,
            0x7FC0_0001,
            0xFFBF_FFFF,
            0x7F7F_FFFF,
            0x3F80_8000,
            0x3F81_8000,
        ]);
        bits.extend((0..4096u32).map(|i| 0x3F80_0000 | (i << 4) | 0x8000));
        for chunk in bits.chunks_exact(8) {
            let v: [f32; 8] = core::array::from_fn(|i| f32::from_bits(chunk[i]));
            let mut b = [bf16::ZERO; 8];
            let mut h = [f16::ZERO; 8];
            // Safe because the CPU support was checked above.
            unsafe {
                let x = _mm256_loadu_ps(v.as_ptr());
                <bf16 as Store8>::store8(b.as_mut_ptr(), x);
                <f16 as Store8>::store8(h.as_mut_ptr(), x);
            }
            for i in 0..8 {
                assert_eq!(b[i].to_bits(), bf16::from_f32(v[i]).to_bits(), "bf16 of {:#010x}", chunk[i]);
                assert_eq!(h[i].to_bits(), f16::from_f32(v[i]).to_bits(), "f16 of {:#010x}", chunk[i]);
            }
        }
    }

    /// `exp8` is bit-identical to the scalar `exp_nonpos` on the whole domain.
    #[test]
    fn exp8_matches_scalar() {
        if !crate::Backend::Avx2Fma.is_supported() {
            return;
        }
        let n = 1 << 20;
        for i in (0..n).step_by(8) {
            let d: [f32; 8] = core::array::from_fn(|k| EXP_CUTOFF * ((i + k) as f32 / n as f32));
            let mut out = [0.0f32; 8];
            // Safe because the CPU support was checked above.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), exp8_checked(_mm256_loadu_ps(d.as_ptr()))) };
            for k in 0..8 {
                assert_eq!(out[k].to_bits(), super::super::exp::exp_nonpos(d[k]).to_bits(), "exp({})", d[k]);
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn exp8_checked(d: __m256) -> __m256 {
        exp8(d)
    }
}
