//! The seed papers' token-level methods: the top-entropy-quantile mask (one rank, and the
//! exact cross-rank protocol), D³S (max-variance subset, schedule, sample selection, token
//! mask), PSR/NSR/W-REINFORCE advantages, GRPO-N, the expected logit update, and NTHR/THR
//! (prediction errors, influence scores, threshold, reweighting), RMT (budget, length reward,
//! curriculum, entropy tiers, position sampling, combined reward, NTP term) and the linear
//! quantile.
//! `tokenmath_core::seed` documents the math, the sources and every library choice.

use tokenmath_core::advantages::Groups;
use tokenmath_core::policy_loss::BatchShape;
use tokenmath_core::seed::{
    self, D3sSchedule, D3sScratch, D3sTokenInputs, EntropyQuantile, NegMode, NsrCfg, NsrMode, NsrOut, QuantileStep,
    RADIX_BINS,
};
use tokenmath_core::seed::{Features, NonDominant, ThrCfg, ThrMode};
use tokenmath_core::{Mat, MatMut};

use crate::advantages::groups;
use crate::exec::{exec_from, tkm_exec_options};
use crate::status::*;
use crate::util::{
    check_out, flag, guard, init_options, inout, input, mul, opt_input, options, overlaps, read_options, scratch,
    write, Out, Res,
};

// ---------------------------------------------------------------------------------------
// Top-entropy-quantile mask
// ---------------------------------------------------------------------------------------

/// Bins of one round of the cross-rank entropy quantile (`uint64_t hist[TKM_RADIX_BINS]`).
pub const TKM_RADIX_BINS: usize = 256;
const _: () = assert!(TKM_RADIX_BINS == RADIX_BINS);

/// Next step of `tkm_entropy_quantile`: a histogram round.
pub const TKM_QUANTILE_STEP_HISTOGRAM: u32 = 0;
/// Next step: the minimum over ranks of `tkm_entropy_quantile_local_min_above`.
pub const TKM_QUANTILE_STEP_MIN_ABOVE: u32 = 1;
/// Finished: read `tkm_entropy_quantile_threshold`.
pub const TKM_QUANTILE_STEP_DONE: u32 = 2;

/// The state of the cross-rank top-entropy threshold (a plain value: copy it, send it, keep
/// it anywhere; the library refuses a corrupted one with `TKM_STATUS_INVALID_ARGUMENT`).
/// Start it with `tkm_entropy_quantile_init`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct tkm_entropy_quantile {
    /// Opaque.
    pub words: [u64; 6],
}

fn eq_read(p: *const tkm_entropy_quantile) -> Res<EntropyQuantile> {
    // Safety of the read: the callers pass a pointer checked by `input`.
    let s = unsafe { input(p, 1)? };
    Ok(EntropyQuantile::from_words(&s[0].words)?)
}

/// The number of valid tokens (`mask != 0`) of `rows x cols`: this rank's share of the
/// `global_count` of `tkm_entropy_quantile_init`.
///
/// # Safety
/// `mask` valid for `rows*cols` bytes, `count` for one `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn tkm_valid_count(
    exec: *const tkm_exec_options,
    mask: *const u8,
    rows: usize,
    cols: usize,
    count: *mut u64,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let m = input(mask, mul(rows, cols)?)?;
        check_out(count, 1)?;
        let c = seed::valid_count(exec, BatchShape::new(rows, cols), m)?;
        write(count, c)
    })
}

/// Starts the cross-rank computation of the top-entropy threshold over `global_count`
/// valid tokens (the sum of every rank's `tkm_valid_count`) for `rho =
/// top_entropy_quantile` in (0, 1]. The protocol (every rank runs it on the same merged
/// values): while the step is `TKM_QUANTILE_STEP_HISTOGRAM`, sum every rank's
/// `tkm_entropy_quantile_local_histogram` element-wise and push it; if it is
/// `TKM_QUANTILE_STEP_MIN_ABOVE`, push the minimum of every rank's
/// `tkm_entropy_quantile_local_min_above`; then read the threshold. At most 4 rounds of
/// 256 counts and one float.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (`rho`).
///
/// # Safety
/// `state` valid for writing one `tkm_entropy_quantile`.
#[no_mangle]
pub unsafe extern "C" fn tkm_entropy_quantile_init(
    global_count: u64,
    rho: f32,
    state: *mut tkm_entropy_quantile,
) -> tkm_status {
    guard(|| {
        check_out(state, 1)?;
        let st = EntropyQuantile::new(global_count, rho)?;
        write(state, tkm_entropy_quantile { words: st.to_words() })
    })
}

/// The next step of the protocol (`TKM_QUANTILE_STEP_*`) into `*step`.
///
/// # Safety
/// `state` valid for one struct, `step` for one `uint32_t`.
#[no_mangle]
pub unsafe extern "C" fn tkm_entropy_quantile_step(state: *const tkm_entropy_quantile, step: *mut u32) -> tkm_status {
    guard(|| {
        let st = eq_read(state)?;
        check_out(step, 1)?;
        let s = match st.step() {
            QuantileStep::Histogram => TKM_QUANTILE_STEP_HISTOGRAM,
            QuantileStep::MinAbove => TKM_QUANTILE_STEP_MIN_ABOVE,
            QuantileStep::Done => TKM_QUANTILE_STEP_DONE,
        };
        write(step, s)
    })
}

