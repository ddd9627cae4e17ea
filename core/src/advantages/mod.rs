//! Group statistics and advantage estimators (GRPO, Dr. GRPO, RLOO, REINFORCE++), as verl
//! and TRL define them, plus the DAPO reward extras.
//!
//! Spec: `policy.md` §1 (masked reductions), §2 (group statistics), §3 (advantage
//! estimators), §4.3 (DAPO extras), §8 (edge cases). Source tags: **\[code\]** = reproduces a
//! named trainer (verl commit `b178a3cd`, TRL commit `f2cd5771`), **\[paper\]**, **\[derived\]**,
//! **\[library choice\]** = the library's decision where the sources are silent or disagree.
//!
//! # The math
//!
//! Responses `b ∈ [0, B)` carry a scalar reward `R_b` and belong to a prompt group `g(b)`
//! ([`Groups`]); `I_g` are the members of group `g`, `n_g = |I_g|`,
//! `μ_g = mean(R_{I_g})`, `σ_g` its standard deviation (unbiased `M2/(n−1)` or population
//! `M2/n`, [`StdKind`]).
//!
//! ```text
//! GRPO       A_b = (R_b − μ_g) / (σ_g + ε)                         grpo.rs
//! Dr. GRPO   A_b =  R_b − μ_g                                       dr_grpo.rs
//! RLOO       A_b =  R_b − mean_{j∈I_g, j≠b} R_j = n_g/(n_g−1)·(R_b − μ_g)   rloo.rs
//! returns    G_t = r_t + γ·mask[t+1]·G_{t+1},  G_T = 0               returns.rs
//! REINFORCE++           A = whiten(G) over all valid tokens          reinforce_pp.rs
//! REINFORCE++-baseline  A = whiten(broadcast(R_b − μ_g))             reinforce_pp.rs
//! GAE        A_t = Σ_k (γλ)^k δ_{t+k},  δ_t = r_t + γV_{t+1} − V_t,  then whitened   gae.rs
//! whiten(x)  = (x − μ)·rsqrt(var_unbiased + 1e-8), μ, var over the valid tokens   masked.rs
//! broadcast  A[b,t] = A_seq[b] at valid tokens, 0 at padding         broadcast.rs
//! ```
//!
//! Around them: [`group_moments`] (per-group `(n, μ, M2)`, mergeable across data-parallel
//! ranks, then [`grpo_advantage_from_moments`]); TRL's combination of several reward
//! functions ([`trl_sum_rewards`], [`trl_normalize_then_sum_advantage`]); the masked
//! reductions [`masked_mean`], [`masked_var`], [`masked_whiten`]; and DAPO's overlong
//! reward shaping ([`overlong_shaped_token_rewards`]) and dynamic-sampling group filter
//! ([`dynamic_sampling_keep`]).
//!
//! Group statistics are the mergeable moments `(n, μ, M2)` of [`Moments`] (Chan et al.'s
//! parallel update, accumulated in `f64`): a group of identical rewards has `μ` equal to
//! that reward and `M2 = 0` *exactly*, so zero-variance groups give advantages that are
//! exactly 0. The per-flavor conventions (which std, where ε goes, what a singleton group
//! gets) are named options; each one's doc says which trainer it reproduces.
//!
//! # Group ids without allocation
//!
//! [`Groups::Contiguous`] is TRL's layout (`group[b] = b / G`), processed block by block in
//! `O(B)`. [`Groups::Ids`] takes arbitrary `u32` labels (verl's `uid`), in any order. It
//! needs no scratch: group `g` is visited at its first row (found by scanning backwards to
//! the previous row with the same id), and its members are the later rows with that id, in
//! ascending row order. That costs `O(B·K)` comparisons for `K` distinct ids (at most
//! `O(B²)`: 16 M comparisons for `B = 4096` singletons) and fixes the summation order, so
//! the result depends only on the rewards and labels, never on threads or label values.
//!
//! # Shared edge-case policies
//!
//! | input | result |
//! |---|---|
//! | buffer lengths that do not match | [`TmError::LengthMismatch`], before anything is written |
//! | `Contiguous { size: 0 }`, or `B` not a multiple of `size` | [`TmError::InvalidArgument`] |
//! | `±inf` reward | [`TmError::NonFinite`] \[library choice\] |
//! | NaN reward | [`TmError::NonFinite`] under [`NanPolicy::Error`]; under [`NanPolicy::IgnoreAndZero`] (TRL) the row is left out of its group's statistics and its advantage is 0 |
//! | `mask[b,t] == 0` | the input there is never read into another output; the output there is 0 (exceptions are flagged: verl-compat whitening, returns-to-go) |
//! | `B == 0` or `T == 0` | valid, nothing to write |
//!
//! Outputs are `f32`; every statistic is accumulated in `f64` in a fixed order, and each
//! advantage is rounded to `f32` once.

