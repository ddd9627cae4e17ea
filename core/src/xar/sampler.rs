//! The Euler–Maruyama sampler's pieces (`sampler.euler_maruyama_sampler`), in `f64` as the
//! code runs them (`latents.to(torch.float64)`, model outputs cast to `float64`): the
//! per-entity CFG schedule, the time grid, the drift from a velocity, CFG on the drift and
//! one step. The model call and the cond/uncond batching stay the caller's.

use crate::error::check_len;
use crate::TmError;

/// How the CFG scale grows over the entity steps (`xAR.sample_tokens`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CfgSchedule {
    /// `cfg_i = (cfg − 1)·i/(N − 1) + 1`: 1 at the first entity, `cfg` at the last
    /// (the code; `N = 1` gives `cfg` \[library choice\]: the code divides by zero).
    #[default]
    Linear,
    /// `cfg_i = (cfg − 1)·(i + 1)/N + 1`, the alternative left commented out in the code.
    LinearFromFirst,
    /// `cfg_i = cfg` for every entity (plain CFG).
    Constant,
}

/// The CFG scale of entity step `step` of `n_entities` (the code's `scaled_cfg`, a Python
/// float: `((cfg − 1)·step)/(N − 1) + 1` in `f64`, in that order).
///
/// Errors: `cfg` not finite, `n_entities == 0`, `step ≥ n_entities`
/// ([`TmError::InvalidArgument`]).
pub fn cfg_schedule(cfg: f64, step: usize, n_entities: usize, rule: CfgSchedule) -> Result<f64, TmError> {
    if !cfg.is_finite() {
        return Err(TmError::InvalidArgument("cfg must be finite"));
    }
    if step >= n_entities {
        return Err(TmError::InvalidArgument("the entity step must be below the number of entities"));
    }
    let (i, n) = (step as f64, n_entities as f64);
    Ok(match rule {
        CfgSchedule::Linear if n_entities == 1 => cfg,
        CfgSchedule::Linear => (cfg - 1.0) * i / (n - 1.0) + 1.0,
        CfgSchedule::LinearFromFirst => (cfg - 1.0) * (i + 1.0) / n + 1.0,
        CfgSchedule::Constant => cfg,
    })
}

/// The sampler's time grid: `torch.linspace(t_start, t_end, num_steps, dtype=float64)`
/// followed by `0`, into `out` of `num_steps + 1` elements (source: `t_start = 1`,
/// `t_end = 0.04`). PyTorch's CPU `linspace` kernel, transcribed
/// (`aten/src/ATen/native/cpu/RangeFactoriesKernel.cpp`):
///
/// ```text
/// step = (t_end − t_start)/(num_steps − 1)
/// k < num_steps/2:  t_start + step·k          otherwise:  t_end − step·(num_steps − 1 − k)
/// ```
///
/// and `num_steps = 1` gives `[t_start]` (then `0`); the source's sampler itself fails
/// there (its loop never binds `i`), so use `num_steps ≥ 2` to sample.
///
/// Errors: `out.len() < 2`, `t_start`/`t_end` not finite or not `0 ≤ t_end ≤ t_start`
/// ([`TmError::InvalidArgument`]).
pub fn xar_em_time_grid(t_start: f64, t_end: f64, out: &mut [f64]) -> Result<(), TmError> {
    if out.len() < 2 {
        return Err(TmError::InvalidArgument("the time grid needs num_steps >= 1 (out of num_steps + 1)"));
    }
    if !(t_start.is_finite() && t_end.is_finite() && 0.0 <= t_end && t_end <= t_start) {
        return Err(TmError::InvalidArgument("the time grid needs finite 0 <= t_end <= t_start"));
    }
    let steps = out.len() - 1;
    if steps == 1 {
        out[0] = t_start;
    } else {
        let step = (t_end - t_start) / (steps - 1) as f64;
        let half = steps / 2;
        for (k, o) in out[..steps].iter_mut().enumerate() {
            *o = if k < half { t_start + step * k as f64 } else { t_end - step * (steps - 1 - k) as f64 };
        }
    }
    out[steps] = 0.0;
    Ok(())
}

/// How [`em_drift_linear`] evaluates the drift.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DriftForm {
    /// The code's operation order (`get_score_from_velocity`, then `v − 0.5·diffusion·s`):
    /// `r = (1 − t)/(−1)`, `var = t·t − r·t`, `s = (r·v − x)/var`, `d = v − t·s`
    /// (`0.5·(2t) = t` exactly). Needs `t > 0`.
    #[default]
    Code,
    /// The simplified `d = (2 − t)·v + x` \[derived\]: equal in exact arithmetic, defined at
    /// `t = 0`, rounded differently.
    Closed,
}

