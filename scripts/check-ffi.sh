#!/usr/bin/env bash
# Checks everything a C/C++ user of tokenmath relies on, end to end:
#   1. include/tokenmath.h is exactly what the pinned cbindgen generates (fails on any diff)
#   2. the header compiles cleanly as C11 and as C++17 (-Wall -Wextra -Wpedantic -Werror)
#   3. scripts/install.sh installs the libraries, headers, pkg-config and CMake files
#   4. libtokenmath.so exports only tkm_* symbols and carries its soname
#   5. the plain-C test (ffi/tests/c/test_abi.c) passes against the installed shared library
#      (also under AddressSanitizer + UndefinedBehaviorSanitizer) and the static library
#      linked with the documented native-static-libs line
#   6. the README's C example (examples/c) builds and prints the spec's values; the C++
#      CMake example (examples/cpp) finds the installed package and passes, shared
#      and static
#   7. the MPI example (examples/mpi) at 3 and 4 ranks, checked against one process
# (The C test asks for 2^60 rows to provoke TKM_STATUS_OUT_OF_MEMORY, hence ASan's
# allocator_may_return_null=1.)
# Needs: cargo, cbindgen 0.29.4, gcc, g++, cmake, an MPI (mpicc, mpirun), pkg-config (optional), nm, readelf.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

CBINDGEN_VERSION="0.29.4"
CC="${CC:-gcc}"
CXX="${CXX:-g++}"
WARN=(-Wall -Wextra -Wpedantic -Werror)
work="$(mktemp -d "${TMPDIR:-/tmp}/tokenmath-ffi-check.XXXXXX")"
trap 'rm -rf "$work"' EXIT
prefix="$work/prefix"

t_start=$SECONDS
t_step=$SECONDS
step() {
    if [ -n "${step_name:-}" ]; then printf '    (%ds)\n' $((SECONDS - t_step)); fi
    step_name="$*"
    t_step=$SECONDS
    printf '\n==> %s\n' "$*"
}

step "header is up to date (cbindgen $CBINDGEN_VERSION)"
if ! command -v cbindgen >/dev/null; then
    echo "cbindgen not found: cargo install cbindgen --version $CBINDGEN_VERSION --locked" >&2
    exit 1
fi
have="$(cbindgen --version | awk '{print $2}')"
if [ "$have" != "$CBINDGEN_VERSION" ]; then
    echo "cbindgen $have found, the header is pinned to $CBINDGEN_VERSION" >&2
    exit 1
fi
cbindgen --quiet --config ffi/cbindgen.toml --crate tokenmath-ffi --output "$work/tokenmath.h" ffi
if ! diff -u include/tokenmath.h "$work/tokenmath.h"; then
    echo "include/tokenmath.h is stale: regenerate it with" >&2
    echo "  cbindgen --config ffi/cbindgen.toml --crate tokenmath-ffi --output include/tokenmath.h ffi" >&2
    exit 1
fi

step "header compiles as C11 and C++17 with ${WARN[*]}"
printf '#include "tokenmath.h"\n#include "tokenmath.h"\nint main(void) { return (int)TKM_STATUS_OK; }\n' > "$work/h.c"
cp "$work/h.c" "$work/h.cpp"
"$CC" -std=c11 "${WARN[@]}" -Iinclude -c "$work/h.c" -o "$work/h_c.o"
"$CXX" -std=c++17 "${WARN[@]}" -Iinclude -c "$work/h.cpp" -o "$work/h_cpp.o"
if command -v clang >/dev/null; then
    clang -std=c11 "${WARN[@]}" -Iinclude -c "$work/h.c" -o "$work/h_clang.o"
fi

step "install to a temporary prefix (release build)"
scripts/install.sh --prefix "$prefix"

step "libtokenmath.so exports only tkm_* and has its soname"
so="$(readlink -f "$prefix/lib/libtokenmath.so")"
others="$(nm -D --defined-only "$so" | awk '{print $NF}' | grep -v '^tkm_' || true)"
if [ -n "$others" ]; then
    echo "symbols exported besides tkm_*:" >&2
    echo "$others" >&2
    exit 1
fi
echo "$(nm -D --defined-only "$so" | grep -c ' tkm_') tkm_ symbols exported"
readelf -d "$so" | grep -q "SONAME.*libtokenmath\.so\.0\." || { echo "missing soname" >&2; exit 1; }

step "plain-C test against the installed shared library"
if command -v pkg-config >/dev/null; then
    read -r -a pc_flags <<<"$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags --libs tokenmath)"
else
    pc_flags=(-I"$prefix/include" -L"$prefix/lib" -ltokenmath)
fi
"$CC" -std=c11 "${WARN[@]}" ffi/tests/c/test_abi.c "${pc_flags[@]}" -Wl,-rpath,"$prefix/lib" -lm -o "$work/test_abi"
"$work/test_abi"

step "plain-C test under ASan + UBSan (shared library)"
"$CC" -std=c11 "${WARN[@]}" -g -fsanitize=address,undefined -fno-sanitize-recover=all ffi/tests/c/test_abi.c \
    -I"$prefix/include" -L"$prefix/lib" -ltokenmath -Wl,-rpath,"$prefix/lib" -lm -o "$work/test_abi_asan"
ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 "$work/test_abi_asan"

step "plain-C test against the static library with the documented link line"
native_static_libs="$(sed -n 's/^native_static_libs="\(.*\)"$/\1/p' scripts/install.sh)"
# shellcheck disable=SC2086
"$CC" -std=c11 "${WARN[@]}" ffi/tests/c/test_abi.c -I"$prefix/include" "$prefix/lib/libtokenmath.a" \
    $native_static_libs -o "$work/test_abi_static"
"$work/test_abi_static"

step "README's C example (examples/c/logits.c) builds with pkg-config's flags and prints the spec's values"
"$CC" -std=c11 "${WARN[@]}" examples/c/logits.c "${pc_flags[@]}" -Wl,-rpath,"$prefix/lib" -o "$work/logits_c"
c_out="$("$work/logits_c")"
echo "$c_out"
# logits.md's worked example: logp = -1.440190, entropy = 0.947537, p_2 - 1 = -0.763117.
[ "$c_out" = "logp -1.440190  entropy 0.947537  dx[0][2] -0.763117" ] || { echo "unexpected C example output" >&2; exit 1; }

step "C++ example: CMake find_package(tokenmath), shared"
cmake -S examples/cpp -B "$work/cpp" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CXX_COMPILER="$CXX" >/dev/null
cmake --build "$work/cpp" -j 2 >/dev/null
(cd "$work/cpp" && ctest --output-on-failure)

step "C++ example: CMake find_package(tokenmath), static"
cmake -S examples/cpp -B "$work/cpp-static" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CXX_COMPILER="$CXX" -DTOKENMATH_STATIC=ON >/dev/null
cmake --build "$work/cpp-static" -j 2 >/dev/null
"$work/cpp-static/tokenmath_train_step"

step "MPI example (examples/mpi): vocabulary- and data-parallel at 3 and 4 ranks, checked against one process"
examples/mpi/run.sh --prefix "$prefix"

step "done"
printf '\nall C ABI checks passed in %ds\n' $((SECONDS - t_start))
