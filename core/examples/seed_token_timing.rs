//! Single-thread timing of the per-token seed kernels (`tokenmath_core::seed`) on one
//! `[B, T]` batch, next to this machine's copy bandwidth for the same bytes, measured in the
//! same run (round-robin repetitions, so interference spreads over all measurements).
//!
//! ```text
//! cargo run --release -p tokenmath-core --example seed_token_timing -- [ROWS COLS REPS]   (default 1024 4096 11)
//! ```
//!
//! The batch is the policy benchmark's shape: response lengths uniform in `[0.8·T, T]` (a
//! valid prefix per row), entropies `8·u²` nats, one advantage per row uniform in `[−2, 2)`,
//! binary outcome scores at each row's last token. "Min bytes" is what any implementation must
//! read and write once per token; the copy bandwidth is `copy_from_slice` of that many bytes,
//! counted as read + written. Prints a Markdown table; on Linux it adds this thread's CPU
//! time (`/proc/thread-self/schedstat`, tick resolution, so only for the longer kernels),
//! which leaves out the time other processes held the core on a shared machine.

use std::hint::black_box;
use std::time::Instant;

use tokenmath_core::policy_loss::{BatchShape, LossOut, PolicyInputs};
use tokenmath_core::seed::hapo::*;
use tokenmath_core::seed::rmt::*;
use tokenmath_core::seed::tw_grpo::*;
use tokenmath_core::seed::*;
use tokenmath_core::Exec;
use tokenmath_reference::rng::SplitMix64;

struct Batch {
    shape: BatchShape,
    mask: Vec<u8>,
    entropy: Vec<f32>,
    adv: Vec<f32>,
    rewards: Vec<f32>,
    logp: Vec<f32>,
    old_logp: Vec<f32>,
}

fn batch(rows: usize, cols: usize) -> Batch {
    let n = rows * cols;
    let mut rng = SplitMix64::new(0x5EED_1061_7500_0014);
    let (mut mask, mut entropy, mut adv, mut rewards) = (vec![0u8; n], vec![0f32; n], vec![0f32; n], vec![0f32; n]);
    let (mut logp, mut old_logp) = (vec![0f32; n], vec![0f32; n]);
    for b in 0..rows {
        let len = cols - rng.below_mod(cols / 5 + 1);
        let a = 4.0 * rng.next_f32() - 2.0;
        let correct = rng.below_mod(2) as f32;
        for i in b * cols..b * cols + len {
            let u = rng.next_f32();
            entropy[i] = 8.0 * u * u;
            adv[i] = a;
            mask[i] = 1;
            old_logp[i] = -3.0 * rng.next_f32();
            logp[i] = old_logp[i] + 0.2 * rng.next_f32() - 0.1;
        }
        if len > 0 {
            rewards[b * cols + len - 1] = correct;
        }
    }
    Batch { shape: BatchShape::new(rows, cols), mask, entropy, adv, rewards, logp, old_logp }
}

type Job<'a> = Box<dyn FnMut() + 'a>;

