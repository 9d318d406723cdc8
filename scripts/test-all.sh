#!/usr/bin/env bash
# Every check the project has, in order of cost, after installing what is missing
# (scripts/setup-test-env.sh, idempotent): formatting, lints, the host test suite
# (the test profile is optimised, see Cargo.toml), the aarch64 suite under qemu as
# Cortex-A53 and Cortex-A72, and the differential suite against ncnn when present.
# Shared data (models, images, reference outputs) is found via EQ_SHARED, default ../shared.
# EQ_SKIP_AARCH64=1 skips the emulated pass on machines without the cross tools;
# EQ_SKIP_DEPLOY=1 skips the board deployment test (a local sshd + qemu "board") and the
# cycle-model tests (llvm-mca; test-arm-model.sh also needs $EQ_SHARED/tools/armcycles, and
# fails without it when CI=true); they need the cross tools, so EQ_SKIP_AARCH64=1 skips them too.
set -euo pipefail
cd "$(dirname "$0")/.."

EQ_SHARED="${EQ_SHARED:-$(cd .. && pwd)/shared}"
export EQ_SHARED
step() { echo; echo "test-all: === $* ==="; }

step "setup: install what is missing (scripts/setup-test-env.sh; EQ_NO_SETUP=1 skips)"
# shellcheck source=scripts/setup-test-env.sh
. scripts/setup-test-env.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test --workspace"
cargo test --workspace

if [ "$(uname -m)" = x86_64 ] && grep -qw avx2 /proc/cpuinfo; then
    # A CPU without VNNI runs other integer kernels and the integer Winograd path.
    step "x86_64 without VNNI (EQ_X86_KERNEL=avx2): quantized convolution and Winograd tests"
    EQ_X86_KERNEL=avx2 cargo test -q -p eq-runtime --lib -- convolution winograd_i8
fi

step "C API: examples/c against the static and shared library (scripts/test-c-abi.sh)"
scripts/test-c-abi.sh

if [ "${EQ_SKIP_AARCH64:-0}" = 1 ]; then
    step "aarch64 under qemu: SKIPPED (EQ_SKIP_AARCH64=1)"
else
    step "aarch64 under qemu"
    scripts/test-aarch64.sh
fi

if [ "${EQ_SKIP_DEPLOY:-0}" = 1 ] || [ "${EQ_SKIP_AARCH64:-0}" = 1 ]; then
    step "deploy to a board over ssh: SKIPPED (EQ_SKIP_DEPLOY=1 or EQ_SKIP_AARCH64=1)"
else
    step "deploy to a board over ssh: local sshd, qemu board (scripts/test-deploy.sh)"
    scripts/test-deploy.sh
    step "armcycles model of whole inferences, quick mode (scripts/test-arm-model.sh)"
    scripts/test-arm-model.sh
fi

if [ -d tests/ncnn_diff ]; then
    step "the .bin writers' own tests and the .param.bin layer registry against ncnn"
    (cd tests/ncnn_diff && python3 test_ncnn_bin.py && python3 test_int8_bin.py)
    step "differential tests against ncnn (tests/ncnn_diff)"
    cargo build --release -p eq-tools --bin eq
    EQ_BIN="${EQ_BIN:-${CARGO_TARGET_DIR:-target}/release/eq}"
    export EQ_BIN
    python3 tests/ncnn_diff/run.py
    step "INT8/INT7 differential tests against ncnn (tests/ncnn_diff/int8.py)"
    python3 tests/ncnn_diff/int8.py
    if [ "$(uname -m)" = x86_64 ] && grep -qw avx2 /proc/cpuinfo; then
        step "INT8/INT7 against ncnn with the kernels of a CPU without VNNI (EQ_X86_KERNEL=avx2)"
        EQ_X86_KERNEL=avx2 python3 tests/ncnn_diff/int8.py resnet50
    fi
fi

echo
echo "test-all: all green"
