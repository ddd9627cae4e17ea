//! Logits statistics: forward, backward (also in place), vocabulary-shard partials, their
//! merges and the finalize step. `tokenmath_core::logits` documents the math.

use core::ffi::c_void;

use half::{bf16, f16};
use tokenmath_core::logits::{self, FwdOut, RowInputs, RowStats, Saved, Shard, Temperature, Upstream};
use tokenmath_core::{Mat, MatMut};

use crate::exec::{exec_from, tkm_exec_options};
use crate::status::*;
use crate::util::{guard, guard_or, inout, input, matrix_len, mul, opt_input, overlaps, read_options, Out, Res};
use crate::{tkm_dtype, TKM_DTYPE_BF16, TKM_DTYPE_F16, TKM_DTYPE_F32};

/// Columns per canonical block: shards whose boundaries are multiples of it reproduce the
/// unsharded forward bitwise (see `tkm_logits_partial_blocks`).
pub const TKM_LOGITS_BLOCK: usize = 2048;
const _: () = assert!(TKM_LOGITS_BLOCK == logits::BLOCK);

/// Partial softmax statistics of one row over a set of columns (a block or a vocabulary
/// shard), in tempered-logit units `z = x / temperature`: `m = max z`, `s = sum exp(z - m)`,
/// `u = sum exp(z - m) (z - m)`, `x_t = z[target]`; `flags` bit 0: the target column was in
/// the set, bit 1: a NaN or +inf logit was seen. 20 bytes of plain data that a
/// tensor-parallel trainer all-gathers as raw bytes; treat the fields as opaque.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct tkm_row_stats {
    /// Maximum tempered logit (`-inf` for an empty set).
    pub m: f32,
    /// `sum exp(z - m)`.
    pub s: f32,
    /// `sum exp(z - m) (z - m)`.
    pub u: f32,
    /// The tempered target logit (valid when `flags & 1`).
    pub x_t: f32,
    /// Bit 0: has target. Bit 1: non-finite logit seen.
    pub flags: u32,
}

const _: () = assert!(core::mem::size_of::<tkm_row_stats>() == core::mem::size_of::<RowStats>());
const _: () = assert!(core::mem::align_of::<tkm_row_stats>() == core::mem::align_of::<RowStats>());

fn as_core(s: &[tkm_row_stats]) -> &[RowStats] {
    bytemuck::cast_slice(s)
}

fn as_core_mut(s: &mut [tkm_row_stats]) -> &mut [RowStats] {
    bytemuck::cast_slice_mut(s)
}

/// Runs `$body` with `$T` bound to the element type of `$dtype`.
macro_rules! with_dtype {
    ($dtype:expr, $T:ident, $body:block) => {
        match $dtype {
            TKM_DTYPE_F32 => {
                type $T = f32;
                $body
            }
            TKM_DTYPE_BF16 => {
                type $T = bf16;
                $body
            }
            TKM_DTYPE_F16 => {
                type $T = f16;
                $body
            }
            _ => Err(TKM_STATUS_BAD_DTYPE),
        }
    };
}
pub(crate) use with_dtype;

/// Checks a dtype code.
pub(crate) fn check_dtype(dtype: tkm_dtype) -> Res {
    with_dtype!(dtype, T, {
        let _ = core::marker::PhantomData::<T>;
        Ok(())
    })
}

/// The size in bytes of one element of a checked dtype.
pub(crate) fn dtype_bytes(dtype: tkm_dtype) -> usize {
    if dtype == TKM_DTYPE_F32 {
        4
    } else {
        2
    }
}

/// Whether a per-row input (targets, row mask, per-row temperatures) overlaps the `n` bytes
/// at `dst`.
pub(crate) fn row_inputs_overlap(inputs: &RowInputs<'_>, dst: *const u8, n: usize) -> bool {
    inputs.targets.is_some_and(|t| overlaps(t.as_ptr(), t.len(), dst, n))
        || inputs.row_mask.is_some_and(|m| overlaps(m.as_ptr(), m.len(), dst, n))
        || matches!(inputs.temperature, Temperature::PerRow(t) if overlaps(t.as_ptr(), t.len(), dst, n))
}

