//! HAPO: heterogeneous adaptive policy optimisation (spec `policy.md` §7.1).
//!
//! Source: HAPO (arXiv 2509.16591); official code `starriver030515/HAPO` (a verl fork).
//! Everything here is \[code\] unless tagged otherwise. Four components share an entropy
//! normaliser; the order in a training step is `ĥ` (no grad, current micro-batch) → `ε(t)` → `A'`
//! → loss.
//!
//! # Entropy normaliser ([`hapo_entropy_norm`], `compute_entropy_h`)
//!
//! ```text
//! ℓ       = log(max(H, eps))                                   every position; eps = 1e-8
//! m       = quantile_nearest({ℓ : mask}, q)                    pivot (NaN → 0)
//! h       = (ℓ − m) / σ,   σ = sqrt(max(Σ_mask (ℓ − m)² / max(Σ mask, 1), eps))   RMS about the PIVOT
//! pos_max = max(max{h : mask ∧ h > 0} (0 if none), eps);  neg_min = min(min{h : mask ∧ h < 0} (0 if none), −eps)
//! ĥ       = h > 0 ? h/pos_max : h·scale_neg                    every position
//! scale_neg = 1/neg_min (< 0)    CodeCompat: the released code, ĥ ∈ [0, 1] on valid tokens
//!           = 1/|neg_min|        Intended: the paper's reading, ĥ ∈ [−1, 0) below the pivot
//! ```
//! `quantile_nearest` is `torch_quantile(…, interpolation="nearest")`: `idx = round(q·(n − 1))`
//! with Python's `round` (half to even) on the `f64` product, `m` = the `(idx+1)`-th smallest. A
//! NaN among the valid `ℓ` makes the quantile NaN, hence `m = 0`. Without a mask, `mask = H > 0`.
//! Empty mask: the reference raises; the library returns `ĥ = 0` everywhere and the statistics
//! `(0, 1, 1, ∓1)` (the sign of `scale_neg` per mode) \[library choice\]. Computed in `f64`,
//! rounded once \[library choice\] (the reference is `f32` torch).
//!
//! [`HapoSign`]: `CodeCompat` is the default \[library choice: published results were produced by
//! that code\]; with it the `ĥ ≤ 0` branches below act only at the pivot (no-ops) and temperatures
//! only ever increase.
//!
//! # Adaptive temperature ([`hapo_adaptive_temperature`], vLLM `compute_entropy_based_temperature`)
//!
//! Per decoding step and sequence, from the logits `z` before temperature:
//! ```text
//! H    = −Σ softmax(z)·log_softmax(z)        (the logits forward's entropy, temperature 1)
//! h    = (log(max(H, 1e-6)) − m)/(σ + 1e-6)  statistics from the previous training step
//! ĥ    = clamp(h > 0 ? h·scale_pos : h·scale_neg, −1, 1)     scale_neg's sign per HapoSign
//! temp = temp_base·(1 + τ·ĥ)                τ = temperature_tau = 0.05
//! ```
//! No statistics yet (`None`, step 1) → `temp = temp_base`. A row with a NaN/`+inf` logit gets
//! `temp_base` \[library choice: sampling falls back to the base temperature\] and is counted.
//!
//! # Token-level group-average advantage ([`hapo_token_group_advantage`], `compute_hapo_outcome_advantage`)
//! ```text
//! R_i = Σ_t token_reward[i,t];  L_i = Σ_t mask[i,t]
//! μ_g = Σ_{i∈g} L_i R_i / Σ L_i;   σ_g = sqrt(Σ L_i (R_i − μ_g)² / Σ L_i)     (population, over tokens)
//! N[i,t] = (R_i·mask[i,t] − μ_g)/(σ_g + eps)    every t (padding included); without norm_by_std: R_i·mask − μ_g
//! if any |N[i,t]| ≥ fallback_abs over the group (padding included if pad_in_check):
//!      A[i,t] = A^GRPO_i·mask[i,t]     (verl loop GRPO: unbiased std, /(σ + eps), singleton μ = 0, σ = 1)
//! else A[i,t] = N[i,t]                 (× mask if mask_output)
//! ```
//! Groups are arbitrary `u32` labels, members in ascending row order; statistics in `f64`. A
//! group whose rows are all empty gives 0 (the reference: NaN) \[library choice\]; a non-finite
//! reward is [`TmError::NonFinite`] \[library choice, as `crate::advantages`\].
//!
//! # Asymmetric adaptive clip ([`hapo_adaptive_clip`], `ada_clip`)
//! ```text
//! ε_low(t)  = ĥ ≤ 0 ? ε_low·(1 − α·ĥ) : ε_low;     ε_high(t) = ĥ > 0 ? ε_high·(1 + α·ĥ) : ε_high
//! ```
//!
//! # Differential advantage redistribution ([`hapo_redistribute`], `ada_advantage`)
//! ```text
//! A_ent   = A·(1 + β·ĥ)
//! neutral = r > 1 − ε_low(t)/2  ∧  r < 1 + ε_high(t)/2          r = exp(logp − old_logp), no clamp
//! A'      = ĥ > 0 ? (neutral ? A : A_ent) : (neutral ? A_ent : A)
//! ```
//! Both are `f32` elementwise formulas in the reference's operation order; a NaN `ĥ` takes the
//! `else` branches (as `torch.where`).
//!
//! # HAPO loss ([`hapo_loss`], the fork's `compute_policy_loss`)
//! Dual-clip PPO (`crate::policy_loss::ppo_clip_loss`'s formulas) with per-token `ε_low(t)`,
//! `ε_high(t)`, advantages `A'`, `c = 10` and **no** log-ratio clamp:
//! ```text
//! r = exp(Δ);  l1 = −A r;  l2 = −A clamp(r, 1 − ε_low(t), 1 + ε_high(t));  lc = max(l1, l2)
//! ℓ = A < 0 ? min(lc, −A c) : lc;      ∂ℓ/∂logp = −A r κ,
//! κ = A > 0 ? 1[r ≤ 1 + ε_high(t)] : 1[r ≥ 1 − ε_low(t)]·1[r ≤ c]     (A = 0: ℓ = 0, gradient 0)
//! ```
//! Aggregation: `token-mean` (`crate::policy_loss::agg_loss`).
//!
//! Defaults \[code\] (recipes, `ppo_trainer.yaml`): `entropy_pivot = 0.8`, `temperature_tau =
//! 0.05`, `clip_alpha = 1.0`, `adv_beta = 1.0`, `clip_ratio_low = clip_ratio_high = 0.2`,
//! `clip_ratio_c = 10.0`, `loss_agg_mode = token-mean`.

