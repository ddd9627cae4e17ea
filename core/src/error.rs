//! [`TmError`], the error of every kernel call (and of building the views and proofs they read
//! or write).
//!
//! It is one of the crate's two error types. The other,
//! [`ProofError`](crate::fingerprint::proof::ProofError), is what the fingerprint proofs
//! return when a proof does not verify, its bytes do not parse, or an index is outside the
//! tree: an answer about the data, not a misuse of the call.

use core::fmt;

/// Every way a checked tokenmath call can refuse its input.
///
/// Kernels validate everything they can before writing any output: lengths, strides,
/// temperatures, targets. The only errors found *during* a pass are
/// [`TmError::NoFiniteLogit`], [`TmError::MissingTarget`] and
/// [`TmError::DuplicateTarget`]; when one of those is returned, the contents of the output
/// buffers are unspecified (never out of bounds, never uninitialised memory).
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum TmError {
    /// A buffer has the wrong number of elements.
    LengthMismatch {
        /// Which argument.
        what: &'static str,
        /// Elements required.
        expected: usize,
        /// Elements given.
        got: usize,
    },
    /// A size computation (`rows · stride + cols`, …) overflows `usize`.
    SizeOverflow {
        /// Which argument.
        what: &'static str,
    },
    /// A row stride smaller than the row length.
    StrideTooSmall {
        /// Which argument.
        what: &'static str,
        /// The stride given.
        stride: usize,
        /// The number of columns.
        cols: usize,
    },
    /// The vocabulary (number of columns) is zero.
    EmptyVocab,
    /// `target[row]` is `>= vocab` (negative targets mean "no target" and are allowed).
    TargetOutOfRange {
        /// Row index.
        row: usize,
        /// The target given.
        target: i32,
        /// The vocabulary size it must be below.
        vocab: usize,
    },
    /// A temperature that is not finite and `> 0`. `row` is `None` for a scalar temperature.
    InvalidTemperature {
        /// Row index for per-row temperatures.
        row: Option<usize>,
        /// The value given.
        value: f32,
    },
    /// A row (not masked out) whose logits are all `-inf`: its softmax is undefined.
    NoFiniteLogit {
        /// Row index.
        row: usize,
    },
    /// A merged partial-statistics row has a non-negative target but no shard contained it.
    MissingTarget {
        /// Row index.
        row: usize,
    },
    /// Two merged partial statistics both claim to contain the target column
    /// (the shards overlap).
    DuplicateTarget {
        /// Row index.
        row: usize,
    },
    /// A vocabulary shard that does not fit in the vocabulary.
    ShardOutOfRange {
        /// First global column of the shard.
        col_offset: usize,
        /// Columns in the shard.
        cols: usize,
        /// Global vocabulary size.
        vocab: usize,
    },
    /// An argument combination that makes no sense (the message says which).
    InvalidArgument(&'static str),
    /// The requested backend cannot run on this CPU (see [`crate::Backend::detect`]).
    BackendUnavailable,
    /// A NaN or ±inf where only finite values are accepted (rewards, fingerprint
    /// encodings, SimHash inputs).
    NonFinite {
        /// Which argument.
        what: &'static str,
        /// Position of the first offending element.
        index: usize,
    },
}

impl fmt::Display for TmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TmError::LengthMismatch { what, expected, got } => {
                write!(f, "`{what}` has {got} elements, expected {expected}")
            }
            TmError::SizeOverflow { what } => write!(f, "the size of `{what}` overflows usize"),
            TmError::StrideTooSmall { what, stride, cols } => {
                write!(f, "`{what}` has row stride {stride} < {cols} columns")
            }
            TmError::EmptyVocab => f.write_str("the vocabulary is empty (0 columns)"),
            TmError::TargetOutOfRange { row, target, vocab } => {
                write!(f, "target {target} of row {row} is out of range for vocabulary {vocab}")
            }
            TmError::InvalidTemperature { row: Some(row), value } => {
                write!(f, "temperature {value} of row {row} is not finite and > 0 with a finite 1/temperature")
            }
            TmError::InvalidTemperature { row: None, value } => {
                write!(f, "temperature {value} is not finite and > 0 with a finite 1/temperature")
            }
            TmError::NoFiniteLogit { row } => {
                write!(f, "row {row} has no finite logit (all -inf): its softmax is undefined")
            }
            TmError::MissingTarget { row } => {
                write!(f, "row {row}: no shard contained the target column")
            }
            TmError::DuplicateTarget { row } => {
                write!(f, "row {row}: two shards contain the target column (overlapping shards)")
            }
            TmError::ShardOutOfRange { col_offset, cols, vocab } => {
                write!(f, "shard [{col_offset}, {col_offset}+{cols}) does not fit in vocabulary {vocab}")
            }
            TmError::InvalidArgument(msg) => f.write_str(msg),
            TmError::BackendUnavailable => f.write_str("the requested SIMD backend is not supported by this CPU"),
            TmError::NonFinite { what, index } => {
                write!(f, "`{what}`[{index}] is NaN or infinite; it must be finite")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for TmError {}

/// Checks that `got == expected`, naming the argument in the error.
pub(crate) fn check_len(what: &'static str, expected: usize, got: usize) -> Result<(), TmError> {
    if got == expected {
        Ok(())
    } else {
        Err(TmError::LengthMismatch { what, expected, got })
    }
}
