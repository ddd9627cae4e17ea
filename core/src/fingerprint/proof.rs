//! Inclusion and consistency proofs (RFC 6962 §2.1.1–2.1.2, verification as RFC 9162
//! §2.1.3.2 / §2.1.4.2), their exact lengths, and a versioned byte format.
//!
//! Generation writes into a caller-sized buffer (`&mut [Digest]`, see
//! [`inclusion_proof_len`], [`consistency_proof_len`] and [`max_proof_len`]); nothing
//! allocates. Verification returns a typed [`ProofError`] for every rejection and never
//! panics, whatever the input.
//!
//! # Byte format (version 1)
//!
//! All integers little-endian.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `"TMPF"` |
//! | 4 | 1 | format version = `1` |
//! | 5 | 1 | kind: `1` inclusion, `2` consistency |
//! | 6 | 1 | `hash_id` (`1` BLAKE3, `2` SHA-256, `3` keyed BLAKE3) |
//! | 7 | 1 | reserved, must be `0` |
//! | 8 | 8 | inclusion: leaf `index`; consistency: `size1` |
//! | 16 | 8 | inclusion: tree `size`; consistency: `size2` |
//! | 24 | 4 | `count`: number of hashes |
//! | 28 | `32·count` | the hashes, leaf-to-root order |
//!
//! The total length must be exactly `28 + 32·count`, `count` at most [`MAX_PROOF_HASHES`],
//! and (checked at verification) equal to the exact proof length of the sizes. The sizes in
//! the byte string are the prover's claim; verifiers must compare them with a signed head
//! ([`super::signed_head`]) and use the head's size.

use core::fmt;

use super::hash::{digest_eq, node_hash, Digest, Hash32, HASH_LEN};
use super::tree::{bit_len, split_point, subtree_root};
use crate::TmError;

/// Why a proof was rejected (or could not be parsed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProofError {
    /// The leaf index is not below the tree size.
    IndexOutOfRange {
        /// Claimed index.
        index: u64,
        /// Tree size.
        size: u64,
    },
    /// Consistency sizes with `size1 = 0` or `size1 > size2`.
    InvalidSizes {
        /// Older size.
        size1: u64,
        /// Newer size.
        size2: u64,
    },
    /// The proof has the wrong number of hashes for the sizes (truncated or extended).
    WrongLength {
        /// Hashes the sizes require.
        expected: usize,
        /// Hashes given.
        got: usize,
    },
    /// The recomputed root differs from the expected one (wrong leaf, index, size, or
    /// a tampered hash).
    RootMismatch,
    /// The recomputed old root differs from the expected one (consistency proofs).
    OldRootMismatch,
    /// The byte string is not a well-formed proof (the message says what is wrong).
    Malformed(&'static str),
    /// The byte string's format version is not supported.
    UnsupportedVersion(u8),
    /// The proof was made with another hash function than the verifier's.
    HashMismatch {
        /// `hash_id` the verifier uses.
        expected: u8,
        /// `hash_id` in the proof.
        got: u8,
    },
    /// An inclusion proof where a consistency proof was expected, or vice versa.
    WrongKind {
        /// Kind expected.
        expected: ProofKind,
        /// Kind found.
        got: ProofKind,
    },
}

