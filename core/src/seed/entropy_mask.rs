//! The top-entropy-quantile mask ("80/20": train only on the highest-entropy tokens)
//! \[code\] (TRL `GRPOTrainer.get_high_entropy_mask`, `top_entropy_quantile`; \[paper\] Wang et
//! al., *Beyond the 80/20 Rule*, arXiv 2506.01939; spec `policy.md` §6).
//!
//! ```text
//! ρ = top_entropy_quantile ∈ (0, 1],   q = 1 − ρ
//! θ = quantile_linear({H[b,t] : mask[b,t] ≠ 0, over all ranks}, q)
//! keep[b,t] = mask[b,t] ≠ 0 ∧ H[b,t] ≥ θ
//! quantile_linear(v, q): sort ascending v_0 ≤ … ≤ v_{n−1}, pos = q·(n − 1), lo = ⌊pos⌋,
//!                        θ = v_lo + (pos − lo)·(v_{lo+1} − v_lo)       (torch.quantile's default)
//! ```
//!
//! Ties at `θ` are all kept, so more than `ρ·n` tokens can survive (TRL's unit test: 10
//! valid tokens, `ρ = 0.2` ⇒ 2 kept). With no valid token anywhere nothing is kept. `ρ = 1`
//! gives `θ = min H`, so every valid token is kept (TRL skips the mask then: same result).
//! Use: `ℓ ← ℓ·keep` before the aggregation, which still counts `mask` (so the normaliser
//! is the number of valid tokens); an entropy bonus uses `mask·keep`.
//!
//! # Mergeable across ranks: an exact radix selection, not a sketch
//!
//! TRL gathers every valid entropy of every rank and calls `torch.quantile`. tokenmath finds
//! the same `θ` exchanging a fixed amount of data, whatever the number of tokens
//! \[library choice\]: `θ` needs only the order statistics `v_lo` and `v_{lo+1}` of the union,
//! and an order statistic of a union is found exactly by a radix selection whose per-rank
//! histograms are **summed** (integer counts, so the merge is exact and order-free).
//! [`EntropyQuantile`] is the protocol:
//!
//! ```text
//! n     = all_reduce_sum(valid_count(mask))                           1 × u64
//! st    = EntropyQuantile::new(n, ρ)
//! while st.step() == Histogram:                                       ≤ 4 rounds
//!     h = st.local_histogram(…);  st.push_histogram(all_reduce_sum(h))   256 × u64 each
//! if st.step() == MinAbove:                                           ≤ 1 round
//!     st.push_min_above(all_reduce_min(st.local_min_above(…)))           1 × f32
//! θ = st.threshold()
//! ```
//!
//! Rounds 1–4 select the key of `v_lo` byte by byte (module `radix`); `v_{lo+1}` is `v_lo`
//! when the last round shows a tie, else the smallest value above `v_lo` (a `min`
//! all-reduce). Every rank ends with the bitwise same `θ` as [`top_entropy_threshold`] on the
//! concatenated data (the test `entropy_mask_merges_exactly` splits batches at random over up
//! to 8 ranks and checks it bitwise). Cost: at most five passes over the local tokens and
//! `4·2 KiB + 4 B` exchanged; `torch.quantile`'s gather moves `4·n` bytes.
//!
//! # One rank: two or three passes \[library choice\]
//! [`top_entropy_threshold`] and [`linear_quantile`] need no merge, so they select with
//! wider digits (module `radix`, `Wide`): bits 31..21, 20..10 and 9..0 of the key, 2048
//! `u32` bins per round (four interleaved copies in the first round, where entropies share
//! their exponent). Pass 1 also counts the valid tokens and checks that they are finite.
//! From `2^16` tokens on, pass 1 first reads the first sixteenth of the tokens, takes the
//! first-round bin of rank `⌊q·(n₁₆ − 1)⌋` there as a guess, and on the rest of the tokens
//! also counts the second round of that bin; when the guess is right (the usual case) only
//! the first sixteenth is read again for the second round, else a full pass does it. The
//! last pass also finds the smallest key above the current prefix, and `v_{lo+1}` is the
//! next non-empty bin of the last round or that key. So about 2.1 passes (3.1 after a wrong
//! guess) instead of the protocol's six, no scratch (about 100 KiB of stack), and bitwise
//! the same `θ`: the order statistics are unique, and a guess only decides which counts are
//! taken when (tests `one_rank_selection_matches_reference_on_every_backend`,
//! `one_rank_guess_right_and_wrong`). The counting loops compute the keys of 16 tokens in a
//! loop the compiler vectorises (AVX2 on the `Avx2Fma`/`Avx512` backends: the same source
//! compiled with the feature, so the same integer counts), then count them one by one;
//! tokens that do not count go to padding bins that are never read, so no loop has a branch
//! per token, except the last round's, which visits only its few candidates.
//!
//! # Numerics
//! * `pos`, `lo` and the weight `pos − lo` are computed in `f64`, and so is the interpolation;
//!   `θ` is rounded to `f32` once (it lies between `v_lo` and `v_{lo+1}`, so it cannot
//!   overflow) \[library choice\]. torch computes `pos` in the input's dtype and interpolates
//!   with `lerp` in `f32`, so its `θ` can differ from this one by a few ulps.
//! * The mask compares each `f32` entropy with the `f32` `θ`.
//! * A NaN or `±inf` entropy at a valid position is [`TmError::NonFinite`] for the threshold
//!   \[library choice\] (entropies are finite by construction; torch would return a NaN `θ`
//!   and silently keep nothing). Padding is never read.

