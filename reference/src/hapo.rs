//! HAPO (spec `policy.md` §7.1) in `f64`, written from the spec's formulas with sorting and
//! maps instead of selection and scans.

use std::collections::BTreeMap;

/// Statistics `(m, σ, scale_pos, scale_neg)` and `ĥ` of the entropy normaliser.
pub fn entropy_norm(h: &[f32], mask: Option<&[u8]>, q: f64, eps: f64, intended: bool) -> (Vec<f64>, [f64; 4]) {
    let valid: Vec<bool> = (0..h.len()).map(|i| mask.map_or(h[i] > 0.0, |m| m[i] != 0)).collect();
    let ell: Vec<f64> = h.iter().map(|&x| if x.is_nan() { f64::NAN } else { (x as f64).max(eps).ln() }).collect();
    let mut v: Vec<f64> = (0..h.len()).filter(|&i| valid[i]).map(|i| ell[i]).collect();
    let sgn = if intended { 1.0 } else { -1.0 };
    if v.is_empty() {
        return (vec![0.0; h.len()], [0.0, 1.0, 1.0, sgn]);
    }
    let m = if v.iter().any(|x| x.is_nan()) {
        0.0
    } else {
        v.sort_by(f64::total_cmp);
        let idx = (q * (v.len() - 1) as f64).round_ties_even() as usize;
        v[idx]
    };
    let n = v.len() as f64;
    let s: f64 = (0..h.len()).filter(|&i| valid[i]).map(|i| (ell[i] - m).powi(2)).sum::<f64>() / n;
    let sigma = if s.is_nan() { s } else { s.max(eps) }.sqrt();
    let hs: Vec<f64> = ell.iter().map(|l| (l - m) / sigma).collect();
    let pmax = (0..h.len()).filter(|&i| valid[i] && hs[i] > 0.0).map(|i| hs[i]).fold(0.0, f64::max).max(eps);
    let nmin = (0..h.len()).filter(|&i| valid[i] && hs[i] < 0.0).map(|i| hs[i]).fold(0.0, f64::min).min(-eps);
    let (sp, sn) = (1.0 / pmax, sgn / nmin.abs());
    (hs.iter().map(|&x| if x > 0.0 { x * sp } else { x * sn }).collect(), [m, sigma, sp, sn])
}

/// `temp_base·(1 + τ·ĥ)` from an entropy `H` and the statistics.
pub fn temperature(entropy: f64, base: f64, stats: [f64; 4], tau: f64, intended: bool) -> f64 {
    let [m, s, sp, sn] = stats;
    let sn = if intended { sn.abs() } else { -sn.abs() };
    let h = (entropy.max(1e-6).ln() - m) / (s + 1e-6);
    let hh = (if h > 0.0 { h * sp } else { h * sn }).clamp(-1.0, 1.0);
    base * (1.0 + tau * hh)
}

/// Token-level group-average advantage (`[B·T]`), with the library's options.
#[allow(clippy::too_many_arguments)]
pub fn group_advantage(
    rewards: &[f32],
    mask: &[u8],
    t: usize,
    group: &[u32],
    norm_by_std: bool,
    pad_in_check: bool,
    mask_output: bool,
    fallback_abs: f64,
    eps: f64,
) -> Vec<f64> {
    let b = group.len();
    let r: Vec<f64> = (0..b).map(|i| rewards[i * t..(i + 1) * t].iter().map(|&x| x as f64).sum()).collect();
    let l: Vec<f64> = (0..b).map(|i| mask[i * t..(i + 1) * t].iter().filter(|&&m| m != 0).count() as f64).collect();
    let mut groups: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, &g) in group.iter().enumerate() {
        groups.entry(g).or_default().push(i);
    }
    let mut out = vec![0.0; b * t];
    for members in groups.values() {
        let w: f64 = members.iter().map(|&i| l[i]).sum();
        if w == 0.0 {
            continue;
        }
        let mu = members.iter().map(|&i| l[i] * r[i]).sum::<f64>() / w;
        let sd = (members.iter().map(|&i| l[i] * (r[i] - mu).powi(2)).sum::<f64>() / w).sqrt();
        let den = if norm_by_std { sd + eps } else { 1.0 };
        let nv = |i: usize, k: usize| ((if mask[i * t + k] != 0 { r[i] } else { 0.0 }) - mu) / den;
        let fallback = members
            .iter()
            .any(|&i| (0..t).any(|k| (pad_in_check || mask[i * t + k] != 0) && nv(i, k).abs() >= fallback_abs));
        if fallback {
            let n = members.len();
            let (gm, gs) = if n == 1 {
                (0.0, 1.0)
            } else {
                let gm = members.iter().map(|&i| r[i]).sum::<f64>() / n as f64;
                (gm, (members.iter().map(|&i| (r[i] - gm).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt())
            };
            for &i in members {
                let a = if norm_by_std { (r[i] - gm) / (gs + eps) } else { r[i] - gm };
                for k in 0..t {
                    out[i * t + k] = if mask[i * t + k] != 0 { a } else { 0.0 };
                }
            }
        } else {
            for &i in members {
                for k in 0..t {
                    out[i * t + k] = if mask_output && mask[i * t + k] == 0 { 0.0 } else { nv(i, k) };
                }
            }
        }
    }
    out
}

/// `(ε_low(t), ε_high(t))`.
pub fn clip(h: f64, eps_low: f64, eps_high: f64, alpha: f64) -> (f64, f64) {
    (
        if h <= 0.0 { eps_low * (1.0 - alpha * h) } else { eps_low },
        if h > 0.0 { eps_high * (1.0 + alpha * h) } else { eps_high },
    )
}

/// `A'` of one token, and whether the ratio is within `1e-6` of a neutral-zone bound (where
/// `f32` and `f64` may decide differently).
pub fn redistribute(a: f64, h: f64, r: f64, lo: f64, hi: f64, beta: f64) -> (f64, bool) {
    let a_ent = a * (1.0 + beta * h);
    let (b_lo, b_hi) = (1.0 - lo / 2.0, 1.0 + hi / 2.0);
    let neutral = r > b_lo && r < b_hi;
    let borderline = (r - b_lo).abs() < 1e-6 || (r - b_hi).abs() < 1e-6;
    let out = if h > 0.0 {
        if neutral {
            a
        } else {
            a_ent
        }
    } else if neutral {
        a_ent
    } else {
        a
    };
    (out, borderline)
}

/// HAPO's per-token loss (dual-clip PPO, per-token widths, no log-ratio clamp) and its
/// gradient w.r.t. `logp`.
pub fn loss_token(logp: f64, old: f64, a: f64, lo: f64, hi: f64, c: Option<f64>) -> (f64, f64) {
    if a == 0.0 {
        return (0.0, 0.0);
    }
    let r = (logp - old).exp();
    let (rlo, rhi) = (1.0 - lo, 1.0 + hi);
    let lc = (-a * r).max(-a * r.clamp(rlo, rhi));
    let mut l = lc;
    let mut kappa = if a > 0.0 { r <= rhi } else { r >= rlo };
    if let (true, Some(c)) = (a < 0.0, c) {
        l = lc.min(-a * c);
        kappa &= r <= c;
    }
    (l, if kappa { -a * r } else { 0.0 })
}
