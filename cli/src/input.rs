//! Reading a logits dump from a safetensors file.
//!
//! The file is memory-mapped and parsed with the `safetensors` crate, so only the rows
//! being processed are paged in. The logits tensor (`F32`, `BF16` or `F16`, shape `[N, V]`
//! or `[B, T, V]`, read as `N = B·T` rows) is handed out a range of rows at a time: borrowed
//! straight from the mapping when its offset in the file is aligned for the element type,
//! copied into an aligned buffer otherwise (safetensors only promises byte offsets). The
//! optional labels tensor (`I64` or `I32`, one per row, negative = no target) is decoded
//! whole and checked against the vocabulary.
//!
//! Every problem with the file becomes a one-line [`CliError`]; nothing here panics on
//! bad input.

use std::borrow::Cow;
use std::fs::File;
use std::ops::Range;
use std::path::Path;

use memmap2::Mmap;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensorError, SafeTensors};
use tokenmath_core::{bf16, f16, DType, LogitElem};

use crate::error::CliError;

/// The tensor names tried when the user names none.
pub const DEFAULT_LOGITS_KEY: &str = "logits";
/// See [`DEFAULT_LOGITS_KEY`].
pub const DEFAULT_LABELS_KEY: &str = "labels";

/// Maps `path` read-only into memory.
pub fn map_file(path: &Path) -> Result<Mmap, CliError> {
    if cfg!(target_endian = "big") {
        return Err(CliError::Usage(
            "safetensors data is little-endian; reading it on a big-endian host is not supported".into(),
        ));
    }
    let io_err = |source| CliError::Io { path: path.to_owned(), source };
    let file = File::open(path).map_err(io_err)?;
    if !file.metadata().map_err(io_err)?.is_file() {
        return Err(CliError::input(path, "not a regular file"));
    }
    // SAFETY: the mapping is read-only and private to this process. Like every reader of a
    // memory-mapped file, we rely on no one truncating or rewriting the file while it is
    // mapped (that would be a SIGBUS or torn reads, not memory unsafety in this program's
    // own data structures).
    unsafe { Mmap::map(&file) }.map_err(io_err)
}

/// The logits (and labels) found in a safetensors file.
pub struct Input<'a> {
    /// Name of the logits tensor.
    pub logits_key: String,
    /// The logits tensor's shape as stored.
    pub shape: Vec<usize>,
    /// Element type of the logits.
    pub dtype: DType,
    /// Rows (`N`, or `B·T` for a rank-3 tensor).
    pub rows: usize,
    /// Vocabulary size (the last dimension).
    pub vocab: usize,
    /// Name and dtype of the labels tensor and the decoded labels, if there is one.
    pub labels: Option<Labels>,
    data: &'a [u8],
}

/// A decoded labels tensor.
#[derive(Debug)]
pub struct Labels {
    /// Name of the tensor.
    pub key: String,
    /// Its dtype as stored (`I64` or `I32`).
    pub dtype: Dtype,
    /// One target per row; negative = no target.
    pub targets: Vec<i32>,
}

/// Which tensors to read; `None` picks the defaults described on [`parse`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Keys<'k> {
    /// Name of the logits tensor.
    pub logits: Option<&'k str>,
    /// Name of the labels tensor.
    pub labels: Option<&'k str>,
}

/// Parses the mapped file `bytes` (read from `path`).
///
/// The logits tensor is `keys.logits`, else the tensor named `"logits"`, else the only
/// floating-point tensor. The labels tensor is `keys.labels`, else `"labels"` if present,
/// else none.
pub fn parse<'a>(path: &Path, bytes: &'a [u8], keys: Keys<'_>) -> Result<Input<'a>, CliError> {
    let bad = |message: String| CliError::input(path, message);
    let file = SafeTensors::deserialize(bytes).map_err(|e| bad(describe(&e)))?;
    let names = || {
        let mut names = file.names();
        names.sort_unstable();
        if names.is_empty() {
            "the file holds no tensors".to_owned()
        } else {
            format!("tensors in the file: {}", names.join(", "))
        }
    };
    let lookup = |key: &str, option: &str| {
        file.tensor(key).map_err(|_| bad(format!("no tensor named `{key}` ({option}); {}", names())))
    };

    let (logits_key, logits) = match keys.logits {
        Some(key) => (key.to_owned(), lookup(key, "--logits-key")?),
        None => find_logits(&file).ok_or_else(|| {
            bad(format!(
                "no tensor named `{DEFAULT_LOGITS_KEY}` and not exactly one floating-point tensor; \
                 choose one with --logits-key ({})",
                names()
            ))
        })?,
    };
    let mut input = logits_input(&logits_key, &logits).map_err(bad)?;
    let (shape, vocab) = (input.shape.clone(), input.vocab);

    let labels_view = match keys.labels {
        Some(key) => Some((key.to_owned(), lookup(key, "--labels-key")?)),
        None if logits_key == DEFAULT_LABELS_KEY => None,
        None => file.tensor(DEFAULT_LABELS_KEY).ok().map(|t| (DEFAULT_LABELS_KEY.to_owned(), t)),
    };
    let labels = labels_view.map(|(key, view)| decode_labels(&key, &view, &shape, vocab).map_err(bad)).transpose()?;

    input.labels = labels;
    Ok(input)
}

