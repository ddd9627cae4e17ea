//! Vocabulary-shard partials: aligned shardings reproduce the unsharded forward bitwise;
//! any sharding agrees within the reference tolerance; the policies of merge/finalize.

mod common;

use common::*;
use proptest::prelude::*;
use tokenmath_core::logits::{self, FwdOut, RowInputs, RowStats, Shard, Temperature, Upstream, BLOCK};
use tokenmath_core::{Backend, Mat, MatMut, TmError};
use tokenmath_reference as reference;

/// Partials of `x` cut at `cuts` (increasing column boundaries), merged and finalized.
fn sharded(
    x: &[f32],
    rows: usize,
    v: usize,
    cuts: &[usize],
    inputs: &RowInputs<'_>,
    b: Backend,
) -> Result<Fwd, TmError> {
    let mut bounds = vec![0];
    bounds.extend_from_slice(cuts);
    bounds.push(v);
    let mut parts = Vec::new();
    for w in bounds.windows(2) {
        let (c0, c1) = (w[0], w[1]);
        // The shard is a strided view into the full matrix: columns [c0, c1) of every row.
        let shard = Mat::new(&x[c0..], rows, c1 - c0, v).unwrap();
        let mut out = vec![RowStats::EMPTY; rows];
        logits::stats_partial(exec(b), shard, Shard { col_offset: c0, vocab: v }, inputs, &mut out)?;
        parts.push(out);
    }
    let refs: Vec<&[RowStats]> = parts.iter().map(|p| &p[..]).collect();
    let mut merged = vec![RowStats::EMPTY; rows];
    logits::merge_shards(&refs, &mut merged)?;
    let [mut lse, mut h, mut lp, mut max, mut log_sum] = core::array::from_fn(|_| vec![POISON; rows]);
    let status = logits::finalize_rows(
        &merged,
        inputs,
        FwdOut {
            lse: &mut lse,
            entropy: &mut h,
            logp: Some(&mut lp),
            max: Some(&mut max),
            log_sum: Some(&mut log_sum),
        },
    )?;
    Ok(Fwd { lse, entropy: h, logp: lp, max, log_sum, status })
}

fn batch(seed: u64, rows: usize, v: usize) -> (Vec<f32>, Vec<i32>) {
    let mut x: Vec<f32> = (0..rows).flat_map(|r| zipf_row(seed + r as u64, v)).collect();
    if rows > 1 {
        // A masked stripe in row 1 and a NaN in the last row's last column.
        for c in (0..v).step_by(5).skip(1) {
            x[v + c] = f32::NEG_INFINITY;
        }
        x[rows * v - 1] = f32::NAN;
    }
    let targets = (0..rows).map(|r| ((seed as usize * 7 + r * 131) % v) as i32).collect();
    (x, targets)
}

#[test]
fn aligned_shards_are_bitwise_equal_to_unsharded() {
    for &v in &[BLOCK, 2 * BLOCK + 1, 4 * BLOCK, 5 * BLOCK + 77, 8 * BLOCK, 9 * BLOCK - 3, 16 * BLOCK + 5] {
        let rows = 4;
        let (x, targets) = batch(v as u64, rows, v);
        let inputs =
            RowInputs { targets: Some(&targets), row_mask: Some(&[1, 1, 0, 1]), temperature: Temperature::Scalar(0.9) };
        let want = fwd(portable(), Mat::dense(&x, rows, v).unwrap(), &inputs).unwrap();
        assert_eq!(want.status.nonfinite_rows, 1);
        // Every shard but the last holds c = 2^k blocks.
        for c in [1usize, 2, 4, 8] {
            let width = c * BLOCK;
            let cuts: Vec<usize> = (1..).map(|i| i * width).take_while(|&cut| cut < v).collect();
            for b in Backend::all_supported() {
                let got = sharded(&x, rows, v, &cuts, &inputs, b).unwrap();
                assert_eq!(got.bits(), want.bits(), "V = {v}, {c} blocks per shard, {}", b.name());
                assert_eq!(got.status, want.status);
            }
        }
    }
}

