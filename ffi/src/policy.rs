//! Policy losses: the PPO clipped surrogate (clip-higher, dual clip, log-ratio clamp) per
//! token with its gradient, PPO with a KL penalty (and the fused step that also aggregates),
//! GSPO, CISPO, SAPO, the KL estimators, truncated importance weights, the loss aggregation
//! (`L` and its weights `w = dL/d loss`) and the upstreams of the logits backward.
//! `tokenmath_core::policy_loss` documents the math.
//!
//! Every kernel takes `const tkm_exec_options *exec` first (NULL = defaults), as the logits
//! kernels do: its `backend` pins the instruction set (`TKM_BACKEND_PORTABLE`, …; every
//! backend gives the same bits). The policy kernels are single-threaded: `threads` is not used.

use tokenmath_core::policy_loss::{
    self as pl, AggMode, AggNorm, BatchShape, CispoCfg, ClipCfg, GspoCfg, KlCfg, KlKind, KlStats, KlTerm, LossOut,
    PolicyInputs, PolicyStats, SapoCfg, TisCfg, TisLevel,
};

use crate::exec::{exec_from, tkm_exec_options};
use crate::status::*;
use crate::util::{flag, guard, init_options, inout, input, mul, opt_input, options, overlaps, read_options, Out, Res};

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

options!(tkm_ppo_clip_options {
    let c = ClipCfg::default();
    eps_low: c.eps_low,
    eps_high: c.eps_high,
    dual_clip_c: c.dual_clip_c.unwrap_or(0.0),
    log_ratio_clamp: c.log_ratio_clamp.unwrap_or(0.0),
});

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

options!(tkm_agg_norm { global_tokens: 0, global_seqs: 0, dp_size: 1, scale_factor: 0.0 });

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
    let n = read_options(p)?;
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
    init_options(opts)
}

/// Writes the default aggregation denominators into `*norm`.
///
/// # Safety
/// `norm` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
#[no_mangle]
pub unsafe extern "C" fn tkm_agg_norm_init(norm: *mut tkm_agg_norm) -> tkm_status {
    init_options(norm)
}

/// The core clip configuration of the options (validated by the core kernel; 0 = "none" for
/// the dual clip and the log-ratio clamp).
fn clip_cfg(o: &tkm_ppo_clip_options) -> ClipCfg {
    ClipCfg {
        eps_low: o.eps_low,
        eps_high: o.eps_high,
        dual_clip_c: nonzero_f32(o.dual_clip_c),
        log_ratio_clamp: nonzero_f32(o.log_ratio_clamp),
    }
}

fn to_policy_stats(s: &PolicyStats) -> tkm_policy_stats {
    tkm_policy_stats {
        valid_tokens: s.valid_tokens,
        clipped_high: s.clipped_high,
        clipped_low: s.clipped_low,
        clipped_dual: s.clipped_dual,
        neg_log_ratio_sum: s.neg_log_ratio_sum,
    }
}

fn to_kl_stats(s: &KlStats) -> tkm_kl_stats {
    tkm_kl_stats { valid_tokens: s.valid_tokens, kl_sum: s.kl_sum }
}

/// The per-token inputs shared by the policy losses (`is_weights` optional), each of
/// `rows * cols` elements.
///
/// # Safety
/// Every non-NULL pointer valid for `rows * cols` elements.
unsafe fn policy_inputs<'a>(
    logp: *const f32,
    old_logp: *const f32,
    adv: *const f32,
    mask: *const u8,
    is_weights: *const f32,
    rows: usize,
    cols: usize,
) -> Res<PolicyInputs<'a>> {
    let n = mul(rows, cols)?;
    Ok(PolicyInputs {
        shape: BatchShape::new(rows, cols),
        logp: input(logp, n)?,
        old_logp: input(old_logp, n)?,
        adv: input(adv, n)?,
        mask: input(mask, n)?,
        is_weights: opt_input(is_weights, n)?,
    })
}

