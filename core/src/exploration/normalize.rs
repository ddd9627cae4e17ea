//! Running reward normalisation and the assembly of the total reward
//! (`src/algos/e3b_noveld.py::learn`, `src/models.py::update_running_moments` of
//! `facebookresearch/e3b`).
//!
//! ```text
//! reward_norm = Int (default): update the running moments with the intrinsic batch, then r_int ← r_int/std if std > 0
//!             = Ext: the same on the extrinsic rewards;   All: on the total after assembly;   None: no normalisation
//! r_total = r_ext + η·r_int          (η = intrinsic_reward_coef, default 1.0; r_total = η·r_int without extrinsic reward)
//! clip_rewards (default on): r_total ← clamp(r_total, −1, 1)
//! ```
//!
//! # Running moments, and which statistic merges
//!
//! The state is the source's `(count, sum, M2)` ([`RunningMoments`]), `std = sqrt(M2/count)`
//! (population). A batch enters as its own partial `(n_b, Σx, Σ(x − Σx/n_b)²)`
//! ([`norm_batch_moments`]), merged into the state by Chan et al.'s update
//! ([`RunningMoments::merge`]), written in the source's operation order:
//!
//! ```text
//! M2 += M2_b + count·n_b/(count + n_b)·(Σx/n_b − sum/count)²;   count += n_b;   sum += Σx
//! ```
//!
//! **Across ranks** \[library choice\] (the source is a single learner and never reduces):
//! each rank computes its batch's partial with [`norm_batch_moments`], the partials are
//! all-gathered (24 bytes each) and merged in rank order with [`RunningMoments::merge`],
//! and every rank folds the merged partial into its (identical) state and normalises with
//! [`assemble_rewards_with`]. The merged partial equals the partial of the concatenated
//! batch up to rounding (the tests check it), so the state matches the single-process one.
//!
//! # Compatibility
//!
//! [`MomentsCompat::Library`] (default) counts elements and starts from `count = 0`
//! \[library choice\]. [`MomentsCompat::E3b`] reproduces the source: the state starts at
//! `count = 1e-8` ([`RunningMoments::E3B_INIT`]) and a `[T, B]` batch counts `T` (its first
//! dimension), not `T·B`, so for `B > 1` its "mean" is `B` times too large. That quirk is
//! not mergeable across ranks (each rank would count `T`): use it single-process only.

use crate::exploration::check_finite;
use crate::TmError;

/// Running `(count, sum, M2)` of a reward stream, in `f64`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunningMoments {
    /// Number of values seen (`T` per batch under [`MomentsCompat::E3b`]).
    pub count: f64,
    /// Sum of the values.
    pub sum: f64,
    /// Sum of squared deviations from the mean.
    pub m2: f64,
}

impl Default for RunningMoments {
    fn default() -> Self {
        RunningMoments::EMPTY
    }
}

impl RunningMoments {
    /// No values (the library's start).
    pub const EMPTY: RunningMoments = RunningMoments { count: 0.0, sum: 0.0, m2: 0.0 };
    /// The source's start: `count = 1e-8`.
    pub const E3B_INIT: RunningMoments = RunningMoments { count: 1e-8, sum: 0.0, m2: 0.0 };

    /// `sum/count` (0 when `count == 0`).
    pub fn mean(&self) -> f64 {
        if self.count == 0.0 {
            0.0
        } else {
            self.sum / self.count
        }
    }

    /// `sqrt(M2/count)` (population; 0 when `count == 0`).
    pub fn std(&self) -> f64 {
        if self.count == 0.0 {
            0.0
        } else {
            libm::sqrt(self.m2 / self.count)
        }
    }

    /// Chan et al.'s merge, in the source's operation order (see the module docs). An empty
    /// side returns the other unchanged.
    pub fn merge(self, b: RunningMoments) -> RunningMoments {
        if b.count == 0.0 {
            return self;
        }
        if self.count == 0.0 {
            return b;
        }
        let n = self.count + b.count;
        let delta = b.sum / b.count - self.sum / self.count;
        RunningMoments {
            count: n,
            sum: self.sum + b.sum,
            m2: self.m2 + b.m2 + self.count * b.count / n * (delta * delta),
        }
    }

    fn validate(&self) -> Result<(), TmError> {
        let ok = self.count.is_finite()
            && self.count >= 0.0
            && self.sum.is_finite()
            && self.m2.is_finite()
            && self.m2 >= 0.0;
        if ok {
            Ok(())
        } else {
            Err(TmError::InvalidArgument("running moments must have finite count >= 0, finite sum and finite M2 >= 0"))
        }
    }
}

/// How a batch is counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MomentsCompat {
    /// Count every element (default) \[library choice\].
    #[default]
    Library,
    /// The source's arithmetic: a `[T, B]` batch counts `time_steps = T` \[code\]; the
    /// batch length must be a non-zero multiple of `time_steps`.
    E3b {
        /// `T`, the batch's first dimension.
        time_steps: usize,
    },
}

/// Which stream the running moments normalise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RewardNorm {
    /// No normalisation.
    None,
    /// The intrinsic rewards (source default) \[code\].
    #[default]
    Int,
    /// The extrinsic rewards \[code\].
    Ext,
    /// The total after assembly \[code\].
    All,
}

/// The assembly's hyper-parameters; the defaults are the source's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AssembleCfg {
    /// Which stream to normalise (default [`RewardNorm::Int`]).
    pub norm: RewardNorm,
    /// `η`, `intrinsic_reward_coef` (default 1.0; the paper sweeps 0.1/1/10). Finite.
    pub intrinsic_coef: f32,
    /// Clamp the total to `[−1, 1]` (`clip_rewards = 1`, default true).
    pub clip: bool,
    /// Add the extrinsic reward (default true); false gives `r_total = η·r_int` and
    /// `r_ext` may be empty.
    pub use_extrinsic: bool,
    /// How batches are counted (default [`MomentsCompat::Library`]).
    pub compat: MomentsCompat,
}

