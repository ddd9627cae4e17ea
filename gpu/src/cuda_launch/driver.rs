//! The CUDA driver side of the launch path: a device's primary context made current for a
//! call (and restored), its compute capability, the compiled kernels cached per context ×
//! variant, and the launch itself (cudarc's `cuLaunchKernel`, on a caller's stream).
//!
//! Compiled once per (context, variant): a variant's name fixes its kernel, dtypes, vector
//! width and mode flags, and a context fixes the device and so the architecture (NVRTC
//! compiles for the device's own compute capability, `sm_XYa` from 9.0, as cubecl does).
//! The cache lives as long as the process (a module is a few tens of kilobytes; contexts
//! are not destroyed while tokenmath runs on them).

use std::collections::HashMap;
use std::ffi::{c_void, CString};
use std::path::PathBuf;
use std::sync::Mutex;

use cudarc::driver::{result, sys};

use super::abi::Launch;
use super::nvrtc::{compile_ptx, CompileError};

/// What can go wrong on the driver side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DriverFailure {
    /// No CUDA driver or device (the message says which).
    NoDriver(String),
    /// A device older than compute capability 7.0: the sources pass the kernel info as a
    /// `__grid_constant__` parameter, which needs 7.0.
    Arch(u32),
    /// NVRTC rejected a variant (its log inside).
    Compile(CompileError),
    /// A driver call failed.
    Driver(String),
}

impl std::fmt::Display for DriverFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DriverFailure::NoDriver(why) => write!(f, "no CUDA driver or device: {why}"),
            DriverFailure::Arch(a) => write!(f, "compute capability {}.{} is below 7.0", a / 10, a % 10),
            DriverFailure::Compile(e) => write!(f, "{e}"),
            DriverFailure::Driver(why) => write!(f, "CUDA driver call failed: {why}"),
        }
    }
}

impl std::error::Error for DriverFailure {}

fn drv(what: &str) -> impl Fn(result::DriverError) -> DriverFailure + '_ {
    move |e| DriverFailure::Driver(format!("{what}: {e:?}"))
}

/// A device's primary context, current on this thread while it lives.
pub struct Current {
    ctx: sys::CUcontext,
    dev: sys::CUdevice,
    /// Compute capability as `10·major + minor`.
    pub arch: u32,
}

impl Current {
    /// Makes device `ordinal`'s primary context (the one cubecl, the CUDA runtime and
    /// PyTorch use) current on this thread; dropping the value restores the previous one.
    pub fn primary(ordinal: i32) -> Result<Current, DriverFailure> {
        // The driver library is probed before cudarc, which panics when it cannot load it.
        crate::device::probe_cuda_driver().map_err(|e| DriverFailure::NoDriver(e.to_string()))?;
        result::init().map_err(drv("cuInit"))?;
        let dev = result::device::get(ordinal).map_err(drv("cuDeviceGet"))?;
        // Safe: `dev` is a device handle from the driver.
        let (arch, ctx) = unsafe {
            let major = result::device::get_attribute(
                dev,
                sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
            )
            .map_err(drv("cuDeviceGetAttribute"))?;
            let minor = result::device::get_attribute(
                dev,
                sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
            )
            .map_err(drv("cuDeviceGetAttribute"))?;
            let ctx = result::primary_ctx::retain(dev).map_err(drv("cuDevicePrimaryCtxRetain"))?;
            ((major * 10 + minor) as u32, ctx)
        };
        // Safe: `ctx` was just retained; it is popped and released in `drop`.
        if let Err(e) = unsafe { sys::cuCtxPushCurrent_v2(ctx) }.result() {
            // Safe: balances the retain above.
            let _ = unsafe { result::primary_ctx::release(dev) };
            return Err(DriverFailure::Driver(format!("cuCtxPushCurrent: {e:?}")));
        }
        let current = Current { ctx, dev, arch };
        if arch < 70 {
            return Err(DriverFailure::Arch(arch));
        }
        Ok(current)
    }

    /// The context's compiled `variant` (`codegen` names it), compiling `source` with NVRTC
    /// (headers under `includes`) on first use.
    pub fn function(
        &self,
        variant: &str,
        entry: &str,
        source: &str,
        includes: &[PathBuf],
    ) -> Result<Function, DriverFailure> {
        static CACHE: Mutex<Option<HashMap<(usize, String), usize>>> = Mutex::new(None);
        let key = (self.ctx as usize, variant.to_string());
        if let Some(&f) = CACHE.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(HashMap::new).get(&key) {
            return Ok(Function(f as sys::CUfunction));
        }
        let ptx = compile_ptx(source, self.arch, includes).map_err(DriverFailure::Compile)?;
        let ptx = CString::new(ptx).map_err(|_| DriverFailure::Driver("PTX with a NUL byte".into()))?;
        let name = CString::new(entry).map_err(|_| DriverFailure::Driver("entry name with a NUL byte".into()))?;
        // Safe: `ptx` is NUL-terminated PTX text, loaded into the current context.
        let f = unsafe {
            let module = result::module::load_data(ptx.as_ptr() as *const c_void).map_err(drv("cuModuleLoadData"))?;
            result::module::get_function(module, name).map_err(drv("cuModuleGetFunction"))?
        };
        // Two threads may compile the same variant at once; either function will do.
        CACHE.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(HashMap::new).insert(key, f as usize);
        Ok(Function(f))
    }
}

