//! D³S, dynamic dual-level down-sampling (arXiv 2509.22115; spec `policy.md` §7.2): keep the
//! samples whose advantages have the largest variance, then, among their tokens, those with
//! the largest `|A|·H`, both budgets relaxed over training.
//!
//! The equations are the paper's \[paper\]; its official code was released only as
//! supplementary material and was not available to us. The max-variance subset is PODS's
//! (arXiv 2504.13818, Lemma 3.1) \[derived\].
//!
//! # Sample level \[paper\]
//! 1. GRPO advantages `A_b` with all `G` rollouts (`crate::advantages::grpo_advantage`; the
//!    spec's default flavor is verl's loop).
//! 2. Optionally within each group `g`: `Ŝ_g = argmax_{S ⊆ I_g, |S| = n_g} Var(A_S)`.
//! 3. Across the batch: `Ŝ = argmax_{S ⊆ ∪_g Ŝ_g, |S| = N} Var(A_S)` (the union is the whole
//!    batch when step 2 is off) — [`d3s_select_samples`].
//! 4. Advantages are **not** re-normalised after selection.
//!
//! # The exact max-variance subset in `O(n log n)` \[derived\] — [`max_variance_subset`]
//! Some size-`m` subset of maximum (population) variance consists of the `k` largest and the
//! `m − k` smallest values for some `k ∈ [0, m]` (PODS Lemma 3.1), so after one sort the
//! `m + 1` candidates are scored with prefix sums:
//! ```text
//! sort (x_i, i) ascending by value then index → a_(1) ≤ … ≤ a_(n)
//! P1[j] = Σ_{i≤j} (a_(i) − c),  P2[j] = Σ_{i≤j} (a_(i) − c)²      (f64; c = mean of all x)
//! k = 0..m:  S = P1[m−k] + (P1[n] − P1[n−k]),  Q = P2[m−k] + (P2[n] − P2[n−k])
//!            var_k = Q/m − (S/m)²
//! k* = the smallest k with the largest var_k (exact f64 comparison)     [library choice for ties]
//! keep a_(1..m−k*) and a_(n−k*+1..n)
//! ```
//! Shifting by `c` changes no variance; it only keeps `Q/m − (S/m)²` from cancelling when
//! `|mean| ≫ std` \[library choice\]. `m ≥ n` keeps all, `m = 0` none; `m = 1` keeps the
//! smallest value (every `k` ties at 0). The test `max_variance_matches_brute_force` checks
//! the variance of the chosen subset against every subset for `n ≤ 12`.
//!
//! # Token level \[paper\] — [`d3s_token_mask`]
//! Among the valid tokens of the selected samples, pooled over samples, keep the top `K`
//! fraction by `key = |A[b,t]|·H[b,t]`. \[library choice\]: `count = ⌈K·n_valid⌉`; `key` is the
//! `f32` product; ties are broken by (key descending, flat index ascending), so exactly
//! `count` tokens are kept; the produced mask replaces the response mask in the aggregation
//! (so the normaliser counts kept tokens — pass the selected rows' mask instead to normalise
//! over all their valid tokens); entropies from the old policy (the rollout or scoring pass).
//! The selection is an exact radix select (module `radix`, the one-rank `Wide` digits of
//! 11, 11 and 10 bits and the guess of the first round's bin from the first sixteenth of
//! the rows, as in `entropy_mask`'s "One rank"): the first counting pass also validates and
//! counts the tokens; once at most 1024 candidates are left, the writing pass writes every
//! token above or below them and collects them with their index on the stack (16 KiB), and
//! they are decided after it (sorted; ties by index as above). Usually one counting pass
//! (plus a sixteenth) and the writing pass; at most three and one. No sort of the tokens,
//! no scratch (about 120 KiB of stack).
//!
//! # Schedule \[paper\] — [`d3s_schedule`]
//! With training progress `p = step/total ∈ [0, 1]`:
//! `[N(p), K(p)] = (1 − p)·[N_init, K_init] + p·[N_final, K_final]`, aggressive early and
//! relaxed late. The paper's values are not published in a source we could check; the
//! library's \[library choice\]: `N` a fraction of the batch, `N_init = 0.5`, `N_final = 1`,
//! `K_init = 0.2`, `K_final = 1` ([`D3sSchedule::default`]),
//! `N = clamp(round_half_away(N(p)·B), 1, B)`, and the within-group stage off.
//!
//! # Edge cases
//! Non-finite advantages (or, for the token mask, entropies) of a row or token that takes
//! part are [`TmError::NonFinite`]; padding and unselected rows are never read. Every check
//! runs before any output is written.

