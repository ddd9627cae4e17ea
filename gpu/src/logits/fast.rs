//! The host side of the fast mode ([`GpuMode::Fast`], kernels in `kernels::fast`).

use cubecl::prelude::*;
use cubecl::server::Handle;
use tokenmath_core::logits::{RowInputs, Upstream};
use tokenmath_core::{DType, GradElem, TmError};

use super::{check_len, kernel_dtype, GpuLogits, GpuStats};
use crate::device::{guarded, with_client, Gpu};
use crate::kernels::fast::{self, PARAMS, P_C, P_GLP, P_INV_TEMP, P_KEEP, P_NEG_GH, P_TARGET};
use crate::kernels::{self, NO_TARGET};
use crate::GpuError;

#[cfg(feature = "cuda")]
mod launch_check;

/// How the GPU computes the logits statistics and their gradient. Both modes are
/// deterministic: the same bits for every launch, batch composition, row order and cube
/// size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GpuMode {
    /// `core`'s operation order: bitwise equal to the CPU on a device with a fused `fma`.
    #[default]
    Canonical,
    /// The hardware `exp` and a GPU-shaped reduction tree (`kernels::fast` documents the
    /// tree and the error bound against the exact result): one pass over the logits, near
    /// the memory bandwidth. Not bitwise equal to `core`.
    Fast,
}

impl GpuMode {
    /// Parses `"canonical"` or `"fast"`.
    pub fn from_name(name: &str) -> Option<GpuMode> {
        match name {
            "canonical" => Some(GpuMode::Canonical),
            "fast" => Some(GpuMode::Fast),
            _ => None,
        }
    }
}

/// Columns of one cube of the fast backward.
const GRAD_COLS_PER_CUBE: usize = 4 * fast::SEG;

/// The vector width (in 32-bit words) of a matrix's rows: rows start on word boundaries
/// (`word_rows`) and on `n`-word vectors.
fn row_vectors(dtype: DType, rows: usize, stride: usize) -> (usize, bool) {
    let per_word = if dtype == DType::F32 { 1 } else { 2 };
    if rows <= 1 {
        return (4, true);
    }
    if !stride.is_multiple_of(per_word) {
        return (1, false);
    }
    let words = stride / per_word;
    ([4usize, 2].into_iter().find(|n| words.is_multiple_of(*n)).unwrap_or(1), true)
}

/// The fast kernels' per-row parameter words (see `kernels::fast::P_*`); `up` only for
/// the gradient. Also says whether any kept row has a temperature other than 1.
fn row_params(inputs: &RowInputs<'_>, rows: usize, up: Option<&Upstream<'_>>) -> (Vec<u32>, bool) {
    let mut params = vec![0u32; rows * PARAMS];
    let mut scaled = false;
    for (r, p) in params.chunks_exact_mut(PARAMS).enumerate() {
        let keep = inputs.keep(r);
        let it = if keep { inputs.inv_temp(r) } else { 1.0 };
        scaled |= it != 1.0;
        let target = inputs.target(r).filter(|_| keep);
        p[P_KEEP] = keep as u32;
        p[P_INV_TEMP] = it.to_bits();
        p[P_TARGET] = target.map_or(NO_TARGET, |t| t as u32);
        if let Some(up) = up {
            let at = |g: Option<&[f32]>| g.map_or(0.0, |g| g[r]);
            let g_lp = if target.is_some() { at(up.g_logp) } else { 0.0 };
            p[P_GLP] = (g_lp * it).to_bits();
            p[P_NEG_GH] = (-at(up.g_entropy) * it).to_bits();
            p[P_C] = ((at(up.g_lse) - g_lp) * it).to_bits();
        }
    }
    (params, scaled)
}

fn check_upstream(rows: usize, up: &Upstream<'_>) -> Result<(), GpuError> {
    for (what, g) in [("g_logp", up.g_logp), ("g_entropy", up.g_entropy), ("g_lse", up.g_lse)] {
        if let Some(g) = g {
            check_len(what, rows, g.len())?;
        }
    }
    Ok(())
}

impl Gpu {
    /// The forward in `mode` (see [`Gpu::stats_fwd`]; [`GpuMode::Fast`]: one launch, one
    /// cube per row).
    pub fn stats_fwd_mode(&self, x: &GpuLogits, inputs: &RowInputs<'_>, mode: GpuMode) -> Result<GpuStats, GpuError> {
        match mode {
            GpuMode::Canonical => self.stats_fwd(x, inputs),
            GpuMode::Fast => {
                self.validate_fwd(x, inputs)?;
                guarded("stats_fwd (fast)", || self.fast_rows(x, inputs, None))
            }
        }
    }

