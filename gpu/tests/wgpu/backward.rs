//! Backward into every output dtype, out of place and in place, against `core`.

use half::{bf16, f16};
use tokenmath_core::logits::RowInputs;
use tokenmath_core::logits::{self, Temperature, Upstream};
use tokenmath_core::{DType, Exec, GradElem, LogitElem, Mat, MatMut};
use tokenmath_gpu::GpuError;
use tokenmath_reference as reference;

use crate::common::*;

struct Case {
    rows: usize,
    cols: usize,
    data: Vec<f32>,
    tg: Vec<i32>,
    mask: Vec<u8>,
    temps: Vec<f32>,
    g_lp: Vec<f32>,
    g_h: Vec<f32>,
    g_lse: Vec<f32>,
}

fn case(rows: usize, cols: usize, seed: u64) -> Case {
    let mut data = logits_f32(seed, rows, cols, cols);
    // A −inf-masked column and a NaN row.
    if cols > 2 {
        data[cols / 2] = f32::NEG_INFINITY;
    }
    if rows > 2 {
        data[2 * cols + 1] = f32::NAN;
    }
    let mut rng = XorShift::new(seed ^ 9);
    Case {
        rows,
        cols,
        tg: targets(seed, rows, cols),
        mask: (0..rows).map(|r| (r % 6 != 5) as u8).collect(),
        temps: (0..rows).map(|r| [1.0f32, 0.7, 1.6][r % 3]).collect(),
        g_lp: (0..rows).map(|_| rng.uniform(-1.0, 1.0)).collect(),
        g_h: (0..rows).map(|_| rng.uniform(-0.1, 0.1)).collect(),
        g_lse: (0..rows).map(|_| rng.uniform(-1e-3, 1e-3)).collect(),
        data,
    }
}

/// Spacing of `O` at `|v|` (what rounding an `f32` gradient to `O` may add).
fn ulp_of<O: GradElem>(v: f32) -> f64 {
    let v = v.abs() as f64;
    match O::DTYPE {
        DType::F32 => v * f64::powi(2.0, -23),
        DType::BF16 => v * f64::powi(2.0, -7) + 1e-38,
        DType::F16 => v * f64::powi(2.0, -10) + f64::powi(2.0, -24),
    }
}

/// GPU gradient against core's: equal bits, or (on a device without a fused `fma`) within
/// twice `tokenmath_reference::grad_tolerance` plus one spacing of the output type.
#[allow(clippy::too_many_arguments)]
fn assert_grad<O: GradElem>(c: &Case, rows_f32: &[f32], inp: &RowInputs<'_>, got: &[O], want: &[O], what: &str) {
    for r in 0..c.rows {
        let row = &rows_f32[r * c.cols..(r + 1) * c.cols];
        let temp = 1.0 / inp.inv_temp(r);
        let target = inp.target(r);
        let mut reference_row = None;
        for j in 0..c.cols {
            let (g, w) = (to_f32(got[r * c.cols + j]), to_f32(want[r * c.cols + j]));
            if same(g, w) {
                continue;
            }
            assert!(!bitwise_expected(), "{what}: [{r}, {j}] gpu {g:e} != core {w:e} on a device with a fused fma");
            assert!(inp.keep(r), "{what}: masked row {r} gives {g:e}");
            let (rr, dx) = reference_row.get_or_insert_with(|| {
                let rr = reference::row_stats(row, temp, target).expect("finite row");
                let dx = reference::row_grad(row, temp, target, c.g_lp[r] as f64, c.g_h[r] as f64, c.g_lse[r] as f64)
                    .unwrap();
                (rr, dx)
            });
            let stol = reference::stats_tolerance(rr, c.cols, inp.inv_temp(r) != 1.0);
            let z = reference::tempered(row, temp)[j];
            let g_lp = if target.is_some() { c.g_lp[r] as f64 } else { 0.0 };
            let tol = reference::grad_tolerance(
                rr,
                &stol,
                z,
                inp.inv_temp(r) as f64,
                inp.inv_temp(r) != 1.0,
                target == Some(j),
                g_lp,
                c.g_h[r] as f64,
                c.g_lse[r] as f64,
                dx[j],
            );
            let allowed = 2.0 * tol + ulp_of::<O>(w.abs().max(g.abs()));
            let err = (g as f64 - w as f64).abs();
            assert!(err <= allowed, "{what}: [{r}, {j}] gpu {g:e} core {w:e}, |diff| {err:e} > {allowed:e}");
        }
    }
}

