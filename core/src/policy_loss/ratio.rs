//! The `torch.clamp` of the policy-loss kernels and their log-ratio clamp bounds. (Their
//! `exp` is [`crate::exp`]'s `exp_full`.)

/// `clamp(d, lo, hi)` as `torch.clamp` computes its value: NaN passes through.
#[inline(always)]
pub(crate) fn clamp(d: f32, lo: f32, hi: f32) -> f32 {
    if d < lo {
        lo
    } else if d > hi {
        hi
    } else {
        d
    }
}

/// Symmetric log-ratio clamp bounds: `(−c, c)` for `Some(c)`, `(−inf, inf)` for `None`.
#[inline]
pub(crate) fn clamp_bounds(c: Option<f32>) -> (f32, f32) {
    match c {
        Some(c) => (-c, c),
        None => (f32::NEG_INFINITY, f32::INFINITY),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamp_passes_nan() {
        assert!(clamp(f32::NAN, -1.0, 1.0).is_nan());
        assert_eq!(clamp(5.0, -1.0, 1.0), 1.0);
        assert_eq!(clamp(-5.0, -1.0, 1.0), -1.0);
        assert_eq!(clamp(f32::NEG_INFINITY, f32::NEG_INFINITY, f32::INFINITY), f32::NEG_INFINITY);
    }
}
