#!/usr/bin/env bash
# cDPO's contrastive-estimation scores (streamed over the vocabulary from two models'
# logits) against the logits forward on the same shape, one thread and two, f32 and bf16.
#
#   bench/compare/cdpo.sh                    # [512, 32768], 7 reps, threads 1,2
#   bench/compare/cdpo.sh 256 151936 5 1,2   # rows vocab reps threads
#
# The two kernels alternate within one process (core/examples/cdpo_timing.rs), so a change
# of machine load hits both alike; `ratio_vs_fwd` is cDPO's row throughput over the
# forward's (the issue asks for >= 0.8). cDPO reads two [rows, vocab] matrices where the
# forward reads one.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cargo run --quiet --release --manifest-path "$root/Cargo.toml" -p tokenmath-core --example cdpo_timing -- "$@"
