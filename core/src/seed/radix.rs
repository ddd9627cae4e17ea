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
    // `x + 0.0` turns −0.0 into +0.0 and leaves every other value alone. Negative values
    // flip every bit, the others only the sign bit (branch-free, so loops vectorise).
    let b = (x + 0.0).to_bits();
    b ^ (((b as i32 >> 31) as u32) | 0x8000_0000)
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
        // `k < cand` also guards the search below (a state restored from words is checked
        // for it, but a selection must never reach a panic).
        if total != Some(self.cand) || self.k >= self.cand {
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
        // Unreachable: k < cand = Σ hist, so some bin holds rank k.
        Err(TmError::InvalidArgument("the merged histogram does not hold the sought rank"))
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

/// Bits of one digit of the single-process selection ([`Wide`]): three passes of 11, 11 and
/// 10 bits instead of the protocol's four of 8 \[library choice\]. The 2048 bins of `u32`
/// (four interleaved copies, 32 KiB) still sit in L1, and one pass fewer saves a read of the
/// data.
pub(crate) const WIDE_BITS: u32 = 11;
/// Bins of one [`Wide`] round.
pub(crate) const WIDE_BINS: usize = 1 << WIDE_BITS;
const WIDE_MASK: u32 = (1 << WIDE_BITS) - 1;
/// Elements counted into the `u32` copies between two flushes into the `u64` total: each
/// copy then holds at most `2^31` counts (the callers flush once `≥ WIDE_FLUSH` elements went
/// in, in segments of at most `WIDE_FLUSH`).
pub(crate) const WIDE_FLUSH: usize = 1 << 30;

/// The single-process selection of the `k`-th smallest key: like [`Radix`], on digits of
/// bits 31..21, 20..10 and 10..0. The last digit is read as 11 bits whose top bit the
/// prefix already fixes (every candidate lands in the same half), so every round bins by
/// `(key >> shift) & 0x7ff`. The result (`fixed`, `k`, `cand` after three rounds) is the
/// same as [`Radix`]'s after four: the key of the `k`-th value, its rank among the equal keys
/// and their number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Wide {
    /// Rank (0-based, ascending) of the sought value among the current candidates.
    pub(crate) k: u64,
    /// Candidates left: values whose key agrees with `fixed` above bit [`Self::hi`].
    pub(crate) cand: u64,
    /// The key bits chosen so far (bits below [`Self::hi`] are 0, but for bit 10 in round 2).
    pub(crate) fixed: u32,
    /// Rounds done (3 = finished).
    pub(crate) round: usize,
}

impl Wide {
    /// Seeks the `k`-th smallest of `n` values (`k < n`).
    pub(crate) fn new(k: u64, n: u64) -> Wide {
        Wide { k, cand: n, fixed: 0, round: 0 }
    }

    pub(crate) fn done(&self) -> bool {
        self.round == 3
    }

    /// The shift of this round's digit.
    #[inline(always)]
    pub(crate) fn shift(&self) -> u32 {
        [21, 10, 0][self.round]
    }

    /// Keys are candidates iff `key >> hi == fixed >> hi` (as `u64`: 32 in round 0).
    #[inline(always)]
    pub(crate) fn hi(&self) -> u32 {
        [32, 21, 10][self.round]
    }

    /// This round's constants.
    #[inline(always)]
    pub(crate) fn round(&self) -> WideRound {
        let himask = (!0u32).checked_shl(self.hi()).unwrap_or(0);
        WideRound { fixed: self.fixed & himask, himask, shift: self.shift() }
    }

    /// Takes this round's histogram (of exactly the `cand` candidates) and returns the
    /// chosen bin.
    pub(crate) fn advance(&mut self, hist: &[u64; WIDE_BINS]) -> usize {
        let shift = self.shift();
        let mut below = 0u64;
        for (b, &h) in hist.iter().enumerate() {
            if self.k < below + h {
                self.k -= below;
                self.cand = h;
                self.fixed = (self.fixed & !(WIDE_MASK << shift)) | ((b as u32) << shift);
                self.round += 1;
                return b;
            }
            below += h;
        }
        unreachable!("k < cand = Σ hist, so some bin holds rank k")
    }
}

