//! UniCTokens' token-level utilities: k-means initialisation of new concept tokens, the
//! frozen-row restore of textual inversion, and the "generation as perception" token diff mask.
//!
//! Source: *UniCTokens* (arXiv 2505.14671), code `arctanxarc/UniCTokens`,
//! `train_w_3_stages/*.py` \[code\].
//!
//! # Math
//!
//! **k-means initialisation.** Stage-1 concept tokens start as the `k` centroids (`k = 16`,
//! seed 0 in the source) of the `n` VQ image-token embeddings `x_i ∈ ℝ^d` of the training
//! images. Seeding is k-means++ (Arthur & Vassilvitskii 2007):
//!
//! ```text
//! c_0 = x_{⌊u·n⌋}                                   u ~ U[0, 1)
//! D_i = min_j ‖x_i − c_j‖²                          over the centres chosen so far
//! c_j = x_i with i the first index where Σ_{l ≤ i} D_l > u·Σ_l D_l
//! ```
//!
//! then `iters` Lloyd steps: assign each row to its nearest centre (the lowest index on a tie),
//! move each centre to the mean of its rows; stop early when no assignment changes.
//!
//! **Frozen-row restore.** After each optimiser step, every row of the embedding table (and
//! of the LM head, and its bias with `dim = 1`) that is not a new token is copied back from
//! the original: `table[r] = orig[r]` where `trainable[r] = 0`.
//!
//! **Token diff mask.** With the token ids of a masked-generation run at two steps
//! (`a` = step 10, `b` = step 35 in the source) and at the end:
//! `diff_k = 1[ids_k ≠ ids_final]`, `mask = 1[diff_b ≠ diff_a]`: the image positions that
//! settled inside that window.
//!
//! # Choices
//!
//! The source calls scikit-learn's `KMeans`, whose random stream cannot be reproduced outside
//! NumPy. tokenmath's k-means is its own, documented bit for bit [library choice]:
//! * the generator is SplitMix64 seeded with `seed`, `u = (next_u64 >> 11)·2⁻⁵³` (the same
//!   draws as `tokenmath_reference::rng::SplitMix64::uniform`); the first centre takes
//!   `⌊u·n⌋`;
//! * plain k-means++ with one candidate per centre (scikit-learn's "greedy" variant tries
//!   `2 + ⌊ln k⌋`); if every remaining `D_i` is 0 (all rows coincide with the chosen centres),
//!   centre `j` is row `j`;
//! * distances, sums and centres are `f64`, summed in row order from `+0.0`; the centres are
//!   rounded to `f32` once at the end;
//! * an empty cluster keeps its previous centre (scikit-learn relocates it to a far point);
//! * convergence is "no assignment changed" (scikit-learn also stops at a centre-shift
//!   tolerance `1e-4`); the documented default for `iters` is scikit-learn's `max_iter = 300`
//!   ([`KMEANS_DEFAULT_ITERS`]).
//!
//! The result depends only on the inputs and `seed`: same bits on every run and thread count
//! (it is single-threaded). Row order is part of the input (k-means++ draws by index).

use crate::error::{check_len, TmError};

/// scikit-learn's `KMeans(max_iter=300)`: the default number of Lloyd steps.
pub const KMEANS_DEFAULT_ITERS: usize = 300;

/// SplitMix64 (Steele, Lea and Flood 2014), the same stream as
/// `tokenmath_reference::rng::SplitMix64`.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// The `f64` scratch elements [`kmeans_init`] needs: `n + 2·k·dim + k` (row distances or
/// assignments, centres, sums, counts) for `n` rows.
///
/// Errors: [`TmError::SizeOverflow`].
pub fn kmeans_scratch_len(n: usize, k: usize, dim: usize) -> Result<usize, TmError> {
    let of = TmError::SizeOverflow { what: "k-means scratch" };
    k.checked_mul(dim)
        .and_then(|kd| kd.checked_mul(2))
        .and_then(|x| x.checked_add(k))
        .and_then(|x| x.checked_add(n))
        .ok_or(of)
}

fn sq_dist(x: &[f32], c: &[f64]) -> f64 {
    let mut s = 0.0f64;
    for (&a, &b) in x.iter().zip(c) {
        let d = f64::from(a) - b;
        s += d * d;
    }
    s
}

