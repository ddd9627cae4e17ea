//! Policy losses: worked examples computed by hand, edge-case policies, typed errors and the
//! end-to-end chain into the logits backward. (Reference comparisons, finite differences and
//! property tests: `policy_loss_oracle.rs`.)

mod common;

use common::POISON;
use tokenmath_core::logits::{self, FwdOut, RowInputs, Saved, Temperature, Upstream};
use tokenmath_core::policy_loss::*;
use tokenmath_core::{Exec, Mat, MatMut, TmError};
use tokenmath_testutil::{all_written, close, untouched};

const LN2: f32 = core::f32::consts::LN_2;

/// Runs a loss kernel into poisoned buffers and checks that every element was written.
fn run<S>(n: usize, f: impl FnOnce(LossOut<'_>) -> Result<S, TmError>) -> Result<(Vec<f32>, Vec<f32>, S), TmError> {
    let (mut l, mut g) = (vec![POISON; n], vec![POISON; n]);
    let s = f(LossOut { loss: &mut l, dloss_dlogp: &mut g })?;
    assert!(all_written(&l) && all_written(&g), "an output element was not written");
    Ok((l, g, s))
}

fn inputs<'a>(shape: BatchShape, logp: &'a [f32], old: &'a [f32], adv: &'a [f32], mask: &'a [u8]) -> PolicyInputs<'a> {
    PolicyInputs { shape, logp, old_logp: old, adv, mask, is_weights: None }
}

/// PPO worked examples (spec §4.2), one token per case, verl defaults (ε = 0.2, c = 3, ±20):
/// `(Δ, A) → (ℓ, ∂ℓ/∂logp, clipped_high, clipped_low, dual)`.
#[test]
fn ppo_worked_examples() {
    let ln = |x: f32| x.ln();
    #[rustfmt::skip]
    let cases: &[(f32, f32, f64, f64, u64, u64, u64)] = &[
        // r = 1.5, A = 1: l1 = −1.5, l2 = −1.2 → ℓ = −1.2, clipped (no gradient).
        (ln(1.5), 1.0, -1.2, 0.0, 1, 0, 0),
        // r = 1.5, A = −1: l1 = 1.5 > l2 = 1.2 → ℓ = 1.5 < c·|A| = 3, gradient −A·r = 1.5.
        (ln(1.5), -1.0, 1.5, 1.5, 0, 0, 0),
        // r = 4, A = −1: lc = 4 > 3 → dual clip ℓ = 3, no gradient.
        (ln(4.0), -1.0, 3.0, 0.0, 0, 0, 1),
        // r = 0.5, A = 1: l1 = −0.5 > l2 = −0.8 → ℓ = −0.5, gradient −0.5.
        (ln(0.5), 1.0, -0.5, -0.5, 0, 0, 0),
        // r = 0.5, A = −2: l1 = 1 < l2 = 1.6 → ℓ = 1.6 clipped below, no gradient.
        (ln(0.5), -2.0, 1.6, 0.0, 0, 1, 0),
        // On-policy: r = 1, gradient −A.
        (0.0, 0.7, -0.7, -0.7, 0, 0, 0),
        (0.0, -0.7, 0.7, 0.7, 0, 0, 0),
        // A = 0: exactly 0.
        (ln(1.5), 0.0, 0.0, 0.0, 0, 0, 0),
        // Δ = 25 > 20: r = e^20, A = 1 → clipped ℓ = −1.2, and the clamp kills the gradient.
        (25.0, 1.0, -1.2, 0.0, 1, 0, 0),
    ];
    for &(d, a, want_l, want_g, hi, lo, dual) in cases {
        let (lp, old) = ([-1.0f32 + d], [-1.0f32]);
        let (l, g, st) = run(1, |o| {
            ppo_clip_loss(Exec::new(), &inputs(BatchShape::new(1, 1), &lp, &old, &[a], &[1]), &ClipCfg::default(), o)
        })
        .unwrap();
        close(l[0], want_l, 1e-5);
        close(g[0], want_g, 1e-5);
        assert_eq!(
            (st.clipped_high, st.clipped_low, st.clipped_dual, st.valid_tokens),
            (hi, lo, dual, 1),
            "Δ={d} A={a}"
        );
    }
}

/// DAPO clip-higher: r = 1.25 with A = 1 is clipped at ε_high = 0.2 but not at 0.28.
#[test]
fn dapo_clip_higher_example() {
    let (lp, old, a, m) = ([1.25f32.ln()], [0.0f32], [1.0f32], [1u8]);
    let inp = inputs(BatchShape::new(1, 1), &lp, &old, &a, &m);
    let (l, g, st) = run(1, |o| ppo_clip_loss(Exec::new(), &inp, &ClipCfg::default(), o)).unwrap();
    close(l[0], -1.2, 1e-6);
    assert_eq!((g[0], st.clipfrac()), (0.0, 1.0));
    let (l, g, st) = run(1, |o| ppo_clip_loss(Exec::new(), &inp, &ClipCfg::dapo(), o)).unwrap();
    close(l[0], -1.25, 1e-6);
    close(g[0], -1.25, 1e-6);
    assert_eq!(st.clipfrac(), 0.0);
}

/// Without the log-ratio clamp (TRL) and without dual clip, a huge ratio with A < 0 is
/// unbounded; with verl's clamp it stops at e^20 and the gradient is 0.
#[test]
fn log_ratio_clamp_and_no_dual_clip() {
    let (lp, old, a, m) = ([0.0f32], [-25.0f32], [-1.0f32], [1u8]);
    let inp = inputs(BatchShape::new(1, 1), &lp, &old, &a, &m);
    let cfg = ClipCfg { dual_clip_c: None, ..ClipCfg::default() };
    let (l, g, _) = run(1, |o| ppo_clip_loss(Exec::new(), &inp, &cfg, o)).unwrap();
    close(l[0], 20f64.exp(), 20f64.exp() * 1e-6);
    assert_eq!(g[0], 0.0);
    let (l, g, _) = run(1, |o| ppo_clip_loss(Exec::new(), &inp, &ClipCfg::trl(), o)).unwrap();
    close(l[0], 25f64.exp(), 25f64.exp() * 1e-6);
    close(g[0], 25f64.exp(), 25f64.exp() * 1e-6);
    // r overflows to +inf without a clamp: A < 0 gives ℓ = +inf, A = 0 gives exactly 0.
    let (lp, old) = ([0.0f32], [-100.0f32]);
    let (l, _, _) =
        run(1, |o| ppo_clip_loss(Exec::new(), &inputs(BatchShape::new(1, 1), &lp, &old, &a, &m), &ClipCfg::trl(), o))
            .unwrap();
    assert_eq!(l[0], f32::INFINITY);
    let (l, g, _) = run(1, |o| {
        ppo_clip_loss(Exec::new(), &inputs(BatchShape::new(1, 1), &lp, &old, &[0.0], &m), &ClipCfg::trl(), o)
    })
    .unwrap();
    assert_eq!((l[0], g[0]), (0.0, 0.0));
}

/// The dual-clip boundary r = c gets the full gradient [library choice].
#[test]
fn dual_clip_boundary_full_gradient() {
    // c = 2 and Δ = ln 2 computed so that exp gives exactly 2.0 in f32.
    let cfg = ClipCfg { dual_clip_c: Some(2.0), ..ClipCfg::default() };
    let (lp, old, a, m) = ([LN2], [0.0f32], [-1.0f32], [1u8]);
    let (l, g, st) =
        run(1, |o| ppo_clip_loss(Exec::new(), &inputs(BatchShape::new(1, 1), &lp, &old, &a, &m), &cfg, o)).unwrap();
    let r = l[0]; // ℓ = min(r, 2) with A = −1
    if r == 2.0 {
        assert_eq!(g[0], 2.0, "full gradient at r = c");
        assert_eq!(st.clipped_dual, 0);
    } else {
        close(r, 2.0, 2.5e-7);
    }
}

/// GSPO worked example (spec §4.4): one row with Δ = [ln 2, 0] and a padded third column:
/// ŝ = ln2/2, s = √2. A = 1 clips (ℓ = −1.2, no gradient); A = −1 gives ℓ = √2 and gradient
/// √2 at both tokens; with seq-mean-token-mean (w = 1/2) each token's upstream is √2/2 =
/// s/L_b, the gradient of the sequence objective.
#[test]
fn gspo_worked_example() {
    let sh = BatchShape::new(1, 3);
    let (lp, old, m) = ([LN2 - 1.0, -1.0, f32::NAN], [-1.0f32, -1.0, 7.0], [1u8, 1, 0]);
    let (l, g, st) =
        run(3, |o| gspo_loss(Exec::new(), &inputs(sh, &lp, &old, &[1.0, 1.0, f32::NAN], &m), &GspoCfg::default(), o))
            .unwrap();
    close(l[0], -1.2, 1e-6);
    close(l[1], -1.2, 1e-6);
    assert_eq!((g[0], g[1], l[2], g[2]), (0.0, 0.0, 0.0, 0.0));
    assert_eq!((st.clipped_high, st.valid_tokens), (2, 2));
    close(st.ppo_kl() as f32, -(LN2 as f64) / 2.0, 1e-7);
    let sqrt2 = 2f64.sqrt();
    let (l, g, _) =
        run(3, |o| gspo_loss(Exec::new(), &inputs(sh, &lp, &old, &[-1.0, -1.0, 0.0], &m), &GspoCfg::default(), o))
            .unwrap();
    close(l[0], sqrt2, 1e-6);
    close(g[1], sqrt2, 1e-6);
    let mut w = vec![POISON; 3];
    agg_weights(Exec::new(), sh, &m, GSPO_AGG_MODE, &AggNorm::default(), &mut w).unwrap();
    assert_eq!(w, [0.5, 0.5, 0.0]);
    let mut up = vec![POISON; 3];
    logp_upstream(Exec::new(), &w, &[(1.0, &g)], &mut up).unwrap();
    close(up[0], sqrt2 / 2.0, 1e-6);
    close(up[1], sqrt2 / 2.0, 1e-6);
    assert_eq!(up[2], 0.0);
    // The cap: ŝ = 12 > 10 → s = e^10 and no gradient.
    let (lp, old) = ([12.0f32, 12.0, 0.0], [0.0f32, 0.0, 0.0]);
    let (l, g, _) = run(3, |o| {
        let c = GspoCfg { eps_low: 0.2, eps_high: 0.2, seq_log_ratio_cap: Some(10.0) };
        gspo_loss(Exec::new(), &inputs(sh, &lp, &old, &[-1.0, -1.0, 0.0], &m), &c, o)
    })
    .unwrap();
    close(l[0], 10f64.exp(), 10f64.exp() * 1e-6);
    assert_eq!(g[0], 0.0);
}

/// CISPO (spec §4.5): r = 1.5, verl bounds [0.8, 1.2] → w = 1.2; A = 2, logp = −0.5:
/// ℓ = −1.2·2·(−0.5) = 1.2, gradient −2.4. TRL cap 5 → w = 1.5, gradient −3.
#[test]
fn cispo_worked_example() {
    let (lp, old, a, m) = ([-0.5f32], [-0.5 - 1.5f32.ln()], [2.0f32], [1u8]);
    let inp = inputs(BatchShape::new(1, 1), &lp, &old, &a, &m);
    let (l, g, st) = run(1, |o| cispo_loss(Exec::new(), &inp, &CispoCfg::verl(0.2, 0.2), o)).unwrap();
    close(l[0], 1.2, 1e-6);
    close(g[0], -2.4, 1e-6);
    assert_eq!(st.clipfrac(), 1.0);
    let (l, g, st) = run(1, |o| cispo_loss(Exec::new(), &inp, &CispoCfg::trl(5.0), o)).unwrap();
    close(l[0], 1.5, 1e-6);
    close(g[0], -3.0, 1e-6);
    assert_eq!(st.clipfrac(), 0.0);
}

/// SAPO (spec §4.6): at r = 1, gate = σ(0)·4/τ = 2/τ and the gradient is exactly −A.
#[test]
fn sapo_worked_example() {
    let (lp, old, m) = ([-1.0f32, -1.0], [-1.0f32, -1.0], [1u8, 1]);
    let (l, g, st) = run(2, |o| {
        sapo_loss(Exec::new(), &inputs(BatchShape::new(1, 2), &lp, &old, &[1.0, -1.0], &m), &SapoCfg::default(), o)
    })
    .unwrap();
    close(l[0], -2.0, 1e-6);
    close(l[1], 2.0 / 1.05, 1e-6);
    assert_eq!((g[0], g[1]), (-1.0, 1.0));
    assert_eq!(st.clipfrac(), 0.0);
    // Far from r = 1 the gradient decays: r = e^3, A = 1: −4·r·σ(r−1)·σ(1−r).
    let (lp, old) = ([2.0f32, 0.0], [-1.0f32, 0.0]);
    let (_, g, _) = run(2, |o| {
        sapo_loss(Exec::new(), &inputs(BatchShape::new(1, 2), &lp, &old, &[1.0, 0.0], &m), &SapoCfg::default(), o)
    })
    .unwrap();
    let r = 3f64.exp();
    let s = 1.0 / (1.0 + (-(r - 1.0)).exp());
    close(g[0], -4.0 * r * s * (1.0 - s), 1e-7);
    assert_eq!(g[1], 0.0);
}

/// KL estimators at d = ln 2 (spec §4.7) and verl's clamps at d = −30.
#[test]
fn kl_worked_examples() {
    let sh = BatchShape::new(1, 2);
    let (lp, rf, m) = ([LN2 - 2.0, -30.0f32], [-2.0f32, 0.0], [1u8, 1]);
    let k = |kind: KlKind, clamps: bool| {
        run(2, |o| kl_loss(Exec::new(), sh, &m, &lp, &rf, &KlCfg { kind, verl_clamps: clamps }, o)).unwrap()
    };
    let l2 = LN2 as f64;
    let (v, g, _) = k(KlKind::K1, true);
    close(v[0], l2, 1e-6);
    assert_eq!(g[0], 1.0);
    let (v, g, _) = k(KlKind::Abs, true);
    close(v[1], 30.0, 1e-6);
    assert_eq!((g[0], g[1]), (1.0, -1.0));
    let (v, g, _) = k(KlKind::K2, true);
    close(v[0], 0.5 * l2 * l2, 1e-6);
    close(g[0], l2, 1e-6);
    let (v, g, st) = k(KlKind::K3, true);
    close(v[0], 0.5 + l2 - 1.0, 1e-6);
    close(g[0], 0.5, 1e-6);
    // −d = 30 → δ = 20 (clamped), k = e^20 − 21 → 10 (clamped), gradient 0.
    assert_eq!((v[1], g[1]), (10.0, 0.0));
    close(st.mean() as f32, (0.5 + l2 - 1.0 + 10.0) / 2.0, 1e-6);
    let (v, g, _) = k(KlKind::K3, false);
    close(v[1], 30f64.exp() - 31.0, 30f64.exp() * 1e-6);
    close(g[1], 1.0 - 30f64.exp(), 30f64.exp() * 1e-6);
    let (v, g, _) = k(KlKind::K3Plus, true);
    close(v[0], 0.5 + l2 - 1.0, 1e-6);
    close(g[0], l2, 1e-6);
    assert_eq!((v[1], g[1]), (10.0, -30.0));
    let (v, g, _) = k(KlKind::K1Plus, true);
    close(v[0], l2, 1e-6);
    close(g[0], l2, 1e-6);
}

/// Aggregation worked example (spec §5): two rows, T = 3, masks [1,1,0] and [1,0,0],
/// ℓ = [1, 2, NaN] and [4, NaN, NaN] (NaN in padding must not leak).
#[test]
fn aggregation_worked_example() {
    let sh = BatchShape::new(2, 3);
    let loss = [1.0f32, 2.0, f32::NAN, 4.0, f32::NAN, f32::INFINITY];
    let m = [1u8, 1, 0, 1, 0, 0];
    let d = AggNorm::default();
    let l = |mode, n: &AggNorm| agg_loss(Exec::new(), sh, &m, &loss, mode, n).unwrap();
    close(l(AggMode::TokenMean, &d), 7.0 / 3.0, 1e-6);
    close(l(AggMode::SeqMeanTokenSum, &d), 3.5, 1e-6);
    close(l(AggMode::SeqMeanTokenMean, &d), (1.5 + 4.0) / 2.0, 1e-6);
    close(l(AggMode::SeqMeanTokenSumNorm, &d), 7.0 / 3.0, 1e-6);
    close(l(AggMode::SeqMeanTokenSumNorm, &AggNorm { scale_factor: Some(7.0), ..d }), 1.0, 1e-6);
    // Data parallel: dp = 2 ranks, 6 tokens / 4 sequences globally.
    let g = AggNorm { global_tokens: Some(6), global_seqs: Some(4), dp_size: 2, scale_factor: None };
    close(l(AggMode::TokenMean, &g), 7.0 / 6.0 * 2.0, 1e-6);
    close(l(AggMode::SeqMeanTokenSum, &g), 7.0 / 4.0 * 2.0, 1e-6);
    close(l(AggMode::SeqMeanTokenMean, &g), 5.5 / 4.0 * 2.0, 1e-6);
    close(l(AggMode::SeqMeanTokenSumNorm, &g), 7.0 / 3.0, 1e-6);
    let w = |mode, n: &AggNorm| {
        let mut w = vec![POISON; 6];
        agg_weights(Exec::new(), sh, &m, mode, n, &mut w).unwrap();
        w
    };
    assert_eq!(w(AggMode::TokenMean, &d), [1.0 / 3.0, 1.0 / 3.0, 0.0, 1.0 / 3.0, 0.0, 0.0]);
    assert_eq!(w(AggMode::SeqMeanTokenSum, &d), [0.5, 0.5, 0.0, 0.5, 0.0, 0.0]);
    assert_eq!(w(AggMode::SeqMeanTokenMean, &d), [0.25, 0.25, 0.0, 0.5, 0.0, 0.0]);
    assert_eq!(w(AggMode::SeqMeanTokenMean, &g), [0.25, 0.25, 0.0, 0.5, 0.0, 0.0]);
    assert_eq!(w(AggMode::TokenMean, &g), [1.0 / 3.0, 1.0 / 3.0, 0.0, 1.0 / 3.0, 0.0, 0.0]);
}

/// Empty denominators give L = 0 and zero weights [library choice]; an empty row is excluded
/// from the sequence count.
#[test]
fn empty_denominators() {
    let sh = BatchShape::new(2, 2);
    let loss = [f32::NAN, 5.0, 3.0, f32::NAN];
    let none = [0u8; 4];
    for mode in [AggMode::TokenMean, AggMode::SeqMeanTokenSum, AggMode::SeqMeanTokenMean, AggMode::SeqMeanTokenSumNorm]
    {
        assert_eq!(agg_loss(Exec::new(), sh, &none, &loss, mode, &AggNorm::default()).unwrap(), 0.0);
        let mut w = vec![POISON; 4];
        agg_weights(Exec::new(), sh, &none, mode, &AggNorm::default(), &mut w).unwrap();
        assert_eq!(w, [0.0; 4]);
    }
    let one_row = [0u8, 0, 1, 0];
    assert_eq!(
        agg_loss(Exec::new(), sh, &one_row, &loss, AggMode::SeqMeanTokenMean, &AggNorm::default()).unwrap(),
        3.0
    );
    assert_eq!(agg_loss(Exec::new(), sh, &one_row, &loss, AggMode::SeqMeanTokenSum, &AggNorm::default()).unwrap(), 3.0);
    // Zero-sized shapes are valid.
    assert_eq!(
        agg_loss(Exec::new(), BatchShape::new(0, 5), &[], &[], AggMode::TokenMean, &AggNorm::default()).unwrap(),
        0.0
    );
    assert_eq!(
        agg_loss(Exec::new(), BatchShape::new(3, 0), &[], &[], AggMode::SeqMeanTokenSumNorm, &AggNorm::default())
            .unwrap(),
        0.0
    );
    // Every kernel on an all-masked batch with garbage inputs: all zeros, zero stats.
    let bad = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e30];
    let inp = PolicyInputs { shape: sh, logp: &bad, old_logp: &bad, adv: &bad, mask: &none, is_weights: Some(&bad) };
    let zero = |l: &[f32], g: &[f32]| l.iter().chain(g).all(|x| x.to_bits() == 0);
    let (l, g, s) = run(4, |o| ppo_clip_loss(Exec::new(), &inp, &ClipCfg::default(), o)).unwrap();
    assert!(zero(&l, &g) && s == PolicyStats::default());
    let (l, g, s) = run(4, |o| gspo_loss(Exec::new(), &inp, &GspoCfg::default(), o)).unwrap();
    assert!(zero(&l, &g) && s == PolicyStats::default());
    let (l, g, s) = run(4, |o| cispo_loss(Exec::new(), &inp, &CispoCfg::default(), o)).unwrap();
    assert!(zero(&l, &g) && s == PolicyStats::default());
    let (l, g, s) = run(4, |o| sapo_loss(Exec::new(), &inp, &SapoCfg::default(), o)).unwrap();
    assert!(zero(&l, &g) && s == PolicyStats::default());
    let (l, g, s) = run(4, |o| kl_loss(Exec::new(), sh, &none, &bad, &bad, &KlCfg::default(), o)).unwrap();
    assert!(zero(&l, &g) && s == KlStats::default());
    let mut w = vec![POISON; 4];
    tis_weights(Exec::new(), sh, &none, &bad, &bad, &TisCfg::default(), &mut w).unwrap();
    assert_eq!(w, [0.0; 4]);
}

