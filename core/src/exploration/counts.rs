//! Count-based bonuses, global and episodic (`src/utils.py::act`, `src/algos/count.py::learn`
//! of `facebookresearch/e3b`), and a count table over caller-owned storage.
//!
//! ```text
//! global:    N_g(s) += 1 at every visit (never reset);    b_g(s) = 1/sqrt(N_g(s))
//! episodic:  N_e(s) += 1 (table cleared at episode end);  b_e(s) = 1[N_e(s) = 1]  (the learner's form)
//!            the actor stores 1/sqrt(N_e(s)) instead        (EpisodicForm::InvSqrt)
//! both:      b(s) = b_e(s)·b_g(s)
//! ```
//! Counts are the counts *after* the visit's increment, so a count of 0 is an error. The
//! source's defaults: episodic key = agent position, global bonus off, combination =
//! product. Keys are the caller's `u64` (a hash of the observation, message, glyphs,
//! position or image: the source's key options).

use crate::TmError;

/// `b_g = 1/sqrt(n)` for the count `n ≥ 1` after the visit \[code\]. Computed in `f64` and
/// rounded once. `n = 0` is [`TmError::InvalidArgument`].
pub fn count_bonus_global(n: u64) -> Result<f32, TmError> {
    if n == 0 {
        return Err(TmError::InvalidArgument("a visit count is 0: counts are taken after the increment (>= 1)"));
    }
    Ok((1.0 / libm::sqrt(n as f64)) as f32)
}

/// `b_e = 1[n = 1]`, the learner's episodic bonus \[code\]: 1 at the first visit of the
/// episode, else 0. `n = 0` is [`TmError::InvalidArgument`].
pub fn count_bonus_episodic_indicator(n_episode: u64) -> Result<f32, TmError> {
    match n_episode {
        0 => Err(TmError::InvalidArgument("a visit count is 0: counts are taken after the increment (>= 1)")),
        1 => Ok(1.0),
        _ => Ok(0.0),
    }
}

/// Which episodic bonus [`count_bonuses`] computes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EpisodicForm {
    /// `1[N_e = 1]`, what the source's learner trains on (default) \[code\].
    #[default]
    FirstVisit,
    /// `1/sqrt(N_e)`, what the source's actor stores \[code\].
    InvSqrt,
}

/// Per-transition count bonus: `b_g` from `n_global`, `b_e` from `n_episodic` (in `form`),
/// their product when both are given \[code\]. `None` leaves that factor out; both `None` is
/// [`TmError::InvalidArgument`]. Every given slice has `out.len()` counts, each `≥ 1`.
pub fn count_bonuses(
    n_global: Option<&[u64]>,
    n_episodic: Option<&[u64]>,
    form: EpisodicForm,
    out: &mut [f32],
) -> Result<(), TmError> {
    if n_global.is_none() && n_episodic.is_none() {
        return Err(TmError::InvalidArgument("count_bonuses needs global counts, episodic counts or both"));
    }
    let n = out.len();
    for (what, c) in [("n_global", n_global), ("n_episodic", n_episodic)] {
        if let Some(c) = c {
            crate::error::check_len(what, n, c.len())?;
            if c.contains(&0) {
                return Err(TmError::InvalidArgument(
                    "a visit count is 0: counts are taken after the increment (>= 1)",
                ));
            }
        }
    }
    for (i, o) in out.iter_mut().enumerate() {
        let g = n_global.map_or(1.0, |c| 1.0 / libm::sqrt(c[i] as f64));
        let e = n_episodic.map_or(1.0, |c| match form {
            EpisodicForm::FirstVisit => f64::from(u8::from(c[i] == 1)),
            EpisodicForm::InvSqrt => 1.0 / libm::sqrt(c[i] as f64),
        });
        *o = (e * g) as f32;
    }
    Ok(())
}

