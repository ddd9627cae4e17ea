//! `tokenmath replay`: recompute one policy-gradient step exactly on a rollout dump.
//!
//! The dump's tensors are described in [`crate::rollout`]. With logits, the step is the main
//! job's, on real data instead of a synthetic rollout:
//!
//! 1. the forward statistics pass of [`crate::run::run`] over the logits, a chunk of rows at
//!    a time (with the response tokens as targets, `-1` at masked positions), checked against
//!    the `f64` reference on sampled rows exactly as the main job is, keeping the per-token
//!    `logp`, entropy, `max` and `log Σ` (`O(B·T)`, not `O(B·T·V)`);
//! 2. the policy part ([`crate::step::policy`]): advantages, per-token loss, aggregation,
//!    `g_logp`, with the aggregated loss checked against the `f64` reference;
//! 3. the logits backward with upstream `g_logp`, again a chunk of rows at a time, reduced
//!    on the fly to `‖∂L/∂logits‖₂` and its largest element (the full `[B, T, V]` gradient is
//!    never held).
//!
//! So memory is one chunk of logits rows (at most [`crate::run::MAX_CHUNK_ROWS`] rows and
//! 64 MiB) plus a few `[B, T]` arrays, whatever `V`: the logits are memory-mapped, and the
//! pages of each chunk are released once it is processed ([`input::release_rows`]), so the
//! resident set does not grow with the dump either. With precomputed `logp` (no logits) only
//! step 2 runs and the gradient is `∂L/∂logp`.
//!
//! `--out` writes every per-token array ([`write_out`]); `--report` the HTML report
//! ([`crate::html_report`]). Both are written once the step has run (also when a check
//! against the reference fails: they are how to look into it), never after an input error,
//! each through a temporary file renamed into place.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use memmap2::Mmap;
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use tokenmath_core::advantages::Groups;
use tokenmath_core::logits::{stats_bwd, RowInputs, Temperature, Upstream};
use tokenmath_core::{bf16, f16, DType, Exec, LogitElem, Mat, MatMut, TmError};

use crate::error::CliError;
use crate::html_report;
use crate::input::{self, Input};
use crate::progress::progress_bar;
use crate::report::{self, Description};
use crate::rollout::{self, Rollout};
use crate::run::{Job, RowStatistics, CHUNK_ELEMS, MAX_CHUNK_ROWS};
use crate::step::{self, Algo, PolicyBatch, StepOutcome};

/// A per-token array, read from the dump or computed.
type PerToken<'a> = Cow<'a, [f32]>;

/// What to replay and what to write.
pub struct ReplayCfg<'a> {
    /// The dump.
    pub input: &'a Path,
    /// The algorithm.
    pub algo: Algo,
    /// TRL's `top_entropy_quantile` ρ.
    pub top_entropy_quantile: Option<f32>,
    /// Consecutive responses per prompt when the dump has no `group_ids`.
    pub group_size: Option<usize>,
    /// Where to write the per-token arrays.
    pub out: Option<&'a Path>,
    /// Where to write the HTML report.
    pub report: Option<&'a Path>,
    /// A `tokenizer.json` to decode the tokens with in the report.
    pub tokenizer: Option<&'a Path>,
    /// Temperature of the logits.
    pub temperature: f32,
    /// Backend and threads.
    pub exec: Exec,
}

/// Everything the step produced, for `--out` and `--report`.
pub struct Replayed<'a> {
    /// The dump as read.
    pub rollout: &'a Rollout<'a>,
    /// `log π_θ` per token.
    pub logp: &'a [f32],
    /// Entropy per token, when known.
    pub entropy: Option<&'a [f32]>,
    /// The step.
    pub step: &'a StepOutcome,
    /// The algorithm.
    pub algo: Algo,
    /// Where the dump came from.
    pub origin: &'a str,
}