impl Default for AssembleCfg {
    fn default() -> Self {
        AssembleCfg {
            norm: RewardNorm::Int,
            intrinsic_coef: 1.0,
            clip: true,
            use_extrinsic: true,
            compat: MomentsCompat::Library,
        }
    }
}

fn check_inputs(r_ext: &[f32], r_int: &[f32], cfg: &AssembleCfg) -> Result<(), TmError> {
    if !cfg.intrinsic_coef.is_finite() {
        return Err(TmError::InvalidArgument("intrinsic_coef must be finite"));
    }
    if cfg.use_extrinsic {
        crate::error::check_len("r_ext", r_int.len(), r_ext.len())?;
        check_finite("r_ext", r_ext)?;
    } else if cfg.norm == RewardNorm::Ext {
        return Err(TmError::InvalidArgument("RewardNorm::Ext needs use_extrinsic"));
    }
    check_finite("r_int", r_int)?;
    if let MomentsCompat::E3b { time_steps } = cfg.compat {
        if time_steps == 0 || r_int.is_empty() || !r_int.len().is_multiple_of(time_steps) {
            return Err(TmError::InvalidArgument(
                "MomentsCompat::E3b needs a non-empty batch whose length is a multiple of time_steps >= 1",
            ));
        }
    }
    Ok(())
}

/// `r_ext + η·r_int` (or `η·r_int`) in `f64`, rounded to `f32` as the source stores it.
fn total(r_ext: &[f32], r_int: &[f32], cfg: &AssembleCfg, i: usize) -> f32 {
    let e = if cfg.use_extrinsic { r_ext[i] as f64 } else { 0.0 };
    (e + cfg.intrinsic_coef as f64 * r_int[i] as f64) as f32
}

/// The partial moments of the stream that `cfg.norm` normalises in this batch (all
/// `r_int.len()` elements; under [`RewardNorm::None`], [`RunningMoments::EMPTY`]): the
/// statistic each rank contributes to the merge. Two passes in `f64`, index order.
pub fn norm_batch_moments(r_ext: &[f32], r_int: &[f32], cfg: &AssembleCfg) -> Result<RunningMoments, TmError> {
    check_inputs(r_ext, r_int, cfg)?;
    let n = r_int.len();
    let x = |i: usize| -> f64 {
        match cfg.norm {
            RewardNorm::Int | RewardNorm::None => r_int[i] as f64,
            RewardNorm::Ext => r_ext[i] as f64,
            RewardNorm::All => total(r_ext, r_int, cfg, i) as f64,
        }
    };
    if cfg.norm == RewardNorm::None || n == 0 {
        return Ok(RunningMoments::EMPTY);
    }
    let count = match cfg.compat {
        MomentsCompat::Library => n as f64,
        MomentsCompat::E3b { time_steps } => time_steps as f64,
    };
    let sum: f64 = (0..n).map(x).sum();
    let mean = sum / count;
    let m2: f64 = (0..n).map(|i| (x(i) - mean) * (x(i) - mean)).sum();
    if !(sum.is_finite() && m2.is_finite()) {
        return Err(TmError::NonFinite { what: "batch moments (the rewards overflow f64)", index: 0 });
    }
    Ok(RunningMoments { count, sum, m2 })
}

/// Assembles the total reward with running moments `rm` that already include this batch
/// (the multi-rank path: see the module docs). `out` has `r_int.len()` elements.
pub fn assemble_rewards_with(
    r_ext: &[f32],
    r_int: &[f32],
    cfg: &AssembleCfg,
    rm: &RunningMoments,
    out: &mut [f32],
) -> Result<(), TmError> {
    check_inputs(r_ext, r_int, cfg)?;
    rm.validate()?;
    crate::error::check_len("out", r_int.len(), out.len())?;
    let std = rm.std();
    // The source divides only when std > 0.
    let scale = |v: f64| if std > 0.0 { v / std } else { v };
    let eta = cfg.intrinsic_coef as f64;
    let value = |i: usize| -> f32 {
        let e = if cfg.use_extrinsic { r_ext[i] as f64 } else { 0.0 };
        let v = match cfg.norm {
            RewardNorm::None => e + eta * r_int[i] as f64,
            RewardNorm::Int => e + eta * scale(r_int[i] as f64),
            RewardNorm::Ext => scale(e) + eta * r_int[i] as f64,
            RewardNorm::All => scale(total(r_ext, r_int, cfg, i) as f64),
        };
        let v = v as f32;
        if cfg.clip {
            v.clamp(-1.0, 1.0)
        } else {
            v
        }
    };
    if let Some(index) = (0..out.len()).position(|i| value(i).is_nan()) {
        return Err(TmError::NonFinite { what: "out", index });
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = value(i);
    }
    Ok(())
}

/// The single-process assembly: folds this batch into `rm` ([`norm_batch_moments`], then
/// [`RunningMoments::merge`]) and assembles into `out`. `rm` changes only on success.
pub fn assemble_rewards(
    r_ext: &[f32],
    r_int: &[f32],
    cfg: &AssembleCfg,
    rm: &mut RunningMoments,
    out: &mut [f32],
) -> Result<(), TmError> {
    rm.validate()?;
    let next = rm.merge(norm_batch_moments(r_ext, r_int, cfg)?);
    assemble_rewards_with(r_ext, r_int, cfg, &next, out)?;
    *rm = next;
    Ok(())
}
