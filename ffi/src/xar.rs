//! xAR (arXiv 2502.20388, code `OliverRensu/xAR`): entity orderings as index maps, the
//! scale pyramid, the block-causal mask, flow-matching interpolation and loss, logit-normal
//! times, and the Euler–Maruyama sampler's CFG schedule, time grid, drift, CFG and step.
//! `tokenmath_core::xar` documents the math, the code's operation order matched and every
//! choice. Random numbers are always the caller's (normals in, no generator inside).

use tokenmath_core::xar::{self as xr, CfgGuidance, CfgSchedule, DriftForm};

use crate::status::*;
use crate::util::{check_out, guard, inout, input, mul, opt_input, overlaps, Out};

/// The cell ordering of an `h x w` grid in `k x k` cells (the code's `clusterify`: `k = 8`
/// on 16 x 16): `out[s]` (`h * w` entries) is the raster index `y * w + x` of sequence
/// position `s = ((y/k)*(w/k) + x/k)*k*k + (y%k)*k + x%k`.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (`k` zero or not dividing `h` and `w`, more than
/// 2^32 tokens), `_SIZE_OVERFLOW`.
///
/// # Safety
/// `out` valid for `h * w` `uint32_t`.
#[no_mangle]
pub unsafe extern "C" fn tkm_xar_cell_permutation(h: usize, w: usize, k: usize, out: *mut u32) -> tkm_status {
    guard(|| {
        let mut dst = Out::new(out, mul(h, w)?)?;
        xr::xar_cell_permutation(h, w, k, &mut dst.buf)?;
        dst.commit();
        Ok(())
    })
}

/// The subsample ordering (paper `b c (d1 h) (d2 w) -> b (h w d1 d2) c`): `(h/d)*(w/d)`
/// entities of `d*d` tokens at stride `h/d`; `out[s]` is the raster index of position
/// `s = (a*(w/d) + b)*d*d + d1*d + d2` for `y = d1*(h/d) + a`, `x = d2*(w/d) + b`.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (`d` zero or not dividing `h` and `w`, more than
/// 2^32 tokens), `_SIZE_OVERFLOW`.
///
/// # Safety
/// `out` valid for `h * w` `uint32_t`.
#[no_mangle]
pub unsafe extern "C" fn tkm_xar_subsample_permutation(h: usize, w: usize, d: usize, out: *mut u32) -> tkm_status {
    guard(|| {
        let mut dst = Out::new(out, mul(h, w)?)?;
        xr::xar_subsample_permutation(h, w, d, &mut dst.buf)?;
        dst.commit();
        Ok(())
    })
}

/// The inverse of a permutation of `n` indices: `out[perm[s]] = s`.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (a value `>= n` or repeated), `_OVERLAP` (`out`
/// overlaps `perm`).
///
/// # Safety
/// `perm` and `out` valid for `n` `uint32_t`.
#[no_mangle]
pub unsafe extern "C" fn tkm_xar_invert_permutation(n: usize, perm: *const u32, out: *mut u32) -> tkm_status {
    guard(|| {
        let p = input(perm, n)?;
        check_out(out, n)?;
        if overlaps(perm, n, out, n) {
            return Err(TKM_STATUS_OVERLAP);
        }
        let mut dst = Out::new(out, n)?;
        xr::xar_invert_permutation(p, &mut dst.buf)?;
        dst.commit();
        Ok(())
    })
}

/// The `n` scale sizes `full * 2^(i - n)`, `i = 1..n`, coarse to fine, into `out`.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (`n` or `full` zero, `full` not divisible by
/// `2^(n-1)`).
///
/// # Safety
/// `out` valid for `n` `size_t`.
#[no_mangle]
pub unsafe extern "C" fn tkm_xar_scale_sizes(full: usize, n: usize, out: *mut usize) -> tkm_status {
    guard(|| {
        let mut dst = Out::new(out, n)?;
        xr::xar_scale_sizes(full, &mut dst.buf)?;
        dst.commit();
        Ok(())
    })
}

/// The number of gather indices of `n` scales of an `h x w` grid (the sum of the scales'
/// areas) into `*len`.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (a zero size, sides not divisible by `2^(n-1)`,
/// more than 2^32 tokens).
///
/// # Safety
/// `len` valid for writing one `size_t`.
#[no_mangle]
pub unsafe extern "C" fn tkm_xar_scale_gather_len(h: usize, w: usize, n: usize, len: *mut usize) -> tkm_status {
    guard(|| {
        let mut dst = Out::<usize>::new(len, 1)?;
        dst.buf[0] = xr::xar_scale_gather_len(h, w, n)?;
        dst.commit();
        Ok(())
    })
}