/// This rank's histogram of the current round into `hist` (`TKM_RADIX_BINS` counts).
///
/// Errors: `TKM_STATUS_NON_FINITE` (a NaN or infinite entropy at a valid position),
/// `_INVALID_ARGUMENT` (not a histogram round, or a corrupted state).
///
/// # Safety
/// `mask`, `entropy` valid for `rows*cols` elements, `hist` for `TKM_RADIX_BINS`.
#[no_mangle]
pub unsafe extern "C" fn tkm_entropy_quantile_local_histogram(
    state: *const tkm_entropy_quantile,
    exec: *const tkm_exec_options,
    mask: *const u8,
    entropy: *const f32,
    rows: usize,
    cols: usize,
    hist: *mut u64,
) -> tkm_status {
    guard(|| {
        let st = eq_read(state)?;
        let exec = exec_from(exec)?;
        let n = mul(rows, cols)?;
        let (m, e) = (input(mask, n)?, input(entropy, n)?);
        let dst = inout(hist, RADIX_BINS)?;
        let mut h = [0u64; RADIX_BINS];
        st.local_histogram(exec, BatchShape::new(rows, cols), m, e, &mut h)?;
        dst.copy_from_slice(&h);
        Ok(())
    })
}

/// Takes the element-wise sum over ranks of this round's histograms (`TKM_RADIX_BINS`
/// counts) and advances `*state`.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (not a histogram round; a histogram whose total is
/// not the number of candidates, i.e. a wrong global count or a missing rank; a corrupted
/// state). `*state` is unchanged on error.
///
/// # Safety
/// `state` valid for reads and writes of one struct, `merged` for `TKM_RADIX_BINS` counts.
#[no_mangle]
pub unsafe extern "C" fn tkm_entropy_quantile_push_histogram(
    state: *mut tkm_entropy_quantile,
    merged: *const u64,
) -> tkm_status {
    guard(|| {
        let mut st = eq_read(state)?;
        let h: &[u64; RADIX_BINS] = input(merged, RADIX_BINS)?.try_into().map_err(|_| TKM_STATUS_LENGTH_MISMATCH)?;
        st.push_histogram(h)?;
        write(state, tkm_entropy_quantile { words: st.to_words() })
    })
}

/// This rank's smallest valid entropy above the selected `v_lo` (`+inf` if none) into `*out`.
///
/// Errors: as `tkm_entropy_quantile_local_histogram` (outside the min-above step:
/// `_INVALID_ARGUMENT`).
///
/// # Safety
/// `mask`, `entropy` valid for `rows*cols` elements, `out` for one float.
#[no_mangle]
pub unsafe extern "C" fn tkm_entropy_quantile_local_min_above(
    state: *const tkm_entropy_quantile,
    exec: *const tkm_exec_options,
    mask: *const u8,
    entropy: *const f32,
    rows: usize,
    cols: usize,
    out: *mut f32,
) -> tkm_status {
    guard(|| {
        let st = eq_read(state)?;
        let exec = exec_from(exec)?;
        let n = mul(rows, cols)?;
        let (m, e) = (input(mask, n)?, input(entropy, n)?);
        check_out(out, 1)?;
        let v = st.local_min_above(exec, BatchShape::new(rows, cols), m, e)?;
        write(out, v)
    })
}

/// Takes the minimum over ranks of `tkm_entropy_quantile_local_min_above` and finishes.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (not the min-above step; a minimum that is not a
/// finite value above `v_lo`; a corrupted state).
///
/// # Safety
/// `state` valid for reads and writes of one struct.
#[no_mangle]
pub unsafe extern "C" fn tkm_entropy_quantile_push_min_above(
    state: *mut tkm_entropy_quantile,
    merged_min: f32,
) -> tkm_status {
    guard(|| {
        let mut st = eq_read(state)?;
        st.push_min_above(merged_min)?;
        write(state, tkm_entropy_quantile { words: st.to_words() })
    })
}

/// The threshold once the step is `TKM_QUANTILE_STEP_DONE`: `*has_theta = 1` and `*theta`,
/// or `*has_theta = 0` when no token is valid anywhere (then nothing is kept).
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (not finished, or a corrupted state).
///
/// # Safety
/// `state` valid for one struct, `has_theta` for one `uint32_t`, `theta` for one float.
#[no_mangle]
pub unsafe extern "C" fn tkm_entropy_quantile_threshold(
    state: *const tkm_entropy_quantile,
    has_theta: *mut u32,
    theta: *mut f32,
) -> tkm_status {
    guard(|| {
        let st = eq_read(state)?;
        check_out(has_theta, 1)?;
        check_out(theta, 1)?;
        if st.step() != QuantileStep::Done {
            return Err(TKM_STATUS_INVALID_ARGUMENT);
        }
        let t = st.threshold();
        write(theta, t.unwrap_or(0.0))?;
        write(has_theta, t.is_some() as u32)
    })
}

/// The top-entropy threshold on one rank: TRL's `get_high_entropy_mask` threshold
/// (`torch.quantile(H[mask], 1 - rho)`, linear interpolation), `*has_theta = 0` when no
/// token is valid.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (`rho` outside (0, 1]), `_NON_FINITE` (a NaN or
/// infinite entropy at a valid position).
///
/// # Safety
/// `mask`, `entropy` valid for `rows*cols` elements; `has_theta`, `theta` for one element.
#[no_mangle]
pub unsafe extern "C" fn tkm_top_entropy_threshold(
    exec: *const tkm_exec_options,
    mask: *const u8,
    entropy: *const f32,
    rows: usize,
    cols: usize,
    rho: f32,
    has_theta: *mut u32,
    theta: *mut f32,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let n = mul(rows, cols)?;
        let (m, e) = (input(mask, n)?, input(entropy, n)?);
        check_out(has_theta, 1)?;
        check_out(theta, 1)?;
        let t = seed::top_entropy_threshold(exec, BatchShape::new(rows, cols), m, e, rho)?;
        write(theta, t.unwrap_or(0.0))?;
        write(has_theta, t.is_some() as u32)
    })
}

