//! PSR, NSR and W-REINFORCE: positive- and negative-sample reinforcement \[code\]
//! (`TianHongZXY/RLVR-Decomposed`, `verl/trainer/ppo/core_algos.py::compute_psr_nsr_outcome_advantage`
//! and `ray_trainer.py`; \[paper\] Zhu et al., *The Surprising Effectiveness of Negative
//! Reinforcement in LLM Reasoning*, arXiv 2506.01347; spec `policy.md` §7.5).
//!
//! ```text
//! G          = returns-to-go of the token rewards (verl's recurrence, discount γ, f64 carry)
//! s_b        = Σ_t mask[b,t]·score[b,t]          correct_b = (s_b == 1), incorrect_b = (s_b == 0)
//! PSR:         A = G,            keep only the correct rows
//! NSR:         A = G − 1,        keep only the incorrect rows   (= −1 with binary rewards)
//! W-REINFORCE: A = λ·G on correct rows, G − 1 on incorrect rows, G elsewhere; keep every row
//! A ← A·mask
//! ```
//!
//! `λ` is `positive_advantage_weight`, 0.1 recommended \[paper\]. The loss is the standard
//! clipped PPO loss ([`crate::policy_loss::ppo_clip_loss`]) on the kept rows: PSR and NSR
//! remove the other rows from the batch, and so from every loss normaliser — the caller
//! subsets by `keep_rows` (the reference then drops rows to make the batch divisible by the
//! world size; that is the trainer's business).
//!
//! \[library choice\] details: `s_b` sums the valid positions only (verl sums the whole row,
//! whose padding scores are 0; padding is never read here); the advantage of a dropped row is
//! written as 0; `A` is computed in `f64` from the `f64` return and rounded once.
//! Errors: non-finite rewards or scores at valid positions are [`TmError::NonFinite`].
//!
//! Speed: with `γ = 1` and outcome rewards (at most one non-zero valid reward and score per
//! row) every sum above has at most one non-zero term, so it is exact in any order: such rows
//! go through one vectorised scan and one vectorised write, `G_t = r_p` on the valid run
//! that ends at the reward's position `p` and 0 elsewhere (the recurrence's values). Blocks
//! of four rows with another row run the recurrence. Both give the same bits.

use crate::error::{check_len, TmError};
use crate::platform::{isa_dispatch, Exec};
use crate::policy_loss::BatchShape;

/// Which samples are reinforced.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NsrMode {
    /// Positive-sample reinforcement: correct rows only, `A = G`.
    Psr,
    /// Negative-sample reinforcement: incorrect rows only, `A = G − 1`.
    Nsr,
    /// W-REINFORCE: every row; correct rows are weighted by `lambda` (finite;
    /// `positive_advantage_weight`, 0.1 recommended).
    Weighted {
        /// `λ`.
        lambda: f32,
    },
}

/// Options of [`nsr_advantage`]. `Default`: W-REINFORCE with `λ = 0.1` \[paper\], `γ = 1`
/// (verl's REINFORCE++ default).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NsrCfg {
    /// The mode.
    pub mode: NsrMode,
    /// The discount `γ` of the returns, finite and `≥ 0`.
    pub gamma: f32,
}

impl Default for NsrCfg {
    fn default() -> Self {
        NsrCfg { mode: NsrMode::Weighted { lambda: 0.1 }, gamma: 1.0 }
    }
}

/// The outputs of [`nsr_advantage`].
#[derive(Debug)]
pub struct NsrOut<'a> {
    /// `[B]`: 1 = the row stays in the batch.
    pub keep_rows: &'a mut [u8],
    /// `[B,T]` advantages (0 at padding and on dropped rows).
    pub adv: &'a mut [f32],
}

