#!/usr/bin/env bash
# Benchmarks `presenced restore` and `presenced dump` at N rows (default 1,000,000):
# rows/s each way, CPU seconds, and peak RSS, with the database opened directly (no
# daemon). Also checks the 1M-row round trip: the dump of the restored database must
# restore to a database whose dump is byte-identical.
#
#   scripts/bench-dump.sh [ROWS]        (uses target/release/presenced; builds it if absent)
#
# The input is generated here (Python, no dependencies): a third each of presentity,
# active_watchers and watchers rows in presenced's MySQL dialect, multi-row INSERTs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-1000000}
BIN=${PRESENCED_BIN:-${CARGO_TARGET_DIR:-target}/release/presenced}
[ -x "$BIN" ] || cargo build --release --quiet
WORK=$(mktemp -d /tmp/presenced-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

python3 - "$ROWS" >"$WORK/in.sql" <<'PY'
import sys
rows = int(sys.argv[1])
out = sys.stdout
w = out.write
w("-- presenced dump (format 1), dialect mysql\nSET NAMES utf8mb4;\nSTART TRANSACTION;\n")
FUT = 2000000000
body = "<?xml version=\\'1.0\\'?>\\n<presence xmlns=\\'urn:ietf:params:xml:ns:pidf\\' entity=\\'sip:u%d@example.com\\'><tuple id=\\'t1\\'><status><basic>open</basic></status></tuple></presence>"
third = rows // 3
def batches(n, head, row):
    for start in range(0, n, 500):
        w(head)
        w(",\n".join(row(i) for i in range(start, min(n, start + 500))))
        w(";\n")
batches(third, "INSERT INTO `presentity` (`username`,`domain`,`event`,`etag`,`expires`,`received_time`,`body`,`extra_hdrs`,`sender`,`presentity_uri`,`content_type`,`priority`) VALUES\n",
        lambda i: "('u%d','example.com','presence','e%d',%d,1700000000,'%s','','sip:10.0.0.1:5060',NULL,'application/pidf+xml',%d)" % (i, i, FUT, body % i, i))
batches(third, "INSERT INTO `active_watchers` (`presentity_uri`,`watcher_username`,`watcher_domain`,`to_user`,`to_domain`,`event`,`event_id`,`to_tag`,`from_tag`,`callid`,`local_cseq`,`remote_cseq`,`contact`,`record_route`,`expires`,`status`,`reason`,`version`,`socket_info`,`local_contact`,`sharing_tag`,`watcher_uri`,`to_uri`,`transport_peer`,`user_agent`,`accept`) VALUES\n",
        lambda i: "('sip:u%d@example.com','w%d','example.org','u%d','example.com','presence',NULL,'10t%d','f%d','c%d@10.0.0.2',3,7,'sip:w%d@10.0.0.2:5062',NULL,%d,1,NULL,2,'udp:10.0.0.1:5060','<sip:10.0.0.1:5060>',NULL,NULL,NULL,'udp:10.0.0.2:5062','bench/1.0','application/pidf+xml')" % (i, i, i, i, i, i, i, FUT))
rest = rows - 2 * third
batches(rest, "INSERT INTO `watchers` (`presentity_uri`,`watcher_username`,`watcher_domain`,`event`,`status`,`reason`,`inserted_time`,`watcher_uri`) VALUES\n",
        lambda i: "('sip:u%d@example.com','w%d','example.org','presence',1,NULL,1700000000,NULL)" % (i, i))
w("COMMIT;\n-- presenced dump complete\n")
PY

# measure LABEL CMD...: wall seconds, peak RSS (KiB), user+sys CPU seconds.
measure() {
    local label=$1; shift
    /usr/bin/time -f "%e %M %U %S" -o "$WORK/time" "$@" 2>"$WORK/$label.err" || {
        cat "$WORK/$label.err"; exit 1; }
    read -r wall rss user sys <"$WORK/time"
    python3 -c "import sys; r,w,m,u,s=int(sys.argv[1]),float(sys.argv[2]),int(sys.argv[3]),float(sys.argv[4]),float(sys.argv[5]); print(f'{sys.argv[6]:8} {r} rows  {w:6.2f} s wall  {r/w:9.0f} rows/s  cpu {u+s:6.2f} s ({r/(u+s):9.0f} rows/cpu-s)  peak RSS {m/1024:6.1f} MiB')" \
        "$ROWS" "$wall" "$rss" "$user" "$sys" "$label"
}

echo "input: $(du -h "$WORK/in.sql" | cut -f1) of SQL, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
measure restore "$BIN" restore --db "$WORK/db" "$WORK/in.sql"
measure dump "$BIN" dump --db "$WORK/db" --dialect mysql -o "$WORK/out.sql"
grep -q "presentity $((ROWS / 3)), active_watchers $((ROWS / 3)), watchers $((ROWS - 2 * (ROWS / 3)))" "$WORK/dump.err" \
    || { echo "FAIL: dump row counts: $(cat "$WORK/dump.err")"; exit 1; }
"$BIN" restore --db "$WORK/db2" "$WORK/out.sql" 2>/dev/null
"$BIN" dump --db "$WORK/db2" --dialect mysql -o "$WORK/out2.sql" 2>/dev/null
cmp -s "$WORK/out.sql" "$WORK/out2.sql" && echo "round trip: dump → restore → dump is byte-identical" \
    || { echo "FAIL: round trip differs"; exit 1; }
