//! The AVX-512 (F, BW, DQ, VL) backend of the logits statistics: the canonical order of
//! `portable.rs`, 16 columns per instruction where that changes no bit.
//!
//! * **Pass 1** (block maximum and minimum) is order-free: `vmaxps(z, m)` is `z > m ? z : m`,
//!   so NaN never wins, and the extrema are reduced across the 16 lanes in any order (`±0`
//!   are made `+0` after, as everywhere).
//! * **Pass 2** keeps the canonical 8 lanes (column `j` of a block in lane `j mod 8`): `exp`
//!   runs on 16 columns at once, then the low 8 columns' `e` and `e·d` are added to the 8-lane
//!   `__m256` accumulators, then the high 8, so each lane still adds its columns in index
//!   order (a chunk starts at a column `≡ 0 mod 16`, blocks being multiples of 16 long); the
//!   lanes are folded in halves (4, 2, 1) as in `x86_avx2.rs`.
//! * **The gradient** is elementwise: 16 columns per step, the operations of
//!   `x86_avx2::grad_row` one for one.
//! * The last 1..15 columns of a block or row are one chunk under a lane mask: loads read
//!   nothing past the end, stores and adds leave the lanes outside the mask untouched. The
//!   AVX2 path pads that chunk with `−inf`, whose terms add exactly `+0` to `s` (never `−0`)
//!   and `−0` to `u`, and the portable path adds nothing there: the same bits as not adding.
//!   The minimum over the padded lanes only chooses between two paths of pass 2 that give the
//!   same bits (see [`block_sums`]).
//!
//! `exp16` is `x86_avx2::exp8` (the shared `exp`: same reduction, polynomial and `fma`s) on
//! 16 lanes. Bitwise equality with the portable path is tested for every dtype pair, dense and
//! in place, in `core/tests/simd.rs` (each supported backend is forced in turn); the
//! 16-lane stores against `half` on every class of input below.
//!
//! Every function here is `unsafe` with `#[target_feature]`; callers must have checked
//! `Backend::Avx512.is_supported()` (the dispatch in `logits/mod.rs` does). The cDPO, TW-GRPO
//! and DoP AVX-512 paths reuse [`load16`] and [`first_lanes`], cDPO also [`block_sums`].

use core::arch::x86_64::*;

use super::exp::{EXP_BIAS_FIX, EXP_CLAMP, LN2, LOG2E, Q0, Q1, Q2, Q3, Q4, ROUND_MAGIC};
use super::portable::GradRow;
use super::row_stats::RowStats;
use super::x86_avx2::fold_lanes;
use crate::elem::{DType, GradElem, LogitElem};

/// The lane mask of the first `n ≤ 16` lanes.
#[inline(always)]
pub(crate) fn first_lanes(n: usize) -> __mmask16 {
    ((1u32 << n) - 1) as __mmask16
}

/// 16 elements under the lane mask `k`, widened exactly to `f32` (lanes outside `k` are not
/// read and come back as `0.0`).
///
/// # Safety
/// AVX-512 F/BW/VL and F16C are available; `p + i` is valid for every lane `i` in `k`.
#[inline(always)]
pub(crate) unsafe fn load16<T: LogitElem>(p: *const T, k: __mmask16) -> __m512 {
    match T::DTYPE {
        DType::F32 => _mm512_maskz_loadu_ps(k, p as *const f32),
        DType::BF16 => {
            let h = _mm256_maskz_loadu_epi16(k, p as *const i16);
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
        }
        DType::F16 => _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, p as *const i16)),
    }
}

