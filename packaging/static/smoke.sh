#!/usr/bin/env bash
# Smoke test of one presenced binary (a static build from build.sh, or any other):
#   packaging/static/smoke.sh BINARY [RUNNER...]
# RUNNER runs a foreign binary, e.g. `qemu-aarch64` (a static musl binary needs no -L);
# it may be given as one word with spaces or as several words.
#
# Starts `BINARY run` with a throw-away configuration and database on free loopback
# ports (port 0: the daemon picks them and says which on its "presenced listening on"
# line), then with SIPp and the scenarios of tests/interop/sipp: OPTIONS gets 200 over
# UDP and TCP; a PUBLISH of a note, then a SUBSCRIBE whose first NOTIFY carries that
# note, an in-dialog refresh and an unsubscribe. Stops the daemon with SIGTERM and
# expects it to exit 0. Every step is bounded in time; ends with
# "smoke: N passed, M failed" and exits non-zero on any failure.
# SMOKE_KEEP=1 keeps the work directory (daemon log, SIPp output).
set -u

if [ $# -lt 1 ] || [ ! -f "$1" ]; then
    echo "usage: $0 BINARY [RUNNER...]" >&2
    exit 2
fi
BIN=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
shift
# shellcheck disable=SC2206 # "qemu-aarch64 -L /x" as one argument is split on purpose
RUNNER=($*)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SCEN=$ROOT/tests/interop/sipp
START_TIMEOUT=${SMOKE_START_TIMEOUT:-30}

command -v sipp >/dev/null || { echo "smoke: sipp is not installed (Debian sip-tester)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "smoke: python3 is needed for free ports" >&2; exit 2; }

WORK=$(mktemp -d /tmp/presenced-smoke.XXXXXX)
DAEMON=
PASSED=0
FAILED=0

# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
    if [ -n "$DAEMON" ] && kill -0 "$DAEMON" 2>/dev/null; then
        kill -KILL "$DAEMON" 2>/dev/null
        wait "$DAEMON" 2>/dev/null
    fi
    if [ -n "${SMOKE_KEEP:-}" ]; then
        echo "smoke: logs kept in $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

pass() {
    echo "ok   $1"
    PASSED=$((PASSED + 1))
}
fail() {
    local label=$1 f
    shift
    echo "FAIL $label"
    for f in "$@"; do
        [ -s "$f" ] && { echo "--- $f"; tail -40 "$f"; }
    done
    FAILED=$((FAILED + 1))
}
finish() {
    echo "smoke: $PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
    exit
}

# free_port: a loopback port free for UDP (SIPp's own; its Contact names it).
free_port() {
    python3 -c 'import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1]); s.close()'
}

# sipp_run LABEL SCENARIO TRANSPORT(u1|t1) PORT [sipp args...]: one call, bounded.
sipp_run() {
    local label=$1 scen=$2 transport=$3 port=$4
    shift 4
    if timeout 60 sipp -sf "$scen" -t "$transport" -i 127.0.0.1 -p "$(free_port)" -nd -m 1 \
        -timeout 30s -timeout_error -max_recv_loops 100 \
        -trace_err -error_file "$WORK/$label.err" -trace_logs -log_file "$WORK/$label.log" \
        "$@" "127.0.0.1:$port" >"$WORK/$label.out" 2>&1 </dev/null; then
        pass "$label"
    else
        fail "$label" "$WORK/$label.out" "$WORK/$label.err" "$WORK/$label.log" "$WORK/daemon.log"
    fi
}

echo "smoke: $BIN${RUNNER[*]:+ under ${RUNNER[*]}}"
if command -v file >/dev/null; then file -b "$BIN"; fi

cat >"$WORK/presenced.toml" <<EOF
db = "$WORK/db"
listen = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]
xcap_listen = "127.0.0.1:0"
EOF

# The daemon, bounded in time as a whole; SIGTERM to timeout(1) reaches it.
RUST_LOG=${RUST_LOG:-info} timeout 300 "${RUNNER[@]}" "$BIN" run --config "$WORK/presenced.toml" \
    >"$WORK/daemon.log" 2>&1 </dev/null &
DAEMON=$!

# Wait for the ready line (it names the bound addresses), the daemon's exit, or the
# deadline, whichever comes first.
deadline=$((SECONDS + START_TIMEOUT))
ready=
while [ "$SECONDS" -lt "$deadline" ]; do
    ready=$(grep -m1 -o 'presenced listening on .*' "$WORK/daemon.log" 2>/dev/null)
    [ -n "$ready" ] && break
    kill -0 "$DAEMON" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$ready" ]; then
    fail "daemon started (no 'presenced listening on' line within ${START_TIMEOUT}s)" "$WORK/daemon.log"
    finish
fi
echo "     $ready"
UDP=$(sed -n 's/.*udp:127\.0\.0\.1:\([0-9]*\).*/\1/p' <<<"$ready")
TCP=$(sed -n 's/.*tcp:127\.0\.0\.1:\([0-9]*\).*/\1/p' <<<"$ready")
if [ -z "$UDP" ] || [ -z "$TCP" ]; then
    fail "ports read off the ready line" "$WORK/daemon.log"
    finish
fi
pass "daemon started (udp $UDP, tcp $TCP)"

sipp_run options-udp "$SCEN/options.xml" u1 "$UDP"
sipp_run options-tcp "$SCEN/options.xml" t1 "$TCP"
note="static smoke $$"
sipp_run publish "$SCEN/publish_note.xml" u1 "$UDP" -s smoke -key note "$note"
sipp_run subscribe-notify "$SCEN/subscribe_dialog.xml" u1 "$UDP" -s smoke -key note "$note"

# Graceful stop: SIGTERM, exit status 0 within the bound.
kill -TERM "$DAEMON" 2>/dev/null
deadline=$((SECONDS + 30))
while kill -0 "$DAEMON" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
if kill -0 "$DAEMON" 2>/dev/null; then
    fail "daemon stopped on SIGTERM (still running after 30 s)" "$WORK/daemon.log"
else
    wait "$DAEMON"
    rc=$?
    DAEMON=
    if [ "$rc" -eq 0 ]; then pass "daemon stopped on SIGTERM"
    else fail "daemon stopped on SIGTERM (exit status $rc)" "$WORK/daemon.log"; fi
fi
finish