/// `keep[j] = (mask[j] != 0 && entropy[j] >= theta)` (0/1); `has_theta = 0` keeps nothing.
/// `*kept` (optional, NULL = not wanted) receives the number kept.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (`has_theta` not 0/1, a NaN `theta`).
///
/// # Safety
/// `mask`, `entropy`, `keep` valid for `rows*cols` elements; `kept` NULL or one `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn tkm_top_entropy_mask(
    exec: *const tkm_exec_options,
    mask: *const u8,
    entropy: *const f32,
    rows: usize,
    cols: usize,
    has_theta: u32,
    theta: f32,
    keep: *mut u8,
    kept: *mut u64,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let n = mul(rows, cols)?;
        let (m, e) = (input(mask, n)?, input(entropy, n)?);
        let theta = match has_theta {
            0 => None,
            1 => Some(theta),
            _ => return Err(TKM_STATUS_INVALID_ARGUMENT),
        };
        if !kept.is_null() {
            check_out(kept, 1)?;
        }
        let mut o = Out::new(keep, n)?;
        let c = seed::top_entropy_mask(exec, BatchShape::new(rows, cols), m, e, theta, &mut o.buf)?;
        o.commit();
        if !kept.is_null() {
            write(kept, c)?;
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------
// D³S
// ---------------------------------------------------------------------------------------

/// Scratch of the D³S sample selection for `n` values (allocated per call).
struct D3sBufs {
    order: Vec<u32>,
    values: Vec<f32>,
    prefix: Vec<f64>,
}

impl D3sBufs {
    fn new(n: usize) -> Res<D3sBufs> {
        let (o, v, p) = seed::d3s_scratch_len(n)?;
        Ok(D3sBufs { order: scratch(o)?, values: scratch(v)?, prefix: scratch(p)? })
    }
}

/// The exact max-variance subset of size `m` of `x` (`n` floats): `keep[i] = 1` for the
/// chosen indices (PODS Lemma 3.1: some `k` largest and `m - k` smallest; the smallest such
/// `k` on ties).
///
/// Errors: `TKM_STATUS_NON_FINITE` (a NaN or infinite value), `_INVALID_ARGUMENT`
/// (`n >= 2^32`), `_OUT_OF_MEMORY`.
///
/// # Safety
/// `x` and `keep` valid for `n` elements.
#[no_mangle]
pub unsafe extern "C" fn tkm_max_variance_subset(x: *const f32, n: usize, m: usize, keep: *mut u8) -> tkm_status {
    guard(|| {
        let x = input(x, n)?;
        let mut o = Out::new(keep, n)?;
        let mut s = D3sBufs::new(n)?;
        seed::max_variance_subset(x, m, &mut s.order, &mut s.prefix, &mut o.buf)?;
        o.commit();
        Ok(())
    })
}

/// D³S sample selection: `keep_rows[b] = 1` for the `n_keep` responses of the max-variance
/// subset of `adv_seq` (`n` floats). With `group_stage = 1` each group first keeps its
/// max-variance subset of size `per_group`, grouped by `group_ids`/`group_size` (exactly one
/// of them, as `tkm_grpo_advantage`); with `group_stage = 0` the grouping arguments are not
/// read.
///
/// Errors: `TKM_STATUS_NON_FINITE` (an advantage), `_INVALID_ARGUMENT` (`group_stage` not
/// 0/1, the grouping), `_OUT_OF_MEMORY`.
///
/// # Safety
/// `adv_seq`, `keep_rows` valid for `n` elements; `group_ids` NULL or valid for `n`.
#[no_mangle]
pub unsafe extern "C" fn tkm_d3s_select_samples(
    adv_seq: *const f32,
    n: usize,
    group_ids: *const u32,
    group_size: usize,
    group_stage: u32,
    per_group: usize,
    n_keep: usize,
    keep_rows: *mut u8,
) -> tkm_status {
    guard(|| {
        let a = input(adv_seq, n)?;
        let (g, per_group) = match group_stage {
            0 => (Groups::Contiguous { size: 1 }, None),
            1 => (groups(n, group_ids, group_size)?, Some(per_group)),
            _ => return Err(TKM_STATUS_INVALID_ARGUMENT),
        };
        let mut o = Out::new(keep_rows, n)?;
        let mut s = D3sBufs::new(n)?;
        let sc = D3sScratch { order: &mut s.order, values: &mut s.values, prefix: &mut s.prefix };
        seed::d3s_select_samples(a, g, per_group, n_keep, sc, &mut o.buf)?;
        o.commit();
        Ok(())
    })
}

/// The D³S schedule: the kept fractions of samples (`n_*`) and tokens (`k_*`) at the start
/// and the end of training, each in (0, 1]. Initialise with `tkm_d3s_schedule_options_init`
/// (the library's choice, the paper's values being unpublished: `n_init = 0.5`,
/// `n_final = 1`, `k_init = 0.2`, `k_final = 1`). NULL means the defaults.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct tkm_d3s_schedule_options {
    /// `sizeof(tkm_d3s_schedule_options)` as the caller compiled it.
    pub struct_size: usize,
    /// Fraction of the batch kept at progress 0.
    pub n_init: f32,
    /// Fraction of the batch kept at progress 1.
    pub n_final: f32,
    /// Fraction of the tokens kept at progress 0.
    pub k_init: f32,
    /// Fraction of the tokens kept at progress 1.
    pub k_final: f32,
}

options!(tkm_d3s_schedule_options {
    let d = D3sSchedule::default();
    n_init: d.n_init,
    n_final: d.n_final,
    k_init: d.k_init,
    k_final: d.k_final,
});

/// Writes the default D³S schedule into `*opts`.
///
/// # Safety
/// `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
#[no_mangle]
pub unsafe extern "C" fn tkm_d3s_schedule_options_init(opts: *mut tkm_d3s_schedule_options) -> tkm_status {
    init_options(opts)
}

