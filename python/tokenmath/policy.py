r"""Policy losses with their gradients, aggregation, and the upstreams of the logits
backward (the C ABI's ``tkm_*_loss``, ``tkm_agg_*``, ``tkm_*_upstream``).

Every per-token array is ``[rows, cols]`` (responses × tokens): ``logp`` (current policy),
``old_logp`` (behaviour policy), ``adv`` float32, ``mask`` uint8/bool. A loss call returns
the per-token ``loss`` and ``dloss_dlogp`` (0 at masked positions) and the clip metrics;
the scalar is ``agg_loss(loss, mask, mode)`` and the logits backward's upstream is
``g_logp = agg_weights(mask, mode) * dloss_dlogp`` (``agg_chain_inplace`` does that in
place), which :func:`tokenmath.logits_bwd` turns into ``dL/dlogits``.

PPO clip (verl/TRL), with :math:`r = e^{\text{logp} - \text{old\_logp}}`:

.. math:: \ell = \max\big(-A r,\; -A\,\mathrm{clip}(r, 1-\epsilon_{low}, 1+\epsilon_{high})\big)

and for :math:`A < 0` the dual clip :math:`\min(\ell, -cA)`. Options default to verl's
actor defaults (from the C ABI's ``*_options_init``).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence

from . import _device as dev
from . import _native
from . import _options as o

Tensor = Any


class PolicyStats(NamedTuple):
    """The clip metrics of a loss call, as mergeable sums (add across micro-batches and
    ranks, then divide by ``valid_tokens``): verl's ``pg_clipfrac`` is
    ``(clipped_high + clipped_low) / valid_tokens``, ``ppo_kl`` is
    ``neg_log_ratio_sum / valid_tokens``."""

    valid_tokens: int
    clipped_high: int
    clipped_low: int
    clipped_dual: int
    neg_log_ratio_sum: float


class KLStats(NamedTuple):
    """The KL metric: ``kl_sum / valid_tokens`` is the token-mean KL (unscaled)."""

    valid_tokens: int
    kl_sum: float


class PolicyLoss(NamedTuple):
    """Per-token ``loss`` and ``dloss_dlogp`` (``[rows, cols]`` float32) and the metrics."""

    loss: Tensor
    dloss_dlogp: Tensor
    stats: PolicyStats


class PolicyKLLoss(NamedTuple):
    loss: Tensor
    dloss_dlogp: Tensor
    stats: PolicyStats
    kl_stats: KLStats


class PolicyStep(NamedTuple):
    """One fused PPO + KL step: per-token ``loss``, ``g_logp`` (the aggregation weight
    applied: the upstream of the logits backward), the scalar ``total_loss``."""

    loss: Tensor
    g_logp: Tensor
    total_loss: float
    stats: PolicyStats
    kl_stats: KLStats


_PPO = _native.PPO_CLIP_DEFAULTS
_GSPO = _native.GSPO_DEFAULTS
_CISPO = _native.CISPO_DEFAULTS
_SAPO = _native.SAPO_DEFAULTS


def _shape(x: Tensor) -> tuple:
    return tuple(int(s) for s in x.shape)


def _outs(logp: Tensor) -> tuple:
    return dev.empty(logp, _shape(logp), "float32"), dev.empty(logp, _shape(logp), "float32")


def _norm(global_tokens: int, global_seqs: int, dp_size: int, scale_factor: float) -> tuple:
    return (int(global_tokens), int(global_seqs), int(dp_size), float(scale_factor))


def ppo_clip_loss(
    logp: Tensor,
    old_logp: Tensor,
    adv: Tensor,
    mask: Tensor,
    *,
    is_weights: Optional[Tensor] = None,
    eps_low: float = _PPO[0],
    eps_high: float = _PPO[1],
    dual_clip_c: float = _PPO[2],
    log_ratio_clamp: float = _PPO[3],
    threads: int = 1,
) -> PolicyLoss:
    """PPO clipped surrogate per token (module docs) and its gradient w.r.t. ``logp``.

    ``eps_high=0.28``: DAPO clip-higher; ``dual_clip_c=0``: no dual clip (TRL);
    ``log_ratio_clamp``: ``|logp - old_logp|`` clamp before ``exp`` (0 = none);
    ``is_weights``: rollout importance weights (:func:`tis_weights`) multiplied in.
    """
    lp = dev.arg(logp)
    loss, d = _outs(lp)
    clip = (float(eps_low), float(eps_high), float(dual_clip_c), float(log_ratio_clamp))
    st = _native.ppo_clip_loss(lp, dev.arg(old_logp), dev.arg(adv), dev.arg(mask), dev.arg(is_weights), clip, loss, d, threads)
    return PolicyLoss(loss, d, PolicyStats(*st))


def ppo_clip_kl_loss(
    logp: Tensor,
    old_logp: Tensor,
    adv: Tensor,
    mask: Tensor,
    ref_logp: Tensor,
    *,
    kl_coef: float,
    kl: str = "low_var_kl",
    verl_clamps: bool = True,
    is_weights: Optional[Tensor] = None,
    eps_low: float = _PPO[0],
    eps_high: float = _PPO[1],
    dual_clip_c: float = _PPO[2],
    log_ratio_clamp: float = _PPO[3],
    threads: int = 1,
) -> PolicyKLLoss:
    """``loss = ppo_clip * w_is + kl_coef * kl(logp - ref_logp)`` per token, one pass
    (bitwise the sum of :func:`ppo_clip_loss` and ``kl_coef`` × :func:`kl_loss`).
    ``kl``: verl's ``kl_penalty`` names (``"kl"``/``"k1"``, ``"abs"``, ``"mse"``/``"k2"``,
    ``"low_var_kl"``/``"k3"``, ``"k1+"``, ``"k3+"``)."""
    lp = dev.arg(logp)
    loss, d = _outs(lp)
    clip = (float(eps_low), float(eps_high), float(dual_clip_c), float(log_ratio_clamp))
    st, ks = _native.ppo_clip_kl_loss(
        lp,
        dev.arg(old_logp),
        dev.arg(adv),
        dev.arg(mask),
        dev.arg(is_weights),
        dev.arg(ref_logp),
        clip,
        o.pick("KL estimator", o.KL_KINDS, kl),
        bool(verl_clamps),
        float(kl_coef),
        loss,
        d,
        threads,
    )
    return PolicyKLLoss(loss, d, PolicyStats(*st), KLStats(*ks))


def ppo_clip_kl_step(
    logp: Tensor,
    old_logp: Tensor,
    adv: Tensor,
    mask: Tensor,
    ref_logp: Tensor,
    *,
    kl_coef: float,
    mode: str = "token-mean",
    kl: str = "low_var_kl",
    verl_clamps: bool = True,
    is_weights: Optional[Tensor] = None,
    eps_low: float = _PPO[0],
    eps_high: float = _PPO[1],
    dual_clip_c: float = _PPO[2],
    log_ratio_clamp: float = _PPO[3],
    global_tokens: int = 0,
    global_seqs: int = 0,
    dp_size: int = 1,
    scale_factor: float = 0.0,
    threads: int = 1,
) -> PolicyStep:
    """One fused PPO + KL step: :func:`ppo_clip_kl_loss`, :func:`agg_loss` and
    :func:`agg_chain_inplace` in one pass. Pass ``g_logp`` to :func:`tokenmath.logits_bwd`.
    ``mode`` and the norm arguments as :func:`agg_loss`."""
    lp = dev.arg(logp)
    loss, g = _outs(lp)
    clip = (float(eps_low), float(eps_high), float(dual_clip_c), float(log_ratio_clamp))
    total, st, ks = _native.ppo_clip_kl_step(
        lp,
        dev.arg(old_logp),
        dev.arg(adv),
        dev.arg(mask),
        dev.arg(is_weights),
        dev.arg(ref_logp),
        clip,
        o.pick("KL estimator", o.KL_KINDS, kl),
        bool(verl_clamps),
        float(kl_coef),
        o.pick("aggregation mode", o.AGG_MODES, mode),
        _norm(global_tokens, global_seqs, dp_size, scale_factor),
        loss,
        g,
        threads,
    )
    return PolicyStep(loss, g, total, PolicyStats(*st), KLStats(*ks))


def _seq(which, logp, old_logp, adv, mask, is_weights, opts, threads) -> PolicyLoss:
    lp = dev.arg(logp)
    loss, d = _outs(lp)
    st = _native.seq_loss(
        which, lp, dev.arg(old_logp), dev.arg(adv), dev.arg(mask), dev.arg(is_weights), opts, loss, d, threads
    )
    return PolicyLoss(loss, d, PolicyStats(*st))


def gspo_loss(
    logp: Tensor,
    old_logp: Tensor,
    adv: Tensor,
    mask: Tensor,
    *,
    is_weights: Optional[Tensor] = None,
    eps_low: float = _GSPO[0],
    eps_high: float = _GSPO[1],
    seq_log_ratio_cap: float = _GSPO[2],
    threads: int = 1,
) -> PolicyLoss:
    r"""GSPO: the sequence ratio :math:`s_b = \exp(\min(\mathrm{mean}_t(\text{logp} -
    \text{old\_logp}), \text{cap}))`, clipped as PPO, per token. verl aggregates it with
    ``"seq-mean-token-mean"``."""
    return _seq("gspo", logp, old_logp, adv, mask, is_weights, (float(eps_low), float(eps_high), float(seq_log_ratio_cap)), threads)


def cispo_loss(
    logp: Tensor,
    old_logp: Tensor,
    adv: Tensor,
    mask: Tensor,
    *,
    is_weights: Optional[Tensor] = None,
    w_min: float = _CISPO[0],
    w_max: float = _CISPO[1],
    log_ratio_clamp: float = _CISPO[2],
    threads: int = 1,
) -> PolicyLoss:
    r"""CISPO: :math:`\ell = -\mathrm{sg}(w)\,A\,\text{logp}` with the ratio clamped to
    ``[w_min, w_max]`` (verl ``[0.8, 1.2]``; TRL ``w_min=-inf, w_max=5,
    log_ratio_clamp=0``)."""
    return _seq("cispo", logp, old_logp, adv, mask, is_weights, (float(w_min), float(w_max), float(log_ratio_clamp)), threads)


def sapo_loss(
    logp: Tensor,
    old_logp: Tensor,
    adv: Tensor,
    mask: Tensor,
    *,
    is_weights: Optional[Tensor] = None,
    tau_pos: float = _SAPO[0],
    tau_neg: float = _SAPO[1],
    log_ratio_clamp: float = _SAPO[2],
    threads: int = 1,
) -> PolicyLoss:
    r"""SAPO: :math:`\ell = -A\,\sigma(\tau (r - 1))\,4/\tau` (``tau_pos`` for
    :math:`A > 0`, ``tau_neg`` otherwise)."""
    return _seq("sapo", logp, old_logp, adv, mask, is_weights, (float(tau_pos), float(tau_neg), float(log_ratio_clamp)), threads)


def kl_loss(
    logp: Tensor, ref_logp: Tensor, mask: Tensor, *, kl: str = "low_var_kl", verl_clamps: bool = True, threads: int = 1
) -> tuple[Tensor, Tensor, KLStats]:
    r"""Per-token KL estimator of :math:`d = \text{logp} - \text{ref\_logp}` and its
    gradient: k1 :math:`d`, abs :math:`|d|`, k2 :math:`d^2/2`, k3 :math:`e^{-d} + d - 1`
    (verl's ``low_var_kl``, clamped as verl unless ``verl_clamps=False``).
    Returns ``(loss, dloss_dlogp, KLStats)``."""
    lp = dev.arg(logp)
    loss, d = _outs(lp)
    ks = _native.kl_loss(lp, dev.arg(ref_logp), dev.arg(mask), o.pick("KL estimator", o.KL_KINDS, kl), bool(verl_clamps), loss, d, threads)
    return loss, d, KLStats(*ks)


def tis_weights(
    old_logp: Tensor, rollout_logp: Tensor, mask: Tensor, *, level: str = "token", cap: float = 2.0, threads: int = 1
) -> Tensor:
    """Truncated importance weights ``min(exp(old_logp - rollout_logp), cap)`` per token
    (``level="token"``) or one per row from the masked log-ratio sum (``"sequence"``);
    0 at masked positions. Pass as ``is_weights`` to the losses. ``cap=inf``: none."""
    ol = dev.arg(old_logp)
    out = dev.empty(ol, _shape(ol), "float32")
    _native.tis_weights(ol, dev.arg(rollout_logp), dev.arg(mask), o.pick("TIS level", o.TIS_LEVELS, level), float(cap), out, threads)
    return out


def agg_loss(
    loss: Tensor,
    mask: Tensor,
    mode: str = "token-mean",
    *,
    global_tokens: int = 0,
    global_seqs: int = 0,
    dp_size: int = 1,
    scale_factor: float = 0.0,
    threads: int = 1,
) -> float:
    r"""The scalar loss :math:`L = \sum w_{b,t}\,\ell_{b,t}` under verl's ``loss_agg_mode``:
    ``"token-mean"`` (:math:`\sum \ell / T_{valid}`), ``"seq-mean-token-sum"``,
    ``"seq-mean-token-mean"``, ``"seq-mean-token-sum-norm"`` (Dr. GRPO, divides by
    ``scale_factor``, 0 = the padded length). ``global_tokens``/``global_seqs``/``dp_size``:
    verl's data-parallel denominators (0 = local counts). An empty denominator gives 0."""
    return _native.agg_loss(
        dev.arg(loss), dev.arg(mask), o.pick("aggregation mode", o.AGG_MODES, mode), _norm(global_tokens, global_seqs, dp_size, scale_factor), threads
    )


def agg_weights(
    mask: Tensor,
    mode: str = "token-mean",
    *,
    global_tokens: int = 0,
    global_seqs: int = 0,
    dp_size: int = 1,
    scale_factor: float = 0.0,
    threads: int = 1,
) -> Tensor:
    """The aggregation weights ``w = dL/dloss`` of :func:`agg_loss` (``[rows, cols]``
    float32, 0 at masked positions)."""
    m = dev.arg(mask)
    w = dev.empty(m, _shape(m), "float32")
    _native.agg_weights(m, o.pick("aggregation mode", o.AGG_MODES, mode), _norm(global_tokens, global_seqs, dp_size, scale_factor), w, False, threads)
    return w


def agg_chain_inplace(
    d: Tensor,
    mask: Tensor,
    mode: str = "token-mean",
    *,
    global_tokens: int = 0,
    global_seqs: int = 0,
    dp_size: int = 1,
    scale_factor: float = 0.0,
    threads: int = 1,
) -> Tensor:
    """``d *= agg_weights(mask, mode)`` in place (masked positions become 0), without
    materialising the weights: turns a loss call's ``dloss_dlogp`` into the ``g_logp``
    upstream of the logits backward. Returns ``d``."""
    _native.agg_weights(
        dev.arg(mask), o.pick("aggregation mode", o.AGG_MODES, mode), _norm(global_tokens, global_seqs, dp_size, scale_factor), dev.arg(d), True, threads
    )
    return d


def logp_upstream(w: Tensor, terms: Sequence[Tensor], coefs: Sequence[float], *, threads: int = 1) -> Tensor:
    r""":math:`g^{logp} = w \odot \sum_k c_k\,\text{term}_k` (terms summed in order, in f32)
    for :math:`L = \sum_k c_k\,\mathrm{agg}(\ell_k)` whose terms share the weights ``w``."""
    ww = dev.arg(w)
    out = dev.empty(ww, _shape(ww), "float32")
    _native.logp_upstream(ww, [float(c) for c in coefs], tuple(dev.arg(t) for t in terms), out, threads)
    return out


def entropy_upstream(w: Tensor, coef: float, *, threads: int = 1) -> Tensor:
    r"""The entropy-bonus upstream :math:`g^{H} = -c\,w` for :math:`L \mathrel{-}= c\,
    \mathrm{agg}(H)` (verl ``entropy_coeff``); pass as ``g_entropy`` to the backward."""
    ww = dev.arg(w)
    out = dev.empty(ww, _shape(ww), "float32")
    _native.entropy_upstream(ww, float(coef), out, threads)
    return out
