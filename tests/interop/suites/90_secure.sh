# TLS and secure WebSocket suite, sourced by run.sh: a second presenced with `tls:` and
# `wss:` listeners and a throwaway certificate made here with openssl.
#  - pjsua2 publishes and subscribes over TLS (its bundled OpenSSL speaks TLS 1.2).
#  - A real browser: JsSIP in Debian's headless Chromium (tests/interop/browser/watch.mjs,
#    npm packages pinned in its package-lock.json) subscribes over wss:// and must show
#    the state SIPp publishes over UDP; the page's DOM is read, not a screenshot.
SEC_PORT=$(free_port)
TLS_PORT=$(free_port)
WSS_PORT=$(free_port)
XCAPS_PORT=$(free_port)
SEC=$WORK/secure
mkdir -p "$SEC"
if ! openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=127.0.0.1" \
        -addext "subjectAltName=IP:127.0.0.1" \
        -keyout "$SEC/tls.key" -out "$SEC/tls.crt" >"$SEC/openssl.log" 2>&1; then
    fail "secure: test certificate" "$SEC/openssl.log"
fi
# pidf_manipulation runs the built-in XCAP server (force_active stays on, so watchers
# need no rules); xcap_tls serves it over HTTPS with the same certificate.
cat >"$SEC/presenced.toml" <<TOML
tls_certificate = "$SEC/tls.crt"
tls_private_key = "$SEC/tls.key"
connection_grace_ms = 500
pidf_manipulation = true
xcap_listen = "127.0.0.1:$XCAPS_PORT"
xcap_tls = true
TOML

if start_presenced secure "$SEC_PORT" --config "$SEC/presenced.toml" \
        --listen "tls:127.0.0.1:$TLS_PORT" --listen "wss:127.0.0.1:$WSS_PORT" >/dev/null; then
    pass "secure: presenced with tls: and wss: listeners"

    # XCAP over HTTPS with curl, the certificate checked against the test CA.
    XS="https://127.0.0.1:$XCAPS_PORT/xcap-root"
    xcurl secure-xcap-https-caps 200 --cacert "$SEC/tls.crt" "$XS/xcap-caps/global/index"
    xcurl secure-xcap-https-put 201 --cacert "$SEC/tls.crt" -X PUT \
        -H 'Content-Type: application/pidf+xml' --data-binary @- \
        "$XS/pidf-manipulation/users/sip:xcapuser@example.com/index" <<'PIDF'
<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:xcapuser@example.com"><tuple id="hard"><status><basic>closed</basic></status></tuple></presence>
PIDF
    xcurl secure-xcap-https-get 200 --cacert "$SEC/tls.crt" \
        "$XS/pidf-manipulation/users/sip:xcapuser@example.com/index"

    # pjsua2 over TLS: the same steps as over UDP and TCP (40_pjsua2.sh).
    PJ_PY=${INTEROP_PYTHON:-$ROOT/target/interop-venv/bin/python}
    if "$PJ_PY" -c 'import pjsua2' >/dev/null 2>&1; then
        run_pjsua2 secure "$SEC/pjsua2-tls" "$WORK/secure/log" tests/interop/pjsua2_presence.py \
            --port "$TLS_PORT" --transport tls
    elif [ "${CI:-}" = true ]; then
        fail "pjsua2-tls: no Python with pjsua2 at $PJ_PY"
    else
        skip "pjsua2-tls: no Python with pjsua2 at $PJ_PY"
    fi

    # The browser: JsSIP over wss:// in headless Chromium.
    B=tests/interop/browser
    if [ -x /usr/bin/chromium ] && [ -d "$B/node_modules/jssip" ]; then
        # SIPp publishes a first state; the page must show it, then a second one.
        run_sipp secure-browser-publish-1 tests/interop/sipp/publish_note.xml u1 "$SEC_PORT" \
            -s webuser -key note "before the browser"
        timeout 60 node "$B/watch.mjs" --wss "wss://127.0.0.1:$WSS_PORT" \
            --target sip:webuser@example.com --from sip:browser@example.com \
            --expect open --note "seen in the browser" --timeout-ms 40000 \
            >"$SEC/browser.out" 2>"$SEC/browser.err" </dev/null &
        bpid=$!
        # The page's first NOTIFY (the state before) is in: publish the one it waits for.
        for _ in $(seq 1 300); do
            grep -qs '"note":"before the browser"' "$SEC/browser.out" && break
            kill -0 "$bpid" 2>/dev/null || break
            sleep 0.1
        done
        if grep -qs '"note":"before the browser"' "$SEC/browser.out"; then
            pass "secure: browser shows the state published before it subscribed"
        else
            fail "secure: browser shows the state published before it subscribed" \
                "$SEC/browser.out" "$SEC/browser.err" "$WORK/secure/log"
        fi
        run_sipp secure-browser-publish-2 tests/interop/sipp/publish_note.xml u1 "$SEC_PORT" \
            -s webuser -key note "seen in the browser"
        if wait "$bpid"; then
            pass "secure: browser (JsSIP over wss) shows the state SIPp published"
        else
            fail "secure: browser (JsSIP over wss) shows the state SIPp published" \
                "$SEC/browser.out" "$SEC/browser.err" "$WORK/secure/log"
        fi
    elif [ "${CI:-}" = true ]; then
        fail "secure-browser: chromium or $B/node_modules missing (.ci/run installs them)"
    else
        skip "secure-browser: needs /usr/bin/chromium and (cd $B && npm ci)"
    fi
else
    fail "secure: presenced with tls: and wss: listeners did not start" "$WORK/secure/log"
fi
