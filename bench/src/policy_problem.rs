//! The data of the policy-loss benchmarks (`src/bin/policy_timing.rs`, `benches/policy.rs`):
//! one `[B, T]` batch of the per-token inputs of a
//! PPO step with a k3 KL penalty, generated deterministically from [`SplitMix64`].
//!
//! * Response lengths `L_b` uniform in `[0.8·T, T]` (about 90% of the tokens valid); the mask
//!   is a valid prefix of each row, padding after it (inputs 0 there, as a trainer pads).
//! * `logp = −8·u³` (mostly confident tokens, a tail down to −8); `old_logp = logp + δ` with
//!   `δ` uniform in `±0.25` (so the `[0.8, 1.2]` clip binds on a sizeable fraction), and one
//!   token in 64 off-policy by `δ` uniform in `±3` (dual clip and large ratios);
//!   `ref_logp = logp + ` uniform `±0.5`.
//! * One advantage per response, uniform in `[−2, 2)` (GRPO-like), repeated over its tokens.

use crate::SplitMix64;
use tokenmath_core::policy_loss::BatchShape;

/// `β`, verl's default `kl_loss_coef` \[code\].
pub const KL_COEF: f32 = 0.001;

/// One batch of per-token inputs (`rows·cols` each, row-major).
pub struct PolicyProblem {
    /// `[B, T]`.
    pub shape: BatchShape,
    /// `log π_θ`.
    pub logp: Vec<f32>,
    /// `log π_old`.
    pub old_logp: Vec<f32>,
    /// Advantages.
    pub adv: Vec<f32>,
    /// `log π_ref`.
    pub ref_logp: Vec<f32>,
    /// Response mask (1 valid, 0 padding).
    pub mask: Vec<u8>,
    /// `Σ mask`.
    pub valid: usize,
}

impl PolicyProblem {
    /// The batch for `seed`; the same arguments always give the same bits.
    pub fn generate(rows: usize, cols: usize, seed: u64) -> PolicyProblem {
        let n = rows.checked_mul(cols).expect("rows·cols overflows usize");
        let mut rng = SplitMix64::new(seed);
        let (mut logp, mut old_logp, mut adv, mut ref_logp) =
            (vec![0.0f32; n], vec![0.0f32; n], vec![0.0f32; n], vec![0.0f32; n]);
        let mut mask = vec![0u8; n];
        let mut valid = 0;
        for b in 0..rows {
            let len = cols - rng.below_mod(cols / 5 + 1);
            let a = 4.0 * rng.next_f32() - 2.0;
            valid += len;
            for i in b * cols..b * cols + len {
                let u = rng.next_f32();
                let lp = -8.0 * u * u * u;
                let wide = rng.below_mod(64) == 0;
                let delta = if wide { 6.0 } else { 0.5 } * (rng.next_f32() - 0.5);
                logp[i] = lp;
                old_logp[i] = lp + delta;
                ref_logp[i] = lp + (rng.next_f32() - 0.5);
                adv[i] = a;
                mask[i] = 1;
            }
        }
        PolicyProblem { shape: BatchShape::new(rows, cols), logp, old_logp, adv, ref_logp, mask, valid }
    }

    /// `B·T`.
    pub fn tokens(&self) -> usize {
        self.mask.len()
    }
}
