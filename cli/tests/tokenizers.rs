//! End-to-end tests of `tokenmath tokenizers`: tiny BPE and Unigram tokenizers trained with the
//! `tokenizers` crate's own trainers on the shipped synthetic parallel corpus
//! (`tests/data/parallel`, CC0), the printed table checked against an independent computation
//! (special tokens counted out by the encoding's own special-tokens mask, text counted with
//! `str` methods), and every bad input answered with one error line (exit 2), never a panic.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tokenizers::models::bpe::{BpeTrainer, BPE};
use tokenizers::models::unigram::{Unigram, UnigramTrainer};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::metaspace::Metaspace;
use tokenizers::pre_tokenizers::whitespace::Whitespace;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer};

mod common;

use common::{tokenmath, Run};

const LANGS: [&str; 6] = ["deu", "ell", "eng", "fra", "rus", "spa"];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/parallel")
}

fn corpus_files() -> Vec<String> {
    LANGS.iter().map(|l| corpus_dir().join(format!("{l}.txt")).display().to_string()).collect()
}

/// A fresh scratch folder for this test process.
fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("tokenizers-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn specials() -> Vec<AddedToken> {
    ["<unk>", "<s>", "</s>"].iter().map(|t| AddedToken::from(*t, true)).collect()
}

/// Adds a `<s> $A </s>` post-processor: the CLI must not count what it adds.
fn with_template(tok: &mut Tokenizer) {
    let (s, e) = (tok.token_to_id("<s>").unwrap(), tok.token_to_id("</s>").unwrap());
    let tp = TemplateProcessing::builder()
        .try_single("<s> $A </s>")
        .unwrap()
        .special_tokens(vec![("<s>", s), ("</s>", e)])
        .build()
        .unwrap();
    tok.with_post_processor(Some(tp));
}

/// Trains a byte-pair-encoding tokenizer (vocabulary 300) and a Unigram one (vocabulary 200) on
/// the corpus and saves both as `tokenizer.json` files; once per test process.
fn trained() -> &'static (PathBuf, PathBuf) {
    static PATHS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    PATHS.get_or_init(|| {
        let dir = scratch("trained");
        let mut bpe = Tokenizer::new(BPE::builder().unk_token("<unk>".into()).build().unwrap());
        bpe.with_pre_tokenizer(Some(Whitespace {}));
        let mut trainer: TrainerWrapper = BpeTrainer::builder()
            .vocab_size(300)
            .min_frequency(1)
            .show_progress(false)
            .special_tokens(specials())
            .build()
            .into();
        bpe.train_from_files(&mut trainer, corpus_files()).unwrap();
        with_template(&mut bpe);
        let bpe_path = dir.join("bpe.json");
        bpe.save(&bpe_path, false).unwrap();

        let mut uni = Tokenizer::new(Unigram::default());
        uni.with_pre_tokenizer(Some(Metaspace::default()));
        let mut trainer: TrainerWrapper = UnigramTrainer::builder()
            .vocab_size(200)
            .show_progress(false)
            .special_tokens(specials())
            .unk_token(Some("<unk>".into()))
            .build()
            .unwrap()
            .into();
        uni.train_from_files(&mut trainer, corpus_files()).unwrap();
        let uni_path = dir.join("unigram.json");
        uni.save(&uni_path, false).unwrap();
        (bpe_path, uni_path)
    })
}

/// The rows of the table printed for `tokenizer`: language → the 8 columns.
fn table(run: &Run, tokenizer: &Path) -> HashMap<String, Vec<f64>> {
    let head = format!("tokenizer {} ", tokenizer.display());
    let mut lines = run.stdout.lines().skip_while(|l| !l.starts_with(&head)).skip(1);
    assert!(lines.next().is_some_and(|h| h.starts_with("language")), "{}", run.stdout);
    lines
        .take_while(|l| !l.is_empty())
        .map(|l| {
            let mut f = l.split_whitespace();
            let name = f.next().unwrap().to_string();
            (name, f.map(|x| x.parse::<f64>().unwrap()).collect())
        })
        .collect()
}

