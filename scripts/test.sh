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
    command -v chromium >/dev/null || command -v chromium-browser >/dev/null || pkgs+=(chromium)
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

[ "${SKIP_INSTALL:-0}" = 1 ] || install_deps

log "build tests"
cargo nextest run --workspace --no-run

log "run tests"
cargo nextest run --workspace --no-fail-fast
