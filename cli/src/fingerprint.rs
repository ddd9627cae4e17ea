//! `tokenmath commit` and `tokenmath verify`: Merkle commitments over token fingerprints.
//!
//! `commit` reads an embeddings tensor (`[N, D]` or `[B, T, D]`, F32/BF16/F16) from a
//! safetensors file, or generates the embedded default (seeded, `N × 384`), encodes every
//! row canonically ([`FpKind`]), wraps it in a leaf record (index, salt, token id), builds the
//! RFC 6962-shaped tree, prints `(n, root)` and the signed-head digest, and, with `--out`,
//! writes the signed head and one opening file per requested index.
//!
//! With `--consistency-from N1`, `commit` also writes the head of the first `N1` leaves and
//! the consistency proof to the full tree (core proof format).
//!
//! `verify` checks opening files (and optionally a consistency proof from `--old-head`)
//! against a signed head. The tree size comes from the head, never from the proof. The
//! proofs bind only `n` and `root`; what binds the rest of the head (hash id, context) is
//! its digest, the bytes a provider signs: with `--head-digest` (the digest that was signed)
//! every byte of the head is checked, and `verify` prints the context and the digest it saw
//! either way, saying whether they were checked. Exit codes: 0 every check passes, 1 at
//! least one is rejected (each rejection is one line on stderr), 2 usage and I/O errors or
//! an unusable head.
//!
//! # Opening file (version 1, little-endian)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `"TMOP"` |
//! | 4 | 1 | version = `1` |
//! | 5 | 4 | `record_len` (`u32`) |
//! | 9 | `record_len` | the leaf record ([`LeafRecord`]) |
//! | … | 4 | `proof_len` (`u32`) |
//! | … | `proof_len` | the inclusion proof in the core proof format ([`proof`]) |
//!
//! The file must end exactly after the proof.

use std::fs;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use safetensors::{Dtype, SafeTensors};
use tokenmath_core::fingerprint::encoding::{self, derive_salt, salt_key, FpKind, LeafRecord};
use tokenmath_core::fingerprint::hash::{Blake3, Blake3Keyed, Digest, Hash32, HASH_ID_BLAKE3, HASH_ID_BLAKE3_KEYED};
use tokenmath_core::fingerprint::proof::{self, ProofKind, MAX_PROOF_HASHES};
use tokenmath_core::fingerprint::sampling::audit_indices;
use tokenmath_core::fingerprint::signed_head::SignedHead;
use tokenmath_core::fingerprint::simhash::{planes_into, Planes};
use tokenmath_core::fingerprint::tree;
use tokenmath_core::{bf16, f16};

use crate::error::CliError;

/// Default number of tokens of the embedded default.
pub const DEFAULT_TOKENS: usize = 1024;
/// Embedding width of the embedded default (all-MiniLM-L6-v2's 384).
pub const DEFAULT_DIM: usize = 384;
/// Tensor name tried first in a safetensors file.
pub const DEFAULT_EMBEDDINGS_KEY: &str = "embeddings";

const OPENING_MAGIC: &[u8; 4] = b"TMOP";
const OPENING_VERSION: u8 = 1;

/// Fingerprint encodings selectable on the command line.
#[derive(Clone, Copy, ValueEnum)]
pub enum EncodingArg {
    /// f32-canonical-v1: exact IEEE bytes (-0 → +0, subnormals → 0, NaN/inf rejected).
    F32,
    /// i8-unit-v1: L2-normalised int8 codes.
    I8,
    /// bf16-v1: round-to-nearest-even bf16.
    Bf16,
}

impl EncodingArg {
    fn kind(self) -> FpKind {
        match self {
            EncodingArg::F32 => FpKind::F32Canonical,
            EncodingArg::I8 => FpKind::I8Unit,
            EncodingArg::Bf16 => FpKind::Bf16,
        }
    }
}