/// The per-row inputs: targets (NULL = none), row mask (NULL = keep all), temperatures
/// (NULL = the scalar `temperature` for every row).
pub(crate) unsafe fn row_inputs<'a>(
    rows: usize,
    targets: *const i32,
    row_mask: *const u8,
    temperature: f32,
    temperatures: *const f32,
) -> Res<RowInputs<'a>> {
    let temperature = match opt_input(temperatures, rows)? {
        Some(t) => Temperature::PerRow(t),
        None => Temperature::Scalar(temperature),
    };
    Ok(RowInputs { targets: opt_input(targets, rows)?, row_mask: opt_input(row_mask, rows)?, temperature })
}

/// The logits and per-row inputs of `tkm_logits_fwd`. Initialise with
/// `tkm_logits_input_init` (which sets `struct_size`, `dtype = TKM_DTYPE_F32`,
/// `temperature = 1` and every pointer and size to NULL / 0), then set the fields. An input
/// struct follows the growth rule of the options structs (rule 8); unlike them it is
/// required (NULL is `TKM_STATUS_NULL_POINTER`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct tkm_logits_input {
    /// `sizeof(tkm_logits_input)` as the caller compiled it.
    pub struct_size: usize,
    /// `TKM_DTYPE_F32`, `_BF16` or `_F16` (bf16/f16 as `uint16_t` bits).
    pub dtype: tkm_dtype,
    /// `[rows, vocab]` logits: element `(r, c)` at `logits[r * row_stride + c]`.
    pub logits: *const c_void,
    /// Number of rows (tokens).
    pub rows: usize,
    /// Vocabulary size (columns per row).
    pub vocab: usize,
    /// Elements between the starts of consecutive rows (`>= vocab`).
    pub row_stride: usize,
    /// NULL = no targets; else `rows` labels, negative = no target for that row (e.g. -100).
    pub targets: *const i32,
    /// NULL = keep every row; else `rows` bytes, 0 = skip the row (its outputs are 0; its
    /// target and temperature are not checked).
    pub row_mask: *const u8,
    /// The temperature of every row when `temperatures` is NULL (finite, > 0, with a finite
    /// `1/temperature`).
    pub temperature: f32,
    /// NULL = `temperature` for every row; else `rows` temperatures.
    pub temperatures: *const f32,
}

impl tkm_logits_input {
    /// Every field at once, for Rust callers (tests, the fuzz targets); `struct_size` is
    /// this build's.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        dtype: tkm_dtype,
        logits: *const c_void,
        rows: usize,
        vocab: usize,
        row_stride: usize,
        targets: *const i32,
        row_mask: *const u8,
        temperature: f32,
        temperatures: *const f32,
    ) -> Self {
        tkm_logits_input {
            dtype,
            logits,
            rows,
            vocab,
            row_stride,
            targets,
            row_mask,
            temperature,
            temperatures,
            ..tkm_logits_input::default()
        }
    }
}

impl Default for tkm_logits_input {
    fn default() -> Self {
        tkm_logits_input {
            struct_size: core::mem::size_of::<tkm_logits_input>(),
            dtype: TKM_DTYPE_F32,
            logits: core::ptr::null(),
            rows: 0,
            vocab: 0,
            row_stride: 0,
            targets: core::ptr::null(),
            row_mask: core::ptr::null(),
            temperature: 1.0,
            temperatures: core::ptr::null(),
        }
    }
}

impl crate::util::Options for tkm_logits_input {
    // No older layout exists: only `sizeof` itself (or a larger, zero-tailed one).
    const FIELD_ENDS: &'static [usize] = &[];
}

/// Writes the defaults into `*input` (`struct_size = sizeof(tkm_logits_input)`,
/// `TKM_DTYPE_F32`, temperature 1, every pointer NULL and every size 0).
///
/// # Safety
/// `input` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one `tkm_logits_input`.
#[no_mangle]
pub unsafe extern "C" fn tkm_logits_input_init(input: *mut tkm_logits_input) -> tkm_status {
    crate::util::init_options(input)
}

/// Validates the optional `size_t*` status output.
pub(crate) fn opt_count(p: *mut usize) -> Res {
    if !p.is_null() && !(p as usize).is_multiple_of(core::mem::align_of::<usize>()) {
        return Err(TKM_STATUS_MISALIGNED);
    }
    Ok(())
}

