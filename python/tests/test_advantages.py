"""Advantage estimators against naive NumPy formulas (f64)."""

from __future__ import annotations

import numpy as np
import pytest

import tokenmath as tm


def _groups(rng, groups=5, size=4):
    r = rng.standard_normal(groups * size).astype(np.float32)
    return r, size


def test_grpo_standard_and_verl(rng):
    r, g = _groups(rng)
    a = tm.grpo_advantage(r, group_size=g)
    x = r.astype(np.float64).reshape(-1, g)
    want = (x - x.mean(1, keepdims=True)) / (x.std(1, ddof=1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(a, want.reshape(-1), rtol=1e-5, atol=1e-6)
    # labels in any order give the same per-response values
    ids = np.repeat(np.arange(5, dtype=np.uint32), g)
    perm = rng.permutation(len(r))
    a2 = tm.grpo_advantage(r[perm], ids[perm])
    np.testing.assert_array_equal(a2, a[perm])
    # verl's loop and TRL's forms on this data agree within float rounding
    for flavor in ("verl_loop", "verl_vectorized"):
        np.testing.assert_allclose(tm.grpo_advantage(r, ids, flavor=flavor), want.reshape(-1), rtol=1e-4, atol=1e-5)
    trl = tm.grpo_advantage(r, group_size=g, flavor="trl", eps=1e-4)
    np.testing.assert_allclose(trl, ((x - x.mean(1, keepdims=True)) / (x.std(1, ddof=1, keepdims=True) + 1e-4)).reshape(-1), rtol=1e-4, atol=1e-5)
    # Dr. GRPO = no std normalisation
    np.testing.assert_allclose(tm.dr_grpo_advantage(r, group_size=g), (x - x.mean(1, keepdims=True)).reshape(-1), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(tm.grpo_advantage(r, group_size=g, norm_by_std=False), tm.dr_grpo_advantage(r, group_size=g))


def test_grpo_singletons_and_nan():
    r = np.array([1.0, 0.0, 5.0], np.float32)
    ids = np.array([0, 0, 1], np.uint32)
    assert tm.grpo_advantage(r, ids)[2] == 0.0
    assert tm.grpo_advantage(r, ids, singleton="mean_zero_std_one")[2] == pytest.approx(5.0 / (1 + 1e-6))
    rn = np.array([1.0, np.nan, 0.0, 1.0], np.float32)
    with pytest.raises(tm.TokenmathError):
        tm.grpo_advantage(rn, group_size=2)
    a = tm.grpo_advantage(rn, group_size=2, nan="ignore")
    assert a[1] == 0.0 and a[0] == 0.0  # the group's only scorable reward


def test_rloo(rng):
    r, g = _groups(rng)
    x = r.astype(np.float64).reshape(-1, g)
    loo = (x.sum(1, keepdims=True) - x) / (g - 1)
    np.testing.assert_allclose(tm.rloo_advantage(r, group_size=g), (x - loo).reshape(-1), rtol=1e-5, atol=1e-6)


def _mask(rng, rows, t):
    lens = rng.integers(1, t + 1, rows)
    return (np.arange(t)[None, :] < lens[:, None]).astype(np.uint8)


def test_returns_to_go_and_reinforce_pp(rng):
    rows, t, gamma = 3, 6, 0.9
    r = rng.standard_normal((rows, t)).astype(np.float32)
    m = _mask(rng, rows, t)
    g = tm.returns_to_go(r, m, gamma)
    want = np.zeros((rows, t))
    for b in range(rows):
        carry = 0.0
        for j in reversed(range(t)):
            v = r[b, j] + gamma * carry
            want[b, j] = v
            carry = v if m[b, j] else 0.0
    np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-6)
    adv, ret = tm.reinforce_pp_advantage(r, m, gamma)
    np.testing.assert_array_equal(ret, g)
    v = want[m.astype(bool)]
    w = (want - v.mean()) / np.sqrt(v.var(ddof=1) + 1e-8)
    np.testing.assert_allclose(adv, np.where(m, w, 0), rtol=1e-4, atol=1e-5)


def test_gae_full_mask(rng):
    rows, t, gamma, lam = 2, 5, 0.99, 0.95
    r = rng.standard_normal((rows, t)).astype(np.float32)
    v = rng.standard_normal((rows, t)).astype(np.float32)
    m = np.ones((rows, t), np.uint8)
    adv, ret = tm.gae(r, v, m, gamma, lam)
    a = np.zeros((rows, t))
    last = np.zeros(rows)
    for j in reversed(range(t)):
        nv = v[:, j + 1] if j + 1 < t else 0.0
        delta = r[:, j] + gamma * nv - v[:, j]
        last = delta + gamma * lam * last
        a[:, j] = last
    np.testing.assert_allclose(ret, a + v, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(adv, (a - a.mean()) / np.sqrt(a.var(ddof=1) + 1e-8), rtol=1e-4, atol=1e-5)


def test_whiten_broadcast_overlong_dynamic(rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    m = _mask(rng, 3, 4)
    v = x[m.astype(bool)].astype(np.float64)
    w = tm.masked_whiten(x, m)
    np.testing.assert_allclose(w, np.where(m, (x - v.mean()) / np.sqrt(v.var(ddof=1) + 1e-8), 0), rtol=1e-4, atol=1e-5)
    a = np.array([1.5, -2.0, 0.25], np.float32)
    np.testing.assert_array_equal(tm.broadcast_masked(a, m), np.where(m, a[:, None], 0))
    assert tm.overlong_penalty(10, max_len=100, buffer_len=20) == 0.0
    assert tm.overlong_penalty(90, max_len=100, buffer_len=20) == pytest.approx(-0.5)
    assert tm.overlong_penalty(100, max_len=100, buffer_len=20, penalty_factor=2.0) == pytest.approx(-2.0)
    scores = np.array([1.0, 0.0, 2.0], np.float32)
    tr = tm.overlong_shaped_token_rewards(scores, m, max_len=4, buffer_len=2)
    lens = m.sum(1)
    for b in range(3):
        want = np.zeros(4)
        want[lens[b] - 1] = scores[b] + tm.overlong_penalty(int(lens[b]), max_len=4, buffer_len=2)
        np.testing.assert_allclose(tr[b], want, rtol=1e-6)
    metric = np.array([1, 1, 0, 1, 2, 2, 3], np.float32)
    keep, kept = tm.dynamic_sampling_keep(metric, np.array([0, 0, 1, 1, 2, 2, 3], np.uint32))
    np.testing.assert_array_equal(keep, [0, 0, 1, 1, 0, 0, 1])
    assert kept == 2 and keep.dtype == np.uint8


def test_reinforce_pp_baseline(rng):
    rewards = np.array([1.0, 0.0, 0.5, 0.5], np.float32)
    m = _mask(rng, 4, 3)
    out = tm.reinforce_pp_baseline_advantage(rewards, m, group_size=2)
    base = np.array([0.5, -0.5, 0.0, 0.0])
    tiled = np.where(m, base[:, None], 0.0)
    v = tiled[m.astype(bool)]
    np.testing.assert_allclose(out, np.where(m, (tiled - v.mean()) / np.sqrt(v.var(ddof=1) + 1e-8), 0), rtol=1e-4, atol=1e-5)