use crate::elem::LogitElem;
use crate::error::{check_len, TmError};
use crate::exp::exp_full;
use crate::logits::row_tuple;
use crate::mat::Mat;
use crate::platform::{isa_dispatch, Exec};
use crate::policy_loss::metrics::{flags_of, ChunkScratch, LaneAcc, CHUNK};
use crate::policy_loss::{LossOut, PolicyInputs};

/// Which sign `ĥ` takes below the entropy pivot (module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HapoSign {
    /// The released code: `scale_neg = 1/neg_min < 0`, so `ĥ ≥ 0` on both sides (default).
    #[default]
    CodeCompat,
    /// The paper's description: `ĥ ∈ [−1, 0)` for tokens below the pivot.
    Intended,
}

/// The normaliser's statistics (for the next step's adaptive temperature).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HapoNorm {
    /// The pivot `m` (log-entropy quantile).
    pub pivot: f32,
    /// `σ`, the RMS deviation of the log-entropies from the pivot.
    pub std: f32,
    /// `1/pos_max`.
    pub scale_pos: f32,
    /// `1/neg_min` (`CodeCompat`, negative) or `1/|neg_min|` (`Intended`).
    pub scale_neg: f32,
}

/// Hyper-parameters of [`hapo_entropy_norm`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HapoNormCfg {
    /// Pivot quantile `q ∈ [0, 1]` (`entropy_pivot`, default 0.8).
    pub pivot_q: f32,
    /// `eps` (default `1e-8`; finite, `> 0`).
    pub eps: f32,
    /// Sign mode (default `CodeCompat`).
    pub sign: HapoSign,
}

impl Default for HapoNormCfg {
    fn default() -> Self {
        HapoNormCfg { pivot_q: 0.8, eps: 1e-8, sign: HapoSign::CodeCompat }
    }
}

fn sq(x: f64) -> f64 {
    x * x
}

/// Scratch elements [`hapo_entropy_norm`] needs for `n` entropies.
pub fn hapo_entropy_norm_scratch_len(n: usize) -> usize {
    n
}

/// The `rank`-th smallest (from 0, in `f64::total_cmp`'s order) of the values `logs[i]` with
/// `valid(i)` (`rank` below their number, none NaN), without reordering `logs`: a radix
/// selection on the values' order-preserving 64-bit keys, 11 bits per pass (a 2048-bin
/// histogram of the candidates' next digit, then the bin holding the rank), until the bits are
/// exhausted or one candidate is left (one more pass finds it). Typically 3–4 passes.
fn kth_smallest(logs: &[f64], valid: impl Fn(usize) -> bool, mut rank: usize) -> f64 {
    const DIGIT: u32 = 11;
    let key = |x: f64| {
        let b = x.to_bits();
        if b >> 63 == 1 {
            !b
        } else {
            b | 1 << 63
        }
    };
    // The candidates: valid keys whose top `fixed` bits are `prefix`.
    let matches = |k: u64, prefix: u64, fixed: u32| fixed == 0 || k >> (64 - fixed) == prefix;
    let (mut prefix, mut fixed) = (0u64, 0u32);
    let mut hist = [0usize; 1 << DIGIT];
    loop {
        let width = DIGIT.min(64 - fixed);
        let shift = 64 - fixed - width;
        let bins = &mut hist[..1 << width];
        bins.fill(0);
        for (i, &l) in logs.iter().enumerate() {
            let k = key(l);
            if valid(i) && matches(k, prefix, fixed) {
                bins[((k >> shift) & ((1 << width) - 1)) as usize] += 1;
            }
        }
        let mut b = 0;
        while rank >= bins[b] {
            rank -= bins[b];
            b += 1;
        }
        (prefix, fixed) = (prefix << width | b as u64, fixed + width);
        if fixed == 64 {
            let k = prefix;
            return f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k });
        }
        if bins[b] == 1 {
            let found = logs.iter().enumerate().find(|&(i, &l)| valid(i) && matches(key(l), prefix, fixed));
            return *found.expect("the histogram counted one candidate").1;
        }
    }
}

