//! Exploration bonuses (`token-rewards.md` §5) against the f64 oracles, the derived
//! identities of E3B, the merge of running moments across ranks, and hostile inputs.

use proptest::prelude::*;
use tokenmath_core::exploration::{
    self as ex, AssembleCfg, Combine, CountTable, E3b, E3bCfg, EpisodicForm, MomentsCompat, RewardNorm, RunningMoments,
};
use tokenmath_core::{Exec, TmError};
use tokenmath_reference::exploration as oracle;
use tokenmath_testutil::{bits, poisoned, rand_f32, untouched, POISON};

/// A hostile `f32`: ordinary values, ±0, denormals, ±inf, NaN, huge magnitudes.
fn hostile() -> impl Strategy<Value = f32> {
    prop_oneof![
        40 => -4.0f32..4.0,
        2 => Just(0.0f32),
        2 => Just(-0.0f32),
        2 => (1u32..0x0080_0000).prop_map(f32::from_bits),
        2 => (1u32..0x0080_0000).prop_map(|b| -f32::from_bits(b)),
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
        1 => Just(f32::NEG_INFINITY),
        1 => -1e30f32..1e30,
    ]
}

fn first_non_finite(x: &[f32]) -> Option<usize> {
    x.iter().position(|v| !v.is_finite())
}

// ---------------------------------------------------------------------------------------
// Counts

#[test]
fn count_bonuses_match_the_definitions() {
    assert_eq!(ex::count_bonus_global(1), Ok(1.0));
    assert_eq!(ex::count_bonus_global(4), Ok(0.5));
    assert_eq!(ex::count_bonus_global(u64::MAX).unwrap(), (1.0 / (u64::MAX as f64).sqrt()) as f32);
    assert!(matches!(ex::count_bonus_global(0), Err(TmError::InvalidArgument(_))));
    assert_eq!(ex::count_bonus_episodic_indicator(1), Ok(1.0));
    assert_eq!(ex::count_bonus_episodic_indicator(2), Ok(0.0));
    assert!(ex::count_bonus_episodic_indicator(0).is_err());
    for n in [1u64, 2, 3, 7, 1000, 1 << 40] {
        let got = ex::count_bonus_global(n).unwrap() as f64;
        assert!((got - oracle::count_bonus_global(n)).abs() <= 6e-8 * got, "n = {n}");
    }

    let g = [1u64, 4, 9, 16];
    let e = [1u64, 1, 2, 1];
    let mut out = poisoned(4);
    ex::count_bonuses(Some(&g), Some(&e), EpisodicForm::FirstVisit, &mut out).unwrap();
    assert_eq!(out, [1.0, 0.5, 0.0, 0.25]);
    ex::count_bonuses(Some(&g), None, EpisodicForm::FirstVisit, &mut out).unwrap();
    assert_eq!(out, [1.0, 0.5, 1.0 / 3.0, 0.25]);
    ex::count_bonuses(None, Some(&[1, 4, 1, 16]), EpisodicForm::InvSqrt, &mut out).unwrap();
    assert_eq!(out, [1.0, 0.5, 1.0, 0.25]);

    let mut out = poisoned(4);
    assert!(matches!(
        ex::count_bonuses(None, None, EpisodicForm::FirstVisit, &mut out),
        Err(TmError::InvalidArgument(_))
    ));
    assert!(matches!(
        ex::count_bonuses(Some(&[1, 0, 1, 1]), None, EpisodicForm::FirstVisit, &mut out),
        Err(TmError::InvalidArgument(_))
    ));
    assert!(matches!(
        ex::count_bonuses(Some(&g[..3]), None, EpisodicForm::FirstVisit, &mut out),
        Err(TmError::LengthMismatch { what: "n_global", .. })
    ));
    assert!(untouched(&out));
    ex::count_bonuses(Some(&[]), None, EpisodicForm::FirstVisit, &mut []).unwrap();
}

