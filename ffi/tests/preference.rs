//! The preference entry points agree bitwise with the core kernels (every backend, 1 and 2
//! threads for the cDPO scores) and write nothing on error.

use core::ffi::c_void;
use core::ptr::{null, null_mut};

use tokenmath::*;
use tokenmath_core::preference::{cdpo, dpo, t_reg};
use tokenmath_core::{bf16, Backend, Exec, Mat};

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

fn exec_opts(threads: u32, backend: u32) -> tkm_exec_options {
    let mut o =
        tkm_exec_options { struct_size: 0, threads: 0, backend: 0, cuda_stream: core::ptr::null_mut(), gpu_mode: 0 };
    assert_eq!(unsafe { tkm_exec_options_init(&mut o) }, TKM_STATUS_OK);
    o.threads = threads;
    o.backend = backend;
    o
}

fn backend_code(b: Backend) -> u32 {
    match b.name() {
        "portable" => TKM_BACKEND_PORTABLE,
        "avx2-fma" => TKM_BACKEND_AVX2_FMA,
        _ => TKM_BACKEND_AVX512,
    }
}

#[test]
fn cdpo_scores_are_bitwise_core_for_every_backend_thread_count_and_dtype() {
    let (rows, vocab, stride) = (5usize, 4100usize, 4103usize);
    let mut p = rand_f32(rows * stride, 1, 6.0);
    let q = rand_f32(rows * stride, 2, 6.0);
    p[stride + 11] = f32::NEG_INFINITY;
    let tg: Vec<u32> = (0..rows as u32).map(|r| r * 811 % vocab as u32).collect();
    let mut want = vec![0f32; rows];
    cdpo::cdpo_ce_scores(
        Exec::new(),
        1.0,
        Mat::new(&p, rows, vocab, stride).unwrap(),
        Mat::new(&q, rows, vocab, stride).unwrap(),
        &tg,
        &mut want,
    )
    .unwrap();
    let (pb, qb): (Vec<bf16>, Vec<bf16>) =
        (p.iter().map(|&x| bf16::from_f32(x)).collect(), q.iter().map(|&x| bf16::from_f32(x)).collect());
    let mut want_b = vec![0f32; rows];
    cdpo::cdpo_ce_scores(
        Exec::new(),
        1.0,
        Mat::new(&pb, rows, vocab, stride).unwrap(),
        Mat::new(&qb, rows, vocab, stride).unwrap(),
        &tg,
        &mut want_b,
    )
    .unwrap();
    for b in Backend::all_supported() {
        for threads in [1, 2] {
            let o = exec_opts(threads, backend_code(b));
            let mut got = vec![f32::NAN; rows];
            let mut nf = 7usize;
            let s = unsafe {
                tkm_cdpo_ce_scores(
                    &o,
                    TKM_DTYPE_F32,
                    p.as_ptr() as *const c_void,
                    stride,
                    q.as_ptr() as *const c_void,
                    stride,
                    rows,
                    vocab,
                    tg.as_ptr(),
                    1.0,
                    got.as_mut_ptr(),
                    &mut nf,
                )
            };
            assert_eq!(s, TKM_STATUS_OK);
            assert_eq!(nf, 0);
            assert_eq!(
                got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            );
            let s = unsafe {
                tkm_cdpo_ce_scores(
                    &o,
                    TKM_DTYPE_BF16,
                    pb.as_ptr() as *const c_void,
                    stride,
                    qb.as_ptr() as *const c_void,
                    stride,
                    rows,
                    vocab,
                    tg.as_ptr(),
                    1.0,
                    got.as_mut_ptr(),
                    null_mut(),
                )
            };
            assert_eq!(s, TKM_STATUS_OK);
            assert_eq!(
                got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                want_b.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            );
        }
    }
    // Errors write nothing.
    let mut got = vec![-1.0f32; rows];
    let bad = [5u32, 0, 0, 0, vocab as u32];
    let s = unsafe {
        tkm_cdpo_ce_scores(
            null(),
            TKM_DTYPE_F32,
            p.as_ptr() as *const c_void,
            stride,
            q.as_ptr() as *const c_void,
            stride,
            rows,
            vocab,
            bad.as_ptr(),
            1.0,
            got.as_mut_ptr(),
            null_mut(),
        )
    };
    assert_eq!(s, TKM_STATUS_LABEL_OUT_OF_RANGE);
    assert!(got.iter().all(|&x| x == -1.0));
}

