//! NTHR and THR (`tokenmath_core::seed::{nthr, thr}`) against the f64 reference, the
//! hidden-reward identity checked by finite differences of a linear softmax head, and every
//! error.

use proptest::prelude::*;
use tokenmath_core::seed::*;
use tokenmath_core::{Exec, Mat, MatMut, TmError};
use tokenmath_reference::seed as rs;
use tokenmath_testutil::{poisoned, untouched};

fn exec() -> Exec {
    Exec::new()
}

fn feat<'a>(g: &'a [f32], h: &'a [f32], n: usize, v: usize, d: usize) -> Features<'a> {
    Features { g: Mat::new(g, n, v, v.max(1)).unwrap(), h: Mat::new(h, n, d, d.max(1)).unwrap() }
}

/// Feature values: prediction errors live in [−1, 1]; hidden states are wider, with zeros,
/// denormals and large magnitudes.
fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        20 => -1.0f32..1.0,
        2 => Just(0.0f32),
        2 => Just(-0.0f32),
        1 => (1u32..0x0080_0000).prop_map(f32::from_bits),
        3 => -50.0f32..50.0,
        1 => -1e15f32..1e15,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Influence scores (weighted or not) match the f64 reference within a formula bound:
    /// each f32 dot of length n carries at most n·2^-24 of its absolute sum, and the f64 sum
    /// and final rounding another 2^-24.
    #[test]
    fn influence_matches_reference(
        (ns, nq, v, d) in (0usize..6, 0usize..6, 1usize..9, 1usize..9),
        seed_g in prop::collection::vec(value(), 2 * 5 * 8),
        seed_h in prop::collection::vec(value(), 2 * 5 * 8),
        w in prop::collection::vec(prop_oneof![Just(1.0f32), 0.0f32..2.0, -1.0f32..1.0], 5),
        weighted in any::<bool>(),
    ) {
        let (sg, qg) = (&seed_g[..ns * v], &seed_g[40..40 + nq * v]);
        let (sh, qh) = (&seed_h[..ns * d], &seed_h[40..40 + nq * d]);
        let w = weighted.then_some(&w[..ns]);
        let mut out = poisoned(nq);
        influence_scores(exec(), &feat(sg, sh, ns, v, d), w, &feat(qg, qh, nq, v, d), &mut out).unwrap();
        let want = rs::influence(sg, sh, w, qg, qh, v, d);
        let bound = rs::influence_abs(sg, sh, w, qg, qh, v, d);
        let u = 1.0 / (1u64 << 24) as f64;
        for j in 0..nq {
            let tol = bound[j] * (v + d + 2) as f64 * u + want[j].abs() * u + 1e-30;
            // Beyond the f32 range the rounded result is ±inf.
            let ok = (out[j] as f64 - want[j]).abs() <= tol || (want[j] as f32).is_infinite() && out[j] == want[j] as f32;
            prop_assert!(ok, "j {}: got {:e} want {:e} tol {:e}", j, out[j], want[j], tol);
        }
    }

    /// THR's reweighting matches the reference in both modes.
    #[test]
    fn thr_reweight_matches_reference(
        adv in prop::collection::vec(-3.0f32..3.0, 0..40),
        thr_seed in prop::collection::vec(prop_oneof![-2.0f32..2.0, Just(0.0f32)], 40),
        tau in prop_oneof![Just(0.0f32), 0.0f32..1.5, Just(-1.0f32)],
        p in -1.0f32..1.0, mode in 0u8..3,
    ) {
        let thr = &thr_seed[..adv.len()];
        let cfg = match mode {
            0 => ThrCfg { mode: ThrMode::OnlyDominantBestGuess, non_dominant: NonDominant::Keep },
            1 => ThrCfg { mode: ThrMode::SteerBestGuess { p }, non_dominant: NonDominant::Keep },
            _ => ThrCfg { mode: ThrMode::SteerBestGuess { p }, non_dominant: NonDominant::Zero },
        };
        let mut a = adv.clone();
        let dom = thr_reweight(exec(), &mut a, thr, tau, &cfg).unwrap();
        let want = rs::thr_reweight(&adv, thr, tau as f64, (mode > 0).then_some(p as f64), mode != 2);
        prop_assert_eq!(dom, thr.iter().filter(|t| t.abs() > tau).count());
        for (g, w) in a.iter().zip(&want) {
            prop_assert!((*g as f64 - w).abs() <= 4.0 * f32::EPSILON as f64 * w.abs(), "got {} want {}", g, w);
        }
    }
}

