//! One GRPO-family policy-gradient step on the default batch, end to end:
//! statistics → advantages → clipped loss (with KL) → aggregated loss → gradient w.r.t. the
//! logits, chained through the logits backward. The statistics are the main job's forward
//! ([`crate::run::RowStatistics`]): the logits are read once for it and once for this
//! step's backward.
//!
//! The batch's `N` logit rows are read as `B = N / T` responses of `T` tokens, in groups of
//! `G` responses per prompt (`--response-len`, `--group-size`). The rest of a rollout is
//! synthesised from the seed, because the default batch has no real one:
//!
//! * response lengths `L_b` uniform in `[⌈T/2⌉, T]` (the response mask), binary rewards;
//! * `old_logp = logp + 0.2·N(0,1)` (the policy moved since the rollout, so some ratios clip)
//!   and `ref_logp = logp + 0.1·N(0,1)`.
//!
//! | `--algo` | advantages | per-token loss | KL (k3, verl clamps) | aggregation |
//! |---|---|---|---|---|
//! | `grpo` | GRPO, verl loop form | PPO clip, verl defaults (ε 0.2, dual clip 3) | β = 0.001 | token-mean |
//! | `dr_grpo` | Dr. GRPO (no std) | PPO clip, verl defaults | none | seq-mean-token-sum-norm |
//! | `dapo` | GRPO on overlong-shaped rewards, zero-variance groups filtered | PPO clip-higher (ε_high 0.28) | none | token-mean |
//! | `gspo` | GRPO, verl loop form | GSPO (sequence ratio, ε 0.2) | none | seq-mean-token-mean |
//! | `rloo` | RLOO (leave-one-out baseline) | PPO clip, verl defaults | β = 0.001 | token-mean |
//!
//! These follow verl's recipes for each algorithm. The aggregated loss is checked against
//! the `f64` reference (`tokenmath_reference::policy_loss`).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use tokenmath_core::advantages::{
    broadcast_masked, dr_grpo_advantage, dynamic_sampling_keep, grpo_advantage, overlong_penalty, rloo_advantage,
    Groups, GrpoCfg, OverlongCfg, RlooFlavor,
};
use tokenmath_core::logits::{stats_bwd, RowInputs, Temperature, Upstream};
use tokenmath_core::policy_loss::{
    agg_chain_inplace, agg_loss, gspo_loss, ppo_clip_kl_loss, ppo_clip_loss, AggMode, AggNorm, BatchShape, ClipCfg,
    GspoCfg, KlCfg, KlStats, KlTerm, LossOut, PolicyInputs, PolicyStats,
};
use tokenmath_core::{Exec, LogitElem, Mat, MatMut, TmError};
use tokenmath_reference::policy_loss as reference;
use tokenmath_reference::rng::SplitMix64;

use crate::error::CliError;
use crate::run::RowStatistics;

/// The policy-optimisation algorithm of the step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum Algo {
    /// GRPO: group-normalised advantages, PPO clip, k3 KL.
    Grpo,
    /// Dr. GRPO: no std normalisation, no length normalisation.
    DrGrpo,
    /// DAPO: clip-higher, overlong shaping, dynamic sampling.
    Dapo,
    /// GSPO: sequence-level importance ratio.
    Gspo,
    /// RLOO: leave-one-out baseline.
    Rloo,
}

/// The KL coefficient of the algorithms that use a KL loss (verl's `kl_loss_coef` default).
pub const KL_COEF: f32 = 0.001;

/// What the step computes on.
pub struct StepCfg {
    /// The algorithm.
    pub algo: Algo,
    /// Tokens per response (`T`).
    pub response_len: usize,
    /// Responses per prompt (`G`).
    pub group_size: usize,
    /// Seed of the synthetic rollout.
    pub seed: u64,
    /// Temperature of the logits.
    pub temperature: f32,
    /// Backend and threads.
    pub exec: Exec,
}

/// The step's results.
pub struct StepOutcome {
    algo: Algo,
    responses: usize,
    groups: usize,
    valid_tokens: usize,
    kept_groups: usize,
    mean_reward: f64,
    loss: f32,
    loss_reference: f64,
    loss_tolerance: f64,
    pg: PolicyStats,
    kl: Option<KlStats>,
    mean_entropy: f64,
    grad_norm: f64,
    grad_max: f32,
    elapsed: Duration,
}

impl StepOutcome {
    /// Whether the aggregated loss agrees with the `f64` reference.
    pub fn passed(&self) -> bool {
        self.loss_error() <= self.loss_tolerance
    }

