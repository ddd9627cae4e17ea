//! DLPack entry points: equal to the raw-pointer ones bitwise (strided rows, byte offsets,
//! bf16), and every field validated with its own status.

use core::ffi::c_void;
use core::ptr::{null, null_mut};

use half::bf16;
use tokenmath::dlpack::*;
use tokenmath::logits::*;
use tokenmath::*;

const CPU: i32 = 1;
const CUDA: i32 = 2;
const CUDA_HOST: i32 = 3;

struct T {
    shape: Vec<i64>,
    strides: Option<Vec<i64>>,
    t: DLTensor,
}

impl T {
    fn new(data: *mut c_void, code: u8, bits: u8, shape: &[i64], strides: Option<&[i64]>) -> Box<T> {
        let mut b = Box::new(T {
            shape: shape.to_vec(),
            strides: strides.map(|s| s.to_vec()),
            t: DLTensor {
                data,
                device: DLDevice { device_type: CPU, device_id: 0 },
                ndim: shape.len() as i32,
                dtype: DLDataType { code, bits, lanes: 1 },
                shape: null_mut(),
                strides: null_mut(),
                byte_offset: 0,
            },
        });
        b.t.shape = b.shape.as_mut_ptr();
        b.t.strides = b.strides.as_mut().map_or(null_mut(), |s| s.as_mut_ptr());
        b
    }
    fn f32v(v: &mut [f32]) -> Box<T> {
        T::new(v.as_mut_ptr() as *mut c_void, 2, 32, &[v.len() as i64], None)
    }
}

fn rand_f32(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * 5.0
        })
        .collect()
}

const ROWS: usize = 5;
const V: usize = 300;
const STRIDE: usize = 310;

#[allow(clippy::type_complexity)]
fn raw_fwd(x: &[f32], dtype: tkm_dtype, data: *const c_void, targets: &[i32]) -> [Vec<f32>; 5] {
    let _ = x;
    let mut out: [Vec<f32>; 5] = std::array::from_fn(|_| vec![0f32; ROWS]);
    let [l, h, lp, mx, ls] = &mut out;
    let s = unsafe {
        tkm_logits_fwd(
            null(),
            &tkm_logits_input::new(dtype, data, ROWS, V, STRIDE, targets.as_ptr(), null(), 0.9, null()),
            l.as_mut_ptr(),
            h.as_mut_ptr(),
            lp.as_mut_ptr(),
            mx.as_mut_ptr(),
            ls.as_mut_ptr(),
            null_mut(),
        )
    };
    assert_eq!(s, TKM_STATUS_OK);
    out
}