/// The scale entities as raster gather indices (`tokens[j] = latent[out[j]]`): each of the
/// `n` scales is PyTorch's nearest-neighbour resize of the `h x w` grid, raster,
/// concatenated coarse to fine. `out_len` must be `tkm_xar_scale_gather_len`'s value.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (as `tkm_xar_scale_gather_len`),
/// `_LENGTH_MISMATCH` (`out_len`).
///
/// # Safety
/// `out` valid for `out_len` `uint32_t`.
#[no_mangle]
pub unsafe extern "C" fn tkm_xar_scale_gather(
    h: usize,
    w: usize,
    n: usize,
    out: *mut u32,
    out_len: usize,
) -> tkm_status {
    guard(|| {
        let mut dst = Out::new(out, out_len)?;
        xr::xar_scale_gather(h, w, n, &mut dst.buf)?;
        dst.commit();
        Ok(())
    })
}

/// The block-causal additive mask of `n_entities` entities of `ent_len` tokens: `out` is
/// `L x L`, `L = n_entities * ent_len`, `0` where the key's entity is `<=` the query's and
/// `-inf` elsewhere.
///
/// Errors: `TKM_STATUS_SIZE_OVERFLOW` (`L * L`).
///
/// # Safety
/// `out` valid for `L * L` floats.
#[no_mangle]
pub unsafe extern "C" fn tkm_xar_block_causal_mask(n_entities: usize, ent_len: usize, out: *mut f32) -> tkm_status {
    guard(|| {
        let l = mul(n_entities, ent_len)?;
        let mut dst = Out::new(out, mul(l, l)?)?;
        xr::xar_block_causal_mask(n_entities, ent_len, &mut dst.buf)?;
        dst.commit();
        Ok(())
    })
}

/// The block-causal mask of `n_entities` entities of lengths `ent_lens` (the scale
/// entities): `L = sum(ent_lens)`, `out_len` must be `L * L`.
///
/// Errors: `TKM_STATUS_LENGTH_MISMATCH` (`out_len`), `_SIZE_OVERFLOW`.
///
/// # Safety
/// `ent_lens` valid for `n_entities` `size_t`, `out` for `out_len` floats.
#[no_mangle]
pub unsafe extern "C" fn tkm_xar_block_causal_mask_lens(
    n_entities: usize,
    ent_lens: *const usize,
    out: *mut f32,
    out_len: usize,
) -> tkm_status {
    guard(|| {
        let lens = input(ent_lens, n_entities)?;
        let mut dst = Out::new(out, out_len)?;
        xr::xar_block_causal_mask_lens(lens, &mut dst.buf)?;
        dst.commit();
        Ok(())
    })
}

/// Flow-matching inputs and targets of a batch laid out `[batch, n_ent, ent_elems]`:
/// `xt = (1 - t) * x + t * eps`, `v = eps - x` (f32, the code's order), entity `i` of
/// sample `b` at time `t[i * batch + b]` (entity-major, as the code draws and chunks them).
///
/// Errors: `TKM_STATUS_NON_FINITE` (a NaN/inf `t`), `_INVALID_ARGUMENT` (a `t` outside
/// [0, 1]), `_OVERLAP` (an output overlapping an input or the other output),
/// `_SIZE_OVERFLOW`.
///
/// # Safety
/// `x`, `eps`, `xt`, `v` valid for `batch * n_ent * ent_elems` floats, `t` for
/// `batch * n_ent`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn tkm_xar_flow_interpolate(
    batch: usize,
    n_ent: usize,
    ent_elems: usize,
    x: *const f32,
    eps: *const f32,
    t: *const f32,
    xt: *mut f32,
    v: *mut f32,
) -> tkm_status {
    guard(|| {
        let g = mul(batch, n_ent)?;
        let n = mul(g, ent_elems)?;
        let (xs, es, ts) = (input(x, n)?, input(eps, n)?, input(t, g)?);
        check_out(xt, n)?;
        check_out(v, n)?;
        for o in [xt as *const f32, v as *const f32] {
            if overlaps(o, n, x, n) || overlaps(o, n, eps, n) || overlaps(o, n, t, g) {
                return Err(TKM_STATUS_OVERLAP);
            }
        }
        if overlaps(xt, n, v, n) {
            return Err(TKM_STATUS_OVERLAP);
        }
        let mut dx = Out::new(xt, n)?;
        let mut dv = Out::new(v, n)?;
        xr::xar_flow_interpolate(batch, n_ent, ent_elems, xs, es, ts, &mut dx.buf, &mut dv.buf)?;
        dx.commit();
        dv.commit();
        Ok(())
    })
}

