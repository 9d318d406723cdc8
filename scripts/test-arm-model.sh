#!/usr/bin/env bash
# Checks scripts/bench-arm-model.sh: quick mode on SqueezeNet INT8 under qemu -cpu cortex-a72
# (armcycles count + llvm-mca; a few seconds after the build) gives a positive modeled ms,
# hot blocks with shares, and the ratio against a cached ncnn result; and the report writer
# (scripts/arm_model.py) turns known results into the right ratios and target marks.
# Needs armcycles ($ARMCYCLES, default $EQ_SHARED/tools/armcycles): missing, it is a failure
# when CI=true and a loud skip otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "test-arm-model: FAILED: $*" >&2; exit 1; }
EQ_SHARED=${EQ_SHARED:-$(cd .. && pwd)/shared}
ARMCYCLES=${ARMCYCLES:-$EQ_SHARED/tools/armcycles}
if [ ! -x "$ARMCYCLES/count.sh" ]; then
    [ "${CI:-}" = true ] && die "armcycles not found at $ARMCYCLES (set ARMCYCLES or EQ_SHARED)"
    echo "test-arm-model: SKIPPED: armcycles not found at $ARMCYCLES (set ARMCYCLES or EQ_SHARED)" >&2
    exit 0
fi
export EQ_SHARED ARMCYCLES
NCNN_VERSION="test"
export NCNN_VERSION
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

fake() { # DIR QCPU MCA=MS... : a count.sh-style result with given modeled ms
    python3 - "$@" <<'EOF'
import json, os, sys
d, q = sys.argv[1:3]
os.makedirs(d, exist_ok=True)
cpus = {}
for kv in sys.argv[3:]:
    m, ms = kv.split("=")
    cpus[m] = {"cycles": float(ms) * 1e6, "ms": float(ms), "mhz": 1000}
json.dump({"label": "fake", "instructions": 1e6, "llvm_mca": "test", "cpus": cpus,
           "top": [{"share": 0.5, "where": "f(int)+0x10"}, {"share": 0.25, "where": "f(int)+0x20"}]},
          open(os.path.join(d, q + ".json"), "w"))
EOF
}

# 1. quick mode, real count, with a fake cached ncnn int8 result of 10 ms
fake "$TMP/work/ncnn-test/ncnn-squeezenet_int8" cortex-a72 cortex-a72=10
scripts/bench-arm-model.sh --quick squeezenet int8 --cpu a72 --work "$TMP/work" \
    >"$TMP/quick.txt" 2>"$TMP/quick.log" || die "quick mode failed: $(tail -n 20 "$TMP/quick.log")"
Q=$TMP/quick.txt
line=$(grep -E '^  A72 +[0-9.]+ ms ' "$Q") || die "no A72 ms line: $(cat "$Q")"
ms=$(awk '{print $2}' <<<"$line")
awk -v v="$ms" 'BEGIN { exit !(v > 0) }' || die "modeled ms $ms"
r=$(sed -n 's/.*ncnn int8 10.00 ms (cached): ratio \([0-9.]*\),.*/\1/p' <<<"$line")
[ -n "$r" ] || die "no ratio against the cached ncnn int8: $line"
awk -v r="$r" -v v="$ms" 'BEGIN { d = r - v / 10; exit !(d < 0.01 && d > -0.01) }' ||
    die "ratio $r is not $ms / 10"
grep -qE '^ +[0-9.]+%  .*eq_runtime::' "$Q" || die "no hot blocks of ours: $(cat "$Q")"
[ -s "$TMP/work/ours/squeezenet/int8/cortex-a72.json" ] || die "no count result kept"

# 2. the report from known numbers (one model, every run, both CPUs): ratios and targets
W=$TMP/rep
for q in cortex-a53 cortex-a72; do
    if [ $q = cortex-a53 ]; then a=(cortex-a53 cortex-a55); else a=(cortex-a72); fi
    set_ms() { local d=$1 v=$2 s=(); for m in "${a[@]}"; do s+=("$m=$v"); done; fake "$d" $q "${s[@]}"; }
    set_ms "$W/ncnn-test/ncnn-squeezenet" 100
    set_ms "$W/ncnn-test/ncnn-squeezenet_int8" 80
    set_ms "$W/ours/squeezenet/fp32" 90
    set_ms "$W/ours/squeezenet/int8" 80
    set_ms "$W/ours/squeezenet/int7" 56
done
echo '{"commit": "abc", "ncnn_version": "test", "date": "today", "qemu": "q"}' >"$W/meta.json"
echo "the commands" >"$W/commands.txt"
python3 scripts/arm_model.py report --work "$W" --models squeezenet --ncnn-version test \
    --seed "$EQ_SHARED/docs/seed-tables.md" --meta "$W/meta.json" --commands "$W/commands.txt" \
    --out "$TMP/report.md" || die "report failed"
R=$TMP/report.md
# INT8/ncnn 1.00, INT7/ncnn 0.70, FP32/ncnn 0.90, INT7/INT8 0.70: all four targets met
want='| squeezenet | 100.0 | 80.0 | 90.0 | 80.0 | 56.0 | 1.00 | 0.70 | 0.90 | 0.70 | met · met · met · met |'
[ "$(grep -cF -- "$want" "$R")" = 3 ] || die "want 3 rows '$want': $(cat "$R")"
grep -qF "**Modeled cycles, not a measurement.**" "$R" || die "no modeled-cycles header"
grep -qF '0.67 (120/180 ms)' "$R" || die "no paper A53 ratio for squeezenet"
grep -qF '0.72 (57/79 ms)' "$R" || die "no paper A72 ratio for squeezenet"
grep -qF "| 1 | 50.0% | \`f+0x10\` |" "$R" || die "no hot block rows: $(cat "$R")"
echo "test-arm-model: passed (squeezenet int8, modeled A72: $ms ms)"
