//! Forward statistics: odd shapes, strides, dtypes, temperatures, targets, masks and
//! hostile values, against `core`.

use half::{bf16, f16};
use proptest::prelude::*;
use tokenmath_core::logits::Temperature;
use tokenmath_core::Mat;

use tokenmath_testutil::hostile_logit;

use crate::common::*;

/// Shapes around the vector width, the block (2048) and the tree: V = 1, V not a multiple
/// of 4 or of the block, a single row, many short rows, several blocks.
const SHAPES: &[(usize, usize)] =
    &[(1, 1), (1, 2), (3, 7), (2, 2047), (2, 2048), (3, 2049), (1, 4097), (2, 6145), (64, 33), (1, 20_000)];

fn check_all_dtypes(rows: usize, cols: usize, stride: usize, seed: u64) {
    let data = logits_f32(seed, rows, cols, stride);
    let tg = targets(seed, rows, cols);
    let mask: Vec<u8> = (0..rows).map(|r| (r % 7 != 3) as u8).collect();
    let temps: Vec<f32> = (0..rows).map(|r| [1.0f32, 0.7, 2.0, 0.35][r % 4]).collect();
    let cases = [
        ("plain", inputs(None, None, Temperature::Scalar(1.0))),
        ("targets, temperature 0.7", inputs(Some(&tg), None, Temperature::Scalar(0.7))),
        ("targets, mask, per-row temperature", inputs(Some(&tg), Some(&mask), Temperature::PerRow(&temps))),
    ];
    let b: Vec<bf16> = data.iter().map(|&v| bf16::from_f32(v)).collect();
    let h: Vec<f16> = data.iter().map(|&v| f16::from_f32(v)).collect();
    for (name, inp) in &cases {
        let what = format!("[{rows}, {cols}] stride {stride} {name}");
        assert_fwd_matches(Mat::new(&data, rows, cols, stride).unwrap(), inp, &format!("f32 {what}"));
        assert_fwd_matches(Mat::new(&b, rows, cols, stride).unwrap(), inp, &format!("bf16 {what}"));
        assert_fwd_matches(Mat::new(&h, rows, cols, stride).unwrap(), inp, &format!("f16 {what}"));
    }
}

#[test]
fn odd_shapes_dense() {
    for (i, &(rows, cols)) in SHAPES.iter().enumerate() {
        check_all_dtypes(rows, cols, cols, i as u64);
    }
}

#[test]
fn odd_shapes_strided() {
    // Odd strides (bf16 rows start mid-word: element-wise loads), and a stride that keeps
    // 4-element alignment (vector loads over rows with a gap).
    for (i, &(rows, cols)) in SHAPES.iter().enumerate() {
        check_all_dtypes(rows, cols, cols + 3, 100 + i as u64);
        check_all_dtypes(rows, cols, cols.next_multiple_of(4) + 8, 200 + i as u64);
    }
}

