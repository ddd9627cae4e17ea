//! CoIn-compatible Merkle tree — **insecure by design, for reproducing the paper only**.
//!
//! ```text
//! leaf_i = H(fp_bytes_i)                                 no prefix, no index, no salt
//! L      = 2^⌈log2 m⌉;  leaves m … L−1 = copies of leaf_{m−1}
//! node   = H(left ‖ right)                               no prefix
//! root   = top of the perfect tree; m = 1 → leaf_0; m = 0 → H(empty_constant)
//! ```
//!
//! # Why it is unsound
//!
//! * **The root does not commit to the count.** The trees of `m` leaves and of any
//!   `m' ∈ (m, 2^⌈log2 m⌉]` leaves whose extra leaves repeat the last one have the same root,
//!   and every extra index opens to a valid path (same bug class as CVE-2012-2459). A
//!   provider can bill up to almost `2m` tokens with the commitment of `m`.
//! * **No domain separation.** The 64-byte concatenation of two child hashes is a valid
//!   "fingerprint" whose leaf hash equals their parent, so an interior node can be presented
//!   as a leaf.
//!
//! `H` and the fingerprint encoding are parameters (CoIn does not publish them); the default
//! in the tests is BLAKE3 over `F32Canonical` bytes. Every function name ends in
//! `_insecure`. Use [`super::proof`] and [`super::tree`] for anything but reproduction.
//! (The spec asks for a cargo feature `coin-compat`; the module is always compiled here and
//! marked by its names instead.)

use super::hash::{Digest, Hash32};
use crate::TmError;

/// `H(fp_bytes)`: the CoIn leaf hash (no prefix).
pub fn leaf_hash_insecure<H: Hash32 + ?Sized>(h: &H, fp_bytes: &[u8]) -> Digest {
    h.hash(&[fp_bytes])
}

/// `H(l ‖ r)`: the CoIn node hash (no prefix).
pub fn node_hash_insecure<H: Hash32 + ?Sized>(h: &H, l: &Digest, r: &Digest) -> Digest {
    h.hash(&[l, r])
}

/// `⌈log2 m⌉` (0 for `m ≤ 1`): the depth of the padded tree and the path length.
pub fn depth_insecure(m: u64) -> u32 {
    if m <= 1 {
        0
    } else {
        64 - (m - 1).leading_zeros()
    }
}

/// Root of the perfect subtree of height `level` starting at padded position `lo`.
fn padded_root<H: Hash32 + ?Sized>(h: &H, leaves: &[Digest], lo: u64, level: u32) -> Digest {
    let m = leaves.len() as u64;
    if level == 0 {
        return leaves[lo.min(m - 1) as usize];
    }
    if lo >= m - 1 {
        // Entirely copies of the last leaf: a chain of self-pairs.
        let mut acc = leaves[(m - 1) as usize];
        for _ in 0..level {
            acc = node_hash_insecure(h, &acc, &acc);
        }
        return acc;
    }
    let half = 1u64 << (level - 1);
    let l = padded_root(h, leaves, lo, level - 1);
    let r = padded_root(h, leaves, lo + half, level - 1);
    node_hash_insecure(h, &l, &r)
}

/// The CoIn root of the leaf hashes `leaves` (padded by repeating the last one);
/// `H(empty_constant)` for no leaves.
pub fn root_insecure<H: Hash32 + ?Sized>(h: &H, leaves: &[Digest], empty_constant: &[u8]) -> Digest {
    if leaves.is_empty() {
        return h.hash(&[empty_constant]);
    }
    padded_root(h, leaves, 0, depth_insecure(leaves.len() as u64))
}

/// The authentication path of padded position `index` (sibling hashes bottom-up, length
/// [`depth_insecure`]`(m)`) into `out`; returns its length. `index` may point into the
/// padding (`m ≤ index < 2^⌈log2 m⌉`) — that is the flaw.
pub fn auth_path_insecure<H: Hash32 + ?Sized>(
    h: &H,
    leaves: &[Digest],
    index: u64,
    out: &mut [Digest],
) -> Result<usize, TmError> {
    let m = leaves.len() as u64;
    if m == 0 {
        return Err(TmError::InvalidArgument("coin compat: the tree is empty"));
    }
    let depth = depth_insecure(m);
    if depth < 64 && index >= 1u64 << depth {
        return Err(TmError::InvalidArgument("coin compat: index beyond the padded tree"));
    }
    if out.len() < depth as usize {
        return Err(TmError::LengthMismatch { what: "auth path buffer", expected: depth as usize, got: out.len() });
    }
    for level in 0..depth {
        let sibling = (index >> level) ^ 1;
        out[level as usize] = padded_root(h, leaves, sibling << level, level);
    }
    Ok(depth as usize)
}

/// CoIn path verification: `h = leaf; h = bit ℓ of index = 0 ? H(h ‖ p_ℓ) : H(p_ℓ ‖ h)`;
/// compares with `root`. Nothing binds the count.
pub fn verify_path_insecure<H: Hash32 + ?Sized>(
    h: &H,
    leaf: &Digest,
    index: u64,
    path: &[Digest],
    root: &Digest,
) -> bool {
    if path.len() < 64 && index >> path.len() != 0 {
        return false;
    }
    let mut acc = *leaf;
    for (level, p) in path.iter().enumerate() {
        acc = if level < 64 && (index >> level) & 1 == 0 {
            node_hash_insecure(h, &acc, p)
        } else {
            node_hash_insecure(h, p, &acc)
        };
    }
    super::hash::digest_eq(&acc, root)
}
