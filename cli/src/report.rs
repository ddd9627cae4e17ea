//! What the user sees on stdout: the summary of a finished job ([`crate::run::Outcome`]).
//! (The progress bar on stderr is [`crate::progress`].)

use std::fmt::Write as _;
use std::time::Duration;

use tokenmath_core::{DType, Exec};

use crate::run::{Outcome, Spread, ENTROPY_BONUS};

/// What was computed on, for the summary's header.
pub struct Description {
    /// Where the data came from (first line of the summary).
    pub origin: String,
    /// The tensors read, in words.
    pub tensors: String,
    /// Rows processed.
    pub rows: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// Storage type of the logits.
    pub dtype: DType,
    /// The temperature applied to every row.
    pub temperature: f32,
    /// Backend and threads.
    pub exec: Exec,
}

/// The summary of a finished job, ending with the `reference check: PASS|FAIL` line.
pub fn summary(d: &Description, o: &Outcome) -> String {
    let mut s = String::new();
    // Writing into a String cannot fail.
    let mut line = |label: &str, text: String| {
        let _ = writeln!(s, "  {label:<11} {text}");
    };
    line("input", d.tensors.clone());
    line("shape", format!("{} rows x {} vocab, {}, temperature {}", d.rows, d.vocab, d.dtype.name(), d.temperature));
    let threads = d.exec.threads();
    line(
        "execution",
        format!("{} backend, {threads} thread{}", d.exec.backend().name(), if threads == 1 { "" } else { "s" }),
    );
    line("entropy", format!("{} nats ({} rows)", spread(&o.entropy), o.entropy.count));
    match o.loss() {
        Some(loss) => {
            line("logp", format!("{} ({} rows with a target)", spread(&o.logp), o.logp.count));
            match (o.masked_target_rows, o.first_masked_target_row) {
                (0, _) | (_, None) => line("loss", format!("{loss:.6} (mean NLL)")),
                // Policy: a target on a masked (-inf) logit has probability 0, so its NLL
                // and the mean are +inf (as torch's cross-entropy); reported, not an error.
                (n, Some(first)) => line(
                    "loss",
                    format!(
                        "+inf (mean NLL): {n} row{} with the target on a -inf logit (first: row {first}), \
                         where logp = -inf",
                        if n == 1 { "" } else { "s" }
                    ),
                ),
            }
        }
        None => line("loss", "none (no row has a target)".into()),
    }
    line(
        "non-finite",
        match (o.nonfinite_rows, o.first_nonfinite_row) {
            (0, _) | (_, None) => "none".into(),
            (n, Some(first)) => format!(
                "{n} row{} with a NaN or +inf logit (first: row {first}); NaN statistics and gradient, \
                 left out of the means",
                if n == 1 { "" } else { "s" }
            ),
        },
    );
    line("gradient", format!("of mean NLL - {ENTROPY_BONUS} * mean entropy, into f32 dx"));
    let bytes_per_row = (d.vocab * d.dtype.size()) as f64;
    for (label, time) in [("forward", o.forward), ("backward", o.backward)] {
        line(label, throughput(time, d.rows, d.vocab, bytes_per_row));
    }
    line("total", format!("{} (reading, kernels and reference check)", duration(o.wall)));

    let c = &o.check;
    let rows: Vec<String> = c.rows.iter().map(usize::to_string).collect();
    line("reference", format!("{} rows checked: {}", c.rows.len(), rows.join(", ")));
    let e = &c.max_err;
    let logp = if o.target_rows > 0 { format!("  logp {:.2e}", e.logp) } else { String::new() };
    line(
        "max |error|",
        format!(
            "lse {:.2e}{logp}  entropy {:.2e}  log_sum {:.2e}  gradient {:.2e}",
            e.lse, e.entropy, e.log_sum, e.grad
        ),
    );
    line("", format!("worst |error| / tolerance {:.3} (must be <= 1)", c.worst_ratio));
    for m in &c.messages {
        line("FAILED", m.clone());
    }
    if c.passed() {
        s.push_str("reference check: PASS\n");
    } else {
        let _ = writeln!(s, "reference check: FAIL ({} of {} rows outside tolerance)", c.failed_rows, c.rows.len());
    }
    s
}

/// Prints the header line and the summary on stdout.
pub fn print(d: &Description, o: &Outcome) {
    print!("tokenmath: {}\n{}", d.origin, summary(d, o));
}

fn spread(s: &Spread) -> String {
    match s.mean() {
        Some(mean) => format!("mean {mean:.5}  min {:.5}  max {:.5}", s.min, s.max),
        None => "n/a".into(),
    }
}

fn throughput(time: Duration, rows: usize, vocab: usize, bytes_per_row: f64) -> String {
    let secs = time.as_secs_f64().max(1e-9);
    let rows = rows as f64;
    format!(
        "{:>10}  {}rows/s  {}B/s of logits  {}elem/s",
        duration(time),
        si(rows / secs),
        si(rows * bytes_per_row / secs),
        si(rows * vocab as f64 / secs),
    )
}

/// `x` with an SI prefix and a trailing space: `"51.9 k"`, `"6.80 G"`.
fn si(x: f64) -> String {
    let (v, prefix) = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]
        .into_iter()
        .find(|&(scale, _)| x >= scale)
        .map_or((x, ""), |(scale, p)| (x / scale, p));
    format!("{v:.3} {prefix}")
}

fn duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 1e-3 {
        format!("{:.1} us", secs * 1e6)
    } else if secs < 1.0 {
        format!("{:.3} ms", secs * 1e3)
    } else {
        format!("{secs:.3} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(si(51_870.0), "51.870 k");
        assert_eq!(si(6.8e9), "6.800 G");
        assert_eq!(si(12.0), "12.000 ");
        assert_eq!(duration(Duration::from_micros(250)), "250.0 us");
        assert_eq!(duration(Duration::from_micros(1_234)), "1.234 ms");
        assert_eq!(duration(Duration::from_millis(2_500)), "2.500 s");
    }
}