use super::radix::{from_key, key, Hist4, Radix, RadixHistogram, Wide, WideHist, WideRound, BLOCK, WIDE_FLUSH};

/// Batches from this many tokens guess the first round's bin (module docs).
const SPEC_MIN: usize = 1 << 16;
use crate::error::{check_len, TmError};
use crate::platform::{isa_dispatch, Exec};
use crate::policy_loss::BatchShape;

fn check_inputs(shape: BatchShape, mask: &[u8], entropy: &[f32]) -> Result<usize, TmError> {
    let n = shape.numel()?;
    check_len("mask", n, mask.len())?;
    check_len("entropy", n, entropy.len())?;
    Ok(n)
}

fn check_rho(rho: f32) -> Result<(), TmError> {
    if rho.is_finite() && rho > 0.0 && rho <= 1.0 {
        Ok(())
    } else {
        Err(TmError::InvalidArgument("top_entropy_quantile (rho) must be in (0, 1]"))
    }
}

/// The number of valid tokens (`mask ≠ 0`) of this rank: the `n` to sum over ranks for
/// [`EntropyQuantile::new`].
///
/// Errors: [`TmError::LengthMismatch`], [`TmError::SizeOverflow`], [`TmError::BackendUnavailable`].
pub fn valid_count(exec: Exec, shape: BatchShape, mask: &[u8]) -> Result<u64, TmError> {
    exec.check_backend()?;
    check_len("mask", shape.numel()?, mask.len())?;
    Ok(mask.iter().map(|&m| (m != 0) as u64).sum())
}

/// What [`EntropyQuantile`] needs next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantileStep {
    /// A histogram round: [`EntropyQuantile::local_histogram`] on every rank, summed
    /// element-wise, then [`EntropyQuantile::push_histogram`].
    Histogram,
    /// The smallest value above `v_lo`: [`EntropyQuantile::local_min_above`] on every rank,
    /// the minimum of them, then [`EntropyQuantile::push_min_above`].
    MinAbove,
    /// Finished: [`EntropyQuantile::threshold`].
    Done,
}

/// The distributed computation of `θ` (module docs): the same on every rank, fed the
/// merged results of each round. `Copy`, no allocation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EntropyQuantile {
    sel: Radix,
    /// `pos − lo`, in `[0, 1)`.
    weight: f64,
    /// `v_lo` once selected.
    lo_value: Option<f32>,
    step: QuantileStep,
    theta: Option<f32>,
}

