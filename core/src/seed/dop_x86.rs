//! The x86 scans of Diversity-or-Precision's top-k selection (`dop.rs`, `Select`): once the
//! candidate buffer has been compacted, a column enters only if its tempered logit beats the
//! current threshold, so almost every column costs one comparison. These loops make that
//! comparison 16 (AVX-512) or 8 (AVX2) columns per instruction and visit only the set bits of
//! the comparison masks, re-testing each against the threshold, which may have risen on the way.
//!
//! The test is `z > θ` exactly as the portable loop writes it (`vcmpps` with `_CMP_GT_OQ`:
//! false for NaN; `z = x·inv_temp` the same multiply), so every backend offers the same
//! columns in the same order and selects the same set.
//!
//! Callers must have checked the backend (`Exec::check_backend`).

use core::arch::x86_64::*;

use super::dop::Select;
use crate::elem::LogitElem;
use crate::logits::x86_avx2::load8_elem;
use crate::logits::x86_avx512::{first_lanes, load16};

/// Offers the columns `from..` of `block` (AVX-512 F/BW/DQ/VL): 64 columns per step and one
/// branch when none beats the threshold (the common case once the first blocks are seen), then
/// 16 at a time under a lane mask.
///
/// # Safety
/// AVX-512 F/BW/DQ/VL and AVX2/FMA/F16C are available.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")]
pub(super) unsafe fn scan_avx512<T: LogitElem, const SCALE: bool>(
    sel: &mut Select<'_>,
    block: &[T],
    from: usize,
    start: usize,
    inv_temp: f32,
) {
    let vt = _mm512_set1_ps(inv_temp);
    let p = block.as_ptr();
    let mut thr = _mm512_set1_ps(sel.thr);
    let mut i = from;
    while i + 64 <= block.len() {
        let hits = above::<T, SCALE>(p.add(i), 0xFFFF, vt, thr)
            | above::<T, SCALE>(p.add(i + 16), 0xFFFF, vt, thr) << 16
            | above::<T, SCALE>(p.add(i + 32), 0xFFFF, vt, thr) << 32
            | above::<T, SCALE>(p.add(i + 48), 0xFFFF, vt, thr) << 48;
        if hits != 0 {
            sel.offer_bits::<T, SCALE>(block, i, hits, start, inv_temp);
            thr = _mm512_set1_ps(sel.thr);
        }
        i += 64;
    }
    while i < block.len() {
        let hits = above::<T, SCALE>(p.add(i), first_lanes((block.len() - i).min(16)), vt, thr);
        if hits != 0 {
            sel.offer_bits::<T, SCALE>(block, i, hits, start, inv_temp);
            thr = _mm512_set1_ps(sel.thr);
        }
        i += 16;
    }
}

/// The bits of the 16 columns at `p` under `k` whose tempered logit beats `thr`.
#[inline(always)]
unsafe fn above<T: LogitElem, const SCALE: bool>(p: *const T, k: __mmask16, vt: __m512, thr: __m512) -> u64 {
    let x = load16(p, k);
    let z = if SCALE { _mm512_mul_ps(x, vt) } else { x };
    _mm512_mask_cmp_ps_mask::<_CMP_GT_OQ>(k, z, thr) as u64
}

/// Offers the columns `from..` of `block` (AVX2), 8 at a time, the last `< 8` one by one.
///
/// # Safety
/// AVX2/FMA/F16C are available.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn scan_avx2<T: LogitElem, const SCALE: bool>(
    sel: &mut Select<'_>,
    block: &[T],
    from: usize,
    start: usize,
    inv_temp: f32,
) {
    let vt = _mm256_set1_ps(inv_temp);
    let mut i = from;
    while i + 8 <= block.len() {
        let x = load8_elem(block.as_ptr().add(i));
        let z = if SCALE { _mm256_mul_ps(x, vt) } else { x };
        let hits = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(z, _mm256_set1_ps(sel.thr))) as u32;
        sel.offer_bits::<T, SCALE>(block, i, u64::from(hits), start, inv_temp);
        i += 8;
    }
    for (j, &x) in block.iter().enumerate().skip(i) {
        sel.offer::<T, SCALE>(j, x, start, inv_temp);
    }
}
