#!/usr/bin/env bash
# Side-by-side CPU timing of the seed methods' vocabulary-streaming kernels (TW-GRPO token weights,
# Diversity-or-Precision loss + gradient) against the logits forward, and against the logits
# forward + backward, on the same f32 logits (issue 14's speed requirement: >= 80% of the
# forward's throughput, one thread and two).
#
#   bench/compare/run-seed.sh                 # [2048, 32768], 15 interleaved repetitions
#   bench/compare/run-seed.sh 1024 8192 5     # ROWS COLS REPS (ROWS a multiple of 1024)
#
# Builds the `seed_vocab_timing` example of tokenmath-core in release mode (it needs neither the GPU
# crate nor Python) and prints a Markdown table; `uptime` goes first, because the ratios are only
# meaningful with the load written next to them. Writes bench/compare/results-seed.md unless
# arguments are given.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

cargo build --release --manifest-path "$root/Cargo.toml" -p tokenmath-core --example seed_vocab_timing
target_dir="${CARGO_TARGET_DIR:-$root/target}"

{
    echo "# Seed methods vs the logits forward (CPU)"
    echo
    echo "Machine: $(nproc) CPUs, $(uptime | sed 's/.*load average/load average/') just before the run."
    echo
    "$target_dir/release/examples/seed_vocab_timing" "$@"
} | if [[ $# -eq 0 ]]; then tee "$here/results-seed.md"; else cat; fi
