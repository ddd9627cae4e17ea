//! xAR (`token-rewards.md` §7) against the f64 oracles, the code's layouts and operation
//! order (transcribed below from `OliverRensu/xAR`), known PyTorch outputs, and hostile
//! inputs.

use proptest::prelude::*;
use tokenmath_core::xar::{self as x, CfgGuidance, CfgSchedule, DriftForm};
use tokenmath_core::TmError;
use tokenmath_reference::xar as oracle;
use tokenmath_testutil::{poisoned, rand_f32, untouched, Rng};

fn is_bijection(p: &[u32]) -> bool {
    let mut seen = vec![false; p.len()];
    p.iter().all(|&v| (v as usize) < p.len() && !std::mem::replace(&mut seen[v as usize], true))
}

/// Standard normals (Box–Muller) from the test RNG.
fn normals(n: usize, seed: u64) -> Vec<f64> {
    let mut r = Rng::new(seed);
    (0..n)
        .map(|_| {
            let u1 = ((r.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
            let u2 = (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        })
        .collect()
}

#[test]
fn cell_order_matches_clusterify() {
    // The code: 16×16 latent, clusters = 4 → k = 8, entity e = hi·2 + wi of 64 tokens.
    let mut p = vec![0u32; 256];
    x::xar_cell_permutation(16, 16, 8, &mut p).unwrap();
    assert_eq!(p, oracle::cell_permutation(16, 16, 8));
    assert_eq!(&p[..3], &[0, 1, 2]);
    assert_eq!(p[7], 7);
    assert_eq!(p[8], 16); // second row of cell 0
    assert_eq!(p[63], 7 * 16 + 7);
    assert_eq!(p[64], 8); // cell 1 is the top-right one
    assert_eq!(p[128], 128); // cell 2 starts at (8, 0)
    assert_eq!(p[255], 255);
    assert!(is_bijection(&p));
    // unclusterify is the inverse.
    let mut inv = vec![0u32; 256];
    x::xar_invert_permutation(&p, &mut inv).unwrap();
    for s in 0..256 {
        assert_eq!(inv[p[s] as usize], s as u32);
    }
    // k = 1 is raster, k = h = w the single image entity (raster too).
    for k in [1, 16] {
        x::xar_cell_permutation(16, 16, k, &mut p).unwrap();
        assert!(p.iter().enumerate().all(|(s, &v)| v == s as u32), "k = {k}");
    }
    // Rectangular grids.
    let mut r = vec![0u32; 4 * 6];
    x::xar_cell_permutation(4, 6, 2, &mut r).unwrap();
    assert_eq!(r, oracle::cell_permutation(4, 6, 2));
    assert_eq!(&r[..8], &[0, 1, 6, 7, 2, 3, 8, 9]);
}

#[test]
fn subsample_order() {
    let mut p = vec![0u32; 16];
    x::xar_subsample_permutation(4, 4, 2, &mut p).unwrap();
    // entity (0, 0) = rows {0, 2} × cols {0, 2}.
    assert_eq!(&p[..4], &[0, 2, 8, 10]);
    assert_eq!(&p[4..8], &[1, 3, 9, 11]);
    assert_eq!(p, oracle::subsample_permutation(4, 4, 2));
    for d in [1, 4] {
        x::xar_subsample_permutation(4, 4, d, &mut p).unwrap();
        assert!(p.iter().enumerate().all(|(s, &v)| v == s as u32), "d = {d}");
    }
    let mut q = vec![0u32; 256];
    x::xar_subsample_permutation(16, 16, 4, &mut q).unwrap();
    assert!(is_bijection(&q));
    assert_eq!(q, oracle::subsample_permutation(16, 16, 4));
}

#[test]
fn permutation_errors_and_edges() {
    let mut p = poisoned(0);
    let mut o = vec![7u32; 16];
    for f in [x::xar_cell_permutation, x::xar_subsample_permutation] {
        assert!(matches!(f(4, 4, 0, &mut o), Err(TmError::InvalidArgument(_))));
        assert!(matches!(f(4, 4, 3, &mut o), Err(TmError::InvalidArgument(_))));
        assert!(matches!(f(4, 6, 4, &mut o), Err(TmError::InvalidArgument(_))));
        assert!(matches!(f(4, 4, 2, &mut o[..15]), Err(TmError::LengthMismatch { .. })));
        assert!(matches!(f(usize::MAX, 2, 1, &mut o), Err(TmError::SizeOverflow { .. })));
        assert!(matches!(f(1 << 17, 1 << 16, 1, &mut []), Err(TmError::InvalidArgument(_))));
        assert_eq!(o, vec![7u32; 16]);
        // Empty and size 1.
        f(0, 4, 2, &mut []).unwrap();
        let mut one = [9u32];
        f(1, 1, 1, &mut one).unwrap();
        assert_eq!(one, [0]);
    }
    p.clear();
    let mut inv = [0u32; 3];
    assert!(matches!(x::xar_invert_permutation(&[0, 0, 1], &mut inv), Err(TmError::InvalidArgument(_))));
    assert!(matches!(x::xar_invert_permutation(&[0, 3, 1], &mut inv), Err(TmError::InvalidArgument(_))));
    assert!(matches!(x::xar_invert_permutation(&[0, 1], &mut inv), Err(TmError::LengthMismatch { .. })));
    x::xar_invert_permutation(&[], &mut []).unwrap();
    x::xar_invert_permutation(&[2, 0, 1], &mut inv).unwrap();
    assert_eq!(inv, [1, 2, 0]);
}

proptest! {
    /// Both orders are bijections, agree with the oracles and round-trip through the inverse.
    #[test]
    fn orders_are_bijections(a in 1usize..6, b in 1usize..6, k in 1usize..5) {
        let (h, w) = (a * k, b * k);
        let mut p = vec![0u32; h * w];
        let mut inv = vec![0u32; h * w];
        let mut back = vec![0u32; h * w];
        x::xar_cell_permutation(h, w, k, &mut p).unwrap();
        prop_assert_eq!(&p, &oracle::cell_permutation(h, w, k));
        prop_assert!(is_bijection(&p));
        x::xar_invert_permutation(&p, &mut inv).unwrap();
        x::xar_invert_permutation(&inv, &mut back).unwrap();
        prop_assert_eq!(&back, &p);
        x::xar_subsample_permutation(h, w, k, &mut p).unwrap();
        prop_assert_eq!(&p, &oracle::subsample_permutation(h, w, k));
        prop_assert!(is_bijection(&p));
        // Every subsample entity is a stride-h/k grid: rows differ by multiples of h/k.
        for e in 0..(h / k) * (w / k) {
            let ys: Vec<usize> = p[e * k * k..(e + 1) * k * k].iter().map(|&v| v as usize / w).collect();
            prop_assert!(ys.iter().all(|&y| y % (h / k) == ys[0] % (h / k)));
        }
    }
}

#[test]
fn scale_sizes_and_gather() {
    let mut s = [0usize; 3];
    x::xar_scale_sizes(16, &mut s).unwrap();
    assert_eq!(s, [4, 8, 16]);
    let mut one = [0usize];
    x::xar_scale_sizes(5, &mut one).unwrap();
    assert_eq!(one, [5]);
    assert!(matches!(x::xar_scale_sizes(12, &mut [0; 4]), Err(TmError::InvalidArgument(_))));
    assert!(matches!(x::xar_scale_sizes(16, &mut []), Err(TmError::InvalidArgument(_))));
    assert!(matches!(x::xar_scale_sizes(0, &mut s), Err(TmError::InvalidArgument(_))));
    assert!(matches!(x::xar_scale_sizes(16, &mut [0; 200]), Err(TmError::InvalidArgument(_))));

    // Known PyTorch nearest outputs: 5 → 3 picks [0, 1, 3]; 3 → 5 picks [0, 0, 1, 1, 2];
    // 2 → 4 (the `>> 1` branch) [0, 0, 1, 1]; 16 → 4 is the stride 4 from 0.
    let pick = |i: usize, o: usize| (0..o).map(|k| x::xar_nearest_source_index(i, o, k)).collect::<Vec<_>>();
    assert_eq!(pick(5, 3), [0, 1, 3]);
    assert_eq!(pick(3, 5), [0, 0, 1, 1, 2]);
    assert_eq!(pick(2, 4), [0, 0, 1, 1]);
    assert_eq!(pick(16, 4), [0, 4, 8, 12]);
    for (i, o) in [(16, 8), (16, 2), (16, 1), (7, 3), (9, 4), (100, 7)] {
        for k in 0..o {
            assert_eq!(x::xar_nearest_source_index(i, o, k), oracle::nearest(i, o, k), "{i} -> {o} at {k}");
        }
    }

    let len = x::xar_scale_gather_len(16, 16, 3).unwrap();
    assert_eq!(len, 16 + 64 + 256);
    let mut g = vec![0u32; len];
    x::xar_scale_gather(16, 16, 3, &mut g).unwrap();
    assert_eq!(g, oracle::scale_gather(16, 16, 3));
    assert_eq!(&g[..4], &[0, 4, 8, 12]);
    assert_eq!(g[4], 64); // row 1 of the 4×4 scale is latent row 4
    assert!(g[80..].iter().enumerate().all(|(s, &v)| v == s as u32)); // X_N = I
    let mut g2 = vec![0u32; x::xar_scale_gather_len(8, 4, 2).unwrap()];
    x::xar_scale_gather(8, 4, 2, &mut g2).unwrap();
    assert_eq!(g2, oracle::scale_gather(8, 4, 2));
    assert!(matches!(x::xar_scale_gather(16, 16, 3, &mut g[..10]), Err(TmError::LengthMismatch { .. })));
    assert!(matches!(x::xar_scale_gather_len(16, 12, 4), Err(TmError::InvalidArgument(_))));
    assert!(matches!(x::xar_scale_gather_len(16, 16, 0), Err(TmError::InvalidArgument(_))));
    assert!(matches!(x::xar_scale_gather_len(0, 16, 1), Err(TmError::InvalidArgument(_))));
}

#[test]
fn block_causal_mask_matches_the_code() {
    // xAR.__init__ with seq_len = 256, clusters = 4: rows of cluster pz see columns
    // [0, 64·(pz + 1)), 0 allowed, −inf masked.
    let mut m = poisoned(256 * 256);
    x::xar_block_causal_mask(4, 64, &mut m).unwrap();
    for r in 0..256 {
        let start = 64 * (r / 64 + 1);
        for c in 0..256 {
            let want = if c < start { 0.0 } else { f32::NEG_INFINITY };
            assert_eq!(m[r * 256 + c].to_bits(), want.to_bits(), "({r}, {c})");
        }
    }
    assert_eq!(m, oracle::block_causal_mask(&[64; 4]));
    let mut ml = poisoned(256 * 256);
    x::xar_block_causal_mask_lens(&[64; 4], &mut ml).unwrap();
    assert_eq!(m, ml);
    // Scale entities: lengths 1, 4, 16 (and an empty one).
    let lens = [1, 0, 4, 16];
    let mut s = poisoned(21 * 21);
    x::xar_block_causal_mask_lens(&lens, &mut s).unwrap();
    assert_eq!(s, oracle::block_causal_mask(&lens));
    // Edges: no entity, size 1, one token per entity (causal), lengths.
    x::xar_block_causal_mask(0, 64, &mut []).unwrap();
    x::xar_block_causal_mask(3, 0, &mut []).unwrap();
    let mut one = [5.0f32];
    x::xar_block_causal_mask(1, 1, &mut one).unwrap();
    assert_eq!(one, [0.0]);
    let mut c = poisoned(9);
    x::xar_block_causal_mask(3, 1, &mut c).unwrap();
    assert_eq!(c, oracle::block_causal_mask(&[1, 1, 1]));
    let mut bad = poisoned(8);
    assert!(matches!(x::xar_block_causal_mask(3, 1, &mut bad), Err(TmError::LengthMismatch { .. })));
    assert!(matches!(x::xar_block_causal_mask(usize::MAX, 2, &mut bad), Err(TmError::SizeOverflow { .. })));
    assert!(matches!(x::xar_block_causal_mask(1 << 33, 1, &mut bad), Err(TmError::SizeOverflow { .. })));
    assert!(matches!(x::xar_block_causal_mask_lens(&[usize::MAX, 1], &mut bad), Err(TmError::SizeOverflow { .. })));
    assert!(untouched(&bad));
}

/// `alpha_t * x + sigma_t * eps` and `d_alpha_t * x + d_sigma_t * eps` in f32, as the code's
/// `forward` writes them (`d_alpha_t = -1`, `d_sigma_t = 1`).
fn code_interp(x: f32, e: f32, t: f32) -> (f32, f32) {
    let (alpha_t, sigma_t, d_alpha_t, d_sigma_t) = (1.0 - t, t, -1.0f32, 1.0f32);
    (alpha_t * x + sigma_t * e, d_alpha_t * x + d_sigma_t * e)
}

#[test]
fn flow_interpolation() {
    let n = 64 * 16;
    let (xs, es) = (rand_f32(n, 1, 2.0), rand_f32(n, 2, 3.0));
    let (mut xt, mut v) = (poisoned(n), poisoned(n));
    for t in [0.0f32, 0.25, 0.731_058_6, 1.0] {
        x::flow_interpolate(&xs, &es, t, &mut xt, &mut v).unwrap();
        let (rx, rv) = oracle::flow_interpolate(&xs, &es, t as f64);
        for j in 0..n {
            let (cx, cv) = code_interp(xs[j], es[j], t);
            assert_eq!((xt[j].to_bits(), v[j].to_bits()), (cx.to_bits(), cv.to_bits()));
            assert!((xt[j] as f64 - rx[j]).abs() <= 1e-6 * (1.0 + rx[j].abs()));
            assert!((v[j] as f64 - rv[j]).abs() <= 1e-6 * (1.0 + rv[j].abs()));
        }
        if t == 0.0 {
            assert_eq!(xt, xs);
        }
        if t == 1.0 {
            assert_eq!(xt, es);
        }
    }
    // The batch layout: [B, N, E] tokens, times entity-major t[i·B + b].
    let (b, ne, e) = (2, 3, 5);
    let (xs, es) = (rand_f32(b * ne * e, 3, 1.0), rand_f32(b * ne * e, 4, 1.0));
    let t: Vec<f32> = (0..b * ne).map(|k| 0.1 + 0.13 * k as f32).collect();
    let (mut xt, mut v) = (poisoned(b * ne * e), poisoned(b * ne * e));
    x::xar_flow_interpolate(b, ne, e, &xs, &es, &t, &mut xt, &mut v).unwrap();
    for bb in 0..b {
        for i in 0..ne {
            let r = (bb * ne + i) * e..(bb * ne + i + 1) * e;
            let (mut wx, mut wv) = (vec![0.0; e], vec![0.0; e]);
            x::flow_interpolate(&xs[r.clone()], &es[r.clone()], t[i * b + bb], &mut wx, &mut wv).unwrap();
            assert_eq!(&xt[r.clone()], &wx[..]);
            assert_eq!(&v[r], &wv[..]);
        }
    }
    // Hostile: a NaN or out-of-range time, lengths; NaN data propagates.
    let mut bad_t = t.clone();
    bad_t[4] = f32::NAN;
    let (mut xt2, mut v2) = (poisoned(b * ne * e), poisoned(b * ne * e));
    assert_eq!(
        x::xar_flow_interpolate(b, ne, e, &xs, &es, &bad_t, &mut xt2, &mut v2),
        Err(TmError::NonFinite { what: "t", index: 4 })
    );
    bad_t[4] = 1.5;
    assert!(matches!(
        x::xar_flow_interpolate(b, ne, e, &xs, &es, &bad_t, &mut xt2, &mut v2),
        Err(TmError::InvalidArgument(_))
    ));
    assert!(matches!(
        x::xar_flow_interpolate(b, ne, e, &xs, &es, &t[1..], &mut xt2, &mut v2),
        Err(TmError::LengthMismatch { .. })
    ));
    assert!(matches!(
        x::xar_flow_interpolate(usize::MAX, 2, 1, &xs, &es, &t, &mut xt2, &mut v2),
        Err(TmError::SizeOverflow { .. })
    ));
    assert!(untouched(&xt2) && untouched(&v2));
    assert!(matches!(x::flow_interpolate(&xs, &es, f32::INFINITY, &mut xt2, &mut v2), Err(TmError::NonFinite { .. })));
    assert!(matches!(x::flow_interpolate(&xs, &es, -0.1, &mut xt2, &mut v2), Err(TmError::InvalidArgument(_))));
    let (mut a, mut c) = ([0.0f32; 2], [0.0f32; 2]);
    x::flow_interpolate(&[f32::NAN, f32::INFINITY], &[0.0, 0.0], 0.5, &mut a, &mut c).unwrap();
    assert!(a[0].is_nan() && c[0].is_nan() && a[1] == f32::INFINITY && c[1] == f32::NEG_INFINITY);
    x::flow_interpolate(&[], &[], 0.5, &mut [], &mut []).unwrap();
    x::xar_flow_interpolate(0, 4, 3, &[], &[], &[], &mut [], &mut []).unwrap();
}

proptest! {
    /// Bitwise the code's f32 expression, for any data (NaN and ±inf included) and time.
    #[test]
    fn interpolation_is_the_codes(
        data in prop::collection::vec((tokenmath_testutil::hostile_logit(), tokenmath_testutil::hostile_logit()), 0..40),
        t in 0.0f32..=1.0,
    ) {
        let (xs, es): (Vec<f32>, Vec<f32>) = data.into_iter().unzip();
        let (mut xt, mut v) = (poisoned(xs.len()), poisoned(xs.len()));
        x::flow_interpolate(&xs, &es, t, &mut xt, &mut v).unwrap();
        for j in 0..xs.len() {
            let (cx, cv) = code_interp(xs[j], es[j], t);
            prop_assert!(xt[j].to_bits() == cx.to_bits() || (xt[j].is_nan() && cx.is_nan()));
            prop_assert!(v[j].to_bits() == cv.to_bits() || (v[j].is_nan() && cv.is_nan()));
        }
    }

    /// Logit-normal times are the f32 rounding of the f64 logistic (within one f32 ulp for
    /// libm-vs-libc exp), monotone in z, and in [0, 1].
    #[test]
    fn logit_normal_times(z in prop::collection::vec(-40.0f64..40.0, 1..30), mu in -2.0f64..2.0, sigma in 0.1f64..3.0) {
        let mut out = poisoned(z.len());
        x::xar_logit_normal_times(&z, mu, sigma, &mut out).unwrap();
        for (k, &zk) in z.iter().enumerate() {
            let want = oracle::logit_normal(zk, mu, sigma);
            prop_assert!((0.0..=1.0).contains(&out[k]));
            prop_assert!((out[k] as f64 - want).abs() <= f32::EPSILON as f64 * want.max(1e-30), "{} vs {}", out[k], want);
            prop_assert_eq!(out[k], x::logit_normal(zk, mu, sigma).unwrap());
            for (j, &zj) in z.iter().enumerate() {
                if zj < zk { prop_assert!(out[j] <= out[k]); }
            }
        }
    }
}

#[test]
fn logit_normal_edges_and_timestep_index() {
    assert_eq!(x::logit_normal(0.0, 0.0, 1.0), Ok(0.5));
    assert_eq!(x::logit_normal(1.0, 0.0, 1.0), Ok((1.0 / (1.0 + (-1.0f64).exp())) as f32));
    assert_eq!(x::logit_normal(1e300, 0.0, 1.0), Ok(1.0));
    assert_eq!(x::logit_normal(-1e300, 0.0, 1.0), Ok(0.0));
    assert_eq!(x::logit_normal(f64::NAN, 0.0, 1.0), Err(TmError::NonFinite { what: "z", index: 0 }));
    assert!(matches!(x::logit_normal(0.0, f64::INFINITY, 1.0), Err(TmError::NonFinite { .. })));
    for s in [0.0, -1.0, f64::NAN] {
        assert!(matches!(x::logit_normal(0.0, 0.0, s), Err(TmError::InvalidArgument(_))));
    }
    let mut out = poisoned(3);
    assert_eq!(
        x::xar_logit_normal_times(&[0.0, 1.0, f64::NEG_INFINITY], 0.0, 1.0, &mut out),
        Err(TmError::NonFinite { what: "z", index: 2 })
    );
    assert!(matches!(x::xar_logit_normal_times(&[0.0], 0.0, 0.0, &mut out[..1]), Err(TmError::InvalidArgument(_))));
    assert!(matches!(x::xar_logit_normal_times(&[0.0], 0.0, 1.0, &mut out), Err(TmError::LengthMismatch { .. })));
    assert!(untouched(&out));
    x::xar_logit_normal_times(&[], 0.0, 1.0, &mut []).unwrap();

    // (t*1000).long() with the product in f32: 0.29f32·1000 rounds up to 290.0 in f32
    // (the f64 product of the same f32 is 289.99999…).
    assert_eq!(x::xar_timestep_index(0.29), Ok(290));
    assert_eq!(((0.29f32 as f64) * 1000.0) as i64, 289);
    assert_eq!(x::xar_timestep_index(0.0), Ok(0));
    assert_eq!(x::xar_timestep_index(1.0), Ok(1000));
    assert_eq!(x::xar_timestep_index(0.0015), Ok(1));
    assert_eq!(x::xar_timestep_index(0.04), Ok(40));
    assert!(matches!(x::xar_timestep_index(f32::NAN), Err(TmError::NonFinite { .. })));
    assert!(matches!(x::xar_timestep_index(1.5), Err(TmError::InvalidArgument(_))));
}

#[test]
fn flow_loss_and_its_gradient() {
    let (b, m) = (3, 7);
    let (p, q) = (rand_f32(b * m, 5, 2.0), rand_f32(b * m, 6, 2.0));
    let mut g = poisoned(b * m);
    let l = x::xar_flow_loss(&p, &q, b, Some(&mut g)).unwrap();
    let (rl, rg) = oracle::flow_loss(&p, &q);
    assert!((l - rl).abs() <= 1e-14 * rl);
    for j in 0..b * m {
        assert!((g[j] as f64 - rg[j]).abs() <= 1e-7 * rg[j].abs() + 1e-30);
    }
    assert_eq!(x::xar_flow_loss(&p, &q, b, None).unwrap(), l);
    // Central differences (the loss is quadratic: exact up to rounding).
    for j in [0, 5, 20] {
        let h = 1e-3f32;
        let (mut pp, mut pm) = (p.clone(), p.clone());
        pp[j] += h;
        pm[j] -= h;
        let fd = (x::xar_flow_loss(&pp, &q, b, None).unwrap() - x::xar_flow_loss(&pm, &q, b, None).unwrap())
            / (pp[j] as f64 - pm[j] as f64);
        assert!((fd - g[j] as f64).abs() <= 1e-6 + 1e-4 * fd.abs(), "{j}: fd {fd} vs {}", g[j]);
    }
    // Size 1, NaN propagation, errors.
    let mut g1 = [0.0f32];
    assert_eq!(x::xar_flow_loss(&[3.0], &[1.0], 1, Some(&mut g1)), Ok(4.0));
    assert_eq!(g1, [4.0]);
    assert!(x::xar_flow_loss(&[f32::NAN, 0.0], &[0.0, 0.0], 2, None).unwrap().is_nan());
    assert!(x::xar_flow_loss(&[f32::INFINITY], &[0.0], 1, None).unwrap().is_infinite());
    for (pp, bb) in [(&[][..], 1usize), (&p[..], 0), (&p[..], 4)] {
        assert!(matches!(x::xar_flow_loss(pp, pp, bb, None), Err(TmError::InvalidArgument(_))));
    }
    assert!(matches!(x::xar_flow_loss(&p, &q[1..], b, None), Err(TmError::LengthMismatch { .. })));
    let mut g_short = poisoned(2);
    assert!(matches!(x::xar_flow_loss(&p, &q, b, Some(&mut g_short)), Err(TmError::LengthMismatch { .. })));
    assert!(untouched(&g_short));
}

#[test]
fn cfg_schedule_and_grid() {
    // xAR-B: cfg 2.7 over 4 entities (the code's scaled_cfg, a Python float expression).
    let want = |i: usize| (2.7f64 - 1.0) * i as f64 / (4.0 - 1.0) + 1.0;
    for i in 0..4 {
        let c = x::cfg_schedule(2.7, i, 4, CfgSchedule::Linear).unwrap();
        assert_eq!(c.to_bits(), want(i).to_bits());
        assert!((c - oracle::cfg_linear(2.7, i, 4)).abs() <= 1e-15);
    }
    assert_eq!(x::cfg_schedule(2.7, 0, 4, CfgSchedule::Linear), Ok(1.0));
    assert_eq!(x::cfg_schedule(2.7, 0, 1, CfgSchedule::Linear), Ok(2.7));
    assert_eq!(x::cfg_schedule(3.0, 0, 4, CfgSchedule::LinearFromFirst), Ok(1.5));
    assert_eq!(x::cfg_schedule(3.0, 3, 4, CfgSchedule::LinearFromFirst), Ok(3.0));
    assert_eq!(x::cfg_schedule(2.3, 2, 4, CfgSchedule::Constant), Ok(2.3));
    assert_eq!(CfgSchedule::default(), CfgSchedule::Linear);
    for (c, i, n) in [(f64::NAN, 0, 4), (2.0, 4, 4), (2.0, 0, 0)] {
        assert!(matches!(x::cfg_schedule(c, i, n, CfgSchedule::Linear), Err(TmError::InvalidArgument(_))));
    }

    // linspace(1, 0.04, 40) ++ [0]: both ends exact, PyTorch's two-sided formula between.
    let mut g = vec![0.0f64; 41];
    x::xar_em_time_grid(1.0, 0.04, &mut g).unwrap();
    assert_eq!((g[0], g[39], g[40]), (1.0, 0.04, 0.0));
    let step = (0.04f64 - 1.0) / 39.0;
    assert_eq!(g[1].to_bits(), (1.0 + step).to_bits());
    assert_eq!(g[20].to_bits(), (0.04 - step * 19.0).to_bits());
    assert_eq!(g[19].to_bits(), (1.0 + step * 19.0).to_bits());
    let r = oracle::time_grid(1.0, 0.04, 40);
    for k in 0..41 {
        assert!((g[k] - r[k]).abs() <= 4e-16, "{k}");
        if k > 0 {
            assert!(g[k] < g[k - 1]);
        }
    }
    let mut g50 = vec![0.0f64; 51];
    x::xar_em_time_grid(1.0, 0.04, &mut g50).unwrap();
    assert_eq!((g50[0], g50[49]), (1.0, 0.04));
    let mut g1 = [9.0f64; 2];
    x::xar_em_time_grid(1.0, 0.04, &mut g1).unwrap();
    assert_eq!(g1, [1.0, 0.0]);
    let mut g2 = [9.0f64; 3];
    x::xar_em_time_grid(1.0, 0.04, &mut g2).unwrap();
    assert_eq!(g2, [1.0, 0.04, 0.0]);
    for (a, b) in [(0.04, 1.0), (f64::NAN, 0.0), (1.0, -0.1), (f64::INFINITY, 0.0)] {
        assert!(matches!(x::xar_em_time_grid(a, b, &mut g2), Err(TmError::InvalidArgument(_))));
    }
    assert!(matches!(x::xar_em_time_grid(1.0, 0.04, &mut g1[..1]), Err(TmError::InvalidArgument(_))));
}

/// `get_score_from_velocity(path_type="linear")` and `v - 0.5 * diffusion * s`, in f64 as
/// the code writes them (`sigma_t**2` is PyTorch's `pow(t, 2)` = `t·t`).
fn code_drift(v: f64, x: f64, t: f64) -> f64 {
    let (alpha_t, d_alpha_t, sigma_t, d_sigma_t) = (1.0 - t, -1.0, t, 1.0);
    let reverse_alpha_ratio = alpha_t / d_alpha_t;
    let var = sigma_t * sigma_t - reverse_alpha_ratio * d_sigma_t * sigma_t;
    let score = (reverse_alpha_ratio * v - x) / var;
    let diffusion = 2.0 * t;
    v - 0.5 * diffusion * score
}

#[test]
fn drift_cfg_and_step() {
    let n = 64 * 16;
    let v: Vec<f64> = rand_f32(n, 7, 2.0).iter().map(|&a| a as f64).collect();
    let xs: Vec<f64> = normals(n, 8);
    let mut d = vec![0.0f64; n];
    let mut dc = vec![0.0f64; n];
    for t in [1.0, 0.9753846153846154, 0.5, 0.04, 1e-300] {
        x::em_drift_linear(&v, &xs, t, DriftForm::Code, &mut d).unwrap();
        x::em_drift_linear(&v, &xs, t, DriftForm::Closed, &mut dc).unwrap();
        for j in 0..n {
            assert_eq!(d[j].to_bits(), code_drift(v[j], xs[j], t).to_bits());
            let want = oracle::drift(v[j], xs[j], t);
            let scale = v[j].abs() + xs[j].abs() + 1.0;
            if t > 1e-10 {
                assert!((d[j] - want).abs() <= 1e-13 * scale / t, "t {t}: {} vs {want}", d[j]);
            }
            assert!((dc[j] - ((2.0 - t) * v[j] + xs[j])).abs() <= 1e-15 * scale);
            assert!((dc[j] - d[j]).abs() <= 1e-12 * scale / t.max(1e-3));
        }
    }
    x::em_drift_linear(&[1.0], &[2.0], 0.0, DriftForm::Closed, &mut d[..1]).unwrap();
    assert_eq!(d[0], 4.0);
    for t in [0.0, -0.5, 1.5, f64::NAN] {
        assert!(matches!(x::em_drift_linear(&v, &xs, t, DriftForm::Code, &mut d), Err(TmError::InvalidArgument(_))));
    }
    assert!(matches!(
        x::em_drift_linear(&v, &xs[1..], 0.5, DriftForm::Code, &mut d),
        Err(TmError::LengthMismatch { .. })
    ));

    // CFG: the code's formula when scale > 1 inside [low, high], the conditional drift
    // bit for bit otherwise.
    let du: Vec<f64> = normals(n, 9);
    let mut out = vec![0.0f64; n];
    let g = CfgGuidance { scale: 2.7, ..CfgGuidance::default() };
    x::xar_cfg_combine(&d, &du, g, 0.5, &mut out).unwrap();
    for j in 0..n {
        assert_eq!(out[j].to_bits(), (du[j] + 2.7 * (d[j] - du[j])).to_bits());
    }
    for (gg, t) in
        [(CfgGuidance::default(), 0.5), (CfgGuidance { scale: 0.5, ..g }, 0.5), (CfgGuidance { low: 0.6, ..g }, 0.5)]
    {
        x::xar_cfg_combine(&d, &du, gg, t, &mut out).unwrap();
        assert_eq!(out, d);
    }
    for (gg, t) in [
        (CfgGuidance { low: 0.7, high: 0.6, ..g }, 0.5),
        (g, f64::NAN),
        (CfgGuidance { scale: f64::INFINITY, ..g }, 0.5),
    ] {
        assert!(matches!(x::xar_cfg_combine(&d, &du, gg, t, &mut out), Err(TmError::InvalidArgument(_))));
    }
    assert!(matches!(x::xar_cfg_combine(&d, &du[1..], g, 0.5, &mut out), Err(TmError::LengthMismatch { .. })));

    // Steps: `x_cur + d_cur * dt + torch.sqrt(diffusion) * deps` and `x_cur + dt * d_cur`.
    let xi = normals(n, 10);
    let (tc, tn) = (0.5f64, 0.475);
    let mut s = xs.clone();
    x::xar_em_step(&mut s, &d, tc, tn, Some(&xi)).unwrap();
    for j in 0..n {
        let dt = tn - tc;
        let deps = xi[j] * dt.abs().sqrt();
        assert_eq!(s[j].to_bits(), (xs[j] + d[j] * dt + (2.0 * tc).sqrt() * deps).to_bits());
        assert!((s[j] - oracle::em_step(xs[j], d[j], tc, tn, Some(xi[j]))).abs() <= 1e-14 * (1.0 + s[j].abs()));
    }
    let mut s = xs.clone();
    x::xar_em_step(&mut s, &d, 0.04, 0.0, None).unwrap();
    for j in 0..n {
        assert_eq!(s[j].to_bits(), (xs[j] + (0.0 - 0.04) * d[j]).to_bits());
    }
    let mut s = xs.clone();
    for (a, b, noise) in [(f64::NAN, 0.0, None), (0.5, f64::INFINITY, None), (-0.1, -0.2, Some(&xi[..]))] {
        assert!(matches!(x::xar_em_step(&mut s, &d, a, b, noise), Err(TmError::InvalidArgument(_))));
    }
    assert!(matches!(x::xar_em_step(&mut s, &d, 0.5, 0.4, Some(&xi[1..])), Err(TmError::LengthMismatch { .. })));
    assert!(matches!(x::xar_em_step(&mut s, &d[1..], 0.5, 0.4, None), Err(TmError::LengthMismatch { .. })));
    assert_eq!(s, xs);
    x::xar_em_step(&mut [], &[], 0.5, 0.4, Some(&[])).unwrap();
}

/// A whole entity sampled with the exact velocity of a point mass `x0` (`v = (x − x0)/t`)
/// lands near `x0`: the pieces compose into the code's sampler (the residual is the
/// last deterministic step's `−0.04·ε`).
#[test]
fn sampler_reaches_a_point_mass() {
    let n = 512;
    let x0: Vec<f64> = rand_f32(n, 11, 1.0).iter().map(|&a| a as f64).collect();
    let mut grid = vec![0.0f64; 41];
    x::xar_em_time_grid(1.0, 0.04, &mut grid).unwrap();
    let mut xs = normals(n, 12);
    let (mut v, mut d, mut dd) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    let g = CfgGuidance { scale: x::cfg_schedule(2.7, 3, 4, CfgSchedule::Linear).unwrap(), ..CfgGuidance::default() };
    for k in 0..40 {
        let (tc, tn) = (grid[k], grid[k + 1]);
        for j in 0..n {
            v[j] = (xs[j] - x0[j]) / tc;
        }
        x::em_drift_linear(&v, &xs, tc, DriftForm::Code, &mut d).unwrap();
        // cond == uncond: CFG must not move the drift.
        x::xar_cfg_combine(&d, &d.clone(), g, tc, &mut dd).unwrap();
        let noise = if k < 39 { Some(normals(n, 100 + k as u64)) } else { None };
        x::xar_em_step(&mut xs, &dd, tc, tn, noise.as_deref()).unwrap();
    }
    let err = xs.iter().zip(&x0).map(|(a, b)| (a - b).abs()).sum::<f64>() / n as f64;
    assert!(err < 0.1, "mean |x - x0| = {err}");
}

fn hostile_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        20 => -50.0f64..50.0,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(0.0f64),
        1 => Just(-0.0f64),
        1 => -1e300f64..1e300,
    ]
}

fn same(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

proptest! {
    /// The grid is PyTorch's two-sided linspace: exact ends, non-increasing, within a few ulps
    /// of the real-valued line.
    #[test]
    fn time_grid_is_linspace(steps in 1usize..200, t_start in 1e-3f64..=1.0, frac in 0.0f64..=1.0) {
        let t_end = t_start * frac;
        let mut g = vec![0.0f64; steps + 1];
        x::xar_em_time_grid(t_start, t_end, &mut g).unwrap();
        let r = oracle::time_grid(t_start, t_end, steps);
        prop_assert_eq!(g[0], t_start);
        prop_assert_eq!(g[steps], 0.0);
        if steps > 1 { prop_assert_eq!(g[steps - 1], t_end); }
        for k in 0..=steps {
            prop_assert!((g[k] - r[k]).abs() <= 8.0 * f64::EPSILON * t_start, "{} vs {} at {}", g[k], r[k], k);
            if k > 0 { prop_assert!(g[k] <= g[k - 1]); }
        }
    }

    /// The scheduled CFG runs from exactly 1 to (within an ulp) `cfg`, monotone, for every N.
    #[test]
    fn cfg_schedule_runs_from_one_to_cfg(cfg in 1.0f64..10.0, n in 2usize..64) {
        let mut prev = 0.0;
        for i in 0..n {
            let c = x::cfg_schedule(cfg, i, n, CfgSchedule::Linear).unwrap();
            prop_assert!((c - oracle::cfg_linear(cfg, i, n)).abs() <= 4.0 * f64::EPSILON * cfg);
            prop_assert!(c >= prev);
            prev = c;
        }
        prop_assert_eq!(x::cfg_schedule(cfg, 0, n, CfgSchedule::Linear).unwrap(), 1.0);
        prop_assert!((prev - cfg).abs() <= 2.0 * f64::EPSILON * cfg);
    }

    /// Drift, CFG and step on hostile values: never a panic, always the code's expressions
    /// bit for bit (NaN for NaN), and close to the oracle on finite inputs.
    #[test]
    fn sampler_pieces_on_hostile_values(
        vals in prop::collection::vec((hostile_f64(), hostile_f64(), hostile_f64()), 0..24),
        t in 1e-3f64..=1.0,
        scale in 0.5f64..4.0,
    ) {
        let v: Vec<f64> = vals.iter().map(|a| a.0).collect();
        let xs: Vec<f64> = vals.iter().map(|a| a.1).collect();
        let xi: Vec<f64> = vals.iter().map(|a| a.2).collect();
        let n = v.len();
        let (mut d, mut o) = (vec![0.0; n], vec![0.0; n]);
        x::em_drift_linear(&v, &xs, t, DriftForm::Code, &mut d).unwrap();
        for j in 0..n {
            prop_assert!(same(d[j], code_drift(v[j], xs[j], t)));
            if v[j].abs() < 1e100 && xs[j].abs() < 1e100 {
                let want = oracle::drift(v[j], xs[j], t);
                prop_assert!((d[j] - want).abs() <= 1e-12 * (v[j].abs() + xs[j].abs() + 1.0) / t);
            }
        }
        let g = CfgGuidance { scale, ..CfgGuidance::default() };
        x::xar_cfg_combine(&d, &v, g, t, &mut o).unwrap();
        for j in 0..n {
            let want = if scale > 1.0 { v[j] + scale * (d[j] - v[j]) } else { d[j] };
            prop_assert!(same(o[j], want));
        }
        let mut s = xs.clone();
        let tn = t * 0.9;
        x::xar_em_step(&mut s, &o, t, tn, Some(&xi)).unwrap();
        for j in 0..n {
            let dt = tn - t;
            prop_assert!(same(s[j], xs[j] + o[j] * dt + (2.0 * t).sqrt() * (xi[j] * dt.abs().sqrt())));
            if [xs[j], o[j], xi[j]].iter().all(|a| a.abs() < 1e100) {
                let want = oracle::em_step(xs[j], o[j], t, tn, Some(xi[j]));
                prop_assert!((s[j] - want).abs() <= 1e-13 * (xs[j].abs() + o[j].abs() + xi[j].abs() + 1.0));
            }
        }
    }

    /// The loss and gradient on hostile data: no panic, the oracle's values when finite.
    #[test]
    fn flow_loss_on_hostile_values(
        data in prop::collection::vec((tokenmath_testutil::hostile_logit(), tokenmath_testutil::hostile_logit()), 1..40),
        batch in 1usize..4,
    ) {
        let (p, q): (Vec<f32>, Vec<f32>) = data.into_iter().unzip();
        let m = p.len() / batch;
        prop_assume!(m > 0);
        let (p, q) = (&p[..m * batch], &q[..m * batch]);
        let mut g = poisoned(p.len());
        let l = x::xar_flow_loss(p, q, batch, Some(&mut g)).unwrap();
        let (rl, rg) = oracle::flow_loss(p, q);
        prop_assert!(same(l, rl) || (l - rl).abs() <= 1e-12 * rl.abs());
        for j in 0..p.len() {
            prop_assert!(g[j].is_nan() && rg[j].is_nan() || (g[j] as f64 - rg[j]).abs() <= 1e-7 * rg[j].abs() + 1e-38 || (g[j].is_infinite() && rg[j].abs() > f32::MAX as f64));
        }
    }
}
