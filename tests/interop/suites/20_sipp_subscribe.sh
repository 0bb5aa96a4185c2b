# SIPp SUBSCRIBE/NOTIFY suite (RFC 6665, RFC 3856), sourced by run.sh: a SIPp-published
# note reaches a SIPp watcher through the first NOTIFY; in-dialog refresh and unsubscribe;
# and the sweep ending an unrefreshed subscription (min_expires = 0, clean_period = 1).
S=tests/interop/sipp

for t in u1 t1; do
    note="note for $t $$"
    run_sipp "subscribe-publish-note-$t" $S/publish_note.xml $t "$PORT" -s "watched-$t" -key note "$note"
    run_sipp "subscribe-dialog-$t" $S/subscribe_dialog.xml $t "$PORT" -s "watched-$t" -key note "$note"
done

SWEEP_PORT=$(free_port)
if start_presenced sweep "$SWEEP_PORT" \
    --config "$(write_config sweep 'min_expires = 0' 'clean_period = 1')" >/dev/null; then
    for t in u1 t1; do
        run_sipp "subscribe-expiry-$t" $S/subscribe_expiry.xml $t "$SWEEP_PORT" -s "expiring-$t"
    done
else
    fail "presenced with clean_period = 1 did not start"
fi
