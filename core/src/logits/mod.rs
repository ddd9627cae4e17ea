//! Row-wise softmax statistics of logits: log-sum-exp, entropy, target log-prob, their
//! gradient, and mergeable vocabulary-shard partials.
//!
//! # The math
//!
//! For one row of raw logits `x_v`, `v ∈ [0, V)`, and a temperature `temp > 0`:
//!
//! ```text
//! z_v     = x_v · inv_temp            inv_temp = 1/temp rounded once to f32
//! max     = max_v z_v                 (m)
//! log_sum = log Σ_v exp(z_v − m)
//! lse     = log Σ_v exp(z_v) = m + log_sum
//! p_v     = exp((z_v − m) − log_sum)
//! logp    = z_t − lse                 (t = the row's target; 0 for rows without one)
//! entropy = −Σ_v p_v log p_v = lse − E_p[z]        (nats, of the tempered distribution)
//! ```
//!
//! The gradient of `L = Σ_rows (g_lse·lse + g_lp·logp + g_H·entropy)` w.r.t. the raw logits,
//! with `log p_j = (z_j − m) − log_sum`:
//!
//! ```text
//! ∂L/∂x_j = inv_temp · ( p_j·(g_lse − g_lp − g_H·(log p_j + entropy)) + g_lp·1[j = t] )
//! ```
//!
//! The backward reads `max`, `log_sum` and `entropy` saved by the forward, never `lse`:
//! `lse` is rounded at the magnitude of `m`, so at `m = 1e4` its rounding (5e-4) is a
//! relative error of every `p_j`, and at `m = −3.4e38` it swallows `log_sum` whole. `z − m`
//! is exact for the columns that carry the probability mass.
//!
//! # The algorithm: one pass, centred, in a fixed order
//!
//! Each row is cut into blocks of [`BLOCK`] columns. A block is read twice while it sits in
//! L1 (first its maximum `m`, then `s = Σ exp(z − m)` and `u = Σ exp(z − m)·(z − m)`), giving a
//! [`RowStats`] tuple; tuples are merged in the split-tree order of RFC 6962 (split at the
//! largest power of two below `n`). Probabilities are never materialised; every term of `s`
//! is in `(0, 1]`, so nothing overflows, and `entropy = log s − u/s` is a sum of two
//! non-negative numbers, so `entropy ≥ 0` and `logp ≤ 0` hold exactly in floating point —
//! also for logits with a common offset of `1e4` or `1e30`, where the uncentred
//! `lse − Σ p·z` loses every digit.
//!
//! The in-block order (8 interleaved lanes, folded in halves) and the `exp` are shared by
//! every backend ([`crate::Backend`]), so the portable and SIMD paths give identical bits;
//! rows are independent, so results do not depend on the thread count, on which other rows
//! are in the batch, or on their order.
//!
//! # Vocabulary shards
//!
//! Two granularities, both finished by [`finalize_rows`]:
//!
//! * [`stats_partial`] gives one tuple per row (20 bytes) for a column range, and
//!   [`merge_shards`] combines the shards in the split-tree order. When every shard but the
//!   last holds the same power-of-two number of blocks, the result equals the unsharded
//!   [`stats_fwd`] **bitwise**; other shardings agree within rounding.
//! * [`stats_partial_blocks`] gives the tuple of every canonical block (20 bytes per
//!   `BLOCK` columns), and [`merge_block_partials`] folds them with exactly the tree
//!   [`stats_fwd`] uses: **bitwise** equal for every sharding whose boundaries are multiples
//!   of [`BLOCK`], of any sizes.
//!
//! The tuples are plain `#[repr(C)]` data ([`RowStats`] is `bytemuck::Pod`): a
//! tensor-parallel trainer all-gathers them with its own collectives and every rank merges.
//! The backward then runs on each rank's shard alone ([`stats_bwd_shard`]) with the merged
//! statistics: the gradient is elementwise, so each shard's gradient is bitwise the slice of
//! the unsharded one whenever the saved statistics are the same bits.
//!
//! # Edge-case policies
//!
//! | input | result |
//! |---|---|
//! | `−inf` logits (masked vocabulary) | valid; they contribute nothing and get gradient exactly 0 (or `g_lp·inv_temp` at the target) |
//! | a row whose logits are all `−inf` | [`TmError::NoFiniteLogit`] |
//! | a NaN or `+inf` logit | that row's `lse`, `logp`, `entropy`, `max`, `log_sum` and gradient are NaN; counted in [`Status::nonfinite_rows`] |
//! | `V == 0` | [`TmError::EmptyVocab`] |
//! | `target ≥ V` | [`TmError::TargetOutOfRange`] (checked before anything is written) |
//! | `target < 0` (e.g. `−100`) | no target: `logp = 0`, `g_lp` ignored |
//! | temperature not finite, `≤ 0`, or with `1/temperature` overflowing `f32` (below ~2.9e-39) | [`TmError::InvalidTemperature`] |
//! | `row_mask[r] == 0` | row `r` is not read; its outputs and gradient row are 0 (its target and temperature are not validated) |
//! | buffer lengths that do not match | [`TmError::LengthMismatch`] |
//! | `z − m < −87.68` (`round((z − m)·log2 e) < −126`; `−inf` included) | that term is exactly 0: it is below `2^-126 ≈ 1.2e-38`, under any `f32` rounding of the row's sums |
//!
//! On an error found during the pass ([`TmError::NoFiniteLogit`], [`TmError::MissingTarget`])
//! the output contents are unspecified; nothing outside them is written. Row numbers in
//! errors and in [`Status`] count from the first row of the matrix passed in.

