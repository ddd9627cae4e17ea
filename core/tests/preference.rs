//! DPO/SimPO, T-REG and cDPO against the `f64` reference, with hostile inputs and
//! finite-difference checks of every gradient; cDPO scores against the logits forward on the
//! materialised contrastive row (bitwise, every backend, 1 and 2 threads, f32/bf16/f16).

#![allow(clippy::needless_range_loop)]

use proptest::prelude::*;
use tokenmath_core::logits::{self, FwdOut, RowInputs};
use tokenmath_core::preference::cdpo::{self, CdpoCfg, CdpoForm, CdpoInputs};
use tokenmath_core::preference::dpo::{self, DpoCfg, PairOut, SimpoCfg};
use tokenmath_core::preference::t_reg::{self, Reduction, TregCfg, TregOut, TregRegCfg};
use tokenmath_core::{bf16, f16, Backend, Exec, LogitElem, Mat, TmError};
use tokenmath_reference::preference as rf;
use tokenmath_testutil::{hostile_logit, nan_bits, poisoned, rand_f32, untouched};

/// `got` within `rel·|want| + abs` of `want`, NaN where NaN, equal infinities.
#[track_caller]
fn near(got: f32, want: f64, rel: f64, abs: f64) {
    if want.is_nan() || got.is_nan() {
        assert!(want.is_nan() && got.is_nan(), "got {got:e}, want {want:e}");
        return;
    }
    if want.is_infinite() || got.is_infinite() {
        assert_eq!(got as f64, want, "infinite mismatch");
        return;
    }
    let tol = rel * want.abs() + abs;
    assert!((got as f64 - want).abs() <= tol, "got {got:e}, want {want:e} (tol {tol:e})");
}

fn hostile_scalar() -> impl Strategy<Value = f32> {
    prop_oneof![
        20 => -50.0f32..50.0,
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
        1 => Just(f32::NEG_INFINITY),
        2 => -1e30f32..1e30,
        1 => Just(0.0f32),
    ]
}

/// Central difference in an `f32` input: the step is taken between the two rounded points.
/// With `f` evaluated in `f64`, its error is the truncation `h²·|f‴|/6` (≈ 1e-7 relative for
/// the smooth losses here), so gradients are compared at 1e-5.
fn fd32(f: impl Fn(f32) -> f64, x: f32) -> f64 {
    let h = 1e-3 * x.abs().max(1.0);
    let (a, b) = (x + h, x - h);
    (f(a) - f(b)) / (a as f64 - b as f64)
}

/// Central difference of an `f64` function.
fn fd(f: impl Fn(f64) -> f64, x: f64) -> f64 {
    let h = 1e-6 * x.abs().max(1.0);
    (f(x + h) - f(x - h)) / (2.0 * h)
}

// ------------------------------------------------------------------------------------------
// DPO / SimPO
// ------------------------------------------------------------------------------------------

proptest! {
    #[test]
    fn dpo_matches_reference(
        pairs in prop::collection::vec((hostile_scalar(), hostile_scalar()), 0..12),
        beta in prop_oneof![Just(0.1f32), 0.01f32..5.0],
        eps in prop_oneof![Just(0.0f32), Just(1.0f32), 0.0f32..0.5],
    ) {
        let (w, l): (Vec<f32>, Vec<f32>) = pairs.into_iter().unzip();
        let n = w.len();
        let (mut loss, mut g, mut m) = (poisoned(n), poisoned(n), poisoned(n));
        dpo::dpo_loss(Exec::new(), &DpoCfg { beta, label_smoothing: eps },
            &w, &l, PairOut { loss: &mut loss, dl_dh: &mut g, margin: Some(&mut m) }).unwrap();
        for i in 0..n {
            let (rl, rg, rh) = rf::dpo(beta as f64, eps as f64, w[i] as f64, l[i] as f64);
            near(loss[i], rl, 1e-6, 1e-30);
            near(g[i], rg, 1e-6, 1e-30);
            near(m[i], rh, 1e-6, 1e-30);
            prop_assert!(loss[i].is_nan() || loss[i] >= 0.0);
        }
    }

    #[test]
    fn simpo_matches_reference(
        pairs in prop::collection::vec((hostile_scalar(), 1u32..5000, hostile_scalar(), 1u32..5000), 0..12),
        beta in 0.01f32..3.0, gamma in -2.0f32..2.0, eps in 0.0f32..0.5,
    ) {
        let n = pairs.len();
        let sw: Vec<f32> = pairs.iter().map(|p| p.0).collect();
        let lw: Vec<u32> = pairs.iter().map(|p| p.1).collect();
        let sl: Vec<f32> = pairs.iter().map(|p| p.2).collect();
        let ll: Vec<u32> = pairs.iter().map(|p| p.3).collect();
        let (mut loss, mut g) = (poisoned(n), poisoned(n));
        dpo::simpo_loss(Exec::new(), &SimpoCfg { beta, gamma, label_smoothing: eps }, &sw, &lw, &sl, &ll,
            PairOut { loss: &mut loss, dl_dh: &mut g, margin: None }).unwrap();
        for i in 0..n {
            let (rl, rg, _) = rf::simpo(beta as f64, gamma as f64, eps as f64, sw[i] as f64, lw[i], sl[i] as f64, ll[i]);
            near(loss[i], rl, 1e-6, 1e-30);
            near(g[i], rg, 1e-6, 1e-30);
        }
    }

    #[test]
    fn seq_logratio_matches_reference(
        t in 0usize..40, rows in 0usize..5, seed in any::<u64>(),
        vals in prop::collection::vec(hostile_logit(), 400),
    ) {
        let n = rows * t;
        let mask: Vec<u8> = (0..n).map(|i| (tokenmath_testutil::unit_hash(i, seed as u32) < 0.7) as u8).collect();
        let logp: Vec<f32> = (0..n).map(|i| vals[i % 400].min(0.0)).collect();
        let reff: Vec<f32> = (0..n).map(|i| vals[(i * 7 + 3) % 400].min(0.0)).collect();
        let mut out = poisoned(rows);
        dpo::seq_logratio(Exec::new(), t, &mask, &logp, &reff, &mut out).unwrap();
        for r in 0..rows {
            let s = r * t..(r + 1) * t;
            let want = rf::seq_logratio(&mask[s.clone()], &logp[s.clone()], &reff[s]);
            near(out[r], want, 1e-6, 1e-30);
        }
    }
}

