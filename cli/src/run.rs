//! The computation: forward and backward over every row, timed, with a reference check.
//!
//! Rows are processed in chunks (at most [`MAX_CHUNK_ROWS`] rows and about 64 MiB of `f32`
//! gradient each), so memory stays bounded whatever the input size. For each chunk:
//!
//! 1. [`stats_fwd`] gives `lse`, `entropy`, `max`, `log_sum` and (with targets) `logp` per row;
//! 2. [`stats_bwd`] writes the `f32` gradient of the objective
//!    `mean NLL − 0.01·mean entropy` — upstream `g_logp = −1/N_t` for each of the `N_t`
//!    rows with a target and `g_entropy = −0.01/N` for each of the `N` rows — into a chunk
//!    sized `dx` buffer;
//! 3. the sampled rows in the chunk (8 rows spread over the input, always the first and
//!    the last, plus the first row with a non-finite logit) are recomputed by the `f64`
//!    reference ([`tokenmath_reference`]) and compared within its error model
//!    ([`stats_tolerance`], [`grad_tolerance`]).
//!
//! Only the two kernel calls are inside the timers.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::time::{Duration, Instant};

use tokenmath_core::logits::{stats_bwd, stats_fwd, FwdOut, RowInputs, Saved, Temperature, Upstream};
use tokenmath_core::{Exec, LogitElem, Mat, MatMut, TmError};
use tokenmath_reference::{grad_tolerance, row_grad, row_stats, stats_tolerance, tempered};

use crate::error::CliError;
use crate::progress::progress_bar;

/// The weight of the entropy bonus in the objective whose gradient is computed.
pub const ENTROPY_BONUS: f64 = 0.01;
/// At most this many rows per chunk.
pub const MAX_CHUNK_ROWS: usize = 256;
/// A chunk holds at most this many elements; longer rows are refused ([`check_row_len`]).
pub const CHUNK_ELEMS: usize = 1 << 24;
/// Rows spread over the input that are checked against the reference.
pub const SAMPLE_ROWS: usize = 8;
/// Failed rows whose details are kept for the report.
const MAX_MESSAGES: usize = 5;

/// What to compute on.
pub struct Job<'a> {
    /// Backend and threads for the kernels.
    pub exec: Exec,
    /// One temperature for every row.
    pub temperature: f32,
    /// Number of rows.
    pub rows: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// One target per row (negative = none), if the input has targets.
    pub targets: Option<&'a [i32]>,
    /// Where the logits come from, for error messages.
    pub origin: &'a str,
    /// Keep every row's forward statistics in [`Outcome::statistics`] (for a later step that
    /// needs them, so it does not read the logits again).
    pub keep_statistics: bool,
}

/// The forward statistics of every row, in row order.
#[derive(Debug, Default)]
pub struct RowStatistics {
    /// `log Σ exp(z)`.
    pub lse: Vec<f32>,
    /// Entropy (nats).
    pub entropy: Vec<f32>,
    /// Target log-probability (0 for rows without a target; empty without targets).
    pub logp: Vec<f32>,
    /// `max z`, saved for the backward.
    pub max: Vec<f32>,
    /// `log Σ exp(z − max)`, saved for the backward.
    pub log_sum: Vec<f32>,
}

impl RowStatistics {
    /// The statistics the backward reads, for rows `range`.
    pub fn saved(&self, range: std::ops::Range<usize>) -> Saved<'_> {
        Saved { max: &self.max[range.clone()], log_sum: &self.log_sum[range.clone()], entropy: &self.entropy[range] }
    }
}

/// Count, mean, minimum and maximum of a set of values.
#[derive(Clone, Copy, Debug)]
pub struct Spread {
    /// Number of values.
    pub count: usize,
    sum: f64,
    /// Smallest value (`+inf` when empty).
    pub min: f64,
    /// Largest value (`−inf` when empty).
    pub max: f64,
}

impl Default for Spread {
    fn default() -> Self {
        Spread { count: 0, sum: 0.0, min: f64::INFINITY, max: f64::NEG_INFINITY }
    }
}

