//! Vocabulary-shard partials: GPU tuples are `core`'s tuples, so GPU and CPU shards merge
//! into the unsharded answer.

use tokenmath_core::logits::{self, FwdOut, RowStats, Shard, Temperature, BLOCK};
use tokenmath_core::{Exec, Mat, MatMut};

use crate::common::*;

/// A GPU tuple against `core`'s: bitwise on a device that fuses `fma`; otherwise the same
/// flags, maximum and target logit (exact in any order) and `s`, `u` within the relative
/// bound of an in-block sum of `BLOCK/8` terms per lane, 8 lanes and `exp`'s few ulps:
/// `(BLOCK/8 + 16)·ε` (every term of `s` is positive and every term of `u` non-positive, so
/// the bound is relative to the sum).
fn assert_tuple(g: &RowStats, c: &RowStats, what: &str) {
    let bitwise = same(g.m, c.m) && same(g.s, c.s) && same(g.u, c.u) && same(g.x_t, c.x_t) && g.flags == c.flags;
    if bitwise {
        return;
    }
    assert!(!bitwise_expected(), "{what}: gpu {g:?} != core {c:?} on a device with a fused fma");
    assert_eq!(g.flags, c.flags, "{what}: flags");
    if c.is_nonfinite() {
        return; // m, s, u of a flagged tuple are unspecified
    }
    assert!(same(g.m, c.m) && same(g.x_t, c.x_t), "{what}: gpu {g:?} core {c:?}");
    let rel = (BLOCK / 8 + 16) as f64 * f32::EPSILON as f64;
    assert!(((g.s - c.s) as f64).abs() <= rel * c.s as f64, "{what}: s: gpu {g:?} core {c:?}");
    assert!(((g.u - c.u) as f64).abs() <= rel * (c.u as f64).abs(), "{what}: u: gpu {g:?} core {c:?}");
}

