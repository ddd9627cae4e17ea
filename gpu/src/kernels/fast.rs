//! The fast mode: deterministic and batch-invariant, **not** bitwise equal to `core`.
//!
//! Where the canonical kernels transcribe `core`'s order (8 interleaved lanes per block, a
//! software `exp`, values kept apart so no compiler can contract them), these are shaped for
//! the GPU: the hardware `exp` (`__expf`, one `ex2.approx` on NVIDIA), one pass over the
//! logits with an online maximum, and warp-shaped reductions.
//!
//! # The reduction tree (fixed, so the bits are too)
//!
//! A row is cut into segments of [`SEG`] columns, a segment into granules of [`GRANULE`]
//! consecutive columns. One plane (warp) computes one segment's tuple `(m, s, u)`:
//!
//! 1. lane `l` of the plane takes granules `l, l + P, l + 2P, …` (`P` = the plane size) and
//!    folds them in that order with the online update: per granule `cm` = its maximum; if
//!    `cm > m` the lane's sums are rescaled to `cm`; then for each column in order
//!    `d = z − m`, `e = exp(d)`, `s += e`, `u = fma(e, max(d, −FLOOR), u)`;
//! 2. the plane's tuples are rescaled to the plane maximum and summed with the plane's
//!    butterfly (`plane_sum`: a fixed XOR-shuffle tree on CUDA).
//!
//! Segment tuples are merged with a pairwise tree in segment order (`t[i] ⊕= t[i + w]` for
//! `w = 1, 2, 4, …`), in groups of [`GROUP`] segments folded left to right. Which warp
//! computes which segment does not matter, so the cube size, the batch and the row order
//! do not change a bit; only the plane size does (32 on every NVIDIA GPU).
//!
//! # Special values (no integer classification per element)
//!
//! `max` drops NaN (`fmaxf`); a NaN or `+inf` logit makes `d` NaN, hence `s` NaN, hence the
//! row's status "non-finite". A `−inf` logit gives `e = 0` and its `d` is floored, so it adds
//! exactly nothing. The running maximum starts at `−f32::MAX` (not `−inf`), so a granule of
//! masked columns never computes `−inf − (−inf)`; a tuple with `s = 0` is empty and merges
//! as the identity.
//!
//! # Error bound (tested against the f64 reference)
//!
//! With `ε = 2^-24`, each term `exp(d)` carries a relative error of at most
//! `2^-21 + 2·|d|·ε` (`ex2.approx` and the rounding of `d·log2 e` inside `__expf`; WGSL's
//! `exp` is within `3 + 2|d|` ulp, the same bound), and the sums add `n·ε` relative
//! (`n` = columns). So `|Δs|/s ≤ 2^-21 + (2·max_j|d_j| + n)·ε`, and the reported outputs satisfy
//! `|Δlse| ≤ |Δs|/s + ulp(lse)`, `|Δlogp| ≤ |Δs|/s + ulp`, `|ΔH| ≤ (1 + H + ln n)·|Δs|/s`.
//! `tokenmath_reference`'s tolerance helpers for the fast mode encode this formula.

use cubecl::prelude::*;

use super::{f16_from_bits, widen16, DT_BF16, DT_F16, DT_F32, NAN_BITS, NEG_INF_BITS, NO_TARGET};

/// Columns per segment (one plane's tuple).
pub(crate) const SEG: usize = 2048;
/// Consecutive columns a lane takes at once.
pub(crate) const GRANULE: usize = 8;
/// Segments merged by one shared-memory tree (longer rows fold groups left to right).
pub(crate) const GROUP: usize = 128;
/// `exp(−FLOOR)` is below `2^-126` (flushed to zero by `ex2.approx.ftz`): a floored
/// argument contributes nothing, and `0 · (−FLOOR)` is never `0 · −inf`.
pub(crate) const FLOOR: f32 = 88.0;

/// Per-row parameter words of the fast kernels.
pub(crate) const P_KEEP: usize = 0;
pub(crate) const P_INV_TEMP: usize = 1;
pub(crate) const P_TARGET: usize = 2;
/// `g_logp · inv_temp` (0 without a target).
pub(crate) const P_GLP: usize = 3;
/// `−g_entropy · inv_temp`.
pub(crate) const P_NEG_GH: usize = 4;
/// `(g_lse − g_logp) · inv_temp`.
pub(crate) const P_C: usize = 5;
pub(crate) const PARAMS: usize = 6;

