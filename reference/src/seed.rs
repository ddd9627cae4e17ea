//! f64 references of the seed methods (`tokenmath_core::seed`; spec `policy.md` §6–7), written
//! from the definitions by sorting and brute force.

/// `torch.quantile(v, q)` with linear interpolation over `sorted` (ascending), `pos` in f64.
pub fn quantile_linear(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    let pos = q * (n - 1) as f64;
    let lo = pos.floor() as usize;
    let w = pos - lo as f64;
    let hi = if w > 0.0 { lo + 1 } else { lo };
    sorted[lo] + w * (sorted[hi] - sorted[lo])
}

/// The top-entropy threshold `θ` (rounded to f32, as the library defines it) over the valid
/// entropies, `None` when there are none; the keep mask compares each `f32` entropy with it.
pub fn top_entropy(entropy: &[f32], mask: &[u8], rho: f32) -> (Option<f32>, Vec<u8>) {
    let mut v: Vec<f64> = entropy.iter().zip(mask).filter(|(_, &m)| m != 0).map(|(&e, _)| e as f64).collect();
    if v.is_empty() {
        return (None, vec![0; mask.len()]);
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let theta = quantile_linear(&v, 1.0 - rho as f64) as f32;
    let keep = entropy.iter().zip(mask).map(|(&e, &m)| (m != 0 && e >= theta) as u8).collect();
    (Some(theta), keep)
}

/// Population variance, two-pass, in f64 ([`crate::advantages::variance`]); 0 for no values.
pub fn pop_variance(x: &[f64]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    crate::advantages::variance(x, false)
}

/// The largest population variance of any size-`m` subset of `x`, by trying all `C(n, m)`
/// subsets (small `n` only).
pub fn max_variance_brute(x: &[f32], m: usize) -> f64 {
    let n = x.len();
    let m = m.min(n);
    let mut best = f64::NEG_INFINITY;
    for bits in 0u64..(1u64 << n) {
        if bits.count_ones() as usize != m {
            continue;
        }
        let s: Vec<f64> = (0..n).filter(|i| bits >> i & 1 == 1).map(|i| x[i] as f64).collect();
        best = best.max(pop_variance(&s));
    }
    best
}

/// The largest variance over the `m + 1` "k largest + (m − k) smallest" candidates (PODS
/// Lemma 3.1), each scored by a two-pass variance.
pub fn max_variance_extremes(x: &[f32], m: usize) -> f64 {
    let mut s: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = s.len();
    let m = m.min(n);
    (0..=m)
        .map(|k| {
            let c: Vec<f64> = s[..m - k].iter().chain(&s[n - k..]).copied().collect();
            pop_variance(&c)
        })
        .fold(f64::NEG_INFINITY, f64::max)
}

/// D³S schedule: `(N, K)` with `N = clamp(round_half_away(N(p)·B), 1, B)`.
pub fn d3s_schedule(p: f64, n_init: f64, n_final: f64, k_init: f64, k_final: f64, batch: usize) -> (usize, f64) {
    let n = ((1.0 - p) * n_init + p * n_final) * batch as f64;
    let n = (n.round() as usize).clamp(1.min(batch), batch);
    (n, (1.0 - p) * k_init + p * k_final)
}

/// D³S token mask: the `⌈K·n⌉` valid tokens of kept rows with the largest `fl32(|A|·H)`,
/// ties by lower flat index, by a full sort.
pub fn d3s_token_mask(adv: &[f32], entropy: &[f32], mask: &[u8], keep_rows: &[u8], t: usize, k: f64) -> Vec<u8> {
    let mut cand: Vec<(f32, usize)> = (0..mask.len())
        .filter(|&j| mask[j] != 0 && keep_rows[j / t] != 0)
        .map(|j| ((adv[j].abs() as f64 * entropy[j] as f64) as f32, j))
        .collect();
    let count = ((k * cand.len() as f64).ceil() as usize).min(cand.len());
    cand.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap().then(a.1.cmp(&b.1)));
    let mut out = vec![0u8; mask.len()];
    for &(_, j) in &cand[..count] {
        out[j] = 1;
    }
    out
}

