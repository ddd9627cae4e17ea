//! The AVX2 + FMA + F16C backend: the canonical order of `portable.rs` with its 8 lanes in
//! one 256-bit register.
//!
//! Every function here is `unsafe` with `#[target_feature]`; callers must have checked
//! `Backend::Avx2Fma.is_supported()` (the dispatch in `logits/mod.rs` does).

use core::arch::x86_64::*;

use half::{bf16, f16};

use super::exp::{EXP_BIAS_FIX, EXP_CLAMP, LN2, LOG2E, Q0, Q1, Q2, Q3, Q4, ROUND_MAGIC};
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

/// [`Load8::load8`] for any logits dtype (a `match` on `T::DTYPE` that monomorphisation removes).
///
/// # Safety
/// AVX2 and F16C are available; `p` is valid for 8 elements.
#[inline(always)]
pub(crate) unsafe fn load8_elem<T: crate::elem::LogitElem>(p: *const T) -> __m256 {
    match T::DTYPE {
        crate::elem::DType::F32 => f32::load8(p as *const f32),
        crate::elem::DType::BF16 => bf16::load8(p as *const bf16),
        crate::elem::DType::F16 => f16::load8(p as *const f16),
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

/// `max(d, EXP_CLAMP)`, NaN passing through: a transcription of `exp::clamp_arg`.
#[inline(always)]
unsafe fn clamp8(d: __m256) -> __m256 {
    _mm256_max_ps(_mm256_set1_ps(EXP_CLAMP), d)
}

/// `exp(d)` on 8 clamped lanes: a line-by-line transcription of `exp::exp_clamped`.
/// With `FLUSH` off the caller guarantees `d ≥ −87` in every lane (or NaN), where the clamp
/// and the flush are identities, so skipping them gives the same bits.
#[inline(always)]
unsafe fn exp8<const FLUSH: bool>(d: __m256) -> __m256 {
    let magic = _mm256_set1_ps(ROUND_MAGIC);
    let t = _mm256_fmadd_ps(d, _mm256_set1_ps(LOG2E), magic);
    let n = _mm256_sub_ps(t, magic);
    let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2), d);
    let one = _mm256_set1_ps(1.0);
    let mut y = _mm256_fmadd_ps(_mm256_set1_ps(Q4), r, _mm256_set1_ps(Q3));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(Q2));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(Q1));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(Q0));
    y = _mm256_fmadd_ps(y, r, one);
    y = _mm256_fmadd_ps(y, r, one);
    let mut biased = _mm256_add_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(EXP_BIAS_FIX as i32));
    if FLUSH {
        biased = _mm256_max_epi32(biased, _mm256_setzero_si256());
    }
    let scale = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(biased));
    _mm256_mul_ps(y, scale)
}

/// `z = x·inv_temp`, or `x` when `SCALE` is off (the caller knows `inv_temp == 1`).
#[inline(always)]
unsafe fn temper8<const SCALE: bool>(x: __m256, inv_temp: __m256) -> __m256 {
    if SCALE {
        _mm256_mul_ps(x, inv_temp)
    } else {
        x
    }
}

/// A full 8-column chunk as one register of tempered logits.
#[inline(always)]
unsafe fn load_chunk<T: Load8, const SCALE: bool>(p: *const T, inv_temp: __m256) -> __m256 {
    temper8::<SCALE>(T::load8(p), inv_temp)
}

/// The last, partial chunk (`1 ≤ tail.len() < 16`), padded with `−inf`, which contributes
/// exactly nothing (see `portable.rs`).
#[inline(always)]
unsafe fn load_tail<T: Load8, const SCALE: bool>(tail: &[T], inv_temp: __m256) -> __m256 {
    let mut buf = [f32::NEG_INFINITY; LANES];
    for (b, x) in buf.iter_mut().zip(tail) {
        *b = x.to_f32();
    }
    load_chunk::<f32, SCALE>(buf.as_ptr(), inv_temp)
}

/// Calls `body` on every chunk of `block`: full chunks straight from memory, then the
/// padded tail.
#[inline(always)]
unsafe fn for_chunks<T: Load8, const SCALE: bool>(block: &[T], inv_temp: __m256, mut body: impl FnMut(__m256)) {
    let full = block.len() / LANES * LANES;
    let p = block.as_ptr();
    let mut at = 0;
    while at < full {
        body(load_chunk::<T, SCALE>(p.add(at), inv_temp));
        at += LANES;
    }
    if full < block.len() {
        body(load_tail::<T, SCALE>(&block[full..], inv_temp));
    }
}

#[inline(always)]
unsafe fn hmin(v: __m256) -> f32 {
    let h = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let h = _mm_min_ps(h, _mm_movehl_ps(h, h));
    let h = _mm_min_ss(h, _mm_shuffle_ps::<0b01>(h, h));
    _mm_cvtss_f32(h)
}

#[inline(always)]
unsafe fn hmax(v: __m256) -> f32 {
    let h = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    let h = _mm_max_ss(h, _mm_shuffle_ps::<0b01>(h, h));
    _mm_cvtss_f32(h)
}

/// Folds 8 lanes in halves (w = 4, 2, 1), as `portable.rs` does.
#[inline(always)]
pub(crate) unsafe fn fold_lanes(v: __m256) -> f32 {
    let h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    let h = _mm_add_ss(h, _mm_shuffle_ps::<0b01>(h, h));
    _mm_cvtss_f32(h)
}

