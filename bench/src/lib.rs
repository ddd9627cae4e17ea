//! Shared pieces of the tokenmath benchmarks.
//!
//! The criterion benches (`benches/logits.rs`) and the plain timing driver used by the
//! comparison script (`src/bin/logits_timing.rs`) run on the same data and the same
//! buffers, defined here:
//!
//! * [`Problem`]: deterministic, realistic logits (a peaked, long-tailed distribution
//!   over a shuffled vocabulary), in-range targets and upstream gradients.
//! * [`FwdStats`]: the forward's output buffers, which are also the statistics the
//!   backward needs.
//! * [`floor`]: reference loops that bound how fast any forward can be on this machine
//!   (`exp` throughput and streaming read bandwidth).

pub mod floor;
pub mod policy_problem;

use half::bf16;
use tokenmath_core::logits::{FwdOut, RowInputs, Saved, Upstream};

/// The seed every benchmark uses, so that all of them see the same logits.
pub const SEED: u64 = 0x5EED_1061_7500_0001;

pub use tokenmath_reference::rng::SplitMix64;

/// A benchmark problem: `[rows, cols]` logits with one target per row and the upstream
/// gradients of a typical loss (mean NLL with a small entropy bonus).
///
/// Each row is a Zipf-like distribution over a shuffled vocabulary, the shape of real LM
/// logits: the token of rank `k` (0 = most likely) gets
///
/// ```text
/// x = top − a·ln(k + 1) + noise,   a ∈ [0.8, 2.0),  top ∈ [5, 20),  noise ∈ [−1, 1)
/// ```
///
/// so that a few tokens hold much of the mass and the tail is long and flat (at
/// `cols = 32768`: top-token probability ≈ 0.3 and entropy ≈ 4 nats at the median row,
/// entropies from about 1 to 9 nats). The rank-to-column map is a per-row affine permutation
/// `col = (k·stride + offset) mod cols`, so the maximum is not at a fixed column. The
/// target's rank is `cols^(u²) − 1` for a uniform `u`: mostly among the top few dozen tokens,
/// sometimes deep in the tail; always in `[0, cols)`.
#[derive(Clone, Debug)]
pub struct Problem {
    /// Number of rows (tokens).
    pub rows: usize,
    /// Number of columns (vocabulary size).
    pub cols: usize,
    /// Row-major `[rows, cols]` logits.
    pub logits: Vec<f32>,
    /// Target column of every row.
    pub targets: Vec<i32>,
    /// `∂L/∂logp` per row (`−1/rows`: mean negative log-likelihood).
    pub g_logp: Vec<f32>,
    /// `∂L/∂entropy` per row (`−0.01/rows`: an entropy bonus).
    pub g_entropy: Vec<f32>,
}

impl Problem {
    /// Generates the problem for `seed`; the same arguments always give the same bits.
    ///
    /// Panics if `cols == 0`, if `cols` does not fit an `i32` target, or if `rows·cols`
    /// overflows.
    pub fn generate(rows: usize, cols: usize, seed: u64) -> Problem {
        assert!(cols > 0 && i32::try_from(cols).is_ok(), "cols must be in [1, 2^31)");
        let len = rows.checked_mul(cols).expect("rows·cols overflows usize");
        // −ln(k + 1) for every rank, shared by all rows (each row scales it by its own `a`).
        let neg_ln_rank: Vec<f32> = (0..cols).map(|k| -((k as f64) + 1.0).ln() as f32).collect();
        let mut rng = SplitMix64::new(seed);
        let mut logits = vec![0.0f32; len];
        let mut targets = Vec::with_capacity(rows);
        for row in logits.chunks_exact_mut(cols) {
            let a = 0.8 + 1.2 * rng.next_f32();
            let top = 5.0 + 15.0 * rng.next_f32();
            let stride = coprime_stride(rng.below_mod(cols), cols);
            let offset = rng.below_mod(cols);
            let mut col = offset;
            for &nl in &neg_ln_rank {
                let noise = 2.0 * rng.next_f32() - 1.0;
                row[col] = top + a * nl + noise;
                col += stride;
                if col >= cols {
                    col -= cols;
                }
            }
            let u = f64::from(rng.next_f32());
            let rank = ((cols as f64).powf(u * u) as usize).saturating_sub(1);
            let target = (rank as u64 * stride as u64 + offset as u64) % cols as u64;
            targets.push(target as i32);
        }
        let g = |scale: f32| vec![scale / rows.max(1) as f32; rows];
        Problem { rows, cols, logits, targets, g_logp: g(-1.0), g_entropy: g(-0.01) }
    }

