//! T-REG: token-level reward regularisation of DPO/SimPO (arXiv 2412.02685).
//!
//! # The math
//!
//! **Self-generated token rewards** (contrastive prompting): with the frozen evaluation
//! model's per-token log-probs of the response under a prompt asking to make it better
//! (`lp_better`) and one asking to make it worse (`lp_worse`):
//!
//! ```text
//! r̂_t = σ(lp_better_t − lp_worse_t) − 0.5 = 0.5·tanh((lp_better_t − lp_worse_t)/2)  ∈ (−0.5, 0.5)
//! ```
//!
//! (the `tanh` form is the same number without the cancellation of `σ(d) − 0.5` near
//! `d = 0`). Masked positions have no reward: 0.
//!
//! **Regulariser**, the reward-weighted LM loss whose gradient is that of aligning DPO's
//! implicit token reward `β·(logπ_θ − logπ_ref)` with `r̂`:
//!
//! ```text
//! L_REG(y) = −Σ_t mask_t·β·r̂_t·logπ_θ(y_t)          Reduction::Sum (default)
//!          = −(1/n)·Σ_t mask_t·β·r̂_t·logπ_θ(y_t)    Reduction::MeanOverMask, n = Σ_t mask_t
//! ∂L_REG/∂logπ_θ(y_t) = −β·r̂_t·mask_t  (/n)
//! ```
//!
//! **Total loss** per pair, with the DPO (or SimPO) margin `h` and loss `ℓ(h)` of
//! [`super::dpo`]:
//!
//! ```text
//! w        = sg(σ(−h))                              (stop-gradient: default on)
//! L_T-REG  = ℓ(h) + α·w·(L_REG(y_w) + L_REG(y_l))
//! ∂L/∂h    = ℓ'(h)                    [+ α·(L_REG(y_w) + L_REG(y_l))·(−σ(h)·σ(−h)) without stop-gradient]
//! ∂L/∂L_REG(y_w) = ∂L/∂L_REG(y_l) = α·w
//! ```
//!
//! The per-token gradient of `L_T-REG` w.r.t. `logπ_θ(y_t)` is then
//! `±β·∂L/∂h·mask_t + α·w·∂L_REG/∂logπ_θ(y_t)`: chain [`treg_loss`]'s outputs with
//! [`treg_reg_loss`]'s gradient and [`super::dpo::seq_logratio_bwd`].
//!
//! # Choices where the paper is silent (⚠ in the spec)
//!
//! * The reduction of `L_REG` over tokens: [`Reduction::Sum`] (default, what the paper's
//!   equation reads) or [`Reduction::MeanOverMask`] \[library choice\]. An empty mask gives
//!   `L_REG = 0` and a zero gradient in both.
//! * Whether `w` is a stop-gradient: [`TregCfg::stop_grad_weight`], default `true`
//!   \[library choice\] (`w` is described as a weight, DPO's own gradient coefficient).
//! * Defaults: `α = 0.25` (the middle of the paper's search grid `{0.1, 0.25, 0.5}`)
//!   \[library choice\]; `ε = 0`; `β` is DPO's.

use super::{check_beta, check_smoothing, check_tokens, sigmoid, smoothed_logistic};
use crate::error::{check_len, TmError};
use crate::platform::Exec;

/// How [`treg_reg_loss`] reduces over the tokens of a response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reduction {
    /// `Σ_t` over the mask (the paper's equation; default).
    #[default]
    Sum,
    /// `Σ_t / Σ_t mask_t` (0 for an empty mask).
    MeanOverMask,
}

/// Hyper-parameters of [`treg_reg_loss`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TregRegCfg {
    /// DPO's `β` (finite, `> 0`; default 0.1, TRL's DPO default).
    pub beta: f32,
    /// Token reduction (default [`Reduction::Sum`]).
    pub reduction: Reduction,
}

impl Default for TregRegCfg {
    fn default() -> Self {
        TregRegCfg { beta: 0.1, reduction: Reduction::Sum }
    }
}

/// Hyper-parameters of [`treg_loss`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TregCfg {
    /// `α` (finite, `≥ 0`; default 0.25).
    pub alpha: f32,
    /// Label smoothing `ε ∈ [0, 1]` of the base loss (default 0).
    pub label_smoothing: f32,
    /// `w = sg(σ(−h))` when `true` (default), `w = σ(−h)` with its gradient otherwise.
    pub stop_grad_weight: bool,
}

impl Default for TregCfg {
    fn default() -> Self {
        TregCfg { alpha: 0.25, label_smoothing: 0.0, stop_grad_weight: true }
    }
}

