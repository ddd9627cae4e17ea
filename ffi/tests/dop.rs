//! Diversity-or-Precision entry points against the core crate, bitwise (separate buffer, in
//! place, bf16 gradient, two threads), the options' growth rule, and their error statuses
//! (errors before the pass write nothing).

use core::ptr::{null, null_mut};

use half::bf16;
use tokenmath::*;
use tokenmath_core::logits::{RowInputs, Temperature};
use tokenmath_core::seed::dop::{self, DopCfg, DopSlot};
use tokenmath_core::{Exec, Mat, MatMut};
use tokenmath_testutil::{bits, nan_bits, rand_f32, untouched, POISON};

// More than one `logits::BLOCK` (2048) per row, so the top-k selection spans blocks.
const ROWS: usize = 6;
const VOCAB: usize = 4100;
const STRIDE: usize = 4104;
const DX_STRIDE: usize = 4101;

struct Batch {
    x: Vec<f32>,
    targets: Vec<i32>,
    mask: Vec<u8>,
    temps: Vec<f32>,
}

fn batch() -> Batch {
    let mut x = rand_f32(ROWS * STRIDE, 14, 6.0);
    x[STRIDE + 11] = f32::NEG_INFINITY; // a masked-vocabulary column
    x[3 * STRIDE + 5] = f32::NAN; // a non-finite row (NaN loss and gradient, not an error)
    let targets = vec![3, 11, -100, 4099, 0, 2048];
    let mask = vec![1, 1, 1, 1, 0, 1];
    let temps = vec![1.0, 0.7, 1.0, 1.3, 1.0, 0.9];
    Batch { x, targets, mask, temps }
}

impl Batch {
    fn inputs(&self) -> RowInputs<'_> {
        RowInputs {
            targets: Some(&self.targets),
            row_mask: Some(&self.mask),
            temperature: Temperature::PerRow(&self.temps),
        }
    }
}

fn opts() -> tkm_dop_options {
    let mut o = tkm_dop_options { struct_size: 0, beta: 0.0, lam_top: 0.0, lam_tail: 0.0, grad_scale: 0.0, top_k: 0 };
    assert_eq!(unsafe { tkm_dop_options_init(&mut o) }, TKM_STATUS_OK);
    o.lam_top = 0.1;
    o.lam_tail = -0.1;
    o.top_k = 7;
    o.grad_scale = 0.25;
    o
}

fn cfg_of(o: &tkm_dop_options) -> DopCfg {
    DopCfg { beta: o.beta, lam_top: o.lam_top, lam_tail: o.lam_tail, top_k: o.top_k, grad_scale: o.grad_scale }
}

/// The core kernel's loss and `[ROWS, DX_STRIDE]` gradient (padding poisoned).
fn core_run(b: &Batch, cfg: &DopCfg, threads: usize) -> (Vec<f32>, Vec<f32>) {
    let exec = Exec::new().with_threads(threads);
    let x = Mat::new(&b.x, ROWS, VOCAB, STRIDE).unwrap();
    let mut scratch = vec![DopSlot::default(); dop::dop_scratch_len(exec, ROWS, VOCAB, cfg.top_k)];
    let (mut loss, mut dx) = (vec![POISON; ROWS], vec![POISON; ROWS * DX_STRIDE]);
    let d = MatMut::new(&mut dx, ROWS, VOCAB, DX_STRIDE).unwrap();
    dop::dop_loss_and_grad(exec, x, &b.inputs(), cfg, &mut scratch, &mut loss, d).unwrap();
    (loss, dx)
}

/// `tkm_dop_loss_and_grad` on the batch's f32 logits.
unsafe fn call(
    exec: *const tkm_exec_options,
    b: &Batch,
    o: *const tkm_dop_options,
    loss: *mut f32,
    grad_dtype: u32,
    dx: *mut core::ffi::c_void,
    nonfinite: *mut usize,
) -> tkm_status {
    tkm_dop_loss_and_grad(
        exec,
        TKM_DTYPE_F32,
        b.x.as_ptr().cast(),
        ROWS,
        VOCAB,
        STRIDE,
        b.targets.as_ptr(),
        b.mask.as_ptr(),
        1.0,
        b.temps.as_ptr(),
        o,
        loss,
        grad_dtype,
        dx,
        DX_STRIDE,
        nonfinite,
    )
}

