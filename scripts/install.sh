#!/usr/bin/env bash
# Installs the tokenmath C library under a prefix:
#
#   PREFIX/lib/libtokenmath.so.X.Y.Z  (+ libtokenmath.so.<soname version>, libtokenmath.so links)
#   PREFIX/lib/libtokenmath.a
#   PREFIX/include/tokenmath.h, PREFIX/include/dlpack.h (vendored DLPack header, if present)
#   PREFIX/lib/pkgconfig/tokenmath.pc
#   PREFIX/lib/cmake/tokenmath/tokenmathConfig.cmake, tokenmathConfigVersion.cmake
#
# CMake users: find_package(tokenmath CONFIG REQUIRED) and link tokenmath::tokenmath (shared)
# or tokenmath::tokenmath_static. pkg-config users: pkg-config --cflags --libs tokenmath.
#
# Usage: scripts/install.sh --prefix DIR [--no-build] [--destdir DIR]
#   --no-build   install what target/release already holds (after cargo build --release)
#   --destdir    staging root prepended to every path (packagers); files still refer to PREFIX
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

prefix="" build=1 destdir=""
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix="$2"; shift 2 ;;
        --prefix=*) prefix="${1#*=}"; shift ;;
        --destdir) destdir="$2"; shift 2 ;;
        --no-build) build=0; shift ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -n "$prefix" ] || { echo "install.sh: --prefix is required" >&2; exit 2; }
case "$prefix" in /*) ;; *) prefix="$PWD/$prefix" ;; esac

# The libraries' version is the workspace version ([workspace.package] in Cargo.toml).
version="$(sed -n 's/^version = "\([0-9][0-9.]*\)"$/\1/p' "$ROOT/Cargo.toml" | head -n1)"
[ -n "$version" ] || { echo "install.sh: no version in Cargo.toml" >&2; exit 1; }
major="${version%%.*}"; rest="${version#*.}"; minor="${rest%%.*}"
# Soname: libtokenmath.so.0.MINOR while the major version is 0 (any 0.x minor may break the
# ABI), libtokenmath.so.MAJOR afterwards. Must agree with ffi/build.rs.
if [ "$major" = 0 ]; then soversion="0.$minor"; else soversion="$major"; fi

# System libraries a static libtokenmath.a needs on Linux/glibc, as printed by
#   cargo rustc -p tokenmath-ffi --release --crate-type staticlib -- --print native-static-libs
# (scripts/check-ffi.sh links the static C test with exactly this list).
native_static_libs="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"

target_dir="${CARGO_TARGET_DIR:-$ROOT/target}"
if [ "$build" = 1 ]; then
    (cd "$ROOT" && cargo build -p tokenmath-ffi --release)
fi
so="$target_dir/release/libtokenmath.so"
a="$target_dir/release/libtokenmath.a"
for f in "$so" "$a" "$ROOT/include/tokenmath.h"; do
    [ -f "$f" ] || { echo "install.sh: missing $f (build first)" >&2; exit 1; }
done

lib="$destdir$prefix/lib" inc="$destdir$prefix/include"
mkdir -p "$lib/pkgconfig" "$lib/cmake/tokenmath" "$inc"

install -m 0755 "$so" "$lib/libtokenmath.so.$version"
ln -sfn "libtokenmath.so.$version" "$lib/libtokenmath.so.$soversion"
ln -sfn "libtokenmath.so.$soversion" "$lib/libtokenmath.so"
install -m 0644 "$a" "$lib/libtokenmath.a"
install -m 0644 "$ROOT/include/tokenmath.h" "$inc/tokenmath.h"
if [ -f "$ROOT/include/dlpack.h" ]; then
    install -m 0644 "$ROOT/include/dlpack.h" "$inc/dlpack.h"
fi

# pkg-config file, relocatable through ${pcfiledir}.
cat > "$lib/pkgconfig/tokenmath.pc" <<PC
prefix=\${pcfiledir}/../..
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: tokenmath
Description: Token-level math of LLM post-training (C ABI)
Version: $version
Libs: -L\${libdir} -ltokenmath
Libs.private: $native_static_libs
Cflags: -I\${includedir}
PC

# CMake package: imported targets, relocatable through CMAKE_CURRENT_LIST_DIR.
static_cmake_libs="$(echo "$native_static_libs" | sed 's/-l//g; s/ /;/g')"
cat > "$lib/cmake/tokenmath/tokenmathConfig.cmake" <<CMAKE
# tokenmath CMake package (written by scripts/install.sh).
#   find_package(tokenmath CONFIG REQUIRED)
#   target_link_libraries(app PRIVATE tokenmath::tokenmath)         # shared
#   target_link_libraries(app PRIVATE tokenmath::tokenmath_static)  # static
get_filename_component(_tokenmath_prefix "\${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
set(tokenmath_VERSION "$version")
set(tokenmath_INCLUDE_DIRS "\${_tokenmath_prefix}/include")
if(NOT TARGET tokenmath::tokenmath)
  add_library(tokenmath::tokenmath SHARED IMPORTED)
  set_target_properties(tokenmath::tokenmath PROPERTIES
    IMPORTED_LOCATION "\${_tokenmath_prefix}/lib/libtokenmath.so.$version"
    IMPORTED_SONAME "libtokenmath.so.$soversion"
    INTERFACE_INCLUDE_DIRECTORIES "\${_tokenmath_prefix}/include")
endif()
if(NOT TARGET tokenmath::tokenmath_static)
  add_library(tokenmath::tokenmath_static STATIC IMPORTED)
  set_target_properties(tokenmath::tokenmath_static PROPERTIES
    IMPORTED_LOCATION "\${_tokenmath_prefix}/lib/libtokenmath.a"
    IMPORTED_LINK_INTERFACE_LANGUAGES "C"
    INTERFACE_INCLUDE_DIRECTORIES "\${_tokenmath_prefix}/include"
    INTERFACE_LINK_LIBRARIES "$static_cmake_libs")
endif()
unset(_tokenmath_prefix)
CMAKE

cat > "$lib/cmake/tokenmath/tokenmathConfigVersion.cmake" <<CMAKE
# Compatibility: same major version and, while the major version is 0, same minor version
# (the ABI may change with any 0.x minor); the installed version must not be older.
set(PACKAGE_VERSION "$version")
set(PACKAGE_VERSION_COMPATIBLE FALSE)
set(PACKAGE_VERSION_EXACT FALSE)
if(PACKAGE_FIND_VERSION)
  if(NOT PACKAGE_FIND_VERSION VERSION_GREATER PACKAGE_VERSION
     AND PACKAGE_FIND_VERSION_MAJOR EQUAL $major
     AND (NOT $major EQUAL 0 OR PACKAGE_FIND_VERSION_MINOR EQUAL $minor))
    set(PACKAGE_VERSION_COMPATIBLE TRUE)
  endif()
  if(PACKAGE_FIND_VERSION VERSION_EQUAL PACKAGE_VERSION)
    set(PACKAGE_VERSION_EXACT TRUE)
  endif()
else()
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
endif()
if(NOT CMAKE_SIZEOF_VOID_P STREQUAL "8")
  set(PACKAGE_VERSION "\${PACKAGE_VERSION} (64-bit)")
  set(PACKAGE_VERSION_UNSUITABLE TRUE)
endif()
CMAKE

echo "installed tokenmath $version under $destdir$prefix"