#[test]
fn dpo_gradients_match_finite_differences() {
    for &eps in &[0.0, 0.1, 0.5] {
        for &h in &[-30.0, -3.0, -0.2, 0.0, 0.7, 4.0, 25.0] {
            let (mut l, mut g) = ([0f32], [0f32]);
            // ρ_l = 0, β = 1 → h = ρ_w
            dpo::dpo_loss(
                Exec::new(),
                &DpoCfg { beta: 1.0, label_smoothing: eps as f32 },
                &[h as f32],
                &[0.0],
                PairOut { loss: &mut l, dl_dh: &mut g, margin: None },
            )
            .unwrap();
            let want = fd(|x| rf::smoothed_logistic(x, eps).0, h);
            near(g[0], want, 1e-5, 1e-9);
        }
    }
    // The per-token gradient: ∂L/∂logp_t(y_w) = β·∂L/∂h·mask_t, checked through ρ.
    let (t, beta, eps) = (5, 0.3f64, 0.2f64);
    let mask = [1u8, 0, 1, 1, 0];
    let lp = rand_f32(t, 1, 3.0);
    let rl = rand_f32(t, 2, 3.0);
    let rho_l = -1.5f64;
    let loss_of = |lp: &[f32]| rf::dpo(beta, eps, rf::seq_logratio(&mask, lp, &rl), rho_l).0;
    let mut rho = [0f32];
    dpo::seq_logratio(Exec::new(), t, &mask, &lp, &rl, &mut rho).unwrap();
    let (mut l, mut g) = ([0f32], [0f32]);
    dpo::dpo_loss(
        Exec::new(),
        &DpoCfg { beta: beta as f32, label_smoothing: eps as f32 },
        &rho,
        &[rho_l as f32],
        PairOut { loss: &mut l, dl_dh: &mut g, margin: None },
    )
    .unwrap();
    let mut grad = poisoned(t);
    dpo::seq_logratio_bwd(Exec::new(), t, &mask, &[(beta as f32) * g[0]], &mut grad).unwrap();
    for i in 0..t {
        let want = fd32(
            |x| {
                let mut v = lp.clone();
                v[i] = x;
                loss_of(&v)
            },
            lp[i],
        );
        near(grad[i], want, 1e-5, 1e-9);
        if mask[i] == 0 {
            assert_eq!(grad[i].to_bits(), 0);
        }
    }
}

#[test]
fn simpo_gradient_and_errors() {
    let (beta, gamma) = (2.0f64, 1.0f64);
    let (sw, lw, sl, ll) = (-12.0f64, 7u32, -20.0f64, 9u32);
    let (mut l, mut g) = ([f32::NAN], [f32::NAN]);
    let cfg = SimpoCfg { beta: beta as f32, gamma: gamma as f32, label_smoothing: 0.1 };
    dpo::simpo_loss(
        Exec::new(),
        &cfg,
        &[sw as f32],
        &[lw],
        &[sl as f32],
        &[ll],
        PairOut { loss: &mut l, dl_dh: &mut g, margin: None },
    )
    .unwrap();
    let want = fd(|x| rf::simpo(beta, gamma, 0.1, x, lw, sl, ll).0, sw);
    near(g[0] * (beta / lw as f64) as f32, want, 1e-4, 1e-9);
    // |y| = 0 is an error and nothing is written.
    let (mut l, mut g) = (poisoned(2), poisoned(2));
    let e = dpo::simpo_loss(
        Exec::new(),
        &cfg,
        &[0.0, 0.0],
        &[3, 0],
        &[0.0, 0.0],
        &[1, 1],
        PairOut { loss: &mut l, dl_dh: &mut g, margin: None },
    )
    .unwrap_err();
    assert!(matches!(e, TmError::InvalidArgument(_)));
    assert!(untouched(&l) && untouched(&g));
    for bad in [
        DpoCfg { beta: 0.0, label_smoothing: 0.0 },
        DpoCfg { beta: f32::NAN, label_smoothing: 0.0 },
        DpoCfg { beta: 0.1, label_smoothing: 1.5 },
        DpoCfg { beta: 0.1, label_smoothing: -0.1 },
    ] {
        let (mut l, mut g) = (poisoned(1), poisoned(1));
        assert!(matches!(
            dpo::dpo_loss(Exec::new(), &bad, &[1.0], &[0.0], PairOut { loss: &mut l, dl_dh: &mut g, margin: None }),
            Err(TmError::InvalidArgument(_))
        ));
        assert!(untouched(&l));
    }
    let (mut l, mut g) = (poisoned(1), poisoned(2));
    assert!(matches!(
        dpo::dpo_loss(
            Exec::new(),
            &DpoCfg::default(),
            &[1.0],
            &[0.0],
            PairOut { loss: &mut l, dl_dh: &mut g, margin: None }
        ),
        Err(TmError::LengthMismatch { .. })
    ));
    // Infinite margins: 0 and +inf, never NaN, for ε = 0.
    let (mut l, mut g) = (poisoned(2), poisoned(2));
    dpo::dpo_loss(
        Exec::new(),
        &DpoCfg::default(),
        &[f32::INFINITY, f32::NEG_INFINITY],
        &[0.0, 0.0],
        PairOut { loss: &mut l, dl_dh: &mut g, margin: None },
    )
    .unwrap();
    assert_eq!(l, [0.0, f32::INFINITY]);
    assert_eq!(g, [0.0, -1.0]);
}

// ------------------------------------------------------------------------------------------
// T-REG
// ------------------------------------------------------------------------------------------