#[test]
fn loss_and_grad_match_core_bitwise() {
    let b = batch();
    let o = opts();
    let (want_loss, want_dx) = core_run(&b, &cfg_of(&o), 1);
    assert!(want_loss[0].is_finite() && want_loss[3].is_nan() && want_loss[2] == 0.0 && want_loss[4] == 0.0);

    let (mut loss, mut dx) = (vec![POISON; ROWS], vec![POISON; ROWS * DX_STRIDE]);
    let mut nonfinite = 7usize;
    let s = unsafe { call(null(), &b, &o, loss.as_mut_ptr(), TKM_DTYPE_F32, dx.as_mut_ptr().cast(), &mut nonfinite) };
    assert_eq!(s, TKM_STATUS_OK);
    assert_eq!(nonfinite, 1);
    assert_eq!(nan_bits(&loss), nan_bits(&want_loss));
    // Includes the padding between rows: untouched (still POISON) on both sides.
    assert_eq!(nan_bits(&dx), nan_bits(&want_dx));

    // Two threads and the portable backend: the same bits.
    let mut e =
        tkm_exec_options { struct_size: 0, threads: 0, backend: 0, cuda_stream: core::ptr::null_mut(), gpu_mode: 0 };
    assert_eq!(unsafe { tkm_exec_options_init(&mut e) }, TKM_STATUS_OK);
    for (threads, backend) in [(2, TKM_BACKEND_AUTO), (2, TKM_BACKEND_PORTABLE), (1, TKM_BACKEND_PORTABLE)] {
        e.threads = threads;
        e.backend = backend;
        let (mut l2, mut d2) = (vec![POISON; ROWS], vec![POISON; ROWS * DX_STRIDE]);
        let s = unsafe { call(&e, &b, &o, l2.as_mut_ptr(), TKM_DTYPE_F32, d2.as_mut_ptr().cast(), null_mut()) };
        assert_eq!(s, TKM_STATUS_OK);
        assert_eq!(
            (nan_bits(&l2), nan_bits(&d2)),
            (nan_bits(&loss), nan_bits(&dx)),
            "threads {threads} backend {backend}"
        );
    }

    // A bf16 gradient: the f32 gradient rounded once.
    let mut db = vec![bf16::from_bits(0x7FC1); ROWS * DX_STRIDE];
    let mut l3 = vec![POISON; ROWS];
    let s = unsafe { call(null(), &b, &o, l3.as_mut_ptr(), TKM_DTYPE_BF16, db.as_mut_ptr().cast(), null_mut()) };
    assert_eq!(s, TKM_STATUS_OK);
    assert_eq!(nan_bits(&l3), nan_bits(&loss));
    for r in 0..ROWS {
        for j in 0..DX_STRIDE {
            let (got, want) = (db[r * DX_STRIDE + j], dx[r * DX_STRIDE + j]);
            if j >= VOCAB {
                assert_eq!(got.to_bits(), 0x7FC1, "padding written");
            } else if want.is_nan() {
                assert!(got.is_nan());
            } else {
                assert_eq!(got.to_bits(), bf16::from_f32(want).to_bits(), "row {r} col {j}");
            }
        }
    }

    // In place over the logits: the same bits; the padding keeps the logits.
    let mut xi = b.x.clone();
    let mut l4 = vec![POISON; ROWS];
    let mut nf = 0usize;
    let s = unsafe {
        tkm_dop_loss_and_grad_inplace(
            null(),
            TKM_DTYPE_F32,
            xi.as_mut_ptr().cast(),
            ROWS,
            VOCAB,
            STRIDE,
            b.targets.as_ptr(),
            b.mask.as_ptr(),
            1.0,
            b.temps.as_ptr(),
            &o,
            l4.as_mut_ptr(),
            &mut nf,
        )
    };
    assert_eq!(s, TKM_STATUS_OK);
    assert_eq!((nan_bits(&l4), nf), (nan_bits(&loss), 1));
    for r in 0..ROWS {
        assert_eq!(nan_bits(&xi[r * STRIDE..r * STRIDE + VOCAB]), nan_bits(&dx[r * DX_STRIDE..r * DX_STRIDE + VOCAB]));
        assert_eq!(bits(&xi[r * STRIDE + VOCAB..(r + 1) * STRIDE]), bits(&b.x[r * STRIDE + VOCAB..(r + 1) * STRIDE]));
    }
}

