//! Policy losses: the PPO clipped surrogate (clip-higher, dual clip, log-ratio clamp) per
//! token with its gradient, and the loss aggregation (`L` and its weights
//! `w = dL/d loss`). `tokenmath_core::policy_loss` documents the math.

use core::mem::{offset_of, size_of};

use tokenmath_core::policy_loss::{self as pl, AggMode, AggNorm, BatchShape, ClipCfg, LossOut, PolicyInputs};

use crate::status::*;
use crate::util::{guard, input, mul, opt_input, read_options, Out, Res};

/// PPO clip options. Initialise with `tkm_ppo_clip_options_init` (verl's actor defaults:
/// `eps_low = eps_high = 0.2`, dual clip `c = 3`, log-ratio clamp 20), then change fields.
/// NULL means the defaults.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct tkm_ppo_clip_options {
    /// `sizeof(tkm_ppo_clip_options)` as the caller compiled it.
    pub struct_size: usize,
    /// The ratio's lower clip is `1 - eps_low` (finite, >= 0).
    pub eps_low: f32,
    /// The ratio's upper clip is `1 + eps_high` (finite, >= 0; DAPO clip-higher: 0.28).
    pub eps_high: f32,
    /// Dual-clip bound for negative advantages (finite, > 1); 0 = no dual clip (TRL).
    pub dual_clip_c: f32,
    /// Clamp `|logp - old_logp| <= log_ratio_clamp` before `exp` (finite, > 0); 0 = none.
    pub log_ratio_clamp: f32,
}

impl Default for tkm_ppo_clip_options {
    fn default() -> Self {
        let c = ClipCfg::default();
        tkm_ppo_clip_options {
            struct_size: size_of::<tkm_ppo_clip_options>(),
            eps_low: c.eps_low,
            eps_high: c.eps_high,
            dual_clip_c: c.dual_clip_c.unwrap_or(0.0),
            log_ratio_clamp: c.log_ratio_clamp.unwrap_or(0.0),
        }
    }
}

const CLIP_FIELD_ENDS: [usize; 5] = [
    size_of::<usize>(),
    offset_of!(tkm_ppo_clip_options, eps_low) + 4,
    offset_of!(tkm_ppo_clip_options, eps_high) + 4,
    offset_of!(tkm_ppo_clip_options, dual_clip_c) + 4,
    offset_of!(tkm_ppo_clip_options, log_ratio_clamp) + 4,
];

/// The verl metrics of a PPO clip call, as mergeable sums (add them across micro-batches
/// and ranks, then divide by `valid_tokens`). A fixed-layout output struct.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct tkm_policy_stats {
    /// Valid (mask != 0) tokens.
    pub valid_tokens: u64,
    /// Valid tokens with `A > 0` clipped at `1 + eps_high`.
    pub clipped_high: u64,
    /// Valid tokens with `A < 0` clipped at `1 - eps_low`.
    pub clipped_low: u64,
    /// Valid tokens with `A < 0` bounded by the dual clip (verl `pg_clipfrac_lower`).
    pub clipped_dual: u64,
    /// Sum of `-(logp - old_logp)` (after the clamp) over valid tokens: verl's `ppo_kl`
    /// numerator.
    pub neg_log_ratio_sum: f64,
}

/// Aggregation `"token-mean"` (verl's default).
pub const TKM_AGG_TOKEN_MEAN: u32 = 0;
/// Aggregation `"seq-mean-token-sum"`.
pub const TKM_AGG_SEQ_MEAN_TOKEN_SUM: u32 = 1;
/// Aggregation `"seq-mean-token-mean"` (GSPO, SAPO).
pub const TKM_AGG_SEQ_MEAN_TOKEN_MEAN: u32 = 2;
/// Aggregation `"seq-mean-token-sum-norm"` (Dr. GRPO).
pub const TKM_AGG_SEQ_MEAN_TOKEN_SUM_NORM: u32 = 3;

