//! The embedded default batch: a deterministic, realistic batch of logits and targets
//! generated from a seed, so `tokenmath` with no arguments has something to chew on.
//!
//! Each row imitates a language-model output: a Zipf-like, peaked and long-tailed
//! distribution. Over a random permutation of the token ids, the token of rank `k` gets
//!
//! ```text
//! logit = offset − a·ln(k + 1) + 0.2·N(0, 1)      a ∈ [0.8, 1.6], offset ∈ [−4, 12] per row
//! ```
//!
//! Every [`MASK_EVERY`]-th row (starting at row [`MASK_FIRST`]) also has a random block of a
//! quarter of its vocabulary set to `−inf` (masked tokens). Rows are generated in `f32`,
//! rounded once to the requested dtype, and each row's target is sampled from the softmax
//! of the rounded row, so masked tokens are never targets.
//!
//! Every row has its own random stream derived from `(seed, row)`, so a smaller `--rows`
//! gives a prefix of the larger batch. The generator is a splitmix64 with Box–Muller
//! gaussians: no dependencies, and the same seed gives the same batch (the transcendental
//! functions come from the platform's math library, so the last bits may differ between
//! platforms).

use half::{bf16, f16};
use tokenmath_core::{DType, GradElem, LogitElem};
use tokenmath_reference::rng::SplitMix64;

use crate::error::CliError;

/// Rows of the default batch.
pub const DEFAULT_ROWS: usize = 64;
/// Vocabulary size of the default batch.
pub const DEFAULT_VOCAB: usize = 32768;
/// Seed of the default batch (as the command line spells it: ASCII "tokenmat").
pub const DEFAULT_SEED: &str = "0x746f6b656e6d6174";
/// Every this many rows, one row has a masked block of vocabulary.
pub const MASK_EVERY: usize = 16;
/// The first masked row.
pub const MASK_FIRST: usize = 5;

/// The logits of a batch, in one of the supported storage types.
pub enum Logits {
    /// IEEE binary32.
    F32(Vec<f32>),
    /// bfloat16.
    BF16(Vec<bf16>),
    /// IEEE binary16.
    F16(Vec<f16>),
}

/// A generated batch: `[rows, vocab]` logits, one target per row.
pub struct DefaultBatch {
    /// Row-major `[rows, vocab]` logits.
    pub logits: Logits,
    /// The target token of each row (always `>= 0`).
    pub targets: Vec<i32>,
    /// How many rows have a masked (`−inf`) block of vocabulary.
    pub masked_rows: usize,
}

/// Generates the `[rows, vocab]` batch for `seed`, stored as `dtype`.
///
/// Errors: a vocabulary that does not fit the `i32` targets, or a batch too large to allocate.
pub fn generate(rows: usize, vocab: usize, seed: u64, dtype: DType) -> Result<DefaultBatch, CliError> {
    crate::run::check_row_len(vocab)?;
    if i32::try_from(vocab).is_err() {
        return Err(CliError::Usage(format!("--vocab {vocab} is too large: targets are i32")));
    }
    let (logits, targets) = match dtype {
        DType::F32 => fill::<f32>(rows, vocab, seed).map(|(l, t)| (Logits::F32(l), t)),
        DType::BF16 => fill::<bf16>(rows, vocab, seed).map(|(l, t)| (Logits::BF16(l), t)),
        DType::F16 => fill::<f16>(rows, vocab, seed).map(|(l, t)| (Logits::F16(l), t)),
    }?;
    let masked_rows = if vocab / 4 > 0 { (0..rows).filter(|&r| is_masked(r)).count() } else { 0 };
    Ok(DefaultBatch { logits, targets, masked_rows })
}

fn is_masked(row: usize) -> bool {
    row % MASK_EVERY == MASK_FIRST
}

fn fill<T: LogitElem + GradElem>(rows: usize, vocab: usize, seed: u64) -> Result<(Vec<T>, Vec<i32>), CliError> {
    let too_big = || CliError::Usage(format!("a default batch of {rows} x {vocab} logits does not fit in memory"));
    let len = rows.checked_mul(vocab).ok_or_else(too_big)?;
    let mut logits: Vec<T> = Vec::new();
    logits.try_reserve_exact(len).map_err(|_| too_big())?;
    let mut targets = Vec::with_capacity(rows);
    let mut row_f32 = vec![0.0f32; vocab];
    let mut perm: Vec<u32> = Vec::with_capacity(vocab);
    for r in 0..rows {
        let mut rng = SplitMix64::for_row(seed, r);
        generate_row(&mut rng, is_masked(r), &mut perm, &mut row_f32);
        let start = logits.len();
        logits.extend(row_f32.iter().map(|&v| T::from_f32(v)));
        targets.push(sample_target(&mut rng, &logits[start..]));
    }
    Ok((logits, targets))
}

/// One row of `f32` logits (see the module docs).
fn generate_row(rng: &mut SplitMix64, masked: bool, perm: &mut Vec<u32>, row: &mut [f32]) {
    let vocab = row.len();
    let a = rng.range(0.8, 1.6);
    let offset = rng.range(-4.0, 12.0);
    perm.clear();
    perm.extend(0..vocab as u32);
    for i in (1..vocab).rev() {
        perm.swap(i, rng.below(i + 1));
    }
    for (rank, &token) in perm.iter().enumerate() {
        let logit = offset - a * ((rank + 1) as f64).ln() + 0.2 * rng.gaussian();
        row[token as usize] = logit as f32;
    }
    let block = vocab / 4;
    if masked && block > 0 {
        let start = rng.below(vocab - block + 1);
        row[start..start + block].fill(f32::NEG_INFINITY);
    }
}

/// A token drawn from the softmax of `row` (which has at least one finite logit).
fn sample_target<T: LogitElem>(rng: &mut SplitMix64, row: &[T]) -> i32 {
    let max = row.iter().map(|v| f64::from(v.to_f32())).fold(f64::NEG_INFINITY, f64::max);
    let weight = |v: &T| (f64::from(v.to_f32()) - max).exp();
    let total: f64 = row.iter().map(weight).sum();
    let mut left = rng.uniform() * total;
    let mut last_possible = 0;
    for (j, v) in row.iter().enumerate() {
        let w = weight(v);
        if w > 0.0 {
            last_possible = j;
        }
        left -= w;
        if left < 0.0 {
            return j as i32;
        }
    }
    // Rounding left a sliver of `total` unassigned: it belongs to the last token that can occur.
    last_possible as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_a_prefix_and_deterministic() {
        let (a, ta) = fill::<f32>(3, 500, 7).unwrap();
        let (b, tb) = fill::<f32>(6, 500, 7).unwrap();
        assert_eq!(a[..], b[..1500]);
        assert_eq!(ta[..], tb[..3]);
        let (c, _) = fill::<f32>(3, 500, 8).unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn masked_rows_have_a_block_and_targets_avoid_it() {
        let rows = MASK_FIRST + 1;
        let (l, t) = fill::<bf16>(rows, 1000, 3).unwrap();
        let masked = &l[MASK_FIRST * 1000..];
        assert_eq!(masked.iter().filter(|v| v.to_f32() == f32::NEG_INFINITY).count(), 250);
        assert!(masked[t[MASK_FIRST] as usize].to_f32().is_finite());
        assert!(l[..MASK_FIRST * 1000].iter().all(|v| v.to_f32().is_finite()));
        assert!(t.iter().all(|&x| (0..1000).contains(&x)));
    }
}
