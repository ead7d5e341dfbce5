#!/usr/bin/env bash
# Benchmarks: builds a release loophost and the guests, then runs each
# benchmark, which prints its figures and ratios against a baseline measured
# in the same run (never a pass/fail on time).
#
#   scripts/bench.sh                 all benchmarks
#   scripts/bench.sh loopback http   some of them
#
# loopback      virtual loopback vs kernel loopback (same std guest pair)
# idle          host memory per idle virtual connection (10 000, 100 000)
# http          hello world vs a `wasmtime serve`-style host; the demo's path
#               at fixed rates; instantiation per request (wrk)
# restart       service restart after a trap; cold vs warm `loophost up`
# instructions  callgrind counts of one round trip and one instantiation
# otel_overhead the cost of OpenTelemetry export on the request path
# k8s_controller the Greeting controller example, native vs wasm under
#               `loophost up`: 500 Greetings at once until converged
#
# LOOPHOST_BENCH_ROUNDS sets the number of alternating rounds (default 5;
# k8s_controller: 3).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/loophost/target}
all="loopback idle http restart instructions otel_overhead k8s_controller"
benches=${*:-$all}

# The load generator and the instruction counter are Debian packages.
need=()
case " $benches " in *" http "*) command -v wrk >/dev/null || need+=(wrk) ;; esac
case " $benches " in *" instructions "*) command -v valgrind >/dev/null || need+=(valgrind) ;; esac
if [ ${#need[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "bench: installing ${need[*]}" >&2
    $sudo apt-get install -y -q "${need[@]}" >/dev/null || { echo "bench: cannot install ${need[*]}: install them and rerun" >&2; exit 1; }
fi

scripts/setup.sh
cargo build --release --quiet -p loophost
export LOOPHOST_BIN="$CARGO_TARGET_DIR/release/loophost"
# Benchmarks compile into their own cache, never the user's.
export LOOPHOST_CACHE_DIR="$CARGO_TARGET_DIR/bench-compile-cache"
for bench in $benches; do
    echo "== $bench"
    cargo bench --quiet -p loophost-tests --bench "$bench"
done
