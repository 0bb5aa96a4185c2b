#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS each, from the seeds that
# fuzz/seeds.py writes plus whatever earlier runs left in fuzz/corpus/. Needs a nightly
# toolchain and cargo-fuzz (`cargo install cargo-fuzz`). A crash stops the run and
# leaves its input in fuzz/artifacts/<target>/; so does an input that runs over 30 s.
#
#   fuzz/run.sh [SECONDS] [TARGET ...]      (default 60 s; targets: every [[bin]])
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_EACH=60
if [[ ${1:-} =~ ^[0-9]+$ ]]; then
    SECONDS_EACH=$1
    shift
fi
TARGETS=${*:-$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^presenced-fuzz$')}
python3 seeds.py >/dev/null
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
for t in $TARGETS; do
    echo "=== $t: ${SECONDS_EACH}s"
    status=0
    cargo +nightly fuzz run --fuzz-dir . "$t" "corpus/$t" -- \
        -max_total_time="$SECONDS_EACH" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 >"$LOG" 2>&1 || status=$?
    grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss)' "$LOG" || true
    if [ "$status" -ne 0 ]; then
        mkdir -p "artifacts/$t"
        cp "$LOG" "artifacts/$t/last-run.log"
        grep -E 'ERROR: |SUMMARY: |panicked at|^ +#[0-9]+ ' "$LOG" | head -40 || true
        echo "FAIL: $t (exit $status); the whole log is fuzz/artifacts/$t/last-run.log"
        exit 1
    fi
done