use super::radix::{key, Wide, WideHist, WideRound, BLOCK, WIDE_FLUSH};
use core::ops::Range;

/// Batches from this many tokens guess the first round's bin (module docs).
const SPEC_MIN: usize = 1 << 16;
use crate::advantages::Groups;
use crate::error::{check_len, TmError};
use crate::platform::{isa_dispatch, Exec};
use crate::policy_loss::BatchShape;

/// Scratch lengths of [`max_variance_subset`] and [`d3s_select_samples`] for `n` values:
/// `(order: u32, values: f32, prefix: f64)`.
pub fn d3s_scratch_len(n: usize) -> Result<(usize, usize, usize), TmError> {
    let p = n.checked_add(1).and_then(|v| v.checked_mul(2)).ok_or(TmError::SizeOverflow { what: "prefix" })?;
    Ok((n, n, p))
}

/// Caller-owned scratch of the sample-level selection (lengths from [`d3s_scratch_len`]; longer
/// slices are fine).
#[derive(Debug)]
pub struct D3sScratch<'a> {
    /// Sort order, `n` elements.
    pub order: &'a mut [u32],
    /// Gathered values, `n` elements ([`d3s_select_samples`] only).
    pub values: &'a mut [f32],
    /// Prefix sums, `2(n + 1)` elements.
    pub prefix: &'a mut [f64],
}

fn check_scratch(order: usize, prefix: usize, n: usize) -> Result<(), TmError> {
    let (o, _, p) = d3s_scratch_len(n)?;
    if order < o || prefix < p {
        return Err(TmError::InvalidArgument("D3S scratch is shorter than d3s_scratch_len"));
    }
    if n > u32::MAX as usize {
        return Err(TmError::InvalidArgument("D3S selects among at most 2^32 - 1 values"));
    }
    Ok(())
}

/// The core of [`max_variance_subset`] on finite `x` (checked by the callers): sorts
/// `order[..n]` and returns `k*`, so that the chosen indices are `order[..m − k*]` and
/// `order[n − k*..n]` (all of `x` when `m ≥ n`: then `order` is the identity).
fn mvs(x: &[f32], m: usize, order: &mut [u32], prefix: &mut [f64]) -> usize {
    let n = x.len();
    let order = &mut order[..n];
    for (i, o) in order.iter_mut().enumerate() {
        *o = i as u32;
    }
    if m >= n || m == 0 {
        return 0;
    }
    // Finite values: `partial_cmp` is total; −0.0 and +0.0 tie and fall back to the index.
    order.sort_unstable_by(|&a, &b| {
        let (va, vb) = (x[a as usize], x[b as usize]);
        va.partial_cmp(&vb).unwrap_or(core::cmp::Ordering::Equal).then(a.cmp(&b))
    });
    let c = x.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
    let (p1, p2) = prefix[..2 * (n + 1)].split_at_mut(n + 1);
    p1[0] = 0.0;
    p2[0] = 0.0;
    for (j, &o) in order.iter().enumerate() {
        let d = x[o as usize] as f64 - c;
        p1[j + 1] = p1[j] + d;
        p2[j + 1] = p2[j] + d * d;
    }
    let mf = m as f64;
    let (mut best_k, mut best) = (0usize, f64::NEG_INFINITY);
    for k in 0..=m {
        let s = p1[m - k] + (p1[n] - p1[n - k]);
        let q = p2[m - k] + (p2[n] - p2[n - k]);
        let var = q / mf - (s / mf) * (s / mf);
        if var > best {
            best = var;
            best_k = k;
        }
    }
    best_k
}

