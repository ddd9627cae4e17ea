r"""Logits statistics: the forward, the backward, the backward in place, and both fused.

For a row of logits :math:`x \in \mathbb{R}^V` at temperature :math:`\tau`, with
:math:`z = x / \tau` and :math:`p = \mathrm{softmax}(z)`:

* ``max`` :math:`m = \max_j z_j`, ``log_sum`` :math:`\log \sum_j e^{z_j - m}`,
* ``lse`` :math:`= m + \text{log\_sum} = \log \sum_j e^{z_j}`,
* ``entropy`` :math:`H = -\sum_j p_j \log p_j` (nats),
* ``logp`` :math:`= z_t - \text{lse}` for the row's target :math:`t` (0 where the target
  is negative, e.g. ``-100``).

The backward writes :math:`\partial L / \partial x` for
:math:`L = \sum_r g^{lse}_r\,\text{lse}_r + g^{logp}_r\,\text{logp}_r + g^{H}_r H_r`:

.. math::
   \frac{\partial L}{\partial x_j} = \frac{1}{\tau}\Big( g^{lse} p_j
   + g^{logp} (\delta_{jt} - p_j) - g^{H} p_j (\log p_j + H) \Big).

Shapes: ``logits`` is ``[rows, vocab]`` (float32, bfloat16 or float16; any row stride,
unit column stride); every per-row tensor is ``[rows]`` float32 (``targets`` int32,
``row_mask`` uint8/bool: 0 skips the row, whose outputs are 0). Rows with a NaN/+inf logit
give NaN outputs (counted in ``nonfinite_rows``); a kept row of all ``-inf`` is an error.
These are the C ABI's ``tkm_dl_logits_*`` calls: see ``include/tokenmath.h``.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Union

from . import _device as dev
from . import _native

Tensor = Any
Temperature = Union[float, Tensor]


class LogitsStats(NamedTuple):
    """The forward's outputs (tensors of the logits' framework and device, ``[rows]``
    float32). Keep ``max``, ``log_sum`` and ``entropy`` for the backward."""

    lse: Tensor
    entropy: Tensor
    logp: Optional[Tensor]
    max: Tensor
    log_sum: Tensor
    #: Rows with a NaN or +inf logit (their outputs are NaN); not an error.
    nonfinite_rows: int


def _temps(temperature: Temperature) -> tuple[float, Optional[Tensor]]:
    """(scalar, per-row tensor or None)."""
    if isinstance(temperature, (int, float)):
        return float(temperature), None
    return 1.0, dev.arg(temperature)


def _alloc_stats(x: Tensor, want_logp: bool) -> tuple[Tensor, ...]:
    n = dev.rows_of(x)
    f = lambda: dev.empty(x, (n,), "float32")  # noqa: E731
    return f(), f(), (f() if want_logp else None), f(), f()


def logits_fwd(
    logits: Tensor,
    targets: Optional[Tensor] = None,
    temperature: Temperature = 1.0,
    *,
    row_mask: Optional[Tensor] = None,
    threads: int = 1,
) -> LogitsStats:
    """Per-row ``lse``, ``entropy``, ``max``, ``log_sum`` and (with ``targets``) ``logp``.

    Args:
        logits: ``[rows, vocab]`` float32/bfloat16/float16 DLPack tensor (read, not copied).
        targets: ``[rows]`` int32 target ids; negative = no target (``logp`` 0).
        temperature: a scalar, or a ``[rows]`` float32 tensor of per-row temperatures.
        row_mask: ``[rows]`` uint8/bool; 0 skips the row.
        threads: CPU threads for the rows (same bits for any count).

    Returns:
        :class:`LogitsStats`; ``logp`` is None without ``targets``.

    Raises:
        TokenmathError: any non-OK status of ``tkm_dl_logits_fwd`` (bad dtype, shape,
            stride, device, label out of range, invalid temperature, all ``-inf`` row...).
    """
    x, tg, rm = dev.arg(logits), dev.arg(targets), dev.arg(row_mask)
    t, ts = _temps(temperature)
    s = dev.stream_of(x)
    lse, ent, logp, mx, ls = _alloc_stats(x, tg is not None)
    nf = _native.logits_fwd(x, tg, rm, t, ts, lse, ent, logp, mx, ls, threads, s)
    return LogitsStats(lse, ent, logp, mx, ls, nf)


def _bwd(logits, stats, targets, temperature, row_mask, g_logp, g_entropy, g_lse, dx, threads):
    x = dev.arg(logits)
    t, ts = _temps(temperature)
    _native.logits_bwd(
        x,
        dev.arg(targets),
        dev.arg(row_mask),
        t,
        ts,
        dev.arg(stats.max),
        dev.arg(stats.log_sum),
        dev.arg(stats.entropy),
        dev.arg(g_logp),
        dev.arg(g_entropy),
        dev.arg(g_lse),
        dx,
        threads,
        dev.stream_of(x),
    )


def logits_bwd(
    logits: Tensor,
    stats: LogitsStats,
    targets: Optional[Tensor] = None,
    temperature: Temperature = 1.0,
    *,
    g_logp: Optional[Tensor] = None,
    g_entropy: Optional[Tensor] = None,
    g_lse: Optional[Tensor] = None,
    row_mask: Optional[Tensor] = None,
    threads: int = 1,
) -> Tensor:
    """``dL/dlogits`` (module docs) into a new tensor of the logits' shape, dtype,
    framework and device.

    ``logits``, ``targets``, ``temperature`` and ``row_mask`` must be the forward's;
    ``stats`` its result (``max``, ``log_sum``, ``entropy`` are read). ``g_logp``,
    ``g_entropy``, ``g_lse``: ``[rows]`` float32 upstream gradients, None = 0. Masked rows
    get 0; rows with NaN statistics get NaN.
    """
    x = dev.arg(logits)
    dx = dev.empty_like(x)
    _bwd(x, stats, targets, temperature, row_mask, g_logp, g_entropy, g_lse, dx, threads)
    return dx


def logits_bwd_inplace(
    logits: Tensor,
    stats: LogitsStats,
    targets: Optional[Tensor] = None,
    temperature: Temperature = 1.0,
    *,
    g_logp: Optional[Tensor] = None,
    g_entropy: Optional[Tensor] = None,
    g_lse: Optional[Tensor] = None,
    row_mask: Optional[Tensor] = None,
    threads: int = 1,
) -> Tensor:
    """As :func:`logits_bwd`, but the gradient overwrites ``logits`` (in its dtype and
    layout; the elements between rows are not touched). Returns ``logits``. Saves a
    ``[rows, vocab]`` buffer; the logits are gone afterwards."""
    _bwd(logits, stats, targets, temperature, row_mask, g_logp, g_entropy, g_lse, None, threads)
    return logits


def logits_fwd_bwd_inplace(
    logits: Tensor,
    targets: Optional[Tensor] = None,
    temperature: Temperature = 1.0,
    *,
    g_logp: Optional[Tensor] = None,
    g_entropy: Optional[Tensor] = None,
    g_lse: Optional[Tensor] = None,
    row_mask: Optional[Tensor] = None,
    threads: int = 1,
) -> LogitsStats:
    """The forward, then the backward over ``logits`` with upstream gradients known in
    advance (e.g. ``g_logp = -1/rows`` for a mean cross-entropy): returns the statistics,
    and ``logits`` holds ``dL/dlogits`` afterwards. On the CPU this is
    ``tkm_dl_logits_fwd`` then ``tkm_dl_logits_bwd_inplace`` in one native call; on an
    error the logits are untouched."""
    x, tg, rm = dev.arg(logits), dev.arg(targets), dev.arg(row_mask)
    t, ts = _temps(temperature)
    lse, ent, logp, mx, ls = _alloc_stats(x, tg is not None)
    nf = _native.logits_fwd_bwd_inplace(
        x,
        tg,
        rm,
        t,
        ts,
        lse,
        ent,
        logp,
        mx,
        ls,
        dev.arg(g_logp),
        dev.arg(g_entropy),
        dev.arg(g_lse),
        threads,
        dev.stream_of(x),
    )
    return LogitsStats(lse, ent, logp, mx, ls, nf)
