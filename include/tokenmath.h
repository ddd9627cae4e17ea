/*
 * tokenmath.h -- the C ABI of tokenmath (libtokenmath.so / libtokenmath.a).
 *
 * Token-level math of LLM post-training: logits statistics (log-sum-exp, entropy, target
 * log-prob, their gradient, vocabulary-shard partials), advantages (GRPO, Dr. GRPO, RLOO,
 * REINFORCE++, GAE, returns-to-go, whitening, DAPO's overlong shaping and dynamic sampling),
 * policy losses (PPO clip, PPO + KL and the fused step, GSPO, CISPO, SAPO, KL estimators,
 * truncated importance weights) with their aggregation and upstreams, and token fingerprint
 * commitments (canonical encodings, SimHash, BLAKE3 Merkle roots, inclusion and consistency
 * proofs, signed tree heads, audit sampling). Every function is a pure function of
 * caller-owned buffers, except the streaming tree handle (tkm_fp_tree).
 *
 * RULES (they hold for every function in this header)
 *
 *  1. Status. Every function that can fail returns a tkm_status (a uint32_t): TKM_STATUS_OK
 *     (0) on success, a specific nonzero code otherwise. tkm_status_str() describes any
 *     integer (unknown codes give "unknown status"). Codes are never renumbered; new codes
 *     are appended.
 *  2. Outputs on success only. No output buffer is written unless the call returns
 *     TKM_STATUS_OK: every argument is validated first, and results of kernels that can
 *     fail part-way (forward, merges, finalize, advantages, policy losses, proofs) are
 *     computed into internal scratch memory and copied out at the end. The gradient
 *     kernels (tkm_logits_bwd, tkm_logits_bwd_inplace and their tkm_dl_ forms) and
 *     tkm_agg_chain_inplace write straight into dx / the logits / d, which is safe because
 *     nothing can fail after their validation.
 *  3. NULL. A pointer to an array may be NULL only when the array has zero elements.
 *     Arguments documented as optional ("NULL = ...") take NULL as "absent". Any other NULL
 *     is TKM_STATUS_NULL_POINTER, checked before anything is read or written. Pointers must
 *     be aligned to their element type (TKM_STATUS_MISALIGNED).
 *  4. Sizes. Counts are size_t; every size computation (rows * stride, bytes) is checked
 *     (TKM_STATUS_SIZE_OVERFLOW), lengths are in elements, strides in elements. 2-D arrays
 *     are row-major with an explicit row stride (>= the row length, TKM_STATUS_BAD_STRIDE);
 *     element (r, c) is at data[r * row_stride + c]. Elements between rows are never read
 *     or written.
 *  5. Ownership. The library never keeps a pointer after a call returns and never frees
 *     caller memory. The only object it allocates for the caller is tkm_fp_tree (created
 *     by tkm_fp_tree_new, released by tkm_fp_tree_free). Returned strings are static.
 *  6. No unwinding. No call ever unwinds into the caller: a Rust panic (a bug) is caught at
 *     the boundary and returned as TKM_STATUS_INTERNAL_PANIC, with no output written.
 *     (Allocation failure of scratch memory is TKM_STATUS_OUT_OF_MEMORY.)
 *  7. Threads. Every function is thread-safe for distinct output buffers: the library has
 *     no global mutable state. A tkm_fp_tree is not synchronised: use it from one thread
 *     at a time (it may move between threads). Inputs may be shared between concurrent
 *     calls. tkm_exec_options.threads splits a call's rows over that many OS threads; the
 *     results are bitwise identical for every thread count and every backend.
 *  8. Options structs start with size_t struct_size. Initialise them with their _init()
 *     function (which sets struct_size = sizeof(struct) of this header), then change fields.
 *     A struct_size smaller than the library's (an older header) is accepted when it ends
 *     on a field boundary: the missing fields take their defaults. A larger struct_size (a
 *     newer header) is accepted only if every byte beyond the library's struct is zero.
 *     Anything else is TKM_STATUS_BAD_STRUCT_SIZE. A NULL options pointer means defaults.
 *  9. Dtypes. Element types are tkm_dtype codes: TKM_DTYPE_F32 (float), TKM_DTYPE_BF16
 *     and TKM_DTYPE_F16 (passed as uint16_t bit patterns). bf16/f16 are converted to f32
 *     exactly on load; all arithmetic and accumulation is f32 or wider. Other codes are
 *     TKM_STATUS_BAD_DTYPE. Scalar hyper-parameters are float (never promoted).
 * 10. Aliasing. Outputs must not overlap inputs unless a function says so; the gradient
 *     kernels and tkm_agg_chain_inplace check it (TKM_STATUS_OVERLAP).
 * 11. DLPack. The tkm_dl_* functions take const DLTensor* (dlpack.h, DLPack v1.1, installed
 *     next to this header) and validate every field before use: device (first: all CPU
 *     memory -- kDLCPU, or pinned kDLCUDAHost/kDLROCMHost -- or all on one kDLCUDA device;
 *     a mixture is TKM_STATUS_DEVICE_MISMATCH, other devices TKM_STATUS_UNSUPPORTED_DEVICE;
 *     kDLCUDA tensors run on tkm_exec_options.cuda_stream in its gpu_mode, or give
 *     TKM_STATUS_CUDA_UNAVAILABLE from a library built without CUDA -- every build today,
 *     see tkm_cuda_available), ndim (TKM_STATUS_BAD_TENSOR), dtype code/bits and
 *     lanes == 1 (float32 {2,32}, bfloat16 {4,16}, float16 {2,16}; int32 targets, uint8 or
 *     bool masks; else TKM_STATUS_BAD_DTYPE), shape (non-negative, consistent), strides in
 *     elements or NULL (compact row-major; matrices may have any row stride >= the row
 *     length with unit column stride, vectors must be contiguous; else
 *     TKM_STATUS_BAD_STRIDE) and byte_offset (added to data; the result must be aligned).
 *     The 256-byte alignment that dlpack.h mentions is not required. Tensors are borrowed
 *     for the duration of the call; DLManagedTensor deleters are never called.
 * 12. Versions. TKM_VERSION_MAJOR/MINOR/PATCH describe this header; tkm_version() the
 *     loaded library. While the major version is 0, a minor bump may change the ABI (the
 *     shared library's soname is libtokenmath.so.0.MINOR).
 * 13. Groups. The functions that group responses (tkm_grpo_advantage,
 *     tkm_dr_grpo_advantage, tkm_rloo_advantage, tkm_reinforce_pp_baseline_advantage,
 *     tkm_dynamic_sampling_keep) take `const uint32_t *group_ids, size_t group_size`, and exactly one of the
 *     two must be given: group_ids != NULL (n arbitrary labels, verl's uid; equal labels
 *     form a group, in any order) with group_size == 0, or group_ids == NULL with
 *     group_size > 0 (TRL's layout: consecutive blocks of group_size; n must be a multiple
 *     of it). Both or neither is TKM_STATUS_INVALID_ARGUMENT.
 * 14. Saved statistics. The logits backward reads the forward's max, log_sum and entropy
 *     (never lse = max + log_sum, whose rounding at large |max| would swamp log_sum): keep
 *     those three per row from tkm_logits_fwd / tkm_logits_finalize.
 *
 * Linking: shared, -ltokenmath (pkg-config tokenmath, or CMake find_package(tokenmath) and
 * target tokenmath::tokenmath). Static: libtokenmath.a plus the system libraries printed by
 * `cargo rustc -p tokenmath-ffi --release --crate-type staticlib -- --print native-static-libs`
 * (on x86_64 Linux: -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc); pkg-config --static
 * tokenmath prints them. Do not link two Rust static libraries into one binary.
 */


#ifndef TOKENMATH_H
#define TOKENMATH_H

/* Generated by cbindgen 0.29.4 from ffi/src (see ffi/cbindgen.toml). Do not edit. */

#include <stddef.h>
#include <stdint.h>
#include "dlpack.h"

/**
 * Major version of the library this header belongs to.
 */
#define TKM_VERSION_MAJOR 0

/**
 * Minor version of the library this header belongs to.
 */
#define TKM_VERSION_MINOR 1

/**
 * Patch version of the library this header belongs to.
 */
#define TKM_VERSION_PATCH 0

/**
 * GRPO, the library form: `(R - mean) / (std + eps)` with Welford group moments
 * (`std_kind`, `singleton` apply).
 */
#define TKM_GRPO_STANDARD 0

/**
 * GRPO as verl's `compute_grpo_outcome_advantage` (unbiased std, a singleton gets
 * mean 0, std 1).
 */
#define TKM_GRPO_VERL_LOOP 1

/**
 * GRPO as verl's vectorised form (`sqrt(max(var, eps)) + eps`).
 */
#define TKM_GRPO_VERL_VECTORIZED 2

/**
 * GRPO as TRL (contiguous groups only; `trl_scale` applies).
 */
#define TKM_GRPO_TRL 3

/**
 * Unbiased (Bessel-corrected) standard deviation, `M2/(n-1)` (default).
 */
#define TKM_STD_UNBIASED 0

/**
 * Population standard deviation, `M2/n`.
 */
#define TKM_STD_POPULATION 1

/**
 * A group with fewer than two scorable rewards gets advantage 0 (default).
 */
#define TKM_SINGLETON_ZERO 0

/**
 * A group with fewer than two scorable rewards uses mean 0, std 1 (verl's loop).
 */
#define TKM_SINGLETON_MEAN_ZERO_STD_ONE 1

/**
 * TRL `scale_rewards="group"`: divide by the group's std (default).
 */
#define TKM_TRL_SCALE_GROUP 0

/**
 * TRL `scale_rewards="batch"`: divide by the whole batch's std.
 */
#define TKM_TRL_SCALE_BATCH 1

/**
 * TRL `scale_rewards="none"`: no division.
 */
#define TKM_TRL_SCALE_NONE 2

/**
 * A NaN reward is an error, `TKM_STATUS_NON_FINITE` (default).
 */
#define TKM_NAN_ERROR 0

/**
 * TRL's semantics: a NaN reward is unscorable, left out of the statistics, advantage 0.
 */
#define TKM_NAN_IGNORE_AND_ZERO 1

/**
 * RLOO, the library form `n/(n-1) (R - mean)`; a singleton gets 0.
 */
#define TKM_RLOO_STANDARD 0

/**
 * RLOO as verl's loop form (a singleton keeps `A = R`).
 */
#define TKM_RLOO_VERL_LOOP 1

/**
 * RLOO as verl's vectorised form.
 */
#define TKM_RLOO_VERL_VECTORIZED 2

/**
 * RLOO as TRL (contiguous groups of size >= 2), without advantage normalisation.
 */
#define TKM_RLOO_TRL 3

/**
 * RLOO as TRL with `normalize_advantages=True`.
 */
#define TKM_RLOO_TRL_NORMALIZED 4

/**
 * Token-level estimators, the library form: fewer than two valid tokens whiten to 0, padding
 * outputs are 0 (default).
 */
#define TKM_COMPAT_LIBRARY 0

/**
 * Token-level estimators exactly as verl `torch_functional.py`: `sum(mask) + 1e-8` mean
 * denominators, `TKM_STATUS_INVALID_ARGUMENT` for fewer than two valid tokens, whitened
 * values written into padding too (where the function says so).
 */
#define TKM_COMPAT_VERL 1

/**
 * Pick the fastest backend this CPU supports (the default).
 */
#define TKM_BACKEND_AUTO 0

/**
 * The portable backend (plain Rust, runs everywhere).
 */
#define TKM_BACKEND_PORTABLE 1

/**
 * The x86-64 AVX2 + FMA + F16C backend (`TKM_STATUS_BACKEND_UNAVAILABLE` where the CPU or
 * the target lacks it).
 */
#define TKM_BACKEND_AVX2_FMA 2

/**
 * The x86-64 AVX-512 backend (F, BW, DQ, VL, on top of AVX2 + FMA + F16C; its own code in
 * the logits statistics, the policy step, TW-GRPO's weights and the cDPO scores, the AVX2
 * code elsewhere; `TKM_STATUS_BACKEND_UNAVAILABLE` where the CPU or the target lacks it).
 */
#define TKM_BACKEND_AVX512 3

/**
 * GPU calls compute in `core`'s operation order (the default; see `tkm_exec_options.gpu_mode`).
 */
#define TKM_GPU_MODE_CANONICAL 0

/**
 * GPU calls use the fast kernels: the hardware `exp`, one pass per row; deterministic, not
 * bitwise equal to the CPU (its error bound: `gpu/README.md`, tested on the Rust GPU crate).
 * Accepted and validated today; calls on CUDA memory, which would read it, answer
 * `TKM_STATUS_CUDA_UNAVAILABLE` until the library's CUDA launch path exists.
 */
#define TKM_GPU_MODE_FAST 1

/**
 * The largest accepted `threads` value.
 */
#define TKM_MAX_THREADS 1024

/**
 * The episodic bonus `1[N_e = 1]` (the source's learner; default).
 */
#define TKM_EPISODIC_FIRST_VISIT 0

/**
 * The episodic bonus `1/sqrt(N_e)` (the source's actor).
 */
#define TKM_EPISODIC_INV_SQRT 1

/**
 * Combine by product `b_e * b_g` (the source's default).
 */
#define TKM_COMBINE_MULT 0

/**
 * Combine by sum `b_e + coeff * b_g` (`coeff` = the source's `global_bonus_coeff`, 1.0).
 */
#define TKM_COMBINE_ADD 1

/**
 * No normalisation.
 */
#define TKM_REWARD_NORM_NONE 0

/**
 * Normalise the intrinsic rewards (the source's default).
 */
#define TKM_REWARD_NORM_INT 1

/**
 * Normalise the extrinsic rewards.
 */
#define TKM_REWARD_NORM_EXT 2

/**
 * Normalise the total after assembly.
 */
#define TKM_REWARD_NORM_ALL 3

/**
 * Count every element of a batch (the library; default).
 */
#define TKM_MOMENTS_LIBRARY 0

/**
 * The source's arithmetic: a `[T, B]` batch counts `time_steps = T` (single process only).
 */
#define TKM_MOMENTS_E3B 1

/**
 * Bytes of a hash (leaf hash, node hash, root).
 */
#define TKM_FP_HASH_LEN 32

/**
 * Bytes of a leaf salt.
 */
#define TKM_FP_SALT_LEN 16

/**
 * Leaf fingerprint kind: no fingerprint (token id only).
 */
#define TKM_FP_KIND_NONE 0

/**
 * Leaf fingerprint kind: canonical f32 bytes.
 */
#define TKM_FP_KIND_F32_CANONICAL 1

/**
 * Leaf fingerprint kind: L2-normalised i8 codes.
 */
#define TKM_FP_KIND_I8_UNIT 2

/**
 * Leaf fingerprint kind: bf16 bytes.
 */
#define TKM_FP_KIND_BF16 3

/**
 * Leaf fingerprint kind: SimHash signature and guard words.
 */
#define TKM_FP_KIND_SIMHASH 4

/**
 * Bytes of a signed tree head before its context: `"tokenmath-sth"` (13), version (1),
 * `hash_id` (1), `n` (8, little-endian), root (32), `ctx_len` (4, little-endian).
 */
#define TKM_FP_HEAD_FIXED_LEN 59

/**
 * SimHash planes with `+-1` entries, one XOF bit each (bit-exact everywhere; the default).
 */
#define TKM_FP_PLANES_RADEMACHER 0

/**
 * SimHash planes with standard normal entries (Box-Muller with the pure-Rust libm).
 */
#define TKM_FP_PLANES_GAUSSIAN 1

/**
 * `ĥ` as the released HAPO code computes it (`scale_neg < 0`: `ĥ >= 0` on both sides of the pivot).
 */
#define TKM_HAPO_SIGN_CODE_COMPAT 0

/**
 * `ĥ` as the HAPO paper describes it (`ĥ` in `[-1, 0)` below the pivot).
 */
#define TKM_HAPO_SIGN_INTENDED 1

/**
 * Columns per canonical block: shards whose boundaries are multiples of it reproduce the
 * unsharded forward bitwise (see `tkm_logits_partial_blocks`).
 */
#define TKM_LOGITS_BLOCK 2048

/**
 * Aggregation `"token-mean"` (verl's default).
 */
#define TKM_AGG_TOKEN_MEAN 0

/**
 * Aggregation `"seq-mean-token-sum"`.
 */
#define TKM_AGG_SEQ_MEAN_TOKEN_SUM 1

/**
 * Aggregation `"seq-mean-token-mean"` (GSPO, SAPO).
 */
#define TKM_AGG_SEQ_MEAN_TOKEN_MEAN 2

/**
 * Aggregation `"seq-mean-token-sum-norm"` (Dr. GRPO).
 */
#define TKM_AGG_SEQ_MEAN_TOKEN_SUM_NORM 3

/**
 * KL estimator `d` ("kl", "k1"); `d = logp - ref_logp`.
 */
#define TKM_KL_K1 0

/**
 * KL estimator `|d|` ("abs").
 */
#define TKM_KL_ABS 1

/**
 * KL estimator `d^2 / 2` ("mse", "k2").
 */
#define TKM_KL_K2 2

/**
 * KL estimator `exp(-d) + d - 1` ("low_var_kl", "k3"; the default).
 */
#define TKM_KL_K3 3

/**
 * The value of k1 with the gradient of k2 ("k1+").
 */
#define TKM_KL_K1_PLUS 4

/**
 * The value of k3 with the gradient of k2 ("k3+").
 */
#define TKM_KL_K3_PLUS 5

/**
 * Token-level truncated importance weights `min(exp(old_logp - rollout_logp), cap)`.
 */
#define TKM_TIS_TOKEN 0

/**
 * Sequence-level: one weight per row from the masked sum of the log-ratios.
 */
#define TKM_TIS_SEQUENCE 1

/**
 * `tkm_treg_reg_options.reduction`: sum over the mask (default).
 */
#define TKM_REDUCTION_SUM 0

/**
 * `tkm_treg_reg_options.reduction`: mean over the mask (0 for an empty mask).
 */
#define TKM_REDUCTION_MEAN_OVER_MASK 1

/**
 * `tkm_cdpo_options.form`: per-position margins averaged over all `rows * t` entries
 * (the released code; default).
 */
#define TKM_CDPO_POSITIONWISE_CODE 0

/**
 * `tkm_cdpo_options.form`: one weighted margin per sequence pair, averaged over pairs.
 */
#define TKM_CDPO_SEQUENCE_WEIGHTED 1

/**
 * `tkm_value_loss` kind: `(sigmoid(x) - y)^2` (default).
 */
#define TKM_VALUE_LOSS_MSE 0

/**
 * `tkm_value_loss` kind: binary cross-entropy with soft targets, from logits.
 */
#define TKM_VALUE_LOSS_BCE 1

/**
 * Largest-remainder budgets that sum exactly to `total` (default).
 */
#define TKM_BUDGET_LARGEST_REMAINDER 0

/**
 * The source's `trunc(total * w_i)` (sum <= total).
 */
#define TKM_BUDGET_TRUNCATE 1

/**
 * Bilinear, PyTorch `interpolate(mode="bilinear", align_corners=False)` (QuoTA v1).
 */
#define TKM_RESIZE_BILINEAR 0

/**
 * PyTorch `adaptive_avg_pool2d` (QuoTA v2).
 */
#define TKM_RESIZE_ADAPTIVE_AVG_POOL 1

/**
 * Bins of one round of the cross-rank entropy quantile (`uint64_t hist[TKM_RADIX_BINS]`).
 */
#define TKM_RADIX_BINS 256

/**
 * Next step of `tkm_entropy_quantile`: a histogram round.
 */
#define TKM_QUANTILE_STEP_HISTOGRAM 0

/**
 * Next step: the minimum over ranks of `tkm_entropy_quantile_local_min_above`.
 */
#define TKM_QUANTILE_STEP_MIN_ABOVE 1

/**
 * Finished: read `tkm_entropy_quantile_threshold`.
 */
#define TKM_QUANTILE_STEP_DONE 2

/**
 * Positive-sample reinforcement: correct rows only, `A = G`.
 */
#define TKM_NSR_MODE_PSR 0

/**
 * Negative-sample reinforcement: incorrect rows only, `A = G - 1`.
 */
#define TKM_NSR_MODE_NSR 1

/**
 * W-REINFORCE: every row, correct rows weighted by `lambda` (default).
 */
#define TKM_NSR_MODE_WEIGHTED 2

/**
 * GRPO-N: positive-advantage rows keep advantage 0 and stay in every normaliser (default).
 */
#define TKM_NEG_ZERO_POSITIVES 0

/**
 * GRPO-N: positive-advantage rows leave the batch (their mask row is cleared).
 */
#define TKM_NEG_DROP_POSITIVES 1

/**
 * THR: train only on dominant tokens (`|THR| > tau`).
 */
#define TKM_THR_ONLY_DOMINANT 0

/**
 * THR: steer dominant tokens by the sign of THR with `p` (default, `p = 0`: GRPO).
 */
#define TKM_THR_STEER 1

/**
 * scikit-learn's `KMeans(max_iter=300)`: the default number of Lloyd steps.
 */
#define TKM_KMEANS_DEFAULT_ITERS 300

/**
 * `cfg_i = (cfg - 1) * i / (N - 1) + 1` (the code; `N = 1` gives `cfg`).
 */
#define TKM_XAR_CFG_LINEAR 0

/**
 * `cfg_i = (cfg - 1) * (i + 1) / N + 1` (commented out in the code).
 */
#define TKM_XAR_CFG_LINEAR_FROM_FIRST 1

/**
 * `cfg_i = cfg`.
 */
#define TKM_XAR_CFG_CONSTANT 2

/**
 * The drift in the code's operation order (needs `t > 0`).
 */
#define TKM_XAR_DRIFT_CODE 0

/**
 * The drift as `(2 - t) * v + x`.
 */
#define TKM_XAR_DRIFT_CLOSED 1

/**
 * The result of every `tkm_` call that can fail. `TKM_STATUS_OK` (0) is success; every
 * other value is an error, and no output was written (see the header's rules).
 *
 * The numeric values are part of the ABI and never change; new codes are only appended.
 * A status is transported as a `uint32_t` (`tkm_status` is a `uint32_t` typedef in C), so
 * a caller may receive a code added by a newer library: `tkm_status_str` accepts any
 * integer and names unknown ones `"unknown status"`.
 */
