//! The mergeable per-row tuple `(m, s, u, x_t)`, its merge, its finalize, and the
//! canonical split-tree order in which tuples are combined.

use super::exp::{exp_flushed, fma};
use crate::error::TmError;

const HAS_TARGET: u32 = 1;
const NONFINITE: u32 = 2;

/// Partial softmax statistics of one row over a set of columns (a block or a vocabulary
/// shard), in tempered-logit units `z = x·inv_temp`:
///
/// ```text
/// m   = max z            (−inf if the set has no finite z)
/// s   = Σ exp(z − m)
/// u   = Σ exp(z − m)·(z − m)        (max-centred first moment, ≤ 0)
/// x_t = z_target          (valid when has_target())
/// ```
///
/// `#[repr(C)]` and [`bytemuck::Pod`]: 20 bytes that a tensor-parallel trainer can
/// all-gather as raw bytes and merge on every rank with [`merge_shards`](super::merge_shards).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RowStats {
    /// Maximum tempered logit.
    pub m: f32,
    /// `Σ exp(z − m)`.
    pub s: f32,
    /// `Σ exp(z − m)·(z − m)`.
    pub u: f32,
    /// The tempered target logit, if [`RowStats::has_target`].
    pub x_t: f32,
    /// Bit 0: the target column was in this set. Bit 1: a NaN or `+inf` logit was seen.
    pub flags: u32,
}

/// The finalized statistics of one row.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Finalized {
    /// `log Σ exp(z)`.
    pub lse: f32,
    /// `z_target − lse` (0 when the row has no target).
    pub logp: f32,
    /// `−Σ p log p` in nats.
    pub entropy: f32,
    /// `m = max z`, the row maximum of the tempered logits (saved for the backward).
    pub max: f32,
    /// `log s = log Σ exp(z − m)`, so that `lse = max + log_sum` (saved for the backward).
    pub log_sum: f32,
}

impl Finalized {
    pub(crate) const NAN: Finalized =
        Finalized { lse: f32::NAN, logp: f32::NAN, entropy: f32::NAN, max: f32::NAN, log_sum: f32::NAN };
    pub(crate) const ZERO: Finalized = Finalized { lse: 0.0, logp: 0.0, entropy: 0.0, max: 0.0, log_sum: 0.0 };
}

impl RowStats {
    /// The identity of [`RowStats::merge`]: no columns.
    pub const EMPTY: RowStats = RowStats { m: f32::NEG_INFINITY, s: 0.0, u: 0.0, x_t: 0.0, flags: 0 };

    /// Whether the target column was among the columns.
    pub fn has_target(&self) -> bool {
        self.flags & HAS_TARGET != 0
    }

    /// Whether a NaN or `+inf` logit was among the columns (the row's results will be NaN).
    pub fn is_nonfinite(&self) -> bool {
        self.flags & NONFINITE != 0
    }

    pub(crate) fn from_block(m: f32, s: f32, u: f32, nonfinite: bool) -> RowStats {
        RowStats { m, s, u, x_t: 0.0, flags: if nonfinite { NONFINITE } else { 0 } }
    }

    pub(crate) fn with_target(mut self, x_t: f32) -> RowStats {
        self.x_t = x_t;
        self.flags |= HAS_TARGET;
        self
    }

    /// Combines the statistics of two disjoint column sets:
    ///
    /// ```text
    /// M = max(m1, m2),  a_i = exp(m_i − M),  δ_i = m_i − M   (a_i = δ_i = 0 if m_i = −inf)
    /// s = a1·s1 + a2·s2
    /// u = a1·(u1 + s1·δ1) + a2·(u2 + s2·δ2)
    /// ```
    ///
    /// One operand always has `a = 1, δ = 0`, so a merge costs one `exp`. Associative in
    /// exact arithmetic; in floating point the grouping matters, which is why the library
    /// fixes the split-tree order ([`merge_shards`](super::merge_shards)).
    ///
    /// Errors with [`TmError::DuplicateTarget`] (`row` = 0; the slice-level functions
    /// report the real row) if both operands contain the target.
    pub fn merge(self, other: RowStats) -> Result<RowStats, TmError> {
        if self.has_target() && other.has_target() {
            return Err(TmError::DuplicateTarget { row: 0 });
        }
        Ok(self.merge_unchecked(other))
    }

    /// [`RowStats::merge`] without the duplicate-target check (the left operand's target
    /// wins if both have one).
    #[inline]
    pub fn merge_unchecked(self, other: RowStats) -> RowStats {
        let (x_t, t_flag) = if self.has_target() {
            (self.x_t, HAS_TARGET)
        } else if other.has_target() {
            (other.x_t, HAS_TARGET)
        } else {
            (0.0, 0)
        };
        let flags = t_flag | ((self.flags | other.flags) & NONFINITE);
        // Order the operands by maximum; ties keep `self` first. `>=` is false for NaN
        // (only possible with `+inf` inputs, where the row is flagged non-finite anyway).
        let (hi, lo) = if self.m >= other.m { (self, other) } else { (other, self) };
        if lo.m == f32::NEG_INFINITY {
            return RowStats { m: hi.m, s: hi.s, u: hi.u, x_t, flags };
        }
        let delta = lo.m - hi.m;
        let a = exp_flushed(delta);
        let s = fma(a, lo.s, hi.s);
        let u = fma(a, fma(lo.s, delta, lo.u), hi.u);
        RowStats { m: hi.m, s, u, x_t, flags }
    }

