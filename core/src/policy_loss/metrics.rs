//! Mergeable metric accumulators of the policy-loss kernels (clip fractions, approx KL), in
//! the form verl reports them.
//!
//! The kernels return sums and counts, not means, so that micro-batches and data-parallel
//! ranks can be merged exactly ([`PolicyStats::merge`], in index order); the means follow
//! verl's `masked_mean` over the valid tokens of the batch passed in. verl logs one such
//! mean per micro-batch and averages the logged values; a caller reproducing that
//! calls the mean methods per micro-batch.
//!
//! Sums are accumulated in `f64` in an order fixed by the shape alone: the clip and KL kernels
//! use 8 interleaved lanes over the flat `b·T + t` index (lane `k` takes the indices
//! `≡ k mod 8`), combined in lane order; the others add sequentially along each row, rows in
//! index order. Counts are exact.

/// Metrics of one policy-loss call (or several, merged).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PolicyStats {
    /// Valid (mask ≠ 0) tokens seen.
    pub valid_tokens: u64,
    /// Valid tokens with `A > 0` whose clipped branch won (`l2 > l1`, i.e. the ratio above
    /// `1 + ε_high`): the "upper" clip.
    pub clipped_high: u64,
    /// Valid tokens with `A < 0` whose clipped branch won (`l2 > l1`, the ratio below
    /// `1 − ε_low`): the "lower" clip.
    pub clipped_low: u64,
    /// Valid tokens with `A < 0` bounded by the dual clip (`lc > l3`; verl
    /// `pg_clipfrac_lower`). Always 0 without dual clip.
    pub clipped_dual: u64,
    /// `Σ −Δ̃` over valid tokens (`Δ̃` the log-ratio after the method's clamp, if any; for
    /// GSPO the unclamped per-token `Δ`): the numerator of verl's `ppo_kl`.
    pub neg_log_ratio_sum: f64,
}

impl PolicyStats {
    fn mean(&self, x: f64) -> f64 {
        if self.valid_tokens == 0 {
            0.0
        } else {
            x / self.valid_tokens as f64
        }
    }

    /// verl `pg_clipfrac`: mean of `1[l2 > l1]` = `(clipped_high + clipped_low) / valid`.
    /// 0 without valid tokens (verl: `0/(0 + 1e-8) = 0`, the same).
    pub fn clipfrac(&self) -> f64 {
        self.mean((self.clipped_high + self.clipped_low) as f64)
    }

    /// Upper clip fraction (`A > 0`, ratio above `1 + ε_high`; TRL `clip_ratio/high_mean`).
    pub fn clipfrac_high(&self) -> f64 {
        self.mean(self.clipped_high as f64)
    }

    /// Lower clip fraction (`A < 0`, ratio below `1 − ε_low`; TRL `clip_ratio/low_mean`).
    pub fn clipfrac_low(&self) -> f64 {
        self.mean(self.clipped_low as f64)
    }

    /// verl `pg_clipfrac_lower`: the dual-clip fraction.
    pub fn clipfrac_lower(&self) -> f64 {
        self.mean(self.clipped_dual as f64)
    }

    /// verl `ppo_kl`: mean of `−Δ̃` over valid tokens (the k1 estimate of `KL(old‖new)`).
    pub fn ppo_kl(&self) -> f64 {
        self.mean(self.neg_log_ratio_sum)
    }

    /// Combines two accumulators (`self` first). Counts add exactly; the `f64` sums add in
    /// the order written, so merging in index order is deterministic.
    #[must_use]
    pub fn merge(self, later: PolicyStats) -> PolicyStats {
        PolicyStats {
            valid_tokens: self.valid_tokens + later.valid_tokens,
            clipped_high: self.clipped_high + later.clipped_high,
            clipped_low: self.clipped_low + later.clipped_low,
            clipped_dual: self.clipped_dual + later.clipped_dual,
            neg_log_ratio_sum: self.neg_log_ratio_sum + later.neg_log_ratio_sum,
        }
    }
}

/// Metrics of a KL-estimator call.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct KlStats {
    /// Valid tokens seen.
    pub valid_tokens: u64,
    /// `Σ kl` (the forward value, after clamps) over valid tokens, in `f64`.
    pub kl_sum: f64,
}

impl KlStats {
    /// Mean KL over valid tokens (0 without valid tokens). This is verl's `actor/kl_loss`
    /// only under `token-mean` aggregation; for other modes aggregate the per-token values
    /// with [`super::agg_loss`].
    pub fn mean(&self) -> f64 {
        if self.valid_tokens == 0 {
            0.0
        } else {
            self.kl_sum / self.valid_tokens as f64
        }
    }

    /// Combines two accumulators (`self` first).
    #[must_use]
    pub fn merge(self, later: KlStats) -> KlStats {
        KlStats { valid_tokens: self.valid_tokens + later.valid_tokens, kl_sum: self.kl_sum + later.kl_sum }
    }
}

/// Lanes of the interleaved metric accumulators.
pub(crate) const LANES: usize = 8;

/// Interleaved accumulators: vectorisable, and deterministic (the order depends only on the
/// number of elements).
#[derive(Clone, Copy, Default)]
pub(crate) struct LaneAcc {
    pub valid: [u64; LANES],
    pub high: [u64; LANES],
    pub low: [u64; LANES],
    pub dual: [u64; LANES],
    pub sum: [f64; LANES],
}

