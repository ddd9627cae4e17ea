//! The xAR entry points against the core crate, bitwise, and their error statuses.

use core::ptr::{null, null_mut};

use tokenmath::*;
use tokenmath_core::xar::{self as x, CfgGuidance, CfgSchedule, DriftForm};
use tokenmath_testutil::{bits, poisoned, rand_f32, untouched};

#[test]
fn orders_scales_and_masks() {
    unsafe {
        let mut p = vec![7u32; 256];
        let mut want = vec![0u32; 256];
        x::xar_cell_permutation(16, 16, 8, &mut want).unwrap();
        assert_eq!(tkm_xar_cell_permutation(16, 16, 8, p.as_mut_ptr()), TKM_STATUS_OK);
        assert_eq!(p, want);
        x::xar_subsample_permutation(16, 16, 4, &mut want).unwrap();
        assert_eq!(tkm_xar_subsample_permutation(16, 16, 4, p.as_mut_ptr()), TKM_STATUS_OK);
        assert_eq!(p, want);
        let before = p.clone();
        assert_eq!(tkm_xar_cell_permutation(16, 16, 3, p.as_mut_ptr()), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(tkm_xar_subsample_permutation(16, 16, 0, p.as_mut_ptr()), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(tkm_xar_cell_permutation(usize::MAX, 2, 1, p.as_mut_ptr()), TKM_STATUS_SIZE_OVERFLOW);
        assert_eq!(tkm_xar_cell_permutation(16, 16, 8, null_mut()), TKM_STATUS_NULL_POINTER);
        assert_eq!(p, before);
        assert_eq!(tkm_xar_cell_permutation(0, 16, 8, null_mut()), TKM_STATUS_OK);

        let mut inv = vec![0u32; 256];
        assert_eq!(tkm_xar_invert_permutation(256, p.as_ptr(), inv.as_mut_ptr()), TKM_STATUS_OK);
        let mut winv = vec![0u32; 256];
        x::xar_invert_permutation(&p, &mut winv).unwrap();
        assert_eq!(inv, winv);
        assert_eq!(tkm_xar_invert_permutation(3, [0u32, 0, 1].as_ptr(), inv.as_mut_ptr()), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(tkm_xar_invert_permutation(256, p.as_ptr(), p.as_mut_ptr()), TKM_STATUS_OVERLAP);
        assert_eq!(inv, winv);

        let mut s = [0usize; 3];
        assert_eq!(tkm_xar_scale_sizes(16, 3, s.as_mut_ptr()), TKM_STATUS_OK);
        assert_eq!(s, [4, 8, 16]);
        assert_eq!(tkm_xar_scale_sizes(12, 4, [0usize; 4].as_mut_ptr()), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(s, [4, 8, 16]);
        let mut len = 0usize;
        assert_eq!(tkm_xar_scale_gather_len(16, 16, 3, &mut len), TKM_STATUS_OK);
        assert_eq!(len, 336);
        assert_eq!(tkm_xar_scale_gather_len(16, 16, 0, &mut len), TKM_STATUS_INVALID_ARGUMENT);
        let mut g = vec![0u32; 336];
        let mut wg = vec![0u32; 336];
        x::xar_scale_gather(16, 16, 3, &mut wg).unwrap();
        assert_eq!(tkm_xar_scale_gather(16, 16, 3, g.as_mut_ptr(), 336), TKM_STATUS_OK);
        assert_eq!(g, wg);
        assert_eq!(tkm_xar_scale_gather(16, 16, 3, g.as_mut_ptr(), 335), TKM_STATUS_LENGTH_MISMATCH);

        let mut m = poisoned(12 * 12);
        let mut wm = vec![0.0f32; 144];
        x::xar_block_causal_mask(3, 4, &mut wm).unwrap();
        assert_eq!(tkm_xar_block_causal_mask(3, 4, m.as_mut_ptr()), TKM_STATUS_OK);
        assert_eq!(bits(&m), bits(&wm));
        let mut m2 = poisoned(144);
        assert_eq!(tkm_xar_block_causal_mask_lens(3, [4usize, 4, 4].as_ptr(), m2.as_mut_ptr(), 144), TKM_STATUS_OK);
        assert_eq!(bits(&m2), bits(&wm));
        let mut m3 = poisoned(144);
        assert_eq!(
            tkm_xar_block_causal_mask_lens(3, [4usize, 4, 4].as_ptr(), m3.as_mut_ptr(), 100),
            TKM_STATUS_LENGTH_MISMATCH
        );
        assert_eq!(tkm_xar_block_causal_mask(usize::MAX, 2, m3.as_mut_ptr()), TKM_STATUS_SIZE_OVERFLOW);
        assert_eq!(tkm_xar_block_causal_mask(1 << 33, 1, m3.as_mut_ptr()), TKM_STATUS_SIZE_OVERFLOW);
        assert_eq!(tkm_xar_block_causal_mask_lens(2, null(), m3.as_mut_ptr(), 4), TKM_STATUS_NULL_POINTER);
        assert!(untouched(&m3));
    }
}

#[test]
fn flow_times_and_loss() {
    let (b, ne, e) = (2usize, 4usize, 8usize);
    let n = b * ne * e;
    let (xs, es) = (rand_f32(n, 1, 1.0), rand_f32(n, 2, 1.0));
    let z: Vec<f64> = rand_f32(b * ne, 3, 2.0).iter().map(|&v| v as f64).collect();
    unsafe {
        let mut t = poisoned(b * ne);
        assert_eq!(tkm_xar_logit_normal(b * ne, z.as_ptr(), 0.0, 1.0, t.as_mut_ptr()), TKM_STATUS_OK);
        let mut wt = vec![0.0f32; b * ne];
        x::xar_logit_normal_times(&z, 0.0, 1.0, &mut wt).unwrap();
        assert_eq!(bits(&t), bits(&wt));
        let mut t2 = poisoned(2);
        assert_eq!(tkm_xar_logit_normal(2, [0.0, f64::NAN].as_ptr(), 0.0, 1.0, t2.as_mut_ptr()), TKM_STATUS_NON_FINITE);
        assert_eq!(
            tkm_xar_logit_normal(2, [0.0, 1.0].as_ptr(), 0.0, 0.0, t2.as_mut_ptr()),
            TKM_STATUS_INVALID_ARGUMENT
        );
        assert!(untouched(&t2));

        let mut idx = [0i64; 3];
        assert_eq!(tkm_xar_timestep_index(3, [0.29f32, 1.0, 0.0].as_ptr(), idx.as_mut_ptr()), TKM_STATUS_OK);
        assert_eq!(idx, [290, 1000, 0]);
        assert_eq!(tkm_xar_timestep_index(2, [0.5f32, f32::NAN].as_ptr(), idx.as_mut_ptr()), TKM_STATUS_NON_FINITE);
        assert_eq!(tkm_xar_timestep_index(1, [2.0f32].as_ptr(), idx.as_mut_ptr()), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(idx, [290, 1000, 0]);

        let (mut xt, mut v) = (poisoned(n), poisoned(n));
        let (mut wx, mut wv) = (vec![0.0f32; n], vec![0.0f32; n]);
        x::xar_flow_interpolate(b, ne, e, &xs, &es, &t, &mut wx, &mut wv).unwrap();
        assert_eq!(
            tkm_xar_flow_interpolate(b, ne, e, xs.as_ptr(), es.as_ptr(), t.as_ptr(), xt.as_mut_ptr(), v.as_mut_ptr()),
            TKM_STATUS_OK
        );
        assert_eq!((bits(&xt), bits(&v)), (bits(&wx), bits(&wv)));
        let (mut xt2, mut v2) = (poisoned(n), poisoned(n));
        let mut tb = t.clone();
        tb[3] = f32::INFINITY;
        assert_eq!(
            tkm_xar_flow_interpolate(
                b,
                ne,
                e,
                xs.as_ptr(),
                es.as_ptr(),
                tb.as_ptr(),
                xt2.as_mut_ptr(),
                v2.as_mut_ptr()
            ),
            TKM_STATUS_NON_FINITE
        );
        tb[3] = -1.0;
        assert_eq!(
            tkm_xar_flow_interpolate(
                b,
                ne,
                e,
                xs.as_ptr(),
                es.as_ptr(),
                tb.as_ptr(),
                xt2.as_mut_ptr(),
                v2.as_mut_ptr()
            ),
            TKM_STATUS_INVALID_ARGUMENT
        );
        assert_eq!(
            tkm_xar_flow_interpolate(
                b,
                ne,
                e,
                xs.as_ptr(),
                es.as_ptr(),
                t.as_ptr(),
                xs.as_ptr() as *mut f32,
                v2.as_mut_ptr()
            ),
            TKM_STATUS_OVERLAP
        );
        assert_eq!(
            tkm_xar_flow_interpolate(
                b,
                ne,
                e,
                xs.as_ptr(),
                es.as_ptr(),
                t.as_ptr(),
                xt2.as_mut_ptr(),
                xt2.as_mut_ptr()
            ),
            TKM_STATUS_OVERLAP
        );
        assert_eq!(
            tkm_xar_flow_interpolate(
                usize::MAX,
                2,
                e,
                xs.as_ptr(),
                es.as_ptr(),
                t.as_ptr(),
                xt2.as_mut_ptr(),
                v2.as_mut_ptr()
            ),
            TKM_STATUS_SIZE_OVERFLOW
        );
        assert_eq!(
            tkm_xar_flow_interpolate(b, ne, e, null(), es.as_ptr(), t.as_ptr(), xt2.as_mut_ptr(), v2.as_mut_ptr()),
            TKM_STATUS_NULL_POINTER
        );
        assert!(untouched(&xt2) && untouched(&v2));

        let mut loss = -1.0f64;
        let mut g = poisoned(n);
        let mut wg = vec![0.0f32; n];
        let wl = x::xar_flow_loss(&xt, &v, b, Some(&mut wg)).unwrap();
        assert_eq!(tkm_xar_flow_loss(b, n, xt.as_ptr(), v.as_ptr(), &mut loss, g.as_mut_ptr()), TKM_STATUS_OK);
        assert_eq!((loss, bits(&g)), (wl, bits(&wg)));
        assert_eq!(tkm_xar_flow_loss(b, n, xt.as_ptr(), v.as_ptr(), &mut loss, null_mut()), TKM_STATUS_OK);
        assert_eq!(loss, wl);
        let mut l2 = -1.0f64;
        assert_eq!(tkm_xar_flow_loss(3, n, xt.as_ptr(), v.as_ptr(), &mut l2, null_mut()), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(tkm_xar_flow_loss(b, n, xt.as_ptr(), v.as_ptr(), &mut l2, xt.as_mut_ptr()), TKM_STATUS_OVERLAP);
        assert_eq!(tkm_xar_flow_loss(b, n, xt.as_ptr(), v.as_ptr(), null_mut(), null_mut()), TKM_STATUS_NULL_POINTER);
        assert_eq!(l2, -1.0);
    }
}

#[test]
fn sampler_pieces() {
    let n = 64;
    let v: Vec<f64> = rand_f32(n, 4, 2.0).iter().map(|&a| a as f64).collect();
    let xs: Vec<f64> = rand_f32(n, 5, 2.0).iter().map(|&a| a as f64).collect();
    let xi: Vec<f64> = rand_f32(n, 6, 1.0).iter().map(|&a| a as f64).collect();
    unsafe {
        let mut c = 0.0f64;
        for (rule, r) in [
            (TKM_XAR_CFG_LINEAR, CfgSchedule::Linear),
            (TKM_XAR_CFG_LINEAR_FROM_FIRST, CfgSchedule::LinearFromFirst),
            (TKM_XAR_CFG_CONSTANT, CfgSchedule::Constant),
        ] {
            assert_eq!(tkm_xar_cfg_schedule(2.7, 2, 4, rule, &mut c), TKM_STATUS_OK);
            assert_eq!(c, x::cfg_schedule(2.7, 2, 4, r).unwrap());
        }
        assert_eq!(tkm_xar_cfg_schedule(2.7, 4, 4, TKM_XAR_CFG_LINEAR, &mut c), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(tkm_xar_cfg_schedule(2.7, 0, 4, 9, &mut c), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(tkm_xar_cfg_schedule(2.7, 0, 4, TKM_XAR_CFG_LINEAR, null_mut()), TKM_STATUS_NULL_POINTER);

        let mut grid = vec![0.0f64; 41];
        let mut wgrid = vec![0.0f64; 41];
        x::xar_em_time_grid(1.0, 0.04, &mut wgrid).unwrap();
        assert_eq!(tkm_xar_em_time_grid(40, 1.0, 0.04, grid.as_mut_ptr()), TKM_STATUS_OK);
        assert_eq!(grid, wgrid);
        assert_eq!(tkm_xar_em_time_grid(0, 1.0, 0.04, grid.as_mut_ptr()), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(tkm_xar_em_time_grid(usize::MAX, 1.0, 0.04, grid.as_mut_ptr()), TKM_STATUS_SIZE_OVERFLOW);
        assert_eq!(grid, wgrid);

        let mut d = vec![0.0f64; n];
        let mut wd = vec![0.0f64; n];
        for (form, f) in [(TKM_XAR_DRIFT_CODE, DriftForm::Code), (TKM_XAR_DRIFT_CLOSED, DriftForm::Closed)] {
            x::em_drift_linear(&v, &xs, 0.5, f, &mut wd).unwrap();
            assert_eq!(tkm_xar_em_drift(n, v.as_ptr(), xs.as_ptr(), 0.5, form, d.as_mut_ptr()), TKM_STATUS_OK);
            assert_eq!(d, wd);
        }
        assert_eq!(
            tkm_xar_em_drift(n, v.as_ptr(), xs.as_ptr(), 0.0, TKM_XAR_DRIFT_CODE, d.as_mut_ptr()),
            TKM_STATUS_INVALID_ARGUMENT
        );
        assert_eq!(tkm_xar_em_drift(n, v.as_ptr(), xs.as_ptr(), 0.5, 7, d.as_mut_ptr()), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(tkm_xar_em_drift(n, v.as_ptr(), xs.as_ptr(), 0.5, 0, v.as_ptr() as *mut f64), TKM_STATUS_OVERLAP);
        assert_eq!(d, wd);

        let mut o = vec![0.0f64; n];
        let mut wo = vec![0.0f64; n];
        x::xar_cfg_combine(&d, &v, CfgGuidance { scale: 2.3, low: 0.0, high: 1.0 }, 0.5, &mut wo).unwrap();
        assert_eq!(tkm_xar_cfg_combine(n, d.as_ptr(), v.as_ptr(), 2.3, 0.0, 1.0, 0.5, o.as_mut_ptr()), TKM_STATUS_OK);
        assert_eq!(o, wo);
        assert_eq!(
            tkm_xar_cfg_combine(n, d.as_ptr(), v.as_ptr(), 2.3, 1.0, 0.0, 0.5, o.as_mut_ptr()),
            TKM_STATUS_INVALID_ARGUMENT
        );
        assert_eq!(
            tkm_xar_cfg_combine(n, d.as_ptr(), v.as_ptr(), 2.3, 0.0, 1.0, 0.5, d.as_ptr() as *mut f64),
            TKM_STATUS_OVERLAP
        );
        assert_eq!(o, wo);

        for noise in [Some(&xi[..]), None] {
            let mut s = xs.clone();
            let mut ws = xs.clone();
            x::xar_em_step(&mut ws, &d, 0.5, 0.4, noise).unwrap();
            let np = noise.map_or(null(), |z| z.as_ptr());
            assert_eq!(tkm_xar_em_step(n, s.as_mut_ptr(), d.as_ptr(), 0.5, 0.4, np), TKM_STATUS_OK);
            assert_eq!(s, ws);
        }
        let mut s = xs.clone();
        assert_eq!(
            tkm_xar_em_step(n, s.as_mut_ptr(), d.as_ptr(), -0.5, -0.6, xi.as_ptr()),
            TKM_STATUS_INVALID_ARGUMENT
        );
        assert_eq!(tkm_xar_em_step(n, s.as_mut_ptr(), s.as_ptr(), 0.5, 0.4, null()), TKM_STATUS_OVERLAP);
        assert_eq!(tkm_xar_em_step(n, s.as_mut_ptr(), null(), 0.5, 0.4, null()), TKM_STATUS_NULL_POINTER);
        assert_eq!(s, xs);
    }
}

/// Found by `fuzz/fuzz_targets/abi_methods.rs`: on an empty grid every `k` divides the
/// sides, and `k * k` overflowed (`TKM_STATUS_INTERNAL_PANIC` where overflow checks are
/// on). An empty grid is an empty ordering for any `k >= 1`.
#[test]
fn cell_permutation_of_an_empty_grid_takes_any_cell_size() {
    for (h, w) in [(0usize, 0usize), (0, 8), (8, 0)] {
        for k in [1usize, 1 << 33, usize::MAX] {
            let mut out = [7u32; 1];
            let s = unsafe { tkm_xar_cell_permutation(h, w, k, out.as_mut_ptr()) };
            if h % k == 0 && w % k == 0 {
                assert_eq!(s, TKM_STATUS_OK, "{h} {w} {k}");
            } else {
                assert_eq!(s, TKM_STATUS_INVALID_ARGUMENT, "{h} {w} {k}");
            }
            assert_eq!(out, [7]);
            let s = unsafe { tkm_xar_subsample_permutation(h, w, k, out.as_mut_ptr()) };
            assert_ne!(s, TKM_STATUS_INTERNAL_PANIC, "{h} {w} {k}");
        }
    }
}
