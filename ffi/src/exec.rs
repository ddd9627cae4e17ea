//! `tkm_exec_options`: backend and thread count of the kernel calls.

use core::ffi::c_void;

use tokenmath_core::{Backend, Exec};

use crate::status::*;
use crate::util::{init_options, options, read_options, Res};

/// Pick the fastest backend this CPU supports (the default).
pub const TKM_BACKEND_AUTO: u32 = 0;
/// The portable backend (plain Rust, runs everywhere).
pub const TKM_BACKEND_PORTABLE: u32 = 1;
/// The x86-64 AVX2 + FMA + F16C backend (`TKM_STATUS_BACKEND_UNAVAILABLE` where the CPU or
/// the target lacks it).
pub const TKM_BACKEND_AVX2_FMA: u32 = 2;
/// The x86-64 AVX-512 backend (F, BW, DQ, VL, on top of AVX2 + FMA + F16C; its own code in
/// the logits statistics, the policy step, TW-GRPO's weights and the cDPO scores, the AVX2
/// code elsewhere; `TKM_STATUS_BACKEND_UNAVAILABLE` where the CPU or the target lacks it).
pub const TKM_BACKEND_AVX512: u32 = 3;

/// GPU calls compute in `core`'s operation order (the default; see `tkm_exec_options.gpu_mode`).
pub const TKM_GPU_MODE_CANONICAL: u32 = 0;
/// GPU calls use the fast kernels: the hardware `exp`, one pass per row; deterministic, not
/// bitwise equal to the CPU (its error bound: `gpu/README.md`, tested on the Rust GPU crate).
/// Accepted and validated today; calls on CUDA memory, which would read it, answer
/// `TKM_STATUS_CUDA_UNAVAILABLE` until the library's CUDA launch path exists.
pub const TKM_GPU_MODE_FAST: u32 = 1;

/// The largest accepted `threads` value.
pub const TKM_MAX_THREADS: u32 = 1024;

/// How a kernel call runs. Every backend and every thread count gives **bitwise identical**
/// results; these options change only the speed. `cuda_stream` and `gpu_mode` are read by
/// calls on CUDA memory only (CPU calls ignore them, but `gpu_mode` must still be valid).
///
/// Initialise with `tkm_exec_options_init` (which sets `struct_size`), then change fields.
/// Passing NULL where a `const tkm_exec_options*` is expected means the defaults.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct tkm_exec_options {
    /// `sizeof(tkm_exec_options)` as the caller compiled it (see the ABI-growth rule).
    pub struct_size: usize,
    /// OS threads to split rows over: 0 or 1 = the calling thread only (default 1), at most
    /// `TKM_MAX_THREADS`. Threads are started per call (no pool), so they pay off only for
    /// calls of a few milliseconds or more.
    pub threads: u32,
    /// `TKM_BACKEND_AUTO` (default), `TKM_BACKEND_PORTABLE`, `TKM_BACKEND_AVX2_FMA` or
    /// `TKM_BACKEND_AVX512`.
    pub backend: u32,
    /// The `CUstream` / `cudaStream_t` on which a call on CUDA memory enqueues its work
    /// (NULL = the legacy default stream). The call returns once the work is enqueued; the
    /// outputs are ready when the stream reaches it. Ignored by CPU calls.
    pub cuda_stream: *mut c_void,
    /// `TKM_GPU_MODE_CANONICAL` (default) or `TKM_GPU_MODE_FAST`, for calls on CUDA memory;
    /// CPU calls always compute the canonical order.
    pub gpu_mode: u32,
}

options!(tkm_exec_options {
    threads: 1,
    backend: TKM_BACKEND_AUTO,
    cuda_stream: core::ptr::null_mut(),
    gpu_mode: TKM_GPU_MODE_CANONICAL,
});

/// Reads and validates the exec options (NULL = defaults).
///
/// # Safety
/// `p` is NULL or a valid options struct of `struct_size` bytes.
pub(crate) unsafe fn exec_from(p: *const tkm_exec_options) -> Res<Exec> {
    let o = read_options(p)?;
    if o.threads > TKM_MAX_THREADS || !matches!(o.gpu_mode, TKM_GPU_MODE_CANONICAL | TKM_GPU_MODE_FAST) {
        return Err(TKM_STATUS_INVALID_ARGUMENT);
    }
    let backend = match o.backend {
        TKM_BACKEND_AUTO => Backend::detect(),
        TKM_BACKEND_PORTABLE => Backend::Portable,
        TKM_BACKEND_AVX2_FMA => x86_backend(TKM_BACKEND_AVX2_FMA)?,
        TKM_BACKEND_AVX512 => x86_backend(TKM_BACKEND_AVX512)?,
        _ => return Err(TKM_STATUS_INVALID_ARGUMENT),
    };
    Ok(Exec::new().with_backend(backend).with_threads(o.threads.max(1) as usize))
}

/// The x86-64 backend with this `TKM_BACKEND_*` constant, if this CPU supports it.
#[cfg(target_arch = "x86_64")]
fn x86_backend(code: u32) -> Res<Backend> {
    let b = if code == TKM_BACKEND_AVX512 { Backend::avx512() } else { Backend::avx2_fma() };
    b.ok_or(TKM_STATUS_BACKEND_UNAVAILABLE)
}

#[cfg(not(target_arch = "x86_64"))]
fn x86_backend(_code: u32) -> Res<Backend> {
    Err(TKM_STATUS_BACKEND_UNAVAILABLE)
}

/// Writes the default exec options (`struct_size = sizeof(tkm_exec_options)`, one thread,
/// `TKM_BACKEND_AUTO`, the legacy default stream, `TKM_GPU_MODE_CANONICAL`) into `*opts`.
///
/// # Safety
/// `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one `tkm_exec_options`.
#[no_mangle]
pub unsafe extern "C" fn tkm_exec_options_init(opts: *mut tkm_exec_options) -> tkm_status {
    init_options(opts)
}
