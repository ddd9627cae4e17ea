//! The CUDA C++ source of every kernel variant the library launches, generated without a
//! GPU (feature `cuda`; [`cuda_sources`] also needs `wgpu`).
//!
//! cubecl defines a kernel (its IR) from a `ComputeClient`; the client of any runtime will
//! do, so the kernels are defined on the wgpu runtime (lavapipe in CI) and compiled to CUDA
//! C++ by cubecl's own CUDA compiler with the options its CUDA runtime uses on an `sm_90`
//! device ([`cuda_options`]: fast math, the kernel info passed as a `__grid_constant__`
//! parameter, clusters, `elect.sync`), unchecked bounds and 32-bit addresses.
//! `gpu/cuda-check/run.sh` then compiles each source with NVRTC for `sm_90a` and reads the
//! SASS: a code-generation error that only NVRTC rejects fails CI, and the SASS gives the
//! instructions per element.
//!
//! The variants are every combination the launchers can choose: kernel × dtype(s) × vector
//! width × alignment × mode flags, at the cube size the launcher uses on CUDA. Each comes
//! with its launch ABI as cubecl compiled it ([`KernelAbi`]): the entry point, the buffer
//! parameters and the size of the info struct, which `crate::cuda_launch` reproduces.

use cubecl::prelude::*;
use cubecl::Compiler as _;

use crate::device::{guarded, CUDA_BLOCK_THREADS, FAST_THREADS};
use crate::kernels::{block_stats, copy, fast, fma_probe, grad, merge, CUBE_THREADS, DT_BF16, DT_F16, DT_F32};
use crate::GpuError;

/// One kernel variant: a name (`kernel-dtype-…`), its CUDA C++ source, and what the cost
/// report needs to normalise its loops.
#[derive(Clone, Debug)]
pub struct KernelSource {
    /// `kernel-variant`, usable as a file name.
    pub name: String,
    /// CUDA C++ as cubecl's CUDA runtime hands it to NVRTC.
    pub source: String,
    /// Elements one thread handles per iteration of each of the kernel's global-memory
    /// loops, in source order (0: not a steady-state loop); see `gpu/cuda-check/sass_cost.py`.
    pub loop_elements: Vec<f64>,
    /// The kernel parameters as cubecl's CUDA compiler laid them out.
    pub abi: KernelAbi,
}

/// The launch ABI of one compiled variant, read from cubecl's compiled kernel: what a
/// `cuLaunchKernel` of it must pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelAbi {
    /// The `extern "C"` entry point.
    pub entry: String,
    /// Buffer parameters (device pointers), in order, before the info struct.
    pub buffers: usize,
    /// Bytes of the `info_st` struct passed by value after the buffers (scalars grouped by
    /// type, then each buffer's length and logical length; 0: no info parameter).
    pub info_bytes: usize,
    /// Threads per cube the kernel was compiled for (`__launch_bounds__`).
    pub cube_threads: u32,
    /// Bytes of dynamic shared memory the kernel's shared arrays are laid out in: the
    /// launch's `sharedMemBytes` (cubecl also raises the function's
    /// `CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES` to it).
    pub shared_bytes: usize,
}

/// The compilation options of cubecl's CUDA runtime on a device of compute capability 9.0
/// (`cubecl-cuda` 0.10, `runtime.rs`): fast math; `grid_constants` (from 7.0: the info
/// struct is a `__grid_constant__` parameter, not a pointer to device memory); `fast_tanh`
/// (CUDA ≥ 12.8); `clusters` and `elect_sync` (from 9.0). The launch path compiles these
/// sources for any device of capability ≥ 7.0 (the features from 9.0 appear in no kernel
/// here).
pub fn cuda_options() -> <cubecl::cuda::CudaCompiler as cubecl::Compiler>::CompilationOptions {
    // The default warp size, 32, is what the runtime reads from every NVIDIA device.
    let mut options = <cubecl::cuda::CudaCompiler as cubecl::Compiler>::CompilationOptions::default();
    let f = &mut options.supports_features;
    f.fast_math = true;
    f.grid_constants = true;
    f.fast_tanh = true;
    f.clusters = true;
    f.elect_sync = true;
    options
}