/// AVX2 version of `portable::block_stats` (identical bits).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn block_stats<T: Load8, const SCALE: bool>(block: &[T], inv_temp: f32) -> RowStats {
    let vt = _mm256_set1_ps(inv_temp);
    let mut mx = _mm256_set1_ps(f32::NEG_INFINITY);
    let mut mn = _mm256_set1_ps(f32::INFINITY);
    for_chunks::<T, SCALE>(block, vt, |z| {
        // max_ps(a, b) = a > b ? a : b, exactly `if z > m { z } else { m }`.
        mx = _mm256_max_ps(z, mx);
        mn = _mm256_min_ps(z, mn);
    });
    block_stats_from_extrema::<T, SCALE>(block, inv_temp, hmax(mx), hmin(mn))
}

/// Pass 2 of [`block_stats`] for a block whose pass 1 the caller did: `m` is the block
/// maximum of the tempered logits (NaN never winning; `±0` either), `mn` a lower bound of
/// the non-NaN ones (it only chooses between two paths that give the same bits). The cDPO
/// rows ([`crate::preference::cdpo`]) find both while they form the block.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn block_stats_from_extrema<T: Load8, const SCALE: bool>(
    block: &[T],
    inv_temp: f32,
    m: f32,
    mn: f32,
) -> RowStats {
    let vt = _mm256_set1_ps(inv_temp);
    let m = m + 0.0;
    if m == f32::NEG_INFINITY {
        let has_nan = block.iter().any(|x| x.to_f32().is_nan());
        return RowStats::from_block(m, 0.0, 0.0, has_nan);
    }
    // Ordinary logits span far less than 87 units: then every `z − m ≥ −87` (rounding is
    // monotone) and the clamp and flush can be skipped without changing a bit.
    let (s, u) = if mn - m >= -87.0 {
        block_sums::<T, SCALE, false>(block, vt, m)
    } else {
        block_sums::<T, SCALE, true>(block, vt, m)
    };
    RowStats::from_block(m, s, u, m == f32::INFINITY || s.is_nan())
}

/// Pass 2: the lane sums `s = Σ exp(z − m)` and `u = Σ exp(z − m)·(z − m)`, folded.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn block_sums<T: Load8, const SCALE: bool, const FLUSH: bool>(block: &[T], vt: __m256, m: f32) -> (f32, f32) {
    let vm = _mm256_set1_ps(m);
    let mut s = _mm256_setzero_ps();
    let mut u = _mm256_setzero_ps();
    // Pass 2 is compute-bound and reads L1; meanwhile pull in the memory that follows this
    // block (the next block, or the next row when dense), half a 64-byte line per chunk, so
    // the next pass 1 does not stall on DRAM. A prefetch never faults, and `wrapping_add`
    // keeps the address computation defined when it points past the slice.
    let ahead = (block.as_ptr() as *const u8).wrapping_add(core::mem::size_of_val(block));
    let mut line = 0usize;
    for_chunks::<T, SCALE>(block, vt, |z| {
        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line) as *const i8);
        line += 32;
        let d = _mm256_sub_ps(z, vm);
        let d = if FLUSH { clamp8(d) } else { d };
        let e = exp8::<FLUSH>(d);
        s = _mm256_add_ps(s, e);
        u = _mm256_fmadd_ps(e, d, u);
    });
    (fold_lanes(s), fold_lanes(u))
}

/// AVX2 version of `portable::grad_row` (identical bits). `src` and
/// `dst` may be the same address (in place, `T == O`): each group of 8 is loaded before it
/// is stored.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn grad_row<T: Load8, O: Store8, const SCALE: bool>(
    src: *const T,
    dst: *mut O,
    len: usize,
    g: &GradRow,
) {
    let vt = _mm256_set1_ps(g.inv_temp);
    let max = _mm256_set1_ps(g.max);
    let log_sum = _mm256_set1_ps(g.log_sum);
    let entropy = _mm256_set1_ps(g.entropy);
    let c = _mm256_set1_ps(g.c);
    let neg_gh = _mm256_set1_ps(g.neg_gh);
    let mut i = 0;
    while i + 8 <= len {
        let centred = _mm256_sub_ps(temper8::<SCALE>(T::load8(src.add(i)), vt), max);
        let d = clamp8(_mm256_sub_ps(centred, log_sum));
        let q = _mm256_fmadd_ps(neg_gh, _mm256_add_ps(d, entropy), c);
        let dz = _mm256_mul_ps(exp8::<true>(d), q);
        O::store8(dst.add(i), temper8::<SCALE>(dz, vt));
        i += 8;
    }
    while i < len {
        let x = (*src.add(i)).to_f32();
        *dst.add(i) = O::from_f32(g.dx::<SCALE>(x));
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

    /// `exp8` is bit-identical to the scalar `crate::exp::exp_flushed` on the whole domain.
    #[test]
    fn exp8_matches_scalar() {
        if !crate::Backend::Avx2Fma.is_supported() {
            crate::platform::report_skip("logits::x86_avx2 exp8", "AVX2+FMA");
            return;
        }
        let n = 1 << 20;
        for i in (0..n).step_by(8) {
            let d: [f32; 8] = core::array::from_fn(|k| -110.0 * ((i + k) as f32 / n as f32));
            let mut out = [0.0f32; 8];
            // Safe because the CPU support was checked above.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), exp8_checked(_mm256_loadu_ps(d.as_ptr()))) };
            for k in 0..8 {
                assert_eq!(out[k].to_bits(), super::super::exp::exp_flushed(d[k]).to_bits(), "exp({})", d[k]);
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn exp8_checked(d: __m256) -> __m256 {
        exp8::<true>(clamp8(d))
    }
}
