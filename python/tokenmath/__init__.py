"""tokenmath: the token-level math of LLM post-training on your own tensors.

Logits statistics (log-sum-exp, entropy, target log-prob) and their gradient, advantage
estimators (GRPO, Dr. GRPO, RLOO, REINFORCE++, GAE, ...), policy losses with gradients
(PPO clip + KL, GSPO, CISPO, SAPO) and aggregation, and Merkle-committed token
fingerprints, TRL's high-entropy token mask (``top_entropy_mask``); for runs across
processes, the mergeable partials of a sharded vocabulary
(``logits_partial_blocks`` ... ``logits_bwd_shard``) and of a split batch
(``group_moments``, ``group_moments_merge``): the trainer's collectives move them
(docs/distributed.md): each call runs the C ABI of ``libtokenmath`` (``include/tokenmath.h``) on the
caller's DLPack tensors (NumPy, PyTorch, CuPy, ...) without copying them, and returns
tensors of the caller's framework. Every error status of the C ABI raises
:class:`TokenmathError`. ``tokenmath.torch`` (imported on demand; needs PyTorch) has the
``torch.autograd.Function`` wrapper ``logp_entropy``.
"""

from . import _native
from ._errors import STATUSES, TokenmathError
from .advantages import (
    broadcast_masked,
    dr_grpo_advantage,
    GroupMoments,
    dynamic_sampling_keep,
    gae,
    group_moments,
    group_moments_merge,
    grpo_advantage,
    grpo_advantage_from_moments,
    masked_whiten,
    overlong_penalty,
    overlong_shaped_token_rewards,
    reinforce_pp_advantage,
    reinforce_pp_baseline_advantage,
    returns_to_go,
    rloo_advantage,
)
from .logits import (
    LOGITS_BLOCK,
    ROW_STATS_BYTES,
    LogitsStats,
    logits_bwd,
    logits_bwd_inplace,
    logits_bwd_shard,
    logits_finalize,
    logits_fwd,
    logits_fwd_bwd_inplace,
    logits_merge_block_partials,
    logits_merge_shards,
    logits_partial,
    logits_partial_blocks,
    logits_partial_blocks_len,
)
from .policy import (
    KLStats,
    PolicyKLLoss,
    PolicyLoss,
    PolicyStats,
    PolicyStep,
    agg_chain_inplace,
    agg_loss,
    agg_weights,
    cispo_loss,
    entropy_upstream,
    gspo_loss,
    kl_loss,
    logp_upstream,
    ppo_clip_kl_loss,
    ppo_clip_kl_step,
    ppo_clip_loss,
    sapo_loss,
    tis_weights,
)
from .seed import top_entropy_mask
from . import fingerprint

__version__: str = _native.__version__
#: The version of the linked C ABI (``tkm_version()``).
abi_version: str = _native.abi_version()

__all__ = [
    "STATUSES",
    "TokenmathError",
    "LogitsStats",
    "logits_fwd",
    "logits_bwd",
    "logits_bwd_inplace",
    "logits_fwd_bwd_inplace",
    "LOGITS_BLOCK",
    "ROW_STATS_BYTES",
    "logits_partial_blocks_len",
    "logits_partial_blocks",
    "logits_partial",
    "logits_merge_block_partials",
    "logits_merge_shards",
    "logits_finalize",
    "logits_bwd_shard",
    "grpo_advantage",
    "dr_grpo_advantage",
    "rloo_advantage",
    "broadcast_masked",
    "returns_to_go",
    "reinforce_pp_advantage",
    "reinforce_pp_baseline_advantage",
    "gae",
    "masked_whiten",
    "overlong_penalty",
    "overlong_shaped_token_rewards",
    "dynamic_sampling_keep",
    "GroupMoments",
    "group_moments",
    "group_moments_merge",
    "grpo_advantage_from_moments",
    "PolicyStats",
    "KLStats",
    "PolicyLoss",
    "PolicyKLLoss",
    "PolicyStep",
    "ppo_clip_loss",
    "ppo_clip_kl_loss",
    "ppo_clip_kl_step",
    "gspo_loss",
    "cispo_loss",
    "sapo_loss",
    "kl_loss",
    "tis_weights",
    "agg_loss",
    "agg_weights",
    "agg_chain_inplace",
    "logp_upstream",
    "entropy_upstream",
    "fingerprint",
    "top_entropy_mask",
    "abi_version",
]
