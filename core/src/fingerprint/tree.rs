//! The Merkle tree hash of RFC 6962 §2.1 over a slice of leaf hashes.
//!
//! ```text
//! MTH({})     = H("")
//! MTH({d0})   = leaf hash of d0
//! MTH(D[0:n]) = NODE(MTH(D[0:k]), MTH(D[k:n]))      k = largest power of two < n
//! ```
//!
//! No padding, no duplication: the root depends on `n`, on the order and on every leaf.
//! The functions here take *leaf hashes* (see [`super::hash::leaf_hash`]).

use super::hash::{empty_root, node_hash, Digest, Hash32};

/// The largest power of two strictly less than `n` (`n ≥ 2`); the RFC 6962 split point.
#[inline]
pub fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Number of significant bits of `x` (`bitlen(0) = 0`).
#[inline]
pub(crate) fn bit_len(x: u64) -> u32 {
    64 - x.leading_zeros()
}

/// `MTH` of `leaf_hashes` (the root of the tree; [`empty_root`] for an empty slice).
///
/// `O(n)` hashes, recursion depth `⌈log2 n⌉`, no allocation.
pub fn root<H: Hash32 + ?Sized>(h: &H, leaf_hashes: &[Digest]) -> Digest {
    if leaf_hashes.is_empty() {
        empty_root(h)
    } else {
        subtree_root(h, leaf_hashes)
    }
}

/// `MTH` of a non-empty slice.
pub(crate) fn subtree_root<H: Hash32 + ?Sized>(h: &H, leaves: &[Digest]) -> Digest {
    match leaves.len() {
        0 => empty_root(h),
        1 => leaves[0],
        n => {
            let k = split_point(n as u64) as usize;
            let l = subtree_root(h, &leaves[..k]);
            let r = subtree_root(h, &leaves[k..]);
            node_hash(h, &l, &r)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_point_and_bit_len() {
        for n in 2u64..5000 {
            let k = split_point(n);
            assert!(k.is_power_of_two() && k < n && 2 * k >= n, "n {n} k {k}");
        }
        assert_eq!(bit_len(0), 0);
        assert_eq!(bit_len(1), 1);
        assert_eq!(bit_len(u64::MAX), 64);
    }
}
