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
//! typed [`crate::TmError`]s, the same bits for every backend and thread count. HAPO's
//! adaptive temperature and TW-GRPO's weights stream over the vocabulary and use the
//! [`crate::Exec`]'s threads (and AVX2 and AVX-512 for TW-GRPO, bitwise equal to the portable loop); the
//! other kernels are single-threaded and portable (selections, short recurrences and per-token
//! selects that stream memory): there [`crate::Exec`] is checked (an unsupported backend is an
//! error) but its thread count is not used. Tags: \[code\] reproduces a named implementation, \[paper\] the
//! paper's equations, \[derived\] follows from them, \[library choice\] is tokenmath's decision
//! where the sources are silent (each says what it chose).

mod radix;

pub mod d3s;
pub mod dop;
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

/// Runs `f(first_chunk, outputs)` over `threads` contiguous ranges of `chunk`-element units
/// of `out` (`out.len()` a multiple of `chunk`); every unit is computed by the same code, so the
/// result does not depend on `threads`.
#[allow(unused_variables)]
pub(crate) fn par_chunks<F>(threads: usize, chunk: usize, out: &mut [f32], f: &F)
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    let units = out.len().checked_div(chunk).unwrap_or(0);
    #[cfg(feature = "std")]
    if threads > 1 && units > 1 {
        let parts = threads.min(units);
        std::thread::scope(|scope| {
            let mut rest = out;
            let mut start = 0;
            let mut first = None;
            let mut handles = std::vec::Vec::with_capacity(parts);
            for k in 0..parts {
                let end = units * (k + 1) / parts;
                let (mine, tail) = rest.split_at_mut((end - start) * chunk);
                rest = tail;
                let s = start;
                if k == 0 {
                    first = Some((s, mine));
                } else {
                    handles.push(scope.spawn(move || f(s, mine)));
                }
                start = end;
            }
            // Part 0 runs on the calling thread, which would otherwise sit idle.
            if let Some((s, mine)) = first {
                f(s, mine);
            }
            // Joined explicitly: an implicit join of a scoped thread does not wait for its
            // thread-local destructors, so the thread could outlive the call (rust-lang/rust#116179).
            for h in handles {
                h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            }
        });
        return;
    }
    f(0, out);
}
