//! Per-response values broadcast to `[B, T]`, and token rewards summed per response.

use super::check_bt;
use crate::error::TmError;

/// `out[b,t] = a_seq[b]` where `mask[b,t] ≠ 0`, else 0 (what verl and TRL do with an outcome
/// advantage, `A_seq.unsqueeze(-1) · mask`, except that a NaN `a_seq[b]` never leaks into
/// padding). `mask`/`out` are `[B, t]`, `B = a_seq.len()`.
pub fn broadcast_masked(a_seq: &[f32], mask: &[u8], t: usize, out: &mut [f32]) -> Result<(), TmError> {
    let rows = a_seq.len();
    check_bt("mask", rows, t, mask.len())?;
    check_bt("out", rows, t, out.len())?;
    if t == 0 {
        return Ok(());
    }
    for ((&a, mask), out) in a_seq.iter().zip(mask.chunks_exact(t)).zip(out.chunks_exact_mut(t)) {
        for (o, &m) in out.iter_mut().zip(mask) {
            *o = if m != 0 { a } else { 0.0 };
        }
    }
    Ok(())
}

/// `R_b = Σ_t token_rewards[b,t]` over the valid positions of row `b`, accumulated in `f64`
/// (verl sums every column; the library skips padding so that a NaN there cannot leak, which
/// is the same sum whenever padding rewards are 0). `token_rewards`/`mask` are `[B, t]`,
/// `B = out.len()`.
pub fn sequence_rewards(token_rewards: &[f32], mask: &[u8], t: usize, out: &mut [f32]) -> Result<(), TmError> {
    let rows = out.len();
    check_bt("token_rewards", rows, t, token_rewards.len())?;
    check_bt("mask", rows, t, mask.len())?;
    if t == 0 {
        out.fill(0.0);
        return Ok(());
    }
    for ((r, mask), out) in token_rewards.chunks_exact(t).zip(mask.chunks_exact(t)).zip(out.iter_mut()) {
        *out = r.iter().zip(mask).filter(|(_, &m)| m != 0).map(|(&v, _)| v as f64).sum::<f64>() as f32;
    }
    Ok(())
}