    fn loss_error(&self) -> f64 {
        (self.loss as f64 - self.loss_reference).abs()
    }

    /// A short human-readable summary.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let name = self.algo.to_possible_value().map_or_else(String::new, |v| v.get_name().to_string());
        let _ = writeln!(s, "policy step ({name}) on the same batch");
        let _ = writeln!(
            s,
            "  rollout     {} responses in {} groups, {} valid tokens, mean reward {:.3}{}",
            self.responses,
            self.groups,
            self.valid_tokens,
            self.mean_reward,
            if self.algo == Algo::Dapo {
                format!(", {} of {} groups kept by dynamic sampling", self.kept_groups, self.groups)
            } else {
                String::new()
            }
        );
        let _ = writeln!(s, "  loss        {:.6}  (f64 reference {:.6})", self.loss, self.loss_reference);
        let _ = writeln!(
            s,
            "  clipfrac    {:.4}  (upper {:.4}, lower {:.4}, dual {:.4})  ppo_kl {:.3e}",
            self.pg.clipfrac(),
            self.pg.clipfrac_high(),
            self.pg.clipfrac_low(),
            self.pg.clipfrac_lower(),
            self.pg.ppo_kl()
        );
        match &self.kl {
            Some(kl) => {
                let _ = writeln!(s, "  kl (k3)     {:.4e} mean over valid tokens, coefficient {KL_COEF}", kl.mean());
            }
            None => {
                let _ = writeln!(s, "  kl          not used by {name}");
            }
        }
        let _ = writeln!(s, "  entropy     {:.5} nats (token mean)", self.mean_entropy);
        let _ = writeln!(s, "  grad        |dL/dlogits|_2 {:.4e}, max {:.4e}", self.grad_norm, self.grad_max);
        let _ = writeln!(s, "  time        {:.3} ms (advantages to logits gradient)", self.elapsed.as_secs_f64() * 1e3);
        let _ = write!(
            s,
            "policy check: {} (|loss - reference| {:.2e}, tolerance {:.2e})",
            if self.passed() { "PASS" } else { "FAIL" },
            self.loss_error(),
            self.loss_tolerance
        );
        s
    }
}

/// The synthetic rest of a rollout.
struct Rollout {
    mask: Vec<u8>,
    lengths: Vec<usize>,
    rewards: Vec<f32>,
    old_noise: Vec<f32>,
    ref_noise: Vec<f32>,
}

impl Rollout {
    fn generate(responses: usize, t: usize, seed: u64) -> Rollout {
        let mut rng = SplitMix64::for_row(seed ^ 0x706f_6c69_6379, usize::MAX);
        let lengths: Vec<usize> = (0..responses).map(|_| t.div_ceil(2) + rng.below(t - t.div_ceil(2) + 1)).collect();
        let mask = lengths.iter().flat_map(|&l| (0..t).map(move |i| u8::from(i < l))).collect();
        let rewards = (0..responses).map(|_| if rng.uniform() < 0.5 { 1.0 } else { 0.0 }).collect();
        let old_noise = (0..responses * t).map(|_| (0.2 * rng.gaussian()) as f32).collect();
        let ref_noise = (0..responses * t).map(|_| (0.1 * rng.gaussian()) as f32).collect();
        Rollout { mask, lengths, rewards, old_noise, ref_noise }
    }
}

fn kernel(e: TmError) -> CliError {
    CliError::Kernel { origin: "policy step".into(), error: e }
}

