"""The seed papers' token selection: TRL's high-entropy mask (the 80/20 paper)."""

from __future__ import annotations

from typing import Any

from . import _device as dev
from . import _native

Tensor = Any


def top_entropy_mask(entropies: Tensor, mask: Tensor, top_entropy_quantile: float = 0.2, *, threads: int = 1) -> Tensor:
    r"""TRL's ``get_high_entropy_mask``: the ``[B, T]`` bool mask of the valid tokens whose
    entropy is at least :math:`\theta = \mathrm{quantile}(H[\mathit{mask}], 1 - \rho)`
    (torch's linear interpolation), :math:`\rho` = ``top_entropy_quantile`` in (0, 1] (TRL's
    ``GRPOConfig.top_entropy_quantile``; 0.2 keeps the top 20 %, as the 80/20 paper).

    ``entropies``: ``[B, T]`` float32 (each token's entropy, e.g. :func:`logits_fwd`'s);
    ``mask``: ``[B, T]`` uint8 or bool. Entropies at padded positions are never read; a NaN or
    infinite entropy at a valid position raises (``TKM_STATUS_NON_FINITE``). No valid token:
    nothing is kept. The threshold is exact (a radix selection, not a sort), and the same
    bits for any ``threads``. For a batch split across data-parallel ranks, the C ABI's
    ``tkm_entropy_quantile_*`` protocol gives the global threshold (``docs/distributed.md``).
    """
    e = dev.arg(entropies)
    keep = dev.empty(e, tuple(e.shape), "bool")
    _native.top_entropy_mask(e, dev.arg(mask), float(top_entropy_quantile), keep, int(threads))
    return keep
