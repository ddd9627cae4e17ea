//! `tokenmath`: row-wise softmax statistics and their gradient on a batch of logits,
//! checked against the `f64` reference.
//!
//! * `tokenmath` / `tokenmath run [options]` — the embedded, seeded default batch
//!   ([`default_batch`]), followed by one policy-gradient step (`--algo`, [`step`]);
//! * `tokenmath stats --input FILE.safetensors` — a logits dump ([`input`]).
//! * `tokenmath replay --input rollout.safetensors --algo …` — one policy step recomputed on a
//!   trainer's rollout dump, with the per-token arrays (`--out`) and an HTML report
//!   (`--report`) ([`replay`], [`rollout`], [`html_report`]).
//! * `tokenmath commit` / `tokenmath verify` — Merkle commitments over token fingerprints
//!   and their inclusion proofs ([`fingerprint`]).
//!
//! `run` and `stats` compute the forward and backward ([`run`]) and print a summary
//! ([`report`]); with `--device wgpu|cuda` they also run both on a GPU and compare every
//! value with the CPU's ([`device`]; in a build with the cargo feature `gpu`, or `cuda`).
//! Exit codes: 0 when every check against the reference (and the GPU comparison) passes, 1
//! when one fails, 2 for usage, input and device errors ([`error::CliError`]).

mod default_batch;
#[cfg(feature = "gpu")]
mod device;
#[cfg(not(feature = "gpu"))]
#[path = "no_device.rs"]
mod device;
mod error;
mod fingerprint;
mod html_report;
mod input;
mod progress;
mod replay;
mod report;
mod rollout;
mod run;
mod seed_algos;
mod step;
mod tokenizers;

use std::borrow::Cow;
use std::ops::Range;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tokenmath_core::{bf16, f16, Backend, DType, Exec};

use crate::default_batch::{DefaultBatch, Logits, DEFAULT_ROWS, DEFAULT_SEED, DEFAULT_VOCAB};
use crate::error::CliError;
use crate::report::Description;
use crate::run::Job;
use crate::step::{Algo, StepCfg};

/// Log-sum-exp, entropy, target log-prob and their gradient for batches of logits,
/// checked against an f64 reference.
///
/// Without a subcommand, runs on the embedded default batch (same as `tokenmath run`).
#[derive(Parser)]
#[command(name = "tokenmath", version, args_conflicts_with_subcommands = true, after_long_help = SEED_ABOUT)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run on the embedded default batch, generated from a seed (the default).
    #[command(after_long_help = SEED_ABOUT)]
    Run(RunArgs),
    /// Run on the logits (and labels) stored in a safetensors file.
    Stats(StatsArgs),
    /// Recompute one policy step on a rollout dump; write per-token arrays and an HTML report.
    #[command(long_about = REPLAY_ABOUT)]
    Replay(ReplayArgs),
    /// Commit to token fingerprints (Merkle root over embeddings) and write inclusion proofs.
    Commit(fingerprint::CommitArgs),
    /// Verify inclusion-proof openings against a signed tree head.
    Verify(fingerprint::VerifyArgs),
    /// Tokenizer inequity metrics (CTC, token and byte premium, bytes per token, whitespace)
    /// of Hugging Face tokenizers on a parallel corpus.
    Tokenizers(tokenizers::TokenizersArgs),
}

