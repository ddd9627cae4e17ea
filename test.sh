#!/usr/bin/env bash
# The full test run: formatting, lints, unit + property + integration + doc tests of every
# crate (the GPU kernels run on wgpu over Mesa's CPU Vulkan driver, lavapipe), the CUDA
# build of the GPU crate, every kernel variant compiled by NVRTC for sm_90a, the C ABI checks (with the MPI example), the Python package's tests, the no_std build of the core and the no_std
# probe. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")"

step() { printf '\n==> %s\n' "$*"; }

# Property tests draw from a fixed seed so that every run (and CI) tests the same cases;
# set PROPTEST_RNG_SEED to explore others.
export PROPTEST_RNG_SEED="${PROPTEST_RNG_SEED:-20261128}"

step "prerequisites (cmake, g++, pkg-config, MPI, python3 with pip, chromium, numpy + safetensors, cbindgen 0.29.4, lavapipe)"
# Before any build: on a machine without them, one line says what to install.
scripts/check-prereqs.sh

step "cargo fmt --check"
cargo fmt --all -- --check

# The CLI's GPU comparison is the cargo feature `gpu` (off by default, so that the README's
# first command builds no GPU runtime): the workspace is linted and tested with it on, so the
# CLI's GPU cases run; the default CLI build is linted and tested on its own.
step "cargo clippy (all crates, all targets, the CLI with and without the gpu feature, -D warnings)"
cargo clippy --workspace --all-targets --features tokenmath-cli/gpu -- -D warnings
cargo clippy -p tokenmath-cli --all-targets -- -D warnings

step "cargo test (unit, property, integration and doc tests; the GPU kernels and the CLI's --device wgpu on lavapipe)"
cargo test --workspace --features tokenmath-cli/gpu

step "the default CLI build (no gpu feature): --device and --gpu-mode say how to enable GPU support"
cargo test -p tokenmath-cli --test cli

step "tokenmath-gpu with the CUDA runtime compiled in (lints; tests: no NVIDIA driver here, a typed error)"
cargo clippy -p tokenmath-gpu --features cuda --all-targets -- -D warnings
cargo clippy -p tokenmath-gpu --no-default-features --features cuda --all-targets -- -D warnings
cargo clippy -p tokenmath-cli --features cuda --all-targets -- -D warnings
cargo test -p tokenmath-gpu --features cuda

step "every GPU kernel variant compiled as CUDA for sm_90a by NVRTC (no GPU needed), with its SASS cost per element"
gpu/cuda-check/run.sh

step "tokenmath replay's HTML report in headless Chromium (no console errors, one cell per unmasked token, screenshot target/replay-report.png)"
cli/tests/browser/run.sh

step "C ABI: header up to date, C11/C++17 compile, install, C test (shared, ASan/UBSan, static), C++ CMake example"
scripts/check-ffi.sh

step "Python package: pip install ./python (maturin) into target/python-venv, pytest against NumPy formulas and the C ABI"
python/run-tests.sh

step "torch.distributed example (examples/distributed, gloo, 3 and 4 ranks) where PyTorch is installed in that environment; otherwise it says SKIPPED"
examples/distributed/run.sh --python "${CARGO_TARGET_DIR:-$PWD/target}/python-venv/bin/python"

step "no_std build of tokenmath-core"
cargo build -p tokenmath-core --no-default-features

step "#![no_std] probe links the core kernels (no std, no allocator, no undefined symbols)"
(cd probe/no-std-probe && CARGO_TARGET_DIR="$PWD/../../target" cargo build --release)

step "all tests passed"