/// Calls `pick(i)` for every index [`mvs`] chose (none when `m = 0`).
fn for_each_chosen(n: usize, m: usize, k: usize, order: &[u32], mut pick: impl FnMut(usize)) {
    if m >= n {
        (0..n).for_each(pick);
    } else if m > 0 {
        order[..m - k].iter().chain(&order[n - k..n]).for_each(|&o| pick(o as usize));
    }
}

/// The exact max-variance subset of size `m` of `x` (module docs): `keep[i] = 1` for the
/// chosen indices, 0 elsewhere (`min(m, n)` ones).
///
/// Errors: [`TmError::LengthMismatch`] (`keep`); [`TmError::NonFinite`] (a NaN/`±inf` in
/// `x`); [`TmError::InvalidArgument`] (scratch shorter than [`d3s_scratch_len`], `n ≥ 2^32`).
/// `keep` is written only on success.
pub fn max_variance_subset(
    x: &[f32],
    m: usize,
    order: &mut [u32],
    prefix: &mut [f64],
    keep: &mut [u8],
) -> Result<(), TmError> {
    let n = x.len();
    check_len("keep", n, keep.len())?;
    check_scratch(order.len(), prefix.len(), n)?;
    if let Some(index) = x.iter().position(|v| !v.is_finite()) {
        return Err(TmError::NonFinite { what: "x", index });
    }
    let k = mvs(x, m, order, prefix);
    keep.fill(0);
    for_each_chosen(n, m, k, order, |i| keep[i] = 1);
    Ok(())
}

/// Runs [`mvs`] on `values[..len]` and overwrites them with the choice: `1.0` chosen, `0.0`
/// not (the values are not needed afterwards).
fn choose_in_place(values: &mut [f32], len: usize, m: usize, order: &mut [u32], prefix: &mut [f64]) {
    let k = mvs(&values[..len], m, order, prefix);
    values[..len].fill(0.0);
    for_each_chosen(len, m, k, order, |i| values[i] = 1.0);
}

/// Sample-level selection (module docs, steps 2–3): `keep_rows[b] = 1` for the `N = n_keep`
/// responses of the max-variance subset of `adv_seq` (after the per-group stage when
/// `per_group = Some(n_g)`; `groups` is read only then), 0 elsewhere. Groups are visited in
/// order of their first row, their members in ascending row order.
///
/// Errors: lengths; the grouping ([`TmError::InvalidArgument`]); a non-finite advantage
/// ([`TmError::NonFinite`]); scratch too short. `keep_rows` is written only on success.
pub fn d3s_select_samples(
    adv_seq: &[f32],
    groups: Groups<'_>,
    per_group: Option<usize>,
    n_keep: usize,
    scratch: D3sScratch<'_>,
    keep_rows: &mut [u8],
) -> Result<(), TmError> {
    let rows = adv_seq.len();
    check_len("keep_rows", rows, keep_rows.len())?;
    if per_group.is_some() {
        groups.validate(rows)?;
    }
    check_scratch(scratch.order.len().min(scratch.values.len()), scratch.prefix.len(), rows)?;
    if let Some(index) = adv_seq.iter().position(|v| !v.is_finite()) {
        return Err(TmError::NonFinite { what: "adv_seq", index });
    }
    let D3sScratch { order, values, prefix } = scratch;
    match per_group {
        None => keep_rows.fill(1),
        Some(n_g) => {
            for members in groups.iter(rows) {
                let mut len = 0;
                for b in members.clone() {
                    values[len] = adv_seq[b];
                    len += 1;
                }
                choose_in_place(values, len, n_g, order, prefix);
                for (i, b) in members.enumerate() {
                    keep_rows[b] = (values[i] == 1.0) as u8;
                }
            }
        }
    }
    // Across the batch, among the candidates left in `keep_rows`.
    let mut len = 0;
    for (b, &k) in keep_rows.iter().enumerate() {
        if k != 0 {
            values[len] = adv_seq[b];
            len += 1;
        }
    }
    choose_in_place(values, len, n_keep, order, prefix);
    let mut i = 0;
    for k in keep_rows.iter_mut() {
        if *k != 0 {
            *k = (values[i] == 1.0) as u8;
            i += 1;
        }
    }
    Ok(())
}

