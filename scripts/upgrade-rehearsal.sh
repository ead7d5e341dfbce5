#!/usr/bin/env bash
# Follows UPGRADE.md's "Moving to a new wasmtime version" mechanically for
# VERSION, in a scratch clone of the repository (the working tree is never
# touched), and prints a report: each step passed or failed, each patch
# applies or needs rework, compile errors per crate, tests passed/failed,
# minutes spent.
#
#   scripts/upgrade-rehearsal.sh VERSION [--no-tests] [--keep]
#
# The toolchain is the one VERSION needs: stable when it is new enough, else
# the installed nightly (a rehearsal only; the main line stays on stable).
# When patches/next/VERSION/ exists, its series (reworked patches) replaces
# patches/ in the scratch copy and its loophost.diff (the change our own
# crates need) is applied; the report shows the old series' status too.
# The scratch clone is in $LOOPHOST_REHEARSAL_DIR (default
# ~/.cache/loophost/rehearsal/VERSION, removed unless --keep) and builds into
# its own target directory there, kept between runs.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
version=${1:-}
shift || true
run_tests=1
keep=0
for arg in "$@"; do
    case $arg in
    --no-tests) run_tests=0 ;;
    --keep) keep=1 ;;
    *) echo "usage: scripts/upgrade-rehearsal.sh VERSION [--no-tests] [--keep]" >&2; exit 2 ;;
    esac
done
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "usage: scripts/upgrade-rehearsal.sh VERSION (e.g. 50.0.1) [--no-tests] [--keep]" >&2; exit 2; }

base=${LOOPHOST_REHEARSAL_DIR:-$HOME/.cache/loophost/rehearsal}/$version
scratch=$base/repo
export CARGO_TARGET_DIR=$base/target
logs=$base/logs
started=$(date +%s)
report=()
failed=0

say() { echo "rehearsal: $*" >&2; }
minutes() { awk -v s="$1" 'BEGIN { printf "%.1f", s / 60 }'; }
# step NAME COMMAND...: runs one step, logs it, records the outcome and time.
step() {
    local name=$1 t0 code
    shift
    t0=$(date +%s)
    say "$name"
    "$@" >"$logs/$name.log" 2>&1
    code=$?
    local took; took=$(minutes $(( $(date +%s) - t0 )))
    if [ "$code" = 0 ]; then
        report+=("ok    $name ($took min)")
    else
        report+=("FAIL  $name ($took min; exit $code; log: $logs/$name.log)")
        failed=1
    fi
    return "$code"
}

print_report() {
    echo
    echo "== upgrade rehearsal: wasmtime $version (toolchain: ${toolchain:-?}) in $(minutes $(( $(date +%s) - started ))) min"
    printf '%s\n' "${report[@]}"
    [ "$keep" = 1 ] && echo "scratch copy kept: $scratch"
}

rm -rf "$scratch" "$logs"
mkdir -p "$base" "$logs"

# 1. What VERSION needs, from the crates.io index: its checksum and its
#    rust-version; then the toolchain that satisfies it.
index_entry() {
    curl -sSfL --retry 3 "https://index.crates.io/wa/sm/wasmtime-wasi" | grep -E "\"vers\": ?\"$version\""
}
entry=$(index_entry) || { echo "rehearsal: wasmtime-wasi $version is not on crates.io (or the index is unreachable)" >&2; exit 1; }
sha256=$(sed -n -E 's/.*"cksum": ?"([0-9a-f]+)".*/\1/p' <<<"$entry")
needs=$(sed -n -E 's/.*"rust_version": ?"([0-9.]+)".*/\1/p' <<<"$entry")
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }
rustc_of() { rustc "$@" --version 2>/dev/null | awk '{print $2}' | sed 's/-.*//'; }
stable=$(rustc_of)
nightly=$(rustc_of +nightly)
if [ -z "$needs" ] || version_ge "$stable" "$needs"; then
    toolchain=stable
    cargo=(cargo)
elif [ -n "$nightly" ] && version_ge "$nightly" "$needs"; then
    toolchain="nightly ($nightly; $version needs $needs, stable is $stable)"
    cargo=(cargo +nightly)
else
    echo "rehearsal: wasmtime $version needs Rust $needs; stable is $stable and nightly ${nightly:-is not installed}" >&2
    exit 1
fi
report+=("ok    toolchain: $toolchain; wasmtime-wasi $version sha256 $sha256")

# 2. The scratch copy: the committed tree (HEAD), never the working tree.
step scratch-clone git clone -q --no-local "$root" "$scratch" || { print_report; exit 1; }
cd "$scratch" || exit 1

