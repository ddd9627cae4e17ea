//! The second link of the oracle chain for the policy kernels: every SIMD backend against the
//! portable one, **bitwise**, through the public API with the backend pinned by [`Exec`], on
//! inputs that hit every select the kernels make (clip boundaries, huge log-ratios, NaN and
//! ±inf also at masked positions, `A = ±0`, whole masked blocks) at every tail length.
//!
//! "Bitwise" treats every NaN as one pattern (`tokenmath_testutil::nan_bits`: Rust leaves the
//! sign and payload of a NaN result unspecified), except the poison written into the outputs
//! before each call, which stays apart: an unwritten element fails the comparison.

use tokenmath_core::policy_loss::*;
use tokenmath_core::{Backend, Exec, TmError};
use tokenmath_testutil::{nan_bits as bits, unit_hash as u, POISON};

/// The SIMD backends this file knows how to test.
#[cfg(target_arch = "x86_64")]
const TESTED: &[Backend] = &[Backend::Avx2Fma, Backend::Avx512];
#[cfg(not(target_arch = "x86_64"))]
const TESTED: &[Backend] = &[];

/// The SIMD backends to test: every one this CPU offers. Fails when an offered backend is not
/// in [`TESTED`] (a new backend must get its tests), and when the CPU has an instruction set
/// whose backend is not offered (detection would be broken, and the tests would pass without
/// running it); says on the terminal which backends this CPU cannot run.
fn simd_backends() -> Vec<Backend> {
    let offered: Vec<Backend> = Backend::all_supported().filter(|b| *b != Backend::Portable).collect();
    for b in &offered {
        assert!(TESTED.contains(b), "backend {} is offered but not tested here", b.name());
    }
    #[cfg(target_arch = "x86_64")]
    {
        use std::io::Write;
        let has = |f: &[&str]| {
            f.iter().all(|f| match *f {
                "avx2" => std::is_x86_feature_detected!("avx2"),
                "fma" => std::is_x86_feature_detected!("fma"),
                "f16c" => std::is_x86_feature_detected!("f16c"),
                "avx512f" => std::is_x86_feature_detected!("avx512f"),
                "avx512bw" => std::is_x86_feature_detected!("avx512bw"),
                "avx512dq" => std::is_x86_feature_detected!("avx512dq"),
                "avx512vl" => std::is_x86_feature_detected!("avx512vl"),
                _ => unreachable!(),
            })
        };
        let avx2 = ["avx2", "fma", "f16c"];
        let avx512 = ["avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512dq", "avx512vl"];
        for (b, features) in [(Backend::Avx2Fma, &avx2[..]), (Backend::Avx512, &avx512[..])] {
            if has(features) {
                assert!(offered.contains(&b), "this CPU has {features:?} but backend {} is not offered", b.name());
            } else {
                // A direct write: the test harness captures `println!`, not this.
                let _ = writeln!(std::io::stderr(), "SKIPPED policy backend {}: this CPU lacks {features:?}", b.name());
            }
        }
    }
    offered
}

fn exec(b: Backend) -> Exec {
    Exec::new().with_backend(b)
}

fn portable() -> Exec {
    exec(Backend::Portable)
}

/// `logp, old_logp, adv, mask, w_is, ref_logp`.
type Inputs = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<u8>, Vec<f32>, Vec<f32>);

/// Inputs with every edge case the kernels select on: clip boundaries, huge log-ratios, NaN
/// and ±inf (also at masked positions), `A = ±0`, `−0.0` log-probs, whole masked blocks.
fn edge_inputs(n: usize) -> Inputs {
    let specials =
        [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0, 0.0, 30.0, -30.0, 100.0, -100.0, 1.2f32.ln(), 0.8f32.ln()];
    let mut lp: Vec<f32> = (0..n).map(|i| -6.0 * u(i, 1)).collect();
    let mut old: Vec<f32> = (0..n).map(|i| lp[i] + 1.5 * (u(i, 2) - 0.5)).collect();
    let mut adv: Vec<f32> = (0..n).map(|i| 4.0 * (u(i, 3) - 0.5)).collect();
    let mut mask: Vec<u8> = (0..n).map(|i| if u(i, 4) > 0.15 { 1 + (i % 3) as u8 } else { 0 }).collect();
    if n >= 400 {
        // Whole masked blocks of 16, 32 and 64 tokens (skipped by the vector loops).
        mask[64..170].fill(0);
        mask[256..384].fill(0);
    }
    let w: Vec<f32> = (0..n).map(|i| 2.0 * u(i, 5)).collect();
    let mut rf: Vec<f32> = (0..n).map(|i| lp[i] + 50.0 * (u(i, 6) - 0.5)).collect();
    for i in 0..n {
        match i % 29 {
            3 => lp[i] = specials[(i / 29) % specials.len()],
            7 => old[i] = lp[i] - specials[(i / 29 + 3) % specials.len()],
            11 => adv[i] = [0.0, -0.0, f32::NAN, 1e30, -1e30][(i / 29) % 5],
            13 => rf[i] = specials[(i / 29 + 5) % specials.len()],
            17 => old[i] = lp[i] - [1.2f32.ln(), 0.8f32.ln(), 3.0f32.ln(), 20.0, -20.0][(i / 29) % 5],
            _ => {}
        }
    }
    (lp, old, adv, mask, w, rf)
}

