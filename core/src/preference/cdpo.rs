//! cDPO: critical tokens by contrastive estimation (arXiv 2411.19943; official code
//! `chenzhiling9954/Critical-Tokens-Matter`, which the formulas below transcribe).
//!
//! # Contrastive-estimation scores ([`cdpo_ce_scores`])
//!
//! Two fine-tunes of one base model, `θ_p` on correct trajectories and `θ_n` on incorrect
//! ones, score each token `u_{t+1}` of `question + response` by
//! (`src/pipeline.py::Pipeline.calculate_ce_score`):
//!
//! ```text
//! cd[t]   = (1 + β')·z^p[t] − β'·z^n[t]              z = the two models' logits at position t
//! s_{t+1} = softmax(cd[t])[u_{t+1}]                  a renormalised contrastive distribution
//! ```
//!
//! `β' = 1` in the code (`2·z^p − z^n`). A low `s` on an incorrect trajectory marks a
//! critical token.
//!
//! **Algorithm.** The reference materialises both `[L, V]` softmaxes; this kernel never
//! stores a row. Each row is cut into the blocks of [`crate::logits::BLOCK`] columns; the
//! block of the combined row `cd = fma(1 + β', z^p, (−β')·z^n)` is formed in an
//! `f32` stack buffer, its maximum found on the way (the block kernel's first pass), and
//! while it sits in L1 the second pass of [`crate::logits`]'s canonical block kernel sums
//! it, and the block tuples are merged in its split-tree order. So each
//! model's logits are read once, and the score is **bitwise** `exp(logp)` of
//! [`crate::logits::stats_fwd`] run on the materialised combined row: the same centring,
//! the same `exp`, the same accuracy at offsets of `1e30`, the same bits for every backend
//! and thread count (`Backend::Avx512` runs both passes 16 columns at a time and folds
//! each vector's low 8 columns, then its high 8, into the canonical 8 lanes, so each lane
//! keeps its order). `f32`, `bf16` and `f16` logits (the two models' in the same type) are
//! widened exactly; rows may be strided.
//!
//! **Masked vocabulary** \[library choice\]: a column whose logit is `−inf` in *either* model
//! is `−inf` in the combined row (excluded; the other model's value there is not read).
//! The reference code would compute `2·(−inf) − (−inf) = NaN` for a column masked in both
//! models and `+inf` for one masked in the negative model only, poisoning the row; both
//! models share a vocabulary, so a token impossible under either is treated as impossible.
//!
//! | input | result |
//! |---|---|
//! | NaN or `+inf` in a column not masked as above | that row's score is NaN, counted in [`Status`] |
//! | a row where every column is masked | [`TmError::NoFiniteLogit`] (output contents then unspecified) |
//! | a masked target column | score 0 |
//! | `V = 1` | score 1 (or NaN) |
//! | `β'` not finite or `< 0`, mismatched shapes, target `≥ V`, `V = 0` | an error before anything is written |
//!
//! **Alignment** is the caller's: row `t` of the two logit matrices is paired with
//! `targets[t]`, the next token. For the reference's layout pass rows `0 … L−2` and
//! `targets = ids[1 … L−1]` (the reference's `L − 1` scores, prompt positions included).
//!
//! # The cDPO loss ([`cdpo_loss`])
//!
//! The trainer (`src/train/train_cdpo.py::CDPOTrainer.dpo_loss`, derived from TRL's DPO)
//! works with the masked per-token log-ratios `Δ^w_t`, `Δ^l_t` of chosen and rejected
//! sequences padded to a common length `T`, and per-token weights aligned to the label
//! positions by the caller: `c_t` (chosen, from the positive scores) and `v_t` (rejected,
//! `1 − s^neg`). With `c̃_t = 1` when `only_neg` (the default) and `c_t` otherwise:
//!
//! ```text
//! CdpoForm::PositionwiseCode (default, the released code):
//!   h_{b,t} = β·(c̃_{b,t}·Δ^w_{b,t}·mask^w_{b,t} − v_{b,t}·Δ^l_{b,t}·mask^l_{b,t})
//!   L       = (1/(B·T))·Σ_{b,t} ℓ(h_{b,t})            mean over ALL entries, masked ones included
//! CdpoForm::SequenceWeighted [library choice]:
//!   h_b     = β·(Σ_t c̃·Δ^w·mask^w − Σ_t v·Δ^l·mask^l)
//!   L       = (1/B)·Σ_b ℓ(h_b)
//! ℓ(h) = (1 − ε)·softplus(−h) + ε·softplus(h)
//! ∂L/∂Δ^w_{b,t} = (1/N)·ℓ'(h)·β·c̃_{b,t}·mask^w_{b,t},   ∂L/∂Δ^l_{b,t} = −(1/N)·ℓ'(h)·β·v_{b,t}·mask^l_{b,t}
//! ```
//!
//! (`N = B·T` or `B`, `h` the entry's or the row's margin). In the positionwise form an
//! entry masked on both sides contributes the constant `log 2` and dilutes the mean, as in
//! the code. Masked positions of `Δ`, `c`, `v` are not read. Defaults
//! (`src/configs/train_config.py::get_cdpo_config`): `β = 0.1`, `ε = 0`, `only_neg = true`.
//! Sums and the loss are computed in `f64` and rounded once.
//!
//! # pass@k ([`pass_at_k`])
//!
//! The unbiased estimator of `src/rollout_sampling_for_critical_tokens.py` (and of Codex,
//! arXiv 2107.03374) from `n` samples with `c` correct:
//!
//! ```text
//! pass@k = 1 − C(n − c, k)/C(n, k) = 1 − Π_{j=0}^{m−1} (1 − x/(n − j)),    {x, m} = {c, k}, m = min(c, k)
//! ```
//!
//! (`C(n−c,k)/C(n,k) = Π_{j<k} (n−c−j)/(n−j) = Π_{i=n−c+1}^{n} (1 − k/i)`, whichever has
//! fewer factors). The product is formed in log space, `−expm1(Σ log1p(−x/(n−j)))`, in
//! `f64`: no binomial is ever formed, so `n = 10^6` neither overflows nor cancels, and a
//! result near 0 keeps its relative accuracy. `n − c < k` gives 1 and `c = 0` gives 0.

