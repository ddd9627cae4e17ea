//! TW-GRPO (`tokenmath_core::seed::tw_grpo`) against the f64 reference
//! (`tokenmath_reference::tw_grpo`, which materialises `[B, T, V]` as the published code does):
//! hostile logits (NaN, ±inf, `−inf`-masked vocabulary, `1e30` offsets, `V = 1`, empty masks,
//! singleton groups), every dtype and a row stride; every backend and thread count bitwise;
//! the loss and its finite-difference gradient; the rewards against brute-force oracles.
//!
//! The tolerance of a weight is a formula: the reference bounds the kernel's `D[g,t]` error
//! (`d_tol`, see `tokenmath_reference::tw_grpo::weights`); the min-max normalisation turns it into
//! `|α − 1|·(|ΔD_t| + 2·max ΔD)·(1 + 1)/(range − 2·max ΔD)`, plus the final rounding.

use half::{bf16, f16};
use proptest::prelude::*;
use tokenmath_core::logits::{stats_fwd, FwdOut, RowInputs};
use tokenmath_core::seed::tw_grpo::*;
use tokenmath_core::{Backend, Exec, LogitElem, Mat, TmError};
use tokenmath_reference::tw_grpo as rtw;
use tokenmath_testutil::{nan_bits, poisoned, untouched};

const EPS: f64 = f32::EPSILON as f64;

