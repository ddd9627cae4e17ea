//! # tokenmath-core
//!
//! `no_std`, allocation-free kernels for the token-level math of LLM post-training.
//! Callers own every buffer; kernels validate their inputs and return [`TmError`] instead
//! of panicking.
//!
//! * [`logits`] — row-wise softmax statistics (log-sum-exp, entropy, target log-prob), their
//!   gradient (also in place), and mergeable vocabulary-shard partials.
//!
//! Every kernel family has one dispatch point choosing a [`Backend`] (portable or AVX2);
//! all backends produce identical bits, and [`Exec`] can split rows over threads (feature
//! `std`) without changing a bit of the result.
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
pub mod fingerprint;
pub mod logits;
pub mod mat;
pub mod platform;
pub mod policy_loss;

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