/// PSR/NSR/W-REINFORCE advantages (module docs): `adv[b,t]` (0 at padding and on dropped
/// rows) and `keep_rows[b]` (1 = the row stays in the batch).
///
/// Errors: lengths; [`TmError::InvalidArgument`] for `γ` or `λ` not finite (or `γ < 0`);
/// [`TmError::NonFinite`] for a non-finite reward or score at a valid position. Nothing is
/// written on error.
pub fn nsr_advantage(
    exec: Exec,
    shape: BatchShape,
    mask: &[u8],
    token_rewards: &[f32],
    scores: &[f32],
    cfg: &NsrCfg,
    out: NsrOut<'_>,
) -> Result<(), TmError> {
    let NsrOut { keep_rows, adv } = out;
    exec.check_backend()?;
    let n = shape.numel()?;
    check_len("mask", n, mask.len())?;
    check_len("token_rewards", n, token_rewards.len())?;
    check_len("scores", n, scores.len())?;
    check_len("keep_rows", shape.rows, keep_rows.len())?;
    check_len("adv", n, adv.len())?;
    if !(cfg.gamma.is_finite() && cfg.gamma >= 0.0) {
        return Err(TmError::InvalidArgument("gamma must be finite and >= 0"));
    }
    if let NsrMode::Weighted { lambda } = cfg.mode {
        if !lambda.is_finite() {
            return Err(TmError::InvalidArgument("W-REINFORCE lambda must be finite"));
        }
    }
    if any_nonfinite(exec.backend(), mask, token_rewards, scores) {
        for (what, x) in [("token_rewards", token_rewards), ("scores", scores)] {
            if let Some(index) = x.iter().zip(mask).position(|(v, &m)| m != 0 && !v.is_finite()) {
                return Err(TmError::NonFinite { what, index });
            }
        }
    }
    // Rows go 4 at a time: each row's recurrence is a serial chain of f64 operations, so
    // interleaving independent chains keeps the core busy. Every row is computed by the
    // same operations in the same order whatever its block, so the bits do not depend on it.
    let t = shape.cols;
    let mut b0 = 0;
    while b0 < shape.rows {
        let lanes = LANES.min(shape.rows - b0);
        let rows = b0 * t..(b0 + lanes) * t;
        let io = Block { t, mask: &mask[rows.clone()], r: &token_rewards[rows.clone()], s: &scores[rows.clone()] };
        let (keep, adv) = (&mut keep_rows[b0..b0 + lanes], &mut adv[rows]);
        // Outcome rewards: at most one non-zero reward and score per row. Then every sum is
        // exact in any order, and each row is one scan and one vectorised write.
        if !(cfg.gamma == 1.0 && sparse_block(exec.backend(), lanes, &io, cfg, keep, adv)) {
            block(lanes, &io, cfg, keep, adv);
        }
        b0 += lanes;
    }
    Ok(())
}

/// Rows per block: 4, not 8, because rows `T` floats apart often map to the same L1 set
/// (`T` a multiple of 1024), and 8 rows of each of four arrays would overflow its 8 ways.
const LANES: usize = 4;

/// The inputs of up to [`LANES`] consecutive rows.
struct Block<'a> {
    t: usize,
    mask: &'a [u8],
    r: &'a [f32],
    s: &'a [f32],
}

/// `lanes` consecutive rows of [`nsr_advantage`] (lengths checked by the caller).
#[inline(always)]
fn block(lanes: usize, io: &Block<'_>, cfg: &NsrCfg, keep: &mut [u8], adv: &mut [f32]) {
    let t = io.t;
    // s_b: the valid scores, summed in index order.
    let mut score = [0.0f64; LANES];
    for k in 0..t {
        for (l, sc) in score.iter_mut().enumerate().take(lanes) {
            let j = l * t + k;
            *sc += if io.mask[j] != 0 { io.s[j] as f64 } else { 0.0 };
        }
    }
    // A = scale·G + shift on each row.
    let (mut scale, mut shift, mut kept) = ([1.0f64; LANES], [0.0f64; LANES], [false; LANES]);
    for l in 0..lanes {
        let (correct, incorrect) = (score[l] == 1.0, score[l] == 0.0);
        (kept[l], scale[l], shift[l]) = match cfg.mode {
            NsrMode::Psr => (correct, 1.0, 0.0),
            NsrMode::Nsr => (incorrect, 1.0, -1.0),
            NsrMode::Weighted { lambda } if correct => (true, lambda as f64, 0.0),
            NsrMode::Weighted { .. } if incorrect => (true, 1.0, -1.0),
            NsrMode::Weighted { .. } => (true, 1.0, 0.0),
        };
        keep[l] = kept[l] as u8;
    }
    // γ = 1 (the default) skips the multiplication: `1·c = c` exactly, so the bits are the
    // same and the serial chain is one addition per token.
    if cfg.gamma == 1.0 {
        returns(lanes, io, &kept, &scale, &shift, |c| c, adv);
    } else {
        let gamma = cfg.gamma as f64;
        returns(lanes, io, &kept, &scale, &shift, |c| gamma * c, adv);
    }
}