# 3. Bump the pins (UPGRADE.md step 2 and 3).
bump() {
    sed -i -E "s/^(wasmtime(-wasi|-wasi-io|-wasi-http)? = \")=[0-9.]+\"/\1=$version\"/" Cargo.toml
    sed -i -E "s/^version=.*/version=$version/; s/^sha256=.*/sha256=$sha256/" patches/UPSTREAM
    grep -q "^wasmtime-wasi = \"=$version\"" Cargo.toml && grep -q "^version=$version" patches/UPSTREAM
}
step bump-pins bump

# 4. The old series against the new crate, patch by patch.
crate_file=$base/wasmtime-wasi-$version.crate
fetch_crate() {
    [ -f "$crate_file" ] || curl -sSfL --retry 3 -o "$crate_file" "https://static.crates.io/crates/wasmtime-wasi/wasmtime-wasi-$version.crate"
    [ "$(sha256sum "$crate_file" | cut -d' ' -f1)" = "$sha256" ]
}
step fetch-and-checksum fetch_crate || { print_report; exit 1; }
try_series() {
    local dir=$1 label=$2 tree p lines total=0
    tree=$(mktemp -d)
    tar -xzf "$crate_file" -C "$tree" --strip-components=1
    while read -r p; do
        # Changed lines of the diff itself (header bullets start with `*`).
        lines=$(grep -E '^[+-]' "$dir/$p" | grep -cvE '^(\+\+\+|---) ' || true)
        total=$((total + lines))
        # Dry run first: once a patch is half applied, a second look only
        # sees "previously applied" and counts no rejected hunk.
        local out
        if out=$(cd "$tree" && patch -p1 --forward --fuzz=0 --dry-run <"$dir/$p" 2>&1); then
            report+=("ok    $label patch $p applies ($lines changed lines)")
        else
            report+=("FAIL  $label patch $p needs rework ($(grep -c FAILED <<<"$out" || true) hunk(s) rejected)")
        fi
        # Apply what applies, so later patches meet the tree they expect.
        (cd "$tree" && patch -p1 --forward --fuzz=0 --no-backup-if-mismatch -s -r - <"$dir/$p" >/dev/null 2>&1) || true
    done < <(grep -v '^\s*\(#\|$\)' "$dir/series")
    report+=("      $label series: $total changed lines (keep it under 300)")
    rm -rf "$tree"
}
try_series "$scratch/patches" "current"
next=$scratch/patches/next/$version
if [ -d "$next" ]; then
    try_series "$next" "next/$version"
    use_next() {
        find patches -maxdepth 1 -name '*.patch' -delete
        cp "$next"/*.patch "$next/series" patches/
        cp "$next/series" patches/series
        if [ -f "$next/loophost.diff" ]; then
            git apply --index "$next/loophost.diff"
        fi
    }
    step use-reworked-series use_next
fi

# 5. Materialize the fork, build our crates, the guests, the whole suite.
step vendor scripts/vendor-wasmtime-wasi.sh
compile_errors() {
    local log=$1 crate
    for crate in wasi-sockets-virt loophost loophost-tests k8s-emulator; do
        local n
        n=$(awk -v c="$crate" '/^error(\[E[0-9]+\])?:/ {e++} /could not compile `/ { if (index($0, "`" c "`")) { print e; found=1 } ; e=0 } END { if (!found) print 0 }' "$log" | tail -n1)
        [ "${n:-0}" -gt 0 ] && report+=("      $crate: $n compile error(s); first: $(grep -m1 -E '^error(\[E[0-9]+\])?:' "$log")")
    done
}
if step build-wasi-sockets-virt "${cargo[@]}" build -p wasi-sockets-virt; then
    step build-loophost "${cargo[@]}" build -p loophost || compile_errors "$logs/build-loophost.log"
else
    compile_errors "$logs/build-wasi-sockets-virt.log"
fi
step build-guests scripts/build-guests.sh
if [ "$run_tests" = 1 ] && [ "$failed" = 0 ]; then
    step build-workspace "${cargo[@]}" build --workspace --bins --tests || compile_errors "$logs/build-workspace.log"
    if [ "$failed" = 0 ]; then
        step test "${cargo[@]}" test --workspace --no-fail-fast
        passed=$(grep -h '^test result' "$logs/test.log" | awk '{p += $4} END {print p + 0}')
        failing=$(grep -h '^test result' "$logs/test.log" | awk '{f += $6} END {print f + 0}')
        report+=("      tests: $passed passed, $failing failed")
        grep -E '^test .* FAILED$' "$logs/test.log" | sed 's/^/      /' | head -n 20 | while read -r line; do echo "$line"; done >"$logs/failing.txt"
        while read -r line; do report+=("      $line"); done <"$logs/failing.txt"
    fi
elif [ "$run_tests" = 1 ]; then
    report+=("skip  tests (an earlier step failed)")
fi

print_report
[ "$keep" = 1 ] || rm -rf "$scratch"
exit "$failed"
