//! TW-GRPO: token-weighted GRPO (spec `policy.md` §7.3).
//!
//! Source: TW-GRPO (arXiv 2505.24718), official code `longmalongma/TW-GRPO`; everything here
//! is \[code\] unless tagged otherwise.
//!
//! # Token weights ([`tw_grpo_token_weights`], `compute_token_importance_kl_logs_uniform`)
//!
//! With full-vocabulary log-probs `ℓ[b,t,v] = log_softmax(z[b,t,:])` (no temperature), the
//! response mask, groups of `G` contiguous rows and the maximum weight `α`:
//!
//! ```text
//! ℓ̃[b,t,:] = mask[b,t] ? ℓ[b,t,:] : −log V                     padding = the uniform distribution
//! m̄[g,t,v] = (1/G)·Σ_{b∈g} ℓ̃[b,t,v]                            mean of LOG-probs
//! δ[b,t,v] = clamp(m̄[g,t,v] − ℓ̃[b,t,v], −c, c)                 c = 11
//! D[g,t]   = (1/G)·Σ_{b∈g} Σ_v (exp(δ) − δ − 1)                ≥ 0, a dispersion score
//! D̂[g,t]   = (D[g,t] − min_t' D[g,t']) / (max_t' D[g,t'] − min_t' D[g,t'] + 1e-8)   over ALL T positions
//! w[b,t]   = (1 + (α − 1)·D̂[g(b),t])·mask[b,t]                  ∈ [1, α] at valid positions
//! ```
//!
//! **Streamed over the vocabulary** \[derived\]: the reference materialises the `[B, T, V]`
//! log-prob tensor; this kernel reads, for each `(g, t)`, the `G` logit rows of the group at
//! position `t` together, 8 columns at a time (16 with AVX-512), with `ℓ = (z − max) − log_sum` from the statistics
//! that [`crate::logits::stats_fwd`] saved (its `max` and `log_sum` outputs, as the backward
//! takes them: `z − lse` would lose `log_sum` once `|max|` is large) \[library choice: the spec's
//! signature takes `lse`\]. Nothing of size `V` is written; the cost is one read of the logits and
//! one `exp` per element, as the logits forward, plus the dispersion's arithmetic (measured by
//! `bench/compare/run-seed.sh`).
//!
//! ## Operation order (shared by every backend: same bits)
//!
//! * Column `v` goes to lane `v mod 8`. For each column, in member order `k = 0..G`:
//!   `sum += ℓ̃_k` (f32) (and `lmax = max(lmax, ℓ̃_k)`, used only by the `−inf` rule); then
//!   `m̄ = sum / G`; then, again in member
//!   order, `acc += term(δ_k)` (f32); the column's `acc` is added to its lane's `f64`
//!   accumulator. Lanes are folded in halves (4, 2, 1) and `D = lane_0 / G` is rounded to f32.
//!   (The AVX-512 path computes 16 columns per vector and adds the low 8 columns' `acc`, then
//!   the high 8, to the same 8 `f64` lanes, so each lane keeps this order.)
//! * `term(δ) = exp(δ) − δ − 1` is computed without cancellation: with the shared `exp`'s
//!   reduction `δ = n·ln2 + r`, `scale = 2^n` and its polynomial `exp(r) = 1 + r + r²·P(r)`,
//!   `term = fma(scale, r²·P(r), scale·(1 + r) − (1 + δ))` (one fused multiply-subtract), which is
//!   `r²·P(r)` exactly when `n = 0` (`|δ| ≲ 0.35`). Near `δ = 0` the naive form would leave a rounding residue of
//!   `~6e-8` per element, summed over `V·G` elements.
//! * The normalisation over `t` and the weights are computed in `f64` and rounded once.
//!
//! ## Edge cases
//!
//! | input | result |
//! |---|---|
//! | every member of a group padded at `t` | `D = 0` (identical uniform rows), the logits are not read |
//! | a padded member | `ℓ̃ = −log V` (f64 `ln V` rounded to f32); its logits, `max` and `log_sum` are not read |
//! | `−inf` logits (masked vocabulary) in a valid row | treated as the limit `ℓ → −∞` \[library choice\]: a member with `ℓ̃ = −inf` gets `δ = 0` if every member has `−inf` at `v`, else `δ = +c`; a member with finite `ℓ̃` where the mean is `−inf` gets `δ = −c` (the clamp). The reference computes `−inf − (−inf) = NaN`. |
//! | a NaN or `+inf` logit, or non-finite saved statistics, in a valid row | that `(g, t)`'s `D` is NaN; its valid positions get `w = NaN`; the other positions of the group are normalised ignoring NaN `D`s; counted in [`TwStatus`] |
//! | `D` constant over `t` | `D̂ = 0`, `w = mask` exactly |
//! | `B` not a multiple of `G` | [`TmError::InvalidArgument`] (the reference silently returns all-ones weights; the library refuses the layout \[library choice\]) |
//! | `G > MAX_GROUP` (512) | [`TmError::InvalidArgument`] \[library choice: the per-member pointers live on the stack\] |
//!
//! The weights are constants for the gradient (`sg(w)`) \[library choice\]: in the reference
//! they are computed from non-detached log-probs, so autograd also differentiates through
//! them; a test comparing against the reference's gradient must account for this.
//!
//! # Loss ([`tw_grpo_loss`])
//!
//! ```text
//! L_tw = Σ_{i,t} w_{i,t}·ℓ_{i,t}·mask / Σ_{i,t} mask        the denominator is the UNweighted token count
//! ∂L_tw/∂ℓ_{i,t} = w_{i,t}·mask / Σ mask
//! ```
//! `ℓ` is the per-token policy loss. TW-GRPO's is TRL's PPO clip with `ε_low = 0.20`,
//! `ε_high = 0.28` (hard-coded in its trainer), `old_logp = sg(logp)` (so `r ≡ 1` in value) and
//! `β·k3` with `ref − logp` clamped to `±11`, `β = 0` by default: with `β = 0` that is
//! [`crate::policy_loss::ppo_clip_loss`] with `ClipCfg { eps_low: 0.2, eps_high: 0.28,
//! dual_clip_c: None, log_ratio_clamp: None }`, and the advantage `(R − μ_g)/(std_g + 1e-4)`
//! (unbiased std) is TRL's GRPO in [`crate::advantages`]. (A `β ≠ 0` term with the `±11` clamp is
//! not provided: [`crate::policy_loss::KlCfg`] offers verl's `±20` clamps or none.) An empty mask
//! gives `L = 0` and zero weights \[library choice\] (the reference: `0/0 = NaN`). Masked positions
//! never contribute (a select, so NaN there cannot leak).
//!
//! Defaults ([`TwGrpoCfg::default`]): `α = 1.70` (training script and README; the dataclass
//! default is 1.4), `G = 8`, `c = 11`.
//!
//! # Rewards
//!
//! [`soft_multichoice_reward`] (`accuracy_reward`), [`exact_multichoice_reward`]
//! (`origin_accuracy_reward`) and [`format_reward_think_answer`] (`format_reward`); see each.
//! Total reward in TW-GRPO = accuracy + format.