#[test]
fn count_table_counts_clears_merges_and_refuses_overflow() {
    let (mut k, mut c) = ([0u64; 8], [0u64; 8]);
    let mut t = CountTable::new(&mut k, &mut c).unwrap();
    let mut out = [0u64; 5];
    // Key 0 is an ordinary key (emptiness is a zero count).
    t.visit(&[7, 0, 7, 7, 0], &mut out).unwrap();
    assert_eq!(out, [1, 1, 2, 3, 2]);
    assert_eq!((t.len(), t.get(7), t.get(0), t.get(99)), (2, 3, 2, 0));
    // Room for 6 more visits (len 2 + 6 = 8), not 7; a refused batch changes nothing.
    let mut out7 = [0u64; 7];
    assert!(matches!(t.visit(&[1, 2, 3, 4, 5, 6, 8], &mut out7), Err(TmError::InvalidArgument(_))));
    assert_eq!((t.len(), t.get(7)), (2, 3));
    let mut out6 = [0u64; 6];
    t.visit(&[1, 2, 3, 4, 5, 6], &mut out6).unwrap();
    assert_eq!(out6, [1; 6]);
    assert_eq!(t.len(), 8);
    // Full table: even a known key is refused (the conservative room check).
    assert!(t.visit(&[7], &mut [0]).is_err());
    t.clear();
    assert!(t.is_empty());
    t.visit(&[7], &mut out[..1]).unwrap();
    assert_eq!(out[0], 1);

    let (mut k2, mut c2) = ([0u64; 8], [0u64; 8]);
    let mut other = CountTable::new(&mut k2, &mut c2).unwrap();
    other.visit(&[7, 9, 9], &mut [0; 3]).unwrap();
    t.merge_from(&other).unwrap();
    assert_eq!((t.get(7), t.get(9), t.len()), (2, 2, 2));

    assert!(CountTable::new(&mut [0; 6], &mut [0; 6]).is_err());
    assert!(CountTable::new(&mut [0; 4], &mut [0; 2]).is_err());
    // Existing storage is re-read.
    let (mut k3, mut c3) = ([0u64; 4], [0u64; 4]);
    CountTable::new(&mut k3, &mut c3).unwrap().visit(&[5, 6], &mut [0; 2]).unwrap();
    assert_eq!(CountTable::new(&mut k3, &mut c3).unwrap().get(6), 1);
}

proptest! {
    #[test]
    fn count_table_equals_a_map(keys in proptest::collection::vec(0u64..12, 0..40)) {
        let (mut k, mut c) = ([0u64; 64], [0u64; 64]);
        let mut t = CountTable::new(&mut k, &mut c).unwrap();
        let mut out = vec![0u64; keys.len()];
        t.visit(&keys, &mut out).unwrap();
        let mut map = std::collections::HashMap::new();
        for (i, key) in keys.iter().enumerate() {
            let n = map.entry(*key).or_insert(0u64);
            *n += 1;
            prop_assert_eq!(out[i], *n);
        }
        prop_assert_eq!(t.len(), map.len());
    }
}

// ---------------------------------------------------------------------------------------
// E3B

/// `|b − b_ref| ≤ 8·(t + 1)·(d + 1)·2⁻²⁴·‖φ‖²/λ`: the `f32` inverse carries one rounding per
/// entry and step, each of size at most `(d + 1)·2⁻²⁴·max|C⁻¹|` with `max|C⁻¹| ≤ 1/λ`,
/// and `b` reads it through `‖φ‖²`.
fn e3b_tol(t: usize, d: usize, phi: &[f32], ridge: f32) -> f64 {
    let n2: f64 = phi.iter().map(|&v| (v as f64).powi(2)).sum();
    8.0 * (t + 1) as f64 * (d + 1) as f64 * f32::EPSILON as f64 / 2.0 * n2 / ridge as f64
}

fn run_e3b(cfg: E3bCfg, d: usize, phis: &[Vec<f32>]) -> (Vec<f32>, Vec<f32>) {
    let mut c = vec![0.0f32; d * d];
    let mut e = E3b::new(cfg, d, &mut c).unwrap();
    let mut u = poisoned(d);
    let b = phis.iter().map(|p| e.bonus_and_update(p, &mut u).unwrap()).collect();
    let inv = e.c_inv().to_vec();
    (b, inv)
}

#[test]
fn e3b_matches_the_explicit_inverse() {
    let mut worst = 0.0f64;
    for d in [1usize, 2, 3, 7, 8, 9, 17, 32] {
        for ridge in [0.1f32, 1.0] {
            let steps = 24;
            let phis: Vec<Vec<f32>> = (0..steps).map(|t| rand_f32(d, (d * 1000 + t) as u64, 1.0)).collect();
            let cfg = E3bCfg { ridge, zero_first_step: false, ..E3bCfg::default() };
            let (b, inv) = run_e3b(cfg, d, &phis);
            let want = oracle::e3b_bonuses_explicit(&phis, d, ridge);
            for t in 0..steps {
                let tol = e3b_tol(t, d, &phis[t], ridge);
                let err = (b[t] as f64 - want[t]).abs();
                worst = worst.max(err / tol);
                assert!(err <= tol, "d {d} λ {ridge} step {t}: got {:e}, want {:e} (tol {tol:e})", b[t], want[t]);
                assert!(b[t] >= 0.0);
            }
            let inv_ref = oracle::e3b_inverse_explicit(&phis, d, ridge);
            for (i, (&g, &w)) in inv.iter().zip(&inv_ref).enumerate() {
                let tol = 8.0 * (steps + 1) as f64 * (d + 1) as f64 * f32::EPSILON as f64 / ridge as f64;
                assert!((g as f64 - w).abs() <= tol, "d {d} entry {i}: {g:e} vs {w:e}");
            }
            // Exactly symmetric.
            for i in 0..d {
                for j in 0..d {
                    assert_eq!(inv[i * d + j].to_bits(), inv[j * d + i].to_bits());
                }
            }
        }
    }
    eprintln!("e3b: worst error / tolerance = {worst:.3e}");
}