/// `log(max(H, eps))` with `torch.clamp`'s NaN propagation.
fn log_clamped(h: f32, eps: f64) -> f64 {
    let h = h as f64;
    if h.is_nan() {
        h
    } else {
        libm::log(h.max(eps))
    }
}

/// The entropy normaliser (module docs): `ĥ` at every position into `h_hat`, and the statistics.
///
/// `mask`: `None` = `H > 0`. `scratch`: at least [`hapo_entropy_norm_scratch_len`]`(n)` elements
/// (every position's `ℓ`, computed once). Errors: [`TmError::LengthMismatch`], [`TmError::InvalidArgument`]
/// (`q ∉ [0, 1]`, `eps` not finite and `> 0`), [`TmError::BackendUnavailable`].
pub fn hapo_entropy_norm(
    exec: Exec,
    entropy: &[f32],
    mask: Option<&[u8]>,
    cfg: &HapoNormCfg,
    scratch: &mut [f64],
    h_hat: &mut [f32],
) -> Result<HapoNorm, TmError> {
    exec.check_backend()?;
    let n = entropy.len();
    if let Some(m) = mask {
        check_len("mask", n, m.len())?;
    }
    check_len("h_hat", n, h_hat.len())?;
    if scratch.len() < n {
        return Err(TmError::LengthMismatch { what: "scratch", expected: n, got: scratch.len() });
    }
    if !(0.0..=1.0).contains(&cfg.pivot_q) {
        return Err(TmError::InvalidArgument("HAPO pivot quantile must be in [0, 1]"));
    }
    if !(cfg.eps.is_finite() && cfg.eps > 0.0) {
        return Err(TmError::InvalidArgument("HAPO eps must be finite and > 0"));
    }
    let eps = cfg.eps as f64;
    let valid = |i: usize| mask.map_or(entropy[i] > 0.0, |m| m[i] != 0);
    // One `log` per position, kept in token order in `scratch` (the passes below read it there;
    // the pivot's selection does not reorder it).
    let logs = &mut scratch[..n];
    let (mut count, mut any_nan) = (0usize, false);
    for (i, (l, &e)) in logs.iter_mut().zip(entropy).enumerate() {
        *l = log_clamped(e, eps);
        if valid(i) {
            any_nan |= l.is_nan();
            count += 1;
        }
    }
    let logs = &scratch[..n];
    let neg_sign = match cfg.sign {
        HapoSign::CodeCompat => -1.0,
        HapoSign::Intended => 1.0,
    };
    if count == 0 {
        h_hat.fill(0.0);
        return Ok(HapoNorm { pivot: 0.0, std: 1.0, scale_pos: 1.0, scale_neg: neg_sign as f32 });
    }
    let m = if any_nan {
        0.0
    } else {
        let idx = libm::rint(cfg.pivot_q as f64 * (count - 1) as f64) as usize;
        kth_smallest(logs, valid, idx)
    };
    let mut ss = 0.0f64;
    for (i, &l) in logs.iter().enumerate() {
        if valid(i) {
            let h = l - m;
            ss += h * h;
        }
    }
    let s = ss / count as f64;
    // torch.clamp(min = eps) keeps NaN.
    let sigma = libm::sqrt(if s.is_nan() { s } else { s.max(eps) });
    let (mut pmax, mut nmin) = (0.0f64, 0.0f64);
    for (i, &l) in logs.iter().enumerate() {
        if valid(i) {
            let h = (l - m) / sigma;
            if h > 0.0 && h > pmax {
                pmax = h;
            }
            if h < 0.0 && h < nmin {
                nmin = h;
            }
        }
    }
    let scale_pos = 1.0 / pmax.max(eps);
    let scale_neg = neg_sign / nmin.min(-eps).abs();
    for (&l, out) in logs.iter().zip(h_hat.iter_mut()) {
        let h = (l - m) / sigma;
        *out = (if h > 0.0 { h * scale_pos } else { h * scale_neg }) as f32;
    }
    Ok(HapoNorm { pivot: m as f32, std: sigma as f32, scale_pos: scale_pos as f32, scale_neg: scale_neg as f32 })
}

/// `scale_neg` with the sign of `sign`, whatever mode computed the statistics.
fn signed_scale_neg(norm: &HapoNorm, sign: HapoSign) -> f64 {
    let a = (norm.scale_neg as f64).abs();
    match sign {
        HapoSign::CodeCompat => -a,
        HapoSign::Intended => a,
    }
}

