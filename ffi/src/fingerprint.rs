//! Token fingerprint commitments: leaf hashes, RFC 6962-shaped BLAKE3 Merkle roots (batch
//! and streaming), inclusion and consistency proofs, the canonical fingerprint encodings,
//! SimHash signatures with guard bits, the signed tree head, and audit sampling.
//! `tokenmath_core::fingerprint` documents the tree, the leaf record and the security
//! properties. The hash is unkeyed BLAKE3 (`hash_id` 1).

use tokenmath_core::fingerprint::builder::StreamingTree;
use tokenmath_core::fingerprint::encoding::{self, FpKind, LeafRecord};
use tokenmath_core::fingerprint::hash::{Blake3, Digest};
use tokenmath_core::fingerprint::signed_head::{SignedHead, HEAD_FIXED_LEN};
use tokenmath_core::fingerprint::simhash::{self, Planes};
use tokenmath_core::fingerprint::{proof, sampling, tree};

use crate::status::*;
use crate::util::{guard, guard_or, input, opt_input, Out, Res};

/// Bytes of a hash (leaf hash, node hash, root).
pub const TKM_FP_HASH_LEN: usize = 32;
/// Bytes of a leaf salt.
pub const TKM_FP_SALT_LEN: usize = 16;

/// Leaf fingerprint kind: no fingerprint (token id only).
pub const TKM_FP_KIND_NONE: u32 = 0;
/// Leaf fingerprint kind: canonical f32 bytes.
pub const TKM_FP_KIND_F32_CANONICAL: u32 = 1;
/// Leaf fingerprint kind: L2-normalised i8 codes.
pub const TKM_FP_KIND_I8_UNIT: u32 = 2;
/// Leaf fingerprint kind: bf16 bytes.
pub const TKM_FP_KIND_BF16: u32 = 3;
/// Leaf fingerprint kind: SimHash signature and guard words.
pub const TKM_FP_KIND_SIMHASH: u32 = 4;

/// A streaming tree builder (opaque; `O(log n)` memory): create with `tkm_fp_tree_new`,
/// free with `tkm_fp_tree_free`. Not synchronised: one thread at a time (it may move
/// between threads).
pub struct tkm_fp_tree {
    inner: StreamingTree<Blake3>,
}

/// `n` hashes of 32 bytes each.
unsafe fn digests<'a>(p: *const u8, n: usize) -> Res<&'a [Digest]> {
    input(p as *const Digest, n)
}

unsafe fn digest(p: *const u8) -> Res<Digest> {
    Ok(digests(p, 1)?[0])
}

unsafe fn write_digest(out: *mut u8, d: &Digest) -> Res {
    let o = Out::<u8>::new(out, TKM_FP_HASH_LEN)?;
    core::ptr::copy_nonoverlapping(d.as_ptr(), out, TKM_FP_HASH_LEN);
    drop(o);
    Ok(())
}

unsafe fn write_len(out: *mut usize, v: usize) -> Res {
    let mut o = Out::<usize>::new(out, 1)?;
    o.buf[0] = v;
    o.commit();
    Ok(())
}

/// The leaf hash `H(0x00 || record)` of one committed token, the record being
/// `(version 1, kind, index, salt, token_id, fp_len, fp)` (see the core docs for the bytes).
/// `salt` is 16 bytes (all zero only when hiding is not needed), `kind` a
/// `TKM_FP_KIND_*`, `fp` the `fp_len` fingerprint bytes (NULL only when `fp_len == 0`);
/// `out` receives 32 bytes.
///
/// # Safety
/// `salt` valid for 16 bytes, `fp` for `fp_len` bytes, `out` for 32 bytes.
#[no_mangle]
pub unsafe extern "C" fn tkm_fp_leaf_hash(
    index: u64,
    salt: *const u8,
    token_id: u32,
    kind: u32,
    fp: *const u8,
    fp_len: usize,
    out: *mut u8,
) -> tkm_status {
    guard(|| {
        let mut s = [0u8; 16];
        s.copy_from_slice(input(salt, TKM_FP_SALT_LEN)?);
        let kind = u8::try_from(kind).ok().and_then(FpKind::from_code).ok_or(TKM_STATUS_INVALID_ARGUMENT)?;
        let rec = LeafRecord { index, salt: s, token_id, kind, fp: input(fp, fp_len)? };
        let h = rec.leaf_hash(&Blake3)?;
        write_digest(out, &h)
    })
}