proptest! {
    #[test]
    fn treg_matches_reference(
        t in 0usize..30, rows in 0usize..4, seed in any::<u32>(),
        vals in prop::collection::vec(hostile_logit(), 300),
        beta in 0.01f32..2.0, mean in any::<bool>(),
    ) {
        let n = rows * t;
        let mask: Vec<u8> = (0..n).map(|i| (tokenmath_testutil::unit_hash(i, seed) < 0.6) as u8).collect();
        let lb: Vec<f32> = (0..n).map(|i| vals[i % 300]).collect();
        let lw: Vec<f32> = (0..n).map(|i| vals[(i * 11 + 5) % 300]).collect();
        let mut r_hat = poisoned(n);
        t_reg::treg_token_rewards(Exec::new(), &mask, &lb, &lw, &mut r_hat).unwrap();
        for i in 0..n {
            if mask[i] == 0 { prop_assert_eq!(r_hat[i].to_bits(), 0); continue; }
            near(r_hat[i], rf::treg_token_reward(lb[i] as f64, lw[i] as f64), 1e-6, 1e-12);
            prop_assert!(r_hat[i].is_nan() || r_hat[i].abs() <= 0.5);
        }
        let logp: Vec<f32> = lb.iter().map(|x| x.min(0.0)).collect();
        let (mut loss, mut grad) = (poisoned(rows), poisoned(n));
        let red = if mean { Reduction::MeanOverMask } else { Reduction::Sum };
        t_reg::treg_reg_loss(Exec::new(), &TregRegCfg { beta, reduction: red }, t, &mask, &logp, &r_hat, &mut loss, &mut grad).unwrap();
        for r in 0..rows {
            let s = r * t..(r + 1) * t;
            let (rl, rg) = rf::treg_reg(beta as f64, mean, &mask[s.clone()], &logp[s.clone()], &r_hat[s.clone()]);
            near(loss[r], rl, 1e-6, 1e-30);
            for (k, i) in s.enumerate() { near(grad[i], rg[k], 1e-6, 1e-30); }
        }
    }

    #[test]
    fn treg_loss_matches_reference(
        trip in prop::collection::vec((hostile_scalar(), -5.0f32..5.0, -5.0f32..5.0), 0..10),
        alpha in prop_oneof![Just(0.0f32), 0.0f32..1.0], eps in 0.0f32..0.5, sg in any::<bool>(),
    ) {
        let n = trip.len();
        let h: Vec<f32> = trip.iter().map(|x| x.0).collect();
        let rw: Vec<f32> = trip.iter().map(|x| x.1).collect();
        let rl: Vec<f32> = trip.iter().map(|x| x.2).collect();
        let (mut loss, mut g, mut gr, mut w) = (poisoned(n), poisoned(n), poisoned(n), poisoned(n));
        t_reg::treg_loss(Exec::new(), &TregCfg { alpha, label_smoothing: eps, stop_grad_weight: sg }, &h, &rw, &rl,
            TregOut { loss: &mut loss, dl_dh: &mut g, dl_dreg: &mut gr, weight: Some(&mut w) }).unwrap();
        for i in 0..n {
            let (a, b, c, d) = rf::treg(alpha as f64, eps as f64, sg, h[i] as f64, rw[i] as f64, rl[i] as f64);
            near(loss[i], a, 1e-6, 1e-30);
            near(g[i], b, 1e-6, 1e-12);
            near(gr[i], c, 1e-6, 1e-30);
            near(w[i], d, 1e-6, 1e-30);
        }
    }
}

#[test]
fn treg_gradients_match_finite_differences() {
    let (alpha, eps) = (0.25f64, 0.1f64);
    for &sg in &[true, false] {
        for &h in &[-6.0f64, -0.5, 0.0, 1.2, 8.0] {
            let (rw, rl) = (0.7f64, -2.3f64);
            let (mut l, mut g, mut gr) = ([0f32], [0f32], [0f32]);
            t_reg::treg_loss(
                Exec::new(),
                &TregCfg { alpha: alpha as f32, label_smoothing: eps as f32, stop_grad_weight: sg },
                &[h as f32],
                &[rw as f32],
                &[rl as f32],
                TregOut { loss: &mut l, dl_dh: &mut g, dl_dreg: &mut gr, weight: None },
            )
            .unwrap();
            // Without the stop-gradient, w's dependence on h is part of the gradient; with it,
            // w is frozen at its value.
            let w0 = rf::treg(alpha, eps, true, h, 0.0, 0.0).3;
            let total = |x: f64| {
                let w = if sg { w0 } else { rf::treg(alpha, eps, true, x, 0.0, 0.0).3 };
                rf::smoothed_logistic(x, eps).0 + alpha * w * (rw + rl)
            };
            near(g[0], fd(total, h), 1e-4, 1e-8);
            near(gr[0], fd(|x| rf::treg(alpha, eps, sg, h, x, rl).0, rw), 1e-4, 1e-8);
        }
    }
    // ∂L_REG/∂logp
    let (t, beta) = (6, 0.5f64);
    let mask = [1u8, 1, 0, 1, 0, 1];
    let logp = rand_f32(t, 9, 4.0);
    let r_hat = rand_f32(t, 10, 0.5);
    for red in [Reduction::Sum, Reduction::MeanOverMask] {
        let (mut l, mut g) = ([0f32], poisoned(t));
        t_reg::treg_reg_loss(
            Exec::new(),
            &TregRegCfg { beta: beta as f32, reduction: red },
            t,
            &mask,
            &logp,
            &r_hat,
            &mut l,
            &mut g,
        )
        .unwrap();
        for i in 0..t {
            let want = fd32(
                |x| {
                    let mut v = logp.clone();
                    v[i] = x;
                    rf::treg_reg(beta, red == Reduction::MeanOverMask, &mask, &v, &r_hat).0
                },
                logp[i],
            );
            near(g[i], want, 1e-5, 1e-9);
        }
    }
    // Empty mask, mean: 0 and a zero gradient.
    let (mut l, mut g) = (poisoned(1), poisoned(3));
    t_reg::treg_reg_loss(
        Exec::new(),
        &TregRegCfg { beta: 0.1, reduction: Reduction::MeanOverMask },
        3,
        &[0; 3],
        &[f32::NAN; 3],
        &[f32::NAN; 3],
        &mut l,
        &mut g,
    )
    .unwrap();
    assert_eq!((l[0], g.clone()), (0.0, vec![0.0; 3]));
    let (mut l, mut g, mut gr) = (poisoned(1), poisoned(1), poisoned(1));
    assert!(matches!(
        t_reg::treg_loss(
            Exec::new(),
            &TregCfg { alpha: -1.0, ..Default::default() },
            &[0.0],
            &[0.0],
            &[0.0],
            TregOut { loss: &mut l, dl_dh: &mut g, dl_dreg: &mut gr, weight: None }
        ),
        Err(TmError::InvalidArgument(_))
    ));
    assert!(untouched(&l));
}