fn check<T: LogitElem + GradElem, O: GradElem + PartialEq + std::fmt::Debug>(c: &Case, conv: fn(f32) -> T, what: &str) {
    let x_host: Vec<T> = c.data.iter().map(|&v| conv(v)).collect();
    let x_f32: Vec<f32> = x_host.iter().map(|&v| to_f32(v)).collect();
    let x = Mat::dense(&x_host, c.rows, c.cols).unwrap();
    let inp = inputs(Some(&c.tg), Some(&c.mask), Temperature::PerRow(&c.temps));
    let up = Upstream { g_logp: Some(&c.g_lp), g_entropy: Some(&c.g_h), g_lse: Some(&c.g_lse) };

    // core: forward for the saved statistics, then the backward.
    let fwd = cpu_fwd(x, &inp).unwrap();
    let saved = fwd.saved();
    let mut want = vec![O::from_f32(0.25); c.rows * c.cols];
    logits::stats_bwd(Exec::default(), x, &inp, saved, up, MatMut::dense(&mut want, c.rows, c.cols).unwrap()).unwrap();

    // GPU, from its own forward (kept on the device) and from uploaded statistics.
    let gpu = gpu();
    let gx = gpu.upload(x).unwrap();
    let st = gpu.stats_fwd(&gx, &inp).unwrap();
    for (src, stats) in [("device forward", st), ("uploaded statistics", gpu.upload_saved(saved).unwrap())] {
        let grad = gpu.stats_bwd::<O>(&gx, &inp, &stats, up).unwrap();
        let mut got = vec![O::from_f32(-7.0); c.rows * c.cols];
        gpu.download(&grad, MatMut::dense(&mut got, c.rows, c.cols).unwrap()).unwrap();
        assert_grad(c, &x_f32, &inp, &got, &want, &format!("{what} ({src})"));
    }

    // In place, over the logits' own dtype.
    if std::mem::size_of::<O>() == std::mem::size_of::<T>() && O::DTYPE == <T as GradElem>::DTYPE {
        let mut want_in = x_host.clone();
        logits::stats_bwd_inplace(
            Exec::default(),
            MatMut::dense(&mut want_in, c.rows, c.cols).unwrap(),
            &inp,
            saved,
            up,
        )
        .unwrap();
        let mut gx = gpu.upload(x).unwrap();
        let st = gpu.upload_saved(saved).unwrap();
        if std::mem::size_of::<T>() == 2 && c.cols % 2 == 1 && c.rows > 1 {
            // Rows would share 32-bit words: refused, not raced.
            let err = gpu.stats_bwd_inplace(&mut gx, &inp, &st, up).unwrap_err();
            assert!(matches!(err, GpuError::Unsupported(_)), "{what}: {err}");
            return;
        }
        gpu.stats_bwd_inplace(&mut gx, &inp, &st, up).unwrap();
        let mut got = vec![conv(-7.0); c.rows * c.cols];
        gpu.download(&gx, MatMut::dense(&mut got, c.rows, c.cols).unwrap()).unwrap();
        assert_grad(c, &x_f32, &inp, &got, &want_in, &format!("{what} in place"));
    }
}

