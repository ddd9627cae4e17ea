//! Policy-loss entry points against the core crate, bitwise, and their error statuses.

use core::ptr::{null, null_mut};
use std::mem::size_of;

use tokenmath::policy::*;
use tokenmath::*;
use tokenmath_core::policy_loss::{
    self as pl, AggMode, AggNorm, BatchShape, CispoCfg, ClipCfg, GspoCfg, KlCfg, KlKind, KlStats, KlTerm, LossOut,
    PolicyInputs, PolicyStats, SapoCfg, TisCfg, TisLevel,
};
use tokenmath_core::{Backend, Exec};
use tokenmath_testutil::{bits, rand_f32, untouched, POISON};

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
            let st = pl::ppo_clip_loss(Exec::new(), &inp, &cfg, LossOut { loss: &mut l, dloss_dlogp: &mut g }).unwrap();
            let (mut l2, mut g2) = (vec![POISON; n], vec![POISON; n]);
            let mut st2 = tkm_policy_stats::default();
            let s = unsafe {
                tkm_ppo_clip_loss(
                    null(),
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
            let want = pl::agg_loss(Exec::new(), shape, &mask, &loss, mode, &core_norm).unwrap();
            let mut got = 0f32;
            assert_eq!(
                unsafe { tkm_agg_loss(null(), loss.as_ptr(), mask.as_ptr(), rows, cols, code, abi, &mut got) },
                TKM_STATUS_OK
            );
            assert_eq!(got.to_bits(), want.to_bits());
            let mut ww = vec![0f32; n];
            pl::agg_weights(Exec::new(), shape, &mask, mode, &core_norm, &mut ww).unwrap();
            let mut w2 = vec![7f32; n];
            assert_eq!(
                unsafe { tkm_agg_weights(null(), mask.as_ptr(), rows, cols, code, abi, w2.as_mut_ptr()) },
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
    let mut l = vec![POISON; 6];
    let mut g = vec![POISON; 6];
    let mut opts =
        tkm_ppo_clip_options { struct_size: 0, eps_low: 0.0, eps_high: 0.0, dual_clip_c: 0.0, log_ratio_clamp: 0.0 };
    assert_eq!(unsafe { tkm_ppo_clip_options_init(null_mut()) }, TKM_STATUS_NULL_POINTER);
    assert_eq!(unsafe { tkm_agg_norm_init(null_mut()) }, TKM_STATUS_NULL_POINTER);
    unsafe { tkm_ppo_clip_options_init(&mut opts) };
    let call = |o: &tkm_ppo_clip_options, l: &mut [f32], g: &mut [f32], adv: *const f32| unsafe {
        tkm_ppo_clip_loss(
            null(),
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
    let mut l3 = vec![POISON; 6];
    assert_eq!(call(&bad_size, &mut l3, &mut g, v.as_ptr()), TKM_STATUS_BAD_STRUCT_SIZE);
    assert!(untouched(&l3));

    let mut out = POISON;
    assert_eq!(
        unsafe { tkm_agg_loss(null(), v.as_ptr(), mask.as_ptr(), rows, cols, 9, null(), &mut out) },
        TKM_STATUS_INVALID_ARGUMENT
    );
    let mut norm = tkm_agg_norm { struct_size: 0, global_tokens: 0, global_seqs: 0, dp_size: 0, scale_factor: 0.0 };
    unsafe { tkm_agg_norm_init(&mut norm) };
    norm.dp_size = 0;
    assert_eq!(
        unsafe { tkm_agg_loss(null(), v.as_ptr(), mask.as_ptr(), rows, cols, TKM_AGG_TOKEN_MEAN, &norm, &mut out) },
        TKM_STATUS_INVALID_ARGUMENT
    );
    norm.dp_size = 1;
    norm.global_tokens = 2; // below the local count (6)
    assert_eq!(
        unsafe { tkm_agg_loss(null(), v.as_ptr(), mask.as_ptr(), rows, cols, TKM_AGG_TOKEN_MEAN, &norm, &mut out) },
        TKM_STATUS_INVALID_ARGUMENT
    );
    assert_eq!(out.to_bits(), POISON.to_bits());
    let mut w = vec![POISON; 6];
    assert_eq!(
        unsafe { tkm_agg_weights(null(), mask.as_ptr(), usize::MAX, 2, TKM_AGG_TOKEN_MEAN, null(), w.as_mut_ptr()) },
        TKM_STATUS_SIZE_OVERFLOW
    );
    assert!(untouched(&w));
}

// ---------------------------------------------------------------------------------------
// PPO + KL, the fused step, GSPO / CISPO / SAPO, KL, TIS, chaining and upstreams.
// ---------------------------------------------------------------------------------------

struct Batch {
    rows: usize,
    cols: usize,
    logp: Vec<f32>,
    old: Vec<f32>,
    adv: Vec<f32>,
    mask: Vec<u8>,
    isw: Vec<f32>,
    reference: Vec<f32>,
}

impl Batch {
    fn new(rows: usize, cols: usize) -> Batch {
        let n = rows * cols;
        let logp = rand_f32(n, 11, 2.0);
        let old = logp.iter().zip(rand_f32(n, 12, 0.5)).map(|(a, d)| a + d).collect();
        let reference = logp.iter().zip(rand_f32(n, 13, 0.7)).map(|(a, d)| a + d).collect();
        // Row 2 has no valid token.
        let mask = (0..n).map(|i| u8::from(i / cols != 2 && i % cols < 3 + (i / cols) * 7)).collect();
        Batch {
            rows,
            cols,
            logp,
            old,
            adv: rand_f32(n, 14, 1.5),
            mask,
            isw: rand_f32(n, 15, 0.5).iter().map(|v| 1.0 + v).collect(),
            reference,
        }
    }

    fn n(&self) -> usize {
        self.rows * self.cols
    }

    fn inputs(&self, w: bool) -> PolicyInputs<'_> {
        PolicyInputs {
            shape: BatchShape::new(self.rows, self.cols),
            logp: &self.logp,
            old_logp: &self.old,
            adv: &self.adv,
            mask: &self.mask,
            is_weights: w.then_some(&self.isw[..]),
        }
    }

    fn isw_ptr(&self, w: bool) -> *const f32 {
        if w {
            self.isw.as_ptr()
        } else {
            null()
        }
    }
}

fn pstats(s: &PolicyStats) -> (u64, u64, u64, u64, u64) {
    (s.valid_tokens, s.clipped_high, s.clipped_low, s.clipped_dual, s.neg_log_ratio_sum.to_bits())
}

fn pstats_abi(s: &tkm_policy_stats) -> (u64, u64, u64, u64, u64) {
    (s.valid_tokens, s.clipped_high, s.clipped_low, s.clipped_dual, s.neg_log_ratio_sum.to_bits())
}

fn kstats(s: &KlStats) -> (u64, u64) {
    (s.valid_tokens, s.kl_sum.to_bits())
}

fn kstats_abi(s: &tkm_kl_stats) -> (u64, u64) {
    (s.valid_tokens, s.kl_sum.to_bits())
}

const KL_KINDS: [(u32, KlKind); 6] = [
    (TKM_KL_K1, KlKind::K1),
    (TKM_KL_ABS, KlKind::Abs),
    (TKM_KL_K2, KlKind::K2),
    (TKM_KL_K3, KlKind::K3),
    (TKM_KL_K1_PLUS, KlKind::K1Plus),
    (TKM_KL_K3_PLUS, KlKind::K3Plus),
];

const AGG_MODES: [(u32, AggMode); 4] = [
    (TKM_AGG_TOKEN_MEAN, AggMode::TokenMean),
    (TKM_AGG_SEQ_MEAN_TOKEN_SUM, AggMode::SeqMeanTokenSum),
    (TKM_AGG_SEQ_MEAN_TOKEN_MEAN, AggMode::SeqMeanTokenMean),
    (TKM_AGG_SEQ_MEAN_TOKEN_SUM_NORM, AggMode::SeqMeanTokenSumNorm),
];

fn kl_opts() -> tkm_kl_options {
    let mut o = tkm_kl_options { struct_size: 0, kind: 99, verl_clamps: 99 };
    assert_eq!(unsafe { tkm_kl_options_init(&mut o) }, TKM_STATUS_OK);
    assert_eq!(o, tkm_kl_options { struct_size: size_of::<tkm_kl_options>(), kind: TKM_KL_K3, verl_clamps: 1 });
    o
}

#[test]
fn ppo_clip_kl_loss_and_step_match_core() {
    let mut clip =
        tkm_ppo_clip_options { struct_size: 0, eps_low: 0.0, eps_high: 0.0, dual_clip_c: 0.0, log_ratio_clamp: 0.0 };
    unsafe { tkm_ppo_clip_options_init(&mut clip) };
    let mut norm = tkm_agg_norm { struct_size: 0, global_tokens: 0, global_seqs: 0, dp_size: 0, scale_factor: 0.0 };
    unsafe { tkm_agg_norm_init(&mut norm) };
    let kl0 = kl_opts();
    // cols = 40 takes the AVX2 step kernel where available, 37 the three-call path.
    for cols in [37usize, 40] {
        let b = Batch::new(5, cols);
        let n = b.n();
        for (code, kind) in KL_KINDS {
            for clamps in [0u32, 1] {
                let kl = tkm_kl_options { kind: code, verl_clamps: clamps, ..kl0 };
                let kcfg = KlCfg { kind, verl_clamps: clamps == 1 };
                let term = KlTerm { ref_logp: &b.reference, cfg: kcfg, coef: 0.05 };
                for w in [false, true] {
                    let inp = b.inputs(w);
                    let (mut l, mut g) = (vec![0f32; n], vec![0f32; n]);
                    let (ps, ks) = pl::ppo_clip_kl_loss(
                        Exec::new(),
                        &inp,
                        &ClipCfg::default(),
                        &term,
                        LossOut { loss: &mut l, dloss_dlogp: &mut g },
                    )
                    .unwrap();
                    let (mut l2, mut g2) = (vec![POISON; n], vec![POISON; n]);
                    let (mut ps2, mut ks2) = (tkm_policy_stats::default(), tkm_kl_stats::default());
                    let s = unsafe {
                        tkm_ppo_clip_kl_loss(
                            null(),
                            b.logp.as_ptr(),
                            b.old.as_ptr(),
                            b.adv.as_ptr(),
                            b.mask.as_ptr(),
                            b.isw_ptr(w),
                            b.reference.as_ptr(),
                            b.rows,
                            cols,
                            &clip,
                            &kl,
                            0.05,
                            l2.as_mut_ptr(),
                            g2.as_mut_ptr(),
                            &mut ps2,
                            &mut ks2,
                        )
                    };
                    assert_eq!(s, TKM_STATUS_OK);
                    assert_eq!((bits(&l2), bits(&g2)), (bits(&l), bits(&g)));
                    assert_eq!((pstats_abi(&ps2), kstats_abi(&ks2)), (pstats(&ps), kstats(&ks)));

                    for (mcode, mode) in AGG_MODES {
                        let core_norm = AggNorm::default();
                        let (mut l, mut g) = (vec![0f32; n], vec![0f32; n]);
                        let st = pl::ppo_clip_kl_step(
                            Exec::new(),
                            &inp,
                            &ClipCfg::default(),
                            &term,
                            mode,
                            &core_norm,
                            LossOut { loss: &mut l, dloss_dlogp: &mut g },
                        )
                        .unwrap();
                        let (mut l2, mut g2, mut total) = (vec![POISON; n], vec![POISON; n], POISON);
                        let (mut ps2, mut ks2) = (tkm_policy_stats::default(), tkm_kl_stats::default());
                        let s = unsafe {
                            tkm_ppo_clip_kl_step(
                                null(),
                                b.logp.as_ptr(),
                                b.old.as_ptr(),
                                b.adv.as_ptr(),
                                b.mask.as_ptr(),
                                b.isw_ptr(w),
                                b.reference.as_ptr(),
                                b.rows,
                                cols,
                                null(),
                                &kl,
                                0.05,
                                mcode,
                                &norm,
                                l2.as_mut_ptr(),
                                g2.as_mut_ptr(),
                                &mut total,
                                &mut ps2,
                                &mut ks2,
                            )
                        };
                        assert_eq!(s, TKM_STATUS_OK);
                        assert_eq!((bits(&l2), bits(&g2)), (bits(&l), bits(&g)));
                        assert_eq!(total.to_bits(), st.loss.to_bits());
                        assert_eq!((pstats_abi(&ps2), kstats_abi(&ks2)), (pstats(&st.policy), kstats(&st.kl)));
                        // And the unfused ABI path gives the same bits.
                        let (mut l3, mut g3, mut total3) = (vec![0f32; n], vec![0f32; n], 0f32);
                        unsafe {
                            assert_eq!(
                                tkm_ppo_clip_kl_loss(
                                    null(),
                                    b.logp.as_ptr(),
                                    b.old.as_ptr(),
                                    b.adv.as_ptr(),
                                    b.mask.as_ptr(),
                                    b.isw_ptr(w),
                                    b.reference.as_ptr(),
                                    b.rows,
                                    cols,
                                    null(),
                                    &kl,
                                    0.05,
                                    l3.as_mut_ptr(),
                                    g3.as_mut_ptr(),
                                    null_mut(),
                                    null_mut(),
                                ),
                                TKM_STATUS_OK
                            );
                            let (r, c) = (b.rows, cols);
                            let m = b.mask.as_ptr();
                            assert_eq!(
                                tkm_agg_loss(null(), l3.as_ptr(), m, r, c, mcode, null(), &mut total3),
                                TKM_STATUS_OK
                            );
                            assert_eq!(
                                tkm_agg_chain_inplace(null(), m, r, c, mcode, null(), g3.as_mut_ptr()),
                                TKM_STATUS_OK
                            );
                        }
                        assert_eq!((bits(&l3), bits(&g3), total3.to_bits()), (bits(&l2), bits(&g2), total.to_bits()));
                    }
                }
            }
        }
    }
}

#[test]
fn gspo_cispo_sapo_kl_tis_match_core() {
    let b = Batch::new(6, 29);
    let (rows, cols, n) = (b.rows, b.cols, b.n());
    let mut gspo = tkm_gspo_options { struct_size: 0, eps_low: 0.0, eps_high: 0.0, seq_log_ratio_cap: 0.0 };
    let mut cispo = tkm_cispo_options { struct_size: 0, w_min: 0.0, w_max: 0.0, log_ratio_clamp: 0.0 };
    let mut sapo = tkm_sapo_options { struct_size: 0, tau_pos: 0.0, tau_neg: 0.0, log_ratio_clamp: 0.0 };
    unsafe {
        assert_eq!(tkm_gspo_options_init(&mut gspo), TKM_STATUS_OK);
        assert_eq!(tkm_cispo_options_init(&mut cispo), TKM_STATUS_OK);
        assert_eq!(tkm_sapo_options_init(&mut sapo), TKM_STATUS_OK);
    }
    assert_eq!(gspo.struct_size, size_of::<tkm_gspo_options>());
    assert_eq!((gspo.eps_low, gspo.eps_high, gspo.seq_log_ratio_cap), (0.2, 0.2, 10.0));
    assert_eq!((cispo.w_min, cispo.w_max, cispo.log_ratio_clamp), (0.8, 1.2, 20.0));
    assert_eq!((sapo.tau_pos, sapo.tau_neg, sapo.log_ratio_clamp), (1.0, 1.05, 20.0));

    type AbiLoss<O> = unsafe extern "C" fn(
        *const tkm_exec_options,
        *const f32,
        *const f32,
        *const f32,
        *const u8,
        *const f32,
        usize,
        usize,
        *const O,
        *mut f32,
        *mut f32,
        *mut tkm_policy_stats,
    ) -> tkm_status;
    fn check<O>(b: &Batch, f: AbiLoss<O>, o: *const O, core: &dyn Fn(&PolicyInputs<'_>, LossOut<'_>) -> PolicyStats) {
        let n = b.n();
        for w in [false, true] {
            let (mut l, mut g) = (vec![0f32; n], vec![0f32; n]);
            let st = core(&b.inputs(w), LossOut { loss: &mut l, dloss_dlogp: &mut g });
            let (mut l2, mut g2, mut st2) = (vec![POISON; n], vec![POISON; n], tkm_policy_stats::default());
            let s = unsafe {
                f(
                    null(),
                    b.logp.as_ptr(),
                    b.old.as_ptr(),
                    b.adv.as_ptr(),
                    b.mask.as_ptr(),
                    b.isw_ptr(w),
                    b.rows,
                    b.cols,
                    o,
                    l2.as_mut_ptr(),
                    g2.as_mut_ptr(),
                    &mut st2,
                )
            };
            assert_eq!(s, TKM_STATUS_OK);
            assert_eq!((bits(&l2), bits(&g2)), (bits(&l), bits(&g)));
            assert_eq!(pstats_abi(&st2), pstats(&st));
        }
    }
    let gspo_cases = [
        (gspo, GspoCfg::default()),
        (tkm_gspo_options { eps_low: 3e-4, eps_high: 4e-4, ..gspo }, GspoCfg::verl_example()),
        (
            tkm_gspo_options { seq_log_ratio_cap: f32::INFINITY, ..gspo },
            GspoCfg { seq_log_ratio_cap: None, ..GspoCfg::default() },
        ),
    ];
    for (o, cfg) in gspo_cases {
        check(&b, tkm_gspo_loss, &o, &|i, out| pl::gspo_loss(Exec::new(), i, &cfg, out).unwrap());
    }
    check(&b, tkm_gspo_loss, null(), &|i, out| pl::gspo_loss(Exec::new(), i, &GspoCfg::default(), out).unwrap());
    let trl = tkm_cispo_options { w_min: f32::NEG_INFINITY, w_max: 5.0, log_ratio_clamp: 0.0, ..cispo };
    for (o, cfg) in [(cispo, CispoCfg::default()), (trl, CispoCfg::trl(5.0))] {
        check(&b, tkm_cispo_loss, &o, &|i, out| pl::cispo_loss(Exec::new(), i, &cfg, out).unwrap());
    }
    let sapo_trl = tkm_sapo_options { log_ratio_clamp: 0.0, ..sapo };
    for (o, cfg) in [(sapo, SapoCfg::default()), (sapo_trl, SapoCfg::trl())] {
        check(&b, tkm_sapo_loss, &o, &|i, out| pl::sapo_loss(Exec::new(), i, &cfg, out).unwrap());
    }

    // KL estimators.
    let kl0 = kl_opts();
    for (code, kind) in KL_KINDS {
        for clamps in [0u32, 1] {
            let cfg = KlCfg { kind, verl_clamps: clamps == 1 };
            let (mut l, mut g) = (vec![0f32; n], vec![0f32; n]);
            let shape = BatchShape::new(rows, cols);
            let ks = pl::kl_loss(
                Exec::new(),
                shape,
                &b.mask,
                &b.logp,
                &b.reference,
                &cfg,
                LossOut { loss: &mut l, dloss_dlogp: &mut g },
            )
            .unwrap();
            let (mut l2, mut g2, mut ks2) = (vec![POISON; n], vec![POISON; n], tkm_kl_stats::default());
            let o = tkm_kl_options { kind: code, verl_clamps: clamps, ..kl0 };
            let s = unsafe {
                tkm_kl_loss(
                    null(),
                    b.logp.as_ptr(),
                    b.reference.as_ptr(),
                    b.mask.as_ptr(),
                    rows,
                    cols,
                    &o,
                    l2.as_mut_ptr(),
                    g2.as_mut_ptr(),
                    &mut ks2,
                )
            };
            assert_eq!(s, TKM_STATUS_OK);
            assert_eq!((bits(&l2), bits(&g2), kstats_abi(&ks2)), (bits(&l), bits(&g), kstats(&ks)));
        }
    }

    // Truncated importance weights.
    for (code, level) in [(TKM_TIS_TOKEN, TisLevel::Token), (TKM_TIS_SEQUENCE, TisLevel::Sequence)] {
        for cap in [2.0f32, 1.1, f32::INFINITY] {
            let mut w = vec![0f32; n];
            let shape = BatchShape::new(rows, cols);
            pl::tis_weights(Exec::new(), shape, &b.mask, &b.old, &b.reference, &TisCfg { level, cap }, &mut w).unwrap();
            let mut w2 = vec![POISON; n];
            let s = unsafe {
                tkm_tis_weights(
                    null(),
                    b.old.as_ptr(),
                    b.reference.as_ptr(),
                    b.mask.as_ptr(),
                    rows,
                    cols,
                    code,
                    cap,
                    w2.as_mut_ptr(),
                )
            };
            assert_eq!(s, TKM_STATUS_OK);
            assert_eq!(bits(&w2), bits(&w));
        }
    }
}

#[test]
fn chaining_and_upstreams_match_core() {
    let b = Batch::new(4, 23);
    let (rows, cols, n) = (b.rows, b.cols, b.n());
    let shape = BatchShape::new(rows, cols);
    let d1 = rand_f32(n, 21, 3.0);
    let d2 = rand_f32(n, 22, 3.0);
    let explicit = tkm_agg_norm {
        struct_size: size_of::<tkm_agg_norm>(),
        global_tokens: 400,
        global_seqs: 9,
        dp_size: 2,
        scale_factor: 32.0,
    };
    let core_explicit =
        AggNorm { global_tokens: Some(400), global_seqs: Some(9), dp_size: 2, scale_factor: Some(32.0) };
    for (code, mode) in AGG_MODES {
        for (abi, cn) in [(null(), AggNorm::default()), (&explicit as *const tkm_agg_norm, core_explicit)] {
            let mut want = d1.clone();
            pl::agg_chain_inplace(Exec::new(), shape, &b.mask, mode, &cn, &mut want).unwrap();
            let mut got = d1.clone();
            let s = unsafe { tkm_agg_chain_inplace(null(), b.mask.as_ptr(), rows, cols, code, abi, got.as_mut_ptr()) };
            assert_eq!(s, TKM_STATUS_OK);
            assert_eq!(bits(&got), bits(&want));

            // logp_upstream with two terms, and aliased onto its first term.
            let mut w = vec![0f32; n];
            pl::agg_weights(Exec::new(), shape, &b.mask, mode, &cn, &mut w).unwrap();
            let mut want = vec![0f32; n];
            pl::logp_upstream(Exec::new(), &w, &[(1.0, &d1), (0.25, &d2)], &mut want).unwrap();
            let coefs = [1.0f32, 0.25];
            let terms = [d1.as_ptr(), d2.as_ptr()];
            let mut got = vec![POISON; n];
            let s = unsafe {
                tkm_logp_upstream(null(), w.as_ptr(), n, coefs.as_ptr(), terms.as_ptr(), 2, got.as_mut_ptr())
            };
            assert_eq!(s, TKM_STATUS_OK);
            assert_eq!(bits(&got), bits(&want));
            let mut alias = d1.clone();
            let terms = [alias.as_ptr(), d2.as_ptr()];
            let s = unsafe {
                tkm_logp_upstream(null(), w.as_ptr(), n, coefs.as_ptr(), terms.as_ptr(), 2, alias.as_mut_ptr())
            };
            assert_eq!(s, TKM_STATUS_OK);
            assert_eq!(bits(&alias), bits(&want));
            // Zero terms: all zeros.
            let s = unsafe { tkm_logp_upstream(null(), w.as_ptr(), n, null(), null(), 0, got.as_mut_ptr()) };
            assert_eq!(s, TKM_STATUS_OK);
            assert!(got.iter().all(|&x| x.to_bits() == 0));

            let mut want = vec![0f32; n];
            pl::entropy_upstream(Exec::new(), &w, 0.01, &mut want).unwrap();
            let mut got = vec![POISON; n];
            assert_eq!(unsafe { tkm_entropy_upstream(null(), w.as_ptr(), n, 0.01, got.as_mut_ptr()) }, TKM_STATUS_OK);
            assert_eq!(bits(&got), bits(&want));
        }
    }
}

#[test]
fn new_policy_errors_write_nothing() {
    let b = Batch::new(2, 3);
    let (rows, cols, n) = (b.rows, b.cols, b.n());
    let p = |v: &Vec<f32>| v.as_ptr();
    let mut l = vec![POISON; n];
    let mut g = vec![POISON; n];
    let mut total = POISON;
    let mut ps = tkm_policy_stats { valid_tokens: 77, ..Default::default() };
    let mut ks = tkm_kl_stats { valid_tokens: 77, kl_sum: 0.0 };

    // Init functions reject NULL.
    unsafe {
        assert_eq!(tkm_kl_options_init(null_mut()), TKM_STATUS_NULL_POINTER);
        assert_eq!(tkm_gspo_options_init(null_mut()), TKM_STATUS_NULL_POINTER);
        assert_eq!(tkm_cispo_options_init(null_mut()), TKM_STATUS_NULL_POINTER);
        assert_eq!(tkm_sapo_options_init(null_mut()), TKM_STATUS_NULL_POINTER);
    }

    // PPO + KL and the step: bad KL kind, bad clamp flag, non-finite coefficient, NULL
    // ref_logp, bad struct size, bad mode, bad norm, NULL total, size overflow.
    let kl0 = kl_opts();
    let step = |kl: &tkm_kl_options,
                coef: f32,
                reference: *const f32,
                mode: u32,
                r: usize,
                total: *mut f32,
                l: &mut [f32],
                g: &mut [f32],
                ps: &mut tkm_policy_stats,
                ks: &mut tkm_kl_stats| unsafe {
        tkm_ppo_clip_kl_step(
            null(),
            p(&b.logp),
            p(&b.old),
            p(&b.adv),
            b.mask.as_ptr(),
            null(),
            reference,
            r,
            cols,
            null(),
            kl,
            coef,
            mode,
            null(),
            l.as_mut_ptr(),
            g.as_mut_ptr(),
            total,
            ps,
            ks,
        )
    };
    let lossk = |kl: &tkm_kl_options, coef: f32, reference: *const f32, l: &mut [f32], g: &mut [f32]| unsafe {
        tkm_ppo_clip_kl_loss(
            null(),
            p(&b.logp),
            p(&b.old),
            p(&b.adv),
            b.mask.as_ptr(),
            null(),
            reference,
            rows,
            cols,
            null(),
            kl,
            coef,
            l.as_mut_ptr(),
            g.as_mut_ptr(),
            null_mut(),
            null_mut(),
        )
    };
    let bad_kind = tkm_kl_options { kind: 6, ..kl0 };
    let bad_flag = tkm_kl_options { verl_clamps: 2, ..kl0 };
    let bad_size = tkm_kl_options { struct_size: 10, ..kl0 };
    let r = p(&b.reference);
    let tot: *mut f32 = &mut total;
    for (kl, coef, reference, mode, rr, t, want) in [
        (bad_kind, 0.1, r, TKM_AGG_TOKEN_MEAN, rows, tot, TKM_STATUS_INVALID_ARGUMENT),
        (bad_flag, 0.1, r, TKM_AGG_TOKEN_MEAN, rows, tot, TKM_STATUS_INVALID_ARGUMENT),
        (kl0, f32::INFINITY, r, TKM_AGG_TOKEN_MEAN, rows, tot, TKM_STATUS_INVALID_ARGUMENT),
        (kl0, 0.1, null(), TKM_AGG_TOKEN_MEAN, rows, tot, TKM_STATUS_NULL_POINTER),
        (bad_size, 0.1, r, TKM_AGG_TOKEN_MEAN, rows, tot, TKM_STATUS_BAD_STRUCT_SIZE),
        (kl0, 0.1, r, 4, rows, tot, TKM_STATUS_INVALID_ARGUMENT),
        (kl0, 0.1, r, TKM_AGG_TOKEN_MEAN, rows, null_mut(), TKM_STATUS_NULL_POINTER),
        (kl0, 0.1, r, TKM_AGG_TOKEN_MEAN, usize::MAX, tot, TKM_STATUS_SIZE_OVERFLOW),
    ] {
        assert_eq!(step(&kl, coef, reference, mode, rr, t, &mut l, &mut g, &mut ps, &mut ks), want);
    }
    assert!(
        untouched(&l)
            && untouched(&g)
            && total.to_bits() == POISON.to_bits()
            && ps.valid_tokens == 77
            && ks.valid_tokens == 77
    );
    assert_eq!(lossk(&bad_kind, 0.1, r, &mut l, &mut g), TKM_STATUS_INVALID_ARGUMENT);
    assert_eq!(lossk(&kl0, f32::NAN, r, &mut l, &mut g), TKM_STATUS_INVALID_ARGUMENT);
    assert_eq!(lossk(&kl0, 0.1, null(), &mut l, &mut g), TKM_STATUS_NULL_POINTER);
    assert_eq!(lossk(&bad_size, 0.1, r, &mut l, &mut g), TKM_STATUS_BAD_STRUCT_SIZE);
    assert!(untouched(&l) && untouched(&g));
    // An older kl options struct (kind only) keeps the default clamps.
    let older = tkm_kl_options { struct_size: 12, verl_clamps: 7, ..kl0 };
    assert_eq!(lossk(&older, 0.1, r, &mut l, &mut g), TKM_STATUS_OK);
    l.fill(POISON);
    g.fill(POISON);

    // GSPO / CISPO / SAPO option validation, NULL inputs.
    let mut gspo = tkm_gspo_options { struct_size: 0, eps_low: 0.0, eps_high: 0.0, seq_log_ratio_cap: 0.0 };
    let mut cispo = tkm_cispo_options { struct_size: 0, w_min: 0.0, w_max: 0.0, log_ratio_clamp: 0.0 };
    let mut sapo = tkm_sapo_options { struct_size: 0, tau_pos: 0.0, tau_neg: 0.0, log_ratio_clamp: 0.0 };
    unsafe {
        tkm_gspo_options_init(&mut gspo);
        tkm_cispo_options_init(&mut cispo);
        tkm_sapo_options_init(&mut sapo);
    }
    macro_rules! call {
        ($f:ident, $o:expr, $adv:expr) => {
            unsafe {
                $f(
                    null(),
                    p(&b.logp),
                    p(&b.old),
                    $adv,
                    b.mask.as_ptr(),
                    null(),
                    rows,
                    cols,
                    $o,
                    l.as_mut_ptr(),
                    g.as_mut_ptr(),
                    &mut ps,
                )
            }
        };
    }
    for o in [
        tkm_gspo_options { eps_low: -0.1, ..gspo },
        tkm_gspo_options { eps_high: f32::NAN, ..gspo },
        tkm_gspo_options { seq_log_ratio_cap: f32::NAN, ..gspo },
        tkm_gspo_options { seq_log_ratio_cap: f32::NEG_INFINITY, ..gspo },
    ] {
        assert_eq!(call!(tkm_gspo_loss, &o, p(&b.adv)), TKM_STATUS_INVALID_ARGUMENT);
    }
    for o in [
        tkm_cispo_options { w_min: 1.5, w_max: 1.2, ..cispo },
        tkm_cispo_options { w_min: f32::NAN, ..cispo },
        tkm_cispo_options { w_min: f32::INFINITY, ..cispo },
        tkm_cispo_options { log_ratio_clamp: -1.0, ..cispo },
    ] {
        assert_eq!(call!(tkm_cispo_loss, &o, p(&b.adv)), TKM_STATUS_INVALID_ARGUMENT);
    }
    for o in [
        tkm_sapo_options { tau_pos: 0.0, ..sapo },
        tkm_sapo_options { tau_neg: f32::INFINITY, ..sapo },
        tkm_sapo_options { log_ratio_clamp: f32::NAN, ..sapo },
    ] {
        assert_eq!(call!(tkm_sapo_loss, &o, p(&b.adv)), TKM_STATUS_INVALID_ARGUMENT);
    }
    assert_eq!(call!(tkm_gspo_loss, &gspo, null()), TKM_STATUS_NULL_POINTER);
    assert_eq!(call!(tkm_cispo_loss, &cispo, null()), TKM_STATUS_NULL_POINTER);
    assert_eq!(call!(tkm_sapo_loss, &sapo, null()), TKM_STATUS_NULL_POINTER);
    let bad = tkm_sapo_options { struct_size: 14, ..sapo };
    assert_eq!(call!(tkm_sapo_loss, &bad, p(&b.adv)), TKM_STATUS_BAD_STRUCT_SIZE);
    assert!(untouched(&l) && untouched(&g) && ps.valid_tokens == 77);

    // KL, TIS.
    unsafe {
        let kl = |o: &tkm_kl_options, rf: *const f32, r: usize, l: &mut [f32], g: &mut [f32]| {
            tkm_kl_loss(null(), p(&b.logp), rf, b.mask.as_ptr(), r, cols, o, l.as_mut_ptr(), g.as_mut_ptr(), null_mut())
        };
        assert_eq!(kl(&bad_kind, r, rows, &mut l, &mut g), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(kl(&kl0, null(), rows, &mut l, &mut g), TKM_STATUS_NULL_POINTER);
        assert_eq!(kl(&kl0, r, usize::MAX, &mut l, &mut g), TKM_STATUS_SIZE_OVERFLOW);
        let tis = |level: u32, cap: f32, out: *mut f32| {
            tkm_tis_weights(null(), p(&b.old), r, b.mask.as_ptr(), rows, cols, level, cap, out)
        };
        assert_eq!(tis(2, 2.0, l.as_mut_ptr()), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(tis(TKM_TIS_TOKEN, 0.0, l.as_mut_ptr()), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(tis(TKM_TIS_SEQUENCE, f32::NAN, l.as_mut_ptr()), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(tis(TKM_TIS_TOKEN, 2.0, null_mut()), TKM_STATUS_NULL_POINTER);
    }
    assert!(untouched(&l) && untouched(&g));

    // Chaining and upstreams.
    unsafe {
        let m = b.mask.as_ptr();
        assert_eq!(
            tkm_agg_chain_inplace(null(), m, rows, cols, 9, null(), l.as_mut_ptr()),
            TKM_STATUS_INVALID_ARGUMENT
        );
        assert_eq!(
            tkm_agg_chain_inplace(null(), null(), rows, cols, 0, null(), l.as_mut_ptr()),
            TKM_STATUS_NULL_POINTER
        );
        assert_eq!(tkm_agg_chain_inplace(null(), m, rows, cols, 0, null(), null_mut()), TKM_STATUS_NULL_POINTER);
        let mut norm = tkm_agg_norm { struct_size: 0, global_tokens: 0, global_seqs: 0, dp_size: 0, scale_factor: 0.0 };
        tkm_agg_norm_init(&mut norm);
        norm.dp_size = 0;
        assert_eq!(tkm_agg_chain_inplace(null(), m, rows, cols, 0, &norm, l.as_mut_ptr()), TKM_STATUS_INVALID_ARGUMENT);
        // d overlapping the mask.
        let mut buf = vec![0f32; 8];
        let bm = buf.as_ptr() as *const u8;
        assert_eq!(tkm_agg_chain_inplace(null(), bm, 1, 8, 0, null(), buf.as_mut_ptr()), TKM_STATUS_OVERLAP);
        assert!(untouched(&l));

        let w = vec![1f32; n];
        let coefs = [1.0f32, 2.0];
        let terms = [p(&b.adv), null()];
        assert_eq!(
            tkm_logp_upstream(null(), w.as_ptr(), n, coefs.as_ptr(), terms.as_ptr(), 2, l.as_mut_ptr()),
            TKM_STATUS_NULL_POINTER
        );
        assert_eq!(
            tkm_logp_upstream(null(), w.as_ptr(), n, null(), terms.as_ptr(), 1, l.as_mut_ptr()),
            TKM_STATUS_NULL_POINTER
        );
        assert_eq!(
            tkm_logp_upstream(null(), w.as_ptr(), usize::MAX, coefs.as_ptr(), terms.as_ptr(), 1, l.as_mut_ptr()),
            TKM_STATUS_SIZE_OVERFLOW
        );
        assert_eq!(tkm_entropy_upstream(null(), w.as_ptr(), n, f32::NAN, l.as_mut_ptr()), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(tkm_entropy_upstream(null(), null(), n, 0.1, l.as_mut_ptr()), TKM_STATUS_NULL_POINTER);
    }
    assert!(untouched(&l));
}

/// The `TKM_BACKEND_*` code of a backend (exhaustive: a new backend does not compile here
/// until it has its code, and so its test below).
fn backend_code(b: Backend) -> u32 {
    match b {
        Backend::Portable => TKM_BACKEND_PORTABLE,
        #[cfg(target_arch = "x86_64")]
        Backend::Avx2Fma => TKM_BACKEND_AVX2_FMA,
        #[cfg(target_arch = "x86_64")]
        Backend::Avx512 => TKM_BACKEND_AVX512,
    }
}

/// `exec` reaches the policy kernels: every backend this CPU offers, pinned through the C ABI,
/// gives the portable bits for the fused step (the hand-vectorised loops) and the KL kernel
/// (the compiled-per-backend loops); an unknown code is rejected before anything is written.
#[test]
fn policy_kernels_run_on_the_pinned_backend() {
    let (rows, cols) = (5, 48);
    let b = Batch::new(rows, cols);
    let n = b.n();
    let kl = kl_opts();
    let run = |backend: u32| {
        let mut exec =
            tkm_exec_options { struct_size: 0, threads: 0, backend: 0, cuda_stream: null_mut(), gpu_mode: 0 };
        assert_eq!(unsafe { tkm_exec_options_init(&mut exec) }, TKM_STATUS_OK);
        exec.backend = backend;
        let (mut l, mut g, mut total) = (vec![POISON; n], vec![POISON; n], POISON);
        let (mut kv, mut kg) = (vec![POISON; n], vec![POISON; n]);
        let s = unsafe {
            tkm_ppo_clip_kl_step(
                &exec,
                b.logp.as_ptr(),
                b.old.as_ptr(),
                b.adv.as_ptr(),
                b.mask.as_ptr(),
                b.isw_ptr(true),
                b.reference.as_ptr(),
                rows,
                cols,
                null(),
                &kl,
                0.05,
                TKM_AGG_SEQ_MEAN_TOKEN_MEAN,
                null(),
                l.as_mut_ptr(),
                g.as_mut_ptr(),
                &mut total,
                null_mut(),
                null_mut(),
            )
        };
        let s2 = unsafe {
            tkm_kl_loss(
                &exec,
                b.logp.as_ptr(),
                b.reference.as_ptr(),
                b.mask.as_ptr(),
                rows,
                cols,
                &kl,
                kv.as_mut_ptr(),
                kg.as_mut_ptr(),
                null_mut(),
            )
        };
        (s, s2, bits(&l), bits(&g), total.to_bits(), bits(&kv), bits(&kg))
    };
    let want = run(TKM_BACKEND_PORTABLE);
    assert_eq!((want.0, want.1), (TKM_STATUS_OK, TKM_STATUS_OK));
    for backend in Backend::all_supported() {
        assert_eq!(run(backend_code(backend)), want, "{}", backend.name());
    }
    let bad = run(77);
    assert_eq!((bad.0, bad.1), (TKM_STATUS_INVALID_ARGUMENT, TKM_STATUS_INVALID_ARGUMENT));
    assert!(bad.2.iter().chain(&bad.5).all(|&x| x == POISON.to_bits()), "an output was written");
}
