# pjsua2 suite, sourced by run.sh: pjsip's presence stack (PUBLISH with PIDF+RPID, buddy
# SUBSCRIBE) through presenced, over UDP and TCP; see tests/interop/pjsua2_presence.py for
# the steps. Each step the script prints ("ok   ..." / "FAIL ...") counts as one check.
# Python with pjsua2 comes from the venv .ci/run makes (INTEROP_PYTHON overrides it).
PJ_PY=${INTEROP_PYTHON:-$ROOT/target/interop-venv/bin/python}

if "$PJ_PY" -c 'import pjsua2' >/dev/null 2>&1; then
    for t in udp tcp; do
        label="pjsua2-$t"
        timeout 60 "$PJ_PY" -u tests/interop/pjsua2_presence.py --port "$PORT" --transport "$t" \
            --timeout 30 --log "$WORK/$label.pjsip.log" >"$WORK/$label.out" 2>&1 </dev/null
        rc=$?
        report_checks pjsua2 "$WORK/$label.out" "$WORK/$label.pjsip.log"
        if [ "$rc" -ne 0 ] && ! grep -q '^FAIL ' "$WORK/$label.out"; then
            fail "$label: exited $rc" "$WORK/$label.out" "$WORK/$label.pjsip.log"
        fi
    done
elif [ "${CI:-}" = true ]; then
    fail "pjsua2: no Python with pjsua2 at $PJ_PY (.ci/run makes target/interop-venv)"
else
    skip "pjsua2: no Python with pjsua2 at $PJ_PY (python3 -m venv target/interop-venv && target/interop-venv/bin/pip install pjsua2-python)"
fi
