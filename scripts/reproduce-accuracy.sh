#!/usr/bin/env bash
# Accuracy of the whole quantization pipeline on the real models (issue 5):
#   calibrate (KL, 8 and 7 bits) -> EasyQuant finetune -> quantize -> evaluate
# for SqueezeNet 1.1 and MobileNetV2 (ImageNet top-1/top-5 on imagenet_val1300) and
# MobileFaceNet (LFW pairs). Writes bench-results/accuracy.md (table, exact commands, wall
# time of every step). Calibration and finetuning never see an evaluation image.
#
# Env overrides (defaults = the issue's counts):
#   COUNT_CALIB  calibration images (of imagenet_sample1000_s256; of the LFW calibration half)  [1000]
#   COUNT_FT     finetune images (drawn with eq finetune's seed from the calibration list)   [50]
#   COUNT_EVAL   evaluation images of imagenet_val1300 (first N by name)                     [1300]
#   COUNT_LFW    evaluation pairs of the LFW evaluation half (first N)                       [all]
#   MODELS       subset of "squeezenet mobilenet_v2 mobilefacenet"
#   EQ_SHARED    shared data folder [/work/shared];  EQ  the eq binary [target/release/eq]
#   THREADS      worker threads [all cores];  OUT  output .md;  WORK  scratch folder
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SHARED=${EQ_SHARED:-/work/shared}
DATA=$SHARED/data
COUNT_CALIB=${COUNT_CALIB:-1000}
COUNT_FT=${COUNT_FT:-50}
COUNT_EVAL=${COUNT_EVAL:-1300}
COUNT_LFW=${COUNT_LFW:-0}
MODELS=${MODELS:-squeezenet mobilenet_v2 mobilefacenet}
THREADS=${THREADS:-$(nproc)}
OUT=${OUT:-$ROOT/bench-results/accuracy.md}
WORK=${WORK:-$ROOT/target/accuracy}
EQ=${EQ:-$ROOT/target/release/eq}

if [[ -z "${EQ_NO_BUILD:-}" ]]; then
    cargo build --release -p eq-tools >&2
fi
mkdir -p "$WORK"
LOG=$WORK/commands.log
: >"$LOG"
TIMES=$WORK/times.txt
: >"$TIMES"

# run LABEL CMD...: run, log the exact command, record its wall time in seconds.
run() {
    local label=$1
    shift
    echo "$*" >>"$LOG"
    echo "[$(date -u +%H:%M:%S)] $label: $*" >&2
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >"$WORK/$label.out" 2>&1 || {
        cat "$WORK/$label.out" >&2
        return 1
    }
    t1=$(date +%s.%N)
    printf '%s %.1f\n' "$label" "$(echo "$t1 - $t0" | bc)" >>"$TIMES"
}
seconds() { awk -v k="$1" '$1 == k { print $2 }' "$TIMES"; }
# json KEY FILE: a value of one of eq's flat JSON files (nothing when the key is missing).
json() {
    python3 -c 'import json, sys
v = json.load(open(sys.argv[2])).get(sys.argv[1])
print("" if v is None else v)' "$1" "$2"
}
pct() { awk -v v="$1" 'BEGIN { printf "%.2f", 100 * v }'; }

# Calibration list: COUNT_CALIB images spread evenly over the 1000 (one per class, sorted by
# wnid), so a reduced count still covers the class range. Finetune draws COUNT_FT of them at random.
CALIB_DIR=$DATA/images/imagenet_sample1000_s256/images
ls "$CALIB_DIR" | sort | awk -v n="$COUNT_CALIB" -v d="$CALIB_DIR" '
    { f[NR] = $0 } END { if (n > NR) n = NR; for (i = 0; i < n; i++) print d "/" f[int(i * NR / n) + 1] }' \
    >"$WORK/calib_imagenet.txt"
VAL=$DATA/images/imagenet_val1300
# Evaluation list: the first COUNT_EVAL val images by name.
ls "$VAL/images" | sort | head -n "$COUNT_EVAL" | sed "s|^|$VAL/images/|" >"$WORK/eval_imagenet.txt"

