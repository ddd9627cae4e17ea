//! # tokenmath-python
//!
//! The native half of the Python package `tokenmath` (the module `tokenmath._native`): thin
//! PyO3 wrappers that run the C ABI's own entry points (`tkm_dl_*` on DLPack tensors, the raw
//! `tkm_*` functions on validated CPU arrays) so that every Python result is exactly the C
//! ABI's, and every non-OK `tkm_status` becomes a `tokenmath.TokenmathError` carrying the
//! code and `tkm_status_str`'s text.
//!
//! What lives where:
//! - `tensor`: importing a Python object through the DLPack protocol (the `dlpark` crate:
//!   `__dlpack__(stream=...)`, capsule consumption, the producer's deleter on drop) and the
//!   checks that turn an imported tensor into a raw CPU pointer for the raw-pointer calls.
//! - `exec`: the one place where the Python layer's execution settings (threads, the CUDA
//!   stream of the caller's framework) become `tkm_exec_options`.
//! - `error`: status → exception.
//! - `logits`, `logits_shards` (the sharded-vocabulary calls), `advantages`, `policy`,
//!   `fingerprint`, `seed` (TRL's high-entropy token mask): one file per family of the C ABI.
//!
//! The Python layer (`python/tokenmath/*.py`) allocates every output with the caller's
//! framework and passes it in as a DLPack tensor: the native functions never allocate
//! tensors, so results are the caller's tensors with no copy.

use pyo3::prelude::*;
use pyo3::types::PyDict;

mod advantages;
mod error;
mod exec;
mod fingerprint;
mod logits;
mod logits_shards;
mod policy;
mod seed;
mod tensor;

/// `tkm_status_str(code)`: the C ABI's description of any status integer.
#[pyfunction]
fn status_str(code: u32) -> String {
    error::status_text(code)
}

/// `tkm_version()`: the version of the linked C ABI.
#[pyfunction]
fn abi_version() -> String {
    // SAFETY: `tkm_version` returns a static NUL-terminated string, never NULL.
    unsafe { std::ffi::CStr::from_ptr(tokenmath::tkm_version()) }.to_string_lossy().into_owned()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(status_str, m)?)?;
    m.add_function(wrap_pyfunction!(abi_version, m)?)?;

    // Every status name → code, from the C ABI's own list (new codes appear here by
    // themselves).
    let statuses = PyDict::new(m.py());
    for s in tokenmath::ALL_STATUSES {
        statuses.set_item(format!("{s:?}"), s as u32)?;
    }
    m.add("STATUSES", statuses)?;

    logits::register(m)?;
    logits_shards::register(m)?;
    advantages::register(m)?;
    policy::register(m)?;
    fingerprint::register(m)?;
    seed::register(m)?;
    Ok(())
}
