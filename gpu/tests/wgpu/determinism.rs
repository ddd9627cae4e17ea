//! Same bits across repeated launches, batch compositions and row orders.

use tokenmath_core::logits::Temperature;
use tokenmath_core::Mat;

use crate::common::*;

#[test]
fn repeated_launches_batches_and_row_order() {
    let (rows, cols) = (9, 5000);
    let data = logits_f32(3, rows, cols, cols);
    let tg = targets(3, rows, cols);
    let inp = inputs(Some(&tg), None, Temperature::Scalar(0.9));
    let x = Mat::dense(&data, rows, cols).unwrap();
    let first = gpu_fwd(x, &inp).unwrap();
    for _ in 0..3 {
        assert_eq!(gpu_fwd(x, &inp).unwrap(), first, "repeated launch");
    }
    // Each row alone, and the rows in reverse order.
    for (r, &target) in tg.iter().enumerate() {
        let t = [target];
        let one =
            gpu_fwd(Mat::dense(x.row(r), 1, cols).unwrap(), &inputs(Some(&t), None, Temperature::Scalar(0.9))).unwrap();
        assert_eq!(one.lse[0].to_bits(), first.lse[r].to_bits(), "row {r} alone");
        assert_eq!(one.entropy[0].to_bits(), first.entropy[r].to_bits(), "row {r} alone");
        assert_eq!(one.logp[0].to_bits(), first.logp[r].to_bits(), "row {r} alone");
    }
    let rev: Vec<f32> = (0..rows).rev().flat_map(|r| x.row(r).to_vec()).collect();
    let rev_tg: Vec<i32> = tg.iter().rev().copied().collect();
    let back =
        gpu_fwd(Mat::dense(&rev, rows, cols).unwrap(), &inputs(Some(&rev_tg), None, Temperature::Scalar(0.9))).unwrap();
    for r in 0..rows {
        assert_eq!(back.lse[rows - 1 - r].to_bits(), first.lse[r].to_bits(), "row {r} reversed");
        assert_eq!(back.row(rows - 1 - r).map(f32::to_bits), first.row(r).map(f32::to_bits), "row {r} reversed");
    }
}

#[test]
fn cube_size_of_the_forward_does_not_change_bits() {
    let (rows, cols) = (3, 4500);
    let data = logits_f32(8, rows, cols, cols);
    let tg = targets(8, rows, cols);
    let inp = inputs(Some(&tg), None, Temperature::Scalar(1.3));
    let x = Mat::dense(&data, rows, cols).unwrap();
    let want = gpu_fwd(x, &inp).unwrap();
    let mut gpu = tokenmath_gpu::Gpu::open(tokenmath_gpu::DeviceKind::Wgpu).unwrap();
    for threads in [32u32, 64, 128, 256] {
        gpu.set_block_threads(threads).unwrap();
        let st = gpu.stats_fwd(&gpu.upload(x).unwrap(), &inp).unwrap();
        let [mut lse, mut h, mut lp, mut max, mut log_sum] = std::array::from_fn(|_| vec![0.0; rows]);
        let out = tokenmath_core::logits::FwdOut {
            lse: &mut lse,
            entropy: &mut h,
            logp: Some(&mut lp),
            max: Some(&mut max),
            log_sum: Some(&mut log_sum),
        };
        gpu.read_stats(&st, out).unwrap();
        for r in 0..rows {
            let got = [lse[r], lp[r], h[r], max[r], log_sum[r]].map(f32::to_bits);
            let exp = want.row(r).map(f32::to_bits);
            assert_eq!(got, exp, "{threads} threads, row {r}");
        }
    }
    assert!(gpu.set_block_threads(100).is_err());
    assert!(gpu.set_block_threads(4096).is_err());
}
