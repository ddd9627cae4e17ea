//! One GRPO-family policy-gradient step, end to end — on the default batch ([`run`]) and, with
//! the same policy part ([`policy`]), on a real rollout by `tokenmath replay`
//! ([`crate::replay`]):
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
//! The seed papers' methods (`hapo`, `tw_grpo`, `nsr`, `w_reinforce`, `grpo_n`, `d3s`) and
//! the top-entropy mask (`--top-entropy-quantile`, any `--algo`) are in [`crate::seed_algos`].
//!
//! These follow verl's recipes for each algorithm. Without reference log-probs (a replayed
//! dump may have none) `grpo` and `rloo` run without the KL term. DAPO's overlong shaping uses
//! `T` as the maximum length and `⌈T/2⌉` as the buffer. The aggregated loss is checked against
//! the `f64` reference (`tokenmath_reference::policy_loss`).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use tokenmath_core::advantages::{
    broadcast_masked, distinct_groups, dr_grpo_advantage, dynamic_sampling_keep, grpo_advantage, overlong_penalty,
    rloo_advantage, Groups, GrpoCfg, OverlongCfg, RlooFlavor,
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
use crate::seed_algos::TwWeights;

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
    /// HAPO: entropy-adaptive clip and advantage redistribution, token-level group average.
    Hapo,
    /// TW-GRPO: GRPO with token weights from the group's dispersion over the vocabulary.
    TwGrpo,
    /// NSR: negative-sample reinforcement (incorrect responses only, A = -1).
    Nsr,
    /// W-REINFORCE: NSR plus 0.1 x the positive samples.
    WReinforce,
    /// GRPO-N: GRPO with the positive advantages removed.
    GrpoN,
    /// D3S: max-variance sample subset, then the top |A|·H tokens.
    D3s,
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
    /// TRL's `top_entropy_quantile` ρ: only the tokens with the top-ρ entropies carry loss.
    pub top_entropy_quantile: Option<f32>,
}

/// The step's results.
pub struct StepOutcome {
    algo: Algo,
    /// What the step ran on, for the summary's first line.
    context: String,
    responses: usize,
    policy: Policy,
    mean_entropy: Option<f64>,
    /// The gradient's variable, in words (`dL/dlogits`, or `dL/dlogp` without logits).
    grad_of: &'static str,
    grad_norm: f64,
    grad_max: f32,
    elapsed: Duration,
}

