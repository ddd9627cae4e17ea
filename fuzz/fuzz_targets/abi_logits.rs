//! The logits forward and backward through the C ABI on arbitrary shapes, strides, dtypes,
//! bit patterns (NaN, ±inf, subnormals), targets, masks and temperatures.
//!
//! Invariants: no call panics (`TKM_STATUS_INTERNAL_PANIC`) or returns an unknown code; a
//! failing call writes nothing; the status and every output bit are the same for one thread
//! and for several.
#![no_main]

use core::ffi::c_void;
use core::ptr::{null, null_mut};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tokenmath::*;

#[derive(Arbitrary, Debug)]
struct Case {
    rows: u8,
    vocab: u16,
    pad: u8,
    dtype: u8,
    grad_dtype: u8,
    threads: u8,
    temperature: f32,
    temperatures: Option<Vec<f32>>,
    targets: Option<Vec<i32>>,
    row_mask: Option<Vec<u8>>,
    values: Vec<u32>,
    want_logp: bool,
    g_logp: Option<Vec<f32>>,
}

const POISON: u32 = 0x7FA5_A5A5;

fn fit<T: Copy + Default>(v: &Option<Vec<T>>, n: usize) -> Option<Vec<T>> {
    v.as_ref().map(|v| (0..n).map(|i| if v.is_empty() { T::default() } else { v[i % v.len()] }).collect())
}

fn ptr<T>(v: &Option<Vec<T>>) -> *const T {
    v.as_ref().map_or(null(), |v| v.as_ptr())
}

fuzz_target!(|c: Case| {
    let rows = usize::from(c.rows % 9);
    let vocab = usize::from(c.vocab % 4200);
    let stride = vocab + usize::from(c.pad % 4);
    let len = if rows == 0 { 0 } else { (rows - 1) * stride + vocab };
    let dtype = u32::from(c.dtype % 5); // 0 and 4 are invalid codes
    let grad_dtype = u32::from(c.grad_dtype % 4);
    let elem = if dtype == TKM_DTYPE_F32 { 4 } else { 2 };
    // Logits as raw bytes in a u32 buffer (aligned for every dtype).
    let mut words = vec![0u32; (len * elem).div_ceil(4).max(1)];
    for (i, w) in words.iter_mut().enumerate() {
        *w = if c.values.is_empty() { 0 } else { c.values[i % c.values.len()] };
    }
    let temps = fit(&c.temperatures, rows);
    let targets = fit(&c.targets, rows);
    let mask = fit(&c.row_mask, rows);
    let g_logp = fit(&c.g_logp, rows);

    let run = |threads: u32| {
        let mut o = tkm_exec_options { struct_size: 0, threads: 0, backend: 0, cuda_stream: null_mut(), gpu_mode: 0 };
        assert_eq!(unsafe { tkm_exec_options_init(&mut o) }, TKM_STATUS_OK);
        o.threads = threads;
        let mut out = vec![vec![f32::from_bits(POISON); rows]; 5];
        let mut nonfinite = usize::MAX;
        let [lse, h, lp, max, log_sum] = &mut out[..] else { unreachable!() };
        let s = unsafe {
            tkm_logits_fwd(
                &o,
                &tkm_logits_input::new(
                    dtype,
                    words.as_ptr() as *const c_void,
                    rows,
                    vocab,
                    stride,
                    ptr(&targets),
                    ptr(&mask),
                    c.temperature,
                    ptr(&temps),
                ),
                lse.as_mut_ptr(),
                h.as_mut_ptr(),
                if c.want_logp { lp.as_mut_ptr() } else { null_mut() },
                max.as_mut_ptr(),
                log_sum.as_mut_ptr(),
                &mut nonfinite,
            )
        };
        assert_ne!(s, TKM_STATUS_INTERNAL_PANIC, "{c:?}");
        assert!(tkm_status::from_u32(s as u32).is_some());
        if s != TKM_STATUS_OK {
            assert!(out.iter().flatten().all(|v| v.to_bits() == POISON), "outputs written on error: {c:?}");
            assert_eq!(nonfinite, usize::MAX);
            return (s, out, Vec::new());
        }
        // Backward into a dense gradient of the requested dtype.
        let gelem = if grad_dtype == TKM_DTYPE_F32 { 4 } else { 2 };
        let mut dx = vec![0u8; rows * vocab * gelem + 4];
        let off = dx.as_ptr().align_offset(4);
        let d = unsafe { dx.as_mut_ptr().add(off) } as *mut c_void;
        let sb = unsafe {
            tkm_logits_bwd(
                &o,
                dtype,
                words.as_ptr() as *const c_void,
                rows,
                vocab,
                stride,
                ptr(&targets),
                ptr(&mask),
                c.temperature,
                ptr(&temps),
                out[3].as_ptr(),
                out[4].as_ptr(),
                out[1].as_ptr(),
                ptr(&g_logp),
                out[1].as_ptr(),
                null(),
                grad_dtype,
                d,
                vocab,
            )
        };
        assert_ne!(sb, TKM_STATUS_INTERNAL_PANIC, "{c:?}");
        if sb != TKM_STATUS_OK {
            assert!(dx.iter().all(|&b| b == 0), "dx written on error: {c:?}");
        }
        (s, out, dx)
    };
    let one = run(1);
    let threads = u32::from(c.threads % 5);
    let many = run(threads);
    assert_eq!(one.0, many.0, "status depends on the thread count: {c:?}");
    let bits = |o: &Vec<Vec<f32>>| o.iter().flatten().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&one.1), bits(&many.1), "outputs depend on the thread count: {c:?}");
    assert_eq!(one.2, many.2, "gradient depends on the thread count: {c:?}");
});
