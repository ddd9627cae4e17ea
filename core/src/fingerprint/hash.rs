//! The hash functions behind the token tree and their domain separation.
//!
//! ```text
//! leaf_hash(bytes) = H(0x00 ‖ bytes)
//! node_hash(l, r)  = H(0x01 ‖ l ‖ r)
//! empty_root       = H("")
//! ```
//!
//! [`Hash32`] abstracts `H` so the same tree code runs with BLAKE3 in production
//! ([`Blake3`], optionally keyed: [`Blake3Keyed`]) and with SHA-256 for the public RFC 6962
//! test vectors (the SHA-256 implementation lives in the tests, where `sha2` is a
//! dev-dependency).

/// A 32-byte hash value (leaf hash, node hash, root).
pub type Digest = [u8; 32];

/// Length of a [`Digest`] in bytes.
pub const HASH_LEN: usize = 32;

/// Prefix byte of a leaf hash (RFC 6962 §2.1).
pub const LEAF_PREFIX: u8 = 0x00;
/// Prefix byte of an interior-node hash (RFC 6962 §2.1).
pub const NODE_PREFIX: u8 = 0x01;

/// `hash_id` of plain BLAKE3 in signed heads and proof files.
pub const HASH_ID_BLAKE3: u8 = 1;
/// `hash_id` of SHA-256 (the RFC 6962 vectors).
pub const HASH_ID_SHA256: u8 = 2;
/// `hash_id` of keyed BLAKE3 ([`Blake3Keyed`]) \[library choice\].
pub const HASH_ID_BLAKE3_KEYED: u8 = 3;

/// The `derive_key` context of the keyed tree hash.
pub const KEYED_TREE_CONTEXT: &str = "tokenmath v1 token-tree key";

/// A 32-byte hash function over the concatenation of byte strings.
pub trait Hash32 {
    /// The identifier written into signed heads and proof files ([`HASH_ID_BLAKE3`], …).
    fn hash_id(&self) -> u8;
    /// `H(parts[0] ‖ parts[1] ‖ …)`.
    fn hash(&self, parts: &[&[u8]]) -> Digest;
}

/// Unkeyed BLAKE3, 32-byte output (the library default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Blake3;

impl Hash32 for Blake3 {
    fn hash_id(&self) -> u8 {
        HASH_ID_BLAKE3
    }
    #[inline]
    fn hash(&self, parts: &[&[u8]]) -> Digest {
        let mut h = blake3::Hasher::new();
        for p in parts {
            h.update(p);
        }
        h.finalize().into()
    }
}

/// Keyed BLAKE3: every leaf, node and empty-tree hash is `blake3::keyed_hash(key, ·)` with
/// `key = blake3::derive_key("tokenmath v1 token-tree key", context)` \[library choice\].
///
/// Binds a tree to a deployment or session: a tree built under one context never verifies
/// under another. The RFC 6962 / §8 vectors apply to the unkeyed [`Blake3`] only.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Blake3Keyed {
    key: [u8; 32],
}

impl core::fmt::Debug for Blake3Keyed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Blake3Keyed { key: <redacted> }")
    }
}

impl Blake3Keyed {
    /// The keyed hash for `context` (any bytes: a deployment name, a session id, …).
    pub fn new(context: &[u8]) -> Self {
        Blake3Keyed { key: blake3::derive_key(KEYED_TREE_CONTEXT, context) }
    }
    /// A keyed hash with an explicit 32-byte key (e.g. to check BLAKE3's `keyed_hash`
    /// vectors).
    pub fn from_key(key: [u8; 32]) -> Self {
        Blake3Keyed { key }
    }
    /// The derived 32-byte key.
    pub fn key(&self) -> &[u8; 32] {
        &self.key
    }
}

impl Hash32 for Blake3Keyed {
    fn hash_id(&self) -> u8 {
        HASH_ID_BLAKE3_KEYED
    }
    #[inline]
    fn hash(&self, parts: &[&[u8]]) -> Digest {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        for p in parts {
            h.update(p);
        }
        h.finalize().into()
    }
}

/// `H(0x00 ‖ leaf_bytes)`.
#[inline]
pub fn leaf_hash<H: Hash32 + ?Sized>(h: &H, leaf_bytes: &[u8]) -> Digest {
    h.hash(&[&[LEAF_PREFIX], leaf_bytes])
}

/// `H(0x01 ‖ l ‖ r)`.
#[inline]
pub fn node_hash<H: Hash32 + ?Sized>(h: &H, l: &Digest, r: &Digest) -> Digest {
    h.hash(&[&[NODE_PREFIX], l, r])
}

/// The root of the empty tree, `H("")`.
#[inline]
pub fn empty_root<H: Hash32 + ?Sized>(h: &H) -> Digest {
    h.hash(&[])
}

/// Compares two digests without an early exit (the comparison time does not reveal the
/// position of the first differing byte).
#[inline]
pub fn digest_eq(a: &Digest, b: &Digest) -> bool {
    let mut diff = 0u8;
    for i in 0..HASH_LEN {
        diff |= a[i] ^ b[i];
    }
    diff == 0
}
