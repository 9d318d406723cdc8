#!/usr/bin/env bash
# Builds the ncnn Python module from the PyPI sdist of the pinned version with its AVX-512 and
# VNNI kernels left out, into a venv of its own (cached): the peer for benchmarks "on a CPU
# without VNNI" (a Haswell-class AVX2 + FMA + F16C machine). The PyPI wheel picks VNNI
# kernels at run time from cpuid and has no switch to refuse them.
#
#   scripts/build-ncnn-avx2.sh        prints the venv's directory (builds it the first time)
#
# Environment: NCNN_AVX2_VENV (default target/ncnn-avx2-venv), JOBS (default: CPU count).
# Needs python3-venv, cmake and a C++ compiler; the build takes ~5 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
NCNN_VERSION=$(sed -n 's/^NCNN_VERSION=//p' scripts/setup-test-env.sh)
VENV=${NCNN_AVX2_VENV:-$PWD/target/ncnn-avx2-venv}
JOBS=${JOBS:-$(nproc)}
log() { echo "build-ncnn-avx2: $*" >&2; }

if [ -e "$VENV/.built-$NCNN_VERSION" ]; then
    echo "$VENV"
    exit 0
fi
command -v cmake >/dev/null || { log "needs cmake"; exit 2; }

work=$PWD/target/ncnn-avx2-build
mkdir -p "$work"
src=$work/ncnn-$NCNN_VERSION
if [ ! -d "$src/src" ]; then
    tgz=$work/ncnn-$NCNN_VERSION.tar.gz
    if [ ! -e "$tgz" ]; then
        # `pip download ncnn==V --no-binary :all:` finds the sdist, then rejects it because
        # its setup.py stamps the build date as the version; fetching it by its URL works.
        url=$(python3 -m pip download --no-deps --no-binary :all: -d "$work" \
            "ncnn==$NCNN_VERSION" -v 2>&1 |
            grep -o "https://[^ ]*/ncnn-$NCNN_VERSION\.tar\.gz" | head -n1 || true)
        [ -n "$url" ] || { log "no sdist of ncnn $NCNN_VERSION on PyPI"; exit 1; }
        python3 -m pip download -q --no-deps --no-binary :all: -d "$work" "$url"
    fi
    tar -xzf "$tgz" -C "$work"
fi

[ -x "$VENV/bin/python3" ] || python3 -m venv "$VENV"
"$VENV/bin/python3" -m pip install -q numpy setuptools wheel importlib-metadata
off=()
for isa in AVX512 AVX512VNNI AVX512BF16 AVX512FP16 AVXVNNI AVXVNNIINT8 AVXVNNIINT16 \
    AVXNECONVERT; do
    off+=("-DNCNN_$isa=OFF")
done
log "building ncnn $NCNN_VERSION with ${off[*]} (log: $work/build.log)"
EXTRA_CMAKE_ARGS="-DNCNN_VULKAN=OFF ${off[*]}" CMAKE_BUILD_PARALLEL_LEVEL=$JOBS \
    nice -n 19 "$VENV/bin/python3" -m pip install -v --no-build-isolation "$src" \
    >"$work/build.log" 2>&1 || { log "build failed, see $work/build.log"; exit 1; }
"$VENV/bin/python3" -c "import ncnn" || { log "the built module does not import"; exit 1; }
touch "$VENV/.built-$NCNN_VERSION"
echo "$VENV"
