//! Python objects → DLPack tensors (through `dlpark`), and the checks that turn an imported
//! tensor into a raw CPU pointer for the C ABI's raw-pointer calls.
//!
//! Import follows the Python DLPack protocol: `__dlpack_device__()`, then
//! `__dlpack__(max_version=(1, x), stream=s)` (or the producer's DLPack C exchange API), the
//! capsule renamed to `used_dltensor` / `used_dltensor_versioned`, and the producer's deleter
//! called exactly once when the [`Tensor`] is dropped (after the C call returned). Nothing is
//! copied: the C ABI reads and writes the producer's memory.
//!
//! The `tkm_dl_*` entry points take the imported `DLTensor` as it is and validate it
//! themselves. The raw-pointer entry points (advantages, policy losses, aggregation) take
//! `float*` / `uint8_t*` arrays: for those, [`Tensor::cpu`] applies the C ABI's DLPack rule
//! (rule 11 of `tokenmath.h`) with the same status codes: CPU-accessible memory
//! (`kDLCPU`, `kDLCUDAHost`, `kDLROCMHost`; else `TKM_STATUS_UNSUPPORTED_DEVICE`), the exact
//! element type (`TKM_STATUS_BAD_DTYPE`), the expected number of dimensions
//! (`TKM_STATUS_BAD_TENSOR`), agreeing shapes (`TKM_STATUS_LENGTH_MISMATCH`) and compact
//! row-major strides (`TKM_STATUS_BAD_STRIDE`); alignment and NULL are left to the C ABI.

use core::ffi::c_void;

use dlpark::python::consumer::stream;
use dlpark::python::{from_dlpack, DlpackStream, ImportedDlpack, StreamArg};
use dlpark::DlpackFlags;
use pyo3::prelude::*;
use tokenmath::tkm_status::*;
use tokenmath::{tkm_dtype, TKM_DTYPE_BF16, TKM_DTYPE_F16, TKM_DTYPE_F32};

use crate::error::Fail;

/// `kDLCPU`, `kDLCUDA`, `kDLCUDAHost`, `kDLROCM`, `kDLROCMHost`, `kDLCUDAManaged`.
const KDL_CPU: u32 = 1;
const KDL_CUDA: u32 = 2;
const KDL_CUDA_HOST: u32 = 3;
const KDL_ROCM: u32 = 10;
const KDL_ROCM_HOST: u32 = 11;
const KDL_CUDA_MANAGED: u32 = 13;

/// The consumer stream handed to `__dlpack__(stream=...)`: the caller's current CUDA stream
/// for CUDA tensors (`0` = the legacy default stream, sent as DLPack's `1`), nothing for
/// memory without streams.
struct ConsumerStream(usize);

// SAFETY: the integer is the caller framework's current stream on the tensor's device (found
// by `tokenmath/_device.py` from the tensor itself), alive for the `__dlpack__` call.
unsafe impl DlpackStream for ConsumerStream {
    fn as_python_arg(&self, _py: Python<'_>, device: dlpark::ffi::DLDevice) -> PyResult<StreamArg> {
        Ok(match device.device_type.0 {
            KDL_CUDA | KDL_CUDA_MANAGED => stream::cuda(self.0 as *mut c_void),
            KDL_ROCM => stream::rocm(self.0 as *mut c_void)?,
            _ => stream::none(),
        })
    }
}

/// One imported tensor: owns the producer's managed tensor until dropped.
pub(crate) struct Tensor {
    imported: ImportedDlpack,
    /// The argument's name, for error details.
    pub(crate) name: &'static str,
}

/// The element types of the raw-pointer calls.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    /// `float32`.
    F32,
    /// `uint8` or `bool` (0 = masked out).
    Mask,
    /// `uint32` (group ids).
    U32,
    /// `int32` (target ids).
    I32,
    /// `float64` (group moments).
    F64,
    /// `uint8` only (opaque bytes: the logits partials, `tkm_row_stats`).
    Byte,
}

impl Kind {
    fn accepts(self, code: u8, bits: u8) -> bool {
        // DLDataTypeCode: kDLUInt 1, kDLFloat 2, kDLBool 6.
        match self {
            Kind::F32 => (code, bits) == (2, 32),
            Kind::Mask => matches!((code, bits), (1, 8) | (6, 8)),
            Kind::U32 => (code, bits) == (1, 32),
            Kind::I32 => (code, bits) == (0, 32),
            Kind::F64 => (code, bits) == (2, 64),
            Kind::Byte => (code, bits) == (1, 8),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::F32 => "float32",
            Kind::Mask => "uint8 or bool",
            Kind::U32 => "uint32",
            Kind::I32 => "int32",
            Kind::F64 => "float64",
            Kind::Byte => "uint8",
        }
    }
}

/// A validated CPU array: data pointer (after `byte_offset`) and shape.
pub(crate) struct Cpu {
    pub(crate) ptr: *mut c_void,
    pub(crate) shape: Vec<usize>,
}

