//! Tokenizer inequity metrics: corpus token count, token and byte premium, text counts, bytes
//! and characters per token, whitespace proportion, character entropy, the power-law fit and
//! the optimal vocabulary size. `tokenmath_core::tokenizer_metrics` documents the math.
//!
//! Text arguments are UTF-8 byte arrays with a length (no NUL terminator needed); text that is
//! not valid UTF-8 is `TKM_STATUS_INVALID_ARGUMENT`.

use tokenmath_core::tokenizer_metrics::{self as tm, PowerLaw, TextCounts};

use crate::status::*;
use crate::util::{guard, input, scratch, utf8, write};

/// Byte, Unicode scalar value and whitespace counts of some text (accumulated over any number
/// of sentences by `tkm_text_counts_add`). Start from all zeros.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct tkm_text_counts {
    /// UTF-8 bytes.
    pub bytes: u64,
    /// Unicode scalar values.
    pub chars: u64,
    /// Scalar values with the Unicode White_Space property.
    pub whitespace: u64,
}

/// A power law `CTC(V) = a * V^b` fitted in log space.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct tkm_power_law {
    /// `a = exp(ln_a)` (may be +inf or 0 when `ln_a` is outside double's exponent range).
    pub a: f64,
    /// `ln a`.
    pub ln_a: f64,
    /// The exponent `b`.
    pub b: f64,
    /// `R^2` of the fit in log space.
    pub r2: f64,
}

/// `*out = sum of tokens_per_sentence[0..n]` (the corpus token count, CTC).
///
/// Errors: `TKM_STATUS_NULL_POINTER`; `TKM_STATUS_SIZE_OVERFLOW` if the sum exceeds `uint64_t`.
///
/// # Safety
/// `tokens_per_sentence` valid for `n` elements; `out` valid for one.
#[no_mangle]
pub unsafe extern "C" fn tkm_corpus_token_count(
    tokens_per_sentence: *const u32,
    n: usize,
    out: *mut u64,
) -> tkm_status {
    guard(|| write(out, tm::corpus_token_count(input(tokens_per_sentence, n)?)?))
}

/// Token premium `*out = ctc_lang / ctc_ref`.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` when `ctc_ref == 0`; `TKM_STATUS_NULL_POINTER`.
///
/// # Safety
/// `out` valid for one element.
#[no_mangle]
pub unsafe extern "C" fn tkm_token_premium(ctc_lang: u64, ctc_ref: u64, out: *mut f64) -> tkm_status {
    guard(|| write(out, tm::token_premium(ctc_lang, ctc_ref)?))
}

/// Byte premium `*out = bytes_lang / bytes_ref` of parallel text.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` when `bytes_ref == 0`; `TKM_STATUS_NULL_POINTER`.
///
/// # Safety
/// `out` valid for one element.
#[no_mangle]
pub unsafe extern "C" fn tkm_byte_premium(bytes_lang: u64, bytes_ref: u64, out: *mut f64) -> tkm_status {
    guard(|| write(out, tm::byte_premium(bytes_lang, bytes_ref)?))
}

/// Adds the counts of the UTF-8 `text` (`len` bytes) to `*counts` (in place, only on success;
/// the sums saturate at `UINT64_MAX`).
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` for invalid UTF-8; `TKM_STATUS_NULL_POINTER`.
///
/// # Safety
/// `text` valid for `len` bytes; `counts` valid for reads and writes of one struct.
#[no_mangle]
pub unsafe extern "C" fn tkm_text_counts_add(
    text_utf8: *const u8,
    len: usize,
    counts: *mut tkm_text_counts,
) -> tkm_status {
    guard(|| {
        let t = utf8(text_utf8, len)?;
        let c = crate::util::inout(counts, 1)?;
        let add = TextCounts::of(t);
        let sum = TextCounts { bytes: c[0].bytes, chars: c[0].chars, whitespace: c[0].whitespace }.merge(add);
        c[0] = tkm_text_counts { bytes: sum.bytes, chars: sum.chars, whitespace: sum.whitespace };
        Ok(())
    })
}

/// `*out = UTF-8 bytes of text / n_tokens`.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` for `n_tokens == 0` or invalid UTF-8;
/// `TKM_STATUS_NULL_POINTER`.
///
/// # Safety
/// `text` valid for `len` bytes; `out` valid for one element.
#[no_mangle]
pub unsafe extern "C" fn tkm_bytes_per_token(
    text_utf8: *const u8,
    len: usize,
    n_tokens: u64,
    out: *mut f64,
) -> tkm_status {
    guard(|| write(out, tm::bytes_per_token(utf8(text_utf8, len)?, n_tokens)?))
}

/// `*out = Unicode scalar values of text / n_tokens`.
///
/// Errors: as `tkm_bytes_per_token`.
///
/// # Safety
/// `text` valid for `len` bytes; `out` valid for one element.
#[no_mangle]
pub unsafe extern "C" fn tkm_chars_per_token(
    text_utf8: *const u8,
    len: usize,
    n_tokens: u64,
    out: *mut f64,
) -> tkm_status {
    guard(|| write(out, tm::chars_per_token(utf8(text_utf8, len)?, n_tokens)?))
}