/// The constants of one [`Wide`] round: a key is a candidate iff `key & himask == fixed`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WideRound {
    pub(crate) fixed: u32,
    pub(crate) himask: u32,
    pub(crate) shift: u32,
}

impl WideRound {
    /// `(1, its bin)` for a valid candidate key, else `(0, WIDE_BINS + lane)`: a bin of the
    /// padding that is never read (`lane < BLOCK` is the position in the block), so every
    /// element is one increment, and those of the others stay in L1 and do not wait on
    /// each other.
    #[inline(always)]
    pub(crate) fn classify(&self, valid: bool, key: u32, lane: u32) -> (u32, u32) {
        let inc = valid & (key & self.himask == self.fixed);
        (inc as u32, if inc { (key >> self.shift) & WIDE_MASK } else { WIDE_BINS as u32 + lane })
    }
}

/// Elements per block of the counting loops: the keys of a block are computed in a loop
/// the compiler vectorises, then counted one by one.
pub(crate) const BLOCK: usize = 16;

/// `u32` padding of each [`WideHist`] copy (one cache line).
const PAD: usize = BLOCK;

/// The counts of one [`Wide`] round: four interleaved `u32` copies (element `i` of a segment
/// counts into copy `i mod 4`, so runs of equal digits do not serialise on one counter) and
/// the `u64` total they are flushed into.
pub(crate) struct WideHist {
    /// The copies, each padded by a cache line: copies exactly 8 KiB apart would alias in
    /// the store-to-load forwarding (same address bits 0..11), and a run of equal digits
    /// then serialises across the copies as well.
    sub: [[u32; WIDE_BINS + PAD]; 4],
    pub(crate) total: [u64; WIDE_BINS],
    pending: usize,
}

impl WideHist {
    pub(crate) fn new() -> WideHist {
        WideHist { sub: [[0; WIDE_BINS + PAD]; 4], total: [0; WIDE_BINS], pending: 0 }
    }

    /// Counts each `digit[i]` (a bin, or the padding: [`WideRound::classify`]) in copy
    /// `i mod 4` (`SPREAD`, for the clustered digits of the first round), or in copy 0 (the
    /// later rounds, whose digits are spread out: one copy keeps fewer cache lines busy).
    #[inline(always)]
    pub(crate) fn add_block<const SPREAD: bool>(&mut self, digit: &[u32; BLOCK]) {
        for (i, &d) in digit.iter().enumerate() {
            // Always in range (`d < WIDE_BINS + BLOCK`); `get_mut` costs a predicted branch.
            if let Some(c) = self.sub[if SPREAD { i & 3 } else { 0 }].get_mut(d as usize) {
                *c = c.wrapping_add(1);
            }
        }
    }

    /// Counts the `digit[i]` with `inc[i] = 1` in copy 0, visiting only those (the later
    /// rounds, where few elements are candidates).
    #[inline(always)]
    pub(crate) fn add_sparse(&mut self, digit: &[u32; BLOCK], inc: &[u32; BLOCK]) {
        let mut bits = inc.iter().enumerate().fold(0u32, |b, (i, &x)| b | (x << i));
        while bits != 0 {
            self.add1(digit[bits.trailing_zeros() as usize % BLOCK]);
            bits &= bits - 1;
        }
    }

    /// Counts `digit` in copy 0 (segment tails).
    #[inline(always)]
    pub(crate) fn add1(&mut self, digit: u32) {
        if let Some(c) = self.sub[0].get_mut(digit as usize) {
            *c = c.wrapping_add(1);
        }
    }

    /// Records that a segment of `len ≤ WIDE_FLUSH` elements went in; flushes the copies
    /// into the total once `WIDE_FLUSH` have.
    #[inline]
    pub(crate) fn segment_done(&mut self, len: usize) {
        self.pending += len;
        if self.pending >= WIDE_FLUSH {
            self.flush();
        }
    }

    /// Moves the copies into the total.
    pub(crate) fn flush(&mut self) {
        for c in &mut self.sub {
            for (t, v) in self.total.iter_mut().zip(c.iter()) {
                *t += *v as u64;
            }
            c.fill(0);
        }
        self.pending = 0;
    }

    /// Clears everything for the next round.
    pub(crate) fn clear(&mut self) {
        self.sub = [[0; WIDE_BINS + PAD]; 4];
        self.total = [0; WIDE_BINS];
        self.pending = 0;
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
