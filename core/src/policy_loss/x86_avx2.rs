//! AVX2 + FMA policy loops.
//!
//! The hand-vectorised PPO + k3 loop ([`super::ppo_clip_kl_loss`] with a `K3` KL, and
//! [`super::ppo_clip_kl_step`]), 8 tokens per vector, 4 independent vectors per iteration (so that
//! the long `exp` dependency chains overlap).
//!
//! It performs the IEEE operations of `ppo_clip::token`, `kl::kl_token` with `kl::k3`, the
//! selects of `map_chunk_kl`, the lane sums of `LaneAcc`, `agg_loss` and `agg_chain_inplace`,
//! in the same order and without FMA, so its results are those of the portable loops (NaN
//! sign and payload aside; tested in `tests/policy_simd.rs`, and the vector `exp` here). Where it
//! takes a shorter route to the same bits, the reason is written next to it:
//!
//! * `clamp(d, lo, hi)` is `min(hi, max(lo, d))` (`maxps` returns its second operand when
//!   unordered, so NaN passes as in the scalar select), and "`lo ≤ d ≤ hi`" is "the clamp left
//!   `d` unchanged" (one compare instead of two);
//! * with a log-ratio clamp `C ≤ 87` (verl's is 20) and with k3's ±20 clamp, `exp`'s own
//!   argument clamp is the identity and its two-step scaling by `2^n` equals a one-step one;
//! * with k3's clamps the value `e^δ − δ − 1 > −1`, so its lower clamp at `−10` is the identity;
//! * fully masked blocks of 32 tokens (the padding after each response) are written as zeros
//!   without the arithmetic: their contributions to every sum are `+0.0`, to every count `0`,
//!   and an `f64` lane that starts at `+0.0` never holds `−0.0`, for which alone adding `+0.0`
//!   would not be the identity.
//!
//! The metric and loss sums stay in `f64` lanes (`cvtps2pd`; lane = flat index mod 8, the
//! portable order), the counts in `i32` lanes flushed to `u64` per row or block.
//!
//! The other policy loops are the portable Rust code compiled a second time with AVX2 and FMA
//! enabled (the thin wrappers at the end of this file): LLVM vectorises them 8 wide, with the
//! same IEEE operations in the same order (Rust never contracts `a·b + c` into an FMA).
//!
//! Every function here is `unsafe`: the caller guarantees AVX2 and FMA (the dispatch in
//! `policy_loss/mod.rs` checks the [`crate::Backend`] first).

use core::arch::x86_64::*;

use super::aggregation::{count_valid, Plan};
use super::kl::k3_bounds;
use super::metrics::{KlStats, LaneAcc, PolicyStats, LANES};
use super::ppo_clip::{bounded, specialize, tok1, FusedIns, KlTerm, Params};
use super::{BatchShape, LossOut, PolicyInputs};
use crate::exp::{CEPHES_C1, CEPHES_C2, CEPHES_P, EXP_FULL_MAX, EXP_FULL_MIN, LOG2E, ROUND_MAGIC};

#[inline(always)]
unsafe fn splat(x: f32) -> __m256 {
    _mm256_set1_ps(x)
}

/// `torch.clamp` / `ratio::clamp`: `d < lo ? lo : d > hi ? hi : d` (NaN passes), for
/// `lo < hi`. `maxps(a, b)` is `a > b ? a : b` (so `b` when unordered), `minps(a, b)` is
/// `a < b ? a : b`: `min(hi, max(lo, d))` is that select, NaN `d` included. (Equal values
/// are returned as `d`, the operand the scalar `clamp` returns.)
#[inline(always)]
unsafe fn clamp8(d: __m256, lo: __m256, hi: __m256) -> __m256 {
    _mm256_min_ps(hi, _mm256_max_ps(lo, d))
}

