//! Merkle proofs through the C ABI: arbitrary proof bytes, indices and sizes are rejected
//! with a typed status (never a panic), and every proof the library generates verifies.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tokenmath::*;

#[derive(Arbitrary, Debug)]
struct Case {
    index: u64,
    size: u64,
    leaf: [u8; 32],
    root: [u8; 32],
    proof: Vec<u8>,
    leaves: Vec<[u8; 32]>,
    pick: u16,
}

fn rejected(s: tkm_status) -> bool {
    matches!(
        s,
        TKM_STATUS_PROOF_MISMATCH
            | TKM_STATUS_PROOF_LENGTH
            | TKM_STATUS_INDEX_OUT_OF_RANGE
            | TKM_STATUS_INVALID_ARGUMENT
    )
}

fuzz_target!(|c: Case| {
    let hashes = c.proof.len() / 32;
    let s =
        unsafe { tkm_fp_verify_inclusion(c.index, c.size, c.leaf.as_ptr(), c.proof.as_ptr(), hashes, c.root.as_ptr()) };
    assert!(s == TKM_STATUS_OK || rejected(s), "{s:?} {c:?}");
    let s = unsafe {
        tkm_fp_verify_consistency(c.index, c.size, c.leaf.as_ptr(), c.root.as_ptr(), c.proof.as_ptr(), hashes)
    };
    assert!(s == TKM_STATUS_OK || rejected(s), "{s:?} {c:?}");

    // Generated proofs verify, and a changed leaf does not.
    let n = c.leaves.len().min(300);
    if n == 0 {
        return;
    }
    let flat: Vec<u8> = c.leaves[..n].concat();
    let mut root = [0u8; 32];
    assert_eq!(unsafe { tkm_fp_root(flat.as_ptr(), n, root.as_mut_ptr()) }, TKM_STATUS_OK);
    let i = usize::from(c.pick) % n;
    let cap = tkm_fp_max_proof_len(n as u64);
    let mut proof = vec![0u8; 32 * cap];
    let mut len = 0usize;
    let s = unsafe { tkm_fp_inclusion_proof(flat.as_ptr(), n, i as u64, proof.as_mut_ptr(), cap, &mut len) };
    assert_eq!(s, TKM_STATUS_OK);
    let leaf = &flat[32 * i..32 * i + 32];
    let s = unsafe { tkm_fp_verify_inclusion(i as u64, n as u64, leaf.as_ptr(), proof.as_ptr(), len, root.as_ptr()) };
    assert_eq!(s, TKM_STATUS_OK);
    if c.leaf != leaf {
        let s =
            unsafe { tkm_fp_verify_inclusion(i as u64, n as u64, c.leaf.as_ptr(), proof.as_ptr(), len, root.as_ptr()) };
        assert_eq!(s, TKM_STATUS_PROOF_MISMATCH);
    }
    let size1 = (i + 1) as u64;
    let s = unsafe { tkm_fp_consistency_proof(flat.as_ptr(), n, size1, proof.as_mut_ptr(), cap, &mut len) };
    assert_eq!(s, TKM_STATUS_OK);
    let mut old = [0u8; 32];
    assert_eq!(unsafe { tkm_fp_root(flat.as_ptr(), i + 1, old.as_mut_ptr()) }, TKM_STATUS_OK);
    let s = unsafe { tkm_fp_verify_consistency(size1, n as u64, old.as_ptr(), root.as_ptr(), proof.as_ptr(), len) };
    assert_eq!(s, TKM_STATUS_OK);
});
