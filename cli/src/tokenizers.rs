//! `tokenmath tokenizers`: tokenizer inequity metrics of real Hugging Face tokenizers on a
//! parallel corpus.
//!
//! ```text
//! tokenmath tokenizers --tokenizer a.json --tokenizer b.json --corpus DIR [--reference eng] [--ext txt]
//! ```
//!
//! `DIR` holds one UTF-8 file per language (`<lang>.<ext>`, e.g. `eng.txt`, `fra.txt`), one
//! sentence per line, line *i* the same sentence in every file. Each tokenizer (a
//! `tokenizer.json`, loaded by the `tokenizers` crate) encodes every sentence separately,
//! without the post-processor's special tokens (`add_special_tokens = false`, the
//! `len(tokenizer.encode(s, add_special_tokens=False))` of a Python user); the sum is the corpus
//! token count `CTC` of `matched_compression`'s `compute_ctc`. Tokens the model itself emits,
//! `<unk>` included, count [library choice]. Per language it prints `CTC`, the token premium
//! `CTC(L)/CTC(ref)`, the byte premium `bytes(L)/bytes(ref)`, bytes and characters per token,
//! the whitespace share and the character entropy, all from `tokenmath_core::tokenizer_metrics`.
//!
//! Choices where the sources are silent [library choice]:
//! * the reference language is `--reference`, by default `eng_Latn`, `eng` or `en` when present,
//!   else the first language in name order;
//! * language files are the files named `*.<ext>` (`--ext`, default `txt`; FLORES-200's
//!   `eng_Latn.devtest` takes `--ext devtest`); others in the folder are ignored;
//! * lines are split by `str::lines` (`\n` or `\r\n`, the line ending not counted); a UTF-8
//!   byte-order mark at the start of a file is dropped; an empty line is a sentence of 0 tokens;
//! * fewer than 100 lines per language is a warning on stderr (as the byte-premium tool warns);
//! * the character entropy counts characters in code-point order (a `BTreeMap`) so its bits do not
//!   depend on hashing.

use std::collections::BTreeMap;
use std::fs;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tokenizers::Tokenizer;
use tokenmath_core::tokenizer_metrics::{self as tm, TextCounts};
use tokenmath_core::TmError;

use crate::error::CliError;

/// Options of `tokenmath tokenizers`.
#[derive(Args)]
pub struct TokenizersArgs {
    /// A Hugging Face `tokenizer.json` (repeat the option to compare several).
    #[arg(long = "tokenizer", value_name = "FILE", required = true)]
    tokenizers: Vec<PathBuf>,
    /// Folder of the parallel corpus: one UTF-8 file per language (`<lang>.<ext>`), one sentence
    /// per line, the same number of lines in every file.
    #[arg(long, value_name = "DIR")]
    corpus: PathBuf,
    /// Language (file stem) the premiums are relative to [default: eng_Latn, eng or en if
    /// present, else the first language in name order].
    #[arg(long, value_name = "LANG")]
    reference: Option<String>,
    /// File extension of the language files.
    #[arg(long, value_name = "EXT", default_value = "txt")]
    ext: String,
}

/// One language of the corpus.
struct Language {
    name: String,
    lines: Vec<String>,
    counts: TextCounts,
    entropy_bits: f64,
}

/// Reads the corpus folder: the languages in name order, all with the same number of lines.
fn read_corpus(dir: &Path, ext: &str) -> Result<Vec<Language>, CliError> {
    let entries = fs::read_dir(dir).map_err(|source| CliError::Io { path: dir.to_path_buf(), source })?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|source| CliError::Io { path: dir.to_path_buf(), source })?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == ext) {
            if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                files.push((stem.to_string(), path.clone()));
            }
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(CliError::input(dir, format!("the corpus is empty: no *.{ext} files (one per language)")));
    }
    let mut langs = Vec::with_capacity(files.len());
    for (name, path) in files {
        let bytes = fs::read(&path).map_err(|source| CliError::Io { path: path.clone(), source })?;
        let text = String::from_utf8(bytes).map_err(|e| CliError::input(&path, format!("not UTF-8 text: {e}")))?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        let mut counts = TextCounts::default();
        let mut chars: BTreeMap<char, u64> = BTreeMap::new();
        for line in &lines {
            counts.add(line);
            for c in line.chars() {
                *chars.entry(c).or_default() += 1;
            }
        }
        let counts_v: Vec<u64> = chars.into_values().collect();
        let entropy_bits = tm::char_entropy_bits_from_counts(&counts_v).map_err(|e| kernel(&path, e))?;
        langs.push(Language { name, lines, counts, entropy_bits });
    }
    let n = langs[0].lines.len();
    if let Some(other) = langs.iter().find(|l| l.lines.len() != n) {
        return Err(CliError::input(
            dir,
            format!(
                "the corpus is not parallel: {}.{ext} has {} lines but {}.{ext} has {}",
                langs[0].name,
                n,
                other.name,
                other.lines.len()
            ),
        ));
    }
    if n == 0 {
        return Err(CliError::input(dir, "the corpus is empty: every language file has 0 lines"));
    }
    Ok(langs)
}

fn kernel(origin: &Path, error: TmError) -> CliError {
    CliError::Kernel { origin: origin.display().to_string(), error }
}