/// The forward's per-row outputs, staged in scratch.
struct FwdScratch {
    lse: Out<f32>,
    entropy: Out<f32>,
    logp: Option<Out<f32>>,
    max: Option<Out<f32>>,
    log_sum: Option<Out<f32>>,
}

impl FwdScratch {
    fn new(
        rows: usize,
        lse: *mut f32,
        entropy: *mut f32,
        logp: *mut f32,
        max: *mut f32,
        log_sum: *mut f32,
    ) -> Res<FwdScratch> {
        Ok(FwdScratch {
            lse: Out::new(lse, rows)?,
            entropy: Out::new(entropy, rows)?,
            logp: Out::optional(logp, rows)?,
            max: Out::optional(max, rows)?,
            log_sum: Out::optional(log_sum, rows)?,
        })
    }

    fn out(&mut self) -> FwdOut<'_> {
        FwdOut {
            lse: &mut self.lse.buf,
            entropy: &mut self.entropy.buf,
            logp: self.logp.as_mut().map(|o| &mut o.buf[..]),
            max: self.max.as_mut().map(|o| &mut o.buf[..]),
            log_sum: self.log_sum.as_mut().map(|o| &mut o.buf[..]),
        }
    }

    unsafe fn commit(self, nonfinite: usize, nonfinite_rows: *mut usize) {
        self.lse.commit();
        self.entropy.commit();
        if let Some(o) = self.logp {
            o.commit();
        }
        for o in [self.max, self.log_sum].into_iter().flatten() {
            o.commit();
        }
        if !nonfinite_rows.is_null() {
            nonfinite_rows.write(nonfinite);
        }
    }
}

/// Forward: per row, `lse = log sum exp(z)`, `entropy` (nats) and optionally the target
/// log-prob `logp = z[target] - lse`, `max = max z` and `log_sum = log sum exp(z - max)`
/// (save `max`, `log_sum` and `entropy` for the backward), in one pass over the logits
/// described by `*input` (required; see `tkm_logits_input`: the logits, targets, row mask
/// and temperatures).
///
/// * `lse`, `entropy`: required, `rows` floats. `logp` (needs `targets`), `max`,
///   `log_sum`: NULL = not wanted. `nonfinite_rows`: NULL or receives the number of rows
///   with a NaN/+inf logit (their outputs are NaN; this is not an error).
///
/// Errors: `TKM_STATUS_EMPTY_VOCAB`, `_BAD_STRIDE`, `_LABEL_OUT_OF_RANGE`,
/// `_INVALID_TEMPERATURE`, `_NO_FINITE_LOGIT` (a kept row of all -inf), `_INVALID_ARGUMENT`
/// (`logp` without `targets`), `_BAD_STRUCT_SIZE` (`input->struct_size`), and the generic
/// pointer/size/options statuses.
///
/// # Safety
/// `input` must point to a `tkm_logits_input` whose pointers are valid for the element
/// counts it gives; every other non-NULL pointer must be valid for `rows` elements.
#[no_mangle]
pub unsafe extern "C" fn tkm_logits_fwd(
    exec: *const tkm_exec_options,
    input: *const tkm_logits_input,
    lse: *mut f32,
    entropy: *mut f32,
    logp: *mut f32,
    max: *mut f32,
    log_sum: *mut f32,
    nonfinite_rows: *mut usize,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        if input.is_null() {
            return Err(TKM_STATUS_NULL_POINTER);
        }
        let i = read_options(input)?;
        let tkm_logits_input { dtype, logits, rows, vocab, row_stride, .. } = i;
        check_dtype(dtype)?;
        let len = matrix_len(rows, vocab, row_stride)?;
        let inputs = row_inputs(rows, i.targets, i.row_mask, i.temperature, i.temperatures)?;
        opt_count(nonfinite_rows)?;
        let mut out = FwdScratch::new(rows, lse, entropy, logp, max, log_sum)?;
        let status = with_dtype!(dtype, T, {
            let x = Mat::new(self::input(logits as *const T, len)?, rows, vocab, row_stride)?;
            Ok(logits::stats_fwd(exec, x, &inputs, out.out())?)
        })?;
        out.commit(status.nonfinite_rows, nonfinite_rows);
        Ok(())
    })
}

