//! Tokenizer inequity metrics: corpus token count, token and byte premium, bytes and characters
//! per token, whitespace proportion, character entropy, and the power law `CTC(V) = a·V^b`
//! with its optimal vocabulary size.
//!
//! Sources: *Explaining and Mitigating Crosslingual Tokenizer Inequities* (arXiv 2510.21909);
//! token premium, Petrov et al. (arXiv 2305.15425); byte premium (arXiv 2403.00686); the
//! authors' code `catherinearnett/matched_compression` (`trilingual_calculate_ctc.py`) and
//! `catherinearnett/byte-premium-tool` (`byte_premium_tool.py`).
//!
//! # Math
//!
//! On a parallel corpus (the same sentences in every language `L`, each sentence tokenised
//! separately, special tokens not counted):
//!
//! ```text
//! CTC(L)          = Σ_sentences  #non-special tokens           corpus token count
//! TP(L)           = CTC(L) / CTC(ref)                          token premium (CTC(ref) = 0: error)
//! BP(L1, L2)      = utf8_bytes(L1) / utf8_bytes(L2)            byte premium (0 bytes: error)
//! bytes/token     = utf8_bytes / CTC                           (CTC = 0: error)
//! chars/token     = #Unicode scalar values / CTC               (CTC = 0: error)
//! whitespace      = #whitespace scalar values / #scalar values (empty text: 0)
//! H               = −Σ_c (n_c/n)·log2(n_c/n)  bits             (empty text: 0)
//! ```
//!
//! The power law per language, from measured points `(V_i, CTC_i)`, is fitted by ordinary least
//! squares in log space (two passes: means first, then centred sums):
//!
//! ```text
//! b = Σ(lv − l̄v)(lc − l̄c) / Σ(lv − l̄v)²      ln a = l̄c − b·l̄v      lv = ln V, lc = ln CTC
//! R² = 1 − SS_res/SS_tot (log space; SS_tot = 0 gives R² = 1)
//! V* = (CTC_target / a)^{1/b} = exp((ln CTC_target − ln a) / b)
//! ```
//!
//! `V*` is computed from `ln a` (kept in [`PowerLaw::ln_a`]) so an `a` that overflows `f64` does
//! not lose the fit.
//!
//! # Choices
//!
//! * Whitespace is Rust's [`char::is_whitespace`], the Unicode `White_Space` property
//!   [library choice].
//! * The corpus token count sums in `u64` and reports an overflow as
//!   [`TmError::SizeOverflow`] (the spec's `-> u64` has no way to say it) [library choice].
//! * "Counts in, metrics out": [`TextCounts`] accumulates bytes, scalar values and whitespace
//!   over any number of sentences (and merges across shards exactly, integer sums), so a caller
//!   streaming a corpus never concatenates it.
//! * Character entropy without allocation sorts a caller-owned scratch of the text's scalar
//!   values ([`char_entropy_scratch_len`]), then sums `n_c·log2 n_c` over runs in code-point
//!   order: `H = log2 n − (1/n)·Σ n_c·log2 n_c` (the same value as the textbook form, one
//!   logarithm per distinct character) [library choice]. [`char_entropy_bits_from_counts`]
//!   takes the per-character counts directly.
//! * `round_vocab(v, m) = ceil(v/m)·m` rounds `V*` up to a hardware multiple [library choice].
//! * The target CTC of `V*` is a required argument: which one the paper used is not published.

use crate::error::{check_len, TmError};

/// Sum of per-sentence non-special token counts: `CTC`.
///
/// Errors: [`TmError::SizeOverflow`] if the sum exceeds `u64`.
pub fn corpus_token_count(tokens_per_sentence: &[u32]) -> Result<u64, TmError> {
    tokens_per_sentence
        .iter()
        .try_fold(0u64, |acc, &n| acc.checked_add(u64::from(n)))
        .ok_or(TmError::SizeOverflow { what: "corpus token count" })
}