/// `⟨∇_W log π(y_a|h_a), ∇_W log π(y_b|h_b)⟩_F = ⟨g_a, g_b⟩·⟨h_a, h_b⟩` for a linear softmax
/// head `z = W h`, with the gradients taken by central differences in f64 and `g` built by
/// `prediction_error_restricted` on the full vocabulary.
#[test]
fn influence_is_the_gradient_inner_product() {
    let (v, d) = (5usize, 3usize);
    let w: Vec<f64> = (0..v * d).map(|i| ((i * 37 % 11) as f64 - 5.0) / 7.0).collect();
    let hs = [[0.3f32, -1.2, 0.8], [1.1, 0.4, -0.6]];
    let ys = [2usize, 4];
    let probs = |h: &[f32; 3], w: &[f64]| {
        let z: Vec<f64> = (0..v).map(|r| (0..d).map(|c| w[r * d + c] * h[c] as f64).sum()).collect();
        let m = z.iter().cloned().fold(f64::MIN, f64::max);
        let s: f64 = z.iter().map(|x| (x - m).exp()).sum();
        z.iter().map(|x| ((x - m).exp() / s, x - m - s.ln())).collect::<Vec<_>>()
    };
    // Numerical ∇_W log π(y|h).
    let grad = |h: &[f32; 3], y: usize| {
        (0..v * d)
            .map(|k| {
                let (mut wp, mut wm) = (w.clone(), w.clone());
                wp[k] += 1e-5;
                wm[k] -= 1e-5;
                (probs(h, &wp)[y].1 - probs(h, &wm)[y].1) / 2e-5
            })
            .collect::<Vec<f64>>()
    };
    let (ga, gb) = (grad(&hs[0], ys[0]), grad(&hs[1], ys[1]));
    let fd: f64 = ga.iter().zip(&gb).map(|(a, b)| a * b).sum();
    // g = e_y − π on the full vocabulary, via the kernel.
    let q: Vec<f32> = hs.iter().flat_map(|h| probs(h, &w).into_iter().map(|p| p.0 as f32)).collect();
    let mut g = vec![0f32; 2 * v];
    prediction_error_restricted(
        exec(),
        Mat::dense(&q, 2, v).unwrap(),
        &[ys[0] as u32, ys[1] as u32],
        MatMut::dense(&mut g, 2, v).unwrap(),
    )
    .unwrap();
    let h: Vec<f32> = hs.iter().flatten().copied().collect();
    let mut s = [0f32; 1];
    let src = feat(&g[..v], &h[..d], 1, v, d);
    let query = feat(&g[v..], &h[d..], 1, v, d);
    influence_scores(exec(), &src, None, &query, &mut s).unwrap();
    assert!((s[0] as f64 - fd).abs() <= 1e-5 * (1.0 + fd.abs()), "kernel {} vs finite differences {fd}", s[0]);
    assert!(fd.abs() > 1e-3, "the check must not be vacuous");
}

