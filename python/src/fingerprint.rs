//! Token fingerprint commitments: leaf hashes (`tkm_fp_leaf_hash`), canonical float encodings
//! (`tkm_fp_encode`), Merkle roots (`tkm_fp_root`, the streaming `tkm_fp_tree`), inclusion and
//! consistency proofs with their verification, and signed tree heads. Hashes are Python
//! `bytes` of `TKM_FP_HASH_LEN` (32); a list of leaf hashes is passed as their concatenation
//! (the Python layer joins and splits). A byte string of the wrong length is
//! `TKM_STATUS_LENGTH_MISMATCH` before the C ABI is called (it would read past the end).

use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tokenmath::tkm_status::*;
use tokenmath::*;

use crate::error::{check, error, OrRaise};
use crate::tensor::{import, Kind};

const H: usize = TKM_FP_HASH_LEN;

/// Checks that `b` holds exactly `len` bytes.
fn exact(py: Python<'_>, b: &[u8], len: usize, name: &str, f: &str) -> PyResult<()> {
    if b.len() != len {
        let d = format!("`{name}` has {} bytes; expected {len}", b.len());
        return Err(error(py, TKM_STATUS_LENGTH_MISMATCH, f, Some(d)));
    }
    Ok(())
}

/// The number of 32-byte hashes in `b` (a whole number of them).
fn hashes(py: Python<'_>, b: &[u8], name: &str, f: &str) -> PyResult<usize> {
    if !b.len().is_multiple_of(H) {
        let d = format!("`{name}` has {} bytes, not a multiple of {H}", b.len());
        return Err(error(py, TKM_STATUS_LENGTH_MISMATCH, f, Some(d)));
    }
    Ok(b.len() / H)
}

#[pyfunction]
fn fp_leaf_hash<'py>(
    py: Python<'py>,
    index: u64,
    salt: &[u8],
    token_id: u32,
    kind: u32,
    fp: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    const F: &str = "tkm_fp_leaf_hash";
    exact(py, salt, TKM_FP_SALT_LEN, "salt", F)?;
    let mut out = [0u8; H];
    // SAFETY: `salt` holds 16 bytes, `fp` `fp.len()`, `out` 32.
    let st = unsafe { tkm_fp_leaf_hash(index, salt.as_ptr(), token_id, kind, fp.as_ptr(), fp.len(), out.as_mut_ptr()) };
    check(py, st, F)?;
    Ok(PyBytes::new(py, &out))
}

#[pyfunction]
fn fp_encode<'py>(py: Python<'py>, kind: u32, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let t = import(x, "x", None)?;
    let (xp, dim) = t.vector(Kind::F32).or_raise(py, "tkm_fp_encode")?;
    let mut len = 0usize;
    // SAFETY: `len` is a local.
    check(py, unsafe { tkm_fp_encoded_len(kind, dim, &mut len) }, "tkm_fp_encoded_len")?;
    let mut out = vec![0u8; len];
    // SAFETY: `x` validated for `dim` floats, `out` holds `len` bytes.
    let st = unsafe { tkm_fp_encode(kind, xp as *const f32, dim, out.as_mut_ptr(), len) };
    check(py, st, "tkm_fp_encode")?;
    Ok(PyBytes::new(py, &out))
}

#[pyfunction]
fn fp_root<'py>(py: Python<'py>, leaf_hashes: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    const F: &str = "tkm_fp_root";
    let n = hashes(py, leaf_hashes, "leaf_hashes", F)?;
    let mut out = [0u8; H];
    // SAFETY: `leaf_hashes` holds `32 n` bytes.
    check(py, unsafe { tkm_fp_root(leaf_hashes.as_ptr(), n, out.as_mut_ptr()) }, F)?;
    Ok(PyBytes::new(py, &out))
}

#[pyfunction]
fn fp_inclusion_proof<'py>(py: Python<'py>, leaf_hashes: &[u8], index: u64) -> PyResult<Bound<'py, PyBytes>> {
    const F: &str = "tkm_fp_inclusion_proof";
    let n = hashes(py, leaf_hashes, "leaf_hashes", F)?;
    let cap = tkm_fp_max_proof_len(n as u64);
    let mut out = vec![0u8; cap * H];
    let mut len = 0usize;
    // SAFETY: `out` holds `32 cap` bytes.
    let st = unsafe { tkm_fp_inclusion_proof(leaf_hashes.as_ptr(), n, index, out.as_mut_ptr(), cap, &mut len) };
    check(py, st, F)?;
    Ok(PyBytes::new(py, &out[..len * H]))
}