const DTYPES: [(u32, &str); 3] = [(DT_F32, "f32"), (DT_F16, "f16"), (DT_BF16, "bf16")];
/// `(vector words, rows on word boundaries)` the launchers choose between.
const VECTORS: [(usize, bool); 4] = [(4, true), (2, true), (1, true), (1, false)];

fn settings(threads: u32) -> KernelSettings {
    KernelSettings::default().cube_dim(CubeDim::new_1d(threads)).address_type(AddressType::U32)
}

fn arr() -> ArrayCompilationArg {
    ArrayCompilationArg { inplace: None }
}

fn to_cuda<K: CubeKernel>(kernel: K) -> Result<(String, KernelAbi), GpuError> {
    let mut compiler = cubecl::cuda::CudaCompiler::default();
    let address = cubecl::ir::StorageType::Scalar(cubecl::ir::ElemType::UInt(cubecl::ir::UIntKind::U32));
    let compiled = compiler
        .compile(kernel.define(), &cuda_options(), ExecutionMode::Unchecked, address)
        .map_err(|e| GpuError::Runtime(format!("CUDA code generation: {e:?}")))?;
    let abi = KernelAbi {
        entry: compiled.kernel_name.clone(),
        buffers: compiled.tensor_maps.len() + compiled.buffers.len(),
        // `Info::new` lays the fields out back to back; where the dynamic part would start
        // is the size of the struct.
        info_bytes: if compiled.info.has_info() { compiled.info.dynamic_meta_offset } else { 0 },
        cube_threads: compiled.cube_dim.x * compiled.cube_dim.y * compiled.cube_dim.z,
        shared_bytes: compiled.shared_memory_size(),
    };
    Ok((compiled.to_string(), abi))
}

/// The CUDA sources of all kernel variants. Needs a wgpu adapter (lavapipe will do) to
/// define the kernels; no NVIDIA driver.
#[cfg(feature = "wgpu")]
pub fn cuda_sources() -> Result<Vec<KernelSource>, GpuError> {
    use cubecl::wgpu::{WgpuDevice, WgpuRuntime};
    let client = guarded("opening a wgpu device", || Ok(WgpuRuntime::client(&WgpuDevice::DefaultDevice)))
        .map_err(|e| GpuError::NoDevice(e.to_string()))?;
    cuda_sources_on(&client)
}

/// The CUDA sources of all kernel variants, the kernels defined on `client`'s runtime (the
/// sources do not depend on which).
pub(crate) fn cuda_sources_on<R: Runtime>(client: &ComputeClient<R>) -> Result<Vec<KernelSource>, GpuError> {
    guarded("generating CUDA sources", || generate(client))
}

