//! The seed methods (`tokenmath_core::seed`) against the f64 reference
//! (`tokenmath_reference::seed`) on hostile inputs, the exact merge of the top-entropy
//! threshold across ranks, the max-variance subset against brute force, and every error.

use proptest::prelude::*;
use tokenmath_core::advantages::Groups;
use tokenmath_core::policy_loss::BatchShape;
use tokenmath_core::seed::*;
use tokenmath_core::{Exec, TmError};
use tokenmath_reference::seed as rs;
use tokenmath_testutil::{poisoned, untouched, POISON};

fn exec() -> Exec {
    Exec::new()
}

/// Hostile finite entropies: ordinary values, exact ties, zeros of both signs, denormals,
/// negatives and 1e30 offsets.
fn hostile_entropy() -> impl Strategy<Value = f32> {
    prop_oneof![
        30 => 0.0f32..8.0,
        6 => prop_oneof![Just(0.5f32), Just(1.0), Just(2.0)],
        2 => Just(0.0f32),
        2 => Just(-0.0f32),
        2 => (1u32..0x0080_0000).prop_map(f32::from_bits),
        1 => -5.0f32..0.0,
        2 => -1e30f32..1e30,
        1 => prop_oneof![Just(f32::MAX), Just(-f32::MAX)],
    ]
}

/// A batch of entropies and a mask; padding holds NaN and ±inf (never read).
fn entropy_batch() -> impl Strategy<Value = (usize, usize, Vec<f32>, Vec<u8>)> {
    (0usize..6, 0usize..40).prop_flat_map(|(rows, cols)| {
        let n = rows * cols;
        (
            Just(rows),
            Just(cols),
            prop::collection::vec(hostile_entropy(), n),
            prop::collection::vec(prop_oneof![3 => Just(1u8), 1 => Just(0u8), 1 => Just(255u8)], n),
            prop::collection::vec(prop_oneof![Just(f32::NAN), Just(f32::INFINITY), Just(f32::NEG_INFINITY)], n),
        )
            .prop_map(|(rows, cols, mut e, m, junk)| {
                for j in 0..e.len() {
                    if m[j] == 0 {
                        e[j] = junk[j];
                    }
                }
                (rows, cols, e, m)
            })
    })
}

fn rho() -> impl Strategy<Value = f32> {
    prop_oneof![Just(1.0f32), Just(0.2f32), Just(0.5f32), Just(1e-6f32), 1e-3f32..=1.0]
}

