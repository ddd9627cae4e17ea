//! The logits statistics on a GPU: device tensors, the forward, the vocabulary-shard
//! partials, the backward, and transfers.
//!
//! Every call validates its inputs with `core`'s rules (same errors, before anything is
//! launched), uploads the small per-row arrays, and queues kernels; reads wait for them.

use bytemuck::Pod;
use cubecl::prelude::*;
use cubecl::server::Handle;
use tokenmath_core::logits::canonical::LANES;
use tokenmath_core::logits::{FwdOut, RowInputs, RowStats, Shard, Status, Upstream, BLOCK};
use tokenmath_core::{DType, GradElem, LogitElem, Mat, MatMut, TmError};

use crate::device::{guarded, with_client, Gpu};
use crate::kernels::{self, block_stats, copy, grad, merge, CUBE_THREADS, DT_BF16, DT_F16, DT_F32, NO_TARGET};
use crate::GpuError;

mod fast;
pub use fast::GpuMode;

/// A `[rows, cols]` matrix of `f32`, `bf16` or `f16` in device memory (row stride
/// `stride` elements). Created by [`Gpu::upload`] or returned by [`Gpu::stats_bwd`]; read
/// back with [`Gpu::download`].
#[derive(Debug)]
pub struct GpuLogits {
    handle: Handle,
    /// Length of the buffer in `u32` words (one `f32` or two 16-bit elements each).
    units: usize,
    dtype: DType,
    rows: usize,
    cols: usize,
    stride: usize,
    gpu: u64,
    /// One word per kernel behind the contents, set to 1 by it (see `kernels::grad`).
    witnesses: Vec<Handle>,
}

impl GpuLogits {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Distance in elements between the starts of consecutive rows.
    pub fn row_stride(&self) -> usize {
        self.stride
    }
    /// Element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }
}

/// The forward's per-row outputs in device memory; [`Gpu::read_stats`] copies them out,
/// and [`Gpu::stats_bwd`] uses `max`, `log_sum` and `entropy` where they are.
#[derive(Debug)]
pub struct GpuStats {
    rows: usize,
    max: Handle,
    log_sum: Handle,
    entropy: Handle,
    /// `lse, logp, code` (absent for statistics uploaded with [`Gpu::upload_saved`]).
    fwd: Option<(Handle, Handle, Handle)>,
    has_targets: bool,
    gpu: u64,
    /// The witnesses of the kernels that computed these statistics.
    witnesses: Vec<Handle>,
}

impl GpuStats {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }
}

fn check_len(what: &'static str, expected: usize, got: usize) -> Result<(), GpuError> {
    if expected == got {
        Ok(())
    } else {
        Err(TmError::LengthMismatch { what, expected, got }.into())
    }
}

/// Kernel indices are 32-bit (cubecl's default address type); every element index, with
/// the few elements a kernel may step past the end, stays below `2^31`.
const MAX_ELEMENTS: usize = (1 << 31) - 2;

fn check_elements(n: usize) -> Result<(), GpuError> {
    if n > MAX_ELEMENTS {
        return Err(GpuError::Unsupported(
            "a tensor of more than 2^31 - 2 elements (the kernels index with 32-bit integers); split the batch",
        ));
    }
    Ok(())
}

fn kernel_dtype(d: DType) -> u32 {
    match d {
        DType::F32 => DT_F32,
        DType::F16 => DT_F16,
        DType::BF16 => DT_BF16,
    }
}

