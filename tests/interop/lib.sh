# Shared helpers for the interop scripts: build once, start presenced on free loopback
# ports with a temporary database, stop it, and run a SIPp scenario with bounded time.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${PRESENCED_BIN:-$ROOT/target/release/presenced}
WORK=$(mktemp -d /tmp/presenced-interop.XXXXXX)
PIDS=()

cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

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
    RUST_LOG=${RUST_LOG:-info} "$BIN" run --db "$WORK/$name/db" \
        --listen "udp:127.0.0.1:$port" --listen "tcp:127.0.0.1:$port" "$@" \
        >"$WORK/$name/log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    for _ in $(seq 1 100); do
        if grep -q "listening on" "$WORK/$name/log"; then
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

# run_sipp LABEL SCENARIO TRANSPORT(u1|t1) PORT [sipp args...]: runs one bounded scenario.
run_sipp() {
    local label=$1 scen=$2 transport=$3 port=$4; shift 4
    if timeout 60 sipp -sf "$scen" -t "$transport" -i 127.0.0.1 -p 0 -m 1 -timeout 20s \
        -timeout_error -max_recv_loops 100 -trace_err -error_file "$WORK/$label.err" \
        "$@" "127.0.0.1:$port" >"$WORK/$label.out" 2>&1 </dev/null; then
        echo "ok   $label"
        PASSED=$((PASSED + 1))
    else
        echo "FAIL $label"
        cat "$WORK/$label.out" | tail -30
        [ -f "$WORK/$label.err" ] && tail -40 "$WORK/$label.err"
        FAILED=$((FAILED + 1))
    fi
}
PASSED=0
FAILED=0
