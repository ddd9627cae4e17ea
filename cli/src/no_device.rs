//! `device` in a build without the cargo feature `gpu`: no GPU runtime is compiled in, so
//! there is no device to name. `--device wgpu|cuda` and `--gpu-mode` stop before any work
//! with one line saying how to build with GPU support (`main`'s `DeviceArg::gpu`,
//! `GpuModeArg::mode`); nothing here can run.

use tokenmath_core::{Exec, GradElem, LogitElem};

use crate::error::CliError;
use crate::run::RowStatistics;

/// No GPU can be named in this build (the type has no values).
#[derive(Clone, Copy, Debug)]
pub enum DeviceKind {}

/// The GPU's mode, as `tokenmath_gpu::GpuMode` names them.
#[derive(Clone, Copy, Debug)]
pub enum GpuMode {
    /// `core`'s operation order.
    Canonical,
    /// The hardware `exp`.
    Fast,
}

/// Never called: no [`DeviceKind`] exists to call it with.
#[allow(clippy::too_many_arguments)]
pub fn run<T: LogitElem + GradElem>(
    kind: DeviceKind,
    _logits: &[T],
    _rows: usize,
    _vocab: usize,
    _targets: Option<&[i32]>,
    _temperature: f32,
    _exec: Exec,
    _core_stats: &RowStatistics,
    _mode: GpuMode,
) -> Result<bool, CliError> {
    match kind {}
}
