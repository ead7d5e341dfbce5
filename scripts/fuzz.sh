#!/usr/bin/env bash
# Fuzzing with cargo fuzz (libFuzzer; needs the nightly toolchain). Targets
# live in fuzz/fuzz_targets: the manifest parser, the Policy::route decision
# and sequences of socket operations against the virtual network. The seed
# corpus is fuzz/corpus/<target>; new inputs go to a scratch corpus.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]   run each target SECONDS (default 600)
#   scripts/fuzz.sh --smoke                 30 s each (./dev test replays the corpora instead: tests/fuzz_replay.rs)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/loophost/target}
secs=600
if [ "${1:-}" = "--smoke" ]; then
    secs=30
    shift
elif [[ "${1:-}" =~ ^[0-9]+$ ]]; then
    secs=$1
    shift
fi
targets=("$@")
# Safe Rust needs no AddressSanitizer to report its panics, and without it
# the build and the runs are several times faster; LOOPHOST_FUZZ_SANITIZER=address
# for the unsafe corners (wasmtime's).
sanitizer=${LOOPHOST_FUZZ_SANITIZER:-none}
[ ${#targets[@]} -gt 0 ] || targets=(manifest policy_route socket_ops)

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: no nightly toolchain (cargo fuzz needs one): rustup toolchain install nightly" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz (once)" >&2
    cargo install --locked cargo-fuzz >&2 || { echo "fuzz: cargo install cargo-fuzz failed (see above)" >&2; exit 1; }
fi
scripts/vendor-wasmtime-wasi.sh
fuzz_target_dir="$CARGO_TARGET_DIR/fuzz"
if [ ! -d "$fuzz_target_dir/x86_64-unknown-linux-gnu/release" ]; then
    echo "fuzz: first build of the fuzz targets (nightly, instrumented wasmtime): about 12 minutes on 2 cores" >&2
fi
cargo +nightly fuzz build -s "$sanitizer" --target-dir "$fuzz_target_dir" >&2 || { echo "fuzz: building the fuzz targets failed (see above)" >&2; exit 1; }
for t in "${targets[@]}"; do
    work="$CARGO_TARGET_DIR/fuzz-corpus/$t"
    mkdir -p "$work"
    echo "== fuzz $t for ${secs}s" >&2
    log=$(mktemp)
    if ! cargo +nightly fuzz run -s "$sanitizer" --target-dir "$fuzz_target_dir" "$t" "$work" "fuzz/corpus/$t" -- \
        -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "fuzz: $t found a failure (the input is in fuzz/artifacts/$t)" >&2
        exit 1
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n1)
    corpus=$(find "$work" -type f | wc -l)
    echo "fuzz $t: ${execs:-?} executions in ${secs}s, ${cov:-cov: ?}, corpus $corpus, no failure"
    rm -f "$log"
done
