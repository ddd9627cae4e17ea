//! Diversity or Precision (DoP, arXiv 2512.22955): the generalised next-token loss and its
//! gradient, fused over the vocabulary per row like the [`crate::logits`] kernels (spec
//! `policy.md` §7.7).
//!
//! # The math
//!
//! The paper reads cross-entropy as a one-step policy gradient with the reward
//! `r_CE(s, a) = sg(1[a = x]/π(a|s))` and generalises the reward \[paper\]:
//!
//! ```text
//! r̄_pos(a) = sg( (1/π_a)^{(1 − π_a)^β} )                       at the target x
//! K        = TopK(π, k)                                       over the whole vocabulary
//! r̄_neg(a) = λ̃·1[a ∈ K, a ≠ x] + λ̂·1[a ∉ K, a ≠ x]
//! ```
//!
//! The per-position surrogate and its gradient with respect to the tempered logits `z`
//! \[derived\]:
//!
//! ```text
//! L      = −Σ_a w_a·log π_a,      w_a = sg(π_a·r̄_a)
//! w_x    = π_x^{1 − (1 − π_x)^β}
//! w_a    = λ̃·π_a (a ∈ K, a ≠ x),   λ̂·π_a (a ∉ K, a ≠ x)
//! ∂L/∂z_j = π_j·W − w_j,           W = w_x + λ̃·S_K + λ̂·(1 − π_x − S_K),   S_K = Σ_{a∈K,a≠x} π_a
//! ```
//!
//! so a non-target column gets `π_j·(W − λ_j)` and the target `π_x·W − w_x`. `β = 0,
//! λ̃ = λ̂ = 0` is cross-entropy: `W = 1`, `∂L/∂z_j = π_j − 1[j = x]` — **bitwise** the
//! [`crate::logits::stats_bwd`] gradient of `−logp` (the same kernel with the same constants),
//! and the loss is bitwise `−logp` of [`crate::logits::stats_fwd`]. With a temperature,
//! `∂L/∂x = ∂L/∂z / temperature`, as in the logits family.
//!
//! The loss needs no second pass: with `E_K = Σ_{a∈K,a≠x} π_a log π_a` and the entropy `H`,
//! `L = −w_x log π_x − λ̃·E_K − λ̂·(−H − π_x log π_x − E_K)` (`0·log 0 = 0`).
//!
//! `log w_x = −expm1(β·log1p(−π_x))·log π_x` (the `expm1` keeps the digits of
//! `1 − (1 − π_x)^β ≈ β·π_x` for small `π_x`); `w_x = 1` for `β = 0`, at `π_x = 1` and at
//! `π_x = 0` (the limits, where the log form would give `0·(−∞)`). `π_x → 1` gives
//! `log w_x ≈ (1 − π_x)^{1+β}`, which tends to 0 only for `β > −1`: the library requires
//! `β > −1` \[derived\].
//!
//! # The algorithm: two passes over a row, the second one writing
//!
//! 1. The forward's row reduction ([`crate::logits::stats_fwd`]'s own code: max, `Σ exp`,
//!    entropy, the same bits), and, fused into it while each block is still in L1, the
//!    selection of `K`: a buffer of at most `2k` candidates (`(z, x, column)`), compacted to the
//!    best `k` with `select_nth_unstable` when it fills; once compacted, a column enters only
//!    if `z` beats the current `k`-th best: vector compares give a bit mask of the columns
//!    above the threshold (64 per branch on AVX-512, `dop_x86.rs`), and only its set bits are
//!    visited, so after the first few blocks almost every column costs one comparison.
//!    Linear time in the worst case (sorted logits): each compaction costs `O(k)` and frees
//!    `k` slots. `K` is then sorted by column (`k log k`) so that its sums run in a fixed order.
//!
//!    When `λ̃ = λ̂` (the default setting, cross-entropy) the weights do not depend on `K`
//!    (`W = w_x + λ̃·(1 − π_x)`): no selection is made, the row is handled as `k ≥ V`, and
//!    the row costs what the logits forward + backward cost.
//! 2. The gradient, with the logits backward's vectorised row kernel
//!    ([`crate::logits::stats_bwd`]'s) and the constant `W − λ̂` of the columns outside `K`;
//!    then the `k` columns of `K` and the target are rewritten from the values saved in
//!    pass 1 (so the same code works in place over the logits).
//!
//! The per-row scalars (`π_x`, `w_x`, `S_K`, `E_K`, `W`, the loss) are computed in `f64` from
//! the `f32` statistics and rounded once. Rows are independent: the results are the same
//! bits for any thread count, batch composition or row order, and for the portable and SIMD
//! backends.
//!
//! # Choices where the sources are silent
//!
//! * **Ties in the top-k** \[library choice\]: `θ` is the `k`-th largest tempered logit;
//!   `K` = the columns with `z > θ`, then the columns with `z = θ` in ascending column order
//!   until `|K| = k` (`−0.0` and `+0.0` are equal). `k = 0` gives `K = ∅`, `k ≥ V` every
//!   column. The ranking uses the tempered logits `z` (the ranking of `π`); columns whose
//!   logit is `−∞` can be in `K` (when fewer than `k` are finite) and contribute 0.
//! * **Rows without a target** (negative target, e.g. `−100`) \[library choice\]: ignored like a
//!   masked row (loss 0, gradient 0), as `ignore_index` in torch's and Liger's
//!   cross-entropy.
//! * **Aggregation** \[library choice\]: the per-row loss `L_t` is returned; the gradient is
//!   that of `grad_scale·Σ_t L_t`, so `grad_scale = 1/(number of kept tokens)` gives the token
//!   mean the paper's cross-entropy baseline uses (it states no other normaliser).
//! * **Defaults** \[library choice\]: [`DopCfg::default`] is the paper's best
//!   (precision-oriented) setting, `β = −0.25`, `λ̃ = λ̂ = 0`, `k = 100`, `grad_scale = 1`;
//!   [`DopCfg::cross_entropy`] is plain cross-entropy.
//!
//! # Edge-case policies
//!
//! As [`crate::logits`]: a NaN or `+∞` logit makes the row's loss and gradient NaN (counted in
//! the returned [`Status`]); a kept row of all `−∞` is [`TmError::NoFiniteLogit`] (found during
//! the pass: output contents then unspecified, nothing outside them written); `−∞` logits
//! get gradient exactly 0 (−`w_x·grad_scale/temperature` at the target, whose loss is then
//! `+∞`); masked rows are not read and get loss 0 and gradient 0.