/// Typed errors: every length mismatch and invalid hyper-parameter, before any write.
#[test]
fn typed_errors() {
    let sh = BatchShape::new(2, 2);
    let v = [0.0f32; 4];
    let short = [0.0f32; 3];
    let m = [1u8; 4];
    let base = PolicyInputs { shape: sh, logp: &v, old_logp: &v, adv: &v, mask: &m, is_weights: None };
    let lm = |what: &'static str, got| TmError::LengthMismatch { what, expected: 4, got };
    let ppo = |inp: &PolicyInputs<'_>, cfg: &ClipCfg| {
        let (mut l, mut g) = ([POISON; 4], [POISON; 4]);
        let r = ppo_clip_loss(Exec::new(), inp, cfg, LossOut { loss: &mut l, dloss_dlogp: &mut g });
        if r.is_err() {
            assert!(untouched(&l) && untouched(&g), "wrote before failing");
        }
        r
    };
    let c = ClipCfg::default();
    assert_eq!(ppo(&PolicyInputs { logp: &short, ..base }, &c), Err(lm("logp", 3)));
    assert_eq!(ppo(&PolicyInputs { old_logp: &short, ..base }, &c), Err(lm("old_logp", 3)));
    assert_eq!(ppo(&PolicyInputs { adv: &short, ..base }, &c), Err(lm("adv", 3)));
    assert_eq!(ppo(&PolicyInputs { mask: &m[..3], ..base }, &c), Err(lm("mask", 3)));
    assert_eq!(ppo(&PolicyInputs { is_weights: Some(&short), ..base }, &c), Err(lm("is_weights", 3)));
    let (mut l3, mut g4) = ([0.0f32; 3], [0.0f32; 4]);
    assert_eq!(
        ppo_clip_loss(Exec::new(), &base, &c, LossOut { loss: &mut l3, dloss_dlogp: &mut g4 }),
        Err(lm("loss", 3))
    );
    assert_eq!(
        ppo_clip_loss(Exec::new(), &base, &c, LossOut { loss: &mut g4, dloss_dlogp: &mut l3 }),
        Err(lm("dloss_dlogp", 3))
    );
    assert_eq!(
        ppo_clip_loss(
            Exec::new(),
            &PolicyInputs { shape: BatchShape::new(usize::MAX, 2), ..base },
            &c,
            LossOut { loss: &mut g4.clone(), dloss_dlogp: &mut g4 }
        ),
        Err(TmError::SizeOverflow { what: "shape" })
    );
    for bad in [
        ClipCfg { eps_low: -0.1, ..c },
        ClipCfg { eps_high: f32::NAN, ..c },
        ClipCfg { eps_high: f32::INFINITY, ..c },
        ClipCfg { dual_clip_c: Some(1.0), ..c },
        ClipCfg { dual_clip_c: Some(f32::INFINITY), ..c },
        ClipCfg { log_ratio_clamp: Some(0.0), ..c },
        ClipCfg { log_ratio_clamp: Some(f32::NAN), ..c },
    ] {
        assert!(matches!(ppo(&base, &bad), Err(TmError::InvalidArgument(_))), "{bad:?}");
    }
    let out = |f: &dyn Fn(LossOut<'_>) -> bool| {
        let (mut l, mut g) = ([0.0f32; 4], [0.0f32; 4]);
        f(LossOut { loss: &mut l, dloss_dlogp: &mut g })
    };
    let inv = |r: Result<PolicyStats, TmError>| matches!(r, Err(TmError::InvalidArgument(_)));
    assert!(out(&|o| inv(gspo_loss(Exec::new(), &base, &GspoCfg { eps_low: -1.0, ..GspoCfg::default() }, o))));
    assert!(out(&|o| inv(gspo_loss(
        Exec::new(),
        &base,
        &GspoCfg { seq_log_ratio_cap: Some(f32::NAN), ..GspoCfg::default() },
        o
    ))));
    assert!(out(&|o| inv(cispo_loss(
        Exec::new(),
        &base,
        &CispoCfg { w_min: Some(2.0), w_max: Some(1.0), log_ratio_clamp: None },
        o
    ))));
    assert!(out(&|o| inv(cispo_loss(
        Exec::new(),
        &base,
        &CispoCfg { w_min: Some(f32::NAN), ..CispoCfg::default() },
        o
    ))));
    assert!(out(&|o| inv(sapo_loss(Exec::new(), &base, &SapoCfg { tau_pos: 0.0, ..SapoCfg::default() }, o))));
    assert!(out(&|o| inv(sapo_loss(Exec::new(), &base, &SapoCfg { tau_neg: f32::NAN, ..SapoCfg::default() }, o))));
    assert!(out(&|o| matches!(
        gspo_loss(Exec::new(), &PolicyInputs { adv: &short, ..base }, &GspoCfg::default(), o),
        Err(TmError::LengthMismatch { what: "adv", .. })
    )));
    assert!(out(&|o| matches!(
        kl_loss(Exec::new(), sh, &m, &v, &short, &KlCfg::default(), o),
        Err(TmError::LengthMismatch { what: "ref_logp", .. })
    )));
    // Aggregation.
    let d = AggNorm::default();
    assert_eq!(agg_loss(Exec::new(), sh, &m, &short, AggMode::TokenMean, &d), Err(lm("loss", 3)));
    assert_eq!(agg_loss(Exec::new(), sh, &m[..3], &v, AggMode::TokenMean, &d), Err(lm("mask", 3)));
    let ia = |r: Result<f32, TmError>| matches!(r, Err(TmError::InvalidArgument(_)));
    assert!(ia(agg_loss(Exec::new(), sh, &m, &v, AggMode::TokenMean, &AggNorm { dp_size: 0, ..d })));
    assert!(ia(agg_loss(Exec::new(), sh, &m, &v, AggMode::TokenMean, &AggNorm { global_tokens: Some(3), ..d })));
    assert!(ia(agg_loss(Exec::new(), sh, &m, &v, AggMode::SeqMeanTokenSum, &AggNorm { global_seqs: Some(1), ..d })));
    assert!(ia(agg_loss(
        Exec::new(),
        sh,
        &m,
        &v,
        AggMode::SeqMeanTokenSumNorm,
        &AggNorm { scale_factor: Some(0.0), ..d }
    )));
    let mut w3 = [0.0f32; 3];
    assert_eq!(agg_weights(Exec::new(), sh, &m, AggMode::TokenMean, &d, &mut w3), Err(lm("w", 3)));
    let mut o4 = [0.0f32; 4];
    assert_eq!(logp_upstream(Exec::new(), &v, &[(1.0, &short)], &mut o4), Err(lm("upstream term", 3)));
    assert_eq!(logp_upstream(Exec::new(), &v, &[], &mut w3), Err(lm("g_logp", 3)));
    assert!(matches!(entropy_upstream(Exec::new(), &v, f32::NAN, &mut o4), Err(TmError::InvalidArgument(_))));
    assert!(matches!(
        tis_weights(Exec::new(), sh, &m, &v, &v, &TisCfg { cap: 0.0, ..TisCfg::default() }, &mut o4),
        Err(TmError::InvalidArgument(_))
    ));
    assert!(matches!(
        tis_weights(Exec::new(), sh, &m, &v, &short, &TisCfg::default(), &mut o4),
        Err(TmError::LengthMismatch { what: "rollout_logp", .. })
    ));
}

