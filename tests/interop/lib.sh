# Shared helpers for the interop scripts: build once, start presenced on free loopback
# ports with a temporary database, stop it, and run a SIPp scenario with bounded time.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${PRESENCED_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/presenced}
WORK=$(mktemp -d /tmp/presenced-interop.XXXXXX)
PIDS=()

cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    if [ -n "${INTEROP_KEEP:-}" ]; then
        echo "interop: logs and traces kept in $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

# port_free PORT: true when PORT is free on 127.0.0.1 for both UDP and TCP.
port_free() {
    python3 - "$1" <<'PY'
import socket, sys
port = int(sys.argv[1])
for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
    s = socket.socket(socket.AF_INET, kind)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        sys.exit(1)
    finally:
        s.close()
PY
}

# free_port_block N: the first of N consecutive loopback ports, all free for UDP and TCP
# (baresip also binds TLS on its SIP port + 1, so it needs two).
free_port_block() {
    local n=$1 base i
    while true; do
        base=$(free_port)
        i=1
        while [ "$i" -lt "$n" ] && port_free $((base + i)); do i=$((i + 1)); done
        if [ "$i" -eq "$n" ]; then
            echo "$base"
            return
        fi
    done
}

# free_port: a free loopback port (UDP and TCP both free).
free_port() {
    python3 - <<'PY'
import socket
while True:
    t = socket.socket(); t.bind(("127.0.0.1", 0)); port = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", port)); print(port); break
    except OSError:
        pass
    finally:
        t.close(); u.close()
PY
}

# start_presenced NAME PORT [extra args...]: starts the daemon and waits for its ports.
start_presenced() {
    local name=$1 port=$2; shift 2
    mkdir -p "$WORK/$name"
    RUST_LOG=${RUST_LOG:-info} timeout 600 "$BIN" run --db "$WORK/$name/db" \
        --listen "udp:127.0.0.1:$port" --listen "tcp:127.0.0.1:$port" "$@" \
        >"$WORK/$name/log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    for _ in $(seq 1 100); do
        if grep -qs "listening on" "$WORK/$name/log"; then
            echo "$pid"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then break; fi
        sleep 0.1
    done
    echo "presenced did not start:" >&2
    cat "$WORK/$name/log" >&2
    return 1
}

# pass LABEL / fail LABEL [FILE...]: count a check and, on failure, show what explains it.
pass() {
    echo "ok   $1"
    PASSED=$((PASSED + 1))
}
skip() {
    echo "skip $1"
    SKIPPED=$((SKIPPED + 1))
}
fail() {
    local label=$1; shift
    echo "FAIL $label"
    local f
    for f in "$@"; do
        [ -s "$f" ] && { echo "--- $f"; tail -40 "$f"; }
    done
    FAILED=$((FAILED + 1))
}

# report_checks LABEL FILE [FILE...]: counts the "ok   NAME" / "FAIL NAME: why" lines a
# checker printed into FILE (the others are shown on failure), as "LABEL: NAME". A NAME
# in KNOWN_BUGS (NAME -> reason) is an expected failure: it counts as skipped and says
# why; if it passes, it counts as passed and asks for its KNOWN_BUGS entry to go.
report_checks() {
    local label=$1 file=$2; shift 2
    local line name
    while IFS= read -r line; do
        case "$line" in
            "ok   "*)
                name=${line#ok   }
                pass "$label: $name"
                if [ -n "${KNOWN_BUGS[$name]:-}" ]; then
                    echo "     ^ was a known bug (${KNOWN_BUGS[$name]}): it passes now, remove it from KNOWN_BUGS"
                fi
                ;;
            "FAIL "*)
                name=${line#FAIL }
                name=${name%%: *}
                if [ -n "${KNOWN_BUGS[$name]:-}" ]; then
                    echo "xfail $label: ${line#FAIL }"
                    echo "     known server bug: ${KNOWN_BUGS[$name]}"
                    SKIPPED=$((SKIPPED + 1))
                else
                    fail "$label: ${line#FAIL }" "$@"
                fi
                ;;
        esac
    done < <(grep -E '^(ok   |FAIL )' "$file")
}

