#!/usr/bin/env bash
# Everything a build of loophost needs from the machine, checked and, where
# missing, installed: the wasm32-wasip2 Rust target, the clippy and rustfmt
# components (`./dev test` lints and checks formatting), the system commands the
# build, the guests and the demo use (Debian packages), the vendored
# wasmtime-wasi fork and the guest components. Idempotent; `./dev` runs it.
#
#   scripts/setup.sh          check, install what is missing, build the fork and guests
#   scripts/setup.sh --plan   only say what is missing and what would be done
#                             (exit 0: nothing to do, 1: something to install)
#
# Every failure prints one line: what failed and what to do.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
mode=${1:-install}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/loophost/target}
# What the machine's default toolchain has, even when called from a test run
# with another one (`cargo +nightly test` in an upgrade rehearsal).
unset RUSTUP_TOOLCHAIN

die() { echo "setup: $*" >&2; exit 1; }
say() { echo "setup: $*" >&2; }

# Commands and the Debian package that provides each. A guest that needs a
# system tool (e.g. clang for ring on wasm32) adds its line here.
system_commands=(
    "curl curl"          # the pinned crate's download, the demo's requests
    "patch patch"        # applying patches/ to the pristine crate
    "tar tar"
    "sha256sum coreutils"
    "clang clang"        # ring's C code for wasm32 (the Kubernetes controller's TLS)
    "dpkg-deb dpkg"      # unpacking Debian's kubectl (below)
)

missing_packages() {
    local line cmd pkg
    for line in "${system_commands[@]}"; do
        read -r cmd pkg <<<"$line"
        command -v "$cmd" >/dev/null 2>&1 || echo "$pkg"
    done
    # The Kubernetes emulator's second real client (Debian's Python, not pyenv's).
    /usr/bin/python3 -c 'import kubernetes' >/dev/null 2>&1 || echo python3-kubernetes
}

# How packages would be installed here, or nothing when they cannot be.
installer() {
    command -v apt-get >/dev/null 2>&1 || return 0
    if [ "$(id -u)" = 0 ]; then
        echo "apt-get"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        echo "sudo apt-get"
    fi
}

# `./dev test` formats with rustfmt and lints with clippy-driver; rustup's
# minimal profile has neither.
missing_components() {
    local installed
    installed=$(rustup component list --installed 2>/dev/null)
    for component in clippy rustfmt; do
        grep -q "^$component" <<<"$installed" || echo "$component"
    done
}

has_wasm_target() {
    rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2
}

plan() {
    local todo=0 pkgs
    command -v cargo >/dev/null 2>&1 || { echo "missing: cargo: install Rust with rustup (https://rustup.rs)"; todo=1; }
    command -v rustup >/dev/null 2>&1 || { echo "missing: rustup: install Rust with rustup (https://rustup.rs)"; todo=1; }
    if command -v rustup >/dev/null 2>&1 && ! has_wasm_target; then
        echo "missing: the wasm32-wasip2 target: would run rustup target add wasm32-wasip2"
        todo=1
    fi
    local components=""
    command -v rustup >/dev/null 2>&1 && components=$(missing_components | paste -sd' ' -)
    if [ -n "$components" ]; then
        echo "missing: Rust components $components: would run rustup component add"
        todo=1
    fi
    pkgs=$(missing_packages | sort -u | tr '\n' ' ')
    if [ -n "$pkgs" ]; then
        local how; how=$(installer)
        if [ -n "$how" ]; then
            echo "missing: Debian packages ${pkgs% }: would run $how install -y ${pkgs% }"
        else
            echo "missing: Debian packages ${pkgs% }: cannot install them here (no apt-get, or not root and no sudo); install them yourself"
        fi
        todo=1
    fi
    if ! has_debian_kubectl; then
        echo "missing: Debian's kubectl: would unpack package kubernetes-client into $tools_dir"
        todo=1
    fi
    [ "$todo" = 0 ] && echo "ok: Rust, the wasm32-wasip2 target, clippy, rustfmt and the system commands are present"
    return "$todo"
}

install_packages() {
    local pkgs how
    pkgs=$(missing_packages | sort -u | tr '\n' ' ')
    [ -z "$pkgs" ] && return 0
    how=$(installer)
    [ -n "$how" ] || die "missing ${pkgs% } and cannot install (no apt-get, or not root and no sudo): install ${pkgs% } and rerun"
    say "installing Debian packages: ${pkgs% }"
    # A fresh machine's package lists may be empty or stale: update once, then install.
    # shellcheck disable=SC2086
    { $how update -qq && $how install -y -qq --no-install-recommends ${pkgs% }; } >&2 \
        || die "$how install ${pkgs% } failed (see above): install ${pkgs% } yourself and rerun"
}

# Debian's kubectl (package kubernetes-client, 1.20) checks the Kubernetes
# emulator's wire fidelity and drives the controller demo. It is unpacked into
# the tools cache rather than installed: some machines already have another
# `kubectl` (e.g. Google Cloud SDK's) that the package would conflict with.
tools_dir=${LOOPHOST_TOOLS_DIR:-$HOME/.cache/loophost/tools}
debian_kubectl="$tools_dir/kubectl"

has_debian_kubectl() {
    [ -x "$debian_kubectl" ] && "$debian_kubectl" version --client >/dev/null 2>&1
}

install_debian_kubectl() {
    has_debian_kubectl && return 0
    command -v apt-get >/dev/null 2>&1 || die "no apt-get: put a kubectl at $debian_kubectl (or set LOOPHOST_KUBECTL) and rerun"
    local scratch
    scratch=$(mktemp -d)
    say "fetching Debian's kubectl (package kubernetes-client) into $tools_dir"
    # The package lists may be empty on a fresh machine: refresh them when root can.
    (cd "$scratch" && { apt-get download kubernetes-client >/dev/null 2>&1 \
        || { [ -n "$(installer)" ] && $(installer) update -qq >/dev/null 2>&1 && apt-get download kubernetes-client >/dev/null; }; }) \
        || die "apt-get download kubernetes-client failed: check the network and the Debian sources, then rerun"
    dpkg-deb -x "$scratch"/kubernetes-client_*.deb "$scratch/root" \
        || die "unpacking kubernetes-client failed (see above)"
    mkdir -p "$tools_dir"
    install -m 0755 "$scratch/root/usr/bin/kubectl" "$debian_kubectl"
    rm -rf "$scratch"
}

case "$mode" in
--plan)
    plan
    ;;
install)
    command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust with rustup (https://rustup.rs), then rerun"
    command -v rustup >/dev/null 2>&1 || die "rustup not found: the wasm32-wasip2 target is installed with rustup; install Rust with rustup (https://rustup.rs)"
    if ! has_wasm_target; then
        say "adding the wasm32-wasip2 Rust target"
        rustup target add wasm32-wasip2 >&2 || die "rustup target add wasm32-wasip2 failed (see above): check the network, then rerun"
    fi
    components=$(missing_components | paste -sd' ' -)
    if [ -n "$components" ]; then
        say "adding the Rust components $components"
        # shellcheck disable=SC2086 # one word per component
        rustup component add $components >&2 || die "rustup component add $components failed (see above): check the network, then rerun"
    fi
    install_packages
    install_debian_kubectl
    "$root/scripts/vendor-wasmtime-wasi.sh" || die "materializing the vendored wasmtime-wasi failed (see the line above)"
    "$root/scripts/build-guests.sh" >/dev/null || die "building the wasm32-wasip2 guests failed (see cargo's errors above)"
    ;;
*)
    die "usage: scripts/setup.sh [--plan]"
    ;;
esac
