#!/usr/bin/env bash
# The thread pool, the stress test (many nets on many threads, Rust API and C ABI), the C ABI
# allocation test on several threads and the pool / C ABI unit tests under ThreadSanitizer:
# a data race in the pool's hand-off of tasks, in the handle registry or in a kernel's split
# of the output between threads fails the run.
#
#   scripts/test-tsan.sh
#
# Needs nightly with rust-src (std is rebuilt instrumented: -Zbuild-std); builds into
# target/tsan. Not part of test-all.sh, whose CI machine has stable only.
set -euo pipefail
cd "$(dirname "$0")/.."
HOST=$(rustc -vV | sed -n 's/^host: //p')
export RUSTFLAGS="-Zsanitizer=thread"
export CARGO_TARGET_DIR=target/tsan
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1"
# std's own tests are not rebuilt; the workspace's test profile (opt-level 3) keeps it fast.
cargo +nightly test -Zbuild-std --target "$HOST" -p eq-runtime \
    --test stress --test pool --test c_abi_threads
cargo +nightly test -Zbuild-std --target "$HOST" -p eq-runtime --lib -- pool:: capi::tests
