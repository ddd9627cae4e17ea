//! Times E3B's step (bonus + Sherman–Morrison update of a `d×d` inverse) for
//! `bench/compare/e3b.py`: `e3b_timing D STEPS` prints `d steps ns_per_step last_bonus sum_bonus`.
//! The features are the deterministic sequence the Python side generates.

use tokenmath_core::exploration::{E3b, E3bCfg};

fn phi(t: usize, d: usize, out: &mut [f32]) {
    let s = 1.0 / (d as f32).sqrt();
    for (i, v) in out.iter_mut().enumerate() {
        *v = (((t * 1_000_003 + i * 7919) % 2001) as f32 / 1000.0 - 1.0) * s;
    }
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("D STEPS")).collect();
    let (d, steps) = (args[0], args[1]);
    let feats: Vec<Vec<f32>> = (0..steps)
        .map(|t| {
            let mut v = vec![0.0f32; d];
            phi(t, d, &mut v);
            v
        })
        .collect();
    let mut c = vec![0.0f32; d * d];
    let mut u = vec![0.0f32; d];
    let cfg = E3bCfg { zero_first_step: false, ..E3bCfg::default() };
    // Warm-up pass, then the timed pass from a reset.
    let mut e = E3b::new(cfg, d, &mut c).unwrap();
    for f in feats.iter().take(steps.min(8)) {
        e.bonus_and_update(f, &mut u).unwrap();
    }
    e.reset();
    let (mut last, mut sum) = (0.0f32, 0.0f64);
    let t0 = std::time::Instant::now();
    for f in &feats {
        last = e.bonus_and_update(f, &mut u).unwrap();
        sum += last as f64;
    }
    let ns = t0.elapsed().as_nanos() as f64 / steps as f64;
    println!("{d} {steps} {ns:.1} {last:e} {sum:e}");
}
