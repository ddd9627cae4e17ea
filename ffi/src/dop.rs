//! Diversity or Precision (`tokenmath_core::seed::dop` documents the math): the generalised
//! next-token loss per row and its gradient, fused over the vocabulary, into a separate
//! buffer or over the logits.

use core::ffi::c_void;

use half::{bf16, f16};
use tokenmath_core::seed::dop::{self, DopCfg, DopSlot};
use tokenmath_core::{Mat, MatMut};

use crate::exec::{exec_from, tkm_exec_options};
use crate::logits::{check_dtype, dtype_bytes, opt_count, row_inputs, row_inputs_overlap, with_dtype};
use crate::status::*;
use crate::util::{guard, init_options, inout, input, matrix_len, mul, options, overlaps, read_options, scratch, Out};
use crate::{tkm_dtype, TKM_DTYPE_BF16, TKM_DTYPE_F16, TKM_DTYPE_F32};

/// Options of `tkm_dop_loss_and_grad`. Initialise with `tkm_dop_options_init` (the paper's
/// best, precision-oriented setting: `beta = -0.25`, `lam_top = lam_tail = 0`, `top_k = 100`,
/// `grad_scale = 1`). NULL means the defaults. `beta = 0, lam_top = lam_tail = 0` is
/// cross-entropy.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct tkm_dop_options {
    /// `sizeof(tkm_dop_options)` as the caller compiled it.
    pub struct_size: usize,
    /// `beta` of the positive reward scaling (finite, > -1): < 0 precision, > 0 diversity.
    pub beta: f32,
    /// Weight of the non-target tokens inside the top-k (finite; head preservation: 0.1).
    pub lam_top: f32,
    /// Weight of the non-target tokens outside the top-k (finite; tail suppression: -0.1).
    pub lam_tail: f32,
    /// The gradient is that of `grad_scale * sum_rows loss` (finite; 1/tokens = token mean).
    pub grad_scale: f32,
    /// `k` of the top-k (0 = empty, >= vocab = every column); ties at the k-th largest logit
    /// are taken in ascending column order.
    pub top_k: usize,
}

options!(tkm_dop_options {
    let c = DopCfg::default();
    beta: c.beta,
    lam_top: c.lam_top,
    lam_tail: c.lam_tail,
    grad_scale: c.grad_scale,
    top_k: c.top_k,
});

/// Writes the default DoP options into `*opts`.
///
/// # Safety
/// `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
#[no_mangle]
pub unsafe extern "C" fn tkm_dop_options_init(opts: *mut tkm_dop_options) -> tkm_status {
    init_options(opts)
}

fn cfg_from(o: &tkm_dop_options) -> DopCfg {
    DopCfg { beta: o.beta, lam_top: o.lam_top, lam_tail: o.lam_tail, top_k: o.top_k, grad_scale: o.grad_scale }
}

