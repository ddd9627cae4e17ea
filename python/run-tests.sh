#!/usr/bin/env bash
# The Python package's tests: a virtual environment under target/, the package installed the
# way a user installs it (`pip install ./python`: maturin builds the extension from the
# workspace; PyPI and crates.io are the only network), then pytest. The C ABI comparison
# tests load the separately built libtokenmath.so (TOKENMATH_LIB). PyTorch tests run only
# where torch is installed in that environment (TOKENMATH_TEST_TORCH=1 installs it: several
# GB of CUDA libraries from PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-$PWD/target}"
venv="$target/python-venv"
export PIP_DISABLE_PIP_VERSION_CHECK=1

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q ./python pytest numpy
if [ "${TOKENMATH_TEST_TORCH:-0}" = 1 ]; then
    "$venv/bin/pip" install -q --no-cache-dir torch  # ~5.4 GB installed, no second copy in the cache
fi

# The C ABI itself, built on its own, as the second oracle of the tests.
cargo build -q -p tokenmath-ffi --release
export TOKENMATH_LIB="$target/release/libtokenmath.so"

# From python/tests: the installed package is imported, not the source tree.
cd python/tests
"$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
