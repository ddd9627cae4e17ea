//! The tokenizer inequity metrics and UniCTokens utilities through the C ABI against the core
//! crate (bitwise), and their error statuses (outputs untouched on error).

use core::ffi::c_void;
use core::ptr::{null, null_mut};

use tokenmath::*;
use tokenmath_core::tokenizer_metrics as tm;
use tokenmath_core::unictokens as uc;
use tokenmath_core::{bf16, f16};
use tokenmath_testutil::{bits, poisoned, rand_f32, untouched};

const TEXT: &str = "Ελένη βρίσκει εννέα παιδιά στον κήπο.\u{3000}x";

#[test]
fn text_metrics_match_core() {
    let t = TEXT.as_bytes();
    let mut c = tkm_text_counts { bytes: 1, chars: 2, whitespace: 3 };
    unsafe {
        assert_eq!(tkm_text_counts_add(t.as_ptr(), t.len(), &mut c), TKM_STATUS_OK);
        let want = tm::TextCounts::of(TEXT);
        assert_eq!((c.bytes, c.chars, c.whitespace), (want.bytes + 1, want.chars + 2, want.whitespace + 3));
        let mut x = f64::NAN;
        assert_eq!(tkm_bytes_per_token(t.as_ptr(), t.len(), 7, &mut x), TKM_STATUS_OK);
        assert_eq!(x, tm::bytes_per_token(TEXT, 7).unwrap());
        assert_eq!(tkm_chars_per_token(t.as_ptr(), t.len(), 7, &mut x), TKM_STATUS_OK);
        assert_eq!(x, tm::chars_per_token(TEXT, 7).unwrap());
        assert_eq!(tkm_whitespace_proportion(t.as_ptr(), t.len(), &mut x), TKM_STATUS_OK);
        assert_eq!(x, tm::whitespace_proportion(TEXT));
        assert_eq!(tkm_char_entropy_bits(t.as_ptr(), t.len(), &mut x), TKM_STATUS_OK);
        let mut s = vec![0u32; tm::char_entropy_scratch_len(TEXT)];
        assert_eq!(x.to_bits(), tm::char_entropy_bits(TEXT, &mut s).unwrap().to_bits());
        // Empty text: NULL allowed with length 0.
        assert_eq!(tkm_char_entropy_bits(null(), 0, &mut x), TKM_STATUS_OK);
        assert_eq!(x, 0.0);
        assert_eq!(tkm_char_entropy_bits_from_counts([2u64, 1, 1].as_ptr(), 3, &mut x), TKM_STATUS_OK);
        assert_eq!(x, 1.5);
        let mut n = 0u64;
        assert_eq!(tkm_corpus_token_count([3u32, 4, u32::MAX].as_ptr(), 3, &mut n), TKM_STATUS_OK);
        assert_eq!(n, 7 + u64::from(u32::MAX));
        assert_eq!(tkm_token_premium(3, 2, &mut x), TKM_STATUS_OK);
        assert_eq!(x, 1.5);
        assert_eq!(tkm_byte_premium(1, 4, &mut x), TKM_STATUS_OK);
        assert_eq!(x, 0.25);

        // Errors leave the outputs alone.
        let mut y = -7.0f64;
        let bad = [b'a', 0xff];
        assert_eq!(tkm_whitespace_proportion(bad.as_ptr(), 2, &mut y), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(tkm_text_counts_add(bad.as_ptr(), 2, &mut c), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(c.bytes, tm::TextCounts::of(TEXT).bytes + 1);
        assert_eq!(tkm_bytes_per_token(t.as_ptr(), t.len(), 0, &mut y), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(tkm_token_premium(1, 0, &mut y), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(tkm_byte_premium(1, 0, &mut y), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(tkm_char_entropy_bits_from_counts([u64::MAX, 1].as_ptr(), 2, &mut y), TKM_STATUS_SIZE_OVERFLOW);
        assert_eq!(tkm_char_entropy_bits(null(), 3, &mut y), TKM_STATUS_NULL_POINTER);
        assert_eq!(tkm_token_premium(1, 1, null_mut()), TKM_STATUS_NULL_POINTER);
        assert_eq!(tkm_text_counts_add(t.as_ptr(), t.len(), null_mut()), TKM_STATUS_NULL_POINTER);
        assert_eq!(y, -7.0);
    }
}

#[test]
fn power_law_matches_core() {
    let v = [8192.0, 16384.0, 32768.0, 65536.0];
    let c = [1.0e6, 0.93e6, 0.87e6, 0.82e6];
    let want = tm::fit_power_law(&v, &c).unwrap();
    let mut f = tkm_power_law::default();
    unsafe {
        assert_eq!(tkm_fit_power_law(v.as_ptr(), c.as_ptr(), 4, &mut f), TKM_STATUS_OK);
        assert_eq!((f.a, f.ln_a, f.b, f.r2), (want.a, want.ln_a, want.b, want.r2));
        let mut x = 0.0;
        assert_eq!(tkm_power_law_optimal_vocab_size(&f, 0.8e6, &mut x), TKM_STATUS_OK);
        assert_eq!(x, want.optimal_vocab_size(0.8e6).unwrap());
        assert_eq!(tkm_optimal_vocab_size(f.a, f.b, 0.8e6, &mut x), TKM_STATUS_OK);
        assert_eq!(x, tm::optimal_vocab_size(want.a, want.b, 0.8e6).unwrap());
        let mut r = 0u64;
        assert_eq!(tkm_round_vocab(x, 128, &mut r), TKM_STATUS_OK);
        assert_eq!(r, tm::round_vocab(x, 128).unwrap());

        let g = f;
        let nan = [8192.0, f64::NAN];
        assert_eq!(tkm_fit_power_law(nan.as_ptr(), c.as_ptr(), 2, &mut f), TKM_STATUS_NON_FINITE);
        assert_eq!(tkm_fit_power_law(v.as_ptr(), c.as_ptr(), 1, &mut f), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(tkm_fit_power_law(null(), c.as_ptr(), 2, &mut f), TKM_STATUS_NULL_POINTER);
        assert_eq!(f, g);
        let mut y = -1.0;
        assert_eq!(tkm_optimal_vocab_size(1.0, 0.0, 1.0, &mut y), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(tkm_power_law_optimal_vocab_size(null(), 1.0, &mut y), TKM_STATUS_NULL_POINTER);
        assert_eq!(y, -1.0);
        let mut r2 = 5u64;
        assert_eq!(tkm_round_vocab(1e30, 1, &mut r2), TKM_STATUS_SIZE_OVERFLOW);
        assert_eq!(tkm_round_vocab(10.0, 0, &mut r2), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(r2, 5);
    }
}

#[test]
fn unictokens_match_core() {
    let (n, dim, k) = (50usize, 6usize, 4usize);
    let rows = rand_f32(n * dim, 11, 3.0);
    let mut out = poisoned(k * dim);
    let mut steps = usize::MAX;
    unsafe {
        assert_eq!(
            tkm_kmeans_init(rows.as_ptr(), n, dim, k, 0, TKM_KMEANS_DEFAULT_ITERS, out.as_mut_ptr(), &mut steps),
            TKM_STATUS_OK
        );
    }
    let mut want = poisoned(k * dim);
    let mut s = vec![0.0; uc::kmeans_scratch_len(n, k, dim).unwrap()];
    let ran = uc::kmeans_init(&rows, dim, k, 0, uc::KMEANS_DEFAULT_ITERS, &mut want, &mut s).unwrap();
    assert_eq!((bits(&out), steps), (bits(&want), ran));
    unsafe {
        // steps may be NULL.
        assert_eq!(tkm_kmeans_init(rows.as_ptr(), n, dim, k, 0, 3, out.as_mut_ptr(), null_mut()), TKM_STATUS_OK);
        let mut o = poisoned(k * dim);
        assert_eq!(
            tkm_kmeans_init(rows.as_ptr(), 3, dim, k, 0, 3, o.as_mut_ptr(), null_mut()),
            TKM_STATUS_INVALID_ARGUMENT
        );
        assert_eq!(
            tkm_kmeans_init(rows.as_ptr(), n, 0, k, 0, 3, o.as_mut_ptr(), null_mut()),
            TKM_STATUS_INVALID_ARGUMENT
        );
        let mut nan = rows.clone();
        nan[17] = f32::NAN;
        assert_eq!(tkm_kmeans_init(nan.as_ptr(), n, dim, k, 0, 3, o.as_mut_ptr(), null_mut()), TKM_STATUS_NON_FINITE);
        assert_eq!(
            tkm_kmeans_init(rows.as_ptr(), usize::MAX, 2, 2, 0, 3, o.as_mut_ptr(), null_mut()),
            TKM_STATUS_SIZE_OVERFLOW
        );
        assert_eq!(tkm_kmeans_init(rows.as_ptr(), n, dim, k, 0, 3, null_mut(), null_mut()), TKM_STATUS_NULL_POINTER);
        assert!(untouched(&o));
    }

    // Restore: f32, bf16, f16 rows copied where trainable == 0.
    let orig = rand_f32(12, 3, 1.0);
    let mut table = rand_f32(12, 4, 1.0);
    let before = table.clone();
    let tr = [0u8, 1, 0, 1];
    unsafe {
        let st = tkm_restore_frozen_rows(
            TKM_DTYPE_F32,
            table.as_mut_ptr() as *mut c_void,
            orig.as_ptr() as *const c_void,
            4,
            3,
            tr.as_ptr(),
        );
        assert_eq!(st, TKM_STATUS_OK);
    }
    let mut want = before.clone();
    uc::restore_frozen_rows(&mut want, &orig, 3, &tr).unwrap();
    assert_eq!(bits(&table), bits(&want));
    let ob: Vec<bf16> = orig.iter().map(|&x| bf16::from_f32(x)).collect();
    let mut tb = vec![bf16::from_f32(5.0); 12];
    let oh: Vec<f16> = orig.iter().map(|&x| f16::from_f32(x)).collect();
    let mut th = vec![f16::from_f32(5.0); 12];
    unsafe {
        assert_eq!(
            tkm_restore_frozen_rows(
                TKM_DTYPE_BF16,
                tb.as_mut_ptr() as *mut c_void,
                ob.as_ptr() as *const c_void,
                4,
                3,
                tr.as_ptr()
            ),
            TKM_STATUS_OK
        );
        assert_eq!(
            tkm_restore_frozen_rows(
                TKM_DTYPE_F16,
                th.as_mut_ptr() as *mut c_void,
                oh.as_ptr() as *const c_void,
                4,
                3,
                tr.as_ptr()
            ),
            TKM_STATUS_OK
        );
    }
    assert_eq!(&tb[..3], &ob[..3]);
    assert_eq!(tb[3], bf16::from_f32(5.0));
    assert_eq!(&th[6..9], &oh[6..9]);
    let snapshot = table.clone();
    unsafe {
        let t = table.as_mut_ptr() as *mut c_void;
        assert_eq!(
            tkm_restore_frozen_rows(99, t, orig.as_ptr() as *const c_void, 4, 3, tr.as_ptr()),
            TKM_STATUS_BAD_DTYPE
        );
        assert_eq!(
            tkm_restore_frozen_rows(TKM_DTYPE_F32, t, table.as_ptr().add(1) as *const c_void, 2, 3, tr.as_ptr()),
            TKM_STATUS_OVERLAP
        );
        assert_eq!(tkm_restore_frozen_rows(TKM_DTYPE_F32, t, null(), 4, 3, tr.as_ptr()), TKM_STATUS_NULL_POINTER);
        assert_eq!(
            tkm_restore_frozen_rows(TKM_DTYPE_F32, t, orig.as_ptr() as *const c_void, usize::MAX, 3, tr.as_ptr()),
            TKM_STATUS_SIZE_OVERFLOW
        );
        let mis = (orig.as_ptr() as *const u8).add(1) as *const c_void;
        assert_eq!(tkm_restore_frozen_rows(TKM_DTYPE_F32, t, mis, 2, 3, tr.as_ptr()), TKM_STATUS_MISALIGNED);
    }
    assert_eq!(bits(&table), bits(&snapshot));

    // Diff mask.
    let (a, b, f) = ([1u32, 2, 3, 4], [1u32, 9, 3, 4], [1u32, 9, 7, 0]);
    let mut m = [7u8; 4];
    unsafe {
        assert_eq!(tkm_token_diff_mask(a.as_ptr(), b.as_ptr(), f.as_ptr(), 4, m.as_mut_ptr()), TKM_STATUS_OK);
        assert_eq!(m, [0, 1, 0, 0]);
        let mut m2 = [7u8; 4];
        assert_eq!(tkm_token_diff_mask(a.as_ptr(), null(), f.as_ptr(), 4, m2.as_mut_ptr()), TKM_STATUS_NULL_POINTER);
        assert_eq!(m2, [7; 4]);
    }
}