/// Backward: writes `d L / d logits` for
/// `L = sum_rows (g_lse lse + g_logp logp + g_entropy entropy)` into `dx` (`[rows, vocab]`,
/// row stride `dx_row_stride`, element type `grad_dtype`, rounded once from f32; the
/// elements between rows are not touched).
///
/// `logits`, `targets`, `row_mask` and the temperatures must be those of the forward;
/// `max`, `log_sum` and `entropy` (required, `rows` floats) are the forward's outputs (the
/// backward never reads `lse`: its rounding at large `|max|` would swamp `log_sum`). `g_logp`,
/// `g_entropy`, `g_lse`: NULL = zero, else `rows` floats. Rows whose saved statistics are
/// NaN get a NaN gradient row; masked rows get 0.
///
/// `dx` must not overlap any input (`TKM_STATUS_OVERLAP`; use `tkm_logits_bwd_inplace` to
/// overwrite the logits). Nothing is written unless the call succeeds: this kernel has no
/// error that can occur after validation.
///
/// # Safety
/// Every non-NULL pointer must be valid for the element counts above.
#[no_mangle]
pub unsafe extern "C" fn tkm_logits_bwd(
    exec: *const tkm_exec_options,
    dtype: tkm_dtype,
    logits: *const c_void,
    rows: usize,
    vocab: usize,
    row_stride: usize,
    targets: *const i32,
    row_mask: *const u8,
    temperature: f32,
    temperatures: *const f32,
    max: *const f32,
    log_sum: *const f32,
    entropy: *const f32,
    g_logp: *const f32,
    g_entropy: *const f32,
    g_lse: *const f32,
    grad_dtype: tkm_dtype,
    dx: *mut c_void,
    dx_row_stride: usize,
) -> tkm_status {
    guard(|| {
        bwd_shard(
            exec,
            dtype,
            logits,
            rows,
            vocab,
            row_stride,
            Shard { col_offset: 0, vocab },
            (targets, row_mask, temperature, temperatures),
            (max, log_sum, entropy),
            (g_logp, g_entropy, g_lse),
            grad_dtype,
            dx,
            dx_row_stride,
        )
    })
}

/// Backward of a vocabulary shard (tensor-parallel LM heads): `logits` holds global columns
/// `[col_offset, col_offset + cols)` (of a vocabulary of `vocab`) of every row, and `dx`
/// (`[rows, cols]`, row stride `dx_row_stride`) receives those columns of the gradient that
/// `tkm_logits_bwd` would write for the whole vocabulary.
///
/// `max`, `log_sum` and `entropy` are the **full-vocabulary** statistics: the output of
/// `tkm_logits_finalize` on the merged partials of every shard. `targets` are global column
/// ids validated against `vocab`; every row's `g_logp` reaches every column (a shard without
/// the target still gets `-p_j g_logp`), the target column adds `g_logp` itself. The other
/// arguments and policies are those of `tkm_logits_bwd`. The gradient is elementwise, so
/// with the same statistics each shard's `dx` is bitwise the slice of the unsharded one, for
/// any `col_offset` (aligned to `TKM_LOGITS_BLOCK` or not). `cols == 0` writes nothing.
///
/// Errors: those of `tkm_logits_bwd`, and `TKM_STATUS_SHARD_OUT_OF_RANGE` for a shard that
/// does not fit in `vocab` (`TKM_STATUS_EMPTY_VOCAB` for `vocab == 0`).
///
/// # Safety
/// Every non-NULL pointer must be valid for the element counts above.
#[no_mangle]
pub unsafe extern "C" fn tkm_logits_bwd_shard(
    exec: *const tkm_exec_options,
    dtype: tkm_dtype,
    logits: *const c_void,
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_offset: usize,
    vocab: usize,
    targets: *const i32,
    row_mask: *const u8,
    temperature: f32,
    temperatures: *const f32,
    max: *const f32,
    log_sum: *const f32,
    entropy: *const f32,
    g_logp: *const f32,
    g_entropy: *const f32,
    g_lse: *const f32,
    grad_dtype: tkm_dtype,
    dx: *mut c_void,
    dx_row_stride: usize,
) -> tkm_status {
    guard(|| {
        bwd_shard(
            exec,
            dtype,
            logits,
            rows,
            cols,
            row_stride,
            Shard { col_offset, vocab },
            (targets, row_mask, temperature, temperatures),
            (max, log_sum, entropy),
            (g_logp, g_entropy, g_lse),
            grad_dtype,
            dx,
            dx_row_stride,
        )
    })
}

