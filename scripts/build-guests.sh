#!/usr/bin/env bash
# Builds the wasm32-wasip2 guests: tests/guests/ (used by the integration
# tests), services/ (example services and the demo client) and the
# Kubernetes controller example (examples/k8s-controller-service), in release
# mode. The target and rustflags come from each workspace's .cargo/config.toml,
# so cargo runs from inside each workspace. Both share one target directory:
# $CARGO_TARGET_DIR, or ~/.cache/loophost/target when unset. Extra arguments
# go to both `cargo build` runs (e.g. -j1).
#
# Prints the directory holding the .wasm files as its last line of stdout
# (cargo's own output goes to stderr).
#
#   scripts/build-guests.sh [cargo build args...]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/loophost/target}

# Run from a test (which `cargo test` started), the environment carries
# cargo's per-package variables; build scripts that watch them (ring's does,
# through cc) would then rebuild on every switch between a shell and a test.
# It also names the toolchain the host was built with (`cargo +nightly test`
# in an upgrade rehearsal): the guests are built with the machine's default
# toolchain, which has the wasm32-wasip2 target. And `./dev test` builds
# the host through clippy-driver (RUSTC_WORKSPACE_WRAPPER): the guests are
# built plainly, as the demo and the benches get them (clippy-driver turns
# MIR optimisations off).
for var in $(compgen -e); do
    case $var in
    CARGO_PKG_* | CARGO_MANIFEST_* | CARGO_CRATE_NAME | CARGO_BIN_NAME | CARGO_PRIMARY_PACKAGE | CARGO_TARGET_TMPDIR | OUT_DIR | RUSTUP_TOOLCHAIN | RUSTC_WORKSPACE_WRAPPER) unset "$var" ;;
    esac
done

for workspace in tests/guests services; do
    (cd "$root/$workspace" && cargo build --release "$@")
done
# The Kubernetes controller example (wasm32-wasip2 and native); its script
# prints its output directory, the same one.
"$root/examples/k8s-controller-service/build.sh" >/dev/null

echo "$CARGO_TARGET_DIR/wasm32-wasip2/release"