/// The root (32 bytes into `out`) of the tree over `n` leaf hashes (`leaf_hashes` holds
/// `32 n` bytes); `n == 0` gives `BLAKE3("")`.
///
/// # Safety
/// `leaf_hashes` valid for `32 n` bytes, `out` for 32 bytes.
#[no_mangle]
pub unsafe extern "C" fn tkm_fp_root(leaf_hashes: *const u8, n: usize, out: *mut u8) -> tkm_status {
    guard(|| {
        let leaves = digests(leaf_hashes, n)?;
        write_digest(out, &tree::root(&Blake3, leaves))
    })
}

/// Creates an empty streaming tree and stores its handle in `*out` (ownership passes to the
/// caller: free it with `tkm_fp_tree_free`).
///
/// # Safety
/// `out` valid for writing one pointer.
#[no_mangle]
pub unsafe extern "C" fn tkm_fp_tree_new(out: *mut *mut tkm_fp_tree) -> tkm_status {
    guard(|| {
        if out.is_null() {
            return Err(TKM_STATUS_NULL_POINTER);
        }
        if !(out as usize).is_multiple_of(core::mem::align_of::<*mut tkm_fp_tree>()) {
            return Err(TKM_STATUS_MISALIGNED);
        }
        let tree = Box::new(tkm_fp_tree { inner: StreamingTree::new(Blake3) });
        out.write(Box::into_raw(tree));
        Ok(())
    })
}

/// Frees a tree made by `tkm_fp_tree_new`. NULL is a no-op. The handle must not be used
/// afterwards.
///
/// # Safety
/// `tree` is NULL or a live handle from `tkm_fp_tree_new`, not freed before.
#[no_mangle]
pub unsafe extern "C" fn tkm_fp_tree_free(tree: *mut tkm_fp_tree) {
    guard_or((), || {
        if !tree.is_null() {
            drop(Box::from_raw(tree));
        }
    })
}

/// Appends `n` leaf hashes (`32 n` bytes) in order. All or nothing: if the tree would exceed
/// `UINT64_MAX` leaves, nothing is appended (`TKM_STATUS_SIZE_OVERFLOW`).
///
/// # Safety
/// `tree` a live handle, `leaf_hashes` valid for `32 n` bytes.
#[no_mangle]
pub unsafe extern "C" fn tkm_fp_tree_append(tree: *mut tkm_fp_tree, leaf_hashes: *const u8, n: usize) -> tkm_status {
    guard(|| {
        let t = tree.as_mut().ok_or(TKM_STATUS_NULL_POINTER)?;
        let leaves = digests(leaf_hashes, n)?;
        if u64::try_from(n).ok().and_then(|n| t.inner.len().checked_add(n)).is_none() {
            return Err(TKM_STATUS_SIZE_OVERFLOW);
        }
        for h in leaves {
            t.inner.append(*h)?;
        }
        Ok(())
    })
}

/// The number of leaves appended so far, into `*out`.
///
/// # Safety
/// `tree` a live handle, `out` valid for one `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn tkm_fp_tree_len(tree: *const tkm_fp_tree, out: *mut u64) -> tkm_status {
    guard(|| {
        let t = tree.as_ref().ok_or(TKM_STATUS_NULL_POINTER)?;
        let mut o = Out::<u64>::new(out, 1)?;
        o.buf[0] = t.inner.len();
        o.commit();
        Ok(())
    })
}

/// The root of the leaves appended so far (32 bytes into `out`), equal to `tkm_fp_root`
/// over the same leaves.
///
/// # Safety
/// `tree` a live handle, `out` valid for 32 bytes.
#[no_mangle]
pub unsafe extern "C" fn tkm_fp_tree_root(tree: *const tkm_fp_tree, out: *mut u8) -> tkm_status {
    guard(|| {
        let t = tree.as_ref().ok_or(TKM_STATUS_NULL_POINTER)?;
        write_digest(out, &t.inner.root())
    })
}

/// An upper bound on every proof length (in hashes) for trees of at most `n` leaves: size
/// proof buffers with it.
#[no_mangle]
pub extern "C" fn tkm_fp_max_proof_len(n: u64) -> usize {
    guard_or(0, || proof::max_proof_len(n))
}