#[test]
fn e3b_first_step_reports_zero_but_updates() {
    let d = 4;
    let phis: Vec<Vec<f32>> = (0..3).map(|t| rand_f32(d, 77 + t, 1.0)).collect();
    let (b0, inv0) = run_e3b(E3bCfg::default(), d, &phis);
    let (b1, inv1) = run_e3b(E3bCfg { zero_first_step: false, ..E3bCfg::default() }, d, &phis);
    assert_eq!(b0[0], 0.0);
    assert!(b1[0] > 0.0);
    assert_eq!(bits(&b0[1..]), bits(&b1[1..]));
    assert_eq!(bits(&inv0), bits(&inv1));
}

#[test]
fn e3b_derived_identities() {
    // A repeated feature gives b, b/(1+b), b/(1+2b), …  (d = 1 and d = 5).
    for d in [1usize, 5] {
        let phi = rand_f32(d, 5, 1.0);
        let cfg = E3bCfg { zero_first_step: false, ..E3bCfg::default() };
        let (b, _) = run_e3b(cfg, d, &vec![phi.clone(); 10]);
        let b0 = b[0] as f64;
        for (k, &bk) in b.iter().enumerate() {
            let want = b0 / (1.0 + k as f64 * b0);
            // b_k's own bound, plus b_0's carried through want (d want/d b_0 ≤ 1).
            let tol = e3b_tol(k, d, &phi, cfg.ridge) + e3b_tol(0, d, &phi, cfg.ridge);
            assert!((bk as f64 - want).abs() <= tol, "d {d} k {k}: {bk} vs {want}");
        }
        // After one update φᵀC⁻¹φ = b/(1+b).
        let mut c = vec![0.0f32; d * d];
        let mut e = E3b::new(cfg, d, &mut c).unwrap();
        let mut u = vec![0.0f32; d];
        let q = rand_f32(d, 6, 1.0);
        e.bonus_and_update(&phi, &mut u).unwrap();
        let b1 = e.bonus_and_update(&q, &mut u).unwrap() as f64;
        let inv = e.c_inv();
        let quad: f64 =
            (0..d).map(|i| (0..d).map(|j| q[i] as f64 * inv[i * d + j] as f64 * q[j] as f64).sum::<f64>()).sum();
        assert!((quad - b1 / (1.0 + b1)).abs() <= 1e-5 * (1.0 + b1), "d {d}: {quad} vs {}", b1 / (1.0 + b1));
        // Reset restores (1/λ)·I.
        e.reset();
        assert_eq!(e.steps(), 0);
        assert!(e.c_inv().iter().enumerate().all(|(i, &v)| v == if i % (d + 1) == 0 { 10.0 } else { 0.0 }));
    }
}

#[test]
fn e3b_d1_closed_form() {
    // d = 1: b_t = φ_t²/(λ + Σ_{s<t} φ_s²).
    let xs = [0.5f32, -2.0, 1e-3, 3.0, 0.0, 1.5];
    let phis: Vec<Vec<f32>> = xs.iter().map(|&x| vec![x]).collect();
    let (b, _) = run_e3b(E3bCfg { zero_first_step: false, ..E3bCfg::default() }, 1, &phis);
    let mut acc = 0.1f64;
    for (t, &x) in xs.iter().enumerate() {
        let want = (x as f64).powi(2) / acc;
        assert!(
            (b[t] as f64 - want).abs() <= e3b_tol(t, 1, &phis[t], E3bCfg::default().ridge),
            "t {t}: {} vs {want}",
            b[t]
        );
        acc += (x as f64).powi(2);
    }
}

#[test]
fn e3b_symmetrises_a_loaded_asymmetric_inverse() {
    let d = 3;
    let cfg = E3bCfg { sym_every: 1, ..E3bCfg::default() };
    let mut c = vec![10.0f32, 0.5, 0.0, 0.25, 10.0, 0.0, 0.0, 0.0, 10.0];
    let mut u = vec![0.0f32; d];
    ex::e3b_step(&cfg, d, &mut c, &[0.0, 0.0, 0.0], 0, &mut u).unwrap();
    assert_eq!(c[1], c[3]);
    assert_eq!(c[1], 0.375);
    // sym_every = 0 never symmetrises.
    let mut c = vec![10.0f32, 0.5, 0.0, 0.25, 10.0, 0.0, 0.0, 0.0, 10.0];
    ex::e3b_step(&E3bCfg { sym_every: 0, ..cfg }, d, &mut c, &[0.0; 3], 63, &mut u).unwrap();
    assert_eq!((c[1], c[3]), (0.5, 0.25));
}

