//! DAPO reward extras (`policy.md` §4.3): overlong reward shaping and the dynamic-sampling
//! group filter.

use super::{check_bt, Groups};
use crate::error::{check_len, TmError};

/// Overlong reward shaping settings (verl `reward_manager/dapo.py`, `overlong_buffer`).
/// [`Default`] is the DAPO paper's setting \[paper\]: 16 384 expected tokens plus a 4 096-token
/// soft-punishment buffer (`max_len = 20 480`), penalty factor 1 (verl's default).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OverlongCfg {
    /// `L_max`, the maximum response length.
    pub max_len: usize,
    /// `L_buf`, the buffer length; must be in `1..=max_len`.
    pub buffer_len: usize,
    /// The penalty at `L_max`; must be finite and `≥ 0`.
    pub penalty_factor: f32,
}

impl Default for OverlongCfg {
    fn default() -> Self {
        OverlongCfg { max_len: 20_480, buffer_len: 4_096, penalty_factor: 1.0 }
    }
}

impl OverlongCfg {
    fn validate(&self) -> Result<(), TmError> {
        if self.buffer_len == 0 {
            return Err(TmError::InvalidArgument("overlong buffer_len must be > 0"));
        }
        // verl does not check this; a buffer longer than the response makes the "expected
        // length" negative, which is surely a configuration slip \[library choice\].
        if self.buffer_len > self.max_len {
            return Err(TmError::InvalidArgument("overlong buffer_len must be <= max_len"));
        }
        if !(self.penalty_factor.is_finite() && self.penalty_factor >= 0.0) {
            return Err(TmError::InvalidArgument("overlong penalty_factor must be finite and >= 0"));
        }
        Ok(())
    }

    /// `min(−(len − (L_max − L_buf))/L_buf · factor, 0)` in `f64` (verl evaluates it in
    /// Python floats).
    fn penalty(&self, len: usize) -> f64 {
        let exceed = len as f64 - (self.max_len - self.buffer_len) as f64;
        (-exceed / self.buffer_len as f64 * self.penalty_factor as f64).min(0.0)
    }
}

/// The overlong penalty of a response of `len` valid tokens \[code\]:
///
/// ```text
/// expected = L_max − L_buf,   exceed = len − expected
/// r_over   = min(−exceed/L_buf · factor, 0)
/// ```
///
/// 0 up to `L_max − L_buf`, falling linearly to `−factor` at `L_max`, and further beyond it
/// (no lower clamp, as verl). Errors: `buffer_len == 0`, `buffer_len > max_len`, a factor
/// that is negative or not finite ([`TmError::InvalidArgument`]).
pub fn overlong_penalty(len: usize, cfg: &OverlongCfg) -> Result<f32, TmError> {
    cfg.validate()?;
    Ok(cfg.penalty(len) as f32)
}

/// The `[B, t]` token-reward tensor of DAPO's reward manager \[code\]: row `b` is 0 except at
/// column `L_b − 1`, which holds `scores[b] + r_over(L_b)` (computed in `f64`, rounded once),
/// with `L_b = Σ_t mask[b,t]`. As in verl the column is `L_b − 1` even for a
/// non-contiguous mask. A row with `L_b = 0` stays all 0 \[library choice\] (verl would write
/// at index −1, the last column). Scores must be finite ([`TmError::NonFinite`]).
pub fn overlong_shaped_token_rewards(
    scores: &[f32],
    mask: &[u8],
    t: usize,
    cfg: &OverlongCfg,
    out: &mut [f32],
) -> Result<(), TmError> {
    cfg.validate()?;
    let rows = scores.len();
    check_bt("mask", rows, t, mask.len())?;
    check_bt("out", rows, t, out.len())?;
    if let Some(index) = scores.iter().position(|s| !s.is_finite()) {
        return Err(TmError::NonFinite { what: "scores", index });
    }
    out.fill(0.0);
    if t == 0 {
        return Ok(());
    }
    for ((&score, mask), out) in scores.iter().zip(mask.chunks_exact(t)).zip(out.chunks_exact_mut(t)) {
        let len = mask.iter().filter(|&&m| m != 0).count();
        if len > 0 {
            out[len - 1] = (score as f64 + cfg.penalty(len)) as f32;
        }
    }
    Ok(())
}

/// DAPO's dynamic-sampling filter \[code semantics, verl `docs/algo/dapo.md`\]: which groups
/// to keep because their metric (e.g. accuracy or the reward) is **not** identical across
/// members. Writes `keep[b] = 1` for every row of a kept group and 0 otherwise, and returns
/// the number of kept groups (the caller keeps sampling until enough survive).
///
/// "Identical" means bitwise equal after mapping `−0.0 → +0.0`, so any difference, however
/// small, keeps the group (verl: `np.std(metric) > 0`). Singleton groups are kept
/// \[library choice\]. A NaN metric is [`TmError::NonFinite`] (equality is meaningless);
/// `±inf` compares like any other value.
pub fn dynamic_sampling_keep(metric: &[f32], groups: Groups<'_>, keep: &mut [u8]) -> Result<usize, TmError> {
    let rows = metric.len();
    check_len("keep", rows, keep.len())?;
    groups.validate(rows)?;
    if let Some(index) = metric.iter().position(|v| v.is_nan()) {
        return Err(TmError::NonFinite { what: "metric", index });
    }
    // Adding +0.0 maps −0.0 to +0.0 and leaves every other value's bits unchanged.
    let canonical = |b: usize| (metric[b] + 0.0).to_bits();
    let mut kept = 0;
    for members in groups.iter(rows) {
        let mut rows_of = members.clone();
        let first = rows_of.next().map(canonical);
        let singleton = rows_of.clone().next().is_none();
        let keep_group = singleton || rows_of.any(|b| Some(canonical(b)) != first);
        kept += usize::from(keep_group);
        for b in members {
            keep[b] = u8::from(keep_group);
        }
    }
    Ok(kept)
}
