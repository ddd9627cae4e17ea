//! The token-level methods of the seed papers (spec `policy.md` §6–7), one file per method.
//!
//! * [`hapo`] — HAPO's entropy normaliser (both sign modes), adaptive temperature, token-level
//!   group-average advantage, asymmetric adaptive clip, advantage redistribution and loss (§7.1).
//! * [`tw_grpo`] — TW-GRPO's token weights, streamed over the vocabulary, its weighted loss
//!   and its soft multi-choice and format rewards (§7.3).
//! * [`entropy_mask`] — the top-entropy-quantile ("80/20") mask, with an exact
//!   fixed-size merge across data-parallel ranks.
//! * [`d3s`] — D³S: the exact max-variance subset, its schedule, sample selection and the
//!   `|A|·H` token mask.
//! * [`nsr`] — PSR, NSR and W-REINFORCE advantages (negative-sample reinforcement).
//! * [`grpo_n`] — GRPO-N / GSPO-N: GRPO with the positive-advantage part removed.
//! * [`logit_dynamics`] — the expected logit update of a softmax policy-gradient step.
//! * [`nthr`] — NTHR: prediction errors on the sampled ids, influence scores, the threshold
//!   and the down-weighting of incorrect responses' tokens.
//! * [`thr`] — THR in its best-understanding modes (masking and steering by the sign).
//! * [`rmt`] — RMT: token budget, triangular length reward, entropy-curriculum sampling,
//!   combined reward and the masked next-token-prediction term.
//! * [`dop`] — Diversity or Precision: the generalised next-token loss and its gradient,
//!   fused over the vocabulary per row like the logits kernels (§7.7).
//!
//! Same conventions as [`crate::policy_loss`]: `[B,T]` row-major arrays with a `u8` mask,
//! [`crate::Exec`] first on per-token calls, caller-owned outputs written only on success,
//! typed [`crate::TmError`]s, the same bits for every backend and thread count. TW-GRPO's
//! weights and DoP stream over the vocabulary and use the [`crate::Exec`]'s threads (and AVX2
//! and AVX-512 for TW-GRPO, bitwise equal to the portable loop); the other kernels (HAPO's
//! adaptive temperature included) are single-threaded and portable (selections, short recurrences and per-token
//! selects that stream memory): there [`crate::Exec`] is checked (an unsupported backend is an
//! error) but its thread count is not used. Tags: \[code\] reproduces a named implementation, \[paper\] the
//! paper's equations, \[derived\] follows from them, \[library choice\] is tokenmath's decision
//! where the sources are silent (each says what it chose).

mod radix;

pub mod d3s;
pub mod dop;
#[cfg(target_arch = "x86_64")]
mod dop_x86;
pub mod entropy_mask;
pub mod grpo_n;
pub mod hapo;
pub mod logit_dynamics;
pub mod nsr;
pub mod nthr;
pub mod rmt;
pub mod thr;
pub mod tw_grpo;
#[cfg(target_arch = "x86_64")]
mod tw_grpo_x86_avx2;
#[cfg(target_arch = "x86_64")]
mod tw_grpo_x86_avx512;

pub use d3s::{
    d3s_schedule, d3s_scratch_len, d3s_select_samples, d3s_token_mask, max_variance_subset, D3sSchedule, D3sScratch,
    D3sTokenInputs,
};
pub use dop::{dop_loss_and_grad, dop_loss_and_grad_inplace, dop_scratch_len, DopCfg, DopSlot};
pub use entropy_mask::{
    linear_quantile, top_entropy_mask, top_entropy_threshold, valid_count, EntropyQuantile, QuantileStep,
};
pub use grpo_n::{grpo_negative_only, NegMode};
pub use logit_dynamics::expected_logit_update;
pub use nsr::{nsr_advantage, NsrCfg, NsrMode, NsrOut};
pub use nthr::{influence_scores, nthr_eta, nthr_reweight, nthr_threshold, prediction_error_restricted, Features};
pub use radix::{RadixHistogram, RADIX_BINS};
pub use rmt::{
    entropy_tiers, ntp_masked_loss, rmt_combined_reward, rmt_curriculum_probs, rmt_length_reward, rmt_pick_position,
    rmt_tier_probs, rmt_token_budget, RmtCurriculum, TIER_EASY, TIER_HARD, TIER_MEDIUM, TIER_NONE,
};
pub use thr::{thr_reweight, thr_scores, NonDominant, ThrCfg, ThrMode};

use crate::logits::{run_rows, SplitRows, Status};

/// `chunk`-element units of a slice, split by the thread driver.
struct Units<'a> {
    out: &'a mut [f32],
    chunk: usize,
}

impl SplitRows for Units<'_> {
    fn split_rows(self, mid: usize) -> (Self, Self) {
        let (a, b) = self.out.split_at_mut(mid * self.chunk);
        (Units { out: a, chunk: self.chunk }, Units { out: b, chunk: self.chunk })
    }
}

/// Runs `f(first_chunk, outputs)` over `threads` contiguous ranges of `chunk`-element units
/// of `out` (`out.len()` a multiple of `chunk`) with the logits family's driver
/// ([`run_rows`]); every unit is computed by the same code, so the result does not depend on
/// `threads`.
pub(crate) fn par_chunks<F>(threads: usize, chunk: usize, out: &mut [f32], f: &F)
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    let units = out.len().checked_div(chunk).unwrap_or(0);
    let done = run_rows(threads, units, Units { out, chunk }, &|first, _end, u: Units<'_>| {
        f(first, u.out);
        Ok(Status::default())
    });
    debug_assert!(done.is_ok(), "the work never fails");
}
