//! Policy losses against the f64 reference (`tokenmath_reference::policy_loss`) on hostile
//! inputs, finite-difference checks of every gradient (on the reference in f64, and of the
//! f32 kernels through the reference), and the invariants: clipping bounds, the dual-clip
//! bound, padding invariance.
//!
//! Tolerances are formulas: the kernels compute `Δ = logp − old_logp` in `f32` (relative error
//! `2^-24`) and `r = exp(Δ)` within 2 ulp, so a quantity proportional to `r` carries a relative
//! error of about `(|Δ| + 4)·2^-24`; on top of that the spec's defaults (`1e-5 + 1e-6·|ref|`
//! for losses, `1e-6 + 1e-5·|ref|` for gradients) allow for the remaining roundings.

mod common;

use common::POISON;
use proptest::prelude::*;
use tokenmath_core::policy_loss::*;
use tokenmath_core::{Exec, TmError};
use tokenmath_reference::policy_loss as rpl;
use tokenmath_testutil::all_written;

const U: f64 = 1.0 / (1u64 << 24) as f64;

fn tol_loss(want: f64, delta: f64) -> f64 {
    1e-5 + want.abs() * (1e-6 + (delta.abs() + 4.0) * 2.0 * U)
}

fn tol_grad(want: f64, delta: f64) -> f64 {
    1e-6 + want.abs() * (1e-5 + (delta.abs() + 4.0) * 2.0 * U)
}

/// `got` matches `want` within `tol`, with infinities and NaN matched exactly.
fn check(what: &str, i: usize, got: f32, want: f64, tol: f64) -> Result<(), TestCaseError> {
    let ok = if want.is_nan() {
        got.is_nan()
    } else if want.is_infinite() {
        got as f64 == want
    } else if (want as f32).is_infinite() {
        // Beyond the f32 range: the kernel's f32 result overflows (to the same sign).
        got == want as f32 || (got as f64 - want).abs() <= tol
    } else {
        (got as f64 - want).abs() <= tol
    };
    prop_assert!(ok, "{} at {}: got {:e} want {:e} (tol {:e})", what, i, got, want, tol);
    Ok(())
}

/// A batch of hostile per-token inputs; masked positions hold garbage.
#[derive(Clone, Debug)]
struct Batch {
    rows: usize,
    cols: usize,
    logp: Vec<f32>,
    old: Vec<f32>,
    refl: Vec<f32>,
    adv: Vec<f32>,
    isw: Vec<f32>,
    mask: Vec<u8>,
}

impl Batch {
    fn shape(&self) -> BatchShape {
        BatchShape::new(self.rows, self.cols)
    }
    fn inputs(&self, with_is: bool) -> PolicyInputs<'_> {
        PolicyInputs {
            shape: self.shape(),
            logp: &self.logp,
            old_logp: &self.old,
            adv: &self.adv,
            mask: &self.mask,
            is_weights: with_is.then_some(&self.isw[..]),
        }
    }
    fn valid(&self, i: usize) -> bool {
        self.mask[i] != 0
    }
    /// Appends `extra` padding columns of garbage to every row.
    fn padded(&self, extra: usize) -> Batch {
        let cols = self.cols + extra;
        let pad = |v: &Vec<f32>, g: f32| -> Vec<f32> {
            (0..self.rows)
                .flat_map(|b| {
                    v[b * self.cols..(b + 1) * self.cols].iter().copied().chain((0..extra).map(move |k| {
                        if k % 2 == 0 {
                            g
                        } else {
                            -g
                        }
                    }))
                })
                .collect()
        };
        Batch {
            rows: self.rows,
            cols,
            logp: pad(&self.logp, f32::NAN),
            old: pad(&self.old, f32::INFINITY),
            refl: pad(&self.refl, 1e30),
            adv: pad(&self.adv, f32::NAN),
            isw: pad(&self.isw, f32::INFINITY),
            mask: (0..self.rows)
                .flat_map(|b| {
                    self.mask[b * self.cols..(b + 1) * self.cols].iter().copied().chain((0..extra).map(|_| 0u8))
                })
                .collect(),
        }
    }
}

fn garbage() -> impl Strategy<Value = f32> {
    prop_oneof![
        Just(f32::NAN),
        Just(f32::INFINITY),
        Just(f32::NEG_INFINITY),
        Just(1e30f32),
        Just(-1e30f32),
        -5.0f32..5.0
    ]
}

/// Log-ratio `Δ`: mostly near on-policy, sometimes exactly 0, near the clip boundaries, or far.
fn delta() -> impl Strategy<Value = f32> {
    prop_oneof![
        8 => -0.5f32..0.5,
        2 => Just(0.0f32),
        2 => prop_oneof![Just(1.2f32.ln()), Just(0.8f32.ln()), Just(1.28f32.ln()), Just(3.0f32.ln())],
        2 => -30.0f32..30.0,
        1 => -3.0f32..3.0,
    ]
}

fn advantage() -> impl Strategy<Value = f32> {
    prop_oneof![6 => -3.0f32..3.0, 1 => Just(0.0f32), 1 => Just(1.0f32), 1 => Just(-1.0f32)]
}

#[derive(Clone, Debug)]
struct Tok {
    mask: u8,
    logp: f32,
    delta: f32,
    ref_delta: f32,
    adv: f32,
    isw: f32,
    junk: (f32, f32, f32, f32),
}

