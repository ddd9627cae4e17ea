"""Token fingerprint commitments: RFC 6962-shaped BLAKE3 Merkle trees over leaf hashes,
inclusion and consistency proofs, signed tree heads (the C ABI's ``tkm_fp_*``).

Hashes are 32-byte ``bytes``; lists of hashes are ``list[bytes]`` (or their
concatenation). Verification returns ``None`` when the proof holds and raises
:class:`tokenmath.TokenmathError` (``TKM_STATUS_PROOF_MISMATCH``, ``_PROOF_LENGTH``,
``_INDEX_OUT_OF_RANGE``) when it does not, so a forgotten check cannot pass silently.
The tree size of a verification must come from a signed head, never from the prover.
"""

from __future__ import annotations

from typing import Any, Iterable, Union

from . import _device as dev
from . import _native

HASH_LEN: int = _native.FP_HASH_LEN
SALT_LEN: int = _native.FP_SALT_LEN
KIND_NONE: int = _native.FP_KIND_NONE
KIND_F32_CANONICAL: int = _native.FP_KIND_F32_CANONICAL
KIND_I8_UNIT: int = _native.FP_KIND_I8_UNIT
KIND_BF16: int = _native.FP_KIND_BF16
KIND_SIMHASH: int = _native.FP_KIND_SIMHASH

Hashes = Union[bytes, Iterable[bytes]]
MerkleTree = _native.MerkleTree


def _join(h: Hashes) -> bytes:
    return h if isinstance(h, (bytes, bytearray)) else b"".join(h)


def _split(b: bytes) -> list[bytes]:
    return [b[i : i + HASH_LEN] for i in range(0, len(b), HASH_LEN)]


def leaf_hash(index: int, token_id: int, *, salt: bytes = bytes(SALT_LEN), kind: int = KIND_NONE, fp: bytes = b"") -> bytes:
    """The leaf hash ``H(0x00 || record)`` of committed token ``index``: its id, a 16-byte
    ``salt`` (all zero only when hiding is not needed) and fingerprint bytes ``fp`` of
    ``kind`` (e.g. :func:`encode` of a hidden state)."""
    return _native.fp_leaf_hash(int(index), bytes(salt), int(token_id), int(kind), bytes(fp))


def encode(x: Any, kind: int = KIND_F32_CANONICAL) -> bytes:
    """Canonical fingerprint bytes of a ``[dim]`` float32 vector: ``KIND_F32_CANONICAL``
    (-0 and subnormals to +0), ``KIND_I8_UNIT`` (``round(127 x / |x|)``), ``KIND_BF16``."""
    return _native.fp_encode(int(kind), dev.arg(x))


def merkle_root(leaf_hashes: Hashes) -> bytes:
    """The root over the leaf hashes (``BLAKE3("")`` for none)."""
    return _native.fp_root(_join(leaf_hashes))


def inclusion_proof(leaf_hashes: Hashes, index: int) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree over ``leaf_hashes``."""
    return _split(_native.fp_inclusion_proof(_join(leaf_hashes), int(index)))


def verify_inclusion(index: int, size: int, leaf_hash: bytes, proof: Hashes, root: bytes) -> None:
    """Checks that ``leaf_hash`` is leaf ``index`` of the ``size``-leaf tree with ``root``;
    raises :class:`tokenmath.TokenmathError` if not."""
    _native.fp_verify_inclusion(int(index), int(size), bytes(leaf_hash), _join(proof), bytes(root))


def consistency_proof(leaf_hashes: Hashes, size1: int) -> list[bytes]:
    """The proof that the first ``size1`` leaves' tree is a prefix of the whole tree."""
    return _split(_native.fp_consistency_proof(_join(leaf_hashes), int(size1)))


def verify_consistency(size1: int, size2: int, root1: bytes, root2: bytes, proof: Hashes) -> None:
    """Checks that the ``size2`` tree (``root2``) extends the ``size1`` tree (``root1``);
    raises :class:`tokenmath.TokenmathError` if not."""
    _native.fp_verify_consistency(int(size1), int(size2), bytes(root1), bytes(root2), _join(proof))


def signed_head(n: int, root: bytes, ctx: bytes = b"", *, hash_id: int = 1) -> bytes:
    """The canonical bytes of the tree head committing to ``(n, root)`` that a provider
    signs (signing is outside the library)."""
    return _native.fp_signed_head_encode(int(hash_id), int(n), bytes(root), bytes(ctx))


def parse_signed_head(head: bytes) -> tuple[int, int, bytes, bytes]:
    """``(hash_id, n, root, ctx)`` of signed-head bytes (strict)."""
    return _native.fp_signed_head_parse(bytes(head))
