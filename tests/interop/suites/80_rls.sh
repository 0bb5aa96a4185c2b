# Buddy lists (RFC 4662 over RFC 4826 documents), sourced by run.sh: the list is PUT
# over XCAP with curl, a SIPp list watcher subscribes with Supported: eventlist and logs
# every NOTIFY, two members publish with SIPp, and rlmi_check.py takes the NOTIFYs apart
# (RLMI parsed, versions, fullState, Content-IDs against the parts, each part a PIDF).
# Then pjsua2 subscribes to a list whose members publish with pjsua2, and the same SIPp
# watcher follows a member served by a second presenced (back-end subscription).
S=tests/interop/sipp

RSIP=$(free_port)
RHTTP=$(free_port)
start_presenced rls "$RSIP" \
    --config "$(write_config rls 'rls = true' "xcap_listen = \"127.0.0.1:$RHTTP\"")" >/dev/null \
    || { fail "presenced with rls = true did not start"; return 0; }
RROOT="http://127.0.0.1:$RHTTP/xcap-root"
for _ in $(seq 1 50); do curl -s -o /dev/null "$RROOT/xcap-caps/global/index" && break; sleep 0.1; done

cat >"$WORK/rls-services.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<rls-services xmlns="urn:ietf:params:xml:ns:rls-services" xmlns:rl="urn:ietf:params:xml:ns:resource-lists">
 <service uri="sip:lister-buddies@example.com">
  <list name="buddies">
   <rl:entry uri="sip:m1@example.com"><rl:display-name>Member One</rl:display-name></rl:entry>
   <rl:entry uri="sip:m2@example.com"/>
   <rl:entry uri="sip:m3@example.com"/>
  </list>
  <packages><package>presence</package></packages>
 </service>
</rls-services>
EOF
xcurl rls-put-services 201 -X PUT -H "Content-Type: application/rls-services+xml" \
    --data-binary @"$WORK/rls-services.xml" "$RROOT/rls-services/users/sip:lister@example.com/index"

for t in u1 t1; do
    label="rls-watcher-$t"
    sipp_exec "$label" $S/rls_watcher.xml $t "$RSIP" -s lister-buddies -m 1 &
    watcher=$!
    # The members publish once the full-state NOTIFY is in (bounded wait).
    for _ in $(seq 1 100); do
        grep -qs 'fullState="true"' "$WORK/$label.log" && break
        sleep 0.1
    done
    run_sipp "rls-publish-m1-$t" $S/publish_note.xml $t "$RSIP" -s m1 -key note "m1 $t"
    # One change at a time, so each makes its own partial NOTIFY.
    for _ in $(seq 1 100); do
        [ "$(grep -c 'fullState="false"' "$WORK/$label.log" 2>/dev/null)" -ge 1 ] && break
        sleep 0.1
    done
    run_sipp "rls-publish-m3-$t" $S/publish_note.xml $t "$RSIP" -s m3 -key note "m3 $t"
    wait "$watcher"
    sipp_result "$label" $?
    python3 tests/interop/rlmi_check.py "$WORK/$label.log" sip:lister-buddies@example.com \
        sip:m1@example.com sip:m2@example.com sip:m3@example.com -- \
        sip:m1@example.com sip:m3@example.com >"$WORK/$label.check" 2>&1
    report_checks "$label" "$WORK/$label.check" "$WORK/$label.check" "$WORK/$label.log"
done

