#!/usr/bin/env bash
# Compiles every GPU kernel variant the library launches as CUDA C++ for sm_90a with NVRTC,
# without a GPU or driver (once through the C ABI's launch path, checking each entry
# point's parameters, once through nvrtc_sass.py for the SASS), and prints the SASS instructions per element of each variant's
# steady-state loops. A kernel that NVRTC rejects (a code-generation bug that WGSL, and so
# the lavapipe tests, accept) fails this script.
#
#   gpu/cuda-check/run.sh [OUT_DIR]        # default target/cuda-check
#
# NVRTC, the CUDA headers and cuobjdump come from NVIDIA's pip wheels (no driver needed),
# installed on first use under target/cuda-wheels (TKM_CUDA_WHEELS overrides). The kernels
# are defined on a wgpu adapter (Mesa's lavapipe will do): see gpu/src/codegen.rs.
set -euo pipefail
cd "$(dirname "$0")/../.."

wheels="${TKM_CUDA_WHEELS:-$PWD/target/cuda-wheels}"
root="$wheels/nvidia/cu13"
if [ ! -e "$root/lib/libnvrtc.so.13" ] || [ ! -x "$root/bin/cuobjdump" ] || [ ! -x "$root/bin/nvdisasm" ] || [ ! -e "$root/include/crt/host_config.h" ]; then
    echo "installing NVRTC, the CUDA headers, cuobjdump and nvdisasm (pip wheels, about 160 MB) into $wheels"
    python3 -m pip install --quiet --disable-pip-version-check --no-deps --upgrade --target "$wheels" \
        nvidia-cuda-nvrtc==13.5.37 nvidia-cuda-runtime==13.5.37 nvidia-cuda-crt==13.5.37 \
        nvidia-cuda-cuobjdump==13.5.37 nvidia-cuda-nvdisasm==13.5.37
fi

out="${1:-target/cuda-check}"
rm -rf "$out"
# The C ABI's launch path: every variant it launches compiled by NVRTC through cudarc with
# its own options, and each PTX entry point's parameters checked against what the launcher
# passes to cuLaunchKernel (gpu/tests/cuda_launch.rs).
TKM_CUDA_ROOT="$root" LD_LIBRARY_PATH="$root/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    cargo test --quiet -p tokenmath-gpu --features cuda --test cuda_launch
cargo run --quiet -p tokenmath-gpu --features cuda --example cuda_sources -- "$out/src"
python3 gpu/cuda-check/nvrtc_sass.py "$root" "$out/src" "$out/sass"
python3 gpu/cuda-check/sass_cost.py "$out/sass" "$out/src/loops.tsv" > "$out/cost.txt"
# The variants the benchmarks run (rows on 16-byte vectors, temperature 1), then where the
# full table is.
grep -E '^(kernel variant|copy|block_partials-(bf16|f32)(-tempered)? |grad-(bf16-to-bf16|f32-to-f32) |grad_inplace-(bf16|f32) |fast_rows-(bf16|f32)-v4(-fused)? |fast_grad-(bf16-to-bf16|f32-to-f32)(-inplace)?-v4 )' "$out/cost.txt"
echo "(every variant: $out/cost.txt)"
