//! The C ABI called from Rust exactly as C calls it: every entry point against the core
//! crate (bitwise, across thread counts and backends), every error status, NULL pointers,
//! outputs untouched on error, and the options-struct growth rule.

use core::ffi::{c_void, CStr};
use core::ptr::{null, null_mut};
use std::mem::size_of;

use half::{bf16, f16};
use tokenmath::advantages::*;
use tokenmath::fingerprint::*;
use tokenmath::logits::*;
use tokenmath::*;
use tokenmath_core::advantages::{self as adv, Groups, GrpoCfg, RlooFlavor, TrlScale};
use tokenmath_core::fingerprint::encoding::{FpKind, LeafRecord};
use tokenmath_core::fingerprint::hash::Blake3;
use tokenmath_core::fingerprint::tree;
use tokenmath_core::logits::{self as lg, FwdOut, RowInputs, Saved, Temperature, Upstream};
use tokenmath_core::{Backend, Exec, Mat, MatMut};

/// Deterministic pseudo-random floats in `[-scale, scale)`.
fn rand_f32(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn exec_opts(threads: u32, backend: u32) -> tkm_exec_options {
    let mut o = tkm_exec_options { struct_size: 0, threads: 0, backend: 0, cuda_stream: null_mut(), gpu_mode: 0 };
    assert_eq!(unsafe { tkm_exec_options_init(&mut o) }, TKM_STATUS_OK);
    o.threads = threads;
    o.backend = backend;
    o
}

fn backends() -> Vec<u32> {
    Backend::all_supported()
        .map(|b| match b {
            Backend::Portable => TKM_BACKEND_PORTABLE,
            #[allow(unreachable_patterns)]
            _ => TKM_BACKEND_AVX2_FMA,
        })
        .collect()
}

const NAN_POISON: f32 = -12345.0;

// ---------------------------------------------------------------------------------------
// Version, status strings, options.
// ---------------------------------------------------------------------------------------

#[test]
fn version_macros_match_cargo_toml_and_library() {
    assert_eq!(TKM_VERSION_MAJOR.to_string(), env!("CARGO_PKG_VERSION_MAJOR"));
    assert_eq!(TKM_VERSION_MINOR.to_string(), env!("CARGO_PKG_VERSION_MINOR"));
    assert_eq!(TKM_VERSION_PATCH.to_string(), env!("CARGO_PKG_VERSION_PATCH"));
    let v = unsafe { CStr::from_ptr(tkm_version()) }.to_str().unwrap();
    assert_eq!(v, env!("CARGO_PKG_VERSION"));
}

#[test]
fn every_status_has_a_distinct_string_and_unknown_codes_are_named() {
    let mut seen = std::collections::HashSet::new();
    for s in ALL_STATUSES {
        let text = unsafe { CStr::from_ptr(tkm_status_str(s as u32)) }.to_str().unwrap();
        assert!(!text.is_empty() && text != "unknown status");
        assert!(seen.insert(text), "duplicate status text {text}");
        assert_eq!(tkm_status::from_u32(s as u32), Some(s));
    }
    for code in [27u32, 28, 254, 256, u32::MAX] {
        let text = unsafe { CStr::from_ptr(tkm_status_str(code)) }.to_str().unwrap();
        assert_eq!(text, "unknown status");
    }
}

#[test]
fn exec_options_growth_rule() {
    let x = rand_f32(2 * 5, 1, 3.0);
    let (mut lse, mut h) = ([0f32; 2], [0f32; 2]);
    let call = |o: *const tkm_exec_options, lse: &mut [f32], h: &mut [f32]| unsafe {
        tkm_logits_fwd(
            o,
            &tkm_logits_input::new(TKM_DTYPE_F32, x.as_ptr() as *const c_void, 2, 5, 5, null(), null(), 1.0, null()),
            lse.as_mut_ptr(),
            h.as_mut_ptr(),
            null_mut(),
            null_mut(),
            null_mut(),
            null_mut(),
        )
    };
    assert_eq!(unsafe { tkm_exec_options_init(null_mut()) }, TKM_STATUS_NULL_POINTER);
    assert_eq!(call(null(), &mut lse, &mut h), TKM_STATUS_OK);
    let mut o = exec_opts(2, TKM_BACKEND_PORTABLE);
    assert_eq!(o.struct_size, size_of::<tkm_exec_options>());
    assert_eq!(call(&o, &mut lse, &mut h), TKM_STATUS_OK);
    // An older caller that only knew `struct_size` and `threads`.
    o.struct_size = 12;
    o.backend = 99; // beyond struct_size: not read
    assert_eq!(call(&o, &mut lse, &mut h), TKM_STATUS_OK);
    // Not a field boundary, or too small.
    for bad in [0, 4, 10, 14] {
        o.struct_size = bad;
        assert_eq!(call(&o, &mut lse, &mut h), TKM_STATUS_BAD_STRUCT_SIZE, "size {bad}");
    }
    // A newer caller: larger struct, accepted only with zero trailing bytes.
    #[repr(C)]
    struct Newer {
        base: tkm_exec_options,
        extra: u64,
    }
    let mut n = Newer { base: exec_opts(1, TKM_BACKEND_AUTO), extra: 0 };
    n.base.struct_size = size_of::<Newer>();
    assert_eq!(call(&n.base, &mut lse, &mut h), TKM_STATUS_OK);
    n.extra = 1;
    assert_eq!(call(&n.base, &mut lse, &mut h), TKM_STATUS_BAD_STRUCT_SIZE);
    // Invalid field values.
    let o = exec_opts(TKM_MAX_THREADS + 1, TKM_BACKEND_AUTO);
    assert_eq!(call(&o, &mut lse, &mut h), TKM_STATUS_INVALID_ARGUMENT);
    let o = exec_opts(1, 7);
    assert_eq!(call(&o, &mut lse, &mut h), TKM_STATUS_INVALID_ARGUMENT);
    // The GPU fields: defaults, ignored by CPU calls except for a valid mode.
    let mut o = exec_opts(1, TKM_BACKEND_AUTO);
    assert!(o.cuda_stream.is_null());
    assert_eq!(o.gpu_mode, TKM_GPU_MODE_CANONICAL);
    o.cuda_stream = 0x1000 as *mut c_void;
    o.gpu_mode = TKM_GPU_MODE_FAST;
    assert_eq!(call(&o, &mut lse, &mut h), TKM_STATUS_OK);
    o.gpu_mode = 2;
    assert_eq!(call(&o, &mut lse, &mut h), TKM_STATUS_INVALID_ARGUMENT);
    // A caller compiled before the GPU fields (struct_size 16): the mode past it is not read.
    o.struct_size = 16;
    assert_eq!(call(&o, &mut lse, &mut h), TKM_STATUS_OK);
    // Ending inside the stream pointer is not a field boundary.
    o.struct_size = 20;
    assert_eq!(call(&o, &mut lse, &mut h), TKM_STATUS_BAD_STRUCT_SIZE);
}

// ---------------------------------------------------------------------------------------
// Logits: forward, backward, in place, partials.
// ---------------------------------------------------------------------------------------

struct Batch {
    rows: usize,
    vocab: usize,
    stride: usize,
    x: Vec<f32>,
    targets: Vec<i32>,
    mask: Vec<u8>,
    temps: Vec<f32>,
}

fn batch(rows: usize, vocab: usize, pad: usize, seed: u64) -> Batch {
    let stride = vocab + pad;
    let x = rand_f32(rows * stride, seed, 8.0);
    let targets = (0..rows).map(|r| if r % 5 == 3 { -100 } else { ((r * 7919) % vocab) as i32 }).collect();
    let mask = (0..rows).map(|r| u8::from(r % 6 != 4)).collect();
    let temps = (0..rows).map(|r| 0.5 + (r % 4) as f32 * 0.25).collect();
    Batch { rows, vocab, stride, x, targets, mask, temps }
}

fn core_inputs(b: &Batch) -> RowInputs<'_> {
    RowInputs { targets: Some(&b.targets), row_mask: Some(&b.mask), temperature: Temperature::PerRow(&b.temps) }
}