#[pyfunction]
fn fp_verify_inclusion(
    py: Python<'_>,
    index: u64,
    size: u64,
    leaf_hash: &[u8],
    proof: &[u8],
    root: &[u8],
) -> PyResult<()> {
    const F: &str = "tkm_fp_verify_inclusion";
    exact(py, leaf_hash, H, "leaf_hash", F)?;
    exact(py, root, H, "root", F)?;
    let k = hashes(py, proof, "proof", F)?;
    // SAFETY: lengths checked above.
    let st = unsafe { tkm_fp_verify_inclusion(index, size, leaf_hash.as_ptr(), proof.as_ptr(), k, root.as_ptr()) };
    check(py, st, F)
}

#[pyfunction]
fn fp_consistency_proof<'py>(py: Python<'py>, leaf_hashes: &[u8], size1: u64) -> PyResult<Bound<'py, PyBytes>> {
    const F: &str = "tkm_fp_consistency_proof";
    let n = hashes(py, leaf_hashes, "leaf_hashes", F)?;
    let cap = tkm_fp_max_proof_len(n as u64);
    let mut out = vec![0u8; cap * H];
    let mut len = 0usize;
    // SAFETY: `out` holds `32 cap` bytes.
    let st = unsafe { tkm_fp_consistency_proof(leaf_hashes.as_ptr(), n, size1, out.as_mut_ptr(), cap, &mut len) };
    check(py, st, F)?;
    Ok(PyBytes::new(py, &out[..len * H]))
}

#[pyfunction]
fn fp_verify_consistency(
    py: Python<'_>,
    size1: u64,
    size2: u64,
    root1: &[u8],
    root2: &[u8],
    proof: &[u8],
) -> PyResult<()> {
    const F: &str = "tkm_fp_verify_consistency";
    exact(py, root1, H, "root1", F)?;
    exact(py, root2, H, "root2", F)?;
    let k = hashes(py, proof, "proof", F)?;
    // SAFETY: lengths checked above.
    let st = unsafe { tkm_fp_verify_consistency(size1, size2, root1.as_ptr(), root2.as_ptr(), proof.as_ptr(), k) };
    check(py, st, F)
}

#[pyfunction]
fn fp_signed_head_encode<'py>(
    py: Python<'py>,
    hash_id: u32,
    n: u64,
    root: &[u8],
    ctx: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    const F: &str = "tkm_fp_signed_head_encode";
    exact(py, root, H, "root", F)?;
    let mut cap = 0usize;
    // SAFETY: `cap` is a local.
    check(py, unsafe { tkm_fp_signed_head_len(ctx.len(), &mut cap) }, "tkm_fp_signed_head_len")?;
    let mut out = vec![0u8; cap];
    let mut len = 0usize;
    // SAFETY: `root` 32 bytes, `ctx` `ctx.len()`, `out` `cap`.
    let st = unsafe {
        tkm_fp_signed_head_encode(hash_id, n, root.as_ptr(), ctx.as_ptr(), ctx.len(), out.as_mut_ptr(), cap, &mut len)
    };
    check(py, st, F)?;
    Ok(PyBytes::new(py, &out[..len]))
}

#[pyfunction]
fn fp_signed_head_digest<'py>(
    py: Python<'py>,
    hash_id: u32,
    n: u64,
    root: &[u8],
    ctx: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    const F: &str = "tkm_fp_signed_head_digest";
    exact(py, root, H, "root", F)?;
    let mut out = [0u8; H];
    // SAFETY: as in `fp_signed_head_encode`.
    let st = unsafe { tkm_fp_signed_head_digest(hash_id, n, root.as_ptr(), ctx.as_ptr(), ctx.len(), out.as_mut_ptr()) };
    check(py, st, F)?;
    Ok(PyBytes::new(py, &out))
}

