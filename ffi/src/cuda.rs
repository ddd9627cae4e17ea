//! The CUDA side of the C ABI (`tkm_cuda_*`, and the `kDLCUDA` branch of the DLPack entry
//! points).
//!
//! Every `tkm_cuda_*` symbol exists in every build of the library, so that a program linked
//! against it never fails on a missing symbol: a library built without the CUDA launch path
//! answers `TKM_STATUS_CUDA_UNAVAILABLE` and reads or writes nothing. This build has no CUDA
//! launch path yet (it is being built on `gpu/`'s cubecl kernels, compiled by NVRTC and
//! launched on the caller's stream: `gpu/README.md`, interop option 3), so every CUDA entry
//! answers that status.

use crate::status::*;
use crate::util::{guard, Res};

/// Whether this library can run calls on CUDA memory: `TKM_STATUS_OK` when it was built with
/// the CUDA launch path and a CUDA driver with a device is present;
/// `TKM_STATUS_CUDA_UNAVAILABLE` when it was built without it (this build). Cheap; call it
/// once to decide whether to hand tokenmath `kDLCUDA` tensors.
#[no_mangle]
pub extern "C" fn tkm_cuda_available() -> tkm_status {
    guard(dl_unavailable)
}

/// The answer of the DLPack entry points for `kDLCUDA` tensors in this build.
pub(crate) fn dl_unavailable() -> Res {
    Err(TKM_STATUS_CUDA_UNAVAILABLE)
}