/// NaN at a valid position: NaN loss and gradient there (not silently zeroed), other tokens
/// unaffected; for GSPO the whole row is NaN (the tokens are coupled).
#[test]
fn nan_at_valid_positions_propagates() {
    let sh = BatchShape::new(2, 2);
    let lp = [f32::NAN, -1.0, -1.0, -1.0];
    let old = [-1.0f32; 4];
    let a = [1.0f32, 0.0, 1.0, 0.5];
    let m = [1u8; 4];
    let inp = inputs(sh, &lp, &old, &a, &m);
    for (l, g) in [
        run(4, |o| ppo_clip_loss(Exec::new(), &inp, &ClipCfg::default(), o)).map(|r| (r.0, r.1)).unwrap(),
        run(4, |o| cispo_loss(Exec::new(), &inp, &CispoCfg::default(), o)).map(|r| (r.0, r.1)).unwrap(),
        run(4, |o| sapo_loss(Exec::new(), &inp, &SapoCfg::default(), o)).map(|r| (r.0, r.1)).unwrap(),
    ] {
        assert!(l[0].is_nan() && g[0].is_nan());
        assert!(l[1..].iter().chain(&g[1..]).all(|x| !x.is_nan()));
    }
    let (l, g, _) = run(4, |o| gspo_loss(Exec::new(), &inp, &GspoCfg::default(), o)).unwrap();
    assert!(l[..2].iter().chain(&g[..2]).all(|x| x.is_nan()));
    assert!(l[2..].iter().chain(&g[2..]).all(|x| !x.is_nan()));
    let a_nan = [0.5f32, f32::NAN, 1.0, 0.5];
    let lp = [-1.0f32; 4];
    let (l, g, _) =
        run(4, |o| ppo_clip_loss(Exec::new(), &inputs(sh, &lp, &old, &a_nan, &m), &ClipCfg::default(), o)).unwrap();
    assert!(l[1].is_nan() && g[1].is_nan() && !l[0].is_nan());
    let (v, g, _) =
        run(4, |o| kl_loss(Exec::new(), sh, &m, &[f32::NAN, 0.0, 0.0, 0.0], &old, &KlCfg::default(), o)).unwrap();
    assert!(v[0].is_nan() && g[0].is_nan() && !v[1].is_nan());
    assert!(agg_loss(Exec::new(), sh, &m, &[f32::NAN, 0.0, 0.0, 0.0], AggMode::TokenMean, &AggNorm::default())
        .unwrap()
        .is_nan());
}

