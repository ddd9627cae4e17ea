//! The policy-gradient step of the main job: every `--algo` runs end to end and agrees with
//! the f64 reference; bad shapes are usage errors.

use std::process::Command;

fn tokenmath(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tokenmath")).args(args).output().expect("run tokenmath");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn every_algorithm_runs_and_matches_the_reference() {
    for algo in ["grpo", "dr_grpo", "dapo", "gspo", "rloo"] {
        let (code, out, err) = tokenmath(&["--rows", "96", "--vocab", "3000", "--algo", algo, "--response-len", "6"]);
        assert_eq!(code, 0, "{algo}: {out}\n{err}");
        assert!(out.contains(&format!("policy step ({algo})")), "{out}");
        assert!(out.contains("policy check: PASS"), "{algo}: {out}");
        assert!(out.contains("clipfrac"), "{out}");
        let uses_kl = matches!(algo, "grpo" | "rloo");
        assert_eq!(out.contains("kl (k3)"), uses_kl, "{algo}: {out}");
    }
}

#[test]
fn the_step_is_deterministic_across_threads_and_backends() {
    let run = |extra: &[&str]| {
        let mut args = vec!["--rows", "64", "--vocab", "2049", "--algo", "gspo"];
        args.extend_from_slice(extra);
        let (code, out, _) = tokenmath(&args);
        assert_eq!(code, 0);
        // Everything but timings.
        out.lines()
            .filter(|l| !l.contains(" ms") && !l.contains("/s") && !l.contains("time") && !l.contains("execution"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let one = run(&["--threads", "1"]);
    assert_eq!(one, run(&["--threads", "3"]));
    assert_eq!(one, run(&["--threads", "2", "--backend", "portable"]));
}

#[test]
fn shapes_that_do_not_divide_are_usage_errors() {
    let (code, _, err) = tokenmath(&["--rows", "10", "--vocab", "100", "--response-len", "4"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--response-len 4 must divide the 10 rows"), "{err}");
    let (code, _, err) = tokenmath(&["--rows", "12", "--vocab", "100", "--response-len", "4", "--group-size", "2"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--group-size 2 must divide the 3 responses"), "{err}");
    let (code, _, err) = tokenmath(&["--algo", "ppo"]);
    assert_eq!(code, 2, "{err}");
}
