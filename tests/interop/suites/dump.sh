# Interop suite (sourced by tests/interop/run.sh): `presenced dump` taken through the
# control socket while SIPp drives SUBSCRIBE/NOTIFY/PUBLISH load must restore, and every
# subscription dialog in it must have its watchers row (the consistency the dump's
# barrier between active_watchers and watchers promises). Checked with the real sqlite3.

dump_suite() {
    local port dir scen ok=1
    port=$(free_port)
    # SIPp offers 600 requests/s from one address, above the default per-source rate:
    # this is a load test, not an abuse test.
    start_presenced dump "$port" --config "$(write_config dump 'max_requests_per_source = 0')" \
        >/dev/null || { FAILED=$((FAILED + 1)); return; }
    dir="$WORK/dump"
    scen="$dir/load.xml"
    cat >"$scen" <<'XML'
<?xml version="1.0" encoding="ISO-8859-1" ?>
<!-- One watcher per call: SUBSCRIBE to a fresh presentity, answer its NOTIFY, PUBLISH
     to it, answer the NOTIFY that follows. -->
<scenario name="dump load">
  <send retrans="500">
    <![CDATA[
      SUBSCRIBE sip:load[call_number]@127.0.0.1 SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:w[call_number]@example.org>;tag=[pid]T[call_number]
      To: <sip:load[call_number]@127.0.0.1>
      Call-ID: [call_id]
      CSeq: 1 SUBSCRIBE
      Contact: <sip:w[call_number]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Event: presence
      Accept: application/pidf+xml
      Expires: 3600
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" rtd="true"/>
  <recv request="NOTIFY"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <send retrans="500">
    <![CDATA[
      PUBLISH sip:load[call_number]@127.0.0.1 SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:load[call_number]@127.0.0.1>;tag=[pid]P[call_number]
      To: <sip:load[call_number]@127.0.0.1>
      Call-ID: [call_id]
      CSeq: 1 PUBLISH
      Max-Forwards: 70
      Event: presence
      Expires: 3600
      Content-Type: application/pidf+xml
      Content-Length: [len]

      <?xml version="1.0" encoding="UTF-8"?>
      <presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:load[call_number]@127.0.0.1"><tuple id="t1"><status><basic>open</basic></status></tuple></presence>
    ]]>
  </send>
  <recv response="200"/>
  <recv request="NOTIFY"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
</scenario>
XML
    timeout 120 sipp -sf "$scen" -t u1 -i 127.0.0.1 -p 0 -m 3000 -r 300 -l 200 \
        -timeout 100s -max_recv_loops 1000 127.0.0.1:"$port" >"$dir/sipp.out" 2>&1 </dev/null &
    local sipp_pid=$!
    # Dumps while the load runs (each one goes through the daemon's control socket).
    local n=0
    while kill -0 "$sipp_pid" 2>/dev/null && [ "$n" -lt 20 ]; do
        n=$((n + 1))
        "$BIN" dump --db "$dir/db" --dialect sqlite -o "$dir/live$n.sql" 2>>"$dir/dump.err" || ok=0
        sleep 0.4 # spread the snapshots over the ~10 s of load
    done
    wait "$sipp_pid" || { echo "FAIL dump-under-load: SIPp failed"; tail -20 "$dir/sipp.out"; ok=0; }
    [ "$n" -ge 2 ] || { echo "FAIL dump-under-load: only $n dumps during the load"; ok=0; }
    local i
    for i in $(seq 1 "$n"); do
        local f="$dir/live$i.sql" db="$dir/restored$i"
        # It restores (all or nothing) into a fresh presenced ...
        "$BIN" restore --db "$db" "$f" 2>>"$dir/restore.err" || { echo "FAIL restore of $f"; ok=0; continue; }
        # ... and in the dump, every dialog has its watchers row.
        rm -f "$dir/check.db"
        sqlite3 -bail "$dir/check.db" <"$ROOT/schema/sqlite.sql" >/dev/null && sqlite3 -bail "$dir/check.db" <"$f" \
            || { echo "FAIL sqlite3 could not load $f"; ok=0; continue; }
        local orphans dialogs
        dialogs=$(sqlite3 "$dir/check.db" "SELECT count(*) FROM active_watchers")
        orphans=$(sqlite3 "$dir/check.db" "SELECT count(*) FROM active_watchers a LEFT JOIN watchers w
            ON w.presentity_uri = a.presentity_uri AND w.watcher_username = a.watcher_username
            AND w.watcher_domain = a.watcher_domain AND w.event = a.event WHERE w.id IS NULL")
        if [ "$orphans" != 0 ]; then
            echo "FAIL dump $i: $orphans of $dialogs dialogs without their watchers row"; ok=0
        fi
        echo "     dump $i: $dialogs dialogs, all with their watchers rows"
    done
    if [ "$ok" = 1 ]; then
        echo "ok   dump-under-load ($n dumps)"
        PASSED=$((PASSED + 1))
    else
        cat "$dir/dump.err" "$dir/restore.err" 2>/dev/null | tail -20
        FAILED=$((FAILED + 1))
    fi
}
dump_suite
