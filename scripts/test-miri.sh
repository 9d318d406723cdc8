#!/usr/bin/env bash
# The pure-Rust parts of the runtime under Miri (undefined behaviour, out-of-bounds and
# uninitialised reads, data races between the pool's threads, leaks): the param / .param.bin
# / weights parsers, the graph and memory planner, quantization arithmetic, the thread pool,
# tensors, the board topology and the C ABI's handle and error paths. Kernel tests are left
# out (their shapes take hours in the interpreter; the generic kernels run under the fuzzers
# and AddressSanitizer instead), and so are tests that mmap files (Miri cannot).
#
#   scripts/test-miri.sh [extra test filters...]
#
# Needs a nightly toolchain with the miri component (`rustup toolchain install nightly
# --component miri rust-src`); not part of test-all.sh, whose CI machine has stable only.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo +nightly miri --version >/dev/null 2>&1 ||
    { echo "test-miri: needs nightly with miri (rustup +nightly component add miri rust-src)" >&2; exit 1; }
# Isolation off: the topology tests read /sys and /proc (real files, not mappings).
export MIRIFLAGS="${MIRIFLAGS:--Zmiri-disable-isolation}"
FILTERS=(model:: plan:: graph:: quant:: pool:: target:: tensor:: capi::tests "$@")
SKIPS=(--skip loads_from_files)
exec cargo +nightly miri test -p eq-runtime --lib -- "${FILTERS[@]}" "${SKIPS[@]}"
