#!/usr/bin/env bash
# Benchmarks the runtime on an RK3399 board over ssh and writes the seed paper's latency
# tables: cross-builds eq-bench (static aarch64), writes the benchmark models (`eq zoo`),
# copies both to the board, runs fp32/int8/int7 on the big cluster (1 and 2 threads) and the
# little cluster (1 and 4 threads), fetches the JSON and writes bench-results/rk3399-<date>.md.
#
#   scripts/deploy-rk3399.sh user@board [--cluster big|little|both] [--port N] [--models DIR]
#       [--model NAME[,NAME...]] [--loops N] [--warmup N] [--cooldown S] [--target T.toml]
#       [--out FILE]
#
#   --cluster   which clusters to run, default both
#   --port      ssh port, default 22
#   --models    directory of .param files to use instead of writing the zoo
#   --model     zoo models to write and run, default all eight
#   --loops, --warmup, --cooldown   passed to eq-bench (defaults 8, 2, 5 s)
#   --target    board description copied along, default targets/rk3399.toml (CPUs 0-3
#               little, 4-5 big)
#   --out       the report, default bench-results/rk3399-<date>.md (JSON and logs beside it)
#
# Environment: EQ_SSH_OPTS extra options for ssh and scp (e.g. "-i key"); EQ_DEPLOY_DIR the
# directory on the board (default eq-bench, under the remote home). EQ_DEPLOY_RUNNER is for
# scripts/test-deploy.sh only: a command put before ./eq-bench on the remote side (qemu-user
# when the "board" is this machine); leave it unset on a real board.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "deploy-rk3399: $*" >&2; exit 1; }
log() { echo "deploy-rk3399: $*" >&2; }

[ $# -ge 1 ] && [[ "$1" != --* ]] || die "usage: scripts/deploy-rk3399.sh user@host [--cluster big|little|both] [--port N] [--models DIR] (see the script header)"
HOST=$1
shift
CLUSTER=both PORT=22 MODELS_DIR="" MODEL_NAMES="" LOOPS=8 WARMUP=2 COOLDOWN=5
TARGET_FILE=targets/rk3399.toml OUT=""
while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || die "$1 needs a value"
    case $1 in
        --cluster) CLUSTER=$2 ;;
        --port) PORT=$2 ;;
        --models) MODELS_DIR=$2 ;;
        --model) MODEL_NAMES=$2 ;;
        --loops) LOOPS=$2 ;;
        --warmup) WARMUP=$2 ;;
        --cooldown) COOLDOWN=$2 ;;
        --target) TARGET_FILE=$2 ;;
        --out) OUT=$2 ;;
        *) die "unknown option $1" ;;
    esac
    shift 2
done
case $CLUSTER in
    both) CLUSTERS=(big little) ;;
    big | little) CLUSTERS=("$CLUSTER") ;;
    *) die "--cluster: expected big, little or both, got $CLUSTER" ;;
esac
[[ "$PORT" =~ ^[0-9]+$ ]] || die "--port: not a number: $PORT"
[ -f "$TARGET_FILE" ] || die "--target: no such file: $TARGET_FILE"
DATE=$(date -u +%Y-%m-%d)
OUT=${OUT:-bench-results/rk3399-$DATE.md}
mkdir -p "$(dirname "$OUT")"
STEM=${OUT%.md}

# 1. eq-bench for the board: static aarch64 (.cargo/config.toml), with the rustc that has
# the aarch64 standard library (rustup's, else Debian's; scripts/setup-cross.sh).
TARGET=aarch64-unknown-linux-gnu
if [ -z "${RUSTC:-}" ] && [ ! -d "$(rustc --print sysroot)/lib/rustlib/$TARGET/lib" ]; then
    if [ -x /usr/bin/rustc ] && [ -d "$(/usr/bin/rustc --print sysroot)/lib/rustlib/$TARGET/lib" ]; then
        export RUSTC=/usr/bin/rustc
    else
        die "no Rust standard library for $TARGET; run scripts/setup-cross.sh"
    fi
fi
log "building eq-bench for $TARGET"
cargo build --release -q -p eq-bench --bin eq-bench --target "$TARGET"
BIN="${CARGO_TARGET_DIR:-target}/$TARGET/release/eq-bench"
if aarch64-linux-gnu-readelf -l "$BIN" 2>/dev/null | grep -q "program interpreter"; then
    die "$BIN is dynamically linked; check .cargo/config.toml (+crt-static)"
fi

