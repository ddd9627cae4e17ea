//! QuoTA (`token-rewards.md` §6) against the f64 oracles, the spec's worked examples, the
//! known PyTorch outputs of the matched index formulas, and hostile inputs.

use proptest::prelude::*;
use tokenmath_core::quota::{self as q, BudgetRule};
use tokenmath_core::TmError;
use tokenmath_reference::quota as oracle;
use tokenmath_testutil::{poisoned, rand_f32, untouched};

#[test]
fn frame_count_and_indices() {
    assert_eq!(q::quota_frame_count(0.0, 96, 64), Ok(96));
    assert_eq!(q::quota_frame_count(3599.0, 96, 64), Ok(96 + 63));
    assert_eq!(q::quota_frame_count(3600.0, 96, 64), Ok(160));
    assert_eq!(q::quota_frame_count(5400.0, 96, 64), Ok(192));
    for bad in [f64::NAN, f64::INFINITY, -1.0] {
        assert!(matches!(q::quota_frame_count(bad, 96, 64), Err(TmError::InvalidArgument(_))));
    }
    assert!(q::quota_frame_count(1e300, 96, 64).is_err());

    let mut out = [9u64; 5];
    q::quota_frame_indices(101, &mut out).unwrap();
    assert_eq!(out, [0, 25, 50, 75, 100]);
    let mut one = [9u64];
    q::quota_frame_indices(50, &mut one).unwrap();
    assert_eq!(one, [0]);
    let mut rep = [0u64; 4];
    q::quota_frame_indices(2, &mut rep).unwrap();
    assert_eq!(rep, [0, 0, 0, 1]);
    assert!(q::quota_frame_indices(0, &mut rep).is_err());
    q::quota_frame_indices(0, &mut []).unwrap();
    let mut big = [0u64; 3];
    q::quota_frame_indices(u64::MAX, &mut big).unwrap();
    assert_eq!(big, [0, (u64::MAX - 1) / 2, u64::MAX - 1]);
}

proptest! {
    /// Exact integers agree with NumPy's float linspace within one frame, are non-decreasing
    /// and end at the last frame.
    #[test]
    fn frame_indices_match_linspace(total in 1u64..1_000_000, count in 1usize..300) {
        let mut out = vec![0u64; count];
        q::quota_frame_indices(total, &mut out).unwrap();
        let want = oracle::linspace_indices(total, count);
        for j in 0..count {
            prop_assert!(out[j].abs_diff(want[j]) <= 1);
            prop_assert!(out[j] < total);
            if j > 0 { prop_assert!(out[j] >= out[j - 1]); }
        }
        if count > 1 { prop_assert_eq!(out[count - 1], total - 1); }
    }
}