/// Rollout importance weights: worked example (token and sequence level), and that they scale
/// loss and gradient of every kernel.
#[test]
fn truncated_importance_weights() {
    let sh = BatchShape::new(1, 3);
    let old = [3f32.ln() - 1.0, 1.5f32.ln() - 1.0, 9.0];
    let roll = [-1.0f32, -1.0, f32::NAN];
    let m = [1u8, 1, 0];
    let mut w = vec![POISON; 3];
    tis_weights(Exec::new(), sh, &m, &old, &roll, &TisCfg::default(), &mut w).unwrap();
    close(w[0], 2.0, 0.0);
    close(w[1], 1.5, 1e-6);
    assert_eq!(w[2], 0.0);
    tis_weights(Exec::new(), sh, &m, &old, &roll, &TisCfg { level: TisLevel::Sequence, cap: 10.0 }, &mut w).unwrap();
    close(w[0], 4.5, 1e-5);
    close(w[1], 4.5, 1e-5);
    assert_eq!(w[2], 0.0);
    tis_weights(Exec::new(), sh, &m, &old, &roll, &TisCfg { level: TisLevel::Sequence, cap: 2.0 }, &mut w).unwrap();
    assert_eq!(w, [2.0, 2.0, 0.0]);
    // Scaling: ℓ(w) = w·ℓ(1), gradient too.
    let (lp, o2, a) = ([-1.0f32, -0.5, -2.0], [-1.2f32, -0.4, -2.0], [1.0f32, -1.0, 3.0]);
    let isw = [0.5f32, 2.0, f32::NAN];
    let plain = inputs(sh, &lp, &o2, &a, &m);
    let weighted = PolicyInputs { is_weights: Some(&isw), ..plain };
    let (l1, g1, _) = run(3, |o| ppo_clip_loss(Exec::new(), &plain, &ClipCfg::default(), o)).unwrap();
    let (l2, g2, _) = run(3, |o| ppo_clip_loss(Exec::new(), &weighted, &ClipCfg::default(), o)).unwrap();
    for j in 0..2 {
        assert_eq!(l2[j], l1[j] * isw[j]);
        assert_eq!(g2[j], g1[j] * isw[j]);
    }
    assert_eq!((l2[2], g2[2]), (0.0, 0.0));
}

