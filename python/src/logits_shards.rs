//! The logits statistics of a sharded vocabulary (tensor-parallel LM heads):
//! `tkm_logits_partial`, `tkm_logits_partial_blocks`, `tkm_logits_merge_shards`,
//! `tkm_logits_merge_block_partials`, `tkm_logits_finalize`, `tkm_logits_bwd_shard`.
//!
//! These are raw-pointer calls of the C ABI (there are no `tkm_dl_*` forms), so the tensors
//! are checked here with the C ABI's DLPack rule (`tensor::Tensor::logits` for the logits
//! and the gradient: any row stride, unit column stride; `tensor::Tensor::cpu` for the rest).
//! A partial tuple `tkm_row_stats` (20 bytes: `m`, `s`, `u`, `x_t`, `flags`) is carried
//! as 20 opaque `uint8` bytes: a partials tensor is `[rows, 20]` (one tuple per row) or
//! `[rows, blocks, 20]` (one per `TKM_LOGITS_BLOCK`-column block), dense, which is what a
//! trainer's all-gather moves.

use core::ffi::c_void;

use pyo3::prelude::*;
use tokenmath::*;

use crate::error::{check, error, Fail, OrRaise};
use crate::exec::{nogil, Settings};
use crate::tensor::{import, import_opt, Kind, Tensor};

/// Bytes of one `tkm_row_stats`.
pub(crate) const ROW_STATS_BYTES: usize = core::mem::size_of::<tkm_row_stats>();
const _: () = assert!(ROW_STATS_BYTES == 20);

/// The per-row arguments as raw pointers (NULL = absent).
struct Rows {
    targets: *const i32,
    row_mask: *const u8,
    temperatures: *const f32,
}

/// An optional `[rows]` vector of `kind` (NULL = absent).
fn opt_vec(py: Python<'_>, t: &Option<Tensor>, kind: Kind, rows: usize, f: &str) -> PyResult<*mut c_void> {
    Ok(match t {
        Some(t) => present(t.vector_of(kind, rows).or_raise(py, f)?),
        None => core::ptr::null_mut(),
    })
}

/// A present but empty array has no data pointer: give the C ABI an aligned, never
/// dereferenced one, so that "present" is not read as "absent" (as `tkm_dl_*` does).
fn present(p: *mut c_void) -> *mut c_void {
    if p.is_null() {
        core::ptr::NonNull::<u64>::dangling().as_ptr() as *mut c_void
    } else {
        p
    }
}

impl Rows {
    fn new(
        py: Python<'_>,
        rows: usize,
        (targets, row_mask, temperatures): (&Option<Tensor>, &Option<Tensor>, &Option<Tensor>),
        f: &str,
    ) -> PyResult<Rows> {
        Ok(Rows {
            targets: opt_vec(py, targets, Kind::I32, rows, f)? as *const i32,
            row_mask: opt_vec(py, row_mask, Kind::Mask, rows, f)? as *const u8,
            temperatures: opt_vec(py, temperatures, Kind::F32, rows, f)? as *const f32,
        })
    }
}

/// A dense partials tensor: `[rows, 20]` (`blocks = None`) or `[rows, blocks, 20]`; returns
/// the tuples' pointer and `(rows, blocks)` (blocks 1 for the 2-D form).
fn partials(py: Python<'_>, t: &Tensor, three_d: bool, f: &str) -> PyResult<(*mut tkm_row_stats, usize, usize)> {
    let c = t.cpu(Kind::Byte, Some(if three_d { 3 } else { 2 })).or_raise(py, f)?;
    let (rows, blocks) = if three_d { (c.shape[0], c.shape[1]) } else { (c.shape[0], 1) };
    if *c.shape.last().unwrap_or(&0) != ROW_STATS_BYTES {
        let want = if three_d { "[rows, blocks, 20]" } else { "[rows, 20]" };
        let detail = format!("`{}` has shape {:?}; expected {want} (uint8 tkm_row_stats)", t.name, c.shape);
        return Err(Fail::new(tkm_status::TKM_STATUS_LENGTH_MISMATCH, detail).raise(py, f));
    }
    Ok((present(c.ptr) as *mut tkm_row_stats, rows, blocks))
}

/// `tkm_logits_partial_blocks_len(cols)`: tuples per row of a shard of `cols` columns.
#[pyfunction]
fn logits_partial_blocks_len(cols: usize) -> usize {
    tkm_logits_partial_blocks_len(cols)
}