use super::{check_beta, check_smoothing, check_tokens, smoothed_logistic};
use crate::elem::LogitElem;
use crate::error::{check_len, TmError};
use crate::exp::fma;
use crate::logits::{self, Status};
use crate::mat::Mat;
use crate::platform::{Backend, Exec};

/// One column of the contrastive row: `fma(a, xp, b·xn)`, or `−inf` when either logit is
/// `−inf` (see the module docs). The SIMD path reproduces this operation for operation.
#[inline(always)]
pub(crate) fn combine(a: f32, b: f32, xp: f32, xn: f32) -> f32 {
    if xp == f32::NEG_INFINITY || xn == f32::NEG_INFINITY {
        f32::NEG_INFINITY
    } else {
        fma(a, xp, b * xn)
    }
}

/// Forms one block of the contrastive row and returns its maximum (NaN never winning) and
/// minimum (NaN ignored): pass 1 of the block kernel, done while the block is formed.
fn fill_block<T: LogitElem>(backend: Backend, a: f32, b: f32, xp: &[T], xn: &[T], out: &mut [f32]) -> (f32, f32) {
    match backend {
        Backend::Portable => {
            let (mut m, mut lo) = (f32::NEG_INFINITY, f32::INFINITY);
            for ((o, p), n) in out.iter_mut().zip(xp).zip(xn) {
                let z = combine(a, b, p.to_f32(), n.to_f32());
                *o = z;
                if z > m {
                    m = z;
                }
                if z < lo {
                    lo = z;
                }
            }
            (m, lo)
        }
        #[cfg(target_arch = "x86_64")]
        // Safe because `Exec::check_backend` verified AVX2+FMA+F16C before any row was read, and the
        // three slices have the block's length.
        Backend::Avx2Fma | Backend::Avx512 => unsafe { super::x86_avx2::fill(a, b, xp, xn, out) },
    }
}