use crate::elem::{DType, LogitElem};
use crate::error::{check_len, TmError};
use crate::exp::{fma, EXP_BIAS_FIX, LN2, LOG2E, Q0, Q1, Q2, Q3, Q4, ROUND_MAGIC};
use crate::mat::Mat;
use crate::platform::{isa_dispatch, Backend, Exec};
use crate::policy_loss::metrics::lane_sum;

/// The largest group size [`tw_grpo_token_weights`] accepts.
pub const MAX_GROUP: usize = 512;

/// Hyper-parameters of [`tw_grpo_token_weights`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TwGrpoCfg {
    /// Rollouts per group `G` (groups are `G` contiguous rows). Default 8 \[code\].
    pub group_size: usize,
    /// Maximum weight `α` (finite). Default 1.70 (the training script; the dataclass says 1.4).
    pub alpha: f32,
    /// Clamp `c` of `δ` (finite, `0 < c ≤ 80`). Default 11 \[code\].
    pub clamp: f32,
}

impl Default for TwGrpoCfg {
    fn default() -> Self {
        TwGrpoCfg { group_size: 8, alpha: 1.70, clamp: 11.0 }
    }
}

impl TwGrpoCfg {
    fn validate(&self) -> Result<(), TmError> {
        if self.group_size == 0 || self.group_size > MAX_GROUP {
            return Err(TmError::InvalidArgument("TW-GRPO group_size must be in 1..=512"));
        }
        if !self.alpha.is_finite() {
            return Err(TmError::InvalidArgument("TW-GRPO alpha must be finite"));
        }
        if !(self.clamp > 0.0 && self.clamp <= 80.0) {
            return Err(TmError::InvalidArgument("TW-GRPO clamp must be in (0, 80]"));
        }
        Ok(())
    }
}

