//! Forward, second stage: each row's block tuples merged in `core`'s split-tree order
//! (`tree(b[0..n]) = tree(b[0..k]) ⊕ tree(b[k..n])`, `k` the largest power of two `< n`),
//! then either written as one tuple (a shard's partial) or finalized into
//! `(lse, logp, entropy, max, log_sum)` with a per-row status code.
//!
//! One thread per row runs `core`'s `TreeStack` (push at level 0, merge while the top two
//! levels match, fold from the top at the end) in local arrays; the merge and finalize are
//! `RowStats::merge_unchecked` and `RowStats::finalize` transcribed.

use cubecl::prelude::*;

use super::exp::{exp_flushed, log_pos};
use super::{NAN_BITS, NEG_INF_BITS};

const HAS_TARGET: u32 = 1;
const NONFINITE: u32 = 2;
/// Depth of the merge stack: enough for 2^31 blocks.
const STACK: usize = 32;

/// Per-row status codes written by the finalizing merge.
pub(crate) const CODE_OK: u32 = 0;
pub(crate) const CODE_NONFINITE: u32 = 1;
pub(crate) const CODE_NO_FINITE_LOGIT: u32 = 2;
pub(crate) const CODE_MISSING_TARGET: u32 = 3;

/// A key whose unsigned order is the order of the (non-NaN) floats `x`, `−inf` included:
/// comparisons on bits, because a WGSL compiler may assume no float is infinite. (`−0`
/// sorts below `+0`; tuple maxima are never `−0`.)
#[cube]
fn order_key(x: f32) -> u32 {
    let b = u32::reinterpret(x);
    select((b & 0x8000_0000u32) != 0, !b, b | 0x8000_0000u32)
}

/// `RowStats::merge_unchecked` on tuples `(m, s, u, x_t, flags)`: the left operand's target
/// wins; operands ordered by maximum (ties keep `a` first); one `exp`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn merge(
    am: f32,
    a_s: f32,
    au: f32,
    ax: f32,
    af: u32,
    bm: f32,
    bs: f32,
    bu: f32,
    bx: f32,
    bf: u32,
) -> (f32, f32, f32, f32, u32) {
    let a_t = (af & HAS_TARGET) != 0;
    let b_t = (bf & HAS_TARGET) != 0;
    let x_t = select(a_t, ax, select(b_t, bx, f32::new(0.0)));
    let flags = select(a_t || b_t, HAS_TARGET, 0u32) | ((af | bf) & NONFINITE);
    let a_hi = order_key(am) >= order_key(bm);
    let hm = select(a_hi, am, bm);
    let hs = select(a_hi, a_s, bs);
    let hu = select(a_hi, au, bu);
    let lm = select(a_hi, bm, am);
    let ls = select(a_hi, bs, a_s);
    let lu = select(a_hi, bu, au);
    let mut s = hs;
    let mut u = hu;
    if u32::reinterpret(lm) != NEG_INF_BITS {
        let delta = lm - hm;
        let e = exp_flushed(delta);
        s = fma(e, ls, hs);
        u = fma(e, fma(ls, delta, lu), hu);
    }
    (hm, s, u, x_t, flags)
}