# LFW: the pairs come in folds of 300; odd lines (1st, 3rd, ...) are the calibration half and
# even lines the evaluation half, so both halves have positives and negatives of every fold.
# Calibration images: those of the calibration half that no evaluation pair uses.
LFW=$DATA/images/lfw_112x112_pairs
awk 'NR % 2 == 0' "$LFW/pairs.txt" >"$WORK/lfw_eval_all.txt"
if [[ $COUNT_LFW -gt 0 ]]; then head -n "$COUNT_LFW" "$WORK/lfw_eval_all.txt" >"$WORK/lfw_eval.txt"; else cp "$WORK/lfw_eval_all.txt" "$WORK/lfw_eval.txt"; fi
awk -F, '{ print $1; print $2 }' "$WORK/lfw_eval_all.txt" | sort -u >"$WORK/lfw_eval_images.txt"
awk -F, 'NR % 2 == 1 { print $1; print $2 }' "$LFW/pairs.txt" | sort -u |
    comm -23 - "$WORK/lfw_eval_images.txt" >"$WORK/lfw_calib_all.txt"
LFW_CALIB_AVAILABLE=$(wc -l <"$WORK/lfw_calib_all.txt")
awk -v n="$COUNT_CALIB" -v d="$LFW/images" '
    { f[NR] = $0 } END { if (n > NR) n = NR; for (i = 0; i < n; i++) print d "/" f[int(i * NR / n) + 1] }' \
    "$WORK/lfw_calib_all.txt" >"$WORK/calib_lfw.txt"

ROWS=$WORK/rows.md
: >"$ROWS"
PAIRED=$WORK/paired.md
: >"$PAIRED"

# paired A.json B.json: top-1 of B minus top-1 of A on the same images, in points, with a 95 %
# interval (normal approximation of the paired per-image differences), and how many images
# only A / only B gets right.
paired() {
    local a b
    a=$(json top1_per_image "$1")
    b=$(json top1_per_image "$2")
    awk -v a="$a" -v b="$b" 'BEGIN {
        n = 0; only_a = 0; only_b = 0
        for (i = 1; i <= length(a); i++) {
            x = substr(a, i, 1); y = substr(b, i, 1)
            if (x == "-" || y == "-") continue
            n++; only_a += (x == "1" && y == "0"); only_b += (x == "0" && y == "1")
        }
        d = (only_b - only_a) / n
        printf "%+.2f ± %.2f (%d / %d)", 100 * d, 196 * sqrt(((only_a + only_b) / n - d * d) / n), only_a, only_b
    }'
}
FT_ROWS=$WORK/ft_rows.md
: >"$FT_ROWS"
EQ_ROWS=$WORK/easyquant_rows.md
: >"$EQ_ROWS"

