#!/usr/bin/env bash
# Runs the torch.distributed example (dist_step.py) with torchrun at 3 ranks (uneven
# vocabulary shards: 25 + 25 + 25 blocks, cuts at V/3) and 4 ranks (18 + 19 + 19 + 19 blocks)
# on the gloo backend with CPU tensors. It exits non-zero on any mismatch with one process.
#
#   examples/distributed/run.sh [--python PY]   # PY: a Python with torch and tokenmath
#                                               # (default: $PYTHON, else python3)
#
# Needs PyTorch (pip install torch: ~5 GB with its CUDA wheels; the CPU wheel is enough here)
# and the tokenmath package (pip install ./python). Without torch it prints why and exits 0
# (skipped): CI does not install torch. The NCCL + CUDA path is `--device cuda`, one rank per
# GPU (docs/distributed.md).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"

py="${PYTHON:-python3}"
while [ $# -gt 0 ]; do
    case "$1" in
        --python) py="$2"; shift 2 ;;
        --python=*) py="${1#*=}"; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

command -v "$py" >/dev/null || { echo "run.sh: $py not found" >&2; exit 1; }
if ! "$py" -c 'import torch.distributed' 2>/dev/null; then
    echo "SKIPPED examples/distributed: PyTorch is not importable by $py (pip install torch, then rerun; or pass --python)"
    exit 0
fi
if ! "$py" -c 'import torch.distributed as d; assert d.is_available() and d.is_gloo_available()' 2>/dev/null; then
    echo "SKIPPED examples/distributed: this PyTorch build has no torch.distributed gloo backend"
    exit 0
fi
"$py" -c 'import tokenmath' 2>/dev/null || {
    echo "run.sh: torch is there but tokenmath is not importable by $py: pip install $ROOT/python" >&2
    exit 1
}

export OMP_NUM_THREADS=1
for np in 3 4; do
    echo "==> torchrun --standalone --nproc-per-node $np dist_step.py"
    # --standalone: a local rendezvous on a free port (no MASTER_ADDR/PORT to set or clash).
    "$py" -m torch.distributed.run --standalone --nproc-per-node "$np" "$ROOT/examples/distributed/dist_step.py"
done