impl StepOutcome {
    /// Assembles the outcome of a step whose gradient norm and maximum were measured by the
    /// caller (w.r.t. `grad_of`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        algo: Algo,
        context: String,
        policy: Policy,
        entropy: Option<&[f32]>,
        grad_of: &'static str,
        grad_norm: f64,
        grad_max: f32,
        elapsed: Duration,
    ) -> StepOutcome {
        let mask = &policy.mask;
        let mean_entropy = entropy.map(|e| {
            let valid = (0..mask.len()).filter(|&i| mask[i] != 0);
            valid.clone().map(|i| f64::from(e[i])).sum::<f64>() / valid.count().max(1) as f64
        });
        StepOutcome {
            algo,
            context,
            responses: policy.rewards.len(),
            policy,
            mean_entropy,
            grad_of,
            grad_norm,
            grad_max,
            elapsed,
        }
    }

    /// Whether the aggregated loss agrees with the `f64` reference.
    pub fn passed(&self) -> bool {
        self.loss_error() <= self.policy.loss_tolerance && self.policy.mismatch.is_none()
    }

    fn loss_error(&self) -> f64 {
        (self.policy.loss as f64 - self.policy.loss_reference).abs()
    }

    /// The per-token and per-response results.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// A short human-readable summary.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let p = &self.policy;
        let name = self.algo.name();
        let _ = writeln!(s, "policy step ({name}) {}", self.context);
        let valid_tokens = p.mask.iter().filter(|&&m| m != 0).count();
        let mean_reward = p.rewards.iter().map(|&r| r as f64).sum::<f64>() / self.responses.max(1) as f64;
        let _ = writeln!(
            s,
            "  rollout     {} responses in {} groups, {valid_tokens} valid tokens, mean reward {mean_reward:.3}{}",
            self.responses,
            p.groups,
            if self.algo == Algo::Dapo {
                format!(", {} of {} groups kept by dynamic sampling", p.kept_groups, p.groups)
            } else {
                String::new()
            }
        );
        let _ = writeln!(s, "  loss        {:.6}  (f64 reference {:.6})", p.loss, p.loss_reference);
        let _ = writeln!(
            s,
            "  clipfrac    {:.4}  (upper {:.4}, lower {:.4}, dual {:.4})  ppo_kl {:.3e}",
            p.pg.clipfrac(),
            p.pg.clipfrac_high(),
            p.pg.clipfrac_low(),
            p.pg.clipfrac_lower(),
            p.pg.ppo_kl()
        );
        match (&p.kl, self.algo.uses_kl()) {
            (Some(kl), _) => {
                let _ = writeln!(s, "  kl (k3)     {:.4e} mean over valid tokens, coefficient {KL_COEF}", kl.mean());
            }
            (None, true) => {
                let _ = writeln!(s, "  kl          none: the input has no reference log-probs");
            }
            (None, false) => {
                let _ = writeln!(s, "  kl          not used by {name}");
            }
        }
        let a = p.advantage_spread();
        let _ = writeln!(
            s,
            "  advantage   mean {:.5}  std {:.5}  min {:.5}  max {:.5} (valid tokens)",
            a.mean, a.std, a.min, a.max
        );
        match self.mean_entropy {
            Some(h) => {
                let _ = writeln!(s, "  entropy     {h:.5} nats (token mean)");
            }
            None => {
                let _ = writeln!(s, "  entropy     n/a (the input has neither logits nor entropies)");
            }
        }
        for note in &p.notes {
            let _ = writeln!(s, "  {note}");
        }
        if let Some(m) = &p.mismatch {
            let _ = writeln!(s, "  MISMATCH    {m}");
        }
        let _ = writeln!(s, "  grad        |{}|_2 {:.4e}, max {:.4e}", self.grad_of, self.grad_norm, self.grad_max);
        let _ = writeln!(s, "  time        {:.3} ms (advantages to gradient)", self.elapsed.as_secs_f64() * 1e3);
        let _ = write!(
            s,
            "policy check: {} (|loss - reference| {:.2e}, tolerance {:.2e})",
            if self.passed() { "PASS" } else { "FAIL" },
            self.loss_error(),
            p.loss_tolerance
        );
        s
    }
}

impl Algo {
    /// The name as on the command line.
    pub fn name(self) -> String {
        self.to_possible_value().map_or_else(String::new, |v| v.get_name().to_string())
    }

    /// Whether the algorithm adds a KL loss (when reference log-probs are available).
    pub fn uses_kl(self) -> bool {
        matches!(self, Algo::Grpo | Algo::Rloo | Algo::GrpoN | Algo::D3s)
    }

    /// Whether the algorithm is one of the seed papers' methods ([`crate::seed_algos`]).
    pub fn is_seed(self) -> bool {
        matches!(self, Algo::Hapo | Algo::TwGrpo | Algo::Nsr | Algo::WReinforce | Algo::GrpoN | Algo::D3s)
    }

    /// The per-token loss's aggregation.
    pub fn agg_mode(self) -> AggMode {
        match self {
            Algo::Grpo | Algo::Rloo | Algo::Dapo => AggMode::TokenMean,
            // TW-GRPO's `Σ w·ℓ / Σ mask` is a weighted token-mean.
            Algo::Hapo | Algo::TwGrpo | Algo::Nsr | Algo::WReinforce | Algo::GrpoN | Algo::D3s => AggMode::TokenMean,
            Algo::DrGrpo => AggMode::SeqMeanTokenSumNorm,
            Algo::Gspo => AggMode::SeqMeanTokenMean,
        }
    }
}

/// The synthetic rest of a rollout.
struct Rollout {
    mask: Vec<u8>,
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
        Rollout { mask, rewards, old_noise, ref_noise }
    }
}