impl Spread {
    fn add(&mut self, v: f64) {
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    /// The mean, or `None` without values.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }
}

/// Largest absolute error per quantity.
#[derive(Clone, Copy, Debug, Default)]
pub struct Errors {
    /// Log-sum-exp.
    pub lse: f64,
    /// Target log-probability.
    pub logp: f64,
    /// Entropy.
    pub entropy: f64,
    /// `log Σ exp(z − max)`.
    pub log_sum: f64,
    /// Gradient elements.
    pub grad: f64,
}

impl Errors {
    fn max(self, o: Errors) -> Errors {
        Errors {
            lse: self.lse.max(o.lse),
            logp: self.logp.max(o.logp),
            entropy: self.entropy.max(o.entropy),
            log_sum: self.log_sum.max(o.log_sum),
            grad: self.grad.max(o.grad),
        }
    }
}

/// The result of comparing sampled rows with the reference.
#[derive(Debug, Default)]
pub struct Check {
    /// The rows checked, in increasing order.
    pub rows: Vec<usize>,
    /// Largest absolute errors over the checked rows.
    pub max_err: Errors,
    /// Largest `|error| / tolerance` over every compared value (`≤ 1` passes).
    pub worst_ratio: f64,
    /// Number of checked rows with a value outside its tolerance.
    pub failed_rows: usize,
    /// What went wrong in the first few failed rows.
    pub messages: Vec<String>,
}

impl Check {
    /// Whether every checked row agreed with the reference.
    pub fn passed(&self) -> bool {
        self.failed_rows == 0
    }

    fn record(&mut self, row: usize, rc: RowCheck) {
        self.rows.push(row);
        self.max_err = self.max_err.max(rc.errors);
        self.worst_ratio = self.worst_ratio.max(rc.worst_ratio);
        if let Some(problem) = rc.problem {
            self.failed_rows += 1;
            if self.messages.len() < MAX_MESSAGES {
                self.messages.push(format!("row {row}: {problem}"));
            }
        }
    }
}

/// Everything the report needs about a finished job.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Entropy (nats) over the rows with finite statistics.
    pub entropy: Spread,
    /// Target log-probability over the rows with a target and finite statistics (`−inf`
    /// for a target on a `−inf` logit included, so the mean NLL is then `+inf`).
    pub logp: Spread,
    /// Rows with a target (`N_t`).
    pub target_rows: usize,
    /// Rows whose target logit is `−inf` (masked): `logp = −inf`, the loss `+inf`.
    pub masked_target_rows: usize,
    /// The first such row.
    pub first_masked_target_row: Option<usize>,
    /// Rows with a NaN or `+inf` logit (their statistics and gradient are NaN).
    pub nonfinite_rows: usize,
    /// The first such row.
    pub first_nonfinite_row: Option<usize>,
    /// The reference check.
    pub check: Check,
    /// Time inside `stats_fwd`.
    pub forward: Duration,
    /// Time inside `stats_bwd`.
    pub backward: Duration,
    /// Time of the whole job (includes reading, the checks and the progress bar).
    pub wall: Duration,
    /// Every row's statistics, if the job asked to keep them.
    pub statistics: Option<RowStatistics>,
}

impl Outcome {
    /// The mean negative log-likelihood over the rows with a target and finite statistics.
    pub fn loss(&self) -> Option<f64> {
        self.logp.mean().map(|m| -m)
    }
}

/// The rows checked against the reference regardless of their contents: [`SAMPLE_ROWS`]
/// rows spread evenly over `rows`, the first and the last included.
pub fn sample_rows(rows: usize) -> Vec<usize> {
    let mut sample: Vec<usize> = match rows {
        0 => Vec::new(),
        1 => vec![0],
        _ => (0..SAMPLE_ROWS).map(|i| i * (rows - 1) / (SAMPLE_ROWS - 1)).collect(),
    };
    sample.dedup();
    sample
}