/// The chain: `L = agg(ℓ_ppo + β·k3)(logp(x))` through the logits backward, against central
/// differences of the whole pipeline in f64 (reference log-probs, reference losses).
#[test]
fn chains_into_logits_backward() {
    use tokenmath_reference::policy_loss as rpl;
    let (rows, cols, v) = (2usize, 3usize, 5usize);
    let n = rows * cols;
    let x: Vec<f32> = (0..n * v).map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.21).collect();
    let targets: Vec<i32> = (0..n).map(|i| (i * 3 % v) as i32).collect();
    let mask = [1u8, 1, 0, 1, 0, 0];
    let old: Vec<f32> = (0..n).map(|i| -1.6 + 0.13 * i as f32).collect();
    let refl: Vec<f32> = (0..n).map(|i| -1.4 - 0.07 * i as f32).collect();
    let adv = [1.0f32, 1.0, 0.0, -0.8, 0.0, 0.0];
    let beta = 0.1f32;
    let sh = BatchShape::new(rows, cols);
    let cfg = ClipCfg::default();
    // Forward through the logits kernel.
    let inputs_l = RowInputs { targets: Some(&targets), row_mask: None, temperature: Temperature::Scalar(1.0) };
    let [mut lse, mut h, mut lp, mut max, mut log_sum] = core::array::from_fn(|_| vec![0.0; n]);
    let xm = Mat::dense(&x, n, v).unwrap();
    logits::stats_fwd(
        common::portable(),
        xm,
        &inputs_l,
        FwdOut {
            lse: &mut lse,
            entropy: &mut h,
            logp: Some(&mut lp),
            max: Some(&mut max),
            log_sum: Some(&mut log_sum),
        },
    )
    .unwrap();
    let inp = PolicyInputs { shape: sh, logp: &lp, old_logp: &old, adv: &adv, mask: &mask, is_weights: None };
    let (_, dpg, _) = run(n, |o| ppo_clip_loss(Exec::new(), &inp, &cfg, o)).unwrap();
    let (_, dkl, _) = run(n, |o| kl_loss(Exec::new(), sh, &mask, &lp, &refl, &KlCfg::default(), o)).unwrap();
    let mut w = vec![POISON; n];
    agg_weights(Exec::new(), sh, &mask, AggMode::TokenMean, &AggNorm::default(), &mut w).unwrap();
    let mut g_logp = vec![POISON; n];
    logp_upstream(Exec::new(), &w, &[(1.0, &dpg), (beta, &dkl)], &mut g_logp).unwrap();
    let mut dx = vec![POISON; n * v];
    logits::stats_bwd(
        common::portable(),
        xm,
        &inputs_l,
        Saved { max: &max, log_sum: &log_sum, entropy: &h },
        Upstream { g_logp: Some(&g_logp), g_entropy: None, g_lse: None },
        MatMut::dense(&mut dx, n, v).unwrap(),
    )
    .unwrap();
    // The whole pipeline in f64.
    let clip = rpl::Clip { eps_low: 0.2, eps_high: 0.2, c: Some(3.0), clamp: Some(20.0) };
    let total = |xs: &[f64]| -> f64 {
        let mut per = vec![0.0; n];
        for r in 0..n {
            // logp from the f64 logits directly.
            let xr = &xs[r * v..(r + 1) * v];
            let mx = xr.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = mx + xr.iter().map(|q| (q - mx).exp()).sum::<f64>().ln();
            let lpr = xr[targets[r] as usize] - lse;
            per[r] = rpl::ppo_value(lpr, old[r] as f64, adv[r] as f64, 1.0, &clip)
                + beta as f64 * rpl::kl_token(lpr, refl[r] as f64, rpl::Kl::K3, true).0;
        }
        rpl::agg(
            &per,
            &mask,
            cols,
            rpl::Agg::TokenMean,
            &rpl::Norm { global_tokens: None, global_seqs: None, dp: 1.0, scale: None },
        )
    };
    let x64: Vec<f64> = x.iter().map(|&q| q as f64).collect();
    for i in 0..n * v {
        let mut xp = x64.clone();
        let mut xn = x64.clone();
        xp[i] += 1e-6;
        xn[i] -= 1e-6;
        let fd = (total(&xp) - total(&xn)) / 2e-6;
        assert!((dx[i] as f64 - fd).abs() <= 1e-5 + 1e-4 * fd.abs(), "dx[{i}] = {} vs fd {fd}", dx[i]);
    }
    assert!(dx.iter().any(|&g| g.abs() > 1e-3), "the check must not be vacuous");
}