/// The logits forward's `max` and `log_sum` (row-masked), as a trainer would save them.
fn saved<T: LogitElem>(exec: Exec, x: Mat<'_, T>, mask: &[u8]) -> (Vec<f32>, Vec<f32>) {
    let n = x.rows();
    let (mut lse, mut h, mut mx, mut ls) = (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    let inputs = RowInputs { row_mask: Some(mask), ..Default::default() };
    let out = FwdOut { lse: &mut lse, entropy: &mut h, logp: None, max: Some(&mut mx), log_sum: Some(&mut ls) };
    stats_fwd(exec, x, &inputs, out).unwrap();
    (mx, ls)
}

#[derive(Debug, Clone)]
struct Case {
    x: Vec<f32>,
    vocab: usize,
    mask: Vec<u8>,
    t: usize,
    cfg: TwGrpoCfg,
}

/// Runs the kernel on `x` stored as `T` with a row stride of `vocab + pad`.
fn run<T: LogitElem>(exec: Exec, c: &Case, conv: fn(f32) -> T, pad: usize) -> Result<(Vec<f32>, TwStatus), TmError> {
    let n = c.mask.len();
    let stride = c.vocab + pad;
    let mut data = vec![conv(0.0); n * stride];
    for r in 0..n {
        for v in 0..c.vocab {
            data[r * stride + v] = conv(c.x[r * c.vocab + v]);
        }
    }
    let x = Mat::new(&data, n, c.vocab, stride)?;
    let (mx, ls) = saved(exec, x, &c.mask);
    let mut w = poisoned(n);
    let st = tw_grpo_token_weights(exec, x, SavedLogSoftmax { max: &mx, log_sum: &ls }, &c.mask, c.t, &c.cfg, &mut w)?;
    Ok((w, st))
}

fn check_against_reference(c: &Case, x_as_f32: &[f32], w: &[f32]) -> Result<(), TestCaseError> {
    let (g, t) = (c.cfg.group_size, c.t);
    let r = rtw::weights(x_as_f32, c.vocab, &c.mask, t, g, c.cfg.alpha as f64, c.cfg.clamp as f64);
    let groups = c.mask.len() / t / g;
    let am1 = (c.cfg.alpha as f64 - 1.0).abs();
    for gi in 0..groups {
        let ds = &r.d[gi * t..(gi + 1) * t];
        let tols = &r.d_tol[gi * t..(gi + 1) * t];
        let finite: Vec<f64> = ds.iter().copied().filter(|d| !d.is_nan()).collect();
        let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let tmax = tols.iter().copied().filter(|x| x.is_finite()).fold(0.0f64, f64::max);
        let range = hi - lo + 1e-8 - 2.0 * tmax;
        for pos in 0..t {
            for k in 0..g {
                let i = (gi * g + k) * t + pos;
                let (got, want) = (w[i], r.w[i]);
                if c.mask[i] == 0 {
                    prop_assert_eq!(got.to_bits(), 0.0f32.to_bits(), "padding weight at {}", i);
                    continue;
                }
                if want.is_nan() {
                    prop_assert!(got.is_nan(), "w[{}] = {} but the reference is NaN", i, got);
                    continue;
                }
                prop_assert!(!got.is_nan(), "w[{}] is NaN, reference {}", i, want);
                let (wmin, wmax) = (1.0f64.min(c.cfg.alpha as f64), 1.0f64.max(c.cfg.alpha as f64));
                prop_assert!((got as f64) >= wmin - 2.0 * EPS * wmax && (got as f64) <= wmax * (1.0 + 2.0 * EPS));
                if range > 0.0 {
                    let tol = am1 * 2.0 * (tols[pos] + 2.0 * tmax) / range + 2.0 * EPS * want.abs() + 1e-12;
                    prop_assert!(
                        (got as f64 - want).abs() <= tol,
                        "w[{}] = {} vs reference {} (tol {:e}; D = {}, range {})",
                        i,
                        got,
                        want,
                        tol,
                        ds[pos],
                        hi - lo
                    );
                }
            }
        }
    }
    Ok(())
}

/// Hostile logit values: ordinary ones, the `−inf` mask, signed zeros, denormals (NaN and
/// `+inf` are injected once per case by [`case`], so that most positions keep a finite `D`).
fn logit() -> impl Strategy<Value = f32> {
    prop_oneof![
        40 => -8.0f32..8.0,
        2 => Just(f32::NEG_INFINITY),
        1 => Just(0.0f32),
        1 => prop_oneof![Just(1e-40f32), Just(-1e-40f32), Just(-0.0f32)],
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        1usize..4,
        1usize..4,
        1usize..3,
        prop_oneof![Just(1usize), 2usize..12, Just(16usize), Just(33usize)],
        0u32..4,
        any::<u64>(),
    )
        .prop_flat_map(|(g, groups, t, vocab, offset_kind, seed)| {
            let n = g * groups * t;
            (
                prop::collection::vec(logit(), n * vocab),
                prop::collection::vec(prop_oneof![3 => Just(1u8), 1 => Just(0u8)], n),
                Just((g, t, vocab, offset_kind, seed)),
                prop_oneof![Just(1.7f32), Just(1.4f32), Just(0.5f32), -3.0f32..3.0],
                prop_oneof![3 => Just(11.0f32), 1 => 0.5f32..20.0],
            )
        })
        .prop_map(|(mut x, mask, (g, t, vocab, offset_kind, seed), alpha, clamp)| {
            let offset = match offset_kind {
                0 => 0.0,
                1 => 1e4,
                2 => 1e30,
                _ => -3e3,
            };
            // Every valid row needs a finite logit (the logits forward refuses others).
            for r in 0..mask.len() {
                let row = &mut x[r * vocab..(r + 1) * vocab];
                if row.iter().all(|v| !v.is_finite()) {
                    row[0] = 1.0;
                }
                for v in row.iter_mut() {
                    *v += offset;
                }
            }
            // One NaN or +inf in a quarter of the cases.
            if seed % 4 == 0 {
                let i = (seed / 4) as usize % x.len();
                x[i] = if seed % 8 == 0 { f32::NAN } else { f32::INFINITY };
            }
            Case { x, vocab, mask, t, cfg: TwGrpoCfg { group_size: g, alpha, clamp } }
        })
}

fn backends() -> Vec<Backend> {
    let all: Vec<Backend> = Backend::all_supported().collect();
    if !all.iter().any(|b| *b != Backend::Portable) {
        eprintln!("SKIPPED the SIMD backends of TW-GRPO: this CPU has no AVX2+FMA+F16C");
    }
    all
}

/// Shapes for the AVX-512 path: groups across its 16 kept members (`G` up to 20), vocabularies
/// across its 16-column chunks, its 2-chunk main loop and its masked last chunk (every
/// `V mod 16`), whole `−inf` columns, padded members, one NaN or `+inf`. A large `|α − 1|` and
/// `T ≥ 3` make a one-ulp change of a `D` visible in the weights (with `α = 1.7` most are
/// absorbed by the normalisation and the final rounding).
fn wide_case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![1usize..5, Just(8usize), 15usize..21],
        1usize..3,
        3usize..7,
        prop_oneof![1usize..50, 60usize..70, Just(96usize), Just(97usize), Just(143usize)],
        any::<u64>(),
    )
        .prop_flat_map(|(g, groups, t, vocab, seed)| {
            let n = g * groups * t;
            (
                prop::collection::vec(logit(), n * vocab),
                prop::collection::vec(prop_oneof![4 => Just(1u8), 1 => Just(0u8)], n),
                Just((g, t, vocab, seed)),
                prop_oneof![Just(4097.0f32), Just(-2047.0f32), Just(1.7f32)],
            )
        })
        .prop_map(|(mut x, mask, (g, t, vocab, seed), alpha)| {
            // A column masked (`−inf`) in every row in half of the cases.
            if seed % 2 == 0 {
                let col = (seed / 2) as usize % vocab;
                for r in 0..mask.len() {
                    x[r * vocab + col] = f32::NEG_INFINITY;
                }
            }
            for r in 0..mask.len() {
                let row = &mut x[r * vocab..(r + 1) * vocab];
                if row.iter().all(|v| !v.is_finite()) {
                    row[0] = 1.0;
                }
            }
            if seed % 3 == 0 {
                let i = (seed / 3) as usize % x.len();
                x[i] = if seed % 6 == 0 { f32::NAN } else { f32::INFINITY };
            }
            Case { x, vocab, mask, t, cfg: TwGrpoCfg { group_size: g, alpha, ..TwGrpoCfg::default() } }
        })
}