/// The exact number of hashes of the inclusion proof of leaf `index` in a tree of `size`
/// leaves, into `*out` (`TKM_STATUS_INDEX_OUT_OF_RANGE` if `index >= size`).
///
/// # Safety
/// `out` valid for one `size_t`.
#[no_mangle]
pub unsafe extern "C" fn tkm_fp_inclusion_proof_len(index: u64, size: u64, out: *mut usize) -> tkm_status {
    guard(|| {
        let len = proof::inclusion_proof_len(index, size)?;
        write_len(out, len)
    })
}

/// Writes the inclusion proof of leaf `index` in the tree over `n` leaf hashes into `out`
/// (capacity `out_cap` hashes, `32 out_cap` bytes; `TKM_STATUS_LENGTH_MISMATCH` if too
/// small) and its length in hashes into `*out_len`.
///
/// # Safety
/// `leaf_hashes` valid for `32 n` bytes, `out` for `32 out_cap` bytes, `out_len` for one
/// `size_t`.
#[no_mangle]
pub unsafe extern "C" fn tkm_fp_inclusion_proof(
    leaf_hashes: *const u8,
    n: usize,
    index: u64,
    out: *mut u8,
    out_cap: usize,
    out_len: *mut usize,
) -> tkm_status {
    guard(|| {
        let leaves = digests(leaf_hashes, n)?;
        if index >= n as u64 {
            return Err(TKM_STATUS_INDEX_OUT_OF_RANGE);
        }
        let mut proof = Out::<Digest>::new(out as *mut Digest, out_cap)?;
        Out::<usize>::new(out_len, 1)?;
        let len = proof::inclusion_proof(&Blake3, leaves, index, &mut proof.buf)?;
        proof.buf.truncate(len);
        proof.commit();
        write_len(out_len, len)
    })
}

/// Verifies that `leaf_hash` (32 bytes) is leaf `index` of the tree of `size` leaves with
/// root `root`, given the proof (`proof_len` hashes). `TKM_STATUS_OK` = verified;
/// `TKM_STATUS_PROOF_MISMATCH` (wrong leaf, index, size or a tampered hash),
/// `_PROOF_LENGTH`, `_INDEX_OUT_OF_RANGE` = rejected. `size` must come from a signed head,
/// never from the prover: an inclusion proof alone does not bind the tree size.
///
/// # Safety
/// `leaf_hash` and `root` valid for 32 bytes, `proof` for `32 proof_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn tkm_fp_verify_inclusion(
    index: u64,
    size: u64,
    leaf_hash: *const u8,
    proof: *const u8,
    proof_len: usize,
    root: *const u8,
) -> tkm_status {
    guard(|| {
        let leaf = digest(leaf_hash)?;
        let root = digest(root)?;
        let p = digests(proof, proof_len)?;
        Ok(proof::verify_inclusion(&Blake3, index, size, &leaf, p, &root)?)
    })
}

/// Writes the consistency proof from the tree of the first `size1` leaves to the tree over
/// all `n` leaf hashes into `out` (capacity `out_cap` hashes) and its length into
/// `*out_len`. Needs `0 < size1 <= n` (`TKM_STATUS_INVALID_ARGUMENT`).
///
/// # Safety
/// As `tkm_fp_inclusion_proof`.
#[no_mangle]
pub unsafe extern "C" fn tkm_fp_consistency_proof(
    leaf_hashes: *const u8,
    n: usize,
    size1: u64,
    out: *mut u8,
    out_cap: usize,
    out_len: *mut usize,
) -> tkm_status {
    guard(|| {
        let leaves = digests(leaf_hashes, n)?;
        let mut proof = Out::<Digest>::new(out as *mut Digest, out_cap)?;
        Out::<usize>::new(out_len, 1)?;
        let len = proof::consistency_proof(&Blake3, leaves, size1, &mut proof.buf)?;
        proof.buf.truncate(len);
        proof.commit();
        write_len(out_len, len)
    })
}

/// Verifies that the tree of `size2` leaves with root `root2` extends the tree of `size1`
/// leaves with root `root1` (append-only), given the proof (`proof_len` hashes). Statuses
/// as `tkm_fp_verify_inclusion`; `size1 == 0` or `size1 > size2` is
/// `TKM_STATUS_INVALID_ARGUMENT`.
///
/// # Safety
/// `root1`, `root2` valid for 32 bytes, `proof` for `32 proof_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn tkm_fp_verify_consistency(
    size1: u64,
    size2: u64,
    root1: *const u8,
    root2: *const u8,
    proof: *const u8,
    proof_len: usize,
) -> tkm_status {
    guard(|| {
        let r1 = digest(root1)?;
        let r2 = digest(root2)?;
        let p = digests(proof, proof_len)?;
        Ok(proof::verify_consistency(&Blake3, size1, size2, p, &r1, &r2)?)
    })
}

