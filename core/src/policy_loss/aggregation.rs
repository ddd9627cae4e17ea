//! Loss aggregation: the scalar loss `L = Σ_{b,t} w[b,t]·ℓ[b,t]` and its weights
//! `w[b,t] = ∂L/∂ℓ[b,t]` \[code\] (verl `agg_loss`; spec `policy.md` §5), and the fused
//! per-token upstreams for the logits backward.
//!
//! `dp` is the data-parallel size (verl's gradient all-reduce averages over ranks, so
//! `×dp / global count` yields a global mean); `m = 1[mask ≠ 0]`, `L_b = Σ_t m[b,t]`:
//!
//! | mode | `L` | `w[b,t]` |
//! |---|---|---|
//! | `TokenMean` | `Σ m·ℓ · dp / N_tok` | `m·dp/N_tok` |
//! | `SeqMeanTokenSum` | `Σ_b 1[L_b>0]·Σ_t m·ℓ · dp / N_seq` | `m·dp/N_seq` |
//! | `SeqMeanTokenMean` | `Σ_b 1[L_b>0]·(Σ_t m·ℓ)/L_b · dp / N_seq` | `m·dp/(L_b·N_seq)` |
//! | `SeqMeanTokenSumNorm` | `Σ m·ℓ / S` (no `dp` factor) | `m/S` |
//!
//! * `N_tok` = [`AggNorm::global_tokens`] if given, else the local `Σ m`; `N_seq` =
//!   [`AggNorm::global_seqs`] if given, else the local number of rows with `L_b > 0`; `S` =
//!   [`AggNorm::scale_factor`] if given, else `T` (this mode depends on the padded length, so
//!   it is not invariant to extra padding columns — as in verl).
//! * verl divides by `L_b + 1e-8` in `SeqMeanTokenMean`; in `f32` (verl's dtype) `L_b + 1e-8`
//!   rounds to `L_b` for every `L_b ≥ 1`, so the library divides by `L_b` — the same value.
//! * Empty denominator (`N_tok = 0` or `N_seq = 0`): `L = 0` and all weights 0 [library
//!   choice; verl's `token-mean` gives NaN]. Rows with `L_b = 0` contribute nothing and are
//!   not counted in the local `N_seq`.
//! * Masked positions never influence `L` (select, not `x·m`; verl's `loss_mat·mask` would let a
//!   NaN in padding through). A NaN `ℓ` at a valid position makes `L` NaN.
//!
//! Accumulation: `L` is accumulated in `f64` (a scalar CPU reduction): each row in 8
//! interleaved lanes (column `t` in lane `t mod 8`) combined in lane order, rows combined in
//! index order, rounded once to `f32`; weights are formed in `f64`
//! and rounded once. Results do not depend on anything but the inputs.

use super::{check_backend, BatchShape};
use crate::error::{check_len, TmError};
use crate::platform::{Backend, Exec};

/// The aggregation mode (verl `loss_agg_mode` names in the variant docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AggMode {
    /// `"token-mean"` (verl's default, `actor.yaml`).
    #[default]
    TokenMean,
    /// `"seq-mean-token-sum"`.
    SeqMeanTokenSum,
    /// `"seq-mean-token-mean"` (forced by verl for GSPO and SAPO).
    SeqMeanTokenMean,
    /// `"seq-mean-token-sum-norm"` (Dr. GRPO).
    SeqMeanTokenSumNorm,
}

/// Denominators of the aggregation, passed explicitly so that micro-batching never changes the
/// math silently.
///
/// `Default` is a single process with local counts (`dp_size = 1`, no global counts, `S = T`):
/// verl's `agg_loss` with its default arguments \[code\].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AggNorm {
    /// Global valid-token count across the data-parallel group / mini-batch (verl
    /// `batch_num_tokens`); `None` = the local count. Must be `≥` the local count.
    pub global_tokens: Option<u64>,
    /// Global count of non-empty sequences (verl `global_batch_size`); `None` = the local
    /// count. Must be `≥` the local count.
    pub global_seqs: Option<u64>,
    /// Data-parallel size `dp` (`≥ 1`); ignored by `SeqMeanTokenSumNorm`.
    pub dp_size: u32,
    /// `S` of `SeqMeanTokenSumNorm` (verl `loss_scale_factor`, finite and `> 0`); `None` = `T`.
    pub scale_factor: Option<f32>,
}

