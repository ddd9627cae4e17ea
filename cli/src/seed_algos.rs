//! The seed papers' methods as the policy part of a step ([`crate::step::policy`]): `hapo`,
//! `tw_grpo`, `nsr`, `w_reinforce`, `grpo_n`, `d3s`, and the top-entropy mask
//! (`--top-entropy-quantile`) that applies to every `--algo`. The kernels are
//! `tokenmath_core::seed` (read their docs for the math and sources); each method's loss is
//! recomputed in `f64` (`tokenmath_reference`) and its selections compared with the
//! reference's exactly.
//!
//! What each runs on a batch (the default batch or a replayed dump; `R_b` the response's
//! scalar reward, placed as a token reward on its last valid token \[library choice: verl's
//! `token_level_scores` layout\]):
//!
//! | `--algo` | advantages | per-token loss | KL | aggregation |
//! |---|---|---|---|---|
//! | `hapo` | HAPO token-level group average, then the redistribution `A'` by `ĥ` (β = 1) | HAPO dual clip (c = 10), per-token `ε_low(t)`, `ε_high(t)` from 0.2/0.2 (α = 1) | none | token-mean |
//! | `tw_grpo` | TRL GRPO (`(R − μ)/(std + 1e-4)`) | PPO clip ε 0.2/0.28, no dual clip | none | `Σ w·ℓ / Σ mask` (TW-GRPO weights, α = 1.7) |
//! | `nsr` | NSR: `A = G − 1` on incorrect responses, the others leave the batch (γ = 1) | PPO clip, verl defaults | none | token-mean |
//! | `w_reinforce` | W-REINFORCE: `λ·G` (λ = 0.1) on correct, `G − 1` on incorrect | PPO clip, verl defaults | none | token-mean |
//! | `grpo_n` | GRPO (verl loop), positive advantages zeroed (`NegMode::ZeroPositives`) | PPO clip, verl defaults | k3, β = 0.001 | token-mean |
//! | `d3s` | GRPO (verl loop); max-variance subset of `N` responses, then the top `⌈K·n⌉` tokens by `|A|·H` | PPO clip, verl defaults | k3, β = 0.001 | token-mean over the kept tokens |
//!
//! \[library choices\] where the sources are silent for a one-step CLI:
//! * inputs the default batch lacks are derived from it: HAPO's `ĥ` and D³S's `|A|·H` use the
//!   batch's own entropies (the forward's, which stand in for the rollout policy's), TW-GRPO's
//!   per-group logits are the batch's rows (groups of `G` consecutive responses, position by
//!   position), correctness for NSR/W-REINFORCE is the binary reward;
//! * D³S runs its schedule at progress `p = 0` (`N = ⌈B/2⌋`, `K = 0.2`): the first,
//!   most aggressive step;
//! * TW-GRPO uses the batch's `old_logp` (TRL with more than one iteration per batch) rather
//!   than `sg(logp)`, so that its clip is exercised;
//! * `grpo_n` and `d3s` keep GRPO's KL term; `nsr`, `w_reinforce` and `hapo` have none (their
//!   recipes train without a KL loss); HAPO's adaptive sampling temperature belongs to the
//!   next rollout and is not part of the step.
//!
//! The top-entropy mask (TRL `top_entropy_quantile` = ρ): `θ` = the linear `(1 − ρ)`-quantile
//! of the valid tokens' entropies, `keep = mask ∧ H ≥ θ`, `ℓ ← keep ? ℓ : 0` (and its
//! gradient) before the aggregation, whose normaliser still counts every valid token — TRL's
//! `per_token_loss * entropy_mask`. With distinct entropies it keeps exactly
//! `n − ⌈(1 − ρ)(n − 1)⌉` of the `n` valid tokens (ties at `θ` are all kept).

