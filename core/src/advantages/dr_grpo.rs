//! Dr. GRPO advantages (`policy.md` §3.2).

use super::{grpo_advantage, Groups, GrpoCfg};
use crate::error::TmError;

/// Dr. GRPO \[paper\]: GRPO without the std normalisation, `A_b = R_b − μ_g` (verl
/// `norm_adv_by_std_in_grpo=False`, TRL `scale_rewards="none"`) \[code\].
///
/// Shorthand for [`grpo_advantage`] with [`GrpoCfg::dr_grpo`]: Welford group means, groups
/// with fewer than 2 rewards get 0 (TRL; verl's loop would give `A = R`, reachable with
/// [`GrpoCfg::verl_loop`] and `norm_by_std = false`), NaN rewards are an error. The other
/// half of Dr. GRPO — a constant loss normaliser instead of per-sequence length means — is
/// the loss aggregation's job, not the advantage's.
pub fn dr_grpo_advantage(rewards: &[f32], groups: Groups<'_>, out: &mut [f32]) -> Result<(), TmError> {
    grpo_advantage(rewards, groups, &GrpoCfg::dr_grpo(), out)
}
