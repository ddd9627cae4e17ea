//! AVX-512 (F, BW, DQ, VL) policy loops.
//!
//! The hand-vectorised PPO + k3 loop of `x86_avx2.rs` ([`super::ppo_clip_kl_loss`] with a
//! `K3` KL, and [`super::ppo_clip_kl_step`]) on 16 tokens per vector, 4 independent vectors
//! per iteration. It is a transcription of the AVX2 loop, which documents every shortcut it
//! takes to the portable loop's bits; what differs is only the register width:
//!
//! * comparisons give mask registers (`__mmask16`), selects are `vblendmps` and zero-masking
//!   moves instead of `blendv`/`and` (the same values: `+0.0` where a lane is off);
//! * the last partial vector of a row or of the array is loaded and stored under a mask
//!   (lanes past the end read as `0`, are never written, and count nowhere), so there is no
//!   scalar tail;
//! * the `f64` metric and loss sums keep the portable lanes (lane `k` = flat index `≡ k mod 8`):
//!   one `__m512d` takes the low 8 tokens of a vector, then the high 8, so every lane still
//!   adds its tokens in index order (a vector starts at an index `≡ 0 mod 8`);
//! * the counts are `popcnt`s of the masks, straight into `u64` totals;
//! * the all-padding skip works on 64 tokens (one `vptestmb`).
//!
//! The other policy loops are the portable Rust code compiled a third time with AVX-512
//! enabled (the thin wrappers at the end of this file).
//!
//! Every function here is `unsafe`: the caller guarantees the AVX-512 backend's features
//! (the dispatch in `policy_loss/mod.rs` checks the [`crate::Backend`] first).

use core::arch::x86_64::*;

use super::aggregation::{count_valid, Plan};
use super::kl::k3_bounds;
use super::metrics::{KlStats, LaneAcc, PolicyStats, LANES};
use super::ppo_clip::{bounded, specialize, FusedIns, KlTerm, Params};
use super::{BatchShape, LossOut, PolicyInputs};
use crate::exp::{CEPHES_C1, CEPHES_C2, CEPHES_P, EXP_FULL_MAX, EXP_FULL_MIN, LOG2E, ROUND_MAGIC};

/// Every lane of a vector.
const ALL: __mmask16 = 0xFFFF;

#[inline(always)]
unsafe fn splat(x: f32) -> __m512 {
    _mm512_set1_ps(x)
}

/// `torch.clamp` on 16 lanes: `min(hi, max(lo, d))`, the select of `x86_avx2::clamp8`
/// (`vmaxps`/`vminps` return their second operand when unordered, so NaN passes).
#[inline(always)]
unsafe fn clamp16(d: __m512, lo: __m512, hi: __m512) -> __m512 {
    _mm512_min_ps(hi, _mm512_max_ps(lo, d))
}

/// `x86_avx2::exp8` on 16 lanes ([`crate::exp`]'s `exp_full`, operation for operation;
/// `BOUNDED` as there).
#[inline(always)]
pub(super) unsafe fn exp16<const BOUNDED: bool>(x: __m512) -> __m512 {
    let xc = if BOUNDED { x } else { clamp16(x, splat(EXP_FULL_MIN), splat(EXP_FULL_MAX)) };
    let magic = splat(ROUND_MAGIC);
    let t = _mm512_add_ps(_mm512_mul_ps(xc, splat(LOG2E)), magic);
    let n = _mm512_sub_ps(t, magic);
    let r = _mm512_sub_ps(_mm512_sub_ps(xc, _mm512_mul_ps(n, splat(CEPHES_C1))), _mm512_mul_ps(n, splat(CEPHES_C2)));
    let r2 = _mm512_mul_ps(r, r);
    let mut p = splat(CEPHES_P[0]);
    for &c in &CEPHES_P[1..] {
        p = _mm512_add_ps(_mm512_mul_ps(p, r), splat(c));
    }
    let y = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(p, r2), r), splat(1.0));
    if BOUNDED {
        let bias = _mm512_set1_epi32(127i32.wrapping_sub(ROUND_MAGIC.to_bits() as i32));
        let s = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(_mm512_castps_si512(t), bias)));
        return _mm512_mul_ps(y, s);
    }
    let ni = _mm512_sub_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(ROUND_MAGIC.to_bits() as i32));
    let n1 = _mm512_srai_epi32::<1>(ni);
    let n2 = _mm512_sub_epi32(ni, n1);
    let bias = _mm512_set1_epi32(127);
    let s1 = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(n1, bias)));
    let s2 = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(n2, bias)));
    _mm512_mul_ps(_mm512_mul_ps(y, s1), s2)
}

