"""Policy losses, gradients and aggregation against naive NumPy formulas (verl's)."""

from __future__ import annotations

import numpy as np
import pytest

import tokenmath as tm
from conftest import bits


def _batch(rng, rows=4, cols=9):
    logp = (rng.standard_normal((rows, cols)) * 0.3 - 1).astype(np.float32)
    old = (logp + rng.standard_normal((rows, cols)) * 0.3).astype(np.float32)
    adv = rng.standard_normal((rows, cols)).astype(np.float32)
    lens = rng.integers(1, cols + 1, rows)
    mask = (np.arange(cols)[None, :] < lens[:, None]).astype(np.uint8)
    return logp, old, adv, mask


def _ppo_numpy(logp, old, adv, eps_low=0.2, eps_high=0.2, c=3.0):
    lp = logp.astype(np.float64)
    ratio = np.exp(np.clip(lp - old, -20, 20))
    pg1, pg2 = -adv * ratio, -adv * np.clip(ratio, 1 - eps_low, 1 + eps_high)
    clip_max = np.maximum(pg1, pg2)
    clip_min = np.minimum(-adv * c, clip_max)
    return np.where(adv < 0, clip_min, clip_max)


def test_ppo_clip_loss_and_gradient(rng):
    logp, old, adv, mask = _batch(rng)
    out = tm.ppo_clip_loss(logp, old, adv, mask)
    want = _ppo_numpy(logp, old, adv)
    np.testing.assert_allclose(out.loss, np.where(mask, want, 0), rtol=1e-5, atol=1e-6)
    # gradient: central differences of the f64 formula, away from the clip kinks
    e = 1e-4
    fd = (_ppo_numpy(logp + e, old, adv) - _ppo_numpy(logp - e, old, adv)) / (2 * e)
    ratio = np.exp(logp.astype(np.float64) - old)
    away = np.minimum(np.abs(ratio - 0.8), np.abs(ratio - 1.2)) > 1e-3
    sel = mask.astype(bool) & away
    np.testing.assert_allclose(out.dloss_dlogp[sel], fd[sel], rtol=1e-3, atol=1e-4)
    assert (out.dloss_dlogp[~mask.astype(bool)] == 0).all()
    st = out.stats
    assert st.valid_tokens == mask.sum()
    hi = (adv > 0) & (ratio > 1.2) & mask.astype(bool)
    assert st.clipped_high == hi.sum()
    assert st.neg_log_ratio_sum == pytest.approx(-(logp.astype(np.float64) - old)[mask.astype(bool)].sum(), rel=1e-5)


def test_aggregation_and_fused_step(rng):
    logp, old, adv, mask = _batch(rng)
    ref = (logp + rng.standard_normal(logp.shape) * 0.1).astype(np.float32)
    loss = tm.ppo_clip_loss(logp, old, adv, mask).loss
    tot = tm.agg_loss(loss, mask, "token-mean")
    assert tot == pytest.approx(float(loss[mask.astype(bool)].sum() / mask.sum()), rel=1e-5)
    seq = tm.agg_loss(loss, mask, "seq-mean-token-mean")
    assert seq == pytest.approx(float(np.mean((loss * mask).sum(1) / mask.sum(1))), rel=1e-5)
    w = tm.agg_weights(mask, "token-mean")
    np.testing.assert_allclose(w, mask / mask.sum(), rtol=1e-6)

    kl = tm.ppo_clip_kl_loss(logp, old, adv, mask, ref, kl_coef=0.1)
    d = kl.dloss_dlogp.copy()
    assert tm.agg_chain_inplace(d, mask, "token-mean") is d
    np.testing.assert_array_equal(bits(d), bits(tm.logp_upstream(w, [kl.dloss_dlogp], [1.0])))
    step = tm.ppo_clip_kl_step(logp, old, adv, mask, ref, kl_coef=0.1, mode="token-mean")
    np.testing.assert_array_equal(bits(step.loss), bits(kl.loss))
    np.testing.assert_array_equal(bits(step.g_logp), bits(d))
    assert bits(step.total_loss) == bits(tm.agg_loss(kl.loss, mask, "token-mean"))
    assert step.kl_stats == kl.kl_stats and step.stats == kl.stats


def test_kl_tis_and_sequence_losses(rng):
    logp, old, adv, mask = _batch(rng)
    ref = (logp + rng.standard_normal(logp.shape) * 0.1).astype(np.float32)
    loss, dloss, ks = tm.kl_loss(logp, ref, mask, kl="low_var_kl")
    dd = logp.astype(np.float64) - ref
    np.testing.assert_allclose(loss, np.where(mask, np.exp(-dd) + dd - 1, 0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(dloss, np.where(mask, 1 - np.exp(-dd), 0), rtol=1e-4, atol=1e-6)
    assert ks.valid_tokens == mask.sum()
    loss1, _, _ = tm.kl_loss(logp, ref, mask, kl="k1")
    np.testing.assert_allclose(loss1, np.where(mask, dd, 0), rtol=1e-5, atol=1e-6)
    w = tm.tis_weights(old, logp, mask, cap=1.5)
    np.testing.assert_allclose(w, np.where(mask, np.minimum(np.exp(old.astype(np.float64) - logp), 1.5), 0), rtol=1e-5)
    # CISPO with unbounded weights: -w * A * logp, gradient -w * A
    cis = tm.cispo_loss(logp, old, adv, mask, w_min=-np.inf, w_max=np.inf, log_ratio_clamp=0.0)
    r = np.exp(logp.astype(np.float64) - old)
    np.testing.assert_allclose(cis.dloss_dlogp, np.where(mask, -r * adv, 0), rtol=1e-4, atol=1e-6)
    # GSPO: one ratio per row
    gs = tm.gspo_loss(logp, old, adv, mask)
    assert gs.loss.shape == logp.shape and np.isfinite(gs.loss).all()
    sa = tm.sapo_loss(logp, old, adv, mask, tau_pos=1.0, tau_neg=1.0, log_ratio_clamp=0.0)
    sig = 1 / (1 + np.exp(-(r - 1)))
    np.testing.assert_allclose(sa.loss, np.where(mask, -adv * sig * 4, 0), rtol=1e-4, atol=1e-6)
    g = tm.entropy_upstream(tm.agg_weights(mask), 0.01)
    np.testing.assert_allclose(g, -0.01 * mask / mask.sum(), rtol=1e-6)


def test_policy_chain_into_logits_backward(rng):
    """One GRPO step as a trainer writes it: logits → logp → loss → g_logp → dlogits."""
    rows, cols, vocab = 2, 3, 11
    logits = rng.standard_normal((rows * cols, vocab)).astype(np.float32)
    tokens = rng.integers(0, vocab, rows * cols).astype(np.int32)
    st = tm.logits_fwd(logits, tokens)
    logp = st.logp.reshape(rows, cols)
    adv = np.repeat(tm.grpo_advantage(np.array([1.0, 0.0], np.float32), group_size=2)[:, None], cols, 1)
    mask = np.ones((rows, cols), np.uint8)
    out = tm.ppo_clip_loss(logp, logp, adv, mask)
    g = tm.agg_chain_inplace(out.dloss_dlogp, mask)
    dx = tm.logits_bwd(logits, st, tokens, g_logp=g.reshape(-1))
    # on-policy: d/dx of token-mean(-A logp)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    want = -(adv.reshape(-1, 1) / (rows * cols)) * (np.eye(vocab)[tokens] - p)
    np.testing.assert_allclose(dx, want, rtol=1e-4, atol=1e-6)
