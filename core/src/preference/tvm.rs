//! TVM: token-level value labels from sampled paths, the value-head losses and step-level
//! beam selection (arXiv 2407.12863).
//!
//! What the paper documents: each token gets a value equal to the probability that the
//! final answer will be correct, estimated empirically from sampled reasoning paths; the
//! trained value model is used as a verifier (step-level beam search, best-of-N). The exact
//! estimator, loss and sampling constants are not published in a source we could check, so
//! **everything below is \[library choice\]**, the most direct reading of "empirical
//! probability of future correctness from sampled paths".
//!
//! # Prefix-trie value labels ([`tvm_prefix_value_labels`])
//!
//! For one problem: `N` sampled paths `y^(1..N)` with outcomes `c^(n) ∈ {0, 1}`:
//!
//! ```text
//! label(n, k) = Σ_{n'} 1[y^(n')_{1..k} = y^(n)_{1..k}]·c^(n')  /  Σ_{n'} 1[y^(n')_{1..k} = y^(n)_{1..k}]
//! ```
//!
//! i.e. every prefix is a node of a token trie holding `(visits, correct)`, and token `k`
//! of path `n` is labelled `correct/visits` at the node of `y^(n)_{1..k}`. Once a path's
//! prefix is unique its label is its own outcome; discount 1, reward only at the end.
//!
//! **Algorithm, without hash maps or allocation** \[derived\]: sort the path indices
//! lexicographically by token sequence (into caller scratch); the paths sharing a prefix of
//! length `k` are then a contiguous run, and runs refine as `k` grows. With
//! `lcp[i]` the common-prefix length of sorted paths `i − 1` and `i`: for `k ≤ lcp[i]` path
//! `i` sits in the same node as path `i − 1` (copy its label); for `k > lcp[i]` a new node
//! starts at `i` and extends right while `lcp ≥ k`: one pointer, moved right as `k`
//! decreases from the path's length to `lcp[i] + 1`, counts the node's visits and correct
//! outcomes. Every step is charged to a token or a trie node, so the cost is
//! `O(total_tokens + N log N · compare)`. The label is `correct/visits` rounded once to `f32`.
//!
//! # Value losses ([`value_loss`])
//!
//! The value head outputs a logit `x_t` per token; `p_t = σ(x_t)`. Over the `n` tokens with
//! `mask_t ≠ 0` (the token mean, as verl's `token-mean`):
//!
//! ```text
//! ValueLoss::Mse (default):  L = (1/n)·Σ (p_t − y_t)²              ∂L/∂x_t = (2/n)·(p_t − y_t)·p_t·(1 − p_t)
//! ValueLoss::Bce:            L = (1/n)·Σ softplus(x_t) − y_t·x_t    ∂L/∂x_t = (1/n)·(p_t − y_t)
//! ```
//!
//! (BCE with soft targets `y ∈ [0, 1]`, in the stable logits form; an empty mask gives
//! `L = 0` and a zero gradient; masked positions are not read and get gradient 0; NaN
//! propagates; computed in `f64`, rounded once).
//!
//! # Step-level beam selection ([`beam_step_select`])
//!
//! Keep `K` partial solutions, expand each with `b` sampled next steps (a step ends at a
//! newline), score each candidate by the value at its last token, and keep the top `K`.
//! This function is the selection: the indices of the `min(K, n)` best scores, best first,
//! ties by the lower candidate index, NaN ranked below every number (so a NaN score is
//! chosen only when there are not `K` others).

use super::{sigmoid, softplus};
use crate::error::{check_len, TmError};
use crate::platform::Exec;

/// Scratch elements ([`usize`]) that [`tvm_prefix_value_labels`] needs for `n_paths`
/// paths: `2·n_paths` (the sorted order and the common-prefix lengths).
pub const fn tvm_prefix_value_labels_scratch(n_paths: usize) -> usize {
    2 * n_paths
}

