#!/usr/bin/env bash
# cibuildwheel before-build step on macOS: put an OpenMP runtime (libomp) for the wheel's target
# architecture into $LIBOMP_PREFIX, where setup.py looks for it; delocate then copies it into the
# wheel, so users need no Homebrew.
#
# Homebrew's libomp is built for the runner's own macOS release, newer than the wheels' deployment
# target (10.13 on x86_64, 11.0 on arm64; see [tool.cibuildwheel] in pyproject.toml), and delocate
# rejects such a library. conda-forge's llvm-openmp 11.1.0 is built for macOS 10.9 (x86_64) and
# 11.0 (arm64), and is the runtime scikit-learn and XGBoost bundled in their wheels for years. A
# conda package is a plain .tar.bz2 holding lib/ and include/: no conda is needed to unpack it.
set -euo pipefail

if [[ "$(uname)" != "Darwin" ]]; then
    echo "install_libomp_macos.sh: not macOS, nothing to do"
    exit 0
fi

# cibuildwheel sets ARCHFLAGS to the architecture being built ("-arch arm64" / "-arch x86_64").
case "${ARCHFLAGS:-} $(uname -m)" in
    *"-arch arm64"*) arch=arm64 ;;
    *"-arch x86_64"*) arch=x86_64 ;;
    *" arm64") arch=arm64 ;;
    *) arch=x86_64 ;;
esac

case "$arch" in
    arm64)
        url="https://anaconda.org/conda-forge/llvm-openmp/11.1.0/download/osx-arm64/llvm-openmp-11.1.0-hf3c4609_1.tar.bz2"
        ;;
    x86_64)
        url="https://anaconda.org/conda-forge/llvm-openmp/11.1.0/download/osx-64/llvm-openmp-11.1.0-hda6cdc1_1.tar.bz2"
        ;;
esac

prefix="${LIBOMP_PREFIX:-/tmp/fastrank-libomp/$arch}"
if [[ -f "$prefix/lib/libomp.dylib" && -f "$prefix/include/omp.h" ]]; then
    echo "libomp ($arch) already in $prefix"
    exit 0
fi

mkdir -p "$prefix"
archive="$(mktemp -t libomp).tar.bz2"
curl --fail --silent --show-error --location --retry 5 --output "$archive" "$url"
tar -xjf "$archive" -C "$prefix"
rm -f "$archive"

test -f "$prefix/lib/libomp.dylib"
test -f "$prefix/include/omp.h"
lipo -info "$prefix/lib/libomp.dylib"
otool -l "$prefix/lib/libomp.dylib" | grep -A4 -E "LC_VERSION_MIN_MACOSX|LC_BUILD_VERSION" | grep -E "version|minos" || true
echo "libomp ($arch) installed in $prefix"