/// The D³S schedule (module docs). `Default` is the library's choice (the paper's values are
/// unpublished): `N` from half the batch to all of it, `K` from 20 % of the tokens to all.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct D3sSchedule {
    /// `N_init`, the fraction of the batch kept at `p = 0`, in `(0, 1]`.
    pub n_init: f32,
    /// `N_final`, the fraction kept at `p = 1`, in `(0, 1]`.
    pub n_final: f32,
    /// `K_init`, the fraction of tokens kept at `p = 0`, in `(0, 1]`.
    pub k_init: f32,
    /// `K_final`, the fraction of tokens kept at `p = 1`, in `(0, 1]`.
    pub k_final: f32,
}

impl Default for D3sSchedule {
    fn default() -> Self {
        D3sSchedule { n_init: 0.5, n_final: 1.0, k_init: 0.2, k_final: 1.0 }
    }
}

impl D3sSchedule {
    fn validate(&self) -> Result<(), TmError> {
        let ok = |f: f32| f.is_finite() && f > 0.0 && f <= 1.0;
        if [self.n_init, self.n_final, self.k_init, self.k_final].into_iter().all(ok) {
            Ok(())
        } else {
            Err(TmError::InvalidArgument("D3S schedule fractions must be in (0, 1]"))
        }
    }
}

/// `(N, K)` at progress `p ∈ [0, 1]` for a batch of `batch` responses: `N(p)`, `K(p)`
/// interpolated in `f64`, `N = clamp(round_half_away(N(p)·batch), 1, batch)` (0 for an empty
/// batch), `K` rounded to `f32`.
///
/// Errors: [`TmError::InvalidArgument`] for `p` outside `[0, 1]` or a fraction outside `(0, 1]`.
pub fn d3s_schedule(p: f32, s: &D3sSchedule, batch: usize) -> Result<(usize, f32), TmError> {
    s.validate()?;
    if !(0.0..=1.0).contains(&p) {
        return Err(TmError::InvalidArgument("D3S progress p must be in [0, 1]"));
    }
    let p = p as f64;
    let lerp = |a: f32, b: f32| (1.0 - p) * a as f64 + p * b as f64;
    let n = libm::round(lerp(s.n_init, s.n_final) * batch as f64);
    let n = (n as usize).clamp(1.min(batch), batch);
    Ok((n, lerp(s.k_init, s.k_final) as f32))
}

/// The inputs of [`d3s_token_mask`] (`[B,T]` arrays of `B·T` elements, `keep_rows` of `B`).
#[derive(Clone, Copy, Debug)]
pub struct D3sTokenInputs<'a> {
    /// `[B,T]` shape.
    pub shape: BatchShape,
    /// Response mask (`0` = padding).
    pub mask: &'a [u8],
    /// Per-token advantages `A[b,t]`.
    pub adv: &'a [f32],
    /// Per-token entropies `H[b,t]` (of the old policy, by default).
    pub entropy: &'a [f32],
    /// The selected samples (`≠ 0` = kept), e.g. from [`d3s_select_samples`].
    pub keep_rows: &'a [u8],
}

/// Calls `f(j)` for every valid token `j` of the kept rows, in flat order (stops at an error).
fn for_each_token(inp: &D3sTokenInputs<'_>, mut f: impl FnMut(usize) -> Result<(), TmError>) -> Result<(), TmError> {
    let cols = inp.shape.cols;
    for (b, &kr) in inp.keep_rows.iter().enumerate() {
        if kr != 0 {
            for j in b * cols..(b + 1) * cols {
                if inp.mask[j] != 0 {
                    f(j)?;
                }
            }
        }
    }
    Ok(())
}

