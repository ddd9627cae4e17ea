//! f64 references for `tokenmath_core::advantages`.
//!
//! Textbook transcriptions of `policy.md` §1–3 and the DAPO extras of §4.3: groups are
//! collected into lists, means and variances are two-pass, leave-one-out baselines are
//! computed as the mean of the other members, returns-to-go as explicit discounted sums.
//! Each GRPO/RLOO function returns one [`Adv`] per response: the value and the error
//! amplification `cond` of its formula (how much an `f64` rounding of the rewards' size
//! can move it), for tolerance formulas.

/// One reference advantage.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adv {
    /// The advantage.
    pub a: f64,
    /// `(|R_b| + max_g |R|)/denominator`: an `f64` rounding of relative size `u` moves `a`
    /// by at most `~ cond·u·n_g`.
    pub cond: f64,
}

/// Member lists of each group, in order of first appearance; rows in ascending order.
pub fn groups_of(ids: &[u32]) -> Vec<Vec<usize>> {
    let mut order: Vec<u32> = Vec::new();
    let mut lists: Vec<Vec<usize>> = Vec::new();
    for (b, &id) in ids.iter().enumerate() {
        match order.iter().position(|&o| o == id) {
            Some(k) => lists[k].push(b),
            None => {
                order.push(id);
                lists.push(vec![b]);
            }
        }
    }
    lists
}

/// `group[b] = b / size`.
pub fn contiguous_ids(rows: usize, size: usize) -> Vec<u32> {
    (0..rows).map(|b| (b / size) as u32).collect()
}

/// Arithmetic mean (NaN for an empty list).
pub fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Two-pass `Σ(x − μ)²/(n − 1)` (unbiased) or `/n` (population).
pub fn variance(xs: &[f64], unbiased: bool) -> f64 {
    let mu = mean(xs);
    let m2: f64 = xs.iter().map(|x| (x - mu) * (x - mu)).sum();
    m2 / (xs.len() as f64 - if unbiased { 1.0 } else { 0.0 })
}

fn values(r: &[f32], rows: &[usize]) -> Vec<f64> {
    rows.iter().map(|&b| r[b] as f64).collect()
}

fn max_abs(xs: &[f64]) -> f64 {
    xs.iter().fold(0.0f64, |m, x| m.max(x.abs()))
}

/// Scatters `(A_b, cond_b)` computed by `f(list of group values, R_b)` back to rows.
fn per_group(r: &[f32], ids: &[u32], f: impl Fn(&[f64], f64) -> (f64, f64)) -> Vec<Adv> {
    let mut out = vec![Adv { a: f64::NAN, cond: 0.0 }; r.len()];
    for rows in groups_of(ids) {
        let xs = values(r, &rows);
        for &b in &rows {
            let (a, denom) = f(&xs, r[b] as f64);
            out[b] = Adv { a, cond: (r[b].abs() as f64 + max_abs(&xs)) / denom };
        }
    }
    out
}

/// verl `compute_grpo_outcome_advantage` (the loop).
pub fn grpo_verl_loop(r: &[f32], ids: &[u32], eps: f64, norm_by_std: bool) -> Vec<Adv> {
    per_group(r, ids, |xs, x| {
        let (mu, sigma) = if xs.len() == 1 { (0.0, 1.0) } else { (mean(xs), variance(xs, true).sqrt()) };
        let denom = if norm_by_std { sigma + eps } else { 1.0 };
        ((x - mu) / denom, denom)
    })
}

/// verl `compute_grpo_vectorized_outcome_advantage` (sum-of-squares statistics).
pub fn grpo_verl_vectorized(r: &[f32], ids: &[u32], eps: f64, norm_by_std: bool) -> Vec<Adv> {
    per_group(r, ids, |xs, x| {
        let n = xs.len() as f64;
        let (mu, sigma) = if xs.len() == 1 {
            (0.0, 1.0)
        } else {
            let s1: f64 = xs.iter().sum();
            let s2: f64 = xs.iter().map(|v| v * v).sum();
            let var = (s2 - s1 * s1 / n) / (n - 1.0);
            (s1 / n, var.max(eps).sqrt())
        };
        let denom = if norm_by_std { sigma + eps } else { 1.0 };
        ((x - mu) / denom, denom)
    })
}

