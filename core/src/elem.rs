//! Element types: what logits may be stored as, and what gradients may be written as.
//!
//! `bf16` and `f16` convert to `f32` exactly on load; all arithmetic and every accumulator
//! is `f32`. Gradients are computed in `f32` and rounded once (round to nearest, ties to
//! even, as `half` does) when stored as `bf16`/`f16`.

use half::{bf16, f16};

/// The storage type of a tensor, as a runtime value (for dispatch and for the C ABI).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE binary32.
    F32,
    /// bfloat16 (`half::bf16`).
    BF16,
    /// IEEE binary16 (`half::f16`).
    F16,
}

impl DType {
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::BF16 | DType::F16 => 2,
        }
    }

    /// The lowercase name (`"f32"`, `"bf16"`, `"f16"`).
    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::BF16 => "bf16",
            DType::F16 => "f16",
        }
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::bf16 {}
    impl Sealed for half::f16 {}
}

/// A type logits can be stored as: `f32`, `bf16` or `f16`. Sealed.
pub trait LogitElem: sealed::Sealed + bytemuck::Pod + Send + Sync + 'static {
    /// The runtime tag of this type.
    const DTYPE: DType;
    /// Exact conversion to `f32`.
    fn to_f32(self) -> f32;
}

/// A type gradients can be written as: `f32`, `bf16` or `f16`. Sealed.
pub trait GradElem: sealed::Sealed + bytemuck::Pod + Send + Sync + 'static {
    /// The runtime tag of this type.
    const DTYPE: DType;
    /// Rounds an `f32` to this type (round to nearest, ties to even; NaN stays NaN).
    fn from_f32(v: f32) -> Self;
}

impl LogitElem for f32 {
    const DTYPE: DType = DType::F32;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
}
impl LogitElem for bf16 {
    const DTYPE: DType = DType::BF16;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
}
impl LogitElem for f16 {
    const DTYPE: DType = DType::F16;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
}
impl GradElem for f32 {
    const DTYPE: DType = DType::F32;
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        v
    }
}
impl GradElem for bf16 {
    const DTYPE: DType = DType::BF16;
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        bf16::from_f32(v)
    }
}
impl GradElem for f16 {
    const DTYPE: DType = DType::F16;
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        f16::from_f32(v)
    }
}
