#!/bin/bash
# fjall memory knobs at 1M rows (presenced jemalloc conf, flush at end)
cd "$(dirname "$0")"
export OUT=${OUT:-target/results.tsv} PRESENCED_JE=1 FJALL_FLUSH_END=1 SAMPLE_MS=5 SIZES=${SIZES:-1000000}
M=1048576
run() { LABEL=$1 env "${@:2}" ./run.sh fjall; }
for v in ${VARIANTS:-wb8mt2 wb4mt1 tgt8 l0_2 stcs cache4 blk16 jrnl24}; do
  case $v in
    wb16mt4)  run fjall-q2-$v FJALL_WB=$((16*M)) FJALL_MT=$((4*M)) ;;
    wb8mt2)   run fjall-q2-$v FJALL_WB=$((8*M)) FJALL_MT=$((2*M)) ;;
    wb4mt1)   run fjall-q2-$v FJALL_WB=$((4*M)) FJALL_MT=$((1*M)) ;;
    tgt8)     run fjall-q2-$v FJALL_WB=$((16*M)) FJALL_MT=$((4*M)) FJALL_TARGET=$((8*M)) ;;
    l0_2)     run fjall-q2-$v FJALL_WB=$((16*M)) FJALL_MT=$((4*M)) FJALL_L0=2 ;;
    stcs)     run fjall-q2-$v FJALL_WB=$((16*M)) FJALL_MT=$((4*M)) FJALL_STCS=1 ;;
    cache4)   run fjall-q2-$v FJALL_WB=$((16*M)) FJALL_MT=$((4*M)) FJALL_CACHE=$((4*M)) ;;
    blk16)    run fjall-q2-$v FJALL_WB=$((16*M)) FJALL_MT=$((4*M)) FJALL_BLOCK=16384 ;;
    jrnl24)   run fjall-q2-$v FJALL_WB=$((16*M)) FJALL_MT=$((4*M)) FJALL_JOURNAL=$((24*M)) ;;
    stcs-blk16-c4) run fjall-q2-$v FJALL_WB=$((16*M)) FJALL_MT=$((4*M)) FJALL_STCS=1 FJALL_BLOCK=16384 FJALL_CACHE=$((4*M)) ;;
    tgt8-blk16-c4) run fjall-q2-$v FJALL_WB=$((16*M)) FJALL_MT=$((4*M)) FJALL_TARGET=$((8*M)) FJALL_BLOCK=16384 FJALL_CACHE=$((4*M)) ;;
    stcs-wb8-blk16-c4) run fjall-q2-$v FJALL_WB=$((8*M)) FJALL_MT=$((2*M)) FJALL_STCS=1 FJALL_BLOCK=16384 FJALL_CACHE=$((4*M)) ;;
    stcs-wb8-blk64-c4) run fjall-q2-$v FJALL_WB=$((8*M)) FJALL_MT=$((2*M)) FJALL_STCS=1 FJALL_BLOCK=65536 FJALL_CACHE=$((4*M)) ;;
    stcs-blk64-c4) run fjall-q2-$v FJALL_WB=$((16*M)) FJALL_MT=$((4*M)) FJALL_STCS=1 FJALL_BLOCK=65536 FJALL_CACHE=$((4*M)) ;;
    stcs-wb8-blk64-c4-check) run fjall-q2-$v FJALL_WB=$((8*M)) FJALL_MT=$((2*M)) FJALL_STCS=1 FJALL_BLOCK=65536 FJALL_CACHE=$((4*M)) FJALL_CHECK=1 ;;
    stcs-blk16-c4-check) run fjall-q2-$v FJALL_WB=$((16*M)) FJALL_MT=$((4*M)) FJALL_STCS=1 FJALL_BLOCK=16384 FJALL_CACHE=$((4*M)) FJALL_CHECK=1 ;;
    stcs-blk16-c4-check-2thr) run fjall-q2-$v FJALL_WB=$((16*M)) FJALL_MT=$((4*M)) FJALL_STCS=1 FJALL_BLOCK=16384 FJALL_CACHE=$((4*M)) FJALL_CHECK=1 THREADS=2 ;;
    *) echo "unknown variant $v" >&2 ;;
  esac
done