enum tkm_status
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : uint32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
  /**
   * Success.
   */
  TKM_STATUS_OK = 0,
  /**
   * A required pointer argument is NULL.
   */
  TKM_STATUS_NULL_POINTER = 1,
  /**
   * A size computation (`rows * row_stride`, bytes of a buffer, ...) overflows `size_t`
   * or exceeds `PTRDIFF_MAX` bytes.
   */
  TKM_STATUS_SIZE_OVERFLOW = 2,
  /**
   * Two lengths that must agree do not (e.g. a proof buffer shorter than the proof).
   */
  TKM_STATUS_LENGTH_MISMATCH = 3,
  /**
   * A row stride smaller than the number of columns.
   */
  TKM_STATUS_BAD_STRIDE = 4,
  /**
   * A label (target token id) is `>= vocab`. Negative targets mean "no target".
   */
  TKM_STATUS_LABEL_OUT_OF_RANGE = 5,
  /**
   * A `tkm_dtype` (or DLPack dtype) that the call does not support.
   */
  TKM_STATUS_BAD_DTYPE = 6,
  /**
   * A DLPack tensor in memory the library cannot use: a `device_type` other than CPU
   * memory (`kDLCPU`, pinned `kDLCUDAHost` / `kDLROCMHost`) and CUDA device memory
   * (`kDLCUDA`).
   */
  TKM_STATUS_UNSUPPORTED_DEVICE = 7,
  /**
   * A NaN or infinite value where only finite values are accepted (rewards).
   */
  TKM_STATUS_NON_FINITE = 8,
  /**
   * A kept row whose logits are all `-inf`: its softmax is undefined.
   */
  TKM_STATUS_NO_FINITE_LOGIT = 9,
  /**
   * A temperature that is not finite and `> 0`.
   */
  TKM_STATUS_INVALID_TEMPERATURE = 10,
  /**
   * The vocabulary (number of columns) is zero.
   */
  TKM_STATUS_EMPTY_VOCAB = 11,
  /**
   * Merged shard partials of a row with a target contain no target column.
   */
  TKM_STATUS_MISSING_TARGET = 12,
  /**
   * Two merged shard partials both contain a row's target column (overlapping shards).
   */
  TKM_STATUS_DUPLICATE_TARGET = 13,
  /**
   * A vocabulary shard that does not fit inside the vocabulary.
   */
  TKM_STATUS_SHARD_OUT_OF_RANGE = 14,
  /**
   * An argument combination or enum value that makes no sense.
   */
  TKM_STATUS_INVALID_ARGUMENT = 15,
  /**
   * The requested SIMD backend cannot run on this CPU.
   */
  TKM_STATUS_BACKEND_UNAVAILABLE = 16,
  /**
   * An options struct whose `struct_size` is not one this library understands.
   */
  TKM_STATUS_BAD_STRUCT_SIZE = 17,
  /**
   * A pointer not aligned to its element type.
   */
  TKM_STATUS_MISALIGNED = 18,
  /**
   * An output buffer overlaps an input buffer where that is not allowed.
   */
  TKM_STATUS_OVERLAP = 19,
  /**
   * Scratch memory could not be allocated.
   */
  TKM_STATUS_OUT_OF_MEMORY = 20,
  /**
   * A leaf index not below the tree size.
   */
  TKM_STATUS_INDEX_OUT_OF_RANGE = 21,
  /**
   * A proof with the wrong number of hashes for its sizes.
   */
  TKM_STATUS_PROOF_LENGTH = 22,
  /**
   * A well-formed proof that does not lead to the expected root.
   */
  TKM_STATUS_PROOF_MISMATCH = 23,
  /**
   * A DLPack tensor whose fields are invalid (ndim, shape, strides, lanes, byte offset).
   */
  TKM_STATUS_BAD_TENSOR = 24,
  /**
   * A CUDA entry point (`tkm_cuda_*`, or a `tkm_dl_*` call on `kDLCUDA` tensors) in a
   * library built without the CUDA launch path. Nothing was read or written.
   */
  TKM_STATUS_CUDA_UNAVAILABLE = 25,
  /**
   * The tensors of one call live on different devices (CPU and CUDA memory, or two CUDA
   * devices): tokenmath never copies between devices.
   */
  TKM_STATUS_DEVICE_MISMATCH = 26,
  /**
   * A Rust panic was caught at the ABI boundary (a bug in tokenmath: please report it).
   * No output was written.
   */
  TKM_STATUS_INTERNAL_PANIC = 255,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum tkm_status tkm_status;
#else
typedef uint32_t tkm_status;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

/**
 * A streaming tree builder (opaque; `O(log n)` memory): create with `tkm_fp_tree_new`,
 * free with `tkm_fp_tree_free`. Not synchronised: one thread at a time (it may move
 * between threads).
 */
typedef struct tkm_fp_tree tkm_fp_tree;

/**
 * GRPO options. Initialise with `tkm_grpo_options_init` (the library defaults:
 * `TKM_GRPO_STANDARD`, unbiased std, singletons 0, std normalisation on, `eps = 1e-6`,
 * NaN rewards rejected), then change fields. NULL means the defaults.
 */
typedef struct tkm_grpo_options {
  /**
   * `sizeof(tkm_grpo_options)` as the caller compiled it.
   */
  size_t struct_size;
  /**
   * `TKM_GRPO_*`.
   */
  uint32_t flavor;
  /**
   * `TKM_STD_*` (`TKM_GRPO_STANDARD` only).
   */
  uint32_t std_kind;
  /**
   * `TKM_SINGLETON_*` (`TKM_GRPO_STANDARD` only).
   */
  uint32_t singleton;
  /**
   * `TKM_TRL_SCALE_*` (`TKM_GRPO_TRL` only).
   */
  uint32_t trl_scale;
  /**
   * 1 = divide by the std (default), 0 = `A = R - mean` (Dr. GRPO).
   */
  uint32_t norm_by_std;
  /**
   * `TKM_NAN_*`.
   */
  uint32_t nan_policy;
  /**
   * The epsilon of the denominator: finite and >= 0 (default 1e-6, verl's; TRL uses 1e-4).
   */
  float eps;
  /**
   * Must be 0.
   */
  uint32_t reserved;
} tkm_grpo_options;

/**
 * Mergeable moments of one group's values (Chan et al.): count (or total weight) `n`, mean
 * and `m2`, the sum of squared deviations from the mean, all in double precision. 24 bytes
 * of plain data that a data-parallel trainer all-gathers as raw bytes; merge them with
 * `tkm_group_moments_merge`, never by hand, so that every rank uses the same order.
 */
typedef struct tkm_moments {
  /**
   * Number of values (or total weight).
   */
  double n;
  /**
   * Mean (0 when `n == 0`).
   */
  double mean;
  /**
   * Sum of squared deviations from the mean.
   */
  double m2;
} tkm_moments;

/**
 * DAPO overlong reward shaping (verl `reward_manager/dapo.py`). Initialise with
 * `tkm_overlong_options_init` (the DAPO paper: `max_len = 20480`, `buffer_len = 4096`,
 * factor 1), then change fields. NULL means the defaults.
 */
typedef struct tkm_overlong_options {
  /**
   * `sizeof(tkm_overlong_options)` as the caller compiled it.
   */
  size_t struct_size;
  /**
   * `L_max`, the maximum response length.
   */
  size_t max_len;
  /**
   * `L_buf`, the soft-punishment buffer (`1 <= buffer_len <= max_len`).
   */
  size_t buffer_len;
  /**
   * The penalty at `L_max` (finite, >= 0).
   */
  float penalty_factor;
} tkm_overlong_options;

/**
 * How a kernel call runs. Every backend and every thread count gives **bitwise identical**
 * results; these options change only the speed. `cuda_stream` and `gpu_mode` are read by
 * calls on CUDA memory only (CPU calls ignore them, but `gpu_mode` must still be valid).
 *
 * Initialise with `tkm_exec_options_init` (which sets `struct_size`), then change fields.
 * Passing NULL where a `const tkm_exec_options*` is expected means the defaults.
 */
typedef struct tkm_exec_options {
  /**
   * `sizeof(tkm_exec_options)` as the caller compiled it (see the ABI-growth rule).
   */
  size_t struct_size;
  /**
   * OS threads to split rows over: 0 or 1 = the calling thread only (default 1), at most
   * `TKM_MAX_THREADS`. Threads are started per call (no pool), so they pay off only for
   * calls of a few milliseconds or more.
   */
  uint32_t threads;
  /**
   * `TKM_BACKEND_AUTO` (default), `TKM_BACKEND_PORTABLE`, `TKM_BACKEND_AVX2_FMA` or
   * `TKM_BACKEND_AVX512`.
   */
  uint32_t backend;
  /**
   * The `CUstream` / `cudaStream_t` on which a call on CUDA memory enqueues its work
   * (NULL = the legacy default stream). The call returns once the work is enqueued; the
   * outputs are ready when the stream reaches it. Ignored by CPU calls.
   */
  void *cuda_stream;
  /**
   * `TKM_GPU_MODE_CANONICAL` (default) or `TKM_GPU_MODE_FAST`, for calls on CUDA memory;
   * CPU calls always compute the canonical order.
   */
  uint32_t gpu_mode;
} tkm_exec_options;

/**
 * Options of `tkm_dop_loss_and_grad`. Initialise with `tkm_dop_options_init` (the paper's
 * best, precision-oriented setting: `beta = -0.25`, `lam_top = lam_tail = 0`, `top_k = 100`,
 * `grad_scale = 1`). NULL means the defaults. `beta = 0, lam_top = lam_tail = 0` is
 * cross-entropy.
 */
typedef struct tkm_dop_options {
  /**
   * `sizeof(tkm_dop_options)` as the caller compiled it.
   */
  size_t struct_size;
  /**
   * `beta` of the positive reward scaling (finite, > -1): < 0 precision, > 0 diversity.
   */
  float beta;
  /**
   * Weight of the non-target tokens inside the top-k (finite; head preservation: 0.1).
   */
  float lam_top;
  /**
   * Weight of the non-target tokens outside the top-k (finite; tail suppression: -0.1).
   */
  float lam_tail;
  /**
   * The gradient is that of `grad_scale * sum_rows loss` (finite; 1/tokens = token mean).
   */
  float grad_scale;
  /**
   * `k` of the top-k (0 = empty, >= vocab = every column); ties at the k-th largest logit
   * are taken in ascending column order.
   */
  size_t top_k;
} tkm_dop_options;

/**
 * Element type of a tensor: a `uint32_t` code (`TKM_DTYPE_*`). `bf16` and `f16` data are
 * passed as their IEEE/bfloat bit patterns in `uint16_t` arrays.
 */
typedef uint32_t tkm_dtype;

/**
 * E3B options. Initialise with `tkm_e3b_options_init` (the source's values: ridge 0.1,
 * first step of an episode reports 0; the library's symmetrisation every 64 updates),
 * then change fields. NULL means the defaults.
 */
typedef struct tkm_e3b_options {
  /**
   * `sizeof(tkm_e3b_options)` as the caller compiled it.
   */
  size_t struct_size;
  /**
   * Ridge `lambda` of `C = lambda I + sum phi phi^T`: finite, > 0, finite `1/lambda`.
   */
  float ridge;
  /**
   * Symmetrise `C^-1` every this many updates (0 = never).
   */
  uint32_t sym_every;
  /**
   * 1 = the first step after a reset reports bonus 0 (default), 0 = report it.
   */
  uint32_t zero_first_step;
} tkm_e3b_options;

/**
 * Running moments of a reward stream in the source's form: `count`, `sum`, and `m2` (sum of
 * squared deviations), all double; `std = sqrt(m2/count)`. A fresh state is all zeros
 * (the library) or `count = 1e-8` (`TKM_MOMENTS_E3B`, the source). 24 bytes of plain data:
 * ranks all-gather batch partials (`tkm_reward_norm_batch_moments`) and merge them with
 * `tkm_running_moments_merge`, in rank order.
 */
typedef struct tkm_running_moments {
  /**
   * Values seen.
   */
  double count;
  /**
   * Their sum.
   */
  double sum;
  /**
   * Sum of squared deviations from the mean.
   */
  double m2;
} tkm_running_moments;

/**
 * Reward assembly options. Initialise with `tkm_assemble_options_init` (the source's
 * values: `TKM_REWARD_NORM_INT`, `intrinsic_coef = 1`, clip on, extrinsic on; the library's
 * `TKM_MOMENTS_LIBRARY`), then change fields. NULL means the defaults.
 */
typedef struct tkm_assemble_options {
  /**
   * `sizeof(tkm_assemble_options)` as the caller compiled it.
   */
  size_t struct_size;
  /**
   * `TKM_REWARD_NORM_*`.
   */
  uint32_t norm;
  /**
   * `eta` of `r = r_ext + eta * r_int` (finite).
   */
  float intrinsic_coef;
  /**
   * 1 = clamp the total to [-1, 1] (default), 0 = no clamp.
   */
  uint32_t clip;
  /**
   * 1 = add the extrinsic reward (default), 0 = `r = eta * r_int` (`r_ext` may be NULL).
   */
  uint32_t use_extrinsic;
  /**
   * `TKM_MOMENTS_*`.
   */
  uint32_t compat;
  /**
   * `T` for `TKM_MOMENTS_E3B` (the batch length must be a non-zero multiple of it).
   */
  size_t time_steps;
} tkm_assemble_options;

/**
 * A parsed signed tree head (`tkm_fp_signed_head_parse`). A fixed-layout output struct.
 */
typedef struct tkm_fp_head {
  /**
   * Number of leaves committed.
   */
  uint64_t n;
  /**
   * Offset of the context in the parsed bytes (always `TKM_FP_HEAD_FIXED_LEN`).
   */
  size_t ctx_offset;
  /**
   * Bytes of the context.
   */
  size_t ctx_len;
  /**
   * `hash_id` of the tree hash (1 BLAKE3, 2 SHA-256, 3 keyed BLAKE3).
   */
  uint32_t hash_id;
  /**
   * Root of the tree of `n` leaves.
   */
  uint8_t root[32];
} tkm_fp_head;

/**
 * The entropy normaliser's statistics (for the next step's adaptive temperature).
 */
typedef struct tkm_hapo_norm {
  /**
   * The pivot `m` (a quantile of the log-entropies).
   */
  float pivot;
  /**
   * RMS deviation of the log-entropies from the pivot.
   */
  float std;
  /**
   * `1/pos_max`.
   */
  float scale_pos;
  /**
   * `1/neg_min` (CODE_COMPAT, negative) or `1/|neg_min|` (INTENDED).
   */
  float scale_neg;
} tkm_hapo_norm;

/**
 * Options of `tkm_hapo_token_group_advantage`. Initialise with `tkm_hapo_adv_options_init`
 * (the reference's behaviour: `norm_by_std = 1`, `pad_in_check = 1`, `mask_output = 0`,
 * `fallback_abs = 5`, `eps = 1e-6`). NULL means the defaults.
 */
typedef struct tkm_hapo_adv_options {
  /**
   * `sizeof(tkm_hapo_adv_options)` as the caller compiled it.
   */
  size_t struct_size;
  /**
   * 1 = divide by `sigma + eps` (`norm_adv_by_std_in_grpo`), 0 = do not.
   */
  uint32_t norm_by_std;
  /**
   * 1 = the fallback check scans padding too (the reference), 0 = valid tokens only.
   */
  uint32_t pad_in_check;
  /**
   * 1 = multiply the output by the mask, 0 = padding carries `-mu/(sigma + eps)` (the reference).
   */
  uint32_t mask_output;
  /**
   * Fallback threshold on `|N|` (finite, > 0).
   */
  float fallback_abs;
  /**
   * `eps` of both normalisations (finite, >= 0).
   */
  float eps;
} tkm_hapo_adv_options;

/**
 * Counts of `tkm_hapo_loss` over valid tokens.
 */
typedef struct tkm_hapo_stats {
  /**
   * Valid tokens.
   */
  uint64_t valid;
  /**
   * Tokens where the ratio clip is active.
   */
  uint64_t clipped;
  /**
   * Negative-advantage tokens bounded by the dual clip.
   */
  uint64_t dual_clipped;
  /**
   * Sum of `-(logp - old_logp)` over valid tokens.
   */
  double neg_log_ratio_sum;
} tkm_hapo_stats;

/**
 * The logits and per-row inputs of `tkm_logits_fwd`. Initialise with
 * `tkm_logits_input_init` (which sets `struct_size`, `dtype = TKM_DTYPE_F32`,
 * `temperature = 1` and every pointer and size to NULL / 0), then set the fields. An input
 * struct follows the growth rule of the options structs (rule 8); unlike them it is
 * required (NULL is `TKM_STATUS_NULL_POINTER`).
 */
typedef struct tkm_logits_input {
  /**
   * `sizeof(tkm_logits_input)` as the caller compiled it.
   */
  size_t struct_size;
  /**
   * `TKM_DTYPE_F32`, `_BF16` or `_F16` (bf16/f16 as `uint16_t` bits).
   */
  tkm_dtype dtype;
  /**
   * `[rows, vocab]` logits: element `(r, c)` at `logits[r * row_stride + c]`.
   */
  const void *logits;
  /**
   * Number of rows (tokens).
   */
  size_t rows;
  /**
   * Vocabulary size (columns per row).
   */
  size_t vocab;
  /**
   * Elements between the starts of consecutive rows (`>= vocab`).
   */
  size_t row_stride;
  /**
   * NULL = no targets; else `rows` labels, negative = no target for that row (e.g. -100).
   */
  const int32_t *targets;
  /**
   * NULL = keep every row; else `rows` bytes, 0 = skip the row (its outputs are 0; its
   * target and temperature are not checked).
   */
  const uint8_t *row_mask;
  /**
   * The temperature of every row when `temperatures` is NULL (finite, > 0, with a finite
   * `1/temperature`).
   */
  float temperature;
  /**
   * NULL = `temperature` for every row; else `rows` temperatures.
   */
  const float *temperatures;
} tkm_logits_input;

/**
 * Partial softmax statistics of one row over a set of columns (a block or a vocabulary
 * shard), in tempered-logit units `z = x / temperature`: `m = max z`, `s = sum exp(z - m)`,
 * `u = sum exp(z - m) (z - m)`, `x_t = z[target]`; `flags` bit 0: the target column was in
 * the set, bit 1: a NaN or +inf logit was seen. 20 bytes of plain data that a
 * tensor-parallel trainer all-gathers as raw bytes; treat the fields as opaque.
 */
typedef struct tkm_row_stats {
  /**
   * Maximum tempered logit (`-inf` for an empty set).
   */
  float m;
  /**
   * `sum exp(z - m)`.
   */
  float s;
  /**
   * `sum exp(z - m) (z - m)`.
   */
  float u;
  /**
   * The tempered target logit (valid when `flags & 1`).
   */
  float x_t;
  /**
   * Bit 0: has target. Bit 1: non-finite logit seen.
   */
  uint32_t flags;
} tkm_row_stats;

/**
 * PPO clip options. Initialise with `tkm_ppo_clip_options_init` (verl's actor defaults:
 * `eps_low = eps_high = 0.2`, dual clip `c = 3`, log-ratio clamp 20), then change fields.
 * NULL means the defaults.
 */
typedef struct tkm_ppo_clip_options {
  /**
   * `sizeof(tkm_ppo_clip_options)` as the caller compiled it.
   */
  size_t struct_size;
  /**
   * The ratio's lower clip is `1 - eps_low` (finite, >= 0).
   */
  float eps_low;
  /**
   * The ratio's upper clip is `1 + eps_high` (finite, >= 0; DAPO clip-higher: 0.28).
   */
  float eps_high;
  /**
   * Dual-clip bound for negative advantages (finite, > 1); 0 = no dual clip (TRL).
   */
  float dual_clip_c;
  /**
   * Clamp `|logp - old_logp| <= log_ratio_clamp` before `exp` (finite, > 0); 0 = none.
   */
  float log_ratio_clamp;
} tkm_ppo_clip_options;

/**
 * Denominators of the aggregation. Initialise with `tkm_agg_norm_init` (one process, local
 * counts, `S = T`), then change fields. NULL means the defaults.
 */
typedef struct tkm_agg_norm {
  /**
   * `sizeof(tkm_agg_norm)` as the caller compiled it.
   */
  size_t struct_size;
  /**
   * Global valid-token count (verl `batch_num_tokens`); 0 = the local count.
   */
  uint64_t global_tokens;
  /**
   * Global count of non-empty sequences (verl `global_batch_size`); 0 = the local count.
   */
  uint64_t global_seqs;
  /**
   * Data-parallel size (>= 1; default 1).
   */
  uint32_t dp_size;
  /**
   * `S` of `TKM_AGG_SEQ_MEAN_TOKEN_SUM_NORM` (finite, > 0); 0 = `T` (the padded length).
   */
  float scale_factor;
} tkm_agg_norm;

/**
 * The verl metrics of a PPO clip call, as mergeable sums (add them across micro-batches
 * and ranks, then divide by `valid_tokens`). A fixed-layout output struct.
 */
typedef struct tkm_policy_stats {
  /**
   * Valid (mask != 0) tokens.
   */
  uint64_t valid_tokens;
  /**
   * Valid tokens with `A > 0` clipped at `1 + eps_high`.
   */
  uint64_t clipped_high;
  /**
   * Valid tokens with `A < 0` clipped at `1 - eps_low`.
   */
  uint64_t clipped_low;
  /**
   * Valid tokens with `A < 0` bounded by the dual clip (verl `pg_clipfrac_lower`).
   */
  uint64_t clipped_dual;
  /**
   * Sum of `-(logp - old_logp)` (after the clamp) over valid tokens: verl's `ppo_kl`
   * numerator.
   */
  double neg_log_ratio_sum;
} tkm_policy_stats;

/**
 * KL estimator options. Initialise with `tkm_kl_options_init` (verl's actor KL loss:
 * `TKM_KL_K3` with verl's clamps), then change fields. NULL means the defaults.
 */
typedef struct tkm_kl_options {
  /**
   * `sizeof(tkm_kl_options)` as the caller compiled it.
   */
  size_t struct_size;
  /**
   * `TKM_KL_*` (default `TKM_KL_K3`).
   */
  uint32_t kind;
  /**
   * 1 = verl's `low_var_kl` clamps (`-d` to +-20, the value to +-10; k3 and k3+ only,
   * default), 0 = none (TRL).
   */
  uint32_t verl_clamps;
} tkm_kl_options;

/**
 * GSPO options. Initialise with `tkm_gspo_options_init` (verl's actor defaults:
 * `eps_low = eps_high = 0.2`, sequence log-ratio cap 10), then change fields. NULL means
 * the defaults.
 */
typedef struct tkm_gspo_options {
  /**
   * `sizeof(tkm_gspo_options)` as the caller compiled it.
   */
  size_t struct_size;
  /**
   * The sequence ratio's lower clip is `1 - eps_low` (finite, >= 0).
   */
  float eps_low;
  /**
   * The sequence ratio's upper clip is `1 + eps_high` (finite, >= 0).
   */
  float eps_high;
  /**
   * Upper cap on the sequence log-ratio (finite); `INFINITY` = no cap.
   */
  float seq_log_ratio_cap;
} tkm_gspo_options;

/**
 * CISPO options. Initialise with `tkm_cispo_options_init` (verl: weight clamped to
 * `[0.8, 1.2]`, log-ratio clamp 20), then change fields. NULL means the defaults. TRL's
 * form is `w_min = -INFINITY`, `w_max = cap` (e.g. 5), `log_ratio_clamp = 0`.
 */
typedef struct tkm_cispo_options {
  /**
   * `sizeof(tkm_cispo_options)` as the caller compiled it.
   */
  size_t struct_size;
  /**
   * Lower bound of the weight (finite); `-INFINITY` = none.
   */
  float w_min;
  /**
   * Upper bound of the weight (finite, >= `w_min`); `INFINITY` = none.
   */
  float w_max;
  /**
   * Clamp `|logp - old_logp| <= log_ratio_clamp` before `exp` (finite, > 0); 0 = none.
   */
  float log_ratio_clamp;
} tkm_cispo_options;

/**
 * SAPO options. Initialise with `tkm_sapo_options_init` (verl: `tau_pos = 1`,
 * `tau_neg = 1.05`, log-ratio clamp 20; TRL: the clamp 0), then change fields. NULL means
 * the defaults.
 */
typedef struct tkm_sapo_options {
  /**
   * `sizeof(tkm_sapo_options)` as the caller compiled it.
   */
  size_t struct_size;
  /**
   * Temperature for `A > 0` (finite, > 0).
   */
  float tau_pos;
  /**
   * Temperature for `A <= 0` (finite, > 0).
   */
  float tau_neg;
  /**
   * Clamp `|logp - old_logp| <= log_ratio_clamp` before `exp` (finite, > 0); 0 = none.
   */
  float log_ratio_clamp;
} tkm_sapo_options;

/**
 * The metrics of a KL estimator: a mergeable sum (add across micro-batches and ranks, then
 * divide by `valid_tokens` for the token-mean KL). A fixed-layout output struct.
 */
typedef struct tkm_kl_stats {
  /**
   * Valid (mask != 0) tokens.
   */
  uint64_t valid_tokens;
  /**
   * Sum of the per-token KL values (after clamps, unscaled by any coefficient) over valid
   * tokens.
   */
  double kl_sum;
} tkm_kl_stats;

/**
 * DPO options. Initialise with `tkm_dpo_options_init` (TRL's `DPOConfig`: `beta = 0.1`,
 * `label_smoothing = 0`). NULL means the defaults.
 */
