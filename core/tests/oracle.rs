//! The first link of the oracle chain: the portable `f32` kernels against the `f64`
//! reference (`tokenmath-reference`), with tolerances written as formulas of `V` and the
//! values (see `tokenmath_reference::stats_tolerance`), on hostile inputs.

mod common;

use common::*;
use proptest::prelude::*;
use tokenmath_core::logits::{self, FwdOut, RowInputs, Saved, Temperature, Upstream};
use tokenmath_core::{Mat, MatMut, TmError};
use tokenmath_reference as reference;

fn check_row_against_reference(row: &[f32], temp: f32, target: Option<usize>, got: &Fwd) -> Result<(), TestCaseError> {
    let v = row.len();
    let r = reference::row_stats(row, temp, target);
    let nonfinite = row.iter().any(|x| x.is_nan() || *x == f32::INFINITY);
    if nonfinite {
        prop_assert!(got.lse[0].is_nan() && got.entropy[0].is_nan() && got.max[0].is_nan() && got.log_sum[0].is_nan());
        prop_assert!(target.is_none() || got.logp[0].is_nan());
        prop_assert_eq!(got.status.nonfinite_rows, 1);
        return Ok(());
    }
    let r = r.expect("finite row with a finite logit");
    prop_assert_eq!(got.status.nonfinite_rows, 0);
    let tol = reference::stats_tolerance(&r, v, temp != 1.0);
    let close = |name: &str, g: f32, want: f64, t: f64| {
        if g as f64 == want || (g as f64 - want).abs() <= t {
            Ok(())
        } else {
            Err(TestCaseError::fail(format!(
                "{name}: got {g:e} ({:#010x}) want {want:e}, |err| {:e} > tol {t:e} (V = {v}, temp = {temp})",
                g.to_bits(),
                (g as f64 - want).abs()
            )))
        }
    };
    close("lse", got.lse[0], r.lse, tol.lse)?;
    close("entropy", got.entropy[0], r.entropy, tol.entropy)?;
    close("max", got.max[0], r.m, tol.max)?;
    close("log_sum", got.log_sum[0], r.log_s, tol.log_sum)?;
    if target.is_some() {
        close("logp", got.logp[0], r.logp, tol.logp)?;
    } else {
        prop_assert_eq!(got.logp[0], 0.0);
    }
    // The centred formulas make these hold exactly, not just within tolerance.
    prop_assert!(got.entropy[0] >= 0.0, "entropy {} < 0", got.entropy[0]);
    prop_assert!(got.logp[0] <= 0.0, "logp {} > 0", got.logp[0]);
    Ok(())
}