/// Options of the default batch.
#[derive(Args)]
struct RunArgs {
    /// Rows (tokens) in the batch.
    #[arg(long, default_value_t = DEFAULT_ROWS, value_parser = positive)]
    rows: usize,
    /// Vocabulary size.
    #[arg(long, default_value_t = DEFAULT_VOCAB, value_parser = positive)]
    vocab: usize,
    /// Seed of the generator (decimal or 0x-prefixed hexadecimal).
    #[arg(long, default_value = DEFAULT_SEED, value_parser = seed)]
    seed: u64,
    /// Storage type of the logits (generated in f32, then rounded).
    #[arg(long, value_enum, default_value_t = DtypeArg::F32)]
    dtype: DtypeArg,
    /// Algorithm of the policy-gradient step run after the statistics (the seed papers'
    /// methods: see "Seed methods" below).
    #[arg(long, value_enum, default_value_t = Algo::Grpo)]
    algo: Algo,
    /// TRL's `top_entropy_quantile` ρ ∈ (0, 1], with any --algo: only the valid tokens whose
    /// entropy is at least the (1 − ρ) linear quantile carry loss (the "80/20" mask; the
    /// normaliser still counts every valid token).
    #[arg(long, value_name = "RHO", value_parser = rho)]
    top_entropy_quantile: Option<f32>,
    /// Tokens per response in the policy step: the rows are `responses × response-len`
    /// [default: the largest divisor of --rows that is at most 8].
    #[arg(long, value_parser = positive)]
    response_len: Option<usize>,
    /// Responses per prompt (group size) in the policy step [default: the largest divisor
    /// of the number of responses that is at most 4].
    #[arg(long, value_parser = positive)]
    group_size: Option<usize>,
    #[command(flatten)]
    gpu: GpuArgs,
    #[command(flatten)]
    common: CommonArgs,
}

/// Options of `stats`.
#[derive(Args)]
struct StatsArgs {
    /// The safetensors file.
    #[arg(long, value_name = "FILE")]
    input: PathBuf,
    /// Name of the logits tensor ([N, V] or [B, T, V]; F32, BF16 or F16)
    /// [default: "logits", else the only floating-point tensor].
    #[arg(long, value_name = "NAME")]
    logits_key: Option<String>,
    /// Name of the labels tensor (I64 or I32, one per row; negative = no target)
    /// [default: "labels" if present, else no labels].
    #[arg(long, value_name = "NAME")]
    labels_key: Option<String>,
    #[command(flatten)]
    gpu: GpuArgs,
    #[command(flatten)]
    common: CommonArgs,
}

const SEED_ABOUT: &str = "\
Seed methods (--algo), on the default batch: each runs its full step and checks its loss (and \
its selections) against the f64 reference. Inputs the batch lacks are derived from it: a \
response's reward sits on its last valid token; HAPO's entropy normaliser and D3S's |A|·H use \
the forward's entropies; TW-GRPO's token weights stream over the group's own logit rows \
(position by position; temperature 1 only); NSR/W-REINFORCE call a response correct when its \
binary reward is 1.
  hapo         HAPO (CodeCompat sign): token-level group advantage, adaptive clip 0.2/0.2 \
(alpha 1), redistribution (beta 1), dual clip c = 10, token-mean
  tw_grpo      TRL GRPO advantages, PPO clip 0.2/0.28, loss sum(w·l)/sum(mask), alpha 1.7
  nsr          incorrect responses only, A = -1; verl PPO clip, token-mean
  w_reinforce  A = 0.1 on correct, -1 on incorrect responses; verl PPO clip, token-mean
  grpo_n       GRPO with A > 0 set to 0; PPO clip, k3 KL 0.001, token-mean
  d3s          schedule at p = 0: the max-variance half of the responses, then the top 20% \
of their tokens by |A|·H; PPO clip, k3 KL 0.001, token-mean over the kept tokens
--top-entropy-quantile RHO applies to every --algo (with distinct entropies it keeps exactly \
n - ceil((1 - RHO)(n - 1)) of the n valid tokens).";

const REPLAY_ABOUT: &str = "\
Recompute one policy-gradient step exactly on a rollout dump (safetensors), check it against \
the f64 reference, and print the loss, clip fractions, KL, entropy, gradient norm and \
advantage statistics.

