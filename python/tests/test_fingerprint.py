"""Merkle commitments: roots, streaming tree, inclusion and consistency proofs."""

from __future__ import annotations

import numpy as np
import pytest

import tokenmath as tm
from tokenmath import fingerprint as fp


def _leaves(n):
    return [fp.leaf_hash(i, 1000 + i, salt=bytes([i % 256]) * 16) for i in range(n)]


def test_root_tree_and_proofs():
    leaves = _leaves(7)
    assert all(len(h) == 32 for h in leaves) and len(set(leaves)) == 7
    root = fp.merkle_root(leaves)
    assert fp.merkle_root(leaves[:1]) == leaves[0]  # RFC 6962: MTH({d}) = leaf hash
    tree = fp.MerkleTree()
    for h in leaves:
        tree.append(h)
    assert len(tree) == 7 and tree.root() == root
    for i in range(7):
        proof = fp.inclusion_proof(leaves, i)
        fp.verify_inclusion(i, 7, leaves[i], proof, root)
        with pytest.raises(tm.TokenmathError) as e:
            fp.verify_inclusion(i, 7, leaves[(i + 1) % 7], proof, root)
        assert e.value.name == "TKM_STATUS_PROOF_MISMATCH"
    bad = fp.inclusion_proof(leaves, 3)
    bad[0] = bytes(32)
    with pytest.raises(tm.TokenmathError):
        fp.verify_inclusion(3, 7, leaves[3], bad, root)
    with pytest.raises(tm.TokenmathError) as e:
        fp.inclusion_proof(leaves, 7)
    assert e.value.name == "TKM_STATUS_INDEX_OUT_OF_RANGE"
    for m in range(1, 8):
        fp.verify_consistency(m, 7, fp.merkle_root(leaves[:m]), root, fp.consistency_proof(leaves, m))
    with pytest.raises(tm.TokenmathError):
        fp.verify_consistency(3, 7, fp.merkle_root(leaves[:4]), root, fp.consistency_proof(leaves, 3))


def test_encodings_heads_and_lengths():
    x = np.array([0.5, -0.0, 1e-40, -2.0], np.float32)
    b = fp.encode(x)
    assert b == np.array([0.5, 0.0, 0.0, -2.0], "<f4").tobytes()
    assert len(fp.encode(x, fp.KIND_BF16)) == 8 and len(fp.encode(x, fp.KIND_I8_UNIT)) == 4
    with pytest.raises(tm.TokenmathError) as e:
        fp.encode(np.array([np.nan], np.float32))
    assert e.value.name == "TKM_STATUS_NON_FINITE"
    h = fp.leaf_hash(0, 5, kind=fp.KIND_F32_CANONICAL, fp=b)
    root = fp.merkle_root([h])
    head = fp.signed_head(1, root, b"run-42")
    assert fp.parse_signed_head(head) == (1, 1, root, b"run-42")
    with pytest.raises(tm.TokenmathError) as e:
        fp.leaf_hash(0, 5, salt=b"short")
    assert e.value.name == "TKM_STATUS_LENGTH_MISMATCH"
    with pytest.raises(tm.TokenmathError):
        fp.merkle_root(b"\x00" * 33)