typedef struct tkm_dpo_options {
  /**
   * `sizeof(tkm_dpo_options)` as the caller compiled it.
   */
  size_t struct_size;
  /**
   * `beta` (finite, > 0).
   */
  float beta;
  /**
   * Conservative label smoothing in [0, 1].
   */
  float label_smoothing;
} tkm_dpo_options;

/**
 * SimPO options. Initialise with `tkm_simpo_options_init` (TRL's `CPOConfig` with
 * `loss_type="simpo"`: `beta = 0.1`, `gamma = 0.5`, `label_smoothing = 0`).
 */
typedef struct tkm_simpo_options {
  /**
   * `sizeof(tkm_simpo_options)` as the caller compiled it.
   */
  size_t struct_size;
  /**
   * `beta` (finite, > 0).
   */
  float beta;
  /**
   * Target reward margin `gamma` (finite).
   */
  float gamma;
  /**
   * Label smoothing in [0, 1].
   */
  float label_smoothing;
} tkm_simpo_options;

/**
 * T-REG regulariser options. Initialise with `tkm_treg_reg_options_init` (`beta = 0.1`,
 * `TKM_REDUCTION_SUM`).
 */
typedef struct tkm_treg_reg_options {
  /**
   * `sizeof(tkm_treg_reg_options)` as the caller compiled it.
   */
  size_t struct_size;
  /**
   * DPO's `beta` (finite, > 0).
   */
  float beta;
  /**
   * `TKM_REDUCTION_SUM` or `TKM_REDUCTION_MEAN_OVER_MASK`.
   */
  uint32_t reduction;
} tkm_treg_reg_options;

/**
 * T-REG total-loss options. Initialise with `tkm_treg_options_init` (`alpha = 0.25`,
 * `label_smoothing = 0`, `stop_grad_weight = 1`).
 */
typedef struct tkm_treg_options {
  /**
   * `sizeof(tkm_treg_options)` as the caller compiled it.
   */
  size_t struct_size;
  /**
   * `alpha` (finite, >= 0).
   */
  float alpha;
  /**
   * Label smoothing of the base loss, in [0, 1].
   */
  float label_smoothing;
  /**
   * 1: `w = sg(sigmoid(-h))` (default); 0: `w` carries its gradient.
   */
  uint32_t stop_grad_weight;
} tkm_treg_options;

/**
 * cDPO loss options. Initialise with `tkm_cdpo_options_init` (the released code's
 * `get_cdpo_config`: `beta = 0.1`, `label_smoothing = 0`, `only_neg = 1`, positionwise).
 */
typedef struct tkm_cdpo_options {
  /**
   * `sizeof(tkm_cdpo_options)` as the caller compiled it.
   */
  size_t struct_size;
  /**
   * `beta` (finite, > 0).
   */
  float beta;
  /**
   * Label smoothing in [0, 1].
   */
  float label_smoothing;
  /**
   * 1: ignore the chosen weights `c` (default); 0: use them (`c` required).
   */
  uint32_t only_neg;
  /**
   * `TKM_CDPO_POSITIONWISE_CODE` or `TKM_CDPO_SEQUENCE_WEIGHTED`.
   */
  uint32_t form;
} tkm_cdpo_options;

/**
 * The state of the cross-rank top-entropy threshold (a plain value: copy it, send it, keep
 * it anywhere; the library refuses a corrupted one with `TKM_STATUS_INVALID_ARGUMENT`).
 * Start it with `tkm_entropy_quantile_init`.
 */
typedef struct tkm_entropy_quantile {
  /**
   * Opaque.
   */
  uint64_t words[6];
} tkm_entropy_quantile;

/**
 * The D³S schedule: the kept fractions of samples (`n_*`) and tokens (`k_*`) at the start
 * and the end of training, each in (0, 1]. Initialise with `tkm_d3s_schedule_options_init`
 * (the library's choice, the paper's values being unpublished: `n_init = 0.5`,
 * `n_final = 1`, `k_init = 0.2`, `k_final = 1`). NULL means the defaults.
 */
typedef struct tkm_d3s_schedule_options {
  /**
   * `sizeof(tkm_d3s_schedule_options)` as the caller compiled it.
   */
  size_t struct_size;
  /**
   * Fraction of the batch kept at progress 0.
   */
  float n_init;
  /**
   * Fraction of the batch kept at progress 1.
   */
  float n_final;
  /**
   * Fraction of the tokens kept at progress 0.
   */
  float k_init;
  /**
   * Fraction of the tokens kept at progress 1.
   */
  float k_final;
} tkm_d3s_schedule_options;

/**
 * PSR/NSR/W-REINFORCE options. Initialise with `tkm_nsr_options_init` (W-REINFORCE,
 * `lambda = 0.1` as the paper recommends, `gamma = 1`). NULL means the defaults.
 */
typedef struct tkm_nsr_options {
  /**
   * `sizeof(tkm_nsr_options)` as the caller compiled it.
   */
  size_t struct_size;
  /**
   * `TKM_NSR_MODE_*`.
   */
  uint32_t mode;
  /**
   * Discount of the returns-to-go, finite and >= 0.
   */
  float gamma;
  /**
   * W-REINFORCE's `positive_advantage_weight` (finite; `TKM_NSR_MODE_WEIGHTED` only).
   */
  float lambda;
  /**
   * Must be 0.
   */
  uint32_t reserved;
} tkm_nsr_options;

/**
 * THR options (best understanding of arXiv 2510.03669). Initialise with
 * `tkm_thr_options_init` (`TKM_THR_STEER`, `p = 0`, `keep_non_dominant = 1`: identical to
 * GRPO). NULL means the defaults.
 */
typedef struct tkm_thr_options {
  /**
   * `sizeof(tkm_thr_options)` as the caller compiled it.
   */
  size_t struct_size;
  /**
   * `TKM_THR_*`.
   */
  uint32_t mode;
  /**
   * The steering parameter (`TKM_THR_STEER`; finite; > 0 exploitation, < 0 exploration).
   */
  float p;
  /**
   * `TKM_THR_STEER`: 1 = non-dominant tokens keep their advantage, 0 = it is zeroed.
   */
  uint32_t keep_non_dominant;
  /**
   * Must be 0.
   */
  uint32_t reserved;
} tkm_thr_options;

/**
 * RMT's curriculum. Initialise with `tkm_rmt_curriculum_options_init` (the library's
 * choice: `t1_frac = 0.3`, `t2_frac = 0.7`, `p1 = {0.6, 0.3, 0.1}`, `p2 = {0.1, 0.3, 0.6}`
 * over easy, medium, hard). NULL means the defaults.
 */
typedef struct tkm_rmt_curriculum_options {
  /**
   * `sizeof(tkm_rmt_curriculum_options)` as the caller compiled it.
   */
  size_t struct_size;
  /**
   * `t1` as a fraction of the training steps.
   */
  float t1_frac;
  /**
   * `t2` as a fraction of the training steps.
   */
  float t2_frac;
  /**
   * Tier probabilities before `t1`.
   */
  float p1[3];
  /**
   * Tier probabilities from `t2` on.
   */
  float p2[3];
} tkm_rmt_curriculum_options;

/**
 * Byte, Unicode scalar value and whitespace counts of some text (accumulated over any number
 * of sentences by `tkm_text_counts_add`). Start from all zeros.
 */
typedef struct tkm_text_counts {
  /**
   * UTF-8 bytes.
   */
  uint64_t bytes;
  /**
   * Unicode scalar values.
   */
  uint64_t chars;
  /**
   * Scalar values with the Unicode White_Space property.
   */
  uint64_t whitespace;
} tkm_text_counts;

/**
 * A power law `CTC(V) = a * V^b` fitted in log space.
 */
typedef struct tkm_power_law {
  /**
   * `a = exp(ln_a)` (may be +inf or 0 when `ln_a` is outside double's exponent range).
   */
  double a;
  /**
   * `ln a`.
   */
  double ln_a;
  /**
   * The exponent `b`.
   */
  double b;
  /**
   * `R^2` of the fit in log space.
   */
  double r2;
} tkm_power_law;

/**
 * TW-GRPO options. Initialise with `tkm_tw_grpo_options_init` (group size 8, `alpha = 1.70`
 * as TW-GRPO's training script, `clamp = 11`), then change fields. NULL means the defaults.
 */
typedef struct tkm_tw_grpo_options {
  /**
   * `sizeof(tkm_tw_grpo_options)` as the caller compiled it.
   */
  size_t struct_size;
  /**
   * Rollouts per group `G` (1..=512; groups are `G` contiguous responses).
   */
  uint32_t group_size;
  /**
   * Maximum weight `alpha` (finite).
   */
  float alpha;
  /**
   * Clamp of the log-prob deviation (finite, in (0, 80]).
   */
  float clamp;
} tkm_tw_grpo_options;

/**
 * IEEE binary32 (`float`).
 */
#define TKM_DTYPE_F32 1

/**
 * bfloat16, as `uint16_t` bits (the upper half of a binary32).
 */
#define TKM_DTYPE_BF16 2

/**
 * IEEE binary16, as `uint16_t` bits.
 */
#define TKM_DTYPE_F16 3

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

/**
 * The library's version, `"MAJOR.MINOR.PATCH"`: a static NUL-terminated string, never NULL.
 * Compare with the `TKM_VERSION_*` macros to detect a header/library mismatch.
 */
const char *tkm_version(void);

/**
 * Writes the default GRPO options into `*opts`.
 *
 * # Safety
 * `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one `tkm_grpo_options`.
 */
tkm_status tkm_grpo_options_init(struct tkm_grpo_options *opts);

/**
 * GRPO advantages, one per response: `out[b]` from `rewards` (`n` floats) grouped by
 * `group_ids`/`group_size` (rule 13 of the header: exactly one of `group_ids` or
 * `group_size > 0`), with `opts` (NULL = defaults).
 * Statistics accumulate in f64 in a fixed order; each advantage is rounded to f32 once.
 *
 * Errors: `TKM_STATUS_NON_FINITE` (an infinite reward, or NaN under `TKM_NAN_ERROR`),
 * `_INVALID_ARGUMENT` (grouping, `n` not a multiple of `group_size`, `eps` negative or not
 * finite, `TKM_GRPO_TRL` with `group_ids`, unknown enum values).
 *
 * # Safety
 * `rewards` and `out` must be valid for `n` floats, `group_ids` NULL or valid for `n`.
 */
tkm_status tkm_grpo_advantage(const float *rewards,
                              size_t n,
                              const uint32_t *group_ids,
                              size_t group_size,
                              const struct tkm_grpo_options *opts,
                              float *out);

/**
 * Per-group moments of `x` (`n` floats) grouped by `group_ids`/`group_size` (as
 * `tkm_grpo_advantage`), one entry per distinct group in order of first appearance: the
 * group's id (its label; the block index `b / group_size` for contiguous groups) into
 * `ids_out`, its moments into `moments_out`, and the number of groups `K` into
 * `*groups_out`. Members are pushed in ascending row order; `weight` (NULL = every row 1;
 * else `n` finite, non-negative floats, e.g. token counts) gives the weighted form, and a
 * row of weight 0 is left out (use it for unscorable rows).
 *
 * For data parallelism, give every rank's rows their global group ids (`uid`): contiguous
 * block indices are local to the call. `capacity` is the length of `ids_out` and
 * `moments_out`; `K <= n`, so `capacity = n` always suffices.
 *
 * Errors: `TKM_STATUS_LENGTH_MISMATCH` (`capacity < K`), `_NON_FINITE` (a weight, or an `x`
 * of non-zero weight, that is NaN or infinite), `_INVALID_ARGUMENT` (a negative weight, or
 * the grouping rule of `tkm_grpo_advantage`).
 *
 * # Safety
 * `x` (and `group_ids`, `weight` unless NULL) valid for `n` elements; `ids_out` and
 * `moments_out` for `capacity`; `groups_out` for one `size_t`.
 */
tkm_status tkm_group_moments(const float *x,
                             size_t n,
                             const uint32_t *group_ids,
                             size_t group_size,
                             const float *weight,
                             uint32_t *ids_out,
                             struct tkm_moments *moments_out,
                             size_t capacity,
                             size_t *groups_out);

/**
 * Merges gathered group-moment tables: `ids`/`moments` (`entries` each) are every rank's
 * `tkm_group_moments` table concatenated in ascending rank order (what an all-gather
 * leaves). Entries with equal ids are merged in entry order (so in ascending rank order);
 * the `K` merged groups go to `ids_out`/`moments_out` (`capacity` entries; `K <= entries`)
 * in order of each id's first entry, `K` to `*groups_out`.
 *
 * The result depends only on the tables and their order. A group whose rows all live on
 * one rank gets exactly the moments one `tkm_group_moments` call on the whole batch gives;
 * a group split across ranks agrees with that within the merge's rounding (relative
 * `~n 2^-52`), bitwise reproducible for the same split. `O(entries * K)`.
 *
 * Errors: `TKM_STATUS_LENGTH_MISMATCH` (`capacity < K`), `_INVALID_ARGUMENT` (an entry with
 * `n` or `m2` negative or not finite, or a non-finite mean).
 *
 * # Safety
 * `ids` and `moments` valid for `entries` elements, `ids_out` and `moments_out` for
 * `capacity`, `groups_out` for one `size_t`.
 */
tkm_status tkm_group_moments_merge(const uint32_t *ids,
                                   const struct tkm_moments *moments,
                                   size_t entries,
                                   uint32_t *ids_out,
                                   struct tkm_moments *moments_out,
                                   size_t capacity,
                                   size_t *groups_out);

/**
 * GRPO advantages of `n` responses from group moments computed elsewhere (the
 * data-parallel form of `tkm_grpo_advantage`): response `b` with reward `rewards[b]` and
 * group id `group_ids[b]` (required) uses the entry of `table_ids`/`table` (`table_len`
 * entries, e.g. the output of `tkm_group_moments_merge`) with that id. `opts` as
 * `tkm_grpo_advantage`; only `TKM_GRPO_STANDARD` and `TKM_GRPO_VERL_LOOP` are defined by
 * moments. With the table of the whole batch this is bitwise `tkm_grpo_advantage` with
 * `group_ids`.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (another flavor, an id missing from the table, a
 * repeated table id, an invalid table entry, or the option errors of
 * `tkm_grpo_advantage`), `_NON_FINITE` (rewards, as `tkm_grpo_advantage`).
 *
 * # Safety
 * `rewards`, `group_ids` and `out` valid for `n` elements; `table_ids` and `table` for
 * `table_len`.
 */
tkm_status tkm_grpo_advantage_from_moments(const float *rewards,
                                           size_t n,
                                           const uint32_t *group_ids,
                                           const uint32_t *table_ids,
                                           const struct tkm_moments *table,
                                           size_t table_len,
                                           const struct tkm_grpo_options *opts,
                                           float *out);

/**
 * Dr. GRPO advantages `A = R - mean_group(R)` (the library form: groups of fewer than two
 * get 0, NaN rewards are `TKM_STATUS_NON_FINITE`).
 *
 * # Safety
 * As `tkm_grpo_advantage`.
 */
tkm_status tkm_dr_grpo_advantage(const float *rewards,
                                 size_t n,
                                 const uint32_t *group_ids,
                                 size_t group_size,
                                 float *out);

/**
 * RLOO advantages `A_b = R_b - mean of the other rewards of b's group`, in the flavor
 * `TKM_RLOO_*`. Rewards must be finite. The TRL flavors need `group_size >= 2`.
 *
 * # Safety
 * As `tkm_grpo_advantage`.
 */
tkm_status tkm_rloo_advantage(const float *rewards,
                              size_t n,
                              const uint32_t *group_ids,
                              size_t group_size,
                              uint32_t flavor,
                              float *out);

/**
 * Broadcasts one value per response to its tokens: `out[b*t + j] = a_seq[b]` where
 * `mask[b*t + j] != 0`, else 0 (a NaN `a_seq[b]` never reaches padding). `a_seq` has
 * `rows` floats; `mask` and `out` are `[rows, t]`.
 *
 * # Safety
 * `a_seq` valid for `rows` floats, `mask` and `out` for `rows * t` elements.
 */
tkm_status tkm_broadcast_masked(const float *a_seq, size_t rows, const uint8_t *mask, size_t t, float *out);

/**
 * Discounted returns-to-go with EOS reset, verl's REINFORCE++ recurrence, per row of the
 * `[rows, t]` token rewards `r`: `G_t = r_t + gamma * carry`, `carry = mask_t ? G_t : 0`
 * (in f64). `out` (`[rows, t]`) is not masked (as verl).
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` for `gamma` negative or not finite;
 * `TKM_STATUS_NON_FINITE` for a non-finite reward at a valid position.
 *
 * # Safety
 * `r`, `mask`, `out` valid for `rows * t` elements.
 */
tkm_status tkm_returns_to_go(const float *r,
                             const uint8_t *mask,
                             size_t rows,
                             size_t t,
                             float gamma,
                             float *out);

/**
 * REINFORCE++ (verl `compute_reinforce_plus_plus_outcome_advantage`): the returns-to-go `G`
 * of the `[rows, t]` token rewards `r` (into `ret`, NULL = not wanted) and
 * `adv = masked_whiten(G)` over all valid tokens of the batch (eps 1e-8; 0 at padding).
 * `compat_mode` is `TKM_COMPAT_*`.
 *
 * Errors: as `tkm_returns_to_go`; under `TKM_COMPAT_VERL`, fewer than two valid tokens are
 * `TKM_STATUS_INVALID_ARGUMENT`.
 *
 * # Safety
 * `r`, `mask`, `adv` (and `ret` unless NULL) valid for `rows * t` elements.
 */
tkm_status tkm_reinforce_pp_advantage(const float *r,
                                      const uint8_t *mask,
                                      size_t rows,
                                      size_t t,
                                      float gamma,
                                      uint32_t compat_mode,
                                      float *adv,
                                      float *ret);

/**
 * REINFORCE++-baseline (verl `compute_reinforce_plus_plus_baseline_outcome_advantage`):
 * `A_b = R_b - mean of b's group` of the `rows` per-response `rewards` (grouped by
 * `group_ids`/`group_size` as `tkm_grpo_advantage`), tiled over the valid tokens of row `b`
 * of the `[rows, t]` `mask`, whitened over all valid tokens (eps 1e-8), 0 at padding, into
 * `out` (`[rows, t]`). `singleton_policy` (`TKM_SINGLETON_*`) is what a group of one gets
 * before whitening (verl: `TKM_SINGLETON_MEAN_ZERO_STD_ONE`, `A = R`); `compat_mode` is
 * `TKM_COMPAT_*`. Rewards must be finite.
 *
 * # Safety
 * `rewards` (and `group_ids` unless NULL) valid for `rows` elements, `mask` and `out` for
 * `rows * t`.
 */
tkm_status tkm_reinforce_pp_baseline_advantage(const float *rewards,
                                               size_t rows,
                                               const uint32_t *group_ids,
                                               size_t group_size,
                                               const uint8_t *mask,
                                               size_t t,
                                               uint32_t singleton_policy,
                                               uint32_t compat_mode,
                                               float *out);

/**
 * Generalised advantage estimation (verl `compute_gae_advantage_return`) per row of the
 * `[rows, t]` token rewards `r` and `values`: the backward recurrence over valid tokens
 * (masked positions are skipped, in f64), `ret = A + V` (into `ret`, NULL = not wanted,
 * written everywhere as verl) and `adv = masked_whiten(A)` over all valid tokens (eps 1e-8;
 * `compat_mode` `TKM_COMPAT_*` as `tkm_reinforce_pp_advantage`).
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` for `gamma` or `lam` negative or not finite;
 * `TKM_STATUS_NON_FINITE` for a non-finite reward or value at a valid position.
 *
 * # Safety
 * `r`, `values`, `mask`, `adv` (and `ret` unless NULL) valid for `rows * t` elements.
 */
tkm_status tkm_gae(const float *r,
                   const float *values,
                   const uint8_t *mask,
                   size_t rows,
                   size_t t,
                   float gamma,
                   float lam,
                   uint32_t compat_mode,
                   float *adv,
                   float *ret);

/**
 * Masked whitening of `n` values: `out = (x - mean) * rsqrt(var_unbiased + eps)` with the
 * moments over positions where `mask != 0` (in f64); padding gets 0 (`TKM_COMPAT_LIBRARY`)
 * or the same formula (`TKM_COMPAT_VERL`, which also rejects fewer than two valid values).
 * `eps` (verl: 1e-8) must be finite and >= 0. `out` may alias `x`.
 *
 * # Safety
 * `x`, `mask`, `out` valid for `n` elements.
 */
tkm_status tkm_masked_whiten(const float *x,
                             const uint8_t *mask,
                             size_t n,
                             float eps,
                             uint32_t compat_mode,
                             float *out);

/**
 * Writes the default overlong options into `*opts`.
 *
 * # Safety
 * `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
 */
tkm_status tkm_overlong_options_init(struct tkm_overlong_options *opts);

/**
 * The overlong penalty of a response of `len` valid tokens into `*out`:
 * `min(-(len - (max_len - buffer_len)) / buffer_len * penalty_factor, 0)` (in f64, rounded
 * once): 0 up to `max_len - buffer_len`, `-penalty_factor` at `max_len`, no lower clamp.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` for `buffer_len` 0 or above `max_len`, or a factor
 * negative or not finite.
 *
 * # Safety
 * `opts` NULL or a valid options struct, `out` valid for one float.
 */
tkm_status tkm_overlong_penalty(size_t len, const struct tkm_overlong_options *opts, float *out);

/**
 * DAPO's token rewards (`[rows, t]`, into `out`): row `b` is 0 except at column `L_b - 1`,
 * which holds `scores[b] + overlong_penalty(L_b)` with `L_b` the number of valid tokens of
 * row `b` of `mask`; a row without valid tokens stays 0. `scores` (`rows` floats) must be
 * finite (`TKM_STATUS_NON_FINITE`).
 *
 * # Safety
 * `scores` valid for `rows` floats, `mask` and `out` for `rows * t` elements.
 */
tkm_status tkm_overlong_shaped_token_rewards(const float *scores,
                                             size_t rows,
                                             const uint8_t *mask,
                                             size_t t,
                                             const struct tkm_overlong_options *opts,
                                             float *out);

/**
 * DAPO's dynamic-sampling filter: `keep[b] = 1` for every response of a group whose `metric`
 * values (`n` floats, grouped as `tkm_grpo_advantage`) are not all bitwise equal (`-0`
 * equals `+0`; singleton groups are kept), else 0; `*kept_groups` (NULL = not wanted) the
 * number of kept groups. A NaN metric is `TKM_STATUS_NON_FINITE`.
 *
 * # Safety
 * `metric` and `keep` (and `group_ids` unless NULL) valid for `n` elements, `kept_groups`
 * NULL or valid for one `size_t`.
 */
tkm_status tkm_dynamic_sampling_keep(const float *metric,
                                     size_t n,
                                     const uint32_t *group_ids,
                                     size_t group_size,
                                     uint8_t *keep,
                                     size_t *kept_groups);

/**
 * Whether this library can run calls on CUDA memory: `TKM_STATUS_OK` when it was built with
 * the CUDA launch path and a CUDA driver with a device is present;
 * `TKM_STATUS_CUDA_UNAVAILABLE` when it was built without it (this build). Cheap; call it
 * once to decide whether to hand tokenmath `kDLCUDA` tensors.
 */
tkm_status tkm_cuda_available(void);

/**
 * `tkm_logits_fwd` on DLPack tensors: `logits` is a 2-D `[rows, vocab]` float32 / bfloat16 /
 * float16 CPU tensor (any row stride, unit column stride); `targets` (int32), `row_mask`
 * (uint8 or bool), `temperatures` (float32) are NULL or 1-D `[rows]`; `lse`, `entropy`
 * (required) and `logp`, `max`, `log_sum` (NULL = not wanted) are 1-D `[rows]` float32
 * outputs; all
 * vectors contiguous. Other rules as `tkm_logits_fwd`.
 *
 * # Safety
 * Every non-NULL tensor must be a valid `DLTensor` whose data are valid for its shape and
 * strides.
 */