impl EntropyQuantile {
    /// Starts the selection of `θ` over `global_count` valid tokens (the sum of every rank's
    /// [`valid_count`]) for `ρ = rho`.
    ///
    /// Errors: [`TmError::InvalidArgument`] unless `0 < rho ≤ 1`.
    pub fn new(global_count: u64, rho: f32) -> Result<EntropyQuantile, TmError> {
        check_rho(rho)?;
        EntropyQuantile::at(global_count, 1.0 - rho as f64)
    }

    /// Starts the selection of the linear quantile at `q ∈ [0, 1]` itself (`torch.quantile(v,
    /// q)`), e.g. RMT's entropy terciles; [`Self::new`] is `q = 1 − ρ`.
    ///
    /// Errors: [`TmError::InvalidArgument`] unless `0 ≤ q ≤ 1`.
    pub fn at(global_count: u64, q: f64) -> Result<EntropyQuantile, TmError> {
        if !(0.0..=1.0).contains(&q) {
            return Err(TmError::InvalidArgument("the quantile q must be in [0, 1]"));
        }
        let mut st = EntropyQuantile {
            sel: Radix::new(0, global_count),
            weight: 0.0,
            lo_value: None,
            step: QuantileStep::Histogram,
            theta: None,
        };
        if global_count == 0 {
            st.step = QuantileStep::Done;
            return Ok(st);
        }
        let pos = q * (global_count - 1) as f64;
        let lo = libm::floor(pos);
        st.weight = pos - lo;
        st.sel = Radix::new(lo as u64, global_count);
        Ok(st)
    }

    /// The next step of the protocol.
    pub fn step(&self) -> QuantileStep {
        self.step
    }

    /// `θ` once [`QuantileStep::Done`]; `None` before, and when there is no valid token
    /// (then nothing is kept).
    pub fn threshold(&self) -> Option<f32> {
        self.theta
    }

    /// This rank's histogram for the current round, written to `hist` (all 256 bins).
    ///
    /// Errors: lengths; [`TmError::NonFinite`] for a NaN/`±inf` entropy at a valid position
    /// (then `hist` is not written); [`TmError::InvalidArgument`] outside a histogram round.
    pub fn local_histogram(
        &self,
        exec: Exec,
        shape: BatchShape,
        mask: &[u8],
        entropy: &[f32],
        hist: &mut RadixHistogram,
    ) -> Result<(), TmError> {
        exec.check_backend()?;
        check_inputs(shape, mask, entropy)?;
        if self.step != QuantileStep::Histogram {
            return Err(TmError::InvalidArgument("local_histogram called outside a histogram round"));
        }
        let mut h = Hist4::new();
        for (j, (&m, &e)) in mask.iter().zip(entropy).enumerate() {
            if m != 0 {
                if !e.is_finite() {
                    return Err(TmError::NonFinite { what: "entropy", index: j });
                }
                h.count(&self.sel, j, key(e));
            }
        }
        *hist = h.total();
        Ok(())
    }

    /// Adds `other` into `acc` element-wise: the merge of two ranks' histograms (exact,
    /// associative and commutative).
    pub fn merge_histograms(acc: &mut RadixHistogram, other: &RadixHistogram) {
        for (a, b) in acc.iter_mut().zip(other) {
            *a = a.saturating_add(*b);
        }
    }

    /// Takes the merged histogram of the current round.
    ///
    /// Errors: [`TmError::InvalidArgument`] outside a histogram round, or if the histogram's
    /// total is not the number of remaining candidates (a wrong `global_count`, a missing
    /// rank, or data that changed between rounds). The state is unchanged on error.
    pub fn push_histogram(&mut self, merged: &RadixHistogram) -> Result<(), TmError> {
        if self.step != QuantileStep::Histogram {
            return Err(TmError::InvalidArgument("push_histogram called outside a histogram round"));
        }
        let mut sel = self.sel;
        sel.advance(merged)?;
        self.sel = sel;
        if sel.done() {
            let v_lo = from_key(sel.prefix);
            self.lo_value = Some(v_lo);
            // `v_{lo+1} = v_lo` when the weight is 0 or rank lo+1 ties with rank lo.
            if self.weight == 0.0 || sel.k + 1 < sel.cand {
                self.finish(v_lo);
            } else {
                self.step = QuantileStep::MinAbove;
            }
        }
        Ok(())
    }