/// Runs the forward through the ABI for element type `T` (`x` converted from f32).
fn abi_fwd<T: Copy>(
    b: &Batch,
    data: &[T],
    dtype: tkm_dtype,
    o: &tkm_exec_options,
) -> (tkm_status, [Vec<f32>; 5], usize) {
    let mut out: [Vec<f32>; 5] = std::array::from_fn(|_| vec![NAN_POISON; b.rows]);
    let mut nonfinite = usize::MAX;
    let [lse, h, lp, max, log_sum] = &mut out;
    let s = unsafe {
        tkm_logits_fwd(
            o,
            &tkm_logits_input::new(
                dtype,
                data.as_ptr() as *const c_void,
                b.rows,
                b.vocab,
                b.stride,
                b.targets.as_ptr(),
                b.mask.as_ptr(),
                1.0,
                b.temps.as_ptr(),
            ),
            lse.as_mut_ptr(),
            h.as_mut_ptr(),
            lp.as_mut_ptr(),
            max.as_mut_ptr(),
            log_sum.as_mut_ptr(),
            &mut nonfinite,
        )
    };
    (s, out, nonfinite)
}

fn core_fwd<T: tokenmath_core::LogitElem>(b: &Batch, data: &[T]) -> [Vec<f32>; 5] {
    let mut out: [Vec<f32>; 5] = std::array::from_fn(|_| vec![0.0; b.rows]);
    let [lse, h, lp, max, log_sum] = &mut out;
    let x = Mat::new(data, b.rows, b.vocab, b.stride).unwrap();
    lg::stats_fwd(
        Exec::new(),
        x,
        &core_inputs(b),
        FwdOut { lse, entropy: h, logp: Some(lp), max: Some(max), log_sum: Some(log_sum) },
    )
    .unwrap();
    out
}

#[test]
fn forward_is_bitwise_core_for_every_dtype_thread_count_and_backend() {
    let b = batch(13, 2 * 2048 + 37, 3, 7);
    let xb: Vec<u16> = b.x.iter().map(|&v| bf16::from_f32(v).to_bits()).collect();
    let xh: Vec<u16> = b.x.iter().map(|&v| f16::from_f32(v).to_bits()).collect();
    let want_f32 = core_fwd(&b, &b.x);
    let want_bf16 = core_fwd(&b, bytemuck::cast_slice::<u16, bf16>(&xb));
    let want_f16 = core_fwd(&b, bytemuck::cast_slice::<u16, f16>(&xh));
    for backend in backends() {
        for threads in [0, 1, 2, 3, 7, 64] {
            let o = exec_opts(threads, backend);
            for (dtype, want, got) in [
                (TKM_DTYPE_F32, &want_f32, abi_fwd(&b, &b.x, TKM_DTYPE_F32, &o)),
                (TKM_DTYPE_BF16, &want_bf16, abi_fwd(&b, &xb, TKM_DTYPE_BF16, &o)),
                (TKM_DTYPE_F16, &want_f16, abi_fwd(&b, &xh, TKM_DTYPE_F16, &o)),
            ] {
                assert_eq!(got.0, TKM_STATUS_OK);
                assert_eq!(got.2, 0);
                for (k, (g, w)) in got.1.iter().zip(want.iter()).enumerate() {
                    assert_eq!(bits(g), bits(w), "dtype {dtype} threads {threads} output {k}");
                }
            }
        }
    }
}

#[test]
fn forward_errors_write_nothing() {
    let b = batch(6, 40, 0, 3);
    let o = exec_opts(2, TKM_BACKEND_AUTO);
    let untouched = |out: &[Vec<f32>; 5]| out.iter().all(|v| v.iter().all(|&x| x == NAN_POISON));

    // A kept row whose logits are all -inf fails mid-pass: still nothing is written.
    let mut bad = batch(6, 40, 0, 3);
    bad.x[5 * 40..6 * 40].fill(f32::NEG_INFINITY);
    bad.mask[5] = 1;
    let (s, out, n) = abi_fwd(&bad, &bad.x, TKM_DTYPE_F32, &o);
    assert_eq!(s, TKM_STATUS_NO_FINITE_LOGIT);
    assert!(untouched(&out) && n == usize::MAX);

    let mut bad = batch(6, 40, 0, 3);
    bad.targets[0] = 40;
    let (s, out, _) = abi_fwd(&bad, &bad.x, TKM_DTYPE_F32, &o);
    assert_eq!(s, TKM_STATUS_LABEL_OUT_OF_RANGE);
    assert!(untouched(&out));

    let mut bad = batch(6, 40, 0, 3);
    bad.temps[1] = 0.0;
    assert_eq!(abi_fwd(&bad, &bad.x, TKM_DTYPE_F32, &o).0, TKM_STATUS_INVALID_TEMPERATURE);
    assert_eq!(abi_fwd(&b, &b.x, 0, &o).0, TKM_STATUS_BAD_DTYPE);
    assert_eq!(abi_fwd(&b, &b.x, 4, &o).0, TKM_STATUS_BAD_DTYPE);

    let mut strided = batch(6, 40, 0, 3);
    strided.stride = 39;
    assert_eq!(abi_fwd(&strided, &strided.x, TKM_DTYPE_F32, &o).0, TKM_STATUS_BAD_STRIDE);
    let mut empty = batch(6, 40, 0, 3);
    empty.vocab = 0;
    assert_eq!(abi_fwd(&empty, &empty.x, TKM_DTYPE_F32, &o).0, TKM_STATUS_EMPTY_VOCAB);
    let mut huge = batch(6, 40, 0, 3);
    huge.stride = usize::MAX / 2;
    assert_eq!(abi_fwd(&huge, &huge.x, TKM_DTYPE_F32, &o).0, TKM_STATUS_SIZE_OVERFLOW);

    // NULL logits, NULL required output, misaligned logits.
    let mut lse = vec![NAN_POISON; 6];
    let mut h = vec![NAN_POISON; 6];
    let call = |x: *const c_void, lse: *mut f32, h: *mut f32, lp: *mut f32, targets: *const i32| unsafe {
        tkm_logits_fwd(
            &o,
            &tkm_logits_input::new(TKM_DTYPE_F32, x, 6, 40, 40, targets, null(), 1.0, null()),
            lse,
            h,
            lp,
            null_mut(),
            null_mut(),
            null_mut(),
        )
    };
    let xp = b.x.as_ptr() as *const c_void;
    assert_eq!(call(null(), lse.as_mut_ptr(), h.as_mut_ptr(), null_mut(), null()), TKM_STATUS_NULL_POINTER);
    assert_eq!(call(xp, null_mut(), h.as_mut_ptr(), null_mut(), null()), TKM_STATUS_NULL_POINTER);
    assert_eq!(call(xp, lse.as_mut_ptr(), null_mut(), null_mut(), null()), TKM_STATUS_NULL_POINTER);
    let mis = unsafe { (b.x.as_ptr() as *const u8).add(1) } as *const c_void;
    assert_eq!(call(mis, lse.as_mut_ptr(), h.as_mut_ptr(), null_mut(), null()), TKM_STATUS_MISALIGNED);
    // logp without targets.
    let mut lp = vec![NAN_POISON; 6];
    assert_eq!(call(xp, lse.as_mut_ptr(), h.as_mut_ptr(), lp.as_mut_ptr(), null()), TKM_STATUS_INVALID_ARGUMENT);
    assert!(lse.iter().chain(&h).chain(&lp).all(|&v| v == NAN_POISON));
    // Zero rows: NULL arrays are fine.
    let s = unsafe {
        tkm_logits_fwd(
            &o,
            &tkm_logits_input::new(TKM_DTYPE_F32, null(), 0, 40, 40, null(), null(), 1.0, null()),
            null_mut(),
            null_mut(),
            null_mut(),
            null_mut(),
            null_mut(),
            null_mut(),
        )
    };
    assert_eq!(s, TKM_STATUS_OK);
}