/// Logit-normal times `out[k] = f32(1 / (1 + exp(-(z[k] * sigma + mu))))` from the
/// caller's `n` standard normals `z` (f64, as SciPy draws them; source `mu = 0`,
/// `sigma = 1`).
///
/// Errors: `TKM_STATUS_NON_FINITE` (a NaN/inf `z` or `mu`), `_INVALID_ARGUMENT` (`sigma`
/// not finite and > 0).
///
/// # Safety
/// `z` valid for `n` doubles, `out` for `n` floats.
#[no_mangle]
pub unsafe extern "C" fn tkm_xar_logit_normal(
    n: usize,
    z: *const f64,
    mu: f64,
    sigma: f64,
    out: *mut f32,
) -> tkm_status {
    guard(|| {
        let zs = input(z, n)?;
        let mut dst = Out::new(out, n)?;
        xr::xar_logit_normal_times(zs, mu, sigma, &mut dst.buf)?;
        dst.commit();
        Ok(())
    })
}

/// The timestep-embedding inputs `trunc(t[k] * 1000)` (product in f32) of `n` times.
///
/// Errors: `TKM_STATUS_NON_FINITE` (a NaN/inf `t`), `_INVALID_ARGUMENT` (outside [0, 1]).
///
/// # Safety
/// `t` valid for `n` floats, `out` for `n` `int64_t`.
#[no_mangle]
pub unsafe extern "C" fn tkm_xar_timestep_index(n: usize, t: *const f32, out: *mut i64) -> tkm_status {
    guard(|| {
        let ts = input(t, n)?;
        let mut dst = Out::new(out, n)?;
        for (o, &tk) in dst.buf.iter_mut().zip(ts) {
            *o = xr::xar_timestep_index(tk)?;
        }
        dst.commit();
        Ok(())
    })
}

/// The flow-matching loss `mean((pred - target)^2)` over `batch` samples of `n / batch`
/// elements (accumulated in f64) into `*loss`, and its gradient `2 (pred - target) / n`
/// into `grad` unless it is NULL.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (`batch` or `n` zero, `n` not a multiple of
/// `batch`), `_OVERLAP` (`grad` overlapping an input).
///
/// # Safety
/// `pred`, `target` (and `grad` when not NULL) valid for `n` floats, `loss` for one double.
#[no_mangle]
pub unsafe extern "C" fn tkm_xar_flow_loss(
    batch: usize,
    n: usize,
    pred: *const f32,
    target: *const f32,
    loss: *mut f64,
    grad: *mut f32,
) -> tkm_status {
    guard(|| {
        let (p, q) = (input(pred, n)?, input(target, n)?);
        let mut dl = Out::<f64>::new(loss, 1)?;
        if !grad.is_null() && (overlaps(grad, n, pred, n) || overlaps(grad, n, target, n)) {
            return Err(TKM_STATUS_OVERLAP);
        }
        let mut dg = Out::optional(grad, n)?;
        dl.buf[0] = xr::xar_flow_loss(p, q, batch, dg.as_mut().map(|d| &mut d.buf[..]))?;
        dl.commit();
        if let Some(d) = dg {
            d.commit();
        }
        Ok(())
    })
}

/// `cfg_i = (cfg - 1) * i / (N - 1) + 1` (the code; `N = 1` gives `cfg`).
pub const TKM_XAR_CFG_LINEAR: u32 = 0;
/// `cfg_i = (cfg - 1) * (i + 1) / N + 1` (commented out in the code).
pub const TKM_XAR_CFG_LINEAR_FROM_FIRST: u32 = 1;
/// `cfg_i = cfg`.
pub const TKM_XAR_CFG_CONSTANT: u32 = 2;

/// The CFG scale of entity step `step` of `n_entities` under `rule` (`TKM_XAR_CFG_*`) into
/// `*out`.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (`cfg` not finite, `step >= n_entities`, an
/// unknown rule).
///
/// # Safety
/// `out` valid for writing one double.
#[no_mangle]
pub unsafe extern "C" fn tkm_xar_cfg_schedule(
    cfg: f64,
    step: usize,
    n_entities: usize,
    rule: u32,
    out: *mut f64,
) -> tkm_status {
    guard(|| {
        let rule = match rule {
            TKM_XAR_CFG_LINEAR => CfgSchedule::Linear,
            TKM_XAR_CFG_LINEAR_FROM_FIRST => CfgSchedule::LinearFromFirst,
            TKM_XAR_CFG_CONSTANT => CfgSchedule::Constant,
            _ => return Err(TKM_STATUS_INVALID_ARGUMENT),
        };
        let mut dst = Out::<f64>::new(out, 1)?;
        dst.buf[0] = xr::cfg_schedule(cfg, step, n_entities, rule)?;
        dst.commit();
        Ok(())
    })
}

