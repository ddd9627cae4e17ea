//! DLPack entry points: the logits forward and backward taking `const DLTensor*`
//! (`include/dlpack.h`, DLPack v1.1), beside the raw-pointer ones.
//!
//! Every field of every tensor is validated before anything is read or written:
//! `ndim` (2 for logits/gradients, 1 for per-row vectors), `dtype` (code, bits, lanes == 1),
//! `shape` (non-negative, consistent), `strides` (in elements; NULL = compact row-major;
//! logits and gradients may have any row stride >= the row length but unit column stride;
//! vectors must be contiguous), `byte_offset` (added to `data`, the result must be aligned),
//! and `device`.
//!
//! **Devices.** A call's tensors must all live in CPU memory (`kDLCPU`, or pinned host memory
//! `kDLCUDAHost` / `kDLROCMHost`) or all on one CUDA device (`kDLCUDA`, one `device_id`);
//! a mixture is `TKM_STATUS_DEVICE_MISMATCH` (tokenmath never copies between devices), any
//! other device is `TKM_STATUS_UNSUPPORTED_DEVICE`. The devices are checked first, before the
//! other fields. CPU tensors run the raw-pointer entry points, with the same rules. CUDA
//! tensors go to the CUDA path (on `tkm_exec_options.cuda_stream`, in
//! `tkm_exec_options.gpu_mode`); a library built without it answers
//! `TKM_STATUS_CUDA_UNAVAILABLE` (see `tkm_cuda_available`).

use core::ffi::c_void;

use crate::exec::tkm_exec_options;
use crate::logits::{tkm_logits_bwd, tkm_logits_bwd_inplace, tkm_logits_fwd, tkm_logits_input};
use crate::status::*;
use crate::util::{guard, Res};
use crate::{tkm_dtype, TKM_DTYPE_BF16, TKM_DTYPE_F16, TKM_DTYPE_F32};

/// `DLDevice` of `dlpack.h` (mirror; the header's definition is used by C callers).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DLDevice {
    /// `DLDeviceType` (a C enum, `int`-sized).
    pub device_type: i32,
    /// Device ordinal.
    pub device_id: i32,
}

/// `DLDataType` of `dlpack.h` (mirror).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DLDataType {
    /// `DLDataTypeCode`.
    pub code: u8,
    /// Bits per lane.
    pub bits: u8,
    /// Lanes (vector width); tokenmath accepts only 1.
    pub lanes: u16,
}

/// `DLTensor` of `dlpack.h` (mirror).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DLTensor {
    /// Base pointer (the data start at `data + byte_offset`).
    pub data: *mut c_void,
    /// Where the data live.
    pub device: DLDevice,
    /// Number of dimensions.
    pub ndim: i32,
    /// Element type.
    pub dtype: DLDataType,
    /// `ndim` extents.
    pub shape: *mut i64,
    /// `ndim` strides in elements, or NULL for compact row-major.
    pub strides: *mut i64,
    /// Offset in bytes from `data` to the first element.
    pub byte_offset: u64,
}

#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(core::mem::size_of::<DLDevice>() == 8);
    assert!(core::mem::size_of::<DLDataType>() == 4);
    assert!(core::mem::size_of::<DLTensor>() == 48);
    assert!(core::mem::offset_of!(DLTensor, ndim) == 16);
    assert!(core::mem::offset_of!(DLTensor, dtype) == 20);
    assert!(core::mem::offset_of!(DLTensor, shape) == 24);
    assert!(core::mem::offset_of!(DLTensor, byte_offset) == 40);
};

const KDL_CPU: i32 = 1;
const KDL_CUDA: i32 = 2;
const KDL_CUDA_HOST: i32 = 3;
const KDL_ROCM_HOST: i32 = 11;

const KDL_INT: u8 = 0;
const KDL_UINT: u8 = 1;
const KDL_FLOAT: u8 = 2;
const KDL_BFLOAT: u8 = 4;
const KDL_BOOL: u8 = 6;

/// What a per-row vector must hold.
#[derive(Clone, Copy, PartialEq)]
enum Elem {
    F32,
    I32,
    /// `uint8` or `bool` (8-bit).
    Mask,
}

/// Where the tensors of one call live.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Place {
    /// CPU-addressable memory.
    Host,
    /// Memory of the CUDA device with this ordinal.
    Cuda(i32),
}

