//! Group statistics and advantage estimators against the f64 references, the spec's worked
//! examples, the invariants of `policy.md` §6 and hostile inputs.

mod common;

use common::POISON;
use proptest::prelude::*;
use tokenmath_core::advantages::{
    self as adv, Compat, Groups, GrpoCfg, GrpoFlavor, Moments, NanPolicy, OverlongCfg, RlooFlavor, SingletonPolicy,
    StdKind, TrlScale,
};
use tokenmath_core::TmError;
use tokenmath_reference::advantages::{self as oracle, Adv, TrlScaleRef};

// ---------------------------------------------------------------------------------------
// Helpers

/// `|got − want| ≤ 6e-8·|want| + 4(n + 2)·2⁻⁵²·cond`: one `f32` rounding of the result
/// (`2⁻²⁴` relative) plus `f64` rounding of the statistics amplified by the formula's
/// conditioning (see [`Adv::cond`]), over groups of at most `n` members.
fn assert_adv(got: &[f32], want: &[Adv], n: usize) {
    assert_eq!(got.len(), want.len());
    for (b, (&g, w)) in got.iter().zip(want).enumerate() {
        let tol = 6e-8 * w.a.abs() + 4.0 * (n as f64 + 2.0) * f64::EPSILON * w.cond + 1e-45;
        assert!((g as f64 - w.a).abs() <= tol, "row {b}: got {g:e}, want {:e} (tol {tol:e})", w.a);
    }
}

/// Equal to a value the spec prints with 7 significant digits (within half its last digit).
fn near_spec(got: f32, printed: f64) -> bool {
    (got as f64 - printed).abs() <= 0.5e-7
}

fn grpo(rewards: &[f32], groups: Groups<'_>, cfg: &GrpoCfg) -> Result<Vec<f32>, TmError> {
    let mut out = vec![POISON; rewards.len()];
    adv::grpo_advantage(rewards, groups, cfg, &mut out)?;
    Ok(out)
}

fn rloo(rewards: &[f32], groups: Groups<'_>, flavor: RlooFlavor) -> Result<Vec<f32>, TmError> {
    let mut out = vec![POISON; rewards.len()];
    adv::rloo_advantage(rewards, groups, flavor, &mut out)?;
    Ok(out)
}

fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

fn standard(std: StdKind, singleton: SingletonPolicy) -> GrpoCfg {
    GrpoCfg { flavor: GrpoFlavor::Standard { std, singleton }, ..GrpoCfg::default() }
}

/// Largest group in a labelling.
fn max_group(ids: &[u32]) -> usize {
    oracle::groups_of(ids).iter().map(Vec::len).max().unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// Hostile generators

/// Rewards as they come: binary verifier scores, small integers, continuous values, a large
/// common offset (|μ| ≫ σ), signed zeros and tiny values.
fn reward() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => prop_oneof![Just(0.0f32), Just(1.0)],
        2 => (-3i32..=3).prop_map(|v| v as f32),
        3 => -10.0f32..10.0,
        1 => (-1.0f32..1.0).prop_map(|v| 1e4 + v),
        1 => prop_oneof![Just(-0.0f32), Just(1e-30f32), Just(f32::MIN_POSITIVE)],
    ]
}

/// Arbitrary sparse `u32` labels, in any order, drawn from `k` distinct values.
fn labels(n: usize) -> impl Strategy<Value = Vec<u32>> {
    (1u32..10).prop_flat_map(move |k| {
        proptest::collection::vec((0..k).prop_map(|v| v.wrapping_mul(2_654_435_761).wrapping_add(7)), n)
    })
}

/// `(rewards, ids)` with arbitrary labels.
fn labelled_batch() -> impl Strategy<Value = (Vec<f32>, Vec<u32>)> {
    (0usize..40).prop_flat_map(|n| (proptest::collection::vec(reward(), n), labels(n)))
}

/// `(rewards, G)` in TRL's contiguous layout.
fn contiguous_batch() -> impl Strategy<Value = (Vec<f32>, usize)> {
    (1usize..7, 0usize..7).prop_flat_map(|(g, k)| (proptest::collection::vec(reward(), g * k), Just(g)))
}

/// Rewards with NaN ("unscorable") entries mixed in.
fn nan_reward() -> impl Strategy<Value = f32> {
    prop_oneof![5 => reward(), 1 => Just(f32::NAN)]
}

/// `(rewards, ids)` with arbitrary labels and some NaN rewards.
fn nan_labelled_batch() -> impl Strategy<Value = (Vec<f32>, Vec<u32>)> {
    (0usize..40).prop_flat_map(|n| (proptest::collection::vec(nan_reward(), n), labels(n)))
}

// ---------------------------------------------------------------------------------------
// Worked examples (policy.md §3.1, §3.3, §3.4, §4.3), computed by hand

#[test]
fn grpo_worked_example_verl_and_trl() {
    let r = [1.0f32, 0.0, 0.0, 1.0];
    // μ = 0.5, σ = sqrt(((0.5)²·4)/3) = sqrt(1/3) = 0.5773503.
    let mut ids = [0u32; 1];
    let mut m = [Moments::EMPTY; 1];
    assert_eq!(adv::group_moments(&r, Groups::Contiguous { size: 4 }, None, &mut ids, &mut m), Ok(1));
    assert_eq!(m[0].mean, 0.5);
    assert!(near_spec(m[0].std(StdKind::Unbiased) as f32, 0.577_350_3));
    // verl: 0.5/(0.5773503 + 1e-6) = 0.8660239.
    for cfg in [GrpoCfg::verl_loop(), GrpoCfg::verl_vectorized(), GrpoCfg::default()] {
        let a = grpo(&r, Groups::Ids(&[9, 9, 9, 9]), &cfg).unwrap();
        let want = [0.866_023_9, -0.866_023_9, -0.866_023_9, 0.866_023_9];
        assert!(a.iter().zip(want).all(|(&g, w)| near_spec(g, w)), "{cfg:?}: {a:?}");
    }
    // TRL: 0.5/(0.5773503 + 1e-4) = 0.8658754.
    let a = grpo(&r, Groups::Contiguous { size: 4 }, &GrpoCfg::trl(TrlScale::Group)).unwrap();
    let want = [0.865_875_4, -0.865_875_4, -0.865_875_4, 0.865_875_4];
    assert!(a.iter().zip(want).all(|(&g, w)| near_spec(g, w)), "{a:?}");
    // The same numbers to full precision: 0.5/(sqrt(1/3) + ε), rounded once.
    assert_eq!(a[0], (0.5 / ((1.0f64 / 3.0).sqrt() + 1e-4f32 as f64)) as f32);
    // Dr. GRPO: R − μ.
    let mut out = [POISON; 4];
    adv::dr_grpo_advantage(&r, Groups::Contiguous { size: 4 }, &mut out).unwrap();
    assert_eq!(out, [0.5, -0.5, -0.5, 0.5]);
    // Population std: σ = 0.5 ⇒ 0.5/(0.5 + 1e-6) = 0.999998.
    let a = grpo(&r, Groups::Contiguous { size: 4 }, &standard(StdKind::Population, SingletonPolicy::Zero)).unwrap();
    assert_eq!(a[0], (0.5f64 / 0.500_001) as f32);
}

#[test]
fn rloo_worked_example() {
    // A_b = R_b − mean(others): 1 − 1/3 = 2/3 and 0 − 2/3 = −2/3, in every flavor.
    let r = [1.0f32, 0.0, 0.0, 1.0];
    let flavors =
        [RlooFlavor::Standard, RlooFlavor::VerlLoop, RlooFlavor::VerlVectorized, RlooFlavor::Trl { normalize: false }];
    for flavor in flavors {
        let a = rloo(&r, Groups::Contiguous { size: 4 }, flavor).unwrap();
        let (p, q) = ((2.0f64 / 3.0) as f32, (-2.0f64 / 3.0) as f32);
        assert_eq!(a, [p, q, q, p], "{flavor:?}");
    }
}