/// The partials of a vocabulary shard into `out`: `tkm_logits_partial_blocks` (`blocks`,
/// `out` `[rows, blocks, 20]`) or `tkm_logits_partial` (`out` `[rows, 20]`).
#[pyfunction]
#[pyo3(signature = (logits, col_offset, vocab, targets, row_mask, temperature, temperatures, blocks, out, threads))]
#[allow(clippy::too_many_arguments)]
fn logits_partial(
    py: Python<'_>,
    logits: &Bound<'_, PyAny>,
    col_offset: usize,
    vocab: usize,
    targets: Option<&Bound<'_, PyAny>>,
    row_mask: Option<&Bound<'_, PyAny>>,
    temperature: f32,
    temperatures: Option<&Bound<'_, PyAny>>,
    blocks: bool,
    out: &Bound<'_, PyAny>,
    threads: u32,
) -> PyResult<()> {
    let f = if blocks { "tkm_logits_partial_blocks" } else { "tkm_logits_partial" };
    let x = import(logits, "logits", None)?;
    let (tg, rm, ts) = (
        import_opt(targets, "targets", None)?,
        import_opt(row_mask, "row_mask", None)?,
        import_opt(temperatures, "temperatures", None)?,
    );
    let o = import(out, "out", None)?;
    let (xp, rows, cols, stride, dtype) = x.logits().or_raise(py, f)?;
    let r = Rows::new(py, rows, (&tg, &rm, &ts), f)?;
    let (op, orows, ob) = partials(py, &o, blocks, f)?;
    let want_b = if blocks { tkm_logits_partial_blocks_len(cols) } else { 1 };
    if (orows, ob) != (rows, want_b) {
        let detail = format!("`out` holds [{orows}, {ob}] tuples; expected [{rows}, {want_b}]");
        return Err(error(py, tkm_status::TKM_STATUS_LENGTH_MISMATCH, f, Some(detail)));
    }
    let opts = Settings::new(threads, None).options();
    let (xp, op) = (xp as *const c_void, op);
    // SAFETY: every pointer comes from a validated, live tensor of the stated shape.
    let st = nogil(py, || unsafe {
        let call = if blocks { tkm_logits_partial_blocks } else { tkm_logits_partial };
        call(
            &opts,
            dtype,
            xp,
            rows,
            cols,
            stride,
            col_offset,
            vocab,
            r.targets,
            r.row_mask,
            temperature,
            r.temperatures,
            op,
        )
    });
    check(py, st, f)
}

/// Merges the shards' partials in list order into `out` (`[rows, 20]`):
/// `tkm_logits_merge_block_partials` (`blocks`: each part `[rows, blocks_k, 20]`) or
/// `tkm_logits_merge_shards` (each part `[rows, 20]`).
#[pyfunction]
fn logits_merge(py: Python<'_>, parts: Vec<Bound<'_, PyAny>>, blocks: bool, out: &Bound<'_, PyAny>) -> PyResult<()> {
    let f = if blocks { "tkm_logits_merge_block_partials" } else { "tkm_logits_merge_shards" };
    let imported = parts.iter().map(|p| import(p, "parts", None)).collect::<PyResult<Vec<_>>>()?;
    let o = import(out, "out", None)?;
    let (op, rows, _) = partials(py, &o, false, f)?;
    let mut ptrs = Vec::with_capacity(imported.len());
    let mut counts = Vec::with_capacity(imported.len());
    for (k, p) in imported.iter().enumerate() {
        let (pp, prow, pb) = partials(py, p, blocks, f)?;
        if prow != rows {
            let detail = format!("`parts[{k}]` has {prow} rows; `out` has {rows}");
            return Err(error(py, tkm_status::TKM_STATUS_LENGTH_MISMATCH, f, Some(detail)));
        }
        ptrs.push(pp as *const tkm_row_stats);
        counts.push(pb);
    }
    let (pp, cp, n) = (ptrs.as_ptr(), counts.as_ptr(), ptrs.len());
    // SAFETY: `ptrs[k]` points to `rows * counts[k]` validated tuples alive until return.
    let st = nogil(py, || unsafe {
        if blocks {
            tkm_logits_merge_block_partials(pp, cp, n, rows, op)
        } else {
            tkm_logits_merge_shards(pp, n, rows, op)
        }
    });
    check(py, st, f)
}