/// Token premium `CTC(L)/CTC(ref)`.
///
/// Errors: [`TmError::InvalidArgument`] when `ctc_ref == 0`.
pub fn token_premium(ctc_lang: u64, ctc_ref: u64) -> Result<f64, TmError> {
    if ctc_ref == 0 {
        return Err(TmError::InvalidArgument("token premium: the reference corpus token count is 0"));
    }
    Ok(ctc_lang as f64 / ctc_ref as f64)
}

/// Byte premium `bytes(L1)/bytes(L2)` of parallel text (the byte-premium tool warns below 100
/// lines; that warning is the caller's).
///
/// Errors: [`TmError::InvalidArgument`] when `bytes_ref == 0`.
pub fn byte_premium(bytes_lang: u64, bytes_ref: u64) -> Result<f64, TmError> {
    if bytes_ref == 0 {
        return Err(TmError::InvalidArgument("byte premium: the reference text has 0 bytes"));
    }
    Ok(bytes_lang as f64 / bytes_ref as f64)
}

/// Byte, scalar-value and whitespace counts of some text, accumulated sentence by sentence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TextCounts {
    /// UTF-8 bytes.
    pub bytes: u64,
    /// Unicode scalar values (`char`s).
    pub chars: u64,
    /// Scalar values with the Unicode `White_Space` property.
    pub whitespace: u64,
}

impl TextCounts {
    /// The counts of `text`.
    pub fn of(text: &str) -> TextCounts {
        let mut c = TextCounts::default();
        c.add(text);
        c
    }

    /// Adds the counts of `text` (saturating: `u64` cannot overflow on real text).
    pub fn add(&mut self, text: &str) {
        self.bytes = self.bytes.saturating_add(text.len() as u64);
        for ch in text.chars() {
            self.chars = self.chars.saturating_add(1);
            self.whitespace = self.whitespace.saturating_add(u64::from(ch.is_whitespace()));
        }
    }

    /// The counts of the union of two disjoint pieces of text (exact integer sums).
    pub fn merge(self, other: TextCounts) -> TextCounts {
        TextCounts {
            bytes: self.bytes.saturating_add(other.bytes),
            chars: self.chars.saturating_add(other.chars),
            whitespace: self.whitespace.saturating_add(other.whitespace),
        }
    }

    /// `bytes / n_tokens`. Errors: [`TmError::InvalidArgument`] when `n_tokens == 0`.
    pub fn bytes_per_token(&self, n_tokens: u64) -> Result<f64, TmError> {
        per_token(self.bytes, n_tokens, "bytes per token: the token count is 0")
    }

    /// `chars / n_tokens`. Errors: [`TmError::InvalidArgument`] when `n_tokens == 0`.
    pub fn chars_per_token(&self, n_tokens: u64) -> Result<f64, TmError> {
        per_token(self.chars, n_tokens, "characters per token: the token count is 0")
    }

    /// `whitespace / chars`; 0 for empty text.
    pub fn whitespace_proportion(&self) -> f64 {
        if self.chars == 0 {
            0.0
        } else {
            self.whitespace as f64 / self.chars as f64
        }
    }
}

fn per_token(count: u64, n_tokens: u64, msg: &'static str) -> Result<f64, TmError> {
    if n_tokens == 0 {
        return Err(TmError::InvalidArgument(msg));
    }
    Ok(count as f64 / n_tokens as f64)
}

/// UTF-8 bytes of `text` per token. Errors: [`TmError::InvalidArgument`] when `n_tokens == 0`.
pub fn bytes_per_token(text: &str, n_tokens: u64) -> Result<f64, TmError> {
    TextCounts::of(text).bytes_per_token(n_tokens)
}

/// Unicode scalar values of `text` per token. Errors: [`TmError::InvalidArgument`] when
/// `n_tokens == 0`.
pub fn chars_per_token(text: &str, n_tokens: u64) -> Result<f64, TmError> {
    TextCounts::of(text).chars_per_token(n_tokens)
}

/// Fraction of the scalar values of `text` that are whitespace (`char::is_whitespace`); 0 for
/// empty text.
pub fn whitespace_proportion(text: &str) -> f64 {
    TextCounts::of(text).whitespace_proportion()
}