use tokenmath_core::advantages::{broadcast_masked, distinct_groups, grpo_advantage, Groups, GrpoCfg, TrlScale};
use tokenmath_core::policy_loss::{
    agg_chain_inplace, agg_loss, ppo_clip_kl_loss, ppo_clip_loss, AggMode, AggNorm, BatchShape, ClipCfg, KlCfg, KlTerm,
    LossOut, PolicyInputs, PolicyStats,
};
use tokenmath_core::seed::hapo::{
    hapo_adaptive_clip, hapo_entropy_norm, hapo_loss, hapo_redistribute, hapo_token_group_advantage, HapoAdvCfg,
    HapoNormCfg, HapoSign,
};
use tokenmath_core::seed::tw_grpo::{tw_grpo_loss, tw_grpo_token_weights, SavedLogSoftmax, TwGrpoCfg};
use tokenmath_core::seed::{
    d3s_schedule, d3s_scratch_len, d3s_select_samples, d3s_token_mask, grpo_negative_only, nsr_advantage,
    top_entropy_mask, top_entropy_threshold, valid_count, D3sSchedule, D3sScratch, D3sTokenInputs, NegMode, NsrCfg,
    NsrMode, NsrOut,
};
use tokenmath_core::{Exec, LogitElem, Mat};
use tokenmath_reference::policy_loss as reference;
use tokenmath_reference::{hapo as hapo_ref, seed as seed_ref, tw_grpo as tw_ref};

use crate::error::CliError;
use crate::run::RowStatistics;
use crate::step::{clip_state, kernel, ratios_and_clip_states, Algo, Policy, PolicyBatch, KL_COEF};

const EPS: f64 = f32::EPSILON as f64;

/// TW-GRPO's maximum weight `α` (the training script's 1.70, the kernel's default).
pub const TW_ALPHA: f32 = 1.70;
/// HAPO's defaults (the recipes'): clip widths, `α` of the adaptive clip, `β` of the
/// redistribution, the dual clip `c`.
const HAPO_EPS: f32 = 0.2;
const HAPO_ALPHA: f32 = 1.0;
const HAPO_BETA: f32 = 1.0;
const HAPO_C: f32 = 10.0;
/// W-REINFORCE's `λ` (the paper's recommendation).
const W_LAMBDA: f32 = 0.1;

/// TW-GRPO token weights of a batch and their `f64` reference, computed where the logits are.
pub struct TwWeights {
    /// The kernel's weights `[B·T]`.
    pub w: Vec<f32>,
    /// The reference's weights.
    w_ref: Vec<f64>,
    /// The bound on `|w − w_ref|` (see [`tw_weights`]).
    w_tol: Vec<f64>,
}

/// TW-GRPO's token weights of `[B·T, V]` logits at temperature 1 (groups of `g` consecutive
/// responses), streamed by the kernel from the forward's saved `max`/`log_sum`, and the
/// reference's, which materialises the log-probs. The bound on `|w − w_ref|` follows from the
/// reference's bound `δD` on each dispersion `D`: `ŵ = (D − lo)/(hi − lo + 1e-8)` moves by at
/// most `(δD_t + 2δ_lo + δ_hi)/(hi − lo)` to first order (`ŵ ≤ 1`); doubled for the second
/// order, times `α − 1`, plus `2ε|w|` for the kernel's final rounding.
pub fn tw_weights<T: LogitElem>(
    exec: Exec,
    logits: &[T],
    vocab: usize,
    stats: &RowStatistics,
    mask: &[u8],
    t: usize,
    g: usize,
) -> Result<TwWeights, CliError> {
    let rows = mask.len();
    let x = Mat::dense(logits, rows, vocab).map_err(kernel)?;
    let cfg = TwGrpoCfg { group_size: g, alpha: TW_ALPHA, ..TwGrpoCfg::default() };
    let saved = SavedLogSoftmax { max: &stats.max, log_sum: &stats.log_sum };
    let mut w = vec![0.0f32; rows];
    tw_grpo_token_weights(exec, x, saved, mask, t, &cfg, &mut w).map_err(kernel)?;
    let dense: Vec<f32> = logits.iter().map(|v| v.to_f32()).collect();
    let r = tw_ref::weights(&dense, vocab, mask, t, g, f64::from(cfg.alpha), f64::from(cfg.clamp));
    let mut w_tol = vec![0.0f64; rows];
    for gi in 0..rows / t / g {
        let (ds, tols) = (&r.d[gi * t..(gi + 1) * t], &r.d_tol[gi * t..(gi + 1) * t]);
        let lo = ds.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ds.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e_max = tols.iter().copied().fold(0.0f64, f64::max);
        for (pos, &tol) in tols.iter().enumerate() {
            let dw = 2.0 * (f64::from(cfg.alpha) - 1.0).abs() * (tol + 3.0 * e_max) / (hi - lo + 1e-8);
            for k in 0..g {
                let i = (gi * g + k) * t + pos;
                w_tol[i] = dw + 2.0 * EPS * r.w[i].abs();
            }
        }
    }
    Ok(TwWeights { w, w_ref: r.w, w_tol })
}