/// Per-pair outputs of [`treg_loss`] (each one entry per pair).
#[derive(Debug)]
pub struct TregOut<'a> {
    /// `L_T-REG`.
    pub loss: &'a mut [f32],
    /// `∂L/∂h`.
    pub dl_dh: &'a mut [f32],
    /// `∂L/∂L_REG(y_w) = ∂L/∂L_REG(y_l) = α·w`.
    pub dl_dreg: &'a mut [f32],
    /// The weight `w = σ(−h)`; `None` = not wanted.
    pub weight: Option<&'a mut [f32]>,
}

/// `out[i] = σ(lp_better[i] − lp_worse[i]) − 0.5` where `mask[i] != 0`, else 0 (computed as
/// `0.5·tanh(d/2)` in `f64`).
pub fn treg_token_rewards(
    exec: Exec,
    mask: &[u8],
    lp_better: &[f32],
    lp_worse: &[f32],
    out: &mut [f32],
) -> Result<(), TmError> {
    exec.check_backend()?;
    let n = out.len();
    check_len("mask", n, mask.len())?;
    check_len("lp_better", n, lp_better.len())?;
    check_len("lp_worse", n, lp_worse.len())?;
    for i in 0..n {
        out[i] = if mask[i] != 0 {
            let d = lp_better[i] as f64 - lp_worse[i] as f64;
            (0.5 * libm::tanh(0.5 * d)) as f32
        } else {
            0.0
        };
    }
    Ok(())
}

/// The reward-weighted LM loss `L_REG` of each of the `loss.len()` rows of `t` tokens, and
/// its gradient w.r.t. `logp` (`[rows, t]`, 0 at masked positions). Sums in `f64`.
#[allow(clippy::too_many_arguments)]
pub fn treg_reg_loss(
    exec: Exec,
    cfg: &TregRegCfg,
    t: usize,
    mask: &[u8],
    logp: &[f32],
    r_hat: &[f32],
    loss: &mut [f32],
    grad: &mut [f32],
) -> Result<(), TmError> {
    exec.check_backend()?;
    check_beta(cfg.beta)?;
    check_tokens(
        loss.len(),
        t,
        &[("mask", mask.len()), ("logp", logp.len()), ("r_hat", r_hat.len()), ("grad", grad.len())],
    )?;
    let beta = cfg.beta as f64;
    for (r, l) in loss.iter_mut().enumerate() {
        let row = r * t..(r + 1) * t;
        let count = mask[row.clone()].iter().filter(|&&m| m != 0).count();
        let scale = match cfg.reduction {
            Reduction::Sum => 1.0,
            Reduction::MeanOverMask if count == 0 => 0.0,
            Reduction::MeanOverMask => 1.0 / count as f64,
        };
        let mut acc = 0.0f64;
        for i in row {
            if mask[i] != 0 {
                let c = -beta * r_hat[i] as f64 * scale;
                acc += c * logp[i] as f64;
                grad[i] = c as f32;
            } else {
                grad[i] = 0.0;
            }
        }
        *l = acc as f32;
    }
    Ok(())
}

/// The T-REG total loss per pair from the margin `h` (of [`super::dpo::dpo_loss`] or
/// [`super::dpo::simpo_loss`]) and the two responses' `L_REG` (of [`treg_reg_loss`]).
pub fn treg_loss(
    exec: Exec,
    cfg: &TregCfg,
    h: &[f32],
    reg_w: &[f32],
    reg_l: &[f32],
    mut out: TregOut<'_>,
) -> Result<(), TmError> {
    exec.check_backend()?;
    check_smoothing(cfg.label_smoothing)?;
    if !(cfg.alpha.is_finite() && cfg.alpha >= 0.0) {
        return Err(TmError::InvalidArgument("T-REG alpha must be finite and >= 0"));
    }
    let n = h.len();
    check_len("reg_w", n, reg_w.len())?;
    check_len("reg_l", n, reg_l.len())?;
    check_len("loss", n, out.loss.len())?;
    check_len("dl_dh", n, out.dl_dh.len())?;
    check_len("dl_dreg", n, out.dl_dreg.len())?;
    if let Some(w) = &out.weight {
        check_len("weight", n, w.len())?;
    }
    let (alpha, eps) = (cfg.alpha as f64, cfg.label_smoothing as f64);
    for i in 0..n {
        let hi = h[i] as f64;
        let (base, mut g) = smoothed_logistic(hi, eps);
        let w = sigmoid(-hi);
        let reg = reg_w[i] as f64 + reg_l[i] as f64;
        // α = 0 switches the regulariser off entirely (no 0·inf from an infinite L_REG).
        let (loss, dreg) = if alpha == 0.0 { (base, 0.0) } else { (base + alpha * w * reg, alpha * w) };
        if !cfg.stop_grad_weight && alpha != 0.0 {
            g -= alpha * reg * sigmoid(hi) * w;
        }
        out.loss[i] = loss as f32;
        out.dl_dh[i] = g as f32;
        out.dl_dreg[i] = dreg as f32;
        if let Some(wo) = out.weight.as_deref_mut() {
            wo[i] = w as f32;
        }
    }
    Ok(())
}
