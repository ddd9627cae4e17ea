//! f64 references for `tokenmath_core::policy_loss`.
