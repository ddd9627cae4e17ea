//! HAPO entry points against the core crate, bitwise.

use core::ptr::null;

use tokenmath::*;
use tokenmath_core::policy_loss::{BatchShape, LossOut, PolicyInputs};
use tokenmath_core::seed::hapo::{self as hp, HapoAdvCfg, HapoNormCfg, HapoSign};
use tokenmath_core::{Exec, Mat};
use tokenmath_testutil::{bits, rand_f32, POISON};

#[test]
fn entry_points_match_core() {
    let n = 24usize;
    let h: Vec<f32> = rand_f32(n, 5, 2.0).iter().map(|v| v.abs()).collect();
    let mask: Vec<u8> = (0..n).map(|i| u8::from(i % 5 != 2)).collect();
    let cfg = HapoNormCfg { sign: HapoSign::Intended, ..Default::default() };
    let (mut want, mut scratch) = (vec![0.0f32; n], vec![0.0f64; n]);
    let st = hp::hapo_entropy_norm(Exec::new(), &h, Some(&mask), &cfg, &mut scratch, &mut want).unwrap();
    let mut got = vec![POISON; n];
    let mut nrm = tkm_hapo_norm::default();
    let s = unsafe {
        tkm_hapo_entropy_norm(
            null(),
            h.as_ptr(),
            mask.as_ptr(),
            n,
            0.8,
            1e-8,
            TKM_HAPO_SIGN_INTENDED,
            got.as_mut_ptr(),
            &mut nrm,
        )
    };
    assert_eq!(s, TKM_STATUS_OK);
    assert_eq!(bits(&got), bits(&want));
    assert_eq!((nrm.pivot, nrm.std, nrm.scale_pos, nrm.scale_neg), (st.pivot, st.std, st.scale_pos, st.scale_neg));

    let (rows, vocab) = (4usize, 19usize);
    let x = rand_f32(rows * vocab, 6, 4.0);
    let base = [1.0f32, 0.7, 1.2, 0.9];
    let mut tw = [0.0f32; 4];
    hp::hapo_adaptive_temperature(
        Exec::new(),
        Mat::dense(&x, rows, vocab).unwrap(),
        &base,
        Some(&st),
        0.05,
        HapoSign::Intended,
        &mut tw,
    )
    .unwrap();
    let mut tg = [POISON; 4];
    let s = unsafe {
        tkm_hapo_adaptive_temperature(
            null(),
            TKM_DTYPE_F32,
            x.as_ptr().cast(),
            rows,
            vocab,
            vocab,
            base.as_ptr(),
            &nrm,
            0.05,
            TKM_HAPO_SIGN_INTENDED,
            tg.as_mut_ptr(),
            core::ptr::null_mut(),
        )
    };
    assert_eq!((s, bits(&tg)), (TKM_STATUS_OK, bits(&tw)));

    let (b, t) = (6usize, 4usize);
    let r = rand_f32(b * t, 7, 1.0);
    let m: Vec<u8> = (0..b * t).map(|i| u8::from(i % 7 != 0)).collect();
    let grp = [1u32, 1, 2, 2, 2, 9];
    let mut aw = vec![0.0f32; b * t];
    hp::hapo_token_group_advantage(Exec::new(), &r, &m, t, &grp, &HapoAdvCfg::default(), &mut aw).unwrap();
    let mut ag = vec![POISON; b * t];
    let s = unsafe {
        tkm_hapo_token_group_advantage(null(), r.as_ptr(), m.as_ptr(), grp.as_ptr(), b, t, null(), ag.as_mut_ptr())
    };
    assert_eq!((s, bits(&ag)), (TKM_STATUS_OK, bits(&aw)));

    let (mut lo, mut hi) = (vec![0.0f32; n], vec![0.0f32; n]);
    let s =
        unsafe { tkm_hapo_adaptive_clip(null(), got.as_ptr(), n, 0.2, 0.28, 1.0, lo.as_mut_ptr(), hi.as_mut_ptr()) };
    assert_eq!(s, TKM_STATUS_OK);
    let logp = rand_f32(n, 8, 1.0);
    let old: Vec<f32> = logp.iter().zip(rand_f32(n, 9, 0.3)).map(|(a, d)| a + d).collect();
    let ratio: Vec<f32> = logp.iter().zip(&old).map(|(a, b)| (a - b).exp()).collect();
    let adv = rand_f32(n, 10, 1.0);
    let mut a2 = vec![POISON; n];
    let s = unsafe {
        tkm_hapo_redistribute(
            null(),
            adv.as_ptr(),
            got.as_ptr(),
            ratio.as_ptr(),
            lo.as_ptr(),
            hi.as_ptr(),
            n,
            1.0,
            a2.as_mut_ptr(),
        )
    };
    assert_eq!(s, TKM_STATUS_OK);
    let mut a2w = vec![0.0f32; n];
    hp::hapo_redistribute(Exec::new(), &adv, &got, &ratio, &lo, &hi, 1.0, &mut a2w).unwrap();
    assert_eq!(bits(&a2), bits(&a2w));
    let inp = PolicyInputs {
        shape: BatchShape::new(2, 12),
        logp: &logp,
        old_logp: &old,
        adv: &a2,
        mask: &mask,
        is_weights: None,
    };
    let (mut lw, mut gw) = (vec![0.0f32; n], vec![0.0f32; n]);
    let sw = hp::hapo_loss(Exec::new(), &inp, &lo, &hi, Some(10.0), LossOut { loss: &mut lw, dloss_dlogp: &mut gw })
        .unwrap();
    let (mut l, mut g) = (vec![POISON; n], vec![POISON; n]);
    let mut st = tkm_hapo_stats::default();
    let s = unsafe {
        tkm_hapo_loss(
            null(),
            logp.as_ptr(),
            old.as_ptr(),
            a2.as_ptr(),
            mask.as_ptr(),
            null(),
            lo.as_ptr(),
            hi.as_ptr(),
            2,
            12,
            10.0,
            l.as_mut_ptr(),
            g.as_mut_ptr(),
            &mut st,
        )
    };
    assert_eq!(s, TKM_STATUS_OK);
    assert_eq!((bits(&l), bits(&g)), (bits(&lw), bits(&gw)));
    assert_eq!((st.valid, st.clipped, st.dual_clipped), (sw.valid, sw.clipped, sw.dual_clipped));
}
