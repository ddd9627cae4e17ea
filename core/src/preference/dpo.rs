//! DPO (arXiv 2305.18290) and SimPO (arXiv 2405.14734): sequence log-ratios, the
//! label-smoothed logistic loss of the margin, and their gradients.
//!
//! # The math
//!
//! For a prompt `x`, a preferred response `y_w` and a rejected one `y_l`:
//!
//! ```text
//! ρ(y)  = Σ_t mask_t·(logπ_θ(y_t | x, y_<t) − logπ_ref(y_t | x, y_<t))      seq_logratio
//! h     = β·(ρ(y_w) − ρ(y_l))                                               DPO margin
//! L     = (1 − ε)·softplus(−h) + ε·softplus(h)                              dpo_loss
//! ∂L/∂h = −(1 − ε)·σ(−h) + ε·σ(h)
//! ∂L/∂logπ_θ(y_w,t) = β·∂L/∂h·mask_t,   ∂L/∂logπ_θ(y_l,t) = −β·∂L/∂h·mask_t   (seq_logratio_bwd)
//! ```
//!
//! `ε` is label smoothing in its conservative form (cDPO / robust DPO), exactly TRL's
//! `loss_type="sigmoid"` with `label_smoothing`; `ε = 0` is the DPO loss `−log σ(h)`.
//! `β·ρ(y)` is DPO's implicit reward (TRL's `chosen_rewards`/`rejected_rewards`); the
//! per-token implicit reward `β·(logπ_θ − logπ_ref)` is what T-REG ([`super::t_reg`]) uses.
//!
//! SimPO is reference-free and length-normalised:
//!
//! ```text
//! h = (β/|y_w|)·Σ_t logπ(y_w,t) − (β/|y_l|)·Σ_t logπ(y_l,t) − γ,     L as above
//! ∂L/∂(Σ logπ(y_w)) = (β/|y_w|)·∂L/∂h,    ∂L/∂(Σ logπ(y_l)) = −(β/|y_l|)·∂L/∂h
//! ```
//!
//! (TRL's `CPOTrainer` with `loss_type="simpo"` applies the same label smoothing.)
//!
//! # Numerics
//!
//! `ρ` is accumulated in `f64` in token order and rounded once; `h`, `softplus` and `σ`
//! are evaluated in `f64` and rounded once \[library choice\] (see [the module
//! overview](super)). `softplus(x) = max(x, 0) + log1p(exp(−|x|))`; a term of weight 0 is
//! skipped, so `h = ±inf` gives `L ∈ {0, +inf}` rather than NaN.
//!
//! # Edge cases
//!
//! | input | result |
//! |---|---|
//! | an empty mask row | `ρ = 0` |
//! | masked positions | not read (NaN there is ignored); their gradient is 0 |
//! | NaN/±inf at a label position | propagates into `ρ`, `h`, `L` |
//! | SimPO `|y| = 0` | [`TmError::InvalidArgument`] (checked before anything is written) |
//! | `β` not finite and `> 0`, `ε ∉ [0, 1]`, `γ` not finite | [`TmError::InvalidArgument`] |
//!
//! # Defaults
//!
//! [`DpoCfg::default`] is TRL's `DPOConfig` (`beta = 0.1`, `label_smoothing = 0`);
//! [`SimpoCfg::default`] is TRL's `CPOConfig` with `loss_type="simpo"` (`beta = 0.1`,
//! `simpo_gamma = 0.5`, `label_smoothing = 0`). The SimPO paper tunes much larger `β`
//! (2–2.5) with `γ/β ≈ 0.5`; pass those explicitly.

use super::{check_beta, check_smoothing, check_tokens, smoothed_logistic};
use crate::error::{check_len, TmError};
use crate::platform::Exec;

/// DPO hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DpoCfg {
    /// `β` (finite, `> 0`). TRL default 0.1.
    pub beta: f32,
    /// Label smoothing `ε ∈ [0, 1]` (TRL recommends `≤ 0.5`). Default 0.
    pub label_smoothing: f32,
}

impl Default for DpoCfg {
    fn default() -> Self {
        DpoCfg { beta: 0.1, label_smoothing: 0.0 }
    }
}

/// SimPO hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SimpoCfg {
    /// `β` (finite, `> 0`). TRL `CPOConfig` default 0.1.
    pub beta: f32,
    /// Target reward margin `γ` (finite). TRL `simpo_gamma` default 0.5.
    pub gamma: f32,
    /// Label smoothing `ε ∈ [0, 1]`. Default 0.
    pub label_smoothing: f32,
}

impl Default for SimpoCfg {
    fn default() -> Self {
        SimpoCfg { beta: 0.1, gamma: 0.5, label_smoothing: 0.0 }
    }
}

/// Per-pair outputs of [`dpo_loss`] and [`simpo_loss`] (each one entry per pair).
#[derive(Debug)]
pub struct PairOut<'a> {
    /// The loss `L` of each pair.
    pub loss: &'a mut [f32],
    /// `∂L/∂h` of each pair.
    pub dl_dh: &'a mut [f32],
    /// The margin `h` of each pair (what T-REG's [`super::t_reg::treg_loss`] takes); `None`
    /// = not wanted.
    pub margin: Option<&'a mut [f32]>,
}

