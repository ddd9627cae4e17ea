//! The fast mode ([`GpuMode::Fast`]) against the `f64` reference, under the error bound of
//! `tokenmath_reference::gpu_fast`, and its determinism (cube size, batch composition, row
//! order, repeated launches).

use half::{bf16, f16};
use tokenmath_core::logits::{RowInputs, Temperature, Upstream};
use tokenmath_core::{DType, GradElem, LogitElem, Mat, MatMut, TmError};
use tokenmath_gpu::{DeviceKind, Gpu, GpuError, GpuMode, GpuStats};
use tokenmath_reference::gpu_fast::{fast_grad_tolerance, fast_stats_tolerance};
use tokenmath_reference::{row_stats, tempered};

use crate::common::*;

fn read(gpu: &Gpu, st: &GpuStats, rows: usize, targets: bool) -> Result<Fwd, GpuError> {
    let mut s = Fwd::poisoned(rows);
    s.nonfinite_rows = gpu.read_stats(st, s.out(targets))?.nonfinite_rows;
    Ok(s)
}

/// Half the spacing of `O` at `|v|` (what rounding the `f32` gradient to `O` adds), with the
/// type's subnormal step as floor.
fn rounding_of<O: GradElem>(v: f64) -> f64 {
    let v = v.abs();
    match O::DTYPE {
        DType::F32 => v * f64::powi(2.0, -24),
        DType::BF16 => v * f64::powi(2.0, -8) + f64::powi(2.0, -133),
        DType::F16 => v * f64::powi(2.0, -11) + f64::powi(2.0, -25),
    }
}

/// A batch with every hostile row kind: offsets up to 1e4 (from `logits_f32`) and 1e30,
/// denormal logits, a `−inf` masked column in each row, a row with a NaN, a row with `+inf`,
/// a row that is all `−inf` but one column, and `V = 1` among the shapes.
struct Case {
    rows: usize,
    cols: usize,
    data: Vec<f32>,
    targets: Vec<i32>,
    mask: Vec<u8>,
    temps: Vec<f32>,
    g_lp: Vec<f32>,
    g_h: Vec<f32>,
    g_lse: Vec<f32>,
}

fn case(rows: usize, cols: usize, seed: u64) -> Case {
    let mut data = logits_f32(seed, rows, cols, cols);
    // A masked column in every row (never column 0, the one row 6 keeps).
    for r in 0..rows.min(if cols > 1 { rows } else { 0 }) {
        data[r * cols + 1 + (r * 7) % (cols - 1)] = f32::NEG_INFINITY;
    }
    if rows > 3 && cols > 2 {
        data[2 * cols + 1] = f32::NAN;
        data[3 * cols + cols - 1] = f32::INFINITY;
    }
    if rows > 6 {
        for c in 1..cols {
            data[6 * cols + c] = f32::NEG_INFINITY;
        }
    }
    // An offset of 1e30 (row 4) and logits among the denormals (row 5).
    if rows > 5 {
        for c in 0..cols {
            let v = &mut data[4 * cols + c];
            if v.is_finite() {
                *v = 1e30 + *v * 1e24;
            }
            let v = &mut data[5 * cols + c];
            if v.is_finite() {
                *v *= 1e-40;
            }
        }
    }
    let mut targets = targets(seed, rows, cols);
    // Never a target on a masked column (its logp is −inf: tested with the errors).
    for (r, t) in targets.iter_mut().enumerate() {
        if *t >= 0 && data[r * cols + *t as usize] == f32::NEG_INFINITY {
            *t = if r == 6 { 0 } else { (*t + 1) % cols as i32 };
        }
    }
    let mut rng = XorShift::new(seed ^ 77);
    Case {
        rows,
        cols,
        targets,
        mask: (0..rows).map(|r| (r % 9 != 8) as u8).collect(),
        temps: (0..rows).map(|r| [1.0f32, 0.7, 1.6][r % 3]).collect(),
        g_lp: (0..rows).map(|_| rng.uniform(-1.0, 1.0)).collect(),
        g_h: (0..rows).map(|_| rng.uniform(-0.1, 0.1)).collect(),
        g_lse: (0..rows).map(|_| rng.uniform(-1e-2, 1e-2)).collect(),
        data,
    }
}

impl Case {
    fn inputs(&self, per_row_temps: bool) -> RowInputs<'_> {
        RowInputs {
            targets: Some(&self.targets),
            row_mask: Some(&self.mask),
            temperature: if per_row_temps { Temperature::PerRow(&self.temps) } else { Temperature::Scalar(1.0) },
        }
    }
    fn up(&self) -> Upstream<'_> {
        Upstream { g_logp: Some(&self.g_lp), g_entropy: Some(&self.g_h), g_lse: Some(&self.g_lse) }
    }
    fn temp(&self, r: usize, per_row: bool) -> f32 {
        if per_row {
            self.temps[r]
        } else {
            1.0
        }
    }
}

