#!/usr/bin/env bash
# CI for the static builds: installs qemu-user and SIPp (the caller has run
# `apt-get update`), builds presenced for x86_64 and aarch64 musl (build.sh) and runs the
# smoke test on each, the aarch64 binary under qemu-user. From a clean target/ on 2
# cores: about 4.5 minutes on an idle machine, 7.5 under other load; seconds when
# nothing changed. Ends with
# "static: N passed, M failed" and exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
export DEBIAN_FRONTEND=noninteractive

step() { printf '\n=== %s\n' "$*"; }

step "static: install qemu-user and sipp"
apt-get install -y -qq qemu-user sip-tester >/dev/null || exit 1

PASSED=0
FAILED=0
# target and the runner its binary needs on this x86_64 machine
for entry in "x86_64-unknown-linux-musl:" "aarch64-unknown-linux-musl:qemu-aarch64"; do
    target=${entry%%:*}
    runner=${entry#*:}
    step "static: build $target"
    start=$SECONDS
    log=$(mktemp)
    if ! bash packaging/static/build.sh "$target" 2>&1 | tee "$log"; then
        rm -f "$log"
        echo "FAIL build $target"
        FAILED=$((FAILED + 1))
        continue
    fi
    out=$(tail -1 "$log") # "PATH SIZE bytes (N MB)"
    rm -f "$log"
    echo "ok   build $target in $((SECONDS - start)) s: ${out#* }"
    PASSED=$((PASSED + 1))
    step "static: smoke $target${runner:+ under $runner}"
    if bash packaging/static/smoke.sh "${out%% *}" ${runner:+"$runner"}; then
        PASSED=$((PASSED + 1))
    else
        echo "FAIL smoke $target"
        FAILED=$((FAILED + 1))
    fi
done

echo "static: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