/// `bits` as a run-time value: `zero` is 0 whenever a kernel runs (e.g. `rows == 0`, false
/// in every launched kernel). cubecl's CUDA generator writes a bit-cast of a *constant* as a
/// `reinterpret_cast` of a temporary, which NVRTC rejects (`gpu/cuda-check` catches it).
#[cube]
fn runtime_f32(bits: u32, zero: bool) -> f32 {
    f32::reinterpret(bits | u32::cast_from(zero))
}

/// The hardware `exp` (`__expf` on CUDA: `ex2.approx(x·log2 e)`). NaN propagates,
/// `exp(−inf) = 0`.
#[cube(fast_math = FastMath::ReducedPrecision | FastMath::NotNaN | FastMath::NotInf)]
pub(crate) fn fast_exp(x: f32) -> f32 {
    x.exp()
}

/// Words per granule: 8 `f32`, or 8 halves in 4 words.
const fn granule_words(dtype: u32) -> usize {
    if dtype == DT_F32 {
        GRANULE
    } else {
        GRANULE / 2
    }
}

/// The `f32` bits of the low (`hi = false`) or high half of a 16-bit word, or the word
/// itself for `f32`. `bf16` is one shift or mask.
#[cube]
pub(crate) fn widen(word: u32, hi: bool, #[comptime] dtype: u32) -> u32 {
    if dtype == DT_BF16 {
        select(hi, word & 0xffff_0000u32, word << 16u32)
    } else if dtype == DT_F16 {
        widen16(word, hi, dtype)
    } else {
        word
    }
}

/// Round the bits of an `f32` to `bf16` (nearest, ties to even; NaN stays NaN, quieted):
/// the `half` crate's `bf16::from_f32`.
#[cube]
pub(crate) fn bf16_round(b: u32) -> u32 {
    let rounded = (b + 0x7fffu32 + ((b >> 16u32) & 1u32)) >> 16u32;
    select((b & 0x7fff_ffffu32) > 0x7f80_0000u32, (b >> 16u32) | 0x0040u32, rounded)
}

/// An `f32` value's bits narrowed to the 16 bits of `dtype` (`bf16` or `f16`).
#[cube]
pub(crate) fn narrow16(v: f32, #[comptime] dtype: u32) -> u32 {
    if dtype == DT_BF16 {
        bf16_round(u32::reinterpret(v))
    } else {
        f16_from_bits(u32::reinterpret(v))
    }
}

/// `(m, s, u)` of `a ⊕ b` (order-free formula: both sides rescaled to the larger maximum).
#[cube]
pub(crate) fn merge3(am: f32, a_s: f32, au: f32, bm: f32, bs: f32, bu: f32) -> (f32, f32, f32) {
    let m = max(am, bm);
    let da = max(am - m, f32::new(-FLOOR));
    let db = max(bm - m, f32::new(-FLOOR));
    let fa = fast_exp(da);
    let fb = fast_exp(db);
    let s = a_s * fa + bs * fb;
    let u = fa * fma(a_s, da, au) + fb * fma(bs, db, bu);
    (m, s, u)
}

/// The online update of a lane's `(m, s, u)` by one granule of tempered logits `z`.
#[cube]
fn fold_granule(z: &Array<f32>, m: f32, s: f32, u: f32) -> (f32, f32, f32) {
    let mut cm = z[0];
    #[unroll]
    for k in 1..GRANULE {
        cm = max(cm, z[k]);
    }
    let mut m2 = m;
    let mut s2 = s;
    let mut u2 = u;
    if cm > m {
        let delta = max(m - cm, f32::new(-FLOOR));
        let f = fast_exp(delta);
        u2 = f * fma(s, delta, u);
        s2 = s * f;
        m2 = cm;
    }
    #[unroll]
    for k in 0..GRANULE {
        let d = z[k] - m2;
        let e = fast_exp(d);
        s2 += e;
        u2 = fma(e, max(d, f32::new(-FLOOR)), u2);
    }
    (m2, s2, u2)
}