fn one_row_fwd(row: &[f32], temp: f32, target: Option<usize>) -> Result<Fwd, TmError> {
    let t = target.map(|t| [t as i32]);
    let inputs =
        RowInputs { targets: t.as_ref().map(|t| &t[..]), row_mask: None, temperature: Temperature::Scalar(temp) };
    fwd(portable(), Mat::dense(row, 1, row.len()).unwrap(), &inputs)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Rows of ordinary values with −inf masks around large common offsets.
    #[test]
    fn forward_matches_reference(row in finite_row(1..3000usize), temp in temperature(), t in any::<prop::sample::Index>(), with_target in any::<bool>()) {
        let target = with_target.then(|| t.index(row.len()));
        match one_row_fwd(&row, temp, target) {
            Err(TmError::NoFiniteLogit { row: 0 }) => prop_assert!(row.iter().all(|x| *x == f32::NEG_INFINITY)),
            Err(e) => return Err(TestCaseError::fail(format!("unexpected error {e}"))),
            Ok(got) => check_row_against_reference(&row, temp, target, &got)?,
        }
    }

    /// Hostile rows: NaN, ±inf, denormals, ±0, ±1e30 and values at the exp cutoff.
    #[test]
    fn forward_on_hostile_rows(row in proptest::collection::vec(hostile_logit(), 1..700usize), temp in temperature(), t in any::<prop::sample::Index>()) {
        let target = Some(t.index(row.len()));
        let all_masked = row.iter().all(|x| *x == f32::NEG_INFINITY);
        match one_row_fwd(&row, temp, target) {
            Err(TmError::NoFiniteLogit { row: 0 }) => prop_assert!(all_masked),
            Err(e) => return Err(TestCaseError::fail(format!("unexpected error {e}"))),
            Ok(got) => {
                prop_assert!(!all_masked);
                check_row_against_reference(&row, temp, target, &got)?;
            }
        }
    }

    /// The gradient against the reference, elementwise, plus its exact invariants.
    #[test]
    fn gradient_matches_reference(
        row in finite_row(1..2500usize),
        temp in temperature(),
        t in any::<prop::sample::Index>(),
        g in (-3.0f64..3.0, -3.0f64..3.0, prop_oneof![Just(0.0f64), -1.0f64..1.0]),
    ) {
        prop_assume!(row.iter().any(|x| x.is_finite()));
        let (g_lp, g_h, g_lse) = g;
        let v = row.len();
        let target = t.index(v);
        let targets = [target as i32];
        let inputs = RowInputs { targets: Some(&targets), row_mask: None, temperature: Temperature::Scalar(temp) };
        let x = Mat::dense(&row, 1, v).unwrap();
        let f = fwd(portable(), x, &inputs).unwrap();
        let (gl, gh, gs) = ([g_lp as f32], [g_h as f32], [g_lse as f32]);
        let up = Upstream { g_logp: Some(&gl), g_entropy: Some(&gh), g_lse: Some(&gs) };
        let dx: Vec<f32> = bwd(portable(), x, &inputs, &f, up).unwrap();
        // The reference uses the f32-rounded upstream values the kernel sees.
        let (g_lp, g_h, g_lse) = (gl[0] as f64, gh[0] as f64, gs[0] as f64);
        let r = reference::row_stats(&row, temp, Some(target)).unwrap();
        let want = reference::row_grad(&row, temp, Some(target), g_lp, g_h, g_lse).unwrap();
        let tol = reference::stats_tolerance(&r, v, temp != 1.0);
        let z = reference::tempered(&row, temp);
        let inv_temp = (1.0f32 / temp) as f64;
        for j in 0..v {
            let tj = reference::grad_tolerance(&r, &tol, z[j], inv_temp, temp != 1.0, j == target, g_lp, g_h, g_lse, want[j]);
            prop_assert!((dx[j] as f64 - want[j]).abs() <= tj,
                "col {j}/{v}: got {:e} want {:e} tol {tj:e} (temp {temp})", dx[j], want[j]);
            if row[j] == f32::NEG_INFINITY {
                let exact = if j == target { (g_lp as f32) * (1.0 / temp) } else { 0.0 };
                prop_assert!(dx[j] == exact, "masked column {}: {} must be exactly {}", j, dx[j], exact);
            }
        }
    }

    /// A strided view (garbage NaN between rows) gives the same bits as the dense copy.
    #[test]
    fn strided_rows_equal_dense(rows in 1usize..6, v in 1usize..300, pad in 0usize..40, seed in any::<u64>()) {
        let dense: Vec<f32> = (0..rows).flat_map(|r| zipf_row(seed ^ r as u64, v)).collect();
        let stride = v + pad;
        let mut strided = vec![f32::NAN; rows * stride];
        for r in 0..rows {
            strided[r * stride..r * stride + v].copy_from_slice(&dense[r * v..(r + 1) * v]);
        }
        let targets: Vec<i32> = (0..rows).map(|r| ((seed as usize + r) % v) as i32).collect();
        let inputs = RowInputs { targets: Some(&targets), ..Default::default() };
        let a = fwd(portable(), Mat::dense(&dense, rows, v).unwrap(), &inputs).unwrap();
        let b = fwd(portable(), Mat::new(&strided, rows, v, stride).unwrap(), &inputs).unwrap();
        prop_assert_eq!(a.bits(), b.bits());
        prop_assert_eq!(b.status.nonfinite_rows, 0);
    }
}

