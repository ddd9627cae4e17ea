//! The QuoTA entry points against the core crate, bitwise, and their error statuses.

use core::ptr::null_mut;

use tokenmath::*;
use tokenmath_core::quota as q;
use tokenmath_testutil::{bits, poisoned, rand_f32, untouched};

#[test]
fn frames_weights_budgets_grid() {
    unsafe {
        let mut n = 0u32;
        assert_eq!(tkm_quota_frame_count(5400.0, 96, 64, &mut n), TKM_STATUS_OK);
        assert_eq!(n, 192);
        assert_eq!(tkm_quota_frame_count(f64::NAN, 96, 64, &mut n), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(tkm_quota_frame_count(1.0, 96, 64, null_mut()), TKM_STATUS_NULL_POINTER);
        let mut idx = [7u64; 5];
        assert_eq!(tkm_quota_frame_indices(101, 5, idx.as_mut_ptr()), TKM_STATUS_OK);
        assert_eq!(idx, [0, 25, 50, 75, 100]);
        assert_eq!(tkm_quota_frame_indices(0, 5, idx.as_mut_ptr()), TKM_STATUS_INVALID_ARGUMENT);

        let p = [0.9f32, 0.1, 0.5];
        let mut w = poisoned(3);
        let mut want = vec![0.0f32; 3];
        q::quota_frame_weights(&p, 100.0, 2.0, &mut want).unwrap();
        assert_eq!(tkm_quota_frame_weights(3, p.as_ptr(), 100.0, 2.0, w.as_mut_ptr()), TKM_STATUS_OK);
        assert_eq!(bits(&w), bits(&want));
        let mut w2 = poisoned(2);
        assert_eq!(
            tkm_quota_frame_weights(2, [0.5, f32::NAN].as_ptr(), 100.0, 2.0, w2.as_mut_ptr()),
            TKM_STATUS_NON_FINITE
        );
        assert_eq!(
            tkm_quota_frame_weights(2, [0.5, 2.0].as_ptr(), 100.0, 2.0, w2.as_mut_ptr()),
            TKM_STATUS_INVALID_ARGUMENT
        );
        assert!(untouched(&w2));

        let mut v = [0.7f32, 0.2, 0.1];
        let mut vw = v;
        q::quota_scale_weights(&mut vw, 0.4).unwrap();
        assert_eq!(tkm_quota_scale_weights(3, v.as_mut_ptr(), 0.4), TKM_STATUS_OK);
        assert_eq!(v, vw);
        let mut bad = [0.5f32, -1.0];
        assert_eq!(tkm_quota_scale_weights(2, bad.as_mut_ptr(), 0.4), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(bad, [0.5, -1.0]);

        let mut b = [0u32; 3];
        let third = [1.0f32 / 3.0; 3];
        assert_eq!(
            tkm_quota_token_budgets(3, third.as_ptr(), 100, TKM_BUDGET_LARGEST_REMAINDER, b.as_mut_ptr()),
            TKM_STATUS_OK
        );
        assert_eq!(b, [34, 33, 33]);
        assert_eq!(tkm_quota_token_budgets(3, third.as_ptr(), 100, TKM_BUDGET_TRUNCATE, b.as_mut_ptr()), TKM_STATUS_OK);
        assert_eq!(b, [33, 33, 33]);
        assert_eq!(tkm_quota_token_budgets(3, third.as_ptr(), 100, 5, b.as_mut_ptr()), TKM_STATUS_INVALID_ARGUMENT);

        let (mut h, mut ww) = (0u32, 0u32);
        assert_eq!(tkm_quota_grid_for_budget(12, &mut h, &mut ww), TKM_STATUS_OK);
        assert_eq!((h, ww), (4, 3));
        assert_eq!(tkm_quota_grid_for_budget(12, null_mut(), &mut ww), TKM_STATUS_NULL_POINTER);
    }
}

#[test]
fn resize_matches_the_core() {
    let x = rand_f32(27 * 27 * 4, 3, 1.0);
    for (mode, f) in [
        (TKM_RESIZE_BILINEAR, q::bilinear_resize_hwc as fn(&[f32], usize, usize, usize, usize, usize, &mut [f32]) -> _),
        (TKM_RESIZE_ADAPTIVE_AVG_POOL, q::adaptive_avg_pool_hwc),
    ] {
        let mut want = vec![0.0f32; 4 * 3 * 4];
        f(&x, 27, 27, 4, 4, 3, &mut want).unwrap();
        let mut out = poisoned(4 * 3 * 4);
        unsafe {
            assert_eq!(tkm_quota_resize_hwc(x.as_ptr(), 27, 27, 4, 4, 3, mode, out.as_mut_ptr()), TKM_STATUS_OK);
            assert_eq!(bits(&out), bits(&want));
            let mut out = poisoned(4);
            assert_eq!(
                tkm_quota_resize_hwc(x.as_ptr(), 27, 27, 4, 0, 3, mode, out.as_mut_ptr()),
                TKM_STATUS_INVALID_ARGUMENT
            );
            assert_eq!(
                tkm_quota_resize_hwc(x.as_ptr(), 27, 27, 4, 1, 1, 9, out.as_mut_ptr()),
                TKM_STATUS_INVALID_ARGUMENT
            );
            assert_eq!(
                tkm_quota_resize_hwc(x.as_ptr(), usize::MAX, 27, 4, 1, 1, mode, out.as_mut_ptr()),
                TKM_STATUS_SIZE_OVERFLOW
            );
            assert!(untouched(&out));
            let mut y = x.clone();
            assert_eq!(tkm_quota_resize_hwc(y.as_ptr(), 2, 2, 1, 1, 1, mode, y.as_mut_ptr()), TKM_STATUS_OVERLAP);
        }
    }
}

#[test]
fn tome_round_matches_the_core() {
    let (t, dim, r) = (9usize, 4usize, 3usize);
    let x = rand_f32(t * dim, 11, 1.0);
    let (lf, lu) = q::tome_scratch_len(t);
    let mut want = vec![0.0f32; t * dim];
    let k = q::tome_bipartite_round(&x, t, dim, r, &mut vec![0.0; lf], &mut vec![0; lu], &mut want).unwrap();
    let mut out = poisoned(t * dim);
    let mut k_out = 0usize;
    unsafe {
        assert_eq!(tkm_quota_tome_round(x.as_ptr(), t, dim, r, out.as_mut_ptr(), &mut k_out), TKM_STATUS_OK);
        assert_eq!(k_out, k);
        assert_eq!(bits(&out[..k * dim]), bits(&want[..k * dim]));
        assert!(untouched(&out[k * dim..]));
        let mut bad = x.clone();
        bad[5] = f32::INFINITY;
        let mut out = poisoned(t * dim);
        assert_eq!(tkm_quota_tome_round(bad.as_ptr(), t, dim, r, out.as_mut_ptr(), &mut k_out), TKM_STATUS_NON_FINITE);
        assert_eq!(tkm_quota_tome_round(x.as_ptr(), t, dim, r, x.as_ptr() as *mut f32, &mut k_out), TKM_STATUS_OVERLAP);
        assert_eq!(tkm_quota_tome_round(x.as_ptr(), t, dim, r, out.as_mut_ptr(), null_mut()), TKM_STATUS_NULL_POINTER);
        assert!(untouched(&out));
    }
}
