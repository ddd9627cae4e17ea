//! f64 oracles for QuoTA (`token-rewards.md` §6), written from the definitions.

/// `np.linspace(0, total − 1, count)` cast to int, as the source computes it (float).
pub fn linspace_indices(total: u64, count: usize) -> Vec<u64> {
    if count == 1 {
        return vec![0];
    }
    let step = (total as f64 - 1.0) / (count as f64 - 1.0);
    (0..count).map(|j| (j as f64 * step) as u64).collect()
}

/// `ŵ_i = (scale p_i)^power / Σ (scale p_j)^power`, uniform when every weight is 0.
pub fn frame_weights(p: &[f32], scale: f64, power: f64) -> Vec<f64> {
    let w: Vec<f64> = p.iter().map(|&x| (scale * x as f64).powf(power)).collect();
    let s: f64 = w.iter().sum();
    w.iter().map(|v| if s > 0.0 { v / s } else { 1.0 / p.len() as f64 }).collect()
}

/// The source's `scale_weights`, transcribed in f64.
pub fn scale_weights(w: &[f64], max: f64) -> Vec<f64> {
    let mut w = w.to_vec();
    let mut excess = 0.0;
    for v in w.iter_mut() {
        if *v > max {
            excess += *v - max;
            *v = max;
        }
    }
    if excess > 0.0 {
        let s: f64 = w.iter().sum();
        for v in w.iter_mut() {
            if *v < max {
                *v += *v / s * excess;
                if *v > max {
                    excess += *v - max;
                    *v = max;
                }
            }
        }
    }
    w
}

/// Hamilton's largest-remainder apportionment of `total` by weights `w` (sum > 0): floors,
/// then one token each to the largest remainders, ties to the lower index (a sort).
pub fn largest_remainder(w: &[f64], total: u32) -> Vec<u32> {
    let s: f64 = w.iter().sum();
    let q: Vec<f64> = w.iter().map(|v| total as f64 * (v / s)).collect();
    let mut out: Vec<u32> = q.iter().map(|v| v.floor() as u32).collect();
    let left = total as i64 - out.iter().map(|&v| v as i64).sum::<i64>();
    let mut order: Vec<usize> = (0..w.len()).collect();
    order.sort_by(|&a, &b| (q[b] - q[b].floor()).total_cmp(&(q[a] - q[a].floor())).then(a.cmp(&b)));
    for &i in order.iter().take(left.max(0) as usize) {
        out[i] += 1;
    }
    out
}

/// Bilinear (align_corners = False) resize in f64 with the real-valued source index
/// `max((o + 0.5)·I/O − 0.5, 0)`.
pub fn bilinear(src: &[f32], h: usize, w: usize, c: usize, oh: usize, ow: usize) -> Vec<f64> {
    let idx = |i: usize, o: usize, k: usize| {
        let s = ((k as f64 + 0.5) * i as f64 / o as f64 - 0.5).max(0.0);
        let i0 = (s.floor() as usize).min(i - 1);
        let i1 = (i0 + 1).min(i - 1);
        (i0, i1, (s - i0 as f64).clamp(0.0, 1.0))
    };
    let mut out = vec![0.0; oh * ow * c];
    for y in 0..oh {
        let (y0, y1, ly) = idx(h, oh, y);
        for x in 0..ow {
            let (x0, x1, lx) = idx(w, ow, x);
            for k in 0..c {
                let p = |a: usize, b: usize| src[(a * w + b) * c + k] as f64;
                out[(y * ow + x) * c + k] = (1.0 - ly) * ((1.0 - lx) * p(y0, x0) + lx * p(y0, x1))
                    + ly * ((1.0 - lx) * p(y1, x0) + lx * p(y1, x1));
            }
        }
    }
    out
}

/// Adaptive average pooling in f64 with windows `[floor(o·I/O), ceil((o+1)·I/O))` computed
/// with real division.
pub fn adaptive_avg_pool(src: &[f32], h: usize, w: usize, c: usize, oh: usize, ow: usize) -> Vec<f64> {
    let win = |i: usize, o: usize, k: usize| {
        let a = ((k * i) as f64 / o as f64).floor() as usize;
        let b = (((k + 1) * i) as f64 / o as f64).ceil() as usize;
        (a, b)
    };
    let mut out = vec![0.0; oh * ow * c];
    for y in 0..oh {
        let (ys, ye) = win(h, oh, y);
        for x in 0..ow {
            let (xs, xe) = win(w, ow, x);
            for k in 0..c {
                let mut s = 0.0;
                for a in ys..ye {
                    for b in xs..xe {
                        s += src[(a * w + b) * c + k] as f64;
                    }
                }
                out[(y * ow + x) * c + k] = s / ((ye - ys) * (xe - xs)) as f64;
            }
        }
    }
    out
}

/// One ToMe bipartite round, from the definitions (a stable sort, a linear argmax, plain
/// means). The cosine is rounded as the library defines it, `⟨a, b⟩·(1/‖a‖)·(1/‖b‖)` in
/// f64, so that exact and near ties (every score is ±1 when `dim = 1`) resolve alike.
/// Returns the output tokens.
pub fn tome_round(x: &[f32], t: usize, dim: usize, r: usize) -> Vec<Vec<f64>> {
    let tok = |i: usize| -> Vec<f64> { x[i * dim..(i + 1) * dim].iter().map(|&v| v as f64).collect() };
    let r = r.min(t / 2);
    if r == 0 {
        return (0..t).map(tok).collect();
    }
    let norm = |v: &[f64]| v.iter().map(|a| a * a).sum::<f64>().sqrt();
    let cos = |a: &[f64], b: &[f64]| {
        let (na, nb) = (norm(a), norm(b));
        if na == 0.0 || nb == 0.0 {
            0.0
        } else {
            a.iter().zip(b).map(|(p, q)| p * q).sum::<f64>() * (1.0 / na) * (1.0 / nb)
        }
    };
    let a_idx: Vec<usize> = (0..t).step_by(2).collect();
    let b_idx: Vec<usize> = (1..t).step_by(2).collect();
    let mut best = vec![0usize; a_idx.len()];
    let mut node_max = vec![f64::NEG_INFINITY; a_idx.len()];
    for (ai, &a) in a_idx.iter().enumerate() {
        for (bi, &b) in b_idx.iter().enumerate() {
            let s = cos(&tok(a), &tok(b));
            if s > node_max[ai] {
                node_max[ai] = s;
                best[ai] = bi;
            }
        }
    }
    let mut order: Vec<usize> = (0..a_idx.len()).collect();
    order.sort_by(|&p, &q| node_max[q].total_cmp(&node_max[p]));
    let mut out: Vec<Vec<f64>> = order[r..].iter().map(|&ai| tok(a_idx[ai])).collect();
    for (bi, &b) in b_idx.iter().enumerate() {
        let mut members: Vec<usize> = order[..r].iter().copied().filter(|&ai| best[ai] == bi).collect();
        members.sort();
        let mut s = tok(b);
        for &ai in &members {
            for (k, v) in tok(a_idx[ai]).iter().enumerate() {
                s[k] += v;
            }
        }
        let cnt = 1.0 + members.len() as f64;
        out.push(s.iter().map(|v| v / cnt).collect());
    }
    out
}