/// [`crate::exp`]'s `exp_full` on 8 lanes, operation for operation. `BOUNDED`: the caller
/// guarantees every non-NaN `x` is in `[−87, 87]`; then the argument clamp of `exp_full`
/// is the identity and its two-step scaling `(y·2^n1)·2^n2` (both steps exact, one rounding
/// at most) equals the one-step `y·2^n` with `2^n` a normal float: the same bits, fewer
/// operations.
#[inline(always)]
pub(super) unsafe fn exp8<const BOUNDED: bool>(x: __m256) -> __m256 {
    // `f32::clamp(-104, 89)`: `x < min → min`, then `> max → max`.
    let xc = if BOUNDED { x } else { clamp8(x, splat(EXP_FULL_MIN), splat(EXP_FULL_MAX)) };
    let magic = splat(ROUND_MAGIC);
    let t = _mm256_add_ps(_mm256_mul_ps(xc, splat(LOG2E)), magic);
    let n = _mm256_sub_ps(t, magic);
    let r = _mm256_sub_ps(_mm256_sub_ps(xc, _mm256_mul_ps(n, splat(CEPHES_C1))), _mm256_mul_ps(n, splat(CEPHES_C2)));
    let r2 = _mm256_mul_ps(r, r);
    let mut p = splat(CEPHES_P[0]);
    for &c in &CEPHES_P[1..] {
        p = _mm256_add_ps(_mm256_mul_ps(p, r), splat(c));
    }
    let y = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(p, r2), r), splat(1.0));
    if BOUNDED {
        // bits(t) = bits(magic) + n: `2^n` is `(bits(t) − bits(magic) + 127) << 23`.
        let bias = _mm256_set1_epi32(127i32.wrapping_sub(ROUND_MAGIC.to_bits() as i32));
        let s = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_castps_si256(t), bias)));
        return _mm256_mul_ps(y, s);
    }
    let ni = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(ROUND_MAGIC.to_bits() as i32));
    let n1 = _mm256_srai_epi32::<1>(ni);
    let n2 = _mm256_sub_epi32(ni, n1);
    let bias = _mm256_set1_epi32(127);
    let s1 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(n1, bias)));
    let s2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(n2, bias)));
    _mm256_mul_ps(_mm256_mul_ps(y, s1), s2)
}

/// The broadcast hyper-parameters.
#[derive(Clone, Copy)]
pub(super) struct Cfg8 {
    lo: __m256,
    hi: __m256,
    r_lo: __m256,
    r_hi: __m256,
    c: __m256,
    coef: __m256,
    dlo: __m256,
    dhi: __m256,
    klo: __m256,
    khi: __m256,
}

impl Cfg8 {
    #[inline(always)]
    pub(super) unsafe fn new(p: Params, coef: f32, clamps: bool) -> Cfg8 {
        let (dlo, dhi, klo, khi) = k3_bounds(clamps);
        Cfg8 {
            lo: splat(p.lo),
            hi: splat(p.hi),
            r_lo: splat(p.r_lo),
            r_hi: splat(p.r_hi),
            c: splat(p.c),
            coef: splat(coef),
            dlo: splat(dlo),
            dhi: splat(dhi),
            klo: splat(klo),
            khi: splat(khi),
        }
    }
}

/// One step's results: `ℓ`, `∂ℓ/∂logp` (0 where masked), the metric values (`−Δ̃`, `kl`;
/// 0 where masked) and the count masks (valid, upper, lower, dual clip).
struct Tok8 {
    l: __m256,
    g: __m256,
    ndt: __m256,
    kv: __m256,
    valid: __m256,
    high: __m256,
    low: __m256,
    dual: __m256,
}