/// Checks the fast statistics of every row of `c` (as the `T` values the GPU saw).
fn check_stats(what: &str, c: &Case, rowsf: &[Vec<f32>], s: &Fwd, per_row: bool) {
    let mut nonfinite = 0;
    for (r, row) in rowsf.iter().enumerate() {
        let w = format!("{what}: row {r}");
        if c.mask[r] == 0 {
            for (name, v) in [("lse", s.lse[r]), ("entropy", s.entropy[r]), ("logp", s.logp[r])] {
                assert_eq!(v.to_bits(), 0, "{w}: masked row's {name} is {v}");
            }
            continue;
        }
        let temp = c.temp(r, per_row);
        let target = usize::try_from(c.targets[r]).ok();
        let Some(rr) = row_stats(row, temp, target) else {
            nonfinite += 1;
            assert!(s.lse[r].is_nan() && s.entropy[r].is_nan() && s.logp[r].is_nan(), "{w}: non-finite row not NaN");
            continue;
        };
        let z_t = target.map_or(0.0, |t| tempered(row, temp)[t]);
        let tol = fast_stats_tolerance(&rr, c.cols, z_t, temp != 1.0);
        let want = [rr.lse, if target.is_some() { rr.logp } else { 0.0 }, rr.entropy];
        for (i, name) in ["lse", "logp", "entropy"].into_iter().enumerate() {
            let got = [s.lse[r], s.logp[r], s.entropy[r]][i] as f64;
            let err = (got - want[i]).abs();
            assert!(err <= tol[i], "{w}: {name} {got:e} vs {:e}: |error| {err:e} > {:e}", want[i], tol[i]);
        }
        assert!(s.entropy[r] >= 0.0 && s.logp[r] <= 0.0, "{w}: entropy {} logp {}", s.entropy[r], s.logp[r]);
        // The saved statistics: the exact maximum, and `lse = max + log_sum`.
        let max_tol = if temp != 1.0 { rr.m.abs() * f64::powi(2.0, -24) + f64::powi(2.0, -149) } else { 0.0 };
        assert!((s.max[r] as f64 - rr.m).abs() <= max_tol, "{w}: max {} vs {}", s.max[r], rr.m);
        assert!((s.log_sum[r] as f64 - rr.log_s).abs() <= tol[3], "{w}: log_sum {} vs {}", s.log_sum[r], rr.log_s);
    }
    assert_eq!(s.nonfinite_rows, nonfinite, "{what}: non-finite rows");
}

/// Checks a fast gradient (`O` elements, dense `[rows, cols]`) of every row of `c`.
fn check_grad<O: GradElem>(what: &str, c: &Case, rowsf: &[Vec<f32>], dx: &[O], per_row: bool) {
    for r in 0..c.rows {
        let got = |j: usize| to_f32(dx[r * c.cols + j]) as f64;
        if c.mask[r] == 0 {
            assert!((0..c.cols).all(|j| got(j) == 0.0), "{what}: masked row {r} has a gradient");
            continue;
        }
        let temp = c.temp(r, per_row);
        let target = usize::try_from(c.targets[r]).ok();
        let (g_lp, g_h, g_lse) = (c.g_lp[r] as f64, c.g_h[r] as f64, c.g_lse[r] as f64);
        let Some(want) = tokenmath_reference::row_grad(&rowsf[r], temp, target, g_lp, g_h, g_lse) else {
            assert!((0..c.cols).all(|j| got(j).is_nan()), "{what}: row {r} (non-finite) has a non-NaN gradient");
            continue;
        };
        let rr = row_stats(&rowsf[r], temp, target).expect("finite row");
        let z = tempered(&rowsf[r], temp);
        let inv_temp = (1.0f32 / temp) as f64;
        let g_lp = if target.is_some() { g_lp } else { 0.0 };
        for j in 0..c.cols {
            let tol = fast_grad_tolerance(&rr, c.cols, z[j], inv_temp, g_lp, g_h, g_lse, temp != 1.0)
                + rounding_of::<O>(want[j]);
            let err = (got(j) - want[j]).abs();
            assert!(err <= tol, "{what}: row {r} col {j}: {:e} vs {:e}: |error| {err:e} > {tol:e}", got(j), want[j]);
        }
    }
}

