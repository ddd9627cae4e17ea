//! RMT (`tokenmath_core::seed::rmt`) against the f64 reference, with a finite-difference
//! check of the NTP term's gradient and every error.

use proptest::prelude::*;
use tokenmath_core::policy_loss::BatchShape;
use tokenmath_core::seed::*;
use tokenmath_core::{Exec, TmError};
use tokenmath_reference::seed as rs;
use tokenmath_testutil::{poisoned, untouched};

fn exec() -> Exec {
    Exec::new()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn budget_and_length_reward(step in 0u64..3000, total in 1u64..2000, b0 in 0u32..5000, b_min in 0u32..50,
                                gamma in prop_oneof![Just(0.2f32), 0.01f32..1.0, 1.0f32..1.5],
                                len in 0u32..5000, budget in 1u32..2000, r_max in prop_oneof![Just(1.0f32), -2.0f32..2.0]) {
        let b = rmt_token_budget(step, total, b0, b_min, gamma).unwrap();
        prop_assert_eq!(b as u64, rs::rmt_budget(step, total, b0, b_min, gamma as f64).min(u32::MAX as u64));
        prop_assert!(b >= b_min);
        let r = rmt_length_reward(len, budget, r_max).unwrap();
        prop_assert_eq!(r, rs::rmt_length_reward(len, budget, r_max as f64) as f32);
    }

    #[test]
    fn curriculum_matches_reference(step in 0u64..1200, total in 1u64..1000, t1 in 0.0f32..0.5, dt in 0.0f32..0.5,
                                    a in prop::array::uniform3(0.0f32..1.0), b in prop::array::uniform3(0.0f32..1.0)) {
        prop_assume!(a.iter().any(|&v| v > 0.0) && b.iter().any(|&v| v > 0.0));
        let c = RmtCurriculum { t1_frac: t1, t2_frac: t1 + dt, p1: a, p2: b };
        prop_assume!(c.t2_frac <= 1.0);
        let p = rmt_curriculum_probs(step, total, &c).unwrap();
        let w = rs::rmt_curriculum(step, total, t1 as f64, c.t2_frac as f64, a.map(|v| v as f64), b.map(|v| v as f64));
        for k in 0..3 {
            prop_assert_eq!(p[k], w[k] as f32);
        }
    }

    /// Tiers are the reference's (terciles by sorting); a picked position lies in a non-empty
    /// tier, and a tier whose probability is 0 while others are not is never picked.
    #[test]
    fn tiers_and_picks(
        (rows, cols, ent, mask) in (0usize..5, 0usize..30).prop_flat_map(|(r, c)| (
            Just(r), Just(c),
            prop::collection::vec(prop_oneof![0.0f32..8.0, Just(1.0f32), Just(0.0f32)], r * c),
            prop::collection::vec(prop_oneof![3 => Just(1u8), 1 => Just(0u8)], r * c),
        )),
        u in 0.0f64..1.0, v in 0.0f64..1.0, p in prop::array::uniform3(0.0f32..1.0),
    ) {
        prop_assume!(p.iter().any(|&x| x > 0.0));
        let mut tiers = vec![9u8; rows * cols];
        let th = entropy_tiers(exec(), BatchShape::new(rows, cols), &mask, &ent, (1.0 / 3.0, 2.0 / 3.0), &mut tiers).unwrap();
        prop_assert_eq!(&tiers, &rs::entropy_tiers(&ent, &mask, 1.0 / 3.0, 2.0 / 3.0));
        prop_assert_eq!(th.is_some(), mask.iter().any(|&m| m != 0));
        let pick = rmt_pick_position(&tiers, &p, u, v).unwrap();
        prop_assert_eq!(pick.is_some(), th.is_some());
        if let Some(j) = pick {
            let d = tiers[j] as usize - 1;
            let live_mass: f32 = (0..3).filter(|&k| tiers.contains(&(k as u8 + 1))).map(|k| p[k]).sum();
            prop_assert!(p[d] > 0.0 || live_mass == 0.0, "picked tier {} with probability 0", d);
        }
    }

    /// `L_NTP` and its gradient against the reference, and the gradient against central
    /// differences of the reference loss.
    #[test]
    fn ntp_loss_and_gradient(
        (n, lp, mask, rl) in (0usize..40).prop_flat_map(|n| (
            Just(n),
            prop::collection::vec(prop_oneof![-20.0f32..0.0, Just(0.0f32), Just(-1e-30f32)], n),
            prop::collection::vec(prop_oneof![3 => Just(1u8), 1 => Just(0u8)], n),
            prop::collection::vec(prop_oneof![1 => Just(1u8), 3 => Just(0u8)], n),
        )),
    ) {
        let mut g = poisoned(n);
        let l = ntp_masked_loss(exec(), BatchShape::new(1, n), &mask, &rl, &lp, &mut g).unwrap();
        let (wl, wg) = rs::ntp_loss(&mask, &rl, &lp);
        prop_assert!((l as f64 - wl).abs() <= 1e-6 * (1.0 + wl.abs()));
        for j in 0..n {
            prop_assert_eq!(g[j], wg[j] as f32);
            let h = 1e-3;
            let f = |d: f64| {
                let mut x = lp.clone();
                x[j] = (lp[j] as f64 + d) as f32;
                rs::ntp_loss(&mask, &rl, &x).0
            };
            let fd = (f(h) - f(-h)) / (2.0 * h);
            prop_assert!((g[j] as f64 - fd).abs() <= 1e-3 * (1.0 + fd.abs()), "j {}: grad {} fd {}", j, g[j], fd);
        }
    }
}

