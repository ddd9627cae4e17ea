//! UniCTokens' k-means initialisation, frozen-row restore and diff mask
//! (`tokenmath_core::unictokens`), written plainly in `f64` with `Vec`s.

use crate::rng::SplitMix64;

/// k-means++ seeding and up to `iters` Lloyd steps, exactly the procedure documented in
/// `tokenmath_core::unictokens` (same draws, same tie rules): the `k` centres and the number of
/// Lloyd steps run.
pub fn kmeans(rows: &[Vec<f64>], k: usize, seed: u64, iters: usize) -> (Vec<Vec<f64>>, usize) {
    let n = rows.len();
    let dist = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>();
    let mut rng = SplitMix64::new(seed);
    let first = ((rng.uniform() * n as f64) as usize).min(n - 1);
    let mut centres = vec![rows[first].clone()];
    let mut d: Vec<f64> = rows.iter().map(|r| dist(r, &centres[0])).collect();
    for j in 1..k {
        let total: f64 = d.iter().sum();
        let pick = if total > 0.0 {
            let r = rng.uniform() * total;
            let mut acc = 0.0;
            let mut pick = None;
            for (i, di) in d.iter().enumerate() {
                acc += di;
                if acc > r {
                    pick = Some(i);
                    break;
                }
            }
            pick.unwrap_or_else(|| d.iter().rposition(|&x| x > 0.0).unwrap())
        } else {
            j
        };
        centres.push(rows[pick].clone());
        for (i, di) in d.iter_mut().enumerate() {
            *di = di.min(dist(&rows[i], &centres[j]));
        }
    }
    let mut assign: Vec<Option<usize>> = vec![None; n];
    let mut steps = 0;
    while steps < iters {
        steps += 1;
        let new: Vec<Option<usize>> = rows
            .iter()
            .map(|r| {
                let ds: Vec<f64> = centres.iter().map(|c| dist(r, c)).collect();
                // first minimum: lowest index on a tie
                let mut best = 0;
                for j in 1..k {
                    if ds[j] < ds[best] {
                        best = j;
                    }
                }
                Some(best)
            })
            .collect();
        if new == assign {
            break;
        }
        assign = new;
        for (j, c) in centres.iter_mut().enumerate() {
            let members: Vec<&Vec<f64>> =
                rows.iter().zip(&assign).filter(|(_, a)| **a == Some(j)).map(|(r, _)| r).collect();
            if members.is_empty() {
                continue;
            }
            for (t, ct) in c.iter_mut().enumerate() {
                // Sums start at +0.0 (as the core's), so an all −0.0 cluster's mean is +0.0.
                *ct = members.iter().fold(0.0, |acc, m| acc + m[t]) / members.len() as f64;
            }
        }
    }
    (centres, steps)
}

/// Lloyd's objective `Σ_i min_j ‖x_i − c_j‖²`.
pub fn kmeans_objective(rows: &[Vec<f64>], centres: &[Vec<f64>]) -> f64 {
    rows.iter()
        .map(|r| {
            centres
                .iter()
                .map(|c| r.iter().zip(c).map(|(x, y)| (x - y) * (x - y)).sum::<f64>())
                .fold(f64::INFINITY, f64::min)
        })
        .sum()
}

/// `mask_i = 1[1[a_i ≠ f_i] ≠ 1[b_i ≠ f_i]]`.
pub fn token_diff_mask(a: &[u32], b: &[u32], fin: &[u32]) -> Vec<u8> {
    (0..a.len()).map(|i| u8::from((a[i] != fin[i]) ^ (b[i] != fin[i]))).collect()
}