/// The float fingerprint kind of a `TKM_FP_KIND_*` code (F32_CANONICAL, I8_UNIT, BF16).
fn float_kind(kind: u32) -> Res<FpKind> {
    u8::try_from(kind)
        .ok()
        .and_then(FpKind::from_code)
        .filter(|k| k.bytes_per_dim().is_some())
        .ok_or(TKM_STATUS_INVALID_ARGUMENT)
}

/// The byte length of the float encoding `kind` (`TKM_FP_KIND_F32_CANONICAL` 4,
/// `_I8_UNIT` 1, `_BF16` 2 bytes per dimension) of a `dim`-dimensional vector, into `*out`.
/// Other kinds are `TKM_STATUS_INVALID_ARGUMENT`.
///
/// # Safety
/// `out` valid for one `size_t`.
#[no_mangle]
pub unsafe extern "C" fn tkm_fp_encoded_len(kind: u32, dim: usize, out: *mut usize) -> tkm_status {
    guard(|| {
        let k = float_kind(kind)?;
        write_len(out, encoding::encoded_len(k, dim)?)
    })
}

/// The canonical fingerprint bytes of the `dim` floats `x` under the float encoding `kind`
/// (`TKM_FP_KIND_F32_CANONICAL`: `-0` and subnormals to `+0`, little-endian binary32;
/// `_I8_UNIT`: `round_half_even(127 x / ||x||)` as int8, all 0 for a zero vector; `_BF16`:
/// round-to-nearest-even, little-endian) into `out`, whose length `out_len` must be exactly
/// `tkm_fp_encoded_len` (`TKM_STATUS_LENGTH_MISMATCH`). Pass the bytes as the `fp` of
/// `tkm_fp_leaf_hash`. Errors: `TKM_STATUS_NON_FINITE` for a NaN or infinite input (or a bf16
/// overflow), `TKM_STATUS_INVALID_ARGUMENT` for another kind.
///
/// # Safety
/// `x` valid for `dim` floats, `out` for `out_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn tkm_fp_encode(
    kind: u32,
    x: *const f32,
    dim: usize,
    out: *mut u8,
    out_len: usize,
) -> tkm_status {
    guard(|| {
        let k = float_kind(kind)?;
        let x = input(x, dim)?;
        let mut dst = Out::new(out, out_len)?;
        encoding::encode(k, x, &mut dst.buf)?;
        dst.commit();
        Ok(())
    })
}

/// The CoIn layout `block || token` encoded with the float encoding `kind` as one vector of
/// `block_dim + token_dim` dimensions (for `_I8_UNIT` the norm is over the concatenation)
/// into `out` (`out_len` must be `tkm_fp_encoded_len(kind, block_dim + token_dim)`).
/// Errors as `tkm_fp_encode`.
///
/// # Safety
/// `block` valid for `block_dim` floats, `token` for `token_dim`, `out` for `out_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn tkm_fp_encode_coin_layout(
    kind: u32,
    block: *const f32,
    block_dim: usize,
    token: *const f32,
    token_dim: usize,
    out: *mut u8,
    out_len: usize,
) -> tkm_status {
    guard(|| {
        let k = float_kind(kind)?;
        let (b, t) = (input(block, block_dim)?, input(token, token_dim)?);
        let mut dst = Out::new(out, out_len)?;
        encoding::encode_coin_layout(k, b, t, &mut dst.buf)?;
        dst.commit();
        Ok(())
    })
}

/// Bytes of a signed tree head before its context: `"tokenmath-sth"` (13), version (1),
/// `hash_id` (1), `n` (8, little-endian), root (32), `ctx_len` (4, little-endian).
pub const TKM_FP_HEAD_FIXED_LEN: usize = 59;

/// A parsed signed tree head (`tkm_fp_signed_head_parse`). A fixed-layout output struct.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct tkm_fp_head {
    /// Number of leaves committed.
    pub n: u64,
    /// Offset of the context in the parsed bytes (always `TKM_FP_HEAD_FIXED_LEN`).
    pub ctx_offset: usize,
    /// Bytes of the context.
    pub ctx_len: usize,
    /// `hash_id` of the tree hash (1 BLAKE3, 2 SHA-256, 3 keyed BLAKE3).
    pub hash_id: u32,
    /// Root of the tree of `n` leaves.
    pub root: [u8; 32],
}