pub(crate) fn kernel(e: TmError) -> CliError {
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
    let ro = Rollout::generate(responses, t, cfg.seed);
    let x = Mat::dense(logits, rows, vocab).map_err(kernel)?;

    // 1. Statistics: the current policy's log-probs of the sampled tokens and the entropies,
    //    from the forward the main job already ran (rows are independent, so a row mask
    //    would not change a bit of the kept rows).
    if stats.lse.len() != rows || stats.logp.len() != rows {
        return Err(CliError::Usage("the policy step needs the forward statistics of every row".into()));
    }
    let logp = &stats.logp;
    let old_logp: Vec<f32> = logp.iter().zip(&ro.old_noise).map(|(l, n)| l + n).collect();
    let ref_logp: Vec<f32> = logp.iter().zip(&ro.ref_noise).map(|(l, n)| l + n).collect();

    // TW-GRPO's token weights stream over the logits, so they are computed here.
    let tw = match cfg.algo {
        Algo::TwGrpo if cfg.temperature != 1.0 => {
            return Err(CliError::Usage(format!(
                "--algo tw_grpo: TW-GRPO's token weights are defined on the logits at temperature 1, not {}",
                cfg.temperature
            )))
        }
        Algo::TwGrpo => Some(crate::seed_algos::tw_weights(cfg.exec, logits, vocab, stats, &ro.mask, t, g)?),
        _ => None,
    };

    // 2.–4. Advantages, per-token loss, aggregation and the upstream gradient.
    let batch = PolicyBatch {
        t,
        logp,
        old_logp: &old_logp,
        ref_logp: Some(&ref_logp),
        mask: ro.mask,
        rewards: ro.rewards,
        groups: Groups::Contiguous { size: g },
        entropy: Some(&stats.entropy),
        tw_weights: tw.as_ref(),
        top_entropy_quantile: cfg.top_entropy_quantile,
    };
    let policy = policy(cfg.algo, cfg.exec, batch)?;

    // 5. Chain through the logits backward.
    let mut dx = vec![0.0f32; rows * vocab];
    // DAPO's filter may have masked more rows since the forward.
    let bwd_inputs = RowInputs {
        targets: Some(targets),
        row_mask: Some(&policy.mask),
        temperature: Temperature::Scalar(cfg.temperature),
    };
    stats_bwd(
        cfg.exec,
        x,
        &bwd_inputs,
        stats.saved(0..rows),
        Upstream { g_logp: Some(&policy.g_logp), ..Default::default() },
        MatMut::dense(&mut dx, rows, vocab).map_err(kernel)?,
    )
    .map_err(kernel)?;
    let elapsed = start.elapsed();
    let grad_norm = dx.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>().sqrt();
    let grad_max = dx.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    Ok(StepOutcome::new(
        cfg.algo,
        "on the same batch".into(),
        policy,
        Some(&stats.entropy),
        "dL/dlogits",
        grad_norm,
        grad_max,
        elapsed,
    ))
}

/// The per-token inputs of a step's policy part (everything after the logits).
pub struct PolicyBatch<'a> {
    /// Tokens per response (`T`); every per-token slice is `[B, T]` row-major.
    pub t: usize,
    /// `log π_θ` of the sampled tokens.
    pub logp: &'a [f32],
    /// `log π_old` (the rollout policy's).
    pub old_logp: &'a [f32],
    /// `log π_ref`, for the KL loss of `grpo`/`rloo` (`None`: no KL term).
    pub ref_logp: Option<&'a [f32]>,
    /// Response mask (`0` = padding).
    pub mask: Vec<u8>,
    /// One scalar reward per response (`B`).
    pub rewards: Vec<f32>,
    /// The prompt each response answers.
    pub groups: Groups<'a>,
    /// Per-token entropies (for `hapo`, `d3s` and the top-entropy mask).
    pub entropy: Option<&'a [f32]>,
    /// TW-GRPO's token weights (computed where the logits are).
    pub tw_weights: Option<&'a TwWeights>,
    /// TRL's `top_entropy_quantile` ρ (`None`: every valid token carries loss).
    pub top_entropy_quantile: Option<f32>,
}

