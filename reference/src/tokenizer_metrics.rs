//! The tokenizer inequity metrics (`tokenmath_core::tokenizer_metrics`) from their textbook
//! definitions, in `f64`, with a hash map of character counts.

use std::collections::HashMap;

/// `Σ n_s` in `u128` (cannot overflow for any slice).
pub fn corpus_token_count(tokens_per_sentence: &[u32]) -> u128 {
    tokens_per_sentence.iter().map(|&n| u128::from(n)).sum()
}

/// `(bytes, chars, whitespace)` of `text`.
pub fn text_counts(text: &str) -> (u64, u64, u64) {
    let chars = text.chars().count() as u64;
    let ws = text.chars().filter(|c| c.is_whitespace()).count() as u64;
    (text.len() as u64, chars, ws)
}

/// `−Σ_c p_c log2 p_c`, the textbook form (`p_c = n_c/n`), 0 for empty text.
pub fn char_entropy_bits(text: &str) -> f64 {
    let mut counts: HashMap<char, u64> = HashMap::new();
    for c in text.chars() {
        *counts.entry(c).or_default() += 1;
    }
    entropy_of_counts(&counts.into_values().collect::<Vec<_>>())
}

/// `−Σ_c p_c log2 p_c` of counts (zeros skipped), 0 when all are 0.
pub fn entropy_of_counts(counts: &[u64]) -> f64 {
    let n: f64 = counts.iter().map(|&c| c as f64).sum();
    if n == 0.0 {
        return 0.0;
    }
    -counts.iter().filter(|&&c| c > 0).map(|&c| c as f64 / n).map(|p| p * p.log2()).sum::<f64>()
}

/// Least squares of `ln CTC` on `ln V`: `(ln a, b, R²)`, the normal equations solved directly
/// (`b = (nΣxy − ΣxΣy)/(nΣx² − (Σx)²)`), a different route from the core's centred sums.
pub fn fit_power_law(v: &[f64], ctc: &[f64]) -> (f64, f64, f64) {
    let n = v.len() as f64;
    let x: Vec<f64> = v.iter().map(|v| v.ln()).collect();
    let y: Vec<f64> = ctc.iter().map(|c| c.ln()).collect();
    let (sx, sy) = (x.iter().sum::<f64>(), y.iter().sum::<f64>());
    let sxy: f64 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
    let sxx: f64 = x.iter().map(|a| a * a).sum();
    let b = (n * sxy - sx * sy) / (n * sxx - sx * sx);
    let ln_a = (sy - b * sx) / n;
    let ym = sy / n;
    let ss_tot: f64 = y.iter().map(|v| (v - ym) * (v - ym)).sum();
    let ss_res: f64 = x.iter().zip(&y).map(|(a, c)| (c - ln_a - b * a).powi(2)).sum();
    let r2 = if ss_tot == 0.0 { 1.0 } else { 1.0 - ss_res / ss_tot };
    (ln_a, b, r2)
}

/// `(target/a)^{1/b}` with `a = exp(ln a)`.
pub fn optimal_vocab_size(ln_a: f64, b: f64, target: f64) -> f64 {
    (target / ln_a.exp()).powf(1.0 / b)
}
