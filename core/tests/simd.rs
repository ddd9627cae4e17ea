//! The second link of the oracle chain: every SIMD backend against the portable path,
//! **bitwise**, for every input and output dtype, dense and in place.

mod common;

use common::*;
use proptest::prelude::*;
use tokenmath_core::logits::{self, RowInputs, Temperature, Upstream};
use tokenmath_core::{bf16, f16, Backend, GradElem, LogitElem, Mat, MatMut};

fn simd_backends() -> Vec<Backend> {
    let simd: Vec<Backend> = Backend::all_supported().filter(|b| *b != Backend::Portable).collect();
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("fma")
        && std::is_x86_feature_detected!("f16c")
    {
        assert!(simd.contains(&Backend::Avx2Fma), "AVX2 is present but its backend is not offered");
    }
    simd
}

fn grad_bits<O: GradElem>(v: &[O]) -> Vec<u64> {
    bytemuck::cast_slice::<O, u8>(v)
        .chunks(std::mem::size_of::<O>())
        .map(|c| c.iter().fold(0u64, |a, b| a << 8 | *b as u64))
        .collect()
}

/// Forward, backward into f32/bf16/f16, and backward in place: each backend vs portable.
fn compare_all<T: LogitElem + GradElem>(x: &[T], rows: usize, v: usize, inputs: &RowInputs<'_>, up: Upstream<'_>) {
    let xm = Mat::dense(x, rows, v).unwrap();
    let want = fwd(portable(), xm, inputs).unwrap();
    let want_f32: Vec<f32> = bwd(portable(), xm, inputs, &want, up).unwrap();
    let want_bf16: Vec<bf16> = bwd(portable(), xm, inputs, &want, up).unwrap();
    let want_f16: Vec<f16> = bwd(portable(), xm, inputs, &want, up).unwrap();
    // Gradients are computed in f32 and rounded once.
    assert_eq!(grad_bits(&want_bf16), grad_bits(&want_f32.iter().map(|g| bf16::from_f32(*g)).collect::<Vec<_>>()));
    assert_eq!(grad_bits(&want_f16), grad_bits(&want_f32.iter().map(|g| f16::from_f32(*g)).collect::<Vec<_>>()));
    let inplace = |e| {
        let mut buf = x.to_vec();
        logits::stats_bwd_inplace(e, MatMut::dense(&mut buf, rows, v).unwrap(), inputs, want.saved(), up).unwrap();
        buf
    };
    let want_inplace = inplace(portable());
    let want_inplace_ref: Vec<T> = bwd(portable(), xm, inputs, &want, up).unwrap();
    assert_eq!(grad_bits(&want_inplace), grad_bits(&want_inplace_ref), "in place == separate buffer");
    for b in simd_backends() {
        let got = fwd(exec(b), xm, inputs).unwrap();
        assert_eq!(got.bits(), want.bits(), "{} forward, V = {v}", b.name());
        assert_eq!(got.status, want.status);
        let g: Vec<f32> = bwd(exec(b), xm, inputs, &want, up).unwrap();
        assert_eq!(grad_bits(&g), grad_bits(&want_f32), "{} backward f32, V = {v}", b.name());
        let g: Vec<bf16> = bwd(exec(b), xm, inputs, &want, up).unwrap();
        assert_eq!(grad_bits(&g), grad_bits(&want_bf16), "{} backward bf16, V = {v}", b.name());
        let g: Vec<f16> = bwd(exec(b), xm, inputs, &want, up).unwrap();
        assert_eq!(grad_bits(&g), grad_bits(&want_f16), "{} backward f16, V = {v}", b.name());
        assert_eq!(grad_bits(&inplace(exec(b))), grad_bits(&want_inplace), "{} in place, V = {v}", b.name());
    }
}

fn rows_of<T: LogitElem + GradElem>(x: &[f32]) -> Vec<T> {
    x.iter().map(|&v| T::from_f32(v)).collect()
}