#[test]
fn e3b_batch_equals_single_for_every_thread_count() {
    let (n, d) = (7usize, 9usize);
    let cfg = E3bCfg::default();
    let mut single = vec![0.0f32; n * d * d];
    for k in 0..n {
        ex::e3b_reset(&cfg, d, &mut single[k * d * d..(k + 1) * d * d]).unwrap();
    }
    let mut batch_by_threads: Vec<Vec<f32>> = (0..4).map(|_| single.clone()).collect();
    let mut u = vec![0.0f32; d];
    for step in 0..5u64 {
        let phi = rand_f32(n * d, 100 + step, 1.0);
        // Environments at different points of their episodes.
        let steps: Vec<u64> = (0..n as u64).map(|k| if k % 3 == 0 { step } else { step + k }).collect();
        let mut want = vec![0.0f32; n];
        for k in 0..n {
            want[k] = ex::e3b_step(
                &cfg,
                d,
                &mut single[k * d * d..(k + 1) * d * d],
                &phi[k * d..(k + 1) * d],
                steps[k],
                &mut u,
            )
            .unwrap();
        }
        for (ti, c) in batch_by_threads.iter_mut().enumerate() {
            let exec = Exec::new().with_threads(ti + 1);
            let mut scratch = poisoned(n * d);
            let mut b = poisoned(n);
            ex::e3b_step_batch(&exec, &cfg, d, c, &phi, &steps, &mut scratch, &mut b).unwrap();
            assert_eq!(bits(&b), bits(&want), "threads {}", ti + 1);
            assert_eq!(bits(c), bits(&single), "threads {}", ti + 1);
        }
    }
}

#[test]
fn e3b_rejects_bad_input_and_changes_nothing() {
    let d = 4;
    let cfg = E3bCfg::default();
    let mut c = vec![0.0f32; d * d];
    ex::e3b_reset(&cfg, d, &mut c).unwrap();
    let before = bits(&c);
    let mut u = vec![0.0f32; d];
    let mut bad = [0.1f32, 0.2, f32::NAN, 0.3];
    assert_eq!(ex::e3b_step(&cfg, d, &mut c, &bad, 0, &mut u), Err(TmError::NonFinite { what: "phi", index: 2 }));
    bad[2] = f32::NEG_INFINITY;
    assert!(matches!(ex::e3b_step(&cfg, d, &mut c, &bad, 0, &mut u), Err(TmError::NonFinite { .. })));
    // Finite but overflowing: b = ‖φ‖²/λ = inf.
    assert!(matches!(ex::e3b_step(&cfg, d, &mut c, &[1e30; 4], 0, &mut u), Err(TmError::NonFinite { .. })));
    assert!(matches!(ex::e3b_step(&cfg, d, &mut c, &[1e19, 0.0, 0.0, 0.0], 0, &mut u), Err(TmError::NonFinite { .. })));
    assert_eq!(bits(&c), before);
    for ridge in [0.0f32, -1.0, f32::NAN, f32::INFINITY, 1e-45] {
        let bad_cfg = E3bCfg { ridge, ..cfg };
        assert!(matches!(ex::e3b_reset(&bad_cfg, d, &mut c), Err(TmError::InvalidArgument(_))), "ridge {ridge}");
        assert!(ex::e3b_step(&bad_cfg, d, &mut c, &[0.0; 4], 0, &mut u).is_err());
    }
    assert!(matches!(ex::e3b_reset(&cfg, 0, &mut []), Err(TmError::InvalidArgument(_))));
    assert!(matches!(ex::e3b_reset(&cfg, d, &mut c[..15]), Err(TmError::LengthMismatch { what: "c_inv", .. })));
    assert!(matches!(ex::e3b_reset(&cfg, usize::MAX, &mut c), Err(TmError::SizeOverflow { .. })));
    assert!(matches!(
        ex::e3b_step(&cfg, d, &mut c, &[0.0; 3], 0, &mut u),
        Err(TmError::LengthMismatch { what: "phi", .. })
    ));
    assert!(matches!(
        ex::e3b_step(&cfg, d, &mut c, &[0.0; 4], 0, &mut u[..3]),
        Err(TmError::LengthMismatch { what: "scratch", .. })
    ));
    assert_eq!(bits(&c), before);

    // Batch: one bad environment (the second) leaves every inverse and every bonus unchanged.
    let n = 3;
    let mut cs = vec![0.0f32; n * d * d];
    for k in 0..n {
        ex::e3b_reset(&cfg, d, &mut cs[k * d * d..(k + 1) * d * d]).unwrap();
    }
    let before = bits(&cs);
    let mut phi = rand_f32(n * d, 3, 1.0);
    phi[d + 1] = f32::INFINITY;
    let mut b = poisoned(n);
    let mut s = vec![0.0f32; n * d];
    for threads in [1, 2, 3] {
        let exec = Exec::new().with_threads(threads);
        let r = ex::e3b_step_batch(&exec, &cfg, d, &mut cs, &phi, &[0; 3], &mut s, &mut b);
        assert_eq!(r, Err(TmError::NonFinite { what: "phi", index: 1 }));
        assert_eq!(bits(&cs), before);
        assert!(untouched(&b));
    }
    assert!(ex::e3b_step_batch(&Exec::new(), &cfg, d, &mut cs, &phi, &[0; 2], &mut s, &mut b).is_err());
    // An empty batch is valid.
    ex::e3b_step_batch(&Exec::new(), &cfg, d, &mut [], &[], &[], &mut [], &mut []).unwrap();
}

