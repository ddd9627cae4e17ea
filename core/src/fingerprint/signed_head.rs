//! The signed tree head: the canonical bytes committing to `(n, root)` that a provider signs.
//!
//! Signing is outside the library; this module defines the bytes to sign and their digest
//! \[library choice\]:
//!
//! ```text
//! head = "tokenmath-sth" (13 ASCII bytes) ‖ u8 version = 1 ‖ u8 hash_id
//!        ‖ u64 n ‖ root (32 bytes) ‖ u32 ctx_len ‖ ctx            (integers little-endian)
//! head_digest = H(head)
//! ```
//!
//! `ctx` carries whatever the deployment binds to the commitment (request id, model id,
//! time, …). **Verifier rule:** the tree size used in every proof check comes from a signed
//! head, never from the prover's proof message, and the billed count must equal `n`.

use super::hash::{Digest, Hash32, HASH_LEN};
use crate::TmError;

/// The 13-byte tag that starts every head.
pub const HEAD_TAG: &[u8; 13] = b"tokenmath-sth";
/// The head format version.
pub const HEAD_VERSION: u8 = 1;
/// Bytes before the context: tag, version, hash id, `n`, root, `ctx_len`.
pub const HEAD_FIXED_LEN: usize = 13 + 1 + 1 + 8 + HASH_LEN + 4;

/// A parsed (or to-be-written) tree head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignedHead<'a> {
    /// `hash_id` of the tree hash (1 BLAKE3, 2 SHA-256, 3 keyed BLAKE3).
    pub hash_id: u8,
    /// Number of leaves committed.
    pub n: u64,
    /// Root of the tree of `n` leaves.
    pub root: Digest,
    /// Deployment context bound to the head.
    pub ctx: &'a [u8],
}

/// Byte length of a head with a context of `ctx_len` bytes.
pub fn signed_head_len(ctx_len: usize) -> usize {
    HEAD_FIXED_LEN + ctx_len
}

impl<'a> SignedHead<'a> {
    /// The encoded length ([`signed_head_len`]).
    pub fn encoded_len(&self) -> usize {
        signed_head_len(self.ctx.len())
    }

    /// Writes the canonical bytes to sign into `out`; returns the number written.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, TmError> {
        let ctx_len = u32::try_from(self.ctx.len()).map_err(|_| TmError::SizeOverflow { what: "head context" })?;
        let total = self.encoded_len();
        if out.len() < total {
            return Err(TmError::LengthMismatch { what: "head buffer", expected: total, got: out.len() });
        }
        out[..13].copy_from_slice(HEAD_TAG);
        out[13] = HEAD_VERSION;
        out[14] = self.hash_id;
        out[15..23].copy_from_slice(&self.n.to_le_bytes());
        out[23..55].copy_from_slice(&self.root);
        out[55..59].copy_from_slice(&ctx_len.to_le_bytes());
        out[59..total].copy_from_slice(self.ctx);
        Ok(total)
    }

    /// `H(head bytes)`, hashed without materialising the bytes.
    pub fn digest<H: Hash32 + ?Sized>(&self, h: &H) -> Result<Digest, TmError> {
        let ctx_len = u32::try_from(self.ctx.len()).map_err(|_| TmError::SizeOverflow { what: "head context" })?;
        Ok(h.hash(&[
            HEAD_TAG,
            &[HEAD_VERSION, self.hash_id],
            &self.n.to_le_bytes(),
            &self.root,
            &ctx_len.to_le_bytes(),
            self.ctx,
        ]))
    }

    /// Parses head bytes strictly (tag, version, exact length); never panics.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, TmError> {
        if bytes.len() < HEAD_FIXED_LEN {
            return Err(TmError::InvalidArgument("signed head: shorter than the fixed 59-byte part"));
        }
        if &bytes[..13] != HEAD_TAG {
            return Err(TmError::InvalidArgument("signed head: bad tag (not a tokenmath tree head)"));
        }
        if bytes[13] != HEAD_VERSION {
            return Err(TmError::InvalidArgument("signed head: unsupported version"));
        }
        let mut n = [0u8; 8];
        n.copy_from_slice(&bytes[15..23]);
        let mut root = [0u8; 32];
        root.copy_from_slice(&bytes[23..55]);
        let mut l = [0u8; 4];
        l.copy_from_slice(&bytes[55..59]);
        let ctx_len = u32::from_le_bytes(l) as usize;
        if bytes.len() - HEAD_FIXED_LEN != ctx_len {
            return Err(TmError::InvalidArgument("signed head: length does not match the context length"));
        }
        Ok(SignedHead { hash_id: bytes[14], n: u64::from_le_bytes(n), root, ctx: &bytes[HEAD_FIXED_LEN..] })
    }
}