/// [`token`] + [`kl_token`] with `k3` + the mask select of `map_chunk_kl`, on 8 tokens at
/// `i`.
#[inline(always)]
unsafe fn tok8<const W: bool, const BR: bool, const BK: bool>(ins: &FusedIns<'_>, i: usize, q: &Cfg8) -> Tok8 {
    let lp = _mm256_loadu_ps(ins.lp.as_ptr().add(i));
    let olp = _mm256_loadu_ps(ins.olp.as_ptr().add(i));
    let a = _mm256_loadu_ps(ins.adv.as_ptr().add(i));
    let rf = _mm256_loadu_ps(ins.rf.as_ptr().add(i));
    let m8 = _mm_loadl_epi64(ins.mask.as_ptr().add(i) as *const __m128i);
    let m32 = _mm256_cvtepu8_epi32(m8);
    let invalid = _mm256_castsi256_ps(_mm256_cmpeq_epi32(m32, _mm256_setzero_si256()));
    let sign = splat(-0.0);
    let zero = _mm256_setzero_ps();
    let nan = splat(f32::NAN);

    // PPO (`token`).
    let d = _mm256_sub_ps(lp, olp);
    let dt = clamp8(d, q.lo, q.hi);
    // `lo ≤ d ≤ hi` ⟺ the clamp left `d` unchanged (false for NaN).
    let in_range = _mm256_cmp_ps::<_CMP_EQ_OQ>(dt, d);
    let r = exp8::<BR>(dt);
    let na = _mm256_xor_ps(a, sign);
    let l1 = _mm256_mul_ps(na, r);
    let l2 = _mm256_mul_ps(na, clamp8(r, q.r_lo, q.r_hi));
    let clipped = _mm256_cmp_ps::<_CMP_GT_OQ>(l2, l1);
    let lc = _mm256_blendv_ps(l1, l2, clipped);
    let l3 = _mm256_mul_ps(na, q.c);
    let neg = _mm256_cmp_ps::<_CMP_LT_OQ>(a, zero);
    let pos = _mm256_cmp_ps::<_CMP_GT_OQ>(a, zero);
    let dual = _mm256_and_ps(neg, _mm256_cmp_ps::<_CMP_GT_OQ>(lc, l3));
    let mut l = _mm256_blendv_ps(lc, l3, dual);
    let k_pos = _mm256_and_ps(pos, _mm256_cmp_ps::<_CMP_LE_OQ>(r, q.r_hi));
    let k_neg =
        _mm256_and_ps(_mm256_and_ps(neg, _mm256_cmp_ps::<_CMP_GE_OQ>(r, q.r_lo)), _mm256_cmp_ps::<_CMP_LE_OQ>(r, q.c));
    let kappa = _mm256_and_ps(in_range, _mm256_or_ps(k_pos, k_neg));
    let mut g = _mm256_and_ps(kappa, l1);
    // `a = 0 → 0`: `a ≠ 0` is `a > 0 ∨ a < 0` but for a NaN `a`, whose `ℓ` is NaN below.
    l = _mm256_and_ps(_mm256_or_ps(pos, neg), l);
    // `dt` or `a` NaN, in one unordered compare.
    let is_nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(dt, a);
    g = _mm256_blendv_ps(g, nan, is_nan);
    l = _mm256_blendv_ps(l, nan, is_nan);
    if W {
        let w = _mm256_loadu_ps(ins.w.as_ptr().add(i));
        l = _mm256_mul_ps(l, w);
        g = _mm256_mul_ps(g, w);
    }
    let ndt = _mm256_xor_ps(dt, sign);

    // k3 (`kl_token`, `kl::k3`).
    let dk = _mm256_sub_ps(lp, rf);
    let nd = _mm256_xor_ps(dk, sign);
    let delta = clamp8(nd, q.dlo, q.dhi);
    let e = exp8::<BK>(delta);
    let k = _mm256_sub_ps(_mm256_sub_ps(e, delta), splat(1.0));
    // With verl's clamps `k > −1 > −10` whenever it is not NaN (`e ≥ 0`, `δ ≤ 20`), so the
    // lower clamp is the identity and only `min(10, k)` remains.
    let kc = if BK { _mm256_min_ps(q.khi, k) } else { clamp8(k, q.klo, q.khi) };
    // Both clamps left their argument unchanged (false for NaN, as the comparisons).
    let pass = _mm256_and_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(delta, nd), _mm256_cmp_ps::<_CMP_EQ_OQ>(kc, k));
    let kg = _mm256_and_ps(pass, _mm256_sub_ps(splat(1.0), e));
    let nan_k = _mm256_cmp_ps::<_CMP_UNORD_Q>(dk, dk);
    let kv = _mm256_blendv_ps(kc, nan, nan_k);
    let kg = _mm256_blendv_ps(kg, nan, nan_k);

    // `map_chunk_kl`'s selects.
    let lt = _mm256_add_ps(l, _mm256_mul_ps(q.coef, kv));
    let gt = _mm256_add_ps(g, _mm256_mul_ps(q.coef, kg));
    Tok8 {
        l: _mm256_andnot_ps(invalid, lt),
        g: _mm256_andnot_ps(invalid, gt),
        ndt: _mm256_andnot_ps(invalid, ndt),
        kv: _mm256_andnot_ps(invalid, kv),
        valid: _mm256_andnot_ps(invalid, _mm256_castsi256_ps(_mm256_set1_epi32(-1))),
        high: _mm256_andnot_ps(invalid, _mm256_and_ps(clipped, pos)),
        low: _mm256_andnot_ps(invalid, _mm256_and_ps(clipped, neg)),
        dual: _mm256_andnot_ps(invalid, dual),
    }
}