/// Sets and commits an optional one-element output.
///
/// # Safety
/// As [`Out::commit`].
unsafe fn commit_one<T: Copy + Default>(o: Option<Out<T>>, v: T) {
    if let Some(mut o) = o {
        o.buf[0] = v;
        o.commit();
    }
}

/// Runs a per-token loss kernel on validated inputs into scratch, then commits `loss`,
/// `dloss_dlogp` and (if not NULL) `stats`.
///
/// # Safety
/// `loss`, `dloss_dlogp` valid for `n` floats, `stats` NULL or valid for one struct.
unsafe fn run_loss(
    n: usize,
    loss: *mut f32,
    dloss_dlogp: *mut f32,
    stats: *mut tkm_policy_stats,
    kernel: impl FnOnce(LossOut<'_>) -> Result<PolicyStats, tokenmath_core::TmError>,
) -> Res {
    let mut l = Out::new(loss, n)?;
    let mut g = Out::new(dloss_dlogp, n)?;
    let st = Out::<tkm_policy_stats>::optional(stats, 1)?;
    let s = kernel(LossOut { loss: &mut l.buf, dloss_dlogp: &mut g.buf })?;
    l.commit();
    g.commit();
    commit_one(st, to_policy_stats(&s));
    Ok(())
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
    exec: *const tkm_exec_options,
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
        let exec = exec_from(exec)?;
        let o = read_options(opts)?;
        let cfg = clip_cfg(&o);
        let inp = policy_inputs(logp, old_logp, adv, mask, is_weights, rows, cols)?;
        run_loss(rows * cols, loss, dloss_dlogp, stats, |out| pl::ppo_clip_loss(exec, &inp, &cfg, out))
    })
}

/// The scalar loss `L = sum w[b,t] loss[b,t]` of per-token losses (`[rows, cols]`) under
/// `mode` (`TKM_AGG_*`) and `norm` (NULL = defaults), into `*out`. An empty denominator gives 0.
///
/// # Safety
/// `loss` and `mask` valid for `rows * cols` elements, `out` for one float.
#[no_mangle]
pub unsafe extern "C" fn tkm_agg_loss(
    exec: *const tkm_exec_options,
    loss: *const f32,
    mask: *const u8,
    rows: usize,
    cols: usize,
    mode: u32,
    norm: *const tkm_agg_norm,
    out: *mut f32,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let mode = agg_mode(mode)?;
        let norm = agg_norm(norm)?;
        let n = mul(rows, cols)?;
        let (l, m) = (input(loss, n)?, input(mask, n)?);
        let mut o = Out::new(out, 1)?;
        o.buf[0] = pl::agg_loss(exec, BatchShape::new(rows, cols), m, l, mode, &norm)?;
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
    exec: *const tkm_exec_options,
    mask: *const u8,
    rows: usize,
    cols: usize,
    mode: u32,
    norm: *const tkm_agg_norm,
    w: *mut f32,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let mode = agg_mode(mode)?;
        let norm = agg_norm(norm)?;
        let n = mul(rows, cols)?;
        let m = input(mask, n)?;
        let mut o = Out::new(w, n)?;
        pl::agg_weights(exec, BatchShape::new(rows, cols), m, mode, &norm, &mut o.buf)?;
        o.commit();
        Ok(())
    })
}

/// KL estimator `d` ("kl", "k1"); `d = logp - ref_logp`.
pub const TKM_KL_K1: u32 = 0;
/// KL estimator `|d|` ("abs").
pub const TKM_KL_ABS: u32 = 1;
/// KL estimator `d^2 / 2` ("mse", "k2").
pub const TKM_KL_K2: u32 = 2;
/// KL estimator `exp(-d) + d - 1` ("low_var_kl", "k3"; the default).
pub const TKM_KL_K3: u32 = 3;
/// The value of k1 with the gradient of k2 ("k1+").
pub const TKM_KL_K1_PLUS: u32 = 4;
/// The value of k3 with the gradient of k2 ("k3+").
pub const TKM_KL_K3_PLUS: u32 = 5;