/// The library's GRPO: `(R − μ)/(σ + ε)`, NaN rewards ignored (their advantage 0) when
/// `ignore_nan`, fewer than 2 scorable rewards → 0 (`singleton_zero`) or `R/(1+ε)`,
/// identical rewards → 0.
pub fn grpo_standard(
    r: &[f32],
    ids: &[u32],
    unbiased: bool,
    singleton_zero: bool,
    eps: f64,
    norm_by_std: bool,
) -> Vec<Adv> {
    let mut out = vec![Adv { a: 0.0, cond: 0.0 }; r.len()];
    for rows in groups_of(ids) {
        let scorable: Vec<usize> = rows.iter().copied().filter(|&b| !r[b].is_nan()).collect();
        let xs = values(r, &scorable);
        for &b in &scorable {
            let x = r[b] as f64;
            let (a, denom) = if xs.len() < 2 {
                if singleton_zero {
                    (0.0, 1.0)
                } else {
                    let d = if norm_by_std { 1.0 + eps } else { 1.0 };
                    (x / d, d)
                }
            } else if xs.iter().all(|&v| v == xs[0]) {
                (0.0, 1.0)
            } else {
                let d = if norm_by_std { variance(&xs, unbiased).sqrt() + eps } else { 1.0 };
                ((x - mean(&xs)) / d, d)
            };
            out[b] = Adv { a, cond: (x.abs() + max_abs(&xs)) / denom };
        }
    }
    out
}

/// TRL's `scale_rewards`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrlScaleRef {
    /// Group nanstd.
    Group,
    /// Batch nanstd.
    Batch,
    /// No division.
    None,
}

/// TRL `nanstd`: unbiased over the non-NaN values (NaN with fewer than 2 of them).
fn nanstd(xs: &[f64]) -> f64 {
    let ok: Vec<f64> = xs.iter().copied().filter(|v| !v.is_nan()).collect();
    if ok.len() < 2 {
        f64::NAN
    } else {
        variance(&ok, true).sqrt()
    }
}

fn nanmean(xs: &[f64]) -> f64 {
    let ok: Vec<f64> = xs.iter().copied().filter(|v| !v.is_nan()).collect();
    mean(&ok)
}

/// TRL `_generate_and_score_completions`, contiguous groups of `g`.
pub fn grpo_trl(r: &[f32], g: usize, scale: TrlScaleRef, eps: f64) -> Vec<Adv> {
    let all = values(r, &(0..r.len()).collect::<Vec<_>>());
    let batch_std = if r.len() == 1 { 0.0 } else { nanstd(&all) };
    let mut out = Vec::with_capacity(r.len());
    for chunk in all.chunks(g) {
        let mu = nanmean(chunk);
        let s = match scale {
            TrlScaleRef::Group if g == 1 => 0.0,
            TrlScaleRef::Group => nanstd(chunk),
            TrlScaleRef::Batch => batch_std,
            TrlScaleRef::None => 0.0,
        };
        let denom = if scale == TrlScaleRef::None { 1.0 } else { s + eps };
        for &x in chunk {
            let a = (x - mu) / denom;
            let finite: Vec<f64> = chunk.iter().copied().filter(|v| !v.is_nan()).collect();
            let cond = (x.abs() + max_abs(&finite)) / denom;
            out.push(if a.is_nan() { Adv { a: 0.0, cond: 0.0 } } else { Adv { a, cond } });
        }
    }
    out
}

/// RLOO as the mean of the *other* members: `A_b = R_b − Σ_{j≠b} R_j/(n − 1)`. A singleton
/// gets `R` (`singleton_keep`, verl's loop) or 0.
pub fn rloo(r: &[f32], ids: &[u32], singleton_keep: bool) -> Vec<Adv> {
    let mut out = vec![Adv { a: 0.0, cond: 0.0 }; r.len()];
    for rows in groups_of(ids) {
        let xs = values(r, &rows);
        for (i, &b) in rows.iter().enumerate() {
            let a = if rows.len() == 1 {
                if singleton_keep {
                    xs[0]
                } else {
                    0.0
                }
            } else {
                let others: Vec<f64> = xs.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, v)| *v).collect();
                xs[i] - mean(&others)
            };
            out[b] = Adv { a, cond: xs[i].abs() + max_abs(&xs) };
        }
    }
    out
}