/// The score of every row: `s[r] = softmax((1+β')·pos[r] − β'·neg[r])[targets[r]]`,
/// streamed over the vocabulary (see the [module docs](self)). `beta` is `β'` (finite,
/// `≥ 0`; the code's value is 1). Returns the count of rows with a NaN/`+inf` logit (their
/// score is NaN).
pub fn cdpo_ce_scores<T: LogitElem>(
    exec: Exec,
    beta: f32,
    pos: Mat<'_, T>,
    neg: Mat<'_, T>,
    targets: &[u32],
    out: &mut [f32],
) -> Result<Status, TmError> {
    exec.check_backend()?;
    if !(beta.is_finite() && beta >= 0.0) {
        return Err(TmError::InvalidArgument("cDPO beta' must be finite and >= 0"));
    }
    let (rows, vocab) = (pos.rows(), pos.cols());
    check_len("neg_logits rows", rows, neg.rows())?;
    check_len("neg_logits cols", vocab, neg.cols())?;
    if vocab == 0 {
        return Err(TmError::EmptyVocab);
    }
    check_len("targets", rows, targets.len())?;
    check_len("out", rows, out.len())?;
    if let Some(row) = targets.iter().position(|&t| t as usize >= vocab) {
        return Err(TmError::TargetOutOfRange { row, target: targets[row] as i32, vocab });
    }
    let (a, b) = (1.0 + beta, -beta);
    let backend = exec.backend;
    let run = |start: usize, out: &mut [f32]| -> Result<Status, TmError> {
        let mut status = Status::default();
        for (i, o) in out.iter_mut().enumerate() {
            let r = start + i;
            let (xp, xn) = (pos.row(r), neg.row(r));
            let c = targets[r] as usize;
            let z_t = combine(a, b, xp[c].to_f32(), xn[c].to_f32());
            let (fin, nonfinite) = match backend {
                // Safe because `Exec::check_backend` verified AVX-512 F/BW/DQ/VL (and AVX2+FMA+F16C)
                // before any row was read, and the three slices have the block's length.
                #[cfg(target_arch = "x86_64")]
                Backend::Avx512 => logits::streamed_row_finalize_blocks(vocab, Some(z_t), |s, blk| unsafe {
                    super::x86_avx512::block(a, b, &xp[s..s + blk.len()], &xn[s..s + blk.len()], blk)
                }),
                _ => logits::streamed_row_finalize(backend, vocab, Some(z_t), |s, blk| {
                    fill_block(backend, a, b, &xp[s..s + blk.len()], &xn[s..s + blk.len()], blk)
                }),
            };
            let fin = fin.map_err(|e| logits::with_row(e, r))?;
            if nonfinite {
                status.nonfinite_rows += 1;
                status.first_nonfinite_row.get_or_insert(r);
            }
            *o = libm::expf(fin.logp);
        }
        Ok(status)
    };
    logits::run_rows(exec.threads(), rows, out, &|start, _end, out| run(start, out))
}

/// Which cDPO loss [`cdpo_loss`] computes (see the [module docs](self)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CdpoForm {
    /// Per-position margins averaged over all `B·T` entries: the released code (default).
    #[default]
    PositionwiseCode,
    /// One weighted margin per sequence pair, averaged over pairs \[library choice\].
    SequenceWeighted,
}

/// Hyper-parameters of [`cdpo_loss`]; the default is the released code's
/// (`get_cdpo_config`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CdpoCfg {
    /// `β` (finite, `> 0`; default 0.1).
    pub beta: f32,
    /// Label smoothing `ε ∈ [0, 1]` (default 0).
    pub label_smoothing: f32,
    /// Ignore the chosen weights `c` (`c̃ = 1`; default `true`).
    pub only_neg: bool,
    /// Positionwise (default) or sequence-weighted.
    pub form: CdpoForm,
}

impl Default for CdpoCfg {
    fn default() -> Self {
        CdpoCfg { beta: 0.1, label_smoothing: 0.0, only_neg: true, form: CdpoForm::PositionwiseCode }
    }
}

/// The per-token inputs of [`cdpo_loss`], each `[B, T]` row-major.
#[derive(Clone, Copy, Debug)]
pub struct CdpoInputs<'a> {
    /// Padded length `T`.
    pub t: usize,
    /// Label mask of the chosen sequences.
    pub mask_w: &'a [u8],
    /// Label mask of the rejected sequences.
    pub mask_l: &'a [u8],
    /// Chosen log-ratios `Δ^w = logπ_θ − logπ_ref`.
    pub dw: &'a [f32],
    /// Rejected log-ratios `Δ^l`.
    pub dl: &'a [f32],
    /// Chosen weights `c` (read only when `only_neg` is false; then required).
    pub c: Option<&'a [f32]>,
    /// Rejected weights `v = 1 − s^neg`.
    pub v: &'a [f32],
}