/// The body of `tkm_logits_bwd` and `tkm_logits_bwd_shard` (the former is the shard
/// `[0, vocab)`).
unsafe fn bwd_shard(
    exec: *const tkm_exec_options,
    dtype: tkm_dtype,
    logits: *const c_void,
    rows: usize,
    cols: usize,
    row_stride: usize,
    shard: Shard,
    (targets, row_mask, temperature, temperatures): (*const i32, *const u8, f32, *const f32),
    (max, log_sum, entropy): (*const f32, *const f32, *const f32),
    (g_logp, g_entropy, g_lse): (*const f32, *const f32, *const f32),
    grad_dtype: tkm_dtype,
    dx: *mut c_void,
    dx_row_stride: usize,
) -> Res {
    let exec = exec_from(exec)?;
    check_dtype(dtype)?;
    check_dtype(grad_dtype)?;
    let len = matrix_len(rows, cols, row_stride)?;
    let dx_len = matrix_len(rows, cols, dx_row_stride)?;
    let inputs = row_inputs(rows, targets, row_mask, temperature, temperatures)?;
    let saved = Saved { max: input(max, rows)?, log_sum: input(log_sum, rows)?, entropy: input(entropy, rows)? };
    let up = Upstream {
        g_logp: opt_input(g_logp, rows)?,
        g_entropy: opt_input(g_entropy, rows)?,
        g_lse: opt_input(g_lse, rows)?,
    };
    let x_bytes = mul(len, dtype_bytes(dtype))?;
    let dx_bytes = mul(dx_len, dtype_bytes(grad_dtype))?;
    let dxb = dx as *const u8;
    let clash = overlaps(logits as *const u8, x_bytes, dxb, dx_bytes)
        || [Some(saved.max), Some(saved.log_sum), Some(saved.entropy), up.g_logp, up.g_entropy, up.g_lse]
            .iter()
            .flatten()
            .any(|s| overlaps(s.as_ptr(), s.len(), dxb, dx_bytes))
        || row_inputs_overlap(&inputs, dxb, dx_bytes);
    if clash && !dx.is_null() {
        return Err(TKM_STATUS_OVERLAP);
    }
    with_dtype!(dtype, T, {
        let x = Mat::new(input(logits as *const T, len)?, rows, cols, row_stride)?;
        with_dtype!(grad_dtype, O, {
            let d = MatMut::new(inout(dx as *mut O, dx_len)?, rows, cols, dx_row_stride)?;
            Ok(logits::stats_bwd_shard(exec, x, shard, &inputs, saved, up, d)?)
        })
    })
}

/// Backward written over the logits (saves an `[rows, vocab]` buffer): same as
/// `tkm_logits_bwd` with `dx` = `logits`, in the logits' dtype and layout. The saved and
/// upstream arrays must not overlap the logits (`TKM_STATUS_OVERLAP`).
///
/// # Safety
/// Every non-NULL pointer must be valid for the element counts of `tkm_logits_bwd`.
#[no_mangle]
pub unsafe extern "C" fn tkm_logits_bwd_inplace(
    exec: *const tkm_exec_options,
    dtype: tkm_dtype,
    logits: *mut c_void,
    rows: usize,
    vocab: usize,
    row_stride: usize,
    targets: *const i32,
    row_mask: *const u8,
    temperature: f32,
    temperatures: *const f32,
    max: *const f32,
    log_sum: *const f32,
    entropy: *const f32,
    g_logp: *const f32,
    g_entropy: *const f32,
    g_lse: *const f32,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        check_dtype(dtype)?;
        let len = matrix_len(rows, vocab, row_stride)?;
        let inputs = row_inputs(rows, targets, row_mask, temperature, temperatures)?;
        let saved = Saved { max: input(max, rows)?, log_sum: input(log_sum, rows)?, entropy: input(entropy, rows)? };
        let up = Upstream {
            g_logp: opt_input(g_logp, rows)?,
            g_entropy: opt_input(g_entropy, rows)?,
            g_lse: opt_input(g_lse, rows)?,
        };
        let x_bytes = mul(len, dtype_bytes(dtype))?;
        let xb = logits as *const u8;
        let clash = [Some(saved.max), Some(saved.log_sum), Some(saved.entropy), up.g_logp, up.g_entropy, up.g_lse]
            .iter()
            .flatten()
            .any(|s| overlaps(s.as_ptr(), s.len(), xb, x_bytes))
            || row_inputs_overlap(&inputs, xb, x_bytes);
        if clash && !logits.is_null() {
            return Err(TKM_STATUS_OVERLAP);
        }
        with_dtype!(dtype, T, {
            let x = MatMut::new(inout(logits as *mut T, len)?, rows, vocab, row_stride)?;
            Ok(logits::stats_bwd_inplace(exec, x, &inputs, saved, up)?)
        })
    })
}