/// Scratch elements [`char_entropy_bits`] needs for `text`: its number of scalar values.
pub fn char_entropy_scratch_len(text: &str) -> usize {
    text.chars().count()
}

/// Character entropy of `text` in bits, `−Σ_c (n_c/n)·log2(n_c/n)`; 0 for empty text.
///
/// `scratch` holds at least [`char_entropy_scratch_len`] elements (its contents are
/// overwritten); the characters are sorted in it to count them without allocating.
///
/// Errors: [`TmError::LengthMismatch`] when `scratch` is too short (nothing is written).
pub fn char_entropy_bits(text: &str, scratch: &mut [u32]) -> Result<f64, TmError> {
    let n = char_entropy_scratch_len(text);
    if scratch.len() < n {
        return Err(TmError::LengthMismatch { what: "scratch", expected: n, got: scratch.len() });
    }
    let s = &mut scratch[..n];
    for (d, ch) in s.iter_mut().zip(text.chars()) {
        *d = u32::from(ch);
    }
    s.sort_unstable();
    let mut sum = 0.0f64; // Σ n_c·log2 n_c, in code-point order
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && s[j] == s[i] {
            j += 1;
        }
        sum += n_log2_n((j - i) as u64);
        i = j;
    }
    Ok(entropy_from_sum(sum, n as u64))
}

/// Character entropy in bits from per-character counts `n_c` (zeros are skipped; any order):
/// `log2 n − (1/n)·Σ n_c·log2 n_c` with `n = Σ n_c`; 0 when every count is 0.
///
/// Errors: [`TmError::SizeOverflow`] if `Σ n_c` exceeds `u64`.
pub fn char_entropy_bits_from_counts(counts: &[u64]) -> Result<f64, TmError> {
    let n = counts
        .iter()
        .try_fold(0u64, |acc, &c| acc.checked_add(c))
        .ok_or(TmError::SizeOverflow { what: "character count" })?;
    let sum: f64 = counts.iter().map(|&c| n_log2_n(c)).sum();
    Ok(entropy_from_sum(sum, n))
}

fn n_log2_n(c: u64) -> f64 {
    if c <= 1 {
        0.0
    } else {
        let c = c as f64;
        c * libm::log2(c)
    }
}

fn entropy_from_sum(sum: f64, n: u64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let n = n as f64;
    // Rounding can leave −1 ulp when one character fills the text; entropy is ≥ 0.
    (libm::log2(n) - sum / n).max(0.0)
}

/// A fitted power law `CTC(V) = a·V^b`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PowerLaw {
    /// `a = exp(ln a)` (may be `+inf` or 0 when `ln a` is out of `f64`'s exponent range).
    pub a: f64,
    /// `ln a`, the fitted intercept in log space.
    pub ln_a: f64,
    /// The exponent `b` (negative when a larger vocabulary compresses better).
    pub b: f64,
    /// `R²` of the fit in log space.
    pub r2: f64,
}