/// The largest `v ≥ 0` whose product with `inv_temp` is finite in `f32` (beyond it the
/// tempered logit overflows to `±inf`; the kernels classify such logits as `core`'s
/// overflowed values behave, without computing the overflow).
fn overflow_limit(inv_temp: f32) -> f32 {
    if inv_temp <= 1.0 {
        return f32::MAX;
    }
    // The product is monotone in `v`: binary search on the bits of finite `v ≥ 0`.
    let (mut lo, mut hi) = (0u32, f32::MAX.to_bits());
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if (f32::from_bits(mid) * inv_temp).is_finite() {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    f32::from_bits(lo)
}

/// The block kernel's output, with the uploaded `keep` array the merge reads too.
struct Partials {
    /// `[rows, nblocks]` tuples of 5 words.
    tuples: Handle,
    nblocks: usize,
    witness: Handle,
    keep: Handle,
}

/// Per-row arrays of one call, in the form the kernels read.
struct RowArrays {
    keep: Vec<u32>,
    inv_temp: Vec<f32>,
    limit: Vec<f32>,
    /// Target column relative to the columns at hand, or `NO_TARGET`.
    target: Vec<u32>,
}

impl RowArrays {
    fn new(inputs: &RowInputs<'_>, rows: usize, col_offset: usize, cols: usize) -> RowArrays {
        let keep: Vec<u32> = (0..rows).map(|r| inputs.keep(r) as u32).collect();
        let inv_temp: Vec<f32> = (0..rows).map(|r| if inputs.keep(r) { inputs.inv_temp(r) } else { 1.0 }).collect();
        let mut limit = Vec::with_capacity(rows);
        for (r, &t) in inv_temp.iter().enumerate() {
            // Rows mostly share one temperature: search once per distinct value.
            limit.push(if r > 0 && inv_temp[r - 1] == t { limit[r - 1] } else { overflow_limit(t) });
        }
        let target = (0..rows)
            .map(|r| match inputs.target(r) {
                Some(t) if inputs.keep(r) && (col_offset..col_offset + cols).contains(&t) => (t - col_offset) as u32,
                _ => NO_TARGET,
            })
            .collect();
        RowArrays { keep, inv_temp, limit, target }
    }
}

/// The size of a device buffer for `bytes` bytes of data: never empty (some runtimes cannot
/// create one), padded to 16 bytes so that vector loads of the last row stay inside it.
fn padded_len(bytes: usize) -> usize {
    bytes.max(16).next_multiple_of(16)
}

fn bytes_of<T: Pod>(v: &[T]) -> Vec<u8> {
    let mut b = bytemuck::cast_slice::<T, u8>(v).to_vec();
    b.resize(padded_len(b.len()), 0);
    b
}

fn read_pod<T: Pod, R: Runtime>(client: &ComputeClient<R>, h: Handle, n: usize) -> Result<Vec<T>, GpuError> {
    let bytes = client.read_one(h).map_err(|e| GpuError::Runtime(format!("read: {e:?}")))?;
    let mut v: Vec<T> = bytemuck::pod_collect_to_vec(&bytes[..]);
    v.truncate(n);
    Ok(v)
}

impl Gpu {
    fn own(&self, id: u64) -> Result<(), GpuError> {
        if id == self.id {
            Ok(())
        } else {
            Err(GpuError::WrongDevice)
        }
    }

    fn check_size(&self, bytes: usize) -> Result<(), GpuError> {
        if bytes as u64 > self.max_buffer_bytes() {
            return Err(GpuError::TooLarge { bytes: bytes as u64, limit: self.max_buffer_bytes() });
        }
        Ok(())
    }

    fn create<T: Pod>(&self, v: &[T]) -> Result<Handle, GpuError> {
        let bytes = bytes_of(v);
        self.check_size(bytes.len())?;
        Ok(with_client!(self, |c: R| {
            let _ = std::marker::PhantomData::<R>;
            c.create_from_slice(&bytes)
        }))
    }

    fn zeros(&self, bytes: usize) -> Result<Handle, GpuError> {
        self.create(&vec![0u8; bytes])
    }

    /// Device memory for a kernel to overwrite entirely (not initialised, not uploaded).
    fn output(&self, bytes: usize) -> Result<Handle, GpuError> {
        let bytes = padded_len(bytes);
        self.check_size(bytes)?;
        Ok(with_client!(self, |c: R| {
            let _ = std::marker::PhantomData::<R>;
            c.empty(bytes)
        }))
    }

    /// A word the next kernel sets to 1. wgpu only logs a kernel that fails to compile and
    /// leaves its outputs as they were; every read checks the witnesses of the kernels
    /// behind the data and reports `GpuError::Runtime` instead of returning stale memory.
    fn witness(&self) -> Result<Handle, GpuError> {
        self.zeros(4)
    }

    fn check_witnesses(&self, witnesses: &[Handle]) -> Result<(), GpuError> {
        for w in witnesses {
            let ran: Vec<u32> = with_client!(self, |c: R| read_pod::<u32, R>(c, w.clone(), 1))?;
            if ran[0] != 1 {
                return Err(GpuError::Runtime("a kernel did not run (compilation failed; see the log)".into()));
            }
        }
        Ok(())
    }

    /// Copies a host matrix to the device (the span from its first to its last element,
    /// row gaps included, so the stride is kept). At most `2^31 − 2` elements: the kernels
    /// index with 32-bit integers.
    pub fn upload<T: LogitElem>(&self, x: Mat<'_, T>) -> Result<GpuLogits, GpuError> {
        check_elements(x.span().len())?;
        // A 16-bit gradient may pad each row by one element.
        check_elements(x.rows() * (x.cols() + 1))?;
        guarded("upload", || {
            let span = x.span();
            let handle = self.create(span)?;
            let units = padded_len(std::mem::size_of_val(span)) / 4;
            Ok(GpuLogits {
                handle,
                units,
                dtype: T::DTYPE,
                rows: x.rows(),
                cols: x.cols(),
                stride: x.row_stride(),
                gpu: self.id,
                witnesses: Vec::new(),
            })
        })
    }

    /// Copies a device matrix into `out` (same shape and element type; `out`'s own stride;
    /// the elements between its rows are not touched).
    pub fn download<T: GradElem>(&self, x: &GpuLogits, mut out: MatMut<'_, T>) -> Result<(), GpuError> {
        self.own(x.gpu)?;
        if T::DTYPE != x.dtype {
            return Err(GpuError::Unsupported("download into a different element type"));
        }
        check_len("download rows", x.rows, out.rows())?;
        check_len("download columns", x.cols, out.cols())?;
        guarded("download", || {
            self.check_witnesses(&x.witnesses)?;
            let n = if x.rows == 0 { 0 } else { (x.rows - 1) * x.stride + x.cols };
            let data: Vec<T> = with_client!(self, |c: R| read_pod::<T, R>(c, x.handle.clone(), n))?;
            for r in 0..x.rows {
                out.row_mut(r).copy_from_slice(&data[r * x.stride..r * x.stride + x.cols]);
            }
            Ok(())
        })
    }

    /// A device-to-device copy of `x` by a vectorized copy kernel (the bandwidth yardstick
    /// of `bench/gpu`).
    pub fn copy(&self, x: &GpuLogits) -> Result<GpuLogits, GpuError> {
        self.own(x.gpu)?;
        guarded("copy", || {
            let words = x.units;
            let dst = self.output(words * 4)?;
            let witness = self.witness()?;
            with_client!(self, |c: R| {
                let vecs = words / 4;
                let cubes = vecs.div_ceil(CUBE_THREADS as usize).min(65_535 * 8);
                // Safe: both buffers hold `words` words (a multiple of 4, see `bytes_of`).
                unsafe {
                    copy::copy::launch_unchecked::<R>(
                        c,
                        kernels::grid(cubes),
                        CubeDim::new_1d(CUBE_THREADS),
                        4,
                        ArrayArg::from_raw_parts(x.handle.clone(), vecs),
                        ArrayArg::from_raw_parts(dst.clone(), vecs),
                        ArrayArg::from_raw_parts(witness.clone(), 1),
                        vecs,
                    )
                }
            });
            let mut witnesses = x.witnesses.clone();
            witnesses.push(witness);
            Ok(GpuLogits { handle: dst, witnesses, ..*x })
        })
    }

    /// The block tuples of `x`'s columns (a shard of a `vocab`-column vocabulary starting at
    /// `col_offset`), as `[rows, nblocks]` tuples of 5 words.
    fn block_partials(&self, x: &GpuLogits, rows: &RowArrays) -> Result<Partials, GpuError> {
        let nblocks = x.cols.div_ceil(BLOCK);
        let out = self.output(x.rows * nblocks * 20)?;
        let witness = self.witness()?;
        let keep = self.create(&rows.keep)?;
        let keep_arg = keep.clone();
        let inv_temp = self.create(&rows.inv_temp)?;
        let target = self.create(&rows.target)?;
        let limit = self.create(&rows.limit)?;
        // One thread per (row, block, lane); the cubes' threads run on in the next row.
        let threads = x.rows * nblocks * LANES;
        // `z = x` everywhere when every `inv_temp` is 1 (core skips the multiply too).
        let scaled = rows.inv_temp.iter().any(|&t| t != 1.0);
        with_client!(self, |c: R| {
            // Safe: the kernel reads rows `[0, rows)` of `x` (inside its buffer) and the
            // per-row arrays, and writes `rows·nblocks` tuples.
            unsafe {
                block_stats::block_partials::launch_unchecked::<R>(
                    c,
                    kernels::grid(threads.div_ceil(self.block_threads as usize)),
                    CubeDim::new_1d(self.block_threads),
                    ArrayArg::from_raw_parts(x.handle.clone(), x.units),
                    ArrayArg::from_raw_parts(keep, x.rows.max(1)),
                    ArrayArg::from_raw_parts(inv_temp, x.rows.max(1)),
                    ArrayArg::from_raw_parts(limit, x.rows.max(1)),
                    ArrayArg::from_raw_parts(target, x.rows.max(1)),
                    ArrayArg::from_raw_parts(out.clone(), x.rows * nblocks * 5),
                    ArrayArg::from_raw_parts(witness.clone(), 1),
                    x.rows,
                    x.cols,
                    nblocks,
                    x.stride,
                    0,
                    0,
                    kernel_dtype(x.dtype),
                    scaled,
                )
            }
        });
        Ok(Partials { tuples: out, nblocks, witness, keep: keep_arg })
    }

    /// Forward: `lse`, `entropy`, `logp` (with targets), `max` and `log_sum` of every row,
    /// left on the device; read them with [`Gpu::read_stats`]. Same math, operation order and policies
    /// as `tokenmath_core::logits::stats_fwd`; errors found during the pass (a row without a
    /// finite logit, a missing target) are reported by the read.
    pub fn stats_fwd(&self, x: &GpuLogits, inputs: &RowInputs<'_>) -> Result<GpuStats, GpuError> {
        self.own(x.gpu)?;
        if x.cols == 0 {
            return Err(TmError::EmptyVocab.into());
        }
        inputs.validate(x.rows, x.cols)?;
        guarded("stats_fwd", || {
            let rows = RowArrays::new(inputs, x.rows, 0, x.cols);
            let parts = self.block_partials(x, &rows)?;
            let want: Vec<u32> = (0..x.rows).map(|r| (inputs.keep(r) && inputs.target(r).is_some()) as u32).collect();
            let outs: Vec<Handle> = (0..6).map(|_| self.output(x.rows * 4)).collect::<Result<_, _>>()?;
            let want = self.create(&want)?;
            let unused = self.output(20)?;
            let merge_witness = self.witness()?;
            self.launch_merge(&parts, want, unused, &outs, merge_witness.clone(), x.rows, true);
            let [lse, logp, entropy, max, log_sum, code] = <[Handle; 6]>::try_from(outs).expect("six outputs");
            Ok(GpuStats {
                rows: x.rows,
                max,
                log_sum,
                entropy,
                fwd: Some((lse, logp, code)),
                has_targets: inputs.targets.is_some(),
                gpu: self.id,
                witnesses: vec![parts.witness, merge_witness],
            })
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn launch_merge(
        &self,
        parts: &Partials,
        want: Handle,
        merged: Handle,
        outs: &[Handle],
        witness: Handle,
        rows: usize,
        finalize: bool,
    ) {
        let nblocks = parts.nblocks;
        with_client!(self, |c: R| {
            let per_row = |h: &Handle| unsafe { ArrayArg::<R>::from_raw_parts(h.clone(), rows.max(1)) };
            // Safe: one thread per row reads its `nblocks` tuples and writes its own slots.
            unsafe {
                merge::merge_rows::launch_unchecked::<R>(
                    c,
                    kernels::grid(rows.div_ceil(64)),
                    CubeDim::new_1d(64),
                    ArrayArg::from_raw_parts(parts.tuples.clone(), rows * nblocks * 5),
                    ArrayArg::from_raw_parts(parts.keep.clone(), rows.max(1)),
                    ArrayArg::from_raw_parts(want, rows.max(1)),
                    ArrayArg::from_raw_parts(merged, rows.max(1) * 5),
                    per_row(&outs[0]),
                    per_row(&outs[1]),
                    per_row(&outs[2]),
                    per_row(&outs[3]),
                    per_row(&outs[4]),
                    per_row(&outs[5]),
                    ArrayArg::from_raw_parts(witness, 1),
                    rows,
                    nblocks,
                    0,
                    finalize,
                )
            }
        });
    }

    /// Copies the forward's outputs into `out` and reports the status, with the policies
    /// of `stats_fwd` (`NoFiniteLogit` / `MissingTarget` for the first such row).
    pub fn read_stats(&self, st: &GpuStats, out: FwdOut<'_>) -> Result<Status, GpuError> {
        self.own(st.gpu)?;
        let Some((lse_h, logp_h, code_h)) = &st.fwd else {
            return Err(GpuError::Unsupported("statistics uploaded with upload_saved have no forward outputs"));
        };
        check_len("lse", st.rows, out.lse.len())?;
        check_len("entropy", st.rows, out.entropy.len())?;
        if let Some(l) = &out.logp {
            if !st.has_targets {
                return Err(TmError::InvalidArgument("a logp output needs RowInputs::targets").into());
            }
            check_len("logp", st.rows, l.len())?;
        }
        if let Some(m) = &out.max {
            check_len("max", st.rows, m.len())?;
        }
        if let Some(l) = &out.log_sum {
            check_len("log_sum", st.rows, l.len())?;
        }
        guarded("read_stats", || {
            self.check_witnesses(&st.witnesses)?;
            let n = st.rows;
            let (code, lse, entropy, logp, max, log_sum) = with_client!(self, |c: R| {
                (
                    read_pod::<u32, R>(c, code_h.clone(), n)?,
                    read_pod::<f32, R>(c, lse_h.clone(), n)?,
                    read_pod::<f32, R>(c, st.entropy.clone(), n)?,
                    read_pod::<f32, R>(c, logp_h.clone(), n)?,
                    read_pod::<f32, R>(c, st.max.clone(), n)?,
                    read_pod::<f32, R>(c, st.log_sum.clone(), n)?,
                )
            });
            let mut status = Status::default();
            for (r, &c) in code.iter().enumerate() {
                match c {
                    merge::CODE_OK => {}
                    merge::CODE_NONFINITE => {
                        status.nonfinite_rows += 1;
                        status.first_nonfinite_row.get_or_insert(r);
                    }
                    merge::CODE_NO_FINITE_LOGIT => return Err(TmError::NoFiniteLogit { row: r }.into()),
                    merge::CODE_MISSING_TARGET => return Err(TmError::MissingTarget { row: r }.into()),
                    other => return Err(GpuError::Runtime(format!("row {r}: unknown status code {other}"))),
                }
            }
            out.lse.copy_from_slice(&lse);
            out.entropy.copy_from_slice(&entropy);
            if let Some(l) = out.logp {
                l.copy_from_slice(&logp);
            }
            if let Some(m) = out.max {
                m.copy_from_slice(&max);
            }
            if let Some(l) = out.log_sum {
                l.copy_from_slice(&log_sum);
            }
            Ok(status)
        })
    }

    /// Puts statistics saved on the host (`max`, `log_sum`, `entropy` from any backend's
    /// forward) on the device for [`Gpu::stats_bwd`].
    pub fn upload_saved(&self, saved: tokenmath_core::logits::Saved<'_>) -> Result<GpuStats, GpuError> {
        check_len("log_sum", saved.max.len(), saved.log_sum.len())?;
        check_len("entropy", saved.max.len(), saved.entropy.len())?;
        guarded("upload_saved", || {
            Ok(GpuStats {
                rows: saved.max.len(),
                max: self.create(saved.max)?,
                log_sum: self.create(saved.log_sum)?,
                entropy: self.create(saved.entropy)?,
                fwd: None,
                has_targets: false,
                gpu: self.id,
                witnesses: Vec::new(),
            })
        })
    }

    fn validate_shard(x: &GpuLogits, shard: Shard) -> Result<(), GpuError> {
        if shard.vocab == 0 {
            return Err(TmError::EmptyVocab.into());
        }
        if shard.col_offset.checked_add(x.cols).is_none_or(|end| end > shard.vocab) {
            return Err(
                TmError::ShardOutOfRange { col_offset: shard.col_offset, cols: x.cols, vocab: shard.vocab }.into()
            );
        }
        Ok(())
    }

    /// Per-block partials of a vocabulary shard: `core`'s `stats_partial_blocks`, computed
    /// in its order (the same bits on a device with a fused `fma`, see
    /// [`Gpu::fused_fma`]). Merged with `core::logits::merge_block_partials` (with partials
    /// from the CPU or other GPUs), they give the unsharded forward.
    pub fn stats_partial_blocks(
        &self,
        x: &GpuLogits,
        shard: Shard,
        inputs: &RowInputs<'_>,
        mut out: MatMut<'_, RowStats>,
    ) -> Result<(), GpuError> {
        self.own(x.gpu)?;
        Self::validate_shard(x, shard)?;
        if !shard.col_offset.is_multiple_of(BLOCK) {
            return Err(
                TmError::InvalidArgument("per-block partials need a shard that starts on a multiple of BLOCK").into()
            );
        }
        inputs.validate(x.rows, shard.vocab)?;
        check_len("block partials rows", x.rows, out.rows())?;
        check_len("block partials columns", x.cols.div_ceil(BLOCK), out.cols())?;
        if x.rows == 0 || x.cols == 0 {
            return Ok(());
        }
        guarded("stats_partial_blocks", || {
            let rows = RowArrays::new(inputs, x.rows, shard.col_offset, x.cols);
            let Partials { tuples, nblocks, witness, .. } = self.block_partials(x, &rows)?;
            self.check_witnesses(&[witness])?;
            let tuples: Vec<RowStats> =
                with_client!(self, |c: R| read_pod::<RowStats, R>(c, tuples, x.rows * nblocks))?;
            for r in 0..x.rows {
                out.row_mut(r).copy_from_slice(&tuples[r * nblocks..(r + 1) * nblocks]);
            }
            Ok(())
        })
    }

    /// One partial tuple per row for a vocabulary shard: `core`'s `stats_partial`, in its
    /// order (combine with `core::logits::merge_shards`, finish with `finalize_rows`).
    pub fn stats_partial(
        &self,
        x: &GpuLogits,
        shard: Shard,
        inputs: &RowInputs<'_>,
        out: &mut [RowStats],
    ) -> Result<(), GpuError> {
        self.own(x.gpu)?;
        Self::validate_shard(x, shard)?;
        inputs.validate(x.rows, shard.vocab)?;
        check_len("partial stats output", x.rows, out.len())?;
        if x.cols == 0 {
            out.fill(RowStats::EMPTY);
            return Ok(());
        }
        if x.rows == 0 {
            return Ok(());
        }
        guarded("stats_partial", || {
            let rows = RowArrays::new(inputs, x.rows, shard.col_offset, x.cols);
            let parts = self.block_partials(x, &rows)?;
            let merged = self.output(x.rows * 20)?;
            let unused: Vec<Handle> = (0..6).map(|_| self.output(4)).collect::<Result<_, _>>()?;
            let want = self.zeros(x.rows * 4)?;
            let merge_witness = self.witness()?;
            self.launch_merge(&parts, want, merged.clone(), &unused, merge_witness.clone(), x.rows, false);
            self.check_witnesses(&[parts.witness, merge_witness])?;
            let tuples: Vec<RowStats> = with_client!(self, |c: R| read_pod::<RowStats, R>(c, merged, x.rows))?;
            out.copy_from_slice(&tuples);
            Ok(())
        })
    }

    /// The backward's per-row arrays, validated.
    fn grad_rows(
        &self,
        x: &GpuLogits,
        inputs: &RowInputs<'_>,
        saved: &GpuStats,
        up: &Upstream<'_>,
    ) -> Result<(Handle, Handle), GpuError> {
        self.own(x.gpu)?;
        self.own(saved.gpu)?;
        if x.cols == 0 {
            return Err(TmError::EmptyVocab.into());
        }
        inputs.validate(x.rows, x.cols)?;
        check_len("saved statistics", x.rows, saved.rows)?;
        for (what, g) in [("g_logp", up.g_logp), ("g_entropy", up.g_entropy), ("g_lse", up.g_lse)] {
            if let Some(g) = g {
                check_len(what, x.rows, g.len())?;
            }
        }
        let rows = RowArrays::new(inputs, x.rows, 0, x.cols);
        let at = |g: Option<&[f32]>, r: usize| g.map_or(0.0, |g| g[r]).to_bits();
        let mut params = Vec::with_capacity(6 * x.rows);
        for r in 0..x.rows {
            let g_lp = if inputs.target(r).is_some() { at(up.g_logp, r) } else { 0 };
            params.extend_from_slice(&[
                rows.keep[r],
                g_lp,
                at(up.g_entropy, r),
                at(up.g_lse, r),
                rows.inv_temp[r].to_bits(),
                rows.limit[r].to_bits(),
            ]);
        }
        Ok((self.create(&params)?, self.create(&rows.target)?))
    }

    /// Backward into a new dense device matrix of element type `O`: `∂L/∂x` for
    /// `L = Σ_rows (g_lse·lse + g_logp·logp + g_entropy·entropy)`, with `core`'s math and
    /// policies (`tokenmath_core::logits::stats_bwd`). `saved` comes from
    /// [`Gpu::stats_fwd`] on the same logits, temperature and mask, or from
    /// [`Gpu::upload_saved`].
    pub fn stats_bwd<O: GradElem>(
        &self,
        x: &GpuLogits,
        inputs: &RowInputs<'_>,
        saved: &GpuStats,
        up: Upstream<'_>,
    ) -> Result<GpuLogits, GpuError> {
        guarded("stats_bwd", || {
            let (params, target) = self.grad_rows(x, inputs, saved, &up)?;
            let mut out = self.grad_output(x, O::DTYPE)?;
            let nchunks = x.cols.div_ceil(grad::CHUNK);
            let witness = self.witness()?;
            with_client!(self, |c: R| {
                let per_row =
                    |h: &Handle, n: usize| unsafe { ArrayArg::<R>::from_raw_parts(h.clone(), n * x.rows.max(1)) };
                // Safe: reads rows `[0, rows)` of `x` and the per-row arrays, writes rows
                // `[0, rows)` of the new `[rows, out_stride]` buffer.
                unsafe {
                    grad::grad::launch_unchecked::<R>(
                        c,
                        kernels::grid(x.rows * nchunks),
                        CubeDim::new_1d(CUBE_THREADS),
                        ArrayArg::from_raw_parts(x.handle.clone(), x.units),
                        ArrayArg::from_raw_parts(out.handle.clone(), out.units),
                        per_row(&params, 6),
                        per_row(&saved.max, 1),
                        per_row(&saved.log_sum, 1),
                        per_row(&saved.entropy, 1),
                        per_row(&target, 1),
                        ArrayArg::from_raw_parts(witness.clone(), 1),
                        x.rows,
                        x.cols,
                        nchunks,
                        x.stride,
                        0,
                        out.stride,
                        0,
                        kernel_dtype(x.dtype),
                        kernel_dtype(out.dtype),
                    )
                }
            });
            out.witnesses = saved.witnesses.iter().cloned().chain([witness]).collect();
            Ok(out)
        })
    }

    /// A new dense `[rows, cols]` device matrix of `dtype` for a gradient, not initialised
    /// (16-bit outputs are written a word, two columns, at a time: rows start on words, so
    /// rows of odd length get one element of padding).
    fn grad_output(&self, x: &GpuLogits, dtype: DType) -> Result<GpuLogits, GpuError> {
        let stride = if dtype == DType::F32 { x.cols } else { x.cols.next_multiple_of(2) };
        let bytes = padded_len(x.rows * stride * dtype.size());
        Ok(GpuLogits {
            handle: self.output(bytes)?,
            units: bytes / 4,
            dtype,
            rows: x.rows,
            cols: x.cols,
            stride,
            gpu: self.id,
            witnesses: Vec::new(),
        })
    }

    /// In-place 16-bit gradients write whole 32-bit words: rows must not share one.
    fn check_inplace(x: &GpuLogits) -> Result<(), GpuError> {
        if x.dtype != DType::F32 && !x.stride.is_multiple_of(2) && x.rows > 1 {
            return Err(GpuError::Unsupported(
                "in-place 16-bit gradient with an odd row stride (rows would share 32-bit words)",
            ));
        }
        Ok(())
    }

    /// Backward written over the logits in device memory (as Liger does); see
    /// [`Gpu::stats_bwd`]. `bf16`/`f16` logits need an even row stride (or a single row).
    pub fn stats_bwd_inplace(
        &self,
        x: &mut GpuLogits,
        inputs: &RowInputs<'_>,
        saved: &GpuStats,
        up: Upstream<'_>,
    ) -> Result<(), GpuError> {
        Self::check_inplace(x)?;
        guarded("stats_bwd_inplace", || {
            let (params, target) = self.grad_rows(x, inputs, saved, &up)?;
            let nchunks = x.cols.div_ceil(grad::CHUNK);
            let witness = self.witness()?;
            with_client!(self, |c: R| {
                let per_row =
                    |h: &Handle, n: usize| unsafe { ArrayArg::<R>::from_raw_parts(h.clone(), n * x.rows.max(1)) };
                // Safe: each thread reads and writes its own elements of rows `[0, rows)`.
                unsafe {
                    grad::grad_inplace::launch_unchecked::<R>(
                        c,
                        kernels::grid(x.rows * nchunks),
                        CubeDim::new_1d(CUBE_THREADS),
                        ArrayArg::from_raw_parts(x.handle.clone(), x.units),
                        per_row(&params, 6),
                        per_row(&saved.max, 1),
                        per_row(&saved.log_sum, 1),
                        per_row(&saved.entropy, 1),
                        per_row(&target, 1),
                        ArrayArg::from_raw_parts(witness.clone(), 1),
                        x.rows,
                        x.cols,
                        nchunks,
                        x.stride,
                        0,
                        0,
                        kernel_dtype(x.dtype),
                    )
                }
            });
            x.witnesses.extend(saved.witnesses.iter().cloned());
            x.witnesses.push(witness);
            Ok(())
        })
    }
}