mod portable;
use crate::exp;

/// The constants of the canonical operation order, for backends outside this crate (the
/// GPU kernels) that reproduce it: the shared `exp` (see the private `exp` module's docs:
/// `n = round(d·LOG2E)` via `ROUND_MAGIC`, `r = fma(n, −LN2, d)`, the polynomial
/// `Q4..Q0`, the scale `2^n` from `bits(t) + EXP_BIAS_FIX`, arguments clamped to
/// `EXP_CLAMP`), and the number of interleaved lanes of a block's sums.
pub mod canonical {
    pub use super::exp::{EXP_BIAS_FIX, EXP_CLAMP, LN2, LOG2E, Q0, Q1, Q2, Q3, Q4, ROUND_MAGIC};
    pub use super::portable::LANES;
}
mod row_stats;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_avx512;

pub use row_stats::{Finalized, RowStats};

use half::{bf16, f16};

use crate::elem::{DType, GradElem, LogitElem};
use crate::error::{check_len, TmError};
use crate::mat::{Mat, MatMut};
use crate::platform::{Backend, Exec};
pub(crate) use portable::{temper, GradRow};

/// Columns per canonical block (`BV`). Shards aligned to multiples of
/// `BLOCK · 2^k` columns reproduce unsharded results bitwise.
pub const BLOCK: usize = 2048;

/// Sampling temperature applied to every row before any statistic.
#[derive(Clone, Copy, Debug)]
pub enum Temperature<'a> {
    /// One temperature for every row.
    Scalar(f32),
    /// One temperature per row (`len == rows`).
    PerRow(&'a [f32]),
}

impl Default for Temperature<'_> {
    fn default() -> Self {
        Temperature::Scalar(1.0)
    }
}

/// The per-row inputs shared by the forward, the partials and the backward.
#[derive(Clone, Copy, Debug, Default)]
pub struct RowInputs<'a> {
    /// Target column per row; negative = no target for that row. `None` = no targets.
    pub targets: Option<&'a [i32]>,
    /// `0` = skip the row entirely (any non-zero byte is "keep"). `None` = keep all.
    pub row_mask: Option<&'a [u8]>,
    /// Temperature (default 1).
    pub temperature: Temperature<'a>,
}

impl RowInputs<'_> {
    /// Whether row `row` is kept (no mask, or a non-zero mask byte).
    pub fn keep(&self, row: usize) -> bool {
        self.row_mask.is_none_or(|m| m[row] != 0)
    }

    /// The target column of row `row`, or `None` (no targets, or a negative target).
    pub fn target(&self, row: usize) -> Option<usize> {
        self.targets.and_then(|t| usize::try_from(t[row]).ok())
    }

    /// `1/temperature` of row `row`, rounded once to `f32` (the factor every kernel applies).
    pub fn inv_temp(&self, row: usize) -> f32 {
        match self.temperature {
            Temperature::Scalar(t) => 1.0 / t,
            Temperature::PerRow(t) => 1.0 / t[row],
        }
    }

    /// Validates lengths, targets (`< vocab`) and temperatures of the kept rows: the checks
    /// every entry point makes before it writes anything (other backends reuse them).
    pub fn validate(&self, rows: usize, vocab: usize) -> Result<(), TmError> {
        if let Some(m) = self.row_mask {
            check_len("row_mask", rows, m.len())?;
        }
        // `1/t` must be finite too: below ~2.9e-39 it overflows, and every tempered logit
        // would be ±inf or NaN.
        let valid_temp = |t: f32| t.is_finite() && t > 0.0 && (1.0 / t).is_finite();
        match self.temperature {
            Temperature::Scalar(t) if !valid_temp(t) => {
                return Err(TmError::InvalidTemperature { row: None, value: t })
            }
            Temperature::Scalar(_) => {}
            Temperature::PerRow(ts) => {
                check_len("temperature", rows, ts.len())?;
                if let Some(row) = (0..rows).find(|&r| self.keep(r) && !valid_temp(ts[r])) {
                    return Err(TmError::InvalidTemperature { row: Some(row), value: ts[row] });
                }
            }
        }
        if let Some(ts) = self.targets {
            check_len("targets", rows, ts.len())?;
            if let Some(row) = (0..rows).find(|&r| self.keep(r) && ts[r] >= 0 && ts[r] as usize >= vocab) {
                return Err(TmError::TargetOutOfRange { row, target: ts[row], vocab });
            }
        }
        Ok(())
    }
}

/// What a forward call reports besides its outputs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// Rows with a NaN or `+inf` logit (their outputs are NaN).
    pub nonfinite_rows: usize,
    /// The first such row.
    pub first_nonfinite_row: Option<usize>,
}

impl Status {
    #[cfg_attr(not(feature = "std"), allow(dead_code))]
    pub(crate) fn combine(self, later: Status) -> Status {
        Status {
            nonfinite_rows: self.nonfinite_rows + later.nonfinite_rows,
            first_nonfinite_row: self.first_nonfinite_row.or(later.first_nonfinite_row),
        }
    }
}

/// Per-row output buffers of the forward (each `len == rows`).
#[derive(Debug)]
pub struct FwdOut<'a> {
    /// `log Σ exp(z)`.
    pub lse: &'a mut [f32],
    /// Entropy in nats; needed by the backward.
    pub entropy: &'a mut [f32],
    /// Target log-prob (requires `RowInputs::targets`).
    pub logp: Option<&'a mut [f32]>,
    /// `max z`, the row maximum of the tempered logits; needed by the backward.
    pub max: Option<&'a mut [f32]>,
    /// `log Σ exp(z − max)` (`lse = max + log_sum`); needed by the backward.
    pub log_sum: Option<&'a mut [f32]>,
}

