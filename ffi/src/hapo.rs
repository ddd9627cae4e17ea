//! HAPO (`tokenmath_core::seed::hapo` documents the math): entropy normaliser, adaptive
//! temperature, token-level group-average advantage, adaptive clip, advantage redistribution and
//! the loss.

use core::ffi::c_void;

use half::{bf16, f16};
use tokenmath_core::policy_loss::{BatchShape, LossOut, PolicyInputs};
use tokenmath_core::seed::hapo::{self, HapoAdvCfg, HapoNorm, HapoNormCfg, HapoSign};
use tokenmath_core::Mat;

use crate::exec::{exec_from, tkm_exec_options};
use crate::logits::with_dtype;
use crate::status::*;
use crate::util::{
    flag, guard, init_options, input, matrix_len, mul, opt_input, options, read_options, scratch, Out, Res,
};
use crate::{tkm_dtype, TKM_DTYPE_BF16, TKM_DTYPE_F16, TKM_DTYPE_F32};

/// `ĥ` as the released HAPO code computes it (`scale_neg < 0`: `ĥ >= 0` on both sides of the pivot).
pub const TKM_HAPO_SIGN_CODE_COMPAT: u32 = 0;
/// `ĥ` as the HAPO paper describes it (`ĥ` in `[-1, 0)` below the pivot).
pub const TKM_HAPO_SIGN_INTENDED: u32 = 1;

fn sign_from(v: u32) -> Res<HapoSign> {
    match v {
        TKM_HAPO_SIGN_CODE_COMPAT => Ok(HapoSign::CodeCompat),
        TKM_HAPO_SIGN_INTENDED => Ok(HapoSign::Intended),
        _ => Err(TKM_STATUS_INVALID_ARGUMENT),
    }
}

/// The entropy normaliser's statistics (for the next step's adaptive temperature).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct tkm_hapo_norm {
    /// The pivot `m` (a quantile of the log-entropies).
    pub pivot: f32,
    /// RMS deviation of the log-entropies from the pivot.
    pub std: f32,
    /// `1/pos_max`.
    pub scale_pos: f32,
    /// `1/neg_min` (CODE_COMPAT, negative) or `1/|neg_min|` (INTENDED).
    pub scale_neg: f32,
}

/// HAPO's entropy normaliser: `ĥ` at every one of the `n` positions into `h_hat`, and the
/// statistics into `*norm` (NULL = not wanted). `mask`: NULL = `entropy > 0`. `pivot_q` in
/// `[0, 1]` (HAPO: 0.8), `eps` finite and > 0 (HAPO: 1e-8), `sign` a `TKM_HAPO_SIGN_*`. An empty
/// mask gives `ĥ = 0` and the statistics `(0, 1, 1, -1 or +1)`.
///
/// # Safety
/// Every non-NULL pointer must be valid for `n` elements (`norm`: one struct).
#[no_mangle]
pub unsafe extern "C" fn tkm_hapo_entropy_norm(
    exec: *const tkm_exec_options,
    entropy: *const f32,
    mask: *const u8,
    n: usize,
    pivot_q: f32,
    eps: f32,
    sign: u32,
    h_hat: *mut f32,
    norm: *mut tkm_hapo_norm,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let cfg = HapoNormCfg { pivot_q, eps, sign: sign_from(sign)? };
        let (h, m) = (input(entropy, n)?, opt_input(mask, n)?);
        let mut out = Out::new(h_hat, n)?;
        let mut st = Out::optional(norm, 1)?;
        let mut work = scratch::<f64>(hapo::hapo_entropy_norm_scratch_len(n))?;
        let s = hapo::hapo_entropy_norm(exec, h, m, &cfg, &mut work, &mut out.buf)?;
        out.commit();
        if let Some(mut st) = st.take() {
            st.buf[0] = tkm_hapo_norm { pivot: s.pivot, std: s.std, scale_pos: s.scale_pos, scale_neg: s.scale_neg };
            st.commit();
        }
        Ok(())
    })
}

