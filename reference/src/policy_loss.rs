//! f64 references for `tokenmath_core::policy_loss`.
//!
//! Transcribed from the formulas of spec `policy.md` §4–5 in the order they are written there,
//! with no attention to speed. Every function takes the same `f32` values the kernels see
//! (as `f64`), so differences are the kernels' rounding. Masks: any non-zero byte is valid.
//! Gradients are the spec's \[derived\] formulas; the tests check them by finite differences of
//! the value functions here.

/// Clip configuration (mirrors `ClipCfg`).
#[derive(Clone, Copy, Debug)]
pub struct Clip {
    /// `ε_low`.
    pub eps_low: f64,
    /// `ε_high`.
    pub eps_high: f64,
    /// Dual-clip `c` (`None` = off).
    pub c: Option<f64>,
    /// Symmetric log-ratio clamp (`None` = off).
    pub clamp: Option<f64>,
}

/// One PPO token (spec §4.2).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PpoToken {
    /// `ℓ` (times the importance weight).
    pub loss: f64,
    /// `∂ℓ/∂logp`.
    pub grad: f64,
    /// The clamped log-ratio `Δ̃`.
    pub dt: f64,
    /// `r = exp(Δ̃)`.
    pub r: f64,
    /// `1[l2 > l1]`.
    pub clipped: bool,
    /// `1[lc > l3 ∧ A < 0]`.
    pub dual: bool,
}

fn clampf(x: f64, lo: f64, hi: f64) -> f64 {
    if x < lo {
        lo
    } else if x > hi {
        hi
    } else {
        x
    }
}

/// PPO clipped surrogate of one token: value and gradient (spec §4.2).
pub fn ppo_token(logp: f64, old_logp: f64, adv: f64, w_is: f64, cfg: &Clip) -> PpoToken {
    let d = logp - old_logp;
    let c0 = cfg.clamp.unwrap_or(f64::INFINITY);
    let dt = clampf(d, -c0, c0);
    let r = dt.exp();
    let l1 = -adv * r;
    let l2 = -adv * clampf(r, 1.0 - cfg.eps_low, 1.0 + cfg.eps_high);
    let lc = l1.max(l2);
    let c = cfg.c.unwrap_or(f64::INFINITY);
    let l3 = -adv * c;
    let mut loss = if adv < 0.0 { lc.min(l3) } else { lc };
    if adv == 0.0 {
        loss = 0.0;
    }
    let in_range = d.abs() <= c0;
    let kappa = in_range
        && if adv > 0.0 {
            r <= 1.0 + cfg.eps_high
        } else if adv < 0.0 {
            r >= 1.0 - cfg.eps_low && r <= c
        } else {
            false
        };
    let grad = if kappa { -adv * r } else { 0.0 };
    PpoToken { loss: loss * w_is, grad: grad * w_is, dt, r, clipped: l2 > l1, dual: adv < 0.0 && lc > l3 }
}

/// PPO value only, as a function of `logp` (for finite differences).
pub fn ppo_value(logp: f64, old_logp: f64, adv: f64, w_is: f64, cfg: &Clip) -> f64 {
    ppo_token(logp, old_logp, adv, w_is, cfg).loss
}

/// GSPO of a whole `[B,T]` batch (spec §4.4): per-token `(ℓ, ∂ℓ/∂logp_{b,t})` with verl's
/// stop-gradient structure, and the sequence ratios `s_b`. Masked positions are 0.
#[allow(clippy::too_many_arguments)]
pub fn gspo(
    logp: &[f64],
    old_logp: &[f64],
    adv: &[f64],
    mask: &[u8],
    t: usize,
    eps_low: f64,
    eps_high: f64,
    cap: Option<f64>,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let rows = logp.len().checked_div(t).unwrap_or(0);
    let (mut loss, mut grad, mut s_rows) = (vec![0.0; logp.len()], vec![0.0; logp.len()], vec![]);
    let cap = cap.unwrap_or(f64::INFINITY);
    for b in 0..rows {
        let idx = b * t..(b + 1) * t;
        let valid: Vec<usize> = idx.clone().filter(|&i| mask[i] != 0).collect();
        let len = valid.len().max(1) as f64;
        let s_hat = valid.iter().map(|&i| logp[i] - old_logp[i]).sum::<f64>() / len;
        let s = s_hat.min(cap).exp();
        s_rows.push(s);
        for &i in &valid {
            let a = adv[i];
            let l1 = -a * s;
            let l2 = -a * clampf(s, 1.0 - eps_low, 1.0 + eps_high);
            loss[i] = if a == 0.0 { 0.0 } else { l1.max(l2) };
            let kappa = s_hat <= cap && ((a > 0.0 && s <= 1.0 + eps_high) || (a < 0.0 && s >= 1.0 - eps_low));
            grad[i] = if kappa { -a * s } else { 0.0 };
        }
    }
    (loss, grad, s_rows)
}