fn run<T: LogitElem + GradElem, O: GradElem>(label: &str, rows: usize, cols: usize, seed: u64, per_row: bool) {
    let gpu = gpu();
    let c = case(rows, cols, seed);
    let xs: Vec<T> = c.data.iter().map(|&v| <T as GradElem>::from_f32(v)).collect();
    let rowsf: Vec<Vec<f32>> =
        (0..rows).map(|r| xs[r * cols..(r + 1) * cols].iter().map(|&v| LogitElem::to_f32(v)).collect()).collect();
    let what = format!("{label} [{rows}, {cols}] per-row temperature {per_row}");
    let inputs = c.inputs(per_row);
    let x = gpu.upload(Mat::dense(&xs, rows, cols).unwrap()).unwrap();

    // Forward.
    let st = gpu.stats_fwd_mode(&x, &inputs, GpuMode::Fast).unwrap();
    let s = read(gpu, &st, rows, true).unwrap();
    check_stats(&format!("{what}: forward"), &c, &rowsf, &s, per_row);

    // Backward out of place, from the fast statistics, into O.
    let g = gpu.stats_bwd_mode::<O>(&x, &inputs, &st, c.up(), GpuMode::Fast).unwrap();
    let mut dx = vec![O::from_f32(POISON); rows * cols];
    gpu.download(&g, MatMut::dense(&mut dx, rows, cols).unwrap()).unwrap();
    check_grad(&format!("{what}: backward"), &c, &rowsf, &dx, per_row);

    // In place (T == O only), from the same statistics: the same bits as out of place.
    // 16-bit rows of odd length would share words: refused, as in the canonical mode.
    let same_type = <T as GradElem>::DTYPE == O::DTYPE;
    if same_type && O::DTYPE != DType::F32 && cols % 2 == 1 && rows > 1 {
        let mut xi = gpu.upload(Mat::dense(&xs, rows, cols).unwrap()).unwrap();
        let err = gpu.stats_fwd_bwd_inplace(&mut xi, &inputs, c.up(), GpuMode::Fast);
        assert!(matches!(err, Err(GpuError::Unsupported(_))), "{what}: odd 16-bit stride in place");
    } else if same_type {
        let mut xi = gpu.upload(Mat::dense(&xs, rows, cols).unwrap()).unwrap();
        gpu.stats_bwd_inplace_mode(&mut xi, &inputs, &st, c.up(), GpuMode::Fast).unwrap();
        let mut dxi = vec![O::from_f32(POISON); rows * cols];
        gpu.download(&xi, MatMut::dense(&mut dxi, rows, cols).unwrap()).unwrap();
        assert!(bits(&dxi) == bits(&dx), "{what}: in place differs from out of place");

        // Fused: one launch, the same statistics and gradient bits.
        let mut xf = gpu.upload(Mat::dense(&xs, rows, cols).unwrap()).unwrap();
        let stf = gpu.stats_fwd_bwd_inplace(&mut xf, &inputs, c.up(), GpuMode::Fast).unwrap();
        let sf = read(gpu, &stf, rows, true).unwrap();
        for (a, b) in [(&sf.lse, &s.lse), (&sf.entropy, &s.entropy), (&sf.logp, &s.logp), (&sf.max, &s.max)] {
            assert!(bits(a) == bits(b), "{what}: fused statistics differ from the forward's");
        }
        let mut dxf = vec![O::from_f32(POISON); rows * cols];
        gpu.download(&xf, MatMut::dense(&mut dxf, rows, cols).unwrap()).unwrap();
        assert!(bits(&dxf) == bits(&dx), "{what}: fused gradient differs from the backward's");
    }
}

fn bits<T: bytemuck::Pod>(v: &[T]) -> Vec<u8> {
    bytemuck::cast_slice(v).to_vec()
}

#[test]
fn fast_mode_matches_the_reference_f32() {
    // Row lengths around the granule (8), the segment (2048) and beyond a group of segments.
    for (rows, cols) in [(9, 1), (9, 7), (10, 8), (9, 2049), (4, 5000)] {
        run::<f32, f32>("f32", rows, cols, 11 + cols as u64, false);
        run::<f32, f32>("f32", rows, cols, 12 + cols as u64, true);
    }
    run::<f32, bf16>("f32→bf16", 9, 333, 5, true);
}

#[test]
fn fast_mode_matches_the_reference_bf16_f16() {
    for (rows, cols) in [(9, 3), (9, 64), (9, 2050)] {
        run::<bf16, bf16>("bf16", rows, cols, 21 + cols as u64, true);
        run::<f16, f16>("f16", rows, cols, 31 + cols as u64, true);
    }
    run::<bf16, f32>("bf16→f32", 9, 1000, 41, false);
}