fn generate<R: Runtime>(c: &ComputeClient<R>) -> Result<Vec<KernelSource>, GpuError> {
    let mut out = Vec::new();
    let mut push = |name: String, (source, abi): (String, KernelAbi), loop_elements: Vec<f64>| {
        out.push(KernelSource { name, source, loop_elements, abi });
    };
    let half = |dt: u32| if dt == DT_F32 { 1.0 } else { 2.0 };

    push("fma_probe".into(), to_cuda(fma_probe::FmaProbe::<R>::new(settings(1), c.clone(), arr(), (), ()))?, vec![]);
    push(
        "copy-v4".into(),
        to_cuda(copy::copy::Copy::<R>::new(settings(CUBE_THREADS), c.clone(), arr(), arr(), arr(), (), 4))?,
        vec![4.0],
    );
    for (dt, dn) in DTYPES {
        for scaled in [false, true] {
            let k = block_stats::block_partials::BlockPartials::<R>::new(
                settings(CUDA_BLOCK_THREADS),
                c.clone(),
                arr(),
                arr(),
                arr(),
                arr(),
                arr(),
                arr(),
                arr(),
                (),
                (),
                (),
                (),
                (),
                (),
                dt,
                scaled,
            );
            // One thread per (block, lane), elements loaded one by one (any alignment): the
            // maximum pass, then the sums pass, each unrolled by NVRTC (sm_90a, CUDA 13.5)
            // into a main loop of 4 elements and a remainder loop, laid out as: maximum ×4,
            // maximum remainder, sums remainder, sums ×4; for f16 (longer widening) the sums
            // pass is unrolled by 2 with no remainder loop.
            let loops = if dt == DT_F16 { vec![4.0, 0.0, 2.0] } else { vec![4.0, 0.0, 0.0, 4.0] };
            push(format!("block_partials-{dn}{}", if scaled { "-tempered" } else { "" }), to_cuda(k)?, loops);
        }
    }
    for finalize in [true, false] {
        let k = merge::merge_rows::MergeRows::<R>::new(
            settings(64),
            c.clone(),
            arr(),
            arr(),
            arr(),
            arr(),
            arr(),
            arr(),
            arr(),
            arr(),
            arr(),
            arr(),
            arr(),
            (),
            (),
            (),
            finalize,
        );
        push(format!("merge_rows-{}", if finalize { "finalize" } else { "partial" }), to_cuda(k)?, vec![]);
    }
    for (di, din) in DTYPES {
        for (dout, doutn) in DTYPES {
            let k = grad::grad::Grad::<R>::new(
                settings(CUBE_THREADS),
                c.clone(),
                arr(),
                arr(),
                arr(),
                arr(),
                arr(),
                arr(),
                arr(),
                arr(),
                (),
                (),
                (),
                (),
                (),
                (),
                (),
                di,
                dout,
            );
            push(format!("grad-{din}-to-{doutn}"), to_cuda(k)?, vec![half(dout)]);
        }
        let k = grad::grad_inplace::GradInplace::<R>::new(
            settings(CUBE_THREADS),
            c.clone(),
            arr(),
            arr(),
            arr(),
            arr(),
            arr(),
            arr(),
            arr(),
            (),
            (),
            (),
            (),
            (),
            (),
            di,
        );
        push(format!("grad_inplace-{din}"), to_cuda(k)?, vec![half(di)]);
    }
    for (dt, dn) in DTYPES {
        for (n, words) in VECTORS {
            for scaled in [false, true] {
                for fused in [false, true] {
                    let k = fast::fast_rows::FastRows::<R>::new(
                        settings(FAST_THREADS),
                        c.clone(),
                        arr(),
                        arr(),
                        arr(),
                        arr(),
                        arr(),
                        arr(),
                        arr(),
                        arr(),
                        arr(),
                        (),
                        (),
                        (),
                        n,
                        dt,
                        words,
                        scaled,
                        fused,
                    );
                    let name = format!(
                        "fast_rows-{dn}-v{n}{}{}{}",
                        if words { "" } else { "-unaligned" },
                        if scaled { "-tempered" } else { "" },
                        if fused { "-fused" } else { "" }
                    );
                    // Whole granules, then the last partial one (not steady); fused: the
                    // same again for the gradient pass.
                    let granule = fast::GRANULE as f64;
                    let loops = if fused { vec![granule, 0.0, granule] } else { vec![granule] };
                    push(name, to_cuda(k)?, loops);
                }
            }
        }
    }
    for (di, din) in DTYPES {
        for (dout, doutn) in DTYPES {
            for inplace in [false, true] {
                if inplace && di != dout {
                    continue;
                }
                for (n, words) in VECTORS {
                    for scaled in [false, true] {
                        let k = fast::fast_grad::FastGrad::<R>::new(
                            settings(CUBE_THREADS),
                            c.clone(),
                            arr(),
                            arr(),
                            arr(),
                            arr(),
                            arr(),
                            arr(),
                            arr(),
                            (),
                            (),
                            (),
                            (),
                            (),
                            n,
                            n,
                            di,
                            dout,
                            words,
                            scaled,
                            inplace,
                        );
                        let name = format!(
                            "fast_grad-{din}-to-{doutn}{}-v{n}{}{}",
                            if inplace { "-inplace" } else { "" },
                            if words { "" } else { "-unaligned" },
                            if scaled { "-tempered" } else { "" }
                        );
                        push(name, to_cuda(k)?, vec![fast::GRANULE as f64]);
                    }
                }
            }
        }
    }
    Ok(out)
}
