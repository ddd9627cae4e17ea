#!/usr/bin/env bash
# Side-by-side CPU timing of E3B's step (elliptical bonus + rank-1 inverse update):
# tokenmath vs a NumPy port. Writes bench/compare/results-e3b.md.
#
#   bench/compare/run-e3b.sh                 # d = 64, 256, 1024
#   bench/compare/run-e3b.sh --dims 64       # any arguments go to e3b.py (`e3b.py --help`)
#
# Uses (and creates once) the virtual environment of run.sh and builds the `e3b_timing`
# example of tokenmath-core in release mode (no GPU crate needed).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$here/.venv"

if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
fi

cargo build --release --manifest-path "$root/Cargo.toml" -p tokenmath-core --example e3b_timing
target_dir="$(cargo metadata --format-version 1 --no-deps --manifest-path "$root/Cargo.toml" |
    "$venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"

unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
# One BLAS thread, as tokenmath runs one thread per environment.
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"
exec "$venv/bin/python" "$here/e3b.py" --tm-bin "$target_dir/release/examples/e3b_timing" "$@"
