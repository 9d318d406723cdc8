#!/usr/bin/env bash
# Per-layer latency model of the RK3399 cores for `eq easyquant --cost a53|a72`: times
# single-layer models with the armcycles tool ($EQ_SHARED/tools/armcycles, or $ARMCYCLES;
# read its README) and fits, per core, layer class and precision (scripts/arm_cost_fit.py),
#     cycles = fixed_cycles + cycles_per_mac * MACs
#              + cycles_per_output * output elements + cycles_per_input * input elements
# (the last two for convolutions only) into a TOML file that host-tools embeds
# (host-tools/src/cost_model.rs).
#
#   scripts/arm-cost-model.sh [--out targets/costs/rk3399.toml] [--work DIR] [--classes LIST]
#
# Each benchmark model is an Input plus one layer of a class (conv1x1, conv3x3s1, conv3x3s2,
# dw3x3s1, dw3x3s2, innerproduct) at a few realistic shapes, written here as .param text and
# run by eq-bench with zero weights (no --bin); `--precision int8|int7` quantizes with
# synthetic scales. One steady-state inference at 1 thread = (--loops 3 - --loops 1) / 2, as
# scripts/bench-arm-model.sh counts, under qemu -cpu cortex-a53 (timed with LLVM's A53 and
# A55 models) and -cpu cortex-a72. An Input-only model of the same input shape is counted
# too and subtracted, so the fit sees the layer alone. Modeled cycles with no memory
# system, not a measurement.
#
# The core `a53` in the output uses the A55-model timing (LLVM's A53 model serialises
# write-back; see the armcycles README), `a53-mca-a53` keeps the A53-model timing for
# reference; `a72` is the A72 run.
#
# Work dir (default target/arm-cost-model): eq-bench (the binary counted), params/,
# runs-BINHASH/NAME/PREC/ (count.sh --out; reused when the same binary is rerun, so an
# interrupted run resumes), points.json, commands.txt. Counts run under nice -n 19, one at
# a time.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

die() { echo "arm-cost-model: $*" >&2; exit 1; }
log() { echo "arm-cost-model: $(date -u +%T) $*" >&2; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

ARGV=("$@")
OUT=targets/costs/rk3399.toml WORK=target/arm-cost-model
CLASSES=conv1x1,conv3x3s1,conv3x3s2,dw3x3s1,dw3x3s2,innerproduct
while [ $# -gt 0 ]; do
    case $1 in
        -h|--help) usage; exit 0 ;;
    esac
    [ $# -ge 2 ] || die "$1 needs a value (see --help)"
    case $1 in
        --out) OUT=$2 ;;
        --work) WORK=$2 ;;
        --classes) CLASSES=$2 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift 2
done

EQ_SHARED=${EQ_SHARED:-$(cd .. && pwd)/shared}
ARMCYCLES=${ARMCYCLES:-$EQ_SHARED/tools/armcycles}
[ -e "$ARMCYCLES/count.sh" ] || die "armcycles not found: no $ARMCYCLES/count.sh (set ARMCYCLES or EQ_SHARED)"
command -v qemu-aarch64 >/dev/null || die "qemu-aarch64 missing: run $ARMCYCLES/build.sh"
command -v python3 >/dev/null || die "python3 missing"
SPECS=cortex-a53:cortex-a53+cortex-a55,cortex-a72
START=$(date +%s)

mkdir -p "$WORK/params"
WORK=$(cd "$WORK" && pwd)
case $WORK in *" "*) die "paths with spaces are not supported (count.sh splits --base-args on spaces)" ;; esac
CMDS=$WORK/commands.txt
{
    echo "# $(date -u +%FT%TZ), in $REPO"
    echo "scripts/arm-cost-model.sh ${ARGV[*]}"
} >"$CMDS"

# --- the binary, built as scripts/bench-arm-model.sh builds it
target=aarch64-unknown-linux-gnu
if [ -z "${RUSTC:-}" ] && [ ! -d "$(rustc --print sysroot)/lib/rustlib/$target/lib" ]; then
    if [ -x /usr/bin/rustc ] && [ -d "$(/usr/bin/rustc --print sysroot)/lib/rustlib/$target/lib" ]; then
        export RUSTC=/usr/bin/rustc
    else
        die "no Rust standard library for $target; run scripts/setup-cross.sh"
    fi
fi
log "building eq-bench for $target"
nice -n 19 cargo build --release -q -p eq-bench --bin eq-bench --target "$target" \
    2> >(grep -v cdylib >&2) || die "cargo build failed"
# A copy: a rebuild during the run must not change the binary between two counts.
cp "${CARGO_TARGET_DIR:-target}/$target/release/eq-bench" "$WORK/eq-bench"
BIN=$WORK/eq-bench
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
# Only runtime/ and bench/ change what is counted.
if [ -n "$(git status --porcelain --untracked-files=no -- runtime bench 2>/dev/null)" ]; then
    COMMIT="$COMMIT-dirty"
fi
HASH=$(sha256sum "$BIN" | cut -c1-12)
RUNS=$WORK/runs-$HASH
echo "cargo build --release -p eq-bench --bin eq-bench --target $target   # commit $COMMIT, sha256 $HASH" >>"$CMDS"

