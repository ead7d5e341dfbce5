#!/usr/bin/env bash
# Chaos under load on a release build (tests/chaos.rs): one workload's kv
# service trapped every 100 ms through its published port while 4 clients
# load it and 2 load a second workload with the same ports. Prints the
# figures; fails if anything that must hold did not.
#
#   scripts/chaos.sh [SECONDS]      (default 120)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/loophost/target}
scripts/setup.sh
cargo build --release --quiet -p loophost
LOOPHOST_BIN="$CARGO_TARGET_DIR/release/loophost" LOOPHOST_CHAOS_SECS=${1:-120} \
    cargo test --quiet -p loophost-tests --test chaos -- --nocapture
