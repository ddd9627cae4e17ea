"""A sharded vocabulary and a split batch, in one process: the partials, merges, finalise and
shard backward against the unsharded calls (bitwise where docs/distributed.md says so), and
the group moments merged across slices against one GRPO call on the whole batch."""

from __future__ import annotations

import numpy as np
import pytest

import tokenmath as tm
from conftest import bits, log_softmax

B = tm.LOGITS_BLOCK
V = 5 * B + 77  # six blocks, the last one partial


def _rows(rng, rows=9, vocab=V):
    """Logits with hostile rows: a large offset, a masked stripe, a dominant token, a NaN
    row, a masked-out row, a row without target; targets in every shard."""
    x = (rng.gumbel(size=(rows, vocab)) * 1.5).astype(np.float32)
    x[1] += 1e4
    x[2, 3::7] = -np.inf
    x[3, 4 * B + 5] += 25.0
    x[4, vocab - 1] = np.nan
    t = rng.integers(0, vocab, rows).astype(np.int32)
    t[3], t[5], t[6] = 4 * B + 5, -100, vocab - 1
    t[7] = 0
    mask = np.ones(rows, np.uint8)
    mask[8] = 0
    temps = np.array([1.0, 1.0, 0.7, 1.3, 1.0, 2.0, 0.5, 1.0, 1.0], np.float32)[:rows]
    return x, t, mask, temps


def _upstream(rng, rows):
    return (rng.standard_normal(rows).astype(np.float32) for _ in range(3))


def _raw(a: np.ndarray) -> np.ndarray:
    """The bit patterns of a float16/float32 array (NaN payloads included)."""
    return np.ascontiguousarray(a).view(f"u{a.itemsize}")


def _check_stats_equal(a: tm.LogitsStats, b: tm.LogitsStats) -> None:
    for name in ("lse", "entropy", "logp", "max", "log_sum"):
        np.testing.assert_array_equal(bits(getattr(a, name)), bits(getattr(b, name)), err_msg=name)
    assert a.nonfinite_rows == b.nonfinite_rows


@pytest.mark.parametrize("cuts", [[0, B, 3 * B, 4 * B, V], [0, 2 * B, 4 * B, V], [0, V], [0, 5 * B, V]])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_block_partials_are_bitwise_the_unsharded_forward_and_backward(rng, cuts, dtype):
    x, t, mask, temps = _rows(rng)
    x = x.astype(dtype)
    one = tm.logits_fwd(x, t, temps, row_mask=mask)
    parts = []
    for lo, hi in zip(cuts, cuts[1:]):
        p = tm.logits_partial_blocks(x[:, lo:hi], lo, V, t, temps, row_mask=mask)  # a strided view
        assert p.dtype == np.uint8 and p.shape == (x.shape[0], tm.logits_partial_blocks_len(hi - lo), 20)
        np.testing.assert_array_equal(p, tm.logits_partial_blocks(np.ascontiguousarray(x[:, lo:hi]), lo, V, t, temps, row_mask=mask))
        parts.append(p)
    merged = tm.logits_merge_block_partials(parts)
    assert merged.shape == (x.shape[0], tm.ROW_STATS_BYTES)
    f = tm.logits_finalize(merged, t, row_mask=mask)
    _check_stats_equal(f, one)
    assert f.nonfinite_rows == 1 and np.isnan(f.entropy[4])
    assert f.lse[8] == 0 and f.entropy[8] == 0  # masked row

    g_lp, g_h, g_lse = _upstream(rng, x.shape[0])
    dx_one = tm.logits_bwd(x, one, t, temps, g_logp=g_lp, g_entropy=g_h, g_lse=g_lse, row_mask=mask)
    for lo, hi in zip(cuts, cuts[1:]):
        dx = tm.logits_bwd_shard(x[:, lo:hi], f, lo, V, t, temps, g_logp=g_lp, g_entropy=g_h, g_lse=g_lse, row_mask=mask)
        assert dx.dtype == dtype and dx.shape == (x.shape[0], hi - lo)
        np.testing.assert_array_equal(_raw(dx), _raw(dx_one[:, lo:hi]))


