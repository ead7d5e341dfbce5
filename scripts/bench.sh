#!/usr/bin/env bash
# Benchmarks: builds a release loophost and the guests, then runs each
# benchmark, which prints its figures and ratios against a baseline measured
# in the same run (never a pass/fail on time).
#
#   scripts/bench.sh             all benchmarks
#   scripts/bench.sh otel_overhead
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/loophost/target}
scripts/setup.sh
cargo build --release --quiet -p loophost
export LOOPHOST_BIN="$CARGO_TARGET_DIR/release/loophost"
for bench in ${1:-otel_overhead}; do
    echo "== $bench"
    cargo bench --quiet -p loophost-tests --bench "$bench"
done