# pipeline NAME PARAM BIN PRESET KIND: the five rows of one model.
pipeline() {
    local name=$1 param=$2 bin=$3 preset=$4 kind=$5
    local w=$WORK/$name calib
    mkdir -p "$w"
    if [[ $kind == lfw ]]; then calib=$WORK/calib_lfw.txt; else calib=$WORK/calib_imagenet.txt; fi
    local common=(--preset "$preset" --threads "$THREADS")
    # evaluate LABEL PARAM BIN PRECISION
    evaluate() {
        if [[ $kind == lfw ]]; then
            run "$name-eval-$1" "$EQ" eval-lfw --param "$2" --bin "$3" --pairs "$WORK/lfw_eval.txt" \
                --root "$LFW/images" --preset "$preset" --threads "$THREADS" --precision "$4" \
                --json "$w/$1.json"
        else
            run "$name-eval-$1" "$EQ" eval --param "$2" --bin "$3" --list "$WORK/eval_imagenet.txt" \
                --labels "$VAL/labels.txt" "${common[@]}" --precision "$4" --json "$w/$1.json"
        fi
    }
    evaluate fp32 "$param" "$bin" fp32
    for bits in 8 7; do
        run "$name-calibrate-$bits" "$EQ" calibrate --param "$param" --bin "$bin" --list "$calib" \
            "${common[@]}" --method kl --bits "$bits" --out "$w/kl$bits.table"
        run "$name-finetune-$bits" "$EQ" finetune --param "$param" --bin "$bin" --table "$w/kl$bits.table" \
            --list "$calib" --samples "$COUNT_FT" --preset "$preset" \
            --bits "$bits" --out "$w/eq$bits.table"
        run "$name-finetune-ncnn-$bits" "$EQ" finetune --param "$param" --bin "$bin" --table "$w/kl$bits.table" \
            --list "$calib" --samples "$COUNT_FT" --preset "$preset" \
            --bits "$bits" --variant ncnn --out "$w/eqncnn$bits.table"
        for t in kl eq eqncnn; do
            run "$name-quantize-$t$bits" "$EQ" quantize --param "$param" --bin "$bin" --table "$w/$t$bits.table" \
                --bits "$bits" --out-param "$w/$t$bits.param" --out-bin "$w/$t$bits.bin"
            evaluate "$t$bits" "$w/$t$bits.param" "$w/$t$bits.bin" "int$bits"
        done
    done
    # The one-command job (issue 13): 7 bits, automatic mixed precision with the default budget
    # and cost model; its model evaluated like the others.
    run "$name-easyquant-mixed7" "$EQ" easyquant --param "$param" --bin "$bin" --list "$calib" \
        --samples "$COUNT_FT" --preset "$preset" --bits 7 --mixed auto --threads "$THREADS" \
        --out "$w/mixed7"
    evaluate mixed7 "$w/mixed7/model.param" "$w/mixed7/model.bin" auto
    local macs diff
    macs=$(pct "$(json int7_mac_fraction "$w/mixed7/summary.json")")
    if [[ $kind == lfw ]]; then
        diff=$(awk -v a="$(json accuracy "$w/fp32.json")" -v b="$(json accuracy "$w/mixed7.json")" \
            'BEGIN { printf "%+.2f", 100 * (b - a) }')
        echo "| $name | $(pct "$(json accuracy "$w/fp32.json")") | $(pct "$(json accuracy "$w/mixed7.json")") | $diff | $macs | $(seconds "$name-easyquant-mixed7") |" >>"$EQ_ROWS"
    else
        echo "| $name | $(pct "$(json top1 "$w/fp32.json")") | $(pct "$(json top1 "$w/mixed7.json")") | $(paired "$w/fp32.json" "$w/mixed7.json") | $macs | $(seconds "$name-easyquant-mixed7") |" >>"$EQ_ROWS"
    fi
    local label
    for label in fp32 kl8 eq8 eqncnn8 kl7 eq7 eqncnn7 mixed7; do
        local j=$w/$label.json desc
        case $label in
        fp32) desc=FP32 ;; kl8) desc=INT8-KL ;; eq8) desc=INT8-EQ ;; eqncnn8) desc="INT8-EQ (ncnn variant)" ;;
        kl7) desc=INT7-KL ;; eq7) desc=INT7-EQ ;; eqncnn7) desc="INT7-EQ (ncnn variant)" ;;
        mixed7) desc="INT7 mixed (\`eq easyquant --mixed auto\`)" ;;
        esac
        if [[ $kind == lfw ]]; then
            echo "| $name | $desc | $(pct "$(json accuracy "$j")") (10-fold) | $(pct "$(json best_threshold_accuracy "$j")") (best threshold) | $(json pairs "$j") pairs | $(seconds "$name-eval-$label") |" >>"$ROWS"
        else
            echo "| $name | $desc | $(pct "$(json top1 "$j")") | $(pct "$(json top5 "$j")") | $(json n "$j") images | $(seconds "$name-eval-$label") |" >>"$ROWS"
        fi
    done
    if [[ $kind != lfw ]]; then
        echo "| $name | $(paired "$w/kl8.json" "$w/eq8.json") | $(paired "$w/kl7.json" "$w/eq7.json") | $(paired "$w/kl8.json" "$w/eqncnn8.json") | $(paired "$w/kl7.json" "$w/eqncnn7.json") | $(paired "$w/fp32.json" "$w/eq8.json") | $(paired "$w/fp32.json" "$w/eq7.json") |" >>"$PAIRED"
    fi
    for bits in 8 7; do
        echo "| $name | $bits | $(seconds "$name-calibrate-$bits") | $(seconds "$name-finetune-$bits") | $(seconds "$name-finetune-ncnn-$bits") | $(seconds "$name-quantize-kl$bits") | $(seconds "$name-quantize-eq$bits") |" >>"$FT_ROWS"
    done
}