/// KL estimator options. Initialise with `tkm_kl_options_init` (verl's actor KL loss:
/// `TKM_KL_K3` with verl's clamps), then change fields. NULL means the defaults.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct tkm_kl_options {
    /// `sizeof(tkm_kl_options)` as the caller compiled it.
    pub struct_size: usize,
    /// `TKM_KL_*` (default `TKM_KL_K3`).
    pub kind: u32,
    /// 1 = verl's `low_var_kl` clamps (`-d` to +-20, the value to +-10; k3 and k3+ only,
    /// default), 0 = none (TRL).
    pub verl_clamps: u32,
}

options!(tkm_kl_options { kind: TKM_KL_K3, verl_clamps: 1 });

unsafe fn kl_cfg(p: *const tkm_kl_options) -> Res<KlCfg> {
    let o = read_options(p)?;
    let kind = match o.kind {
        TKM_KL_K1 => KlKind::K1,
        TKM_KL_ABS => KlKind::Abs,
        TKM_KL_K2 => KlKind::K2,
        TKM_KL_K3 => KlKind::K3,
        TKM_KL_K1_PLUS => KlKind::K1Plus,
        TKM_KL_K3_PLUS => KlKind::K3Plus,
        _ => return Err(TKM_STATUS_INVALID_ARGUMENT),
    };
    Ok(KlCfg { kind, verl_clamps: flag(o.verl_clamps)? })
}

/// The metrics of a KL estimator: a mergeable sum (add across micro-batches and ranks, then
/// divide by `valid_tokens` for the token-mean KL). A fixed-layout output struct.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct tkm_kl_stats {
    /// Valid (mask != 0) tokens.
    pub valid_tokens: u64,
    /// Sum of the per-token KL values (after clamps, unscaled by any coefficient) over valid
    /// tokens.
    pub kl_sum: f64,
}

/// GSPO options. Initialise with `tkm_gspo_options_init` (verl's actor defaults:
/// `eps_low = eps_high = 0.2`, sequence log-ratio cap 10), then change fields. NULL means
/// the defaults.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct tkm_gspo_options {
    /// `sizeof(tkm_gspo_options)` as the caller compiled it.
    pub struct_size: usize,
    /// The sequence ratio's lower clip is `1 - eps_low` (finite, >= 0).
    pub eps_low: f32,
    /// The sequence ratio's upper clip is `1 + eps_high` (finite, >= 0).
    pub eps_high: f32,
    /// Upper cap on the sequence log-ratio (finite); `INFINITY` = no cap.
    pub seq_log_ratio_cap: f32,
}

options!(tkm_gspo_options {
    let c = GspoCfg::default();
    eps_low: c.eps_low,
    eps_high: c.eps_high,
    seq_log_ratio_cap: c.seq_log_ratio_cap.unwrap_or(f32::INFINITY),
});

/// `Some(v)` unless `v` is the "absent" infinity `inf` (other non-finite values are kept, for
/// the core to reject).
fn unless_inf(v: f32, inf: f32) -> Option<f32> {
    (v != inf).then_some(v)
}

/// CISPO options. Initialise with `tkm_cispo_options_init` (verl: weight clamped to
/// `[0.8, 1.2]`, log-ratio clamp 20), then change fields. NULL means the defaults. TRL's
/// form is `w_min = -INFINITY`, `w_max = cap` (e.g. 5), `log_ratio_clamp = 0`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct tkm_cispo_options {
    /// `sizeof(tkm_cispo_options)` as the caller compiled it.
    pub struct_size: usize,
    /// Lower bound of the weight (finite); `-INFINITY` = none.
    pub w_min: f32,
    /// Upper bound of the weight (finite, >= `w_min`); `INFINITY` = none.
    pub w_max: f32,
    /// Clamp `|logp - old_logp| <= log_ratio_clamp` before `exp` (finite, > 0); 0 = none.
    pub log_ratio_clamp: f32,
}

