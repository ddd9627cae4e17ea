r"""Advantage estimators (verl / TRL conventions), the C ABI's ``tkm_*_advantage`` family.

Grouping (GRPO, Dr. GRPO, RLOO, REINFORCE++-baseline, dynamic sampling): pass exactly one
of ``group_ids`` (``[n]`` uint32 labels, verl's ``uid``; equal labels form a group, in any
order) or ``group_size`` (TRL's layout: consecutive blocks; ``n`` a multiple of it).

Shapes: per-response vectors are ``[n]`` float32; token-level arrays ``[rows, t]``
float32 with a ``[rows, t]`` uint8/bool ``mask``. Outputs are new tensors of the first
argument's framework and device. Errors (non-finite rewards, bad grouping, wrong dtype or
shape) raise :class:`tokenmath.TokenmathError`.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence, Tuple, Union

from . import _device as dev
from . import _native
from . import _options as o

Tensor = Any


def _n(x: Tensor) -> int:
    return int(tuple(x.shape)[0]) if tuple(x.shape) else 0


def _shape(x: Tensor) -> tuple:
    return tuple(int(s) for s in x.shape)


def grpo_advantage(
    rewards: Tensor,
    group_ids: Optional[Tensor] = None,
    group_size: int = 0,
    *,
    flavor: str = "standard",
    std: str = "unbiased",
    singleton: str = "zero",
    trl_scale: str = "group",
    norm_by_std: bool = True,
    nan: str = "error",
    eps: float = 1e-6,
) -> Tensor:
    r"""GRPO: :math:`A_b = (R_b - \bar R_g) / (\sigma_g + \epsilon)` over ``b``'s group.

    ``flavor``: ``"standard"`` (Welford moments, ``std``/``singleton`` apply),
    ``"verl_loop"`` (verl's ``compute_grpo_outcome_advantage``), ``"verl_vectorized"``,
    ``"trl"`` (contiguous groups; ``trl_scale`` = ``"group"``, ``"batch"``, ``"none"``).
    ``norm_by_std=False`` gives :math:`R - \bar R` (Dr. GRPO). ``nan="ignore"`` is TRL's
    NaN-reward policy (left out, advantage 0). ``eps``: verl 1e-6, TRL 1e-4.
    Returns ``[n]`` float32.
    """
    r, g = dev.arg(rewards), dev.arg(group_ids)
    out = dev.empty(r, (_n(r),), "float32")
    _native.grpo_advantage(
        r,
        g,
        group_size,
        o.pick("GRPO flavor", o.GRPO_FLAVORS, flavor),
        o.pick("std", o.STD_KINDS, std),
        o.pick("singleton policy", o.SINGLETONS, singleton),
        o.pick("TRL scale", o.TRL_SCALES, trl_scale),
        bool(norm_by_std),
        o.pick("NaN policy", o.NAN_POLICIES, nan),
        float(eps),
        out,
    )
    return out


def dr_grpo_advantage(rewards: Tensor, group_ids: Optional[Tensor] = None, group_size: int = 0) -> Tensor:
    r"""Dr. GRPO: :math:`A_b = R_b - \bar R_g` (groups of one get 0). ``[n]`` float32."""
    r = dev.arg(rewards)
    out = dev.empty(r, (_n(r),), "float32")
    _native.dr_grpo_advantage(r, dev.arg(group_ids), group_size, out)
    return out


def rloo_advantage(
    rewards: Tensor, group_ids: Optional[Tensor] = None, group_size: int = 0, *, flavor: str = "standard"
) -> Tensor:
    r"""RLOO: :math:`A_b = R_b - \frac{1}{n_g - 1}\sum_{c \ne b} R_c`, i.e.
    :math:`\frac{n_g}{n_g-1}(R_b - \bar R_g)`. ``flavor``: ``"standard"``, ``"verl_loop"``,
    ``"verl_vectorized"``, ``"trl"``, ``"trl_normalized"``. ``[n]`` float32."""
    r = dev.arg(rewards)
    out = dev.empty(r, (_n(r),), "float32")
    _native.rloo_advantage(r, dev.arg(group_ids), group_size, o.pick("RLOO flavor", o.RLOO_FLAVORS, flavor), out)
    return out


def broadcast_masked(a_seq: Tensor, mask: Tensor) -> Tensor:
    """``out[b, j] = a_seq[b]`` where ``mask[b, j]``, else 0: ``[rows]`` → ``[rows, t]``."""
    a, m = dev.arg(a_seq), dev.arg(mask)
    out = dev.empty(a, _shape(m), "float32")
    _native.broadcast_masked(a, m, out)
    return out


def returns_to_go(r: Tensor, mask: Tensor, gamma: float = 1.0) -> Tensor:
    r"""Discounted returns with EOS reset (verl's REINFORCE++ recurrence):
    :math:`G_t = r_t + \gamma\,c`, :math:`c = G_t` if ``mask[t]`` else 0. ``[rows, t]``."""
    rr, m = dev.arg(r), dev.arg(mask)
    out = dev.empty(rr, _shape(rr), "float32")
    _native.returns_to_go(rr, m, float(gamma), out)
    return out


def reinforce_pp_advantage(r: Tensor, mask: Tensor, gamma: float = 1.0, *, compat: str = "library") -> Tuple[Tensor, Tensor]:
    """REINFORCE++: ``(adv, returns)`` with ``adv = masked_whiten(returns_to_go(r))`` over
    all valid tokens (eps 1e-8; 0 at padding). ``compat="verl"``: verl's exact forms."""
    rr, m = dev.arg(r), dev.arg(mask)
    adv, ret = dev.empty(rr, _shape(rr), "float32"), dev.empty(rr, _shape(rr), "float32")
    _native.reinforce_pp_advantage(rr, m, float(gamma), o.pick("compat mode", o.COMPAT, compat), adv, ret)
    return adv, ret


def reinforce_pp_baseline_advantage(
    rewards: Tensor,
    mask: Tensor,
    group_ids: Optional[Tensor] = None,
    group_size: int = 0,
    *,
    singleton: str = "zero",
    compat: str = "library",
) -> Tensor:
    r"""REINFORCE++-baseline: :math:`R_b - \bar R_g` tiled over row ``b``'s valid tokens,
    whitened over all valid tokens. ``rewards`` ``[rows]``, ``mask``/result ``[rows, t]``.
    verl: ``singleton="mean_zero_std_one"`` (a group of one keeps ``A = R``)."""
    r, m = dev.arg(rewards), dev.arg(mask)
    out = dev.empty(r, _shape(m), "float32")
    _native.reinforce_pp_baseline_advantage(
        r,
        dev.arg(group_ids),
        group_size,
        m,
        o.pick("singleton policy", o.SINGLETONS, singleton),
        o.pick("compat mode", o.COMPAT, compat),
        out,
    )
    return out


def gae(
    r: Tensor, values: Tensor, mask: Tensor, gamma: float = 1.0, lam: float = 1.0, *, compat: str = "library"
) -> Tuple[Tensor, Tensor]:
    r"""GAE (verl ``compute_gae_advantage_return``): :math:`\delta_t = r_t + \gamma V_{t+1}
    - V_t`, :math:`A_t = \delta_t + \gamma\lambda A_{t+1}` over valid tokens; returns
    ``(masked_whiten(A), A + V)``, both ``[rows, t]``."""
    rr, v, m = dev.arg(r), dev.arg(values), dev.arg(mask)
    adv, ret = dev.empty(rr, _shape(rr), "float32"), dev.empty(rr, _shape(rr), "float32")
    _native.gae(rr, v, m, float(gamma), float(lam), o.pick("compat mode", o.COMPAT, compat), adv, ret)
    return adv, ret


def masked_whiten(x: Tensor, mask: Tensor, eps: float = 1e-8, *, compat: str = "library") -> Tensor:
    r""":math:`(x - \mu) / \sqrt{\sigma^2_{unbiased} + \epsilon}` with moments over
    ``mask != 0`` (any shape, ``mask`` of the same shape); padding 0 (``"library"``) or the
    same formula (``"verl"``)."""
    xx, m = dev.arg(x), dev.arg(mask)
    out = dev.empty(xx, _shape(xx), "float32")
    _native.masked_whiten(xx, m, float(eps), o.pick("compat mode", o.COMPAT, compat), out)
    return out


_OL = _native.OVERLONG_DEFAULTS


def overlong_penalty(length: int, *, max_len: int = _OL[0], buffer_len: int = _OL[1], penalty_factor: float = _OL[2]) -> float:
    r"""DAPO's soft overlong penalty of a response of ``length`` tokens:
    :math:`\min(-(L - (L_{max} - L_{buf})) / L_{buf} \cdot f, 0)`."""
    return _native.overlong_penalty(int(length), int(max_len), int(buffer_len), float(penalty_factor))


def overlong_shaped_token_rewards(
    scores: Tensor,
    mask: Tensor,
    *,
    max_len: int = _OL[0],
    buffer_len: int = _OL[1],
    penalty_factor: float = _OL[2],
) -> Tensor:
    """DAPO token rewards ``[rows, t]``: ``scores[b] + overlong_penalty(L_b)`` at the last
    valid token of row ``b``, 0 elsewhere."""
    s, m = dev.arg(scores), dev.arg(mask)
    out = dev.empty(s, _shape(m), "float32")
    _native.overlong_shaped_token_rewards(s, m, int(max_len), int(buffer_len), float(penalty_factor), out)
    return out


def dynamic_sampling_keep(metric: Tensor, group_ids: Optional[Tensor] = None, group_size: int = 0) -> Tuple[Tensor, int]:
    """DAPO's dynamic-sampling filter: ``(keep, kept_groups)``, ``keep[b] = 1`` (uint8) for
    responses of groups whose metric values are not all equal (singletons kept)."""
    x = dev.arg(metric)
    keep = dev.empty(x, (_n(x),), "uint8")
    kept = _native.dynamic_sampling_keep(x, dev.arg(group_ids), group_size, keep)
    return keep, kept


# ---- a split batch (data parallel): mergeable group moments ---------------------------------


class GroupMoments(NamedTuple):
    """A group-moment table: one entry per distinct group, in order of first appearance.

    The plain bytes a data-parallel trainer all-gathers (4 + 24 bytes per group)."""

    #: ``[K]`` uint32 group ids (the labels; the block index for ``group_size`` grouping).
    ids: Tensor
    #: ``[K, 3]`` float64 ``(n, mean, M2)`` per group (Chan et al.'s mergeable moments).
    moments: Tensor


def group_moments(
    x: Tensor, group_ids: Optional[Tensor] = None, group_size: int = 0, *, weight: Optional[Tensor] = None
) -> GroupMoments:
    """Per-group moments of ``x`` (``[n]`` float32), grouped as :func:`grpo_advantage`
    (``tkm_group_moments``): members pushed in ascending row order, in f64. ``weight``
    (``[n]`` float32, finite, >= 0; None = 1) gives the weighted form, weight 0 leaves a
    row out.

    For data parallelism give every rank's rows their **global** ids (verl's ``uid``):
    ``group_size`` blocks are numbered locally and cannot be merged across ranks.
    """
    xx, g, w = dev.arg(x), dev.arg(group_ids), dev.arg(weight)
    n = _n(xx)
    ids, mom = dev.empty(xx, (n,), "uint32"), dev.empty(xx, (n, 3), "float64")
    k = _native.group_moments(xx, g, int(group_size), w, ids, mom)
    return GroupMoments(ids[:k], mom[:k])


def group_moments_merge(tables: Union[GroupMoments, Sequence[GroupMoments]]) -> GroupMoments:
    """Merges group-moment tables (``tkm_group_moments_merge``): ``tables`` is every rank's
    :func:`group_moments` table **in ascending rank order** (a list, or one table holding
    their concatenation, as an all-gather leaves it). Entries with equal ids are merged in
    entry order; the result lists each id at its first entry. Never merge by all-reduce:
    its summation order is the engine's.

    A group whose rows all lived on one rank gets exactly the moments of one
    :func:`group_moments` call on the whole batch; a split group agrees within the merge's
    rounding (relative ``~n 2^-52``), bitwise reproducible for the same split.
    """
    if isinstance(tables, GroupMoments):
        ids, mom = dev.arg(tables.ids), dev.arg(tables.moments)
    else:
        tables = list(tables)
        if not tables:
            raise ValueError("group_moments_merge: no tables given")
        ids, mom = _concat([t.ids for t in tables]), _concat([t.moments for t in tables])
    e = _n(ids)
    ids_out, mom_out = dev.empty(mom, (e,), "uint32"), dev.empty(mom, (e, 3), "float64")
    k = _native.group_moments_merge(ids, mom, ids_out, mom_out)
    return GroupMoments(ids_out[:k], mom_out[:k])


def _concat(xs: Sequence[Tensor]) -> Tensor:
    """Concatenation along the first axis in the tensors' own framework."""
    x0 = dev.arg(xs[0])
    if dev.framework(x0) == "torch":
        import torch

        return torch.cat([dev.arg(x) for x in xs])
    if dev.framework(x0) == "cupy":
        import cupy

        return cupy.concatenate([dev.arg(x) for x in xs])
    import numpy

    return numpy.concatenate([numpy.asarray(x) for x in xs])


def grpo_advantage_from_moments(
    rewards: Tensor,
    group_ids: Tensor,
    table: GroupMoments,
    *,
    flavor: str = "standard",
    std: str = "unbiased",
    singleton: str = "zero",
    norm_by_std: bool = True,
    eps: float = 1e-6,
) -> Tensor:
    """GRPO advantages of ``rewards`` (``[n]`` float32, ``[n]`` uint32 ``group_ids``) from
    a moment table computed elsewhere (``tkm_grpo_advantage_from_moments``), e.g. the
    :func:`group_moments_merge` of every rank's table: the data-parallel form of
    :func:`grpo_advantage` (``flavor`` ``"standard"`` or ``"verl_loop"``, the two defined
    by ``(n, mean, M2)``). With the whole batch's table it is bitwise
    :func:`grpo_advantage` with ``group_ids``. Returns ``[n]`` float32."""
    r = dev.arg(rewards)
    out = dev.empty(r, (_n(r),), "float32")
    _native.grpo_advantage_from_moments(
        r,
        dev.arg(group_ids),
        dev.arg(table.ids),
        dev.arg(table.moments),
        o.pick("GRPO flavor", o.GRPO_FLAVORS, flavor),
        o.pick("std", o.STD_KINDS, std),
        o.pick("singleton policy", o.SINGLETONS, singleton),
        bool(norm_by_std),
        float(eps),
        out,
    )
    return out