/// The head of `(hash_id, n, root, ctx)` (checked: `hash_id <= 255`, `ctx_len <= UINT32_MAX`).
unsafe fn head<'a>(hash_id: u32, n: u64, root: *const u8, ctx: *const u8, ctx_len: usize) -> Res<SignedHead<'a>> {
    let hash_id = u8::try_from(hash_id).map_err(|_| TKM_STATUS_INVALID_ARGUMENT)?;
    let root = digest(root)?;
    let ctx = input(ctx, ctx_len)?;
    if u32::try_from(ctx_len).is_err() {
        return Err(TKM_STATUS_SIZE_OVERFLOW);
    }
    Ok(SignedHead { hash_id, n, root, ctx })
}

/// The byte length `TKM_FP_HEAD_FIXED_LEN + ctx_len` of a signed tree head with a context of
/// `ctx_len` bytes, into `*out` (`TKM_STATUS_SIZE_OVERFLOW` for `ctx_len > UINT32_MAX`).
///
/// # Safety
/// `out` valid for one `size_t`.
#[no_mangle]
pub unsafe extern "C" fn tkm_fp_signed_head_len(ctx_len: usize, out: *mut usize) -> tkm_status {
    guard(|| {
        if u32::try_from(ctx_len).is_err() {
            return Err(TKM_STATUS_SIZE_OVERFLOW);
        }
        write_len(out, TKM_FP_HEAD_FIXED_LEN + ctx_len)
    })
}

/// Writes the canonical bytes of the signed tree head committing to `(n, root)` (the bytes a
/// provider signs; signing is outside the library) into `out` (capacity `out_cap` bytes,
/// `TKM_STATUS_LENGTH_MISMATCH` if too small) and their length into `*out_len`. `hash_id`
/// is the tree hash (1 for this library's trees, at most 255), `root` 32 bytes, `ctx` the
/// deployment context (`ctx_len` bytes, NULL only when 0). Verifiers take the tree size of
/// every proof check from a signed head, never from the prover.
///
/// # Safety
/// `root` valid for 32 bytes, `ctx` for `ctx_len`, `out` for `out_cap`, `out_len` for one
/// `size_t`.
#[no_mangle]
pub unsafe extern "C" fn tkm_fp_signed_head_encode(
    hash_id: u32,
    n: u64,
    root: *const u8,
    ctx: *const u8,
    ctx_len: usize,
    out: *mut u8,
    out_cap: usize,
    out_len: *mut usize,
) -> tkm_status {
    guard(|| {
        let h = head(hash_id, n, root, ctx, ctx_len)?;
        let mut dst = Out::new(out, out_cap)?;
        Out::<usize>::new(out_len, 1)?;
        let len = h.encode(&mut dst.buf)?;
        dst.buf.truncate(len);
        dst.commit();
        write_len(out_len, len)
    })
}

/// The BLAKE3 digest of the signed tree head of `tkm_fp_signed_head_encode` (32 bytes into
/// `out`), computed without materialising the bytes.
///
/// # Safety
/// `root` valid for 32 bytes, `ctx` for `ctx_len`, `out` for 32 bytes.
#[no_mangle]
pub unsafe extern "C" fn tkm_fp_signed_head_digest(
    hash_id: u32,
    n: u64,
    root: *const u8,
    ctx: *const u8,
    ctx_len: usize,
    out: *mut u8,
) -> tkm_status {
    guard(|| {
        let h = head(hash_id, n, root, ctx, ctx_len)?;
        write_digest(out, &h.digest(&Blake3)?)
    })
}

/// Parses signed tree head bytes strictly (tag, version, exact length) into `*out`; the
/// context is `bytes + out->ctx_offset`, `out->ctx_len` bytes. Malformed bytes are
/// `TKM_STATUS_INVALID_ARGUMENT`.
///
/// # Safety
/// `bytes` valid for `len` bytes, `out` for one `tkm_fp_head`.
#[no_mangle]
pub unsafe extern "C" fn tkm_fp_signed_head_parse(bytes: *const u8, len: usize, out: *mut tkm_fp_head) -> tkm_status {
    guard(|| {
        let b = input(bytes, len)?;
        let mut dst = Out::<tkm_fp_head>::new(out, 1)?;
        let h = SignedHead::parse(b)?;
        dst.buf[0] = tkm_fp_head {
            n: h.n,
            ctx_offset: HEAD_FIXED_LEN,
            ctx_len: h.ctx.len(),
            hash_id: u32::from(h.hash_id),
            root: h.root,
        };
        dst.commit();
        Ok(())
    })
}