/// `*out` = fraction of the scalar values of the text that are whitespace (Unicode
/// White_Space); 0 for empty text.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` for invalid UTF-8; `TKM_STATUS_NULL_POINTER`.
///
/// # Safety
/// `text` valid for `len` bytes; `out` valid for one element.
#[no_mangle]
pub unsafe extern "C" fn tkm_whitespace_proportion(text_utf8: *const u8, len: usize, out: *mut f64) -> tkm_status {
    guard(|| write(out, tm::whitespace_proportion(utf8(text_utf8, len)?)))
}

/// Character entropy of the text in bits, `-sum_c p_c log2 p_c`; 0 for empty text. Allocates
/// one `uint32_t` per scalar value as scratch.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` for invalid UTF-8; `TKM_STATUS_OUT_OF_MEMORY`;
/// `TKM_STATUS_NULL_POINTER`.
///
/// # Safety
/// `text` valid for `len` bytes; `out` valid for one element.
#[no_mangle]
pub unsafe extern "C" fn tkm_char_entropy_bits(text_utf8: *const u8, len: usize, out: *mut f64) -> tkm_status {
    guard(|| {
        let t = utf8(text_utf8, len)?;
        let mut s = scratch::<u32>(tm::char_entropy_scratch_len(t))?;
        write(out, tm::char_entropy_bits(t, &mut s)?)
    })
}

/// Character entropy in bits from per-character counts (zeros skipped, any order).
///
/// Errors: `TKM_STATUS_SIZE_OVERFLOW` if the counts sum past `uint64_t`; `TKM_STATUS_NULL_POINTER`.
///
/// # Safety
/// `counts` valid for `n` elements; `out` valid for one.
#[no_mangle]
pub unsafe extern "C" fn tkm_char_entropy_bits_from_counts(counts: *const u64, n: usize, out: *mut f64) -> tkm_status {
    guard(|| write(out, tm::char_entropy_bits_from_counts(input(counts, n)?)?))
}

/// Fits `CTC = a * V^b` by least squares on `(ln V, ln CTC)` over `n` points.
///
/// Errors: `TKM_STATUS_NON_FINITE` for a NaN or infinite point; `TKM_STATUS_INVALID_ARGUMENT`
/// for a point `<= 0` or fewer than two distinct `V`; `TKM_STATUS_NULL_POINTER`.
///
/// # Safety
/// `v`, `ctc` valid for `n` elements; `out` valid for one struct.
#[no_mangle]
pub unsafe extern "C" fn tkm_fit_power_law(
    v: *const f64,
    ctc: *const f64,
    n: usize,
    out: *mut tkm_power_law,
) -> tkm_status {
    guard(|| {
        let f = tm::fit_power_law(input(v, n)?, input(ctc, n)?)?;
        write(out, tkm_power_law { a: f.a, ln_a: f.ln_a, b: f.b, r2: f.r2 })
    })
}

/// The vocabulary size at which the law `a * V^b` gives `ctc_target`: `(ctc_target/a)^(1/b)`.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` when `a` or `ctc_target` is not finite and `> 0`, `b`
/// is not finite or 0, or the result overflows double; `TKM_STATUS_NULL_POINTER`.
///
/// # Safety
/// `out` valid for one element.
#[no_mangle]
pub unsafe extern "C" fn tkm_optimal_vocab_size(a: f64, b: f64, ctc_target: f64, out: *mut f64) -> tkm_status {
    guard(|| write(out, tm::optimal_vocab_size(a, b, ctc_target)?))
}

/// As `tkm_optimal_vocab_size` for a fitted law, computed from its `ln_a` (so a fit whose `a`
/// overflows double still works).
///
/// # Safety
/// `fit` valid for one struct; `out` valid for one element.
#[no_mangle]
pub unsafe extern "C" fn tkm_power_law_optimal_vocab_size(
    fit: *const tkm_power_law,
    ctc_target: f64,
    out: *mut f64,
) -> tkm_status {
    guard(|| {
        let f = input(fit, 1)?[0];
        let law = PowerLaw { a: f.a, ln_a: f.ln_a, b: f.b, r2: f.r2 };
        write(out, law.optimal_vocab_size(ctc_target)?)
    })
}

/// `*out = ceil(v / multiple) * multiple`: a vocabulary size rounded up to a hardware multiple.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` when `v` is not finite and `> 0` or `multiple == 0`;
/// `TKM_STATUS_SIZE_OVERFLOW` when the result exceeds `uint64_t`; `TKM_STATUS_NULL_POINTER`.
///
/// # Safety
/// `out` valid for one element.
#[no_mangle]
pub unsafe extern "C" fn tkm_round_vocab(v: f64, multiple: u64, out: *mut u64) -> tkm_status {
    guard(|| write(out, tm::round_vocab(v, multiple)?))
}
