//! Frame sampling (`quota_pipeline.py::process_video_prune`, `force_sample = true`).

use crate::TmError;

/// `max_frames = base + trunc(video_secs/3600 · per_hour)` (source: `base = 96`,
/// `per_hour = 64`), computed in `f64` in that order as the source's Python does.
///
/// `video_secs` must be finite and `≥ 0`; a count past `u32::MAX` is
/// [`TmError::InvalidArgument`].
pub fn quota_frame_count(video_secs: f64, base: u32, per_hour: u32) -> Result<u32, TmError> {
    if !(video_secs.is_finite() && video_secs >= 0.0) {
        return Err(TmError::InvalidArgument("video_secs must be finite and >= 0"));
    }
    let extra = video_secs / 3600.0 * per_hour as f64;
    let total = base as f64 + libm::trunc(extra);
    if total > u32::MAX as f64 {
        return Err(TmError::InvalidArgument("the frame count overflows u32"));
    }
    Ok(total as u32)
}

/// `out[j] = floor(j·(total_frames − 1)/(count − 1))` for `count = out.len()` frames, in
/// exact integer arithmetic \[library choice\]: the source's
/// `np.linspace(0, total − 1, count).astype(int)` can differ by one frame at rare `j`
/// through float rounding. `count = 1` gives `[0]`; `count > total_frames` repeats frames
/// (as `linspace` does). `total_frames = 0` (with `count ≥ 1`) is
/// [`TmError::InvalidArgument`].
pub fn quota_frame_indices(total_frames: u64, out: &mut [u64]) -> Result<(), TmError> {
    let count = out.len();
    if count == 0 {
        return Ok(());
    }
    if total_frames == 0 {
        return Err(TmError::InvalidArgument("a video with 0 frames has no frame to sample"));
    }
    if count == 1 {
        out[0] = 0;
        return Ok(());
    }
    let (span, den) = (total_frames as u128 - 1, count as u128 - 1);
    for (j, o) in out.iter_mut().enumerate() {
        *o = (j as u128 * span / den) as u64;
    }
    Ok(())
}
