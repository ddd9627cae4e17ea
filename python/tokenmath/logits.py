r"""Logits statistics: the forward, the backward, the backward in place, both fused, and
the sharded-vocabulary form (partials, merge, finalise, shard backward) for
tensor-parallel LM heads.

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

from typing import Any, NamedTuple, Optional, Sequence, Union

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


# ---- a sharded vocabulary (tensor-parallel LM heads) ------------------------------------
#
# Rank k of P holds the logits of vocabulary columns [c_k, c_{k+1}) of every row. Each rank
# computes the *partials* of its shard (fixed-size tuples, carried as opaque uint8 bytes),
# the trainer's own collective all-gathers them, every rank merges them in rank (= column)
# order and finalises, then runs the backward on its own shard with the merged statistics.
# With per-block partials and every shard boundary a multiple of LOGITS_BLOCK, the
# statistics and each shard's gradient are bitwise those of one process on the whole
# vocabulary; see docs/distributed.md for the other cases and their tolerance.

#: Columns per canonical block of the forward (``TKM_LOGITS_BLOCK``): the alignment of
#: shard boundaries for bitwise per-block partials.
LOGITS_BLOCK: int = _native.LOGITS_BLOCK
#: Bytes of one partial tuple (``tkm_row_stats``); partials tensors end in this extent.
ROW_STATS_BYTES: int = _native.ROW_STATS_BYTES


def logits_partial_blocks_len(cols: int) -> int:
    """Tuples per row that :func:`logits_partial_blocks` writes for a shard of ``cols``
    columns: ``ceil(cols / LOGITS_BLOCK)``."""
    return int(_native.logits_partial_blocks_len(int(cols)))


def _partial(logits, col_offset, vocab, targets, temperature, row_mask, blocks, threads):
    x = dev.arg(logits)
    t, ts = _temps(temperature)
    rows = dev.rows_of(x)
    cols = int(tuple(x.shape)[1]) if len(tuple(x.shape)) == 2 else 0
    shape = (rows, logits_partial_blocks_len(cols), ROW_STATS_BYTES) if blocks else (rows, ROW_STATS_BYTES)
    out = dev.empty(x, shape, "uint8")
    _native.logits_partial(
        x, int(col_offset), int(vocab), dev.arg(targets), dev.arg(row_mask), t, ts, blocks, out, threads
    )
    return out


def logits_partial_blocks(
    logits: Tensor,
    col_offset: int,
    vocab: int,
    targets: Optional[Tensor] = None,
    temperature: Temperature = 1.0,
    *,
    row_mask: Optional[Tensor] = None,
    threads: int = 1,
) -> Tensor:
    """Per-block partials of a vocabulary shard (``tkm_logits_partial_blocks``): the form
    that merges **bitwise** into the one-process forward.

    Args:
        logits: ``[rows, cols]`` float32/bfloat16/float16 CPU tensor holding global columns
            ``[col_offset, col_offset + cols)`` (any row stride, e.g. a column slice).
        col_offset: the shard's first global column; a multiple of :data:`LOGITS_BLOCK`.
        vocab: the whole vocabulary size.
        targets: ``[rows]`` int32 **global** target ids (negative = none).
        temperature: a scalar, or ``[rows]`` float32 per-row temperatures.
        row_mask: ``[rows]`` uint8/bool; 0 skips the row.
        threads: CPU threads (same bits for any count).

    Returns:
        ``[rows, logits_partial_blocks_len(cols), ROW_STATS_BYTES]`` uint8 (opaque tuples),
        dense: what the all-gather moves. Merge with :func:`logits_merge_block_partials`.

    Raises:
        TokenmathError: ``INVALID_ARGUMENT`` for an unaligned ``col_offset``,
            ``SHARD_OUT_OF_RANGE`` for a shard outside ``vocab``, and the errors of
            :func:`logits_fwd`.
    """
    return _partial(logits, col_offset, vocab, targets, temperature, row_mask, True, threads)


def logits_partial(
    logits: Tensor,
    col_offset: int,
    vocab: int,
    targets: Optional[Tensor] = None,
    temperature: Temperature = 1.0,
    *,
    row_mask: Optional[Tensor] = None,
    threads: int = 1,
) -> Tensor:
    """One partial tuple per row for a shard cut anywhere (``tkm_logits_partial``):
    ``[rows, ROW_STATS_BYTES]`` uint8. Arguments as :func:`logits_partial_blocks`, but
    ``col_offset`` may be any column. Merged with :func:`logits_merge_shards`, the
    statistics are within ``sharded_stats_tolerance`` of the exact ones (bitwise only for
    shards of equal power-of-two block counts: docs/distributed.md)."""
    return _partial(logits, col_offset, vocab, targets, temperature, row_mask, False, threads)


def _merge(parts: Sequence[Tensor], blocks: bool) -> Tensor:
    ps = [dev.arg(p) for p in parts]
    if not ps:
        raise ValueError("logits merge: no partials given (one per shard, in column order)")
    out = dev.empty(ps[0], (dev.rows_of(ps[0]), ROW_STATS_BYTES), "uint8")
    _native.logits_merge(ps, blocks, out)
    return out


def logits_merge_block_partials(parts: Sequence[Tensor]) -> Tensor:
    """Merges the shards' per-block partials (``tkm_logits_merge_block_partials``), shards
    in column order (= rank order): ``parts[k]`` is shard ``k``'s dense
    ``[rows, blocks_k, ROW_STATS_BYTES]`` uint8 output of :func:`logits_partial_blocks`
    (after the all-gather). Returns ``[rows, ROW_STATS_BYTES]`` merged tuples, bitwise the
    one-process forward's; finish with :func:`logits_finalize`."""
    return _merge(parts, True)