/// Runs `tokenmath replay`; `Ok(passed)`.
pub fn run(cfg: &ReplayCfg<'_>) -> Result<bool, CliError> {
    // Read the tokenizer first: a bad --tokenizer should not cost a whole replay.
    if cfg.algo == Algo::TwGrpo {
        return Err(CliError::Usage(
            "replay --algo tw_grpo is not available: TW-GRPO's token weights need every response's logits at once; \
             run it on the default batch (tokenmath --algo tw_grpo)"
                .into(),
        ));
    }
    let tokenizer = cfg.tokenizer.map(html_report::load_tokenizer).transpose()?;
    let path = cfg.input;
    let mapped = input::map_file(path)?;
    let ro = rollout::parse(path, &mapped)?;
    let origin = path.display().to_string();
    let groups = match (&ro.group_ids, cfg.group_size) {
        (Some(ids), _) => Groups::Ids(ids),
        (None, Some(g)) if ro.b.is_multiple_of(g) => Groups::Contiguous { size: g },
        (None, Some(g)) => {
            return Err(CliError::Usage(format!("--group-size {g} must divide the {} responses", ro.b)));
        }
        (None, None) => {
            return Err(CliError::input(
                path,
                "no tensor named `group_ids` (the prompt of each response, [B]); add it or pass --group-size G",
            ))
        }
    };

    let (bt, mask) = (ro.b * ro.t, &ro.mask);
    let mut first_pass_ok = true;
    let (statistics, logp, entropy): (Option<RowStatistics>, PerToken<'_>, Option<PerToken<'_>>) = match &ro.policy {
        rollout::Policy::Logits(logits) => {
            let tokens = ro.tokens.as_deref().unwrap_or(&[]);
            // Validated against the vocabulary where the mask is set; -1 (no target) elsewhere.
            let targets: Vec<i32> = (0..bt).map(|i| if mask[i] != 0 { tokens[i] as i32 } else { -1 }).collect();
            let (passed, stats) = forward(cfg, &mapped, logits, &targets, &origin, &ro.description)?;
            first_pass_ok = passed;
            if let Some(i) = (0..bt).find(|&i| mask[i] != 0 && !stats.logp[i].is_finite()) {
                return Err(CliError::input(
                    path,
                    format!(
                        "the logits of token [{}, {}] give logp {} (a NaN/+inf logit, or the token on a -inf \
                             logit) where the mask is set; the step is undefined",
                        i / ro.t,
                        i % ro.t,
                        stats.logp[i]
                    ),
                ));
            }
            let (logp, entropy) = (stats.logp.clone(), stats.entropy.clone());
            (Some(stats), Cow::Owned(logp), Some(Cow::Owned(entropy)))
        }
        rollout::Policy::Precomputed { logp, entropy } => {
            println!("tokenmath: replay of {origin}\n  input       {}", ro.description);
            (None, Cow::Borrowed(logp.as_slice()), entropy.as_deref().map(Cow::Borrowed))
        }
    };

    let start = Instant::now();
    let old_logp = ro.old_logp.as_deref().unwrap_or(&logp);
    let batch = PolicyBatch {
        t: ro.t,
        logp: &logp,
        old_logp,
        ref_logp: ro.ref_logp.as_deref(),
        mask: ro.mask.clone(),
        rewards: ro.rewards.clone(),
        groups,
        entropy: entropy.as_deref(),
        tw_weights: None,
        top_entropy_quantile: cfg.top_entropy_quantile,
    };
    let policy = step::policy(cfg.algo, cfg.exec, batch)?;
    let (grad_of, grad_norm, grad_max) = match (&ro.policy, &statistics) {
        (rollout::Policy::Logits(logits), Some(stats)) => {
            let tokens = ro.tokens.as_deref().unwrap_or(&[]);
            let targets: Vec<i32> = (0..bt).map(|i| if policy.mask[i] != 0 { tokens[i] as i32 } else { -1 }).collect();
            let bwd = Backward {
                cfg,
                mapped: &mapped,
                input: logits,
                targets: &targets,
                mask: &policy.mask,
                stats,
                g_logp: &policy.g_logp,
            };
            let (norm, max) = match logits.dtype {
                DType::F32 => bwd.run::<f32>(&origin),
                DType::BF16 => bwd.run::<bf16>(&origin),
                DType::F16 => bwd.run::<f16>(&origin),
            }?;
            ("dL/dlogits", norm, max)
        }
        _ => {
            let g = &policy.g_logp;
            (
                "dL/dlogp",
                g.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>().sqrt(),
                g.iter().fold(0.0f32, |m, v| m.max(v.abs())),
            )
        }
    };
    let context = format!("replayed on {} responses x {} tokens", ro.b, ro.t);
    let step =
        StepOutcome::new(cfg.algo, context, policy, entropy.as_deref(), grad_of, grad_norm, grad_max, start.elapsed());
    println!("{}", step.summary());

    let replayed = Replayed {
        rollout: &ro,
        logp: &logp,
        entropy: entropy.as_deref(),
        step: &step,
        algo: cfg.algo,
        origin: &origin,
    };
    if let Some(out) = cfg.out {
        write_atomically(out, |tmp| write_out(tmp, &replayed))?;
        println!("wrote {} (per-token arrays)", out.display());
    }
    if let Some(report) = cfg.report {
        let html = html_report::render(&replayed, tokenizer.as_ref());
        write_atomically(report, |tmp| std::fs::write(tmp, html.as_bytes()))?;
        println!("wrote {} (HTML report)", report.display());
    }
    Ok(first_pass_ok && step.passed())
}