/// Partial statistics of a vocabulary shard: `logits` holds global columns
/// `[col_offset, col_offset + cols)` (of a vocabulary of `vocab`) of every row. `targets`
/// are global column ids validated against `vocab`. Writes one `tkm_row_stats` per row to
/// `out` (`rows` entries). Combine shards with `tkm_logits_merge_shards`, finish with
/// `tkm_logits_finalize`.
///
/// # Safety
/// Every non-NULL pointer must be valid for the element counts above.
#[no_mangle]
pub unsafe extern "C" fn tkm_logits_partial(
    exec: *const tkm_exec_options,
    dtype: tkm_dtype,
    logits: *const c_void,
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_offset: usize,
    vocab: usize,
    targets: *const i32,
    row_mask: *const u8,
    temperature: f32,
    temperatures: *const f32,
    out: *mut tkm_row_stats,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        check_dtype(dtype)?;
        let len = matrix_len(rows, cols, row_stride)?;
        let inputs = row_inputs(rows, targets, row_mask, temperature, temperatures)?;
        let mut o = Out::<tkm_row_stats>::new(out, rows)?;
        with_dtype!(dtype, T, {
            let x = Mat::new(input(logits as *const T, len)?, rows, cols, row_stride)?;
            Ok(logits::stats_partial(exec, x, Shard { col_offset, vocab }, &inputs, as_core_mut(&mut o.buf))?)
        })?;
        o.commit();
        Ok(())
    })
}

/// Number of `tkm_row_stats` per row that `tkm_logits_partial_blocks` writes for a shard of
/// `cols` columns: `ceil(cols / TKM_LOGITS_BLOCK)`.
#[no_mangle]
pub extern "C" fn tkm_logits_partial_blocks_len(cols: usize) -> usize {
    guard_or(0, || logits::partial_blocks_len(cols))
}

/// Per-block partial statistics of a vocabulary shard: `out` is `[rows, blocks]` (dense,
/// `blocks = tkm_logits_partial_blocks_len(cols)`) and receives the tuple of every
/// `TKM_LOGITS_BLOCK`-column block. `col_offset` must be a multiple of `TKM_LOGITS_BLOCK`
/// (`TKM_STATUS_INVALID_ARGUMENT`). Merged with `tkm_logits_merge_block_partials`, any
/// such sharding reproduces `tkm_logits_fwd` **bitwise**.
///
/// # Safety
/// Every non-NULL pointer must be valid for the element counts above.
#[no_mangle]
pub unsafe extern "C" fn tkm_logits_partial_blocks(
    exec: *const tkm_exec_options,
    dtype: tkm_dtype,
    logits: *const c_void,
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_offset: usize,
    vocab: usize,
    targets: *const i32,
    row_mask: *const u8,
    temperature: f32,
    temperatures: *const f32,
    out: *mut tkm_row_stats,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        check_dtype(dtype)?;
        let len = matrix_len(rows, cols, row_stride)?;
        let inputs = row_inputs(rows, targets, row_mask, temperature, temperatures)?;
        let blocks = logits::partial_blocks_len(cols);
        let mut o = Out::<tkm_row_stats>::new(out, mul(rows, blocks)?)?;
        with_dtype!(dtype, T, {
            let x = Mat::new(input(logits as *const T, len)?, rows, cols, row_stride)?;
            let dst = MatMut::dense(as_core_mut(&mut o.buf), rows, blocks)?;
            Ok(logits::stats_partial_blocks(exec, x, Shard { col_offset, vocab }, &inputs, dst)?)
        })?;
        o.commit();
        Ok(())
    })
}