/// The one place where all non-NULL `tensors` live: `TKM_STATUS_UNSUPPORTED_DEVICE` for a
/// device tokenmath does not know, `TKM_STATUS_DEVICE_MISMATCH` for a mixture; `Host` when
/// every tensor is NULL (the field checks then report the missing ones).
///
/// # Safety
/// Every non-NULL pointer is a valid `DLTensor`.
unsafe fn place(tensors: &[*const DLTensor]) -> Res<Place> {
    let mut at = None;
    for t in tensors.iter().filter_map(|t| t.as_ref()) {
        let p = match t.device.device_type {
            KDL_CPU | KDL_CUDA_HOST | KDL_ROCM_HOST => Place::Host,
            KDL_CUDA => Place::Cuda(t.device.device_id),
            _ => return Err(TKM_STATUS_UNSUPPORTED_DEVICE),
        };
        if at.is_some_and(|q| q != p) {
            return Err(TKM_STATUS_DEVICE_MISMATCH);
        }
        at = Some(p);
    }
    Ok(at.unwrap_or(Place::Host))
}

/// Runs `host` when every tensor is in CPU memory; the CUDA path otherwise.
///
/// # Safety
/// As [`place`].
unsafe fn on_device(tensors: &[*const DLTensor], host: impl FnOnce() -> Res) -> Res {
    match place(tensors)? {
        Place::Host => host(),
        Place::Cuda(_) => crate::cuda::dl_unavailable(),
    }
}

/// The tensor's fields, validated: device, dtype lanes, shape, strides, data pointer.
struct Checked {
    ptr: *mut c_void,
    shape: [usize; 2],
    strides: [usize; 2],
    code: u8,
    bits: u8,
}

unsafe fn check(t: *const DLTensor, ndim: usize) -> Res<Checked> {
    let t = t.as_ref().ok_or(TKM_STATUS_NULL_POINTER)?;
    if !matches!(t.device.device_type, KDL_CPU | KDL_CUDA_HOST | KDL_ROCM_HOST) {
        return Err(TKM_STATUS_UNSUPPORTED_DEVICE);
    }
    if t.ndim != ndim as i32 {
        return Err(TKM_STATUS_BAD_TENSOR);
    }
    if t.dtype.lanes != 1 {
        return Err(TKM_STATUS_BAD_DTYPE);
    }
    if t.shape.is_null() {
        return Err(TKM_STATUS_BAD_TENSOR);
    }
    if !(t.shape as usize).is_multiple_of(core::mem::align_of::<i64>()) {
        return Err(TKM_STATUS_MISALIGNED);
    }
    let dims = core::slice::from_raw_parts(t.shape, ndim);
    let mut shape = [1usize; 2];
    for (s, &d) in shape.iter_mut().zip(dims) {
        *s = usize::try_from(d).map_err(|_| if d < 0 { TKM_STATUS_BAD_TENSOR } else { TKM_STATUS_SIZE_OVERFLOW })?;
    }
    // Compact row-major strides unless given.
    let mut strides = [1usize; 2];
    if ndim == 2 {
        strides[0] = shape[1];
    }
    if !t.strides.is_null() {
        if !(t.strides as usize).is_multiple_of(core::mem::align_of::<i64>()) {
            return Err(TKM_STATUS_MISALIGNED);
        }
        let given = core::slice::from_raw_parts(t.strides, ndim);
        for (s, &g) in strides.iter_mut().zip(given) {
            *s =
                usize::try_from(g).map_err(|_| if g < 0 { TKM_STATUS_BAD_STRIDE } else { TKM_STATUS_SIZE_OVERFLOW })?;
        }
    }
    let elems = shape[..ndim].iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or(TKM_STATUS_SIZE_OVERFLOW)?;
    let ptr = if elems == 0 {
        core::ptr::null_mut()
    } else {
        if t.data.is_null() {
            return Err(TKM_STATUS_NULL_POINTER);
        }
        let off = usize::try_from(t.byte_offset).map_err(|_| TKM_STATUS_SIZE_OVERFLOW)?;
        (t.data as usize).checked_add(off).ok_or(TKM_STATUS_SIZE_OVERFLOW)?;
        (t.data as *mut u8).wrapping_add(off) as *mut c_void
    };
    Ok(Checked { ptr, shape, strides, code: t.dtype.code, bits: t.dtype.bits })
}

/// A `[rows, cols]` float matrix with unit column stride: `(data, rows, cols, row_stride,
/// dtype)`.
unsafe fn matrix(t: *const DLTensor) -> Res<(*mut c_void, usize, usize, usize, tkm_dtype)> {
    let c = check(t, 2)?;
    let dtype = match (c.code, c.bits) {
        (KDL_FLOAT, 32) => TKM_DTYPE_F32,
        (KDL_BFLOAT, 16) => TKM_DTYPE_BF16,
        (KDL_FLOAT, 16) => TKM_DTYPE_F16,
        _ => return Err(TKM_STATUS_BAD_DTYPE),
    };
    let [rows, cols] = c.shape;
    // The column stride matters only when a row has more than one element; the row stride
    // only when there is more than one row.
    if cols > 1 && c.strides[1] != 1 {
        return Err(TKM_STATUS_BAD_STRIDE);
    }
    let row_stride = if rows > 1 { c.strides[0] } else { cols };
    if row_stride < cols {
        return Err(TKM_STATUS_BAD_STRIDE);
    }
    Ok((c.ptr, rows, cols, row_stride, dtype))
}

