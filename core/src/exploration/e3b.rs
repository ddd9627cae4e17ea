//! E3B's elliptical episodic bonus with the rank-1 inverse update (`src/utils.py::act`,
//! rank-1 path, of `facebookresearch/e3b`; arXiv 2210.05805).
//!
//! Features `φ_t ∈ R^d` (the caller's encoder; the source's inverse-dynamics encoder has
//! `hidden_dim = 1024`), ridge `λ` (default 0.1):
//!
//! ```text
//! episode start:  C⁻¹ = (1/λ)·I
//! each step:      u   = C⁻¹·φ_t
//!                 b_t = φ_tᵀ·u                        (the bonus uses the inverse BEFORE the update)
//!                 C⁻¹ ← C⁻¹ − u·uᵀ/(1 + b_t)          (Sherman–Morrison for C ← C + φ_t φ_tᵀ)
//!                 the reported bonus of the first step of an episode is 0 (the update still happens)
//! ```
//!
//! `O(d²)` per step and no matrix inverse: one matrix–vector product, one dot product, one
//! rank-1 update of the caller's `d×d` row-major buffer; `u` goes into a caller scratch of
//! `d` floats, so nothing allocates. Never resetting gives the lifelong (global) variant
//! `elliptical-icm-lifelong`; the source's other variants differ only in the encoder.
//!
//! \[derived\] checks (in the tests): `b_t ≥ 0` (C⁻¹ is symmetric positive definite); after the
//! update `φ_tᵀ C⁻¹ φ_t = b_t/(1 + b_t)`; a repeated feature gives `b, b/(1+b), b/(1+2b), …`.
//! The f64 reference recomputes `C = λI + Σ φφᵀ` and inverts it explicitly.
//!
//! # Numerics
//!
//! * `C⁻¹` is kept in `f32` \[library choice\] (the source's torch default).
//! * The update is written `C⁻¹[i][j] −= (u_i·u_j)·s` with `s = 1/(1 + b)`: `u_i·u_j` is
//!   commutative in IEEE arithmetic, so a symmetric `C⁻¹` stays *exactly* symmetric.
//! * Symmetrise `(C⁻¹ + C⁻ᵀ)/2` every `sym_every` updates (default 64) \[library choice\],
//!   for callers who load an inverse that is not exactly symmetric; with the update above it
//!   changes nothing on a matrix this module produced. `0` never symmetrises.
//! * `b_t` is clamped at ≥ 0 \[library choice\] (rank-1 downdates can lose definiteness in
//!   `f32`); the clamped value is the one reported and the one in `1 + b`.
//! * Dot products use 8 interleaved `f32` accumulators combined in a fixed order, so every
//!   thread count gives the same bits.
//! * A non-finite `φ`, `u` or `b`, or a `u` whose outer product would overflow, is
//!   [`TmError::NonFinite`] and leaves `C⁻¹` unchanged. The inverse itself is not
//!   re-validated each step (that would double the cost): keep it from outside writes.

use crate::exploration::check_finite;
use crate::logits::{run_rows, SplitRows, Status};
use crate::{Exec, TmError};

/// E3B's hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct E3bCfg {
    /// Ridge `λ` of `C = λI + Σ φφᵀ` (source: 0.1). Finite, `> 0`, with `1/λ` finite.
    pub ridge: f32,
    /// Symmetrise every this many updates (default 64, 0 = never) \[library choice\].
    pub sym_every: u32,
    /// Report 0 for the first step after a reset (source: true).
    pub zero_first_step: bool,
}

impl Default for E3bCfg {
    fn default() -> Self {
        E3bCfg { ridge: 0.1, sym_every: 64, zero_first_step: true }
    }
}

impl E3bCfg {
    fn validate(&self) -> Result<(), TmError> {
        if !(self.ridge.is_finite() && self.ridge > 0.0 && (1.0 / self.ridge).is_finite()) {
            return Err(TmError::InvalidArgument("E3B ridge must be finite and > 0 with a finite 1/ridge"));
        }
        Ok(())
    }
}

fn check_d(d: usize) -> Result<usize, TmError> {
    if d == 0 {
        return Err(TmError::InvalidArgument("E3B feature dimension d must be >= 1"));
    }
    d.checked_mul(d).ok_or(TmError::SizeOverflow { what: "c_inv" })
}

/// `C⁻¹ = (1/λ)·I` into the `d×d` row-major `c_inv` (episode start).
pub fn e3b_reset(cfg: &E3bCfg, d: usize, c_inv: &mut [f32]) -> Result<(), TmError> {
    cfg.validate()?;
    let dd = check_d(d)?;
    crate::error::check_len("c_inv", dd, c_inv.len())?;
    let diag = 1.0 / cfg.ridge;
    c_inv.fill(0.0);
    for i in 0..d {
        c_inv[i * d + i] = diag;
    }
    Ok(())
}

