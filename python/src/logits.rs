//! The logits statistics: `tkm_dl_logits_fwd`, `tkm_dl_logits_bwd`,
//! `tkm_dl_logits_bwd_inplace`, and forward + in-place backward in one native call.
//!
//! Every tensor goes to the C ABI as the producer's `DLTensor`: the C ABI validates device,
//! dtype, shape and strides itself (rule 11 of `tokenmath.h`), so these wrappers add nothing
//! but the import, the read-only check of the buffer written in place, and the GIL release.

use pyo3::prelude::*;
use tokenmath::{tkm_dl_logits_bwd, tkm_dl_logits_bwd_inplace, tkm_dl_logits_fwd, DLTensor};

use crate::error::check;
use crate::exec::{nogil, Settings};
use crate::tensor::{import, import_opt, raw_opt, Tensor};

/// The per-row inputs shared by the forward and the backward.
struct RowInputs {
    logits: Tensor,
    targets: Option<Tensor>,
    row_mask: Option<Tensor>,
    temperature: f32,
    temperatures: Option<Tensor>,
}

impl RowInputs {
    fn import(
        logits: &Bound<'_, PyAny>,
        targets: Option<&Bound<'_, PyAny>>,
        row_mask: Option<&Bound<'_, PyAny>>,
        temperature: f32,
        temperatures: Option<&Bound<'_, PyAny>>,
        s: Settings,
    ) -> PyResult<RowInputs> {
        Ok(RowInputs {
            logits: import(logits, "logits", s.stream)?,
            targets: import_opt(targets, "targets", s.stream)?,
            row_mask: import_opt(row_mask, "row_mask", s.stream)?,
            temperature,
            temperatures: import_opt(temperatures, "temperatures", s.stream)?,
        })
    }
}

/// Raw pointers of the forward's outputs.
struct FwdOut {
    lse: *const DLTensor,
    entropy: *const DLTensor,
    logp: *const DLTensor,
    max: *const DLTensor,
    log_sum: *const DLTensor,
}

/// Raw pointers of the saved statistics and upstream gradients of the backward.
struct BwdIn {
    max: *const DLTensor,
    log_sum: *const DLTensor,
    entropy: *const DLTensor,
    g_logp: *const DLTensor,
    g_entropy: *const DLTensor,
    g_lse: *const DLTensor,
}

/// `tkm_dl_logits_fwd`; returns the number of non-finite rows.
fn fwd(py: Python<'_>, s: Settings, x: &RowInputs, o: FwdOut) -> PyResult<usize> {
    let opts = s.options();
    let (lg, tg, rm, t, ts) =
        (x.logits.raw(), raw_opt(&x.targets), raw_opt(&x.row_mask), x.temperature, raw_opt(&x.temperatures));
    let mut nonfinite = 0usize;
    let nf = &mut nonfinite as *mut usize;
    // SAFETY: every pointer is an imported DLTensor alive until this function returns.
    let st = nogil(py, || unsafe {
        tkm_dl_logits_fwd(&opts, lg, tg, rm, t, ts, o.lse, o.entropy, o.logp, o.max, o.log_sum, nf)
    });
    check(py, st, "tkm_dl_logits_fwd")?;
    Ok(nonfinite)
}

