#!/usr/bin/env bash
# Static cycle model of the RK3399 GEMM time: cross-builds eq-bench for aarch64, reads each
# shipped micro-kernel's K loop from it (fp32; INT8 and INT7 for the A53 and the A72), times
# the loops with llvm-mca as Cortex-A53 / Cortex-A72, and multiplies by the GEMM work of the
# benchmark models (`eq zoo`, `eq-bench --gemm-shapes`). Writes bench-results/rk3399-model.md
# (or the file given with --out). A model, not a measurement: see the method and limits in
# the report and scripts/model_rk3399.py.
#
#   scripts/model-rk3399.sh [--model NAME[,NAME...]] [--out FILE]
#
# Needs aarch64-linux-gnu-objdump (binutils-aarch64-linux-gnu), llvm-mca (Debian llvm) and
# python3, plus the cross tools of scripts/setup-cross.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "model-rk3399: $*" >&2; exit 1; }
MODEL_NAMES="" OUT=bench-results/rk3399-model.md
while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || die "$1 needs a value"
    case $1 in
        --model) MODEL_NAMES=$2 ;;
        --out) OUT=$2 ;;
        *) die "unknown option $1 (usage: scripts/model-rk3399.sh [--model NAMES] [--out FILE])" ;;
    esac
    shift 2
done
LLVM_MCA=${LLVM_MCA:-$(command -v llvm-mca || ls /usr/bin/llvm-mca-* 2>/dev/null | sort -V | tail -n1 || true)}
[ -n "$LLVM_MCA" ] || die "llvm-mca missing (apt-get install llvm)"
for tool in aarch64-linux-gnu-objdump aarch64-linux-gnu-nm python3; do
    command -v "$tool" >/dev/null || die "$tool missing (apt-get install binutils-aarch64-linux-gnu python3)"
done

TARGET=aarch64-unknown-linux-gnu
if [ -z "${RUSTC:-}" ] && [ ! -d "$(rustc --print sysroot)/lib/rustlib/$TARGET/lib" ]; then
    if [ -x /usr/bin/rustc ] && [ -d "$(/usr/bin/rustc --print sysroot)/lib/rustlib/$TARGET/lib" ]; then
        export RUSTC=/usr/bin/rustc
    else
        die "no Rust standard library for $TARGET; run scripts/setup-cross.sh"
    fi
fi
echo "model-rk3399: building eq-bench for $TARGET" >&2
cargo build --release -q -p eq-runtime --bin eq-bench --target "$TARGET" 2> >(grep -v cdylib >&2)
BIN="${CARGO_TARGET_DIR:-target}/$TARGET/release/eq-bench"

# The GEMM shapes are the same on every architecture: read them with a host build (plain
# cargo, not the cross RUSTC).
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
zoo_args=()
if [ -n "$MODEL_NAMES" ]; then
    IFS=, read -ra names <<<"$MODEL_NAMES"
    for n in "${names[@]}"; do zoo_args+=(--model "$n"); done
fi
echo "model-rk3399: writing the benchmark models and their GEMM shapes" >&2
env -u RUSTC cargo run --release -q -p eq-tools --bin eq -- zoo --out "$WORK/models" "${zoo_args[@]}" >/dev/null
params=("$WORK"/models/*.param)
list=$(IFS=,; echo "${params[*]}")
env -u RUSTC cargo run --release -q -p eq-runtime --bin eq-bench -- --model "$list" --gemm-shapes >"$WORK/shapes.txt"

mkdir -p "$(dirname "$OUT")"
python3 scripts/model_rk3399.py --binary "$BIN" --shapes "$WORK/shapes.txt" --out "$OUT" \
    --llvm-mca "$LLVM_MCA" --commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
