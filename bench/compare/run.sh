#!/usr/bin/env bash
# Side-by-side CPU timing of the logits statistics: tokenmath vs numpy vs jax.jit.
#
#   bench/compare/run.sh            # f32 [2048, 32768]; writes bench/compare/results.md
#   bench/compare/run.sh --quick    # a small batch, to check that everything runs
#
# Creates (once) a virtual environment in bench/compare/.venv with the pinned numpy and
# jax of requirements.txt, builds the `logits-timing` driver in release mode, and runs
# logits.py; any arguments are passed on to logits.py (see `logits.py --help`).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$here/.venv"

if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"

cargo build --release --manifest-path "$root/Cargo.toml" -p tokenmath-bench --bin logits-timing
target_dir="$(cargo metadata --format-version 1 --no-deps --manifest-path "$root/Cargo.toml" |
    "$venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"

# These tune OpenBLAS for another machine; numpy does not call BLAS for these ops, but keep
# them away from the numpy/jax process all the same.
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
exec "$venv/bin/python" "$here/logits.py" --tm-bin "$target_dir/release/logits-timing" "$@"
