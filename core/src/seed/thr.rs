//! THR, token hidden reward (arXiv 2510.03669; spec `policy.md` §7.4.2)
//! \[library choice — best understanding\]: the exact formula is not published in a source we
//! could check (no official code was available).
//!
//! What is documented: THR decomposes the learning dynamics into per-token hidden rewards; it
//! (i) masks low-influence tokens, training only on tokens with a large enough THR, and (ii)
//! amplifies or weakens tokens by the sign of THR with a steering parameter `p` (`p > 0`
//! favours exploitation, greedy accuracy; `p < 0` exploration, Pass@K); the threshold follows
//! NTHR's influence heuristic; it is used with GRPO and GSPO-token. The library's choice:
//!
//! ```text
//! THR_{j,k'} = Â_j · Σ_{i∈P} w_i Σ_k ⟨g_{i,k}, g_{j,k'}⟩⟨h_{i,k}, h_{j,k'}⟩     all tokens of mixed groups
//! w_i        = 1 (Unit, default) | 1/|y_i| (InvLength)                            (the caller's src weights)
//! dominant   = |THR| > τ,   τ as in NTHR (β = 1; super::nthr::nthr_threshold)
//! OnlyDominant:   Â' = Â·1[dominant]
//! Steer { p }:    Â' = dominant ? Â·(1 + p·sign(THR)) : (NonDominant::Keep ? Â : 0)
//! ```
//!
//! Sign semantics: correct-response tokens aligned with other correct tokens have `THR > 0`
//! (exploitation); incorrect-response tokens aligned with correct ones have `THR < 0` (NTHR's
//! tokens). Defaults: `Steer { p: 0 }` (identical to GRPO), `NonDominant::Keep`,
//! `exclude_self = false`. Non-mixed groups keep `Â' = Â` (do not call these on them).

use super::nthr::{influence_scores, Features};
use crate::error::{check_len, TmError};
use crate::platform::Exec;

/// How dominant tokens are treated.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ThrMode {
    /// Train only on dominant tokens: `Â' = Â·1[|THR| > τ]`.
    OnlyDominantBestGuess,
    /// Steer dominant tokens by the sign of THR: `Â' = Â·(1 + p·sign(THR))`; `p` finite.
    SteerBestGuess {
        /// The steering parameter (`> 0` exploitation, `< 0` exploration).
        p: f32,
    },
}

/// What non-dominant tokens get under [`ThrMode::SteerBestGuess`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NonDominant {
    /// Keep `Â` (default).
    #[default]
    Keep,
    /// Zero it.
    Zero,
}

/// Options of [`thr_reweight`]. `Default`: `SteerBestGuess { p: 0 }` and `Keep` — GRPO.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ThrCfg {
    /// The mode.
    pub mode: ThrMode,
    /// Non-dominant tokens under steering.
    pub non_dominant: NonDominant,
}

impl Default for ThrCfg {
    fn default() -> Self {
        ThrCfg { mode: ThrMode::SteerBestGuess { p: 0.0 }, non_dominant: NonDominant::Keep }
    }
}

/// `thr[j] = adv[j]·(Σ_i w_i⟨g_i, g_j⟩⟨h_i, h_j⟩ − self_j)` for the query tokens `j` against
/// the correct responses' tokens `i` (module docs), rounded to `f32` once from the
/// [`influence_scores`] value. `self_src[j]` (when given) is the source row of query token
/// `j` itself, or `u32::MAX` if it is not a source: its own term is left out
/// (`exclude_self = true`).
///
/// Errors: as [`influence_scores`]; lengths of `adv`, `self_src`; a `self_src` entry out of
/// range ([`TmError::InvalidArgument`]); a non-finite advantage ([`TmError::NonFinite`]).
pub fn thr_scores(
    exec: Exec,
    src: &Features<'_>,
    src_weight: Option<&[f32]>,
    query: &Features<'_>,
    adv: &[f32],
    self_src: Option<&[u32]>,
    thr: &mut [f32],
) -> Result<(), TmError> {
    let nq = query.g.rows();
    check_len("adv", nq, adv.len())?;
    check_len("thr", nq, thr.len())?;
    if let Some(index) = adv.iter().position(|x| !x.is_finite()) {
        return Err(TmError::NonFinite { what: "adv", index });
    }
    if let Some(s) = self_src {
        check_len("self_src", nq, s.len())?;
        if s.iter().any(|&i| i != u32::MAX && i as usize >= src.g.rows()) {
            return Err(TmError::InvalidArgument("self_src names a row outside the sources"));
        }
    }
    influence_scores(exec, src, src_weight, query, thr)?;
    for (j, t) in thr.iter_mut().enumerate() {
        let mut s = *t as f64;
        if let Some(i) = self_src.map(|s| s[j]).filter(|&i| i != u32::MAX) {
            let i = i as usize;
            let w = src_weight.map_or(1.0, |w| w[i]) as f64;
            let dg = src.g.row(i).iter().zip(query.g.row(j)).fold(0.0f32, |a, (&x, &y)| a + x * y);
            let dh = src.h.row(i).iter().zip(query.h.row(j)).fold(0.0f32, |a, (&x, &y)| a + x * y);
            s -= w * (dg as f64 * dh as f64);
        }
        *t = (adv[j] as f64 * s) as f32;
    }
    Ok(())
}

/// In place: `adv[j] ← Â'_j` from `thr[j]` and `τ` (module docs). Returns the number of
/// dominant tokens.
///
/// Errors: lengths; [`TmError::InvalidArgument`] for `τ` NaN or `p` not finite;
/// [`TmError::NonFinite`] for a NaN THR. Nothing changes on error.
pub fn thr_reweight(exec: Exec, adv: &mut [f32], thr: &[f32], tau: f32, cfg: &ThrCfg) -> Result<usize, TmError> {
    exec.check_backend()?;
    check_len("thr", adv.len(), thr.len())?;
    if tau.is_nan() {
        return Err(TmError::InvalidArgument("THR tau must not be NaN"));
    }
    if let ThrMode::SteerBestGuess { p } = cfg.mode {
        if !p.is_finite() {
            return Err(TmError::InvalidArgument("THR steering p must be finite"));
        }
    }
    if let Some(index) = thr.iter().position(|x| x.is_nan()) {
        return Err(TmError::NonFinite { what: "thr", index });
    }
    let mut dominant = 0;
    for (a, &t) in adv.iter_mut().zip(thr) {
        let dom = t.abs() > tau;
        dominant += dom as usize;
        *a = match (cfg.mode, dom) {
            (ThrMode::OnlyDominantBestGuess, true) => *a,
            (ThrMode::OnlyDominantBestGuess, false) => 0.0,
            // sign(0) = 0: a zero THR is never dominant unless τ < 0.
            (ThrMode::SteerBestGuess { p }, true) => {
                let sign = if t > 0.0 {
                    1.0
                } else if t < 0.0 {
                    -1.0
                } else {
                    0.0
                };
                *a * (1.0 + p * sign)
            }
            (ThrMode::SteerBestGuess { .. }, false) => match cfg.non_dominant {
                NonDominant::Keep => *a,
                NonDominant::Zero => 0.0,
            },
        };
    }
    Ok(dominant)
}