#[test]
fn nonfinite_rows_are_counted() {
    let mut b = batch(4, 50, 0, 9);
    b.x[2 * 50 + 3] = f32::NAN;
    b.mask = vec![1; 4];
    let (s, out, n) = abi_fwd(&b, &b.x, TKM_DTYPE_F32, &exec_opts(1, TKM_BACKEND_AUTO));
    assert_eq!(s, TKM_STATUS_OK);
    assert_eq!(n, 1);
    assert!(out[0][2].is_nan() && !out[0][1].is_nan());
}

#[test]
fn backward_and_inplace_are_bitwise_core() {
    let b = batch(9, 3000, 5, 11);
    let o1 = exec_opts(1, TKM_BACKEND_AUTO);
    let (_, fwd, _) = abi_fwd(&b, &b.x, TKM_DTYPE_F32, &o1);
    let (h, max, log_sum) = (&fwd[1], &fwd[3], &fwd[4]);
    let g_lp = rand_f32(b.rows, 5, 1.0);
    let g_h = rand_f32(b.rows, 6, 0.1);
    let dx_stride = b.vocab + 2;

    // Core reference, f32 and bf16 gradients.
    let core_dx = |out: &mut [f32]| {
        let x = Mat::new(&b.x, b.rows, b.vocab, b.stride).unwrap();
        let d = MatMut::new(out, b.rows, b.vocab, dx_stride).unwrap();
        let up = Upstream { g_logp: Some(&g_lp), g_entropy: Some(&g_h), g_lse: None };
        lg::stats_bwd(Exec::new(), x, &core_inputs(&b), Saved { max, log_sum, entropy: h }, up, d).unwrap();
    };
    let mut want = vec![7.0f32; (b.rows - 1) * dx_stride + b.vocab];
    core_dx(&mut want);
    for threads in [1, 2, 5] {
        for backend in backends() {
            let o = exec_opts(threads, backend);
            let mut dx = vec![7.0f32; want.len()];
            let s = unsafe {
                tkm_logits_bwd(
                    &o,
                    TKM_DTYPE_F32,
                    b.x.as_ptr() as *const c_void,
                    b.rows,
                    b.vocab,
                    b.stride,
                    b.targets.as_ptr(),
                    b.mask.as_ptr(),
                    1.0,
                    b.temps.as_ptr(),
                    max.as_ptr(),
                    log_sum.as_ptr(),
                    h.as_ptr(),
                    g_lp.as_ptr(),
                    g_h.as_ptr(),
                    null(),
                    TKM_DTYPE_F32,
                    dx.as_mut_ptr() as *mut c_void,
                    dx_stride,
                )
            };
            assert_eq!(s, TKM_STATUS_OK);
            assert_eq!(bits(&dx), bits(&want), "threads {threads}");
        }
    }

    // bf16 gradient output.
    let mut dxb = vec![0u16; want.len()];
    let s = unsafe {
        tkm_logits_bwd(
            &o1,
            TKM_DTYPE_F32,
            b.x.as_ptr() as *const c_void,
            b.rows,
            b.vocab,
            b.stride,
            b.targets.as_ptr(),
            b.mask.as_ptr(),
            1.0,
            b.temps.as_ptr(),
            max.as_ptr(),
            log_sum.as_ptr(),
            h.as_ptr(),
            g_lp.as_ptr(),
            g_h.as_ptr(),
            null(),
            TKM_DTYPE_BF16,
            dxb.as_mut_ptr() as *mut c_void,
            dx_stride,
        )
    };
    assert_eq!(s, TKM_STATUS_OK);
    for r in 0..b.rows {
        for c in 0..b.vocab {
            let i = r * dx_stride + c;
            assert_eq!(dxb[i], bf16::from_f32(want[i]).to_bits());
        }
    }

    // Overlapping dx and logits is refused; the in-place entry point does it instead.
    let mut x = b.x.clone();
    let s = unsafe {
        tkm_logits_bwd(
            &o1,
            TKM_DTYPE_F32,
            x.as_ptr() as *const c_void,
            b.rows,
            b.vocab,
            b.stride,
            b.targets.as_ptr(),
            b.mask.as_ptr(),
            1.0,
            b.temps.as_ptr(),
            max.as_ptr(),
            log_sum.as_ptr(),
            h.as_ptr(),
            g_lp.as_ptr(),
            g_h.as_ptr(),
            null(),
            TKM_DTYPE_F32,
            x.as_mut_ptr() as *mut c_void,
            b.stride,
        )
    };
    assert_eq!(s, TKM_STATUS_OVERLAP);
    assert_eq!(bits(&x), bits(&b.x));
    for threads in [1, 3] {
        let mut x = b.x.clone();
        let s = unsafe {
            tkm_logits_bwd_inplace(
                &exec_opts(threads, TKM_BACKEND_AUTO),
                TKM_DTYPE_F32,
                x.as_mut_ptr() as *mut c_void,
                b.rows,
                b.vocab,
                b.stride,
                b.targets.as_ptr(),
                b.mask.as_ptr(),
                1.0,
                b.temps.as_ptr(),
                max.as_ptr(),
                log_sum.as_ptr(),
                h.as_ptr(),
                g_lp.as_ptr(),
                g_h.as_ptr(),
                null(),
            )
        };
        assert_eq!(s, TKM_STATUS_OK);
        for r in 0..b.rows {
            assert_eq!(bits(&x[r * b.stride..][..b.vocab]), bits(&want[r * dx_stride..][..b.vocab]));
            // The gap between rows is untouched.
            if r + 1 < b.rows {
                assert_eq!(
                    bits(&x[r * b.stride + b.vocab..(r + 1) * b.stride]),
                    bits(&b.x[r * b.stride + b.vocab..(r + 1) * b.stride])
                );
            }
        }
    }
    // Saved statistics missing.
    let mut dx = vec![0f32; want.len()];
    let s = unsafe {
        tkm_logits_bwd(
            &o1,
            TKM_DTYPE_F32,
            b.x.as_ptr() as *const c_void,
            b.rows,
            b.vocab,
            b.stride,
            null(),
            null(),
            1.0,
            null(),
            null(),
            log_sum.as_ptr(),
            h.as_ptr(),
            null(),
            null(),
            null(),
            TKM_DTYPE_F32,
            dx.as_mut_ptr() as *mut c_void,
            dx_stride,
        )
    };
    assert_eq!(s, TKM_STATUS_NULL_POINTER);
    let s = unsafe {
        tkm_logits_bwd_inplace(
            &o1,
            9,
            dx.as_mut_ptr() as *mut c_void,
            1,
            4,
            4,
            null(),
            null(),
            1.0,
            null(),
            max.as_ptr(),
            log_sum.as_ptr(),
            h.as_ptr(),
            null(),
            null(),
            null(),
        )
    };
    assert_eq!(s, TKM_STATUS_BAD_DTYPE);
}