#[test]
fn dlpack_forward_and_backward_equal_the_raw_calls() {
    // Logits at byte offset 8 of their buffer, rows strided by STRIDE elements.
    let mut buf = vec![0f32; 2 + ROWS * STRIDE];
    buf[2..].copy_from_slice(&rand_f32(ROWS * STRIDE, 3));
    let mut targets: Vec<i32> = vec![1, 299, -100, 7, 0];
    let want = raw_fwd(&buf, TKM_DTYPE_F32, buf[2..].as_ptr() as *const c_void, &targets);

    let mut x = T::new(buf.as_mut_ptr() as *mut c_void, 2, 32, &[ROWS as i64, V as i64], Some(&[STRIDE as i64, 1]));
    x.t.byte_offset = 8;
    let mut tt = T::new(targets.as_mut_ptr() as *mut c_void, 0, 32, &[ROWS as i64], None);
    let mut out: [Vec<f32>; 5] = std::array::from_fn(|_| vec![0f32; ROWS]);
    let [l, h, lp, mx, ls] = &mut out;
    let (tl, th, tlp, tmx, tls) = (T::f32v(l), T::f32v(h), T::f32v(lp), T::f32v(mx), T::f32v(ls));
    let mut nf = 7usize;
    let s = unsafe {
        tkm_dl_logits_fwd(null(), &x.t, &tt.t, null(), 0.9, null(), &tl.t, &th.t, &tlp.t, &tmx.t, &tls.t, &mut nf)
    };
    assert_eq!(s, TKM_STATUS_OK);
    assert_eq!(nf, 0);
    for k in 0..5 {
        assert_eq!(
            out[k].iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            want[k].iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }

    // bf16 logits (DLPack code 4, 16 bits) and a bool row mask.
    let mut xb: Vec<u16> = buf[2..].iter().map(|&v| bf16::from_f32(v).to_bits()).collect();
    let want_b = raw_fwd(&buf, TKM_DTYPE_BF16, xb.as_ptr() as *const c_void, &targets);
    let xbt = T::new(xb.as_mut_ptr() as *mut c_void, 4, 16, &[ROWS as i64, V as i64], Some(&[STRIDE as i64, 1]));
    let mut mask = [1u8; ROWS];
    let mt = T::new(mask.as_mut_ptr() as *mut c_void, 6, 8, &[ROWS as i64], None);
    let s = unsafe {
        tkm_dl_logits_fwd(null(), &xbt.t, &tt.t, &mt.t, 0.9, null(), &tl.t, &th.t, null(), null(), null(), null_mut())
    };
    assert_eq!(s, TKM_STATUS_OK);
    assert_eq!(out[0], want_b[0]);

    // Backward into a compact dx (NULL strides) equals the raw backward; then in place.
    let [_, h, _, mx, ls] = &want;
    let (mut h, mut mx, mut ls) = (h.clone(), mx.clone(), ls.clone());
    let mut g = vec![-1f32; ROWS];
    let (th, tmx, tls, tg) = (T::f32v(&mut h), T::f32v(&mut mx), T::f32v(&mut ls), T::f32v(&mut g));
    let mut dx = vec![0f32; ROWS * V];
    let tdx = T::new(dx.as_mut_ptr() as *mut c_void, 2, 32, &[ROWS as i64, V as i64], None);
    let s = unsafe {
        tkm_dl_logits_bwd(
            null(),
            &x.t,
            &tt.t,
            null(),
            0.9,
            null(),
            &tmx.t,
            &tls.t,
            &th.t,
            &tg.t,
            null(),
            null(),
            &tdx.t,
        )
    };
    assert_eq!(s, TKM_STATUS_OK);
    let mut want_dx = vec![0f32; ROWS * V];
    let s = unsafe {
        tkm_logits_bwd(
            null(),
            TKM_DTYPE_F32,
            buf[2..].as_ptr() as *const c_void,
            ROWS,
            V,
            STRIDE,
            targets.as_ptr(),
            null(),
            0.9,
            null(),
            mx.as_ptr(),
            ls.as_ptr(),
            h.as_ptr(),
            g.as_ptr(),
            null(),
            null(),
            TKM_DTYPE_F32,
            want_dx.as_mut_ptr() as *mut c_void,
            V,
        )
    };
    assert_eq!(s, TKM_STATUS_OK);
    assert_eq!(dx, want_dx);
    let s = unsafe {
        tkm_dl_logits_bwd_inplace(
            null(),
            &x.t,
            &tt.t,
            null(),
            0.9,
            null(),
            &tmx.t,
            &tls.t,
            &th.t,
            &tg.t,
            null(),
            null(),
        )
    };
    assert_eq!(s, TKM_STATUS_OK);
    for r in 0..ROWS {
        assert_eq!(&buf[2 + r * STRIDE..][..V], &want_dx[r * V..][..V]);
    }
    // Shape mismatch between dx and the logits.
    let tdx2 = T::new(dx.as_mut_ptr() as *mut c_void, 2, 32, &[ROWS as i64, (V - 1) as i64], None);
    let s = unsafe {
        tkm_dl_logits_bwd(
            null(),
            &x.t,
            &tt.t,
            null(),
            0.9,
            null(),
            &tmx.t,
            &tls.t,
            &th.t,
            &tg.t,
            null(),
            null(),
            &tdx2.t,
        )
    };
    assert_eq!(s, TKM_STATUS_LENGTH_MISMATCH);
    tt.t.dtype.bits = 64;
    let s = unsafe {
        tkm_dl_logits_bwd(
            null(),
            &x.t,
            &tt.t,
            null(),
            0.9,
            null(),
            &tmx.t,
            &tls.t,
            &th.t,
            &tg.t,
            null(),
            null(),
            &tdx.t,
        )
    };
    assert_eq!(s, TKM_STATUS_BAD_DTYPE);
}

#[test]
fn every_dlpack_field_is_validated() {
    let mut x = rand_f32(ROWS * V, 9);
    let mut l = vec![-3f32; ROWS];
    let mut h = vec![-3f32; ROWS];
    let (tl, th) = (T::f32v(&mut l), T::f32v(&mut h));
    let xp = x.as_mut_ptr() as *mut c_void;
    let fwd = |t: &DLTensor, lse: &DLTensor| unsafe {
        tkm_dl_logits_fwd(null(), t, null(), null(), 1.0, null(), lse, &th.t, null(), null(), null(), null_mut())
    };
    let shape = [ROWS as i64, V as i64];
    assert_eq!(fwd(&T::new(xp, 2, 32, &shape, None).t, &tl.t), TKM_STATUS_OK);

    let mut t = T::new(xp, 2, 32, &shape, None);
    t.t.device.device_type = CUDA; // CUDA logits, CPU outputs
    assert_eq!(fwd(&t.t, &tl.t), TKM_STATUS_DEVICE_MISMATCH);
    t.t.device.device_type = 4; // kDLOpenCL
    assert_eq!(fwd(&t.t, &tl.t), TKM_STATUS_UNSUPPORTED_DEVICE);
    t.t.device.device_type = CUDA_HOST; // pinned host memory is CPU-addressable
    assert_eq!(fwd(&t.t, &tl.t), TKM_STATUS_OK);
    let mut t = T::new(xp, 2, 32, &[1, ROWS as i64, V as i64], None);
    assert_eq!(fwd(&t.t, &tl.t), TKM_STATUS_BAD_TENSOR);
    t.t.ndim = 2;
    t.t.shape = null_mut();
    assert_eq!(fwd(&t.t, &tl.t), TKM_STATUS_BAD_TENSOR);
    let mut t = T::new(xp, 2, 32, &shape, None);
    t.t.dtype.lanes = 2;
    assert_eq!(fwd(&t.t, &tl.t), TKM_STATUS_BAD_DTYPE);
    for (code, bits) in [(2u8, 64u8), (4, 32), (0, 32), (5, 64)] {
        assert_eq!(fwd(&T::new(xp, code, bits, &shape, None).t, &tl.t), TKM_STATUS_BAD_DTYPE);
    }
    assert_eq!(fwd(&T::new(xp, 2, 32, &[-1, V as i64], None).t, &tl.t), TKM_STATUS_BAD_TENSOR);
    assert_eq!(fwd(&T::new(xp, 2, 32, &shape, Some(&[-(V as i64), 1])).t, &tl.t), TKM_STATUS_BAD_STRIDE);
    assert_eq!(fwd(&T::new(xp, 2, 32, &shape, Some(&[V as i64, 2])).t, &tl.t), TKM_STATUS_BAD_STRIDE);
    assert_eq!(fwd(&T::new(xp, 2, 32, &shape, Some(&[V as i64 - 1, 1])).t, &tl.t), TKM_STATUS_BAD_STRIDE);
    // Column-major is not a row view.
    assert_eq!(fwd(&T::new(xp, 2, 32, &shape, Some(&[1, ROWS as i64])).t, &tl.t), TKM_STATUS_BAD_STRIDE);
    let mut l4 = vec![0f32; ROWS - 1];
    let mut h4 = vec![0f32; ROWS - 1];
    let (tl4, th4) = (T::f32v(&mut l4), T::f32v(&mut h4));
    let mut t = T::new(xp, 2, 32, &[ROWS as i64 - 1, V as i64], None);
    t.t.byte_offset = 2;
    let s = unsafe {
        tkm_dl_logits_fwd(null(), &t.t, null(), null(), 1.0, null(), &tl4.t, &th4.t, null(), null(), null(), null_mut())
    };
    assert_eq!(s, TKM_STATUS_MISALIGNED);
    t.t.byte_offset = 4; // one element in: still inside the buffer for ROWS-1 rows
    let s = unsafe {
        tkm_dl_logits_fwd(null(), &t.t, null(), null(), 1.0, null(), &tl4.t, &th4.t, null(), null(), null(), null_mut())
    };
    assert_eq!(s, TKM_STATUS_OK);
    let t = T::new(null_mut(), 2, 32, &shape, None);
    assert_eq!(fwd(&t.t, &tl.t), TKM_STATUS_NULL_POINTER);
    assert_eq!(
        unsafe {
            tkm_dl_logits_fwd(
                null(),
                null(),
                null(),
                null(),
                1.0,
                null(),
                &tl.t,
                &th.t,
                null(),
                null(),
                null(),
                null_mut(),
            )
        },
        TKM_STATUS_NULL_POINTER
    );

    // Vectors: length, dtype, contiguity, NULL required output.
    let good = T::new(xp, 2, 32, &shape, None);
    let mut short = vec![0f32; ROWS - 1];
    assert_eq!(fwd(&good.t, &T::f32v(&mut short).t), TKM_STATUS_LENGTH_MISMATCH);
    let mut l2 = vec![0f32; 2 * ROWS];
    assert_eq!(
        fwd(&good.t, &T::new(l2.as_mut_ptr() as *mut c_void, 2, 32, &[ROWS as i64], Some(&[2])).t),
        TKM_STATUS_BAD_STRIDE
    );
    assert_eq!(
        fwd(&good.t, &T::new(l2.as_mut_ptr() as *mut c_void, 2, 16, &[ROWS as i64], None).t),
        TKM_STATUS_BAD_DTYPE
    );
    assert_eq!(
        fwd(&good.t, &T::new(l2.as_mut_ptr() as *mut c_void, 2, 32, &[ROWS as i64, 1], None).t),
        TKM_STATUS_BAD_TENSOR
    );
    let s = unsafe {
        tkm_dl_logits_fwd(
            null(),
            &good.t,
            null(),
            null(),
            1.0,
            null(),
            null(),
            &th.t,
            null(),
            null(),
            null(),
            null_mut(),
        )
    };
    assert_eq!(s, TKM_STATUS_NULL_POINTER);
    let mut m = [1u8; ROWS];
    let badmask = T::new(m.as_mut_ptr() as *mut c_void, 0, 8, &[ROWS as i64], None);
    let s = unsafe {
        tkm_dl_logits_fwd(
            null(),
            &good.t,
            null(),
            &badmask.t,
            1.0,
            null(),
            &tl.t,
            &th.t,
            null(),
            null(),
            null(),
            null_mut(),
        )
    };
    assert_eq!(s, TKM_STATUS_BAD_DTYPE);
    // Nothing was written by any failing call after the first success.
    assert!(l.iter().all(|v| v.is_finite()));

    // Zero rows with NULL data are valid, and logp with (empty) targets is accepted.
    let empty = T::new(null_mut(), 2, 32, &[0, V as i64], None);
    let e = T::new(null_mut(), 2, 32, &[0], None);
    let ti = T::new(null_mut(), 0, 32, &[0], None);
    let s = unsafe {
        tkm_dl_logits_fwd(null(), &empty.t, &ti.t, null(), 1.0, null(), &e.t, &e.t, &e.t, null(), null(), null_mut())
    };
    assert_eq!(s, TKM_STATUS_OK);
}

/// kDLCUDA tensors go to the CUDA path: in a library built without it, every DLPack entry
/// point says so before touching any memory (the data pointers here are not even valid);
/// tensors on two devices are a mismatch whatever the build.
#[test]
fn cuda_tensors_need_the_cuda_path_and_one_device() {
    let bogus = 0x10 as *mut c_void; // never dereferenced
    let cuda = |shape: &[i64], id: i32| {
        let mut t = T::new(bogus, 2, 32, shape, None);
        t.t.device = DLDevice { device_type: CUDA, device_id: id };
        t
    };
    let (x, v) = (cuda(&[ROWS as i64, V as i64], 0), cuda(&[ROWS as i64], 0));
    let (m, l, s, h, g) = (
        cuda(&[ROWS as i64], 0),
        cuda(&[ROWS as i64], 0),
        cuda(&[ROWS as i64], 0),
        cuda(&[ROWS as i64], 0),
        cuda(&[ROWS as i64], 0),
    );
    let dx = cuda(&[ROWS as i64, V as i64], 0);
    assert_eq!(tkm_cuda_available(), TKM_STATUS_CUDA_UNAVAILABLE);
    unsafe {
        assert_eq!(
            tkm_dl_logits_fwd(
                null(),
                &x.t,
                null(),
                null(),
                1.0,
                null(),
                &v.t,
                &h.t,
                null(),
                null(),
                null(),
                null_mut()
            ),
            TKM_STATUS_CUDA_UNAVAILABLE
        );
        assert_eq!(
            tkm_dl_logits_bwd(null(), &x.t, null(), null(), 1.0, null(), &m.t, &l.t, &h.t, &g.t, null(), null(), &dx.t),
            TKM_STATUS_CUDA_UNAVAILABLE
        );
        assert_eq!(
            tkm_dl_logits_bwd_inplace(
                null(),
                &x.t,
                null(),
                null(),
                1.0,
                null(),
                &m.t,
                &l.t,
                &h.t,
                &g.t,
                null(),
                null()
            ),
            TKM_STATUS_CUDA_UNAVAILABLE
        );
        // A second CUDA device among the tensors, or one CPU tensor: a mismatch.
        let other = cuda(&[ROWS as i64], 1);
        assert_eq!(
            tkm_dl_logits_fwd(
                null(),
                &x.t,
                null(),
                null(),
                1.0,
                null(),
                &v.t,
                &other.t,
                null(),
                null(),
                null(),
                null_mut()
            ),
            TKM_STATUS_DEVICE_MISMATCH
        );
        let mut host = vec![0f32; ROWS];
        let cpu = T::f32v(&mut host);
        assert_eq!(
            tkm_dl_logits_bwd(null(), &x.t, null(), null(), 1.0, &cpu.t, &m.t, &l.t, &h.t, &g.t, null(), null(), &dx.t),
            TKM_STATUS_DEVICE_MISMATCH
        );
        assert_eq!(
            tkm_dl_logits_bwd_inplace(
                null(),
                &x.t,
                null(),
                null(),
                1.0,
                null(),
                &m.t,
                &s.t,
                &cpu.t,
                &g.t,
                null(),
                null()
            ),
            TKM_STATUS_DEVICE_MISMATCH
        );
        assert!(host.iter().all(|&v| v == 0.0));
    }
}
