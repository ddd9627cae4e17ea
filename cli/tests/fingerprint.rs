//! End-to-end tests of `tokenmath commit` and `tokenmath verify`: the embedded default,
//! safetensors embeddings (roots cross-checked against the core library), tampered and
//! malformed openings (exit 1, one rejection line each), and bad files and options (exit 2,
//! one clear error line, never a panic).

use std::fs;
use std::path::{Path, PathBuf};

use half::bf16;
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use tokenmath_core::fingerprint::encoding::{self, FpKind, LeafRecord};
use tokenmath_core::fingerprint::hash::{Blake3, Digest};
use tokenmath_core::fingerprint::tree::root;

mod common;

use common::{tokenmath, Run};

#[track_caller]
fn assert_ok(run: &Run) {
    assert_eq!(run.code, 0, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
}

/// Exit code 2 with one `tokenmath: error:` line containing `needle`.
#[track_caller]
fn assert_error(run: &Run, needle: &str) {
    assert_eq!(run.code, 2, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains(needle), "expected {needle:?} in stderr:\n{}", run.stderr);
    if run.stderr.starts_with("tokenmath: error: ") {
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    }
}

/// The value after `label` on the summary line starting with it.
fn field<'a>(run: &'a Run, label: &str) -> &'a str {
    run.stdout
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {label:?} line in\n{}", run.stdout))
}

fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tokenmath-fingerprint").join(test);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn save(dir: &Path, file: &str, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> PathBuf {
    let views = tensors
        .iter()
        .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect::<Vec<_>>();
    let path = dir.join(file);
    fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
    path
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn embeddings(rows: usize, dim: usize) -> Vec<f32> {
    (0..rows * dim).map(|i| ((i * 7919 + 13) % 1201) as f32 / 100.0 - 6.0).collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The root the library gives for these rows (zero salts, token id = given or row index).
fn expected_root(values: &[f32], dim: usize, kind: FpKind, ids: Option<&[u32]>) -> String {
    let len = encoding::encoded_len(kind, dim).unwrap();
    let leaves: Vec<Digest> = values
        .chunks(dim)
        .enumerate()
        .map(|(i, x)| {
            let mut fp = vec![0u8; len];
            encoding::encode(kind, x, &mut fp).unwrap();
            let rec =
                LeafRecord { index: i as u64, salt: [0; 16], token_id: ids.map_or(i as u32, |t| t[i]), kind, fp: &fp };
            rec.leaf_hash(&Blake3).unwrap()
        })
        .collect();
    hex(&root(&Blake3, &leaves))
}

#[test]
fn default_commit_is_reproducible_and_verifies() {
    let dir = scratch("default");
    let a = tokenmath(&["commit", "--open", "0", "--open", "1023", "--audit", "4", "--nonce", "n1", "--out", p(&dir)]);
    assert_ok(&a);
    assert_eq!(field(&a, "n"), "1024");
    assert_eq!(field(&a, "encoding"), "f32-canonical-v1 (1536 bytes per token)");
    let b = tokenmath(&["commit"]);
    assert_ok(&b);
    assert_eq!(field(&a, "root"), field(&b, "root"), "same seed, same root");
    let c = tokenmath(&["commit", "--seed", "7"]);
    assert_ne!(field(&a, "root"), field(&c, "root"));
    let mut openings: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tmo"))
        .collect();
    openings.sort();
    assert!(openings.len() >= 3 && openings.len() <= 6, "{openings:?}");
    let mut args = vec!["verify".to_owned(), "--head".to_owned(), p(&dir.join("head.bin")).to_owned()];
    args.extend(openings.iter().map(|o| p(o).to_owned()));
    let v = tokenmath(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_ok(&v);
    assert_eq!(v.stdout.matches("  ok  ").count(), openings.len(), "{}", v.stdout);
    assert!(v.stdout.contains("leaf 1023 of 1024"));
    assert_eq!(
        field(&v, "result"),
        "all checks pass for n and root (the rest of the head is unchecked without --head-digest)"
    );
    // With the digest that commit printed (and a signer signed), the whole head is bound.
    args.extend(["--head-digest".to_owned(), field(&a, "head digest").to_owned()]);
    let v = tokenmath(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_ok(&v);
    assert_eq!(field(&v, "result"), "all checks pass (the whole head, by its digest)");
}

#[test]
fn safetensors_roots_match_the_library() {
    let dir = scratch("safetensors");
    let v = embeddings(6, 8);
    let ids: Vec<i64> = vec![5, 17, 17, 3, 99_999, 0];
    let file = save(
        &dir,
        "emb.safetensors",
        &[
            ("embeddings", Dtype::F32, vec![6, 8], f32_bytes(&v)),
            ("ids", Dtype::I64, vec![6], ids.iter().flat_map(|x| x.to_le_bytes()).collect()),
        ],
    );
    let ids32: Vec<u32> = ids.iter().map(|&x| x as u32).collect();
    for (enc, kind) in [("f32", FpKind::F32Canonical), ("i8", FpKind::I8Unit), ("bf16", FpKind::Bf16)] {
        let run = tokenmath(&["commit", "--input", p(&file), "--ids-key", "ids", "--encoding", enc]);
        assert_ok(&run);
        assert_eq!(field(&run, "n"), "6");
        assert_eq!(field(&run, "root"), expected_root(&v, 8, kind, Some(&ids32)), "{enc}");
    }
    // Without ids the token id is the row index; a rank-3 BF16 tensor under another name.
    let vb: Vec<f32> = v.iter().map(|&x| bf16::from_f32(x).to_f32()).collect();
    let file2 = save(
        &dir,
        "b.safetensors",
        &[("hidden", Dtype::BF16, vec![2, 3, 8], vb.iter().flat_map(|&x| bf16::from_f32(x).to_le_bytes()).collect())],
    );
    let run = tokenmath(&["commit", "--input", p(&file2), "--open", "4", "--out", p(&dir)]);
    assert_ok(&run);
    assert_eq!(field(&run, "root"), expected_root(&vb, 8, FpKind::F32Canonical, None));
    let v2 = tokenmath(&["verify", "--head", p(&dir.join("head.bin")), p(&dir.join("open-4.tmo"))]);
    assert_ok(&v2);
    assert!(v2.stdout.contains("leaf 4 of 6, token 4"), "{}", v2.stdout);
}

#[test]
fn tampered_and_malformed_openings_are_rejected() {
    let dir = scratch("tamper");
    assert_ok(&tokenmath(&[
        "commit",
        "--tokens",
        "37",
        "--dim",
        "16",
        "--open",
        "5",
        "--open",
        "36",
        "--out",
        p(&dir),
    ]));
    let head = dir.join("head.bin");
    let good = fs::read(dir.join("open-5.tmo")).unwrap();
    assert_ok(&tokenmath(&["verify", "--head", p(&head), p(&dir.join("open-5.tmo"))]));
    // Every single-bit flip anywhere in the file, every truncation, and an extension.
    let bad_path = dir.join("bad.tmo");
    let mut cases: Vec<Vec<u8>> = Vec::new();
    for i in (0..good.len()).step_by(7) {
        let mut b = good.clone();
        b[i] ^= 1 << (i % 8);
        cases.push(b);
    }
    for cut in [0, 3, 5, 8, 9, 40, good.len() - 33, good.len() - 1] {
        cases.push(good[..cut].to_vec());
    }
    let mut ext = good.clone();
    ext.push(0);
    cases.push(ext);
    for (k, bytes) in cases.iter().enumerate() {
        fs::write(&bad_path, bytes).unwrap();
        let run = tokenmath(&["verify", "--head", p(&head), p(&bad_path)]);
        assert_eq!(run.code, 1, "case {k}: {}\n{}", run.stdout, run.stderr);
        assert!(run.stderr.contains("tokenmath: rejected"), "case {k}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1);
    }
    // An opening of another commitment (other size) is rejected against this head.
    let other = scratch("tamper-other");
    assert_ok(&tokenmath(&["commit", "--tokens", "38", "--dim", "16", "--open", "5", "--out", p(&other)]));
    let run = tokenmath(&["verify", "--head", p(&head), p(&other.join("open-5.tmo"))]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("signed head says 37"), "{}", run.stderr);
    // A mix of good and bad: exit 1, the good one still reported ok.
    fs::write(&bad_path, &cases[3]).unwrap();
    let run = tokenmath(&["verify", "--head", p(&head), p(&dir.join("open-36.tmo")), p(&bad_path)]);
    assert_eq!(run.code, 1);
    assert!(run.stdout.contains("ok          ") && run.stdout.contains("REJECTED"));
}

/// Every byte of the head is bound: a flipped context byte is rejected by --head-digest
/// (and by --context), and verify prints the context and digest it saw.
#[test]
fn a_tampered_head_context_is_rejected() {
    let dir = scratch("tamper-head");
    let c =
        tokenmath(&["commit", "--tokens", "9", "--dim", "8", "--open", "2", "--context", "req-42", "--out", p(&dir)]);
    assert_ok(&c);
    let digest = field(&c, "head digest").to_owned();
    let (head, open) = (dir.join("head.bin"), dir.join("open-2.tmo"));
    let good = tokenmath(&["verify", "--head", p(&head), "--head-digest", &digest, "--context", "req-42", p(&open)]);
    assert_ok(&good);
    assert!(field(&good, "context").starts_with("\"req-42\" (matches --context)"), "{}", good.stdout);
    let mut bytes = fs::read(&head).unwrap();
    let at = bytes.windows(6).position(|w| w == b"req-42").expect("the context is in the head");
    bytes[at + 4] ^= 0x01; // "req-42" -> "req-52"
    let tampered = dir.join("tampered.bin");
    fs::write(&tampered, &bytes).unwrap();
    let run = tokenmath(&["verify", "--head", p(&tampered), "--head-digest", &digest, p(&open)]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stderr.starts_with("tokenmath: rejected head digest: "), "{}", run.stderr);
    assert_eq!(field(&run, "result"), "REJECTED");
    let run = tokenmath(&["verify", "--head", p(&tampered), "--context", "req-42", p(&open)]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stderr.contains("rejected context: the head carries \"req-52\""), "{}", run.stderr);
    // Without an expectation the proofs pass, and the output says what was not checked.
    let run = tokenmath(&["verify", "--head", p(&tampered), p(&open)]);
    assert_ok(&run);
    assert!(field(&run, "context").starts_with("\"req-52\" (not checked"), "{}", run.stdout);
    assert!(field(&run, "head digest").contains("(not checked"), "{}", run.stdout);
    assert!(!field(&run, "head digest").starts_with(&digest));
}

#[test]
fn keyed_commitments_need_the_context() {
    let dir = scratch("keyed");
    let a = tokenmath(&[
        "commit",
        "--tokens",
        "9",
        "--dim",
        "4",
        "--keyed-context",
        "deploy-1",
        "--open",
        "2",
        "--out",
        p(&dir),
    ]);
    assert_ok(&a);
    assert_ne!(field(&a, "root"), field(&tokenmath(&["commit", "--tokens", "9", "--dim", "4"]), "root"));
    let head = dir.join("head.bin");
    let open = dir.join("open-2.tmo");
    assert_ok(&tokenmath(&["verify", "--head", p(&head), "--keyed-context", "deploy-1", p(&open)]));
    assert_error(&tokenmath(&["verify", "--head", p(&head), p(&open)]), "pass --keyed-context");
    let run = tokenmath(&["verify", "--head", p(&head), "--keyed-context", "deploy-2", p(&open)]);
    assert_eq!(run.code, 1, "{}", run.stdout);
}

#[test]
fn bad_files_and_options_give_clear_errors() {
    let dir = scratch("errors");
    let missing = dir.join("missing.safetensors");
    assert_error(&tokenmath(&["commit", "--input", p(&missing)]), "cannot read");
    let junk = dir.join("junk.safetensors");
    fs::write(&junk, b"this is not a safetensors file").unwrap();
    assert_error(&tokenmath(&["commit", "--input", p(&junk)]), "not a valid safetensors file");
    let mut v = embeddings(3, 4);
    v[6] = f32::NAN;
    let nan = save(&dir, "nan.safetensors", &[("embeddings", Dtype::F32, vec![3, 4], f32_bytes(&v))]);
    assert_error(&tokenmath(&["commit", "--input", p(&nan)]), "row 1, dimension 2: NaN or infinite");
    let flat = save(&dir, "flat.safetensors", &[("embeddings", Dtype::F32, vec![12], f32_bytes(&embeddings(3, 4)))]);
    assert_error(&tokenmath(&["commit", "--input", p(&flat)]), "expected [N, D] or [B, T, D]");
    let two = save(
        &dir,
        "two.safetensors",
        &[
            ("a", Dtype::F32, vec![3, 4], f32_bytes(&embeddings(3, 4))),
            ("b", Dtype::F32, vec![3, 4], f32_bytes(&embeddings(3, 4))),
        ],
    );
    assert_error(&tokenmath(&["commit", "--input", p(&two)]), "choose one with --key");
    assert_ok(&tokenmath(&["commit", "--input", p(&two), "--key", "b"]));
    assert_error(&tokenmath(&["commit", "--input", p(&two), "--key", "c"]), "no tensor named `c`");
    let ints = save(&dir, "ints.safetensors", &[("embeddings", Dtype::I32, vec![2, 2], vec![0u8; 16])]);
    assert_error(&tokenmath(&["commit", "--input", p(&ints)]), "expected F32, BF16 or F16");
    let ids = save(
        &dir,
        "ids.safetensors",
        &[
            ("embeddings", Dtype::F32, vec![2, 2], f32_bytes(&[1.0, 2.0, 3.0, 4.0])),
            ("ids", Dtype::I64, vec![2], [-1i64, 2].iter().flat_map(|x| x.to_le_bytes()).collect()),
        ],
    );
    assert_error(&tokenmath(&["commit", "--input", p(&ids), "--ids-key", "ids"]), "token id -1 of row 0");
    assert_error(&tokenmath(&["commit", "--tokens", "10", "--open", "10", "--out", p(&dir)]), "only 10 leaves");
    assert_error(&tokenmath(&["commit", "--tokens", "10", "--open", "3"]), "need --out");
    // verify: missing and malformed heads.
    assert_ok(&tokenmath(&["commit", "--tokens", "10", "--dim", "4", "--open", "3", "--out", p(&dir)]));
    let open = dir.join("open-3.tmo");
    assert_error(&tokenmath(&["verify", "--head", p(&dir.join("nohead.bin")), p(&open)]), "cannot read");
    let bad_head = dir.join("bad-head.bin");
    fs::write(&bad_head, b"tokenmath-sth\x01\x01short").unwrap();
    assert_error(&tokenmath(&["verify", "--head", p(&bad_head), p(&open)]), "signed head");
    assert_error(&tokenmath(&["verify", "--head", p(&dir.join("head.bin")), p(&dir.join("none.tmo"))]), "cannot read");
}

#[test]
fn consistency_proofs_show_append_only_growth() {
    let dir = scratch("consistency");
    let full = tokenmath(&["commit", "--tokens", "50", "--dim", "8", "--consistency-from", "20", "--out", p(&dir)]);
    assert_ok(&full);
    let head = dir.join("head.bin");
    let proof = dir.join("consistency-20-50.tmc");
    let run = tokenmath(&[
        "verify",
        "--head",
        p(&head),
        "--old-head",
        p(&dir.join("head-20.bin")),
        "--consistency",
        p(&proof),
    ]);
    assert_ok(&run);
    assert!(run.stdout.contains("head of 50 extends head of 20"), "{}", run.stdout);
    // The default stream's first 20 rows are the 20-token default: an independently made
    // 20-token commitment is extended by the 50-token one.
    let small = scratch("consistency-20");
    let twenty = tokenmath(&["commit", "--tokens", "20", "--dim", "8", "--out", p(&small)]);
    assert_ok(&twenty);
    assert!(full.stdout.contains(field(&twenty, "root")), "prefix root differs:\n{}\n{}", full.stdout, twenty.stdout);
    let ok = tokenmath(&[
        "verify",
        "--head",
        p(&head),
        "--old-head",
        p(&small.join("head.bin")),
        "--consistency",
        p(&proof),
    ]);
    assert_ok(&ok);
    // Another stream's 20-token head is not a prefix: rejected (exit 1).
    let other = scratch("consistency-other");
    assert_ok(&tokenmath(&["commit", "--tokens", "20", "--dim", "8", "--seed", "9", "--out", p(&other)]));
    let bad = tokenmath(&[
        "verify",
        "--head",
        p(&head),
        "--old-head",
        p(&other.join("head.bin")),
        "--consistency",
        p(&proof),
    ]);
    assert_eq!(bad.code, 1, "{}", bad.stdout);
    assert!(bad.stderr.contains("old root"), "{}", bad.stderr);
    // A flipped bit in the proof is rejected; a size outside 1..=n is a usage error.
    let mut bytes = fs::read(&proof).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 4;
    let tampered = dir.join("tampered.tmp");
    fs::write(&tampered, bytes).unwrap();
    let run = tokenmath(&[
        "verify",
        "--head",
        p(&head),
        "--old-head",
        p(&dir.join("head-20.bin")),
        "--consistency",
        p(&tampered),
    ]);
    assert_eq!(run.code, 1);
    assert_error(
        &tokenmath(&["commit", "--tokens", "5", "--consistency-from", "6", "--out", p(&dir)]),
        "need 1 <= N1 <= 5",
    );
    assert_error(
        &tokenmath(&["commit", "--tokens", "5", "--consistency-from", "0", "--out", p(&dir)]),
        "need 1 <= N1 <= 5",
    );
    // verify needs openings or a consistency proof.
    assert_eq!(tokenmath(&["verify", "--head", p(&head)]).code, 2);
}