/// The logits tensor `view` (named `key`) as an [`Input`] without labels: its dtype must be
/// F32, BF16 or F16 and its shape `[N, V]` or `[B, T, V]`, not empty.
pub fn logits_input<'a>(key: &str, view: &TensorView<'a>) -> Result<Input<'a>, String> {
    let dtype = match view.dtype() {
        Dtype::F32 => DType::F32,
        Dtype::BF16 => DType::BF16,
        Dtype::F16 => DType::F16,
        other => return Err(format!("logits tensor `{key}` has dtype {other}; expected F32, BF16 or F16")),
    };
    let shape = view.shape().to_vec();
    let (rows, vocab) = match *shape.as_slice() {
        [n, v] => (n, v),
        [b, t, v] => (b * t, v), // the product is bounded by the validated tensor size
        _ => return Err(format!("logits tensor `{key}` has shape {shape:?}; expected [N, V] or [B, T, V]")),
    };
    if rows == 0 || vocab == 0 {
        return Err(format!("logits tensor `{key}` of shape {shape:?} is empty"));
    }
    Ok(Input { logits_key: key.to_owned(), shape, dtype, rows, vocab, labels: None, data: view.data() })
}

impl<'a> Input<'a> {
    /// The logits of rows `range` as a dense `[range.len(), vocab]` slice of `T`, borrowed
    /// from the mapping when aligned, copied otherwise.
    ///
    /// Panics if `T` is not the file's dtype or `range` is not within `0..rows` (both are
    /// programming errors, not input errors).
    pub fn rows_as<T: LogitElem>(&self, range: Range<usize>) -> Cow<'a, [T]> {
        assert_eq!(T::DTYPE, self.dtype, "rows_as must be called with the file's dtype");
        assert!(range.start <= range.end && range.end <= self.rows);
        let row_bytes = self.vocab * T::DTYPE.size();
        let bytes = &self.data[range.start * row_bytes..range.end * row_bytes];
        match bytemuck::try_cast_slice(bytes) {
            Ok(aligned) => Cow::Borrowed(aligned),
            Err(_) => {
                let mut copy = vec![T::zeroed(); bytes.len() / T::DTYPE.size()];
                bytemuck::cast_slice_mut::<T, u8>(&mut copy).copy_from_slice(bytes);
                Cow::Owned(copy)
            }
        }
    }
}

/// [`crate::run::run`] over the logits of a memory-mapped file: `run` asks for the chunks in
/// order, so the rows before each new chunk (and at the end, all of them) are released
/// ([`release_rows`]): the resident set stays about one chunk whatever the file's size.
pub fn run_mapped(
    job: &crate::run::Job<'_>,
    mapped: &Mmap,
    input: &Input<'_>,
) -> Result<crate::run::Outcome, CliError> {
    let done = std::cell::Cell::new(0);
    let rows = |r: Range<usize>| {
        release_rows(mapped, input, done.replace(r.start)..r.start);
        r
    };
    let outcome = match input.dtype {
        DType::F32 => crate::run::run::<f32>(job, |r| input.rows_as(rows(r))),
        DType::BF16 => crate::run::run::<bf16>(job, |r| input.rows_as(rows(r))),
        DType::F16 => crate::run::run::<f16>(job, |r| input.rows_as(rows(r))),
    }?;
    release_rows(mapped, input, done.get()..input.rows);
    Ok(outcome)
}

