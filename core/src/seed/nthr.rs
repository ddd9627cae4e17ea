//! NTHR, negative token hidden reward (arXiv 2505.18830; spec `policy.md` §7.4.1) \[paper\]:
//! down-weight the tokens of incorrect responses whose gradient would most lower the
//! likelihood of the correct ones.
//!
//! For a group with binary rewards, correct set `P`, incorrect set `N`, `p̂ = |P|/G`, and only
//! mixed groups (`0 < |P| < G`). Every response token `(i,k)` carries the final-layer hidden
//! state `h_{i,k} ∈ R^d` that produced it and the old policy's next-token distribution
//! `q_{i,k}`:
//!
//! ```text
//! g_{i,k}   = e_{y_{i,k}} − q_{i,k}                                    prediction error (R^V)
//! s⁻_{j,k'} = Σ_{i∈P} Σ_k ⟨g_{i,k}, g_{j,k'}⟩·⟨h_{i,k}, h_{j,k'}⟩        tokens of j ∈ N
//! s̄⁺_i      = (1/|y_i|)·Σ_k s⁺_{i,k}  (the same sum, for the tokens of i ∈ P)
//! τ         = β·min_{i∈P} s̄⁺_i,   β = 1
//! Â_{j,k'}  = s⁻_{j,k'} > τ ? η·Â_j : Â_j,   η = 2·|0.5 − p̂|             (incorrect responses only)
//! ```
//!
//! The modified advantages go into the unchanged clipped GRPO loss.
//!
//! Why a "hidden reward" \[derived\]: for a linear softmax head `z = W h`,
//! `∇_W log π(y|h) = (e_y − π)hᵀ`, so `⟨∇_W log π(y_a), ∇_W log π(y_b)⟩_F = ⟨g_a, g_b⟩·⟨h_a, h_b⟩`
//! (the test `influence_is_the_gradient_inner_product` checks it by finite differences): each
//! summand of `s⁻` is how much one SGD step on token `(j,k')` moves the log-likelihood of a
//! correct token.
//!
//! The pieces: [`prediction_error_restricted`] (the `g` rows), [`influence_scores`] (`s` for
//! a set of query tokens against a set of source tokens, optionally weighted — shared with
//! THR), [`nthr_threshold`] (`τ`), [`nthr_eta`] (`η`) and [`nthr_reweight`].
//!
//! \[library choice\] (the spec's practical options): `V` is restricted to `V*`, the token ids
//! sampled anywhere in the group, without renormalising `q` (the caller gathers `q` on
//! `V*`); the pairwise form `s_j = Σ_i w_i ⟨g_i, g_j⟩⟨h_i, h_j⟩` (no `V*×d` scratch; cost
//! `O(T_P·T_Q·(V* + d))`); dot products in `f32` in index order, the sum over source tokens
//! in `f64`, in source order; compute once per batch with the old policy and keep the masks
//! fixed across PPO epochs.

use crate::error::{check_len, TmError};
use crate::mat::{Mat, MatMut};
use crate::platform::Exec;

/// Per-token features of a set of tokens: `g` (`[n, V*]`, prediction errors) and `h`
/// (`[n, d]`, final-layer hidden states), one row per token.
#[derive(Clone, Copy, Debug)]
pub struct Features<'a> {
    /// Prediction errors `g = e_y − q` on `V*` (from [`prediction_error_restricted`]).
    pub g: Mat<'a, f32>,
    /// Hidden states `h`.
    pub h: Mat<'a, f32>,
}

impl Features<'_> {
    fn check(&self, what: &'static str) -> Result<usize, TmError> {
        if self.g.rows() != self.h.rows() {
            return Err(TmError::LengthMismatch { what, expected: self.g.rows(), got: self.h.rows() });
        }
        Ok(self.g.rows())
    }
}

/// `out[i, c] = 1[c = sampled_col[i]] − q[i, c]` over the `V*` columns: the prediction error
/// of token `i` restricted to the group's sampled ids (`sampled_col[i]` is the column of token
/// `i`'s own id in `V*`).
///
/// Errors: shapes ([`TmError::LengthMismatch`]); a column `≥ V*`
/// ([`TmError::TargetOutOfRange`]); a non-finite `q` ([`TmError::NonFinite`]). Nothing is
/// written on error.
pub fn prediction_error_restricted(
    exec: Exec,
    q: Mat<'_, f32>,
    sampled_col: &[u32],
    mut out: MatMut<'_, f32>,
) -> Result<(), TmError> {
    exec.check_backend()?;
    let (n, v) = (q.rows(), q.cols());
    check_len("sampled_col", n, sampled_col.len())?;
    check_len("out rows", n, out.rows())?;
    check_len("out cols", v, out.cols())?;
    for (row, &c) in sampled_col.iter().enumerate() {
        if c as usize >= v {
            return Err(TmError::TargetOutOfRange { row, target: c.min(i32::MAX as u32) as i32, vocab: v });
        }
        if let Some(i) = q.row(row).iter().position(|x| !x.is_finite()) {
            return Err(TmError::NonFinite { what: "q", index: row * q.row_stride() + i });
        }
    }
    for (i, &c) in sampled_col.iter().enumerate() {
        for (col, (o, &p)) in out.row_mut(i).iter_mut().zip(q.row(i)).enumerate() {
            *o = (col == c as usize) as u32 as f32 - p;
        }
    }
    Ok(())
}

/// `Σ_c a_c·b_c` in `f32`, in index order.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0.0f32, |s, (&x, &y)| s + x * y)
}