impl Drop for Current {
    fn drop(&mut self) {
        let mut popped: sys::CUcontext = std::ptr::null_mut();
        // Safe: pops the context pushed in `primary`, then balances its retain.
        unsafe {
            let _ = sys::cuCtxPopCurrent_v2(&mut popped);
            let _ = result::primary_ctx::release(self.dev);
        }
    }
}

/// A compiled kernel of the current context.
#[derive(Clone, Copy, Debug)]
pub struct Function(sys::CUfunction);

impl Function {
    /// Enqueues the kernel on `stream` (NULL: the legacy default stream) with `grid` cubes of
    /// `threads` threads, `shared` bytes of dynamic shared memory and the parameters of
    /// `launch`. Returns once enqueued; no host synchronisation.
    ///
    /// # Safety
    /// Every buffer address in `launch` must be device memory of the current context valid
    /// for what the kernel reads and writes at that grid, until the stream runs it; `stream`
    /// must belong to the current context.
    pub unsafe fn launch(
        self,
        grid: (u32, u32, u32),
        threads: u32,
        shared: u32,
        stream: *mut c_void,
        launch: &mut Launch,
    ) -> Result<(), DriverFailure> {
        // As cubecl: allow the kernel its dynamic shared memory (beyond 48 KiB needs it).
        result::function::set_function_attribute(
            self.0,
            sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            shared as i32,
        )
        .map_err(drv("cuFuncSetAttribute"))?;
        let mut params = launch.params();
        result::launch_kernel(self.0, grid, (threads, 1, 1), shared, stream as sys::CUstream, &mut params)
            .map_err(drv("cuLaunchKernel"))
    }
}

/// Where a pointer's memory lives, as the driver reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Memory {
    /// Not memory the driver knows (pageable host memory, or not a pointer at all).
    Unknown,
    /// Page-locked host memory.
    Host,
    /// Device memory of the device with this ordinal.
    Device(i32),
    /// Managed (unified) memory, attached to the device with this ordinal.
    Managed(i32),
}

/// What the driver knows about `ptr` (`cuPointerGetAttribute`: memory type and device
/// ordinal): the check that keeps a host or another device's pointer from reaching a kernel.
pub fn memory_of(ptr: u64) -> Result<Memory, DriverFailure> {
    let mut kind: u32 = 0;
    // Safe: the driver writes one `CUmemorytype` (a 32-bit enum) for any address.
    let rc = unsafe {
        sys::cuPointerGetAttribute(
            &mut kind as *mut u32 as *mut c_void,
            sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
            ptr,
        )
    };
    if rc == sys::CUresult::CUDA_ERROR_INVALID_VALUE {
        return Ok(Memory::Unknown);
    }
    rc.result().map_err(drv("cuPointerGetAttribute(MEMORY_TYPE)"))?;
    let mut ordinal: i32 = -1;
    // Safe: as above, one `int`.
    unsafe {
        sys::cuPointerGetAttribute(
            &mut ordinal as *mut i32 as *mut c_void,
            sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
            ptr,
        )
    }
    .result()
    .map_err(drv("cuPointerGetAttribute(DEVICE_ORDINAL)"))?;
    let managed = {
        let mut m: u32 = 0;
        // Safe: as above, one `unsigned int` boolean.
        unsafe {
            sys::cuPointerGetAttribute(
                &mut m as *mut u32 as *mut c_void,
                sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_IS_MANAGED,
                ptr,
            )
        }
        .result()
        .map_err(drv("cuPointerGetAttribute(IS_MANAGED)"))?;
        m != 0
    };
    Ok(match kind {
        _ if managed => Memory::Managed(ordinal),
        k if k == sys::CUmemorytype::CU_MEMORYTYPE_HOST as u32 => Memory::Host,
        _ => Memory::Device(ordinal),
    })
}

/// Waits for `stream` (tests and checks only: the launch path itself never synchronises).
///
/// # Safety
/// `stream` belongs to the current context.
pub unsafe fn synchronize(stream: *mut c_void) -> Result<(), DriverFailure> {
    result::stream::synchronize(stream as sys::CUstream).map_err(drv("cuStreamSynchronize"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a driver (CI), asking for a device is a typed error, not a panic.
    #[test]
    fn no_driver_is_an_error() {
        if crate::device::probe_cuda_driver().is_ok() {
            return; // a CUDA machine: nothing to check here
        }
        assert!(matches!(Current::primary(0), Err(DriverFailure::NoDriver(_))));
    }
}
