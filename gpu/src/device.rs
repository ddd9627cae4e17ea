//! Opening a device: the runtime enum behind [`Gpu`], driver probing, and the panic guard.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Once;

use cubecl::prelude::*;

use crate::GpuError;

/// Which cubecl runtime runs the kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// wgpu with WGSL shaders: Vulkan, Metal or DX12 (CI runs it on Mesa's CPU Vulkan
    /// driver, lavapipe).
    Wgpu,
    /// CUDA through NVRTC (needs the NVIDIA driver and, at run time, the CUDA headers under
    /// `CUDA_PATH` or `/usr/local/cuda`).
    Cuda,
}

impl DeviceKind {
    /// Parses `"wgpu"` or `"cuda"`.
    pub fn from_name(name: &str) -> Option<DeviceKind> {
        match name {
            "wgpu" => Some(DeviceKind::Wgpu),
            "cuda" => Some(DeviceKind::Cuda),
            _ => None,
        }
    }

    /// Whether this build includes the runtime.
    pub fn is_built(self) -> bool {
        match self {
            DeviceKind::Wgpu => cfg!(feature = "wgpu"),
            DeviceKind::Cuda => cfg!(feature = "cuda"),
        }
    }
}

pub(crate) enum Client {
    #[cfg(feature = "wgpu")]
    Wgpu(ComputeClient<cubecl::wgpu::WgpuRuntime>),
    #[cfg(feature = "cuda")]
    Cuda(ComputeClient<cubecl::cuda::CudaRuntime>),
}

/// Runs `$body` with `$c` bound to the runtime's `ComputeClient` and `$r` to its type.
macro_rules! with_client {
    ($gpu:expr, |$c:ident: $r:ident| $body:expr) => {
        match &$gpu.client {
            #[cfg(feature = "wgpu")]
            $crate::device::Client::Wgpu($c) => {
                type $r = cubecl::wgpu::WgpuRuntime;
                $body
            }
            #[cfg(feature = "cuda")]
            $crate::device::Client::Cuda($c) => {
                type $r = cubecl::cuda::CudaRuntime;
                $body
            }
        }
    };
}
pub(crate) use with_client;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The canonical forward's cube size on CUDA (16 blocks of 8 lanes per cube; not yet
/// measured against other sizes: `bench/gpu/run.sh` times 128 and 256).
#[cfg(feature = "cuda")]
pub(crate) const CUDA_BLOCK_THREADS: u32 = 128;

/// Threads per cube of the fast mode's row kernel (one cube per row; the bits do not
/// depend on it, see [`Gpu::set_fast_threads`]).
pub(crate) const FAST_THREADS: u32 = 256;

/// A GPU and the runtime that drives it. Cheap to share by reference; every operation is
/// queued on the runtime's stream and the reads wait for it.
pub struct Gpu {
    pub(crate) client: Client,
    pub(crate) id: u64,
    name: String,
    max_buffer: u64,
    fused_fma: bool,
    /// Threads per cube of the forward's block kernel (see [`Gpu::set_block_threads`]).
    pub(crate) block_threads: u32,
    /// Threads per cube of the fast mode's row kernel (see [`Gpu::set_fast_threads`]).
    pub(crate) fast_threads: u32,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("name", &self.name)
            .field("max_buffer", &self.max_buffer)
            .field("fused_fma", &self.fused_fma)
            .finish()
    }
}

/// Runs `f`, turning a panic (cubecl reports some failures, like a missing driver, by
/// panicking on its device thread) into [`GpuError::Runtime`].
pub(crate) fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, GpuError>) -> Result<T, GpuError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let msg = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        Err(GpuError::Runtime(format!("{what}: {msg}")))
    })
}

/// Devices being opened right now (see [`quietly`]).
static OPENING: AtomicUsize = AtomicUsize::new(0);
static QUIET_HOOK: Once = Once::new();

/// Runs `open` with the default panic report (message and backtrace on stderr) suppressed.
/// cubecl reports a missing adapter by panicking on its device thread, which makes the
/// waiting thread panic in turn; [`guarded`] turns that into an error, and a user should
/// see only that error. The hook installed once here defers to the previous hook whenever
/// no device is being opened, so every other panic is reported as before.
fn quietly<T>(open: impl FnOnce() -> T) -> T {
    QUIET_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if OPENING.load(Ordering::SeqCst) == 0 {
                previous(info);
            }
        }));
    });
    OPENING.fetch_add(1, Ordering::SeqCst);
    // `open` is wrapped in `guarded`, so it returns (the device thread's panic is reported,
    // and silenced, before the waiting thread sees the closed channel).
    let result = open();
    OPENING.fetch_sub(1, Ordering::SeqCst);
    result
}