impl Default for AggNorm {
    fn default() -> Self {
        AggNorm { global_tokens: None, global_seqs: None, dp_size: 1, scale_factor: None }
    }
}

/// What the aggregation divides by: `w[b,t] = m·row_scale(b)·k`.
pub(super) struct Plan {
    /// Multiplier applied to every valid token's loss (after the row division, if any).
    pub(super) k: f64,
    /// Divide each row by its `L_b` (`SeqMeanTokenMean`).
    pub(super) per_row_mean: bool,
}

/// The number of non-zero bytes of `m`: a `u32` count per block of 2^20 bytes (it cannot
/// overflow there), a form the compiler turns into a byte compare and widening adds (the
/// earlier form, 32 byte-wide lanes, was vectorised across its steps, one byte insert per
/// element); integer, so the order does not matter.
#[inline(always)]
pub(super) fn count_valid(m: &[u8]) -> u64 {
    m.chunks(1 << 20).map(|block| block.iter().fold(0u32, |n, &x| n + u32::from(x != 0)) as u64).sum()
}

/// `(Σ m, #rows with Σ_t m > 0)` (compiled once per backend: see the dispatch in
/// `policy_loss/mod.rs`).
#[inline(always)]
pub(super) fn local_counts_body(mask: &[u8], shape: BatchShape) -> (u64, u64) {
    let (mut tok, mut seq) = (0u64, 0u64);
    if shape.cols == 0 {
        return (0, 0);
    }
    for row in mask.chunks_exact(shape.cols) {
        let l = count_valid(row);
        tok += l;
        seq += (l > 0) as u64;
    }
    (tok, seq)
}

pub(super) fn plan(
    backend: Backend,
    mask: &[u8],
    shape: BatchShape,
    mode: AggMode,
    norm: &AggNorm,
) -> Result<Plan, TmError> {
    let n = shape.numel()?;
    check_len("mask", n, mask.len())?;
    if norm.dp_size == 0 {
        return Err(TmError::InvalidArgument("dp_size must be >= 1"));
    }
    if norm.scale_factor.is_some_and(|s| !(s.is_finite() && s > 0.0)) {
        return Err(TmError::InvalidArgument("scale_factor must be finite and > 0"));
    }
    let (tok, seq) = super::local_counts(backend, mask, shape);
    if norm.global_tokens.is_some_and(|g| g < tok) {
        return Err(TmError::InvalidArgument("global_tokens is smaller than the local valid-token count"));
    }
    if norm.global_seqs.is_some_and(|g| g < seq) {
        return Err(TmError::InvalidArgument("global_seqs is smaller than the local non-empty sequence count"));
    }
    let dp = norm.dp_size as f64;
    let inv = |d: u64| if d == 0 { 0.0 } else { dp / d as f64 };
    Ok(match mode {
        AggMode::TokenMean => Plan { k: inv(norm.global_tokens.unwrap_or(tok)), per_row_mean: false },
        AggMode::SeqMeanTokenSum => Plan { k: inv(norm.global_seqs.unwrap_or(seq)), per_row_mean: false },
        AggMode::SeqMeanTokenMean => Plan { k: inv(norm.global_seqs.unwrap_or(seq)), per_row_mean: true },
        AggMode::SeqMeanTokenSumNorm => {
            let s = norm.scale_factor.map_or(shape.cols as f64, |s| s as f64);
            Plan { k: if s == 0.0 { 0.0 } else { 1.0 / s }, per_row_mean: false }
        }
    })
}