/// `out[j] = Σ_i w_i·⟨g_i, g_j⟩·⟨h_i, h_j⟩` for every query token `j` against every source
/// token `i` (`w_i = src_weight[i]`, or 1). NTHR: sources = the tokens of the correct
/// responses, queries = those of the incorrect ones (`s⁻`) or of the correct ones (for `s̄⁺`).
///
/// Errors: shapes ([`TmError::LengthMismatch`]: `g`/`h` rows, `V*` and `d` of sources and
/// queries, `src_weight`, `out`); a non-finite feature or weight ([`TmError::NonFinite`]).
/// Nothing is written on error.
pub fn influence_scores(
    exec: Exec,
    src: &Features<'_>,
    src_weight: Option<&[f32]>,
    query: &Features<'_>,
    out: &mut [f32],
) -> Result<(), TmError> {
    exec.check_backend()?;
    let ns = src.check("src h rows")?;
    let nq = query.check("query h rows")?;
    check_len("query g cols", src.g.cols(), query.g.cols())?;
    check_len("query h cols", src.h.cols(), query.h.cols())?;
    check_len("out", nq, out.len())?;
    if let Some(w) = src_weight {
        check_len("src_weight", ns, w.len())?;
        if let Some(index) = w.iter().position(|x| !x.is_finite()) {
            return Err(TmError::NonFinite { what: "src_weight", index });
        }
    }
    for (what, m) in [("src g", src.g), ("src h", src.h), ("query g", query.g), ("query h", query.h)] {
        for r in 0..m.rows() {
            if let Some(i) = m.row(r).iter().position(|x| !x.is_finite()) {
                return Err(TmError::NonFinite { what, index: r * m.row_stride() + i });
            }
        }
    }
    for (j, o) in out.iter_mut().enumerate() {
        let (gj, hj) = (query.g.row(j), query.h.row(j));
        let mut s = 0.0f64;
        for i in 0..ns {
            let w = src_weight.map_or(1.0, |w| w[i]);
            s += w as f64 * (dot(src.g.row(i), gj) as f64 * dot(src.h.row(i), hj) as f64);
        }
        *o = s as f32;
    }
    Ok(())
}

/// `τ = β·min_i s̄⁺_i` with `s̄⁺_i = (1/|y_i|)·Σ_k s⁺_{i,k}`: `pos_scores` holds the scores of
/// the correct responses' tokens, response after response, `pos_lens[i] = |y_i|` (summing to
/// `pos_scores.len()`). A response of length 0 has no mean and is skipped \[library choice\].
///
/// Errors: [`TmError::LengthMismatch`] (lengths do not sum up); [`TmError::InvalidArgument`]
/// (no non-empty correct response, `β` not finite); [`TmError::NonFinite`] (a score).
pub fn nthr_threshold(pos_scores: &[f32], pos_lens: &[usize], beta: f32) -> Result<f32, TmError> {
    if !beta.is_finite() {
        return Err(TmError::InvalidArgument("NTHR beta must be finite"));
    }
    let total =
        pos_lens.iter().try_fold(0usize, |a, &l| a.checked_add(l)).ok_or(TmError::SizeOverflow { what: "pos_lens" })?;
    check_len("pos_scores", total, pos_scores.len())?;
    if let Some(index) = pos_scores.iter().position(|x| !x.is_finite()) {
        return Err(TmError::NonFinite { what: "pos_scores", index });
    }
    let (mut start, mut best) = (0usize, f64::INFINITY);
    for &len in pos_lens {
        if len > 0 {
            let mean = pos_scores[start..start + len].iter().map(|&s| s as f64).sum::<f64>() / len as f64;
            best = best.min(mean);
        }
        start += len;
    }
    if best == f64::INFINITY {
        return Err(TmError::InvalidArgument("NTHR needs at least one non-empty correct response"));
    }
    Ok((beta as f64 * best) as f32)
}

/// `η = 2·|0.5 − p̂|` with `p̂ = correct/group`, the down-weighting factor of a mixed group.
///
/// Errors: [`TmError::InvalidArgument`] unless `0 < correct < group` (a mixed group).
pub fn nthr_eta(correct: usize, group: usize) -> Result<f32, TmError> {
    if correct == 0 || correct >= group {
        return Err(TmError::InvalidArgument("NTHR applies to mixed groups only (0 < correct < group)"));
    }
    let p = correct as f64 / group as f64;
    Ok((2.0 * (0.5 - p).abs()) as f32)
}

/// In place: `adv[j] ← η·adv[j]` where `valid[j] ≠ 0` and `neg_scores[j] > τ` (the tokens of
/// the incorrect responses of one mixed group); elsewhere unchanged. Returns how many were
/// down-weighted.
///
/// Errors: lengths; [`TmError::InvalidArgument`] for `τ` NaN or `η` not finite;
/// [`TmError::NonFinite`] for a NaN score at a valid token. Nothing changes on error.
pub fn nthr_reweight(
    exec: Exec,
    adv: &mut [f32],
    neg_scores: &[f32],
    valid: &[u8],
    tau: f32,
    eta: f32,
) -> Result<usize, TmError> {
    exec.check_backend()?;
    check_len("neg_scores", adv.len(), neg_scores.len())?;
    check_len("valid", adv.len(), valid.len())?;
    if tau.is_nan() || !eta.is_finite() {
        return Err(TmError::InvalidArgument("NTHR tau must not be NaN and eta must be finite"));
    }
    if let Some(index) = neg_scores.iter().zip(valid).position(|(s, &m)| m != 0 && s.is_nan()) {
        return Err(TmError::NonFinite { what: "neg_scores", index });
    }
    let mut hit = 0;
    for ((a, &s), &m) in adv.iter_mut().zip(neg_scores).zip(valid) {
        if m != 0 && s > tau {
            *a *= eta;
            hit += 1;
        }
    }
    Ok(hit)
}
