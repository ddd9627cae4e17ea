//! TW-GRPO entry points against the core crate, bitwise, and their error statuses.

use core::ptr::{null, null_mut};

use tokenmath::*;
use tokenmath_core::logits::{stats_fwd, FwdOut, RowInputs};
use tokenmath_core::seed::tw_grpo::{self as tw, SavedLogSoftmax, TwGrpoCfg};
use tokenmath_core::{Exec, Mat};
use tokenmath_testutil::{bits, rand_f32, untouched, POISON};

#[test]
fn weights_loss_and_rewards_match_core() {
    let (g, t, vocab, stride) = (3usize, 4usize, 41usize, 45usize);
    let rows = 2 * g * t;
    let x = rand_f32(rows * stride, 9, 5.0);
    let mask: Vec<u8> = (0..rows).map(|i| u8::from(i % 7 != 3)).collect();
    let xm = Mat::new(&x, rows, vocab, stride).unwrap();
    let (mut lse, mut h, mut mx, mut ls) = (vec![0.0; rows], vec![0.0; rows], vec![0.0; rows], vec![0.0; rows]);
    let out = FwdOut { lse: &mut lse, entropy: &mut h, logp: None, max: Some(&mut mx), log_sum: Some(&mut ls) };
    stats_fwd(Exec::new(), xm, &RowInputs { row_mask: Some(&mask), ..Default::default() }, out).unwrap();
    let cfg = TwGrpoCfg { group_size: g, alpha: 1.5, clamp: 9.0 };
    let mut want = vec![0.0f32; rows];
    let saved = SavedLogSoftmax { max: &mx, log_sum: &ls };
    tw::tw_grpo_token_weights(Exec::new(), xm, saved, &mask, t, &cfg, &mut want).unwrap();

    let mut o = tkm_tw_grpo_options { struct_size: 0, group_size: 0, alpha: 0.0, clamp: 0.0 };
    assert_eq!(unsafe { tkm_tw_grpo_options_init(&mut o) }, TKM_STATUS_OK);
    assert_eq!((o.group_size, o.alpha, o.clamp), (8, 1.70, 11.0));
    o.group_size = g as u32;
    o.alpha = 1.5;
    o.clamp = 9.0;
    let mut w = vec![POISON; rows];
    let mut nonfinite = 7usize;
    let s = unsafe {
        tkm_tw_grpo_token_weights(
            null(),
            TKM_DTYPE_F32,
            x.as_ptr().cast(),
            rows,
            vocab,
            stride,
            mx.as_ptr(),
            ls.as_ptr(),
            mask.as_ptr(),
            t,
            &o,
            w.as_mut_ptr(),
            &mut nonfinite,
        )
    };
    assert_eq!(s, TKM_STATUS_OK);
    assert_eq!(bits(&w), bits(&want));
    assert_eq!(nonfinite, 0);

    let l = rand_f32(rows, 11, 2.0);
    let mut gr = vec![POISON; rows];
    let mut gwant = vec![0.0; rows];
    let lwant = tw::tw_grpo_loss(Exec::new(), &mask, &l, &w, Some(&mut gwant)).unwrap();
    let mut lv = POISON;
    let s = unsafe { tkm_tw_grpo_loss(null(), mask.as_ptr(), l.as_ptr(), w.as_ptr(), rows, &mut lv, gr.as_mut_ptr()) };
    assert_eq!(s, TKM_STATUS_OK);
    assert_eq!((lv.to_bits(), bits(&gr)), (lwant.to_bits(), bits(&gwant)));

    let (c, sol) = ("<think>a</think> <answer>B,A</answer>", "<answer>A,B,C</answer>");
    let mut r = POISON;
    let st = unsafe { tkm_tw_grpo_soft_multichoice_reward(c.as_ptr(), c.len(), sol.as_ptr(), sol.len(), 0, &mut r) };
    assert_eq!((st, r), (TKM_STATUS_OK, tw::soft_multichoice_reward(c, sol, false)));
    assert!((r - 2.0 / 3.0).abs() < 1e-7);
    let st = unsafe { tkm_tw_grpo_format_reward(c.as_ptr(), c.len(), &mut r) };
    assert_eq!((st, r), (TKM_STATUS_OK, 1.0));

    // Errors write nothing.
    let mut w2 = vec![POISON; rows];
    let call = |dtype: u32, t: usize, o: &tkm_tw_grpo_options, w2: &mut [f32]| unsafe {
        tkm_tw_grpo_token_weights(
            null(),
            dtype,
            x.as_ptr().cast(),
            rows,
            vocab,
            stride,
            mx.as_ptr(),
            ls.as_ptr(),
            mask.as_ptr(),
            t,
            o,
            w2.as_mut_ptr(),
            null_mut(),
        )
    };
    assert_eq!(call(0, t, &o, &mut w2), TKM_STATUS_BAD_DTYPE);
    assert_eq!(call(TKM_DTYPE_F32, 5, &o, &mut w2), TKM_STATUS_LENGTH_MISMATCH);
    assert_eq!(call(TKM_DTYPE_F32, 0, &o, &mut w2), TKM_STATUS_INVALID_ARGUMENT);
    let bad = tkm_tw_grpo_options { group_size: 5, ..o };
    assert_eq!(call(TKM_DTYPE_F32, t, &bad, &mut w2), TKM_STATUS_INVALID_ARGUMENT);
    assert!(untouched(&w2));
}