#[test]
fn singleton_groups_follow_each_convention() {
    // Ids 5 and 6 are singletons; 7 is a pair.
    let r = [3.0f32, -2.0, 1.0, 0.0];
    let ids = [5u32, 6, 7, 7];
    let verl = 3.0f64 / (1.0 + 1e-6);
    for cfg in [GrpoCfg::verl_loop(), GrpoCfg::verl_vectorized()] {
        let a = grpo(&r, Groups::Ids(&ids), &cfg).unwrap();
        assert_eq!(a[0], verl as f32, "{cfg:?}: verl's μ=0, σ=1 fallback");
        assert_eq!(a[1], (-2.0f64 / (1.0 + 1e-6)) as f32);
    }
    assert_eq!(grpo(&r, Groups::Ids(&ids), &GrpoCfg::default()).unwrap()[..2], [0.0, 0.0]);
    let keep = standard(StdKind::Unbiased, SingletonPolicy::MeanZeroStdOne);
    assert_eq!(grpo(&r, Groups::Ids(&ids), &keep).unwrap()[0], verl as f32);
    // TRL with G = 1: std := 0 and μ = R ⇒ 0, for every scale.
    for scale in [TrlScale::Group, TrlScale::Batch, TrlScale::None] {
        assert_eq!(grpo(&r, Groups::Contiguous { size: 1 }, &GrpoCfg::trl(scale)).unwrap(), [0.0; 4]);
    }
    // RLOO: verl's loop keeps R, vectorised and library give 0.
    assert_eq!(rloo(&r, Groups::Ids(&ids), RlooFlavor::VerlLoop).unwrap()[..2], [3.0, -2.0]);
    assert_eq!(rloo(&r, Groups::Ids(&ids), RlooFlavor::VerlVectorized).unwrap()[..2], [0.0, 0.0]);
    assert_eq!(rloo(&r, Groups::Ids(&ids), RlooFlavor::Standard).unwrap()[..2], [0.0, 0.0]);
}

#[test]
fn returns_to_go_worked_examples() {
    // Prefix mask, γ = 0.5: G = [0 + 0.5·(0 + 0.5·1), 0 + 0.5·1, 1] = [0.25, 0.5, 1].
    let mut g = [POISON; 3];
    adv::returns_to_go(&[0.0, 0.0, 1.0], &[1, 1, 1], 3, 0.5, &mut g).unwrap();
    assert_eq!(g, [0.25, 0.5, 1.0]);
    // Non-contiguous mask [1, 0, 1], γ = 1: t=2: 3; t=1 (masked): 2 + 3 = 5, carry reset;
    // t=0: 1 + 0 = 1. The masked position keeps its (unmasked) return, as verl.
    adv::returns_to_go(&[1.0, 2.0, 3.0], &[1, 0, 1], 3, 1.0, &mut g).unwrap();
    assert_eq!(g, [1.0, 5.0, 3.0]);
    // Two rows, the second after EOS: padding returns are 0 when padding rewards are.
    let mut g = [POISON; 6];
    adv::returns_to_go(&[1.0, 1.0, 0.0, 2.0, 0.0, 0.0], &[1, 1, 0, 1, 0, 0], 3, 0.9, &mut g).unwrap();
    assert_eq!(g, [1.9, 1.0, 0.0, 2.0, 0.0, 0.0]);
}

#[test]
fn gae_worked_example() {
    // r = [0, 0, 1], V = 0.5 everywhere, γ = 1, λ = 0.5: δ = [0, 0, 0.5], A = [0.125, 0.25, 0.5]
    // (A_t = δ_t + γλ·A_{t+1}), ret = A + V = [0.625, 0.75, 1].
    let (mut a, mut ret) = ([POISON; 4], [POISON; 4]);
    let (r, v, m) = ([0.0, 0.0, 1.0, f32::NAN], [0.5, 0.5, 0.5, f32::NAN], [1, 1, 1, 0]);
    adv::gae(
        &r,
        &v,
        &m,
        4,
        &adv::GaeCfg { gamma: 1.0, lam: 0.5, compat: Compat::Library },
        adv::GaeOut { adv: &mut a, ret: &mut ret },
    )
    .unwrap();
    assert_eq!(ret[..3], [0.625, 0.75, 1.0]);
    assert!(ret[3].is_nan(), "verl's unmasked returns: A + V at padding");
    // Whitened: mean 7/24, unbiased var = 0.0364583…, padding 0.
    let (mu, var) = (
        7.0f64 / 24.0,
        ((0.125f64 - 7.0 / 24.0).powi(2) + (0.25f64 - 7.0 / 24.0).powi(2) + (0.5f64 - 7.0 / 24.0).powi(2)) / 2.0,
    );
    let want = [0.125, 0.25, 0.5].map(|x: f64| ((x - mu) / (var + 1e-8).sqrt()) as f32);
    assert_eq!(a, [want[0], want[1], want[2], 0.0]);
    // A masked gap carries the next valid value and advantage across it.
    let (r, v, m) = ([0.0, 7.0, 1.0], [0.5, 9.0, 0.5], [1, 0, 1]);
    let mut ret = [POISON; 3];
    adv::gae(
        &r,
        &v,
        &m,
        3,
        &adv::GaeCfg { gamma: 1.0, lam: 1.0, compat: Compat::Library },
        adv::GaeOut { adv: &mut [POISON; 3], ret: &mut ret },
    )
    .unwrap();
    // δ2 = 0.5, A2 = 0.5; position 1 skipped (A1 = 0.5, ret 9.5); δ0 = 0 + 0.5 − 0.5 = 0, A0 = 0.5.
    assert_eq!(ret, [1.0, 9.5, 1.0]);
}

#[test]
fn trl_multi_reward_worked_example() {
    // Two reward functions, weights [1, 0.5], groups of 2:
    // rows [1, NaN], [0, 1], [NaN, NaN], [1, 1] → nansum R = [1, 0.5, NaN, 1.5].
    let per_func = [1.0, f32::NAN, 0.0, 1.0, f32::NAN, f32::NAN, 1.0, 1.0];
    let weights = [1.0, 0.5];
    let mut r = [POISON; 4];
    adv::trl_sum_rewards(&per_func, &weights, &mut r).unwrap();
    assert_eq!(r[..2], [1.0, 0.5]);
    assert!(r[2].is_nan());
    assert_eq!(r[3], 1.5);
    // Through TRL's GRPO: group 1 R = [1, 0.5], μ = 0.75, std = √0.125 ⇒ ±0.25/(√0.125 + 1e-4);
    // group 2 has one scorable reward ⇒ nanstd NaN ⇒ both 0.
    let a = grpo(&r, Groups::Contiguous { size: 2 }, &GrpoCfg::trl(TrlScale::Group)).unwrap();
    let half = (0.25 / (0.125f64.sqrt() + 1e-4)) as f32;
    assert_eq!(a, [half, -half, 0.0, 0.0]);
    // normalize_then_sum, group 1: f0 scores [1, 0] → z = ±0.5/(√0.5 + 1e-4); f1 has one
    // score ⇒ NaN z, skipped. Group 2: row 2 unscorable (NaN → A = 0); row 3's z are NaN
    // (one score per function) ⇒ R = 0.
    let mut a = [POISON; 4];
    adv::trl_normalize_then_sum_advantage(&per_func, &weights, 2, &mut a).unwrap();
    let z = (0.5 / (0.5f64.sqrt() + 1e-4)) as f32 as f64;
    // Batch over R = [z, −z, 0] (NaN ignored): mean 0, std = z.
    let want = [z / (z + 1e-4), -z / (z + 1e-4), 0.0, 0.0].map(|v| v as f32);
    assert_eq!(a, want);
    assert!(adv::trl_sum_rewards(&per_func, &[], &mut r).is_err());
    assert!(adv::trl_sum_rewards(&per_func[..7], &weights, &mut r).is_err());
    assert!(adv::trl_normalize_then_sum_advantage(&per_func, &weights, 3, &mut a).is_err());
}

