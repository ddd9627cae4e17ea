//! Preference losses with token rewards: DPO and SimPO, T-REG's token rewards and
//! regulariser, cDPO's contrastive-estimation scores (streamed over the vocabulary), the
//! cDPO loss and pass@k. `tokenmath_core::preference` documents the math, the sources and
//! the library's choices.
//!
//! Every kernel takes `const tkm_exec_options *exec` first (NULL = defaults). Only
//! `tkm_cdpo_ce_scores` uses `threads` (rows are split over threads; the bits do not
//! change); the others run on the calling thread. Outputs are written only on success.

use half::{bf16, f16};
use tokenmath_core::preference::cdpo::{self, CdpoCfg, CdpoForm, CdpoInputs};
use tokenmath_core::preference::dpo::{self, DpoCfg, PairOut, SimpoCfg};
use tokenmath_core::preference::t_reg::{self, Reduction, TregCfg, TregOut, TregRegCfg};
use tokenmath_core::preference::tvm::{self, ValueLoss};
use tokenmath_core::Mat;

use crate::exec::{exec_from, tkm_exec_options};
use crate::status::*;
use crate::util::{
    check_out, flag, guard, init_options, input, matrix_len, mul, opt_input, options, read_options, scratch, Out, Res,
};
use crate::{tkm_dtype, TKM_DTYPE_BF16, TKM_DTYPE_F16, TKM_DTYPE_F32};

/// DPO options. Initialise with `tkm_dpo_options_init` (TRL's `DPOConfig`: `beta = 0.1`,
/// `label_smoothing = 0`). NULL means the defaults.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct tkm_dpo_options {
    /// `sizeof(tkm_dpo_options)` as the caller compiled it.
    pub struct_size: usize,
    /// `beta` (finite, > 0).
    pub beta: f32,
    /// Conservative label smoothing in [0, 1].
    pub label_smoothing: f32,
}

options!(tkm_dpo_options { let c = DpoCfg::default(); beta: c.beta, label_smoothing: c.label_smoothing });

/// SimPO options. Initialise with `tkm_simpo_options_init` (TRL's `CPOConfig` with
/// `loss_type="simpo"`: `beta = 0.1`, `gamma = 0.5`, `label_smoothing = 0`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct tkm_simpo_options {
    /// `sizeof(tkm_simpo_options)` as the caller compiled it.
    pub struct_size: usize,
    /// `beta` (finite, > 0).
    pub beta: f32,
    /// Target reward margin `gamma` (finite).
    pub gamma: f32,
    /// Label smoothing in [0, 1].
    pub label_smoothing: f32,
}

options!(tkm_simpo_options {
    let c = SimpoCfg::default();
    beta: c.beta,
    gamma: c.gamma,
    label_smoothing: c.label_smoothing,
});

/// `tkm_treg_reg_options.reduction`: sum over the mask (default).
pub const TKM_REDUCTION_SUM: u32 = 0;
/// `tkm_treg_reg_options.reduction`: mean over the mask (0 for an empty mask).
pub const TKM_REDUCTION_MEAN_OVER_MASK: u32 = 1;

/// T-REG regulariser options. Initialise with `tkm_treg_reg_options_init` (`beta = 0.1`,
/// `TKM_REDUCTION_SUM`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct tkm_treg_reg_options {
    /// `sizeof(tkm_treg_reg_options)` as the caller compiled it.
    pub struct_size: usize,
    /// DPO's `beta` (finite, > 0).
    pub beta: f32,
    /// `TKM_REDUCTION_SUM` or `TKM_REDUCTION_MEAN_OVER_MASK`.
    pub reduction: u32,
}

options!(tkm_treg_reg_options { beta: TregRegCfg::default().beta, reduction: TKM_REDUCTION_SUM });

/// T-REG total-loss options. Initialise with `tkm_treg_options_init` (`alpha = 0.25`,
/// `label_smoothing = 0`, `stop_grad_weight = 1`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct tkm_treg_options {
    /// `sizeof(tkm_treg_options)` as the caller compiled it.
    pub struct_size: usize,
    /// `alpha` (finite, >= 0).
    pub alpha: f32,
    /// Label smoothing of the base loss, in [0, 1].
    pub label_smoothing: f32,
    /// 1: `w = sg(sigmoid(-h))` (default); 0: `w` carries its gradient.
    pub stop_grad_weight: u32,
}