/// Runs the step on `[rows, vocab]` logits with one sampled target per row, given the
/// forward statistics of those rows (from [`crate::run::run`]).
pub fn run<T: LogitElem>(
    cfg: &StepCfg,
    logits: &[T],
    vocab: usize,
    targets: &[i32],
    stats: &RowStatistics,
) -> Result<StepOutcome, CliError> {
    let rows = targets.len();
    let t = cfg.response_len;
    let g = cfg.group_size;
    if t == 0 || !rows.is_multiple_of(t) {
        return Err(CliError::Usage(format!("--response-len {t} must divide the {rows} rows")));
    }
    let responses = rows / t;
    if g == 0 || !responses.is_multiple_of(g) {
        return Err(CliError::Usage(format!("--group-size {g} must divide the {responses} responses")));
    }
    let start = Instant::now();
    let mut ro = Rollout::generate(responses, t, cfg.seed);
    let shape = BatchShape::new(responses, t);
    let groups = Groups::Contiguous { size: g };
    let x = Mat::dense(logits, rows, vocab).map_err(kernel)?;

    // 1. Statistics: the current policy's log-probs of the sampled tokens and the entropies,
    //    from the forward the main job already ran (rows are independent, so a row mask
    //    would not change a bit of the kept rows).
    if stats.lse.len() != rows || stats.logp.len() != rows {
        return Err(CliError::Usage("the policy step needs the forward statistics of every row".into()));
    }
    let (entropy, logp) = (&stats.entropy, &stats.logp);
    let temperature = Temperature::Scalar(cfg.temperature);
    let old_logp: Vec<f32> = logp.iter().zip(&ro.old_noise).map(|(l, n)| l + n).collect();
    let ref_logp: Vec<f32> = logp.iter().zip(&ro.ref_noise).map(|(l, n)| l + n).collect();

    // 2. Advantages per response, broadcast over its valid tokens.
    let mut kept_groups = responses / g;
    if cfg.algo == Algo::Dapo {
        let overlong = OverlongCfg { max_len: t, buffer_len: t.div_ceil(2), penalty_factor: 1.0 };
        for (r, &len) in ro.rewards.iter_mut().zip(&ro.lengths) {
            *r += overlong_penalty(len, &overlong).map_err(kernel)?;
        }
        let mut keep = vec![0u8; responses];
        kept_groups = dynamic_sampling_keep(&ro.rewards, groups, &mut keep).map_err(kernel)?;
        // Filtered groups leave the batch: their tokens are masked out.
        for (b, &k) in keep.iter().enumerate() {
            if k == 0 {
                ro.mask[b * t..(b + 1) * t].fill(0);
            }
        }
    }
    let mut adv_seq = vec![0.0f32; responses];
    match cfg.algo {
        Algo::Grpo | Algo::Dapo | Algo::Gspo => {
            grpo_advantage(&ro.rewards, groups, &GrpoCfg::verl_loop(), &mut adv_seq)
        }
        Algo::DrGrpo => dr_grpo_advantage(&ro.rewards, groups, &mut adv_seq),
        Algo::Rloo => rloo_advantage(&ro.rewards, groups, RlooFlavor::Standard, &mut adv_seq),
    }
    .map_err(kernel)?;
    let mut adv = vec![0.0f32; rows];
    broadcast_masked(&adv_seq, &ro.mask, t, &mut adv).map_err(kernel)?;

    // 3. Per-token loss and its derivative w.r.t. logp.
    let pin = PolicyInputs { shape, logp, old_logp: &old_logp, adv: &adv, mask: &ro.mask, is_weights: None };
    let (mut loss, mut dloss) = (vec![0.0f32; rows], vec![0.0f32; rows]);
    let out = LossOut { loss: &mut loss, dloss_dlogp: &mut dloss };
    let kl_term = KlTerm { ref_logp: &ref_logp, cfg: KlCfg::default(), coef: KL_COEF };
    let (pg, kl, mode) = match cfg.algo {
        Algo::Grpo | Algo::Rloo => {
            let (pg, kl) = ppo_clip_kl_loss(cfg.exec, &pin, &ClipCfg::default(), &kl_term, out).map_err(kernel)?;
            (pg, Some(kl), AggMode::TokenMean)
        }
        Algo::DrGrpo => (
            ppo_clip_loss(cfg.exec, &pin, &ClipCfg::default(), out).map_err(kernel)?,
            None,
            AggMode::SeqMeanTokenSumNorm,
        ),
        Algo::Dapo => (ppo_clip_loss(cfg.exec, &pin, &ClipCfg::dapo(), out).map_err(kernel)?, None, AggMode::TokenMean),
        Algo::Gspo => {
            (gspo_loss(cfg.exec, &pin, &GspoCfg::default(), out).map_err(kernel)?, None, AggMode::SeqMeanTokenMean)
        }
    };

    // 4. Aggregate, and turn dℓ/dlogp into the upstream g_logp = w ⊙ dℓ/dlogp in place.
    let norm = AggNorm::default();
    let loss_value = agg_loss(cfg.exec, shape, &ro.mask, &loss, mode, &norm).map_err(kernel)?;
    agg_chain_inplace(cfg.exec, shape, &ro.mask, mode, &norm, &mut dloss).map_err(kernel)?;

    // 5. Chain through the logits backward.
    let mut dx = vec![0.0f32; rows * vocab];
    // DAPO's filter may have masked more rows since the forward.
    let bwd_inputs = RowInputs { targets: Some(targets), row_mask: Some(&ro.mask), temperature };
    stats_bwd(
        cfg.exec,
        x,
        &bwd_inputs,
        stats.saved(0..rows),
        Upstream { g_logp: Some(&dloss), ..Default::default() },
        MatMut::dense(&mut dx, rows, vocab).map_err(kernel)?,
    )
    .map_err(kernel)?;
    let elapsed = start.elapsed();

    let valid: Vec<usize> = (0..rows).filter(|&i| ro.mask[i] != 0).collect();
    let mean_entropy = valid.iter().map(|&i| entropy[i] as f64).sum::<f64>() / valid.len().max(1) as f64;
    let (loss_reference, loss_tolerance) =
        reference_loss(cfg.algo, logp, &old_logp, &ref_logp, &adv, &ro.mask, t, mode);
    Ok(StepOutcome {
        algo: cfg.algo,
        responses,
        groups: responses / g,
        valid_tokens: valid.len(),
        kept_groups,
        mean_reward: ro.rewards.iter().map(|&r| r as f64).sum::<f64>() / responses as f64,
        loss: loss_value,
        loss_reference,
        loss_tolerance,
        pg,
        kl,
        mean_entropy,
        grad_norm: dx.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>().sqrt(),
        grad_max: dx.iter().fold(0.0f32, |m, v| m.max(v.abs())),
        elapsed,
    })
}