/// `Σ a_i·b_i` with 8 interleaved accumulators combined pairwise in a fixed order.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    for (k, (x, y)) in ar.iter().zip(br).enumerate() {
        acc[k] += x * y;
    }
    ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]))
}

/// Phase 1 (reads only): `u = C⁻¹φ` into `u`, returns the clamped `b` and `s = 1/(1+b)`.
fn prepare(d: usize, c_inv: &[f32], phi: &[f32], u: &mut [f32]) -> Result<(f32, f32), TmError> {
    check_finite("phi", phi)?;
    let mut umax = 0.0f32;
    for (i, ui) in u.iter_mut().enumerate() {
        *ui = dot(&c_inv[i * d..(i + 1) * d], phi);
        umax = umax.max(ui.abs());
    }
    check_finite("u = c_inv·phi", u)?;
    let b = dot(phi, u).max(0.0);
    if !b.is_finite() {
        return Err(TmError::NonFinite { what: "bonus phiᵀ·c_inv·phi", index: 0 });
    }
    let s = 1.0 / (1.0 + b);
    if !((umax * umax) * s).is_finite() {
        return Err(TmError::NonFinite { what: "u·uᵀ/(1 + b) (overflows f32)", index: 0 });
    }
    Ok((b, s))
}

/// Phase 2: the rank-1 update and the periodic symmetrisation; `step` counts the updates
/// since the reset, this one excluded.
fn apply(cfg: &E3bCfg, d: usize, c_inv: &mut [f32], u: &[f32], s: f32, step: u64) {
    for (i, row) in c_inv.chunks_exact_mut(d).enumerate() {
        let ui = u[i];
        for (c, &uj) in row.iter_mut().zip(u) {
            *c -= (ui * uj) * s;
        }
    }
    if cfg.sym_every != 0 && (step.wrapping_add(1)).is_multiple_of(u64::from(cfg.sym_every)) {
        for i in 0..d {
            for j in i + 1..d {
                let m = (c_inv[i * d + j] + c_inv[j * d + i]) * 0.5;
                c_inv[i * d + j] = m;
                c_inv[j * d + i] = m;
            }
        }
    }
}

fn reported(cfg: &E3bCfg, b: f32, step: u64) -> f32 {
    if cfg.zero_first_step && step == 0 {
        0.0
    } else {
        b
    }
}

/// One E3B step for one environment: returns the reported bonus and updates `c_inv`.
///
/// `step` is the number of updates since the last [`e3b_reset`] (0 for the episode's first
/// step); the caller increments it. `scratch` holds `d` floats (`u`). On error `c_inv` is
/// unchanged.
pub fn e3b_step(
    cfg: &E3bCfg,
    d: usize,
    c_inv: &mut [f32],
    phi: &[f32],
    step: u64,
    scratch: &mut [f32],
) -> Result<f32, TmError> {
    cfg.validate()?;
    let dd = check_d(d)?;
    crate::error::check_len("c_inv", dd, c_inv.len())?;
    crate::error::check_len("phi", d, phi.len())?;
    crate::error::check_len("scratch", d, scratch.len())?;
    let (b, s) = prepare(d, c_inv, phi, scratch)?;
    apply(cfg, d, c_inv, scratch, s, step);
    Ok(reported(cfg, b, step))
}

/// The batched form: one `d×d` inverse per environment (`c_inv` is `[n_env, d, d]`), as
/// the Sample-Factory port's `learner.py::_compute_intrinsic_rewards`. Environment `k`
/// reads `phi[k·d..]`, its update count `steps[k]` (not incremented here), and writes
/// `bonus[k]`; `scratch` holds `n_env·d` floats. Environments are split over
/// `exec`'s threads.
///
/// Every environment's `u` and `b` are computed and checked before any inverse changes, so
/// an error (the first in environment order) leaves `c_inv` and `bonus` unchanged.
#[allow(clippy::too_many_arguments)]
pub fn e3b_step_batch(
    exec: &Exec,
    cfg: &E3bCfg,
    d: usize,
    c_inv: &mut [f32],
    phi: &[f32],
    steps: &[u64],
    scratch: &mut [f32],
    bonus: &mut [f32],
) -> Result<(), TmError> {
    exec.check_backend()?;
    cfg.validate()?;
    let dd = check_d(d)?;
    let n = bonus.len();
    let need = |what: &'static str, per: usize, got: usize| {
        let want = n.checked_mul(per).ok_or(TmError::SizeOverflow { what })?;
        crate::error::check_len(what, want, got)
    };
    need("c_inv", dd, c_inv.len())?;
    need("phi", d, phi.len())?;
    need("steps", 1, steps.len())?;
    need("scratch", d, scratch.len())?;
    if n == 0 {
        return Ok(());
    }
    // Phase 1: u and b for every environment, checked; nothing observable changes.
    let first_err = par_envs(exec.threads(), n, scratch, &|k, u: &mut [f32]| {
        prepare(d, &c_inv[k * dd..(k + 1) * dd], &phi[k * d..(k + 1) * d], u).map(|_| ())
    });
    first_err?;
    // Phase 2: recompute b from the stored u (same code, same bits) and update.
    let u_all: &[f32] = scratch;
    par_update(exec.threads(), n, c_inv, dd, bonus, &|k, c: &mut [f32], out: &mut f32| {
        let u = &u_all[k * d..(k + 1) * d];
        let b = dot(&phi[k * d..(k + 1) * d], u).max(0.0);
        apply(cfg, d, c, u, 1.0 / (1.0 + b), steps[k]);
        *out = reported(cfg, b, steps[k]);
    });
    Ok(())
}

