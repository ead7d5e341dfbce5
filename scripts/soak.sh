#!/usr/bin/env bash
# Soak (tests/soak.rs): N virtual connections (default 1 000 000) opened and
# closed through one guest listener; prints the rate and host RSS, fails if
# memory grew more than 10% or anything was left open.
#
#   scripts/soak.sh [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/loophost/target}
scripts/setup.sh
LOOPHOST_SOAK_CONNECTIONS=${1:-1000000} cargo test --quiet -p loophost-tests --test soak -- --nocapture