impl Gpu {
    /// Opens the default device of `kind`.
    ///
    /// Errors: [`GpuError::NotBuilt`] when the runtime is not compiled in,
    /// [`GpuError::NoDevice`] when no driver or device is found (probed before cubecl is
    /// asked, so a machine without a GPU gets a message, not a panic).
    pub fn open(kind: DeviceKind) -> Result<Gpu, GpuError> {
        match kind {
            #[cfg(feature = "wgpu")]
            DeviceKind::Wgpu => {
                use cubecl::wgpu::{WgpuDevice, WgpuRuntime};
                let client = quietly(|| {
                    guarded("opening a wgpu device", || Ok(WgpuRuntime::client(&WgpuDevice::DefaultDevice)))
                })
                .map_err(|e| {
                    GpuError::NoDevice(format!(
                        "no Vulkan/Metal/DX12 adapter ({e}); for Mesa's CPU Vulkan driver: \
                         sudo apt-get install mesa-vulkan-drivers libvulkan1"
                    ))
                })?;
                let name = format!("wgpu ({})", WgpuRuntime::name(&client));
                let max_buffer = client.properties().memory.max_page_size;
                Gpu::new(Client::Wgpu(client), name, max_buffer)
            }
            #[cfg(feature = "cuda")]
            DeviceKind::Cuda => {
                use cubecl::cuda::{CudaDevice, CudaRuntime};
                probe_cuda_driver()?;
                let client =
                    quietly(|| guarded("opening a CUDA device", || Ok(CudaRuntime::client(&CudaDevice { index: 0 }))))
                        .map_err(|e| GpuError::NoDevice(e.to_string()))?;
                let max_buffer = client.properties().memory.max_page_size;
                let mut gpu = Gpu::new(Client::Cuda(client), "cuda:0".into(), max_buffer)?;
                gpu.set_block_threads(CUDA_BLOCK_THREADS)?;
                Ok(gpu)
            }
            #[allow(unreachable_patterns)]
            _ => Err(GpuError::NotBuilt(match kind {
                DeviceKind::Wgpu => "wgpu",
                DeviceKind::Cuda => "cuda",
            })),
        }
    }

    fn new(client: Client, name: String, max_buffer: u64) -> Result<Gpu, GpuError> {
        let mut gpu = Gpu {
            client,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            name,
            max_buffer,
            fused_fma: false,
            block_threads: crate::kernels::CUBE_THREADS,
            fast_threads: FAST_THREADS,
        };
        gpu.fused_fma = gpu.probe_fma()?;
        // The block kernel keeps one shared slot per plane, 32 at most.
        gpu.block_threads = gpu.block_threads.min(32 * gpu.plane_size_min());
        Ok(gpu)
    }

    /// The device's smallest plane (warp/subgroup) size.
    fn plane_size_min(&self) -> u32 {
        with_client!(self, |c: R| {
            let _ = std::marker::PhantomData::<R>;
            c.properties().hardware.plane_size_min.max(1)
        })
    }

    /// Runs `kernels::fma_probe`.
    fn probe_fma(&self) -> Result<bool, GpuError> {
        guarded("probing fma", || {
            let a = 1.0 + f32::EPSILON * 2048.0; // 1 + 2^-12
            let c = -(1.0 + f32::EPSILON * 4096.0); // −(1 + 2^-11)
            let got: f32 = with_client!(self, |c_: R| {
                let out = c_.create_from_slice(&f32::NAN.to_le_bytes());
                // Safe: one thread writes the one element of `out`.
                unsafe {
                    crate::kernels::fma_probe::launch_unchecked::<R>(
                        c_,
                        CubeCount::Static(1, 1, 1),
                        CubeDim::new_1d(1),
                        ArrayArg::from_raw_parts(out.clone(), 1),
                        a,
                        c,
                    )
                };
                let bytes = c_.read_one(out).map_err(|e| GpuError::Runtime(format!("read: {e:?}")))?;
                f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
            });
            if got.is_nan() {
                return Err(GpuError::Runtime("the probe kernel did not run (compilation failed; see the log)".into()));
            }
            Ok(got != 0.0)
        })
    }

    /// Sets the threads per cube of the canonical forward's block kernel (one thread per
    /// (row, 2048-column block, canonical lane), 8 threads a block; default 256 on wgpu, 128
    /// on CUDA): a performance knob, results are the same bits for every value. `n` must be
    /// a power of two from 32 to 1024 with at most 32 planes (warps) per cube on this device.
    pub fn set_block_threads(&mut self, n: u32) -> Result<(), GpuError> {
        if !n.is_power_of_two() || !(32..=1024).contains(&n) || n / self.plane_size_min() > 32 {
            return Err(GpuError::Unsupported("block threads must be a power of two in 32..=1024, at most 32 planes"));
        }
        self.block_threads = n;
        Ok(())
    }

