//! `tkm_status` → `tokenmath.TokenmathError`.
//!
//! The exception class is defined in Python (`tokenmath/_errors.py`, where its attributes
//! are typed and documented); this file builds instances of it. Each carries the status code,
//! the C ABI's text for it, the function that failed and, where the Python layer knows more
//! than the code (which argument had the wrong dtype, say), a detail.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;
use tokenmath::tkm_status;

/// The text of `tkm_status_str(code)`.
pub(crate) fn status_text(code: u32) -> String {
    // SAFETY: `tkm_status_str` returns a static NUL-terminated string for any integer.
    unsafe { std::ffi::CStr::from_ptr(tokenmath::tkm_status_str(code)) }.to_string_lossy().into_owned()
}

static ERROR_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// A `TokenmathError(status, function, detail)`.
pub(crate) fn error(py: Python<'_>, status: tkm_status, function: &str, detail: Option<String>) -> PyErr {
    let ty = match ERROR_TYPE.import(py, "tokenmath._errors", "TokenmathError") {
        Ok(ty) => ty,
        Err(e) => return e,
    };
    match ty.call1((status as u32, function, detail)) {
        Ok(v) => PyErr::from_value(v),
        Err(e) => e,
    }
}

/// `Ok(())` for `TKM_STATUS_OK`, else the exception.
pub(crate) fn check(py: Python<'_>, status: tkm_status, function: &str) -> PyResult<()> {
    if status == tkm_status::TKM_STATUS_OK {
        Ok(())
    } else {
        Err(error(py, status, function, None))
    }
}

/// A status with a detail, raised before the C ABI is called (argument checks of the
/// raw-pointer calls); turned into the exception by [`Fail::raise`].
pub(crate) struct Fail {
    pub(crate) status: tkm_status,
    pub(crate) detail: String,
}

impl Fail {
    pub(crate) fn new(status: tkm_status, detail: impl Into<String>) -> Fail {
        Fail { status, detail: detail.into() }
    }

    pub(crate) fn raise(self, py: Python<'_>, function: &str) -> PyErr {
        error(py, self.status, function, Some(self.detail))
    }
}

/// `Result<T, Fail>` → `PyResult<T>` with the failing C function's name.
pub(crate) trait OrRaise<T> {
    fn or_raise(self, py: Python<'_>, function: &str) -> PyResult<T>;
}

impl<T> OrRaise<T> for Result<T, Fail> {
    fn or_raise(self, py: Python<'_>, function: &str) -> PyResult<T> {
        self.map_err(|f| f.raise(py, function))
    }
}
