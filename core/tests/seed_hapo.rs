//! HAPO (`tokenmath_core::seed::hapo`) against the f64 reference (`tokenmath_reference::hapo`)
//! on hostile inputs, the spec's worked example in both sign modes, finite differences of the
//! loss gradient, and the error policies (nothing written on error).

use proptest::prelude::*;
use tokenmath_core::logits::{stats_fwd, FwdOut, RowInputs};
use tokenmath_core::policy_loss::{BatchShape, LossOut, PolicyInputs};
use tokenmath_core::seed::hapo::*;
use tokenmath_core::{Exec, Mat, TmError};
use tokenmath_reference::hapo as rh;
use tokenmath_reference::{row_stats, stats_tolerance};
use tokenmath_testutil::{poisoned, untouched};

const EPS: f64 = f32::EPSILON as f64;

fn close(got: f32, want: f64, tol: f64) -> bool {
    if want.is_nan() {
        got.is_nan()
    } else if want.is_infinite() {
        got as f64 == want
    } else {
        (got as f64 - want).abs() <= tol
    }
}

fn norm(h: &[f32], mask: Option<&[u8]>, cfg: &HapoNormCfg) -> (Vec<f32>, HapoNorm) {
    let mut out = poisoned(h.len());
    let mut scratch = vec![0.0f64; hapo_entropy_norm_scratch_len(h.len())];
    let st = hapo_entropy_norm(Exec::new(), h, mask, cfg, &mut scratch, &mut out).unwrap();
    (out, st)
}

#[test]
#[allow(clippy::excessive_precision)]
fn spec_worked_example() {
    let h = [0.001f32, 0.01, 0.1, 0.3, 0.5, 1.0, 2.0, 3.0];
    let cc = HapoNormCfg::default();
    let (hh, st) = norm(&h, Some(&[1; 8]), &cc);
    let want = [1.0, 0.697064, 0.394128, 0.249591, 0.182385, 0.091193, 0.0, 1.0];
    for (g, w) in hh.iter().zip(want) {
        assert!((*g as f64 - w).abs() < 2e-6, "{hh:?}");
    }
    assert_eq!(hh[6].to_bits(), (-0.0f32).to_bits(), "the pivot is −0.0 (0·scale_neg)");
    assert!((st.pivot - 2.0f32.ln()).abs() < 1e-6);
    assert!((st.std - 3.552922).abs() < 1e-5 && (1.0 / st.scale_pos - 0.114122).abs() < 1e-6);
    assert!((1.0 / st.scale_neg + 2.139339).abs() < 1e-5);
    let (hi, sti) = norm(&h, Some(&[1; 8]), &HapoNormCfg { sign: HapoSign::Intended, ..cc });
    for (g, w) in hi.iter().zip([-1.0, -0.697064, -0.394128, -0.249591, -0.182385, -0.091193, 0.0, 1.0]) {
        assert!((*g as f64 - w).abs() < 2e-6, "{hi:?}");
    }
    assert!(sti.scale_neg > 0.0);
    // Adaptive clip, ε = 0.2, α = 1.
    let (mut lo, mut up) = (poisoned(8), poisoned(8));
    hapo_adaptive_clip(Exec::new(), &hh, 0.2, 0.2, 1.0, &mut lo, &mut up).unwrap();
    for (g, w) in up.iter().zip([0.4, 0.3394, 0.2788, 0.2499, 0.2365, 0.2182, 0.2, 0.4]) {
        assert!((*g as f64 - w).abs() < 1e-4);
    }
    assert!(lo.iter().all(|&v| v == 0.2));
    hapo_adaptive_clip(Exec::new(), &hi, 0.2, 0.2, 1.0, &mut lo, &mut up).unwrap();
    for (g, w) in lo.iter().zip([0.4, 0.3394, 0.2788, 0.2499, 0.2365, 0.2182, 0.2, 0.2]) {
        assert!((*g as f64 - w).abs() < 1e-4);
    }
    assert!(up[..7].iter().all(|&v| v == 0.2) && (up[7] - 0.4).abs() < 1e-7);
    // Quantile index: q = 0.5, n = 2 → index 0 (half to even).
    let (_, st) = norm(&[1.0, 2.0], None, &HapoNormCfg { pivot_q: 0.5, ..cc });
    assert_eq!(st.pivot, 0.0);
    // Empty mask: ĥ = 0, statistics (0, 1, 1, ∓1).
    let (z, st) = norm(&[1.0, 2.0], Some(&[0, 0]), &cc);
    assert_eq!((z, st), (vec![0.0, 0.0], HapoNorm { pivot: 0.0, std: 1.0, scale_pos: 1.0, scale_neg: -1.0 }));
}