/// The `f32` bits of element `e` of a word array.
#[cube]
fn load_elem<N: Size>(input: &Array<Vector<u32, N>>, e: usize, #[comptime] dtype: u32) -> u32 {
    if dtype == DT_F32 {
        let v = input[e / N::value()];
        v[e % N::value()]
    } else {
        let wi = e / 2;
        let v = input[wi / N::value()];
        widen(v[wi % N::value()], e % 2 == 1, dtype)
    }
}

/// The tempered logits of granule `g` of a row into `z`. `whole`: all 8 columns are in the
/// row, which starts on a vector boundary at word `row_word` (vector loads); otherwise each
/// element is read on its own from `row_elem` (the row's first element) and the columns
/// past `gcols` read as `−inf`. Loops run the `whole` kind over a row's whole granules and
/// the other over its last, partial one, so the hot loop has no untaken path.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(crate) fn load_granule<N: Size>(
    input: &Array<Vector<u32, N>>,
    z: &mut Array<f32>,
    row_word: usize,
    row_elem: usize,
    g: usize,
    gcols: usize,
    inv_temp: f32,
    #[comptime] dtype: u32,
    #[comptime] whole: bool,
    #[comptime] scaled: bool,
) {
    let wpg = comptime!(granule_words(dtype));
    let nv = N::value();
    let nvec = comptime!(wpg / nv);
    if whole {
        // A whole granule of a row on word (and vector) boundaries: vector loads.
        let first = (row_word + g * wpg) / N::value();
        #[unroll]
        for v in 0..nvec {
            let vector = input[first + v];
            #[unroll]
            for k in 0..N::value() {
                let w = vector[k];
                if dtype == DT_F32 {
                    z[v * N::value() + k] = f32::reinterpret(w);
                } else {
                    z[2 * (v * N::value() + k)] = f32::reinterpret(widen(w, false, dtype));
                    z[2 * (v * N::value() + k) + 1] = f32::reinterpret(widen(w, true, dtype));
                }
            }
        }
    } else {
        #[unroll]
        for k in 0..GRANULE {
            let mut bits = u32::new(NEG_INF_BITS as i64);
            if k < gcols {
                bits = load_elem::<N>(input, row_elem + g * GRANULE + k, dtype);
            }
            z[k] = f32::reinterpret(bits);
        }
    }
    if scaled {
        #[unroll]
        for k in 0..GRANULE {
            z[k] *= inv_temp;
        }
    }
}

/// The tuple of segment `seg` of a row of `cols` columns, computed by the calling plane;
/// every lane returns the same tuple.
#[cube]
#[allow(clippy::too_many_arguments)]
fn segment_tuple<N: Size>(
    input: &Array<Vector<u32, N>>,
    z: &mut Array<f32>,
    row_word: usize,
    row_elem: usize,
    cols: usize,
    seg: usize,
    inv_temp: f32,
    #[comptime] dtype: u32,
    #[comptime] word_rows: bool,
    #[comptime] scaled: bool,
) -> (f32, f32, f32) {
    let lane = UNIT_POS_PLANE as usize;
    let plane = PLANE_DIM as usize;
    let first_g = seg * (SEG / GRANULE);
    let end_g = min(first_g + SEG / GRANULE, cols.div_ceil(GRANULE));
    let mut m = f32::new(-f32::MAX);
    let mut s = f32::new(0.0);
    let mut u = f32::new(0.0);
    let mut g = first_g + lane;
    let whole_end = if word_rows { min(end_g, cols / GRANULE) } else { first_g };
    while g < whole_end {
        load_granule::<N>(input, z, row_word, row_elem, g, GRANULE, inv_temp, dtype, true, scaled);
        let (m2, s2, u2) = fold_granule(z, m, s, u);
        m = m2;
        s = s2;
        u = u2;
        g += plane;
    }
    while g < end_g {
        let gcols = min(cols - g * GRANULE, GRANULE);
        load_granule::<N>(input, z, row_word, row_elem, g, gcols, inv_temp, dtype, false, scaled);
        let (m2, s2, u2) = fold_granule(z, m, s, u);
        m = m2;
        s = s2;
        u = u2;
        g += plane;
    }
    let pm = plane_max(m);
    let d = max(m - pm, f32::new(-FLOOR));
    let f = fast_exp(d);
    let ps = plane_sum(s * f);
    let pu = plane_sum(f * fma(s, d, u));
    (pm, ps, pu)
}