tkm_status tkm_dl_logits_fwd(const struct tkm_exec_options *exec,
                             const DLTensor *logits,
                             const DLTensor *targets,
                             const DLTensor *row_mask,
                             float temperature,
                             const DLTensor *temperatures,
                             const DLTensor *lse,
                             const DLTensor *entropy,
                             const DLTensor *logp,
                             const DLTensor *max,
                             const DLTensor *log_sum,
                             size_t *nonfinite_rows);

/**
 * `tkm_logits_bwd` on DLPack tensors: `dx` is a 2-D float32 / bfloat16 / float16 CPU tensor
 * of the logits' shape (any row stride, unit column stride); `max`, `log_sum`, `entropy`
 * (required: the forward's outputs) and
 * `g_logp`, `g_entropy`, `g_lse` (NULL = zero) are 1-D `[rows]` float32. Other arguments
 * and rules as `tkm_dl_logits_fwd` and `tkm_logits_bwd`.
 *
 * # Safety
 * As `tkm_dl_logits_fwd`.
 */
tkm_status tkm_dl_logits_bwd(const struct tkm_exec_options *exec,
                             const DLTensor *logits,
                             const DLTensor *targets,
                             const DLTensor *row_mask,
                             float temperature,
                             const DLTensor *temperatures,
                             const DLTensor *max,
                             const DLTensor *log_sum,
                             const DLTensor *entropy,
                             const DLTensor *g_logp,
                             const DLTensor *g_entropy,
                             const DLTensor *g_lse,
                             const DLTensor *dx);

/**
 * `tkm_logits_bwd_inplace` on DLPack tensors: the gradient overwrites `logits`. Arguments
 * as `tkm_dl_logits_bwd` without `dx`.
 *
 * # Safety
 * As `tkm_dl_logits_fwd`; `logits` must be writable.
 */
tkm_status tkm_dl_logits_bwd_inplace(const struct tkm_exec_options *exec,
                                     const DLTensor *logits,
                                     const DLTensor *targets,
                                     const DLTensor *row_mask,
                                     float temperature,
                                     const DLTensor *temperatures,
                                     const DLTensor *max,
                                     const DLTensor *log_sum,
                                     const DLTensor *entropy,
                                     const DLTensor *g_logp,
                                     const DLTensor *g_entropy,
                                     const DLTensor *g_lse);

/**
 * Writes the default DoP options into `*opts`.
 *
 * # Safety
 * `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
 */
tkm_status tkm_dop_options_init(struct tkm_dop_options *opts);

/**
 * Diversity-or-Precision loss and gradient: per row `r`, `loss[r] = L_r =
 * -sum_a w_a log pi_a` with `w_target = pi_t^(1 - (1 - pi_t)^beta)`, `w_a = lam_top pi_a` inside
 * the top-k and `lam_tail pi_a` outside it, and `dx[r, j] = grad_scale * (pi_j W - w_j) /
 * temperature` (`W = sum_a w_a`), in one reduction pass and one writing pass per row.
 *
 * The logits (`dtype`, `[rows, vocab]`, `row_stride`), `targets` (required, `rows` labels; a
 * negative label ignores the row: loss 0, gradient 0), `row_mask` (NULL = keep all; 0 = the
 * row is not read, loss 0, gradient 0) and the temperatures (`temperature` for every row
 * when `temperatures` is NULL) are those of `tkm_logits_fwd`. `opts`: NULL = the defaults.
 * `loss`: required, `rows` floats. `dx`: `[rows, vocab]` with `dx_row_stride`, element type
 * `grad_dtype` (rounded once from f32; the elements between rows are not touched); it must
 * not overlap any input or `loss` (`TKM_STATUS_OVERLAP`; use `tkm_dop_loss_and_grad_inplace`
 * to overwrite the logits). `nonfinite_rows`: NULL or receives the number of rows with a
 * NaN/+inf logit (their loss and gradient are NaN; not an error).
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (`beta <= -1` or not finite, a non-finite `lam_*` or
 * `grad_scale`, NULL `targets`, a vocabulary of 2^32 columns or more), `_EMPTY_VOCAB`,
 * `_BAD_STRIDE`, `_LABEL_OUT_OF_RANGE`, `_INVALID_TEMPERATURE`, `_BAD_DTYPE`, `_OVERLAP`,
 * `_BAD_STRUCT_SIZE`, `_NO_FINITE_LOGIT` (a kept row of all -inf, found during the pass:
 * `loss` and `nonfinite_rows` are not written, `dx` holds unspecified values), and the generic
 * pointer/size/options statuses. Every other error writes nothing.
 *
 * # Safety
 * Every non-NULL pointer must be valid for the element counts above.
 */
tkm_status tkm_dop_loss_and_grad(const struct tkm_exec_options *exec,
                                 tkm_dtype dtype,
                                 const void *logits,
                                 size_t rows,
                                 size_t vocab,
                                 size_t row_stride,
                                 const int32_t *targets,
                                 const uint8_t *row_mask,
                                 float temperature,
                                 const float *temperatures,
                                 const struct tkm_dop_options *opts,
                                 float *loss,
                                 tkm_dtype grad_dtype,
                                 void *dx,
                                 size_t dx_row_stride,
                                 size_t *nonfinite_rows);

/**
 * `tkm_dop_loss_and_grad` with the gradient written over the logits (their dtype and
 * layout; saves an `[rows, vocab]` buffer, as Liger's fused cross-entropy): the same bits.
 * `targets`, `row_mask`, `temperatures` and `loss` must not overlap the logits
 * (`TKM_STATUS_OVERLAP`).
 *
 * # Safety
 * Every non-NULL pointer must be valid for the element counts of `tkm_dop_loss_and_grad`.
 */
tkm_status tkm_dop_loss_and_grad_inplace(const struct tkm_exec_options *exec,
                                         tkm_dtype dtype,
                                         void *logits,
                                         size_t rows,
                                         size_t vocab,
                                         size_t row_stride,
                                         const int32_t *targets,
                                         const uint8_t *row_mask,
                                         float temperature,
                                         const float *temperatures,
                                         const struct tkm_dop_options *opts,
                                         float *loss,
                                         size_t *nonfinite_rows);

/**
 * Writes the default exec options (`struct_size = sizeof(tkm_exec_options)`, one thread,
 * `TKM_BACKEND_AUTO`, the legacy default stream, `TKM_GPU_MODE_CANONICAL`) into `*opts`.
 *
 * # Safety
 * `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one `tkm_exec_options`.
 */
tkm_status tkm_exec_options_init(struct tkm_exec_options *opts);

/**
 * Count bonuses of `n` transitions: `b_g = 1/sqrt(n_global[i])` and the episodic bonus of
 * `n_episodic[i]` (`episodic_form`, `TKM_EPISODIC_*`), their product when both are given;
 * either array may be NULL (absent), not both. Counts are taken after the visit's
 * increment (>= 1).
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (both NULL, a count of 0, an unknown form).
 *
 * # Safety
 * Non-NULL arrays valid for `n` elements; `out` for `n` floats.
 */
tkm_status tkm_count_bonuses(const uint64_t *n_global,
                             const uint64_t *n_episodic,
                             size_t n,
                             uint32_t episodic_form,
                             float *out);

/**
 * Visits `n` keys in order in a count table held in the caller's `keys`/`counts` arrays
 * (`capacity` slots each, a power of two; a new table is all-zero counts, clear one by
 * zeroing `counts`), writing each key's count after its increment to `counts_out`. Any
 * `uint64_t` is a key. The table's contents depend only on the visits made.
 *
 * Refused, with the table unchanged, unless it has a free slot for every visit
 * (occupied + n <= capacity): size it for the distinct keys plus one batch.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (capacity not a power of two, no room),
 * `_OVERLAP` (`counts_out` overlaps the table).
 *
 * # Safety
 * `keys` and `counts` valid for reads and writes of `capacity` elements, `visit_keys` for
 * `n` reads, `counts_out` for `n` writes.
 */
tkm_status tkm_count_table_visit(uint64_t *keys,
                                 uint64_t *counts,
                                 size_t capacity,
                                 const uint64_t *visit_keys,
                                 size_t n,
                                 uint64_t *counts_out);

/**
 * Writes the default E3B options into `*opts`.
 *
 * # Safety
 * `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
 */
tkm_status tkm_e3b_options_init(struct tkm_e3b_options *opts);

/**
 * Resets `n_env` E3B inverses (`c_inv`, `n_env * d * d` floats, row-major) to
 * `(1/lambda) I` (episode start; never for the lifelong variant).
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (`d == 0`, a bad ridge), `_SIZE_OVERFLOW`.
 *
 * # Safety
 * `c_inv` valid for writes of `n_env * d * d` floats.
 */
tkm_status tkm_e3b_reset(const struct tkm_e3b_options *opts, size_t n_env, size_t d, float *c_inv);

/**
 * One E3B step for each of `n_env` environments: with `u = C^-1 phi`, writes
 * `bonus[k] = phi^T u` (0 when `steps[k] == 0` and `zero_first_step`) and updates
 * `C^-1 <- C^-1 - u u^T / (1 + b)` in place, `O(d^2)` per environment, no allocation.
 * `c_inv` is `[n_env, d, d]`, `phi` `[n_env, d]`, `steps[k]` the updates since
 * environment `k`'s reset (the caller increments it), `scratch` `n_env * d` floats.
 * Environments are split over `exec`'s threads; the bits do not depend on them.
 *
 * On any error no inverse and no bonus changes.
 *
 * Errors: `TKM_STATUS_NON_FINITE` (a NaN/inf feature, or a bonus that overflows),
 * `_INVALID_ARGUMENT` (`d == 0`, a bad option), `_OVERLAP` (arrays that overlap),
 * `_SIZE_OVERFLOW`.
 *
 * # Safety
 * Every array valid for its length as above (`c_inv`, `scratch`, `bonus` writable).
 */
tkm_status tkm_e3b_step(const struct tkm_exec_options *exec,
                        const struct tkm_e3b_options *opts,
                        size_t n_env,
                        size_t d,
                        float *c_inv,
                        const float *phi,
                        const uint64_t *steps,
                        float *scratch,
                        float *bonus);

/**
 * RND's prediction error `out[r] = ||pred[r] - target[r]||_2` (L2 norm, not squared) of
 * `rows` rows of `dim` floats (contiguous), accumulated in double precision.
 *
 * Errors: `TKM_STATUS_NON_FINITE` (a NaN/inf input, or a norm that overflows float),
 * `_SIZE_OVERFLOW`.
 *
 * # Safety
 * `pred` and `target` valid for `rows * dim` floats, `out` for `rows`.
 */
tkm_status tkm_rnd_error(const struct tkm_exec_options *exec,
                         size_t rows,
                         size_t dim,
                         const float *pred,
                         const float *target,
                         float *out);

/**
 * NovelD's bonus `out[i] = max(err_next[i] - alpha * err_curr[i], 0)` (`alpha = 0` is RND,
 * the source's `scale_fac` default is 0.1).
 *
 * Errors: `TKM_STATUS_NON_FINITE` (a NaN/inf error), `_INVALID_ARGUMENT` (a negative
 * error, `alpha` negative or not finite).
 *
 * # Safety
 * `err_next`, `err_curr` and `out` valid for `n` floats.
 */
tkm_status tkm_noveld_bonus(size_t n, const float *err_next, const float *err_curr, float alpha, float *out);

/**
 * Combines the episodic and global bonuses of `n` transitions (`TKM_COMBINE_*`; `coeff`
 * is read by `TKM_COMBINE_ADD` only).
 *
 * Errors: `TKM_STATUS_NON_FINITE` (a NaN/inf input, or a result that overflows float),
 * `_INVALID_ARGUMENT` (an unknown mode, a non-finite `coeff`).
 *
 * # Safety
 * `episodic`, `global` and `out` valid for `n` floats.
 */
tkm_status tkm_combine_bonuses(size_t n,
                               const float *episodic,
                               const float *global,
                               uint32_t mode,
                               float coeff,
                               float *out);

/**
 * `*out = a` merged with `b` (Chan et al., in the source's operation order). `out` may
 * alias `a` or `b`.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (a negative or non-finite count or m2, a
 * non-finite sum).
 *
 * # Safety
 * `a`, `b` valid for reading one struct, `out` for writing one.
 */
tkm_status tkm_running_moments_merge(const struct tkm_running_moments *a,
                                     const struct tkm_running_moments *b,
                                     struct tkm_running_moments *out);

/**
 * Writes the default assembly options into `*opts`.
 *
 * # Safety
 * `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
 */
tkm_status tkm_assemble_options_init(struct tkm_assemble_options *opts);

/**
 * The batch partial `(count, sum, m2)` of the stream `opts->norm` normalises (all zeros
 * under `TKM_REWARD_NORM_NONE`): what each rank contributes to the merge.
 *
 * Errors: `TKM_STATUS_NON_FINITE` (a NaN/inf reward), `_INVALID_ARGUMENT` (a bad option).
 *
 * # Safety
 * `r_ext` (unless `use_extrinsic == 0`, then it may be NULL) and `r_int` valid for `n`
 * floats, `out` for writing one struct.
 */
tkm_status tkm_reward_norm_batch_moments(size_t n,
                                         const float *r_ext,
                                         const float *r_int,
                                         const struct tkm_assemble_options *opts,
                                         struct tkm_running_moments *out);

/**
 * Assembles `out[i] = r_ext[i] + eta * r_int[i]` with the normalisation and clipping of
 * `opts`. `moments` is the running state: with `update = 1` this batch is folded into it
 * first (single process; `*moments` is updated on success); with `update = 0` it is used
 * as given (multi-rank: it already holds the merged partials of every rank).
 *
 * Errors: `TKM_STATUS_NON_FINITE` (a NaN/inf reward), `_INVALID_ARGUMENT` (a bad option or
 * state), `_OVERLAP` (`out` overlaps an input).
 *
 * # Safety
 * `r_ext` (unless `use_extrinsic == 0`), `r_int` and `out` valid for `n` floats,
 * `moments` for reading (and, with `update`, writing) one struct.
 */
tkm_status tkm_assemble_rewards(size_t n,
                                const float *r_ext,
                                const float *r_int,
                                const struct tkm_assemble_options *opts,
                                struct tkm_running_moments *moments,
                                uint32_t update,
                                float *out);

/**
 * The leaf hash `H(0x00 || record)` of one committed token, the record being
 * `(version 1, kind, index, salt, token_id, fp_len, fp)` (see the core docs for the bytes).
 * `salt` is 16 bytes (all zero only when hiding is not needed), `kind` a
 * `TKM_FP_KIND_*`, `fp` the `fp_len` fingerprint bytes (NULL only when `fp_len == 0`);
 * `out` receives 32 bytes.
 *
 * # Safety
 * `salt` valid for 16 bytes, `fp` for `fp_len` bytes, `out` for 32 bytes.
 */
tkm_status tkm_fp_leaf_hash(uint64_t index,
                            const uint8_t *salt,
                            uint32_t token_id,
                            uint32_t kind,
                            const uint8_t *fp,
                            size_t fp_len,
                            uint8_t *out);

/**
 * The root (32 bytes into `out`) of the tree over `n` leaf hashes (`leaf_hashes` holds
 * `32 n` bytes); `n == 0` gives `BLAKE3("")`.
 *
 * # Safety
 * `leaf_hashes` valid for `32 n` bytes, `out` for 32 bytes.
 */
tkm_status tkm_fp_root(const uint8_t *leaf_hashes, size_t n, uint8_t *out);

/**
 * Creates an empty streaming tree and stores its handle in `*out` (ownership passes to the
 * caller: free it with `tkm_fp_tree_free`).
 *
 * # Safety
 * `out` valid for writing one pointer.
 */
tkm_status tkm_fp_tree_new(struct tkm_fp_tree **out);

/**
 * Frees a tree made by `tkm_fp_tree_new`. NULL is a no-op. The handle must not be used
 * afterwards.
 *
 * # Safety
 * `tree` is NULL or a live handle from `tkm_fp_tree_new`, not freed before.
 */
void tkm_fp_tree_free(struct tkm_fp_tree *tree);

/**
 * Appends `n` leaf hashes (`32 n` bytes) in order. All or nothing: if the tree would exceed
 * `UINT64_MAX` leaves, nothing is appended (`TKM_STATUS_SIZE_OVERFLOW`).
 *
 * # Safety
 * `tree` a live handle, `leaf_hashes` valid for `32 n` bytes.
 */
tkm_status tkm_fp_tree_append(struct tkm_fp_tree *tree, const uint8_t *leaf_hashes, size_t n);

/**
 * The number of leaves appended so far, into `*out`.
 *
 * # Safety
 * `tree` a live handle, `out` valid for one `uint64_t`.
 */
tkm_status tkm_fp_tree_len(const struct tkm_fp_tree *tree, uint64_t *out);

/**
 * The root of the leaves appended so far (32 bytes into `out`), equal to `tkm_fp_root`
 * over the same leaves.
 *
 * # Safety
 * `tree` a live handle, `out` valid for 32 bytes.
 */
tkm_status tkm_fp_tree_root(const struct tkm_fp_tree *tree, uint8_t *out);

/**
 * An upper bound on every proof length (in hashes) for trees of at most `n` leaves: size
 * proof buffers with it.
 */
size_t tkm_fp_max_proof_len(uint64_t n);

/**
 * The exact number of hashes of the inclusion proof of leaf `index` in a tree of `size`
 * leaves, into `*out` (`TKM_STATUS_INDEX_OUT_OF_RANGE` if `index >= size`).
 *
 * # Safety
 * `out` valid for one `size_t`.
 */
tkm_status tkm_fp_inclusion_proof_len(uint64_t index, uint64_t size, size_t *out);

/**
 * Writes the inclusion proof of leaf `index` in the tree over `n` leaf hashes into `out`
 * (capacity `out_cap` hashes, `32 out_cap` bytes; `TKM_STATUS_LENGTH_MISMATCH` if too
 * small) and its length in hashes into `*out_len`.
 *
 * # Safety
 * `leaf_hashes` valid for `32 n` bytes, `out` for `32 out_cap` bytes, `out_len` for one
 * `size_t`.
 */
tkm_status tkm_fp_inclusion_proof(const uint8_t *leaf_hashes,
                                  size_t n,
                                  uint64_t index,
                                  uint8_t *out,
                                  size_t out_cap,
                                  size_t *out_len);

/**
 * Verifies that `leaf_hash` (32 bytes) is leaf `index` of the tree of `size` leaves with
 * root `root`, given the proof (`proof_len` hashes). `TKM_STATUS_OK` = verified;
 * `TKM_STATUS_PROOF_MISMATCH` (wrong leaf, index, size or a tampered hash),
 * `_PROOF_LENGTH`, `_INDEX_OUT_OF_RANGE` = rejected. `size` must come from a signed head,
 * never from the prover: an inclusion proof alone does not bind the tree size.
 *
 * # Safety
 * `leaf_hash` and `root` valid for 32 bytes, `proof` for `32 proof_len` bytes.
 */
tkm_status tkm_fp_verify_inclusion(uint64_t index,
                                   uint64_t size,
                                   const uint8_t *leaf_hash,
                                   const uint8_t *proof,
                                   size_t proof_len,
                                   const uint8_t *root);

/**
 * Writes the consistency proof from the tree of the first `size1` leaves to the tree over
 * all `n` leaf hashes into `out` (capacity `out_cap` hashes) and its length into
 * `*out_len`. Needs `0 < size1 <= n` (`TKM_STATUS_INVALID_ARGUMENT`).
 *
 * # Safety
 * As `tkm_fp_inclusion_proof`.
 */
tkm_status tkm_fp_consistency_proof(const uint8_t *leaf_hashes,
                                    size_t n,
                                    uint64_t size1,
                                    uint8_t *out,
                                    size_t out_cap,
                                    size_t *out_len);

/**
 * Verifies that the tree of `size2` leaves with root `root2` extends the tree of `size1`
 * leaves with root `root1` (append-only), given the proof (`proof_len` hashes). Statuses
 * as `tkm_fp_verify_inclusion`; `size1 == 0` or `size1 > size2` is
 * `TKM_STATUS_INVALID_ARGUMENT`.
 *
 * # Safety
 * `root1`, `root2` valid for 32 bytes, `proof` for `32 proof_len` bytes.
 */
tkm_status tkm_fp_verify_consistency(uint64_t size1,
                                     uint64_t size2,
                                     const uint8_t *root1,
                                     const uint8_t *root2,
                                     const uint8_t *proof,
                                     size_t proof_len);

/**
 * The byte length of the float encoding `kind` (`TKM_FP_KIND_F32_CANONICAL` 4,
 * `_I8_UNIT` 1, `_BF16` 2 bytes per dimension) of a `dim`-dimensional vector, into `*out`.
 * Other kinds are `TKM_STATUS_INVALID_ARGUMENT`.
 *
 * # Safety
 * `out` valid for one `size_t`.
 */
tkm_status tkm_fp_encoded_len(uint32_t kind, size_t dim, size_t *out);

/**
 * The canonical fingerprint bytes of the `dim` floats `x` under the float encoding `kind`
 * (`TKM_FP_KIND_F32_CANONICAL`: `-0` and subnormals to `+0`, little-endian binary32;
 * `_I8_UNIT`: `round_half_even(127 x / ||x||)` as int8, all 0 for a zero vector; `_BF16`:
 * round-to-nearest-even, little-endian) into `out`, whose length `out_len` must be exactly
 * `tkm_fp_encoded_len` (`TKM_STATUS_LENGTH_MISMATCH`). Pass the bytes as the `fp` of
 * `tkm_fp_leaf_hash`. Errors: `TKM_STATUS_NON_FINITE` for a NaN or infinite input (or a bf16
 * overflow), `TKM_STATUS_INVALID_ARGUMENT` for another kind.
 *
 * # Safety
 * `x` valid for `dim` floats, `out` for `out_len` bytes.
 */
tkm_status tkm_fp_encode(uint32_t kind, const float *x, size_t dim, uint8_t *out, size_t out_len);

/**
 * The CoIn layout `block || token` encoded with the float encoding `kind` as one vector of
 * `block_dim + token_dim` dimensions (for `_I8_UNIT` the norm is over the concatenation)
 * into `out` (`out_len` must be `tkm_fp_encoded_len(kind, block_dim + token_dim)`).
 * Errors as `tkm_fp_encode`.
 *
 * # Safety
 * `block` valid for `block_dim` floats, `token` for `token_dim`, `out` for `out_len` bytes.
 */
tkm_status tkm_fp_encode_coin_layout(uint32_t kind,
                                     const float *block,
                                     size_t block_dim,
                                     const float *token,
                                     size_t token_dim,
                                     uint8_t *out,
                                     size_t out_len);

/**
 * The byte length `TKM_FP_HEAD_FIXED_LEN + ctx_len` of a signed tree head with a context of
 * `ctx_len` bytes, into `*out` (`TKM_STATUS_SIZE_OVERFLOW` for `ctx_len > UINT32_MAX`).
 *
 * # Safety
 * `out` valid for one `size_t`.
 */
tkm_status tkm_fp_signed_head_len(size_t ctx_len, size_t *out);

/**
 * Writes the canonical bytes of the signed tree head committing to `(n, root)` (the bytes a
 * provider signs; signing is outside the library) into `out` (capacity `out_cap` bytes,
 * `TKM_STATUS_LENGTH_MISMATCH` if too small) and their length into `*out_len`. `hash_id`
 * is the tree hash (1 for this library's trees, at most 255), `root` 32 bytes, `ctx` the
 * deployment context (`ctx_len` bytes, NULL only when 0). Verifiers take the tree size of
 * every proof check from a signed head, never from the prover.
 *
 * # Safety
 * `root` valid for 32 bytes, `ctx` for `ctx_len`, `out` for `out_cap`, `out_len` for one
 * `size_t`.
 */
tkm_status tkm_fp_signed_head_encode(uint32_t hash_id,
                                     uint64_t n,
                                     const uint8_t *root,
                                     const uint8_t *ctx,
                                     size_t ctx_len,
                                     uint8_t *out,
                                     size_t out_cap,
                                     size_t *out_len);