options!(tkm_cispo_options {
    let c = CispoCfg::default();
    w_min: c.w_min.unwrap_or(f32::NEG_INFINITY),
    w_max: c.w_max.unwrap_or(f32::INFINITY),
    log_ratio_clamp: c.log_ratio_clamp.unwrap_or(0.0),
});

/// SAPO options. Initialise with `tkm_sapo_options_init` (verl: `tau_pos = 1`,
/// `tau_neg = 1.05`, log-ratio clamp 20; TRL: the clamp 0), then change fields. NULL means
/// the defaults.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct tkm_sapo_options {
    /// `sizeof(tkm_sapo_options)` as the caller compiled it.
    pub struct_size: usize,
    /// Temperature for `A > 0` (finite, > 0).
    pub tau_pos: f32,
    /// Temperature for `A <= 0` (finite, > 0).
    pub tau_neg: f32,
    /// Clamp `|logp - old_logp| <= log_ratio_clamp` before `exp` (finite, > 0); 0 = none.
    pub log_ratio_clamp: f32,
}

options!(tkm_sapo_options {
    let c = SapoCfg::default();
    tau_pos: c.tau_pos,
    tau_neg: c.tau_neg,
    log_ratio_clamp: c.log_ratio_clamp.unwrap_or(0.0),
});

/// Writes the default KL options into `*opts`.
///
/// # Safety
/// `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
#[no_mangle]
pub unsafe extern "C" fn tkm_kl_options_init(opts: *mut tkm_kl_options) -> tkm_status {
    init_options(opts)
}

/// Writes the default GSPO options into `*opts`.
///
/// # Safety
/// `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
#[no_mangle]
pub unsafe extern "C" fn tkm_gspo_options_init(opts: *mut tkm_gspo_options) -> tkm_status {
    init_options(opts)
}

/// Writes the default CISPO options into `*opts`.
///
/// # Safety
/// `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
#[no_mangle]
pub unsafe extern "C" fn tkm_cispo_options_init(opts: *mut tkm_cispo_options) -> tkm_status {
    init_options(opts)
}

/// Writes the default SAPO options into `*opts`.
///
/// # Safety
/// `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
#[no_mangle]
pub unsafe extern "C" fn tkm_sapo_options_init(opts: *mut tkm_sapo_options) -> tkm_status {
    init_options(opts)
}

/// `tkm_ppo_clip_loss` with a KL penalty folded in, in one pass:
/// `loss = loss_pg * w_is + kl_coef * kl`, `dloss_dlogp` likewise (the importance weights
/// multiply the policy term only, as verl). `ref_logp` (`[rows, cols]`) is `log pi_ref` of
/// the sampled tokens; `kl` (NULL = defaults) chooses the estimator; `kl_coef` (verl
/// `kl_loss_coef`, finite) scales it. Bitwise equal to the sum of `tkm_ppo_clip_loss` and
/// `kl_coef` times `tkm_kl_loss`. `stats` and `kl_stats` (NULL = not wanted) receive the clip
/// metrics and the unscaled KL sum.
///
/// Errors: as `tkm_ppo_clip_loss`; `TKM_STATUS_INVALID_ARGUMENT` for a non-finite `kl_coef`
/// or an unknown `kl->kind`.
///
/// # Safety
/// Every non-NULL array must be valid for `rows * cols` elements.
#[no_mangle]
pub unsafe extern "C" fn tkm_ppo_clip_kl_loss(
    exec: *const tkm_exec_options,
    logp: *const f32,
    old_logp: *const f32,
    adv: *const f32,
    mask: *const u8,
    is_weights: *const f32,
    ref_logp: *const f32,
    rows: usize,
    cols: usize,
    opts: *const tkm_ppo_clip_options,
    kl: *const tkm_kl_options,
    kl_coef: f32,
    loss: *mut f32,
    dloss_dlogp: *mut f32,
    stats: *mut tkm_policy_stats,
    kl_stats: *mut tkm_kl_stats,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let o = read_options(opts)?;
        let cfg = clip_cfg(&o);
        let kcfg = kl_cfg(kl)?;
        let inp = policy_inputs(logp, old_logp, adv, mask, is_weights, rows, cols)?;
        let n = rows * cols;
        let term = KlTerm { ref_logp: input(ref_logp, n)?, cfg: kcfg, coef: kl_coef };
        let mut l = Out::new(loss, n)?;
        let mut g = Out::new(dloss_dlogp, n)?;
        let st = Out::<tkm_policy_stats>::optional(stats, 1)?;
        let kst = Out::<tkm_kl_stats>::optional(kl_stats, 1)?;
        let (ps, ks) =
            pl::ppo_clip_kl_loss(exec, &inp, &cfg, &term, LossOut { loss: &mut l.buf, dloss_dlogp: &mut g.buf })?;
        l.commit();
        g.commit();
        commit_one(st, to_policy_stats(&ps));
        commit_one(kst, to_kl_stats(&ks));
        Ok(())
    })
}

