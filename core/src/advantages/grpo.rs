//! GRPO outcome advantages in verl's and TRL's forms (`policy.md` §3.1, §2.3).

use super::{check_rewards, Groups, Members, Moments, NanPolicy, SingletonPolicy, StdKind};
use crate::error::{check_len, TmError};

/// Which implementation's conventions GRPO follows. They differ in the std estimator, where
/// `ε` goes, what a singleton group gets and how NaN rewards are treated:
///
/// | flavor | std | normaliser | singleton | zero variance |
/// |---|---|---|---|---|
/// | [`Standard`](Self::Standard) (default) | `std` field (Unbiased) | `σ + ε` | `singleton` field (0) | exactly 0 |
/// | [`VerlLoop`](Self::VerlLoop) \[code\] | unbiased | `σ + ε` | `μ=0, σ=1` ⇒ `R/(1+ε)` | exactly 0 |
/// | [`VerlVectorized`](Self::VerlVectorized) \[code\] | unbiased, sum-of-squares | `sqrt(max(var, ε)) + ε` | `μ=0, σ=1` | `~0` (`±` rounding of the sum form) |
/// | [`Trl`](Self::Trl) \[code\] | unbiased, NaN-ignoring | `s + ε`, `s` per [`TrlScale`] | 0 | 0 |
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrpoFlavor {
    /// The library's form: Welford moments, `(R − μ)/(σ + ε)`. The defaults (unbiased std,
    /// singletons → 0) agree with verl's loop except for singletons, where they follow TRL
    /// \[library choice\]. A group whose scorable rewards are all equal gets exactly 0, also
    /// with `ε = 0`.
    Standard {
        /// The std estimator (default [`StdKind::Unbiased`], as verl and TRL).
        std: StdKind,
        /// Groups with fewer than 2 scorable rewards (default [`SingletonPolicy::Zero`]).
        singleton: SingletonPolicy,
    },
    /// verl `core_algos.py::compute_grpo_outcome_advantage` \[code\]: `torch.std` (unbiased),
    /// `(R − μ)/(σ + ε)`, a singleton group gets `μ = 0, σ = 1`.
    VerlLoop,
    /// verl `compute_grpo_vectorized_outcome_advantage` / `groupwise.py::group_mean_std`
    /// \[code\]: `μ = Σx/n`, `var = (Σx² − (Σx)²/n)/(n − 1)`, `σ = sqrt(max(var, ε))`, then
    /// `(R − μ)/(σ + ε)`; a singleton gets `μ = 0, σ = 1`. The one `ε` (default `1e-6`)
    /// serves as both the variance floor and the denominator's epsilon, as in the spec's
    /// transcription. The power sums are accumulated in `f64` (verl: `f32`), so the
    /// zero-variance residue is far below verl's `O(1e-6)`.
    VerlVectorized,
    /// TRL `grpo_trainer.py::_generate_and_score_completions` \[code\]: contiguous groups only
    /// ([`Groups::Contiguous`]), `A = R − nanmean_g(R)`, divided by `s + ε` unless
    /// `scale` is [`TrlScale::None`]; a NaN advantage becomes 0. Use with
    /// [`NanPolicy::IgnoreAndZero`] ([`GrpoCfg::trl`] does) for TRL's handling of
    /// unscorable (NaN) rewards.
    Trl {
        /// What the advantage is divided by (TRL `scale_rewards`).
        scale: TrlScale,
    },
}

impl Default for GrpoFlavor {
    fn default() -> Self {
        GrpoFlavor::Standard { std: StdKind::Unbiased, singleton: SingletonPolicy::Zero }
    }
}

/// TRL's `scale_rewards`: the std that GRPO advantages are divided by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TrlScale {
    /// `nanstd` of the response's group (unbiased; NaN — hence `A = 0` — with fewer than 2
    /// scorable rewards; 0 for `G = 1`). TRL's default (`"group"`).
    #[default]
    Group,
    /// `nanstd` over the whole batch passed in (0 if it has one response). TRL gathers the
    /// batch across processes first; pass the gathered batch to match it.
    Batch,
    /// No division (`"none"`, Dr. GRPO).
    None,
}

