//! Entity orderings as index maps `seq → raster`, the scale pyramid's sizes and gather
//! indices, and the block-causal attention mask.

use crate::error::check_len;
use crate::TmError;

/// `h·w`, checked to fit the `u32` raster indices.
fn grid_len(h: usize, w: usize) -> Result<usize, TmError> {
    let n = h.checked_mul(w).ok_or(TmError::SizeOverflow { what: "h*w" })?;
    if n as u64 > u32::MAX as u64 + 1 {
        return Err(TmError::InvalidArgument("h*w must be at most 2^32 (indices are u32)"));
    }
    Ok(n)
}

/// The cell ordering: cells of `k×k` tokens in raster order, raster inside a cell.
/// `out[s]` (length `h·w`) is the raster index `y·w + x` of sequence position `s`, with
///
/// ```text
/// s = ((y/k)·(w/k) + x/k)·k² + (y%k)·k + x%k
/// ```
///
/// as the code's `xAR.clusterify` lays it out (`reshape(b, c, h/k, k, w/k, k)`, then
/// `einsum('nchpwq->nhwpqc')`): entity `e = (y/k)·(w/k) + x/k` holds positions
/// `[e·k², (e+1)·k²)`. The code's `clusters = 4` on a 16×16 grid is `k = 8`; `k = 1` is
/// the raster (token) order and `k = h = w` the single image entity.
///
/// Errors: `k == 0` or `k` not dividing `h` and `w` ([`TmError::InvalidArgument`]: the
/// code's `reshape` fails there), `out` of the wrong length, a grid past `2^32` tokens.
pub fn xar_cell_permutation(h: usize, w: usize, k: usize, out: &mut [u32]) -> Result<(), TmError> {
    if k == 0 || !h.is_multiple_of(k) || !w.is_multiple_of(k) {
        return Err(TmError::InvalidArgument("the cell size k must be >= 1 and divide h and w"));
    }
    let n = grid_len(h, w)?;
    check_len("out", n, out.len())?;
    if n == 0 {
        // Any `k` divides an empty side: `k²` may not fit (and nothing is written).
        return Ok(());
    }
    let (cw, kk) = (w / k, k * k);
    for y in 0..h {
        for x in 0..w {
            let s = ((y / k) * cw + x / k) * kk + (y % k) * k + x % k;
            out[s] = (y * w + x) as u32;
        }
    }
    Ok(())
}

/// The subsample ordering \[paper: `b c (d1 h) (d2 w) -> b (h w d1 d2) c`; not in the
/// released code\]: entity `(a, b)`, `a < h/d`, `b < w/d`, holds the `d²` tokens
/// `y = d1·(h/d) + a`, `x = d2·(w/d) + b` (`d1, d2 < d`), a stride-`h/d` subsample;
/// `(h/d)·(w/d)` entities of `d²` tokens. `out[s]` is the raster index of position
///
/// ```text
/// s = (a·(w/d) + b)·d² + d1·d + d2
/// ```
///
/// `d = 1` (and `d = h = w`) is the raster order.
///
/// Errors: `d == 0` or `d` not dividing `h` and `w` ([`TmError::InvalidArgument`]), `out`
/// of the wrong length, a grid past `2^32` tokens.
pub fn xar_subsample_permutation(h: usize, w: usize, d: usize, out: &mut [u32]) -> Result<(), TmError> {
    if d == 0 || !h.is_multiple_of(d) || !w.is_multiple_of(d) {
        return Err(TmError::InvalidArgument("the subsample distance d must be >= 1 and divide h and w"));
    }
    let n = grid_len(h, w)?;
    check_len("out", n, out.len())?;
    let (sh, sw) = (h / d, w / d);
    for y in 0..h {
        for x in 0..w {
            let (d1, a, d2, b) = (y / sh, y % sh, x / sw, x % sw);
            let s = (a * sw + b) * d * d + d1 * d + d2;
            out[s] = (y * w + x) as u32;
        }
    }
    Ok(())
}