// ------------------------------------------------------------------------------------------
// cDPO scores
// ------------------------------------------------------------------------------------------

fn combine_ref(beta: f32, p: f32, n: f32) -> f32 {
    if p == f32::NEG_INFINITY || n == f32::NEG_INFINITY {
        f32::NEG_INFINITY
    } else {
        (1.0 + beta).mul_add(p, -beta * n)
    }
}

/// The scores by materialising the combined row and running the logits forward.
fn scores_materialised<T: LogitElem>(
    beta: f32,
    pos: &[T],
    neg: &[T],
    rows: usize,
    v: usize,
    stride: usize,
    tg: &[u32],
) -> Vec<f32> {
    let mut z = vec![0f32; rows * v];
    for r in 0..rows {
        for c in 0..v {
            z[r * v + c] = combine_ref(beta, pos[r * stride + c].to_f32(), neg[r * stride + c].to_f32());
        }
    }
    let targets: Vec<i32> = tg.iter().map(|&t| t as i32).collect();
    let (mut lse, mut h, mut lp) = (vec![0f32; rows], vec![0f32; rows], vec![0f32; rows]);
    logits::stats_fwd(
        Exec::new().with_backend(Backend::Portable),
        Mat::dense(&z, rows, v).unwrap(),
        &RowInputs { targets: Some(&targets), ..Default::default() },
        FwdOut { lse: &mut lse, entropy: &mut h, logp: Some(&mut lp), max: None, log_sum: None },
    )
    .unwrap();
    lp.iter().map(|&l| libm::expf(l)).collect()
}

fn check_bitwise<T: LogitElem>(conv: impl Fn(f32) -> T, rows: usize, v: usize, pad: usize, beta: f32, seed: u64) {
    let stride = v + pad;
    let mut p: Vec<f32> = rand_f32(rows * stride, seed, 8.0);
    let n: Vec<f32> = rand_f32(rows * stride, seed + 1, 8.0);
    // A masked vocabulary tail in both models and one model-specific mask.
    for r in 0..rows {
        for c in 0..v {
            if c % 97 == 96 {
                p[r * stride + c] = f32::NEG_INFINITY;
            }
        }
    }
    let p: Vec<T> = p.into_iter().map(&conv).collect();
    let mut n: Vec<T> = n.into_iter().map(&conv).collect();
    if v > 3 {
        n[1] = conv(f32::NEG_INFINITY);
    }
    let tg: Vec<u32> = (0..rows).map(|r| ((r * 7919) % v) as u32).collect();
    let want = scores_materialised(beta, &p, &n, rows, v, stride, &tg);
    for b in Backend::all_supported() {
        for threads in [1, 2, 3] {
            let mut out = poisoned(rows);
            let st = cdpo::cdpo_ce_scores(
                Exec::new().with_backend(b).with_threads(threads),
                beta,
                Mat::new(&p, rows, v, stride).unwrap(),
                Mat::new(&n, rows, v, stride).unwrap(),
                &tg,
                &mut out,
            )
            .unwrap();
            assert_eq!(st.nonfinite_rows, 0);
            assert_eq!(nan_bits(&out), nan_bits(&want), "{} threads {threads} V {v}", b.name());
        }
    }
}

#[test]
fn cdpo_scores_equal_the_logits_forward_on_the_materialised_row() {
    for &v in &[1usize, 7, 8, 9, 2047, 2048, 2049, 5000, 4096 * 3 + 5] {
        check_bitwise(|x| x, 5, v, 3, 1.0, v as u64);
        check_bitwise(bf16::from_f32, 3, v, 0, 1.0, v as u64 + 7);
        check_bitwise(f16::from_f32, 3, v, 1, 0.5, v as u64 + 9);
    }
    check_bitwise(|x| x, 4, 3000, 0, 0.0, 42);
    check_bitwise(|x| x + 1e30, 4, 3000, 0, 1.0, 43);
}

fn avx512_here() -> bool {
    static NOTE: std::sync::Once = std::sync::Once::new();
    let ok = Backend::Avx512.is_supported();
    if !ok {
        NOTE.call_once(|| eprintln!("SKIPPED the AVX-512 path of the cDPO scores: this CPU has no AVX-512 F/BW/DQ/VL"));
    }
    ok
}

