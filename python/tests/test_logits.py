"""Logits statistics against naive NumPy formulas (f64) and their hostile inputs."""

from __future__ import annotations

import numpy as np
import pytest

import tokenmath as tm
from conftest import bits, log_softmax


def _data(rng, rows=7, vocab=33, scale=4.0):
    x = (rng.standard_normal((rows, vocab)) * scale).astype(np.float32)
    t = rng.integers(0, vocab, rows).astype(np.int32)
    return x, t


def _tol(v, x):
    # f32 kernels vs f64: a few ulps of the row's magnitude times log V (the reference
    # crate's error model, simplified).
    return 8 * np.finfo(np.float32).eps * (np.abs(x).max() + 1) * np.log2(v + 1)


@pytest.mark.parametrize("temperature", [1.0, 0.7, 2.5])
def test_forward_matches_numpy(rng, temperature):
    x, t = _data(rng)
    t[2] = -100
    s = tm.logits_fwd(x, t, temperature)
    z = x.astype(np.float64) / temperature
    lsm = log_softmax(z)
    p = np.exp(lsm)
    tol = _tol(x.shape[1], z)
    np.testing.assert_allclose(s.lse, np.log(np.exp(z).sum(1)), atol=tol, rtol=0)
    np.testing.assert_allclose(s.entropy, -(p * lsm).sum(1), atol=tol, rtol=0)
    want = lsm[np.arange(len(t)), np.maximum(t, 0)]
    want[2] = 0.0  # no target
    np.testing.assert_allclose(s.logp, want, atol=tol, rtol=0)
    np.testing.assert_allclose(s.max, z.max(1), atol=tol, rtol=0)
    np.testing.assert_array_equal(bits(s.lse), bits(s.max + s.log_sum))
    assert s.nonfinite_rows == 0
    assert all(isinstance(a, np.ndarray) and a.dtype == np.float32 for a in (s.lse, s.entropy, s.logp))


def test_per_row_temperature_and_mask(rng):
    x, t = _data(rng, rows=5)
    temps = np.array([0.5, 1.0, 2.0, 3.0, 1.5], np.float32)
    mask = np.array([1, 0, 1, 1, 0], np.uint8)
    s = tm.logits_fwd(x, t, temps, row_mask=mask)
    for r in range(5):
        one = tm.logits_fwd(x[r : r + 1], t[r : r + 1], float(temps[r]))
        if mask[r]:
            assert bits(s.entropy[r]) == bits(one.entropy[0])
            assert bits(s.logp[r]) == bits(one.logp[0])
        else:
            assert s.lse[r] == 0 and s.entropy[r] == 0 and s.logp[r] == 0
    # bool masks are accepted too
    s2 = tm.logits_fwd(x, t, temps, row_mask=mask.astype(bool))
    np.testing.assert_array_equal(bits(s.entropy), bits(s2.entropy))


def test_backward_matches_formula_and_finite_differences(rng):
    x, t = _data(rng, rows=4, vocab=9, scale=2.0)
    temp = 0.8
    s = tm.logits_fwd(x, t, temp)
    g_logp = rng.standard_normal(4).astype(np.float32)
    g_ent = rng.standard_normal(4).astype(np.float32)
    dx = tm.logits_bwd(x, s, t, temp, g_logp=g_logp, g_entropy=g_ent)
    z = x.astype(np.float64) / temp
    lsm = log_softmax(z)
    p = np.exp(lsm)
    h = -(p * lsm).sum(1, keepdims=True)
    onehot = np.eye(x.shape[1])[t]
    want = (g_logp[:, None] * (onehot - p) - g_ent[:, None] * p * (lsm + h)) / temp
    np.testing.assert_allclose(dx, want, atol=1e-5, rtol=1e-4)

    # Central finite differences of L = sum(g_logp logp + g_ent H) in f64.
    def loss(xx):
        zz = xx / temp
        l = log_softmax(zz)
        return float((g_logp * l[np.arange(4), t]).sum() + (g_ent * -(np.exp(l) * l).sum(1)).sum())

    x64 = x.astype(np.float64)
    fd = np.zeros_like(x64)
    e = 1e-6
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            a, b = x64.copy(), x64.copy()
            a[i, j] += e
            b[i, j] -= e
            fd[i, j] = (loss(a) - loss(b)) / (2 * e)
    np.testing.assert_allclose(dx, fd, atol=1e-4, rtol=1e-3)


