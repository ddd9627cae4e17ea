//! The AVX2 + FMA + F16C path of TW-GRPO's dispersion `D`: the operation order of
//! `tw_grpo.rs` (`column_acc`, `delta`, `dispersion_term`) with 8 columns in one register,
//! line by line, so both give the same bits (tested in `core/tests/seed_tw_grpo.rs`).
//!
//! Callers must have checked `Backend::Avx2Fma.is_supported()` (the dispatch in `tw_grpo.rs`
//! does).

use core::arch::x86_64::*;

use super::tw_grpo::{column_acc, finish_lanes, Member};
use crate::elem::LogitElem;
use crate::exp::{EXP_BIAS_FIX, LN2, LOG2E, Q0, Q1, Q2, Q3, Q4, ROUND_MAGIC};
use crate::logits::x86_avx2::Load8;

/// `ℓ̃` of a member on 8 columns from `v`.
#[inline(always)]
unsafe fn member_logp8<T: Load8>(m: &Member<T>, v: usize, neg_log_v: __m256) -> __m256 {
    if m.ptr.is_null() {
        neg_log_v
    } else {
        let x = T::load8(m.ptr.add(v));
        _mm256_sub_ps(_mm256_sub_ps(x, _mm256_set1_ps(m.max)), _mm256_set1_ps(m.log_sum))
    }
}

/// `tw_grpo::delta` on 8 lanes.
#[inline(always)]
unsafe fn delta8(mean: __m256, l: __m256, lmax: __m256, c: __m256, neg_c: __m256) -> __m256 {
    let ninf = _mm256_set1_ps(f32::NEG_INFINITY);
    let d = _mm256_sub_ps(mean, l);
    // max_ps(a, b) = a > b ? a : b and min_ps(a, b) = a < b ? a : b: NaN d passes, as portable.
    let d = _mm256_min_ps(c, _mm256_max_ps(neg_c, d));
    let l_inf = _mm256_cmp_ps::<_CMP_EQ_OQ>(l, ninf);
    let all_inf = _mm256_cmp_ps::<_CMP_EQ_OQ>(lmax, ninf);
    let special = _mm256_blendv_ps(c, _mm256_setzero_ps(), all_inf);
    _mm256_blendv_ps(d, special, l_inf)
}

/// `tw_grpo::dispersion_term` on 8 lanes.
#[inline(always)]
unsafe fn term8(d: __m256) -> __m256 {
    let magic = _mm256_set1_ps(ROUND_MAGIC);
    let one = _mm256_set1_ps(1.0);
    let t = _mm256_fmadd_ps(d, _mm256_set1_ps(LOG2E), magic);
    let n = _mm256_sub_ps(t, magic);
    let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2), d);
    let mut p = _mm256_fmadd_ps(_mm256_set1_ps(Q4), r, _mm256_set1_ps(Q3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(Q2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(Q1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(Q0));
    let r2p = _mm256_mul_ps(_mm256_mul_ps(r, r), p);
    let biased = _mm256_add_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(EXP_BIAS_FIX as i32));
    let scale = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(biased));
    let linear = _mm256_fmsub_ps(scale, _mm256_add_ps(one, r), _mm256_add_ps(one, d));
    _mm256_fmadd_ps(scale, r2p, linear)
}

/// Members whose 8-column `ℓ̃` are kept in registers/stack between the two passes over a chunk;
/// larger groups reload them (same values either way).
const KEEP: usize = 16;