#[test]
fn masked_vocabulary_nan_rows_and_huge_offsets() {
    let cols = 3000;
    let mut rows: Vec<Vec<f32>> = Vec::new();
    let mut rng = XorShift::new(7);
    let base: Vec<f32> = (0..cols).map(|_| rng.uniform(-10.0, 10.0)).collect();
    // −inf-masked vocabulary (half the columns, and whole blocks).
    rows.push(
        base.iter().enumerate().map(|(c, &v)| if c % 2 == 1 || c < 2048 { f32::NEG_INFINITY } else { v }).collect(),
    );
    // A single finite logit.
    rows.push((0..cols).map(|c| if c == 2500 { 1.5 } else { f32::NEG_INFINITY }).collect());
    // NaN and +inf rows (results NaN, counted).
    rows.push(base.iter().enumerate().map(|(c, &v)| if c == 17 { f32::NAN } else { v }).collect());
    rows.push(base.iter().enumerate().map(|(c, &v)| if c == 2999 { f32::INFINITY } else { v }).collect());
    // NaN in an otherwise all −inf block.
    rows.push(
        (0..cols)
            .map(|c| {
                if c == 5 {
                    f32::NAN
                } else if c > 2048 {
                    0.5
                } else {
                    f32::NEG_INFINITY
                }
            })
            .collect(),
    );
    // Common offsets of 1e30, −1e30 and 3e4.
    for off in [1e30f32, -1e30, 3e4] {
        rows.push(base.iter().map(|&v| v + off).collect());
    }
    // Ties, signed zeros and denormals.
    rows.push((0..cols).map(|c| if c % 3 == 0 { -0.0 } else { 0.0 }).collect());
    rows.push((0..cols).map(|c| f32::from_bits(1 + c as u32 * 1000) - 2.0).collect());
    let n = rows.len();
    let data: Vec<f32> = rows.concat();
    let tg: Vec<i32> =
        (0..n as i32).map(|r| if r == 1 { 2500 } else { (r * 401) % (cols as i32 - 2049) + 2049 }).collect();
    for temp in [1.0f32, 0.6] {
        let inp = inputs(Some(&tg), None, Temperature::Scalar(temp));
        assert_fwd_matches(Mat::dense(&data, n, cols).unwrap(), &inp, &format!("hostile rows, temperature {temp}"));
    }
    let got = gpu_fwd(Mat::dense(&data, n, cols).unwrap(), &inputs(Some(&tg), None, Temperature::Scalar(1.0))).unwrap();
    assert_eq!(got.nonfinite_rows, 3);
    assert!(got.lse[2].is_nan() && got.entropy[3].is_nan() && got.logp[4].is_nan());
    assert!(got.entropy.iter().filter(|h| !h.is_nan()).all(|&h| h >= 0.0));
    assert!(got.logp.iter().filter(|l| !l.is_nan()).all(|&l| l <= 0.0));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn hostile_rows_match_core(
        rows in proptest::collection::vec(proptest::collection::vec(hostile_logit(), 1..2100), 1..4),
        temp in prop_oneof![Just(1.0f32), Just(0.7f32), 0.1f32..3.0],
        target_seed in any::<u64>(),
    ) {
        let cols = rows.iter().map(Vec::len).min().unwrap();
        let data: Vec<f32> = rows.iter().flat_map(|r| r[..cols].iter().copied()).collect();
        let n = rows.len();
        // Rows without any finite logit are an error in both; keep one finite logit per row.
        let mut data = data;
        for r in 0..n {
            if data[r * cols..(r + 1) * cols].iter().all(|v| !v.is_finite() && !v.is_nan()) {
                data[r * cols] = 0.0;
            }
        }
        let mut rng = XorShift::new(target_seed);
        let tg: Vec<i32> = (0..n).map(|_| rng.below(cols) as i32).collect();
        let inp = inputs(Some(&tg), None, Temperature::Scalar(temp));
        assert_fwd_matches(Mat::dense(&data, n, cols).unwrap(), &inp, "proptest hostile rows");
        let b: Vec<bf16> = data.iter().map(|&v| bf16::from_f32(v)).collect();
        assert_fwd_matches(Mat::dense(&b, n, cols).unwrap(), &inp, "proptest hostile rows, bf16");
        // f16 overflows beyond 65504 (to ±inf) and has subnormals below 6.1e-5: keep one
        // finite logit per row after the conversion.
        let mut h: Vec<f16> = data.iter().map(|&v| f16::from_f32(v)).collect();
        for r in 0..n {
            if !h[r * cols..(r + 1) * cols].iter().any(|v| v.is_finite() || v.is_nan()) {
                h[r * cols] = f16::from_f32(0.0);
            }
        }
        assert_fwd_matches(Mat::dense(&h, n, cols).unwrap(), &inp, "proptest hostile rows, f16");
    }
}

#[test]
fn f16_subnormals_infinities_and_nans_widen_exactly() {
    // Every f16 bit pattern once (NaNs, ±inf, subnormals, ±0), in rows of 4096, with a finite
    // logit at the front of each row so no row is all −inf.
    let cols = 4096;
    let mut data: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
    data.resize(data.len().next_multiple_of(cols), f16::from_f32(0.0));
    let rows = data.len() / cols;
    for r in 0..rows {
        data[r * cols] = f16::from_f32(1.0);
    }
    let inp = inputs(None, None, Temperature::Scalar(1.0));
    assert_fwd_matches(Mat::dense(&data, rows, cols).unwrap(), &inp, "every f16 bit pattern");
    // Rows without NaN/+inf: subnormal-only tails, ±0 and finite extremes.
    let tiny: Vec<f16> = (0..cols as u16).map(|b| f16::from_bits(b % 0x400)).collect();
    let big: Vec<f16> = (0..cols).map(|i| f16::from_f32(if i % 2 == 0 { 65504.0 } else { -65504.0 })).collect();
    let both = [tiny, big].concat();
    for temp in [1.0f32, 0.5, 3.0] {
        let inp = inputs(None, None, Temperature::Scalar(temp));
        assert_fwd_matches(Mat::dense(&both, 2, cols).unwrap(), &inp, &format!("f16 extremes, temperature {temp}"));
    }
}
