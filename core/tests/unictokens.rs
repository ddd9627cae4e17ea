//! UniCTokens utilities against the f64 reference (`tokenmath_reference::unictokens`):
//! k-means bit-identical to the reference and deterministic, Lloyd's objective never above the
//! seeding's, hostile inputs refused with nothing written; restore and diff mask exhaustively.

use proptest::prelude::*;
use tokenmath_core::unictokens::{self as uc, KMEANS_DEFAULT_ITERS};
use tokenmath_core::TmError;
use tokenmath_reference::unictokens as reference;
use tokenmath_testutil::{bits, poisoned, untouched};

fn run(rows: &[f32], dim: usize, k: usize, seed: u64, iters: usize) -> Result<(Vec<f32>, usize), TmError> {
    let n = rows.len() / dim.max(1);
    let mut out = poisoned(k * dim);
    let mut scratch = vec![f64::NAN; uc::kmeans_scratch_len(n, k, dim).unwrap()];
    let steps = uc::kmeans_init(rows, dim, k, seed, iters, &mut out, &mut scratch)?;
    Ok((out, steps))
}

fn as_rows(rows: &[f32], dim: usize) -> Vec<Vec<f64>> {
    rows.chunks(dim).map(|r| r.iter().map(|&x| x as f64).collect()).collect()
}

#[test]
fn separated_clusters_are_found() {
    // Three tight blobs far apart: every seed finds their means.
    let mut rows = Vec::new();
    for (cx, cy) in [(0.0f32, 0.0f32), (100.0, 0.0), (0.0, 100.0)] {
        for d in [(-1.0f32, 0.0f32), (1.0, 0.0), (0.0, 1.0), (0.0, -1.0)] {
            rows.extend([cx + d.0, cy + d.1]);
        }
    }
    for seed in 0..20 {
        let (out, steps) = run(&rows, 2, 3, seed, KMEANS_DEFAULT_ITERS).unwrap();
        let mut c: Vec<(f32, f32)> = out.chunks(2).map(|c| (c[0], c[1])).collect();
        c.sort_by(|a, b| a.partial_cmp(b).unwrap());
        assert_eq!(c, vec![(0.0, 0.0), (0.0, 100.0), (100.0, 0.0)], "seed {seed}");
        assert!(steps <= 3, "{steps}");
    }
}

#[test]
fn hostile_inputs_are_refused_unwritten() {
    let rows = [0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0];
    let mut scratch = vec![0.0f64; 64];
    let mut out = poisoned(4);
    let call =
        |rows: &[f32], dim, k, out: &mut [f32], scratch: &mut [f64]| uc::kmeans_init(rows, dim, k, 0, 10, out, scratch);
    assert!(matches!(call(&rows, 0, 2, &mut out, &mut scratch), Err(TmError::InvalidArgument(_))));
    assert!(matches!(call(&rows, 2, 0, &mut [], &mut scratch), Err(TmError::InvalidArgument(_))));
    assert!(matches!(call(&rows, 4, 2, &mut out, &mut scratch), Err(TmError::InvalidArgument(_)))); // 6 % 4
    assert!(matches!(call(&rows, 3, 3, &mut poisoned(9), &mut scratch), Err(TmError::InvalidArgument(_)))); // n = 2 < 3
    assert!(matches!(
        call(&rows, 2, 2, &mut poisoned(3), &mut scratch),
        Err(TmError::LengthMismatch { what: "out", .. })
    ));
    assert!(matches!(call(&rows, 2, 2, &mut out, &mut [0.0; 5]), Err(TmError::LengthMismatch { what: "scratch", .. })));
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut r = rows;
        r[3] = bad;
        assert_eq!(call(&r, 2, 2, &mut out, &mut scratch), Err(TmError::NonFinite { what: "rows", index: 3 }));
    }
    assert!(untouched(&out));
    assert_eq!(uc::kmeans_scratch_len(usize::MAX, 2, 2), Err(TmError::SizeOverflow { what: "k-means scratch" }));
}

#[test]
fn degenerate_inputs() {
    // All rows equal: every centre is that row; n == k: every row is a centre; V = dim = 1.
    let same = [2.5f32; 12];
    let (out, _) = run(&same, 3, 4, 9, 50).unwrap();
    assert!(out.iter().all(|&x| x == 2.5));
    let rows = [1.0f32, 5.0, -3.0, 7.0];
    let (out, _) = run(&rows, 1, 4, 1, 50).unwrap();
    let mut o = out.clone();
    o.sort_by(f32::total_cmp);
    assert_eq!(o, vec![-3.0, 1.0, 5.0, 7.0]);
    // k = 1: the mean, after one step.
    let (out, steps) = run(&rows, 1, 1, 1, 50).unwrap();
    assert_eq!((out[0], steps), (2.5, 2));
    // iters = 0: k-means++ seeds, which are rows.
    let (out, steps) = run(&rows, 2, 2, 3, 0).unwrap();
    assert_eq!(steps, 0);
    assert!(out.chunks(2).all(|c| rows.chunks(2).any(|r| r == c)));
    // Huge offsets and denormals stay finite (distances are f64).
    let big: Vec<f32> = (0..40).map(|i| if i % 2 == 0 { 3e38 } else { 1e-45 * i as f32 }).collect();
    let (out, _) = run(&big, 4, 3, 0, 50).unwrap();
    assert!(out.iter().all(|x| x.is_finite()));
}