/// Drops this process's resident pages of the logits rows `rows` of `input` (which must have
/// been parsed from `mapped`), once they have been processed: the file's pages stay in the
/// page cache, and an access reads them again. Without this, every page of a memory-mapped
/// dump that was touched counts in the process's resident set until the end, however small
/// the chunks. Advice only: a failure is ignored. No-op off Unix or for data outside `mapped`.
pub fn release_rows(mapped: &Mmap, input: &Input<'_>, rows: Range<usize>) {
    #[cfg(unix)]
    {
        let row_bytes = input.vocab * input.dtype.size();
        let map = mapped.as_ptr_range();
        let data = input.data.as_ptr_range();
        if data.start < map.start || data.end > map.end || rows.end > input.rows || rows.is_empty() {
            return;
        }
        let offset = data.start as usize - map.start as usize + rows.start * row_bytes;
        // SAFETY: `mapped` is a read-only, shared mapping of a file (`map_file`) that nobody
        // modifies while it is mapped (the same assumption as the mapping itself): dropping
        // its pages loses no data, the next read of them faults them in from the file again.
        let _ = unsafe {
            mapped.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, rows.len() * row_bytes)
        };
    }
    #[cfg(not(unix))]
    let _ = (mapped, input, rows);
}

/// The tensor named [`DEFAULT_LOGITS_KEY`], else the only floating-point tensor.
fn find_logits<'a>(file: &SafeTensors<'a>) -> Option<(String, TensorView<'a>)> {
    if let Ok(t) = file.tensor(DEFAULT_LOGITS_KEY) {
        return Some((DEFAULT_LOGITS_KEY.to_owned(), t));
    }
    let mut floats = file.iter().filter(|(_, t)| is_float(t.dtype()));
    match (floats.next(), floats.next()) {
        (Some((name, t)), None) => Some((name.to_owned(), t)),
        _ => None,
    }
}

fn is_float(dtype: Dtype) -> bool {
    matches!(
        dtype,
        Dtype::F64
            | Dtype::F32
            | Dtype::BF16
            | Dtype::F16
            | Dtype::F8_E4M3
            | Dtype::F8_E5M2
            | Dtype::F8_E8M0
            | Dtype::F8_E4M3FNUZ
            | Dtype::F8_E5M2FNUZ
            | Dtype::F6_E2M3
            | Dtype::F6_E3M2
            | Dtype::F4
    )
}

/// A one-line description of a safetensors parse error, with a hint where one helps.
pub fn describe(e: &SafeTensorError) -> String {
    let hint = match e {
        SafeTensorError::MetadataIncompleteBuffer | SafeTensorError::InvalidHeaderLength => {
            " (the file is shorter or longer than its header says: truncated?)"
        }
        SafeTensorError::HeaderTooSmall | SafeTensorError::HeaderTooLarge | SafeTensorError::InvalidHeader(_) => {
            " (is this a safetensors file?)"
        }
        _ => "",
    };
    let message = e.to_string().replace('\n', " ");
    format!("not a valid safetensors file: {message}{hint}")
}

/// Decodes and checks a labels tensor for logits of shape `logits_shape`.
fn decode_labels(key: &str, view: &TensorView<'_>, logits_shape: &[usize], vocab: usize) -> Result<Labels, String> {
    let rows_shape = &logits_shape[..logits_shape.len() - 1];
    let rows: usize = rows_shape.iter().product();
    let shape = view.shape();
    if shape != rows_shape && shape != [rows] {
        let expected = if rows_shape.len() == 1 { format!("[{rows}]") } else { format!("{rows_shape:?} or [{rows}]") };
        return Err(format!("labels tensor `{key}` has shape {shape:?}; expected {expected} to match the logits"));
    }
    let values: Vec<i64> = match view.dtype() {
        Dtype::I64 => {
            view.data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().expect("chunks of 8 bytes"))).collect()
        }
        Dtype::I32 => view
            .data()
            .chunks_exact(4)
            .map(|b| i64::from(i32::from_le_bytes(b.try_into().expect("chunks of 4 bytes"))))
            .collect(),
        other => return Err(format!("labels tensor `{key}` has dtype {other}; expected I64 or I32")),
    };
    let targets = values
        .iter()
        .enumerate()
        .map(|(row, &label)| match i32::try_from(label) {
            Ok(t) if t < 0 || (t as usize) < vocab => Ok(t),
            _ => Err(format!(
                "label {label} of row {row} in `{key}` is out of range for vocabulary {vocab} \
                 (labels must be < {vocab}; negative means no target)"
            )),
        })
        .collect::<Result<Vec<i32>, String>>()?;
    Ok(Labels { key: key.to_owned(), dtype: view.dtype(), targets })
}