use crate::elem::{GradElem, LogitElem};
use crate::error::{check_len, TmError};
use crate::logits::{self, check_backend, grad_row, row_tuple_visit, temper, with_row, GradRow, RowInputs, Status};
use crate::mat::{Mat, MatMut};
use crate::platform::{Backend, Exec};

/// The Diversity-or-Precision settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DopCfg {
    /// `β` of the positive reward scaling (`> −1`, finite): `< 0` precision-oriented, `0`
    /// cross-entropy, `> 0` diversity-oriented.
    pub beta: f32,
    /// `λ̃`: the weight of the non-target tokens inside the top-k (head preservation: `0.1`).
    pub lam_top: f32,
    /// `λ̂`: the weight of the non-target tokens outside the top-k (tail suppression: `−0.1`).
    pub lam_tail: f32,
    /// `k` of the top-k (`0` = empty, `≥ V` = the whole vocabulary).
    pub top_k: usize,
    /// The gradient is that of `grad_scale·Σ_rows L` (finite; `1/tokens` for the token mean).
    pub grad_scale: f32,
}

impl Default for DopCfg {
    /// The paper's best setting: `β = −0.25`, no negative rewards, `k = 100` \[library choice\].
    fn default() -> Self {
        DopCfg { beta: -0.25, lam_top: 0.0, lam_tail: 0.0, top_k: 100, grad_scale: 1.0 }
    }
}

impl DopCfg {
    /// Plain cross-entropy (`β = 0`, `λ̃ = λ̂ = 0`, `k = 0`).
    pub fn cross_entropy() -> Self {
        DopCfg { beta: 0.0, lam_top: 0.0, lam_tail: 0.0, top_k: 0, grad_scale: 1.0 }
    }

    fn validate(&self) -> Result<(), TmError> {
        if !(self.beta.is_finite() && self.beta > -1.0) {
            return Err(TmError::InvalidArgument("DoP beta must be finite and > -1"));
        }
        if !(self.lam_top.is_finite() && self.lam_tail.is_finite()) {
            return Err(TmError::InvalidArgument("DoP lam_top and lam_tail must be finite"));
        }
        if !self.grad_scale.is_finite() {
            return Err(TmError::InvalidArgument("DoP grad_scale must be finite"));
        }
        Ok(())
    }
}