/// Scores (or the error) of one backend and thread count, on `T` logits.
#[allow(clippy::too_many_arguments)]
fn cdpo_run<T: LogitElem>(
    backend: Backend,
    threads: usize,
    beta: f32,
    p: &[T],
    n: &[T],
    rows: usize,
    v: usize,
    stride: usize,
    tg: &[u32],
) -> Result<(Vec<u32>, logits::Status), TmError> {
    let mut out = poisoned(rows);
    let st = cdpo::cdpo_ce_scores(
        Exec::new().with_backend(backend).with_threads(threads),
        beta,
        Mat::new(p, rows, v, stride)?,
        Mat::new(n, rows, v, stride)?,
        tg,
        &mut out,
    )?;
    Ok((nan_bits(&out), st))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    /// The AVX-512 path against the portable and AVX2 paths, bitwise (scores, status and
    /// errors), on f32, bf16 and f16 logits, with row strides, `−inf` columns in either model
    /// and whole masked rows, NaN and `+inf`, spreads beyond 87 units (the flushing `exp`),
    /// offsets of `1e30`, every `V mod 16` (one and two blocks), 1 and 2 threads.
    #[test]
    fn cdpo_avx512_matches_portable_and_avx2_bitwise(
        rows in 1usize..4,
        q in prop_oneof![0usize..10, 126usize..130, 250usize..258],
        rem in 0usize..16,
        pad in 0usize..3,
        beta in prop_oneof![Just(0.0f32), Just(0.5), Just(1.0), Just(2.5)],
        scale in prop_oneof![Just(8.0f32), Just(300.0)],
        offset in prop_oneof![3 => Just(0.0f32), 1 => Just(1e30)],
        seed in any::<u64>(),
        specials in proptest::collection::vec((any::<usize>(), 0u8..5), 0..8),
        masked_row in proptest::option::of(0usize..4),
    ) {
        if !avx512_here() {
            return Ok(());
        }
        let v = (16 * q + rem).max(1);
        let stride = v + pad;
        let mut p: Vec<f32> = rand_f32(rows * stride, seed, scale).into_iter().map(|x| x + offset).collect();
        let mut n: Vec<f32> = rand_f32(rows * stride, seed ^ 0x9E37, scale).into_iter().map(|x| x + offset).collect();
        for &(at, kind) in &specials {
            let i = at % (rows * stride);
            match kind {
                0 => p[i] = f32::NEG_INFINITY,
                1 => n[i] = f32::NEG_INFINITY,
                2 => p[i] = f32::NAN,
                3 => n[i] = f32::INFINITY,
                _ => {
                    // A masked run of columns in both models.
                    for j in i..(i + 40).min(rows * stride) {
                        p[j] = f32::NEG_INFINITY;
                    }
                }
            }
        }
        if let Some(r) = masked_row.filter(|&r| r < rows) {
            p[r * stride..r * stride + v].fill(f32::NEG_INFINITY);
        }
        let tg: Vec<u32> = (0..rows).map(|r| ((seed as usize >> 7).wrapping_add(r * 7919) % v) as u32).collect();
        macro_rules! compare {
            ($conv:expr, $name:expr) => {{
                let pt: Vec<_> = p.iter().map(|&x| $conv(x)).collect();
                let nt: Vec<_> = n.iter().map(|&x| $conv(x)).collect();
                for threads in [1, 2] {
                    let wide = cdpo_run(Backend::Avx512, threads, beta, &pt, &nt, rows, v, stride, &tg);
                    for b in [Backend::Portable, Backend::Avx2Fma] {
                        let other = cdpo_run(b, threads, beta, &pt, &nt, rows, v, stride, &tg);
                        prop_assert_eq!(&wide, &other, "{} vs {:?}, {} threads, V {}", $name, b, threads, v);
                    }
                }
            }};
        }
        compare!(|x: f32| x, "f32");
        compare!(bf16::from_f32, "bf16");
        compare!(f16::from_f32, "f16");
    }
}

proptest! {
    #[test]
    fn cdpo_scores_match_f64_reference(
        v in 1usize..40, rows in 1usize..4, beta in prop_oneof![Just(1.0f32), 0.0f32..3.0],
        vals in prop::collection::vec(hostile_logit(), 320), tsel in any::<u64>(),
    ) {
        let p: Vec<f32> = (0..rows * v).map(|i| vals[i % 320]).collect();
        let n: Vec<f32> = (0..rows * v).map(|i| vals[(i * 13 + 1) % 320]).collect();
        let tg: Vec<u32> = (0..rows).map(|r| ((tsel >> (r * 8)) as usize % v) as u32).collect();
        let mut out = poisoned(rows);
        let res = cdpo::cdpo_ce_scores(Exec::new(), beta, Mat::dense(&p, rows, v).unwrap(), Mat::dense(&n, rows, v).unwrap(), &tg, &mut out);
        for r in 0..rows {
            // The reference works on the f32-combined row (the kernel's defined input), in f64.
            let z: Vec<f64> = (0..v).map(|c| combine_ref(beta, p[r * v + c], n[r * v + c]) as f64).collect();
            let all_masked = z.iter().all(|&x| x == f64::NEG_INFINITY);
            match &res {
                Err(TmError::NoFiniteLogit { row }) => { prop_assert!(*row <= r || !all_masked); if *row == r { prop_assert!(all_masked); } break; }
                Err(e) => prop_assert!(false, "unexpected {e:?}"),
                Ok(_) => {}
            }
            let nonfinite = z.iter().any(|x| x.is_nan() || *x == f64::INFINITY);
            if nonfinite { prop_assert!(out[r].is_nan()); continue; }
            let zero = vec![0.0; v];
            let want = rf::cdpo_ce_score(0.0, &z, &zero, tg[r] as usize);
            // exp(logp): logp's error is a few ulps of |z_t − m| + log V.
            near(out[r], want, 1e-5, 1e-6);
            prop_assert!((0.0..=1.0).contains(&out[r]));
        }
    }
}