/// One 8-column chunk: `Σ_k term(δ_k)` per lane, as `tw_grpo::column_acc` per column. `logp(k)`
/// gives member `k`'s `ℓ̃`.
#[inline(always)]
unsafe fn chunk_acc(g: usize, logp: impl Fn(usize) -> __m256, g_f: __m256, cv: __m256, neg_c: __m256) -> __m256 {
    let ninf = _mm256_set1_ps(f32::NEG_INFINITY);
    let mut sum = _mm256_setzero_ps();
    for k in 0..g {
        sum = _mm256_add_ps(sum, logp(k));
    }
    let mean = _mm256_div_ps(sum, g_f);
    let mut acc = _mm256_setzero_ps();
    // A finite sum in every lane means no member has `ℓ̃ = ±inf` or NaN there, so `delta` is the
    // plain clamp; otherwise the general form (which handles `−inf` and passes NaN).
    let abs_sum = _mm256_andnot_ps(_mm256_set1_ps(-0.0), sum);
    if _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(abs_sum, _mm256_set1_ps(f32::INFINITY))) == 0xFF {
        for k in 0..g {
            let d = _mm256_min_ps(cv, _mm256_max_ps(neg_c, _mm256_sub_ps(mean, logp(k))));
            acc = _mm256_add_ps(acc, term8(d));
        }
    } else {
        let mut lmax = ninf;
        for k in 0..g {
            lmax = _mm256_max_ps(logp(k), lmax);
        }
        for k in 0..g {
            acc = _mm256_add_ps(acc, term8(delta8(mean, logp(k), lmax, cv, neg_c)));
        }
    }
    acc
}

/// `D` of one `(g, t)`: full 8-column chunks here, the tail through the portable
/// `column_acc` into the same lanes (the tail columns are the last of their lanes in the
/// portable order too).
///
/// # Safety
/// AVX2+FMA+F16C are available; every non-null member pointer is valid for `vocab` elements.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dispersion<T: Load8 + LogitElem>(
    members: &[Member<T>],
    vocab: usize,
    neg_log_v: f32,
    c: f32,
) -> f32 {
    let g = members.len();
    let full = vocab / 8 * 8;
    let nlv = _mm256_set1_ps(neg_log_v);
    let gv = _mm256_set1_ps(g as f32);
    let (cv, neg_c) = (_mm256_set1_ps(c), _mm256_set1_ps(-c));
    let mut acc_lo = _mm256_setzero_pd();
    let mut acc_hi = _mm256_setzero_pd();
    let mut kept = [_mm256_setzero_ps(); KEEP];
    // The members' statistics, broadcast once per call instead of once per chunk.
    let (mut maxv, mut lsv) = ([_mm256_setzero_ps(); KEEP], [_mm256_setzero_ps(); KEEP]);
    for (k, m) in members.iter().take(KEEP).enumerate() {
        maxv[k] = _mm256_set1_ps(m.max);
        lsv[k] = _mm256_set1_ps(m.log_sum);
    }
    let mut v = 0;
    while v < full {
        let acc = if g <= KEEP {
            // `k < g ≤ KEEP` below, so the unchecked accesses stay inside the arrays (a bounds
            // check per element and pass costs more than the subtraction it guards).
            for (k, m) in members.iter().enumerate() {
                *kept.get_unchecked_mut(k) = if m.ptr.is_null() {
                    nlv
                } else {
                    _mm256_sub_ps(_mm256_sub_ps(T::load8(m.ptr.add(v)), *maxv.get_unchecked(k)), *lsv.get_unchecked(k))
                };
            }
            chunk_acc(g, |k| *kept.get_unchecked(k), gv, cv, neg_c)
        } else {
            chunk_acc(g, |k| member_logp8(members.get_unchecked(k), v, nlv), gv, cv, neg_c)
        };
        acc_lo = _mm256_add_pd(acc_lo, _mm256_cvtps_pd(_mm256_castps256_ps128(acc)));
        acc_hi = _mm256_add_pd(acc_hi, _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(acc)));
        v += 8;
    }
    let mut lanes = [0.0f64; 8];
    _mm256_storeu_pd(lanes.as_mut_ptr(), acc_lo);
    _mm256_storeu_pd(lanes.as_mut_ptr().add(4), acc_hi);
    for v in full..vocab {
        lanes[v % 8] += column_acc(members, v, neg_log_v, c) as f64;
    }
    finish_lanes(lanes, g)
}