/// Whether the AVX-512 backend can be tested here; says so once when it cannot.
fn avx512_here() -> bool {
    static NOTE: std::sync::Once = std::sync::Once::new();
    let ok = Backend::Avx512.is_supported();
    if !ok {
        NOTE.call_once(|| eprintln!("SKIPPED the AVX-512 path of TW-GRPO: this CPU has no AVX-512 F/BW/DQ/VL"));
    }
    ok
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The AVX-512 path against the portable and AVX2 paths, bitwise, for f32 (with and without
    /// a row stride), bf16 and f16 logits and 1 or 2 threads.
    #[test]
    fn avx512_matches_portable_bitwise(c in wide_case(), pad in 0usize..3) {
        if !avx512_here() {
            return Ok(());
        }
        let wide = Exec::new().with_backend(Backend::Avx512);
        let others = [Backend::Portable, Backend::Avx2Fma];
        let (w, st) = run(wide, &c, |v| v, pad).unwrap();
        for b in others {
            let (w0, st0) = run(Exec::new().with_backend(b), &c, |v| v, 0).unwrap();
            prop_assert_eq!(nan_bits(&w), nan_bits(&w0), "f32 vs {:?}", b);
            prop_assert_eq!(st, st0);
        }
        prop_assert_eq!(nan_bits(&run(wide.with_threads(2), &c, |v| v, 0).unwrap().0), nan_bits(&w));
        // Half precision: rows whose values all round to non-finite get a finite logit again.
        let mut ch = c.clone();
        for r in 0..ch.mask.len() {
            let row = &mut ch.x[r * ch.vocab..(r + 1) * ch.vocab];
            if row.iter().all(|v| !f16::from_f32(*v).to_f32().is_finite()) {
                row[0] = 1.0;
            }
        }
        for b in others {
            let e = Exec::new().with_backend(b);
            let (wb, wb0) = (run(wide, &ch, bf16::from_f32, pad).unwrap(), run(e, &ch, bf16::from_f32, 0).unwrap());
            prop_assert_eq!(nan_bits(&wb.0), nan_bits(&wb0.0), "bf16 vs {:?}", b);
            let (wh, wh0) = (run(wide, &ch, f16::from_f32, pad).unwrap(), run(e, &ch, f16::from_f32, 0).unwrap());
            prop_assert_eq!(nan_bits(&wh.0), nan_bits(&wh0.0), "f16 vs {:?}", b);
        }
    }

    /// f32 logits with a row stride against the reference; every backend and 1/2/3 threads
    /// give the same bits; the status counts the NaN positions. (`T` up to 6: with `T ≤ 2` the
    /// min-max normalisation makes every weight 1 or α, which would hide errors in `D`.)
    #[test]
    fn weights_match_the_reference(c in case()) {
        let (w, st) = run(Exec::new().with_backend(Backend::Portable), &c, |v| v, 3).unwrap();
        check_against_reference(&c, &c.x, &w)?;
        let t = c.t;
        let nan_positions = (0..c.mask.len() / t / c.cfg.group_size)
            .flat_map(|gi| (0..t).map(move |p| (gi, p)))
            .filter(|&(gi, p)| (0..c.cfg.group_size).any(|k| {
                let i = (gi * c.cfg.group_size + k) * t + p;
                c.mask[i] != 0 && w[i].is_nan()
            }))
            .count();
        prop_assert_eq!(st.nonfinite_positions, nan_positions);
        for b in backends() {
            for threads in [1, 2, 3] {
                let (w2, st2) = run(Exec::new().with_backend(b).with_threads(threads), &c, |v| v, 0).unwrap();
                prop_assert_eq!(nan_bits(&w2), nan_bits(&w), "{:?} x{}", b, threads);
                prop_assert_eq!(st2, st);
            }
        }
    }

    /// bf16 and f16 logits: the kernel reads the rounded values (the reference gets the same
    /// values, upcast exactly); every backend agrees bitwise.
    #[test]
    fn half_precision_logits(c in case()) {
        let xb: Vec<f32> = c.x.iter().map(|&v| bf16::from_f32(v).to_f32()).collect();
        let xh: Vec<f32> = c.x.iter().map(|&v| f16::from_f32(v).to_f32()).collect();
        for (xs, is_bf16) in [(xb, true), (xh, false)] {
            // f16 overflows the large offsets to ±inf: give the row a finite logit again.
            let mut xs = xs;
            for r in 0..c.mask.len() {
                let row = &mut xs[r * c.vocab..(r + 1) * c.vocab];
                if row.iter().all(|v| !v.is_finite()) {
                    row[0] = 1.0;
                }
            }
            let cc = Case { x: xs.clone(), vocab: c.vocab, mask: c.mask.clone(), t: c.t, cfg: c.cfg };
            let mut first: Option<Vec<f32>> = None;
            for b in Backend::all_supported() {
                let w = if is_bf16 {
                    run(Exec::new().with_backend(b), &cc, bf16::from_f32, 1).unwrap().0
                } else {
                    run(Exec::new().with_backend(b), &cc, f16::from_f32, 1).unwrap().0
                };
                match &first {
                    None => {
                        check_against_reference(&cc, &xs, &w)?;
                        first = Some(w);
                    }
                    Some(f) => prop_assert_eq!(nan_bits(&w), nan_bits(f), "{:?}", b),
                }
            }
        }
    }

    /// The loss against the reference, and its gradient by central differences (the loss is
    /// linear in each `ℓ`, so the difference quotient is exact up to rounding).
    #[test]
    fn loss_and_gradient(
        n in 0usize..40,
        seed in any::<u64>(),
    ) {
        let mut rng = tokenmath_testutil::Rng::new(seed);
        let l: Vec<f32> = (0..n).map(|_| rng.symmetric() * 3.0).collect();
        let w: Vec<f32> = (0..n).map(|_| 1.0 + rng.symmetric().abs()).collect();
        let mut mask: Vec<u8> = (0..n).map(|_| !rng.next_u64().is_multiple_of(4) as u8).collect();
        if seed % 5 == 0 {
            mask.fill(0);
        }
        // NaN at padding must not leak.
        let mut l2 = l.clone();
        for i in 0..n {
            if mask[i] == 0 {
                l2[i] = f32::NAN;
            }
        }
        let mut g = poisoned(n);
        let got = tw_grpo_loss(Exec::new(), &mask, &l2, &w, Some(&mut g)).unwrap();
        let want = rtw::loss(&l, &w, &mask);
        prop_assert!((got as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()), "{} vs {}", got, want);
        let h = 1e-3f64;
        for i in 0..n {
            let mut up = l.clone();
            let mut dn = l.clone();
            up[i] = (l[i] as f64 + h) as f32;
            dn[i] = (l[i] as f64 - h) as f32;
            let fd = (rtw::loss(&up, &w, &mask) - rtw::loss(&dn, &w, &mask)) / (up[i] as f64 - dn[i] as f64);
            prop_assert!((g[i] as f64 - fd).abs() <= 1e-6 * (1.0 + fd.abs()), "grad[{}] = {} vs fd {}", i, g[i], fd);
        }
    }

    /// The rewards against their brute-force oracles on strings built from the tags, spaces,
    /// Unicode whitespace, `!`, commas and option letters.
    #[test]
    fn rewards_match_the_oracles(
        comp in prop::collection::vec(piece(), 0..14),
        sol in prop::collection::vec(piece(), 0..10),
        ok in any::<bool>(),
    ) {
        let (c, s) = (comp.concat(), sol.concat());
        prop_assert_eq!(format_reward_think_answer(&c) as f64, rtw::format(&c), "{:?}", c);
        prop_assert_eq!(soft_multichoice_reward(&c, &s, ok) as f64, (rtw::soft_multichoice(&c, &s, ok) as f32) as f64, "{:?} / {:?}", c, s);
        prop_assert_eq!(exact_multichoice_reward(&c, &s, ok) as f64, rtw::exact_multichoice(&c, &s, ok), "{:?} / {:?}", c, s);
    }
}

fn piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "<think>",
        "</think>",
        "<answer>",
        "</answer>",
        " ",
        "\n",
        "\t",
        "\u{a0}",
        "\u{1c}",
        "!",
        ",",
        "A",
        "B",
        "C",
        "é",
        "<",
        "x",
    ])
}