/// The metrics computed independently of the CLI and of `tokenmath_core`.
fn expected(tokenizer: &Path, reference: &str) -> HashMap<String, Vec<f64>> {
    let tok = Tokenizer::from_file(tokenizer).unwrap();
    let mut raw = HashMap::new();
    for lang in LANGS {
        let text = fs::read_to_string(corpus_dir().join(format!("{lang}.txt"))).unwrap();
        let (mut ctc, mut bytes, mut chars, mut ws) = (0u64, 0u64, 0u64, 0u64);
        let mut freq: HashMap<char, f64> = HashMap::new();
        for line in text.lines() {
            // With the post-processor on: the special-tokens mask tells which to leave out.
            let enc = tok.encode(line, true).unwrap();
            ctc += enc.get_special_tokens_mask().iter().filter(|&&m| m == 0).count() as u64;
            bytes += line.len() as u64;
            for c in line.chars() {
                chars += 1;
                ws += c.is_whitespace() as u64;
                *freq.entry(c).or_default() += 1.0;
            }
        }
        let h: f64 = -freq.values().map(|&n| n / chars as f64).map(|p| p * p.log2()).sum::<f64>();
        raw.insert(lang, (ctc, bytes, chars, ws, h));
    }
    let (rc, rb, ..) = raw[reference];
    raw.iter()
        .map(|(l, &(c, b, ch, ws, h))| {
            let c = c as f64;
            (
                l.to_string(),
                vec![c, c / rc as f64, b as f64 / rb as f64, b as f64 / c, ch as f64 / c, ws as f64 / ch as f64, h],
            )
        })
        .collect()
}

#[track_caller]
fn assert_matches(got: &HashMap<String, Vec<f64>>, want: &HashMap<String, Vec<f64>>) {
    assert_eq!(got.len(), LANGS.len(), "{got:?}");
    for (lang, w) in want {
        let g = &got[lang];
        assert_eq!(g[0], w[0], "{lang}: CTC");
        for (i, (g, w)) in g.iter().zip(w).enumerate().skip(1) {
            // Printed with 4 decimals: half a unit in the last place, plus rounding slack.
            assert!((g - w).abs() <= 0.5e-4 + 1e-12 * w.abs(), "{lang} column {i}: printed {g}, computed {w}");
        }
    }
}

