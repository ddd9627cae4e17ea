//! UniCTokens: seeded k-means initialisation of new token rows, the frozen-row restore of
//! textual inversion, and the generation-as-perception token diff mask.
//! `tokenmath_core::unictokens` documents the math and the k-means choices.

use tokenmath_core::unictokens as uc;
use tokenmath_core::{bf16, f16};

use crate::status::*;
use crate::util::{guard, inout, input, mul, overlaps, scratch, Out, Res};
use crate::{tkm_dtype, TKM_DTYPE_BF16, TKM_DTYPE_F16, TKM_DTYPE_F32};

/// scikit-learn's `KMeans(max_iter=300)`: the default number of Lloyd steps.
pub const TKM_KMEANS_DEFAULT_ITERS: usize = 300;

/// k-means of the `n` rows of `rows` (`[n, dim]`, row-major): k-means++ seeding from `seed`,
/// then up to `iters` Lloyd steps (stopping when no assignment changes). The `k` centres go to
/// `out` (`[k, dim]`); `*steps`, unless NULL, gets the number of Lloyd steps run. Bit-for-bit
/// deterministic for the same inputs. Allocates `n + 2*k*dim + k` doubles of scratch.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` for `dim == 0`, `k == 0` or `n < k`;
/// `TKM_STATUS_NON_FINITE` for a NaN or infinite input; `TKM_STATUS_SIZE_OVERFLOW`;
/// `TKM_STATUS_OUT_OF_MEMORY`; `TKM_STATUS_NULL_POINTER`.
///
/// # Safety
/// `rows` valid for `n * dim` elements, `out` for `k * dim`, `steps` (unless NULL) for one.
#[no_mangle]
pub unsafe extern "C" fn tkm_kmeans_init(
    rows: *const f32,
    n: usize,
    dim: usize,
    k: usize,
    seed: u64,
    iters: usize,
    out: *mut f32,
    steps: *mut usize,
) -> tkm_status {
    guard(|| {
        if dim == 0 || k == 0 || n < k {
            return Err(TKM_STATUS_INVALID_ARGUMENT);
        }
        let x = input(rows, mul(n, dim)?)?;
        let mut dst = Out::new(out, mul(k, dim)?)?;
        let mut st = Out::optional(steps, 1)?;
        let mut s = scratch::<f64>(uc::kmeans_scratch_len(n, k, dim)?)?;
        let ran = uc::kmeans_init(x, dim, k, seed, iters, &mut dst.buf, &mut s)?;
        dst.commit();
        if let Some(st) = st.as_mut() {
            st.buf[0] = ran;
        }
        if let Some(st) = st {
            st.commit();
        }
        Ok(())
    })
}

unsafe fn restore<T: Copy>(table: *mut T, orig: *const T, n: usize, dim: usize, trainable: &[u8]) -> Res {
    let len = mul(n, dim)?;
    if overlaps(table, len, orig, len) || overlaps(table, len, trainable.as_ptr(), trainable.len()) {
        return Err(TKM_STATUS_OVERLAP);
    }
    let o = input(orig, len)?;
    let t = inout(table, len)?;
    uc::restore_frozen_rows(t, o, dim, trainable)?;
    Ok(())
}

/// Restores the frozen rows of a `[rows, dim]` table in place: row `r` is copied from `orig`
/// where `trainable[r] == 0`, and left as it is otherwise (call after each optimiser step on
/// the input embeddings, the LM head, and its bias with `dim = 1`). `dtype` is
/// `TKM_DTYPE_F32`, `TKM_DTYPE_BF16` or `TKM_DTYPE_F16` (bits copied exactly).
///
/// Errors: `TKM_STATUS_BAD_DTYPE`; `TKM_STATUS_OVERLAP` when `table` overlaps `orig` or
/// `trainable`; `TKM_STATUS_SIZE_OVERFLOW`; `TKM_STATUS_MISALIGNED`; `TKM_STATUS_NULL_POINTER`.
///
/// # Safety
/// `table` valid for reads and writes and `orig` for reads of `rows * dim` elements of
/// `dtype`; `trainable` valid for `rows` bytes.
#[no_mangle]
pub unsafe extern "C" fn tkm_restore_frozen_rows(
    dtype: tkm_dtype,
    table: *mut core::ffi::c_void,
    orig: *const core::ffi::c_void,
    rows: usize,
    dim: usize,
    trainable: *const u8,
) -> tkm_status {
    guard(|| {
        let tr = input(trainable, rows)?;
        match dtype {
            TKM_DTYPE_F32 => restore(table as *mut f32, orig as *const f32, rows, dim, tr),
            TKM_DTYPE_BF16 => restore(table as *mut bf16, orig as *const bf16, rows, dim, tr),
            TKM_DTYPE_F16 => restore(table as *mut f16, orig as *const f16, rows, dim, tr),
            _ => Err(TKM_STATUS_BAD_DTYPE),
        }
    })
}

/// `out[i] = ((ids_a[i] != ids_final[i]) != (ids_b[i] != ids_final[i]))`, for `n` positions:
/// with `a`, `b` the token ids at two generation steps (10 and 35 in UniCTokens), the positions
/// that settled inside that window.
///
/// Errors: `TKM_STATUS_NULL_POINTER`; `TKM_STATUS_MISALIGNED`; `TKM_STATUS_SIZE_OVERFLOW`.
///
/// # Safety
/// `ids_a`, `ids_b`, `ids_final` valid for `n` elements, `out` for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn tkm_token_diff_mask(
    ids_a: *const u32,
    ids_b: *const u32,
    ids_final: *const u32,
    n: usize,
    out: *mut u8,
) -> tkm_status {
    guard(|| {
        let (a, b, f) = (input(ids_a, n)?, input(ids_b, n)?, input(ids_final, n)?);
        let mut dst = Out::new(out, n)?;
        uc::token_diff_mask(a, b, f, &mut dst.buf)?;
        dst.commit();
        Ok(())
    })
}
