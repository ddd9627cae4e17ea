//! `seed_vocab_timing`: the vocabulary-streaming kernels of the seed methods timed side by side with
//! the logits forward (and the logits forward + backward) on the same logits (the driver behind
//! `bench/compare/run-seed.sh`).
//!
//! ```text
//! cargo run --release -p tokenmath-core --example seed_vocab_timing -- [ROWS COLS REPS]   (default 2048 32768 15)
//! ```
//!
//! The logits are `[ROWS, COLS]` f32, peaked and long-tailed as `tokenmath_bench::Problem`'s (not
//! the same bits): the token of rank `k` gets `top − a·ln(k+1) + noise` over a shuffled
//! vocabulary. Each measurement runs once untimed, then `REPS` timed repetitions go round-robin
//! over all measurements (so interference from other processes on a shared machine is spread over
//! every measurement instead of skewing the ratios between them); the median and the minimum are reported (the minimum is the
//! least disturbed by a loaded machine).
//!
//! | op | what is timed |
//! |---|---|
//! | `logits_fwd` | `logits::stats_fwd`: `lse`, entropy, target `logp`, `max`, `log_sum` (the reference throughput) |
//! | `logits_fwd_bwd` | `logits::stats_fwd`, then `logits::stats_bwd` with `g_logp = −1` (the cross-entropy gradient) into an f32 `dx`: two passes over the logits, the second one writing |
//! | `tw_grpo_weights` | `seed::tw_grpo::tw_grpo_token_weights`, `G = 8`, `T = 128` (`ROWS = B·T`), from the forward's saved `max`/`log_sum` |
//! | `dop_fwd_bwd` | `seed::dop::dop_loss_and_grad`, the default (precision) setting `β = −0.25`, `k = 100`: loss and f32 gradient, one reduction pass (with the top-k selection) and one writing pass per row |
//! | `dop_tail_fwd_bwd` | the same with tail suppression, `λ̂ = −0.1` (`β = −0.25`, `k = 100`) |
//!
//! Printed: a Markdown table with, per op and thread count, the median time, elements per
//! second, and the throughput relative to the logits forward and to the logits forward +
//! backward on the same thread count.

use std::cell::RefCell;
use std::hint::black_box;
use std::time::Instant;

use tokenmath_core::logits::{stats_bwd, stats_fwd, FwdOut, RowInputs, Saved, Upstream};
use tokenmath_core::seed::dop::{dop_loss_and_grad, dop_scratch_len, DopCfg, DopSlot};
use tokenmath_core::seed::tw_grpo::{tw_grpo_token_weights, SavedLogSoftmax, TwGrpoCfg};
use tokenmath_core::{Backend, Exec, Mat, MatMut};
use tokenmath_testutil::Rng;

