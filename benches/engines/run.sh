#!/bin/bash
# Usage: ./run.sh [engines...] ; env SIZES="100000 300000 1000000" TIMEOUT=200
# engines: sled sled-rows fjall redb (default: all four)
# Each phase is a separate process measured with /usr/bin/time; fresh data dir per run,
# deleted afterwards. Results are appended to target/results.tsv (or $OUT).
set -u
cd "$(dirname "$0")"
BIN=./target/release/enginebench
cargo build --release -q || exit 1
ENGINES=${*:-sled sled-rows fjall redb}
SIZES=${SIZES:-100000 300000 1000000}
TIMEOUT=${TIMEOUT:-200}
OUT=${OUT:-target/results.tsv}
mkdir -p target/data
[ -f "$OUT" ] || echo -e "engine\trows\tphase\tsecs_internal\trows_per_s\twall_s\tmaxrss_MiB\tuser_s\tsys_s\tdisk_MB_apparent\tdisk_MB_allocated\tnote\tknobs\tmem" > "$OUT"
# LABEL=name tags a variant (env knobs: BATCH_ROWS, REDB_CACHE, FJALL_WB, FJALL_MT, FJALL_FLUSH_END,
# FJALL_CACHE, FJALL_FLUSH_W, FJALL_COMPACT_W, FJALL_JOURNAL, FJALL_BLOCK, FJALL_L0, FJALL_TARGET,
# FJALL_STCS, REDB_NONDUR, IDX_SORT, IDX_CHUNK, SORTED, _RJEM_MALLOC_CONF; see src/main.rs)
# PRESENCED_JE=1 sets _RJEM_MALLOC_CONF to presenced's jemalloc malloc_conf.
[ "${PRESENCED_JE:-}" = 1 ] && export _RJEM_MALLOC_CONF="background_thread:true,narenas:1,tcache_max:1024,dirty_decay_ms:1000,muzzy_decay_ms:0"
# knob column: every set variable among these
KNOBS=$(for v in BATCH_ROWS REDB_CACHE FJALL_WB FJALL_MT FJALL_FLUSH_END FJALL_CACHE FJALL_FLUSH_W FJALL_COMPACT_W FJALL_JOURNAL FJALL_BLOCK FJALL_L0 FJALL_TARGET FJALL_STCS FJALL_CHECK REDB_NONDUR IDX_SORT IDX_CHUNK SORTED _RJEM_MALLOC_CONF THREADS; do [ -n "${!v+x}" ] && printf '%s=%s ' "$v" "${!v}"; done)
measure() { # engine rows phase
  local e=$1 n=$2 p=$3 d=target/data/${LABEL:-$1}-$2
  local tf; tf=$(mktemp)
  /usr/bin/time -f "%e %M %U %S" -o "$tf" timeout "$TIMEOUT" $BIN "$e" "$p" "$d" "$n" ${THREADS:-} > "$tf.out" 2> "$tf.err"
  local rc=$?
  cat "$tf.out" "$tf.err" >&2
  read -r wall rss usr sys < <(tail -1 "$tf")
  local res; res=$(grep '^RESULT' "$tf.out")
  local secs rps
  secs=$(sed -n 's/.* secs=\([0-9.]*\).*/\1/p' <<<"$res")
  rps=$(sed -n 's/.* rows_per_s=\([0-9]*\).*/\1/p' <<<"$res")
  local da="" dk=""
  if [ "$p" = load ]; then
    sync
    da=$(du -sb --apparent-size "$d" | awk '{printf "%.1f", $1/1e6}')
    dk=$(du -sk "$d" | awk '{printf "%.1f", $1*1024/1e6}')
  fi
  local note=""; [ $rc -ne 0 ] && note="rc=$rc(timeout=124)"
  local memline; memline=$(grep '^MEM' "$tf.out" | sed 's/^MEM //')
  echo -e "${LABEL:-$e}\t$n\t$p\t$secs\t$rps\t$wall\t$(awk "BEGIN{printf \"%.1f\", $rss/1024}")\t$usr\t$sys\t$da\t$dk\t$note\t${KNOBS% }\t$memline" | tee -a "$OUT"
  rm -f "$tf" "$tf.out" "$tf.err"
  return $rc
}
for e in $ENGINES; do
  for n in $SIZES; do
    d=target/data/${LABEL:-$e}-$n
    rm -rf "$d"
    if measure "$e" "$n" load; then
      measure "$e" "$n" iter
      measure "$e" "$n" open
    else
      echo "load failed/timed out for $e $n; skipping larger sizes" >&2
      rm -rf "$d"; break
    fi
    rm -rf "$d"
  done
done