#[test]
fn rewards_examples() {
    let sol = "<answer>A, C</answer>";
    assert_eq!(soft_multichoice_reward("<answer>A</answer>", sol, false), 0.5);
    assert_eq!(soft_multichoice_reward("<answer> C ,A </answer>", sol, false), 1.0);
    assert_eq!(soft_multichoice_reward("<answer>A,B</answer>", sol, false), 0.0);
    assert_eq!(soft_multichoice_reward("<answer>A,A</answer>", sol, false), 0.5);
    assert_eq!(soft_multichoice_reward("<answer></answer>", sol, false), 0.0);
    assert_eq!(soft_multichoice_reward("nonsense", sol, true), 1.0);
    assert_eq!(soft_multichoice_reward("A,C", "A,C", false), 1.0);
    assert_eq!(exact_multichoice_reward("<answer>A</answer>", sol, false), 0.0);
    assert_eq!(exact_multichoice_reward("<answer>C,A</answer>", sol, false), 1.0);
    assert_eq!(format_reward_think_answer("<think>x</think>\n<answer>A</answer>!!\n"), 1.0);
    assert_eq!(format_reward_think_answer("  <think></think><answer></answer>"), 1.0);
    assert_eq!(format_reward_think_answer("<think>x</think>y<answer>A</answer>"), 0.0);
    assert_eq!(format_reward_think_answer("<think>x</think><answer>A</answer>."), 0.0);
    assert_eq!(format_reward_think_answer("<think><think></think><answer>A</answer>"), 0.0);
    assert_eq!(format_reward_think_answer("<answer>A</answer><think>x</think>"), 0.0);
    assert_eq!(format_reward_think_answer("pre <think>x</think> <answer>A</answer>"), 1.0);
}