/// `(Σ_t where(m, ℓ, 0), Σ_t m)` of one row, in `f64`: 8 interleaved lanes (column `t` goes
/// to lane `t mod 8`, so extra padding columns change no bit), combined in lane order.
#[inline(always)]
fn masked_row_sum(l: &[f32], m: &[u8]) -> (f64, u64) {
    const K: usize = 8;
    let (mut s, mut c) = ([0.0f64; K], [0u64; K]);
    let full = l.len() - l.len() % K;
    for (lc, mc) in l[..full].chunks_exact(K).zip(m[..full].chunks_exact(K)) {
        for k in 0..K {
            let v = mc[k] != 0;
            s[k] += if v { lc[k] as f64 } else { 0.0 };
            c[k] += v as u64;
        }
    }
    for (k, (&x, &mk)) in l[full..].iter().zip(&m[full..]).enumerate() {
        s[k] += if mk != 0 { x as f64 } else { 0.0 };
        c[k] += (mk != 0) as u64;
    }
    let (mut sum, mut len) = (0.0, 0);
    for k in 0..K {
        sum += s[k];
        len += c[k];
    }
    (sum, len)
}

/// The scalar loss `L` of per-token losses `loss` (`B·T`) under `mode` and `norm` (module
/// docs). `0` for an empty denominator.
///
/// Errors: [`TmError::LengthMismatch`]; [`TmError::InvalidArgument`] for `dp_size = 0`, a
/// scale factor that is not finite and `> 0`, or a global count below the local one;
/// [`TmError::BackendUnavailable`] for a backend this CPU lacks.
pub fn agg_loss(
    exec: Exec,
    shape: BatchShape,
    mask: &[u8],
    loss: &[f32],
    mode: AggMode,
    norm: &AggNorm,
) -> Result<f32, TmError> {
    check_backend(exec)?;
    let p = plan(exec.backend(), mask, shape, mode, norm)?;
    check_len("loss", mask.len(), loss.len())?;
    if p.k == 0.0 || shape.cols == 0 {
        return Ok(0.0);
    }
    let mut total = 0.0f64;
    for (lrow, mrow) in loss.chunks_exact(shape.cols).zip(mask.chunks_exact(shape.cols)) {
        let (sum, len) = masked_row_sum(lrow, mrow);
        if p.per_row_mean {
            total += if len > 0 { sum / len as f64 } else { 0.0 };
        } else {
            total += sum;
        }
    }
    Ok((total * p.k) as f32)
}

/// The weights `w[b,t] = ∂L/∂ℓ[b,t]` of [`agg_loss`] into `w` (`B·T`; 0 at masked positions and
/// everywhere for an empty denominator). Same errors as [`agg_loss`].
pub fn agg_weights(
    exec: Exec,
    shape: BatchShape,
    mask: &[u8],
    mode: AggMode,
    norm: &AggNorm,
    w: &mut [f32],
) -> Result<(), TmError> {
    check_backend(exec)?;
    let p = plan(exec.backend(), mask, shape, mode, norm)?;
    check_len("w", mask.len(), w.len())?;
    if shape.cols == 0 {
        return Ok(());
    }
    for (wrow, mrow) in w.chunks_exact_mut(shape.cols).zip(mask.chunks_exact(shape.cols)) {
        let len = if p.per_row_mean { count_valid(mrow) } else { 0 };
        let k = if p.per_row_mean && len > 0 { p.k / len as f64 } else { p.k };
        let k = k as f32;
        for (wj, &m) in wrow.iter_mut().zip(mrow) {
            *wj = if m != 0 { k } else { 0.0 };
        }
    }
    Ok(())
}

