//! cubecl's CUDA launch ABI for tokenmath's kernels, reproduced: which parameters each kernel
//! takes, and the packing of one launch's parameters for `cuLaunchKernel`.
//!
//! cubecl-cuda 0.10 (`compute/server.rs`, `launch_checked`; `compute/context.rs`,
//! `execute_task`) launches a kernel with `kernelParams` = one pointer to each buffer's
//! `CUdeviceptr`, in the order the kernel declares its arrays, then (on devices of compute
//! capability ≥ 7.0, where it compiles with `grid_constants`) one pointer to the info data,
//! which the kernel receives by value as `const __grid_constant__ info_st info`. The info
//! data are built by cubecl-core's `InfoBuilder` (`codegen/info.rs`): the scalar arguments
//! grouped by type (each group padded to 8 bytes), then per buffer its length and its
//! logical length as 32-bit integers (address type `U32`), padded to 8 bytes. [`Launch`]
//! builds them with that same `InfoBuilder`, so the bytes are cubecl's by construction, and
//! `tests/cuda_launch.rs` checks the table [`Kernel::params`] against cubecl's compiled
//! kernels and NVRTC's PTX.
//!
//! A launch also passes the variant's dynamic shared memory (`sharedMemBytes`, and
//! `CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES` raised to it, as cubecl does): the fast
//! row kernel's shared arrays, `codegen::KernelAbi::shared_bytes`.
//!
//! The kernels never read the lengths (they are compiled unchecked and call no `len()`);
//! they are filled as cubecl fills them (the buffer's words over the vector width) so that
//! the parameter blocks are the same bytes either way.

use std::ffi::c_void;

use cubecl::ir::AddressType;
use cubecl::InfoBuilder;

/// A kernel of `crate::kernels`, with the vector widths (`u32` words per element of its
/// vectorised arrays) of its generic parameters: what decides the entry point's name and
/// parameter list. The dtype and mode flags are compile-time constants of the source and do
/// not change either.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// `block_stats::block_partials` (canonical forward, per block).
    BlockPartials,
    /// `merge::merge_rows` (canonical merge and finalize).
    MergeRows,
    /// `grad::grad` (canonical backward into a new buffer).
    Grad,
    /// `grad::grad_inplace` (canonical backward over the logits).
    GradInplace,
    /// `fast::fast_rows` (fast forward, or fused forward + backward in place).
    FastRows {
        /// Words per vector of the logits.
        n: usize,
    },
    /// `fast::fast_grad` (fast backward, in place or not).
    FastGrad {
        /// Words per vector of the input.
        n: usize,
        /// Words per vector of the output.
        m: usize,
    },
}

impl Kernel {
    /// `(buffers, scalars)`: how many arrays the kernel declares, then how many 32-bit
    /// scalars (`usize` is 32-bit under the `U32` address type, the same group as `u32`).
    pub fn params(self) -> (usize, usize) {
        match self {
            // input keep inv_temp limit target out witness | rows cols nblocks stride offset zero
            Kernel::BlockPartials => (7, 6),
            // parts keep want merged lse logp entropy max log_sum code witness | rows nblocks zero
            Kernel::MergeRows => (11, 3),
            // input out params max log_sum entropy target witness
            // | rows cols nchunks in_stride in_offset out_stride zero
            Kernel::Grad => (8, 7),
            // buf params max log_sum entropy target witness | rows cols nchunks stride offset zero
            Kernel::GradInplace => (7, 6),
            // buf params lse entropy logp max log_sum code witness | rows cols stride
            Kernel::FastRows { .. } => (9, 3),
            // input out max log_sum entropy params witness | rows cols nchunks in_stride out_stride
            Kernel::FastGrad { .. } => (7, 5),
        }
    }

    /// The `extern "C"` entry point cubecl names the kernel (generic `Size` parameters add
    /// `_n_4`-style suffixes).
    pub fn entry(self) -> String {
        match self {
            Kernel::BlockPartials => "block_partials".into(),
            Kernel::MergeRows => "merge_rows".into(),
            Kernel::Grad => "grad".into(),
            Kernel::GradInplace => "grad_inplace".into(),
            Kernel::FastRows { n } => format!("fast_rows_n_{n}"),
            Kernel::FastGrad { n, m } => format!("fast_grad_n_{n}_m_{m}"),
        }
    }

    /// Threads per cube the variant is compiled for (its `__launch_bounds__`): a launch
    /// must use exactly this block size.
    pub fn cube_threads(self) -> u32 {
        match self {
            Kernel::BlockPartials => crate::device::CUDA_BLOCK_THREADS,
            Kernel::MergeRows => 64,
            Kernel::Grad | Kernel::GradInplace | Kernel::FastGrad { .. } => crate::kernels::CUBE_THREADS,
            Kernel::FastRows { .. } => crate::device::FAST_THREADS,
        }
    }

    /// The kernel of a variant named by `crate::codegen` (`fast_rows-bf16-v4-fused`, …);
    /// `None` for the variants the launch path never launches (`fma_probe`, `copy`).
    pub fn of_variant(name: &str) -> Option<Kernel> {
        let mut parts = name.split('-');
        let family = parts.next()?;
        let width = || name.split('-').find_map(|p| p.strip_prefix('v').and_then(|w| w.parse::<usize>().ok()));
        Some(match family {
            "block_partials" => Kernel::BlockPartials,
            "merge_rows" => Kernel::MergeRows,
            "grad" => Kernel::Grad,
            "grad_inplace" => Kernel::GradInplace,
            "fast_rows" => Kernel::FastRows { n: width()? },
            // Input and output vectors have the same width (`crate::logits::fast`).
            "fast_grad" => {
                let n = width()?;
                Kernel::FastGrad { n, m: n }
            }
            _ => return None,
        })
    }
}

