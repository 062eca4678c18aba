#!/bin/sh
# headroom's systemd sandbox for tests: a real systemd, with its D-Bus API,
# booted as PID 1 of a private PID + mount namespace on a machine where systemd
# is not PID 1 (a container, a CI runner). Booted by the one test harness,
# headroom_testing::systemd::Sandbox (crates/headroom-testing), for the actuate,
# collect and end-to-end tests (override the path with HEADROOM_SYSTEMD_SANDBOX).
#
#   systemd-sandbox.sh start STATE_DIR [UNIT_FILE ...]
#       Boots the sandbox and waits (≤ 30 s) until org.freedesktop.systemd1
#       answers on its bus. Each UNIT_FILE is installed and started with it.
#       Prints, on stdout:
#         DBUS_SYSTEM_BUS_ADDRESS=unix:path=STATE_DIR/run/dbus/system_bus_socket
#         SYSTEMD_PID=<host pid of the sandbox's PID 1>
#       Units written later to STATE_DIR/run/systemd/system/ are seen after a
#       daemon reload (D-Bus Manager.Reload, or `exec STATE_DIR systemctl daemon-reload`).
#   systemd-sandbox.sh exec STATE_DIR COMMAND [ARG ...]
#       Runs COMMAND inside the sandbox's namespaces (systemctl, busctl, ...).
#   systemd-sandbox.sh stop STATE_DIR
#       Kills the sandbox (by its PID, never by name) and removes the cgroup
#       folders that appeared while it ran.
#
# What the sandbox sees: the host's file system, except /run (STATE_DIR/run,
# bind-mounted), /tmp and /var/tmp (empty tmpfs). HEADROOM_SANDBOX_SHARE
# (directories separated by `:`, set for `start`) keeps those directories the
# host's, at the same paths, even under /tmp or /var/tmp: files a test writes
# there are seen inside (a checkout under /tmp, its binaries and test files).
# HEADROOM_SANDBOX_OVERLAY (directories separated by `:`, set for `start`)
# makes those host directories copy-on-write inside: the sandbox reads the
# host's files there, but what it writes, renames or deletes lands in
# STATE_DIR/overlay/<n>/upper (n: the directory's position in the list) and
# never on the host (e.g. /etc, to install a service with its user, unit and
# polkit rule at their real paths). Its units: a D-Bus system bus
# (socket-activated), journald (socket-activated, volatile: /run/log/journal,
# read with `exec STATE_DIR journalctl`), the given units, polkit when the
# bus asks for it, and nothing of the host's boot chain; the
# systemd-tmpfiles units are masked so that nothing cleans the host's
# directories.
#
# Needs root, util-linux (unshare, nsenter), the Debian packages `systemd` and
# `dbus` (scripts/test.sh installs them), and a cgroup setup in which a nested
# systemd can run (cgroup v1 here; v2 with a writable hierarchy works too).
set -eu

fail() {
    echo "systemd-sandbox: $*" >&2
    exit 1
}

[ $# -ge 2 ] || fail "usage: $0 start STATE_DIR [UNIT_FILE ...] | exec STATE_DIR COMMAND [ARG ...] | stop STATE_DIR"
action=$1
state=$2
shift 2
case "$state" in
    /*) ;;
    *) state="$PWD/$state" ;;
esac
[ "$(id -u)" -eq 0 ] || fail "needs root (it mounts and boots systemd in namespaces of its own)"

# Every cgroup folder a systemd could create: the slices, scopes and mounts at
# the top of each hierarchy (v1: one per controller; v2: one).
list_cgroups() {
    for top in /sys/fs/cgroup/ /sys/fs/cgroup/*/; do
        [ -d "$top" ] || continue
        for dir in "$top"*.slice "$top"*.scope "$top"*.mount; do
            [ -d "$dir" ] && printf '%s\n' "$dir"
        done
    done | sort -u
}

sandbox_pid() {
    [ -s "$state/pid" ] && cat "$state/pid"
}