/// Stores the lanes of `v` under `k`, rounded to `O` exactly as `half` rounds (bf16: round to
/// nearest even, NaN → `(x >> 16) | 0x40`, as `x86_avx2`'s `Store8`; f16: `vcvtps2ph`, round to
/// nearest even). `vcvtneps2bf16` is not used: it treats denormal inputs as zero. `STREAM`: all
/// 16 lanes with a non-temporal store (`k` is ignored; `p` is aligned to the 16 elements'
/// size), which writes the line without reading it first.
#[inline(always)]
unsafe fn store16<O: GradElem, const STREAM: bool>(p: *mut O, k: __mmask16, v: __m512) {
    let narrow = |h: __m256i| {
        if STREAM {
            _mm256_stream_si256(p as *mut __m256i, h)
        } else {
            _mm256_mask_storeu_epi16(p as *mut i16, k, h)
        }
    };
    match O::DTYPE {
        DType::F32 if STREAM => _mm512_stream_ps(p as *mut f32, v),
        DType::F32 => _mm512_mask_storeu_ps(p as *mut f32, k, v),
        DType::BF16 => {
            let x = _mm512_castps_si512(v);
            let abs = _mm512_and_si512(x, _mm512_set1_epi32(0x7FFF_FFFF));
            let is_nan = _mm512_cmpgt_epi32_mask(abs, _mm512_set1_epi32(0x7F80_0000));
            let hi = _mm512_srli_epi32::<16>(x);
            let lsb = _mm512_and_si512(hi, _mm512_set1_epi32(1));
            let rounded =
                _mm512_srli_epi32::<16>(_mm512_add_epi32(_mm512_add_epi32(x, _mm512_set1_epi32(0x7FFF)), lsb));
            let quiet = _mm512_or_si512(hi, _mm512_set1_epi32(0x40));
            // `mask_blend(k, a, b)` takes `b` where `k` is set; every lane is below 2^16,
            // so the truncating narrow to 16 bits is exact.
            narrow(_mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(is_nan, rounded, quiet)));
        }
        DType::F16 => narrow(_mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v)),
    }
}

/// `exp(d)` on 16 lanes: `x86_avx2::exp8`, fma for fma. With `FLUSH` off the caller guarantees
/// `d ≥ −87` (or NaN) in every lane, where the clamp and the flush are identities.
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

/// `max(d, EXP_CLAMP)`, NaN passing through (`vmaxps` returns its second operand when
/// unordered): `exp::clamp_arg`.
#[inline(always)]
unsafe fn clamp16(d: __m512) -> __m512 {
    _mm512_max_ps(_mm512_set1_ps(EXP_CLAMP), d)
}

/// `z = x·inv_temp`, or `x` when `SCALE` is off (the caller knows `inv_temp == 1`).
#[inline(always)]
unsafe fn temper16<const SCALE: bool>(x: __m512, inv_temp: __m512) -> __m512 {
    if SCALE {
        _mm512_mul_ps(x, inv_temp)
    } else {
        x
    }
}

/// Pass 1: the block maximum (NaN never winning, `+0` for either zero) and minimum of the
/// tempered logits.
#[inline(always)]
unsafe fn extrema<T: LogitElem, const SCALE: bool>(block: &[T], vt: __m512) -> (f32, f32) {
    let (mut mx, mut mn) = (_mm512_set1_ps(f32::NEG_INFINITY), _mm512_set1_ps(f32::INFINITY));
    let p = block.as_ptr();
    let full = block.len() / 16 * 16;
    let mut j = 0;
    while j < full {
        let z = temper16::<SCALE>(load16(p.add(j), 0xFFFF), vt);
        mx = _mm512_max_ps(z, mx);
        mn = _mm512_min_ps(z, mn);
        j += 16;
    }
    let tail = first_lanes(block.len() - full);
    if tail != 0 {
        let z = temper16::<SCALE>(load16(p.add(full), tail), vt);
        mx = _mm512_mask_max_ps(mx, tail, z, mx);
        mn = _mm512_mask_min_ps(mn, tail, z, mn);
    }
    // Neither holds a NaN, so the reductions are exact in any order.
    (_mm512_reduce_max_ps(mx) + 0.0, _mm512_reduce_min_ps(mn))
}

/// The tuple of a block without a finite-or-`+inf` logit (`m = −inf`).
fn empty_block<T: LogitElem>(block: &[T]) -> RowStats {
    let has_nan = block.iter().any(|x| x.to_f32().is_nan());
    RowStats::from_block(f32::NEG_INFINITY, 0.0, 0.0, has_nan)
}

