//! Bad input gives `core`'s typed errors, checked before anything is launched; a tensor of
//! another device is refused.

use tokenmath_core::logits::Temperature;
use tokenmath_core::{Mat, TmError};
use tokenmath_gpu::{DeviceKind, Gpu, GpuError};

use crate::common::*;

#[test]
fn errors_match_core() {
    let cols = 50;
    let mut data = logits_f32(1, 4, cols, cols);
    let x = Mat::dense(&data, 4, cols).unwrap();
    let cases: Vec<(Vec<i32>, Temperature<'_>)> = vec![
        (vec![0, 1, 50, 2], Temperature::Scalar(1.0)),
        (vec![0, 1, 2, 3], Temperature::Scalar(0.0)),
        (vec![0, 1, 2, 3], Temperature::Scalar(f32::NAN)),
        (vec![0, 1, 2], Temperature::Scalar(1.0)),
    ];
    for (tg, temp) in &cases {
        let inp = inputs(Some(tg), None, *temp);
        let want = cpu_fwd(x, &inp).unwrap_err();
        // Debug strings, so that a NaN temperature compares equal.
        assert_eq!(format!("{:?}", gpu_fwd(x, &inp).unwrap_err()), format!("{:?}", GpuError::Core(want)));
    }
    // Errors found during the pass: a row with no finite logit, reported with its row.
    for v in &mut data[2 * cols..3 * cols] {
        *v = f32::NEG_INFINITY;
    }
    let x = Mat::dense(&data, 4, cols).unwrap();
    let inp = inputs(None, None, Temperature::Scalar(1.0));
    assert_eq!(gpu_fwd(x, &inp).unwrap_err(), GpuError::Core(TmError::NoFiniteLogit { row: 2 }));
    // A masked row is not read, so it is not an error.
    let mask = [1u8, 1, 0, 1];
    let masked = inputs(None, Some(&mask), Temperature::Scalar(1.0));
    assert_eq!(gpu_fwd(x, &masked).unwrap(), cpu_fwd(x, &masked).unwrap());
    // No rows: nothing to do, as in core.
    let empty: [f32; 0] = [];
    assert_eq!(
        gpu_fwd(Mat::dense(&empty, 0, 7).unwrap(), &inp).unwrap(),
        cpu_fwd(Mat::dense(&empty, 0, 7).unwrap(), &inp).unwrap()
    );
    // Empty vocabulary.
    assert_eq!(gpu_fwd(Mat::dense(&empty, 3, 0).unwrap(), &inp).unwrap_err(), GpuError::Core(TmError::EmptyVocab));
}

#[test]
fn tensors_stay_with_their_device() {
    let data = [0.0f32; 8];
    let other = Gpu::open(DeviceKind::Wgpu).unwrap();
    let x = other.upload(Mat::dense(&data, 2, 4).unwrap()).unwrap();
    let inp = inputs(None, None, Temperature::Scalar(1.0));
    assert_eq!(gpu().stats_fwd(&x, &inp).unwrap_err(), GpuError::WrongDevice);
}

#[test]
fn cuda_without_a_driver_is_a_typed_error() {
    match Gpu::open(DeviceKind::Cuda) {
        Err(GpuError::NotBuilt("cuda")) => assert!(!DeviceKind::Cuda.is_built()),
        Err(GpuError::NoDevice(msg)) => assert!(!msg.is_empty()),
        Ok(gpu) => assert!(gpu.name().starts_with("cuda")),
        Err(other) => panic!("unexpected error {other}"),
    }
}

#[test]
fn a_tensor_larger_than_a_device_buffer_is_refused() {
    let limit = gpu().max_buffer_bytes() as usize;
    if limit > 1 << 30 {
        // A real GPU's limit (gigabytes): not worth a host buffer that large in a test. On
        // lavapipe (CI) the limit is 128 MiB.
        return;
    }
    let cols = 4096;
    let rows = limit / (4 * cols) + 1;
    let data = vec![0.0f32; rows * cols];
    match gpu().upload(Mat::dense(&data, rows, cols).unwrap()) {
        Err(GpuError::TooLarge { bytes, limit: l }) => assert!(bytes > l && l as usize == limit),
        other => panic!("expected TooLarge, got {other:?}"),
    }
}