/// `f64` lanes (lane `k` = indices `≡ k mod 8`) of a sum.
#[derive(Clone, Copy)]
struct Sum8([__m256d; 2]);

impl Sum8 {
    #[inline(always)]
    unsafe fn zero() -> Sum8 {
        Sum8([_mm256_setzero_pd(); 2])
    }

    #[inline(always)]
    unsafe fn add(&mut self, x: __m256) {
        self.0[0] = _mm256_add_pd(self.0[0], _mm256_cvtps_pd(_mm256_castps256_ps128(x)));
        self.0[1] = _mm256_add_pd(self.0[1], _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(x)));
    }

    #[inline(always)]
    unsafe fn lanes(self) -> [f64; LANES] {
        let mut out = [0.0; LANES];
        _mm256_storeu_pd(out.as_mut_ptr(), self.0[0]);
        _mm256_storeu_pd(out.as_mut_ptr().add(4), self.0[1]);
        out
    }
}

/// Counts in `i32` lanes (flushed into `u64` totals before they can overflow).
#[derive(Clone, Copy)]
struct Counts8 {
    lanes: [__m256i; 4],
    total: [u64; 4],
}

impl Counts8 {
    #[inline(always)]
    unsafe fn zero() -> Counts8 {
        Counts8 { lanes: [_mm256_setzero_si256(); 4], total: [0; 4] }
    }

    #[inline(always)]
    unsafe fn add(&mut self, t: &Tok8) {
        for (c, m) in self.lanes.iter_mut().zip([t.valid, t.high, t.low, t.dual]) {
            *c = _mm256_sub_epi32(*c, _mm256_castps_si256(m));
        }
    }

    #[inline(always)]
    unsafe fn flush(&mut self) {
        for (c, tot) in self.lanes.iter_mut().zip(self.total.iter_mut()) {
            let mut v = [0u32; 8];
            _mm256_storeu_si256(v.as_mut_ptr() as *mut __m256i, *c);
            *tot += v.iter().map(|&x| x as u64).sum::<u64>();
            *c = _mm256_setzero_si256();
        }
    }
}

/// The metric accumulators of a whole call.
pub(super) struct Acc {
    ndt: Sum8,
    kl: Sum8,
    counts: Counts8,
}

impl Acc {
    #[inline(always)]
    unsafe fn new() -> Acc {
        Acc { ndt: Sum8::zero(), kl: Sum8::zero(), counts: Counts8::zero() }
    }

    #[inline(always)]
    unsafe fn add(&mut self, t: &Tok8) {
        self.ndt.add(t.ndt);
        self.kl.add(t.kv);
        self.counts.add(t);
    }