/// Prefix-trie value labels (see the [module docs](self)). Path `n` is
/// `tokens[offsets[n] .. offsets[n + 1]]` (`offsets`: `N + 1` non-decreasing entries, from
/// 0 to `tokens.len()`); `outcome[n]` is 0 or 1; `out` (one label per token, parallel to
/// `tokens`) receives `correct/visits` of each token's prefix node. `scratch` has
/// [`tvm_prefix_value_labels_scratch`]`(N)` elements.
pub fn tvm_prefix_value_labels(
    tokens: &[u32],
    offsets: &[usize],
    outcome: &[u8],
    scratch: &mut [usize],
    out: &mut [f32],
) -> Result<(), TmError> {
    let n = outcome.len();
    check_len("offsets", n + 1, offsets.len())?;
    check_len("out", tokens.len(), out.len())?;
    check_len("scratch", tvm_prefix_value_labels_scratch(n), scratch.len())?;
    if offsets[0] != 0 || offsets[n] != tokens.len() || offsets.windows(2).any(|w| w[0] > w[1]) {
        return Err(TmError::InvalidArgument("offsets must rise from 0 to tokens.len() (N + 1 entries)"));
    }
    if outcome.iter().any(|&c| c > 1) {
        return Err(TmError::InvalidArgument("outcome must be 0 or 1"));
    }
    let path = |p: usize| &tokens[offsets[p]..offsets[p + 1]];
    let (order, lcp) = scratch.split_at_mut(n);
    for (i, o) in order.iter_mut().enumerate() {
        *o = i;
    }
    // Lexicographic order of the token sequences (a proper prefix sorts first); the order
    // among identical paths does not matter: they share every node.
    order.sort_unstable_by(|&a, &b| path(a).cmp(path(b)).then(a.cmp(&b)));
    for i in 0..n {
        lcp[i] = if i == 0 {
            0
        } else {
            let (a, b) = (path(order[i - 1]), path(order[i]));
            a.iter().zip(b).take_while(|(x, y)| x == y).count()
        };
    }
    for i in 0..n {
        let p = order[i];
        let (start, len) = (offsets[p], offsets[p + 1] - offsets[p]);
        let shared = lcp[i].min(len);
        if shared > 0 {
            let q = offsets[order[i - 1]];
            out.copy_within(q..q + shared, start);
        }
        // New nodes at depths len, len − 1, …, shared + 1: their runs [i, end] widen as the
        // depth decreases.
        let (mut end, mut correct) = (i, outcome[p] as u64);
        for k in (shared + 1..=len).rev() {
            while end + 1 < n && lcp[end + 1] >= k {
                end += 1;
                correct += outcome[order[end]] as u64;
            }
            out[start + k - 1] = (correct as f64 / (end - i + 1) as f64) as f32;
        }
    }
    Ok(())
}

/// The value-head loss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ValueLoss {
    /// `(σ(x) − y)²` (default).
    #[default]
    Mse,
    /// Binary cross-entropy with soft targets, from logits.
    Bce,
}

/// The value loss over the masked tokens (token mean) and its gradient w.r.t. the logits
/// `pred_logit` (0 at masked positions). See the [module docs](self).
pub fn value_loss(
    exec: Exec,
    kind: ValueLoss,
    mask: &[u8],
    pred_logit: &[f32],
    label: &[f32],
    grad: &mut [f32],
) -> Result<f32, TmError> {
    exec.check_backend()?;
    let n = grad.len();
    check_len("mask", n, mask.len())?;
    check_len("pred_logit", n, pred_logit.len())?;
    check_len("label", n, label.len())?;
    let count = mask.iter().filter(|&&m| m != 0).count();
    let inv = if count == 0 { 0.0 } else { 1.0 / count as f64 };
    let mut total = 0.0f64;
    for i in 0..n {
        if mask[i] == 0 {
            grad[i] = 0.0;
            continue;
        }
        let (x, y) = (pred_logit[i] as f64, label[i] as f64);
        let p = sigmoid(x);
        let (l, g) = match kind {
            ValueLoss::Mse => ((p - y) * (p - y), 2.0 * (p - y) * p * (1.0 - p)),
            // softplus(x) − y·x = y·softplus(−x) + (1 − y)·softplus(x), a zero-weight term
            // skipped, so that x = ±inf with a matching hard label is 0, not inf − inf.
            ValueLoss::Bce => {
                let pos = if y != 0.0 { y * softplus(-x) } else { 0.0 };
                let neg = if y != 1.0 { (1.0 - y) * softplus(x) } else { 0.0 };
                (pos + neg, p - y)
            }
        };
        total += l;
        grad[i] = (g * inv) as f32;
    }
    Ok((total * inv) as f32)
}

/// `true` when candidate `(a, sa)` ranks before `(b, sb)`: higher score first, NaN last,
/// ties by the lower index.
fn ranks_before(a: usize, sa: f32, b: usize, sb: f32) -> bool {
    match (sa.is_nan(), sb.is_nan()) {
        (false, true) => true,
        (true, false) => false,
        (true, true) => a < b,
        (false, false) => sa > sb || (sa == sb && a < b),
    }
}

/// Writes the indices of the `m = min(k, scores.len())` best candidates into `out[..m]`,
/// best first (see the [module docs](self)), and returns `m`. `out` must hold at least `m`
/// elements; nothing is written on error.
pub fn beam_step_select(scores: &[f32], k: usize, out: &mut [usize]) -> Result<usize, TmError> {
    let m = k.min(scores.len());
    if out.len() < m {
        return Err(TmError::LengthMismatch { what: "out", expected: m, got: out.len() });
    }
    // Insertion into the sorted prefix: O(n·K), no allocation; K is a beam width.
    let mut filled = 0;
    for (i, &s) in scores.iter().enumerate() {
        let mut pos = filled;
        while pos > 0 && ranks_before(i, s, out[pos - 1], scores[out[pos - 1]]) {
            pos -= 1;
        }
        if pos >= m {
            continue;
        }
        let last = filled.min(m - 1);
        let mut j = last;
        while j > pos {
            out[j] = out[j - 1];
            j -= 1;
        }
        out[pos] = i;
        filled = (filled + 1).min(m);
    }
    Ok(m)
}