/// Options of `commit`.
#[derive(Args)]
pub struct CommitArgs {
    /// A safetensors file holding the embeddings [default: the embedded, seeded default].
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Name of the embeddings tensor [default: "embeddings", else the only floating-point tensor].
    #[arg(long, value_name = "NAME", requires = "input")]
    key: Option<String>,
    /// Name of a 1-D I64/I32 tensor of token ids, one per row [default: the row index].
    #[arg(long, value_name = "NAME", requires = "input")]
    ids_key: Option<String>,
    /// Tokens of the embedded default.
    #[arg(long, default_value_t = DEFAULT_TOKENS, conflicts_with = "input", value_parser = crate::positive)]
    tokens: usize,
    /// Embedding width of the embedded default.
    #[arg(long, default_value_t = DEFAULT_DIM, conflicts_with = "input", value_parser = crate::positive)]
    dim: usize,
    /// Seed of the embedded default (decimal or 0x-hex).
    #[arg(long, default_value = "0x5eed", conflicts_with = "input", value_parser = crate::seed)]
    seed: u64,
    /// Fingerprint encoding.
    #[arg(long, value_enum, default_value_t = EncodingArg::F32)]
    encoding: EncodingArg,
    /// Secret material for per-leaf salts (hiding of unopened leaves) [default: zero salts, no hiding].
    #[arg(long, value_name = "SECRET")]
    salt_secret: Option<String>,
    /// Use keyed BLAKE3 bound to this context (verify needs the same --keyed-context).
    #[arg(long, value_name = "CONTEXT")]
    keyed_context: Option<String>,
    /// Context bytes bound into the signed head (request id, model id, …).
    #[arg(long, default_value = "tokenmath commit")]
    context: String,
    /// Leaf index to open (repeatable).
    #[arg(long = "open", value_name = "INDEX")]
    open: Vec<u64>,
    /// Also open this many audit indices drawn from (root, n, --nonce).
    #[arg(long, value_name = "S", requires = "nonce")]
    audit: Option<u64>,
    /// The auditor's nonce for --audit.
    #[arg(long, value_name = "NONCE")]
    nonce: Option<String>,
    /// Also write the signed head of the first N1 leaves (head-N1.bin) and the consistency
    /// proof from it to the full tree (consistency-N1-N.tmc): append-only growth.
    #[arg(long, value_name = "N1", requires = "out")]
    consistency_from: Option<u64>,
    /// Directory for head.bin and the opening files (created if missing).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// Options of `verify`.
#[derive(Args)]
pub struct VerifyArgs {
    /// The signed-head bytes written by `commit` (head.bin).
    #[arg(long, value_name = "FILE")]
    head: PathBuf,
    /// The keyed-BLAKE3 context, if the commitment used one.
    #[arg(long, value_name = "CONTEXT")]
    keyed_context: Option<String>,
    /// The head digest that was signed (hex, as `commit` prints it): binds every byte of
    /// --head, context included. Without it only `n` and `root` are checked.
    #[arg(long, value_name = "HEX")]
    head_digest: Option<String>,
    /// The context the head must carry (as given to `commit --context`).
    #[arg(long, value_name = "TEXT")]
    context: Option<String>,
    /// An earlier signed head that --head must extend (with --consistency).
    #[arg(long, value_name = "FILE", requires = "consistency")]
    old_head: Option<PathBuf>,
    /// The consistency proof from --old-head to --head.
    #[arg(long, value_name = "FILE", requires = "old_head")]
    consistency: Option<PathBuf>,
    /// Opening files to check.
    #[arg(value_name = "OPENING", required_unless_present = "consistency")]
    openings: Vec<PathBuf>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hasher(keyed_context: Option<&str>) -> Box<dyn Hash32> {
    match keyed_context {
        Some(c) => Box::new(Blake3Keyed::new(c.as_bytes())),
        None => Box::new(Blake3),
    }
}

/// Rows of embeddings as f32 (bf16/f16 converted exactly) and optional token ids.
struct Embeddings {
    origin: String,
    rows: usize,
    dim: usize,
    values: Vec<f32>,
    ids: Option<Vec<u32>>,
}

/// The embedded default: `tokens × dim` standard-normal values (Box–Muller on the BLAKE3
/// XOF of the seed, the SimHash Gaussian-plane stream), reproducible everywhere.
fn default_embeddings(tokens: usize, dim: usize, seed: u64) -> Result<Embeddings, CliError> {
    let total = tokens.checked_mul(dim).ok_or_else(|| CliError::Usage("--tokens × --dim overflows".into()))?;
    if total > 1 << 24 {
        return Err(CliError::Usage(format!("--tokens × --dim = {total} is larger than the limit 2^24")));
    }
    let mut seed32 = [0u8; 32];
    seed32[..8].copy_from_slice(&seed.to_le_bytes());
    let mut buf = vec![0.0f64; total];
    planes_into(&seed32, Planes::Gaussian, dim, &mut buf)
        .map_err(|error| CliError::Kernel { origin: "default embeddings".into(), error })?;
    Ok(Embeddings {
        origin: format!("default embeddings (seed {seed:#x}, {tokens} × {dim})"),
        rows: tokens,
        dim,
        values: buf.iter().map(|&v| v as f32).collect(),
        ids: None,
    })
}

fn is_float(d: Dtype) -> bool {
    matches!(d, Dtype::F32 | Dtype::BF16 | Dtype::F16 | Dtype::F64)
}

fn read_embeddings(path: &Path, key: Option<&str>, ids_key: Option<&str>) -> Result<Embeddings, CliError> {
    let mapped = crate::input::map_file(path)?;
    let bad = |m: String| CliError::input(path, m);
    let file = SafeTensors::deserialize(&mapped)
        .map_err(|e| bad(format!("not a valid safetensors file: {}", e.to_string().replace('\n', " "))))?;
    let mut names = file.names();
    names.sort_unstable();
    let listing = if names.is_empty() {
        "the file holds no tensors".to_owned()
    } else {
        format!("tensors: {}", names.join(", "))
    };
    let (name, view) = match key {
        Some(k) => {
            (k.to_owned(), file.tensor(k).map_err(|_| bad(format!("no tensor named `{k}` (--key); {listing}")))?)
        }
        None => match file.tensor(DEFAULT_EMBEDDINGS_KEY) {
            Ok(t) => (DEFAULT_EMBEDDINGS_KEY.to_owned(), t),
            Err(_) => {
                let mut floats = file.iter().filter(|(_, t)| is_float(t.dtype()));
                match (floats.next(), floats.next()) {
                    (Some((n, t)), None) => (n.to_owned(), t),
                    _ => {
                        return Err(bad(format!(
                            "no tensor named `{DEFAULT_EMBEDDINGS_KEY}` and not exactly one floating-point tensor; \
                             choose one with --key ({listing})"
                        )))
                    }
                }
            }
        },
    };
    let shape = view.shape().to_vec();
    let (rows, dim) = match *shape.as_slice() {
        [n, d] => (n, d),
        [b, t, d] => (b * t, d),
        _ => return Err(bad(format!("embeddings tensor `{name}` has shape {shape:?}; expected [N, D] or [B, T, D]"))),
    };
    if rows == 0 || dim == 0 {
        return Err(bad(format!("embeddings tensor `{name}` of shape {shape:?} is empty")));
    }
    let data = view.data();
    let values: Vec<f32> = match view.dtype() {
        Dtype::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        Dtype::BF16 => {
            data.chunks_exact(2).map(|b| bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()).collect()
        }
        Dtype::F16 => data.chunks_exact(2).map(|b| f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()).collect(),
        other => return Err(bad(format!("embeddings tensor `{name}` has dtype {other}; expected F32, BF16 or F16"))),
    };
    let ids = match ids_key {
        None => None,
        Some(k) => {
            let t = file.tensor(k).map_err(|_| bad(format!("no tensor named `{k}` (--ids-key); {listing}")))?;
            if t.shape() != [rows] {
                return Err(bad(format!("token-id tensor `{k}` has shape {:?}; expected [{rows}]", t.shape())));
            }
            let raw: Vec<i64> = match t.dtype() {
                Dtype::I64 => {
                    t.data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes"))).collect()
                }
                Dtype::I32 => t
                    .data()
                    .chunks_exact(4)
                    .map(|b| i64::from(i32::from_le_bytes(b.try_into().expect("4 bytes"))))
                    .collect(),
                other => return Err(bad(format!("token-id tensor `{k}` has dtype {other}; expected I64 or I32"))),
            };
            let ids = raw
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    u32::try_from(v).map_err(|_| bad(format!("token id {v} of row {i} in `{k}` is not in [0, 2^32)")))
                })
                .collect::<Result<Vec<u32>, CliError>>()?;
            Some(ids)
        }
    };
    Ok(Embeddings {
        origin: format!("{} (`{name}` {shape:?} {})", path.display(), view.dtype()),
        rows,
        dim,
        values,
        ids,
    })
}