/// Diversity-or-Precision loss and gradient: per row `r`, `loss[r] = L_r =
/// -sum_a w_a log pi_a` with `w_target = pi_t^(1 - (1 - pi_t)^beta)`, `w_a = lam_top pi_a` inside
/// the top-k and `lam_tail pi_a` outside it, and `dx[r, j] = grad_scale * (pi_j W - w_j) /
/// temperature` (`W = sum_a w_a`), in one reduction pass and one writing pass per row.
///
/// The logits (`dtype`, `[rows, vocab]`, `row_stride`), `targets` (required, `rows` labels; a
/// negative label ignores the row: loss 0, gradient 0), `row_mask` (NULL = keep all; 0 = the
/// row is not read, loss 0, gradient 0) and the temperatures (`temperature` for every row
/// when `temperatures` is NULL) are those of `tkm_logits_fwd`. `opts`: NULL = the defaults.
/// `loss`: required, `rows` floats. `dx`: `[rows, vocab]` with `dx_row_stride`, element type
/// `grad_dtype` (rounded once from f32; the elements between rows are not touched); it must
/// not overlap any input or `loss` (`TKM_STATUS_OVERLAP`; use `tkm_dop_loss_and_grad_inplace`
/// to overwrite the logits). `nonfinite_rows`: NULL or receives the number of rows with a
/// NaN/+inf logit (their loss and gradient are NaN; not an error).
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (`beta <= -1` or not finite, a non-finite `lam_*` or
/// `grad_scale`, NULL `targets`, a vocabulary of 2^32 columns or more), `_EMPTY_VOCAB`,
/// `_BAD_STRIDE`, `_LABEL_OUT_OF_RANGE`, `_INVALID_TEMPERATURE`, `_BAD_DTYPE`, `_OVERLAP`,
/// `_BAD_STRUCT_SIZE`, `_NO_FINITE_LOGIT` (a kept row of all -inf, found during the pass:
/// `loss` and `nonfinite_rows` are not written, `dx` holds unspecified values), and the generic
/// pointer/size/options statuses. Every other error writes nothing.
///
/// # Safety
/// Every non-NULL pointer must be valid for the element counts above.
#[no_mangle]
pub unsafe extern "C" fn tkm_dop_loss_and_grad(
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
    opts: *const tkm_dop_options,
    loss: *mut f32,
    grad_dtype: tkm_dtype,
    dx: *mut c_void,
    dx_row_stride: usize,
    nonfinite_rows: *mut usize,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let cfg = cfg_from(&read_options(opts)?);
        check_dtype(dtype)?;
        check_dtype(grad_dtype)?;
        let len = matrix_len(rows, vocab, row_stride)?;
        let dx_len = matrix_len(rows, vocab, dx_row_stride)?;
        let inputs = row_inputs(rows, targets, row_mask, temperature, temperatures)?;
        opt_count(nonfinite_rows)?;
        let mut out = Out::new(loss, rows)?;
        let (x_bytes, dx_bytes) = (mul(len, dtype_bytes(dtype))?, mul(dx_len, dtype_bytes(grad_dtype))?);
        let dxb = dx as *const u8;
        let clash = overlaps(logits as *const u8, x_bytes, dxb, dx_bytes)
            || overlaps(loss, rows, dxb, dx_bytes)
            || row_inputs_overlap(&inputs, dxb, dx_bytes);
        if clash && !dx.is_null() {
            return Err(TKM_STATUS_OVERLAP);
        }
        let mut work = scratch::<DopSlot>(dop::dop_scratch_len(exec, rows, vocab, cfg.top_k))?;
        let status = with_dtype!(dtype, T, {
            let x = Mat::new(input(logits as *const T, len)?, rows, vocab, row_stride)?;
            with_dtype!(grad_dtype, O, {
                let d = MatMut::new(inout(dx as *mut O, dx_len)?, rows, vocab, dx_row_stride)?;
                Ok(dop::dop_loss_and_grad(exec, x, &inputs, &cfg, &mut work, &mut out.buf, d)?)
            })
        })?;
        out.commit();
        if !nonfinite_rows.is_null() {
            nonfinite_rows.write(status.nonfinite_rows);
        }
        Ok(())
    })
}

/// `tkm_dop_loss_and_grad` with the gradient written over the logits (their dtype and
/// layout; saves an `[rows, vocab]` buffer, as Liger's fused cross-entropy): the same bits.
/// `targets`, `row_mask`, `temperatures` and `loss` must not overlap the logits
/// (`TKM_STATUS_OVERLAP`).
///
/// # Safety
/// Every non-NULL pointer must be valid for the element counts of `tkm_dop_loss_and_grad`.
#[no_mangle]
pub unsafe extern "C" fn tkm_dop_loss_and_grad_inplace(
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
    opts: *const tkm_dop_options,
    loss: *mut f32,
    nonfinite_rows: *mut usize,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let cfg = cfg_from(&read_options(opts)?);
        check_dtype(dtype)?;
        let len = matrix_len(rows, vocab, row_stride)?;
        let inputs = row_inputs(rows, targets, row_mask, temperature, temperatures)?;
        opt_count(nonfinite_rows)?;
        let mut out = Out::new(loss, rows)?;
        let xb = logits as *const u8;
        let x_bytes = mul(len, dtype_bytes(dtype))?;
        if !logits.is_null() && (overlaps(loss, rows, xb, x_bytes) || row_inputs_overlap(&inputs, xb, x_bytes)) {
            return Err(TKM_STATUS_OVERLAP);
        }
        let mut work = scratch::<DopSlot>(dop::dop_scratch_len(exec, rows, vocab, cfg.top_k))?;
        let status = with_dtype!(dtype, T, {
            let x = MatMut::new(inout(logits as *mut T, len)?, rows, vocab, row_stride)?;
            Ok(dop::dop_loss_and_grad_inplace(exec, x, &inputs, &cfg, &mut work, &mut out.buf)?)
        })?;
        out.commit();
        if !nonfinite_rows.is_null() {
            nonfinite_rows.write(status.nonfinite_rows);
        }
        Ok(())
    })
}