/// `tkm_dl_logits_bwd_inplace` (`dx` NULL) or `tkm_dl_logits_bwd`.
fn bwd(py: Python<'_>, s: Settings, x: &RowInputs, b: BwdIn, dx: Option<&Tensor>) -> PyResult<()> {
    let opts = s.options();
    let (lg, tg, rm, t, ts) =
        (x.logits.raw(), raw_opt(&x.targets), raw_opt(&x.row_mask), x.temperature, raw_opt(&x.temperatures));
    let (st, function) = match dx {
        Some(dx) => {
            let d = dx.raw();
            // SAFETY: as in `fwd`.
            let st = nogil(py, || unsafe {
                tkm_dl_logits_bwd(
                    &opts,
                    lg,
                    tg,
                    rm,
                    t,
                    ts,
                    b.max,
                    b.log_sum,
                    b.entropy,
                    b.g_logp,
                    b.g_entropy,
                    b.g_lse,
                    d,
                )
            });
            (st, "tkm_dl_logits_bwd")
        }
        None => {
            x.logits.writable().map_err(|f| f.raise(py, "tkm_dl_logits_bwd_inplace"))?;
            // SAFETY: as in `fwd`.
            let st = nogil(py, || unsafe {
                tkm_dl_logits_bwd_inplace(
                    &opts,
                    lg,
                    tg,
                    rm,
                    t,
                    ts,
                    b.max,
                    b.log_sum,
                    b.entropy,
                    b.g_logp,
                    b.g_entropy,
                    b.g_lse,
                )
            });
            (st, "tkm_dl_logits_bwd_inplace")
        }
    };
    check(py, st, function)
}

/// Forward: writes `lse`, `entropy` (required) and `logp`, `max`, `log_sum` (optional)
/// `[rows]` float32 tensors; returns the count of rows with a NaN/+inf logit.
#[pyfunction]
#[pyo3(signature = (logits, targets, row_mask, temperature, temperatures, lse, entropy, logp, max, log_sum, threads, stream))]
#[allow(clippy::too_many_arguments)]
fn logits_fwd(
    py: Python<'_>,
    logits: &Bound<'_, PyAny>,
    targets: Option<&Bound<'_, PyAny>>,
    row_mask: Option<&Bound<'_, PyAny>>,
    temperature: f32,
    temperatures: Option<&Bound<'_, PyAny>>,
    lse: &Bound<'_, PyAny>,
    entropy: &Bound<'_, PyAny>,
    logp: Option<&Bound<'_, PyAny>>,
    max: Option<&Bound<'_, PyAny>>,
    log_sum: Option<&Bound<'_, PyAny>>,
    threads: u32,
    stream: Option<usize>,
) -> PyResult<usize> {
    let s = Settings::new(threads, stream);
    let x = RowInputs::import(logits, targets, row_mask, temperature, temperatures, s)?;
    let lse = import(lse, "lse", stream)?;
    let entropy = import(entropy, "entropy", stream)?;
    let logp = import_opt(logp, "logp", stream)?;
    let max = import_opt(max, "max", stream)?;
    let log_sum = import_opt(log_sum, "log_sum", stream)?;
    let o = FwdOut {
        lse: lse.raw(),
        entropy: entropy.raw(),
        logp: raw_opt(&logp),
        max: raw_opt(&max),
        log_sum: raw_opt(&log_sum),
    };
    fwd(py, s, &x, o)
}

/// Backward into `dx` (`Some`) or over the logits (`dx = None`).
#[pyfunction]
#[pyo3(signature = (logits, targets, row_mask, temperature, temperatures, max, log_sum, entropy, g_logp, g_entropy, g_lse, dx, threads, stream))]
#[allow(clippy::too_many_arguments)]
fn logits_bwd(
    py: Python<'_>,
    logits: &Bound<'_, PyAny>,
    targets: Option<&Bound<'_, PyAny>>,
    row_mask: Option<&Bound<'_, PyAny>>,
    temperature: f32,
    temperatures: Option<&Bound<'_, PyAny>>,
    max: &Bound<'_, PyAny>,
    log_sum: &Bound<'_, PyAny>,
    entropy: &Bound<'_, PyAny>,
    g_logp: Option<&Bound<'_, PyAny>>,
    g_entropy: Option<&Bound<'_, PyAny>>,
    g_lse: Option<&Bound<'_, PyAny>>,
    dx: Option<&Bound<'_, PyAny>>,
    threads: u32,
    stream: Option<usize>,
) -> PyResult<()> {
    let s = Settings::new(threads, stream);
    let x = RowInputs::import(logits, targets, row_mask, temperature, temperatures, s)?;
    let max = import(max, "max", stream)?;
    let log_sum = import(log_sum, "log_sum", stream)?;
    let entropy = import(entropy, "entropy", stream)?;
    let g_logp = import_opt(g_logp, "g_logp", stream)?;
    let g_entropy = import_opt(g_entropy, "g_entropy", stream)?;
    let g_lse = import_opt(g_lse, "g_lse", stream)?;
    let dx = import_opt(dx, "dx", stream)?;
    let b = BwdIn {
        max: max.raw(),
        log_sum: log_sum.raw(),
        entropy: entropy.raw(),
        g_logp: raw_opt(&g_logp),
        g_entropy: raw_opt(&g_entropy),
        g_lse: raw_opt(&g_lse),
    };
    bwd(py, s, &x, b, dx.as_ref())
}