#[test]
fn spec_worked_examples() {
    // logits.md §10.
    let f = one_row_fwd(&[1.0, 2.0, 3.0, 4.0], 1.0, Some(2)).unwrap();
    let near = |a: f32, b: f64| (a as f64 - b).abs() <= 1e-5 + 1e-6 * b.abs();
    assert!(near(f.lse[0], 4.440189698561196));
    assert!(near(f.logp[0], -1.440189698561196));
    assert!(near(f.entropy[0], 0.947536963975426));
    assert_eq!(f.max[0], 4.0);
    assert!(near(f.log_sum[0], 0.440189698561196));
    let x = [1.0f32, 2.0, 3.0, 4.0];
    let inputs = RowInputs { targets: Some(&[2]), ..Default::default() };
    let dx: Vec<f32> = bwd(
        portable(),
        Mat::dense(&x, 1, 4).unwrap(),
        &inputs,
        &f,
        Upstream { g_logp: Some(&[1.0]), g_entropy: Some(&[0.5]), g_lse: None },
    )
    .unwrap();
    let want = [0.007896879286467, -0.022106215905078, 0.821467665964279, -0.807258329345667];
    for (g, w) in dx.iter().zip(want) {
        assert!((*g as f64 - w).abs() <= 1e-6 + 1e-5 * w.abs(), "{g} vs {w}");
    }

    let row = [1.0f32, 2.0, f32::NEG_INFINITY, 4.0];
    let f = one_row_fwd(&row, 2.0, Some(1)).unwrap();
    assert!(near(f.lse[0], 2.464368784107945));
    assert!(near(f.logp[0], -1.464368784107945));
    assert!(near(f.entropy[0], 0.905959256479227));
    let inputs = RowInputs { targets: Some(&[1]), temperature: Temperature::Scalar(2.0), ..Default::default() };
    let dx: Vec<f32> = bwd(
        portable(),
        Mat::dense(&row, 1, 4).unwrap(),
        &inputs,
        &f,
        Upstream { g_logp: Some(&[1.0]), g_entropy: Some(&[0.5]), g_lse: None },
    )
    .unwrap();
    assert_eq!(dx[2], 0.0, "the -inf column's gradient is exactly 0 (either sign)");
}

/// The spec's default tolerance (`1e-5 + 1e-6·|ref|`) holds at common offsets 0, 1e2, 1e4,
/// where the uncentred entropy formula fails.
#[test]
fn offsets_within_the_spec_default_tolerance() {
    for (i, offset) in [0.0f32, 1e2, 1e4, -1e4].into_iter().enumerate() {
        for &v in &[4usize, 100, 4096, 32768] {
            let row: Vec<f32> = zipf_row(i as u64 * 7 + v as u64, v).into_iter().map(|x| x + offset).collect();
            let target = v / 3;
            let f = one_row_fwd(&row, 1.0, Some(target)).unwrap();
            let r = reference::row_stats(&row, 1.0, Some(target)).unwrap();
            for (name, g, w) in
                [("lse", f.lse[0], r.lse), ("logp", f.logp[0], r.logp), ("entropy", f.entropy[0], r.entropy)]
            {
                assert!((g as f64 - w).abs() <= 1e-5 + 1e-6 * w.abs(), "{name} at offset {offset}, V {v}: {g} vs {w}");
            }
        }
    }
}

/// Every row of the edge-vocabulary list against the reference (forward).
#[test]
fn edge_vocabularies() {
    for &v in EDGE_VOCABS {
        let row = zipf_row(v as u64, v);
        let target = v - 1;
        let f = one_row_fwd(&row, 0.7, Some(target)).unwrap();
        let r = reference::row_stats(&row, 0.7, Some(target)).unwrap();
        let tol = reference::stats_tolerance(&r, v, true);
        assert!((f.lse[0] as f64 - r.lse).abs() <= tol.lse, "V {v}");
        assert!((f.entropy[0] as f64 - r.entropy).abs() <= tol.entropy, "V {v}");
        assert!((f.logp[0] as f64 - r.logp).abs() <= tol.logp, "V {v}");
    }
}

#[test]
fn uniform_row_has_entropy_log_v() {
    for &v in &[1usize, 2, 3, 100, 2048, 5000] {
        let row = vec![0.25f32; v];
        let f = one_row_fwd(&row, 1.0, Some(0)).unwrap();
        let want = (v as f64).ln();
        assert!((f.entropy[0] as f64 - want).abs() <= 4.0 * f32::EPSILON as f64 * (1.0 + want), "V {v}");
        if v == 1 {
            assert_eq!(f.entropy[0], 0.0);
            assert_eq!(f.logp[0], 0.0);
        }
    }
}

// ---- the edge-case policies of the module docs ----------------------------------------