options!(tkm_treg_options {
    let c = TregCfg::default();
    alpha: c.alpha,
    label_smoothing: c.label_smoothing,
    stop_grad_weight: c.stop_grad_weight as u32,
});

/// `tkm_cdpo_options.form`: per-position margins averaged over all `rows * t` entries
/// (the released code; default).
pub const TKM_CDPO_POSITIONWISE_CODE: u32 = 0;
/// `tkm_cdpo_options.form`: one weighted margin per sequence pair, averaged over pairs.
pub const TKM_CDPO_SEQUENCE_WEIGHTED: u32 = 1;

/// cDPO loss options. Initialise with `tkm_cdpo_options_init` (the released code's
/// `get_cdpo_config`: `beta = 0.1`, `label_smoothing = 0`, `only_neg = 1`, positionwise).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct tkm_cdpo_options {
    /// `sizeof(tkm_cdpo_options)` as the caller compiled it.
    pub struct_size: usize,
    /// `beta` (finite, > 0).
    pub beta: f32,
    /// Label smoothing in [0, 1].
    pub label_smoothing: f32,
    /// 1: ignore the chosen weights `c` (default); 0: use them (`c` required).
    pub only_neg: u32,
    /// `TKM_CDPO_POSITIONWISE_CODE` or `TKM_CDPO_SEQUENCE_WEIGHTED`.
    pub form: u32,
}

options!(tkm_cdpo_options {
    let c = CdpoCfg::default();
    beta: c.beta,
    label_smoothing: c.label_smoothing,
    only_neg: c.only_neg as u32,
    form: TKM_CDPO_POSITIONWISE_CODE,
});

/// Writes the default DPO options into `*opts`.
///
/// # Safety
/// `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
#[no_mangle]
pub unsafe extern "C" fn tkm_dpo_options_init(opts: *mut tkm_dpo_options) -> tkm_status {
    init_options(opts)
}

/// Writes the default SimPO options into `*opts`.
///
/// # Safety
/// `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
#[no_mangle]
pub unsafe extern "C" fn tkm_simpo_options_init(opts: *mut tkm_simpo_options) -> tkm_status {
    init_options(opts)
}

/// Writes the default T-REG regulariser options into `*opts`.
///
/// # Safety
/// `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
#[no_mangle]
pub unsafe extern "C" fn tkm_treg_reg_options_init(opts: *mut tkm_treg_reg_options) -> tkm_status {
    init_options(opts)
}

/// Writes the default T-REG options into `*opts`.
///
/// # Safety
/// `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
#[no_mangle]
pub unsafe extern "C" fn tkm_treg_options_init(opts: *mut tkm_treg_options) -> tkm_status {
    init_options(opts)
}

/// Writes the default cDPO options into `*opts`.
///
/// # Safety
/// `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
#[no_mangle]
pub unsafe extern "C" fn tkm_cdpo_options_init(opts: *mut tkm_cdpo_options) -> tkm_status {
    init_options(opts)
}

/// Sequence log-ratios `rho[r] = sum_t mask[r,t] (logp[r,t] - ref_logp[r,t])` of `rows`
/// rows of `t` tokens (summed in double, rounded once; masked positions are not read; an
/// empty row gives 0).
///
/// # Safety
/// `mask`, `logp`, `ref_logp` valid for `rows * t` elements, `rho` for `rows`.
#[no_mangle]
pub unsafe extern "C" fn tkm_seq_logratio(
    exec: *const tkm_exec_options,
    mask: *const u8,
    logp: *const f32,
    ref_logp: *const f32,
    rows: usize,
    t: usize,
    rho: *mut f32,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let n = mul(rows, t)?;
        let (mask, logp, ref_logp) = (input(mask, n)?, input(logp, n)?, input(ref_logp, n)?);
        let mut out = Out::new(rho, rows)?;
        dpo::seq_logratio(exec, t, mask, logp, ref_logp, &mut out.buf)?;
        out.commit();
        Ok(())
    })
}

