//! A `#![no_std]` shared library that links the core kernels: if `tokenmath-core` (without
//! its `std` feature) pulled in `std` or an allocator, this would fail to link.
#![no_std]

use tokenmath_core::logits::{self, FwdOut, RowInputs, Saved, Upstream};
use tokenmath_core::{Exec, Mat, MatMut};

/// `core` is precompiled with unwind tables that name the personality routine; with
/// `panic = "abort"` it is never called.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

/// Log-sum-exp, entropy and the in-place gradient of one row of 4 logits; returns the
/// entropy (so the whole chain is linked and kept).
#[no_mangle]
pub extern "C" fn probe_entropy(x: &mut [f32; 4]) -> f32 {
    let (mut lse, mut h, mut max, mut log_sum) = ([0.0f32], [0.0f32], [0.0f32], [0.0f32]);
    let Ok(m) = Mat::dense(&x[..], 1, 4) else { return f32::NAN };
    let inputs = RowInputs::default();
    let out = FwdOut { lse: &mut lse, entropy: &mut h, logp: None, max: Some(&mut max), log_sum: Some(&mut log_sum) };
    if logits::stats_fwd(Exec::new(), m, &inputs, out).is_err() {
        return f32::NAN;
    }
    let Ok(mm) = MatMut::dense(&mut x[..], 1, 4) else { return f32::NAN };
    let up = Upstream { g_entropy: Some(&[1.0]), ..Default::default() };
    if logits::stats_bwd_inplace(Exec::new(), mm, &inputs, Saved { max: &max, log_sum: &log_sum, entropy: &h }, up).is_err() {
        return f32::NAN;
    }
    h[0]
}