/// Forward, then the backward over the logits with the given upstream gradients (the C ABI
/// has no fused CPU call: this is `tkm_dl_logits_fwd` then `tkm_dl_logits_bwd_inplace` on the
/// same tensors, one import). The backward is validated by the C ABI before it writes, so a
/// failing call leaves the logits untouched.
#[pyfunction]
#[pyo3(signature = (logits, targets, row_mask, temperature, temperatures, lse, entropy, logp, max, log_sum, g_logp, g_entropy, g_lse, threads, stream))]
#[allow(clippy::too_many_arguments)]
fn logits_fwd_bwd_inplace(
    py: Python<'_>,
    logits: &Bound<'_, PyAny>,
    targets: Option<&Bound<'_, PyAny>>,
    row_mask: Option<&Bound<'_, PyAny>>,
    temperature: f32,
    temperatures: Option<&Bound<'_, PyAny>>,
    lse: &Bound<'_, PyAny>,
    entropy: &Bound<'_, PyAny>,
    logp: Option<&Bound<'_, PyAny>>,
    max: &Bound<'_, PyAny>,
    log_sum: &Bound<'_, PyAny>,
    g_logp: Option<&Bound<'_, PyAny>>,
    g_entropy: Option<&Bound<'_, PyAny>>,
    g_lse: Option<&Bound<'_, PyAny>>,
    threads: u32,
    stream: Option<usize>,
) -> PyResult<usize> {
    let s = Settings::new(threads, stream);
    let x = RowInputs::import(logits, targets, row_mask, temperature, temperatures, s)?;
    x.logits.writable().map_err(|f| f.raise(py, "tkm_dl_logits_bwd_inplace"))?;
    let lse = import(lse, "lse", stream)?;
    let entropy = import(entropy, "entropy", stream)?;
    let logp = import_opt(logp, "logp", stream)?;
    let max = import(max, "max", stream)?;
    let log_sum = import(log_sum, "log_sum", stream)?;
    let g_logp = import_opt(g_logp, "g_logp", stream)?;
    let g_entropy = import_opt(g_entropy, "g_entropy", stream)?;
    let g_lse = import_opt(g_lse, "g_lse", stream)?;
    let o =
        FwdOut { lse: lse.raw(), entropy: entropy.raw(), logp: raw_opt(&logp), max: max.raw(), log_sum: log_sum.raw() };
    let nonfinite = fwd(py, s, &x, o)?;
    let b = BwdIn {
        max: max.raw(),
        log_sum: log_sum.raw(),
        entropy: entropy.raw(),
        g_logp: raw_opt(&g_logp),
        g_entropy: raw_opt(&g_entropy),
        g_lse: raw_opt(&g_lse),
    };
    bwd(py, s, &x, b, None)?;
    Ok(nonfinite)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(logits_fwd, m)?)?;
    m.add_function(wrap_pyfunction!(logits_bwd, m)?)?;
    m.add_function(wrap_pyfunction!(logits_fwd_bwd_inplace, m)?)?;
    Ok(())
}
