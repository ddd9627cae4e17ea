//! The C ABI of the seed methods agrees bitwise with the core kernels, writes nothing on
//! error, and reads the options structs by the growth rule.

use tokenmath::*;
use tokenmath_core::policy_loss::BatchShape;
use tokenmath_core::seed as core_seed;
use tokenmath_core::Exec;

fn entropy_batch(rows: usize, cols: usize, seed: u64) -> (Vec<u8>, Vec<f32>) {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let n = rows * cols;
    let mask = (0..n).map(|_| (next() % 4 != 0) as u8).collect();
    // Coarse values so that ties happen.
    let ent = (0..n).map(|_| (next() % 64) as f32 / 8.0).collect();
    (mask, ent)
}

#[test]
fn entropy_threshold_and_masks_match_core() {
    for (rows, cols, rho) in [(0, 5, 0.2f32), (3, 7, 0.2), (8, 33, 0.5), (5, 100, 1.0), (4, 9, 1e-3)] {
        let (mask, ent) = entropy_batch(rows, cols, rows as u64 * 31 + cols as u64);
        let shape = BatchShape::new(rows, cols);
        let want = core_seed::top_entropy_threshold(Exec::new(), shape, &mask, &ent, rho).unwrap();
        let (mut has, mut theta) = (9u32, f32::NAN);
        let s = unsafe {
            tkm_top_entropy_threshold(
                std::ptr::null(),
                mask.as_ptr(),
                ent.as_ptr(),
                rows,
                cols,
                rho,
                &mut has,
                &mut theta,
            )
        };
        assert_eq!(s, TKM_STATUS_OK);
        assert_eq!(has == 1, want.is_some());
        if let Some(w) = want {
            assert_eq!(theta.to_bits(), w.to_bits());
        }
        let mut keep = vec![7u8; rows * cols];
        let mut want_keep = vec![0u8; rows * cols];
        core_seed::top_entropy_mask(Exec::new(), shape, &mask, &ent, want, &mut want_keep).unwrap();
        let s = unsafe {
            tkm_top_entropy_mask(
                std::ptr::null(),
                mask.as_ptr(),
                ent.as_ptr(),
                rows,
                cols,
                has,
                theta,
                keep.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        };
        assert_eq!(s, TKM_STATUS_OK);
        assert_eq!(keep, want_keep);

        let adv: Vec<f32> = ent.iter().map(|e| 1.0 - e).collect();
        let keep_rows: Vec<u8> = (0..rows).map(|b| (b % 3 != 1) as u8).collect();
        let mut out = vec![7u8; rows * cols];
        let mut kept = 0u64;
        let s = unsafe {
            tkm_d3s_token_mask(
                std::ptr::null(),
                mask.as_ptr(),
                adv.as_ptr(),
                ent.as_ptr(),
                keep_rows.as_ptr(),
                rows,
                cols,
                0.3,
                out.as_mut_ptr(),
                &mut kept,
            )
        };
        assert_eq!(s, TKM_STATUS_OK);
        let mut want_out = vec![0u8; rows * cols];
        let inp = core_seed::D3sTokenInputs { shape, mask: &mask, adv: &adv, entropy: &ent, keep_rows: &keep_rows };
        let c = core_seed::d3s_token_mask(Exec::new(), &inp, 0.3, &mut want_out).unwrap();
        assert_eq!((out, kept), (want_out, c));
    }
}

#[test]
fn options_follow_the_growth_rule_and_errors_write_nothing() {
    let mut o = tkm_nsr_options { struct_size: 0, mode: 9, gamma: 0.0, lambda: 0.0, reserved: 3 };
    assert_eq!(unsafe { tkm_nsr_options_init(&mut o) }, TKM_STATUS_OK);
    assert_eq!(
        (o.struct_size, o.mode, o.gamma, o.lambda),
        (std::mem::size_of::<tkm_nsr_options>(), TKM_NSR_MODE_WEIGHTED, 1.0, 0.1)
    );
    let (mask, r) = ([1u8, 1, 1, 1], [0.0f32, 1.0, 0.0, 0.0]);
    let (mut keep, mut adv) = ([9u8; 2], [f32::NAN; 4]);
    // An older caller that knew only `mode` gets the defaults after it (gamma 1, lambda 0.1).
    o.struct_size = std::mem::offset_of!(tkm_nsr_options, gamma);
    o.mode = TKM_NSR_MODE_PSR;
    o.gamma = -5.0; // beyond the caller's struct: not read
    let s = unsafe {
        tkm_nsr_advantage(
            std::ptr::null(),
            mask.as_ptr(),
            r.as_ptr(),
            r.as_ptr(),
            2,
            2,
            &o,
            keep.as_mut_ptr(),
            adv.as_mut_ptr(),
        )
    };
    assert_eq!(s, TKM_STATUS_OK);
    assert_eq!((keep, adv), ([1, 0], [1.0, 1.0, 0.0, 0.0]));
    o.struct_size = 3;
    let (mut keep, mut adv) = ([9u8; 2], [f32::NAN; 4]);
    let s = unsafe {
        tkm_nsr_advantage(
            std::ptr::null(),
            mask.as_ptr(),
            r.as_ptr(),
            r.as_ptr(),
            2,
            2,
            &o,
            keep.as_mut_ptr(),
            adv.as_mut_ptr(),
        )
    };
    assert_eq!(s, TKM_STATUS_BAD_STRUCT_SIZE);
    assert!(keep == [9; 2] && adv.iter().all(|v| v.is_nan()));

    let mut d = tkm_d3s_schedule_options { struct_size: 0, n_init: 0.0, n_final: 0.0, k_init: 0.0, k_final: 0.0 };
    assert_eq!(unsafe { tkm_d3s_schedule_options_init(&mut d) }, TKM_STATUS_OK);
    let (mut n, mut k) = (0usize, 0f32);
    assert_eq!(unsafe { tkm_d3s_schedule(0.5, &d, 10, &mut n, &mut k) }, TKM_STATUS_OK);
    assert_eq!((n, k), (8, 0.6)); // round(0.75 · 10) = 8, K = 0.6
    d.k_final = 0.0;
    let (mut n, mut k) = (77usize, 7f32);
    assert_eq!(unsafe { tkm_d3s_schedule(0.5, &d, 10, &mut n, &mut k) }, TKM_STATUS_INVALID_ARGUMENT);
    assert_eq!((n, k), (77, 7.0));
}

#[test]
fn entropy_quantile_state_round_trips_and_rejects_corruption() {
    let mut st = tkm_entropy_quantile::default();
    assert_eq!(unsafe { tkm_entropy_quantile_init(10, 0.2, &mut st) }, TKM_STATUS_OK);
    let core = core_seed::EntropyQuantile::new(10, 0.2).unwrap();
    assert_eq!(st.words, core.to_words());
    assert_eq!(core_seed::EntropyQuantile::from_words(&st.words).unwrap(), core);
    let mut step = 9;
    for (i, bad) in [(2usize, 5u64 << 32), (3, 1.5f64.to_bits()), (4, 7u64 << 40), (5, 2u64 << 32), (0, 11)] {
        let mut b = st;
        b.words[i] = bad;
        assert_eq!(unsafe { tkm_entropy_quantile_step(&b, &mut step) }, TKM_STATUS_INVALID_ARGUMENT, "word {i}");
    }
    assert_eq!(step, 9);
}

/// Found by `fuzz/fuzz_targets/abi_methods.rs`: a state word set with `cand = 0` in a
/// histogram round was accepted, and pushing an all-zero histogram (its total, 0, matched)
/// reached the selection's `unreachable!` (`TKM_STATUS_INTERNAL_PANIC`). Now the state is
/// refused as corrupted, and the selection itself never panics.
#[test]
fn entropy_quantile_refuses_a_histogram_round_without_candidates() {
    let mut st = tkm_entropy_quantile::default();
    assert_eq!(unsafe { tkm_entropy_quantile_init(10, 0.2, &mut st) }, TKM_STATUS_OK);
    // Words 0 and 1 are the sought rank `k` and the candidates `cand` (to_words).
    for (k, cand) in [(0u64, 0u64), (5, 0), (3, 3), (u64::MAX, 0)] {
        let mut b = st;
        (b.words[0], b.words[1]) = (k, cand);
        let mut step = 9;
        assert_eq!(unsafe { tkm_entropy_quantile_step(&b, &mut step) }, TKM_STATUS_INVALID_ARGUMENT, "{k} {cand}");
        assert_eq!(step, 9);
        let before = b;
        let zeros = [0u64; TKM_RADIX_BINS];
        let s = unsafe { tkm_entropy_quantile_push_histogram(&mut b, zeros.as_ptr()) };
        assert_eq!(s, TKM_STATUS_INVALID_ARGUMENT, "{k} {cand}");
        assert_eq!(b, before);
    }
    // The finished state of an empty batch (`cand = 0`) is still a valid state.
    assert_eq!(unsafe { tkm_entropy_quantile_init(0, 0.2, &mut st) }, TKM_STATUS_OK);
    let (mut has, mut theta) = (9u32, 1f32);
    assert_eq!(unsafe { tkm_entropy_quantile_threshold(&st, &mut has, &mut theta) }, TKM_STATUS_OK);
    assert_eq!(has, 0);
}