    /// The lane accumulators of the portable loop (the counts all in lane 0: only their
    /// totals matter), with the scalar tail `tail` (`(lane, −Δ̃, kl)` of valid tokens).
    unsafe fn finish(mut self, tail: &[(usize, f32, f32)], tail_counts: [u64; 4]) -> (PolicyStats, KlStats) {
        self.counts.flush();
        let (mut ndt, mut kl) = (self.ndt.lanes(), self.kl.lanes());
        for &(k, x, v) in tail {
            ndt[k] += x as f64;
            kl[k] += v as f64;
        }
        let mut c = self.counts.total;
        for (ci, t) in c.iter_mut().zip(tail_counts) {
            *ci += t;
        }
        let lane0 = |x: u64| {
            let mut a = [0u64; LANES];
            a[0] = x;
            a
        };
        let acc = LaneAcc { valid: lane0(c[0]), high: lane0(c[1]), low: lane0(c[2]), dual: lane0(c[3]), sum: ndt };
        let acc_kl = LaneAcc { sum: kl, ..acc };
        (acc.into_stats(), acc_kl.into_kl())
    }
}

/// Whether the 16 tokens at `i` are all masked: their outputs are then `0`, and their
/// contributions to every sum `+0.0` and to every count `0`, which change nothing (an `f64`
/// lane starts at `+0.0` and so never holds `−0.0`, for which adding `+0.0` is the
/// identity); the loops write the zeros and skip the arithmetic — the padding after each
/// response.
#[inline(always)]
unsafe fn all_masked16(mask: &[u8], i: usize) -> bool {
    let m = _mm_loadu_si128(mask.as_ptr().add(i) as *const __m128i);
    _mm_testz_si128(m, m) == 1
}

/// Zeros 16 outputs of both arrays at `i`.
#[inline(always)]
unsafe fn zero16(a: &mut [f32], b: &mut [f32], i: usize) {
    let z = _mm256_setzero_ps();
    for o in [a, b] {
        _mm256_storeu_ps(o.as_mut_ptr().add(i), z);
        _mm256_storeu_ps(o.as_mut_ptr().add(i + 8), z);
    }
}

/// Runs `$finish!(i, tok8(i))` over the groups of 8 tokens in `[$lo, $hi)` (a multiple of
/// 8 long), four groups per iteration so that their `exp` chains overlap; a run of 32
/// padding tokens gets its zeros in `$a` and `$b` written directly ([`all_masked16`]).
/// Expands inside a function generic over `W, BR, BK`. (A macro, not a closure: a closure
/// would not inherit the target features.)
macro_rules! groups_of_8 {
    ($ins:expr, $q:expr, $lo:expr, $hi:expr, $a:expr, $b:expr, $finish:ident) => {{
        let (lo, hi) = ($lo, $hi);
        let quads = hi - (hi - lo) % 32;
        for i in (lo..quads).step_by(32) {
            if all_masked16($ins.mask, i) && all_masked16($ins.mask, i + 16) {
                zero16($a, $b, i);
                zero16($a, $b, i + 16);
                continue;
            }
            let t0 = tok8::<W, BR, BK>($ins, i, $q);
            let t1 = tok8::<W, BR, BK>($ins, i + 8, $q);
            let t2 = tok8::<W, BR, BK>($ins, i + 16, $q);
            let t3 = tok8::<W, BR, BK>($ins, i + 24, $q);
            $finish!(i, t0);
            $finish!(i + 8, t1);
            $finish!(i + 16, t2);
            $finish!(i + 24, t3);
        }
        for i in (quads..hi).step_by(8) {
            $finish!(i, tok8::<W, BR, BK>($ins, i, $q));
        }
    }};
}

/// [`super::ppo_clip_kl_loss`] with a `K3` KL, over the flat index.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn fused_flat(
    ins: &FusedIns<'_>,
    p: Params,
    coef: f32,
    clamps: bool,
    loss: &mut [f32],
    grad: &mut [f32],
) -> (PolicyStats, KlStats) {
    flat_any(ins, p, coef, clamps, loss, grad)
}

#[inline(always)]
unsafe fn flat_any(
    ins: &FusedIns<'_>,
    p: Params,
    coef: f32,
    clamps: bool,
    loss: &mut [f32],
    grad: &mut [f32],
) -> (PolicyStats, KlStats) {
    specialize!(flat_w(ins, p, coef, clamps, loss, grad) for ins, p, clamps)
}

