//! The token-level advantage estimators and DAPO extras against the core crate, bitwise, and
//! their error statuses (outputs untouched on error).

use core::ptr::{null, null_mut};
use std::mem::size_of;

use tokenmath::advantages::*;
use tokenmath::*;
use tokenmath_core::advantages::{self as adv, Compat, Groups, OverlongCfg, SingletonPolicy};
use tokenmath_testutil::{bits, rand_f32, untouched, POISON};

/// `[rows, t]` with prefix masks of varying length, one row empty and one with a gap.
fn mask(rows: usize, t: usize) -> Vec<u8> {
    (0..rows * t)
        .map(|i| {
            let (b, j) = (i / t, i % t);
            u8::from(b != 1 && j < 2 + (b * 5) % t && !(b == 3 && j == 2))
        })
        .collect()
}

const COMPATS: [(u32, Compat); 2] = [(TKM_COMPAT_LIBRARY, Compat::Library), (TKM_COMPAT_VERL, Compat::Verl)];

#[test]
fn token_level_estimators_match_core() {
    let (rows, t) = (8usize, 13usize);
    let n = rows * t;
    let m = mask(rows, t);
    let r = rand_f32(n, 1, 2.0);
    let v = rand_f32(n, 2, 1.0);
    for gamma in [1.0f32, 0.99, 0.0] {
        let mut want = vec![0f32; n];
        adv::returns_to_go(&r, &m, t, gamma, &mut want).unwrap();
        let mut got = vec![POISON; n];
        let s = unsafe { tkm_returns_to_go(r.as_ptr(), m.as_ptr(), rows, t, gamma, got.as_mut_ptr()) };
        assert_eq!(s, TKM_STATUS_OK);
        assert_eq!(bits(&got), bits(&want));

        for (code, compat) in COMPATS {
            let (mut a, mut g) = (vec![0f32; n], vec![0f32; n]);
            adv::reinforce_pp_advantage(&r, &m, t, gamma, compat, &mut a, &mut g).unwrap();
            let (mut a2, mut g2) = (vec![POISON; n], vec![POISON; n]);
            let s = unsafe {
                tkm_reinforce_pp_advantage(
                    r.as_ptr(),
                    m.as_ptr(),
                    rows,
                    t,
                    gamma,
                    code,
                    a2.as_mut_ptr(),
                    g2.as_mut_ptr(),
                )
            };
            assert_eq!(s, TKM_STATUS_OK);
            assert_eq!((bits(&a2), bits(&g2)), (bits(&a), bits(&g)));
            let mut a3 = vec![POISON; n];
            let s = unsafe {
                tkm_reinforce_pp_advantage(r.as_ptr(), m.as_ptr(), rows, t, gamma, code, a3.as_mut_ptr(), null_mut())
            };
            assert_eq!(s, TKM_STATUS_OK);
            assert_eq!(bits(&a3), bits(&a));

            for lam in [1.0f32, 0.95] {
                let (mut a, mut g) = (vec![0f32; n], vec![0f32; n]);
                adv::gae(&r, &v, &m, t, &adv::GaeCfg { gamma, lam, compat }, adv::GaeOut { adv: &mut a, ret: &mut g })
                    .unwrap();
                let (mut a2, mut g2) = (vec![POISON; n], vec![POISON; n]);
                let s = unsafe {
                    tkm_gae(
                        r.as_ptr(),
                        v.as_ptr(),
                        m.as_ptr(),
                        rows,
                        t,
                        gamma,
                        lam,
                        code,
                        a2.as_mut_ptr(),
                        g2.as_mut_ptr(),
                    )
                };
                assert_eq!(s, TKM_STATUS_OK);
                assert_eq!((bits(&a2), bits(&g2)), (bits(&a), bits(&g)));
                let mut a3 = vec![POISON; n];
                let s = unsafe {
                    tkm_gae(r.as_ptr(), v.as_ptr(), m.as_ptr(), rows, t, gamma, lam, code, a3.as_mut_ptr(), null_mut())
                };
                assert_eq!(s, TKM_STATUS_OK);
                assert_eq!(bits(&a3), bits(&a));
            }
        }
    }

    // REINFORCE++-baseline, contiguous and id groups, both singleton policies.
    let rewards = rand_f32(rows, 3, 1.0);
    let ids: Vec<u32> = (0..rows as u32).map(|b| [5, 9, 5, 2, 9, 5, 9, 9][b as usize]).collect();
    for (sp_code, sp) in [
        (TKM_SINGLETON_ZERO, SingletonPolicy::Zero),
        (TKM_SINGLETON_MEAN_ZERO_STD_ONE, SingletonPolicy::MeanZeroStdOne),
    ] {
        for (code, compat) in COMPATS {
            for (ids_p, size, g) in
                [(null(), 4usize, Groups::Contiguous { size: 4 }), (ids.as_ptr(), 0, Groups::Ids(&ids))]
            {
                let mut want = vec![0f32; n];
                adv::reinforce_pp_baseline_advantage(&rewards, g, &m, t, sp, compat, &mut want).unwrap();
                let mut got = vec![POISON; n];
                let s = unsafe {
                    tkm_reinforce_pp_baseline_advantage(
                        rewards.as_ptr(),
                        rows,
                        ids_p,
                        size,
                        m.as_ptr(),
                        t,
                        sp_code,
                        code,
                        got.as_mut_ptr(),
                    )
                };
                assert_eq!(s, TKM_STATUS_OK);
                assert_eq!(bits(&got), bits(&want));
            }
        }
    }

    // Masked whitening, out aliasing x.
    for (code, compat) in COMPATS {
        for eps in [1e-8f32, 0.0, 0.5] {
            let mut want = vec![0f32; n];
            adv::masked_whiten(&v, &m, eps, compat, &mut want).unwrap();
            let mut got = vec![POISON; n];
            let s = unsafe { tkm_masked_whiten(v.as_ptr(), m.as_ptr(), n, eps, code, got.as_mut_ptr()) };
            assert_eq!(s, TKM_STATUS_OK);
            assert_eq!(bits(&got), bits(&want));
            let mut inplace = v.clone();
            let s = unsafe { tkm_masked_whiten(inplace.as_ptr(), m.as_ptr(), n, eps, code, inplace.as_mut_ptr()) };
            assert_eq!(s, TKM_STATUS_OK);
            assert_eq!(bits(&inplace), bits(&want));
        }
    }
}

