//! `Gpu::launch_path_check`: cubecl's launches and the C ABI's launch path
//! (`crate::cuda_launch`) on the same device buffers, compared bit for bit (`bench/gpu` runs
//! it on the H200).

use std::ptr::null_mut;

use cubecl::prelude::*;
use cubecl::server::Handle;
use tokenmath_core::logits::{RowInputs, Upstream};
use tokenmath_core::DType;

use super::{row_params, row_vectors};
use crate::codegen::KernelSource;
use crate::cuda_launch::abi::{Kernel, Launch};
use crate::cuda_launch::driver::{memory_of, synchronize, Current, Memory};
use crate::cuda_launch::nvrtc::include_dirs;
use crate::device::{guarded, Client, Gpu};
use crate::kernels::{self, fast::PARAMS, grad, CUBE_THREADS};
use crate::logits::{read_pod, GpuLogits};
use crate::GpuError;

type R = cubecl::cuda::CudaRuntime;

fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
    }
}

fn fail(e: &dyn std::fmt::Display) -> GpuError {
    GpuError::Runtime(format!("launch path: {e}"))
}

/// One launch through `crate::cuda_launch` on cubecl's buffers, device 0's primary context
/// current on this thread meanwhile.
struct PathLaunch<'a> {
    current: Current,
    c: &'a ComputeClient<R>,
    sources: &'a [KernelSource],
    launch: Launch,
    /// Keep cubecl from reusing the buffers until the launch has run.
    guards: Vec<Box<dyn std::any::Any>>,
}

impl<'a> PathLaunch<'a> {
    fn new(c: &'a ComputeClient<R>, sources: &'a [KernelSource], kernel: Kernel) -> Result<Self, GpuError> {
        let current = Current::primary(0).map_err(|e| fail(&e))?;
        Ok(PathLaunch { current, c, sources, launch: Launch::new(kernel), guards: Vec::new() })
    }

    /// The next buffer: cubecl's handle, checked to be device memory of device 0.
    fn buffer(mut self, h: &Handle, words: usize, vector: usize) -> Result<Self, GpuError> {
        let g = self.c.get_resource(h.clone()).map_err(|e| GpuError::Runtime(format!("get_resource: {e:?}")))?;
        let ptr = g.resource().ptr;
        self.guards.push(Box::new(g));
        match memory_of(ptr).map_err(|e| fail(&e))? {
            Memory::Device(0) => {}
            other => return Err(GpuError::Runtime(format!("a cubecl buffer reported as {other:?}"))),
        }
        self.launch = self.launch.buffer(ptr, words, vector);
        Ok(self)
    }

    fn scalar(mut self, v: usize) -> Self {
        self.launch = self.launch.scalar(v as u32);
        self
    }

    /// Compiles (once) and runs `variant` on the legacy default stream, `cubes` cubes, and
    /// waits for it.
    fn run(self, variant: &str, cubes: usize) -> Result<(), GpuError> {
        let src = self
            .sources
            .iter()
            .find(|s| s.name == variant)
            .ok_or_else(|| GpuError::Runtime(format!("no variant {variant}")))?;
        let kernel =
            Kernel::of_variant(variant).ok_or_else(|| GpuError::Runtime(format!("not launched: {variant}")))?;
        let mut launch = self.launch.finish().map_err(|e| fail(&e))?;
        let root = cubecl::cuda::install::cuda_path().ok_or_else(|| GpuError::NoDevice("no CUDA headers".into()))?;
        let f =
            self.current.function(variant, &kernel.entry(), &src.source, &include_dirs(&root)).map_err(|e| fail(&e))?;
        let CubeCount::Static(gx, gy, gz) = kernels::grid(cubes) else {
            return Err(GpuError::Runtime("a dynamic grid".into()));
        };
        // Safe: the addresses are cubecl's live buffers (held by the guards) of the sizes
        // the kernel reads and writes at this grid, as cubecl launches it, on the primary
        // context cubecl uses.
        unsafe {
            f.launch((gx, gy, gz), src.abi.cube_threads, src.abi.shared_bytes as u32, null_mut(), &mut launch)
                .map_err(|e| fail(&e))?;
            synchronize(null_mut()).map_err(|e| fail(&e))?;
        }
        drop(self.guards);
        Ok(())
    }
}

/// `(equal, total)` words of two device buffers' first `n` words.
fn same_words(c: &ComputeClient<R>, a: &Handle, b: &Handle, n: usize) -> Result<(usize, usize), GpuError> {
    let a: Vec<u32> = read_pod::<u32, R>(c, a.clone(), n)?;
    let b: Vec<u32> = read_pod::<u32, R>(c, b.clone(), n)?;
    Ok((a.iter().zip(&b).filter(|(p, q)| p == q).count(), n))
}

/// `(equal, total)` elements of two `[rows, cols]` gradients of one layout (the padding
/// between rows is never written, so it is not compared).
fn same_elements(c: &ComputeClient<R>, a: &GpuLogits, b: &GpuLogits) -> Result<(usize, usize), GpuError> {
    fn count<T: bytemuck::Pod + PartialEq>(
        c: &ComputeClient<R>,
        a: &GpuLogits,
        b: &GpuLogits,
    ) -> Result<(usize, usize), GpuError> {
        let n = a.rows * a.stride;
        let (x, y): (Vec<T>, Vec<T>) = (read_pod(c, a.handle.clone(), n)?, read_pod(c, b.handle.clone(), n)?);
        let mut same = 0;
        for r in 0..a.rows {
            let row = r * a.stride..r * a.stride + a.cols;
            same += x[row.clone()].iter().zip(&y[row]).filter(|(p, q)| p == q).count();
        }
        Ok((same, a.rows * a.cols))
    }
    if a.dtype == DType::F32 {
        count::<u32>(c, a, b)
    } else {
        count::<u16>(c, a, b)
    }
}