/// PSR / NSR / W-REINFORCE: which rows and how.
#[derive(Clone, Copy, Debug)]
pub enum NsrRef {
    /// Correct rows, `A = G`.
    Psr,
    /// Incorrect rows, `A = G − 1`.
    Nsr,
    /// Every row, `λ·G` on correct ones.
    Weighted(f64),
}

/// PSR / NSR / W-REINFORCE. Returns `(adv, keep_rows)`.
pub fn nsr(
    rewards: &[f32],
    scores: &[f32],
    mask: &[u8],
    rows: usize,
    t: usize,
    gamma: f64,
    mode: NsrRef,
) -> (Vec<f64>, Vec<u8>) {
    let mut adv = vec![0.0; mask.len()];
    let mut keep = vec![0u8; rows];
    for (b, keep) in keep.iter_mut().enumerate() {
        let row = b * t..(b + 1) * t;
        let s: f64 = row.clone().filter(|&j| mask[j] != 0).map(|j| scores[j] as f64).sum();
        let (correct, incorrect) = (s == 1.0, s == 0.0);
        let (kept, scale, shift) = match mode {
            NsrRef::Psr => (correct, 1.0, 0.0),
            NsrRef::Nsr => (incorrect, 1.0, -1.0),
            NsrRef::Weighted(lambda) if correct => (true, lambda, 0.0),
            NsrRef::Weighted(_) if incorrect => (true, 1.0, -1.0),
            NsrRef::Weighted(_) => (true, 1.0, 0.0),
        };
        *keep = kept as u8;
        // Returns-to-go over each run of valid positions (nothing crosses a masked one).
        let mut g = 0.0;
        for j in row.rev() {
            g = if mask[j] != 0 { rewards[j] as f64 + gamma * g } else { 0.0 };
            if mask[j] != 0 && kept {
                adv[j] = scale * g + shift;
            }
        }
    }
    (adv, keep)
}

/// `E[Δz_b] = lr·π_b·(A_b − Σ_a π_a A_a)`.
pub fn expected_logit_update(probs: &[f32], adv: &[f32], lr: f64) -> Vec<f64> {
    let base: f64 = probs.iter().zip(adv).map(|(&p, &a)| p as f64 * a as f64).sum();
    probs.iter().zip(adv).map(|(&p, &a)| lr * p as f64 * (a as f64 - base)).collect()
}

/// `Σ_i w_i ⟨g_i, g_j⟩⟨h_i, h_j⟩` for each query row `j`, in f64 (dense row-major `[n, V*]`
/// and `[n, d]` arrays).
pub fn influence(
    src_g: &[f32],
    src_h: &[f32],
    w: Option<&[f32]>,
    q_g: &[f32],
    q_h: &[f32],
    v: usize,
    d: usize,
) -> Vec<f64> {
    let ns = src_g.len().checked_div(v).unwrap_or(src_h.len() / d.max(1));
    let nq = q_g.len().checked_div(v).unwrap_or(q_h.len() / d.max(1));
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum::<f64>();
    (0..nq)
        .map(|j| {
            (0..ns)
                .map(|i| {
                    let wi = w.map_or(1.0, |w| w[i] as f64);
                    wi * dot(&src_g[i * v..(i + 1) * v], &q_g[j * v..(j + 1) * v])
                        * dot(&src_h[i * d..(i + 1) * d], &q_h[j * d..(j + 1) * d])
                })
                .sum()
        })
        .collect()
}

/// The matching bound of `|Σ_i w_i ⟨g_i, g_j⟩⟨h_i, h_j⟩|` with every product taken in absolute
/// value (for tolerances).
pub fn influence_abs(
    src_g: &[f32],
    src_h: &[f32],
    w: Option<&[f32]>,
    q_g: &[f32],
    q_h: &[f32],
    v: usize,
    d: usize,
) -> Vec<f64> {
    let abs = |x: &[f32]| x.iter().map(|v| v.abs()).collect::<Vec<f32>>();
    let wa = w.map(abs);
    influence(&abs(src_g), &abs(src_h), wa.as_deref(), &abs(q_g), &abs(q_h), v, d)
}