#[test]
fn nan_hidden_behind_a_larger_logit_is_reported() {
    let rows = [5.0f32, f32::NAN, 1.0, /* row 1 */ 1.0, 2.0, 3.0, /* row 2 */ 1.0, f32::INFINITY, 0.0];
    let inputs = RowInputs { targets: Some(&[0, 1, 2]), ..Default::default() };
    for b in tokenmath_core::Backend::all_supported() {
        let f = fwd(exec(b), Mat::dense(&rows, 3, 3).unwrap(), &inputs).unwrap();
        assert_eq!(f.status.nonfinite_rows, 2);
        assert_eq!(f.status.first_nonfinite_row, Some(0));
        for r in [0, 2] {
            assert!(f.lse[r].is_nan() && f.logp[r].is_nan() && f.entropy[r].is_nan() && f.max[r].is_nan());
            assert!(f.log_sum[r].is_nan());
        }
        assert!(f.lse[1].is_finite());
        let dx: Vec<f32> = bwd(exec(b), Mat::dense(&rows, 3, 3).unwrap(), &inputs, &f, Upstream::default()).unwrap();
        assert!(dx[..3].iter().chain(&dx[6..]).all(|g| g.is_nan()), "NaN rows give NaN gradient rows");
        assert!(dx[3..6].iter().all(|g| g.is_finite()));
    }
}

#[test]
fn all_masked_row_is_an_error() {
    let rows = [0.0f32, 1.0, f32::NEG_INFINITY, f32::NEG_INFINITY];
    let err = fwd(portable(), Mat::dense(&rows, 2, 2).unwrap(), &RowInputs::default()).unwrap_err();
    assert_eq!(err, TmError::NoFiniteLogit { row: 1 });
}

#[test]
fn masked_rows_are_not_read_and_give_zeros() {
    // Row 1 is full of NaN and has an invalid target and temperature, but is masked out.
    let rows = [1.0f32, 2.0, f32::NAN, f32::NAN, 3.0, 1.0];
    let targets = [1, 99, 0];
    let temps = [1.0f32, -1.0, 2.0];
    let mask = [1u8, 0, 7];
    let inputs = RowInputs { targets: Some(&targets), row_mask: Some(&mask), temperature: Temperature::PerRow(&temps) };
    let x = Mat::dense(&rows, 3, 2).unwrap();
    let f = fwd(portable(), x, &inputs).unwrap();
    assert_eq!(f.status.nonfinite_rows, 0);
    assert_eq!((f.lse[1], f.logp[1], f.entropy[1], f.max[1], f.log_sum[1]), (0.0, 0.0, 0.0, 0.0, 0.0));
    assert!(f.lse[2].is_finite());
    let up = Upstream { g_logp: Some(&[1.0, 1.0, 1.0]), g_entropy: Some(&[1.0, 1.0, 1.0]), g_lse: None };
    let dx: Vec<f32> = bwd(portable(), x, &inputs, &f, up).unwrap();
    assert_eq!(&dx[2..4], &[0.0, 0.0]);
}

#[test]
fn negative_target_means_no_target() {
    let row = [0.5f32, 1.5, -2.0];
    let inputs = RowInputs { targets: Some(&[-100]), ..Default::default() };
    let x = Mat::dense(&row, 1, 3).unwrap();
    let f = fwd(portable(), x, &inputs).unwrap();
    assert_eq!(f.logp[0], 0.0);
    let with_lp: Vec<f32> =
        bwd(portable(), x, &inputs, &f, Upstream { g_logp: Some(&[5.0]), ..Default::default() }).unwrap();
    assert!(with_lp.iter().all(|g| *g == 0.0), "g_logp is ignored for rows without a target");
}

