//! End-to-end tests of the `tokenmath` binary: the default batch, `stats` on safetensors
//! files written here, and the errors bad input must give (exit code 2, one clear line,
//! never a panic).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use half::bf16;
use safetensors::tensor::TensorView;
use safetensors::Dtype;

mod common;

use common::{tokenmath, Run};

fn stats(path: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["stats", "--input", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    tokenmath(&args)
}

#[track_caller]
fn assert_pass(run: &Run) {
    assert_eq!(run.code, 0, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("\nreference check: PASS\n"), "{}", run.stdout);
    // The default batch also runs a policy step, with its own check.
    if run.stdout.contains("policy step") {
        assert!(run.stdout.contains("\npolicy check: PASS ("), "{}", run.stdout);
    }
}

/// Exit code 2 with one `tokenmath: error:` line containing `needle`.
#[track_caller]
fn assert_error(run: &Run, needle: &str) {
    assert_eq!(run.code, 2, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains(needle), "expected {needle:?} in stderr:\n{}", run.stderr);
}

#[track_caller]
fn assert_input_error(run: &Run, needle: &str) {
    assert_error(run, needle);
    assert!(run.stderr.starts_with("tokenmath: error: "), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
}

/// The summary line starting with `label` (after the indentation).
fn line<'a>(run: &'a Run, label: &str) -> &'a str {
    run.stdout
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} line in\n{}", run.stdout))
}

/// A fresh scratch directory for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tokenmath-cli").join(test);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

