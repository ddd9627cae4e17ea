//! `logits-timing`: wall-clock timings of the tokenmath logits kernels and of this machine's
//! floors, one JSON line per measurement (the driver behind `bench/compare/logits.py`).
//!
//! ```text
//! logits-timing --rows 2048 --cols 32768 --dtype f32 --threads 1,2 --reps 5 --op all
//! ```
//!
//! The data ([`Problem`] with [`SEED`]) is generated once. Each measurement runs `--warmup`
//! untimed repetitions, then `--reps` timed ones, and reports their median and minimum. The
//! timed repetitions go round-robin over all measurements, so that interference from other
//! processes (a busy, shared machine) is spread over every measurement instead of skewing
//! the ratios between them.
//!
//! | `--op` | what is timed | bytes counted |
//! |---|---|---|
//! | `fwd` | `stats_fwd`: `lse`, entropy, target `logp`, `max`, `log_sum` | the logits |
//! | `bwd` | `stats_bwd` into an `f32` `dx` allocated before timing | the logits + `dx` |
//! | `bwd_inplace` | `stats_bwd_inplace` (the logits are restored, untimed, before each rep) | the logits, twice |
//! | `exp_floor` | [`floor::exp_sum`] over the `f32` logits, one thread | the `f32` logits |
//! | `read_bw` | [`floor::sum`] over the `f32` logits, one thread | the `f32` logits |
//! | `all` | all of the above, in this order | |
//!
//! The backward uses the `max`, `log_sum` and entropy of one forward done before any timing. Kernel ops
//! are timed once per `--threads` value; the floors always run on one thread (and on the
//! `f32` logits, whatever `--dtype` says, since they measure the machine, not a dtype).
//!
//! Output, one line per measurement:
//!
//! ```text
//! {"impl":"tokenmath","op":"fwd","dtype":"f32","rows":2048,"cols":32768,"threads":1,
//!  "median_s":…,"min_s":…,"elems_per_s":…,"gb_per_s":…}
//! ```
//!
//! with `elems_per_s = rows·cols / median_s` and `gb_per_s = bytes counted / median_s / 1e9`.

use std::cell::RefCell;
use std::error::Error;
use std::hint::black_box;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use tokenmath_bench::{floor, FwdStats, Problem, SEED};
use tokenmath_core::logits::{stats_bwd, stats_bwd_inplace, stats_fwd};
use tokenmath_core::{Exec, GradElem, LogitElem, Mat, MatMut, TmError};

/// What to time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
enum Op {
    Fwd,
    Bwd,
    BwdInplace,
    ExpFloor,
    ReadBw,
    All,
}

impl Op {
    const EACH: [Op; 5] = [Op::Fwd, Op::Bwd, Op::BwdInplace, Op::ExpFloor, Op::ReadBw];

    fn name(self) -> &'static str {
        match self {
            Op::Fwd => "fwd",
            Op::Bwd => "bwd",
            Op::BwdInplace => "bwd_inplace",
            Op::ExpFloor => "exp_floor",
            Op::ReadBw => "read_bw",
            Op::All => "all",
        }
    }
}

/// The storage type of the logits given to the kernels.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Dtype {
    F32,
    Bf16,
}

/// Times the tokenmath logits kernels and this machine's exp / read-bandwidth floors;
/// prints one JSON line per measurement.
#[derive(Debug, Parser)]
#[command(name = "logits-timing")]
struct Args {
    /// Rows (tokens).
    #[arg(long, default_value_t = 2048, value_parser = positive)]
    rows: usize,
    /// Columns (vocabulary size).
    #[arg(long, default_value_t = 32768, value_parser = positive)]
    cols: usize,
    /// Storage type of the logits.
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    dtype: Dtype,
    /// Thread counts to time the kernels with (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1", value_parser = positive)]
    threads: Vec<usize>,
    /// Timed repetitions per measurement.
    #[arg(long, default_value_t = 5, value_parser = positive)]
    reps: usize,
    /// Untimed repetitions before the timed ones.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// The operation to time.
    #[arg(long, value_enum, default_value_t = Op::All)]
    op: Op,
    /// Seed of the generated logits.
    #[arg(long, default_value_t = SEED)]
    seed: u64,
}

fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("expected a positive integer, got {s:?}")),
    }
}

/// One measurement: `run` executes the op once and returns the seconds its timed part took.
struct Measurement<'a> {
    op: Op,
    dtype: &'static str,
    threads: usize,
    /// Bytes the op must move (for `gb_per_s`).
    bytes: usize,
    run: Box<dyn FnMut() -> Result<f64, TmError> + 'a>,
    secs: Vec<f64>,
}

impl<'a> Measurement<'a> {
    fn new(
        op: Op,
        dtype: &'static str,
        threads: usize,
        bytes: usize,
        run: impl FnMut() -> Result<f64, TmError> + 'a,
    ) -> Self {
        Measurement { op, dtype, threads, bytes, run: Box::new(run), secs: Vec::new() }
    }