#[test]
fn cdpo_scores_edges_and_errors() {
    let e = Exec::new();
    let p = [1.0f32, 2.0, f32::NEG_INFINITY, 0.5];
    let n = [0.0f32, f32::NEG_INFINITY, 3.0, 0.5];
    // Column 1 is masked by the negative model, column 2 by the positive one.
    let mut out = poisoned(1);
    cdpo::cdpo_ce_scores(e, 1.0, Mat::dense(&p, 1, 4).unwrap(), Mat::dense(&n, 1, 4).unwrap(), &[1], &mut out).unwrap();
    assert_eq!(out[0], 0.0);
    cdpo::cdpo_ce_scores(e, 1.0, Mat::dense(&p, 1, 4).unwrap(), Mat::dense(&n, 1, 4).unwrap(), &[0], &mut out).unwrap();
    let want = rf::cdpo_ce_score(1.0, &[1.0, 2.0, f64::NEG_INFINITY, 0.5], &[0.0, f64::NEG_INFINITY, 3.0, 0.5], 0);
    near(out[0], want, 1e-6, 0.0);
    // V = 1 → 1.
    cdpo::cdpo_ce_scores(
        e,
        1.0,
        Mat::dense(&[3.0f32], 1, 1).unwrap(),
        Mat::dense(&[-7.0f32], 1, 1).unwrap(),
        &[0],
        &mut out,
    )
    .unwrap();
    assert_eq!(out[0], 1.0);
    // A NaN row is NaN and counted; other rows unaffected.
    let p2 = [0.0f32, f32::NAN, 1.0, 2.0];
    let n2 = [0.0f32; 4];
    let mut out2 = poisoned(2);
    let st = cdpo::cdpo_ce_scores(
        e,
        1.0,
        Mat::dense(&p2, 2, 2).unwrap(),
        Mat::dense(&n2, 2, 2).unwrap(),
        &[0, 0],
        &mut out2,
    )
    .unwrap();
    assert_eq!((st.nonfinite_rows, st.first_nonfinite_row), (1, Some(0)));
    assert!(out2[0].is_nan() && out2[1].is_finite());
    // Errors before anything is written.
    let m = |d: &'static [f32], r, c| Mat::dense(d, r, c).unwrap();
    let mut o = poisoned(1);
    assert!(matches!(
        cdpo::cdpo_ce_scores(e, 1.0, m(&[1.0, 2.0], 1, 2), m(&[1.0, 2.0], 1, 2), &[2], &mut o),
        Err(TmError::TargetOutOfRange { row: 0, target: 2, vocab: 2 })
    ));
    assert!(matches!(
        cdpo::cdpo_ce_scores(e, -1.0, m(&[1.0, 2.0], 1, 2), m(&[1.0, 2.0], 1, 2), &[0], &mut o),
        Err(TmError::InvalidArgument(_))
    ));
    assert!(matches!(
        cdpo::cdpo_ce_scores(e, f32::NAN, m(&[1.0, 2.0], 1, 2), m(&[1.0, 2.0], 1, 2), &[0], &mut o),
        Err(TmError::InvalidArgument(_))
    ));
    assert!(matches!(
        cdpo::cdpo_ce_scores(e, 1.0, m(&[1.0, 2.0], 1, 2), m(&[1.0, 2.0], 2, 1), &[0], &mut o),
        Err(TmError::LengthMismatch { .. })
    ));
    assert!(matches!(cdpo::cdpo_ce_scores(e, 1.0, m(&[], 1, 0), m(&[], 1, 0), &[0], &mut o), Err(TmError::EmptyVocab)));
    assert!(untouched(&o));
    let ninf = [f32::NEG_INFINITY; 2];
    assert!(matches!(
        cdpo::cdpo_ce_scores(
            e.with_threads(2),
            1.0,
            Mat::dense(&[0.0f32, 0.0, 0.0, 0.0], 2, 2).unwrap(),
            Mat::dense(&[0.0f32, 0.0, ninf[0], ninf[1]], 2, 2).unwrap(),
            &[0, 0],
            &mut poisoned(2)
        ),
        Err(TmError::NoFiniteLogit { row: 1 })
    ));
}

// ------------------------------------------------------------------------------------------
// cDPO loss
// ------------------------------------------------------------------------------------------

proptest! {
    #[test]
    fn cdpo_loss_matches_reference_and_fd(
        t in 1usize..12, rows in 1usize..4, seed in any::<u32>(),
        beta in 0.01f32..1.0, eps in 0.0f32..0.5, only_neg in any::<bool>(), seqw in any::<bool>(),
    ) {
        let n = rows * t;
        let mw: Vec<u8> = (0..n).map(|i| (tokenmath_testutil::unit_hash(i, seed) < 0.7) as u8).collect();
        let ml: Vec<u8> = (0..n).map(|i| (tokenmath_testutil::unit_hash(i, seed ^ 5) < 0.7) as u8).collect();
        let mut dw = rand_f32(n, seed as u64, 4.0);
        let dl = rand_f32(n, seed as u64 + 1, 4.0);
        let c: Vec<f32> = (0..n).map(|i| tokenmath_testutil::unit_hash(i, 77)).collect();
        let v: Vec<f32> = (0..n).map(|i| tokenmath_testutil::unit_hash(i, 78)).collect();
        for i in 0..n { if mw[i] == 0 { dw[i] = f32::NAN; } } // masked entries are not read
        let cfg = CdpoCfg { beta, label_smoothing: eps, only_neg, form: if seqw { CdpoForm::SequenceWeighted } else { CdpoForm::PositionwiseCode } };
        let x = CdpoInputs { t, mask_w: &mw, mask_l: &ml, dw: &dw, dl: &dl, c: Some(&c), v: &v };
        let (mut gw, mut gl) = (poisoned(n), poisoned(n));
        let loss = cdpo::cdpo_loss(Exec::new(), &cfg, &x, &mut gw, &mut gl).unwrap();
        let cc = if only_neg { None } else { Some(&c[..]) };
        let run = |dw: &[f32], dl: &[f32]| rf::cdpo_loss(beta as f64, eps as f64, !seqw, t, &mw, &ml, dw, dl, cc, &v);
        let (rl, rgw, rgl) = run(&dw, &dl);
        near(loss, rl, 1e-6, 1e-12);
        for i in 0..n {
            near(gw[i], rgw[i], 1e-6, 1e-12);
            near(gl[i], rgl[i], 1e-6, 1e-12);
            if mw[i] != 0 {
                let want = fd32(|x| { let mut d = dw.clone(); d[i] = x; run(&d, &dl).0 }, dw[i]);
                near(gw[i], want, 2e-3, 1e-5);
            } else { prop_assert_eq!(gw[i].to_bits(), 0); }
            if ml[i] != 0 {
                let want = fd32(|x| { let mut d = dl.clone(); d[i] = x; run(&dw, &d).0 }, dl[i]);
                near(gl[i], want, 2e-3, 1e-5);
            } else { prop_assert_eq!(gl[i].to_bits(), 0); }
        }
    }
}

