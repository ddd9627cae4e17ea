//! The seed papers' methods in the main job (`tokenmath --algo hapo|tw_grpo|nsr|w_reinforce|
//! grpo_n|d3s`) and the top-entropy mask (`--top-entropy-quantile`): each passes its reference
//! check, the mask keeps the count the kernel documents and changes the loss, the step is the
//! same for any thread count, and bad combinations are one error line.

mod common;

use common::{tokenmath, Run};

const SEED_ALGOS: [&str; 6] = ["hapo", "tw_grpo", "nsr", "w_reinforce", "grpo_n", "d3s"];
const ALL_ALGOS: [&str; 11] =
    ["grpo", "dr_grpo", "dapo", "gspo", "rloo", "hapo", "tw_grpo", "nsr", "w_reinforce", "grpo_n", "d3s"];

/// A small default batch: 16 responses of 6 tokens in groups of 4.
fn step(algo: &str, extra: &[&str]) -> Run {
    let mut args = vec!["--rows", "96", "--vocab", "3000", "--response-len", "6", "--algo", algo];
    args.extend_from_slice(extra);
    tokenmath(&args)
}

#[track_caller]
fn assert_pass(run: &Run, what: &str) {
    assert_eq!(run.code, 0, "{what}: stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("\npolicy check: PASS ("), "{what}: {}", run.stdout);
    assert!(!run.stdout.contains("MISMATCH"), "{what}: {}", run.stdout);
}

/// The policy step's summary line starting with `label` (after the indentation).
fn line<'a>(run: &'a Run, label: &str) -> &'a str {
    let step = &run.stdout[run.stdout.find("policy step (").expect("a policy step")..];
    step.lines().map(str::trim_start).find(|l| l.starts_with(label)).unwrap_or_else(|| panic!("{label}: {step}"))
}