/// Refuses rows longer than one chunk ([`CHUNK_ELEMS`] columns): the gradient, the copy of
/// a row and the reference check all hold a whole row, so memory is bounded by the chunk
/// only if a row fits in one. (Real vocabularies are below 2^18 columns.)
pub fn check_row_len(vocab: usize) -> Result<(), CliError> {
    if vocab <= CHUNK_ELEMS {
        return Ok(());
    }
    let gib = (vocab as f64) * 4.0 / (1u64 << 30) as f64;
    Err(CliError::Usage(format!(
        "rows of {vocab} columns are longer than the {CHUNK_ELEMS} columns this command processes at once          (the f32 gradient of one row alone would take {gib:.1} GiB); split the vocabulary into shards"
    )))
}

/// Runs `job`, reading the logits of a range of rows with `rows_of` (a dense
/// `[range.len(), vocab]` slice).
pub fn run<'d, T: LogitElem>(
    job: &Job<'_>,
    rows_of: impl Fn(Range<usize>) -> Cow<'d, [T]>,
) -> Result<Outcome, CliError> {
    let wall = Instant::now();
    let (rows, vocab, exec) = (job.rows, job.vocab, job.exec);
    check_row_len(vocab)?;
    let kernel_err = |error: TmError, first_row: usize| CliError::Kernel {
        origin: job.origin.to_owned(),
        error: with_row_offset(error, first_row),
    };
    let chunk_rows = (CHUNK_ELEMS / vocab.max(1)).clamp(1, MAX_CHUNK_ROWS).min(rows.max(1));

    let mut out = Outcome {
        target_rows: job.targets.map_or(0, |t| t.iter().filter(|&&t| t >= 0).count()),
        statistics: job.keep_statistics.then(RowStatistics::default),
        ..Outcome::default()
    };
    // The upstream gradients, as the f32 values the kernel sees (the reference gets the same).
    let g_lp = if out.target_rows > 0 { (-1.0 / out.target_rows as f64) as f32 } else { 0.0 };
    let g_h = (-ENTROPY_BONUS / rows.max(1) as f64) as f32;
    let g_logp = vec![g_lp; chunk_rows];
    let g_entropy = vec![g_h; chunk_rows];

    let mut lse = vec![0.0f32; chunk_rows];
    let mut entropy = vec![0.0f32; chunk_rows];
    let mut max = vec![0.0f32; chunk_rows];
    let mut log_sum = vec![0.0f32; chunk_rows];
    let mut logp = job.targets.map(|_| vec![0.0f32; chunk_rows]);
    // NaN-filled, so its pages are touched before the first timed backward (and an element
    // the kernel failed to write in the first chunk would fail the check).
    let mut dx = vec![f32::NAN; chunk_rows * vocab];

    let sample = sample_rows(rows);
    let progress = progress_bar(rows);
    for start in (0..rows).step_by(chunk_rows) {
        let end = (start + chunk_rows).min(rows);
        let n = end - start;
        let data = rows_of(start..end);
        let x = Mat::dense(&data, n, vocab).map_err(|e| kernel_err(e, start))?;
        let targets = job.targets.map(|t| &t[start..end]);
        let inputs = RowInputs { targets, row_mask: None, temperature: Temperature::Scalar(job.temperature) };

        let timer = Instant::now();
        let status = stats_fwd(
            exec,
            x,
            &inputs,
            FwdOut {
                lse: &mut lse[..n],
                entropy: &mut entropy[..n],
                logp: logp.as_deref_mut().map(|l| &mut l[..n]),
                max: Some(&mut max[..n]),
                log_sum: Some(&mut log_sum[..n]),
            },
        )
        .map_err(|e| kernel_err(e, start))?;
        out.forward += timer.elapsed();

        let dx_chunk = MatMut::dense(&mut dx[..n * vocab], n, vocab).map_err(|e| kernel_err(e, start))?;
        let saved = Saved { max: &max[..n], log_sum: &log_sum[..n], entropy: &entropy[..n] };
        let upstream =
            Upstream { g_logp: targets.map(|_| &g_logp[..n]), g_entropy: Some(&g_entropy[..n]), g_lse: None };
        let timer = Instant::now();
        stats_bwd(exec, x, &inputs, saved, upstream, dx_chunk).map_err(|e| kernel_err(e, start))?;
        out.backward += timer.elapsed();

        for r in 0..n {
            if entropy[r].is_finite() {
                out.entropy.add(f64::from(entropy[r]));
            }
            if let (Some(l), Some(t)) = (&logp, targets) {
                // NaN: a non-finite row, reported as such. `−inf`: the target logit is
                // masked; kept, so the mean NLL is +inf, as torch's cross-entropy gives.
                if t[r] >= 0 && !l[r].is_nan() {
                    out.logp.add(f64::from(l[r]));
                    if l[r] == f32::NEG_INFINITY {
                        out.masked_target_rows += 1;
                        out.first_masked_target_row.get_or_insert(start + r);
                    }
                }
            }
        }
        if let Some(kept) = out.statistics.as_mut() {
            kept.lse.extend_from_slice(&lse[..n]);
            kept.entropy.extend_from_slice(&entropy[..n]);
            kept.max.extend_from_slice(&max[..n]);
            kept.log_sum.extend_from_slice(&log_sum[..n]);
            if let Some(l) = &logp {
                kept.logp.extend_from_slice(&l[..n]);
            }
        }
        out.nonfinite_rows += status.nonfinite_rows;
        let mut to_check: Vec<usize> = sample.iter().copied().filter(|r| (start..end).contains(r)).collect();
        if out.first_nonfinite_row.is_none() {
            if let Some(r) = status.first_nonfinite_row {
                out.first_nonfinite_row = Some(start + r);
                to_check.push(start + r);
            }
        }
        // The first row with a masked target is checked too.
        if let Some(row) = out.first_masked_target_row.filter(|r| (start..end).contains(r)) {
            to_check.push(row);
        }
        to_check.sort_unstable();
        to_check.dedup();
        for row in to_check {
            let r = row - start;
            let values: Vec<f32> = x.row(r).iter().map(|v| v.to_f32()).collect();
            let got = KernelRow {
                lse: lse[r],
                entropy: entropy[r],
                log_sum: log_sum[r],
                logp: logp.as_ref().map(|l| l[r]),
                dx: &dx[r * vocab..(r + 1) * vocab],
            };
            let target = targets.and_then(|t| usize::try_from(t[r]).ok());
            let rc = check_row(&values, job.temperature, target, &got, f64::from(g_lp), f64::from(g_h));
            out.check.record(row, rc);
        }
        progress.inc(n as u64);
    }
    progress.finish_and_clear();
    out.wall = wall.elapsed();
    Ok(out)
}