struct Tensor {
    name: &'static str,
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

fn f32s(name: &'static str, shape: &[usize], v: &[f32]) -> Tensor {
    Tensor { name, dtype: Dtype::F32, shape: shape.to_vec(), bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect() }
}

fn bf16s(name: &'static str, shape: &[usize], v: &[f32]) -> Tensor {
    let bytes = v.iter().flat_map(|&x| bf16::from_f32(x).to_le_bytes()).collect();
    Tensor { name, dtype: Dtype::BF16, shape: shape.to_vec(), bytes }
}

fn i64s(name: &'static str, shape: &[usize], v: &[i64]) -> Tensor {
    Tensor { name, dtype: Dtype::I64, shape: shape.to_vec(), bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect() }
}

fn i32s(name: &'static str, shape: &[usize], v: &[i32]) -> Tensor {
    Tensor { name, dtype: Dtype::I32, shape: shape.to_vec(), bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect() }
}

fn serialize(tensors: &[Tensor]) -> Vec<u8> {
    let views = tensors.iter().map(|t| (t.name, TensorView::new(t.dtype, t.shape.clone(), &t.bytes).unwrap()));
    safetensors::serialize(views, None).unwrap()
}

fn save(dir: &Path, file: &str, tensors: &[Tensor]) -> PathBuf {
    let path = dir.join(file);
    fs::write(&path, serialize(tensors)).unwrap();
    path
}

/// Deterministic, varied logits: `rows × vocab` values in about `[-6, 6]`.
fn logits(rows: usize, vocab: usize) -> Vec<f32> {
    (0..rows * vocab).map(|i| ((i * 7919 + i / vocab * 13) % 1201) as f32 / 100.0 - 6.0).collect()
}

// ----------------------------------------------------------------------------------------
// The default batch
// ----------------------------------------------------------------------------------------

#[test]
fn no_arguments_runs_the_default_batch() {
    let run = tokenmath(&[]);
    assert_pass(&run);
    assert!(run.stdout.contains("64 rows x 32768 vocab, f32, temperature 1"), "{}", run.stdout);
    assert!(run.stdout.contains("4 of 64 rows with a masked vocabulary block"), "{}", run.stdout);
    assert!(line(&run, "non-finite").ends_with("none"));
    assert!(line(&run, "reference").contains("8 rows checked: 0, 9, 18, 27, 36, 45, 54, 63"));
    for label in ["forward", "backward"] {
        assert!(line(&run, label).contains("rows/s"));
    }
}

#[test]
fn small_default_batches_pass_in_every_dtype() {
    for args in [
        &["run", "--rows", "12", "--vocab", "3000"][..],
        &["run", "--rows", "7", "--vocab", "5000", "--dtype", "bf16", "--temperature", "0.7"],
        &["--rows", "20", "--vocab", "2100", "--dtype", "f16", "--backend", "portable", "--threads", "3"],
        &["run", "--rows", "1", "--vocab", "1", "--seed", "0x2a"],
    ] {
        let run = tokenmath(args);
        assert_pass(&run);
    }
}

#[test]
fn results_do_not_depend_on_threads_or_backend() {
    let base = ["run", "--rows", "24", "--vocab", "4100", "--dtype", "bf16", "--temperature", "1.3"];
    let variants = [["--threads", "1", "--backend", "auto"], ["--threads", "3", "--backend", "portable"]];
    let runs: Vec<Run> = variants.iter().map(|v| tokenmath(&[&base[..], &v[..]].concat())).collect();
    for label in ["entropy", "logp", "loss", "max |error|", "worst"] {
        assert_eq!(line(&runs[0], label), line(&runs[1], label));
    }
    assert_pass(&runs[0]);
}

#[test]
fn bad_options_are_usage_errors() {
    for (args, needle) in [
        (&["--rows", "0"][..], "--rows"),
        (&["run", "--dtype", "f64"], "--dtype"),
        (&["run", "--seed", "zz"], "--seed"),
        (&["stats"], "--input"),
        (&["frobnicate"], "frobnicate"),
    ] {
        assert_error(&tokenmath(args), needle);
    }
    for t in ["0", "-1", "inf", "nan", "1e-50"] {
        let run = tokenmath(&["run", "--rows", "2", "--vocab", "10", "--temperature", t]);
        assert_error(&run, "--temperature");
    }
}

// ----------------------------------------------------------------------------------------
// stats on safetensors files
// ----------------------------------------------------------------------------------------

#[test]
fn stats_on_f32_rows_without_labels() {
    let dir = scratch("f32_rows");
    // Uniform rows: entropy is exactly ln V.
    let uniform = save(&dir, "uniform.safetensors", &[f32s("logits", &[6, 100], &[0.25; 600])]);
    let run = stats(&uniform, &[]);
    assert_pass(&run);
    assert!(line(&run, "entropy").contains("mean 4.60517  min 4.60517  max 4.60517"), "{}", run.stdout);
    assert!(line(&run, "loss").contains("none"));
    assert!(line(&run, "input").contains("no labels"));

    // A tensor with another name is found when it is the only floating-point one.
    let path =
        save(&dir, "other.safetensors", &[f32s("scores", &[5, 300], &logits(5, 300)), i32s("ids", &[5], &[0; 5])]);
    let run = stats(&path, &["--temperature", "0.5", "--threads", "2"]);
    assert_pass(&run);
    assert!(line(&run, "input").contains("logits `scores` [5, 300] f32"));
}

#[test]
fn stats_on_bf16_batch_with_i64_labels() {
    let dir = scratch("bf16_labels");
    let (b, t, v) = (2, 3, 300);
    let labels = [5, -100, 299, 0, 17, 150];
    let path = save(
        &dir,
        "batch.safetensors",
        &[bf16s("logits", &[b, t, v], &logits(b * t, v)), i64s("labels", &[b, t], &labels)],
    );
    let run = stats(&path, &[]);
    assert_pass(&run);
    assert!(line(&run, "input").contains("labels `labels` I64 (5 of 6 rows with a target)"), "{}", run.stdout);
    assert!(line(&run, "shape").contains("6 rows x 300 vocab, bf16"));
    assert!(line(&run, "logp").contains("(5 rows with a target)"));

    // The same data with custom names and i32 labels of shape [N].
    let labels32: Vec<i32> = labels.iter().map(|&l| l as i32).collect();
    let path = save(
        &dir,
        "named.safetensors",
        &[
            bf16s("lm_out", &[b * t, v], &logits(b * t, v)),
            i32s("y", &[b * t], &labels32),
            f32s("other", &[2], &[1.0, 2.0]),
        ],
    );
    let named = stats(&path, &["--logits-key", "lm_out", "--labels-key", "y"]);
    assert_pass(&named);
    for label in ["entropy", "logp", "loss"] {
        assert_eq!(line(&run, label), line(&named, label));
    }
}

#[test]
fn stats_processes_many_chunks() {
    let dir = scratch("chunks");
    let (rows, vocab) = (600, 64);
    let labels: Vec<i64> = (0..rows as i64).map(|r| if r % 10 == 3 { -100 } else { r * 7 % vocab as i64 }).collect();
    let path = save(
        &dir,
        "big.safetensors",
        &[f32s("logits", &[rows, vocab], &logits(rows, vocab)), i64s("labels", &[rows], &labels)],
    );
    let run = stats(&path, &[]);
    assert_pass(&run);
    assert!(line(&run, "reference").contains("0, 85, 171, 256, 342, 427, 513, 599"), "{}", run.stdout);
    assert!(line(&run, "logp").contains("(540 rows with a target)"));
}

#[test]
fn nonfinite_rows_are_reported_and_checked() {
    let dir = scratch("nonfinite");
    let (rows, vocab) = (40, 50);
    let mut x = logits(rows, vocab);
    x[17 * vocab + 3] = f32::NAN;
    x[30 * vocab] = f32::INFINITY;
    x[21 * vocab..22 * vocab - 1].fill(f32::NEG_INFINITY); // all but one masked: fine
    let path = save(&dir, "nan.safetensors", &[f32s("logits", &[rows, vocab], &x)]);
    let run = stats(&path, &[]);
    assert_pass(&run);
    assert!(line(&run, "non-finite").contains("2 rows with a NaN or +inf logit (first: row 17)"), "{}", run.stdout);
    // Row 17 is checked on top of the spread sample (0, 5, 11, 16, 22, 27, 33, 39).
    assert!(line(&run, "reference").contains("9 rows checked: 0, 5, 11, 16, 17, 22"), "{}", run.stdout);
    assert!(line(&run, "entropy").contains("(38 rows)"));
}

#[test]
fn a_row_of_only_minus_infinity_is_an_input_error() {
    let dir = scratch("all_masked");
    let (rows, vocab) = (300, 8);
    let mut x = logits(rows, vocab);
    x[280 * vocab..281 * vocab].fill(f32::NEG_INFINITY); // in the second chunk
    let path = save(&dir, "masked.safetensors", &[f32s("logits", &[rows, vocab], &x)]);
    assert_input_error(&stats(&path, &[]), "row 280 has no finite logit");
}

/// A file whose logits start at an odd byte offset (a 1-byte tensor comes first): valid
/// safetensors, but the data cannot be viewed in place as f32 or bf16.
fn unaligned_file(logits: &Tensor) -> Vec<u8> {
    let header = format!(
        r#"{{"pad":{{"dtype":"U8","shape":[1],"data_offsets":[0,1]}},"logits":{{"dtype":"{}","shape":{:?},"data_offsets":[1,{}]}}}}"#,
        logits.dtype,
        logits.shape,
        1 + logits.bytes.len()
    );
    let mut header = header.into_bytes();
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend(header);
    file.push(0);
    file.extend(&logits.bytes);
    file
}

#[test]
fn unaligned_logits_are_copied_and_give_the_same_results() {
    let dir = scratch("unaligned");
    for tensor in [f32s("logits", &[9, 700], &logits(9, 700)), bf16s("logits", &[3, 3, 700], &logits(9, 700))] {
        let aligned = save(&dir, "aligned.safetensors", std::slice::from_ref(&tensor));
        let unaligned = dir.join("unaligned.safetensors");
        fs::write(&unaligned, unaligned_file(&tensor)).unwrap();
        let (a, u) = (stats(&aligned, &[]), stats(&unaligned, &[]));
        assert_pass(&u);
        for label in ["entropy", "max |error|"] {
            assert_eq!(line(&a, label), line(&u, label));
        }
    }
}

// ----------------------------------------------------------------------------------------
// Bad files
// ----------------------------------------------------------------------------------------

#[test]
fn unreadable_and_malformed_files_are_input_errors() {
    let dir = scratch("malformed");
    assert_input_error(&stats(&dir.join("missing.safetensors"), &[]), "cannot read");
    assert_input_error(&stats(&dir, &[]), "not a regular file");

    let garbage = dir.join("garbage.safetensors");
    fs::write(&garbage, b"this is not a safetensors file, just some text\n").unwrap();
    assert_input_error(&stats(&garbage, &[]), "not a valid safetensors file");

    let empty = dir.join("empty.safetensors");
    fs::write(&empty, b"").unwrap();
    assert_input_error(&stats(&empty, &[]), "not a valid safetensors file");

    let good = serialize(&[f32s("logits", &[4, 64], &logits(4, 64))]);
    let truncated = dir.join("truncated.safetensors");
    fs::write(&truncated, &good[..good.len() - 10]).unwrap();
    assert_input_error(&stats(&truncated, &[]), "truncated");
    fs::write(&truncated, &good[..20]).unwrap();
    assert_input_error(&stats(&truncated, &[]), "not a valid safetensors file");
}

#[test]
fn unusable_tensors_are_input_errors() {
    let dir = scratch("tensors");
    let x = logits(4, 10);
    let cases: Vec<(&str, Vec<Tensor>, &[&str], &str)> = vec![
        ("int", vec![i32s("logits", &[4, 10], &[1; 40])], &[], "dtype I32; expected F32, BF16 or F16"),
        ("rank1", vec![f32s("logits", &[40], &x)], &[], "has shape [40]; expected [N, V] or [B, T, V]"),
        ("rank4", vec![f32s("logits", &[1, 2, 2, 10], &x)], &[], "expected [N, V] or [B, T, V]"),
        ("empty", vec![f32s("logits", &[0, 10], &[])], &[], "is empty"),
        ("no_vocab", vec![f32s("logits", &[4, 0], &[])], &[], "is empty"),
        (
            "key",
            vec![f32s("logits", &[4, 10], &x)],
            &["--logits-key", "nope"],
            "no tensor named `nope` (--logits-key); tensors in the file: logits",
        ),
        (
            "labels_key",
            vec![f32s("logits", &[4, 10], &x)],
            &["--labels-key", "y"],
            "no tensor named `y` (--labels-key)",
        ),
        (
            "ambiguous",
            vec![f32s("a", &[4, 10], &x), bf16s("b", &[4, 10], &x)],
            &[],
            "not exactly one floating-point tensor; choose one with --logits-key (tensors in the file: a, b)",
        ),
        ("no_float", vec![i64s("labels", &[4], &[0; 4])], &[], "tensors in the file: labels"),
        (
            "label_range",
            vec![f32s("logits", &[4, 10], &x), i64s("labels", &[4], &[0, 10, 1, 2])],
            &[],
            "label 10 of row 1",
        ),
        (
            "label_i32_overflow",
            vec![f32s("logits", &[4, 10], &x), i64s("labels", &[4], &[0, 1, 1 << 40, 2])],
            &[],
            "label 1099511627776 of row 2",
        ),
        (
            "label_count",
            vec![f32s("logits", &[4, 10], &x), i64s("labels", &[3], &[0, 1, 2])],
            &[],
            "has shape [3]; expected [4] to match the logits",
        ),
        (
            "label_shape",
            vec![f32s("logits", &[2, 2, 10], &x), i64s("labels", &[4, 1], &[0; 4])],
            &[],
            "expected [2, 2] or [4]",
        ),
        (
            "label_dtype",
            vec![f32s("logits", &[4, 10], &x), f32s("labels", &[4], &[0.0; 4])],
            &[],
            "dtype F32; expected I64 or I32",
        ),
    ];
    for (name, tensors, args, needle) in cases {
        let path = save(&dir, &format!("{name}.safetensors"), &tensors);
        let run = stats(&path, args);
        assert_input_error(&run, needle);
        assert!(run.stderr.contains(path.to_str().unwrap()), "{name}: {}", run.stderr);
    }
}

#[cfg(feature = "gpu")]
#[test]
fn device_wgpu_compares_the_gpu_with_core() {
    for dtype in ["f32", "bf16"] {
        let run = tokenmath(&[
            "--device",
            "wgpu",
            "--rows",
            "12",
            "--vocab",
            "3001",
            "--dtype",
            dtype,
            "--temperature",
            "0.8",
        ]);
        assert_pass(&run);
        assert!(run.stdout.contains("gpu check   PASSED"), "{}", run.stdout);
        assert!(run.stdout.contains("gradient  max |gpu - core|"), "{}", run.stdout);
    }
}

#[test]
fn device_cuda_without_the_runtime_or_a_driver_is_a_clean_error() {
    let run = tokenmath(&["--device", "cuda", "--rows", "4", "--vocab", "100"]);
    // This machine has no NVIDIA driver, and the default build has no CUDA runtime.
    assert_eq!(run.code, 2, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("--device:"), "{}", run.stderr);
    if !cfg!(feature = "gpu") {
        assert!(run.stderr.contains("cargo run --release --features cuda -- --device cuda"), "{}", run.stderr);
    }
}

/// A build without the `gpu` feature: `--device wgpu|cuda` and `--gpu-mode` stop before any
/// work with one line that says how to build with GPU support.
#[cfg(not(feature = "gpu"))]
#[test]
fn without_the_gpu_feature_device_and_gpu_mode_say_how_to_enable_it() {
    let cases: [(&[&str], &str); 4] = [
        (&["--device", "wgpu"], "--device: this build has no GPU support; build with it: cargo run --release --features gpu -- --device wgpu"),
        (&["--gpu-mode", "fast"], "--gpu-mode: this build has no GPU support; build with it: cargo run --release --features gpu -- --device wgpu --gpu-mode fast"),
        (&["--device", "wgpu", "--gpu-mode", "canonical"], "--features gpu -- --device wgpu"),
        (&["stats", "--input", "missing.safetensors", "--device", "wgpu"], "--features gpu -- --device wgpu"),
    ];
    for (args, needle) in cases {
        let run = tokenmath(args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{args:?}: the job ran: {}", run.stdout);
        assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
    }
}

#[cfg(feature = "gpu")]
#[test]
fn stats_on_a_gpu_with_and_without_labels() {
    let dir = scratch("stats_gpu");
    let (rows, vocab) = (6, 2500);
    let v = logits(rows, vocab);
    let labels: Vec<i64> = (0..rows as i64).map(|r| if r == 2 { -100 } else { r * 97 % vocab as i64 }).collect();
    let with = save(&dir, "with.safetensors", &[bf16s("logits", &[2, 3, vocab], &v), i64s("labels", &[2, 3], &labels)]);
    let without = save(&dir, "without.safetensors", &[f32s("logits", &[rows, vocab], &v)]);
    for path in [&with, &without] {
        let run = stats(path, &["--device", "wgpu"]);
        assert_pass(&run);
        assert!(run.stdout.contains("gpu check   PASSED"), "{}", run.stdout);
    }
}

// ----------------------------------------------------------------------------------------
// What a new user hit (issue 10)
// ----------------------------------------------------------------------------------------

/// `tokenmath | head -1`: a closed stdout ends the process quietly (no panic, no exit 101).
#[test]
fn a_closed_stdout_ends_quietly() {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tokenmath"))
        .args(["--rows", "8", "--vocab", "64"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tokenmath");
    drop(child.stdout.take()); // the reader is gone before the first line is written
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.is_empty(), "{stderr}");
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert!(out.status.success() || out.status.signal() == Some(libc::SIGPIPE), "{:?}", out.status);
    }
}

/// Without a Vulkan driver `--device wgpu` is one error line, no panic text.
#[cfg(feature = "gpu")]
#[test]
fn no_vulkan_adapter_is_one_line_without_panic_text() {
    let out = Command::new(env!("CARGO_BIN_EXE_tokenmath"))
        .args(["--device", "wgpu", "--rows", "4", "--vocab", "100"])
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .env("WGPU_BACKEND", "vulkan")
        .output()
        .expect("run tokenmath");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("tokenmath: error: --device: no usable GPU"), "{stderr}");
}

/// A target on a `-inf` logit: logp = -inf, the loss is +inf and says why, every count
/// agrees, and the checked row passes (equal infinities are equal).
#[test]
fn a_target_on_a_minus_inf_logit_gives_an_infinite_loss() {
    let dir = scratch("masked_target");
    let (rows, vocab) = (100, 40);
    let mut x = logits(rows, vocab);
    x[3] = f32::NEG_INFINITY; // row 0 (a checked row), column 3
    let labels: Vec<i64> = (0..rows as i64).map(|r| if r == 0 { 3 } else { r % vocab as i64 }).collect();
    let path =
        save(&dir, "masked.safetensors", &[f32s("logits", &[rows, vocab], &x), i64s("labels", &[rows], &labels)]);
    let run = stats(&path, &[]);
    assert_pass(&run);
    assert!(run.stdout.contains("(100 of 100 rows with a target)"), "{}", run.stdout);
    assert!(line(&run, "logp").contains("(100 rows with a target)"), "{}", run.stdout);
    assert!(line(&run, "loss").contains("+inf (mean NLL): 1 row with the target on a -inf logit (first: row 0)"));
    assert!(line(&run, "reference").contains("rows checked: 0,"), "{}", run.stdout);
}

/// Temperatures whose reciprocal overflows are refused; a huge temperature (subnormal
/// gradients) passes the check thanks to the tolerance's floor at the smallest normal.
#[test]
fn temperature_extremes() {
    let run = tokenmath(&["--rows", "8", "--vocab", "64", "--temperature", "1e38"]);
    assert_pass(&run);
    for t in ["1e-45", "2e-39"] {
        let run = tokenmath(&["--rows", "8", "--vocab", "64", "--temperature", t]);
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(run.stderr.contains("overflows f32"), "{}", run.stderr);
    }
}

/// A row longer than one chunk is refused with one line before anything large is
/// allocated (a sparse [1, 1, 2^31] f16 dump used to abort allocating 8 GiB).
#[test]
fn a_row_longer_than_a_chunk_is_refused() {
    let dir = scratch("huge_row");
    let vocab: u64 = 1 << 31;
    let header = format!(r#"{{"logits":{{"dtype":"F16","shape":[1,1,{vocab}],"data_offsets":[0,{}]}}}}"#, 2 * vocab);
    let mut header = header.into_bytes();
    header.resize(header.len().next_multiple_of(8), b' ');
    let path = dir.join("huge.safetensors");
    let mut file = fs::File::create(&path).unwrap();
    use std::io::Write as _;
    file.write_all(&(header.len() as u64).to_le_bytes()).unwrap();
    file.write_all(&header).unwrap();
    file.set_len(8 + header.len() as u64 + 2 * vocab).unwrap(); // sparse: no disk used
    drop(file);
    assert_input_error(&stats(&path, &[]), "rows of 2147483648 columns are longer than");
    assert_input_error(&tokenmath(&["--rows", "1", "--vocab", "2147483647"]), "columns are longer than");
}