    /// This rank's smallest valid entropy strictly above `v_lo` (`+inf` if it has none).
    ///
    /// Errors: lengths; [`TmError::NonFinite`] as [`Self::local_histogram`];
    /// [`TmError::InvalidArgument`] outside the `MinAbove` step.
    pub fn local_min_above(&self, exec: Exec, shape: BatchShape, mask: &[u8], entropy: &[f32]) -> Result<f32, TmError> {
        exec.check_backend()?;
        check_inputs(shape, mask, entropy)?;
        let Some(v_lo) = self.lo_value.filter(|_| self.step == QuantileStep::MinAbove) else {
            return Err(TmError::InvalidArgument("local_min_above called outside the MinAbove step"));
        };
        let k_lo = key(v_lo);
        let mut best = u32::MAX; // key(+inf) = 0xff80_0000 < u32::MAX
        for (j, (&m, &e)) in mask.iter().zip(entropy).enumerate() {
            if m != 0 {
                if !e.is_finite() {
                    return Err(TmError::NonFinite { what: "entropy", index: j });
                }
                let k = key(e);
                if k > k_lo && k < best {
                    best = k;
                }
            }
        }
        Ok(if best == u32::MAX { f32::INFINITY } else { from_key(best) })
    }

    /// Takes the minimum over ranks of [`Self::local_min_above`] and finishes.
    ///
    /// Errors: [`TmError::InvalidArgument`] outside the `MinAbove` step, or if `merged_min`
    /// is not a finite value above `v_lo` (the ranks' data do not hold rank `lo + 1`).
    pub fn push_min_above(&mut self, merged_min: f32) -> Result<(), TmError> {
        let Some(v_lo) = self.lo_value.filter(|_| self.step == QuantileStep::MinAbove) else {
            return Err(TmError::InvalidArgument("push_min_above called outside the MinAbove step"));
        };
        if !(merged_min.is_finite() && merged_min > v_lo) {
            return Err(TmError::InvalidArgument("the merged minimum is not a finite value above v_lo"));
        }
        self.finish(interpolate(v_lo, self.weight, merged_min));
        Ok(())
    }

    /// The state as six `u64` words, to keep it outside Rust (the C ABI's
    /// `tkm_entropy_quantile`) or send it to another process. [`Self::from_words`] inverts it.
    pub fn to_words(&self) -> [u64; 6] {
        let opt = |v: Option<f32>| v.map_or(0, |v| (1u64 << 32) | v.to_bits() as u64);
        let step = match self.step {
            QuantileStep::Histogram => 0,
            QuantileStep::MinAbove => 1,
            QuantileStep::Done => 2,
        };
        [
            self.sel.k,
            self.sel.cand,
            ((self.sel.round as u64) << 32) | self.sel.prefix as u64,
            self.weight.to_bits(),
            opt(self.lo_value) | (step << 40),
            opt(self.theta),
        ]
    }

