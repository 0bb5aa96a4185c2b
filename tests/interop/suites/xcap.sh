# XCAP and privacy rules: the built-in XCAP server driven with curl (RFC 4825 GET/PUT/
# DELETE, ETag preconditions, 409 for a malformed document), then SIPp scenarios for a
# pending watcher that the presentity approves and for presence.winfo. Sourced by run.sh.

XSIP=$(free_port)
XHTTP=$(free_port)
cat >"$WORK/xcap.toml" <<EOF
force_active = false
xcap_listen = "127.0.0.1:$XHTTP"
EOF
start_presenced xcap "$XSIP" --config "$WORK/xcap.toml" >/dev/null || { FAILED=$((FAILED + 1)); return 0; }
XROOT="http://127.0.0.1:$XHTTP/xcap-root"
for _ in $(seq 1 50); do curl -s -o /dev/null "$XROOT/xcap-caps/global/index" && break; sleep 0.1; done

rules_for() { # rules_for WATCHER_URI HANDLING
    cat <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<cr:ruleset xmlns:cr="urn:ietf:params:xml:ns:common-policy" xmlns:pr="urn:ietf:params:xml:ns:pres-rules">
 <cr:rule id="r1"><cr:conditions><cr:identity><cr:one id="$1"/></cr:identity></cr:conditions>
  <cr:actions><pr:sub-handling>$2</pr:sub-handling></cr:actions></cr:rule>
</cr:ruleset>
EOF
}

DOC="$XROOT/pres-rules/users/sip:erin@example.com/index"
CT="Content-Type: application/auth-policy+xml"
rules_for sip:frank@example.com allow >"$WORK/rules.xml"
printf '<cr:ruleset xmlns:cr="urn:ietf:params:xml:ns:common-policy"><cr:rule>' >"$WORK/bad.xml"
xcurl xcap-get-missing 404 "$DOC"
xcurl xcap-put-malformed 409 -X PUT -H "$CT" --data-binary @"$WORK/bad.xml" "$DOC"
grep -q "not-well-formed" "$WORK/xcap-put-malformed.body" || { echo "FAIL xcap-put-malformed body"; FAILED=$((FAILED + 1)); }
xcurl xcap-put-create 201 -X PUT -H "$CT" -H "If-None-Match: *" --data-binary @"$WORK/rules.xml" "$DOC"
ETAG=$(tr -d '\r' <"$WORK/xcap-put-create.head" | sed -n 's/^[Ee][Tt]ag: //p')
xcurl xcap-put-exists 412 -X PUT -H "$CT" -H "If-None-Match: *" --data-binary @"$WORK/rules.xml" "$DOC"
xcurl xcap-get 200 "$DOC"
cmp -s "$WORK/xcap-get.body" "$WORK/rules.xml" || { echo "FAIL xcap-get body differs"; FAILED=$((FAILED + 1)); }
xcurl xcap-get-not-modified 304 -H "If-None-Match: $ETAG" "$DOC"
xcurl xcap-put-stale-etag 412 -X PUT -H "$CT" -H 'If-Match: "stale"' --data-binary @"$WORK/rules.xml" "$DOC"
xcurl xcap-put-replace 200 -X PUT -H "$CT" -H "If-Match: $ETAG" --data-binary @"$WORK/rules.xml" "$DOC"
xcurl xcap-delete-stale 412 -X DELETE -H 'If-Match: "stale"' "$DOC"
xcurl xcap-delete 200 -X DELETE "$DOC"
xcurl xcap-get-deleted 404 "$DOC"
xcurl xcap-caps 200 "$XROOT/xcap-caps/global/index"

# The hook the SIPp scenarios call through <exec>: "allow USER WATCHER" puts rules,
# "watcher PRESENTITY_USER WATCHER_USER" sends that watcher's SUBSCRIBE (its NOTIFYs go
# unanswered to a closed port, which is fine here).
cat >"$WORK/xcap-hook.sh" <<EOF
#!/usr/bin/env bash
case "\$1" in
allow)
    cat >"$WORK/hook-\$2.xml" <<DOC
<?xml version="1.0" encoding="UTF-8"?>
<cr:ruleset xmlns:cr="urn:ietf:params:xml:ns:common-policy" xmlns:pr="urn:ietf:params:xml:ns:pres-rules">
 <cr:rule id="r1"><cr:conditions><cr:identity><cr:one id="\$3"/></cr:identity></cr:conditions>
  <cr:actions><pr:sub-handling>allow</pr:sub-handling></cr:actions></cr:rule>
</cr:ruleset>
DOC
    curl -s --max-time 5 -o /dev/null -X PUT -H "$CT" --data-binary @"$WORK/hook-\$2.xml" \
        "$XROOT/pres-rules/users/sip:\$2@example.com/index" ;;
watcher)
    # One datagram (bash's /dev/udp may split a write): python sends the file whole.
    printf 'SUBSCRIBE sip:%s@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK%s\r\nMax-Forwards: 70\r\nFrom: <sip:%s@example.com>;tag=w1\r\nTo: <sip:%s@example.com>\r\nCall-ID: hook-%s@test\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:%s@127.0.0.1:9>\r\nEvent: presence\r\nExpires: 60\r\nContent-Length: 0\r\n\r\n' \
        "\$2" "\$3" "\$3" "\$2" "\$3" "\$3" >"$WORK/hook-sub.txt"
    python3 -c "import socket,sys; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(open(sys.argv[1], 'rb').read(), ('127.0.0.1', int(sys.argv[2])))" \
        "$WORK/hook-sub.txt" $XSIP ;;
esac
EOF
chmod +x "$WORK/xcap-hook.sh"
export XCAP_HOOK="$WORK/xcap-hook.sh"
run_sipp pending-active tests/interop/sipp/pending_active.xml u1 "$XSIP"
run_sipp winfo tests/interop/sipp/winfo.xml u1 "$XSIP"