/// Merges per-shard partials: `parts[k]` points to shard `k`'s `rows` tuples (shards in
/// column order), `out` receives `rows` merged tuples. `n_parts == 0` gives empty tuples.
/// `TKM_STATUS_DUPLICATE_TARGET` if two shards contain a row's target.
///
/// # Safety
/// `parts` must be valid for `n_parts` pointers, each valid for `rows` tuples; `out` for
/// `rows` tuples.
#[no_mangle]
pub unsafe extern "C" fn tkm_logits_merge_shards(
    parts: *const *const tkm_row_stats,
    n_parts: usize,
    rows: usize,
    out: *mut tkm_row_stats,
) -> tkm_status {
    guard(|| {
        let ptrs = input(parts, n_parts)?;
        let mut slices: Vec<&[RowStats]> = Vec::new();
        slices.try_reserve_exact(n_parts).map_err(|_| TKM_STATUS_OUT_OF_MEMORY)?;
        for &p in ptrs {
            slices.push(as_core(input(p, rows)?));
        }
        let mut o = Out::<tkm_row_stats>::new(out, rows)?;
        logits::merge_shards(&slices, as_core_mut(&mut o.buf))?;
        o.commit();
        Ok(())
    })
}

/// Merges per-block partials of shards: `parts[k]` points to shard `k`'s dense
/// `[rows, blocks[k]]` output of `tkm_logits_partial_blocks` (shards in column order);
/// `out` receives `rows` tuples, bitwise equal to the unsharded forward's. Finish with
/// `tkm_logits_finalize`.
///
/// # Safety
/// `parts` and `blocks` must be valid for `n_parts` entries, `parts[k]` for
/// `rows * blocks[k]` tuples, `out` for `rows` tuples.
#[no_mangle]
pub unsafe extern "C" fn tkm_logits_merge_block_partials(
    parts: *const *const tkm_row_stats,
    blocks: *const usize,
    n_parts: usize,
    rows: usize,
    out: *mut tkm_row_stats,
) -> tkm_status {
    guard(|| {
        let ptrs = input(parts, n_parts)?;
        let counts = input(blocks, n_parts)?;
        let mut mats: Vec<Mat<'_, RowStats>> = Vec::new();
        mats.try_reserve_exact(n_parts).map_err(|_| TKM_STATUS_OUT_OF_MEMORY)?;
        for (&p, &b) in ptrs.iter().zip(counts) {
            let part = as_core(input(p, mul(rows, b)?)?);
            mats.push(Mat::dense(part, rows, b)?);
        }
        let mut o = Out::<tkm_row_stats>::new(out, rows)?;
        logits::merge_block_partials(&mats, as_core_mut(&mut o.buf))?;
        o.commit();
        Ok(())
    })
}

/// Finalizes merged partials (`stats`, `rows` tuples) into the forward's outputs, with the
/// same arguments and policies as `tkm_logits_fwd` (`targets` and `row_mask` must be those
/// given to the partials). A kept row with a target whose tuple lacks it is
/// `TKM_STATUS_MISSING_TARGET`.
///
/// # Safety
/// Every non-NULL pointer must be valid for `rows` elements.
#[no_mangle]
pub unsafe extern "C" fn tkm_logits_finalize(
    stats: *const tkm_row_stats,
    rows: usize,
    targets: *const i32,
    row_mask: *const u8,
    lse: *mut f32,
    entropy: *mut f32,
    logp: *mut f32,
    max: *mut f32,
    log_sum: *mut f32,
    nonfinite_rows: *mut usize,
) -> tkm_status {
    guard(|| {
        let stats = as_core(input(stats, rows)?);
        let inputs = row_inputs(rows, targets, row_mask, 1.0, core::ptr::null())?;
        opt_count(nonfinite_rows)?;
        let mut out = FwdScratch::new(rows, lse, entropy, logp, max, log_sum)?;
        let status = logits::finalize_rows(stats, &inputs, out.out())?;
        out.commit(status.nonfinite_rows, nonfinite_rows);
        Ok(())
    })
}
