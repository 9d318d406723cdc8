#!/usr/bin/env bash
# End-to-end test of scripts/deploy-rk3399.sh against a real sshd on 127.0.0.1: a throwaway
# sshd (Debian openssh-server) on a free port with its own host key and authorized key in a
# temp dir; the "board" is this machine running the static aarch64 eq-bench under
# qemu-user as a Cortex-A53 (EQ_DEPLOY_RUNNER). Small and short: SqueezeNet only, one loop,
# both clusters of a two-CPU board file. Checks the fetched JSON and the written report.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "test-deploy: FAILED: $*" >&2; exit 1; }
SSHD=${EQ_SSHD:-/usr/sbin/sshd}
for tool in "$SSHD" ssh scp ssh-keygen qemu-aarch64 python3; do
    command -v "$tool" >/dev/null || die "$tool missing (apt-get install openssh-server qemu-user)"
done

TMP=$(mktemp -d)
SSHD_PID=""
cleanup() {
    if [ -n "$SSHD_PID" ]; then kill "$SSHD_PID" 2>/dev/null || true; fi
    rm -rf "$TMP"
}
trap cleanup EXIT

ssh-keygen -q -t ed25519 -N "" -f "$TMP/host_key"
ssh-keygen -q -t ed25519 -N "" -f "$TMP/client_key"
cp "$TMP/client_key.pub" "$TMP/authorized_keys"
chmod 600 "$TMP/authorized_keys"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$TMP/sshd_config" <<EOF
Port $PORT
ListenAddress 127.0.0.1
HostKey $TMP/host_key
AuthorizedKeysFile $TMP/authorized_keys
PidFile $TMP/sshd.pid
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
Subsystem sftp internal-sftp
EOF
# sshd wants its privilege-separation directory when started as root.
if [ "$(id -u)" = 0 ]; then mkdir -p /run/sshd; fi
"$SSHD" -D -e -f "$TMP/sshd_config" 2>"$TMP/sshd.log" &
SSHD_PID=$!
for _ in $(seq 50); do
    if (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
    kill -0 "$SSHD_PID" 2>/dev/null || die "sshd did not start: $(cat "$TMP/sshd.log")"
    sleep 0.1
done

# Two single-CPU clusters (CPUs 0 and 1) standing in for the RK3399's little and big.
cat >"$TMP/board.toml" <<EOF
board = "test-board"
[[cluster]]
name = "little"
cpus = [0]
core = "cortex-a53"
l2_kib = 512
[[cluster]]
name = "big"
cpus = [1]
core = "cortex-a72"
l2_kib = 1024
EOF
[ "$(nproc)" -ge 2 ] || die "needs two CPUs (one per test cluster)"

echo "test-deploy: sshd on 127.0.0.1:$PORT, running deploy-rk3399.sh"
EQ_SSH_OPTS="-i $TMP/client_key -o IdentitiesOnly=yes -o UserKnownHostsFile=$TMP/known_hosts -o StrictHostKeyChecking=accept-new" \
EQ_DEPLOY_DIR="$TMP/board" \
EQ_DEPLOY_RUNNER="qemu-aarch64 -cpu cortex-a53" \
    scripts/deploy-rk3399.sh "$(id -un)@127.0.0.1" --port "$PORT" --model squeezenet \
    --loops 1 --warmup 0 --cooldown 0 --target "$TMP/board.toml" --out "$TMP/out/rk3399-test.md" \
    >"$TMP/deploy.log" 2>&1 || die "deploy-rk3399.sh failed: $(tail -n 20 "$TMP/deploy.log")"

REPORT=$TMP/out/rk3399-test.md
# EQ_TEST_DEPLOY_KEEP=DIR keeps the report and JSON for a look.
if [ -n "${EQ_TEST_DEPLOY_KEEP:-}" ]; then mkdir -p "$EQ_TEST_DEPLOY_KEEP" && cp "$TMP"/out/* "$EQ_TEST_DEPLOY_KEEP"/; fi
check() { grep -qF -- "$2" "$1" || die "$1 lacks '$2': $(cat "$1")"; }
# What the board got: the static binary, the target file and the model.
for f in eq-bench board.toml squeezenet.param; do [ -f "$TMP/board/$f" ] || die "no $f on the board"; done
for cluster in little big; do
    json=$TMP/out/rk3399-test-$cluster.json
    [ -f "$json" ] || die "no $json"
    # 6 records (3 precisions x 2 thread counts) of this cluster, run on the emulated
    # Cortex-A53 by the binary of this commit.
    commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    python3 - "$json" "$cluster" "$commit" <<'EOF' || die "bad records in $json: $(cat "$json")"
import json, sys
path, cluster, commit = sys.argv[1:]
records = json.load(open(path))
assert len(records) == 6, f"want 6 records, got {len(records)}"
for r in records:
    assert r["model"] == "squeezenet", r
    assert r["cluster"] == cluster, r
    assert r["parts"] == ["0xd03"], r
    assert r["commit"] == commit, r
    assert r["median_ms"] > 0, r
EOF
done
check "$REPORT" "## little cluster"
check "$REPORT" "| Models | EQ-INT8(#1) | EQ-INT7(#1) | EQ-INT8(#4) | EQ-INT7(#4) |"
check "$REPORT" "## big cluster"
check "$REPORT" "| Models | EQ-INT8(#1) | EQ-INT7(#1) | EQ-INT8(#2) | EQ-INT7(#2) |"
check "$REPORT" "in place of the seed's TRT-INT8"
check "$REPORT" "CPU parts [\"0xd03\"]"
[ "$(grep -c '^| squeezenet | [0-9.]* | [0-9.]* | [0-9.]* | [0-9.]* |$' "$REPORT")" = 2 ] ||
    die "want a full squeezenet row per cluster: $(cat "$REPORT")"
echo "test-deploy: passed (report and JSON from the qemu 'board' over ssh)"