/// Per-block partials of `x` cut at `cuts` (multiples of BLOCK), merged and finalized.
fn sharded_blocks(x: &[f32], rows: usize, v: usize, cuts: &[usize], inputs: &RowInputs<'_>, b: Backend) -> Fwd {
    let mut bounds = vec![0];
    bounds.extend_from_slice(cuts);
    bounds.push(v);
    let mut parts = Vec::new();
    for w in bounds.windows(2) {
        let (c0, c1) = (w[0], w[1]);
        let shard = Mat::new(&x[c0..], rows, c1 - c0, v).unwrap();
        let nb = logits::partial_blocks_len(c1 - c0);
        let mut out = vec![RowStats::EMPTY; rows * nb];
        logits::stats_partial_blocks(
            exec(b),
            shard,
            Shard { col_offset: c0, vocab: v },
            inputs,
            MatMut::dense(&mut out, rows, nb).unwrap(),
        )
        .unwrap();
        parts.push((out, nb));
    }
    let mats: Vec<Mat<'_, RowStats>> = parts.iter().map(|(p, nb)| Mat::dense(p, rows, *nb).unwrap()).collect();
    let mut merged = vec![RowStats::EMPTY; rows];
    logits::merge_block_partials(&mats, &mut merged).unwrap();
    let [mut lse, mut h, mut lp, mut max, mut log_sum] = core::array::from_fn(|_| vec![POISON; rows]);
    let status = logits::finalize_rows(
        &merged,
        inputs,
        FwdOut {
            lse: &mut lse,
            entropy: &mut h,
            logp: Some(&mut lp),
            max: Some(&mut max),
            log_sum: Some(&mut log_sum),
        },
    )
    .unwrap();
    Fwd { lse, entropy: h, logp: lp, max, log_sum, status }
}

#[test]
fn any_block_aligned_sharding_of_block_partials_is_bitwise_equal() {
    for &v in &[1usize, 100, BLOCK, 3 * BLOCK + 1, 7 * BLOCK, 11 * BLOCK - 5] {
        let rows = 4;
        let (x, targets) = batch(v as u64 + 1, rows, v);
        let inputs =
            RowInputs { targets: Some(&targets), row_mask: Some(&[1, 1, 0, 1]), temperature: Temperature::Scalar(1.0) };
        let want = fwd(portable(), Mat::dense(&x, rows, v).unwrap(), &inputs).unwrap();
        let blocks = v.div_ceil(BLOCK);
        // Every way to cut the blocks into up to 4 shards of arbitrary sizes (tensor-parallel
        // degrees 1..4 with uneven shards), e.g. 3 + 2 + 2 blocks of a 7-block vocabulary.
        let mut cut_sets: Vec<Vec<usize>> = vec![vec![]];
        for a in 1..blocks {
            cut_sets.push(vec![a * BLOCK]);
            for b2 in a + 1..blocks {
                cut_sets.push(vec![a * BLOCK, b2 * BLOCK]);
                if b2 + 1 < blocks {
                    cut_sets.push(vec![a * BLOCK, b2 * BLOCK, (b2 + 1) * BLOCK]);
                }
            }
        }
        for cuts in &cut_sets {
            for b in Backend::all_supported() {
                let got = sharded_blocks(&x, rows, v, cuts, &inputs, b);
                assert_eq!(got.bits(), want.bits(), "V = {v}, cuts {cuts:?}, {}", b.name());
                assert_eq!(got.status, want.status);
            }
        }
    }
}

#[test]
fn block_partials_need_block_aligned_shards() {
    let x = vec![0.5f32; 3 * BLOCK];
    let mut out = vec![RowStats::EMPTY; 2];
    let r = logits::stats_partial_blocks(
        portable(),
        Mat::dense(&x[..2 * BLOCK], 1, 2 * BLOCK).unwrap(),
        Shard { col_offset: 5, vocab: 3 * BLOCK },
        &RowInputs::default(),
        MatMut::dense(&mut out, 1, 2).unwrap(),
    );
    assert!(matches!(r, Err(TmError::InvalidArgument(_))));
    let r = logits::stats_partial_blocks(
        portable(),
        Mat::dense(&x[..2 * BLOCK], 1, 2 * BLOCK).unwrap(),
        Shard { col_offset: 0, vocab: 3 * BLOCK },
        &RowInputs::default(),
        MatMut::dense(&mut out[..1], 1, 1).unwrap(),
    );
    assert_eq!(r, Err(TmError::LengthMismatch { what: "block partials columns", expected: 2, got: 1 }));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Arbitrary (unaligned) shardings agree with the reference within tolerance.
    #[test]
    fn any_sharding_is_within_tolerance(
        row in finite_row(1..9000usize),
        cut_fracs in proptest::collection::vec(0.0f64..1.0, 0..6),
        temp in temperature(),
        t in any::<prop::sample::Index>(),
    ) {
        prop_assume!(row.iter().any(|x| x.is_finite()));
        let v = row.len();
        let mut cuts: Vec<usize> = cut_fracs.iter().map(|f| ((f * v as f64) as usize).clamp(1, v)).filter(|&c| c < v).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let target = t.index(v);
        let targets = [target as i32];
        let inputs = RowInputs { targets: Some(&targets), row_mask: None, temperature: Temperature::Scalar(temp) };
        let got = sharded(&row, 1, v, &cuts, &inputs, Backend::detect()).unwrap();
        let r = reference::row_stats(&row, temp, Some(target)).unwrap();
        // A sharding adds at most one merge level per cut to the rounding depth.
        let tol = reference::sharded_stats_tolerance(&r, v, temp != 1.0, cuts.len() + 1);
        prop_assert!((got.lse[0] as f64 - r.lse).abs() <= tol.lse);
        prop_assert!(got.logp[0] as f64 == r.logp || (got.logp[0] as f64 - r.logp).abs() <= tol.logp);
        prop_assert!((got.entropy[0] as f64 - r.entropy).abs() <= tol.entropy);
        prop_assert!((got.log_sum[0] as f64 - r.log_s).abs() <= tol.log_sum);
        prop_assert!((got.max[0] as f64 - r.m).abs() <= tol.max);
        prop_assert!(got.entropy[0] >= 0.0 && got.logp[0] <= 0.0);
    }
}