#[test]
fn dapo_extras_match_core() {
    let mut o = tkm_overlong_options { struct_size: 0, max_len: 0, buffer_len: 0, penalty_factor: 0.0 };
    assert_eq!(unsafe { tkm_overlong_options_init(&mut o) }, TKM_STATUS_OK);
    let d = OverlongCfg::default();
    assert_eq!(
        o,
        tkm_overlong_options {
            struct_size: size_of::<tkm_overlong_options>(),
            max_len: d.max_len,
            buffer_len: d.buffer_len,
            penalty_factor: d.penalty_factor,
        }
    );
    let small = tkm_overlong_options { max_len: 10, buffer_len: 4, penalty_factor: 0.5, ..o };
    let small_cfg = OverlongCfg { max_len: 10, buffer_len: 4, penalty_factor: 0.5 };
    for (opts, cfg) in [(&o as *const tkm_overlong_options, d), (null(), d), (&small, small_cfg)] {
        for len in [0usize, 5, 6, 7, 10, 13, 16_384, 18_000, 20_480, 30_000] {
            let want = adv::overlong_penalty(len, &cfg).unwrap();
            let mut got = POISON;
            assert_eq!(unsafe { tkm_overlong_penalty(len, opts, &mut got) }, TKM_STATUS_OK);
            assert_eq!(got.to_bits(), want.to_bits());
        }
    }
    let (rows, t) = (6usize, 12usize);
    let m = mask(rows, t);
    let scores = rand_f32(rows, 4, 1.0);
    let mut want = vec![0f32; rows * t];
    adv::overlong_shaped_token_rewards(&scores, &m, t, &small_cfg, &mut want).unwrap();
    let mut got = vec![POISON; rows * t];
    let s =
        unsafe { tkm_overlong_shaped_token_rewards(scores.as_ptr(), rows, m.as_ptr(), t, &small, got.as_mut_ptr()) };
    assert_eq!(s, TKM_STATUS_OK);
    assert_eq!(bits(&got), bits(&want));

    // Dynamic sampling: groups of 3, some constant (with -0 == +0), one NaN-free varying.
    let metric = [1.0f32, 1.0, 1.0, 0.0, -0.0, 0.0, 0.0, 1.0, 0.0, 0.5, 0.5, 0.25];
    let ids = [3u32, 4, 3, 4, 3, 4, 7, 8, 8, 7, 7, 9];
    for (ids_p, size, g) in [(null(), 3usize, Groups::Contiguous { size: 3 }), (ids.as_ptr(), 0, Groups::Ids(&ids))] {
        let mut want = [0u8; 12];
        let kept = adv::dynamic_sampling_keep(&metric, g, &mut want).unwrap();
        let mut got = [7u8; 12];
        let mut kept2 = 99usize;
        let s = unsafe { tkm_dynamic_sampling_keep(metric.as_ptr(), 12, ids_p, size, got.as_mut_ptr(), &mut kept2) };
        assert_eq!(s, TKM_STATUS_OK);
        assert_eq!((got, kept2), (want, kept));
        let s = unsafe { tkm_dynamic_sampling_keep(metric.as_ptr(), 12, ids_p, size, got.as_mut_ptr(), null_mut()) };
        assert_eq!(s, TKM_STATUS_OK);
    }
}