/// The top-entropy mask of a batch and its agreement with the reference.
pub struct EntropyKeep {
    /// `1` = the token stays in the loss.
    pub keep: Vec<u8>,
    note: String,
    mismatch: Option<String>,
}

/// `keep = mask ∧ H ≥ θ`, `θ` the `(1 − ρ)` linear quantile of the valid entropies (module docs).
pub fn entropy_keep(
    exec: Exec,
    shape: BatchShape,
    mask: &[u8],
    entropy: &[f32],
    rho: f32,
) -> Result<EntropyKeep, CliError> {
    let theta = top_entropy_threshold(exec, shape, mask, entropy, rho).map_err(kernel)?;
    let mut keep = vec![0u8; mask.len()];
    let kept = top_entropy_mask(exec, shape, mask, entropy, theta, &mut keep).map_err(kernel)?;
    let valid = valid_count(exec, shape, mask).map_err(kernel)?;
    let (theta_ref, keep_ref) = seed_ref::top_entropy(entropy, mask, rho);
    let mismatch = if theta.map(f32::to_bits) != theta_ref.map(f32::to_bits) {
        Some(format!("entropy mask: θ is {theta:?}, the reference says {theta_ref:?}"))
    } else if keep != keep_ref {
        Some("entropy mask: the kept tokens differ from the reference's".into())
    } else {
        None
    };
    let theta_s = theta.map_or("none".into(), |v| format!("{v:.5}"));
    let note = format!(
        "top-entropy ρ = {rho}: θ = {theta_s} nats, {kept} of {valid} valid tokens carry loss (reference: {})",
        if mismatch.is_none() { "same" } else { "differs" }
    );
    Ok(EntropyKeep { keep, note, mismatch })
}

impl EntropyKeep {
    /// The summary line.
    pub fn note(&self) -> &str {
        &self.note
    }

    /// A disagreement with the reference.
    pub fn mismatch(&self) -> Option<&str> {
        self.mismatch.as_deref()
    }
}

/// Applies the mask to the per-token loss and its derivative (a select: masked-out tokens are 0).
fn apply_keep(keep: Option<&EntropyKeep>, token_loss: &mut [f32], g: &mut [f32]) {
    if let Some(k) = keep {
        for i in (0..k.keep.len()).filter(|&i| k.keep[i] == 0) {
            token_loss[i] = 0.0;
            g[i] = 0.0;
        }
    }
}

/// The group label of each response (HAPO takes `u32` labels).
fn labels(groups: Groups<'_>, responses: usize) -> Vec<u32> {
    match groups {
        Groups::Contiguous { size } => (0..responses).map(|b| (b / size.max(1)) as u32).collect(),
        Groups::Ids(ids) => ids.to_vec(),
    }
}

/// Each response's reward on its last valid token (0 elsewhere).
fn token_rewards(rewards: &[f32], mask: &[u8], t: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; mask.len()];
    for (b, &r) in rewards.iter().enumerate() {
        if let Some(k) = (0..t).rev().find(|&k| mask[b * t + k] != 0) {
            out[b * t + k] = r;
        }
    }
    out
}

