//! Tokenizer inequity metrics against the f64 reference (`tokenmath_reference::tokenizer_metrics`),
//! with hostile inputs: empty text, zero counts, every Unicode plane, NaN/inf/≤ 0 fit points,
//! a single vocabulary size, overflow.

use proptest::prelude::*;
use tokenmath_core::tokenizer_metrics::{self as tm, PowerLaw, TextCounts};
use tokenmath_core::TmError;
use tokenmath_reference::tokenizer_metrics as reference;

fn invalid(r: Result<impl core::fmt::Debug, TmError>) -> bool {
    matches!(r, Err(TmError::InvalidArgument(_)))
}

#[test]
fn worked_example() {
    // "ab a" : bytes 4, chars 4, whitespace 1; counts a:2 b:1 ' ':1 → H = 1.5 bits.
    let t = "ab a";
    assert_eq!(TextCounts::of(t), TextCounts { bytes: 4, chars: 4, whitespace: 1 });
    assert_eq!(tm::whitespace_proportion(t), 0.25);
    let mut s = vec![u32::MAX; tm::char_entropy_scratch_len(t)];
    assert_eq!(tm::char_entropy_bits(t, &mut s).unwrap(), 1.5);
    assert_eq!(tm::char_entropy_bits_from_counts(&[2, 0, 1, 1]).unwrap(), 1.5);
    assert_eq!(tm::bytes_per_token(t, 2).unwrap(), 2.0);
    assert_eq!(tm::chars_per_token("é€", 2).unwrap(), 1.0); // 2 chars, 5 bytes
    assert_eq!(tm::bytes_per_token("é€", 2).unwrap(), 2.5);
    assert_eq!(tm::corpus_token_count(&[3, 0, 7]).unwrap(), 10);
    assert_eq!(tm::token_premium(15, 10).unwrap(), 1.5);
    assert_eq!(tm::byte_premium(5, 20).unwrap(), 0.25);
    // CTC = 1000·V^-0.5 exactly at V = 100, 400, 1600 → a = 1000, b = −0.5, R² = 1.
    let fit = tm::fit_power_law(&[100.0, 400.0, 1600.0], &[100.0, 50.0, 25.0]).unwrap();
    assert!((fit.b + 0.5).abs() < 1e-14 && (fit.a - 1000.0).abs() < 1e-10 && (fit.r2 - 1.0).abs() < 1e-14, "{fit:?}");
    let v = fit.optimal_vocab_size(20.0).unwrap();
    assert!((v - 2500.0).abs() < 1e-9, "{v}");
    assert!((tm::optimal_vocab_size(1000.0, -0.5, 20.0).unwrap() - 2500.0).abs() < 1e-9);
    assert_eq!(tm::round_vocab(2500.0, 128).unwrap(), 2560);
    assert_eq!(tm::round_vocab(2560.0, 128).unwrap(), 2560);
    assert_eq!(tm::round_vocab(2560.5, 128).unwrap(), 2688);
    assert_eq!(tm::round_vocab(0.1, 3).unwrap(), 3);
}

