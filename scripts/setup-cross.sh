#!/usr/bin/env bash
# Installs what cross-compiling to aarch64 and running the tests under qemu needs:
# the aarch64 GNU linker and libc, qemu-user, and a Rust standard library for
# aarch64-unknown-linux-gnu. Prefers rustup; falls back to Debian's rustc-web with
# libstd-rust-web-dev:arm64, in which case cross builds must use RUSTC=/usr/bin/rustc.
# Prints `export RUSTC=...` on stdout when that is needed (eval-able), logs on stderr.
set -euo pipefail

TARGET=aarch64-unknown-linux-gnu
log() { echo "setup-cross: $*" >&2; }

SUDO=()
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null && SUDO=(sudo)
fi
APT_UPDATED=0
apt_update() {
    if [ "$APT_UPDATED" = 0 ]; then
        "${SUDO[@]}" apt-get update -qq >&2
        APT_UPDATED=1
    fi
}
apt_install() {
    apt_update
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "$@" >&2
}

missing=()
command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu)
[ -e /usr/aarch64-linux-gnu/lib/libc.a ] || missing+=(libc6-dev-arm64-cross)
command -v qemu-aarch64 >/dev/null || missing+=(qemu-user)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt_install "${missing[@]}"
fi

# 1. rustup, when it can add the target.
if command -v rustup >/dev/null && rustup target add "$TARGET" >&2; then
    log "Rust std for $TARGET from rustup ($(rustc --version))"
    exit 0
fi

# 2. Debian's rustc-web and its arm64 standard library.
if [ ! -d "/usr/lib/rustlib/$TARGET/lib" ] || [ ! -x /usr/bin/rustc ]; then
    log "rustup unavailable or failed: installing Debian rustc-web + libstd-rust-web-dev:arm64"
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        "${SUDO[@]}" dpkg --add-architecture arm64
        APT_UPDATED=0
    fi
    apt_install rustc-web libstd-rust-web-dev:arm64
fi
log "Rust std for $TARGET from Debian ($(/usr/bin/rustc --version)); cross builds need RUSTC=/usr/bin/rustc"
echo "export RUSTC=/usr/bin/rustc"