#[test]
fn token_level_errors_write_nothing() {
    let (rows, t) = (3usize, 4usize);
    let n = rows * t;
    let m = vec![1u8; n];
    let r = vec![0.5f32; n];
    let mut a = vec![POISON; n];
    let mut g = vec![POISON; n];
    unsafe {
        // returns-to-go
        assert_eq!(
            tkm_returns_to_go(r.as_ptr(), m.as_ptr(), rows, t, -1.0, a.as_mut_ptr()),
            TKM_STATUS_INVALID_ARGUMENT
        );
        assert_eq!(tkm_returns_to_go(null(), m.as_ptr(), rows, t, 1.0, a.as_mut_ptr()), TKM_STATUS_NULL_POINTER);
        assert_eq!(
            tkm_returns_to_go(r.as_ptr(), m.as_ptr(), usize::MAX, 2, 1.0, a.as_mut_ptr()),
            TKM_STATUS_SIZE_OVERFLOW
        );
        let mut bad = r.clone();
        bad[5] = f32::INFINITY;
        assert_eq!(tkm_returns_to_go(bad.as_ptr(), m.as_ptr(), rows, t, 1.0, a.as_mut_ptr()), TKM_STATUS_NON_FINITE);
        // REINFORCE++
        let rpp = |r: *const f32, m: *const u8, gamma: f32, c: u32, a: &mut [f32], g: &mut [f32]| {
            tkm_reinforce_pp_advantage(r, m, rows, t, gamma, c, a.as_mut_ptr(), g.as_mut_ptr())
        };
        assert_eq!(rpp(r.as_ptr(), m.as_ptr(), 1.0, 2, &mut a, &mut g), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(rpp(r.as_ptr(), m.as_ptr(), f32::NAN, 0, &mut a, &mut g), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(rpp(bad.as_ptr(), m.as_ptr(), 1.0, 0, &mut a, &mut g), TKM_STATUS_NON_FINITE);
        assert_eq!(rpp(r.as_ptr(), null(), 1.0, 0, &mut a, &mut g), TKM_STATUS_NULL_POINTER);
        // verl compat with a single valid token: an error; the library form gives zeros.
        let mut one = vec![0u8; n];
        one[0] = 1;
        assert_eq!(rpp(r.as_ptr(), one.as_ptr(), 1.0, TKM_COMPAT_VERL, &mut a, &mut g), TKM_STATUS_INVALID_ARGUMENT);
        assert!(untouched(&a) && untouched(&g));
        // GAE
        let gae = |v: *const f32, gamma: f32, lam: f32, a: &mut [f32]| {
            tkm_gae(r.as_ptr(), v, m.as_ptr(), rows, t, gamma, lam, 0, a.as_mut_ptr(), null_mut())
        };
        assert_eq!(gae(r.as_ptr(), 1.0, -0.5, &mut a), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(gae(r.as_ptr(), f32::INFINITY, 1.0, &mut a), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(gae(bad.as_ptr(), 1.0, 1.0, &mut a), TKM_STATUS_NON_FINITE);
        assert_eq!(gae(null(), 1.0, 1.0, &mut a), TKM_STATUS_NULL_POINTER);
        assert_eq!(
            tkm_gae(r.as_ptr(), r.as_ptr(), m.as_ptr(), rows, t, 1.0, 1.0, 9, a.as_mut_ptr(), null_mut()),
            TKM_STATUS_INVALID_ARGUMENT
        );
        // REINFORCE++-baseline
        let base = |rw: *const f32, ids: *const u32, size: usize, sp: u32, c: u32, a: &mut [f32]| {
            tkm_reinforce_pp_baseline_advantage(rw, rows, ids, size, m.as_ptr(), t, sp, c, a.as_mut_ptr())
        };
        let rw = [1.0f32, 0.0, f32::NAN];
        let ids = [1u32, 1, 2];
        assert_eq!(base(r.as_ptr(), null(), 2, 0, 0, &mut a), TKM_STATUS_INVALID_ARGUMENT); // 3 % 2
        assert_eq!(base(r.as_ptr(), ids.as_ptr(), 3, 0, 0, &mut a), TKM_STATUS_INVALID_ARGUMENT); // both
        assert_eq!(base(r.as_ptr(), null(), 0, 0, 0, &mut a), TKM_STATUS_INVALID_ARGUMENT); // neither
        assert_eq!(base(r.as_ptr(), null(), 3, 2, 0, &mut a), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(base(r.as_ptr(), null(), 3, 0, 2, &mut a), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(base(rw.as_ptr(), ids.as_ptr(), 0, 0, 0, &mut a), TKM_STATUS_NON_FINITE);
        assert_eq!(base(null(), ids.as_ptr(), 0, 0, 0, &mut a), TKM_STATUS_NULL_POINTER);
        // Whitening
        assert_eq!(tkm_masked_whiten(r.as_ptr(), m.as_ptr(), n, -1.0, 0, a.as_mut_ptr()), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(tkm_masked_whiten(r.as_ptr(), m.as_ptr(), n, 0.0, 3, a.as_mut_ptr()), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(tkm_masked_whiten(r.as_ptr(), m.as_ptr(), n, 0.0, 0, null_mut()), TKM_STATUS_NULL_POINTER);
        assert_eq!(
            tkm_masked_whiten(r.as_ptr(), one.as_ptr(), n, 0.0, TKM_COMPAT_VERL, a.as_mut_ptr()),
            TKM_STATUS_INVALID_ARGUMENT
        );
        assert!(untouched(&a));

        // Overlong
        let mut o = tkm_overlong_options { struct_size: 0, max_len: 0, buffer_len: 0, penalty_factor: 0.0 };
        assert_eq!(tkm_overlong_options_init(null_mut()), TKM_STATUS_NULL_POINTER);
        tkm_overlong_options_init(&mut o);
        let mut p = POISON;
        for bad in [
            tkm_overlong_options { buffer_len: 0, ..o },
            tkm_overlong_options { buffer_len: o.max_len + 1, ..o },
            tkm_overlong_options { penalty_factor: -1.0, ..o },
            tkm_overlong_options { penalty_factor: f32::NAN, ..o },
        ] {
            assert_eq!(tkm_overlong_penalty(5, &bad, &mut p), TKM_STATUS_INVALID_ARGUMENT);
            assert_eq!(
                tkm_overlong_shaped_token_rewards(r.as_ptr(), rows, m.as_ptr(), t, &bad, a.as_mut_ptr()),
                TKM_STATUS_INVALID_ARGUMENT
            );
        }
        assert_eq!(tkm_overlong_penalty(5, &o, null_mut()), TKM_STATUS_NULL_POINTER);
        let bad_size = tkm_overlong_options { struct_size: 12, ..o };
        assert_eq!(tkm_overlong_penalty(5, &bad_size, &mut p), TKM_STATUS_BAD_STRUCT_SIZE);
        // An older struct (max_len only) keeps the default buffer and factor.
        let older = tkm_overlong_options { struct_size: 16, max_len: 8192, buffer_len: 0, penalty_factor: -3.0 };
        assert_eq!(tkm_overlong_penalty(8192, &older, &mut p), TKM_STATUS_OK);
        assert_eq!(p, -1.0);
        p = POISON;
        let sc = [1.0f32, f32::NAN, 0.0];
        assert_eq!(
            tkm_overlong_shaped_token_rewards(sc.as_ptr(), rows, m.as_ptr(), t, null(), a.as_mut_ptr()),
            TKM_STATUS_NON_FINITE
        );
        assert_eq!(
            tkm_overlong_shaped_token_rewards(r.as_ptr(), rows, null(), t, null(), a.as_mut_ptr()),
            TKM_STATUS_NULL_POINTER
        );
        assert!(untouched(&a) && p.to_bits() == POISON.to_bits());

        // Dynamic sampling
        let mut keep = [7u8; 3];
        let mut kept = 99usize;
        let metric = [1.0f32, f32::NAN, 0.0];
        assert_eq!(
            tkm_dynamic_sampling_keep(metric.as_ptr(), 3, null(), 3, keep.as_mut_ptr(), &mut kept),
            TKM_STATUS_NON_FINITE
        );
        assert_eq!(
            tkm_dynamic_sampling_keep(metric.as_ptr(), 3, null(), 2, keep.as_mut_ptr(), &mut kept),
            TKM_STATUS_INVALID_ARGUMENT
        );
        assert_eq!(
            tkm_dynamic_sampling_keep(null(), 3, null(), 3, keep.as_mut_ptr(), &mut kept),
            TKM_STATUS_NULL_POINTER
        );
        assert_eq!((keep, kept), ([7u8; 3], 99));
    }
}

// ---------------------------------------------------------------------------------------
// Data-parallel group moments: per-rank tables, their merge, advantages from the table.
// ---------------------------------------------------------------------------------------

/// The group moments of rows `[r0, r1)` through the ABI.
fn abi_moments(r: &[f32], ids: &[u32], w: Option<&[f32]>) -> (Vec<u32>, Vec<tkm_moments>) {
    let n = r.len();
    let (mut t_ids, mut t) = (vec![u32::MAX; n], vec![tkm_moments { n: -1.0, mean: -1.0, m2: -1.0 }; n]);
    let mut k = usize::MAX;
    let s = unsafe {
        tkm_group_moments(
            r.as_ptr(),
            n,
            ids.as_ptr(),
            0,
            w.map_or(null(), |w| w.as_ptr()),
            t_ids.as_mut_ptr(),
            t.as_mut_ptr(),
            n,
            &mut k,
        )
    };
    assert_eq!(s, TKM_STATUS_OK);
    // Nothing past K is written.
    assert!(t_ids[k..].iter().all(|&i| i == u32::MAX) && t[k..].iter().all(|m| m.n == -1.0));
    t_ids.truncate(k);
    t.truncate(k);
    (t_ids, t)
}

fn abi_merge(ids: &[u32], t: &[tkm_moments]) -> (Vec<u32>, Vec<tkm_moments>) {
    let e = ids.len();
    let (mut m_ids, mut m) = (vec![0u32; e], vec![tkm_moments::default(); e]);
    let mut k = 0usize;
    let s =
        unsafe { tkm_group_moments_merge(ids.as_ptr(), t.as_ptr(), e, m_ids.as_mut_ptr(), m.as_mut_ptr(), e, &mut k) };
    assert_eq!(s, TKM_STATUS_OK);
    m_ids.truncate(k);
    m.truncate(k);
    (m_ids, m)
}

/// Splits a batch of 60 responses in 15 groups (ids shuffled) over `ranks` contiguous row
/// ranges, as a data-parallel trainer does: the merged table equals the core's, and the
/// advantages equal one `tkm_grpo_advantage` on the whole batch — bitwise for every group
/// that lives on one rank, within `1e-6` relative for a split group.
#[test]
fn rank_split_moments_merge_to_the_whole_batch() {
    let n = 60;
    let r = rand_f32(n, 41, 3.0);
    let ids: Vec<u32> = (0..n).map(|b| ((b * 37) % 15) as u32 * 1000 + 3).collect();
    let whole_ids: Vec<u32> = ids.clone();
    let mut whole = vec![POISON; n];
    assert_eq!(
        unsafe { tkm_grpo_advantage(r.as_ptr(), n, whole_ids.as_ptr(), 0, null(), whole.as_mut_ptr()) },
        TKM_STATUS_OK
    );
    for ranks in [1usize, 2, 3, 4, 7] {
        let bounds: Vec<usize> = (0..=ranks).map(|k| k * n / ranks).collect();
        let (mut g_ids, mut g_t) = (Vec::new(), Vec::new());
        for w in bounds.windows(2) {
            let (i, t) = abi_moments(&r[w[0]..w[1]], &ids[w[0]..w[1]], None);
            // Each table is the core's, bitwise.
            let (mut ci, mut cm) = (vec![0u32; n], vec![adv::Moments::EMPTY; n]);
            let k = adv::group_moments(&r[w[0]..w[1]], Groups::Ids(&ids[w[0]..w[1]]), None, &mut ci, &mut cm).unwrap();
            assert_eq!(i, ci[..k]);
            assert!(t
                .iter()
                .zip(&cm)
                .all(|(a, b)| (a.n, a.mean.to_bits(), a.m2.to_bits()) == (b.n, b.mean.to_bits(), b.m2.to_bits())));
            g_ids.extend(i);
            g_t.extend(t);
        }
        let (m_ids, m) = abi_merge(&g_ids, &g_t);
        assert_eq!(m_ids.len(), 15);
        let mut got = vec![POISON; n];
        for w in bounds.windows(2) {
            let s = unsafe {
                tkm_grpo_advantage_from_moments(
                    r[w[0]..].as_ptr(),
                    w[1] - w[0],
                    ids[w[0]..].as_ptr(),
                    m_ids.as_ptr(),
                    m.as_ptr(),
                    m_ids.len(),
                    null(),
                    got[w[0]..].as_mut_ptr(),
                )
            };
            assert_eq!(s, TKM_STATUS_OK);
        }
        for b in 0..n {
            let on_one_rank =
                bounds.windows(2).any(|w| (0..n).filter(|&c| ids[c] == ids[b]).all(|c| (w[0]..w[1]).contains(&c)));
            if on_one_rank {
                assert_eq!(got[b].to_bits(), whole[b].to_bits(), "{ranks} ranks, row {b}");
            } else {
                assert!((got[b] - whole[b]).abs() <= 1e-6 * (1.0 + whole[b].abs()), "{ranks} ranks, row {b}");
            }
        }
        if ranks == 1 {
            assert_eq!(bits(&got), bits(&whole));
        }
    }
}

#[test]
fn group_moment_errors_write_nothing() {
    let r = [1.0f32, 2.0, 3.0, 4.0];
    let ids = [5u32, 6, 5, 6];
    let (mut t_ids, mut t) = ([7u32; 4], [tkm_moments { n: 9.0, mean: 9.0, m2: 9.0 }; 4]);
    let mut k = 42usize;
    let untouched_tables = |t_ids: &[u32], t: &[tkm_moments], k: usize| {
        t_ids.iter().all(|&i| i == 7) && t.iter().all(|m| m.n == 9.0) && k == 42
    };
    unsafe {
        // Capacity below K.
        let s =
            tkm_group_moments(r.as_ptr(), 4, ids.as_ptr(), 0, null(), t_ids.as_mut_ptr(), t.as_mut_ptr(), 1, &mut k);
        assert_eq!(s, TKM_STATUS_LENGTH_MISMATCH);
        // A negative weight, a NaN weight, a NaN value with non-zero weight.
        for (w, want) in [
            ([1.0f32, -1.0, 1.0, 1.0], TKM_STATUS_INVALID_ARGUMENT),
            ([1.0, f32::NAN, 1.0, 1.0], TKM_STATUS_NON_FINITE),
        ] {
            let s = tkm_group_moments(
                r.as_ptr(),
                4,
                ids.as_ptr(),
                0,
                w.as_ptr(),
                t_ids.as_mut_ptr(),
                t.as_mut_ptr(),
                4,
                &mut k,
            );
            assert_eq!(s, want);
        }
        let rn = [1.0f32, f32::NAN, 3.0, 4.0];
        let s =
            tkm_group_moments(rn.as_ptr(), 4, ids.as_ptr(), 0, null(), t_ids.as_mut_ptr(), t.as_mut_ptr(), 4, &mut k);
        assert_eq!(s, TKM_STATUS_NON_FINITE);
        // Both or neither of ids / group_size; NULL outputs.
        let s =
            tkm_group_moments(r.as_ptr(), 4, ids.as_ptr(), 2, null(), t_ids.as_mut_ptr(), t.as_mut_ptr(), 4, &mut k);
        assert_eq!(s, TKM_STATUS_INVALID_ARGUMENT);
        let s = tkm_group_moments(
            r.as_ptr(),
            4,
            ids.as_ptr(),
            0,
            null(),
            t_ids.as_mut_ptr(),
            t.as_mut_ptr(),
            4,
            null_mut(),
        );
        assert_eq!(s, TKM_STATUS_NULL_POINTER);
        assert!(untouched_tables(&t_ids, &t, k));

        // A weight of 0 leaves an unscorable row out: same as dropping it.
        let rn = [1.0f32, f32::NAN, 3.0, 4.0];
        let w = [1.0f32, 0.0, 1.0, 1.0];
        let s = tkm_group_moments(
            rn.as_ptr(),
            4,
            ids.as_ptr(),
            0,
            w.as_ptr(),
            t_ids.as_mut_ptr(),
            t.as_mut_ptr(),
            4,
            &mut k,
        );
        assert_eq!((s, k), (TKM_STATUS_OK, 2));
        assert_eq!(t[1], tkm_moments { n: 1.0, mean: 4.0, m2: 0.0 });
        // Contiguous groups: ids are block indices.
        let s = tkm_group_moments(r.as_ptr(), 4, null(), 2, null(), t_ids.as_mut_ptr(), t.as_mut_ptr(), 4, &mut k);
        assert_eq!((s, k, &t_ids[..2]), (TKM_STATUS_OK, 2, &[0u32, 1][..]));

        // Merge: an invalid entry, capacity below K; zero entries give K = 0.
        let good = [tkm_moments { n: 1.0, mean: 1.0, m2: 0.0 }; 2];
        let bad = [good[0], tkm_moments { n: 1.0, mean: f64::INFINITY, m2: 0.0 }];
        let (mut o_ids, mut o) = ([7u32; 2], [tkm_moments { n: 9.0, mean: 9.0, m2: 9.0 }; 2]);
        let mut k2 = 42usize;
        let pair = [1u32, 2];
        let s = tkm_group_moments_merge(pair.as_ptr(), bad.as_ptr(), 2, o_ids.as_mut_ptr(), o.as_mut_ptr(), 2, &mut k2);
        assert_eq!(s, TKM_STATUS_INVALID_ARGUMENT);
        let s =
            tkm_group_moments_merge(pair.as_ptr(), good.as_ptr(), 2, o_ids.as_mut_ptr(), o.as_mut_ptr(), 1, &mut k2);
        assert_eq!(s, TKM_STATUS_LENGTH_MISMATCH);
        assert!(untouched_tables(&o_ids, &o, k2));
        let s = tkm_group_moments_merge(null(), null(), 0, null_mut(), null_mut(), 0, &mut k2);
        assert_eq!((s, k2), (TKM_STATUS_OK, 0));

        // Advantages from a table: a flavor not defined by moments, a missing id, a repeated id.
        let mut out = [POISON; 4];
        let table_ids = [5u32, 6];
        let o_v = tkm_grpo_options { flavor: TKM_GRPO_VERL_VECTORIZED, ..Default::default() };
        let s = tkm_grpo_advantage_from_moments(
            r.as_ptr(),
            4,
            ids.as_ptr(),
            table_ids.as_ptr(),
            good.as_ptr(),
            2,
            &o_v,
            out.as_mut_ptr(),
        );
        assert_eq!(s, TKM_STATUS_INVALID_ARGUMENT);
        let s = tkm_grpo_advantage_from_moments(
            r.as_ptr(),
            4,
            ids.as_ptr(),
            table_ids.as_ptr(),
            good.as_ptr(),
            1,
            null(),
            out.as_mut_ptr(),
        );
        assert_eq!(s, TKM_STATUS_INVALID_ARGUMENT);
        let same = [5u32, 5];
        let s = tkm_grpo_advantage_from_moments(
            r.as_ptr(),
            4,
            ids.as_ptr(),
            same.as_ptr(),
            good.as_ptr(),
            2,
            null(),
            out.as_mut_ptr(),
        );
        assert_eq!(s, TKM_STATUS_INVALID_ARGUMENT);
        let s = tkm_grpo_advantage_from_moments(
            r.as_ptr(),
            4,
            null(),
            table_ids.as_ptr(),
            good.as_ptr(),
            2,
            null(),
            out.as_mut_ptr(),
        );
        assert_eq!(s, TKM_STATUS_NULL_POINTER);
        assert!(untouched(&out));
    }
}
