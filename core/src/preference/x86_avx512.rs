//! The AVX-512 (F, BW, DQ, VL) path of cDPO's contrastive rows: both passes of the logits
//! block kernel on a block formed on the fly, 16 columns in one register, operation for
//! operation what the portable path ([`super::cdpo::combine`] and the canonical block kernel
//! of [`crate::logits`]) and the AVX2 path (`x86_avx2.rs` here, then
//! `logits::x86_avx2::block_stats_from_extrema`) compute, so every backend gives the same bits
//! (tested by `cdpo_avx512_matches_portable_and_avx2_bitwise` in `core/tests/preference.rs`).
//! Pass 1 (forming the block, its maximum and minimum) is written here: the `−inf` rule is a
//! mask register and `vblendmps`, the extrema are order-free (NaN never wins, `±0` are made
//! `+0` after), and the last 1..15 columns are one chunk under a lane mask. Pass 2 is the
//! logits AVX-512 backend's own (`logits::x86_avx512::block_sums`, whose docs say why 16
//! columns per step and the masked tail keep the canonical bits); its clamp and flush are
//! skipped exactly when the AVX2 path may skip them (every `z − m ≥ −87`), where they are
//! identities.
//!
//! Callers must have checked `Backend::Avx512.is_supported()` (the dispatch in `cdpo.rs` does).

use core::arch::x86_64::*;

use crate::elem::LogitElem;
use crate::logits::x86_avx512::{self as logits, first_lanes, load16};

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
    let tail_mask = first_lanes(n - full);
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
    let none = core::ptr::null();
    let (s, u) = if lo - m >= -87.0 {
        logits::block_sums::<f32, false, false>(out, 1.0, m, none)
    } else {
        logits::block_sums::<f32, false, true>(out, 1.0, m, none)
    };
    (m, s, u, m == f32::INFINITY || s.is_nan())
}
