#!/usr/bin/env bash
# Checks scripts/model-rk3399.sh end to end on SqueezeNet: every kernel's K loop is found in
# the cross-built binary, timed by llvm-mca, and the report has both clusters' tables.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "test-model: FAILED: $*" >&2; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
scripts/model-rk3399.sh --model squeezenet --out "$TMP/model.md" 2>"$TMP/log" ||
    die "model-rk3399.sh failed: $(tail -n 20 "$TMP/log")"
R=$TMP/model.md
check() { grep -qF -- "$1" "$R" || die "report lacks '$1': $(cat "$R")"; }
check "**A model, not a measurement.**"
check "## little cluster (cortex-a53, 1500 MHz), modeled ms"
check "## big cluster (cortex-a72, 1800 MHz), modeled ms"
check "| EQ-INT8(#4) | EQ-INT7(#4) |"
check "| EQ-INT8(#2) | EQ-INT7(#2) |"
# Six kernels (fp32, int8, int7 on each core), MACs per iteration in whole 4x4 or 8x8 steps
# and a positive cycle count.
rows=$(grep -cE '^\| (fp32|int8|int7) `aarch64::[a-z0-9_]+` \| cortex-a(53|72) \|' "$R")
[ "$rows" = 6 ] || die "want 6 kernel rows, got $rows: $(cat "$R")"
grep -E '^\| (fp32|int8|int7) `' "$R" | while IFS='|' read -r _ _ _ _ _ _ macs cycles _; do
    [ $((macs % 16)) = 0 ] && [ "$macs" -gt 0 ] || die "MACs per iteration $macs"
    awk -v c="$cycles" 'BEGIN { exit !(c > 0) }' || die "cycles per iteration $cycles"
done
[ "$(grep -c '^| squeezenet | [0-9]* | n/a | n/a |' "$R")" = 2 ] || die "squeezenet rows: $(cat "$R")"
echo "test-model: passed"