#[track_caller]
fn assert_error(run: &Run, needle: &str) {
    assert_eq!(run.code, 2, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.starts_with("tokenmath: error: ") && run.stderr.contains(needle),
        "expected {needle:?}:\n{}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "{}", run.stdout);
}

#[test]
fn table_matches_independent_computation() {
    let (bpe, uni) = trained();
    let corpus = corpus_dir();
    let run = tokenmath(&[
        "tokenizers",
        "--tokenizer",
        bpe.to_str().unwrap(),
        "--tokenizer",
        uni.to_str().unwrap(),
        "--corpus",
        corpus.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("6 languages x 300 sentences, reference language eng"), "{}", run.stdout);
    assert!(run.stderr.is_empty(), "{}", run.stderr); // no warning at 300 lines; bar hidden off a terminal
    let (tb, tu) = (table(&run, bpe), table(&run, uni));
    assert_matches(&tb, &expected(bpe, "eng"));
    assert_matches(&tu, &expected(uni, "eng"));
    // Sanity of the corpus itself: Greek and Russian cost more bytes than English.
    assert!(tb["ell"][2] > 1.5 && tb["rus"][2] > 1.5 && tb["eng"][2] == 1.0);
    // The two tokenizers really differ (not one table printed twice).
    assert_ne!(tb["eng"][0], tu["eng"][0]);
}

/// The README's example: the shipped byte-level BPE (`tests/data/tokenizer_hf.json`, 320
/// tokens) on the shipped corpus, the rows the README prints.
#[test]
fn readme_example_rows() {
    let tok = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tokenizer_hf.json");
    let corpus = corpus_dir();
    let run = tokenmath(&["tokenizers", "--tokenizer", tok.to_str().unwrap(), "--corpus", corpus.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let t = table(&run, &tok);
    assert_eq!((t["eng"][0], t["ell"][0], t["rus"][0]), (8142.0, 20166.0, 19142.0), "{}", run.stdout);
    assert_eq!((t["ell"][1], t["ell"][2]), (2.4768, 1.8021), "{}", run.stdout);
    assert_matches(&t, &expected(&tok, "eng"));
}

#[test]
fn reference_and_extension_options() {
    let (bpe, _) = trained();
    // FLORES-style names (`<lang>.dev`), a byte-order mark, CRLF line ends, a short corpus.
    let dir = scratch("flores");
    for lang in ["fra", "ell"] {
        let text = fs::read_to_string(corpus_dir().join(format!("{lang}.txt"))).unwrap();
        let head: Vec<&str> = text.lines().take(40).collect();
        fs::write(dir.join(format!("{lang}.dev")), format!("\u{feff}{}\r\n", head.join("\r\n"))).unwrap();
    }
    fs::write(dir.join("notes.txt"), "ignored\n").unwrap();
    let run = tokenmath(&[
        "tokenizers",
        "--tokenizer",
        bpe.to_str().unwrap(),
        "--corpus",
        dir.to_str().unwrap(),
        "--ext",
        "dev",
        "--reference",
        "fra",
    ]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("2 languages x 40 sentences, reference language fra"), "{}", run.stdout);
    assert!(run.stderr.contains("warning: 40 lines per language"), "{}", run.stderr);
    let t = table(&run, bpe);
    assert_eq!(t["fra"][1], 1.0);
    assert_eq!(t["fra"][2], 1.0);
    // The BOM and the \r are not text: fra's bytes/token equals its first 40 lines' own.
    let tok = Tokenizer::from_file(bpe).unwrap();
    let text = fs::read_to_string(corpus_dir().join("fra.txt")).unwrap();
    let (mut b, mut c) = (0usize, 0usize);
    for l in text.lines().take(40) {
        b += l.len();
        c += tok.encode(l, false).unwrap().get_ids().len();
    }
    assert_eq!(t["fra"][0], c as f64);
    assert!((t["fra"][3] - b as f64 / c as f64).abs() <= 0.5e-4);
    // Unknown reference: usage error naming the languages.
    let run = tokenmath(&[
        "tokenizers",
        "--tokenizer",
        bpe.to_str().unwrap(),
        "--corpus",
        dir.to_str().unwrap(),
        "--ext",
        "dev",
        "--reference",
        "xx",
    ]);
    assert_error(&run, "no such language in the corpus (ell, fra)");
}

#[test]
fn bad_inputs_are_one_error_line() {
    let (bpe, _) = trained();
    let b = bpe.to_str().unwrap();
    let run_on = |tokenizer: &str, corpus: &Path| {
        tokenmath(&["tokenizers", "--tokenizer", tokenizer, "--corpus", corpus.to_str().unwrap()])
    };

    // Missing folder.
    assert_error(&run_on(b, Path::new("/nonexistent/corpus")), "cannot read /nonexistent/corpus");
    // Empty corpus: no files, then files with no lines.
    let empty = scratch("empty");
    assert_error(&run_on(b, &empty), "the corpus is empty: no *.txt files");
    fs::write(empty.join("eng.txt"), "").unwrap();
    fs::write(empty.join("fra.txt"), "").unwrap();
    assert_error(&run_on(b, &empty), "every language file has 0 lines");
    // Not parallel.
    let unpar = scratch("unparallel");
    fs::write(unpar.join("eng.txt"), "one\ntwo\nthree\n").unwrap();
    fs::write(unpar.join("fra.txt"), "un\ndeux\n").unwrap();
    assert_error(&run_on(b, &unpar), "not parallel: eng.txt has 3 lines but fra.txt has 2");
    // Not UTF-8.
    let latin1 = scratch("latin1");
    fs::write(latin1.join("fra.txt"), b"caf\xe9\n").unwrap();
    assert_error(&run_on(b, &latin1), "not UTF-8 text");
    // Reference text with no tokens and no bytes: blank lines.
    let blank = scratch("blank");
    fs::write(blank.join("eng.txt"), "\n\n").unwrap();
    fs::write(blank.join("fra.txt"), "un\ndeux\n").unwrap();
    assert_error(&run_on(b, &blank), "the reference corpus token count is 0");
    // Bad tokenizer files: garbage, valid JSON of the wrong shape, missing.
    let bad = scratch("badjson");
    fs::write(bad.join("garbage.json"), "{ not json").unwrap();
    fs::write(bad.join("shape.json"), "{\"model\": 3}").unwrap();
    for f in ["garbage.json", "shape.json", "missing.json"] {
        let p = bad.join(f);
        assert_error(&run_on(p.to_str().unwrap(), &corpus_dir()), "not a usable tokenizer.json");
    }
    // No --tokenizer at all: clap's usage error (exit 2), not a panic.
    let run = tokenmath(&["tokenizers", "--corpus", corpus_dir().to_str().unwrap()]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("--tokenizer"), "{}", run.stderr);
}