/// The backward of `tkm_seq_logratio`: `grad[r,t] = g_rho[r] * mask[r,t]` (0 at masked
/// positions). For DPO pass `beta * dl_dh` for the chosen and `-beta * dl_dh` for the
/// rejected responses.
///
/// # Safety
/// `mask`, `grad` valid for `rows * t` elements, `g_rho` for `rows`.
#[no_mangle]
pub unsafe extern "C" fn tkm_seq_logratio_bwd(
    exec: *const tkm_exec_options,
    mask: *const u8,
    g_rho: *const f32,
    rows: usize,
    t: usize,
    grad: *mut f32,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let n = mul(rows, t)?;
        let (mask, g_rho) = (input(mask, n)?, input(g_rho, rows)?);
        let mut out = Out::new(grad, n)?;
        dpo::seq_logratio_bwd(exec, t, mask, g_rho, &mut out.buf)?;
        out.commit();
        Ok(())
    })
}

/// The per-pair outputs, staged in scratch.
struct PairScratch {
    loss: Out<f32>,
    dl_dh: Out<f32>,
    margin: Option<Out<f32>>,
}

impl PairScratch {
    fn new(n: usize, loss: *mut f32, dl_dh: *mut f32, margin: *mut f32) -> Res<PairScratch> {
        Ok(PairScratch { loss: Out::new(loss, n)?, dl_dh: Out::new(dl_dh, n)?, margin: Out::optional(margin, n)? })
    }
    fn out(&mut self) -> PairOut<'_> {
        PairOut {
            loss: &mut self.loss.buf,
            dl_dh: &mut self.dl_dh.buf,
            margin: self.margin.as_mut().map(|m| &mut m.buf[..]),
        }
    }
    unsafe fn commit(self) {
        self.loss.commit();
        self.dl_dh.commit();
        if let Some(m) = self.margin {
            m.commit();
        }
    }
}

/// DPO per pair: `h = beta (rho_w - rho_l)`, `loss = (1 - eps) softplus(-h) + eps softplus(h)`,
/// `dl_dh`, and (if `margin` is not NULL) `h`. `opts` NULL = defaults.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (`beta` not finite and > 0, `label_smoothing`
/// outside [0, 1]) and the generic pointer/options statuses.
///
/// # Safety
/// Every non-NULL array valid for `n` elements.
#[no_mangle]
pub unsafe extern "C" fn tkm_dpo_loss(
    exec: *const tkm_exec_options,
    rho_w: *const f32,
    rho_l: *const f32,
    n: usize,
    opts: *const tkm_dpo_options,
    loss: *mut f32,
    dl_dh: *mut f32,
    margin: *mut f32,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let o = read_options(opts)?;
        let cfg = DpoCfg { beta: o.beta, label_smoothing: o.label_smoothing };
        let (rho_w, rho_l) = (input(rho_w, n)?, input(rho_l, n)?);
        let mut s = PairScratch::new(n, loss, dl_dh, margin)?;
        dpo::dpo_loss(exec, &cfg, rho_w, rho_l, s.out())?;
        s.commit();
        Ok(())
    })
}

/// SimPO per pair: `h = beta/len_w logp_sum_w - beta/len_l logp_sum_l - gamma`, the
/// label-smoothed loss, `dl_dh` and (if `margin` is not NULL) `h`.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (a length of 0, `beta`, `gamma` or
/// `label_smoothing` out of range) and the generic pointer/options statuses.
///
/// # Safety
/// Every non-NULL array valid for `n` elements.
#[no_mangle]
pub unsafe extern "C" fn tkm_simpo_loss(
    exec: *const tkm_exec_options,
    logp_sum_w: *const f32,
    len_w: *const u32,
    logp_sum_l: *const f32,
    len_l: *const u32,
    n: usize,
    opts: *const tkm_simpo_options,
    loss: *mut f32,
    dl_dh: *mut f32,
    margin: *mut f32,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let o = read_options(opts)?;
        let cfg = SimpoCfg { beta: o.beta, gamma: o.gamma, label_smoothing: o.label_smoothing };
        let (sw, lw, sl, ll) = (input(logp_sum_w, n)?, input(len_w, n)?, input(logp_sum_l, n)?, input(len_l, n)?);
        let mut s = PairScratch::new(n, loss, dl_dh, margin)?;
        dpo::simpo_loss(exec, &cfg, sw, lw, sl, ll, s.out())?;
        s.commit();
        Ok(())
    })
}