/**
 * The BLAKE3 digest of the signed tree head of `tkm_fp_signed_head_encode` (32 bytes into
 * `out`), computed without materialising the bytes.
 *
 * # Safety
 * `root` valid for 32 bytes, `ctx` for `ctx_len`, `out` for 32 bytes.
 */
tkm_status tkm_fp_signed_head_digest(uint32_t hash_id,
                                     uint64_t n,
                                     const uint8_t *root,
                                     const uint8_t *ctx,
                                     size_t ctx_len,
                                     uint8_t *out);

/**
 * Parses signed tree head bytes strictly (tag, version, exact length) into `*out`; the
 * context is `bytes + out->ctx_offset`, `out->ctx_len` bytes. Malformed bytes are
 * `TKM_STATUS_INVALID_ARGUMENT`.
 *
 * # Safety
 * `bytes` valid for `len` bytes, `out` for one `tkm_fp_head`.
 */
tkm_status tkm_fp_signed_head_parse(const uint8_t *bytes, size_t len, struct tkm_fp_head *out);

/**
 * The SimHash signature of the `dim` floats `x` with `k = 64 words` hyperplanes drawn from
 * the 32-byte `seed` (`planes` is `TKM_FP_PLANES_*`), into `sig` (`words` words; bit `j`
 * is bit `j % 64` of `sig[j / 64]`), and its guard bits at threshold `tau` (finite, >= 0;
 * the library default 0.005) into `guard_bits` (`words` words): a bit is guarded when its
 * normalised margin is below `tau`. Errors: `TKM_STATUS_INVALID_ARGUMENT` for `dim == 0`,
 * `words == 0`, a bad `tau` or `planes`; `TKM_STATUS_NON_FINITE` for a non-finite input.
 *
 * # Safety
 * `x` valid for `dim` floats, `seed` for 32 bytes, `sig` and `guard_bits` for `words` words.
 */
tkm_status tkm_fp_simhash(const float *x,
                          size_t dim,
                          const uint8_t *seed,
                          uint32_t planes,
                          double tau,
                          uint64_t *sig,
                          uint64_t *guard_bits,
                          size_t words);

/**
 * The Hamming distance `popcount((a ^ b) & ~guard_bits)` of two `words`-word signatures on the
 * bits not guarded (`guard_bits` NULL = no guard: the plain Hamming distance), into `*out`.
 *
 * # Safety
 * `a`, `b` (and `guard_bits` unless NULL) valid for `words` words, `out` for one `uint32_t`.
 */
tkm_status tkm_fp_masked_hamming(const uint64_t *a,
                                 const uint64_t *b,
                                 const uint64_t *guard_bits,
                                 size_t words,
                                 uint32_t *out);

/**
 * Acceptance of a committed SimHash `(sig, guard_bits)` against the verifier's recomputed
 * `sig_verifier` (`words` words each): `*accepted = 1` when at most `g_max` bits are guarded
 * and at most `t` unguarded bits differ, else 0 (library defaults `t = 0`, `g_max = 64`).
 *
 * # Safety
 * `sig`, `guard_bits`, `sig_verifier` valid for `words` words, `accepted` for one `uint32_t`.
 */
tkm_status tkm_fp_simhash_accept(const uint64_t *sig,
                                 const uint64_t *guard_bits,
                                 const uint64_t *sig_verifier,
                                 size_t words,
                                 uint32_t t,
                                 uint32_t g_max,
                                 uint32_t *accepted);

/**
 * The `TKM_FP_KIND_SIMHASH` fingerprint bytes of `(sig, guard_bits)` (`words` words each): the
 * signature words then the guard words, little-endian, into `out` (`out_len` must be
 * `16 words`, `TKM_STATUS_LENGTH_MISMATCH`).
 *
 * # Safety
 * `sig`, `guard_bits` valid for `words` words, `out` for `out_len` bytes.
 */
tkm_status tkm_fp_encode_simhash(const uint64_t *sig,
                                 const uint64_t *guard_bits,
                                 size_t words,
                                 uint8_t *out,
                                 size_t out_len);

/**
 * The inverse of `tkm_fp_encode_simhash`: `len` must be `16 words`
 * (`TKM_STATUS_LENGTH_MISMATCH`).
 *
 * # Safety
 * `bytes` valid for `len` bytes, `sig` and `guard_bits` for `words` words.
 */
tkm_status tkm_fp_decode_simhash(const uint8_t *bytes,
                                 size_t len,
                                 uint64_t *sig,
                                 uint64_t *guard_bits,
                                 size_t words);

/**
 * The exact probability that auditing `s` distinct leaves sampled uniformly from `m` (`s`
 * above `m` counts as `m`) catches at least one of `forged` forged leaves, each caught with
 * probability `q` when sampled (hypergeometric), into `*out`. Errors:
 * `TKM_STATUS_INVALID_ARGUMENT` for `q` outside `[0, 1]` or `forged > m`.
 *
 * # Safety
 * `out` valid for one `double`.
 */
tkm_status tkm_fp_detect_prob(uint64_t m, uint64_t forged, uint64_t s, double q, double *out);

/**
 * The binomial lower bound `1 - (1 - q f)^s` of the detection probability for a forged
 * fraction `forged_frac` (in `[0, 1]`), into `*out`.
 *
 * # Safety
 * `out` valid for one `double`.
 */
tkm_status tkm_fp_detect_prob_bound(double forged_frac, uint64_t s, double q, double *out);

/**
 * The number of audited leaves for detection with confidence `1 - delta` under the binomial
 * bound, `ceil(ln delta / ln(1 - q f))` (0 for `delta >= 1`, 1 for `q f = 1`), into `*out`.
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` for `q` or `forged_frac` outside `[0, 1]`, `delta`
 * not finite and > 0, or `q f = 0`; `TKM_STATUS_SIZE_OVERFLOW` beyond `UINT64_MAX`.
 *
 * # Safety
 * `out` valid for one `uint64_t`.
 */
tkm_status tkm_fp_samples_for_confidence(double forged_frac, double q, double delta, uint64_t *out);

/**
 * HAPO's entropy normaliser: `ĥ` at every one of the `n` positions into `h_hat`, and the
 * statistics into `*norm` (NULL = not wanted). `mask`: NULL = `entropy > 0`. `pivot_q` in
 * `[0, 1]` (HAPO: 0.8), `eps` finite and > 0 (HAPO: 1e-8), `sign` a `TKM_HAPO_SIGN_*`. An empty
 * mask gives `ĥ = 0` and the statistics `(0, 1, 1, -1 or +1)`.
 *
 * # Safety
 * Every non-NULL pointer must be valid for `n` elements (`norm`: one struct).
 */
tkm_status tkm_hapo_entropy_norm(const struct tkm_exec_options *exec,
                                 const float *entropy,
                                 const uint8_t *mask,
                                 size_t n,
                                 float pivot_q,
                                 float eps,
                                 uint32_t sign,
                                 float *h_hat,
                                 struct tkm_hapo_norm *norm);

/**
 * HAPO's adaptive sampling temperature of each of `rows` decoding steps from their logits
 * (`[rows, vocab]` of `dtype`, row stride `row_stride`, before temperature):
 * `base_temp * (1 + tau * clamp(ĥ(H), -1, 1))` with the previous step's statistics `norm`
 * (NULL = none yet: `out_temp = base_temp`). Rows with a NaN/+inf logit get their base
 * temperature; `nonfinite_rows` (NULL = not wanted) receives their number.
 *
 * Errors: `TKM_STATUS_INVALID_TEMPERATURE` (a base temperature not finite and > 0),
 * `_NO_FINITE_LOGIT`, `_EMPTY_VOCAB`, `_BAD_DTYPE`, `_BAD_STRIDE`, `_INVALID_ARGUMENT`.
 *
 * # Safety
 * The pointers must be valid for the element counts above.
 */
tkm_status tkm_hapo_adaptive_temperature(const struct tkm_exec_options *exec,
                                         tkm_dtype dtype,
                                         const void *logits,
                                         size_t rows,
                                         size_t vocab,
                                         size_t row_stride,
                                         const float *base_temp,
                                         const struct tkm_hapo_norm *norm,
                                         float tau,
                                         uint32_t sign,
                                         float *out_temp,
                                         size_t *nonfinite_rows);

/**
 * Writes the default advantage options into `*opts`.
 *
 * # Safety
 * `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
 */
tkm_status tkm_hapo_adv_options_init(struct tkm_hapo_adv_options *opts);

/**
 * HAPO's token-level group-average advantage `[rows, cols]` (`rows` responses of `cols`
 * tokens) from per-token rewards and the mask; `group`: `rows` labels (any `uint32_t`).
 *
 * Errors: `TKM_STATUS_NON_FINITE` (a reward), `_INVALID_ARGUMENT` (`cols = 0`, options), and
 * the generic statuses.
 *
 * # Safety
 * The `[rows, cols]` arrays must be valid for `rows * cols` elements, `group` for `rows`.
 */
tkm_status tkm_hapo_token_group_advantage(const struct tkm_exec_options *exec,
                                          const float *token_rewards,
                                          const uint8_t *mask,
                                          const uint32_t *group,
                                          size_t rows,
                                          size_t cols,
                                          const struct tkm_hapo_adv_options *opts,
                                          float *adv);

/**
 * HAPO's asymmetric adaptive clip widths from `ĥ` (`n` each): `eps_low_out`, `eps_high_out`.
 * `eps_low`, `eps_high` finite and >= 0 (HAPO: 0.2), `alpha` finite (HAPO: 1).
 *
 * # Safety
 * Every pointer must be valid for `n` elements.
 */
tkm_status tkm_hapo_adaptive_clip(const struct tkm_exec_options *exec,
                                  const float *h_hat,
                                  size_t n,
                                  float eps_low,
                                  float eps_high,
                                  float alpha,
                                  float *eps_low_out,
                                  float *eps_high_out);

/**
 * HAPO's differential advantage redistribution `A'` (`n` each): `ratio` = the current
 * `exp(logp - old_logp)`, `eps_low`/`eps_high` the per-token widths, `beta` finite (HAPO: 1).
 *
 * # Safety
 * Every pointer must be valid for `n` elements.
 */
tkm_status tkm_hapo_redistribute(const struct tkm_exec_options *exec,
                                 const float *adv,
                                 const float *h_hat,
                                 const float *ratio,
                                 const float *eps_low,
                                 const float *eps_high,
                                 size_t n,
                                 float beta,
                                 float *out);

/**
 * The HAPO loss per token and its gradient w.r.t. `logp` (`[rows, cols]` arrays): dual-clip PPO
 * with per-token widths `eps_low`/`eps_high`, advantages `adv` (= `A'`), no log-ratio clamp,
 * dual clip `dual_clip_c` (> 1; 0 = off; HAPO: 10). `is_weights`: NULL = none. `stats`: NULL =
 * not wanted.
 *
 * # Safety
 * The arrays must be valid for `rows * cols` elements.
 */
tkm_status tkm_hapo_loss(const struct tkm_exec_options *exec,
                         const float *logp,
                         const float *old_logp,
                         const float *adv,
                         const uint8_t *mask,
                         const float *is_weights,
                         const float *eps_low,
                         const float *eps_high,
                         size_t rows,
                         size_t cols,
                         float dual_clip_c,
                         float *loss,
                         float *dloss_dlogp,
                         struct tkm_hapo_stats *stats);

/**
 * Writes the defaults into `*input` (`struct_size = sizeof(tkm_logits_input)`,
 * `TKM_DTYPE_F32`, temperature 1, every pointer NULL and every size 0).
 *
 * # Safety
 * `input` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one `tkm_logits_input`.
 */
tkm_status tkm_logits_input_init(struct tkm_logits_input *input);

/**
 * Forward: per row, `lse = log sum exp(z)`, `entropy` (nats) and optionally the target
 * log-prob `logp = z[target] - lse`, `max = max z` and `log_sum = log sum exp(z - max)`
 * (save `max`, `log_sum` and `entropy` for the backward), in one pass over the logits
 * described by `*input` (required; see `tkm_logits_input`: the logits, targets, row mask
 * and temperatures).
 *
 * * `lse`, `entropy`: required, `rows` floats. `logp` (needs `targets`), `max`,
 *   `log_sum`: NULL = not wanted. `nonfinite_rows`: NULL or receives the number of rows
 *   with a NaN/+inf logit (their outputs are NaN; this is not an error).
 *
 * Errors: `TKM_STATUS_EMPTY_VOCAB`, `_BAD_STRIDE`, `_LABEL_OUT_OF_RANGE`,
 * `_INVALID_TEMPERATURE`, `_NO_FINITE_LOGIT` (a kept row of all -inf), `_INVALID_ARGUMENT`
 * (`logp` without `targets`), `_BAD_STRUCT_SIZE` (`input->struct_size`), and the generic
 * pointer/size/options statuses.
 *
 * # Safety
 * `input` must point to a `tkm_logits_input` whose pointers are valid for the element
 * counts it gives; every other non-NULL pointer must be valid for `rows` elements.
 */
tkm_status tkm_logits_fwd(const struct tkm_exec_options *exec,
                          const struct tkm_logits_input *input,
                          float *lse,
                          float *entropy,
                          float *logp,
                          float *max,
                          float *log_sum,
                          size_t *nonfinite_rows);

/**
 * Backward: writes `d L / d logits` for
 * `L = sum_rows (g_lse lse + g_logp logp + g_entropy entropy)` into `dx` (`[rows, vocab]`,
 * row stride `dx_row_stride`, element type `grad_dtype`, rounded once from f32; the
 * elements between rows are not touched).
 *
 * `logits`, `targets`, `row_mask` and the temperatures must be those of the forward;
 * `max`, `log_sum` and `entropy` (required, `rows` floats) are the forward's outputs (the
 * backward never reads `lse`: its rounding at large `|max|` would swamp `log_sum`). `g_logp`,
 * `g_entropy`, `g_lse`: NULL = zero, else `rows` floats. Rows whose saved statistics are
 * NaN get a NaN gradient row; masked rows get 0.
 *
 * `dx` must not overlap any input (`TKM_STATUS_OVERLAP`; use `tkm_logits_bwd_inplace` to
 * overwrite the logits). Nothing is written unless the call succeeds: this kernel has no
 * error that can occur after validation.
 *
 * # Safety
 * Every non-NULL pointer must be valid for the element counts above.
 */
tkm_status tkm_logits_bwd(const struct tkm_exec_options *exec,
                          tkm_dtype dtype,
                          const void *logits,
                          size_t rows,
                          size_t vocab,
                          size_t row_stride,
                          const int32_t *targets,
                          const uint8_t *row_mask,
                          float temperature,
                          const float *temperatures,
                          const float *max,
                          const float *log_sum,
                          const float *entropy,
                          const float *g_logp,
                          const float *g_entropy,
                          const float *g_lse,
                          tkm_dtype grad_dtype,
                          void *dx,
                          size_t dx_row_stride);

/**
 * Backward of a vocabulary shard (tensor-parallel LM heads): `logits` holds global columns
 * `[col_offset, col_offset + cols)` (of a vocabulary of `vocab`) of every row, and `dx`
 * (`[rows, cols]`, row stride `dx_row_stride`) receives those columns of the gradient that
 * `tkm_logits_bwd` would write for the whole vocabulary.
 *
 * `max`, `log_sum` and `entropy` are the **full-vocabulary** statistics: the output of
 * `tkm_logits_finalize` on the merged partials of every shard. `targets` are global column
 * ids validated against `vocab`; every row's `g_logp` reaches every column (a shard without
 * the target still gets `-p_j g_logp`), the target column adds `g_logp` itself. The other
 * arguments and policies are those of `tkm_logits_bwd`. The gradient is elementwise, so
 * with the same statistics each shard's `dx` is bitwise the slice of the unsharded one, for
 * any `col_offset` (aligned to `TKM_LOGITS_BLOCK` or not). `cols == 0` writes nothing.
 *
 * Errors: those of `tkm_logits_bwd`, and `TKM_STATUS_SHARD_OUT_OF_RANGE` for a shard that
 * does not fit in `vocab` (`TKM_STATUS_EMPTY_VOCAB` for `vocab == 0`).
 *
 * # Safety
 * Every non-NULL pointer must be valid for the element counts above.
 */
tkm_status tkm_logits_bwd_shard(const struct tkm_exec_options *exec,
                                tkm_dtype dtype,
                                const void *logits,
                                size_t rows,
                                size_t cols,
                                size_t row_stride,
                                size_t col_offset,
                                size_t vocab,
                                const int32_t *targets,
                                const uint8_t *row_mask,
                                float temperature,
                                const float *temperatures,
                                const float *max,
                                const float *log_sum,
                                const float *entropy,
                                const float *g_logp,
                                const float *g_entropy,
                                const float *g_lse,
                                tkm_dtype grad_dtype,
                                void *dx,
                                size_t dx_row_stride);

/**
 * Backward written over the logits (saves an `[rows, vocab]` buffer): same as
 * `tkm_logits_bwd` with `dx` = `logits`, in the logits' dtype and layout. The saved and
 * upstream arrays must not overlap the logits (`TKM_STATUS_OVERLAP`).
 *
 * # Safety
 * Every non-NULL pointer must be valid for the element counts of `tkm_logits_bwd`.
 */
tkm_status tkm_logits_bwd_inplace(const struct tkm_exec_options *exec,
                                  tkm_dtype dtype,
                                  void *logits,
                                  size_t rows,
                                  size_t vocab,
                                  size_t row_stride,
                                  const int32_t *targets,
                                  const uint8_t *row_mask,
                                  float temperature,
                                  const float *temperatures,
                                  const float *max,
                                  const float *log_sum,
                                  const float *entropy,
                                  const float *g_logp,
                                  const float *g_entropy,
                                  const float *g_lse);

/**
 * Partial statistics of a vocabulary shard: `logits` holds global columns
 * `[col_offset, col_offset + cols)` (of a vocabulary of `vocab`) of every row. `targets`
 * are global column ids validated against `vocab`. Writes one `tkm_row_stats` per row to
 * `out` (`rows` entries). Combine shards with `tkm_logits_merge_shards`, finish with
 * `tkm_logits_finalize`.
 *
 * # Safety
 * Every non-NULL pointer must be valid for the element counts above.
 */
tkm_status tkm_logits_partial(const struct tkm_exec_options *exec,
                              tkm_dtype dtype,
                              const void *logits,
                              size_t rows,
                              size_t cols,
                              size_t row_stride,
                              size_t col_offset,
                              size_t vocab,
                              const int32_t *targets,
                              const uint8_t *row_mask,
                              float temperature,
                              const float *temperatures,
                              struct tkm_row_stats *out);

/**
 * Number of `tkm_row_stats` per row that `tkm_logits_partial_blocks` writes for a shard of
 * `cols` columns: `ceil(cols / TKM_LOGITS_BLOCK)`.
 */
size_t tkm_logits_partial_blocks_len(size_t cols);

/**
 * Per-block partial statistics of a vocabulary shard: `out` is `[rows, blocks]` (dense,
 * `blocks = tkm_logits_partial_blocks_len(cols)`) and receives the tuple of every
 * `TKM_LOGITS_BLOCK`-column block. `col_offset` must be a multiple of `TKM_LOGITS_BLOCK`
 * (`TKM_STATUS_INVALID_ARGUMENT`). Merged with `tkm_logits_merge_block_partials`, any
 * such sharding reproduces `tkm_logits_fwd` **bitwise**.
 *
 * # Safety
 * Every non-NULL pointer must be valid for the element counts above.
 */
tkm_status tkm_logits_partial_blocks(const struct tkm_exec_options *exec,
                                     tkm_dtype dtype,
                                     const void *logits,
                                     size_t rows,
                                     size_t cols,
                                     size_t row_stride,
                                     size_t col_offset,
                                     size_t vocab,
                                     const int32_t *targets,
                                     const uint8_t *row_mask,
                                     float temperature,
                                     const float *temperatures,
                                     struct tkm_row_stats *out);

/**
 * Merges per-shard partials: `parts[k]` points to shard `k`'s `rows` tuples (shards in
 * column order), `out` receives `rows` merged tuples. `n_parts == 0` gives empty tuples.
 * `TKM_STATUS_DUPLICATE_TARGET` if two shards contain a row's target.
 *
 * # Safety
 * `parts` must be valid for `n_parts` pointers, each valid for `rows` tuples; `out` for
 * `rows` tuples.
 */
tkm_status tkm_logits_merge_shards(const struct tkm_row_stats *const *parts,
                                   size_t n_parts,
                                   size_t rows,
                                   struct tkm_row_stats *out);

/**
 * Merges per-block partials of shards: `parts[k]` points to shard `k`'s dense
 * `[rows, blocks[k]]` output of `tkm_logits_partial_blocks` (shards in column order);
 * `out` receives `rows` tuples, bitwise equal to the unsharded forward's. Finish with
 * `tkm_logits_finalize`.
 *
 * # Safety
 * `parts` and `blocks` must be valid for `n_parts` entries, `parts[k]` for
 * `rows * blocks[k]` tuples, `out` for `rows` tuples.
 */
tkm_status tkm_logits_merge_block_partials(const struct tkm_row_stats *const *parts,
                                           const size_t *blocks,
                                           size_t n_parts,
                                           size_t rows,
                                           struct tkm_row_stats *out);

/**
 * Finalizes merged partials (`stats`, `rows` tuples) into the forward's outputs, with the
 * same arguments and policies as `tkm_logits_fwd` (`targets` and `row_mask` must be those
 * given to the partials). A kept row with a target whose tuple lacks it is
 * `TKM_STATUS_MISSING_TARGET`.
 *
 * # Safety
 * Every non-NULL pointer must be valid for `rows` elements.
 */
tkm_status tkm_logits_finalize(const struct tkm_row_stats *stats,
                               size_t rows,
                               const int32_t *targets,
                               const uint8_t *row_mask,
                               float *lse,
                               float *entropy,
                               float *logp,
                               float *max,
                               float *log_sum,
                               size_t *nonfinite_rows);

/**
 * Writes the default PPO clip options into `*opts`.
 *
 * # Safety
 * `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
 */
tkm_status tkm_ppo_clip_options_init(struct tkm_ppo_clip_options *opts);

/**
 * Writes the default aggregation denominators into `*norm`.
 *
 * # Safety
 * `norm` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
 */
tkm_status tkm_agg_norm_init(struct tkm_agg_norm *norm);

/**
 * PPO clipped surrogate per token, forward and gradient: for `[rows, cols]` arrays
 * `logp`, `old_logp`, `adv`, `mask` (and `is_weights`, NULL = none: rollout importance
 * weights multiplied into the loss and its gradient), writes `loss[b,t]` and
 * `dloss_dlogp[b,t]` (0 at masked positions) and, if `stats` is not NULL, the clip metrics.
 * Reduce with `tkm_agg_loss`; the logits backward's `g_logp` is `w * dloss_dlogp` with `w`
 * from `tkm_agg_weights`.
 *
 * # Safety
 * Every non-NULL array must be valid for `rows * cols` elements.
 */
tkm_status tkm_ppo_clip_loss(const struct tkm_exec_options *exec,
                             const float *logp,
                             const float *old_logp,
                             const float *adv,
                             const uint8_t *mask,
                             const float *is_weights,
                             size_t rows,
                             size_t cols,
                             const struct tkm_ppo_clip_options *opts,
                             float *loss,
                             float *dloss_dlogp,
                             struct tkm_policy_stats *stats);

/**
 * The scalar loss `L = sum w[b,t] loss[b,t]` of per-token losses (`[rows, cols]`) under
 * `mode` (`TKM_AGG_*`) and `norm` (NULL = defaults), into `*out`. An empty denominator gives 0.
 *
 * # Safety
 * `loss` and `mask` valid for `rows * cols` elements, `out` for one float.
 */
tkm_status tkm_agg_loss(const struct tkm_exec_options *exec,
                        const float *loss,
                        const uint8_t *mask,
                        size_t rows,
                        size_t cols,
                        uint32_t mode,
                        const struct tkm_agg_norm *norm,
                        float *out);