#[inline(always)]
unsafe fn flat_w<const W: bool, const BR: bool, const BK: bool>(
    ins: &FusedIns<'_>,
    p: Params,
    coef: f32,
    clamps: bool,
    loss: &mut [f32],
    grad: &mut [f32],
) -> (PolicyStats, KlStats) {
    let n = ins.lp.len();
    let q = Cfg8::new(p, coef, clamps);
    let mut acc = Acc::new();
    let full = n - n % 8;
    macro_rules! one {
        ($i:expr, $t:expr) => {{
            let (i, t): (usize, Tok8) = ($i, $t);
            _mm256_storeu_ps(loss.as_mut_ptr().add(i), t.l);
            _mm256_storeu_ps(grad.as_mut_ptr().add(i), t.g);
            acc.add(&t);
        }};
    }
    // Blocks of 2^20 tokens keep the `i32` counts far from overflow.
    for o in (0..full).step_by(1 << 20) {
        let e = (o + (1 << 20)).min(full);
        groups_of_8!(ins, &q, o, e, loss, grad, one);
        acc.counts.flush();
    }
    let mut tail = [(0usize, 0.0f32, 0.0f32); 8];
    let mut tc = [0u64; 4];
    for (j, i) in (full..n).enumerate() {
        let (l, g, ndt, kv, f) = tok1(ins, i, p, coef, clamps);
        loss[i] = l;
        grad[i] = g;
        tail[j] = (i % LANES, ndt, kv);
        for (c, b) in tc.iter_mut().zip(f) {
            *c += b as u64;
        }
    }
    acc.finish(&tail[..n - full], tc)
}

/// [`super::ppo_clip_kl_step`] with a `K3` KL, row by row (`cols` a multiple of 8, so that
/// lane = column mod 8 = flat index mod 8): writes `ℓ` and `g_logp`, returns `L`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn fused_step(
    ins: &FusedIns<'_>,
    cols: usize,
    p: Params,
    coef: f32,
    clamps: bool,
    plan: &Plan,
    loss: &mut [f32],
    g_logp: &mut [f32],
) -> (f32, PolicyStats, KlStats) {
    step_any(ins, cols, p, coef, clamps, plan, loss, g_logp)
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn step_any(
    ins: &FusedIns<'_>,
    cols: usize,
    p: Params,
    coef: f32,
    clamps: bool,
    plan: &Plan,
    loss: &mut [f32],
    g_logp: &mut [f32],
) -> (f32, PolicyStats, KlStats) {
    specialize!(step_w(ins, cols, p, coef, clamps, plan, loss, g_logp) for ins, p, clamps)
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn step_w<const W: bool, const BR: bool, const BK: bool>(
    ins: &FusedIns<'_>,
    cols: usize,
    p: Params,
    coef: f32,
    clamps: bool,
    plan: &Plan,
    loss: &mut [f32],
    g_logp: &mut [f32],
) -> (f32, PolicyStats, KlStats) {
    debug_assert!(cols.is_multiple_of(8) && cols > 0);
    let n = ins.lp.len();
    let q = Cfg8::new(p, coef, clamps);
    let mut acc = Acc::new();
    let mut total = 0.0f64;
    for o in (0..n).step_by(cols) {
        // The row weight exactly as `agg_chain_inplace`, the row sum as `agg_loss`.
        let len = if plan.per_row_mean { count_valid(&ins.mask[o..o + cols]) } else { 0 };
        let k = if plan.per_row_mean && len > 0 { plan.k / len as f64 } else { plan.k } as f32;
        let kv8 = splat(k);
        let k_on = if k != 0.0 { _mm256_castsi256_ps(_mm256_set1_epi32(-1)) } else { _mm256_setzero_ps() };
        let mut row = Sum8::zero();
        // (A macro, not a closure: a closure would not inherit the target features.)
        macro_rules! finish {
            ($i:expr, $t:expr) => {{
                let (i, t): (usize, Tok8) = ($i, $t);
                _mm256_storeu_ps(loss.as_mut_ptr().add(i), t.l);
                row.add(t.l);
                // `agg_chain_inplace`: `m ≠ 0 ∧ k ≠ 0 ? k·(0 + 1·d) : 0` (`1·d` is `d`).
                let x = _mm256_add_ps(_mm256_setzero_ps(), t.g);
                let on = _mm256_and_ps(t.valid, k_on);
                _mm256_storeu_ps(g_logp.as_mut_ptr().add(i), _mm256_and_ps(on, _mm256_mul_ps(kv8, x)));
                acc.add(&t);
            }};
        }
        groups_of_8!(ins, &q, o, o + cols, loss, g_logp, finish);
        acc.counts.flush();
        let mut sum = 0.0f64;
        for s in row.lanes() {
            sum += s;
        }
        if plan.per_row_mean {
            total += if len > 0 { sum / len as f64 } else { 0.0 };
        } else {
            total += sum;
        }
    }
    let l = if plan.k == 0.0 { 0.0 } else { (total * plan.k) as f32 };
    let (ps, ks) = acc.finish(&[], [0; 4]);
    (l, ps, ks)
}

// ---------------------------------------------------------------------------------------
// The portable loops, compiled with AVX2 and FMA enabled.
// ---------------------------------------------------------------------------------------

/// [`super::ppo_clip::drive`] compiled for AVX2.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn ppo_drive(inp: &PolicyInputs<'_>, p: Params, out: LossOut<'_>) -> LaneAcc {
    super::ppo_clip::drive(inp, p, out)
}

/// [`super::ppo_clip::drive_kl`] compiled for AVX2.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn ppo_kl_drive<F: Fn(f32) -> (f32, f32)>(
    inp: &PolicyInputs<'_>,
    p: Params,
    kl: &KlTerm<'_>,
    f: &F,
    out: LossOut<'_>,
) -> (LaneAcc, LaneAcc) {
    super::ppo_clip::drive_kl(inp, p, kl, f, out)
}