/// Makes the row numbers in a kernel error (relative to a chunk) relative to the input.
fn with_row_offset(error: TmError, offset: usize) -> TmError {
    match error {
        TmError::NoFiniteLogit { row } => TmError::NoFiniteLogit { row: row + offset },
        TmError::TargetOutOfRange { row, target, vocab } => {
            TmError::TargetOutOfRange { row: row + offset, target, vocab }
        }
        other => other,
    }
}

/// A row's outputs from the kernels.
struct KernelRow<'a> {
    lse: f32,
    entropy: f32,
    log_sum: f32,
    logp: Option<f32>,
    dx: &'a [f32],
}

/// The comparison of one row with the reference.
#[derive(Default)]
struct RowCheck {
    errors: Errors,
    worst_ratio: f64,
    /// The first value outside its tolerance.
    problem: Option<String>,
}

impl RowCheck {
    /// Compares one value; returns `|got − want|`.
    fn compare(&mut self, what: fmt::Arguments<'_>, got: f32, want: f64, tol: f64) -> f64 {
        // Equal values, equal infinities included (`−inf − −inf` would be NaN), are exact.
        let err = if f64::from(got) == want { 0.0 } else { (f64::from(got) - want).abs() };
        let ratio = if err == 0.0 { 0.0 } else { err / tol };
        if ratio <= 1.0 {
            self.worst_ratio = self.worst_ratio.max(ratio);
        } else if self.problem.is_none() {
            self.problem = Some(format!(
                "{what} is {got:e}, the reference says {want:e} (|error| {err:.3e} > tolerance {tol:.3e})"
            ));
        }
        err
    }
}