mod broadcast;
mod dapo;
mod dr_grpo;
mod gae;
mod group_stats;
mod grpo;
mod masked;
mod multi_reward;
mod reinforce_pp;
mod returns;
mod rloo;

pub use broadcast::{broadcast_masked, sequence_rewards};
pub use dapo::{dynamic_sampling_keep, overlong_penalty, overlong_shaped_token_rewards, OverlongCfg};
pub use dr_grpo::dr_grpo_advantage;
pub use gae::{gae, GaeCfg, GaeOut};
pub use group_stats::{distinct_groups, group_moments, merge_group_moments, Moments};
pub use grpo::{grpo_advantage, grpo_advantage_from_moments, GrpoCfg, GrpoFlavor, TrlScale};
pub use masked::{masked_mean, masked_sum, masked_var, masked_whiten};
pub use multi_reward::{trl_normalize_then_sum_advantage, trl_sum_rewards};
pub use reinforce_pp::{reinforce_pp_advantage, reinforce_pp_baseline_advantage};
pub use returns::returns_to_go;
pub use rloo::{rloo_advantage, RlooFlavor};

use crate::error::{check_len, TmError};

/// How responses are grouped by prompt.
#[derive(Clone, Copy, Debug)]
pub enum Groups<'a> {
    /// TRL's layout: consecutive blocks of `size` responses, `group[b] = b / size`.
    /// `B` must be a multiple of `size`.
    Contiguous {
        /// Responses per prompt (`G`, TRL's `num_generations`).
        size: usize,
    },
    /// One arbitrary `u32` label per response (verl's `uid`/`index`): not necessarily
    /// contiguous, sorted or dense.
    Ids(&'a [u32]),
}

/// Which variance a standard deviation is taken from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StdKind {
    /// `M2/(n − 1)` (Bessel-corrected) — `torch.std`, used by verl and TRL. Default.
    /// With `n ≤ 1` the variance is 0 \[library choice\].
    #[default]
    Unbiased,
    /// `M2/n`.
    Population,
}

/// What a group with fewer than two (scorable) responses gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SingletonPolicy {
    /// `A = 0`: a lone response has no baseline to compare with. Matches TRL; the library
    /// default \[library choice\].
    #[default]
    Zero,
    /// verl's loop fallback: `μ = 0, σ = 1`, so GRPO gives `A = R/(1 + ε)` and RLOO `A = R`.
    MeanZeroStdOne,
}

/// What a NaN reward means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NanPolicy {
    /// A NaN reward is an input error ([`TmError::NonFinite`]). Default \[library choice\]:
    /// verl would silently turn the whole group into NaN.
    #[default]
    Error,
    /// TRL's semantics ("unscorable" response): the row is left out of every statistic
    /// (`nanmean`/`nanstd`), and any advantage that comes out NaN is written as 0.
    IgnoreAndZero,
}

/// Which masked-reduction semantics to use (`policy.md` §1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compat {
    /// The library form: empty masks give 0, padding outputs are 0. Default.
    #[default]
    Library,
    /// verl `torch_functional.py` exactly \[code\]: `Σm + 1e-8` mean denominators, an error
    /// for an unbiased variance over fewer than 2 valid elements, whitened values written
    /// into padding too.
    Verl,
}