impl Cpu {
    pub(crate) fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

impl Tensor {
    fn dl(&self) -> &dlpark::ffi::DLTensor {
        // SAFETY: the managed tensor is alive while `self` is; nobody mutates its header.
        unsafe {
            match &self.imported {
                ImportedDlpack::Legacy(t) => t.tensor(),
                ImportedDlpack::Versioned(t) => t.tensor(),
            }
        }
    }

    /// The `const DLTensor*` for a `tkm_dl_*` call (the C ABI's mirror struct has the same
    /// layout as `dlpack.h`'s and dlpark's).
    pub(crate) fn raw(&self) -> *const tokenmath::DLTensor {
        (self.dl() as *const dlpark::ffi::DLTensor).cast()
    }

    /// Refuses a tensor that its producer exported read-only (DLPack 1.x flag) where the
    /// call writes into it.
    pub(crate) fn writable(&self) -> Result<(), Fail> {
        if self.imported.flags().contains(DlpackFlags::READ_ONLY) {
            return Err(Fail::new(TKM_STATUS_BAD_TENSOR, format!("`{}` is read-only", self.name)));
        }
        Ok(())
    }

    /// The checks of the module docs, for an array of `kind` with `ndim` dimensions
    /// (`None` = any).
    pub(crate) fn cpu(&self, kind: Kind, ndim: Option<usize>) -> Result<Cpu, Fail> {
        let t = self.dl();
        let name = self.name;
        if !matches!(t.device.device_type.0, KDL_CPU | KDL_CUDA_HOST | KDL_ROCM_HOST) {
            return Err(Fail::new(
                TKM_STATUS_UNSUPPORTED_DEVICE,
                format!("`{name}` is on DLPack device type {} (this call takes CPU memory)", t.device.device_type.0),
            ));
        }
        if t.dtype.lanes != 1 || !kind.accepts(t.dtype.code.0, t.dtype.bits) {
            return Err(Fail::new(
                TKM_STATUS_BAD_DTYPE,
                format!(
                    "`{name}` has DLPack dtype (code {}, bits {}, lanes {}); expected {}",
                    t.dtype.code.0,
                    t.dtype.bits,
                    t.dtype.lanes,
                    kind.name()
                ),
            ));
        }
        let nd =
            usize::try_from(t.ndim).map_err(|_| Fail::new(TKM_STATUS_BAD_TENSOR, format!("`{name}`: ndim < 0")))?;
        if let Some(want) = ndim {
            if nd != want {
                return Err(Fail::new(TKM_STATUS_BAD_TENSOR, format!("`{name}` has {nd} dimensions; expected {want}")));
            }
        }
        if nd > 0 && t.shape.is_null() {
            return Err(Fail::new(TKM_STATUS_BAD_TENSOR, format!("`{name}`: NULL shape")));
        }
        // SAFETY: a valid DLTensor has `ndim` extents (and strides unless NULL).
        let dims: &[i64] = if nd == 0 { &[] } else { unsafe { core::slice::from_raw_parts(t.shape, nd) } };
        let mut shape = Vec::with_capacity(nd);
        for &d in dims {
            shape.push(
                usize::try_from(d)
                    .map_err(|_| Fail::new(TKM_STATUS_BAD_TENSOR, format!("`{name}` has a negative extent")))?,
            );
        }
        if !t.strides.is_null() && nd > 0 {
            // SAFETY: as above.
            let strides = unsafe { core::slice::from_raw_parts(t.strides, nd) };
            // Compact row-major, ignoring the stride of extents 1 (it never matters).
            let mut expect: i64 = 1;
            for (&d, &s) in dims.iter().zip(strides).rev() {
                if d != 1 && s != expect {
                    return Err(Fail::new(
                        TKM_STATUS_BAD_STRIDE,
                        format!("`{name}` is not contiguous (strides {strides:?} for shape {dims:?})"),
                    ));
                }
                expect = expect.saturating_mul(d);
            }
        }
        let ptr = (t.data as *mut u8).wrapping_add(t.byte_offset as usize) as *mut c_void;
        // An empty array may have a NULL (or dangling) data pointer: the C ABI accepts NULL
        // for zero elements.
        let ptr = if shape.contains(&0) { core::ptr::null_mut() } else { ptr };
        Ok(Cpu { ptr, shape })
    }