/// `tkm_logits_finalize`: merged partials `[rows, 20]` → the forward's `[rows]` float32
/// outputs; returns the non-finite row count.
#[pyfunction]
#[pyo3(signature = (stats, targets, row_mask, lse, entropy, logp, max, log_sum))]
#[allow(clippy::too_many_arguments)]
fn logits_finalize(
    py: Python<'_>,
    stats: &Bound<'_, PyAny>,
    targets: Option<&Bound<'_, PyAny>>,
    row_mask: Option<&Bound<'_, PyAny>>,
    lse: &Bound<'_, PyAny>,
    entropy: &Bound<'_, PyAny>,
    logp: Option<&Bound<'_, PyAny>>,
    max: &Bound<'_, PyAny>,
    log_sum: &Bound<'_, PyAny>,
) -> PyResult<usize> {
    const F: &str = "tkm_logits_finalize";
    let s = import(stats, "stats", None)?;
    let (tg, rm) = (import_opt(targets, "targets", None)?, import_opt(row_mask, "row_mask", None)?);
    let (sp, rows, _) = partials(py, &s, false, F)?;
    let r = Rows::new(py, rows, (&tg, &rm, &None), F)?;
    let outs = [
        Some(import(lse, "lse", None)?),
        Some(import(entropy, "entropy", None)?),
        import_opt(logp, "logp", None)?,
        Some(import(max, "max", None)?),
        Some(import(log_sum, "log_sum", None)?),
    ];
    let mut p = [core::ptr::null_mut::<f32>(); 5];
    for (dst, o) in p.iter_mut().zip(&outs) {
        *dst = opt_vec(py, o, Kind::F32, rows, F)? as *mut f32;
    }
    let mut nonfinite = 0usize;
    let nf = &mut nonfinite as *mut usize;
    // SAFETY: as in `logits_partial`.
    let st = nogil(py, || unsafe {
        tkm_logits_finalize(sp as *const tkm_row_stats, rows, r.targets, r.row_mask, p[0], p[1], p[2], p[3], p[4], nf)
    });
    check(py, st, F)?;
    Ok(nonfinite)
}

/// `tkm_logits_bwd_shard`: the gradient of a shard's columns, given the full-vocabulary
/// statistics, into `dx` (a `[rows, cols]` float32/bfloat16/float16 matrix).
#[pyfunction]
#[pyo3(signature = (logits, col_offset, vocab, targets, row_mask, temperature, temperatures, max, log_sum, entropy, g_logp, g_entropy, g_lse, dx, threads))]
#[allow(clippy::too_many_arguments)]
fn logits_bwd_shard(
    py: Python<'_>,
    logits: &Bound<'_, PyAny>,
    col_offset: usize,
    vocab: usize,
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
    dx: &Bound<'_, PyAny>,
    threads: u32,
) -> PyResult<()> {
    const F: &str = "tkm_logits_bwd_shard";
    let x = import(logits, "logits", None)?;
    let (tg, rm, ts) = (
        import_opt(targets, "targets", None)?,
        import_opt(row_mask, "row_mask", None)?,
        import_opt(temperatures, "temperatures", None)?,
    );
    let saved = [
        Some(import(max, "max", None)?),
        Some(import(log_sum, "log_sum", None)?),
        Some(import(entropy, "entropy", None)?),
    ];
    let up = [
        import_opt(g_logp, "g_logp", None)?,
        import_opt(g_entropy, "g_entropy", None)?,
        import_opt(g_lse, "g_lse", None)?,
    ];
    let d = import(dx, "dx", None)?;
    d.writable().map_err(|e| e.raise(py, F))?;
    let (xp, rows, cols, stride, dtype) = x.logits().or_raise(py, F)?;
    let r = Rows::new(py, rows, (&tg, &rm, &ts), F)?;
    let mut sp = [core::ptr::null::<f32>(); 6];
    for (dst, t) in sp.iter_mut().zip(saved.iter().chain(&up)) {
        *dst = opt_vec(py, t, Kind::F32, rows, F)? as *const f32;
    }
    let (dp, drows, dcols, dstride, gdtype) = d.logits().or_raise(py, F)?;
    if (drows, dcols) != (rows, cols) {
        let detail = format!("`dx` has shape [{drows}, {dcols}]; expected [{rows}, {cols}]");
        return Err(error(py, tkm_status::TKM_STATUS_LENGTH_MISMATCH, F, Some(detail)));
    }
    let opts = Settings::new(threads, None).options();
    let xp = xp as *const c_void;
    // SAFETY: as in `logits_partial`.
    let st = nogil(py, || unsafe {
        tkm_logits_bwd_shard(
            &opts,
            dtype,
            xp,
            rows,
            cols,
            stride,
            col_offset,
            vocab,
            r.targets,
            r.row_mask,
            temperature,
            r.temperatures,
            sp[0],
            sp[1],
            sp[2],
            sp[3],
            sp[4],
            sp[5],
            gdtype,
            dp,
            dstride,
        )
    });
    check(py, st, F)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(logits_partial_blocks_len, m)?)?;
    m.add_function(wrap_pyfunction!(logits_partial, m)?)?;
    m.add_function(wrap_pyfunction!(logits_merge, m)?)?;
    m.add_function(wrap_pyfunction!(logits_finalize, m)?)?;
    m.add_function(wrap_pyfunction!(logits_bwd_shard, m)?)?;
    m.add("LOGITS_BLOCK", TKM_LOGITS_BLOCK)?;
    m.add("ROW_STATS_BYTES", ROW_STATS_BYTES)?;
    Ok(())
}