/// T-REG token rewards `r_hat[i] = sigmoid(lp_better[i] - lp_worse[i]) - 0.5` where
/// `mask[i] != 0`, else 0.
///
/// # Safety
/// Every array valid for `n` elements.
#[no_mangle]
pub unsafe extern "C" fn tkm_treg_token_rewards(
    exec: *const tkm_exec_options,
    mask: *const u8,
    lp_better: *const f32,
    lp_worse: *const f32,
    n: usize,
    r_hat: *mut f32,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let (mask, lb, lw) = (input(mask, n)?, input(lp_better, n)?, input(lp_worse, n)?);
        let mut out = Out::new(r_hat, n)?;
        t_reg::treg_token_rewards(exec, mask, lb, lw, &mut out.buf)?;
        out.commit();
        Ok(())
    })
}

/// T-REG's reward-weighted LM loss `L_REG[r] = -sum_t mask beta r_hat logp` (or its mean
/// over the mask) per row, and its gradient w.r.t. `logp` (`[rows, t]`, 0 at masked
/// positions).
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (`beta`, an unknown `reduction`) and the generic
/// pointer/size/options statuses.
///
/// # Safety
/// `mask`, `logp`, `r_hat`, `grad` valid for `rows * t` elements, `loss` for `rows`.
#[no_mangle]
pub unsafe extern "C" fn tkm_treg_reg_loss(
    exec: *const tkm_exec_options,
    mask: *const u8,
    logp: *const f32,
    r_hat: *const f32,
    rows: usize,
    t: usize,
    opts: *const tkm_treg_reg_options,
    loss: *mut f32,
    grad: *mut f32,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let o = read_options(opts)?;
        let reduction = match o.reduction {
            TKM_REDUCTION_SUM => Reduction::Sum,
            TKM_REDUCTION_MEAN_OVER_MASK => Reduction::MeanOverMask,
            _ => return Err(TKM_STATUS_INVALID_ARGUMENT),
        };
        let n = mul(rows, t)?;
        let (mask, logp, r_hat) = (input(mask, n)?, input(logp, n)?, input(r_hat, n)?);
        let (mut l, mut g) = (Out::new(loss, rows)?, Out::new(grad, n)?);
        t_reg::treg_reg_loss(
            exec,
            &TregRegCfg { beta: o.beta, reduction },
            t,
            mask,
            logp,
            r_hat,
            &mut l.buf,
            &mut g.buf,
        )?;
        l.commit();
        g.commit();
        Ok(())
    })
}

/// The T-REG total loss per pair from the margin `h` (of `tkm_dpo_loss` or
/// `tkm_simpo_loss`) and the two responses' `L_REG`: `loss = l(h) + alpha w (reg_w + reg_l)`
/// with `w = sigmoid(-h)`; `dl_dh`, `dl_dreg = alpha w` and (if `weight` is not NULL) `w`.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (`alpha` not finite and >= 0, `label_smoothing`,
/// `stop_grad_weight` not 0/1) and the generic pointer/options statuses.
///
/// # Safety
/// Every non-NULL array valid for `n` elements.
#[no_mangle]
pub unsafe extern "C" fn tkm_treg_loss(
    exec: *const tkm_exec_options,
    h: *const f32,
    reg_w: *const f32,
    reg_l: *const f32,
    n: usize,
    opts: *const tkm_treg_options,
    loss: *mut f32,
    dl_dh: *mut f32,
    dl_dreg: *mut f32,
    weight: *mut f32,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let o = read_options(opts)?;
        let cfg =
            TregCfg { alpha: o.alpha, label_smoothing: o.label_smoothing, stop_grad_weight: flag(o.stop_grad_weight)? };
        let (h, rw, rl) = (input(h, n)?, input(reg_w, n)?, input(reg_l, n)?);
        let (mut l, mut g, mut gr, mut w) =
            (Out::new(loss, n)?, Out::new(dl_dh, n)?, Out::new(dl_dreg, n)?, Out::optional(weight, n)?);
        let out = TregOut {
            loss: &mut l.buf,
            dl_dh: &mut g.buf,
            dl_dreg: &mut gr.buf,
            weight: w.as_mut().map(|w| &mut w.buf[..]),
        };
        t_reg::treg_loss(exec, &cfg, h, rw, rl, out)?;
        l.commit();
        g.commit();
        gr.commit();
        if let Some(w) = w {
            w.commit();
        }
        Ok(())
    })
}