#[test]
fn block_partials_merge_to_the_forward_bitwise_and_shards_report_errors() {
    let b = batch(5, 3 * 2048 + 100, 0, 21);
    let (_, fwd, _) = abi_fwd(&b, &b.x, TKM_DTYPE_F32, &exec_opts(1, TKM_BACKEND_AUTO));
    // Two shards: [0, 2048) and [2048, V), read through the full row stride.
    let cuts = [(0usize, 2048usize), (2048, b.vocab - 2048)];
    let mut parts: Vec<Vec<tkm_row_stats>> = Vec::new();
    let mut blocks = Vec::new();
    for &(off, cols) in &cuts {
        let nb = tkm_logits_partial_blocks_len(cols);
        let mut out = vec![tkm_row_stats::default(); b.rows * nb];
        let s = unsafe {
            tkm_logits_partial_blocks(
                &exec_opts(2, TKM_BACKEND_AUTO),
                TKM_DTYPE_F32,
                b.x[off..].as_ptr() as *const c_void,
                b.rows,
                cols,
                b.stride,
                off,
                b.vocab,
                b.targets.as_ptr(),
                b.mask.as_ptr(),
                1.0,
                b.temps.as_ptr(),
                out.as_mut_ptr(),
            )
        };
        assert_eq!(s, TKM_STATUS_OK);
        parts.push(out);
        blocks.push(nb);
    }
    let ptrs: Vec<*const tkm_row_stats> = parts.iter().map(|p| p.as_ptr()).collect();
    let mut merged = vec![tkm_row_stats::default(); b.rows];
    let s = unsafe { tkm_logits_merge_block_partials(ptrs.as_ptr(), blocks.as_ptr(), 2, b.rows, merged.as_mut_ptr()) };
    assert_eq!(s, TKM_STATUS_OK);
    let mut out: [Vec<f32>; 5] = std::array::from_fn(|_| vec![0f32; b.rows]);
    let mut nf = 9usize;
    let [lse, h, lp, max, log_sum] = &mut out;
    let s = unsafe {
        tkm_logits_finalize(
            merged.as_ptr(),
            b.rows,
            b.targets.as_ptr(),
            b.mask.as_ptr(),
            lse.as_mut_ptr(),
            h.as_mut_ptr(),
            lp.as_mut_ptr(),
            max.as_mut_ptr(),
            log_sum.as_mut_ptr(),
            &mut nf,
        )
    };
    assert_eq!(s, TKM_STATUS_OK);
    assert_eq!(nf, 0);
    for k in 0..5 {
        assert_eq!(bits(&out[k]), bits(&fwd[k]), "output {k}");
    }

    // Per-shard partials merged with merge_shards agree within rounding (same finalize path).
    let mut sp: Vec<Vec<tkm_row_stats>> = Vec::new();
    for &(off, cols) in &cuts {
        let mut o = vec![tkm_row_stats::default(); b.rows];
        let s = unsafe {
            tkm_logits_partial(
                null(),
                TKM_DTYPE_F32,
                b.x[off..].as_ptr() as *const c_void,
                b.rows,
                cols,
                b.stride,
                off,
                b.vocab,
                b.targets.as_ptr(),
                b.mask.as_ptr(),
                1.0,
                b.temps.as_ptr(),
                o.as_mut_ptr(),
            )
        };
        assert_eq!(s, TKM_STATUS_OK);
        sp.push(o);
    }
    let ptrs: Vec<*const tkm_row_stats> = sp.iter().map(|p| p.as_ptr()).collect();
    let mut m2 = vec![tkm_row_stats::default(); b.rows];
    assert_eq!(unsafe { tkm_logits_merge_shards(ptrs.as_ptr(), 2, b.rows, m2.as_mut_ptr()) }, TKM_STATUS_OK);
    // Two copies of the same shard both hold the target: duplicate target, nothing written.
    let dup = [sp[0].as_ptr(), sp[0].as_ptr()];
    let mut m3 = vec![tkm_row_stats { m: 1.0, s: 2.0, u: 3.0, x_t: 4.0, flags: 5 }; b.rows];
    assert_eq!(
        unsafe { tkm_logits_merge_shards(dup.as_ptr(), 2, b.rows, m3.as_mut_ptr()) },
        TKM_STATUS_DUPLICATE_TARGET
    );
    assert!(m3.iter().all(|t| t.flags == 5));
    // Only the second shard: rows whose target is in the first are missing it.
    let mut only = [vec![0f32; b.rows], vec![0f32; b.rows]];
    let [l2, h2] = &mut only;
    let s = unsafe {
        tkm_logits_finalize(
            sp[1].as_ptr(),
            b.rows,
            b.targets.as_ptr(),
            b.mask.as_ptr(),
            l2.as_mut_ptr(),
            h2.as_mut_ptr(),
            null_mut(),
            null_mut(),
            null_mut(),
            null_mut(),
        )
    };
    assert_eq!(s, TKM_STATUS_MISSING_TARGET);
    assert!(l2.iter().all(|&v| v == 0.0));
    // A shard past the vocabulary; a block shard not on a block boundary; a NULL part.
    let mut o = vec![tkm_row_stats::default(); b.rows];
    let s = unsafe {
        tkm_logits_partial(
            null(),
            TKM_DTYPE_F32,
            b.x.as_ptr() as *const c_void,
            b.rows,
            100,
            b.stride,
            b.vocab - 50,
            b.vocab,
            null(),
            null(),
            1.0,
            null(),
            o.as_mut_ptr(),
        )
    };
    assert_eq!(s, TKM_STATUS_SHARD_OUT_OF_RANGE);
    let s = unsafe {
        tkm_logits_partial_blocks(
            null(),
            TKM_DTYPE_F32,
            b.x.as_ptr() as *const c_void,
            b.rows,
            100,
            b.stride,
            10,
            b.vocab,
            null(),
            null(),
            1.0,
            null(),
            o.as_mut_ptr(),
        )
    };
    assert_eq!(s, TKM_STATUS_INVALID_ARGUMENT);
    let nulls = [null::<tkm_row_stats>()];
    assert_eq!(unsafe { tkm_logits_merge_shards(nulls.as_ptr(), 1, b.rows, m2.as_mut_ptr()) }, TKM_STATUS_NULL_POINTER);
    assert_eq!(
        unsafe { tkm_logits_merge_block_partials(nulls.as_ptr(), blocks.as_ptr(), 1, b.rows, m2.as_mut_ptr()) },
        TKM_STATUS_NULL_POINTER
    );
}