    /// The state of [`Self::to_words`].
    ///
    /// Errors: [`TmError::InvalidArgument`] for words no state encodes (checked field by
    /// field, so a corrupted state is refused rather than misread).
    pub fn from_words(w: &[u64; 6]) -> Result<EntropyQuantile, TmError> {
        let bad = TmError::InvalidArgument("not an EntropyQuantile state");
        let opt = |v: u64| match v >> 32 {
            0 if v == 0 => Ok(None),
            1 => Ok(Some(f32::from_bits(v as u32))),
            _ => Err(bad),
        };
        let round = (w[2] >> 32) as u32;
        let weight = f64::from_bits(w[3]);
        let step = match w[4] >> 40 {
            0 => QuantileStep::Histogram,
            1 => QuantileStep::MinAbove,
            2 => QuantileStep::Done,
            _ => return Err(bad),
        };
        let lo_value = opt(w[4] & ((1 << 40) - 1))?;
        let theta = opt(w[5])?;
        let sel = Radix { k: w[0], cand: w[1], prefix: w[2] as u32, round };
        let consistent = round <= 4
            && (round == 4 || (round < 4 && (w[2] as u32) >> (8 * round) == 0))
            && (0.0..1.0).contains(&weight)
            && (sel.cand == 0 || sel.k < sel.cand)
            && match step {
                // A histogram round seeks a rank among at least one candidate (only the
                // finished state of an empty batch has `cand = 0`).
                QuantileStep::Histogram => round < 4 && sel.k < sel.cand && lo_value.is_none() && theta.is_none(),
                QuantileStep::MinAbove => round == 4 && lo_value.is_some_and(f32::is_finite) && theta.is_none(),
                QuantileStep::Done => theta.is_none_or(|t| !t.is_nan()),
            };
        if consistent {
            Ok(EntropyQuantile { sel, weight, lo_value, step, theta })
        } else {
            Err(bad)
        }
    }

    fn finish(&mut self, theta: f32) {
        self.theta = Some(theta);
        self.step = QuantileStep::Done;
    }
}

/// `θ` on one rank (or over the concatenation of all ranks' data): bitwise the
/// [`EntropyQuantile`] protocol's, in two or three passes with no scratch memory (module
/// docs, "One rank"). `None` when no token is valid.
///
/// Errors: lengths; [`TmError::InvalidArgument`] unless `0 < rho ≤ 1`;
/// [`TmError::NonFinite`] for a NaN/`±inf` entropy at a valid position.
pub fn top_entropy_threshold(
    exec: Exec,
    shape: BatchShape,
    mask: &[u8],
    entropy: &[f32],
    rho: f32,
) -> Result<Option<f32>, TmError> {
    check_rho(rho)?;
    linear_quantile(exec, shape, mask, entropy, 1.0 - rho as f64)
}

/// `torch.quantile(values[mask ≠ 0], q)` (linear interpolation, `pos` in `f64`) on one rank:
/// `None` when no position is valid. Bitwise the `θ` of the [`EntropyQuantile`] protocol run
/// on this rank alone, found with fewer passes (module docs, "One rank").
///
/// Errors: lengths; [`TmError::InvalidArgument`] unless `0 ≤ q ≤ 1`; [`TmError::NonFinite`]
/// for a NaN/`±inf` value at a valid position.
pub fn linear_quantile(
    exec: Exec,
    shape: BatchShape,
    mask: &[u8],
    values: &[f32],
    q: f64,
) -> Result<Option<f32>, TmError> {
    check_inputs(shape, mask, values)?;
    exec.check_backend()?;
    // `q` is refused before the data is read, as the protocol does.
    EntropyQuantile::at(0, q)?;
    let be = exec.backend();
    let mut h = WideHist::new();
    let mut h2 = WideHist::new();
    // Pass 1 on a prefix of 1/16 of the tokens, whose histogram guesses the first round's
    // bin; on the rest it also counts that bin's second round (module docs).
    let x = if mask.len() >= SPEC_MIN { mask.len() / 16 / BLOCK * BLOCK } else { 0 };
    let (na, bad_a, _) =
        wide_pass::<true, false, false, false>(be, &mask[..x], &values[..x], &Wide::new(0, 0), &mut h, 0, None);
    let guess = (na > 0).then(|| EntropyQuantile::at(na, q)).transpose()?.map(|g| {
        let mut w = Wide::new(g.sel.k, na);
        w.advance(&h.total);
        w
    });
    let (nb, bad_b, _) = match guess {
        Some(g) => wide_pass::<true, false, false, true>(
            be,
            &mask[x..],
            &values[x..],
            &Wide::new(0, 0),
            &mut h,
            0,
            Some((g.round(), &mut h2)),
        ),
        None => wide_pass::<true, false, false, false>(be, &mask[x..], &values[x..], &Wide::new(0, 0), &mut h, 0, None),
    };
    let n = na + nb;
    if bad_a | bad_b {
        let index = mask.iter().zip(values).position(|(&m, v)| m != 0 && !v.is_finite()).unwrap_or(0);
        return Err(TmError::NonFinite { what: "entropy", index });
    }
    let st = EntropyQuantile::at(n, q)?;
    if n == 0 {
        return Ok(None);
    }
    let mut sel = Wide::new(st.sel.k, n);
    sel.advance(&h.total);
    h.clear();
    if guess.is_some_and(|g| g.fixed == sel.fixed) {
        // Right guess: only the prefix is read again for the second round.
        wide_pass::<false, false, true, false>(be, &mask[..x], &values[..x], &sel, &mut h2, 0, None);
        sel.advance(&h2.total);
    } else {
        wide_pass::<false, false, false, false>(be, mask, values, &sel, &mut h, 0, None);
        sel.advance(&h.total);
        h.clear();
    }
    // The last round also finds the smallest key above the current 22-bit prefix, the
    // `v_{lo+1}` of the protocol's MinAbove step when the last histogram does not hold it.
    let bound = sel.fixed | 0x3ff;
    let above = if st.weight == 0.0 {
        wide_pass::<false, false, true, false>(be, mask, values, &sel, &mut h, 0, None);
        u32::MAX
    } else {
        wide_pass::<false, true, true, false>(be, mask, values, &sel, &mut h, bound, None).2
    };
    let b = sel.advance(&h.total);
    let v_lo = from_key(sel.fixed);
    if st.weight == 0.0 || sel.k + 1 < sel.cand {
        return Ok(Some(v_lo));
    }
    // Keys above v_lo with the same 22-bit prefix are the later bins of the last round.
    let next = h.total[b + 1..].iter().position(|&c| c != 0).map(|i| (sel.fixed & !0x7ff) | (b + 1 + i) as u32);
    Ok(Some(interpolate(v_lo, st.weight, from_key(next.unwrap_or(above)))))
}