    /// Turns the statistics of a whole row into `(lse, logp, entropy, max, log_sum)`:
    ///
    /// ```text
    /// log_sum = log s
    /// lse     = m + log_sum
    /// entropy = log_sum − u/s        (a sum of two non-negative terms: ≥ 0 exactly)
    /// logp    = min((x_t − m) − log_sum, 0)
    /// max     = m
    /// ```
    ///
    /// `max` and `log_sum` are what the backward needs: `lse` itself is rounded at the
    /// magnitude of `m`, so `z − lse` would lose `log s` when `|m|` is large, while
    /// `(z − m) − log_sum` keeps every digit.
    ///
    /// `want_target` says whether the row has a target (`target ≥ 0`); without one, `logp`
    /// is 0. Policies: a non-finite row gives all-NaN; a row without finite logits is
    /// [`TmError::NoFiniteLogit`]; `want_target` without the target column is
    /// [`TmError::MissingTarget`] (`row` = 0 here; slice-level functions report the real row).
    pub fn finalize(self, want_target: bool) -> Result<Finalized, TmError> {
        if self.is_nonfinite() {
            return Ok(Finalized::NAN);
        }
        if self.m == f32::NEG_INFINITY {
            return Err(TmError::NoFiniteLogit { row: 0 });
        }
        if want_target && !self.has_target() {
            return Err(TmError::MissingTarget { row: 0 });
        }
        let log_s = libm::logf(self.s);
        let mean_dev = self.u / self.s;
        let logp = if want_target {
            let lp = (self.x_t - self.m) - log_s;
            if lp > 0.0 {
                0.0
            } else {
                lp
            }
        } else {
            0.0
        };
        Ok(Finalized { lse: self.m + log_s, logp, entropy: log_s - mean_dev, max: self.m, log_sum: log_s })
    }
}

/// Combines a stream of tuples in the canonical split-tree order
/// (`tree(b[0..n]) = tree(b[0..k]) ⊕ tree(b[k..n])`, `k` the largest power of two `< n`)
/// with `O(log n)` state: push each tuple at level 0, merge the two top entries while they
/// have equal levels; at the end fold from the top down.
pub(crate) struct TreeStack {
    items: [(RowStats, u32); 64],
    len: usize,
}

impl TreeStack {
    pub(crate) fn new() -> TreeStack {
        TreeStack { items: [(RowStats::EMPTY, 0); 64], len: 0 }
    }

    #[inline]
    pub(crate) fn push(&mut self, t: RowStats) {
        let mut cur = (t, 0u32);
        while self.len > 0 && self.items[self.len - 1].1 == cur.1 {
            self.len -= 1;
            let (left, level) = self.items[self.len];
            cur = (left.merge_unchecked(cur.0), level + 1);
        }
        self.items[self.len] = cur;
        self.len += 1;
    }

    pub(crate) fn finish(self) -> RowStats {
        let mut acc = RowStats::EMPTY;
        for (i, (t, _)) in self.items[..self.len].iter().enumerate().rev() {
            acc = if i + 1 == self.len { *t } else { t.merge_unchecked(acc) };
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(m: f32, s: f32, u: f32) -> RowStats {
        RowStats::from_block(m, s, u, false)
    }

    /// The recursive definition of the split tree, for checking the stack.
    fn tree(items: &[RowStats]) -> RowStats {
        if items.len() == 1 {
            return items[0];
        }
        let mut k = 1;
        while k * 2 < items.len() {
            k *= 2;
        }
        tree(&items[..k]).merge_unchecked(tree(&items[k..]))
    }

    #[test]
    fn stack_realises_the_split_tree() {
        for n in 1..70 {
            let items: std::vec::Vec<RowStats> = (0..n)
                .map(|i| tuple((i as f32 * 0.37).sin() * 5.0, 1.0 + (i % 7) as f32, -0.3 * (i % 5) as f32))
                .collect();
            let mut st = TreeStack::new();
            for t in &items {
                st.push(*t);
            }
            assert_eq!(st.finish(), tree(&items), "n = {n}");
        }
    }

    #[test]
    #[allow(clippy::excessive_precision)] // the spec's values, as printed there
    fn spec_worked_example_merge() {
        // logits.md §10: shards [1, 2] and [3, 4].
        let a = tuple(2.0, 1.367_879_4, -0.367_879_44);
        let b = tuple(4.0, 1.367_879_4, -0.367_879_44).with_target(3.0);
        let f = a.merge(b).unwrap().finalize(true).unwrap();
        assert!((f.lse - 4.440_189_7).abs() < 1e-6);
        assert!((f.logp - -1.440_189_7).abs() < 1e-6);
        assert!((f.entropy - 0.947_536_96).abs() < 1e-6);
        assert_eq!(f.max, 4.0);
        assert!((f.log_sum - 0.440_189_7).abs() < 1e-6);
    }

    #[test]
    fn merge_policies() {
        let t = tuple(1.0, 1.0, 0.0).with_target(1.0);
        assert_eq!(t.merge(t), Err(TmError::DuplicateTarget { row: 0 }));
        assert_eq!(RowStats::EMPTY.merge_unchecked(t), t);
        assert_eq!(t.merge_unchecked(RowStats::EMPTY), t);
        assert_eq!(RowStats::EMPTY.finalize(false), Err(TmError::NoFiniteLogit { row: 0 }));
        assert_eq!(tuple(1.0, 1.0, 0.0).finalize(true), Err(TmError::MissingTarget { row: 0 }));
        let bad = RowStats::from_block(1.0, 1.0, 0.0, true);
        assert!(tuple(0.0, 1.0, 0.0).merge_unchecked(bad).finalize(false).unwrap().lse.is_nan());
    }
}
