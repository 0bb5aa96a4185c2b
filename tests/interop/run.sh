#!/usr/bin/env bash
# Interop suite: real SIP peers (SIPp today; pjsua2, baresip as they land) against a
# release build of presenced on 127.0.0.1. Every step is bounded in time and count.
set -u
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

[ -x "$BIN" ] || cargo build --release --quiet || exit 1

# The README promise: `presenced run` with no configuration listens on 127.0.0.1:5060.
mkdir -p "$WORK/default"
(cd "$WORK/default" && RUST_LOG=info exec "$BIN" run >"$WORK/default/log" 2>&1) &
PIDS+=("$!")
for _ in $(seq 1 100); do grep -q "listening on" "$WORK/default/log" && break; sleep 0.1; done
run_sipp options-udp-default tests/interop/sipp/options.xml u1 5060
run_sipp options-tcp-default tests/interop/sipp/options.xml t1 5060
[ -d "$WORK/default/presenced.db" ] || { echo "FAIL default database directory missing"; FAILED=$((FAILED + 1)); }

PORT=$(free_port)
start_presenced main "$PORT" >/dev/null || exit 1

for extra in tests/interop/suites/*.sh; do
    [ -e "$extra" ] || continue
    source "$extra"
done

echo "interop: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