impl LaneAcc {
    /// Adds one chunk's per-token values (0 for invalid tokens) and flags; token `i` of the
    /// chunk goes to lane `i mod LANES` (chunks start at multiples of `LANES`).
    #[inline(always)]
    pub(crate) fn add_chunk(&mut self, x: &[f32], flags: &[u8]) {
        // Whole groups of `LANES` first, with the lane index fixed, so the adds vectorise.
        let (xs, fs) = (x.chunks_exact(LANES), flags.chunks_exact(LANES));
        let (xr, fr) = (xs.remainder(), fs.remainder());
        for (xg, fg) in xs.zip(fs) {
            for k in 0..LANES {
                self.add(k, xg[k], fg[k]);
            }
        }
        for (k, (&v, &f)) in xr.iter().zip(fr).enumerate() {
            self.add(k, v, f);
        }
    }

    #[inline(always)]
    fn add(&mut self, k: usize, v: f32, f: u8) {
        self.sum[k] += v as f64;
        self.valid[k] += (f & 1) as u64;
        self.high[k] += ((f >> 1) & 1) as u64;
        self.low[k] += ((f >> 2) & 1) as u64;
        self.dual[k] += ((f >> 3) & 1) as u64;
    }

    /// Lanes combined in order `0, 1, …, LANES − 1`.
    pub(crate) fn into_stats(self) -> PolicyStats {
        let mut s = RowAcc::default();
        for k in 0..LANES {
            s.valid += self.valid[k];
            s.high += self.high[k];
            s.low += self.low[k];
            s.dual += self.dual[k];
            s.neg_dt += self.sum[k];
        }
        s.into_stats()
    }

    /// As [`KlStats`] (count and sum).
    pub(crate) fn into_kl(self) -> KlStats {
        let s = self.into_stats();
        KlStats { valid_tokens: s.valid_tokens, kl_sum: s.neg_log_ratio_sum }
    }
}

/// `Σ term(i)` over `i < n` in `f64` in the lane order of [`LaneAcc`]: term `i` into lane
/// `i mod LANES` (each lane in index order), the lanes then added in order. Eight independent
/// chains instead of one, so a per-token sum runs at the speed of its terms; the order is
/// fixed by `n` alone (not by threads or chunking).
#[inline(always)]
pub(crate) fn lane_sum(n: usize, mut term: impl FnMut(usize) -> f64) -> f64 {
    let mut lanes = [0.0f64; LANES];
    for c in 0..n / LANES {
        for (k, lane) in lanes.iter_mut().enumerate() {
            *lane += term(c * LANES + k);
        }
    }
    let full = n / LANES * LANES;
    for (lane, i) in lanes.iter_mut().zip(full..n) {
        *lane += term(i);
    }
    lanes.iter().fold(0.0, |s, &x| s + x)
}

/// Tokens per chunk of the two-phase kernels (a multiple of [`LANES`]).
pub(crate) const CHUNK: usize = 256;

/// Packs a token's metric flags (bit 0 valid, 1 upper clip, 2 lower clip, 3 dual clip).
#[inline(always)]
pub(crate) fn flags_of(valid: bool, high: bool, low: bool, dual: bool) -> u8 {
    (valid as u8) | (((valid && high) as u8) << 1) | (((valid && low) as u8) << 2) | (((valid && dual) as u8) << 3)
}

/// Stack scratch of one chunk: per-token metric value and flags.
pub(crate) struct ChunkScratch {
    x: [f32; CHUNK],
    flags: [u8; CHUNK],
}

impl ChunkScratch {
    pub(crate) fn new() -> Self {
        ChunkScratch { x: [0.0; CHUNK], flags: [0; CHUNK] }
    }

    /// The first `len ≤ CHUNK` entries.
    pub(crate) fn parts(&mut self, len: usize) -> (&mut [f32], &mut [u8]) {
        (&mut self.x[..len], &mut self.flags[..len])
    }
}

/// Per-row accumulator used by the kernels (counts in `u64`, sums in `f64`).
#[derive(Clone, Copy, Default)]
pub(crate) struct RowAcc {
    pub valid: u64,
    pub high: u64,
    pub low: u64,
    pub dual: u64,
    pub neg_dt: f64,
}

impl RowAcc {
    pub(crate) fn into_stats(self) -> PolicyStats {
        PolicyStats {
            valid_tokens: self.valid,
            clipped_high: self.high,
            clipped_low: self.low,
            clipped_dual: self.dual,
            neg_log_ratio_sum: self.neg_dt,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn means_and_merge() {
        let a =
            PolicyStats { valid_tokens: 4, clipped_high: 1, clipped_low: 1, clipped_dual: 1, neg_log_ratio_sum: 0.4 };
        assert_eq!(a.clipfrac(), 0.5);
        assert_eq!(a.clipfrac_high(), 0.25);
        assert_eq!(a.clipfrac_lower(), 0.25);
        assert!((a.ppo_kl() - 0.1).abs() < 1e-15);
        let m = a.merge(PolicyStats { valid_tokens: 4, ..Default::default() });
        assert_eq!(m.clipfrac(), 0.25);
        assert_eq!(PolicyStats::default().clipfrac(), 0.0);
        assert_eq!(PolicyStats::default().ppo_kl(), 0.0);
        assert_eq!(KlStats::default().mean(), 0.0);
        assert_eq!(
            KlStats { valid_tokens: 2, kl_sum: 1.0 }.merge(KlStats { valid_tokens: 2, kl_sum: 1.0 }).mean(),
            0.5
        );
    }
}