/// `commit`; always `Ok(true)` on success.
pub fn run_commit(args: &CommitArgs) -> Result<bool, CliError> {
    let emb = match &args.input {
        Some(path) => read_embeddings(path, args.key.as_deref(), args.ids_key.as_deref())?,
        None => default_embeddings(args.tokens, args.dim, args.seed)?,
    };
    let kind = args.encoding.kind();
    let h = hasher(args.keyed_context.as_deref());
    let salt_key = args.salt_secret.as_ref().map(|s| salt_key(s.as_bytes()));
    let fp_len =
        encoding::encoded_len(kind, emb.dim).map_err(|e| CliError::Kernel { origin: emb.origin.clone(), error: e })?;

    // Encode every row once: fingerprints (needed again for openings) and leaf hashes.
    let mut fps = vec![0u8; emb.rows * fp_len];
    let mut leaves: Vec<Digest> = Vec::with_capacity(emb.rows);
    for (row, (x, fp)) in emb.values.chunks_exact(emb.dim).zip(fps.chunks_exact_mut(fp_len)).enumerate() {
        encoding::encode(kind, x, fp).map_err(|e| {
            let msg = match e {
                tokenmath_core::TmError::NonFinite { index, .. } => {
                    format!("row {row}, dimension {index}: NaN or infinite value cannot be committed")
                }
                e => format!("row {row}: {e}"),
            };
            CliError::Usage(format!("{}: {msg}", emb.origin))
        })?;
        let rec = record(&emb, row, kind, fp, salt_key.as_ref());
        leaves.push(rec.leaf_hash(&*h).map_err(|e| CliError::Kernel { origin: emb.origin.clone(), error: e })?);
    }
    let n = leaves.len() as u64;
    let root = tree::root(&*h, &leaves);
    let head = SignedHead { hash_id: h.hash_id(), n, root, ctx: args.context.as_bytes() };
    let head_digest = head.digest(&*h).map_err(|e| CliError::Kernel { origin: emb.origin.clone(), error: e })?;

    let mut open = args.open.clone();
    if let Some(s) = args.audit {
        let nonce = args.nonce.as_deref().unwrap_or_default();
        let mut idx = vec![0u64; s.min(n) as usize];
        let k = audit_indices(&root, n, nonce.as_bytes(), s, &mut idx)
            .map_err(|e| CliError::Kernel { origin: emb.origin.clone(), error: e })?;
        open.extend_from_slice(&idx[..k]);
    }
    open.sort_unstable();
    open.dedup();
    if let Some(&bad) = open.iter().find(|&&i| i >= n) {
        return Err(CliError::Usage(format!("--open {bad}: the commitment has only {n} leaves (indices 0..{n})")));
    }
    if let Some(n1) = args.consistency_from {
        if n1 == 0 || n1 > n {
            return Err(CliError::Usage(format!("--consistency-from {n1}: need 1 <= N1 <= {n}")));
        }
    }
    if !open.is_empty() && args.out.is_none() {
        return Err(CliError::Usage("--open/--audit need --out DIR to write the opening files".into()));
    }

    println!("tokenmath commit");
    println!("  input       {}", emb.origin);
    println!("  encoding    {} ({fp_len} bytes per token)", kind.name());
    println!(
        "  hash        {}",
        if args.keyed_context.is_some() { "BLAKE3 keyed (hash id 3)" } else { "BLAKE3 (hash id 1)" }
    );
    println!(
        "  salts       {}",
        if salt_key.is_some() { "derived from --salt-secret (unopened leaves hidden)" } else { "zero (no hiding)" }
    );
    println!("  n           {n}");
    println!("  root        {}", hex(&root));
    println!("  head digest {}", hex(&head_digest));

    if let Some(dir) = &args.out {
        fs::create_dir_all(dir).map_err(|source| CliError::Io { path: dir.clone(), source })?;
        let mut head_bytes = vec![0u8; head.encoded_len()];
        head.encode(&mut head_bytes).map_err(|e| CliError::Kernel { origin: emb.origin.clone(), error: e })?;
        let head_path = dir.join("head.bin");
        fs::write(&head_path, &head_bytes).map_err(|source| CliError::Io { path: head_path.clone(), source })?;
        println!("  wrote       {}", head_path.display());
        let mut buf = [[0u8; 32]; MAX_PROOF_HASHES];
        for &i in &open {
            let row = i as usize;
            let rec = record(&emb, row, kind, &fps[row * fp_len..(row + 1) * fp_len], salt_key.as_ref());
            let len = proof::inclusion_proof(&*h, &leaves, i, &mut buf)
                .map_err(|e| CliError::Kernel { origin: emb.origin.clone(), error: e })?;
            let proof_bytes = proof::proof_to_vec(ProofKind::Inclusion, h.hash_id(), i, n, &buf[..len])
                .map_err(|e| CliError::Kernel { origin: emb.origin.clone(), error: e })?;
            let mut rec_bytes = vec![0u8; rec.encoded_len()];
            rec.encode(&mut rec_bytes).map_err(|e| CliError::Kernel { origin: emb.origin.clone(), error: e })?;
            let path = dir.join(format!("open-{i}.tmo"));
            fs::write(&path, opening_bytes(&rec_bytes, &proof_bytes))
                .map_err(|source| CliError::Io { path: path.clone(), source })?;
            println!("  wrote       {} (leaf {i}, {len} proof hashes)", path.display());
        }
        if let Some(n1) = args.consistency_from {
            let kernel = |error| CliError::Kernel { origin: emb.origin.clone(), error };
            let old = SignedHead { n: n1, root: tree::root(&*h, &leaves[..n1 as usize]), ..head };
            let mut old_bytes = vec![0u8; old.encoded_len()];
            old.encode(&mut old_bytes).map_err(kernel)?;
            let old_path = dir.join(format!("head-{n1}.bin"));
            fs::write(&old_path, &old_bytes).map_err(|source| CliError::Io { path: old_path.clone(), source })?;
            let len = proof::consistency_proof(&*h, &leaves, n1, &mut buf).map_err(kernel)?;
            let bytes = proof::proof_to_vec(ProofKind::Consistency, h.hash_id(), n1, n, &buf[..len]).map_err(kernel)?;
            let path = dir.join(format!("consistency-{n1}-{n}.tmc"));
            fs::write(&path, bytes).map_err(|source| CliError::Io { path: path.clone(), source })?;
            println!("  wrote       {} (prefix of {n1} leaves, root {})", old_path.display(), hex(&old.root));
            println!("  wrote       {} ({n1} -> {n}, {len} proof hashes)", path.display());
        }
    }
    Ok(true)
}

