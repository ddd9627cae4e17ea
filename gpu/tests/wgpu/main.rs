//! The GPU kernels on wgpu (Mesa's lavapipe in CI) against `tokenmath-core`: one test
//! binary, one module per operation.

mod backward;
mod common;
mod determinism;
mod errors;
mod fast;
mod forward;
mod order;
mod partials;
