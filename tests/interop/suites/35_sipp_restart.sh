# SIPp restart suite, sourced by run.sh: subscriptions survive a restart. Three SIPp
# watchers subscribe over UDP; presenced is stopped with SIGTERM and started again on the
# same port and database; then one PUBLISH must reach every watcher in its old dialog
# (same Call-ID and tags, a NOTIFY with the published note), and each watcher's in-dialog
# unsubscribe must still find its dialog (200 + NOTIFY terminated).
S=tests/interop/sipp

restart_suite() {
    local label=sipp-restart n=3 user="restart-udp" note="after restart $$"
    local ready="$WORK/$label.ready" port pid
    port=$(free_port)
    pid=$(start_presenced restart "$port") || { fail "$label: presenced did not start"; return; }
    mkdir -p "$ready"
    sipp_exec "$label-watchers" $S/fanout_watcher.xml u1 "$port" -s "$user" \
        -key note "$note" -key ready "$ready" -m "$n" -l "$n" -r 50 &
    local watchers=$! count=0
    for _ in $(seq 1 100); do
        count=$(find "$ready" -name 'ready.*' | wc -l)
        [ "$count" -ge "$n" ] && break
        sleep 0.1
    done
    if [ "$count" -lt "$n" ]; then
        wait "$watchers"
        fail "$label: only $count of $n watchers subscribed" "$WORK/$label-watchers.out"
        return
    fi
    kill -TERM "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        fail "$label: presenced did not stop within 10 s of SIGTERM" "$WORK/restart/log"
        wait "$watchers"
        return
    fi
    mv "$WORK/restart/log" "$WORK/restart/log.before"
    if ! start_presenced restart "$port" >/dev/null; then
        fail "$label: presenced did not start again" "$WORK/restart/log"
        wait "$watchers"
        return
    fi
    run_sipp "$label-publish" $S/publish_note.xml u1 "$port" -s "$user" -key note "$note"
    wait "$watchers"
    sipp_result "$label-$n-dialogs-survive" $?
}

restart_suite