#[test]
fn edge_cases_are_errors_or_zero() {
    assert_eq!(tm::corpus_token_count(&[]).unwrap(), 0);
    assert!(invalid(tm::token_premium(3, 0)));
    assert_eq!(tm::token_premium(0, 3).unwrap(), 0.0);
    assert!(invalid(tm::byte_premium(3, 0)));
    assert!(invalid(tm::bytes_per_token("abc", 0)));
    assert!(invalid(tm::chars_per_token("abc", 0)));
    assert_eq!(tm::whitespace_proportion(""), 0.0);
    assert_eq!(tm::char_entropy_bits("", &mut []).unwrap(), 0.0);
    assert_eq!(tm::char_entropy_bits("aaaa", &mut [0; 4]).unwrap(), 0.0);
    assert_eq!(tm::char_entropy_bits_from_counts(&[]).unwrap(), 0.0);
    assert_eq!(tm::char_entropy_bits_from_counts(&[0, 0]).unwrap(), 0.0);
    assert_eq!(
        tm::char_entropy_bits_from_counts(&[u64::MAX, 1]),
        Err(TmError::SizeOverflow { what: "character count" })
    );
    // A short scratch is refused and left alone.
    let mut s = [7u32; 2];
    assert!(matches!(tm::char_entropy_bits("abc", &mut s), Err(TmError::LengthMismatch { expected: 3, got: 2, .. })));
    assert_eq!(s, [7, 7]);
    // Power law: lengths, non-finite, ≤ 0, one distinct V.
    assert!(matches!(tm::fit_power_law(&[1.0, 2.0], &[1.0]), Err(TmError::LengthMismatch { .. })));
    assert_eq!(tm::fit_power_law(&[1.0, f64::NAN], &[1.0, 2.0]), Err(TmError::NonFinite { what: "v", index: 1 }));
    assert_eq!(
        tm::fit_power_law(&[1.0, 2.0], &[f64::INFINITY, 2.0]),
        Err(TmError::NonFinite { what: "ctc", index: 0 })
    );
    assert!(invalid(tm::fit_power_law(&[1.0, 2.0], &[0.0, 2.0])));
    assert!(invalid(tm::fit_power_law(&[-1.0, 2.0], &[1.0, 2.0])));
    assert!(invalid(tm::fit_power_law(&[8.0, 8.0, 8.0], &[1.0, 2.0, 3.0])));
    assert!(invalid(tm::fit_power_law(&[], &[])));
    assert!(invalid(tm::fit_power_law(&[5.0], &[5.0])));
    // Adjacent floats whose logs round together: no slope.
    let v1 = 1e6f64;
    let v2 = f64::from_bits(v1.to_bits() + 1);
    assert!(invalid(tm::fit_power_law(&[v1, v2], &[1.0, 2.0])));
    // Flat CTC: b = 0, R² = 1, and V* is undefined.
    let flat = tm::fit_power_law(&[10.0, 100.0], &[7.0, 7.0]).unwrap();
    assert_eq!((flat.b, flat.r2), (0.0, 1.0));
    assert!(invalid(flat.optimal_vocab_size(7.0)));
    for (a, b, t) in [
        (0.0, -0.5, 1.0),
        (f64::NAN, -0.5, 1.0),
        (1.0, 0.0, 1.0),
        (1.0, f64::INFINITY, 1.0),
        (1.0, -0.5, 0.0),
        (1.0, -0.5, f64::NAN),
    ] {
        assert!(invalid(tm::optimal_vocab_size(a, b, t)), "{a} {b} {t}");
    }
    // V* beyond f64: an error, not inf.
    assert!(invalid(tm::optimal_vocab_size(1.0, -1e-3, 1e-300)));
    assert!(invalid(PowerLaw { a: f64::INFINITY, ln_a: f64::INFINITY, b: -1.0, r2: 1.0 }.optimal_vocab_size(1.0)));
    for (v, m) in [(0.0, 64), (-1.0, 64), (f64::NAN, 64), (f64::INFINITY, 64), (10.0, 0)] {
        assert!(invalid(tm::round_vocab(v, m)), "{v} {m}");
    }
    assert!(matches!(tm::round_vocab(1.9e19, 1), Err(TmError::SizeOverflow { .. })));
    assert!(matches!(tm::round_vocab(1.8e19, 1u64 << 63), Err(TmError::SizeOverflow { .. })));
}

#[test]
fn huge_fit_intercept_keeps_v_star() {
    // CTC = e^720 · V^-1 : a overflows f64, but V* comes from ln a.
    let v = [1e6f64, 1e7, 1e8];
    let ctc: Vec<f64> = v.iter().map(|v: &f64| (720.0 - v.ln()).exp()).collect();
    assert!(ctc.iter().all(|c| c.is_finite()));
    let fit = tm::fit_power_law(&v, &ctc).unwrap();
    assert!(fit.a.is_infinite() && (fit.ln_a - 720.0).abs() < 1e-9 && (fit.b + 1.0).abs() < 1e-12);
    let vs = fit.optimal_vocab_size(ctc[1]).unwrap();
    assert!((vs / 1e7 - 1.0).abs() < 1e-9, "{vs}");
}

