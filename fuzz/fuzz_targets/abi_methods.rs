//! The seed papers' methods through the C ABI: one entry point per case, picked from the
//! input, among the top-entropy threshold and mask and the cross-rank
//! `tkm_entropy_quantile_*` protocol (split over two ranks, with perturbed merges and
//! corrupted states), D3S, PSR/NSR and GRPO-N, HAPO, TW-GRPO, DoP, the preference losses
//! (DPO/SimPO, T-REG, cDPO, pass@k, TVM), the exploration bonuses (counts, count table,
//! E3B, RND/NovelD, reward assembly), QuoTA (budgets, resize/pool, ToMe) and xAR
//! (orderings, masks, flow matching, sampler); also THR/NTHR, the linear quantile and
//! entropy tiers, RMT's position sampling, the NTP term and TW-GRPO's text rewards. Sizes come from small integers and every
//! buffer is owned here and sized exactly as documented; floats are arbitrary bit patterns
//! (NaN, ±inf, subnormals) or finite values, optional pointers are sometimes NULL.
//!
//! Invariants: no call panics (`TKM_STATUS_INTERNAL_PANIC`) or returns an unknown code; a
//! failing call writes nothing (header rule 2, "outputs on success only"; in-place arrays
//! documented "unchanged on error" stay unchanged; DoP's documented exception for
//! `TKM_STATUS_NO_FINITE_LOGIT` is honoured); where a call takes exec options, the status
//! and every output bit are the same for one thread and for two; the two-rank protocol
//! gives bitwise the threshold of `tkm_top_entropy_threshold` on the whole batch.
#![no_main]

use core::cell::Cell;
use core::ffi::c_void;
use core::mem::size_of;
use core::ptr::{null, null_mut};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tokenmath::*;

#[derive(Arbitrary, Debug)]
struct Case {
    op: u8,
    dims: [u8; 6],
    big: [u64; 3],
    scal: [u32; 6],
    fmode: u16,
    nulls: u16,
    flags: u16,
    f: Vec<u32>,
    b: Vec<u8>,
    i: Vec<u32>,
}

const PF32: f32 = f32::from_bits(0x7FA5_A5A5);
const PF64: f64 = f64::from_bits(0x7FF5_A5A5_A5A5_A5A5);
const PB: u8 = 0xA5;
const PU32: u32 = 0xA5A5_A5A5;
const PU64: u64 = 0xA5A5_A5A5_A5A5_A5A5;
const PUSIZE: usize = 0xA5A5_A5A5;

/// A float from 32 input bits: the raw pattern, a finite value in ±128, a value in [0, 1],
/// or a special (NaN, ±inf, subnormal, ±0, 1).
fn val(w: u32, mode: u32) -> f32 {
    match mode & 3 {
        0 => f32::from_bits(w),
        1 => ((w as i32) >> 12) as f32 / 4096.0,
        2 => (w >> 8) as f32 / 16_777_215.0,
        _ => match w % 9 {
            0 => f32::NAN,
            1 => f32::INFINITY,
            2 => f32::NEG_INFINITY,
            3 => f32::from_bits(1 + (w >> 12)), // subnormal
            4 => -0.0,
            5 => 0.0,
            6 => 1.0,
            7 => f32::MAX,
            _ => ((w as i32) >> 20) as f32 / 64.0,
        },
    }
}

/// Draws the inputs of one case; every draw uses the next salt, so two buffers differ.
struct G<'a> {
    c: &'a Case,
    salt: Cell<usize>,
    null_bit: Cell<u32>,
}

impl<'a> G<'a> {
    fn next(&self) -> usize {
        let s = self.salt.get();
        self.salt.set(s + 1);
        s
    }
    fn mode(&self, s: usize) -> u32 {
        u32::from(self.c.fmode >> (2 * (s % 8))) & 3
    }
    fn word(&self, i: usize, s: usize) -> u32 {
        let f = &self.c.f;
        if f.is_empty() {
            (i as u32).wrapping_mul(0x9E37_79B9) ^ s as u32
        } else {
            f[(i + 7 * s) % f.len()]
        }
    }
    fn f32s(&self, n: usize) -> Vec<f32> {
        let s = self.next();
        let m = self.mode(s);
        (0..n).map(|i| val(self.word(i, s), m)).collect()
    }
    fn f64s(&self, n: usize) -> Vec<f64> {
        let s = self.next();
        let m = self.mode(s);
        (0..n)
            .map(|i| {
                if m == 0 {
                    f64::from_bits(u64::from(self.word(2 * i, s)) << 32 | u64::from(self.word(2 * i + 1, s)))
                } else {
                    f64::from(val(self.word(i, s), m))
                }
            })
            .collect()
    }
    fn u8s(&self, n: usize) -> Vec<u8> {
        let s = self.next();
        let b = &self.c.b;
        (0..n).map(|i| if b.is_empty() { 1 } else { b[(i + 3 * s) % b.len()] }).collect()
    }
    /// Bytes that are mostly 0/1 (flags, masks), sometimes other values.
    fn mask(&self, n: usize) -> Vec<u8> {
        let v = self.u8s(n);
        if self.c.flags & 0x8000 != 0 {
            v
        } else {
            v.into_iter().map(|x| x & 1).collect()
        }
    }
    fn u32s(&self, n: usize) -> Vec<u32> {
        let s = self.next();
        let v = &self.c.i;
        (0..n).map(|i| if v.is_empty() { i as u32 } else { v[(i + 5 * s) % v.len()] }).collect()
    }
    fn u64s(&self, n: usize) -> Vec<u64> {
        self.u32s(n).into_iter().map(|x| if x & 0x8000_0000 != 0 { u64::from(x) << 20 } else { u64::from(x) }).collect()
    }
    /// `n` labels mostly in `-1..vocab`, sometimes out of range.
    fn labels(&self, n: usize, vocab: usize) -> Vec<i32> {
        self.u32s(n)
            .into_iter()
            .map(|x| if x >> 28 == 0xF { x as i32 } else { (x % (vocab as u32 + 2)) as i32 - 1 })
            .collect()
    }
    /// The next optional pointer: NULL when its bit of `nulls` is set.
    fn opt<T>(&self, v: T) -> Option<T> {
        let b = self.null_bit.get();
        self.null_bit.set(b + 1);
        if self.c.nulls >> (b % 16) & 1 != 0 {
            None
        } else {
            Some(v)
        }
    }
    fn s(&self, k: usize) -> f32 {
        let w = self.c.scal[k % 6];
        val(w, w & 3)
    }
    fn d(&self, k: usize, max: usize) -> usize {
        usize::from(self.c.dims[k % 6]) % (max + 1)
    }
    fn flag(&self, bit: u32) -> bool {
        self.c.flags >> bit & 1 != 0
    }
    /// A selector in `0..n` from the flags (bits `bit..`).
    fn sel(&self, bit: u32, n: u16) -> u32 {
        u32::from((self.c.flags >> bit) % n)
    }
    /// An options struct, sometimes with an older (smaller) `struct_size`.
    fn opts<T>(&self, mut o: T) -> Option<T> {
        if self.flag(14) {
            // Never larger than the struct: the library would read past it.
            let sz = (self.c.big[2] as usize % 64).min(size_of::<T>());
            unsafe { (&mut o as *mut T as *mut usize).write(sz) };
        }
        self.opt(o)
    }
}

fn p<T>(v: &Option<Vec<T>>) -> *const T {
    v.as_ref().map_or(null(), |v| v.as_ptr())
}
fn pm<T>(v: &mut Option<Vec<T>>) -> *mut T {
    v.as_mut().map_or(null_mut(), |v| v.as_mut_ptr())
}
fn po<T>(v: &Option<T>) -> *const T {
    v.as_ref().map_or(null(), |v| v as *const T)
}
fn pom<T>(v: &mut Option<T>) -> *mut T {
    v.as_mut().map_or(null_mut(), |v| v as *mut T)
}

/// The bytes of plain data (no padding in any type used here).
fn bytes<T>(v: &[T]) -> Vec<u8> {
    unsafe { core::slice::from_raw_parts(v.as_ptr() as *const u8, core::mem::size_of_val(v)) }.to_vec()
}
fn obytes<T>(v: &Option<Vec<T>>) -> Vec<u8> {
    v.as_ref().map_or(Vec::new(), |v| bytes(v))
}
fn sbytes<T>(v: &Option<T>) -> Vec<u8> {
    v.as_ref().map_or(Vec::new(), |v| bytes(core::slice::from_ref(v)))
}

fn check_status(s: tkm_status, c: &Case) {
    assert_ne!(s, TKM_STATUS_INTERNAL_PANIC, "{c:?}");
    assert!(tkm_status::from_u32(s as u32).is_some(), "{c:?}");
}

/// Runs a call whose outputs are the listed expressions (their bytes before and after):
/// checks the status, and that nothing changed on error; returns the status and the bytes.
macro_rules! call {
    ($c:expr, [$($out:expr),* $(,)?], $call:expr) => {{
        let before: Vec<Vec<u8>> = vec![$($out),*];
        #[allow(unused_unsafe)]
        let s: tkm_status = unsafe { $call };
        check_status(s, $c);
        let after: Vec<Vec<u8>> = vec![$($out),*];
        if s != TKM_STATUS_OK {
            assert_eq!(before, after, "outputs written on error {s:?}: {:?}", $c);
        }
        let mut r = vec![s as u32 as u8];
        r.extend(after.concat());
        r
    }};
}