/// One top-k candidate of the selection scratch: its rank key (larger `z` first, then the
/// smaller column; the column in the low 32 bits), the tempered logit `z` and the raw logit (as
/// `f32`, exact for every input dtype).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DopSlot {
    key: u64,
    z: f32,
    x: f32,
}

impl DopSlot {
    #[inline]
    fn col(&self) -> u32 {
        self.key as u32
    }
}

/// The rank of `(z, col)` as one integer, ascending = ranking first: larger `z` first
/// (`f32::total_cmp`'s order, reversed), ties by smaller column. One integer comparison per
/// step of the compaction instead of a float and an integer one.
#[inline]
fn rank_key(z: f32, col: u32) -> u64 {
    let b = z.to_bits();
    // `f32::total_cmp`'s order as an unsigned integer.
    let ord = if b >> 31 == 1 { !b } else { b | 0x8000_0000 };
    (u64::from(!ord) << 32) | u64::from(col)
}

/// Candidate slots one row needs: `min(2k, V)` for `0 < k < V`, else 0.
fn slots_per_row(vocab: usize, top_k: usize) -> usize {
    if top_k == 0 || top_k >= vocab {
        0
    } else {
        top_k.saturating_mul(2).min(vocab)
    }
}

/// Parts the rows are split into (one scratch region each).
fn parts(exec: Exec, rows: usize) -> usize {
    if cfg!(feature = "std") && exec.threads() > 1 && rows > 1 {
        exec.threads().min(rows)
    } else {
        1
    }
}

/// The number of [`DopSlot`]s [`dop_loss_and_grad`] needs as scratch for `rows × vocab`
/// logits with `top_k` under `exec`: `min(2k, V)` per thread for `0 < k < V` (0 otherwise).
pub fn dop_scratch_len(exec: Exec, rows: usize, vocab: usize, top_k: usize) -> usize {
    slots_per_row(vocab, top_k).saturating_mul(parts(exec, rows))
}

/// The streaming top-k selection of one row.
pub(super) struct Select<'s> {
    backend: Backend,
    buf: &'s mut [DopSlot],
    len: usize,
    k: usize,
    /// The `k`-th best `z` so far, once the buffer has been compacted.
    pub(super) thr: f32,
    compacted: bool,
}

