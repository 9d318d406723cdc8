# Sourced by scripts/test-all.sh (and so by .ci/run): installs what the full test suite
# needs, doing nothing that is already there, so it is cheap to run every time.
# - Debian packages (C toolchain, aarch64 cross tools, qemu-user, llvm-mca, sshd, Python
#   venv), only those not installed yet (needs root or sudo then);
# - rustfmt and clippy, and an aarch64 Rust standard library (scripts/setup-cross.sh);
# - Python with the PyPI ncnn oracle, numpy and Pillow, plus onnx and onnxruntime (the
#   `eq import onnx` tests build models and reference outputs with them): the current python3
#   when it already has them at the pinned versions, else a venv in target/test-venv
#   (EQ_TEST_VENV), activated in the calling shell.
# Set EQ_NO_SETUP=1 to skip all of it.

NCNN_VERSION=1.0.20261020
ONNX_VERSION=1.23.2
ORT_VERSION=1.31.1

setup_log() { echo "setup: $*" >&2; }

# The Debian packages the suite uses (the same list CI always had).
APT_PACKAGES=(gcc libc6-dev binutils gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
    openssh-server openssh-client binutils-aarch64-linux-gnu llvm libglib2.0-dev pkg-config
    python3 python3-pip python3-venv ca-certificates)

setup_apt() {
    # Not Debian: nothing to install with; the tools must already be there.
    command -v dpkg-query >/dev/null || return 0
    local want=() sudo=() p
    for p in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            want+=("$p")
    done
    [ ${#want[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || {
            setup_log "missing ${want[*]}, and no root or sudo to install them"
            return 1
        }
        sudo=(sudo)
    fi
    setup_log "apt: ${want[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${want[@]}"
}

setup_rust() {
    if command -v rustup >/dev/null; then
        rustup component list --installed 2>/dev/null | grep -q '^rustfmt' &&
            rustup component list --installed 2>/dev/null | grep -q '^clippy' ||
            rustup component add rustfmt clippy
    fi
    # Prints `export RUSTC=/usr/bin/rustc` when it had to use Debian's rustc-web; that
    # compiler is for the cross build only (scripts/test-aarch64.sh picks it up itself).
    scripts/setup-cross.sh >/dev/null
}

python_ready() {
    python3 - "$NCNN_VERSION" "$ONNX_VERSION" "$ORT_VERSION" <<'EOF' 2>/dev/null
import sys
import ncnn, numpy, PIL, onnx, onnxruntime  # noqa: F401
want = sys.argv[1:]
have = [ncnn.__version__, onnx.__version__, onnxruntime.__version__]
sys.exit(0 if have == want else 1)
EOF
}

setup_python() {
    python_ready && return 0
    local venv="${EQ_TEST_VENV:-$PWD/target/test-venv}"
    if [ ! -x "$venv/bin/python3" ]; then
        setup_log "Python venv $venv"
        # A venv avoids Debian's externally-managed system Python (PEP 668).
        python3 -m venv "$venv"
    fi
    # shellcheck disable=SC1091
    . "$venv/bin/activate"
    python_ready && return 0
    setup_log "pip: ncnn==$NCNN_VERSION numpy pillow onnx==$ONNX_VERSION onnxruntime==$ORT_VERSION"
    python3 -m pip install -q --upgrade pip
    python3 -m pip install -q "ncnn==$NCNN_VERSION" numpy pillow "onnx==$ONNX_VERSION" \
        "onnxruntime==$ORT_VERSION"
    python_ready || {
        setup_log "the venv still lacks ncnn $NCNN_VERSION, numpy, Pillow, onnx $ONNX_VERSION or onnxruntime $ORT_VERSION"
        return 1
    }
}

if [ "${EQ_NO_SETUP:-}" != 1 ]; then
    setup_apt
    setup_rust
    setup_python
fi