def test_shards_cut_anywhere_within_tolerance_and_backward_bitwise(rng):
    x, t, mask, temps = _rows(rng)
    cuts = [0, 3001, 6000, 9999, V]
    parts = [tm.logits_partial(x[:, lo:hi], lo, V, t, temps, row_mask=mask) for lo, hi in zip(cuts, cuts[1:])]
    assert all(p.shape == (x.shape[0], 20) for p in parts)
    f = tm.logits_finalize(tm.logits_merge_shards(parts), t, row_mask=mask)
    one = tm.logits_fwd(x, t, temps, row_mask=mask)
    assert f.nonfinite_rows == one.nonfinite_rows == 1
    # Against the f64 softmax: the sharded error model (docs/distributed.md), simplified to
    # its dominant term for these magnitudes.
    for r in range(x.shape[0]):
        if r in (4, 8):
            continue
        z = x[r].astype(np.float64) * float(np.float32(1) / temps[r])  # the kernels' 1/tau
        lsm = log_softmax(z[None])[0]
        fin = np.isfinite(lsm)
        h = -(np.exp(lsm[fin]) * lsm[fin]).sum()
        lse = z.max() + np.log(np.exp(z[np.isfinite(z)] - z.max()).sum())
        eps, k = 2.0**-23, 256 + 8 + 4 * 3 + 2 * np.log(V + 1)
        zeta = np.abs(z[np.isfinite(z)]).max() if temps[r] != 1 else 0.0
        extra = 4 * len(parts) * eps * (1 + h + np.log(V))
        assert abs(f.lse[r] - lse) <= eps * (k + 2 * abs(lse) + 2 * zeta) + extra
        assert abs(f.entropy[r] - h) <= eps * (k * (1 + h + np.log(V)) + 4 * zeta * (1 + np.log(V))) + extra
        assert abs(f.lse[r] - one.lse[r]) <= 2 * (eps * (k + 2 * abs(lse) + 2 * zeta) + extra)
    # The backward is elementwise: bitwise the one-process backward given the same stats.
    g_lp, g_h, g_lse = _upstream(rng, x.shape[0])
    dx_one = tm.logits_bwd(x, f, t, temps, g_logp=g_lp, g_entropy=g_h, g_lse=g_lse, row_mask=mask)
    for lo, hi in zip(cuts, cuts[1:]):
        dx = tm.logits_bwd_shard(x[:, lo:hi], f, lo, V, t, temps, g_logp=g_lp, g_entropy=g_h, g_lse=g_lse, row_mask=mask)
        np.testing.assert_array_equal(bits(dx), bits(dx_one[:, lo:hi]))


def test_shard_gradient_matches_finite_differences(rng):
    # Two shards of a small vocabulary (unaligned): the merged statistics and the shard
    # backward give d(sum g_lp logp + g_h H + g_lse lse)/dx, checked by central differences.
    rows, v, cut, temp = 3, 11, 4, 0.8
    x = (rng.standard_normal((rows, v)) * 2).astype(np.float32)
    t = np.array([1, 7, 10], np.int32)
    g_lp, g_h, g_lse = _upstream(rng, rows)
    parts = [tm.logits_partial(x[:, :cut], 0, v, t, temp), tm.logits_partial(x[:, cut:], cut, v, t, temp)]
    f = tm.logits_finalize(tm.logits_merge_shards(parts), t)
    dx = np.concatenate(
        [tm.logits_bwd_shard(x[:, a:b], f, a, v, t, temp, g_logp=g_lp, g_entropy=g_h, g_lse=g_lse) for a, b in ((0, cut), (cut, v))],
        axis=1,
    )

    def loss(xx):
        lsm = log_softmax(xx / temp)
        lse = (xx / temp).max(1) + np.log(np.exp(xx / temp - (xx / temp).max(1, keepdims=True)).sum(1))
        return float((g_lp * lsm[np.arange(rows), t]).sum() + (g_h * -(np.exp(lsm) * lsm).sum(1)).sum() + (g_lse * lse).sum())

    x64, fd, e = x.astype(np.float64), np.zeros((rows, v)), 1e-6
    for i in range(rows):
        for j in range(v):
            a, b = x64.copy(), x64.copy()
            a[i, j] += e
            b[i, j] -= e
            fd[i, j] = (loss(a) - loss(b)) / (2 * e)
    np.testing.assert_allclose(dx, fd, atol=1e-4, rtol=1e-3)


def test_shard_errors(rng):
    x, t, _, _ = _rows(rng)
    x, t = x[:2], t[:2]
    with pytest.raises(tm.TokenmathError) as e:
        tm.logits_partial_blocks(x[:, 100:200], 100, V, t)  # not block-aligned
    assert e.value.name == "TKM_STATUS_INVALID_ARGUMENT"
    with pytest.raises(tm.TokenmathError) as e:
        tm.logits_partial(x[:, :B], V - 10, V, t)  # past the vocabulary
    assert e.value.name == "TKM_STATUS_SHARD_OUT_OF_RANGE"
    p = tm.logits_partial(x[:, :B], 0, V, t)
    with pytest.raises(tm.TokenmathError) as e:
        tm.logits_merge_shards([p, p[:1]])  # rows disagree
    assert e.value.name == "TKM_STATUS_LENGTH_MISMATCH"
    with pytest.raises(tm.TokenmathError) as e:
        tm.logits_merge_shards([p.view(np.int8)])
    assert e.value.name == "TKM_STATUS_BAD_DTYPE"
    with pytest.raises(tm.TokenmathError) as e:
        tm.logits_merge_block_partials([p])  # [rows, 20] is not [rows, blocks, 20]
    assert e.value.name == "TKM_STATUS_BAD_TENSOR"
    with pytest.raises(ValueError):
        tm.logits_merge_shards([])
    # Only the first shard: the targets of row 1 (if beyond it) are missing.
    t2 = np.array([5, V - 1], np.int32)
    with pytest.raises(tm.TokenmathError) as e:
        tm.logits_finalize(tm.logits_partial(x[:, :B], 0, V, t2), t2)
    assert e.value.name == "TKM_STATUS_MISSING_TARGET"
    # Both shards hold the target: impossible with a real sharding, refused.
    with pytest.raises(tm.TokenmathError) as e:
        tm.logits_merge_shards([tm.logits_partial(x[:, :B], 0, V, t2)] * 2)
    assert e.value.name == "TKM_STATUS_DUPLICATE_TARGET"
    f = tm.logits_fwd(x, t)
    with pytest.raises(tm.TokenmathError) as e:
        tm.logits_bwd_shard(x[:, :B].astype(np.float64), f, 0, V, t)
    assert e.value.name == "TKM_STATUS_BAD_DTYPE"


