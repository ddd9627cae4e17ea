//! The AVX-512 (F, BW, DQ, VL) path of cDPO's contrastive rows: both passes of the logits
//! block kernel on a block formed on the fly, 16 columns in one register, operation for
//! operation what the portable path ([`super::cdpo::combine`] and the canonical block kernel
//! of [`crate::logits`]) and the AVX2 path (`x86_avx2.rs` here, then
//! `logits::x86_avx2::block_stats_from_extrema`) compute, so every backend gives the same bits
//! (tested by `cdpo_avx512_matches_portable_and_avx2_bitwise` in `core/tests/preference.rs`).
//! What differs from the AVX2 path:
//!
//! * pass 1 (forming the block, its maximum and minimum): the `−inf` rule is a mask register
//!   and `vblendmps`; the extrema are order-free (NaN never wins, `±0` are made `+0` after);
//! * pass 2 keeps the canonical 8 lanes (column `j` of the block in lane `j mod 8`): `exp` runs
//!   on 16 columns at once, and the low 8 columns' `e` and `e·d` are added to the 8-lane
//!   `__m256` accumulators first, then the high 8, so each lane still adds its columns in
//!   index order (a chunk starts at a column `≡ 0 mod 16`); the lanes are folded in halves
//!   (4, 2, 1) as everywhere;
//! * the last 1..15 columns are one chunk under a mask (loads read nothing past the end,
//!   stores and adds leave the lanes outside the mask untouched), so there is no scalar tail.
//!   The AVX2 path pads that chunk with `−inf`, whose terms add exactly `+0` to `s` (never
//!   `−0`) and `−0` to `u`; the portable path adds nothing there: the same bits as not adding.
//!
//! `exp` is `logits::x86_avx2::exp8`'s transcription of the shared `exp` (same reduction, same
//! polynomial, same `fma`s); the clamp and flush are skipped exactly when the AVX2 path may
//! skip them (every `z − m ≥ −87`), where they are identities.
//!
//! Callers must have checked `Backend::Avx512.is_supported()` (the dispatch in `cdpo.rs` does).

use core::arch::x86_64::*;

use crate::elem::{DType, LogitElem};
use crate::exp::{EXP_BIAS_FIX, EXP_CLAMP, LN2, LOG2E, Q0, Q1, Q2, Q3, Q4, ROUND_MAGIC};
use crate::logits::x86_avx2::fold_lanes;

/// 16 elements under the lane mask `k`, widened exactly to `f32` (lanes outside `k` are not
/// read and come back as `0.0`).
#[inline(always)]
unsafe fn load16<T: LogitElem>(p: *const T, k: __mmask16) -> __m512 {
    match T::DTYPE {
        DType::F32 => _mm512_maskz_loadu_ps(k, p as *const f32),
        DType::BF16 => {
            let h = _mm256_maskz_loadu_epi16(k, p as *const i16);
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
        }
        DType::F16 => _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, p as *const i16)),
    }
}

/// `exp(d)` on 16 lanes: `logits::x86_avx2::exp8`, fma for fma. With `FLUSH` off the caller
/// guarantees `d ≥ −87` (or NaN) in every lane, where clamp and flush are identities.
#[inline(always)]
unsafe fn exp16<const FLUSH: bool>(d: __m512) -> __m512 {
    let magic = _mm512_set1_ps(ROUND_MAGIC);
    let t = _mm512_fmadd_ps(d, _mm512_set1_ps(LOG2E), magic);
    let n = _mm512_sub_ps(t, magic);
    let r = _mm512_fmadd_ps(n, _mm512_set1_ps(-LN2), d);
    let one = _mm512_set1_ps(1.0);
    let mut y = _mm512_fmadd_ps(_mm512_set1_ps(Q4), r, _mm512_set1_ps(Q3));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(Q2));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(Q1));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(Q0));
    y = _mm512_fmadd_ps(y, r, one);
    y = _mm512_fmadd_ps(y, r, one);
    let mut biased = _mm512_add_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(EXP_BIAS_FIX as i32));
    if FLUSH {
        biased = _mm512_max_epi32(biased, _mm512_setzero_si512());
    }
    let scale = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(biased));
    _mm512_mul_ps(y, scale)
}