/// SimHash planes with `+-1` entries, one XOF bit each (bit-exact everywhere; the default).
pub const TKM_FP_PLANES_RADEMACHER: u32 = 0;
/// SimHash planes with standard normal entries (Box-Muller with the pure-Rust libm).
pub const TKM_FP_PLANES_GAUSSIAN: u32 = 1;

/// `words` 64-bit words as a slice (NULL only for 0).
unsafe fn words_in<'a>(p: *const u64, words: usize) -> Res<&'a [u64]> {
    input(p, words)
}

/// The SimHash signature of the `dim` floats `x` with `k = 64 words` hyperplanes drawn from
/// the 32-byte `seed` (`planes` is `TKM_FP_PLANES_*`), into `sig` (`words` words; bit `j`
/// is bit `j % 64` of `sig[j / 64]`), and its guard bits at threshold `tau` (finite, >= 0;
/// the library default 0.005) into `guard_bits` (`words` words): a bit is guarded when its
/// normalised margin is below `tau`. Errors: `TKM_STATUS_INVALID_ARGUMENT` for `dim == 0`,
/// `words == 0`, a bad `tau` or `planes`; `TKM_STATUS_NON_FINITE` for a non-finite input.
///
/// # Safety
/// `x` valid for `dim` floats, `seed` for 32 bytes, `sig` and `guard_bits` for `words` words.
#[no_mangle]
pub unsafe extern "C" fn tkm_fp_simhash(
    x: *const f32,
    dim: usize,
    seed: *const u8,
    planes: u32,
    tau: f64,
    sig: *mut u64,
    guard_bits: *mut u64,
    words: usize,
) -> tkm_status {
    guard(|| {
        let planes = match planes {
            TKM_FP_PLANES_RADEMACHER => Planes::Rademacher,
            TKM_FP_PLANES_GAUSSIAN => Planes::Gaussian,
            _ => return Err(TKM_STATUS_INVALID_ARGUMENT),
        };
        let x = input(x, dim)?;
        let seed = digest(seed)?;
        let mut s = Out::new(sig, words)?;
        let mut g = Out::new(guard_bits, words)?;
        simhash::simhash(x, &seed, planes, tau, &mut s.buf, &mut g.buf)?;
        s.commit();
        g.commit();
        Ok(())
    })
}

/// The Hamming distance `popcount((a ^ b) & ~guard_bits)` of two `words`-word signatures on the
/// bits not guarded (`guard_bits` NULL = no guard: the plain Hamming distance), into `*out`.
///
/// # Safety
/// `a`, `b` (and `guard_bits` unless NULL) valid for `words` words, `out` for one `uint32_t`.
#[no_mangle]
pub unsafe extern "C" fn tkm_fp_masked_hamming(
    a: *const u64,
    b: *const u64,
    guard_bits: *const u64,
    words: usize,
    out: *mut u32,
) -> tkm_status {
    guard(|| {
        let (a, b) = (words_in(a, words)?, words_in(b, words)?);
        let g = opt_input(guard_bits, words)?;
        let mut dst = Out::<u32>::new(out, 1)?;
        dst.buf[0] = match g {
            Some(g) => simhash::masked_hamming(a, b, g)?,
            None => simhash::hamming(a, b)?,
        };
        dst.commit();
        Ok(())
    })
}

/// Acceptance of a committed SimHash `(sig, guard_bits)` against the verifier's recomputed
/// `sig_verifier` (`words` words each): `*accepted = 1` when at most `g_max` bits are guarded
/// and at most `t` unguarded bits differ, else 0 (library defaults `t = 0`, `g_max = 64`).
///
/// # Safety
/// `sig`, `guard_bits`, `sig_verifier` valid for `words` words, `accepted` for one `uint32_t`.
#[no_mangle]
pub unsafe extern "C" fn tkm_fp_simhash_accept(
    sig: *const u64,
    guard_bits: *const u64,
    sig_verifier: *const u64,
    words: usize,
    t: u32,
    g_max: u32,
    accepted: *mut u32,
) -> tkm_status {
    guard(|| {
        let (s, g, v) = (words_in(sig, words)?, words_in(guard_bits, words)?, words_in(sig_verifier, words)?);
        let mut dst = Out::<u32>::new(accepted, 1)?;
        dst.buf[0] = u32::from(simhash::simhash_accept(s, g, v, t, g_max)?);
        dst.commit();
        Ok(())
    })
}