/// GRPO options. [`Default`] is the library form ([`GrpoFlavor::Standard`], `ε = 1e-6`
/// as verl, NaN rewards rejected); the constructors give each trainer's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GrpoCfg {
    /// The conventions (default [`GrpoFlavor::Standard`]).
    pub flavor: GrpoFlavor,
    /// Divide by the std (verl `norm_adv_by_std_in_grpo`, default `true`); `false` gives
    /// `A = R − μ` (Dr. GRPO). [`GrpoFlavor::Trl`] divides only when this is `true` and its
    /// scale is not [`TrlScale::None`].
    pub norm_by_std: bool,
    /// `ε` (default `1e-6`, verl's; TRL uses `1e-4`). Must be finite and `≥ 0`.
    pub eps: f32,
    /// NaN rewards (default [`NanPolicy::Error`]).
    pub nan_policy: NanPolicy,
}

impl Default for GrpoCfg {
    fn default() -> Self {
        GrpoCfg { flavor: GrpoFlavor::default(), norm_by_std: true, eps: 1e-6, nan_policy: NanPolicy::Error }
    }
}

impl GrpoCfg {
    /// verl's loop form with verl's defaults (`ε = 1e-6`, std normalisation on).
    pub fn verl_loop() -> Self {
        GrpoCfg { flavor: GrpoFlavor::VerlLoop, ..GrpoCfg::default() }
    }

    /// verl's vectorised form with verl's defaults.
    pub fn verl_vectorized() -> Self {
        GrpoCfg { flavor: GrpoFlavor::VerlVectorized, ..GrpoCfg::default() }
    }

    /// TRL's form: `ε = 1e-4`, NaN rewards are unscorable ([`NanPolicy::IgnoreAndZero`]).
    pub fn trl(scale: TrlScale) -> Self {
        GrpoCfg {
            flavor: GrpoFlavor::Trl { scale },
            norm_by_std: true,
            eps: 1e-4,
            nan_policy: NanPolicy::IgnoreAndZero,
        }
    }

    /// Dr. GRPO: the library form without std normalisation, `A = R − μ`.
    pub fn dr_grpo() -> Self {
        GrpoCfg { norm_by_std: false, ..GrpoCfg::default() }
    }
}

/// GRPO advantages `A_b` (one per response) from rewards `R_b` and their prompt groups.
///
/// Each group's statistics are accumulated in `f64` over its scorable members in ascending
/// row order; `A_b = (R_b − shift_g)/denom_g` is evaluated in `f64` and rounded once.
///
/// Edge cases (beyond the module table): groups with fewer than two scorable rewards follow
/// the flavor (see [`GrpoFlavor`]); [`GrpoFlavor::Trl`] with [`Groups::Ids`] is
/// [`TmError::InvalidArgument`] (TRL assumes the contiguous layout); `eps` not finite or
/// negative is [`TmError::InvalidArgument`].
///
/// Worked example (`policy.md` §3.1): one group `R = [1, 0, 0, 1]`, `μ = 0.5`,
/// `σ = 0.5773503`: verl `A = ±0.8660239`, TRL `A = ±0.8658754`.
pub fn grpo_advantage(rewards: &[f32], groups: Groups<'_>, cfg: &GrpoCfg, out: &mut [f32]) -> Result<(), TmError> {
    let rows = rewards.len();
    check_len("out", rows, out.len())?;
    groups.validate(rows)?;
    if !(cfg.eps.is_finite() && cfg.eps >= 0.0) {
        return Err(TmError::InvalidArgument("GRPO eps must be finite and >= 0"));
    }
    if matches!(cfg.flavor, GrpoFlavor::Trl { .. }) && matches!(groups, Groups::Ids(_)) {
        return Err(TmError::InvalidArgument("GrpoFlavor::Trl needs Groups::Contiguous (TRL's layout)"));
    }
    check_rewards("rewards", rewards, cfg.nan_policy)?;

    let batch_std = match cfg.flavor {
        GrpoFlavor::Trl { scale: TrlScale::Batch } => trl_nanstd(rewards, 0..rows),
        _ => 0.0,
    };
    for members in groups.iter(rows) {
        let rule = group_rule(rewards, members.clone(), cfg, batch_std);
        for b in members {
            out[b] = rule.apply(rewards[b], cfg.nan_policy);
        }
    }
    Ok(())
}