    /// Sets the threads per cube of the fast mode's row kernel (one cube per row, default
    /// 256): a performance knob, results are the same bits for every value (each plane
    /// computes whole segments, and segments merge in a fixed tree). `n` must be a power of
    /// two from 32 to 1024, at least one plane.
    pub fn set_fast_threads(&mut self, n: u32) -> Result<(), GpuError> {
        if !n.is_power_of_two() || !(32..=1024).contains(&n) || n < self.plane_size_min() {
            return Err(GpuError::Unsupported("fast threads must be a power of two in 32..=1024"));
        }
        self.fast_threads = n;
        Ok(())
    }

    /// Whether the device fuses `fma` (one rounding). The kernels follow `core`'s operation
    /// order, whose `exp` is built on fused multiply-adds: with a fused `fma` (CUDA, and
    /// GPUs' Vulkan drivers) they can reproduce `core` bit for bit; without one (Mesa's
    /// lavapipe evaluates WGSL's `fma` as a multiply and an add) results differ from `core`
    /// by a few ulps, within the documented tolerances.
    pub fn fused_fma(&self) -> bool {
        self.fused_fma
    }

    /// The runtime this device runs on.
    pub fn kind(&self) -> DeviceKind {
        match &self.client {
            #[cfg(feature = "wgpu")]
            Client::Wgpu(_) => DeviceKind::Wgpu,
            #[cfg(feature = "cuda")]
            Client::Cuda(_) => DeviceKind::Cuda,
        }
    }

    /// The runtime and adapter, e.g. `wgpu (wgpu<wgsl>)`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The largest buffer (bytes) one tensor may occupy on this device.
    pub fn max_buffer_bytes(&self) -> u64 {
        self.max_buffer
    }

    /// Waits until every queued operation has finished.
    pub fn sync(&self) -> Result<(), GpuError> {
        guarded("sync", || {
            with_client!(self, |c: R| {
                let _ = std::marker::PhantomData::<R>;
                cubecl::future::block_on(c.sync()).map_err(|e| GpuError::Runtime(format!("{e:?}")))
            })
        })
    }
}

/// Checks that the CUDA driver library loads and sees a device, so that cubecl (which
/// panics on its device thread otherwise) is only asked when it can succeed.
#[cfg(feature = "cuda")]
pub(crate) fn probe_cuda_driver() -> Result<(), GpuError> {
    type CuInit = unsafe extern "C" fn(u32) -> i32;
    type CuDeviceGetCount = unsafe extern "C" fn(*mut i32) -> i32;
    let names = ["libcuda.so.1", "libcuda.so", "nvcuda.dll"];
    // Safe: loading the NVIDIA driver library runs only its own initialisers.
    let lib = names.iter().find_map(|n| unsafe { libloading::Library::new(n).ok() }).ok_or_else(|| {
        GpuError::NoDevice(format!("the CUDA driver library was not found (looked for {})", names.join(", ")))
    })?;
    // Safe: the symbols are the driver API's, with these signatures.
    unsafe {
        let init: libloading::Symbol<CuInit> =
            lib.get(b"cuInit\0").map_err(|e| GpuError::NoDevice(format!("cuInit not found: {e}")))?;
        let count_fn: libloading::Symbol<CuDeviceGetCount> = lib
            .get(b"cuDeviceGetCount\0")
            .map_err(|e| GpuError::NoDevice(format!("cuDeviceGetCount not found: {e}")))?;
        let rc = init(0);
        if rc != 0 {
            return Err(GpuError::NoDevice(format!("cuInit failed with CUDA error {rc}")));
        }
        let mut count = 0i32;
        let rc = count_fn(&mut count);
        if rc != 0 || count < 1 {
            return Err(GpuError::NoDevice(format!("no CUDA device (cuDeviceGetCount: error {rc}, {count} devices)")));
        }
    }
    // NVRTC compiles the kernels at their first launch and needs the CUDA headers; cubecl
    // would panic on its device thread without them.
    let headers = cubecl::cuda::install::cuda_path().map(|p| p.join("include").join("cuda_fp16.h"));
    if !headers.as_ref().is_some_and(|h| h.exists()) {
        return Err(GpuError::NoDevice(format!(
            "the CUDA headers NVRTC needs were not found ({}); set CUDA_PATH to a CUDA installation",
            headers.map_or("no CUDA_PATH, /usr/local/cuda, /opt/cuda or /usr/bin/nvcc".into(), |h| h
                .display()
                .to_string())
        )));
    }
    Ok(())
}
