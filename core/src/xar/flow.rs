//! Noisy-context flow matching (`xAR.forward`): the interpolant and velocity target, the
//! logit-normal time sampler, the timestep-embedding index and the loss with its gradient.

use crate::error::check_len;
use crate::TmError;

fn check_t(t: f32, index: usize) -> Result<(), TmError> {
    if !t.is_finite() {
        return Err(TmError::NonFinite { what: "t", index });
    }
    if !(0.0..=1.0).contains(&t) {
        return Err(TmError::InvalidArgument("a flow time t must lie in [0, 1]"));
    }
    Ok(())
}

/// The linear interpolant and its velocity target at one time `t ∈ [0, 1]`, in `f32` in
/// the code's operation order (`alpha_t * x + sigma_t * eps`, `d_alpha_t * x + d_sigma_t *
/// eps` with `d_alpha_t = −1`, `d_sigma_t = 1`):
///
/// ```text
/// xt[j] = (1 − t)·x[j] + t·eps[j]        v[j] = eps[j] − x[j]
/// ```
///
/// `t = 0` is the clean latent, `t = 1` pure noise (the code's convention, which the
/// paper's Table 5 caption contradicts). NaN/inf in `x`, `eps` propagate (no check).
///
/// Errors: `t` NaN/inf ([`TmError::NonFinite`]) or outside `[0, 1]`
/// ([`TmError::InvalidArgument`]); a length differing from `x.len()`.
pub fn flow_interpolate(x: &[f32], eps: &[f32], t: f32, xt: &mut [f32], v: &mut [f32]) -> Result<(), TmError> {
    check_t(t, 0)?;
    let n = x.len();
    check_len("eps", n, eps.len())?;
    check_len("xt", n, xt.len())?;
    check_len("v", n, v.len())?;
    interpolate(x, eps, t, xt, v);
    Ok(())
}

fn interpolate(x: &[f32], eps: &[f32], t: f32, xt: &mut [f32], v: &mut [f32]) {
    let alpha = 1.0 - t;
    for j in 0..x.len() {
        xt[j] = alpha * x[j] + t * eps[j];
        v[j] = eps[j] - x[j];
    }
}

/// [`flow_interpolate`] over a batch laid out as the code's `forward` lays it out: `x`,
/// `eps`, `xt`, `v` are `[batch, n_ent, ent_elems]` (entity `i` of sample `b` at
/// `(b·n_ent + i)·ent_elems`, `ent_elems` = tokens per entity × channels), and `t` holds
/// `n_ent·batch` times **entity-major**: entity `i` of sample `b` uses `t[i·batch + b]`
/// (the code draws `B·N` times and splits them with `chunk(N, dim=0)`).
///
/// Errors: as [`flow_interpolate`] for every `t` (with its index), lengths, sizes
/// overflowing `usize`.
#[allow(clippy::too_many_arguments)]
pub fn xar_flow_interpolate(
    batch: usize,
    n_ent: usize,
    ent_elems: usize,
    x: &[f32],
    eps: &[f32],
    t: &[f32],
    xt: &mut [f32],
    v: &mut [f32],
) -> Result<(), TmError> {
    let groups = batch.checked_mul(n_ent).ok_or(TmError::SizeOverflow { what: "batch*n_ent" })?;
    let n = groups.checked_mul(ent_elems).ok_or(TmError::SizeOverflow { what: "x" })?;
    check_len("t", groups, t.len())?;
    check_len("x", n, x.len())?;
    check_len("eps", n, eps.len())?;
    check_len("xt", n, xt.len())?;
    check_len("v", n, v.len())?;
    for (k, &tk) in t.iter().enumerate() {
        check_t(tk, k)?;
    }
    for b in 0..batch {
        for i in 0..n_ent {
            let r = (b * n_ent + i) * ent_elems..(b * n_ent + i + 1) * ent_elems;
            let tt = t[i * batch + b];
            interpolate(&x[r.clone()], &eps[r.clone()], tt, &mut xt[r.clone()], &mut v[r]);
        }
    }
    Ok(())
}

