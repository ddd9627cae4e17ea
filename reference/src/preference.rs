//! `f64` references of `tokenmath_core::preference`: DPO/SimPO, T-REG, cDPO (scores with
//! the combined row materialised and a textbook two-pass log-softmax, as the released code
//! does), pass@k as a ratio of log-binomials via `lgamma`.

fn softplus(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        x.exp() / (1.0 + x.exp())
    }
}

/// `(ℓ(h), ℓ'(h))` of the label-smoothed logistic loss (zero-weight terms skipped).
pub fn smoothed_logistic(h: f64, eps: f64) -> (f64, f64) {
    let (mut l, mut g) = (0.0, 0.0);
    if eps != 1.0 {
        l += (1.0 - eps) * softplus(-h);
        g -= (1.0 - eps) * sigmoid(-h);
    }
    if eps != 0.0 {
        l += eps * softplus(h);
        g += eps * sigmoid(h);
    }
    (l, g)
}

/// `Σ_t mask·(logp − ref_logp)` of one row.
pub fn seq_logratio(mask: &[u8], logp: &[f32], ref_logp: &[f32]) -> f64 {
    (0..mask.len()).filter(|&i| mask[i] != 0).map(|i| logp[i] as f64 - ref_logp[i] as f64).sum()
}

/// DPO `(loss, dl_dh, h)` of one pair.
pub fn dpo(beta: f64, eps: f64, rho_w: f64, rho_l: f64) -> (f64, f64, f64) {
    let h = beta * (rho_w - rho_l);
    let (l, g) = smoothed_logistic(h, eps);
    (l, g, h)
}

/// SimPO `(loss, dl_dh, h)` of one pair.
pub fn simpo(beta: f64, gamma: f64, eps: f64, sw: f64, lw: u32, sl: f64, ll: u32) -> (f64, f64, f64) {
    let h = beta / lw as f64 * sw - beta / ll as f64 * sl - gamma;
    let (l, g) = smoothed_logistic(h, eps);
    (l, g, h)
}

/// T-REG token reward `σ(b − w) − 0.5`.
pub fn treg_token_reward(lp_better: f64, lp_worse: f64) -> f64 {
    sigmoid(lp_better - lp_worse) - 0.5
}

/// T-REG `L_REG` of one row and its gradient (`mean` = mean over the mask).
pub fn treg_reg(beta: f64, mean: bool, mask: &[u8], logp: &[f32], r_hat: &[f32]) -> (f64, Vec<f64>) {
    let n = mask.iter().filter(|&&m| m != 0).count();
    let scale = if mean {
        if n == 0 {
            0.0
        } else {
            1.0 / n as f64
        }
    } else {
        1.0
    };
    let mut loss = 0.0;
    let grad = (0..mask.len())
        .map(|i| {
            if mask[i] == 0 {
                return 0.0;
            }
            loss -= beta * r_hat[i] as f64 * logp[i] as f64 * scale;
            -beta * r_hat[i] as f64 * scale
        })
        .collect();
    (loss, grad)
}

/// T-REG total `(loss, dl_dh, dl_dreg, w)` of one pair.
pub fn treg(alpha: f64, eps: f64, stop_grad: bool, h: f64, reg_w: f64, reg_l: f64) -> (f64, f64, f64, f64) {
    let (base, mut g) = smoothed_logistic(h, eps);
    let w = sigmoid(-h);
    if alpha == 0.0 {
        return (base, g, 0.0, w);
    }
    if !stop_grad {
        g += alpha * (reg_w + reg_l) * (-sigmoid(h) * sigmoid(-h));
    }
    (base + alpha * w * (reg_w + reg_l), g, alpha * w, w)
}

/// cDPO CE score of one row: the combined row materialised (a column `−inf` in either
/// model is excluded), then `softmax[target]` by a two-pass log-softmax in `f64`.
pub fn cdpo_ce_score(beta: f64, pos: &[f64], neg: &[f64], target: usize) -> f64 {
    let z: Vec<f64> = pos
        .iter()
        .zip(neg)
        .map(|(&p, &n)| {
            if p == f64::NEG_INFINITY || n == f64::NEG_INFINITY {
                f64::NEG_INFINITY
            } else {
                (1.0 + beta) * p - beta * n
            }
        })
        .collect();
    let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let s: f64 = z.iter().map(|&v| (v - m).exp()).sum();
    (z[target] - m - s.ln()).exp()
}