/// AVX-512 version of `portable::block_stats` (identical bits).
///
/// # Safety
/// AVX-512 F/BW/DQ/VL and AVX2/FMA/F16C are available.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")]
pub(crate) unsafe fn block_stats<T: LogitElem, const SCALE: bool>(block: &[T], inv_temp: f32) -> RowStats {
    let (m, mn) = extrema::<T, SCALE>(block, _mm512_set1_ps(inv_temp));
    if m == f32::NEG_INFINITY {
        return empty_block(block);
    }
    let ahead = (block.as_ptr() as *const u8).wrapping_add(core::mem::size_of_val(block));
    let (s, u) = if mn - m >= -87.0 {
        block_sums::<T, SCALE, false>(block, inv_temp, m, ahead)
    } else {
        block_sums::<T, SCALE, true>(block, inv_temp, m, ahead)
    };
    RowStats::from_block(m, s, u, m == f32::INFINITY || s.is_nan())
}

/// Pass 2: the lane sums `s = Σ exp(z − m)` and `u = Σ exp(z − m)·(z − m)` in the canonical 8
/// lanes, folded. `FLUSH` off needs every `z − m ≥ −87` (ordinary logits span far less), where
/// the clamp and flush are identities and skipping them gives the same bits.
///
/// Pass 2 is compute-bound and reads L1; meanwhile it pulls in the 64-byte lines from `ahead`
/// on (the next block, or the next row when dense), one per 16 columns, so that the next
/// pass 1 does not stall on DRAM (null: no prefetch). A prefetch never faults.
///
/// # Safety
/// AVX-512 F/BW/DQ/VL and AVX2/FMA/F16C are available.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")]
pub(crate) unsafe fn block_sums<T: LogitElem, const SCALE: bool, const FLUSH: bool>(
    block: &[T],
    inv_temp: f32,
    m: f32,
    ahead: *const u8,
) -> (f32, f32) {
    let (vt, vm) = (_mm512_set1_ps(inv_temp), _mm512_set1_ps(m));
    let mut s = _mm256_setzero_ps();
    let mut u = _mm256_setzero_ps();
    let term = |x: __m512| -> (__m512, __m512) {
        let d = _mm512_sub_ps(temper16::<SCALE>(x, vt), vm);
        let d = if FLUSH { clamp16(d) } else { d };
        (exp16::<FLUSH>(d), d)
    };
    let halves = |v: __m512| (_mm512_castps512_ps256(v), _mm512_extractf32x8_ps::<1>(v));
    let p = block.as_ptr();
    let full = block.len() / 16 * 16;
    let mut j = 0;
    while j < full {
        if !ahead.is_null() {
            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(4 * j) as *const i8);
        }
        let (e, d) = term(load16(p.add(j), 0xFFFF));
        let ((elo, ehi), (dlo, dhi)) = (halves(e), halves(d));
        s = _mm256_add_ps(s, elo);
        u = _mm256_fmadd_ps(elo, dlo, u);
        s = _mm256_add_ps(s, ehi);
        u = _mm256_fmadd_ps(ehi, dhi, u);
        j += 16;
    }
    let tail = first_lanes(block.len() - full);
    if tail != 0 {
        let (e, d) = term(load16(p.add(full), tail));
        let ((elo, ehi), (dlo, dhi)) = (halves(e), halves(d));
        let (klo, khi) = (tail as __mmask8, (tail >> 8) as __mmask8);
        // Lanes outside the mask keep the accumulators' bits.
        s = _mm256_mask_add_ps(s, klo, s, elo);
        u = _mm256_mask3_fmadd_ps(elo, dlo, u, klo);
        s = _mm256_mask_add_ps(s, khi, s, ehi);
        u = _mm256_mask3_fmadd_ps(ehi, dhi, u, khi);
    }
    (fold_lanes(s), fold_lanes(u))
}