/// The D³S budgets at training progress `p` in [0, 1] for a batch of `batch` responses:
/// `*n_keep = clamp(round(N(p) * batch), 1, batch)` and `*k_frac = K(p)`, both linear in `p`.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (`p` outside [0, 1], a fraction outside (0, 1]).
///
/// # Safety
/// `opts` NULL or valid; `n_keep`, `k_frac` valid for one element.
#[no_mangle]
pub unsafe extern "C" fn tkm_d3s_schedule(
    p: f32,
    opts: *const tkm_d3s_schedule_options,
    batch: usize,
    n_keep: *mut usize,
    k_frac: *mut f32,
) -> tkm_status {
    guard(|| {
        let o = read_options(opts)?;
        check_out(n_keep, 1)?;
        check_out(k_frac, 1)?;
        let s = D3sSchedule { n_init: o.n_init, n_final: o.n_final, k_init: o.k_init, k_final: o.k_final };
        let (n, k) = seed::d3s_schedule(p, &s, batch)?;
        write(n_keep, n)?;
        write(k_frac, k)
    })
}

/// D³S token mask: `out[b,t] = 1` for the `ceil(k_frac * n)` tokens with the largest
/// `|adv| * entropy` among the `n` valid tokens of the rows with `keep_rows[b] != 0` (ties:
/// lower flat index first). `*kept` (optional) receives the count.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (`k_frac` outside [0, 1]), `_NON_FINITE` (an
/// advantage or entropy of a taking-part token).
///
/// # Safety
/// `mask`, `adv`, `entropy`, `out` valid for `rows*cols` elements, `keep_rows` for `rows`,
/// `kept` NULL or one `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn tkm_d3s_token_mask(
    exec: *const tkm_exec_options,
    mask: *const u8,
    adv: *const f32,
    entropy: *const f32,
    keep_rows: *const u8,
    rows: usize,
    cols: usize,
    k_frac: f32,
    out: *mut u8,
    kept: *mut u64,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let n = mul(rows, cols)?;
        let (m, a, e, kr) = (input(mask, n)?, input(adv, n)?, input(entropy, n)?, input(keep_rows, rows)?);
        if !kept.is_null() {
            check_out(kept, 1)?;
        }
        let mut o = Out::new(out, n)?;
        let inp = D3sTokenInputs { shape: BatchShape::new(rows, cols), mask: m, adv: a, entropy: e, keep_rows: kr };
        let c = seed::d3s_token_mask(exec, &inp, k_frac, &mut o.buf)?;
        o.commit();
        if !kept.is_null() {
            write(kept, c)?;
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------
// PSR / NSR / W-REINFORCE, GRPO-N, expected logit update
// ---------------------------------------------------------------------------------------

/// Positive-sample reinforcement: correct rows only, `A = G`.
pub const TKM_NSR_MODE_PSR: u32 = 0;
/// Negative-sample reinforcement: incorrect rows only, `A = G - 1`.
pub const TKM_NSR_MODE_NSR: u32 = 1;
/// W-REINFORCE: every row, correct rows weighted by `lambda` (default).
pub const TKM_NSR_MODE_WEIGHTED: u32 = 2;

/// PSR/NSR/W-REINFORCE options. Initialise with `tkm_nsr_options_init` (W-REINFORCE,
/// `lambda = 0.1` as the paper recommends, `gamma = 1`). NULL means the defaults.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct tkm_nsr_options {
    /// `sizeof(tkm_nsr_options)` as the caller compiled it.
    pub struct_size: usize,
    /// `TKM_NSR_MODE_*`.
    pub mode: u32,
    /// Discount of the returns-to-go, finite and >= 0.
    pub gamma: f32,
    /// W-REINFORCE's `positive_advantage_weight` (finite; `TKM_NSR_MODE_WEIGHTED` only).
    pub lambda: f32,
    /// Must be 0.
    pub reserved: u32,
}

options!(tkm_nsr_options { mode: TKM_NSR_MODE_WEIGHTED, gamma: 1.0, lambda: 0.1, reserved: 0 });

/// Writes the default PSR/NSR/W-REINFORCE options into `*opts`.
///
/// # Safety
/// `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
#[no_mangle]
pub unsafe extern "C" fn tkm_nsr_options_init(opts: *mut tkm_nsr_options) -> tkm_status {
    init_options(opts)
}

/// PSR/NSR/W-REINFORCE advantages `adv` (`rows*cols`, 0 at padding and on dropped rows) and
/// `keep_rows` (1 = the row stays in the batch; PSR keeps the rows whose valid scores sum to
/// 1, NSR those summing to 0).
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (mode, `gamma`, `lambda`, `reserved`),
/// `_NON_FINITE` (a reward or score at a valid position).
///
/// # Safety
/// `mask`, `token_rewards`, `scores`, `adv` valid for `rows*cols` elements, `keep_rows` for
/// `rows`, `opts` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn tkm_nsr_advantage(
    exec: *const tkm_exec_options,
    mask: *const u8,
    token_rewards: *const f32,
    scores: *const f32,
    rows: usize,
    cols: usize,
    opts: *const tkm_nsr_options,
    keep_rows: *mut u8,
    adv: *mut f32,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let o = read_options(opts)?;
        let mode = match o.mode {
            TKM_NSR_MODE_PSR => NsrMode::Psr,
            TKM_NSR_MODE_NSR => NsrMode::Nsr,
            TKM_NSR_MODE_WEIGHTED => NsrMode::Weighted { lambda: o.lambda },
            _ => return Err(TKM_STATUS_INVALID_ARGUMENT),
        };
        if o.reserved != 0 {
            return Err(TKM_STATUS_INVALID_ARGUMENT);
        }
        let n = mul(rows, cols)?;
        let (m, r, s) = (input(mask, n)?, input(token_rewards, n)?, input(scores, n)?);
        let mut k = Out::new(keep_rows, rows)?;
        let mut a = Out::new(adv, n)?;
        let cfg = NsrCfg { mode, gamma: o.gamma };
        let out = NsrOut { keep_rows: &mut k.buf, adv: &mut a.buf };
        seed::nsr_advantage(exec, BatchShape::new(rows, cols), m, r, s, &cfg, out)?;
        k.commit();
        a.commit();
        Ok(())
    })
}