impl fmt::Display for ProofError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ProofError::IndexOutOfRange { index, size } => {
                write!(f, "leaf index {index} is not below the tree size {size}")
            }
            ProofError::InvalidSizes { size1, size2 } => {
                write!(f, "invalid consistency sizes {size1} -> {size2} (need 0 < size1 <= size2)")
            }
            ProofError::WrongLength { expected, got } => {
                write!(f, "the proof has {got} hashes, the sizes require {expected}")
            }
            ProofError::RootMismatch => f.write_str("the proof does not lead to the expected root"),
            ProofError::OldRootMismatch => f.write_str("the proof does not lead to the expected old root"),
            ProofError::Malformed(msg) => write!(f, "malformed proof: {msg}"),
            ProofError::UnsupportedVersion(v) => write!(f, "unsupported proof format version {v}"),
            ProofError::HashMismatch { expected, got } => {
                write!(f, "the proof uses hash id {got}, the verifier uses {expected}")
            }
            ProofError::WrongKind { expected, got } => {
                write!(f, "expected a {} proof, got a {} proof", expected.name(), got.name())
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ProofError {}

/// The hashes of a proof for tree sizes below `2^64` never exceed this many.
pub const MAX_PROOF_HASHES: usize = 65;

/// `(inner, border)` of transparency-dev `decompInclProof`: `inner = bitlen(index ⊕ (size−1))`,
/// `border = popcount(index >> inner)`. Requires `index < size`.
fn decomp(index: u64, size: u64) -> (u32, u32) {
    let inner = bit_len(index ^ (size - 1));
    let border = if inner >= 64 { 0 } else { (index >> inner).count_ones() };
    (inner, border)
}

/// The exact number of hashes in the inclusion proof of leaf `index` in a tree of `size`.
pub fn inclusion_proof_len(index: u64, size: u64) -> Result<usize, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (inner, border) = decomp(index, size);
    Ok((inner + border) as usize)
}

/// The exact number of hashes in the consistency proof from `size1` to `size2`.
pub fn consistency_proof_len(size1: u64, size2: u64) -> Result<usize, ProofError> {
    if size1 == 0 || size1 > size2 {
        return Err(ProofError::InvalidSizes { size1, size2 });
    }
    if size1 == size2 {
        return Ok(0);
    }
    let (inner, border) = decomp(size1 - 1, size2);
    let shift = size1.trailing_zeros();
    let pow2 = size1.is_power_of_two();
    Ok((inner - shift + border) as usize + usize::from(!pow2))
}

/// An upper bound on every proof length (inclusion or consistency) for trees of at most
/// `n` leaves: `bitlen(n − 1) + 1`. Size proof buffers with it.
pub fn max_proof_len(n: u64) -> usize {
    bit_len(n.saturating_sub(1)) as usize + 1
}

fn check_out(needed: usize, out: &[Digest]) -> Result<(), TmError> {
    if out.len() < needed {
        Err(TmError::LengthMismatch { what: "proof buffer", expected: needed, got: out.len() })
    } else {
        Ok(())
    }
}

/// Writes the inclusion proof (RFC 6962 `PATH`, leaf-to-root order) of leaf `index` of the
/// tree over `leaf_hashes` into `out`; returns the number of hashes written
/// ([`inclusion_proof_len`]). `O(n)` hashes, no allocation.
pub fn inclusion_proof<H: Hash32 + ?Sized>(
    h: &H,
    leaf_hashes: &[Digest],
    index: u64,
    out: &mut [Digest],
) -> Result<usize, TmError> {
    let size = leaf_hashes.len() as u64;
    let len = inclusion_proof_len(index, size)
        .map_err(|_| TmError::InvalidArgument("inclusion proof: the leaf index is not below the tree size"))?;
    check_out(len, out)?;
    // Walk from the root down; the sibling found at depth t is entry len-1-t.
    let (mut lo, mut hi) = (0usize, leaf_hashes.len());
    let mut m = index as usize;
    let mut pos = len;
    while hi - lo > 1 {
        let k = split_point((hi - lo) as u64) as usize;
        pos -= 1;
        if m < k {
            out[pos] = subtree_root(h, &leaf_hashes[lo + k..hi]);
            hi = lo + k;
        } else {
            out[pos] = subtree_root(h, &leaf_hashes[lo..lo + k]);
            lo += k;
            m -= k;
        }
    }
    debug_assert_eq!(pos, 0);
    Ok(len)
}

