//! The one place where the Python layer's execution settings become `tkm_exec_options`, and
//! where the GIL is released around a kernel call.
//!
//! Device plumbing: the Python layer finds the caller's current CUDA stream
//! (`tokenmath/_device.py`) and passes it here as an integer; `tensor::import` hands it to
//! the producer's `__dlpack__(stream=...)`, so the producer orders its pending work before
//! that stream. The C ABI's CPU entry points ignore streams; when `tkm_exec_options` gains
//! its `cuda_stream` field (issue 13's CUDA launch path), `options` sets it from `stream`
//! and the `tkm_dl_*` calls enqueue on the caller's stream.

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
        tkm_exec_options { threads: self.threads, ..tkm_exec_options::default() }
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
