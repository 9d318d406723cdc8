#!/usr/bin/env bash
# The C API end to end: builds eq-runtime's static and shared libraries, compiles
# examples/c/classify.c and runtime/tests/c/all_functions.c with -Werror against
# runtime/include/eqrt.h, and runs them natively (static and shared linking) on the
# example's built-in model and on the demo model (`eq demo`); then builds the example as a
# static aarch64 binary and runs it under qemu-aarch64 -cpu cortex-a53.
# EQ_SKIP_AARCH64=1 skips the aarch64 part (as in test-all.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET_DIR="${CARGO_TARGET_DIR:-target}"
OUT="$TARGET_DIR/c-abi"
CFLAGS=(-std=c99 -Wall -Wextra -Werror -pedantic -O2 -Iruntime/include)
LIBS=(-lpthread -ldl -lm)
say() { echo "test-c-abi: $*"; }

# Runs a program and fails unless it ends with "ok".
run() {
    say "running $*"
    local log
    log=$("$@") || { echo "$log"; say "FAILED: $*" >&2; exit 1; }
    echo "$log"
    [[ "$log" == *": ok" ]] || { say "FAILED (no ok line): $*" >&2; exit 1; }
}

cargo build --release -p eq-runtime --lib
cargo build --release -p eq-tools --bin eq
mkdir -p "$OUT"
"$TARGET_DIR/release/eq" demo --out "$OUT/demo" >/dev/null
DEMO=("$OUT/demo/demo.param" "$OUT/demo/demo.bin" "$OUT/demo/input.npy")

say "=== host: $(cc --version | head -n1) ==="
cc "${CFLAGS[@]}" runtime/tests/c/all_functions.c "$TARGET_DIR/release/libeq_runtime.a" \
    "${LIBS[@]}" -o "$OUT/all_functions"
cc "${CFLAGS[@]}" examples/c/classify.c "$TARGET_DIR/release/libeq_runtime.a" \
    "${LIBS[@]}" -o "$OUT/classify"
cc "${CFLAGS[@]}" examples/c/classify.c -L"$TARGET_DIR/release" -leq_runtime \
    "${LIBS[@]}" -o "$OUT/classify-shared"
# The header is also valid C++ (when a C++ compiler is installed).
if command -v c++ >/dev/null; then
    c++ -Wall -Wextra -Werror -Iruntime/include -fsyntax-only -x c++ runtime/tests/c/all_functions.c
else
    say "no C++ compiler: skipping the C++ header check"
fi

run "$OUT/all_functions"
run "$OUT/classify"
run "$OUT/classify" "${DEMO[@]}"
run "$OUT/classify" --threads 2 --cluster all --precision fp32 "${DEMO[@]}"
run env LD_LIBRARY_PATH="$TARGET_DIR/release" "$OUT/classify-shared" "${DEMO[@]}"

if [ "${EQ_SKIP_AARCH64:-0}" = 1 ]; then
    say "aarch64: SKIPPED (EQ_SKIP_AARCH64=1)"
    exit 0
fi

# The aarch64 standard library: rustup's or Debian's, as in scripts/test-aarch64.sh.
TARGET=aarch64-unknown-linux-gnu
if [ -z "${RUSTC:-}" ] && [ ! -d "$(rustc --print sysroot)/lib/rustlib/$TARGET/lib" ]; then
    if [ -x /usr/bin/rustc ] && [ -d "$(/usr/bin/rustc --print sysroot)/lib/rustlib/$TARGET/lib" ]; then
        export RUSTC=/usr/bin/rustc
    else
        say "no Rust standard library for $TARGET; run scripts/setup-cross.sh" >&2
        exit 1
    fi
fi
for tool in aarch64-linux-gnu-gcc qemu-aarch64; do
    command -v "$tool" >/dev/null || { say "$tool missing; run scripts/setup-cross.sh" >&2; exit 1; }
done

say "=== aarch64: $(aarch64-linux-gnu-gcc --version | head -n1), qemu-aarch64 -cpu cortex-a53 ==="
# Only the staticlib matters here (cdylib is dropped for this +crt-static target).
cargo build --release -p eq-runtime --lib --target "$TARGET"
A64_LIB="$TARGET_DIR/$TARGET/release/libeq_runtime.a"
aarch64-linux-gnu-gcc -static "${CFLAGS[@]}" runtime/tests/c/all_functions.c "$A64_LIB" \
    "${LIBS[@]}" -o "$OUT/all_functions-aarch64"
aarch64-linux-gnu-gcc -static "${CFLAGS[@]}" examples/c/classify.c "$A64_LIB" \
    "${LIBS[@]}" -o "$OUT/classify-aarch64"
QEMU=(qemu-aarch64 -cpu cortex-a53)
run "${QEMU[@]}" "$OUT/all_functions-aarch64"
run "${QEMU[@]}" "$OUT/classify-aarch64"
run "${QEMU[@]}" "$OUT/classify-aarch64" --threads 2 "${DEMO[@]}"
say "all green"