/// Runs the protocol over several ranks, merging as an all-reduce would (sum, min).
fn distributed_threshold(ranks: &[(BatchShape, Vec<u8>, Vec<f32>)], rho: f32) -> Option<f32> {
    let n: u64 = ranks.iter().map(|(s, m, _)| valid_count(exec(), *s, m).unwrap()).sum();
    let mut st = EntropyQuantile::new(n, rho).unwrap();
    loop {
        match st.step() {
            QuantileStep::Histogram => {
                let mut total = [0u64; RADIX_BINS];
                for (s, m, e) in ranks {
                    let mut h = [7u64; RADIX_BINS];
                    st.local_histogram(exec(), *s, m, e, &mut h).unwrap();
                    EntropyQuantile::merge_histograms(&mut total, &h);
                }
                st.push_histogram(&total).unwrap();
            }
            QuantileStep::MinAbove => {
                let m = ranks
                    .iter()
                    .map(|(s, m, e)| st.local_min_above(exec(), *s, m, e).unwrap())
                    .fold(f32::INFINITY, f32::min);
                st.push_min_above(m).unwrap();
            }
            QuantileStep::Done => return st.threshold(),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// θ is bitwise the reference's (torch's linear quantile, rounded once) and the mask equal.
    #[test]
    fn entropy_mask_matches_reference((rows, cols, e, m) in entropy_batch(), rho in rho()) {
        let shape = BatchShape::new(rows, cols);
        let theta = top_entropy_threshold(exec(), shape, &m, &e, rho).unwrap();
        let (want_theta, want_keep) = rs::top_entropy(&e, &m, rho);
        prop_assert_eq!(theta.map(f32::to_bits), want_theta.map(f32::to_bits));
        let mut keep = vec![9u8; rows * cols];
        let kept = top_entropy_mask(exec(), shape, &m, &e, theta, &mut keep).unwrap();
        prop_assert_eq!(&keep, &want_keep);
        prop_assert_eq!(kept, want_keep.iter().map(|&k| k as u64).sum::<u64>());
        if rho == 1.0 {
            prop_assert!(keep.iter().zip(&m).all(|(&k, &m)| k == (m != 0) as u8));
        }
    }

    /// The merge is exact: any split of the rows over up to 8 ranks gives bitwise the θ of
    /// the concatenation (the rank-local histograms sum to the global one).
    #[test]
    fn entropy_mask_merges_exactly((rows, cols, e, m) in entropy_batch(), rho in rho(), cuts in prop::collection::vec(0usize..6, 0..7)) {
        let whole = top_entropy_threshold(exec(), BatchShape::new(rows, cols), &m, &e, rho).unwrap();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(rows)).collect();
        cuts.push(0);
        cuts.push(rows);
        cuts.sort();
        let ranks: Vec<_> = cuts
            .windows(2)
            .map(|w| {
                let r = w[0] * cols..w[1] * cols;
                (BatchShape::new(w[1] - w[0], cols), m[r.clone()].to_vec(), e[r].to_vec())
            })
            .collect();
        // Rank order does not matter either.
        let mut reversed = ranks.clone();
        reversed.reverse();
        prop_assert_eq!(distributed_threshold(&ranks, rho).map(f32::to_bits), whole.map(f32::to_bits));
        prop_assert_eq!(distributed_threshold(&reversed, rho).map(f32::to_bits), whole.map(f32::to_bits));
    }
}

/// Large batches of few distinct values (long runs of ties), or of values in a narrow
/// range: the one-rank selection's later rounds, its tie handling and its search for
/// `v_{lo+1}` across bins, on every backend (the AVX2 build of the counting loops must give
/// the same bits as the portable one).
fn big_entropy_batch() -> impl Strategy<Value = (usize, usize, Vec<f32>, Vec<u8>)> {
    (1usize..4, 500usize..3000, 0u8..3).prop_flat_map(|(rows, cols, kind)| {
        let n = rows * cols;
        let value = match kind {
            0 => prop_oneof![Just(0.5f32), Just(1.0), Just(-0.0), Just(0.0), Just(3.0)].boxed(),
            1 => (1.0f32..1.001).boxed(),
            _ => hostile_entropy().boxed(),
        };
        (
            Just(rows),
            Just(cols),
            prop::collection::vec(value, n),
            prop::collection::vec(prop_oneof![6 => Just(1u8), 1 => Just(0u8)], n),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn one_rank_selection_matches_reference_on_every_backend((rows, cols, e, m) in big_entropy_batch(), rho in rho(), k in prop_oneof![Just(0.2f32), 0.0f32..=1.0]) {
        let shape = BatchShape::new(rows, cols);
        let (want_theta, _) = rs::top_entropy(&e, &m, rho);
        let adv: Vec<f32> = (0..rows * cols).map(|j| [1.0f32, -0.5, 2.0][j % 3]).collect();
        let keep_rows = vec![1u8; rows];
        let want_tok = rs::d3s_token_mask(&adv, &e, &m, &keep_rows, cols, k as f64);
        for b in tokenmath_core::Backend::all_supported() {
            let ex = exec().with_backend(b);
            let theta = top_entropy_threshold(ex, shape, &m, &e, rho).unwrap();
            prop_assert_eq!(theta.map(f32::to_bits), want_theta.map(f32::to_bits), "{:?}", b);
            let mut out = vec![9u8; rows * cols];
            let inp = D3sTokenInputs { shape, mask: &m, adv: &adv, entropy: &e, keep_rows: &keep_rows };
            d3s_token_mask(ex, &inp, k, &mut out).unwrap();
            prop_assert_eq!(&out, &want_tok, "{:?}", b);
        }
        // The protocol (256-bin rounds) on the same data, as one rank, agrees bitwise.
        prop_assert_eq!(distributed_threshold(&[(shape, m.clone(), e.clone())], rho).map(f32::to_bits), want_theta.map(f32::to_bits));
    }
}

/// Batches large enough for the one-rank paths to guess the first round's bin from the
/// first sixteenth of the rows: a right guess (same distribution throughout), a wrong one
/// (the first rows hold other values), heavy ties, and dropped rows.
#[test]
fn one_rank_guess_right_and_wrong() {
    let (rows, cols) = (64, 1200);
    let n = rows * cols;
    let mut x = 0x2545_F491u32;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    for case in 0..4 {
        let e: Vec<f32> = (0..n)
            .map(|j| {
                let u = (next() >> 8) as f32 / (1u32 << 24) as f32;
                match case {
                    0 => 8.0 * u * u,
                    1 if j < n / 8 => 100.0 + u,
                    1 => 8.0 * u * u,
                    2 => ((next() % 6) as f32) * 0.25,
                    _ => 1.0 + u * 1e-3,
                }
            })
            .collect();
        let m: Vec<u8> = (0..n).map(|j| ((j % cols) < cols - (j / cols) % 97) as u8).collect();
        let adv: Vec<f32> = (0..n).map(|j| [1.0f32, -0.5, 2.0, 0.0][(j / cols) % 4]).collect();
        let keep_rows: Vec<u8> = (0..rows).map(|b| (b % 5 != 3) as u8).collect();
        let shape = BatchShape::new(rows, cols);
        for rho in [0.2f32, 0.5, 1e-3, 1.0] {
            let (want, _) = rs::top_entropy(&e, &m, rho);
            for b in tokenmath_core::Backend::all_supported() {
                let got = top_entropy_threshold(exec().with_backend(b), shape, &m, &e, rho).unwrap();
                assert_eq!(got.map(f32::to_bits), want.map(f32::to_bits), "case {case} rho {rho} {b:?}");
            }
            assert_eq!(
                distributed_threshold(&[(shape, m.clone(), e.clone())], rho).map(f32::to_bits),
                want.map(f32::to_bits)
            );
        }
        for k in [0.2f32, 0.01, 0.9] {
            let want = rs::d3s_token_mask(&adv, &e, &m, &keep_rows, cols, k as f64);
            for b in tokenmath_core::Backend::all_supported() {
                let mut out = vec![9u8; n];
                let inp = D3sTokenInputs { shape, mask: &m, adv: &adv, entropy: &e, keep_rows: &keep_rows };
                d3s_token_mask(exec().with_backend(b), &inp, k, &mut out).unwrap();
                assert!(out == want, "case {case} k {k} {b:?}");
            }
        }
    }
}

#[test]
fn entropy_mask_trl_unit_test() {
    // TRL's test: 10 valid tokens, top_entropy_quantile = 0.2 ⇒ 2 kept.
    let e: Vec<f32> = (1..=12).map(|i| i as f32 / 10.0).collect();
    let m = [1u8, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0];
    let s = BatchShape::new(2, 6);
    let theta = top_entropy_threshold(exec(), s, &m, &e, 0.2).unwrap().unwrap();
    // pos = 0.8·9 = 7.2 ⇒ θ = 0.8 + 0.2·(0.9 − 0.8)
    assert_eq!(theta, (0.8f32 as f64 + 0.2f64.mul_add(0.9f32 as f64 - 0.8f32 as f64, 0.0)) as f32);
    let mut keep = [0u8; 12];
    assert_eq!(top_entropy_mask(exec(), s, &m, &e, Some(theta), &mut keep).unwrap(), 2);
    assert_eq!(keep, [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0]);
    // Ties at θ are all kept.
    let e = [1.0f32, 1.0, 1.0, 1.0, 0.5];
    let t = top_entropy_threshold(exec(), BatchShape::new(1, 5), &[1; 5], &e, 0.2).unwrap();
    let mut keep = [0u8; 5];
    assert_eq!(top_entropy_mask(exec(), BatchShape::new(1, 5), &[1; 5], &e, t, &mut keep).unwrap(), 4);
    // No valid token: no threshold, nothing kept.
    let t = top_entropy_threshold(exec(), BatchShape::new(1, 5), &[0; 5], &e, 0.2).unwrap();
    assert_eq!(t, None);
    let mut keep = [1u8; 5];
    assert_eq!(top_entropy_mask(exec(), BatchShape::new(1, 5), &[0; 5], &e, t, &mut keep).unwrap(), 0);
    assert_eq!(keep, [0; 5]);
}

#[test]
fn entropy_mask_errors() {
    let s = BatchShape::new(1, 4);
    let e = [0.1f32, f32::NAN, 0.3, f32::INFINITY];
    // NaN / inf at valid positions are errors, at padding they are never read.
    assert_eq!(
        top_entropy_threshold(exec(), s, &[1, 1, 1, 0], &e, 0.5),
        Err(TmError::NonFinite { what: "entropy", index: 1 })
    );
    assert!(top_entropy_threshold(exec(), s, &[1, 0, 1, 0], &e, 0.5).unwrap().is_some());
    for bad in [0.0f32, -0.1, 1.5, f32::NAN, f32::INFINITY] {
        assert!(matches!(top_entropy_threshold(exec(), s, &[1; 4], &[0.0; 4], bad), Err(TmError::InvalidArgument(_))));
        assert!(matches!(EntropyQuantile::new(4, bad), Err(TmError::InvalidArgument(_))));
    }
    assert!(matches!(
        top_entropy_threshold(exec(), s, &[1; 3], &[0.0; 4], 0.5),
        Err(TmError::LengthMismatch { what: "mask", .. })
    ));
    let mut keep = [7u8; 4];
    assert!(matches!(
        top_entropy_mask(exec(), s, &[1; 4], &[0.0; 4], Some(f32::NAN), &mut keep),
        Err(TmError::InvalidArgument(_))
    ));
    assert!(matches!(
        top_entropy_mask(exec(), s, &[1; 4], &[0.0; 3], Some(0.0), &mut keep),
        Err(TmError::LengthMismatch { .. })
    ));
    assert_eq!(keep, [7; 4]);
    // The protocol refuses a histogram that does not add up, and calls out of order.
    let mut st = EntropyQuantile::new(5, 0.3).unwrap();
    let mut h = [0u64; RADIX_BINS];
    h[3] = 4;
    assert!(matches!(st.push_histogram(&h), Err(TmError::InvalidArgument(_))));
    assert_eq!(st.step(), QuantileStep::Histogram);
    assert!(matches!(st.push_min_above(1.0), Err(TmError::InvalidArgument(_))));
    assert!(matches!(st.local_min_above(exec(), s, &[1; 4], &[0.0; 4]), Err(TmError::InvalidArgument(_))));
    let mut h = [9u64; RADIX_BINS];
    assert_eq!(
        st.local_histogram(exec(), s, &[1, 1, 0, 0], &e, &mut h),
        Err(TmError::NonFinite { what: "entropy", index: 1 })
    );
    assert_eq!(h, [9u64; RADIX_BINS]);
    // A rank that reports no value above v_lo when one is needed.
    let (s2, m2, e2) = (BatchShape::new(1, 2), [1u8, 1], [1.0f32, 2.0]);
    let mut st = EntropyQuantile::new(2, 0.5).unwrap();
    while st.step() == QuantileStep::Histogram {
        st.local_histogram(exec(), s2, &m2, &e2, &mut h).unwrap();
        st.push_histogram(&h).unwrap();
    }
    assert_eq!(st.step(), QuantileStep::MinAbove);
    assert!(matches!(st.local_histogram(exec(), s2, &m2, &e2, &mut h), Err(TmError::InvalidArgument(_))));
    assert!(matches!(st.push_min_above(f32::INFINITY), Err(TmError::InvalidArgument(_))));
    assert_eq!(st.local_min_above(exec(), s2, &m2, &e2), Ok(2.0));
    st.push_min_above(2.0).unwrap();
    assert_eq!(st.threshold(), Some(1.5));
    assert!(matches!(st.push_histogram(&h), Err(TmError::InvalidArgument(_))));
}

// ----------------------------------------------------------------------------------------
// D³S
// ----------------------------------------------------------------------------------------

fn hostile_adv() -> impl Strategy<Value = f32> {
    prop_oneof![
        20 => -3.0f32..3.0,
        8 => prop_oneof![Just(-1.0f32), Just(0.0), Just(1.0), Just(-0.0)],
        2 => (1u32..0x0080_0000).prop_map(f32::from_bits),
        2 => -1e30f32..1e30,
        1 => 1e30f32..1.0001e30,
    ]
}

fn subset(n: usize, order_scratch: bool) -> (Vec<u32>, Vec<f64>) {
    let (o, _, p) = d3s_scratch_len(n).unwrap();
    let extra = order_scratch as usize * 3;
    (vec![u32::MAX; o + extra], vec![f64::NAN; p + extra])
}

fn chosen_variance(x: &[f32], keep: &[u8]) -> f64 {
    let v: Vec<f64> = x.iter().zip(keep).filter(|(_, &k)| k != 0).map(|(&v, _)| v as f64).collect();
    rs::pop_variance(&v)
}

/// Absolute tolerance of a variance comparison over values `x`: a few f64 roundings of
/// `max (x − mean)²`.
fn var_tol(x: &[f32]) -> f64 {
    let mu = x.iter().map(|&v| v as f64).sum::<f64>() / x.len().max(1) as f64;
    let r = x.iter().fold(0.0f64, |a, &v| a.max((v as f64 - mu).abs()));
    1e-12 * r * r + 1e-300
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// For n ≤ 12 the chosen subset's variance is the best of all C(n, m) subsets.
    #[test]
    fn max_variance_matches_brute_force(x in prop::collection::vec(hostile_adv(), 0..=12), m in 0usize..14, pad in any::<bool>()) {
        let (mut order, mut prefix) = subset(x.len(), pad);
        let mut keep = vec![9u8; x.len()];
        max_variance_subset(&x, m, &mut order, &mut prefix, &mut keep).unwrap();
        prop_assert_eq!(keep.iter().filter(|&&k| k == 1).count(), m.min(x.len()));
        prop_assert!(keep.iter().all(|&k| k <= 1));
        if m > 0 && !x.is_empty() {
            let got = chosen_variance(&x, &keep);
            let want = rs::max_variance_brute(&x, m);
            prop_assert!((got - want).abs() <= var_tol(&x), "got {got:e} want {want:e}");
        }
    }

    /// Larger n against the m + 1 extreme candidates scored by two-pass variances.
    #[test]
    fn max_variance_matches_extremes(x in prop::collection::vec(hostile_adv(), 0..200), mf in 0.0f64..1.2) {
        let m = (mf * x.len() as f64) as usize;
        let (mut order, mut prefix) = subset(x.len(), false);
        let mut keep = vec![9u8; x.len()];
        max_variance_subset(&x, m, &mut order, &mut prefix, &mut keep).unwrap();
        if m > 0 && !x.is_empty() {
            let got = chosen_variance(&x, &keep);
            let want = rs::max_variance_extremes(&x, m);
            prop_assert!((got - want).abs() <= var_tol(&x), "got {got:e} want {want:e}");
        }
    }

    /// Sample selection: without the group stage it is the max-variance subset; with it, the
    /// result lies inside the per-group choices and is their best size-N subset.
    #[test]
    fn d3s_samples((g, x) in (1usize..5).prop_flat_map(|g| (Just(g), prop::collection::vec(hostile_adv(), 0..=3).prop_map(move |v| v.len() * g).prop_flat_map(|n| prop::collection::vec(hostile_adv(), n)))), n_keep in 0usize..14, n_g in 0usize..5) {
        let b = x.len();
        let (o, v, p) = d3s_scratch_len(b).unwrap();
        let (mut order, mut values, mut prefix) = (vec![0u32; o], vec![0f32; v], vec![0f64; p]);
        let mut keep = vec![9u8; b];
        let scratch = D3sScratch { order: &mut order, values: &mut values, prefix: &mut prefix };
        d3s_select_samples(&x, Groups::Contiguous { size: g }, None, n_keep, scratch, &mut keep).unwrap();
        let mut want = vec![0u8; b];
        let (mut o2, mut p2) = subset(b, false);
        max_variance_subset(&x, n_keep, &mut o2, &mut p2, &mut want).unwrap();
        prop_assert_eq!(&keep, &want);

        // Per-group stage, with ids listing the same groups in a scrambled order.
        let ids: Vec<u32> = (0..b).map(|i| ((i / g) as u32).wrapping_mul(2654435761)).collect();
        let scratch = D3sScratch { order: &mut order, values: &mut values, prefix: &mut prefix };
        d3s_select_samples(&x, Groups::Ids(&ids), Some(n_g), n_keep, scratch, &mut keep).unwrap();
        let mut stage1 = vec![0u8; b];
        for start in (0..b).step_by(g) {
            let (mut o3, mut p3) = subset(g, false);
            max_variance_subset(&x[start..start + g], n_g, &mut o3, &mut p3, &mut stage1[start..start + g]).unwrap();
        }
        prop_assert!(keep.iter().zip(&stage1).all(|(&k, &s)| k <= s));
        let cand: Vec<f32> = x.iter().zip(&stage1).filter(|(_, &s)| s != 0).map(|(&v, _)| v).collect();
        prop_assert_eq!(keep.iter().filter(|&&k| k != 0).count(), n_keep.min(cand.len()));
        if n_keep > 0 && !cand.is_empty() && cand.len() <= 12 {
            let got = chosen_variance(&x, &keep);
            prop_assert!((got - rs::max_variance_brute(&cand, n_keep)).abs() <= var_tol(&cand));
        }
    }

    /// The token mask is exactly the reference's full sort (key desc, index asc).
    #[test]
    fn d3s_token_mask_matches_reference(
        (rows, cols, adv, ent, mask, keep_rows) in (0usize..6, 0usize..30).prop_flat_map(|(r, c)| (
            Just(r), Just(c),
            prop::collection::vec(hostile_adv(), r * c),
            prop::collection::vec(hostile_entropy(), r * c),
            prop::collection::vec(prop_oneof![3 => Just(1u8), 1 => Just(0u8)], r * c),
            prop::collection::vec(prop_oneof![3 => Just(1u8), 1 => Just(0u8)], r),
        )),
        k in prop_oneof![Just(0.0f32), Just(1.0f32), Just(0.2f32), 0.0f32..=1.0],
    ) {
        // Junk where nothing may be read: padding and dropped rows.
        let (mut adv, mut ent) = (adv, ent);
        for j in 0..rows * cols {
            if mask[j] == 0 || keep_rows[j / cols] == 0 {
                adv[j] = f32::NAN;
                ent[j] = f32::INFINITY;
            }
        }
        let mut out = vec![9u8; rows * cols];
        let kept = d3s_token_mask(exec(), &D3sTokenInputs { shape: BatchShape::new(rows, cols), mask: &mask, adv: &adv, entropy: &ent, keep_rows: &keep_rows }, k, &mut out).unwrap();
        let want = rs::d3s_token_mask(&adv, &ent, &mask, &keep_rows, cols.max(1), k as f64);
        prop_assert_eq!(&out, &want);
        prop_assert_eq!(kept, want.iter().map(|&v| v as u64).sum::<u64>());
    }

    #[test]
    fn d3s_schedule_matches_reference(p in 0.0f32..=1.0, b in 0usize..5000, a in 0.01f32..=1.0, c in 0.01f32..=1.0) {
        let s = D3sSchedule { n_init: a, n_final: c, k_init: c, k_final: a };
        let (n, k) = d3s_schedule(p, &s, b).unwrap();
        let (wn, wk) = rs::d3s_schedule(p as f64, a as f64, c as f64, c as f64, a as f64, b);
        prop_assert_eq!(n, wn);
        prop_assert_eq!(k, wk as f32);
        prop_assert!(n <= b && (b == 0 || n >= 1));
    }
}

#[test]
fn max_variance_edge_cases() {
    let (mut order, mut prefix) = subset(6, false);
    let mut keep = [9u8; 6];
    // Binary rewards: balanced halves (limited by availability), zero advantages last.
    let x = [1.0f32, -1.0, 1.0, 0.0, 1.0, 0.0];
    max_variance_subset(&x, 4, &mut order, &mut prefix, &mut keep).unwrap();
    assert_eq!(keep.iter().filter(|&&k| k == 1).count(), 4);
    // {1, 1, 1, −1} (variance 0.75) beats {1, 1, −1, 0} (0.6875): only one −1 is available,
    // and zero advantages stay out while non-zero ones are left.
    assert_eq!(keep, [1, 1, 1, 0, 1, 0]);
    // m = 1 keeps the smallest value; m = 0 nothing; m ≥ n everything.
    let x = [0.5f32, -2.0, 3.0, -2.0, 0.0, 1.0];
    max_variance_subset(&x, 1, &mut order, &mut prefix, &mut keep).unwrap();
    assert_eq!(keep, [0, 1, 0, 0, 0, 0]);
    max_variance_subset(&x, 0, &mut order, &mut prefix, &mut keep).unwrap();
    assert_eq!(keep, [0; 6]);
    max_variance_subset(&x, 9, &mut order, &mut prefix, &mut keep).unwrap();
    assert_eq!(keep, [1; 6]);
    // Errors leave `keep` alone.
    let mut keep = [9u8; 6];
    let bad = [0.0f32, f32::NAN, 1.0, 2.0, 3.0, 4.0];
    assert_eq!(
        max_variance_subset(&bad, 2, &mut order, &mut prefix, &mut keep),
        Err(TmError::NonFinite { what: "x", index: 1 })
    );
    assert!(matches!(
        max_variance_subset(&x, 2, &mut order[..5], &mut prefix, &mut keep),
        Err(TmError::InvalidArgument(_))
    ));
    assert!(matches!(
        max_variance_subset(&x, 2, &mut order, &mut prefix[..13], &mut keep),
        Err(TmError::InvalidArgument(_))
    ));
    assert!(matches!(
        max_variance_subset(&x, 2, &mut order, &mut prefix, &mut keep[..5]),
        Err(TmError::LengthMismatch { .. })
    ));
    assert_eq!(keep, [9; 6]);
}

#[test]
fn d3s_errors() {
    let mut rows = [9u8; 4];
    let (mut o, mut v, mut p) = (vec![0u32; 4], vec![0f32; 4], vec![0f64; 10]);
    let adv = [1.0f32, -1.0, f32::INFINITY, 0.0];
    let sc = D3sScratch { order: &mut o, values: &mut v, prefix: &mut p };
    assert_eq!(
        d3s_select_samples(&adv, Groups::Contiguous { size: 2 }, None, 2, sc, &mut rows),
        Err(TmError::NonFinite { what: "adv_seq", index: 2 })
    );
    let adv = [1.0f32, -1.0, 0.5, 0.0];
    let sc = D3sScratch { order: &mut o, values: &mut v, prefix: &mut p };
    assert!(matches!(
        d3s_select_samples(&adv, Groups::Contiguous { size: 3 }, Some(1), 2, sc, &mut rows),
        Err(TmError::InvalidArgument(_))
    ));
    let sc = D3sScratch { order: &mut o, values: &mut v[..3], prefix: &mut p };
    assert!(matches!(
        d3s_select_samples(&adv, Groups::Contiguous { size: 2 }, None, 2, sc, &mut rows),
        Err(TmError::InvalidArgument(_))
    ));
    assert_eq!(rows, [9; 4]);
    let sc = D3sScratch { order: &mut o, values: &mut v, prefix: &mut p };
    d3s_select_samples(&adv, Groups::Contiguous { size: 2 }, Some(1), 2, sc, &mut rows).unwrap();
    assert_eq!(rows, [0, 1, 0, 1]); // per group the smallest (m = 1); then both candidates

    let s = D3sSchedule::default();
    for bad in [-0.1f32, 1.1, f32::NAN] {
        assert!(matches!(d3s_schedule(bad, &s, 8), Err(TmError::InvalidArgument(_))));
    }
    for bad in [0.0f32, 1.5, f32::NAN] {
        assert!(matches!(d3s_schedule(0.5, &D3sSchedule { k_init: bad, ..s }, 8), Err(TmError::InvalidArgument(_))));
    }
    assert_eq!(d3s_schedule(0.0, &s, 8).unwrap(), (4, 0.2));
    assert_eq!(d3s_schedule(1.0, &s, 8).unwrap(), (8, 1.0));
    assert_eq!(d3s_schedule(0.5, &s, 1).unwrap(), (1, 0.6));
    assert_eq!(d3s_schedule(0.0, &s, 3).unwrap().0, 2); // 1.5 rounds half away from zero

    let sh = BatchShape::new(2, 2);
    let mut out = [9u8; 4];
    let e = [1.0f32; 4];
    let a = [1.0f32, f32::NAN, 2.0, 3.0];
    assert_eq!(
        d3s_token_mask(
            exec(),
            &D3sTokenInputs { shape: sh, mask: &[1; 4], adv: &a, entropy: &e, keep_rows: &[1, 1] },
            0.5,
            &mut out
        ),
        Err(TmError::NonFinite { what: "adv", index: 1 })
    );
    assert_eq!(
        d3s_token_mask(
            exec(),
            &D3sTokenInputs { shape: sh, mask: &[1; 4], adv: &e, entropy: &a, keep_rows: &[1, 1] },
            0.5,
            &mut out
        ),
        Err(TmError::NonFinite { what: "entropy", index: 1 })
    );
    for bad in [-0.1f32, 1.1, f32::NAN] {
        assert!(matches!(
            d3s_token_mask(
                exec(),
                &D3sTokenInputs { shape: sh, mask: &[1; 4], adv: &e, entropy: &e, keep_rows: &[1, 1] },
                bad,
                &mut out
            ),
            Err(TmError::InvalidArgument(_))
        ));
    }
    assert!(matches!(
        d3s_token_mask(
            exec(),
            &D3sTokenInputs { shape: sh, mask: &[1; 4], adv: &e, entropy: &e, keep_rows: &[1] },
            0.5,
            &mut out
        ),
        Err(TmError::LengthMismatch { what: "keep_rows", .. })
    ));
    assert_eq!(out, [9; 4]);
    // A NaN in a dropped row or at padding is never read.
    assert_eq!(
        d3s_token_mask(
            exec(),
            &D3sTokenInputs { shape: sh, mask: &[1, 0, 1, 1], adv: &a, entropy: &e, keep_rows: &[1, 1] },
            0.5,
            &mut out
        ),
        Ok(2)
    );
    assert_eq!(out, [0, 0, 1, 1]);
    assert_eq!(
        d3s_token_mask(
            exec(),
            &D3sTokenInputs { shape: sh, mask: &[1; 4], adv: &a, entropy: &e, keep_rows: &[0, 1] },
            0.5,
            &mut out
        ),
        Ok(1)
    );
    assert_eq!(out, [0, 0, 0, 1]);
}

// ----------------------------------------------------------------------------------------
// PSR / NSR / W-REINFORCE, GRPO-N, expected logit update
// ----------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn nsr_matches_reference(
        (rows, cols, r, sc, mask) in (0usize..6, 0usize..12).prop_flat_map(|(b, t)| (
            Just(b), Just(t),
            prop::collection::vec(prop_oneof![3 => Just(0.0f32), 2 => Just(1.0f32), 1 => -2.0f32..2.0, 1 => -1e30f32..1e30], b * t),
            prop::collection::vec(prop_oneof![4 => Just(0.0f32), 2 => Just(1.0f32), 1 => Just(0.5f32)], b * t),
            prop::collection::vec(prop_oneof![3 => Just(1u8), 1 => Just(0u8)], b * t),
        )),
        mode in 0u8..3, gamma in prop_oneof![Just(1.0f32), Just(0.0f32), 0.0f32..1.5], lambda in -1.0f32..1.0,
    ) {
        let (mut r, mut sc) = (r, sc);
        for j in 0..mask.len() {
            if mask[j] == 0 {
                r[j] = f32::NAN;
                sc[j] = f32::INFINITY;
            }
        }
        let m = match mode { 0 => NsrMode::Psr, 1 => NsrMode::Nsr, _ => NsrMode::Weighted { lambda } };
        let mut keep = vec![9u8; rows];
        let mut adv = poisoned(rows * cols);
        nsr_advantage(exec(), BatchShape::new(rows, cols), &mask, &r, &sc, &NsrCfg { mode: m, gamma }, NsrOut { keep_rows: &mut keep, adv: &mut adv }).unwrap();
        let (want, want_keep) = rs::nsr(&r, &sc, &mask, rows, cols, gamma as f64, [rs::NsrRef::Psr, rs::NsrRef::Nsr, rs::NsrRef::Weighted(lambda as f64)][mode as usize]);
        prop_assert_eq!(&keep, &want_keep);
        for (j, (&g, &w)) in adv.iter().zip(&want).enumerate() {
            // One f32 rounding of an f64 value computed in the same order.
            prop_assert!(g == w as f32, "at {}: got {:e} want {:e}", j, g, w);
            prop_assert!(mask[j] != 0 || g == 0.0);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Long rows of outcome rewards (at most one non-zero reward and score per row, padding
    /// gaps inside rows) take the sparse path; a dense row in a block of four sends the block
    /// down the recurrence. Both match the reference bitwise.
    #[test]
    fn nsr_sparse_rows_match_reference(
        (rows, cols, at, val, gaps, dense) in (1usize..9, 1usize..300).prop_flat_map(|(b, t)| (
            Just(b), Just(t),
            prop::collection::vec(0..t, b),
            prop::collection::vec(prop_oneof![Just(1.0f32), Just(0.0f32), Just(-0.0f32), Just(0.5f32), -3.0f32..3.0], b),
            prop::collection::vec(0..t, 0..6),
            prop::option::of(0..b),
        )),
        mode in 0u8..3, gamma in prop_oneof![3 => Just(1.0f32), 1 => 0.0f32..1.5], lambda in -1.0f32..1.0,
    ) {
        let n = rows * cols;
        let (mut r, mut mask) = (vec![0.0f32; n], vec![1u8; n]);
        for b in 0..rows {
            r[b * cols + at[b]] = val[b];
        }
        for (i, &g) in gaps.iter().enumerate() {
            mask[(i % rows) * cols + g] = 0;
            r[(i % rows) * cols + g] = f32::NAN;
        }
        if let Some(d) = dense {
            for t in 0..cols {
                if mask[d * cols + t] != 0 {
                    r[d * cols + t] = 0.25;
                }
            }
        }
        let m = match mode { 0 => NsrMode::Psr, 1 => NsrMode::Nsr, _ => NsrMode::Weighted { lambda } };
        let (want, want_keep) = rs::nsr(&r, &r, &mask, rows, cols, gamma as f64, [rs::NsrRef::Psr, rs::NsrRef::Nsr, rs::NsrRef::Weighted(lambda as f64)][mode as usize]);
        for b in tokenmath_core::Backend::all_supported() {
            let mut keep = vec![9u8; rows];
            let mut adv = poisoned(n);
            nsr_advantage(exec().with_backend(b), BatchShape::new(rows, cols), &mask, &r, &r, &NsrCfg { mode: m, gamma }, NsrOut { keep_rows: &mut keep, adv: &mut adv }).unwrap();
            prop_assert_eq!(&keep, &want_keep);
            for (j, (&g, &w)) in adv.iter().zip(&want).enumerate() {
                prop_assert!(g.to_bits() == (w as f32).to_bits() || (g == 0.0 && w == 0.0), "at {}: got {:e} want {:e} ({:?})", j, g, w, b);
            }
        }
    }
}

#[test]
fn nsr_modes_and_errors() {
    // Row 0 correct (score 1 at its last token), row 1 incorrect, row 2 partial (0.5).
    let s = BatchShape::new(3, 2);
    let mask = [1u8, 1, 1, 1, 1, 0];
    let r = [0.0f32, 1.0, 0.0, 0.0, 0.5, 0.0];
    let sc = r;
    let mut keep = [9u8; 3];
    let mut adv = poisoned(6);
    nsr_advantage(
        exec(),
        s,
        &mask,
        &r,
        &sc,
        &NsrCfg { mode: NsrMode::Psr, gamma: 1.0 },
        NsrOut { keep_rows: &mut keep, adv: &mut adv },
    )
    .unwrap();
    assert_eq!((keep, adv.as_slice()), ([1, 0, 0], &[1.0f32, 1.0, 0.0, 0.0, 0.0, 0.0][..]));
    nsr_advantage(
        exec(),
        s,
        &mask,
        &r,
        &sc,
        &NsrCfg { mode: NsrMode::Nsr, gamma: 1.0 },
        NsrOut { keep_rows: &mut keep, adv: &mut adv },
    )
    .unwrap();
    assert_eq!((keep, adv.as_slice()), ([0, 1, 0], &[0.0f32, 0.0, -1.0, -1.0, 0.0, 0.0][..]));
    nsr_advantage(exec(), s, &mask, &r, &sc, &NsrCfg::default(), NsrOut { keep_rows: &mut keep, adv: &mut adv })
        .unwrap();
    assert_eq!(keep, [1, 1, 1]);
    assert_eq!(adv, [0.1f32, 0.1, -1.0, -1.0, 0.5, 0.0]);

    let mut keep = [9u8; 3];
    let mut adv = poisoned(6);
    let bad_r = [0.0f32, f32::NAN, 0.0, 0.0, 0.5, 0.0];
    assert_eq!(
        nsr_advantage(
            exec(),
            s,
            &mask,
            &bad_r,
            &sc,
            &NsrCfg::default(),
            NsrOut { keep_rows: &mut keep, adv: &mut adv }
        ),
        Err(TmError::NonFinite { what: "token_rewards", index: 1 })
    );
    for cfg in [
        NsrCfg { gamma: -1.0, ..NsrCfg::default() },
        NsrCfg { mode: NsrMode::Weighted { lambda: f32::NAN }, gamma: 1.0 },
    ] {
        assert!(matches!(
            nsr_advantage(exec(), s, &mask, &r, &sc, &cfg, NsrOut { keep_rows: &mut keep, adv: &mut adv }),
            Err(TmError::InvalidArgument(_))
        ));
    }
    assert!(matches!(
        nsr_advantage(
            exec(),
            s,
            &mask,
            &r,
            &sc[..5],
            &NsrCfg::default(),
            NsrOut { keep_rows: &mut keep, adv: &mut adv }
        ),
        Err(TmError::LengthMismatch { what: "scores", .. })
    ));
    assert!(untouched(&adv) && keep == [9; 3]);
}

#[test]
fn grpo_negative_only_modes() {
    let s = BatchShape::new(4, 2);
    let adv0 = [0.5f32, -0.5, 0.0, -2.0];
    let mut adv = adv0;
    let mut mask = [1u8; 8];
    assert_eq!(grpo_negative_only(exec(), s, &mut mask, &mut adv, NegMode::ZeroPositives), Ok(1));
    assert_eq!((adv, mask), ([0.0, -0.5, 0.0, -2.0], [1; 8]));
    let mut adv = adv0;
    assert_eq!(grpo_negative_only(exec(), s, &mut mask, &mut adv, NegMode::DropPositives), Ok(1));
    assert_eq!((adv, mask), ([0.0, -0.5, 0.0, -2.0], [0, 0, 1, 1, 1, 1, 1, 1]));
    let mut adv = [0.5f32, f32::NAN, 0.0, 1.0];
    let mut mask = [1u8; 8];
    assert_eq!(
        grpo_negative_only(exec(), s, &mut mask, &mut adv, NegMode::DropPositives),
        Err(TmError::NonFinite { what: "adv_seq", index: 1 })
    );
    assert_eq!((adv[0], mask), (0.5, [1; 8]));
    assert!(matches!(
        grpo_negative_only(exec(), s, &mut mask[..7], &mut adv, NegMode::ZeroPositives),
        Err(TmError::LengthMismatch { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Against the reference, and against a finite difference of
    /// `J(z) = Σ_a sg(π_a)·A_a·log softmax(z)_a` (whose gradient is the expected update / lr).
    #[test]
    fn expected_logit_update_matches_reference_and_gradient(
        z in prop::collection::vec(-6.0f64..6.0, 1..12),
        a in prop::collection::vec(-2.0f32..2.0, 12),
        lr in prop_oneof![Just(1.0f32), 1e-3f32..1.0],
    ) {
        let v = z.len();
        let lse = z.iter().map(|x| x.exp()).sum::<f64>().ln();
        let probs: Vec<f32> = z.iter().map(|x| (x - lse).exp() as f32).collect();
        let a = &a[..v];
        let mut out = poisoned(v);
        expected_logit_update(&probs, a, lr, &mut out).unwrap();
        let want = rs::expected_logit_update(&probs, a, lr as f64);
        for (&g, &w) in out.iter().zip(&want) {
            prop_assert!((g as f64 - w).abs() <= 1e-6 * (lr as f64) * (1.0 + w.abs()), "got {g:e} want {w:e}");
        }
        // Finite difference with the f32 probabilities as the stop-gradient weights.
        let j = |z: &[f64]| {
            let lse = z.iter().map(|x| x.exp()).sum::<f64>().ln();
            probs.iter().zip(a).zip(z).map(|((&p, &ai), &zi)| p as f64 * ai as f64 * (zi - lse)).sum::<f64>()
        };
        for b in 0..v {
            let h = 1e-5;
            let (mut zp, mut zm) = (z.clone(), z.clone());
            zp[b] += h;
            zm[b] -= h;
            let fd = lr as f64 * (j(&zp) - j(&zm)) / (2.0 * h);
            // The f32 probabilities do not sum to 1 exactly: J's gradient is then
            // π∘A − softmax(z)·Σπ_aA_a, which differs from the formula by ~1e-7·|Σ π A|.
            prop_assert!((out[b] as f64 - fd).abs() <= 1e-6 * lr as f64 * (1.0 + fd.abs() / lr as f64), "b {b}: got {} fd {fd:e}", out[b]);
        }
    }
}

#[test]
fn expected_logit_update_errors() {
    let mut out = poisoned(3);
    assert_eq!(
        expected_logit_update(&[0.5, f32::NAN, 0.5], &[1.0; 3], 1.0, &mut out),
        Err(TmError::NonFinite { what: "probs", index: 1 })
    );
    assert_eq!(
        expected_logit_update(&[0.5; 3], &[1.0, 1.0, f32::INFINITY], 1.0, &mut out),
        Err(TmError::NonFinite { what: "adv_per_action", index: 2 })
    );
    assert_eq!(
        expected_logit_update(&[0.5; 3], &[1.0; 3], f32::NAN, &mut out),
        Err(TmError::NonFinite { what: "lr", index: 0 })
    );
    assert!(matches!(
        expected_logit_update(&[0.5, -0.1, 0.6], &[1.0; 3], 1.0, &mut out),
        Err(TmError::InvalidArgument(_))
    ));
    assert!(matches!(expected_logit_update(&[0.5; 3], &[1.0; 2], 1.0, &mut out), Err(TmError::LengthMismatch { .. })));
    assert!(untouched(&out));
    // Uniform advantages give no update; a rare action barely moves.
    expected_logit_update(&[0.25, 0.25, 0.5], &[2.0; 3], 1.0, &mut out).unwrap();
    assert!(out.iter().all(|&v| v.abs() < 1e-7));
    let _ = POISON;
}