/// cDPO contrastive-estimation scores, streamed over the vocabulary (no `[rows, vocab]`
/// buffer): `scores[r] = softmax((1 + beta) pos[r] - beta neg[r])[targets[r]]`. `pos` and
/// `neg` are `[rows, vocab]` logits of type `dtype` (`TKM_DTYPE_F32`/`_BF16`/`_F16`, both the
/// same) with row strides `pos_row_stride`, `neg_row_stride`; `targets[r]` is the next
/// token of row `r`. A column that is -inf in either model is excluded. `beta` is the
/// contrast strength `beta'` (finite, >= 0; the released code uses 1). `nonfinite_rows`:
/// NULL or receives the number of rows with a NaN/+inf logit (their score is NaN).
///
/// Errors: `TKM_STATUS_BAD_DTYPE`, `_BAD_STRIDE`, `_EMPTY_VOCAB`, `_LABEL_OUT_OF_RANGE`,
/// `_NO_FINITE_LOGIT` (a row whose every column is masked), `_INVALID_ARGUMENT` (`beta`),
/// and the generic pointer/size statuses.
///
/// # Safety
/// `pos`, `neg` valid for `(rows - 1) * stride + vocab` elements of `dtype`; `targets`,
/// `scores` for `rows`.
#[no_mangle]
pub unsafe extern "C" fn tkm_cdpo_ce_scores(
    exec: *const tkm_exec_options,
    dtype: tkm_dtype,
    pos: *const core::ffi::c_void,
    pos_row_stride: usize,
    neg: *const core::ffi::c_void,
    neg_row_stride: usize,
    rows: usize,
    vocab: usize,
    targets: *const u32,
    beta: f32,
    scores: *mut f32,
    nonfinite_rows: *mut usize,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let (lp, ln) = (matrix_len(rows, vocab, pos_row_stride)?, matrix_len(rows, vocab, neg_row_stride)?);
        let targets = input(targets, rows)?;
        if !nonfinite_rows.is_null() && !(nonfinite_rows as usize).is_multiple_of(core::mem::align_of::<usize>()) {
            return Err(TKM_STATUS_MISALIGNED);
        }
        let mut out = Out::new(scores, rows)?;
        macro_rules! go {
            ($t:ty) => {{
                let p = Mat::new(input(pos as *const $t, lp)?, rows, vocab, pos_row_stride)?;
                let n = Mat::new(input(neg as *const $t, ln)?, rows, vocab, neg_row_stride)?;
                cdpo::cdpo_ce_scores(exec, beta, p, n, targets, &mut out.buf)?
            }};
        }
        let status = match dtype {
            TKM_DTYPE_F32 => go!(f32),
            TKM_DTYPE_BF16 => go!(bf16),
            TKM_DTYPE_F16 => go!(f16),
            _ => return Err(TKM_STATUS_BAD_DTYPE),
        };
        out.commit();
        if !nonfinite_rows.is_null() {
            nonfinite_rows.write(status.nonfinite_rows);
        }
        Ok(())
    })
}