/// One logit-normal time from a standard normal draw `z`, as `xAR.sample_logit_normal`
/// computes it: `u = z·sigma + mu` (SciPy's `norm.rvs(loc=mu, scale=sigma)`), then
/// `1/(1 + exp(−u))` in `f64` (NumPy), rounded once to `f32` (`torch.tensor(...,
/// dtype=float32)`). Source defaults `mu = 0`, `sigma = 1`.
///
/// `exp` is `libm`'s \[library choice\]; it may differ from NumPy's by an ulp of `f64`,
/// which survives the rounding to `f32` only when `1/(1 + e^{−u})` lies within that ulp of
/// an `f32` rounding boundary.
///
/// Errors: `z`, `mu` NaN/inf ([`TmError::NonFinite`]); `sigma` not finite and `> 0`
/// ([`TmError::InvalidArgument`]).
pub fn logit_normal(z: f64, mu: f64, sigma: f64) -> Result<f32, TmError> {
    if !mu.is_finite() {
        return Err(TmError::NonFinite { what: "mu", index: 0 });
    }
    if !(sigma.is_finite() && sigma > 0.0) {
        return Err(TmError::InvalidArgument("sigma must be finite and > 0"));
    }
    if !z.is_finite() {
        return Err(TmError::NonFinite { what: "z", index: 0 });
    }
    Ok(sigmoid_f32(z, mu, sigma))
}

fn sigmoid_f32(z: f64, mu: f64, sigma: f64) -> f32 {
    let u = z * sigma + mu;
    (1.0 / (1.0 + libm::exp(-u))) as f32
}

/// [`logit_normal`] of every `z[k]` into `out[k]`. Every input is checked before any
/// output is written.
///
/// Errors: as [`logit_normal`] (the first non-finite `z` by index); `out.len() != z.len()`.
pub fn xar_logit_normal_times(z: &[f64], mu: f64, sigma: f64, out: &mut [f32]) -> Result<(), TmError> {
    check_len("out", z.len(), out.len())?;
    logit_normal(0.0, mu, sigma)?;
    if let Some(k) = z.iter().position(|v| !v.is_finite()) {
        return Err(TmError::NonFinite { what: "z", index: k });
    }
    for (o, &zk) in out.iter_mut().zip(z) {
        *o = sigmoid_f32(zk, mu, sigma);
    }
    Ok(())
}

/// The timestep-embedding input `(t*1000).long()`: `trunc(t·1000)` with the product in
/// `f32` (the code multiplies the model-dtype time; the sampler's `f64` grid time is cast
/// to `f32` first, so pass `t as f32`).
///
/// Errors: `t` NaN/inf ([`TmError::NonFinite`]) or outside `[0, 1]`
/// ([`TmError::InvalidArgument`]).
pub fn xar_timestep_index(t: f32) -> Result<i64, TmError> {
    check_t(t, 0)?;
    Ok((t * 1000.0) as i64)
}

/// The flow-matching loss `mean_flat((pred − target)²).mean()` over `batch` samples of
/// `pred.len()/batch` elements each (every sample the same size, so it equals the mean over
/// all elements), returned in `f64`, and optionally its gradient
/// `grad[j] = 2·(pred[j] − target[j])/len` (rounded once to `f32`).
///
/// Accumulation in `f64`, per sample then over the batch \[library choice\]: PyTorch's
/// reduction order is not reproducible bit for bit; the result is within a few `f32` ulps
/// of it. NaN/inf propagate.
///
/// Errors: `batch == 0` or `pred` empty or not a multiple of `batch`
/// ([`TmError::InvalidArgument`]: PyTorch's mean of nothing is NaN); lengths.
pub fn xar_flow_loss(pred: &[f32], target: &[f32], batch: usize, grad: Option<&mut [f32]>) -> Result<f64, TmError> {
    let n = pred.len();
    if batch == 0 || n == 0 || !n.is_multiple_of(batch) {
        return Err(TmError::InvalidArgument("the loss needs batch >= 1 samples of equal, non-zero size"));
    }
    check_len("target", n, target.len())?;
    if let Some(g) = grad.as_deref() {
        check_len("grad", n, g.len())?;
    }
    let m = n / batch;
    let mut total = 0.0f64;
    for b in 0..batch {
        let s: f64 = pred[b * m..(b + 1) * m]
            .iter()
            .zip(&target[b * m..(b + 1) * m])
            .map(|(&p, &q)| {
                let d = p as f64 - q as f64;
                d * d
            })
            .sum();
        total += s / m as f64;
    }
    if let Some(g) = grad {
        let scale = 2.0 / n as f64;
        for j in 0..n {
            g[j] = ((pred[j] as f64 - target[j] as f64) * scale) as f32;
        }
    }
    Ok(total / batch as f64)
}