/// Fast forward, one cube per row (`fused`: then the gradient over the logits in place).
///
/// `params`: [`PARAMS`] words per row (see `P_*`; the gradient words only with `fused`);
/// one word per row in each output (`code` as the canonical merge's). Row `r`
/// starts at element `r·stride` of `buf`; `word_rows`: every row starts on a word and on a
/// `N`-word vector (the host checks), so whole granules are read with vector loads.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn fast_rows<N: Size>(
    buf: &mut Array<Vector<u32, N>>,
    params: &Array<u32>,
    o_lse: &mut Array<u32>,
    o_entropy: &mut Array<u32>,
    o_logp: &mut Array<u32>,
    o_max: &mut Array<u32>,
    o_log_sum: &mut Array<u32>,
    o_code: &mut Array<u32>,
    witness: &mut Array<u32>,
    rows: usize,
    cols: usize,
    stride: usize,
    #[comptime] dtype: u32,
    #[comptime] word_rows: bool,
    #[comptime] scaled: bool,
    #[comptime] fused: bool,
) {
    let tid = UNIT_POS as usize;
    let row = CUBE_POS;
    if row == 0 && tid == 0 {
        witness[0] = 1u32;
    }
    let live = row < rows;
    let r = select(live, row, 0usize);
    let p = r * PARAMS;
    let kept = live && params[p + P_KEEP] != 0;
    let inv_temp = f32::reinterpret(params[p + P_INV_TEMP]);
    let n = select(kept, cols, 0usize);
    let row_elem = r * stride;
    let row_word = select(dtype == DT_F32, row_elem, row_elem / 2);

    let mut sm_m = SharedMemory::<f32>::new(GROUP);
    let mut sm_s = SharedMemory::<f32>::new(GROUP);
    let mut sm_u = SharedMemory::<f32>::new(GROUP);
    // The running row tuple, then `(max, log_sum, entropy, floor, z_t)` for the gradient.
    let mut row_t = SharedMemory::<f32>::new(5usize);
    let mut z = Array::<f32>::new(GRANULE);

    let planes = (CUBE_DIM / PLANE_DIM) as usize;
    let plane_id = (UNIT_POS / PLANE_DIM) as usize;
    let nseg = n.div_ceil(SEG);
    if tid == 0 {
        row_t[0] = f32::new(-f32::MAX);
        row_t[1] = f32::new(0.0);
        row_t[2] = f32::new(0.0);
    }
    let mut g0 = 0usize;
    while g0 < nseg {
        let cnt = min(nseg - g0, GROUP);
        let mut k = plane_id;
        while k < cnt {
            let (m, s, u) =
                segment_tuple::<N>(buf, &mut z, row_word, row_elem, n, g0 + k, inv_temp, dtype, word_rows, scaled);
            if UNIT_POS_PLANE == 0 {
                sm_m[k] = m;
                sm_s[k] = s;
                sm_u[k] = u;
            }
            k += planes;
        }
        sync_cube();
        let mut w = 1usize;
        while w < cnt {
            let mut i = 2 * w * tid;
            while i + w < cnt {
                let (m, s, u) = merge3(sm_m[i], sm_s[i], sm_u[i], sm_m[i + w], sm_s[i + w], sm_u[i + w]);
                sm_m[i] = m;
                sm_s[i] = s;
                sm_u[i] = u;
                i += 2 * w * CUBE_DIM as usize;
            }
            sync_cube();
            w *= 2;
        }
        if tid == 0 {
            let (m, s, u) = merge3(row_t[0], row_t[1], row_t[2], sm_m[0], sm_s[0], sm_u[0]);
            row_t[0] = m;
            row_t[1] = s;
            row_t[2] = u;
        }
        sync_cube();
        g0 += GROUP;
    }

    // Finalize (thread 0), and the gradient constants for every thread.
    if tid == 0 {
        let m = row_t[0];
        let s = row_t[1];
        let u = row_t[2];
        let nan = runtime_f32(NAN_BITS, rows == 0);
        let mut code = 0u32;
        let mut lse = nan;
        let mut entropy = nan;
        let mut logp = nan;
        let mut row_max = nan;
        let mut log_sum = nan;
        if !kept {
            lse = f32::new(0.0);
            entropy = f32::new(0.0);
            logp = f32::new(0.0);
            row_max = f32::new(0.0);
            log_sum = f32::new(0.0);
        } else if (u32::reinterpret(s) & 0x7fff_ffffu32) > 0x7f80_0000u32 {
            // NaN, tested on its bits (a WGSL compiler may fold `s != s` to false).
            code = 1u32;
        } else if s == 0.0 {
            code = 2u32;
        } else {
            log_sum = s.ln();
            row_max = m;
            lse = m + log_sum;
            entropy = max(log_sum - u / s, f32::new(0.0));
            logp = f32::new(0.0);
            let t = params[p + P_TARGET];
            if t != NO_TARGET {
                let e = row_elem + t as usize;
                let bits = load_elem::<N>(buf, e, dtype);
                let zt = select(scaled, f32::reinterpret(bits) * inv_temp, f32::reinterpret(bits));
                row_t[4] = zt;
                if bits == NEG_INF_BITS {
                    logp = runtime_f32(NEG_INF_BITS, rows == 0);
                } else {
                    logp = min((zt - m) - log_sum, f32::new(0.0));
                }
            }
        }
        if live {
            o_lse[r] = u32::reinterpret(lse);
            o_entropy[r] = u32::reinterpret(entropy);
            o_logp[r] = u32::reinterpret(logp);
            o_max[r] = u32::reinterpret(row_max);
            o_log_sum[r] = u32::reinterpret(log_sum);
            o_code[r] = code;
        }
        row_t[0] = row_max;
        row_t[1] = log_sum;
        row_t[2] = entropy;
        // A row without statistics gets NaN everywhere: its floor is NaN (`max` then keeps
        // the NaN of `d`).
        row_t[3] = select(code == 0u32, f32::new(-FLOOR), nan);
    }
    if fused {
        sync_cube();
        let row_max = row_t[0];
        let log_sum = row_t[1];
        let entropy = row_t[2];
        let floor = row_t[3];
        let t = params[p + P_TARGET];
        let g_lp = f32::reinterpret(params[p + P_GLP]);
        let neg_gh = f32::reinterpret(params[p + P_NEG_GH]);
        let c = f32::reinterpret(params[p + P_C]);
        let ngr = n.div_ceil(GRANULE);
        let mut g = tid;
        let whole_end = if word_rows { n / GRANULE } else { 0usize.runtime() };
        while g < whole_end {
            load_granule::<N>(buf, &mut z, row_word, row_elem, g, GRANULE, inv_temp, dtype, true, scaled);
            grad_granule(&mut z, row_max, log_sum, entropy, floor, neg_gh, c);
            store_granule::<N>(buf, &z, row_word, row_elem, g, GRANULE, dtype, true);
            g += CUBE_DIM as usize;
        }
        while g < ngr {
            let gcols = min(n - g * GRANULE, GRANULE);
            load_granule::<N>(buf, &mut z, row_word, row_elem, g, gcols, inv_temp, dtype, false, scaled);
            grad_granule(&mut z, row_max, log_sum, entropy, floor, neg_gh, c);
            store_granule::<N>(buf, &z, row_word, row_elem, g, gcols, dtype, false);
            g += CUBE_DIM as usize;
        }
        // The target's `+ g_lp`, by the thread that wrote its granule (its logit was
        // read before the pass, by the finalize).
        if t != NO_TARGET && kept && (t as usize / GRANULE) % CUBE_DIM as usize == tid {
            let v = grad_elem(row_t[4], row_max, log_sum, entropy, floor, neg_gh, c) + g_lp;
            store_elem::<N>(buf, row_elem + t as usize, v, dtype);
        }
        // A masked row's gradient is 0 (spare cubes past the last row touch nothing).
        if live && !kept {
            #[unroll]
            for k in 0..GRANULE {
                z[k] = f32::new(0.0);
            }
            let mut g = tid;
            while g < cols.div_ceil(GRANULE) {
                store_granule::<N>(buf, &z, row_word, row_elem, g, min(cols - g * GRANULE, GRANULE), dtype, false);
                g += CUBE_DIM as usize;
            }
        }
    }
}