fn exec_opts(threads: u32) -> tkm_exec_options {
    let mut o = tkm_exec_options { struct_size: 0, threads: 0, backend: 0, cuda_stream: null_mut(), gpu_mode: 0 };
    assert_eq!(unsafe { tkm_exec_options_init(&mut o) }, TKM_STATUS_OK);
    o.threads = threads;
    o
}

/// Runs `f` with one thread (NULL options or `threads = 1`) and with two: the same bits.
fn both(c: &Case, f: impl Fn(*const tkm_exec_options) -> Vec<u8>) {
    let (one, two) = (exec_opts(1), exec_opts(2));
    let a = f(if c.flags & 0x4000 != 0 { null() } else { &one });
    let b = f(&two);
    assert_eq!(a, b, "status or outputs depend on the thread count: {c:?}");
}

/// Logits of `dtype` (any code) as raw words, `(rows - 1) * stride + vocab` elements.
fn logit_words(g: &G, dtype: u32, rows: usize, vocab: usize, stride: usize) -> Vec<u32> {
    let len = if rows == 0 { 0 } else { (rows - 1) * stride + vocab };
    let f = g.f32s(len.div_ceil(2) * 2);
    if dtype == TKM_DTYPE_F32 {
        f.into_iter().take(len.max(1)).map(f32::to_bits).collect()
    } else {
        // Two 16-bit values per word: the upper halves (bf16 of the values) or raw bits.
        f.chunks(2).map(|p| (p[0].to_bits() >> 16) | (p[1].to_bits() & 0xFFFF_0000)).collect::<Vec<_>>()
    }
    .into_iter()
    .chain(core::iter::once(0))
    .collect()
}

fn dtype_bytes(d: u32) -> usize {
    if d == TKM_DTYPE_F32 {
        4
    } else {
        2
    }
}