impl Select<'_> {
    /// Keeps the best `k` candidates (unordered) and raises the threshold.
    fn compact(&mut self) {
        let k = self.k;
        self.buf[..self.len].select_nth_unstable_by_key(k - 1, |s| s.key);
        self.len = k;
        self.thr = self.buf[k - 1].z;
        self.compacted = true;
    }

    #[inline]
    fn push(&mut self, s: DopSlot) {
        if self.len == self.buf.len() {
            self.compact();
            // A later column ranks below an equal `z` already kept (NaN never enters).
            if s.z <= self.thr || s.z.is_nan() {
                return;
            }
        }
        self.buf[self.len] = s;
        self.len += 1;
    }

    /// The candidate of column `start + i` (raw logit `x`).
    #[inline(always)]
    fn slot<T: LogitElem, const SCALE: bool>(i: usize, x: T, start: usize, inv_temp: f32) -> DopSlot {
        let x = x.to_f32();
        // `+ 0.0` makes −0.0 and +0.0 one value, as they are one probability.
        let z = temper::<SCALE>(x, inv_temp) + 0.0;
        DopSlot { key: rank_key(z, (start + i) as u32), z, x }
    }

    /// Offers column `start + i` (raw logit `x`): it enters if its tempered logit beats the
    /// threshold.
    #[inline(always)]
    pub(super) fn offer<T: LogitElem, const SCALE: bool>(&mut self, i: usize, x: T, start: usize, inv_temp: f32) {
        let s = Self::slot::<T, SCALE>(i, x, start, inv_temp);
        if s.z > self.thr {
            self.push(s);
        }
    }

    /// Offers the columns `base + j` of `block` for the set bits `j` of `hits` (the columns
    /// a vector compare found above the threshold), in column order; the threshold may rise on
    /// the way, and `offer` tests again.
    #[inline(always)]
    pub(super) fn offer_bits<T: LogitElem, const SCALE: bool>(
        &mut self,
        block: &[T],
        base: usize,
        mut hits: u64,
        start: usize,
        inv_temp: f32,
    ) {
        while hits != 0 {
            let j = base + hits.trailing_zeros() as usize;
            hits &= hits - 1;
            self.offer::<T, SCALE>(j, block[j], start, inv_temp);
        }
    }

    /// Offers the columns `[start, start + block.len())`.
    #[inline]
    fn feed<T: LogitElem, const SCALE: bool>(&mut self, block: &[T], start: usize, inv_temp: f32) {
        // Until the first compaction every column enters (`−∞` ones too).
        let mut i = 0;
        while i < block.len() && !self.compacted {
            self.push(Self::slot::<T, SCALE>(i, block[i], start, inv_temp));
            i += 1;
        }
        match self.backend {
            // Safe because `check_backend` verified the CPU features before any row was read.
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 => unsafe { super::dop_x86::scan_avx512::<T, SCALE>(self, block, i, start, inv_temp) },
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2Fma => unsafe { super::dop_x86::scan_avx2::<T, SCALE>(self, block, i, start, inv_temp) },
            Backend::Portable => self.scan::<T, SCALE>(block, i, start, inv_temp),
        }
    }

    /// The portable scan of the columns `from..` of `block`: chunks of 16 give a branch-free
    /// bit mask of the columns above the threshold, and only its set bits are offered (the
    /// threshold may rise on the way; `offer` tests again).
    fn scan<T: LogitElem, const SCALE: bool>(&mut self, block: &[T], from: usize, start: usize, inv_temp: f32) {
        const CHUNK: usize = 16;
        let mut i = from;
        let mut chunks = block[from..].chunks_exact(CHUNK);
        for chunk in &mut chunks {
            let chunk: &[T; CHUNK] = chunk.try_into().expect("chunks_exact");
            let thr = self.thr;
            let mask = chunk
                .iter()
                .enumerate()
                .fold(0u64, |m, (j, &x)| m | (u64::from(temper::<SCALE>(x.to_f32(), inv_temp) > thr) << j));
            self.offer_bits::<T, SCALE>(block, i, mask, start, inv_temp);
            i += CHUNK;
        }
        for (j, &x) in chunks.remainder().iter().enumerate() {
            self.offer::<T, SCALE>(i + j, x, start, inv_temp);
        }
    }
}

/// Ends a selection: the best `k` candidates sorted by column.
fn finish_select<'s>(mut sel: Select<'s>) -> &'s mut [DopSlot] {
    if sel.len > sel.k {
        sel.compact();
    }
    let k = sel.len;
    let out = &mut sel.buf[..k];
    out.sort_unstable_by_key(|s| s.col());
    out
}

/// What pass 1 leaves for pass 2 of one row.
enum RowPlan {
    /// A NaN or `+∞` logit: loss and gradient NaN.
    NonFinite,
    /// The loss and the gradient constants.
    Finite { loss: f32, bulk: GradRow, top: GradRow, target: GradRow, x_t: f32 },
}

/// `w_x` from `log π_x` \[derived\] (see the module docs).
fn target_weight(beta: f64, lp: f64) -> f64 {
    let pi = libm::exp(lp);
    if beta == 0.0 || pi == 0.0 || pi >= 1.0 {
        return 1.0;
    }
    libm::exp(-libm::expm1(beta * libm::log1p(-pi)) * lp)
}

