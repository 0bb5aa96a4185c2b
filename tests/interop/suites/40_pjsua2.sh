# pjsua2 suite, sourced by run.sh: pjsip's presence stack (PUBLISH with PIDF+RPID, buddy
# SUBSCRIBE) through presenced, over UDP and TCP; see tests/interop/pjsua2_presence.py for
# the steps. Each step the script prints ("ok   ..." / "FAIL ...") counts as one check.
# Python with pjsua2 comes from the venv .ci/run makes (INTEROP_PYTHON overrides it).
PJ_PY=${INTEROP_PYTHON:-$ROOT/target/interop-venv/bin/python}

if "$PJ_PY" -c 'import pjsua2' >/dev/null 2>&1; then
    for t in udp tcp; do
        run_pjsua2 pjsua2 "$WORK/pjsua2-$t" "" tests/interop/pjsua2_presence.py \
            --port "$PORT" --transport "$t"
    done
elif [ "${CI:-}" = true ]; then
    fail "pjsua2: no Python with pjsua2 at $PJ_PY (.ci/run makes target/interop-venv)"
else
    skip "pjsua2: no Python with pjsua2 at $PJ_PY (python3 -m venv target/interop-venv && target/interop-venv/bin/pip install pjsua2-python)"
fi
