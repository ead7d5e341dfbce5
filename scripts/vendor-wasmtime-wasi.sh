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

# Where a downloaded .crate is kept (git-ignored, beside the fork), so later
# runs and `--check` work offline.
downloads="$root/vendor/.crates"

# Prints the path of a local copy of the pinned .crate, or nothing. Looks in
# our download folder, then in cargo's cache. An empty cache is normal on a
# fresh machine and must not end the script (set -e).
find_crate_file() {
    local f
    for f in "$downloads/$crate-$version.crate" "$cargo_home"/registry/cache/*/"$crate-$version.crate"; do
        [ -f "$f" ] && { echo "$f"; return 0; }
    done
    return 0
}

# Downloads just the pinned .crate (not its dependency tree) from the
# registry's download endpoint; falls back to cargo itself (which honours
# source replacement / mirrors in cargo's config) when that fails.
download_crate() {
    local url=${LOOPHOST_CRATE_URL:-https://static.crates.io/crates/$crate/$crate-$version.crate}
    mkdir -p "$downloads"
    local part="$downloads/$crate-$version.crate.part.$$"
    echo "vendor-wasmtime-wasi: downloading $crate $version from $url" >&2
    if command -v curl >/dev/null && curl -sSfL --retry 3 --connect-timeout 20 -o "$part" "$url"; then
        mv "$part" "$downloads/$crate-$version.crate"
        return 0
    fi
    rm -f "$part"
    echo "vendor-wasmtime-wasi: direct download failed; asking cargo to fetch it" >&2
    local tmp; tmp=$(mktemp -d)
    mkdir -p "$tmp/src"
    printf '[package]\nname = "fetch-pinned"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\n%s = "=%s"\n' \
        "$crate" "$version" > "$tmp/Cargo.toml"
    : > "$tmp/src/lib.rs"
    (cd "$tmp" && cargo fetch --quiet) \
        || die "cannot download $crate $version (tried $url and cargo fetch): check the network or proxy, or put $crate-$version.crate in $downloads"
    rm -rf "$tmp"
}

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

# Prints the path of a copy of the pinned crate whose checksum is right,
# downloading it when there is none. A corrupt download of ours is replaced;
# a corrupt file in cargo's own cache is reported, not touched.
verified_crate() {
    local file
    file=$(find_crate_file)
    if [ -n "$file" ] && [ "$(sha_of "$file")" != "$sha256" ]; then
        case "$file" in
        "$downloads"/*)
            echo "vendor-wasmtime-wasi: $file is corrupt; downloading it again" >&2
            rm -f "$file"
            file="" ;;
        *) die "checksum mismatch for $file (cargo's cache): expected $sha256, got $(sha_of "$file"); delete the file and rerun" ;;
        esac
    fi
    if [ -z "$file" ]; then
        download_crate
        file=$(find_crate_file)
    fi
    [ -n "$file" ] || die "$crate-$version.crate is neither in $downloads nor in $cargo_home/registry/cache after downloading; rerun"
    local got; got=$(sha_of "$file")
    if [ "$got" != "$sha256" ]; then
        case "$file" in "$downloads"/*) rm -f "$file" ;; esac
        die "checksum mismatch for the downloaded $crate $version: expected $sha256 (patches/UPSTREAM), got $got; a proxy or mirror served another file"
    fi
    echo "$file"
}

# Builds pristine + patches into $1.
build_tree() {
    local out=$1 file
    file=$(verified_crate)

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