// ---------------------------------------------------------------------------------------
// Advantages.
// ---------------------------------------------------------------------------------------

#[test]
fn advantages_match_core_and_report_errors() {
    let rewards: Vec<f32> = rand_f32(24, 3, 2.0);
    let ids: Vec<u32> = (0..24).map(|b| (b * 7 % 5) as u32 + 100).collect();
    let mut init = tkm_grpo_options {
        struct_size: 0,
        flavor: 9,
        std_kind: 9,
        singleton: 9,
        trl_scale: 9,
        norm_by_std: 9,
        nan_policy: 9,
        eps: 0.0,
        reserved: 9,
    };
    assert_eq!(unsafe { tkm_grpo_options_init(&mut init) }, TKM_STATUS_OK);
    assert_eq!(init.struct_size, size_of::<tkm_grpo_options>());

    let cases: Vec<(tkm_grpo_options, GrpoCfg, bool)> = vec![
        (init, GrpoCfg::default(), false),
        (tkm_grpo_options { flavor: TKM_GRPO_VERL_LOOP, ..init }, GrpoCfg::verl_loop(), false),
        (tkm_grpo_options { flavor: TKM_GRPO_VERL_VECTORIZED, ..init }, GrpoCfg::verl_vectorized(), false),
        (
            tkm_grpo_options {
                flavor: TKM_GRPO_TRL,
                trl_scale: TKM_TRL_SCALE_BATCH,
                eps: 1e-4,
                nan_policy: TKM_NAN_IGNORE_AND_ZERO,
                ..init
            },
            GrpoCfg::trl(TrlScale::Batch),
            true,
        ),
    ];
    for (o, cfg, contiguous) in cases {
        let mut want = vec![0f32; 24];
        let mut got = vec![NAN_POISON; 24];
        let s = if contiguous {
            adv::grpo_advantage(&rewards, Groups::Contiguous { size: 4 }, &cfg, &mut want).unwrap();
            unsafe { tkm_grpo_advantage(rewards.as_ptr(), 24, null(), 4, &o, got.as_mut_ptr()) }
        } else {
            adv::grpo_advantage(&rewards, Groups::Ids(&ids), &cfg, &mut want).unwrap();
            unsafe { tkm_grpo_advantage(rewards.as_ptr(), 24, ids.as_ptr(), 0, &o, got.as_mut_ptr()) }
        };
        assert_eq!(s, TKM_STATUS_OK);
        assert_eq!(bits(&got), bits(&want));
    }
    // NULL options = defaults.
    let mut got = vec![0f32; 24];
    let mut want = vec![0f32; 24];
    adv::grpo_advantage(&rewards, Groups::Contiguous { size: 6 }, &GrpoCfg::default(), &mut want).unwrap();
    assert_eq!(unsafe { tkm_grpo_advantage(rewards.as_ptr(), 24, null(), 6, null(), got.as_mut_ptr()) }, TKM_STATUS_OK);
    assert_eq!(bits(&got), bits(&want));

    adv::dr_grpo_advantage(&rewards, Groups::Ids(&ids), &mut want).unwrap();
    assert_eq!(
        unsafe { tkm_dr_grpo_advantage(rewards.as_ptr(), 24, ids.as_ptr(), 0, got.as_mut_ptr()) },
        TKM_STATUS_OK
    );
    assert_eq!(bits(&got), bits(&want));

    for (code, flavor) in [
        (TKM_RLOO_STANDARD, RlooFlavor::Standard),
        (TKM_RLOO_VERL_LOOP, RlooFlavor::VerlLoop),
        (TKM_RLOO_VERL_VECTORIZED, RlooFlavor::VerlVectorized),
        (TKM_RLOO_TRL, RlooFlavor::Trl { normalize: false }),
        (TKM_RLOO_TRL_NORMALIZED, RlooFlavor::Trl { normalize: true }),
    ] {
        adv::rloo_advantage(&rewards, Groups::Contiguous { size: 4 }, flavor, &mut want).unwrap();
        assert_eq!(
            unsafe { tkm_rloo_advantage(rewards.as_ptr(), 24, null(), 4, code, got.as_mut_ptr()) },
            TKM_STATUS_OK
        );
        assert_eq!(bits(&got), bits(&want));
    }

    // Errors write nothing.
    let mut bad = rewards.clone();
    bad[3] = f32::INFINITY;
    let mut out = vec![NAN_POISON; 24];
    assert_eq!(
        unsafe { tkm_grpo_advantage(bad.as_ptr(), 24, null(), 4, null(), out.as_mut_ptr()) },
        TKM_STATUS_NON_FINITE
    );
    bad[3] = f32::NAN;
    assert_eq!(
        unsafe { tkm_rloo_advantage(bad.as_ptr(), 24, null(), 4, TKM_RLOO_STANDARD, out.as_mut_ptr()) },
        TKM_STATUS_NON_FINITE
    );
    assert_eq!(unsafe { tkm_dr_grpo_advantage(bad.as_ptr(), 24, null(), 4, out.as_mut_ptr()) }, TKM_STATUS_NON_FINITE);
    assert_eq!(
        unsafe { tkm_grpo_advantage(rewards.as_ptr(), 24, null(), 5, null(), out.as_mut_ptr()) },
        TKM_STATUS_INVALID_ARGUMENT
    );
    assert_eq!(
        unsafe { tkm_grpo_advantage(rewards.as_ptr(), 24, ids.as_ptr(), 4, null(), out.as_mut_ptr()) },
        TKM_STATUS_INVALID_ARGUMENT
    );
    assert_eq!(
        unsafe { tkm_grpo_advantage(rewards.as_ptr(), 24, null(), 0, null(), out.as_mut_ptr()) },
        TKM_STATUS_INVALID_ARGUMENT
    );
    let trl_ids = tkm_grpo_options { flavor: TKM_GRPO_TRL, ..init };
    assert_eq!(
        unsafe { tkm_grpo_advantage(rewards.as_ptr(), 24, ids.as_ptr(), 0, &trl_ids, out.as_mut_ptr()) },
        TKM_STATUS_INVALID_ARGUMENT
    );
    for o in [
        tkm_grpo_options { eps: -1.0, ..init },
        tkm_grpo_options { flavor: 17, ..init },
        tkm_grpo_options { norm_by_std: 2, ..init },
        tkm_grpo_options { reserved: 1, ..init },
    ] {
        assert_eq!(
            unsafe { tkm_grpo_advantage(rewards.as_ptr(), 24, null(), 4, &o, out.as_mut_ptr()) },
            TKM_STATUS_INVALID_ARGUMENT
        );
    }
    assert_eq!(unsafe { tkm_grpo_advantage(null(), 24, null(), 4, null(), out.as_mut_ptr()) }, TKM_STATUS_NULL_POINTER);
    assert_eq!(
        unsafe { tkm_rloo_advantage(rewards.as_ptr(), 24, null(), 4, 99, out.as_mut_ptr()) },
        TKM_STATUS_INVALID_ARGUMENT
    );
    assert!(out.iter().all(|&v| v == NAN_POISON));
    // Older options struct (only up to `flavor`): the rest are defaults.
    let old = tkm_grpo_options { struct_size: 12, flavor: TKM_GRPO_VERL_LOOP, eps: -5.0, ..init };
    adv::grpo_advantage(&rewards, Groups::Contiguous { size: 4 }, &GrpoCfg::verl_loop(), &mut want).unwrap();
    assert_eq!(unsafe { tkm_grpo_advantage(rewards.as_ptr(), 24, null(), 4, &old, got.as_mut_ptr()) }, TKM_STATUS_OK);
    assert_eq!(bits(&got), bits(&want));

    // Broadcast.
    let mask: Vec<u8> = (0..24 * 3).map(|i| u8::from(i % 4 != 0)).collect();
    let mut tok = vec![NAN_POISON; 72];
    assert_eq!(unsafe { tkm_broadcast_masked(got.as_ptr(), 24, mask.as_ptr(), 3, tok.as_mut_ptr()) }, TKM_STATUS_OK);
    let mut want_tok = vec![0f32; 72];
    adv::broadcast_masked(&got, &mask, 3, &mut want_tok).unwrap();
    assert_eq!(bits(&tok), bits(&want_tok));
    assert_eq!(
        unsafe { tkm_broadcast_masked(got.as_ptr(), usize::MAX, mask.as_ptr(), 3, tok.as_mut_ptr()) },
        TKM_STATUS_SIZE_OVERFLOW
    );
}

