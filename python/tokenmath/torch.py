r"""PyTorch autograd wrapper: ``logp, entropy = tokenmath.torch.logp_entropy(logits,
targets, temperature)``, a drop-in for verl's ``logprobs_from_logits`` +
``entropy_from_logits`` or TRL's ``selective_log_softmax`` + entropy.

Forward: one pass over the logits (``tkm_dl_logits_fwd``), saving three floats per row
(``max``, ``log_sum``, ``entropy``). Backward: ``dL/dlogits`` from the upstream gradients of
both outputs (``tkm_dl_logits_bwd``) — for :math:`z = x/\tau`, :math:`p =
\mathrm{softmax}(z)`:

.. math:: \frac{\partial L}{\partial x_j} = \frac{1}{\tau}\big(g^{logp}(\delta_{jt} - p_j)
   - g^{H} p_j (\log p_j + H)\big)

With ``inplace_backward=True`` the gradient is written over the logits' own buffer
(``tkm_dl_logits_bwd_inplace``) and returned as the logits' gradient, saving a
``[rows, vocab]`` allocation. **Contract**: the logits tensor must not be used after the
backward (its values are the gradient then), and no other autograd node may have saved it
for its own backward (e.g. do not also feed the same logits to ``torch.log_softmax`` in
the same graph); the logits must not be a leaf that requires grad.

Importing ``tokenmath`` does not import torch; this module does.
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import torch

from . import logits as _logits

__all__ = ["logp_entropy", "LogpEntropy"]


class LogpEntropy(torch.autograd.Function):
    """``(logp, entropy)`` of ``[rows, vocab]`` logits; see the module docs."""

    @staticmethod
    def forward(ctx, logits, targets, temperature, inplace_backward):  # type: ignore[override]
        x = logits.detach()
        tg = targets.detach().to(torch.int32).contiguous()
        temp = temperature
        if isinstance(temperature, torch.Tensor):
            temp = temperature.detach().to(torch.float32).contiguous()
        st = _logits.logits_fwd(x, tg, temp)
        ctx.inplace = bool(inplace_backward)
        ctx.temperature = temp if not isinstance(temp, torch.Tensor) else None
        saved = [x, tg, st.max, st.log_sum, st.entropy]
        if isinstance(temp, torch.Tensor):
            saved.append(temp)
        ctx.save_for_backward(*saved)
        return st.logp, st.entropy.clone()

    @staticmethod
    def backward(ctx, g_logp, g_entropy):  # type: ignore[override]
        x, tg, mx, ls, ent, *rest = ctx.saved_tensors
        temp = rest[0] if rest else ctx.temperature
        stats = _logits.LogitsStats(None, ent, None, mx, ls, 0)
        up = lambda g: None if g is None else g.detach().to(torch.float32).contiguous()  # noqa: E731
        kw = dict(g_logp=up(g_logp), g_entropy=up(g_entropy))
        if ctx.inplace:
            dx = _logits.logits_bwd_inplace(x, stats, tg, temp, **kw)
        else:
            dx = _logits.logits_bwd(x, stats, tg, temp, **kw)
        return dx, None, None, None


def logp_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    temperature: Union[float, torch.Tensor] = 1.0,
    *,
    inplace_backward: bool = False,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Target log-probabilities and entropies of ``logits / temperature``.

    Args:
        logits: ``[..., vocab]`` float32/bfloat16/float16 (viewed as ``[rows, vocab]``; a
            unit column stride is needed, any row stride is fine).
        targets: ``[...]`` integer token ids (negative = no target: ``logp`` 0).
        temperature: a scalar or a ``[...]`` tensor of per-row temperatures.
        inplace_backward: write the gradient over the logits (see the contract above).

    Returns:
        ``(logp, entropy)``, each ``[...]`` float32 on the logits' device; both
        differentiable w.r.t. ``logits``.
    """
    v = logits.shape[-1]
    lead = logits.shape[:-1]
    x = logits.reshape(-1, v)
    t = targets.reshape(-1)
    temp = temperature.reshape(-1) if isinstance(temperature, torch.Tensor) else float(temperature)
    logp, ent = LogpEntropy.apply(x, t, temp, inplace_backward)
    return logp.reshape(lead), ent.reshape(lead)
