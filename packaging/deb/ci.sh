#!/usr/bin/env bash
# The Debian package's CI check, run as root from any directory (the caller has run
# `apt-get update`): installs cargo-deb (cached across runs), builds the .deb, installs
# it with dpkg, checks its files and its systemd unit, starts the packaged binary with
# the packaged configuration by hand (CI runs no systemd), sends it a SIP OPTIONS and
# requires a 200, stops it with SIGTERM, then purges the package and checks that the
# configuration and the database are gone. Exits non-zero at the first failure; every
# step has a time limit.
#
# Environment:
#   PRESENCED_TOOLS  where cargo-deb is installed and found again
#                    (default: ~/.cache/presenced/tools, outside the work tree, so a
#                    fresh clone on the same machine reuses it)
#   CI=true          a presenced package already installed (left by an interrupted run)
#                    is purged first; without CI=true the script refuses to touch it
set -euo pipefail
cd "$(dirname "$0")/../.."
export DEBIAN_FRONTEND=noninteractive

CARGO_DEB_VERSION=3.8.0
TOOLS="${PRESENCED_TOOLS:-${HOME:-/root}/.cache/presenced/tools}"
CONFIG=/etc/presenced/presenced.toml
PORT=5060
WORK="$(mktemp -d /tmp/presenced-deb-ci.XXXXXX)"
LOG="$WORK/presenced.log"
START=$SECONDS

passed=0
daemon_pid=""
installed=""

step() { printf '\n--- %s\n' "$*"; }
ok() {
    passed=$((passed + 1))
    printf 'ok: %s\n' "$*"
}
fail() {
    printf 'FAIL: %s\n' "$*" >&2
    if [ -s "$LOG" ]; then
        printf -- '--- presenced output (last 40 lines):\n' >&2
        tail -n 40 "$LOG" >&2
    fi
    printf 'deb: %d passed, 1 failed\n' "$passed"
    exit 1
}

# Whatever happens, leave no daemon running and no package installed behind us.
cleanup() {
    if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
        kill -TERM "$daemon_pid" 2>/dev/null || true
        for _ in $(seq 100); do
            kill -0 "$daemon_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$daemon_pid" 2>/dev/null || true
    fi
    if [ -n "$installed" ]; then
        dpkg --purge presenced >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# Sockets on port $PORT, from /proc/net (TCP in LISTEN state, or any UDP socket).
port_users() {
    local hex
    hex=$(printf '%04X' "$PORT")
    awk -v hex=":$hex" 'FNR > 1 && substr($2, length($2) - 4) == hex &&
        (FILENAME ~ /udp/ || $4 == "0A") { print FILENAME ": " $2 }' \
        /proc/net/tcp /proc/net/tcp6 /proc/net/udp /proc/net/udp6 2>/dev/null
}

step "tools"
for pkg in sipsak:sipsak systemd-analyze:systemd dpkg-deb:dpkg; do
    if ! command -v "${pkg%%:*}" >/dev/null; then
        timeout 600 apt-get install -y -qq "${pkg#*:}" >/dev/null || fail "apt-get install ${pkg#*:}"
    fi
done
export PATH="$TOOLS/bin:$PATH"
if [ "$(cargo-deb --version 2>/dev/null)" = "cargo-deb $CARGO_DEB_VERSION" ]; then
    ok "cargo-deb $CARGO_DEB_VERSION cached in $TOOLS"
else
    t=$SECONDS
    timeout 1500 cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked \
        --root "$TOOLS" --quiet || fail "cargo install cargo-deb"
    ok "cargo-deb $CARGO_DEB_VERSION installed into $TOOLS in $((SECONDS - t)) s"
fi

step "build the package"
if dpkg-query -W -f='${Status}' presenced 2>/dev/null | grep -q installed; then
    [ "${CI:-}" = "true" ] || fail "presenced is already installed here; purge it first (dpkg --purge presenced) or run with CI=true"
    echo "purging a presenced package left by an earlier run"
    dpkg --purge presenced >/dev/null || fail "dpkg --purge of the earlier package"
fi
t=$SECONDS
timeout 1800 cargo deb -- --locked >"$WORK/cargo-deb.out" 2>"$WORK/cargo-deb.err" || {
    cat "$WORK/cargo-deb.err" >&2
    fail "cargo deb"
}
deb=$(tail -n 1 "$WORK/cargo-deb.out")
[ -f "$deb" ] || fail "cargo deb printed no package path (got: $deb)"
ok "cargo deb: $deb, $(stat -c %s "$deb") bytes, in $((SECONDS - t)) s"

step "install"
timeout 300 dpkg -i "$deb" || fail "dpkg -i $deb"
installed=yes
ok "dpkg -i"
unit=""
for f in /lib/systemd/system/presenced.service /usr/lib/systemd/system/presenced.service; do
    [ -f "$f" ] && unit=$f && break
done
[ -n "$unit" ] || fail "no presenced.service under /lib/systemd/system"
[ -x /usr/bin/presenced ] || fail "/usr/bin/presenced missing or not executable"
[ -f "$CONFIG" ] || fail "$CONFIG missing"
for f in /usr/share/presenced/schema/{mysql,postgres,sqlite}.sql \
    /usr/share/doc/presenced/{README.md,configuration.md,copyright}; do
    [ -s "$f" ] || fail "$f missing or empty"
done
dpkg-query -W -f='${Conffiles}\n' presenced | grep -q "^ $CONFIG " ||
    fail "$CONFIG is not registered as a conffile"
ok "files in place: /usr/bin/presenced, $unit, $CONFIG (conffile), schema, docs"
/usr/bin/presenced check-config "$CONFIG" >"$WORK/effective.toml" ||
    fail "presenced check-config $CONFIG"
ok "presenced check-config accepts the packaged configuration"

step "systemd-analyze verify"
if ! timeout 60 systemd-analyze verify "$unit" >"$WORK/verify.out" 2>&1 || [ -s "$WORK/verify.out" ]; then
    cat "$WORK/verify.out" >&2
    fail "systemd-analyze verify $unit"
fi
ok "systemd-analyze verify $unit: clean"

step "run the packaged binary with the packaged configuration (not through systemd)"
# The packaged configuration listens on 127.0.0.1:5060. Something else there (SIPp
# run with `-p 0` binds 5060, for one) gets 60 s to go away.
deadline=$((SECONDS + 60))
while users=$(port_users) && [ -n "$users" ]; do
    [ $SECONDS -lt $deadline ] || fail "port $PORT is still in use after 60 s, stop what holds it:
$users
$(ss -lntup 2>/dev/null | grep ":$PORT " || true)"
    sleep 0.5
done
# The command line is the unit's own ExecStart, so the test runs what systemd would.
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
case "$exec_start" in
    "/usr/bin/presenced run "*) ;;
    *) fail "unexpected ExecStart in $unit: $exec_start" ;;