/// GRPO-N: positive-advantage rows keep advantage 0 and stay in every normaliser (default).
pub const TKM_NEG_ZERO_POSITIVES: u32 = 0;
/// GRPO-N: positive-advantage rows leave the batch (their mask row is cleared).
pub const TKM_NEG_DROP_POSITIVES: u32 = 1;

/// GRPO-N / GSPO-N (best understanding of arXiv 2510.04028): in place,
/// `adv_seq[b] = min(adv_seq[b], 0)`, and with `TKM_NEG_DROP_POSITIVES` the mask row of every
/// positive row is cleared. `*positives` (optional) receives the number of positive rows.
///
/// Errors: `TKM_STATUS_NON_FINITE` (an advantage), `_INVALID_ARGUMENT` (mode), `_OVERLAP`
/// (`mask` and `adv_seq` overlap). Nothing is changed on error.
///
/// # Safety
/// `mask` valid for `rows*cols` bytes and `adv_seq` for `rows` floats, both read and written;
/// `positives` NULL or one `size_t`.
#[no_mangle]
pub unsafe extern "C" fn tkm_grpo_negative_only(
    exec: *const tkm_exec_options,
    mask: *mut u8,
    adv_seq: *mut f32,
    rows: usize,
    cols: usize,
    mode: u32,
    positives: *mut usize,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let mode = match mode {
            TKM_NEG_ZERO_POSITIVES => NegMode::ZeroPositives,
            TKM_NEG_DROP_POSITIVES => NegMode::DropPositives,
            _ => return Err(TKM_STATUS_INVALID_ARGUMENT),
        };
        let n = mul(rows, cols)?;
        if !positives.is_null() {
            check_out(positives, 1)?;
        }
        if overlaps(mask, n, adv_seq, rows) {
            return Err(TKM_STATUS_OVERLAP);
        }
        let m = inout(mask, n)?;
        let a = inout(adv_seq, rows)?;
        let p = seed::grpo_negative_only(exec, BatchShape::new(rows, cols), m, a, mode)?;
        if !positives.is_null() {
            write(positives, p)?;
        }
        Ok(())
    })
}

/// The expected logit update of one softmax policy-gradient step:
/// `out[b] = lr * probs[b] * (adv[b] - sum_a probs[a] * adv[a])` over `n` actions.
///
/// Errors: `TKM_STATUS_NON_FINITE` (a probability, advantage or `lr`), `_INVALID_ARGUMENT`
/// (a negative probability).
///
/// # Safety
/// `probs`, `adv`, `out` valid for `n` floats.
#[no_mangle]
pub unsafe extern "C" fn tkm_expected_logit_update(
    probs: *const f32,
    adv: *const f32,
    n: usize,
    lr: f32,
    out: *mut f32,
) -> tkm_status {
    guard(|| {
        let (p, a) = (input(probs, n)?, input(adv, n)?);
        let mut o = Out::new(out, n)?;
        seed::expected_logit_update(p, a, lr, &mut o.buf)?;
        o.commit();
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------
// NTHR and THR
// ---------------------------------------------------------------------------------------

/// Dense `[rows, cols]` row-major matrix input (`rows*cols` floats; NULL only when empty).
unsafe fn dense<'a>(p: *const f32, rows: usize, cols: usize) -> Res<Mat<'a, f32>> {
    let data = input(p, mul(rows, cols)?)?;
    Ok(Mat::new(data, rows, cols, cols.max(1))?)
}

/// The features of `n` tokens: prediction errors `g` (`[n, vstar]`) and hidden states `h`
/// (`[n, d]`), dense row-major.
unsafe fn features<'a>(g: *const f32, h: *const f32, n: usize, vstar: usize, d: usize) -> Res<Features<'a>> {
    Ok(Features { g: dense(g, n, vstar)?, h: dense(h, n, d)? })
}

/// NTHR/THR prediction errors restricted to the group's sampled ids `V*`:
/// `out[i][c] = (c == sampled_col[i]) - q[i][c]` for `q` the old policy's probabilities
/// gathered on `V*` (`[n, vstar]`, dense row-major, not renormalised).
///
/// Errors: `TKM_STATUS_LABEL_OUT_OF_RANGE` (a column `>= vstar`), `_NON_FINITE` (a `q`).
///
/// # Safety
/// `q`, `out` valid for `n*vstar` floats, `sampled_col` for `n`.
#[no_mangle]
pub unsafe extern "C" fn tkm_prediction_error_restricted(
    exec: *const tkm_exec_options,
    q: *const f32,
    sampled_col: *const u32,
    n: usize,
    vstar: usize,
    out: *mut f32,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let q = dense(q, n, vstar)?;
        let cols = input(sampled_col, n)?;
        let mut o = Out::new(out, mul(n, vstar)?)?;
        seed::prediction_error_restricted(exec, q, cols, MatMut::new(&mut o.buf, n, vstar, vstar.max(1))?)?;
        o.commit();
        Ok(())
    })
}

/// Influence scores `out[j] = sum_i w_i <g_i, g_j> <h_i, h_j>` of `n_query` query tokens
/// against `n_src` source tokens (`src_weight` NULL = all 1). NTHR: sources = the tokens of
/// the correct responses, queries = those of the incorrect (`s-`) or correct (`s+`) ones.
/// Dot products in f32 in index order, the sum over sources in f64 in source order.
///
/// Errors: `TKM_STATUS_NON_FINITE` (a feature or weight).
///
/// # Safety
/// `src_g`/`query_g` valid for `n*vstar` floats, `src_h`/`query_h` for `n*d`, `src_weight`
/// NULL or `n_src`, `out` for `n_query`.
#[no_mangle]
pub unsafe extern "C" fn tkm_influence_scores(
    exec: *const tkm_exec_options,
    src_g: *const f32,
    src_h: *const f32,
    src_weight: *const f32,
    n_src: usize,
    query_g: *const f32,
    query_h: *const f32,
    n_query: usize,
    vstar: usize,
    d: usize,
    out: *mut f32,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let src = features(src_g, src_h, n_src, vstar, d)?;
        let query = features(query_g, query_h, n_query, vstar, d)?;
        let w = opt_input(src_weight, n_src)?;
        let mut o = Out::new(out, n_query)?;
        seed::influence_scores(exec, &src, w, &query, &mut o.buf)?;
        o.commit();
        Ok(())
    })
}