/// One PPO + KL step, fused: `tkm_ppo_clip_kl_loss`, `tkm_agg_loss` and
/// `tkm_agg_chain_inplace` in one pass over the tokens. Writes the per-token `loss`,
/// `g_logp = w * dloss_dlogp` (the aggregation weight applied: pass it as the `g_logp`
/// upstream of `tkm_logits_bwd`), the scalar `*total_loss = L` under `mode` (`TKM_AGG_*`) and
/// `norm` (NULL = defaults), and, if not NULL, the clip and KL metrics. Bitwise what the
/// three calls give (a NaN's sign and payload aside).
///
/// Errors: those of the three calls.
///
/// # Safety
/// Every non-NULL array must be valid for `rows * cols` elements, `total_loss` for one
/// float.
#[no_mangle]
pub unsafe extern "C" fn tkm_ppo_clip_kl_step(
    exec: *const tkm_exec_options,
    logp: *const f32,
    old_logp: *const f32,
    adv: *const f32,
    mask: *const u8,
    is_weights: *const f32,
    ref_logp: *const f32,
    rows: usize,
    cols: usize,
    opts: *const tkm_ppo_clip_options,
    kl: *const tkm_kl_options,
    kl_coef: f32,
    mode: u32,
    norm: *const tkm_agg_norm,
    loss: *mut f32,
    g_logp: *mut f32,
    total_loss: *mut f32,
    stats: *mut tkm_policy_stats,
    kl_stats: *mut tkm_kl_stats,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let o = read_options(opts)?;
        let cfg = clip_cfg(&o);
        let kcfg = kl_cfg(kl)?;
        let mode = agg_mode(mode)?;
        let norm = agg_norm(norm)?;
        let inp = policy_inputs(logp, old_logp, adv, mask, is_weights, rows, cols)?;
        let n = rows * cols;
        let term = KlTerm { ref_logp: input(ref_logp, n)?, cfg: kcfg, coef: kl_coef };
        let mut l = Out::new(loss, n)?;
        let mut g = Out::new(g_logp, n)?;
        let mut total = Out::new(total_loss, 1)?;
        let st = Out::<tkm_policy_stats>::optional(stats, 1)?;
        let kst = Out::<tkm_kl_stats>::optional(kl_stats, 1)?;
        let s = pl::ppo_clip_kl_step(
            exec,
            &inp,
            &cfg,
            &term,
            mode,
            &norm,
            LossOut { loss: &mut l.buf, dloss_dlogp: &mut g.buf },
        )?;
        total.buf[0] = s.loss;
        l.commit();
        g.commit();
        total.commit();
        commit_one(st, to_policy_stats(&s.policy));
        commit_one(kst, to_kl_stats(&s.kl));
        Ok(())
    })
}