/// Denominators of the aggregation. Initialise with `tkm_agg_norm_init` (one process, local
/// counts, `S = T`), then change fields. NULL means the defaults.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct tkm_agg_norm {
    /// `sizeof(tkm_agg_norm)` as the caller compiled it.
    pub struct_size: usize,
    /// Global valid-token count (verl `batch_num_tokens`); 0 = the local count.
    pub global_tokens: u64,
    /// Global count of non-empty sequences (verl `global_batch_size`); 0 = the local count.
    pub global_seqs: u64,
    /// Data-parallel size (>= 1; default 1).
    pub dp_size: u32,
    /// `S` of `TKM_AGG_SEQ_MEAN_TOKEN_SUM_NORM` (finite, > 0); 0 = `T` (the padded length).
    pub scale_factor: f32,
}

impl Default for tkm_agg_norm {
    fn default() -> Self {
        tkm_agg_norm {
            struct_size: size_of::<tkm_agg_norm>(),
            global_tokens: 0,
            global_seqs: 0,
            dp_size: 1,
            scale_factor: 0.0,
        }
    }
}

const NORM_FIELD_ENDS: [usize; 5] = [
    size_of::<usize>(),
    offset_of!(tkm_agg_norm, global_tokens) + 8,
    offset_of!(tkm_agg_norm, global_seqs) + 8,
    offset_of!(tkm_agg_norm, dp_size) + 4,
    offset_of!(tkm_agg_norm, scale_factor) + 4,
];

fn nonzero_f32(v: f32) -> Option<f32> {
    (v != 0.0).then_some(v)
}

fn agg_mode(mode: u32) -> Res<AggMode> {
    Ok(match mode {
        TKM_AGG_TOKEN_MEAN => AggMode::TokenMean,
        TKM_AGG_SEQ_MEAN_TOKEN_SUM => AggMode::SeqMeanTokenSum,
        TKM_AGG_SEQ_MEAN_TOKEN_MEAN => AggMode::SeqMeanTokenMean,
        TKM_AGG_SEQ_MEAN_TOKEN_SUM_NORM => AggMode::SeqMeanTokenSumNorm,
        _ => return Err(TKM_STATUS_INVALID_ARGUMENT),
    })
}

unsafe fn agg_norm(p: *const tkm_agg_norm) -> Res<AggNorm> {
    let n = read_options(p, tkm_agg_norm::default(), &NORM_FIELD_ENDS)?;
    Ok(AggNorm {
        global_tokens: (n.global_tokens != 0).then_some(n.global_tokens),
        global_seqs: (n.global_seqs != 0).then_some(n.global_seqs),
        dp_size: n.dp_size,
        scale_factor: nonzero_f32(n.scale_factor),
    })
}

/// Writes the default PPO clip options into `*opts`.
///
/// # Safety
/// `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
#[no_mangle]
pub unsafe extern "C" fn tkm_ppo_clip_options_init(opts: *mut tkm_ppo_clip_options) -> tkm_status {
    guard(|| {
        if opts.is_null() {
            return Err(TKM_STATUS_NULL_POINTER);
        }
        if (opts as usize) % core::mem::align_of::<tkm_ppo_clip_options>() != 0 {
            return Err(TKM_STATUS_MISALIGNED);
        }
        opts.write(tkm_ppo_clip_options::default());
        Ok(())
    })
}

/// Writes the default aggregation denominators into `*norm`.
///
/// # Safety
/// `norm` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
#[no_mangle]
pub unsafe extern "C" fn tkm_agg_norm_init(norm: *mut tkm_agg_norm) -> tkm_status {
    guard(|| {
        if norm.is_null() {
            return Err(TKM_STATUS_NULL_POINTER);
        }
        if (norm as usize) % core::mem::align_of::<tkm_agg_norm>() != 0 {
            return Err(TKM_STATUS_MISALIGNED);
        }
        norm.write(tkm_agg_norm::default());
        Ok(())
    })
}

