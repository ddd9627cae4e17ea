//! GRPO-N / GSPO-N: GRPO (GSPO) keeping only the negative-advantage part
//! \[library choice — best understanding\] (arXiv 2510.04028; spec `policy.md` §7.5).
//!
//! The exact loss is not published in a source we could check; the method is described as
//! using only the relative negative gradients, i.e. removing the positive-gradient component
//! of GRPO/GSPO (reviewers describe it as effectively NSR). The library's choice:
//!
//! ```text
//! A_b  = the GRPO advantage (crate::advantages::grpo_advantage);   A^N_b = min(A_b, 0)
//! NegMode::ZeroPositives (default): positive rows stay in the batch and in every normaliser, with A = 0
//! NegMode::DropPositives:           rows with A_b > 0 get mask = 0 (they leave the normalisers), as NSR's subsetting
//! ```
//!
//! Zero-advantage rows are not positive and are kept in both modes. GSPO-N feeds the same
//! advantages to [`crate::policy_loss::gspo_loss`]; GRPO-N to the clipped PPO loss.

use crate::error::{check_len, TmError};
use crate::platform::Exec;
use crate::policy_loss::BatchShape;

/// What happens to the rows with a positive advantage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NegMode {
    /// Advantage 0, the row stays in every normaliser (default).
    #[default]
    ZeroPositives,
    /// The row's mask is cleared: it leaves the normalisers (as NSR's subsetting).
    DropPositives,
}

/// `adv_seq[b] ← min(adv_seq[b], 0)` in place, and under [`NegMode::DropPositives`]
/// `mask[b, ·] ← 0` for the rows whose advantage was `> 0` (`mask` is `[B,T]`, `adv_seq` `[B]`).
/// Returns the number of positive rows.
///
/// Errors: lengths; [`TmError::NonFinite`] for a NaN/`±inf` advantage. Nothing is changed
/// on error.
pub fn grpo_negative_only(
    exec: Exec,
    shape: BatchShape,
    mask: &mut [u8],
    adv_seq: &mut [f32],
    mode: NegMode,
) -> Result<usize, TmError> {
    exec.check_backend()?;
    check_len("mask", shape.numel()?, mask.len())?;
    check_len("adv_seq", shape.rows, adv_seq.len())?;
    if let Some(index) = adv_seq.iter().position(|v| !v.is_finite()) {
        return Err(TmError::NonFinite { what: "adv_seq", index });
    }
    let mut positives = 0;
    for (b, a) in adv_seq.iter_mut().enumerate() {
        if *a > 0.0 {
            positives += 1;
            *a = 0.0;
            if mode == NegMode::DropPositives {
                mask[b * shape.cols..(b + 1) * shape.cols].fill(0);
            }
        }
    }
    Ok(positives)
}