#[test]
fn weights_scale_budgets_and_grid() {
    let p = [0.9f32, 0.1, 0.0, 0.5];
    let mut w = poisoned(4);
    q::quota_frame_weights(&p, 100.0, 2.0, &mut w).unwrap();
    let want = oracle::frame_weights(&p, 100.0, 2.0);
    for i in 0..4 {
        assert!((w[i] as f64 - want[i]).abs() <= 6e-8 * want[i]);
    }
    q::quota_frame_weights(&[0.0; 3], 100.0, 2.0, &mut w[..3]).unwrap();
    assert_eq!(&w[..3], &[1.0 / 3.0; 3]);
    let mut w2 = poisoned(2);
    assert_eq!(
        q::quota_frame_weights(&[0.5, f32::NAN], 100.0, 2.0, &mut w2),
        Err(TmError::NonFinite { what: "p_yes", index: 1 })
    );
    assert!(matches!(q::quota_frame_weights(&[1.5, 0.0], 100.0, 2.0, &mut w2), Err(TmError::InvalidArgument(_))));
    assert!(matches!(q::quota_frame_weights(&[0.5, 0.5], 0.0, 2.0, &mut w2), Err(TmError::InvalidArgument(_))));
    assert!(untouched(&w2));

    // scale_weights: the source's quirks (excess never decreases, S includes capped weights).
    let mut v = [0.7f32, 0.2, 0.1];
    q::quota_scale_weights(&mut v, 0.4).unwrap();
    let want = oracle::scale_weights(&[0.7f32 as f64, 0.2f32 as f64, 0.1f32 as f64], 0.4f32 as f64);
    for i in 0..3 {
        assert!((v[i] as f64 - want[i]).abs() <= 1e-7, "{i}: {} vs {}", v[i], want[i]);
    }
    // 0.7 → 0.4, excess 0.3, S = 0.7; 0.2 → 0.2 + 0.2/0.7·0.3; 0.1 → 0.1 + 0.1/0.7·0.3.
    assert!((v[1] as f64 - (0.2 + 0.2 / 0.7 * 0.3)).abs() < 1e-6);
    let mut nothing = [0.1f32, 0.2];
    q::quota_scale_weights(&mut nothing, 0.5).unwrap();
    assert_eq!(nothing, [0.1, 0.2]);
    assert!(q::quota_scale_weights(&mut [0.1, -0.1], 0.5).is_err());
    assert!(q::quota_scale_weights(&mut [0.1, f32::INFINITY], 0.5).is_err());
    assert!(q::quota_scale_weights(&mut [0.1], 0.0).is_err());

    // Budgets: the source's truncation leaves tokens over; largest remainder sums exactly.
    let w = [0.5f32, 0.3, 0.2];
    let mut n = [0u32; 3];
    q::quota_token_budgets(&w, 10, BudgetRule::Truncate, &mut n).unwrap();
    assert_eq!(n, [5, 3, 2]);
    q::quota_token_budgets(&[1.0 / 3.0; 3], 100, BudgetRule::Truncate, &mut n).unwrap();
    assert_eq!(n, [33, 33, 33]);
    q::quota_token_budgets(&[1.0 / 3.0; 3], 100, BudgetRule::LargestRemainder, &mut n).unwrap();
    assert_eq!(n, [34, 33, 33]);
    q::quota_token_budgets(&[0.0, 0.0, 2.0], 7, BudgetRule::LargestRemainder, &mut n).unwrap();
    assert_eq!(n, [0, 0, 7]);
    assert!(matches!(
        q::quota_token_budgets(&[0.0; 3], 7, BudgetRule::LargestRemainder, &mut n),
        Err(TmError::InvalidArgument(_))
    ));
    assert!(matches!(
        q::quota_token_budgets(&[0.0, f32::NAN, 0.0], 7, BudgetRule::Truncate, &mut n),
        Err(TmError::NonFinite { .. })
    ));
    assert!(q::quota_token_budgets(&[1e30], 7, BudgetRule::Truncate, &mut n[..1]).is_err());
    q::quota_token_budgets(&[], 7, BudgetRule::LargestRemainder, &mut []).unwrap();

    assert_eq!(q::quota_grid_for_budget(12), (4, 3));
    assert_eq!(q::quota_grid_for_budget(10), (3, 3));
    assert_eq!(q::quota_grid_for_budget(729), (27, 27));
    assert_eq!(q::quota_grid_for_budget(0), (0, 0));
    assert_eq!(q::quota_grid_for_budget(1), (1, 1));
    assert_eq!(q::quota_grid_for_budget(2), (2, 1));
    let (h, w) = q::quota_grid_for_budget(u32::MAX);
    assert!(h as u64 * w as u64 <= u32::MAX as u64);
}