/// The selection key of a token.
#[inline(always)]
fn token_key(a: f32, h: f32) -> u32 {
    key(a.abs() * h)
}

/// Candidates of the last selection rounds that the writing pass collects (on the stack,
/// 16 KiB) when they are this few, so that it can also be the last pass (module docs).
const COLLECT: usize = 1024;

/// Token-level selection (module docs): `out[b,t] = 1` for the `⌈K·n⌉` tokens with the
/// largest `|adv|·entropy` among the `n` valid tokens of the rows with `keep_rows[b] ≠ 0`
/// (ties: lower flat index first), 0 elsewhere. Returns the number kept.
///
/// Errors: lengths; [`TmError::InvalidArgument`] unless `0 ≤ k_frac ≤ 1`;
/// [`TmError::NonFinite`] for a NaN/`±inf` advantage or entropy at a taking-part token.
/// `out` is written only on success.
pub fn d3s_token_mask(exec: Exec, inp: &D3sTokenInputs<'_>, k_frac: f32, out: &mut [u8]) -> Result<u64, TmError> {
    token_mask(exec, inp, k_frac, out, COLLECT)
}

/// [`d3s_token_mask`] collecting at most `collect` (`≤ COLLECT`) candidates.
fn token_mask(
    exec: Exec,
    inp: &D3sTokenInputs<'_>,
    k_frac: f32,
    out: &mut [u8],
    collect: usize,
) -> Result<u64, TmError> {
    exec.check_backend()?;
    let D3sTokenInputs { shape, mask, adv, entropy, keep_rows } = *inp;
    let n = shape.numel()?;
    check_len("mask", n, mask.len())?;
    check_len("adv", n, adv.len())?;
    check_len("entropy", n, entropy.len())?;
    check_len("keep_rows", shape.rows, keep_rows.len())?;
    check_len("out", n, out.len())?;
    if !(0.0..=1.0).contains(&k_frac) {
        return Err(TmError::InvalidArgument("D3S token fraction K must be in [0, 1]"));
    }
    // Pass 1: validation (nothing is written on error), the count of taking-part tokens and
    // the first round's histogram, together.
    let be = exec.backend();
    let mut h = WideHist::new();
    let mut h2 = WideHist::new();
    // Pass 1 on the first 1/16 of the rows guesses the first round's bin; on the others it
    // also counts that bin's second round (as `entropy_mask`'s "One rank").
    let x = if n >= SPEC_MIN { shape.rows / 16 } else { 0 };
    let (na, bad_a) = count_pass::<true, false>(be, inp, 0..x, &Wide::new(0, 0), &mut h, None);
    let guess = (na > 0).then(|| {
        let count = (libm::ceil(k_frac as f64 * na as f64) as u64).clamp(1, na);
        let mut w = Wide::new(na - count, na);
        w.advance(&h.total);
        w
    });
    let (nb, bad_b) = match guess {
        Some(g) => {
            count_pass::<true, true>(be, inp, x..shape.rows, &Wide::new(0, 0), &mut h, Some((g.round(), &mut h2)))
        }
        None => count_pass::<true, false>(be, inp, x..shape.rows, &Wide::new(0, 0), &mut h, None),
    };
    let (valid, bad) = (na + nb, bad_a | bad_b);
    if bad {
        // The first offending token, in the order the checks are documented.
        for_each_token(inp, |j| {
            if !adv[j].is_finite() {
                return Err(TmError::NonFinite { what: "adv", index: j });
            }
            if !entropy[j].is_finite() {
                return Err(TmError::NonFinite { what: "entropy", index: j });
            }
            Ok(())
        })?;
    }
    let count = (libm::ceil(k_frac as f64 * valid as f64) as u64).min(valid);
    if count == 0 {
        out.fill(0);
        return Ok(0);
    }
    // The count-th largest key is the (valid − count)-th smallest.
    let mut sel = Wide::new(valid - count, valid);
    sel.advance(&h.total);
    if guess.is_some_and(|g| g.fixed == sel.fixed) {
        // Right guess: only the first rows are read again for the second round.
        count_pass::<false, false>(be, inp, 0..x, &sel, &mut h2, None);
        sel.advance(&h2.total);
    }
    while !sel.done() {
        if sel.cand as usize <= collect {
            write_collect(exec.backend(), inp, &sel, out);
            return Ok(count);
        }
        h.clear();
        count_pass::<false, false>(be, inp, 0..shape.rows, &sel, &mut h, None);
        sel.advance(&h.total);
    }
    // Keys above the threshold are all kept; of the `cand` ties, the `cand − k` that come
    // last in ascending (key, −index) order, i.e. the first ones by flat index.
    write_final(exec.backend(), inp, &sel, out);
    Ok(count)
}

