//! Shared helpers of the GPU tests: the device, data generators, and the comparison of a
//! GPU result with `core`'s (tolerance formulas from `tokenmath-reference`, bitwise where the
//! runtime keeps `core`'s operation order).
#![allow(dead_code)]

use std::sync::OnceLock;

use tokenmath_core::logits::{self, FwdOut, RowInputs, Temperature};
use tokenmath_core::{Exec, LogitElem, Mat, TmError};
use tokenmath_gpu::{DeviceKind, Gpu, GpuError};
use tokenmath_reference as reference;
pub use tokenmath_testutil::{poisoned, POISON};

/// The wgpu device (lavapipe in CI). Opening it is expensive, so the tests share one.
pub fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        Gpu::open(DeviceKind::Wgpu).unwrap_or_else(|e| {
            panic!("{e}\n(the GPU tests need a Vulkan driver: apt-get install mesa-vulkan-drivers libvulkan1)")
        })
    })
}

/// Forward outputs, poisoned before the call so that unwritten elements show.
#[derive(Clone, Debug, PartialEq)]
pub struct Fwd {
    pub lse: Vec<f32>,
    pub entropy: Vec<f32>,
    pub logp: Vec<f32>,
    pub max: Vec<f32>,
    pub log_sum: Vec<f32>,
    pub nonfinite_rows: usize,
}

impl Fwd {
    /// Row `r`'s `[lse, logp, entropy, max, log_sum]`.
    pub fn row(&self, r: usize) -> [f32; 5] {
        [self.lse[r], self.logp[r], self.entropy[r], self.max[r], self.log_sum[r]]
    }

    /// The statistics the backward reads.
    pub fn saved(&self) -> tokenmath_core::logits::Saved<'_> {
        tokenmath_core::logits::Saved { max: &self.max, log_sum: &self.log_sum, entropy: &self.entropy }
    }
}

impl Fwd {
    /// `rows` rows of [`POISON`] (the NaN payload of `tokenmath-testutil`), so that an
    /// element the call does not write shows.
    pub fn poisoned(rows: usize) -> Fwd {
        Fwd {
            lse: poisoned(rows),
            entropy: poisoned(rows),
            logp: poisoned(rows),
            max: poisoned(rows),
            log_sum: poisoned(rows),
            nonfinite_rows: 0,
        }
    }

    /// The output views of a forward into these buffers (`logp` only with targets).
    pub fn out(&mut self, targets: bool) -> FwdOut<'_> {
        FwdOut {
            lse: &mut self.lse,
            entropy: &mut self.entropy,
            logp: if targets { Some(&mut self.logp) } else { None },
            max: Some(&mut self.max),
            log_sum: Some(&mut self.log_sum),
        }
    }
}

pub fn cpu_fwd<T: LogitElem>(x: Mat<'_, T>, inputs: &RowInputs<'_>) -> Result<Fwd, TmError> {
    let mut f = Fwd::poisoned(x.rows());
    let st = logits::stats_fwd(Exec::default(), x, inputs, f.out(inputs.targets.is_some()))?;
    if inputs.targets.is_none() {
        f.logp.fill(0.0);
    }
    f.nonfinite_rows = st.nonfinite_rows;
    Ok(f)
}

pub fn gpu_fwd<T: LogitElem>(x: Mat<'_, T>, inputs: &RowInputs<'_>) -> Result<Fwd, GpuError> {
    let gpu = gpu();
    let gx = gpu.upload(x)?;
    let st = gpu.stats_fwd(&gx, inputs)?;
    let mut f = Fwd::poisoned(x.rows());
    let status = gpu.read_stats(&st, f.out(inputs.targets.is_some()))?;
    if inputs.targets.is_none() {
        f.logp.fill(0.0);
    }
    f.nonfinite_rows = status.nonfinite_rows;
    Ok(f)
}

/// Same bits, or both NaN.
pub fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// Whether the device can reproduce `core` bit for bit (it fuses `fma`; lavapipe does not).
pub fn bitwise_expected() -> bool {
    gpu().fused_fma()
}