fn close3(got: [f32; 3], want: [f32; 3]) {
    assert!(got.iter().zip(&want).all(|(g, w)| (g - w).abs() <= 2.0 * f32::EPSILON), "{got:?} vs {want:?}");
}

#[test]
fn rmt_values_and_errors() {
    // Paper defaults: B_0 = 800, γ = 0.2 ⇒ 800 at the start, 160 at the end.
    assert_eq!(rmt_token_budget(0, 100, 800, 1, 0.2), Ok(800));
    assert_eq!(rmt_token_budget(100, 100, 800, 1, 0.2), Ok(160));
    assert_eq!(rmt_token_budget(100, 100, 3, 2, 0.2), Ok(2));
    assert!(matches!(rmt_token_budget(1, 0, 800, 1, 0.2), Err(TmError::InvalidArgument(_))));
    assert!(matches!(rmt_token_budget(1, 10, 800, 1, 0.0), Err(TmError::InvalidArgument(_))));
    assert_eq!(rmt_length_reward(50, 100, 1.0), Ok(0.5));
    assert_eq!(rmt_length_reward(150, 100, 1.0), Ok(0.5));
    assert_eq!(rmt_length_reward(200, 100, 1.0), Ok(0.0));
    assert_eq!(rmt_length_reward(201, 100, 1.0), Ok(0.0));
    assert!(matches!(rmt_length_reward(1, 0, 1.0), Err(TmError::InvalidArgument(_))));
    assert!(matches!(rmt_length_reward(1, 1, f32::NAN), Err(TmError::InvalidArgument(_))));

    let c = RmtCurriculum::default();
    assert_eq!(rmt_curriculum_probs(0, 100, &c), Ok([0.6, 0.3, 0.1]));
    close3(rmt_curriculum_probs(50, 100, &c).unwrap(), [0.35, 0.3, 0.35]);
    assert_eq!(rmt_curriculum_probs(70, 100, &c), Ok([0.1, 0.3, 0.6]));
    for bad in [
        RmtCurriculum { t1_frac: 0.8, ..c },
        RmtCurriculum { t2_frac: 1.5, ..c },
        RmtCurriculum { p1: [0.0; 3], ..c },
        RmtCurriculum { p2: [0.5, -0.1, 0.6], ..c },
        RmtCurriculum { t1_frac: f32::NAN, ..c },
    ] {
        assert!(matches!(rmt_curriculum_probs(1, 10, &bad), Err(TmError::InvalidArgument(_))), "{bad:?}");
    }
    assert!(matches!(rmt_curriculum_probs(1, 0, &c), Err(TmError::InvalidArgument(_))));

    // Empty tiers: their mass goes to the others in proportion.
    close3(rmt_tier_probs(&[0.6, 0.3, 0.1], &[5, 0, 5]).unwrap().unwrap(), [0.6 / 0.7, 0.0, 0.1 / 0.7]);
    assert_eq!(rmt_tier_probs(&[0.0, 0.0, 1.0], &[2, 1, 0]), Ok(Some([0.5, 0.5, 0.0])));
    assert_eq!(rmt_tier_probs(&[0.6, 0.3, 0.1], &[0, 0, 0]), Ok(None));
    // Picks: tiers [easy, hard, none, hard]; u_tier in the hard mass picks a hard token.
    let tiers = [TIER_EASY, TIER_HARD, TIER_NONE, TIER_HARD];
    assert_eq!(rmt_pick_position(&tiers, &[0.5, 0.25, 0.25], 0.1, 0.9), Ok(Some(0)));
    assert_eq!(rmt_pick_position(&tiers, &[0.5, 0.25, 0.25], 0.9, 0.9), Ok(Some(3)));
    assert_eq!(rmt_pick_position(&tiers, &[0.5, 0.25, 0.25], 0.9, 0.0), Ok(Some(1)));
    assert_eq!(rmt_pick_position(&[0, 0], &[0.5, 0.25, 0.25], 0.9, 0.0), Ok(None));
    assert!(matches!(rmt_pick_position(&tiers, &[0.5, 0.25, 0.25], 1.0, 0.0), Err(TmError::InvalidArgument(_))));
    assert!(matches!(rmt_pick_position(&[4], &[0.5, 0.25, 0.25], 0.5, 0.0), Err(TmError::InvalidArgument(_))));

    let mut out = [7u8; 4];
    let sh = BatchShape::new(1, 4);
    assert!(matches!(
        entropy_tiers(exec(), sh, &[1; 4], &[1.0; 4], (0.7, 0.3), &mut out),
        Err(TmError::InvalidArgument(_))
    ));
    assert_eq!(
        entropy_tiers(exec(), sh, &[1; 4], &[1.0, f32::NAN, 0.0, 2.0], (1.0 / 3.0, 2.0 / 3.0), &mut out),
        Err(TmError::NonFinite { what: "entropy", index: 1 })
    );
    assert_eq!(out, [7; 4]);

    let mut r = poisoned(2);
    rmt_combined_reward(&[1.0, 0.0], &[0.5, 1.0], 0.1, &mut r).unwrap();
    assert_eq!(r, [(0.9f64 + 0.1 * 0.5) as f32, 0.1f32 as f64 as f32]);
    let mut r = poisoned(2);
    assert_eq!(
        rmt_combined_reward(&[1.0, f32::NAN], &[0.5, 1.0], 0.1, &mut r),
        Err(TmError::NonFinite { what: "match01", index: 1 })
    );
    assert!(matches!(
        rmt_combined_reward(&[1.0, 0.0], &[0.5, 1.0], f32::INFINITY, &mut r),
        Err(TmError::InvalidArgument(_))
    ));
    assert!(untouched(&r));

    let mut g = poisoned(3);
    assert_eq!(
        ntp_masked_loss(exec(), BatchShape::new(1, 3), &[1, 1, 1], &[0, 0, 1], &[0.0, f32::NAN, f32::NAN], &mut g),
        Err(TmError::NonFinite { what: "logp_target", index: 1 })
    );
    assert!(untouched(&g));
    assert_eq!(ntp_masked_loss(exec(), BatchShape::new(1, 3), &[1, 1, 1], &[1, 1, 1], &[0.0; 3], &mut g), Ok(0.0));
    assert_eq!(g, [0.0; 3]);
    assert_eq!(
        ntp_masked_loss(
            exec(),
            BatchShape::new(1, 3),
            &[1, 1, 0],
            &[0, 0, 1],
            &[f32::NEG_INFINITY, -1.0, f32::NAN],
            &mut g
        ),
        Ok(f32::INFINITY)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The NTP loss's vectorised builds (AVX2, AVX-512) against the portable one, bitwise: loss,
    /// gradient, and the error with its position, with `−∞` and NaN log-probabilities at RL
    /// and padding positions (not read) and, when `bad`, at an NTP position.
    #[test]
    fn ntp_loss_backends_bitwise(n in 0usize..400, seed in any::<u64>(), bad in any::<bool>()) {
        let mut rng = tokenmath_testutil::Rng::new(seed);
        let mask: Vec<u8> = (0..n).map(|_| !rng.next_u64().is_multiple_of(5) as u8).collect();
        let rl: Vec<u8> = (0..n).map(|_| rng.next_u64().is_multiple_of(3) as u8).collect();
        let mut lp: Vec<f32> = (0..n)
            .map(|i| match i % 13 {
                4 if mask[i] == 0 || rl[i] != 0 => f32::NAN,
                7 => f32::NEG_INFINITY,
                _ => -4.0 * rng.symmetric().abs(),
            })
            .collect();
        if bad {
            if let Some(j) = (0..n).rev().find(|&j| mask[j] != 0 && rl[j] == 0) {
                lp[j] = f32::INFINITY;
            }
        }
        let run = |e: Exec| {
            let mut g = poisoned(n);
            let l = ntp_masked_loss(e, BatchShape::new(1, n), &mask, &rl, &lp, &mut g);
            (l.map(|l| tokenmath_testutil::nan_bits(&[l])), tokenmath_testutil::nan_bits(&g))
        };
        let want = run(Exec::new().with_backend(tokenmath_core::Backend::Portable));
        for b in tokenmath_core::Backend::all_supported() {
            prop_assert_eq!(run(Exec::new().with_backend(b)), want.clone(), "{}", b.name());
        }
    }
}
