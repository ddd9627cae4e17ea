//! `tkm_status`: the result of every call, its strings, and the mapping from core errors.

use core::ffi::c_char;

use tokenmath_core::fingerprint::proof::ProofError;
use tokenmath_core::TmError;

/// The result of every `tkm_` call that can fail. `TKM_STATUS_OK` (0) is success; every
/// other value is an error, and no output was written (see the header's rules).
///
/// The numeric values are part of the ABI and never change; new codes are only appended.
/// A status is transported as a `uint32_t` (`tkm_status` is a `uint32_t` typedef in C), so
/// a caller may receive a code added by a newer library: `tkm_status_str` accepts any
/// integer and names unknown ones `"unknown status"`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum tkm_status {
    /// Success.
    TKM_STATUS_OK = 0,
    /// A required pointer argument is NULL.
    TKM_STATUS_NULL_POINTER = 1,
    /// A size computation (`rows * row_stride`, bytes of a buffer, ...) overflows `size_t`
    /// or exceeds `PTRDIFF_MAX` bytes.
    TKM_STATUS_SIZE_OVERFLOW = 2,
    /// Two lengths that must agree do not (e.g. a proof buffer shorter than the proof).
    TKM_STATUS_LENGTH_MISMATCH = 3,
    /// A row stride smaller than the number of columns.
    TKM_STATUS_BAD_STRIDE = 4,
    /// A label (target token id) is `>= vocab`. Negative targets mean "no target".
    TKM_STATUS_LABEL_OUT_OF_RANGE = 5,
    /// A `tkm_dtype` (or DLPack dtype) that the call does not support.
    TKM_STATUS_BAD_DTYPE = 6,
    /// A DLPack tensor in memory the library cannot use: a `device_type` other than CPU
    /// memory (`kDLCPU`, pinned `kDLCUDAHost` / `kDLROCMHost`) and CUDA device memory
    /// (`kDLCUDA`).
    TKM_STATUS_UNSUPPORTED_DEVICE = 7,
    /// A NaN or infinite value where only finite values are accepted (rewards).
    TKM_STATUS_NON_FINITE = 8,
    /// A kept row whose logits are all `-inf`: its softmax is undefined.
    TKM_STATUS_NO_FINITE_LOGIT = 9,
    /// A temperature that is not finite and `> 0`.
    TKM_STATUS_INVALID_TEMPERATURE = 10,
    /// The vocabulary (number of columns) is zero.
    TKM_STATUS_EMPTY_VOCAB = 11,
    /// Merged shard partials of a row with a target contain no target column.
    TKM_STATUS_MISSING_TARGET = 12,
    /// Two merged shard partials both contain a row's target column (overlapping shards).
    TKM_STATUS_DUPLICATE_TARGET = 13,
    /// A vocabulary shard that does not fit inside the vocabulary.
    TKM_STATUS_SHARD_OUT_OF_RANGE = 14,
    /// An argument combination or enum value that makes no sense.
    TKM_STATUS_INVALID_ARGUMENT = 15,
    /// The requested SIMD backend cannot run on this CPU.
    TKM_STATUS_BACKEND_UNAVAILABLE = 16,
    /// An options struct whose `struct_size` is not one this library understands.
    TKM_STATUS_BAD_STRUCT_SIZE = 17,
    /// A pointer not aligned to its element type.
    TKM_STATUS_MISALIGNED = 18,
    /// An output buffer overlaps an input buffer where that is not allowed.
    TKM_STATUS_OVERLAP = 19,
    /// Scratch memory could not be allocated.
    TKM_STATUS_OUT_OF_MEMORY = 20,
    /// A leaf index not below the tree size.
    TKM_STATUS_INDEX_OUT_OF_RANGE = 21,
    /// A proof with the wrong number of hashes for its sizes.
    TKM_STATUS_PROOF_LENGTH = 22,
    /// A well-formed proof that does not lead to the expected root.
    TKM_STATUS_PROOF_MISMATCH = 23,
    /// A DLPack tensor whose fields are invalid (ndim, shape, strides, lanes, byte offset).
    TKM_STATUS_BAD_TENSOR = 24,
    /// A CUDA entry point (`tkm_cuda_*`, or a `tkm_dl_*` call on `kDLCUDA` tensors) in a
    /// library built without the CUDA launch path. Nothing was read or written.
    TKM_STATUS_CUDA_UNAVAILABLE = 25,
    /// The tensors of one call live on different devices (CPU and CUDA memory, or two CUDA
    /// devices): tokenmath never copies between devices.
    TKM_STATUS_DEVICE_MISMATCH = 26,
    /// A Rust panic was caught at the ABI boundary (a bug in tokenmath: please report it).
    /// No output was written.
    TKM_STATUS_INTERNAL_PANIC = 255,
}

