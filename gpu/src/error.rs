//! The GPU crate's error type.

use std::fmt;

use tokenmath_core::TmError;

/// Everything a GPU call can report. Nothing in this crate panics across its API: panics
/// raised inside cubecl's device threads are caught and returned as [`GpuError::Runtime`].
#[derive(Clone, Debug, PartialEq)]
pub enum GpuError {
    /// The inputs break a rule of the operation (the same checks and messages as `core`).
    Core(TmError),
    /// No usable device or driver for the requested runtime.
    NoDevice(String),
    /// The runtime was not compiled into this build (crate feature `wgpu` or `cuda`).
    NotBuilt(&'static str),
    /// A layout the GPU kernels do not handle (the message says which and why).
    Unsupported(&'static str),
    /// A buffer larger than the device lets one binding be.
    TooLarge {
        /// Bytes requested.
        bytes: u64,
        /// The device's limit per buffer.
        limit: u64,
    },
    /// A tensor created by one `Gpu` was passed to another.
    WrongDevice,
    /// The runtime failed (kernel compilation, launch, allocation or transfer).
    Runtime(String),
}

impl fmt::Display for GpuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuError::Core(e) => write!(f, "{e}"),
            GpuError::NoDevice(why) => write!(f, "no usable GPU: {why}"),
            GpuError::NotBuilt(rt) => {
                write!(f, "this build has no {rt} runtime (rebuild with the crate feature `{rt}`)")
            }
            GpuError::Unsupported(what) => write!(f, "unsupported on the GPU: {what}"),
            GpuError::TooLarge { bytes, limit } => {
                write!(f, "a {bytes}-byte buffer exceeds the device's {limit}-byte limit per buffer; split the batch")
            }
            GpuError::WrongDevice => write!(f, "the tensor belongs to another GPU handle"),
            GpuError::Runtime(msg) => write!(f, "GPU runtime error: {msg}"),
        }
    }
}

impl std::error::Error for GpuError {}

impl From<TmError> for GpuError {
    fn from(e: TmError) -> Self {
        GpuError::Core(e)
    }
}