proptest! {
    #[test]
    fn budgets_sum_exactly_and_match_hamilton(ws in proptest::collection::vec(0.0f32..1.0, 1..40), total in 0u32..20000) {
        prop_assume!(ws.iter().any(|&v| v > 0.0));
        let mut n = vec![0u32; ws.len()];
        q::quota_token_budgets(&ws, total, BudgetRule::LargestRemainder, &mut n).unwrap();
        prop_assert_eq!(n.iter().map(|&v| v as u64).sum::<u64>(), total as u64);
        let want = oracle::largest_remainder(&ws.iter().map(|&v| v as f64).collect::<Vec<_>>(), total);
        prop_assert_eq!(n, want);
    }

    #[test]
    fn grid_fits_the_budget(n in 0u32..2_000_000) {
        let (h, w) = q::quota_grid_for_budget(n);
        prop_assert!(h as u64 * w as u64 <= n as u64);
        let r = n.isqrt();
        prop_assert!(h >= r && w >= r && h <= r + 1 && w == r);
    }

    #[test]
    fn scale_weights_match_the_transcription(ws in proptest::collection::vec(0.0f32..1.0, 1..30), cap in 0.01f32..0.5) {
        let s: f32 = ws.iter().sum();
        prop_assume!(s > 0.0);
        let mut v: Vec<f32> = ws.iter().map(|&x| x / s).collect();
        let want = oracle::scale_weights(&v.iter().map(|&x| x as f64).collect::<Vec<_>>(), cap as f64);
        q::quota_scale_weights(&mut v, cap).unwrap();
        for i in 0..v.len() {
            prop_assert!((v[i] as f64 - want[i]).abs() <= 1e-6 * (1.0 + want[i]), "{}: {} vs {}", i, v[i], want[i]);
            prop_assert!(v[i] <= cap);
        }
    }

    #[test]
    fn weights_hostile(p in proptest::collection::vec(tokenmath_testutil::hostile_logit(), 0..12)) {
        let mut out = poisoned(p.len());
        match q::quota_frame_weights(&p, 100.0, 2.0, &mut out) {
            Ok(()) => {
                prop_assert!(p.iter().all(|v| (0.0..=1.0).contains(v)));
                let s: f64 = out.iter().map(|&v| v as f64).sum();
                if !p.is_empty() { prop_assert!((s - 1.0).abs() < 1e-5); }
            }
            Err(_) => { prop_assert!(untouched(&out)); }
        }
    }
}

#[test]
fn resize_matches_known_pytorch_outputs() {
    // F.interpolate([0, 1] → 4, bilinear, align_corners=False) = [0, 0.25, 0.75, 1].
    let mut out = poisoned(4);
    q::bilinear_resize_hwc(&[0.0, 1.0], 1, 2, 1, 1, 4, &mut out).unwrap();
    assert_eq!(out, [0.0, 0.25, 0.75, 1.0]);
    // 2× down-sampling averages pairs: [0, 1, 2, 3] → [0.5, 2.5].
    let mut out = poisoned(2);
    q::bilinear_resize_hwc(&[0.0, 1.0, 2.0, 3.0], 4, 1, 1, 2, 1, &mut out).unwrap();
    assert_eq!(out, [0.5, 2.5]);
    // The index formula: 27 → 12 (scale 2.25), o = 0: src = 0.625.
    assert_eq!(q::bilinear_source_index(27, 12, 0), (0, 1, 0.625));
    assert_eq!(q::bilinear_source_index(27, 12, 11), (25, 26, 0.375));
    assert_eq!(q::bilinear_source_index(2, 4, 3), (1, 1, 0.25));
    // adaptive_avg_pool2d 5 → 3: windows [0,2), [1,4), [3,5).
    let mut out = poisoned(3);
    q::adaptive_avg_pool_hwc(&[1.0, 2.0, 3.0, 4.0, 5.0], 1, 5, 1, 1, 3, &mut out).unwrap();
    assert_eq!(out, [1.5, 3.0, 4.5]);
    // Up-sampling by pooling repeats cells: 2 → 3 gives windows [0,1), [0,2), [1,2).
    q::adaptive_avg_pool_hwc(&[2.0, 4.0], 2, 1, 1, 3, 1, &mut out).unwrap();
    assert_eq!(out, [2.0, 3.0, 4.0]);
    // Identity sizes are the identity.
    let x = rand_f32(27 * 27 * 3, 1, 2.0);
    let mut y = poisoned(x.len());
    q::bilinear_resize_hwc(&x, 27, 27, 3, 27, 27, &mut y).unwrap();
    assert_eq!(x, y);
    q::adaptive_avg_pool_hwc(&x, 27, 27, 3, 27, 27, &mut y).unwrap();
    assert_eq!(x, y);
}