/// Multiplies `d[b,t]` by the aggregation weight `w[b,t]` in place, without materialising `w`:
/// turns a per-token `∂ℓ/∂logp` (e.g. of a fused loss `ℓ = ℓ_pg + β·kl`) into the upstream
/// `g_logp = w ⊙ ∂ℓ/∂logp` for [`crate::logits::stats_bwd`]. Bitwise equal to
/// [`agg_weights`] followed by [`logp_upstream`] with the single term `(1.0, d)`; masked
/// positions (and everything, for an empty denominator) become `0` whatever `d` held.
///
/// Errors: as [`agg_weights`] (`d` takes the place of `w`).
pub fn agg_chain_inplace(
    exec: Exec,
    shape: BatchShape,
    mask: &[u8],
    mode: AggMode,
    norm: &AggNorm,
    d: &mut [f32],
) -> Result<(), TmError> {
    check_backend(exec)?;
    let p = plan(exec.backend(), mask, shape, mode, norm)?;
    check_len("d", mask.len(), d.len())?;
    if shape.cols == 0 {
        return Ok(());
    }
    for (drow, mrow) in d.chunks_exact_mut(shape.cols).zip(mask.chunks_exact(shape.cols)) {
        let len = if p.per_row_mean { count_valid(mrow) } else { 0 };
        let k = if p.per_row_mean && len > 0 { p.k / len as f64 } else { p.k };
        let k = k as f32;
        for (dj, &m) in drow.iter_mut().zip(mrow) {
            // `1.0·x` first, as `logp_upstream` forms `0 + 1·x` before multiplying by w.
            let x = 0.0 + 1.0 * *dj;
            *dj = if m != 0 && k != 0.0 { k * x } else { 0.0 };
        }
    }
    Ok(())
}

/// The fused per-token upstream for the logits backward:
/// `g_logp[i] = w[i]·Σ_k c_k·d_k[i]`, for loss terms `L = Σ_k c_k·agg(ℓ_k)` that share the
/// aggregation weights `w` (e.g. `[(1.0, dpg), (kl_loss_coef, dkl)]`). Terms are summed in the
/// order given, in `f32`. Where `w[i] = 0` (masked positions, empty denominators) the result
/// is `0` whatever the `d_k` hold. Pass the result as `Upstream::g_logp` to
/// [`crate::logits::stats_bwd`].
///
/// Errors: [`TmError::LengthMismatch`] when a term or `out` differs in length from `w`.
pub fn logp_upstream(exec: Exec, w: &[f32], terms: &[(f32, &[f32])], out: &mut [f32]) -> Result<(), TmError> {
    check_backend(exec)?;
    check_len("g_logp", w.len(), out.len())?;
    for (_, d) in terms {
        check_len("upstream term", w.len(), d.len())?;
    }
    out.fill(0.0);
    for &(c, d) in terms {
        for (o, &x) in out.iter_mut().zip(d) {
            *o += c * x;
        }
    }
    for (o, &wi) in out.iter_mut().zip(w) {
        *o = if wi != 0.0 { wi * *o } else { 0.0 };
    }
    Ok(())
}

/// The entropy-bonus upstream `g_entropy[i] = −coef·w[i]` for `L ← L − coef·agg(H)` (spec
/// §4.9; verl `entropy_coeff`, default 0), where `w` are the weights of [`agg_weights`] for the
/// mask the bonus uses. Pass it as `Upstream::g_entropy` to [`crate::logits::stats_bwd`].
///
/// Errors: [`TmError::LengthMismatch`]; [`TmError::InvalidArgument`] for a non-finite `coef`.
pub fn entropy_upstream(exec: Exec, w: &[f32], coef: f32, out: &mut [f32]) -> Result<(), TmError> {
    check_backend(exec)?;
    check_len("g_entropy", w.len(), out.len())?;
    if !coef.is_finite() {
        return Err(TmError::InvalidArgument("entropy coefficient must be finite"));
    }
    for (o, &wi) in out.iter_mut().zip(w) {
        *o = if wi != 0.0 { -coef * wi } else { 0.0 };
    }
    Ok(())
}