/**
 * The aggregation weights `w[b,t] = dL/d loss[b,t]` (`[rows, cols]`, 0 at masked positions)
 * of `tkm_agg_loss` into `w`.
 *
 * # Safety
 * `mask` and `w` valid for `rows * cols` elements.
 */
tkm_status tkm_agg_weights(const struct tkm_exec_options *exec,
                           const uint8_t *mask,
                           size_t rows,
                           size_t cols,
                           uint32_t mode,
                           const struct tkm_agg_norm *norm,
                           float *w);

/**
 * Writes the default KL options into `*opts`.
 *
 * # Safety
 * `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
 */
tkm_status tkm_kl_options_init(struct tkm_kl_options *opts);

/**
 * Writes the default GSPO options into `*opts`.
 *
 * # Safety
 * `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
 */
tkm_status tkm_gspo_options_init(struct tkm_gspo_options *opts);

/**
 * Writes the default CISPO options into `*opts`.
 *
 * # Safety
 * `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
 */
tkm_status tkm_cispo_options_init(struct tkm_cispo_options *opts);

/**
 * Writes the default SAPO options into `*opts`.
 *
 * # Safety
 * `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
 */
tkm_status tkm_sapo_options_init(struct tkm_sapo_options *opts);

/**
 * `tkm_ppo_clip_loss` with a KL penalty folded in, in one pass:
 * `loss = loss_pg * w_is + kl_coef * kl`, `dloss_dlogp` likewise (the importance weights
 * multiply the policy term only, as verl). `ref_logp` (`[rows, cols]`) is `log pi_ref` of
 * the sampled tokens; `kl` (NULL = defaults) chooses the estimator; `kl_coef` (verl
 * `kl_loss_coef`, finite) scales it. Bitwise equal to the sum of `tkm_ppo_clip_loss` and
 * `kl_coef` times `tkm_kl_loss`. `stats` and `kl_stats` (NULL = not wanted) receive the clip
 * metrics and the unscaled KL sum.
 *
 * Errors: as `tkm_ppo_clip_loss`; `TKM_STATUS_INVALID_ARGUMENT` for a non-finite `kl_coef`
 * or an unknown `kl->kind`.
 *
 * # Safety
 * Every non-NULL array must be valid for `rows * cols` elements.
 */
tkm_status tkm_ppo_clip_kl_loss(const struct tkm_exec_options *exec,
                                const float *logp,
                                const float *old_logp,
                                const float *adv,
                                const uint8_t *mask,
                                const float *is_weights,
                                const float *ref_logp,
                                size_t rows,
                                size_t cols,
                                const struct tkm_ppo_clip_options *opts,
                                const struct tkm_kl_options *kl,
                                float kl_coef,
                                float *loss,
                                float *dloss_dlogp,
                                struct tkm_policy_stats *stats,
                                struct tkm_kl_stats *kl_stats);

/**
 * One PPO + KL step, fused: `tkm_ppo_clip_kl_loss`, `tkm_agg_loss` and
 * `tkm_agg_chain_inplace` in one pass over the tokens. Writes the per-token `loss`,
 * `g_logp = w * dloss_dlogp` (the aggregation weight applied: pass it as the `g_logp`
 * upstream of `tkm_logits_bwd`), the scalar `*total_loss = L` under `mode` (`TKM_AGG_*`) and
 * `norm` (NULL = defaults), and, if not NULL, the clip and KL metrics. Bitwise what the
 * three calls give (a NaN's sign and payload aside).
 *
 * Errors: those of the three calls.
 *
 * # Safety
 * Every non-NULL array must be valid for `rows * cols` elements, `total_loss` for one
 * float.
 */
tkm_status tkm_ppo_clip_kl_step(const struct tkm_exec_options *exec,
                                const float *logp,
                                const float *old_logp,
                                const float *adv,
                                const uint8_t *mask,
                                const float *is_weights,
                                const float *ref_logp,
                                size_t rows,
                                size_t cols,
                                const struct tkm_ppo_clip_options *opts,
                                const struct tkm_kl_options *kl,
                                float kl_coef,
                                uint32_t mode,
                                const struct tkm_agg_norm *norm,
                                float *loss,
                                float *g_logp,
                                float *total_loss,
                                struct tkm_policy_stats *stats,
                                struct tkm_kl_stats *kl_stats);

/**
 * GSPO (sequence-level ratio `s_b = exp(min(mean_t(logp - old_logp), cap))`, clipped as
 * PPO), per token, forward and gradient, with the arguments of `tkm_ppo_clip_loss` and
 * `opts` (NULL = defaults). verl aggregates it with `TKM_AGG_SEQ_MEAN_TOKEN_MEAN`. A row
 * without valid tokens gives zeros.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` for an `eps` negative or not finite, or a cap that
 * is NaN or `-INFINITY`; pointer and size errors as everywhere.
 *
 * # Safety
 * Every non-NULL array must be valid for `rows * cols` elements.
 */
tkm_status tkm_gspo_loss(const struct tkm_exec_options *exec,
                         const float *logp,
                         const float *old_logp,
                         const float *adv,
                         const uint8_t *mask,
                         const float *is_weights,
                         size_t rows,
                         size_t cols,
                         const struct tkm_gspo_options *opts,
                         float *loss,
                         float *dloss_dlogp,
                         struct tkm_policy_stats *stats);

/**
 * CISPO (`loss = -sg(w) * A * logp`, `w` the clamped ratio), per token, forward and
 * gradient, with the arguments of `tkm_ppo_clip_loss` and `opts` (NULL = defaults).
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` for NaN bounds, `w_min > w_max`, `w_min = INFINITY`,
 * `w_max = -INFINITY` or a negative or non-finite clamp.
 *
 * # Safety
 * Every non-NULL array must be valid for `rows * cols` elements.
 */
tkm_status tkm_cispo_loss(const struct tkm_exec_options *exec,
                          const float *logp,
                          const float *old_logp,
                          const float *adv,
                          const uint8_t *mask,
                          const float *is_weights,
                          size_t rows,
                          size_t cols,
                          const struct tkm_cispo_options *opts,
                          float *loss,
                          float *dloss_dlogp,
                          struct tkm_policy_stats *stats);

/**
 * SAPO (`loss = -A * sigmoid(tau (r - 1)) * 4 / tau`), per token, forward and gradient, with
 * the arguments of `tkm_ppo_clip_loss` and `opts` (NULL = defaults). verl aggregates it with
 * `TKM_AGG_SEQ_MEAN_TOKEN_MEAN`.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` for a temperature that is not finite and > 0, or a
 * negative or non-finite clamp.
 *
 * # Safety
 * Every non-NULL array must be valid for `rows * cols` elements.
 */
tkm_status tkm_sapo_loss(const struct tkm_exec_options *exec,
                         const float *logp,
                         const float *old_logp,
                         const float *adv,
                         const uint8_t *mask,
                         const float *is_weights,
                         size_t rows,
                         size_t cols,
                         const struct tkm_sapo_options *opts,
                         float *loss,
                         float *dloss_dlogp,
                         struct tkm_policy_stats *stats);

/**
 * The per-token KL estimator `kl[b,t]` of `d = logp - ref_logp` and its gradient w.r.t.
 * `logp` (`[rows, cols]`, 0 at masked positions), with `opts` (NULL = defaults), and, if
 * `stats` is not NULL, its sum and count. Reduce with `tkm_agg_loss`.
 *
 * # Safety
 * `logp`, `ref_logp`, `mask`, `loss`, `dloss_dlogp` valid for `rows * cols` elements.
 */
tkm_status tkm_kl_loss(const struct tkm_exec_options *exec,
                       const float *logp,
                       const float *ref_logp,
                       const uint8_t *mask,
                       size_t rows,
                       size_t cols,
                       const struct tkm_kl_options *opts,
                       float *loss,
                       float *dloss_dlogp,
                       struct tkm_kl_stats *stats);

/**
 * Truncated importance weights (rollout correction) into `out` (`[rows, cols]`, 0 at masked
 * positions): `level` is `TKM_TIS_*`, `cap` the truncation (> 0; `INFINITY` = none). Pass
 * the result as `is_weights` of the loss calls.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` for an unknown level or a cap that is NaN or <= 0.
 *
 * # Safety
 * `old_logp`, `rollout_logp`, `mask`, `out` valid for `rows * cols` elements.
 */
tkm_status tkm_tis_weights(const struct tkm_exec_options *exec,
                           const float *old_logp,
                           const float *rollout_logp,
                           const uint8_t *mask,
                           size_t rows,
                           size_t cols,
                           uint32_t level,
                           float cap,
                           float *out);

/**
 * Multiplies `d[b,t]` (`[rows, cols]`, e.g. the `dloss_dlogp` of a loss call) by the
 * aggregation weight `w[b,t]` of `tkm_agg_weights(mask, rows, cols, mode, norm)` in place,
 * without materialising `w`: the result is the `g_logp` upstream of `tkm_logits_bwd`.
 * Masked positions become 0 whatever `d` held. Bitwise equal to `tkm_agg_weights` followed
 * by `tkm_logp_upstream` with the single term `(1, d)`. Nothing can fail after validation,
 * so `d` is written directly; `d` must not overlap `mask` (`TKM_STATUS_OVERLAP`).
 *
 * # Safety
 * `mask` valid for `rows * cols` bytes, `d` for reads and writes of `rows * cols` floats.
 */
tkm_status tkm_agg_chain_inplace(const struct tkm_exec_options *exec,
                                 const uint8_t *mask,
                                 size_t rows,
                                 size_t cols,
                                 uint32_t mode,
                                 const struct tkm_agg_norm *norm,
                                 float *d);

/**
 * The fused per-token upstream of the logits backward,
 * `g_logp[i] = w[i] * sum_k coefs[k] * terms[k][i]` (terms summed in the order given, in
 * f32; 0 where `w[i] = 0`), for a loss `L = sum_k coefs[k] * agg(loss_k)` whose terms share
 * the aggregation weights `w` (`n` floats, from `tkm_agg_weights`). `terms` holds `n_terms`
 * pointers to `n` floats each (e.g. `{dloss_pg, dloss_kl}` with `coefs = {1, beta}`).
 * `out` may alias `w` or a term (it is written at the end).
 *
 * # Safety
 * `w` and every `terms[k]` valid for `n` floats, `coefs` and `terms` for `n_terms`
 * elements, `out` for `n` floats.
 */
tkm_status tkm_logp_upstream(const struct tkm_exec_options *exec,
                             const float *w,
                             size_t n,
                             const float *coefs,
                             const float *const *terms,
                             size_t n_terms,
                             float *out);

/**
 * The entropy-bonus upstream `g_entropy[i] = -coef * w[i]` (0 where `w[i] = 0`) for
 * `L -= coef * agg(H)` (verl `entropy_coeff`), `w` the `n` aggregation weights of the bonus'
 * mask. Pass it as the `g_entropy` upstream of `tkm_logits_bwd`. `out` may alias `w`.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` for a non-finite `coef`.
 *
 * # Safety
 * `w` and `out` valid for `n` floats.
 */
tkm_status tkm_entropy_upstream(const struct tkm_exec_options *exec,
                                const float *w,
                                size_t n,
                                float coef,
                                float *out);

/**
 * Writes the default DPO options into `*opts`.
 *
 * # Safety
 * `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
 */
tkm_status tkm_dpo_options_init(struct tkm_dpo_options *opts);

/**
 * Writes the default SimPO options into `*opts`.
 *
 * # Safety
 * `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
 */
tkm_status tkm_simpo_options_init(struct tkm_simpo_options *opts);

/**
 * Writes the default T-REG regulariser options into `*opts`.
 *
 * # Safety
 * `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
 */
tkm_status tkm_treg_reg_options_init(struct tkm_treg_reg_options *opts);

/**
 * Writes the default T-REG options into `*opts`.
 *
 * # Safety
 * `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
 */
tkm_status tkm_treg_options_init(struct tkm_treg_options *opts);

/**
 * Writes the default cDPO options into `*opts`.
 *
 * # Safety
 * `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
 */
tkm_status tkm_cdpo_options_init(struct tkm_cdpo_options *opts);

/**
 * Sequence log-ratios `rho[r] = sum_t mask[r,t] (logp[r,t] - ref_logp[r,t])` of `rows`
 * rows of `t` tokens (summed in double, rounded once; masked positions are not read; an
 * empty row gives 0).
 *
 * # Safety
 * `mask`, `logp`, `ref_logp` valid for `rows * t` elements, `rho` for `rows`.
 */
tkm_status tkm_seq_logratio(const struct tkm_exec_options *exec,
                            const uint8_t *mask,
                            const float *logp,
                            const float *ref_logp,
                            size_t rows,
                            size_t t,
                            float *rho);

/**
 * The backward of `tkm_seq_logratio`: `grad[r,t] = g_rho[r] * mask[r,t]` (0 at masked
 * positions). For DPO pass `beta * dl_dh` for the chosen and `-beta * dl_dh` for the
 * rejected responses.
 *
 * # Safety
 * `mask`, `grad` valid for `rows * t` elements, `g_rho` for `rows`.
 */
tkm_status tkm_seq_logratio_bwd(const struct tkm_exec_options *exec,
                                const uint8_t *mask,
                                const float *g_rho,
                                size_t rows,
                                size_t t,
                                float *grad);

/**
 * DPO per pair: `h = beta (rho_w - rho_l)`, `loss = (1 - eps) softplus(-h) + eps softplus(h)`,
 * `dl_dh`, and (if `margin` is not NULL) `h`. `opts` NULL = defaults.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (`beta` not finite and > 0, `label_smoothing`
 * outside [0, 1]) and the generic pointer/options statuses.
 *
 * # Safety
 * Every non-NULL array valid for `n` elements.
 */
tkm_status tkm_dpo_loss(const struct tkm_exec_options *exec,
                        const float *rho_w,
                        const float *rho_l,
                        size_t n,
                        const struct tkm_dpo_options *opts,
                        float *loss,
                        float *dl_dh,
                        float *margin);

/**
 * SimPO per pair: `h = beta/len_w logp_sum_w - beta/len_l logp_sum_l - gamma`, the
 * label-smoothed loss, `dl_dh` and (if `margin` is not NULL) `h`.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (a length of 0, `beta`, `gamma` or
 * `label_smoothing` out of range) and the generic pointer/options statuses.
 *
 * # Safety
 * Every non-NULL array valid for `n` elements.
 */
tkm_status tkm_simpo_loss(const struct tkm_exec_options *exec,
                          const float *logp_sum_w,
                          const uint32_t *len_w,
                          const float *logp_sum_l,
                          const uint32_t *len_l,
                          size_t n,
                          const struct tkm_simpo_options *opts,
                          float *loss,
                          float *dl_dh,
                          float *margin);

/**
 * T-REG token rewards `r_hat[i] = sigmoid(lp_better[i] - lp_worse[i]) - 0.5` where
 * `mask[i] != 0`, else 0.
 *
 * # Safety
 * Every array valid for `n` elements.
 */
tkm_status tkm_treg_token_rewards(const struct tkm_exec_options *exec,
                                  const uint8_t *mask,
                                  const float *lp_better,
                                  const float *lp_worse,
                                  size_t n,
                                  float *r_hat);

/**
 * T-REG's reward-weighted LM loss `L_REG[r] = -sum_t mask beta r_hat logp` (or its mean
 * over the mask) per row, and its gradient w.r.t. `logp` (`[rows, t]`, 0 at masked
 * positions).
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (`beta`, an unknown `reduction`) and the generic
 * pointer/size/options statuses.
 *
 * # Safety
 * `mask`, `logp`, `r_hat`, `grad` valid for `rows * t` elements, `loss` for `rows`.
 */
tkm_status tkm_treg_reg_loss(const struct tkm_exec_options *exec,
                             const uint8_t *mask,
                             const float *logp,
                             const float *r_hat,
                             size_t rows,
                             size_t t,
                             const struct tkm_treg_reg_options *opts,
                             float *loss,
                             float *grad);

/**
 * The T-REG total loss per pair from the margin `h` (of `tkm_dpo_loss` or
 * `tkm_simpo_loss`) and the two responses' `L_REG`: `loss = l(h) + alpha w (reg_w + reg_l)`
 * with `w = sigmoid(-h)`; `dl_dh`, `dl_dreg = alpha w` and (if `weight` is not NULL) `w`.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (`alpha` not finite and >= 0, `label_smoothing`,
 * `stop_grad_weight` not 0/1) and the generic pointer/options statuses.
 *
 * # Safety
 * Every non-NULL array valid for `n` elements.
 */
tkm_status tkm_treg_loss(const struct tkm_exec_options *exec,
                         const float *h,
                         const float *reg_w,
                         const float *reg_l,
                         size_t n,
                         const struct tkm_treg_options *opts,
                         float *loss,
                         float *dl_dh,
                         float *dl_dreg,
                         float *weight);

/**
 * cDPO contrastive-estimation scores, streamed over the vocabulary (no `[rows, vocab]`
 * buffer): `scores[r] = softmax((1 + beta) pos[r] - beta neg[r])[targets[r]]`. `pos` and
 * `neg` are `[rows, vocab]` logits of type `dtype` (`TKM_DTYPE_F32`/`_BF16`/`_F16`, both the
 * same) with row strides `pos_row_stride`, `neg_row_stride`; `targets[r]` is the next
 * token of row `r`. A column that is -inf in either model is excluded. `beta` is the
 * contrast strength `beta'` (finite, >= 0; the released code uses 1). `nonfinite_rows`:
 * NULL or receives the number of rows with a NaN/+inf logit (their score is NaN).
 *
 * Errors: `TKM_STATUS_BAD_DTYPE`, `_BAD_STRIDE`, `_EMPTY_VOCAB`, `_LABEL_OUT_OF_RANGE`,
 * `_NO_FINITE_LOGIT` (a row whose every column is masked), `_INVALID_ARGUMENT` (`beta`),
 * and the generic pointer/size statuses.
 *
 * # Safety
 * `pos`, `neg` valid for `(rows - 1) * stride + vocab` elements of `dtype`; `targets`,
 * `scores` for `rows`.
 */
tkm_status tkm_cdpo_ce_scores(const struct tkm_exec_options *exec,
                              tkm_dtype dtype,
                              const void *pos,
                              size_t pos_row_stride,
                              const void *neg,
                              size_t neg_row_stride,
                              size_t rows,
                              size_t vocab,
                              const uint32_t *targets,
                              float beta,
                              float *scores,
                              size_t *nonfinite_rows);

/**
 * The cDPO loss (`*loss`, a scalar) and its gradients w.r.t. the masked per-token
 * log-ratios `dw` (chosen) and `dl` (rejected), all `[rows, t]`; `c` (chosen weights, read
 * only when `only_neg = 0`, then required; NULL otherwise allowed) and `v` (rejected
 * weights `1 - s_neg`) are aligned to the label positions by the caller.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (`beta`, `label_smoothing`, `only_neg` not 0/1, an
 * unknown `form`, `c` NULL with `only_neg = 0`, an empty batch) and the generic
 * pointer/size/options statuses.
 *
 * # Safety
 * Every non-NULL array valid for `rows * t` elements; `loss` for one float.
 */
tkm_status tkm_cdpo_loss(const struct tkm_exec_options *exec,
                         const uint8_t *mask_w,
                         const uint8_t *mask_l,
                         const float *dw,
                         const float *dl,
                         const float *c,
                         const float *v,
                         size_t rows,
                         size_t t,
                         const struct tkm_cdpo_options *opts,
                         float *loss,
                         float *grad_w,
                         float *grad_l);

/**
 * The unbiased pass@k estimate `1 - C(n - c, k) / C(n, k)` into `*out`, computed in log
 * space (stable for n up to 2^53; at most `min(c, k)` factors, and the product stops once
 * it is below `e^-40`, where the result is exactly 1: about `√(40·n)` steps at worst).
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (`c > n`, `k == 0`, `k > n`),
 * `TKM_STATUS_NULL_POINTER`, `TKM_STATUS_MISALIGNED`.
 *
 * # Safety
 * `out` NULL or valid for one double.
 */
tkm_status tkm_pass_at_k(uint64_t n, uint64_t c, uint64_t k, double *out);

/**
 * TVM prefix-trie value labels: path `n` is `tokens[offsets[n] .. offsets[n + 1]]`
 * (`offsets`: `n_paths + 1` non-decreasing entries from 0 to `n_tokens`), `outcome[n]` is
 * 0 or 1; `labels[i]` (parallel to `tokens`) receives `correct / visits` over the paths
 * that share the prefix ending at token `i`.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (bad offsets, an outcome not 0/1),
 * `TKM_STATUS_OUT_OF_MEMORY` (the `2 n_paths` scratch) and the generic pointer statuses.
 *
 * # Safety
 * `tokens`, `labels` valid for `n_tokens` elements, `offsets` for `n_paths + 1`, `outcome`
 * for `n_paths`.
 */
tkm_status tkm_tvm_prefix_value_labels(const uint32_t *tokens,
                                       size_t n_tokens,
                                       const size_t *offsets,
                                       const uint8_t *outcome,
                                       size_t n_paths,
                                       float *labels);

/**
 * The TVM value-head loss over the masked tokens (token mean) into `*loss`, and its
 * gradient w.r.t. `pred_logit` (`n` floats, 0 at masked positions). `kind`:
 * `TKM_VALUE_LOSS_MSE` or `TKM_VALUE_LOSS_BCE`. An empty mask gives 0.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (an unknown `kind`) and the generic pointer statuses.
 *
 * # Safety
 * `mask`, `pred_logit`, `label`, `grad` valid for `n` elements; `loss` for one float.
 */
tkm_status tkm_value_loss(const struct tkm_exec_options *exec,
                          const uint8_t *mask,
                          const float *pred_logit,
                          const float *label,
                          size_t n,
                          uint32_t kind,
                          float *loss,
                          float *grad);

/**
 * Step-level beam selection: writes the indices of the `min(k, n)` highest `scores`
 * (best first; ties by the lower index; NaN ranked below every number) into `out` and
 * their count into `*n_out`. `out` must hold `min(k, n)` elements.
 *
 * # Safety
 * `scores` valid for `n` floats, `out` for `min(k, n)` elements, `n_out` for one.
 */
tkm_status tkm_beam_step_select(const float *scores, size_t n, size_t k, size_t *out, size_t *n_out);

/**
 * QuoTA's frame count `base + trunc(video_secs / 3600 * per_hour)` (source: 96, 64) into
 * `*out`.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (`video_secs` negative or not finite, a count past
 * `UINT32_MAX`).
 *
 * # Safety
 * `out` valid for writing one `uint32_t`.
 */
tkm_status tkm_quota_frame_count(double video_secs, uint32_t base, uint32_t per_hour, uint32_t *out);

/**
 * `count` frame indices `floor(j * (total_frames - 1) / (count - 1))` in exact integer
 * arithmetic (`count = 1` gives 0).
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (`total_frames == 0` with `count >= 1`).
 *
 * # Safety
 * `out` valid for `count` elements.
 */
tkm_status tkm_quota_frame_indices(uint64_t total_frames, size_t count, uint64_t *out);

/**
 * Normalised frame weights `w_i = (scale p_i)^power / sum_j (scale p_j)^power` of `n`
 * relevance scores in [0, 1] (source: scale 100, power 2); uniform when all are 0.
 *
 * Errors: `TKM_STATUS_NON_FINITE` (a NaN/inf score), `_INVALID_ARGUMENT` (a score outside
 * [0, 1], `scale` or `power` not finite and > 0).
 *
 * # Safety
 * `p_yes` and `out` valid for `n` floats.
 */
tkm_status tkm_quota_frame_weights(size_t n, const float *p_yes, float scale, float power, float *out);

/**
 * The source's `scale_weights(w, max_value)` on `n` weights in place (caps at `max_value`
 * and redistributes the excess, exactly as the source, quirks included).
 *
 * Errors: `TKM_STATUS_NON_FINITE` (a NaN/inf weight), `_INVALID_ARGUMENT` (a negative
 * weight, `max_value` not finite and > 0). `w` is unchanged on error.
 *
 * # Safety
 * `w` valid for reads and writes of `n` floats.
 */