#[test]
fn merge_and_finalize_policies() {
    let x = [1.0f32, 2.0, 3.0, 4.0];
    let inputs = RowInputs { targets: Some(&[1]), ..Default::default() };
    let part = |cols: std::ops::Range<usize>| {
        let mut out = [RowStats::EMPTY];
        logits::stats_partial(
            portable(),
            Mat::dense(&x[cols.clone()], 1, cols.len()).unwrap(),
            Shard { col_offset: cols.start, vocab: 4 },
            &inputs,
            &mut out,
        )
        .unwrap();
        out[0]
    };
    let (a, b) = (part(0..2), part(2..4));
    assert!(a.has_target() && !b.has_target());
    // Overlapping shards both holding the target.
    let mut out = [RowStats::EMPTY];
    assert_eq!(logits::merge_shards(&[&[a], &[a]], &mut out), Err(TmError::DuplicateTarget { row: 0 }));
    // A target no shard holds.
    logits::merge_shards(&[&[b]], &mut out).unwrap();
    let (mut lse, mut h) = ([0.0], [0.0]);
    assert_eq!(
        logits::finalize_rows(
            &out,
            &inputs,
            FwdOut { lse: &mut lse, entropy: &mut h, logp: None, max: None, log_sum: None }
        ),
        Err(TmError::MissingTarget { row: 0 })
    );
    // A shard that does not fit the vocabulary.
    let mut one = [RowStats::EMPTY];
    assert!(matches!(
        logits::stats_partial(
            portable(),
            Mat::dense(&x, 1, 4).unwrap(),
            Shard { col_offset: 1, vocab: 4 },
            &RowInputs::default(),
            &mut one
        ),
        Err(TmError::ShardOutOfRange { .. })
    ));
    // A shard of only -inf is fine; the merged row is not.
    let masked = [f32::NEG_INFINITY; 2];
    logits::stats_partial(
        portable(),
        Mat::dense(&masked, 1, 2).unwrap(),
        Shard { col_offset: 0, vocab: 4 },
        &RowInputs::default(),
        &mut one,
    )
    .unwrap();
    assert_eq!(one[0], RowStats::EMPTY);
    let mut merged = [RowStats::EMPTY];
    logits::merge_shards(&[&one, &[b]], &mut merged).unwrap();
    assert_eq!(merged[0], b);
    // RowStats travel as plain bytes (all-gather payload).
    let bytes: &[u8] = bytemuck::bytes_of(&b);
    assert_eq!(bytes.len(), 20);
    assert_eq!(*bytemuck::from_bytes::<RowStats>(bytes), b);
}