/// [`super::kl::run_body`] compiled for AVX2.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn kl_run(io: (&[f32], &[f32], &[u8], LossOut<'_>), f: impl Fn(f32) -> (f32, f32)) -> KlStats {
    super::kl::run_body(io, f)
}

/// [`super::aggregation::local_counts_body`] compiled for AVX2.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn local_counts(mask: &[u8], shape: BatchShape) -> (u64, u64) {
    super::aggregation::local_counts_body(mask, shape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exp::exp_full;
    use crate::Backend;

    /// `exp8` gives `exp_full`'s bits: everywhere unbounded, on `[−87, 87]` bounded.
    #[test]
    fn exp8_matches_exp_full_bitwise() {
        if Backend::avx2_fma().is_none() {
            crate::platform::report_skip("policy_loss::x86_avx2 exp8", "AVX2+FMA");
            return;
        }
        let xs = crate::exp::full_range_probe();
        #[target_feature(enable = "avx2,fma")]
        unsafe fn run8<const B: bool>(x: &[f32], out: &mut [f32]) {
            for (c, o) in x.chunks_exact(8).zip(out.chunks_exact_mut(8)) {
                _mm256_storeu_ps(o.as_mut_ptr(), exp8::<B>(_mm256_loadu_ps(c.as_ptr())));
            }
        }
        let canon = |x: f32| if x.is_nan() { f32::NAN.to_bits() } else { x.to_bits() };
        let want: Vec<u32> = xs.iter().map(|&x| canon(exp_full(x))).collect();
        let mut got = vec![0.0f32; xs.len()];
        unsafe { run8::<false>(&xs, &mut got) };
        assert_eq!(got.iter().map(|&x| canon(x)).collect::<Vec<_>>(), want);
        unsafe { run8::<true>(&xs, &mut got) };
        for (i, &x) in xs.iter().enumerate() {
            if x.is_nan() || x.abs() <= 87.0 {
                assert_eq!(canon(got[i]), want[i], "exp8::<true>({x})");
            }
        }
    }
}