// ---------------------------------------------------------------------------------------
// Fingerprints.
// ---------------------------------------------------------------------------------------

fn leaves(n: usize) -> Vec<[u8; 32]> {
    (0..n)
        .map(|i| {
            let mut h = [0u8; 32];
            let fp = (i as u32).to_le_bytes();
            let s = unsafe {
                tkm_fp_leaf_hash(
                    i as u64,
                    [i as u8; 16].as_ptr(),
                    7 + i as u32,
                    TKM_FP_KIND_NONE,
                    fp.as_ptr(),
                    4,
                    h.as_mut_ptr(),
                )
            };
            assert_eq!(s, TKM_STATUS_OK);
            h
        })
        .collect()
}

#[test]
fn fingerprint_roots_trees_and_proofs() {
    // Leaf hash equals the core's record hash.
    let fpb = [1u8, 2, 3, 4];
    let rec = LeafRecord { index: 5, salt: [9; 16], token_id: 42, kind: FpKind::F32Canonical, fp: &fpb };
    let mut h = [0u8; 32];
    assert_eq!(
        unsafe {
            tkm_fp_leaf_hash(5, [9u8; 16].as_ptr(), 42, TKM_FP_KIND_F32_CANONICAL, fpb.as_ptr(), 4, h.as_mut_ptr())
        },
        TKM_STATUS_OK
    );
    assert_eq!(h, rec.leaf_hash(&Blake3).unwrap());
    assert_eq!(
        unsafe { tkm_fp_leaf_hash(5, [9u8; 16].as_ptr(), 42, 99, fpb.as_ptr(), 4, h.as_mut_ptr()) },
        TKM_STATUS_INVALID_ARGUMENT
    );
    assert_eq!(unsafe { tkm_fp_leaf_hash(5, null(), 42, 0, null(), 0, h.as_mut_ptr()) }, TKM_STATUS_NULL_POINTER);

    for n in [0usize, 1, 2, 3, 7, 8, 13] {
        let l = leaves(n);
        let flat = l.concat();
        let mut root = [0u8; 32];
        assert_eq!(unsafe { tkm_fp_root(flat.as_ptr(), n, root.as_mut_ptr()) }, TKM_STATUS_OK);
        assert_eq!(root, tree::root(&Blake3, &l));
        // Streaming, appended in two pieces.
        let mut tree = null_mut();
        assert_eq!(unsafe { tkm_fp_tree_new(&mut tree) }, TKM_STATUS_OK);
        let k = n / 2;
        assert_eq!(unsafe { tkm_fp_tree_append(tree, flat.as_ptr(), k) }, TKM_STATUS_OK);
        assert_eq!(unsafe { tkm_fp_tree_append(tree, flat[32 * k..].as_ptr(), n - k) }, TKM_STATUS_OK);
        let (mut len, mut r2) = (0u64, [0u8; 32]);
        assert_eq!(unsafe { tkm_fp_tree_len(tree, &mut len) }, TKM_STATUS_OK);
        assert_eq!(unsafe { tkm_fp_tree_root(tree, r2.as_mut_ptr()) }, TKM_STATUS_OK);
        assert_eq!((len, r2), (n as u64, root));
        unsafe { tkm_fp_tree_free(tree) };

        let cap = tkm_fp_max_proof_len(n as u64);
        for i in 0..n {
            let mut proof = vec![0u8; 32 * cap];
            let mut plen = 0usize;
            let s = unsafe { tkm_fp_inclusion_proof(flat.as_ptr(), n, i as u64, proof.as_mut_ptr(), cap, &mut plen) };
            assert_eq!(s, TKM_STATUS_OK);
            let mut exact = 0usize;
            assert_eq!(unsafe { tkm_fp_inclusion_proof_len(i as u64, n as u64, &mut exact) }, TKM_STATUS_OK);
            assert_eq!(plen, exact);
            let ok = unsafe {
                tkm_fp_verify_inclusion(i as u64, n as u64, l[i].as_ptr(), proof.as_ptr(), plen, root.as_ptr())
            };
            assert_eq!(ok, TKM_STATUS_OK);
            if n > 1 {
                let wrong = unsafe {
                    tkm_fp_verify_inclusion(
                        i as u64,
                        n as u64,
                        l[(i + 1) % n].as_ptr(),
                        proof.as_ptr(),
                        plen,
                        root.as_ptr(),
                    )
                };
                assert_eq!(wrong, TKM_STATUS_PROOF_MISMATCH);
                let short = unsafe {
                    tkm_fp_verify_inclusion(i as u64, n as u64, l[i].as_ptr(), proof.as_ptr(), plen - 1, root.as_ptr())
                };
                assert_eq!(short, TKM_STATUS_PROOF_LENGTH);
            }
            if i >= 1 {
                let (mut c, mut clen) = (vec![0u8; 32 * cap], 0usize);
                let s = unsafe { tkm_fp_consistency_proof(flat.as_ptr(), n, i as u64, c.as_mut_ptr(), cap, &mut clen) };
                assert_eq!(s, TKM_STATUS_OK);
                let old = tree::root(&Blake3, &l[..i]);
                let v = unsafe {
                    tkm_fp_verify_consistency(i as u64, n as u64, old.as_ptr(), root.as_ptr(), c.as_ptr(), clen)
                };
                assert_eq!(v, TKM_STATUS_OK);
                let v = unsafe {
                    tkm_fp_verify_consistency(i as u64, n as u64, root.as_ptr(), root.as_ptr(), c.as_ptr(), clen)
                };
                assert!(v == TKM_STATUS_PROOF_MISMATCH || (i == n && v == TKM_STATUS_OK));
            }
        }
        let mut plen = 0usize;
        let mut proof = vec![0u8; 32 * cap];
        let s = unsafe { tkm_fp_inclusion_proof(flat.as_ptr(), n, n as u64, proof.as_mut_ptr(), cap, &mut plen) };
        assert_eq!(s, TKM_STATUS_INDEX_OUT_OF_RANGE);
        let v = unsafe { tkm_fp_verify_inclusion(n as u64, n as u64, root.as_ptr(), proof.as_ptr(), 0, root.as_ptr()) };
        assert_eq!(v, TKM_STATUS_INDEX_OUT_OF_RANGE);
        if n >= 3 {
            // A proof buffer too small: nothing written.
            let mut small = vec![0xAAu8; 32];
            let mut plen = 77usize;
            let s = unsafe { tkm_fp_inclusion_proof(flat.as_ptr(), n, 0, small.as_mut_ptr(), 1, &mut plen) };
            assert_eq!(s, TKM_STATUS_LENGTH_MISMATCH);
            assert!(small.iter().all(|&b| b == 0xAA) && plen == 77);
        }
    }
    let mut c = [0u8; 32];
    let mut clen = 0usize;
    let l = leaves(3).concat();
    assert_eq!(
        unsafe { tkm_fp_consistency_proof(l.as_ptr(), 3, 0, c.as_mut_ptr(), 1, &mut clen) },
        TKM_STATUS_INVALID_ARGUMENT
    );
    assert_eq!(unsafe { tkm_fp_tree_append(null_mut(), l.as_ptr(), 1) }, TKM_STATUS_NULL_POINTER);
    assert_eq!(unsafe { tkm_fp_tree_new(null_mut()) }, TKM_STATUS_NULL_POINTER);
    unsafe { tkm_fp_tree_free(null_mut()) };
}