fn hostile_row_value() -> impl Strategy<Value = f32> {
    prop_oneof![
        10 => -10.0f32..10.0,
        2 => Just(0.0f32),
        1 => Just(-0.0f32),
        1 => (1u32..0x0080_0000).prop_map(f32::from_bits),
        1 => -1e30f32..1e30,
        2 => prop_oneof![Just(1.0f32), Just(-1.0f32)], // duplicates and ties
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn kmeans_matches_reference_and_is_deterministic(
        dim in 1usize..6,
        n in 1usize..40,
        kf in 0.0f64..1.0,
        seed in any::<u64>(),
        iters in prop_oneof![Just(0usize), Just(1), 2usize..20, Just(KMEANS_DEFAULT_ITERS)],
        vals in proptest::collection::vec(hostile_row_value(), 240),
    ) {
        let k = 1 + ((n - 1) as f64 * kf) as usize;
        let rows = &vals[..n * dim];
        let (out, steps) = run(rows, dim, k, seed, iters).unwrap();
        let (want, want_steps) = reference::kmeans(&as_rows(rows, dim), k, seed, iters);
        prop_assert_eq!(steps, want_steps);
        // Same procedure, same f64 operations in the same order: the same bits after rounding.
        let want_f32: Vec<f32> = want.iter().flatten().map(|&x| x as f32).collect();
        prop_assert_eq!(bits(&out), bits(&want_f32));
        // Deterministic: a second run (with a dirty scratch) gives the same bits.
        let mut out2 = poisoned(k * dim);
        let mut scratch = vec![123.0f64; uc::kmeans_scratch_len(n, k, dim).unwrap() + 5];
        uc::kmeans_init(rows, dim, k, seed, iters, &mut out2, &mut scratch).unwrap();
        prop_assert_eq!(bits(&out), bits(&out2));
        // Lloyd never raises the objective above the seeding's.
        let seeds = reference::kmeans(&as_rows(rows, dim), k, seed, 0).0;
        let x = as_rows(rows, dim);
        prop_assert!(reference::kmeans_objective(&x, &want) <= reference::kmeans_objective(&x, &seeds) * (1.0 + 1e-12) + 1e-300);
    }

    #[test]
    fn restore_frozen_rows_copies_exactly_the_frozen_rows(
        dim in 0usize..5,
        trainable in proptest::collection::vec(prop_oneof![Just(0u8), Just(1u8), Just(255u8)], 0..12),
        seed in any::<u64>(),
    ) {
        let len = trainable.len() * dim;
        let orig: Vec<f32> = tokenmath_testutil::rand_f32(len, seed, 5.0);
        let mut table: Vec<f32> = tokenmath_testutil::rand_f32(len, seed ^ 1, 5.0);
        let before = table.clone();
        uc::restore_frozen_rows(&mut table, &orig, dim, &trainable).unwrap();
        for (r, &t) in trainable.iter().enumerate() {
            let want = if t == 0 { &orig[r * dim..(r + 1) * dim] } else { &before[r * dim..(r + 1) * dim] };
            prop_assert_eq!(bits(&table[r * dim..(r + 1) * dim]), bits(want));
        }
        // Wrong lengths: refused, table untouched.
        let mut t2 = table.clone();
        let refused = matches!(uc::restore_frozen_rows(&mut t2, &orig[..len.saturating_sub(1)], dim, &trainable), Err(TmError::LengthMismatch { .. }));
        prop_assert!(refused || len == 0);
        prop_assert_eq!(bits(&t2), bits(&table));
        let mut extra = table.clone();
        extra.push(0.0);
        let refused = matches!(uc::restore_frozen_rows(&mut extra, &orig, dim, &trainable), Err(TmError::LengthMismatch { what: "table", .. }));
        prop_assert!(refused);
    }

    #[test]
    fn token_diff_mask_matches_reference(
        ids in proptest::collection::vec((0u32..3, 0u32..3, 0u32..3), 0..50),
    ) {
        let a: Vec<u32> = ids.iter().map(|t| t.0).collect();
        let b: Vec<u32> = ids.iter().map(|t| t.1).collect();
        let f: Vec<u32> = ids.iter().map(|t| t.2).collect();
        let mut out = vec![7u8; a.len()];
        uc::token_diff_mask(&a, &b, &f, &mut out).unwrap();
        prop_assert_eq!(&out, &reference::token_diff_mask(&a, &b, &f));
        // Settled-in-window semantics: a differs from final, b equals it.
        for i in 0..a.len() {
            prop_assert_eq!(out[i] == 1, (a[i] != f[i]) != (b[i] != f[i]));
        }
        if !a.is_empty() {
            let mut o = vec![7u8; a.len()];
            let refused = matches!(uc::token_diff_mask(&a, &b[1..], &f, &mut o), Err(TmError::LengthMismatch { what: "ids_b", .. }));
            prop_assert!(refused);
            let refused = matches!(uc::token_diff_mask(&a, &b, &f[1..], &mut o), Err(TmError::LengthMismatch { what: "ids_final", .. }));
            prop_assert!(refused);
            let refused = matches!(uc::token_diff_mask(&a, &b, &f, &mut o[1..]), Err(TmError::LengthMismatch { what: "out", .. }));
            prop_assert!(refused);
            prop_assert!(o.iter().all(|&x| x == 7));
        }
    }
}

#[test]
fn restore_works_for_bf16_and_bias() {
    use tokenmath_core::bf16;
    let orig = [bf16::from_f32(1.0), bf16::from_f32(2.0), bf16::from_f32(3.0)];
    let mut table = [bf16::from_f32(9.0); 3];
    uc::restore_frozen_rows(&mut table, &orig, 1, &[0, 1, 0]).unwrap();
    assert_eq!(table.map(f32::from), [1.0, 9.0, 3.0]);
}