/// The backward of each shard, with the full-vocabulary statistics, is bitwise the slice of
/// the unsharded backward: for any cuts (aligned or not), every backend and thread count,
/// rows whose target is in another shard, masked rows and a NaN row, f32 and bf16 outputs.
#[test]
fn shard_backward_is_the_slice_of_the_unsharded_backward() {
    let (rows, v) = (6, 3 * BLOCK + 77);
    let (x, mut targets) = batch(5, rows, v);
    targets[2] = -100;
    let mask = [1u8, 1, 1, 0, 1, 1];
    let temps = [1.0f32, 0.7, 1.3, 1.0, 2.0, 1.0];
    let inputs = RowInputs { targets: Some(&targets), row_mask: Some(&mask), temperature: Temperature::PerRow(&temps) };
    let f = fwd(portable(), Mat::dense(&x, rows, v).unwrap(), &inputs).unwrap();
    assert_eq!(f.status.nonfinite_rows, 1);
    let g_lp: Vec<f32> = (0..rows).map(|r| -1.0 + 0.25 * r as f32).collect();
    let g_h: Vec<f32> = (0..rows).map(|r| 0.1 * r as f32 - 0.2).collect();
    let g_lse = [0.01f32; 6];
    let up = Upstream { g_logp: Some(&g_lp), g_entropy: Some(&g_h), g_lse: Some(&g_lse) };
    let want: Vec<f32> = bwd(portable(), Mat::dense(&x, rows, v).unwrap(), &inputs, &f, up).unwrap();
    let want_bf16: Vec<tokenmath_core::bf16> =
        bwd(portable(), Mat::dense(&x, rows, v).unwrap(), &inputs, &f, up).unwrap();
    for cuts in [vec![], vec![BLOCK], vec![1, 2, 3], vec![1000, 2 * BLOCK + 5, v - 1], vec![v / 3, 2 * v / 3]] {
        let mut bounds = vec![0];
        bounds.extend_from_slice(&cuts);
        bounds.push(v);
        for b in Backend::all_supported() {
            for threads in [1, 3] {
                for w in bounds.windows(2) {
                    let (c0, c1) = (w[0], w[1]);
                    let cols = c1 - c0;
                    let shard = Mat::new(&x[c0..], rows, cols, v).unwrap();
                    let mut dx = vec![POISON; rows * cols];
                    let mut dxb = vec![tokenmath_core::bf16::from_f32(POISON); rows * cols];
                    let ex = exec(b).with_threads(threads);
                    let sh = Shard { col_offset: c0, vocab: v };
                    logits::stats_bwd_shard(
                        ex,
                        shard,
                        sh,
                        &inputs,
                        f.saved(),
                        up,
                        MatMut::dense(&mut dx, rows, cols).unwrap(),
                    )
                    .unwrap();
                    logits::stats_bwd_shard(
                        ex,
                        shard,
                        sh,
                        &inputs,
                        f.saved(),
                        up,
                        MatMut::dense(&mut dxb, rows, cols).unwrap(),
                    )
                    .unwrap();
                    for r in 0..rows {
                        let (got, exp) = (&dx[r * cols..(r + 1) * cols], &want[r * v + c0..r * v + c1]);
                        let same = got.iter().zip(exp).all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(same, "row {r}, shard [{c0}, {c1}), {}", b.name());
                        let (got, exp) = (&dxb[r * cols..(r + 1) * cols], &want_bf16[r * v + c0..r * v + c1]);
                        let same = got.iter().zip(exp).all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(same, "bf16 row {r}, shard [{c0}, {c1}), {}", b.name());
                    }
                }
            }
        }
    }
}

#[test]
fn shard_backward_checks_the_shard_and_global_targets() {
    let x = vec![0.5f32; 2 * BLOCK];
    let (max, log_sum, entropy) = ([0.5f32], [1.0f32], [1.0f32]);
    let saved = logits::Saved { max: &max, log_sum: &log_sum, entropy: &entropy };
    let mut dx = vec![POISON; BLOCK];
    let mut run = |off: usize, vocab: usize, target: i32| {
        let targets = [target];
        let inputs = RowInputs { targets: Some(&targets), ..RowInputs::default() };
        logits::stats_bwd_shard(
            portable(),
            Mat::dense(&x[..BLOCK], 1, BLOCK).unwrap(),
            Shard { col_offset: off, vocab },
            &inputs,
            saved,
            Upstream::default(),
            MatMut::dense(&mut dx, 1, BLOCK).unwrap(),
        )
    };
    assert!(matches!(run(BLOCK + 1, 2 * BLOCK, 0), Err(TmError::ShardOutOfRange { .. })));
    assert_eq!(run(0, 0, 0), Err(TmError::EmptyVocab));
    // Targets are global: column 3000 is valid in a vocabulary of 2·BLOCK, outside this shard.
    assert!(matches!(run(0, 2 * BLOCK, 2 * BLOCK as i32), Err(TmError::TargetOutOfRange { .. })));
    assert_eq!(run(0, 2 * BLOCK, 3000), Ok(()));
    // An empty shard is valid and writes nothing.
    let mut none: [f32; 0] = [];
    let r = logits::stats_bwd_shard(
        portable(),
        Mat::new(&x[..0], 1, 0, 0).unwrap(),
        Shard { col_offset: 2 * BLOCK, vocab: 2 * BLOCK },
        &RowInputs::default(),
        saved,
        Upstream::default(),
        MatMut::new(&mut none, 1, 0, 0).unwrap(),
    );
    assert_eq!(r, Ok(()));
}
