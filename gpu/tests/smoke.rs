use tokenmath_core::logits::{self, FwdOut, RowInputs, Temperature};
use tokenmath_core::{Exec, Mat};
use tokenmath_gpu::{DeviceKind, Gpu};

#[test]
fn smoke() {
    let gpu = Gpu::open(DeviceKind::Wgpu).unwrap();
    eprintln!("{gpu:?}");
    for &(rows, cols) in &[(1usize, 1usize), (3, 7), (2, 2048), (4, 2049), (3, 5000), (2, 20000)] {
        let data: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919 % 1000) as f32 / 100.0 - 5.0)).collect();
        let x = Mat::dense(&data, rows, cols).unwrap();
        let targets: Vec<i32> = (0..rows).map(|r| (r * 31 % cols) as i32).collect();
        let inputs = RowInputs { targets: Some(&targets), row_mask: None, temperature: Temperature::Scalar(0.7) };
        let (mut lse, mut h, mut lp, mut ez) = (vec![0.0; rows], vec![0.0; rows], vec![0.0; rows], vec![0.0; rows]);
        logits::stats_fwd(Exec::default(), x, &inputs, FwdOut { lse: &mut lse, entropy: &mut h, logp: Some(&mut lp), ez: Some(&mut ez) }).unwrap();
        let gx = gpu.upload(x).unwrap();
        let st = gpu.stats_fwd(&gx, &inputs).unwrap();
        let (mut glse, mut gh, mut glp, mut gez) = (vec![9.0; rows], vec![9.0; rows], vec![9.0; rows], vec![9.0; rows]);
        gpu.read_stats(&st, FwdOut { lse: &mut glse, entropy: &mut gh, logp: Some(&mut glp), ez: Some(&mut gez) }).unwrap();
        let bits = |a: &[f32], b: &[f32]| a.iter().zip(b).filter(|(x, y)| x.to_bits() == y.to_bits()).count();
        eprintln!("{rows}x{cols}: lse {:?} vs {:?}; bitwise lse {} h {} lp {} ez {}", &lse[..1], &glse[..1], bits(&lse, &glse), bits(&h, &gh), bits(&lp, &glp), bits(&ez, &gez));
    }
}
