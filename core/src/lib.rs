//! # tokenmath-core
//!
//! `no_std`, allocation-free kernels for the token-level math of LLM post-training.
//! Callers own every buffer; kernels validate their inputs and return [`TmError`] instead
//! of panicking.
//!
//! * [`logits`] — row-wise softmax statistics (log-sum-exp, entropy, target log-prob), their
//!   gradient (also in place), and mergeable vocabulary-shard partials.
//! * [`advantages`] — group statistics and advantage estimators (GRPO, Dr. GRPO, RLOO,
//!   REINFORCE++, GAE, returns-to-go, whitening) and DAPO's reward extras.
//! * [`policy_loss`] — per-token policy losses (PPO clip, GSPO, CISPO, SAPO), KL estimators,
//!   importance weights, the loss aggregation and the upstreams of the logits backward.
//! * [`seed`] — the seed papers' token-level methods (top-entropy mask, HAPO, D³S, TW-GRPO,
//!   NTHR/THR, NSR/PSR/W-REINFORCE, GRPO-N, the expected logit update, RMT).
//! * [`fingerprint`] — token fingerprints and their BLAKE3 Merkle commitments.
//! * [`tokenizer_metrics`] — cross-lingual tokenizer inequity metrics (CTC, token and byte
//!   premium, per-token rates, the power law and optimal vocabulary size).
//! * [`unictokens`] — UniCTokens' k-means token initialisation, frozen-row restore, diff mask.
//! * [`preference`] — preference losses with token rewards: DPO/SimPO, T-REG, cDPO scores
//!   and loss, pass@k, TVM value labels and losses.
//! * [`exploration`] — exploration bonuses: counts, E3B's elliptical bonus, RND/NovelD,
//!   their combination and running reward normalisation.
//! * [`quota`] — QuoTA's frame sampling, frame weights, token budgets and per-frame
//!   bilinear resize / adaptive average pooling.
//! * [`xar`] — xAR's next-X entity orderings (cell, subsample, scale), the block-causal
//!   mask, flow-matching interpolation, logit-normal times and the Euler–Maruyama sampler
//!   with its CFG schedule.
//!
//! # The shape of a kernel family
//!
//! [`logits`] and [`policy_loss`] are written to one plan, which every new family follows:
//!
//! * **Inputs** are views with their shape ([`Mat`] for `[rows, cols]` data with a row
//!   stride; `policy_loss::PolicyInputs`/`BatchShape` for per-token `[B, T]` arrays), in the
//!   order *shape, mask, per-element inputs*; **outputs** are named (`FwdOut`, `LossOut`, …)
//!   or one `&mut` slice, last.
//! * **Hyper-parameters** past three scalars go in a config struct (`ClipCfg`,
//!   `advantages::GaeCfg`, …) whose `Default` is a named trainer's, documented on it.
//! * **[`Exec`] comes first** in every call over per-element data: the [`Backend`] and the
//!   thread count (the per-row merges, `logits::merge_shards` and `logits::finalize_rows`,
//!   take none). Every backend and every thread count gives identical bits, so `Exec` only
//!   changes speed; a backend this CPU lacks is [`TmError::BackendUnavailable`].
//! * **One dispatch point**: the family's `mod.rs` maps the backend to a loop, once per call;
//!   the SIMD code lives in `<family>/x86_avx2.rs` (and `x86_avx512.rs` where 16 lanes pay:
//!   `logits`, `policy_loss`, TW-GRPO's weights and the cDPO scores have one; the other
//!   families run their AVX2 code under `Backend::Avx512`), thin `#[target_feature]` wrappers or hand-written loops that
//!   transcribe the portable operation order. Nothing else calls [`Backend::detect`].
//! * **Tests force each backend** (`Exec::with_backend`) against the portable path, bitwise,
//!   and fail when the CPU offers a backend they do not test; on a CPU without an instruction
//!   set they say that they skipped it.
//!
//! (`advantages` predates the plan: it takes slices with a row length `t` and has no SIMD
//! path, so no `Exec` yet; `gae` takes `GaeCfg`/`GaeOut`.)
//!
//! ## Features
//! * `std` (default): runtime CPU-feature detection, the row-parallel thread driver,
//!   `std::error::Error` for [`TmError`].
//! * `alloc`: conveniences that allocate (never used inside kernels).
#![cfg_attr(not(any(feature = "std", test)), no_std)]
#![deny(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(any(feature = "std", test))]
extern crate std;

pub mod advantages;
pub mod elem;
pub mod error;
mod exp;
pub mod exploration;
pub mod fingerprint;
pub mod logits;
pub mod mat;
pub mod platform;
pub mod policy_loss;
pub mod preference;
pub mod quota;
pub mod seed;
pub mod tokenizer_metrics;
pub mod unictokens;
pub mod xar;

pub use elem::{DType, GradElem, LogitElem};
pub use error::TmError;
pub use mat::{Mat, MatMut};
pub use platform::{Backend, Exec};

/// `bf16` and `f16`, re-exported from the `half` crate.
pub use half::{bf16, f16};

/// The README's Rust example, compiled and run as a doctest so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