#[test]
fn edge_vocabularies_all_dtypes() {
    for &v in EDGE_VOCABS {
        let rows = 3;
        let mut x: Vec<f32> = (0..rows).flat_map(|r| zipf_row(v as u64 * 3 + r as u64, v)).collect();
        // Row 1: a masked-vocabulary stripe; row 2 a large offset.
        for c in (0..v).step_by(3) {
            x[v + c] = f32::NEG_INFINITY;
        }
        x[v] = 1.0;
        for c in 0..v {
            x[2 * v + c] += 1e4;
        }
        let targets = [0, (v / 2) as i32, (v - 1) as i32];
        let (gl, gh, gs) = ([0.5f32, -1.0, 1.5], [0.25f32, 0.0, -0.75], [0.0f32, 0.5, 1.0]);
        let up = Upstream { g_logp: Some(&gl), g_entropy: Some(&gh), g_lse: Some(&gs) };
        for temp in [1.0f32, 0.6] {
            let inputs = RowInputs { targets: Some(&targets), row_mask: None, temperature: Temperature::Scalar(temp) };
            compare_all::<f32>(&x, rows, v, &inputs, up);
            compare_all::<bf16>(&rows_of(&x), rows, v, &inputs, up);
            compare_all::<f16>(
                &rows_of(&x.iter().map(|x| x - 1e4 * (*x > 5e3) as u8 as f32).collect::<Vec<_>>()),
                rows,
                v,
                &inputs,
                up,
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn hostile_rows_bitwise(
        x in proptest::collection::vec(hostile_logit(), 1..1500usize),
        temp in temperature(),
        t in any::<prop::sample::Index>(),
        g in (-3.0f32..3.0, -3.0f32..3.0, -1.0f32..1.0),
    ) {
        let v = x.len();
        let targets = [t.index(v) as i32];
        let inputs = RowInputs { targets: Some(&targets), row_mask: None, temperature: Temperature::Scalar(temp) };
        let (gl, gh, gs) = ([g.0], [g.1], [g.2]);
        let up = Upstream { g_logp: Some(&gl), g_entropy: Some(&gh), g_lse: Some(&gs) };
        // An all-masked row is an error on every path; the rest must agree bitwise.
        if x.iter().all(|v| *v == f32::NEG_INFINITY) {
            for b in Backend::all_supported() {
                prop_assert!(fwd(exec(b), Mat::dense(&x, 1, v).unwrap(), &inputs).is_err());
            }
            return Ok(());
        }
        compare_all::<f32>(&x, 1, v, &inputs, up);
        compare_all::<bf16>(&rows_of(&x), 1, v, &inputs, up);
        compare_all::<f16>(&rows_of(&x), 1, v, &inputs, up);
    }
}

/// A separate gradient of at least 32 MiB is written with non-temporal stores on the AVX-512
/// backend: the same bits as the portable path (the f32 output here, 33.8 MB; the bf16 one,
/// half that, takes the ordinary stores; `x86_avx512`'s unit test covers every output dtype),
/// with a temperature, targets in every row and an odd row length (so rows start at every
/// alignment).
#[test]
fn large_separate_gradient_bitwise() {
    let (rows, v) = (129usize, 65_537usize);
    let x: Vec<f32> = (0..rows * v).map(|i| ((i * 7919 % 1013) as f32 - 506.0) * 0.011).collect();
    let targets: Vec<i32> = (0..rows).map(|r| ((r * 977) % v) as i32).collect();
    let g_lp: Vec<f32> = (0..rows).map(|r| -1.0 / (r + 1) as f32).collect();
    let up = Upstream { g_logp: Some(&g_lp), ..Default::default() };
    let inputs = RowInputs { targets: Some(&targets), row_mask: None, temperature: Temperature::Scalar(0.8) };
    let xm = Mat::dense(&x, rows, v).unwrap();
    let saved = fwd(portable(), xm, &inputs).unwrap();
    let want: Vec<f32> = bwd(portable(), xm, &inputs, &saved, up).unwrap();
    let want_bf16: Vec<bf16> = bwd(portable(), xm, &inputs, &saved, up).unwrap();
    for b in simd_backends() {
        let got: Vec<f32> = bwd(exec(b), xm, &inputs, &saved, up).unwrap();
        assert!(got.iter().zip(&want).all(|(g, w)| g.to_bits() == w.to_bits()), "{} f32", b.name());
        let got: Vec<bf16> = bwd(exec(b), xm, &inputs, &saved, up).unwrap();
        assert!(got.iter().zip(&want_bf16).all(|(g, w)| g.to_bits() == w.to_bits()), "{} bf16", b.name());
    }
}
