#!/usr/bin/env bash
# A libFuzzer campaign over the model loaders (fuzz/: `param` = parse_param on any bytes,
# `model` = Net::from_memory + run on [u16 len][param][weights]), seeded with every model we
# have: ncnn's benchmark params, the real models of the shared folder (fp32 and fp16 weights),
# their int8 and int7 quantizations (int8-tagged weights, scale tables in the param), every
# `eq zoo` model with random weights, the malformed-model corpus and, when the tests have
# generated them, the ncnn differential nets (every op, with weights). Appends the executions,
# coverage, corpus size and findings of each target to bench-results/fuzz.md.
#
#   scripts/fuzz-campaign.sh [SECONDS per target, default 1800] [extra seed dir...]
#   TARGETS=model scripts/fuzz-campaign.sh 1800     # one target only
#   TARGETS=caffe scripts/fuzz-campaign.sh 1800     # the Caffe importer (eq import caffe)
#
# Needs nightly and cargo-fuzz (`rustup toolchain install nightly; cargo install cargo-fuzz`);
# both targets run at once, one core each. EQ_SHARED (default ../shared) has the models.
# Crashing inputs stay in fuzz/artifacts/<target>/, the grown corpus in target/fuzz/corpus/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECONDS_PER_TARGET=${1:-1800}
shift || true
SHARED=${EQ_SHARED:-$ROOT/../shared}
WORK=$ROOT/target/fuzz
OUT=${OUT:-$ROOT/bench-results/fuzz.md}
TARGETS=(${TARGETS:-param model})
MAX_LEN=262144 # the longest seed fuzz_parse --corpus writes
COMMIT=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- runtime fuzz || echo +)
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is not installed (cargo install cargo-fuzz)" >&2; exit 1; }
cargo +nightly --version >/dev/null || { echo "no nightly toolchain (rustup toolchain install nightly)" >&2; exit 1; }
[[ -d $SHARED/data/models ]] || { echo "no models in $SHARED/data/models (set EQ_SHARED)" >&2; exit 1; }

log "building eq and the corpus writer"
cargo build --release -q -p eq-tools --bin eq
cargo build --release -q -p eq-runtime --example fuzz_parse
EQ=$ROOT/target/release/eq
rm -rf "$WORK/models" "$WORK/seeds"
mkdir -p "$WORK/models/zoo" "$WORK/models/quantized"

log "seed models: eq zoo with weights, int8/int7 quantizations of the shared models"
"$EQ" zoo --weights --out "$WORK/models/zoo" >/dev/null
CALIB=$SHARED/data/images/imagenet_sample1000_s256/images
quantize() { # NAME PARAM BIN PRESET
    local name=$1 param=$2 bin=$3 preset=$4 q=$WORK/models/quantized
    "$EQ" calibrate --param "$param" --bin "$bin" --images "$CALIB" --count 4 --preset "$preset" \
        --method max --out "$q/$name.table" >/dev/null 2>&1
    for bits in 8 7; do
        "$EQ" quantize --param "$param" --bin "$bin" --table "$q/$name.table" --bits "$bits" \
            --out-param "$q/${name}_int$bits.param" --out-bin "$q/${name}_int$bits.bin" >/dev/null
    done
}
M=$SHARED/data/models
quantize squeezenet "$M/squeezenet_v1.1/squeezenet_v1.1.param" "$M/squeezenet_v1.1/squeezenet_v1.1.fp32.bin" squeezenet
quantize mobilenet_v2 "$M/mobilenet_v2/mobilenet_v2.param" "$M/mobilenet_v2/mobilenet_v2.fp32.bin" mobilenet_v2