/// Merges `nblocks` tuples per row (`parts`, row stride `nblocks`). With `finalize`, writes
/// `lse, logp, entropy, max, log_sum` and `code`; otherwise writes the merged tuple to `merged`.
/// `want_target[r]` (finalize only): the row has a target; masked rows (`keep[r] == 0`)
/// get zeros (finalize) and are not merged.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn merge_rows(
    parts: &Array<u32>,
    keep: &Array<u32>,
    want_target: &Array<u32>,
    merged: &mut Array<u32>,
    lse: &mut Array<u32>,
    logp: &mut Array<u32>,
    entropy: &mut Array<u32>,
    max: &mut Array<u32>,
    log_sum: &mut Array<u32>,
    code: &mut Array<u32>,
    witness: &mut Array<u32>,
    rows: usize,
    nblocks: usize,
    zero: u32,
    #[comptime] finalize: bool,
) {
    let row = ABSOLUTE_POS;
    if row == 0 {
        witness[0] = 1u32;
    }
    if row < rows {
        let mut st_m = Array::<f32>::new(STACK);
        let mut st_s = Array::<f32>::new(STACK);
        let mut st_u = Array::<f32>::new(STACK);
        let mut st_x = Array::<f32>::new(STACK);
        let mut st_f = Array::<u32>::new(STACK);
        let mut st_level = Array::<u32>::new(STACK);
        let mut len = 0usize;
        for k in 0..nblocks {
            let slot = (row * nblocks + k) * 5;
            let mut m = f32::reinterpret(parts[slot]);
            let mut s = f32::reinterpret(parts[slot + 1]);
            let mut u = f32::reinterpret(parts[slot + 2]);
            let mut x = f32::reinterpret(parts[slot + 3]);
            let mut f = parts[slot + 4];
            let mut level = 0u32;
            let mut more = len > 0;
            while more {
                if st_level[len - 1] == level {
                    len -= 1;
                    let (m2, s2, u2, x2, f2) =
                        merge(st_m[len], st_s[len], st_u[len], st_x[len], st_f[len], m, s, u, x, f);
                    m = m2;
                    s = s2;
                    u = u2;
                    x = x2;
                    f = f2;
                    level += 1;
                    more = len > 0;
                } else {
                    more = false;
                }
            }
            st_m[len] = m;
            st_s[len] = s;
            st_u[len] = u;
            st_x[len] = x;
            st_f[len] = f;
            st_level[len] = level;
            len += 1;
        }
        let mut m = st_m[len - 1];
        let mut s = st_s[len - 1];
        let mut u = st_u[len - 1];
        let mut x = st_x[len - 1];
        let mut f = st_f[len - 1];
        let mut i = len - 1;
        while i > 0 {
            i -= 1;
            let (m2, s2, u2, x2, f2) = merge(st_m[i], st_s[i], st_u[i], st_x[i], st_f[i], m, s, u, x, f);
            m = m2;
            s = s2;
            u = u2;
            x = x2;
            f = f2;
        }

        if finalize {
            // `| zero` (always 0): NVRTC rejects a `reinterpret_cast` of a constant.
            let nan = f32::reinterpret(NAN_BITS | zero);
            let mut c = u32::new(CODE_OK as i64);
            let mut o_lse = nan;
            let mut o_logp = nan;
            let mut o_h = nan;
            let mut o_max = nan;
            let mut o_log_sum = nan;
            let want = want_target[row] != 0;
            if keep[row] == 0 {
                o_lse = f32::new(0.0);
                o_logp = f32::new(0.0);
                o_h = f32::new(0.0);
                o_max = f32::new(0.0);
                o_log_sum = f32::new(0.0);
            } else if (f & NONFINITE) != 0 {
                c = CODE_NONFINITE;
            } else if u32::reinterpret(m) == NEG_INF_BITS {
                c = CODE_NO_FINITE_LOGIT;
            } else if want && (f & HAS_TARGET) == 0 {
                c = CODE_MISSING_TARGET;
            } else {
                let log_s = log_pos(s, zero);
                let mean_dev = u / s;
                o_logp = f32::new(0.0);
                if want {
                    // A masked (−inf) target: logp = −inf, without a float operation on it.
                    if u32::reinterpret(x) == NEG_INF_BITS {
                        o_logp = f32::reinterpret(NEG_INF_BITS | zero);
                    } else {
                        let lp = (x - m) - log_s;
                        o_logp = select(lp > 0.0, f32::new(0.0), lp);
                    }
                }
                o_lse = m + log_s;
                o_h = log_s - mean_dev;
                o_max = m;
                o_log_sum = log_s;
            }
            lse[row] = u32::reinterpret(o_lse);
            logp[row] = u32::reinterpret(o_logp);
            entropy[row] = u32::reinterpret(o_h);
            max[row] = u32::reinterpret(o_max);
            log_sum[row] = u32::reinterpret(o_log_sum);
            code[row] = c;
        } else {
            let slot = row * 5;
            merged[slot] = u32::reinterpret(m);
            merged[slot + 1] = u32::reinterpret(s);
            merged[slot + 2] = u32::reinterpret(u);
            merged[slot + 3] = u32::reinterpret(x);
            merged[slot + 4] = f;
        }
    }
}
