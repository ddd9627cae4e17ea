//! The launch path of the GPU C ABI, without cubecl's runtime (feature `cuda`): cubecl is the
//! compiler only (`gpu/README.md`, interop study, option 3).
//!
//! Each kernel variant's CUDA C++ comes from cubecl's CUDA compiler (`crate::codegen`, with
//! the options of cubecl's CUDA runtime); this module compiles it with NVRTC as cubecl's
//! runtime does ([`nvrtc`]) and packs the parameters of a `cuLaunchKernel` of it exactly as
//! cubecl's runtime would ([`abi`]): the buffers' device addresses in declaration order, then
//! the info struct (scalars, then every buffer's length and logical length) passed by value
//! as a `__grid_constant__` parameter, so no device-side metadata buffer is needed.
//!
//! Checked without a GPU: the table of every kernel's parameters against cubecl's compiled
//! kernels (`tests/cuda_launch.rs`, on lavapipe), and every variant compiled by NVRTC for
//! `sm_90` with its PTX entry point and parameter list compared to that table
//! (`gpu/cuda-check/run.sh`, NVIDIA's pip wheels). [`driver`] (context, module cache,
//! `cuLaunchKernel`) is exercised on a GPU only, by `Gpu::launch_path_check` (cubecl's launch
//! and this one on the same buffers, bit for bit; `bench/gpu/run.sh`). Not built yet: the
//! launchers for callers' pointers (pointer validation, the per-row arrays computed on the
//! device), the sources embedded in the library, and the `tkm_cuda_*` entry points.

pub mod abi;
pub mod driver;
pub mod nvrtc;