    /// Prints the measurement as a JSON line: median and minimum of the timed repetitions.
    fn report(&self, rows: usize, cols: usize) {
        let mut secs = self.secs.clone();
        secs.sort_by(f64::total_cmp);
        let mid = secs.len() / 2;
        let median = if secs.len() % 2 == 1 { secs[mid] } else { 0.5 * (secs[mid - 1] + secs[mid]) };
        println!(
            "{{\"impl\":\"tokenmath\",\"op\":\"{}\",\"dtype\":\"{}\",\"rows\":{rows},\"cols\":{cols},\"threads\":{},\
             \"median_s\":{median},\"min_s\":{},\"elems_per_s\":{},\"gb_per_s\":{}}}",
            self.op.name(),
            self.dtype,
            self.threads,
            secs[0],
            (rows * cols) as f64 / median,
            self.bytes as f64 / median / 1e9,
        );
    }
}

/// Runs `body` and returns how long it took.
fn timed(body: impl FnOnce() -> Result<(), TmError>) -> Result<f64, TmError> {
    let start = Instant::now();
    body()?;
    Ok(start.elapsed().as_secs_f64())
}

/// Times every requested op on the logits `x` (the problem's logits stored as `T`).
fn run<T: LogitElem + GradElem>(args: &Args, p: &Problem, x: &[T]) -> Result<(), Box<dyn Error>> {
    let (rows, cols) = (p.rows, p.cols);
    let elems = rows * cols;
    let size = <T as LogitElem>::DTYPE.size();
    let dtype = <T as LogitElem>::DTYPE.name();
    let ops: &[Op] = if args.op == Op::All { &Op::EACH } else { std::slice::from_ref(&args.op) };
    let (inputs, upstream) = (p.inputs(), p.upstream());
    let logits = Mat::dense(x, rows, cols)?;

    let mut stats = FwdStats::zeros(rows);
    let status = stats_fwd(Exec::new(), logits, &inputs, stats.out())?;
    if status.nonfinite_rows != 0 {
        return Err(format!("{} rows of the generated logits are not finite", status.nonfinite_rows).into());
    }
    let saved = stats.saved();

    // Output buffers, allocated once and shared by the thread counts of an op.
    let fwd_out = &RefCell::new(FwdStats::zeros(rows));
    let dx = &RefCell::new(if ops.contains(&Op::Bwd) { vec![0.0f32; elems] } else { Vec::new() });
    let work = &RefCell::new(if ops.contains(&Op::BwdInplace) { x.to_vec() } else { Vec::new() });
    let row_max = &p.row_max();

    let mut measurements = Vec::new();
    for &op in ops {
        for &threads in &args.threads {
            let exec = Exec::new().with_threads(threads);
            measurements.push(match op {
                Op::Fwd => Measurement::new(op, dtype, threads, elems * size, move || {
                    let mut out = fwd_out.borrow_mut();
                    timed(|| stats_fwd(exec, logits, &inputs, out.out()).map(drop))
                }),
                Op::Bwd => Measurement::new(op, dtype, threads, elems * (size + 4), move || {
                    let mut dx = dx.borrow_mut();
                    let dx = MatMut::dense(&mut dx, rows, cols)?;
                    timed(|| stats_bwd(exec, logits, &inputs, saved, upstream, dx))
                }),
                Op::BwdInplace => Measurement::new(op, dtype, threads, 2 * elems * size, move || {
                    let mut buf = work.borrow_mut();
                    buf.copy_from_slice(x); // the previous run overwrote the logits
                    let buf = MatMut::dense(&mut buf, rows, cols)?;
                    timed(|| stats_bwd_inplace(exec, buf, &inputs, saved, upstream))
                }),
                // The floors measure one core, whatever `--threads` says: time them once.
                Op::ExpFloor | Op::ReadBw if threads != args.threads[0] => continue,
                Op::ExpFloor => Measurement::new(op, "f32", 1, elems * 4, move || {
                    timed(|| {
                        black_box(floor::exp_sum(black_box(&p.logits), cols, row_max));
                        Ok(())
                    })
                }),
                Op::ReadBw => Measurement::new(op, "f32", 1, elems * 4, move || {
                    timed(|| {
                        black_box(floor::sum(black_box(&p.logits)));
                        Ok(())
                    })
                }),
                Op::All => unreachable!("`all` is expanded above"),
            });
        }
    }

    for m in &mut measurements {
        for _ in 0..args.warmup {
            (m.run)()?;
        }
    }
    for _ in 0..args.reps {
        for m in &mut measurements {
            let secs = (m.run)()?;
            m.secs.push(secs);
        }
    }
    for m in &measurements {
        m.report(rows, cols);
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    let problem = Problem::generate(args.rows, args.cols, args.seed);
    match args.dtype {
        Dtype::F32 => run(&args, &problem, &problem.logits),
        Dtype::Bf16 => run(&args, &problem, &problem.logits_bf16()),
    }
}
