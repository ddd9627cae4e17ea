//! Fingerprint encodings, signed tree heads, SimHash and audit sampling against the core
//! crate, bitwise, and their error statuses (outputs untouched on error).

use core::ptr::{null, null_mut};

use tokenmath::fingerprint::*;
use tokenmath::*;
use tokenmath_core::fingerprint::encoding::{self, FpKind};
use tokenmath_core::fingerprint::hash::Blake3;
use tokenmath_core::fingerprint::sampling;
use tokenmath_core::fingerprint::signed_head::{SignedHead, HEAD_FIXED_LEN};
use tokenmath_core::fingerprint::simhash::{self, Planes};

fn rand_f32(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

const FLOAT_KINDS: [(u32, FpKind); 3] = [
    (TKM_FP_KIND_F32_CANONICAL, FpKind::F32Canonical),
    (TKM_FP_KIND_I8_UNIT, FpKind::I8Unit),
    (TKM_FP_KIND_BF16, FpKind::Bf16),
];

#[test]
fn encodings_match_core() {
    let mut x = rand_f32(37, 1, 3.0);
    x[3] = -0.0;
    x[5] = 1e-40; // subnormal
    let token = rand_f32(11, 2, 1.0);
    for (code, kind) in FLOAT_KINDS {
        let len = encoding::encoded_len(kind, x.len()).unwrap();
        let mut got_len = 0usize;
        assert_eq!(unsafe { tkm_fp_encoded_len(code, x.len(), &mut got_len) }, TKM_STATUS_OK);
        assert_eq!(got_len, len);
        let mut want = vec![0u8; len];
        encoding::encode(kind, &x, &mut want).unwrap();
        let mut got = vec![0xAAu8; len];
        assert_eq!(unsafe { tkm_fp_encode(code, x.as_ptr(), x.len(), got.as_mut_ptr(), len) }, TKM_STATUS_OK);
        assert_eq!(got, want);

        let clen = encoding::encoded_len(kind, x.len() + token.len()).unwrap();
        let mut want = vec![0u8; clen];
        encoding::encode_coin_layout(kind, &x, &token, &mut want).unwrap();
        let mut got = vec![0xAAu8; clen];
        let s = unsafe {
            tkm_fp_encode_coin_layout(code, x.as_ptr(), x.len(), token.as_ptr(), token.len(), got.as_mut_ptr(), clen)
        };
        assert_eq!(s, TKM_STATUS_OK);
        assert_eq!(got, want);

        // Errors: wrong length, non-finite input, NULL input; nothing written.
        let mut out = vec![0xAAu8; len + 1];
        unsafe {
            assert_eq!(tkm_fp_encode(code, x.as_ptr(), x.len(), out.as_mut_ptr(), len + 1), TKM_STATUS_LENGTH_MISMATCH);
            let mut bad = x.clone();
            bad[7] = f32::NAN;
            assert_eq!(tkm_fp_encode(code, bad.as_ptr(), bad.len(), out.as_mut_ptr(), len), TKM_STATUS_NON_FINITE);
            assert_eq!(tkm_fp_encode(code, null(), x.len(), out.as_mut_ptr(), len), TKM_STATUS_NULL_POINTER);
            assert_eq!(
                tkm_fp_encode_coin_layout(code, x.as_ptr(), x.len(), bad.as_ptr(), 9, out.as_mut_ptr(), len),
                TKM_STATUS_LENGTH_MISMATCH
            );
        }
        assert!(out.iter().all(|&b| b == 0xAA));
    }
    unsafe {
        let mut n = 77usize;
        let mut out = [0xAAu8; 8];
        for code in [TKM_FP_KIND_NONE, TKM_FP_KIND_SIMHASH, 5, 256 + 1] {
            assert_eq!(tkm_fp_encoded_len(code, 2, &mut n), TKM_STATUS_INVALID_ARGUMENT);
            assert_eq!(tkm_fp_encode(code, x.as_ptr(), 2, out.as_mut_ptr(), 8), TKM_STATUS_INVALID_ARGUMENT);
        }
        assert_eq!(tkm_fp_encoded_len(TKM_FP_KIND_F32_CANONICAL, usize::MAX, &mut n), TKM_STATUS_SIZE_OVERFLOW);
        assert_eq!(tkm_fp_encoded_len(TKM_FP_KIND_BF16, 2, null_mut()), TKM_STATUS_NULL_POINTER);
        assert_eq!((n, out), (77, [0xAA; 8]));
        // A bf16 overflow after rounding is non-finite.
        let big = [f32::MAX];
        assert_eq!(tkm_fp_encode(TKM_FP_KIND_BF16, big.as_ptr(), 1, out.as_mut_ptr(), 2), TKM_STATUS_NON_FINITE);
    }
}

#[test]
fn signed_heads_match_core() {
    assert_eq!(TKM_FP_HEAD_FIXED_LEN, HEAD_FIXED_LEN);
    let root = [7u8; 32];
    let ctx = b"request 42 / model x";
    for (c, cl) in [(&ctx[..], ctx.len()), (&[][..], 0)] {
        let cp = if cl == 0 { null() } else { c.as_ptr() };
        let h = SignedHead { hash_id: 1, n: 1234, root, ctx: c };
        let mut want = vec![0u8; h.encoded_len()];
        h.encode(&mut want).unwrap();
        let mut len = 0usize;
        assert_eq!(unsafe { tkm_fp_signed_head_len(cl, &mut len) }, TKM_STATUS_OK);
        assert_eq!(len, want.len());
        let mut buf = vec![0xAAu8; len + 5];
        let mut wrote = 0usize;
        let s =
            unsafe { tkm_fp_signed_head_encode(1, 1234, root.as_ptr(), cp, cl, buf.as_mut_ptr(), len + 5, &mut wrote) };
        assert_eq!(s, TKM_STATUS_OK);
        assert_eq!((&buf[..wrote], &buf[wrote..]), (&want[..], &[0xAAu8; 5][..]));
        let mut d = [0u8; 32];
        assert_eq!(unsafe { tkm_fp_signed_head_digest(1, 1234, root.as_ptr(), cp, cl, d.as_mut_ptr()) }, TKM_STATUS_OK);
        assert_eq!(d, h.digest(&Blake3).unwrap());
        let mut parsed = tkm_fp_head::default();
        assert_eq!(unsafe { tkm_fp_signed_head_parse(want.as_ptr(), want.len(), &mut parsed) }, TKM_STATUS_OK);
        assert_eq!(parsed, tkm_fp_head { n: 1234, ctx_offset: HEAD_FIXED_LEN, ctx_len: cl, hash_id: 1, root });
        assert_eq!(&want[parsed.ctx_offset..parsed.ctx_offset + parsed.ctx_len], c);
    }
    // Errors.
    unsafe {
        let mut buf = [0xAAu8; 100];
        let mut wrote = 99usize;
        let r = root.as_ptr();
        let e = |hash_id: u32, root: *const u8, cap: usize, buf: &mut [u8], wrote: &mut usize| {
            tkm_fp_signed_head_encode(hash_id, 5, root, ctx.as_ptr(), ctx.len(), buf.as_mut_ptr(), cap, wrote)
        };
        assert_eq!(e(256, r, 100, &mut buf, &mut wrote), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(e(1, null(), 100, &mut buf, &mut wrote), TKM_STATUS_NULL_POINTER);
        assert_eq!(e(1, r, 60, &mut buf, &mut wrote), TKM_STATUS_LENGTH_MISMATCH);
        assert_eq!(
            tkm_fp_signed_head_encode(1, 5, r, ctx.as_ptr(), ctx.len(), buf.as_mut_ptr(), 100, null_mut()),
            TKM_STATUS_NULL_POINTER
        );
        assert!(buf.iter().all(|&b| b == 0xAA) && wrote == 99);
        let mut len = 0usize;
        assert_eq!(tkm_fp_signed_head_len(u32::MAX as usize + 1, &mut len), TKM_STATUS_SIZE_OVERFLOW);
        let mut d = [0xAAu8; 32];
        assert_eq!(tkm_fp_signed_head_digest(1, 5, r, null(), 3, d.as_mut_ptr()), TKM_STATUS_NULL_POINTER);
        assert_eq!(d, [0xAA; 32]);

        let h = SignedHead { hash_id: 1, n: 9, root, ctx: b"abc" };
        let mut good = vec![0u8; h.encoded_len()];
        h.encode(&mut good).unwrap();
        let mut parsed = tkm_fp_head { n: 77, ..Default::default() };
        let mut bad_tag = good.clone();
        bad_tag[0] = b'T';
        let mut bad_version = good.clone();
        bad_version[13] = 2;
        for bad in [&good[..good.len() - 1], &good[..10], &bad_tag[..], &bad_version[..]] {
            assert_eq!(tkm_fp_signed_head_parse(bad.as_ptr(), bad.len(), &mut parsed), TKM_STATUS_INVALID_ARGUMENT);
        }
        assert_eq!(tkm_fp_signed_head_parse(null(), 4, &mut parsed), TKM_STATUS_NULL_POINTER);
        assert_eq!(tkm_fp_signed_head_parse(good.as_ptr(), good.len(), null_mut()), TKM_STATUS_NULL_POINTER);
        assert_eq!(parsed.n, 77);
    }
}

#[test]
fn simhash_matches_core() {
    let seed = [3u8; 32];
    for (code, planes) in [(TKM_FP_PLANES_RADEMACHER, Planes::Rademacher), (TKM_FP_PLANES_GAUSSIAN, Planes::Gaussian)] {
        for (dim, words) in [(1usize, 1usize), (17, 2), (64, 4)] {
            let x = rand_f32(dim, dim as u64, 1.0);
            let (mut sig, mut grd) = (vec![0u64; words], vec![0u64; words]);
            simhash::simhash(&x, &seed, planes, 0.05, &mut sig, &mut grd).unwrap();
            let (mut sig2, mut grd2) = (vec![9u64; words], vec![9u64; words]);
            let s = unsafe {
                tkm_fp_simhash(x.as_ptr(), dim, seed.as_ptr(), code, 0.05, sig2.as_mut_ptr(), grd2.as_mut_ptr(), words)
            };
            assert_eq!(s, TKM_STATUS_OK);
            assert_eq!((&sig2, &grd2), (&sig, &grd));

            // A perturbed vector's signature, compared on unguarded bits.
            let y: Vec<f32> = x.iter().zip(rand_f32(dim, 99, 0.01)).map(|(a, d)| a + d).collect();
            let (mut sy, mut gy) = (vec![0u64; words], vec![0u64; words]);
            simhash::simhash(&y, &seed, planes, 0.05, &mut sy, &mut gy).unwrap();
            let mut d = 999u32;
            let s = unsafe { tkm_fp_masked_hamming(sig.as_ptr(), sy.as_ptr(), grd.as_ptr(), words, &mut d) };
            assert_eq!(s, TKM_STATUS_OK);
            assert_eq!(d, simhash::masked_hamming(&sig, &sy, &grd).unwrap());
            let s = unsafe { tkm_fp_masked_hamming(sig.as_ptr(), sy.as_ptr(), null(), words, &mut d) };
            assert_eq!(s, TKM_STATUS_OK);
            assert_eq!(d, simhash::hamming(&sig, &sy).unwrap());
            for (t, g_max) in [(0u32, 64u32), (3, 0), (0, 0)] {
                let mut acc = 9u32;
                let s = unsafe {
                    tkm_fp_simhash_accept(sig.as_ptr(), grd.as_ptr(), sy.as_ptr(), words, t, g_max, &mut acc)
                };
                assert_eq!(s, TKM_STATUS_OK);
                assert_eq!(acc, u32::from(simhash::simhash_accept(&sig, &grd, &sy, t, g_max).unwrap()));
            }

            // Leaf bytes and back.
            let mut want = vec![0u8; 16 * words];
            simhash::encode_simhash(&sig, &grd, &mut want).unwrap();
            let mut bytes = vec![0xAAu8; 16 * words];
            let s = unsafe { tkm_fp_encode_simhash(sig.as_ptr(), grd.as_ptr(), words, bytes.as_mut_ptr(), 16 * words) };
            assert_eq!(s, TKM_STATUS_OK);
            assert_eq!(bytes, want);
            let (mut s3, mut g3) = (vec![0u64; words], vec![0u64; words]);
            let s =
                unsafe { tkm_fp_decode_simhash(bytes.as_ptr(), bytes.len(), s3.as_mut_ptr(), g3.as_mut_ptr(), words) };
            assert_eq!(s, TKM_STATUS_OK);
            assert_eq!((s3, g3), (sig, grd));
        }
    }
    // Errors.
    unsafe {
        let x = [1.0f32, f32::INFINITY];
        let (mut sig, mut grd) = ([9u64; 2], [9u64; 2]);
        let sh = |x: *const f32,
                  dim: usize,
                  seed: *const u8,
                  planes: u32,
                  tau: f64,
                  words: usize,
                  sig: &mut [u64],
                  grd: &mut [u64]| {
            tkm_fp_simhash(x, dim, seed, planes, tau, sig.as_mut_ptr(), grd.as_mut_ptr(), words)
        };
        let sp = seed.as_ptr();
        assert_eq!(sh(x.as_ptr(), 2, sp, 0, 0.1, 2, &mut sig, &mut grd), TKM_STATUS_NON_FINITE);
        assert_eq!(sh(x.as_ptr(), 1, sp, 2, 0.1, 2, &mut sig, &mut grd), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(sh(x.as_ptr(), 1, sp, 0, -0.1, 2, &mut sig, &mut grd), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(sh(x.as_ptr(), 1, sp, 0, f64::NAN, 2, &mut sig, &mut grd), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(sh(x.as_ptr(), 0, sp, 0, 0.1, 2, &mut sig, &mut grd), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(sh(x.as_ptr(), 1, sp, 0, 0.1, 0, &mut sig, &mut grd), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(sh(x.as_ptr(), 1, null(), 0, 0.1, 2, &mut sig, &mut grd), TKM_STATUS_NULL_POINTER);
        assert_eq!((sig, grd), ([9; 2], [9; 2]));
        let mut d = 999u32;
        assert_eq!(tkm_fp_masked_hamming(sig.as_ptr(), null(), null(), 2, &mut d), TKM_STATUS_NULL_POINTER);
        assert_eq!(tkm_fp_masked_hamming(sig.as_ptr(), grd.as_ptr(), null(), 2, null_mut()), TKM_STATUS_NULL_POINTER);
        assert_eq!(tkm_fp_simhash_accept(sig.as_ptr(), null(), sig.as_ptr(), 2, 0, 0, &mut d), TKM_STATUS_NULL_POINTER);
        assert_eq!(d, 999);
        let mut bytes = [0xAAu8; 32];
        assert_eq!(
            tkm_fp_encode_simhash(sig.as_ptr(), grd.as_ptr(), 2, bytes.as_mut_ptr(), 31),
            TKM_STATUS_LENGTH_MISMATCH
        );
        assert_eq!(bytes, [0xAA; 32]);
        assert_eq!(
            tkm_fp_decode_simhash(bytes.as_ptr(), 31, sig.as_mut_ptr(), grd.as_mut_ptr(), 2),
            TKM_STATUS_LENGTH_MISMATCH
        );
        assert_eq!((sig, grd), ([9; 2], [9; 2]));
    }
}

#[test]
fn audit_sampling_matches_core() {
    for (m, forged, s, q) in [(1000u64, 10u64, 100u64, 1.0f64), (1000, 10, 100, 0.5), (50, 50, 3, 0.2), (10, 0, 5, 1.0)]
    {
        let want = sampling::detect_prob_hypergeom(m, forged, s, q).unwrap();
        let mut got = -1.0f64;
        assert_eq!(unsafe { tkm_fp_detect_prob(m, forged, s, q, &mut got) }, TKM_STATUS_OK);
        assert_eq!(got.to_bits(), want.to_bits());
        let f = forged as f64 / m as f64;
        let want = sampling::detect_prob_bound(f, s, q).unwrap();
        assert_eq!(unsafe { tkm_fp_detect_prob_bound(f, s, q, &mut got) }, TKM_STATUS_OK);
        assert_eq!(got.to_bits(), want.to_bits());
    }
    for (f, q, delta) in [(0.01f64, 1.0f64, 1e-6f64), (0.5, 0.3, 0.05), (1.0, 1.0, 0.1), (0.1, 0.1, 1.0)] {
        let want = sampling::samples_for_confidence(f, q, delta).unwrap();
        let mut got = 0u64;
        assert_eq!(unsafe { tkm_fp_samples_for_confidence(f, q, delta, &mut got) }, TKM_STATUS_OK);
        assert_eq!(got, want);
    }
    unsafe {
        let mut p = -1.0f64;
        let mut n = 7u64;
        assert_eq!(tkm_fp_detect_prob(10, 11, 5, 1.0, &mut p), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(tkm_fp_detect_prob(10, 1, 5, 1.5, &mut p), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(tkm_fp_detect_prob(10, 1, 5, 1.0, null_mut()), TKM_STATUS_NULL_POINTER);
        assert_eq!(tkm_fp_detect_prob_bound(f64::NAN, 5, 1.0, &mut p), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(tkm_fp_samples_for_confidence(0.0, 1.0, 0.1, &mut n), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(tkm_fp_samples_for_confidence(0.1, 1.0, 0.0, &mut n), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!(tkm_fp_samples_for_confidence(1e-300, 1e-300, 0.5, &mut n), TKM_STATUS_INVALID_ARGUMENT);
        assert_eq!((p, n), (-1.0, 7));
    }
}