#[test]
fn invalid_inputs_are_typed_errors_and_write_nothing() {
    let row = [0.5f32, 1.5, -2.0, 0.0];
    let x = Mat::dense(&row, 2, 2).unwrap();
    let call = |inputs: &RowInputs<'_>, n_out: usize| {
        let (mut lse, mut h) = (vec![POISON; n_out], vec![POISON; 2]);
        let r = logits::stats_fwd(
            portable(),
            x,
            inputs,
            FwdOut { lse: &mut lse, entropy: &mut h, logp: None, max: None, log_sum: None },
        );
        assert!(lse.iter().chain(&h).all(|v| v.to_bits() == POISON.to_bits()), "nothing written on a validation error");
        r
    };
    assert_eq!(
        call(&RowInputs { targets: Some(&[0, 2]), ..Default::default() }, 2),
        Err(TmError::TargetOutOfRange { row: 1, target: 2, vocab: 2 })
    );
    // 1e-45: its reciprocal overflows f32.
    for t in [0.0f32, -1.0, f32::NAN, f32::INFINITY, 1e-45, 2.9e-39] {
        assert!(matches!(
            call(&RowInputs { temperature: Temperature::Scalar(t), ..Default::default() }, 2),
            Err(TmError::InvalidTemperature { row: None, .. })
        ));
    }
    assert_eq!(
        call(&RowInputs { temperature: Temperature::PerRow(&[1.0, 0.0]), ..Default::default() }, 2),
        Err(TmError::InvalidTemperature { row: Some(1), value: 0.0 })
    );
    assert_eq!(
        call(&RowInputs { temperature: Temperature::PerRow(&[1.0]), ..Default::default() }, 2),
        Err(TmError::LengthMismatch { what: "temperature", expected: 2, got: 1 })
    );
    assert_eq!(call(&RowInputs::default(), 3), Err(TmError::LengthMismatch { what: "lse", expected: 2, got: 3 }));
    assert_eq!(
        call(&RowInputs { row_mask: Some(&[1]), ..Default::default() }, 2),
        Err(TmError::LengthMismatch { what: "row_mask", expected: 2, got: 1 })
    );
    // V == 0
    let empty: [f32; 0] = [];
    let (mut lse, mut h) = (vec![0.0; 3], vec![0.0; 3]);
    let r = logits::stats_fwd(
        portable(),
        Mat::dense(&empty, 3, 0).unwrap(),
        &RowInputs::default(),
        FwdOut { lse: &mut lse, entropy: &mut h, logp: None, max: None, log_sum: None },
    );
    assert_eq!(r, Err(TmError::EmptyVocab));
    // Views that do not fit their buffer.
    assert!(matches!(Mat::new(&row, 2, 3, 2), Err(TmError::StrideTooSmall { .. })));
    assert!(matches!(Mat::new(&row, 2, 2, 3), Err(TmError::LengthMismatch { .. })));
    assert!(matches!(Mat::new(&row, usize::MAX, 2, usize::MAX / 2), Err(TmError::SizeOverflow { .. })));
    // logp without targets
    let (mut lse, mut h, mut lp) = (vec![0.0; 2], vec![0.0; 2], vec![0.0; 2]);
    assert!(matches!(
        logits::stats_fwd(
            portable(),
            x,
            &RowInputs::default(),
            FwdOut { lse: &mut lse, entropy: &mut h, logp: Some(&mut lp), max: None, log_sum: None }
        ),
        Err(TmError::InvalidArgument(_))
    ));
}

#[test]
fn backward_validates_its_buffers() {
    let row = [0.5f32, 1.5, -2.0, 0.0];
    let x = Mat::dense(&row, 2, 2).unwrap();
    let (max, log_sum, h) = ([1.0f32; 2], [0.0f32; 2], [0.5f32; 2]);
    let mut dx = vec![0.0f32; 6];
    let r = logits::stats_bwd(
        portable(),
        x,
        &RowInputs::default(),
        Saved { max: &max, log_sum: &log_sum, entropy: &h },
        Upstream::default(),
        MatMut::dense(&mut dx, 2, 3).unwrap(),
    );
    assert!(matches!(r, Err(TmError::LengthMismatch { .. })));
    let mut dx = vec![0.0f32; 4];
    let r = logits::stats_bwd(
        portable(),
        x,
        &RowInputs::default(),
        Saved { max: &max, log_sum: &log_sum[..1], entropy: &h },
        Upstream::default(),
        MatMut::dense(&mut dx, 2, 2).unwrap(),
    );
    assert_eq!(r, Err(TmError::LengthMismatch { what: "log_sum", expected: 2, got: 1 }));
    let r = logits::stats_bwd(
        portable(),
        x,
        &RowInputs::default(),
        Saved { max: &max, log_sum: &log_sum, entropy: &h },
        Upstream { g_entropy: Some(&[1.0; 3]), ..Default::default() },
        MatMut::dense(&mut dx, 2, 2).unwrap(),
    );
    assert_eq!(r, Err(TmError::LengthMismatch { what: "g_entropy", expected: 2, got: 3 }));
}