/// The statistics [`crate::logits::stats_fwd`] saved for every `[B·T]` row (its `max` and
/// `log_sum` outputs, temperature 1), so that `ℓ = (z − max) − log_sum`.
#[derive(Clone, Copy, Debug)]
pub struct SavedLogSoftmax<'a> {
    /// The forward's `max` output.
    pub max: &'a [f32],
    /// The forward's `log_sum` output.
    pub log_sum: &'a [f32],
}

/// What [`tw_grpo_token_weights`] reports besides the weights.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TwStatus {
    /// `(group, position)` pairs whose dispersion `D` is NaN (a NaN or `+inf` logit, or
    /// non-finite saved statistics, in a valid row): their valid positions' weights are NaN.
    pub nonfinite_positions: usize,
}

// ---------------------------------------------------------------------------------------
// The canonical per-element operations (the AVX2 and AVX-512 files transcribe them).
// ---------------------------------------------------------------------------------------

/// `δ = clamp(m̄ − ℓ, −c, c)`, with the `−inf` limit rule of the module docs. NaN passes.
#[inline(always)]
pub(crate) fn delta(mean: f32, l: f32, lmax: f32, c: f32) -> f32 {
    if l == f32::NEG_INFINITY {
        return if lmax == f32::NEG_INFINITY { 0.0 } else { c };
    }
    let d = mean - l;
    let d = if -c > d { -c } else { d };
    if c < d {
        c
    } else {
        d
    }
}

/// `exp(d) − d − 1` for `|d| ≤ 80` (or NaN), without cancellation near 0 (module docs):
/// with the shared `exp`'s reduction `d = n·ln2 + r`, `scale = 2^n` and `exp(r) = 1 + r + r²·P(r)`,
///
/// ```text
/// exp(d) − d − 1 = scale·r²·P(r) + (scale·(1 + r) − (1 + d))      (r + n·ln2 = d)
/// ```
///
/// evaluated as `fma(scale, r²·P(r), fms(scale, 1 + r, 1 + d))`. When `n = 0` (`|d| ≲ 0.35`,
/// where `exp(d) − d − 1` would cancel) `scale = 1` and `r = d` exactly, so the second part is
/// exactly 0 and the term is `r²·P(r)`, accurate to a few ulp; elsewhere `|term| ≳ 0.05` and the
/// error is a few ulp of `exp(d) + |d| + 1`.
#[inline(always)]
pub(crate) fn dispersion_term(d: f32) -> f32 {
    let t = fma(d, LOG2E, ROUND_MAGIC);
    let n = t - ROUND_MAGIC;
    let r = fma(n, -LN2, d);
    let mut p = fma(Q4, r, Q3);
    p = fma(p, r, Q2);
    p = fma(p, r, Q1);
    p = fma(p, r, Q0);
    let r2p = (r * r) * p;
    let scale = f32::from_bits(t.to_bits().wrapping_add(EXP_BIAS_FIX) << 23);
    let linear = fma(scale, 1.0 + r, -(1.0 + d));
    fma(scale, r2p, linear)
}

/// One member of a group at one position: its logit row (`null` = padded) and statistics.
#[derive(Clone, Copy)]
pub(crate) struct Member<T> {
    pub ptr: *const T,
    pub max: f32,
    pub log_sum: f32,
}

impl<T> Member<T> {
    const PADDED: Member<T> = Member { ptr: core::ptr::null(), max: 0.0, log_sum: 0.0 };
}

/// `ℓ̃` of member `m` at column `v`.
///
/// # Safety
/// `m.ptr` is null or valid for `v + 1` elements.
#[inline(always)]
unsafe fn member_logp<T: LogitElem>(m: &Member<T>, v: usize, neg_log_v: f32) -> f32 {
    if m.ptr.is_null() {
        neg_log_v
    } else {
        ((*m.ptr.add(v)).to_f32() - m.max) - m.log_sum
    }
}

