#!/usr/bin/env bash
# Builds the Kubernetes controller example: the wasm32-wasip2 guests
# (greeter-controller.wasm, greetings_http.wasm) and, with --native, the
# native greeter-controller binary (same source, for the comparison bench),
# all release, into ${CARGO_TARGET_DIR:-$HOME/.cache/loophost/target}.
#
#   build.sh [--native]
# The last line of stdout is the directory holding the wasm guests.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/loophost/target}"

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    echo "build.sh: the wasm32-wasip2 target is missing: rustup target add wasm32-wasip2" >&2
    exit 1
fi
# ring compiles C for wasm32; gcc cannot target it.
if ! command -v clang >/dev/null; then
    echo "build.sh: clang is missing (ring needs it for wasm32): apt-get install clang" >&2
    exit 1
fi

cd "$here"
# cargo's progress goes to stderr; stdout is kept for the directory.
cargo build --release --locked --target wasm32-wasip2 -p greeter-controller -p greetings-http >&2
# The native build is for the comparison bench only (scripts/bench.sh
# k8s_controller asks for it): the test suite doesn't pay for it.
if [ "${1:-}" = --native ]; then
    cargo build --release --locked -p greeter-controller >&2
    echo "native controller: $CARGO_TARGET_DIR/release/greeter-controller" >&2
fi

wasm_dir="$CARGO_TARGET_DIR/wasm32-wasip2/release"
for guest in greeter-controller.wasm greetings_http.wasm; do
    if [ ! -f "$wasm_dir/$guest" ]; then
        echo "build.sh: $wasm_dir/$guest was not built" >&2
        exit 1
    fi
done
echo "$wasm_dir"