#[test]
fn concurrent_calls_share_inputs_and_agree() {
    let b = batch(16, 1000, 0, 77);
    let want = abi_fwd(&b, &b.x, TKM_DTYPE_F32, &exec_opts(1, TKM_BACKEND_AUTO));
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4u32)
            .map(|k| {
                let b = &b;
                s.spawn(move || abi_fwd(b, &b.x, TKM_DTYPE_F32, &exec_opts(1 + k % 3, TKM_BACKEND_AUTO)))
            })
            .collect();
        for h in handles {
            let got = h.join().unwrap();
            assert_eq!(got.0, TKM_STATUS_OK);
            for (g, w) in got.1.iter().zip(want.1.iter()) {
                assert_eq!(bits(g), bits(w));
            }
        }
    });
}

#[test]
fn committed_header_matches_this_crate() {
    let header = include_str!("../../include/tokenmath.h");
    for (name, value) in [
        ("TKM_VERSION_MAJOR", env!("CARGO_PKG_VERSION_MAJOR")),
        ("TKM_VERSION_MINOR", env!("CARGO_PKG_VERSION_MINOR")),
        ("TKM_VERSION_PATCH", env!("CARGO_PKG_VERSION_PATCH")),
    ] {
        assert!(header.contains(&format!("#define {name} {value}\n")), "{name} in include/tokenmath.h is not {value}");
    }
    for s in ALL_STATUSES {
        assert!(header.contains(&format!("{s:?} = {},", s as u32)), "{s:?} missing from include/tokenmath.h");
    }
    // Every macro the header defines is prefixed (ALL_STATUSES, a Rust test list, was not).
    for line in header.lines().filter_map(|l| l.trim_start().strip_prefix("#define ")) {
        let name = line.split_whitespace().next().unwrap_or_default();
        assert!(name.starts_with("TKM_") || name == "TOKENMATH_H", "unprefixed macro {name} in the header");
    }
    // The grouping rule the advantage functions refer to is in the header itself.
    assert!(header.contains(" * 13. Groups."), "rule 13 missing");
    assert!(header.contains("(rule 13 of the header: exactly one of `group_ids` or\n * `group_size > 0`)"));
}