#[test]
fn block_partials_are_cores_and_merge_with_cpu_shards() {
    let (rows, cols) = (5, 3 * BLOCK + 700);
    let data = logits_f32(11, rows, cols, cols);
    let tg = targets(11, rows, cols);
    let mask = [1u8, 1, 0, 1, 1];
    let inp = inputs(Some(&tg), Some(&mask), Temperature::Scalar(0.8));
    let x = Mat::dense(&data, rows, cols).unwrap();
    let gpu = gpu();

    // Shard A (GPU): columns [0, 2·BLOCK); shard B (CPU): the rest.
    let split = 2 * BLOCK;
    let a: Vec<f32> = (0..rows).flat_map(|r| x.row(r)[..split].to_vec()).collect();
    let b: Vec<f32> = (0..rows).flat_map(|r| x.row(r)[split..].to_vec()).collect();
    let (xa, xb) = (Mat::dense(&a, rows, split).unwrap(), Mat::dense(&b, rows, cols - split).unwrap());
    let (sa, sb) = (Shard { col_offset: 0, vocab: cols }, Shard { col_offset: split, vocab: cols });

    let (na, nb) = (logits::partial_blocks_len(split), logits::partial_blocks_len(cols - split));
    let mut gpu_a = vec![RowStats { flags: 99, ..RowStats::EMPTY }; rows * na];
    gpu.stats_partial_blocks(&gpu.upload(xa).unwrap(), sa, &inp, MatMut::dense(&mut gpu_a, rows, na).unwrap()).unwrap();
    let mut cpu_a = vec![RowStats::EMPTY; rows * na];
    logits::stats_partial_blocks(Exec::default(), xa, sa, &inp, MatMut::dense(&mut cpu_a, rows, na).unwrap()).unwrap();
    for (g, c) in gpu_a.iter().zip(&cpu_a) {
        assert_tuple(g, c, "block tuple");
    }
    let mut cpu_b = vec![RowStats::EMPTY; rows * nb];
    logits::stats_partial_blocks(Exec::default(), xb, sb, &inp, MatMut::dense(&mut cpu_b, rows, nb).unwrap()).unwrap();

    // GPU shard A + CPU shard B, merged by core: the unsharded forward, bit for bit.
    let mut merged = vec![RowStats::EMPTY; rows];
    logits::merge_block_partials(
        &[Mat::dense(&gpu_a, rows, na).unwrap(), Mat::dense(&cpu_b, rows, nb).unwrap()],
        &mut merged,
    )
    .unwrap();
    let [mut lse, mut h, mut lp, mut max, mut log_sum] = std::array::from_fn(|_| vec![0.0; rows]);
    logits::finalize_rows(
        &merged,
        &inp,
        FwdOut {
            lse: &mut lse,
            entropy: &mut h,
            logp: Some(&mut lp),
            max: Some(&mut max),
            log_sum: Some(&mut log_sum),
        },
    )
    .unwrap();
    let whole = cpu_fwd(x, &inp).unwrap();
    let check = |lse: &[f32], h: &[f32], lp: &[f32], max: &[f32], log_sum: &[f32], what: &str| {
        for r in 0..rows {
            let (got, want) = ([lse[r], lp[r], h[r], max[r], log_sum[r]], whole.row(r));
            if mask[r] == 0 {
                assert_eq!(got, [0.0; 5], "{what}: masked row {r}");
                continue;
            }
            check_row(&format!("{what}: row {r}"), x.row(r), 0.8, inp.target(r), got, want);
        }
    };
    check(&lse, &h, &lp, &max, &log_sum, "GPU + CPU block partials");

    // One tuple per shard: GPU `stats_partial` is core's, and merges with core's shards.
    let mut gpu_one = vec![RowStats { flags: 99, ..RowStats::EMPTY }; rows];
    gpu.stats_partial(&gpu.upload(xa).unwrap(), sa, &inp, &mut gpu_one).unwrap();
    let mut cpu_one = vec![RowStats::EMPTY; rows];
    logits::stats_partial(Exec::default(), xa, sa, &inp, &mut cpu_one).unwrap();
    for (g, c) in gpu_one.iter().zip(&cpu_one) {
        assert_tuple(g, c, "shard tuple");
    }
    let mut cpu_b_one = vec![RowStats::EMPTY; rows];
    logits::stats_partial(Exec::default(), xb, sb, &inp, &mut cpu_b_one).unwrap();
    let mut merged = vec![RowStats::EMPTY; rows];
    logits::merge_shards(&[&gpu_one, &cpu_b_one], &mut merged).unwrap();
    logits::finalize_rows(
        &merged,
        &inp,
        FwdOut {
            lse: &mut lse,
            entropy: &mut h,
            logp: Some(&mut lp),
            max: Some(&mut max),
            log_sum: Some(&mut log_sum),
        },
    )
    .unwrap();
    // Shard A holds 2 blocks (a power of two): bitwise where the tuples are, as in core.
    check(&lse, &h, &lp, &max, &log_sum, "GPU + CPU shard partials");
}

#[test]
fn shard_rules_match_core() {
    let data = vec![0.5f32; 2 * 100];
    let x = Mat::dense(&data, 2, 100).unwrap();
    let gpu = gpu();
    let gx = gpu.upload(x).unwrap();
    let inp = inputs(None, None, Temperature::Scalar(1.0));
    let mut out = vec![RowStats::EMPTY; 2];
    let bad = Shard { col_offset: 50, vocab: 120 };
    let cpu_err = logits::stats_partial(Exec::default(), x, bad, &inp, &mut out).unwrap_err();
    assert_eq!(gpu.stats_partial(&gx, bad, &inp, &mut out).unwrap_err(), tokenmath_gpu::GpuError::Core(cpu_err));
    let unaligned = Shard { col_offset: 10, vocab: 200 };
    let mut blocks = vec![RowStats::EMPTY; 2];
    assert!(gpu.stats_partial_blocks(&gx, unaligned, &inp, MatMut::dense(&mut blocks, 2, 1).unwrap()).is_err());
}
