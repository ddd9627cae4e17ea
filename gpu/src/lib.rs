//! GPU kernels for tokenmath's logits statistics, written in [cubecl] and run by its `wgpu`
//! (Vulkan / Metal / DX12) or `cuda` runtime. No cubecl type appears in this API.
//!
//! The kernels compute what `tokenmath_core::logits` computes, in `core`'s operation
//! order: each row is cut into blocks of `BLOCK` columns; a block's tuple `(m, s, u)` is
//! its maximum, then `Σ exp(z − m)` and `Σ exp(z − m)·(z − m)` accumulated in 8 interleaved
//! lanes folded in halves, with `core`'s own `exp`; tuples are merged in the RFC 6962 split
//! tree and finalized with libm's `logf`. So the GPU's block tuples — and, where the shader
//! compiler does not contract a multiply and an add on its own, every output — are the same
//! bits as the CPU's. The reduction order is fixed and there are no atomics: results do not
//! depend on the launch, the batch composition or the row order.
//!
//! ```no_run
//! use tokenmath_core::logits::{FwdOut, RowInputs};
//! use tokenmath_core::Mat;
//! use tokenmath_gpu::{DeviceKind, Gpu};
//!
//! let gpu = Gpu::open(DeviceKind::Wgpu)?;
//! let logits = vec![0.5f32; 4 * 1000];
//! let x = gpu.upload(Mat::dense(&logits, 4, 1000)?)?;
//! let stats = gpu.stats_fwd(&x, &RowInputs::default())?;
//! let (mut lse, mut entropy) = (vec![0.0; 4], vec![0.0; 4]);
//! gpu.read_stats(&stats, FwdOut { lse: &mut lse, entropy: &mut entropy, logp: None, max: None, log_sum: None })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Runtimes are crate features, at least one required: `wgpu` (default) and `cuda`.
//! [`Gpu::open`] reports [`GpuError::NotBuilt`] for a runtime left out of the build.
//!
//! Limits: a tensor must fit one device buffer ([`Gpu::max_buffer_bytes`]: 128 MiB on
//! lavapipe, a quarter of device memory on CUDA) and have fewer than `2^31 − 2` elements
//! (the kernels index with 32-bit integers).

#[cfg(not(any(feature = "wgpu", feature = "cuda")))]
compile_error!("tokenmath-gpu needs at least one runtime: enable the feature `wgpu` or `cuda`");

#[cfg(feature = "cuda")]
pub mod codegen;
#[cfg(feature = "cuda")]
pub mod cuda_launch;
mod device;
mod error;
mod kernels;
mod logits;

pub use device::{DeviceKind, Gpu};
pub use error::GpuError;
pub use logits::{GpuLogits, GpuMode, GpuStats};