/// AVX-512 version of `portable::grad_row` (identical bits). `src` and `dst` may be the same
/// address (in place, `T == O`): each group of 16 is loaded before it is stored.
///
/// `STREAM` (a separate output too large to stay in cache, never in place): the aligned groups
/// of 16 go out with non-temporal stores, which skip reading each output line before writing
/// it (the write-allocate read is a third of an out-of-place backward's memory traffic); the
/// first, unaligned group and the last, partial one are ordinary stores, and an `sfence`
/// orders everything before the caller's next store (the target column).
///
/// # Safety
/// AVX-512 F/BW/DQ/VL and AVX2/FMA/F16C are available; `src` and `dst` are valid for `len`
/// elements and do not overlap unless equal (and not at all with `STREAM`).
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")]
pub(crate) unsafe fn grad_row<T: LogitElem, O: GradElem, const SCALE: bool, const STREAM: bool>(
    src: *const T,
    dst: *mut O,
    len: usize,
    g: &GradRow,
) {
    let vt = _mm512_set1_ps(g.inv_temp);
    let max = _mm512_set1_ps(g.max);
    let log_sum = _mm512_set1_ps(g.log_sum);
    let entropy = _mm512_set1_ps(g.entropy);
    let c = _mm512_set1_ps(g.c);
    let neg_gh = _mm512_set1_ps(g.neg_gh);
    let dx = |i: usize, k: __mmask16| {
        let centred = _mm512_sub_ps(temper16::<SCALE>(load16(src.add(i), k), vt), max);
        let d = clamp16(_mm512_sub_ps(centred, log_sum));
        let q = _mm512_fmadd_ps(neg_gh, _mm512_add_ps(d, entropy), c);
        temper16::<SCALE>(_mm512_mul_ps(exp16::<true>(d), q), vt)
    };
    let mut i = 0;
    if STREAM {
        // Elements before the first address aligned to 16 outputs.
        let unit = 16 * core::mem::size_of::<O>();
        let off = (dst as usize) % unit;
        let head = if off == 0 { 0 } else { ((unit - off) / core::mem::size_of::<O>()).min(len) };
        if head > 0 {
            store16::<O, false>(dst, first_lanes(head), dx(0, first_lanes(head)));
        }
        i = head;
        while i + 16 <= len {
            store16::<O, true>(dst.add(i), 0xFFFF, dx(i, 0xFFFF));
            i += 16;
        }
    } else {
        while i + 16 <= len {
            store16::<O, false>(dst.add(i), 0xFFFF, dx(i, 0xFFFF));
            i += 16;
        }
    }
    if i < len {
        let k = first_lanes(len - i);
        store16::<O, false>(dst.add(i), k, dx(i, k));
    }
    if STREAM {
        _mm_sfence();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::{bf16, f16};

    /// The 16-lane stores round exactly like `half` on every class of input (normals,
    /// subnormals, ties, overflow, ±inf, NaN payloads), and write nothing outside their mask.
    #[test]
    fn stores_round_like_half() {
        if !crate::Backend::Avx512.is_supported() {
            crate::platform::report_skip("logits::x86_avx512 store16", "AVX-512");
            return;
        }
        let mut bits: std::vec::Vec<u32> =
            (0..(1u32 << 20)).map(|i| i.wrapping_mul(4099).wrapping_add(i << 12)).collect();
        bits.extend([0, 0x8000_0000, 0x7F80_0000, 0xFF80_0000, 0x7FC0_0001, 0xFFBF_FFFF, 0x7F7F_FFFF, 0x3F80_8000]);
        bits.extend([0x3F81_8000, 0x0000_0001, 0x8000_8000, 0x0040_0000, 0x3880_0000, 0x3870_0000, 0x3300_0001]);
        bits.extend((0..4096u32).map(|i| 0x3F80_0000 | (i << 4) | 0x8000));
        for (n, chunk) in bits.chunks(16).enumerate() {
            let mut v = [0.0f32; 16];
            for (x, b) in v.iter_mut().zip(chunk) {
                *x = f32::from_bits(*b);
            }
            let k = first_lanes(if n % 7 == 3 { chunk.len() - 1 } else { chunk.len() });
            let mut b = [bf16::from_bits(0xABCD); 16];
            let mut h = [f16::from_bits(0xABCD); 16];
            // Safe because the CPU support was checked above.
            unsafe { check_stores(&v, k, &mut b, &mut h) };
            for i in 0..16 {
                let (want_b, want_h) = if k & (1 << i) != 0 {
                    (bf16::from_f32(v[i]).to_bits(), f16::from_f32(v[i]).to_bits())
                } else {
                    (0xABCD, 0xABCD)
                };
                assert_eq!(b[i].to_bits(), want_b, "bf16 of {:#010x}", v[i].to_bits());
                assert_eq!(h[i].to_bits(), want_h, "f16 of {:#010x}", v[i].to_bits());
            }
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")]
    unsafe fn check_stores(v: &[f32; 16], k: __mmask16, b: &mut [bf16; 16], h: &mut [f16; 16]) {
        let x = _mm512_loadu_ps(v.as_ptr());
        store16::<_, false>(b.as_mut_ptr(), k, x);
        store16::<_, false>(h.as_mut_ptr(), k, x);
    }

    /// The streaming gradient (non-temporal stores from the first aligned group) writes the
    /// same bits as the ordinary one, for every misalignment of the output, lengths around the
    /// 16-element groups and every output dtype, and nothing outside `[0, len)`.
    #[test]
    fn streaming_gradient_matches() {
        if !crate::Backend::Avx512.is_supported() {
            crate::platform::report_skip("logits::x86_avx512 streaming gradient", "AVX-512");
            return;
        }
        let x: std::vec::Vec<f32> = (0..1100).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.13).collect();
        let g = GradRow { inv_temp: 1.25, max: 6.5, log_sum: 2.75, entropy: 3.0, c: 0.3, neg_gh: -0.01, g_lp: 0.0 };
        fn check<O: GradElem + PartialEq + core::fmt::Debug>(x: &[f32], g: &GradRow) {
            let sentinel = O::from_f32(-7.5);
            for len in [1usize, 15, 16, 17, 31, 33, 100, 1000] {
                for off in 0..33 {
                    let (mut want, mut got) = (std::vec![sentinel; len + 64], std::vec![sentinel; len + 64]);
                    // Safe: AVX-512 was checked; both outputs hold `off + len` elements.
                    unsafe {
                        grad_row::<f32, O, true, false>(x.as_ptr(), want.as_mut_ptr().add(off), len, g);
                        grad_row::<f32, O, true, true>(x.as_ptr(), got.as_mut_ptr().add(off), len, g);
                    }
                    assert_eq!(got, want, "len {len}, offset {off}");
                    assert!(got[..off].iter().chain(&got[off + len..]).all(|v| *v == sentinel));
                }
            }
        }
        check::<f32>(&x, &g);
        check::<bf16>(&x, &g);
        check::<f16>(&x, &g);
    }

    /// `exp16` is bit-identical to the scalar `crate::exp::exp_flushed` on the whole domain.
    #[test]
    fn exp16_matches_scalar() {
        if !crate::Backend::Avx512.is_supported() {
            crate::platform::report_skip("logits::x86_avx512 exp16", "AVX-512");
            return;
        }
        let n = 1 << 20;
        for i in (0..n).step_by(16) {
            let d: [f32; 16] = core::array::from_fn(|k| -110.0 * ((i + k) as f32 / n as f32));
            let mut out = [0.0f32; 16];
            // Safe because the CPU support was checked above.
            unsafe { exp16_checked(&d, &mut out) };
            for k in 0..16 {
                assert_eq!(out[k].to_bits(), crate::exp::exp_flushed(d[k]).to_bits(), "exp({})", d[k]);
            }
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")]
    unsafe fn exp16_checked(d: &[f32; 16], out: &mut [f32; 16]) {
        _mm512_storeu_ps(out.as_mut_ptr(), exp16::<true>(clamp16(_mm512_loadu_ps(d.as_ptr()))));
    }
}