/// Adaptive sampling temperatures, one per row of `step_logits` (`[rows, V]`, any stride,
/// `f32`/`bf16`/`f16`, before temperature), into `out_temp`; returns the number of rows with a
/// NaN/`+inf` logit (given `base_temp`). `norm = None` (no statistics yet): `out_temp = base_temp`.
///
/// Errors: [`TmError::LengthMismatch`], [`TmError::EmptyVocab`], [`TmError::InvalidTemperature`]
/// (a base temperature not finite and `> 0`), [`TmError::InvalidArgument`] (`tau` not finite),
/// [`TmError::NoFiniteLogit`] (a row of all `−inf`; found during the pass: the outputs are then
/// unspecified), [`TmError::BackendUnavailable`].
pub fn hapo_adaptive_temperature<T: LogitElem>(
    exec: Exec,
    step_logits: Mat<'_, T>,
    base_temp: &[f32],
    norm: Option<&HapoNorm>,
    tau: f32,
    sign: HapoSign,
    out_temp: &mut [f32],
) -> Result<usize, TmError> {
    exec.check_backend()?;
    let rows = step_logits.rows();
    if step_logits.cols() == 0 {
        return Err(TmError::EmptyVocab);
    }
    check_len("base_temp", rows, base_temp.len())?;
    check_len("out_temp", rows, out_temp.len())?;
    if let Some(row) = base_temp.iter().position(|&t| !(t.is_finite() && t > 0.0)) {
        return Err(TmError::InvalidTemperature { row: Some(row), value: base_temp[row] });
    }
    if !tau.is_finite() {
        return Err(TmError::InvalidArgument("HAPO temperature_tau must be finite"));
    }
    let Some(norm) = norm else {
        out_temp.copy_from_slice(base_temp);
        return Ok(0);
    };
    let (m, s) = (norm.pivot as f64, norm.std as f64 + 1e-6);
    let (sp, sn) = (norm.scale_pos as f64, signed_scale_neg(norm, sign));
    let mut nonfinite = 0;
    for r in 0..rows {
        let st = row_tuple(exec.backend, step_logits.row(r), 1.0);
        let f = st.finalize(false).map_err(|_| TmError::NoFiniteLogit { row: r })?;
        if st.is_nonfinite() {
            nonfinite += 1;
            out_temp[r] = base_temp[r];
            continue;
        }
        let h = (libm::log((f.entropy as f64).max(1e-6)) - m) / s;
        let hh = (if h > 0.0 { h * sp } else { h * sn }).clamp(-1.0, 1.0);
        out_temp[r] = (base_temp[r] as f64 * (1.0 + tau as f64 * hh)) as f32;
    }
    Ok(nonfinite)
}

/// Hyper-parameters of [`hapo_token_group_advantage`] (defaults: the reference's behaviour).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HapoAdvCfg {
    /// Divide by `σ_g + eps` (`norm_adv_by_std_in_grpo`, default true).
    pub norm_by_std: bool,
    /// The fallback check scans padding too (default true = reference).
    pub pad_in_check: bool,
    /// Multiply the output by the mask (default false = reference: padding carries `−μ/(σ+eps)`).
    pub mask_output: bool,
    /// Fallback threshold on `|N|` (default 5; finite, `> 0`).
    pub fallback_abs: f32,
    /// `eps` of both normalisations (default `1e-6`; finite, `≥ 0`).
    pub eps: f32,
}

impl Default for HapoAdvCfg {
    fn default() -> Self {
        HapoAdvCfg { norm_by_std: true, pad_in_check: true, mask_output: false, fallback_abs: 5.0, eps: 1e-6 }
    }
}

/// HAPO's token-level group-average advantage `[B·T]` (module docs). `group[b]`: the group label
/// of response `b` (`B = mask.len()/t`).
///
/// Errors: [`TmError::LengthMismatch`], [`TmError::InvalidArgument`] (`t = 0`, bad config),
/// [`TmError::NonFinite`] (a reward), [`TmError::BackendUnavailable`].
pub fn hapo_token_group_advantage(
    exec: Exec,
    token_rewards: &[f32],
    mask: &[u8],
    t: usize,
    group: &[u32],
    cfg: &HapoAdvCfg,
    adv: &mut [f32],
) -> Result<(), TmError> {
    exec.check_backend()?;
    if t == 0 {
        return Err(TmError::InvalidArgument("HAPO advantage needs a row length T > 0"));
    }
    let n = mask.len();
    if !n.is_multiple_of(t) {
        return Err(TmError::LengthMismatch { what: "mask", expected: n / t * t + t, got: n });
    }
    let b = n / t;
    check_len("token_rewards", n, token_rewards.len())?;
    check_len("group", b, group.len())?;
    check_len("adv", n, adv.len())?;
    if !(cfg.fallback_abs.is_finite() && cfg.fallback_abs > 0.0) {
        return Err(TmError::InvalidArgument("HAPO fallback_abs must be finite and > 0"));
    }
    if !(cfg.eps.is_finite() && cfg.eps >= 0.0) {
        return Err(TmError::InvalidArgument("HAPO eps must be finite and >= 0"));
    }
    // Branch-free per chunk of 64; the position only when there is one.
    if token_rewards.chunks(64).any(|c| c.iter().fold(false, |bad, r| bad | !r.is_finite())) {
        let index = token_rewards.iter().position(|r| !r.is_finite()).unwrap_or(0);
        return Err(TmError::NonFinite { what: "token_rewards", index });
    }
    group_advantage(exec.backend(), token_rewards, mask, t, group, cfg, adv);
    Ok(())
}