/// How one group's rewards become advantages.
enum Rule {
    /// Every member gets 0.
    Zero,
    /// `A = (R − shift)/denom`.
    Affine { shift: f64, denom: f64 },
}

impl Rule {
    fn apply(&self, r: f32, nan: NanPolicy) -> f32 {
        let a = match *self {
            Rule::Zero => 0.0,
            Rule::Affine { shift, denom } => (r as f64 - shift) / denom,
        };
        if a.is_nan() && nan == NanPolicy::IgnoreAndZero {
            0.0
        } else {
            a as f32
        }
    }
}

/// Welford moments of the scorable (non-NaN) members.
pub(crate) fn scorable_moments(rewards: &[f32], members: Members<'_>) -> Moments {
    let mut m = Moments::EMPTY;
    for b in members.filter(|&b| !rewards[b].is_nan()) {
        m.push(rewards[b] as f64, 1.0);
    }
    m
}

/// TRL `nanstd` (unbiased, NaN-ignoring) over `rows`, with TRL's conventions: 0 for a single
/// element, NaN for fewer than two non-NaN values.
fn trl_nanstd(rewards: &[f32], rows: impl Iterator<Item = usize> + Clone) -> f64 {
    if rows.clone().count() == 1 {
        return 0.0;
    }
    let mut m = Moments::EMPTY;
    for b in rows.filter(|&b| !rewards[b].is_nan()) {
        m.push(rewards[b] as f64, 1.0);
    }
    if m.n < 2.0 {
        f64::NAN
    } else {
        m.std(StdKind::Unbiased)
    }
}

fn group_rule(rewards: &[f32], members: Members<'_>, cfg: &GrpoCfg, batch_std: f64) -> Rule {
    let eps = cfg.eps as f64;
    let by_std = |sigma: f64| if cfg.norm_by_std { sigma + eps } else { 1.0 };
    match cfg.flavor {
        // (`rule_from_moments` is always `Some` for these two.)
        GrpoFlavor::Standard { .. } | GrpoFlavor::VerlLoop => {
            rule_from_moments(&scorable_moments(rewards, members), cfg).unwrap_or(Rule::Zero)
        }
        GrpoFlavor::VerlVectorized => {
            let (mut n, mut sum, mut sum_sq) = (0.0f64, 0.0f64, 0.0f64);
            for b in members.filter(|&b| !rewards[b].is_nan()) {
                let x = rewards[b] as f64;
                n += 1.0;
                sum += x;
                sum_sq += x * x;
            }
            if n < 2.0 {
                // verl's singleton fallback: μ = 0, σ = 1.
                Rule::Affine { shift: 0.0, denom: by_std(1.0) }
            } else {
                let var = (sum_sq - sum * sum / n) / (n - 1.0);
                Rule::Affine { shift: sum / n, denom: by_std(super::sqrt(var.max(eps))) }
            }
        }
        GrpoFlavor::Trl { scale } => {
            let m = scorable_moments(rewards, members.clone());
            let shift = if m.n == 0.0 { f64::NAN } else { m.mean };
            let s = match scale {
                TrlScale::Group => trl_nanstd(rewards, members),
                TrlScale::Batch => batch_std,
                TrlScale::None => return Rule::Affine { shift, denom: 1.0 },
            };
            Rule::Affine { shift, denom: by_std(s) }
        }
    }
}

