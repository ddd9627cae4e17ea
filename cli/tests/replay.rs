//! End-to-end tests of `tokenmath replay`: every algorithm on dumps written here and on the
//! Hugging Face producer's dump (`cli/tests/data/`), `--out` against independent
//! recomputations, the report's embedded data, and one clear error line (exit 2, no panic,
//! nothing written) for every kind of bad input.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

mod common;

use common::{tokenmath, Run};

/// A fresh scratch directory for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tokenmath-replay").join(test);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

#[derive(Clone)]
struct Tensor {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

fn f32s(shape: &[usize], v: &[f32]) -> Tensor {
    Tensor { dtype: Dtype::F32, shape: shape.to_vec(), bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect() }
}

fn i64s(shape: &[usize], v: &[i64]) -> Tensor {
    Tensor { dtype: Dtype::I64, shape: shape.to_vec(), bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect() }
}

fn u8s(shape: &[usize], v: &[u8]) -> Tensor {
    Tensor { dtype: Dtype::U8, shape: shape.to_vec(), bytes: v.to_vec() }
}

type Dump = Vec<(&'static str, Tensor)>;

fn serialize(dump: &Dump) -> Vec<u8> {
    let views = dump.iter().map(|(name, t)| (*name, TensorView::new(t.dtype, t.shape.clone(), &t.bytes).unwrap()));
    safetensors::serialize(views, None).unwrap()
}

fn save(dir: &Path, file: &str, dump: &Dump) -> PathBuf {
    let path = dir.join(file);
    fs::write(&path, serialize(dump)).unwrap();
    path
}

fn set(dump: &mut Dump, name: &'static str, t: Tensor) {
    dump.retain(|(n, _)| *n != name);
    dump.push((name, t));
}

fn without(dump: &Dump, name: &str) -> Dump {
    dump.iter().filter(|(n, _)| *n != name).cloned().collect()
}

const B: usize = 12;
const T: usize = 10;
const V: usize = 50;
/// Per response; groups (`b % 4`) of three with different rewards.
const REWARDS: [f32; B] = [1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.5, 0.0, 0.0, 0.0, 1.0, 1.0];

/// Deterministic pseudo-random values in `[0, 1)`.
fn unit(i: usize, salt: usize) -> f32 {
    let x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (salt as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    let x = (x ^ (x >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    ((x >> 40) as f32) / (1u64 << 24) as f32
}

/// A rollout of `B` responses of `T` tokens (lengths 3..=T), groups of 3 in interleaved
/// order (`group_ids` not contiguous), rewards per response, old/ref log-probs near the
/// current ones. Tokens at padded positions hold `-1`.
fn rollout() -> Dump {
    let logits: Vec<f32> = (0..B * T * V).map(|i| 6.0 * unit(i, 1) - 3.0).collect();
    let lengths: Vec<usize> = (0..B).map(|b| 3 + (b * 7) % (T - 2)).collect();
    let mask: Vec<u8> = (0..B * T).map(|i| u8::from(i % T < lengths[i / T])).collect();
    let tokens: Vec<i64> = (0..B * T).map(|i| if mask[i] != 0 { (unit(i, 2) * V as f32) as i64 } else { -1 }).collect();
    let noise = |salt| (0..B * T).map(|i| 0.6 * unit(i, salt) - 0.3).collect::<Vec<f32>>();
    // old/ref = the current logp (f64 reference) plus noise, so some ratios leave the clip range.
    let logp: Vec<f32> = (0..B * T)
        .map(|i| match mask[i] {
            0 => 0.0,
            _ => {
                tokenmath_reference::row_stats(&logits[i * V..(i + 1) * V], 1.0, Some(tokens[i] as usize)).unwrap().logp
                    as f32
            }
        })
        .collect();
    let old: Vec<f32> = logp.iter().zip(noise(3)).map(|(l, n)| l + n).collect();
    let reference: Vec<f32> = logp.iter().zip(noise(4)).map(|(l, n)| l + n).collect();
    let rewards = REWARDS.to_vec();
    let groups: Vec<i64> = (0..B).map(|b| (b % 4) as i64 + 10).collect();
    vec![
        ("logits", f32s(&[B, T, V], &logits)),
        ("tokens", i64s(&[B, T], &tokens)),
        ("mask", u8s(&[B, T], &mask)),
        ("old_logp", f32s(&[B, T], &old)),
        ("ref_logp", f32s(&[B, T], &reference)),
        ("rewards", f32s(&[B], &rewards)),
        ("group_ids", i64s(&[B], &groups)),
    ]
}

fn replay(path: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["replay", "--input", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    tokenmath(&args)
}

#[track_caller]
fn assert_pass(run: &Run) {
    assert_eq!(run.code, 0, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("\npolicy check: PASS ("), "{}", run.stdout);
}

/// The value after `label` on the policy step's summary line starting with it.
fn value(run: &Run, label: &str) -> String {
    let step = &run.stdout[run.stdout.find("policy step (").expect("a policy step")..];
    let line = step.lines().find(|l| l.trim_start().starts_with(label)).unwrap_or_else(|| panic!("{label}"));
    line.trim_start()[label.len()..].split_whitespace().next().unwrap().to_owned()
}

fn read_f32(st: &SafeTensors<'_>, name: &str) -> Vec<f32> {
    let t = st.tensor(name).unwrap_or_else(|_| panic!("no {name}"));
    assert_eq!(t.dtype(), Dtype::F32, "{name}");
    t.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

// ----------------------------------------------------------------------------------------
// Replays that succeed
// ----------------------------------------------------------------------------------------

#[test]
fn every_algorithm_replays_and_matches_the_reference() {
    let dir = scratch("algos");
    let path = save(&dir, "rollout.safetensors", &rollout());
    for algo in ["grpo", "dr_grpo", "dapo", "gspo", "rloo"] {
        let run = replay(&path, &["--algo", algo]);
        assert_pass(&run);
        assert!(run.stdout.contains("\nreference check: PASS\n"), "{}", run.stdout);
        assert!(run.stdout.contains(&format!("policy step ({algo}) replayed on {B} responses x {T} tokens")));
        assert!(run.stdout.contains("in 4 groups"), "{}", run.stdout);
        assert_eq!(run.stdout.contains("kl (k3)"), matches!(algo, "grpo" | "rloo"), "{algo}: {}", run.stdout);
        assert!(run.stdout.contains("|dL/dlogits|_2"), "{}", run.stdout);
        assert!(run.stdout.contains("  advantage   mean"), "{}", run.stdout);
    }
}

#[test]
fn the_seed_methods_and_the_entropy_mask_replay_and_match_the_reference() {
    let dir = scratch("seed");
    let dump = rollout();
    let path = save(&dir, "rollout.safetensors", &dump);
    let out = dir.join("step.safetensors");
    for algo in ["hapo", "nsr", "w_reinforce", "grpo_n", "d3s"] {
        let run = replay(&path, &["--algo", algo]);
        assert_pass(&run);
        assert!(run.stdout.contains(&format!("policy step ({algo}) replayed on {B} responses x {T} tokens")));
        assert!(!run.stdout.contains("MISMATCH"), "{}", run.stdout);
        let masked = replay(&path, &["--algo", algo, "--top-entropy-quantile", "0.25", "--out", out.to_str().unwrap()]);
        assert_pass(&masked);
        assert!(masked.stdout.contains("(reference: same)"), "{}", masked.stdout);
        assert_ne!(value(&masked, "loss"), value(&run, "loss"), "{algo}: the mask changes the loss");
        // Precomputed logp and entropy replay to the same loss (the mask reads the entropies).
        let bytes = fs::read(&out).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let mut pre = without(&dump, "logits");
        set(&mut pre, "logp", f32s(&[B, T], &read_f32(&st, "logp")));
        set(&mut pre, "entropy", f32s(&[B, T], &read_f32(&st, "entropy")));
        let pre_path = save(&dir, "precomputed.safetensors", &pre);
        let run = replay(&pre_path, &["--algo", algo, "--top-entropy-quantile", "0.25"]);
        assert_pass(&run);
        assert_eq!(value(&run, "loss"), value(&masked, "loss"), "{algo}");
        // Without entropies, the methods that need them say so in one line.
        let bare = save(&dir, "bare.safetensors", &without(&pre, "entropy"));
        if matches!(algo, "hapo" | "d3s") {
            assert_one_line_error(&replay(&bare, &["--algo", algo]), "needs per-token entropies");
        } else {
            assert_pass(&replay(&bare, &["--algo", algo]));
        }
        assert_one_line_error(
            &replay(&bare, &["--algo", algo, "--top-entropy-quantile", "0.5"]),
            "needs per-token entropies",
        );
    }
    assert_one_line_error(&replay(&path, &["--algo", "tw_grpo"]), "replay --algo tw_grpo is not available");
}

#[test]
fn without_ref_logp_there_is_no_kl_and_without_old_logp_the_ratio_is_one() {
    let dir = scratch("optional");
    let path = save(&dir, "on_policy.safetensors", &without(&without(&rollout(), "ref_logp"), "old_logp"));
    let out = dir.join("step.safetensors");
    let run = replay(&path, &["--algo", "grpo", "--out", out.to_str().unwrap()]);
    assert_pass(&run);
    assert!(run.stdout.contains("kl          none: the input has no reference log-probs"), "{}", run.stdout);
    assert!(run.stdout.contains("clipfrac    0.0000"), "{}", run.stdout);
    let bytes = fs::read(&out).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mask = st.tensor("mask").unwrap().data().to_vec();
    for (i, r) in read_f32(&st, "ratio").iter().enumerate() {
        assert_eq!(*r, if mask[i] != 0 { 1.0 } else { 0.0 }, "token {i}");
    }
}

#[test]
fn out_holds_every_per_token_array_and_agrees_with_independent_recomputation() {
    let dir = scratch("out");
    let dump = rollout();
    let path = save(&dir, "rollout.safetensors", &dump);
    let out = dir.join("step.safetensors");
    let run = replay(&path, &["--algo", "grpo", "--out", out.to_str().unwrap()]);
    assert_pass(&run);
    let bytes = fs::read(&out).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut names = st.names();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "advantage",
            "advantage_seq",
            "clip_state",
            "entropy",
            "grad_logp",
            "logp",
            "loss",
            "mask",
            "ratio",
            "reward_seq"
        ]
    );
    for name in ["advantage", "entropy", "grad_logp", "logp", "loss", "ratio", "clip_state", "mask"] {
        assert_eq!(st.tensor(name).unwrap().shape(), [B, T], "{name}");
    }
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let meta: HashMap<String, String> = meta.metadata().clone().unwrap();
    let about: Value = serde_json::from_str(&meta["tokenmath_replay"]).unwrap();
    assert_eq!(about["algo"], "grpo");
    let printed: f32 = value(&run, "loss").parse().unwrap();
    let stored: f32 = about["loss"].as_str().unwrap().parse().unwrap();
    assert!((printed - stored).abs() <= 1e-6 * (1.0 + printed.abs()), "{printed} vs {stored}");

    let get = |name: &str| dump.iter().find(|(n, _)| *n == name).unwrap().1.bytes.clone();
    let logits: Vec<f32> = get("logits").chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    let tokens: Vec<i64> = get("tokens").chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
    let old: Vec<f32> = get("old_logp").chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    let mask = get("mask");
    let (logp, entropy) = (read_f32(&st, "logp"), read_f32(&st, "entropy"));
    let (ratio, grad, adv) = (read_f32(&st, "ratio"), read_f32(&st, "grad_logp"), read_f32(&st, "advantage"));
    let clip = st.tensor("clip_state").unwrap().data().to_vec();
    assert!(clip.contains(&1) && clip.contains(&2), "the dump clips both ways: {clip:?}");
    for i in 0..B * T {
        if mask[i] == 0 {
            assert_eq!((grad[i], adv[i], clip[i]), (0.0, 0.0, 4), "masked token {i}");
            continue;
        }
        // logp and entropy against a plain f64 log-softmax of the logits.
        let row = &logits[i * V..(i + 1) * V];
        let want = tokenmath_reference::row_stats(row, 1.0, Some(tokens[i] as usize)).unwrap();
        let tol = tokenmath_reference::stats_tolerance(&want, V, false);
        assert!((f64::from(logp[i]) - want.logp).abs() <= tol.logp, "logp {i}: {} vs {}", logp[i], want.logp);
        assert!((f64::from(entropy[i]) - want.entropy).abs() <= tol.entropy, "entropy {i}");
        // PPO's ratio is exp(logp − old_logp) (no clamp binds at these sizes).
        let r = (f64::from(logp[i]) - f64::from(old[i])).exp();
        assert!((f64::from(ratio[i]) - r).abs() < 1e-5 * r, "ratio {i}");
        let expected_clip = match adv[i] {
            a if a > 0.0 && r > 1.2 + 1e-6 => 1,
            a if a < 0.0 && r < 0.8 - 1e-6 => 2,
            _ => 0,
        };
        if (r - 1.2).abs() > 1e-5 && (r - 0.8).abs() > 1e-5 {
            assert_eq!(clip[i], expected_clip, "clip state {i} (ratio {r}, advantage {})", adv[i]);
        }
    }
    // Token-mean aggregation: g_logp = dℓ/dlogp / (valid tokens), and dℓ/dlogp = −A·r (+ β·k3'
    // with k3' = 1 − e^{ref − logp}) where unclipped.
    let valid = mask.iter().filter(|&&m| m != 0).count() as f64;
    let reference: Vec<f32> =
        get("ref_logp").chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    for i in (0..B * T).filter(|&i| mask[i] != 0 && clip[i] == 0) {
        let r = f64::from(ratio[i]);
        let delta = f64::from(reference[i]) - f64::from(logp[i]);
        // k3 = e^δ − δ − 1 (δ = ref − logp), clamped to 10 by verl's low_var_kl: no gradient there.
        let kl_grad = if delta.exp() - delta - 1.0 < 10.0 { 0.001 * (1.0 - delta.exp()) } else { 0.0 };
        let want = (-f64::from(adv[i]) * r + kl_grad) / valid;
        assert!((f64::from(grad[i]) - want).abs() < 1e-6 * (1.0 + want.abs()), "grad_logp {i}: {} vs {want}", grad[i]);
    }
}

#[test]
fn precomputed_logp_replays_to_the_same_loss_as_the_logits() {
    let dir = scratch("precomputed");
    let dump = rollout();
    let path = save(&dir, "rollout.safetensors", &dump);
    let out = dir.join("step.safetensors");
    for algo in ["grpo", "gspo", "dapo"] {
        let with_logits = replay(&path, &["--algo", algo, "--out", out.to_str().unwrap()]);
        assert_pass(&with_logits);
        let bytes = fs::read(&out).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let mut pre = without(&dump, "logits");
        set(&mut pre, "logp", f32s(&[B, T], &read_f32(&st, "logp")));
        set(&mut pre, "entropy", f32s(&[B, T], &read_f32(&st, "entropy")));
        let pre_path = save(&dir, "precomputed.safetensors", &pre);
        let run = replay(&pre_path, &["--algo", algo]);
        assert_pass(&run);
        assert!(!run.stdout.contains("reference check"), "no logits, no statistics check: {}", run.stdout);
        assert!(run.stdout.contains("|dL/dlogp|_2"), "{}", run.stdout);
        for label in ["loss", "clipfrac", "entropy", "advantage"] {
            assert_eq!(value(&run, label), value(&with_logits, label), "{algo} {label}");
        }
    }
}

#[test]
fn per_token_rewards_are_summed_and_group_size_replaces_group_ids() {
    let dir = scratch("rewards");
    let mut dump = without(&rollout(), "group_ids");
    let per_response = replay(&save(&dir, "a.safetensors", &dump), &["--group-size", "3"]);
    assert_pass(&per_response);
    assert!(per_response.stdout.contains("in 4 groups"), "{}", per_response.stdout);
    // The same rewards spread over each response's valid tokens: the same step.
    let mask = dump.iter().find(|(n, _)| *n == "mask").unwrap().1.bytes.clone();
    let rewards = REWARDS;
    let per_token: Vec<f32> = (0..B * T)
        .map(|i| {
            let len = mask[i / T * T..(i / T + 1) * T].iter().filter(|&&m| m != 0).count();
            if mask[i] != 0 && i % T == len - 1 {
                rewards[i / T]
            } else {
                0.0
            }
        })
        .collect();
    set(&mut dump, "rewards", f32s(&[B, T], &per_token));
    let run = replay(&save(&dir, "b.safetensors", &dump), &["--group-size", "3"]);
    assert_pass(&run);
    assert_eq!(value(&run, "loss"), value(&per_response, "loss"));
}

#[test]
fn the_hugging_face_dump_replays_with_its_tokenizer() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let dump = data.join("rollout_hf.safetensors");
    let tokenizer = data.join("tokenizer_hf.json");
    let dir = scratch("hf");
    let report = dir.join("report.html");
    for algo in ["grpo", "dr_grpo", "dapo", "gspo", "rloo"] {
        let run = replay(
            &dump,
            &["--algo", algo, "--tokenizer", tokenizer.to_str().unwrap(), "--report", report.to_str().unwrap()],
        );
        assert_pass(&run);
        assert!(run.stdout.contains("logits [16, 16, 320] bf16"), "{}", run.stdout);
        assert!(run.stdout.contains("\nreference check: PASS\n"), "{}", run.stdout);
    }
    let data = report_data(&report);
    assert_eq!(data["decoded"], Value::Bool(true));
    // Decoded text, not ids: the byte-level tokenizer's end-of-sequence token appears as text.
    let texts: Vec<&str> = data["tokens"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|t| t["text"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()))
        .collect();
    assert!(texts.contains(&"<eos>"), "{texts:?}");
}

/// The JSON embedded in a report.
fn report_data(path: &Path) -> Value {
    let html = fs::read_to_string(path).unwrap();
    let start = html.find(r#"<script id="data" type="application/json">"#).unwrap();
    let json = &html[start..];
    let json = &json[json.find('>').unwrap() + 1..json.find("</script>").unwrap()];
    serde_json::from_str(json).unwrap()
}

#[test]
fn the_report_is_self_contained_and_embeds_one_entry_per_unmasked_token() {
    let dir = scratch("report");
    let dump = rollout();
    let path = save(&dir, "rollout.safetensors", &dump);
    let report = dir.join("report.html");
    let run = replay(&path, &["--algo", "dapo", "--report", report.to_str().unwrap()]);
    assert_pass(&run);
    let html = fs::read_to_string(&report).unwrap();
    for external in ["http://", "https://", "src=", "<link", "@import", "url("] {
        assert!(!html.contains(external), "the report refers to something outside it: {external}");
    }
    assert_eq!(html.matches("<svg").count(), 3, "three histograms");
    let data = report_data(&report);
    assert_eq!(data["decoded"], Value::Bool(false));
    let mask = &dump.iter().find(|(n, _)| *n == "mask").unwrap().1.bytes;
    let tokens = data["tokens"].as_object().unwrap();
    assert_eq!(tokens.len(), B);
    for b in 0..B {
        let t = &tokens[&b.to_string()];
        let valid = mask[b * T..(b + 1) * T].iter().filter(|&&m| m != 0).count();
        for key in ["text", "id", "pos", "entropy", "logp", "adv", "ratio", "loss", "grad", "clip"] {
            assert_eq!(t[key].as_array().unwrap().len(), valid, "response {b} {key}");
        }
    }
    assert_eq!(data["seqs"].as_array().unwrap().len(), B);
}

#[test]
fn a_report_beyond_the_token_budget_embeds_whole_responses_up_to_it() {
    let dir = scratch("budget");
    // 300 responses of 256 tokens, all valid: 76,800 tokens, more than 65,536.
    let (b, t, v) = (300, 256, 4);
    let dump: Dump = vec![
        ("logits", f32s(&[b, t, v], &(0..b * t * v).map(|i| unit(i, 5)).collect::<Vec<_>>())),
        ("tokens", i64s(&[b, t], &(0..b * t).map(|i| (i % v) as i64).collect::<Vec<_>>())),
        ("mask", u8s(&[b, t], &vec![1; b * t])),
        ("rewards", f32s(&[b], &(0..b).map(|i| (i % 2) as f32).collect::<Vec<_>>())),
    ];
    let path = save(&dir, "big.safetensors", &dump);
    let report = dir.join("report.html");
    let run = replay(&path, &["--group-size", "4", "--report", report.to_str().unwrap()]);
    assert_pass(&run);
    let data = report_data(&report);
    let embedded = data["tokens"].as_object().unwrap().len();
    assert_eq!(embedded, 65_536 / 256);
    let seqs = data["seqs"].as_array().unwrap();
    assert_eq!(seqs.len(), b);
    assert!(seqs[..embedded].iter().all(|s| s["embedded"] == Value::Bool(true)));
    assert!(seqs[embedded..].iter().all(|s| s["embedded"] == Value::Bool(false)));
    // The histograms cover every token.
    let html = fs::read_to_string(&report).unwrap();
    assert!(html.contains(&format!("ratio ({} tokens)", b * t)), "histogram caption");
}

// ----------------------------------------------------------------------------------------
// Bad input: one line, exit 2, nothing written
// ----------------------------------------------------------------------------------------

#[track_caller]
fn assert_one_line_error(run: &Run, needle: &str) {
    assert_eq!(run.code, 2, "{needle}: stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert!(run.stderr.starts_with("tokenmath: error: "), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.contains(needle), "expected {needle:?} in: {}", run.stderr);
}

#[test]
fn every_bad_input_is_one_clear_error_line_and_writes_nothing() {
    let dir = scratch("bad");
    let good = rollout();
    let edit = |name: &'static str, t: Tensor| {
        let mut d = good.clone();
        set(&mut d, name, t);
        d
    };
    let mut bad_mask = vec![1u8; B * T];
    bad_mask[13] = 2;
    let mut token_out_of_range = vec![0i64; B * T];
    token_out_of_range[T + 5] = V as i64; // [1, 5]: response 1 is 10 tokens long
    let mut token_negative = vec![0i64; B * T];
    token_negative[T + 7] = -3;
    let mut nan_old = vec![-3.0f32; B * T];
    nan_old[0] = f32::NAN;
    let mut nan_logits: Vec<f32> = (0..B * T * V).map(|i| unit(i, 1)).collect();
    nan_logits[(T + 3) * V + 1] = f32::NAN; // token [1, 3]
    let mut dead_row: Vec<f32> = (0..B * T * V).map(|i| unit(i, 1)).collect();
    dead_row[V..2 * V].fill(f32::NEG_INFINITY); // token [0, 1]
    let cases: Vec<(&str, Dump, &[&str], &str)> = vec![
        ("no_mask", without(&good, "mask"), &[], "no tensor named `mask` (the response mask [B, T]"),
        ("no_rewards", without(&good, "rewards"), &[], "no tensor named `rewards`"),
        ("no_policy", without(&good, "logits"), &[], "needs either `logits` [B, T, V] or precomputed `logp`"),
        ("no_tokens", without(&good, "tokens"), &[], "no tensor named `tokens`"),
        ("no_groups", without(&good, "group_ids"), &[], "no tensor named `group_ids`"),
        ("group_size", without(&good, "group_ids"), &["--group-size", "5"], "--group-size 5 must divide the 12"),
        ("mask_rank", edit("mask", u8s(&[B * T], &[1; B * T])), &[], "tensor `mask` has shape [120]"),
        ("mask_value", edit("mask", u8s(&[B, T], &bad_mask)), &[], "tensor `mask` holds 2 at [1, 3]; expected 0 or 1"),
        (
            "mask_dtype",
            edit("mask", Tensor { dtype: Dtype::F64, shape: vec![B, T], bytes: vec![0; B * T * 8] }),
            &[],
            "tensor `mask` has dtype F64",
        ),
        (
            "logits_shape",
            edit("logits", f32s(&[B, T + 1, V], &vec![0.0; B * (T + 1) * V])),
            &[],
            "tensor `logits` has shape [12, 11, 50]; expected [12, 10, V]",
        ),
        ("logits_dtype", edit("logits", i64s(&[B, T, V], &vec![0; B * T * V])), &[], "has dtype I64; expected F32"),
        (
            "token_range",
            edit("tokens", i64s(&[B, T], &token_out_of_range)),
            &[],
            "token 50 at [1, 5] of `tokens` is out of range (vocabulary 50)",
        ),
        ("token_negative", edit("tokens", i64s(&[B, T], &token_negative)), &[], "token -3 at [1, 7]"),
        ("tokens_dtype", edit("tokens", f32s(&[B, T], &vec![0.0; B * T])), &[], "`tokens` has dtype F32"),
        ("old_shape", edit("old_logp", f32s(&[T, B], &vec![0.0; B * T])), &[], "`old_logp` has shape [10, 12]"),
        ("old_nan", edit("old_logp", f32s(&[B, T], &nan_old)), &[], "`old_logp` holds NaN at [0, 0]"),
        ("rewards_shape", edit("rewards", f32s(&[B + 1], &[0.0; B + 1])), &[], "expected [12] or [12, 10]"),
        (
            "rewards_inf",
            edit("rewards", f32s(&[B], &[f32::INFINITY; B])),
            &[],
            "`rewards` holds inf at [0]; values must be finite",
        ),
        ("group_negative", edit("group_ids", i64s(&[B], &[-1; B])), &[], "group id -1 of response 0"),
        ("group_shape", edit("group_ids", i64s(&[B, 1], &[0; B])), &[], "`group_ids` has shape [12, 1]; expected [12]"),
        ("nan_logit", edit("logits", f32s(&[B, T, V], &nan_logits)), &[], "token [1, 3] give logp NaN"),
        ("dead_row", edit("logits", f32s(&[B, T, V], &dead_row)), &[], "row 1"),
    ];
    let out = dir.join("step.safetensors");
    let report = dir.join("report.html");
    for (name, dump, extra, needle) in cases {
        let path = save(&dir, &format!("{name}.safetensors"), &dump);
        let mut args = vec!["--out", out.to_str().unwrap(), "--report", report.to_str().unwrap()];
        args.extend_from_slice(extra);
        let run = replay(&path, &args);
        assert_one_line_error(&run, needle);
        assert!(!out.exists() && !report.exists(), "{name}: an output was written");
    }
    // Padding may hold anything: a token out of range, NaN logits and log-probs where the
    // mask is 0 are fine.
    let mut padded = good.clone();
    let mask = good.iter().find(|(n, _)| *n == "mask").unwrap().1.bytes.clone();
    let tokens: Vec<i64> = (0..B * T).map(|i| if mask[i] != 0 { (i % V) as i64 } else { 1 << 40 }).collect();
    set(&mut padded, "tokens", i64s(&[B, T], &tokens));
    let logits: Vec<f32> = (0..B * T * V).map(|i| if mask[i / V] != 0 { unit(i, 1) } else { f32::NAN }).collect();
    set(&mut padded, "logits", f32s(&[B, T, V], &logits));
    let old: Vec<f32> = (0..B * T).map(|i| if mask[i] != 0 { -3.0 } else { f32::NAN }).collect();
    set(&mut padded, "old_logp", f32s(&[B, T], &old));
    assert_pass(&replay(&save(&dir, "padded.safetensors", &padded), &[]));
}

#[test]
fn unreadable_lying_and_truncated_files_are_one_line_errors() {
    let dir = scratch("files");
    assert_one_line_error(&replay(&dir.join("missing.safetensors"), &[]), "cannot read");
    assert_one_line_error(&replay(&dir, &[]), "not a regular file");
    let garbage = dir.join("garbage.safetensors");
    fs::write(&garbage, b"not a safetensors file at all").unwrap();
    assert_one_line_error(&replay(&garbage, &[]), "not a valid safetensors file");

    let good = serialize(&rollout());
    let truncated = dir.join("truncated.safetensors");
    fs::write(&truncated, &good[..good.len() - 100]).unwrap();
    assert_one_line_error(&replay(&truncated, &[]), "truncated");

    // A header that lies: it claims a longer logits tensor than the data it points at.
    let n = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&good[8..8 + n]).unwrap();
    let lying = header.replacen("[12,10,50]", "[12,10,51]", 1);
    assert_ne!(lying, header, "the header holds the logits' shape");
    let mut bytes = (lying.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(lying.as_bytes());
    bytes.extend_from_slice(&good[8 + n..]);
    let lies = dir.join("lying.safetensors");
    fs::write(&lies, &bytes).unwrap();
    assert_one_line_error(&replay(&lies, &[]), "not a valid safetensors file");
    // A header length beyond the file.
    let mut bytes = good.clone();
    bytes[..8].copy_from_slice(&(good.len() as u64 * 2).to_le_bytes());
    fs::write(&lies, &bytes).unwrap();
    assert_one_line_error(&replay(&lies, &[]), "not a valid safetensors file");

    let ok = save(&dir, "ok.safetensors", &rollout());
    let bad_tokenizer = dir.join("tokenizer.json");
    fs::write(&bad_tokenizer, b"{\"model\": 3}").unwrap();
    assert_one_line_error(
        &replay(&ok, &["--tokenizer", bad_tokenizer.to_str().unwrap()]),
        "not a usable tokenizer.json",
    );
    assert_one_line_error(&replay(&ok, &["--tokenizer", dir.join("none.json").to_str().unwrap()]), "none.json");
    // An output path that cannot be written: one line, and no partial file.
    let run = replay(&ok, &["--out", dir.join("no/such/dir/step.safetensors").to_str().unwrap()]);
    assert_one_line_error(&run, "no/such/dir");
}

#[test]
fn help_documents_every_tensor_name() {
    let run = tokenmath(&["replay", "--help"]);
    assert_eq!(run.code, 0);
    for name in ["logits", "logp", "entropy", "tokens", "mask", "old_logp", "ref_logp", "rewards", "group_ids"] {
        assert!(run.stdout.contains(&format!("\n  {name} ")), "{name} is not documented:\n{}", run.stdout);
    }
}

#[test]
fn replays_are_the_same_for_any_thread_count_and_backend() {
    let dir = scratch("threads");
    let path = save(&dir, "rollout.safetensors", &rollout());
    let outputs = |extra: &[&str]| {
        let out = dir.join("step.safetensors");
        let mut args = vec!["--algo", "gspo", "--out", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        let run = replay(&path, &args);
        assert_pass(&run);
        let text: Vec<String> = run
            .stdout
            .lines()
            .filter(|l| {
                let timing = [" ms", " us", " s ", "/s", "time", "total", "execution"];
                !timing.iter().any(|t| l.contains(t))
            })
            .map(str::to_owned)
            .collect();
        (text, fs::read(&out).unwrap())
    };
    // Compared without printing kilobytes of bytes on a failure.
    let one = outputs(&["--threads", "1"]);
    for extra in [&["--threads", "3"][..], &["--threads", "2", "--backend", "portable"]] {
        let other = outputs(extra);
        assert_eq!(one.0, other.0, "{extra:?}");
        assert!(one.1 == other.1, "{extra:?}: the --out files differ");
    }
}