/// Checks one row (`x`, converted exactly to `f32`) against the reference.
fn check_row(x: &[f32], temperature: f32, target: Option<usize>, got: &KernelRow<'_>, g_lp: f64, g_h: f64) -> RowCheck {
    let mut rc = RowCheck::default();
    let (Some(want), Some(want_dx)) =
        (row_stats(x, temperature, target), row_grad(x, temperature, target, g_lp, g_h, 0.0))
    else {
        // The reference calls the row non-finite (a NaN or +inf logit): so must the kernels.
        let all_nan =
            [got.lse, got.entropy, got.log_sum].iter().all(|v| v.is_nan()) && got.dx.iter().all(|v| v.is_nan());
        if !all_nan {
            rc.problem =
                Some("the row has a NaN or +inf logit, but its statistics and gradient are not all NaN".into());
        }
        return rc;
    };
    let vocab = x.len();
    let is_tempered = temperature != 1.0;
    let tol = stats_tolerance(&want, vocab, is_tempered);
    rc.errors.lse = rc.compare(format_args!("lse"), got.lse, want.lse, tol.lse);
    rc.errors.entropy = rc.compare(format_args!("entropy"), got.entropy, want.entropy, tol.entropy);
    rc.errors.log_sum = rc.compare(format_args!("log_sum"), got.log_sum, want.log_s, tol.log_sum);
    if let Some(logp) = got.logp {
        rc.errors.logp = rc.compare(format_args!("logp"), logp, want.logp, tol.logp);
    }

    let z = tempered(x, temperature);
    let inv_temp = f64::from(1.0f32 / temperature);
    let g_lp = if target.is_some() { g_lp } else { 0.0 };
    for (j, (&dx, &dx_ref)) in got.dx.iter().zip(&want_dx).enumerate() {
        let is_target = target == Some(j);
        let t = grad_tolerance(&want, &tol, z[j], inv_temp, is_tempered, is_target, g_lp, g_h, 0.0, dx_ref);
        let err = rc.compare(format_args!("gradient[{j}]"), dx, dx_ref, t);
        rc.errors.grad = rc.errors.grad.max(err);
    }
    rc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_spreads_and_keeps_ends() {
        assert_eq!(sample_rows(0), Vec::<usize>::new());
        assert_eq!(sample_rows(1), vec![0]);
        assert_eq!(sample_rows(3), vec![0, 1, 2]);
        assert_eq!(sample_rows(64), vec![0, 9, 18, 27, 36, 45, 54, 63]);
        let s = sample_rows(1000);
        assert_eq!((s.len(), s[0], s[7]), (8, 0, 999));
    }

    #[test]
    fn check_row_flags_wrong_values() {
        let x = [1.0f32, 2.0, 3.0, 4.0];
        let want = row_stats(&x, 1.0, Some(2)).unwrap();
        let dx: Vec<f32> = row_grad(&x, 1.0, Some(2), -1.0, 0.0, 0.0).unwrap().iter().map(|&v| v as f32).collect();
        let mut got = KernelRow {
            lse: want.lse as f32,
            entropy: want.entropy as f32,
            log_sum: want.log_s as f32,
            logp: Some(want.logp as f32),
            dx: &dx,
        };
        assert!(check_row(&x, 1.0, Some(2), &got, -1.0, 0.0).problem.is_none());
        got.entropy += 1e-3;
        let rc = check_row(&x, 1.0, Some(2), &got, -1.0, 0.0);
        assert!(rc.problem.unwrap().starts_with("entropy"));
    }

    #[test]
    fn nonfinite_rows_must_be_nan() {
        let x = [1.0f32, f32::NAN];
        let nan = [f32::NAN; 2];
        let mut got = KernelRow { lse: f32::NAN, entropy: f32::NAN, log_sum: f32::NAN, logp: None, dx: &nan };
        assert!(check_row(&x, 1.0, None, &got, 0.0, -0.01).problem.is_none());
        got.lse = 1.0;
        assert!(check_row(&x, 1.0, None, &got, 0.0, -0.01).problem.is_some());
    }
}