fn bits64(x: f64) -> u64 {
    if x.is_nan() {
        f64::NAN.to_bits()
    } else {
        x.to_bits()
    }
}

/// Stats compared bit for bit (`PartialEq` would fail on two NaN sums).
fn stat_bits(p: PolicyStats, k: KlStats) -> [u64; 7] {
    [
        p.valid_tokens,
        p.clipped_high,
        p.clipped_low,
        p.clipped_dual,
        bits64(p.neg_log_ratio_sum),
        k.valid_tokens,
        bits64(k.kl_sum),
    ]
}

fn cfgs() -> [ClipCfg; 4] {
    [
        ClipCfg::default(),
        ClipCfg::trl(),
        ClipCfg { log_ratio_clamp: Some(100.0), ..ClipCfg::dapo() },
        ClipCfg { eps_low: 1.0, eps_high: 3.0, dual_clip_c: Some(2.0), log_ratio_clamp: Some(87.0) },
    ]
}

const KINDS: [KlKind; 6] = [KlKind::K1, KlKind::Abs, KlKind::K2, KlKind::K3, KlKind::K1Plus, KlKind::K3Plus];

/// Lengths around every vector width (8, 16), unroll (32, 64) and chunk (256) boundary.
const SIZES: &[usize] = &[0, 1, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 100, 255, 3 * 256 + 13, 4000];

/// Runs `f` on poisoned outputs of `n` elements.
fn run<S>(n: usize, f: impl FnOnce(LossOut<'_>) -> Result<S, TmError>) -> (Vec<f32>, Vec<f32>, S) {
    let (mut l, mut g) = (vec![POISON; n], vec![POISON; n]);
    let s = f(LossOut { loss: &mut l, dloss_dlogp: &mut g }).unwrap();
    (l, g, s)
}

fn policy_inputs<'a>(d: &'a Inputs, shape: BatchShape, weighted: bool) -> PolicyInputs<'a> {
    let (lp, old, adv, mask, w, _) = d;
    PolicyInputs { shape, logp: lp, old_logp: old, adv, mask, is_weights: weighted.then_some(&w[..]) }
}

#[test]
fn ppo_clip_loss_every_backend_bitwise() {
    let backends = simd_backends();
    for &n in SIZES {
        let d = edge_inputs(n);
        for weighted in [false, true] {
            let inp = policy_inputs(&d, BatchShape::new(1, n), weighted);
            for cfg in cfgs() {
                let (l0, g0, s0) = run(n, |o| ppo_clip_loss(portable(), &inp, &cfg, o));
                for &b in &backends {
                    let (l, g, s) = run(n, |o| ppo_clip_loss(exec(b), &inp, &cfg, o));
                    let what = format!("{} n={n} w={weighted} {cfg:?}", b.name());
                    assert_eq!((bits(&l), bits(&g)), (bits(&l0), bits(&g0)), "{what}");
                    assert_eq!(stat_bits(s, KlStats::default()), stat_bits(s0, KlStats::default()), "{what}");
                }
            }
        }
    }
}