impl<'a> Groups<'a> {
    /// Checks the grouping against `rows` responses.
    pub(crate) fn validate(&self, rows: usize) -> Result<(), TmError> {
        match *self {
            Groups::Contiguous { size: 0 } => Err(TmError::InvalidArgument("contiguous group size must be > 0")),
            Groups::Contiguous { size } if !rows.is_multiple_of(size) => {
                Err(TmError::InvalidArgument("the number of responses is not a multiple of the group size"))
            }
            Groups::Contiguous { .. } => Ok(()),
            Groups::Ids(ids) => check_len("group", rows, ids.len()),
        }
    }

    /// The groups of `rows` responses, in order of their first row.
    pub(crate) fn iter(self, rows: usize) -> GroupIter<'a> {
        let ids = match self {
            Groups::Ids(ids) => Some(ids),
            Groups::Contiguous { .. } => None,
        };
        let size = match self {
            Groups::Contiguous { size } => size,
            Groups::Ids(_) => 0,
        };
        GroupIter { ids, size, rows, next: 0 }
    }
}

/// Iterates the groups (each a [`Members`]) in order of their first row.
pub(crate) struct GroupIter<'a> {
    ids: Option<&'a [u32]>,
    size: usize,
    rows: usize,
    next: usize,
}

impl<'a> Iterator for GroupIter<'a> {
    type Item = Members<'a>;

    fn next(&mut self) -> Option<Members<'a>> {
        match self.ids {
            None => {
                if self.next >= self.rows {
                    return None;
                }
                let start = self.next;
                self.next += self.size;
                Some(Members { ids: None, id: 0, next: start, end: self.next })
            }
            Some(ids) => {
                // A row starts a group iff no earlier row has its id. Scanning backwards stops
                // at the nearest earlier member, so the scans cost at most O(B) per group.
                while self.next < self.rows {
                    let b = self.next;
                    self.next += 1;
                    if !ids[..b].iter().rev().any(|&id| id == ids[b]) {
                        return Some(Members { ids: Some(ids), id: ids[b], next: b, end: self.rows });
                    }
                }
                None
            }
        }
    }
}

/// The rows of one group, in ascending order.
#[derive(Clone)]
pub(crate) struct Members<'a> {
    ids: Option<&'a [u32]>,
    id: u32,
    next: usize,
    end: usize,
}

impl Iterator for Members<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        while self.next < self.end {
            let b = self.next;
            self.next += 1;
            if self.ids.is_none_or(|ids| ids[b] == self.id) {
                return Some(b);
            }
        }
        None
    }
}

/// Rejects `±inf` always and NaN under [`NanPolicy::Error`].
pub(crate) fn check_rewards(what: &'static str, x: &[f32], nan: NanPolicy) -> Result<(), TmError> {
    match x.iter().position(|v| v.is_infinite() || (v.is_nan() && nan == NanPolicy::Error)) {
        Some(index) => Err(TmError::NonFinite { what, index }),
        None => Ok(()),
    }
}

/// Rejects non-finite values at valid (`mask != 0`) positions; padding is not read.
pub(crate) fn check_finite_masked(what: &'static str, x: &[f32], mask: &[u8]) -> Result<(), TmError> {
    match x.iter().zip(mask).position(|(v, &m)| m != 0 && !v.is_finite()) {
        Some(index) => Err(TmError::NonFinite { what, index }),
        None => Ok(()),
    }
}

/// Checks a `[B, T]` buffer against `rows · t` elements.
pub(crate) fn check_bt(what: &'static str, rows: usize, t: usize, got: usize) -> Result<(), TmError> {
    let expected = rows.checked_mul(t).ok_or(TmError::SizeOverflow { what })?;
    check_len(what, expected, got)
}

/// `sqrt` for `no_std`.
pub(crate) fn sqrt(x: f64) -> f64 {
    libm::sqrt(x)
}