isa_dispatch! {
    /// The body of [`hapo_token_group_advantage`] after its checks, compiled for the backend.
    fn group_advantage(token_rewards: &[f32], mask: &[u8], t: usize, group: &[u32], cfg: &HapoAdvCfg, adv: &mut [f32]) -> () {
        let b = mask.len() / t;
        let reward = |i: usize| row_sum(&token_rewards[i * t..(i + 1) * t]);
        let len = |i: usize| mask[i * t..(i + 1) * t].iter().filter(|&&m| m != 0).count() as f64;
        let eps = cfg.eps as f64;
        // A row's reward is a serial f64 sum over `T`: the first `CACHED` members of a group keep
        // theirs (and their lengths) for the group's later passes; larger groups recompute the
        // rest (the same values).
        const CACHED: usize = 64;
        for lead in 0..b {
            let id = group[lead];
            if group[..lead].contains(&id) {
                continue; // handled with its group's first row
            }
            let members = || (lead..b).filter(move |&i| group[i] == id);
            let (mut r_cache, mut l_cache) = ([0.0f64; CACHED], [0.0f64; CACHED]);
            let (mut wsum, mut wr, mut cnt, mut rsum) = (0.0f64, 0.0f64, 0usize, 0.0f64);
            for i in members() {
                let (r, l) = (reward(i), len(i));
                if cnt < CACHED {
                    (r_cache[cnt], l_cache[cnt]) = (r, l);
                }
                wsum += l;
                wr += l * r;
                cnt += 1;
                rsum += r;
            }
            // `(row, reward, length)` of every member, in order.
            let stats = || {
                members()
                    .enumerate()
                    .map(|(j, i)| if j < CACHED { (i, r_cache[j], l_cache[j]) } else { (i, reward(i), len(i)) })
            };
            if wsum == 0.0 {
                for i in members() {
                    adv[i * t..(i + 1) * t].fill(0.0);
                }
                continue;
            }
            let mu = wr / wsum;
            let var = stats().map(|(_, r, l)| l * sq(r - mu)).sum::<f64>() / wsum;
            let den = if cfg.norm_by_std { libm::sqrt(var) + eps } else { 1.0 };
            // The reference checks every counted position; a row holds two values only (`r` at
            // valid positions, `0` at padding, which counts under `pad_in_check`).
            let beyond = |x: f64| ((x - mu) / den).abs() >= cfg.fallback_abs as f64;
            let fallback =
                stats().any(|(_, r, l)| (l > 0.0 && beyond(r)) || (l < t as f64 && cfg.pad_in_check && beyond(0.0)));
            if fallback {
                // verl loop GRPO: unbiased std, singleton μ = 0, σ = 1.
                let (gm, gs) = if cnt == 1 {
                    (0.0, 1.0)
                } else {
                    let gm = rsum / cnt as f64;
                    let v = stats().map(|(_, r, _)| sq(r - gm)).sum::<f64>() / (cnt - 1) as f64;
                    (gm, libm::sqrt(v))
                };
                for (i, r, _) in stats() {
                    let a = (if cfg.norm_by_std { (r - gm) / (gs + eps) } else { r - gm }) as f32;
                    let (m, out) = (&mask[i * t..(i + 1) * t], &mut adv[i * t..(i + 1) * t]);
                    for (o, &m) in out.iter_mut().zip(m) {
                        *o = if m != 0 { a } else { 0.0 };
                    }
                }
            } else {
                for (i, r, _) in stats() {
                    let on_valid = ((r - mu) / den) as f32;
                    let on_pad = if cfg.mask_output { 0.0 } else { ((0.0 - mu) / den) as f32 };
                    let (m, out) = (&mask[i * t..(i + 1) * t], &mut adv[i * t..(i + 1) * t]);
                    for (o, &m) in out.iter_mut().zip(m) {
                        *o = if m != 0 { on_valid } else { on_pad };
                    }
                }
            }
        }
    }
}

