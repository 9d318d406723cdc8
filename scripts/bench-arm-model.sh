#!/usr/bin/env bash
# ncnn vs this runtime on modeled Cortex-A53 / Cortex-A72 cores, with the armcycles tool
# ($EQ_SHARED/tools/armcycles, or $ARMCYCLES; read its README): each program runs under
# qemu-aarch64 -cpu cortex-a53 / cortex-a72 with a block-counting plugin and llvm-mca times
# the hot blocks. Modeled cycles with no memory system, not a measurement.
#
# Full run: every model, ncnn fp32 and int8, our FP32, INT8 and INT7, one steady-state
# inference at 1 thread (= (--loops 3 - --loops 1) / 2, no warm-up), on the A53 run (timed
# with LLVM's A53 and A55 models) and the A72 run; writes a markdown report:
#
#   scripts/bench-arm-model.sh [--models squeezenet,mobilenet,resnet50,vgg16,mobilenet_v2]
#                              [--out bench-results/arm-model.md] [--work DIR]
#
# Quick run, one model and precision, printed (a file only with --out):
#
#   scripts/bench-arm-model.sh --quick MODEL fp32|int8|int7|ncnn-fp32|ncnn-int8
#                              [--cpu a53|a72|both] [--out FILE] [--work DIR]
#
# Our precisions print the ratio against the cached ncnn result of that model (fp32 against
# ncnn fp32, int8/int7 against ncnn int8) and never run ncnn; `--quick MODEL ncnn-int8`
# fills the cache once. Other options:
#   --cpu a53|a72|both     CPU runs (default both; the full report wants both)
#   --top N                hot blocks listed per run (default 8)
#   --ncnn-from DIR        reuse results of `ncnn-bench.sh --out DIR` (DIR/ncnn-NAME/*.json)
#                          for the cache, e.g. a run started by hand; taken as this ncnn
#                          version's
#
# Work dir (default target/arm-model): ours/MODEL/PRECISION/ (count.sh --out of the last
# run of ours), ncnn-VERSION/ncnn-NAME/ (the ncnn cache: ncnn is deterministic, so a result
# is kept per model, precision and ncnn version), eq-bench (the binary counted), commands.txt (quick-commands.txt).
# NCNN_VERSION and ARMCYCLES_CACHE are passed on to armcycles. Counts run under nice -n 19,
# one at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

die() { echo "bench-arm-model: $*" >&2; exit 1; }
log() { echo "bench-arm-model: $*" >&2; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

ARGV=("$@")
MODELS=squeezenet,mobilenet,resnet50,vgg16,mobilenet_v2
OUT="" WORK=target/arm-model QUICK=0 QMODEL="" QPREC="" CPU=both TOP=8 NCNN_FROM=""
while [ $# -gt 0 ]; do
    case $1 in
        -h|--help) usage; exit 0 ;;
        --quick)
            [ $# -ge 3 ] || die "--quick needs MODEL and PRECISION"
            QUICK=1 QMODEL=$2 QPREC=$3; shift 3; continue ;;
    esac
    [ $# -ge 2 ] || die "$1 needs a value (see --help)"
    case $1 in
        --models) MODELS=$2 ;;
        --out) OUT=$2 ;;
        --work) WORK=$2 ;;
        --cpu) CPU=$2 ;;
        --top) TOP=$2 ;;
        --ncnn-from) NCNN_FROM=$2 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift 2
done
case $CPU in
    a53) SPECS=cortex-a53:cortex-a53+cortex-a55 ;;
    a72) SPECS=cortex-a72 ;;
    both) SPECS=cortex-a53:cortex-a53+cortex-a55,cortex-a72 ;;
    *) die "--cpu must be a53, a72 or both, not '$CPU'" ;;
esac
[[ $TOP =~ ^[0-9]+$ ]] || die "--top needs a number"
if [ "$QUICK" = 1 ]; then
    case $QPREC in
        fp32|int8|int7|ncnn-fp32|ncnn-int8) ;;
        *) die "quick PRECISION must be fp32, int8, int7, ncnn-fp32 or ncnn-int8, not '$QPREC'" ;;
    esac
    MODELS=$QMODEL