tkm_status tkm_quota_scale_weights(size_t n, float *w, float max_value);

/**
 * Integer token budgets of `total` tokens for `n` frame weights (`TKM_BUDGET_*`).
 *
 * Errors: `TKM_STATUS_NON_FINITE` (a NaN/inf weight), `_INVALID_ARGUMENT` (a negative
 * weight, all-zero weights under largest remainder, a budget past `UINT32_MAX`, an
 * unknown rule).
 *
 * # Safety
 * `w` valid for `n` floats, `out` for `n` `uint32_t`.
 */
tkm_status tkm_quota_token_budgets(size_t n, const float *w, uint32_t total, uint32_t rule, uint32_t *out);

/**
 * The grid `h x w` (`h * w <= n`) for a budget of `n` tokens into `*h`, `*w`.
 *
 * # Safety
 * `h` and `w` valid for writing one `uint32_t` each.
 */
tkm_status tkm_quota_grid_for_budget(uint32_t n, uint32_t *h, uint32_t *w);

/**
 * Reduces (or grows) one frame's `h x w x c` feature map (row-major, channels last) to
 * `oh x ow x c` with `mode` (`TKM_RESIZE_*`).
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (a zero size, an unknown mode), `_OVERLAP` (`out`
 * overlaps `src`), `_SIZE_OVERFLOW`.
 *
 * # Safety
 * `src` valid for `h * w * c` floats, `out` for `oh * ow * c`.
 */
tkm_status tkm_quota_resize_hwc(const float *src,
                                size_t h,
                                size_t w,
                                size_t c,
                                size_t oh,
                                size_t ow,
                                uint32_t mode,
                                float *out);

/**
 * One ToMe bipartite soft-matching round (QuoTA v4/v5) of `t` tokens of `dim` floats
 * (`x`, row-major): merges `r` pairs (capped at `t / 2`) and writes the `t - r` tokens
 * (unmerged even-position tokens in descending best-match order, then every odd-position
 * token, merged ones averaged) to the first `(t - r) * dim` floats of `out`, which holds
 * `t * dim`; the count goes to `*t_out`. `r = 0` copies the tokens unchanged.
 *
 * Errors: `TKM_STATUS_NON_FINITE` (a NaN/inf feature), `_INVALID_ARGUMENT` (`t` past
 * `UINT32_MAX`), `_OVERLAP` (`out` overlaps `x`), `_SIZE_OVERFLOW`, `_OUT_OF_MEMORY`.
 *
 * # Safety
 * `x` and `out` valid for `t * dim` floats, `t_out` for writing one `size_t`.
 */
tkm_status tkm_quota_tome_round(const float *x, size_t t, size_t dim, size_t r, float *out, size_t *t_out);

/**
 * The number of valid tokens (`mask != 0`) of `rows x cols`: this rank's share of the
 * `global_count` of `tkm_entropy_quantile_init`.
 *
 * # Safety
 * `mask` valid for `rows*cols` bytes, `count` for one `uint64_t`.
 */
tkm_status tkm_valid_count(const struct tkm_exec_options *exec,
                           const uint8_t *mask,
                           size_t rows,
                           size_t cols,
                           uint64_t *count);

/**
 * Starts the cross-rank computation of the top-entropy threshold over `global_count`
 * valid tokens (the sum of every rank's `tkm_valid_count`) for `rho =
 * top_entropy_quantile` in (0, 1]. The protocol (every rank runs it on the same merged
 * values): while the step is `TKM_QUANTILE_STEP_HISTOGRAM`, sum every rank's
 * `tkm_entropy_quantile_local_histogram` element-wise and push it; if it is
 * `TKM_QUANTILE_STEP_MIN_ABOVE`, push the minimum of every rank's
 * `tkm_entropy_quantile_local_min_above`; then read the threshold. At most 4 rounds of
 * 256 counts and one float.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (`rho`).
 *
 * # Safety
 * `state` valid for writing one `tkm_entropy_quantile`.
 */
tkm_status tkm_entropy_quantile_init(uint64_t global_count, float rho, struct tkm_entropy_quantile *state);

/**
 * The next step of the protocol (`TKM_QUANTILE_STEP_*`) into `*step`.
 *
 * # Safety
 * `state` valid for one struct, `step` for one `uint32_t`.
 */
tkm_status tkm_entropy_quantile_step(const struct tkm_entropy_quantile *state, uint32_t *step);

/**
 * This rank's histogram of the current round into `hist` (`TKM_RADIX_BINS` counts).
 *
 * Errors: `TKM_STATUS_NON_FINITE` (a NaN or infinite entropy at a valid position),
 * `_INVALID_ARGUMENT` (not a histogram round, or a corrupted state).
 *
 * # Safety
 * `mask`, `entropy` valid for `rows*cols` elements, `hist` for `TKM_RADIX_BINS`.
 */
tkm_status tkm_entropy_quantile_local_histogram(const struct tkm_entropy_quantile *state,
                                                const struct tkm_exec_options *exec,
                                                const uint8_t *mask,
                                                const float *entropy,
                                                size_t rows,
                                                size_t cols,
                                                uint64_t *hist);

/**
 * Takes the element-wise sum over ranks of this round's histograms (`TKM_RADIX_BINS`
 * counts) and advances `*state`.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (not a histogram round; a histogram whose total is
 * not the number of candidates, i.e. a wrong global count or a missing rank; a corrupted
 * state). `*state` is unchanged on error.
 *
 * # Safety
 * `state` valid for reads and writes of one struct, `merged` for `TKM_RADIX_BINS` counts.
 */
tkm_status tkm_entropy_quantile_push_histogram(struct tkm_entropy_quantile *state, const uint64_t *merged);

/**
 * This rank's smallest valid entropy above the selected `v_lo` (`+inf` if none) into `*out`.
 *
 * Errors: as `tkm_entropy_quantile_local_histogram` (outside the min-above step:
 * `_INVALID_ARGUMENT`).
 *
 * # Safety
 * `mask`, `entropy` valid for `rows*cols` elements, `out` for one float.
 */
tkm_status tkm_entropy_quantile_local_min_above(const struct tkm_entropy_quantile *state,
                                                const struct tkm_exec_options *exec,
                                                const uint8_t *mask,
                                                const float *entropy,
                                                size_t rows,
                                                size_t cols,
                                                float *out);

/**
 * Takes the minimum over ranks of `tkm_entropy_quantile_local_min_above` and finishes.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (not the min-above step; a minimum that is not a
 * finite value above `v_lo`; a corrupted state).
 *
 * # Safety
 * `state` valid for reads and writes of one struct.
 */
tkm_status tkm_entropy_quantile_push_min_above(struct tkm_entropy_quantile *state, float merged_min);

/**
 * The threshold once the step is `TKM_QUANTILE_STEP_DONE`: `*has_theta = 1` and `*theta`,
 * or `*has_theta = 0` when no token is valid anywhere (then nothing is kept).
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (not finished, or a corrupted state).
 *
 * # Safety
 * `state` valid for one struct, `has_theta` for one `uint32_t`, `theta` for one float.
 */
tkm_status tkm_entropy_quantile_threshold(const struct tkm_entropy_quantile *state,
                                          uint32_t *has_theta,
                                          float *theta);

/**
 * The top-entropy threshold on one rank: TRL's `get_high_entropy_mask` threshold
 * (`torch.quantile(H[mask], 1 - rho)`, linear interpolation), `*has_theta = 0` when no
 * token is valid.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (`rho` outside (0, 1]), `_NON_FINITE` (a NaN or
 * infinite entropy at a valid position).
 *
 * # Safety
 * `mask`, `entropy` valid for `rows*cols` elements; `has_theta`, `theta` for one element.
 */
tkm_status tkm_top_entropy_threshold(const struct tkm_exec_options *exec,
                                     const uint8_t *mask,
                                     const float *entropy,
                                     size_t rows,
                                     size_t cols,
                                     float rho,
                                     uint32_t *has_theta,
                                     float *theta);

/**
 * `keep[j] = (mask[j] != 0 && entropy[j] >= theta)` (0/1); `has_theta = 0` keeps nothing.
 * `*kept` (optional, NULL = not wanted) receives the number kept.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (`has_theta` not 0/1, a NaN `theta`).
 *
 * # Safety
 * `mask`, `entropy`, `keep` valid for `rows*cols` elements; `kept` NULL or one `uint64_t`.
 */
tkm_status tkm_top_entropy_mask(const struct tkm_exec_options *exec,
                                const uint8_t *mask,
                                const float *entropy,
                                size_t rows,
                                size_t cols,
                                uint32_t has_theta,
                                float theta,
                                uint8_t *keep,
                                uint64_t *kept);

/**
 * The exact max-variance subset of size `m` of `x` (`n` floats): `keep[i] = 1` for the
 * chosen indices (PODS Lemma 3.1: some `k` largest and `m - k` smallest; the smallest such
 * `k` on ties).
 *
 * Errors: `TKM_STATUS_NON_FINITE` (a NaN or infinite value), `_INVALID_ARGUMENT`
 * (`n >= 2^32`), `_OUT_OF_MEMORY`.
 *
 * # Safety
 * `x` and `keep` valid for `n` elements.
 */
tkm_status tkm_max_variance_subset(const float *x, size_t n, size_t m, uint8_t *keep);

/**
 * D³S sample selection: `keep_rows[b] = 1` for the `n_keep` responses of the max-variance
 * subset of `adv_seq` (`n` floats). With `group_stage = 1` each group first keeps its
 * max-variance subset of size `per_group`, grouped by `group_ids`/`group_size` (exactly one
 * of them, as `tkm_grpo_advantage`); with `group_stage = 0` the grouping arguments are not
 * read.
 *
 * Errors: `TKM_STATUS_NON_FINITE` (an advantage), `_INVALID_ARGUMENT` (`group_stage` not
 * 0/1, the grouping), `_OUT_OF_MEMORY`.
 *
 * # Safety
 * `adv_seq`, `keep_rows` valid for `n` elements; `group_ids` NULL or valid for `n`.
 */
tkm_status tkm_d3s_select_samples(const float *adv_seq,
                                  size_t n,
                                  const uint32_t *group_ids,
                                  size_t group_size,
                                  uint32_t group_stage,
                                  size_t per_group,
                                  size_t n_keep,
                                  uint8_t *keep_rows);

/**
 * Writes the default D³S schedule into `*opts`.
 *
 * # Safety
 * `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
 */
tkm_status tkm_d3s_schedule_options_init(struct tkm_d3s_schedule_options *opts);

/**
 * The D³S budgets at training progress `p` in [0, 1] for a batch of `batch` responses:
 * `*n_keep = clamp(round(N(p) * batch), 1, batch)` and `*k_frac = K(p)`, both linear in `p`.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (`p` outside [0, 1], a fraction outside (0, 1]).
 *
 * # Safety
 * `opts` NULL or valid; `n_keep`, `k_frac` valid for one element.
 */
tkm_status tkm_d3s_schedule(float p,
                            const struct tkm_d3s_schedule_options *opts,
                            size_t batch,
                            size_t *n_keep,
                            float *k_frac);

/**
 * D³S token mask: `out[b,t] = 1` for the `ceil(k_frac * n)` tokens with the largest
 * `|adv| * entropy` among the `n` valid tokens of the rows with `keep_rows[b] != 0` (ties:
 * lower flat index first). `*kept` (optional) receives the count.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (`k_frac` outside [0, 1]), `_NON_FINITE` (an
 * advantage or entropy of a taking-part token).
 *
 * # Safety
 * `mask`, `adv`, `entropy`, `out` valid for `rows*cols` elements, `keep_rows` for `rows`,
 * `kept` NULL or one `uint64_t`.
 */
tkm_status tkm_d3s_token_mask(const struct tkm_exec_options *exec,
                              const uint8_t *mask,
                              const float *adv,
                              const float *entropy,
                              const uint8_t *keep_rows,
                              size_t rows,
                              size_t cols,
                              float k_frac,
                              uint8_t *out,
                              uint64_t *kept);

/**
 * Writes the default PSR/NSR/W-REINFORCE options into `*opts`.
 *
 * # Safety
 * `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
 */
tkm_status tkm_nsr_options_init(struct tkm_nsr_options *opts);

/**
 * PSR/NSR/W-REINFORCE advantages `adv` (`rows*cols`, 0 at padding and on dropped rows) and
 * `keep_rows` (1 = the row stays in the batch; PSR keeps the rows whose valid scores sum to
 * 1, NSR those summing to 0).
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (mode, `gamma`, `lambda`, `reserved`),
 * `_NON_FINITE` (a reward or score at a valid position).
 *
 * # Safety
 * `mask`, `token_rewards`, `scores`, `adv` valid for `rows*cols` elements, `keep_rows` for
 * `rows`, `opts` NULL or valid.
 */
tkm_status tkm_nsr_advantage(const struct tkm_exec_options *exec,
                             const uint8_t *mask,
                             const float *token_rewards,
                             const float *scores,
                             size_t rows,
                             size_t cols,
                             const struct tkm_nsr_options *opts,
                             uint8_t *keep_rows,
                             float *adv);

/**
 * GRPO-N / GSPO-N (best understanding of arXiv 2510.04028): in place,
 * `adv_seq[b] = min(adv_seq[b], 0)`, and with `TKM_NEG_DROP_POSITIVES` the mask row of every
 * positive row is cleared. `*positives` (optional) receives the number of positive rows.
 *
 * Errors: `TKM_STATUS_NON_FINITE` (an advantage), `_INVALID_ARGUMENT` (mode), `_OVERLAP`
 * (`mask` and `adv_seq` overlap). Nothing is changed on error.
 *
 * # Safety
 * `mask` valid for `rows*cols` bytes and `adv_seq` for `rows` floats, both read and written;
 * `positives` NULL or one `size_t`.
 */
tkm_status tkm_grpo_negative_only(const struct tkm_exec_options *exec,
                                  uint8_t *mask,
                                  float *adv_seq,
                                  size_t rows,
                                  size_t cols,
                                  uint32_t mode,
                                  size_t *positives);

/**
 * The expected logit update of one softmax policy-gradient step:
 * `out[b] = lr * probs[b] * (adv[b] - sum_a probs[a] * adv[a])` over `n` actions.
 *
 * Errors: `TKM_STATUS_NON_FINITE` (a probability, advantage or `lr`), `_INVALID_ARGUMENT`
 * (a negative probability).
 *
 * # Safety
 * `probs`, `adv`, `out` valid for `n` floats.
 */
tkm_status tkm_expected_logit_update(const float *probs, const float *adv, size_t n, float lr, float *out);

/**
 * NTHR/THR prediction errors restricted to the group's sampled ids `V*`:
 * `out[i][c] = (c == sampled_col[i]) - q[i][c]` for `q` the old policy's probabilities
 * gathered on `V*` (`[n, vstar]`, dense row-major, not renormalised).
 *
 * Errors: `TKM_STATUS_LABEL_OUT_OF_RANGE` (a column `>= vstar`), `_NON_FINITE` (a `q`).
 *
 * # Safety
 * `q`, `out` valid for `n*vstar` floats, `sampled_col` for `n`.
 */
tkm_status tkm_prediction_error_restricted(const struct tkm_exec_options *exec,
                                           const float *q,
                                           const uint32_t *sampled_col,
                                           size_t n,
                                           size_t vstar,
                                           float *out);

/**
 * Influence scores `out[j] = sum_i w_i <g_i, g_j> <h_i, h_j>` of `n_query` query tokens
 * against `n_src` source tokens (`src_weight` NULL = all 1). NTHR: sources = the tokens of
 * the correct responses, queries = those of the incorrect (`s-`) or correct (`s+`) ones.
 * Dot products in f32 in index order, the sum over sources in f64 in source order.
 *
 * Errors: `TKM_STATUS_NON_FINITE` (a feature or weight).
 *
 * # Safety
 * `src_g`/`query_g` valid for `n*vstar` floats, `src_h`/`query_h` for `n*d`, `src_weight`
 * NULL or `n_src`, `out` for `n_query`.
 */
tkm_status tkm_influence_scores(const struct tkm_exec_options *exec,
                                const float *src_g,
                                const float *src_h,
                                const float *src_weight,
                                size_t n_src,
                                const float *query_g,
                                const float *query_h,
                                size_t n_query,
                                size_t vstar,
                                size_t d,
                                float *out);

/**
 * NTHR's threshold `tau = beta * min_i mean(pos_scores of response i)`: `pos_scores` holds
 * the `s+` scores of the correct responses' tokens, response after response, and
 * `pos_lens[i]` their lengths (`n_responses` of them); empty responses are skipped.
 *
 * Errors: `TKM_STATUS_LENGTH_MISMATCH` (`n_scores` is not the sum of the lengths),
 * `_INVALID_ARGUMENT` (no non-empty response, `beta` not finite), `_NON_FINITE` (a score).
 *
 * # Safety
 * `pos_scores` valid for `n_scores` floats, `pos_lens` for `n_responses`, `tau` for one.
 */
tkm_status tkm_nthr_threshold(const float *pos_scores,
                              size_t n_scores,
                              const size_t *pos_lens,
                              size_t n_responses,
                              float beta,
                              float *tau);

/**
 * NTHR's factor `eta = 2 |0.5 - correct/group|` of a mixed group.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` unless `0 < correct < group`.
 *
 * # Safety
 * `eta` valid for one float.
 */
tkm_status tkm_nthr_eta(size_t correct, size_t group, float *eta);

/**
 * NTHR in place: `adv[j] *= eta` where `valid[j] != 0` and `neg_scores[j] > tau` (the tokens
 * of one mixed group's incorrect responses). `*count` (optional) receives how many.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (`tau` NaN, `eta` not finite), `_NON_FINITE` (a NaN
 * score at a valid token), `_OVERLAP` (`adv` overlaps an input). Nothing changes on error.
 *
 * # Safety
 * `adv` (read and written), `neg_scores` valid for `n` floats, `valid` for `n` bytes,
 * `count` NULL or one `size_t`.
 */
tkm_status tkm_nthr_reweight(const struct tkm_exec_options *exec,
                             float *adv,
                             const float *neg_scores,
                             const uint8_t *valid,
                             size_t n,
                             float tau,
                             float eta,
                             size_t *count);

/**
 * Writes the default THR options into `*opts`.
 *
 * # Safety
 * `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
 */
tkm_status tkm_thr_options_init(struct tkm_thr_options *opts);

/**
 * THR scores `thr[j] = adv[j] * (sum_i w_i <g_i, g_j> <h_i, h_j> - self term)` of `n_query`
 * tokens against the `n_src` tokens of the correct responses (`src_weight` NULL = unit
 * weights; pass `1/|y_i|` per token for the inverse-length weighting). `self_src` (NULL =
 * keep every term) gives, per query token, its own source row or `UINT32_MAX`: its own term
 * is then left out.
 *
 * Errors: `TKM_STATUS_NON_FINITE` (a feature, weight or advantage), `_INVALID_ARGUMENT` (a
 * `self_src` row out of range).
 *
 * # Safety
 * As `tkm_influence_scores`; `adv` and `thr` valid for `n_query` floats, `self_src` NULL
 * or `n_query`.
 */
tkm_status tkm_thr_scores(const struct tkm_exec_options *exec,
                          const float *src_g,
                          const float *src_h,
                          const float *src_weight,
                          size_t n_src,
                          const float *query_g,
                          const float *query_h,
                          const float *adv,
                          const uint32_t *self_src,
                          size_t n_query,
                          size_t vstar,
                          size_t d,
                          float *thr);

/**
 * THR in place: `adv[j]` becomes `A'` from `thr[j]` and `tau` under `opts` (see
 * `tkm_thr_options`). `*dominant` (optional) receives the number of dominant tokens.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (mode, `p`, `keep_non_dominant`, `reserved`, `tau`
 * NaN), `_NON_FINITE` (a NaN THR), `_OVERLAP`. Nothing changes on error.
 *
 * # Safety
 * `adv` (read and written), `thr` valid for `n` floats; `opts` NULL or valid; `dominant`
 * NULL or one `size_t`.
 */
tkm_status tkm_thr_reweight(const struct tkm_exec_options *exec,
                            float *adv,
                            const float *thr,
                            size_t n,
                            float tau,
                            const struct tkm_thr_options *opts,
                            size_t *dominant);

/**
 * `torch.quantile(values[mask != 0], q)` with linear interpolation (`q` in [0, 1], the
 * position computed in double): `*has_value = 0` when no position is valid.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (`q`), `_NON_FINITE` (a NaN or infinite value at a
 * valid position).
 *
 * # Safety
 * `mask`, `values` valid for `rows*cols` elements; `has_value`, `value` for one.
 */
tkm_status tkm_linear_quantile(const struct tkm_exec_options *exec,
                               const uint8_t *mask,
                               const float *values,
                               size_t rows,
                               size_t cols,
                               double q,
                               uint32_t *has_value,
                               float *value);

/**
 * RMT's token budget `max(b_min, floor(b0 * gamma^(step/total)))` into `*budget`.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (`total = 0`, `gamma` not finite and > 0).
 *
 * # Safety
 * `budget` valid for one `uint32_t`.
 */
tkm_status tkm_rmt_token_budget(uint64_t step,
                                uint64_t total,
                                uint32_t b0,
                                uint32_t b_min,
                                float gamma,
                                uint32_t *budget);

/**
 * RMT's triangular length reward of a reasoning length `len` against `budget` into `*out`.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (`budget = 0`, `r_max` not finite).
 *
 * # Safety
 * `out` valid for one float.
 */
tkm_status tkm_rmt_length_reward(uint32_t len, uint32_t budget, float r_max, float *out);

/**
 * Writes the default RMT curriculum into `*opts`.
 *
 * # Safety
 * `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
 */
tkm_status tkm_rmt_curriculum_options_init(struct tkm_rmt_curriculum_options *opts);

/**
 * RMT's tier distribution at `step` of `total` into `out[3]` (easy, medium, hard).
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (`total = 0`, fractions not `0 <= t1 <= t2 <= 1`,
 * probabilities negative, not finite or all 0).
 *
 * # Safety
 * `opts` NULL or valid; `out` valid for 3 floats.
 */
tkm_status tkm_rmt_curriculum_probs(uint64_t step,
                                    uint64_t total,
                                    const struct tkm_rmt_curriculum_options *opts,
                                    float *out);

/**
 * Entropy tiers of the candidate tokens (`mask != 0`): `tiers[j]` = 1 easy (`H < theta1`),
 * 2 medium, 3 hard (`H >= theta2`), 0 padding, with `theta1`, `theta2` the linear quantiles
 * at `q1 <= q2` (the library's terciles: 1/3, 2/3). `thresholds` (optional, 2 floats)
 * receives them (0, 0 without candidates).
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (`q1`, `q2`), `_NON_FINITE` (a candidate entropy).
 *
 * # Safety
 * `mask`, `entropy`, `tiers` valid for `rows*cols` elements; `thresholds` NULL or 2 floats.
 */
tkm_status tkm_entropy_tiers(const struct tkm_exec_options *exec,
                             const uint8_t *mask,
                             const float *entropy,
                             size_t rows,
                             size_t cols,
                             double q1,
                             double q2,
                             uint8_t *tiers,
                             float *thresholds);

/**
 * Samples one position from `tiers` (`n` codes from `tkm_entropy_tiers`): a tier by the
 * distribution `p[3]` (empty tiers' probability moved to the others in proportion) with
 * the uniform `u_tier` in [0, 1), then the `floor(u_token * n_tier)`-th token of that tier
 * in index order. `*found = 0` when no token has a tier.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (uniforms outside [0, 1), a bad `p`, a tier code
 * above 3).
 *
 * # Safety
 * `tiers` valid for `n` bytes, `p` for 3 floats, `found` and `pos` for one element each.
 */
tkm_status tkm_rmt_pick_position(const uint8_t *tiers,
                                 size_t n,
                                 const float *p,
                                 double u_tier,
                                 double u_token,
                                 uint32_t *found,
                                 size_t *pos);