/// Overwrites a granule of tempered logits `z` with its gradient
/// `exp(d)·fma(−g_H·it, d + H, (g_lse − g_lp)·it)`, `d = max((z − max) − log_sum, floor)`
/// (the target's `g_lp·it` is added by the caller).
#[cube]
pub(crate) fn grad_granule(
    z: &mut Array<f32>,
    row_max: f32,
    log_sum: f32,
    entropy: f32,
    floor: f32,
    neg_gh: f32,
    c: f32,
) {
    #[unroll]
    for k in 0..GRANULE {
        z[k] = grad_elem(z[k], row_max, log_sum, entropy, floor, neg_gh, c);
    }
}

/// The gradient of one tempered logit `z`, without the target's `g_lp·it`.
#[cube]
pub(crate) fn grad_elem(z: f32, row_max: f32, log_sum: f32, entropy: f32, floor: f32, neg_gh: f32, c: f32) -> f32 {
    let d = max((z - row_max) - log_sum, floor);
    fast_exp(d) * fma(neg_gh, d + entropy, c)
}

/// Writes one element (`f32` value `v`) at element index `e` of a word array
/// (read-modify-write of its half of a 16-bit word).
#[cube]
fn store_elem<N: Size>(out: &mut Array<Vector<u32, N>>, e: usize, v: f32, #[comptime] dtype: u32) {
    if dtype == DT_F32 {
        let mut w = out[e / N::value()];
        w[e % N::value()] = u32::reinterpret(v);
        out[e / N::value()] = w;
    } else {
        let wi = e / 2;
        let mut w = out[wi / N::value()];
        let word = w[wi % N::value()];
        let h = narrow16(v, dtype);
        w[wi % N::value()] = select(e % 2 == 1, (word & 0xffffu32) | (h << 16u32), (word & 0xffff_0000u32) | h);
        out[wi / N::value()] = w;
    }
}