/// The checked forward pass over the logits (the main job's), with its summary printed;
/// `(reference check passed, per-row statistics)`.
fn forward(
    cfg: &ReplayCfg<'_>,
    mapped: &Mmap,
    logits: &Input<'_>,
    targets: &[i32],
    origin: &str,
    description: &str,
) -> Result<(bool, RowStatistics), CliError> {
    let job = Job {
        exec: cfg.exec,
        temperature: cfg.temperature,
        rows: logits.rows,
        vocab: logits.vocab,
        targets: Some(targets),
        origin,
        keep_statistics: true,
    };
    let outcome = input::run_mapped(&job, mapped, logits)?;
    let d = Description {
        origin: format!("replay of {origin}"),
        tensors: format!(
            "{description}\n  {:<11} statistics below: every row, padding included; the policy step: the {} tokens \
             where the mask is set",
            "",
            targets.iter().filter(|&&t| t >= 0).count()
        ),
        rows: logits.rows,
        vocab: logits.vocab,
        dtype: logits.dtype,
        temperature: cfg.temperature,
        exec: cfg.exec,
    };
    report::print(&d, &outcome);
    let passed = outcome.check.passed();
    let stats = outcome.statistics.ok_or_else(|| CliError::Usage("the forward pass kept no statistics".into()))?;
    Ok((passed, stats))
}

/// The logits backward of the step, a chunk of rows at a time.
struct Backward<'a> {
    cfg: &'a ReplayCfg<'a>,
    mapped: &'a Mmap,
    input: &'a Input<'a>,
    targets: &'a [i32],
    mask: &'a [u8],
    stats: &'a RowStatistics,
    g_logp: &'a [f32],
}

impl Backward<'_> {
    /// `(‖∂L/∂logits‖₂, max |∂L/∂logits|)`, summed in row order (the same bits for any
    /// thread count).
    fn run<T: LogitElem>(&self, origin: &str) -> Result<(f64, f32), CliError> {
        let (rows, vocab) = (self.input.rows, self.input.vocab);
        let chunk_rows = (CHUNK_ELEMS / vocab.max(1)).clamp(1, MAX_CHUNK_ROWS).min(rows.max(1));
        let kernel = |error: TmError| CliError::Kernel { origin: origin.to_owned(), error };
        let mut dx = vec![0.0f32; chunk_rows * vocab];
        let (mut sum_sq, mut max) = (0.0f64, 0.0f32);
        let progress = progress_bar(rows);
        for start in (0..rows).step_by(chunk_rows) {
            let end = (start + chunk_rows).min(rows);
            let n = end - start;
            let data = self.input.rows_as::<T>(start..end);
            let x = Mat::dense(&data, n, vocab).map_err(kernel)?;
            let inputs = RowInputs {
                targets: Some(&self.targets[start..end]),
                row_mask: Some(&self.mask[start..end]),
                temperature: Temperature::Scalar(self.cfg.temperature),
            };
            let upstream = Upstream { g_logp: Some(&self.g_logp[start..end]), ..Default::default() };
            let out = MatMut::dense(&mut dx[..n * vocab], n, vocab).map_err(kernel)?;
            stats_bwd(self.cfg.exec, x, &inputs, self.stats.saved(start..end), upstream, out).map_err(kernel)?;
            for &v in &dx[..n * vocab] {
                sum_sq += f64::from(v) * f64::from(v);
                max = max.max(v.abs());
            }
            drop(data);
            input::release_rows(self.mapped, self.input, start..end);
            progress.inc(n as u64);
        }
        progress.finish_and_clear();
        Ok((sum_sq.sqrt(), max))
    }
}