/// HAPO's adaptive sampling temperature of each of `rows` decoding steps from their logits
/// (`[rows, vocab]` of `dtype`, row stride `row_stride`, before temperature):
/// `base_temp * (1 + tau * clamp(ĥ(H), -1, 1))` with the previous step's statistics `norm`
/// (NULL = none yet: `out_temp = base_temp`). Rows with a NaN/+inf logit get their base
/// temperature; `nonfinite_rows` (NULL = not wanted) receives their number.
///
/// Errors: `TKM_STATUS_INVALID_TEMPERATURE` (a base temperature not finite and > 0),
/// `_NO_FINITE_LOGIT`, `_EMPTY_VOCAB`, `_BAD_DTYPE`, `_BAD_STRIDE`, `_INVALID_ARGUMENT`.
///
/// # Safety
/// The pointers must be valid for the element counts above.
#[no_mangle]
pub unsafe extern "C" fn tkm_hapo_adaptive_temperature(
    exec: *const tkm_exec_options,
    dtype: tkm_dtype,
    logits: *const c_void,
    rows: usize,
    vocab: usize,
    row_stride: usize,
    base_temp: *const f32,
    norm: *const tkm_hapo_norm,
    tau: f32,
    sign: u32,
    out_temp: *mut f32,
    nonfinite_rows: *mut usize,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let sign = sign_from(sign)?;
        let len = matrix_len(rows, vocab, row_stride)?;
        let base = input(base_temp, rows)?;
        let nrm = opt_input(norm, 1)?.map(|n| HapoNorm {
            pivot: n[0].pivot,
            std: n[0].std,
            scale_pos: n[0].scale_pos,
            scale_neg: n[0].scale_neg,
        });
        let mut out = Out::new(out_temp, rows)?;
        let mut cnt = Out::optional(nonfinite_rows, 1)?;
        let k = with_dtype!(dtype, T, {
            let x = Mat::new(input(logits as *const T, len)?, rows, vocab, row_stride)?;
            Ok(hapo::hapo_adaptive_temperature(exec, x, base, nrm.as_ref(), tau, sign, &mut out.buf)?)
        })?;
        out.commit();
        if let Some(mut c) = cnt.take() {
            c.buf[0] = k;
            c.commit();
        }
        Ok(())
    })
}

/// Options of `tkm_hapo_token_group_advantage`. Initialise with `tkm_hapo_adv_options_init`
/// (the reference's behaviour: `norm_by_std = 1`, `pad_in_check = 1`, `mask_output = 0`,
/// `fallback_abs = 5`, `eps = 1e-6`). NULL means the defaults.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct tkm_hapo_adv_options {
    /// `sizeof(tkm_hapo_adv_options)` as the caller compiled it.
    pub struct_size: usize,
    /// 1 = divide by `sigma + eps` (`norm_adv_by_std_in_grpo`), 0 = do not.
    pub norm_by_std: u32,
    /// 1 = the fallback check scans padding too (the reference), 0 = valid tokens only.
    pub pad_in_check: u32,
    /// 1 = multiply the output by the mask, 0 = padding carries `-mu/(sigma + eps)` (the reference).
    pub mask_output: u32,
    /// Fallback threshold on `|N|` (finite, > 0).
    pub fallback_abs: f32,
    /// `eps` of both normalisations (finite, >= 0).
    pub eps: f32,
}

options!(tkm_hapo_adv_options {
    let c = HapoAdvCfg::default();
    norm_by_std: c.norm_by_std as u32,
    pad_in_check: c.pad_in_check as u32,
    mask_output: c.mask_output as u32,
    fallback_abs: c.fallback_abs,
    eps: c.eps,
});

/// Writes the default advantage options into `*opts`.
///
/// # Safety
/// `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
#[no_mangle]
pub unsafe extern "C" fn tkm_hapo_adv_options_init(opts: *mut tkm_hapo_adv_options) -> tkm_status {
    init_options(opts)
}

/// HAPO's token-level group-average advantage `[rows, cols]` (`rows` responses of `cols`
/// tokens) from per-token rewards and the mask; `group`: `rows` labels (any `uint32_t`).
///
/// Errors: `TKM_STATUS_NON_FINITE` (a reward), `_INVALID_ARGUMENT` (`cols = 0`, options), and
/// the generic statuses.
///
/// # Safety
/// The `[rows, cols]` arrays must be valid for `rows * cols` elements, `group` for `rows`.
#[no_mangle]
pub unsafe extern "C" fn tkm_hapo_token_group_advantage(
    exec: *const tkm_exec_options,
    token_rewards: *const f32,
    mask: *const u8,
    group: *const u32,
    rows: usize,
    cols: usize,
    opts: *const tkm_hapo_adv_options,
    adv: *mut f32,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let o = read_options(opts)?;
        let cfg = HapoAdvCfg {
            norm_by_std: flag(o.norm_by_std)?,
            pad_in_check: flag(o.pad_in_check)?,
            mask_output: flag(o.mask_output)?,
            fallback_abs: o.fallback_abs,
            eps: o.eps,
        };
        let n = mul(rows, cols)?;
        let (r, m, g) = (input(token_rewards, n)?, input(mask, n)?, input(group, rows)?);
        let mut out = Out::new(adv, n)?;
        if cols == 0 {
            return Err(TKM_STATUS_INVALID_ARGUMENT);
        }
        hapo::hapo_token_group_advantage(exec, r, m, cols, g, &cfg, &mut out.buf)?;
        out.commit();
        Ok(())
    })
}