/// GSPO (sequence-level ratio `s_b = exp(min(mean_t(logp - old_logp), cap))`, clipped as
/// PPO), per token, forward and gradient, with the arguments of `tkm_ppo_clip_loss` and
/// `opts` (NULL = defaults). verl aggregates it with `TKM_AGG_SEQ_MEAN_TOKEN_MEAN`. A row
/// without valid tokens gives zeros.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` for an `eps` negative or not finite, or a cap that
/// is NaN or `-INFINITY`; pointer and size errors as everywhere.
///
/// # Safety
/// Every non-NULL array must be valid for `rows * cols` elements.
#[no_mangle]
pub unsafe extern "C" fn tkm_gspo_loss(
    exec: *const tkm_exec_options,
    logp: *const f32,
    old_logp: *const f32,
    adv: *const f32,
    mask: *const u8,
    is_weights: *const f32,
    rows: usize,
    cols: usize,
    opts: *const tkm_gspo_options,
    loss: *mut f32,
    dloss_dlogp: *mut f32,
    stats: *mut tkm_policy_stats,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let o = read_options(opts)?;
        let cfg = GspoCfg {
            eps_low: o.eps_low,
            eps_high: o.eps_high,
            seq_log_ratio_cap: unless_inf(o.seq_log_ratio_cap, f32::INFINITY),
        };
        let inp = policy_inputs(logp, old_logp, adv, mask, is_weights, rows, cols)?;
        run_loss(rows * cols, loss, dloss_dlogp, stats, |out| pl::gspo_loss(exec, &inp, &cfg, out))
    })
}

/// CISPO (`loss = -sg(w) * A * logp`, `w` the clamped ratio), per token, forward and
/// gradient, with the arguments of `tkm_ppo_clip_loss` and `opts` (NULL = defaults).
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` for NaN bounds, `w_min > w_max`, `w_min = INFINITY`,
/// `w_max = -INFINITY` or a negative or non-finite clamp.
///
/// # Safety
/// Every non-NULL array must be valid for `rows * cols` elements.
#[no_mangle]
pub unsafe extern "C" fn tkm_cispo_loss(
    exec: *const tkm_exec_options,
    logp: *const f32,
    old_logp: *const f32,
    adv: *const f32,
    mask: *const u8,
    is_weights: *const f32,
    rows: usize,
    cols: usize,
    opts: *const tkm_cispo_options,
    loss: *mut f32,
    dloss_dlogp: *mut f32,
    stats: *mut tkm_policy_stats,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let o = read_options(opts)?;
        let cfg = CispoCfg {
            w_min: unless_inf(o.w_min, f32::NEG_INFINITY),
            w_max: unless_inf(o.w_max, f32::INFINITY),
            log_ratio_clamp: nonzero_f32(o.log_ratio_clamp),
        };
        let inp = policy_inputs(logp, old_logp, adv, mask, is_weights, rows, cols)?;
        run_loss(rows * cols, loss, dloss_dlogp, stats, |out| pl::cispo_loss(exec, &inp, &cfg, out))
    })
}

/// SAPO (`loss = -A * sigmoid(tau (r - 1)) * 4 / tau`), per token, forward and gradient, with
/// the arguments of `tkm_ppo_clip_loss` and `opts` (NULL = defaults). verl aggregates it with
/// `TKM_AGG_SEQ_MEAN_TOKEN_MEAN`.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` for a temperature that is not finite and > 0, or a
/// negative or non-finite clamp.
///
/// # Safety
/// Every non-NULL array must be valid for `rows * cols` elements.
#[no_mangle]
pub unsafe extern "C" fn tkm_sapo_loss(
    exec: *const tkm_exec_options,
    logp: *const f32,
    old_logp: *const f32,
    adv: *const f32,
    mask: *const u8,
    is_weights: *const f32,
    rows: usize,
    cols: usize,
    opts: *const tkm_sapo_options,
    loss: *mut f32,
    dloss_dlogp: *mut f32,
    stats: *mut tkm_policy_stats,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let o = read_options(opts)?;
        let cfg = SapoCfg { tau_pos: o.tau_pos, tau_neg: o.tau_neg, log_ratio_clamp: nonzero_f32(o.log_ratio_clamp) };
        let inp = policy_inputs(logp, old_logp, adv, mask, is_weights, rows, cols)?;
        run_loss(rows * cols, loss, dloss_dlogp, stats, |out| pl::sapo_loss(exec, &inp, &cfg, out))
    })
}