#[test]
fn prediction_error_threshold_eta_reweight() {
    let q = [0.5f32, 0.25, 0.25, 0.0, 0.9, 0.1];
    let mut g = poisoned(6);
    prediction_error_restricted(exec(), Mat::dense(&q, 2, 3).unwrap(), &[0, 2], MatMut::dense(&mut g, 2, 3).unwrap())
        .unwrap();
    assert_eq!(g, [0.5, -0.25, -0.25, 0.0, -0.9, 0.9]);
    let mut g2 = poisoned(6);
    assert_eq!(
        prediction_error_restricted(
            exec(),
            Mat::dense(&q, 2, 3).unwrap(),
            &[0, 3],
            MatMut::dense(&mut g2, 2, 3).unwrap()
        ),
        Err(TmError::TargetOutOfRange { row: 1, target: 3, vocab: 3 })
    );
    let bad = [0.5f32, f32::NAN, 0.25, 0.0, 0.9, 0.1];
    assert_eq!(
        prediction_error_restricted(
            exec(),
            Mat::dense(&bad, 2, 3).unwrap(),
            &[0, 1],
            MatMut::dense(&mut g2, 2, 3).unwrap()
        ),
        Err(TmError::NonFinite { what: "q", index: 1 })
    );
    assert!(matches!(
        prediction_error_restricted(exec(), Mat::dense(&q, 2, 3).unwrap(), &[0], MatMut::dense(&mut g2, 2, 3).unwrap()),
        Err(TmError::LengthMismatch { .. })
    ));
    assert!(untouched(&g2));

    // τ = β·min of the per-response means; empty responses are skipped.
    let s = [1.0f32, 3.0, 0.5, 7.0, -1.0, 5.0];
    assert_eq!(nthr_threshold(&s, &[2, 0, 2, 2], 1.0), Ok(2.0));
    assert_eq!(nthr_threshold(&s, &[2, 0, 2, 2], 0.5), Ok(1.0));
    assert_eq!(rs::nthr_threshold(&s, &[2, 0, 2, 2], 1.0), Some(2.0));
    assert!(matches!(nthr_threshold(&s, &[2, 2], 1.0), Err(TmError::LengthMismatch { .. })));
    assert!(matches!(nthr_threshold(&[], &[0, 0], 1.0), Err(TmError::InvalidArgument(_))));
    assert!(matches!(nthr_threshold(&s, &[6], f32::NAN), Err(TmError::InvalidArgument(_))));
    assert_eq!(
        nthr_threshold(&[1.0, f32::INFINITY], &[2], 1.0),
        Err(TmError::NonFinite { what: "pos_scores", index: 1 })
    );

    assert_eq!(nthr_eta(2, 8), Ok(0.5));
    assert_eq!(nthr_eta(4, 8), Ok(0.0));
    assert!(matches!(nthr_eta(0, 8), Err(TmError::InvalidArgument(_))));
    assert!(matches!(nthr_eta(8, 8), Err(TmError::InvalidArgument(_))));

    let mut adv = [-1.0f32, -1.0, -1.0, -1.0];
    let scores = [3.0f32, 1.0, 2.5, f32::NAN];
    assert_eq!(nthr_reweight(exec(), &mut adv, &scores, &[1, 1, 1, 0], 2.0, 0.5), Ok(2));
    assert_eq!(adv, [-0.5, -1.0, -0.5, -1.0]);
    assert_eq!(
        nthr_reweight(exec(), &mut adv, &scores, &[1, 1, 1, 1], 2.0, 0.5),
        Err(TmError::NonFinite { what: "neg_scores", index: 3 })
    );
    assert!(matches!(
        nthr_reweight(exec(), &mut adv, &scores, &[1; 4], f32::NAN, 0.5),
        Err(TmError::InvalidArgument(_))
    ));
    assert!(matches!(
        nthr_reweight(exec(), &mut adv, &scores[..3], &[1; 4], 1.0, 0.5),
        Err(TmError::LengthMismatch { .. })
    ));
    assert_eq!(adv, [-0.5, -1.0, -0.5, -1.0]);
}

