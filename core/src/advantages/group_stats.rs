//! Mergeable per-group moments `(n, μ, M2)` (`policy.md` §2.2) \[derived\].

use super::{Groups, StdKind};
use crate::error::{check_len, TmError};

/// Count (or total weight), mean and sum of squared deviations of a set of values, in `f64`.
///
/// Every update is Chan et al.'s parallel merge; pushing one value `x` with weight `w` is a
/// merge with `(w, x, 0)`:
///
/// ```text
/// (n_a, μ_a, M2_a) ⊕ (n_b, μ_b, M2_b):
///     n  = n_a + n_b,   δ = μ_b − μ_a
///     μ  = μ_a + δ·n_b/n
///     M2 = M2_a + M2_b + δ²·n_a·n_b/n
/// ```
///
/// Identical values give `μ` equal to that value and `M2 = 0` exactly (every `δ` is 0).
/// Merging is deterministic: the same operands merged in the same order give the same bits.
/// Groups split across data-parallel ranks are combined by merging the ranks' moments in a
/// fixed order (ascending rank); a different split agrees with the unsplit moments within
/// rounding (relative `~n·2⁻⁵²`), not bitwise.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Moments {
    /// Number of values (or total weight).
    pub n: f64,
    /// Mean (0 when `n == 0`).
    pub mean: f64,
    /// Sum of squared deviations from the mean.
    pub m2: f64,
}

impl Moments {
    /// No values.
    pub const EMPTY: Moments = Moments { n: 0.0, mean: 0.0, m2: 0.0 };

    /// Adds one value `x` with weight `w` (`w = 1` for a plain count; `w = 0` is a no-op).
    pub fn push(&mut self, x: f64, w: f64) {
        *self = self.merge(Moments { n: w, mean: x, m2: 0.0 });
    }

    /// Chan et al.'s merge. An empty side returns the other unchanged (so one value is
    /// stored exactly, and `0/0` never happens).
    pub fn merge(self, o: Moments) -> Moments {
        if o.n == 0.0 {
            return self;
        }
        if self.n == 0.0 {
            return o;
        }
        let n = self.n + o.n;
        let delta = o.mean - self.mean;
        Moments { n, mean: self.mean + delta * (o.n / n), m2: self.m2 + o.m2 + delta * delta * (self.n * o.n / n) }
    }

    /// `M2/(n − 1)` or `M2/n`; 0 when there are too few values (`n ≤ 1` unbiased, `n == 0`
    /// population) \[library choice\].
    pub fn variance(&self, kind: StdKind) -> f64 {
        match kind {
            StdKind::Unbiased if self.n > 1.0 => self.m2 / (self.n - 1.0),
            StdKind::Population if self.n > 0.0 => self.m2 / self.n,
            _ => 0.0,
        }
    }

    /// `sqrt(variance(kind))`.
    pub fn std(&self, kind: StdKind) -> f64 {
        super::sqrt(self.variance(kind))
    }
}

/// Number of distinct groups among `rows` responses (the table size [`group_moments`]
/// needs). `O(B·K)` for `K` ids, like every [`Groups::Ids`] pass.
pub fn distinct_groups(groups: Groups<'_>, rows: usize) -> Result<usize, TmError> {
    groups.validate(rows)?;
    Ok(groups.iter(rows).count())
}

/// Per-group moments of `x` (`policy.md` §2.1–2.2), one entry per distinct group in order
/// of first appearance; returns the number of groups `K` and fills `ids_out[..K]` (the
/// group's label; the block index for [`Groups::Contiguous`]) and `moments_out[..K]`.
///
/// Members are pushed in ascending row order. `weight` (e.g. token counts) gives the
/// weighted form (`n` becomes `Σw`); rows with weight 0 do not count.
///
/// To combine groups split across ranks: every rank calls this on its rows, the tables are
/// gathered, and entries with equal ids are merged with [`Moments::merge`] in ascending rank
/// order.
///
/// Errors: [`TmError::LengthMismatch`] for `group`/`weight` lengths or an output shorter
/// than `K` (`expected` is then `K`); [`TmError::NonFinite`] for a non-finite weight, or a
/// non-finite `x` with non-zero weight (filter unscorable rows out with weight 0);
/// [`TmError::InvalidArgument`] for a negative weight.
pub fn group_moments(
    x: &[f32],
    groups: Groups<'_>,
    weight: Option<&[f32]>,
    ids_out: &mut [u32],
    moments_out: &mut [Moments],
) -> Result<usize, TmError> {
    let rows = x.len();
    groups.validate(rows)?;
    if let Some(w) = weight {
        check_len("weight", rows, w.len())?;
        if let Some(index) = w.iter().position(|v| !v.is_finite()) {
            return Err(TmError::NonFinite { what: "weight", index });
        }
        if w.iter().any(|&v| v < 0.0) {
            return Err(TmError::InvalidArgument("group_moments: weights must be >= 0"));
        }
    }
    let weight_of = |b: usize| weight.map_or(1.0, |w| w[b] as f64);
    if let Some(index) = (0..rows).find(|&b| !x[b].is_finite() && weight_of(b) != 0.0) {
        return Err(TmError::NonFinite { what: "x", index });
    }
    let k = groups.iter(rows).count();
    check_len("ids_out", k, ids_out.len().min(k))?;
    check_len("moments_out", k, moments_out.len().min(k))?;
    for (slot, members) in groups.iter(rows).enumerate() {
        let mut m = Moments::EMPTY;
        let mut first = None;
        for b in members {
            first.get_or_insert(b);
            if weight_of(b) != 0.0 {
                m.push(x[b] as f64, weight_of(b));
            }
        }
        let first = first.unwrap_or(0);
        ids_out[slot] = match groups {
            Groups::Ids(ids) => ids[first],
            Groups::Contiguous { size } => (first / size) as u32,
        };
        moments_out[slot] = m;
    }
    Ok(k)
}