/// The per-token KL estimator `kl[b,t]` of `d = logp - ref_logp` and its gradient w.r.t.
/// `logp` (`[rows, cols]`, 0 at masked positions), with `opts` (NULL = defaults), and, if
/// `stats` is not NULL, its sum and count. Reduce with `tkm_agg_loss`.
///
/// # Safety
/// `logp`, `ref_logp`, `mask`, `loss`, `dloss_dlogp` valid for `rows * cols` elements.
#[no_mangle]
pub unsafe extern "C" fn tkm_kl_loss(
    exec: *const tkm_exec_options,
    logp: *const f32,
    ref_logp: *const f32,
    mask: *const u8,
    rows: usize,
    cols: usize,
    opts: *const tkm_kl_options,
    loss: *mut f32,
    dloss_dlogp: *mut f32,
    stats: *mut tkm_kl_stats,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let cfg = kl_cfg(opts)?;
        let n = mul(rows, cols)?;
        let (lp, rf, m) = (input(logp, n)?, input(ref_logp, n)?, input(mask, n)?);
        let mut l = Out::new(loss, n)?;
        let mut g = Out::new(dloss_dlogp, n)?;
        let st = Out::<tkm_kl_stats>::optional(stats, 1)?;
        let shape = BatchShape::new(rows, cols);
        let s = pl::kl_loss(exec, shape, m, lp, rf, &cfg, LossOut { loss: &mut l.buf, dloss_dlogp: &mut g.buf })?;
        l.commit();
        g.commit();
        commit_one(st, to_kl_stats(&s));
        Ok(())
    })
}

/// Token-level truncated importance weights `min(exp(old_logp - rollout_logp), cap)`.
pub const TKM_TIS_TOKEN: u32 = 0;
/// Sequence-level: one weight per row from the masked sum of the log-ratios.
pub const TKM_TIS_SEQUENCE: u32 = 1;

/// Truncated importance weights (rollout correction) into `out` (`[rows, cols]`, 0 at masked
/// positions): `level` is `TKM_TIS_*`, `cap` the truncation (> 0; `INFINITY` = none). Pass
/// the result as `is_weights` of the loss calls.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` for an unknown level or a cap that is NaN or <= 0.
///
/// # Safety
/// `old_logp`, `rollout_logp`, `mask`, `out` valid for `rows * cols` elements.
#[no_mangle]
pub unsafe extern "C" fn tkm_tis_weights(
    exec: *const tkm_exec_options,
    old_logp: *const f32,
    rollout_logp: *const f32,
    mask: *const u8,
    rows: usize,
    cols: usize,
    level: u32,
    cap: f32,
    out: *mut f32,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let level = match level {
            TKM_TIS_TOKEN => TisLevel::Token,
            TKM_TIS_SEQUENCE => TisLevel::Sequence,
            _ => return Err(TKM_STATUS_INVALID_ARGUMENT),
        };
        let n = mul(rows, cols)?;
        let (o, r, m) = (input(old_logp, n)?, input(rollout_logp, n)?, input(mask, n)?);
        let mut dst = Out::new(out, n)?;
        pl::tis_weights(exec, BatchShape::new(rows, cols), m, o, r, &TisCfg { level, cap }, &mut dst.buf)?;
        dst.commit();
        Ok(())
    })
}