pub use tkm_status::*;

/// Every status, in numeric order (tests iterate over it).
pub const ALL_STATUSES: [tkm_status; 28] = [
    TKM_STATUS_OK,
    TKM_STATUS_NULL_POINTER,
    TKM_STATUS_SIZE_OVERFLOW,
    TKM_STATUS_LENGTH_MISMATCH,
    TKM_STATUS_BAD_STRIDE,
    TKM_STATUS_LABEL_OUT_OF_RANGE,
    TKM_STATUS_BAD_DTYPE,
    TKM_STATUS_UNSUPPORTED_DEVICE,
    TKM_STATUS_NON_FINITE,
    TKM_STATUS_NO_FINITE_LOGIT,
    TKM_STATUS_INVALID_TEMPERATURE,
    TKM_STATUS_EMPTY_VOCAB,
    TKM_STATUS_MISSING_TARGET,
    TKM_STATUS_DUPLICATE_TARGET,
    TKM_STATUS_SHARD_OUT_OF_RANGE,
    TKM_STATUS_INVALID_ARGUMENT,
    TKM_STATUS_BACKEND_UNAVAILABLE,
    TKM_STATUS_BAD_STRUCT_SIZE,
    TKM_STATUS_MISALIGNED,
    TKM_STATUS_OVERLAP,
    TKM_STATUS_OUT_OF_MEMORY,
    TKM_STATUS_INDEX_OUT_OF_RANGE,
    TKM_STATUS_PROOF_LENGTH,
    TKM_STATUS_PROOF_MISMATCH,
    TKM_STATUS_BAD_TENSOR,
    TKM_STATUS_CUDA_UNAVAILABLE,
    TKM_STATUS_DEVICE_MISMATCH,
    TKM_STATUS_INTERNAL_PANIC,
];

impl tkm_status {
    /// The status with this numeric value, if any.
    pub fn from_u32(code: u32) -> Option<tkm_status> {
        ALL_STATUSES.iter().copied().find(|s| *s as u32 == code)
    }