/// The inverse permutation: `out[perm[s]] = s` (raster → seq, the code's `unclusterify`
/// for the cell order).
///
/// Errors: `out.len() != perm.len()`, a value `≥ perm.len()` or a repeated value
/// ([`TmError::InvalidArgument`]; `out` is then unspecified), more than `u32::MAX`
/// elements.
pub fn xar_invert_permutation(perm: &[u32], out: &mut [u32]) -> Result<(), TmError> {
    let n = perm.len();
    check_len("out", n, out.len())?;
    if n as u64 > u32::MAX as u64 {
        return Err(TmError::InvalidArgument("a permutation has at most u32::MAX elements"));
    }
    if let Some(_bad) = perm.iter().find(|&&p| p as usize >= n) {
        return Err(TmError::InvalidArgument("perm has a value >= its length"));
    }
    // Every valid index is < n <= u32::MAX, so u32::MAX marks an unwritten slot.
    out.fill(u32::MAX);
    for (s, &p) in perm.iter().enumerate() {
        if out[p as usize] != u32::MAX {
            return Err(TmError::InvalidArgument("perm repeats a value (not a permutation)"));
        }
        out[p as usize] = s as u32;
    }
    Ok(())
}

/// The scale entities' side lengths `out[i−1] = full·2^{i−N}`, `i = 1…N` (`N = out.len()`),
/// coarse to fine, so that the last is `full` \[paper\].
///
/// Errors: `N == 0`, `full == 0`, or `full` not divisible by `2^{N−1}`
/// ([`TmError::InvalidArgument`]: the sizes must be integers \[library choice\]).
pub fn xar_scale_sizes(full: usize, out: &mut [usize]) -> Result<(), TmError> {
    let n = out.len();
    if n == 0 || full == 0 {
        return Err(TmError::InvalidArgument("scale sizes need N >= 1 scales of a grid >= 1"));
    }
    if n > usize::BITS as usize || !full.is_multiple_of(1usize << (n - 1)) {
        return Err(TmError::InvalidArgument("the grid size must be divisible by 2^(N-1)"));
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = full >> (n - 1 - i);
    }
    Ok(())
}

/// The source index of output index `o` of PyTorch's `interpolate(mode="nearest")` (its
/// default) along an axis of `input → output` elements (`aten/src/ATen/native/UpSample.h`,
/// `nearest_idx`, no `scale_factor` given):
///
/// ```text
/// output == input      o
/// output == 2·input    o >> 1
/// otherwise            min(floorf(f32(o) · (f32(input)/f32(output))), input − 1)     (f32)
/// ```
///
/// Halving sizes give `o·(input/output)` exactly: a stride subsample from the first row.
pub fn xar_nearest_source_index(input: usize, output: usize, o: usize) -> usize {
    if output == input {
        o
    } else if output == 2 * input {
        o >> 1
    } else {
        let scale = input as f32 / output as f32;
        (libm::floorf(o as f32 * scale) as usize).min(input - 1)
    }
}

/// `Σ_i (h·2^{i−N})·(w·2^{i−N})`, the length of [`xar_scale_gather`]'s output.
///
/// Errors: as [`xar_scale_sizes`] for `h` and `w`.
pub fn xar_scale_gather_len(h: usize, w: usize, n: usize) -> Result<usize, TmError> {
    if n == 0 || h == 0 || w == 0 {
        return Err(TmError::InvalidArgument("scale entities need N >= 1 scales of a grid >= 1"));
    }
    grid_len(h, w)?;
    if n > usize::BITS as usize || !h.is_multiple_of(1usize << (n - 1)) || !w.is_multiple_of(1usize << (n - 1)) {
        return Err(TmError::InvalidArgument("the grid sides must be divisible by 2^(N-1)"));
    }
    // Each coarser scale has a quarter of the tokens: the sum is below 4/3·h·w.
    Ok((0..n).map(|i| (h >> (n - 1 - i)) * (w >> (n - 1 - i))).sum())
}