fn record<'a>(emb: &Embeddings, row: usize, kind: FpKind, fp: &'a [u8], salt_key: Option<&[u8; 32]>) -> LeafRecord<'a> {
    LeafRecord {
        index: row as u64,
        salt: salt_key.map_or([0u8; 16], |k| derive_salt(k, row as u64)),
        token_id: emb.ids.as_ref().map_or(row as u32, |ids| ids[row]),
        kind,
        fp,
    }
}

fn opening_bytes(record: &[u8], proof: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(13 + record.len() + proof.len());
    out.extend_from_slice(OPENING_MAGIC);
    out.push(OPENING_VERSION);
    out.extend_from_slice(&(record.len() as u32).to_le_bytes());
    out.extend_from_slice(record);
    out.extend_from_slice(&(proof.len() as u32).to_le_bytes());
    out.extend_from_slice(proof);
    out
}

/// Splits an opening file into (record bytes, proof bytes), strictly.
fn parse_opening(bytes: &[u8]) -> Result<(&[u8], &[u8]), String> {
    let take_u32 = |b: &[u8], at: usize| -> Option<usize> {
        b.get(at..at + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
    };
    if bytes.len() < 5 || &bytes[..4] != OPENING_MAGIC {
        return Err("not a tokenmath opening file (bad magic)".into());
    }
    if bytes[4] != OPENING_VERSION {
        return Err(format!("unsupported opening file version {}", bytes[4]));
    }
    let rec_len = take_u32(bytes, 5).ok_or("truncated before the record length")?;
    let rec_end = 9usize.checked_add(rec_len).filter(|&e| e <= bytes.len()).ok_or("truncated leaf record")?;
    let proof_len = take_u32(bytes, rec_end).ok_or("truncated before the proof length")?;
    let proof_start = rec_end + 4;
    if bytes.len() - proof_start != proof_len {
        return Err("the proof length does not match the file (truncated or trailing bytes)".into());
    }
    Ok((&bytes[9..rec_end], &bytes[proof_start..]))
}

/// Checks one opening against the head; `Ok(description)` or `Err(reason)`.
fn check_opening(h: &dyn Hash32, head: &SignedHead<'_>, bytes: &[u8]) -> Result<String, String> {
    let (rec_bytes, proof_bytes) = parse_opening(bytes)?;
    let rec = LeafRecord::parse(rec_bytes).map_err(|e| e.to_string())?;
    let view = proof::parse_proof(proof_bytes).map_err(|e| e.to_string())?;
    if view.a != rec.index {
        return Err(format!("the proof is for leaf {} but the record is leaf {}", view.a, rec.index));
    }
    let leaf = rec.leaf_hash(h).map_err(|e| e.to_string())?;
    view.verify_inclusion(h, rec.index, head.n, &leaf, &head.root).map_err(|e| match e {
        proof::ProofError::Malformed(m) if view.b != head.n => {
            format!("{m} (proof says size {}, signed head says {})", view.b, head.n)
        }
        e => e.to_string(),
    })?;
    Ok(format!(
        "leaf {} of {}, token {}, {} ({} bytes)",
        rec.index,
        head.n,
        rec.token_id,
        rec.kind.name(),
        rec.fp.len()
    ))
}

/// `verify`; `Ok(true)` when every opening verifies.
pub fn run_verify(args: &VerifyArgs) -> Result<bool, CliError> {
    let head_bytes = fs::read(&args.head).map_err(|source| CliError::Io { path: args.head.clone(), source })?;
    let head = SignedHead::parse(&head_bytes).map_err(|e| CliError::input(&args.head, e.to_string()))?;
    let expected_id = if args.keyed_context.is_some() { HASH_ID_BLAKE3_KEYED } else { HASH_ID_BLAKE3 };
    if head.hash_id != expected_id {
        let hint = match head.hash_id {
            HASH_ID_BLAKE3_KEYED => " (the commitment is keyed: pass --keyed-context)",
            HASH_ID_BLAKE3 => " (the commitment is not keyed: drop --keyed-context)",
            _ => "",
        };
        return Err(CliError::input(&args.head, format!("signed head uses hash id {}{hint}", head.hash_id)));
    }
    let h = hasher(args.keyed_context.as_deref());
    let digest = head.digest(&*h).map_err(|e| CliError::input(&args.head, e.to_string()))?;
    println!("tokenmath verify");
    println!("  head        n = {}, root {}", head.n, hex(&head.root));
    let mut all_ok = true;
    let mut reject = |what: &str, reason: String| {
        all_ok = false;
        println!("  REJECTED    {what}: {reason}");
        eprintln!("tokenmath: rejected {what}: {reason}");
    };
    let context = String::from_utf8_lossy(head.ctx);
    match &args.context {
        Some(want) if want.as_bytes() != head.ctx => {
            reject("context", format!("the head carries {context:?}, expected {want:?}"))
        }
        Some(_) => println!("  context     {context:?} (matches --context)"),
        None => println!("  context     {context:?} (not checked: pass --context or --head-digest)"),
    }
    let digest_checked = match &args.head_digest {
        Some(want) if !want.trim().eq_ignore_ascii_case(&hex(&digest)) => {
            reject("head digest", format!("the head's digest is {}, the signed digest {}", hex(&digest), want.trim()));
            true
        }
        Some(_) => {
            println!("  head digest {} (matches --head-digest: every byte of the head is bound)", hex(&digest));
            true
        }
        None => {
            println!(
                "  head digest {} (not checked: pass --head-digest with the digest that was signed)",
                hex(&digest)
            );
            false
        }
    };
    if let (Some(old_path), Some(proof_path)) = (&args.old_head, &args.consistency) {
        let old_bytes = fs::read(old_path).map_err(|source| CliError::Io { path: old_path.clone(), source })?;
        let old = SignedHead::parse(&old_bytes).map_err(|e| CliError::input(old_path, e.to_string()))?;
        if old.hash_id != head.hash_id {
            return Err(CliError::input(old_path, "the old head uses another hash than --head"));
        }
        let bytes = fs::read(proof_path).map_err(|source| CliError::Io { path: proof_path.clone(), source })?;
        let outcome = proof::parse_proof(&bytes)
            .and_then(|view| view.verify_consistency(&*h, old.n, head.n, &old.root, &head.root));
        match outcome {
            Ok(()) => println!("  ok          {}: head of {} extends head of {}", proof_path.display(), head.n, old.n),
            Err(reason) => reject(&proof_path.display().to_string(), reason.to_string()),
        }
    }
    for path in &args.openings {
        let bytes = fs::read(path).map_err(|source| CliError::Io { path: path.clone(), source })?;
        match check_opening(&*h, &head, &bytes) {
            Ok(desc) => println!("  ok          {}: {desc}", path.display()),
            Err(reason) => reject(&path.display().to_string(), reason),
        }
    }
    let result = match (all_ok, digest_checked) {
        (false, _) => "REJECTED",
        (true, true) => "all checks pass (the whole head, by its digest)",
        (true, false) => "all checks pass for n and root (the rest of the head is unchecked without --head-digest)",
    };
    println!("  result      {result}");
    Ok(all_ok)
}