/// TRL RLOO with optional batch normalisation `(A − mean)/(std + 1e-4)` of the
/// `f32`-rounded advantages.
pub fn rloo_trl(r: &[f32], g: usize, normalize: bool) -> Vec<f64> {
    let ids = contiguous_ids(r.len(), g);
    let a: Vec<f64> = rloo(r, &ids, false).iter().map(|v| v.a).collect();
    if !normalize {
        return a;
    }
    let a32: Vec<f64> = a.iter().map(|&v| v as f32 as f64).collect();
    let (mu, s) = (mean(&a32), variance(&a32, true).sqrt());
    a32.iter().map(|v| (v - mu) / (s + 1e-4)).collect()
}

/// Returns-to-go by the explicit sum
/// `G_t = r_t + Σ_{k>t} γ^{k−t}·r_k·Π_{j=t+1..k} mask[j]`: a reward reaches position `t`
/// only through an unbroken run of valid positions after `t`.
pub fn returns_to_go(r: &[f32], mask: &[u8], t: usize, gamma: f64) -> Vec<f64> {
    let mut out = vec![0.0; r.len()];
    for row in 0..r.len().checked_div(t).unwrap_or(0) {
        let (rr, mm) = (&r[row * t..(row + 1) * t], &mask[row * t..(row + 1) * t]);
        for s in 0..t {
            let mut g = rr[s] as f64;
            for k in s + 1..t {
                if mm[k] == 0 {
                    break;
                }
                g += gamma.powi((k - s) as i32) * rr[k] as f64;
            }
            out[row * t + s] = g;
        }
    }
    out
}

/// Library masked whitening: `(x − μ)/sqrt(var_unbiased + eps)` over valid positions, 0 at
/// padding; 0 everywhere with fewer than 2 valid positions or a constant input.
pub fn masked_whiten(x: &[f64], mask: &[u8], eps: f64) -> Vec<f64> {
    let v: Vec<f64> = x.iter().zip(mask).filter(|(_, &m)| m != 0).map(|(&x, _)| x).collect();
    if v.len() < 2 || v.iter().all(|&y| y == v[0]) {
        return vec![0.0; x.len()];
    }
    let (mu, var) = (mean(&v), variance(&v, true));
    x.iter().zip(mask).map(|(&y, &m)| if m != 0 { (y - mu) / (var + eps).sqrt() } else { 0.0 }).collect()
}

/// REINFORCE++: `(advantages, returns)`.
pub fn reinforce_pp(r: &[f32], mask: &[u8], t: usize, gamma: f64) -> (Vec<f64>, Vec<f64>) {
    let ret = returns_to_go(r, mask, t, gamma);
    (masked_whiten(&ret, mask, 1e-8), ret)
}

/// REINFORCE++-baseline: whiten the tiled `R_b − μ_g` (a singleton: `R`, or 0 when
/// `singleton_zero`).
pub fn reinforce_pp_baseline(r: &[f32], ids: &[u32], mask: &[u8], t: usize, singleton_zero: bool) -> Vec<f64> {
    let mut a = vec![0.0; r.len()];
    for rows in groups_of(ids) {
        let xs = values(r, &rows);
        for &b in &rows {
            a[b] = match rows.len() {
                1 if singleton_zero => 0.0,
                1 => r[b] as f64,
                _ => r[b] as f64 - mean(&xs),
            };
        }
    }
    let tiled: Vec<f64> = (0..r.len() * t).map(|i| if mask[i] != 0 { a[i / t] as f32 as f64 } else { 0.0 }).collect();
    masked_whiten(&tiled, mask, 1e-8)
}

/// DAPO overlong penalty `min(−(len − (L_max − L_buf))/L_buf · factor, 0)`.
pub fn overlong_penalty(len: usize, max_len: usize, buffer_len: usize, factor: f64) -> f64 {
    let exceed = len as f64 - (max_len as f64 - buffer_len as f64);
    (-exceed / buffer_len as f64 * factor).min(0.0)
}