/// The contribution of column `v` (`Σ_k term(δ_k)` in member order, f32).
///
/// # Safety
/// Every non-null member pointer is valid for `v + 1` elements.
#[inline(always)]
pub(crate) unsafe fn column_acc<T: LogitElem>(members: &[Member<T>], v: usize, neg_log_v: f32, c: f32) -> f32 {
    let mut sum = 0.0f32;
    let mut lmax = f32::NEG_INFINITY;
    for m in members {
        let l = member_logp(m, v, neg_log_v);
        sum += l;
        if l > lmax {
            lmax = l;
        }
    }
    let mean = sum / members.len() as f32;
    let mut acc = 0.0f32;
    for m in members {
        acc += dispersion_term(delta(mean, member_logp(m, v, neg_log_v), lmax, c));
    }
    acc
}

/// Folds 8 `f64` lanes in halves (4, 2, 1) and returns `lane_0 / G` rounded to f32.
#[inline(always)]
pub(crate) fn finish_lanes(mut lanes: [f64; 8], g: usize) -> f32 {
    let mut w = 4;
    while w > 0 {
        for i in 0..w {
            lanes[i] += lanes[i + w];
        }
        w /= 2;
    }
    (lanes[0] / g as f64) as f32
}

/// The portable `D` of one `(g, t)`.
///
/// # Safety
/// Every non-null member pointer is valid for `vocab` elements.
unsafe fn dispersion_portable<T: LogitElem>(members: &[Member<T>], vocab: usize, neg_log_v: f32, c: f32) -> f32 {
    let mut lanes = [0.0f64; 8];
    for v in 0..vocab {
        lanes[v % 8] += column_acc(members, v, neg_log_v, c) as f64;
    }
    finish_lanes(lanes, members.len())
}

/// Dispatch: the one place that maps the backend to a loop.
///
/// # Safety
/// As [`dispersion_portable`]; the backend is supported.
unsafe fn dispersion<T: LogitElem>(
    backend: Backend,
    members: &[Member<T>],
    vocab: usize,
    neg_log_v: f32,
    c: f32,
) -> f32 {
    match backend {
        Backend::Portable => dispersion_portable(members, vocab, neg_log_v, c),
        #[cfg(target_arch = "x86_64")]
        Backend::Avx2Fma | Backend::Avx512 => {
            use super::{tw_grpo_x86_avx2 as avx2, tw_grpo_x86_avx512 as avx512};
            use half::{bf16, f16};
            // Safe because the caller checked the backend (AVX2+FMA+F16C, and AVX-512 F/BW/DQ/VL
            // for `Avx512`), and each cast is between identical types (`T::DTYPE` names `T`).
            macro_rules! go {
                ($t:ty) => {{
                    let m = core::slice::from_raw_parts(members.as_ptr() as *const Member<$t>, members.len());
                    if backend == Backend::Avx512 {
                        avx512::dispersion::<$t>(m, vocab, neg_log_v, c)
                    } else {
                        avx2::dispersion::<$t>(m, vocab, neg_log_v, c)
                    }
                }};
            }
            match T::DTYPE {
                DType::F32 => go!(f32),
                DType::BF16 => go!(bf16),
                DType::F16 => go!(f16),
            }
        }
    }
}