fn simple_case(g: usize, groups: usize, t: usize, vocab: usize) -> Case {
    let n = g * groups * t;
    let x: Vec<f32> = (0..n * vocab).map(|i| tokenmath_testutil::unit_hash(i, 7) * 6.0).collect();
    Case { x, vocab, mask: vec![1; n], t, cfg: TwGrpoCfg { group_size: g, ..TwGrpoCfg::default() } }
}

#[test]
fn spec_properties() {
    // Identical rows in every group at every position: D = 0 everywhere, so w = mask exactly.
    let mut c = simple_case(4, 2, 3, 50);
    for r in 0..c.mask.len() {
        let (src, dst) = (c.x[..50].to_vec(), &mut c.x[r * 50..(r + 1) * 50]);
        dst.copy_from_slice(&src);
    }
    let (w, _) = run(Exec::new(), &c, |v| v, 0).unwrap();
    assert!(w.iter().all(|&v| v == 1.0));
    // A padded member (the uniform distribution) among identical rows makes its position the
    // most dispersed of the group: weight α there, 1 elsewhere, 0 at the padding.
    c.mask[5] = 0; // group 0, member 1, position 2
    let (w, _) = run(Exec::new(), &c, |v| v, 0).unwrap();
    for (i, &v) in w.iter().enumerate() {
        let want = if i == 5 {
            0.0
        } else if i < 12 && i % 3 == 2 {
            1.7
        } else {
            1.0
        };
        assert!((v - want).abs() < 1e-6, "w[{i}] = {v}, want {want}");
    }
    // Whole group padded: weights 0; other groups untouched by it.
    let mut c = simple_case(2, 2, 4, 300);
    c.mask[..8].fill(0);
    let (w, _) = run(Exec::new(), &c, |v| v, 0).unwrap();
    assert!(w[..8].iter().all(|&v| v == 0.0));
    assert!(w[8..].iter().all(|&v| (1.0..=1.7).contains(&v)));
    // The maximum-dispersion position of a group gets α, the minimum 1 (up to the 1e-8).
    assert!(w[8..].iter().any(|&v| (v - 1.7).abs() < 1e-6) && w[8..].contains(&1.0));
    // A large vocabulary (several 8-lane chunks and a tail), all backends, bitwise. (At least 3
    // positions: with 2 the min-max normalisation makes every weight 1 or α whatever D is.)
    let c = simple_case(8, 1, 5, 2051);
    let (w0, _) = run(Exec::new().with_backend(Backend::Portable), &c, |v| v, 5).unwrap();
    for b in backends() {
        assert_eq!(run(Exec::new().with_backend(b).with_threads(2), &c, |v| v, 0).unwrap().0, w0);
    }
}

