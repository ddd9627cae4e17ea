//! The exploration-bonus entry points against the core crate, bitwise, and their error
//! statuses (outputs and state untouched on error).

use core::ptr::{null, null_mut};

use tokenmath::*;
use tokenmath_core::exploration::{self as ex, AssembleCfg, E3bCfg, MomentsCompat, RewardNorm, RunningMoments};
use tokenmath_core::Exec;
use tokenmath_testutil::{bits, poisoned, rand_f32, untouched};

#[test]
fn counts_and_table() {
    let g = [1u64, 4, 9];
    let e = [1u64, 2, 1];
    let mut out = poisoned(3);
    unsafe {
        assert_eq!(
            tkm_count_bonuses(g.as_ptr(), e.as_ptr(), 3, TKM_EPISODIC_FIRST_VISIT, out.as_mut_ptr()),
            TKM_STATUS_OK
        );
        assert_eq!(out, [1.0, 0.0, 1.0 / 3.0]);
        let mut out = poisoned(3);
        assert_eq!(tkm_count_bonuses(null(), null(), 3, 0, out.as_mut_ptr()), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(tkm_count_bonuses(g.as_ptr(), null(), 3, 7, out.as_mut_ptr()), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(tkm_count_bonuses(g.as_ptr(), null(), 3, 0, null_mut()), TKM_STATUS_NULL_POINTER);
        assert!(untouched(&out));

        let (mut k, mut c) = ([0u64; 4], [0u64; 4]);
        let mut n = [0u64; 3];
        assert_eq!(
            tkm_count_table_visit(k.as_mut_ptr(), c.as_mut_ptr(), 4, [5, 5, 0].as_ptr(), 3, n.as_mut_ptr()),
            TKM_STATUS_OK
        );
        assert_eq!(n, [1, 2, 1]);
        let before = (k, c);
        // Two occupied + three visits > 4 slots.
        assert_eq!(
            tkm_count_table_visit(k.as_mut_ptr(), c.as_mut_ptr(), 4, [1, 2, 3].as_ptr(), 3, n.as_mut_ptr()),
            TKM_STATUS_INVALID_ARGUMENT
        );
        assert_eq!((k, c), before);
        assert_eq!(
            tkm_count_table_visit(k.as_mut_ptr(), c.as_mut_ptr(), 3, [1].as_ptr(), 1, n.as_mut_ptr()),
            TKM_STATUS_INVALID_ARGUMENT
        );
        assert_eq!(
            tkm_count_table_visit(k.as_mut_ptr(), k.as_mut_ptr(), 4, [1].as_ptr(), 1, n.as_mut_ptr()),
            TKM_STATUS_OVERLAP
        );
    }
}

#[test]
fn e3b_matches_the_core_bitwise() {
    let (n, d) = (3usize, 5usize);
    let cfg = E3bCfg::default();
    let mut want_c = vec![0.0f32; n * d * d];
    for k in 0..n {
        ex::e3b_reset(&cfg, d, &mut want_c[k * d * d..(k + 1) * d * d]).unwrap();
    }
    let mut c = poisoned(n * d * d);
    let mut o = tkm_e3b_options { struct_size: 0, ridge: 0.0, sym_every: 0, zero_first_step: 0 };
    let mut x =
        tkm_exec_options { struct_size: 0, threads: 0, backend: 0, cuda_stream: core::ptr::null_mut(), gpu_mode: 0 };
    unsafe {
        assert_eq!(tkm_e3b_options_init(&mut o), TKM_STATUS_OK);
        assert_eq!((o.ridge, o.sym_every, o.zero_first_step), (0.1, 64, 1));
        assert_eq!(tkm_exec_options_init(&mut x), TKM_STATUS_OK);
        x.threads = 2;
        assert_eq!(tkm_e3b_reset(&o, n, d, c.as_mut_ptr()), TKM_STATUS_OK);
        assert_eq!(bits(&c), bits(&want_c));
        for step in 0..4u64 {
            let phi = rand_f32(n * d, 9 + step, 1.0);
            let steps = vec![step; n];
            let (mut s, mut b) = (poisoned(n * d), poisoned(n));
            let (mut ws, mut wb) = (vec![0.0; n * d], vec![0.0; n]);
            ex::e3b_step_batch(&Exec::new(), &cfg, d, &mut want_c, &phi, &steps, &mut ws, &mut wb).unwrap();
            let st = tkm_e3b_step(
                &x,
                &o,
                n,
                d,
                c.as_mut_ptr(),
                phi.as_ptr(),
                steps.as_ptr(),
                s.as_mut_ptr(),
                b.as_mut_ptr(),
            );
            assert_eq!(st, TKM_STATUS_OK);
            assert_eq!(bits(&b), bits(&wb));
            assert_eq!(bits(&c), bits(&want_c));
        }
        let before = bits(&c);
        let mut phi = rand_f32(n * d, 1, 1.0);
        phi[7] = f32::NAN;
        let (mut s, mut b) = (poisoned(n * d), poisoned(n));
        let steps = [1u64; 3];
        assert_eq!(
            tkm_e3b_step(
                null(),
                null(),
                n,
                d,
                c.as_mut_ptr(),
                phi.as_ptr(),
                steps.as_ptr(),
                s.as_mut_ptr(),
                b.as_mut_ptr()
            ),
            TKM_STATUS_NON_FINITE
        );
        assert_eq!(
            tkm_e3b_step(
                null(),
                null(),
                n,
                d,
                c.as_mut_ptr(),
                c.as_ptr(),
                steps.as_ptr(),
                s.as_mut_ptr(),
                b.as_mut_ptr()
            ),
            TKM_STATUS_OVERLAP
        );
        assert_eq!(
            tkm_e3b_step(
                null(),
                null(),
                n,
                0,
                c.as_mut_ptr(),
                phi.as_ptr(),
                steps.as_ptr(),
                s.as_mut_ptr(),
                b.as_mut_ptr()
            ),
            TKM_STATUS_INVALID_ARGUMENT
        );
        o.ridge = -1.0;
        assert_eq!(tkm_e3b_reset(&o, n, d, c.as_mut_ptr()), TKM_STATUS_INVALID_ARGUMENT);
        o.ridge = 0.1;
        o.zero_first_step = 2;
        assert_eq!(tkm_e3b_reset(&o, n, d, c.as_mut_ptr()), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(
            tkm_e3b_step(
                null(),
                null(),
                usize::MAX,
                d,
                c.as_mut_ptr(),
                phi.as_ptr(),
                steps.as_ptr(),
                s.as_mut_ptr(),
                b.as_mut_ptr()
            ),
            TKM_STATUS_SIZE_OVERFLOW
        );
        assert_eq!(bits(&c), before);
        assert!(untouched(&b));
    }
}

#[test]
fn rnd_noveld_combine() {
    let (p, t) = (rand_f32(12, 1, 1.0), rand_f32(12, 2, 1.0));
    let mut want = vec![0.0f32; 4];
    ex::rnd_error(&Exec::new(), 3, &p, &t, &mut want).unwrap();
    let mut out = poisoned(4);
    unsafe {
        assert_eq!(tkm_rnd_error(null(), 4, 3, p.as_ptr(), t.as_ptr(), out.as_mut_ptr()), TKM_STATUS_OK);
        assert_eq!(bits(&out), bits(&want));
        let mut out = poisoned(4);
        assert_eq!(tkm_rnd_error(null(), 4, 3, p.as_ptr(), null(), out.as_mut_ptr()), TKM_STATUS_NULL_POINTER);
        assert_eq!(
            tkm_rnd_error(null(), usize::MAX, 3, p.as_ptr(), t.as_ptr(), out.as_mut_ptr()),
            TKM_STATUS_SIZE_OVERFLOW
        );
        assert!(untouched(&out));

        let (a, b) = ([1.0f32, 0.5], [2.0f32, 1.0]);
        let mut o = poisoned(2);
        assert_eq!(tkm_noveld_bonus(2, a.as_ptr(), b.as_ptr(), 0.1, o.as_mut_ptr()), TKM_STATUS_OK);
        assert_eq!(o, [0.8, 0.4]);
        assert_eq!(tkm_noveld_bonus(2, a.as_ptr(), b.as_ptr(), -1.0, o.as_mut_ptr()), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(tkm_combine_bonuses(2, a.as_ptr(), b.as_ptr(), TKM_COMBINE_ADD, 2.0, o.as_mut_ptr()), TKM_STATUS_OK);
        assert_eq!(o, [5.0, 2.5]);
        assert_eq!(
            tkm_combine_bonuses(2, a.as_ptr(), b.as_ptr(), TKM_COMBINE_MULT, 0.0, o.as_mut_ptr()),
            TKM_STATUS_OK
        );
        assert_eq!(o, [2.0, 0.5]);
        assert_eq!(tkm_combine_bonuses(2, a.as_ptr(), b.as_ptr(), 9, 0.0, o.as_mut_ptr()), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(
            tkm_combine_bonuses(1, [f32::NAN].as_ptr(), b.as_ptr(), 0, 0.0, o.as_mut_ptr()),
            TKM_STATUS_NON_FINITE
        );
        assert_eq!(o, [2.0, 0.5]);
    }
}

#[test]
fn assembly_single_and_multi_rank() {
    let (re, ri) = (rand_f32(10, 3, 1.0), rand_f32(10, 4, 0.5));
    let mut o = tkm_assemble_options {
        struct_size: 0,
        norm: 9,
        intrinsic_coef: 0.0,
        clip: 9,
        use_extrinsic: 9,
        compat: 9,
        time_steps: 9,
    };
    unsafe {
        assert_eq!(tkm_assemble_options_init(&mut o), TKM_STATUS_OK);
        assert_eq!(
            (o.norm, o.intrinsic_coef, o.clip, o.use_extrinsic, o.compat),
            (TKM_REWARD_NORM_INT, 1.0, 1, 1, TKM_MOMENTS_LIBRARY)
        );
        let mut rm = RunningMoments::EMPTY;
        let mut want = vec![0.0f32; 10];
        ex::assemble_rewards(&re, &ri, &AssembleCfg::default(), &mut rm, &mut want).unwrap();
        let mut m = tkm_running_moments::default();
        let mut out = poisoned(10);
        assert_eq!(tkm_assemble_rewards(10, re.as_ptr(), ri.as_ptr(), &o, &mut m, 1, out.as_mut_ptr()), TKM_STATUS_OK);
        assert_eq!(bits(&out), bits(&want));
        assert_eq!((m.count, m.sum, m.m2), (rm.count, rm.sum, rm.m2));

        // Two ranks: partials, merge, then assemble without update.
        let (mut p1, mut p2, mut merged, mut state) = Default::default();
        assert_eq!(tkm_reward_norm_batch_moments(4, re.as_ptr(), ri.as_ptr(), &o, &mut p1), TKM_STATUS_OK);
        assert_eq!(tkm_reward_norm_batch_moments(6, re[4..].as_ptr(), ri[4..].as_ptr(), &o, &mut p2), TKM_STATUS_OK);
        assert_eq!(tkm_running_moments_merge(&p1, &p2, &mut merged), TKM_STATUS_OK);
        let zero = tkm_running_moments::default();
        assert_eq!(tkm_running_moments_merge(&zero, &merged, &mut state), TKM_STATUS_OK);
        assert!((state.m2 - rm.m2).abs() <= 1e-13 * rm.m2);
        let mut out2 = poisoned(6);
        assert_eq!(
            tkm_assemble_rewards(6, re[4..].as_ptr(), ri[4..].as_ptr(), &o, &mut state, 0, out2.as_mut_ptr()),
            TKM_STATUS_OK
        );
        for (a, b) in out2.iter().zip(&want[4..]) {
            assert!(tokenmath_testutil::ulps(*a, *b) <= 1);
        }

        // Errors leave the state and the output alone.
        let before = m;
        let mut out = poisoned(10);
        let mut bad = ri.clone();
        bad[3] = f32::INFINITY;
        assert_eq!(
            tkm_assemble_rewards(10, re.as_ptr(), bad.as_ptr(), &o, &mut m, 1, out.as_mut_ptr()),
            TKM_STATUS_NON_FINITE
        );
        assert_eq!(
            tkm_assemble_rewards(10, re.as_ptr(), ri.as_ptr(), &o, &mut m, 2, out.as_mut_ptr()),
            TKM_STATUS_INVALID_ARGUMENT
        );
        assert_eq!(
            tkm_assemble_rewards(10, re.as_ptr(), ri.as_ptr(), &o, &mut m, 1, re.as_ptr() as *mut f32),
            TKM_STATUS_OVERLAP
        );
        let neg = tkm_running_moments { count: -1.0, sum: 0.0, m2: 0.0 };
        assert_eq!(tkm_running_moments_merge(&neg, &zero, &mut state), TKM_STATUS_INVALID_ARGUMENT);
        o.compat = TKM_MOMENTS_E3B;
        o.time_steps = 3;
        assert_eq!(
            tkm_assemble_rewards(10, re.as_ptr(), ri.as_ptr(), &o, &mut m, 1, out.as_mut_ptr()),
            TKM_STATUS_INVALID_ARGUMENT
        );
        o.struct_size = 5;
        assert_eq!(
            tkm_assemble_rewards(10, re.as_ptr(), ri.as_ptr(), &o, &mut m, 1, out.as_mut_ptr()),
            TKM_STATUS_BAD_STRUCT_SIZE
        );
        assert_eq!(m, before);
        assert!(untouched(&out));

        // No extrinsic reward: r_ext may be NULL.
        let mut o2 = tkm_assemble_options {
            struct_size: 0,
            norm: 0,
            intrinsic_coef: 0.0,
            clip: 0,
            use_extrinsic: 0,
            compat: 0,
            time_steps: 0,
        };
        tkm_assemble_options_init(&mut o2);
        o2.use_extrinsic = 0;
        o2.norm = TKM_REWARD_NORM_ALL;
        let cfg = AssembleCfg {
            use_extrinsic: false,
            norm: RewardNorm::All,
            compat: MomentsCompat::Library,
            ..AssembleCfg::default()
        };
        let mut rm = RunningMoments::EMPTY;
        ex::assemble_rewards(&[], &ri, &cfg, &mut rm, &mut want).unwrap();
        let mut m = tkm_running_moments::default();
        assert_eq!(tkm_assemble_rewards(10, null(), ri.as_ptr(), &o2, &mut m, 1, out.as_mut_ptr()), TKM_STATUS_OK);
        assert_eq!(bits(&out), bits(&want));
    }
}