def test_inplace_and_fused_equal_out_of_place(rng):
    x, t = _data(rng)
    g = np.full(len(t), -1.0 / len(t), np.float32)
    s = tm.logits_fwd(x, t)
    dx = tm.logits_bwd(x, s, t, g_logp=g)
    y = x.copy()
    assert tm.logits_bwd_inplace(y, s, t, g_logp=g) is y
    np.testing.assert_array_equal(bits(y), bits(dx))
    z = x.copy()
    s2 = tm.logits_fwd_bwd_inplace(z, t, g_logp=g)
    np.testing.assert_array_equal(bits(z), bits(dx))
    np.testing.assert_array_equal(bits(s2.entropy), bits(s.entropy))


def test_row_stride_view_is_zero_copy(rng):
    big = (rng.standard_normal((6, 40)) * 3).astype(np.float32)
    x = big[:, :32]  # row stride 40, unit column stride: accepted without a copy
    t = rng.integers(0, 32, 6).astype(np.int32)
    s = tm.logits_fwd(x, t)
    s2 = tm.logits_fwd(np.ascontiguousarray(x), t)
    np.testing.assert_array_equal(bits(s.entropy), bits(s2.entropy))
    # In place over the view: the 8 columns between rows are not touched.
    before = big[:, 32:].copy()
    tm.logits_bwd_inplace(x, s, t, g_logp=np.ones(6, np.float32))
    np.testing.assert_array_equal(big[:, 32:], before)


def test_float16(rng):
    x, t = _data(rng, scale=2.0)
    h = x.astype(np.float16)
    s = tm.logits_fwd(h, t)
    s32 = tm.logits_fwd(h.astype(np.float32), t)  # f16 is converted exactly on load
    np.testing.assert_array_equal(bits(s.entropy), bits(s32.entropy))
    dx = tm.logits_bwd(h, s, t, g_logp=np.ones(len(t), np.float32))
    assert dx.dtype == np.float16 and dx.shape == h.shape


def test_hostile_rows(rng):
    x, t = _data(rng, rows=4, vocab=8)
    x[0, 3] = np.nan
    x[1, :5] = -np.inf  # masked vocabulary entries: fine
    t[1] = 6
    s = tm.logits_fwd(x, t)
    assert s.nonfinite_rows == 1
    assert np.isnan(s.lse[0]) and np.isnan(s.entropy[0])
    assert np.isfinite(s.lse[1:]).all() and np.isfinite(s.entropy[1:]).all()
    want = log_softmax(x[1:2, 5:])[0, 1]
    assert abs(s.logp[1] - want) < 1e-5
    dx = tm.logits_bwd(x, s, t, g_logp=np.ones(4, np.float32))
    assert np.isnan(dx[0]).all() and (dx[1, :5] == 0).all()
    # A kept row of all -inf has no softmax.
    x[2] = -np.inf
    with pytest.raises(tm.TokenmathError) as e:
        tm.logits_fwd(x, t)
    assert e.value.name == "TKM_STATUS_NO_FINITE_LOGIT"
    # ... unless the row is masked out.
    s = tm.logits_fwd(x, t, row_mask=np.array([1, 1, 0, 1], np.uint8))
    assert s.entropy[2] == 0


def test_big_offsets_and_single_column():
    x = np.array([[1e30, 1e30 - 1e23], [0.0, 0.0]], np.float32)
    s = tm.logits_fwd(x, np.array([0, 1], np.int32))
    assert np.isfinite(s.entropy).all()
    one = tm.logits_fwd(np.array([[3.0], [-2.0]], np.float32), np.array([0, 0], np.int32))
    assert (one.logp == 0).all() and (one.entropy == 0).all()


def test_thread_count_does_not_change_bits(rng):
    x, t = _data(rng, rows=64, vocab=515)
    s1 = tm.logits_fwd(x, t, 0.9, threads=1)
    s4 = tm.logits_fwd(x, t, 0.9, threads=4)
    for a, b in zip(s1[:5], s4[:5]):
        np.testing.assert_array_equal(bits(a), bits(b))
    g = rng.standard_normal(64).astype(np.float32)
    np.testing.assert_array_equal(
        bits(tm.logits_bwd(x, s1, t, 0.9, g_logp=g, threads=1)), bits(tm.logits_bwd(x, s4, t, 0.9, g_logp=g, threads=3))
    )