/// A strided `dx` leaves the gap between rows untouched; the gradient of every row sums to
/// `g_lse·inv_temp` (the softmax and entropy parts sum to zero).
#[test]
fn strided_gradient_and_row_sums() {
    let (rows, v, stride) = (3usize, 300usize, 317usize);
    let x: Vec<f32> = (0..rows).flat_map(|r| zipf_row(r as u64 + 11, v)).collect();
    let targets = [5, 0, 299];
    let inputs = RowInputs { targets: Some(&targets), temperature: Temperature::Scalar(0.8), ..Default::default() };
    let xm = Mat::dense(&x, rows, v).unwrap();
    let f = fwd(portable(), xm, &inputs).unwrap();
    let (gl, gh, gs) = ([0.3f32, -1.0, 2.0], [0.5f32, 0.1, -0.7], [0.25f32, 0.0, 1.0]);
    let up = Upstream { g_logp: Some(&gl), g_entropy: Some(&gh), g_lse: Some(&gs) };
    let mut dx = vec![POISON; (rows - 1) * stride + v];
    logits::stats_bwd(portable(), xm, &inputs, f.saved(), up, MatMut::new(&mut dx, rows, v, stride).unwrap()).unwrap();
    for r in 0..rows {
        let row = &dx[r * stride..r * stride + v];
        let sum: f64 = row.iter().map(|&g| g as f64).sum();
        let want = gs[r] as f64 / 0.8;
        let scale: f64 = row.iter().map(|g| g.abs() as f64).sum::<f64>() + 1.0;
        assert!((sum - want).abs() <= 1e-5 * scale, "row {r}: sum {sum} want {want}");
        if r + 1 < rows {
            assert!(dx[r * stride + v..(r + 1) * stride].iter().all(|g| g.to_bits() == POISON.to_bits()));
        }
    }
}

/// How much of each tolerance the kernels use on realistic rows (printed with
/// `--nocapture`; the closing note quotes it). Asserts the formulas hold here too.
#[test]
fn tolerance_headroom() {
    let mut worst = [0.0f64; 5];
    for &v in EDGE_VOCABS.iter().chain(&[32768, 151_936]) {
        for (k, (offset, temp)) in [(0.0f32, 1.0f32), (1e4, 1.0), (30.0, 0.7), (-5.0, 1.9)].into_iter().enumerate() {
            let row: Vec<f32> = zipf_row(v as u64 * 31 + k as u64, v).into_iter().map(|x| x + offset).collect();
            let target = (v * 7 / 11).min(v - 1);
            let targets = [target as i32];
            let inputs = RowInputs { targets: Some(&targets), row_mask: None, temperature: Temperature::Scalar(temp) };
            let x = Mat::dense(&row, 1, v).unwrap();
            let f = fwd(portable(), x, &inputs).unwrap();
            let r = reference::row_stats(&row, temp, Some(target)).unwrap();
            let tol = reference::stats_tolerance(&r, v, temp != 1.0);
            let ratio = |g: f32, w: f64, t: f64| (g as f64 - w).abs() / t;
            worst[0] = worst[0].max(ratio(f.lse[0], r.lse, tol.lse));
            worst[1] = worst[1].max(ratio(f.logp[0], r.logp, tol.logp));
            worst[2] = worst[2].max(ratio(f.entropy[0], r.entropy, tol.entropy));
            worst[3] = worst[3].max(ratio(f.log_sum[0], r.log_s, tol.log_sum));
            let (g_lp, g_h) = (-1.0f32, 0.3f32);
            let dx: Vec<f32> = bwd(
                portable(),
                x,
                &inputs,
                &f,
                Upstream { g_logp: Some(&[g_lp]), g_entropy: Some(&[g_h]), g_lse: None },
            )
            .unwrap();
            let want = reference::row_grad(&row, temp, Some(target), g_lp as f64, g_h as f64, 0.0).unwrap();
            let z = reference::tempered(&row, temp);
            let inv_temp = (1.0f32 / temp) as f64;
            for j in 0..v {
                let t = reference::grad_tolerance(
                    &r,
                    &tol,
                    z[j],
                    inv_temp,
                    temp != 1.0,
                    j == target,
                    g_lp as f64,
                    g_h as f64,
                    0.0,
                    want[j],
                );
                worst[4] = worst[4].max((dx[j] as f64 - want[j]).abs() / t);
            }
        }
    }
    println!(
        "worst |error| / tolerance: lse {:.3}, logp {:.3}, entropy {:.3}, log_sum {:.3}, gradient {:.3}",
        worst[0], worst[1], worst[2], worst[3], worst[4]
    );
    assert!(worst.iter().all(|w| *w <= 1.0));
}