#[test]
fn ppo_clip_kl_loss_every_backend_bitwise() {
    let backends = simd_backends();
    for &n in SIZES {
        let d = edge_inputs(n);
        for weighted in [false, true] {
            let inp = policy_inputs(&d, BatchShape::new(1, n), weighted);
            for cfg in cfgs() {
                for kind in KINDS {
                    for verl_clamps in [true, false] {
                        let kl = KlTerm { ref_logp: &d.5, cfg: KlCfg { kind, verl_clamps }, coef: 0.3 };
                        let (l0, g0, (p0, k0)) = run(n, |o| ppo_clip_kl_loss(portable(), &inp, &cfg, &kl, o));
                        for &b in &backends {
                            let (l, g, (p, k)) = run(n, |o| ppo_clip_kl_loss(exec(b), &inp, &cfg, &kl, o));
                            let what = format!("{} n={n} w={weighted} {cfg:?} {:?}", b.name(), kl.cfg);
                            assert_eq!((bits(&l), bits(&g)), (bits(&l0), bits(&g0)), "{what}");
                            assert_eq!(stat_bits(p, k), stat_bits(p0, k0), "{what}");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn ppo_clip_kl_step_every_backend_bitwise() {
    let backends = simd_backends();
    let modes = [AggMode::TokenMean, AggMode::SeqMeanTokenSum, AggMode::SeqMeanTokenMean, AggMode::SeqMeanTokenSumNorm];
    let norms = [
        AggNorm::default(),
        AggNorm { global_tokens: Some(100_000), global_seqs: Some(1000), dp_size: 4, scale_factor: Some(3.5) },
    ];
    // T a multiple of 16, of 8 but not 16 (a half vector per row), and of neither (the
    // portable composition on every backend); an empty row first.
    for (rows, cols) in [(5, 16), (3, 8), (4, 24), (4, 48), (2, 256), (7, 96), (3, 200), (3, 13), (1, 1000)] {
        let n = rows * cols;
        let mut d = edge_inputs(n);
        d.3[..cols].fill(0);
        let shape = BatchShape::new(rows, cols);
        for weighted in [false, true] {
            let inp = policy_inputs(&d, shape, weighted);
            for cfg in cfgs() {
                for (kind, verl_clamps) in [(KlKind::K3, true), (KlKind::K3, false), (KlKind::K2, true)] {
                    let kl = KlTerm { ref_logp: &d.5, cfg: KlCfg { kind, verl_clamps }, coef: -0.7 };
                    for mode in modes {
                        for norm in &norms {
                            let step = |e| run(n, |o| ppo_clip_kl_step(e, &inp, &cfg, &kl, mode, norm, o));
                            let (l0, g0, s0) = step(portable());
                            for &b in &backends {
                                let (l, g, s) = step(exec(b));
                                let what =
                                    format!("{} {rows}x{cols} w={weighted} {cfg:?} {kl:?} {mode:?} {norm:?}", b.name());
                                assert_eq!((bits(&l), bits(&g)), (bits(&l0), bits(&g0)), "{what}");
                                assert_eq!(
                                    (bits(&[s.loss]), stat_bits(s.policy, s.kl)),
                                    (bits(&[s0.loss]), stat_bits(s0.policy, s0.kl)),
                                    "{what}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn kl_loss_every_backend_bitwise() {
    let backends = simd_backends();
    for &n in SIZES {
        let (lp, _, _, mask, _, rf) = edge_inputs(n);
        let shape = BatchShape::new(1, n);
        for kind in KINDS {
            for verl_clamps in [true, false] {
                let cfg = KlCfg { kind, verl_clamps };
                let (v0, g0, s0) = run(n, |o| kl_loss(portable(), shape, &mask, &lp, &rf, &cfg, o));
                for &b in &backends {
                    let (v, g, s) = run(n, |o| kl_loss(exec(b), shape, &mask, &lp, &rf, &cfg, o));
                    let what = format!("{} n={n} {cfg:?}", b.name());
                    assert_eq!((bits(&v), bits(&g)), (bits(&v0), bits(&g0)), "{what}");
                    assert_eq!(stat_bits(PolicyStats::default(), s), stat_bits(PolicyStats::default(), s0), "{what}");
                }
            }
        }
    }
}

#[test]
fn aggregation_every_backend_bitwise() {
    let backends = simd_backends();
    let modes = [AggMode::TokenMean, AggMode::SeqMeanTokenSum, AggMode::SeqMeanTokenMean, AggMode::SeqMeanTokenSumNorm];
    for (rows, cols) in [(1, 1), (3, 7), (4, 48), (5, 1000), (2, 8191)] {
        let n = rows * cols;
        let (loss, _, _, mask, _, _) = edge_inputs(n);
        let shape = BatchShape::new(rows, cols);
        for mode in modes {
            let norm = AggNorm::default();
            let agg = |e| {
                let l = agg_loss(e, shape, &mask, &loss, mode, &norm).unwrap();
                let mut w = vec![POISON; n];
                agg_weights(e, shape, &mask, mode, &norm, &mut w).unwrap();
                let mut d = loss.clone();
                agg_chain_inplace(e, shape, &mask, mode, &norm, &mut d).unwrap();
                (bits(&[l]), bits(&w), bits(&d))
            };
            let want = agg(portable());
            for &b in &backends {
                assert_eq!(agg(exec(b)), want, "{} {rows}x{cols} {mode:?}", b.name());
            }
        }
    }
}
