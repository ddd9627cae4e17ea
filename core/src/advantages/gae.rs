//! Generalised advantage estimation (`policy.md` §3.7).

use super::masked::{check_whiten_support, whiten_inplace};
use super::{check_bt, check_finite_masked, Compat};
use crate::error::{check_len, TmError};

/// The hyper-parameters of [`gae`].
///
/// `Default` is verl's (`algorithm.gamma = 1.0`, `algorithm.lam = 1.0` at `b178a3cd`) with the
/// library's padding convention ([`Compat::Library`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GaeCfg {
    /// The discount `γ` (finite, `≥ 0`).
    pub gamma: f32,
    /// The GAE `λ` (finite, `≥ 0`).
    pub lam: f32,
    /// Padding convention of the whitening (see [`super::reinforce_pp_advantage`]).
    pub compat: Compat,
}

impl Default for GaeCfg {
    fn default() -> Self {
        GaeCfg { gamma: 1.0, lam: 1.0, compat: Compat::Library }
    }
}

/// The outputs of [`gae`] (each `B·t` elements).
#[derive(Debug)]
pub struct GaeOut<'a> {
    /// The whitened advantages.
    pub adv: &'a mut [f32],
    /// The returns `A + V` (not whitened).
    pub ret: &'a mut [f32],
}

/// GAE \[code\] (verl `compute_gae_advantage_return`), per row of `[B, t]` token rewards `r`
/// and values `v`:
///
/// ```text
/// nextv = 0; lastgae = 0
/// for t = T−1 down to 0:
///     δ_t     = r_t + γ·nextv − V_t
///     g       = δ_t + γ·λ·lastgae
///     nextv   = mask[t] ? V_t : nextv        (masked positions are skipped, not zeroed)
///     lastgae = mask[t] ? g   : lastgae
///     A_t     = lastgae
/// ret = A + V;   adv = masked_whiten(A, mask)     (returns are not whitened)
/// ```
///
/// For a prefix mask this is `A_t = Σ_k (γλ)^k δ_{t+k}` over the valid tokens; across a
/// masked gap (multi-turn tool output) the next valid token's value and advantage carry over
/// the gap. The recurrence runs in `f64`; `ret` is written everywhere as verl does (at a
/// padding position `A_t + V_t`, with `A_t` carried from the next valid token, so a NaN
/// value in padding shows up there only). The whitening is over all valid tokens of the
/// batch with `eps = 1e-8`; `cfg.compat` as in [`super::reinforce_pp_advantage`]: the library
/// form writes 0 into padding, [`Compat::Verl`] writes verl's whitened values there and
/// raises for fewer than 2 valid tokens.
///
/// Errors: lengths; `gamma`/`lam` not finite or negative ([`TmError::InvalidArgument`]); a
/// non-finite reward or value at a valid position ([`TmError::NonFinite`]).
pub fn gae(r: &[f32], values: &[f32], mask: &[u8], t: usize, cfg: &GaeCfg, out: GaeOut<'_>) -> Result<(), TmError> {
    let GaeCfg { gamma, lam, compat } = *cfg;
    let GaeOut { adv, ret } = out;
    let rows = r.len().checked_div(t).unwrap_or(0);
    check_bt("r", rows, t, r.len())?;
    check_bt("values", rows, t, values.len())?;
    check_bt("mask", rows, t, mask.len())?;
    check_bt("adv", rows, t, adv.len())?;
    check_len("ret", adv.len(), ret.len())?;
    if !(gamma.is_finite() && gamma >= 0.0) {
        return Err(TmError::InvalidArgument("gamma must be finite and >= 0"));
    }
    if !(lam.is_finite() && lam >= 0.0) {
        return Err(TmError::InvalidArgument("lam must be finite and >= 0"));
    }
    check_finite_masked("r", r, mask)?;
    check_finite_masked("values", values, mask)?;
    check_whiten_support(mask, compat)?;
    if t == 0 {
        return Ok(());
    }
    let (gamma, lam) = (gamma as f64, lam as f64);
    let rows_of = r.chunks_exact(t).zip(values.chunks_exact(t)).zip(mask.chunks_exact(t));
    for (((r, v), mask), (adv, ret)) in rows_of.zip(adv.chunks_exact_mut(t).zip(ret.chunks_exact_mut(t))) {
        let (mut next_value, mut last_gae) = (0.0f64, 0.0f64);
        for k in (0..t).rev() {
            if mask[k] != 0 {
                let delta = r[k] as f64 + gamma * next_value - v[k] as f64;
                last_gae = delta + gamma * lam * last_gae;
                next_value = v[k] as f64;
            }
            adv[k] = last_gae as f32;
            ret[k] = (last_gae + v[k] as f64) as f32;
        }
    }
    whiten_inplace(adv, mask, 1e-8, compat)
}