/// TW-GRPO token weights `w[B·T]` from the logits, streamed over the vocabulary (module docs).
///
/// * `logits`: `[B·T, V]` (row `b·T + t`, any row stride), `f32`/`bf16`/`f16`, temperature 1;
/// * `saved`: the logits forward's `max` and `log_sum` of every row (`B·T` each);
/// * `mask`: `[B·T]` (any non-zero byte is valid); `t`: the row length `T > 0`;
/// * `out`: `[B·T]` weights.
///
/// Threads split the groups, or, when there are fewer groups than threads, each group's
/// positions; every `D` is computed by the same code, so the bits do not depend on the split.
///
/// Errors (checked before anything is written): [`TmError::LengthMismatch`],
/// [`TmError::EmptyVocab`], [`TmError::InvalidArgument`] (`T = 0`, `B mod G ≠ 0`, bad config),
/// [`TmError::BackendUnavailable`].
pub fn tw_grpo_token_weights<T: LogitElem>(
    exec: Exec,
    logits: Mat<'_, T>,
    saved: SavedLogSoftmax<'_>,
    mask: &[u8],
    t: usize,
    cfg: &TwGrpoCfg,
    out: &mut [f32],
) -> Result<TwStatus, TmError> {
    exec.check_backend()?;
    cfg.validate()?;
    if t == 0 {
        return Err(TmError::InvalidArgument("TW-GRPO needs a row length T > 0"));
    }
    let n = mask.len();
    if !n.is_multiple_of(t) {
        return Err(TmError::LengthMismatch { what: "mask", expected: n / t * t + t, got: n });
    }
    let b = n / t;
    let g = cfg.group_size;
    if !b.is_multiple_of(g) {
        return Err(TmError::InvalidArgument("TW-GRPO needs B to be a multiple of group_size"));
    }
    let vocab = logits.cols();
    if vocab == 0 {
        return Err(TmError::EmptyVocab);
    }
    check_len("logits rows", n, logits.rows())?;
    check_len("max", n, saved.max.len())?;
    check_len("log_sum", n, saved.log_sum.len())?;
    check_len("weights", n, out.len())?;
    let neg_log_v = -libm::log(vocab as f64) as f32;
    let c = cfg.clamp;
    let alpha_m1 = cfg.alpha as f64 - 1.0;
    let backend = exec.backend;
    let count = core::sync::atomic::AtomicUsize::new(0);
    // D of positions [first_pos, first_pos + d.len()) of group `gi`, into `d`.
    let fill_d = |gi: usize, first_pos: usize, d: &mut [f32]| {
        let row0 = gi * g * t;
        let mut members = [Member::<T>::PADDED; MAX_GROUP];
        let mut nonfinite = 0;
        for (j, slot) in d.iter_mut().enumerate() {
            let pos = first_pos + j;
            let mut any = false;
            for (k, m) in members[..g].iter_mut().enumerate() {
                let r = row0 + k * t + pos;
                *m = if mask[r] != 0 {
                    any = true;
                    Member { ptr: logits.row(r).as_ptr(), max: saved.max[r], log_sum: saved.log_sum[r] }
                } else {
                    Member::PADDED
                };
            }
            // Safe: every non-null pointer is a row of `vocab` elements of `logits`.
            let v = if any { unsafe { dispersion(backend, &members[..g], vocab, neg_log_v, c) } } else { 0.0 };
            nonfinite += v.is_nan() as usize;
            *slot = v;
        }
        if nonfinite > 0 {
            count.fetch_add(nonfinite, core::sync::atomic::Ordering::Relaxed);
        }
    };
    // The weights of group `gi` (`w`: its `G·T` slots, the first `T` holding D).
    let normalise = |gi: usize, w: &mut [f32]| {
        let row0 = gi * g * t;
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for &d in &w[..t] {
            if !d.is_nan() {
                lo = lo.min(d as f64);
                hi = hi.max(d as f64);
            }
        }
        let denom = hi - lo + 1e-8;
        let weight = |d: f32, r: usize| {
            let wt = 1.0 + alpha_m1 * ((d as f64 - lo) / denom);
            if mask[r] != 0 {
                wt as f32
            } else {
                0.0
            }
        };
        // Members 1.. first: member 0's slots still hold D.
        let (d_row, rest) = w.split_at_mut(t);
        for (k, member) in rest.chunks_exact_mut(t).enumerate() {
            for (pos, x) in member.iter_mut().enumerate() {
                *x = weight(d_row[pos], row0 + (k + 1) * t + pos);
            }
        }
        for (pos, x) in d_row.iter_mut().enumerate() {
            *x = weight(*x, row0 + pos);
        }
    };
    let groups = b / g;
    if exec.threads() > 1 && groups < exec.threads() {
        // Few groups: split each group's positions over the threads (same code per position).
        for (gi, w) in out.chunks_exact_mut(g * t).enumerate() {
            super::par_chunks(exec.threads(), 1, &mut w[..t], &|first_pos, d: &mut [f32]| fill_d(gi, first_pos, d));
            normalise(gi, w);
        }
    } else {
        super::par_chunks(exec.threads(), g * t, out, &|first_group, out: &mut [f32]| {
            for (j, w) in out.chunks_exact_mut(g * t).enumerate() {
                fill_d(first_group + j, 0, &mut w[..t]);
                normalise(first_group + j, w);
            }
        });
    }
    Ok(TwStatus { nonfinite_positions: count.into_inner() })
}

