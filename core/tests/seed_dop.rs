//! Diversity or Precision (`tokenmath_core::seed::dop`) against the f64 reference
//! (`tokenmath_reference::dop`: full softmax, full sort for the top-k): hostile logits (NaN,
//! ±inf, `−inf`-masked vocabulary, `1e30` offsets that tie every column, `V = 1`, `k = 0`,
//! `k ≥ V`, ties, masked rows, ignored targets, temperatures), every backend and thread count
//! bitwise, in place = separate buffer bitwise, half-precision logits and gradients, `β = 0`
//! = cross-entropy bitwise, and the gradient against finite differences of the surrogate.
//!
//! Tolerances are the reference's formulas (`DopRef::loss_tol`, `DopRef::grad_tol`).

use half::{bf16, f16};
use proptest::prelude::*;
use tokenmath_core::logits::{stats_bwd, stats_fwd, FwdOut, RowInputs, Saved, Temperature, Upstream};
use tokenmath_core::seed::dop::*;
use tokenmath_core::{Backend, Exec, GradElem, LogitElem, Mat, MatMut, TmError};
use tokenmath_reference::dop::{self as rdop, DopParams};
use tokenmath_testutil::{nan_bits, poisoned, untouched, POISON};

#[derive(Debug, Clone)]
struct Case {
    x: Vec<f32>,
    vocab: usize,
    mask: Vec<u8>,
    targets: Vec<i32>,
    temp: f32,
    cfg: DopCfg,
}

impl Case {
    fn rows(&self) -> usize {
        self.mask.len()
    }
    fn inputs(&self) -> RowInputs<'_> {
        RowInputs {
            targets: Some(&self.targets),
            row_mask: Some(&self.mask),
            temperature: Temperature::Scalar(self.temp),
        }
    }
}

/// Runs the separate-buffer kernel on `x` stored as `T`, the gradient as `O`, with row
/// strides `vocab + pad`; returns (loss, gradient as f32 rows of `vocab`, status).
fn run<T: LogitElem, O: GradElem + Copy>(
    exec: Exec,
    c: &Case,
    conv: fn(f32) -> T,
    poison: O,
    back: fn(O) -> f32,
    pad: usize,
) -> Result<(Vec<f32>, Vec<f32>, usize), TmError> {
    let (n, v) = (c.rows(), c.vocab);
    let stride = v + pad;
    let mut data = vec![conv(0.0); n * stride];
    for r in 0..n {
        for j in 0..v {
            data[r * stride + j] = conv(c.x[r * v + j]);
        }
    }
    let x = Mat::new(&data, n, v, stride)?;
    let mut scratch = vec![DopSlot::default(); dop_scratch_len(exec, n, v, c.cfg.top_k)];
    let mut loss = poisoned(n);
    let mut dx = vec![poison; n * stride];
    let st =
        dop_loss_and_grad(exec, x, &c.inputs(), &c.cfg, &mut scratch, &mut loss, MatMut::new(&mut dx, n, v, stride)?)?;
    let mut g = Vec::with_capacity(n * v);
    for r in 0..n {
        g.extend(dx[r * stride..r * stride + v].iter().map(|&o| back(o)));
        // Between rows: untouched.
        for j in v..stride {
            assert_eq!(back(dx[r * stride + j]).to_bits(), back(poison).to_bits(), "padding written");
        }
    }
    Ok((loss, g, st.nonfinite_rows))
}

fn run_f32(exec: Exec, c: &Case, pad: usize) -> Result<(Vec<f32>, Vec<f32>, usize), TmError> {
    run(exec, c, |v| v, POISON, |v| v, pad)
}

/// The in-place kernel on f32 logits.
fn run_inplace(exec: Exec, c: &Case) -> Result<(Vec<f32>, Vec<f32>), TmError> {
    let (n, v) = (c.rows(), c.vocab);
    let mut data = c.x.clone();
    let mut scratch = vec![DopSlot::default(); dop_scratch_len(exec, n, v, c.cfg.top_k)];
    let mut loss = poisoned(n);
    dop_loss_and_grad_inplace(exec, MatMut::dense(&mut data, n, v)?, &c.inputs(), &c.cfg, &mut scratch, &mut loss)?;
    Ok((loss, data))
}