/// The aggregated loss recomputed in `f64` from the same `f32` inputs, and the tolerance of
/// the `f32` kernel: every per-token loss carries a few roundings (its `exp`, the clip, the
/// KL and their sum: at most 16 ulps of the size `μ` of the terms it is formed from, `|ℓ|`
/// for the policy part and `β(e^{−d} + |d| + 1)` for k3, which cancels), and the aggregation
/// is linear, so `|L − L_ref| ≤ 16ε·agg(μ)` plus the final rounding `ε|L_ref|` (`ε = 2^-23`).
#[allow(clippy::too_many_arguments)]
fn reference_loss(
    algo: Algo,
    logp: &[f32],
    old_logp: &[f32],
    ref_logp: &[f32],
    adv: &[f32],
    mask: &[u8],
    t: usize,
    mode: AggMode,
) -> (f64, f64) {
    let f = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
    let (lp, old, rf, a) = (f(logp), f(old_logp), f(ref_logp), f(adv));
    let clip = |c: ClipCfg| reference::Clip {
        eps_low: c.eps_low as f64,
        eps_high: c.eps_high as f64,
        c: c.dual_clip_c.map(f64::from),
        clamp: c.log_ratio_clamp.map(f64::from),
    };
    // Per token: the loss, and the size of the terms it is computed from (its rounding scale).
    let (per_token, magnitudes): (Vec<f64>, Vec<f64>) = match algo {
        Algo::Gspo => {
            let c = GspoCfg::default();
            let cap = c.seq_log_ratio_cap.map(f64::from);
            let loss = reference::gspo(&lp, &old, &a, mask, t, c.eps_low as f64, c.eps_high as f64, cap).0;
            let magnitudes = loss.iter().map(|l| l.abs()).collect();
            (loss, magnitudes)
        }
        _ => {
            let c = clip(if algo == Algo::Dapo { ClipCfg::dapo() } else { ClipCfg::default() });
            let with_kl = matches!(algo, Algo::Grpo | Algo::Rloo);
            (0..lp.len())
                .map(|i| {
                    if mask[i] == 0 {
                        return (0.0, 0.0);
                    }
                    let pg = reference::ppo_value(lp[i], old[i], a[i], 1.0, &c);
                    if !with_kl {
                        return (pg, pg.abs());
                    }
                    let kl = reference::kl_token(lp[i], rf[i], reference::Kl::K3, true).0;
                    // k3 = e^{−d} + d − 1 cancels: its error scales with the terms, not the result.
                    let d = lp[i] - rf[i];
                    let beta = KL_COEF as f64;
                    (pg + beta * kl, pg.abs() + beta * ((-d).exp() + d.abs() + 1.0))
                })
                .unzip()
        }
    };
    let agg = match mode {
        AggMode::TokenMean => reference::Agg::TokenMean,
        AggMode::SeqMeanTokenSum => reference::Agg::SeqMeanTokenSum,
        AggMode::SeqMeanTokenMean => reference::Agg::SeqMeanTokenMean,
        AggMode::SeqMeanTokenSumNorm => reference::Agg::SeqMeanTokenSumNorm,
    };
    let norm = reference::Norm { global_tokens: None, global_seqs: None, dp: 1.0, scale: None };
    let loss = reference::agg(&per_token, mask, t, agg, &norm);
    let eps = f64::from(f32::EPSILON);
    (loss, 16.0 * eps * reference::agg(&magnitudes, mask, t, agg, &norm) + eps * loss.abs())
}