/// The TW-GRPO loss `Σ w·ℓ·mask / Σ mask` (module docs), accumulated in `f64` in the policy
/// step's lane order (position `i` into lane `i mod 8`, the lanes then in order), and optionally
/// its gradient w.r.t. `ℓ` (`grad[i] = w_i·mask_i / Σ mask`, 0 at padding).
///
/// Errors: [`TmError::LengthMismatch`], [`TmError::BackendUnavailable`]. One thread whatever
/// `exec` says (it is one read of three arrays); its backend picks the vector build, all of
/// which give the same bits.
pub fn tw_grpo_loss(
    exec: Exec,
    mask: &[u8],
    per_token_loss: &[f32],
    w: &[f32],
    grad: Option<&mut [f32]>,
) -> Result<f32, TmError> {
    exec.check_backend()?;
    let n = mask.len();
    check_len("per_token_loss", n, per_token_loss.len())?;
    check_len("weights", n, w.len())?;
    if let Some(g) = &grad {
        check_len("grad", n, g.len())?;
    }
    let (count, sum) = weighted_sum(exec.backend(), mask, per_token_loss, w);
    let inv = if count == 0 { 0.0 } else { 1.0 / count as f64 };
    if let Some(g) = grad {
        weighted_grad(exec.backend(), mask, w, inv, g);
    }
    Ok((sum * inv) as f32)
}

isa_dispatch! {
    /// `(Σ mask, Σ_mask w·ℓ)` of [`tw_grpo_loss`], the sum in `f64` in the policy step's lane
    /// order (`policy_loss::metrics::lane_sum`).
    fn weighted_sum(mask: &[u8], l: &[f32], w: &[f32]) -> (usize, f64) {
        let n = mask.len();
        let (l, w) = (&l[..n], &w[..n]);
        let count = mask.iter().fold(0usize, |c, &m| c + usize::from(m != 0));
        (count, lane_sum(n, |i| if mask[i] != 0 { w[i] as f64 * l[i] as f64 } else { 0.0 }))
    }
}

isa_dispatch! {
    /// The gradient of [`tw_grpo_loss`]: `w·inv` on valid tokens, 0 elsewhere.
    fn weighted_grad(mask: &[u8], w: &[f32], inv: f64, g: &mut [f32]) -> () {
        for ((g, &m), &w) in g.iter_mut().zip(mask).zip(w) {
            *g = if m != 0 { (w as f64 * inv) as f32 } else { 0.0 };
        }
    }
}

// ---------------------------------------------------------------------------------------
// Rewards.
// ---------------------------------------------------------------------------------------

/// Python's `str.isspace` for one character (what `str.strip()` and `re`'s `\s` use on `str`):
/// Unicode `White_Space` plus the information separators U+001C–U+001F.
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn py_strip(s: &str) -> &str {
    s.trim_matches(py_space)
}

/// The text of the first `<answer>…</answer>` (lazy, dot matches newline), stripped; the whole
/// text stripped if there is none (`re.search(r"<answer>(.*?)</answer>", s, re.DOTALL)`).
fn answer_text(s: &str) -> &str {
    const OPEN: &str = "<answer>";
    if let Some(i) = s.find(OPEN) {
        let body = &s[i + OPEN.len()..];
        if let Some(j) = body.find("</answer>") {
            return py_strip(&body[..j]);
        }
    }
    py_strip(s)
}

/// Calls `f` on each piece of `text.split(',')` (duplicates included; callers treat the
/// options as a set). `replace(' ', '')` does not touch commas, so splitting first gives the
/// same pieces; [`option_eq`] compares them space-free.
fn for_options(text: &str, f: impl FnMut(&str)) {
    text.split(',').for_each(f);
}

/// Whether two pieces give the same option `s.strip()` of the space-free piece. Since `' '` is
/// itself whitespace, stripping before removing the spaces gives the same characters.
fn option_eq(a: &str, b: &str) -> bool {
    fn norm(s: &str) -> impl Iterator<Item = char> + '_ {
        py_strip(s).chars().filter(|&c| c != ' ')
    }
    norm(a).eq(norm(b))
}