fn tok(hostile_valid: bool) -> impl Strategy<Value = Tok> {
    let lp = if hostile_valid {
        prop_oneof![30 => -8.0f32..0.0, 1 => Just(f32::NAN), 1 => Just(f32::NEG_INFINITY)].boxed()
    } else {
        (-8.0f32..0.0).boxed()
    };
    (
        prop_oneof![3 => Just(1u8), 1 => Just(0u8), 1 => Just(255u8)],
        lp,
        delta(),
        delta(),
        advantage(),
        prop_oneof![Just(1.0f32), 0.0f32..3.0],
        (garbage(), garbage(), garbage(), garbage()),
    )
        .prop_map(|(mask, logp, delta, ref_delta, adv, isw, junk)| Tok {
            mask,
            logp,
            delta,
            ref_delta,
            adv,
            isw,
            junk,
        })
}

fn batch_with(hostile_valid: bool, max_rows: usize, max_cols: usize) -> impl Strategy<Value = Batch> {
    (0..=max_rows, 0..=max_cols).prop_flat_map(move |(rows, cols)| {
        proptest::collection::vec(tok(hostile_valid), rows * cols).prop_map(move |toks| {
            let mut b =
                Batch { rows, cols, logp: vec![], old: vec![], refl: vec![], adv: vec![], isw: vec![], mask: vec![] };
            for t in toks {
                b.mask.push(t.mask);
                if t.mask != 0 {
                    b.logp.push(t.logp);
                    b.old.push(t.logp - t.delta);
                    b.refl.push(t.logp - t.ref_delta);
                    b.adv.push(t.adv);
                    b.isw.push(t.isw);
                } else {
                    b.logp.push(t.junk.0);
                    b.old.push(t.junk.1);
                    b.refl.push(t.junk.2);
                    b.adv.push(t.junk.3);
                    b.isw.push(t.junk.0);
                }
            }
            b
        })
    })
}

fn batch() -> impl Strategy<Value = Batch> {
    batch_with(true, 5, 9)
}

type Out<S> = (Vec<f32>, Vec<f32>, S);