/// `adv = scale·G + shift` on kept rows, `G_t = r_t + discount(G_{t+1})` over valid positions.
#[inline(always)]
fn returns(
    lanes: usize,
    io: &Block<'_>,
    kept: &[bool; LANES],
    scale: &[f64; LANES],
    shift: &[f64; LANES],
    discount: impl Fn(f64) -> f64,
    adv: &mut [f32],
) {
    let t = io.t;
    let mut carry = [0.0f64; LANES];
    for k in (0..t).rev() {
        for l in 0..lanes {
            let j = l * t + k;
            let valid = io.mask[j] != 0;
            // verl: G_t = r_t + γ·carry, carry reset at masked positions; padding rewards
            // are not read (they would only reach the padding's own, zeroed, output).
            let g = if valid { io.r[j] as f64 + discount(carry[l]) } else { 0.0 };
            carry[l] = g;
            adv[j] = if valid && kept[l] { (scale[l] * g + shift[l]) as f32 } else { 0.0 };
        }
    }
}

/// A row with at most one non-zero valid reward and score (the usual outcome reward at the
/// last token): the score sum `s_b`, and the reward `r_p` with its position `p` (if any).
#[derive(Clone, Copy, Debug, Default)]
struct Sparse {
    score: f64,
    reward: Option<(usize, f32)>,
}

/// [`Sparse`] of a row, or `None` if it has two non-zero valid rewards or scores. With at most
/// one non-zero term every order of summation gives the same value (`x + 0 = x`; the sign of
/// a zero sum is never looked at), so the score sum is the one non-zero valid score, or 0.
/// Chunks of 64 positions become two bit masks (valid and non-zero reward, valid and non-zero
/// score) without a branch per position; only a chunk with a set bit is looked at further.
#[inline(always)]
fn scan_sparse(mask: &[u8], r: &[f32], s: &[f32]) -> Option<Sparse> {
    const C: usize = 64;
    let (mut nr, mut ns, mut reward_at, mut score_at) = (0u32, 0u32, 0usize, 0usize);
    let mut note = |base: usize, mr: u64, ms: u64| {
        nr += mr.count_ones();
        ns += ms.count_ones();
        if mr != 0 {
            reward_at = base + mr.trailing_zeros() as usize;
        }
        if ms != 0 {
            score_at = base + ms.trailing_zeros() as usize;
        }
        nr > 1 || ns > 1
    };
    // Bit `i`: position `i` is valid and `v[i] != 0`. The full chunks go through a copy of
    // this loop with the length fixed (`[_; C]`), which the compiler turns into vector compares.
    #[inline(always)]
    fn bits(m: &[u8], v: &[f32]) -> u64 {
        m.iter().zip(v).enumerate().fold(0u64, |b, (i, (&m, &v))| b | (u64::from((m != 0) & (v != 0.0)) << i))
    }
    #[inline(always)]
    fn bits_full(m: &[u8; C], v: &[f32; C]) -> u64 {
        bits(m, v)
    }
    let full = mask.len() / C * C;
    let (mc, rc, sc) = (mask[..full].chunks_exact(C), r[..full].chunks_exact(C), s[..full].chunks_exact(C));
    for (c, ((m, rv), sv)) in mc.zip(rc).zip(sc).enumerate() {
        let (m, rv, sv) = (m.try_into().expect("C"), rv.try_into().expect("C"), sv.try_into().expect("C"));
        let (mr, ms) = (bits_full(m, rv), bits_full(m, sv));
        if (mr | ms) != 0 && note(c * C, mr, ms) {
            return None;
        }
    }
    let (mr, ms) = (bits(&mask[full..], &r[full..]), bits(&mask[full..], &s[full..]));
    if (mr | ms) != 0 && note(full, mr, ms) {
        return None;
    }
    let score = if ns == 1 { s[score_at] as f64 } else { 0.0 };
    let reward = (nr == 1).then(|| (reward_at, r[reward_at]));
    Some(Sparse { score, reward })
}