/// NTHR's `τ = β·min_i mean(s⁺ of response i)` over non-empty responses.
pub fn nthr_threshold(pos_scores: &[f32], pos_lens: &[usize], beta: f64) -> Option<f64> {
    let mut start = 0;
    let mut best: Option<f64> = None;
    for &len in pos_lens {
        if len > 0 {
            let m = pos_scores[start..start + len].iter().map(|&s| s as f64).sum::<f64>() / len as f64;
            best = Some(best.map_or(m, |b: f64| b.min(m)));
        }
        start += len;
    }
    best.map(|b| beta * b)
}

/// THR's reweighting: `mode` `None` = only dominant, `Some(p)` = steer; `keep` = NonDominant::Keep.
pub fn thr_reweight(adv: &[f32], thr: &[f32], tau: f64, steer: Option<f64>, keep: bool) -> Vec<f64> {
    adv.iter()
        .zip(thr)
        .map(|(&a, &t)| {
            let (a, t) = (a as f64, t as f64);
            let dom = t.abs() > tau;
            match (steer, dom) {
                (None, true) => a,
                (None, false) => 0.0,
                (Some(p), true) => a * (1.0 + p * t.signum() * (t != 0.0) as u8 as f64),
                (Some(_), false) => {
                    if keep {
                        a
                    } else {
                        0.0
                    }
                }
            }
        })
        .collect()
}

/// RMT budget `max(B_min, ⌊B_0·γ^{t/T}⌋)`.
pub fn rmt_budget(step: u64, total: u64, b0: u32, b_min: u32, gamma: f64) -> u64 {
    let b = (b0 as f64 * gamma.powf(step as f64 / total as f64)).floor();
    (b as u64).max(b_min as u64)
}

/// RMT's triangular length reward.
pub fn rmt_length_reward(len: u32, budget: u32, r_max: f64) -> f64 {
    let (l, b) = (len as f64, budget as f64);
    if l <= b {
        r_max * l / b
    } else if l <= 2.0 * b {
        r_max * (2.0 * b - l) / b
    } else {
        0.0
    }
}

/// RMT's curriculum `p_t`.
pub fn rmt_curriculum(step: u64, total: u64, t1: f64, t2: f64, p1: [f64; 3], p2: [f64; 3]) -> [f64; 3] {
    let (t, t1, t2) = (step as f64, t1 * total as f64, t2 * total as f64);
    if t < t1 {
        p1
    } else if t >= t2 {
        p2
    } else {
        let tau = (t - t1) / (t2 - t1);
        std::array::from_fn(|k| (1.0 - tau) * p1[k] + tau * p2[k])
    }
}

/// Entropy tiers by sorting: 0 padding, 1 easy (< θ1), 2 medium, 3 hard (≥ θ2); θ as f32.
pub fn entropy_tiers(entropy: &[f32], mask: &[u8], q1: f64, q2: f64) -> Vec<u8> {
    let mut v: Vec<f64> = entropy.iter().zip(mask).filter(|(_, &m)| m != 0).map(|(&e, _)| e as f64).collect();
    if v.is_empty() {
        return vec![0; mask.len()];
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let (t1, t2) = (quantile_linear(&v, q1) as f32, quantile_linear(&v, q2) as f32);
    entropy
        .iter()
        .zip(mask)
        .map(|(&h, &m)| match (m != 0, h >= t2, h >= t1) {
            (false, _, _) => 0,
            (true, true, _) => 3,
            (true, false, true) => 2,
            _ => 1,
        })
        .collect()
}

/// `L_NTP` and its gradient.
pub fn ntp_loss(mask: &[u8], rl: &[u8], logp: &[f32]) -> (f64, Vec<f64>) {
    let idx: Vec<usize> = (0..mask.len()).filter(|&j| mask[j] != 0 && rl[j] == 0).collect();
    if idx.is_empty() {
        return (0.0, vec![0.0; mask.len()]);
    }
    let n = idx.len() as f64;
    let mut g = vec![0.0; mask.len()];
    for &j in &idx {
        g[j] = -1.0 / n;
    }
    (-idx.iter().map(|&j| logp[j] as f64).sum::<f64>() / n, g)
}
