#!/usr/bin/env bash
# The main command: writes the built-in demo model (seeded weights) and an input, runs it,
# saves the `prob` output as .npy and prints every output; then runs the main job,
# `eq easyquant`, on that model and generated images (INT7) and prints its summary.
# Usage: scripts/demo.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

OUT="${1:-target/demo}"
eq() { cargo run --release -q -p eq-tools --bin eq -- "$@"; }

eq demo --out "$OUT"
eq infer --param "$OUT/demo.param" --bin "$OUT/demo.bin" --in "data=$OUT/input.npy" --out "prob=$OUT/prob.npy"
eq infer --param "$OUT/demo.param" --bin "$OUT/demo.bin" --in "data=$OUT/input.npy"
eq easyquant --out "$OUT/easyquant"