/// The rule of a [`GrpoFlavor::Standard`] or [`GrpoFlavor::VerlLoop`] group from its
/// moments (over its scorable rewards); `None` for the flavors that need other statistics.
fn rule_from_moments(m: &Moments, cfg: &GrpoCfg) -> Option<Rule> {
    let eps = cfg.eps as f64;
    let by_std = |sigma: f64| if cfg.norm_by_std { sigma + eps } else { 1.0 };
    // verl's singleton fallback: μ = 0, σ = 1.
    let verl_singleton = Rule::Affine { shift: 0.0, denom: by_std(1.0) };
    Some(match cfg.flavor {
        GrpoFlavor::Standard { std, singleton } => match (m.n < 2.0, singleton) {
            (true, SingletonPolicy::Zero) => Rule::Zero,
            (true, SingletonPolicy::MeanZeroStdOne) => verl_singleton,
            // Identical rewards: exactly 0 whatever ε is (ε = 0 would give 0/0).
            (false, _) if m.m2 == 0.0 => Rule::Zero,
            (false, _) => Rule::Affine { shift: m.mean, denom: by_std(m.std(std)) },
        },
        GrpoFlavor::VerlLoop if m.n < 2.0 => verl_singleton,
        GrpoFlavor::VerlLoop => Rule::Affine { shift: m.mean, denom: by_std(m.std(StdKind::Unbiased)) },
        GrpoFlavor::VerlVectorized | GrpoFlavor::Trl { .. } => return None,
    })
}

/// GRPO advantages of some responses from group statistics computed elsewhere: the
/// data-parallel form of [`grpo_advantage`].
///
/// Each rank computes [`super::group_moments`] of its own rewards (NaN rows with weight 0
/// under [`NanPolicy::IgnoreAndZero`]), the tables are all-gathered and entries with equal
/// ids merged with [`Moments::merge`] in ascending rank order, and every rank then calls
/// this for its rows. With the table of the whole batch on one rank this gives exactly the
/// bits of [`grpo_advantage`] ([`Groups::Ids`]); with a split batch the statistics differ
/// from the unsplit ones only by the merge's rounding, and the result is bitwise
/// reproducible for a fixed split and merge order.
///
/// `group[b]` is response `b`'s id; `(table_ids[k], table[k])` are the merged statistics.
/// Only [`GrpoFlavor::Standard`] and [`GrpoFlavor::VerlLoop`] are defined by `(n, μ, M2)`;
/// the other flavors are [`TmError::InvalidArgument`]. Also [`TmError::InvalidArgument`]:
/// a row whose id is not in the table, a repeated table id, or a table entry that is not
/// a valid moment (`n`, `M2` negative or not finite). Lookups are linear: `O(B·K)`.
pub fn grpo_advantage_from_moments(
    rewards: &[f32],
    group: &[u32],
    table_ids: &[u32],
    table: &[Moments],
    cfg: &GrpoCfg,
    out: &mut [f32],
) -> Result<(), TmError> {
    let rows = rewards.len();
    check_len("group", rows, group.len())?;
    check_len("out", rows, out.len())?;
    check_len("table", table_ids.len(), table.len())?;
    if !(cfg.eps.is_finite() && cfg.eps >= 0.0) {
        return Err(TmError::InvalidArgument("GRPO eps must be finite and >= 0"));
    }
    if rule_from_moments(&Moments::EMPTY, cfg).is_none() {
        return Err(TmError::InvalidArgument("only GrpoFlavor::Standard and VerlLoop are defined by group moments"));
    }
    if table.iter().any(|m| !(m.n.is_finite() && m.n >= 0.0 && m.mean.is_finite() && m.m2.is_finite() && m.m2 >= 0.0)) {
        return Err(TmError::InvalidArgument("a group moments entry is not finite and non-negative"));
    }
    if (1..table_ids.len()).any(|k| table_ids[..k].contains(&table_ids[k])) {
        return Err(TmError::InvalidArgument("the group moments table repeats an id"));
    }
    let slot = |b: usize| table_ids.iter().position(|&id| id == group[b]);
    if (0..rows).any(|b| slot(b).is_none()) {
        return Err(TmError::InvalidArgument("a response's group id is not in the moments table"));
    }
    check_rewards("rewards", rewards, cfg.nan_policy)?;
    for b in 0..rows {
        let rule = rule_from_moments(&table[slot(b).unwrap_or(0)], cfg).unwrap_or(Rule::Zero);
        out[b] = rule.apply(rewards[b], cfg.nan_policy);
    }
    Ok(())
}