    /// The logits rounded to `bf16` (round to nearest even).
    pub fn logits_bf16(&self) -> Vec<bf16> {
        self.logits.iter().map(|&x| bf16::from_f32(x)).collect()
    }

    /// The maximum logit of every row.
    pub fn row_max(&self) -> Vec<f32> {
        self.logits.chunks_exact(self.cols).map(|r| r.iter().copied().fold(f32::NEG_INFINITY, f32::max)).collect()
    }

    /// The per-row inputs: targets, no mask, temperature 1.
    pub fn inputs(&self) -> RowInputs<'_> {
        RowInputs { targets: Some(&self.targets), ..RowInputs::default() }
    }

    /// The upstream gradients of the loss (`g_logp`, `g_entropy`; no `g_lse`).
    pub fn upstream(&self) -> Upstream<'_> {
        Upstream { g_logp: Some(&self.g_logp), g_entropy: Some(&self.g_entropy), g_lse: None }
    }
}

/// The smallest `s ≥ start` (stepping by one, modulo `n`) with `gcd(s, n) = 1`, so that
/// `k ↦ k·s mod n` is a permutation of `[0, n)`. Returned reduced modulo `n`.
fn coprime_stride(start: usize, n: usize) -> usize {
    fn gcd(mut a: usize, mut b: usize) -> usize {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    }
    (0..n).map(|i| (start + i) % n).find(|&s| gcd(s, n) == 1).unwrap_or(0)
}

/// Buffers for every output of the forward; `max`, `log_sum` and `entropy` are what the backward needs.
#[derive(Clone, Debug)]
pub struct FwdStats {
    /// `log Σ exp(x)` per row.
    pub lse: Vec<f32>,
    /// Entropy per row (nats).
    pub entropy: Vec<f32>,
    /// Target log-prob per row.
    pub logp: Vec<f32>,
    /// Row maximum of the tempered logits.
    pub max: Vec<f32>,
    /// `log Σ exp(z − max)` per row.
    pub log_sum: Vec<f32>,
}

impl FwdStats {
    /// Zeroed buffers for `rows` rows.
    pub fn zeros(rows: usize) -> FwdStats {
        let z = || vec![0.0; rows];
        FwdStats { lse: z(), entropy: z(), logp: z(), max: z(), log_sum: z() }
    }

    /// The buffers as the forward's output (all five outputs requested).
    pub fn out(&mut self) -> FwdOut<'_> {
        FwdOut {
            lse: &mut self.lse,
            entropy: &mut self.entropy,
            logp: Some(&mut self.logp),
            max: Some(&mut self.max),
            log_sum: Some(&mut self.log_sum),
        }
    }

    /// The saved statistics for the backward.
    pub fn saved(&self) -> Saved<'_> {
        Saved { max: &self.max, log_sum: &self.log_sum, entropy: &self.entropy }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_is_deterministic_and_in_range() {
        let a = Problem::generate(8, 1000, 7);
        let b = Problem::generate(8, 1000, 7);
        assert_eq!(a.logits, b.logits);
        assert_eq!(a.targets, b.targets);
        assert!(a.targets.iter().all(|&t| (0..1000).contains(&t)));
        assert!(a.logits.iter().all(|x| x.is_finite()));
        // The top token is near `top ∈ [5, 20)`; the tail is long but bounded.
        for (row, &max) in a.logits.chunks_exact(1000).zip(&a.row_max()) {
            assert!((4.0..21.0).contains(&max), "row max {max}");
            assert!(row.iter().all(|&x| x > max - 40.0));
        }
    }

    #[test]
    fn coprime_stride_gives_a_permutation() {
        for n in [1, 2, 12, 1000, 32768] {
            let s = coprime_stride(n / 2, n);
            let mut seen = vec![false; n];
            for k in 0..n {
                seen[(k * s) % n] = true;
            }
            assert!(seen.iter().all(|&x| x), "n = {n}, s = {s}");
        }
    }
}