/// Writes the consistency proof (RFC 6962 `PROOF(size1, D[size2])`) from the tree of the
/// first `size1` leaves to the tree over all of `leaf_hashes` into `out`; returns the number
/// of hashes written ([`consistency_proof_len`]).
pub fn consistency_proof<H: Hash32 + ?Sized>(
    h: &H,
    leaf_hashes: &[Digest],
    size1: u64,
    out: &mut [Digest],
) -> Result<usize, TmError> {
    let size2 = leaf_hashes.len() as u64;
    let len = consistency_proof_len(size1, size2)
        .map_err(|_| TmError::InvalidArgument("consistency proof: need 0 < size1 <= tree size"))?;
    check_out(len, out)?;
    // SUBPROOF top-down: items appended after the recursion are produced first, so they are
    // written from the end of the proof backwards.
    let (mut lo, mut hi) = (0usize, leaf_hashes.len());
    let mut m = size1 as usize;
    let mut complete = true;
    let mut pos = len;
    loop {
        if m == hi - lo {
            if !complete {
                pos -= 1;
                out[pos] = subtree_root(h, &leaf_hashes[lo..hi]);
            }
            break;
        }
        let k = split_point((hi - lo) as u64) as usize;
        pos -= 1;
        if m <= k {
            out[pos] = subtree_root(h, &leaf_hashes[lo + k..hi]);
            hi = lo + k;
        } else {
            out[pos] = subtree_root(h, &leaf_hashes[lo..lo + k]);
            lo += k;
            m -= k;
            complete = false;
        }
    }
    debug_assert_eq!(pos, 0);
    Ok(len)
}