isa_dispatch! {
    /// Whether a valid position of `r` or `s` is not finite: one pass, chunks of 64 tested
    /// without a branch per element.
    fn any_nonfinite(mask: &[u8], r: &[f32], s: &[f32]) -> bool {
        let bad = |v: f32| v.to_bits() & 0x7f80_0000 == 0x7f80_0000;
        let (mc, rc, sc) = (mask.chunks(64), r.chunks(64), s.chunks(64));
        mc.zip(rc).zip(sc).any(|((m, r), s)| {
            m.iter().zip(r).zip(s).fold(false, |b, ((&m, &r), &s)| b | ((m != 0) & (bad(r) | bad(s))))
        })
    }
}

isa_dispatch! {
    /// The rows of a block by [`scan_sparse`] and [`sparse_row`] if all of them are sparse
    /// (`γ = 1` checked by the caller); `false`, writing nothing, otherwise.
    fn sparse_block(lanes: usize, io: &Block<'_>, cfg: &NsrCfg, keep: &mut [u8], adv: &mut [f32]) -> bool {
        let t = io.t;
        let mut sparse = [Sparse::default(); LANES];
        for (l, sp) in sparse.iter_mut().enumerate().take(lanes) {
            let j = l * t..(l + 1) * t;
            match scan_sparse(&io.mask[j.clone()], &io.r[j.clone()], &io.s[j]) {
                Some(v) => *sp = v,
                None => return false,
            }
        }
        for (l, sp) in sparse.iter().enumerate().take(lanes) {
            let j = l * t..(l + 1) * t;
            keep[l] = sparse_row(&io.mask[j.clone()], *sp, cfg, &mut adv[j]) as u8;
        }
        true
    }
}

/// Writes a [`Sparse`] row (`G = 1`): `G_t = r_p` for the valid `t ≤ p` with no padding in
/// `(t, p]`, else `G_t = 0`, exactly the recurrence's values (a sum of zeros and one `r_p`);
/// `adv = scale·G + shift` rounded once, as [`returns`] computes it. Returns whether the row
/// is kept.
fn sparse_row(mask: &[u8], sp: Sparse, cfg: &NsrCfg, adv: &mut [f32]) -> bool {
    let (correct, incorrect) = (sp.score == 1.0, sp.score == 0.0);
    let (kept, scale, shift) = match cfg.mode {
        NsrMode::Psr => (correct, 1.0, 0.0),
        NsrMode::Nsr => (incorrect, 1.0, -1.0),
        NsrMode::Weighted { lambda } if correct => (true, lambda as f64, 0.0),
        NsrMode::Weighted { .. } if incorrect => (true, 1.0, -1.0),
        NsrMode::Weighted { .. } => (true, 1.0, 0.0),
    };
    if !kept {
        adv.fill(0.0);
        return false;
    }
    // `scale·(±0) + shift` is `shift` or `+0`, whatever the zero's sign.
    let a0 = (scale * 0.0 + shift) as f32;
    let (start, end, a1) = match sp.reward {
        Some((p, r)) => (last_padding(&mask[..p]).map_or(0, |z| z + 1), p + 1, (scale * r as f64 + shift) as f32),
        None => (0, 0, a0),
    };
    let fill = |adv: &mut [f32], mask: &[u8], g: f32| {
        for (a, &m) in adv.iter_mut().zip(mask) {
            *a = if m != 0 { g } else { 0.0 };
        }
    };
    fill(&mut adv[..start], &mask[..start], a0);
    fill(&mut adv[start..end], &mask[start..end], a1);
    fill(&mut adv[end..], &mask[end..], a0);
    true
}

/// The last padding position (`mask = 0`) of `mask`: chunks of 64 from the end, tested
/// without a branch per element.
fn last_padding(mask: &[u8]) -> Option<usize> {
    let mut end = mask.len();
    for c in mask.rchunks(64) {
        end -= c.len();
        if c.iter().fold(false, |b, &m| b | (m == 0)) {
            return c.iter().rposition(|&m| m == 0).map(|i| end + i);
        }
    }
    None
}