SEED_DIRS=("$ROOT/runtime/tests/malformed" "$SHARED/models/ncnn-benchmark" "$M" "$WORK/models")
[[ -d $ROOT/target/ncnn_diff ]] && SEED_DIRS+=("$ROOT/target/ncnn_diff")
SEED_DIRS+=("$@")
"$ROOT/target/release/examples/fuzz_parse" --corpus "$WORK/seeds" "${SEED_DIRS[@]}"
# The caffe target reads [u16 length][prototxt][caffemodel]: seed it with a small prototxt
# using every supported layer type (its weights are left to the fuzzer).
mkdir -p "$WORK/seeds/caffe"
python3 - "$WORK/seeds/caffe/layers" <<'PY'
import struct, sys
text = b"""input: "data" input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }
layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 4 kernel_size: 3 group: 1 dilation: 1 } }
layer { name: "bn" type: "BatchNorm" bottom: "c" top: "c" }
layer { name: "sc" type: "Scale" bottom: "c" top: "c" scale_param { bias_term: true } }
layer { name: "r" type: "ReLU" bottom: "c" top: "c" }
layer { name: "p" type: "Pooling" bottom: "c" top: "p" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "n" type: "LRN" bottom: "p" top: "n" }
layer { name: "cat" type: "Concat" bottom: "n" bottom: "p" top: "cat" }
layer { name: "e" type: "Eltwise" bottom: "cat" bottom: "cat" top: "e" }
layer { name: "fc" type: "InnerProduct" bottom: "e" top: "fc" inner_product_param { num_output: 2 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""
open(sys.argv[1], "wb").write(struct.pack("<H", len(text)) + text)
PY

log "fuzzing ${TARGETS[*]} for $SECONDS_PER_TARGET s each (at once)"
cd fuzz
# Default build: optimised, with debug assertions, overflow checks and AddressSanitizer.
cargo +nightly fuzz build 2>&1 | tail -n 2
# A finding that was fixed must not come back: replay the saved ones first.
for t in "${TARGETS[@]}"; do
    for f in artifacts/"$t"/*; do
        [[ -f $f ]] || continue
        cargo +nightly fuzz run "$t" "$f" >/dev/null 2>&1 || { log "$t: saved input $f still fails"; exit 1; }
    done
done
for t in "${TARGETS[@]}"; do
    mkdir -p "$WORK/corpus/$t"
    cargo +nightly fuzz run "$t" "$WORK/corpus/$t" "$WORK/seeds/$t" -- \
        -max_total_time="$SECONDS_PER_TARGET" -max_len=$MAX_LEN -rss_limit_mb=2048 \
        -timeout=20 -print_final_stats=1 >"$WORK/$t.log" 2>&1 &
done
status=0
wait || status=$?
cd "$ROOT"

# The last status line of a libFuzzer log: "#N DONE cov: C ft: F corp: K/S ..." (or the
# last pulse when it stopped on a finding).
stat() { grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE|INITED)' "$WORK/$1.log" | tail -n 1; }
field() { sed -n "s/.* $2: \\([0-9]*\\).*/\\1/p" <<<"$(stat "$1")"; }
{
    [[ -s $OUT ]] || printf '# Fuzzing the model loaders\n\nRecorded by scripts/fuzz-campaign.sh; newest run last.\n'
    echo
    echo "## $(date -u +%Y-%m-%d) — commit $COMMIT, $SECONDS_PER_TARGET s per target"
    echo
    echo "Command: \`scripts/fuzz-campaign.sh $SECONDS_PER_TARGET\` on $(nproc) cores ($(uname -m)), $(cargo +nightly --version | cut -d' ' -f1-2), ${TARGETS[*]} at once."
    echo "Seeds: $(ls "$WORK/seeds/param" | wc -l) param / $(ls "$WORK/seeds/model" | wc -l) model files from: $(printf '%s ' "${SEED_DIRS[@]}" | sed "s|$SHARED|shared|g; s|$ROOT/||g")"
    echo
    echo "| target | executions | exec/s | coverage (edges) | features | corpus | crashes / timeouts / OOMs |"
    echo "|---|---|---|---|---|---|---|"
    for t in "${TARGETS[@]}"; do
        runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$WORK/$t.log" | tail -n 1)
        [[ -n $runs ]] || runs=$(stat "$t" | sed -n 's/^#\([0-9]*\).*/\1/p')
        rate=$(grep -o 'exec/s: [0-9]*' "$WORK/$t.log" | tail -n 1 | cut -d' ' -f2)
        finds=$(find "fuzz/artifacts/$t" -type f -newer "$WORK/seeds" 2>/dev/null | sed 's|.*/||' |
            awk -F- '{ n[$1]++ } END { printf "%d / %d / %d", n["crash"], n["timeout"], n["oom"] }')
        echo "| $t | ${runs:-?} | ${rate:-?} | $(field "$t" cov) | $(field "$t" ft) | $(field "$t" corp) | ${finds:-0 / 0 / 0} |"
    done
} >>"$OUT"
log "results appended to $OUT"
for t in "${TARGETS[@]}"; do
    if grep -q 'SUMMARY: libFuzzer\|ERROR: libFuzzer\|panicked' "$WORK/$t.log"; then
        log "$t: finding, see $WORK/$t.log and fuzz/artifacts/$t/"
        status=1
    fi
done
exit $status
