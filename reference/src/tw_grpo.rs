//! TW-GRPO (spec `policy.md` §7.3) in `f64`, the way the published code computes it: the full
//! `[B, T, V]` log-prob tensor is materialised, then the dispersion, the min-max normalisation
//! and the weights. One departure, the library's: `−inf` logits follow the limit rule of
//! `tokenmath_core::seed::tw_grpo` (the published code gives NaN there).

use crate::{row_stats, stats_tolerance, EPS32};

/// Reference weights and the intermediate dispersion.
#[derive(Clone, Debug)]
pub struct TwRef {
    /// Weights `[B·T]`.
    pub w: Vec<f64>,
    /// `D[g, t]`, `[B/G · T]`.
    pub d: Vec<f64>,
    /// An absolute error bound for the `f32` kernel's `D[g, t]` (see [`weights`]).
    pub d_tol: Vec<f64>,
}

/// `δ` with the `−inf` limit rule.
pub fn delta(mean: f64, l: f64, lmax: f64, c: f64) -> f64 {
    if l == f64::NEG_INFINITY {
        return if lmax == f64::NEG_INFINITY { 0.0 } else { c };
    }
    let d = mean - l;
    if d.is_nan() {
        d
    } else {
        d.clamp(-c, c)
    }
}

/// TW-GRPO token weights of a dense `[B·T, V]` logit matrix (`f32` values, temperature 1).
///
/// The tolerance `d_tol` bounds the kernel's `D` from its operation order, with `ε = 2^-23`:
/// each `ℓ = (z − max) − log_sum` carries `Δℓ = ε(|z − m| + |ℓ|) + tol(log_sum)`, the mean
/// `Δm̄ = max_k Δℓ_k + ε·G·max_k |ℓ_k|`, `Δδ = Δm̄ + Δℓ_k + ε|δ|`; a term `exp(δ) − δ − 1` moves
/// by at most `(e^{|δ|} + 1)·Δδ` plus `4ε·(term + e^{|δ|} + |δ| + 1)` (its evaluation), and the f32 sum of a column's `G` terms by
/// `G·ε` of it; `D` is their sum over `v` and `k`, divided by `G`.
pub fn weights(logits: &[f32], vocab: usize, mask: &[u8], t: usize, g: usize, alpha: f64, c: f64) -> TwRef {
    let n = mask.len();
    assert_eq!(logits.len(), n * vocab);
    let b = n / t;
    let groups = b / g;
    let neg_log_v = -(vocab as f64).ln();
    // log-probs (materialised, as the reference does) and their input error.
    let mut lp = vec![0.0f64; n * vocab];
    let mut lp_err = vec![0.0f64; n * vocab];
    for r in 0..n {
        let row = &logits[r * vocab..(r + 1) * vocab];
        if mask[r] == 0 {
            lp[r * vocab..(r + 1) * vocab].fill(neg_log_v);
            continue;
        }
        match row_stats(row, 1.0, None) {
            Some(st) => {
                let tol = stats_tolerance(&st, vocab, false);
                for v in 0..vocab {
                    let z = row[v] as f64;
                    let l = st.log_prob(z);
                    lp[r * vocab + v] = l;
                    lp_err[r * vocab + v] =
                        if l.is_finite() { EPS32 * ((z - st.m).abs() + l.abs()) + tol.log_sum } else { 0.0 };
                }
            }
            None => lp[r * vocab..(r + 1) * vocab].fill(f64::NAN),
        }
    }
    let mut d = vec![0.0f64; groups * t];
    let mut d_tol = vec![0.0f64; groups * t];
    for gi in 0..groups {
        for pos in 0..t {
            let rows: Vec<usize> = (0..g).map(|k| (gi * g + k) * t + pos).collect();
            if rows.iter().all(|&r| mask[r] == 0) {
                continue; // D = 0: identical uniform rows.
            }
            let (mut sum_d, mut sum_tol) = (0.0f64, 0.0f64);
            for v in 0..vocab {
                let ls: Vec<f64> = rows.iter().map(|&r| lp[r * vocab + v]).collect();
                let errs: Vec<f64> = rows.iter().map(|&r| lp_err[r * vocab + v]).collect();
                let mean = ls.iter().sum::<f64>() / g as f64;
                let lmax = ls.iter().copied().fold(f64::NEG_INFINITY, |a, x| if x > a { x } else { a });
                let max_abs = ls.iter().filter(|x| x.is_finite()).fold(0.0f64, |a, x| a.max(x.abs()));
                let max_err = errs.iter().copied().fold(0.0f64, f64::max);
                let d_mean = max_err + EPS32 * g as f64 * max_abs;
                let mut col = 0.0;
                let mut col_tol = 0.0;
                for (k, &l) in ls.iter().enumerate() {
                    let dl = delta(mean, l, lmax, c);
                    let term = dl.exp_m1() - dl;
                    col += term;
                    let dd = d_mean + errs[k] + EPS32 * dl.abs();
                    col_tol += (dl.abs().exp() + 1.0) * dd + 4.0 * EPS32 * (term + dl.abs().exp() + dl.abs() + 1.0);
                }
                sum_d += col;
                sum_tol += col_tol + g as f64 * EPS32 * col;
            }
            d[gi * t + pos] = sum_d / g as f64;
            d_tol[gi * t + pos] = sum_tol / g as f64 + 1e-30;
        }
    }
    let mut w = vec![0.0f64; n];
    for gi in 0..groups {
        let ds = &d[gi * t..(gi + 1) * t];
        let lo = ds.iter().copied().filter(|x| !x.is_nan()).fold(f64::INFINITY, f64::min);
        let hi = ds.iter().copied().filter(|x| !x.is_nan()).fold(f64::NEG_INFINITY, f64::max);
        for (pos, &dp) in ds.iter().enumerate() {
            let wt = 1.0 + (alpha - 1.0) * (dp - lo) / (hi - lo + 1e-8);
            for k in 0..g {
                let r = (gi * g + k) * t + pos;
                w[r] = if mask[r] != 0 { wt } else { 0.0 };
            }
        }
    }
    TwRef { w, d, d_tol }
}