#[test]
fn errors_write_nothing() {
    let c = simple_case(2, 2, 3, 8);
    let n = c.mask.len();
    let x = Mat::dense(&c.x, n, 8).unwrap();
    let (mx, ls) = saved(Exec::new(), x, &c.mask);
    let s = SavedLogSoftmax { max: &mx, log_sum: &ls };
    let mut w = poisoned(n);
    let call = |cfg: TwGrpoCfg, t: usize, s: SavedLogSoftmax<'_>, x: Mat<'_, f32>, w: &mut [f32]| {
        tw_grpo_token_weights(Exec::new(), x, s, &c.mask, t, &cfg, w)
    };
    let cfg = TwGrpoCfg { group_size: 2, ..Default::default() };
    assert!(matches!(call(TwGrpoCfg { group_size: 3, ..cfg }, 3, s, x, &mut w), Err(TmError::InvalidArgument(_))));
    assert!(matches!(call(TwGrpoCfg { group_size: 0, ..cfg }, 3, s, x, &mut w), Err(TmError::InvalidArgument(_))));
    assert!(matches!(call(TwGrpoCfg { group_size: 513, ..cfg }, 3, s, x, &mut w), Err(TmError::InvalidArgument(_))));
    assert!(matches!(call(TwGrpoCfg { clamp: 0.0, ..cfg }, 3, s, x, &mut w), Err(TmError::InvalidArgument(_))));
    assert!(matches!(call(TwGrpoCfg { clamp: f32::NAN, ..cfg }, 3, s, x, &mut w), Err(TmError::InvalidArgument(_))));
    assert!(matches!(
        call(TwGrpoCfg { alpha: f32::INFINITY, ..cfg }, 3, s, x, &mut w),
        Err(TmError::InvalidArgument(_))
    ));
    assert!(matches!(call(cfg, 0, s, x, &mut w), Err(TmError::InvalidArgument(_))));
    assert!(matches!(call(cfg, 5, s, x, &mut w), Err(TmError::LengthMismatch { .. })));
    let short = SavedLogSoftmax { max: &mx[1..], log_sum: &ls };
    assert!(matches!(call(cfg, 3, short, x, &mut w), Err(TmError::LengthMismatch { what: "max", .. })));
    let empty = Mat::dense(&c.x[..0], n, 0).unwrap();
    assert_eq!(call(cfg, 3, s, empty, &mut w), Err(TmError::EmptyVocab));
    let few = Mat::dense(&c.x[..8 * (n - 1)], n - 1, 8).unwrap();
    assert!(matches!(call(cfg, 3, s, few, &mut w), Err(TmError::LengthMismatch { .. })));
    assert!(untouched(&w));
    assert!(matches!(call(cfg, 3, s, x, &mut w[1..]), Err(TmError::LengthMismatch { .. })));
    if let Some(b) = [Backend::Avx2Fma, Backend::Avx512].into_iter().find(|b| !b.is_supported()) {
        let r = tw_grpo_token_weights(Exec::new().with_backend(b), x, s, &c.mask, 3, &cfg, &mut w);
        assert_eq!(r, Err(TmError::BackendUnavailable));
        assert_eq!(tw_grpo_loss(Exec::new().with_backend(b), &c.mask, &w, &w, None), Err(TmError::BackendUnavailable));
    }
    assert!(untouched(&w));
    let mut g = poisoned(n);
    assert!(matches!(
        tw_grpo_loss(Exec::new(), &c.mask, &w[1..], &w, Some(&mut g)),
        Err(TmError::LengthMismatch { .. })
    ));
    assert!(matches!(
        tw_grpo_loss(Exec::new(), &c.mask, &w, &w, Some(&mut g[1..])),
        Err(TmError::LengthMismatch { .. })
    ));
    assert!(untouched(&g));
}

