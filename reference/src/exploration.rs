//! f64 oracles for the exploration bonuses (`token-rewards.md` §5), written from the
//! definitions: E3B by an explicit inverse of `C = λI + Σ φφᵀ` (no Sherman–Morrison), the
//! running moments by two passes over every value seen.

/// `1/sqrt(n)`.
pub fn count_bonus_global(n: u64) -> f64 {
    1.0 / (n as f64).sqrt()
}

/// Gauss–Jordan inverse with partial pivoting of the `d×d` row-major `a`. `None` if singular.
pub fn invert(a: &[f64], d: usize) -> Option<Vec<f64>> {
    let mut m = a.to_vec();
    let mut inv = vec![0.0; d * d];
    for i in 0..d {
        inv[i * d + i] = 1.0;
    }
    for col in 0..d {
        let piv = (col..d).max_by(|&x, &y| m[x * d + col].abs().total_cmp(&m[y * d + col].abs()))?;
        if m[piv * d + col] == 0.0 {
            return None;
        }
        for k in 0..d {
            m.swap(col * d + k, piv * d + k);
            inv.swap(col * d + k, piv * d + k);
        }
        let p = m[col * d + col];
        for k in 0..d {
            m[col * d + k] /= p;
            inv[col * d + k] /= p;
        }
        for r in 0..d {
            if r != col {
                let f = m[r * d + col];
                for k in 0..d {
                    m[r * d + k] -= f * m[col * d + k];
                    inv[r * d + k] -= f * inv[col * d + k];
                }
            }
        }
    }
    Some(inv)
}

/// E3B bonuses of a sequence of features (`phis[t]` has `d` entries), from one reset:
/// `b_t = φ_tᵀ (λI + Σ_{s<t} φ_s φ_sᵀ)⁻¹ φ_t` with the inverse computed explicitly each step.
/// The first step's reported 0 is the caller's business (this returns the raw `b_0`).
pub fn e3b_bonuses_explicit(phis: &[Vec<f32>], d: usize, ridge: f32) -> Vec<f64> {
    let mut c = vec![0.0f64; d * d];
    for i in 0..d {
        c[i * d + i] = ridge as f64;
    }
    let mut out = Vec::with_capacity(phis.len());
    for phi in phis {
        let inv = invert(&c, d).expect("λI + Σφφᵀ is positive definite");
        let p: Vec<f64> = phi.iter().map(|&v| v as f64).collect();
        let mut b = 0.0;
        for i in 0..d {
            for j in 0..d {
                b += p[i] * inv[i * d + j] * p[j];
            }
        }
        out.push(b);
        for i in 0..d {
            for j in 0..d {
                c[i * d + j] += p[i] * p[j];
            }
        }
    }
    out
}

/// The explicit inverse `(λI + Σ φφᵀ)⁻¹` after all of `phis`.
pub fn e3b_inverse_explicit(phis: &[Vec<f32>], d: usize, ridge: f32) -> Vec<f64> {
    let mut c = vec![0.0f64; d * d];
    for i in 0..d {
        c[i * d + i] = ridge as f64;
    }
    for phi in phis {
        for i in 0..d {
            for j in 0..d {
                c[i * d + j] += phi[i] as f64 * phi[j] as f64;
            }
        }
    }
    invert(&c, d).expect("positive definite")
}

/// `‖p − t‖₂` of one row.
pub fn rnd_error(pred: &[f32], target: &[f32]) -> f64 {
    pred.iter().zip(target).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum::<f64>().sqrt()
}

/// `max(e_next − α·e_curr, 0)`.
pub fn noveld_bonus(e_next: f32, e_curr: f32, alpha: f32) -> f64 {
    (e_next as f64 - alpha as f64 * e_curr as f64).max(0.0)
}

/// Population `(count, mean, std)` of every value, two passes.
pub fn population_stats(x: &[f64]) -> (f64, f64, f64) {
    let n = x.len() as f64;
    if x.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (n, mean, var.sqrt())
}

/// The source's `update_running_moments` arithmetic, transcribed: state `(count, sum, M2)`,
/// a batch of `time_steps` rows (its "length") and any number of elements.
pub fn e3b_update_running_moments(state: (f64, f64, f64), batch: &[f32], time_steps: usize) -> (f64, f64, f64) {
    let (count, sum, m2) = state;
    let new_count = time_steps as f64;
    let bsum: f64 = batch.iter().map(|&v| v as f64).sum();
    let new_mean = bsum / new_count;
    let dev: f64 = batch.iter().map(|&v| (v as f64 - new_mean).powi(2)).sum();
    let m2 = m2 + dev + count * new_count / (count + new_count) * (new_mean - sum / count).powi(2);
    (count + new_count, sum + bsum, m2)
}