/// HAPO's asymmetric adaptive clip widths from `ĥ` (`n` each): `eps_low_out`, `eps_high_out`.
/// `eps_low`, `eps_high` finite and >= 0 (HAPO: 0.2), `alpha` finite (HAPO: 1).
///
/// # Safety
/// Every pointer must be valid for `n` elements.
#[no_mangle]
pub unsafe extern "C" fn tkm_hapo_adaptive_clip(
    exec: *const tkm_exec_options,
    h_hat: *const f32,
    n: usize,
    eps_low: f32,
    eps_high: f32,
    alpha: f32,
    eps_low_out: *mut f32,
    eps_high_out: *mut f32,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let h = input(h_hat, n)?;
        let (mut lo, mut hi) = (Out::new(eps_low_out, n)?, Out::new(eps_high_out, n)?);
        hapo::hapo_adaptive_clip(exec, h, eps_low, eps_high, alpha, &mut lo.buf, &mut hi.buf)?;
        lo.commit();
        hi.commit();
        Ok(())
    })
}

/// HAPO's differential advantage redistribution `A'` (`n` each): `ratio` = the current
/// `exp(logp - old_logp)`, `eps_low`/`eps_high` the per-token widths, `beta` finite (HAPO: 1).
///
/// # Safety
/// Every pointer must be valid for `n` elements.
#[no_mangle]
pub unsafe extern "C" fn tkm_hapo_redistribute(
    exec: *const tkm_exec_options,
    adv: *const f32,
    h_hat: *const f32,
    ratio: *const f32,
    eps_low: *const f32,
    eps_high: *const f32,
    n: usize,
    beta: f32,
    out: *mut f32,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let (a, h, r) = (input(adv, n)?, input(h_hat, n)?, input(ratio, n)?);
        let (lo, hi) = (input(eps_low, n)?, input(eps_high, n)?);
        let mut o = Out::new(out, n)?;
        hapo::hapo_redistribute(exec, a, h, r, lo, hi, beta, &mut o.buf)?;
        o.commit();
        Ok(())
    })
}

/// Counts of `tkm_hapo_loss` over valid tokens.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct tkm_hapo_stats {
    /// Valid tokens.
    pub valid: u64,
    /// Tokens where the ratio clip is active.
    pub clipped: u64,
    /// Negative-advantage tokens bounded by the dual clip.
    pub dual_clipped: u64,
    /// Sum of `-(logp - old_logp)` over valid tokens.
    pub neg_log_ratio_sum: f64,
}

/// The HAPO loss per token and its gradient w.r.t. `logp` (`[rows, cols]` arrays): dual-clip PPO
/// with per-token widths `eps_low`/`eps_high`, advantages `adv` (= `A'`), no log-ratio clamp,
/// dual clip `dual_clip_c` (> 1; 0 = off; HAPO: 10). `is_weights`: NULL = none. `stats`: NULL =
/// not wanted.
///
/// # Safety
/// The arrays must be valid for `rows * cols` elements.
#[no_mangle]
pub unsafe extern "C" fn tkm_hapo_loss(
    exec: *const tkm_exec_options,
    logp: *const f32,
    old_logp: *const f32,
    adv: *const f32,
    mask: *const u8,
    is_weights: *const f32,
    eps_low: *const f32,
    eps_high: *const f32,
    rows: usize,
    cols: usize,
    dual_clip_c: f32,
    loss: *mut f32,
    dloss_dlogp: *mut f32,
    stats: *mut tkm_hapo_stats,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let n = mul(rows, cols)?;
        let inp = PolicyInputs {
            shape: BatchShape::new(rows, cols),
            logp: input(logp, n)?,
            old_logp: input(old_logp, n)?,
            adv: input(adv, n)?,
            mask: input(mask, n)?,
            is_weights: opt_input(is_weights, n)?,
        };
        let (lo, hi) = (input(eps_low, n)?, input(eps_high, n)?);
        let (mut l, mut g) = (Out::new(loss, n)?, Out::new(dloss_dlogp, n)?);
        let mut st = Out::optional(stats, 1)?;
        let c = if dual_clip_c == 0.0 { None } else { Some(dual_clip_c) };
        let s = hapo::hapo_loss(exec, &inp, lo, hi, c, LossOut { loss: &mut l.buf, dloss_dlogp: &mut g.buf })?;
        l.commit();
        g.commit();
        if let Some(mut st) = st.take() {
            st.buf[0] = tkm_hapo_stats {
                valid: s.valid,
                clipped: s.clipped,
                dual_clipped: s.dual_clipped,
                neg_log_ratio_sum: s.neg_log_ratio_sum,
            };
            st.commit();
        }
        Ok(())
    })
}
