//! `policy-timing`: wall-clock timing of one PPO policy-loss "forward + gradient" step, and of
//! this machine's copy bandwidth in the same run, one JSON line per measurement (the driver
//! behind `bench/compare/policy.py`).
//!
//! ```text
//! policy-timing --rows 1024 --cols 4096 --reps 11 --warmup 2 [--dump DIR]
//! ```
//!
//! # What is timed
//!
//! The step is `L = token_mean(ℓ_pg + β·k3)` and `g_logp = ∂L/∂logp` for one `[B, T]` batch
//! ([`PolicyProblem`], about 90% of the tokens valid), single-threaded, with verl's defaults
//! (`ClipCfg::default()`: ε = 0.2, dual clip c = 3, log-ratio clamp ±20; `KlCfg::default()`:
//! k3 with verl's clamps; β = 0.001; token-mean with local counts):
//!
//! | `path` | calls |
//! |---|---|
//! | `fused` | `ppo_clip_kl_step` (one pass, after a count of the mask) |
//! | `composed` | `ppo_clip_kl_loss` → `agg_loss` → `agg_chain_inplace` |
//!
//! Both write `ℓ` and `g_logp` (into 64-byte aligned buffers, as a PyTorch CPU tensor is) and
//! return `L` and the verl metrics; before timing the driver checks that the two paths give the
//! same bits (and exits with an error if not).
//!
//! `copy_bw` times `copy_from_slice` between two buffers of `min_bytes` each (the size of the
//! step's arrays, see below), single-threaded: the machine's streaming bandwidth for the same
//! amount of data, counted as bytes read + bytes written (`2·min_bytes`).
//!
//! Each measurement runs `--warmup` untimed repetitions, then `--reps` timed ones that go
//! round-robin over the measurements (interference from other processes spreads over all
//! of them); the median and the minimum are reported.
//!
//! # How bytes are counted
//!
//! * `min_bytes` = `B·T·25`: what any implementation must move at least — read `logp`,
//!   `old_logp`, `adv`, `ref_logp` (4 × 4 B) and the mask (1 B), write `ℓ` and `g_logp`
//!   (2 × 4 B). `gb_per_s = min_bytes / median_s / 1e9` is the figure compared with
//!   `copy_bw`.
//! * `moved_bytes`: what the path actually streams from and to memory, counting every pass
//!   (a write counts once, as in `copy_bw`; the read-for-ownership of a normal store is not
//!   counted). `fused`: the count of the mask (1 B) + one pass of 25 B = 26 B/token.
//!   `composed`: the kernel (25 B), `agg_loss` (count of the mask, then `ℓ` and the mask:
//!   6 B), `agg_chain_inplace` (count of the mask, then per row the mask twice and `g` read
//!   and written: 11 B) = 42 B/token. `gb_per_s_moved = moved_bytes / median_s / 1e9`.
//!
//! # Output
//!
//! ```text
//! {"impl":"tokenmath","op":"policy_step","path":"fused","rows":1024,"cols":4096,"tokens":…,
//!  "valid_tokens":…,"threads":1,"median_s":…,"min_s":…,"tokens_per_s":…,"min_bytes":…,
//!  "moved_bytes":…,"gb_per_s":…,"gb_per_s_moved":…,"loss":…,"g_sum":…,"bits_hash":"…"}
//! {"impl":"tokenmath","op":"copy_bw","bytes":…,"median_s":…,"min_s":…,"gb_per_s":…}
//! ```
//!
//! `loss` is `L`, `g_sum` the `f64` sum of `g_logp`, `bits_hash` an FNV-1a hash of the bits of
//! `ℓ` and `g_logp`. With `--dump DIR` the inputs and outputs are also written to `DIR` as raw
//! little-endian arrays (`logp.f32`, `old_logp.f32`, `adv.f32`, `ref_logp.f32`, `mask.u8`,
//! `loss.f32`, `g_logp.f32`) with `meta.json` (shape, β, `L`, metrics), for the numpy check.

