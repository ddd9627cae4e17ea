//! One round of ToMe's bipartite soft matching as QuoTA uses it (v4/v5 of `token_compress`;
//! `core/merge.py::bipartite_soft_matching` and `merge_wavg`, after Bolya et al., ToMe,
//! arXiv 2210.09461).
//!
//! ```text
//! r = min(r_requested, floor(t/2));  r = 0 returns the tokens unchanged (the source's early return)
//! normalise the tokens to unit L2 norm (for the matching only)
//! A = tokens at even positions, B = tokens at odd positions
//! score[a, b] = ⟨A_a, B_b⟩;  best(a) = argmax_b score;  node_max(a) = max_b score
//! order A by node_max descending; the first r are merged into their best B
//! merged B token = mean of itself and the A tokens merged into it
//!     (QuoTA calls merge_wavg without sizes, so every round starts from size 1: plain means)
//! output = [unmerged A in DESCENDING node_max order] ++ [all B in original order]     (t − r tokens)
//! ```
//!
//! \[library choice\]s where PyTorch leaves it open: the sort is stable (ties by A index);
//! `argmax` takes the lowest B index on ties; a zero-norm token matches with score 0 (the
//! source divides by 0 and gets NaN); scores and means are computed in `f64` (a B token's
//! mean adds itself, then its A tokens in A-index order) and rounded once. Inputs must be
//! finite.
//!
//! Cost `O(t²·dim/4)` for the scores plus `O(t²)` for the sort (an insertion sort, no
//! allocation); `t` is at most 729 in QuoTA.

use crate::TmError;

/// Scratch sizes of [`tome_bipartite_round`] for `t` tokens: `(f64 elements, u32 elements)`
/// = `(t + ceil(t/2), 2·ceil(t/2) + floor(t/2))`.
pub fn tome_scratch_len(t: usize) -> (usize, usize) {
    let (na, nb) = (t.div_ceil(2), t / 2);
    (t + na, 2 * na + nb)
}

/// One bipartite merging round of `t` tokens of `dim` features (`x`, row-major) merging
/// `r` pairs (capped at `floor(t/2)`), written to `out` (its first `(t − r)·dim` elements;
/// `out` holds at least that many). Returns the new token count `t − r`.
///
/// `scratch_f` and `scratch_u` hold at least [`tome_scratch_len`]`(t)` elements. On error
/// nothing is written.
pub fn tome_bipartite_round(
    x: &[f32],
    t: usize,
    dim: usize,
    r: usize,
    scratch_f: &mut [f64],
    scratch_u: &mut [u32],
    out: &mut [f32],
) -> Result<usize, TmError> {
    let n = t.checked_mul(dim).ok_or(TmError::SizeOverflow { what: "x" })?;
    crate::error::check_len("x", n, x.len())?;
    if t > u32::MAX as usize {
        return Err(TmError::InvalidArgument("ToMe token count must fit in u32"));
    }
    if let Some(index) = x.iter().position(|v| !v.is_finite()) {
        return Err(TmError::NonFinite { what: "x", index });
    }
    let r = r.min(t / 2);
    let kept = (t - r) * dim;
    if out.len() < kept {
        return Err(TmError::LengthMismatch { what: "out", expected: kept, got: out.len() });
    }
    if r == 0 {
        out[..n].copy_from_slice(x);
        return Ok(t);
    }
    let (na, nb) = (t.div_ceil(2), t / 2);
    let (lf, lu) = tome_scratch_len(t);
    if scratch_f.len() < lf {
        return Err(TmError::LengthMismatch { what: "scratch_f", expected: lf, got: scratch_f.len() });
    }
    if scratch_u.len() < lu {
        return Err(TmError::LengthMismatch { what: "scratch_u", expected: lu, got: scratch_u.len() });
    }
    let tok = |i: usize| &x[i * dim..(i + 1) * dim];
    let (inv_norm, node_max) = scratch_f[..lf].split_at_mut(t);
    let (best, rest) = scratch_u[..lu].split_at_mut(na);
    let (order, merged_into) = rest.split_at_mut(na);
    for (i, v) in inv_norm.iter_mut().enumerate() {
        let ss: f64 = tok(i).iter().map(|&a| a as f64 * a as f64).sum();
        *v = if ss > 0.0 { 1.0 / libm::sqrt(ss) } else { 0.0 };
    }
    for a in 0..na {
        let (ia, mut bmax, mut bidx) = (2 * a, f64::NEG_INFINITY, 0u32);
        for b in 0..nb {
            let ib = 2 * b + 1;
            let dot: f64 = tok(ia).iter().zip(tok(ib)).map(|(&p, &q)| p as f64 * q as f64).sum();
            let s = dot * inv_norm[ia] * inv_norm[ib];
            if s > bmax {
                bmax = s;
                bidx = b as u32;
            }
        }
        node_max[a] = bmax;
        best[a] = bidx;
        order[a] = a as u32;
    }
    // Stable insertion sort of A by node_max descending.
    for i in 1..na {
        let cur = order[i];
        let mut j = i;
        while j > 0 && node_max[order[j - 1] as usize] < node_max[cur as usize] {
            order[j] = order[j - 1];
            j -= 1;
        }
        order[j] = cur;
    }
    // Unmerged A tokens, in descending node_max order; mark them in `best`.
    for (k, &a) in order[r..].iter().enumerate() {
        out[k * dim..(k + 1) * dim].copy_from_slice(tok(2 * a as usize));
        best[a as usize] = u32::MAX;
    }
    // Each B token's merged A tokens as a list in A-index order: head[b] = first a + 1
    // (0 = none), next[a] = following a + 1 (`order` is free now).
    let (head, next) = (merged_into, order);
    head.fill(0);
    for a in (0..na).rev() {
        if best[a] != u32::MAX {
            let b = best[a] as usize;
            next[a] = head[b];
            head[b] = a as u32 + 1;
        }
    }
    // B tokens in original order; a merged one is the mean of itself and its A tokens,
    // added in A-index order.
    let base = na - r;
    for b in 0..nb {
        let dst = &mut out[(base + b) * dim..(base + b + 1) * dim];
        dst.copy_from_slice(tok(2 * b + 1));
        if head[b] == 0 {
            continue;
        }
        for (k, d) in dst.iter_mut().enumerate() {
            let (mut s, mut cnt) = (*d as f64, 1.0f64);
            let mut a = head[b];
            while a != 0 {
                s += tok(2 * (a as usize - 1))[k] as f64;
                cnt += 1.0;
                a = next[a as usize - 1];
            }
            *d = (s / cnt) as f32;
        }
    }
    Ok(t - r)
}
