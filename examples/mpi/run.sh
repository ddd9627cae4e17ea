#!/usr/bin/env bash
# Builds the MPI example against an installed tokenmath and runs it at 3 ranks (uneven
# vocabulary shards: 25 + 25 + 25 blocks, cuts at V/3) and 4 ranks (18 + 19 + 19 + 19 blocks).
# It exits non-zero on any mismatch with one process.
#
#   examples/mpi/run.sh [--prefix DIR]   # DIR: an existing scripts/install.sh prefix; without
#                                        # it, installs into a temporary one first
# Needs: cmake, a C compiler, an MPI (Debian: apt-get install -y libopenmpi-dev openmpi-bin).
# Runs as root too (CI): mpirun gets --allow-run-as-root, and --oversubscribe so that 4 ranks
# run on fewer cores.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"

prefix=""
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix="$2"; shift 2 ;;
        --prefix=*) prefix="${1#*=}"; shift ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
for tool in mpicc mpirun cmake; do
    command -v "$tool" >/dev/null || { echo "run.sh: $tool not found: apt-get install -y libopenmpi-dev openmpi-bin cmake" >&2; exit 1; }
done

work="$(mktemp -d "${TMPDIR:-/tmp}/tokenmath-mpi.XXXXXX")"
trap 'rm -rf "$work"' EXIT
if [ -z "$prefix" ]; then
    prefix="$work/prefix"
    "$ROOT/scripts/install.sh" --prefix "$prefix" >/dev/null
fi

cmake -S "$ROOT/examples/mpi" -B "$work/build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/build" -j 2 >/dev/null

mpi_flags=(--oversubscribe)
[ "$(id -u)" = 0 ] && mpi_flags+=(--allow-run-as-root)
for np in 3 4; do
    echo "==> mpirun -np $np tokenmath_mpi_step"
    # Containers often forbid the cross-memory attach of OpenMPI's shared-memory transport;
    # plain copies work everywhere.
    OMPI_MCA_btl_vader_single_copy_mechanism=none mpirun "${mpi_flags[@]}" -np "$np" "$work/build/tokenmath_mpi_step"
done