fuzz_target!(|c: Case| {
    let g = G { c: &c, salt: Cell::new(0), null_bit: Cell::new(0) };
    let c = &c;
    match c.op % 64 {
        // ---------------- top-entropy threshold, mask, quantile protocol ----------------
        0 => {
            let (rows, cols) = (g.d(0, 8), g.d(1, 40));
            let n = rows * cols;
            let (mask, ent) = (g.mask(n), g.f32s(n));
            let rho = g.s(0);
            both(c, |e| {
                let (mut has, mut th) = (PU32, PF32);
                call!(
                    c,
                    [bytes(&[has]), bytes(&[th])],
                    tkm_top_entropy_threshold(e, mask.as_ptr(), ent.as_ptr(), rows, cols, rho, &mut has, &mut th)
                )
            });
        }
        1 => {
            let (rows, cols) = (g.d(0, 8), g.d(1, 40));
            let n = rows * cols;
            let (mask, ent) = (g.mask(n), g.f32s(n));
            let (has, theta) = (g.sel(0, 3), g.s(0));
            let want_kept = !g.flag(2);
            both(c, |e| {
                let mut keep = vec![PB; n];
                let mut kept = if want_kept { Some(PU64) } else { None };
                call!(
                    c,
                    [bytes(&keep), sbytes(&kept)],
                    tkm_top_entropy_mask(
                        e,
                        mask.as_ptr(),
                        ent.as_ptr(),
                        rows,
                        cols,
                        has,
                        theta,
                        keep.as_mut_ptr(),
                        pom(&mut kept)
                    )
                )
            });
        }
        2 => quantile_protocol(c, &g),
        3 => corrupted_quantile(c, &g),
        // ---------------- D3S ----------------
        4 => {
            let n = g.d(0, 40);
            let x = g.f32s(n);
            let m = if g.flag(0) { c.big[0] as usize } else { c.big[0] as usize % (n + 2) };
            let mut keep = vec![PB; n];
            call!(c, [bytes(&keep)], tkm_max_variance_subset(x.as_ptr(), n, m, keep.as_mut_ptr()));
        }
        5 => {
            let n = g.d(0, 40);
            let adv = g.f32s(n);
            let ids = g.opt(g.u32s(n).into_iter().map(|v| v % 5).collect::<Vec<_>>());
            let group_size = g.d(1, 9);
            let stage = g.sel(0, 3);
            let per_group = if g.flag(2) { c.big[0] as usize } else { c.big[0] as usize % 6 };
            let n_keep = if g.flag(3) { c.big[1] as usize } else { c.big[1] as usize % (n + 2) };
            let mut keep = vec![PB; n];
            call!(
                c,
                [bytes(&keep)],
                tkm_d3s_select_samples(
                    adv.as_ptr(),
                    n,
                    p(&ids),
                    group_size,
                    stage,
                    per_group,
                    n_keep,
                    keep.as_mut_ptr()
                )
            );
        }
        6 => {
            let mut o =
                tkm_d3s_schedule_options { struct_size: 0, n_init: 0.0, n_final: 0.0, k_init: 0.0, k_final: 0.0 };
            assert_eq!(unsafe { tkm_d3s_schedule_options_init(&mut o) }, TKM_STATUS_OK);
            if g.flag(0) {
                (o.n_init, o.n_final, o.k_init, o.k_final) = (g.s(1), g.s(2), g.s(3), g.s(4));
            }
            let o = g.opts(o);
            let (mut n_keep, mut k) = (PUSIZE, PF32);
            call!(
                c,
                [bytes(&[n_keep]), bytes(&[k])],
                tkm_d3s_schedule(g.s(0), po(&o), c.big[0] as usize, &mut n_keep, &mut k)
            );
        }
        7 => {
            let (rows, cols) = (g.d(0, 8), g.d(1, 40));
            let n = rows * cols;
            let (mask, adv, ent, keep_rows) = (g.mask(n), g.f32s(n), g.f32s(n), g.mask(rows));
            let k_frac = g.s(0);
            let want_kept = !g.flag(0);
            both(c, |e| {
                let mut out = vec![PB; n];
                let mut kept = if want_kept { Some(PU64) } else { None };
                call!(
                    c,
                    [bytes(&out), sbytes(&kept)],
                    tkm_d3s_token_mask(
                        e,
                        mask.as_ptr(),
                        adv.as_ptr(),
                        ent.as_ptr(),
                        keep_rows.as_ptr(),
                        rows,
                        cols,
                        k_frac,
                        out.as_mut_ptr(),
                        pom(&mut kept)
                    )
                )
            });
        }
        // ---------------- PSR/NSR/W-REINFORCE, GRPO-N ----------------
        8 => {
            let (rows, cols) = (g.d(0, 8), g.d(1, 40));
            let n = rows * cols;
            let (mask, rewards) = (g.mask(n), g.f32s(n));
            // Scores mostly 0/1 (the outcome), sometimes arbitrary.
            let scores: Vec<f32> =
                if g.flag(1) { g.f32s(n) } else { g.u8s(n).into_iter().map(|b| (b & 1) as f32).collect() };
            let mut o = tkm_nsr_options { struct_size: 0, mode: 0, gamma: 0.0, lambda: 0.0, reserved: 0 };
            assert_eq!(unsafe { tkm_nsr_options_init(&mut o) }, TKM_STATUS_OK);
            o.mode = g.sel(2, 4);
            if g.flag(4) {
                (o.gamma, o.lambda) = (g.s(0), g.s(1));
            }
            o.reserved = u32::from(g.flag(5));
            let o = g.opts(o);
            both(c, |e| {
                let (mut keep, mut adv) = (vec![PB; rows], vec![PF32; n]);
                call!(
                    c,
                    [bytes(&keep), bytes(&adv)],
                    tkm_nsr_advantage(
                        e,
                        mask.as_ptr(),
                        rewards.as_ptr(),
                        scores.as_ptr(),
                        rows,
                        cols,
                        po(&o),
                        keep.as_mut_ptr(),
                        adv.as_mut_ptr()
                    )
                )
            });
        }
        9 => {
            let (rows, cols) = (g.d(0, 8), g.d(1, 40));
            let n = rows * cols;
            let (mask0, adv0) = (g.mask(n), g.f32s(rows));
            let mode = g.sel(0, 3);
            let want = !g.flag(2);
            both(c, |e| {
                let (mut mask, mut adv) = (mask0.clone(), adv0.clone());
                let mut pos = if want { Some(PUSIZE) } else { None };
                call!(
                    c,
                    [bytes(&mask), bytes(&adv), sbytes(&pos)],
                    tkm_grpo_negative_only(e, mask.as_mut_ptr(), adv.as_mut_ptr(), rows, cols, mode, pom(&mut pos))
                )
            });
        }
        10 => {
            let n = g.d(0, 40);
            let (probs, adv) = (g.f32s(n), g.f32s(n));
            let mut out = vec![PF32; n];
            call!(
                c,
                [bytes(&out)],
                tkm_expected_logit_update(probs.as_ptr(), adv.as_ptr(), n, g.s(0), out.as_mut_ptr())
            );
        }
        11 => {
            // NTHR reweighting in place ("nothing changes on error").
            let n = g.d(0, 40);
            let (adv0, scores, valid) = (g.f32s(n), g.f32s(n), g.mask(n));
            let (tau, eta) = (g.s(0), g.s(1));
            let want = !g.flag(0);
            both(c, |e| {
                let mut adv = adv0.clone();
                let mut count = if want { Some(PUSIZE) } else { None };
                call!(
                    c,
                    [bytes(&adv), sbytes(&count)],
                    tkm_nthr_reweight(
                        e,
                        adv.as_mut_ptr(),
                        scores.as_ptr(),
                        valid.as_ptr(),
                        n,
                        tau,
                        eta,
                        pom(&mut count)
                    )
                )
            });
        }
        // ---------------- HAPO ----------------
        12 => {
            let n = g.d(0, 40);
            let ent = g.f32s(n);
            let mask = g.opt(g.mask(n));
            let (q, eps, sign) = (g.s(0), g.s(1), g.sel(0, 3));
            let want = !g.flag(2);
            both(c, |e| {
                let mut h = vec![PF32; n];
                let mut norm = if want {
                    Some(tkm_hapo_norm { pivot: PF32, std: PF32, scale_pos: PF32, scale_neg: PF32 })
                } else {
                    None
                };
                call!(
                    c,
                    [bytes(&h), sbytes(&norm)],
                    tkm_hapo_entropy_norm(e, ent.as_ptr(), p(&mask), n, q, eps, sign, h.as_mut_ptr(), pom(&mut norm))
                )
            });
        }
        13 => {
            let (rows, vocab) = (g.d(0, 6), g.d(1, 300));
            let stride = vocab + g.d(2, 3);
            let dtype = g.sel(0, 5);
            let x = logit_words(&g, dtype, rows, vocab, stride);
            let base = g.f32s(rows);
            let norm = g.opt(tkm_hapo_norm { pivot: g.s(1), std: g.s(2), scale_pos: g.s(3), scale_neg: g.s(4) });
            let (tau, sign) = (g.s(0), g.sel(3, 3));
            let want = !g.flag(5);
            both(c, |e| {
                let mut t = vec![PF32; rows];
                let mut nf = if want { Some(PUSIZE) } else { None };
                call!(
                    c,
                    [bytes(&t), sbytes(&nf)],
                    tkm_hapo_adaptive_temperature(
                        e,
                        dtype,
                        x.as_ptr() as *const c_void,
                        rows,
                        vocab,
                        stride,
                        base.as_ptr(),
                        po(&norm),
                        tau,
                        sign,
                        t.as_mut_ptr(),
                        pom(&mut nf)
                    )
                )
            });
        }
        14 => {
            let (rows, cols) = (g.d(0, 8), g.d(1, 40));
            let n = rows * cols;
            let (r, mask) = (g.f32s(n), g.mask(n));
            let group: Vec<u32> = g.u32s(rows).into_iter().map(|v| if g.flag(0) { v } else { v % 3 }).collect();
            let mut o = tkm_hapo_adv_options {
                struct_size: 0,
                norm_by_std: 0,
                pad_in_check: 0,
                mask_output: 0,
                fallback_abs: 0.0,
                eps: 0.0,
            };
            assert_eq!(unsafe { tkm_hapo_adv_options_init(&mut o) }, TKM_STATUS_OK);
            if g.flag(1) {
                o.norm_by_std = g.sel(2, 3);
                o.pad_in_check = g.sel(4, 3);
                o.mask_output = g.sel(6, 3);
                (o.fallback_abs, o.eps) = (g.s(0), g.s(1));
            }
            let o = g.opts(o);
            both(c, |e| {
                let mut adv = vec![PF32; n];
                call!(
                    c,
                    [bytes(&adv)],
                    tkm_hapo_token_group_advantage(
                        e,
                        r.as_ptr(),
                        mask.as_ptr(),
                        group.as_ptr(),
                        rows,
                        cols,
                        po(&o),
                        adv.as_mut_ptr()
                    )
                )
            });
        }
        15 => {
            let n = g.d(0, 40);
            let h = g.f32s(n);
            let (lo, hi, alpha) = (g.s(0), g.s(1), g.s(2));
            both(c, |e| {
                let (mut a, mut b) = (vec![PF32; n], vec![PF32; n]);
                call!(
                    c,
                    [bytes(&a), bytes(&b)],
                    tkm_hapo_adaptive_clip(e, h.as_ptr(), n, lo, hi, alpha, a.as_mut_ptr(), b.as_mut_ptr())
                )
            });
        }
        16 => {
            let n = g.d(0, 40);
            let (adv, h, ratio, lo, hi) = (g.f32s(n), g.f32s(n), g.f32s(n), g.f32s(n), g.f32s(n));
            let beta = g.s(0);
            both(c, |e| {
                let mut out = vec![PF32; n];
                call!(
                    c,
                    [bytes(&out)],
                    tkm_hapo_redistribute(
                        e,
                        adv.as_ptr(),
                        h.as_ptr(),
                        ratio.as_ptr(),
                        lo.as_ptr(),
                        hi.as_ptr(),
                        n,
                        beta,
                        out.as_mut_ptr()
                    )
                )
            });
        }
        17 => {
            let (rows, cols) = (g.d(0, 8), g.d(1, 40));
            let n = rows * cols;
            let (logp, old, adv, mask) = (g.f32s(n), g.f32s(n), g.f32s(n), g.mask(n));
            let isw = g.opt(g.f32s(n));
            let (lo, hi) = (g.f32s(n), g.f32s(n));
            let dual = if g.flag(0) { 0.0 } else { g.s(0) };
            let want = !g.flag(1);
            both(c, |e| {
                let (mut loss, mut grad) = (vec![PF32; n], vec![PF32; n]);
                let mut st = if want {
                    Some(tkm_hapo_stats { valid: PU64, clipped: PU64, dual_clipped: PU64, neg_log_ratio_sum: PF64 })
                } else {
                    None
                };
                call!(
                    c,
                    [bytes(&loss), bytes(&grad), sbytes(&st)],
                    tkm_hapo_loss(
                        e,
                        logp.as_ptr(),
                        old.as_ptr(),
                        adv.as_ptr(),
                        mask.as_ptr(),
                        p(&isw),
                        lo.as_ptr(),
                        hi.as_ptr(),
                        rows,
                        cols,
                        dual,
                        loss.as_mut_ptr(),
                        grad.as_mut_ptr(),
                        pom(&mut st)
                    )
                )
            });
        }
        // ---------------- TW-GRPO ----------------
        18 => {
            let t = g.d(0, 4);
            let b = g.d(1, 6);
            let rows = if g.flag(0) { g.d(2, 20) } else { b * t };
            let vocab = g.d(3, 200);
            let stride = vocab + g.d(4, 2);
            let dtype = g.sel(1, 5);
            let x = logit_words(&g, dtype, rows, vocab, stride);
            let mask = g.mask(rows);
            // The saved statistics: from tkm_logits_fwd on the same logits, or arbitrary.
            let (mut max, mut log_sum) = (g.f32s(rows), g.f32s(rows));
            if !g.flag(4) {
                let (mut lse, mut h) = (vec![0f32; rows], vec![0f32; rows]);
                let (mut m2, mut l2) = (vec![0f32; rows], vec![0f32; rows]);
                let mut nf = 0usize;
                let inp = tkm_logits_input::new(
                    dtype,
                    x.as_ptr() as *const c_void,
                    rows,
                    vocab,
                    stride,
                    null(),
                    mask.as_ptr(),
                    1.0,
                    null(),
                );
                let s = unsafe {
                    tkm_logits_fwd(
                        null(),
                        &inp,
                        lse.as_mut_ptr(),
                        h.as_mut_ptr(),
                        null_mut(),
                        m2.as_mut_ptr(),
                        l2.as_mut_ptr(),
                        &mut nf,
                    )
                };
                check_status(s, c);
                if s == TKM_STATUS_OK {
                    (max, log_sum) = (m2, l2);
                }
            }
            let mut o = tkm_tw_grpo_options { struct_size: 0, group_size: 0, alpha: 0.0, clamp: 0.0 };
            assert_eq!(unsafe { tkm_tw_grpo_options_init(&mut o) }, TKM_STATUS_OK);
            o.group_size = if g.flag(5) { c.big[0] as u32 } else { 1 + (c.big[0] % 4) as u32 };
            if g.flag(6) {
                (o.alpha, o.clamp) = (g.s(0), g.s(1));
            }
            let o = g.opts(o);
            let want = !g.flag(7);
            both(c, |e| {
                let mut w = vec![PF32; rows];
                let mut nf = if want { Some(PUSIZE) } else { None };
                call!(
                    c,
                    [bytes(&w), sbytes(&nf)],
                    tkm_tw_grpo_token_weights(
                        e,
                        dtype,
                        x.as_ptr() as *const c_void,
                        rows,
                        vocab,
                        stride,
                        max.as_ptr(),
                        log_sum.as_ptr(),
                        mask.as_ptr(),
                        t,
                        po(&o),
                        w.as_mut_ptr(),
                        pom(&mut nf)
                    )
                )
            });
        }
        19 => {
            let n = g.d(0, 40);
            let (mask, loss, w) = (g.mask(n), g.f32s(n), g.f32s(n));
            let want = !g.flag(0);
            both(c, |e| {
                let mut l = PF32;
                let mut grad = if want { Some(vec![PF32; n]) } else { None };
                call!(
                    c,
                    [bytes(&[l]), obytes(&grad)],
                    tkm_tw_grpo_loss(e, mask.as_ptr(), loss.as_ptr(), w.as_ptr(), n, &mut l, pm(&mut grad))
                )
            });
        }
        // ---------------- DoP ----------------
        20 | 21 => dop(c, &g, c.op % 64 == 21),
        // ---------------- preference ----------------
        22 => {
            let n = g.d(0, 40);
            let (w, l) = (g.f32s(n), g.f32s(n));
            let mut o = tkm_dpo_options { struct_size: 0, beta: 0.0, label_smoothing: 0.0 };
            assert_eq!(unsafe { tkm_dpo_options_init(&mut o) }, TKM_STATUS_OK);
            if g.flag(0) {
                (o.beta, o.label_smoothing) = (g.s(0), g.s(1));
            }
            let o = g.opts(o);
            let want = !g.flag(1);
            both(c, |e| {
                let (mut loss, mut dl) = (vec![PF32; n], vec![PF32; n]);
                let mut margin = if want { Some(vec![PF32; n]) } else { None };
                call!(
                    c,
                    [bytes(&loss), bytes(&dl), obytes(&margin)],
                    tkm_dpo_loss(
                        e,
                        w.as_ptr(),
                        l.as_ptr(),
                        n,
                        po(&o),
                        loss.as_mut_ptr(),
                        dl.as_mut_ptr(),
                        pm(&mut margin)
                    )
                )
            });
        }
        23 => {
            let n = g.d(0, 40);
            let (sw, lw, sl, ll) = (g.f32s(n), g.u32s(n), g.f32s(n), g.u32s(n));
            let mut o = tkm_simpo_options { struct_size: 0, beta: 0.0, gamma: 0.0, label_smoothing: 0.0 };
            assert_eq!(unsafe { tkm_simpo_options_init(&mut o) }, TKM_STATUS_OK);
            if g.flag(0) {
                (o.beta, o.gamma, o.label_smoothing) = (g.s(0), g.s(1), g.s(2));
            }
            let o = g.opts(o);
            let want = !g.flag(1);
            both(c, |e| {
                let (mut loss, mut dl) = (vec![PF32; n], vec![PF32; n]);
                let mut margin = if want { Some(vec![PF32; n]) } else { None };
                call!(
                    c,
                    [bytes(&loss), bytes(&dl), obytes(&margin)],
                    tkm_simpo_loss(
                        e,
                        sw.as_ptr(),
                        lw.as_ptr(),
                        sl.as_ptr(),
                        ll.as_ptr(),
                        n,
                        po(&o),
                        loss.as_mut_ptr(),
                        dl.as_mut_ptr(),
                        pm(&mut margin)
                    )
                )
            });
        }
        24 => {
            let (rows, t) = (g.d(0, 8), g.d(1, 40));
            let n = rows * t;
            let (mask, lp, rp) = (g.mask(n), g.f32s(n), g.f32s(n));
            both(c, |e| {
                let mut rho = vec![PF32; rows];
                let a = call!(
                    c,
                    [bytes(&rho)],
                    tkm_seq_logratio(e, mask.as_ptr(), lp.as_ptr(), rp.as_ptr(), rows, t, rho.as_mut_ptr())
                );
                let mut grad = vec![PF32; n];
                let b = call!(
                    c,
                    [bytes(&grad)],
                    tkm_seq_logratio_bwd(e, mask.as_ptr(), rp.as_ptr(), rows, t, grad.as_mut_ptr())
                );
                [a, b].concat()
            });
        }
        25 => {
            let n = g.d(0, 40);
            let (mask, b, w) = (g.mask(n), g.f32s(n), g.f32s(n));
            both(c, |e| {
                let mut r = vec![PF32; n];
                call!(
                    c,
                    [bytes(&r)],
                    tkm_treg_token_rewards(e, mask.as_ptr(), b.as_ptr(), w.as_ptr(), n, r.as_mut_ptr())
                )
            });
        }
        26 => {
            let (rows, t) = (g.d(0, 8), g.d(1, 40));
            let n = rows * t;
            let (mask, lp, r) = (g.mask(n), g.f32s(n), g.f32s(n));
            let mut o = tkm_treg_reg_options { struct_size: 0, beta: 0.0, reduction: 0 };
            assert_eq!(unsafe { tkm_treg_reg_options_init(&mut o) }, TKM_STATUS_OK);
            o.reduction = g.sel(0, 3);
            if g.flag(2) {
                o.beta = g.s(0);
            }
            let o = g.opts(o);
            both(c, |e| {
                let (mut loss, mut grad) = (vec![PF32; rows], vec![PF32; n]);
                call!(
                    c,
                    [bytes(&loss), bytes(&grad)],
                    tkm_treg_reg_loss(
                        e,
                        mask.as_ptr(),
                        lp.as_ptr(),
                        r.as_ptr(),
                        rows,
                        t,
                        po(&o),
                        loss.as_mut_ptr(),
                        grad.as_mut_ptr()
                    )
                )
            });
        }
        27 => {
            let n = g.d(0, 40);
            let (h, rw, rl) = (g.f32s(n), g.f32s(n), g.f32s(n));
            let mut o = tkm_treg_options { struct_size: 0, alpha: 0.0, label_smoothing: 0.0, stop_grad_weight: 0 };
            assert_eq!(unsafe { tkm_treg_options_init(&mut o) }, TKM_STATUS_OK);
            o.stop_grad_weight = g.sel(0, 3);
            if g.flag(2) {
                (o.alpha, o.label_smoothing) = (g.s(0), g.s(1));
            }
            let o = g.opts(o);
            let want = !g.flag(3);
            both(c, |e| {
                let (mut l, mut dh, mut dr) = (vec![PF32; n], vec![PF32; n], vec![PF32; n]);
                let mut w = if want { Some(vec![PF32; n]) } else { None };
                call!(
                    c,
                    [bytes(&l), bytes(&dh), bytes(&dr), obytes(&w)],
                    tkm_treg_loss(
                        e,
                        h.as_ptr(),
                        rw.as_ptr(),
                        rl.as_ptr(),
                        n,
                        po(&o),
                        l.as_mut_ptr(),
                        dh.as_mut_ptr(),
                        dr.as_mut_ptr(),
                        pm(&mut w)
                    )
                )
            });
        }
        28 => {
            let (rows, vocab) = (g.d(0, 6), g.d(1, 300));
            let (ps, ns) = (vocab + g.d(2, 3), vocab + g.d(3, 3));
            let dtype = g.sel(0, 5);
            let pos = logit_words(&g, dtype, rows, vocab, ps);
            let neg = logit_words(&g, dtype, rows, vocab, ns);
            let targets: Vec<u32> = g.labels(rows, vocab).into_iter().map(|v| v as u32).collect();
            let beta = g.s(0);
            let want = !g.flag(3);
            both(c, |e| {
                let mut sc = vec![PF32; rows];
                let mut nf = if want { Some(PUSIZE) } else { None };
                call!(
                    c,
                    [bytes(&sc), sbytes(&nf)],
                    tkm_cdpo_ce_scores(
                        e,
                        dtype,
                        pos.as_ptr() as *const c_void,
                        ps,
                        neg.as_ptr() as *const c_void,
                        ns,
                        rows,
                        vocab,
                        targets.as_ptr(),
                        beta,
                        sc.as_mut_ptr(),
                        pom(&mut nf)
                    )
                )
            });
        }
        29 => {
            let (rows, t) = (g.d(0, 8), g.d(1, 40));
            let n = rows * t;
            let (mw, ml, dw, dl) = (g.mask(n), g.mask(n), g.f32s(n), g.f32s(n));
            let cw = g.opt(g.f32s(n));
            let v = g.f32s(n);
            let mut o = tkm_cdpo_options { struct_size: 0, beta: 0.0, label_smoothing: 0.0, only_neg: 0, form: 0 };
            assert_eq!(unsafe { tkm_cdpo_options_init(&mut o) }, TKM_STATUS_OK);
            o.only_neg = g.sel(0, 3);
            o.form = g.sel(2, 3);
            if g.flag(4) {
                (o.beta, o.label_smoothing) = (g.s(0), g.s(1));
            }
            let o = g.opts(o);
            both(c, |e| {
                let (mut loss, mut gw, mut gl) = (PF32, vec![PF32; n], vec![PF32; n]);
                call!(
                    c,
                    [bytes(&[loss]), bytes(&gw), bytes(&gl)],
                    tkm_cdpo_loss(
                        e,
                        mw.as_ptr(),
                        ml.as_ptr(),
                        dw.as_ptr(),
                        dl.as_ptr(),
                        p(&cw),
                        v.as_ptr(),
                        rows,
                        t,
                        po(&o),
                        &mut loss,
                        gw.as_mut_ptr(),
                        gl.as_mut_ptr()
                    )
                )
            });
        }
        30 => {
            let [n, k, cc] = c.big;
            // The estimate takes min(c, k) steps (a known cost, see the report of this
            // target): arbitrary n and one of c, k, the other below 2^16.
            let (n, cc, k) = match (g.flag(0), g.flag(1)) {
                (false, _) => (n % 300, cc % 300, k % 300),
                (true, false) => (n, cc, k % (1 << 16)),
                (true, true) => (n, cc % (1 << 16), k),
            };
            let mut out = PF64;
            call!(c, [bytes(&[out])], tkm_pass_at_k(n, cc, k, &mut out));
        }
        31 => {
            let n_paths = g.d(0, 8);
            let n_tokens = g.d(1, 40);
            let tokens: Vec<u32> = g.u32s(n_tokens).into_iter().map(|v| v % 4).collect();
            let mut offsets: Vec<usize> =
                g.u32s(n_paths + 1).into_iter().map(|v| v as usize % (n_tokens + 2)).collect();
            if !g.flag(0) {
                offsets.sort_unstable();
                offsets[0] = 0;
                offsets[n_paths] = n_tokens;
            }
            let outcome = g.mask(n_paths);
            let mut labels = vec![PF32; n_tokens];
            call!(
                c,
                [bytes(&labels)],
                tkm_tvm_prefix_value_labels(
                    tokens.as_ptr(),
                    n_tokens,
                    offsets.as_ptr(),
                    outcome.as_ptr(),
                    n_paths,
                    labels.as_mut_ptr()
                )
            );
        }
        32 => {
            let n = g.d(0, 40);
            let (mask, x, y) = (g.mask(n), g.f32s(n), g.f32s(n));
            let kind = g.sel(0, 3);
            both(c, |e| {
                let (mut loss, mut grad) = (PF32, vec![PF32; n]);
                call!(
                    c,
                    [bytes(&[loss]), bytes(&grad)],
                    tkm_value_loss(e, mask.as_ptr(), x.as_ptr(), y.as_ptr(), n, kind, &mut loss, grad.as_mut_ptr())
                )
            });
        }
        33 => {
            let n = g.d(0, 40);
            let s = g.f32s(n);
            let k = if g.flag(0) { c.big[0] as usize } else { c.big[0] as usize % (n + 2) };
            let mut out = vec![PUSIZE; k.min(n)];
            let mut n_out = PUSIZE;
            call!(
                c,
                [bytes(&out), bytes(&[n_out])],
                tkm_beam_step_select(s.as_ptr(), n, k, out.as_mut_ptr(), &mut n_out)
            );
        }
        // ---------------- exploration ----------------
        34 => {
            let n = g.d(0, 40);
            let ng = g.opt(g.u64s(n).into_iter().map(|v| if g.flag(0) { v } else { v % 5 }).collect::<Vec<_>>());
            let ne = g.opt(g.u64s(n).into_iter().map(|v| v % 4).collect::<Vec<_>>());
            let mut out = vec![PF32; n];
            call!(c, [bytes(&out)], tkm_count_bonuses(p(&ng), p(&ne), n, g.sel(1, 3), out.as_mut_ptr()));
        }
        35 => {
            let cap = if g.flag(0) { g.d(0, 20) } else { 1 << g.d(0, 5) };
            let n = g.d(1, 24);
            let small = !g.flag(1);
            let key = |v: u64| if small { v % 7 } else { v };
            let mut keys: Vec<u64> = g.u64s(cap).into_iter().map(key).collect();
            let mut counts: Vec<u64> = if g.flag(2) { g.u64s(cap) } else { vec![0; cap] };
            if g.flag(3) {
                // Keys and counts from a consistent table: a first batch of visits.
                keys.iter_mut().for_each(|k| *k = 0);
                counts.iter_mut().for_each(|k| *k = 0);
                let first: Vec<u64> = g.u64s(cap / 2).into_iter().map(key).collect();
                let mut tmp = vec![0u64; first.len()];
                let s = unsafe {
                    tkm_count_table_visit(
                        keys.as_mut_ptr(),
                        counts.as_mut_ptr(),
                        cap,
                        first.as_ptr(),
                        first.len(),
                        tmp.as_mut_ptr(),
                    )
                };
                check_status(s, c);
            }
            let visits: Vec<u64> = g.u64s(n).into_iter().map(key).collect();
            let mut out = vec![PU64; n];
            call!(
                c,
                [bytes(&keys), bytes(&counts), bytes(&out)],
                tkm_count_table_visit(
                    keys.as_mut_ptr(),
                    counts.as_mut_ptr(),
                    cap,
                    visits.as_ptr(),
                    n,
                    out.as_mut_ptr()
                )
            );
        }
        36 | 37 => {
            let (n_env, d) = (g.d(0, 4), g.d(1, 8));
            let mut o = tkm_e3b_options { struct_size: 0, ridge: 0.0, sym_every: 0, zero_first_step: 0 };
            assert_eq!(unsafe { tkm_e3b_options_init(&mut o) }, TKM_STATUS_OK);
            if g.flag(0) {
                o.ridge = g.s(0);
                o.sym_every = c.big[0] as u32 % 4;
                o.zero_first_step = g.sel(1, 3);
            }
            let o = g.opts(o);
            let len = n_env * d * d;
            let mut c0 = g.f32s(len);
            if c.op % 64 == 36 {
                call!(c, [bytes(&c0)], tkm_e3b_reset(po(&o), n_env, d, c0.as_mut_ptr()));
            } else {
                if g.flag(3) {
                    let s = unsafe { tkm_e3b_reset(null(), n_env, d, c0.as_mut_ptr()) };
                    check_status(s, c);
                }
                let phi = g.f32s(n_env * d);
                let steps: Vec<u64> = g.u64s(n_env).into_iter().map(|v| v % 3).collect();
                both(c, |e| {
                    let mut cinv = c0.clone();
                    let (mut scratch, mut bonus) = (vec![PF32; n_env * d], vec![PF32; n_env]);
                    // The scratch is the library's to use: only the inverses and the bonus are
                    // promised unchanged on error.
                    let r = call!(
                        c,
                        [bytes(&cinv), bytes(&bonus)],
                        tkm_e3b_step(
                            e,
                            po(&o),
                            n_env,
                            d,
                            cinv.as_mut_ptr(),
                            phi.as_ptr(),
                            steps.as_ptr(),
                            scratch.as_mut_ptr(),
                            bonus.as_mut_ptr()
                        )
                    );
                    let _ = &mut scratch;
                    r
                });
            }
        }
        38 => {
            let (rows, dim) = (g.d(0, 8), g.d(1, 16));
            let (pr, tg) = (g.f32s(rows * dim), g.f32s(rows * dim));
            both(c, |e| {
                let mut out = vec![PF32; rows];
                call!(c, [bytes(&out)], tkm_rnd_error(e, rows, dim, pr.as_ptr(), tg.as_ptr(), out.as_mut_ptr()))
            });
        }
        39 => {
            let n = g.d(0, 40);
            let (a, b) = (g.f32s(n), g.f32s(n));
            let mut out = vec![PF32; n];
            call!(c, [bytes(&out)], tkm_noveld_bonus(n, a.as_ptr(), b.as_ptr(), g.s(0), out.as_mut_ptr()));
            let mut out = vec![PF32; n];
            call!(
                c,
                [bytes(&out)],
                tkm_combine_bonuses(n, a.as_ptr(), b.as_ptr(), g.sel(0, 3), g.s(1), out.as_mut_ptr())
            );
        }
        40 => {
            let f = g.f64s(6);
            let a = tkm_running_moments { count: f[0], sum: f[1], m2: f[2] };
            let b = tkm_running_moments { count: f[3], sum: f[4], m2: f[5] };
            let mut out = tkm_running_moments { count: PF64, sum: PF64, m2: PF64 };
            call!(c, [bytes(&[out])], tkm_running_moments_merge(&a, &b, &mut out));
        }
        41 | 42 => {
            let n = g.d(0, 40);
            let mut o = tkm_assemble_options {
                struct_size: 0,
                norm: 0,
                intrinsic_coef: 0.0,
                clip: 0,
                use_extrinsic: 0,
                compat: 0,
                time_steps: 0,
            };
            assert_eq!(unsafe { tkm_assemble_options_init(&mut o) }, TKM_STATUS_OK);
            o.norm = g.sel(0, 5);
            o.clip = g.sel(3, 3);
            o.use_extrinsic = g.sel(5, 3);
            o.compat = g.sel(7, 3);
            o.time_steps = c.big[0] as usize % 5;
            if g.flag(9) {
                o.intrinsic_coef = g.s(0);
            }
            let o = g.opts(o);
            let ext = g.opt(g.f32s(n));
            let int = g.f32s(n);
            if c.op % 64 == 41 {
                let mut out = tkm_running_moments { count: PF64, sum: PF64, m2: PF64 };
                call!(c, [bytes(&[out])], tkm_reward_norm_batch_moments(n, p(&ext), int.as_ptr(), po(&o), &mut out));
            } else {
                let f = g.f64s(3);
                let mut m = tkm_running_moments { count: f[0], sum: f[1], m2: f[2] };
                if g.flag(10) {
                    m = tkm_running_moments { count: f[0].abs(), sum: f[1], m2: f[2].abs() };
                }
                let mut out = vec![PF32; n];
                call!(
                    c,
                    [bytes(&[m]), bytes(&out)],
                    tkm_assemble_rewards(n, p(&ext), int.as_ptr(), po(&o), &mut m, g.sel(11, 3), out.as_mut_ptr())
                );
            }
        }
        // ---------------- QuoTA ----------------
        43 => {
            let secs = g.f64s(1)[0];
            let mut out = PU32;
            call!(c, [bytes(&[out])], tkm_quota_frame_count(secs, c.big[0] as u32, c.big[1] as u32, &mut out));
            let count = g.d(0, 40);
            let total = if g.flag(0) { c.big[2] } else { c.big[2] % 50 };
            let mut idx = vec![PU64; count];
            call!(c, [bytes(&idx)], tkm_quota_frame_indices(total, count, idx.as_mut_ptr()));
            let (mut h, mut w) = (PU32, PU32);
            call!(c, [bytes(&[h]), bytes(&[w])], tkm_quota_grid_for_budget(c.big[1] as u32, &mut h, &mut w));
        }
        44 => {
            let n = g.d(0, 40);
            let py = g.f32s(n);
            let mut out = vec![PF32; n];
            call!(c, [bytes(&out)], tkm_quota_frame_weights(n, py.as_ptr(), g.s(0), g.s(1), out.as_mut_ptr()));
            let mut w = g.f32s(n);
            call!(c, [bytes(&w)], tkm_quota_scale_weights(n, w.as_mut_ptr(), g.s(2)));
            let w = g.f32s(n);
            let total = if g.flag(0) { c.big[0] as u32 } else { c.big[0] as u32 % 1000 };
            let mut b = vec![PU32; n];
            call!(c, [bytes(&b)], tkm_quota_token_budgets(n, w.as_ptr(), total, g.sel(1, 3), b.as_mut_ptr()));
        }
        45 => {
            let (h, w, ch, oh, ow) = (g.d(0, 9), g.d(1, 9), g.d(2, 4), g.d(3, 9), g.d(4, 9));
            let src = g.f32s(h * w * ch);
            let mut out = vec![PF32; oh * ow * ch];
            call!(
                c,
                [bytes(&out)],
                tkm_quota_resize_hwc(src.as_ptr(), h, w, ch, oh, ow, g.sel(0, 3), out.as_mut_ptr())
            );
        }
        46 => {
            let (t, dim) = (g.d(0, 24), g.d(1, 8));
            let x = g.f32s(t * dim);
            let r = if g.flag(0) { c.big[0] as usize } else { c.big[0] as usize % (t + 2) };
            let mut out = vec![PF32; t * dim];
            let mut t_out = PUSIZE;
            call!(
                c,
                [bytes(&out), bytes(&[t_out])],
                tkm_quota_tome_round(x.as_ptr(), t, dim, r, out.as_mut_ptr(), &mut t_out)
            );
        }
        // ---------------- xAR ----------------
        47 => {
            let (h, w) = (g.d(0, 16), g.d(1, 16));
            let k = if g.flag(0) { c.big[0] as usize } else { c.big[0] as usize % 9 };
            let mut out = vec![PU32; h * w];
            call!(c, [bytes(&out)], tkm_xar_cell_permutation(h, w, k, out.as_mut_ptr()));
            let mut out = vec![PU32; h * w];
            call!(c, [bytes(&out)], tkm_xar_subsample_permutation(h, w, k, out.as_mut_ptr()));
        }
        48 => {
            let n = g.d(0, 40);
            let mut perm: Vec<u32> = g.u32s(n);
            if !g.flag(0) {
                // Mostly a permutation (from the order of the values), sometimes not.
                let mut idx: Vec<u32> = (0..n as u32).collect();
                idx.sort_by_key(|&i| perm[i as usize]);
                perm = idx;
            }
            let mut out = vec![PU32; n];
            call!(c, [bytes(&out)], tkm_xar_invert_permutation(n, perm.as_ptr(), out.as_mut_ptr()));
        }
        49 => {
            let n = g.d(0, 12);
            let full = if g.flag(0) { c.big[0] as usize } else { c.big[0] as usize % 600 };
            let mut out = vec![PUSIZE; n];
            call!(c, [bytes(&out)], tkm_xar_scale_sizes(full, n, out.as_mut_ptr()));
            // Arbitrary sizes for the length (nothing else is written).
            let [a, b, k] = c.big;
            let mut len = PUSIZE;
            call!(c, [bytes(&[len])], tkm_xar_scale_gather_len(a as usize, b as usize, k as usize, &mut len));
            let (h, w, k) = (g.d(1, 16), g.d(2, 16), g.d(3, 6));
            let mut len = PUSIZE;
            let s = call!(c, [bytes(&[len])], tkm_xar_scale_gather_len(h, w, k, &mut len));
            let out_len = if s[0] == 0 && !g.flag(1) && len <= 4096 { len } else { g.d(4, 64) };
            let mut out = vec![PU32; out_len];
            call!(c, [bytes(&out)], tkm_xar_scale_gather(h, w, k, out.as_mut_ptr(), out_len));
        }
        50 => {
            let (ne, el) = (g.d(0, 8), g.d(1, 8));
            let l = ne * el;
            let mut out = vec![PF32; l * l];
            call!(c, [bytes(&out)], tkm_xar_block_causal_mask(ne, el, out.as_mut_ptr()));
            let n = g.d(2, 6);
            let lens: Vec<usize> =
                g.u64s(n).into_iter().map(|v| if g.flag(0) { v as usize } else { v as usize % 9 }).collect();
            let total = lens.iter().try_fold(0usize, |a, &b| a.checked_add(b));
            let out_len = match total.and_then(|t| t.checked_mul(t)) {
                Some(sq) if sq <= 4096 && !g.flag(1) => sq,
                _ => g.d(3, 64),
            };
            let mut out = vec![PF32; out_len];
            call!(c, [bytes(&out)], tkm_xar_block_causal_mask_lens(n, lens.as_ptr(), out.as_mut_ptr(), out_len));
        }
        51 => {
            let (b, ne, el) = (g.d(0, 4), g.d(1, 4), g.d(2, 6));
            let n = b * ne * el;
            let (x, eps, t) = (g.f32s(n), g.f32s(n), g.f32s(b * ne));
            let (mut xt, mut v) = (vec![PF32; n], vec![PF32; n]);
            call!(
                c,
                [bytes(&xt), bytes(&v)],
                tkm_xar_flow_interpolate(
                    b,
                    ne,
                    el,
                    x.as_ptr(),
                    eps.as_ptr(),
                    t.as_ptr(),
                    xt.as_mut_ptr(),
                    v.as_mut_ptr()
                )
            );
        }
        52 => {
            let n = g.d(0, 40);
            let z = g.f64s(n);
            let (mu, sigma) = (f64::from(g.s(0)), f64::from(g.s(1)));
            let mut out = vec![PF32; n];
            call!(c, [bytes(&out)], tkm_xar_logit_normal(n, z.as_ptr(), mu, sigma, out.as_mut_ptr()));
            let t = g.f32s(n);
            let mut idx = vec![PU64 as i64; n];
            call!(c, [bytes(&idx)], tkm_xar_timestep_index(n, t.as_ptr(), idx.as_mut_ptr()));
        }
        53 => {
            let n = g.d(0, 40);
            let batch = if g.flag(0) { c.big[0] as usize } else { c.big[0] as usize % 5 };
            let (pr, tg) = (g.f32s(n), g.f32s(n));
            let mut loss = PF64;
            let mut grad = g.opt(vec![PF32; n]);
            call!(
                c,
                [bytes(&[loss]), obytes(&grad)],
                tkm_xar_flow_loss(batch, n, pr.as_ptr(), tg.as_ptr(), &mut loss, pm(&mut grad))
            );
        }
        54 => {
            let cfg = g.f64s(1)[0];
            let (step, ne) = if g.flag(0) { (c.big[0] as usize, c.big[1] as usize) } else { (g.d(0, 9), g.d(1, 9)) };
            let mut out = PF64;
            call!(c, [bytes(&[out])], tkm_xar_cfg_schedule(cfg, step, ne, g.sel(1, 4), &mut out));
            let steps = g.d(2, 40);
            let t = g.f64s(2);
            let mut grid = vec![PF64; steps + 1];
            call!(c, [bytes(&grid)], tkm_xar_em_time_grid(steps, t[0], t[1], grid.as_mut_ptr()));
        }
        55 => {
            let n = g.d(0, 40);
            let (v, x, dc, du) = (g.f64s(n), g.f64s(n), g.f64s(n), g.f64s(n));
            let t = g.f64s(4);
            let mut out = vec![PF64; n];
            call!(c, [bytes(&out)], tkm_xar_em_drift(n, v.as_ptr(), x.as_ptr(), t[0], g.sel(0, 3), out.as_mut_ptr()));
            let mut out = vec![PF64; n];
            call!(
                c,
                [bytes(&out)],
                tkm_xar_cfg_combine(n, dc.as_ptr(), du.as_ptr(), t[1], t[2], t[3], t[0], out.as_mut_ptr())
            );
        }
        56 => {
            let n = g.d(0, 40);
            let (mut x, d) = (g.f64s(n), g.f64s(n));
            let noise = g.opt(g.f64s(n));
            let t = g.f64s(2);
            call!(c, [bytes(&x)], tkm_xar_em_step(n, x.as_mut_ptr(), d.as_ptr(), t[0], t[1], p(&noise)));
        }
        // ---------------- THR, NTHR, the linear quantile, RMT, TW-GRPO's text rewards ----------------
        57 => {
            let n = g.d(0, 40);
            let (adv0, thr) = (g.f32s(n), g.f32s(n));
            let mut o = tkm_thr_options { struct_size: 0, mode: 0, p: 0.0, keep_non_dominant: 0, reserved: 0 };
            assert_eq!(unsafe { tkm_thr_options_init(&mut o) }, TKM_STATUS_OK);
            o.mode = g.sel(0, 3);
            o.keep_non_dominant = g.sel(2, 3);
            o.reserved = u32::from(g.flag(4));
            if g.flag(5) {
                o.p = g.s(1);
            }
            let o = g.opts(o);
            let tau = g.s(0);
            let want = !g.flag(6);
            both(c, |e| {
                let mut adv = adv0.clone();
                let mut dom = if want { Some(PUSIZE) } else { None };
                call!(
                    c,
                    [bytes(&adv), sbytes(&dom)],
                    tkm_thr_reweight(e, adv.as_mut_ptr(), thr.as_ptr(), n, tau, po(&o), pom(&mut dom))
                )
            });
        }
        58 => {
            let (rows, cols) = (g.d(0, 8), g.d(1, 40));
            let n = rows * cols;
            let (mask, v) = (g.mask(n), g.f32s(n));
            let q = g.f64s(3);
            let want = !g.flag(0);
            both(c, |e| {
                let (mut has, mut val) = (PU32, PF32);
                let a = call!(
                    c,
                    [bytes(&[has]), bytes(&[val])],
                    tkm_linear_quantile(e, mask.as_ptr(), v.as_ptr(), rows, cols, q[0], &mut has, &mut val)
                );
                let mut tiers = vec![PB; n];
                let mut th = if want { Some(vec![PF32; 2]) } else { None };
                let b = call!(
                    c,
                    [bytes(&tiers), obytes(&th)],
                    tkm_entropy_tiers(
                        e,
                        mask.as_ptr(),
                        v.as_ptr(),
                        rows,
                        cols,
                        q[1],
                        q[2],
                        tiers.as_mut_ptr(),
                        pm(&mut th)
                    )
                );
                [a, b].concat()
            });
        }
        59 => {
            let n = g.d(0, 40);
            let tiers: Vec<u8> = g.u8s(n).into_iter().map(|t| if g.flag(0) { t } else { t % 4 }).collect();
            let pr = g.f32s(3);
            let u = g.f64s(2);
            let (mut found, mut pos) = (PU32, PUSIZE);
            call!(
                c,
                [bytes(&[found]), bytes(&[pos])],
                tkm_rmt_pick_position(tiers.as_ptr(), n, pr.as_ptr(), u[0], u[1], &mut found, &mut pos)
            );
        }
        60 => {
            // Completions from tag pieces and option letters (or raw bytes, often not UTF-8).
            const PIECES: [&str; 12] =
                ["<think>", "</think>", "<answer>", "</answer>", "A", "B", ",", " ", "\n", "!", "é", "C,A"];
            let text = |v: Vec<u8>| -> Vec<u8> {
                if g.flag(0) {
                    v
                } else {
                    v.iter().flat_map(|&b| PIECES[usize::from(b) % PIECES.len()].bytes()).collect()
                }
            };
            let comp = text(g.u8s(g.d(0, 24)));
            let sol = text(g.u8s(g.d(1, 8)));
            let ok = g.sel(1, 3);
            let mut out = PF32;
            call!(
                c,
                [bytes(&[out])],
                tkm_tw_grpo_soft_multichoice_reward(comp.as_ptr(), comp.len(), sol.as_ptr(), sol.len(), ok, &mut out)
            );
            let mut out = PF32;
            call!(
                c,
                [bytes(&[out])],
                tkm_tw_grpo_exact_multichoice_reward(comp.as_ptr(), comp.len(), sol.as_ptr(), sol.len(), ok, &mut out)
            );
            let mut out = PF32;
            call!(c, [bytes(&[out])], tkm_tw_grpo_format_reward(comp.as_ptr(), comp.len(), &mut out));
        }
        61 => {
            let nr = g.d(0, 8);
            let lens: Vec<usize> = g.u32s(nr).into_iter().map(|v| v as usize % 6).collect();
            let total: usize = lens.iter().sum();
            let ns = if g.flag(0) { g.d(1, 30) } else { total };
            let sc = g.f32s(ns);
            let mut tau = PF32;
            call!(c, [bytes(&[tau])], tkm_nthr_threshold(sc.as_ptr(), ns, lens.as_ptr(), nr, g.s(0), &mut tau));
            let (cc, grp) = if g.flag(1) { (c.big[0] as usize, c.big[1] as usize) } else { (g.d(2, 9), g.d(3, 9)) };
            let mut eta = PF32;
            call!(c, [bytes(&[eta])], tkm_nthr_eta(cc, grp, &mut eta));
        }
        62 => {
            let (rows, cols) = (g.d(0, 8), g.d(1, 40));
            let n = rows * cols;
            let (mask, rl, lp) = (g.mask(n), g.mask(n), g.f32s(n));
            both(c, |e| {
                let (mut loss, mut grad) = (PF32, vec![PF32; n]);
                call!(
                    c,
                    [bytes(&[loss]), bytes(&grad)],
                    tkm_ntp_masked_loss(
                        e,
                        mask.as_ptr(),
                        rl.as_ptr(),
                        lp.as_ptr(),
                        rows,
                        cols,
                        &mut loss,
                        grad.as_mut_ptr()
                    )
                )
            });
        }
        _ => {}
    }
});