/// A contiguous vector of `rows` elements of kind `want`; NULL tensor = `Ok(None)`.
unsafe fn vector(t: *const DLTensor, want: Elem, rows: usize) -> Res<Option<*mut c_void>> {
    if t.is_null() {
        return Ok(None);
    }
    let c = check(t, 1)?;
    let ok = match want {
        Elem::F32 => (c.code, c.bits) == (KDL_FLOAT, 32),
        Elem::I32 => (c.code, c.bits) == (KDL_INT, 32),
        Elem::Mask => matches!((c.code, c.bits), (KDL_UINT, 8) | (KDL_BOOL, 8)),
    };
    if !ok {
        return Err(TKM_STATUS_BAD_DTYPE);
    }
    if c.shape[0] != rows {
        return Err(TKM_STATUS_LENGTH_MISMATCH);
    }
    if rows > 1 && c.strides[0] != 1 {
        return Err(TKM_STATUS_BAD_STRIDE);
    }
    // An empty vector is present but has no data: give the raw call a non-NULL, aligned,
    // never-dereferenced pointer so that "present" is not mistaken for "absent".
    Ok(Some(if rows == 0 { core::ptr::NonNull::<u32>::dangling().as_ptr() as *mut c_void } else { c.ptr }))
}

/// A required vector.
unsafe fn required(t: *const DLTensor, want: Elem, rows: usize) -> Res<*mut c_void> {
    vector(t, want, rows)?.ok_or(TKM_STATUS_NULL_POINTER)
}

/// An optional vector as a raw pointer (NULL = absent).
unsafe fn optional(t: *const DLTensor, want: Elem, rows: usize) -> Res<*mut c_void> {
    Ok(vector(t, want, rows)?.unwrap_or(core::ptr::null_mut()))
}

/// `tkm_logits_fwd` on DLPack tensors: `logits` is a 2-D `[rows, vocab]` float32 / bfloat16 /
/// float16 CPU tensor (any row stride, unit column stride); `targets` (int32), `row_mask`
/// (uint8 or bool), `temperatures` (float32) are NULL or 1-D `[rows]`; `lse`, `entropy`
/// (required) and `logp`, `max`, `log_sum` (NULL = not wanted) are 1-D `[rows]` float32
/// outputs; all
/// vectors contiguous. Other rules as `tkm_logits_fwd`.
///
/// # Safety
/// Every non-NULL tensor must be a valid `DLTensor` whose data are valid for its shape and
/// strides.
#[no_mangle]
pub unsafe extern "C" fn tkm_dl_logits_fwd(
    exec: *const tkm_exec_options,
    logits: *const DLTensor,
    targets: *const DLTensor,
    row_mask: *const DLTensor,
    temperature: f32,
    temperatures: *const DLTensor,
    lse: *const DLTensor,
    entropy: *const DLTensor,
    logp: *const DLTensor,
    max: *const DLTensor,
    log_sum: *const DLTensor,
    nonfinite_rows: *mut usize,
) -> tkm_status {
    guard(|| {
        on_device(&[logits, targets, row_mask, temperatures, lse, entropy, logp, max, log_sum], || {
            let (x, rows, vocab, stride, dtype) = matrix(logits)?;
            let t = optional(targets, Elem::I32, rows)?;
            let m = optional(row_mask, Elem::Mask, rows)?;
            let temps = optional(temperatures, Elem::F32, rows)?;
            let l = required(lse, Elem::F32, rows)?;
            let h = required(entropy, Elem::F32, rows)?;
            let lp = optional(logp, Elem::F32, rows)?;
            let mx = optional(max, Elem::F32, rows)?;
            let ls = optional(log_sum, Elem::F32, rows)?;
            let input = tkm_logits_input {
                dtype,
                logits: x,
                rows,
                vocab,
                row_stride: stride,
                targets: t as *const i32,
                row_mask: m as *const u8,
                temperature,
                temperatures: temps as *const f32,
                ..tkm_logits_input::default()
            };
            match tkm_logits_fwd(
                exec,
                &input,
                l as *mut f32,
                h as *mut f32,
                lp as *mut f32,
                mx as *mut f32,
                ls as *mut f32,
                nonfinite_rows,
            ) {
                TKM_STATUS_OK => Ok(()),
                s => Err(s),
            }
        })
    })
}