/// k-means (k-means++ seeding, then up to `iters` Lloyd steps) of the `n = rows.len()/dim` rows
/// of `rows` (`[n, dim]`, row-major); the `k` centres go to `out` (`[k, dim]`). Returns the
/// number of Lloyd steps run.
///
/// `scratch` holds at least [`kmeans_scratch_len`]`(n, k, dim)` elements (overwritten).
///
/// Errors (nothing written): [`TmError::InvalidArgument`] for `dim == 0`, `k == 0`, `n < k` or
/// `rows.len()` not a multiple of `dim`; [`TmError::LengthMismatch`] for `out` or a short
/// `scratch`; [`TmError::NonFinite`] for a NaN or infinite input.
pub fn kmeans_init(
    rows: &[f32],
    dim: usize,
    k: usize,
    seed: u64,
    iters: usize,
    out: &mut [f32],
    scratch: &mut [f64],
) -> Result<usize, TmError> {
    if dim == 0 || k == 0 {
        return Err(TmError::InvalidArgument("k-means: dim and k must be >= 1"));
    }
    if !rows.len().is_multiple_of(dim) {
        return Err(TmError::InvalidArgument("k-means: rows.len() is not a multiple of dim"));
    }
    let n = rows.len() / dim;
    if n < k {
        return Err(TmError::InvalidArgument("k-means: fewer rows than clusters (n < k)"));
    }
    let kd = k.checked_mul(dim).ok_or(TmError::SizeOverflow { what: "out" })?;
    check_len("out", kd, out.len())?;
    let need = kmeans_scratch_len(n, k, dim)?;
    if scratch.len() < need {
        return Err(TmError::LengthMismatch { what: "scratch", expected: need, got: scratch.len() });
    }
    if let Some(index) = rows.iter().position(|x| !x.is_finite()) {
        return Err(TmError::NonFinite { what: "rows", index });
    }
    let (d, rest) = scratch[..need].split_at_mut(n);
    let (cent, rest) = rest.split_at_mut(kd);
    let (sums, counts) = rest.split_at_mut(kd);
    let row = |i: usize| &rows[i * dim..(i + 1) * dim];

    // k-means++ seeding; `d` holds D_i.
    let mut rng = SplitMix64(seed);
    let first = ((rng.uniform() * n as f64) as usize).min(n - 1);
    for (c, &x) in cent[..dim].iter_mut().zip(row(first)) {
        *c = f64::from(x);
    }
    for (i, di) in d.iter_mut().enumerate() {
        *di = sq_dist(row(i), &cent[..dim]);
    }
    for j in 1..k {
        let total: f64 = d.iter().sum();
        let pick = if total > 0.0 {
            let r = rng.uniform() * total;
            let mut acc = 0.0f64;
            // Rounding can leave r ≥ the last partial sum: fall back to the last row with D > 0.
            let mut pick = d.iter().rposition(|&x| x > 0.0).unwrap_or(n - 1);
            for (i, &di) in d.iter().enumerate() {
                acc += di;
                if acc > r {
                    pick = i;
                    break;
                }
            }
            pick
        } else {
            j
        };
        let c = &mut cent[j * dim..(j + 1) * dim];
        for (c, &x) in c.iter_mut().zip(row(pick)) {
            *c = f64::from(x);
        }
        for (i, di) in d.iter_mut().enumerate() {
            *di = di.min(sq_dist(row(i), &cent[j * dim..(j + 1) * dim]));
        }
    }

    // Lloyd steps; `d` now holds each row's cluster (exact in f64 below 2^53; NaN = none yet).
    d.fill(f64::NAN);
    let mut steps = 0;
    while steps < iters {
        steps += 1;
        let mut changed = false;
        for (i, di) in d.iter_mut().enumerate() {
            let (mut best, mut best_d) = (0usize, f64::INFINITY);
            for j in 0..k {
                let dist = sq_dist(row(i), &cent[j * dim..(j + 1) * dim]);
                if dist < best_d {
                    (best, best_d) = (j, dist);
                }
            }
            if *di != best as f64 {
                changed = true;
                *di = best as f64;
            }
        }
        if !changed {
            break;
        }
        sums.fill(0.0);
        counts.fill(0.0);
        for (i, &di) in d.iter().enumerate() {
            let j = di as usize;
            counts[j] += 1.0;
            for (s, &x) in sums[j * dim..(j + 1) * dim].iter_mut().zip(row(i)) {
                *s += f64::from(x);
            }
        }
        for j in 0..k {
            if counts[j] > 0.0 {
                for (c, &s) in cent[j * dim..(j + 1) * dim].iter_mut().zip(&sums[j * dim..(j + 1) * dim]) {
                    *c = s / counts[j];
                }
            }
        }
    }
    for (o, &c) in out.iter_mut().zip(cent.iter()) {
        *o = c as f32;
    }
    Ok(steps)
}

/// Copies back the frozen rows: `table[r] = orig[r]` for every row `r` with
/// `trainable[r] == 0` (`[rows, dim]` tables, `rows = trainable.len()`); trainable rows are left
/// as they are. Any `Copy` element (f32, bf16, f16, a bias with `dim = 1`).
///
/// Errors (nothing written): [`TmError::LengthMismatch`] when `table` or `orig` is not
/// `rows·dim` long; [`TmError::SizeOverflow`].
pub fn restore_frozen_rows<T: Copy>(table: &mut [T], orig: &[T], dim: usize, trainable: &[u8]) -> Result<(), TmError> {
    let len = trainable.len().checked_mul(dim).ok_or(TmError::SizeOverflow { what: "table" })?;
    check_len("table", len, table.len())?;
    check_len("orig", len, orig.len())?;
    if dim == 0 {
        return Ok(());
    }
    for ((t, o), &keep) in table.chunks_exact_mut(dim).zip(orig.chunks_exact(dim)).zip(trainable) {
        if keep == 0 {
            t.copy_from_slice(o);
        }
    }
    Ok(())
}

/// The generation-as-perception mask: `out[i] = 1[(a_i ≠ final_i) ≠ (b_i ≠ final_i)]`.
///
/// Errors (nothing written): [`TmError::LengthMismatch`] when `ids_b`, `ids_final` or `out` is
/// not `ids_a.len()` long.
pub fn token_diff_mask(ids_a: &[u32], ids_b: &[u32], ids_final: &[u32], out: &mut [u8]) -> Result<(), TmError> {
    let n = ids_a.len();
    check_len("ids_b", n, ids_b.len())?;
    check_len("ids_final", n, ids_final.len())?;
    check_len("out", n, out.len())?;
    for (((o, &a), &b), &f) in out.iter_mut().zip(ids_a).zip(ids_b).zip(ids_final) {
        *o = u8::from((a != f) != (b != f));
    }
    Ok(())
}