/// This thread's CPU time in seconds (Linux `/proc/thread-self/schedstat`), or `None`: on a
/// shared machine it leaves out the time other processes held the core.
fn cpu_time() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(s.split_whitespace().next()?.parse::<f64>().ok()? * 1e-9)
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("numbers: ROWS COLS REPS")).collect();
    let (rows, cols, reps) = (
        args.first().copied().unwrap_or(1024),
        args.get(1).copied().unwrap_or(4096),
        args.get(2).copied().unwrap_or(11),
    );
    let b = batch(rows, cols);
    let n = rows * cols;
    let exec = Exec::new();
    let theta = top_entropy_threshold(exec, b.shape, &b.mask, &b.entropy, 0.2).unwrap();
    let keep_rows = vec![1u8; rows];
    let (mut keep, mut tok, mut keep_r, mut adv_out) = (vec![0u8; n], vec![0u8; n], vec![0u8; rows], vec![0f32; n]);
    let (mut src, mut dst) = (vec![1u8; 32 * n], vec![0u8; 32 * n]);
    let (mut norm_scratch, mut h_hat) = (vec![0f64; hapo_entropy_norm_scratch_len(n)], vec![0f32; n]);
    let groups: Vec<u32> = (0..rows as u32).map(|r| r / 8).collect();
    let mut hapo_adv = vec![0f32; n];
    let (eps_low, eps_high) = (vec![0.2f32; n], vec![0.28f32; n]);
    let (mut loss, mut dloss) = (vec![0f32; n], vec![0f32; n]);
    let h_hat_in: Vec<f32> = b.entropy.iter().map(|&e| e / 4.0 - 1.0).collect();
    let ratio: Vec<f32> = b.logp.iter().zip(&b.old_logp).map(|(a, o)| (a - o).exp()).collect();
    let (mut clip_lo, mut clip_hi, mut redist) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
    let (mut tw_grad, mut ntp_grad, mut tiers) = (vec![0f32; n], vec![0f32; n], vec![0u8; n]);
    let rl_positions: Vec<u8> = (0..n).map(|i| (i % 3 == 0) as u8).collect();

    // (name, min bytes per token, job)
    let mut jobs: Vec<(&str, usize, Job<'_>)> = vec![
        (
            "top_entropy_threshold (ρ = 0.2; 2–3 passes)",
            5,
            Box::new(|| {
                black_box(top_entropy_threshold(exec, b.shape, &b.mask, &b.entropy, 0.2).unwrap());
            }),
        ),
        (
            "top_entropy_mask",
            6,
            Box::new(|| {
                black_box(top_entropy_mask(exec, b.shape, &b.mask, &b.entropy, theta, &mut keep).unwrap());
            }),
        ),
        (
            "d3s_token_mask (K = 0.2; 2–4 passes)",
            10,
            Box::new(|| {
                let inp = D3sTokenInputs {
                    shape: b.shape,
                    mask: &b.mask,
                    adv: &b.adv,
                    entropy: &b.entropy,
                    keep_rows: &keep_rows,
                };
                black_box(d3s_token_mask(exec, &inp, 0.2, &mut tok).unwrap());
            }),
        ),
        (
            "nsr_advantage (W-REINFORCE)",
            13,
            Box::new(|| {
                let out = NsrOut { keep_rows: &mut keep_r, adv: &mut adv_out };
                nsr_advantage(exec, b.shape, &b.mask, &b.rewards, &b.rewards, &NsrCfg::default(), out).unwrap();
                black_box(&adv_out);
            }),
        ),
        (
            "hapo_entropy_norm (q = 0.8)",
            9,
            Box::new(|| {
                let cfg = HapoNormCfg::default();
                black_box(
                    hapo_entropy_norm(exec, &b.entropy, Some(&b.mask), &cfg, &mut norm_scratch, &mut h_hat).unwrap(),
                );
            }),
        ),
        (
            "hapo_token_group_advantage (G = 8)",
            9,
            Box::new(|| {
                let cfg = HapoAdvCfg::default();
                hapo_token_group_advantage(exec, &b.rewards, &b.mask, cols, &groups, &cfg, &mut hapo_adv).unwrap();
                black_box(&hapo_adv);
            }),
        ),
        (
            "hapo_loss (per-token clip widths)",
            29,
            Box::new(|| {
                let inp = PolicyInputs {
                    shape: b.shape,
                    logp: &b.logp,
                    old_logp: &b.old_logp,
                    adv: &b.adv,
                    mask: &b.mask,
                    is_weights: None,
                };
                let out = LossOut { loss: &mut loss, dloss_dlogp: &mut dloss };
                black_box(hapo_loss(exec, &inp, &eps_low, &eps_high, Some(10.0), out).unwrap());
            }),
        ),
        (
            "hapo_adaptive_clip",
            12,
            Box::new(|| {
                hapo_adaptive_clip(exec, &h_hat_in, 0.2, 0.28, 1.0, &mut clip_lo, &mut clip_hi).unwrap();
                black_box(&clip_lo);
            }),
        ),
        (
            "hapo_redistribute",
            24,
            Box::new(|| {
                hapo_redistribute(exec, &b.adv, &h_hat_in, &ratio, &eps_low, &eps_high, 1.0, &mut redist).unwrap();
                black_box(&redist);
            }),
        ),
        (
            "tw_grpo_loss (with gradient)",
            13,
            Box::new(|| {
                black_box(tw_grpo_loss(exec, &b.mask, &b.entropy, &ratio, Some(&mut tw_grad)).unwrap());
            }),
        ),
        (
            "entropy_tiers (RMT, q = 0.2 / 0.8)",
            6,
            Box::new(|| {
                black_box(entropy_tiers(exec, b.shape, &b.mask, &b.entropy, (0.2, 0.8), &mut tiers).unwrap());
            }),
        ),
        (
            "ntp_masked_loss (RMT)",
            10,
            Box::new(|| {
                black_box(ntp_masked_loss(exec, b.shape, &b.mask, &rl_positions, &b.logp, &mut ntp_grad).unwrap());
            }),
        ),
    ];
    let sizes: Vec<usize> = jobs.iter().map(|j| j.1 * n).collect();
    let mut times = vec![Vec::new(); jobs.len()];
    let mut copy_times = vec![Vec::new(); jobs.len()];
    let (mut cpu, mut copy_cpu) = (vec![Vec::new(); jobs.len()], vec![Vec::new(); jobs.len()]);
    for rep in 0..reps + 2 {
        for (i, (_, _, job)) in jobs.iter_mut().enumerate() {
            let (t, c0) = (Instant::now(), cpu_time());
            job();
            let (dt, c1) = (t.elapsed().as_secs_f64(), cpu_time());
            dst[..sizes[i]].copy_from_slice(&src[..sizes[i]]);
            black_box(&dst);
            let (dc, c2) = (t.elapsed().as_secs_f64() - dt, cpu_time());
            if rep >= 2 {
                times[i].push(dt);
                copy_times[i].push(dc);
                if let (Some(c0), Some(c1), Some(c2)) = (c0, c1, c2) {
                    cpu[i].push(c1 - c0);
                    copy_cpu[i].push(c2 - c1);
                }
            }
        }
        src[rep % 7] ^= 1;
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    println!("[{rows}, {cols}] = {n} tokens, one thread, median of {reps} (copy: `copy_from_slice` of the min bytes, read + write)\n");
    println!("| kernel | median ms (wall / CPU) | min bytes/token | GB/s (min bytes) | copy GB/s | of copy bandwidth (wall / CPU) |");
    println!("|---|---|---|---|---|---|");
    for (i, (name, bpt, _)) in jobs.iter().enumerate() {
        let (t, c) = (median(&mut times[i]), median(&mut copy_times[i]));
        let gbs = (bpt * n) as f64 / t / 1e9;
        let copy = 2.0 * sizes[i] as f64 / c / 1e9;
        let (tc, cc) =
            if cpu[i].is_empty() { (f64::NAN, f64::NAN) } else { (median(&mut cpu[i]), median(&mut copy_cpu[i])) };
        // schedstat advances at scheduler ticks: CPU times below a few ms are not meaningful.
        let cpu_cols = if tc >= 0.01 && cc > 0.0 {
            (format!("{:.2}", tc * 1e3), format!("{:.0}%", 100.0 * cc / tc))
        } else {
            ("n/a".into(), "n/a".into())
        };
        println!(
            "| {name} | {:.2} / {} | {bpt} | {gbs:.2} | {copy:.2} | {:.0}% / {} |",
            t * 1e3,
            cpu_cols.0,
            100.0 * gbs / copy,
            cpu_cols.1
        );
    }
}