/// Entropy bonus upstream and the select in `logp_upstream`.
#[test]
fn upstream_helpers() {
    let w = [0.25f32, 0.0, 0.5];
    let mut o = [POISON; 3];
    entropy_upstream(Exec::new(), &w, 0.01, &mut o).unwrap();
    assert_eq!(o, [-0.0025, 0.0, -0.005]);
    logp_upstream(Exec::new(), &w, &[(1.0, &[2.0, f32::NAN, 4.0]), (0.5, &[2.0, 1.0, -2.0])], &mut o).unwrap();
    assert_eq!(o, [0.75, 0.0, 1.5]);
    logp_upstream(Exec::new(), &w, &[], &mut o).unwrap();
    assert_eq!(o, [0.0; 3]);
}

/// The bits of `v`, every NaN as one pattern (Rust leaves a NaN result's sign and payload
/// unspecified; everything else must match exactly).
fn nan_bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| if x.is_nan() { f32::NAN.to_bits() } else { x.to_bits() }).collect()
}

/// Metrics as exact integers (sums by their bits, NaN canonical).
fn stat_key(p: &PolicyStats, k: &KlStats) -> [u64; 7] {
    let b = |x: f64| if x.is_nan() { f64::NAN.to_bits() } else { x.to_bits() };
    [p.valid_tokens, p.clipped_high, p.clipped_low, p.clipped_dual, b(p.neg_log_ratio_sum), k.valid_tokens, b(k.kl_sum)]
}