impl<'a> FwdOut<'a> {
    fn validate(&self, rows: usize, has_targets: bool) -> Result<(), TmError> {
        check_len("lse", rows, self.lse.len())?;
        check_len("entropy", rows, self.entropy.len())?;
        if let Some(l) = &self.logp {
            if !has_targets {
                return Err(TmError::InvalidArgument("a logp output needs RowInputs::targets"));
            }
            check_len("logp", rows, l.len())?;
        }
        if let Some(m) = &self.max {
            check_len("max", rows, m.len())?;
        }
        if let Some(l) = &self.log_sum {
            check_len("log_sum", rows, l.len())?;
        }
        Ok(())
    }

    fn write(&mut self, r: usize, f: Finalized) {
        self.lse[r] = f.lse;
        self.entropy[r] = f.entropy;
        if let Some(l) = self.logp.as_deref_mut() {
            l[r] = f.logp;
        }
        if let Some(m) = self.max.as_deref_mut() {
            m[r] = f.max;
        }
        if let Some(l) = self.log_sum.as_deref_mut() {
            l[r] = f.log_sum;
        }
    }
}

/// The statistics saved by the forward for the backward (each `len == rows`), all from
/// [`stats_fwd`] (or [`finalize_rows`]) on the same logits, temperature and mask.
///
/// Relative to the row maximum, so that the gradient is as accurate at an offset of `1e4`
/// or `−3.4e38` as at 0 (see the [module docs](self)).
#[derive(Clone, Copy, Debug)]
pub struct Saved<'a> {
    /// The forward's `max` output.
    pub max: &'a [f32],
    /// The forward's `log_sum` output.
    pub log_sum: &'a [f32],
    /// The forward's `entropy` output.
    pub entropy: &'a [f32],
}

/// Upstream gradients per row (`None` = zero; each `len == rows`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Upstream<'a> {
    /// `∂L/∂logp` (ignored for rows without a target).
    pub g_logp: Option<&'a [f32]>,
    /// `∂L/∂entropy`.
    pub g_entropy: Option<&'a [f32]>,
    /// `∂L/∂lse` (z-loss and the like).
    pub g_lse: Option<&'a [f32]>,
}

/// A vocabulary shard: global columns `[col_offset, col_offset + cols)` of a vocabulary of
/// `vocab` columns.
#[derive(Clone, Copy, Debug)]
pub struct Shard {
    /// First global column of the shard.
    pub col_offset: usize,
    /// Global vocabulary size (targets are validated against it).
    pub vocab: usize,
}

// ---------------------------------------------------------------------------------------
// Dispatch: the one place that maps (backend, dtype) to a kernel.
// ---------------------------------------------------------------------------------------

pub(crate) fn check_backend(b: Backend) -> Result<(), TmError> {
    if b.is_supported() {
        Ok(())
    } else {
        Err(TmError::BackendUnavailable)
    }
}

/// Tuple of a whole row (or shard row): blocks of `BLOCK` columns, merged in tree order.
pub(crate) fn row_tuple<T: LogitElem>(backend: Backend, row: &[T], inv_temp: f32) -> RowStats {
    let mut tree = row_stats::TreeStack::new();
    row_blocks(backend, row, inv_temp, |t| tree.push(t));
    tree.finish()
}

/// [`row_tuple`] (the same bits), calling `visit(start)` right after the block of columns
/// `[start, start + BLOCK)` has been reduced, while it is still in L1 (fused consumers such
/// as the Diversity-or-Precision top-k selection read it there).
pub(crate) fn row_tuple_visit<T: LogitElem>(
    backend: Backend,
    row: &[T],
    inv_temp: f32,
    mut visit: impl FnMut(usize),
) -> RowStats {
    let mut tree = row_stats::TreeStack::new();
    let mut start = 0;
    row_blocks(backend, row, inv_temp, |t| {
        tree.push(t);
        visit(start);
        start += BLOCK;
    });
    tree.finish()
}

/// Calls `sink` with the tuple of every `BLOCK`-column block of `row`, in column order.
fn row_blocks<T: LogitElem>(backend: Backend, row: &[T], inv_temp: f32, sink: impl FnMut(RowStats)) {
    if inv_temp == 1.0 {
        row_blocks_with::<T, false>(backend, row, inv_temp, sink)
    } else {
        row_blocks_with::<T, true>(backend, row, inv_temp, sink)
    }
}

fn row_blocks_with<T: LogitElem, const SCALE: bool>(
    backend: Backend,
    row: &[T],
    inv_temp: f32,
    mut sink: impl FnMut(RowStats),
) {
    match backend {
        Backend::Portable => {
            row.chunks(BLOCK).for_each(|b| sink(portable::block_stats::<T, SCALE>(b, inv_temp)));
        }
        #[cfg(target_arch = "x86_64")]
        Backend::Avx2Fma => {
            // Safe because `check_backend` verified AVX2+FMA+F16C before any kernel runs,
            // and the casts are between identical types (`T::DTYPE` names `T`).
            macro_rules! go {
                ($t:ty) => {
                    bytemuck::cast_slice::<T, $t>(row)
                        .chunks(BLOCK)
                        .for_each(|b| sink(unsafe { x86_avx2::block_stats::<$t, SCALE>(b, inv_temp) }))
                };
            }
            match T::DTYPE {
                DType::F32 => go!(f32),
                DType::BF16 => go!(bf16),
                DType::F16 => go!(f16),
            }
        }
        // Safe because `check_backend` verified AVX-512 F/BW/DQ/VL (and AVX2+FMA+F16C).
        #[cfg(target_arch = "x86_64")]
        Backend::Avx512 => {
            row.chunks(BLOCK).for_each(|b| sink(unsafe { x86_avx512::block_stats::<T, SCALE>(b, inv_temp) }))
        }
    }
}

