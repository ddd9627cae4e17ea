"""The torch.autograd wrapper against torch's own log_softmax/entropy (skipped where
PyTorch is not installed: PyPI's Linux wheels need several GB of CUDA libraries)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import tokenmath as tm  # noqa: E402
import tokenmath.torch as tmt  # noqa: E402


def _torch_ref(x, t, temperature):
    z = x.float() / temperature
    lsm = torch.log_softmax(z, -1)
    logp = torch.gather(lsm, -1, t.clamp_min(0).long().unsqueeze(-1)).squeeze(-1)
    logp = torch.where(t >= 0, logp, torch.zeros_like(logp))
    ent = -(lsm.exp() * lsm).sum(-1)
    return logp, ent


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_forward_backward_vs_torch(inplace, temperature):
    g = torch.Generator().manual_seed(0)
    base = torch.randn(2, 5, 37, generator=g) * 3
    t = torch.randint(0, 37, (2, 5), generator=g)
    t[0, 1] = -100
    w1, w2 = torch.randn(2, 5, generator=g), torch.randn(2, 5, generator=g)

    leaf = base.clone().requires_grad_(True)
    logp, ent = tmt.logp_entropy(leaf * 1.0, t, temperature, inplace_backward=inplace)
    assert logp.shape == (2, 5) and logp.dtype == torch.float32
    ((logp * w1).sum() + (ent * w2).sum()).backward()

    ref = base.clone().requires_grad_(True)
    rl, re = _torch_ref(ref, t, temperature)
    ((rl * w1).sum() + (re * w2).sum()).backward()
    torch.testing.assert_close(logp, rl.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ent, re.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(leaf.grad, ref.grad, atol=1e-5, rtol=1e-4)


def test_inplace_backward_reuses_the_logits_buffer():
    x = torch.randn(4, 11, requires_grad=True)
    logits = x * 2.0  # a non-leaf, as a model's output
    ptr = logits.data_ptr()
    seen = {}

    def hook(g):
        seen["ptr"] = g.data_ptr()

    logits.register_hook(hook)
    logp, ent = tmt.logp_entropy(logits, torch.arange(4), inplace_backward=True)
    (logp.sum() + ent.sum()).backward()
    assert seen["ptr"] == ptr  # the gradient lives in the logits' storage
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_half_precision_and_gradcheck_style():
    x = torch.randn(3, 16) * 2
    t = torch.tensor([1, 2, 3])
    for dt in (torch.bfloat16, torch.float16):
        xl = x.to(dt).requires_grad_(True)
        logp, ent = tmt.logp_entropy(xl * 1, t)
        (logp.sum() + ent.sum()).backward()
        assert xl.grad.dtype == dt
        rl, re = _torch_ref(x.to(dt).float(), t, 1.0)
        torch.testing.assert_close(logp, rl, atol=1e-5, rtol=1e-5)  # exact conversion on load
    # finite differences of the f64 reference around a float32 point
    xd = x.double().requires_grad_(True)
    xf = x.clone().requires_grad_(True)
    logp, ent = tmt.logp_entropy(xf * 1, t)
    (logp.sum() - 0.5 * ent.sum()).backward()
    rl, re = _torch_ref(xd, t, 1.0)
    (rl.sum() - 0.5 * re.sum()).backward()
    torch.testing.assert_close(xf.grad.double(), xd.grad, atol=1e-5, rtol=1e-4)


def test_generic_api_returns_torch_tensors_and_errors():
    x = torch.randn(3, 8)
    s = tm.logits_fwd(x, torch.tensor([0, 1, 2], dtype=torch.int32))
    assert isinstance(s.lse, torch.Tensor) and s.lse.device == x.device
    a = tm.grpo_advantage(torch.tensor([1.0, 0.0, 1.0, 1.0]), group_size=2)
    assert isinstance(a, torch.Tensor)
    with pytest.raises(tm.TokenmathError) as e:
        tm.logits_fwd(x.double(), None)
    assert e.value.name == "TKM_STATUS_BAD_DTYPE"
    np.testing.assert_allclose(s.lse.numpy(), torch.logsumexp(x, -1).numpy(), rtol=1e-6)


def test_sharded_vocabulary_with_torch_tensors():
    # The sharded calls on torch CPU tensors (bfloat16 logits, column-slice views, uint32
    # group ids): outputs are torch tensors, and aligned shards reproduce one process bitwise.
    g = torch.Generator().manual_seed(1)
    v, rows = 3 * tm.LOGITS_BLOCK + 5, 4
    x = (torch.randn(rows, v, generator=g) * 3).bfloat16()
    t = torch.tensor([0, tm.LOGITS_BLOCK + 1, -100, v - 1], dtype=torch.int32)
    one = tm.logits_fwd(x, t, 0.9)
    cuts = [0, tm.LOGITS_BLOCK, v]
    parts = [tm.logits_partial_blocks(x[:, a:b], a, v, t, 0.9) for a, b in zip(cuts, cuts[1:])]
    assert all(isinstance(p, torch.Tensor) and p.dtype == torch.uint8 for p in parts)
    f = tm.logits_finalize(tm.logits_merge_block_partials(parts), t)
    for name in ("lse", "entropy", "logp", "max", "log_sum"):
        assert torch.equal(getattr(f, name).view(torch.int32), getattr(one, name).view(torch.int32)), name
    g_lp = torch.full((rows,), -0.25)
    dx_one = tm.logits_bwd(x, one, t, 0.9, g_logp=g_lp)
    for a, b in zip(cuts, cuts[1:]):
        dx = tm.logits_bwd_shard(x[:, a:b], f, a, v, t, 0.9, g_logp=g_lp)
        assert dx.dtype == torch.bfloat16 and torch.equal(dx.view(torch.int16), dx_one[:, a:b].contiguous().view(torch.int16))
    r = torch.randn(12, generator=g)
    uid = torch.tensor([3, 1, 3, 2, 1, 3, 2, 2, 1, 3, 1, 2], dtype=torch.uint32)
    merged = tm.group_moments_merge([tm.group_moments(r[:5], uid[:5]), tm.group_moments(r[5:], uid[5:])])
    assert merged.ids.dtype == torch.uint32 and merged.moments.dtype == torch.float64
    adv = tm.grpo_advantage_from_moments(r, uid, merged)
    assert torch.allclose(adv, tm.grpo_advantage(r, uid), rtol=1e-5, atol=1e-6)