#[test]
fn options_defaults_and_growth_rule() {
    let b = batch();
    let mut o = opts();
    let d = tkm_dop_options::default();
    assert_eq!((d.beta, d.lam_top, d.lam_tail, d.grad_scale, d.top_k), (-0.25, 0.0, 0.0, 1.0, 100));
    assert_eq!(d.struct_size, core::mem::size_of::<tkm_dop_options>());
    let run = |o: *const tkm_dop_options| {
        let (mut l, mut g) = (vec![POISON; ROWS], vec![POISON; ROWS * DX_STRIDE]);
        let s = unsafe { call(null(), &b, o, l.as_mut_ptr(), TKM_DTYPE_F32, g.as_mut_ptr().cast(), null_mut()) };
        (s, nan_bits(&l), nan_bits(&g))
    };
    // NULL = the defaults.
    let (want_l, want_g) = core_run(&b, &DopCfg::default(), 1);
    assert_eq!(run(null()), (TKM_STATUS_OK, nan_bits(&want_l), nan_bits(&want_g)));
    // An older caller's struct ending after `grad_scale`: `top_k` keeps its default (100).
    o.struct_size = core::mem::offset_of!(tkm_dop_options, top_k);
    let (want_l, want_g) = core_run(&b, &DopCfg { top_k: 100, ..cfg_of(&o) }, 1);
    assert_eq!(run(&o), (TKM_STATUS_OK, nan_bits(&want_l), nan_bits(&want_g)));
    // Not a field boundary.
    o.struct_size = 10;
    let (s, l, g) = run(&o);
    assert_eq!(s, TKM_STATUS_BAD_STRUCT_SIZE);
    let p = POISON.to_bits();
    assert!(l.iter().chain(&g).all(|&v| v == p));
    assert_eq!(unsafe { tkm_dop_options_init(null_mut()) }, TKM_STATUS_NULL_POINTER);
}

