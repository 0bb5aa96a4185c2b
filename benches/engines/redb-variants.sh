#!/bin/bash
# redb load variants (presenced jemalloc conf, 16 MiB cache unless REDB_CACHE)
cd "$(dirname "$0")"
export OUT=${OUT:-target/results.tsv} PRESENCED_JE=1 SIZES=${SIZES:-1000000}
M=1048576
run() { LABEL=$1 env "${@:3}" ./run.sh $2; }
for v in ${VARIANTS:-rows rows-sorted nondur10k sorted sorted-idx10k sorted-idx100k sorted-nondur10k-idx}; do
  case $v in
    rows)               run redb-q3-$v redb-rows BATCH_ROWS=100000000 ;;
    rows-sorted)        run redb-q3-$v redb-rows BATCH_ROWS=100000000 SORTED=1 ;;
    nondur10k)          run redb-q3-$v redb BATCH_ROWS=10000 REDB_NONDUR=1 ;;
    nondur100k)         run redb-q3-$v redb BATCH_ROWS=100000 REDB_NONDUR=1 ;;
    sorted)             run redb-q3-$v redb BATCH_ROWS=100000000 SORTED=1 ;;
    sorted-idx10k)      run redb-q3-$v redb BATCH_ROWS=100000000 SORTED=1 IDX_SORT=1 IDX_CHUNK=10000 ;;
    sorted-idx100k)     run redb-q3-$v redb BATCH_ROWS=100000000 SORTED=1 IDX_SORT=1 IDX_CHUNK=100000 ;;
    sorted-nondur10k-idx) run redb-q3-$v redb BATCH_ROWS=10000 REDB_NONDUR=1 SORTED=1 IDX_SORT=1 IDX_CHUNK=10000 ;;
    sorted-idx10k-c32)  run redb-q3-$v redb BATCH_ROWS=100000000 SORTED=1 IDX_SORT=1 IDX_CHUNK=10000 REDB_CACHE=$((32*M)) ;;
    sorted-idx10k-c64)  run redb-q3-$v redb BATCH_ROWS=100000000 SORTED=1 IDX_SORT=1 IDX_CHUNK=10000 REDB_CACHE=$((64*M)) ;;
    sorted-c64)         run redb-q3-$v redb BATCH_ROWS=100000000 SORTED=1 REDB_CACHE=$((64*M)) ;;
    c64)                run redb-q3-$v redb BATCH_ROWS=100000000 REDB_CACHE=$((64*M)) ;;
    sorted-idx100k-c64) run redb-q3-$v redb BATCH_ROWS=100000000 SORTED=1 IDX_SORT=1 IDX_CHUNK=100000 REDB_CACHE=$((64*M)) ;;
    sorted-c128)        run redb-q3-$v redb BATCH_ROWS=100000000 SORTED=1 REDB_CACHE=$((128*M)) ;;
    *) echo "unknown variant $v" >&2 ;;
  esac
done
