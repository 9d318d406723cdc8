#!/usr/bin/env bash
# Builds the tests of the runtime and of eq-bench for aarch64 (static, see .cargo/config.toml)
# and runs every test binary under qemu-user, once as a Cortex-A53 and once as a Cortex-A72
# (the RK3399's two cores). qemu's default CPU ("max") has dot-product and SVE, which the RK3399
# lacks, so the CPU is always given. Fails on any failure. Only eq-runtime and eq-bench are
# built: they are what ships to the board (eq-bench's toml crate needs rustc 1.85 or newer).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=aarch64-unknown-linux-gnu
# EQ_QEMU_CPUS overrides the list, e.g. EQ_QEMU_CPUS=cortex-a53 for one pass.
CPUS=(${EQ_QEMU_CPUS:-cortex-a53 cortex-a72})

# Pick a rustc that has the aarch64 standard library: an explicit RUSTC, rustup's, or
# Debian's (scripts/setup-cross.sh installs one of them).
if [ -z "${RUSTC:-}" ]; then
    if [ -d "$(rustc --print sysroot)/lib/rustlib/$TARGET/lib" ]; then
        :
    elif [ -x /usr/bin/rustc ] && [ -d "$(/usr/bin/rustc --print sysroot)/lib/rustlib/$TARGET/lib" ]; then
        export RUSTC=/usr/bin/rustc
    else
        echo "test-aarch64: no Rust standard library for $TARGET; run scripts/setup-cross.sh" >&2
        exit 1
    fi
fi
for tool in aarch64-linux-gnu-gcc qemu-aarch64; do
    command -v "$tool" >/dev/null || {
        echo "test-aarch64: $tool missing; run scripts/setup-cross.sh" >&2
        exit 1
    }
done
echo "test-aarch64: $("${RUSTC:-rustc}" --version), $(qemu-aarch64 --version | head -n1)"

# --tests: unit and integration tests (doctests are host-only).
cargo_test=(cargo test -p eq-runtime -p eq-bench --target "$TARGET" --tests)
"${cargo_test[@]}" --no-run

for cpu in "${CPUS[@]}"; do
    echo "test-aarch64: === running the aarch64 tests under qemu-aarch64 -cpu $cpu ==="
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -cpu $cpu -L /usr/aarch64-linux-gnu"
    # runtime/tests/qemu_cpu.rs checks MIDR_EL1 against this, so a runner that is not
    # applied (binfmt's default CPU) fails instead of passing silently.
    export EQ_EXPECT_CPU=$cpu
    # Tests that start another of our binaries go through the same emulator.
    export EQ_TEST_RUNNER="$CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER"
    if ! "${cargo_test[@]}" --no-fail-fast; then
        echo "test-aarch64: FAILED under -cpu $cpu" >&2
        exit 1
    fi
    echo "test-aarch64: passed under -cpu $cpu"
done
echo "test-aarch64: all passes green (${CPUS[*]})"