    /// The forward and the backward over the logits in place, in `mode`: the statistics
    /// are returned and `x` holds `∂L/∂x` afterwards (see [`Gpu::stats_bwd_inplace`]). With
    /// [`GpuMode::Fast`] one launch reads each row, computes its statistics, and writes its
    /// gradient (as Liger's cross entropy does); with [`GpuMode::Canonical`] it is the
    /// canonical forward followed by the canonical in-place backward. On an error reported
    /// by the read of the statistics (a row without a finite logit) the gradient of that
    /// row is NaN.
    pub fn stats_fwd_bwd_inplace(
        &self,
        x: &mut GpuLogits,
        inputs: &RowInputs<'_>,
        up: Upstream<'_>,
        mode: GpuMode,
    ) -> Result<GpuStats, GpuError> {
        match mode {
            GpuMode::Canonical => {
                let stats = self.stats_fwd(x, inputs)?;
                self.stats_bwd_inplace(x, inputs, &stats, up)?;
                Ok(stats)
            }
            GpuMode::Fast => {
                Self::check_inplace(x)?;
                self.validate_fwd(x, inputs)?;
                check_upstream(x.rows, &up)?;
                guarded("stats_fwd_bwd_inplace (fast)", || {
                    let stats = self.fast_rows(x, inputs, Some(&up))?;
                    x.witnesses.extend(stats.witnesses.iter().cloned());
                    Ok(stats)
                })
            }
        }
    }

    /// The backward in `mode` into a new dense matrix (see [`Gpu::stats_bwd`]).
    pub fn stats_bwd_mode<O: GradElem>(
        &self,
        x: &GpuLogits,
        inputs: &RowInputs<'_>,
        saved: &GpuStats,
        up: Upstream<'_>,
        mode: GpuMode,
    ) -> Result<GpuLogits, GpuError> {
        match mode {
            GpuMode::Canonical => self.stats_bwd::<O>(x, inputs, saved, up),
            GpuMode::Fast => {
                self.validate_bwd(x, inputs, saved, &up)?;
                guarded("stats_bwd (fast)", || {
                    let mut out = self.grad_output(x, O::DTYPE)?;
                    self.fast_grad(Some(x), &mut out, inputs, saved, &up)?;
                    Ok(out)
                })
            }
        }
    }

    /// The backward in `mode` over the logits in place (see [`Gpu::stats_bwd_inplace`]).
    pub fn stats_bwd_inplace_mode(
        &self,
        x: &mut GpuLogits,
        inputs: &RowInputs<'_>,
        saved: &GpuStats,
        up: Upstream<'_>,
        mode: GpuMode,
    ) -> Result<(), GpuError> {
        match mode {
            GpuMode::Canonical => self.stats_bwd_inplace(x, inputs, saved, up),
            GpuMode::Fast => {
                Self::check_inplace(x)?;
                self.validate_bwd(x, inputs, saved, &up)?;
                guarded("stats_bwd_inplace (fast)", || self.fast_grad(None, x, inputs, saved, &up))
            }
        }
    }

    /// `fast_rows`: statistics of every row (and, with `up`, the gradient over `x`).
    fn fast_rows(
        &self,
        x: &GpuLogits,
        inputs: &RowInputs<'_>,
        up: Option<&Upstream<'_>>,
    ) -> Result<GpuStats, GpuError> {
        let rows = x.rows;
        let (params, scaled) = row_params(inputs, rows, up);
        let params = self.create(&params)?;
        let outs: Vec<Handle> = (0..6).map(|_| self.output(rows * 4)).collect::<Result<_, _>>()?;
        let witness = self.witness()?;
        let (n, word_rows) = row_vectors(x.dtype, rows, x.stride);
        if rows > 0 {
            with_client!(self, |c: R| {
                let per_row = |h: &Handle| unsafe { ArrayArg::<R>::from_raw_parts(h.clone(), rows) };
                // Safe: cube `r` reads row `r` of `x` (inside its buffer, padded to whole
                // vectors), its parameters, writes its own output slots and (fused) only
                // its own row's elements.
                unsafe {
                    fast::fast_rows::launch_unchecked::<R>(
                        c,
                        kernels::grid(rows),
                        CubeDim::new_1d(self.fast_threads),
                        n,
                        ArrayArg::from_raw_parts(x.handle.clone(), x.units / n),
                        ArrayArg::from_raw_parts(params, rows * PARAMS),
                        per_row(&outs[0]),
                        per_row(&outs[1]),
                        per_row(&outs[2]),
                        per_row(&outs[3]),
                        per_row(&outs[4]),
                        per_row(&outs[5]),
                        ArrayArg::from_raw_parts(witness.clone(), 1),
                        rows,
                        x.cols,
                        x.stride,
                        kernel_dtype(x.dtype),
                        word_rows,
                        scaled,
                        up.is_some(),
                    )
                }
            });
        }
        let [lse, entropy, logp, max, log_sum, code] = <[Handle; 6]>::try_from(outs).expect("six outputs");
        Ok(GpuStats {
            rows,
            max,
            log_sum,
            entropy,
            fwd: Some((lse, logp, code)),
            has_targets: inputs.targets.is_some(),
            gpu: self.id,
            // An empty batch launches nothing.
            witnesses: if rows > 0 { vec![witness] } else { Vec::new() },
        })
    }