/// NTHR's threshold `tau = beta * min_i mean(pos_scores of response i)`: `pos_scores` holds
/// the `s+` scores of the correct responses' tokens, response after response, and
/// `pos_lens[i]` their lengths (`n_responses` of them); empty responses are skipped.
///
/// Errors: `TKM_STATUS_LENGTH_MISMATCH` (`n_scores` is not the sum of the lengths),
/// `_INVALID_ARGUMENT` (no non-empty response, `beta` not finite), `_NON_FINITE` (a score).
///
/// # Safety
/// `pos_scores` valid for `n_scores` floats, `pos_lens` for `n_responses`, `tau` for one.
#[no_mangle]
pub unsafe extern "C" fn tkm_nthr_threshold(
    pos_scores: *const f32,
    n_scores: usize,
    pos_lens: *const usize,
    n_responses: usize,
    beta: f32,
    tau: *mut f32,
) -> tkm_status {
    guard(|| {
        let s = input(pos_scores, n_scores)?;
        let l = input(pos_lens, n_responses)?;
        check_out(tau, 1)?;
        let t = seed::nthr_threshold(s, l, beta)?;
        write(tau, t)
    })
}

/// NTHR's factor `eta = 2 |0.5 - correct/group|` of a mixed group.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` unless `0 < correct < group`.
///
/// # Safety
/// `eta` valid for one float.
#[no_mangle]
pub unsafe extern "C" fn tkm_nthr_eta(correct: usize, group: usize, eta: *mut f32) -> tkm_status {
    guard(|| {
        check_out(eta, 1)?;
        let e = seed::nthr_eta(correct, group)?;
        write(eta, e)
    })
}

/// NTHR in place: `adv[j] *= eta` where `valid[j] != 0` and `neg_scores[j] > tau` (the tokens
/// of one mixed group's incorrect responses). `*count` (optional) receives how many.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (`tau` NaN, `eta` not finite), `_NON_FINITE` (a NaN
/// score at a valid token), `_OVERLAP` (`adv` overlaps an input). Nothing changes on error.
///
/// # Safety
/// `adv` (read and written), `neg_scores` valid for `n` floats, `valid` for `n` bytes,
/// `count` NULL or one `size_t`.
#[no_mangle]
pub unsafe extern "C" fn tkm_nthr_reweight(
    exec: *const tkm_exec_options,
    adv: *mut f32,
    neg_scores: *const f32,
    valid: *const u8,
    n: usize,
    tau: f32,
    eta: f32,
    count: *mut usize,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        if overlaps(adv, n, neg_scores, n) || overlaps(adv, n, valid, n) {
            return Err(TKM_STATUS_OVERLAP);
        }
        let (s, v) = (input(neg_scores, n)?, input(valid, n)?);
        if !count.is_null() {
            check_out(count, 1)?;
        }
        let a = inout(adv, n)?;
        let c = seed::nthr_reweight(exec, a, s, v, tau, eta)?;
        if !count.is_null() {
            write(count, c)?;
        }
        Ok(())
    })
}

/// THR: train only on dominant tokens (`|THR| > tau`).
pub const TKM_THR_ONLY_DOMINANT: u32 = 0;
/// THR: steer dominant tokens by the sign of THR with `p` (default, `p = 0`: GRPO).
pub const TKM_THR_STEER: u32 = 1;

/// THR options (best understanding of arXiv 2510.03669). Initialise with
/// `tkm_thr_options_init` (`TKM_THR_STEER`, `p = 0`, `keep_non_dominant = 1`: identical to
/// GRPO). NULL means the defaults.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct tkm_thr_options {
    /// `sizeof(tkm_thr_options)` as the caller compiled it.
    pub struct_size: usize,
    /// `TKM_THR_*`.
    pub mode: u32,
    /// The steering parameter (`TKM_THR_STEER`; finite; > 0 exploitation, < 0 exploration).
    pub p: f32,
    /// `TKM_THR_STEER`: 1 = non-dominant tokens keep their advantage, 0 = it is zeroed.
    pub keep_non_dominant: u32,
    /// Must be 0.
    pub reserved: u32,
}

options!(tkm_thr_options { mode: TKM_THR_STEER, p: 0.0, keep_non_dominant: 1, reserved: 0 });

/// Writes the default THR options into `*opts`.
///
/// # Safety
/// `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
#[no_mangle]
pub unsafe extern "C" fn tkm_thr_options_init(opts: *mut tkm_thr_options) -> tkm_status {
    init_options(opts)
}

/// THR scores `thr[j] = adv[j] * (sum_i w_i <g_i, g_j> <h_i, h_j> - self term)` of `n_query`
/// tokens against the `n_src` tokens of the correct responses (`src_weight` NULL = unit
/// weights; pass `1/|y_i|` per token for the inverse-length weighting). `self_src` (NULL =
/// keep every term) gives, per query token, its own source row or `UINT32_MAX`: its own term
/// is then left out.
///
/// Errors: `TKM_STATUS_NON_FINITE` (a feature, weight or advantage), `_INVALID_ARGUMENT` (a
/// `self_src` row out of range).
///
/// # Safety
/// As `tkm_influence_scores`; `adv` and `thr` valid for `n_query` floats, `self_src` NULL
/// or `n_query`.
#[no_mangle]
pub unsafe extern "C" fn tkm_thr_scores(
    exec: *const tkm_exec_options,
    src_g: *const f32,
    src_h: *const f32,
    src_weight: *const f32,
    n_src: usize,
    query_g: *const f32,
    query_h: *const f32,
    adv: *const f32,
    self_src: *const u32,
    n_query: usize,
    vstar: usize,
    d: usize,
    thr: *mut f32,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let src = features(src_g, src_h, n_src, vstar, d)?;
        let query = features(query_g, query_h, n_query, vstar, d)?;
        let w = opt_input(src_weight, n_src)?;
        let a = input(adv, n_query)?;
        let me = opt_input(self_src, n_query)?;
        let mut o = Out::new(thr, n_query)?;
        seed::thr_scores(exec, &src, w, &query, a, me, &mut o.buf)?;
        o.commit();
        Ok(())
    })
}

