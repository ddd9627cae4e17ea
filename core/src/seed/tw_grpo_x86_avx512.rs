//! The AVX-512 (F, BW, DQ, VL) path of TW-GRPO's dispersion `D`: `tw_grpo_x86_avx2.rs` with
//! 16 columns in one register, operation for operation, so every backend gives the same bits
//! (tested in `core/tests/seed_tw_grpo.rs`). What differs from the AVX2 path:
//!
//! * comparisons give mask registers (`__mmask16`) and the `−inf` selects of `delta` are
//!   `vblendmps` instead of `blendv` (the same values);
//! * the `f64` lane accumulators keep the portable lanes (column `v` in lane `v mod 8`): one
//!   `__m512d` of 8 lanes takes the low 8 columns of a 16-column chunk, then the high 8, so
//!   every lane still adds its columns in index order (a chunk starts at a column `≡ 0 mod 8`);
//! * groups of at most 16 members take two chunks per iteration ([`UNROLL`]): two independent
//!   dependency chains (member sums, then `acc`), whose results are added to the `f64` lanes
//!   in column order, first chunk first (faster than one chunk per iteration in our runs on a
//!   loaded 2-core AMD EPYC VM, `bench/compare/results-seed.md`; four were no faster than two);
//! * the last 1..15 columns are one chunk loaded under a mask (lanes past the end read `0`,
//!   and are left out of the `f64` adds by masked adds, which keep the accumulator's bits), so
//!   there is no scalar tail. Per column the chunk computes what `tw_grpo::column_acc` does,
//!   as the AVX2 path's portable tail does, and those columns are the last of their lanes in
//!   the portable order too.
//!
//! The term is `tw_grpo::dispersion_term` (the shared `exp`'s reduction and polynomial) with
//! the same `fma`s as `tw_grpo_x86_avx2::term8`; division, `min`/`max` (`vminps`/`vmaxps`
//! return their second operand when unordered, so NaN passes) and the conversions to `f32`
//! and `f64` are exact or correctly rounded in every width.
//!
//! Callers must have checked `Backend::Avx512.is_supported()` (the dispatch in `tw_grpo.rs`
//! does).

use core::arch::x86_64::*;

use super::tw_grpo::{finish_lanes, Member};
use crate::elem::LogitElem;
use crate::exp::{EXP_BIAS_FIX, LN2, LOG2E, Q0, Q1, Q2, Q3, Q4, ROUND_MAGIC};
use crate::logits::x86_avx512::load16;

/// `tw_grpo::delta` on 16 lanes (`x86_avx2::delta8`).
#[inline(always)]
unsafe fn delta16(mean: __m512, l: __m512, lmax: __m512, c: __m512, neg_c: __m512) -> __m512 {
    let ninf = _mm512_set1_ps(f32::NEG_INFINITY);
    let d = _mm512_min_ps(c, _mm512_max_ps(neg_c, _mm512_sub_ps(mean, l)));
    let l_inf = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(l, ninf);
    let all_inf = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(lmax, ninf);
    // `mask_blend(k, a, b)` takes `b` where `k` is set.
    let special = _mm512_mask_blend_ps(all_inf, c, _mm512_setzero_ps());
    _mm512_mask_blend_ps(l_inf, d, special)
}

