//! Policy-loss entry points against the core crate, bitwise, and their error statuses.

use core::ptr::{null, null_mut};
use std::mem::size_of;

use tokenmath::policy::*;
use tokenmath::*;
use tokenmath_core::policy_loss::{self as pl, AggMode, AggNorm, BatchShape, ClipCfg, LossOut, PolicyInputs};

fn rand_f32(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed | 1;
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

#[test]
fn ppo_clip_and_aggregation_match_core() {
    let (rows, cols) = (6usize, 37usize);
    let n = rows * cols;
    let logp = rand_f32(n, 1, 2.0);
    let old: Vec<f32> = logp.iter().zip(rand_f32(n, 2, 0.5)).map(|(a, d)| a + d).collect();
    let adv = rand_f32(n, 3, 1.5);
    let mask: Vec<u8> = (0..n).map(|i| u8::from(i % cols < 5 + (i / cols) * 6)).collect();
    let isw: Vec<f32> = rand_f32(n, 4, 0.5).iter().map(|v| 1.0 + v).collect();

    let mut init =
        tkm_ppo_clip_options { struct_size: 0, eps_low: 0.0, eps_high: 0.0, dual_clip_c: 0.0, log_ratio_clamp: 0.0 };
    assert_eq!(unsafe { tkm_ppo_clip_options_init(&mut init) }, TKM_STATUS_OK);
    assert_eq!(init.struct_size, size_of::<tkm_ppo_clip_options>());
    let cases = [
        (init, ClipCfg::default()),
        (tkm_ppo_clip_options { eps_high: 0.28, ..init }, ClipCfg::dapo()),
        (tkm_ppo_clip_options { dual_clip_c: 0.0, log_ratio_clamp: 0.0, ..init }, ClipCfg::trl()),
    ];
    for (opts, cfg) in cases {
        for w in [None, Some(&isw[..])] {
            let inp = PolicyInputs {
                shape: BatchShape::new(rows, cols),
                logp: &logp,
                old_logp: &old,
                adv: &adv,
                mask: &mask,
                is_weights: w,
            };
            let (mut l, mut g) = (vec![0f32; n], vec![0f32; n]);
            let st = pl::ppo_clip_loss(&inp, &cfg, LossOut { loss: &mut l, dloss_dlogp: &mut g }).unwrap();
            let (mut l2, mut g2) = (vec![9f32; n], vec![9f32; n]);
            let mut st2 = tkm_policy_stats::default();
            let s = unsafe {
                tkm_ppo_clip_loss(
                    logp.as_ptr(),
                    old.as_ptr(),
                    adv.as_ptr(),
                    mask.as_ptr(),
                    w.map_or(null(), |w| w.as_ptr()),
                    rows,
                    cols,
                    &opts,
                    l2.as_mut_ptr(),
                    g2.as_mut_ptr(),
                    &mut st2,
                )
            };
            assert_eq!(s, TKM_STATUS_OK);
            assert_eq!(bits(&l2), bits(&l));
            assert_eq!(bits(&g2), bits(&g));
            assert_eq!(
                (
                    st2.valid_tokens,
                    st2.clipped_high,
                    st2.clipped_low,
                    st2.clipped_dual,
                    st2.neg_log_ratio_sum.to_bits()
                ),
                (st.valid_tokens, st.clipped_high, st.clipped_low, st.clipped_dual, st.neg_log_ratio_sum.to_bits())
            );
        }
    }

    // Aggregation, every mode, default and explicit denominators.
    let loss = rand_f32(n, 5, 1.0);
    let mut norm = tkm_agg_norm { struct_size: 0, global_tokens: 9, global_seqs: 9, dp_size: 9, scale_factor: 9.0 };
    assert_eq!(unsafe { tkm_agg_norm_init(&mut norm) }, TKM_STATUS_OK);
    let explicit = tkm_agg_norm { global_tokens: 500, global_seqs: 12, dp_size: 4, scale_factor: 64.0, ..norm };
    let core_explicit =
        AggNorm { global_tokens: Some(500), global_seqs: Some(12), dp_size: 4, scale_factor: Some(64.0) };
    for (code, mode) in [
        (TKM_AGG_TOKEN_MEAN, AggMode::TokenMean),
        (TKM_AGG_SEQ_MEAN_TOKEN_SUM, AggMode::SeqMeanTokenSum),
        (TKM_AGG_SEQ_MEAN_TOKEN_MEAN, AggMode::SeqMeanTokenMean),
        (TKM_AGG_SEQ_MEAN_TOKEN_SUM_NORM, AggMode::SeqMeanTokenSumNorm),
    ] {
        for (abi, core_norm) in [
            (&norm as *const tkm_agg_norm, AggNorm::default()),
            (null(), AggNorm::default()),
            (&explicit, core_explicit),
        ] {
            let shape = BatchShape::new(rows, cols);
            let want = pl::agg_loss(&loss, &mask, shape, mode, &core_norm).unwrap();
            let mut got = 0f32;
            assert_eq!(
                unsafe { tkm_agg_loss(loss.as_ptr(), mask.as_ptr(), rows, cols, code, abi, &mut got) },
                TKM_STATUS_OK
            );
            assert_eq!(got.to_bits(), want.to_bits());
            let mut ww = vec![0f32; n];
            pl::agg_weights(&mask, shape, mode, &core_norm, &mut ww).unwrap();
            let mut w2 = vec![7f32; n];
            assert_eq!(
                unsafe { tkm_agg_weights(mask.as_ptr(), rows, cols, code, abi, w2.as_mut_ptr()) },
                TKM_STATUS_OK
            );
            assert_eq!(bits(&w2), bits(&ww));
        }
    }
}

#[test]
fn policy_errors_write_nothing() {
    let (rows, cols) = (2usize, 3usize);
    let v = [0.5f32; 6];
    let mask = [1u8; 6];
    let mut l = vec![-7f32; 6];
    let mut g = vec![-7f32; 6];
    let mut opts =
        tkm_ppo_clip_options { struct_size: 0, eps_low: 0.0, eps_high: 0.0, dual_clip_c: 0.0, log_ratio_clamp: 0.0 };
    assert_eq!(unsafe { tkm_ppo_clip_options_init(null_mut()) }, TKM_STATUS_NULL_POINTER);
    assert_eq!(unsafe { tkm_agg_norm_init(null_mut()) }, TKM_STATUS_NULL_POINTER);
    unsafe { tkm_ppo_clip_options_init(&mut opts) };
    let call = |o: &tkm_ppo_clip_options, l: &mut [f32], g: &mut [f32], adv: *const f32| unsafe {
        tkm_ppo_clip_loss(
            v.as_ptr(),
            v.as_ptr(),
            adv,
            mask.as_ptr(),
            null(),
            rows,
            cols,
            o,
            l.as_mut_ptr(),
            g.as_mut_ptr(),
            null_mut(),
        )
    };
    for bad in [
        tkm_ppo_clip_options { eps_low: -0.1, ..opts },
        tkm_ppo_clip_options { eps_high: f32::NAN, ..opts },
        tkm_ppo_clip_options { dual_clip_c: 0.5, ..opts },
        tkm_ppo_clip_options { log_ratio_clamp: -1.0, ..opts },
    ] {
        assert_eq!(call(&bad, &mut l, &mut g, v.as_ptr()), TKM_STATUS_INVALID_ARGUMENT);
    }
    assert_eq!(call(&opts, &mut l, &mut g, null()), TKM_STATUS_NULL_POINTER);
    let old = tkm_ppo_clip_options { struct_size: 12, eps_low: 0.3, eps_high: -5.0, ..opts };
    assert_eq!(call(&old, &mut l, &mut g, v.as_ptr()), TKM_STATUS_OK); // eps_high not read: default
    let bad_size = tkm_ppo_clip_options { struct_size: 13, ..opts };
    let mut l3 = vec![-7f32; 6];
    assert_eq!(call(&bad_size, &mut l3, &mut g, v.as_ptr()), TKM_STATUS_BAD_STRUCT_SIZE);
    assert!(l3.iter().all(|&x| x == -7.0));

    let mut out = -7f32;
    assert_eq!(
        unsafe { tkm_agg_loss(v.as_ptr(), mask.as_ptr(), rows, cols, 9, null(), &mut out) },
        TKM_STATUS_INVALID_ARGUMENT
    );
    let mut norm = tkm_agg_norm { struct_size: 0, global_tokens: 0, global_seqs: 0, dp_size: 0, scale_factor: 0.0 };
    unsafe { tkm_agg_norm_init(&mut norm) };
    norm.dp_size = 0;
    assert_eq!(
        unsafe { tkm_agg_loss(v.as_ptr(), mask.as_ptr(), rows, cols, TKM_AGG_TOKEN_MEAN, &norm, &mut out) },
        TKM_STATUS_INVALID_ARGUMENT
    );
    norm.dp_size = 1;
    norm.global_tokens = 2; // below the local count (6)
    assert_eq!(
        unsafe { tkm_agg_loss(v.as_ptr(), mask.as_ptr(), rows, cols, TKM_AGG_TOKEN_MEAN, &norm, &mut out) },
        TKM_STATUS_INVALID_ARGUMENT
    );
    assert_eq!(out, -7.0);
    let mut w = vec![-7f32; 6];
    assert_eq!(
        unsafe { tkm_agg_weights(mask.as_ptr(), usize::MAX, 2, TKM_AGG_TOKEN_MEAN, null(), w.as_mut_ptr()) },
        TKM_STATUS_SIZE_OVERFLOW
    );
    assert!(w.iter().all(|&x| x == -7.0));
}
