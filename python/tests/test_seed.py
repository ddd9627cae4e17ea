"""TRL's high-entropy mask against its formula in NumPy (np.quantile's linear interpolation is
torch.quantile's default)."""

from __future__ import annotations

import numpy as np
import pytest

import tokenmath as tm


def _trl(h: np.ndarray, mask: np.ndarray, rho: float) -> np.ndarray:
    """trl.GRPOTrainer.get_high_entropy_mask with threshold 1 - rho, in f64 on f32 values."""
    valid = h[mask.astype(bool)].astype(np.float64)
    if valid.size == 0:
        return np.zeros(h.shape, dtype=bool)
    theta = np.quantile(valid, 1.0 - rho)
    return (h.astype(np.float64) >= theta) & mask.astype(bool)


@pytest.mark.parametrize("rho", [0.2, 0.5, 1.0, 0.013])
def test_matches_trl_with_ties_and_ragged_rows(rng, rho):
    b, t = 9, 37
    h = (np.floor(rng.random((b, t)) * 64) / 8).astype(np.float32)  # many ties
    lengths = rng.integers(0, t + 1, b)
    mask = (np.arange(t)[None, :] < lengths[:, None]).astype(np.uint8)
    h[mask == 0] = np.nan  # padding is never read
    keep = tm.top_entropy_mask(h, mask, rho)
    assert keep.dtype == np.bool_ and keep.shape == (b, t)
    np.testing.assert_array_equal(keep, _trl(np.nan_to_num(h), mask, rho))
    assert keep.sum() >= 1 and not keep[mask == 0].any()


def test_threads_bool_mask_and_empty(rng):
    h = rng.random((64, 300)).astype(np.float32) * 8
    mask = rng.random((64, 300)) < 0.8
    one = tm.top_entropy_mask(h, mask, 0.2)
    np.testing.assert_array_equal(one, tm.top_entropy_mask(h, mask, 0.2, threads=2))
    np.testing.assert_array_equal(one, _trl(h, mask, 0.2))
    assert not tm.top_entropy_mask(h, np.zeros_like(mask), 0.2).any()


def test_errors_carry_the_status():
    h = np.ones((2, 3), np.float32)
    m = np.ones((2, 3), np.uint8)
    h[1, 2] = np.inf
    with pytest.raises(tm.TokenmathError, match="NON_FINITE"):
        tm.top_entropy_mask(h, m, 0.2)
    with pytest.raises(tm.TokenmathError, match="INVALID_ARGUMENT"):
        tm.top_entropy_mask(np.ones((2, 3), np.float32), m, 0.0)
    with pytest.raises(tm.TokenmathError):
        tm.top_entropy_mask(np.ones((2, 3), np.float32), np.ones((3, 2), np.uint8), 0.2)