/// Merges gathered group-moment tables: `(ids[e], moments[e])` are the entries of every
/// rank's [`group_moments`] table, concatenated in ascending rank order (as an all-gather
/// leaves them). Entries with equal ids are merged with [`Moments::merge`] in entry order,
/// hence in ascending rank order; the merged table goes to `ids_out[..K]`,
/// `moments_out[..K]` in order of each id's first entry, and `K` is returned.
///
/// This fixes the data-parallel merge order: the result depends only on the ranks' tables
/// and their order, never on the collective's internal reduction order. Merging the tables
/// of the ranks' rows equals (bitwise) one [`group_moments`] call on the whole batch for
/// every group whose rows all live on one rank (merging with an empty side is exact); a
/// group split across ranks differs from the unsplit moments only by the merge's rounding
/// (relative `~n·2⁻⁵²`). `O(E·K)` comparisons, no scratch.
///
/// Errors: [`TmError::LengthMismatch`] for `ids`/`moments` lengths or an output shorter
/// than `K` (`expected` is then `K`); [`TmError::InvalidArgument`] for an entry that is not a
/// valid moment (`n`, `M2` negative or not finite, or a non-finite mean).
pub fn merge_group_moments(
    ids: &[u32],
    moments: &[Moments],
    ids_out: &mut [u32],
    moments_out: &mut [Moments],
) -> Result<usize, TmError> {
    check_len("moments", ids.len(), moments.len())?;
    if moments.iter().any(|m| !(m.n.is_finite() && m.n >= 0.0 && m.mean.is_finite() && m.m2.is_finite() && m.m2 >= 0.0))
    {
        return Err(TmError::InvalidArgument("a group moments entry is not finite and non-negative"));
    }
    // An entry starts a group iff no earlier entry has its id (the scan of `Groups::Ids`).
    let first = |e: usize| !ids[..e].contains(&ids[e]);
    let k = (0..ids.len()).filter(|&e| first(e)).count();
    check_len("ids_out", k, ids_out.len().min(k))?;
    check_len("moments_out", k, moments_out.len().min(k))?;
    for (slot, e) in (0..ids.len()).filter(|&e| first(e)).enumerate() {
        let mut m = moments[e];
        for f in e + 1..ids.len() {
            if ids[f] == ids[e] {
                m = m.merge(moments[f]);
            }
        }
        ids_out[slot] = ids[e];
        moments_out[slot] = m;
    }
    Ok(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_is_exact_for_constants_and_empty_sides() {
        let mut a = Moments::EMPTY;
        for _ in 0..7 {
            a.push(0.1, 1.0);
        }
        let mut b = Moments::EMPTY;
        b.push(0.1, 3.0);
        let m = a.merge(b);
        assert_eq!((m.n, m.mean, m.m2), (10.0, 0.1, 0.0));
        assert_eq!(m.merge(Moments::EMPTY), m);
        assert_eq!(Moments::EMPTY.merge(m), m);
        // A weight-0 value is a no-op, whatever it is.
        let mut c = m;
        c.push(f64::NAN, 0.0);
        assert_eq!(c, m);
        assert_eq!(Moments::EMPTY.variance(StdKind::Population), 0.0);
        assert_eq!(m.variance(StdKind::Unbiased), 0.0);
    }

    #[test]
    fn groups_visit_first_appearance_order_with_ascending_members() {
        let ids = [7u32, 3, 7, 9, 3, 7];
        let groups = Groups::Ids(&ids);
        let seen: std::vec::Vec<std::vec::Vec<usize>> = groups.iter(ids.len()).map(|m| m.collect()).collect();
        assert_eq!(seen, [vec![0, 2, 5], vec![1, 4], vec![3]]);
        let blocks: std::vec::Vec<std::vec::Vec<usize>> =
            Groups::Contiguous { size: 2 }.iter(6).map(|m| m.collect()).collect();
        assert_eq!(blocks, [vec![0, 1], vec![2, 3], vec![4, 5]]);
        assert_eq!(distinct_groups(groups, ids.len()), Ok(3));
    }

    #[test]
    fn merged_tables_follow_entry_order_and_reject_bad_entries() {
        let m = |x: f64| Moments { n: 1.0, mean: x, m2: 0.0 };
        // Rank 0 holds groups 5 and 2, rank 1 groups 2 and 9.
        let ids = [5u32, 2, 2, 9];
        let ms = [m(1.0), m(2.0), m(4.0), m(3.0)];
        let (mut ids_out, mut out) = ([0u32; 4], [Moments::EMPTY; 4]);
        assert_eq!(merge_group_moments(&ids, &ms, &mut ids_out, &mut out), Ok(3));
        assert_eq!(ids_out[..3], [5, 2, 9]);
        assert_eq!(out[..3], [m(1.0), m(2.0).merge(m(4.0)), m(3.0)]);
        assert_eq!(out[1], Moments { n: 2.0, mean: 3.0, m2: 2.0 });
        let mut short = [Moments::EMPTY; 2];
        assert_eq!(
            merge_group_moments(&ids, &ms, &mut ids_out, &mut short),
            Err(TmError::LengthMismatch { what: "moments_out", expected: 3, got: 2 })
        );
        let bad = [m(1.0), Moments { n: -1.0, mean: 0.0, m2: 0.0 }, m(4.0), m(3.0)];
        assert!(matches!(merge_group_moments(&ids, &bad, &mut ids_out, &mut out), Err(TmError::InvalidArgument(_))));
        assert_eq!(merge_group_moments(&[], &[], &mut [], &mut []), Ok(0));
    }
}