/// DoP loss and gradient, into a separate buffer or over the logits.
fn dop(c: &Case, g: &G, inplace: bool) {
    let (rows, vocab) = (g.d(0, 6), g.d(1, 300));
    let stride = vocab + g.d(2, 3);
    let dtype = g.sel(0, 5);
    let grad_dtype = g.sel(3, 5);
    let dx_stride = vocab + g.d(3, 2);
    let x = logit_words(g, dtype, rows, vocab, stride);
    let targets = if g.flag(6) { None } else { Some(g.labels(rows, vocab)) };
    let row_mask = g.opt(g.mask(rows));
    let temperature = if g.flag(7) { g.s(0) } else { 1.0 };
    let temps = g.opt(g.f32s(rows));
    let mut o = tkm_dop_options { struct_size: 0, beta: 0.0, lam_top: 0.0, lam_tail: 0.0, grad_scale: 0.0, top_k: 0 };
    assert_eq!(unsafe { tkm_dop_options_init(&mut o) }, TKM_STATUS_OK);
    if g.flag(8) {
        (o.beta, o.lam_top, o.lam_tail, o.grad_scale) = (g.s(1), g.s(2), g.s(3), g.s(4));
    }
    o.top_k = if g.flag(9) { c.big[0] as usize } else { c.big[0] as usize % (vocab + 2) };
    let o = g.opts(o);
    let want = !g.flag(10);
    both(c, |e| {
        let mut loss = vec![PF32; rows];
        let mut nf = if want { Some(PUSIZE) } else { None };
        let s;
        let grad: Vec<u8>;
        if inplace {
            let mut xm = x.clone();
            s = unsafe {
                tkm_dop_loss_and_grad_inplace(
                    e,
                    dtype,
                    xm.as_mut_ptr() as *mut c_void,
                    rows,
                    vocab,
                    stride,
                    p(&targets),
                    p(&row_mask),
                    temperature,
                    p(&temps),
                    po(&o),
                    loss.as_mut_ptr(),
                    pom(&mut nf),
                )
            };
            // On NO_FINITE_LOGIT the logits hold unspecified values (as dx does); any other
            // error leaves them.
            if s != TKM_STATUS_OK && s != TKM_STATUS_NO_FINITE_LOGIT {
                assert_eq!(xm, x, "logits written on error {s:?}: {c:?}");
            }
            grad = if s == TKM_STATUS_OK { bytes(&xm) } else { Vec::new() };
        } else {
            let dx_len = if rows == 0 { 0 } else { (rows - 1) * dx_stride + vocab };
            let words = (dx_len * dtype_bytes(grad_dtype.clamp(1, 3))).div_ceil(4).max(1);
            let mut dx = vec![PU32; words];
            s = unsafe {
                tkm_dop_loss_and_grad(
                    e,
                    dtype,
                    x.as_ptr() as *const c_void,
                    rows,
                    vocab,
                    stride,
                    p(&targets),
                    p(&row_mask),
                    temperature,
                    p(&temps),
                    po(&o),
                    loss.as_mut_ptr(),
                    grad_dtype,
                    dx.as_mut_ptr() as *mut c_void,
                    dx_stride,
                    pom(&mut nf),
                )
            };
            if s != TKM_STATUS_OK && s != TKM_STATUS_NO_FINITE_LOGIT {
                assert!(dx.iter().all(|&w| w == PU32), "dx written on error {s:?}: {c:?}");
            }
            // The elements between rows are never touched.
            if s == TKM_STATUS_OK && grad_dtype == TKM_DTYPE_F32 {
                for r in 0..rows.saturating_sub(1) {
                    assert!(dx[r * dx_stride + vocab..(r + 1) * dx_stride].iter().all(|&w| w == PU32), "{c:?}");
                }
            }
            grad = if s == TKM_STATUS_OK { bytes(&dx) } else { Vec::new() };
        }
        check_status(s, c);
        if s != TKM_STATUS_OK {
            assert!(loss.iter().all(|v| v.to_bits() == PF32.to_bits()), "loss written on error {s:?}: {c:?}");
            assert_eq!(nf, if want { Some(PUSIZE) } else { None }, "{c:?}");
        }
        [vec![s as u32 as u8], bytes(&loss), sbytes(&nf), grad].concat()
    });
}

