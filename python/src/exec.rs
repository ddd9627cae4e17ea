//! The one place where the Python layer's execution settings become `tkm_exec_options`, and
//! where the GIL is released around a kernel call.
//!
//! Device plumbing: the Python layer finds the caller's current CUDA stream
//! (`tokenmath/_device.py`) and passes it here as an integer; `tensor::import` hands it to
//! the producer's `__dlpack__(stream=...)`, so the producer orders its pending work before
//! that stream, and `options` sets `tkm_exec_options.cuda_stream` from it, so that the
//! `tkm_dl_*` calls on `kDLCUDA` tensors run on the caller's stream. (The C ABI's CPU entry
//! points ignore streams; its CUDA path answers `TKM_STATUS_CUDA_UNAVAILABLE` until the
//! launchers are built.)

use tokenmath::tkm_exec_options;

/// The settings of one call.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Settings {
    /// `tkm_exec_options.threads` (0 or 1 = the calling thread).
    pub(crate) threads: u32,
    /// The caller's CUDA stream as an integer (`cudaStream_t`), or `None` for CPU tensors.
    pub(crate) stream: Option<usize>,
}

impl Settings {
    pub(crate) fn new(threads: u32, stream: Option<usize>) -> Settings {
        Settings { threads, stream }
    }

    /// The `tkm_exec_options` of these settings (struct_size set by `Default`, as
    /// `tkm_exec_options_init` would).
    pub(crate) fn options(&self) -> tkm_exec_options {
        // A stream is a `cudaStream_t` handle carried as an integer (DLPack's 1 is
        // `CU_STREAM_LEGACY`, the legacy default stream).
        let cuda_stream = self.stream.map_or(core::ptr::null_mut(), |s| s as *mut core::ffi::c_void);
        tkm_exec_options { threads: self.threads, cuda_stream, ..tkm_exec_options::default() }
    }
}

/// Runs `f` with the GIL released (other Python threads run meanwhile). `f` must not touch
/// Python objects: it receives raw pointers into tensors that the caller keeps alive (the
/// imported DLPack tensors live on the caller's stack until the call returns).
pub(crate) fn nogil<R: Send>(py: pyo3::Python<'_>, f: impl FnOnce() -> R) -> R {
    struct AssertSend<F>(F);
    // SAFETY: the closures passed here capture raw pointers to tensor data owned by DLPack
    // managed tensors that outlive the call, and plain values; they call only the C ABI,
    // which is thread-safe (rule 7 of tokenmath.h) and touches no Python state.
    unsafe impl<F> Send for AssertSend<F> {}
    impl<F: FnOnce() -> R, R> AssertSend<F> {
        fn run(self) -> R {
            (self.0)()
        }
    }
    let f = AssertSend(f);
    py.detach(move || f.run())
}
