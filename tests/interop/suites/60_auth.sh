# Authentication suite, sourced by run.sh: presenced with auth = "digest", its accounts
# made by `presenced user add` (password on standard input) before it starts and one more
# through its control socket while it runs. Real peers with usernames and passwords:
# curl against the XCAP server (HTTP digest, own documents only), pjsua2 and baresip
# publishing and subscribing over UDP and TCP. The built-in XCAP server runs because
# pidf_manipulation is on; subscriptions stay active without rules (force_active).
# MD5 only: baresip 1.0's libre gives up on the first challenge whose algorithm it does
# not know instead of taking the next one (RFC 8760 §2.4), so a SHA-256-first server
# locks it out; pjsua2 picks SHA-256 when offered (tests/auth.rs covers both orders).

PJ_PY=${INTEROP_PYTHON:-$ROOT/target/interop-venv/bin/python}
ASIP=$(free_port)
AHTTP=$(free_port)
mkdir -p "$WORK/auth"
printf 'auth = "digest"\nauth_algorithms = ["MD5"]\npidf_manipulation = true\nxcap_listen = "127.0.0.1:%s"\n' "$AHTTP" \
    >"$WORK/auth.toml"
# add_user DB USER PASSWORD: through the daemon when it runs, straight into DB otherwise.
add_user() {
    printf '%s\n' "$3" | "$BIN" user --db "$1" add "$2@example.com" 2>>"$WORK/auth/users.log"
}
ADB="$WORK/auth/db"
auth_users_ok=true
for t in udp tcp; do
    for who in pj-pub pj-watch; do add_user "$ADB" "$who-auth-$t" "pj-$t-pw" || auth_users_ok=false; done
    for who in bs-pub bs-watch; do add_user "$ADB" "$who-auth-$t" "bs-$t-pw" || auth_users_ok=false; done
done
add_user "$ADB" alice "wonderland" || auth_users_ok=false
if $auth_users_ok; then pass "auth: presenced user add on a stopped database"
else fail "auth: presenced user add on a stopped database" "$WORK/auth/users.log"; fi