/// The `TKM_FP_KIND_SIMHASH` fingerprint bytes of `(sig, guard_bits)` (`words` words each): the
/// signature words then the guard words, little-endian, into `out` (`out_len` must be
/// `16 words`, `TKM_STATUS_LENGTH_MISMATCH`).
///
/// # Safety
/// `sig`, `guard_bits` valid for `words` words, `out` for `out_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn tkm_fp_encode_simhash(
    sig: *const u64,
    guard_bits: *const u64,
    words: usize,
    out: *mut u8,
    out_len: usize,
) -> tkm_status {
    guard(|| {
        let (s, g) = (words_in(sig, words)?, words_in(guard_bits, words)?);
        let mut dst = Out::new(out, out_len)?;
        simhash::encode_simhash(s, g, &mut dst.buf)?;
        dst.commit();
        Ok(())
    })
}

/// The inverse of `tkm_fp_encode_simhash`: `len` must be `16 words`
/// (`TKM_STATUS_LENGTH_MISMATCH`).
///
/// # Safety
/// `bytes` valid for `len` bytes, `sig` and `guard_bits` for `words` words.
#[no_mangle]
pub unsafe extern "C" fn tkm_fp_decode_simhash(
    bytes: *const u8,
    len: usize,
    sig: *mut u64,
    guard_bits: *mut u64,
    words: usize,
) -> tkm_status {
    guard(|| {
        let b = input(bytes, len)?;
        let mut s = Out::new(sig, words)?;
        let mut g = Out::new(guard_bits, words)?;
        simhash::decode_simhash(b, &mut s.buf, &mut g.buf)?;
        s.commit();
        g.commit();
        Ok(())
    })
}

/// The exact probability that auditing `s` distinct leaves sampled uniformly from `m` (`s`
/// above `m` counts as `m`) catches at least one of `forged` forged leaves, each caught with
/// probability `q` when sampled (hypergeometric), into `*out`. Errors:
/// `TKM_STATUS_INVALID_ARGUMENT` for `q` outside `[0, 1]` or `forged > m`.
///
/// # Safety
/// `out` valid for one `double`.
#[no_mangle]
pub unsafe extern "C" fn tkm_fp_detect_prob(m: u64, forged: u64, s: u64, q: f64, out: *mut f64) -> tkm_status {
    guard(|| {
        let mut dst = Out::<f64>::new(out, 1)?;
        dst.buf[0] = sampling::detect_prob_hypergeom(m, forged, s, q)?;
        dst.commit();
        Ok(())
    })
}

/// The binomial lower bound `1 - (1 - q f)^s` of the detection probability for a forged
/// fraction `forged_frac` (in `[0, 1]`), into `*out`.
///
/// # Safety
/// `out` valid for one `double`.
#[no_mangle]
pub unsafe extern "C" fn tkm_fp_detect_prob_bound(forged_frac: f64, s: u64, q: f64, out: *mut f64) -> tkm_status {
    guard(|| {
        let mut dst = Out::<f64>::new(out, 1)?;
        dst.buf[0] = sampling::detect_prob_bound(forged_frac, s, q)?;
        dst.commit();
        Ok(())
    })
}

/// The number of audited leaves for detection with confidence `1 - delta` under the binomial
/// bound, `ceil(ln delta / ln(1 - q f))` (0 for `delta >= 1`, 1 for `q f = 1`), into `*out`.
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` for `q` or `forged_frac` outside `[0, 1]`, `delta`
/// not finite and > 0, or `q f = 0`; `TKM_STATUS_SIZE_OVERFLOW` beyond `UINT64_MAX`.
///
/// # Safety
/// `out` valid for one `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn tkm_fp_samples_for_confidence(
    forged_frac: f64,
    q: f64,
    delta: f64,
    out: *mut u64,
) -> tkm_status {
    guard(|| {
        let mut dst = Out::<u64>::new(out, 1)?;
        dst.buf[0] = sampling::samples_for_confidence(forged_frac, q, delta)?;
        dst.commit();
        Ok(())
    })
}
