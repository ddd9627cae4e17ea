//! Discounted returns-to-go with EOS reset (`policy.md` §3.4).

use super::{check_bt, check_finite_masked};
use crate::error::TmError;

/// Returns-to-go `G[b,t]` of token rewards `r[b,t]` (`[B, T]` row-major, `t` columns),
/// exactly verl's `compute_reinforce_plus_plus_outcome_advantage` recurrence \[code\]:
///
/// ```text
/// carry = 0
/// for t = T−1 down to 0:
///     G_t   = r_t + γ·carry
///     carry = mask[t] ? G_t : 0        (nothing propagates backward across a masked position)
/// ```
///
/// For a prefix mask of length `L`, `G_t = Σ_{k=t}^{L−1} γ^{k−t} r_k`; with a non-contiguous
/// mask (tool tokens masked out of a multi-turn response) returns do not flow across the gap.
/// `G` itself is **not** masked (verl): a padding position gets `r_t + γ·carry`, which is
/// 0 after EOS when the padding rewards are 0. `carry` is kept in `f64`.
///
/// Errors: lengths; `gamma` not finite or negative ([`TmError::InvalidArgument`]); a
/// non-finite reward at a valid position ([`TmError::NonFinite`]; padding rewards are
/// only read into their own output).
pub fn returns_to_go(r: &[f32], mask: &[u8], t: usize, gamma: f32, out: &mut [f32]) -> Result<(), TmError> {
    check_returns_args(r, mask, t, gamma, out)?;
    if t == 0 {
        return Ok(());
    }
    let gamma = gamma as f64;
    for ((r, mask), out) in r.chunks_exact(t).zip(mask.chunks_exact(t)).zip(out.chunks_exact_mut(t)) {
        let mut carry = 0.0f64;
        for k in (0..t).rev() {
            let g = r[k] as f64 + gamma * carry;
            out[k] = g as f32;
            carry = if mask[k] != 0 { g } else { 0.0 };
        }
    }
    Ok(())
}

pub(crate) fn check_returns_args(r: &[f32], mask: &[u8], t: usize, gamma: f32, out: &[f32]) -> Result<(), TmError> {
    // T = 0 has no rows to speak of: every buffer must then be empty.
    let rows = r.len().checked_div(t).unwrap_or(0);
    check_bt("r", rows, t, r.len())?;
    check_bt("mask", rows, t, mask.len())?;
    check_bt("out", rows, t, out.len())?;
    if !(gamma.is_finite() && gamma >= 0.0) {
        return Err(TmError::InvalidArgument("gamma must be finite and >= 0"));
    }
    check_finite_masked("r", r, mask)
}