#[test]
fn logits_input_struct_init_and_size_rule() {
    let mut input = tkm_logits_input::new(TKM_DTYPE_BF16, 8 as *const c_void, 3, 4, 5, null(), null(), 2.0, null());
    input.struct_size = 0;
    assert_eq!(unsafe { tkm_logits_input_init(&mut input) }, TKM_STATUS_OK);
    assert_eq!(input.struct_size, size_of::<tkm_logits_input>());
    assert_eq!((input.dtype, input.rows, input.vocab, input.row_stride), (TKM_DTYPE_F32, 0, 0, 0));
    assert!(input.logits.is_null() && input.targets.is_null() && input.temperatures.is_null());
    assert_eq!(input.temperature, 1.0);
    assert_eq!(unsafe { tkm_logits_input_init(null_mut()) }, TKM_STATUS_NULL_POINTER);

    let x = rand_f32(2 * 5, 3, 3.0);
    let (mut lse, mut h) = ([NAN_POISON; 2], [NAN_POISON; 2]);
    let call = |input: *const tkm_logits_input, lse: &mut [f32], h: &mut [f32]| unsafe {
        tkm_logits_fwd(null(), input, lse.as_mut_ptr(), h.as_mut_ptr(), null_mut(), null_mut(), null_mut(), null_mut())
    };
    assert_eq!(call(null(), &mut lse, &mut h), TKM_STATUS_NULL_POINTER);
    let mut input =
        tkm_logits_input::new(TKM_DTYPE_F32, x.as_ptr() as *const c_void, 2, 5, 5, null(), null(), 1.0, null());
    input.struct_size = 8;
    assert_eq!(call(&input, &mut lse, &mut h), TKM_STATUS_BAD_STRUCT_SIZE);
    assert!(lse.iter().chain(&h).all(|&v| v == NAN_POISON));
    input.struct_size = size_of::<tkm_logits_input>();
    assert_eq!(call(&input, &mut lse, &mut h), TKM_STATUS_OK);
    assert!(lse.iter().chain(&h).all(|v| v.is_finite()));
}

/// The README's C example is `examples/c/logits.c` verbatim (which check-ffi.sh compiles and
/// runs), so the README cannot drift from a program that works.
#[test]
fn readme_c_example_is_the_checked_file() {
    let readme = include_str!("../../README.md");
    let example = include_str!("../../examples/c/logits.c");
    assert!(readme.contains(&format!("```c\n{example}```")), "README's C example differs from examples/c/logits.c");
}

/// The shard backward through the ABI: every shard's `dx` (unaligned cuts, strided input and
/// output, f32 and bf16 logits) is bitwise the slice of `tkm_logits_bwd` on the whole
/// vocabulary; its errors write nothing.
#[test]
fn shard_backward_is_the_slice_of_the_full_backward() {
    let b = batch(7, 2 * 2048 + 300, 4, 31);
    let xb: Vec<u16> = b.x.iter().map(|&v| bf16::from_f32(v).to_bits()).collect();
    let g_lp = rand_f32(b.rows, 8, 1.0);
    let g_h = rand_f32(b.rows, 9, 0.1);
    let g_lse = rand_f32(b.rows, 10, 0.01);
    for (dtype, data) in
        [(TKM_DTYPE_F32, b.x.as_ptr() as *const c_void), (TKM_DTYPE_BF16, xb.as_ptr() as *const c_void)]
    {
        let mut fwd: [Vec<f32>; 5] = std::array::from_fn(|_| vec![0f32; b.rows]);
        let [lse, h, lp, max, log_sum] = &mut fwd;
        let inp = tkm_logits_input::new(
            dtype,
            data,
            b.rows,
            b.vocab,
            b.stride,
            b.targets.as_ptr(),
            b.mask.as_ptr(),
            1.0,
            b.temps.as_ptr(),
        );
        let s = unsafe {
            tkm_logits_fwd(
                null(),
                &inp,
                lse.as_mut_ptr(),
                h.as_mut_ptr(),
                lp.as_mut_ptr(),
                max.as_mut_ptr(),
                log_sum.as_mut_ptr(),
                null_mut(),
            )
        };
        assert_eq!(s, TKM_STATUS_OK);
        let call = |off: usize, cols: usize, vocab: usize, dx: &mut [f32], dx_stride: usize, threads: u32| unsafe {
            let esz = if dtype == TKM_DTYPE_F32 { 4 } else { 2 };
            tkm_logits_bwd_shard(
                &exec_opts(threads, TKM_BACKEND_AUTO),
                dtype,
                (data as *const u8).add(off * esz) as *const c_void,
                b.rows,
                cols,
                b.stride,
                off,
                vocab,
                b.targets.as_ptr(),
                b.mask.as_ptr(),
                1.0,
                b.temps.as_ptr(),
                max.as_ptr(),
                log_sum.as_ptr(),
                h.as_ptr(),
                g_lp.as_ptr(),
                g_h.as_ptr(),
                g_lse.as_ptr(),
                TKM_DTYPE_F32,
                dx.as_mut_ptr() as *mut c_void,
                dx_stride,
            )
        };
        let mut want = vec![NAN_POISON; b.rows * b.vocab];
        let s = unsafe {
            tkm_logits_bwd(
                null(),
                dtype,
                data,
                b.rows,
                b.vocab,
                b.stride,
                b.targets.as_ptr(),
                b.mask.as_ptr(),
                1.0,
                b.temps.as_ptr(),
                max.as_ptr(),
                log_sum.as_ptr(),
                h.as_ptr(),
                g_lp.as_ptr(),
                g_h.as_ptr(),
                g_lse.as_ptr(),
                TKM_DTYPE_F32,
                want.as_mut_ptr() as *mut c_void,
                b.vocab,
            )
        };
        assert_eq!(s, TKM_STATUS_OK);
        for cuts in
            [vec![0, b.vocab], vec![0, 2048, b.vocab], vec![0, 1, 1500, 3001, b.vocab], vec![0, b.vocab - 1, b.vocab]]
        {
            for threads in [1, 3] {
                // Each shard writes into its columns of one [rows, vocab] buffer (dx stride = vocab).
                let mut got = vec![NAN_POISON; b.rows * b.vocab];
                for w in cuts.windows(2) {
                    let s = call(w[0], w[1] - w[0], b.vocab, &mut got[w[0]..], b.vocab, threads);
                    assert_eq!(s, TKM_STATUS_OK, "shard {w:?}");
                }
                assert_eq!(bits(&got), bits(&want), "dtype {dtype} cuts {cuts:?}");
            }
        }
        // Errors: a shard past the vocabulary, an empty vocabulary, a global target beyond it.
        let mut dx = vec![NAN_POISON; b.rows * b.vocab];
        assert_eq!(call(b.vocab - 10, 20, b.vocab, &mut dx, 20, 1), TKM_STATUS_SHARD_OUT_OF_RANGE);
        assert_eq!(call(0, 0, 0, &mut dx, 0, 1), TKM_STATUS_EMPTY_VOCAB);
        assert_eq!(call(0, 100, 50, &mut dx, 100, 1), TKM_STATUS_SHARD_OUT_OF_RANGE);
        assert_eq!(call(0, 1000, 1000, &mut dx, 1000, 1), TKM_STATUS_LABEL_OUT_OF_RANGE);
        assert!(dx.iter().all(|&v| v == NAN_POISON));
        // An empty shard at the end writes nothing and succeeds.
        assert_eq!(call(b.vocab, 0, b.vocab, &mut dx, 0, 1), TKM_STATUS_OK);
        assert!(dx.iter().all(|&v| v == NAN_POISON));
    }
}