#[test]
fn overlong_worked_examples() {
    // DAPO: L_max = 20480, L_buf = 4096, factor 1: 0 up to 16384, −0.5 at 18432, −1 at
    // 20480, −1.5 at 22528 (no lower clamp).
    let cfg = OverlongCfg::default();
    let p = |len| adv::overlong_penalty(len, &cfg).unwrap();
    assert_eq!([p(0), p(16_384), p(18_432), p(20_480), p(22_528)], [0.0, 0.0, -0.5, -1.0, -1.5]);
    assert_eq!(p(16_385), (-1.0f64 / 4096.0) as f32);
    // Token rewards: score + penalty at column len − 1; an empty row stays 0.
    let cfg = OverlongCfg { max_len: 4, buffer_len: 2, penalty_factor: 1.0 };
    let mask = [1, 1, 1, 0, 1, 1, 1, 1, 0, 0, 0, 0];
    let mut out = [POISON; 12];
    adv::overlong_shaped_token_rewards(&[1.0, 1.0, 1.0], &mask, 4, &cfg, &mut out).unwrap();
    assert_eq!(out, [0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    assert_eq!(
        adv::overlong_penalty(0, &OverlongCfg { buffer_len: 0, ..cfg }),
        Err(TmError::InvalidArgument("overlong buffer_len must be > 0"))
    );
    assert!(adv::overlong_penalty(0, &OverlongCfg { buffer_len: 5, ..cfg }).is_err());
    assert!(adv::overlong_penalty(0, &OverlongCfg { penalty_factor: f32::NAN, ..cfg }).is_err());
}

#[test]
fn dynamic_sampling_worked_example() {
    // Groups: [1,1] constant (drop), [0,1] (keep), [-0.0, +0.0] identical (drop), [5] (keep).
    let metric = [1.0f32, 1.0, 0.0, 1.0, -0.0, 0.0, 5.0];
    let ids = [3u32, 3, 1, 1, 8, 8, 4];
    let mut keep = [7u8; 7];
    assert_eq!(adv::dynamic_sampling_keep(&metric, Groups::Ids(&ids), &mut keep), Ok(2));
    assert_eq!(keep, [0, 0, 1, 1, 0, 0, 1]);
    let nan = [1.0f32, f32::NAN];
    assert_eq!(
        adv::dynamic_sampling_keep(&nan, Groups::Contiguous { size: 2 }, &mut keep[..2]),
        Err(TmError::NonFinite { what: "metric", index: 1 })
    );
}

#[test]
fn masked_reductions_worked_examples() {
    // Valid [1, 2, 3, 4] (NaN in padding must not leak): mean 2.5, M2 = 5.
    let x = [1.0f32, f32::NAN, 2.0, 3.0, f32::INFINITY, 4.0];
    let m = [1, 0, 1, 1, 0, 1];
    assert_eq!(adv::masked_sum(&x, &m), Ok(10.0));
    for c in [Compat::Library, Compat::Verl] {
        assert_eq!(adv::masked_mean(&x, &m, c), Ok(2.5));
        assert_eq!(adv::masked_var(&x, &m, StdKind::Unbiased, c), Ok((5.0f64 / 3.0) as f32));
        assert_eq!(adv::masked_var(&x, &m, StdKind::Population, c), Ok(1.25));
    }
    let mut w = [POISON; 6];
    adv::masked_whiten(&x, &m, 1e-8, Compat::Library, &mut w).unwrap();
    let s = (5.0f64 / 3.0 + 1e-8).sqrt();
    let want = [-1.5 / s, 0.0, -0.5 / s, 0.5 / s, 0.0, 1.5 / s].map(|v| v as f32);
    assert_eq!(w, want);
    // verl writes the formula into padding too: NaN stays NaN, +inf becomes +inf.
    adv::masked_whiten(&x, &m, 1e-8, Compat::Verl, &mut w).unwrap();
    assert!(w[1].is_nan() && w[4] == f32::INFINITY);
    assert_eq!(w[0], want[0]);
    // Empty and one-element masks.
    let none = [0u8; 6];
    assert_eq!(adv::masked_mean(&x, &none, Compat::Library), Ok(0.0));
    assert_eq!(adv::masked_mean(&x, &none, Compat::Verl), Ok(0.0));
    assert_eq!(adv::masked_var(&x, &none, StdKind::Unbiased, Compat::Library), Ok(0.0));
    assert!(adv::masked_var(&x, &none, StdKind::Unbiased, Compat::Verl).is_err());
    let one = [1u8, 0, 0, 0, 0, 0];
    assert!(adv::masked_var(&x, &one, StdKind::Unbiased, Compat::Verl).is_err());
    assert_eq!(adv::masked_var(&x, &one, StdKind::Unbiased, Compat::Library), Ok(0.0));
    adv::masked_whiten(&x, &one, 1e-8, Compat::Library, &mut w).unwrap();
    assert_eq!(w, [0.0; 6]);
    // A constant input whitens to exactly 0, also with eps = 0.
    adv::masked_whiten(&[0.1; 6], &[1; 6], 0.0, Compat::Library, &mut w).unwrap();
    assert_eq!(w, [0.0; 6]);
}

// ---------------------------------------------------------------------------------------
// Hostile inputs and typed errors

#[test]
fn nan_and_inf_rewards() {
    let r = [1.0f32, f32::NAN, 0.0, 2.0];
    let g = Groups::Contiguous { size: 2 };
    assert_eq!(grpo(&r, g, &GrpoCfg::default()), Err(TmError::NonFinite { what: "rewards", index: 1 }));
    assert_eq!(grpo(&r, g, &GrpoCfg::verl_loop()), Err(TmError::NonFinite { what: "rewards", index: 1 }));
    assert!(rloo(&r, g, RlooFlavor::Standard).is_err());
    // TRL: the group with one scorable reward has nanstd = NaN ⇒ 0; the NaN row itself is 0.
    let a = grpo(&r, g, &GrpoCfg::trl(TrlScale::Group)).unwrap();
    assert_eq!(a[..2], [0.0, 0.0]);
    assert_eq!(a[2], (-1.0f64 / (2.0f64.sqrt() + 1e-4)) as f32);
    // TRL with no scaling: the scorable member of the half-NaN group has μ = R ⇒ 0.
    assert_eq!(grpo(&r, g, &GrpoCfg::trl(TrlScale::None)).unwrap(), [0.0, 0.0, -1.0, 1.0]);
    // A whole group unscorable ⇒ 0, under every flavor with IgnoreAndZero.
    let all_nan = [f32::NAN, f32::NAN, 1.0, 2.0];
    let flavors = [GrpoFlavor::default(), GrpoFlavor::VerlLoop, GrpoFlavor::VerlVectorized];
    for flavor in flavors {
        let cfg = GrpoCfg { flavor, nan_policy: NanPolicy::IgnoreAndZero, ..GrpoCfg::default() };
        let a = grpo(&all_nan, g, &cfg).unwrap();
        assert_eq!(a[..2], [0.0, 0.0], "{flavor:?}");
        assert!(a[2] < 0.0 && a[3] > 0.0);
    }
    // ±inf is an input error in every flavor, TRL included.
    let inf = [1.0f32, f32::NEG_INFINITY];
    assert_eq!(
        grpo(&inf, Groups::Contiguous { size: 2 }, &GrpoCfg::trl(TrlScale::Group)),
        Err(TmError::NonFinite { what: "rewards", index: 1 })
    );
}

#[test]
fn shape_and_argument_errors_write_nothing() {
    let r = [1.0f32, 0.0, 0.5];
    let mut out = [POISON; 2];
    let e = adv::grpo_advantage(&r, Groups::Contiguous { size: 1 }, &GrpoCfg::default(), &mut out);
    assert_eq!(e, Err(TmError::LengthMismatch { what: "out", expected: 3, got: 2 }));
    assert_eq!(bits(&out), bits(&[POISON; 2]));
    let mut out = [POISON; 3];
    let cases: [(Groups<'_>, GrpoCfg); 5] = [
        (Groups::Contiguous { size: 0 }, GrpoCfg::default()),
        (Groups::Contiguous { size: 2 }, GrpoCfg::default()),
        (Groups::Ids(&[0, 1]), GrpoCfg::default()),
        (Groups::Ids(&[0, 0, 0]), GrpoCfg::trl(TrlScale::Group)),
        (Groups::Ids(&[0, 0, 0]), GrpoCfg { eps: -1e-6, ..GrpoCfg::default() }),
    ];
    for (groups, cfg) in cases {
        assert!(adv::grpo_advantage(&r, groups, &cfg, &mut out).is_err(), "{groups:?} {cfg:?}");
        assert_eq!(bits(&out), bits(&[POISON; 3]));
    }
    assert!(adv::rloo_advantage(&r, Groups::Contiguous { size: 1 }, RlooFlavor::Trl { normalize: false }, &mut out)
        .is_err());
    assert!(adv::rloo_advantage(&r, Groups::Ids(&[1, 1, 1]), RlooFlavor::Trl { normalize: false }, &mut out).is_err());
    // [B, T] shapes.
    let mut bt = [POISON; 6];
    assert!(adv::broadcast_masked(&r, &[1; 5], 2, &mut bt).is_err());
    assert!(adv::returns_to_go(&[0.0; 6], &[1; 6], 4, 1.0, &mut bt).is_err());
    assert!(adv::returns_to_go(&[0.0; 6], &[1; 6], 3, -0.5, &mut bt).is_err());
    assert!(adv::returns_to_go(&[0.0; 6], &[1; 6], 0, 1.0, &mut bt).is_err());
    assert_eq!(
        adv::returns_to_go(&[0.0, f32::NAN, 0.0, 0.0, 0.0, 0.0], &[1; 6], 3, 1.0, &mut bt),
        Err(TmError::NonFinite { what: "r", index: 1 })
    );
    assert_eq!(bits(&bt), bits(&[POISON; 6]));
    // Group tables that are too small.
    let (mut ids, mut m) = ([0u32; 1], [Moments::EMPTY; 1]);
    assert_eq!(
        adv::group_moments(&r, Groups::Ids(&[4, 5, 4]), None, &mut ids, &mut m),
        Err(TmError::LengthMismatch { what: "ids_out", expected: 2, got: 1 })
    );
    assert!(adv::group_moments(&r, Groups::Ids(&[4, 5, 4]), Some(&[1.0, -1.0, 1.0]), &mut ids, &mut m).is_err());
    // Moments tables that do not fit the rows.
    let one = [Moments { n: 2.0, mean: 0.5, m2: 0.5 }];
    let two = [one[0], one[0]];
    let mut out = [POISON; 3];
    /// `(group, table_ids, table, cfg)`
    type Call<'a> = (&'a [u32], &'a [u32], &'a [Moments], GrpoCfg);
    let calls: [Call<'_>; 5] = [
        (&[4, 4, 5], &[4], &one, GrpoCfg::default()),
        (&[4, 4, 4], &[4, 4], &two, GrpoCfg::default()),
        (&[4, 4, 4], &[4], &one, GrpoCfg::verl_vectorized()),
        (&[4, 4, 4], &[4], &[Moments { n: -1.0, ..one[0] }], GrpoCfg::default()),
        (&[4, 4, 4], &[4, 5], &one, GrpoCfg::default()),
    ];
    for (group, table_ids, table, cfg) in calls {
        assert!(adv::grpo_advantage_from_moments(&r, group, table_ids, table, &cfg, &mut out).is_err());
        assert_eq!(bits(&out), bits(&[POISON; 3]));
    }
}

#[test]
fn empty_batches_and_masks() {
    let mut none: [f32; 0] = [];
    for cfg in [GrpoCfg::default(), GrpoCfg::verl_loop(), GrpoCfg::verl_vectorized(), GrpoCfg::trl(TrlScale::Batch)] {
        assert_eq!(adv::grpo_advantage(&[], Groups::Contiguous { size: 4 }, &cfg, &mut none), Ok(()));
        assert_eq!(
            adv::grpo_advantage(&[], Groups::Ids(&[]), &cfg, &mut none).is_ok(),
            !matches!(cfg.flavor, GrpoFlavor::Trl { .. })
        );
    }
    assert_eq!(adv::distinct_groups(Groups::Ids(&[]), 0), Ok(0));
    // REINFORCE++ over an all-padding batch: library → all 0; verl raises.
    let r = [1.0f32, 2.0, f32::NAN, 4.0];
    let mask = [0u8; 4];
    let (mut a, mut g) = ([POISON; 4], [POISON; 4]);
    adv::reinforce_pp_advantage(&r, &mask, 2, 1.0, Compat::Library, &mut a, &mut g).unwrap();
    assert_eq!(a, [0.0; 4]);
    assert_eq!(g[..2], [1.0, 2.0]);
    // verl refuses before writing anything (one valid token is not enough either).
    let (mut a, mut g) = ([POISON; 4], [POISON; 4]);
    for m in [mask, [0, 1, 0, 0]] {
        assert!(adv::reinforce_pp_advantage(&r, &m, 2, 1.0, Compat::Verl, &mut a, &mut g).is_err());
        assert!(adv::gae(
            &r,
            &r,
            &m,
            2,
            &adv::GaeCfg { gamma: 1.0, lam: 1.0, compat: Compat::Verl },
            adv::GaeOut { adv: &mut a, ret: &mut g }
        )
        .is_err());
        assert_eq!(bits(&a), bits(&[POISON; 4]));
        assert_eq!(bits(&g), bits(&[POISON; 4]));
    }
    let mut out = [POISON; 4];
    adv::reinforce_pp_baseline_advantage(
        &[1.0, 3.0],
        Groups::Ids(&[0, 0]),
        &mask,
        2,
        SingletonPolicy::Zero,
        Compat::Library,
        &mut out,
    )
    .unwrap();
    assert_eq!(out, [0.0; 4]);
    // T = 0.
    let mut empty: [f32; 0] = [];
    assert_eq!(adv::broadcast_masked(&[1.0, 2.0], &[], 0, &mut empty), Ok(()));
}

// ---------------------------------------------------------------------------------------
// Property tests: kernels against the f64 references, and invariants

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn grpo_flavors_match_reference((r, ids) in labelled_batch(), norm_by_std in any::<bool>()) {
        let n = max_group(&ids);
        let g = Groups::Ids(&ids);
        let cfg = GrpoCfg { norm_by_std, ..GrpoCfg::verl_loop() };
        assert_adv(&grpo(&r, g, &cfg).unwrap(), &oracle::grpo_verl_loop(&r, &ids, 1e-6f32 as f64, norm_by_std), n);
        let cfg = GrpoCfg { norm_by_std, ..GrpoCfg::verl_vectorized() };
        let want = oracle::grpo_verl_vectorized(&r, &ids, 1e-6f32 as f64, norm_by_std);
        assert_adv(&grpo(&r, g, &cfg).unwrap(), &want, n);
        for (std, unbiased) in [(StdKind::Unbiased, true), (StdKind::Population, false)] {
            for (singleton, zero) in [(SingletonPolicy::Zero, true), (SingletonPolicy::MeanZeroStdOne, false)] {
                let cfg = GrpoCfg { norm_by_std, ..standard(std, singleton) };
                let want = oracle::grpo_standard(&r, &ids, unbiased, zero, 1e-6f32 as f64, norm_by_std);
                assert_adv(&grpo(&r, g, &cfg).unwrap(), &want, n);
            }
        }
    }

    #[test]
    fn grpo_trl_matches_reference(
        (r, size) in contiguous_batch(),
        nans in proptest::collection::vec(any::<bool>(), 48),
    ) {
        // Make some rewards unscorable.
        let r: Vec<f32> = r.iter().zip(&nans).map(|(&v, &nan)| if nan && v > 0.5 { f32::NAN } else { v }).collect();
        let scales = [
            (TrlScale::Group, TrlScaleRef::Group),
            (TrlScale::Batch, TrlScaleRef::Batch),
            (TrlScale::None, TrlScaleRef::None),
        ];
        for (scale, sref) in scales {
            let got = grpo(&r, Groups::Contiguous { size }, &GrpoCfg::trl(scale)).unwrap();
            assert_adv(&got, &oracle::grpo_trl(&r, size, sref, 1e-4f32 as f64), r.len());
        }
    }

    #[test]
    fn grpo_standard_ignores_nan_like_reference((r, ids) in nan_labelled_batch()) {
        let cfg = GrpoCfg { nan_policy: NanPolicy::IgnoreAndZero, ..GrpoCfg::default() };
        let got = grpo(&r, Groups::Ids(&ids), &cfg).unwrap();
        assert_adv(&got, &oracle::grpo_standard(&r, &ids, true, true, 1e-6f32 as f64, true), max_group(&ids));
        prop_assert!(r.iter().zip(&got).all(|(v, a)| !v.is_nan() || *a == 0.0));
    }

    #[test]
    fn rloo_flavors_match_reference((r, ids) in labelled_batch()) {
        let n = max_group(&ids);
        let g = Groups::Ids(&ids);
        assert_adv(&rloo(&r, g, RlooFlavor::Standard).unwrap(), &oracle::rloo(&r, &ids, false), n);
        assert_adv(&rloo(&r, g, RlooFlavor::VerlLoop).unwrap(), &oracle::rloo(&r, &ids, true), n);
        assert_adv(&rloo(&r, g, RlooFlavor::VerlVectorized).unwrap(), &oracle::rloo(&r, &ids, false), n);
    }

    #[test]
    fn rloo_trl_matches_reference(
        (r, size) in contiguous_batch().prop_filter("G >= 2", |(_, g)| *g >= 2),
        normalize in any::<bool>(),
    ) {
        let got = rloo(&r, Groups::Contiguous { size }, RlooFlavor::Trl { normalize }).unwrap();
        let want = oracle::rloo_trl(&r, size, normalize);
        // Normalised: the f32 advantages (rounded at 2⁻²⁴·|A|) are divided by std + 1e-4.
        let scale = if normalize { 1e4 * r.iter().fold(1.0f64, |m, v| m.max(v.abs() as f64)) } else { 1.0 };
        for (b, (&g, &w)) in got.iter().zip(&want).enumerate() {
            let tol = 6e-8 * w.abs() + 64.0 * f64::EPSILON * r.len() as f64 * scale;
            prop_assert!((g as f64 - w).abs() <= tol, "row {}: {} vs {}", b, g, w);
        }
    }

    #[test]
    fn trl_multi_reward_matches_reference(
        (g, groups, k) in (1usize..5, 0usize..5, 1usize..4),
        seed in any::<u64>(),
    ) {
        let rows = g * groups;
        let mut s = seed | 1;
        let mut next = move || { s ^= s << 13; s ^= s >> 7; s ^= s << 17; s };
        let per_func: Vec<f32> = (0..rows * k)
            .map(|_| match next() % 5 { 0 => f32::NAN, 1 => 1.0, 2 => 0.0, _ => (next() % 200) as f32 / 20.0 - 5.0 })
            .collect();
        let weights: Vec<f32> = (0..k).map(|_| (next() % 5) as f32 / 2.0 - 0.5).collect();
        let mut r = vec![POISON; rows];
        adv::trl_sum_rewards(&per_func, &weights, &mut r).unwrap();
        let want = oracle::trl_sum_rewards(&per_func, &weights);
        for (b, (&got, &w)) in r.iter().zip(&want).enumerate() {
            prop_assert!(got.is_nan() && w.is_nan() || (got as f64 - w).abs() <= 6e-8 * w.abs() + 1e-12, "{}", b);
        }
        let mut a = vec![POISON; rows];
        adv::trl_normalize_then_sum_advantage(&per_func, &weights, g, &mut a).unwrap();
        let (want, sums, mu, std) = oracle::trl_normalize_then_sum(&per_func, &weights, g);
        // The kernel's f32 sums R may sit one rounding (2⁻²⁴·|R|) away from the reference's.
        let r_max = sums.iter().filter(|x| !x.is_nan()).fold(0.0f64, |m, x| m.max(x.abs()));
        // (No slack when the batch statistics are NaN: then every A is 0.)
        let slack = 1.2e-7 * (r_max + mu.abs()) / (std + 1e-4);
        let slack = if slack.is_nan() { 0.0 } else { slack };
        for (b, (&got, &w)) in a.iter().zip(&want).enumerate() {
            let tol = 6e-8 * w.abs() + 2.0 * slack + 1e-12;
            prop_assert!((got as f64 - w).abs() <= tol, "{}: {} vs {}", b, got, w);
        }
    }

    /// Normalised advantages sum to zero per group; zero-variance groups are exactly 0.
    #[test]
    fn grpo_group_invariants((r, ids) in labelled_batch()) {
        for cfg in [GrpoCfg::default(), GrpoCfg::verl_loop(), GrpoCfg::dr_grpo()] {
            let a = grpo(&r, Groups::Ids(&ids), &cfg).unwrap();
            for rows in oracle::groups_of(&ids) {
                let vals: Vec<f64> = rows.iter().map(|&b| a[b] as f64).collect();
                let constant = rows.iter().all(|&b| r[b] == r[rows[0]]);
                if rows.len() >= 2 && constant {
                    prop_assert!(vals.iter().all(|&v| v == 0.0), "{:?}: zero variance gives {:?}", cfg.flavor, vals);
                }
                if rows.len() >= 2 {
                    let denom = if cfg.norm_by_std { 1e-6 } else { 1.0 };
                    let cond: f64 = rows.iter().map(|&b| r[b].abs() as f64).sum::<f64>() / denom;
                    let sum: f64 = vals.iter().sum();
                    // Each f32 rounding: 2⁻²⁴ relative, or 2⁻¹⁵⁰ absolute for subnormal results.
                    let tol = 6e-8 * vals.iter().map(|v| v.abs()).sum::<f64>()
                        + rows.len() as f64 * (8.0 * f64::EPSILON * cond + 1e-45);
                    prop_assert!(sum.abs() <= tol, "group sum {} > {}", sum, tol);
                }
            }
        }
    }

    /// Reordering whole groups (and relabelling them) gives the same bits; permuting rows
    /// inside groups gives the same values within rounding.
    #[test]
    fn permutation_invariance((r, ids) in labelled_batch(), seed in any::<u64>()) {
        let groups = oracle::groups_of(&ids);
        let mut order: Vec<usize> = (0..groups.len()).collect();
        shuffle(&mut order, seed);
        // Whole groups moved, each keeping its internal order, under fresh labels.
        let (mut r2, mut ids2, mut src) = (vec![], vec![], vec![]);
        for (new_label, &k) in order.iter().enumerate() {
            for &b in &groups[k] {
                r2.push(r[b]);
                ids2.push(new_label as u32 ^ 0xDEAD_BEEF);
                src.push(b);
            }
        }
        for cfg in [GrpoCfg::default(), GrpoCfg::verl_loop(), GrpoCfg::verl_vectorized()] {
            let a = grpo(&r, Groups::Ids(&ids), &cfg).unwrap();
            let a2 = grpo(&r2, Groups::Ids(&ids2), &cfg).unwrap();
            let moved: Vec<f32> = src.iter().map(|&b| a[b]).collect();
            prop_assert_eq!(bits(&a2), bits(&moved));
            let l = rloo(&r, Groups::Ids(&ids), RlooFlavor::Standard).unwrap();
            let l2 = rloo(&r2, Groups::Ids(&ids2), RlooFlavor::Standard).unwrap();
            prop_assert_eq!(bits(&l2), bits(&src.iter().map(|&b| l[b]).collect::<Vec<_>>()));
        }
        // Any permutation of rows: equal within the reference tolerance.
        let mut perm: Vec<usize> = (0..r.len()).collect();
        shuffle(&mut perm, seed ^ 0x5555);
        let r3: Vec<f32> = perm.iter().map(|&b| r[b]).collect();
        let ids3: Vec<u32> = perm.iter().map(|&b| ids[b]).collect();
        let a = grpo(&r, Groups::Ids(&ids), &GrpoCfg::default()).unwrap();
        let a3 = grpo(&r3, Groups::Ids(&ids3), &GrpoCfg::default()).unwrap();
        let want = oracle::grpo_standard(&r, &ids, true, true, 1e-6f32 as f64, true);
        let permuted: Vec<Adv> = perm.iter().map(|&b| want[b]).collect();
        assert_adv(&a3, &permuted, r.len());
        assert_adv(&a, &want, r.len());
    }

    /// Contiguous ids through `Groups::Ids` and `Groups::Contiguous` give the same bits.
    #[test]
    fn contiguous_fast_path_equals_ids((r, size) in contiguous_batch()) {
        let ids = oracle::contiguous_ids(r.len(), size);
        for cfg in [GrpoCfg::default(), GrpoCfg::verl_loop(), GrpoCfg::verl_vectorized()] {
            let fast = grpo(&r, Groups::Contiguous { size }, &cfg).unwrap();
            prop_assert_eq!(bits(&fast), bits(&grpo(&r, Groups::Ids(&ids), &cfg).unwrap()));
        }
        let mut keep1 = vec![9u8; r.len()];
        let mut keep2 = vec![9u8; r.len()];
        let k1 = adv::dynamic_sampling_keep(&r, Groups::Contiguous { size }, &mut keep1).unwrap();
        let k2 = adv::dynamic_sampling_keep(&r, Groups::Ids(&ids), &mut keep2).unwrap();
        prop_assert_eq!((k1, &keep1), (k2, &keep2));
        let want = oracle::dynamic_sampling_keep(&r, &ids);
        prop_assert_eq!(keep1.iter().map(|&k| k == 1).collect::<Vec<_>>(), want);
    }

    /// Groups split across "ranks" merge (ascending rank order) to the unsplit moments.
    #[test]
    fn group_moments_merge_across_ranks(
        (r, ids) in labelled_batch(),
        cut in any::<prop::sample::Index>(),
        weighted in any::<bool>(),
    ) {
        let w: Vec<f32> = (0..r.len()).map(|b| if weighted { (b % 3) as f32 } else { 1.0 }).collect();
        let table = |r: &[f32], ids: &[u32], w: &[f32]| {
            let (mut i, mut m) = (vec![0u32; r.len()], vec![Moments::EMPTY; r.len()]);
            let k = adv::group_moments(r, Groups::Ids(ids), Some(w), &mut i, &mut m).unwrap();
            (i[..k].to_vec(), m[..k].to_vec())
        };
        let (all_ids, all) = table(&r, &ids, &w);
        prop_assert_eq!(all_ids.len(), adv::distinct_groups(Groups::Ids(&ids), r.len()).unwrap());
        let c = if r.is_empty() { 0 } else { cut.index(r.len() + 1) };
        let (ids0, m0) = table(&r[..c], &ids[..c], &w[..c]);
        let (ids1, m1) = table(&r[c..], &ids[c..], &w[c..]);
        for (k, id) in all_ids.iter().enumerate() {
            let part = |ids: &[u32], m: &[Moments]| ids.iter().position(|x| x == id).map_or(Moments::EMPTY, |j| m[j]);
            let merged = part(&ids0, &m0).merge(part(&ids1, &m1));
            let whole = all[k];
            prop_assert_eq!(merged.n, whole.n);
            let rows = oracle::groups_of(&ids)[k].clone();
            let vals: Vec<f64> = rows.iter().filter(|&&b| w[b] != 0.0).map(|&b| r[b] as f64).collect();
            let scale = vals.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let tol = 16.0 * rows.len() as f64 * f64::EPSILON * scale;
            prop_assert!((merged.mean - whole.mean).abs() <= tol);
            prop_assert!((merged.m2 - whole.m2).abs() <= tol * scale * 4.0 * rows.len() as f64);
            // The same partials merged in the same order: the same bits.
            prop_assert_eq!(merged, part(&ids0, &m0).merge(part(&ids1, &m1)));
            // Constant groups are exact under any split.
            if vals.iter().all(|&v| v == vals[0]) && !vals.is_empty() {
                prop_assert!(merged.mean == vals[0] && merged.m2 == 0.0);
            }
            if !weighted && vals.len() >= 2 {
                let want = oracle::variance(&vals, true);
                let tol = 8.0 * vals.len() as f64 * f64::EPSILON * scale * scale + 1e-300;
                prop_assert!((whole.variance(StdKind::Unbiased) - want).abs() <= tol);
            }
        }
    }

    /// Data-parallel GRPO: per-rank tables merged in rank order, then each rank's rows.
    #[test]
    fn grpo_from_merged_moments(
        (r, ids) in nan_labelled_batch(),
        cut in any::<prop::sample::Index>(),
        verl in any::<bool>(),
    ) {
        let base = if verl { GrpoCfg::verl_loop() } else { GrpoCfg::default() };
        let cfg = GrpoCfg { nan_policy: NanPolicy::IgnoreAndZero, ..base };
        let table = |r: &[f32], ids: &[u32]| {
            let w: Vec<f32> = r.iter().map(|v| if v.is_nan() { 0.0 } else { 1.0 }).collect();
            let (mut i, mut m) = (vec![0u32; r.len()], vec![Moments::EMPTY; r.len()]);
            let k = adv::group_moments(r, Groups::Ids(ids), Some(&w), &mut i, &mut m).unwrap();
            (i[..k].to_vec(), m[..k].to_vec())
        };
        let whole = grpo(&r, Groups::Ids(&ids), &cfg).unwrap();
        // One rank holding everything: the same bits as the direct call.
        let (ti, tm) = table(&r, &ids);
        let mut out = vec![POISON; r.len()];
        adv::grpo_advantage_from_moments(&r, &ids, &ti, &tm, &cfg, &mut out).unwrap();
        prop_assert_eq!(bits(&out), bits(&whole));
        // Two ranks: merge rank 0's entry with rank 1's, ids in rank 0's order first.
        let c = if r.is_empty() { 0 } else { cut.index(r.len() + 1) };
        let ((i0, m0), (i1, m1)) = (table(&r[..c], &ids[..c]), table(&r[c..], &ids[c..]));
        let (mut gi, mut gm) = (i0.clone(), m0.clone());
        for (id, m) in i1.iter().zip(&m1) {
            match gi.iter().position(|x| x == id) {
                Some(k) => gm[k] = gm[k].merge(*m),
                None => { gi.push(*id); gm.push(*m); }
            }
        }
        let mut split = vec![POISON; r.len()];
        adv::grpo_advantage_from_moments(&r[..c], &ids[..c], &gi, &gm, &cfg, &mut split[..c]).unwrap();
        adv::grpo_advantage_from_moments(&r[c..], &ids[c..], &gi, &gm, &cfg, &mut split[c..]).unwrap();
        // verl's loop = the library form with verl's singleton rule (both give identical
        // rewards exactly 0); unscorable rows 0.
        let want = oracle::grpo_standard(&r, &ids, true, !verl, 1e-6f32 as f64, true);
        assert_adv(&split, &want, r.len());
        assert_adv(&whole, &want, r.len());
    }

    #[test]
    fn returns_and_reinforce_pp_match_reference(
        (rows, t) in (0usize..6, 0usize..12),
        seed in any::<u64>(),
        gamma in prop_oneof![Just(1.0f32), Just(0.99), Just(0.0), 0.0f32..1.0],
    ) {
        let (r, mask) = token_batch(rows, t, seed);
        let mut ret = vec![POISON; rows * t];
        adv::returns_to_go(&r, &mask, t, gamma, &mut ret).unwrap();
        let want = oracle::returns_to_go(&r, &mask, t, gamma as f64);
        let r_abs: Vec<f32> = r.iter().map(|v| v.abs()).collect();
        let bound = oracle::returns_to_go(&r_abs, &mask, t, gamma as f64);
        for i in 0..rows * t {
            if !want[i].is_finite() {
                // A hostile padding reward shows up in its own (unmasked) return only.
                prop_assert!(mask[i] == 0);
                prop_assert!(ret[i].is_nan() && want[i].is_nan() || ret[i] as f64 == want[i]);
                continue;
            }
            let tol = 6e-8 * want[i].abs() + 4.0 * (t as f64 + 1.0) * f64::EPSILON * bound[i];
            prop_assert!((ret[i] as f64 - want[i]).abs() <= tol, "{}: {} vs {}", i, ret[i], want[i]);
        }
        let (mut a, mut g) = (vec![POISON; rows * t], vec![POISON; rows * t]);
        adv::reinforce_pp_advantage(&r, &mask, t, gamma, Compat::Library, &mut a, &mut g).unwrap();
        prop_assert_eq!(bits(&g), bits(&ret));
        let g64: Vec<f64> = g.iter().map(|&v| v as f64).collect();
        check_whitened(&a, &oracle::masked_whiten(&g64, &mask, 1e-8), &g64, &mask, 0.0)?;
        // verl's whitening: the same at valid positions (≥ 2 of them), an error otherwise.
        let mut av = vec![POISON; rows * t];
        let verl = adv::reinforce_pp_advantage(&r, &mask, t, gamma, Compat::Verl, &mut av, &mut g);
        if mask.iter().filter(|&&m| m != 0).count() < 2 {
            prop_assert!(verl.is_err());
        } else {
            verl.unwrap();
            for i in 0..rows * t {
                let ok = if mask[i] == 0 { av[i] == 0.0 } else { (av[i] - a[i]).abs() <= 1e-6 * (1.0 + a[i].abs()) };
                prop_assert!(ok, "{}: {} vs {}", i, av[i], a[i]);
            }
        }
    }

    #[test]
    fn gae_matches_reference(
        (rows, t) in (0usize..6, 0usize..12),
        seed in any::<u64>(),
        gamma in prop_oneof![Just(1.0f32), 0.0f32..1.0],
        lam in prop_oneof![Just(1.0f32), Just(0.95), 0.0f32..1.0],
    ) {
        let (r, mask) = token_batch(rows, t, seed);
        // Values from another draw: hostile in padding, finite where `mask` is valid.
        let (v, _) = token_batch(rows, t, seed ^ 0xABCD);
        let v: Vec<f32> = v.iter().zip(&mask).map(|(&x, &m)| if m != 0 && !x.is_finite() { 0.5 } else { x }).collect();
        let (mut a, mut g) = (vec![POISON; rows * t], vec![POISON; rows * t]);
        adv::gae(&r, &v, &mask, t, &adv::GaeCfg { gamma, lam, compat: Compat::Library }, adv::GaeOut { adv: &mut a, ret: &mut g }).unwrap();
        let (want_a, want_ret) = oracle::gae(&r, &v, &mask, t, gamma as f64, lam as f64);
        // Magnitude bound per row (γλ ≤ 1): Σ over valid k of |r_k| + 2·max|V|, plus |V_i|.
        let bound: Vec<f64> = (0..rows * t)
            .map(|i| {
                let row = i / t * t..(i / t + 1) * t;
                let vmax = row.clone().filter(|&k| mask[k] != 0).fold(0.0f64, |m, k| m.max(v[k].abs() as f64));
                let sum: f64 = row.filter(|&k| mask[k] != 0).map(|k| r[k].abs() as f64 + 2.0 * vmax).sum();
                sum + v[i].abs() as f64
            })
            .collect();
        let mut a_pre = vec![0.0f64; rows * t];
        for i in 0..rows * t {
            if !want_ret[i].is_finite() {
                prop_assert!(mask[i] == 0);
                prop_assert!(g[i].is_nan() && want_ret[i].is_nan() || g[i] as f64 == want_ret[i]);
                continue;
            }
            let tol = 6e-8 * want_ret[i].abs() + 8.0 * (t as f64 + 1.0) * f64::EPSILON * bound[i];
            prop_assert!((g[i] as f64 - want_ret[i]).abs() <= tol, "ret {}: {} vs {}", i, g[i], want_ret[i]);
            a_pre[i] = want_a[i];
        }
        // The whitening sees the f32-rounded advantages; compare from there.
        let a32: Vec<f64> = a_pre.iter().map(|&x| x as f32 as f64).collect();
        check_whitened(&a, &oracle::masked_whiten(&a32, &mask, 1e-8), &a32, &mask, 6e-8 + 1e-15 * t as f64)?;
        // verl's whitening agrees at the valid positions (≥ 2 of them), and raises otherwise.
        let mut av = vec![POISON; rows * t];
        let verl = adv::gae(&r, &v, &mask, t, &adv::GaeCfg { gamma, lam, compat: Compat::Verl }, adv::GaeOut { adv: &mut av, ret: &mut g });
        if mask.iter().filter(|&&m| m != 0).count() < 2 {
            prop_assert!(verl.is_err());
        } else {
            verl.unwrap();
            for i in (0..rows * t).filter(|&i| mask[i] != 0) {
                prop_assert!((av[i] - a[i]).abs() <= 1e-6 * (1.0 + a[i].abs()), "{}: {} vs {}", i, av[i], a[i]);
            }
        }
    }

    #[test]
    fn reinforce_pp_baseline_matches_reference(
        (r, ids) in labelled_batch(),
        t in 0usize..6,
        seed in any::<u64>(),
        zero in any::<bool>(),
    ) {
        let (_, mask) = token_batch(r.len(), t, seed);
        let singleton = if zero { SingletonPolicy::Zero } else { SingletonPolicy::MeanZeroStdOne };
        let mut out = vec![POISON; r.len() * t];
        let g = Groups::Ids(&ids);
        adv::reinforce_pp_baseline_advantage(&r, g, &mask, t, singleton, Compat::Library, &mut out).unwrap();
        let want = oracle::reinforce_pp_baseline(&r, &ids, &mask, t, zero);
        // The tiled values the whitening sees (as the kernel rounds them).
        let mut tiled = vec![0.0f32; r.len() * t];
        let a_seq: Vec<f64> = (0..r.len()).map(|b| want_seq(&r, &ids, b, zero)).collect();
        for i in 0..tiled.len() { tiled[i] = if mask[i] != 0 { a_seq[i / t] as f32 } else { 0.0 }; }
        let t64: Vec<f64> = tiled.iter().map(|&v| v as f64).collect();
        // The kernel's R − μ (Welford μ) may round to a neighbouring f32: one ulp of input.
        check_whitened(&out, &want, &t64, &mask, 6e-8)?;
    }

    /// Extra padding columns (mask 0, hostile values) change nothing at the valid positions.
    #[test]
    fn padding_invariance(
        (rows, t) in (1usize..5, 1usize..8),
        extra in 1usize..4,
        seed in any::<u64>(),
        gamma in 0.0f32..1.0,
    ) {
        let (r, mask) = token_batch(rows, t, seed);
        let t2 = t + extra;
        let pad = |x: &[f32], fill: f32| -> Vec<f32> {
            x.chunks(t).flat_map(|row| row.iter().copied().chain(std::iter::repeat_n(fill, extra))).collect()
        };
        let r2 = pad(&r, f32::NAN);
        let mask2: Vec<u8> =
            mask.chunks(t).flat_map(|row| row.iter().copied().chain(std::iter::repeat_n(0, extra))).collect();
        let valid = |x: &[f32], tt: usize| -> Vec<u32> {
            x.chunks(tt).flat_map(|row| row[..t].to_vec()).map(f32::to_bits).collect()
        };
        let (mut a, mut g) = (vec![POISON; rows * t], vec![POISON; rows * t]);
        let (mut a2, mut g2) = (vec![POISON; rows * t2], vec![POISON; rows * t2]);
        adv::reinforce_pp_advantage(&r, &mask, t, gamma, Compat::Library, &mut a, &mut g).unwrap();
        adv::reinforce_pp_advantage(&r2, &mask2, t2, gamma, Compat::Library, &mut a2, &mut g2).unwrap();
        prop_assert_eq!(valid(&a, t), valid(&a2, t2));
        prop_assert_eq!(valid(&g, t), valid(&g2, t2));
        prop_assert!(a2.chunks(t2).all(|row| row[t..].iter().all(|&v| v == 0.0)));
        // Broadcast and the baseline variant, with a NaN outcome advantage in a padded-only row.
        let seq: Vec<f32> = (0..rows).map(|b| b as f32 - 1.5).collect();
        let (mut o, mut o2) = (vec![POISON; rows * t], vec![POISON; rows * t2]);
        adv::broadcast_masked(&seq, &mask, t, &mut o).unwrap();
        adv::broadcast_masked(&seq, &mask2, t2, &mut o2).unwrap();
        prop_assert_eq!(valid(&o, t), valid(&o2, t2));
        for (i, (&v, &m)) in o.iter().zip(&mask).enumerate() {
            let want = if m == 0 { 0.0 } else { seq[i / t] };
            prop_assert_eq!(v.to_bits(), want.to_bits());
        }
        let ids: Vec<u32> = (0..rows as u32).map(|b| b / 2).collect();
        let (g, zero, lib) = (Groups::Ids(&ids), SingletonPolicy::Zero, Compat::Library);
        adv::reinforce_pp_baseline_advantage(&seq, g, &mask, t, zero, lib, &mut o).unwrap();
        adv::reinforce_pp_baseline_advantage(&seq, g, &mask2, t2, zero, lib, &mut o2).unwrap();
        prop_assert_eq!(valid(&o, t), valid(&o2, t2));
        // Sequence rewards ignore the NaN padding.
        let (mut s, mut s2) = (vec![POISON; rows], vec![POISON; rows]);
        adv::sequence_rewards(&r, &mask, t, &mut s).unwrap();
        adv::sequence_rewards(&r2, &mask2, t2, &mut s2).unwrap();
        prop_assert_eq!(bits(&s), bits(&s2));
    }

    #[test]
    fn overlong_matches_reference(
        len in 0usize..30_000,
        max_len in 1usize..25_000,
        buf_frac in 0.0f64..1.0,
        factor in 0.0f32..3.0,
    ) {
        let buffer_len = 1 + ((max_len - 1) as f64 * buf_frac) as usize;
        let cfg = OverlongCfg { max_len, buffer_len, penalty_factor: factor };
        let got = adv::overlong_penalty(len, &cfg).unwrap();
        let want = oracle::overlong_penalty(len, max_len, buffer_len, factor as f64);
        prop_assert_eq!(got, want as f32);
        prop_assert!(got <= 0.0);
        if len <= max_len - buffer_len { prop_assert_eq!(got, 0.0); }
    }
}

// ---------------------------------------------------------------------------------------
// Property-test helpers

/// Whitened values against the reference: `|Δ| ≤ 6e-8·|want| + (8(N + 2)·2⁻⁵² + 2·x_rel)·(|x| + max|x|)/sd`
/// at valid positions, exactly 0 at padding; `x_rel` is the relative rounding by which the
/// kernel's inputs may differ from the reference's `x`.
fn check_whitened(got: &[f32], want: &[f64], x: &[f64], mask: &[u8], x_rel: f64) -> Result<(), TestCaseError> {
    let valid: Vec<f64> = x.iter().zip(mask).filter(|(_, &m)| m != 0).map(|(&v, _)| v).collect();
    let big = valid.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let sd = if valid.len() >= 2 { (oracle::variance(&valid, true) + 1e-8).sqrt() } else { 1.0 };
    for i in 0..got.len() {
        if mask[i] == 0 {
            prop_assert_eq!(got[i].to_bits(), 0.0f32.to_bits());
            continue;
        }
        let tol = 6e-8 * want[i].abs()
            + (8.0 * (valid.len() as f64 + 2.0) * f64::EPSILON + 2.0 * x_rel) * (x[i].abs() + big) / sd;
        prop_assert!((got[i] as f64 - want[i]).abs() <= tol, "{}: {} vs {} (tol {})", i, got[i], want[i], tol);
    }
    Ok(())
}

/// `R_b − μ_g` (or the singleton rule) exactly as the baseline reference builds it.
fn want_seq(r: &[f32], ids: &[u32], b: usize, zero: bool) -> f64 {
    let rows: Vec<usize> = (0..r.len()).filter(|&j| ids[j] == ids[b]).collect();
    match rows.len() {
        1 if zero => 0.0,
        1 => r[b] as f64,
        _ => r[b] as f64 - oracle::mean(&rows.iter().map(|&j| r[j] as f64).collect::<Vec<_>>()),
    }
}

/// Deterministic `[rows, t]` token rewards and masks: prefix masks, holes (multi-turn),
/// empty rows, sparse outcome rewards, and hostile values (NaN, inf) in padding only.
fn token_batch(rows: usize, t: usize, seed: u64) -> (Vec<f32>, Vec<u8>) {
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let (mut r, mut mask) = (vec![0.0f32; rows * t], vec![0u8; rows * t]);
    for b in 0..rows {
        let len = (next() % (t as u64 + 1)) as usize;
        for k in 0..t {
            let i = b * t + k;
            mask[i] = u8::from(k < len && next() % 5 != 0);
            if k < len && next() % 7 == 0 {
                mask[i] = 7; // any non-zero byte is "valid"
            }
            r[i] = match next() % 6 {
                0 => 1.0,
                1 => ((next() % 2000) as f32 - 1000.0) / 100.0,
                _ => 0.0,
            };
            if mask[i] == 0 && next() % 3 == 0 {
                r[i] = [f32::NAN, f32::INFINITY, -1e30][(next() % 3) as usize];
            }
        }
    }
    (r, mask)
}

fn shuffle<T>(v: &mut [T], seed: u64) {
    let mut s = seed | 1;
    for i in (1..v.len()).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        v.swap(i, (s % (i as u64 + 1)) as usize);
    }
}