/// The root implied by an inclusion proof (RFC 9162 §2.1.3.2), after checking the length.
pub fn root_from_inclusion<H: Hash32 + ?Sized>(
    h: &H,
    index: u64,
    size: u64,
    leaf_hash: &Digest,
    proof: &[Digest],
) -> Result<Digest, ProofError> {
    let expected = inclusion_proof_len(index, size)?;
    if proof.len() != expected {
        return Err(ProofError::WrongLength { expected, got: proof.len() });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if snode == 0 {
            return Err(ProofError::WrongLength { expected, got: proof.len() });
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(h, p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(h, &r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength { expected, got: proof.len() });
    }
    Ok(r)
}

/// Verifies that `leaf_hash` is leaf `index` of the tree of `size` leaves with root `root`.
///
/// `size` must come from a signed head, never from the prover's proof message: an
/// inclusion proof alone does not bind the size.
pub fn verify_inclusion<H: Hash32 + ?Sized>(
    h: &H,
    index: u64,
    size: u64,
    leaf_hash: &Digest,
    proof: &[Digest],
    root: &Digest,
) -> Result<(), ProofError> {
    let got = root_from_inclusion(h, index, size, leaf_hash, proof)?;
    if digest_eq(&got, root) {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// Verifies that the tree of `size2` leaves with root `root2` extends (append-only) the
/// tree of `size1` leaves with root `root1` (RFC 9162 §2.1.4.2). `size1 = 0` is rejected.
pub fn verify_consistency<H: Hash32 + ?Sized>(
    h: &H,
    size1: u64,
    size2: u64,
    proof: &[Digest],
    root1: &Digest,
    root2: &Digest,
) -> Result<(), ProofError> {
    let expected = consistency_proof_len(size1, size2)?;
    if proof.len() != expected {
        return Err(ProofError::WrongLength { expected, got: proof.len() });
    }
    if size1 == size2 {
        return if digest_eq(root1, root2) { Ok(()) } else { Err(ProofError::RootMismatch) };
    }
    // When size1 is a power of two, root1 itself is the first node of the path.
    let (first, rest) = if size1.is_power_of_two() { (root1, proof) } else { (&proof[0], &proof[1..]) };
    let (mut fnode, mut snode) = (size1 - 1, size2 - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if snode == 0 {
            return Err(ProofError::WrongLength { expected, got: proof.len() });
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(h, c, &fr);
            sr = node_hash(h, c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(h, &sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength { expected, got: proof.len() });
    }
    if !digest_eq(&fr, root1) {
        return Err(ProofError::OldRootMismatch);
    }
    if !digest_eq(&sr, root2) {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Magic bytes of the proof format.
pub const PROOF_MAGIC: [u8; 4] = *b"TMPF";
/// The proof format version written and accepted.
pub const PROOF_FORMAT_VERSION: u8 = 1;
/// Length of the fixed header before the hashes.
pub const PROOF_HEADER_LEN: usize = 28;

/// Inclusion or consistency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProofKind {
    /// Leaf `a` is in the tree of size `b`.
    Inclusion = 1,
    /// The tree of size `a` is a prefix of the tree of size `b`.
    Consistency = 2,
}

impl ProofKind {
    /// `"inclusion"` or `"consistency"`.
    pub fn name(self) -> &'static str {
        match self {
            ProofKind::Inclusion => "inclusion",
            ProofKind::Consistency => "consistency",
        }
    }
}

/// A parsed proof, borrowing its hashes from the byte string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProofView<'a> {
    /// Inclusion or consistency.
    pub kind: ProofKind,
    /// The hash function's `hash_id`.
    pub hash_id: u8,
    /// Inclusion: the leaf index; consistency: `size1`.
    pub a: u64,
    /// Inclusion: the tree size; consistency: `size2`.
    pub b: u64,
    /// The hashes, leaf-to-root order.
    pub hashes: &'a [Digest],
}

/// Byte length of a serialized proof of `count` hashes.
pub fn proof_bytes_len(count: usize) -> usize {
    PROOF_HEADER_LEN + HASH_LEN * count
}

/// Serializes a proof into `out`; returns the number of bytes written
/// ([`proof_bytes_len`]).
pub fn write_proof(
    kind: ProofKind,
    hash_id: u8,
    a: u64,
    b: u64,
    hashes: &[Digest],
    out: &mut [u8],
) -> Result<usize, TmError> {
    if hashes.len() > MAX_PROOF_HASHES {
        return Err(TmError::InvalidArgument("proof: more hashes than any proof can have"));
    }
    let total = proof_bytes_len(hashes.len());
    if out.len() < total {
        return Err(TmError::LengthMismatch { what: "proof byte buffer", expected: total, got: out.len() });
    }
    out[0..4].copy_from_slice(&PROOF_MAGIC);
    out[4] = PROOF_FORMAT_VERSION;
    out[5] = kind as u8;
    out[6] = hash_id;
    out[7] = 0;
    out[8..16].copy_from_slice(&a.to_le_bytes());
    out[16..24].copy_from_slice(&b.to_le_bytes());
    out[24..28].copy_from_slice(&(hashes.len() as u32).to_le_bytes());
    for (i, hsh) in hashes.iter().enumerate() {
        out[PROOF_HEADER_LEN + HASH_LEN * i..PROOF_HEADER_LEN + HASH_LEN * (i + 1)].copy_from_slice(hsh);
    }
    Ok(total)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_le_bytes(a)
}

/// Parses a serialized proof, strictly: any deviation from the format is a
/// [`ProofError`], never a panic. The sizes and count are *not* checked against each
/// other here; [`ProofView::verify_inclusion`] / [`ProofView::verify_consistency`] do.
pub fn parse_proof(bytes: &[u8]) -> Result<ProofView<'_>, ProofError> {
    if bytes.len() < PROOF_HEADER_LEN {
        return Err(ProofError::Malformed("shorter than the 28-byte header"));
    }
    if bytes[0..4] != PROOF_MAGIC {
        return Err(ProofError::Malformed("bad magic (not a tokenmath proof)"));
    }
    if bytes[4] != PROOF_FORMAT_VERSION {
        return Err(ProofError::UnsupportedVersion(bytes[4]));
    }
    let kind = match bytes[5] {
        1 => ProofKind::Inclusion,
        2 => ProofKind::Consistency,
        _ => return Err(ProofError::Malformed("unknown proof kind")),
    };
    let hash_id = bytes[6];
    if bytes[7] != 0 {
        return Err(ProofError::Malformed("reserved byte is not zero"));
    }
    let a = le_u64(&bytes[8..16]);
    let b = le_u64(&bytes[16..24]);
    let mut c = [0u8; 4];
    c.copy_from_slice(&bytes[24..28]);
    let count = u32::from_le_bytes(c) as usize;
    if count > MAX_PROOF_HASHES {
        return Err(ProofError::Malformed("hash count exceeds the maximum proof length"));
    }
    let body = &bytes[PROOF_HEADER_LEN..];
    if body.len() != HASH_LEN * count {
        return Err(ProofError::Malformed("length does not match the hash count (truncated or trailing bytes)"));
    }
    let hashes: &[Digest] =
        bytemuck::try_cast_slice(body).map_err(|_| ProofError::Malformed("hash area is not whole hashes"))?;
    Ok(ProofView { kind, hash_id, a, b, hashes })
}

impl ProofView<'_> {
    fn expect(&self, kind: ProofKind, hash_id: u8) -> Result<(), ProofError> {
        if self.kind != kind {
            return Err(ProofError::WrongKind { expected: kind, got: self.kind });
        }
        if self.hash_id != hash_id {
            return Err(ProofError::HashMismatch { expected: hash_id, got: self.hash_id });
        }
        Ok(())
    }

    /// Verifies a parsed inclusion proof for `leaf_hash` at `index` against a signed head
    /// `(size, root)`. The index and size written in the proof must equal `index` and
    /// `size` (else [`ProofError::IndexOutOfRange`]/[`ProofError::Malformed`]).
    pub fn verify_inclusion<H: Hash32 + ?Sized>(
        &self,
        h: &H,
        index: u64,
        size: u64,
        leaf_hash: &Digest,
        root: &Digest,
    ) -> Result<(), ProofError> {
        self.expect(ProofKind::Inclusion, h.hash_id())?;
        if self.a != index {
            return Err(ProofError::Malformed("the proof is for another leaf index"));
        }
        if self.b != size {
            return Err(ProofError::Malformed("the proof is for another tree size than the signed head"));
        }
        verify_inclusion(h, index, size, leaf_hash, self.hashes, root)
    }

    /// Verifies a parsed consistency proof between two signed heads.
    pub fn verify_consistency<H: Hash32 + ?Sized>(
        &self,
        h: &H,
        size1: u64,
        size2: u64,
        root1: &Digest,
        root2: &Digest,
    ) -> Result<(), ProofError> {
        self.expect(ProofKind::Consistency, h.hash_id())?;
        if self.a != size1 || self.b != size2 {
            return Err(ProofError::Malformed("the proof is for other tree sizes than the signed heads"));
        }
        verify_consistency(h, size1, size2, self.hashes, root1, root2)
    }
}

#[cfg(feature = "alloc")]
mod owned {
    use alloc::vec::Vec;

    use super::*;

    /// [`inclusion_proof`] into a new `Vec` (feature `alloc`).
    pub fn inclusion_proof_vec<H: Hash32 + ?Sized>(
        h: &H,
        leaf_hashes: &[Digest],
        index: u64,
    ) -> Result<Vec<Digest>, TmError> {
        let mut out = [[0u8; 32]; MAX_PROOF_HASHES];
        let n = inclusion_proof(h, leaf_hashes, index, &mut out)?;
        Ok(out[..n].to_vec())
    }

    /// [`consistency_proof`] into a new `Vec` (feature `alloc`).
    pub fn consistency_proof_vec<H: Hash32 + ?Sized>(
        h: &H,
        leaf_hashes: &[Digest],
        size1: u64,
    ) -> Result<Vec<Digest>, TmError> {
        let mut out = [[0u8; 32]; MAX_PROOF_HASHES];
        let n = consistency_proof(h, leaf_hashes, size1, &mut out)?;
        Ok(out[..n].to_vec())
    }

    /// [`write_proof`] into a new `Vec` (feature `alloc`).
    pub fn proof_to_vec(kind: ProofKind, hash_id: u8, a: u64, b: u64, hashes: &[Digest]) -> Result<Vec<u8>, TmError> {
        let mut out = alloc::vec![0u8; proof_bytes_len(hashes.len())];
        write_proof(kind, hash_id, a, b, hashes, &mut out)?;
        Ok(out)
    }
}

#[cfg(feature = "alloc")]
pub use owned::{consistency_proof_vec, inclusion_proof_vec, proof_to_vec};