/// `Σ x` in `f64` in index order (`Iterator::sum`, a serial chain of additions), without the
/// chain for the common row of outcome rewards (at most one non-zero), counted branch-free
/// first: adding zeros to the one non-zero value gives that value exactly, and zeros alone
/// sum to `−0.0` if every one is `−0.0` and the sum starts there, else to `+0.0`.
fn row_sum(x: &[f32]) -> f64 {
    let nonzero = x.iter().fold(0usize, |n, &v| n + usize::from(v != 0.0));
    if nonzero > 1 || x.is_empty() {
        return x.iter().map(|&v| v as f64).sum::<f64>();
    }
    if nonzero == 1 {
        return x.iter().find(|&&v| v != 0.0).map_or(0.0, |&v| v as f64);
    }
    let start = core::iter::empty::<f64>().sum::<f64>();
    if x.iter().fold(false, |any, v| any | (v.to_bits() == 0)) {
        start + 0.0
    } else {
        start + -0.0
    }
}

/// HAPO's asymmetric adaptive clip widths `ε_low(t)`, `ε_high(t)` from `ĥ` (module docs).
///
/// Errors: [`TmError::LengthMismatch`], [`TmError::InvalidArgument`] (`eps_*` not finite and
/// `≥ 0`, `alpha` not finite), [`TmError::BackendUnavailable`].
pub fn hapo_adaptive_clip(
    exec: Exec,
    h_hat: &[f32],
    eps_low: f32,
    eps_high: f32,
    alpha: f32,
    lo: &mut [f32],
    hi: &mut [f32],
) -> Result<(), TmError> {
    exec.check_backend()?;
    check_len("eps_low_out", h_hat.len(), lo.len())?;
    check_len("eps_high_out", h_hat.len(), hi.len())?;
    let ok = |e: f32| e.is_finite() && e >= 0.0;
    if !ok(eps_low) || !ok(eps_high) || !alpha.is_finite() {
        return Err(TmError::InvalidArgument("HAPO clip widths must be finite and >= 0, alpha finite"));
    }
    for ((&h, l), u) in h_hat.iter().zip(lo.iter_mut()).zip(hi.iter_mut()) {
        *l = if h <= 0.0 { eps_low * (1.0 - alpha * h) } else { eps_low };
        *u = if h > 0.0 { eps_high * (1.0 + alpha * h) } else { eps_high };
    }
    Ok(())
}

/// HAPO's differential advantage redistribution `A'` (module docs); `ratio` is the current
/// `exp(logp − old_logp)`, `lo`/`hi` the (adapted or scalar-filled) clip widths.
///
/// Errors: [`TmError::LengthMismatch`], [`TmError::InvalidArgument`] (`beta` not finite),
/// [`TmError::BackendUnavailable`].
#[allow(clippy::too_many_arguments)]
pub fn hapo_redistribute(
    exec: Exec,
    adv: &[f32],
    h_hat: &[f32],
    ratio: &[f32],
    lo: &[f32],
    hi: &[f32],
    beta: f32,
    out: &mut [f32],
) -> Result<(), TmError> {
    exec.check_backend()?;
    let n = adv.len();
    check_len("h_hat", n, h_hat.len())?;
    check_len("ratio", n, ratio.len())?;
    check_len("eps_low", n, lo.len())?;
    check_len("eps_high", n, hi.len())?;
    check_len("out", n, out.len())?;
    if !beta.is_finite() {
        return Err(TmError::InvalidArgument("HAPO adv_beta must be finite"));
    }
    // Selects only (`ĥ > 0` and `neutral` choose between two values), so the loop vectorises.
    for i in 0..n {
        let (a, h, r) = (adv[i], h_hat[i], ratio[i]);
        let a_ent = a * (1.0 + beta * h);
        let neutral = (r > 1.0 - lo[i] / 2.0) & (r < 1.0 + hi[i] / 2.0);
        out[i] = if (h > 0.0) == neutral { a } else { a_ent };
    }
    Ok(())
}

/// Counts of [`hapo_loss`] over valid tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HapoStats {
    /// Valid tokens.
    pub valid: u64,
    /// Tokens where the ratio clip is active (`l2 > l1`).
    pub clipped: u64,
    /// Negative-advantage tokens bounded by the dual clip (`lc > −A·c`).
    pub dual_clipped: u64,
    /// `Σ −Δ` over valid tokens (verl's `ppo_kl` numerator), in `f64`, summed as the policy
    /// step's statistics are (token `i` into lane `i mod 8`, the lanes then in order): the same
    /// bits on every backend.
    pub neg_log_ratio_sum: f64,
}

