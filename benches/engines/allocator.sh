#!/bin/bash
# presenced's jemalloc malloc_conf vs default, same binary
cd "$(dirname "$0")"
export OUT=${OUT:-target/results.tsv}
for je in 1 0; do
  sfx=$([ $je = 1 ] && echo "-pje" || echo "-defje")
  PRESENCED_JE=$je LABEL=sled$sfx ./run.sh sled
  PRESENCED_JE=$je LABEL=fjall$sfx ./run.sh fjall
  PRESENCED_JE=$je LABEL=fjall-wb16-flush$sfx FJALL_WB=16777216 FJALL_MT=4194304 FJALL_FLUSH_END=1 ./run.sh fjall
  PRESENCED_JE=$je LABEL=redb-1txn$sfx BATCH_ROWS=100000000 ./run.sh redb
done
