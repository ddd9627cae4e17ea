//! Side-by-side timing of cDPO's streamed contrastive scores against the logits forward on
//! the same `[rows, vocab]` shape (driven by `bench/compare/cdpo.sh`).
//!
//! ```text
//! cargo run --release -p tokenmath-core --example cdpo_timing -- [rows] [vocab] [reps] [threads,...]
//! ```
//!
//! For each dtype (f32, bf16) and thread count, the two kernels are run alternately `reps`
//! times (so that a change of machine load hits both alike) after one warm-up each:
//! `stats_fwd` with targets and a `logp` output on the positive model's logits, and
//! `cdpo_ce_scores` on the positive and negative logits. Prints one JSON line per
//! measurement (median seconds, rows/s) and the ratio of cDPO's row throughput to the
//! forward's.

use std::hint::black_box;
use std::time::Instant;

use tokenmath_core::logits::{stats_fwd, FwdOut, RowInputs};
use tokenmath_core::preference::cdpo::cdpo_ce_scores;
use tokenmath_core::{bf16, Exec, LogitElem, Mat};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        0.5 * (v[m - 1] + v[m])
    }
}

fn logits(n: usize, seed: u64) -> Vec<f32> {
    // xorshift, values in [−8, 8): the bench's usual range.
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * 8.0
        })
        .collect()
}

fn run<T: LogitElem>(name: &str, pos: &[T], neg: &[T], rows: usize, vocab: usize, reps: usize, threads: &[usize]) {
    let targets: Vec<i32> = (0..rows).map(|r| ((r * 7919) % vocab) as i32).collect();
    let tu: Vec<u32> = targets.iter().map(|&t| t as u32).collect();
    let inputs = RowInputs { targets: Some(&targets), ..Default::default() };
    let p = Mat::dense(pos, rows, vocab).unwrap();
    let n = Mat::dense(neg, rows, vocab).unwrap();
    let (mut lse, mut ent, mut lp, mut sc) = (vec![0f32; rows], vec![0f32; rows], vec![0f32; rows], vec![0f32; rows]);
    for &th in threads {
        let exec = Exec::new().with_threads(th);
        let mut fwd = || {
            let t = Instant::now();
            let out = FwdOut { lse: &mut lse, entropy: &mut ent, logp: Some(&mut lp), max: None, log_sum: None };
            black_box(stats_fwd(exec, p, &inputs, out).unwrap());
            t.elapsed().as_secs_f64()
        };
        let (mut tf, mut tc) = (Vec::new(), Vec::new());
        fwd();
        let mut cd = || {
            let t = Instant::now();
            black_box(cdpo_ce_scores(exec, 1.0, p, n, &tu, &mut sc).unwrap());
            t.elapsed().as_secs_f64()
        };
        cd();
        for _ in 0..reps {
            tf.push(fwd());
            tc.push(cd());
        }
        let (mf, mc) = (median(tf), median(tc));
        let b = exec.backend().name();
        println!(
            "{{\"op\":\"logits_fwd\",\"dtype\":\"{name}\",\"backend\":\"{b}\",\"threads\":{th},\"rows\":{rows},\"vocab\":{vocab},\"median_s\":{mf:.6},\"rows_per_s\":{:.1}}}",
            rows as f64 / mf
        );
        println!(
            "{{\"op\":\"cdpo_ce_scores\",\"dtype\":\"{name}\",\"backend\":\"{b}\",\"threads\":{th},\"rows\":{rows},\"vocab\":{vocab},\"median_s\":{mc:.6},\"rows_per_s\":{:.1},\"ratio_vs_fwd\":{:.3}}}",
            rows as f64 / mc,
            mf / mc
        );
    }
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, d: usize| a.get(i).map_or(d, |s| s.parse().expect("a positive integer"));
    let (rows, vocab, reps) = (num(0, 512), num(1, 32768), num(2, 7));
    let threads: Vec<usize> =
        a.get(3).map_or(vec![1, 2], |s| s.split(',').map(|t| t.parse().expect("thread count")).collect());
    let pos = logits(rows * vocab, 1);
    let neg: Vec<f32> = logits(rows * vocab, 2).iter().zip(&pos).map(|(n, p)| 0.8 * p + 0.2 * n).collect();
    run("f32", &pos, &neg, rows, vocab, reps, &threads);
    let (pb, nb): (Vec<bf16>, Vec<bf16>) =
        (pos.iter().map(|&x| bf16::from_f32(x)).collect(), neg.iter().map(|&x| bf16::from_f32(x)).collect());
    drop((pos, neg));
    run("bf16", &pb, &nb, rows, vocab, reps, &threads);
}