/// THR in place: `adv[j]` becomes `A'` from `thr[j]` and `tau` under `opts` (see
/// `tkm_thr_options`). `*dominant` (optional) receives the number of dominant tokens.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (mode, `p`, `keep_non_dominant`, `reserved`, `tau`
/// NaN), `_NON_FINITE` (a NaN THR), `_OVERLAP`. Nothing changes on error.
///
/// # Safety
/// `adv` (read and written), `thr` valid for `n` floats; `opts` NULL or valid; `dominant`
/// NULL or one `size_t`.
#[no_mangle]
pub unsafe extern "C" fn tkm_thr_reweight(
    exec: *const tkm_exec_options,
    adv: *mut f32,
    thr: *const f32,
    n: usize,
    tau: f32,
    opts: *const tkm_thr_options,
    dominant: *mut usize,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let o = read_options(opts)?;
        let mode = match o.mode {
            TKM_THR_ONLY_DOMINANT => ThrMode::OnlyDominantBestGuess,
            TKM_THR_STEER => ThrMode::SteerBestGuess { p: o.p },
            _ => return Err(TKM_STATUS_INVALID_ARGUMENT),
        };
        let non_dominant = if flag(o.keep_non_dominant)? { NonDominant::Keep } else { NonDominant::Zero };
        if o.reserved != 0 {
            return Err(TKM_STATUS_INVALID_ARGUMENT);
        }
        if overlaps(adv, n, thr, n) {
            return Err(TKM_STATUS_OVERLAP);
        }
        let t = input(thr, n)?;
        if !dominant.is_null() {
            check_out(dominant, 1)?;
        }
        let a = inout(adv, n)?;
        let c = seed::thr_reweight(exec, a, t, tau, &ThrCfg { mode, non_dominant })?;
        if !dominant.is_null() {
            write(dominant, c)?;
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------
// RMT and the linear quantile
// ---------------------------------------------------------------------------------------

/// `torch.quantile(values[mask != 0], q)` with linear interpolation (`q` in [0, 1], the
/// position computed in double): `*has_value = 0` when no position is valid.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (`q`), `_NON_FINITE` (a NaN or infinite value at a
/// valid position).
///
/// # Safety
/// `mask`, `values` valid for `rows*cols` elements; `has_value`, `value` for one.
#[no_mangle]
pub unsafe extern "C" fn tkm_linear_quantile(
    exec: *const tkm_exec_options,
    mask: *const u8,
    values: *const f32,
    rows: usize,
    cols: usize,
    q: f64,
    has_value: *mut u32,
    value: *mut f32,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let n = mul(rows, cols)?;
        let (m, v) = (input(mask, n)?, input(values, n)?);
        check_out(has_value, 1)?;
        check_out(value, 1)?;
        let t = seed::linear_quantile(exec, BatchShape::new(rows, cols), m, v, q)?;
        write(value, t.unwrap_or(0.0))?;
        write(has_value, t.is_some() as u32)
    })
}

/// RMT's token budget `max(b_min, floor(b0 * gamma^(step/total)))` into `*budget`.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (`total = 0`, `gamma` not finite and > 0).
///
/// # Safety
/// `budget` valid for one `uint32_t`.
#[no_mangle]
pub unsafe extern "C" fn tkm_rmt_token_budget(
    step: u64,
    total: u64,
    b0: u32,
    b_min: u32,
    gamma: f32,
    budget: *mut u32,
) -> tkm_status {
    guard(|| {
        check_out(budget, 1)?;
        let b = seed::rmt_token_budget(step, total, b0, b_min, gamma)?;
        write(budget, b)
    })
}

/// RMT's triangular length reward of a reasoning length `len` against `budget` into `*out`.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (`budget = 0`, `r_max` not finite).
///
/// # Safety
/// `out` valid for one float.
#[no_mangle]
pub unsafe extern "C" fn tkm_rmt_length_reward(len: u32, budget: u32, r_max: f32, out: *mut f32) -> tkm_status {
    guard(|| {
        check_out(out, 1)?;
        let r = seed::rmt_length_reward(len, budget, r_max)?;
        write(out, r)
    })
}

/// RMT's curriculum. Initialise with `tkm_rmt_curriculum_options_init` (the library's
/// choice: `t1_frac = 0.3`, `t2_frac = 0.7`, `p1 = {0.6, 0.3, 0.1}`, `p2 = {0.1, 0.3, 0.6}`
/// over easy, medium, hard). NULL means the defaults.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct tkm_rmt_curriculum_options {
    /// `sizeof(tkm_rmt_curriculum_options)` as the caller compiled it.
    pub struct_size: usize,
    /// `t1` as a fraction of the training steps.
    pub t1_frac: f32,
    /// `t2` as a fraction of the training steps.
    pub t2_frac: f32,
    /// Tier probabilities before `t1`.
    pub p1: [f32; 3],
    /// Tier probabilities from `t2` on.
    pub p2: [f32; 3],
}

options!(tkm_rmt_curriculum_options {
    let d = seed::RmtCurriculum::default();
    t1_frac: d.t1_frac,
    t2_frac: d.t2_frac,
    p1: d.p1,
    p2: d.p2,
});

/// Writes the default RMT curriculum into `*opts`.
///
/// # Safety
/// `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
#[no_mangle]
pub unsafe extern "C" fn tkm_rmt_curriculum_options_init(opts: *mut tkm_rmt_curriculum_options) -> tkm_status {
    init_options(opts)
}

