//! f64 oracles for xAR (`token-rewards.md` §7), written from the definitions: the orderings
//! as the nested loops of the code's `reshape`/`einsum` (and the paper's einops patterns),
//! the rest as plain real-valued formulas.

/// `clusterify`'s order: `reshape(c, h/k, k, w/k, k)` then `nchpwq -> nhwpqc`, read out
/// in the new order: the raster index of each sequence position.
pub fn cell_permutation(h: usize, w: usize, k: usize) -> Vec<u32> {
    let mut out = Vec::with_capacity(h * w);
    for hi in 0..h / k {
        for wi in 0..w / k {
            for p in 0..k {
                for q in 0..k {
                    out.push(((hi * k + p) * w + wi * k + q) as u32);
                }
            }
        }
    }
    out
}

/// `b c (d1 h) (d2 w) -> b (h w d1 d2) c` read out in the new order.
pub fn subsample_permutation(h: usize, w: usize, d: usize) -> Vec<u32> {
    let (sh, sw) = (h / d, w / d);
    let mut out = Vec::with_capacity(h * w);
    for a in 0..sh {
        for b in 0..sw {
            for d1 in 0..d {
                for d2 in 0..d {
                    out.push(((d1 * sh + a) * w + d2 * sw + b) as u32);
                }
            }
        }
    }
    out
}

/// Nearest-neighbour source index `floor(o·I/O)` in exact integers.
pub fn nearest(input: usize, output: usize, o: usize) -> usize {
    (o * input / output).min(input - 1)
}

/// The scale pyramid's gather indices, sizes `h·2^{i−N}`, coarse to fine.
pub fn scale_gather(h: usize, w: usize, n: usize) -> Vec<u32> {
    let mut out = Vec::new();
    for i in 1..=n {
        let (sh, sw) =
            (h * 2usize.pow(i as u32) / 2usize.pow(n as u32), w * 2usize.pow(i as u32) / 2usize.pow(n as u32));
        for oy in 0..sh {
            for ox in 0..sw {
                out.push((nearest(h, sh, oy) * w + nearest(w, sw, ox)) as u32);
            }
        }
    }
    out
}

/// The block-causal mask from each position's entity id.
pub fn block_causal_mask(ent_lens: &[usize]) -> Vec<f32> {
    let ids: Vec<usize> = ent_lens.iter().enumerate().flat_map(|(i, &n)| std::iter::repeat_n(i, n)).collect();
    let l = ids.len();
    let mut out = vec![0.0; l * l];
    for r in 0..l {
        for c in 0..l {
            out[r * l + c] = if ids[c] <= ids[r] { 0.0 } else { f32::NEG_INFINITY };
        }
    }
    out
}

/// `((1 − t)x + tε, ε − x)` in f64.
pub fn flow_interpolate(x: &[f32], eps: &[f32], t: f64) -> (Vec<f64>, Vec<f64>) {
    let xt = x.iter().zip(eps).map(|(&a, &e)| (1.0 - t) * a as f64 + t * e as f64).collect();
    let v = x.iter().zip(eps).map(|(&a, &e)| e as f64 - a as f64).collect();
    (xt, v)
}

/// The logistic function of `mu + sigma·z`.
pub fn logit_normal(z: f64, mu: f64, sigma: f64) -> f64 {
    1.0 / (1.0 + (-(mu + sigma * z)).exp())
}

/// The mean squared error and its gradient `2(p − q)/n`.
pub fn flow_loss(pred: &[f32], target: &[f32]) -> (f64, Vec<f64>) {
    let n = pred.len() as f64;
    let l = pred.iter().zip(target).map(|(&p, &q)| (p as f64 - q as f64).powi(2)).sum::<f64>() / n;
    (l, pred.iter().zip(target).map(|(&p, &q)| 2.0 * (p as f64 - q as f64) / n).collect())
}

/// `linspace(a, b, steps)` as `a + (b − a)·k/(steps − 1)`, then `0`.
pub fn time_grid(a: f64, b: f64, steps: usize) -> Vec<f64> {
    let mut g: Vec<f64> =
        if steps == 1 { vec![a] } else { (0..steps).map(|k| a + (b - a) * k as f64 / (steps - 1) as f64).collect() };
    g.push(0.0);
    g
}

/// The code's linear schedule `(cfg − 1)·i/(N − 1) + 1` (`cfg` when `N = 1`).
pub fn cfg_linear(cfg: f64, i: usize, n: usize) -> f64 {
    if n == 1 {
        cfg
    } else {
        1.0 + (cfg - 1.0) * i as f64 / (n - 1) as f64
    }
}

/// The drift from the definitions: `s = −((1 − t)v + x)/t`, `d = v − ½·2t·s`.
pub fn drift(v: f64, x: f64, t: f64) -> f64 {
    let s = -((1.0 - t) * v + x) / t;
    v - 0.5 * 2.0 * t * s
}

/// One Euler–Maruyama step `x + dΔt + √(2t)·√|Δt|·ξ` (no noise term without `xi`).
pub fn em_step(x: f64, d: f64, t: f64, t_next: f64, xi: Option<f64>) -> f64 {
    let dt = t_next - t;
    x + d * dt + xi.map_or(0.0, |e| (2.0 * t).sqrt() * dt.abs().sqrt() * e)
}