/// On ordinary logits the weights follow the f64 reference far more closely than the worst-case
/// formula above guarantees (which sums every element's error bound): `|Δw| ≤ 2e-6` here, while
/// a 0.1% error in `δ` moves them by about `1e-4`. A regression detector, with every backend.
#[test]
fn weights_track_the_reference_closely() {
    for (g, t, vocab) in [(8usize, 6usize, 37usize), (4, 5, 300), (3, 4, 2051)] {
        let mut c = simple_case(g, 2, t, vocab);
        for (i, v) in c.x.iter_mut().enumerate() {
            *v = 4.0 * tokenmath_testutil::unit_hash(i, 11) - 2.0 * ((i % vocab) as f32).ln_1p();
        }
        c.mask[t + 1] = 0;
        let r = rtw::weights(&c.x, vocab, &c.mask, t, g, c.cfg.alpha as f64, c.cfg.clamp as f64);
        for b in Backend::all_supported() {
            let (w, _) = run(Exec::new().with_backend(b), &c, |v| v, 0).unwrap();
            for (i, (&got, &want)) in w.iter().zip(&r.w).enumerate() {
                assert!((got as f64 - want).abs() <= 2e-6, "{b:?} g{g} t{t} V{vocab}: w[{i}] = {got} vs {want}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The weighted loss's vectorised builds (AVX2, AVX-512) against the portable one, bitwise
    /// (every NaN read as one), with NaN and infinite per-token losses and weights at masked
    /// and valid positions.
    #[test]
    fn tw_grpo_loss_backends_bitwise(n in 0usize..400, seed in any::<u64>()) {
        let mut rng = tokenmath_testutil::Rng::new(seed);
        let mask: Vec<u8> = (0..n).map(|_| !rng.next_u64().is_multiple_of(4) as u8).collect();
        let hostile = |i: usize, v: f32| match i % 17 { 3 => f32::NAN, 9 => f32::INFINITY, 11 => -0.0, _ => v };
        let l: Vec<f32> = (0..n).map(|i| hostile(i, rng.symmetric() * 3.0)).collect();
        let w: Vec<f32> = (0..n).map(|i| hostile(i + 5, rng.symmetric().abs() * 2.0)).collect();
        let run = |e: Exec| {
            let mut g = poisoned(n);
            let loss = tw_grpo_loss(e, &mask, &l, &w, Some(&mut g)).unwrap();
            // NaN payloads are not part of the contract (which NaN an addition of two returns
            // depends on the operand order the vector build chose).
            (nan_bits(&[loss]), nan_bits(&g))
        };
        let want = run(Exec::new().with_backend(Backend::Portable));
        for b in Backend::all_supported() {
            prop_assert_eq!(run(Exec::new().with_backend(b)), want.clone(), "{}", b.name());
        }
    }
}