/// A visit-count table over caller-owned storage: open addressing with linear probing,
/// `capacity` a power of two, a slot empty when its count is 0 \[library choice\]: the source
/// uses a Python `dict`; this is the allocation-free equivalent with the same semantics
/// (a count per key, incremented per visit). The probe sequence depends only on the key
/// (SplitMix64 finaliser), so the table's contents depend only on the visits made.
///
/// Use one table that is never cleared for global counts and one cleared with
/// [`CountTable::clear`] at each episode end for episodic counts. Global counts from
/// several workers merge by addition ([`CountTable::merge_from`]); the source keeps
/// per-actor tables and never merges them, so merging is the caller's decision.
#[derive(Debug)]
pub struct CountTable<'a> {
    keys: &'a mut [u64],
    counts: &'a mut [u64],
    len: usize,
}

fn mix(mut z: u64) -> u64 {
    // SplitMix64's finaliser (Steele, Lea, Flood 2014).
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl<'a> CountTable<'a> {
    /// Wraps caller storage holding a table (all counts 0 for a new one). `keys` and
    /// `counts` have the same length, a power of two. The number of occupied slots is
    /// recounted from `counts`.
    pub fn new(keys: &'a mut [u64], counts: &'a mut [u64]) -> Result<Self, TmError> {
        crate::error::check_len("counts", keys.len(), counts.len())?;
        if !keys.len().is_power_of_two() {
            return Err(TmError::InvalidArgument("the count table's capacity must be a power of two"));
        }
        let len = counts.iter().filter(|&&c| c != 0).count();
        Ok(CountTable { keys, counts, len })
    }

    /// Distinct keys stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no key is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Slots in the table.
    pub fn capacity(&self) -> usize {
        self.keys.len()
    }

    /// The slot holding `key`, or the empty slot where it would go.
    fn slot(&self, key: u64) -> Option<usize> {
        let m = self.keys.len() - 1;
        let mut i = mix(key) as usize & m;
        for _ in 0..self.keys.len() {
            if self.counts[i] == 0 || self.keys[i] == key {
                return Some(i);
            }
            i = (i + 1) & m;
        }
        None
    }

    /// The count of `key` (0 if never visited).
    pub fn get(&self, key: u64) -> u64 {
        match self.slot(key) {
            Some(i) if self.counts[i] != 0 => self.counts[i],
            _ => 0,
        }
    }

    /// Visits `keys` in order, writing each key's count after its increment into `out`.
    ///
    /// Refused with [`TmError::InvalidArgument`] before anything changes unless the table
    /// has a free slot for every visit (`len + keys.len() ≤ capacity`) \[library choice\]: a
    /// conservative check that keeps a failed call from leaving a half-counted batch.
    /// Size the table for the distinct keys you expect plus one batch.
    pub fn visit(&mut self, keys: &[u64], out: &mut [u64]) -> Result<(), TmError> {
        crate::error::check_len("out", keys.len(), out.len())?;
        if self.len.checked_add(keys.len()).is_none_or(|n| n > self.capacity()) {
            return Err(TmError::InvalidArgument(
                "the count table has no room for this batch (len + batch > capacity)",
            ));
        }
        for (&k, o) in keys.iter().zip(out.iter_mut()) {
            // A free slot exists (checked above), so the probe ends.
            let i = self.slot(k).ok_or(TmError::InvalidArgument("the count table is full"))?;
            if self.counts[i] == 0 {
                self.keys[i] = k;
                self.len += 1;
            }
            self.counts[i] = self.counts[i].saturating_add(1);
            *o = self.counts[i];
        }
        Ok(())
    }

    /// Forgets every key (episode end for an episodic table).
    pub fn clear(&mut self) {
        self.counts.fill(0);
        self.keys.fill(0);
        self.len = 0;
    }

    /// Adds another table's counts to this one (global counts of several workers). Refused
    /// before anything changes unless `len + other.len() ≤ capacity`.
    pub fn merge_from(&mut self, other: &CountTable<'_>) -> Result<(), TmError> {
        if self.len.checked_add(other.len).is_none_or(|n| n > self.capacity()) {
            return Err(TmError::InvalidArgument("the count table has no room for the merged keys"));
        }
        for (&k, &c) in other.keys.iter().zip(other.counts.iter()) {
            if c == 0 {
                continue;
            }
            let i = self.slot(k).ok_or(TmError::InvalidArgument("the count table is full"))?;
            if self.counts[i] == 0 {
                self.keys[i] = k;
                self.len += 1;
            }
            self.counts[i] = self.counts[i].saturating_add(c);
        }
        Ok(())
    }
}
