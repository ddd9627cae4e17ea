#!/usr/bin/env bash
# What ./test.sh needs besides the Rust toolchain: cmake, g++ and pkg-config (C ABI checks), an
# MPI (the multi-rank example),
# the pinned cbindgen (header drift check), Mesa's CPU Vulkan driver, lavapipe (the GPU
# kernels' tests), python3 with pip (the NVRTC compile check fetches NVIDIA's wheels), and
# Debian's chromium plus NumPy and safetensors for python3 (the replay report's browser test,
# cli/tests/browser/run.sh, opens reports of dumps made by examples/python/dump_rollout_numpy.py). Prints nothing and exits 0 when everything is there; otherwise prints
# ONE line naming what is missing and the exact command that installs it, and exits 1, so
# that a fresh machine learns it in a second instead of after a 7-minute build.
# (.ci/run installs all of it and then runs ./test.sh.)
# TOKENMATH_ICD_DIRS (default: the standard Vulkan ICD directories) is where lavapipe's
# manifest lvp_icd.*.json is looked for.
set -uo pipefail

CBINDGEN_VERSION="0.29.4"
missing=()
packages=()
for tool in cmake g++ pkg-config; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        missing+=("$tool")
        packages+=("$tool")
    fi
done
# examples/mpi/run.sh (the MPI example, run by scripts/check-ffi.sh) needs an MPI.
if ! command -v mpicc >/dev/null 2>&1 || ! command -v mpirun >/dev/null 2>&1; then
    missing+=("MPI (mpicc, mpirun)")
    packages+=(libopenmpi-dev openmpi-bin)
fi
found_icd=""
for dir in ${TOKENMATH_ICD_DIRS:-/usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d}; do
    if compgen -G "$dir/lvp_icd.*.json" >/dev/null; then
        found_icd=1
    fi
done
if [ -z "$found_icd" ]; then
    missing+=("lavapipe (Mesa's CPU Vulkan driver)")
    packages+=(mesa-vulkan-drivers libvulkan1)
fi
# gpu/cuda-check/run.sh installs NVIDIA's NVRTC wheels with pip on first use.
if ! python3 -m pip --version >/dev/null 2>&1; then
    missing+=("python3 with pip")
    packages+=(python3-pip)
# python/run-tests.sh builds the Python package into a virtual environment (abi3, Python >= 3.10).
elif ! python3 -c 'import sys, venv, ensurepip; assert sys.version_info >= (3, 10)' >/dev/null 2>&1; then
    missing+=("python3 >= 3.10 with venv")
    packages+=(python3-venv)
fi
# The replay report's browser test: Debian's chromium (headless) and the NumPy producer's packages.
if ! command -v chromium >/dev/null 2>&1; then
    missing+=("chromium")
    packages+=(chromium)
fi
python_packages=""
if ! python3 -c "import numpy, safetensors" >/dev/null 2>&1; then
    missing+=("numpy and safetensors for python3")
    python_packages="python3 -m pip install numpy safetensors"
fi
commands=()
if [ ${#packages[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo "
    commands+=("${sudo}apt-get install -y ${packages[*]}")
fi
[ -z "$python_packages" ] || commands+=("$python_packages")
if ! command -v cargo >/dev/null 2>&1; then
    missing+=("cargo")
    commands+=("curl https://sh.rustup.rs -sSf | sh")
elif [ "$(cbindgen --version 2>/dev/null | awk '{print $2}')" != "$CBINDGEN_VERSION" ]; then
    missing+=("cbindgen $CBINDGEN_VERSION")
    commands+=("cargo install cbindgen --version $CBINDGEN_VERSION --locked")
fi
if [ ${#missing[@]} -gt 0 ]; then
    list="$(printf '%s, ' "${missing[@]}")"
    cmd="$(printf '%s && ' "${commands[@]}")"
    echo "test.sh: missing ${list%, }; install with: ${cmd% && } (or run .ci/run, which installs them and runs ./test.sh)" >&2
    exit 1
fi