/// `θ = v_lo + w·(v_hi − v_lo)` in `f64`, rounded once.
fn interpolate(v_lo: f32, weight: f64, v_hi: f32) -> f32 {
    (v_lo as f64 + weight * (v_hi as f64 - v_lo as f64)) as f32
}

isa_dispatch! {
    /// [`wide_pass_impl`] compiled for the backend: the same source (integer and exact `f32`
    /// operations only, so the same counts), vectorised with AVX-512 or AVX2 where the backend
    /// has it.
    #[allow(clippy::too_many_arguments)]
    fn wide_pass<const FIRST: bool, const ABOVE: bool, const SKIP: bool, const SPEC: bool>(
        mask: &[u8],
        values: &[f32],
        sel: &Wide,
        h: &mut WideHist,
        bound: u32,
        spec: Option<(WideRound, &mut WideHist)>,
    ) -> (u64, bool, u32) {
        wide_pass_impl::<FIRST, ABOVE, SKIP, SPEC>(mask, values, sel, h, bound, spec)
    }
}

/// One counting pass of the one-rank selection over the valid values: counts the keys that
/// are candidates of `sel` by their digit into `h` (flushed), branch-free. `FIRST` also
/// returns the number of valid values and whether one is not finite; `ABOVE` the smallest
/// valid key above `bound` (`u32::MAX` if none). `SKIP` visits only the candidates (the
/// last round, where they are few: a branch per candidate is cheaper there than an
/// increment per token). `SPEC` also counts the candidates of `spec`'s round
/// (the next round, for a guessed bin of this one) into its histogram.
#[inline(always)]
fn wide_pass_impl<const FIRST: bool, const ABOVE: bool, const SKIP: bool, const SPEC: bool>(
    mask: &[u8],
    values: &[f32],
    sel: &Wide,
    h: &mut WideHist,
    bound: u32,
    mut spec: Option<(WideRound, &mut WideHist)>,
) -> (u64, bool, u32) {
    let r = sel.round();
    let nonfinite = |v: f32| v.to_bits() & 0x7f80_0000 == 0x7f80_0000;
    let (mut n, mut bad, mut above) = (0u64, false, [u32::MAX; BLOCK]);
    for (mc, vc) in mask.chunks(WIDE_FLUSH).zip(values.chunks(WIDE_FLUSH)) {
        let (mb, vb) = (mc.chunks_exact(BLOCK), vc.chunks_exact(BLOCK));
        let (mr, vr) = (mb.remainder(), vb.remainder());
        let (mut count, mut bad_acc) = ([0u32; BLOCK], [false; BLOCK]);
        for (m, v) in mb.zip(vb) {
            let (m, v): (&[u8; BLOCK], &[f32; BLOCK]) = (m.try_into().unwrap(), v.try_into().unwrap());
            let (mut d, mut inc) = ([0u32; BLOCK], [0u32; BLOCK]);
            for i in 0..BLOCK {
                let (valid, k) = (m[i] != 0, key(v[i]));
                (inc[i], d[i]) = r.classify(valid, k, i as u32);
                if FIRST {
                    bad_acc[i] |= valid & nonfinite(v[i]);
                    count[i] += inc[i];
                }
                if ABOVE {
                    above[i] = above[i].min(if valid & (k > bound) { k } else { u32::MAX });
                }
            }
            if SKIP {
                h.add_sparse(&d, &inc);
            } else {
                h.add_block::<FIRST>(&d);
            }
            if SPEC {
                if let Some((r2, h2)) = spec.as_mut() {
                    let mut d2 = [0u32; BLOCK];
                    for i in 0..BLOCK {
                        d2[i] = r2.classify(m[i] != 0, key(v[i]), i as u32).1;
                    }
                    h2.add_block::<false>(&d2);
                }
            }
        }
        for (&m, &v) in mr.iter().zip(vr) {
            let (valid, k) = (m != 0, key(v));
            let (inc, d) = r.classify(valid, k, 0);
            bad_acc[0] |= valid & nonfinite(v);
            count[0] += inc;
            above[0] = above[0].min(if valid & (k > bound) { k } else { u32::MAX });
            h.add1(d);
            if let Some((r2, h2)) = spec.as_mut() {
                h2.add1(r2.classify(valid, k, 0).1);
            }
        }
        n += count.iter().map(|&c| c as u64).sum::<u64>();
        bad |= bad_acc.iter().any(|&b| b);
        h.segment_done(mc.len());
        if let Some((_, h2)) = spec.as_mut() {
            h2.segment_done(mc.len());
        }
    }
    h.flush();
    if let Some((_, h2)) = spec.as_mut() {
        h2.flush();
    }
    (n, bad, above.into_iter().min().unwrap_or(u32::MAX))
}