fn params(cfg: &DopCfg) -> DopParams {
    DopParams {
        beta: cfg.beta as f64,
        lam_top: cfg.lam_top as f64,
        lam_tail: cfg.lam_tail as f64,
        top_k: cfg.top_k,
        grad_scale: cfg.grad_scale as f64,
    }
}

fn check_against_reference(
    c: &Case,
    x: &[f32],
    loss: &[f32],
    g: &[f32],
    nonfinite: usize,
) -> Result<(), TestCaseError> {
    let v = c.vocab;
    let mut nan_rows = 0;
    for r in 0..c.rows() {
        let (lr, gr) = (loss[r], &g[r * v..(r + 1) * v]);
        if c.mask[r] == 0 || c.targets[r] < 0 {
            prop_assert_eq!(lr.to_bits(), 0.0f32.to_bits(), "ignored row {} loss", r);
            prop_assert!(gr.iter().all(|x| x.to_bits() == 0), "ignored row {} gradient", r);
            continue;
        }
        let row = &x[r * v..(r + 1) * v];
        let Some(want) = rdop::dop_row(row, c.temp, c.targets[r] as usize, &params(&c.cfg)) else {
            prop_assert!(lr.is_nan() && gr.iter().all(|x| x.is_nan()), "non-finite row {} must be NaN", r);
            nan_rows += 1;
            continue;
        };
        if want.loss.is_infinite() {
            prop_assert_eq!(lr as f64, want.loss, "row {} loss", r);
        } else {
            prop_assert!(
                (lr as f64 - want.loss).abs() <= want.loss_tol,
                "row {} loss {} vs {} (tol {:e})",
                r,
                lr,
                want.loss,
                want.loss_tol
            );
        }
        for (j, &gj) in gr.iter().enumerate() {
            prop_assert!(
                (gj as f64 - want.grad[j]).abs() <= want.grad_tol[j],
                "row {} col {}: {} vs {} (tol {:e}; W {}, w_x {}, in K {})",
                r,
                j,
                gj,
                want.grad[j],
                want.grad_tol[j],
                want.big_w,
                want.w_x,
                want.in_k[j]
            );
        }
    }
    prop_assert_eq!(nonfinite, nan_rows);
    Ok(())
}

fn logit() -> impl Strategy<Value = f32> {
    prop_oneof![
        30 => -8.0f32..8.0,
        // Small integers: many ties.
        10 => (-3i32..4).prop_map(|i| i as f32),
        2 => Just(f32::NEG_INFINITY),
        1 => prop_oneof![Just(1e-40f32), Just(-1e-40f32), Just(-0.0f32), Just(0.0f32)],
    ]
}

fn cfg() -> impl Strategy<Value = (f32, f32, f32, f32)> {
    (
        prop_oneof![Just(-0.25f32), Just(0.0), Just(0.5), Just(-0.9), -0.99f32..2.0],
        prop_oneof![Just(0.0f32), Just(0.1), -0.5f32..0.5],
        prop_oneof![Just(0.0f32), Just(-0.1), -0.5f32..0.5],
        prop_oneof![3 => Just(1.0f32), 1 => Just(0.25f32)],
    )
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..5, prop_oneof![Just(1usize), 2usize..12, Just(33usize), Just(200usize)], 0u32..5, any::<u64>())
        .prop_flat_map(|(n, vocab, offset_kind, seed)| {
            (
                prop::collection::vec(logit(), n * vocab),
                prop::collection::vec(prop_oneof![4 => Just(1u8), 1 => Just(0u8)], n),
                prop::collection::vec(prop_oneof![6 => 0..vocab as i32, 1 => Just(-100i32)], n),
                prop_oneof![
                    Just(0usize),
                    Just(1),
                    Just(3),
                    Just(vocab.saturating_sub(1)),
                    Just(vocab),
                    Just(vocab + 5),
                    Just(100)
                ],
                cfg(),
                prop_oneof![3 => Just(1.0f32), 1 => Just(0.7f32)],
                Just((vocab, offset_kind, seed)),
            )
        })
        .prop_map(|(mut x, mask, targets, top_k, (beta, lam_top, lam_tail, grad_scale), temp, (vocab, off, seed))| {
            let offset = [0.0, 1e4, 1e30, -3e3, 0.0][off as usize];
            for r in 0..mask.len() {
                let row = &mut x[r * vocab..(r + 1) * vocab];
                if row.iter().all(|v| !v.is_finite()) {
                    row[0] = 1.0;
                }
                for v in row.iter_mut() {
                    *v += offset;
                }
            }
            if seed % 4 == 0 {
                let i = (seed / 4) as usize % x.len();
                x[i] = if seed % 8 == 0 { f32::NAN } else { f32::INFINITY };
            }
            Case { x, vocab, mask, targets, temp, cfg: DopCfg { beta, lam_top, lam_tail, top_k, grad_scale } }
        })
}