# pjsua2 as the list subscriber (and its members' publishers), over UDP and TCP: pjsip
# carries the list subscription and the script reads each NOTIFY it received as RLMI
# (tests/interop/pjsua2_rls.py has the steps, one check each).
PJ_PY=${INTEROP_PYTHON:-$ROOT/target/interop-venv/bin/python}
if "$PJ_PY" -c 'import pjsua2' >/dev/null 2>&1; then
    for t in udp tcp; do
        label="pjsua2-rls-$t"
        sed -e "s/lister-buddies@/pj-$t-lister-buddies@/" -e "s/sip:m\([0-9]\)@/sip:pj-$t-m\1@/" \
            "$WORK/rls-services.xml" >"$WORK/$label.xml"
        xcurl "$label-put-services" 201 -X PUT -H "Content-Type: application/rls-services+xml" \
            --data-binary @"$WORK/$label.xml" \
            "$RROOT/rls-services/users/sip:pj-$t-lister@example.com/index"
        run_pjsua2 rls "$WORK/$label" "$WORK/rls/log" tests/interop/pjsua2_rls.py \
            --port "$RSIP" --transport "$t" \
            --list "sip:pj-$t-lister-buddies@example.com" --owner "sip:pj-$t-lister@example.com" \
            "sip:pj-$t-m1@example.com" "sip:pj-$t-m2@example.com" "sip:pj-$t-m3@example.com"
    done
elif [ "${CI:-}" = true ]; then
    fail "pjsua2-rls: no Python with pjsua2 at $PJ_PY"
else
    skip "pjsua2-rls: no Python with pjsua2 at $PJ_PY"
fi

# Back-end subscriptions: a list member served by a second presenced. "rlsb" serves
# example.com and sends its back-end SUBSCRIBEs to "remote", which serves example.net;
# the list names sip:m1@example.net (remote) and sip:m2@example.com (local). The watcher
# sees m1 pending in the full state, then active with its document once the back-end
# dialog's first NOTIFY is in, then its change as m1 publishes at the remote server.
REMOTE=$(free_port)
start_presenced remote "$REMOTE" \
    --config "$(write_config remote 'domains = ["example.net"]')" >/dev/null \
    || { fail "second presenced (remote) did not start"; return 0; }
run_sipp rls-backend-publish-before tests/interop/sipp/publish_note_at.xml u1 "$REMOTE" \
    -s m1 -key domain example.net -key note "m1 before"
BSIP=$(free_port)
BHTTP=$(free_port)
start_presenced rlsb "$BSIP" --config "$(write_config rlsb 'rls = true' \
    'domains = ["example.com"]' "rls_backend_server = \"sip:127.0.0.1:$REMOTE\"" \
    "xcap_listen = \"127.0.0.1:$BHTTP\"")" >/dev/null \
    || { fail "presenced with rls_backend_server did not start"; return 0; }
BROOT="http://127.0.0.1:$BHTTP/xcap-root"
for _ in $(seq 1 50); do curl -s -o /dev/null "$BROOT/xcap-caps/global/index" && break; sleep 0.1; done
sed -e 's/sip:m1@example.com/sip:m1@example.net/' -e '/sip:m3@example.com/d' \
    "$WORK/rls-services.xml" >"$WORK/rls-services-backend.xml"
xcurl rls-backend-put-services 201 -X PUT -H "Content-Type: application/rls-services+xml" \
    --data-binary @"$WORK/rls-services-backend.xml" \
    "$BROOT/rls-services/users/sip:lister@example.com/index"
label=rls-backend-watcher
sipp_exec "$label" $S/rls_watcher.xml u1 "$BSIP" -s lister-buddies -m 1 &
watcher=$!
for _ in $(seq 1 100); do
    grep -qs 'fullState="false"' "$WORK/$label.log" && break
    sleep 0.1
done
run_sipp rls-backend-publish-change tests/interop/sipp/publish_note_at.xml u1 "$REMOTE" \
    -s m1 -key domain example.net -key note "m1 changed"
wait "$watcher"
sipp_result "$label" $?
python3 tests/interop/rlmi_check.py "$WORK/$label.log" sip:lister-buddies@example.com \
    sip:m1@example.net=pending sip:m2@example.com -- \
    sip:m1@example.net sip:m1@example.net >"$WORK/$label.check" 2>&1
report_checks "$label" "$WORK/$label.check" "$WORK/$label.check" "$WORK/$label.log" \
    "$WORK/rlsb/log" "$WORK/remote/log"
if grep -q 'm1 changed' "$WORK/$label.log"; then pass "$label: the remote change reached the list"
else fail "$label: the remote change reached the list" "$WORK/$label.log"; fi