M=$DATA/models
T0=$(date +%s)
for model in $MODELS; do
    case $model in
    squeezenet) pipeline squeezenet_v1.1 "$M/squeezenet_v1.1/squeezenet_v1.1.param" \
        "$M/squeezenet_v1.1/squeezenet_v1.1.fp32.bin" squeezenet imagenet ;;
    mobilenet_v2) pipeline mobilenet_v2 "$M/mobilenet_v2/mobilenet_v2.param" \
        "$M/mobilenet_v2/mobilenet_v2.fp32.bin" mobilenet_v2 imagenet ;;
    mobilefacenet) pipeline mobilefacenet "$M/mobilefacenet/mobilefacenet.param" \
        "$M/mobilefacenet/mobilefacenet.bin" mobilefacenet lfw ;;
    *) echo "unknown model $model" >&2; exit 1 ;;
    esac
done
TOTAL=$(($(date +%s) - T0))

full="yes"
if [[ $COUNT_CALIB -lt 1000 || $COUNT_FT -lt 50 || $COUNT_EVAL -lt 1300 || $COUNT_LFW -gt 0 ]]; then
    full="NO: reduced counts, the issue's counts (1000 calibration, 50 finetune, 1300 evaluation images, all LFW evaluation pairs) were not reached"
fi
mkdir -p "$(dirname "$OUT")"
# A hand-written part of OUT above the "## Generated by the script" line is kept (the
# summary and investigations refer to the generated tables below it).
MARK="## Generated by the script"
KEPT=""
if [[ -f "$OUT" ]] && grep -qx "$MARK" "$OUT"; then
    KEPT=$(sed "/^$MARK\$/,\$d" "$OUT")