    /// A `[rows, cols]` float32 / bfloat16 / float16 matrix with any row stride >= `cols`
    /// and unit column stride (the logits and gradients of the raw-pointer logits calls,
    /// with `tkm_dl_logits_*`'s rule): `(data, rows, cols, row_stride, dtype)`.
    pub(crate) fn logits(&self) -> Result<(*mut c_void, usize, usize, usize, tkm_dtype), Fail> {
        let t = self.dl();
        let name = self.name;
        if !matches!(t.device.device_type.0, KDL_CPU | KDL_CUDA_HOST | KDL_ROCM_HOST) {
            return Err(Fail::new(
                TKM_STATUS_UNSUPPORTED_DEVICE,
                format!("`{name}` is on DLPack device type {} (this call takes CPU memory)", t.device.device_type.0),
            ));
        }
        // DLDataTypeCode: kDLFloat 2, kDLBfloat 4.
        let dtype = match (t.dtype.code.0, t.dtype.bits, t.dtype.lanes) {
            (2, 32, 1) => TKM_DTYPE_F32,
            (4, 16, 1) => TKM_DTYPE_BF16,
            (2, 16, 1) => TKM_DTYPE_F16,
            (c, b, l) => {
                return Err(Fail::new(
                    TKM_STATUS_BAD_DTYPE,
                    format!(
                    "`{name}` has DLPack dtype (code {c}, bits {b}, lanes {l}); expected float32, bfloat16 or float16"
                ),
                ))
            }
        };
        if t.ndim != 2 || t.shape.is_null() {
            return Err(Fail::new(TKM_STATUS_BAD_TENSOR, format!("`{name}` has {} dimensions; expected 2", t.ndim)));
        }
        // SAFETY: a valid DLTensor has `ndim` extents (and strides unless NULL).
        let dims = unsafe { core::slice::from_raw_parts(t.shape, 2) };
        let (Ok(rows), Ok(cols)) = (usize::try_from(dims[0]), usize::try_from(dims[1])) else {
            return Err(Fail::new(TKM_STATUS_BAD_TENSOR, format!("`{name}` has a negative extent")));
        };
        let (mut rs, mut cs) = (cols as i64, 1i64);
        if !t.strides.is_null() {
            // SAFETY: as above.
            let st = unsafe { core::slice::from_raw_parts(t.strides, 2) };
            (rs, cs) = (st[0], st[1]);
        }
        // The column stride matters only for rows of two or more elements, the row stride
        // only for two or more rows.
        let row_stride = if rows > 1 { usize::try_from(rs).unwrap_or(0) } else { cols };
        if (cols > 1 && cs != 1) || row_stride < cols {
            return Err(Fail::new(
                TKM_STATUS_BAD_STRIDE,
                format!("`{name}` needs unit column stride and a row stride >= its columns (strides [{rs}, {cs}])"),
            ));
        }
        let ptr = (t.data as *mut u8).wrapping_add(t.byte_offset as usize) as *mut c_void;
        let ptr = if rows == 0 || cols == 0 { core::ptr::null_mut() } else { ptr };
        Ok((ptr, rows, cols, row_stride, dtype))
    }

    /// A 1-D array of `kind`.
    pub(crate) fn vector(&self, kind: Kind) -> Result<(*mut c_void, usize), Fail> {
        let c = self.cpu(kind, Some(1))?;
        Ok((c.ptr, c.shape[0]))
    }

    /// A 1-D array of `kind` and length `n`.
    pub(crate) fn vector_of(&self, kind: Kind, n: usize) -> Result<*mut c_void, Fail> {
        let (p, len) = self.vector(kind)?;
        if len != n {
            return Err(Fail::new(
                TKM_STATUS_LENGTH_MISMATCH,
                format!("`{}` has length {len}; expected {n}", self.name),
            ));
        }
        Ok(p)
    }

    /// A 2-D `[rows, cols]` array of `kind`.
    pub(crate) fn matrix(&self, kind: Kind) -> Result<(*mut c_void, usize, usize), Fail> {
        let c = self.cpu(kind, Some(2))?;
        Ok((c.ptr, c.shape[0], c.shape[1]))
    }

    /// A 2-D array of `kind` with shape `[rows, cols]`.
    pub(crate) fn matrix_of(&self, kind: Kind, rows: usize, cols: usize) -> Result<*mut c_void, Fail> {
        let (p, r, c) = self.matrix(kind)?;
        if (r, c) != (rows, cols) {
            return Err(Fail::new(
                TKM_STATUS_LENGTH_MISMATCH,
                format!("`{}` has shape [{r}, {c}]; expected [{rows}, {cols}]", self.name),
            ));
        }
        Ok(p)
    }
}

/// Imports `obj` through the DLPack protocol; `stream` is the caller's CUDA stream (the
/// Python layer passes it for CUDA tensors only).
pub(crate) fn import(obj: &Bound<'_, PyAny>, name: &'static str, stream: Option<usize>) -> PyResult<Tensor> {
    let s = stream.map(ConsumerStream);
    let imported = from_dlpack(obj.as_borrowed(), s.as_ref().map(|s| s as &dyn DlpackStream), None)?;
    Ok(Tensor { imported, name })
}

/// [`import`] of an optional argument (`None` stays `None`).
pub(crate) fn import_opt(
    obj: Option<&Bound<'_, PyAny>>,
    name: &'static str,
    stream: Option<usize>,
) -> PyResult<Option<Tensor>> {
    obj.map(|o| import(o, name, stream)).transpose()
}

/// The raw `const DLTensor*` of an optional tensor (NULL = absent).
pub(crate) fn raw_opt(t: &Option<Tensor>) -> *const tokenmath::DLTensor {
    t.as_ref().map_or(core::ptr::null(), Tensor::raw)
}