fn loss(run: &Run) -> f64 {
    line(run, "loss").split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The numbers `K of N` after `before` in `s`.
fn k_of_n(s: &str, before: &str) -> (u64, u64) {
    let rest = &s[s.find(before).unwrap_or_else(|| panic!("{before:?} in {s}")) + before.len()..];
    let w: Vec<&str> = rest.split_whitespace().collect();
    assert_eq!(w[1], "of", "{s}");
    (w[0].parse().unwrap(), w[2].parse().unwrap())
}

#[test]
fn every_seed_method_runs_its_step_and_passes_its_reference_check() {
    for algo in SEED_ALGOS {
        let run = step(algo, &[]);
        assert_pass(&run, algo);
        assert!(run.stdout.contains(&format!("policy step ({algo}) on the same batch")), "{}", run.stdout);
        assert!(run.stdout.contains("|dL/dlogits|_2"), "{}", run.stdout);
        // Each method reports what it selected or computed.
        assert!(line(&run, algo).len() > algo.len() + 5, "{}", run.stdout);
        assert_eq!(run.stdout.contains("kl (k3)"), matches!(algo, "grpo_n" | "d3s"), "{algo}: {}", run.stdout);
    }
}

#[test]
fn on_the_embedded_default_batch_every_seed_method_passes() {
    // The main job as a user runs it: no size flags (64 x 32768, 8 responses of 8 tokens).
    for algo in SEED_ALGOS {
        let run = tokenmath(&["--algo", algo]);
        assert_pass(&run, algo);
        assert!(run.stdout.contains("64 rows x 32768 vocab"), "{}", run.stdout);
        assert!(run.stdout.contains("\nreference check: PASS\n"), "{}", run.stdout);
        let loss_line = line(&run, "loss");
        assert!(loss_line.contains("(f64 reference "), "{loss_line}");
    }
}

#[test]
fn the_methods_select_what_their_kernels_document() {
    // NSR keeps only the incorrect responses, all at A = −1.
    let nsr = step("nsr", &[]);
    let adv = line(&nsr, "advantage");
    assert!(adv.contains("min -1.00000  max -1.00000"), "{adv}");
    // GRPO-N: no positive advantage is left.
    let grpo_n = step("grpo_n", &[]);
    assert!(line(&grpo_n, "advantage").ends_with("max 0.00000 (valid tokens)"), "{}", grpo_n.stdout);
    // D³S at p = 0: half the responses, then ⌈0.2·n⌉ of their n valid tokens.
    let d3s = step("d3s", &[]);
    let note = line(&d3s, "d3s");
    assert_eq!(k_of_n(note, "p = 0: "), (8, 16), "{note}");
    let (kept, n) = k_of_n(note, "); ");
    assert_eq!(kept, (0.2 * n as f64).ceil() as u64, "{note}");
    // W-REINFORCE: λ = 0.1 is the largest advantage (binary rewards: G ∈ {0, 1}).
    let w = step("w_reinforce", &[]);
    assert!(line(&w, "advantage").contains("max 0.10000"), "{}", w.stdout);
    // TW-GRPO's weights lie in [1, α].
    let tw = step("tw_grpo", &[]);
    assert!(line(&tw, "tw_grpo").contains("in [1.0000, 1.7000]"), "{}", tw.stdout);
}

#[test]
fn the_entropy_mask_keeps_the_documented_count_and_changes_the_loss() {
    for algo in ALL_ALGOS {
        let plain = step(algo, &[]);
        assert_pass(&plain, algo);
        let masked = step(algo, &["--top-entropy-quantile", "0.2"]);
        assert_pass(&masked, algo);
        let note = line(&masked, "top-entropy");
        assert!(note.contains("(reference: same)"), "{note}");
        // Distinct entropies: exactly n − ⌈(1 − ρ)(n − 1)⌉ of the n valid tokens (TRL's rule).
        let (kept, n) = k_of_n(note, "nats, ");
        assert!(n > 5, "{note}");
        let expected = n - ((1.0 - 0.2f32 as f64) * (n - 1) as f64).ceil() as u64;
        assert_eq!(kept, expected, "{algo}: {note}");
        assert_ne!(loss(&plain), loss(&masked), "{algo}: the mask must change the loss");
        // ρ = 1 keeps every valid token: the loss of no mask.
        let all = step(algo, &["--top-entropy-quantile", "1"]);
        assert_pass(&all, algo);
        let (kept, n) = k_of_n(line(&all, "top-entropy"), "nats, ");
        assert_eq!(kept, n, "{}", all.stdout);
        assert_eq!(line(&all, "loss"), line(&plain, "loss"), "{algo}");
    }
}

#[test]
fn the_seed_steps_are_the_same_for_any_thread_count_and_backend() {
    let body = |run: &Run| -> Vec<String> {
        assert_pass(run, "determinism");
        let step = &run.stdout[run.stdout.find("policy step (").unwrap()..];
        step.lines().filter(|l| !l.contains(" ms")).map(str::to_owned).collect()
    };
    for algo in ["hapo", "tw_grpo", "d3s"] {
        let one = body(&step(algo, &["--threads", "1", "--top-entropy-quantile", "0.3"]));
        let two = body(&step(algo, &["--threads", "2", "--top-entropy-quantile", "0.3"]));
        let portable = body(&step(algo, &["--threads", "3", "--backend", "portable", "--top-entropy-quantile", "0.3"]));
        assert_eq!(one, two, "{algo}");
        assert_eq!(one, portable, "{algo}");
    }
}

#[track_caller]
fn assert_one_line_error(run: &Run, needle: &str) {
    assert_eq!(run.code, 2, "{needle}: stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert_eq!(run.stderr.lines().filter(|l| !l.trim().is_empty()).count(), 1, "{}", run.stderr);
    assert!(run.stderr.contains(needle), "expected {needle:?} in: {}", run.stderr);
}

#[test]
fn bad_combinations_are_one_clear_error_line() {
    let run = step("tw_grpo", &["--temperature", "0.7"]);
    assert_one_line_error(&run, "tw_grpo: TW-GRPO's token weights are defined on the logits at temperature 1");
    assert!(run.stdout.is_empty(), "nothing runs before the error: {}", run.stdout);
    for rho in ["0", "1.5", "-0.2", "nan"] {
        let arg = format!("--top-entropy-quantile={rho}");
        let run = tokenmath(&[arg.as_str()]);
        assert_eq!(run.code, 2, "{rho}");
        assert!(run.stderr.contains("--top-entropy-quantile"), "{}", run.stderr);
    }
    let run = tokenmath(&["--algo", "ppo_n"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("tw_grpo") && run.stderr.contains("w_reinforce"), "{}", run.stderr);
}