/// `logp, old_logp, adv, mask, w_is, ref_logp`.
type Hostile = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<u8>, Vec<f32>, Vec<f32>);

/// Hostile per-token inputs: realistic values, plus NaN, ±inf, `−0.0`, `A = ±0`, clip
/// boundaries and huge log-ratios at scattered (valid and masked) positions.
fn hostile(n: usize, seed: u64) -> Hostile {
    let mut s = seed;
    let mut next = move || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
    };
    let specials = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0, 0.0, 25.0, -25.0, 95.0, -95.0];
    let (mut lp, mut old, mut adv, mut mask, mut w, mut rf) = (vec![], vec![], vec![], vec![], vec![], vec![]);
    for i in 0..n {
        let x = -6.0 * next();
        lp.push(x);
        old.push(x + 1.2 * (next() - 0.5));
        adv.push(4.0 * (next() - 0.5));
        mask.push(if next() < 0.15 { 0 } else { 1 + (i % 5) as u8 });
        w.push(2.0 * next());
        rf.push(x + 40.0 * (next() - 0.5));
        let pick = (next() * 1000.0) as usize;
        match i % 23 {
            2 => lp[i] = specials[pick % specials.len()],
            5 => old[i] = lp[i] - specials[pick % specials.len()],
            9 => adv[i] = [0.0, -0.0, f32::NAN, 0.0][pick % 4],
            14 => rf[i] = specials[pick % specials.len()],
            19 => old[i] = lp[i] - [1.2f32.ln(), 0.8f32.ln(), 3.0f32.ln(), 20.0, -20.0][pick % 5],
            _ => {}
        }
    }
    (lp, old, adv, mask, w, rf)
}