elif [ -z "$OUT" ]; then
    OUT=bench-results/arm-model.md
fi

# --- shared data, armcycles, tools
EQ_SHARED=${EQ_SHARED:-$(cd .. && pwd)/shared}
ARMCYCLES=${ARMCYCLES:-$EQ_SHARED/tools/armcycles}
MODELS_DIR=$EQ_SHARED/models/ncnn-benchmark
SEED=$EQ_SHARED/docs/seed-tables.md
for f in count.sh ncnn-bench.sh estimate.py README.md; do
    [ -e "$ARMCYCLES/$f" ] || die "armcycles not found: no $ARMCYCLES/$f (set ARMCYCLES, or EQ_SHARED; default ../shared/tools/armcycles)"
done
[ -d "$MODELS_DIR" ] || die "no benchmark models at $MODELS_DIR (set EQ_SHARED)"
command -v qemu-aarch64 >/dev/null || die "qemu-aarch64 missing: run $ARMCYCLES/build.sh (and scripts/setup-cross.sh)"
command -v python3 >/dev/null || die "python3 missing"
case $REPO/$WORK$MODELS_DIR in *" "*) die "paths with spaces are not supported (count.sh splits --base-args on spaces)" ;; esac
ARMCYCLES_CACHE=${ARMCYCLES_CACHE:-$HOME/.cache/armcycles}
# shellcheck disable=SC2016 # the sed pattern matches a literal ${...}
NCNN_VERSION=${NCNN_VERSION:-$(sed -n 's/^NCNN_VERSION=\${NCNN_VERSION:-\([^}]*\)}$/\1/p' "$ARMCYCLES/ncnn-bench.sh")}
[ -n "$NCNN_VERSION" ] || die "cannot tell the ncnn version from $ARMCYCLES/ncnn-bench.sh; set NCNN_VERSION"
export ARMCYCLES_CACHE NCNN_VERSION

