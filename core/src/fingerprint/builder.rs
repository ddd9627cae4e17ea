//! Streaming and mergeable tree builders: `O(log n)` memory, no allocation.
//!
//! * [`StreamingTree`] takes leaf hashes one at a time and yields the root of the tree of
//!   the leaves seen so far at any moment. It keeps the perfect subtrees of the binary
//!   decomposition of `n` (at most 64 entries for `n < 2^64`).
//! * [`CompactRange`] is the same idea for an arbitrary range `[begin, end)` of leaf
//!   positions: its canonical decomposition into maximal aligned perfect subtrees. Workers
//!   hash shards of a stream independently and [`CompactRange::merge`] combines adjacent
//!   ranges; the root of a merged `[0, n)` equals [`super::tree::root`] bit for bit,
//!   whatever the split (hashing has no rounding).

use super::hash::{empty_root, node_hash, Digest, Hash32};
use crate::TmError;

/// A streaming RFC 6962 tree builder over leaf hashes.
///
/// ```text
/// append(h): push (0, h); while the two top entries have equal level: merge them
/// root():    empty → H("");  else fold the stack from the top: acc = NODE(entry, acc)
/// ```
#[derive(Clone, Debug)]
pub struct StreamingTree<H: Hash32> {
    hasher: H,
    n: u64,
    depth: usize,
    stack: [(Digest, u8); 64],
}

impl<H: Hash32> StreamingTree<H> {
    /// An empty tree hashed with `hasher`.
    pub fn new(hasher: H) -> Self {
        StreamingTree { hasher, n: 0, depth: 0, stack: [([0; 32], 0); 64] }
    }

    /// The hash function.
    pub fn hasher(&self) -> &H {
        &self.hasher
    }

    /// Number of leaves appended.
    pub fn len(&self) -> u64 {
        self.n
    }

    /// `true` before the first append.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Appends one leaf hash. Fails only when the tree already holds `u64::MAX` leaves.
    #[inline]
    pub fn append(&mut self, leaf_hash: Digest) -> Result<(), TmError> {
        if self.n == u64::MAX {
            return Err(TmError::SizeOverflow { what: "tree size" });
        }
        // The merges performed are exactly the trailing one-bits of n.
        let mut acc = leaf_hash;
        let mut level = 0u8;
        let mut carry = self.n;
        while carry & 1 == 1 {
            self.depth -= 1;
            let (left, _) = self.stack[self.depth];
            acc = node_hash(&self.hasher, &left, &acc);
            level += 1;
            carry >>= 1;
        }
        self.stack[self.depth] = (acc, level);
        self.depth += 1;
        self.n += 1;
        Ok(())
    }

    /// The root of the tree of the leaves appended so far (`H("")` when empty).
    pub fn root(&self) -> Digest {
        if self.depth == 0 {
            return empty_root(&self.hasher);
        }
        let mut acc = self.stack[self.depth - 1].0;
        for i in (0..self.depth - 1).rev() {
            acc = node_hash(&self.hasher, &self.stack[i].0, &acc);
        }
        acc
    }

    /// The perfect subtrees held, left to right, as `(level, hash)`; the compact range
    /// `[0, len)`.
    pub fn frontier(&self) -> impl Iterator<Item = (u8, Digest)> + '_ {
        self.stack[..self.depth].iter().map(|&(h, l)| (l, h))
    }
}

/// Capacity of a [`CompactRange`]: each level occurs at most twice in a canonical
/// decomposition of a range of `u64` positions.
pub const COMPACT_RANGE_CAPACITY: usize = 128;

/// One node of a compact range: level `ℓ`, index `i`, covering leaves
/// `[i·2^ℓ, (i+1)·2^ℓ)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeNode {
    /// Height of the perfect subtree (0 = a leaf).
    pub level: u8,
    /// Index of the subtree among those of its level.
    pub index: u64,
    /// Its hash.
    pub hash: Digest,
}

/// The canonical decomposition of the leaf range `[begin, end)` into maximal aligned perfect
/// subtrees (cf. transparency-dev/merkle `compact/range.go`), stored inline.
#[derive(Clone, Debug)]
pub struct CompactRange<H: Hash32> {
    hasher: H,
    begin: u64,
    end: u64,
    len: usize,
    nodes: [RangeNode; COMPACT_RANGE_CAPACITY],
}

impl<H: Hash32> CompactRange<H> {
    /// The empty range `[begin, begin)`.
    pub fn new(hasher: H, begin: u64) -> Self {
        let zero = RangeNode { level: 0, index: 0, hash: [0; 32] };
        CompactRange { hasher, begin, end: begin, len: 0, nodes: [zero; COMPACT_RANGE_CAPACITY] }
    }

    /// The range `[begin, begin + leaf_hashes.len())` built from consecutive leaf hashes.
    pub fn from_leaves(hasher: H, begin: u64, leaf_hashes: &[Digest]) -> Result<Self, TmError> {
        let mut r = CompactRange::new(hasher, begin);
        for h in leaf_hashes {
            r.append(*h)?;
        }
        Ok(r)
    }

    /// First leaf position.
    pub fn begin(&self) -> u64 {
        self.begin
    }

    /// One past the last leaf position.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// The nodes, left to right.
    pub fn nodes(&self) -> &[RangeNode] {
        &self.nodes[..self.len]
    }

    /// Appends the leaf at position `end`.
    pub fn append(&mut self, leaf_hash: Digest) -> Result<(), TmError> {
        if self.end == u64::MAX {
            return Err(TmError::SizeOverflow { what: "compact range end" });
        }
        self.push(RangeNode { level: 0, index: self.end, hash: leaf_hash })?;
        self.end += 1;
        Ok(())
    }

    fn push(&mut self, node: RangeNode) -> Result<(), TmError> {
        if self.len == COMPACT_RANGE_CAPACITY {
            return Err(TmError::InvalidArgument("compact range: node capacity exceeded"));
        }
        self.nodes[self.len] = node;
        self.len += 1;
        while self.len >= 2 {
            let (l, r) = (self.nodes[self.len - 2], self.nodes[self.len - 1]);
            if l.level != r.level || l.index & 1 != 0 || r.index != l.index + 1 || l.level == 63 {
                break;
            }
            self.len -= 1;
            self.nodes[self.len - 1] =
                RangeNode { level: l.level + 1, index: l.index >> 1, hash: node_hash(&self.hasher, &l.hash, &r.hash) };
        }
        Ok(())
    }

    /// Merges the adjacent range `right = [end, c)` into `self = [begin, end)`, giving
    /// `[begin, c)`. `right` must start where `self` ends.
    pub fn merge(mut self, right: &Self) -> Result<Self, TmError> {
        if right.begin != self.end {
            return Err(TmError::InvalidArgument("compact range merge: the ranges are not adjacent"));
        }
        for node in right.nodes() {
            self.push(*node)?;
        }
        self.end = right.end;
        Ok(self)
    }

    /// The root of the tree `[0, end)`; only defined when `begin == 0`.
    pub fn root(&self) -> Result<Digest, TmError> {
        if self.begin != 0 {
            return Err(TmError::InvalidArgument("compact range root: the range does not start at leaf 0"));
        }
        if self.len == 0 {
            return Ok(empty_root(&self.hasher));
        }
        let mut acc = self.nodes[self.len - 1].hash;
        for node in self.nodes[..self.len - 1].iter().rev() {
            acc = node_hash(&self.hasher, &node.hash, &acc);
        }
        Ok(acc)
    }
}