use std::error::Error;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;
use tokenmath_bench::policy_problem::{PolicyProblem, KL_COEF};
use tokenmath_bench::SEED;
use tokenmath_core::policy_loss::{
    agg_chain_inplace, agg_loss, ppo_clip_kl_loss, ppo_clip_kl_step, AggMode, AggNorm, ClipCfg, KlCfg, KlTerm, LossOut,
    PolicyInputs, StepStats,
};
use tokenmath_core::{Backend, Exec, TmError};

/// Bytes per token that any implementation must move (see the module docs).
const MIN_BYTES_PER_TOKEN: usize = 4 * 4 + 1 + 2 * 4;
/// Bytes per token the fused path streams: the mask count, then one pass.
const FUSED_BYTES_PER_TOKEN: usize = 1 + MIN_BYTES_PER_TOKEN;
/// Bytes per token the composed path streams: kernel, `agg_loss`, `agg_chain_inplace`.
const COMPOSED_BYTES_PER_TOKEN: usize = MIN_BYTES_PER_TOKEN + (1 + 4 + 1) + (1 + 1 + 1 + 8);

/// Times one PPO + k3 + token-mean forward/gradient step and the copy bandwidth; prints one
/// JSON line per measurement.
#[derive(Debug, Parser)]
#[command(name = "policy-timing")]
struct Args {
    /// `B`, responses.
    #[arg(long, default_value_t = 1024, value_parser = positive)]
    rows: usize,
    /// `T`, padded response length.
    #[arg(long, default_value_t = 4096, value_parser = positive)]
    cols: usize,
    /// Timed repetitions per measurement.
    #[arg(long, default_value_t = 11, value_parser = positive)]
    reps: usize,
    /// Untimed repetitions before the timed ones.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Seed of the generated batch.
    #[arg(long, default_value_t = SEED)]
    seed: u64,
    /// Also write the inputs and outputs to this directory (for the numpy check).
    #[arg(long)]
    dump: Option<PathBuf>,
    /// Backends to time, comma-separated: `auto` (the detected one), `portable`, `avx2-fma`,
    /// `avx512`. Each gets its `fused` and `composed` measurements, in the same run as the copy.
    #[arg(long, default_value = "auto", value_delimiter = ',', value_parser = backend)]
    backends: Vec<Backend>,
}

fn backend(s: &str) -> Result<Backend, String> {
    let b = match s {
        "auto" => Backend::detect(),
        name => Backend::from_name(name).ok_or_else(|| format!("unknown backend {name:?}"))?,
    };
    if b.is_supported() {
        Ok(b)
    } else {
        Err(format!("this CPU cannot run backend {s:?}"))
    }
}

fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("expected a positive integer, got {s:?}")),
    }
}

/// Output buffers of one step, 64-byte aligned (as a PyTorch CPU tensor is).
struct Outs {
    loss_buf: Vec<f32>,
    g_buf: Vec<f32>,
    n: usize,
}

/// The offset of the first 64-byte aligned element of `v`.
fn align64(v: &[f32]) -> usize {
    v.as_ptr().align_offset(64)
}

impl Outs {
    fn new(n: usize) -> Outs {
        Outs { loss_buf: vec![0.0; n + 16], g_buf: vec![0.0; n + 16], n }
    }

    fn loss(&self) -> &[f32] {
        &self.loss_buf[align64(&self.loss_buf)..][..self.n]
    }

    fn g(&self) -> &[f32] {
        &self.g_buf[align64(&self.g_buf)..][..self.n]
    }

    fn out(&mut self) -> LossOut<'_> {
        let (a, b) = (align64(&self.loss_buf), align64(&self.g_buf));
        LossOut { loss: &mut self.loss_buf[a..][..self.n], dloss_dlogp: &mut self.g_buf[b..][..self.n] }
    }
}

