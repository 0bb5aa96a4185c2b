# baresip suite, sourced by run.sh: baresip's presence module (PUBLISH with pubint, and
# SUBSCRIBE for contacts marked ;presence=p2p, sent through its outbound proxy) against
# presenced, over UDP and TCP. Two headless instances per transport, no registrar
# (regint=0), presenced as the outbound proxy of both:
#   watcher   bs-watch-T subscribes to bs-pub-T and runs for 7 s;
#   publisher bs-pub-T starts once the watcher's subscription is active, goes online
#             (/presence_online), publishes, and quits after 3 s, which unpublishes.
# What each did is read back from its own SIP trace (baresip -s) by baresip_trace.py:
# the watcher's SUBSCRIBE gets 200, every NOTIFY it gets is active/terminated as it should
# be and answered 200, it sees the publisher open with baresip's own PIDF <contact>, then
# closed, and its unsubscribe at exit gets 200 and a terminated NOTIFY; the publisher's
# PUBLISH gets 200 with a SIP-ETag.

# Server bugs that make a check fail, by check name (see report_checks in lib.sh).

if command -v baresip >/dev/null && [ -e /usr/lib/baresip/modules/presence.so ]; then
    for t in udp tcp; do
        label="baresip-$t"
        pub="sip:bs-pub-$t@example.com"
        outbound="outbound=\"sip:127.0.0.1:$PORT;transport=$t\""
        # Four free ports in a row: the watcher's SIP and TLS ports, then the publisher's.
        base=$(free_port_block 4)
        baresip_dir "$WORK/$label/watcher" "$base" \
            "<sip:bs-watch-$t@example.com>;regint=0;$outbound" \
            "\"publisher\" <$pub>;presence=p2p"
        baresip_dir "$WORK/$label/publisher" "$((base + 2))" "<$pub>;regint=0;pubint=60;$outbound"

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
            python3 tests/interop/baresip_trace.py "$role" "$WORK/$label/$role.out" \
                --server "127.0.0.1:$PORT" --presentity "$pub" >"$WORK/$label/$role.checks" 2>&1
            report_checks "$label" "$WORK/$label/$role.checks" "$WORK/$label/$role.out"
            grep -q -E '^(ok   |FAIL )' "$WORK/$label/$role.checks" ||
                fail "$label: $role trace checker printed no check" "$WORK/$label/$role.checks"
        done
    done
elif [ "${CI:-}" = true ]; then
    fail "baresip: not installed with its presence module (apt-get install baresip-core)"
else
    skip "baresip: not installed with its presence module (apt-get install baresip-core)"
fi
