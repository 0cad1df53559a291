#!/usr/bin/env bash
# Installs libferrows (built by `cargo build --release -p ferrows-ffi`) under a prefix:
#
#   PREFIX/include/ferrows.h
#   PREFIX/lib/libferrows.so.X.Y.Z, libferrows.so.<soname version> -> it, libferrows.so -> it
#   PREFIX/lib/libferrows.a
#   PREFIX/lib/pkgconfig/ferrows.pc
#   PREFIX/lib/cmake/ferrows/ferrowsConfig.cmake, ferrowsConfigVersion.cmake
#
# usage: ffi-c/install.sh [--relocatable] PREFIX
#   --relocatable    ferrows.pc names no prefix but its own location (${pcfiledir}/../..), so
#                    the tree can be moved or unpacked anywhere (the release tarball;
#                    ferrowsConfig.cmake always finds its prefix that way)
#   FERROWS_LIB_DIR  where the built libraries are (default: <repo>/target/release)
#   DESTDIR          staging root for packagers: files go to DESTDIR/PREFIX, paths name PREFIX
# It builds nothing: run cargo first.
set -euo pipefail

die() { echo "install.sh: $*" >&2; exit 1; }

RELOCATABLE=no
if [ "${1:-}" = --relocatable ]; then
  RELOCATABLE=yes
  shift