/// Writes through `write` to a temporary file beside `path`, then renames it into place, so
/// that `path` is either untouched or complete.
fn write_atomically(path: &Path, write: impl FnOnce(&Path) -> std::io::Result<()>) -> Result<(), CliError> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp: PathBuf = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let io = |source| CliError::Io { path: path.to_owned(), source };
    let result = write(&tmp).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

/// The per-token tensors of `--out`, all `[B, T]` except the two per-response ones:
///
/// | name | dtype | |
/// |---|---|---|
/// | `logp`, `entropy` | F32 | `log π_θ` of the token and the entropy (entropy when known) |
/// | `advantage` | F32 | `A[b, t]` (0 where masked) |
/// | `ratio` | F32 | the importance ratio the loss used (GSPO: the sequence ratio) |
/// | `clip_state` | U8 | 0 none, 1 upper clip, 2 lower clip, 3 dual clip, 4 not in the loss |
/// | `loss` | F32 | the per-token loss `ℓ` before aggregation |
/// | `grad_logp` | F32 | `∂L/∂logp` (the aggregation's weight times `∂ℓ/∂logp`) |
/// | `mask` | U8 | the mask the loss used (DAPO's filter may clear whole groups) |
/// | `advantage_seq`, `reward_seq` | F32 `[B]` | per response (rewards after DAPO's shaping) |
///
/// Metadata: `tokenmath_replay`, a JSON object with `algo`, `loss`, `loss_reference` and
/// `source` (the dump).
pub fn write_out(path: &Path, r: &Replayed<'_>) -> std::io::Result<()> {
    let p = r.step.policy();
    let (b, t) = (r.rollout.b, r.rollout.t);
    let f32_bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let mut tensors: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> = vec![
        ("logp", Dtype::F32, vec![b, t], f32_bytes(r.logp)),
        ("advantage", Dtype::F32, vec![b, t], f32_bytes(&p.adv)),
        ("ratio", Dtype::F32, vec![b, t], f32_bytes(&p.ratio)),
        ("clip_state", Dtype::U8, vec![b, t], p.clip.clone()),
        ("loss", Dtype::F32, vec![b, t], f32_bytes(&p.token_loss)),
        ("grad_logp", Dtype::F32, vec![b, t], f32_bytes(&p.g_logp)),
        ("mask", Dtype::U8, vec![b, t], p.mask.clone()),
        ("advantage_seq", Dtype::F32, vec![b], f32_bytes(&p.adv_seq)),
        ("reward_seq", Dtype::F32, vec![b], f32_bytes(&p.rewards)),
    ];
    if let Some(e) = r.entropy {
        tensors.push(("entropy", Dtype::F32, vec![b, t], f32_bytes(e)));
    }
    let views = tensors
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            TensorView::new(*dtype, shape.clone(), bytes).map(|v| (*name, v)).map_err(std::io::Error::other)
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    // One metadata entry (a JSON object with sorted keys): safetensors writes its metadata map
    // in `HashMap` order, so several entries would make the file's bytes vary from run to run.
    let about = serde_json::json!({
        "algo": r.algo.name(),
        "loss": format!("{:e}", p.loss),
        "loss_reference": format!("{:e}", p.loss_reference),
        "source": r.origin,
    });
    let metadata = HashMap::from([("tokenmath_replay".to_owned(), about.to_string())]);
    safetensors::serialize_to_file(views, Some(metadata), path).map_err(std::io::Error::other)
}