/// Per-token clip states in [`Policy::clip`] (`u8`).
pub mod clip_state {
    /// Valid, not clipped: the gradient flows (or `A = 0`).
    pub const NONE: u8 = 0;
    /// `A > 0` and the ratio above `1 + ε_high`.
    pub const HIGH: u8 = 1;
    /// `A < 0` and the ratio below `1 − ε_low`.
    pub const LOW: u8 = 2;
    /// `A < 0` and the ratio above the dual-clip bound `c`.
    pub const DUAL: u8 = 3;
    /// Not in the loss (padding, or filtered out by DAPO's dynamic sampling).
    pub const MASKED: u8 = 4;
}

/// The policy part of a step: per-response, per-token and aggregated results.
pub struct Policy {
    /// The mask the loss used (DAPO's filter may have masked whole groups).
    pub mask: Vec<u8>,
    /// Rewards per response as the advantages saw them (DAPO: after overlong shaping).
    pub rewards: Vec<f32>,
    /// Advantage per response.
    pub adv_seq: Vec<f32>,
    /// Advantage per token (0 at masked positions).
    pub adv: Vec<f32>,
    /// Importance ratio per token as the loss formed it (PPO: `exp(clamp(logp − old, ±C))`;
    /// GSPO: the sequence ratio `s_b` at each valid token); 0 at masked positions.
    pub ratio: Vec<f32>,
    /// [`clip_state`] per token.
    pub clip: Vec<u8>,
    /// Per-token loss `ℓ` (0 at masked positions).
    pub token_loss: Vec<f32>,
    /// `∂L/∂logp` per token: `w ⊙ ∂ℓ/∂logp`, the upstream of the logits backward.
    pub g_logp: Vec<f32>,
    /// Aggregated loss `L`.
    pub loss: f32,
    /// `L` recomputed in `f64`, and the tolerance of the `f32` value.
    pub loss_reference: f64,
    /// See [`Policy::loss_reference`].
    pub loss_tolerance: f64,
    /// Clip counts and approximate KL.
    pub pg: PolicyStats,
    /// The KL term's statistics, when there is one.
    pub kl: Option<KlStats>,
    /// Distinct groups.
    pub groups: usize,
    /// Groups kept by DAPO's dynamic sampling (all of them for the other algorithms).
    pub kept_groups: usize,
    /// Method-specific summary lines (selections, weights, the entropy mask).
    pub notes: Vec<String>,
    /// A selection that disagrees with the reference's (the check fails).
    pub mismatch: Option<String>,
}

/// Mean, standard deviation, minimum and maximum.
pub struct Moments4 {
    /// Mean.
    pub mean: f64,
    /// Population standard deviation.
    pub std: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
}