#[test]
fn pair_and_token_losses_are_bitwise_core() {
    let n = 9;
    let (w, l) = (rand_f32(n, 3, 20.0), rand_f32(n, 4, 20.0));
    let (mut loss, mut g, mut m) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
    let mut opts = tkm_dpo_options { struct_size: 0, beta: 0.0, label_smoothing: 0.0 };
    unsafe { tkm_dpo_options_init(&mut opts) };
    opts.label_smoothing = 0.2;
    assert_eq!(
        unsafe {
            tkm_dpo_loss(null(), w.as_ptr(), l.as_ptr(), n, &opts, loss.as_mut_ptr(), g.as_mut_ptr(), m.as_mut_ptr())
        },
        TKM_STATUS_OK
    );
    let (mut cl, mut cg, mut cm) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
    dpo::dpo_loss(
        Exec::new(),
        &dpo::DpoCfg { beta: 0.1, label_smoothing: 0.2 },
        &w,
        &l,
        dpo::PairOut { loss: &mut cl, dl_dh: &mut cg, margin: Some(&mut cm) },
    )
    .unwrap();
    assert_eq!((loss.clone(), g.clone(), m.clone()), (cl, cg, cm));

    let (mut tl, mut tg, mut tr, mut tw) = (vec![0f32; n], vec![0f32; n], vec![0f32; n], vec![0f32; n]);
    assert_eq!(
        unsafe {
            tkm_treg_loss(
                null(),
                m.as_ptr(),
                w.as_ptr(),
                l.as_ptr(),
                n,
                null(),
                tl.as_mut_ptr(),
                tg.as_mut_ptr(),
                tr.as_mut_ptr(),
                tw.as_mut_ptr(),
            )
        },
        TKM_STATUS_OK
    );
    let (mut a, mut b, mut c, mut d) = (vec![0f32; n], vec![0f32; n], vec![0f32; n], vec![0f32; n]);
    t_reg::treg_loss(
        Exec::new(),
        &t_reg::TregCfg::default(),
        &m,
        &w,
        &l,
        t_reg::TregOut { loss: &mut a, dl_dh: &mut b, dl_dreg: &mut c, weight: Some(&mut d) },
    )
    .unwrap();
    assert_eq!((tl, tg, tr, tw), (a, b, c, d));

    let (rows, t) = (3usize, 4usize);
    let nt = rows * t;
    let mask: Vec<u8> = (0..nt).map(|i| (i % 3 != 1) as u8).collect();
    let (dw, dl, v) = (rand_f32(nt, 5, 2.0), rand_f32(nt, 6, 2.0), rand_f32(nt, 7, 0.5));
    let (mut gw, mut gl, mut lv) = (vec![0f32; nt], vec![0f32; nt], 0f32);
    assert_eq!(
        unsafe {
            tkm_cdpo_loss(
                null(),
                mask.as_ptr(),
                mask.as_ptr(),
                dw.as_ptr(),
                dl.as_ptr(),
                null(),
                v.as_ptr(),
                rows,
                t,
                null(),
                &mut lv,
                gw.as_mut_ptr(),
                gl.as_mut_ptr(),
            )
        },
        TKM_STATUS_OK
    );
    let (mut cw, mut cl2) = (vec![0f32; nt], vec![0f32; nt]);
    let x = cdpo::CdpoInputs { t, mask_w: &mask, mask_l: &mask, dw: &dw, dl: &dl, c: None, v: &v };
    let want = cdpo::cdpo_loss(Exec::new(), &cdpo::CdpoCfg::default(), &x, &mut cw, &mut cl2).unwrap();
    assert_eq!((lv, gw, gl), (want, cw, cl2));

    let mut pk = 0f64;
    assert_eq!(unsafe { tkm_pass_at_k(1_000_000, 500, 64, &mut pk) }, TKM_STATUS_OK);
    assert_eq!(pk, cdpo::pass_at_k(1_000_000, 500, 64).unwrap());
}

#[test]
fn tvm_entry_points_are_core() {
    use tokenmath_core::preference::tvm;
    let tokens = [1u32, 2, 3, 1, 2, 4, 5, 1];
    let offsets = [0usize, 3, 6, 7, 8];
    let outcome = [1u8, 0, 1, 0];
    let mut got = vec![f32::NAN; 8];
    assert_eq!(
        unsafe {
            tkm_tvm_prefix_value_labels(tokens.as_ptr(), 8, offsets.as_ptr(), outcome.as_ptr(), 4, got.as_mut_ptr())
        },
        TKM_STATUS_OK
    );
    let mut want = vec![0f32; 8];
    tvm::tvm_prefix_value_labels(&tokens, &offsets, &outcome, &mut [0; 8], &mut want).unwrap();
    assert_eq!(got, want);
    assert_eq!(want[0], 1.0 / 3.0);
    let (x, y, m) = (rand_f32(6, 9, 3.0), rand_f32(6, 10, 0.5), [1u8, 0, 1, 1, 1, 0]);
    let y: Vec<f32> = y.iter().map(|v| v + 0.5).collect();
    let (mut g, mut l) = (vec![0f32; 6], 0f32);
    assert_eq!(
        unsafe {
            tkm_value_loss(null(), m.as_ptr(), x.as_ptr(), y.as_ptr(), 6, TKM_VALUE_LOSS_BCE, &mut l, g.as_mut_ptr())
        },
        TKM_STATUS_OK
    );
    let mut cg = vec![0f32; 6];
    assert_eq!(l, tvm::value_loss(Exec::new(), tvm::ValueLoss::Bce, &m, &x, &y, &mut cg).unwrap());
    assert_eq!(g, cg);
}