/// Writes a granule of `f32` values `z` as elements of `dtype` (`whole` as for
/// [`load_granule`]: vector stores; otherwise element by element, read-modify-write of the
/// 16-bit halves of a word).
#[cube]
#[allow(clippy::too_many_arguments)]
pub(crate) fn store_granule<N: Size>(
    out: &mut Array<Vector<u32, N>>,
    z: &Array<f32>,
    row_word: usize,
    row_elem: usize,
    g: usize,
    gcols: usize,
    #[comptime] dtype: u32,
    #[comptime] whole: bool,
) {
    let wpg = comptime!(granule_words(dtype));
    let nv = N::value();
    let nvec = comptime!(wpg / nv);
    if whole {
        let first = (row_word + g * wpg) / N::value();
        #[unroll]
        for v in 0..nvec {
            let mut vector = Vector::<u32, N>::empty();
            #[unroll]
            for k in 0..N::value() {
                if dtype == DT_F32 {
                    vector[k] = u32::reinterpret(z[v * N::value() + k]);
                } else {
                    let j = 2 * (v * N::value() + k);
                    vector[k] = narrow16(z[j], dtype) | (narrow16(z[j + 1], dtype) << 16u32);
                }
            }
            out[first + v] = vector;
        }
    } else {
        #[unroll]
        for k in 0..GRANULE {
            if k < gcols {
                store_elem::<N>(out, row_elem + g * GRANULE + k, z[k], dtype);
            }
        }
    }
}