/// The cDPO loss (`*loss`, a scalar) and its gradients w.r.t. the masked per-token
/// log-ratios `dw` (chosen) and `dl` (rejected), all `[rows, t]`; `c` (chosen weights, read
/// only when `only_neg = 0`, then required; NULL otherwise allowed) and `v` (rejected
/// weights `1 - s_neg`) are aligned to the label positions by the caller.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (`beta`, `label_smoothing`, `only_neg` not 0/1, an
/// unknown `form`, `c` NULL with `only_neg = 0`, an empty batch) and the generic
/// pointer/size/options statuses.
///
/// # Safety
/// Every non-NULL array valid for `rows * t` elements; `loss` for one float.
#[no_mangle]
pub unsafe extern "C" fn tkm_cdpo_loss(
    exec: *const tkm_exec_options,
    mask_w: *const u8,
    mask_l: *const u8,
    dw: *const f32,
    dl: *const f32,
    c: *const f32,
    v: *const f32,
    rows: usize,
    t: usize,
    opts: *const tkm_cdpo_options,
    loss: *mut f32,
    grad_w: *mut f32,
    grad_l: *mut f32,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let o = read_options(opts)?;
        let form = match o.form {
            TKM_CDPO_POSITIONWISE_CODE => CdpoForm::PositionwiseCode,
            TKM_CDPO_SEQUENCE_WEIGHTED => CdpoForm::SequenceWeighted,
            _ => return Err(TKM_STATUS_INVALID_ARGUMENT),
        };
        let cfg = CdpoCfg { beta: o.beta, label_smoothing: o.label_smoothing, only_neg: flag(o.only_neg)?, form };
        let n = mul(rows, t)?;
        let x = CdpoInputs {
            t,
            mask_w: input(mask_w, n)?,
            mask_l: input(mask_l, n)?,
            dw: input(dw, n)?,
            dl: input(dl, n)?,
            c: opt_input(c, n)?,
            v: input(v, n)?,
        };
        let (mut l, mut gw, mut gl) = (Out::new(loss, 1)?, Out::new(grad_w, n)?, Out::new(grad_l, n)?);
        l.buf[0] = cdpo::cdpo_loss(exec, &cfg, &x, &mut gw.buf, &mut gl.buf)?;
        l.commit();
        gw.commit();
        gl.commit();
        Ok(())
    })
}

/// The unbiased pass@k estimate `1 - C(n - c, k) / C(n, k)` into `*out`, computed in log
/// space (stable for n up to 2^53; at most `min(c, k)` factors, and the product stops once
/// it is below `e^-40`, where the result is exactly 1: about `√(40·n)` steps at worst).
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (`c > n`, `k == 0`, `k > n`),
/// `TKM_STATUS_NULL_POINTER`, `TKM_STATUS_MISALIGNED`.
///
/// # Safety
/// `out` NULL or valid for one double.
#[no_mangle]
pub unsafe extern "C" fn tkm_pass_at_k(n: u64, c: u64, k: u64, out: *mut f64) -> tkm_status {
    guard(|| {
        let mut o = Out::new(out, 1)?;
        o.buf[0] = cdpo::pass_at_k(n, c, k)?;
        o.commit();
        Ok(())
    })
}

/// `tkm_value_loss` kind: `(sigmoid(x) - y)^2` (default).
pub const TKM_VALUE_LOSS_MSE: u32 = 0;
/// `tkm_value_loss` kind: binary cross-entropy with soft targets, from logits.
pub const TKM_VALUE_LOSS_BCE: u32 = 1;

/// TVM prefix-trie value labels: path `n` is `tokens[offsets[n] .. offsets[n + 1]]`
/// (`offsets`: `n_paths + 1` non-decreasing entries from 0 to `n_tokens`), `outcome[n]` is
/// 0 or 1; `labels[i]` (parallel to `tokens`) receives `correct / visits` over the paths
/// that share the prefix ending at token `i`.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (bad offsets, an outcome not 0/1),
/// `TKM_STATUS_OUT_OF_MEMORY` (the `2 n_paths` scratch) and the generic pointer statuses.
///
/// # Safety
/// `tokens`, `labels` valid for `n_tokens` elements, `offsets` for `n_paths + 1`, `outcome`
/// for `n_paths`.
#[no_mangle]
pub unsafe extern "C" fn tkm_tvm_prefix_value_labels(
    tokens: *const u32,
    n_tokens: usize,
    offsets: *const usize,
    outcome: *const u8,
    n_paths: usize,
    labels: *mut f32,
) -> tkm_status {
    guard(|| {
        let tokens = input(tokens, n_tokens)?;
        let offsets = input(offsets, n_paths.checked_add(1).ok_or(TKM_STATUS_SIZE_OVERFLOW)?)?;
        let outcome = input(outcome, n_paths)?;
        let mut out = Out::new(labels, n_tokens)?;
        let mut work = scratch::<usize>(mul(n_paths, 2)?)?;
        tvm::tvm_prefix_value_labels(tokens, offsets, outcome, &mut work, &mut out.buf)?;
        out.commit();
        Ok(())
    })
}