/// The backward reads `max` and `log_sum`, not the rounded `lse`: a row of eight equal
/// logits at `−3.4e38` (where `lse` rounds back to `m` and swallows `ln 8`) gets
/// `p = 1/8`, so `∂(−logp)/∂x = 0.125` off the target and `−0.875` at it, on every backend.
#[test]
fn gradient_of_a_row_at_minus_3_4e38() {
    let row = [-3.4e38f32; 8];
    let inputs = RowInputs { targets: Some(&[7]), ..Default::default() };
    let x = Mat::dense(&row, 1, 8).unwrap();
    for b in tokenmath_core::Backend::all_supported() {
        let f = fwd(exec(b), x, &inputs).unwrap();
        assert_eq!(f.max[0], -3.4e38);
        let dx: Vec<f32> =
            bwd(exec(b), x, &inputs, &f, Upstream { g_logp: Some(&[-1.0]), ..Default::default() }).unwrap();
        for (j, g) in dx.iter().enumerate() {
            let want = if j == 7 { -0.875 } else { 0.125 };
            assert!((*g as f64 - want).abs() <= 4e-7, "{}: column {j} gives {g}, want {want}", b.name());
        }
    }
}

/// At temperature 1 the gradient only depends on `z − m`: a row shifted by an exactly
/// representable `1e4` (values on the `2^-10` grid, so every `z − m` is exact in both) gives
/// the unshifted row's gradient bit for bit, and it is within the (offset-free) reference
/// tolerance. The `lse`-based backward was off by up to 4.3e-4 relative here.
#[test]
fn gradient_is_invariant_to_a_common_offset() {
    let v = 5000;
    let quantize = |x: f32| (x * 1024.0).round() / 1024.0;
    let base: Vec<f32> = zipf_row(77, v).into_iter().map(quantize).collect();
    let target = 1234;
    let inputs = RowInputs { targets: Some(&[target as i32]), ..Default::default() };
    let up = Upstream { g_logp: Some(&[-1.0]), g_entropy: Some(&[0.3]), g_lse: Some(&[0.1]) };
    for b in tokenmath_core::Backend::all_supported() {
        let grad = |row: &[f32]| {
            let x = Mat::dense(row, 1, v).unwrap();
            let f = fwd(exec(b), x, &inputs).unwrap();
            bwd::<f32, f32>(exec(b), x, &inputs, &f, up).unwrap()
        };
        let want = grad(&base);
        for offset in [1e4f32, -1e4] {
            let shifted: Vec<f32> = base.iter().map(|x| x + offset).collect();
            assert!(shifted.iter().zip(&base).all(|(s, x)| s - offset == *x), "the shift is exact");
            let got = grad(&shifted);
            assert_eq!(
                got.iter().map(|g| g.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|g| g.to_bits()).collect::<Vec<_>>(),
                "{} at offset {offset}",
                b.name()
            );
            let r = reference::row_stats(&shifted, 1.0, Some(target)).unwrap();
            let tol = reference::stats_tolerance(&r, v, false);
            let exact = reference::row_grad(&shifted, 1.0, Some(target), -1.0, 0.3, 0.1).unwrap();
            let z = reference::tempered(&shifted, 1.0);
            for j in 0..v {
                let t = reference::grad_tolerance(&r, &tol, z[j], 1.0, false, j == target, -1.0, 0.3, 0.1, exact[j]);
                assert!((got[j] as f64 - exact[j]).abs() <= t, "column {j}: {} vs {} (tol {t:e})", got[j], exact[j]);
            }
        }
    }
}