#[test]
fn resize_matches_the_reference_across_sizes() {
    let c = 3;
    for (h, w) in [(27usize, 27usize), (1, 1), (1, 7), (5, 3)] {
        let x = rand_f32(h * w * c, (h * 31 + w) as u64, 2.0);
        let amax = x.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64));
        for (oh, ow) in [(1usize, 1usize), (3, 3), (4, 3), (12, 12), (27, 27), (40, 31), (2, 27)] {
            let mut out = poisoned(oh * ow * c);
            q::bilinear_resize_hwc(&x, h, w, c, oh, ow, &mut out).unwrap();
            let want = oracle::bilinear(&x, h, w, c, oh, ow);
            // f32 arithmetic (6 roundings of terms bounded by max|x|) plus the f32 source
            // index, whose error (≤ 4·2⁻²⁴·max(I, O)) moves λ by as much.
            let tol = (8.0 + 8.0 * h.max(w).max(oh).max(ow) as f64) * f32::EPSILON as f64 * amax;
            for i in 0..out.len() {
                assert!(
                    (out[i] as f64 - want[i]).abs() <= tol,
                    "bilinear {h}x{w}→{oh}x{ow} [{i}]: {} vs {}",
                    out[i],
                    want[i]
                );
            }
            q::adaptive_avg_pool_hwc(&x, h, w, c, oh, ow, &mut out).unwrap();
            let want = oracle::adaptive_avg_pool(&x, h, w, c, oh, ow);
            for i in 0..out.len() {
                assert!((out[i] as f64 - want[i]).abs() <= 6e-8 * want[i].abs() + 1e-300, "pool [{i}]");
            }
        }
    }
}

#[test]
fn resize_rejects_bad_shapes() {
    let mut out = poisoned(4);
    assert!(matches!(q::bilinear_resize_hwc(&[], 0, 2, 1, 2, 2, &mut out), Err(TmError::InvalidArgument(_))));
    assert!(matches!(q::adaptive_avg_pool_hwc(&[1.0], 1, 1, 1, 0, 2, &mut out), Err(TmError::InvalidArgument(_))));
    assert!(matches!(
        q::bilinear_resize_hwc(&[1.0; 3], 2, 2, 1, 2, 2, &mut out),
        Err(TmError::LengthMismatch { what: "src", .. })
    ));
    assert!(matches!(
        q::adaptive_avg_pool_hwc(&[1.0; 4], 2, 2, 1, 2, 1, &mut out),
        Err(TmError::LengthMismatch { what: "out", .. })
    ));
    assert!(matches!(q::bilinear_resize_hwc(&[], usize::MAX, 2, 1, 2, 2, &mut out), Err(TmError::SizeOverflow { .. })));
    assert!(untouched(&out));
    // c = 0 is valid and writes nothing.
    q::bilinear_resize_hwc(&[], 3, 3, 0, 2, 2, &mut []).unwrap();
    // NaN propagates like PyTorch (only into the cells that read it).
    let mut o = poisoned(2);
    q::adaptive_avg_pool_hwc(&[f32::NAN, 1.0, 2.0, 3.0], 1, 4, 1, 1, 2, &mut o).unwrap();
    assert!(o[0].is_nan() && o[1] == 2.5);
}

// ---------------------------------------------------------------------------------------
// ToMe bipartite round

fn tome(x: &[f32], t: usize, dim: usize, r: usize) -> Result<(usize, Vec<f32>), TmError> {
    let (lf, lu) = q::tome_scratch_len(t);
    let (mut sf, mut su) = (vec![f64::NAN; lf], vec![u32::MAX; lu]);
    let mut out = poisoned(t * dim);
    let k = q::tome_bipartite_round(x, t, dim, r, &mut sf, &mut su, &mut out)?;
    assert!(untouched(&out[k * dim..]));
    out.truncate(k * dim);
    Ok((k, out))
}