Tensors read from --input (B responses of T tokens; other tensors are ignored):
  logits     [B, T, V]  F32/BF16/F16  logits[b, t] is the distribution tokens[b, t] was drawn from
                                      (already shifted); or instead:
  logp       [B, T]     float         precomputed log-probs of the tokens, and optionally
  entropy    [B, T]     float         precomputed entropies
  tokens     [B, T]     I64/I32       response token ids (required with logits; < V where mask = 1)
  mask       [B, T]     BOOL/U8/I8/I32/I64/F32, 0 or 1: the response mask (required)
  old_logp   [B, T]     float         optional: rollout log-probs (default: logp, on-policy)
  ref_logp   [B, T]     float         optional: reference log-probs, for the KL of grpo/rloo
  rewards    [B] or [B, T]  float     per response, or per token (summed over the response)
  group_ids  [B]        I64/I32       prompt of each response (or --group-size G)
float = F32, F64, BF16 or F16. Values at masked positions are not used.

--out writes, [B, T] unless noted: logp, entropy, advantage, ratio, clip_state (U8: 0 none, \
1 upper, 2 lower, 3 dual clip, 4 not in the loss), loss (per token), grad_logp (dL/dlogp), \
mask (U8, as the loss used it), advantage_seq [B], reward_seq [B].

Exit codes: 0 all checks pass, 1 a check against the reference fails, 2 bad input or usage.";

/// Options of `replay`.
#[derive(Args)]
struct ReplayArgs {
    /// The rollout dump (safetensors; tensor names above).
    #[arg(long, value_name = "FILE")]
    input: PathBuf,
    /// Algorithm of the step (every --algo of the main job but tw_grpo, whose token weights
    /// need every response's logits at once).
    #[arg(long, value_enum, default_value_t = Algo::Grpo)]
    algo: Algo,
    /// TRL's `top_entropy_quantile` ρ ∈ (0, 1]: only the valid tokens whose entropy is at least
    /// the (1 − ρ) linear quantile carry loss (needs logits or an `entropy` tensor).
    #[arg(long, value_name = "RHO", value_parser = rho)]
    top_entropy_quantile: Option<f32>,
    /// Responses per prompt, as consecutive blocks, when the dump has no `group_ids`.
    #[arg(long, value_parser = positive)]
    group_size: Option<usize>,
    /// Write every per-token array of the step to this safetensors file.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Write a self-contained HTML report (per-token heatmap, per-response table,
    /// histograms) to this file. Embeds the tokens of at most 65536 unmasked tokens (whole
    /// responses in order); the table and histograms cover all.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// A Hugging Face tokenizer.json to show decoded tokens in the report (ids otherwise).
    #[arg(long, value_name = "FILE")]
    tokenizer: Option<PathBuf>,
    #[command(flatten)]
    common: CommonArgs,
}

/// The GPU comparison of `run` and `stats`.
#[derive(Args)]
struct GpuArgs {
    /// Also run the statistics and gradient on a GPU and compare them with the CPU's:
    /// `cpu` (no GPU), `wgpu` (Vulkan/Metal/DX12; a build with the `gpu` feature) or `cuda`
    /// (a build with the `cuda` feature).
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
    /// The GPU's mode with `--device`: `canonical` (core's operation order, compared with
    /// core) or `fast` (the hardware exp, compared with the f64 reference under its error
    /// bound) [default: canonical].
    #[arg(long, value_enum)]
    gpu_mode: Option<GpuModeArg>,
}

impl GpuArgs {
    /// The GPU to compare with (`None`: none) and its mode; in a build without GPU support,
    /// an error that says how to build with it whenever either option is given.
    fn resolve(&self) -> Result<(Option<device::DeviceKind>, device::GpuMode), CliError> {
        Ok((self.device.gpu()?, GpuModeArg::mode(self.gpu_mode)?))
    }
}

