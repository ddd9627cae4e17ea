#!/usr/bin/env bash
# Side-by-side CPU timing of one policy-loss step (PPO clip + k3 + token-mean, forward and
# gradient): tokenmath vs a numpy port, with the machine's copy bandwidth measured in the same run.
#
#   bench/compare/run-policy.sh           # [1024, 4096]; writes bench/compare/results-policy.md
#   bench/compare/run-policy.sh --quick   # a small batch, to check that everything runs
#
# Uses (and creates once) the virtual environment of run.sh, builds the `policy-timing` driver in
# release mode and runs policy.py; any arguments are passed on to policy.py (`policy.py --help`).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$here/.venv"

if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
fi

cargo build --release --manifest-path "$root/Cargo.toml" -p tokenmath-bench --bin policy-timing
target_dir="$(cargo metadata --format-version 1 --no-deps --manifest-path "$root/Cargo.toml" |
    "$venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"

# These tune OpenBLAS for another machine; keep them away from the numpy process.
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
exec "$venv/bin/python" "$here/policy.py" --tm-bin "$target_dir/release/policy-timing" "$@"
