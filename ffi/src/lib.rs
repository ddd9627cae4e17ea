//! # tokenmath-ffi
//!
//! The C ABI of tokenmath: `libtokenmath.so`, `libtokenmath.a` and the generated header
//! `include/tokenmath.h`. The ABI's rules (status codes, outputs on success only, NULL
//! policy, panics, ownership, threads, option-struct growth, dtypes) are written once, in
//! the header preamble (`ffi/cbindgen.toml`), and hold for every function here.
//!
//! Every `extern "C"` function runs its body inside [`std::panic::catch_unwind`] (see
//! `util::guard`), checks every pointer before dereferencing it, computes sizes with
//! overflow checks, and writes its outputs only after every check has passed: results of
//! kernels that can fail part-way (forward, merges, finalize, advantages) are computed into
//! scratch memory and copied out on success.
#![allow(non_camel_case_types)]
#![allow(clippy::too_many_arguments)]

pub mod advantages;
pub mod cuda;
pub mod dlpack;
pub mod dop;
pub mod exec;
pub mod exploration;
pub mod fingerprint;
pub mod hapo;
pub mod logits;
pub mod policy;
pub mod preference;
pub mod quota;
pub mod seed;
pub mod status;
pub mod tokenizer_metrics;
pub mod tw_grpo;
pub mod unictokens;
mod util;
pub mod xar;

pub use advantages::*;
pub use cuda::*;
pub use dlpack::*;
pub use dop::*;
pub use exec::*;
pub use exploration::*;
pub use fingerprint::*;
pub use hapo::*;
pub use logits::*;
pub use policy::*;
pub use preference::*;
pub use quota::*;
pub use seed::*;
pub use status::*;
pub use tokenizer_metrics::*;
pub use tw_grpo::*;
pub use unictokens::*;
pub use xar::*;

use core::ffi::c_char;

/// Major version of the library this header belongs to.
pub const TKM_VERSION_MAJOR: u32 = 0;
/// Minor version of the library this header belongs to.
pub const TKM_VERSION_MINOR: u32 = 1;
/// Patch version of the library this header belongs to.
pub const TKM_VERSION_PATCH: u32 = 0;

/// Element type of a tensor: a `uint32_t` code (`TKM_DTYPE_*`). `bf16` and `f16` data are
/// passed as their IEEE/bfloat bit patterns in `uint16_t` arrays.
pub type tkm_dtype = u32;
/// IEEE binary32 (`float`).
pub const TKM_DTYPE_F32: tkm_dtype = 1;
/// bfloat16, as `uint16_t` bits (the upper half of a binary32).
pub const TKM_DTYPE_BF16: tkm_dtype = 2;
/// IEEE binary16, as `uint16_t` bits.
pub const TKM_DTYPE_F16: tkm_dtype = 3;

/// The library's version, `"MAJOR.MINOR.PATCH"`: a static NUL-terminated string, never NULL.
/// Compare with the `TKM_VERSION_*` macros to detect a header/library mismatch.
#[no_mangle]
pub extern "C" fn tkm_version() -> *const c_char {
    util::guard_or(core::ptr::null(), || concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char)
}