#[test]
fn thr_scores_and_errors() {
    // Two source tokens, two query tokens; query 1 is source 1 itself.
    let (v, d) = (2usize, 2usize);
    let sg = [1.0f32, -1.0, 0.5, 0.5];
    let sh = [1.0f32, 0.0, 0.0, 2.0];
    let qg = [1.0f32, 0.0, 0.5, 0.5];
    let qh = [1.0f32, 1.0, 0.0, 2.0];
    let (src, query) = (feat(&sg, &sh, 2, v, d), feat(&qg, &qh, 2, v, d));
    let adv = [2.0f32, -1.0];
    let mut thr = poisoned(2);
    thr_scores(exec(), &src, None, &query, &adv, None, &mut thr).unwrap();
    // q0: ⟨(1,−1),(1,0)⟩·⟨(1,0),(1,1)⟩ + ⟨(.5,.5),(1,0)⟩·⟨(0,2),(1,1)⟩ = 1·1 + .5·2 = 2 → ×2
    // q1: ⟨(1,−1),(.5,.5)⟩·… = 0 + ⟨(.5,.5),(.5,.5)⟩·⟨(0,2),(0,2)⟩ = .5·4 = 2 → ×(−1)
    assert_eq!(thr, [4.0, -2.0]);
    thr_scores(exec(), &src, None, &query, &adv, Some(&[u32::MAX, 1]), &mut thr).unwrap();
    assert_eq!(thr, [4.0, 0.0]);
    thr_scores(exec(), &src, Some(&[0.5, 2.0]), &query, &adv, None, &mut thr).unwrap();
    assert_eq!(thr, [2.0 * (0.5 + 2.0), -4.0]);

    let mut t2 = poisoned(2);
    assert!(matches!(
        thr_scores(exec(), &src, None, &query, &adv, Some(&[2, 0]), &mut t2),
        Err(TmError::InvalidArgument(_))
    ));
    assert_eq!(
        thr_scores(exec(), &src, None, &query, &[f32::NAN, 0.0], None, &mut t2),
        Err(TmError::NonFinite { what: "adv", index: 0 })
    );
    let bad_h = [1.0f32, 0.0, f32::INFINITY, 2.0];
    assert_eq!(
        influence_scores(exec(), &feat(&sg, &bad_h, 2, v, d), None, &query, &mut t2),
        Err(TmError::NonFinite { what: "src h", index: 2 })
    );
    assert_eq!(
        influence_scores(exec(), &src, Some(&[1.0, f32::NAN]), &query, &mut t2),
        Err(TmError::NonFinite { what: "src_weight", index: 1 })
    );
    let narrow = feat(&qg, &qh, 4, 1, 1);
    assert!(matches!(influence_scores(exec(), &src, None, &narrow, &mut t2), Err(TmError::LengthMismatch { .. })));
    assert!(untouched(&t2));

    // Steering: dominant positive THR amplified by (1 + p), negative weakened; ties at τ are
    // not dominant.
    let mut a = [1.0f32, 1.0, 1.0, 1.0];
    let cfg = ThrCfg { mode: ThrMode::SteerBestGuess { p: 0.5 }, non_dominant: NonDominant::Zero };
    assert_eq!(thr_reweight(exec(), &mut a, &[2.0, -2.0, 1.0, 0.5], 1.0, &cfg), Ok(2));
    assert_eq!(a, [1.5, 0.5, 0.0, 0.0]);
    let mut a = [1.0f32; 2];
    assert_eq!(thr_reweight(exec(), &mut a, &[0.0, 3.0], 1.0, &ThrCfg::default()), Ok(1));
    assert_eq!(a, [1.0, 1.0]); // p = 0, Keep: GRPO
    assert!(matches!(
        thr_reweight(
            exec(),
            &mut a,
            &[0.0, 3.0],
            1.0,
            &ThrCfg { mode: ThrMode::SteerBestGuess { p: f32::NAN }, ..ThrCfg::default() }
        ),
        Err(TmError::InvalidArgument(_))
    ));
    assert_eq!(
        thr_reweight(exec(), &mut a, &[f32::NAN, 3.0], 1.0, &ThrCfg::default()),
        Err(TmError::NonFinite { what: "thr", index: 0 })
    );
    assert!(matches!(
        thr_reweight(exec(), &mut a, &[0.0], 1.0, &ThrCfg::default()),
        Err(TmError::LengthMismatch { .. })
    ));
}