#[test]
fn errors_write_nothing() {
    let b = batch();
    let o = opts();
    let (mut loss, mut dx) = (vec![POISON; ROWS], vec![POISON; ROWS * DX_STRIDE]);
    let (lp, dp) = (loss.as_mut_ptr(), dx.as_mut_ptr());
    #[allow(clippy::type_complexity)]
    let full = |dtype: u32,
                x: *const f32,
                rows: usize,
                vocab: usize,
                stride: usize,
                targets: *const i32,
                temp: f32,
                o: &tkm_dop_options,
                loss: *mut f32,
                grad_dtype: u32,
                dx: *mut f32| unsafe {
        tkm_dop_loss_and_grad(
            null(),
            dtype,
            x.cast(),
            rows,
            vocab,
            stride,
            targets,
            b.mask.as_ptr(),
            temp,
            null(),
            o,
            loss,
            grad_dtype,
            dx.cast(),
            DX_STRIDE,
            null_mut(),
        )
    };
    let (x, t) = (b.x.as_ptr(), b.targets.as_ptr());
    let f32d = TKM_DTYPE_F32;
    assert_eq!(full(9, x, ROWS, VOCAB, STRIDE, t, 1.0, &o, lp, f32d, dp), TKM_STATUS_BAD_DTYPE);
    assert_eq!(full(f32d, x, ROWS, VOCAB, STRIDE, t, 1.0, &o, lp, 9, dp), TKM_STATUS_BAD_DTYPE);
    assert_eq!(full(f32d, x, ROWS, VOCAB, VOCAB - 1, t, 1.0, &o, lp, f32d, dp), TKM_STATUS_BAD_STRIDE);
    assert_eq!(full(f32d, x, ROWS, 0, STRIDE, t, 1.0, &o, lp, f32d, dp), TKM_STATUS_EMPTY_VOCAB);
    assert_eq!(full(f32d, x, ROWS, VOCAB, STRIDE, null(), 1.0, &o, lp, f32d, dp), TKM_STATUS_INVALID_ARGUMENT);
    assert_eq!(full(f32d, x, ROWS, VOCAB, STRIDE, t, 0.0, &o, lp, f32d, dp), TKM_STATUS_INVALID_TEMPERATURE);
    for bad in [
        tkm_dop_options { beta: -1.0, ..o },
        tkm_dop_options { beta: f32::NAN, ..o },
        tkm_dop_options { lam_top: f32::INFINITY, ..o },
        tkm_dop_options { lam_tail: f32::NAN, ..o },
        tkm_dop_options { grad_scale: f32::NAN, ..o },
    ] {
        assert_eq!(full(f32d, x, ROWS, VOCAB, STRIDE, t, 1.0, &bad, lp, f32d, dp), TKM_STATUS_INVALID_ARGUMENT);
    }
    let t_bad = [3, 11, -100, 4100, 0, 2048];
    assert_eq!(
        full(f32d, x, ROWS, VOCAB, STRIDE, t_bad.as_ptr(), 1.0, &o, lp, f32d, dp),
        TKM_STATUS_LABEL_OUT_OF_RANGE
    );
    assert_eq!(full(f32d, null(), ROWS, VOCAB, STRIDE, t, 1.0, &o, lp, f32d, dp), TKM_STATUS_NULL_POINTER);
    assert_eq!(full(f32d, x, ROWS, VOCAB, STRIDE, t, 1.0, &o, null_mut(), f32d, dp), TKM_STATUS_NULL_POINTER);
    assert_eq!(full(f32d, x, ROWS, VOCAB, STRIDE, t, 1.0, &o, lp, f32d, null_mut()), TKM_STATUS_NULL_POINTER);
    assert_eq!(full(f32d, x, usize::MAX, VOCAB, STRIDE, t, 1.0, &o, lp, f32d, dp), TKM_STATUS_SIZE_OVERFLOW);
    // dx over the logits (use the in-place entry point for that).
    assert_eq!(full(f32d, x, ROWS, VOCAB, STRIDE, t, 1.0, &o, lp, f32d, x as *mut f32), TKM_STATUS_OVERLAP);
    assert!(untouched(&loss) && untouched(&dx));
    // dx over the loss.
    let mut big = vec![POISON; ROWS * DX_STRIDE + ROWS];
    let bp = big.as_mut_ptr();
    let s = full(f32d, x, ROWS, VOCAB, STRIDE, t, 1.0, &o, unsafe { bp.add(ROWS * DX_STRIDE - 2) }, f32d, bp);
    assert_eq!(s, TKM_STATUS_OVERLAP);
    assert!(untouched(&big));
    // A misaligned count pointer.
    let mut counts = [0usize; 2];
    let odd = unsafe { (counts.as_mut_ptr() as *mut u8).add(1) } as *mut usize;
    let s = unsafe { call(null(), &b, &o, lp, f32d, dp.cast(), odd) };
    assert_eq!(s, TKM_STATUS_MISALIGNED);
    assert!(untouched(&loss) && untouched(&dx));

    // A kept row of all −inf: found during the pass; the loss is not written.
    let mut xn = b.x.clone();
    xn[2 * STRIDE..2 * STRIDE + VOCAB].fill(f32::NEG_INFINITY);
    let t2 = [3, 11, 5, 4099, 0, 2048];
    let s = full(f32d, xn.as_ptr(), ROWS, VOCAB, STRIDE, t2.as_ptr(), 1.0, &o, lp, f32d, dp);
    assert_eq!(s, TKM_STATUS_NO_FINITE_LOGIT);
    assert!(untouched(&loss));

    // In place: the loss or the targets over the logits.
    let mut xi = b.x.clone();
    let xp = xi.as_mut_ptr();
    let inplace = |targets: *const i32, loss: *mut f32| unsafe {
        tkm_dop_loss_and_grad_inplace(
            null(),
            TKM_DTYPE_F32,
            xp.cast(),
            ROWS,
            VOCAB,
            STRIDE,
            targets,
            null(),
            1.0,
            null(),
            &o,
            loss,
            null_mut(),
        )
    };
    assert_eq!(inplace(t, unsafe { xp.add(7) }), TKM_STATUS_OVERLAP);
    let tx = [0i32; ROWS];
    unsafe { core::ptr::copy_nonoverlapping(tx.as_ptr() as *const f32, xp.add(100), ROWS) };
    assert_eq!(inplace(unsafe { xp.add(100) } as *const i32, lp), TKM_STATUS_OVERLAP);
    assert_eq!(inplace(null(), lp), TKM_STATUS_INVALID_ARGUMENT);
    unsafe { core::ptr::copy_nonoverlapping(b.x.as_ptr().add(100), xp.add(100), ROWS) };
    assert_eq!(bits(&xi), bits(&b.x));
    assert!(untouched(&loss));
}