/// `keep[j] = mask[j] ≠ 0 ∧ entropy[j] ≥ θ` (1 or 0); `theta = None` keeps nothing. Returns
/// the number of kept tokens. One streaming pass; a NaN entropy is not kept.
///
/// Errors: lengths; [`TmError::InvalidArgument`] for a NaN `θ`. Nothing is written on error.
pub fn top_entropy_mask(
    exec: Exec,
    shape: BatchShape,
    mask: &[u8],
    entropy: &[f32],
    theta: Option<f32>,
    keep: &mut [u8],
) -> Result<u64, TmError> {
    exec.check_backend()?;
    let n = check_inputs(shape, mask, entropy)?;
    check_len("keep", n, keep.len())?;
    let Some(theta) = theta else {
        keep.fill(0);
        return Ok(0);
    };
    if theta.is_nan() {
        return Err(TmError::InvalidArgument("the entropy threshold is NaN"));
    }
    let mut kept = 0u64;
    // Chunks keep the per-chunk count in a u32 lane the compiler vectorises.
    for ((k, m), e) in keep.chunks_mut(4096).zip(mask.chunks(4096)).zip(entropy.chunks(4096)) {
        let mut c = 0u32;
        for ((k, &m), &e) in k.iter_mut().zip(m).zip(e) {
            let v = ((m != 0) & (e >= theta)) as u8;
            *k = v;
            c += v as u32;
        }
        kept += c as u64;
    }
    Ok(kept)
}