fn backends() -> Vec<Backend> {
    let all: Vec<Backend> = Backend::all_supported().collect();
    if !all.iter().any(|b| *b != Backend::Portable) {
        eprintln!("SKIPPED the SIMD backends of DoP: this CPU has no AVX2+FMA+F16C");
    }
    all
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// f32 logits with a row stride against the reference; every backend and 1/2/3 threads
    /// give the same bits; in place gives the same bits; the status counts the NaN rows.
    #[test]
    fn matches_the_reference(c in case()) {
        let (loss, g, nf) = run_f32(Exec::new().with_backend(Backend::Portable), &c, 3).unwrap();
        check_against_reference(&c, &c.x, &loss, &g, nf)?;
        for b in backends() {
            for threads in [1, 2, 3] {
                let exec = Exec::new().with_backend(b).with_threads(threads);
                let (l2, g2, nf2) = run_f32(exec, &c, 0).unwrap();
                prop_assert_eq!(nan_bits(&l2), nan_bits(&loss), "{:?} x{}", b, threads);
                prop_assert_eq!(nan_bits(&g2), nan_bits(&g), "{:?} x{}", b, threads);
                prop_assert_eq!(nf2, nf);
                let (l3, g3) = run_inplace(exec, &c).unwrap();
                prop_assert_eq!(nan_bits(&l3), nan_bits(&loss), "in place {:?} x{}", b, threads);
                prop_assert_eq!(nan_bits(&g3), nan_bits(&g), "in place {:?} x{}", b, threads);
            }
        }
    }

    /// bf16 and f16 logits and gradients: the kernel reads the rounded values and rounds the
    /// f32 gradient once: bitwise the f32 path on the upcast logits, rounded.
    #[test]
    fn half_precision(c in case()) {
        for b in backends() {
            let exec = Exec::new().with_backend(b).with_threads(2);
            let xb: Vec<f32> = c.x.iter().map(|&v| bf16::from_f32(v).to_f32()).collect();
            let cb = Case { x: xb, ..c.clone() };
            let (l32, g32, _) = run_f32(exec, &cb, 0).unwrap();
            let (lb, gb, _) = run(exec, &c, bf16::from_f32, bf16::from_bits(0x7FC1), bf16::to_f32, 2).unwrap();
            prop_assert_eq!(nan_bits(&lb), nan_bits(&l32));
            let want: Vec<f32> = g32.iter().map(|&v| bf16::from_f32(v).to_f32()).collect();
            prop_assert_eq!(nan_bits(&gb), nan_bits(&want), "bf16 {:?}", b);
            let xh: Vec<f32> = c.x.iter().map(|&v| f16::from_f32(v).to_f32()).collect();
            let ch = Case { x: xh, ..c.clone() };
            let (l32, g32, _) = run_f32(exec, &ch, 0).unwrap();
            let (lh, gh, _) = run(exec, &c, f16::from_f32, f16::from_bits(0x7E01), f16::to_f32, 1).unwrap();
            prop_assert_eq!(nan_bits(&lh), nan_bits(&l32));
            let want: Vec<f32> = g32.iter().map(|&v| f16::from_f32(v).to_f32()).collect();
            prop_assert_eq!(nan_bits(&gh), nan_bits(&want), "f16 {:?}", b);
        }
    }

    /// `β = 0, λ̃ = λ̂ = 0` (any `k`) is cross-entropy: the loss is bitwise `−logp` of the
    /// logits forward, the gradient bitwise the logits backward with `g_logp = −1`.
    #[test]
    fn beta_zero_is_cross_entropy_bitwise(c in case()) {
        let c = Case { cfg: DopCfg { beta: 0.0, lam_top: 0.0, lam_tail: 0.0, grad_scale: 1.0, ..c.cfg }, ..c };
        for b in backends() {
            let exec = Exec::new().with_backend(b);
            let (loss, g, _) = run_f32(exec, &c, 0).unwrap();
            let (n, v) = (c.rows(), c.vocab);
            // Rows without a target are ignored by DoP: mask them for the logits kernels too.
            let mask: Vec<u8> = (0..n).map(|r| (c.mask[r] != 0 && c.targets[r] >= 0) as u8).collect();
            let inputs = RowInputs { targets: Some(&c.targets), row_mask: Some(&mask), temperature: Temperature::Scalar(c.temp) };
            let x = Mat::dense(&c.x, n, v).unwrap();
            let (mut lse, mut h, mut lp, mut mx, mut ls) = (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
            let out = FwdOut { lse: &mut lse, entropy: &mut h, logp: Some(&mut lp), max: Some(&mut mx), log_sum: Some(&mut ls) };
            stats_fwd(exec, x, &inputs, out).unwrap();
            let want_loss: Vec<f32> = (0..n).map(|r| if mask[r] == 0 { 0.0 } else { -lp[r] }).collect();
            prop_assert_eq!(nan_bits(&loss), nan_bits(&want_loss));
            let g_lp = vec![-1.0f32; n];
            let mut dx = vec![0.0f32; n * v];
            let saved = Saved { max: &mx, log_sum: &ls, entropy: &h };
            let up = Upstream { g_logp: Some(&g_lp), ..Default::default() };
            stats_bwd(exec, x, &inputs, saved, up, MatMut::dense(&mut dx, n, v).unwrap()).unwrap();
            prop_assert_eq!(nan_bits(&g), nan_bits(&dx), "{:?}", b);
        }
    }
}

/// The surrogate with the weights frozen (`sg`): `L(z') = −Σ_a w_a·log softmax(z')_a`, in f64.
fn frozen_loss(z: &[f64], w: &[f64]) -> f64 {
    let m = z.iter().copied().filter(|v| v.is_finite()).fold(f64::NEG_INFINITY, f64::max);
    let ls = z.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
    -z.iter().zip(w).map(|(&v, &wa)| if wa == 0.0 { 0.0 } else { wa * ((v - m) - ls) }).sum::<f64>()
}

/// The kernel's gradient against central differences of the frozen surrogate, for the
/// paper's three settings and both kinds of negative reward, at temperature 1 and 0.5.
#[test]
fn gradient_matches_finite_differences() {
    let v = 37;
    let x: Vec<f32> = (0..v).map(|j| ((j as f32 * 1.37).sin() * 3.0).round() / 2.0).collect();
    let settings = [
        DopCfg { beta: -0.25, lam_top: 0.0, lam_tail: 0.0, top_k: 5, grad_scale: 1.0 },
        DopCfg { beta: 0.5, lam_top: 0.0, lam_tail: -0.1, top_k: 5, grad_scale: 1.0 },
        DopCfg { beta: 0.0, lam_top: 0.1, lam_tail: 0.0, top_k: 5, grad_scale: 0.5 },
        DopCfg { beta: -0.6, lam_top: 0.2, lam_tail: -0.3, top_k: 9, grad_scale: 1.0 },
    ];
    for cfg in settings {
        for temp in [1.0f32, 0.5] {
            for target in [0usize, 7, 20] {
                let c = Case { x: x.clone(), vocab: v, mask: vec![1], targets: vec![target as i32], temp, cfg };
                let (_, g, _) = run_f32(Exec::new(), &c, 0).unwrap();
                let r = rdop::dop_row(&x, temp, target, &params(&cfg)).unwrap();
                let inv_temp = (1.0f32 / temp) as f64;
                let z: Vec<f64> = x.iter().map(|&xi| xi as f64 * inv_temp).collect();
                let h = 1e-5;
                for j in 0..v {
                    let (mut zp, mut zm) = (z.clone(), z.clone());
                    zp[j] += h;
                    zm[j] -= h;
                    let fd = cfg.grad_scale as f64 * inv_temp * (frozen_loss(&zp, &r.w) - frozen_loss(&zm, &r.w))
                        / (2.0 * h);
                    let tol = 1e-6 + 1e-5 * fd.abs();
                    assert!(
                        (g[j] as f64 - fd).abs() <= tol,
                        "{cfg:?} T={temp} t={target} col {j}: {} vs fd {fd}",
                        g[j]
                    );
                }
            }
        }
    }
}

/// The tie rule: `K` = columns above `θ`, then the tied ones in ascending column order.
#[test]
fn top_k_ties_take_the_lowest_columns() {
    // Columns 1, 2, 4, 6 tie at the top; k = 3 takes 1, 2, 4.
    let x = [0.0f32, 2.0, 2.0, 1.0, 2.0, -1.0, 2.0, 0.5];
    let want_k = [false, true, true, false, true, false, false, false];
    assert_eq!(rdop::top_k_set(&x, 1.0, 3), want_k);
    let cfg = DopCfg { beta: 0.0, lam_top: 0.3, lam_tail: -0.2, top_k: 3, grad_scale: 1.0 };
    let c = Case { x: x.to_vec(), vocab: 8, mask: vec![1], targets: vec![7], temp: 1.0, cfg };
    let (_, g, _) = run_f32(Exec::new(), &c, 0).unwrap();
    // Columns 4 and 6 have the same π: only the tie rule separates their gradients
    // (π·(W − λ̃) vs π·(W − λ̂)).
    assert!(g[4] != g[6], "tie rule not applied: {} {}", g[4], g[6]);
    let r = rdop::dop_row(&x, 1.0, 7, &params(&cfg)).unwrap();
    assert_eq!(r.in_k, want_k);
    for (j, &gj) in g.iter().enumerate() {
        assert!((gj as f64 - r.grad[j]).abs() <= r.grad_tol[j], "col {j}");
    }
    // k = 0 and k ≥ V.
    assert_eq!(rdop::top_k_set(&x, 1.0, 0), [false; 8]);
    assert_eq!(rdop::top_k_set(&x, 1.0, 9), [true; 8]);
}

/// Worst case of the streaming selection (ascending logits: every column enters the buffer)
/// and a vocabulary of several blocks, against the reference.
#[test]
fn selection_over_many_blocks() {
    let v = 9000;
    for (kind, k) in [(0, 100usize), (1, 100), (2, 1), (0, 4500), (2, 8999)] {
        let x: Vec<f32> = (0..v)
            .map(|j| match kind {
                0 => j as f32 * 1e-3,
                1 => -(j as f32) * 1e-3,
                _ => ((j * 7919) % 101) as f32 * 0.05,
            })
            .collect();
        let cfg = DopCfg { beta: -0.25, lam_top: 0.1, lam_tail: -0.1, top_k: k, grad_scale: 1.0 };
        let c = Case { x: x.clone(), vocab: v, mask: vec![1, 1], targets: vec![3, 8000], temp: 1.0, cfg };
        let mut xx = x.clone();
        xx.extend_from_slice(&x);
        let c = Case { x: xx, ..c };
        for b in backends() {
            for threads in [1, 2] {
                let (loss, g, nf) = run_f32(Exec::new().with_backend(b).with_threads(threads), &c, 0).unwrap();
                check_against_reference(&c, &c.x, &loss, &g, nf).unwrap();
            }
        }
    }
}

/// Validation: every error before anything is written, with the right variant.
#[test]
fn errors_write_nothing() {
    let x = vec![0.5f32, 1.0, -1.0, 2.0, 0.0, 3.0];
    let base =
        Case { x: x.clone(), vocab: 3, mask: vec![1, 1], targets: vec![0, 2], temp: 1.0, cfg: DopCfg::default() };
    let try_cfg = |cfg: DopCfg| {
        let c = Case { cfg, ..base.clone() };
        let mut scratch = vec![DopSlot::default(); 16];
        let mut loss = poisoned(2);
        let mut dx = poisoned(6);
        let r = dop_loss_and_grad(
            Exec::new(),
            Mat::dense(&c.x, 2, 3).unwrap(),
            &c.inputs(),
            &c.cfg,
            &mut scratch,
            &mut loss,
            MatMut::dense(&mut dx, 2, 3).unwrap(),
        );
        assert!(untouched(&loss) && untouched(&dx));
        r
    };
    for beta in [-1.0f32, -2.0, f32::NAN, f32::INFINITY] {
        let e = try_cfg(DopCfg { beta, ..DopCfg::default() }).unwrap_err();
        assert!(matches!(e, TmError::InvalidArgument(_)), "{e:?}");
    }
    for (lt, lh, s) in [(f32::NAN, 0.0, 1.0), (0.0, f32::INFINITY, 1.0), (0.0, 0.0, f32::NAN)] {
        let cfg = DopCfg { lam_top: lt, lam_tail: lh, grad_scale: s, ..DopCfg::default() };
        assert!(matches!(try_cfg(cfg), Err(TmError::InvalidArgument(_))));
    }
    // Short scratch: k = 1 on V = 3 needs 2 slots per thread.
    let mut loss = poisoned(2);
    let mut dx = poisoned(6);
    let cfg = DopCfg { top_k: 1, ..DopCfg::default() };
    assert_eq!(dop_scratch_len(Exec::new(), 2, 3, 1), 2);
    assert_eq!(dop_scratch_len(Exec::new(), 2, 3, 0), 0);
    assert_eq!(dop_scratch_len(Exec::new(), 2, 3, 3), 0);
    let e = dop_loss_and_grad(
        Exec::new(),
        Mat::dense(&x, 2, 3).unwrap(),
        &base.inputs(),
        &cfg,
        &mut [DopSlot::default(); 1],
        &mut loss,
        MatMut::dense(&mut dx, 2, 3).unwrap(),
    )
    .unwrap_err();
    assert!(matches!(e, TmError::LengthMismatch { expected: 2, got: 1, .. }), "{e:?}");
    // No targets; target out of range; wrong loss length; wrong dx shape; empty vocabulary.
    let none = RowInputs::default();
    let mut sc = vec![DopSlot::default(); 8];
    let x2 = Mat::dense(&x, 2, 3).unwrap();
    let e = dop_loss_and_grad(Exec::new(), x2, &none, &cfg, &mut sc, &mut loss, MatMut::dense(&mut dx, 2, 3).unwrap());
    assert!(matches!(e, Err(TmError::InvalidArgument(_))));
    let bad_t = [0, 3];
    let inp = RowInputs { targets: Some(&bad_t), ..Default::default() };
    let e = dop_loss_and_grad(Exec::new(), x2, &inp, &cfg, &mut sc, &mut loss, MatMut::dense(&mut dx, 2, 3).unwrap());
    assert!(matches!(e, Err(TmError::TargetOutOfRange { row: 1, target: 3, vocab: 3 })), "{e:?}");
    let e = dop_loss_and_grad(
        Exec::new(),
        x2,
        &base.inputs(),
        &cfg,
        &mut sc,
        &mut loss[..1],
        MatMut::dense(&mut dx, 2, 3).unwrap(),
    );
    assert!(matches!(e, Err(TmError::LengthMismatch { what: "loss", .. })));
    let e = dop_loss_and_grad(
        Exec::new(),
        x2,
        &base.inputs(),
        &cfg,
        &mut sc,
        &mut loss,
        MatMut::dense(&mut dx[..4], 2, 2).unwrap(),
    );
    assert!(matches!(e, Err(TmError::LengthMismatch { .. })));
    let e = dop_loss_and_grad(
        Exec::new(),
        Mat::dense(&x[..0], 2, 0).unwrap(),
        &base.inputs(),
        &cfg,
        &mut sc,
        &mut loss,
        MatMut::dense(&mut dx[..0], 2, 0).unwrap(),
    );
    assert_eq!(e.unwrap_err(), TmError::EmptyVocab);
    assert!(untouched(&loss) && untouched(&dx));
    // A kept row of all −inf: NoFiniteLogit with its row number.
    let xi = [0.0f32, 1.0, 2.0, f32::NEG_INFINITY, f32::NEG_INFINITY, f32::NEG_INFINITY];
    let e = dop_loss_and_grad(
        Exec::new(),
        Mat::dense(&xi, 2, 3).unwrap(),
        &base.inputs(),
        &cfg,
        &mut sc,
        &mut loss,
        MatMut::dense(&mut dx, 2, 3).unwrap(),
    );
    assert_eq!(e.unwrap_err(), TmError::NoFiniteLogit { row: 1 });
}

/// The limits of `w_x`: `π_x = 1` (a single column, or every other one `−inf`) and `π_x = 0`
/// (target logit `−inf`: loss `+inf`, target gradient `−w_x = −1`).
#[test]
fn target_weight_limits() {
    let cfg = DopCfg { beta: -0.9, lam_top: 0.1, lam_tail: -0.1, top_k: 1, grad_scale: 1.0 };
    let c = Case { x: vec![4.0], vocab: 1, mask: vec![1], targets: vec![0], temp: 1.0, cfg };
    let (loss, g, _) = run_f32(Exec::new(), &c, 0).unwrap();
    assert_eq!((loss[0], g[0]), (0.0, 0.0));
    let c = Case { x: vec![f32::NEG_INFINITY, 2.0, 1.0], vocab: 3, mask: vec![1], targets: vec![0], temp: 1.0, cfg };
    let (loss, g, _) = run_f32(Exec::new(), &c, 0).unwrap();
    assert_eq!(loss[0], f32::INFINITY);
    assert_eq!(g[0], -1.0);
    let r = rdop::dop_row(&c.x, 1.0, 0, &params(&cfg)).unwrap();
    for (j, &gj) in g.iter().enumerate().skip(1) {
        assert!((gj as f64 - r.grad[j]).abs() <= r.grad_tol[j]);
    }
}

/// `λ̃ = λ̂`: the weights do not depend on `K`, so no selection is made (the row is handled as
/// `k ≥ V`): the same bits for every `k`, and the reference (which does select) agrees.
#[test]
fn equal_lambdas_make_k_irrelevant() {
    let (n, v) = (3, 5000);
    let x = tokenmath_testutil::rand_f32(n * v, 77, 7.0);
    for lam in [0.0f32, 0.07, -0.2] {
        let base = DopCfg { beta: -0.25, lam_top: lam, lam_tail: lam, top_k: v, grad_scale: 0.5 };
        let c = Case { x: x.clone(), vocab: v, mask: vec![1; n], targets: vec![0, 2500, 4999], temp: 0.8, cfg: base };
        let (want_l, want_g, _) = run_f32(Exec::new(), &c, 0).unwrap();
        for k in [0usize, 1, 10, 100, v - 1] {
            let ck = Case { cfg: DopCfg { top_k: k, ..base }, ..c.clone() };
            let (l, g, nf) = run_f32(Exec::new(), &ck, 0).unwrap();
            assert_eq!((nan_bits(&l), nan_bits(&g)), (nan_bits(&want_l), nan_bits(&want_g)), "lam {lam} k {k}");
            check_against_reference(&ck, &ck.x, &l, &g, nf).unwrap();
        }
    }
}

/// A gradient of at least 32 MiB goes out with the logits backward's non-temporal stores on the
/// AVX-512 backend, and the `K` columns and the target are rewritten after them: the same bits
/// as the portable path (tail suppression, a temperature, odd row length, row padding).
#[test]
fn large_gradient_with_streaming_stores_bitwise() {
    let (rows, vocab) = (129usize, 65_537usize);
    let x: Vec<f32> = (0..rows * vocab).map(|i| ((i * 7919 % 1013) as f32 - 506.0) * 0.011).collect();
    let c = Case {
        x,
        vocab,
        mask: vec![1; rows],
        targets: (0..rows).map(|r| ((r * 977) % vocab) as i32).collect(),
        temp: 0.8,
        cfg: DopCfg { beta: -0.25, lam_top: 0.1, lam_tail: -0.1, top_k: 50, grad_scale: 1.0 },
    };
    let want = run_f32(Exec::new().with_backend(Backend::Portable), &c, 3).unwrap();
    for b in backends() {
        let got = run_f32(Exec::new().with_backend(b), &c, 3).unwrap();
        assert_eq!(nan_bits(&got.0), nan_bits(&want.0), "{} loss", b.name());
        assert!(got.1.iter().zip(&want.1).all(|(g, w)| g.to_bits() == w.to_bits()), "{} gradient", b.name());
    }
}