/// Multiplies `d[b,t]` (`[rows, cols]`, e.g. the `dloss_dlogp` of a loss call) by the
/// aggregation weight `w[b,t]` of `tkm_agg_weights(mask, rows, cols, mode, norm)` in place,
/// without materialising `w`: the result is the `g_logp` upstream of `tkm_logits_bwd`.
/// Masked positions become 0 whatever `d` held. Bitwise equal to `tkm_agg_weights` followed
/// by `tkm_logp_upstream` with the single term `(1, d)`. Nothing can fail after validation,
/// so `d` is written directly; `d` must not overlap `mask` (`TKM_STATUS_OVERLAP`).
///
/// # Safety
/// `mask` valid for `rows * cols` bytes, `d` for reads and writes of `rows * cols` floats.
#[no_mangle]
pub unsafe extern "C" fn tkm_agg_chain_inplace(
    exec: *const tkm_exec_options,
    mask: *const u8,
    rows: usize,
    cols: usize,
    mode: u32,
    norm: *const tkm_agg_norm,
    d: *mut f32,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let mode = agg_mode(mode)?;
        let norm = agg_norm(norm)?;
        let n = mul(rows, cols)?;
        let m = input(mask, n)?;
        if overlaps(mask, n, d, n) && !d.is_null() {
            return Err(TKM_STATUS_OVERLAP);
        }
        let d = inout(d, n)?;
        pl::agg_chain_inplace(exec, BatchShape::new(rows, cols), m, mode, &norm, d)?;
        Ok(())
    })
}

/// The fused per-token upstream of the logits backward,
/// `g_logp[i] = w[i] * sum_k coefs[k] * terms[k][i]` (terms summed in the order given, in
/// f32; 0 where `w[i] = 0`), for a loss `L = sum_k coefs[k] * agg(loss_k)` whose terms share
/// the aggregation weights `w` (`n` floats, from `tkm_agg_weights`). `terms` holds `n_terms`
/// pointers to `n` floats each (e.g. `{dloss_pg, dloss_kl}` with `coefs = {1, beta}`).
/// `out` may alias `w` or a term (it is written at the end).
///
/// # Safety
/// `w` and every `terms[k]` valid for `n` floats, `coefs` and `terms` for `n_terms`
/// elements, `out` for `n` floats.
#[no_mangle]
pub unsafe extern "C" fn tkm_logp_upstream(
    exec: *const tkm_exec_options,
    w: *const f32,
    n: usize,
    coefs: *const f32,
    terms: *const *const f32,
    n_terms: usize,
    out: *mut f32,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let w = input(w, n)?;
        let c = input(coefs, n_terms)?;
        let t = input(terms, n_terms)?;
        let mut pairs: Vec<(f32, &[f32])> = Vec::new();
        pairs.try_reserve_exact(n_terms).map_err(|_| TKM_STATUS_OUT_OF_MEMORY)?;
        for (&ck, &tk) in c.iter().zip(t) {
            pairs.push((ck, input(tk, n)?));
        }
        let mut dst = Out::new(out, n)?;
        pl::logp_upstream(exec, w, &pairs, &mut dst.buf)?;
        dst.commit();
        Ok(())
    })
}

/// The entropy-bonus upstream `g_entropy[i] = -coef * w[i]` (0 where `w[i] = 0`) for
/// `L -= coef * agg(H)` (verl `entropy_coeff`), `w` the `n` aggregation weights of the bonus'
/// mask. Pass it as the `g_entropy` upstream of `tkm_logits_bwd`. `out` may alias `w`.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` for a non-finite `coef`.
///
/// # Safety
/// `w` and `out` valid for `n` floats.
#[no_mangle]
pub unsafe extern "C" fn tkm_entropy_upstream(
    exec: *const tkm_exec_options,
    w: *const f32,
    n: usize,
    coef: f32,
    out: *mut f32,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let w = input(w, n)?;
        let mut dst = Out::new(out, n)?;
        pl::entropy_upstream(exec, w, coef, &mut dst.buf)?;
        dst.commit();
        Ok(())
    })
}