impl PairOut<'_> {
    fn validate(&self, n: usize) -> Result<(), TmError> {
        check_len("loss", n, self.loss.len())?;
        check_len("dl_dh", n, self.dl_dh.len())?;
        if let Some(m) = &self.margin {
            check_len("margin", n, m.len())?;
        }
        Ok(())
    }

    fn write(&mut self, i: usize, h: f64, eps: f64) {
        let (l, g) = smoothed_logistic(h, eps);
        self.loss[i] = l as f32;
        self.dl_dh[i] = g as f32;
        if let Some(m) = self.margin.as_deref_mut() {
            m[i] = h as f32;
        }
    }
}

/// `ρ[r] = Σ_t mask[r,t]·(logp[r,t] − ref_logp[r,t])` for each of the `out.len()` rows of
/// `t` tokens. Accumulated in `f64`, rounded once; masked positions are not read.
pub fn seq_logratio(
    exec: Exec,
    t: usize,
    mask: &[u8],
    logp: &[f32],
    ref_logp: &[f32],
    out: &mut [f32],
) -> Result<(), TmError> {
    exec.check_backend()?;
    check_tokens(out.len(), t, &[("mask", mask.len()), ("logp", logp.len()), ("ref_logp", ref_logp.len())])?;
    for (r, o) in out.iter_mut().enumerate() {
        let mut acc = 0.0f64;
        for i in r * t..(r + 1) * t {
            if mask[i] != 0 {
                acc += logp[i] as f64 - ref_logp[i] as f64;
            }
        }
        *o = acc as f32;
    }
    Ok(())
}

/// The backward of [`seq_logratio`] (and of a masked sum of log-probs, SimPO's input):
/// `grad[r,t] = g_rho[r]·mask[r,t]` (exactly 0 at masked positions) for each of the
/// `g_rho.len()` rows of `t` tokens. For DPO pass `g_rho = β·∂L/∂h` for `y_w` and
/// `−β·∂L/∂h` for `y_l`.
pub fn seq_logratio_bwd(exec: Exec, t: usize, mask: &[u8], g_rho: &[f32], grad: &mut [f32]) -> Result<(), TmError> {
    exec.check_backend()?;
    check_tokens(g_rho.len(), t, &[("mask", mask.len()), ("grad", grad.len())])?;
    for (i, g) in grad.iter_mut().enumerate() {
        *g = if mask[i] != 0 { g_rho[i / t] } else { 0.0 };
    }
    Ok(())
}

/// DPO: per pair `h = β·(ρ_w − ρ_l)` (in `f64`), the label-smoothed loss and `∂L/∂h`.
pub fn dpo_loss(exec: Exec, cfg: &DpoCfg, rho_w: &[f32], rho_l: &[f32], mut out: PairOut<'_>) -> Result<(), TmError> {
    exec.check_backend()?;
    check_beta(cfg.beta)?;
    check_smoothing(cfg.label_smoothing)?;
    let n = rho_w.len();
    check_len("rho_l", n, rho_l.len())?;
    out.validate(n)?;
    let (beta, eps) = (cfg.beta as f64, cfg.label_smoothing as f64);
    for i in 0..n {
        out.write(i, beta * (rho_w[i] as f64 - rho_l[i] as f64), eps);
    }
    Ok(())
}

/// SimPO: per pair `h = (β/|y_w|)·logp_sum_w − (β/|y_l|)·logp_sum_l − γ` (in `f64`), the
/// label-smoothed loss and `∂L/∂h`. `len_*` are the response lengths (label tokens);
/// a zero length is [`TmError::InvalidArgument`].
pub fn simpo_loss(
    exec: Exec,
    cfg: &SimpoCfg,
    logp_sum_w: &[f32],
    len_w: &[u32],
    logp_sum_l: &[f32],
    len_l: &[u32],
    mut out: PairOut<'_>,
) -> Result<(), TmError> {
    exec.check_backend()?;
    check_beta(cfg.beta)?;
    check_smoothing(cfg.label_smoothing)?;
    if !cfg.gamma.is_finite() {
        return Err(TmError::InvalidArgument("SimPO gamma must be finite"));
    }
    let n = logp_sum_w.len();
    check_len("len_w", n, len_w.len())?;
    check_len("logp_sum_l", n, logp_sum_l.len())?;
    check_len("len_l", n, len_l.len())?;
    out.validate(n)?;
    if len_w.iter().chain(len_l).any(|&l| l == 0) {
        return Err(TmError::InvalidArgument("SimPO: a response has length 0 (|y| = 0)"));
    }
    let (beta, gamma, eps) = (cfg.beta as f64, cfg.gamma as f64, cfg.label_smoothing as f64);
    for i in 0..n {
        let h = beta / len_w[i] as f64 * logp_sum_w[i] as f64 - beta / len_l[i] as f64 * logp_sum_l[i] as f64 - gamma;
        out.write(i, h, eps);
    }
    Ok(())
}
