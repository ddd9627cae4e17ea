"""The Python package against the C ABI's own results, bit for bit: the same buffers
through libtokenmath.so's raw-pointer entry points (ctypes) and through the package's
DLPack path (a different build of the same Rust code, a different entry point)."""

from __future__ import annotations

import numpy as np

import tokenmath as tm
from conftest import bits


def test_logits_bitwise(cabi, rng):
    x = (rng.standard_normal((13, 301)) * 5).astype(np.float32)
    t = rng.integers(0, 301, 13).astype(np.int32)
    t[4] = -100
    x[2, 7] = np.nan
    x[3, :100] = -np.inf
    lse, ent, logp, mx, ls = cabi.logits_fwd(x, t, 0.7)
    s = tm.logits_fwd(x, t, 0.7)
    for a, b in ((lse, s.lse), (ent, s.entropy), (logp, s.logp), (mx, s.max), (ls, s.log_sum)):
        np.testing.assert_array_equal(bits(a), bits(b))
    g1 = rng.standard_normal(13).astype(np.float32)
    g2 = rng.standard_normal(13).astype(np.float32)
    dx = cabi.logits_bwd(x, t, 0.7, mx, ls, ent, g1, g2)
    np.testing.assert_array_equal(bits(dx), bits(tm.logits_bwd(x, s, t, 0.7, g_logp=g1, g_entropy=g2)))


def test_advantages_policy_fingerprint_bitwise(cabi, rng):
    r = rng.standard_normal(24).astype(np.float32)
    np.testing.assert_array_equal(bits(cabi.grpo(r, 6)), bits(tm.grpo_advantage(r, group_size=6)))
    logp = (rng.standard_normal((5, 17)) - 1).astype(np.float32)
    old = (logp + rng.standard_normal((5, 17)) * 0.3).astype(np.float32)
    adv = rng.standard_normal((5, 17)).astype(np.float32)
    mask = (rng.random((5, 17)) < 0.8).astype(np.uint8)
    loss, d = cabi.ppo(logp, old, adv, mask)
    out = tm.ppo_clip_loss(logp, old, adv, mask)
    np.testing.assert_array_equal(bits(loss), bits(out.loss))
    np.testing.assert_array_equal(bits(d), bits(out.dloss_dlogp))
    v = rng.standard_normal((5, 17)).astype(np.float32)
    a1, r1 = cabi.gae(logp, v, mask, 0.99, 0.95)
    a2, r2 = tm.gae(logp, v, mask, 0.99, 0.95)
    np.testing.assert_array_equal(bits(a1), bits(a2))
    np.testing.assert_array_equal(bits(r1), bits(r2))
    leaves = b"".join(tm.fingerprint.leaf_hash(i, i) for i in range(9))
    assert cabi.root(leaves) == tm.fingerprint.merkle_root(leaves)