/// The TVM value-head loss over the masked tokens (token mean) into `*loss`, and its
/// gradient w.r.t. `pred_logit` (`n` floats, 0 at masked positions). `kind`:
/// `TKM_VALUE_LOSS_MSE` or `TKM_VALUE_LOSS_BCE`. An empty mask gives 0.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (an unknown `kind`) and the generic pointer statuses.
///
/// # Safety
/// `mask`, `pred_logit`, `label`, `grad` valid for `n` elements; `loss` for one float.
#[no_mangle]
pub unsafe extern "C" fn tkm_value_loss(
    exec: *const tkm_exec_options,
    mask: *const u8,
    pred_logit: *const f32,
    label: *const f32,
    n: usize,
    kind: u32,
    loss: *mut f32,
    grad: *mut f32,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let kind = match kind {
            TKM_VALUE_LOSS_MSE => ValueLoss::Mse,
            TKM_VALUE_LOSS_BCE => ValueLoss::Bce,
            _ => return Err(TKM_STATUS_INVALID_ARGUMENT),
        };
        let (mask, x, y) = (input(mask, n)?, input(pred_logit, n)?, input(label, n)?);
        let (mut l, mut g) = (Out::new(loss, 1)?, Out::new(grad, n)?);
        l.buf[0] = tvm::value_loss(exec, kind, mask, x, y, &mut g.buf)?;
        l.commit();
        g.commit();
        Ok(())
    })
}

/// Step-level beam selection: writes the indices of the `min(k, n)` highest `scores`
/// (best first; ties by the lower index; NaN ranked below every number) into `out` and
/// their count into `*n_out`. `out` must hold `min(k, n)` elements.
///
/// # Safety
/// `scores` valid for `n` floats, `out` for `min(k, n)` elements, `n_out` for one.
#[no_mangle]
pub unsafe extern "C" fn tkm_beam_step_select(
    scores: *const f32,
    n: usize,
    k: usize,
    out: *mut usize,
    n_out: *mut usize,
) -> tkm_status {
    guard(|| {
        let scores = input(scores, n)?;
        let m = k.min(n);
        let mut o = Out::new(out, m)?;
        check_out(n_out, 1)?;
        if n_out.is_null() {
            return Err(TKM_STATUS_NULL_POINTER);
        }
        let got = tvm::beam_step_select(scores, k, &mut o.buf)?;
        o.commit();
        n_out.write(got);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::Options;

    /// The options' field tables (the struct-size growth rule of `read_options`).
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn option_field_tables_end_every_field() {
        fn check<T: Options>(want: &[usize]) {
            assert_eq!(T::FIELD_ENDS, want, "{}", core::any::type_name::<T>());
            assert!(core::mem::size_of::<T>() - want[want.len() - 1] < core::mem::align_of::<T>());
        }
        check::<tkm_dpo_options>(&[8, 12, 16]);
        check::<tkm_simpo_options>(&[8, 12, 16, 20]);
        check::<tkm_treg_reg_options>(&[8, 12, 16]);
        check::<tkm_treg_options>(&[8, 12, 16, 20]);
        check::<tkm_cdpo_options>(&[8, 12, 16, 20, 24]);
    }

    /// An older caller's struct (only `beta`) keeps the other fields at their defaults.
    #[test]
    fn a_shorter_struct_reads_its_fields_and_defaults_the_rest() {
        let o = tkm_cdpo_options { struct_size: 12, beta: 0.5, label_smoothing: 7.0, only_neg: 9, form: 9 };
        let r = unsafe { read_options(&o) }.unwrap();
        assert_eq!((r.beta, r.label_smoothing, r.only_neg, r.form), (0.5, 0.0, 1, TKM_CDPO_POSITIONWISE_CODE));
    }
}