fn run<S>(n: usize, f: impl FnOnce(LossOut<'_>) -> Result<S, TmError>) -> Out<S> {
    let (mut l, mut g) = (vec![POISON; n], vec![POISON; n]);
    let s = f(LossOut { loss: &mut l, dloss_dlogp: &mut g }).expect("valid call");
    assert!(all_written(&l) && all_written(&g), "unwritten output");
    (l, g, s)
}

/// Masked positions are exactly +0.0 in both outputs.
fn check_masked(b: &Batch, l: &[f32], g: &[f32]) -> Result<(), TestCaseError> {
    for i in 0..b.mask.len() {
        if !b.valid(i) {
            prop_assert!(l[i].to_bits() == 0 && g[i].to_bits() == 0, "masked position {} wrote {} / {}", i, l[i], g[i]);
        }
    }
    Ok(())
}

fn clip_cfgs() -> impl Strategy<Value = ClipCfg> {
    prop_oneof![
        Just(ClipCfg::default()),
        Just(ClipCfg::dapo()),
        Just(ClipCfg::trl()),
        (0.0f32..0.5, 0.0f32..0.5, prop::option::of(1.01f32..5.0), prop::option::of(1.0f32..25.0)).prop_map(
            |(eps_low, eps_high, dual_clip_c, log_ratio_clamp)| ClipCfg {
                eps_low,
                eps_high,
                dual_clip_c,
                log_ratio_clamp
            }
        ),
    ]
}

fn rclip(c: &ClipCfg) -> rpl::Clip {
    rpl::Clip {
        eps_low: c.eps_low as f64,
        eps_high: c.eps_high as f64,
        c: c.dual_clip_c.map(|x| x as f64),
        clamp: c.log_ratio_clamp.map(|x| x as f64),
    }
}

/// A ratio within rounding of a κ boundary (where f32 and f64 may classify differently).
fn near(r: f64, bounds: &[f64]) -> bool {
    bounds.iter().any(|&b| (r - b).abs() <= 1e-5 * b.abs().max(1.0))
}

fn agg_modes() -> impl Strategy<Value = AggMode> {
    prop_oneof![
        Just(AggMode::TokenMean),
        Just(AggMode::SeqMeanTokenSum),
        Just(AggMode::SeqMeanTokenMean),
        Just(AggMode::SeqMeanTokenSumNorm)
    ]
}

fn ragg(m: AggMode) -> rpl::Agg {
    match m {
        AggMode::TokenMean => rpl::Agg::TokenMean,
        AggMode::SeqMeanTokenSum => rpl::Agg::SeqMeanTokenSum,
        AggMode::SeqMeanTokenMean => rpl::Agg::SeqMeanTokenMean,
        AggMode::SeqMeanTokenSumNorm => rpl::Agg::SeqMeanTokenSumNorm,
    }
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 768, ..ProptestConfig::default() })]

    /// PPO (all configurations) against the reference, plus the metrics and invariants.
    #[test]
    fn ppo_matches_reference(b in batch(), cfg in clip_cfgs(), with_is in any::<bool>()) {
        let n = b.mask.len();
        let (l, g, st) = run(n, |o| ppo_clip_loss(Exec::new(), &b.inputs(with_is), &cfg, o));
        check_masked(&b, &l, &g)?;
        let rc = rclip(&cfg);
        let r_hi = 1.0 + cfg.eps_high;
        let mut valid = 0u64;
        let mut ndt = 0.0f64;
        // Reference clip counts over tokens away from a boundary, and the number of boundary
        // tokens (which either side may count).
        let (mut rh, mut rlo, mut rd, mut nb) = (0u64, 0u64, 0u64, 0u64);
        for i in (0..n).filter(|&i| b.valid(i)) {
            valid += 1;
            let w = if with_is { b.isw[i] as f64 } else { 1.0 };
            let t = rpl::ppo_token(b.logp[i] as f64, b.old[i] as f64, b.adv[i] as f64, w, &rc);
            ndt -= t.dt;
            if (b.logp[i] - b.old[i]).is_nan() || b.adv[i].is_nan() {
                prop_assert!(l[i].is_nan() && g[i].is_nan());
                continue;
            }
            let d = b.logp[i] as f64 - b.old[i] as f64;
            let boundary = near(t.r, &[rc.eps_low.mul_add(-1.0, 1.0), 1.0 + rc.eps_high, rc.c.unwrap_or(f64::INFINITY)])
                || rc.clamp.is_some_and(|c| (d.abs() - c).abs() <= 1e-5 * c);
            if !boundary {
                check("loss", i, l[i], t.loss, tol_loss(t.loss, t.dt))?;
                check("grad", i, g[i], t.grad, tol_grad(t.grad, t.dt))?;
                let a = b.adv[i] as f64;
                rh += (t.clipped && a > 0.0) as u64;
                rlo += (t.clipped && a < 0.0) as u64;
                rd += t.dual as u64;
            } else {
                nb += 1;
            }
            // Invariants, exact in f32: the clip bounds of the surrogate and of the dual clip,
            // and the gradient's magnitude.
            let a = b.adv[i];
            let wf = if with_is { b.isw[i] } else { 1.0 };
            if a > 0.0 {
                prop_assert!(l[i] >= (-a * r_hi) * wf, "clip bound: ℓ = {} < {}", l[i], -a * r_hi * wf);
                prop_assert!(g[i] <= 0.0 && g[i] >= -a * r_hi * wf * (1.0 + 4.0 * f32::EPSILON));
            }
            if let (true, Some(c)) = (a < 0.0, cfg.dual_clip_c) {
                prop_assert!(l[i] <= (-a * c) * wf, "dual-clip bound: ℓ = {} > {}", l[i], -a * c * wf);
                prop_assert!(g[i] >= 0.0 && g[i] <= -a * c * wf * (1.0 + 4.0 * f32::EPSILON));
            }
            if a == 0.0 && !wf.is_nan() {
                prop_assert!(l[i] == 0.0 && g[i] == 0.0);
            }
        }
        prop_assert_eq!(st.valid_tokens, valid);
        if ndt.is_nan() {
            prop_assert!(st.neg_log_ratio_sum.is_nan());
        } else {
            prop_assert!((st.neg_log_ratio_sum - ndt).abs() <= 1e-6 * (1.0 + ndt.abs()) + 1e-5 * valid as f64);
        }
        prop_assert!(st.clipped_high >= rh && st.clipped_high <= rh + nb, "high {} vs ref {} (+{})", st.clipped_high, rh, nb);
        prop_assert!(st.clipped_low >= rlo && st.clipped_low <= rlo + nb, "low {} vs ref {} (+{})", st.clipped_low, rlo, nb);
        prop_assert!(st.clipped_dual >= rd && st.clipped_dual <= rd + nb, "dual {} vs ref {} (+{})", st.clipped_dual, rd, nb);
        if cfg.dual_clip_c.is_none() {
            prop_assert_eq!(st.clipped_dual, 0);
        }
    }

    /// GSPO against the reference (row-coupled ratio, stop-gradient structure).
    #[test]
    fn gspo_matches_reference(b in batch(), eps in (0.0f32..0.3, 0.0f32..0.3), cap in prop::option::of(-1.0f32..12.0), with_is in any::<bool>()) {
        let n = b.mask.len();
        let cfg = GspoCfg { eps_low: eps.0, eps_high: eps.1, seq_log_ratio_cap: cap };
        let (l, g, st) = run(n, |o| gspo_loss(Exec::new(), &b.inputs(with_is), &cfg, o));
        check_masked(&b, &l, &g)?;
        let (rl, rg, s_rows) = rpl::gspo(&f64s(&b.logp), &f64s(&b.old), &f64s(&b.adv), &b.mask, b.cols, eps.0 as f64, eps.1 as f64, cap.map(|c| c as f64));
        for i in (0..n).filter(|&i| b.valid(i)) {
            let row = i / b.cols;
            let s = s_rows[row];
            let row_nan = (row * b.cols..(row + 1) * b.cols).any(|j| b.valid(j) && (b.logp[j].is_nan() || b.logp[j] == f32::NEG_INFINITY && b.old[j] == f32::NEG_INFINITY));
            if row_nan || b.adv[i].is_nan() || s.is_nan() {
                prop_assert!(l[i].is_nan() && g[i].is_nan());
                continue;
            }
            let w = if with_is { b.isw[i] as f64 } else { 1.0 };
            let ls = s.ln();
            let vr: Vec<usize> = (row * b.cols..(row + 1) * b.cols).filter(|&j| b.valid(j)).collect();
            let s_hat = vr.iter().map(|&j| b.logp[j] as f64 - b.old[j] as f64).sum::<f64>() / vr.len() as f64;
            let boundary = near(s, &[1.0 - eps.0 as f64, 1.0 + eps.1 as f64])
                || cap.is_some_and(|c| (s_hat - c as f64).abs() <= 1e-5 * (1.0 + s_hat.abs()));
            if !boundary {
                check("loss", i, l[i], rl[i] * w, tol_loss(rl[i] * w, ls))?;
                check("grad", i, g[i], rg[i] * w, tol_grad(rg[i] * w, ls))?;
            }
        }
        prop_assert_eq!(st.clipped_dual, 0);
        prop_assert_eq!(st.valid_tokens, b.mask.iter().filter(|&&m| m != 0).count() as u64);
    }

    /// CISPO against the reference.
    #[test]
    fn cispo_matches_reference(b in batch(), preset in prop_oneof![
        (0.0f32..0.5, 0.0f32..0.5).prop_map(|(a, c)| CispoCfg::verl(a, c)),
        (0.5f32..6.0).prop_map(CispoCfg::trl),
        Just(CispoCfg { w_min: None, w_max: None, log_ratio_clamp: Some(20.0) }),
    ], with_is in any::<bool>()) {
        let n = b.mask.len();
        let (l, g, st) = run(n, |o| cispo_loss(Exec::new(), &b.inputs(with_is), &preset, o));
        check_masked(&b, &l, &g)?;
        let (mut hi, mut lo) = (0u64, 0u64);
        for i in (0..n).filter(|&i| b.valid(i)) {
            let (rl, rg, r, wc) = rpl::cispo_token(b.logp[i] as f64, b.old[i] as f64, b.adv[i] as f64,
                preset.w_min.map(|x| x as f64), preset.w_max.map(|x| x as f64), preset.log_ratio_clamp.map(|x| x as f64));
            if (b.logp[i] - b.old[i]).is_nan() || b.adv[i].is_nan() {
                prop_assert!(l[i].is_nan() && g[i].is_nan());
                continue;
            }
            let w = if with_is { b.isw[i] as f64 } else { 1.0 };
            let d = r.ln();
            let boundary = near(r, &[preset.w_min.unwrap_or(-1.0) as f64, preset.w_max.unwrap_or(-1.0) as f64]);
            if !boundary {
                check("loss", i, l[i], rl * w, tol_loss(rl * w, d))?;
                check("grad", i, g[i], rg * w, tol_grad(rg * w, d))?;
                hi += (r > wc) as u64;
                lo += (r < wc) as u64;
            }
        }
        prop_assert!(st.clipped_high >= hi && st.clipped_low >= lo);
    }

    /// SAPO against the reference.
    #[test]
    fn sapo_matches_reference(b in batch(), cfg in prop_oneof![
        Just(SapoCfg::default()), Just(SapoCfg::trl()),
        (0.1f32..3.0, 0.1f32..3.0).prop_map(|(p, q)| SapoCfg { tau_pos: p, tau_neg: q, log_ratio_clamp: Some(20.0) }),
    ], with_is in any::<bool>()) {
        let n = b.mask.len();
        let (l, g, st) = run(n, |o| sapo_loss(Exec::new(), &b.inputs(with_is), &cfg, o));
        check_masked(&b, &l, &g)?;
        for i in (0..n).filter(|&i| b.valid(i)) {
            let (rl, rg) = rpl::sapo_token(b.logp[i] as f64, b.old[i] as f64, b.adv[i] as f64, cfg.tau_pos as f64, cfg.tau_neg as f64, cfg.log_ratio_clamp.map(|x| x as f64));
            if (b.logp[i] - b.old[i]).is_nan() || b.adv[i].is_nan() {
                prop_assert!(l[i].is_nan() && g[i].is_nan());
                continue;
            }
            let w = if with_is { b.isw[i] as f64 } else { 1.0 };
            let d = b.logp[i] as f64 - b.old[i] as f64;
            let c = cfg.log_ratio_clamp.map_or(f64::INFINITY, |c| c as f64);
            if (d.abs() - c).abs() <= 1e-5 * c {
                continue;
            }
            let dt = d.clamp(-c, c);
            let tau = cfg.tau_pos.max(cfg.tau_neg) as f64;
            let r = dt.exp();
            check("loss", i, l[i], rl * w, tol_loss(rl * w, dt))?;
            check("grad", i, g[i], rg * w, 1e-6 + (rg * w).abs() * (1e-5 + tau * (r + 1.0) * (dt.abs() + 4.0) * 4.0 * U))?;
        }
        prop_assert_eq!(st.clipfrac(), 0.0);
    }

    /// KL estimators against the reference, every kind, with and without verl's clamps.
    #[test]
    fn kl_matches_reference(b in batch(), kind in prop_oneof![Just(KlKind::K1), Just(KlKind::Abs), Just(KlKind::K2), Just(KlKind::K3), Just(KlKind::K1Plus), Just(KlKind::K3Plus)], clamps in any::<bool>()) {
        let n = b.mask.len();
        let cfg = KlCfg { kind, verl_clamps: clamps };
        let (v, g, st) = run(n, |o| kl_loss(Exec::new(), b.shape(), &b.mask, &b.logp, &b.refl, &cfg, o));
        check_masked(&b, &v, &g)?;
        let rk = match kind {
            KlKind::K1 => rpl::Kl::K1, KlKind::Abs => rpl::Kl::Abs, KlKind::K2 => rpl::Kl::K2,
            KlKind::K3 => rpl::Kl::K3, KlKind::K1Plus => rpl::Kl::K1Plus, KlKind::K3Plus => rpl::Kl::K3Plus,
        };
        let mut sum = 0.0;
        for i in (0..n).filter(|&i| b.valid(i)) {
            let (rv, rg) = rpl::kl_token(b.logp[i] as f64, b.refl[i] as f64, rk, clamps);
            sum += rv;
            if (b.logp[i] - b.refl[i]).is_nan() {
                prop_assert!(v[i].is_nan() && g[i].is_nan());
                continue;
            }
            let d = b.logp[i] as f64 - b.refl[i] as f64;
            let dc = if clamps { d.clamp(-20.0, 20.0) } else { d };
            // k3's terms e^{−d}, d, 1 are each rounded; the clamp boundaries are skipped.
            let mag = (-dc).exp() + dc.abs() + 1.0;
            let on_edge = clamps && ((d.abs() - 20.0).abs() < 1e-4 || (rv - 10.0).abs() < 1e-4);
            if !on_edge {
                check("kl", i, v[i], rv, 1e-5 + 1e-6 * rv.abs() + mag * (dc.abs() + 4.0) * 2.0 * U)?;
                check("dkl", i, g[i], rg, 1e-6 + 1e-5 * rg.abs() + mag * (dc.abs() + 4.0) * 2.0 * U)?;
            }
            if matches!(kind, KlKind::K3 | KlKind::K3Plus) && clamps {
                prop_assert!(v[i] >= 0.0 && v[i] <= 10.0, "clamped k3 out of range: {}", v[i]);
            }
        }
        if sum.is_finite() {
            prop_assert!((st.kl_sum - sum).abs() <= 1e-5 * (1.0 + sum.abs()));
        }
    }

    /// Aggregation against the reference table; the weights against central differences of
    /// the reference; `L = Σ w·ℓ`.
    #[test]
    fn aggregation_matches_reference(b in batch_with(false, 5, 9), mode in agg_modes(), dp in 1u32..4, extra_tok in prop::option::of(0u64..20), extra_seq in prop::option::of(0u64..5), scale in prop::option::of(0.5f32..100.0)) {
        let n = b.mask.len();
        // Per-token losses: finite at valid positions (logp − old), garbage elsewhere.
        let loss: Vec<f32> = (0..n).map(|i| if b.valid(i) { b.logp[i] - b.old[i] } else { b.adv[i] }).collect();
        let tok = b.mask.iter().filter(|&&m| m != 0).count() as u64;
        let seq = (0..b.rows).filter(|&r| b.mask[r * b.cols..(r + 1) * b.cols].iter().any(|&m| m != 0)).count() as u64;
        let norm = AggNorm { global_tokens: extra_tok.map(|e| tok + e), global_seqs: extra_seq.map(|e| seq + e), dp_size: dp, scale_factor: scale };
        let rn = rpl::Norm { global_tokens: norm.global_tokens.map(|x| x as f64), global_seqs: norm.global_seqs.map(|x| x as f64), dp: dp as f64, scale: scale.map(|s| s as f64) };
        let got = agg_loss(Exec::new(), b.shape(), &b.mask, &loss, mode, &norm).unwrap();
        let l64: Vec<f64> = loss.iter().zip(&b.mask).map(|(&x, &m)| if m != 0 { x as f64 } else { 0.0 }).collect();
        let want = rpl::agg(&l64, &b.mask, b.cols, ragg(mode), &rn);
        let abs_sum: f64 = l64.iter().map(|x| x.abs()).sum::<f64>() * dp as f64;
        prop_assert!((got as f64 - want).abs() <= U * want.abs() + 1e-13 * abs_sum, "L = {} want {}", got, want);
        let mut w = vec![POISON; n];
        agg_weights(Exec::new(), b.shape(), &b.mask, mode, &norm, &mut w).unwrap();
        // The in-place chain equals weights + upstream, bitwise (garbage in padding included).
        let mut up = vec![POISON; n];
        logp_upstream(Exec::new(), &w, &[(1.0, &loss)], &mut up).unwrap();
        let mut inplace = loss.clone();
        agg_chain_inplace(Exec::new(), b.shape(), &b.mask, mode, &norm, &mut inplace).unwrap();
        prop_assert_eq!(up.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), inplace.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
        let mut sum_wl = 0.0f64;
        for i in 0..n {
            if !b.valid(i) {
                prop_assert!(w[i].to_bits() == 0);
                continue;
            }
            // Central difference of the reference (linear in ℓ: exact up to rounding).
            let mut lp = l64.clone();
            let mut lm = l64.clone();
            lp[i] += 0.5;
            lm[i] -= 0.5;
            let fd = rpl::agg(&lp, &b.mask, b.cols, ragg(mode), &rn) - rpl::agg(&lm, &b.mask, b.cols, ragg(mode), &rn);
            prop_assert!((w[i] as f64 - fd).abs() <= 1e-12 * (1.0 + abs_sum) + U * fd.abs(), "w[{}] = {} fd {}", i, w[i], fd);
            sum_wl += w[i] as f64 * l64[i];
        }
        prop_assert!((sum_wl - want).abs() <= 4.0 * U * abs_sum.max(1e-30) * (1.0 + dp as f64) + 1e-12);
    }

    /// Padding invariance: extra garbage columns with mask 0 change no output bit on the
    /// original columns, write exact zeros, and leave metrics and aggregates unchanged
    /// (except `SeqMeanTokenSumNorm` with its default `S = T`, padding-sensitive as in verl).
    #[test]
    fn padding_invariance(b in batch(), extra in 1usize..5, cfg in clip_cfgs(), mode in agg_modes()) {
        let p = b.padded(extra);
        let (n, np) = (b.mask.len(), p.mask.len());
        let orig = |v: &[f32]| -> Vec<u32> {
            (0..b.rows).flat_map(|r| v[r * p.cols..r * p.cols + b.cols].iter().map(|x| x.to_bits()).collect::<Vec<_>>()).collect()
        };
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        macro_rules! same {
            ($f:expr) => {{
                let (l0, g0, s0) = run(n, |o| $f(&b, o));
                let (l1, g1, s1) = run(np, |o| $f(&p, o));
                prop_assert_eq!(orig(&l1), bits(&l0));
                prop_assert_eq!(orig(&g1), bits(&g0));
                check_masked(&p, &l1, &g1)?;
                (l0, l1, s0, s1)
            }};
        }
        // Metrics: counts exact; f64 sums may be added in another (shape-fixed) order.
        let sums_close = |a: f64, b: f64| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-12 * (1.0 + a.abs());
        let pol = |s0: PolicyStats, s1: PolicyStats| {
            (s0.valid_tokens, s0.clipped_high, s0.clipped_low, s0.clipped_dual)
                == (s1.valid_tokens, s1.clipped_high, s1.clipped_low, s1.clipped_dual)
                && sums_close(s0.neg_log_ratio_sum, s1.neg_log_ratio_sum)
        };
        let (l0, l1, s0, s1) = same!(|x: &Batch, o| ppo_clip_loss(Exec::new(), &x.inputs(true), &cfg, o));
        prop_assert!(pol(s0, s1), "{:?} vs {:?}", s0, s1);
        let (_, _, s0, s1) = same!(|x: &Batch, o| gspo_loss(Exec::new(), &x.inputs(true), &GspoCfg::default(), o));
        prop_assert!(pol(s0, s1), "{:?} vs {:?}", s0, s1);
        let (_, _, s0, s1) = same!(|x: &Batch, o| cispo_loss(Exec::new(), &x.inputs(true), &CispoCfg::default(), o));
        prop_assert!(pol(s0, s1), "{:?} vs {:?}", s0, s1);
        let (_, _, s0, s1) = same!(|x: &Batch, o| sapo_loss(Exec::new(), &x.inputs(true), &SapoCfg::default(), o));
        prop_assert!(pol(s0, s1), "{:?} vs {:?}", s0, s1);
        let (_, _, s0, s1) = same!(|x: &Batch, o| kl_loss(Exec::new(), x.shape(), &x.mask, &x.logp, &x.refl, &KlCfg::default(), o));
        prop_assert!(s0.valid_tokens == s1.valid_tokens && sums_close(s0.kl_sum, s1.kl_sum), "{:?} vs {:?}", s0, s1);
        let norm = AggNorm { scale_factor: if mode == AggMode::SeqMeanTokenSumNorm { Some(3.0) } else { None }, ..AggNorm::default() };
        let a0 = agg_loss(Exec::new(), b.shape(), &b.mask, &l0, mode, &norm).unwrap();
        let a1 = agg_loss(Exec::new(), p.shape(), &p.mask, &l1, mode, &norm).unwrap();
        prop_assert_eq!(a0.to_bits(), a1.to_bits());
        let (mut w0, mut w1) = (vec![POISON; n], vec![POISON; np]);
        agg_weights(Exec::new(), b.shape(), &b.mask, mode, &norm, &mut w0).unwrap();
        agg_weights(Exec::new(), p.shape(), &p.mask, mode, &norm, &mut w1).unwrap();
        prop_assert_eq!(orig(&w1), bits(&w0));
        let (mut t0, mut t1) = (vec![POISON; n], vec![POISON; np]);
        for level in [TisLevel::Token, TisLevel::Sequence] {
            tis_weights(Exec::new(), b.shape(), &b.mask, &b.old, &b.refl, &TisCfg { level, cap: 2.0 }, &mut t0).unwrap();
            tis_weights(Exec::new(), p.shape(), &p.mask, &p.old, &p.refl, &TisCfg { level, cap: 2.0 }, &mut t1).unwrap();
            prop_assert_eq!(orig(&t1), bits(&t0));
        }
    }

    /// The fused PPO + KL kernel equals the separate kernels combined, bitwise, with the same
    /// metrics; and rejects bad arguments.
    #[test]
    fn fused_ppo_kl_matches_separate(b in batch(), cfg in clip_cfgs(), kind in prop_oneof![Just(KlKind::K1), Just(KlKind::Abs), Just(KlKind::K2), Just(KlKind::K3), Just(KlKind::K1Plus), Just(KlKind::K3Plus)], clamps in any::<bool>(), coef in prop_oneof![Just(0.001f32), Just(0.0f32), -1.0f32..1.0], with_is in any::<bool>()) {
        let n = b.mask.len();
        let kc = KlCfg { kind, verl_clamps: clamps };
        let term = KlTerm { ref_logp: &b.refl, cfg: kc, coef };
        let (l, g, (ps, ks)) = run(n, |o| ppo_clip_kl_loss(Exec::new(), &b.inputs(with_is), &cfg, &term, o));
        let (lp, gp, ps1) = run(n, |o| ppo_clip_loss(Exec::new(), &b.inputs(with_is), &cfg, o));
        let (lk, gk, ks1) = run(n, |o| kl_loss(Exec::new(), b.shape(), &b.mask, &b.logp, &b.refl, &kc, o));
        check_masked(&b, &l, &g)?;
        for i in 0..n {
            let (wl, wg) = if b.valid(i) { (lp[i] + coef * lk[i], gp[i] + coef * gk[i]) } else { (0.0, 0.0) };
            prop_assert_eq!(l[i].to_bits(), wl.to_bits(), "loss {}", i);
            prop_assert_eq!(g[i].to_bits(), wg.to_bits(), "grad {}", i);
        }
        prop_assert_eq!(format!("{:?}{:?}", ps, ks), format!("{:?}{:?}", ps1, ks1));
        let bad = KlTerm { coef: f32::NAN, ..term };
        let (mut l2, mut g2) = (vec![0.0; n], vec![0.0; n]);
        let r = ppo_clip_kl_loss(Exec::new(), &b.inputs(with_is), &cfg, &bad, LossOut { loss: &mut l2, dloss_dlogp: &mut g2 });
        prop_assert!(matches!(r, Err(TmError::InvalidArgument(_))));
        let short = KlTerm { ref_logp: &b.refl[..n.saturating_sub(1)], ..term };
        if n > 0 {
            let r = ppo_clip_kl_loss(Exec::new(), &b.inputs(with_is), &cfg, &short, LossOut { loss: &mut l2, dloss_dlogp: &mut g2 });
            let ok = matches!(r, Err(TmError::LengthMismatch { what: "ref_logp", .. }));
            prop_assert!(ok);
        }
    }

    /// Truncated importance weights against the reference.
    #[test]
    fn tis_matches_reference(b in batch(), seq in any::<bool>(), cap in prop_oneof![Just(2.0f32), 0.5f32..10.0, Just(f32::INFINITY)]) {
        let n = b.mask.len();
        let level = if seq { TisLevel::Sequence } else { TisLevel::Token };
        let mut w = vec![POISON; n];
        tis_weights(Exec::new(), b.shape(), &b.mask, &b.old, &b.refl, &TisCfg { level, cap }, &mut w).unwrap();
        let want = rpl::tis(&f64s(&b.old), &f64s(&b.refl), &b.mask, b.cols, seq, cap as f64);
        for i in 0..n {
            if !b.valid(i) {
                prop_assert!(w[i].to_bits() == 0);
                continue;
            }
            let lr = if seq {
                let r = i / b.cols;
                (r * b.cols..(r + 1) * b.cols).filter(|&j| b.valid(j)).map(|j| b.old[j] as f64 - b.refl[j] as f64).sum::<f64>()
            } else {
                b.old[i] as f64 - b.refl[i] as f64
            };
            check("tis", i, w[i], want[i], 1e-6 + want[i].abs() * (lr.abs() + 4.0) * 4.0 * U)?;
            prop_assert!(w[i].is_nan() || w[i] <= cap);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Finite differences of every gradient: the reference's [derived] gradient against central
// differences of the reference's value function (f64), at points away from kinks; the
// kernels are checked against the same reference gradients above.
// ---------------------------------------------------------------------------------------

fn fd_points() -> impl Strategy<Value = Vec<(f64, f64, f64)>> {
    // (logp, Δ, A) with Δ in a range that crosses every boundary.
    proptest::collection::vec((-6.0f64..-0.01, -2.5f64..2.5, prop_oneof![-3.0f64..-0.05, 0.05f64..3.0]), 1..40)
}

const H: f64 = 1e-6;

fn away(x: f64, kinks: &[f64]) -> bool {
    kinks.iter().all(|&k| (x - k).abs() > 1e-4)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn fd_ppo(pts in fd_points(), cfg in clip_cfgs(), w in 0.1f64..2.0) {
        let c = rclip(&cfg);
        for (lp, d, a) in pts {
            let old = lp - d;
            let kinks = [(1.0 - c.eps_low).max(1e-9).ln(), (1.0 + c.eps_high).ln(), c.c.unwrap_or(1e9).ln(), c.clamp.unwrap_or(1e9), -c.clamp.unwrap_or(1e9)];
            if !away(d, &kinks) { continue; }
            let fd = rpl::central_diff(|x| rpl::ppo_value(x, old, a, w, &c), lp, H);
            let g = rpl::ppo_token(lp, old, a, w, &c).grad;
            prop_assert!((fd - g).abs() <= 1e-6 * (1.0 + g.abs()), "Δ={} A={}: fd {} vs {}", d, a, fd, g);
        }
    }

    #[test]
    fn fd_cispo_sapo_kl(pts in fd_points(), tau in (0.2f64..3.0, 0.2f64..3.0)) {
        for (lp, d, a) in pts {
            let old = lp - d;
            // CISPO: w is sg (held at its value at lp), so ℓ is linear in logp.
            let (_, g, _, wc) = rpl::cispo_token(lp, old, a, Some(0.8), Some(1.2), Some(20.0));
            let fd = rpl::central_diff(|x| -wc * a * x, lp, H);
            prop_assert!((fd - g).abs() <= 1e-7 * (1.0 + g.abs()));
            // SAPO.
            let (_, g) = rpl::sapo_token(lp, old, a, tau.0, tau.1, Some(20.0));
            let fd = rpl::central_diff(|x| rpl::sapo_token(x, old, a, tau.0, tau.1, Some(20.0)).0, lp, H);
            prop_assert!((fd - g).abs() <= 1e-6 * (1.0 + g.abs()), "sapo fd {} vs {}", fd, g);
            // KL kinds (d doubles as logp − ref). The "+" kinds carry the gradient of k2.
            for (kind, carrier) in [(rpl::Kl::K1, rpl::Kl::K1), (rpl::Kl::Abs, rpl::Kl::Abs), (rpl::Kl::K2, rpl::Kl::K2), (rpl::Kl::K3, rpl::Kl::K3), (rpl::Kl::K1Plus, rpl::Kl::K2), (rpl::Kl::K3Plus, rpl::Kl::K2)] {
                for clamps in [false, true] {
                    if kind == rpl::Kl::Abs && d.abs() < 1e-4 { continue; }
                    let g = rpl::kl_token(lp, old, kind, clamps).1;
                    let fd = rpl::central_diff(|x| rpl::kl_token(x, old, carrier, clamps).0, lp, H);
                    prop_assert!((fd - g).abs() <= 1e-6 * (1.0 + g.abs()), "{:?} fd {} vs {}", kind, fd, g);
                }
            }
        }
    }

    /// Clamped k3 far out: the verl clamps kill the gradient, and FD agrees (flat).
    #[test]
    fn fd_k3_clamped_regions(d in prop_oneof![-40.0f64..-20.5, 20.5f64..40.0, -2.35f64..-2.0]) {
        let (v, g) = rpl::kl_token(d, 0.0, rpl::Kl::K3, true);
        let fd = rpl::central_diff(|x| rpl::kl_token(x, 0.0, rpl::Kl::K3, true).0, d, H);
        prop_assert!((fd - g).abs() <= 1e-6 * (1.0 + g.abs()));
        prop_assert!((0.0..=10.0).contains(&v));
    }

    /// GSPO's stop-gradient structure: with a per-response A and seq-mean-token-mean, the
    /// kernel's `w ⊙ ∂ℓ/∂logp` equals central differences of the pure sequence objective
    /// (reference, f64) — which couples every token of a row through `s_b`.
    #[test]
    fn fd_gspo_sequence_objective(
        rows in 1usize..4, cols in 1usize..6, seed in proptest::collection::vec((-4.0f32..-0.1, -0.6f32..0.6, 0u8..4), 20),
        adv_rows in proptest::collection::vec(prop_oneof![-2.0f32..-0.1, 0.1f32..2.0], 4),
        eps in (0.0f32..0.3, 0.0f32..0.3),
    ) {
        let n = rows * cols;
        let lp: Vec<f32> = (0..n).map(|i| seed[i % 20].0).collect();
        let old: Vec<f32> = (0..n).map(|i| seed[i % 20].0 - seed[(i * 7 + 3) % 20].1).collect();
        let mask: Vec<u8> = (0..n).map(|i| (seed[(i * 3 + 1) % 20].2 != 0) as u8).collect();
        let adv: Vec<f32> = (0..n).map(|i| adv_rows[i / cols]).collect();
        let sh = BatchShape::new(rows, cols);
        let cfg = GspoCfg { eps_low: eps.0, eps_high: eps.1, seq_log_ratio_cap: Some(10.0) };
        let inp = PolicyInputs { shape: sh, logp: &lp, old_logp: &old, adv: &adv, mask: &mask, is_weights: None };
        let (_, g, _) = run(n, |o| gspo_loss(Exec::new(), &inp, &cfg, o));
        let mut w = vec![POISON; n];
        agg_weights(Exec::new(), sh, &mask, GSPO_AGG_MODE, &AggNorm::default(), &mut w).unwrap();
        let mut up = vec![POISON; n];
        logp_upstream(Exec::new(), &w, &[(1.0, &g)], &mut up).unwrap();
        let (lp64, old64) = (f64s(&lp), f64s(&old));
        let arow: Vec<f64> = adv_rows[..rows].iter().map(|&a| a as f64).collect();
        let (e0, e1) = (eps.0 as f64, eps.1 as f64);
        let (_, _, s_rows) = rpl::gspo(&lp64, &old64, &f64s(&adv), &mask, cols, e0, e1, Some(10.0));
        for i in 0..n {
            let s = s_rows[i / cols];
            if !away(s.ln(), &[(1.0 - e0).ln(), (1.0 + e1).ln()]) { continue; }
            let fd = rpl::central_diff(|x| {
                let mut l = lp64.clone();
                l[i] = x;
                rpl::gspo_sequence_objective(&l, &old64, &arow, &mask, cols, e0, e1, Some(10.0))
            }, lp64[i], H);
            prop_assert!((up[i] as f64 - fd).abs() <= 1e-6 + 1e-5 * fd.abs(), "token {}: kernel {} vs fd {} (mask {})", i, up[i], fd, mask[i]);
        }
    }
}