/// `(hash_id, n, root, ctx)` of signed tree head bytes.
#[pyfunction]
fn fp_signed_head_parse<'py>(
    py: Python<'py>,
    bytes: &[u8],
) -> PyResult<(u32, u64, Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
    const F: &str = "tkm_fp_signed_head_parse";
    let mut h = tkm_fp_head::default();
    // SAFETY: `bytes` holds `len` bytes, `h` is a local.
    check(py, unsafe { tkm_fp_signed_head_parse(bytes.as_ptr(), bytes.len(), &mut h) }, F)?;
    let ctx = &bytes[h.ctx_offset..h.ctx_offset + h.ctx_len];
    Ok((h.hash_id, h.n, PyBytes::new(py, &h.root), PyBytes::new(py, ctx)))
}

/// The streaming tree handle.
struct Handle(*mut tkm_fp_tree);

// SAFETY: a `tkm_fp_tree` may move between threads (tokenmath.h, rule 7); the `Mutex` in
// `MerkleTree` gives one thread at a time.
unsafe impl Send for Handle {}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle came from `tkm_fp_tree_new` and is freed once, here.
        unsafe { tkm_fp_tree_free(self.0) }
    }
}

/// A streaming Merkle tree over leaf hashes (`tkm_fp_tree`: `O(log n)` memory).
#[pyclass(module = "tokenmath._native")]
struct MerkleTree(Mutex<Handle>);

impl MerkleTree {
    fn handle(&self) -> std::sync::MutexGuard<'_, Handle> {
        // A poisoned lock only means a panic elsewhere; the handle itself is intact.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[pymethods]
impl MerkleTree {
    #[new]
    fn new(py: Python<'_>) -> PyResult<MerkleTree> {
        let mut p = core::ptr::null_mut();
        // SAFETY: `p` is a local.
        check(py, unsafe { tkm_fp_tree_new(&mut p) }, "tkm_fp_tree_new")?;
        Ok(MerkleTree(Mutex::new(Handle(p))))
    }

    /// Appends leaf hashes (a concatenation of 32-byte hashes), in order; all or nothing.
    fn append(&self, py: Python<'_>, leaf_hashes: &[u8]) -> PyResult<()> {
        const F: &str = "tkm_fp_tree_append";
        let n = hashes(py, leaf_hashes, "leaf_hashes", F)?;
        let h = self.handle();
        // SAFETY: live handle; `leaf_hashes` holds `32 n` bytes.
        check(py, unsafe { tkm_fp_tree_append(h.0, leaf_hashes.as_ptr(), n) }, F)
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        let mut n = 0u64;
        let h = self.handle();
        // SAFETY: live handle, local output.
        check(py, unsafe { tkm_fp_tree_len(h.0, &mut n) }, "tkm_fp_tree_len")?;
        Ok(n as usize)
    }

    /// The root of the leaves appended so far (32 bytes).
    fn root<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let mut out = [0u8; H];
        let h = self.handle();
        // SAFETY: live handle, local output.
        check(py, unsafe { tkm_fp_tree_root(h.0, out.as_mut_ptr()) }, "tkm_fp_tree_root")?;
        Ok(PyBytes::new(py, &out))
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(fp_leaf_hash, m)?)?;
    m.add_function(wrap_pyfunction!(fp_encode, m)?)?;
    m.add_function(wrap_pyfunction!(fp_root, m)?)?;
    m.add_function(wrap_pyfunction!(fp_inclusion_proof, m)?)?;
    m.add_function(wrap_pyfunction!(fp_verify_inclusion, m)?)?;
    m.add_function(wrap_pyfunction!(fp_consistency_proof, m)?)?;
    m.add_function(wrap_pyfunction!(fp_verify_consistency, m)?)?;
    m.add_function(wrap_pyfunction!(fp_signed_head_encode, m)?)?;
    m.add_function(wrap_pyfunction!(fp_signed_head_digest, m)?)?;
    m.add_function(wrap_pyfunction!(fp_signed_head_parse, m)?)?;
    m.add_class::<MerkleTree>()?;
    for (name, v) in [
        ("FP_KIND_NONE", TKM_FP_KIND_NONE),
        ("FP_KIND_F32_CANONICAL", TKM_FP_KIND_F32_CANONICAL),
        ("FP_KIND_I8_UNIT", TKM_FP_KIND_I8_UNIT),
        ("FP_KIND_BF16", TKM_FP_KIND_BF16),
        ("FP_KIND_SIMHASH", TKM_FP_KIND_SIMHASH),
    ] {
        m.add(name, v)?;
    }
    m.add("FP_HASH_LEN", H)?;
    m.add("FP_SALT_LEN", TKM_FP_SALT_LEN)?;
    Ok(())
}