    /// `fast_grad` from `input` (or, `None`, from `out` itself: in place) into `out`; `out`
    /// records the witnesses of the statistics and of this launch.
    fn fast_grad(
        &self,
        input: Option<&GpuLogits>,
        out: &mut GpuLogits,
        inputs: &RowInputs<'_>,
        saved: &GpuStats,
        up: &Upstream<'_>,
    ) -> Result<(), GpuError> {
        let src = input.unwrap_or(out);
        let (rows, cols) = (src.rows, src.cols);
        let (params, scaled) = row_params(inputs, rows, Some(up));
        let params = self.create(&params)?;
        let witness = self.witness()?;
        let (n_in, in_words) = row_vectors(src.dtype, rows, src.stride);
        let (n_out, out_words) = row_vectors(out.dtype, rows, out.stride);
        // One vector width for both sides (the kernel's `word_rows` covers both).
        let word_rows = in_words && out_words;
        let n = if word_rows { n_in.min(n_out) } else { 1 };
        let nchunks = cols.div_ceil(GRAD_COLS_PER_CUBE);
        let (in_handle, in_units, in_stride, in_dtype) = match input {
            Some(x) => (x.handle.clone(), x.units, x.stride, x.dtype),
            None => (self.output(16)?, 4, out.stride, out.dtype),
        };
        if rows > 0 {
            with_client!(self, |c: R| {
                let per_row = |h: &Handle| unsafe { ArrayArg::<R>::from_raw_parts(h.clone(), rows) };
                // Safe: cube (r, chunk) reads and writes only its own granules of row r
                // (inside both buffers, padded to whole vectors) and reads row r's
                // statistics and parameters.
                unsafe {
                    fast::fast_grad::launch_unchecked::<R>(
                        c,
                        kernels::grid(rows * nchunks),
                        CubeDim::new_1d(kernels::CUBE_THREADS),
                        n,
                        n,
                        ArrayArg::from_raw_parts(in_handle, in_units / n),
                        ArrayArg::from_raw_parts(out.handle.clone(), out.units / n),
                        per_row(&saved.max),
                        per_row(&saved.log_sum),
                        per_row(&saved.entropy),
                        ArrayArg::from_raw_parts(params, rows * PARAMS),
                        ArrayArg::from_raw_parts(witness.clone(), 1),
                        rows,
                        cols,
                        nchunks,
                        in_stride,
                        out.stride,
                        kernel_dtype(in_dtype),
                        kernel_dtype(out.dtype),
                        word_rows,
                        scaled,
                        input.is_none(),
                    )
                }
            });
        }
        out.witnesses.extend(saved.witnesses.iter().cloned());
        if rows > 0 {
            out.witnesses.push(witness);
        }
        Ok(())
    }

    fn validate_fwd(&self, x: &GpuLogits, inputs: &RowInputs<'_>) -> Result<(), GpuError> {
        self.own(x.gpu)?;
        if x.cols == 0 {
            return Err(TmError::EmptyVocab.into());
        }
        inputs.validate(x.rows, x.cols)?;
        Ok(())
    }

    fn validate_bwd(
        &self,
        x: &GpuLogits,
        inputs: &RowInputs<'_>,
        saved: &GpuStats,
        up: &Upstream<'_>,
    ) -> Result<(), GpuError> {
        self.validate_fwd(x, inputs)?;
        self.own(saved.gpu)?;
        check_len("saved statistics", x.rows, saved.rows)?;
        check_upstream(x.rows, up)
    }
}