#[test]
fn every_dtype_pair() {
    for (i, &(rows, cols)) in [(1, 1), (3, 7), (7, 2049), (2, 4100), (12, 33)].iter().enumerate() {
        let c = case(rows, cols, 40 + i as u64);
        let what = |t: &str, o: &str| format!("[{rows}, {cols}] {t} -> {o}");
        check::<f32, f32>(&c, |v| v, &what("f32", "f32"));
        check::<f32, bf16>(&c, |v| v, &what("f32", "bf16"));
        check::<f32, f16>(&c, |v| v, &what("f32", "f16"));
        check::<bf16, f32>(&c, bf16::from_f32, &what("bf16", "f32"));
        check::<bf16, bf16>(&c, bf16::from_f32, &what("bf16", "bf16"));
        check::<f16, f32>(&c, f16::from_f32, &what("f16", "f32"));
        check::<f16, f16>(&c, f16::from_f32, &what("f16", "f16"));
    }
}

#[test]
fn strided_input_and_rejected_layouts() {
    let (rows, cols, stride) = (3, 3001, 3005);
    let data = logits_f32(5, rows, cols, stride);
    let x = Mat::new(&data, rows, cols, stride).unwrap();
    let inp = inputs(None, None, Temperature::Scalar(1.0));
    let fwd = cpu_fwd(x, &inp).unwrap();
    let saved = fwd.saved();
    let up = Upstream { g_logp: None, g_entropy: Some(&[0.5, -0.5, 1.0]), g_lse: None };
    let mut want = vec![0.0f32; rows * cols];
    logits::stats_bwd(Exec::default(), x, &inp, saved, up, MatMut::dense(&mut want, rows, cols).unwrap()).unwrap();
    let gpu = gpu();
    let gx = gpu.upload(x).unwrap();
    let st = gpu.upload_saved(saved).unwrap();
    let grad = gpu.stats_bwd::<f32>(&gx, &inp, &st, up).unwrap();
    let mut got = vec![9.0f32; rows * cols];
    gpu.download(&grad, MatMut::dense(&mut got, rows, cols).unwrap()).unwrap();
    let dense: Vec<f32> = (0..rows).flat_map(|r| x.row(r).to_vec()).collect();
    let c = Case {
        rows,
        cols,
        data: dense.clone(),
        tg: vec![-1; rows],
        mask: vec![1; rows],
        temps: vec![1.0; rows],
        g_lp: vec![0.0; rows],
        g_h: vec![0.5, -0.5, 1.0],
        g_lse: vec![0.0; rows],
    };
    assert_grad(&c, &dense, &inp, &got, &want, "strided f32");

    // bf16 in place with an odd stride would share words between rows: refused.
    let b: Vec<bf16> = data.iter().map(|&v| bf16::from_f32(v)).collect();
    let mut gb = gpu.upload(Mat::new(&b, rows, cols, stride).unwrap()).unwrap();
    assert!(matches!(gpu.stats_bwd_inplace(&mut gb, &inp, &st, up), Err(GpuError::Unsupported(_))));
    // Mismatched upstream lengths: core's error.
    let short = Upstream { g_logp: None, g_entropy: Some(&[1.0]), g_lse: None };
    assert!(matches!(gpu.stats_bwd::<f32>(&gx, &inp, &st, short), Err(GpuError::Core(_))));
}

/// The backward reads `max` and `log_sum`, not the rounded `lse`: eight equal logits at
/// `−3.4e38` (where `lse` rounds back to the maximum) give `p = 1/8`.
#[test]
fn gradient_of_a_row_at_minus_3_4e38() {
    let row = [-3.4e38f32; 8];
    let x = Mat::dense(&row, 1, 8).unwrap();
    let inp = inputs(Some(&[7]), None, Temperature::Scalar(1.0));
    let gpu = gpu();
    let gx = gpu.upload(x).unwrap();
    let st = gpu.stats_fwd(&gx, &inp).unwrap();
    let up = Upstream { g_logp: Some(&[-1.0]), ..Default::default() };
    let grad = gpu.stats_bwd::<f32>(&gx, &inp, &st, up).unwrap();
    let mut got = vec![f32::NAN; 8];
    gpu.download(&grad, MatMut::dense(&mut got, 1, 8).unwrap()).unwrap();
    for (j, g) in got.iter().enumerate() {
        let want = if j == 7 { -0.875 } else { 0.125 };
        assert!((*g as f64 - want).abs() <= 4e-7, "column {j} gives {g}, want {want}");
    }
}
