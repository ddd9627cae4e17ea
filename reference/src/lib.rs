//! # tokenmath-reference: the f64 oracle
//!
//! Plain, obviously-right `f64` implementations of tokenmath's kernels, written from the
//! definitions in the spec with no attention to speed. Tests compare the fast kernels
//! against these; the `tokenmath` command checks a sample of rows against them.
//!
//! Inputs are the *same* `f32` values the kernels see (bf16/f16 upcast exactly), so any
//! difference is the kernels' rounding, not the data's.

/// Reference statistics of one row.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RowRef {
    /// `log Σ exp(z)`.
    pub lse: f64,
    /// `z_t − lse` (0 without a target).
    pub logp: f64,
    /// `−Σ p log p`.
    pub entropy: f64,
    /// `E_p[z]`.
    pub ez: f64,
    /// `max |z|` over the finite tempered logits (for tolerance formulas).
    pub max_abs_z: f64,
}

/// The tempered logits exactly as the library defines them: `z = x · inv_temp`, with
/// `inv_temp = 1/temp` rounded once to `f32`, evaluated in `f64`.
pub fn tempered(row: &[f32], temp: f32) -> Vec<f64> {
    let inv_temp = (1.0f32 / temp) as f64;
    row.iter().map(|&x| x as f64 * inv_temp).collect()
}

/// Two-pass textbook statistics of one row of `f32` logits. `None` if the row has a NaN or
/// `+inf` logit, or no finite logit.
pub fn row_stats(row: &[f32], temp: f32, target: Option<usize>) -> Option<RowRef> {
    let z = tempered(row, temp);
    if z.iter().any(|v| v.is_nan() || *v == f64::INFINITY) {
        return None;
    }
    let finite: Vec<f64> = z.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        return None;
    }
    let m = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let s: f64 = finite.iter().map(|v| (v - m).exp()).sum();
    let lse = m + s.ln();
    let mut entropy = 0.0;
    let mut ez = 0.0;
    for &v in &finite {
        let lp = v - lse;
        let p = lp.exp();
        entropy -= p * lp;
        ez += p * v;
    }
    let logp = target.map_or(0.0, |t| z[t] - lse);
    let max_abs_z = finite.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    Some(RowRef { lse, logp, entropy, ez, max_abs_z })
}

/// Reference gradient of `g_lse·lse + g_lp·logp + g_h·entropy` w.r.t. the raw logits of one
/// row (textbook form `∂L/∂z_j = p_j (g_lse − g_lp − g_h (log p_j + H)) + g_lp·1[j=t]`).
/// `None` under the same conditions as [`row_stats`].
pub fn row_grad(row: &[f32], temp: f32, target: Option<usize>, g_lp: f64, g_h: f64, g_lse: f64) -> Option<Vec<f64>> {
    let r = row_stats(row, temp, target)?;
    let inv_temp = (1.0f32 / temp) as f64;
    let z = tempered(row, temp);
    let g_lp = if target.is_some() { g_lp } else { 0.0 };
    let mut dx: Vec<f64> = z
        .iter()
        .map(|&v| {
            if v == f64::NEG_INFINITY {
                return 0.0;
            }
            let lp = v - r.lse;
            let p = lp.exp();
            p * (g_lse - g_lp - g_h * (lp + r.entropy)) * inv_temp
        })
        .collect();
    if let Some(t) = target {
        dx[t] += g_lp * inv_temp;
    }
    Some(dx)
}

/// `f64` relative machine epsilon of `f32` (`2^-23`).
pub const EPS32: f64 = f32::EPSILON as f64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_worked_examples() {
        // logits.md §10
        let r = row_stats(&[1.0, 2.0, 3.0, 4.0], 1.0, Some(2)).unwrap();
        assert!((r.lse - 4.440189698561196).abs() < 1e-14);
        assert!((r.logp - -1.440189698561196).abs() < 1e-14);
        assert!((r.entropy - 0.947536963975426).abs() < 1e-14);
        assert!((r.ez - 3.492652734585770).abs() < 1e-14);
        let g = row_grad(&[1.0, 2.0, 3.0, 4.0], 1.0, Some(2), 1.0, 0.5, 0.0).unwrap();
        let want = [0.007896879286467, -0.022106215905078, 0.821467665964279, -0.807258329345667];
        for (a, b) in g.iter().zip(want) {
            assert!((a - b).abs() < 1e-13, "{a} vs {b}");
        }
        let r = row_stats(&[1.0, 2.0, f32::NEG_INFINITY, 4.0], 2.0, Some(1)).unwrap();
        assert!((r.lse - 2.464368784107945).abs() < 1e-14);
        assert!((r.logp - -1.464368784107945).abs() < 1e-14);
        assert!((r.entropy - 0.905959256479227).abs() < 1e-14);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let row = [0.3f32, -1.2, 2.5, 0.0, 1.1];
        let (g_lp, g_h, g_lse) = (0.7, -0.4, 0.2);
        let loss = |row: &[f64]| {
            // evaluate in f64 directly (no f32 rounding of the perturbed logits)
            let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            let h: f64 = row.iter().map(|v| -(v - lse).exp() * (v - lse)).sum();
            g_lse * lse + g_lp * (row[2] - lse) + g_h * h
        };
        let g = row_grad(&row, 1.0, Some(2), g_lp, g_h, g_lse).unwrap();
        for j in 0..row.len() {
            let h = 1e-6;
            let mut a: Vec<f64> = row.iter().map(|&v| v as f64).collect();
            let mut b = a.clone();
            a[j] += h;
            b[j] -= h;
            let fd = (loss(&a) - loss(&b)) / (2.0 * h);
            assert!((fd - g[j]).abs() < 1e-8, "col {j}: fd {fd} vs {}", g[j]);
        }
    }
}