# --- benchmark models: NAME CLASS W H C OUT (OUT = num_output; unused for depthwise)
# Several sizes per class, spread in MACs so the fit separates the fixed cost from the
# per-MAC cost; shapes as in SqueezeNet v1.1 (fire modules, conv1, conv10), MobileNet
# (depthwise stages, conv1) and ResNet stages.
SHAPES="
conv1x1      14 14 64  64
conv1x1      56 56 64  64
conv1x1      28 28 128 256
conv1x1      14 14 256 256
conv1x1      7 7 512 512
conv1x1      55 55 64  16
conv1x1      55 55 16  64
conv1x1      27 27 32  128
conv1x1      13 13 64  256
conv1x1      13 13 512 1000
conv3x3s1    14 14 64  64
conv3x3s1    28 28 64  64
conv3x3s1    56 56 64  64
conv3x3s1    14 14 256 256
conv3x3s1    55 55 16  64
conv3x3s1    27 27 32  128
conv3x3s1    13 13 48  192
conv3x3s1    13 13 64  256
conv3x3s2    14 14 64  64
conv3x3s2    56 56 64  128
conv3x3s2    28 28 128 256
conv3x3s2    227 227 3 64
conv3x3s2    224 224 3 32
conv3x3s2    112 112 32 64
conv3x3s2    28 28 64  128
dw3x3s1      7 7 1024 0
dw3x3s1      14 14 256 0
dw3x3s1      14 14 512 0
dw3x3s1      28 28 128 0
dw3x3s1      56 56 64  0
dw3x3s1      112 112 32 0
dw3x3s2      14 14 512 0
dw3x3s2      28 28 128 0
dw3x3s2      56 56 64  0
dw3x3s2      112 112 32 0
innerproduct 1 1 256  128
innerproduct 1 1 512  1000
innerproduct 1 1 1024 1000
innerproduct 1 1 2048 1000
"

write_param() { # FILE CLASS W H C OUT
    local f=$1 class=$2 w=$3 h=$4 c=$5 o=$6 layer
    case $class in
        conv1x1) layer="Convolution conv 1 1 data out 0=$o 1=1 3=1 4=0 5=1 6=$((c * o)) 9=1" ;;
        conv3x3s1) layer="Convolution conv 1 1 data out 0=$o 1=3 3=1 4=1 5=1 6=$((c * o * 9)) 9=1" ;;
        conv3x3s2) layer="Convolution conv 1 1 data out 0=$o 1=3 3=2 4=1 5=1 6=$((c * o * 9)) 9=1" ;;
        dw3x3s1) layer="ConvolutionDepthWise conv 1 1 data out 0=$c 1=3 3=1 4=1 5=1 6=$((c * 9)) 7=$c 9=1" ;;
        dw3x3s2) layer="ConvolutionDepthWise conv 1 1 data out 0=$c 1=3 3=2 4=1 5=1 6=$((c * 9)) 7=$c 9=1" ;;
        innerproduct) layer="InnerProduct fc 1 1 data out 0=$o 1=1 2=$((c * w * h * o))" ;;
        input) layer="" ;;
        *) die "unknown class $class" ;;
    esac
    if [ -z "$layer" ]; then
        printf '7767517\n1 1\nInput data 0 1 data 0=%s 1=%s 2=%s\n' "$w" "$h" "$c" >"$f"
    else
        printf '7767517\n2 2\nInput data 0 1 data 0=%s 1=%s 2=%s\n%s\n' "$w" "$h" "$c" "$layer" >"$f"
    fi
}

count() { # NAME PRECISION -> RUNS/NAME/PRECISION
    local name=$1 prec=$2 dir=$RUNS/$1/$2 args
    if [ -f "$dir/cortex-a53.json" ] && [ -f "$dir/cortex-a72.json" ]; then
        return 0
    fi
    args="--model $WORK/params/$name.param --precision $prec --threads 1 --warmup 0"
    mkdir -p "$dir"
    rm -f "$dir"/*.json
    log "$name $prec"
    echo "nice -n 19 \$ARMCYCLES/count.sh --cpus $SPECS --label '$name $prec' --out $dir --base-args '$args --loops 1' --scale 0.5 -- \$BIN $args --loops 3" >>"$CMDS"
    # shellcheck disable=SC2086 # args is a word list without spaces in its words
    nice -n 19 "$ARMCYCLES/count.sh" --cpus "$SPECS" --label "$name $prec" --top 5 \
        --out "$dir" --base-args "$args --loops 1" --scale 0.5 -- "$BIN" $args --loops 3 \
        >"$dir/count.log" 2>&1 || { tail -n 30 "$dir/count.log" >&2; die "count.sh failed for $name $prec (log: $dir/count.log)"; }
}

IFS=, read -r -a CLASS_LIST <<<"$CLASSES"
POINTS=$WORK/points.tsv
: >"$POINTS"
declare -A INPUTS=()
while read -r class w h c o; do
    [ -n "$class" ] || continue
    [[ ",$CLASSES," == *",$class,"* ]] || continue
    name=$class-${w}x${h}x$c-$o
    write_param "$WORK/params/$name.param" "$class" "$w" "$h" "$c" "$o"
    base=input-${w}x${h}x$c
    if [ -z "${INPUTS[$base]:-}" ]; then
        write_param "$WORK/params/$base.param" input "$w" "$h" "$c" 0
        count "$base" fp32
        INPUTS[$base]=1
    fi
    for prec in fp32 int8 int7; do
        count "$name" "$prec"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$class" "$w" "$h" "$c" "$o" "$prec" \
            "$RUNS/$name/$prec" "$RUNS/$base/fp32" "$name" >>"$POINTS"
    done
done <<<"$SHAPES"

ELAPSED=$(($(date +%s) - START))
python3 "$REPO/scripts/arm_cost_fit.py" --points "$POINTS" --out "$OUT" --commit "$COMMIT" \
    --date "$(date -u '+%F %H:%M UTC')" --elapsed "$ELAPSED" --binary-hash "$HASH"
log "wrote $OUT in ${ELAPSED} s of counting"