/// A separate gradient output (`stream` in [`grad_row`]) at least this large, in bytes, is
/// written with non-temporal stores where the backend has them (`x86_avx512::grad_row`): it is
/// the size of the whole last-level cache of the machines measured, so a reader would not find
/// it there anyway, and the stores skip the read-before-write of every output line.
pub(crate) const STREAM_BYTES: usize = 32 << 20;

/// Gradient of one row: `dst[j] = dx_j` for every column but the target, and the target
/// column's value computed from `x_t` (read by the caller before an in-place pass).
/// `src == dst` (as raw pointers, `T == O`) is the in-place case. `stream`: `dst` is a separate
/// output of at least [`STREAM_BYTES`] in all, written with non-temporal stores by the AVX-512
/// backend (the same values).
///
/// # Safety
/// `src` and `dst` must be valid for `len` elements; they may be equal but must not
/// otherwise overlap (and not at all with `stream`).
pub(crate) unsafe fn grad_row<T: LogitElem, O: GradElem>(
    backend: Backend,
    src: *const T,
    dst: *mut O,
    len: usize,
    target: Option<(usize, f32)>,
    g: &GradRow,
    stream: bool,
) {
    if g.inv_temp == 1.0 {
        grad_row_with::<T, O, false>(backend, src, dst, len, target, g, stream)
    } else {
        grad_row_with::<T, O, true>(backend, src, dst, len, target, g, stream)
    }
}

unsafe fn grad_row_with<T: LogitElem, O: GradElem, const SCALE: bool>(
    backend: Backend,
    src: *const T,
    dst: *mut O,
    len: usize,
    target: Option<(usize, f32)>,
    g: &GradRow,
    stream: bool,
) {
    match backend {
        Backend::Portable => portable::grad_row::<T, O, SCALE>(src, dst, len, g),
        // Safe because `check_backend` verified the CPU features and the caller guarantees
        // the pointers.
        #[cfg(target_arch = "x86_64")]
        Backend::Avx512 if stream => x86_avx512::grad_row::<T, O, SCALE, true>(src, dst, len, g),
        #[cfg(target_arch = "x86_64")]
        Backend::Avx512 => x86_avx512::grad_row::<T, O, SCALE, false>(src, dst, len, g),
        #[cfg(target_arch = "x86_64")]
        Backend::Avx2Fma => {
            // Safe because `check_backend` verified the CPU features, the caller guarantees
            // the pointers, and each (T, O) pair below names its own types.
            macro_rules! go {
                ($t:ty, $o:ty) => {
                    x86_avx2::grad_row::<$t, $o, SCALE>(src as *const $t, dst as *mut $o, len, g)
                };
            }
            match (<T as LogitElem>::DTYPE, O::DTYPE) {
                (DType::F32, DType::F32) => go!(f32, f32),
                (DType::F32, DType::BF16) => go!(f32, bf16),
                (DType::F32, DType::F16) => go!(f32, f16),
                (DType::BF16, DType::F32) => go!(bf16, f32),
                (DType::BF16, DType::BF16) => go!(bf16, bf16),
                (DType::BF16, DType::F16) => go!(bf16, f16),
                (DType::F16, DType::F32) => go!(f16, f32),
                (DType::F16, DType::BF16) => go!(f16, bf16),
                (DType::F16, DType::F16) => go!(f16, f16),
            }
        }
    }
    if let Some((c, x_t)) = target {
        *dst.add(c) = O::from_f32(g.dx_target::<SCALE>(x_t));
    }
}

// ---------------------------------------------------------------------------------------
// Row-range drivers (one contiguous range of rows; the thread driver splits ranges).
// ---------------------------------------------------------------------------------------

/// Splits a set of per-row output buffers at a row.
pub(crate) trait SplitRows: Sized + Send {
    #[cfg_attr(not(feature = "std"), allow(dead_code))]
    fn split_rows(self, mid: usize) -> (Self, Self);
}

impl SplitRows for FwdOut<'_> {
    fn split_rows(self, mid: usize) -> (Self, Self) {
        let (lse_a, lse_b) = self.lse.split_at_mut(mid);
        let (h_a, h_b) = self.entropy.split_at_mut(mid);
        let (lp_a, lp_b) = split_opt(self.logp, mid);
        let (max_a, max_b) = split_opt(self.max, mid);
        let (ls_a, ls_b) = split_opt(self.log_sum, mid);
        (
            FwdOut { lse: lse_a, entropy: h_a, logp: lp_a, max: max_a, log_sum: ls_a },
            FwdOut { lse: lse_b, entropy: h_b, logp: lp_b, max: max_b, log_sum: ls_b },
        )
    }
}

#[cfg_attr(not(feature = "std"), allow(dead_code))]
fn split_opt(v: Option<&mut [f32]>, mid: usize) -> (Option<&mut [f32]>, Option<&mut [f32]>) {
    match v {
        Some(v) => {
            let (a, b) = v.split_at_mut(mid);
            (Some(a), Some(b))
        }
        None => (None, None),
    }
}

