//! Per-frame map reductions of `token_compress` (`core/llava_arch.py`): v1 bilinear resize
//! and v2 adaptive average pooling of a frame's `H×W×C` feature map (row-major, channels
//! last) to the `h×w` grid of its budget.
//!
//! # The index formulas matched
//!
//! Bilinear, PyTorch `F.interpolate(x, size, mode="bilinear", align_corners=False)`
//! (`aten/src/ATen/native/UpSample.h`: `area_pixel_compute_scale`,
//! `area_pixel_compute_source_index`, `guard_index_and_lambda`), per axis of input size
//! `I`, output size `O`, in `f32` as PyTorch's CPU kernel computes it for `float` input:
//!
//! ```text
//! scale = I / O                                   (f32; no scale_factor given)
//! src   = max(scale·(o + 0.5) − 0.5, 0)           (f32)
//! i0    = min(floor(src), I − 1);   i1 = i0 + (i0 < I − 1 ? 1 : 0)
//! λ1    = clamp(src − i0, 0, 1);    λ0 = 1 − λ1
//! out   = λ0_h·(λ0_w·x[i0_h][i0_w] + λ1_w·x[i0_h][i1_w]) + λ1_h·(λ0_w·x[i1_h][i0_w] + λ1_w·x[i1_h][i1_w])
//! ```
//!
//! Adaptive average pooling, PyTorch `adaptive_avg_pool2d`
//! (`aten/src/ATen/native/AdaptiveAveragePooling.cpp`, `start_index`/`end_index`): output
//! cell `o` averages input `[floor(o·I/O), ceil((o+1)·I/O))` per axis, in exact integer
//! arithmetic; the window sum is accumulated in `f64` and divided once \[library choice\].
//!
//! Both up-sample when `O > I` (v1 is uncapped: a budget above 729 grows the map).

use crate::TmError;

/// The source index, lower neighbour, upper neighbour and `λ1` of output index `o` along an
/// axis of input size `input` and output size `output` (both `≥ 1`), as PyTorch computes
/// them for `align_corners = False` (formulas in the module docs).
pub fn bilinear_source_index(input: usize, output: usize, o: usize) -> (usize, usize, f32) {
    let scale = input as f32 / output as f32;
    let src = (scale * (o as f32 + 0.5) - 0.5).max(0.0);
    let i0 = (libm::floorf(src) as usize).min(input - 1);
    let i1 = if i0 < input - 1 { i0 + 1 } else { i0 };
    let l1 = (src - i0 as f32).clamp(0.0, 1.0);
    (i0, i1, l1)
}

fn check_map(src: &[f32], h: usize, w: usize, c: usize, oh: usize, ow: usize, out: &[f32]) -> Result<(), TmError> {
    if h == 0 || w == 0 || oh == 0 || ow == 0 {
        return Err(TmError::InvalidArgument("input and output sizes must be >= 1 (PyTorch rejects empty maps)"));
    }
    let n_in = h.checked_mul(w).and_then(|v| v.checked_mul(c)).ok_or(TmError::SizeOverflow { what: "src" })?;
    let n_out = oh.checked_mul(ow).and_then(|v| v.checked_mul(c)).ok_or(TmError::SizeOverflow { what: "out" })?;
    crate::error::check_len("src", n_in, src.len())?;
    crate::error::check_len("out", n_out, out.len())
}

/// Bilinear resize of the `h×w×c` map `src` to `oh×ow×c` into `out`, matching PyTorch's
/// `interpolate(mode="bilinear", align_corners=False)` (module docs). Arithmetic in `f32`
/// in the order shown there; NaN/inf inputs propagate as in PyTorch (no check).
pub fn bilinear_resize_hwc(
    src: &[f32],
    h: usize,
    w: usize,
    c: usize,
    oh: usize,
    ow: usize,
    out: &mut [f32],
) -> Result<(), TmError> {
    check_map(src, h, w, c, oh, ow, out)?;
    for y in 0..oh {
        let (y0, y1, ly1) = bilinear_source_index(h, oh, y);
        let ly0 = 1.0 - ly1;
        for x in 0..ow {
            let (x0, x1, lx1) = bilinear_source_index(w, ow, x);
            let lx0 = 1.0 - lx1;
            let px = |yy: usize, xx: usize, k: usize| src[(yy * w + xx) * c + k];
            for k in 0..c {
                out[(y * ow + x) * c + k] = ly0 * (lx0 * px(y0, x0, k) + lx1 * px(y0, x1, k))
                    + ly1 * (lx0 * px(y1, x0, k) + lx1 * px(y1, x1, k));
            }
        }
    }
    Ok(())
}

/// Adaptive average pooling of the `h×w×c` map `src` to `oh×ow×c` into `out`, matching
/// PyTorch's `adaptive_avg_pool2d` windows (module docs). Window sums in `f64`, rounded once.
pub fn adaptive_avg_pool_hwc(
    src: &[f32],
    h: usize,
    w: usize,
    c: usize,
    oh: usize,
    ow: usize,
    out: &mut [f32],
) -> Result<(), TmError> {
    check_map(src, h, w, c, oh, ow, out)?;
    // floor(a·n/b) and ceil((a+1)·n/b) as PyTorch writes them, in u128 so that no size
    // product overflows.
    let start = |a: usize, b: usize, n: usize| ((a as u128 * n as u128) / b as u128) as usize;
    let end = |a: usize, b: usize, n: usize| (1 + ((a as u128 + 1) * n as u128 - 1) / b as u128) as usize;
    for y in 0..oh {
        let (ys, ye) = (start(y, oh, h), end(y, oh, h));
        for x in 0..ow {
            let (xs, xe) = (start(x, ow, w), end(x, ow, w));
            let n = ((ye - ys) * (xe - xs)) as f64;
            for k in 0..c {
                let mut s = 0.0f64;
                for yy in ys..ye {
                    for xx in xs..xe {
                        s += src[(yy * w + xx) * c + k] as f64;
                    }
                }
                out[(y * ow + x) * c + k] = (s / n) as f32;
            }
        }
    }
    Ok(())
}