/// One row's `(lse, logp, entropy, max, log_sum)` from the GPU against `core`'s: equal
/// bits, or within twice the tolerance formula of `tokenmath_reference::stats_tolerance`
/// (each is within one tolerance of the exact value) — and bitwise on a device that fuses
/// `fma`. Returns how many of the five were bitwise equal.
pub fn check_row(what: &str, row: &[f32], temp: f32, target: Option<usize>, got: [f32; 5], want: [f32; 5]) -> usize {
    let mut equal = 0;
    let reference = reference::row_stats(row, temp, target);
    for (i, name) in ["lse", "logp", "entropy", "max", "log_sum"].into_iter().enumerate() {
        let (g, c) = (got[i], want[i]);
        assert!(g.to_bits() != POISON.to_bits(), "{what}: {name} not written");
        if same(g, c) {
            equal += 1;
            continue;
        }
        assert!(
            !bitwise_expected(),
            "{what}: {name}: gpu {g:e} ({:#010x}) != core {c:e} ({:#010x}) on a device with a fused fma",
            g.to_bits(),
            c.to_bits()
        );
        let rr =
            reference.as_ref().unwrap_or_else(|| panic!("{what}: {name}: gpu {g:e} core {c:e} on a non-finite row"));
        let t = reference::stats_tolerance(rr, row.len(), temp != 1.0);
        let tol = 2.0 * [t.lse, t.logp, t.entropy, t.max, t.log_sum][i];
        let err = (g as f64 - c as f64).abs();
        assert!(err <= tol, "{what}: {name}: gpu {g:e} core {c:e}, |diff| {err:e} > 2·tol {tol:e}");
    }
    equal
}

/// Checks the GPU forward against `core`'s row by row ([`check_row`]) and the status.
/// Returns the number of values compared and how many were bitwise equal.
pub fn assert_fwd_matches<T: LogitElem>(x: Mat<'_, T>, inputs: &RowInputs<'_>, what: &str) -> (usize, usize) {
    let cpu = cpu_fwd(x, inputs).unwrap_or_else(|e| panic!("{what}: core failed: {e}"));
    let got = gpu_fwd(x, inputs).unwrap_or_else(|e| panic!("{what}: gpu failed: {e}"));
    assert_eq!(got.nonfinite_rows, cpu.nonfinite_rows, "{what}: non-finite row count");
    let mut equal = 0;
    for r in 0..x.rows() {
        let row: Vec<f32> = x.row(r).iter().map(|v| v.to_f32()).collect();
        let temp = 1.0 / inputs.inv_temp(r);
        equal += check_row(&format!("{what}: row {r}"), &row, temp, inputs.target(r), got.row(r), cpu.row(r));
    }
    // The centred formulas keep these exact on every backend.
    assert!(got.entropy.iter().all(|h| h.is_nan() || *h >= 0.0), "{what}: negative entropy");
    assert!(got.logp.iter().all(|l| l.is_nan() || *l <= 0.0), "{what}: positive logp");
    (5 * x.rows(), equal)
}

/// A deterministic pseudo-random generator (xorshift64*).
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// `rows` rows of `stride` elements: peaked logits in `[-12, 12)` around a per-row offset;
/// the gap columns between `cols` and `stride` hold NaN, which must never be read.
pub fn logits_f32(seed: u64, rows: usize, cols: usize, stride: usize) -> Vec<f32> {
    let mut rng = XorShift::new(seed);
    let mut v = vec![f32::NAN; (rows.max(1) - 1) * stride + cols];
    for r in 0..rows {
        let off = [0.0f32, 3.0, -40.0, 1e4][r % 4];
        for c in 0..cols {
            v[r * stride + c] = rng.uniform(-12.0, 12.0) + off;
        }
    }
    v
}

pub fn targets(seed: u64, rows: usize, cols: usize) -> Vec<i32> {
    let mut rng = XorShift::new(seed ^ 0x55);
    (0..rows).map(|r| if r % 5 == 4 { -100 } else { rng.below(cols) as i32 }).collect()
}

pub fn inputs<'a>(targets: Option<&'a [i32]>, mask: Option<&'a [u8]>, temperature: Temperature<'a>) -> RowInputs<'a> {
    RowInputs { targets, row_mask: mask, temperature }
}

/// A gradient element of any output type as `f32`.
pub fn to_f32<O: tokenmath_core::GradElem>(v: O) -> f32 {
    match O::DTYPE {
        tokenmath_core::DType::F32 => bytemuck::cast::<O, f32>(v),
        tokenmath_core::DType::BF16 => bytemuck::cast::<O, half::bf16>(v).to_f32(),
        tokenmath_core::DType::F16 => bytemuck::cast::<O, half::f16>(v).to_f32(),
    }
}