/// The broadcast hyper-parameters.
#[derive(Clone, Copy)]
struct Cfg16 {
    lo: __m512,
    hi: __m512,
    r_lo: __m512,
    r_hi: __m512,
    c: __m512,
    coef: __m512,
    dlo: __m512,
    dhi: __m512,
    klo: __m512,
    khi: __m512,
}

impl Cfg16 {
    #[inline(always)]
    unsafe fn new(p: Params, coef: f32, clamps: bool) -> Cfg16 {
        let (dlo, dhi, klo, khi) = k3_bounds(clamps);
        Cfg16 {
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

/// One step's results: `ℓ`, `∂ℓ/∂logp`, `−Δ̃`, `kl` (0 where masked) and the count masks.
struct Tok16 {
    l: __m512,
    g: __m512,
    ndt: __m512,
    kv: __m512,
    valid: __mmask16,
    high: __mmask16,
    low: __mmask16,
    dual: __mmask16,
}

/// `x86_avx2::tok8` on the 16 tokens at `i` of which `live` are in the array.
#[inline(always)]
unsafe fn tok16<const W: bool, const BR: bool, const BK: bool>(
    ins: &FusedIns<'_>,
    i: usize,
    q: &Cfg16,
    live: __mmask16,
) -> Tok16 {
    let lp = _mm512_maskz_loadu_ps(live, ins.lp.as_ptr().add(i));
    let olp = _mm512_maskz_loadu_ps(live, ins.olp.as_ptr().add(i));
    let a = _mm512_maskz_loadu_ps(live, ins.adv.as_ptr().add(i));
    let rf = _mm512_maskz_loadu_ps(live, ins.rf.as_ptr().add(i));
    let m8 = _mm_maskz_loadu_epi8(live, ins.mask.as_ptr().add(i) as *const i8);
    let valid = _mm_test_epi8_mask(m8, m8);
    let sign = splat(-0.0);
    let nan = splat(f32::NAN);

    // PPO (`token`).
    let d = _mm512_sub_ps(lp, olp);
    let dt = clamp16(d, q.lo, q.hi);
    let in_range = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(dt, d);
    let r = exp16::<BR>(dt);
    let na = _mm512_xor_ps(a, sign);
    let l1 = _mm512_mul_ps(na, r);
    let l2 = _mm512_mul_ps(na, clamp16(r, q.r_lo, q.r_hi));
    let clipped = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(l2, l1);
    let lc = _mm512_mask_blend_ps(clipped, l1, l2);
    let l3 = _mm512_mul_ps(na, q.c);
    let neg = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, _mm512_setzero_ps());
    let pos = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(a, _mm512_setzero_ps());
    let dual = neg & _mm512_cmp_ps_mask::<_CMP_GT_OQ>(lc, l3);
    let mut l = _mm512_mask_blend_ps(dual, lc, l3);
    let k_pos = pos & _mm512_cmp_ps_mask::<_CMP_LE_OQ>(r, q.r_hi);
    let k_neg = neg & _mm512_cmp_ps_mask::<_CMP_GE_OQ>(r, q.r_lo) & _mm512_cmp_ps_mask::<_CMP_LE_OQ>(r, q.c);
    let mut g = _mm512_maskz_mov_ps(in_range & (k_pos | k_neg), l1);
    l = _mm512_maskz_mov_ps(pos | neg, l);
    let is_nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(dt, a);
    g = _mm512_mask_blend_ps(is_nan, g, nan);
    l = _mm512_mask_blend_ps(is_nan, l, nan);
    if W {
        let w = _mm512_maskz_loadu_ps(live, ins.w.as_ptr().add(i));
        l = _mm512_mul_ps(l, w);
        g = _mm512_mul_ps(g, w);
    }
    let ndt = _mm512_xor_ps(dt, sign);

    // k3 (`kl_token`, `kl::k3`).
    let dk = _mm512_sub_ps(lp, rf);
    let nd = _mm512_xor_ps(dk, sign);
    let delta = clamp16(nd, q.dlo, q.dhi);
    let e = exp16::<BK>(delta);
    let k = _mm512_sub_ps(_mm512_sub_ps(e, delta), splat(1.0));
    let kc = if BK { _mm512_min_ps(q.khi, k) } else { clamp16(k, q.klo, q.khi) };
    let pass = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(delta, nd) & _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(kc, k);
    let kg = _mm512_maskz_mov_ps(pass, _mm512_sub_ps(splat(1.0), e));
    let nan_k = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(dk, dk);
    let kv = _mm512_mask_blend_ps(nan_k, kc, nan);
    let kg = _mm512_mask_blend_ps(nan_k, kg, nan);

    // `map_chunk_kl`'s selects.
    let lt = _mm512_add_ps(l, _mm512_mul_ps(q.coef, kv));
    let gt = _mm512_add_ps(g, _mm512_mul_ps(q.coef, kg));
    Tok16 {
        l: _mm512_maskz_mov_ps(valid, lt),
        g: _mm512_maskz_mov_ps(valid, gt),
        ndt: _mm512_maskz_mov_ps(valid, ndt),
        kv: _mm512_maskz_mov_ps(valid, kv),
        valid,
        high: valid & clipped & pos,
        low: valid & clipped & neg,
        dual: valid & dual,
    }
}

/// `f64` lanes (lane `k` = indices `≡ k mod 8`) of a sum.
#[derive(Clone, Copy)]
struct Sum8x64(__m512d);

impl Sum8x64 {
    #[inline(always)]
    unsafe fn zero() -> Sum8x64 {
        Sum8x64(_mm512_setzero_pd())
    }

    /// Adds the 16 values of `x` (tokens `i..i + 16`, `i ≡ 0 mod 8`): the low 8 first, as the
    /// portable lanes do.
    #[inline(always)]
    unsafe fn add(&mut self, x: __m512) {
        self.0 = _mm512_add_pd(self.0, _mm512_cvtps_pd(_mm512_castps512_ps256(x)));
        self.0 = _mm512_add_pd(self.0, _mm512_cvtps_pd(_mm512_extractf32x8_ps::<1>(x)));
    }

    #[inline(always)]
    unsafe fn lanes(self) -> [f64; LANES] {
        let mut out = [0.0; LANES];
        _mm512_storeu_pd(out.as_mut_ptr(), self.0);
        out
    }
}

/// The metric accumulators of a whole call.
struct Acc {
    ndt: Sum8x64,
    kl: Sum8x64,
    /// Valid, upper, lower and dual-clip counts.
    counts: [u64; 4],
}

impl Acc {
    #[inline(always)]
    unsafe fn new() -> Acc {
        Acc { ndt: Sum8x64::zero(), kl: Sum8x64::zero(), counts: [0; 4] }
    }

    #[inline(always)]
    unsafe fn add(&mut self, t: &Tok16) {
        self.ndt.add(t.ndt);
        self.kl.add(t.kv);
        for (c, m) in self.counts.iter_mut().zip([t.valid, t.high, t.low, t.dual]) {
            *c += m.count_ones() as u64;
        }
    }

    /// The lane accumulators of the portable loop (the counts all in lane 0: only their
    /// totals matter).
    unsafe fn finish(self) -> (PolicyStats, KlStats) {
        let lane0 = |x: u64| {
            let mut a = [0u64; LANES];
            a[0] = x;
            a
        };
        let c = self.counts;
        let acc = LaneAcc {
            valid: lane0(c[0]),
            high: lane0(c[1]),
            low: lane0(c[2]),
            dual: lane0(c[3]),
            sum: self.ndt.lanes(),
        };
        let acc_kl = LaneAcc { sum: self.kl.lanes(), ..acc };
        (acc.into_stats(), acc_kl.into_kl())
    }
}

/// Whether the 64 tokens at `i` are all masked (see `x86_avx2::all_masked16` for why they
/// can be skipped).
#[inline(always)]
unsafe fn all_masked64(mask: &[u8], i: usize) -> bool {
    let m = _mm512_loadu_si512(mask.as_ptr().add(i) as *const __m512i);
    _mm512_test_epi8_mask(m, m) == 0
}

/// Zeros 64 outputs of both arrays at `i`.
#[inline(always)]
unsafe fn zero64(a: &mut [f32], b: &mut [f32], i: usize) {
    let z = _mm512_setzero_ps();
    for o in [a, b] {
        for k in 0..4 {
            _mm512_storeu_ps(o.as_mut_ptr().add(i + 16 * k), z);
        }
    }
}

/// How many tokens ahead of the loop [`prefetch`] asks for (2 KiB of each `f32` stream).
const PREFETCH: usize = 512;

/// Asks for the cache lines of the 64 tokens at `i` in every input stream (the hardware
/// prefetchers alone leave the loop waiting on memory between its bursts of arithmetic).
/// Addresses past the end are computed with wrapping arithmetic and never dereferenced: a
/// prefetch does not fault.
#[inline(always)]
unsafe fn prefetch(ins: &FusedIns<'_>, i: usize) {
    for s in [ins.lp, ins.olp, ins.adv, ins.rf] {
        for line in 0..4 {
            _mm_prefetch::<_MM_HINT_T0>(s.as_ptr().wrapping_add(i + 16 * line) as *const i8);
        }
    }
    _mm_prefetch::<_MM_HINT_T0>(ins.mask.as_ptr().wrapping_add(i) as *const i8);
}

/// The lanes of the last `n < 16` tokens.
#[inline(always)]
fn first(n: usize) -> __mmask16 {
    ((1u32 << n) - 1) as __mmask16
}

/// Runs `$finish!(i, tok16(i), live)` over the tokens in `[$lo, $hi)` (`$lo ≡ 0 mod 8`), 64
/// per iteration so that the `exp` chains of four vectors overlap, then 16 at a time, the
/// last vector masked; a run of 64 padding tokens gets its zeros in `$a` and `$b` written
/// directly. Expands inside a function generic over `W, BR, BK`. (A macro, not a closure: a
/// closure would not inherit the target features.)
macro_rules! groups_of_16 {
    ($ins:expr, $q:expr, $lo:expr, $hi:expr, $a:expr, $b:expr, $finish:ident) => {{
        let (lo, hi) = ($lo, $hi);
        let quads = hi - (hi - lo) % 64;
        for i in (lo..quads).step_by(64) {
            prefetch($ins, i + PREFETCH);
            if all_masked64($ins.mask, i) {
                zero64($a, $b, i);
                continue;
            }
            let t0 = tok16::<W, BR, BK>($ins, i, $q, ALL);
            let t1 = tok16::<W, BR, BK>($ins, i + 16, $q, ALL);
            let t2 = tok16::<W, BR, BK>($ins, i + 32, $q, ALL);
            let t3 = tok16::<W, BR, BK>($ins, i + 48, $q, ALL);
            $finish!(i, t0, ALL);
            $finish!(i + 16, t1, ALL);
            $finish!(i + 32, t2, ALL);
            $finish!(i + 48, t3, ALL);
        }
        for i in (quads..hi).step_by(16) {
            let live = if hi - i >= 16 { ALL } else { first(hi - i) };
            $finish!(i, tok16::<W, BR, BK>($ins, i, $q, live), live);
        }
    }};
}

/// [`super::ppo_clip_kl_loss`] with a `K3` KL, over the flat index.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
pub(super) unsafe fn fused_flat(
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
    let q = Cfg16::new(p, coef, clamps);
    let mut acc = Acc::new();
    macro_rules! one {
        ($i:expr, $t:expr, $live:expr) => {{
            let (i, t, live): (usize, Tok16, __mmask16) = ($i, $t, $live);
            _mm512_mask_storeu_ps(loss.as_mut_ptr().add(i), live, t.l);
            _mm512_mask_storeu_ps(grad.as_mut_ptr().add(i), live, t.g);
            acc.add(&t);
        }};
    }
    groups_of_16!(ins, &q, 0, ins.lp.len(), loss, grad, one);
    acc.finish()
}

/// [`super::ppo_clip_kl_step`] with a `K3` KL, row by row (`cols` a multiple of 8, so that
/// lane = column mod 8 = flat index mod 8): writes `ℓ` and `g_logp`, returns `L`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
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
    let q = Cfg16::new(p, coef, clamps);
    let mut acc = Acc::new();
    let mut total = 0.0f64;
    for o in (0..n).step_by(cols) {
        // The row weight exactly as `agg_chain_inplace`, the row sum as `agg_loss`.
        let len = if plan.per_row_mean { count_valid(&ins.mask[o..o + cols]) } else { 0 };
        let k = if plan.per_row_mean && len > 0 { plan.k / len as f64 } else { plan.k } as f32;
        let k16 = splat(k);
        let k_on: __mmask16 = if k != 0.0 { ALL } else { 0 };
        let mut row = Sum8x64::zero();
        macro_rules! finish {
            ($i:expr, $t:expr, $live:expr) => {{
                let (i, t, live): (usize, Tok16, __mmask16) = ($i, $t, $live);
                _mm512_mask_storeu_ps(loss.as_mut_ptr().add(i), live, t.l);
                row.add(t.l);
                // `agg_chain_inplace`: `m ≠ 0 ∧ k ≠ 0 ? k·(0 + 1·d) : 0` (`1·d` is `d`).
                let x = _mm512_add_ps(_mm512_setzero_ps(), t.g);
                let g = _mm512_maskz_mov_ps(t.valid & k_on, _mm512_mul_ps(k16, x));
                _mm512_mask_storeu_ps(g_logp.as_mut_ptr().add(i), live, g);
                acc.add(&t);
            }};
        }
        groups_of_16!(ins, &q, o, o + cols, loss, g_logp, finish);
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
    let (ps, ks) = acc.finish();
    (l, ps, ks)
}

// ---------------------------------------------------------------------------------------
// The portable loops, compiled with AVX-512 enabled.
// ---------------------------------------------------------------------------------------

/// [`super::ppo_clip::drive`] compiled for AVX-512.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
pub(super) unsafe fn ppo_drive(inp: &PolicyInputs<'_>, p: Params, out: LossOut<'_>) -> LaneAcc {
    super::ppo_clip::drive(inp, p, out)
}

/// [`super::ppo_clip::drive_kl`] compiled for AVX-512.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
pub(super) unsafe fn ppo_kl_drive<F: Fn(f32) -> (f32, f32)>(
    inp: &PolicyInputs<'_>,
    p: Params,
    kl: &KlTerm<'_>,
    f: &F,
    out: LossOut<'_>,
) -> (LaneAcc, LaneAcc) {
    super::ppo_clip::drive_kl(inp, p, kl, f, out)
}

/// [`super::kl::run_body`] compiled for AVX-512.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
pub(super) unsafe fn kl_run(io: (&[f32], &[f32], &[u8], LossOut<'_>), f: impl Fn(f32) -> (f32, f32)) -> KlStats {
    super::kl::run_body(io, f)
}

/// [`super::aggregation::local_counts_body`] compiled for AVX-512.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
pub(super) unsafe fn local_counts(mask: &[u8], shape: BatchShape) -> (u64, u64) {
    super::aggregation::local_counts_body(mask, shape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exp::exp_full;
    use crate::Backend;

    /// `exp16` gives `exp_full`'s bits: everywhere unbounded, on `[−87, 87]` bounded.
    #[test]
    fn exp16_matches_exp_full_bitwise() {
        if Backend::avx512().is_none() {
            crate::platform::report_skip("policy_loss::x86_avx512 exp16", "AVX-512");
            return;
        }
        let xs = crate::exp::full_range_probe();
        #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
        unsafe fn run16<const B: bool>(x: &[f32], out: &mut [f32]) {
            for (c, o) in x.chunks_exact(16).zip(out.chunks_exact_mut(16)) {
                _mm512_storeu_ps(o.as_mut_ptr(), exp16::<B>(_mm512_loadu_ps(c.as_ptr())));
            }
        }
        let canon = |x: f32| if x.is_nan() { f32::NAN.to_bits() } else { x.to_bits() };
        let want: Vec<u32> = xs.iter().map(|&x| canon(exp_full(x))).collect();
        let mut got = vec![0.0f32; xs.len()];
        unsafe { run16::<false>(&xs, &mut got) };
        assert_eq!(got.iter().map(|&x| canon(x)).collect::<Vec<_>>(), want);
        unsafe { run16::<true>(&xs, &mut got) };
        for (i, &x) in xs.iter().enumerate() {
            if x.is_nan() || x.abs() <= 87.0 {
                assert_eq!(canon(got[i]), want[i], "exp16::<true>({x})");
            }
        }
    }
}