/// RMT's tier distribution at `step` of `total` into `out[3]` (easy, medium, hard).
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (`total = 0`, fractions not `0 <= t1 <= t2 <= 1`,
/// probabilities negative, not finite or all 0).
///
/// # Safety
/// `opts` NULL or valid; `out` valid for 3 floats.
#[no_mangle]
pub unsafe extern "C" fn tkm_rmt_curriculum_probs(
    step: u64,
    total: u64,
    opts: *const tkm_rmt_curriculum_options,
    out: *mut f32,
) -> tkm_status {
    guard(|| {
        let o = read_options(opts)?;
        let dst = inout(out, 3)?;
        let c = seed::RmtCurriculum { t1_frac: o.t1_frac, t2_frac: o.t2_frac, p1: o.p1, p2: o.p2 };
        let p = seed::rmt_curriculum_probs(step, total, &c)?;
        dst.copy_from_slice(&p);
        Ok(())
    })
}

/// Entropy tiers of the candidate tokens (`mask != 0`): `tiers[j]` = 1 easy (`H < theta1`),
/// 2 medium, 3 hard (`H >= theta2`), 0 padding, with `theta1`, `theta2` the linear quantiles
/// at `q1 <= q2` (the library's terciles: 1/3, 2/3). `thresholds` (optional, 2 floats)
/// receives them (0, 0 without candidates).
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (`q1`, `q2`), `_NON_FINITE` (a candidate entropy).
///
/// # Safety
/// `mask`, `entropy`, `tiers` valid for `rows*cols` elements; `thresholds` NULL or 2 floats.
#[no_mangle]
pub unsafe extern "C" fn tkm_entropy_tiers(
    exec: *const tkm_exec_options,
    mask: *const u8,
    entropy: *const f32,
    rows: usize,
    cols: usize,
    q1: f64,
    q2: f64,
    tiers: *mut u8,
    thresholds: *mut f32,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let n = mul(rows, cols)?;
        let (m, e) = (input(mask, n)?, input(entropy, n)?);
        if !thresholds.is_null() {
            inout(thresholds, 2)?;
        }
        let mut o = Out::new(tiers, n)?;
        let t = seed::entropy_tiers(exec, BatchShape::new(rows, cols), m, e, (q1, q2), &mut o.buf)?;
        o.commit();
        if !thresholds.is_null() {
            let (a, b) = t.unwrap_or((0.0, 0.0));
            inout(thresholds, 2)?.copy_from_slice(&[a, b]);
        }
        Ok(())
    })
}

/// Samples one position from `tiers` (`n` codes from `tkm_entropy_tiers`): a tier by the
/// distribution `p[3]` (empty tiers' probability moved to the others in proportion) with
/// the uniform `u_tier` in [0, 1), then the `floor(u_token * n_tier)`-th token of that tier
/// in index order. `*found = 0` when no token has a tier.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (uniforms outside [0, 1), a bad `p`, a tier code
/// above 3).
///
/// # Safety
/// `tiers` valid for `n` bytes, `p` for 3 floats, `found` and `pos` for one element each.
#[no_mangle]
pub unsafe extern "C" fn tkm_rmt_pick_position(
    tiers: *const u8,
    n: usize,
    p: *const f32,
    u_tier: f64,
    u_token: f64,
    found: *mut u32,
    pos: *mut usize,
) -> tkm_status {
    guard(|| {
        let t = input(tiers, n)?;
        let p: [f32; 3] = input(p, 3)?.try_into().map_err(|_| TKM_STATUS_LENGTH_MISMATCH)?;
        check_out(found, 1)?;
        check_out(pos, 1)?;
        let j = seed::rmt_pick_position(t, &p, u_tier, u_token)?;
        write(pos, j.unwrap_or(0))?;
        write(found, j.is_some() as u32)
    })
}

/// RMT's combined reward `out[i] = (1 - w) * match01[i] + w * len_r[i]` (library default
/// `w = 0.1`).
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (`w` not finite), `_NON_FINITE` (an input).
///
/// # Safety
/// `match01`, `len_r`, `out` valid for `n` floats.
#[no_mangle]
pub unsafe extern "C" fn tkm_rmt_combined_reward(
    match01: *const f32,
    len_r: *const f32,
    n: usize,
    w: f32,
    out: *mut f32,
) -> tkm_status {
    guard(|| {
        let (m, l) = (input(match01, n)?, input(len_r, n)?);
        let mut o = Out::new(out, n)?;
        seed::rmt_combined_reward(m, l, w, &mut o.buf)?;
        o.commit();
        Ok(())
    })
}

/// RMT's next-token-prediction term: `*loss = -mean(logp_target)` over the valid positions
/// outside the RL positions (0 if none) and `grad = dloss/dlogp_target` (`-1/N` there, 0
/// elsewhere). Add `lambda * loss` (0.1) to the RL loss.
///
/// Errors: `TKM_STATUS_NON_FINITE` (a NaN or `+inf` log-probability at a counted position).
///
/// # Safety
/// `mask`, `rl_positions`, `logp_target`, `grad` valid for `rows*cols` elements, `loss` for
/// one float.
#[no_mangle]
pub unsafe extern "C" fn tkm_ntp_masked_loss(
    exec: *const tkm_exec_options,
    mask: *const u8,
    rl_positions: *const u8,
    logp_target: *const f32,
    rows: usize,
    cols: usize,
    loss: *mut f32,
    grad: *mut f32,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let n = mul(rows, cols)?;
        let (m, c, lp) = (input(mask, n)?, input(rl_positions, n)?, input(logp_target, n)?);
        check_out(loss, 1)?;
        let mut g = Out::new(grad, n)?;
        let l = seed::ntp_masked_loss(exec, BatchShape::new(rows, cols), m, c, lp, &mut g.buf)?;
        g.commit();
        write(loss, l)
    })
}
