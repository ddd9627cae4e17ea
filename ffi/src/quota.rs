//! QuoTA (arXiv 2503.08689): frame sampling, query-relevance frame weights, the capped
//! re-weighting, integer token budgets, the grid of a budget, and the per-frame bilinear
//! resize / adaptive average pooling matching PyTorch. `tokenmath_core::quota` documents
//! the math, the PyTorch index formulas matched and every choice.

use tokenmath_core::quota::{self as q, BudgetRule};

use crate::status::*;
use crate::util::{check_out, guard, inout, input, mul, overlaps, Out};

/// QuoTA's frame count `base + trunc(video_secs / 3600 * per_hour)` (source: 96, 64) into
/// `*out`.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (`video_secs` negative or not finite, a count past
/// `UINT32_MAX`).
///
/// # Safety
/// `out` valid for writing one `uint32_t`.
#[no_mangle]
pub unsafe extern "C" fn tkm_quota_frame_count(video_secs: f64, base: u32, per_hour: u32, out: *mut u32) -> tkm_status {
    guard(|| {
        let mut dst = Out::<u32>::new(out, 1)?;
        dst.buf[0] = q::quota_frame_count(video_secs, base, per_hour)?;
        dst.commit();
        Ok(())
    })
}

/// `count` frame indices `floor(j * (total_frames - 1) / (count - 1))` in exact integer
/// arithmetic (`count = 1` gives 0).
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (`total_frames == 0` with `count >= 1`).
///
/// # Safety
/// `out` valid for `count` elements.
#[no_mangle]
pub unsafe extern "C" fn tkm_quota_frame_indices(total_frames: u64, count: usize, out: *mut u64) -> tkm_status {
    guard(|| {
        let mut dst = Out::new(out, count)?;
        q::quota_frame_indices(total_frames, &mut dst.buf)?;
        dst.commit();
        Ok(())
    })
}

/// Normalised frame weights `w_i = (scale p_i)^power / sum_j (scale p_j)^power` of `n`
/// relevance scores in [0, 1] (source: scale 100, power 2); uniform when all are 0.
///
/// Errors: `TKM_STATUS_NON_FINITE` (a NaN/inf score), `_INVALID_ARGUMENT` (a score outside
/// [0, 1], `scale` or `power` not finite and > 0).
///
/// # Safety
/// `p_yes` and `out` valid for `n` floats.
#[no_mangle]
pub unsafe extern "C" fn tkm_quota_frame_weights(
    n: usize,
    p_yes: *const f32,
    scale: f32,
    power: f32,
    out: *mut f32,
) -> tkm_status {
    guard(|| {
        let p = input(p_yes, n)?;
        let mut dst = Out::new(out, n)?;
        q::quota_frame_weights(p, scale, power, &mut dst.buf)?;
        dst.commit();
        Ok(())
    })
}

/// The source's `scale_weights(w, max_value)` on `n` weights in place (caps at `max_value`
/// and redistributes the excess, exactly as the source, quirks included).
///
/// Errors: `TKM_STATUS_NON_FINITE` (a NaN/inf weight), `_INVALID_ARGUMENT` (a negative
/// weight, `max_value` not finite and > 0). `w` is unchanged on error.
///
/// # Safety
/// `w` valid for reads and writes of `n` floats.
#[no_mangle]
pub unsafe extern "C" fn tkm_quota_scale_weights(n: usize, w: *mut f32, max_value: f32) -> tkm_status {
    guard(|| {
        let w = inout(w, n)?;
        // The core validates everything before it writes.
        q::quota_scale_weights(w, max_value)?;
        Ok(())
    })
}

/// Largest-remainder budgets that sum exactly to `total` (default).
pub const TKM_BUDGET_LARGEST_REMAINDER: u32 = 0;
/// The source's `trunc(total * w_i)` (sum <= total).
pub const TKM_BUDGET_TRUNCATE: u32 = 1;

/// Integer token budgets of `total` tokens for `n` frame weights (`TKM_BUDGET_*`).
///
/// Errors: `TKM_STATUS_NON_FINITE` (a NaN/inf weight), `_INVALID_ARGUMENT` (a negative
/// weight, all-zero weights under largest remainder, a budget past `UINT32_MAX`, an
/// unknown rule).
///
/// # Safety
/// `w` valid for `n` floats, `out` for `n` `uint32_t`.
#[no_mangle]
pub unsafe extern "C" fn tkm_quota_token_budgets(
    n: usize,
    w: *const f32,
    total: u32,
    rule: u32,
    out: *mut u32,
) -> tkm_status {
    guard(|| {
        let rule = match rule {
            TKM_BUDGET_LARGEST_REMAINDER => BudgetRule::LargestRemainder,
            TKM_BUDGET_TRUNCATE => BudgetRule::Truncate,
            _ => return Err(TKM_STATUS_INVALID_ARGUMENT),
        };
        let w = input(w, n)?;
        let mut dst = Out::new(out, n)?;
        q::quota_token_budgets(w, total, rule, &mut dst.buf)?;
        dst.commit();
        Ok(())
    })
}

