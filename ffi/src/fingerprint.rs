//! Token fingerprint commitments: leaf hashes, RFC 6962-shaped BLAKE3 Merkle roots (batch
//! and streaming), inclusion and consistency proofs. `tokenmath_core::fingerprint`
//! documents the tree, the leaf record and the security properties. The hash is unkeyed
//! BLAKE3 (`hash_id` 1).

use tokenmath_core::fingerprint::{self as fp, Blake3, Digest, FpKind, LeafRecord, StreamingTree};

use crate::status::*;
use crate::util::{guard, guard_or, input, Out, Res};

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
        write_digest(out, &fp::root(&Blake3, leaves))
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
        if (out as usize) % core::mem::align_of::<*mut tkm_fp_tree>() != 0 {
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
    guard_or(0, || fp::max_proof_len(n))
}

/// The exact number of hashes of the inclusion proof of leaf `index` in a tree of `size`
/// leaves, into `*out` (`TKM_STATUS_INDEX_OUT_OF_RANGE` if `index >= size`).
///
/// # Safety
/// `out` valid for one `size_t`.
#[no_mangle]
pub unsafe extern "C" fn tkm_fp_inclusion_proof_len(index: u64, size: u64, out: *mut usize) -> tkm_status {
    guard(|| {
        let len = fp::inclusion_proof_len(index, size)?;
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
        let len = fp::inclusion_proof(&Blake3, leaves, index, &mut proof.buf)?;
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
        Ok(fp::verify_inclusion(&Blake3, index, size, &leaf, p, &root)?)
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
        let len = fp::consistency_proof(&Blake3, leaves, size1, &mut proof.buf)?;
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
        Ok(fp::verify_consistency(&Blake3, size1, size2, p, &r1, &r2)?)
    })
}