/// Options shared by every command.
#[derive(Args)]
struct CommonArgs {
    /// Temperature applied to every row (finite, > 0, with 1/temperature finite: at least 3e-39).
    #[arg(long, default_value_t = 1.0, value_parser = temperature, allow_negative_numbers = true)]
    temperature: f32,
    /// Worker threads [default: the available parallelism].
    #[arg(long, value_parser = positive)]
    threads: Option<usize>,
    /// Kernel backend: `auto` (the fastest the CPU supports), `portable` (plain Rust, runs
    /// everywhere), `avx2-fma` (x86-64 AVX2 + FMA + F16C) or `avx512` (AVX-512 F/BW/DQ/VL on
    /// top of those). All give identical bits.
    #[arg(long, default_value = "auto", value_parser = ["auto", "portable", "avx2-fma", "avx512"])]
    backend: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum GpuModeArg {
    Canonical,
    Fast,
}

impl GpuModeArg {
    /// The mode of `--gpu-mode` (canonical when not given); without GPU support in this
    /// build, an error that says how to build with it.
    fn mode(arg: Option<GpuModeArg>) -> Result<device::GpuMode, CliError> {
        match arg {
            None => Ok(device::GpuMode::Canonical),
            Some(mode) if !cfg!(feature = "gpu") => {
                let name = if matches!(mode, GpuModeArg::Fast) { "fast" } else { "canonical" };
                Err(CliError::Usage(format!(
                    "--gpu-mode: this build has no GPU support; build with it: \
                     cargo run --release --features gpu -- --device wgpu --gpu-mode {name}"
                )))
            }
            Some(GpuModeArg::Canonical) => Ok(device::GpuMode::Canonical),
            Some(GpuModeArg::Fast) => Ok(device::GpuMode::Fast),
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum DeviceArg {
    Cpu,
    Wgpu,
    Cuda,
}

impl DeviceArg {
    /// The GPU to compare with (`None` for `cpu`); without GPU support in this build, an
    /// error that says how to build with it.
    fn gpu(self) -> Result<Option<device::DeviceKind>, CliError> {
        match self {
            DeviceArg::Cpu => Ok(None),
            #[cfg(feature = "gpu")]
            DeviceArg::Wgpu => Ok(Some(device::DeviceKind::Wgpu)),
            #[cfg(feature = "gpu")]
            DeviceArg::Cuda => Ok(Some(device::DeviceKind::Cuda)),
            #[cfg(not(feature = "gpu"))]
            DeviceArg::Wgpu | DeviceArg::Cuda => {
                let (name, feature) = if matches!(self, DeviceArg::Wgpu) { ("wgpu", "gpu") } else { ("cuda", "cuda") };
                Err(CliError::Device(format!(
                    "this build has no GPU support; build with it: \
                     cargo run --release --features {feature} -- --device {name}"
                )))
            }
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum DtypeArg {
    F32,
    Bf16,
    F16,
}

impl CommonArgs {
    fn exec(&self) -> Result<Exec, CliError> {
        let backend = match self.backend.as_str() {
            "auto" => Backend::detect(),
            name => Backend::from_name(name)
                .filter(|b| b.is_supported())
                .ok_or_else(|| CliError::Usage(format!("--backend {name}: not supported on this machine")))?,
        };
        let threads = self.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        Ok(Exec::new().with_backend(backend).with_threads(threads))
    }
}

/// Parses a `u64` written in decimal or with a `0x` prefix in hexadecimal.
fn seed(s: &str) -> Result<u64, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|e| e.to_string())
}

/// Parses a finite temperature `> 0` whose reciprocal (the factor every kernel applies) is
/// finite in `f32`.
fn temperature(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(t) if t.is_finite() && t > 0.0 && (1.0 / t).is_finite() => Ok(t),
        Ok(t) if t > 0.0 && t.is_finite() => {
            Err(format!("1/{t:e} overflows f32 (the logits are multiplied by it); use a temperature of at least 3e-39"))
        }
        Ok(_) => Err("must be finite and > 0".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// The largest `d ≤ cap` dividing `n` (1 for `n = 0`).
fn largest_divisor_up_to(n: usize, cap: usize) -> usize {
    (1..=cap.min(n.max(1))).rev().find(|d| n.is_multiple_of(*d)).unwrap_or(1)
}

/// Parses TRL's `top_entropy_quantile`: a number in `(0, 1]`.
fn rho(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(r) if r > 0.0 && r <= 1.0 => Ok(r),
        Ok(_) => Err("must be in (0, 1]".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Parses an integer `>= 1`.
fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let cli = Cli::parse();
    let result = match cli.command {
        None => run_default(&cli.run),
        Some(Command::Run(args)) => run_default(&args),
        Some(Command::Stats(args)) => run_stats(&args),
        Some(Command::Replay(args)) => run_replay(&args),
        Some(Command::Commit(args)) => fingerprint::run_commit(&args),
        Some(Command::Verify(args)) => fingerprint::run_verify(&args),
        Some(Command::Tokenizers(args)) => tokenizers::run(&args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("tokenmath: error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Makes a write to a closed pipe end the process quietly, as command-line tools do
/// (`tokenmath | head -1`): Rust ignores `SIGPIPE`, so `println!` would panic on `EPIPE`.
fn quiet_on_closed_pipe() {
    // Safe: called first thing in `main`, before any other thread exists; `SIG_DFL` is a
    // valid disposition for `SIGPIPE`.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The default batch; `Ok(passed)`.
fn run_default(args: &RunArgs) -> Result<bool, CliError> {
    let exec = args.common.exec()?;
    let (gpu, gpu_mode) = args.gpu.resolve()?;
    let dtype = match args.dtype {
        DtypeArg::F32 => DType::F32,
        DtypeArg::Bf16 => DType::BF16,
        DtypeArg::F16 => DType::F16,
    };
    if args.algo == Algo::TwGrpo && args.common.temperature != 1.0 {
        return Err(CliError::Usage(format!(
            "--algo tw_grpo: TW-GRPO's token weights are defined on the logits at temperature 1, not {}",
            args.common.temperature
        )));
    }
    let DefaultBatch { logits, targets, masked_rows } =
        default_batch::generate(args.rows, args.vocab, args.seed, dtype)?;
    let (rows, vocab) = (args.rows, args.vocab);
    let job = Job {
        exec,
        temperature: args.common.temperature,
        rows,
        vocab,
        targets: Some(&targets),
        origin: "default batch",
        keep_statistics: true,
    };
    let rows_of = |range: Range<usize>| range.start * vocab..range.end * vocab;
    let outcome = match &logits {
        Logits::F32(v) => run::run(&job, |r| Cow::Borrowed(&v[rows_of(r)])),
        Logits::BF16(v) => run::run(&job, |r| Cow::Borrowed(&v[rows_of(r)])),
        Logits::F16(v) => run::run(&job, |r| Cow::Borrowed(&v[rows_of(r)])),
    }?;
    let description = Description {
        origin: format!(
            "default batch (seed {:#x}, {masked_rows} of {rows} rows with a masked vocabulary block)",
            args.seed
        ),
        tensors: format!("generated logits [{rows}, {vocab}], targets sampled from each row's softmax"),
        rows,
        vocab,
        dtype,
        temperature: job.temperature,
        exec,
    };
    report::print(&description, &outcome);
    let statistics = outcome.statistics.as_ref().expect("the default run keeps its statistics");
    let device_passed = match gpu {
        None => true,
        Some(kind) => {
            let (t, temp) = (&targets, job.temperature);
            match &logits {
                Logits::F32(v) => device::run(kind, v, rows, vocab, Some(t), temp, exec, statistics, gpu_mode),
                Logits::BF16(v) => device::run(kind, v, rows, vocab, Some(t), temp, exec, statistics, gpu_mode),
                Logits::F16(v) => device::run(kind, v, rows, vocab, Some(t), temp, exec, statistics, gpu_mode),
            }?
        }
    };
    let response_len = args.response_len.unwrap_or_else(|| largest_divisor_up_to(rows, 8));
    let group_size = args.group_size.unwrap_or_else(|| largest_divisor_up_to(rows / response_len.max(1), 4));
    let step_cfg = StepCfg {
        algo: args.algo,
        response_len,
        group_size,
        seed: args.seed,
        temperature: job.temperature,
        exec,
        top_entropy_quantile: args.top_entropy_quantile,
    };
    let step = match &logits {
        Logits::F32(v) => step::run(&step_cfg, v, vocab, &targets, statistics),
        Logits::BF16(v) => step::run(&step_cfg, v, vocab, &targets, statistics),
        Logits::F16(v) => step::run(&step_cfg, v, vocab, &targets, statistics),
    }?;
    println!("{}", step.summary());
    Ok(outcome.check.passed() && device_passed && step.passed())
}

/// `replay` on a rollout dump; `Ok(passed)`.
fn run_replay(args: &ReplayArgs) -> Result<bool, CliError> {
    let cfg = replay::ReplayCfg {
        input: &args.input,
        algo: args.algo,
        top_entropy_quantile: args.top_entropy_quantile,
        group_size: args.group_size,
        out: args.out.as_deref(),
        report: args.report.as_deref(),
        tokenizer: args.tokenizer.as_deref(),
        temperature: args.common.temperature,
        exec: args.common.exec()?,
    };
    replay::run(&cfg)
}

/// `stats` on a safetensors file; `Ok(passed)`.
fn run_stats(args: &StatsArgs) -> Result<bool, CliError> {
    let exec = args.common.exec()?;
    let (gpu, gpu_mode) = args.gpu.resolve()?;
    let path = args.input.as_path();
    let mapped = input::map_file(path)?;
    let keys = input::Keys { logits: args.logits_key.as_deref(), labels: args.labels_key.as_deref() };
    let file = input::parse(path, &mapped, keys)?;
    let origin = path.display().to_string();
    let job = Job {
        exec,
        temperature: args.common.temperature,
        rows: file.rows,
        vocab: file.vocab,
        targets: file.labels.as_ref().map(|l| l.targets.as_slice()),
        origin: &origin,
        keep_statistics: gpu.is_some(),
    };
    let outcome = input::run_mapped(&job, &mapped, &file)?;
    let labels = match &file.labels {
        Some(l) => {
            format!("labels `{}` {} ({} of {} rows with a target)", l.key, l.dtype, outcome.target_rows, file.rows)
        }
        None => "no labels".into(),
    };
    let description = Description {
        origin: origin.clone(),
        tensors: format!("logits `{}` {:?} {}, {labels}", file.logits_key, file.shape, file.dtype.name()),
        rows: file.rows,
        vocab: file.vocab,
        dtype: file.dtype,
        temperature: job.temperature,
        exec,
    };
    report::print(&description, &outcome);
    let device_passed = match (gpu, outcome.statistics.as_ref()) {
        (Some(kind), Some(statistics)) => {
            let targets = file.labels.as_ref().map(|l| l.targets.as_slice());
            let (rows, vocab, temp) = (file.rows, file.vocab, job.temperature);
            let all = 0..file.rows;
            match file.dtype {
                DType::F32 => {
                    device::run(kind, &file.rows_as::<f32>(all), rows, vocab, targets, temp, exec, statistics, gpu_mode)
                }
                DType::BF16 => device::run(
                    kind,
                    &file.rows_as::<bf16>(all),
                    rows,
                    vocab,
                    targets,
                    temp,
                    exec,
                    statistics,
                    gpu_mode,
                ),
                DType::F16 => {
                    device::run(kind, &file.rows_as::<f16>(all), rows, vocab, targets, temp, exec, statistics, gpu_mode)
                }
            }?
        }
        _ => true,
    };
    Ok(outcome.check.passed() && device_passed)
}