/// The parameters of one launch, packed for `cuLaunchKernel`: built by [`Launch::new`], then
/// [`Launch::buffer`] for each array and [`Launch::scalar`] for each scalar in the kernel's
/// declaration order, then [`Launch::finish`].
pub struct Launch {
    kernel: Kernel,
    ptrs: Vec<u64>,
    scalars: usize,
    info: InfoBuilder,
    data: Vec<u64>,
}

impl std::fmt::Debug for Launch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launch")
            .field("kernel", &self.kernel)
            .field("buffers", &self.ptrs)
            .field("info", &self.data)
            .finish()
    }
}

impl Launch {
    /// An empty parameter list for `kernel`.
    pub fn new(kernel: Kernel) -> Launch {
        Launch { kernel, ptrs: Vec::new(), scalars: 0, info: InfoBuilder::default(), data: Vec::new() }
    }

    /// The next array: its device address, the `u32` words the kernel may touch from there,
    /// and its vector width in words.
    pub fn buffer(mut self, ptr: u64, words: usize, vector: usize) -> Launch {
        let len = (words / vector.max(1)) as u64;
        self.info.metadata.register_array(len, len, AddressType::U32);
        self.ptrs.push(ptr);
        self
    }

    /// The next scalar (`usize` arguments are 32-bit under the `U32` address type).
    pub fn scalar(mut self, v: u32) -> Launch {
        self.info.scalars.push(v);
        self.scalars += 1;
        self
    }

    /// Checks the counts against the kernel's parameter list and lays out the info struct.
    pub fn finish(mut self) -> Result<Launch, String> {
        let want = self.kernel.params();
        if (self.ptrs.len(), self.scalars) != want {
            return Err(format!(
                "{}: {} buffers and {} scalars given, the kernel takes {} and {}",
                self.kernel.entry(),
                self.ptrs.len(),
                self.scalars,
                want.0,
                want.1
            ));
        }
        self.data = self.info.finish(AddressType::U32).data;
        Ok(self)
    }

    /// Bytes of the info struct (the last kernel parameter).
    pub fn info_bytes(&self) -> usize {
        self.data.len() * 8
    }

    /// The info struct's bytes.
    pub fn info(&self) -> &[u64] {
        &self.data
    }

    /// `kernelParams` for `cuLaunchKernel`: a pointer to each buffer's address, then one to
    /// the info struct. The pointers borrow `self`, which must outlive the launch call (the
    /// driver copies the parameters when the launch is enqueued).
    pub fn params(&mut self) -> Vec<*mut c_void> {
        let mut p: Vec<*mut c_void> = self.ptrs.iter_mut().map(|a| a as *mut u64 as *mut c_void).collect();
        if !self.data.is_empty() {
            p.push(self.data.as_mut_ptr() as *mut c_void);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The packing of `grad` as cubecl lays its info out: 7 scalars padded to 8 words, then
    /// 8 buffer lengths and 8 logical lengths.
    #[test]
    fn grad_parameters_follow_cubecl_layout() {
        let mut l = Launch::new(Kernel::Grad);
        for i in 0..8 {
            l = l.buffer(0x1000 * (i + 1), 16 * (i as usize + 1), 1);
        }
        for s in 10..17 {
            l = l.scalar(s);
        }
        let mut l = l.finish().unwrap();
        assert_eq!(l.info_bytes(), 96);
        let words: &[u32] = bytemuck::cast_slice(l.info());
        assert_eq!(&words[..8], &[10, 11, 12, 13, 14, 15, 16, 0]);
        assert_eq!(&words[8..16], &[16, 32, 48, 64, 80, 96, 112, 128]);
        assert_eq!(&words[16..24], &[16, 32, 48, 64, 80, 96, 112, 128]);
        let params = l.params();
        assert_eq!(params.len(), 9);
        // Safe: the first parameter points at the first buffer's address, inside `l`.
        assert_eq!(unsafe { *(params[0] as *const u64) }, 0x1000);
    }

    #[test]
    fn a_wrong_parameter_count_is_refused() {
        let l = Launch::new(Kernel::MergeRows).buffer(1, 1, 1).scalar(3);
        assert!(l.finish().unwrap_err().contains("merge_rows: 1 buffers and 1 scalars"));
        let mut l = Launch::new(Kernel::FastRows { n: 4 });
        for _ in 0..9 {
            l = l.buffer(8, 64, 4);
        }
        let l = l.scalar(1).scalar(2).scalar(3).finish().unwrap();
        // 3 scalars → 4 words; 9 + 9 lengths → 18 words.
        assert_eq!(l.info_bytes(), (4 + 18) * 4);
        let words: &[u32] = bytemuck::cast_slice(l.info());
        assert_eq!(&words[4..6], &[16, 16]);
    }

    #[test]
    fn variant_names_map_to_kernels() {
        assert_eq!(Kernel::of_variant("fast_rows-bf16-v4-tempered-fused"), Some(Kernel::FastRows { n: 4 }));
        assert_eq!(Kernel::of_variant("fast_grad-f32-to-bf16-v1-unaligned"), Some(Kernel::FastGrad { n: 1, m: 1 }));
        assert_eq!(Kernel::of_variant("grad-f16-to-f32"), Some(Kernel::Grad));
        assert_eq!(Kernel::of_variant("copy-v4"), None);
        assert_eq!(Kernel::FastGrad { n: 2, m: 2 }.entry(), "fast_grad_n_2_m_2");
    }
}