/// The cross-rank protocol with the rows split over two ranks: bitwise the one-rank
/// threshold, at most 4 histogram rounds and one min-above round. With a perturbed merge
/// (a caller's bug) it must refuse or go on, never panic, and keep the state on refusal.
fn quantile_protocol(c: &Case, g: &G) {
    let (rows, cols) = (g.d(0, 8), g.d(1, 40));
    let n = rows * cols;
    let (mask, ent) = (g.mask(n), g.f32s(n));
    let rho = if g.flag(0) { g.s(0) } else { (1 + c.big[1] % 100) as f32 / 100.0 };
    let split = (c.big[0] as usize % (rows + 1)) * cols;
    let ranks = [(0, split), (split, n)];
    let perturb = if g.flag(1) { Some((c.big[2] as usize % 256, c.big[2] >> 8)) } else { None };
    both(c, |e| {
        let mut log = Vec::new();
        let (mut has, mut th) = (PU32, PF32);
        let sref =
            unsafe { tkm_top_entropy_threshold(e, mask.as_ptr(), ent.as_ptr(), rows, cols, rho, &mut has, &mut th) };
        check_status(sref, c);
        let mut global = 0u64;
        for &(a, b) in &ranks {
            let mut k = PU64;
            let s = unsafe { tkm_valid_count(e, mask[a..b].as_ptr(), (b - a) / cols.max(1), cols, &mut k) };
            assert_eq!(s, TKM_STATUS_OK, "{c:?}");
            global += k;
        }
        let mut st = tkm_entropy_quantile::default();
        let s = unsafe { tkm_entropy_quantile_init(global, rho, &mut st) };
        check_status(s, c);
        log.push(s as u32 as u8);
        if s != TKM_STATUS_OK {
            assert_eq!(s, TKM_STATUS_INVALID_ARGUMENT, "{c:?}");
            assert_eq!(sref, TKM_STATUS_INVALID_ARGUMENT, "{c:?}");
            assert_eq!(st, tkm_entropy_quantile::default(), "state written on error: {c:?}");
            return log;
        }
        let mut perturbed = false;
        for round in 0..7 {
            assert!(round < 6, "the protocol does not finish: {c:?}");
            let mut step = PU32;
            assert_eq!(unsafe { tkm_entropy_quantile_step(&st, &mut step) }, TKM_STATUS_OK, "{c:?}");
            log.push(step as u8);
            match step {
                TKM_QUANTILE_STEP_HISTOGRAM => {
                    let mut merged = [0u64; TKM_RADIX_BINS];
                    for &(a, b) in &ranks {
                        let mut h = [PU64; TKM_RADIX_BINS];
                        let r = (b - a) / cols.max(1);
                        let s = call!(
                            c,
                            [bytes(&h)],
                            tkm_entropy_quantile_local_histogram(
                                &st,
                                e,
                                mask[a..b].as_ptr(),
                                ent[a..b].as_ptr(),
                                r,
                                cols,
                                h.as_mut_ptr()
                            )
                        );
                        if s[0] != 0 {
                            assert_eq!(s[0], TKM_STATUS_NON_FINITE as u8, "{c:?}");
                            assert_eq!(round, 0, "a non-finite entropy found after round 1: {c:?}");
                            assert!(perturbed || sref == TKM_STATUS_NON_FINITE, "{c:?}");
                            log.extend(s);
                            return log;
                        }
                        for (m, v) in merged.iter_mut().zip(h) {
                            *m = m.saturating_add(v);
                        }
                    }
                    if let Some((bin, add)) = perturb.filter(|_| !perturbed) {
                        merged[bin] = merged[bin].wrapping_add(add);
                        perturbed = add != 0;
                    }
                    let before = st;
                    let s = unsafe { tkm_entropy_quantile_push_histogram(&mut st, merged.as_ptr()) };
                    check_status(s, c);
                    log.push(s as u32 as u8);
                    if s != TKM_STATUS_OK {
                        assert_eq!(st, before, "state changed on error: {c:?}");
                        assert!(perturbed, "an exact merge refused ({s:?}): {c:?}");
                        assert_eq!(s, TKM_STATUS_INVALID_ARGUMENT, "{c:?}");
                        return log;
                    }
                }
                TKM_QUANTILE_STEP_MIN_ABOVE => {
                    let mut min = f32::INFINITY;
                    for &(a, b) in &ranks {
                        let mut v = PF32;
                        let r = (b - a) / cols.max(1);
                        let s = call!(
                            c,
                            [bytes(&[v])],
                            tkm_entropy_quantile_local_min_above(
                                &st,
                                e,
                                mask[a..b].as_ptr(),
                                ent[a..b].as_ptr(),
                                r,
                                cols,
                                &mut v
                            )
                        );
                        assert_eq!(s[0], 0, "{c:?}");
                        min = min.min(v);
                    }
                    let before = st;
                    let s = unsafe { tkm_entropy_quantile_push_min_above(&mut st, min) };
                    check_status(s, c);
                    log.push(s as u32 as u8);
                    if s != TKM_STATUS_OK {
                        assert_eq!(st, before, "state changed on error: {c:?}");
                        assert!(perturbed, "an exact minimum refused ({s:?}): {c:?}");
                        return log;
                    }
                }
                TKM_QUANTILE_STEP_DONE => {
                    let (mut h2, mut t2) = (PU32, PF32);
                    let s = unsafe { tkm_entropy_quantile_threshold(&st, &mut h2, &mut t2) };
                    assert_eq!(s, TKM_STATUS_OK, "{c:?}");
                    if !perturbed {
                        assert_eq!(sref, TKM_STATUS_OK, "protocol finished, one rank failed: {c:?}");
                        assert_eq!((h2, t2.to_bits()), (has, th.to_bits()), "protocol and one rank differ: {c:?}");
                    }
                    log.extend(bytes(&[h2]));
                    log.extend(bytes(&[t2]));
                    break;
                }
                _ => panic!("unknown step {step}: {c:?}"),
            }
        }
        log
    });
}