/// The `f64` token-mean of per-token values over `mask`, with the tolerance
/// `16ε·mean(μ) + ε|L|` of the `f32` value (`μ` each token's rounding scale), as the GRPO check.
fn token_mean_check(per_token: &[f64], magnitudes: &[f64], mask: &[u8], t: usize) -> (f64, f64) {
    let norm = reference::Norm { global_tokens: None, global_seqs: None, dp: 1.0, scale: None };
    let loss = reference::agg(per_token, mask, t, reference::Agg::TokenMean, &norm);
    let mag = reference::agg(magnitudes, mask, t, reference::Agg::TokenMean, &norm);
    (loss, 16.0 * EPS * mag + EPS * loss.abs())
}

fn clip_ref(c: &ClipCfg) -> reference::Clip {
    reference::Clip {
        eps_low: f64::from(c.eps_low),
        eps_high: f64::from(c.eps_high),
        c: c.dual_clip_c.map(f64::from),
        clamp: c.log_ratio_clamp.map(f64::from),
    }
}

/// The policy part of a seed method (module docs), or an error naming the missing input.
pub fn policy(algo: Algo, exec: Exec, batch: PolicyBatch<'_>) -> Result<Policy, CliError> {
    let PolicyBatch {
        t,
        logp,
        old_logp,
        ref_logp,
        mut mask,
        rewards,
        groups,
        entropy,
        tw_weights,
        top_entropy_quantile,
    } = batch;
    let rows = logp.len();
    let responses = rows / t;
    let shape = BatchShape::new(responses, t);
    let n_groups = distinct_groups(groups, responses).map_err(kernel)?;
    let name = algo.name();
    let need_entropy = || {
        entropy.ok_or_else(|| {
            CliError::Usage(format!(
                "--algo {name} needs per-token entropies: the input has neither logits nor entropy"
            ))
        })
    };
    let mut notes = Vec::new();
    let mut mismatch: Option<String> = None;

    // Advantages (per token), and the mask the loss uses.
    let mut adv_seq = vec![0.0f32; responses];
    let mut adv = vec![0.0f32; rows];
    // The f64 reference's advantages where the method has one of its own (else the kernel's f32).
    let mut adv_ref: Option<Vec<f64>> = None;
    // HAPO's per-token clip widths, the kernel's and the reference's.
    let mut widths: Option<(Vec<f32>, Vec<f32>)> = None;
    let mut widths_ref: Option<Vec<(f64, f64)>> = None;
    match algo {
        Algo::Hapo => {
            let ent = need_entropy()?;
            let (mut scratch, mut h_hat) = (vec![0.0f64; rows], vec![0.0f32; rows]);
            let ncfg = HapoNormCfg::default();
            let norm = hapo_entropy_norm(exec, ent, Some(&mask), &ncfg, &mut scratch, &mut h_hat).map_err(kernel)?;
            let lab = labels(groups, responses);
            let tr = token_rewards(&rewards, &mask, t);
            let acfg = HapoAdvCfg::default();
            let mut a0 = vec![0.0f32; rows];
            hapo_token_group_advantage(exec, &tr, &mask, t, &lab, &acfg, &mut a0).map_err(kernel)?;
            let (mut lo, mut hi) = (vec![0.0f32; rows], vec![0.0f32; rows]);
            hapo_adaptive_clip(exec, &h_hat, HAPO_EPS, HAPO_EPS, HAPO_ALPHA, &mut lo, &mut hi).map_err(kernel)?;
            let ratio: Vec<f32> = logp.iter().zip(old_logp).map(|(l, o)| (l - o).exp()).collect();
            hapo_redistribute(exec, &a0, &h_hat, &ratio, &lo, &hi, HAPO_BETA, &mut adv).map_err(kernel)?;
            // Padding carries −μ/(σ + eps) in HAPO's advantage; the loss never reads it.
            for i in (0..rows).filter(|&i| mask[i] == 0) {
                adv[i] = 0.0;
            }
            // Check ĥ and the group advantage against the f64 reference (both are computed in
            // f64 and rounded once: a few ε).
            let (h_ref, _) = hapo_ref::entropy_norm(
                ent,
                Some(&mask),
                f64::from(ncfg.pivot_q),
                f64::from(ncfg.eps),
                ncfg.sign == HapoSign::Intended,
            );
            let a_ref = hapo_ref::group_advantage(
                &tr,
                &mask,
                t,
                &lab,
                acfg.norm_by_std,
                acfg.pad_in_check,
                acfg.mask_output,
                f64::from(acfg.fallback_abs),
                f64::from(acfg.eps),
            );
            let valid = |i: &usize| mask[*i] != 0;
            if let Some(i) = (0..rows).filter(valid).find(|&i| (f64::from(h_hat[i]) - h_ref[i]).abs() > 8.0 * EPS) {
                mismatch =
                    Some(format!("hapo: ĥ[{i}] is {}, the reference says {} (tolerance 8ε)", h_hat[i], h_ref[i]));
            } else if let Some(i) =
                (0..rows).filter(valid).find(|&i| (f64::from(a0[i]) - a_ref[i]).abs() > 4.0 * EPS * a_ref[i].abs())
            {
                mismatch = Some(format!(
                    "hapo: the group advantage at token {i} is {}, the reference says {} (tolerance 4ε|A|)",
                    a0[i], a_ref[i]
                ));
            }
            let moved = (0..rows).filter(valid).filter(|&i| adv[i] != a0[i]).count();
            let range = |v: &[f32]| {
                let vals = (0..rows).filter(valid).map(|i| v[i]);
                (vals.clone().fold(f32::INFINITY, f32::min), vals.fold(f32::NEG_INFINITY, f32::max))
            };
            let ((l0, l1), (h0, h1)) = (range(&lo), range(&hi));
            notes.push(format!(
                "hapo        ĥ pivot {:.4} σ {:.4} (CodeCompat); ε_low(t) ∈ [{l0:.4}, {l1:.4}], ε_high(t) ∈ [{h0:.4}, {h1:.4}]; \
                 A' ≠ A on {moved} tokens",
                norm.pivot, norm.std
            ));
            for (b, a) in adv_seq.iter_mut().enumerate() {
                *a = (0..t).map(|k| b * t + k).find(|&i| mask[i] != 0).map_or(0.0, |i| a0[i]);
            }
            // The whole chain in f64 for the loss reference: ĥ → ε(t) → A' from the reference's
            // group advantage. Where the ratio is within 1e-6 of a neutral-zone bound, f32 and
            // f64 may pick different sides (a jump, not a rounding): there A' is the kernel's.
            let (mut w_ref, mut a_hapo) = (vec![(0.0, 0.0); rows], vec![0.0f64; rows]);
            for i in (0..rows).filter(valid) {
                let h = h_ref[i];
                let (lo_r, hi_r) = hapo_ref::clip(h, f64::from(HAPO_EPS), f64::from(HAPO_EPS), f64::from(HAPO_ALPHA));
                let r = (f64::from(logp[i]) - f64::from(old_logp[i])).exp();
                let (a, borderline) = hapo_ref::redistribute(a_ref[i], h, r, lo_r, hi_r, f64::from(HAPO_BETA));
                a_hapo[i] = if borderline { f64::from(adv[i]) } else { a };
                w_ref[i] = (lo_r, hi_r);
            }
            widths = Some((lo, hi));
            widths_ref = Some(w_ref);
            adv_ref = Some(a_hapo);
        }
        Algo::Nsr | Algo::WReinforce => {
            let mode = if algo == Algo::Nsr { NsrMode::Nsr } else { NsrMode::Weighted { lambda: W_LAMBDA } };
            let tr = token_rewards(&rewards, &mask, t);
            let mut keep_rows = vec![0u8; responses];
            let cfg = NsrCfg { mode, gamma: 1.0 };
            nsr_advantage(exec, shape, &mask, &tr, &tr, &cfg, NsrOut { keep_rows: &mut keep_rows, adv: &mut adv })
                .map_err(kernel)?;
            let rmode = match mode {
                NsrMode::Nsr => seed_ref::NsrRef::Nsr,
                _ => seed_ref::NsrRef::Weighted(f64::from(W_LAMBDA)),
            };
            let (a_ref, keep_ref) = seed_ref::nsr(&tr, &tr, &mask, responses, t, 1.0, rmode);
            if keep_rows != keep_ref {
                mismatch = Some(format!("{name}: the kept responses differ from the reference's"));
            }
            for (b, &k) in keep_rows.iter().enumerate() {
                if k == 0 {
                    mask[b * t..(b + 1) * t].fill(0);
                }
            }
            let kept = keep_rows.iter().filter(|&&k| k != 0).count();
            notes.push(format!(
                "{name:<11} {kept} of {responses} responses in the loss{}",
                if algo == Algo::Nsr { " (the incorrect ones, A = −1)" } else { " (λ = 0.1 on the correct ones)" }
            ));
            for (b, a) in adv_seq.iter_mut().enumerate() {
                *a = (0..t).map(|k| b * t + k).find(|&i| mask[i] != 0).map_or(0.0, |i| adv[i]);
            }
            adv_ref = Some(a_ref);
        }
        Algo::GrpoN | Algo::D3s | Algo::TwGrpo => {
            let cfg = if algo == Algo::TwGrpo { GrpoCfg::trl(TrlScale::Group) } else { GrpoCfg::verl_loop() };
            grpo_advantage(&rewards, groups, &cfg, &mut adv_seq).map_err(kernel)?;
            if algo == Algo::GrpoN {
                let pos =
                    grpo_negative_only(exec, shape, &mut mask, &mut adv_seq, NegMode::ZeroPositives).map_err(kernel)?;
                notes
                    .push(format!("grpo_n      {pos} of {responses} responses had A > 0: their advantage is set to 0"));
            }
            broadcast_masked(&adv_seq, &mask, t, &mut adv).map_err(kernel)?;
            if algo == Algo::D3s {
                let ent = need_entropy()?;
                let sched = D3sSchedule::default();
                let (n_keep, k_frac) = d3s_schedule(0.0, &sched, responses).map_err(kernel)?;
                let (o, v, p) = d3s_scratch_len(responses).map_err(kernel)?;
                let (mut order, mut values, mut prefix) = (vec![0u32; o], vec![0.0f32; v], vec![0.0f64; p]);
                let mut keep_rows = vec![0u8; responses];
                let scratch = D3sScratch { order: &mut order, values: &mut values, prefix: &mut prefix };
                d3s_select_samples(&adv_seq, groups, None, n_keep, scratch, &mut keep_rows).map_err(kernel)?;
                let chosen: Vec<f64> =
                    (0..responses).filter(|&b| keep_rows[b] != 0).map(|b| f64::from(adv_seq[b])).collect();
                let (var, var_ref) =
                    (seed_ref::pop_variance(&chosen), seed_ref::max_variance_extremes(&adv_seq, n_keep));
                if chosen.len() != n_keep.min(responses) || (var - var_ref).abs() > 1e-9 * (1.0 + var_ref) {
                    mismatch = Some(format!(
                        "d3s: the selected {} responses have variance {var}, the reference's best is {var_ref}",
                        chosen.len()
                    ));
                }
                let inp = D3sTokenInputs { shape, mask: &mask, adv: &adv, entropy: ent, keep_rows: &keep_rows };
                let mut tok = vec![0u8; rows];
                let kept = d3s_token_mask(exec, &inp, k_frac, &mut tok).map_err(kernel)?;
                let tok_ref = seed_ref::d3s_token_mask(&adv, ent, &mask, &keep_rows, t, f64::from(k_frac));
                if mismatch.is_none() && tok != tok_ref {
                    mismatch = Some("d3s: the kept tokens differ from the reference's".into());
                }
                let candidates = (0..rows).filter(|&i| mask[i] != 0 && keep_rows[i / t] != 0).count();
                notes.push(format!(
                    "d3s         p = 0: {n_keep} of {responses} responses kept (max variance {var:.5}, reference \
                     {var_ref:.5}); {kept} of {candidates} of their tokens kept by |A|·H (K = {k_frac})"
                ));
                mask = tok;
                for i in (0..rows).filter(|&i| mask[i] == 0) {
                    adv[i] = 0.0;
                }
            }
        }
        _ => unreachable!("not a seed method"),
    }

    // The entropy mask (on the mask the loss uses).
    let keep = match top_entropy_quantile {
        Some(rho) => {
            let ent = entropy.ok_or_else(|| {
                CliError::Usage(
                    "--top-entropy-quantile needs per-token entropies: the input has neither logits nor entropy".into(),
                )
            })?;
            Some(entropy_keep(exec, shape, &mask, ent, rho)?)
        }
        None => None,
    };
    if let Some(k) = &keep {
        notes.push(k.note.clone());
        mismatch = mismatch.or(k.mismatch.clone());
    }

    // Per-token loss and dℓ/dlogp.
    let pin = PolicyInputs { shape, logp, old_logp, adv: &adv, mask: &mask, is_weights: None };
    let (mut token_loss, mut g_logp) = (vec![0.0f32; rows], vec![0.0f32; rows]);
    let clip_cfg = if algo == Algo::TwGrpo {
        ClipCfg { eps_low: 0.2, eps_high: 0.28, dual_clip_c: None, log_ratio_clamp: None }
    } else {
        ClipCfg::default()
    };
    let ref_logp = ref_logp.filter(|_| algo.uses_kl());
    let out = LossOut { loss: &mut token_loss, dloss_dlogp: &mut g_logp };
    let (pg, kl) = match (&widths, ref_logp) {
        (Some((lo, hi)), _) => {
            let st = hapo_loss(exec, &pin, lo, hi, Some(HAPO_C), out).map_err(kernel)?;
            let mut pg = PolicyStats {
                valid_tokens: st.valid,
                clipped_dual: st.dual_clipped,
                neg_log_ratio_sum: st.neg_log_ratio_sum,
                ..PolicyStats::default()
            };
            for i in (0..rows).filter(|&i| mask[i] != 0) {
                let r = (logp[i] - old_logp[i]).exp();
                pg.clipped_high += u64::from(adv[i] > 0.0 && r > 1.0 + hi[i]);
                pg.clipped_low += u64::from(adv[i] < 0.0 && r < 1.0 - lo[i]);
            }
            (pg, None)
        }
        (None, Some(ref_logp)) => {
            let kl_term = KlTerm { ref_logp, cfg: KlCfg::default(), coef: KL_COEF };
            let (pg, kl) = ppo_clip_kl_loss(exec, &pin, &clip_cfg, &kl_term, out).map_err(kernel)?;
            (pg, Some(kl))
        }
        (None, None) => (ppo_clip_loss(exec, &pin, &clip_cfg, out).map_err(kernel)?, None),
    };
    apply_keep(keep.as_ref(), &mut token_loss, &mut g_logp);

    // Aggregation and the upstream gradient.
    let loss = if algo == Algo::TwGrpo {
        let tw = tw_weights.ok_or_else(|| {
            CliError::Usage(
                "--algo tw_grpo needs the logits of every response (its token weights stream over them)".into(),
            )
        })?;
        if tw.w.len() != rows {
            return Err(CliError::Usage("tw_grpo: the token weights do not match the batch".into()));
        }
        if mismatch.is_none() {
            if let Some(i) = (0..rows).find(|&i| (f64::from(tw.w[i]) - tw.w_ref[i]).abs() > tw.w_tol[i]) {
                mismatch = Some(format!(
                    "tw_grpo: weight[{i}] is {}, the reference says {} (tolerance {:.2e})",
                    tw.w[i], tw.w_ref[i], tw.w_tol[i]
                ));
            }
        }
        let valid_w = (0..rows).filter(|&i| mask[i] != 0).map(|i| tw.w[i]);
        notes.push(format!(
            "tw_grpo     token weights (α = {TW_ALPHA}) in [{:.4}, {:.4}] over the valid tokens",
            valid_w.clone().fold(f32::INFINITY, f32::min),
            valid_w.fold(f32::NEG_INFINITY, f32::max)
        ));
        let mut gw = vec![0.0f32; rows];
        let loss = tw_grpo_loss(exec, &mask, &token_loss, &tw.w, Some(&mut gw)).map_err(kernel)?;
        for (g, w) in g_logp.iter_mut().zip(&gw) {
            *g *= w;
        }
        loss
    } else {
        let (mode, norm) = (AggMode::TokenMean, AggNorm::default());
        let loss = agg_loss(exec, shape, &mask, &token_loss, mode, &norm).map_err(kernel)?;
        agg_chain_inplace(exec, shape, &mask, mode, &norm, &mut g_logp).map_err(kernel)?;
        loss
    };

    // The f64 reference of the loss, from the f64 advantages where the method has them.
    let f = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
    let a64 = adv_ref.unwrap_or_else(|| f(&adv));
    let kept_tok = |i: usize| mask[i] != 0 && keep.as_ref().is_none_or(|k| k.keep[i] != 0);
    let (per_token, magnitudes): (Vec<f64>, Vec<f64>) = (0..rows)
        .map(|i| {
            if !kept_tok(i) {
                return (0.0, 0.0);
            }
            let (lp, old, a) = (f64::from(logp[i]), f64::from(old_logp[i]), a64[i]);
            let pg = match &widths_ref {
                Some(w) => hapo_ref::loss_token(lp, old, a, w[i].0, w[i].1, Some(f64::from(HAPO_C))).0,
                None => reference::ppo_value(lp, old, a, 1.0, &clip_ref(&clip_cfg)),
            };
            match ref_logp {
                Some(rf) => {
                    let kl = reference::kl_token(lp, f64::from(rf[i]), reference::Kl::K3, true).0;
                    let d = lp - f64::from(rf[i]);
                    let beta = f64::from(KL_COEF);
                    (pg + beta * kl, pg.abs() + beta * ((-d).exp() + d.abs() + 1.0))
                }
                None => (pg, pg.abs()),
            }
        })
        .unzip();
    let (loss_reference, loss_tolerance) = match (algo, tw_weights) {
        (Algo::TwGrpo, Some(tw)) => {
            // Σ w·ℓ / Σ mask with the reference's weights; the weights' bound adds |ℓ|·δw.
            let count = (0..rows).filter(|&i| mask[i] != 0).count().max(1) as f64;
            let (mut l, mut tol) = (0.0, 0.0);
            for i in (0..rows).filter(|&i| mask[i] != 0) {
                l += tw.w_ref[i] * per_token[i];
                tol += 16.0 * EPS * magnitudes[i] * tw.w_ref[i].abs() + magnitudes[i] * tw.w_tol[i];
            }
            (l / count, tol / count + EPS * (l / count).abs())
        }
        _ => token_mean_check(&per_token, &magnitudes, &mask, t),
    };

    let (ratio, mut clip) = ratios_and_clip_states(Algo::Grpo, logp, old_logp, &adv, &mask, t, &clip_cfg);
    if let Some((lo, hi)) = &widths {
        // HAPO's clip states: its per-token widths and dual clip c (no log-ratio clamp).
        for i in (0..rows).filter(|&i| mask[i] != 0) {
            let r = ratio[i];
            clip[i] = match adv[i] {
                a if a > 0.0 && r > 1.0 + hi[i] => clip_state::HIGH,
                a if a < 0.0 && r > HAPO_C => clip_state::DUAL,
                a if a < 0.0 && r < 1.0 - lo[i] => clip_state::LOW,
                _ => clip_state::NONE,
            };
        }
    }
    Ok(Policy {
        mask,
        rewards,
        adv_seq,
        adv,
        ratio,
        clip,
        token_loss,
        g_logp,
        loss,
        loss_reference,
        loss_tolerance,
        pg,
        kl,
        groups: n_groups,
        kept_groups: n_groups,
        notes,
        mismatch,
    })
}