/// Writes every `out[j]`: 0 outside the taking-part tokens; on them, with `m = key & himask`,
/// 1 if `m > fixed`, 0 if `m < fixed`, and `on_cand(j, key)` if `m = fixed` (called in flat
/// order). Blocks without such a token are written by a loop the compiler vectorises.
#[inline(always)]
fn write_rows(
    inp: &D3sTokenInputs<'_>,
    out: &mut [u8],
    himask: u32,
    fixed: u32,
    mut on_cand: impl FnMut(usize, u32) -> bool,
) {
    let cols = inp.shape.cols;
    if cols == 0 {
        return;
    }
    for (b, (o, &kr)) in out.chunks_mut(cols).zip(inp.keep_rows).enumerate() {
        if kr == 0 {
            o.fill(0);
            continue;
        }
        let r = b * cols..(b + 1) * cols;
        let (mask, adv, ent) = (&inp.mask[r.clone()], &inp.adv[r.clone()], &inp.entropy[r]);
        let mut j0 = b * cols;
        let mut one = |o: &mut u8, m: u8, a: f32, e: f32, j: usize| {
            let k = token_key(a, e);
            *o = (m != 0 && (k & himask > fixed || (k & himask == fixed && on_cand(j, k)))) as u8;
        };
        let (ob, mb, ab, eb) =
            (o.chunks_exact_mut(BLOCK), mask.chunks_exact(BLOCK), adv.chunks_exact(BLOCK), ent.chunks_exact(BLOCK));
        for (((o, m), a), e) in ob.zip(mb).zip(ab).zip(eb) {
            let (m, a, e): (&[u8; BLOCK], &[f32; BLOCK], &[f32; BLOCK]) =
                (m.try_into().unwrap(), a.try_into().unwrap(), e.try_into().unwrap());
            let (mut any, mut w) = (0u32, [0u8; BLOCK]);
            for i in 0..BLOCK {
                let k = token_key(a[i], e[i]) & himask;
                let valid = m[i] != 0;
                w[i] = (valid & (k > fixed)) as u8;
                any |= (valid & (k == fixed)) as u32;
            }
            if any == 0 {
                o.copy_from_slice(&w);
            } else {
                for i in 0..BLOCK {
                    one(&mut o[i], m[i], a[i], e[i], j0 + i);
                }
            }
            j0 += BLOCK;
        }
        let tail = cols - cols % BLOCK;
        for t in tail..cols {
            one(&mut o[t], mask[t], adv[t], ent[t], b * cols + t);
        }
    }
}

isa_dispatch! {
    /// The writing pass after the full selection: keys above `τ` kept, and of the `cand` ties
    /// the `cand − k` first by flat index.
    fn write_final(inp: &D3sTokenInputs<'_>, sel: &Wide, out: &mut [u8]) -> () {
        let mut ties = sel.cand - sel.k;
        write_rows(inp, out, !0, sel.fixed, |_, _| {
            let keep = ties > 0;
            ties -= keep as u64;
            keep
        });
    }
}