/// Fast backward, out of place or in place: one cube per (row, [`SEG`]·4 columns), each
/// thread a granule at a time. `saved_*`: the forward's statistics (either mode's),
/// `params` as for [`fast_rows`]. With `inplace`, `input` is read and `out`
/// is the same buffer bound twice is not allowed, so the in-place launch passes the logits
/// as `out` and reads them from there (`input` unused).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn fast_grad<N: Size, M: Size>(
    input: &Array<Vector<u32, N>>,
    out: &mut Array<Vector<u32, M>>,
    saved_max: &Array<u32>,
    saved_log_sum: &Array<u32>,
    saved_entropy: &Array<u32>,
    params: &Array<u32>,
    witness: &mut Array<u32>,
    rows: usize,
    cols: usize,
    nchunks: usize,
    in_stride: usize,
    out_stride: usize,
    #[comptime] in_dtype: u32,
    #[comptime] out_dtype: u32,
    #[comptime] word_rows: bool,
    #[comptime] scaled: bool,
    #[comptime] inplace: bool,
) {
    if ABSOLUTE_POS == 0 {
        witness[0] = 1u32;
    }
    let cube = CUBE_POS;
    let r = cube / nchunks;
    if r < rows {
        let p = r * PARAMS;
        let kept = params[p + P_KEEP] != 0;
        let inv_temp = f32::reinterpret(params[p + P_INV_TEMP]);
        let t = params[p + P_TARGET];
        let g_lp = f32::reinterpret(params[p + P_GLP]);
        let neg_gh = f32::reinterpret(params[p + P_NEG_GH]);
        let c = f32::reinterpret(params[p + P_C]);
        let (mb, lb, hb) = (saved_max[r], saved_log_sum[r], saved_entropy[r]);
        let row_max = f32::reinterpret(mb);
        let log_sum = f32::reinterpret(lb);
        let entropy = f32::reinterpret(hb);
        let finite = (mb & 0x7fff_ffffu32) < 0x7f80_0000u32
            && (lb & 0x7fff_ffffu32) < 0x7f80_0000u32
            && (hb & 0x7fff_ffffu32) < 0x7f80_0000u32;
        let floor = select(finite, f32::new(-FLOOR), runtime_f32(NAN_BITS, rows == 0));
        let in_elem = r * in_stride;
        let in_word = select(in_dtype == DT_F32, in_elem, in_elem / 2);
        let out_elem = r * out_stride;
        let out_word = select(out_dtype == DT_F32, out_elem, out_elem / 2);
        let per_cube = 4 * SEG / GRANULE;
        let ngr = cols.div_ceil(GRANULE);
        let first = (cube % nchunks) * per_cube;
        let end = min(first + per_cube, ngr);
        let mut z = Array::<f32>::new(GRANULE);
        let tid = UNIT_POS as usize;
        let mut g = first + tid;
        let whole_end = if word_rows { min(end, cols / GRANULE) } else { first };
        if kept {
            // The target's logit, read before an in-place pass overwrites it, by the thread
            // that owns its granule.
            let tg = t as usize / GRANULE;
            let owns_t = t != NO_TARGET && tg >= first && tg < end && (tg - first) % CUBE_DIM as usize == tid;
            let mut z_t = f32::new(0.0);
            if owns_t {
                let bits = if inplace {
                    load_elem::<M>(out, out_elem + t as usize, in_dtype)
                } else {
                    load_elem::<N>(input, in_elem + t as usize, in_dtype)
                };
                z_t = select(scaled, f32::reinterpret(bits) * inv_temp, f32::reinterpret(bits));
            }
            while g < whole_end {
                if inplace {
                    load_granule::<M>(out, &mut z, out_word, out_elem, g, GRANULE, inv_temp, in_dtype, true, scaled);
                } else {
                    load_granule::<N>(input, &mut z, in_word, in_elem, g, GRANULE, inv_temp, in_dtype, true, scaled);
                }
                grad_granule(&mut z, row_max, log_sum, entropy, floor, neg_gh, c);
                store_granule::<M>(out, &z, out_word, out_elem, g, GRANULE, out_dtype, true);
                g += CUBE_DIM as usize;
            }
            while g < end {
                let gcols = min(cols - g * GRANULE, GRANULE);
                if inplace {
                    load_granule::<M>(out, &mut z, out_word, out_elem, g, gcols, inv_temp, in_dtype, false, scaled);
                } else {
                    load_granule::<N>(input, &mut z, in_word, in_elem, g, gcols, inv_temp, in_dtype, false, scaled);
                }
                grad_granule(&mut z, row_max, log_sum, entropy, floor, neg_gh, c);
                store_granule::<M>(out, &z, out_word, out_elem, g, gcols, out_dtype, false);
                g += CUBE_DIM as usize;
            }
            if owns_t {
                let v = grad_elem(z_t, row_max, log_sum, entropy, floor, neg_gh, c) + g_lp;
                store_elem::<M>(out, out_elem + t as usize, v, out_dtype);
            }
        } else {
            #[unroll]
            for k in 0..GRANULE {
                z[k] = f32::new(0.0);
            }
            while g < end {
                let gcols = min(cols - g * GRANULE, GRANULE);
                store_granule::<M>(out, &z, out_word, out_elem, g, gcols, out_dtype, false);
                g += CUBE_DIM as usize;
            }
        }
    }
}