impl Gpu {
    /// Two kernels launched twice on the same device buffers — by cubecl, and by the C ABI's
    /// launch path (the variant's CUDA source generated by `codegen`, compiled by NVRTC for
    /// this device, launched with `cuLaunchKernel` on the legacy default stream with cubecl's
    /// buffers' device addresses): the fast forward (`fast_rows`: shared memory, vectors)
    /// and the canonical backward into a new buffer (`grad`: eight buffers, seven scalars),
    /// with upstream `g_logp = −1`. Returns `(variant, bitwise-equal words, words)` per
    /// kernel. CUDA only; a check, not a fast path (it synchronises).
    #[doc(hidden)]
    pub fn launch_path_check(
        &self,
        x: &GpuLogits,
        inputs: &RowInputs<'_>,
    ) -> Result<Vec<(String, usize, usize)>, GpuError> {
        self.validate_fwd(x, inputs)?;
        #[allow(irrefutable_let_patterns)]
        let Client::Cuda(c) = &self.client
        else {
            return Err(GpuError::Unsupported("the launch-path check needs a CUDA device"));
        };
        guarded("launch path check", || {
            let sources = crate::codegen::cuda_sources_on(c)?;
            let rows = x.rows;
            let dn = dtype_name(x.dtype);

            // The fast forward.
            let theirs = self.fast_rows(x, inputs, None)?;
            let (lse, logp, code) = theirs.fwd.clone().expect("forward outputs");
            let theirs = [lse, theirs.entropy.clone(), logp, theirs.max.clone(), theirs.log_sum.clone(), code];
            let (params, scaled) = row_params(inputs, rows, None);
            let params = self.create(&params)?;
            let outs: Vec<Handle> = (0..6).map(|_| self.output(rows * 4)).collect::<Result<_, _>>()?;
            let witness = self.witness()?;
            let (n, word_rows) = row_vectors(x.dtype, rows, x.stride);
            let fast_name = format!(
                "fast_rows-{dn}-v{n}{}{}",
                if word_rows { "" } else { "-unaligned" },
                if scaled { "-tempered" } else { "" }
            );
            // cubecl's uploads and launches are done before another stream reads them.
            self.sync()?;
            let mut l = PathLaunch::new(c, &sources, Kernel::FastRows { n })?.buffer(&x.handle, x.units, n)?.buffer(
                &params,
                rows * PARAMS,
                1,
            )?;
            for o in &outs {
                l = l.buffer(o, rows, 1)?;
            }
            l.buffer(&witness, 1, 1)?.scalar(rows).scalar(x.cols).scalar(x.stride).run(&fast_name, rows)?;
            let (mut same, mut total) = (0, 0);
            for (a, b) in outs.iter().zip(&theirs) {
                let (s, t) = same_words(c, a, b, rows)?;
                same += s;
                total += t;
            }
            let mut report = vec![(fast_name, same, total)];

            // The canonical backward from the canonical forward's statistics.
            let saved = self.stats_fwd(x, inputs)?;
            let g_logp = vec![-1.0f32; rows];
            let up = Upstream { g_logp: Some(&g_logp), ..Default::default() };
            let theirs = self.stats_bwd_dtype(x, inputs, &saved, up)?;
            let (params, target) = self.grad_rows(x, inputs, &saved, &up)?;
            let out = self.grad_output(x, x.dtype)?;
            let witness = self.witness()?;
            let nchunks = x.cols.div_ceil(grad::CHUNK);
            let grad_name = format!("grad-{dn}-to-{dn}");
            self.sync()?;
            PathLaunch::new(c, &sources, Kernel::Grad)?
                .buffer(&x.handle, x.units, 1)?
                .buffer(&out.handle, out.units, 1)?
                .buffer(&params, 6 * rows.max(1), 1)?
                .buffer(&saved.max, rows.max(1), 1)?
                .buffer(&saved.log_sum, rows.max(1), 1)?
                .buffer(&saved.entropy, rows.max(1), 1)?
                .buffer(&target, rows.max(1), 1)?
                .buffer(&witness, 1, 1)?
                .scalar(rows)
                .scalar(x.cols)
                .scalar(nchunks)
                .scalar(x.stride)
                .scalar(0)
                .scalar(out.stride)
                .scalar(0)
                .run(&grad_name, rows * nchunks)?;
            let (same, total) = same_elements(c, &out, &theirs)?;
            report.push((grad_name, same, total));
            debug_assert_eq!(CUBE_THREADS, Kernel::Grad.cube_threads());
            Ok(report)
        })
    }

    /// `stats_bwd` into `x`'s own element type.
    fn stats_bwd_dtype(
        &self,
        x: &GpuLogits,
        inputs: &RowInputs<'_>,
        saved: &crate::GpuStats,
        up: Upstream<'_>,
    ) -> Result<GpuLogits, GpuError> {
        match x.dtype {
            DType::F32 => self.stats_bwd::<f32>(x, inputs, saved, up),
            DType::F16 => self.stats_bwd::<half::f16>(x, inputs, saved, up),
            DType::BF16 => self.stats_bwd::<half::bf16>(x, inputs, saved, up),
        }
    }
}