impl<T: Send> SplitRows for MatMut<'_, T> {
    fn split_rows(self, mid: usize) -> (Self, Self) {
        self.split_at_rows(mid)
    }
}

impl<T: Send> SplitRows for &mut [T] {
    fn split_rows(self, mid: usize) -> (Self, Self) {
        self.split_at_mut(mid)
    }
}

/// Runs `f(first_row, end_row, outputs)` over `threads` contiguous row ranges. The first
/// error in row order wins; statuses are combined in row order. Results are independent of
/// `threads` because every row is computed by the same code.
pub(crate) fn run_rows<O: SplitRows>(
    threads: usize,
    rows: usize,
    out: O,
    f: &(dyn Fn(usize, usize, O) -> Result<Status, TmError> + Sync),
) -> Result<Status, TmError> {
    #[cfg(feature = "std")]
    if threads > 1 && rows > 1 {
        let parts = threads.min(rows);
        return std::thread::scope(|scope| {
            // Parts 1.. go to new threads; part 0 runs on the calling thread, which would
            // otherwise sit idle in `join`.
            let first_end = rows / parts;
            let (first, mut rest) = out.split_rows(first_end);
            let mut handles = std::vec::Vec::with_capacity(parts - 1);
            let mut start = first_end;
            for k in 1..parts {
                let end = rows * (k + 1) / parts;
                let (mine, tail) = rest.split_rows(end - start);
                rest = tail;
                let s = start;
                handles.push(scope.spawn(move || f(s, end, mine)));
                start = end;
            }
            let mut results = std::vec![f(0, first_end, first)];
            for h in handles {
                results.push(h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
            }
            // Row order decides: the first error of the earliest part wins.
            results.into_iter().try_fold(Status::default(), |acc, r| r.map(|st| acc.combine(st)))
        });
    }
    let _ = threads;
    f(0, rows, out)
}

pub(crate) fn with_row(e: TmError, row: usize) -> TmError {
    match e {
        TmError::NoFiniteLogit { .. } => TmError::NoFiniteLogit { row },
        TmError::MissingTarget { .. } => TmError::MissingTarget { row },
        TmError::DuplicateTarget { .. } => TmError::DuplicateTarget { row },
        other => other,
    }
}

fn finalize_into(
    r: usize,
    global_row: usize,
    t: RowStats,
    want_target: bool,
    out: &mut FwdOut<'_>,
    status: &mut Status,
) -> Result<(), TmError> {
    let f = t.finalize(want_target).map_err(|e| with_row(e, global_row))?;
    if t.is_nonfinite() {
        status.nonfinite_rows += 1;
        status.first_nonfinite_row.get_or_insert(global_row);
    }
    out.write(r, f);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Public entry points.
// ---------------------------------------------------------------------------------------

/// Forward: `lse`, `entropy`, and optionally `logp`, `max` and `log_sum` (the latter two
/// for the backward) for every row, in one pass over the logits.
///
/// `x` is `[rows, V]` (any row stride) of `f32`, `bf16` or `f16`. See the
/// [module docs](self) for the math and the edge-case policies.
pub fn stats_fwd<T: LogitElem>(
    exec: Exec,
    x: Mat<'_, T>,
    inputs: &RowInputs<'_>,
    out: FwdOut<'_>,
) -> Result<Status, TmError> {
    check_backend(exec.backend)?;
    let (rows, vocab) = (x.rows(), x.cols());
    if vocab == 0 {
        return Err(TmError::EmptyVocab);
    }
    inputs.validate(rows, vocab)?;
    out.validate(rows, inputs.targets.is_some())?;
    let backend = exec.backend;
    run_rows(exec.threads, rows, out, &|start, end, mut out| {
        let mut status = Status::default();
        for r in start..end {
            let local = r - start;
            if !inputs.keep(r) {
                out.write(local, Finalized::ZERO);
                continue;
            }
            let row = x.row(r);
            let inv_temp = inputs.inv_temp(r);
            let mut t = row_tuple(backend, row, inv_temp);
            let target = inputs.target(r);
            if let Some(c) = target {
                t = t.with_target(row[c].to_f32() * inv_temp);
            }
            finalize_into(local, r, t, target.is_some(), &mut out, &mut status)?;
        }
        Ok(status)
    })
}

/// Partial statistics of a vocabulary shard: `x` holds global columns
/// `[shard.col_offset, shard.col_offset + x.cols())` of every row.
///
/// Targets are global column ids, validated against `shard.vocab`; the shard records the
/// target logit only if the target falls inside it. Masked rows give [`RowStats::EMPTY`].
/// Combine shards with [`merge_shards`] and finish with [`finalize_rows`].
pub fn stats_partial<T: LogitElem>(
    exec: Exec,
    x: Mat<'_, T>,
    shard: Shard,
    inputs: &RowInputs<'_>,
    out: &mut [RowStats],
) -> Result<(), TmError> {
    check_backend(exec.backend)?;
    let (rows, cols) = (x.rows(), x.cols());
    shard.validate(cols)?;
    inputs.validate(rows, shard.vocab)?;
    check_len("partial stats output", rows, out.len())?;
    let backend = exec.backend;
    run_rows(exec.threads, rows, out, &|start, end, out| {
        for r in start..end {
            let slot = &mut out[r - start];
            if !inputs.keep(r) || cols == 0 {
                *slot = RowStats::EMPTY;
                continue;
            }
            let row = x.row(r);
            let inv_temp = inputs.inv_temp(r);
            let mut t = row_tuple(backend, row, inv_temp);
            if let Some(c) = inputs.target(r) {
                if (shard.col_offset..shard.col_offset + cols).contains(&c) {
                    t = t.with_target(row[c - shard.col_offset].to_f32() * inv_temp);
                }
            }
            *slot = t;
        }
        Ok(Status::default())
    })
    .map(|_| ())
}

/// Merges per-shard partials (`parts[k]` = shard `k`'s `[rows]` tuples, shards in
/// column order) in the canonical split-tree order into `out`.
///
/// Errors: mismatched lengths; [`TmError::DuplicateTarget`] if two shards contain a row's
/// target (overlapping shards). An empty `parts` gives [`RowStats::EMPTY`] rows.
pub fn merge_shards(parts: &[&[RowStats]], out: &mut [RowStats]) -> Result<(), TmError> {
    for p in parts {
        check_len("shard partials", out.len(), p.len())?;
    }
    for (r, slot) in out.iter_mut().enumerate() {
        let mut tree = row_stats::TreeStack::new();
        let mut with_target = 0;
        for p in parts {
            with_target += p[r].has_target() as usize;
            tree.push(p[r]);
        }
        if with_target > 1 {
            return Err(TmError::DuplicateTarget { row: r });
        }
        *slot = if parts.is_empty() { RowStats::EMPTY } else { tree.finish() };
    }
    Ok(())
}

impl Shard {
    /// A non-empty vocabulary that holds all `cols` columns of the shard.
    fn validate(&self, cols: usize) -> Result<(), TmError> {
        if self.vocab == 0 {
            return Err(TmError::EmptyVocab);
        }
        if self.col_offset.checked_add(cols).is_none_or(|end| end > self.vocab) {
            return Err(TmError::ShardOutOfRange { col_offset: self.col_offset, cols, vocab: self.vocab });
        }
        Ok(())
    }
}

/// Number of block tuples [`stats_partial_blocks`] writes per row for a shard of `cols`
/// columns: `⌈cols / BLOCK⌉`.
pub fn partial_blocks_len(cols: usize) -> usize {
    cols.div_ceil(BLOCK)
}

/// Per-block partial statistics of a vocabulary shard: row `r` of `out`
/// (`[rows, partial_blocks_len(x.cols())]`) receives the tuple of every canonical block of the
/// shard, in column order (the target logit in the block that holds it).
///
/// Costs `20·⌈cols/BLOCK⌉` bytes per row instead of [`stats_partial`]'s 20, and buys a
/// stronger guarantee: merged with [`merge_block_partials`], shards whose boundaries are all
/// multiples of [`BLOCK`] (the last shard may end anywhere) reproduce [`stats_fwd`]
/// **bitwise**, whatever their sizes — so log-probs do not depend on the tensor-parallel
/// degree. `shard.col_offset` must be a multiple of `BLOCK`
/// ([`TmError::InvalidArgument`] otherwise).
pub fn stats_partial_blocks<T: LogitElem>(
    exec: Exec,
    x: Mat<'_, T>,
    shard: Shard,
    inputs: &RowInputs<'_>,
    out: MatMut<'_, RowStats>,
) -> Result<(), TmError> {
    check_backend(exec.backend)?;
    let (rows, cols) = (x.rows(), x.cols());
    shard.validate(cols)?;
    if !shard.col_offset.is_multiple_of(BLOCK) {
        return Err(TmError::InvalidArgument("per-block partials need a shard that starts on a multiple of BLOCK"));
    }
    inputs.validate(rows, shard.vocab)?;
    check_len("block partials rows", rows, out.rows())?;
    check_len("block partials columns", partial_blocks_len(cols), out.cols())?;
    let backend = exec.backend;
    run_rows(exec.threads, rows, out, &|start, end, mut out| {
        for r in start..end {
            let slots = out.row_mut(r - start);
            if !inputs.keep(r) {
                slots.fill(RowStats::EMPTY);
                continue;
            }
            let row = x.row(r);
            let inv_temp = inputs.inv_temp(r);
            let mut k = 0;
            row_blocks(backend, row, inv_temp, |t| {
                slots[k] = t;
                k += 1;
            });
            if let Some(c) = inputs.target(r) {
                if (shard.col_offset..shard.col_offset + cols).contains(&c) {
                    let local = c - shard.col_offset;
                    let slot = &mut slots[local / BLOCK];
                    *slot = slot.with_target(row[local].to_f32() * inv_temp);
                }
            }
        }
        Ok(Status::default())
    })
    .map(|_| ())
}

/// Merges per-block partials of shards (`parts[k]` = shard `k`'s `[rows, blocks_k]` output
/// of [`stats_partial_blocks`], shards in column order): every row's block tuples, taken in
/// column order across the shards, are combined in the canonical split-tree order — exactly
/// the tree [`stats_fwd`] builds, hence the same bits.
///
/// Errors: shards with different row counts; [`TmError::DuplicateTarget`].
pub fn merge_block_partials(parts: &[Mat<'_, RowStats>], out: &mut [RowStats]) -> Result<(), TmError> {
    for p in parts {
        check_len("block partials rows", out.len(), p.rows())?;
    }
    for (r, slot) in out.iter_mut().enumerate() {
        let mut tree = row_stats::TreeStack::new();
        let mut with_target = 0;
        let mut any = false;
        for t in parts.iter().flat_map(|p| p.row(r)) {
            with_target += t.has_target() as usize;
            tree.push(*t);
            any = true;
        }
        if with_target > 1 {
            return Err(TmError::DuplicateTarget { row: r });
        }
        *slot = if any { tree.finish() } else { RowStats::EMPTY };
    }
    Ok(())
}

/// Finalizes merged partials into the forward outputs (same policies as [`stats_fwd`]).
/// `inputs` must be the ones given to [`stats_partial`]; a kept row with a non-negative
/// target whose tuple lacks it is [`TmError::MissingTarget`].
pub fn finalize_rows(stats: &[RowStats], inputs: &RowInputs<'_>, mut out: FwdOut<'_>) -> Result<Status, TmError> {
    let rows = stats.len();
    if let Some(m) = inputs.row_mask {
        check_len("row_mask", rows, m.len())?;
    }
    if let Some(t) = inputs.targets {
        check_len("targets", rows, t.len())?;
    }
    out.validate(rows, inputs.targets.is_some())?;
    let mut status = Status::default();
    for (r, t) in stats.iter().enumerate() {
        if !inputs.keep(r) {
            out.write(r, Finalized::ZERO);
            continue;
        }
        finalize_into(r, r, *t, inputs.target(r).is_some(), &mut out, &mut status)?;
    }
    Ok(status)
}

fn validate_bwd(rows: usize, saved: &Saved<'_>, up: &Upstream<'_>) -> Result<(), TmError> {
    check_len("max", rows, saved.max.len())?;
    check_len("log_sum", rows, saved.log_sum.len())?;
    check_len("entropy", rows, saved.entropy.len())?;
    for (what, g) in [("g_logp", up.g_logp), ("g_entropy", up.g_entropy), ("g_lse", up.g_lse)] {
        if let Some(g) = g {
            check_len(what, rows, g.len())?;
        }
    }
    Ok(())
}

/// The row's gradient constants, or `None` if the saved statistics are not finite (the
/// forward flagged the row as non-finite): the gradient row is then NaN.
fn grad_params(r: usize, inputs: &RowInputs<'_>, saved: &Saved<'_>, up: &Upstream<'_>) -> Option<GradRow> {
    let (max, log_sum, entropy) = (saved.max[r], saved.log_sum[r], saved.entropy[r]);
    if !max.is_finite() || !log_sum.is_finite() || !entropy.is_finite() {
        return None;
    }
    let at = |g: Option<&[f32]>| g.map_or(0.0, |g| g[r]);
    let g_lp = if inputs.target(r).is_some() { at(up.g_logp) } else { 0.0 };
    Some(GradRow {
        inv_temp: inputs.inv_temp(r),
        max,
        log_sum,
        entropy,
        c: at(up.g_lse) - g_lp,
        neg_gh: -at(up.g_entropy),
        g_lp,
    })
}

/// Backward: writes `∂L/∂x` for `L = Σ_rows (g_lse·lse + g_logp·logp + g_entropy·entropy)`
/// into `dx` (`[rows, V]`, any stride, `f32`/`bf16`/`f16`: rounded once from `f32`).
///
/// Needs the `max`, `log_sum` and `entropy` saved by [`stats_fwd`] on the same logits,
/// temperature and mask. Rows whose saved statistics are NaN get a NaN gradient row; masked rows get 0;
/// the elements between rows of a strided `dx` are not touched.
pub fn stats_bwd<T: LogitElem, O: GradElem>(
    exec: Exec,
    x: Mat<'_, T>,
    inputs: &RowInputs<'_>,
    saved: Saved<'_>,
    up: Upstream<'_>,
    dx: MatMut<'_, O>,
) -> Result<(), TmError> {
    let vocab = x.cols();
    stats_bwd_shard(exec, x, Shard { col_offset: 0, vocab }, inputs, saved, up, dx)
}

/// Backward of a vocabulary shard: `x` holds global columns
/// `[shard.col_offset, shard.col_offset + x.cols())` of every row, and `dx` (`[rows, cols]`)
/// receives exactly those columns of [`stats_bwd`]'s output on the whole vocabulary.
///
/// `saved` are the full-vocabulary statistics (from [`finalize_rows`] on the merged
/// partials of every shard); targets are global column ids, validated against
/// `shard.vocab`. Every row's `g_lp` enters every column (through `p_j·g_lp`), so a shard
/// that does not hold the target still gets its share; only the target column itself adds
/// `g_lp·inv_temp`. The gradient is elementwise in the columns, so with the same saved
/// statistics the shard's gradient is **bitwise** the slice of the unsharded one, for any
/// shard boundaries (aligned or not). An empty shard (`cols == 0`) writes nothing.
///
/// Errors: those of [`stats_bwd`], and [`TmError::ShardOutOfRange`] for a shard that does
/// not fit in `shard.vocab` ([`TmError::EmptyVocab`] for `shard.vocab == 0`).
pub fn stats_bwd_shard<T: LogitElem, O: GradElem>(
    exec: Exec,
    x: Mat<'_, T>,
    shard: Shard,
    inputs: &RowInputs<'_>,
    saved: Saved<'_>,
    up: Upstream<'_>,
    dx: MatMut<'_, O>,
) -> Result<(), TmError> {
    check_backend(exec.backend)?;
    let (rows, cols) = (x.rows(), x.cols());
    shard.validate(cols)?;
    check_len("dx rows", rows, dx.rows())?;
    check_len("dx columns", cols, dx.cols())?;
    inputs.validate(rows, shard.vocab)?;
    validate_bwd(rows, &saved, &up)?;
    let backend = exec.backend;
    let local = |c: usize| c.checked_sub(shard.col_offset).filter(|&j| j < cols);
    let stream = rows.saturating_mul(cols).saturating_mul(core::mem::size_of::<O>()) >= STREAM_BYTES;
    run_rows(exec.threads, rows, dx, &|start, end, mut dx| {
        for r in start..end {
            let out = dx.row_mut(r - start);
            if !inputs.keep(r) {
                out.fill(O::from_f32(0.0));
                continue;
            }
            let Some(g) = grad_params(r, inputs, &saved, &up) else {
                out.fill(O::from_f32(f32::NAN));
                continue;
            };
            let row = x.row(r);
            let target = inputs.target(r).and_then(local).map(|j| (j, row[j].to_f32()));
            // Safe: `row` and `out` are distinct buffers of `cols` elements each.
            unsafe { grad_row(backend, row.as_ptr(), out.as_mut_ptr(), cols, target, &g, stream) };
        }
        Ok(Status::default())
    })
    .map(|_| ())
}

/// Backward written over the logits (as Liger does, saving an `[N, V]` buffer): same as
/// [`stats_bwd`] with `dx` aliasing `x` (same dtype, same layout).
pub fn stats_bwd_inplace<T: LogitElem + GradElem>(
    exec: Exec,
    x: MatMut<'_, T>,
    inputs: &RowInputs<'_>,
    saved: Saved<'_>,
    up: Upstream<'_>,
) -> Result<(), TmError> {
    check_backend(exec.backend)?;
    let (rows, vocab) = (x.rows(), x.cols());
    if vocab == 0 {
        return Err(TmError::EmptyVocab);
    }
    inputs.validate(rows, vocab)?;
    validate_bwd(rows, &saved, &up)?;
    let backend = exec.backend;
    run_rows(exec.threads, rows, x, &|start, end, mut x| {
        for r in start..end {
            let buf = x.row_mut(r - start);
            if !inputs.keep(r) {
                buf.fill(<T as GradElem>::from_f32(0.0));
                continue;
            }
            let Some(g) = grad_params(r, inputs, &saved, &up) else {
                buf.fill(<T as GradElem>::from_f32(f32::NAN));
                continue;
            };
            // The target logit is read before the row is overwritten.
            let target = inputs.target(r).map(|c| (c, buf[c].to_f32()));
            let p = buf.as_mut_ptr();
            // Safe: in place over one buffer of `vocab` elements (src == dst is allowed).
            unsafe { grad_row::<T, T>(backend, p, p, vocab, target, &g, false) };
        }
        Ok(Status::default())
    })
    .map(|_| ())
}

/// The finalized statistics of a row that is never stored: `fill(start, block)` writes the
/// row's columns `[start, start + block.len())` (already in `z` units, `f32`) into a
/// [`BLOCK`]-column stack buffer, block by block in column order, and returns the block's
/// maximum (NaN never winning) and a lower bound of its non-NaN values (pass 1 of the block
/// kernel, done while forming it); pass 2 of `backend`'s canonical block kernel and the
/// canonical tree merge follow, so the result is bitwise what [`stats_fwd`] gives on the
/// materialised row. `target` is `z_target`. Crate-internal: the cDPO contrastive rows
/// ([`crate::preference::cdpo`]) are formed on the fly from two models' logits.
pub(crate) fn streamed_row_finalize(
    backend: Backend,
    cols: usize,
    target: Option<f32>,
    mut fill: impl FnMut(usize, &mut [f32]) -> (f32, f32),
) -> (Result<Finalized, TmError>, bool) {
    streamed_row_finalize_stats(cols, target, |start, block| {
        let (m, mn) = fill(start, block);
        match backend {
            Backend::Portable => portable::block_stats_from_max::<f32, false>(block, 1.0, m),
            // Safe because the caller checked the backend before any row was read.
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2Fma | Backend::Avx512 => unsafe {
                x86_avx2::block_stats_from_extrema::<f32, false>(block, 1.0, m, mn)
            },
        }
    })
}

/// [`streamed_row_finalize`] for a caller that runs both passes of the block kernel itself:
/// `block(start, buf)` forms the columns `[start, start + buf.len())` into `buf` and returns
/// the block's `(m, s, u, nonfinite)` exactly as `backend`'s canonical block kernel would on
/// them (the cDPO AVX-512 path, [`crate::preference::cdpo`]); the canonical tree merge follows.
pub(crate) fn streamed_row_finalize_blocks(
    cols: usize,
    target: Option<f32>,
    mut block: impl FnMut(usize, &mut [f32]) -> (f32, f32, f32, bool),
) -> (Result<Finalized, TmError>, bool) {
    streamed_row_finalize_stats(cols, target, |start, buf| {
        let (m, s, u, nonfinite) = block(start, buf);
        row_stats::RowStats::from_block(m, s, u, nonfinite)
    })
}

/// The common loop: one block's [`row_stats::RowStats`] at a time, merged in tree order.
fn streamed_row_finalize_stats(
    cols: usize,
    target: Option<f32>,
    mut block: impl FnMut(usize, &mut [f32]) -> row_stats::RowStats,
) -> (Result<Finalized, TmError>, bool) {
    let mut buf = [0.0f32; BLOCK];
    let mut tree = row_stats::TreeStack::new();
    let mut start = 0;
    while start < cols {
        let len = BLOCK.min(cols - start);
        tree.push(block(start, &mut buf[..len]));
        start += len;
    }
    let mut t = tree.finish();
    if let Some(z_t) = target {
        t = t.with_target(z_t);
    }
    (t.finalize(target.is_some()), t.is_nonfinite())
}