/// `tkm_logits_bwd` on DLPack tensors: `dx` is a 2-D float32 / bfloat16 / float16 CPU tensor
/// of the logits' shape (any row stride, unit column stride); `max`, `log_sum`, `entropy`
/// (required: the forward's outputs) and
/// `g_logp`, `g_entropy`, `g_lse` (NULL = zero) are 1-D `[rows]` float32. Other arguments
/// and rules as `tkm_dl_logits_fwd` and `tkm_logits_bwd`.
///
/// # Safety
/// As `tkm_dl_logits_fwd`.
#[no_mangle]
pub unsafe extern "C" fn tkm_dl_logits_bwd(
    exec: *const tkm_exec_options,
    logits: *const DLTensor,
    targets: *const DLTensor,
    row_mask: *const DLTensor,
    temperature: f32,
    temperatures: *const DLTensor,
    max: *const DLTensor,
    log_sum: *const DLTensor,
    entropy: *const DLTensor,
    g_logp: *const DLTensor,
    g_entropy: *const DLTensor,
    g_lse: *const DLTensor,
    dx: *const DLTensor,
) -> tkm_status {
    guard(|| {
        on_device(
            &[logits, targets, row_mask, temperatures, max, log_sum, entropy, g_logp, g_entropy, g_lse, dx],
            || {
                let (x, rows, vocab, stride, dtype) = matrix(logits)?;
                let (d, d_rows, d_cols, d_stride, d_dtype) = matrix(dx)?;
                if (d_rows, d_cols) != (rows, vocab) {
                    return Err(TKM_STATUS_LENGTH_MISMATCH);
                }
                let t = optional(targets, Elem::I32, rows)?;
                let m = optional(row_mask, Elem::Mask, rows)?;
                let temps = optional(temperatures, Elem::F32, rows)?;
                let mx = required(max, Elem::F32, rows)?;
                let ls = required(log_sum, Elem::F32, rows)?;
                let h = required(entropy, Elem::F32, rows)?;
                let gl = optional(g_logp, Elem::F32, rows)?;
                let gh = optional(g_entropy, Elem::F32, rows)?;
                let gz = optional(g_lse, Elem::F32, rows)?;
                match tkm_logits_bwd(
                    exec,
                    dtype,
                    x,
                    rows,
                    vocab,
                    stride,
                    t as *const i32,
                    m as *const u8,
                    temperature,
                    temps as *const f32,
                    mx as *const f32,
                    ls as *const f32,
                    h as *const f32,
                    gl as *const f32,
                    gh as *const f32,
                    gz as *const f32,
                    d_dtype,
                    d,
                    d_stride,
                ) {
                    TKM_STATUS_OK => Ok(()),
                    s => Err(s),
                }
            },
        )
    })
}

/// `tkm_logits_bwd_inplace` on DLPack tensors: the gradient overwrites `logits`. Arguments
/// as `tkm_dl_logits_bwd` without `dx`.
///
/// # Safety
/// As `tkm_dl_logits_fwd`; `logits` must be writable.
#[no_mangle]
pub unsafe extern "C" fn tkm_dl_logits_bwd_inplace(
    exec: *const tkm_exec_options,
    logits: *const DLTensor,
    targets: *const DLTensor,
    row_mask: *const DLTensor,
    temperature: f32,
    temperatures: *const DLTensor,
    max: *const DLTensor,
    log_sum: *const DLTensor,
    entropy: *const DLTensor,
    g_logp: *const DLTensor,
    g_entropy: *const DLTensor,
    g_lse: *const DLTensor,
) -> tkm_status {
    guard(|| {
        on_device(&[logits, targets, row_mask, temperatures, max, log_sum, entropy, g_logp, g_entropy, g_lse], || {
            let (x, rows, vocab, stride, dtype) = matrix(logits)?;
            let t = optional(targets, Elem::I32, rows)?;
            let m = optional(row_mask, Elem::Mask, rows)?;
            let temps = optional(temperatures, Elem::F32, rows)?;
            let mx = required(max, Elem::F32, rows)?;
            let ls = required(log_sum, Elem::F32, rows)?;
            let h = required(entropy, Elem::F32, rows)?;
            let gl = optional(g_logp, Elem::F32, rows)?;
            let gh = optional(g_entropy, Elem::F32, rows)?;
            let gz = optional(g_lse, Elem::F32, rows)?;
            match tkm_logits_bwd_inplace(
                exec,
                dtype,
                x,
                rows,
                vocab,
                stride,
                t as *const i32,
                m as *const u8,
                temperature,
                temps as *const f32,
                mx as *const f32,
                ls as *const f32,
                h as *const f32,
                gl as *const f32,
                gh as *const f32,
                gz as *const f32,
            ) {
                TKM_STATUS_OK => Ok(()),
                s => Err(s),
            }
        })
    })
}