/// cDPO loss and gradients (`positionwise` = the released code's form).
#[allow(clippy::too_many_arguments)]
pub fn cdpo_loss(
    beta: f64,
    eps: f64,
    positionwise: bool,
    t: usize,
    mask_w: &[u8],
    mask_l: &[u8],
    dw: &[f32],
    dl: &[f32],
    c: Option<&[f32]>,
    v: &[f32],
) -> (f64, Vec<f64>, Vec<f64>) {
    let n = dw.len();
    let cw = |i: usize| c.map_or(1.0, |c| c[i] as f64);
    let ch = |i: usize| if mask_w[i] != 0 { cw(i) * dw[i] as f64 } else { 0.0 };
    let rj = |i: usize| if mask_l[i] != 0 { v[i] as f64 * dl[i] as f64 } else { 0.0 };
    let (mut gw, mut gl) = (vec![0.0; n], vec![0.0; n]);
    let mut total = 0.0;
    let mut put = |i: usize, g: f64| {
        gw[i] = if mask_w[i] != 0 { g * beta * cw(i) } else { 0.0 };
        gl[i] = if mask_l[i] != 0 { -g * beta * v[i] as f64 } else { 0.0 };
    };
    if positionwise {
        for i in 0..n {
            let (l, g) = smoothed_logistic(beta * (ch(i) - rj(i)), eps);
            total += l / n as f64;
            put(i, g / n as f64);
        }
    } else {
        let rows = n / t;
        for r in 0..rows {
            let h: f64 = (r * t..(r + 1) * t).map(|i| ch(i) - rj(i)).sum();
            let (l, g) = smoothed_logistic(beta * h, eps);
            total += l / rows as f64;
            for i in r * t..(r + 1) * t {
                put(i, g / rows as f64);
            }
        }
    }
    (total, gw, gl)
}

fn ln_gamma(x: f64) -> f64 {
    // Lanczos (g = 7, n = 9), accurate to ~1e-15 relative for x ≥ 0.5.
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// `log C(n, k)` via log-gamma.
pub fn ln_binomial(n: u64, k: u64) -> f64 {
    ln_gamma(n as f64 + 1.0) - ln_gamma(k as f64 + 1.0) - ln_gamma((n - k) as f64 + 1.0)
}

/// pass@k `1 − C(n−c,k)/C(n,k)` via log-gamma (absolute accuracy ~1e-9 at `n = 10^6`).
pub fn pass_at_k(n: u64, c: u64, k: u64) -> f64 {
    if c == 0 {
        return 0.0;
    }
    if n - c < k {
        return 1.0;
    }
    -(ln_binomial(n - c, k) - ln_binomial(n, k)).exp_m1()
}

/// TVM labels by the definition: for each token, count the paths sharing its prefix
/// (`O(N²·L)`).
pub fn tvm_labels(paths: &[Vec<u32>], outcome: &[u8]) -> Vec<Vec<f64>> {
    paths
        .iter()
        .map(|p| {
            (1..=p.len())
                .map(|k| {
                    let (mut v, mut c) = (0u64, 0u64);
                    for (q, &o) in paths.iter().zip(outcome) {
                        if q.len() >= k && q[..k] == p[..k] {
                            v += 1;
                            c += o as u64;
                        }
                    }
                    c as f64 / v as f64
                })
                .collect()
        })
        .collect()
}

/// TVM value loss `(L, grad)` over the mask: `bce` or MSE on `σ(x)`, token mean.
pub fn tvm_value_loss(bce: bool, mask: &[u8], x: &[f32], y: &[f32]) -> (f64, Vec<f64>) {
    let n = mask.iter().filter(|&&m| m != 0).count();
    let inv = if n == 0 { 0.0 } else { 1.0 / n as f64 };
    let mut total = 0.0;
    let grad = (0..mask.len())
        .map(|i| {
            if mask[i] == 0 {
                return 0.0;
            }
            let (x, y) = (x[i] as f64, y[i] as f64);
            let p = sigmoid(x);
            if bce {
                total += (softplus(x) - y * x) * inv;
                (p - y) * inv
            } else {
                total += (p - y) * (p - y) * inv;
                2.0 * (p - y) * p * (1.0 - p) * inv
            }
        })
        .collect();
    (total, grad)
}

/// Beam selection by a full sort: score descending, NaN last, ties by index.
pub fn beam_select(scores: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| {
        let (sa, sb) = (scores[a], scores[b]);
        match (sa.is_nan(), sb.is_nan()) {
            (false, true) => std::cmp::Ordering::Less,
            (true, false) => std::cmp::Ordering::Greater,
            (true, true) => a.cmp(&b),
            (false, false) => sb.partial_cmp(&sa).unwrap().then(a.cmp(&b)),
        }
    });
    idx.truncate(k);
    idx
}