impl Policy {
    /// The advantages' spread over the valid tokens (all 0 without valid tokens).
    pub fn advantage_spread(&self) -> Moments4 {
        let valid: Vec<f64> =
            (0..self.adv.len()).filter(|&i| self.mask[i] != 0).map(|i| f64::from(self.adv[i])).collect();
        if valid.is_empty() {
            return Moments4 { mean: 0.0, std: 0.0, min: 0.0, max: 0.0 };
        }
        let n = valid.len() as f64;
        let mean = valid.iter().sum::<f64>() / n;
        let std = (valid.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt();
        let min = valid.iter().copied().fold(f64::INFINITY, f64::min);
        let max = valid.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Moments4 { mean, std, min, max }
    }
}

/// Advantages → per-token loss (with KL) → aggregated loss → `g_logp`, checked against the
/// `f64` reference. The algorithms' settings are in the module docs' table.
pub fn policy(algo: Algo, exec: Exec, batch: PolicyBatch<'_>) -> Result<Policy, CliError> {
    let rows = batch.logp.len();
    let t = batch.t;
    if t == 0 || !rows.is_multiple_of(t) || batch.rewards.len() != rows / t {
        return Err(CliError::Usage(format!("{rows} tokens are not {} responses of {t}", batch.rewards.len())));
    }
    if batch.entropy.is_some_and(|e| e.len() != rows) {
        return Err(CliError::Usage(format!("the entropies do not cover the {rows} tokens")));
    }
    if algo.is_seed() {
        return crate::seed_algos::policy(algo, exec, batch);
    }
    let PolicyBatch { logp, old_logp, ref_logp, mut mask, mut rewards, groups, entropy, top_entropy_quantile, .. } =
        batch;
    let responses = rows / t;
    let shape = BatchShape::new(responses, t);
    let n_groups = distinct_groups(groups, responses).map_err(kernel)?;

    // Advantages per response, broadcast over its valid tokens.
    let mut kept_groups = n_groups;
    if algo == Algo::Dapo {
        let overlong = OverlongCfg { max_len: t, buffer_len: t.div_ceil(2), penalty_factor: 1.0 };
        for (b, r) in rewards.iter_mut().enumerate() {
            let len = mask[b * t..(b + 1) * t].iter().filter(|&&m| m != 0).count();
            *r += overlong_penalty(len, &overlong).map_err(kernel)?;
        }
        let mut keep = vec![0u8; responses];
        kept_groups = dynamic_sampling_keep(&rewards, groups, &mut keep).map_err(kernel)?;
        // Filtered groups leave the batch: their tokens are masked out.
        for (b, &k) in keep.iter().enumerate() {
            if k == 0 {
                mask[b * t..(b + 1) * t].fill(0);
            }
        }
    }
    let mut adv_seq = vec![0.0f32; responses];
    match algo {
        Algo::Grpo | Algo::Dapo | Algo::Gspo => grpo_advantage(&rewards, groups, &GrpoCfg::verl_loop(), &mut adv_seq),
        Algo::DrGrpo => dr_grpo_advantage(&rewards, groups, &mut adv_seq),
        Algo::Rloo => rloo_advantage(&rewards, groups, RlooFlavor::Standard, &mut adv_seq),
        _ => unreachable!("the seed methods (`is_seed`) returned above"),
    }
    .map_err(kernel)?;
    let mut adv = vec![0.0f32; rows];
    broadcast_masked(&adv_seq, &mask, t, &mut adv).map_err(kernel)?;

    // Per-token loss and its derivative w.r.t. logp.
    let pin = PolicyInputs { shape, logp, old_logp, adv: &adv, mask: &mask, is_weights: None };
    let (mut token_loss, mut g_logp) = (vec![0.0f32; rows], vec![0.0f32; rows]);
    let out = LossOut { loss: &mut token_loss, dloss_dlogp: &mut g_logp };
    let clip_cfg = if algo == Algo::Dapo { ClipCfg::dapo() } else { ClipCfg::default() };
    let ref_logp = ref_logp.filter(|_| algo.uses_kl());
    let (pg, kl) = match (algo, ref_logp) {
        (Algo::Gspo, _) => (gspo_loss(exec, &pin, &GspoCfg::default(), out).map_err(kernel)?, None),
        (_, Some(ref_logp)) => {
            let kl_term = KlTerm { ref_logp, cfg: KlCfg::default(), coef: KL_COEF };
            let (pg, kl) = ppo_clip_kl_loss(exec, &pin, &clip_cfg, &kl_term, out).map_err(kernel)?;
            (pg, Some(kl))
        }
        (_, None) => (ppo_clip_loss(exec, &pin, &clip_cfg, out).map_err(kernel)?, None),
    };

    // TRL's top-entropy mask: only the kept tokens carry loss; the normaliser is unchanged.
    let mut notes = Vec::new();
    let mut mismatch = None;
    let keep = match top_entropy_quantile {
        Some(rho) => {
            let ent = entropy.ok_or_else(|| {
                CliError::Usage(
                    "--top-entropy-quantile needs per-token entropies: the input has neither logits nor entropy".into(),
                )
            })?;
            let k = crate::seed_algos::entropy_keep(exec, shape, &mask, ent, rho)?;
            for i in (0..rows).filter(|&i| k.keep[i] == 0) {
                token_loss[i] = 0.0;
                g_logp[i] = 0.0;
            }
            notes.push(k.note().to_string());
            mismatch = k.mismatch().map(str::to_string);
            Some(k.keep)
        }
        None => None,
    };

    // Aggregate, and turn dℓ/dlogp into the upstream g_logp = w ⊙ dℓ/dlogp in place.
    let (mode, norm) = (algo.agg_mode(), AggNorm::default());
    let loss = agg_loss(exec, shape, &mask, &token_loss, mode, &norm).map_err(kernel)?;
    agg_chain_inplace(exec, shape, &mask, mode, &norm, &mut g_logp).map_err(kernel)?;

    let (ratio, clip) = ratios_and_clip_states(algo, logp, old_logp, &adv, &mask, t, &clip_cfg);
    let (loss_reference, loss_tolerance) =
        reference_loss(algo, logp, old_logp, ref_logp, &adv, &mask, keep.as_deref(), t, mode);
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
        kept_groups,
        notes,
        mismatch,
    })
}

