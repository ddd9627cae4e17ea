//! Criterion benchmark of one PPO policy-loss "forward + gradient" step over `[1024, 4096]`
//! tokens (4M, about 90% valid), single thread: `L = token_mean(ℓ_pg + β·k3)` and
//! `g_logp = ∂L/∂logp` with verl's defaults (clip ε = 0.2, dual clip c = 3, log-ratio clamp
//! ±20, k3 with verl's clamps, β = 0.001).
//!
//! * `policy_step/fused/<backend>` — `ppo_clip_kl_step` (one pass after a count of the mask);
//! * `policy_step/composed/<backend>` — `ppo_clip_kl_loss` → `agg_loss` → `agg_chain_inplace`;
//!
//! each on every backend this CPU supports (`portable`, `avx2-fma`, `avx512`);
//! * `policy_step/copy` — `copy_from_slice` of a buffer as large as the step's arrays
//!   (`25 B/token`), the machine's streaming bandwidth for comparison.
//!
//! Throughput is reported in bytes: the 25 B/token any implementation must move (four `f32`
//! inputs and the `u8` mask read, `ℓ` and `g_logp` written) for the steps, and read + write
//! for the copy, so the GB/s figures compare directly (the `policy-timing` binary prints the
//! same comparison as JSON). The data is the `policy-timing` batch (`src/policy_problem.rs`,
//! `SEED`). Run with `cargo bench -p tokenmath-bench --bench policy`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use tokenmath_bench::policy_problem::{PolicyProblem, KL_COEF};
use tokenmath_bench::SEED;
use tokenmath_core::policy_loss::{
    agg_chain_inplace, agg_loss, ppo_clip_kl_loss, ppo_clip_kl_step, AggMode, AggNorm, ClipCfg, KlCfg, KlTerm, LossOut,
    PolicyInputs,
};
use tokenmath_core::{Backend, Exec};

const ROWS: usize = 1024;
const COLS: usize = 4096;

fn policy(c: &mut Criterion) {
    let p = PolicyProblem::generate(ROWS, COLS, SEED);
    let n = p.tokens();
    let inp = PolicyInputs {
        shape: p.shape,
        logp: &p.logp,
        old_logp: &p.old_logp,
        adv: &p.adv,
        mask: &p.mask,
        is_weights: None,
    };
    let kl = KlTerm { ref_logp: &p.ref_logp, cfg: KlCfg::default(), coef: KL_COEF };
    let (cfg, norm, mode) = (ClipCfg::default(), AggNorm::default(), AggMode::TokenMean);
    let (mut loss, mut g) = (vec![0.0f32; n], vec![0.0f32; n]);
    let bytes = n * (4 * 4 + 1 + 2 * 4);
    assert!(p.valid > n / 2, "the batch is mostly valid tokens");

    let mut group = c.benchmark_group(format!("policy_step/{ROWS}x{COLS}"));
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Bytes(bytes as u64));
    for backend in Backend::all_supported() {
        let exec = Exec::new().with_backend(backend);
        group.bench_function(format!("fused/{}", backend.name()), |b| {
            b.iter(|| {
                let out = LossOut { loss: &mut loss, dloss_dlogp: &mut g };
                ppo_clip_kl_step(exec, &inp, &cfg, &kl, mode, &norm, out).unwrap()
            })
        });
        group.bench_function(format!("composed/{}", backend.name()), |b| {
            b.iter(|| {
                let st =
                    ppo_clip_kl_loss(exec, &inp, &cfg, &kl, LossOut { loss: &mut loss, dloss_dlogp: &mut g }).unwrap();
                let l = agg_loss(exec, p.shape, &p.mask, &loss, mode, &norm).unwrap();
                agg_chain_inplace(exec, p.shape, &p.mask, mode, &norm, &mut g).unwrap();
                (st, l)
            })
        });
    }
    // The copy moves `bytes` in and `bytes` out: count both, as for the step.
    let src = vec![1u8; bytes];
    let mut dst = vec![0u8; bytes];
    group.throughput(Throughput::Bytes(2 * bytes as u64));
    group.bench_function("copy", |b| b.iter(|| dst.copy_from_slice(std::hint::black_box(&src))));
    group.finish();
}

criterion_group!(benches, policy);
criterion_main!(benches);
