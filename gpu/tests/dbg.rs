use tokenmath_core::logits::{self, RowInputs, RowStats, Shard};
use tokenmath_core::{Exec, Mat, MatMut};
use tokenmath_gpu::{DeviceKind, Gpu};

#[test]
fn dbg() {
    let gpu = Gpu::open(DeviceKind::Wgpu).unwrap();
    for data in [vec![0.0f32, 0.0], vec![1.0, 0.0], vec![0.0, -1.0, -2.0, 0.5, 3.0, 1.0, 2.0]] {
        let n = data.len();
        let x = Mat::dense(&data, 1, n).unwrap();
        let inputs = RowInputs::default();
        let mut cpu = vec![RowStats::EMPTY; 1];
        logits::stats_partial_blocks(Exec::default(), x, Shard { col_offset: 0, vocab: n }, &inputs, MatMut::dense(&mut cpu, 1, 1).unwrap()).unwrap();
        let gx = gpu.upload(x).unwrap();
        let mut g = vec![RowStats::EMPTY; 1];
        gpu.stats_partial_blocks(&gx, Shard { col_offset: 0, vocab: n }, &inputs, MatMut::dense(&mut g, 1, 1).unwrap()).unwrap();
        eprintln!("{data:?}\n cpu {:?}\n gpu {:?}", cpu[0], g[0]);
    }
}