/// `ppo_clip_kl_step` is bitwise the composition it replaces — `ppo_clip_kl_loss`, then
/// `agg_loss` and `agg_chain_inplace` — for every aggregation mode and normaliser, every KL
/// estimator, clip configuration, with and without importance weights, on shapes whose `T`
/// is and is not a multiple of the vector widths (8, 16), and on empty shapes; NaN compared
/// as NaN (its sign and payload are unspecified in Rust).
#[test]
fn fused_step_matches_composition_bitwise() {
    let modes = [AggMode::TokenMean, AggMode::SeqMeanTokenSum, AggMode::SeqMeanTokenMean, AggMode::SeqMeanTokenSumNorm];
    let norms = [
        AggNorm::default(),
        AggNorm { global_tokens: Some(1 << 20), global_seqs: Some(4096), dp_size: 8, scale_factor: Some(1.5) },
    ];
    let kls = [
        KlCfg::default(),
        KlCfg::trl(),
        KlCfg { kind: KlKind::K3Plus, verl_clamps: true },
        KlCfg { kind: KlKind::K2, verl_clamps: false },
    ];
    let clips = [
        ClipCfg::default(),
        ClipCfg::dapo(),
        ClipCfg::trl(),
        ClipCfg { log_ratio_clamp: Some(60.0), ..ClipCfg::default() },
    ];
    let mut checked = 0;
    for (rows, cols) in [(3, 64), (4, 24), (2, 13), (6, 1), (0, 16), (4, 0), (1, 4096)] {
        let n = rows * cols;
        let (lp, old, adv, mut mask, w, rf) = hostile(n, (rows * 1000 + cols) as u64);
        if rows > 1 {
            mask[cols..2 * cols].fill(0); // an empty row
        }
        for row in mask.chunks_mut(cols.max(1)).skip(2).step_by(2) {
            let len = row.len() / 3;
            row[len..].fill(0); // padding after a response, as a trainer lays it out
        }
        let shape = BatchShape::new(rows, cols);
        for (c, clip) in clips.iter().enumerate() {
            for (k, klc) in kls.iter().enumerate() {
                // All combinations of the clip and KL settings would be slow; pair them up.
                if (c + k) % 2 == 1 && cols != 64 {
                    continue;
                }
                for with_w in [false, true] {
                    let inp = PolicyInputs {
                        shape,
                        logp: &lp,
                        old_logp: &old,
                        adv: &adv,
                        mask: &mask,
                        is_weights: with_w.then_some(&w[..]),
                    };
                    let kl = KlTerm { ref_logp: &rf, cfg: *klc, coef: 0.05 };
                    for mode in modes {
                        for norm in &norms {
                            let (mut l0, mut g0) = (vec![POISON; n], vec![POISON; n]);
                            let (ps0, ks0) = ppo_clip_kl_loss(
                                Exec::new(),
                                &inp,
                                clip,
                                &kl,
                                LossOut { loss: &mut l0, dloss_dlogp: &mut g0 },
                            )
                            .unwrap();
                            let big0 = agg_loss(Exec::new(), shape, &mask, &l0, mode, norm).unwrap();
                            agg_chain_inplace(Exec::new(), shape, &mask, mode, norm, &mut g0).unwrap();
                            let (l1, g1, st) =
                                run(n, |o| ppo_clip_kl_step(Exec::new(), &inp, clip, &kl, mode, norm, o)).unwrap();
                            let what = format!("{rows}x{cols} {clip:?} {klc:?} w={with_w} {mode:?} {norm:?}");
                            assert_eq!(nan_bits(&l1), nan_bits(&l0), "loss {what}");
                            assert_eq!(nan_bits(&g1), nan_bits(&g0), "g_logp {what}");
                            assert_eq!(nan_bits(&[st.loss]), nan_bits(&[big0]), "L {what}");
                            assert_eq!(stat_key(&st.policy, &st.kl), stat_key(&ps0, &ks0), "metrics {what}");
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 500, "{checked}");
}

/// On NaN-free, realistic inputs the fused step is bitwise the composition with no NaN
/// caveat at all (every bit of `ℓ`, `g_logp`, `L` and the `f64` metric sums).
#[test]
fn fused_step_matches_composition_exactly_without_nan() {
    let (rows, cols) = (8, 512);
    let n = rows * cols;
    let (lp, old, adv, mask, _, rf) = hostile(n, 7);
    let clean = |v: Vec<f32>| {
        v.into_iter().map(|x| if x.is_finite() { x.clamp(-30.0, 30.0) } else { -1.0 }).collect::<Vec<_>>()
    };
    let (lp, old, adv, rf) = (clean(lp), clean(old), clean(adv), clean(rf));
    let shape = BatchShape::new(rows, cols);
    let inp = PolicyInputs { shape, logp: &lp, old_logp: &old, adv: &adv, mask: &mask, is_weights: None };
    let kl = KlTerm { ref_logp: &rf, cfg: KlCfg::default(), coef: 0.001 };
    for mode in [AggMode::TokenMean, AggMode::SeqMeanTokenMean] {
        let norm = AggNorm::default();
        let (mut l0, mut g0) = (vec![POISON; n], vec![POISON; n]);
        let (ps0, ks0) = ppo_clip_kl_loss(
            Exec::new(),
            &inp,
            &ClipCfg::default(),
            &kl,
            LossOut { loss: &mut l0, dloss_dlogp: &mut g0 },
        )
        .unwrap();
        let big0 = agg_loss(Exec::new(), shape, &mask, &l0, mode, &norm).unwrap();
        agg_chain_inplace(Exec::new(), shape, &mask, mode, &norm, &mut g0).unwrap();
        let (l1, g1, st) =
            run(n, |o| ppo_clip_kl_step(Exec::new(), &inp, &ClipCfg::default(), &kl, mode, &norm, o)).unwrap();
        let raw = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(raw(&l1), raw(&l0));
        assert_eq!(raw(&g1), raw(&g0));
        assert_eq!(st.loss.to_bits(), big0.to_bits());
        assert_eq!((st.policy, st.kl), (ps0, ks0));
        assert!(st.policy.clipped_high > 0 && st.policy.clipped_low > 0 && st.policy.clipped_dual > 0);
    }
}

/// The fused step's errors are the composition's, in its order, and nothing is written when
/// any of them (including the aggregation's) fails.
#[test]
fn fused_step_errors_before_writing() {
    let sh = BatchShape::new(2, 2);
    let v = [0.0f32; 4];
    let short = [0.0f32; 3];
    let m = [1u8; 4];
    let inp = PolicyInputs { shape: sh, logp: &v, old_logp: &v, adv: &v, mask: &m, is_weights: None };
    let kl = KlTerm { ref_logp: &v, cfg: KlCfg::default(), coef: 0.1 };
    let step = |inp: &PolicyInputs<'_>, cfg: &ClipCfg, kl: &KlTerm<'_>, norm: &AggNorm| {
        let (mut l, mut g) = ([POISON; 4], [POISON; 4]);
        let r = ppo_clip_kl_step(
            Exec::new(),
            inp,
            cfg,
            kl,
            AggMode::TokenMean,
            norm,
            LossOut { loss: &mut l, dloss_dlogp: &mut g },
        );
        assert!(untouched(&l) && untouched(&g), "wrote before failing");
        r.unwrap_err()
    };
    let (c, nm) = (ClipCfg::default(), AggNorm::default());
    let lm = |what: &'static str, got| TmError::LengthMismatch { what, expected: 4, got };
    assert_eq!(step(&PolicyInputs { logp: &short, ..inp }, &c, &kl, &nm), lm("logp", 3));
    assert_eq!(step(&inp, &c, &KlTerm { ref_logp: &short, ..kl }, &nm), lm("ref_logp", 3));
    assert!(matches!(step(&inp, &ClipCfg { eps_low: -1.0, ..c }, &kl, &nm), TmError::InvalidArgument(_)));
    assert!(matches!(step(&inp, &c, &KlTerm { coef: f32::NAN, ..kl }, &nm), TmError::InvalidArgument(_)));
    assert!(matches!(step(&inp, &c, &kl, &AggNorm { dp_size: 0, ..nm }), TmError::InvalidArgument(_)));
    assert!(matches!(step(&inp, &c, &kl, &AggNorm { global_tokens: Some(3), ..nm }), TmError::InvalidArgument(_)));
    // The short output buffer, as the composition reports it.
    let (mut l, mut g) = ([POISON; 3], [POISON; 4]);
    let r = ppo_clip_kl_step(
        Exec::new(),
        &inp,
        &c,
        &kl,
        AggMode::TokenMean,
        &nm,
        LossOut { loss: &mut l, dloss_dlogp: &mut g },
    );
    assert_eq!(r, Err(lm("loss", 3)));
}