/// The cDPO loss (a scalar) and its gradients w.r.t. `Δ^w` and `Δ^l` (`[B, T]`, 0 at
/// masked positions). `B = grad_w.len() / T`; `B = 0` (or `T = 0` in the positionwise form)
/// is [`TmError::InvalidArgument`]: the mean of nothing.
pub fn cdpo_loss(
    exec: Exec,
    cfg: &CdpoCfg,
    x: &CdpoInputs<'_>,
    grad_w: &mut [f32],
    grad_l: &mut [f32],
) -> Result<f32, TmError> {
    exec.check_backend()?;
    check_beta(cfg.beta)?;
    check_smoothing(cfg.label_smoothing)?;
    let t = x.t;
    let n = grad_w.len();
    if t == 0 && n != 0 {
        return Err(TmError::LengthMismatch { what: "grad_w", expected: 0, got: n });
    }
    let rows = n.checked_div(t).unwrap_or(0);
    check_tokens(
        rows,
        t,
        &[
            ("grad_w", n),
            ("grad_l", grad_l.len()),
            ("mask_w", x.mask_w.len()),
            ("mask_l", x.mask_l.len()),
            ("dw", x.dw.len()),
            ("dl", x.dl.len()),
            ("v", x.v.len()),
        ],
    )?;
    let c = if cfg.only_neg {
        None
    } else {
        let c = x.c.ok_or(TmError::InvalidArgument("cdpo_loss: only_neg = false needs the chosen weights c"))?;
        check_len("c", n, c.len())?;
        Some(c)
    };
    if n == 0 {
        return Err(TmError::InvalidArgument("cdpo_loss: empty batch (the mean of nothing)"));
    }
    let (beta, eps) = (cfg.beta as f64, cfg.label_smoothing as f64);
    let cw = |i: usize| c.map_or(1.0, |c| c[i] as f64);
    let chosen = |i: usize| if x.mask_w[i] != 0 { cw(i) * x.dw[i] as f64 } else { 0.0 };
    let rejected = |i: usize| if x.mask_l[i] != 0 { x.v[i] as f64 * x.dl[i] as f64 } else { 0.0 };
    let grads = |i: usize, g: f64, grad_w: &mut [f32], grad_l: &mut [f32]| {
        grad_w[i] = if x.mask_w[i] != 0 { (g * beta * cw(i)) as f32 } else { 0.0 };
        grad_l[i] = if x.mask_l[i] != 0 { (-g * beta * x.v[i] as f64) as f32 } else { 0.0 };
    };
    let mut total = 0.0f64;
    match cfg.form {
        CdpoForm::PositionwiseCode => {
            let inv_n = 1.0 / n as f64;
            for i in 0..n {
                let (l, g) = smoothed_logistic(beta * (chosen(i) - rejected(i)), eps);
                total += l;
                grads(i, g * inv_n, grad_w, grad_l);
            }
            Ok((total * inv_n) as f32)
        }
        CdpoForm::SequenceWeighted => {
            let inv_b = 1.0 / rows as f64;
            for r in 0..rows {
                let row = r * t..(r + 1) * t;
                let margin: f64 = row.clone().map(|i| chosen(i) - rejected(i)).sum();
                let (l, g) = smoothed_logistic(beta * margin, eps);
                total += l;
                for i in row {
                    grads(i, g * inv_b, grad_w, grad_l);
                }
            }
            Ok((total * inv_b) as f32)
        }
    }
}

/// The unbiased pass@k estimate `1 − C(n−c, k)/C(n, k)` from `n` samples of which `c` are
/// correct (see the [module docs](self)). Errors: `c > n`, `k = 0` or `k > n`.
pub fn pass_at_k(n: u64, c: u64, k: u64) -> Result<f64, TmError> {
    if c > n {
        return Err(TmError::InvalidArgument("pass_at_k: more correct samples than samples (c > n)"));
    }
    if k == 0 || k > n {
        return Err(TmError::InvalidArgument("pass_at_k: k must be in [1, n]"));
    }
    if c == 0 {
        return Ok(0.0);
    }
    if n - c < k {
        return Ok(1.0);
    }
    let (x, m) = if c <= k { (k, c) } else { (c, k) };
    // Π_{j<m} (1 − x/(n − j)): every factor is in (0, 1) because n − j > n − m ≥ x … when
    // m = c (x = k): n − j ≥ n − c + 1 > k; when m = k (x = c): n − j ≥ n − k + 1 > c.
    // `log_q` only decreases; once below −40, `exp(log_q) < 2^-57` and `1 − exp(log_q)`
    // rounds to exactly 1.0 whatever the remaining factors: stopping there gives the same
    // bits and bounds the loop by `min(m, ≈ 40·n/x)` steps (≤ √(40·n)), not `m`.
    let mut log_q = 0.0f64;
    for j in 0..m {
        log_q += libm::log1p(-(x as f64) / ((n - j) as f64));
        if log_q < -40.0 {
            return Ok(1.0);
        }
    }
    Ok(-libm::expm1(log_q))
}
