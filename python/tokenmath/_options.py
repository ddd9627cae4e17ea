"""String option names (verl/TRL spelling) → the C ABI's integer codes (from `_native`)."""

from __future__ import annotations

from typing import Mapping

from . import _native as n


def pick(kind: str, table: Mapping[str, int], value: str) -> int:
    """`table[value]`, or a ValueError naming the choices (before the C ABI is called)."""
    try:
        return table[value]
    except (KeyError, TypeError):
        raise ValueError(f"unknown {kind} {value!r}; expected one of {sorted(table)}") from None


GRPO_FLAVORS = {
    "standard": n.GRPO_STANDARD,
    "verl_loop": n.GRPO_VERL_LOOP,
    "verl_vectorized": n.GRPO_VERL_VECTORIZED,
    "trl": n.GRPO_TRL,
}
STD_KINDS = {"unbiased": n.STD_UNBIASED, "population": n.STD_POPULATION}
SINGLETONS = {"zero": n.SINGLETON_ZERO, "mean_zero_std_one": n.SINGLETON_MEAN_ZERO_STD_ONE}
TRL_SCALES = {"group": n.TRL_SCALE_GROUP, "batch": n.TRL_SCALE_BATCH, "none": n.TRL_SCALE_NONE}
NAN_POLICIES = {"error": n.NAN_ERROR, "ignore": n.NAN_IGNORE_AND_ZERO}
RLOO_FLAVORS = {
    "standard": n.RLOO_STANDARD,
    "verl_loop": n.RLOO_VERL_LOOP,
    "verl_vectorized": n.RLOO_VERL_VECTORIZED,
    "trl": n.RLOO_TRL,
    "trl_normalized": n.RLOO_TRL_NORMALIZED,
}
COMPAT = {"library": n.COMPAT_LIBRARY, "verl": n.COMPAT_VERL}
# verl's `loss_agg_mode` strings.
AGG_MODES = {
    "token-mean": n.AGG_TOKEN_MEAN,
    "seq-mean-token-sum": n.AGG_SEQ_MEAN_TOKEN_SUM,
    "seq-mean-token-mean": n.AGG_SEQ_MEAN_TOKEN_MEAN,
    "seq-mean-token-sum-norm": n.AGG_SEQ_MEAN_TOKEN_SUM_NORM,
}
# verl's `kl_penalty` strings and their k-names.
KL_KINDS = {
    "kl": n.KL_K1,
    "k1": n.KL_K1,
    "abs": n.KL_ABS,
    "mse": n.KL_K2,
    "k2": n.KL_K2,
    "low_var_kl": n.KL_K3,
    "k3": n.KL_K3,
    "k1+": n.KL_K1_PLUS,
    "k3+": n.KL_K3_PLUS,
}
TIS_LEVELS = {"token": n.TIS_TOKEN, "sequence": n.TIS_SEQUENCE}
