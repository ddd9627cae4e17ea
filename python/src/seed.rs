//! The seed papers' token selection: TRL's `get_high_entropy_mask` (the 80/20 paper) through
//! `tkm_top_entropy_threshold` then `tkm_top_entropy_mask`, on validated CPU arrays. The
//! output `keep` is the caller-allocated `[rows, cols]` uint8/bool tensor; the C ABI writes
//! it only on success.

use pyo3::prelude::*;
use tokenmath::*;

use crate::error::{check, OrRaise};
use crate::exec::Settings;
use crate::tensor::{import, Kind};

/// The threshold (`None` when no token is valid) and the number of tokens kept.
#[pyfunction]
#[pyo3(signature = (entropy, mask, rho, keep, threads))]
fn top_entropy_mask(
    py: Python<'_>,
    entropy: &Bound<'_, PyAny>,
    mask: &Bound<'_, PyAny>,
    rho: f32,
    keep: &Bound<'_, PyAny>,
    threads: u32,
) -> PyResult<(Option<f32>, u64)> {
    const F: &str = "tkm_top_entropy_threshold";
    let (e, mk, k) = (import(entropy, "entropy", None)?, import(mask, "mask", None)?, import(keep, "keep", None)?);
    let (ep, rows, cols) = e.matrix(Kind::F32).or_raise(py, F)?;
    let mp = mk.matrix_of(Kind::Mask, rows, cols).or_raise(py, F)?;
    let kp = k.matrix_of(Kind::Mask, rows, cols).or_raise(py, "tkm_top_entropy_mask")?;
    k.writable().or_raise(py, "tkm_top_entropy_mask")?;
    let exec = Settings::new(threads, None).options();
    let (mut has, mut theta, mut kept) = (0u32, 0f32, 0u64);
    // SAFETY: the pointers come from validated, live tensors of `rows * cols` elements.
    let st = unsafe {
        tkm_top_entropy_threshold(&exec, mp as *const u8, ep as *const f32, rows, cols, rho, &mut has, &mut theta)
    };
    check(py, st, F)?;
    // SAFETY: as above; `keep` was checked writable.
    let st = unsafe {
        tkm_top_entropy_mask(&exec, mp as *const u8, ep as *const f32, rows, cols, has, theta, kp as *mut u8, &mut kept)
    };
    check(py, st, "tkm_top_entropy_mask")?;
    Ok(((has != 0).then_some(theta), kept))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(top_entropy_mask, m)?)?;
    Ok(())
}