proptest! {
    /// Hostile features: an error exactly when some φ is not finite or the bonus overflows;
    /// otherwise a finite, non-negative bonus, a finite symmetric inverse, and the state
    /// untouched on error.
    #[test]
    fn e3b_hostile_features(d in 1usize..6, phis in proptest::collection::vec(proptest::collection::vec(hostile(), 6), 1..6)) {
        let cfg = E3bCfg::default();
        let mut c = vec![0.0f32; d * d];
        ex::e3b_reset(&cfg, d, &mut c).unwrap();
        let mut u = vec![0.0f32; d];
        for (t, p) in phis.iter().enumerate() {
            let p = &p[..d];
            let before = bits(&c);
            match ex::e3b_step(&cfg, d, &mut c, p, t as u64, &mut u) {
                Ok(b) => {
                    prop_assert!(first_non_finite(p).is_none());
                    prop_assert!(b.is_finite() && b >= 0.0);
                    prop_assert!(c.iter().all(|v| v.is_finite()));
                    for i in 0..d { for j in 0..d { prop_assert_eq!(c[i*d+j].to_bits(), c[j*d+i].to_bits()); } }
                }
                Err(TmError::NonFinite { .. }) => prop_assert_eq!(bits(&c), before),
                Err(e) => prop_assert!(false, "unexpected {e:?}"),
            }
            if let Some(i) = first_non_finite(p) {
                prop_assert_eq!(ex::e3b_step(&cfg, d, &mut c, p, 0, &mut u), Err(TmError::NonFinite { what: "phi", index: i }));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// RND / NovelD / combination

#[test]
fn rnd_error_matches_the_reference_for_every_thread_count() {
    for (rows, dim) in [(0usize, 3usize), (1, 1), (5, 0), (9, 17), (33, 64)] {
        let p = rand_f32(rows * dim, 1, 3.0);
        let t = rand_f32(rows * dim, 2, 3.0);
        let mut first = None;
        for threads in [1, 2, 3, 8] {
            let mut out = poisoned(rows);
            ex::rnd_error(&Exec::new().with_threads(threads), dim, &p, &t, &mut out).unwrap();
            for r in 0..rows {
                let want = oracle::rnd_error(&p[r * dim..(r + 1) * dim], &t[r * dim..(r + 1) * dim]);
                assert!((out[r] as f64 - want).abs() <= 6e-8 * want, "row {r}");
            }
            let b = bits(&out);
            assert_eq!(first.get_or_insert(b.clone()), &b);
        }
    }
    // No overflow or underflow for extreme finite values.
    let mut out = [0.0f32];
    for threads in [1, 2] {
        let mut two = poisoned(2);
        let r = ex::rnd_error(
            &Exec::new().with_threads(threads),
            2,
            &[1.0, 0.0, 3e38, -3e38],
            &[0.0, 0.0, -3e38, 3e38],
            &mut two,
        );
        assert!(matches!(r, Err(TmError::NonFinite { index: 1, .. })), "{r:?}");
        assert!(untouched(&two));
    }
    ex::rnd_error(&Exec::new(), 2, &[1e38, 0.0], &[-1e38, 0.0], &mut out).unwrap();
    assert_eq!(out[0], 2e38);
    ex::rnd_error(&Exec::new(), 2, &[1e-45, 0.0], &[0.0, 0.0], &mut out).unwrap();
    assert_eq!(out[0], 1e-45);
    let mut out = poisoned(1);
    assert_eq!(
        ex::rnd_error(&Exec::new(), 2, &[1.0, f32::NAN], &[0.0, 0.0], &mut out),
        Err(TmError::NonFinite { what: "pred", index: 1 })
    );
    assert!(matches!(ex::rnd_error(&Exec::new(), 2, &[1.0], &[0.0], &mut out), Err(TmError::LengthMismatch { .. })));
    assert!(untouched(&out));
}

#[test]
fn noveld_and_combine_match_the_definitions() {
    let next = [1.0f32, 0.5, 0.0, 3.0];
    let curr = [2.0f32, 1.0, 1.0, 10.0];
    let mut out = poisoned(4);
    ex::noveld_bonus(&next, &curr, 0.1, &mut out).unwrap();
    for i in 0..4 {
        assert_eq!(out[i] as f64, oracle::noveld_bonus(next[i], curr[i], 0.1) as f32 as f64);
    }
    assert_eq!(out, [0.8, 0.4, 0.0, 2.0]);
    ex::noveld_bonus(&next, &curr, 0.0, &mut out).unwrap();
    assert_eq!(out, next);
    let mut out = poisoned(4);
    for a in [-0.1f32, f32::NAN, f32::INFINITY] {
        assert!(matches!(ex::noveld_bonus(&next, &curr, a, &mut out), Err(TmError::InvalidArgument(_))));
    }
    assert!(matches!(
        ex::noveld_bonus(&next, &[0.0, f32::NAN, 0.0, 0.0], 0.1, &mut out),
        Err(TmError::NonFinite { .. })
    ));
    assert!(matches!(ex::noveld_bonus(&next, &[0.0, -1.0, 0.0, 0.0], 0.1, &mut out), Err(TmError::InvalidArgument(_))));
    assert!(untouched(&out));

    let ep = [1.0f32, 0.0, 0.5, 2.0];
    let gl = [0.5f32, 3.0, 0.5, 0.25];
    let mut out = poisoned(4);
    ex::combine_bonuses(&ep, &gl, Combine::default(), &mut out).unwrap();
    assert_eq!(out, [0.5, 0.0, 0.25, 0.5]);
    ex::combine_bonuses(&ep, &gl, Combine::Add { coeff: 1.0 }, &mut out).unwrap();
    assert_eq!(out, [1.5, 3.0, 1.0, 2.25]);
    ex::combine_bonuses(&ep, &gl, Combine::Add { coeff: 2.0 }, &mut out).unwrap();
    assert_eq!(out, [2.0, 6.0, 1.5, 2.5]);
    let mut out = poisoned(1);
    assert_eq!(
        ex::combine_bonuses(&[3e38], &[3e38], Combine::Mult, &mut out),
        Err(TmError::NonFinite { what: "out", index: 0 })
    );
    assert!(matches!(
        ex::combine_bonuses(&[1.0], &[1.0], Combine::Add { coeff: f32::NAN }, &mut out),
        Err(TmError::InvalidArgument(_))
    ));
    assert!(matches!(
        ex::combine_bonuses(&[f32::INFINITY], &[1.0], Combine::Mult, &mut out),
        Err(TmError::NonFinite { what: "episodic", .. })
    ));
    assert!(untouched(&out));
}

proptest! {
    #[test]
    fn noveld_combine_hostile(xs in proptest::collection::vec((hostile(), hostile()), 0..12), alpha in 0.0f32..2.0) {
        let (a, b): (Vec<f32>, Vec<f32>) = xs.into_iter().unzip();
        let mut out = poisoned(a.len());
        let bad = first_non_finite(&a).or(first_non_finite(&b));
        let negative = a.iter().chain(&b).any(|&v| v < 0.0);
        match ex::noveld_bonus(&a, &b, alpha, &mut out) {
            Ok(()) => {
                prop_assert!(bad.is_none() && !negative);
                for i in 0..a.len() {
                    prop_assert_eq!(out[i], oracle::noveld_bonus(a[i], b[i], alpha) as f32);
                    prop_assert!(out[i] >= 0.0 && out[i] <= a[i].max(0.0));
                }
            }
            Err(TmError::NonFinite { .. }) => { prop_assert!(bad.is_some()); prop_assert!(untouched(&out)); }
            Err(TmError::InvalidArgument(_)) => { prop_assert!(negative); prop_assert!(untouched(&out)); }
            Err(e) => prop_assert!(false, "unexpected {e:?}"),
        }
        let mut out = poisoned(a.len());
        match ex::combine_bonuses(&a, &b, Combine::Mult, &mut out) {
            Ok(()) => {
                for i in 0..a.len() { prop_assert_eq!(out[i], (a[i] as f64 * b[i] as f64) as f32); }
            }
            Err(_) => prop_assert!(untouched(&out)),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Running moments and assembly

#[test]
fn assembly_matches_the_reference_for_every_mode() {
    let batches: Vec<(Vec<f32>, Vec<f32>)> = (0..4)
        .map(|k| (rand_f32(12, 10 + k, 1.0), rand_f32(12, 20 + k, 0.3).iter().map(|v| v.abs()).collect()))
        .collect();
    for norm in [RewardNorm::None, RewardNorm::Int, RewardNorm::Ext, RewardNorm::All] {
        for clip in [false, true] {
            for use_extrinsic in [true, false] {
                if norm == RewardNorm::Ext && !use_extrinsic {
                    continue;
                }
                let cfg = AssembleCfg { norm, clip, use_extrinsic, intrinsic_coef: 2.5, ..AssembleCfg::default() };
                let mut rm = RunningMoments::EMPTY;
                let mut seen: Vec<f64> = Vec::new();
                for (re, ri) in &batches {
                    let mut out = poisoned(12);
                    ex::assemble_rewards(re, ri, &cfg, &mut rm, &mut out).unwrap();
                    let ext = |i: usize| if use_extrinsic { re[i] as f64 } else { 0.0 };
                    let tot = |i: usize| (ext(i) + 2.5 * ri[i] as f64) as f32 as f64;
                    seen.extend((0..12).map(|i| match norm {
                        RewardNorm::Int | RewardNorm::None => ri[i] as f64,
                        RewardNorm::Ext => re[i] as f64,
                        RewardNorm::All => tot(i),
                    }));
                    let (_, _, std) = oracle::population_stats(&seen);
                    for i in 0..12 {
                        let mut want = match norm {
                            RewardNorm::None => ext(i) + 2.5 * ri[i] as f64,
                            RewardNorm::Int => ext(i) + 2.5 * ri[i] as f64 / std,
                            RewardNorm::Ext => ext(i) / std + 2.5 * ri[i] as f64,
                            RewardNorm::All => tot(i) / std,
                        };
                        if clip {
                            want = want.clamp(-1.0, 1.0);
                        }
                        // One f32 rounding plus the f64 statistics' rounding.
                        let tol = 6e-8 * want.abs() + 1e-12 * (1.0 + want.abs());
                        assert!(
                            (out[i] as f64 - want).abs() <= tol,
                            "{norm:?} clip {clip} ext {use_extrinsic} i {i}: {} vs {want}",
                            out[i]
                        );
                    }
                    if norm != RewardNorm::None {
                        assert!((rm.std() - std).abs() <= 1e-12 * std);
                    }
                }
            }
        }
    }
}

#[test]
fn e3b_compat_reproduces_the_source_arithmetic() {
    // A [T = 3, B = 4] batch counts 3, and the state starts at count 1e-8.
    let cfg = AssembleCfg { compat: MomentsCompat::E3b { time_steps: 3 }, clip: false, ..AssembleCfg::default() };
    let mut rm = RunningMoments::E3B_INIT;
    let mut st = (1e-8f64, 0.0f64, 0.0f64);
    for k in 0..5 {
        let ri = rand_f32(12, 40 + k, 1.0);
        let re = rand_f32(12, 50 + k, 1.0);
        let mut out = poisoned(12);
        ex::assemble_rewards(&re, &ri, &cfg, &mut rm, &mut out).unwrap();
        st = oracle::e3b_update_running_moments(st, &ri, 3);
        assert!((rm.count - st.0).abs() <= 1e-15 * st.0);
        assert!((rm.sum - st.1).abs() <= 1e-12 * (1.0 + st.1.abs()));
        assert!((rm.m2 - st.2).abs() <= 1e-12 * st.2, "{} vs {}", rm.m2, st.2);
        let std = (st.2 / st.0).sqrt();
        for i in 0..12 {
            let want = re[i] as f64 + ri[i] as f64 / std;
            assert!((out[i] as f64 - want).abs() <= 6e-8 * want.abs() + 1e-12);
        }
    }
    let mut out = poisoned(12);
    let bad = AssembleCfg { compat: MomentsCompat::E3b { time_steps: 5 }, ..cfg };
    assert!(matches!(
        ex::assemble_rewards(&[0.0; 12], &[0.0; 12], &bad, &mut rm, &mut out),
        Err(TmError::InvalidArgument(_))
    ));
}

#[test]
fn merged_rank_moments_equal_the_single_process_ones() {
    // The statistic that merges: each rank's partial (count, sum, M2) of the normalised
    // stream, merged in rank order, then folded into the shared state.
    for norm in [RewardNorm::Int, RewardNorm::Ext, RewardNorm::All] {
        let cfg = AssembleCfg { norm, ..AssembleCfg::default() };
        let sizes = [5usize, 0, 13, 1, 8];
        let ext: Vec<Vec<f32>> = sizes.iter().enumerate().map(|(r, &n)| rand_f32(n, 60 + r as u64, 2.0)).collect();
        let int: Vec<Vec<f32>> = sizes.iter().enumerate().map(|(r, &n)| rand_f32(n, 70 + r as u64, 0.5)).collect();
        let all_ext: Vec<f32> = ext.concat();
        let all_int: Vec<f32> = int.concat();
        let prior = RunningMoments { count: 40.0, sum: 3.0, m2: 7.5 };

        let mut single = prior;
        let mut single_out = poisoned(all_int.len());
        ex::assemble_rewards(&all_ext, &all_int, &cfg, &mut single, &mut single_out).unwrap();

        let merged = (0..sizes.len())
            .map(|r| ex::norm_batch_moments(&ext[r], &int[r], &cfg).unwrap())
            .fold(RunningMoments::EMPTY, RunningMoments::merge);
        let state = prior.merge(merged);
        assert!((state.count - single.count).abs() == 0.0);
        assert!((state.sum - single.sum).abs() <= 1e-13 * (1.0 + single.sum.abs()));
        assert!((state.m2 - single.m2).abs() <= 1e-13 * single.m2, "{norm:?}: {} vs {}", state.m2, single.m2);
        let mut off = 0;
        for r in 0..sizes.len() {
            let mut out = poisoned(sizes[r]);
            ex::assemble_rewards_with(&ext[r], &int[r], &cfg, &state, &mut out).unwrap();
            for (i, &o) in out.iter().enumerate() {
                let w = single_out[off + i];
                assert!(tokenmath_testutil::ulps(o, w) <= 1, "{norm:?} rank {r} i {i}: {o} vs {w}");
            }
            off += sizes[r];
        }
    }
}

#[test]
fn assembly_rejects_bad_input_and_changes_nothing() {
    let cfg = AssembleCfg::default();
    let mut rm = RunningMoments { count: 3.0, sum: 1.0, m2: 2.0 };
    let before = rm;
    let mut out = poisoned(3);
    let e = ex::assemble_rewards(&[0.0, 1.0, 2.0], &[0.0, f32::NAN, 1.0], &cfg, &mut rm, &mut out);
    assert_eq!(e, Err(TmError::NonFinite { what: "r_int", index: 1 }));
    let e = ex::assemble_rewards(&[0.0, f32::INFINITY, 2.0], &[0.0; 3], &cfg, &mut rm, &mut out);
    assert_eq!(e, Err(TmError::NonFinite { what: "r_ext", index: 1 }));
    assert!(matches!(
        ex::assemble_rewards(&[0.0; 2], &[0.0; 3], &cfg, &mut rm, &mut out),
        Err(TmError::LengthMismatch { .. })
    ));
    let bad = AssembleCfg { intrinsic_coef: f32::NAN, ..cfg };
    assert!(matches!(
        ex::assemble_rewards(&[0.0; 3], &[0.0; 3], &bad, &mut rm, &mut out),
        Err(TmError::InvalidArgument(_))
    ));
    let bad = AssembleCfg { norm: RewardNorm::Ext, use_extrinsic: false, ..cfg };
    assert!(matches!(ex::assemble_rewards(&[], &[0.0; 3], &bad, &mut rm, &mut out), Err(TmError::InvalidArgument(_))));
    let mut broken = RunningMoments { count: -1.0, sum: 0.0, m2: 0.0 };
    assert!(matches!(
        ex::assemble_rewards(&[0.0; 3], &[0.0; 3], &cfg, &mut broken, &mut out),
        Err(TmError::InvalidArgument(_))
    ));
    assert_eq!(rm, before);
    assert!(untouched(&out));

    // Denormal and constant batches: std 0 means no division.
    let mut rm = RunningMoments::EMPTY;
    let mut out = poisoned(2);
    ex::assemble_rewards(&[0.25, 0.5], &[1e-45, 1e-45], &AssembleCfg { clip: false, ..cfg }, &mut rm, &mut out)
        .unwrap();
    assert_eq!(rm.m2, 0.0);
    assert_eq!(out, [0.25 + 1e-45, 0.5 + 1e-45]);
    // Clipping.
    let mut rm = RunningMoments::EMPTY;
    ex::assemble_rewards(&[5.0, -5.0], &[0.0, 0.0], &AssembleCfg { norm: RewardNorm::None, ..cfg }, &mut rm, &mut out)
        .unwrap();
    assert_eq!(out, [1.0, -1.0]);
    // Empty batch.
    ex::assemble_rewards(&[], &[], &cfg, &mut rm, &mut []).unwrap();
    assert_eq!(rm, RunningMoments::EMPTY);
    let _ = POISON;
}

proptest! {
    #[test]
    fn assembly_hostile(xs in proptest::collection::vec((hostile(), hostile()), 0..10), norm in 0u8..4, clip: bool) {
        let norm = [RewardNorm::None, RewardNorm::Int, RewardNorm::Ext, RewardNorm::All][norm as usize];
        let (re, ri): (Vec<f32>, Vec<f32>) = xs.into_iter().unzip();
        let cfg = AssembleCfg { norm, clip, ..AssembleCfg::default() };
        let mut rm = RunningMoments::EMPTY;
        let mut out = poisoned(re.len());
        let bad = first_non_finite(&re).is_some() || first_non_finite(&ri).is_some();
        match ex::assemble_rewards(&re, &ri, &cfg, &mut rm, &mut out) {
            Ok(()) => {
                prop_assert!(!bad);
                prop_assert!(out.iter().all(|v| !v.is_nan()));
                if clip { prop_assert!(out.iter().all(|v| (-1.0..=1.0).contains(v))); }
                let want_count = if norm == RewardNorm::None { 0.0 } else { re.len() as f64 };
                prop_assert_eq!(rm.count, want_count);
            }
            Err(_) => {
                prop_assert!(bad);
                prop_assert!(untouched(&out));
                prop_assert_eq!(rm, RunningMoments::EMPTY);
            }
        }
    }
}