/**
 * RMT's combined reward `out[i] = (1 - w) * match01[i] + w * len_r[i]` (library default
 * `w = 0.1`).
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (`w` not finite), `_NON_FINITE` (an input).
 *
 * # Safety
 * `match01`, `len_r`, `out` valid for `n` floats.
 */
tkm_status tkm_rmt_combined_reward(const float *match01, const float *len_r, size_t n, float w, float *out);

/**
 * RMT's next-token-prediction term: `*loss = -mean(logp_target)` over the valid positions
 * outside the RL positions (0 if none) and `grad = dloss/dlogp_target` (`-1/N` there, 0
 * elsewhere). Add `lambda * loss` (0.1) to the RL loss.
 *
 * Errors: `TKM_STATUS_NON_FINITE` (a NaN or `+inf` log-probability at a counted position).
 *
 * # Safety
 * `mask`, `rl_positions`, `logp_target`, `grad` valid for `rows*cols` elements, `loss` for
 * one float.
 */
tkm_status tkm_ntp_masked_loss(const struct tkm_exec_options *exec,
                               const uint8_t *mask,
                               const uint8_t *rl_positions,
                               const float *logp_target,
                               size_t rows,
                               size_t cols,
                               float *loss,
                               float *grad);

/**
 * A static, NUL-terminated English description of `status`; never NULL. Any integer is
 * accepted: values that are not a `tkm_status` give `"unknown status"`. The string must not
 * be freed.
 */
const char *tkm_status_str(uint32_t status);

/**
 * `*out = sum of tokens_per_sentence[0..n]` (the corpus token count, CTC).
 *
 * Errors: `TKM_STATUS_NULL_POINTER`; `TKM_STATUS_SIZE_OVERFLOW` if the sum exceeds `uint64_t`.
 *
 * # Safety
 * `tokens_per_sentence` valid for `n` elements; `out` valid for one.
 */
tkm_status tkm_corpus_token_count(const uint32_t *tokens_per_sentence, size_t n, uint64_t *out);

/**
 * Token premium `*out = ctc_lang / ctc_ref`.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` when `ctc_ref == 0`; `TKM_STATUS_NULL_POINTER`.
 *
 * # Safety
 * `out` valid for one element.
 */
tkm_status tkm_token_premium(uint64_t ctc_lang, uint64_t ctc_ref, double *out);

/**
 * Byte premium `*out = bytes_lang / bytes_ref` of parallel text.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` when `bytes_ref == 0`; `TKM_STATUS_NULL_POINTER`.
 *
 * # Safety
 * `out` valid for one element.
 */
tkm_status tkm_byte_premium(uint64_t bytes_lang, uint64_t bytes_ref, double *out);

/**
 * Adds the counts of the UTF-8 `text` (`len` bytes) to `*counts` (in place, only on success;
 * the sums saturate at `UINT64_MAX`).
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` for invalid UTF-8; `TKM_STATUS_NULL_POINTER`.
 *
 * # Safety
 * `text` valid for `len` bytes; `counts` valid for reads and writes of one struct.
 */
tkm_status tkm_text_counts_add(const uint8_t *text_utf8, size_t len, struct tkm_text_counts *counts);

/**
 * `*out = UTF-8 bytes of text / n_tokens`.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` for `n_tokens == 0` or invalid UTF-8;
 * `TKM_STATUS_NULL_POINTER`.
 *
 * # Safety
 * `text` valid for `len` bytes; `out` valid for one element.
 */
tkm_status tkm_bytes_per_token(const uint8_t *text_utf8, size_t len, uint64_t n_tokens, double *out);

/**
 * `*out = Unicode scalar values of text / n_tokens`.
 *
 * Errors: as `tkm_bytes_per_token`.
 *
 * # Safety
 * `text` valid for `len` bytes; `out` valid for one element.
 */
tkm_status tkm_chars_per_token(const uint8_t *text_utf8, size_t len, uint64_t n_tokens, double *out);

/**
 * `*out` = fraction of the scalar values of the text that are whitespace (Unicode
 * White_Space); 0 for empty text.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` for invalid UTF-8; `TKM_STATUS_NULL_POINTER`.
 *
 * # Safety
 * `text` valid for `len` bytes; `out` valid for one element.
 */
tkm_status tkm_whitespace_proportion(const uint8_t *text_utf8, size_t len, double *out);

/**
 * Character entropy of the text in bits, `-sum_c p_c log2 p_c`; 0 for empty text. Allocates
 * one `uint32_t` per scalar value as scratch.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` for invalid UTF-8; `TKM_STATUS_OUT_OF_MEMORY`;
 * `TKM_STATUS_NULL_POINTER`.
 *
 * # Safety
 * `text` valid for `len` bytes; `out` valid for one element.
 */
tkm_status tkm_char_entropy_bits(const uint8_t *text_utf8, size_t len, double *out);

/**
 * Character entropy in bits from per-character counts (zeros skipped, any order).
 *
 * Errors: `TKM_STATUS_SIZE_OVERFLOW` if the counts sum past `uint64_t`; `TKM_STATUS_NULL_POINTER`.
 *
 * # Safety
 * `counts` valid for `n` elements; `out` valid for one.
 */
tkm_status tkm_char_entropy_bits_from_counts(const uint64_t *counts, size_t n, double *out);

/**
 * Fits `CTC = a * V^b` by least squares on `(ln V, ln CTC)` over `n` points.
 *
 * Errors: `TKM_STATUS_NON_FINITE` for a NaN or infinite point; `TKM_STATUS_INVALID_ARGUMENT`
 * for a point `<= 0` or fewer than two distinct `V`; `TKM_STATUS_NULL_POINTER`.
 *
 * # Safety
 * `v`, `ctc` valid for `n` elements; `out` valid for one struct.
 */
tkm_status tkm_fit_power_law(const double *v, const double *ctc, size_t n, struct tkm_power_law *out);

/**
 * The vocabulary size at which the law `a * V^b` gives `ctc_target`: `(ctc_target/a)^(1/b)`.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` when `a` or `ctc_target` is not finite and `> 0`, `b`
 * is not finite or 0, or the result overflows double; `TKM_STATUS_NULL_POINTER`.
 *
 * # Safety
 * `out` valid for one element.
 */
tkm_status tkm_optimal_vocab_size(double a, double b, double ctc_target, double *out);

/**
 * As `tkm_optimal_vocab_size` for a fitted law, computed from its `ln_a` (so a fit whose `a`
 * overflows double still works).
 *
 * # Safety
 * `fit` valid for one struct; `out` valid for one element.
 */
tkm_status tkm_power_law_optimal_vocab_size(const struct tkm_power_law *fit, double ctc_target, double *out);

/**
 * `*out = ceil(v / multiple) * multiple`: a vocabulary size rounded up to a hardware multiple.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` when `v` is not finite and `> 0` or `multiple == 0`;
 * `TKM_STATUS_SIZE_OVERFLOW` when the result exceeds `uint64_t`; `TKM_STATUS_NULL_POINTER`.
 *
 * # Safety
 * `out` valid for one element.
 */
tkm_status tkm_round_vocab(double v, uint64_t multiple, uint64_t *out);

/**
 * Writes the default TW-GRPO options into `*opts`.
 *
 * # Safety
 * `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
 */
tkm_status tkm_tw_grpo_options_init(struct tkm_tw_grpo_options *opts);

/**
 * TW-GRPO token weights, streamed over the vocabulary (no `[B, T, V]` tensor).
 *
 * * `logits`: `[rows, vocab]` of `dtype` (row `b*T + t`, row stride `row_stride >= vocab`),
 *   temperature 1; `rows = B*T`.
 * * `max`, `log_sum`: `rows` floats, the `max` and `log_sum` outputs of `tkm_logits_fwd` on
 *   the same logits (temperature 1; row-masked or not).
 * * `mask`: `rows` bytes (0 = padding: its logits and statistics are not read); `t`: `T > 0`.
 * * `weights`: `rows` floats, written on success; `nonfinite_positions`: NULL or receives the
 *   number of (group, position) pairs whose dispersion is NaN (their valid weights are NaN).
 *
 * Errors: `TKM_STATUS_EMPTY_VOCAB`, `_BAD_STRIDE`, `_BAD_DTYPE`, `_LENGTH_MISMATCH` (`rows`
 * not a multiple of `t`), `_INVALID_ARGUMENT` (`t = 0`, `B` not a multiple of the group size,
 * options out of range), `_BAD_STRUCT_SIZE`, and the generic pointer/size/options statuses.
 *
 * # Safety
 * Every non-NULL pointer must be valid for the element counts above.
 */
tkm_status tkm_tw_grpo_token_weights(const struct tkm_exec_options *exec,
                                     tkm_dtype dtype,
                                     const void *logits,
                                     size_t rows,
                                     size_t vocab,
                                     size_t row_stride,
                                     const float *max,
                                     const float *log_sum,
                                     const uint8_t *mask,
                                     size_t t,
                                     const struct tkm_tw_grpo_options *opts,
                                     float *weights,
                                     size_t *nonfinite_positions);

/**
 * The TW-GRPO loss `sum(w * loss * mask) / sum(mask)` (0 for an empty mask) into `*loss_out`,
 * and, unless `grad` is NULL, its gradient w.r.t. the per-token loss (`w * mask / sum(mask)`,
 * `n` floats). `mask`, `per_token_loss`, `weights`: `n` elements each; padding never
 * contributes (NaN there cannot leak).
 *
 * # Safety
 * Every non-NULL pointer must be valid for the element counts above.
 */
tkm_status tkm_tw_grpo_loss(const struct tkm_exec_options *exec,
                            const uint8_t *mask,
                            const float *per_token_loss,
                            const float *weights,
                            size_t n,
                            float *loss_out,
                            float *grad);

/**
 * TW-GRPO's soft multi-choice accuracy reward: 1 if `verifier_ok` (an external verifier's
 * verdict, 0 or 1), else `|S|/|GT|` when the completion's option set `S` (from its first
 * `<answer>...</answer>`, comma-separated, ASCII spaces removed, stripped) is a subset of the
 * solution's `GT`, else 0. Strings are UTF-8 (`*_len` bytes, no NUL needed).
 *
 * # Safety
 * The string pointers must be valid for their lengths; `out` for one float.
 */
tkm_status tkm_tw_grpo_soft_multichoice_reward(const uint8_t *completion,
                                               size_t completion_len,
                                               const uint8_t *solution,
                                               size_t solution_len,
                                               uint32_t verifier_ok,
                                               float *out);

/**
 * The binary variant (`origin_accuracy_reward`): 1 iff `verifier_ok` or `S == GT`, else 0.
 *
 * # Safety
 * As `tkm_tw_grpo_soft_multichoice_reward`.
 */
tkm_status tkm_tw_grpo_exact_multichoice_reward(const uint8_t *completion,
                                                size_t completion_len,
                                                const uint8_t *solution,
                                                size_t solution_len,
                                                uint32_t verifier_ok,
                                                float *out);

/**
 * TW-GRPO's format reward: 1 iff the completion has `<think>` and `<answer>` at most once each
 * and matches `<think>.*?</think>\s*<answer>.*?</answer>[\s!]*$` (search, dot matches
 * newline, Unicode whitespace), else 0. UTF-8, `completion_len` bytes.
 *
 * # Safety
 * `completion` must be valid for `completion_len` bytes; `out` for one float.
 */
tkm_status tkm_tw_grpo_format_reward(const uint8_t *completion, size_t completion_len, float *out);

/**
 * k-means of the `n` rows of `rows` (`[n, dim]`, row-major): k-means++ seeding from `seed`,
 * then up to `iters` Lloyd steps (stopping when no assignment changes). The `k` centres go to
 * `out` (`[k, dim]`); `*steps`, unless NULL, gets the number of Lloyd steps run. Bit-for-bit
 * deterministic for the same inputs. Allocates `n + 2*k*dim + k` doubles of scratch.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` for `dim == 0`, `k == 0` or `n < k`;
 * `TKM_STATUS_NON_FINITE` for a NaN or infinite input; `TKM_STATUS_SIZE_OVERFLOW`;
 * `TKM_STATUS_OUT_OF_MEMORY`; `TKM_STATUS_NULL_POINTER`.
 *
 * # Safety
 * `rows` valid for `n * dim` elements, `out` for `k * dim`, `steps` (unless NULL) for one.
 */
tkm_status tkm_kmeans_init(const float *rows,
                           size_t n,
                           size_t dim,
                           size_t k,
                           uint64_t seed,
                           size_t iters,
                           float *out,
                           size_t *steps);

/**
 * Restores the frozen rows of a `[rows, dim]` table in place: row `r` is copied from `orig`
 * where `trainable[r] == 0`, and left as it is otherwise (call after each optimiser step on
 * the input embeddings, the LM head, and its bias with `dim = 1`). `dtype` is
 * `TKM_DTYPE_F32`, `TKM_DTYPE_BF16` or `TKM_DTYPE_F16` (bits copied exactly).
 *
 * Errors: `TKM_STATUS_BAD_DTYPE`; `TKM_STATUS_OVERLAP` when `table` overlaps `orig` or
 * `trainable`; `TKM_STATUS_SIZE_OVERFLOW`; `TKM_STATUS_MISALIGNED`; `TKM_STATUS_NULL_POINTER`.
 *
 * # Safety
 * `table` valid for reads and writes and `orig` for reads of `rows * dim` elements of
 * `dtype`; `trainable` valid for `rows` bytes.
 */
tkm_status tkm_restore_frozen_rows(tkm_dtype dtype,
                                   void *table,
                                   const void *orig,
                                   size_t rows,
                                   size_t dim,
                                   const uint8_t *trainable);

/**
 * `out[i] = ((ids_a[i] != ids_final[i]) != (ids_b[i] != ids_final[i]))`, for `n` positions:
 * with `a`, `b` the token ids at two generation steps (10 and 35 in UniCTokens), the positions
 * that settled inside that window.
 *
 * Errors: `TKM_STATUS_NULL_POINTER`; `TKM_STATUS_MISALIGNED`; `TKM_STATUS_SIZE_OVERFLOW`.
 *
 * # Safety
 * `ids_a`, `ids_b`, `ids_final` valid for `n` elements, `out` for `n` bytes.
 */
tkm_status tkm_token_diff_mask(const uint32_t *ids_a,
                               const uint32_t *ids_b,
                               const uint32_t *ids_final,
                               size_t n,
                               uint8_t *out);

/**
 * The cell ordering of an `h x w` grid in `k x k` cells (the code's `clusterify`: `k = 8`
 * on 16 x 16): `out[s]` (`h * w` entries) is the raster index `y * w + x` of sequence
 * position `s = ((y/k)*(w/k) + x/k)*k*k + (y%k)*k + x%k`.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (`k` zero or not dividing `h` and `w`, more than
 * 2^32 tokens), `_SIZE_OVERFLOW`.
 *
 * # Safety
 * `out` valid for `h * w` `uint32_t`.
 */
tkm_status tkm_xar_cell_permutation(size_t h, size_t w, size_t k, uint32_t *out);

/**
 * The subsample ordering (paper `b c (d1 h) (d2 w) -> b (h w d1 d2) c`): `(h/d)*(w/d)`
 * entities of `d*d` tokens at stride `h/d`; `out[s]` is the raster index of position
 * `s = (a*(w/d) + b)*d*d + d1*d + d2` for `y = d1*(h/d) + a`, `x = d2*(w/d) + b`.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (`d` zero or not dividing `h` and `w`, more than
 * 2^32 tokens), `_SIZE_OVERFLOW`.
 *
 * # Safety
 * `out` valid for `h * w` `uint32_t`.
 */
tkm_status tkm_xar_subsample_permutation(size_t h, size_t w, size_t d, uint32_t *out);

/**
 * The inverse of a permutation of `n` indices: `out[perm[s]] = s`.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (a value `>= n` or repeated), `_OVERLAP` (`out`
 * overlaps `perm`).
 *
 * # Safety
 * `perm` and `out` valid for `n` `uint32_t`.
 */
tkm_status tkm_xar_invert_permutation(size_t n, const uint32_t *perm, uint32_t *out);

/**
 * The `n` scale sizes `full * 2^(i - n)`, `i = 1..n`, coarse to fine, into `out`.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (`n` or `full` zero, `full` not divisible by
 * `2^(n-1)`).
 *
 * # Safety
 * `out` valid for `n` `size_t`.
 */
tkm_status tkm_xar_scale_sizes(size_t full, size_t n, size_t *out);

/**
 * The number of gather indices of `n` scales of an `h x w` grid (the sum of the scales'
 * areas) into `*len`.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (a zero size, sides not divisible by `2^(n-1)`,
 * more than 2^32 tokens).
 *
 * # Safety
 * `len` valid for writing one `size_t`.
 */
tkm_status tkm_xar_scale_gather_len(size_t h, size_t w, size_t n, size_t *len);

/**
 * The scale entities as raster gather indices (`tokens[j] = latent[out[j]]`): each of the
 * `n` scales is PyTorch's nearest-neighbour resize of the `h x w` grid, raster,
 * concatenated coarse to fine. `out_len` must be `tkm_xar_scale_gather_len`'s value.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (as `tkm_xar_scale_gather_len`),
 * `_LENGTH_MISMATCH` (`out_len`).
 *
 * # Safety
 * `out` valid for `out_len` `uint32_t`.
 */
tkm_status tkm_xar_scale_gather(size_t h, size_t w, size_t n, uint32_t *out, size_t out_len);

/**
 * The block-causal additive mask of `n_entities` entities of `ent_len` tokens: `out` is
 * `L x L`, `L = n_entities * ent_len`, `0` where the key's entity is `<=` the query's and
 * `-inf` elsewhere.
 *
 * Errors: `TKM_STATUS_SIZE_OVERFLOW` (`L * L`).
 *
 * # Safety
 * `out` valid for `L * L` floats.
 */
tkm_status tkm_xar_block_causal_mask(size_t n_entities, size_t ent_len, float *out);

/**
 * The block-causal mask of `n_entities` entities of lengths `ent_lens` (the scale
 * entities): `L = sum(ent_lens)`, `out_len` must be `L * L`.
 *
 * Errors: `TKM_STATUS_LENGTH_MISMATCH` (`out_len`), `_SIZE_OVERFLOW`.
 *
 * # Safety
 * `ent_lens` valid for `n_entities` `size_t`, `out` for `out_len` floats.
 */
tkm_status tkm_xar_block_causal_mask_lens(size_t n_entities,
                                          const size_t *ent_lens,
                                          float *out,
                                          size_t out_len);

/**
 * Flow-matching inputs and targets of a batch laid out `[batch, n_ent, ent_elems]`:
 * `xt = (1 - t) * x + t * eps`, `v = eps - x` (f32, the code's order), entity `i` of
 * sample `b` at time `t[i * batch + b]` (entity-major, as the code draws and chunks them).
 *
 * Errors: `TKM_STATUS_NON_FINITE` (a NaN/inf `t`), `_INVALID_ARGUMENT` (a `t` outside
 * [0, 1]), `_OVERLAP` (an output overlapping an input or the other output),
 * `_SIZE_OVERFLOW`.
 *
 * # Safety
 * `x`, `eps`, `xt`, `v` valid for `batch * n_ent * ent_elems` floats, `t` for
 * `batch * n_ent`.
 */
tkm_status tkm_xar_flow_interpolate(size_t batch,
                                    size_t n_ent,
                                    size_t ent_elems,
                                    const float *x,
                                    const float *eps,
                                    const float *t,
                                    float *xt,
                                    float *v);

/**
 * Logit-normal times `out[k] = f32(1 / (1 + exp(-(z[k] * sigma + mu))))` from the
 * caller's `n` standard normals `z` (f64, as SciPy draws them; source `mu = 0`,
 * `sigma = 1`).
 *
 * Errors: `TKM_STATUS_NON_FINITE` (a NaN/inf `z` or `mu`), `_INVALID_ARGUMENT` (`sigma`
 * not finite and > 0).
 *
 * # Safety
 * `z` valid for `n` doubles, `out` for `n` floats.
 */
tkm_status tkm_xar_logit_normal(size_t n, const double *z, double mu, double sigma, float *out);

/**
 * The timestep-embedding inputs `trunc(t[k] * 1000)` (product in f32) of `n` times.
 *
 * Errors: `TKM_STATUS_NON_FINITE` (a NaN/inf `t`), `_INVALID_ARGUMENT` (outside [0, 1]).
 *
 * # Safety
 * `t` valid for `n` floats, `out` for `n` `int64_t`.
 */
tkm_status tkm_xar_timestep_index(size_t n, const float *t, int64_t *out);

/**
 * The flow-matching loss `mean((pred - target)^2)` over `batch` samples of `n / batch`
 * elements (accumulated in f64) into `*loss`, and its gradient `2 (pred - target) / n`
 * into `grad` unless it is NULL.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (`batch` or `n` zero, `n` not a multiple of
 * `batch`), `_OVERLAP` (`grad` overlapping an input).
 *
 * # Safety
 * `pred`, `target` (and `grad` when not NULL) valid for `n` floats, `loss` for one double.
 */
tkm_status tkm_xar_flow_loss(size_t batch,
                             size_t n,
                             const float *pred,
                             const float *target,
                             double *loss,
                             float *grad);

/**
 * The CFG scale of entity step `step` of `n_entities` under `rule` (`TKM_XAR_CFG_*`) into
 * `*out`.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (`cfg` not finite, `step >= n_entities`, an
 * unknown rule).
 *
 * # Safety
 * `out` valid for writing one double.
 */
tkm_status tkm_xar_cfg_schedule(double cfg, size_t step, size_t n_entities, uint32_t rule, double *out);

/**
 * The sampler's time grid `torch.linspace(t_start, t_end, num_steps)` followed by 0, into
 * `out` of `num_steps + 1` doubles (source: 1, 0.04).
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (`num_steps == 0`, not `0 <= t_end <= t_start`
 * finite), `_SIZE_OVERFLOW`.
 *
 * # Safety
 * `out` valid for `num_steps + 1` doubles.
 */
tkm_status tkm_xar_em_time_grid(size_t num_steps, double t_start, double t_end, double *out);

/**
 * The Euler–Maruyama drift `d = v - t * s`, `s = -((1 - t) v + x) / t` of `n` elements
 * (f64), evaluated as `form` (`TKM_XAR_DRIFT_*`).
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (`t` outside (0, 1] / [0, 1], an unknown form),
 * `_OVERLAP` (`out` overlapping `v` or `x`).
 *
 * # Safety
 * `v`, `x`, `out` valid for `n` doubles.
 */
tkm_status tkm_xar_em_drift(size_t n, const double *v, const double *x, double t, uint32_t form, double *out);

/**
 * CFG on the drift: `out = d_uncond + scale * (d_cond - d_uncond)` when `scale > 1` and
 * `low <= t <= high`, else `out = d_cond` (the sampler's defaults: scale 1, low 0, high 1).
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (a non-finite scalar, `low > high`), `_OVERLAP`.
 *
 * # Safety
 * `d_cond`, `d_uncond`, `out` valid for `n` doubles.
 */
tkm_status tkm_xar_cfg_combine(size_t n,
                               const double *d_cond,
                               const double *d_uncond,
                               double scale,
                               double low,
                               double high,
                               double t,
                               double *out);

/**
 * One sampler step on the state `x` (n doubles, in place) from `t_cur` to `t_next` with
 * drift `d`: `x + d * dt + sqrt(2 t_cur) * (noise * sqrt(|dt|))` with the caller's
 * standard normals `noise`, or `x + dt * d` (the last step) when `noise` is NULL.
 *
 * Errors: `TKM_STATUS_INVALID_ARGUMENT` (non-finite times, `t_cur < 0` with noise),
 * `_OVERLAP` (`d` or `noise` overlapping `x`). `x` is unchanged on error.
 *
 * # Safety
 * `x` valid for reads and writes of `n` doubles, `d` (and `noise` when not NULL) for `n`.
 */
tkm_status tkm_xar_em_step(size_t n,
                           double *x,
                           const double *d,
                           double t_cur,
                           double t_next,
                           const double *noise);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* TOKENMATH_H */
