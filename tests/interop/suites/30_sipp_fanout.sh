# SIPp fan-out suite, sourced by run.sh: N watchers (one SIPp process, one call each, each
# its own From and Contact) subscribe to one presentity; once all have their first NOTIFY,
# one PUBLISH must reach every one of them as a NOTIFY carrying the published note.
# UDP with 20 watchers; TCP with 10 watchers each on its own connection (-t tn).
S=tests/interop/sipp

# fanout LABEL TRANSPORT N
fanout() {
    local label=$1 t=$2 n=$3 user="fan-$2" note="fan-out $2 $$"
    local ready="$WORK/$label.ready"
    mkdir -p "$ready"
    sipp_exec "$label-watchers" $S/fanout_watcher.xml "$t" "$PORT" -s "$user" \
        -key note "$note" -key ready "$ready" -m "$n" -l "$n" -r 50 -max_socket 64 &
    local watchers=$!
    local count=0
    for _ in $(seq 1 150); do
        count=$(find "$ready" -name 'ready.*' | wc -l)
        [ "$count" -ge "$n" ] && break
        kill -0 "$watchers" 2>/dev/null || break
        sleep 0.1
    done
    if [ "$count" -lt "$n" ]; then
        wait "$watchers"
        fail "$label: only $count of $n watchers subscribed" \
            "$WORK/$label-watchers.out" "$WORK/$label-watchers.err"
        return
    fi
    run_sipp "$label-publish" $S/publish_note.xml u1 "$PORT" -s "$user" -key note "$note"
    wait "$watchers"
    sipp_result "$label-$n-watchers-notified" $?
}

fanout fanout-udp u1 20
fanout fanout-tcp tn 10