#[test]
fn cdpo_loss_code_quirks_and_errors() {
    // Entries masked on both sides contribute log 2 and dilute the mean (the released code).
    let (mut gw, mut gl) = (poisoned(2), poisoned(2));
    let x = CdpoInputs {
        t: 2,
        mask_w: &[0, 0],
        mask_l: &[0, 0],
        dw: &[1.0, 1.0],
        dl: &[1.0, 1.0],
        c: None,
        v: &[1.0, 1.0],
    };
    let l = cdpo::cdpo_loss(Exec::new(), &CdpoCfg::default(), &x, &mut gw, &mut gl).unwrap();
    near(l, std::f64::consts::LN_2, 1e-7, 0.0);
    let mut c = poisoned(0);
    let x = CdpoInputs { t: 2, mask_w: &[], mask_l: &[], dw: &[], dl: &[], c: None, v: &[] };
    assert!(matches!(
        cdpo::cdpo_loss(Exec::new(), &CdpoCfg::default(), &x, &mut c, &mut poisoned(0)),
        Err(TmError::InvalidArgument(_))
    ));
    let x = CdpoInputs { t: 1, mask_w: &[1], mask_l: &[1], dw: &[1.0], dl: &[1.0], c: None, v: &[1.0] };
    let (mut gw, mut gl) = (poisoned(1), poisoned(1));
    let cfg = CdpoCfg { only_neg: false, ..Default::default() };
    assert!(matches!(cdpo::cdpo_loss(Exec::new(), &cfg, &x, &mut gw, &mut gl), Err(TmError::InvalidArgument(_))));
    let x = CdpoInputs { t: 1, mask_w: &[1], mask_l: &[1], dw: &[1.0], dl: &[1.0], c: None, v: &[1.0, 2.0] };
    assert!(matches!(
        cdpo::cdpo_loss(Exec::new(), &CdpoCfg::default(), &x, &mut gw, &mut gl),
        Err(TmError::LengthMismatch { .. })
    ));
    assert!(untouched(&gw) && untouched(&gl));
}

// ------------------------------------------------------------------------------------------
// pass@k
// ------------------------------------------------------------------------------------------

fn binom_u128(n: u64, k: u64) -> u128 {
    if k > n {
        return 0;
    }
    let mut r: u128 = 1;
    for i in 0..k as u128 {
        r = r * (n as u128 - i) / (i + 1);
    }
    r
}

#[test]
fn pass_at_k_exact_for_small_n() {
    for n in 1..=60u64 {
        for c in 0..=n {
            for k in 1..=n {
                let got = cdpo::pass_at_k(n, c, k).unwrap();
                let (num, den) = (binom_u128(n - c, k), binom_u128(n, k)); // num = 0 when n − c < k
                                                                           // 1 − num/den, exactly in rationals, rounded: compare within a few ulps of the value.
                let want = (den - num) as f64 / den as f64;
                let tol = 8.0 * f64::EPSILON * want.max(f64::MIN_POSITIVE) + 1e-300;
                assert!((got - want).abs() <= tol.max(want * 1e-14), "n {n} c {c} k {k}: {got} vs {want}");
            }
        }
    }
}

#[test]
fn pass_at_k_large_n_matches_log_gamma() {
    for &(n, c, k) in &[
        (1_000_000u64, 1u64, 1u64),
        (1_000_000, 3, 100),
        (1_000_000, 500_000, 10),
        (1_000_000, 999_990, 5),
        (1_000_000, 1000, 1000),
        (1_000_000, 10, 999_990),
        (999_983, 17, 4096),
        (1_000_000, 999_999, 1),
        (1_000_000, 1, 1_000_000),
        (100_000, 50, 64),
    ] {
        let got = cdpo::pass_at_k(n, c, k).unwrap();
        let want = rf::pass_at_k(n, c, k);
        // The log-gamma oracle is good to ~3e-9 absolute at n = 10^6 (ln Γ(10^6) ≈ 1.3e7).
        assert!((got - want).abs() <= 1e-8, "n {n} c {c} k {k}: {got} vs {want}");
        assert!((0.0..=1.0).contains(&got));
    }
    // Tiny results keep their relative accuracy: pass@1 with c = 1 is exactly 1/n.
    let got = cdpo::pass_at_k(1_000_000, 1, 1).unwrap();
    assert!((got - 1e-6).abs() <= 1e-20);
    assert_eq!(cdpo::pass_at_k(10, 0, 3).unwrap(), 0.0);
    assert_eq!(cdpo::pass_at_k(10, 8, 3).unwrap(), 1.0);
    // Huge c and k (found by fuzzing: 2^40 factors would run for hours): the product drops
    // below e^-40 within a few hundred factors, where the result is exactly 1.0.
    assert_eq!(cdpo::pass_at_k(1 << 42, 1 << 40, 1 << 40).unwrap(), 1.0);
    assert_eq!(cdpo::pass_at_k(1 << 53, 1 << 30, 1 << 30).unwrap(), 1.0);
    // Above the cut-off every factor counts: 1 − ≈2^-50 is still below 1.
    let near = cdpo::pass_at_k(1 << 50, 1 << 49, 50).unwrap();
    assert!((1.0 - 2e-15..1.0).contains(&near), "{near}");
    for (n, c, k) in [(5, 6, 1), (5, 1, 0), (5, 1, 6)] {
        assert!(matches!(cdpo::pass_at_k(n, c, k), Err(TmError::InvalidArgument(_))));
    }
}

// ------------------------------------------------------------------------------------------
// TVM
// ------------------------------------------------------------------------------------------

use tokenmath_core::preference::tvm::{self, ValueLoss};

fn flatten(paths: &[Vec<u32>]) -> (Vec<u32>, Vec<usize>) {
    let mut offsets = vec![0];
    let mut tokens = Vec::new();
    for p in paths {
        tokens.extend_from_slice(p);
        offsets.push(tokens.len());
    }
    (tokens, offsets)
}