if start_presenced auth "$ASIP" --config "$WORK/auth.toml" >/dev/null; then
    if add_user "$ADB" bob "builder"; then pass "auth: presenced user add through the running daemon"
    else fail "auth: presenced user add through the running daemon" "$WORK/auth/users.log"; fi
    if "$BIN" user --db "$ADB" list | grep -qx "bob@example.com"; then pass "auth: presenced user list"
    else fail "auth: presenced user list"; fi

    # XCAP with curl: HTTP digest, each user only under users/<their AOR>/.
    AROOT="http://127.0.0.1:$AHTTP/xcap-root"
    for _ in $(seq 1 50); do curl -s -o /dev/null "$AROOT/xcap-caps/global/index" && break; sleep 0.1; done
    ADOC="$AROOT/pres-rules/users/sip:alice@example.com/index"
    BDOC="$AROOT/pres-rules/users/sip:bob@example.com/index"
    ACT="Content-Type: application/auth-policy+xml"
    printf '<cr:ruleset xmlns:cr="urn:ietf:params:xml:ns:common-policy"/>\n' >"$WORK/auth/rules.xml"
    xcurl xcap-auth-no-credentials 401 -X PUT -H "$ACT" --data-binary @"$WORK/auth/rules.xml" "$ADOC"
    grep -qi '^WWW-Authenticate: Digest' "$WORK/xcap-auth-no-credentials.head" ||
        fail "xcap-auth-no-credentials: no digest challenge" "$WORK/xcap-auth-no-credentials.head"
    xcurl xcap-auth-put-own 201 --digest -u alice:wonderland -X PUT -H "$ACT" \
        --data-binary @"$WORK/auth/rules.xml" "$ADOC"
    xcurl xcap-auth-get-own 200 --digest -u alice:wonderland "$ADOC"
    xcurl xcap-auth-wrong-password 401 --digest -u alice:looking-glass "$ADOC"
    xcurl xcap-auth-put-other-users 403 --digest -u alice:wonderland -X PUT -H "$ACT" \
        --data-binary @"$WORK/auth/rules.xml" "$BDOC"
    xcurl xcap-auth-get-other-users 403 --digest -u bob:builder "$ADOC"
    xcurl xcap-auth-caps-public 200 "$AROOT/xcap-caps/global/index"

    # pjsua2 with credentials: the same steps as suite 40, through a digest server.
    if "$PJ_PY" -c 'import pjsua2' >/dev/null 2>&1; then
        for t in udp tcp; do
            label="pjsua2-digest-$t"
            PJ_PASSWORD="pj-$t-pw" timeout 60 "$PJ_PY" -u tests/interop/pjsua2_presence.py \
                --port "$ASIP" --transport "$t" --tag "auth-$t" --password PJ_PASSWORD \
                --timeout 30 --log "$WORK/$label.pjsip.log" >"$WORK/$label.out" 2>&1 </dev/null
            rc=$?
            report_checks "$label" "$WORK/$label.out" "$WORK/$label.pjsip.log"
            grep -q '^ok   ' "$WORK/$label.out" ||
                fail "$label: exited $rc before any step" "$WORK/$label.out"
            # The challenge really happened, and pjsip answered it.
            if grep -q "SIP/2.0 401" "$WORK/$label.pjsip.log" &&
                grep -q "^Authorization: Digest" "$WORK/$label.pjsip.log"; then
                pass "$label: challenged with 401 and answered with credentials"
            else
                fail "$label: no 401 and Authorization in the pjsip log" "$WORK/$label.pjsip.log"
            fi
        done
    elif [ "${CI:-}" = true ]; then
        fail "pjsua2-digest: no Python with pjsua2 at $PJ_PY"
    else
        skip "pjsua2-digest: no Python with pjsua2 at $PJ_PY"
    fi

    # baresip with auth_pass: publisher and watcher as in suite 50.
    if command -v baresip >/dev/null && [ -e /usr/lib/baresip/modules/presence.so ]; then
        for t in udp tcp; do
            label="baresip-digest-$t"
            pub="sip:bs-pub-auth-$t@example.com"
            outbound="outbound=\"sip:127.0.0.1:$ASIP;transport=$t\""
            base=$(free_port_block 4)
            baresip_dir "$WORK/$label/watcher" "$base" \
                "<sip:bs-watch-auth-$t@example.com>;auth_pass=bs-$t-pw;regint=0;$outbound" \
                "\"publisher\" <$pub>;presence=p2p"
            baresip_dir "$WORK/$label/publisher" "$((base + 2))" \
                "<$pub>;auth_pass=bs-$t-pw;regint=0;pubint=60;$outbound"
            timeout 30 baresip -f "$WORK/$label/watcher" -t 7 -s \
                >"$WORK/$label/watcher.out" 2>&1 </dev/null &
            watcher=$!
            for _ in $(seq 1 100); do
                grep -q "Subscription-State: active" "$WORK/$label/watcher.out" && break
                kill -0 "$watcher" 2>/dev/null || break
                sleep 0.1
            done
            timeout 30 baresip -f "$WORK/$label/publisher" -t 3 -s -e /presence_online \
                >"$WORK/$label/publisher.out" 2>&1 </dev/null
            wait "$watcher"
            for role in watcher publisher; do
                python3 tests/interop/baresip_trace.py "$role" "$WORK/$label/$role.out" --auth \
                    --server "127.0.0.1:$ASIP" --presentity "$pub" >"$WORK/$label/$role.checks" 2>&1
                report_checks "$label" "$WORK/$label/$role.checks" "$WORK/$label/$role.out"
                grep -q -E '^(ok   |FAIL )' "$WORK/$label/$role.checks" ||
                    fail "$label: $role trace checker printed no check" "$WORK/$label/$role.checks"
            done
        done
    elif [ "${CI:-}" = true ]; then
        fail "baresip-digest: baresip with its presence module is not installed"
    else
        skip "baresip-digest: baresip with its presence module is not installed"
    fi
else
    fail "auth: presenced with auth = digest did not start"
fi

# SHA-256: a second server with the default algorithms (SHA-256 offered first, then
# MD5); pjsua2 must answer with SHA-256.
SSIP=$(free_port)
SDB="$WORK/auth-sha/db"
mkdir -p "$WORK/auth-sha"
printf 'auth = "digest"\n' >"$WORK/auth-sha.toml"
add_user "$SDB" pj-pub-sha "pj-sha-pw" && add_user "$SDB" pj-watch-sha "pj-sha-pw" ||
    fail "auth-sha: presenced user add" "$WORK/auth/users.log"
if ! "$PJ_PY" -c 'import pjsua2' >/dev/null 2>&1; then
    [ "${CI:-}" = true ] && fail "pjsua2-digest-sha256: no pjsua2" || skip "pjsua2-digest-sha256: no pjsua2"
elif start_presenced auth-sha "$SSIP" --config "$WORK/auth-sha.toml" >/dev/null; then
    label="pjsua2-digest-sha256"
    PJ_PASSWORD="pj-sha-pw" timeout 60 "$PJ_PY" -u tests/interop/pjsua2_presence.py \
        --port "$SSIP" --transport udp --tag sha --password PJ_PASSWORD \
        --timeout 30 --log "$WORK/$label.pjsip.log" >"$WORK/$label.out" 2>&1 </dev/null
    report_checks "$label" "$WORK/$label.out" "$WORK/$label.pjsip.log"
    grep -q '^ok   ' "$WORK/$label.out" || fail "$label: no step passed" "$WORK/$label.out"
    if grep -q '^Authorization: Digest .*algorithm=SHA-256' "$WORK/$label.pjsip.log"; then
        pass "$label: pjsua2 answered with SHA-256"
    else
        fail "$label: no SHA-256 Authorization in the pjsip log" "$WORK/$label.pjsip.log"
    fi
else
    fail "auth-sha: presenced did not start"
fi
