//! f64 references for `tokenmath_core::advantages`.