/// Each valid token's importance ratio and [`clip_state`], by the loss kernels' formulas
/// (`ppo_clip.rs`, `gspo.rs`): PPO's `r = exp(clamp(Δ, ±C))` against `1 ± ε` and the dual
/// clip `c`; GSPO's sequence ratio `s_b = exp(min(mean Δ, cap))` against `1 ± ε`. Evaluated
/// here with `f32::exp`, so at a ratio within an ulp of a bound the state may differ from the
/// kernel's own count \[library choice: the kernels return counts, not per-token flags\].
pub(crate) fn ratios_and_clip_states(
    algo: Algo,
    logp: &[f32],
    old_logp: &[f32],
    adv: &[f32],
    mask: &[u8],
    t: usize,
    clip: &ClipCfg,
) -> (Vec<f32>, Vec<u8>) {
    let n = logp.len();
    let (mut ratio, mut state) = (vec![0.0f32; n], vec![clip_state::MASKED; n]);
    let gspo = GspoCfg::default();
    let (eps_low, eps_high) =
        if algo == Algo::Gspo { (gspo.eps_low, gspo.eps_high) } else { (clip.eps_low, clip.eps_high) };
    for b in 0..n / t {
        let row = b * t..(b + 1) * t;
        let seq_ratio = (algo == Algo::Gspo).then(|| {
            let valid: Vec<usize> = row.clone().filter(|&i| mask[i] != 0).collect();
            let sum: f64 = valid.iter().map(|&i| f64::from(logp[i]) - f64::from(old_logp[i])).sum();
            let mean = (sum / valid.len().max(1) as f64) as f32;
            mean.min(gspo.seq_log_ratio_cap.unwrap_or(f32::INFINITY)).exp()
        });
        for i in row.filter(|&i| mask[i] != 0) {
            let r = seq_ratio.unwrap_or_else(|| {
                let d = logp[i] - old_logp[i];
                clip.log_ratio_clamp.map_or(d, |c| d.clamp(-c, c)).exp()
            });
            let dual = if algo == Algo::Gspo { None } else { clip.dual_clip_c };
            ratio[i] = r;
            state[i] = match adv[i] {
                a if a > 0.0 && r > 1.0 + eps_high => clip_state::HIGH,
                a if a < 0.0 && dual.is_some_and(|c| r > c) => clip_state::DUAL,
                a if a < 0.0 && r < 1.0 - eps_low => clip_state::LOW,
                _ => clip_state::NONE,
            };
        }
    }
    (ratio, state)
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
    ref_logp: Option<&[f32]>,
    adv: &[f32],
    mask: &[u8],
    keep: Option<&[u8]>,
    t: usize,
    mode: AggMode,
) -> (f64, f64) {
    let f = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
    let (lp, old, rf, a) = (f(logp), f(old_logp), f(ref_logp.unwrap_or(&[])), f(adv));
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
            let with_kl = ref_logp.is_some();
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
    // The top-entropy mask zeroes the dropped tokens' loss (the normaliser still counts them).
    let dropped = |i: usize| keep.is_some_and(|k| k[i] == 0);
    let per_token: Vec<f64> = (0..per_token.len()).map(|i| if dropped(i) { 0.0 } else { per_token[i] }).collect();
    let magnitudes: Vec<f64> = (0..magnitudes.len()).map(|i| if dropped(i) { 0.0 } else { magnitudes[i] }).collect();
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