def test_thread_count_does_not_change_partials(rng):
    x, t, mask, temps = _rows(rng)
    a = tm.logits_partial_blocks(x, 0, V, t, temps, row_mask=mask, threads=1)
    b = tm.logits_partial_blocks(x, 0, V, t, temps, row_mask=mask, threads=4)
    np.testing.assert_array_equal(a, b)


# ---- data parallel: group moments -----------------------------------------------------------


def _batch(rng, n=40):
    r = rng.standard_normal(n).astype(np.float32)
    uid = (100 + rng.integers(0, 8, n)).astype(np.uint32)  # verl uids, interleaved
    uid[:5] = 200  # one group on the first slice only
    return r, uid


@pytest.mark.parametrize("flavor", ["standard", "verl_loop"])
def test_group_moments_merged_in_slice_order(rng, flavor):
    r, uid = _batch(rng)
    whole = tm.grpo_advantage(r, uid, flavor=flavor)
    # The whole batch's own table gives grpo_advantage bitwise.
    table = tm.group_moments(r, uid)
    assert table.ids.dtype == np.uint32 and table.moments.shape == (len(np.unique(uid)), 3)
    np.testing.assert_array_equal(bits(tm.grpo_advantage_from_moments(r, uid, table, flavor=flavor)), bits(whole))
    # Three uneven slices (ranks): tables merged in slice order.
    cuts = [0, 13, 14, 40]
    tables = [tm.group_moments(r[a:b], uid[a:b]) for a, b in zip(cuts, cuts[1:])]
    merged = tm.group_moments_merge(tables)
    assert sorted(merged.ids.tolist()) == sorted(np.unique(uid).tolist())
    # n and mean of every group against f64
    for gid, (n, mean, _m2) in zip(merged.ids, merged.moments):
        v = r[uid == gid].astype(np.float64)
        assert n == len(v) and abs(mean - v.mean()) <= 1e-12 * (1 + np.abs(v).max())
    concat = tm.GroupMoments(np.concatenate([t.ids for t in tables]), np.concatenate([t.moments for t in tables]))
    again = tm.group_moments_merge(concat)  # one concatenated table, as an all-gather leaves it
    np.testing.assert_array_equal(again.moments.view(np.uint64), merged.moments.view(np.uint64))
    for a, b in zip(cuts, cuts[1:]):
        adv = tm.grpo_advantage_from_moments(r[a:b], uid[a:b], merged, flavor=flavor)
        on_one = uid[a:b] == 200  # the group that lives on slice 0 only
        np.testing.assert_array_equal(bits(adv[on_one]), bits(whole[a:b][on_one]))
        np.testing.assert_allclose(adv, whole[a:b], rtol=1e-5, atol=1e-6)


def test_group_moments_weights_and_errors(rng):
    r, uid = _batch(rng, n=10)
    w = np.ones(10, np.float32)
    w[3] = 0.0  # left out
    t = tm.group_moments(r, uid, weight=w)
    keep = np.arange(10) != 3
    t2 = tm.group_moments(r[keep], uid[keep])
    d = dict(zip(t2.ids.tolist(), t2.moments.tolist()))
    for gid, m in zip(t.ids.tolist(), t.moments.tolist()):
        want = d.get(gid, [0.0, 0.0, 0.0])  # a group of only weight-0 rows has n = 0
        np.testing.assert_allclose(m, want, rtol=1e-12, atol=1e-12)
    with pytest.raises(tm.TokenmathError) as e:
        tm.group_moments(np.array([1.0, np.nan], np.float32), np.array([1, 1], np.uint32))
    assert e.value.name == "TKM_STATUS_NON_FINITE"
    with pytest.raises(tm.TokenmathError) as e:  # an id missing from the table
        tm.grpo_advantage_from_moments(r, uid, tm.group_moments(r[:5], uid[:5]))
    assert e.value.name == "TKM_STATUS_INVALID_ARGUMENT"
    with pytest.raises(tm.TokenmathError) as e:  # the TRL flavor is not defined by moments
        tm.grpo_advantage_from_moments(r, uid, tm.group_moments(r, uid), flavor="trl")
    assert e.value.name == "TKM_STATUS_INVALID_ARGUMENT"
    with pytest.raises(tm.TokenmathError) as e:
        tm.group_moments_merge(tm.GroupMoments(t.ids, t.moments.astype(np.float32)))
    assert e.value.name == "TKM_STATUS_BAD_DTYPE"