/// The step, by the fused entry point.
fn step_fused(exec: Exec, inp: &PolicyInputs<'_>, kl: &KlTerm<'_>, o: &mut Outs) -> Result<StepStats, TmError> {
    ppo_clip_kl_step(exec, inp, &ClipCfg::default(), kl, AggMode::TokenMean, &AggNorm::default(), o.out())
}

/// The step, as the three calls of the module docs.
fn step_composed(exec: Exec, inp: &PolicyInputs<'_>, kl: &KlTerm<'_>, o: &mut Outs) -> Result<StepStats, TmError> {
    let out = o.out();
    let (policy, klst) =
        ppo_clip_kl_loss(exec, inp, &ClipCfg::default(), kl, LossOut { loss: out.loss, dloss_dlogp: out.dloss_dlogp })?;
    let norm = AggNorm::default();
    let loss = agg_loss(exec, inp.shape, inp.mask, out.loss, AggMode::TokenMean, &norm)?;
    agg_chain_inplace(exec, inp.shape, inp.mask, AggMode::TokenMean, &norm, out.dloss_dlogp)?;
    Ok(StepStats { loss, policy, kl: klst })
}

/// FNV-1a over the bits of the arrays.
fn bits_hash(arrays: &[&[f32]]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for a in arrays {
        for x in a.iter() {
            for b in x.to_bits().to_le_bytes() {
                h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    h
}

/// One measurement: `run` executes it once and returns the seconds it took.
struct Measurement<'a> {
    name: &'static str,
    backend: Option<Backend>,
    run: Box<dyn FnMut() -> Result<f64, TmError> + 'a>,
    secs: Vec<f64>,
}

impl Measurement<'_> {
    /// `(median, min)` of the timed repetitions.
    fn stats(&self) -> (f64, f64) {
        let mut s = self.secs.clone();
        s.sort_by(f64::total_cmp);
        let mid = s.len() / 2;
        let median = if s.len() % 2 == 1 { s[mid] } else { 0.5 * (s[mid - 1] + s[mid]) };
        (median, s[0])
    }
}

fn timed(body: impl FnOnce() -> Result<(), TmError>) -> Result<f64, TmError> {
    let start = Instant::now();
    body()?;
    Ok(start.elapsed().as_secs_f64())
}

fn write_f32(path: &Path, x: &[f32]) -> std::io::Result<()> {
    std::fs::write(path, x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>())
}

/// Writes the inputs, the outputs and `meta.json` to `dir`.
fn dump(dir: &Path, p: &PolicyProblem, o: &Outs, st: &StepStats) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    write_f32(&dir.join("logp.f32"), &p.logp)?;
    write_f32(&dir.join("old_logp.f32"), &p.old_logp)?;
    write_f32(&dir.join("adv.f32"), &p.adv)?;
    write_f32(&dir.join("ref_logp.f32"), &p.ref_logp)?;
    std::fs::write(dir.join("mask.u8"), &p.mask)?;
    write_f32(&dir.join("loss.f32"), o.loss())?;
    write_f32(&dir.join("g_logp.f32"), o.g())?;
    let (ps, ks) = (&st.policy, &st.kl);
    let meta = format!(
        "{{\"rows\":{},\"cols\":{},\"kl_coef\":{},\"loss\":{},\"valid_tokens\":{},\"clipfrac\":{},\
         \"clipfrac_lower\":{},\"ppo_kl\":{},\"kl_mean\":{}}}\n",
        p.shape.rows,
        p.shape.cols,
        KL_COEF,
        st.loss,
        ps.valid_tokens,
        ps.clipfrac(),
        ps.clipfrac_lower(),
        ps.ppo_kl(),
        ks.mean(),
    );
    std::fs::write(dir.join("meta.json"), meta)
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    let p = PolicyProblem::generate(args.rows, args.cols, args.seed);
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

    // The two paths, on every backend, agree bit for bit (checked once, untimed).
    let portable = Exec::new().with_backend(Backend::Portable);
    let (mut fused, mut composed) = (Outs::new(n), Outs::new(n));
    let st = step_fused(portable, &inp, &kl, &mut fused)?;
    let hash = bits_hash(&[fused.loss(), fused.g()]);
    for &b in &args.backends {
        let exec = Exec::new().with_backend(b);
        let st_f = step_fused(exec, &inp, &kl, &mut fused)?;
        let st_c = step_composed(exec, &inp, &kl, &mut composed)?;
        for (path, s, o) in [("fused", st_f, &fused), ("composed", st_c, &composed)] {
            if s != st || bits_hash(&[o.loss(), o.g()]) != hash {
                return Err(format!("the {path} step on {} differs from the portable one", b.name()).into());
            }
        }
    }
    if let Some(dir) = &args.dump {
        dump(dir, &p, &fused, &st)?;
    }
    let g_sum: f64 = fused.g().iter().map(|&x| x as f64).sum();

    let min_bytes = n * MIN_BYTES_PER_TOKEN;
    let src = vec![1u8; min_bytes];
    let mut dst = vec![0u8; min_bytes];
    let (inp, kl) = (&inp, &kl);
    let dst_r = &mut dst;
    let mut ms = Vec::new();
    for &b in &args.backends {
        let exec = Exec::new().with_backend(b);
        let (mut fused_o, mut composed_o) = (Outs::new(n), Outs::new(n));
        ms.push(Measurement {
            name: "fused",
            backend: Some(b),
            run: Box::new(move || {
                timed(|| {
                    step_fused(exec, inp, kl, &mut fused_o).map(|s| {
                        black_box(s);
                    })
                })
            }),
            secs: Vec::new(),
        });
        ms.push(Measurement {
            name: "composed",
            backend: Some(b),
            run: Box::new(move || {
                timed(|| {
                    step_composed(exec, inp, kl, &mut composed_o).map(|s| {
                        black_box(s);
                    })
                })
            }),
            secs: Vec::new(),
        });
    }
    ms.push(Measurement {
        name: "copy_bw",
        backend: None,
        run: Box::new(|| {
            timed(|| {
                dst_r.copy_from_slice(black_box(&src));
                black_box(&mut *dst_r);
                Ok(())
            })
        }),
        secs: Vec::new(),
    });
    for m in &mut ms {
        for _ in 0..args.warmup {
            (m.run)()?;
        }
    }
    for _ in 0..args.reps {
        for m in &mut ms {
            let s = (m.run)()?;
            m.secs.push(s);
        }
    }

    let (rows, cols) = (args.rows, args.cols);
    for m in &ms {
        let (median, min) = m.stats();
        if m.name == "copy_bw" {
            let bytes = 2 * min_bytes;
            println!(
                "{{\"impl\":\"tokenmath\",\"op\":\"copy_bw\",\"bytes\":{bytes},\"median_s\":{median},\"min_s\":{min},\
                 \"gb_per_s\":{}}}",
                bytes as f64 / median / 1e9
            );
            continue;
        }
        let moved = n * if m.name == "fused" { FUSED_BYTES_PER_TOKEN } else { COMPOSED_BYTES_PER_TOKEN };
        let backend = m.backend.map_or("", |b| b.name());
        println!(
            "{{\"impl\":\"tokenmath\",\"op\":\"policy_step\",\"path\":\"{}\",\"backend\":\"{backend}\",\"rows\":{rows},\"cols\":{cols},\
             \"tokens\":{n},\"valid_tokens\":{},\"threads\":1,\"median_s\":{median},\"min_s\":{min},\
             \"tokens_per_s\":{},\"min_bytes\":{min_bytes},\"moved_bytes\":{moved},\"gb_per_s\":{},\
             \"gb_per_s_moved\":{},\"loss\":{},\"g_sum\":{g_sum},\"bits_hash\":\"{hash:016x}\"}}",
            m.name,
            p.valid,
            n as f64 / median,
            min_bytes as f64 / median / 1e9,
            moved as f64 / median / 1e9,
            st.loss,
        );
    }
    Ok(())
}