/// The HAPO loss and its gradient w.r.t. `logp` (module docs), with per-token clip widths
/// `eps_low`, `eps_high` (`B·T` each, finite and `≥ 0` at valid positions) and the dual clip `c`
/// (`None` = off; HAPO's default `Some(10.0)`). Masked positions get 0.
///
/// Errors: [`TmError::LengthMismatch`], [`TmError::InvalidArgument`], [`TmError::BackendUnavailable`].
pub fn hapo_loss(
    exec: Exec,
    inp: &PolicyInputs<'_>,
    eps_low: &[f32],
    eps_high: &[f32],
    dual_clip_c: Option<f32>,
    out: LossOut<'_>,
) -> Result<HapoStats, TmError> {
    exec.check_backend()?;
    let n = inp.shape.numel()?;
    for (what, len) in [
        ("logp", inp.logp.len()),
        ("old_logp", inp.old_logp.len()),
        ("adv", inp.adv.len()),
        ("mask", inp.mask.len()),
        ("eps_low", eps_low.len()),
        ("eps_high", eps_high.len()),
        ("loss", out.loss.len()),
        ("dloss_dlogp", out.dloss_dlogp.len()),
    ] {
        check_len(what, n, len)?;
    }
    if let Some(w) = inp.is_weights {
        check_len("is_weights", n, w.len())?;
    }
    if let Some(c) = dual_clip_c {
        if !(c.is_finite() && c > 1.0) {
            return Err(TmError::InvalidArgument("dual_clip_c must be finite and > 1"));
        }
    }
    if !widths_ok(exec.backend(), inp.mask, eps_low, eps_high) {
        return Err(TmError::InvalidArgument("HAPO per-token clip widths must be finite and >= 0"));
    }
    let acc = match dual_clip_c {
        Some(c) => loss_loop::<true>(exec.backend(), inp, eps_low, eps_high, c, out),
        None => loss_loop::<false>(exec.backend(), inp, eps_low, eps_high, 0.0, out),
    };
    let p = acc.into_stats();
    Ok(HapoStats {
        valid: p.valid_tokens,
        clipped: p.clipped_high,
        dual_clipped: p.clipped_dual,
        neg_log_ratio_sum: p.neg_log_ratio_sum,
    })
}

isa_dispatch! {
    /// Whether every valid position has finite clip widths `≥ 0`: branch-free per chunk of 64
    /// (`!(e ≥ 0 ∧ e < ∞)` is true for NaN too).
    fn widths_ok(mask: &[u8], lo: &[f32], hi: &[f32]) -> bool {
        let bad = |e: f32| !(0.0..f32::INFINITY).contains(&e);
        let chunks = mask.chunks(64).zip(lo.chunks(64)).zip(hi.chunks(64));
        !chunks.into_iter().any(|((m, lo), hi)| {
            m.iter().zip(lo).zip(hi).fold(false, |acc, ((&m, &l), &h)| acc | ((m != 0) & (bad(l) | bad(h))))
        })
    }
}

/// One token of [`hapo_loss`]: `(ℓ, ∂ℓ/∂logp, −Δ, clipped, dual-clipped)` before the mask and
/// the weight, branch-free (selects only) so that the chunk loop vectorises. `DUAL`: the dual
/// clip `c` is on. Lanes of masked tokens compute garbage that is never stored (their clip
/// widths are not validated), so nothing here may panic: the clamp is written as two selects
/// with `torch.clamp`'s semantics (NaN passes) instead of `f32::clamp`.
#[inline(always)]
fn loss_token<const DUAL: bool>(lp: f32, olp: f32, a: f32, lo: f32, hi: f32, c: f32) -> (f32, f32, f32, bool, bool) {
    let dt = lp - olp;
    let r = exp_full(dt);
    let (rlo, rhi) = (1.0 - lo, 1.0 + hi);
    let l1 = -a * r;
    let low = if r < rlo { rlo } else { r };
    let l2 = -a * if low > rhi { rhi } else { low };
    let clipped = l2 > l1;
    let lc = if clipped { l2 } else { l1 };
    let mut kappa = if a > 0.0 { r <= rhi } else { r >= rlo };
    let (mut l, mut dual) = (lc, false);
    if DUAL {
        let l3 = -a * c;
        let neg = a < 0.0;
        dual = neg & (lc > l3);
        l = if neg & (l3 < lc) { l3 } else { lc };
        kappa &= !neg | (r <= c);
    }
    let mut g = if kappa { -a * r } else { 0.0 };
    let zero = a == 0.0;
    l = if zero { 0.0 } else { l };
    g = if zero { 0.0 } else { g };
    let nan = a.is_nan() | dt.is_nan();
    l = if nan { f32::NAN } else { l };
    g = if nan { f32::NAN } else { g };
    (l, g, -dt, clipped, dual)
}

/// The chunk loop of [`hapo_loss`] (the policy step's shape, `policy_loss::ppo_clip::drive`):
/// per chunk, the tokens into the outputs and the per-token `−Δ` and flags into stack scratch,
/// then the interleaved lane sums. Compiled once per backend by [`loss_loop`]; the same IEEE
/// operations in the same order in every build (Rust never contracts `a·b + c`), so every
/// backend gives identical bits.
#[inline(always)]
fn loss_drive<const DUAL: bool>(
    inp: &PolicyInputs<'_>,
    eps_low: &[f32],
    eps_high: &[f32],
    c: f32,
    out: LossOut<'_>,
) -> LaneAcc {
    let n = inp.logp.len();
    let mut acc = LaneAcc::default();
    let mut scratch = ChunkScratch::new();
    for o in (0..n).step_by(CHUNK) {
        let e = (o + CHUNK).min(n);
        let (x, flags) = scratch.parts(e - o);
        let ins =
            (&inp.logp[o..e], &inp.old_logp[o..e], &inp.adv[o..e], &inp.mask[o..e], &eps_low[o..e], &eps_high[o..e]);
        let outs = (&mut out.loss[o..e], &mut out.dloss_dlogp[o..e], &mut *x, &mut *flags);
        match inp.is_weights {
            Some(w) => loss_chunk::<DUAL>(ins, w[o..e].iter().copied(), c, outs),
            None => loss_chunk::<DUAL>(ins, core::iter::repeat(1.0), c, outs),
        }
        acc.add_chunk(x, flags);
    }
    acc
}