/// Pass 1 of one row: statistics, `K`, the row's scalars. `sel_buf` has
/// `slots_per_row(V, k)` slots.
fn plan_row<T: LogitElem>(
    backend: Backend,
    row: &[T],
    inv_temp: f32,
    target: usize,
    cfg: &DopCfg,
    sel_buf: &mut [DopSlot],
) -> Result<(RowPlan, usize), TmError> {
    let vocab = row.len();
    // `λ̃ = λ̂`: the weights do not depend on `K`; handled as `K` = every column.
    let (k, all) = (cfg.top_k.min(vocab), cfg.top_k >= vocab || cfg.lam_top == cfg.lam_tail);
    let mut sel = Select { backend, buf: sel_buf, len: 0, k, thr: f32::NEG_INFINITY, compacted: false };
    let selecting = k > 0 && !all;
    let mut t = row_tuple_visit(backend, row, inv_temp, |start| {
        if selecting {
            let block = &row[start..(start + logits::BLOCK).min(vocab)];
            if inv_temp == 1.0 {
                sel.feed::<T, false>(block, start, inv_temp)
            } else {
                sel.feed::<T, true>(block, start, inv_temp)
            }
        }
    });
    let x_t = row[target].to_f32();
    t = t.with_target(x_t * inv_temp);
    let f = t.finalize(true)?;
    if t.is_nonfinite() {
        return Ok((RowPlan::NonFinite, 0));
    }
    let set: &[DopSlot] = if selecting { finish_select(sel) } else { &[] };
    let (m, log_sum, h) = (f.max, f.log_sum, f.entropy as f64);
    let lp = f.logp as f64;
    let pi_x = libm::exp(lp);
    // `π_x·log π_x` with `0·log 0 = 0`.
    let pi_lp_x = if pi_x > 0.0 { pi_x * lp } else { 0.0 };
    let (s_k, e_k) = if all {
        ((1.0 - pi_x).max(0.0), (-h - pi_lp_x).min(0.0))
    } else {
        let (mut s, mut e) = (0.0f64, 0.0f64);
        for a in set.iter().filter(|a| a.col() as usize != target) {
            // The gradient kernel's `log π`: `(z − max) − log_sum`, rounded in that order.
            let d = ((a.z - m) - log_sum) as f64;
            let p = libm::exp(d);
            s += p;
            if p > 0.0 {
                e += p * d;
            }
        }
        (s, e)
    };
    let (beta, lt, lh) = (cfg.beta as f64, cfg.lam_top as f64, cfg.lam_tail as f64);
    let w_x = target_weight(beta, lp);
    let tail_mass = (1.0 - pi_x - s_k).max(0.0);
    let tail_ent = (-h - pi_lp_x - e_k).min(0.0); // Σ_{a∉K, a≠x} π_a log π_a ≤ 0
    let big_w = w_x + lt * s_k + lh * tail_mass;
    // The `λ` terms only when their `λ` is non-zero: `0·E` is a signed zero that would turn the
    // loss `−0` of a certain token (`log π_x = 0`) into `+0`, where cross-entropy gives `−0`.
    let mut loss = -w_x * lp;
    if lt != 0.0 {
        loss -= lt * e_k;
    }
    if lh != 0.0 {
        loss -= lh * tail_ent;
    }
    let scale = cfg.grad_scale as f64;
    let g = |c: f64, g_lp: f64| GradRow {
        inv_temp,
        max: m,
        log_sum,
        entropy: f.entropy,
        c: c as f32,
        neg_gh: 0.0,
        g_lp: g_lp as f32,
    };
    let top = g(scale * (big_w - lt), 0.0);
    let bulk = if all { top } else { g(scale * (big_w - lh), 0.0) };
    let target = g(scale * big_w, -scale * w_x);
    Ok((RowPlan::Finite { loss: loss as f32, bulk, top, target, x_t }, set.len()))
}

/// Pass 2 of one row: the gradient. `set` is the row's `K` from pass 1. `stream`: `dst` is a
/// separate output large enough for non-temporal stores (`logits::grad_row`).
///
/// # Safety
/// `src` and `dst` valid for `vocab` elements, equal or not overlapping (not overlapping at all
/// with `stream`); `set`'s columns `< vocab`.
#[allow(clippy::too_many_arguments)]
unsafe fn write_row<T: LogitElem, O: GradElem>(
    backend: Backend,
    src: *const T,
    dst: *mut O,
    vocab: usize,
    target: usize,
    plan: &RowPlan,
    set: &[DopSlot],
    stream: bool,
) -> f32 {
    let RowPlan::Finite { loss, bulk, top, target: gt, x_t } = plan else {
        for j in 0..vocab {
            *dst.add(j) = O::from_f32(f32::NAN);
        }
        return f32::NAN;
    };
    grad_row(backend, src, dst, vocab, None, bulk, stream);
    let scaled = bulk.inv_temp != 1.0;
    for a in set {
        let v = if scaled { top.dx::<true>(a.x) } else { top.dx::<false>(a.x) };
        *dst.add(a.col() as usize) = O::from_f32(v);
    }
    let v = if scaled { gt.dx_target::<true>(*x_t) } else { gt.dx_target::<false>(*x_t) };
    *dst.add(target) = O::from_f32(v);
    *loss
}