    /// A static, NUL-terminated description.
    pub fn as_cstr(self) -> &'static core::ffi::CStr {
        match self {
            TKM_STATUS_OK => c"ok",
            TKM_STATUS_NULL_POINTER => c"a required pointer argument is NULL",
            TKM_STATUS_SIZE_OVERFLOW => c"a size computation overflows",
            TKM_STATUS_LENGTH_MISMATCH => c"buffer lengths do not match",
            TKM_STATUS_BAD_STRIDE => c"a row stride is smaller than the row length",
            TKM_STATUS_LABEL_OUT_OF_RANGE => c"a target label is out of range for the vocabulary",
            TKM_STATUS_BAD_DTYPE => c"unsupported dtype",
            TKM_STATUS_UNSUPPORTED_DEVICE => {
                c"unsupported device (CPU memory, or CUDA memory where the library has CUDA)"
            }
            TKM_STATUS_NON_FINITE => c"a NaN or infinite value where only finite values are accepted",
            TKM_STATUS_NO_FINITE_LOGIT => c"a row has no finite logit (all -inf)",
            TKM_STATUS_INVALID_TEMPERATURE => c"a temperature is not finite and > 0",
            TKM_STATUS_EMPTY_VOCAB => c"the vocabulary is empty",
            TKM_STATUS_MISSING_TARGET => c"no shard contained a row's target column",
            TKM_STATUS_DUPLICATE_TARGET => c"two shards contain a row's target column",
            TKM_STATUS_SHARD_OUT_OF_RANGE => c"a vocabulary shard does not fit in the vocabulary",
            TKM_STATUS_INVALID_ARGUMENT => c"invalid argument",
            TKM_STATUS_BACKEND_UNAVAILABLE => c"the requested SIMD backend is not supported by this CPU",
            TKM_STATUS_BAD_STRUCT_SIZE => c"an options struct has an unsupported struct_size",
            TKM_STATUS_MISALIGNED => c"a pointer is not aligned to its element type",
            TKM_STATUS_OVERLAP => c"an output buffer overlaps an input buffer",
            TKM_STATUS_OUT_OF_MEMORY => c"scratch memory could not be allocated",
            TKM_STATUS_INDEX_OUT_OF_RANGE => c"a leaf index is not below the tree size",
            TKM_STATUS_PROOF_LENGTH => c"the proof has the wrong number of hashes",
            TKM_STATUS_PROOF_MISMATCH => c"the proof does not lead to the expected root",
            TKM_STATUS_BAD_TENSOR => c"invalid DLPack tensor",
            TKM_STATUS_CUDA_UNAVAILABLE => c"this library was built without the CUDA launch path",
            TKM_STATUS_DEVICE_MISMATCH => c"the tensors of one call live on different devices",
            TKM_STATUS_INTERNAL_PANIC => c"internal panic caught at the ABI boundary (a tokenmath bug)",
        }
    }
}

impl From<TmError> for tkm_status {
    fn from(e: TmError) -> tkm_status {
        match e {
            TmError::LengthMismatch { .. } => TKM_STATUS_LENGTH_MISMATCH,
            TmError::SizeOverflow { .. } => TKM_STATUS_SIZE_OVERFLOW,
            TmError::StrideTooSmall { .. } => TKM_STATUS_BAD_STRIDE,
            TmError::EmptyVocab => TKM_STATUS_EMPTY_VOCAB,
            TmError::TargetOutOfRange { .. } => TKM_STATUS_LABEL_OUT_OF_RANGE,
            TmError::InvalidTemperature { .. } => TKM_STATUS_INVALID_TEMPERATURE,
            TmError::NoFiniteLogit { .. } => TKM_STATUS_NO_FINITE_LOGIT,
            TmError::MissingTarget { .. } => TKM_STATUS_MISSING_TARGET,
            TmError::DuplicateTarget { .. } => TKM_STATUS_DUPLICATE_TARGET,
            TmError::ShardOutOfRange { .. } => TKM_STATUS_SHARD_OUT_OF_RANGE,
            TmError::InvalidArgument(_) => TKM_STATUS_INVALID_ARGUMENT,
            TmError::BackendUnavailable => TKM_STATUS_BACKEND_UNAVAILABLE,
            TmError::NonFinite { .. } => TKM_STATUS_NON_FINITE,
            // `TmError` is non-exhaustive: a variant added later is an invalid argument
            // until it gets a code of its own.
            _ => TKM_STATUS_INVALID_ARGUMENT,
        }
    }
}

impl From<ProofError> for tkm_status {
    fn from(e: ProofError) -> tkm_status {
        match e {
            ProofError::IndexOutOfRange { .. } => TKM_STATUS_INDEX_OUT_OF_RANGE,
            ProofError::WrongLength { .. } => TKM_STATUS_PROOF_LENGTH,
            ProofError::RootMismatch | ProofError::OldRootMismatch => TKM_STATUS_PROOF_MISMATCH,
            _ => TKM_STATUS_INVALID_ARGUMENT,
        }
    }
}

/// A static, NUL-terminated English description of `status`; never NULL. Any integer is
/// accepted: values that are not a `tkm_status` give `"unknown status"`. The string must not
/// be freed.
#[no_mangle]
pub extern "C" fn tkm_status_str(status: u32) -> *const c_char {
    match tkm_status::from_u32(status) {
        Some(s) => s.as_cstr().as_ptr(),
        None => c"unknown status".as_ptr(),
    }
}