fn entropy() -> impl Strategy<Value = f32> {
    prop_oneof![
        10 => 0.0f32..8.0,
        2 => Just(0.0f32),
        1 => Just(-1.0f32),
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
        1 => Just(1e-30f32),
        1 => Just(1e-40f32),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn entropy_norm_matches_reference(
        h in prop::collection::vec(entropy(), 0..40),
        mask_kind in 0u8..3,
        seed in any::<u64>(),
        q in prop_oneof![Just(0.8f32), Just(0.5f32), Just(0.0f32), Just(1.0f32), 0.0f32..1.0],
        intended in any::<bool>(),
    ) {
        let mut rng = tokenmath_testutil::Rng::new(seed);
        let mask: Vec<u8> = (0..h.len()).map(|_| !rng.next_u64().is_multiple_of(3) as u8).collect();
        let m = match mask_kind { 0 => None, 1 => Some(&mask[..]), _ => Some(&[0u8; 40][..h.len()]) };
        let sign = if intended { HapoSign::Intended } else { HapoSign::CodeCompat };
        let (got, st) = norm(&h, m, &HapoNormCfg { pivot_q: q, eps: 1e-8, sign });
        let (want, ws) = rh::entropy_norm(&h, m, q as f64, 1e-8f32 as f64, intended);
        for i in 0..h.len() {
            prop_assert!(close(got[i], want[i], 1e-6 * (1.0 + want[i].abs())), "ĥ[{}] = {} vs {}", i, got[i], want[i]);
        }
        for (g, w) in [st.pivot, st.std, st.scale_pos, st.scale_neg].iter().zip(ws) {
            prop_assert!(close(*g, w, 1e-6 * (1.0 + w.abs())), "{:?} vs {:?}", st, ws);
        }
    }

    #[test]
    fn temperature_matches_reference(
        rows in 1usize..6,
        vocab in 1usize..40,
        seed in any::<u64>(),
        intended in any::<bool>(),
        stats in (-3.0f32..3.0, 0.1f32..4.0, 0.1f32..5.0, -5.0f32..5.0),
    ) {
        let mut rng = tokenmath_testutil::Rng::new(seed);
        let mut x: Vec<f32> = (0..rows * vocab).map(|_| rng.symmetric() * 8.0).collect();
        if vocab > 2 { x[1] = f32::NEG_INFINITY; }
        if rows > 3 { x[3 * vocab] = f32::NAN; }
        let base: Vec<f32> = (0..rows).map(|_| 0.5 + rng.symmetric().abs()).collect();
        let nrm = HapoNorm { pivot: stats.0, std: stats.1, scale_pos: stats.2, scale_neg: stats.3 };
        let sign = if intended { HapoSign::Intended } else { HapoSign::CodeCompat };
        let xm = Mat::dense(&x, rows, vocab).unwrap();
        let mut out = poisoned(rows);
        let nonfinite = hapo_adaptive_temperature(Exec::new(), xm, &base, Some(&nrm), 0.05, sign, &mut out).unwrap();
        prop_assert_eq!(nonfinite, usize::from(rows > 3));
        for r in 0..rows {
            let row = &x[r * vocab..(r + 1) * vocab];
            let Some(rs) = row_stats(row, 1.0, None) else {
                prop_assert_eq!(out[r], base[r]);
                continue;
            };
            let ws = [nrm.pivot as f64, nrm.std as f64, nrm.scale_pos as f64, nrm.scale_neg as f64];
            let want = rh::temperature(rs.entropy, base[r] as f64, ws, 0.05, intended);
            // dtemp = base·τ·max|scale|·dH/(max(H,1e-6)·(σ + 1e-6)) + rounding.
            let tol_h = stats_tolerance(&rs, vocab, false).entropy;
            let k = base[r] as f64 * 0.05 * (nrm.scale_pos.abs().max(nrm.scale_neg.abs()) as f64)
                / (rs.entropy.max(1e-6) * (nrm.std as f64 + 1e-6));
            let tol = k * tol_h * 2.0 + 4.0 * EPS * want.abs();
            prop_assert!(close(out[r], want, tol), "row {}: {} vs {} (tol {:e})", r, out[r], want, tol);
            let sgn_ok = match sign { HapoSign::CodeCompat => out[r] >= base[r], HapoSign::Intended => true };
            prop_assert!(sgn_ok && out[r] as f64 <= base[r] as f64 * 1.05 * (1.0 + 2.0 * EPS));
        }
        // No statistics: the base temperatures.
        hapo_adaptive_temperature(Exec::new(), xm, &base, None, 0.05, sign, &mut out).unwrap();
        prop_assert_eq!(&out, &base);
    }

    #[test]
    fn group_advantage_matches_reference(
        b in 1usize..8,
        t in 1usize..6,
        seed in any::<u64>(),
        opts in (any::<bool>(), any::<bool>(), any::<bool>()),
        binary in any::<bool>(),
    ) {
        let mut rng = tokenmath_testutil::Rng::new(seed);
        let n = b * t;
        let mask: Vec<u8> = (0..n).map(|_| !rng.next_u64().is_multiple_of(4) as u8).collect();
        let rewards: Vec<f32> = (0..n).map(|i| {
            let v = if binary { (rng.next_u64() % 2) as f32 } else { rng.symmetric() * 3.0 };
            if i % t == t - 1 { v } else if binary { 0.0 } else { v * 0.1 }
        }).collect();
        let group: Vec<u32> = (0..b).map(|_| (rng.next_u64() % 3) as u32 * 7).collect();
        let cfg = HapoAdvCfg { norm_by_std: opts.0, pad_in_check: opts.1, mask_output: opts.2, ..Default::default() };
        let mut adv = poisoned(n);
        hapo_token_group_advantage(Exec::new(), &rewards, &mask, t, &group, &cfg, &mut adv).unwrap();
        let want = rh::group_advantage(&rewards, &mask, t, &group, opts.0, opts.1, opts.2, 5.0, 1e-6f32 as f64);
        for i in 0..n {
            prop_assert!(close(adv[i], want[i], 1e-5 * (1.0 + want[i].abs())), "adv[{}] = {} vs {}", i, adv[i], want[i]);
        }
    }

    #[test]
    fn clip_redistribute_and_loss_match_reference(
        n in 0usize..40,
        seed in any::<u64>(),
        c in prop_oneof![Just(Some(10.0f32)), Just(None), Just(Some(3.0f32))],
    ) {
        let mut rng = tokenmath_testutil::Rng::new(seed);
        let h: Vec<f32> = (0..n).map(|i| if i % 7 == 3 { f32::NAN } else if i % 5 == 0 { 0.0 } else { rng.symmetric() }).collect();
        let (mut lo, mut hi) = (poisoned(n), poisoned(n));
        hapo_adaptive_clip(Exec::new(), &h, 0.2, 0.28, 1.0, &mut lo, &mut hi).unwrap();
        for i in 0..n {
            let (wl, wh) = rh::clip(h[i] as f64, 0.2f32 as f64, 0.28f32 as f64, 1.0);
            prop_assert!(close(lo[i], wl, 4.0 * EPS * wl) && close(hi[i], wh, 4.0 * EPS * wh));
        }
        let logp: Vec<f32> = (0..n).map(|_| -rng.symmetric().abs() * 3.0).collect();
        let old: Vec<f32> = logp.iter().map(|&l| l + rng.symmetric() * 0.4).collect();
        let ratio: Vec<f32> = logp.iter().zip(&old).map(|(a, b)| ((a - b) as f64).exp() as f32).collect();
        let adv: Vec<f32> = (0..n).map(|i| if i % 6 == 1 { 0.0 } else { rng.symmetric() * 2.0 }).collect();
        let mut a2 = poisoned(n);
        hapo_redistribute(Exec::new(), &adv, &h, &ratio, &lo, &hi, 1.0, &mut a2).unwrap();
        for i in 0..n {
            let (w, border) = rh::redistribute(adv[i] as f64, h[i] as f64, ratio[i] as f64, lo[i] as f64, hi[i] as f64, 1.0);
            if !border {
                prop_assert!(close(a2[i], w, 4.0 * EPS * (1.0 + w.abs())), "A'[{}] = {} vs {}", i, a2[i], w);
            }
        }
        let mask: Vec<u8> = (0..n).map(|_| !rng.next_u64().is_multiple_of(5) as u8).collect();
        let inp = PolicyInputs { shape: BatchShape::new(1, n), logp: &logp, old_logp: &old, adv: &a2, mask: &mask, is_weights: None };
        let (mut l, mut g) = (poisoned(n), poisoned(n));
        let st = hapo_loss(Exec::new(), &inp, &lo, &hi, c, LossOut { loss: &mut l, dloss_dlogp: &mut g }).unwrap();
        prop_assert_eq!(st.valid as usize, mask.iter().filter(|&&m| m != 0).count());
        for i in 0..n {
            if mask[i] == 0 {
                prop_assert!(l[i] == 0.0 && g[i] == 0.0);
                continue;
            }
            let f = |lp: f64| rh::loss_token(lp, old[i] as f64, a2[i] as f64, lo[i] as f64, hi[i] as f64, c.map(|c| c as f64));
            let (wl, wg) = f(logp[i] as f64);
            let d = (logp[i] - old[i]) as f64;
            prop_assert!(close(l[i], wl, 1e-6 + wl.abs() * (d.abs() + 4.0) * 2.0 * EPS), "ℓ[{}] = {} vs {}", i, l[i], wl);
            prop_assert!(close(g[i], wg, 1e-6 + wg.abs() * (d.abs() + 4.0) * 2.0 * EPS), "g[{}] = {} vs {}", i, g[i], wg);
            // Finite differences of the reference loss, away from the kinks.
            let hstep = 1e-6;
            let r = d.exp();
            let kinks = [1.0 - lo[i] as f64, 1.0 + hi[i] as f64, c.unwrap_or(f32::MAX) as f64];
            if !wg.is_nan() && kinks.iter().all(|k| (r - k).abs() > 1e-4) {
                let fd = (f(logp[i] as f64 + hstep).0 - f(logp[i] as f64 - hstep).0) / (2.0 * hstep);
                prop_assert!((g[i] as f64 - fd).abs() <= 1e-5 * (1.0 + fd.abs()), "grad {} vs fd {}", g[i], fd);
            }
        }
    }
}

#[test]
fn errors_write_nothing() {
    let e = Exec::new();
    let h = [1.0f32, 2.0, 3.0];
    let mut out = poisoned(3);
    let mut scratch = [0.0f64; 3];
    let bad_q = HapoNormCfg { pivot_q: 1.5, ..Default::default() };
    assert!(matches!(hapo_entropy_norm(e, &h, None, &bad_q, &mut scratch, &mut out), Err(TmError::InvalidArgument(_))));
    let bad_eps = HapoNormCfg { eps: 0.0, ..Default::default() };
    assert!(matches!(
        hapo_entropy_norm(e, &h, None, &bad_eps, &mut scratch, &mut out),
        Err(TmError::InvalidArgument(_))
    ));
    let cfg = HapoNormCfg::default();
    assert!(matches!(
        hapo_entropy_norm(e, &h, None, &cfg, &mut scratch[..2], &mut out),
        Err(TmError::LengthMismatch { .. })
    ));
    assert!(matches!(
        hapo_entropy_norm(e, &h, Some(&[1, 1]), &cfg, &mut scratch, &mut out),
        Err(TmError::LengthMismatch { .. })
    ));
    assert!(untouched(&out));

    let x = [0.0f32, 1.0, f32::NEG_INFINITY, f32::NEG_INFINITY];
    let xm = Mat::dense(&x, 2, 2).unwrap();
    let nrm = HapoNorm { pivot: 0.0, std: 1.0, scale_pos: 1.0, scale_neg: -1.0 };
    let mut t2 = poisoned(2);
    let s = HapoSign::CodeCompat;
    assert_eq!(
        hapo_adaptive_temperature(e, xm, &[1.0, 1.0], Some(&nrm), 0.05, s, &mut t2),
        Err(TmError::NoFiniteLogit { row: 1 })
    );
    let mut t2 = poisoned(2);
    let r = hapo_adaptive_temperature(e, xm, &[1.0, 0.0], Some(&nrm), 0.05, s, &mut t2);
    assert_eq!(r, Err(TmError::InvalidTemperature { row: Some(1), value: 0.0 }));
    let r = hapo_adaptive_temperature(e, xm, &[1.0, 1.0], Some(&nrm), f32::NAN, s, &mut t2);
    assert!(matches!(r, Err(TmError::InvalidArgument(_))));
    let empty = Mat::dense(&x[..0], 2, 0).unwrap();
    assert_eq!(
        hapo_adaptive_temperature(e, empty, &[1.0, 1.0], Some(&nrm), 0.05, s, &mut t2),
        Err(TmError::EmptyVocab)
    );
    assert!(untouched(&t2));

    let mut adv = poisoned(4);
    let cfg = HapoAdvCfg::default();
    let m = [1u8; 4];
    assert!(matches!(
        hapo_token_group_advantage(e, &[0.0; 4], &m, 0, &[0, 0], &cfg, &mut adv),
        Err(TmError::InvalidArgument(_))
    ));
    assert!(matches!(
        hapo_token_group_advantage(e, &[0.0; 4], &m, 3, &[0], &cfg, &mut adv),
        Err(TmError::LengthMismatch { .. })
    ));
    assert!(matches!(
        hapo_token_group_advantage(e, &[0.0; 4], &m, 2, &[0], &cfg, &mut adv),
        Err(TmError::LengthMismatch { .. })
    ));
    let r = hapo_token_group_advantage(e, &[0.0, f32::NAN, 0.0, 0.0], &m, 2, &[0, 0], &cfg, &mut adv);
    assert_eq!(r, Err(TmError::NonFinite { what: "token_rewards", index: 1 }));
    let bad = HapoAdvCfg { fallback_abs: 0.0, ..cfg };
    assert!(matches!(
        hapo_token_group_advantage(e, &[0.0; 4], &m, 2, &[0, 0], &bad, &mut adv),
        Err(TmError::InvalidArgument(_))
    ));
    assert!(untouched(&adv));

    let (mut lo, mut hi) = (poisoned(3), poisoned(3));
    assert!(matches!(hapo_adaptive_clip(e, &h, -0.1, 0.2, 1.0, &mut lo, &mut hi), Err(TmError::InvalidArgument(_))));
    assert!(matches!(
        hapo_adaptive_clip(e, &h, 0.1, 0.2, 1.0, &mut lo[..2], &mut hi),
        Err(TmError::LengthMismatch { .. })
    ));
    assert!(matches!(hapo_redistribute(e, &h, &h, &h, &h, &h, f32::NAN, &mut lo), Err(TmError::InvalidArgument(_))));
    assert!(matches!(hapo_redistribute(e, &h, &h, &h[..2], &h, &h, 1.0, &mut lo), Err(TmError::LengthMismatch { .. })));
    let inp = PolicyInputs {
        shape: BatchShape::new(1, 3),
        logp: &h,
        old_logp: &h,
        adv: &h,
        mask: &[1, 1, 1],
        is_weights: None,
    };
    let r = hapo_loss(e, &inp, &[0.2, 0.2, f32::NAN], &h, Some(10.0), LossOut { loss: &mut lo, dloss_dlogp: &mut hi });
    assert!(matches!(r, Err(TmError::InvalidArgument(_))));
    let r = hapo_loss(e, &inp, &h, &h, Some(1.0), LossOut { loss: &mut lo, dloss_dlogp: &mut hi });
    assert!(matches!(r, Err(TmError::InvalidArgument(_))));
    let r = hapo_loss(e, &inp, &h[..2], &h, Some(10.0), LossOut { loss: &mut lo, dloss_dlogp: &mut hi });
    assert!(matches!(r, Err(TmError::LengthMismatch { .. })));
    assert!(untouched(&lo) && untouched(&hi));
}

#[test]
fn group_advantage_spec_cases() {
    let e = Exec::new();
    let cfg = HapoAdvCfg::default();
    // All-correct group with a short row: the padding check trips, the GRPO fallback gives 0.
    let (r, m) = ([0.0f32, 1.0, 1.0, 0.0], [1u8, 1, 1, 0]);
    let mut adv = poisoned(4);
    hapo_token_group_advantage(e, &r, &m, 2, &[0, 0], &cfg, &mut adv).unwrap();
    assert_eq!(adv, [0.0; 4]);
    // Empty group: 0 (the reference: NaN).
    hapo_token_group_advantage(e, &[1.0, 0.0, 0.0, 2.0], &[0; 4], 2, &[3, 3], &cfg, &mut adv).unwrap();
    assert_eq!(adv, [0.0; 4]);
    // Mixed group, full rows: token-level z-scores, padding-free.
    hapo_token_group_advantage(e, &[0.0, 1.0, 0.0, 0.0], &[1; 4], 2, &[0, 0], &cfg, &mut adv).unwrap();
    assert!((adv[0] - 1.0).abs() < 1e-5 && (adv[2] + 1.0).abs() < 1e-5);
}

#[test]
fn temperature_uses_the_logits_entropy() {
    // A uniform row over 4 columns has H = ln 4; with m = ln 4 the temperature is the base.
    let x = [0.5f32; 4];
    let xm = Mat::dense(&x, 1, 4).unwrap();
    let (mut lse, mut h) = ([0.0], [0.0]);
    stats_fwd(
        Exec::new(),
        xm,
        &RowInputs::default(),
        FwdOut { lse: &mut lse, entropy: &mut h, logp: None, max: None, log_sum: None },
    )
    .unwrap();
    let nrm = HapoNorm { pivot: h[0].ln(), std: 1.0, scale_pos: 1.0, scale_neg: -1.0 };
    let mut t = [0.0];
    hapo_adaptive_temperature(Exec::new(), xm, &[0.7], Some(&nrm), 0.05, HapoSign::CodeCompat, &mut t).unwrap();
    assert!((t[0] - 0.7).abs() < 1e-6);
}

/// Values that probe every branch of the HAPO loss: ordinary ones, exact ties at the clip
/// edges, zeros, NaN and infinities.
fn hostile(rng: &mut tokenmath_testutil::Rng, i: usize, scale: f32) -> f32 {
    match i % 23 {
        3 => f32::NAN,
        7 => f32::INFINITY,
        11 => f32::NEG_INFINITY,
        13 => 0.0,
        17 => -0.0,
        _ => rng.symmetric() * scale,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The vectorised builds of the HAPO loss (AVX2, AVX-512) against the portable one, bitwise:
    /// loss, gradient and every statistic, with and without the dual clip and importance
    /// weights, hostile values, and garbage clip widths at masked positions.
    #[test]
    fn hapo_loss_backends_bitwise(n in 0usize..700, seed in any::<u64>(), dual in any::<bool>(), weighted in any::<bool>()) {
        let mut rng = tokenmath_testutil::Rng::new(seed);
        let mask: Vec<u8> = (0..n).map(|_| !rng.next_u64().is_multiple_of(4) as u8).collect();
        let old: Vec<f32> = (0..n).map(|_| -3.0 * rng.symmetric().abs()).collect();
        let logp: Vec<f32> = (0..n).map(|i| if i % 29 == 5 { f32::NAN } else { old[i] + 0.5 * rng.symmetric() }).collect();
        let adv: Vec<f32> = (0..n).map(|i| hostile(&mut rng, i, 2.0)).collect();
        let w: Vec<f32> = (0..n).map(|i| if i % 31 == 2 { f32::NAN } else { rng.symmetric().abs() }).collect();
        // Valid widths are finite and >= 0; masked ones are anything (never read as widths).
        let (lo, hi): (Vec<f32>, Vec<f32>) = (0..n)
            .map(|i| if mask[i] == 0 && i % 3 == 0 { (f32::NAN, -5.0) } else { (0.3 * rng.symmetric().abs(), 0.3 * rng.symmetric().abs()) })
            .unzip();
        let c = dual.then_some(3.0f32);
        let run = |e: Exec| {
            let inp = PolicyInputs {
                shape: BatchShape::new(1, n), logp: &logp, old_logp: &old, adv: &adv, mask: &mask,
                is_weights: weighted.then_some(&w[..]),
            };
            let (mut l, mut g) = (poisoned(n), poisoned(n));
            let st = hapo_loss(e, &inp, &lo, &hi, c, LossOut { loss: &mut l, dloss_dlogp: &mut g }).unwrap();
            // NaN payloads are not part of the contract: every NaN is read as one.
            let sum = if st.neg_log_ratio_sum.is_nan() { f64::NAN.to_bits() } else { st.neg_log_ratio_sum.to_bits() };
            (tokenmath_testutil::nan_bits(&l), tokenmath_testutil::nan_bits(&g), st.valid, st.clipped, st.dual_clipped, sum)
        };
        let want = run(Exec::new().with_backend(tokenmath_core::Backend::Portable));
        prop_assert_eq!(want.2 as usize, mask.iter().filter(|&&m| m != 0).count());
        for b in tokenmath_core::Backend::all_supported() {
            prop_assert_eq!(run(Exec::new().with_backend(b)), want.clone(), "{}", b.name());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The token-group advantage's vectorised builds (AVX2, AVX-512) against the portable one,
    /// bitwise: groups of mixed sizes, dense and outcome rewards, padding, signed zeros, the
    /// verl fallback (a far outlier) and every configuration flag.
    #[test]
    fn group_advantage_backends_bitwise(
        rows in 1usize..20, t in 1usize..90, seed in any::<u64>(), outlier in any::<bool>(),
        flags in (any::<bool>(), any::<bool>(), any::<bool>()),
    ) {
        let mut rng = tokenmath_testutil::Rng::new(seed);
        let n = rows * t;
        let mask: Vec<u8> = (0..n).map(|i| (i % t < t - (i / t) % (t.min(4))) as u8).collect();
        let mut r: Vec<f32> = (0..n)
            .map(|i| match (i / t) % 3 { 0 => if i % t == t - 1 { 1.0 } else { -0.0 }, 1 => rng.symmetric(), _ => 0.0 })
            .collect();
        if outlier {
            r[0] = 1e4;
        }
        let group: Vec<u32> = (0..rows as u32).map(|b| b % 3 + b / 7).collect();
        let cfg = HapoAdvCfg { norm_by_std: flags.0, pad_in_check: flags.1, mask_output: flags.2, ..Default::default() };
        let run = |e: Exec| {
            let mut adv = poisoned(n);
            hapo_token_group_advantage(e, &r, &mask, t, &group, &cfg, &mut adv).unwrap();
            tokenmath_testutil::nan_bits(&adv)
        };
        let want = run(Exec::new().with_backend(tokenmath_core::Backend::Portable));
        for b in tokenmath_core::Backend::all_supported() {
            prop_assert_eq!(run(Exec::new().with_backend(b)), want.clone(), "{}", b.name());
        }
    }
}