/// Every protocol call on a corrupted (or arbitrary) state: refused or served, never a
/// panic; a refused push leaves the state as it was.
fn corrupted_quantile(c: &Case, g: &G) {
    let (rows, cols) = (g.d(0, 6), g.d(1, 20));
    let n = rows * cols;
    let (mask, ent) = (g.mask(n), g.f32s(n));
    let mut st = tkm_entropy_quantile::default();
    let global = if g.flag(0) { c.big[0] } else { c.big[0] % 200 };
    let s = unsafe { tkm_entropy_quantile_init(global, g.s(0), &mut st) };
    check_status(s, c);
    if g.flag(1) {
        let h: Vec<u64> = g.u64s(TKM_RADIX_BINS).into_iter().map(|v| v % 4).collect();
        check_status(unsafe { tkm_entropy_quantile_push_histogram(&mut st, h.as_ptr()) }, c);
    }
    if g.flag(2) {
        let w = g.u64s(6);
        st.words.iter_mut().zip(w).for_each(|(a, b)| *a = b);
    }
    st.words[c.big[1] as usize % 6] ^= c.big[2];
    if g.flag(3) {
        // Flip one field-boundary-ish bit pattern too.
        st.words[4] ^= 1 << (c.big[1] % 64);
    }
    let merged: Vec<u64> = g.u64s(TKM_RADIX_BINS).into_iter().map(|v| if g.flag(4) { v } else { v % 3 }).collect();
    let min = g.s(1);
    both(c, |e| {
        let mut log = Vec::new();
        let mut step = PU32;
        log.extend(call!(c, [bytes(&[step])], tkm_entropy_quantile_step(&st, &mut step)));
        let mut h = [PU64; TKM_RADIX_BINS];
        log.extend(call!(
            c,
            [bytes(&h)],
            tkm_entropy_quantile_local_histogram(&st, e, mask.as_ptr(), ent.as_ptr(), rows, cols, h.as_mut_ptr())
        ));
        let mut v = PF32;
        log.extend(call!(
            c,
            [bytes(&[v])],
            tkm_entropy_quantile_local_min_above(&st, e, mask.as_ptr(), ent.as_ptr(), rows, cols, &mut v)
        ));
        let (mut has, mut th) = (PU32, PF32);
        log.extend(call!(c, [bytes(&[has]), bytes(&[th])], tkm_entropy_quantile_threshold(&st, &mut has, &mut th)));
        let mut s1 = st;
        log.extend(call!(c, [bytes(&[s1])], tkm_entropy_quantile_push_histogram(&mut s1, merged.as_ptr())));
        let mut s2 = st;
        log.extend(call!(c, [bytes(&[s2])], tkm_entropy_quantile_push_min_above(&mut s2, min)));
        // Whatever was accepted can be driven on.
        for mut s in [s1, s2] {
            let mut step = PU32;
            log.extend(call!(c, [bytes(&[step])], tkm_entropy_quantile_step(&s, &mut step)));
            log.extend(call!(c, [bytes(&[s])], tkm_entropy_quantile_push_histogram(&mut s, merged.as_ptr())));
            log.extend(call!(c, [bytes(&[s])], tkm_entropy_quantile_push_min_above(&mut s, min)));
            let (mut has, mut th) = (PU32, PF32);
            log.extend(call!(c, [bytes(&[has]), bytes(&[th])], tkm_entropy_quantile_threshold(&s, &mut has, &mut th)));
        }
        log
    });
}