start() {
    for need in /lib/systemd/systemd /usr/bin/dbus-daemon unshare nsenter busctl setsid; do
        [ -x "$need" ] || command -v "$need" >/dev/null 2>&1 ||
            fail "$need is missing (apt-get install systemd dbus util-linux)"
    done
    if pid=$(sandbox_pid) && kill -0 "$pid" 2>/dev/null; then
        fail "a sandbox already runs from $state (pid $pid); stop it first"
    fi
    rm -rf "$state"
    mkdir -p "$state/run/systemd/system" "$state/units"
    list_cgroups >"$state/cgroups-before"
    wanted=""
    for unit in "$@"; do
        [ -f "$unit" ] || fail "unit file $unit does not exist"
        cp "$unit" "$state/units/"
        wanted="$wanted $(basename "$unit")"
    done

    # Shared directories: held under the sandbox's /run while /tmp and /var/tmp
    # are replaced, then bound back at their own paths.
    hold=""
    restore=""
    i=0
    old_ifs=$IFS
    IFS=:
    for dir in ${HEADROOM_SANDBOX_SHARE:-}; do
        [ -n "$dir" ] || continue
        [ -d "$dir" ] || fail "HEADROOM_SANDBOX_SHARE: $dir is not a directory"
        hold="$hold
mkdir -p /run/.share/$i && mount --bind '$dir' /run/.share/$i"
        restore="$restore
mkdir -p '$dir' && mount --bind /run/.share/$i '$dir'"
        i=$((i + 1))
    done
    overlay=""
    i=0
    IFS=:
    for dir in ${HEADROOM_SANDBOX_OVERLAY:-}; do
        [ -n "$dir" ] || continue
        [ -d "$dir" ] || fail "HEADROOM_SANDBOX_OVERLAY: $dir is not a directory"
        mkdir -p "$state/overlay/$i/upper" "$state/overlay/$i/work"
        printf '%s\n' "$dir" >"$state/overlay/$i/path"
        overlay="$overlay
mount -t overlay overlay -o 'lowerdir=$dir,upperdir=$state/overlay/$i/upper,workdir=$state/overlay/$i/work' '$dir'"
        i=$((i + 1))
    done
    IFS=$old_ifs

    # PID 1's script, run inside the new namespaces. Everything it writes
    # lands in $state/run (the sandbox's /run), never on the host.
    cat >"$state/init.sh" <<EOF
#!/bin/sh
set -e
mount --bind '$state/run' /run
mkdir -p /run/lock /run/dbus /run/systemd/journald.conf.d
units=/run/systemd/system
# The journal stays in the sandbox's /run, never the host's /var/log/journal.
printf '[Journal]\nStorage=volatile\nRateLimitBurst=0\n' >/run/systemd/journald.conf.d/headroom-sandbox.conf
for masked in systemd-tmpfiles-setup.service systemd-tmpfiles-setup-dev.service \\
    systemd-tmpfiles-clean.service systemd-tmpfiles-clean.timer; do
    ln -sf /dev/null "\$units/\$masked"
done
cat >"\$units/dbus.socket" <<'UNIT'
[Unit]
DefaultDependencies=no
[Socket]
ListenStream=/run/dbus/system_bus_socket
UNIT
cat >"\$units/dbus.service" <<'UNIT'
[Unit]
DefaultDependencies=no
Requires=dbus.socket
After=dbus.socket
[Service]
Type=notify
ExecStart=/usr/bin/dbus-daemon --system --address=systemd: --nofork --nopidfile --systemd-activation --nosyslog
UNIT
for unit in '$state'/units/*; do
    [ -e "\$unit" ] && cp "\$unit" "\$units/"
done
cat >"\$units/headroom-sandbox.target" <<'UNIT'
[Unit]
Description=headroom test sandbox
DefaultDependencies=no
Wants=dbus.socket dbus.service systemd-journald.socket$wanted
UNIT
$overlay
$hold
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=1777 tmpfs /var/tmp
$restore
export container=headroom-sandbox
exec /lib/systemd/systemd --unit=headroom-sandbox.target --log-target=console --show-status=no
EOF
    chmod +x "$state/init.sh"

    # unshare forks: its child (PID 1 inside) is the process to track and kill.
    setsid unshare --pid --fork --mount-proc --propagation private /bin/sh "$state/init.sh" \
        >"$state/systemd.log" 2>&1 </dev/null &
    outer=$!
    tries=0
    while :; do
        pid=$(pgrep -P "$outer" 2>/dev/null | head -n 1 || true)
        [ -n "$pid" ] && break
        tries=$((tries + 1))
        [ $tries -le 100 ] || fail "the sandbox's PID 1 did not appear in 10 s; see $state/systemd.log"
        sleep 0.1
    done
    echo "$pid" >"$state/pid"

    bus="unix:path=$state/run/dbus/system_bus_socket"
    tries=0
    until busctl --address="$bus" get-property org.freedesktop.systemd1 /org/freedesktop/systemd1 \
        org.freedesktop.systemd1.Manager Version >/dev/null 2>&1; do
        tries=$((tries + 1))
        if [ $tries -gt 300 ]; then
            "$0" stop "$state" >/dev/null 2>&1 || true
            fail "systemd did not answer on $bus in 30 s; see $state/systemd.log"
        fi
        sleep 0.1
    done
    echo "DBUS_SYSTEM_BUS_ADDRESS=$bus"
    echo "SYSTEMD_PID=$pid"
}

stop() {
    if pid=$(sandbox_pid); then
        kill -KILL "$pid" 2>/dev/null || true
        tries=0
        while kill -0 "$pid" 2>/dev/null && [ $tries -lt 50 ]; do
            sleep 0.1
            tries=$((tries + 1))
        done
        rm -f "$state/pid"
    fi
    # Remove, deepest first, every cgroup folder that was not there before the
    # start (a folder with a live process in it stays: rmdir refuses it).
    if [ -f "$state/cgroups-before" ]; then
        list_cgroups | while read -r dir; do
            grep -qxF "$dir" "$state/cgroups-before" && continue
            find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null || true
        done
    fi
}

case "$action" in
    start) start "$@" ;;
    exec)
        pid=$(sandbox_pid) || fail "no sandbox runs from $state"
        exec nsenter --target "$pid" --mount --pid "$@"
        ;;
    stop) stop ;;
    *) fail "unknown action $action (start, exec or stop)" ;;
esac