# run_pjsua2 PREFIX BASE SHOW SCRIPT ARGS...: runs a pjsua2 script with $PJ_PY (60 s at
# most, its steps 30 s; output in BASE.out, pjsip's log in BASE.pjsip.log), counts its
# "ok"/"FAIL" lines under PREFIX (SHOW, if not empty, is one more file shown on failure)
# and fails when it exited non-zero without naming a step.
run_pjsua2() {
    local prefix=$1 base=$2 show=$3 script=$4; shift 4
    timeout 60 "$PJ_PY" -u "$script" --timeout 30 --log "$base.pjsip.log" "$@" \
        >"$base.out" 2>&1 </dev/null
    local rc=$?
    report_checks "$prefix" "$base.out" "$base.pjsip.log" ${show:+"$show"}
    if [ "$rc" -ne 0 ] && ! grep -q '^FAIL ' "$base.out"; then
        fail "$(basename "$base"): exited $rc" "$base.out" "$base.pjsip.log"
    fi
}

# xcurl LABEL EXPECTED_STATUS curl-args...: one bounded request, status checked.
xcurl() {
    local label=$1 want=$2; shift 2
    local got
    got=$(curl -s --max-time 5 -o "$WORK/$label.body" -D "$WORK/$label.head" -w '%{http_code}' "$@")
    if [ "$got" = "$want" ]; then
        echo "ok   $label"
        PASSED=$((PASSED + 1))
    else
        echo "FAIL $label: HTTP $got, expected $want"
        cat "$WORK/$label.head" "$WORK/$label.body" 2>/dev/null | head -20
        FAILED=$((FAILED + 1))
    fi
}

# baresip_dir DIR PORT ACCOUNT-LINE [CONTACT-LINE]: a config directory for one instance
# listening on PORT (and, for TLS, PORT + 1: both must be free).
baresip_dir() {
    local dir=$1 port=$2 account=$3 contact=${4:-}
    mkdir -p "$dir"
    cat >"$dir/config" <<CONF
poll_method		epoll
sip_listen		127.0.0.1:$port
audio_player		none
audio_source		none
module_path		/usr/lib/baresip/modules
module_app		account.so
module_app		contact.so
module_app		presence.so
CONF
    echo "$account" >"$dir/accounts"
    echo "$contact" >"$dir/contacts"
}

# write_config NAME LINES...: a TOML file for one presenced instance; prints its path.
write_config() {
    local name=$1; shift
    mkdir -p "$WORK/$name"
    printf '%s\n' "$@" >"$WORK/$name/config.toml"
    echo "$WORK/$name/config.toml"
}

# sipp_exec LABEL SCENARIO TRANSPORT(u1|t1|tn) PORT [sipp args...]: runs SIPp bounded in
# time, on its own free local port (its Contact must not point at another listener), with
# no default behaviours (-nd: no BYE on abort, the scenario alone decides).
# Output, errors and the scenario's <log> lines go to $WORK/LABEL.{out,err,log}.
sipp_exec() {
    local label=$1 scen=$2 transport=$3 port=$4; shift 4
    timeout 60 sipp -sf "$scen" -t "$transport" -i 127.0.0.1 -p "$(free_port)" -nd \
        -timeout 30s -timeout_error -max_recv_loops 100 \
        -trace_err -error_file "$WORK/$label.err" -trace_logs -log_file "$WORK/$label.log" \
        "$@" "127.0.0.1:$port" >"$WORK/$label.out" 2>&1 </dev/null
}

# sipp_result LABEL RC: counts a finished SIPp run (LABEL may be in KNOWN_BUGS).
sipp_result() {
    local reason=${KNOWN_BUGS[$1]:-}
    if [ "$2" -eq 0 ]; then
        pass "$1"
        [ -n "$reason" ] && echo "     ^ was a known bug ($reason): it passes now, remove it from KNOWN_BUGS"
    elif [ -n "$reason" ]; then
        echo "xfail $1"
        echo "     known server bug: $reason"
        SKIPPED=$((SKIPPED + 1))
    else
        fail "$1" "$WORK/$1.out" "$WORK/$1.err" "$WORK/$1.log"
    fi
    return 0
}

# run_sipp LABEL SCENARIO TRANSPORT(u1|t1) PORT [sipp args...]: one call of one scenario.
run_sipp() {
    local label=$1
    sipp_exec "$@" -m 1
    sipp_result "$label" $?
}
PASSED=0
FAILED=0
SKIPPED=0
# Checks that fail because of a known server bug: check name -> the bug.
declare -A KNOWN_BUGS=()
