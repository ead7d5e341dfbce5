#!/usr/bin/env bash
# Materializes our fork of wasmtime-wasi: the pristine crates.io crate pinned in
# patches/UPSTREAM plus the series in patches/series, into vendor/wasmtime-wasi
# (git-ignored). The workspace's [patch.crates-io] points there.
#
#   scripts/vendor-wasmtime-wasi.sh          materialize (no-op when up to date)
#   scripts/vendor-wasmtime-wasi.sh --check  fail if a patch no longer applies or
#                                            vendor/ differs from pristine+patches
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
patches="$root/patches"
dest="$root/vendor/wasmtime-wasi"
mode=${1:-materialize}

field() { sed -n "s/^$1=//p" "$patches/UPSTREAM"; }
crate=$(field crate)
version=$(field version)
sha256=$(field sha256)
cargo_home=${CARGO_HOME:-$HOME/.cargo}

die() { echo "vendor-wasmtime-wasi: $*" >&2; exit 1; }

# Fingerprint of everything the materialized tree is made from.
fingerprint() {
    { echo "$crate $version $sha256"; cat "$patches/series"
      while read -r p; do [ -n "$p" ] && cat "$patches/$p"; done < <(series); } | sha256sum | cut -d' ' -f1
}

series() { grep -v '^\s*\(#\|$\)' "$patches/series"; }

find_crate_file() {
    ls "$cargo_home"/registry/cache/*/"$crate-$version.crate" 2>/dev/null | head -n1
}

# Ask cargo (the ordinary client) to download the pinned crate into its cache.
download_crate() {
    local tmp; tmp=$(mktemp -d)
    mkdir -p "$tmp/src"
    printf '[package]\nname = "fetch-pinned"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\n%s = "=%s"\n' \
        "$crate" "$version" > "$tmp/Cargo.toml"
    : > "$tmp/src/lib.rs"
    (cd "$tmp" && cargo fetch --quiet) || die "cargo could not download $crate $version"
    rm -rf "$tmp"
}

# Builds pristine + patches into $1.
build_tree() {
    local out=$1 file
    file=$(find_crate_file)
    if [ -z "$file" ]; then download_crate; file=$(find_crate_file); fi
    [ -n "$file" ] || die "$crate-$version.crate not found in $cargo_home/registry/cache"
    local got; got=$(sha256sum "$file" | cut -d' ' -f1)
    [ "$got" = "$sha256" ] || die "checksum mismatch for $file: expected $sha256, got $got"

    mkdir -p "$out"
    tar -xzf "$file" -C "$out" --strip-components=1
    local p
    while read -r p; do
        [ -f "$patches/$p" ] || die "patches/series names $p, which does not exist"
        (cd "$out" && patch -p1 --forward --fuzz=0 --no-backup-if-mismatch -s < "$patches/$p") \
            || die "patch $p no longer applies to $crate $version (see UPGRADE.md)"
    done < <(series)
    fingerprint > "$out/.loophost-fingerprint"
}

case "$mode" in
materialize)
    if [ -f "$dest/.loophost-fingerprint" ] && [ "$(cat "$dest/.loophost-fingerprint")" = "$(fingerprint)" ]; then
        exit 0
    fi
    tmp=$(mktemp -d "$root/vendor.tmp.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    build_tree "$tmp/tree"
    rm -rf "$dest"
    mkdir -p "$(dirname "$dest")"
    mv "$tmp/tree" "$dest"
    echo "materialized $crate $version + $(series | wc -l) patches into vendor/wasmtime-wasi"
    ;;
--check)
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    build_tree "$tmp/tree"
    [ -d "$dest" ] || die "vendor/wasmtime-wasi is missing; run scripts/vendor-wasmtime-wasi.sh"
    if ! diff -r -q "$tmp/tree" "$dest" >"$tmp/diff"; then
        cat "$tmp/diff" >&2
        die "vendor/wasmtime-wasi differs from $crate $version + patches/ (edit patches/, not vendor/)"
    fi
    echo "ok: $(series | wc -l) patches apply cleanly to $crate $version; vendor/wasmtime-wasi matches"
    ;;
*) die "usage: $0 [--check]" ;;
esac