/// `Σ w·ℓ·mask / Σ mask` (0 for an empty mask: the library's choice; the published code gives NaN).
pub fn loss(per_token: &[f32], w: &[f32], mask: &[u8]) -> f64 {
    let count = mask.iter().filter(|&&m| m != 0).count();
    if count == 0 {
        return 0.0;
    }
    let s: f64 = (0..mask.len()).filter(|&i| mask[i] != 0).map(|i| w[i] as f64 * per_token[i] as f64).sum();
    s / count as f64
}

/// Python's `str.isspace`.
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `re.search(r"<answer>(.*?)</answer>", s, re.DOTALL)` group 1 stripped, else `s.strip()`.
fn answer(s: &str) -> String {
    let b = s.as_bytes();
    for i in 0..b.len() {
        if s.is_char_boundary(i) && s[i..].starts_with("<answer>") {
            for j in i + 8..=b.len() {
                if s.is_char_boundary(j) && s[j..].starts_with("</answer>") {
                    return s[i + 8..j].trim_matches(py_space).to_string();
                }
            }
        }
    }
    s.trim_matches(py_space).to_string()
}

fn options(s: &str) -> std::collections::BTreeSet<String> {
    s.replace(' ', "").split(',').map(|p| p.trim_matches(py_space).to_string()).collect()
}

/// `accuracy_reward` of TW-GRPO, with Python's sets.
pub fn soft_multichoice(completion: &str, solution: &str, verifier_ok: bool) -> f64 {
    if verifier_ok {
        return 1.0;
    }
    let (s, gt) = (options(&answer(completion)), options(&answer(solution)));
    if s.is_subset(&gt) {
        s.len() as f64 / gt.len() as f64
    } else {
        0.0
    }
}

/// `origin_accuracy_reward`: 1 iff the option sets are equal.
pub fn exact_multichoice(completion: &str, solution: &str, verifier_ok: bool) -> f64 {
    if verifier_ok || options(&answer(completion)) == options(&answer(solution)) {
        1.0
    } else {
        0.0
    }
}

/// `format_reward` by brute force over every possible match of
/// `<think>.*?</think>\s*<answer>.*?</answer>[\s!]*$` (DOTALL) in the stripped completion.
pub fn format(completion: &str) -> f64 {
    if completion.matches("<think>").count() > 1 || completion.matches("<answer>").count() > 1 {
        return 0.0;
    }
    let s = completion.trim_matches(py_space);
    let at = |i: usize, lit: &str| s.is_char_boundary(i) && s[i..].starts_with(lit);
    let n = s.len();
    for i in (0..n).filter(|&i| at(i, "<think>")) {
        for j in (i + 7..n).filter(|&j| at(j, "</think>")) {
            for k in (j + 8..n).filter(|&k| at(k, "<answer>")) {
                if !s[j + 8..k].chars().all(py_space) {
                    continue;
                }
                for l in (k + 8..n).filter(|&l| at(l, "</answer>")) {
                    if s[l + 9..].chars().all(|c| c == '!' || py_space(c)) {
                        return 1.0;
                    }
                }
            }
        }
    }
    0.0
}