/// The scale entities as gather indices into the `h×w` raster grid: for `i = 1…N`, the
/// `(h·2^{i−N})×(w·2^{i−N})` nearest-neighbour resize of the latent
/// ([`xar_nearest_source_index`] per axis), raster inside each, concatenated coarse to fine
/// (`X_N` is the latent itself). `tokens[j] = latent[out[j]]` builds the sequence; the
/// entity lengths are the squares of [`xar_scale_sizes`].
///
/// \[paper; the resize mode is the spec's: PyTorch's default `nearest`\]. For `area`
/// resizing (`interpolate(mode="area")` = `adaptive_avg_pool2d`) use
/// [`crate::quota::adaptive_avg_pool_hwc`] per scale instead.
///
/// Errors: as [`xar_scale_gather_len`], `out` of the wrong length.
pub fn xar_scale_gather(h: usize, w: usize, n: usize, out: &mut [u32]) -> Result<(), TmError> {
    let len = xar_scale_gather_len(h, w, n)?;
    check_len("out", len, out.len())?;
    let mut j = 0;
    for i in 0..n {
        let (sh, sw) = (h >> (n - 1 - i), w >> (n - 1 - i));
        for oy in 0..sh {
            let y = xar_nearest_source_index(h, sh, oy);
            for ox in 0..sw {
                out[j] = (y * w + xar_nearest_source_index(w, sw, ox)) as u32;
                j += 1;
            }
        }
    }
    Ok(())
}

/// The block-causal additive attention mask of `n_entities` entities of `ent_len` tokens
/// each (`xAR.__init__`): `out` is `[L, L]` row-major, `L = n_entities·ent_len`, with
/// `out[r·L + c] = 0` when `c/ent_len ≤ r/ent_len` and `−inf` otherwise.
///
/// Errors: `out` of the wrong length, `L²` overflowing `usize`.
pub fn xar_block_causal_mask(n_entities: usize, ent_len: usize, out: &mut [f32]) -> Result<(), TmError> {
    let l = n_entities.checked_mul(ent_len).ok_or(TmError::SizeOverflow { what: "L" })?;
    let total = l.checked_mul(l).ok_or(TmError::SizeOverflow { what: "out" })?;
    check_len("out", total, out.len())?;
    for r in 0..l {
        let end = (r / ent_len + 1) * ent_len; // the end of the query's entity
        let row = &mut out[r * l..(r + 1) * l];
        row[..end].fill(0.0);
        row[end..].fill(f32::NEG_INFINITY);
    }
    Ok(())
}

/// The block-causal mask for entities of different lengths `ent_lens` (the scale entities):
/// `L = Σ ent_lens`; a query in entity `i` sees every key of entities `≤ i` (`0`), the rest
/// is `−inf`. Equal lengths give [`xar_block_causal_mask`]; zero-length entities are
/// allowed (they own no row or column).
///
/// Errors: `out` of the wrong length, `L` or `L²` overflowing `usize`.
pub fn xar_block_causal_mask_lens(ent_lens: &[usize], out: &mut [f32]) -> Result<(), TmError> {
    let l = ent_lens.iter().try_fold(0usize, |a, &b| a.checked_add(b)).ok_or(TmError::SizeOverflow { what: "L" })?;
    let total = l.checked_mul(l).ok_or(TmError::SizeOverflow { what: "out" })?;
    check_len("out", total, out.len())?;
    let mut start = 0;
    for &len in ent_lens {
        let end = start + len;
        for r in start..end {
            let row = &mut out[r * l..(r + 1) * l];
            row[..end].fill(0.0);
            row[end..].fill(f32::NEG_INFINITY);
        }
        start = end;
    }
    Ok(())
}