/// The pure GSPO sequence objective aggregated with `seq-mean-token-mean` over local
/// non-empty rows, for a per-response advantage `adv_row[b]`:
/// `J = Σ_b 1[L_b>0]·max(−A_b s_b, −A_b clip(s_b)) / N_seq`. Its gradient w.r.t. `logp_{b,t}`
/// (by finite differences) must equal the kernel's `w ⊙ ∂ℓ/∂logp` (spec §4.4).
#[allow(clippy::too_many_arguments)]
pub fn gspo_sequence_objective(
    logp: &[f64],
    old_logp: &[f64],
    adv_row: &[f64],
    mask: &[u8],
    t: usize,
    eps_low: f64,
    eps_high: f64,
    cap: Option<f64>,
) -> f64 {
    let cap = cap.unwrap_or(f64::INFINITY);
    let mut total = 0.0;
    let mut nseq = 0usize;
    for (b, &a) in adv_row.iter().enumerate() {
        let idx = b * t..(b + 1) * t;
        let valid: Vec<usize> = idx.filter(|&i| mask[i] != 0).collect();
        if valid.is_empty() {
            continue;
        }
        nseq += 1;
        let s_hat = valid.iter().map(|&i| logp[i] - old_logp[i]).sum::<f64>() / valid.len() as f64;
        let s = s_hat.min(cap).exp();
        total += (-a * s).max(-a * clampf(s, 1.0 - eps_low, 1.0 + eps_high));
    }
    if nseq == 0 {
        0.0
    } else {
        total / nseq as f64
    }
}

/// CISPO of one token (spec §4.5): `(ℓ, ∂ℓ/∂logp, r, w)` with `w` the clipped weight.
pub fn cispo_token(
    logp: f64,
    old_logp: f64,
    adv: f64,
    w_min: Option<f64>,
    w_max: Option<f64>,
    clamp: Option<f64>,
) -> (f64, f64, f64, f64) {
    let c0 = clamp.unwrap_or(f64::INFINITY);
    let r = clampf(logp - old_logp, -c0, c0).exp();
    let w = clampf(r, w_min.unwrap_or(f64::NEG_INFINITY), w_max.unwrap_or(f64::INFINITY));
    if adv == 0.0 {
        return (0.0, 0.0, r, w);
    }
    (-w * adv * logp, -w * adv, r, w)
}

/// SAPO of one token (spec §4.6): `(ℓ, ∂ℓ/∂logp)`.
pub fn sapo_token(logp: f64, old_logp: f64, adv: f64, tau_pos: f64, tau_neg: f64, clamp: Option<f64>) -> (f64, f64) {
    let c0 = clamp.unwrap_or(f64::INFINITY);
    let d = logp - old_logp;
    let r = clampf(d, -c0, c0).exp();
    let tau = if adv > 0.0 { tau_pos } else { tau_neg };
    let sig = 1.0 / (1.0 + (-tau * (r - 1.0)).exp());
    let gate = sig * 4.0 / tau;
    if adv == 0.0 {
        return (0.0, 0.0);
    }
    let grad = if d.abs() <= c0 { -4.0 * adv * r * sig * (1.0 - sig) } else { 0.0 };
    (-gate * adv, grad)
}

/// KL estimator kinds (mirrors `KlKind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kl {
    /// `d`.
    K1,
    /// `|d|`.
    Abs,
    /// `½d²`.
    K2,
    /// `e^{−d} + d − 1`.
    K3,
    /// value K1, gradient K2.
    K1Plus,
    /// value K3, gradient K2.
    K3Plus,
}

