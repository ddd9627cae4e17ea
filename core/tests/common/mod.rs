//! Shared helpers for the kernel tests: owned-output wrappers around the kernels,
//! hostile-input generators and the boundary-driven size list.
#![allow(dead_code)]

use proptest::prelude::*;
use tokenmath_core::logits::{self, FwdOut, RowInputs, Saved, Status, Upstream};
use tokenmath_core::{Backend, Exec, GradElem, LogitElem, Mat, MatMut, TmError};

#[allow(unused_imports)]
pub use tokenmath_testutil::{hostile_logit, POISON};

/// Vocabulary sizes around every boundary of the kernels: lanes (8, 32), blocks (2048) and
/// split-tree levels (1, 2, 3, 4, 5 blocks).
pub const EDGE_VOCABS: &[usize] = &[
    1,
    2,
    3,
    7,
    8,
    9,
    15,
    16,
    17,
    31,
    32,
    33,
    63,
    64,
    65,
    16 + 8 + 4 + 2 + 1,
    100,
    255,
    256,
    1000,
    2047,
    2048,
    2049,
    4095,
    4096,
    4097,
    6144,
    6145,
    8191,
    8192,
    10_000,
];

#[derive(Clone, Debug, PartialEq)]
pub struct Fwd {
    pub lse: Vec<f32>,
    pub entropy: Vec<f32>,
    pub logp: Vec<f32>,
    pub max: Vec<f32>,
    pub log_sum: Vec<f32>,
    pub status: Status,
}

impl Fwd {
    /// The statistics the backward reads.
    pub fn saved(&self) -> Saved<'_> {
        Saved { max: &self.max, log_sum: &self.log_sum, entropy: &self.entropy }
    }

    /// Bit patterns, so NaN == NaN and -0.0 != +0.0.
    pub fn bits(&self) -> Vec<u32> {
        [&self.lse, &self.entropy, &self.logp, &self.max, &self.log_sum]
            .iter()
            .flat_map(|v| v.iter().map(|x| x.to_bits()))
            .collect()
    }
}

pub fn fwd<T: LogitElem>(exec: Exec, x: Mat<'_, T>, inputs: &RowInputs<'_>) -> Result<Fwd, TmError> {
    let n = x.rows();
    let [mut lse, mut h, mut lp, mut max, mut log_sum] = core::array::from_fn(|_| vec![POISON; n]);
    let logp = if inputs.targets.is_some() { Some(&mut lp[..]) } else { None };
    let out = FwdOut { lse: &mut lse, entropy: &mut h, logp, max: Some(&mut max), log_sum: Some(&mut log_sum) };
    let status = logits::stats_fwd(exec, x, inputs, out)?;
    if inputs.targets.is_none() {
        lp.fill(0.0);
    }
    Ok(Fwd { lse, entropy: h, logp: lp, max, log_sum, status })
}

/// Backward into a fresh poisoned dense buffer.
pub fn bwd<T: LogitElem, O: GradElem>(
    exec: Exec,
    x: Mat<'_, T>,
    inputs: &RowInputs<'_>,
    f: &Fwd,
    up: Upstream<'_>,
) -> Result<Vec<O>, TmError> {
    let mut dx = vec![O::from_f32(POISON); x.rows() * x.cols()];
    logits::stats_bwd(exec, x, inputs, f.saved(), up, MatMut::dense(&mut dx, x.rows(), x.cols()).unwrap())?;
    Ok(dx)
}

pub fn exec(b: Backend) -> Exec {
    Exec::new().with_backend(b)
}

pub fn portable() -> Exec {
    exec(Backend::Portable)
}

/// A finite-ish logit row: ordinary values with −inf masks, around a common offset.
pub fn finite_row(len: impl Into<proptest::collection::SizeRange>) -> impl Strategy<Value = Vec<f32>> {
    (proptest::collection::vec(prop_oneof![20 => -15.0f32..15.0, 1 => Just(f32::NEG_INFINITY)], len), offset())
        .prop_map(|(mut row, off)| {
            for v in &mut row {
                *v += off;
            }
            row
        })
}

/// Common offsets: softmax statistics are invariant to them, the uncentred formulas are not.
pub fn offset() -> impl Strategy<Value = f32> {
    prop_oneof![Just(0.0f32), Just(100.0), Just(1e4), Just(-1e4), Just(3e4), Just(1e30), Just(-1e30), -50.0f32..50.0]
}

pub fn temperature() -> impl Strategy<Value = f32> {
    prop_oneof![3 => Just(1.0f32), 1 => Just(0.7), 1 => Just(2.0), 1 => 0.05f32..4.0]
}

/// A deterministic, peaked, long-tailed row (for the fixed-size tests).
pub fn zipf_row(seed: u64, len: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let noise = (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            -1.1 * ((i % 977 + 1) as f32).ln() + noise + 3.0
        })
        .collect()
}