/// Text from every kind of scalar value: ASCII, whitespace of several kinds (incl. U+3000,
/// U+0085), Latin-1, CJK, astral (emoji), combining marks.
fn hostile_text() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        8 => proptest::char::range('a', 'e'),
        3 => prop_oneof![Just(' '), Just('\t'), Just('\n'), Just('\u{3000}'), Just('\u{85}'), Just('\u{a0}'), Just('\u{200b}')],
        2 => proptest::char::range('\u{e0}', '\u{ff}'),
        2 => proptest::char::range('\u{4e00}', '\u{4e10}'),
        1 => proptest::char::range('\u{1f600}', '\u{1f610}'),
        1 => Just('\u{301}'),
        1 => any::<char>(),
    ];
    proptest::collection::vec(ch, 0..200).prop_map(|v| v.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn text_metrics_match_reference(text in hostile_text(), split in 0usize..200, n_tokens in 0u64..50) {
        let (bytes, chars, ws) = reference::text_counts(&text);
        let c = TextCounts::of(&text);
        prop_assert_eq!(c, TextCounts { bytes, chars, whitespace: ws });
        // Streaming over two pieces gives the same counts (split at a char boundary).
        let cut = text.char_indices().map(|(i, _)| i).nth(split).unwrap_or(text.len());
        let (l, r) = text.split_at(cut);
        let mut s = TextCounts::of(l);
        s.add(r);
        prop_assert_eq!(s, c);
        prop_assert_eq!(TextCounts::of(l).merge(TextCounts::of(r)), c);
        let wp = tm::whitespace_proportion(&text);
        prop_assert_eq!(wp, if chars == 0 { 0.0 } else { ws as f64 / chars as f64 });
        prop_assert!((0.0..=1.0).contains(&wp));
        if n_tokens == 0 {
            prop_assert!(invalid(tm::bytes_per_token(&text, 0)));
            prop_assert!(invalid(tm::chars_per_token(&text, 0)));
        } else {
            prop_assert_eq!(tm::bytes_per_token(&text, n_tokens).unwrap(), bytes as f64 / n_tokens as f64);
            prop_assert_eq!(tm::chars_per_token(&text, n_tokens).unwrap(), chars as f64 / n_tokens as f64);
        }
        // Entropy: two routes (sorted runs, any-order counts) against the textbook form.
        // Each of the ≤ K + 2 terms is off by a few ulps of at most log2(n)+1 bits.
        let want = reference::char_entropy_bits(&text);
        let mut scratch = vec![u32::MAX; tm::char_entropy_scratch_len(&text) + 3];
        let got = tm::char_entropy_bits(&text, &mut scratch).unwrap();
        let tol = 8.0 * (chars as f64 + 2.0) * f64::EPSILON * ((chars as f64 + 1.0).log2() + 1.0);
        prop_assert!((got - want).abs() <= tol, "got {} want {} tol {}", got, want, tol);
        prop_assert!(got >= 0.0 && got <= (chars.max(1) as f64).log2() + tol);
        let mut counts = std::collections::HashMap::<char, u64>::new();
        for ch in text.chars() { *counts.entry(ch).or_default() += 1; }
        let mut cv: Vec<u64> = counts.into_values().collect();
        cv.push(0);
        let from_counts = tm::char_entropy_bits_from_counts(&cv).unwrap();
        prop_assert!((from_counts - want).abs() <= tol);
    }

    #[test]
    fn ctc_and_premiums(counts in proptest::collection::vec(any::<u32>(), 0..64), a in any::<u64>(), b in any::<u64>()) {
        prop_assert_eq!(u128::from(tm::corpus_token_count(&counts).unwrap()), reference::corpus_token_count(&counts));
        match tm::token_premium(a, b) {
            Ok(p) => prop_assert_eq!(p, a as f64 / b as f64),
            Err(_) => prop_assert_eq!(b, 0),
        }
        match tm::byte_premium(a, b) {
            Ok(p) => prop_assert_eq!(p, a as f64 / b as f64),
            Err(_) => prop_assert_eq!(b, 0),
        }
    }

    #[test]
    fn power_law_matches_reference(
        ln_a in -5.0f64..30.0,
        b in prop_oneof![-1.5f64..-0.01, 0.01f64..1.5],
        vs in proptest::collection::btree_set(8u32..300_000, 2..10),
        noise in proptest::collection::vec(-0.2f64..0.2, 10),
        target_off in -2.0f64..2.0,
    ) {
        let v: Vec<f64> = vs.iter().map(|&x| x as f64).collect();
        let ctc: Vec<f64> = v.iter().zip(&noise).map(|(v, e)| (ln_a + b * v.ln() + e).exp()).collect();
        let fit = tm::fit_power_law(&v, &ctc).unwrap();
        let (ra, rb, rr2) = reference::fit_power_law(&v, &ctc);
        // The reference solves the normal equations uncentred: its own error is about
        // ε·(Σx²)/Sxx relative; the core's centred sums are at least as good.
        let n = v.len() as f64;
        let lx: Vec<f64> = v.iter().map(|x| x.ln()).collect();
        let mx = lx.iter().sum::<f64>() / n;
        let sxx: f64 = lx.iter().map(|x| (x - mx) * (x - mx)).sum();
        let cond = lx.iter().map(|x| x * x).sum::<f64>() / sxx;
        let tol = 64.0 * n * f64::EPSILON * cond;
        prop_assert!((fit.b - rb).abs() <= tol * (1.0 + rb.abs()), "b {} vs {}", fit.b, rb);
        prop_assert!((fit.ln_a - ra).abs() <= tol * (1.0 + ra.abs()) * (1.0 + mx.abs()), "ln a {} vs {}", fit.ln_a, ra);
        prop_assert!((fit.r2 - rr2).abs() <= 1e-6 + tol, "r2 {} vs {}", fit.r2, rr2);
        prop_assert!(fit.r2 <= 1.0 + 1e-12);
        // V* inverts the fitted law: CTC(V*) = target.
        let target = (fit.ln_a + fit.b * 9.0 + target_off).exp();
        if let Ok(vstar) = fit.optimal_vocab_size(target) {
            let back = fit.ln_a + fit.b * vstar.ln();
            prop_assert!((back - target.ln()).abs() <= 1e-9 * (1.0 + target.ln().abs() + fit.ln_a.abs()));
            let rv = reference::optimal_vocab_size(fit.ln_a, fit.b, target);
            prop_assert!(((vstar - rv) / rv).abs() < 1e-9, "{} vs {}", vstar, rv);
        }
    }

    #[test]
    fn power_law_rejects_hostile_points(
        v in proptest::collection::vec(prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(-1.0), Just(0.0), Just(5e-324), 1.0f64..1e6], 0..6),
        c in proptest::collection::vec(prop_oneof![Just(f64::NAN), Just(f64::NEG_INFINITY), Just(0.0), Just(5e-324), 1.0f64..1e6], 0..6),
    ) {
        // Never a panic; a result only for valid input, and then finite b and R² ≤ 1.
        if let Ok(fit) = tm::fit_power_law(&v, &c) {
            prop_assert_eq!(v.len(), c.len());
            prop_assert!(v.iter().chain(&c).all(|x| x.is_finite() && *x > 0.0));
            prop_assert!(fit.b.is_finite() && fit.ln_a.is_finite() && fit.r2 <= 1.0 + 1e-12);
        }
    }

    #[test]
    fn round_vocab_is_the_least_multiple_above(v in 1e-3f64..1e12, m in 1u64..5000) {
        let r = tm::round_vocab(v, m).unwrap();
        prop_assert!(r.is_multiple_of(m) && r as f64 >= v && ((r - m) as f64) < v);
    }
}
