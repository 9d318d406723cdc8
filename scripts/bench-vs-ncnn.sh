#!/usr/bin/env bash
# eq-runtime vs ncnn on this host: builds eq-bench (release), then times both engines on the
# benchncnn models (FP32 squeezenet, mobilenet, resnet50, vgg16 and their *_int8 versions,
# threads 1 and 2) and writes bench-results/host-$(uname -m).md.
#
# Uses python3 with numpy and the PyPI `ncnn` package, installed into the test venv when
# missing (scripts/setup-test-env.sh's Python step). Environment overrides:
#   EQ_BENCH_MODELS  benchmark .param directory (default /work/shared/models/ncnn-benchmark)
#   LOOPS / WARMUP   timed and warm-up runs per case (default 20 / 5)
#   FP32 / INT8      comma-separated model names (defaults: the four models above)
#   OUT              output markdown file
#   NO_VNNI=1        time both engines as on a CPU without AVX-512 and VNNI (Haswell-class
#                    AVX2 + FMA + F16C): eq's AVX2 kernels forced (EQ_X86_KERNEL and
#                    EQ_X86_F32_KERNEL=avx2), ncnn built from its sdist without those kernels
#                    (scripts/build-ncnn-avx2.sh, cached); OUT defaults to
#                    bench-results/host-x86_64-avx2.md
# INT8 / INT7 columns read "n/a" while eq-bench skips those precisions; they fill in
# without changes here once it runs them.
set -euo pipefail
cd "$(dirname "$0")/.."

MODELS=${EQ_BENCH_MODELS:-/work/shared/models/ncnn-benchmark}
LOOPS=${LOOPS:-20}
WARMUP=${WARMUP:-5}
FP32=${FP32:-squeezenet,mobilenet,resnet50,vgg16}
INT8=${INT8:-squeezenet_int8,mobilenet_int8,resnet50_int8,vgg16_int8}
if [ "${NO_VNNI:-}" = 1 ]; then
    OUT=${OUT:-bench-results/host-$(uname -m)-avx2.md}
else
    OUT=${OUT:-bench-results/host-$(uname -m).md}
fi

# Only the Python part of the test setup: the benchmark needs no cross tools.
# shellcheck source=scripts/setup-test-env.sh
EQ_NO_SETUP=1 . scripts/setup-test-env.sh
setup_python

cargo build --release -q -p eq-bench --bin eq-bench
label="PyPI wheel" prefix=""
if [ "${NO_VNNI:-}" = 1 ]; then
    venv=$(scripts/build-ncnn-avx2.sh)
    # shellcheck disable=SC1091
    . "$venv/bin/activate"
    export EQ_X86_KERNEL=avx2 EQ_X86_F32_KERNEL=avx2
    label="the PyPI sdist of $NCNN_VERSION built without its AVX-512 and VNNI kernels by scripts/build-ncnn-avx2.sh, which stamps the build date as the version"
    prefix="NO_VNNI=1 "
fi
python3 scripts/bench_vs_ncnn.py --ncnn-build "$label" \
    --eq-bench target/release/eq-bench \
    --models "$MODELS" --out "$OUT" \
    --loops "$LOOPS" --warmup "$WARMUP" --threads 1,2 \
    --fp32 "$FP32" --int8 "$INT8" \
    --command "${prefix}LOOPS=$LOOPS WARMUP=$WARMUP scripts/bench-vs-ncnn.sh"
