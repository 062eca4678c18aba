#!/usr/bin/env bash
# Installs what the tests need, then runs every test of the workspace.
#
#   ./scripts/test.sh            # install (if missing) + run all tests
#   SKIP_INSTALL=1 ./scripts/test.sh
#
# Real components: Prometheus, promtool and node-exporter (Debian packages),
# systemd + dbus (for the real-systemd sandbox), stress-ng, pandas/pyarrow
# (the store must be readable from Python), Chromium (the backtest report is
# rendered headless; ~80 MB download, ~400 MB installed) and matplotlib +
# nbclient/nbformat/ipykernel (notebooks/backtest.ipynb is executed). Run as
# root on Debian/Ubuntu, or install those yourself and set SKIP_INSTALL=1.
#
# The Windows SCM adapter (crates/headroom-actuate/src/windows.rs) and the
# Windows service (crates/headroom-service/src/windows.rs) are
# type-checked, never run: `cargo check --target x86_64-pc-windows-gnu` needs
# the rustup target and a MinGW C compiler (ring and psm build C code even
# for a check). If either cannot be had, a banner says so and the tests go on.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s (%ss)\n' "$*" "$SECONDS"; }

install_deps() {
    local pkgs=()
    command -v prometheus >/dev/null || pkgs+=(prometheus)
    command -v promtool >/dev/null || pkgs+=(prometheus)
    command -v prometheus-node-exporter >/dev/null || pkgs+=(prometheus-node-exporter)
    command -v stress-ng >/dev/null || pkgs+=(stress-ng)
    command -v systemctl >/dev/null || pkgs+=(systemd)
    command -v dbus-daemon >/dev/null || pkgs+=(dbus)
    # The service install test asks the real polkit whether the generated rule grants a unit.
    [ -x /usr/lib/polkit-1/polkitd ] || pkgs+=(polkitd)
    command -v chromium >/dev/null || command -v chromium-browser >/dev/null || pkgs+=(chromium)
    command -v x86_64-w64-mingw32-gcc >/dev/null || pkgs+=(gcc-mingw-w64-x86-64-win32)
    if [ ${#pkgs[@]} -gt 0 ]; then
        log "apt-get install ${pkgs[*]}"
        if [ "$(id -u)" -ne 0 ]; then
            echo "need root to install ${pkgs[*]} (or install them and set SKIP_INSTALL=1)" >&2
            exit 1
        fi
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
    fi
    if ! python3 -c 'import pandas, pyarrow, matplotlib, nbclient, nbformat, ipykernel' 2>/dev/null; then
        log "pip install pandas pyarrow matplotlib nbclient nbformat ipykernel"
        python3 -m pip install -q --disable-pip-version-check pandas pyarrow matplotlib nbclient nbformat ipykernel
    fi
    if ! command -v cargo-nextest >/dev/null; then
        log "cargo install cargo-nextest"
        cargo install --locked cargo-nextest
    fi
}

banner() {
    local line='!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!'
    printf '\n%s\n' "$line" >&2
    printf '!!! %s\n' "$@" >&2
    printf '%s\n\n' "$line" >&2
}

# Type-checks the cfg(windows) code (it never runs here). Skipped, loudly,
# when the target or the MinGW compiler cannot be installed.
windows_check() {
    local target=x86_64-pc-windows-gnu
    if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
        if [ "${SKIP_INSTALL:-0}" != 1 ]; then
            log "rustup target add $target"
            rustup target add "$target" || true
        fi
        if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
            banner "WINDOWS CODE NOT TYPE-CHECKED: the rustup target $target could not be installed" \
                "(no rustup, or no network to static.rust-lang.org). crates/headroom-actuate/src/windows.rs and" \
                "crates/headroom-service/src/windows.rs were NOT compiled in this run. Fix: rustup target add $target"
            return 0
        fi
    fi
    if ! command -v x86_64-w64-mingw32-gcc >/dev/null; then
        banner "WINDOWS CODE NOT TYPE-CHECKED: x86_64-w64-mingw32-gcc is missing (ring and psm need it)." \
            "crates/headroom-actuate/src/windows.rs and crates/headroom-service/src/windows.rs were NOT compiled in this run." \
            "Fix: apt-get install gcc-mingw-w64-x86-64-win32"
        return 0
    fi
    # Only the SCM adapter and what every backend shares: no Kubernetes, no
    # systemd, and headroom-core without its Polars frames.
    log "cargo check --target $target -p headroom-actuate --lib --no-default-features --features windows (type-check only: nothing Windows runs here)"
    cargo check --target "$target" -p headroom-actuate --lib --no-default-features --features windows
    # The Windows service (install/uninstall/status, the dispatcher of
    # `headroom run --service`, the Event Log sink): crates/headroom-service/src/windows.rs.
    log "cargo check --target $target -p headroom-service --lib (type-check only: nothing Windows runs here)"
    cargo check --target "$target" -p headroom-service --lib
}

[ "${SKIP_INSTALL:-0}" = 1 ] || install_deps
windows_check

# The release profile: the tests reuse the dependencies `cargo run --release`
# built (only the workspace's crates and the test-only dependencies compile
# here), and run at release speed. Overflow checks stay on
# for the workspace's own crates (Cargo.toml).
log "build tests (release profile)"
cargo nextest run --workspace --cargo-profile release --no-run

log "run tests"
cargo nextest run --workspace --cargo-profile release --no-fail-fast