fn logits(rows: usize, cols: usize) -> (Vec<f32>, Vec<i32>) {
    let mut rng = Rng::new(20_260_101);
    let mut x = vec![0.0f32; rows * cols];
    let mut targets = Vec::with_capacity(rows);
    for row in x.chunks_exact_mut(cols) {
        let a = 1.4 + 0.6 * rng.symmetric();
        let top = 12.5 + 7.5 * rng.symmetric();
        let offset = (rng.next_u64() % cols as u64) as usize;
        let mut stride = 1 + (rng.next_u64() % cols as u64) as usize;
        while gcd(stride, cols) != 1 {
            stride += 1;
        }
        let mut col = offset;
        for k in 0..cols {
            row[col] = top - a * ((k + 1) as f32).ln() + rng.symmetric();
            col = (col + stride) % cols;
        }
        targets.push((rng.next_u64() % cols as u64) as i32);
    }
    (x, targets)
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

struct M<'a> {
    op: &'static str,
    threads: usize,
    run: Box<dyn FnMut() + 'a>,
    secs: Vec<f64>,
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("ROWS COLS REPS")).collect();
    let rows = args.first().copied().unwrap_or(2048);
    let cols = args.get(1).copied().unwrap_or(32768);
    let reps = args.get(2).copied().unwrap_or(15);
    let t = 128.min(rows);
    let g = 8;
    assert!(rows.is_multiple_of(t) && (rows / t).is_multiple_of(g), "ROWS must be a multiple of 1024 (G = 8, T = 128)");
    let (x, targets) = logits(rows, cols);
    let xm = Mat::dense(&x, rows, cols).unwrap();
    let inputs = RowInputs { targets: Some(&targets), ..Default::default() };
    let mask = vec![1u8; rows];

    // Saved statistics for the seed kernels (one forward, untimed).
    let (mut lse, mut h, mut lp, mut mx, mut ls) =
        (vec![0.0; rows], vec![0.0; rows], vec![0.0; rows], vec![0.0; rows], vec![0.0; rows]);
    let out =
        FwdOut { lse: &mut lse, entropy: &mut h, logp: Some(&mut lp), max: Some(&mut mx), log_sum: Some(&mut ls) };
    stats_fwd(Exec::new(), xm, &inputs, out).unwrap();
    let (mx, ls) = (&mx, &ls);
    // One gradient buffer shared by the measurements that write one (they run one at a time).
    let dx = &RefCell::new(vec![0.0f32; rows * cols]);
    let g_logp = &vec![-1.0f32; rows];

    let mut ms: Vec<M<'_>> = Vec::new();
    for threads in [1usize, 2] {
        let exec = Exec::new().with_threads(threads);
        let inputs = &inputs;
        let mut bufs =
            (vec![0.0f32; rows], vec![0.0f32; rows], vec![0.0f32; rows], vec![0.0f32; rows], vec![0.0f32; rows]);
        ms.push(M {
            op: "logits_fwd",
            threads,
            run: Box::new(move || {
                let (a, b, c, d, e) = &mut bufs;
                let out = FwdOut { lse: a, entropy: b, logp: Some(c), max: Some(d), log_sum: Some(e) };
                black_box(stats_fwd(exec, xm, inputs, out).unwrap());
            }),
            secs: Vec::new(),
        });
        let mut bufs =
            (vec![0.0f32; rows], vec![0.0f32; rows], vec![0.0f32; rows], vec![0.0f32; rows], vec![0.0f32; rows]);
        ms.push(M {
            op: "logits_fwd_bwd",
            threads,
            run: Box::new(move || {
                let (a, b, c, d, e) = &mut bufs;
                let out = FwdOut { lse: a, entropy: b, logp: Some(c), max: Some(d), log_sum: Some(e) };
                stats_fwd(exec, xm, inputs, out).unwrap();
                let saved = Saved { max: d, log_sum: e, entropy: b };
                let up = Upstream { g_logp: Some(g_logp), ..Default::default() };
                let mut dx = dx.borrow_mut();
                stats_bwd(exec, xm, inputs, saved, up, MatMut::dense(&mut dx, rows, cols).unwrap()).unwrap();
                black_box(&dx[0]);
            }),
            secs: Vec::new(),
        });
        for (op, cfg) in
            [("dop_fwd_bwd", DopCfg::default()), ("dop_tail_fwd_bwd", DopCfg { lam_tail: -0.1, ..DopCfg::default() })]
        {
            let mut loss = vec![0.0f32; rows];
            let mut scratch = vec![DopSlot::default(); dop_scratch_len(exec, rows, cols, cfg.top_k)];
            ms.push(M {
                op,
                threads,
                run: Box::new(move || {
                    let mut dx = dx.borrow_mut();
                    let d = MatMut::dense(&mut dx, rows, cols).unwrap();
                    black_box(dop_loss_and_grad(exec, xm, inputs, &cfg, &mut scratch, &mut loss, d).unwrap());
                    black_box(&dx[0]);
                }),
                secs: Vec::new(),
            });
        }
        let mut w = vec![0.0f32; rows];
        let mask = &mask;
        let cfg = TwGrpoCfg::default();
        ms.push(M {
            op: "tw_grpo_weights",
            threads,
            run: Box::new(move || {
                let saved = SavedLogSoftmax { max: mx, log_sum: ls };
                black_box(tw_grpo_token_weights(exec, xm, saved, mask, t, &cfg, &mut w).unwrap());
            }),
            secs: Vec::new(),
        });
    }
    for m in &mut ms {
        (m.run)();
    }
    for _ in 0..reps {
        for m in &mut ms {
            let start = Instant::now();
            (m.run)();
            m.secs.push(start.elapsed().as_secs_f64());
        }
    }
    let median = |s: &[f64]| {
        let mut s = s.to_vec();
        s.sort_by(f64::total_cmp);
        s[s.len() / 2]
    };
    println!(
        "f32 logits [{rows}, {cols}], backend {}, median of {reps} interleaved repetitions\n",
        Backend::detect().name()
    );
    println!(
        "| op | threads | median ms | min ms | elements/s (median) | vs logits_fwd (medians) | vs logits_fwd (minima) \
         | vs logits_fwd_bwd (medians) | vs logits_fwd_bwd (minima) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let min = |s: &[f64]| s.iter().copied().fold(f64::INFINITY, f64::min);
    for m in &ms {
        let base = |op: &str| ms.iter().find(|b| b.op == op && b.threads == m.threads).unwrap();
        let (fwd, fb) = (base("logits_fwd"), base("logits_fwd_bwd"));
        let (tm, nm) = (median(&m.secs), min(&m.secs));
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.3e} | {:.0}% | {:.0}% | {:.0}% | {:.0}% |",
            m.op,
            m.threads,
            tm * 1e3,
            nm * 1e3,
            (rows * cols) as f64 / tm,
            100.0 * median(&fwd.secs) / tm,
            100.0 * min(&fwd.secs) / nm,
            100.0 * median(&fb.secs) / tm,
            100.0 * min(&fb.secs) / nm
        );
    }
}