#[test]
fn tome_worked_example_and_edges() {
    // A = {x0, x2}, B = {x1, x3}; x0 matches x1 best (cos ≈ 0.995), x2 matches x1 (≈ 0.0995).
    let x = [1.0f32, 0.0, 1.0, 0.1, 0.0, 1.0, -1.0, 0.0];
    let (k, out) = tome(&x, 4, 2, 1).unwrap();
    assert_eq!(k, 3);
    assert_eq!(out, [0.0, 1.0, 1.0, 0.05, -1.0, 0.0]);
    // r = 2 merges both A tokens into x1: mean of x1, x0, x2.
    let (k, out) = tome(&x, 4, 2, 2).unwrap();
    assert_eq!(k, 2);
    assert_eq!(out, [(2.0f64 / 3.0) as f32, (1.1f32 as f64 / 3.0) as f32, -1.0, 0.0]);
    // r is capped at floor(t/2); r = 0 and t < 2 return the tokens unchanged.
    assert_eq!(tome(&x, 4, 2, 99).unwrap().0, 2);
    assert_eq!(tome(&x, 4, 2, 0).unwrap(), (4, x.to_vec()));
    assert_eq!(tome(&x[..2], 1, 2, 5).unwrap(), (1, x[..2].to_vec()));
    assert_eq!(tome(&[], 0, 3, 5).unwrap(), (0, vec![]));
    // A zero-norm token matches with score 0 instead of NaN.
    let z = [0.0f32, 0.0, 1.0, 0.0, 0.0, 1.0];
    let (k, out) = tome(&z, 3, 2, 1).unwrap();
    assert_eq!(k, 2);
    assert!(out.iter().all(|v| v.is_finite()));
    // Errors: nothing written.
    assert_eq!(tome(&[1.0, f32::NAN], 2, 1, 1), Err(TmError::NonFinite { what: "x", index: 1 }));
    assert!(matches!(tome(&x, 3, 2, 1), Err(TmError::LengthMismatch { what: "x", .. })));
    let mut out = poisoned(8);
    let mut su = vec![0u32; 10];
    assert!(matches!(
        q::tome_bipartite_round(&x, 4, 2, 1, &mut [0.0; 2], &mut su, &mut out),
        Err(TmError::LengthMismatch { what: "scratch_f", .. })
    ));
    assert!(matches!(
        q::tome_bipartite_round(&x, 4, 2, 1, &mut [0.0; 6], &mut [0; 2], &mut out),
        Err(TmError::LengthMismatch { what: "scratch_u", .. })
    ));
    assert!(matches!(
        q::tome_bipartite_round(&x, 4, 2, 1, &mut [0.0; 6], &mut su, &mut out[..5]),
        Err(TmError::LengthMismatch { what: "out", .. })
    ));
    assert!(untouched(&out));
}

proptest! {
    #[test]
    fn tome_matches_the_reference(t in 0usize..40, dim in 1usize..6, r in 0usize..25, seed in 0u64..1000) {
        let x = rand_f32(t * dim, seed, 2.0);
        let (k, out) = tome(&x, t, dim, r).unwrap();
        let want = oracle::tome_round(&x, t, dim, r);
        prop_assert_eq!(k, want.len());
        prop_assert_eq!(k, t - r.min(t / 2));
        for (i, w) in want.iter().enumerate() {
            for d in 0..dim {
                let g = out[i * dim + d] as f64;
                prop_assert!((g - w[d]).abs() <= 6e-8 * w[d].abs() + 1e-300, "token {} dim {}: {} vs {}", i, d, g, w[d]);
            }
        }
    }

    /// Repeated rounds (QuoTA v4) reach any budget n ≤ t and keep the mean of every token's
    /// contributions finite.
    #[test]
    fn tome_rounds_reach_the_budget(t in 1usize..60, n in 1usize..60) {
        prop_assume!(n <= t);
        let dim = 3;
        let mut x = rand_f32(t * dim, t as u64, 1.0);
        let mut cur = t;
        let mut rounds = 0;
        while cur > n {
            let (k, out) = tome(&x, cur, dim, cur - n).unwrap();
            prop_assert!(k < cur);
            cur = k;
            x = out;
            rounds += 1;
            prop_assert!(rounds <= 64);
        }
        prop_assert_eq!(cur, n);
        prop_assert!(x.iter().all(|v| v.is_finite()));
    }
}