/// The Euler–Maruyama drift of the linear path from a velocity `v` at state `x` and time
/// `t`: `d = v − ½·g(t)·s` with `g(t) = 2t` and the score `s = −((1 − t)·v + x)/t`, in
/// `f64` (`form` says in which order; the default is the code's).
///
/// Errors: `t` not finite or outside `(0, 1]` (`Code`) / `[0, 1]` (`Closed`)
/// ([`TmError::InvalidArgument`]); lengths. NaN/inf in `v`, `x` propagate.
pub fn em_drift_linear(v: &[f64], x: &[f64], t: f64, form: DriftForm, out: &mut [f64]) -> Result<(), TmError> {
    let ok = match form {
        DriftForm::Code => t > 0.0 && t <= 1.0,
        DriftForm::Closed => (0.0..=1.0).contains(&t),
    };
    if !ok {
        return Err(TmError::InvalidArgument("the drift's t must lie in (0, 1] (code form) or [0, 1] (closed form)"));
    }
    let n = v.len();
    check_len("x", n, x.len())?;
    check_len("out", n, out.len())?;
    match form {
        DriftForm::Code => {
            let r = (1.0 - t) / -1.0;
            let var = t * t - r * t;
            for j in 0..n {
                let s = (r * v[j] - x[j]) / var;
                out[j] = v[j] - t * s;
            }
        }
        DriftForm::Closed => {
            let a = 2.0 - t;
            for j in 0..n {
                out[j] = a * v[j] + x[j];
            }
        }
    }
    Ok(())
}

/// Classifier-free guidance of the sampler (`euler_maruyama_sampler`'s `cfg_scale`,
/// `guidance_low`, `guidance_high`; defaults `1, 0, 1` as in its signature — `xAR` passes
/// the scheduled [`cfg_schedule`] as `scale`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CfgGuidance {
    /// The guidance scale; `≤ 1` turns guidance off (the conditional drift is used).
    pub scale: f64,
    /// Guidance applies for `low ≤ t ≤ high`.
    pub low: f64,
    /// See `low`.
    pub high: f64,
}

impl Default for CfgGuidance {
    fn default() -> Self {
        CfgGuidance { scale: 1.0, low: 0.0, high: 1.0 }
    }
}

/// CFG on the drift, as the code applies it: `out = d_uncond + scale·(d_cond − d_uncond)`
/// when `scale > 1` and `low ≤ t ≤ high`, else `out = d_cond` (bit for bit: the code's
/// first entity step, `scale = 1`, takes the conditional drift, not `u + 1·(c − u)`).
/// Because the drift is affine in `v` with the same `x` in both halves, this equals CFG on
/// the velocity in exact arithmetic \[derived\].
///
/// Errors: `scale`, `low`, `high`, `t` not finite or `low > high`
/// ([`TmError::InvalidArgument`]); lengths.
pub fn xar_cfg_combine(
    d_cond: &[f64],
    d_uncond: &[f64],
    g: CfgGuidance,
    t: f64,
    out: &mut [f64],
) -> Result<(), TmError> {
    if !(g.scale.is_finite() && g.low.is_finite() && g.high.is_finite() && t.is_finite() && g.low <= g.high) {
        return Err(TmError::InvalidArgument("CFG needs a finite scale, t and low <= high"));
    }
    let n = d_cond.len();
    check_len("d_uncond", n, d_uncond.len())?;
    check_len("out", n, out.len())?;
    if g.scale > 1.0 && g.low <= t && t <= g.high {
        for j in 0..n {
            out[j] = d_uncond[j] + g.scale * (d_cond[j] - d_uncond[j]);
        }
    } else {
        out.copy_from_slice(d_cond);
    }
    Ok(())
}

/// One sampler step from `t_cur` to `t_next` on the state `x` (in place), `Δt = t_next −
/// t_cur`:
///
/// ```text
/// noise = Some(ξ):  x ← (x + d·Δt) + √(2·t_cur)·(ξ·√|Δt|)       every interval but the last
/// noise = None:     x ← x + Δt·d                                 the last (0.04 → 0)
/// ```
///
/// in `f64` in the code's order. `ξ` are the caller's standard normals (the code's
/// `torch.randn_like(x_cur)` in `float64`).
///
/// Errors: `t_cur`, `t_next` not finite, or `t_cur < 0` with noise
/// ([`TmError::InvalidArgument`]); lengths.
pub fn xar_em_step(x: &mut [f64], d: &[f64], t_cur: f64, t_next: f64, noise: Option<&[f64]>) -> Result<(), TmError> {
    if !(t_cur.is_finite() && t_next.is_finite()) || (noise.is_some() && t_cur < 0.0) {
        return Err(TmError::InvalidArgument("a step needs finite times (and t_cur >= 0 with noise)"));
    }
    let n = x.len();
    check_len("d", n, d.len())?;
    let dt = t_next - t_cur;
    match noise {
        Some(xi) => {
            check_len("noise", n, xi.len())?;
            let (sg, sdt) = (libm::sqrt(2.0 * t_cur), libm::sqrt(libm::fabs(dt)));
            for j in 0..n {
                x[j] = x[j] + d[j] * dt + sg * (xi[j] * sdt);
            }
        }
        None => {
            for j in 0..n {
                x[j] += dt * d[j];
            }
        }
    }
    Ok(())
}