isa_dispatch! {
    /// The writing pass when at most [`COLLECT`] candidates of `sel` are left: keys above the
    /// candidates' prefix are kept, those below not, and the candidates, collected with their
    /// flat index, are decided afterwards (the `k`-th smallest of them is `τ`; ties as in the
    /// full selection).
    fn write_collect(inp: &D3sTokenInputs<'_>, sel: &Wide, out: &mut [u8]) -> () {
        write_collect_impl(inp, sel, out)
    }
}

#[inline(always)]
fn write_collect_impl(inp: &D3sTokenInputs<'_>, sel: &Wide, out: &mut [u8]) {
    let r = sel.round();
    let mut at = [0usize; COLLECT];
    let mut keys = [0u32; COLLECT];
    let mut c = 0;
    write_rows(inp, out, r.himask, r.fixed, |j, k| {
        // `c < cand ≤ COLLECT`: the data are those of the counting passes.
        if let (Some(a), Some(kk)) = (at.get_mut(c), keys.get_mut(c)) {
            (*a, *kk) = (j, k);
            c += 1;
        }
        false
    });
    let mut sorted = [0u32; COLLECT];
    sorted[..c].copy_from_slice(&keys[..c]);
    sorted[..c].sort_unstable();
    let k = sel.k as usize;
    let tau = sorted[k];
    let below = sorted[..c].partition_point(|&v| v < tau);
    let equal = sorted[below..c].partition_point(|&v| v == tau);
    let mut ties = equal - (k - below);
    for (&j, &key) in at[..c].iter().zip(&keys[..c]) {
        let keep = key > tau || (key == tau && ties > 0);
        ties -= (keep & (key == tau)) as usize;
        out[j] = keep as u8;
    }
}

isa_dispatch! {
    /// [`count_pass_impl`] compiled for the backend (as `entropy_mask::wide_pass`).
    fn count_pass<const FIRST: bool, const SPEC: bool>(
        inp: &D3sTokenInputs<'_>,
        rows: Range<usize>,
        sel: &Wide,
        h: &mut WideHist,
        spec: Option<(WideRound, &mut WideHist)>,
    ) -> (u64, bool) {
        count_pass_impl::<FIRST, SPEC>(inp, rows, sel, h, spec)
    }
}