/// DAPO dynamic sampling: keep a row iff its group has one member or two members whose
/// metrics differ as numbers (`−0 == +0`).
pub fn dynamic_sampling_keep(metric: &[f32], ids: &[u32]) -> Vec<bool> {
    let mut keep = vec![false; metric.len()];
    for rows in groups_of(ids) {
        let differ = rows.iter().any(|&b| metric[b] != metric[rows[0]]);
        for &b in &rows {
            keep[b] = rows.len() == 1 || differ;
        }
    }
    keep
}

/// GAE by the explicit sum over the chain of valid positions `v_0 = s < v_1 < v_2 < …`
/// (each the next valid position after the previous): `A_s = Σ_j (γλ)^j δ_{v_j}` with
/// `δ_v = r_v + γ·V_{next valid after v} − V_v` (0 past the last). A padding position takes
/// the advantage of the next valid position (0 if none). Returns `(A, A + V)` before
/// whitening.
pub fn gae(r: &[f32], v: &[f32], mask: &[u8], t: usize, gamma: f64, lam: f64) -> (Vec<f64>, Vec<f64>) {
    let mut adv = vec![0.0; r.len()];
    for row in 0..r.len().checked_div(t).unwrap_or(0) {
        let valid: Vec<usize> = (0..t).filter(|&k| mask[row * t + k] != 0).collect();
        let value = |k: usize| v[row * t + k] as f64;
        let delta = |j: usize| {
            let next = valid.get(j + 1).map_or(0.0, |&k| value(k));
            r[row * t + valid[j]] as f64 + gamma * next - value(valid[j])
        };
        for s in 0..t {
            // The first valid position at or after s starts the chain.
            let Some(start) = valid.iter().position(|&k| k >= s) else { continue };
            adv[row * t + s] = (start..valid.len()).map(|j| (gamma * lam).powi((j - start) as i32) * delta(j)).sum();
        }
    }
    let ret = adv.iter().zip(v).map(|(a, &v)| a + v as f64).collect();
    (adv, ret)
}

/// TRL reward combination: `Σ_k w_k r[b,k]` over non-NaN scores, NaN if all are NaN.
pub fn trl_sum_rewards(per_func: &[f32], weights: &[f32]) -> Vec<f64> {
    per_func
        .chunks(weights.len())
        .map(|row| {
            let ok: Vec<f64> =
                row.iter().zip(weights).filter(|(x, _)| !x.is_nan()).map(|(&x, &w)| w as f64 * x as f64).collect();
            if ok.is_empty() {
                f64::NAN
            } else {
                ok.iter().sum()
            }
        })
        .collect()
}

/// TRL `normalize_then_sum`: per-function group z-scores, weighted nansum, batch
/// normalisation of the `f32`-rounded sums; NaN → 0. Returns `(A, R, nanmean R, nanstd R)`.
pub fn trl_normalize_then_sum(per_func: &[f32], weights: &[f32], g: usize) -> (Vec<f64>, Vec<f64>, f64, f64) {
    let k = weights.len();
    let rows = per_func.len() / k;
    let mut r = vec![0.0f64; rows];
    for b in 0..rows {
        let start = b / g * g;
        let mut terms = vec![];
        for f in 0..k {
            let col: Vec<f64> = (start..start + g).map(|j| per_func[j * k + f] as f64).collect();
            let std = if g == 1 { 0.0 } else { nanstd(&col) };
            let z = (per_func[b * k + f] as f64 - nanmean(&col)) / (std + 1e-4);
            if !z.is_nan() {
                terms.push(weights[f] as f64 * z);
            }
        }
        let unscorable = (0..k).all(|f| per_func[b * k + f].is_nan());
        r[b] = if unscorable { f64::NAN } else { terms.iter().sum::<f64>() as f32 as f64 };
    }
    let std = if rows == 1 { 0.0 } else { nanstd(&r) };
    let mu = nanmean(&r);
    let a = r
        .iter()
        .map(|x| {
            let a = (x - mu) / (std + 1e-4);
            if a.is_nan() {
                0.0
            } else {
                a
            }
        })
        .collect();
    (a, r, mu, std)
}
