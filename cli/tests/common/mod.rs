//! What the end-to-end test files share: running the `tokenmath` binary.

use std::process::Command;

/// A finished run of the binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `tokenmath args…`; a panic (instead of one error line) fails the test.
pub fn tokenmath(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_tokenmath")).args(args).output().expect("run tokenmath");
    let run = Run {
        code: out.status.code().expect("exited normally"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    };
    assert!(!run.stderr.contains("panicked"), "tokenmath {args:?} panicked:\n{}", run.stderr);
    run
}