/// The grid `h x w` (`h * w <= n`) for a budget of `n` tokens into `*h`, `*w`.
///
/// # Safety
/// `h` and `w` valid for writing one `uint32_t` each.
#[no_mangle]
pub unsafe extern "C" fn tkm_quota_grid_for_budget(n: u32, h: *mut u32, w: *mut u32) -> tkm_status {
    guard(|| {
        let mut dh = Out::<u32>::new(h, 1)?;
        let mut dw = Out::<u32>::new(w, 1)?;
        (dh.buf[0], dw.buf[0]) = q::quota_grid_for_budget(n);
        dh.commit();
        dw.commit();
        Ok(())
    })
}

/// Bilinear, PyTorch `interpolate(mode="bilinear", align_corners=False)` (QuoTA v1).
pub const TKM_RESIZE_BILINEAR: u32 = 0;
/// PyTorch `adaptive_avg_pool2d` (QuoTA v2).
pub const TKM_RESIZE_ADAPTIVE_AVG_POOL: u32 = 1;

/// Reduces (or grows) one frame's `h x w x c` feature map (row-major, channels last) to
/// `oh x ow x c` with `mode` (`TKM_RESIZE_*`).
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (a zero size, an unknown mode), `_OVERLAP` (`out`
/// overlaps `src`), `_SIZE_OVERFLOW`.
///
/// # Safety
/// `src` valid for `h * w * c` floats, `out` for `oh * ow * c`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn tkm_quota_resize_hwc(
    src: *const f32,
    h: usize,
    w: usize,
    c: usize,
    oh: usize,
    ow: usize,
    mode: u32,
    out: *mut f32,
) -> tkm_status {
    guard(|| {
        let (n_in, n_out) = (mul(mul(h, w)?, c)?, mul(mul(oh, ow)?, c)?);
        let s = input(src, n_in)?;
        check_out(out, n_out)?;
        if overlaps(src, n_in, out, n_out) {
            return Err(TKM_STATUS_OVERLAP);
        }
        let mut dst = Out::new(out, n_out)?;
        match mode {
            TKM_RESIZE_BILINEAR => q::bilinear_resize_hwc(s, h, w, c, oh, ow, &mut dst.buf)?,
            TKM_RESIZE_ADAPTIVE_AVG_POOL => q::adaptive_avg_pool_hwc(s, h, w, c, oh, ow, &mut dst.buf)?,
            _ => return Err(TKM_STATUS_INVALID_ARGUMENT),
        }
        dst.commit();
        Ok(())
    })
}

/// One ToMe bipartite soft-matching round (QuoTA v4/v5) of `t` tokens of `dim` floats
/// (`x`, row-major): merges `r` pairs (capped at `t / 2`) and writes the `t - r` tokens
/// (unmerged even-position tokens in descending best-match order, then every odd-position
/// token, merged ones averaged) to the first `(t - r) * dim` floats of `out`, which holds
/// `t * dim`; the count goes to `*t_out`. `r = 0` copies the tokens unchanged.
///
/// Errors: `TKM_STATUS_NON_FINITE` (a NaN/inf feature), `_INVALID_ARGUMENT` (`t` past
/// `UINT32_MAX`), `_OVERLAP` (`out` overlaps `x`), `_SIZE_OVERFLOW`, `_OUT_OF_MEMORY`.
///
/// # Safety
/// `x` and `out` valid for `t * dim` floats, `t_out` for writing one `size_t`.
#[no_mangle]
pub unsafe extern "C" fn tkm_quota_tome_round(
    x: *const f32,
    t: usize,
    dim: usize,
    r: usize,
    out: *mut f32,
    t_out: *mut usize,
) -> tkm_status {
    guard(|| {
        let n = mul(t, dim)?;
        let xs = input(x, n)?;
        check_out(out, n)?;
        if overlaps(x, n, out, n) {
            return Err(TKM_STATUS_OVERLAP);
        }
        let mut count = Out::<usize>::new(t_out, 1)?;
        let (lf, lu) = q::tome_scratch_len(t);
        let mut sf = crate::util::scratch::<f64>(lf)?;
        let mut su = crate::util::scratch::<u32>(lu)?;
        let mut buf = crate::util::scratch::<f32>(n)?;
        let k = q::tome_bipartite_round(xs, t, dim, r, &mut sf, &mut su, &mut buf)?;
        if k * dim > 0 {
            core::ptr::copy_nonoverlapping(buf.as_ptr(), out, k * dim);
        }
        count.buf[0] = k;
        count.commit();
        Ok(())
    })
}