/// Fits `CTC = a·V^b` by least squares on `(ln V, ln CTC)`.
///
/// Errors: [`TmError::LengthMismatch`] (`ctc.len() != v.len()`); [`TmError::NonFinite`] for a
/// NaN or infinite point; [`TmError::InvalidArgument`] for a point `<= 0`, or fewer than two
/// distinct `V`.
pub fn fit_power_law(v: &[f64], ctc: &[f64]) -> Result<PowerLaw, TmError> {
    check_len("ctc", v.len(), ctc.len())?;
    for (what, xs) in [("v", v), ("ctc", ctc)] {
        if let Some(index) = xs.iter().position(|x| !x.is_finite()) {
            return Err(TmError::NonFinite { what, index });
        }
        if xs.iter().any(|&x| x <= 0.0) {
            return Err(TmError::InvalidArgument("power-law fit: every V and CTC must be > 0"));
        }
    }
    if v.iter().all(|&x| x == v[0]) {
        return Err(TmError::InvalidArgument("power-law fit: at least two distinct vocabulary sizes are needed"));
    }
    let n = v.len() as f64;
    let lv_mean = v.iter().map(|&x| libm::log(x)).sum::<f64>() / n;
    let lc_mean = ctc.iter().map(|&x| libm::log(x)).sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in v.iter().zip(ctc) {
        let dx = libm::log(x) - lv_mean;
        let dy = libm::log(y) - lc_mean;
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    // Distinct positive finite V have distinct logs unless they are adjacent floats whose
    // logs round together; then the slope is undefined.
    if sxx == 0.0 {
        return Err(TmError::InvalidArgument("power-law fit: the vocabulary sizes are too close to fit a slope"));
    }
    let b = sxy / sxx;
    let ln_a = lc_mean - b * lv_mean;
    let mut ss_res = 0.0f64;
    for (&x, &y) in v.iter().zip(ctc) {
        let r = libm::log(y) - (ln_a + b * libm::log(x));
        ss_res += r * r;
    }
    let r2 = if syy == 0.0 { 1.0 } else { 1.0 - ss_res / syy };
    Ok(PowerLaw { a: libm::exp(ln_a), ln_a, b, r2 })
}

impl PowerLaw {
    /// The vocabulary size `V*` at which the fitted law gives `ctc_target`:
    /// `exp((ln ctc_target − ln a)/b)`. Errors as [`optimal_vocab_size`].
    pub fn optimal_vocab_size(&self, ctc_target: f64) -> Result<f64, TmError> {
        optimal_from_ln_a(self.ln_a, self.b, ctc_target)
    }
}

/// `V* = (ctc_target / a)^{1/b}`.
///
/// Errors: [`TmError::InvalidArgument`] when `a` or `ctc_target` is not finite and `> 0`, `b` is
/// not finite or is 0, or `V*` overflows `f64`.
pub fn optimal_vocab_size(a: f64, b: f64, ctc_target: f64) -> Result<f64, TmError> {
    if !(a.is_finite() && a > 0.0) {
        return Err(TmError::InvalidArgument("optimal vocabulary size: `a` must be finite and > 0"));
    }
    optimal_from_ln_a(libm::log(a), b, ctc_target)
}

fn optimal_from_ln_a(ln_a: f64, b: f64, ctc_target: f64) -> Result<f64, TmError> {
    if !ln_a.is_finite() {
        return Err(TmError::InvalidArgument("optimal vocabulary size: `ln a` must be finite"));
    }
    if !b.is_finite() || b == 0.0 {
        return Err(TmError::InvalidArgument("optimal vocabulary size: `b` must be finite and non-zero"));
    }
    if !(ctc_target.is_finite() && ctc_target > 0.0) {
        return Err(TmError::InvalidArgument("optimal vocabulary size: the target CTC must be finite and > 0"));
    }
    let v = libm::exp((libm::log(ctc_target) - ln_a) / b);
    if !v.is_finite() || v <= 0.0 {
        return Err(TmError::InvalidArgument("optimal vocabulary size: V* is out of f64's range"));
    }
    Ok(v)
}

/// `ceil(v/multiple)·multiple`: `V*` rounded up to a hardware multiple (e.g. 64 or 128).
///
/// Errors: [`TmError::InvalidArgument`] when `v` is not finite and `> 0` or `multiple == 0`;
/// [`TmError::SizeOverflow`] when the result exceeds `u64`.
pub fn round_vocab(v: f64, multiple: u64) -> Result<u64, TmError> {
    if !(v.is_finite() && v > 0.0) || multiple == 0 {
        return Err(TmError::InvalidArgument("round_vocab: v must be finite and > 0, multiple >= 1"));
    }
    // ceil(v/m)·m == ceil(ceil(v)/m)·m for an integer m: round to an integer first, then in
    // exact integer arithmetic. 2^64 as f64 is exact; every integer below it converts exactly.
    let u = libm::ceil(v);
    if u >= 18_446_744_073_709_551_616.0 {
        return Err(TmError::SizeOverflow { what: "rounded vocabulary size" });
    }
    let u = u as u64;
    u.div_ceil(multiple).checked_mul(multiple).ok_or(TmError::SizeOverflow { what: "rounded vocabulary size" })
}