/// One counting pass over the taking-part tokens (see `entropy_mask::wide_pass`): keys that
/// are candidates of `sel`, by digit, into `h` (flushed). `FIRST` also returns the number of
/// taking-part tokens and whether one has a non-finite advantage or entropy; without it,
/// the last round visits only the candidates; `SPEC` also counts `spec`'s round (the next
/// one, for a guessed bin of this one). Rows `rows` only.
#[inline(always)]
fn count_pass_impl<const FIRST: bool, const SPEC: bool>(
    inp: &D3sTokenInputs<'_>,
    rows: Range<usize>,
    sel: &Wide,
    h: &mut WideHist,
    mut spec: Option<(WideRound, &mut WideHist)>,
) -> (u64, bool) {
    let cols = inp.shape.cols;
    let r = sel.round();
    let sparse = sel.round == 2;
    let nonfinite = |x: f32| x.to_bits() & 0x7f80_0000 == 0x7f80_0000;
    let (mut n, mut bad) = (0u64, false);
    for (b, &kr) in inp.keep_rows.iter().enumerate().take(rows.end).skip(rows.start) {
        if kr == 0 {
            continue;
        }
        let rows = b * cols..(b + 1) * cols;
        let (mask, adv, ent) = (&inp.mask[rows.clone()], &inp.adv[rows.clone()], &inp.entropy[rows]);
        for ((mc, ac), ec) in mask.chunks(WIDE_FLUSH).zip(adv.chunks(WIDE_FLUSH)).zip(ent.chunks(WIDE_FLUSH)) {
            let (mb, ab, eb) = (mc.chunks_exact(BLOCK), ac.chunks_exact(BLOCK), ec.chunks_exact(BLOCK));
            let (mr, ar, er) = (mb.remainder(), ab.remainder(), eb.remainder());
            let (mut count, mut bad_acc) = ([0u32; BLOCK], [false; BLOCK]);
            for ((m, a), e) in mb.zip(ab).zip(eb) {
                let (m, a, e): (&[u8; BLOCK], &[f32; BLOCK], &[f32; BLOCK]) =
                    (m.try_into().unwrap(), a.try_into().unwrap(), e.try_into().unwrap());
                let (mut d, mut inc) = ([0u32; BLOCK], [0u32; BLOCK]);
                for i in 0..BLOCK {
                    let valid = m[i] != 0;
                    (inc[i], d[i]) = r.classify(valid, token_key(a[i], e[i]), i as u32);
                    if FIRST {
                        bad_acc[i] |= valid & (nonfinite(a[i]) | nonfinite(e[i]));
                        count[i] += inc[i];
                    }
                }
                if FIRST {
                    h.add_block::<true>(&d);
                } else if sparse {
                    h.add_sparse(&d, &inc);
                } else {
                    h.add_block::<false>(&d);
                }
                if SPEC {
                    if let Some((r2, h2)) = spec.as_mut() {
                        let mut d2 = [0u32; BLOCK];
                        for i in 0..BLOCK {
                            d2[i] = r2.classify(m[i] != 0, token_key(a[i], e[i]), i as u32).1;
                        }
                        h2.add_block::<false>(&d2);
                    }
                }
            }
            for ((&m, &a), &e) in mr.iter().zip(ar).zip(er) {
                let valid = m != 0;
                let (inc, d) = r.classify(valid, token_key(a, e), 0);
                bad_acc[0] |= valid & (nonfinite(a) | nonfinite(e));
                count[0] += inc;
                h.add1(d);
                if let Some((r2, h2)) = spec.as_mut() {
                    h2.add1(r2.classify(valid, token_key(a, e), 0).1);
                }
            }
            n += count.iter().map(|&c| c as u64).sum::<u64>();
            bad |= bad_acc.iter().any(|&b| b);
            h.segment_done(mc.len());
            if let Some((_, h2)) = spec.as_mut() {
                h2.segment_done(mc.len());
            }
        }
    }
    h.flush();
    if let Some((_, h2)) = spec.as_mut() {
        h2.flush();
    }
    (n, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The writing pass that collects the last candidates and the full selection followed by
    /// a plain writing pass give the same mask (ties included), on every backend.
    #[test]
    fn collecting_and_full_selection_agree() {
        let (rows, cols) = (3, 1500);
        let n = rows * cols;
        let mut x = 0x9E37_79B9u32;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        for distinct in [3u32, 40, 1 << 20] {
            let adv: Vec<f32> = (0..n).map(|_| (next() % 5) as f32 - 2.0).collect();
            let ent: Vec<f32> = (0..n).map(|_| (next() % distinct) as f32 * 0.125).collect();
            let mask: Vec<u8> = (0..n).map(|_| (next() % 7 != 0) as u8).collect();
            let keep_rows = [1u8, 0, 1];
            let inp = D3sTokenInputs {
                shape: BatchShape::new(rows, cols),
                mask: &mask,
                adv: &adv,
                entropy: &ent,
                keep_rows: &keep_rows,
            };
            for backend in crate::platform::Backend::all_supported() {
                let exec = Exec::new().with_backend(backend);
                for k in [0.01f32, 0.2, 0.5, 0.99] {
                    let (mut a, mut b) = (vec![7u8; n], vec![9u8; n]);
                    let ca = token_mask(exec, &inp, k, &mut a, COLLECT).unwrap();
                    let cb = token_mask(exec, &inp, k, &mut b, 0).unwrap();
                    assert_eq!((ca, &a), (cb, &b), "{distinct} {k} {backend:?}");
                    assert_eq!(a.iter().map(|&v| v as u64).sum::<u64>(), ca);
                }
            }
        }
    }
}