/// PPO clipped surrogate per token, forward and gradient: for `[rows, cols]` arrays
/// `logp`, `old_logp`, `adv`, `mask` (and `is_weights`, NULL = none: rollout importance
/// weights multiplied into the loss and its gradient), writes `loss[b,t]` and
/// `dloss_dlogp[b,t]` (0 at masked positions) and, if `stats` is not NULL, the clip metrics.
/// Reduce with `tkm_agg_loss`; the logits backward's `g_logp` is `w * dloss_dlogp` with `w`
/// from `tkm_agg_weights`.
///
/// # Safety
/// Every non-NULL array must be valid for `rows * cols` elements.
#[no_mangle]
pub unsafe extern "C" fn tkm_ppo_clip_loss(
    logp: *const f32,
    old_logp: *const f32,
    adv: *const f32,
    mask: *const u8,
    is_weights: *const f32,
    rows: usize,
    cols: usize,
    opts: *const tkm_ppo_clip_options,
    loss: *mut f32,
    dloss_dlogp: *mut f32,
    stats: *mut tkm_policy_stats,
) -> tkm_status {
    guard(|| {
        let o = read_options(opts, tkm_ppo_clip_options::default(), &CLIP_FIELD_ENDS)?;
        let cfg = ClipCfg {
            eps_low: o.eps_low,
            eps_high: o.eps_high,
            dual_clip_c: nonzero_f32(o.dual_clip_c),
            log_ratio_clamp: nonzero_f32(o.log_ratio_clamp),
        };
        let n = mul(rows, cols)?;
        let inp = PolicyInputs {
            shape: BatchShape::new(rows, cols),
            logp: input(logp, n)?,
            old_logp: input(old_logp, n)?,
            adv: input(adv, n)?,
            mask: input(mask, n)?,
            is_weights: opt_input(is_weights, n)?,
        };
        let mut l = Out::new(loss, n)?;
        let mut g = Out::new(dloss_dlogp, n)?;
        let mut st = Out::<tkm_policy_stats>::optional(stats, 1)?;
        let s = pl::ppo_clip_loss(&inp, &cfg, LossOut { loss: &mut l.buf, dloss_dlogp: &mut g.buf })?;
        if let Some(st) = st.as_mut() {
            st.buf[0] = tkm_policy_stats {
                valid_tokens: s.valid_tokens,
                clipped_high: s.clipped_high,
                clipped_low: s.clipped_low,
                clipped_dual: s.clipped_dual,
                neg_log_ratio_sum: s.neg_log_ratio_sum,
            };
        }
        l.commit();
        g.commit();
        if let Some(st) = st {
            st.commit();
        }
        Ok(())
    })
}

/// The scalar loss `L = sum w[b,t] loss[b,t]` of per-token losses (`[rows, cols]`) under
/// `mode` (`TKM_AGG_*`) and `norm` (NULL = defaults), into `*out`. An empty denominator gives 0.
///
/// # Safety
/// `loss` and `mask` valid for `rows * cols` elements, `out` for one float.
#[no_mangle]
pub unsafe extern "C" fn tkm_agg_loss(
    loss: *const f32,
    mask: *const u8,
    rows: usize,
    cols: usize,
    mode: u32,
    norm: *const tkm_agg_norm,
    out: *mut f32,
) -> tkm_status {
    guard(|| {
        let mode = agg_mode(mode)?;
        let norm = agg_norm(norm)?;
        let n = mul(rows, cols)?;
        let (l, m) = (input(loss, n)?, input(mask, n)?);
        let mut o = Out::new(out, 1)?;
        o.buf[0] = pl::agg_loss(l, m, BatchShape::new(rows, cols), mode, &norm)?;
        o.commit();
        Ok(())
    })
}

/// The aggregation weights `w[b,t] = dL/d loss[b,t]` (`[rows, cols]`, 0 at masked positions)
/// of `tkm_agg_loss` into `w`.
///
/// # Safety
/// `mask` and `w` valid for `rows * cols` elements.
#[no_mangle]
pub unsafe extern "C" fn tkm_agg_weights(
    mask: *const u8,
    rows: usize,
    cols: usize,
    mode: u32,
    norm: *const tkm_agg_norm,
    w: *mut f32,
) -> tkm_status {
    guard(|| {
        let mode = agg_mode(mode)?;
        let norm = agg_norm(norm)?;
        let n = mul(rows, cols)?;
        let m = input(mask, n)?;
        let mut o = Out::new(w, n)?;
        pl::agg_weights(m, BatchShape::new(rows, cols), mode, &norm, &mut o.buf)?;
        o.commit();
        Ok(())
    })
}