/// The work on one part of the rows: `(first row, its losses, its gradient rows, its scratch)`.
type PartFn<'f, O> = dyn Fn(usize, &mut [f32], MatMut<'_, O>, &mut [DopSlot]) -> Result<Status, TmError> + Sync + 'f;

/// One part of the rows: its losses, its gradient rows and its own scratch region
/// (`per_part` slots; the last part keeps what remains).
struct Part<'a, O> {
    loss: &'a mut [f32],
    dst: MatMut<'a, O>,
    scratch: &'a mut [DopSlot],
    per_part: usize,
}

impl<O: Send> logits::SplitRows for Part<'_, O> {
    fn split_rows(self, mid: usize) -> (Self, Self) {
        let (loss_a, loss_b) = self.loss.split_at_mut(mid);
        let (dst_a, dst_b) = self.dst.split_at_rows(mid);
        let (scratch_a, scratch_b) = self.scratch.split_at_mut(self.per_part);
        let per_part = self.per_part;
        (
            Part { loss: loss_a, dst: dst_a, scratch: scratch_a, per_part },
            Part { loss: loss_b, dst: dst_b, scratch: scratch_b, per_part },
        )
    }
}

/// Splits the rows into parts, each with its own scratch region, and runs them with the
/// logits family's thread driver ([`logits::run_rows`]: the same parts as [`parts`], the
/// first error in row order wins, statuses combined in row order).
fn drive<O: Send>(
    exec: Exec,
    rows: usize,
    per_part: usize,
    loss: &mut [f32],
    dst: MatMut<'_, O>,
    scratch: &mut [DopSlot],
    f: &PartFn<'_, O>,
) -> Result<Status, TmError> {
    let part = Part { loss, dst, scratch, per_part };
    logits::run_rows(exec.threads(), rows, part, &|start, _end, p: Part<'_, O>| f(start, p.loss, p.dst, p.scratch))
}

/// Checks everything before a write; returns the scratch slots per part.
fn validate(
    exec: Exec,
    rows: usize,
    vocab: usize,
    inputs: &RowInputs<'_>,
    cfg: &DopCfg,
    scratch: &[DopSlot],
    loss: &[f32],
) -> Result<usize, TmError> {
    check_backend(exec.backend())?;
    if vocab == 0 {
        return Err(TmError::EmptyVocab);
    }
    if u32::try_from(vocab).is_err() {
        return Err(TmError::InvalidArgument("DoP needs a vocabulary below 2^32 columns"));
    }
    cfg.validate()?;
    if inputs.targets.is_none() {
        return Err(TmError::InvalidArgument("DoP needs RowInputs::targets"));
    }
    inputs.validate(rows, vocab)?;
    check_len("loss", rows, loss.len())?;
    let need = dop_scratch_len(exec, rows, vocab, cfg.top_k);
    if scratch.len() < need {
        return Err(TmError::LengthMismatch {
            what: "DoP scratch (dop_scratch_len)",
            expected: need,
            got: scratch.len(),
        });
    }
    Ok(slots_per_row(vocab, cfg.top_k))
}

/// Diversity-or-Precision loss per row and its gradient w.r.t. the logits, fused: one
/// reduction pass per row (the logits forward's, with the top-k selection) and one writing
/// pass.
///
/// `x` is `[rows, V]` (any row stride) of `f32`, `bf16` or `f16`; `inputs.targets` is
/// required (a negative target ignores the row), `inputs.row_mask` and `inputs.temperature`
/// as in [`crate::logits`]. `loss[r]` receives `L_r`; `dx` (`[rows, V]`, any stride,
/// `f32`/`bf16`/`f16`, rounded once from `f32`) receives `grad_scale·∂L_r/∂x_r`; the elements
/// between rows of a strided `dx` are not touched. `scratch` holds at least
/// [`dop_scratch_len`] slots (its contents on entry do not matter). Returns the rows with a
/// NaN or `+∞` logit. See the [module docs](self) for the math, the choices and the policies.
pub fn dop_loss_and_grad<T: LogitElem, O: GradElem>(
    exec: Exec,
    x: Mat<'_, T>,
    inputs: &RowInputs<'_>,
    cfg: &DopCfg,
    scratch: &mut [DopSlot],
    loss: &mut [f32],
    dx: MatMut<'_, O>,
) -> Result<Status, TmError> {
    let (rows, vocab) = (x.rows(), x.cols());
    let per_part = validate(exec, rows, vocab, inputs, cfg, scratch, loss)?;
    check_len("dx rows", rows, dx.rows())?;
    check_len("dx columns", vocab, dx.cols())?;
    let backend = exec.backend();
    let stream = rows.saturating_mul(vocab).saturating_mul(core::mem::size_of::<O>()) >= logits::STREAM_BYTES;
    drive(exec, rows, per_part, loss, dx, scratch, &|start, loss, mut dx, buf| {
        let mut status = Status::default();
        for (i, l) in loss.iter_mut().enumerate() {
            let r = start + i;
            let out = dx.row_mut(i);
            let target = inputs.target(r).filter(|_| inputs.keep(r));
            let Some(target) = target else {
                out.fill(O::from_f32(0.0));
                *l = 0.0;
                continue;
            };
            let row = x.row(r);
            let (plan, n) = plan_row(backend, row, inputs.inv_temp(r), target, cfg, buf).map_err(|e| with_row(e, r))?;
            if matches!(plan, RowPlan::NonFinite) {
                status.nonfinite_rows += 1;
                status.first_nonfinite_row.get_or_insert(r);
            }
            // Safe: `row` and `out` are distinct buffers of `vocab` elements; the set's
            // columns come from `row`.
            *l = unsafe { write_row(backend, row.as_ptr(), out.as_mut_ptr(), vocab, target, &plan, &buf[..n], stream) };
        }
        Ok(status)
    })
}

/// [`dop_loss_and_grad`] with the gradient written over the logits (as Liger's fused
/// cross-entropy does, saving an `[N, V]` buffer): same dtype, same layout, same bits.
pub fn dop_loss_and_grad_inplace<T: LogitElem + GradElem>(
    exec: Exec,
    x: MatMut<'_, T>,
    inputs: &RowInputs<'_>,
    cfg: &DopCfg,
    scratch: &mut [DopSlot],
    loss: &mut [f32],
) -> Result<Status, TmError> {
    let (rows, vocab) = (x.rows(), x.cols());
    let per_part = validate(exec, rows, vocab, inputs, cfg, scratch, loss)?;
    let backend = exec.backend();
    drive(exec, rows, per_part, loss, x, scratch, &|start, loss, mut x, buf| {
        let mut status = Status::default();
        for (i, l) in loss.iter_mut().enumerate() {
            let r = start + i;
            let row = x.row_mut(i);
            let target = inputs.target(r).filter(|_| inputs.keep(r));
            let Some(target) = target else {
                row.fill(<T as GradElem>::from_f32(0.0));
                *l = 0.0;
                continue;
            };
            let (plan, n) =
                plan_row(backend, &*row, inputs.inv_temp(r), target, cfg, buf).map_err(|e| with_row(e, r))?;
            if matches!(plan, RowPlan::NonFinite) {
                status.nonfinite_rows += 1;
                status.first_nonfinite_row.get_or_insert(r);
            }
            let p = row.as_mut_ptr();
            // Safe: in place over one buffer of `vocab` elements (each element is read
            // before it is written; `K` and the target were saved in pass 1).
            *l = unsafe { write_row::<T, T>(backend, p, p, vocab, target, &plan, &buf[..n], false) };
        }
        Ok(status)
    })
}

#[cfg(test)]
mod tests {
    use super::rank_key;

    /// The integer key orders as "larger `z` first (`total_cmp`), then smaller column".
    #[test]
    fn rank_key_is_the_rank_order() {
        let zs =
            [f32::NEG_INFINITY, -3.5, -1e-40, 0.0, 1e-40, 1.0, 1.0000001, 3.4e38, f32::INFINITY, f32::NAN, -f32::NAN];
        let mut all = [(0.0f32, 0u32); 33];
        for (i, slot) in all.iter_mut().enumerate() {
            *slot = (zs[i % zs.len()], (i * 7 % 5) as u32);
        }
        for &(za, ca) in &all {
            for &(zb, cb) in &all {
                let want = zb.total_cmp(&za).then(ca.cmp(&cb));
                assert_eq!(rank_key(za, ca).cmp(&rank_key(zb, cb)), want, "{za} {ca} vs {zb} {cb}");
            }
        }
    }
}
