//! Determinism: bitwise identical results for 1, 2 and 7 threads, for any batch split and
//! any row order.

mod common;

use common::*;
use tokenmath_core::logits::{self, RowInputs, RowStats, Shard, Temperature, Upstream};
use tokenmath_core::{bf16, Exec, Mat, MatMut};

fn make(rows: usize, v: usize) -> (Vec<f32>, Vec<i32>, Vec<f32>, Vec<u8>) {
    let mut x: Vec<f32> = (0..rows).flat_map(|r| zipf_row(r as u64 * 17 + 3, v)).collect();
    x[3 * v + 5] = f32::NAN;
    let targets = (0..rows).map(|r| if r % 9 == 4 { -100 } else { ((r * 977) % v) as i32 }).collect();
    let temps = (0..rows).map(|r| 0.5 + (r % 4) as f32 * 0.25).collect();
    let mask = (0..rows).map(|r| (r % 11 != 6) as u8).collect();
    (x, targets, temps, mask)
}

#[test]
fn thread_count_does_not_change_a_bit() {
    let (rows, v) = (37, 5000);
    let (x, targets, temps, mask) = make(rows, v);
    let xm = Mat::dense(&x, rows, v).unwrap();
    let inputs = RowInputs { targets: Some(&targets), row_mask: Some(&mask), temperature: Temperature::PerRow(&temps) };
    let gl: Vec<f32> = (0..rows).map(|r| r as f32 * 0.1 - 1.0).collect();
    let gh: Vec<f32> = (0..rows).map(|r| 0.3 - r as f32 * 0.02).collect();
    let up = Upstream { g_logp: Some(&gl), g_entropy: Some(&gh), g_lse: None };
    let one = Exec::new();
    let want = fwd(one, xm, &inputs).unwrap();
    assert_eq!(want.status.nonfinite_rows, 1);
    let want_dx: Vec<f32> = bwd(one, xm, &inputs, &want, up).unwrap();
    let want_dx16: Vec<bf16> = bwd(one, xm, &inputs, &want, up).unwrap();
    let mut want_parts = vec![RowStats::EMPTY; rows];
    logits::stats_partial(one, xm, Shard { col_offset: 0, vocab: v }, &inputs, &mut want_parts).unwrap();
    for threads in [2, 7, 64] {
        let e = Exec::new().with_threads(threads);
        let got = fwd(e, xm, &inputs).unwrap();
        assert_eq!(got.bits(), want.bits(), "{threads} threads");
        assert_eq!(got.status, want.status);
        let dx: Vec<f32> = bwd(e, xm, &inputs, &want, up).unwrap();
        assert!(dx.iter().zip(&want_dx).all(|(a, b)| a.to_bits() == b.to_bits()), "{threads} threads backward");
        let dx16: Vec<bf16> = bwd(e, xm, &inputs, &want, up).unwrap();
        assert!(dx16.iter().zip(&want_dx16).all(|(a, b)| a.to_bits() == b.to_bits()));
        let mut buf = x.clone();
        logits::stats_bwd_inplace(e, MatMut::dense(&mut buf, rows, v).unwrap(), &inputs, want.saved(), up).unwrap();
        assert!(buf.iter().zip(&want_dx).all(|(a, b)| a.to_bits() == b.to_bits()), "{threads} threads in place");
        let mut parts = vec![RowStats::EMPTY; rows];
        logits::stats_partial(e, xm, Shard { col_offset: 0, vocab: v }, &inputs, &mut parts).unwrap();
        assert_eq!(bytemuck::cast_slice::<RowStats, u8>(&parts), bytemuck::cast_slice::<RowStats, u8>(&want_parts));
    }
}

#[test]
fn errors_are_reported_for_the_first_bad_row_whatever_the_threads() {
    let (rows, v) = (20, 64);
    let mut x: Vec<f32> = (0..rows).flat_map(|r| zipf_row(r as u64, v)).collect();
    for r in [5, 13] {
        x[r * v..(r + 1) * v].fill(f32::NEG_INFINITY);
    }
    for threads in [1, 2, 3, 7] {
        let err = fwd(Exec::new().with_threads(threads), Mat::dense(&x, rows, v).unwrap(), &RowInputs::default())
            .unwrap_err();
        assert_eq!(err, tokenmath_core::TmError::NoFiniteLogit { row: 5 }, "{threads} threads");
    }
}

#[test]
fn batch_split_and_row_order_do_not_matter() {
    let (rows, v) = (24, 3000);
    let (x, targets, temps, _) = make(rows, v);
    let inputs = RowInputs { targets: Some(&targets), row_mask: None, temperature: Temperature::PerRow(&temps) };
    let whole = fwd(Exec::new(), Mat::dense(&x, rows, v).unwrap(), &inputs).unwrap();
    // Any contiguous split of the batch.
    for split in [1, 5, 13, 23] {
        for (lo, hi) in [(0, split), (split, rows)] {
            let sub_inputs = RowInputs {
                targets: Some(&targets[lo..hi]),
                row_mask: None,
                temperature: Temperature::PerRow(&temps[lo..hi]),
            };
            let part = fwd(Exec::new(), Mat::dense(&x[lo * v..hi * v], hi - lo, v).unwrap(), &sub_inputs).unwrap();
            for (i, r) in (lo..hi).enumerate() {
                assert_eq!(part.lse[i].to_bits(), whole.lse[r].to_bits());
                assert_eq!(part.entropy[i].to_bits(), whole.entropy[r].to_bits());
                assert_eq!(part.logp[i].to_bits(), whole.logp[r].to_bits());
            }
        }
    }
    // Reversed row order.
    let rev: Vec<f32> = (0..rows).rev().flat_map(|r| x[r * v..(r + 1) * v].to_vec()).collect();
    let rev_t: Vec<i32> = targets.iter().rev().copied().collect();
    let rev_temp: Vec<f32> = temps.iter().rev().copied().collect();
    let rev_inputs = RowInputs { targets: Some(&rev_t), row_mask: None, temperature: Temperature::PerRow(&rev_temp) };
    let got = fwd(Exec::new().with_threads(3), Mat::dense(&rev, rows, v).unwrap(), &rev_inputs).unwrap();
    for r in 0..rows {
        assert_eq!(got.lse[rows - 1 - r].to_bits(), whole.lse[r].to_bits());
        assert_eq!(got.entropy[rows - 1 - r].to_bits(), whole.entropy[r].to_bits());
        assert_eq!(got.max[rows - 1 - r].to_bits(), whole.max[r].to_bits());
        assert_eq!(got.log_sum[rows - 1 - r].to_bits(), whole.log_sum[r].to_bits());
    }
}