/// The reference language's index.
fn reference_index(langs: &[Language], wanted: Option<&str>) -> Result<usize, CliError> {
    match wanted {
        Some(w) => langs.iter().position(|l| l.name == w).ok_or_else(|| {
            let names: Vec<&str> = langs.iter().map(|l| l.name.as_str()).collect();
            CliError::Usage(format!("--reference {w}: no such language in the corpus ({})", names.join(", ")))
        }),
        None => Ok(["eng_Latn", "eng", "en"].iter().find_map(|d| langs.iter().position(|l| l.name == *d)).unwrap_or(0)),
    }
}

/// Sentences encoded per `encode_batch_fast` call (and per progress tick).
const CHUNK: usize = 256;

/// Per-sentence token counts of `lines` (no post-processor special tokens).
fn token_counts(tok: &Tokenizer, path: &Path, lines: &[String], bar: &ProgressBar) -> Result<Vec<u32>, CliError> {
    let mut out = Vec::with_capacity(lines.len());
    for chunk in lines.chunks(CHUNK) {
        let inputs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let encodings = tok
            .encode_batch_fast(inputs, false)
            .map_err(|e| CliError::input(path, format!("tokenizing failed: {e}")))?;
        for enc in &encodings {
            let n = enc.get_ids().len();
            out.push(u32::try_from(n).map_err(|_| CliError::input(path, "a sentence has more than 2^32 tokens"))?);
        }
        bar.inc(chunk.len() as u64);
    }
    Ok(out)
}

/// A progress bar over `sentences` on stderr, hidden when stderr is not a terminal.
fn progress_bar(sentences: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("{spinner} {wide_bar} {pos}/{len} sentences ({per_sec}, eta {eta}) {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::new(sentences).with_style(style)
}

/// Runs the command; prints one table per tokenizer.
pub fn run(args: &TokenizersArgs) -> Result<bool, CliError> {
    let langs = read_corpus(&args.corpus, &args.ext)?;
    let r = reference_index(&langs, args.reference.as_deref())?;
    let mut tokenizers = Vec::with_capacity(args.tokenizers.len());
    for path in &args.tokenizers {
        let tok = Tokenizer::from_file(path)
            .map_err(|e| CliError::input(path, format!("not a usable tokenizer.json: {e}")))?;
        tokenizers.push(tok);
    }
    let n_lines = langs[0].lines.len();
    let total = (n_lines * langs.len() * tokenizers.len()) as u64;
    let bar = progress_bar(total);
    let mut ctcs: Vec<Vec<u64>> = Vec::with_capacity(tokenizers.len());
    for (tok, path) in tokenizers.iter().zip(&args.tokenizers) {
        bar.set_message(path.display().to_string());
        let mut per_lang = Vec::with_capacity(langs.len());
        for lang in &langs {
            let counts = token_counts(tok, path, &lang.lines, &bar)?;
            per_lang.push(tm::corpus_token_count(&counts).map_err(|e| kernel(path, e))?);
        }
        ctcs.push(per_lang);
    }
    bar.finish_and_clear();

    // Every metric first, so an error (say a reference CTC of 0) prints no partial table.
    let mut tables = Vec::with_capacity(tokenizers.len());
    for (path, ctc) in args.tokenizers.iter().zip(&ctcs) {
        let mut rows = Vec::with_capacity(langs.len());
        for (lang, &c) in langs.iter().zip(ctc) {
            let err = |error| CliError::Kernel { origin: format!("{} on {}", path.display(), lang.name), error };
            rows.push([
                tm::token_premium(c, ctc[r]).map_err(err)?,
                tm::byte_premium(lang.counts.bytes, langs[r].counts.bytes).map_err(err)?,
                lang.counts.bytes_per_token(c).map_err(err)?,
                lang.counts.chars_per_token(c).map_err(err)?,
                lang.counts.whitespace_proportion(),
                lang.entropy_bits,
            ]);
        }
        tables.push(rows);
    }

    if n_lines < 100 {
        eprintln!(
            "tokenmath: warning: {n_lines} lines per language; byte premiums from fewer than 100 lines are unreliable"
        );
    }
    println!(
        "corpus {}: {} languages x {} sentences, reference language {}",
        args.corpus.display(),
        langs.len(),
        n_lines,
        langs[r].name
    );
    let width = langs.iter().map(|l| l.name.len()).max().unwrap_or(8).max(8);
    for (((tok, path), ctc), rows) in tokenizers.iter().zip(&args.tokenizers).zip(&ctcs).zip(&tables) {
        println!();
        println!("tokenizer {} (vocabulary {})", path.display(), tok.get_vocab_size(true));
        println!(
            "{:<width$} {:>10} {:>13} {:>12} {:>11} {:>11} {:>10} {:>12}",
            "language",
            "CTC",
            "token_premium",
            "byte_premium",
            "bytes/token",
            "chars/token",
            "whitespace",
            "entropy_bits"
        );
        for ((lang, c), [tp, bp, bpt, cpt, ws, h]) in langs.iter().zip(ctc).zip(rows) {
            println!(
                "{:<width$} {:>10} {:>13.4} {:>12.4} {:>11.4} {:>11.4} {:>10.4} {:>12.4}",
                lang.name, c, tp, bp, bpt, cpt, ws, h
            );
        }
    }
    Ok(true)
}