/// The sampler's time grid `torch.linspace(t_start, t_end, num_steps)` followed by 0, into
/// `out` of `num_steps + 1` doubles (source: 1, 0.04).
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (`num_steps == 0`, not `0 <= t_end <= t_start`
/// finite), `_SIZE_OVERFLOW`.
///
/// # Safety
/// `out` valid for `num_steps + 1` doubles.
#[no_mangle]
pub unsafe extern "C" fn tkm_xar_em_time_grid(num_steps: usize, t_start: f64, t_end: f64, out: *mut f64) -> tkm_status {
    guard(|| {
        let len = num_steps.checked_add(1).ok_or(TKM_STATUS_SIZE_OVERFLOW)?;
        let mut dst = Out::new(out, len)?;
        xr::xar_em_time_grid(t_start, t_end, &mut dst.buf)?;
        dst.commit();
        Ok(())
    })
}

/// The drift in the code's operation order (needs `t > 0`).
pub const TKM_XAR_DRIFT_CODE: u32 = 0;
/// The drift as `(2 - t) * v + x`.
pub const TKM_XAR_DRIFT_CLOSED: u32 = 1;

/// The Euler–Maruyama drift `d = v - t * s`, `s = -((1 - t) v + x) / t` of `n` elements
/// (f64), evaluated as `form` (`TKM_XAR_DRIFT_*`).
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (`t` outside (0, 1] / [0, 1], an unknown form),
/// `_OVERLAP` (`out` overlapping `v` or `x`).
///
/// # Safety
/// `v`, `x`, `out` valid for `n` doubles.
#[no_mangle]
pub unsafe extern "C" fn tkm_xar_em_drift(
    n: usize,
    v: *const f64,
    x: *const f64,
    t: f64,
    form: u32,
    out: *mut f64,
) -> tkm_status {
    guard(|| {
        let form = match form {
            TKM_XAR_DRIFT_CODE => DriftForm::Code,
            TKM_XAR_DRIFT_CLOSED => DriftForm::Closed,
            _ => return Err(TKM_STATUS_INVALID_ARGUMENT),
        };
        let (vs, xs) = (input(v, n)?, input(x, n)?);
        check_out(out, n)?;
        if overlaps(out, n, v, n) || overlaps(out, n, x, n) {
            return Err(TKM_STATUS_OVERLAP);
        }
        let mut dst = Out::new(out, n)?;
        xr::em_drift_linear(vs, xs, t, form, &mut dst.buf)?;
        dst.commit();
        Ok(())
    })
}

/// CFG on the drift: `out = d_uncond + scale * (d_cond - d_uncond)` when `scale > 1` and
/// `low <= t <= high`, else `out = d_cond` (the sampler's defaults: scale 1, low 0, high 1).
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (a non-finite scalar, `low > high`), `_OVERLAP`.
///
/// # Safety
/// `d_cond`, `d_uncond`, `out` valid for `n` doubles.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn tkm_xar_cfg_combine(
    n: usize,
    d_cond: *const f64,
    d_uncond: *const f64,
    scale: f64,
    low: f64,
    high: f64,
    t: f64,
    out: *mut f64,
) -> tkm_status {
    guard(|| {
        let (c, u) = (input(d_cond, n)?, input(d_uncond, n)?);
        check_out(out, n)?;
        if overlaps(out, n, d_cond, n) || overlaps(out, n, d_uncond, n) {
            return Err(TKM_STATUS_OVERLAP);
        }
        let mut dst = Out::new(out, n)?;
        xr::xar_cfg_combine(c, u, CfgGuidance { scale, low, high }, t, &mut dst.buf)?;
        dst.commit();
        Ok(())
    })
}

/// One sampler step on the state `x` (n doubles, in place) from `t_cur` to `t_next` with
/// drift `d`: `x + d * dt + sqrt(2 t_cur) * (noise * sqrt(|dt|))` with the caller's
/// standard normals `noise`, or `x + dt * d` (the last step) when `noise` is NULL.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (non-finite times, `t_cur < 0` with noise),
/// `_OVERLAP` (`d` or `noise` overlapping `x`). `x` is unchanged on error.
///
/// # Safety
/// `x` valid for reads and writes of `n` doubles, `d` (and `noise` when not NULL) for `n`.
#[no_mangle]
pub unsafe extern "C" fn tkm_xar_em_step(
    n: usize,
    x: *mut f64,
    d: *const f64,
    t_cur: f64,
    t_next: f64,
    noise: *const f64,
) -> tkm_status {
    guard(|| {
        if overlaps(x, n, d, n) || (!noise.is_null() && overlaps(x, n, noise, n)) {
            return Err(TKM_STATUS_OVERLAP);
        }
        let ds = input(d, n)?;
        let xi = opt_input(noise, n)?;
        let xs = inout(x, n)?;
        // The core validates everything before it writes.
        xr::xar_em_step(xs, ds, t_cur, t_next, xi)?;
        Ok(())
    })
}