/// KL estimator of one token (spec §4.7): `(value, ∂/∂logp)`; `verl_clamps` as `KlCfg`.
pub fn kl_token(logp: f64, ref_logp: f64, kind: Kl, verl_clamps: bool) -> (f64, f64) {
    let d = logp - ref_logp;
    let k3 = || {
        if verl_clamps {
            let delta = clampf(-d, -20.0, 20.0);
            let k = delta.exp() - delta - 1.0;
            let pass = d.abs() <= 20.0 && k.abs() <= 10.0;
            (clampf(k, -10.0, 10.0), if pass { 1.0 - delta.exp() } else { 0.0 })
        } else {
            ((-d).exp() + d - 1.0, 1.0 - (-d).exp())
        }
    };
    match kind {
        Kl::K1 => (d, 1.0),
        Kl::Abs => (
            d.abs(),
            if d > 0.0 {
                1.0
            } else if d < 0.0 {
                -1.0
            } else {
                0.0
            },
        ),
        Kl::K2 => (0.5 * d * d, d),
        Kl::K3 => k3(),
        Kl::K1Plus => (d, d),
        Kl::K3Plus => (k3().0, d),
    }
}

/// Aggregation modes (mirrors `AggMode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Agg {
    /// token-mean
    TokenMean,
    /// seq-mean-token-sum
    SeqMeanTokenSum,
    /// seq-mean-token-mean
    SeqMeanTokenMean,
    /// seq-mean-token-sum-norm
    SeqMeanTokenSumNorm,
}

/// Aggregation denominators (mirrors `AggNorm`).
#[derive(Clone, Copy, Debug)]
pub struct Norm {
    /// Global token count.
    pub global_tokens: Option<f64>,
    /// Global sequence count.
    pub global_seqs: Option<f64>,
    /// Data-parallel size.
    pub dp: f64,
    /// Scale factor of seq-mean-token-sum-norm.
    pub scale: Option<f64>,
}

/// Scalar loss of the verl table (spec §5), written directly as the table's `L` column
/// (empty denominator ⇒ 0).
pub fn agg(loss: &[f64], mask: &[u8], t: usize, mode: Agg, n: &Norm) -> f64 {
    let rows = loss.len().checked_div(t).unwrap_or(0);
    let row = |b: usize| -> (f64, f64) {
        let mut s = 0.0;
        let mut l = 0.0;
        for i in b * t..(b + 1) * t {
            if mask[i] != 0 {
                s += loss[i];
                l += 1.0;
            }
        }
        (s, l)
    };
    let n_tok = n.global_tokens.unwrap_or_else(|| (0..rows).map(|b| row(b).1).sum());
    let n_seq = n.global_seqs.unwrap_or_else(|| (0..rows).filter(|&b| row(b).1 > 0.0).count() as f64);
    let div = |x: f64, d: f64| if d == 0.0 { 0.0 } else { x / d };
    match mode {
        Agg::TokenMean => div((0..rows).map(|b| row(b).0).sum::<f64>(), n_tok) * n.dp,
        Agg::SeqMeanTokenSum => div((0..rows).map(|b| row(b).0).sum::<f64>(), n_seq) * n.dp,
        Agg::SeqMeanTokenMean => {
            let s: f64 = (0..rows)
                .map(|b| {
                    let (s, l) = row(b);
                    if l > 0.0 {
                        s / l
                    } else {
                        0.0
                    }
                })
                .sum();
            div(s, n_seq) * n.dp
        }
        Agg::SeqMeanTokenSumNorm => div((0..rows).map(|b| row(b).0).sum::<f64>(), n.scale.unwrap_or(t as f64)),
    }
}

/// Truncated importance weights (spec §4.8): token level (`sequence = false`) or sequence
/// level; 0 at masked positions.
pub fn tis(old_logp: &[f64], rollout_logp: &[f64], mask: &[u8], t: usize, sequence: bool, cap: f64) -> Vec<f64> {
    let mut out = vec![0.0; old_logp.len()];
    let rows = old_logp.len().checked_div(t).unwrap_or(0);
    for b in 0..rows {
        let idx = b * t..(b + 1) * t;
        let seq: f64 = idx.clone().filter(|&i| mask[i] != 0).map(|i| old_logp[i] - rollout_logp[i]).sum();
        for i in idx {
            if mask[i] != 0 {
                let lr = if sequence { seq } else { old_logp[i] - rollout_logp[i] };
                let e = lr.exp();
                out[i] = if e > cap { cap } else { e };
            }
        }
    }
    out
}

/// Central finite difference `(f(x+h) − f(x−h)) / 2h`.
pub fn central_diff(f: impl Fn(f64) -> f64, x: f64, h: f64) -> f64 {
    (f(x + h) - f(x - h)) / (2.0 * h)
}