/// One block of the contrastive row: `out[j] = combine(a, b, xp[j], xn[j])`, then pass 2 of
/// the block kernel on `out`; returns the block's `(m, s, u, nonfinite)` as
/// `block_stats_from_max`/`block_stats_from_extrema` compute them (see the module docs).
///
/// # Safety
/// AVX-512 F/BW/DQ/VL (and AVX2/FMA/F16C) are available; the three slices have the same length.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")]
pub(super) unsafe fn block<T: LogitElem>(a: f32, b: f32, xp: &[T], xn: &[T], out: &mut [f32]) -> (f32, f32, f32, bool) {
    let n = out.len();
    let full = n / 16 * 16;
    let tail_mask = ((1u32 << (n - full)) - 1) as __mmask16;
    // Pass 1: form the block and find its extrema.
    let (va, vb) = (_mm512_set1_ps(a), _mm512_set1_ps(b));
    let ninf = _mm512_set1_ps(f32::NEG_INFINITY);
    let (mut mx, mut mn) = (ninf, _mm512_set1_ps(f32::INFINITY));
    // Pull the next block of both rows (the next row when dense) towards L2 while pass 2
    // computes, one line per 64 bytes, as the AVX2 path does. A prefetch never faults.
    let size = core::mem::size_of::<T>();
    let ahead = n * size;
    let (pp, pn) = (xp.as_ptr() as *const u8, xn.as_ptr() as *const u8);
    let po = out.as_mut_ptr();
    let mut form = |j: usize, k: __mmask16| {
        if (j * size).is_multiple_of(64) {
            _mm_prefetch::<_MM_HINT_T1>(pp.wrapping_add(ahead + j * size) as *const i8);
            _mm_prefetch::<_MM_HINT_T1>(pn.wrapping_add(ahead + j * size) as *const i8);
        }
        let p = load16(xp.as_ptr().add(j), k);
        let q = load16(xn.as_ptr().add(j), k);
        let z = _mm512_fmadd_ps(va, p, _mm512_mul_ps(vb, q));
        let masked = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(p, ninf) | _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(q, ninf);
        // `mask_blend(k, a, b)` takes `b` where `k` is set.
        let z = _mm512_mask_blend_ps(masked, z, ninf);
        _mm512_mask_storeu_ps(po.add(j), k, z);
        // max_ps(z, m) = z > m ? z : m: NaN never wins (min likewise); lanes outside `k`
        // keep their extrema.
        mx = _mm512_mask_max_ps(mx, k, z, mx);
        mn = _mm512_mask_min_ps(mn, k, z, mn);
    };
    let mut j = 0;
    while j < full {
        form(j, 0xFFFF);
        j += 16;
    }
    if tail_mask != 0 {
        form(full, tail_mask);
    }
    // Neither holds a NaN (see above), so the reductions are exact in any order.
    let m = _mm512_reduce_max_ps(mx) + 0.0;
    let lo = _mm512_reduce_min_ps(mn);
    if m == f32::NEG_INFINITY {
        let has_nan = out.iter().any(|x| x.is_nan());
        return (m, 0.0, 0.0, has_nan);
    }
    // Pass 2 (`block_sums`): ordinary rows span far less than 87 units, where the clamp and
    // flush can be skipped without changing a bit.
    let (s, u) = if lo - m >= -87.0 { sums::<false>(out, m, tail_mask) } else { sums::<true>(out, m, tail_mask) };
    (m, s, u, m == f32::INFINITY || s.is_nan())
}

/// Pass 2 on the formed block: `s = Σ exp(z − m)`, `u = Σ exp(z − m)·(z − m)` in the 8
/// canonical lanes (low 8 columns of each 16, then the high 8), folded.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")]
unsafe fn sums<const FLUSH: bool>(z: &[f32], m: f32, tail_mask: __mmask16) -> (f32, f32) {
    let vm = _mm512_set1_ps(m);
    let mut s = _mm256_setzero_ps();
    let mut u = _mm256_setzero_ps();
    let term = |x: __m512| -> (__m512, __m512) {
        let d = _mm512_sub_ps(x, vm);
        let d = if FLUSH { _mm512_max_ps(_mm512_set1_ps(EXP_CLAMP), d) } else { d };
        (exp16::<FLUSH>(d), d)
    };
    let full = z.len() / 16 * 16;
    let p = z.as_ptr();
    let mut j = 0;
    while j < full {
        let (e, d) = term(_mm512_loadu_ps(p.add(j)));
        let (elo, dlo) = (_mm512_castps512_ps256(e), _mm512_castps512_ps256(d));
        let (ehi, dhi) = (_mm512_extractf32x8_ps::<1>(e), _mm512_extractf32x8_ps::<1>(d));
        s = _mm256_add_ps(s, elo);
        u = _mm256_fmadd_ps(elo, dlo, u);
        s = _mm256_add_ps(s, ehi);
        u = _mm256_fmadd_ps(ehi, dhi, u);
        j += 16;
    }
    if tail_mask != 0 {
        let (e, d) = term(_mm512_maskz_loadu_ps(tail_mask, p.add(full)));
        let (klo, khi) = (tail_mask as __mmask8, (tail_mask >> 8) as __mmask8);
        let (elo, dlo) = (_mm512_castps512_ps256(e), _mm512_castps512_ps256(d));
        let (ehi, dhi) = (_mm512_extractf32x8_ps::<1>(e), _mm512_extractf32x8_ps::<1>(d));
        // Lanes outside the mask keep the accumulator's bits.
        s = _mm256_mask_add_ps(s, klo, s, elo);
        u = _mm256_mask3_fmadd_ps(elo, dlo, u, klo);
        s = _mm256_mask_add_ps(s, khi, s, ehi);
        u = _mm256_mask3_fmadd_ps(ehi, dhi, u, khi);
    }
    (fold_lanes(s), fold_lanes(u))
}
