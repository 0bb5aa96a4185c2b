#!/usr/bin/env bash
# Interop suite: real SIP peers (SIPp, pjsua2, baresip; one file each under suites/, see
# README.md beside this file) against a release build of presenced on 127.0.0.1. Every
# step is bounded in time and count. Ends with "interop: N passed, M failed, K skipped".
set -u
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

[ -x "$BIN" ] || cargo build --release --quiet || exit 1

# The README promise: `presenced run` with no configuration listens on 127.0.0.1:5060.
# Skipped (and said so) when something else holds 5060, as on a shared developer machine.
if port_free 5060; then
    mkdir -p "$WORK/default"
    (cd "$WORK/default" && RUST_LOG=info exec timeout 600 "$BIN" run >"$WORK/default/log" 2>&1) &
    default_pid=$!
    PIDS+=("$default_pid")
    for _ in $(seq 1 100); do grep -qs "listening on" "$WORK/default/log" && break; sleep 0.1; done
    run_sipp options-udp-default tests/interop/sipp/options.xml u1 5060
    run_sipp options-tcp-default tests/interop/sipp/options.xml t1 5060
    if [ -d "$WORK/default/presenced.db" ]; then pass default-database-directory
    else fail default-database-directory "$WORK/default/log"; fi
    kill "$default_pid" 2>/dev/null # frees 5060 for anything else on this machine
else
    skip "options-default: 127.0.0.1:5060 is in use by another process"
fi

PORT=$(free_port)
if ! start_presenced main "$PORT" >/dev/null; then
    fail "main presenced instance did not start"
    echo "interop: $PASSED passed, $FAILED failed, $SKIPPED skipped"
    exit 1
fi

# INTEROP_SUITES=PATTERN runs only the suites whose file name matches (development).
for extra in tests/interop/suites/*.sh; do
    [ -e "$extra" ] || continue
    case "$(basename "$extra")" in ${INTEROP_SUITES:-*}) ;; *) continue ;; esac
    source "$extra"
done

echo "interop: $PASSED passed, $FAILED failed, $SKIPPED skipped"
[ "$FAILED" -eq 0 ]