esac
read -r -a argv <<<"$exec_start"
"${argv[@]}" >"$LOG" 2>&1 &
daemon_pid=$!
deadline=$((SECONDS + 30))
until grep -q "presenced listening on" "$LOG"; do
    kill -0 "$daemon_pid" 2>/dev/null || fail "presenced exited before listening"
    [ $SECONDS -lt $deadline ] || fail "presenced did not log 'presenced listening on' within 30 s"
    sleep 0.1
done
ok "$(grep -o 'presenced listening on.*' "$LOG" | head -n 1)"

timeout 20 sipsak -vv -s "sip:x@127.0.0.1:$PORT" -H 127.0.0.1 >"$WORK/sipsak.out" 2>&1 || {
    cat "$WORK/sipsak.out" >&2
    fail "sipsak OPTIONS sip:x@127.0.0.1:$PORT: no 200"
}
grep -q "^SIP/2.0 200" "$WORK/sipsak.out" || {
    cat "$WORK/sipsak.out" >&2
    fail "sipsak: the reply is not a 200"
}
ok "OPTIONS sip:x@127.0.0.1:$PORT answered: $(grep -m 1 '^SIP/2.0 200' "$WORK/sipsak.out" | tr -d '\r')"

timeout 20 /usr/bin/presenced ctl --config "$CONFIG" ping >/dev/null ||
    fail "presenced ctl --config $CONFIG ping (the control socket from the packaged configuration)"
timeout 60 /usr/bin/presenced dump --config "$CONFIG" -o "$WORK/backup.sql" ||
    fail "presenced dump --config $CONFIG (through the running daemon)"
ok "ctl ping and dump through the control socket of the packaged configuration"
# ExecReload as the unit has it, once the daemon has a reload command.
exec_reload=$(sed -n 's/^ExecReload=//p' "$unit")
if /usr/bin/presenced ctl reload --help >/dev/null 2>&1; then
    read -r -a argv <<<"$exec_reload"
    timeout 20 "${argv[@]}" || fail "the unit's ExecReload: $exec_reload"
    ok "ExecReload: $exec_reload"
else
    echo "skipped: ExecReload ($exec_reload): this build has no 'ctl reload'"
fi

kill -TERM "$daemon_pid"
deadline=$((SECONDS + 30))
while kill -0 "$daemon_pid" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || fail "presenced still running 30 s after SIGTERM"
    sleep 0.1
done
status=0
wait "$daemon_pid" || status=$?
daemon_pid=""
[ "$status" -eq 0 ] || fail "presenced exited with status $status after SIGTERM"
grep -qi "panicked" "$LOG" && fail "presenced panicked"
ok "SIGTERM: presenced stopped cleanly (exit 0)"
[ -d /var/lib/presenced ] || fail "the database directory /var/lib/presenced was not created"

step "purge"
timeout 300 dpkg --purge presenced || fail "dpkg --purge presenced"
installed=""
for f in /etc/presenced /var/lib/presenced /var/lib/private/presenced /usr/bin/presenced "$unit" \
    /etc/systemd/system/multi-user.target.wants/presenced.service; do
    if [ -e "$f" ] || [ -L "$f" ]; then
        fail "$f is still there after dpkg --purge"
    fi
done
ok "dpkg --purge removed /etc/presenced, /var/lib/presenced, the binary and the unit"

printf '\ndeb: %d passed, 0 failed (%d s)\n' "$passed" $((SECONDS - START))