proptest! {
    #[test]
    fn tvm_labels_match_the_definition(
        // A small alphabet and shared stems so that paths share prefixes, identical paths and
        // proper prefixes included; empty paths too.
        paths in prop::collection::vec((0usize..3, prop::collection::vec(0u32..3, 0..7)), 0..12),
        outcome_bits in any::<u16>(),
    ) {
        let stems: [&[u32]; 3] = [&[], &[7, 7], &[7, 8, 9]];
        let paths: Vec<Vec<u32>> = paths.into_iter().map(|(s, t)| stems[s].iter().copied().chain(t).collect()).collect();
        let outcome: Vec<u8> = (0..paths.len()).map(|i| ((outcome_bits >> i) & 1) as u8).collect();
        let (tokens, offsets) = flatten(&paths);
        let mut scratch = vec![usize::MAX; tvm::tvm_prefix_value_labels_scratch(paths.len())];
        let mut out = poisoned(tokens.len());
        tvm::tvm_prefix_value_labels(&tokens, &offsets, &outcome, &mut scratch, &mut out).unwrap();
        let want = rf::tvm_labels(&paths, &outcome);
        for (n, w) in want.iter().enumerate() {
            for (k, &v) in w.iter().enumerate() {
                prop_assert_eq!(out[offsets[n] + k], v as f32, "path {} token {}", n, k);
            }
        }
    }

    #[test]
    fn value_loss_matches_reference_and_fd(
        xs in prop::collection::vec((hostile_scalar(), 0.0f32..=1.0, any::<bool>()), 0..16), bce in any::<bool>(),
    ) {
        // The reference's textbook BCE `softplus(x) − y·x` is `inf − inf` at x = ±inf (the
        // kernel's form is exact there: tested in `tvm_edges_and_errors`).
        let x: Vec<f32> = xs.iter().map(|v| if bce && v.0.is_infinite() { 1e30f32.copysign(v.0) } else { v.0 }).collect();
        let y: Vec<f32> = xs.iter().map(|v| v.1).collect();
        let mask: Vec<u8> = xs.iter().map(|v| v.2 as u8).collect();
        let mut g = poisoned(x.len());
        let kind = if bce { ValueLoss::Bce } else { ValueLoss::Mse };
        let l = tvm::value_loss(Exec::new(), kind, &mask, &x, &y, &mut g).unwrap();
        let (rl, rg) = rf::tvm_value_loss(bce, &mask, &x, &y);
        near(l, rl, 1e-6, 1e-30);
        // Finite differences of the total only where no other term swamps it.
        let moderate = x.iter().zip(&mask).all(|(v, &m)| m == 0 || v.abs() < 30.0);
        for i in 0..x.len() {
            near(g[i], rg[i], 1e-6, 1e-30);
            if moderate && mask[i] != 0 {
                let want = fd32(|v| { let mut xx = x.clone(); xx[i] = v; rf::tvm_value_loss(bce, &mask, &xx, &y).0 }, x[i]);
                near(g[i], want, 2e-3, 1e-6);
            }
        }
    }

    #[test]
    fn beam_select_matches_a_full_sort(
        scores in prop::collection::vec(prop_oneof![8 => -3.0f32..3.0, 2 => Just(1.0f32), 1 => Just(f32::NAN),
            1 => Just(f32::INFINITY), 1 => Just(f32::NEG_INFINITY), 1 => Just(-0.0f32), 1 => Just(0.0f32)], 0..20),
        k in 0usize..25,
    ) {
        let mut out = vec![usize::MAX; k.min(scores.len())];
        let m = tvm::beam_step_select(&scores, k, &mut out).unwrap();
        prop_assert_eq!(m, k.min(scores.len()));
        prop_assert_eq!(out, rf::beam_select(&scores, k));
    }
}

#[test]
fn tvm_edges_and_errors() {
    // The worked example: three paths, two sharing "1 2".
    let paths = vec![vec![1, 2, 3], vec![1, 2, 4], vec![5]];
    let (tokens, offsets) = flatten(&paths);
    let mut scratch = vec![0; 6];
    let mut out = poisoned(7);
    tvm::tvm_prefix_value_labels(&tokens, &offsets, &[1, 0, 1], &mut scratch, &mut out).unwrap();
    assert_eq!(out, [0.5, 0.5, 1.0, 0.5, 0.5, 0.0, 1.0]);
    let mut out = poisoned(7);
    for (offs, outc, what) in [
        (vec![0, 3, 6, 8], vec![1u8, 0, 1], "end"),
        (vec![1, 3, 6, 7], vec![1, 0, 1], "start"),
        (vec![0, 4, 3, 7], vec![1, 0, 1], "order"),
        (vec![0, 3, 6, 7], vec![1, 2, 1], "outcome"),
    ] {
        let e = tvm::tvm_prefix_value_labels(&tokens, &offs, &outc, &mut scratch, &mut out);
        assert!(matches!(e, Err(TmError::InvalidArgument(_))), "{what}");
    }
    assert!(matches!(
        tvm::tvm_prefix_value_labels(&tokens, &offsets, &[1, 0, 1], &mut scratch[..5], &mut out),
        Err(TmError::LengthMismatch { .. })
    ));
    assert!(untouched(&out));
    // Empty mask: 0 and a zero gradient.
    let mut g = poisoned(2);
    assert_eq!(tvm::value_loss(Exec::new(), ValueLoss::Bce, &[0, 0], &[f32::NAN; 2], &[0.5; 2], &mut g).unwrap(), 0.0);
    assert_eq!(g, [0.0, 0.0]);
    // BCE at ±inf logits with matching hard labels is 0, not NaN.
    let mut g = poisoned(2);
    let l =
        tvm::value_loss(Exec::new(), ValueLoss::Bce, &[1, 1], &[f32::INFINITY, f32::NEG_INFINITY], &[1.0, 0.0], &mut g)
            .unwrap();
    assert_eq!((l, g.clone()), (0.0, vec![0.0, 0.0]));
    let mut o = [9usize; 1];
    assert!(matches!(tvm::beam_step_select(&[1.0, 2.0], 2, &mut o), Err(TmError::LengthMismatch { .. })));
    assert_eq!(o, [9]);
    assert_eq!(tvm::beam_step_select(&[0.1, f32::NAN, 0.7, 0.7], 3, &mut [0; 3]).unwrap(), 3);
}