fi
{
    if [[ -n "$KEPT" ]]; then
        printf '%s\n' "$KEPT"
        echo "$MARK"
    else
        echo "# Accuracy: FP32 vs INT8/INT7, KL vs EasyQuant (EQ)"
    fi
    echo
    echo "Written by \`scripts/reproduce-accuracy.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -m), $(nproc) cores"
    echo "(shared with other jobs, so the times are upper bounds), $THREADS worker threads, commit $(git rev-parse --short HEAD)."
    echo
    echo "Counts used: COUNT_CALIB=$COUNT_CALIB, COUNT_FT=$COUNT_FT, COUNT_EVAL=$COUNT_EVAL, COUNT_LFW=${COUNT_LFW/#0/all}."
    echo "Issue's full counts reached: $full."
    echo
    echo "- ImageNet models: calibration images = $(wc -l <"$WORK/calib_imagenet.txt") of imagenet_sample1000_s256"
    echo "  (spread evenly over the name-sorted 1000, one per class), finetune = $COUNT_FT of those drawn at random (seed 0);"
    echo "  evaluation = the first $(wc -l <"$WORK/eval_imagenet.txt") of imagenet_val1300 (by name). The sets are disjoint"
    echo "  (different source repositories; val images are ILSVRC2012_val_*)."
    echo "- MobileFaceNet: pairs.txt split by line: odd lines (1st, 3rd, …) = calibration half, even lines ="
    echo "  evaluation half ($(wc -l <"$WORK/lfw_eval_all.txt") pairs; $(wc -l <"$WORK/lfw_eval.txt") evaluated). Calibration images = images of the"
    echo "  calibration half that no evaluation pair uses ($LFW_CALIB_AVAILABLE available, $(wc -l <"$WORK/calib_lfw.txt") used, spread evenly);"
    echo "  finetune = $COUNT_FT of those drawn at random (seed 0). No evaluation image is used for calibration or finetuning."
    echo "- INT8-KL / INT7-KL: \`eq calibrate --method kl --bits 8|7\`; INT8-EQ / INT7-EQ: \`eq finetune\` on that table"
    echo "  (the paper's Algorithm 1; defaults alpha 0.5, beta 2, 100 steps, 1 round); \"ncnn variant\": \`eq finetune --variant ncnn\`"
    echo "  (ncnn2table's eq: FP32 input to each layer, ncnn's grid and rules). Evaluated with the runtime's real INT8/INT7 kernels"
    echo "  (\`--precision int8|int7\`); FP32 with \`--precision fp32\`."
    echo
    echo "## Results"
    echo
    echo "| model | precision | top-1 % / LFW acc % | top-5 % / LFW best-thr % | n | eval s |"
    echo "|---|---|---|---|---|---|"
    cat "$ROWS"
    echo
    echo "SqueezeNet/MobileNetV2 on the imagenet_val1300 subset, which is easier than the full val set"
    echo "(see data/SOURCES.md): compare the rows with each other, not with published accuracy."
    echo
    if [[ -s $PAIRED ]]; then
        echo "### Paired top-1 differences (points, same images)"
        echo
        echo "B − A ± 95 % interval (images only A / only B gets right). An interval that contains 0"
        echo "is no evidence of a difference."
        echo
        echo "| model | EQ − KL, INT8 | EQ − KL, INT7 | EQ(ncnn) − KL, INT8 | EQ(ncnn) − KL, INT7 | EQ − FP32, INT8 | EQ − FP32, INT7 |"
        echo "|---|---|---|---|---|---|---|"
        cat "$PAIRED"
        echo
    fi
    echo "## Wall time of the quantization steps (seconds)"
    echo
    echo "| model | bits | calibrate (KL) | finetune (EQ, $COUNT_FT images) | finetune (ncnn variant) | quantize KL | quantize EQ |"
    echo "|---|---|---|---|---|---|---|"
    cat "$FT_ROWS"
    echo
    sq=$(seconds squeezenet_v1.1-finetune-7 || true)
    if [[ -n $sq ]]; then
        verdict=$(awk -v s="$sq" 'BEGIN { print (s < 60 ? "meets" : "misses") }')
        echo "Required record: SqueezeNet 1.1, 7-bit finetune on $COUNT_FT images: **${sq} s** ($verdict the < 60 s target on 2 cores)."
        echo
    fi
    if [[ -s $EQ_ROWS ]]; then
        echo "## \`eq easyquant --bits 7 --mixed auto\` (one command, default budget, \`--cost a72\`)"
        echo
        echo "KL calibration, EasyQuant finetune on $COUNT_FT of the calibration images, precision search on"
        echo "held-out calibration images, quantization; evaluated as the rows above. Targets (issue 13):"
        echo "within 0.3 pt of FP32 with ≥ 80 % of the convolution MACs in INT7; < 2 min for SqueezeNet"
        echo "with 1000 calibration and 50 finetune images on 2 cores."
        echo
        echo "| model | FP32 % | mixed INT7 % | difference (points; ± 95 %, only FP32 / only mixed right) | conv MACs in INT7 % | wall s |"
        echo "|---|---|---|---|---|---|"
        cat "$EQ_ROWS"
        echo
    fi
    echo "Total wall time: ${TOTAL} s."
    echo
    echo "## Exact commands"
    echo
    echo "Re-run everything: \`MODELS=\"$MODELS\" COUNT_CALIB=$COUNT_CALIB COUNT_FT=$COUNT_FT COUNT_EVAL=$COUNT_EVAL COUNT_LFW=$COUNT_LFW scripts/reproduce-accuracy.sh\`."
    echo "The lists (calib_imagenet.txt, eval_imagenet.txt, calib_lfw.txt, lfw_eval.txt) are written by the script to \`WORK\`"
    echo "(here \`${WORK#"$ROOT"/}\`)."
    echo
    echo '```'
    sed "s|$ROOT/||g" "$LOG"
    echo '```'
} >"$OUT"
echo "wrote $OUT" >&2