/// Per-environment slices for the thread driver: `per` floats of `data` and (if not empty)
/// one float of `out` per environment.
struct Envs<'a> {
    data: &'a mut [f32],
    per: usize,
    out: &'a mut [f32],
}

impl SplitRows for Envs<'_> {
    fn split_rows(self, mid: usize) -> (Self, Self) {
        let (da, db) = self.data.split_at_mut(mid * self.per);
        let (oa, ob) = self.out.split_at_mut(mid.min(self.out.len()));
        (Envs { data: da, per: self.per, out: oa }, Envs { data: db, per: self.per, out: ob })
    }
}

/// The per-environment body of [`par_envs`].
type EnvFn<'a> = dyn Fn(usize, &mut [f32]) -> Result<(), TmError> + Sync + 'a;

/// Runs `f(k, u_k)` over the environments' `d`-float scratch slices, split over `threads`
/// by the logits family's driver ([`run_rows`]); the first error in environment order wins.
fn par_envs(threads: usize, n: usize, scratch: &mut [f32], f: &EnvFn<'_>) -> Result<(), TmError> {
    let d = scratch.len() / n;
    let envs = Envs { data: scratch, per: d, out: &mut [] };
    run_rows(threads, n, envs, &|start, _end, e: Envs<'_>| {
        for (j, u) in e.data.chunks_exact_mut(d).enumerate() {
            f(start + j, u)?;
        }
        Ok(Status::default())
    })
    .map(|_| ())
}

/// Runs `f(k, C⁻¹_k, bonus_k)` over the environments, split over `threads` ([`run_rows`]).
fn par_update(
    threads: usize,
    n: usize,
    c: &mut [f32],
    dd: usize,
    bonus: &mut [f32],
    f: &(dyn Fn(usize, &mut [f32], &mut f32) + Sync),
) {
    let envs = Envs { data: c, per: dd, out: bonus };
    let done = run_rows(threads, n, envs, &|start, _end, e: Envs<'_>| {
        for (j, (cj, bj)) in e.data.chunks_exact_mut(dd).zip(e.out.iter_mut()).enumerate() {
            f(start + j, cj, bj);
        }
        Ok(Status::default())
    });
    debug_assert!(done.is_ok(), "the update never fails");
}

/// One environment's E3B state over a caller-owned `d×d` buffer, counting its own steps.
#[derive(Debug)]
pub struct E3b<'a> {
    cfg: E3bCfg,
    d: usize,
    c_inv: &'a mut [f32],
    steps: u64,
}

impl<'a> E3b<'a> {
    /// Takes the buffer (`d·d` floats) and resets it to `(1/λ)·I`.
    pub fn new(cfg: E3bCfg, d: usize, c_inv: &'a mut [f32]) -> Result<Self, TmError> {
        e3b_reset(&cfg, d, c_inv)?;
        Ok(E3b { cfg, d, c_inv, steps: 0 })
    }

    /// Episode start: `C⁻¹ = (1/λ)·I`, step count 0. (Never call it for the lifelong variant.)
    pub fn reset(&mut self) {
        // Cannot fail: validated in `new`.
        let _ = e3b_reset(&self.cfg, self.d, self.c_inv);
        self.steps = 0;
    }

    /// The reported bonus of `phi` (`d` floats), then the update; `scratch` holds `d` floats.
    pub fn bonus_and_update(&mut self, phi: &[f32], scratch: &mut [f32]) -> Result<f32, TmError> {
        let b = e3b_step(&self.cfg, self.d, self.c_inv, phi, self.steps, scratch)?;
        self.steps += 1;
        Ok(b)
    }

    /// Updates since the last reset.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The current inverse, `d×d` row-major.
    pub fn c_inv(&self) -> &[f32] {
        self.c_inv
    }
}