def logits_merge_shards(parts: Sequence[Tensor]) -> Tensor:
    """Merges one tuple per shard (``tkm_logits_merge_shards``), shards in column order:
    ``parts[k]`` is shard ``k``'s ``[rows, ROW_STATS_BYTES]`` output of
    :func:`logits_partial`. Returns ``[rows, ROW_STATS_BYTES]``. Two shards that both
    contain a row's target raise ``DUPLICATE_TARGET``."""
    return _merge(parts, False)


def logits_finalize(
    merged: Tensor, targets: Optional[Tensor] = None, *, row_mask: Optional[Tensor] = None
) -> LogitsStats:
    """Merged partials → the forward's statistics (``tkm_logits_finalize``), as
    :func:`logits_fwd` returns them. ``targets`` and ``row_mask`` must be those given to
    the partials; a kept row whose target no shard held raises ``MISSING_TARGET``."""
    s, tg, rm = dev.arg(merged), dev.arg(targets), dev.arg(row_mask)
    lse, ent, logp, mx, ls = _alloc_stats(s, tg is not None)
    nf = _native.logits_finalize(s, tg, rm, lse, ent, logp, mx, ls)
    return LogitsStats(lse, ent, logp, mx, ls, nf)


def logits_bwd_shard(
    logits: Tensor,
    stats: LogitsStats,
    col_offset: int,
    vocab: int,
    targets: Optional[Tensor] = None,
    temperature: Temperature = 1.0,
    *,
    g_logp: Optional[Tensor] = None,
    g_entropy: Optional[Tensor] = None,
    g_lse: Optional[Tensor] = None,
    row_mask: Optional[Tensor] = None,
    threads: int = 1,
) -> Tensor:
    """The gradient of a shard's columns (``tkm_logits_bwd_shard``): ``dL/dlogits`` for
    global columns ``[col_offset, col_offset + cols)``, given the **full-vocabulary**
    ``stats`` (from :func:`logits_finalize` on the merged partials of every shard).

    Arguments as :func:`logits_bwd` plus the shard's ``col_offset`` (any column) and the
    whole ``vocab``; ``targets`` are global ids. Every shard applies ``g_logp`` through
    ``p_j``; only the shard holding the target adds it at the target column. Returns a new
    ``[rows, cols]`` tensor of the logits' dtype, bitwise equal to those columns of the
    one-process :func:`logits_bwd` given the same statistics.
    """
    x = dev.arg(logits)
    t, ts = _temps(temperature)
    dx = dev.empty_like(x)
    _native.logits_bwd_shard(
        x,
        int(col_offset),
        int(vocab),
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
    )
    return dx
