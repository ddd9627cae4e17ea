//! Exact `k`-th order statistic of `f32` values by radix selection on an order-preserving
//! `u32` key, one byte per round: the shared machinery of [`super::entropy_mask`] (where the
//! rounds are merged across data-parallel ranks) and [`super::d3s`] (one rank).
//!
//! Round `r ∈ 0..4` looks only at the values whose key agrees with the bytes already chosen
//! (`prefix`, the top `8r` bits) and counts them by their next byte into 256 bins. The bin
//! that holds the `k`-th smallest value becomes the next byte of the prefix and `k` its rank
//! inside that bin. After four rounds the prefix *is* the key of the `k`-th value. The counts
//! are integers, so adding the histograms of several ranks (in any order) gives exactly the
//! histogram of the union: the selection over the union is exact and deterministic.

use crate::error::TmError;

/// Bins of one radix round (one byte of the key).
pub const RADIX_BINS: usize = 256;

/// The counts of one radix round: `hist[byte]` = values whose key has this next byte.
pub type RadixHistogram = [u64; RADIX_BINS];

/// The order-preserving key of a non-NaN `f32`: `a < b ⇔ key(a) < key(b)` and `−0.0`, `+0.0`
/// share a key (they compare equal).
#[inline(always)]
pub(crate) fn key(x: f32) -> u32 {
    // `x + 0.0` turns −0.0 into +0.0 and leaves every other value alone.
    let b = (x + 0.0).to_bits();
    if b >> 31 == 1 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// The inverse of [`key`].
#[inline]
pub(crate) fn from_key(k: u32) -> f32 {
    f32::from_bits(if k >> 31 == 1 { k & 0x7fff_ffff } else { !k })
}

/// The state of one selection: which rank is sought, and the key bytes chosen so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Radix {
    /// Rank (0-based, ascending) of the sought value among the current candidates.
    pub(crate) k: u64,
    /// Candidates left: values whose key starts with `prefix`.
    pub(crate) cand: u64,
    /// The top `8·round` bits of the sought key.
    pub(crate) prefix: u32,
    /// Rounds done (4 = finished).
    pub(crate) round: u32,
}

impl Radix {
    /// Seeks the `k`-th smallest of `n` values (`k < n`).
    pub(crate) fn new(k: u64, n: u64) -> Radix {
        Radix { k, cand: n, prefix: 0, round: 0 }
    }

    pub(crate) fn done(&self) -> bool {
        self.round == 4
    }

    /// The bin of `key` in this round, if the key is still a candidate.
    #[inline(always)]
    pub(crate) fn bin(&self, key: u32) -> Option<usize> {
        let shift = 24 - 8 * self.round;
        // `checked_shr` because a shift by 32 (round 0) is not defined on u32.
        let top = key.checked_shr(shift + 8).unwrap_or(0);
        (top == self.prefix).then_some(((key >> shift) & 0xff) as usize)
    }

    /// Takes this round's (merged) histogram. Errors if its total is not the number of
    /// candidates, i.e. it does not come from the same values as the earlier rounds.
    pub(crate) fn advance(&mut self, hist: &RadixHistogram) -> Result<(), TmError> {
        if self.done() {
            return Err(TmError::InvalidArgument("the selection has already finished"));
        }
        let total = hist.iter().try_fold(0u64, |a, &h| a.checked_add(h));
        if total != Some(self.cand) {
            return Err(TmError::InvalidArgument(
                "the merged histogram's total is not the number of candidates (wrong global count, or a rank's data changed)",
            ));
        }
        let mut below = 0u64;
        for (b, &h) in hist.iter().enumerate() {
            if self.k < below + h {
                self.k -= below;
                self.cand = h;
                self.prefix = (self.prefix << 8) | b as u32;
                self.round += 1;
                return Ok(());
            }
            below += h;
        }
        unreachable!("k < cand = Σ hist, so some bin holds rank k")
    }
}

/// Four interleaved histograms (element `j` counts into copy `j mod 4`), summed at the end:
/// consecutive equal keys then increment different counters, so the increments do not wait
/// on each other (entropies mostly share their top byte).
pub(crate) struct Hist4([RadixHistogram; 4]);

impl Hist4 {
    pub(crate) fn new() -> Hist4 {
        Hist4([[0; RADIX_BINS]; 4])
    }

    /// Counts `key` (of element `j`) if it is still a candidate of `sel`.
    #[inline(always)]
    pub(crate) fn count(&mut self, sel: &Radix, j: usize, key: u32) {
        if let Some(b) = sel.bin(key) {
            self.0[j & 3][b] += 1;
        }
    }

    /// The summed histogram.
    pub(crate) fn total(&self) -> RadixHistogram {
        let mut h = self.0[0];
        for c in &self.0[1..] {
            for (a, b) in h.iter_mut().zip(c) {
                *a += b;
            }
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_orders_like_floats() {
        let v = [f32::NEG_INFINITY, -3.0e38, -1.0, -1e-45, -0.0, 0.0, 1e-45, 1.0, 3.0e38, f32::INFINITY];
        for w in v.windows(2) {
            assert!(key(w[0]) <= key(w[1]), "{} {}", w[0], w[1]);
            assert_eq!(key(w[0]) == key(w[1]), w[0] == w[1]);
        }
        for &x in &v {
            assert_eq!(from_key(key(x)), x + 0.0);
        }
    }

    #[test]
    fn selects_every_rank() {
        let v = [3.0f32, -1.0, 3.0, 0.0, -0.0, 7.5, -2.0, 3.0];
        let mut s = v;
        s.sort_by(|a, b| a.partial_cmp(b).unwrap());
        for (k, &want) in s.iter().enumerate() {
            let mut r = Radix::new(k as u64, v.len() as u64);
            while !r.done() {
                let mut h = Hist4::new();
                v.iter().enumerate().for_each(|(j, &x)| h.count(&r, j, key(x)));
                r.advance(&h.total()).unwrap();
            }
            assert_eq!(from_key(r.prefix), want);
        }
        let mut r = Radix::new(0, 3);
        assert!(r.advance(&[0u64; RADIX_BINS]).is_err());
    }
}