#[test]
fn fast_mode_is_deterministic() {
    // Same bits for every cube size, batch composition, row order and launch.
    let (rows, cols) = (12, 4500);
    let c = case(rows, cols, 99);
    let xs: Vec<bf16> = c.data.iter().map(|&v| bf16::from_f32(v)).collect();
    let inputs = c.inputs(true);
    let fwd = |threads: u32, order: &[usize]| -> Vec<u8> {
        let mut gpu = Gpu::open(DeviceKind::Wgpu).unwrap();
        gpu.set_fast_threads(threads).unwrap();
        let data: Vec<bf16> = order.iter().flat_map(|&r| xs[r * cols..(r + 1) * cols].to_vec()).collect();
        let tg: Vec<i32> = order.iter().map(|&r| c.targets[r]).collect();
        let mk: Vec<u8> = order.iter().map(|&r| c.mask[r]).collect();
        let tp: Vec<f32> = order.iter().map(|&r| c.temps[r]).collect();
        let inp = RowInputs { targets: Some(&tg), row_mask: Some(&mk), temperature: Temperature::PerRow(&tp) };
        let x = gpu.upload(Mat::dense(&data, order.len(), cols).unwrap()).unwrap();
        let st = gpu.stats_fwd_mode(&x, &inp, GpuMode::Fast).unwrap();
        let s = read(&gpu, &st, order.len(), true).unwrap();
        // Back in the original order, row by row.
        let mut out = vec![0u8; 0];
        let mut by_row: Vec<(usize, [f32; 4])> =
            order.iter().enumerate().map(|(i, &r)| (r, [s.lse[i], s.entropy[i], s.logp[i], s.log_sum[i]])).collect();
        by_row.sort_by_key(|p| p.0);
        for (_, v) in by_row {
            out.extend(bits(&v));
        }
        out
    };
    let all: Vec<usize> = (0..rows).collect();
    let want = fwd(256, &all);
    let _ = inputs;
    assert!(fwd(256, &all) == want, "two launches differ");
    assert!(fwd(32, &all) == want, "32 threads per cube differ");
    assert!(fwd(1024, &all) == want, "1024 threads per cube differ");
    let reversed: Vec<usize> = (0..rows).rev().collect();
    assert!(fwd(64, &reversed) == want, "reversed row order differs");
    let half: Vec<usize> = (0..rows).step_by(2).collect();
    let got = fwd(128, &half);
    let want_half: Vec<u8> = half.iter().flat_map(|&r| want[r * 16..(r + 1) * 16].to_vec()).collect();
    assert!(got == want_half, "a sub-batch differs");
}

#[test]
fn fast_mode_errors_and_edges() {
    let gpu = gpu();
    // A row without a finite logit: NoFiniteLogit at the read, as in the canonical mode.
    let x = [0.5f32, 1.0, f32::NEG_INFINITY, f32::NEG_INFINITY];
    let gx = gpu.upload(Mat::dense(&x, 2, 2).unwrap()).unwrap();
    let st = gpu.stats_fwd_mode(&gx, &RowInputs::default(), GpuMode::Fast).unwrap();
    match read(gpu, &st, 2, false) {
        Err(GpuError::Core(TmError::NoFiniteLogit { row: 1 })) => {}
        other => panic!("expected NoFiniteLogit for row 1, got {:?}", other.map(|s| s.lse)),
    }
    // Validation before launch: a target out of range, a bad temperature.
    let tg = [5i32, 0];
    let inputs = RowInputs { targets: Some(&tg), ..Default::default() };
    assert!(matches!(
        gpu.stats_fwd_mode(&gx, &inputs, GpuMode::Fast),
        Err(GpuError::Core(TmError::TargetOutOfRange { .. }))
    ));
    let bad = RowInputs { temperature: Temperature::Scalar(0.0), ..Default::default() };
    assert!(matches!(
        gpu.stats_fwd_mode(&gx, &bad, GpuMode::Fast),
        Err(GpuError::Core(TmError::InvalidTemperature { .. }))
    ));
    // A masked (−inf) target: logp = −inf, as the canonical mode reports it.
    let x = [0.5f32, f32::NEG_INFINITY, 2.0];
    let tg = [1i32];
    let inputs = RowInputs { targets: Some(&tg), ..Default::default() };
    let gx = gpu.upload(Mat::dense(&x, 1, 3).unwrap()).unwrap();
    let canonical = read(gpu, &gpu.stats_fwd(&gx, &inputs).unwrap(), 1, true);
    let fast = read(gpu, &gpu.stats_fwd_mode(&gx, &inputs, GpuMode::Fast).unwrap(), 1, true);
    match (canonical, fast) {
        (Ok(c), Ok(f)) => assert_eq!(c.logp[0], f.logp[0], "masked target's logp"),
        (Err(c), Err(f)) => assert_eq!(c, f, "masked target's error"),
        (c, f) => panic!("modes disagree on a masked target: {:?} vs {:?}", c.map(|s| s.logp), f.map(|s| s.logp)),
    }
    // An empty batch.
    let empty: [f32; 0] = [];
    let gx = gpu.upload(Mat::dense(&empty, 0, 4).unwrap()).unwrap();
    let st = gpu.stats_fwd_mode(&gx, &RowInputs::default(), GpuMode::Fast).unwrap();
    assert_eq!(read(gpu, &st, 0, false).unwrap().nonfinite_rows, 0);
}