fi
[ $# -eq 1 ] && [ -n "$1" ] || die "usage: $0 [--relocatable] PREFIX"
case $1 in
  /*) PREFIX=$1 ;;
  *) PREFIX=$(pwd)/$1 ;;
esac
PREFIX=${PREFIX%/}
REPO=$(cd "$(dirname "$0")/.." && pwd)
LIB_DIR=${FERROWS_LIB_DIR:-$REPO/target/release}
HEADER=$REPO/include/ferrows.h
DEST=${DESTDIR:-}$PREFIX

[ -f "$HEADER" ] || die "no header at $HEADER"
for built in libferrows.so libferrows.a; do
  [ -f "$LIB_DIR/$built" ] || die "no $built in $LIB_DIR: build it with 'cargo build --release -p ferrows-ffi' (or set FERROWS_LIB_DIR)"
done

# The version is the header's: the library and the header are built from the same crate.
version_part() {
  sed -n "s/^#define FERROWS_VERSION_$1 \([0-9][0-9]*\)[[:space:]]*$/\1/p" "$HEADER"
}
MAJOR=$(version_part MAJOR)
MINOR=$(version_part MINOR)
PATCH=$(version_part PATCH)
[ -n "$MAJOR" ] && [ -n "$MINOR" ] && [ -n "$PATCH" ] || die "no FERROWS_VERSION_* macros in $HEADER"
VERSION=$MAJOR.$MINOR.$PATCH

# Before 1.0 a minor release may break the ABI, so the soname carries it (ffi-c/build.rs).
if [ "$MAJOR" = 0 ]; then SONAME=libferrows.so.0.$MINOR; else SONAME=libferrows.so.$MAJOR; fi
if command -v readelf >/dev/null; then
  built_soname=$(readelf -d "$LIB_DIR/libferrows.so" | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p')
  [ "$built_soname" = "$SONAME" ] ||
    die "$LIB_DIR/libferrows.so has soname '${built_soname}', expected $SONAME: header and library differ"
fi
REAL=libferrows.so.$VERSION
# The pointer size the library was built for, from its ELF class (byte 4: 1 is 32-bit, 2 64-bit).
case $(od -An -tu1 -j4 -N1 "$LIB_DIR/libferrows.so" | tr -d ' ') in
  1) POINTER_SIZE=4 ;;
  2) POINTER_SIZE=8 ;;
  *) die "$LIB_DIR/libferrows.so is not an ELF library" ;;
esac

mkdir -p "$DEST/include" "$DEST/lib/pkgconfig" "$DEST/lib/cmake/ferrows"
install -m 644 "$HEADER" "$DEST/include/ferrows.h"
# Copied to a temporary name and renamed: a program running from the old copy keeps it.
install -m 755 "$LIB_DIR/libferrows.so" "$DEST/lib/.$REAL.tmp"
mv -f "$DEST/lib/.$REAL.tmp" "$DEST/lib/$REAL"
ln -sfn "$REAL" "$DEST/lib/$SONAME"
ln -sfn "$REAL" "$DEST/lib/libferrows.so"
install -m 644 "$LIB_DIR/libferrows.a" "$DEST/lib/libferrows.a"

if [ "$RELOCATABLE" = yes ]; then PC_PREFIX='${pcfiledir}/../..'; else PC_PREFIX=$PREFIX; fi
cat >"$DEST/lib/pkgconfig/ferrows.pc" <<EOF
prefix=$PC_PREFIX
exec_prefix=\${prefix}
libdir=\${exec_prefix}/lib
includedir=\${prefix}/include

Name: ferrows
Description: A fast, conformant WebSocket library (RFC 6455): the C ABI
Version: $VERSION
Libs: -L\${libdir} -lferrows
Libs.private: -lpthread -ldl -lm
Cflags: -I\${includedir}
EOF

# Relocatable: the prefix is found from this file's own location.
cat >"$DEST/lib/cmake/ferrows/ferrowsConfig.cmake" <<EOF
# CMake package for ferrows $VERSION, written by ffi-c/install.sh.
#   find_package(ferrows REQUIRED)
#   target_link_libraries(app PRIVATE ferrows::ferrows)         # shared
#   target_link_libraries(app PRIVATE ferrows::ferrows_static)  # static
get_filename_component(_ferrows_prefix "\${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)

set(ferrows_VERSION $VERSION)
set(ferrows_INCLUDE_DIRS "\${_ferrows_prefix}/include")
set(ferrows_LIBRARIES ferrows::ferrows)

foreach(_ferrows_file "include/ferrows.h" "lib/$REAL" "lib/libferrows.a")
  if(NOT EXISTS "\${_ferrows_prefix}/\${_ferrows_file}")
    set(ferrows_FOUND FALSE)
    set(ferrows_NOT_FOUND_MESSAGE "\${_ferrows_prefix}/\${_ferrows_file} is missing")
    unset(_ferrows_prefix)
    return()
  endif()
endforeach()

if(NOT TARGET ferrows::ferrows)
  add_library(ferrows::ferrows SHARED IMPORTED)
  set_target_properties(ferrows::ferrows PROPERTIES
    IMPORTED_LOCATION "\${_ferrows_prefix}/lib/$REAL"
    IMPORTED_SONAME "$SONAME"
    INTERFACE_INCLUDE_DIRECTORIES "\${_ferrows_prefix}/include")
endif()

if(NOT TARGET ferrows::ferrows_static)
  # libferrows.a needs what Libs.private in ferrows.pc lists: threads, dl and libm.
  set(_ferrows_threads -lpthread)
  if(CMAKE_C_COMPILER_LOADED OR CMAKE_CXX_COMPILER_LOADED)
    find_package(Threads QUIET)
    if(TARGET Threads::Threads)
      set(_ferrows_threads Threads::Threads)
    endif()
  endif()
  add_library(ferrows::ferrows_static STATIC IMPORTED)
  set_target_properties(ferrows::ferrows_static PROPERTIES
    IMPORTED_LOCATION "\${_ferrows_prefix}/lib/libferrows.a"
    IMPORTED_LINK_INTERFACE_LANGUAGES "C"
    INTERFACE_INCLUDE_DIRECTORIES "\${_ferrows_prefix}/include"
    INTERFACE_LINK_LIBRARIES "\${_ferrows_threads};\${CMAKE_DL_LIBS};m")
  unset(_ferrows_threads)
endif()

unset(_ferrows_prefix)
EOF

cat >"$DEST/lib/cmake/ferrows/ferrowsConfigVersion.cmake" <<EOF
# Version check for ferrows $VERSION, written by ffi-c/install.sh. Compatible releases share
# the major version, and before 1.0 the minor one too (the soname is $SONAME).
set(PACKAGE_VERSION "$VERSION")
set(PACKAGE_VERSION_COMPATIBLE FALSE)
set(PACKAGE_VERSION_EXACT FALSE)
if(PACKAGE_FIND_VERSION_RANGE)
  # A range, e.g. find_package(ferrows 0.1...0.2): the installed version must lie in it.
  if((PACKAGE_FIND_VERSION_RANGE_MIN STREQUAL "INCLUDE" AND PACKAGE_VERSION VERSION_GREATER_EQUAL PACKAGE_FIND_VERSION_MIN
      OR PACKAGE_FIND_VERSION_RANGE_MIN STREQUAL "EXCLUDE" AND PACKAGE_VERSION VERSION_GREATER PACKAGE_FIND_VERSION_MIN)
     AND (PACKAGE_FIND_VERSION_RANGE_MAX STREQUAL "INCLUDE" AND PACKAGE_VERSION VERSION_LESS_EQUAL PACKAGE_FIND_VERSION_MAX
      OR PACKAGE_FIND_VERSION_RANGE_MAX STREQUAL "EXCLUDE" AND PACKAGE_VERSION VERSION_LESS PACKAGE_FIND_VERSION_MAX))
    set(PACKAGE_VERSION_COMPATIBLE TRUE)
  endif()
elseif(NOT PACKAGE_FIND_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
elseif(PACKAGE_FIND_VERSION_MAJOR EQUAL $MAJOR
       AND ($MAJOR GREATER 0 OR PACKAGE_FIND_VERSION_MINOR EQUAL $MINOR)
       AND NOT PACKAGE_FIND_VERSION VERSION_GREATER PACKAGE_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
  if(PACKAGE_FIND_VERSION VERSION_EQUAL PACKAGE_VERSION)
    set(PACKAGE_VERSION_EXACT TRUE)
  endif()
endif()
# A library built for another pointer size is no match (a 32-bit build on a 64-bit one).
if(CMAKE_SIZEOF_VOID_P AND NOT CMAKE_SIZEOF_VOID_P STREQUAL "$POINTER_SIZE")
  math(EXPR _ferrows_bits "$POINTER_SIZE * 8")
  set(PACKAGE_VERSION "\${PACKAGE_VERSION} (\${_ferrows_bits}-bit)")
  unset(_ferrows_bits)
  set(PACKAGE_VERSION_UNSUITABLE TRUE)
endif()
EOF

echo "installed ferrows $VERSION into $DEST"