/// The inputs of one chunk of [`loss_drive`]: `logp, old_logp, adv, mask, ε_low, ε_high`.
type LossIn<'a> = (&'a [f32], &'a [f32], &'a [f32], &'a [u8], &'a [f32], &'a [f32]);

/// The per-token map over one chunk: outputs, and the metric contributions into `x`/`flags`
/// (no reduction here, so the loop vectorises).
#[inline(always)]
fn loss_chunk<const DUAL: bool>(
    ins: LossIn<'_>,
    w: impl Iterator<Item = f32>,
    c: f32,
    (loss, grad, x, flags): (&mut [f32], &mut [f32], &mut [f32], &mut [u8]),
) {
    let (lp, olp, adv, mask, lo, hi) = ins;
    let it = lp
        .iter()
        .zip(olp)
        .zip(adv)
        .zip(mask)
        .zip(lo.iter().zip(hi))
        .zip(w)
        .zip(loss.iter_mut().zip(grad.iter_mut()))
        .zip(x.iter_mut().zip(flags.iter_mut()));
    for (((((((&lp, &olp), &a), &m), (&lo, &hi)), w), (l_out, g_out)), (x_out, f_out)) in it {
        let (l, g, ndt, clipped, dual) = loss_token::<DUAL>(lp, olp, a, lo, hi, c);
        let valid = m != 0;
        *l_out = if valid { l * w } else { 0.0 };
        *g_out = if valid { g * w } else { 0.0 };
        *x_out = if valid { ndt } else { 0.0 };
        *f_out = flags_of(valid, clipped, false, dual);
    }
}

isa_dispatch! {
    /// [`loss_drive`] compiled for the backend (the compiler vectorises the token map 16 or 8
    /// wide).
    fn loss_loop<const DUAL: bool>(
        inp: &PolicyInputs<'_>,
        eps_low: &[f32],
        eps_high: &[f32],
        c: f32,
        out: LossOut<'_>,
    ) -> LaneAcc {
        loss_drive::<DUAL>(inp, eps_low, eps_high, c, out)
    }
}

#[cfg(test)]
mod tests {
    use super::{kth_smallest, row_sum};

    /// The shortcut gives the serial sum's bits: one non-zero among zeros of both signs (at
    /// several positions), rows of zeros of either or both signs, empty rows, and two non-zeros
    /// (the serial path).
    #[test]
    fn row_sum_is_the_serial_sum() {
        let serial = |x: &[f32]| x.iter().map(|&v| v as f64).sum::<f64>();
        let mut rows: std::vec::Vec<std::vec::Vec<f32>> =
            std::vec![std::vec![], std::vec![-0.0; 130], std::vec![0.0; 3]];
        for n in [1usize, 63, 64, 65, 200] {
            for at in [0, n / 2, n - 1] {
                for v in [1.0f32, -2.5, 1e-30] {
                    let mut x: std::vec::Vec<f32> = (0..n).map(|i| if i % 3 == 0 { -0.0 } else { 0.0 }).collect();
                    x[at] = v;
                    rows.push(x.clone());
                    x[(at + 1) % n] = 0.25;
                    rows.push(x);
                }
            }
            rows.push(std::vec![-0.0; n]);
        }
        for x in &rows {
            assert_eq!(row_sum(x).to_bits(), serial(x).to_bits(), "{x:?}");
        }
    }

    /// The radix selection against a sort, every rank, on values with many duplicates, both
    /// signs, zeros of both signs, infinities, and positions left out by the validity test.
    #[test]
    fn kth_smallest_matches_a_sort() {
        let mut rng = tokenmath_testutil::Rng::new(7);
        for n in [1usize, 2, 3, 17, 200, 1000] {
            let logs: std::vec::Vec<f64> = (0..n)
                .map(|i| match i % 11 {
                    0 => 1.5,
                    1 => -0.0,
                    2 => 0.0,
                    3 => f64::INFINITY,
                    4 => f64::NEG_INFINITY,
                    5 => -1e-300,
                    _ => (rng.symmetric() as f64) * 20.0,
                })
                .collect();
            let valid = |i: usize| i % 7 != 4;
            let mut want: std::vec::Vec<f64> = (0..n).filter(|&i| valid(i)).map(|i| logs[i]).collect();
            want.sort_by(f64::total_cmp);
            for (rank, w) in want.iter().enumerate() {
                let got = kth_smallest(&logs, valid, rank);
                assert_eq!(got.to_bits(), w.to_bits(), "n = {n}, rank {rank}");
            }
        }
    }
}