# 2. The models: the zoo's .param files (zero weights, as ncnn's benchmark), or --models.
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
if [ -n "$MODELS_DIR" ]; then
    PARAMS=("$MODELS_DIR"/*.param)
    [ -e "${PARAMS[0]}" ] || die "--models: no .param files in $MODELS_DIR"
else
    zoo_args=()
    if [ -n "$MODEL_NAMES" ]; then
        IFS=, read -ra names <<<"$MODEL_NAMES"
        for n in "${names[@]}"; do zoo_args+=(--model "$n"); done
    fi
    log "writing the benchmark models (eq zoo)"
    cargo run --release -q -p eq-tools --bin eq -- zoo --out "$WORK/models" "${zoo_args[@]}" >/dev/null
    PARAMS=("$WORK"/models/*.param)
fi
MODEL_LIST=""
for p in "${PARAMS[@]}"; do MODEL_LIST+="${MODEL_LIST:+,}$(basename "$p")"; done

# 3. Copy to the board.
# shellcheck disable=SC2206
SSH_OPTS=(-o BatchMode=yes ${EQ_SSH_OPTS:-})
REMOTE_DIR=${EQ_DEPLOY_DIR:-eq-bench}
remote() { ssh "${SSH_OPTS[@]}" -p "$PORT" "$HOST" "$@"; }
log "copying eq-bench and ${#PARAMS[@]} model(s) to $HOST:$REMOTE_DIR"
remote "mkdir -p $(printf %q "$REMOTE_DIR")"
scp -q "${SSH_OPTS[@]}" -P "$PORT" "$BIN" "$TARGET_FILE" "${PARAMS[@]}" "$HOST:$REMOTE_DIR/"

# 4. Run each cluster, fetch its JSON.
TARGET_NAME=$(basename "$TARGET_FILE")
for cluster in "${CLUSTERS[@]}"; do
    case $cluster in big) threads=1,2 ;; little) threads=1,4 ;; esac
    cmd=(./eq-bench --target "$TARGET_NAME" --model "$MODEL_LIST" --precision fp32,int8,int7
        --threads "$threads" --cluster "$cluster" --loops "$LOOPS" --warmup "$WARMUP"
        --cooldown "$COOLDOWN" --json "$cluster.json")
    line="cd $(printf %q "$REMOTE_DIR") &&"
    [ -n "${EQ_DEPLOY_RUNNER:-}" ] && line+=" $EQ_DEPLOY_RUNNER"
    line+=" $(printf '%q ' "${cmd[@]}")"
    log "running the $cluster cluster (threads $threads)"
    remote "$line" | tee "$STEM-$cluster.log"
    scp -q "${SSH_OPTS[@]}" -P "$PORT" "$HOST:$REMOTE_DIR/$cluster.json" "$STEM-$cluster.json"
done

# 5. The report: eq-bench's own seed-layout tables, then every run line.
first_json="$STEM-${CLUSTERS[0]}.json"
# field KEY: KEY of the first record, a string as is, a list as JSON (["0xd08"]).
field() {
    python3 -c 'import json, sys
records = json.load(open(sys.argv[1]))
v = records[0].get(sys.argv[2], "") if records else ""
print(v if isinstance(v, str) else json.dumps(v))' "$first_json" "$1"
}
{
    echo "# RK3399 latency, $DATE"
    echo
    echo "Board \`$HOST\`, eq-bench commit $(field commit), CPU parts $(field parts)"
    echo "(0xd03 = Cortex-A53, 0xd08 = Cortex-A72). Zero weights (as ncnn's benchmark), input"
    echo "filled with 0.01; median of $LOOPS runs after $WARMUP warm-up runs, ${COOLDOWN} s cool-down"
    echo "per model. Layout of the seed paper's RK3399 tables (#N = threads). The seed's"
    echo "TRT-INT8 column is TensorRT-style INT8, which is not run here: the EQ-INT8 columns"
    echo "are this runtime's INT8 in its place. Reproduce: see README.md, \"RK3399 tables\"."
    for cluster in "${CLUSTERS[@]}"; do
        echo
        echo "## $cluster cluster"
        echo
        awk '/^cluster /{p=1; print; print ""; next} p' "$STEM-$cluster.log"
        echo
        echo '```'
        grep "threads =" "$STEM-$cluster.log"
        echo '```'
    done
    echo
    echo "Raw results: $(for c in "${CLUSTERS[@]}"; do printf '%s ' "$(basename "$STEM-$c.json")"; done)"
} >"$OUT"
log "wrote $OUT"
