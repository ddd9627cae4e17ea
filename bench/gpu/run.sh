#!/usr/bin/env bash
# The GPU benchmark: tokenmath's CUDA kernels checked (canonical: against `core`; fast: against
# the f64 reference under its error bound; the C ABI's launch path — NVRTC + cuLaunchKernel on
# cubecl's buffers — against cubecl's own launch, bitwise) on random data, then timed in both modes next to a
# device-to-device copy, PyTorch eager, `torch.compile` and Liger-Kernel 0.8.5, in one table.
#
#   bench/gpu/run.sh build   (here, with Rust) builds a stripped release `gpu-timing` with the
#                            CUDA runtime and CUDA 13.0 bindings into bench/gpu/bin/
#   bench/gpu/run.sh         (on the GPU machine: CUDA 13, PyTorch, no Rust, no network)
#                            runs bench/gpu/bin/gpu-timing, then PyTorch (installing Liger
#                            from the wheel in bench/gpu/wheels/: `pip download
#                            liger-kernel==0.8.5 --no-deps -d bench/gpu/wheels` here), then
#                            the report
#   bench/gpu/run.sh local   (here, no GPU) the same pipeline on wgpu/lavapipe at small
#                            shapes: checks that every CPU-side part works
#
# Shapes: SHAPES="bf16:8192:151936,f32:4096:32768" (the default). BLOCK_THREADS="128,256" and
# FAST_THREADS="256,512,1024" time the forwards with each cube size (the first is the one
# reported as `forward` / `fast-forward`; tuning knobs: same bits). The whole run takes about
# two minutes on an H200.
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=bench/gpu/bin/gpu-timing
OUT=${OUT:-bench/gpu/out}
mode=${1:-run}

case "$mode" in
build)
    # CUDA 13.0 bindings for a CUDA 13 driver; the driver and NVRTC are loaded at run time.
    CUDARC_CUDA_VERSION=13000 cargo build --release -p tokenmath-bench --bin gpu-timing --features cuda
    mkdir -p bench/gpu/bin
    cp target/release/gpu-timing "$BIN"
    strip "$BIN"
    ls -l "$BIN"
    exit 0
    ;;
local)
    cargo build --release -p tokenmath-bench --bin gpu-timing
    BIN=target/release/gpu-timing
    DEVICE=wgpu
    SHAPES=${SHAPES:-bf16:64:4096,f32:32:8192}
    BLOCK_THREADS=${BLOCK_THREADS:-256,128,64}
    FAST_THREADS=${FAST_THREADS:-256,64}
    EXTRA=(--check-rows 16 --reps 3 --batch 2)
    ;;
run)
    DEVICE=cuda
    SHAPES=${SHAPES:-bf16:8192:151936,f32:4096:32768}
    BLOCK_THREADS=${BLOCK_THREADS:-128,256}
    FAST_THREADS=${FAST_THREADS:-256,512,1024}
    EXTRA=()
    [ -x "$BIN" ] || { echo "no $BIN: run 'bench/gpu/run.sh build' on a machine with Rust first" >&2; exit 2; }
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    # NVRTC (loaded at run time) needs the CUDA headers and libnvrtc. Without a toolkit under
    # /usr/local/cuda, use the ones PyTorch's pip wheels ship.
    if [ -z "${CUDA_PATH:-}" ] && [ ! -e /usr/local/cuda/include/cuda_fp16.h ]; then
        site=$(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null || true)
        # shellcheck disable=SC2086
        header=$(find $site /usr /opt -name cuda_fp16.h -path '*include*' 2>/dev/null | head -1 || true)
        [ -n "$header" ] && export CUDA_PATH=$(dirname "$(dirname "$header")")
        # shellcheck disable=SC2086
        nvrtc=$(find $site /usr /opt -name 'libnvrtc.so*' 2>/dev/null | head -1 || true)
        [ -n "$nvrtc" ] && export LD_LIBRARY_PATH=$(dirname "$nvrtc")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    fi
    # libnvrtc of a toolkit is often outside the loader's default path.
    for lib in "${CUDA_PATH:-/usr/local/cuda}/lib64" "${CUDA_PATH:-/usr/local/cuda}/lib"; do
        [ -d "$lib" ] && export LD_LIBRARY_PATH=$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    done
    echo "CUDA_PATH=${CUDA_PATH:-unset} LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-unset}"
    ;;
*)
    echo "usage: $0 [build|local|run]" >&2
    exit 2
    ;;
esac

mkdir -p "$OUT"
status=0
"$BIN" --device "$DEVICE" --shapes "$SHAPES" --block-threads "$BLOCK_THREADS" --fast-threads "$FAST_THREADS" "${EXTRA[@]}" 2>&1 | grep -v XDG_RUNTIME_DIR | tee "$OUT/tokenmath.txt" || status=$?
if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    wheel=$(ls bench/gpu/wheels/liger_kernel-0.8.5-*.whl 2>/dev/null | head -1 || true)
    if [ -n "$wheel" ] && ! python3 -c 'import liger_kernel' 2>/dev/null; then
        pylib="${TMPDIR:-/tmp}/tokenmath-bench-pylib"
        python3 -m pip install --quiet --no-deps --no-index --target "$pylib" "$wheel" || true
        export PYTHONPATH="$pylib${PYTHONPATH:+:$PYTHONPATH}"
    fi
    python3 bench/gpu/torch_bench.py --shapes "$SHAPES" | tee "$OUT/torch.txt"
else
    echo "PyTorch with CUDA: not available here (the table has no PyTorch column)" | tee "$OUT/torch.txt"
fi
python3 bench/gpu/report.py "$OUT/tokenmath.txt" "$OUT/torch.txt" | tee "$OUT/report.md"
exit "$status"