/// `(|S|, |GT|, S ⊆ GT, S == GT)` of the option sets of an answer and a ground truth.
fn option_sets(completion: &str, solution: &str) -> (usize, usize, bool, bool) {
    let (ans, gt) = (answer_text(completion), answer_text(solution));
    // Distinct options of a text: an option counts if no earlier option equals it.
    let distinct = |text: &str| {
        let mut n = 0usize;
        let mut idx = 0usize;
        for_options(text, |o| {
            let mut seen = false;
            let mut j = 0usize;
            for_options(text, |p| {
                if j < idx && option_eq(o, p) {
                    seen = true;
                }
                j += 1;
            });
            n += !seen as usize;
            idx += 1;
        });
        n
    };
    let contains = |text: &str, o: &str| {
        let mut found = false;
        for_options(text, |p| found |= option_eq(o, p));
        found
    };
    let mut subset = true;
    for_options(ans, |o| subset &= contains(gt, o));
    let mut superset = true;
    for_options(gt, |o| superset &= contains(ans, o));
    (distinct(ans), distinct(gt), subset, subset && superset)
}

/// TW-GRPO's soft multi-choice accuracy reward (`accuracy_reward`) \[code\]:
///
/// ```text
/// if verifier_ok (an external symbolic verifier accepted the answer): r = 1
/// else:
///     gt  = text of the first <answer>…</answer> of the solution (dot matches newline), stripped;
///           the whole solution stripped if there is no such tag
///     ans = the same for the completion
///     GT  = { s.strip() : s ∈ gt.replace(' ', '').split(',') }
///     S   = { s.strip() : s ∈ ans.replace(' ', '').split(',') }
///     r   = |S|/|GT|  if S ⊆ GT  else 0
/// ```
///
/// Only ASCII spaces are removed before splitting; `strip` then removes other (Python, i.e.
/// Unicode) whitespace. An empty answer gives `S = {""}` and `r = 0` unless `GT` holds the empty
/// option; duplicated options collapse. The verifier is outside tokenmath; its verdict is the
/// flag.
pub fn soft_multichoice_reward(completion: &str, solution: &str, verifier_ok: bool) -> f32 {
    if verifier_ok {
        return 1.0;
    }
    let (s, gt, subset, _) = option_sets(completion, solution);
    if subset {
        (s as f64 / gt as f64) as f32
    } else {
        0.0
    }
}

/// The binary variant (`origin_accuracy_reward`) \[code\]: 1 iff `verifier_ok` or `S = GT`
/// (sets as in [`soft_multichoice_reward`]), else 0.
pub fn exact_multichoice_reward(completion: &str, solution: &str, verifier_ok: bool) -> f32 {
    if verifier_ok || option_sets(completion, solution).3 {
        1.0
    } else {
        0.0
    }
}

/// TW-GRPO's format reward (`format_reward`) \[code\]: 1 iff the completion contains `<think>` at
/// most once and `<answer>` at most once, and the stripped completion matches (`re.search`,
/// `re.DOTALL`) `<think>.*?</think>\s*<answer>.*?</answer>[\s!]*$`: a `<think>…</think>`
/// block, optional whitespace, an `<answer>…</answer>` block, then only whitespace or `!` to
/// the end. `\s` is Unicode whitespace (Python's `str.isspace`).
///
/// Evaluated without a regex engine: with `<think>` and `<answer>` each present at most once,
/// a match exists iff (1) the text before `<answer>`, with trailing whitespace removed, ends
/// with a `</think>` that starts at or after the end of `<think>`, and (2) the text with
/// trailing whitespace and `!` removed ends with a `</answer>` that starts at or after the end
/// of `<answer>`. (`$` also matches before a final newline, which `[\s!]*` could consume
/// anyway.)
pub fn format_reward_think_answer(completion: &str) -> f32 {
    const THINK: &str = "<think>";
    const THINK_END: &str = "</think>";
    const ANSWER: &str = "<answer>";
    const ANSWER_END: &str = "</answer>";
    if completion.matches(THINK).count() > 1 || completion.matches(ANSWER).count() > 1 {
        return 0.0;
    }
    let s = py_strip(completion);
    let (Some(i), Some(k)) = (s.find(THINK), s.find(ANSWER)) else {
        return 0.0;
    };
    let before = s[..k].trim_end_matches(py_space);
    let think_ok = before.ends_with(THINK_END) && before.len() - THINK_END.len() >= i + THINK.len();
    let tail = s.trim_end_matches(|c| c == '!' || py_space(c));
    let answer_ok = tail.ends_with(ANSWER_END) && tail.len() - ANSWER_END.len() >= k + ANSWER.len();
    if think_ok && answer_ok {
        1.0
    } else {
        0.0
    }
}