/// `tw_grpo::dispersion_term` on 16 lanes (`x86_avx2::term8`, fma for fma).
#[inline(always)]
unsafe fn term16(d: __m512) -> __m512 {
    let magic = _mm512_set1_ps(ROUND_MAGIC);
    let one = _mm512_set1_ps(1.0);
    let t = _mm512_fmadd_ps(d, _mm512_set1_ps(LOG2E), magic);
    let n = _mm512_sub_ps(t, magic);
    let r = _mm512_fmadd_ps(n, _mm512_set1_ps(-LN2), d);
    let mut p = _mm512_fmadd_ps(_mm512_set1_ps(Q4), r, _mm512_set1_ps(Q3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(Q2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(Q1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(Q0));
    let r2p = _mm512_mul_ps(_mm512_mul_ps(r, r), p);
    let biased = _mm512_add_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(EXP_BIAS_FIX as i32));
    let scale = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(biased));
    let linear = _mm512_fmsub_ps(scale, _mm512_add_ps(one, r), _mm512_add_ps(one, d));
    _mm512_fmadd_ps(scale, r2p, linear)
}

/// Members whose 16-column `ℓ̃` and broadcast statistics are kept between the two passes over
/// a chunk; larger groups reload them (same values either way).
const KEEP: usize = 16;

/// 16-column chunks per iteration of the main loop (groups of at most [`KEEP`] members).
const UNROLL: usize = 2;

/// One 16-column chunk: `Σ_k term(δ_k)` per lane, as `tw_grpo::column_acc` per column (the
/// AVX2 `chunk_acc`, including its finite-sum shortcut to the plain clamp, which gives the
/// general form's values in every lane where it is taken). `logp(k)` gives member `k`'s `ℓ̃`.
#[inline(always)]
unsafe fn chunk_acc(g: usize, logp: impl Fn(usize) -> __m512, g_f: __m512, cv: __m512, neg_c: __m512) -> __m512 {
    let mut sum = _mm512_setzero_ps();
    for k in 0..g {
        sum = _mm512_add_ps(sum, logp(k));
    }
    let mean = _mm512_div_ps(sum, g_f);
    let mut acc = _mm512_setzero_ps();
    let abs_sum = _mm512_abs_ps(sum);
    if _mm512_cmp_ps_mask::<_CMP_LT_OQ>(abs_sum, _mm512_set1_ps(f32::INFINITY)) == 0xFFFF {
        for k in 0..g {
            let d = _mm512_min_ps(cv, _mm512_max_ps(neg_c, _mm512_sub_ps(mean, logp(k))));
            acc = _mm512_add_ps(acc, term16(d));
        }
    } else {
        let mut lmax = _mm512_set1_ps(f32::NEG_INFINITY);
        for k in 0..g {
            lmax = _mm512_max_ps(logp(k), lmax);
        }
        for k in 0..g {
            acc = _mm512_add_ps(acc, term16(delta16(mean, logp(k), lmax, cv, neg_c)));
        }
    }
    acc
}

/// `N` adjacent 16-column chunks at once (chunk `i`: columns `v + 16·i ..`), for the
/// instruction-level parallelism of `N` independent dependency chains; each chunk's lanes get
/// exactly what [`chunk_acc`] computes (the shortcut is taken only when every sum is finite).
/// Needs `g ≤ KEEP` (the members' `ℓ̃` are read unchecked from `kept`).
#[inline(always)]
unsafe fn chunk_acc_n<const N: usize>(
    g: usize,
    kept: &[[__m512; KEEP]; N],
    g_f: __m512,
    cv: __m512,
    neg_c: __m512,
) -> [__m512; N] {
    let mut sum = [_mm512_setzero_ps(); N];
    for k in 0..g {
        for i in 0..N {
            sum[i] = _mm512_add_ps(sum[i], *kept[i].get_unchecked(k));
        }
    }
    let inf = _mm512_set1_ps(f32::INFINITY);
    let mut finite: __mmask16 = 0xFFFF;
    for s in &sum {
        finite &= _mm512_cmp_ps_mask::<_CMP_LT_OQ>(_mm512_abs_ps(*s), inf);
    }
    let mut acc = [_mm512_setzero_ps(); N];
    if finite != 0xFFFF {
        for i in 0..N {
            acc[i] = chunk_acc(g, |k| *kept[i].get_unchecked(k), g_f, cv, neg_c);
        }
        return acc;
    }
    let mut mean = [_mm512_setzero_ps(); N];
    for i in 0..N {
        mean[i] = _mm512_div_ps(sum[i], g_f);
    }
    for k in 0..g {
        for i in 0..N {
            let d = _mm512_min_ps(cv, _mm512_max_ps(neg_c, _mm512_sub_ps(mean[i], *kept[i].get_unchecked(k))));
            acc[i] = _mm512_add_ps(acc[i], term16(d));
        }
    }
    acc
}

/// `D` of one `(g, t)`: 16-column chunks, the last one (1..15 columns) under a mask.
///
/// # Safety
/// AVX-512 F/BW/DQ/VL (and AVX2/FMA) are available; every non-null member pointer is valid for
/// `vocab` elements.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
pub(crate) unsafe fn dispersion<T: LogitElem>(members: &[Member<T>], vocab: usize, neg_log_v: f32, c: f32) -> f32 {
    let g = members.len();
    let nlv = _mm512_set1_ps(neg_log_v);
    let gv = _mm512_set1_ps(g as f32);
    let (cv, neg_c) = (_mm512_set1_ps(c), _mm512_set1_ps(-c));
    let mut lanes_acc = _mm512_setzero_pd();
    let mut kept = [_mm512_setzero_ps(); KEEP];
    // The members' statistics, broadcast once per call instead of once per chunk.
    let (mut maxv, mut lsv) = ([_mm512_setzero_ps(); KEEP], [_mm512_setzero_ps(); KEEP]);
    for (k, m) in members.iter().take(KEEP).enumerate() {
        maxv[k] = _mm512_set1_ps(m.max);
        lsv[k] = _mm512_set1_ps(m.log_sum);
    }
    // `ℓ̃` of member `k` on the columns `v + i`, `i` in `mask` (`0` elsewhere, or `−log V`).
    let logp = |k: usize, v: usize, mask: __mmask16| -> __m512 {
        let m = members.get_unchecked(k);
        if m.ptr.is_null() {
            nlv
        } else {
            let x = load16(m.ptr.add(v), mask);
            let (mx, ls) = if g <= KEEP {
                (*maxv.get_unchecked(k), *lsv.get_unchecked(k))
            } else {
                (_mm512_set1_ps(m.max), _mm512_set1_ps(m.log_sum))
            };
            _mm512_sub_ps(_mm512_sub_ps(x, mx), ls)
        }
    };
    let chunk = |v: usize, mask: __mmask16, kept: &mut [__m512; KEEP]| -> __m512 {
        if g <= KEEP {
            // `k < g ≤ KEEP`, so the unchecked accesses stay inside the arrays.
            for k in 0..g {
                *kept.get_unchecked_mut(k) = logp(k, v, mask);
            }
            chunk_acc(g, |k| *kept.get_unchecked(k), gv, cv, neg_c)
        } else {
            chunk_acc(g, |k| logp(k, v, mask), gv, cv, neg_c)
        }
    };
    let full = vocab / 16 * 16;
    let mut v = 0;
    if g <= KEEP {
        let mut kept_n = [[_mm512_setzero_ps(); KEEP]; UNROLL];
        while v + 16 * UNROLL <= full {
            for k in 0..g {
                for (i, kept) in kept_n.iter_mut().enumerate() {
                    *kept.get_unchecked_mut(k) = logp(k, v + 16 * i, 0xFFFF);
                }
            }
            for acc in chunk_acc_n(g, &kept_n, gv, cv, neg_c) {
                lanes_acc = _mm512_add_pd(lanes_acc, _mm512_cvtps_pd(_mm512_castps512_ps256(acc)));
                lanes_acc = _mm512_add_pd(lanes_acc, _mm512_cvtps_pd(_mm512_extractf32x8_ps::<1>(acc)));
            }
            v += 16 * UNROLL;
        }
    }
    while v < full {
        let acc = chunk(v, 0xFFFF, &mut kept);
        lanes_acc = _mm512_add_pd(lanes_acc, _mm512_cvtps_pd(_mm512_castps512_ps256(acc)));
        lanes_acc = _mm512_add_pd(lanes_acc, _mm512_cvtps_pd(_mm512_extractf32x8_ps::<1>(acc)));
        v += 16;
    }
    let rest = vocab - full;
    if rest > 0 {
        let mask = ((1u32 << rest) - 1) as __mmask16;
        let acc = chunk(full, mask, &mut kept);
        let (lo, hi) = (mask as __mmask8, (mask >> 8) as __mmask8);
        lanes_acc = _mm512_mask_add_pd(lanes_acc, lo, lanes_acc, _mm512_cvtps_pd(_mm512_castps512_ps256(acc)));
        lanes_acc = _mm512_mask_add_pd(lanes_acc, hi, lanes_acc, _mm512_cvtps_pd(_mm512_extractf32x8_ps::<1>(acc)));
    }
    let mut lanes = [0.0f64; 8];
    _mm512_storeu_pd(lanes.as_mut_ptr(), lanes_acc);
    finish_lanes(lanes, g)
}