IFS=, read -r -a MODEL_LIST <<<"$MODELS"
[ ${#MODEL_LIST[@]} -gt 0 ] || die "no models given"
for m in "${MODEL_LIST[@]}"; do
    [ -f "$MODELS_DIR/$m.param" ] || die "no model $m: $MODELS_DIR/$m.param missing"
done

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
NCNN_DIR=$WORK/ncnn-$NCNN_VERSION
HELPER=$REPO/scripts/arm_model.py
CMDS=$WORK/commands.txt
[ "$QUICK" = 1 ] && CMDS=$WORK/quick-commands.txt
IFS=, read -r -a SPEC_LIST <<<"$SPECS"

{
    echo "# $(date -u +%FT%TZ), in $REPO"
    echo "scripts/bench-arm-model.sh ${ARGV[*]}"
    echo "EQ_SHARED=$EQ_SHARED ARMCYCLES=$ARMCYCLES M=$MODELS_DIR NCNN_VERSION=$NCNN_VERSION"
} >"$CMDS"

# --- our binary
build_ours() {
    local target=aarch64-unknown-linux-gnu
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
    # A copy: a rebuild during a long run must not change the binary between two counts.
    cp "${CARGO_TARGET_DIR:-target}/$target/release/eq-bench" "$WORK/eq-bench"
    BIN=$WORK/eq-bench
    COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
        COMMIT="$COMMIT-dirty"
    fi
    {
        echo "cargo build --release -p eq-bench --bin eq-bench --target $target   # commit $COMMIT"
        echo "BIN=$BIN   # a copy of ${CARGO_TARGET_DIR:-target}/$target/release/eq-bench"
    } >>"$CMDS"
}

# param file and whether eq-bench runs it with synthetic scales
our_param() { # MODEL PRECISION
    if [ "$2" != fp32 ] && [ -f "$MODELS_DIR/${1}_int8.param" ]; then
        echo "${1}_int8.param"
    else
        echo "$1.param"
    fi
}

run_ours() { # MODEL PRECISION -> WORK/ours/MODEL/PRECISION
    local model=$1 prec=$2 dir=$WORK/ours/$1/$2 param args
    param=$(our_param "$model" "$prec")
    args="--model $MODELS_DIR/$param --precision $prec --threads 1 --warmup 0"
    mkdir -p "$dir"
    rm -f "$dir"/*.json
    log "ours $model $prec ($param) under ${SPECS//,/ and }"
    echo "nice -n 19 \$ARMCYCLES/count.sh --cpus $SPECS --label 'ours $model $prec' --top 20 --out $dir --base-args '${args//"$MODELS_DIR"/\$M} --loops 1' --scale 0.5 -- \$BIN ${args//"$MODELS_DIR"/\$M} --loops 3" >>"$CMDS"
    # shellcheck disable=SC2086 # args is a word list without spaces in its words
    nice -n 19 "$ARMCYCLES/count.sh" --cpus "$SPECS" --label "ours $model $prec" --top 20 \
        --out "$dir" --base-args "$args --loops 1" --scale 0.5 -- "$BIN" $args --loops 3 \
        >"$dir/count.log" 2>&1 || { tail -n 30 "$dir/count.log" >&2; die "count.sh failed for ours $model $prec (log: $dir/count.log)"; }
    for spec in "${SPEC_LIST[@]}"; do
        python3 "$HELPER" valid "$dir" "$spec" || die "no usable result for $spec in $dir (see count.log)"
    done
    grep -E 'cycles est\.' "$dir/count.log" | sed 's/^/    /' >&2 || true
}

# The ncnn cache: NCNN_DIR/ncnn-NAME/QCPU.json, NAME = MODEL or MODEL_int8. Fills missing
# CPU runs from --ncnn-from, then (unless $2 = cached-only) by running ncnn-bench.sh.
ncnn_result() { # NAME [cached-only]
    local name=$1 dir=$NCNN_DIR/ncnn-$1 missing=() spec q f
    mkdir -p "$dir"
    for spec in "${SPEC_LIST[@]}"; do
        q=${spec%%:*}
        python3 "$HELPER" valid "$dir" "$spec" && continue
        if [ -n "$NCNN_FROM" ] && python3 "$HELPER" valid "$NCNN_FROM/ncnn-$name" "$spec"; then
            for f in "$q.json" "$q.run.log" "$q.base.log"; do
                [ -e "$NCNN_FROM/ncnn-$name/$f" ] && cp "$NCNN_FROM/ncnn-$name/$f" "$dir/"
            done
            echo "$q: imported from $NCNN_FROM/ncnn-$name (ncnn-bench.sh --out $NCNN_FROM ... $name)" >>"$dir/command.txt"
            log "ncnn $name $q: imported from $NCNN_FROM"
            continue
        fi
        missing+=("$spec")
    done
    if [ ${#missing[@]} -gt 0 ] && [ "${2:-}" != cached-only ]; then
        local cpus lib
        cpus=$(IFS=,; echo "${missing[*]}")
        lib=$ARMCYCLES_CACHE/build-ncnn-$NCNN_VERSION-a64/src/libncnn.a
        # Never a second ncnn build next to one already running.
        while [ ! -e "$lib" ] && pgrep -f 'ncnn-bench\.sh' >/dev/null; do
            log "another ncnn-bench.sh is running and ncnn is not built yet: waiting for it"
            sleep 60
        done
        log "ncnn $name under ${cpus//,/ and } (not cached)"
        echo "$(date -u +%FT%TZ) nice -n 19 \$ARMCYCLES/ncnn-bench.sh --cpus $cpus --top 20 --out $NCNN_DIR \$M/$name.param" >>"$dir/command.txt"
        nice -n 19 "$ARMCYCLES/ncnn-bench.sh" --cpus "$cpus" --top 20 --out "$NCNN_DIR" \
            "$MODELS_DIR/$name.param" >"$dir/ncnn-bench.log" 2>&1 \
            || { tail -n 30 "$dir/ncnn-bench.log" >&2; die "ncnn-bench.sh failed for $name (log: $dir/ncnn-bench.log)"; }
        for spec in "${missing[@]}"; do
            python3 "$HELPER" valid "$dir" "$spec" || die "ncnn-bench.sh left no usable result for $spec in $dir"
        done
        grep -E 'cycles est\.' "$dir/ncnn-bench.log" | sed 's/^/    /' >&2 || true
    fi
    if [ -e "$dir/command.txt" ]; then
        sed "s/^/# ncnn $name: /" "$dir/command.txt" >>"$CMDS"
    fi
}

# --- quick mode
if [ "$QUICK" = 1 ]; then
    case $QPREC in
        ncnn-fp32|ncnn-int8)
            name=$QMODEL
            if [ "$QPREC" = ncnn-int8 ]; then
                [ -f "$MODELS_DIR/${QMODEL}_int8.param" ] || die "ncnn-benchmark has no ${QMODEL}_int8.param"
                name=${QMODEL}_int8
            fi
            ncnn_result "$name"
            exec python3 "$HELPER" quick --ncnn "$NCNN_DIR/ncnn-$name" --model "$QMODEL" \
                --precision "$QPREC" --what "$name.param, ncnn $NCNN_VERSION (cached in $NCNN_DIR)" \
                --cpus "$SPECS" --top "$TOP" ${OUT:+--out "$OUT"}
            ;;
    esac
    build_ours
    param=$(our_param "$QMODEL" "$QPREC")
    what="$param --precision $QPREC, commit $COMMIT"
    [ "$QPREC" != fp32 ] && [ "$param" = "$QMODEL.param" ] && what="$what (fp32 param: synthetic scales)"
    ref=$QMODEL no_ref=""
    if [ "$QPREC" != fp32 ]; then
        ref=${QMODEL}_int8
        [ -f "$MODELS_DIR/$ref.param" ] || no_ref="ncnn-benchmark has no $ref.param"
    fi
    [ -n "$no_ref" ] || ncnn_result "$ref" cached-only
    [ -n "$no_ref" ] || no_ref="not cached: run --quick $QMODEL ncnn-${QPREC/int7/int8} once"
    run_ours "$QMODEL" "$QPREC"
    python3 "$HELPER" quick --ours "$WORK/ours/$QMODEL/$QPREC" --ncnn "$NCNN_DIR/ncnn-$ref" \
        --no-ref "$no_ref" --model "$QMODEL" --precision "$QPREC" --what "$what" \
        --cpus "$SPECS" --top "$TOP" ${OUT:+--out "$OUT"}
    exit
fi

# --- full run
build_ours
synthetic=() no_int8=()
for m in "${MODEL_LIST[@]}"; do
    ncnn_result "$m"
    if [ -f "$MODELS_DIR/${m}_int8.param" ]; then
        ncnn_result "${m}_int8"
    else
        synthetic+=("$m") no_int8+=("$m")
    fi
    for p in fp32 int8 int7; do
        run_ours "$m" "$p"
    done
done

qemu_version=$(qemu-aarch64 --version | head -n1)
python3 - "$WORK/meta.json" "$COMMIT" "$NCNN_VERSION" "$(date -u '+%F %H:%M UTC')" "$qemu_version" <<'EOF'
import json, sys
p, commit, ncnn, date, qemu = sys.argv[1:]
json.dump({"commit": commit, "ncnn_version": ncnn, "date": date, "qemu": qemu}, open(p, "w"))
EOF
python3 "$HELPER" report --work "$WORK" --models "$MODELS" --ncnn-version "$NCNN_VERSION" \
    --synthetic "$(IFS=,; echo "${synthetic[*]}")" --no-ncnn-int8 "$(IFS=,; echo "${no_int8[*]}")" \
    --seed "$SEED" --meta "$WORK/meta.json" --commands "$CMDS" --top "$TOP" --out "$OUT"
log "wrote $OUT"
